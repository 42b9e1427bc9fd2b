//! The IPv6 extension header walk (RFC 8200 §4, RFC 7112, RFC 5095): [`walk`] finds the
//! upper-layer protocol and its offset, and the Fragment header's fields if there is one,
//! refusing what a director must not forward. Each refusal ([`ExtError`]) is a drop reason
//! whose [`as_str`](ExtError::as_str) is a metric label.
//!
//! Walked: Hop-by-Hop Options (only right after the fixed header), Destination Options,
//! Routing (only type ≠ 0 with Segments Left 0: the director is the destination, not a hop),
//! Fragment (once; behind a non-first fragment nothing is walked), Authentication Header (by
//! its own length unit). Terminal: ESP and No Next Header (the upper layer is that, nothing
//! behind is read). Anything else is the upper-layer protocol. At most
//! [`MAX_EXT_HEADERS`] extension headers, all within the payload; in a first fragment the
//! whole chain and the upper-layer header must be there (RFC 7112).

use super::ipv6::{Ipv6Packet, HEADER_LEN};
use super::{get_u16, get_u32, IpProtocol};

/// The most extension headers [`walk`] follows before refusing the packet (RFC 8200 allows
/// any number; no legitimate packet carries more than a handful).
pub const MAX_EXT_HEADERS: usize = 8;

/// Why [`walk`] refused a packet. `as_str()` is the drop-reason label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ExtError {
    /// More than [`MAX_EXT_HEADERS`] extension headers.
    #[error("more than 8 IPv6 extension headers")]
    TooMany,
    /// A Routing header of type 0 (deprecated, RFC 5095) or with Segments Left > 0 (the
    /// packet is meant to travel on past this node).
    #[error("IPv6 routing header of type 0 or with segments left")]
    RoutingHeader,
    /// An extension header runs past the payload (unfragmented packet).
    #[error("IPv6 extension header truncated")]
    Truncated,
    /// A first fragment does not hold the whole header chain and the upper-layer header
    /// (RFC 7112).
    #[error("IPv6 first fragment without the whole header chain")]
    ChainIncomplete,
    /// A Hop-by-Hop Options header anywhere but right after the fixed header.
    #[error("IPv6 hop-by-hop header not first")]
    HbhNotFirst,
    /// A second Fragment header.
    #[error("IPv6 fragment header twice")]
    FragmentTwice,
}

impl ExtError {
    /// A stable snake_case label, usable as a metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ExtError::TooMany => "ipv6_too_many_ext",
            ExtError::RoutingHeader => "ipv6_routing_header",
            ExtError::Truncated => "ipv6_ext_truncated",
            ExtError::ChainIncomplete => "ipv6_chain_incomplete",
            ExtError::HbhNotFirst => "ipv6_hbh_not_first",
            ExtError::FragmentTwice => "ipv6_fragment_twice",
        }
    }

    /// Every refusal, for tests and for pre-registering metric labels.
    pub const ALL: [ExtError; 6] = [
        ExtError::TooMany,
        ExtError::RoutingHeader,
        ExtError::Truncated,
        ExtError::ChainIncomplete,
        ExtError::HbhNotFirst,
        ExtError::FragmentTwice,
    ];
}

/// The extension headers a walk went through, as a bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExtSeen(pub u8);

impl ExtSeen {
    /// Hop-by-Hop Options.
    pub const HOP_BY_HOP: ExtSeen = ExtSeen(0x01);
    /// Destination Options (either place).
    pub const DEST_OPTS: ExtSeen = ExtSeen(0x02);
    /// Routing (type ≠ 0, Segments Left 0).
    pub const ROUTING: ExtSeen = ExtSeen(0x04);
    /// Fragment.
    pub const FRAGMENT: ExtSeen = ExtSeen(0x08);
    /// Authentication Header.
    pub const AH: ExtSeen = ExtSeen(0x10);
    /// Encapsulating Security Payload (terminal).
    pub const ESP: ExtSeen = ExtSeen(0x20);
    /// No Next Header (terminal).
    pub const NO_NEXT: ExtSeen = ExtSeen(0x40);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: ExtSeen) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no extension header was seen.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// The Fragment header's fields (RFC 8200 §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragmentInfo {
    /// The fragment offset in bytes (the field × 8).
    pub offset: u16,
    /// The M flag: more fragments follow.
    pub more: bool,
    /// The identification.
    pub ident: u32,
    /// Where the Fragment header starts, from the start of the IPv6 packet.
    pub header_offset: usize,
}

