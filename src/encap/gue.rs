//! Generic UDP Encapsulation (draft-ietf-intarea-gue), as Linux `fou` and IPVS `--tun-type gue`
//! use it: a UDP datagram to the GUE port whose payload is a GUE header and the inner packet.
//!
//! ```text
//! variant 0:
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! | 0 |C|   Hlen  |  Proto/ctype  |             Flags             |
//! |                 extension fields (Hlen × 4 bytes)             |
//!
//! variant 1: no GUE header; the first two bits are 01, so an IPv4 header (0x4_) or an IPv6
//! header (0x6_) follows the UDP header directly.
//! ```

use super::{inner_at, BuildError, Family, Inner, StripError};
use crate::wire::{get_u16, put_u16, IpProtocol};

mod field {
    pub const VAR_C_HLEN: usize = 0;
    pub const PROTO_CTYPE: usize = 1;
    pub const FLAGS: core::ops::Range<usize> = 2..4;
}

/// Length of the variant 0 base header (without extension fields).
pub const HEADER_LEN: usize = field::FLAGS.end;

const C_BIT: u8 = 0x20;
const HLEN_MASK: u8 = 0x1f;

/// A view of a GUE payload: the (variant 0) header and what follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GueHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GueHeader<T> {
    /// Wraps `buffer` without checks; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        GueHeader { buffer }
    }

    /// Wraps `buffer` after checking that it holds at least 4 bytes (so every accessor can
    /// read, whatever the variant; a variant 1 IPv4 packet is longer anyway) and, for variant
    /// 0, the extension fields too.
    pub fn new_checked(buffer: T) -> Result<Self, StripError> {
        let h = Self::new_unchecked(buffer);
        let len = h.buffer.as_ref().len();
        if len < HEADER_LEN || len < h.header_len() {
            return Err(StripError::Truncated);
        }
        Ok(h)
    }

    /// The variant: the two top bits (0: GUE header, 1: IP packet directly).
    pub fn variant(&self) -> u8 {
        self.buffer.as_ref()[field::VAR_C_HLEN] >> 6
    }

    /// Variant 0: the C bit (a control message rather than data).
    pub fn control(&self) -> bool {
        self.buffer.as_ref()[field::VAR_C_HLEN] & C_BIT != 0
    }

    /// Variant 0: length of the extension fields in 32-bit words.
    pub fn hlen(&self) -> u8 {
        self.buffer.as_ref()[field::VAR_C_HLEN] & HLEN_MASK
    }

    /// Bytes before the inner packet: `4 + 4 × hlen` for variant 0, 0 for the others.
    pub fn header_len(&self) -> usize {
        if self.variant() == 0 {
            HEADER_LEN + 4 * self.hlen() as usize
        } else {
            0
        }
    }

    /// Variant 0: the IP protocol of the payload (data message) or the control type.
    /// Meaningless for other variants (it reads the second byte).
    pub fn proto_ctype(&self) -> u8 {
        self.buffer.as_ref()[field::PROTO_CTYPE]
    }

    /// Variant 0: the flags word. Meaningless for other variants.
    pub fn flags(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::FLAGS.start)
    }

    /// Variant 0: the extension fields.
    pub fn extension_fields(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN.min(self.header_len())..self.header_len()]
    }

    /// What follows the header: the inner packet.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

/// A variant 0 GUE data header without extension fields: the only kind tunlb sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GueRepr {
    /// IP protocol of the payload ([`IpProtocol::IPIP`] for IPv4).
    pub proto_ctype: u8,
}

impl GueRepr {
    /// Reads a checked header. A variant 0 data message gives its protocol (extension fields
    /// and flags are skipped); variant 1 is reported as the protocol it implies (4 for IPv4,
    /// 41 for IPv6). Control messages and variants 2-3 are errors.
    pub fn parse<T: AsRef<[u8]>>(h: &GueHeader<T>) -> Result<GueRepr, StripError> {
        match h.variant() {
            0 if h.control() => Err(StripError::GueControl),
            0 => Ok(GueRepr {
                proto_ctype: h.proto_ctype(),
            }),
            1 => match h.buffer.as_ref()[0] >> 4 {
                4 => Ok(GueRepr {
                    proto_ctype: IpProtocol::IPIP,
                }),
                6 => Ok(GueRepr { proto_ctype: 41 }),
                _ => Err(StripError::GueBadVersion),
            },
            _ => Err(StripError::GueBadVersion),
        }
    }

