//! One tracepoint hit as the perf ring hands it over (a PERF_RECORD_SAMPLE
//! with TID, TIME, CPU and RAW), and its raw record's fields read by the
//! parsed format: integers of 1, 2, 4 or 8 bytes, signed or not, arrays,
//! `__data_loc` strings. Every read is bounds-checked: a field the record
//! is too short for reads as None, never as a panic or a neighbour's bytes.

use super::error::TraceError;
use super::format::{Field, Format, Layout};

/// One sample.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    /// The process and thread current on the CPU when it fired (the
    /// initial pid namespace's numbers; for softirq work such as most
    /// drops, whoever happened to be running).
    pub pid: u32,
    pub tid: u32,
    /// CLOCK_MONOTONIC nanoseconds, as proc_events stamps its events.
    pub time_ns: u64,
    pub cpu: u32,
    /// The tracepoint's record: common_type (the event id) first.
    pub raw: &'a [u8],
}

impl Sample<'_> {
    /// The id of the tracepoint that fired (its common_type field).
    pub fn event_id(&self) -> Option<u64> {
        Some(u16::from_ne_bytes(self.raw.get(0..2)?.try_into().ok()?) as u64)
    }

    /// An unsigned integer field (sign-extended if the field is signed,
    /// then as the bits of an i64): the whole field for a scalar, the
    /// first element for an array.
    pub fn u64(&self, f: &Field) -> Option<u64> {
        let width = match f.layout {
            Layout::Scalar => f.size,
            Layout::Array { len } => f.size / len.max(1),
            Layout::DataLoc | Layout::RelLoc => return None,
        };
        int_at(self.raw, f.offset, width, f.signed)
    }

    /// A signed integer field.
    pub fn i64(&self, f: &Field) -> Option<i64> {
        self.u64(f).map(|v| v as i64)
    }

    /// The bytes of an array field, or of a `__data_loc`/`__rel_loc`
    /// field's data.
    pub fn bytes(&self, f: &Field) -> Option<&[u8]> {
        match f.layout {
            Layout::Scalar | Layout::Array { .. } => self.raw.get(f.offset..f.offset.checked_add(f.size)?),
            Layout::DataLoc | Layout::RelLoc => {
                let loc = int_at(self.raw, f.offset, 4, false)? as u32;
                let (mut start, len) = ((loc & 0xffff) as usize, (loc >> 16) as usize);
                if f.layout == Layout::RelLoc {
                    start = start.checked_add(f.offset + f.size)?;
                }
                self.raw.get(start..start.checked_add(len)?)
            }
        }
    }

    /// A string field (char array or `__data_loc char[]`), up to its first
    /// NUL, lossily decoded.
    pub fn str(&self, f: &Field) -> Option<String> {
        let b = self.bytes(f)?;
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        Some(String::from_utf8_lossy(&b[..end]).into_owned())
    }
}

/// An integer of 1, 2, 4 or 8 bytes at `at`, in the host's byte order.
fn int_at(raw: &[u8], at: usize, width: usize, signed: bool) -> Option<u64> {
    let b = raw.get(at..at.checked_add(width)?)?;
    Some(match (width, signed) {
        (1, false) => b[0] as u64,
        (1, true) => b[0] as i8 as i64 as u64,
        (2, false) => u16::from_ne_bytes(b.try_into().ok()?) as u64,
        (2, true) => i16::from_ne_bytes(b.try_into().ok()?) as i64 as u64,
        (4, false) => u32::from_ne_bytes(b.try_into().ok()?) as u64,
        (4, true) => i32::from_ne_bytes(b.try_into().ok()?) as i64 as u64,
        (8, _) => u64::from_ne_bytes(b.try_into().ok()?),
        _ => return None,
    })
}

/// A field a reader needs, looked up once when it starts: the typed
/// error names the tracepoint and field a kernel lacks, so the table says
/// that one line and yields nothing instead of failing the query.
pub fn need<'f>(format: &'f Format, group: &str, field: &str, sizes: &[usize]) -> Result<&'f Field, TraceError> {
    format
        .field(field)
        .filter(|f| sizes.is_empty() || sizes.contains(&f.size))
        .ok_or_else(|| TraceError::NoField { event: format!("{group}:{}", format.name).into(), field: field.into() })
}