impl FragmentInfo {
    /// Offset 0 and M clear: an atomic fragment (RFC 6946), the whole packet.
    pub const fn is_atomic(&self) -> bool {
        self.offset == 0 && !self.more
    }

    /// Offset 0: the fragment that holds the header chain and upper-layer header.
    pub const fn is_first(&self) -> bool {
        self.offset == 0
    }
}

/// What [`walk`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv6Chain {
    /// The upper-layer protocol (see [`IpProtocol`]): TCP, UDP, ICMPv6, ..., or ESP / No Next
    /// Header, after which nothing is read. Behind a non-first fragment: the Fragment
    /// header's next header (the fragment's bytes are not a header there).
    pub upper: u8,
    /// Where the upper-layer header (or the fragment's data) starts, from the start of the
    /// IPv6 packet; at most the packet's total length.
    pub upper_offset: usize,
    /// The Fragment header, if there is one.
    pub fragment: Option<FragmentInfo>,
    /// The extension headers walked.
    pub seen: ExtSeen,
    /// How many extension headers were walked (ESP and No Next Header not counted).
    pub count: u8,
}

impl Ipv6Chain {
    /// Whether the packet is a fragment that is not the whole packet (M set or offset > 0):
    /// ports and checksums are not all here.
    pub fn is_fragment(&self) -> bool {
        self.fragment.is_some_and(|f| !f.is_atomic())
    }
}

/// The least bytes of the upper-layer header a first fragment must carry (RFC 7112 asks for
/// the header; these are the fixed parts the data path reads).
fn upper_header_min(proto: u8) -> usize {
    match proto {
        IpProtocol::TCP => 20,
        IpProtocol::UDP => 8,
        IpProtocol::ICMPV6 => 4,
        _ => 0,
    }
}

/// Walks the extension headers of `packet` (see the module doc for what is walked and
/// refused). Offsets in the result are from the start of the packet; everything read lies
/// within its payload length.
pub fn walk<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Ipv6Chain, ExtError> {
    let payload = packet.payload();
    let mut next = packet.next_header();
    let mut at = 0usize; // in `payload`
    let mut chain = Ipv6Chain {
        upper: next,
        upper_offset: HEADER_LEN,
        fragment: None,
        seen: ExtSeen::default(),
        count: 0,
    };
    // A header running past the payload: in a fragment the chain was split (RFC 7112).
    let short = |chain: &Ipv6Chain| match chain.fragment {
        Some(f) if f.more => ExtError::ChainIncomplete,
        _ => ExtError::Truncated,
    };
    loop {
        let (bit, len) = match next {
            IpProtocol::HOPOPT | IpProtocol::IPV6_OPTS | IpProtocol::IPV6_ROUTE => {
                if next == IpProtocol::HOPOPT && chain.count > 0 {
                    return Err(ExtError::HbhNotFirst);
                }
                let l = *payload.get(at + 1).ok_or(short(&chain))?;
                let len = (usize::from(l) + 1) * 8;
                let bit = match next {
                    IpProtocol::HOPOPT => ExtSeen::HOP_BY_HOP,
                    IpProtocol::IPV6_OPTS => ExtSeen::DEST_OPTS,
                    _ => {
                        // Routing type at +2, Segments Left at +3.
                        let (ty, left) = match (payload.get(at + 2), payload.get(at + 3)) {
                            (Some(&t), Some(&s)) => (t, s),
                            _ => return Err(short(&chain)),
                        };
                        if ty == 0 || left > 0 {
                            return Err(ExtError::RoutingHeader);
                        }
                        ExtSeen::ROUTING
                    }
                };
                (bit, len)
            }
            IpProtocol::AH => {
                // AH's length is in 4-byte units, minus 2 (RFC 4302 §2.2).
                let l = *payload.get(at + 1).ok_or(short(&chain))?;
                (ExtSeen::AH, (usize::from(l) + 2) * 4)
            }
            IpProtocol::IPV6_FRAG => {
                if chain.fragment.is_some() {
                    return Err(ExtError::FragmentTwice);
                }
                let h = payload.get(at..at + 8).ok_or(short(&chain))?;
                let w = get_u16(h, 2);
                let frag = FragmentInfo {
                    offset: w & 0xfff8,
                    more: w & 1 != 0,
                    ident: get_u32(h, 4),
                    header_offset: HEADER_LEN + at,
                };
                chain.fragment = Some(frag);
                if !frag.is_first() {
                    // The rest is fragment data, not headers.
                    chain.count += 1;
                    chain.seen = ExtSeen(chain.seen.0 | ExtSeen::FRAGMENT.0);
                    chain.upper = h[0];
                    chain.upper_offset = HEADER_LEN + at + 8;
                    return check_count(chain);
                }
                (ExtSeen::FRAGMENT, 8)
            }
            IpProtocol::ESP | IpProtocol::IPV6_NONXT => {
                let bit = if next == IpProtocol::ESP {
                    ExtSeen::ESP
                } else {
                    ExtSeen::NO_NEXT
                };
                chain.seen = ExtSeen(chain.seen.0 | bit.0);
                chain.upper = next;
                chain.upper_offset = HEADER_LEN + at;
                return Ok(chain);
            }
            upper => {
                chain.upper = upper;
                chain.upper_offset = HEADER_LEN + at;
                if chain.fragment.is_some_and(|f| f.more)
                    && payload.len() < at + upper_header_min(upper)
                {
                    return Err(ExtError::ChainIncomplete);
                }
                return Ok(chain);
            }
        };
        if usize::from(chain.count) == MAX_EXT_HEADERS {
            return Err(ExtError::TooMany);
        }
        if at + len > payload.len() {
            return Err(short(&chain));
        }
        next = payload[at];
        chain.count += 1;
        chain.seen = ExtSeen(chain.seen.0 | bit.0);
        at += len;
    }
}

