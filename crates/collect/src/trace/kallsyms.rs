//! Kernel addresses to `symbol+0xoffset`, from /proc/kallsyms: the
//! `location` of a drop (the function that freed the packet) named as
//! `perf` and `dropwatch` name it. Loaded once per query, bounded.
//!
//! The addresses in a tracepoint's raw record are real (only printing
//! with %p hashes them). /proc/kallsyms shows real addresses to a reader
//! with CAP_SYSLOG while kernel.kptr_restrict is 0 or 1, and zeros to
//! everyone when it is 2 (or to a reader without CAP_SYSLOG): then
//! [`Kallsyms::load`] says so in one line and locations stay numbers.

use std::io::{BufRead, BufReader, Read};

use super::error::TraceError;

/// /proc/kallsyms is ~15 MB on a distribution kernel with modules; past
/// this much text the rest is not read (and the table is told).
const MAX_BYTES: u64 = 64 << 20;
/// Symbols kept at most.
const MAX_SYMBOLS: usize = 1 << 21;

/// Text symbols sorted by address; names in one arena.
#[derive(Debug, Default)]
pub struct Kallsyms {
    /// (address, start of name in `names`, length, module start, length)
    symbols: Vec<(u64, u32, u16, u32, u16)>,
    names: String,
    /// True when the file held more than was read.
    pub cut: bool,
}

/// A resolved address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol<'a> {
    pub name: &'a str,
    pub offset: u64,
    /// The module the function is in, None for the kernel image.
    pub module: Option<&'a str>,
}

impl std::fmt::Display for Symbol<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}+{:#x}", self.name, self.offset)?;
        match self.module {
            Some(m) => write!(f, " [{m}]"),
            None => Ok(()),
        }
    }
}

impl Kallsyms {
    pub fn load() -> Result<Kallsyms, TraceError> {
        let file = std::fs::File::open("/proc/kallsyms").map_err(|e| TraceError::sys("reading /proc/kallsyms", e))?;
        let k = Kallsyms::parse(BufReader::new(file.take(MAX_BYTES)))
            .map_err(|e| TraceError::sys("reading /proc/kallsyms", e))?;
        if k.symbols.is_empty() {
            return Err(TraceError::sys(
                "symbols",
                std::io::Error::other(
                    "/proc/kallsyms shows no addresses (kernel.kptr_restrict=2, or no CAP_SYSLOG); locations stay numbers",
                ),
            ));
        }
        Ok(k)
    }

    /// Parse `ADDRESS TYPE NAME [MODULE]` lines; keeps text symbols (t, T,
    /// w, W) at non-zero addresses.
    pub fn parse(mut input: impl BufRead) -> std::io::Result<Kallsyms> {
        let mut k = Kallsyms::default();
        let mut line = Vec::new();
        loop {
            line.clear();
            if input.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            if k.symbols.len() >= MAX_SYMBOLS {
                k.cut = true;
                break;
            }
            let text = String::from_utf8_lossy(&line);
            let mut parts = text.split_ascii_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next()) else { continue };
            if !matches!(kind, "t" | "T" | "w" | "W") || name.len() > u16::MAX as usize {
                continue;
            }
            let Ok(addr) = u64::from_str_radix(addr, 16) else { continue };
            if addr == 0 {
                continue;
            }
            let module = parts.next().and_then(|m| m.strip_prefix('[')).and_then(|m| m.strip_suffix(']')).unwrap_or("");
            let (Ok(at), Ok(mat)) = (u32::try_from(k.names.len()), u32::try_from(k.names.len() + name.len())) else {
                k.cut = true;
                break;
            };
            k.names.push_str(name);
            k.names.push_str(&module[..module.len().min(u16::MAX as usize)]);
            k.symbols.push((addr, at, name.len() as u16, mat, module.len().min(u16::MAX as usize) as u16));
        }
        // Last line may be cut by the byte bound; a file that long was cut.
        k.cut |= !line.is_empty() && !line.ends_with(b"\n");
        k.symbols.sort_by_key(|s| s.0);
        k.names.shrink_to_fit();
        k.symbols.shrink_to_fit();
        Ok(k)
    }

    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// The function `addr` is in: the nearest text symbol at or below it.
    pub fn resolve(&self, addr: u64) -> Option<Symbol<'_>> {
        let i = self.symbols.partition_point(|s| s.0 <= addr).checked_sub(1)?;
        let &(start, at, len, mat, mlen) = self.symbols.get(i)?;
        let name = self.names.get(at as usize..at as usize + len as usize)?;
        let module = self.names.get(mat as usize..mat as usize + mlen as usize).filter(|m| !m.is_empty());
        Some(Symbol { name, offset: addr - start, module })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_nearest_text_symbol_below() {
        let text = "ffffffff81000000 T _stext\nffffffff81000100 t helper\nffffffff81000200 D some_data\n\
            ffffffffc0001000 t nft_do_chain\t[nf_tables]\n0000000000000000 T hidden\nzz T bad\nshort\n";
        let k = Kallsyms::parse(text.as_bytes()).unwrap();
        assert_eq!(k.len(), 3);
        let s = k.resolve(0xffffffff81000234).unwrap();
        assert_eq!((s.name, s.offset, s.module), ("helper", 0x134, None));
        assert_eq!(s.to_string(), "helper+0x134");
        let m = k.resolve(0xffffffffc0001010).unwrap();
        assert_eq!(m.to_string(), "nft_do_chain+0x10 [nf_tables]");
        assert_eq!(k.resolve(0x1000), None);
        // kptr_restrict=2: every address reads as zero.
        let hidden = Kallsyms::parse("0000000000000000 T _stext\n0000000000000000 t x\n".as_bytes()).unwrap();
        assert!(hidden.is_empty());
    }

    #[test]
    fn real_kallsyms_names_kfree_skb_reason() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let k = Kallsyms::load().unwrap();
        assert!(k.len() > 10_000 && !k.cut, "{}", k.len());
        // The address of a known function resolves to itself.
        let text = std::fs::read_to_string("/proc/kallsyms").unwrap();
        let line =
            text.lines().find(|l| l.ends_with(" T sk_skb_reason_drop") || l.ends_with(" T kfree_skb_list_reason"));
        let line = line.expect("a drop function in kallsyms");
        let mut p = line.split(' ');
        let addr = u64::from_str_radix(p.next().unwrap(), 16).unwrap();
        let name = p.nth(1).unwrap();
        assert_eq!(k.resolve(addr + 4).unwrap().to_string(), format!("{name}+0x4"));
    }
}