/// The parsed fields of a PERF_RECORD_SAMPLE with sample_type TID | TIME
/// | CPU | RAW, in the ABI's order: pid, tid (u32 each), time (u64), cpu,
/// reserved (u32 each), raw size (u32), raw bytes. `body` is the record
/// after its 8-byte header.
pub fn parse_sample(body: &[u8]) -> Option<Sample<'_>> {
    let u32_at = |at: usize| Some(u32::from_ne_bytes(body.get(at..at + 4)?.try_into().ok()?));
    let time_ns = u64::from_ne_bytes(body.get(8..16)?.try_into().ok()?);
    let raw_len = u32_at(24)? as usize;
    Some(Sample { pid: u32_at(0)?, tid: u32_at(4)?, time_ns, cpu: u32_at(16)?, raw: body.get(28..28 + raw_len)? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::format::parse;

    fn sample_body(raw: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [41u32, 42] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(&1_000_000_007u64.to_ne_bytes());
        b.extend_from_slice(&1u32.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&(raw.len() as u32).to_ne_bytes());
        b.extend_from_slice(raw);
        b.extend_from_slice(&[0; 4]); // the ring pads records to 8 bytes
        b
    }

    #[test]
    fn decodes_inet_sock_set_state_record() {
        let f = parse(include_str!("../../../../tests/fixtures/tracepoints/sock_inet_sock_set_state.format")).unwrap();
        let mut raw = vec![0u8; 72];
        raw[0..2].copy_from_slice(&(f.id as u16).to_ne_bytes());
        raw[16..20].copy_from_slice(&7i32.to_ne_bytes());
        raw[20..24].copy_from_slice(&(-1i32).to_ne_bytes());
        raw[24..26].copy_from_slice(&8080u16.to_ne_bytes());
        raw[32..36].copy_from_slice(&[127, 0, 0, 1]);
        let body = sample_body(&raw);
        let s = parse_sample(&body).unwrap();
        assert_eq!((s.pid, s.tid, s.time_ns, s.cpu, s.raw.len()), (41, 42, 1_000_000_007, 1, 72));
        assert_eq!(s.event_id(), Some(f.id));
        let field = |n| need(&f, "sock", n, &[]).unwrap();
        assert_eq!(s.i64(field("oldstate")), Some(7));
        assert_eq!(s.i64(field("newstate")), Some(-1));
        assert_eq!(s.u64(field("sport")), Some(8080));
        assert_eq!(s.bytes(field("saddr")), Some(&[127, 0, 0, 1][..]));
        assert_eq!(s.bytes(field("daddr_v6")).map(<[u8]>::len), Some(16));
        // A record cut short reads as None, not as a panic.
        let short = Sample { raw: &raw[..29], ..s };
        assert_eq!((short.bytes(field("saddr")), short.u64(field("sport"))), (None, Some(8080)));
        assert_eq!(short.u64(field("family")), None);
        let missing = need(&f, "sock", "nope", &[]).unwrap_err();
        assert_eq!(missing.to_string(), "tracepoint sock:inet_sock_set_state has no field nope");
        assert!(missing.is_missing());
        assert!(need(&f, "sock", "sport", &[4, 8]).is_err());
        // Truncated sample bodies.
        for cut in 0..body.len() - 4 {
            assert!(parse_sample(&body[..cut]).is_none(), "{cut}");
        }
    }

    #[test]
    fn data_loc_strings_stay_in_bounds() {
        let f = parse(
            "name: x\nID: 9\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
             \tfield:__data_loc char[] dev;\toffset:4;\tsize:4;\tsigned:0;\n\
             \tfield:__rel_loc char[] rel;\toffset:8;\tsize:4;\tsigned:0;\n",
        )
        .unwrap();
        let mut raw = vec![0u8; 12];
        raw[4..8].copy_from_slice(&((5u32 << 16) | 12).to_ne_bytes());
        raw[8..12].copy_from_slice(&((3u32 << 16) | 5).to_ne_bytes());
        raw.extend_from_slice(b"eth0\0ab\0");
        let s = Sample { pid: 0, tid: 0, time_ns: 0, cpu: 0, raw: &raw };
        assert_eq!(s.str(f.field("dev").unwrap()).as_deref(), Some("eth0"));
        // rel: offset 5 from the field's end (12): bytes 17..20.
        assert_eq!(s.str(f.field("rel").unwrap()).as_deref(), Some("ab"));
        assert_eq!(s.u64(f.field("dev").unwrap()), None);
        let mut bad = raw.clone();
        bad[4..8].copy_from_slice(&((0xffffu32 << 16) | 0xfff0).to_ne_bytes());
        let s = Sample { raw: &bad, ..s };
        assert_eq!(s.str(f.field("dev").unwrap()), None);
    }
}
