//! Socket state names, spelled the way `ss` prints them, so queries written
//! by people who read `ss` output match (`state = 'ESTAB'`).

/// `ss` names indexed by the kernel's TCP state number (include/net/tcp_states.h).
/// 12 is TCP_NEW_SYN_RECV (a request socket), which `ss` also shows as SYN-RECV.
const NAMES: [&str; 13] = [
    "UNKNOWN",
    "ESTAB",
    "SYN-SENT",
    "SYN-RECV",
    "FIN-WAIT-1",
    "FIN-WAIT-2",
    "TIME-WAIT",
    "UNCONN",
    "CLOSE-WAIT",
    "LAST-ACK",
    "LISTEN",
    "CLOSING",
    "SYN-RECV",
];

/// TCP_ESTABLISHED: also a connected UDP or raw socket.
pub const ESTABLISHED: u8 = 1;
/// TCP_CLOSE: an unconnected UDP or raw socket (ss: UNCONN).
pub const CLOSE: u8 = 7;
/// TCP_LISTEN, the kernel's number for a listening socket.
pub const LISTEN: u8 = 10;

/// Every name a `state` column can hold, in kernel order, without repeats.
pub const ALL: [&str; 11] = [
    "ESTAB",
    "SYN-SENT",
    "SYN-RECV",
    "FIN-WAIT-1",
    "FIN-WAIT-2",
    "TIME-WAIT",
    "UNCONN",
    "CLOSE-WAIT",
    "LAST-ACK",
    "LISTEN",
    "CLOSING",
];

pub fn name(state: u8) -> &'static str {
    NAMES.get(state as usize).copied().unwrap_or("UNKNOWN")
}

/// The kernel's number (TCP_*) for a state name as ss spells it; `None`
/// for a string that is no state name and for 'SYN-RECV', which is two
/// kernel states (3, a full socket; 12, a request socket).
pub fn number(name: &str) -> Option<u8> {
    if name == "SYN-RECV" || !ALL.contains(&name) {
        return None;
    }
    NAMES.iter().position(|n| *n == name).and_then(|n| u8::try_from(n).ok())
}

/// The kernel state bits (1 << TCP_*) a state name stands for; `None` for a
/// string that is no state name.
pub fn bits(name: &str) -> Option<u32> {
    match name {
        // A SYN-RECV row may be a full socket (3) or a request socket (12).
        "SYN-RECV" => Some(1 << 3 | 1 << 12),
        _ => number(name).map(|n| 1 << n),
    }
}

/// The state `word` was probably meant as, spelled as ss prints it: the
/// same name in another case or with '_' for '-' (`time_wait`), or the name
/// other tools use (ESTABLISHED, CLOSED). None when nothing is close.
pub fn ss_spelling(word: &str) -> Option<&'static str> {
    let upper = word.to_ascii_uppercase().replace('_', "-");
    match upper.as_str() {
        "ESTABLISHED" => Some("ESTAB"),
        "CLOSED" | "CLOSE" => Some("UNCONN"),
        u => ALL.iter().copied().find(|s| *s == u),
    }
}

/// True when `word` is `state` in another case or with '_' for '-', not
/// another tool's name for it.
pub fn is_respelling(word: &str, state: &str) -> bool {
    word.to_ascii_uppercase().replace('_', "-") == state
}

/// All states: what a dump asks for when no state filter applies.
pub const ALL_BITS: u32 = 0xfff << 1 | 1 << 12;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_names_find_the_ss_spelling() {
        assert_eq!(ss_spelling("time_wait"), Some("TIME-WAIT"));
        assert!(is_respelling("time_wait", "TIME-WAIT"));
        assert_eq!(ss_spelling("established"), Some("ESTAB"));
        assert!(!is_respelling("established", "ESTAB"));
        assert_eq!(ss_spelling("Closed"), Some("UNCONN"));
        assert_eq!(ss_spelling("nope"), None);
    }

    #[test]
    fn names_round_trip_to_bits() {
        for n in ALL {
            let b = bits(n).unwrap();
            let s = b.trailing_zeros() as u8;
            assert_eq!(name(s), n);
            assert_eq!(b & ALL_BITS, b);
        }
        assert_eq!(bits("ESTABLISHED"), None);
        assert_eq!(bits("UNKNOWN"), None);
        assert_eq!(name(12), "SYN-RECV");
        assert_eq!(name(200), "UNKNOWN");
    }

    #[test]
    fn numbers_are_the_kernels() {
        assert_eq!(
            (number("ESTAB"), number("SYN-SENT"), number("UNCONN"), number("LISTEN")),
            (Some(1), Some(2), Some(7), Some(10))
        );
        for n in ALL.iter().filter(|n| **n != "SYN-RECV") {
            assert_eq!(name(number(n).unwrap()), *n);
        }
        assert_eq!((number("SYN-RECV"), number("UNKNOWN"), number("ESTABLISHED")), (None, None, None));
    }
}
