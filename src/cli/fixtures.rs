//! `sockql netlink-capture`: the raw answer datagrams of a netlink dump
//! written to a new file, for parser fixtures (`tests/fixtures/`) and bug
//! reports.

use std::io::Write;

use anyhow::Context;

use super::args::CaptureSource;

/// Write every answer datagram of one netlink dump source to `file`, for
/// parser fixtures and bug reports.
pub fn write(source: CaptureSource, file: &std::path::Path) -> anyhow::Result<()> {
    use crate::collect::sock_diag::inet::Extensions;
    use crate::collect::sock_diag::{InetRequest, SockDiag, ALL_DUMPS};
    use crate::collect::tcp_state::ALL_BITS;
    use crate::collect::Error;
    use std::ops::ControlFlow::Continue;
    // A new file only: never truncate or follow a link to an existing one.
    let created = std::fs::File::options().write(true).create_new(true).open(file);
    let mut w = std::io::BufWriter::new(
        created.with_context(|| format!("cannot create {} (it must not exist yet)", file.display()))?,
    );
    match source {
        CaptureSource::SockDiag => {
            let mut nl = SockDiag::open()?;
            let extensions = Extensions { tcp_info: true, congestion: true, meminfo: true, tos: true, ca_info: true };
            // TCP and UDP: the fixtures' protocols (raw_diag is missing
            // from many kernels, this one's included).
            for (protocol, family) in
                ALL_DUMPS.into_iter().filter(|(p, _)| *p != crate::collect::sock_diag::inet::IPPROTO_RAW)
            {
                let req = InetRequest { protocol, family, states: ALL_BITS, extensions, conds: Vec::new() };
                nl.inet(&req, Some(&mut w), |_| Ok::<_, Error>(Continue(())))?;
            }
        }
        CaptureSource::Ctnetlink => {
            crate::collect::conntrack::Ctnetlink::open()?
                .dump(0, &Default::default(), Some(&mut w), |_| Ok::<_, Error>(Continue(())))?;
        }
    }
    w.flush()?;
    Ok(())
}