fn check_count(chain: Ipv6Chain) -> Result<Ipv6Chain, ExtError> {
    if usize::from(chain.count) > MAX_EXT_HEADERS {
        Err(ExtError::TooMany)
    } else {
        Ok(chain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::tests::Rng;
    use crate::wire::ipv6::Ipv6Repr;
    use std::net::Ipv6Addr;

    /// An IPv6 packet whose payload is `ext` (extension headers and upper layer), first
    /// next header `first`.
    fn packet(first: u8, ext: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40 + ext.len()];
        Ipv6Repr {
            src: Ipv6Addr::LOCALHOST,
            dst: "2001:db8::1".parse().unwrap(),
            next_header: first,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
            payload_len: ext.len(),
        }
        .emit(&mut p)
        .unwrap();
        p[40..].copy_from_slice(ext);
        p
    }

    fn run(first: u8, ext: &[u8]) -> Result<Ipv6Chain, ExtError> {
        let p = packet(first, ext);
        walk(&Ipv6Packet::new_checked(&p[..]).unwrap())
    }

    const TCP_HDR: [u8; 20] = [
        0, 80, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0, 0, 0, 0, 0, 0,
    ];

    /// An 8-byte options header (HBH or destination options) with a PadN option.
    fn opts(next: u8) -> [u8; 8] {
        [next, 0, 1, 4, 0, 0, 0, 0]
    }

    fn frag(next: u8, offset: u16, more: bool, ident: u32) -> [u8; 8] {
        let w = (offset & 0xfff8) | more as u16;
        let mut h = [next, 0, 0, 0, 0, 0, 0, 0];
        h[2..4].copy_from_slice(&w.to_be_bytes());
        h[4..8].copy_from_slice(&ident.to_be_bytes());
        h
    }

    #[test]
    fn plain_tcp_has_no_extension_headers() {
        let c = run(IpProtocol::TCP, &TCP_HDR).unwrap();
        assert_eq!((c.upper, c.upper_offset, c.count), (IpProtocol::TCP, 40, 0));
        assert!(c.seen.is_empty() && c.fragment.is_none() && !c.is_fragment());
    }

    #[test]
    fn hbh_dest_routing_ah_fragment_then_tcp() {
        let mut ext = Vec::new();
        ext.extend_from_slice(&opts(IpProtocol::IPV6_OPTS));
        // Destination options, 16 bytes (length 1).
        ext.extend_from_slice(&[IpProtocol::IPV6_ROUTE, 1, 1, 12, 0, 0, 0, 0]);
        ext.extend_from_slice(&[0; 8]);
        // Routing type 4 (SRH), segments left 0, 8 bytes.
        ext.extend_from_slice(&[IpProtocol::AH, 0, 4, 0, 0, 0, 0, 0]);
        // AH, payload length 4 -> (4 + 2) * 4 = 24 bytes.
        ext.extend_from_slice(&[IpProtocol::IPV6_FRAG, 4]);
        ext.extend_from_slice(&[0; 22]);
        ext.extend_from_slice(&frag(IpProtocol::TCP, 0, true, 0xdead_beef));
        let frag_at = 40 + ext.len() - 8;
        ext.extend_from_slice(&TCP_HDR);
        let c = run(IpProtocol::HOPOPT, &ext).unwrap();
        assert_eq!(c.upper, IpProtocol::TCP);
        assert_eq!(c.upper_offset, 40 + 8 + 16 + 8 + 24 + 8);
        assert_eq!(c.count, 5);
        for bit in [
            ExtSeen::HOP_BY_HOP,
            ExtSeen::DEST_OPTS,
            ExtSeen::ROUTING,
            ExtSeen::AH,
            ExtSeen::FRAGMENT,
        ] {
            assert!(c.seen.contains(bit));
        }
        assert!(!c.seen.contains(ExtSeen::ESP));
        let f = c.fragment.unwrap();
        assert_eq!(
            f,
            FragmentInfo {
                offset: 0,
                more: true,
                ident: 0xdead_beef,
                header_offset: frag_at
            }
        );
        assert!(f.is_first() && !f.is_atomic() && c.is_fragment());
        // etherparse agrees on where the upper layer starts.
        let p = packet(IpProtocol::HOPOPT, &ext);
        let s = etherparse::SlicedPacket::from_ip(&p).unwrap();
        let ip = match s.net.unwrap() {
            etherparse::NetSlice::Ipv6(ip) => ip,
            _ => panic!("not v6"),
        };
        assert_eq!(ip.payload().ip_number, etherparse::IpNumber::TCP);
        assert_eq!(
            ip.payload().payload.as_ptr() as usize - p.as_ptr() as usize,
            c.upper_offset
        );
    }

    #[test]
    fn non_first_fragment_stops_at_the_fragment_header() {
        // Garbage after the fragment header is data, not headers.
        let mut ext = frag(IpProtocol::UDP, 1448, false, 7).to_vec();
        ext.extend_from_slice(&[IpProtocol::HOPOPT, 0xff, 0, 0]);
        let c = run(IpProtocol::IPV6_FRAG, &ext).unwrap();
        assert_eq!((c.upper, c.upper_offset, c.count), (IpProtocol::UDP, 48, 1));
        let f = c.fragment.unwrap();
        assert_eq!(
            (f.offset, f.more, f.ident, f.header_offset),
            (1448, false, 7, 40)
        );
        assert!(!f.is_first() && c.is_fragment());
        // An atomic fragment is the whole packet.
        let mut ext = frag(IpProtocol::TCP, 0, false, 9).to_vec();
        ext.extend_from_slice(&TCP_HDR);
        let c = run(IpProtocol::IPV6_FRAG, &ext).unwrap();
        assert!(c.fragment.unwrap().is_atomic() && !c.is_fragment());
        assert_eq!(c.upper_offset, 48);
    }

    #[test]
    fn esp_and_no_next_header_end_the_walk() {
        let mut ext = opts(IpProtocol::ESP).to_vec();
        ext.extend_from_slice(&[0xff; 12]);
        let c = run(IpProtocol::IPV6_OPTS, &ext).unwrap();
        assert_eq!((c.upper, c.upper_offset, c.count), (IpProtocol::ESP, 48, 1));
        assert!(c.seen.contains(ExtSeen::ESP) && c.seen.contains(ExtSeen::DEST_OPTS));
        let c = run(IpProtocol::IPV6_NONXT, &[1, 2, 3]).unwrap();
        assert_eq!(
            (c.upper, c.upper_offset, c.count),
            (IpProtocol::IPV6_NONXT, 40, 0)
        );
        assert!(c.seen.contains(ExtSeen::NO_NEXT));
    }

    #[test]
    fn refusals() {
        // Routing type 0, and type 4 with segments left.
        let rh0 = [IpProtocol::TCP, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            run(IpProtocol::IPV6_ROUTE, &rh0),
            Err(ExtError::RoutingHeader)
        );
        let rh4 = [IpProtocol::TCP, 0, 4, 1, 0, 0, 0, 0];
        assert_eq!(
            run(IpProtocol::IPV6_ROUTE, &rh4),
            Err(ExtError::RoutingHeader)
        );
        // HBH after a destination options header.
        let mut ext = opts(IpProtocol::HOPOPT).to_vec();
        ext.extend_from_slice(&opts(IpProtocol::TCP));
        assert_eq!(run(IpProtocol::IPV6_OPTS, &ext), Err(ExtError::HbhNotFirst));
        // Nine destination options headers; eight are fine.
        let chain = |n: usize| {
            let mut ext = Vec::new();
            for i in 0..n {
                let next = if i + 1 == n {
                    IpProtocol::TCP
                } else {
                    IpProtocol::IPV6_OPTS
                };
                ext.extend_from_slice(&opts(next));
            }
            ext.extend_from_slice(&TCP_HDR);
            run(IpProtocol::IPV6_OPTS, &ext)
        };
        assert_eq!(chain(8).unwrap().count, 8);
        assert_eq!(chain(9), Err(ExtError::TooMany));
        // A header longer than the payload, unfragmented: truncated.
        assert_eq!(
            run(
                IpProtocol::IPV6_OPTS,
                &[IpProtocol::TCP, 1, 0, 0, 0, 0, 0, 0]
            ),
            Err(ExtError::Truncated)
        );
        assert_eq!(
            run(IpProtocol::IPV6_OPTS, &[IpProtocol::TCP]),
            Err(ExtError::Truncated)
        );
        assert_eq!(
            run(IpProtocol::IPV6_FRAG, &[IpProtocol::TCP, 0, 0]),
            Err(ExtError::Truncated)
        );
        assert_eq!(
            run(IpProtocol::IPV6_ROUTE, &[IpProtocol::TCP, 0, 4]),
            Err(ExtError::Truncated)
        );
        assert_eq!(
            run(IpProtocol::AH, &[IpProtocol::TCP, 1, 0, 0]),
            Err(ExtError::Truncated)
        );
        // A first fragment that cuts the chain or the TCP header: chain incomplete.
        let mut ext = frag(IpProtocol::IPV6_OPTS, 0, true, 1).to_vec();
        ext.extend_from_slice(&[IpProtocol::TCP, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            run(IpProtocol::IPV6_FRAG, &ext),
            Err(ExtError::ChainIncomplete)
        );
        let mut ext = frag(IpProtocol::TCP, 0, true, 1).to_vec();
        ext.extend_from_slice(&TCP_HDR[..19]);
        assert_eq!(
            run(IpProtocol::IPV6_FRAG, &ext),
            Err(ExtError::ChainIncomplete)
        );
        // Two fragment headers.
        let mut ext = frag(IpProtocol::IPV6_FRAG, 0, true, 1).to_vec();
        ext.extend_from_slice(&frag(IpProtocol::TCP, 0, true, 1));
        assert_eq!(
            run(IpProtocol::IPV6_FRAG, &ext),
            Err(ExtError::FragmentTwice)
        );
    }

    #[test]
    fn labels_are_distinct_snake_case() {
        let labels: std::collections::BTreeSet<_> =
            ExtError::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(labels.len(), ExtError::ALL.len());
        for l in labels {
            assert!(l.starts_with("ipv6_"));
            assert!(l
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()));
        }
    }

    #[test]
    fn garbage_never_panics_and_stays_in_bounds() {
        let mut rng = Rng(0x6e);
        let mut buf = [0u8; 160];
        let kinds = [0u8, 43, 44, 50, 51, 59, 60, 6, 17, 58];
        for _ in 0..30_000 {
            let n = 40 + rng.below(buf.len() - 40);
            rng.fill(&mut buf[..n]);
            buf[0] = 0x60;
            buf[4..6].copy_from_slice(&((n - 40) as u16).to_be_bytes());
            buf[6] = kinds[rng.below(kinds.len())];
            // Bias the payload's next-header bytes towards extension headers.
            for i in (40..n).step_by(8) {
                if rng.below(2) == 0 {
                    buf[i] = kinds[rng.below(kinds.len())];
                    if i + 1 < n {
                        buf[i + 1] &= 1;
                    }
                }
            }
            let Ok(p) = Ipv6Packet::new_checked(&buf[..n]) else {
                continue;
            };
            if let Ok(c) = walk(&p) {
                assert!(c.upper_offset <= n);
                assert!(usize::from(c.count) <= MAX_EXT_HEADERS);
                if let Some(f) = c.fragment {
                    assert!(f.header_offset + 8 <= n);
                }
            }
        }
    }
}
