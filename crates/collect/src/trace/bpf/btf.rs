//! The few things the drop program needs from the kernel's BTF
//! (/sys/kernel/btf/vmlinux): where a member lies in a struct (through
//! anonymous struct and union members, as `sk_buff.dev` and
//! `net_device.nd_net` do), its size, and the arguments of a raw
//! tracepoint (the `btf_trace_NAME` typedef's function prototype).
//!
//! BTF is a header, a type section (12-byte records, each followed by a
//! kind-specific tail) and a string section. The parser only indexes the
//! records; every read is bounds-checked, every walk over type ids is
//! bounded (a blob whose ids loop or point past the end is an error, never
//! a hang or a panic), so a hostile or truncated blob costs at most one
//! pass over its bytes.

use std::fmt;

/// What was wrong with a blob or a lookup, in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtfError(pub String);

impl fmt::Display for BtfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BtfError {}

fn err<T>(msg: impl Into<String>) -> Result<T, BtfError> {
    Err(BtfError(msg.into()))
}

const MAGIC: u16 = 0xeb9f;
/// vmlinux is about 6 MB; refuse what is far beyond.
pub const MAX_BLOB: usize = 64 << 20;
/// Modifiers and typedefs followed before a type counts as looping.
const MAX_CHAIN: usize = 32;
/// Anonymous members nested in anonymous members (sk_buff has 3).
const MAX_NESTING: usize = 8;
/// Names longer than this are not names the parser looks for.
const MAX_NAME: usize = 256;

/// The kinds the lookups distinguish (BTF_KIND_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    Func,
    FuncProto,
    Var,
    Datasec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
}

impl Kind {
    fn of(n: u32) -> Option<Kind> {
        use Kind::*;
        Some(match n {
            1 => Int,
            2 => Ptr,
            3 => Array,
            4 => Struct,
            5 => Union,
            6 => Enum,
            7 => Fwd,
            8 => Typedef,
            9 => Volatile,
            10 => Const,
            11 => Restrict,
            12 => Func,
            13 => FuncProto,
            14 => Var,
            15 => Datasec,
            16 => Float,
            17 => DeclTag,
            18 => TypeTag,
            19 => Enum64,
            _ => return None,
        })
    }

    /// Bytes after the 12-byte record, for `vlen` entries.
    fn tail(self, vlen: usize) -> usize {
        use Kind::*;
        match self {
            Int | Var | DeclTag => 4,
            Array => 12,
            Struct | Union | Datasec | Enum64 => 12 * vlen,
            Enum | FuncProto => 8 * vlen,
            _ => 0,
        }
    }
}

/// One type record as read.
#[derive(Debug, Clone, Copy)]
struct Type {
    name_off: u32,
    kind: Kind,
    vlen: usize,
    kind_flag: bool,
    /// `size` for ints, structs, unions, enums; `type` for the others.
    size_or_type: u32,
    /// Where the kind's tail starts in the type section.
    tail: usize,
}

/// A member found by [`Btf::member`]: its byte offset from the start of
/// the outermost struct, its size in bytes and its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub offset: u32,
    pub size: u32,
    pub type_id: u32,
}

