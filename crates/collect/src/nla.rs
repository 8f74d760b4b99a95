//! Netlink attributes (TLVs) as borrowed `(kind, value)` pairs, on top of
//! netlink-packet-core's `NlasIterator`; plus the big-endian readers that
//! netfilter attributes need.

use netlink_packet_core::{NlaBuffer, NlasIterator};

use super::netlink::NetlinkError;

/// The attributes in `buf`, in order; the first malformed one is an error.
pub fn iter(buf: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), NetlinkError>> {
    NlasIterator::new(buf).map(|nla: Result<NlaBuffer<&[u8]>, _>| {
        let nla = nla.map_err(|e| NetlinkError::Malformed(format!("attribute: {e}")))?;
        let kind = nla.kind();
        let len = nla.length() as usize;
        let value = nla
            .into_inner()
            .get(4..len)
            .ok_or_else(|| NetlinkError::Malformed(format!("attribute {kind} shorter than its header")))?;
        Ok((kind, value))
    })
}

/// Check that every attribute in `buf` is well formed.
pub fn validate(buf: &[u8]) -> Result<(), NetlinkError> {
    iter(buf).try_for_each(|a| a.map(|_| ()))
}

/// The value of the first attribute of `kind` (use after [`validate`]).
pub fn find(buf: &[u8], kind: u16) -> Option<&[u8]> {
    iter(buf).filter_map(Result::ok).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

fn fixed<const N: usize>(v: &[u8], what: &str) -> Result<[u8; N], NetlinkError> {
    v.get(..N)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| NetlinkError::Malformed(format!("{what}: {} bytes, expected {N}", v.len())))
}

pub fn u8_(v: &[u8], what: &str) -> Result<u8, NetlinkError> {
    Ok(fixed::<1>(v, what)?[0])
}
pub fn be16(v: &[u8], what: &str) -> Result<u16, NetlinkError> {
    Ok(u16::from_be_bytes(fixed(v, what)?))
}
pub fn be32(v: &[u8], what: &str) -> Result<u32, NetlinkError> {
    Ok(u32::from_be_bytes(fixed(v, what)?))
}
pub fn be64(v: &[u8], what: &str) -> Result<u64, NetlinkError> {
    Ok(u64::from_be_bytes(fixed(v, what)?))
}
pub fn ipv4(v: &[u8], what: &str) -> Result<std::net::IpAddr, NetlinkError> {
    Ok(std::net::Ipv4Addr::from(fixed::<4>(v, what)?).into())
}
pub fn ipv6(v: &[u8], what: &str) -> Result<std::net::IpAddr, NetlinkError> {
    Ok(std::net::Ipv6Addr::from(fixed::<16>(v, what)?).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_values_and_rejects_short_ones() {
        // kind 3, length 8 (4-byte header + be32 0x01020304)
        let buf = [8u8, 0, 3, 0, 1, 2, 3, 4];
        let all: Vec<_> = iter(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(all, vec![(3, &buf[4..8])]);
        assert_eq!(be32(find(&buf, 3).unwrap(), "x").unwrap(), 0x01020304);
        assert!(be64(&buf[4..8], "x").is_err());
        assert!(validate(&buf[..6]).is_err());
    }
}
