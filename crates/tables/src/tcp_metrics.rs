//! `tcp_metrics`: the kernel's per-destination TCP metrics cache (`ip
//! tcp_metrics show`): what closed connections taught it about each peer,
//! used to start the next ones (RTT, cwnd, ssthresh, reordering, TCP Fast
//! Open), per network namespace.

use crate::columns::ColumnDef;
use crate::live::Emitter;
use crate::table_columns;
use crate::{scope, Scan, Table};
use sockql_collect::netns::Netns;
use sockql_collect::tcp_metrics;

table_columns!(Col {
    Address: "address", Utf8, false, "Destination address the metrics are kept for";
    SourceAddr: "source_addr", Utf8, true, "Local address the connections came from (ip: source)";
    AgeMs: "age_ms", U64, true, "Milliseconds since the entry was last updated (ip: age, in seconds)";
    RttMs: "rtt_ms", F64, true, "Smoothed round-trip time, ms (ip: rtt, in us)";
    RttvarMs: "rttvar_ms", F64, true, "Round-trip time variation, ms (ip: rttvar, in us)";
    Cwnd: "cwnd", U32, true, "Congestion window the next connection starts from, segments";
    Ssthresh: "ssthresh", U32, true, "Slow-start threshold remembered, segments";
    Reordering: "reordering", U32, true, "Reordering degree remembered, segments";
    FastopenMss: "fastopen_mss", U16, true, "TCP Fast Open: the peer's MSS (ip: fo_mss)";
    FastopenSynDrops: "fastopen_syn_drops", U16, true, "TCP Fast Open: SYNs with data the path dropped (ip: fo_syn_drops)";
    FastopenSynDropAgeMs: "fastopen_syn_drop_age_ms", U64, true, "TCP Fast Open: milliseconds since the last such drop";
    FastopenCookie: "fastopen_cookie", Utf8, true, "TCP Fast Open: the cookie the peer gave, hex (ip: fo_cookie)";
    Netns: "netns", U64, false, "Network namespace inode (lsns -t net)";
    NetnsName: "netns_name", Utf8, true, "Name of the network namespace under /run/netns, null if unnamed";
});

#[derive(Debug, Clone, Copy)]
pub struct TcpMetricsTable;

impl Table for TcpMetricsTable {
    const NAME: &'static str = "tcp_metrics";
    const ABOUT: &'static str = "The kernel's per-destination TCP metrics cache (ip tcp_metrics): RTT, cwnd, ssthresh";
    const COLUMNS: &'static [ColumnDef] = Col::DEFS;
    type Plan = Vec<Netns>;

    fn plan(&self, scan: &Scan<'_>) -> Vec<Netns> {
        scan.targets()
    }

    fn label(&self, targets: &Vec<Netns>) -> String {
        format!("tcp_metrics: genetlink {}", scope::describe(targets))
    }

    fn read(&self, targets: &Vec<Netns>, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        let ms = |us: Option<u32>| us.map(|us| f64::from(us) / 1000.0);
        scope::each(targets, |ns| {
            let received = tcp_metrics::read(|m| {
                // The kernel names every entry by its address.
                let Some(address) = m.addr else { return Ok(std::ops::ControlFlow::Continue(())) };
                let r = &mut out.rows;
                r.display(Col::Address, &address);
                match m.source {
                    Some(a) => r.display(Col::SourceAddr, &a),
                    None => r.null(Col::SourceAddr),
                }
                r.u64(Col::AgeMs, m.age_ms);
                r.f64(Col::RttMs, ms(m.rtt_us));
                r.f64(Col::RttvarMs, ms(m.rttvar_us));
                r.u32(Col::Cwnd, m.cwnd);
                r.u32(Col::Ssthresh, m.ssthresh);
                r.u32(Col::Reordering, m.reordering);
                r.u16(Col::FastopenMss, m.fastopen_mss);
                r.u16(Col::FastopenSynDrops, m.fastopen_syn_drops);
                r.u64(Col::FastopenSynDropAgeMs, m.fastopen_syn_drop_age_ms);
                let hex = |c: &Vec<u8>| c.iter().map(|b| format!("{b:02x}")).collect::<String>();
                r.str(Col::FastopenCookie, m.fastopen_cookie.as_ref().map(hex).as_deref());
                r.u64(Col::Netns, Some(ns.inode));
                r.str(Col::NetnsName, ns.name.as_deref());
                out.end_row()
            })?;
            out.count(sockql_collect::Used { netlink: 1, proc: 0 }, received);
            Ok(if out.done() { std::ops::ControlFlow::Break(()) } else { std::ops::ControlFlow::Continue(()) })
        })
    }
}