    /// Length of the header [`emit`](Self::emit) writes: 4.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a variant 0 header (C = 0, Hlen = 0, flags 0) into the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), BuildError> {
        if buf.len() < HEADER_LEN {
            return Err(BuildError::BufferTooSmall);
        }
        buf[field::VAR_C_HLEN] = 0;
        buf[field::PROTO_CTYPE] = self.proto_ctype;
        put_u16(buf, field::FLAGS.start, 0);
        Ok(())
    }
}

/// See [`strip_gue`](super::strip_gue).
pub fn strip(payload: &[u8]) -> Result<Inner, StripError> {
    let h = GueHeader::new_checked(payload)?;
    let repr = GueRepr::parse(&h)?;
    let family = match repr.proto_ctype {
        IpProtocol::IPIP => Family::Ipv4,
        41 => Family::Ipv6,
        _ => return Err(StripError::GueBadProtocol),
    };
    inner_at(payload, h.header_len(), Some(family))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::super::tests::{params, params_for, INNER};
    use super::super::*;
    use super::*;

    /// 192.168.1.1:65263 -> 192.168.1.10:6080, UDP checksum 0x7a08, GUE variant 0 proto 4.
    static GUE_BYTES: [u8; 64] = [
        0x45, 0xb8, 0x00, 0x40, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb6, 0x99, //
        0xc0, 0xa8, 0x01, 0x01, 0xc0, 0xa8, 0x01, 0x0a, 0xfe, 0xef, 0x17, 0xc0, //
        0x00, 0x2c, 0x7a, 0x08, 0x00, 0x04, 0x00, 0x00, 0x45, 0xb8, 0x00, 0x20, //
        0x42, 0x42, 0x40, 0x00, 0x3f, 0x11, 0xe4, 0x6e, 0x0a, 0x00, 0x00, 0x01, //
        0x0a, 0x00, 0x00, 0x64, 0x9c, 0x40, 0x00, 0x35, 0x00, 0x0c, 0x70, 0x2b, //
        0x70, 0x69, 0x6e, 0x67,
    ];

    #[test]
    fn parse_fields() {
        let udp = crate::wire::UdpPacket::new_checked(&GUE_BYTES[20..]).unwrap();
        assert_eq!(udp.src_port(), 65263);
        assert_eq!(udp.dst_port(), DEFAULT_GUE_PORT);
        assert_eq!(udp.len(), 44);
        assert!(udp.verify_checksum(
            Ipv4Addr::new(192, 168, 1, 1),
            Ipv4Addr::new(192, 168, 1, 10)
        ));
        let h = GueHeader::new_checked(udp.payload()).unwrap();
        assert_eq!(h.variant(), 0);
        assert!(!h.control());
        assert_eq!(h.hlen(), 0);
        assert_eq!(h.header_len(), 4);
        assert_eq!(h.proto_ctype(), IpProtocol::IPIP);
        assert_eq!(h.flags(), 0);
        assert_eq!(h.extension_fields(), &[] as &[u8]);
        assert_eq!(h.payload(), &INNER[..]);
        assert_eq!(GueRepr::parse(&h), Ok(GueRepr { proto_ctype: 4 }));
    }

    #[test]
    fn strip_fields() {
        assert_eq!(strip_gue(&GUE_BYTES[28..]), Ok(4..36));
        let s = strip_ip(&GUE_BYTES, TunnelType::Gue, None).unwrap();
        assert_eq!(s.outer_src, Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(s.outer_dst, Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(s.inner, 32..64);
        assert_eq!(&GUE_BYTES[s.inner], &INNER[..]);
    }

    #[test]
    fn build_matches_bytes_with_and_without_udp_checksum() {
        let mut out = [0u8; MAX_OUTER_HEADER];
        let with = Tunnel::Gue {
            port: DEFAULT_GUE_PORT,
            csum: true,
        };
        let n = build_outer(&params_for(with), &INNER, &mut out).unwrap();
        assert_eq!(n, 32);
        assert_eq!(n, overhead(&with));
        assert_eq!(out[..n], GUE_BYTES[..32]);
        let p = params(TunnelType::Gue);
        out = [0xff; MAX_OUTER_HEADER];
        build_outer(&p, &INNER, &mut out).unwrap();
        let mut expected = GUE_BYTES;
        expected[26] = 0;
        expected[27] = 0;
        assert_eq!(out[..32], expected[..32]);
        assert!(strip_ip(&expected, TunnelType::Gue, None).is_ok());
    }

    #[test]
    fn source_port_spreads_over_the_dynamic_range() {
        assert_eq!(gue_src_port(0), 49152);
        assert_eq!(gue_src_port(16383), 65535);
        assert_eq!(gue_src_port(16384), 49152);
        assert_eq!(gue_src_port(0xdead_beef), 65263);
        assert_eq!(gue_src_port(u32::MAX), 65535);
    }

    #[test]
    fn variant_1_and_extension_fields() {
        // Variant 1: the inner IPv4 packet right after the UDP header.
        assert_eq!(strip_gue(&INNER), Ok(0..32));
        // Variant 1 with IPv6 (0x6_): 32 bytes are too short for an IPv6 packet.
        let mut v6 = INNER;
        v6[0] = 0x60;
        assert_eq!(strip_gue(&v6), Err(StripError::InnerMalformed));
        v6[0] = 0x75;
        assert_eq!(strip_gue(&v6), Err(StripError::GueBadVersion));
        // Variant 0 with two words of extension fields and a flag set.
        let mut buf = [0u8; 12 + 32];
        buf[..4].copy_from_slice(&[0x02, 0x04, 0x80, 0x00]);
        buf[4..12].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        buf[12..].copy_from_slice(&INNER);
        let h = GueHeader::new_checked(&buf[..]).unwrap();
        assert_eq!(h.hlen(), 2);
        assert_eq!(h.flags(), 0x8000);
        assert_eq!(h.extension_fields(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(strip_gue(&buf), Ok(12..44));
    }

    #[test]
    fn bad_gue_headers_are_refused() {
        let base = &GUE_BYTES[28..];
        let with = |i: usize, v: u8| {
            let mut b = [0u8; 36];
            b.copy_from_slice(base);
            b[i] = v;
            strip_gue(&b)
        };
        assert_eq!(with(0, 0x20), Err(StripError::GueControl));
        assert_eq!(with(0, 0x80), Err(StripError::GueBadVersion));
        assert_eq!(with(0, 0xc0), Err(StripError::GueBadVersion));
        assert_eq!(with(1, 41), Err(StripError::InnerWrongFamily));
        assert_eq!(with(1, 47), Err(StripError::GueBadProtocol));
        assert_eq!(with(0, 0x1f), Err(StripError::Truncated));
        assert_eq!(with(4, 0x65), Err(StripError::InnerWrongFamily));
        assert_eq!(with(4, 0x55), Err(StripError::InnerNotIpv4));
        assert_eq!(with(7, 0x21), Err(StripError::InnerMalformed));
        // A wrong UDP checksum is caught by strip_ip.
        let mut b = GUE_BYTES;
        b[27] ^= 1;
        assert_eq!(
            strip_ip(&b, TunnelType::Gue, None),
            Err(StripError::BadUdpChecksum)
        );
        let mut b = GUE_BYTES;
        b[25] = 7;
        assert_eq!(strip_ip(&b, TunnelType::Gue, None), Err(StripError::BadUdp));
    }

    /// Found by the `wire_views` fuzz target: a 3-byte variant 1 buffer passed `new_checked`
    /// and `flags()` read past its end.
    #[test]
    fn short_buffers_are_refused_by_the_view() {
        assert_eq!(
            GueHeader::new_checked(&b"SFE"[..]),
            Err(StripError::Truncated)
        );
        let mut rng = crate::wire::checksum::tests::Rng(41);
        let mut buf = [0u8; 48];
        for _ in 0..20_000 {
            let n = rng.below(buf.len());
            rng.fill(&mut buf[..n]);
            if let Ok(h) = GueHeader::new_checked(&buf[..n]) {
                let _ = (
                    h.variant(),
                    h.control(),
                    h.hlen(),
                    h.proto_ctype(),
                    h.flags(),
                );
                let _ = (h.extension_fields(), h.payload(), GueRepr::parse(&h));
            }
        }
    }

    #[test]
    fn every_prefix_is_an_error() {
        for n in 0..GUE_BYTES.len() {
            assert!(
                strip_ip(&GUE_BYTES[..n], TunnelType::Gue, None).is_err(),
                "{n}"
            );
        }
        for n in 0..GUE_BYTES.len() - 28 {
            assert!(strip_gue(&GUE_BYTES[28..28 + n]).is_err(), "{n}");
        }
    }
}
