//! The few IPv6 header bytes the tunnel code reads and writes (RFC 8200 §3, §4.5), kept private
//! to `encap` until the shared `wire::ipv6` view lands; then these helpers give way to it.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |Version| Traffic Class |           Flow Label                  |
//! |         Payload Length        |  Next Header  |   Hop Limit   |
//! |                   Source Address (16 bytes)                   |
//! |                Destination Address (16 bytes)                 |
//! ```

use core::ops::Range;
use std::net::Ipv6Addr;

use super::StripError;

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;
/// Length of the fragment header (RFC 8200 §4.5).
pub const FRAG_HEADER_LEN: usize = 8;

/// Next-header values the walk over extension headers knows.
pub mod next_header {
    /// Hop-by-Hop Options.
    pub const HOP_BY_HOP: u8 = 0;
    /// IPv6 in IPv6 / in IPv4 (sit, ip6ip6).
    pub const IPV6: u8 = 41;
    /// Routing header.
    pub const ROUTING: u8 = 43;
    /// Fragment header.
    pub const FRAGMENT: u8 = 44;
    /// Destination Options.
    pub const DEST_OPTS: u8 = 60;
}

const SRC: Range<usize> = 8..24;
const DST: Range<usize> = 24..40;

/// Writes a fixed IPv6 header (no extension headers) into `out[..40]`. `out` must be at least
/// 40 bytes (the callers pass slices of a `MAX_OUTER_HEADER` array).
#[allow(clippy::too_many_arguments)]
pub fn emit(
    out: &mut [u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    payload_len: u16,
    hop_limit: u8,
    traffic_class: u8,
    flow_label: u32,
) {
    let word = 6u32 << 28 | (traffic_class as u32) << 20 | (flow_label & 0xf_ffff);
    out[0..4].copy_from_slice(&word.to_be_bytes());
    out[4..6].copy_from_slice(&payload_len.to_be_bytes());
    out[6] = next_header;
    out[7] = hop_limit;
    out[SRC].copy_from_slice(&src.octets());
    out[DST].copy_from_slice(&dst.octets());
}

/// Sets the payload length of a header written by [`emit`].
pub fn set_payload_len(out: &mut [u8], len: u16) {
    out[4..6].copy_from_slice(&len.to_be_bytes());
}

/// The traffic class of an IPv6 header's first two bytes.
pub const fn traffic_class(b0: u8, b1: u8) -> u8 {
    (b0 << 4) | (b1 >> 4)
}

/// What [`parse`] read of an outer IPv6 packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// The upper-layer protocol after the extension headers.
    pub protocol: u8,
    /// Where the upper-layer payload is in the packet (up to 40 + payload length).
    pub payload: Range<usize>,
}

fn addr(b: &[u8], r: Range<usize>) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[r]);
    Ipv6Addr::from(a)
}

/// Reads an outer IPv6 packet: version 6, payload length within the buffer (bytes after it are
/// link padding and ignored; a payload length of 0, a jumbogram, is refused), then walks
/// Hop-by-Hop, Destination Options and Routing headers (a Routing header with segments left is
/// refused: this host is not its final destination) up to the upper-layer protocol. A Fragment
/// header is [`StripError::OuterFragment`] (no reassembly here; a kernel socket reassembles).
pub fn parse(packet: &[u8]) -> Result<Parsed, StripError> {
    if packet.len() < HEADER_LEN {
        return Err(StripError::Truncated);
    }
    if packet[0] >> 4 != 6 {
        return Err(StripError::BadOuterHeader);
    }
    let plen = u16::from_be_bytes([packet[4], packet[5]]) as usize;
    if plen == 0 {
        return Err(StripError::BadOuterHeader);
    }
    let end = HEADER_LEN + plen;
    if end > packet.len() {
        return Err(StripError::Truncated);
    }
    let mut nh = packet[6];
    let mut at = HEADER_LEN;
    // Every extension header is at least 8 bytes, so the walk ends.
    loop {
        match nh {
            next_header::HOP_BY_HOP | next_header::DEST_OPTS | next_header::ROUTING => {
                let h = packet.get(at..at + 8).filter(|_| at + 8 <= end);
                let h = h.ok_or(StripError::Truncated)?;
                if nh == next_header::ROUTING && h[3] != 0 {
                    return Err(StripError::BadOuterHeader);
                }
                if nh == next_header::HOP_BY_HOP && at != HEADER_LEN {
                    return Err(StripError::BadOuterHeader);
                }
                nh = h[0];
                at += 8 * (h[1] as usize + 1);
                if at > end {
                    return Err(StripError::Truncated);
                }
            }
            next_header::FRAGMENT => return Err(StripError::OuterFragment),
            _ => break,
        }
    }
    Ok(Parsed {
        src: addr(packet, SRC),
        dst: addr(packet, DST),
        protocol: nh,
        payload: at..end,
    })
}

/// The one's complement sum of the IPv6 pseudo-header (RFC 8200 §8.1): both addresses, the
/// upper-layer length and the next header, to be [`combine`](crate::wire::checksum::combine)d
/// with the upper-layer header and payload sums.
pub fn pseudo_header(src: Ipv6Addr, dst: Ipv6Addr, protocol: u8, length: u32) -> u16 {
    let mut b = [0u8; 40];
    b[..16].copy_from_slice(&src.octets());
    b[16..32].copy_from_slice(&dst.octets());
    b[32..36].copy_from_slice(&length.to_be_bytes());
    b[39] = protocol;
    crate::wire::checksum::data(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_then_parse() {
        let mut b = [0u8; 48];
        let s: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let d: Ipv6Addr = "2001:db8::a".parse().unwrap();
        emit(&mut b, s, d, 47, 8, 64, 0xb8, 0x12345);
        assert_eq!(&b[..8], &[0x6b, 0x81, 0x23, 0x45, 0, 8, 47, 64]);
        let p = parse(&b).unwrap();
        assert_eq!((p.src, p.dst, p.protocol, p.payload), (s, d, 47, 40..48));
        assert_eq!(traffic_class(b[0], b[1]), 0xb8);
        // A destination options header, then GRE.
        let mut e = [0u8; 56];
        emit(&mut e, s, d, next_header::DEST_OPTS, 16, 64, 0, 0);
        e[40] = 47;
        let p = parse(&e).unwrap();
        assert_eq!((p.protocol, p.payload), (47, 48..56));
        // A fragment header.
        e[40] = next_header::FRAGMENT;
        e[6] = next_header::FRAGMENT;
        assert_eq!(parse(&e), Err(StripError::OuterFragment));
        for n in 0..48 {
            assert!(parse(&b[..n]).is_err(), "{n}");
        }
    }
}
