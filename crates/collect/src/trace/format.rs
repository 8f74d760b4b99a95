//! A tracepoint's format file (tracefs `events/GROUP/NAME/format`) as
//! the kernel writes it: the event's id (perf's `config`), each field's
//! offset, size and signedness in the raw record, and the `print fmt`
//! line, whose `__print_symbolic(REC->f, { 3, "NO_SOCKET" }, ...)` maps
//! are the kernel's own names for a field's values (drop reasons, TCP
//! states), so a newer kernel's new reasons are named without a release
//! of sockql. Parsing only: no I/O here, and no input makes it panic.

use std::collections::HashMap;

/// Format files are a few KiB (kfree_skb's, with 130 reasons, is 4 KiB);
/// anything larger than this is not a format file.
pub const MAX_FORMAT_BYTES: usize = 1 << 20;
/// More fields than any tracepoint has.
const MAX_FIELDS: usize = 512;
/// Entries of one symbolic map (kfree_skb's has 129).
const MAX_SYMBOLS: usize = 8192;

/// How a field's bytes are laid out in the raw record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One integer (or pointer) of `size` bytes.
    Scalar,
    /// `TYPE name[len]`: `len` elements of `size / len` bytes.
    Array { len: usize },
    /// `__data_loc TYPE[] name`: a u32 whose low 16 bits are the offset of
    /// the data from the start of the record, the high 16 its length.
    DataLoc,
    /// `__rel_loc TYPE[] name`: as `DataLoc`, the offset counted from the
    /// end of this field.
    RelLoc,
}

/// One field of the raw record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    /// The C type as written (`__u8`, `enum skb_drop_reason`, `void *`).
    pub c_type: String,
    pub offset: usize,
    pub size: usize,
    pub signed: bool,
    pub layout: Layout,
}

/// A key of a symbolic map: a number, or (where the kernel printed the
/// enum's name, not its value: `{ TCP_ESTABLISHED, "TCP_ESTABLISHED" }`
/// in tcp_retransmit_skb) a name to resolve against another map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Value(i64),
    Name(String),
}

/// The values of one field with the kernel's names for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Symbols {
    pub entries: Vec<(Key, String)>,
}

impl Symbols {
    /// The kernel's name for `value`, if its map has one.
    pub fn name(&self, value: i64) -> Option<&str> {
        self.entries.iter().find(|(k, _)| *k == Key::Value(value)).map(|(_, n)| n.as_str())
    }

    /// This map with keys that are enum names replaced by their values as
    /// `other` (a map of the same enum with numeric keys) gives them.
    pub fn resolved_by(&self, other: &Symbols) -> Symbols {
        let value_of = |name: &str| {
            other.entries.iter().find_map(|(k, n)| match k {
                Key::Value(v) if n == name => Some(*v),
                _ => None,
            })
        };
        let entries = self
            .entries
            .iter()
            .map(|(k, n)| match k {
                Key::Name(kn) => (value_of(kn).map_or_else(|| k.clone(), Key::Value), n.clone()),
                Key::Value(_) => (k.clone(), n.clone()),
            })
            .collect();
        Symbols { entries }
    }
}

/// A parsed format file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Format {
    pub name: String,
    /// The event's id: perf_event_attr.config for PERF_TYPE_TRACEPOINT,
    /// and the first field (common_type) of each of its raw records.
    pub id: u64,
    /// Every field, the common_ ones first, in the file's order.
    pub fields: Vec<Field>,
    pub print_fmt: String,
    /// `__print_symbolic` maps by the field they name (`REC->reason`).
    pub symbols: HashMap<String, Symbols>,
}

impl Format {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The smallest raw record that holds every fixed field.
    pub fn fixed_len(&self) -> usize {
        self.fields.iter().map(|f| f.offset.saturating_add(f.size)).max().unwrap_or(0)
    }
}