/// A parsed BTF blob (it keeps the bytes; types are indexed, not copied).
pub struct Btf {
    /// The whole blob, read once; the sections are ranges of it.
    blob: Vec<u8>,
    types: std::ops::Range<usize>,
    strings: std::ops::Range<usize>,
    /// Type id N is at offsets[N - 1].
    offsets: Vec<(u32, Kind)>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

impl Btf {
    /// The running kernel's BTF.
    pub fn vmlinux() -> Result<Btf, BtfError> {
        let path = "/sys/kernel/btf/vmlinux";
        let mut bytes = Vec::new();
        use std::io::Read;
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_BLOB as u64 + 1).read_to_end(&mut bytes))
            .or_else(|e| err(format!("{path}: {e} (a kernel built without CONFIG_DEBUG_INFO_BTF has none)")))?;
        Btf::from_vec(bytes).map_err(|e| BtfError(format!("{path}: {e}")))
    }

    /// Parse a blob. Only little-endian blobs (the kernel's own, on the
    /// hosts sockql runs on) are read.
    pub fn parse(blob: &[u8]) -> Result<Btf, BtfError> {
        Btf::from_vec(blob.to_vec())
    }

    /// [`Btf::parse`] of a blob it keeps (no copy of vmlinux's 5 MB).
    pub fn from_vec(blob: Vec<u8>) -> Result<Btf, BtfError> {
        if blob.len() > MAX_BLOB {
            return err("BTF larger than 64 MiB");
        }
        if u16_at(&blob, 0) != Some(MAGIC) {
            return err("not little-endian BTF (bad magic)");
        }
        let field = |at| u32_at(&blob, at).map(|v| v as usize).ok_or_else(|| BtfError("BTF header truncated".into()));
        let (hdr_len, type_off, type_len, str_off, str_len) =
            (field(4)?, field(8)?, field(12)?, field(16)?, field(20)?);
        if hdr_len < 24 {
            return err("BTF header too short");
        }
        let section = |off: usize, len: usize, what: &str| {
            hdr_len
                .checked_add(off)
                .and_then(|s| Some(s..s.checked_add(len)?))
                .filter(|r| r.end <= blob.len())
                .ok_or_else(|| BtfError(format!("BTF {what} section past the end of the blob")))
        };
        let (type_range, strings) = (section(type_off, type_len, "type")?, section(str_off, str_len, "string")?);
        let types = blob.get(type_range.clone()).unwrap_or_default();
        let mut offsets = Vec::new();
        let mut at = 0usize;
        while at < types.len() {
            let (Some(info), Some(_)) = (u32_at(types, at + 4), u32_at(types, at + 8)) else {
                return err(format!("BTF type {} truncated", offsets.len() + 1));
            };
            let Some(kind) = Kind::of((info >> 24) & 0x1f) else {
                return err(format!("BTF type {} has unknown kind {}", offsets.len() + 1, (info >> 24) & 0x1f));
            };
            let next = at + 12 + kind.tail((info & 0xffff) as usize);
            if next > types.len() {
                return err(format!("BTF type {} truncated", offsets.len() + 1));
            }
            offsets.push((at as u32, kind));
            at = next;
        }
        Ok(Btf { blob, types: type_range, strings, offsets })
    }

    fn types(&self) -> &[u8] {
        self.blob.get(self.types.clone()).unwrap_or_default()
    }

    fn strings(&self) -> &[u8] {
        self.blob.get(self.strings.clone()).unwrap_or_default()
    }

    /// Number of types (ids 1..=len).
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    fn ty(&self, id: u32) -> Result<Type, BtfError> {
        let &(at, kind) = (id as usize)
            .checked_sub(1)
            .and_then(|i| self.offsets.get(i))
            .ok_or_else(|| BtfError(format!("BTF type id {id} does not exist")))?;
        let at = at as usize;
        // Checked in parse: the record and its tail are in the section.
        let info = u32_at(self.types(), at + 4).unwrap_or(0);
        Ok(Type {
            name_off: u32_at(self.types(), at).unwrap_or(0),
            kind,
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 == 1,
            size_or_type: u32_at(self.types(), at + 8).unwrap_or(0),
            tail: at + 12,
        })
    }

    /// The string at `off` (empty for anonymous types), bounded.
    fn name(&self, off: u32) -> &[u8] {
        let rest = self.strings().get(off as usize..).unwrap_or_default();
        let rest = &rest[..rest.len().min(MAX_NAME + 1)];
        let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    /// The id of the first type of this kind and name.
    pub fn find(&self, kind: Kind, name: &str) -> Option<u32> {
        let name = name.as_bytes();
        (1..=self.offsets.len() as u32).find(|&id| {
            self.offsets.get(id as usize - 1).is_some_and(|o| o.1 == kind)
                && self.ty(id).is_ok_and(|t| self.name(t.name_off) == name)
        })
    }

    /// Follow typedefs and modifiers (const, volatile, ...) to the type
    /// they stand for; a chain longer than 32 counts as a loop.
    pub fn resolve(&self, mut id: u32) -> Result<u32, BtfError> {
        for _ in 0..MAX_CHAIN {
            if id == 0 {
                return Ok(0);
            }
            let t = self.ty(id)?;
            match t.kind {
                Kind::Typedef | Kind::Volatile | Kind::Const | Kind::Restrict | Kind::TypeTag => id = t.size_or_type,
                _ => return Ok(id),
            }
        }
        err(format!("BTF type {id}: typedefs and modifiers loop"))
    }

    /// The size in bytes of a type (pointers: 8, arrays: elements times
    /// the element's size).
    pub fn size_of(&self, id: u32) -> Result<u32, BtfError> {
        let mut id = self.resolve(id)?;
        let mut count: u64 = 1;
        for _ in 0..MAX_CHAIN {
            let t = self.ty(id)?;
            match t.kind {
                Kind::Int | Kind::Struct | Kind::Union | Kind::Enum | Kind::Enum64 | Kind::Float => {
                    return u32::try_from(count.saturating_mul(t.size_or_type as u64))
                        .or_else(|_| err(format!("BTF type {id}: size overflows")));
                }
                Kind::Ptr => return u32::try_from(count * 8).or_else(|_| err("size overflows")),
                Kind::Array => {
                    let elem = u32_at(self.types(), t.tail).unwrap_or(0);
                    let n = u32_at(self.types(), t.tail + 8).unwrap_or(0);
                    count = count.saturating_mul(n as u64);
                    id = self.resolve(elem)?;
                }
                k => return err(format!("BTF type {id} ({k:?}) has no size")),
            }
        }
        err(format!("BTF type {id}: arrays nest too deep"))
    }

    /// The kind of a type after typedefs and modifiers.
    pub fn kind(&self, id: u32) -> Result<Kind, BtfError> {
        Ok(self.ty(self.resolve(id)?)?.kind)
    }

    /// The member `name` of struct or union `id`, looked for in the
    /// members of its anonymous struct and union members too (where C
    /// finds `skb->dev`), with its offset from the start of `id`.
    pub fn member(&self, id: u32, name: &str) -> Result<Option<Member>, BtfError> {
        self.member_in(id, name.as_bytes(), 0)
    }

    fn member_in(&self, id: u32, name: &[u8], depth: usize) -> Result<Option<Member>, BtfError> {
        if depth > MAX_NESTING {
            return err(format!("BTF type {id}: anonymous members nest deeper than {MAX_NESTING}"));
        }
        let t = self.ty(self.resolve(id)?)?;
        if !matches!(t.kind, Kind::Struct | Kind::Union) {
            return err(format!("BTF type {id} is a {:?}, not a struct or union", t.kind));
        }
        for i in 0..t.vlen {
            let at = t.tail + 12 * i;
            let (Some(m_name), Some(m_type), Some(m_off)) =
                (u32_at(self.types(), at), u32_at(self.types(), at + 4), u32_at(self.types(), at + 8))
            else {
                return err(format!("BTF type {id}: member {i} truncated"));
            };
            // kind_flag: bitfield size in the top 8 bits, offset below.
            let bits = if t.kind_flag { m_off & 0xff_ffff } else { m_off };
            let bitfield = t.kind_flag && m_off >> 24 != 0;
            let here = self.name(m_name);
            if here == name {
                if bits % 8 != 0 || bitfield {
                    return err(format!("member {} is a bitfield", String::from_utf8_lossy(name)));
                }
                return Ok(Some(Member { offset: bits / 8, size: self.size_of(m_type)?, type_id: m_type }));
            }
            if here.is_empty() && matches!(self.kind(m_type), Ok(Kind::Struct | Kind::Union)) {
                if let Some(mut m) = self.member_in(m_type, name, depth + 1)? {
                    if bits % 8 != 0 {
                        return err("anonymous member not on a byte boundary");
                    }
                    m.offset = m.offset.checked_add(bits / 8).ok_or_else(|| BtfError("offset overflows".into()))?;
                    return Ok(Some(m));
                }
            }
        }
        Ok(None)
    }

    /// `struct NAME`'s member at `path` (`["nd_net", "net"]`: a member of
    /// a member struct, not through a pointer), as byte offset and size
    /// from the start of the struct.
    pub fn offset_of(&self, name: &str, path: &[&str]) -> Result<Member, BtfError> {
        let mut id =
            self.find(Kind::Struct, name).ok_or_else(|| BtfError(format!("the kernel's BTF has no struct {name}")))?;
        let mut total = Member { offset: 0, size: 0, type_id: id };
        for (i, part) in path.iter().enumerate() {
            let m = self.member(id, part)?.ok_or_else(|| {
                BtfError(format!("the kernel's struct {name} has no member {}", path[..=i].join(".")))
            })?;
            total = Member {
                offset: total.offset.checked_add(m.offset).ok_or_else(|| BtfError("offset overflows".into()))?,
                size: m.size,
                type_id: m.type_id,
            };
            id = m.type_id;
        }
        Ok(total)
    }

    /// A type as C spells it, shortly: `struct sk_buff *`, `void *`,
    /// `enum skb_drop_reason`, `u32` (typedefs and modifiers skipped).
    pub fn type_name(&self, id: u32) -> Result<String, BtfError> {
        let mut stars = String::new();
        let mut id = self.resolve(id)?;
        for _ in 0..MAX_CHAIN {
            if id == 0 {
                return Ok(format!("void{stars}"));
            }
            let t = self.ty(id)?;
            let name = String::from_utf8_lossy(self.name(t.name_off));
            let base = match t.kind {
                Kind::Ptr => {
                    stars = format!(" *{stars}");
                    id = self.resolve(t.size_or_type)?;
                    continue;
                }
                Kind::Struct => format!("struct {name}"),
                Kind::Union => format!("union {name}"),
                Kind::Enum | Kind::Enum64 => format!("enum {name}"),
                Kind::Fwd if t.kind_flag => format!("union {name}"),
                Kind::Fwd => format!("struct {name}"),
                _ => name.into_owned(),
            };
            return Ok(format!("{base}{stars}"));
        }
        err(format!("BTF type {id}: pointers nest too deep"))
    }

    /// The argument types of raw tracepoint `name`'s probe (the
    /// `btf_trace_NAME` typedef: a pointer to a prototype whose first
    /// parameter is the probe's `void *` data, then TP_PROTO's arguments;
    /// vmlinux keeps no parameter names for these).
    pub fn raw_tracepoint_args(&self, name: &str) -> Result<Vec<String>, BtfError> {
        let typedef = self
            .find(Kind::Typedef, &format!("btf_trace_{name}"))
            .ok_or_else(|| BtfError(format!("the kernel's BTF has no tracepoint {name}")))?;
        let ptr = self.resolve(typedef)?;
        let t = self.ty(ptr)?;
        if t.kind != Kind::Ptr {
            return err(format!("btf_trace_{name} is not a pointer"));
        }
        let proto = self.ty(self.resolve(t.size_or_type)?)?;
        if proto.kind != Kind::FuncProto {
            return err(format!("btf_trace_{name} does not point to a prototype"));
        }
        (1..proto.vlen).map(|i| self.type_name(u32_at(self.types(), proto.tail + 8 * i + 4).unwrap_or(0))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tests/fixtures/btf/drops.btf: the structs and members the drop
    /// program reads, with this kernel's (6.18) offsets and anonymous
    /// nesting, and the kfree_skb prototype (scripts: make_drops_btf.py
    /// next to it, checked against /sys/kernel/btf/vmlinux below).
    const FIXTURE: &[u8] = include_bytes!("../../../../../tests/fixtures/btf/drops.btf");

    #[test]
    fn finds_members_through_anonymous_unions() {
        let btf = Btf::parse(FIXTURE).unwrap();
        let dev = btf.offset_of("sk_buff", &["dev"]).unwrap();
        assert_eq!((dev.offset, dev.size), (16, 8));
        assert_eq!(btf.kind(dev.type_id).unwrap(), Kind::Ptr);
        let nh = btf.offset_of("sk_buff", &["network_header"]).unwrap();
        assert_eq!((nh.offset, nh.size), (180, 2));
        let net = btf.offset_of("net_device", &["nd_net", "net"]).unwrap();
        assert_eq!(net.size, 8);
        let e = btf.offset_of("sk_buff", &["nope"]).unwrap_err();
        assert_eq!(e.0, "the kernel's struct sk_buff has no member nope");
        assert!(btf.offset_of("no_such_struct", &["x"]).is_err());
        assert_eq!(
            btf.raw_tracepoint_args("kfree_skb").unwrap(),
            ["struct sk_buff *", "void *", "enum skb_drop_reason", "struct sock *"]
        );
    }

    /// Every offset the program uses, from the fixture and from the
    /// running kernel's BTF, agree (where the kernel is the one the
    /// fixture was captured on: every struct the program reads has the
    /// fixture's size. One offset was not enough: a later build of the
    /// same 6.18 kernel kept sk_buff's and moved struct net's members).
    #[test]
    fn fixture_matches_the_running_kernel() {
        let Ok(live) = Btf::vmlinux() else { return };
        let fixture = Btf::parse(FIXTURE).unwrap();
        assert_eq!(live.raw_tracepoint_args("kfree_skb").unwrap().len(), 4);
        let size = |btf: &Btf, s: &str| btf.find(Kind::Struct, s).and_then(|id| btf.size_of(id).ok());
        let same_kernel = super::super::program::OFFSETS.iter().all(|(s, _)| size(&live, s) == size(&fixture, s));
        for (s, path) in super::super::program::OFFSETS {
            let l = live.offset_of(s, path).unwrap();
            if same_kernel {
                let f = fixture.offset_of(s, path).unwrap();
                assert_eq!((f.offset, f.size), (l.offset, l.size), "{s}.{}", path.join("."));
            }
        }
    }

    #[test]
    fn hostile_blobs_are_errors_not_panics() {
        // Every truncation of a real blob.
        for n in 0..FIXTURE.len() {
            if let Ok(btf) = Btf::parse(&FIXTURE[..n]) {
                let _ = btf.offset_of("sk_buff", &["dev"]);
            }
        }
        // Every single-byte corruption, walked through every lookup.
        for i in 0..FIXTURE.len() {
            for v in [0u8, 0xff, 0x01, 0x80] {
                let mut b = FIXTURE.to_vec();
                b[i] = v;
                if let Ok(btf) = Btf::parse(&b) {
                    for (s, path) in super::super::program::OFFSETS {
                        let _ = btf.offset_of(s, path);
                    }
                    let _ = btf.raw_tracepoint_args("kfree_skb");
                    for id in 0..btf.len() as u32 + 2 {
                        let _ = btf.size_of(id);
                    }
                }
            }
        }
        assert!(Btf::parse(&[]).is_err());
        assert!(Btf::parse(&[0x9f, 0xeb, 1, 0]).is_err());
    }

    /// A typedef that names itself, a struct whose anonymous member is
    /// itself, an array of itself: errors, not a hang or a stack overflow.
    #[test]
    fn looping_type_ids_are_errors() {
        let mut types = Vec::new();
        let mut rec = |name: u32, info: u32, st: u32, tail: &[u32]| {
            for v in [name, info, st].iter().chain(tail) {
                types.extend_from_slice(&v.to_le_bytes());
            }
        };
        // 1: typedef "t" -> 1; 2: struct "s" { anon: 2 } size 8;
        // 3: array of 3, 4: union "u" { anon: 5 }, 5: typedef -> 4.
        rec(1, 8 << 24, 1, &[]);
        rec(3, (4 << 24) | 1, 8, &[0, 2, 0]);
        rec(0, 3 << 24, 0, &[3, 3, 4]);
        rec(5, (5 << 24) | 1, 8, &[0, 5, 0]);
        rec(0, 8 << 24, 4, &[]);
        let strings = b"\0t\0s\0u\0";
        let mut blob = Vec::new();
        blob.extend_from_slice(&MAGIC.to_le_bytes());
        blob.extend_from_slice(&[1, 0]);
        for v in [24u32, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
            blob.extend_from_slice(&v.to_le_bytes());
        }
        blob.extend_from_slice(&types);
        blob.extend_from_slice(strings);
        let btf = Btf::parse(&blob).unwrap();
        assert!(btf.resolve(1).is_err());
        assert!(btf.offset_of("s", &["x"]).is_err());
        assert!(btf.offset_of("u", &["x"]).is_err());
        assert!(btf.size_of(3).is_err());
        assert!(btf.size_of(99).is_err());
    }
}
