//! `read_pcap('FILE')`: a capture file (pcap or pcapng, gzip welcome) as a
//! table of packets, streamed: a file of any size is read in one pass in
//! the memory of a batch. The path is the operator's, as `tcpdump -r`
//! takes it; only a regular file or a pipe is read, and a file that is not
//! a capture is refused without quoting it.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::catalog::{TableFunctionImpl, TableProvider};
use datafusion::common::{plan_err, Result, ScalarValue};
use datafusion::logical_expr::Expr;

use super::{append, Col, Meta};
use crate::columns::ColumnDef;
use crate::live::Emitter;
use crate::live_table::LiveTable;
use crate::{Scan, Table};
use sockql_collect::notice::Level;
use sockql_collect::packets::decode;
use sockql_collect::packets::file::{say_once, CaptureFile};
use sockql_collect::packets::flows::Flows;
use sockql_collect::packets::link::Tally;

pub const NAME: &str = "read_pcap";

/// The table function DataFusion calls with the SQL arguments.
#[derive(Debug, Default)]
pub struct ReadPcap {
    /// Fill the payload column (`--payload`).
    pub payload: bool,
}

impl TableFunctionImpl for ReadPcap {
    fn call(&self, args: &[Expr]) -> Result<Arc<dyn TableProvider>> {
        let path = match args {
            [Expr::Literal(
                ScalarValue::Utf8(Some(p)) | ScalarValue::LargeUtf8(Some(p)) | ScalarValue::Utf8View(Some(p)),
                _,
            )] => p.clone(),
            _ => return plan_err!("read_pcap takes one file name as a string: read_pcap('capture.pcap')"),
        };
        let file = PcapFile { path: PathBuf::from(path), payload: self.payload };
        Ok(Arc::new(LiveTable::new(file, Default::default())))
    }
}

#[derive(Debug, Clone)]
struct PcapFile {
    path: PathBuf,
    payload: bool,
}

impl Table for PcapFile {
    const NAME: &'static str = NAME;
    const ABOUT: &'static str = "A capture file (pcap or pcapng, gzip welcome) as a table of packets";
    const COLUMNS: &'static [ColumnDef] = Col::DEFS;
    type Plan = ();

    fn plan(&self, scan: &Scan<'_>) {
        super::note_payload_hidden(scan.projection, self.payload);
    }

    fn label(&self, _plan: &()) -> String {
        format!("read_pcap: {}", sockql_collect::notice::escape_controls(&self.path.display().to_string()))
    }

    fn read(&self, _plan: &(), out: &mut Emitter<'_>) -> anyhow::Result<()> {
        let (path, payload, sink) = (&self.path, self.payload, out.sink());
        // The file is read no longer than the query wants it (a pipe
        // whose writer is silent included): --timeout and a LIMIT met
        // above close the sink.
        let stop = || sink.is_closed();
        let mut file = CaptureFile::open(path, &stop)?;
        let mut flows = super::follows_flows(&out.rows).then(Flows::default);
        // What was not decoded, said once at the end (a LIMIT or an
        // error ends the reading: what was read so far).
        let mut undecoded = Tally::default();
        let mut frame = 0u64;
        let read = (|| {
            while !out.done() {
                frame += 1;
                let row = file.next(|raw| {
                    let d = decode::decode(raw.linktype, raw.data).on_wire(raw.data.len(), raw.length);
                    if let Some(what) = d.undecoded {
                        undecoded.add(what);
                    }
                    let meta = Meta {
                        ts_ns: raw.ts_ns,
                        interface: raw.interface,
                        ifindex: d.ifindex,
                        direction: raw.direction.or(d.direction),
                        length: raw.length,
                        captured_length: raw.data.len() as u32,
                        netns: None,
                        container: None,
                        payload: payload.then(|| d.payload.clone().and_then(|r| raw.data.get(r))).flatten(),
                    };
                    append(&mut out.rows, flows.as_mut(), frame, &meta, &d)
                });
                match row {
                    None => break,
                    Some(r) => r?,
                }
                if out.end_row()?.is_break() {
                    break;
                }
            }
            anyhow::Ok(())
        })();
        if let Some(what) = undecoded.describe() {
            say_once(Level::Note, &path.display().to_string(), "undecoded", what);
        }
        read
    }
}