/// Parse the text of a format file; the error says what is wrong (the
/// caller adds the path).
pub fn parse(text: &str) -> Result<Format, String> {
    if text.len() > MAX_FORMAT_BYTES {
        return Err(format!("{} bytes, more than a format file holds", text.len()));
    }
    let mut format = Format::default();
    let (mut have_id, mut have_name) = (false, false);
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("name:") {
            format.name = name.trim().to_string();
            have_name = true;
        } else if let Some(id) = trimmed.strip_prefix("ID:") {
            format.id = id.trim().parse().map_err(|_| format!("line {}: ID {:?} is not a number", n + 1, id.trim()))?;
            have_id = true;
        } else if trimmed.starts_with("field:") {
            if format.fields.len() >= MAX_FIELDS {
                return Err(format!("more than {MAX_FIELDS} fields"));
            }
            format.fields.push(parse_field(trimmed).map_err(|e| format!("line {}: {e}", n + 1))?);
        } else if let Some(fmt) = trimmed.strip_prefix("print fmt:") {
            format.print_fmt = fmt.trim().to_string();
        }
    }
    if !have_name || !have_id {
        return Err("no name or ID line".into());
    }
    if format.fields.is_empty() {
        return Err("no fields".into());
    }
    format.symbols = symbolic_maps(&format.print_fmt);
    Ok(format)
}

/// `field:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;`
fn parse_field(line: &str) -> Result<Field, String> {
    let mut decl = None;
    let (mut offset, mut size, mut signed) = (None, None, false);
    for part in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once(':').ok_or_else(|| format!("{part:?} has no ':'"))?;
        let number = || value.trim().parse::<usize>().map_err(|_| format!("{key} {value:?} is not a number"));
        match key.trim() {
            "field" => decl = Some(value.trim()),
            "offset" => offset = Some(number()?),
            "size" => size = Some(number()?),
            "signed" => signed = number()? != 0,
            _ => {} // keys a future kernel adds
        }
    }
    let (decl, offset, size) = match (decl, offset, size) {
        (Some(d), Some(o), Some(s)) => (d, o, s),
        _ => return Err("field without declaration, offset or size".into()),
    };
    // Offsets and sizes are within a record of at most a page or so; far
    // larger numbers are garbage and would only overflow sums later.
    if offset > u16::MAX as usize || size > u16::MAX as usize {
        return Err(format!("offset {offset} or size {size} out of range"));
    }
    let (layout, rest) = if let Some(r) = decl.strip_prefix("__data_loc ") {
        (Some(Layout::DataLoc), r)
    } else if let Some(r) = decl.strip_prefix("__rel_loc ") {
        (Some(Layout::RelLoc), r)
    } else {
        (None, decl)
    };
    let rest = rest.trim();
    // The name is the last word, with any [N] suffix.
    let split = rest.rfind([' ', '*']).map_or(0, |i| i + 1);
    let (c_type, name) = (rest[..split].trim(), rest[split..].trim());
    let (name, dims) = match name.split_once('[') {
        Some((n, d)) => (n, Some(d.strip_suffix(']').ok_or_else(|| format!("bad array {name:?}"))?)),
        None => (name, None),
    };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("bad field name in {decl:?}"));
    }
    let layout = match (layout, dims) {
        (Some(l), _) => {
            if size != 4 {
                return Err(format!("{name}: a {l:?} field of {size} bytes, not 4"));
            }
            l
        }
        (None, Some("")) => return Err(format!("{name}: array without a length")),
        (None, Some(d)) => {
            let len: usize = d.parse().map_err(|_| format!("{name}: array length {d:?}"))?;
            if len == 0 || size % len != 0 {
                return Err(format!("{name}: {size} bytes do not make {len} elements"));
            }
            Layout::Array { len }
        }
        (None, None) => Layout::Scalar,
    };
    // A `__data_loc char[] name` declaration keeps the [] on its type.
    let c_type = c_type.trim_end_matches("[]").trim().to_string();
    Ok(Field { name: name.to_string(), c_type, offset, size, signed, layout })
}

/// Every `__print_symbolic(REC->field, { key, "NAME" }, ...)` of a print
/// fmt, by field. Anything it cannot read is left out, never an error:
/// the names are a convenience, the numbers stay.
pub fn symbolic_maps(print_fmt: &str) -> HashMap<String, Symbols> {
    let mut maps = HashMap::new();
    let mut rest = print_fmt;
    while let Some(at) = rest.find("__print_symbolic(") {
        rest = &rest[at + "__print_symbolic(".len()..];
        if let Some((field, symbols)) = one_map(rest) {
            // A field printed twice (a ternary) keeps its first map.
            maps.entry(field).or_insert(symbols);
        }
    }
    maps
}

