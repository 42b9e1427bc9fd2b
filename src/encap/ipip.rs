//! IP in IP: the outer IP header is the whole tunnel header. IPv4 in IPv4 (RFC 2003) and IPv4
//! in IPv6 (RFC 2473) are protocol / next header 4; IPv6 in IPv4 (RFC 4213 §3.5, Linux `sit`,
//! IPVS's IPv6-in-IPv4) and IPv6 in IPv6 (RFC 2473, `ip6ip6`) are 41.
//!
//! Building is [`build_outer`](super::build_outer) with [`TunnelType::Ipip`](super::TunnelType);
//! this file holds what is specific to stripping it.

use super::{inner_at, Family, Inner, StripError};

/// Bytes IPIP adds: one IPv4 header without options.
pub const OVERHEAD: usize = crate::wire::ipv4::HEADER_LEN;

/// Finds the inner packet in the outer payload (which starts right at the inner header) of an
/// outer packet of protocol `proto`: 4 carries IPv4, 41 IPv6, anything else is
/// [`StripError::WrongProtocol`].
pub fn strip(payload: &[u8], proto: u8) -> Result<Inner, StripError> {
    let want = match proto {
        4 => Family::Ipv4,
        41 => Family::Ipv6,
        _ => return Err(StripError::WrongProtocol),
    };
    inner_at(payload, 0, Some(want))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::super::tests::{params, INNER};
    use super::super::*;

    /// 192.168.1.1 -> 192.168.1.10, protocol 4, TOS 0xb8 and DF copied from the inner packet.
    static IPIP_BYTES: [u8; 52] = [
        0x45, 0xb8, 0x00, 0x34, 0x00, 0x00, 0x40, 0x00, 0x40, 0x04, 0xb6, 0xb2, //
        0xc0, 0xa8, 0x01, 0x01, 0xc0, 0xa8, 0x01, 0x0a, 0x45, 0xb8, 0x00, 0x20, //
        0x42, 0x42, 0x40, 0x00, 0x3f, 0x11, 0xe4, 0x6e, 0x0a, 0x00, 0x00, 0x01, //
        0x0a, 0x00, 0x00, 0x64, 0x9c, 0x40, 0x00, 0x35, 0x00, 0x0c, 0x70, 0x2b, //
        0x70, 0x69, 0x6e, 0x67,
    ];

    #[test]
    fn strip_fields() {
        let s = strip_ip(&IPIP_BYTES, TunnelType::Ipip, None).unwrap();
        assert_eq!(s.outer_src, Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(s.outer_dst, Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(s.inner, 20..52);
        assert_eq!(&IPIP_BYTES[s.inner], &INNER[..]);
        // A key is meaningless for IPIP and ignored.
        assert!(strip_ip(&IPIP_BYTES, TunnelType::Ipip, Some(1)).is_ok());
    }

    #[test]
    fn build_matches_bytes() {
        let mut out = [0u8; MAX_OUTER_HEADER];
        let n = build_outer(&params(TunnelType::Ipip), &INNER, &mut out).unwrap();
        assert_eq!(n, overhead(&Tunnel::Ipip));
        assert_eq!(n, 20);
        assert_eq!(&out[..n], &IPIP_BYTES[..n]);
    }

    #[test]
    fn every_prefix_is_an_error() {
        for n in 0..IPIP_BYTES.len() {
            assert!(
                strip_ip(&IPIP_BYTES[..n], TunnelType::Ipip, None).is_err(),
                "{n}"
            );
        }
    }

    #[test]
    fn wrong_type_and_bad_outer() {
        assert_eq!(
            strip_ip(&IPIP_BYTES, TunnelType::Gre, None),
            Err(StripError::WrongProtocol)
        );
        let mut b = IPIP_BYTES;
        b[11] ^= 1;
        assert_eq!(
            strip_ip(&b, TunnelType::Ipip, None),
            Err(StripError::BadOuterChecksum)
        );
        let mut b = IPIP_BYTES;
        b[20] = 0x65; // inner version 6 under protocol 4
        assert_eq!(
            strip_ip(&b, TunnelType::Ipip, None),
            Err(StripError::InnerWrongFamily)
        );
        let mut b = IPIP_BYTES;
        b[23] = 0x21; // inner total length one past the outer payload
        assert_eq!(
            strip_ip(&b, TunnelType::Ipip, None),
            Err(StripError::InnerMalformed)
        );
        let mut b = IPIP_BYTES;
        b[0] = 0x55;
        assert_eq!(
            strip_ip(&b, TunnelType::Ipip, None),
            Err(StripError::BadOuterHeader)
        );
    }

    #[test]
    fn outer_fragment_is_refused() {
        let mut b = IPIP_BYTES;
        let mut p = crate::wire::Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_flags_and_frag_offset(false, true, 0);
        p.fill_checksum();
        assert_eq!(
            strip_ip(&b, TunnelType::Ipip, None),
            Err(StripError::OuterFragment)
        );
    }
}