/// `REC->field, { 1, "A" }, { 2, "B" })` after the opening parenthesis.
fn one_map(s: &str) -> Option<(String, Symbols)> {
    let (arg, mut rest) = s.split_once(',')?;
    let field = arg.trim().strip_prefix("REC->")?.trim();
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    let mut symbols = Symbols::default();
    loop {
        rest = rest.trim_start();
        if rest.starts_with(')') || symbols.entries.len() >= MAX_SYMBOLS {
            break;
        }
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        let Some(body) = rest.strip_prefix('{') else { break };
        let (key, after) = body.split_once(',')?;
        let after = after.trim_start().strip_prefix('"')?;
        let (name, after) = quoted(after)?;
        rest = after.trim_start().strip_prefix('}')?;
        let key = key.trim();
        let key = match parse_int(key) {
            Some(v) => Key::Value(v),
            None if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                Key::Name(key.to_string())
            }
            None => return None,
        };
        symbols.entries.push((key, name));
    }
    Some((field.to_string(), symbols))
}

/// The text up to the closing quote (backslash escapes one character).
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => out.push(chars.next()?.1),
            c => out.push(c),
        }
    }
    None
}

/// Decimal, hex (0x), negative, with C suffixes (1U, 2UL).
fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim_end_matches(['u', 'U', 'l', 'L']);
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    let v = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok()? as i64,
        None => digits.parse::<i64>().ok()?,
    };
    Some(if neg { v.checked_neg()? } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../../../tests/fixtures/tracepoints/", $name, ".format"))
        };
    }
    const KFREE_SKB: &str = fixture!("skb_kfree_skb");
    const SET_STATE: &str = fixture!("sock_inet_sock_set_state");
    const RETRANSMIT: &str = fixture!("tcp_tcp_retransmit_skb");
    const SYNACK: &str = fixture!("tcp_tcp_retransmit_synack");
    const SEND_RESET: &str = fixture!("tcp_tcp_send_reset");
    const RECEIVE_RESET: &str = fixture!("tcp_tcp_receive_reset");
    const RCVQUEUE_FULL: &str = fixture!("sock_sock_rcvqueue_full");
    const EXCEED_BUF: &str = fixture!("sock_sock_exceed_buf_limit");
    const PROBE: &str = fixture!("tcp_tcp_probe");
    const ALL: [&str; 9] =
        [KFREE_SKB, SET_STATE, RETRANSMIT, SYNACK, SEND_RESET, RECEIVE_RESET, RCVQUEUE_FULL, EXCEED_BUF, PROBE];

    fn field(f: &Format, name: &str) -> (usize, usize, bool, Layout) {
        let x = f.field(name).unwrap_or_else(|| panic!("no field {name}"));
        (x.offset, x.size, x.signed, x.layout)
    }

    #[test]
    fn kfree_skb_fields_and_reasons() {
        let f = parse(KFREE_SKB).unwrap();
        assert_eq!((f.name.as_str(), f.id, f.fields.len()), ("kfree_skb", 2310, 9));
        assert_eq!(field(&f, "common_type"), (0, 2, false, Layout::Scalar));
        assert_eq!(field(&f, "common_pid"), (4, 4, true, Layout::Scalar));
        assert_eq!(field(&f, "location"), (16, 8, false, Layout::Scalar));
        assert_eq!(field(&f, "rx_sk"), (24, 8, false, Layout::Scalar));
        assert_eq!(field(&f, "protocol"), (32, 2, false, Layout::Scalar));
        assert_eq!(field(&f, "reason"), (36, 4, false, Layout::Scalar));
        assert_eq!(f.field("reason").unwrap().c_type, "enum skb_drop_reason");
        assert_eq!(f.field("skbaddr").unwrap().c_type, "void *");
        assert_eq!(f.fixed_len(), 40);
        let reasons = &f.symbols["reason"];
        // 2..=130 on this kernel: NOT_SPECIFIED is 2, MAX 130.
        assert_eq!(reasons.entries.len(), 129);
        assert_eq!(reasons.name(2), Some("NOT_SPECIFIED"));
        assert_eq!(reasons.name(3), Some("NO_SOCKET"));
        assert_eq!(reasons.name(40), Some("TCP_LISTEN_OVERFLOW"));
        assert_eq!(reasons.name(12), Some("NETFILTER_DROP"));
        assert_eq!(reasons.name(64), Some("QDISC_DROP"));
        assert_eq!(reasons.name(130), Some("MAX"));
        assert_eq!(reasons.name(1), None);
        assert_eq!(f.symbols.len(), 1);
    }

    #[test]
    fn inet_sock_set_state_arrays_and_two_state_maps() {
        let f = parse(SET_STATE).unwrap();
        assert_eq!(field(&f, "oldstate"), (16, 4, true, Layout::Scalar));
        assert_eq!(field(&f, "saddr"), (32, 4, false, Layout::Array { len: 4 }));
        assert_eq!(field(&f, "daddr_v6"), (56, 16, false, Layout::Array { len: 16 }));
        assert_eq!(f.field("saddr").unwrap().c_type, "__u8");
        for state in ["oldstate", "newstate"] {
            let m = &f.symbols[state];
            assert_eq!(
                (m.name(1), m.name(2), m.name(12), m.entries.len()),
                (Some("TCP_ESTABLISHED"), Some("TCP_SYN_SENT"), Some("TCP_NEW_SYN_RECV"), 12)
            );
        }
        assert_eq!(f.symbols["family"].name(10), Some("AF_INET6"));
        assert_eq!(f.symbols["protocol"].name(262), Some("IPPROTO_MPTCP"));
    }

    #[test]
    fn retransmit_states_named_by_enum_resolve_through_set_state() {
        let f = parse(RETRANSMIT).unwrap();
        let state = &f.symbols["state"];
        // This kernel prints the enum's names, not values, in this map.
        assert_eq!(state.entries[0], (Key::Name("TCP_ESTABLISHED".into()), "TCP_ESTABLISHED".into()));
        assert_eq!(state.name(1), None);
        let by = parse(SET_STATE).unwrap().symbols["newstate"].clone();
        let resolved = state.resolved_by(&by);
        assert_eq!(
            (resolved.name(1), resolved.name(7), resolved.name(10)),
            (Some("TCP_ESTABLISHED"), Some("TCP_CLOSE"), Some("TCP_LISTEN"))
        );
        assert_eq!(field(&f, "err"), (76, 4, true, Layout::Scalar));
        assert_eq!(field(&f, "saddr_v6"), (42, 16, false, Layout::Array { len: 16 }));
    }

    #[test]
    fn resets_probe_and_memory_events() {
        let f = parse(SEND_RESET).unwrap();
        // The state map sits in a ternary; the reason map is sk_rst_reason's.
        assert!(f.symbols["state"].entries.len() == 12);
        assert_eq!(f.symbols["reason"].name(1), Some("NO_SOCKET"));
        assert_eq!(field(&f, "saddr"), (32, 28, false, Layout::Array { len: 28 }));
        let p = parse(PROBE).unwrap();
        assert_eq!(field(&p, "sock_cookie"), (112, 8, false, Layout::Scalar));
        assert_eq!(field(&p, "srtt"), (100, 4, false, Layout::Scalar));
        let e = parse(EXCEED_BUF).unwrap();
        assert_eq!(field(&e, "name"), (8, 32, false, Layout::Array { len: 32 }));
        assert_eq!(field(&e, "sysctl_mem"), (40, 24, true, Layout::Array { len: 3 }));
        assert_eq!(e.symbols["kind"].name(1), Some("SK_MEM_RECV"));
        let q = parse(RCVQUEUE_FULL).unwrap();
        assert_eq!(field(&q, "truesize"), (12, 4, false, Layout::Scalar));
        assert!(q.symbols.is_empty());
        for text in ALL {
            let f = parse(text).unwrap();
            assert_eq!(field(&f, "common_type"), (0, 2, false, Layout::Scalar), "{}", f.name);
            assert!(f.id > 0);
        }
    }

    #[test]
    fn data_loc_rel_loc_and_odd_declarations() {
        let text = "name: x\nID: 7\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
            \tfield:__data_loc char[] name;\toffset:8;\tsize:4;\tsigned:0;\n\
            \tfield:__rel_loc u8[] buf;\toffset:12;\tsize:4;\tsigned:0;\n\
            \tfield:char *ptr;\toffset:16;\tsize:8;\tsigned:0;\n\
            \tfield:s64 v;\toffset:24;\tsize:8;\tsigned:1;\tfuture:3;\n\
            \nprint fmt: \"%s\", __print_symbolic(REC->v, { -1, \"NEG\" }, { 0x10, \"HEX\" }, { 2U, \"Q\\\"UOTE\" })\n";
        let f = parse(text).unwrap();
        assert_eq!(f.field("name").unwrap().layout, Layout::DataLoc);
        assert_eq!(f.field("name").unwrap().c_type, "char");
        assert_eq!(f.field("buf").unwrap().layout, Layout::RelLoc);
        assert_eq!(f.field("ptr").unwrap().c_type, "char *");
        assert!(f.field("v").unwrap().signed);
        let m = &f.symbols["v"];
        assert_eq!((m.name(-1), m.name(16), m.name(2)), (Some("NEG"), Some("HEX"), Some("Q\"UOTE")));
        // A data_loc of another size, an array that does not divide, no ID.
        assert!(parse(&text.replace("offset:8;\tsize:4", "offset:8;\tsize:6")).is_err());
        assert!(parse(&SET_STATE.replace("saddr[4];\toffset:32;\tsize:4", "saddr[3];\toffset:32;\tsize:4")).is_err());
        assert!(parse(&KFREE_SKB.replace("ID: 2310", "ID: x")).is_err());
        assert!(parse(&KFREE_SKB.replace("ID: 2310\n", "")).is_err());
        assert!(parse("").is_err());
    }

    /// Every prefix, every line dropped, and bytes garbled at many places
    /// of every fixture: never a panic (errors are fine), and where it
    /// parses, fields stay within the bounds the parser promises.
    #[test]
    fn cut_and_garbled_texts_never_panic() {
        let garbage =
            ["", "\0", "{", "}", ",", "\"", "\\", "[", "]", ":", ";", "REC->", "__print_symbolic(", "é", "-", " "];
        for text in ALL {
            for cut in (0..text.len()).filter(|&i| text.is_char_boundary(i)) {
                check(&text[..cut]);
            }
            let lines: Vec<&str> = text.lines().collect();
            for skip in 0..lines.len() {
                let without: Vec<&str> =
                    lines.iter().enumerate().filter(|&(i, _)| i != skip).map(|(_, l)| *l).collect();
                check(&without.join("\n"));
            }
            for (at, g) in (0..text.len()).step_by(7).zip(garbage.iter().cycle()) {
                if text.is_char_boundary(at) {
                    let mut s = text.to_string();
                    s.insert_str(at, g);
                    check(&s);
                    let mut s = text.to_string();
                    let end = (at + 3..text.len()).find(|&e| text.is_char_boundary(e)).unwrap_or(text.len());
                    s.replace_range(at..end, g);
                    check(&s);
                }
            }
        }
        check(&"field:".repeat(10_000));
        check(&"__print_symbolic(REC->x, ".repeat(10_000));
        check(&"x".repeat(MAX_FORMAT_BYTES + 1));
    }

    proptest::proptest! {
        #[test]
        fn any_text_never_panics(text in "(field:|offset:|size:|signed:|name: |ID: |print fmt: |__print_symbolic\\(REC->|[{}\",;:\\[\\] \t\n0-9a-z_-]){0,80}") {
            check(&text);
        }
    }

    fn check(text: &str) {
        if let Ok(f) = parse(text) {
            assert!(f.fields.len() <= MAX_FIELDS);
            for x in &f.fields {
                assert!(x.offset <= u16::MAX as usize && x.size <= u16::MAX as usize);
                if let Layout::Array { len } = x.layout {
                    assert!(len > 0 && x.size % len == 0);
                }
            }
        }
    }
}
