//! GRE (RFC 2784) with the key and sequence number extensions (RFC 2890), carrying IPv4.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |C| |K|S| Reserved0       | Ver |         Protocol Type         |
//! |      Checksum (optional)      |       Reserved1 (optional)    |
//! |                         Key (optional)                        |
//! |                 Sequence Number (optional)                    |
//! ```

use super::{inner_at, BuildError, Family, GreChecksum, Inner, StripError};
use crate::wire::checksum;
use crate::wire::{get_u16, get_u32, put_u16, put_u32};

mod field {
    use core::ops::Range;

    pub const FLAGS_VER: Range<usize> = 0..2;
    pub const PROTOCOL: Range<usize> = 2..4;
    /// Where the optional fields start.
    pub const OPTIONAL: usize = 4;
}

/// The GRE protocol type of an IPv4 payload (an EtherType).
pub const PROTO_IPV4: u16 = 0x0800;
/// The GRE protocol type of an IPv6 payload (an EtherType).
pub const PROTO_IPV6: u16 = 0x86dd;

const FLAG_C: u16 = 0x8000;
const FLAG_K: u16 = 0x2000;
const FLAG_S: u16 = 0x1000;
/// Bits 1, 4 and 5 (RFC 1701 routing, strict source route, recursion): RFC 2784 §2.3 says a
/// receiver that does not implement RFC 1701 must discard the packet when any is set.
const FLAGS_RFC1701: u16 = 0x4c00;
const VERSION_MASK: u16 = 0x0007;

/// Length of a GRE header with the given optional fields.
pub const fn header_len(checksum: bool, key: bool, seq: bool) -> usize {
    field::OPTIONAL + 4 * (checksum as usize + key as usize + seq as usize)
}

/// A view of a GRE packet: the header and the payload after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GreHeader<T> {
    /// Wraps `buffer` without checks; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        GreHeader { buffer }
    }

    /// Wraps `buffer` after checking that it holds the base header and every optional field
    /// its flags announce.
    pub fn new_checked(buffer: T) -> Result<Self, StripError> {
        let h = Self::new_unchecked(buffer);
        let len = h.buffer.as_ref().len();
        if len < field::OPTIONAL || len < h.header_len() {
            return Err(StripError::Truncated);
        }
        Ok(h)
    }

    fn flags_ver(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::FLAGS_VER.start)
    }

    /// The C bit: checksum and reserved1 fields present.
    pub fn checksum_present(&self) -> bool {
        self.flags_ver() & FLAG_C != 0
    }

    /// The K bit: key field present.
    pub fn key_present(&self) -> bool {
        self.flags_ver() & FLAG_K != 0
    }

    /// The S bit: sequence number field present.
    pub fn seq_present(&self) -> bool {
        self.flags_ver() & FLAG_S != 0
    }

    /// Whether any RFC 1701-only bit (routing, strict source route, recursion) is set.
    pub fn rfc1701_bits(&self) -> bool {
        self.flags_ver() & FLAGS_RFC1701 != 0
    }

    /// The version field (0 for RFC 2784 GRE).
    pub fn version(&self) -> u8 {
        (self.flags_ver() & VERSION_MASK) as u8
    }

    /// The protocol type (an EtherType; [`PROTO_IPV4`] for IPv4).
    pub fn protocol_type(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::PROTOCOL.start)
    }

    /// Header length: 4 plus 4 for each of checksum, key, sequence number present.
    pub fn header_len(&self) -> usize {
        header_len(
            self.checksum_present(),
            self.key_present(),
            self.seq_present(),
        )
    }

    /// The checksum field, if present.
    pub fn checksum(&self) -> Option<u16> {
        self.checksum_present()
            .then(|| get_u16(self.buffer.as_ref(), field::OPTIONAL))
    }

    /// The key, if present.
    pub fn key(&self) -> Option<u32> {
        self.key_present()
            .then(|| get_u32(self.buffer.as_ref(), self.key_offset()))
    }

    /// The sequence number, if present.
    pub fn sequence(&self) -> Option<u32> {
        let at = self.key_offset() + 4 * self.key_present() as usize;
        self.seq_present()
            .then(|| get_u32(self.buffer.as_ref(), at))
    }

    fn key_offset(&self) -> usize {
        field::OPTIONAL + 4 * self.checksum_present() as usize
    }

    /// Whether the checksum over header and payload (the whole buffer) is right; true when
    /// there is no checksum.
    pub fn verify_checksum(&self) -> bool {
        !self.checksum_present() || checksum::data(self.buffer.as_ref()) == 0xffff
    }

    /// The payload after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> GreHeader<T> {
    /// Computes the checksum over the whole buffer (header and payload) and stores it. The C
    /// bit must be set.
    pub fn fill_checksum(&mut self) {
        let hl = self.header_len();
        let (header, payload) = self.buffer.as_mut().split_at_mut(hl);
        fill_checksum(header, checksum::data(payload));
    }
}

/// Stores the RFC 2784 checksum in `header` (a whole GRE header with the C bit set, as
/// [`GreRepr::emit`] writes it) for a payload whose one's complement sum
/// ([`checksum::data`]) is `payload_sum`: the complement of the sum over the header (its
/// checksum field taken as 0) and the payload. A GRE header is a multiple of 4 bytes long, so
/// the payload's sum adds as it is. The build path ([`crate::encap::build_outer`]) and the
/// per-segment fix-up of GSO ([`crate::wire::gso::fix_outer`]) both come here or do the same.
pub fn fill_checksum(header: &mut [u8], payload_sum: u16) {
    let at = field::OPTIONAL;
    put_u16(header, at, 0);
    let c = !checksum::combine(&[checksum::data(header), payload_sum]);
    put_u16(header, at, c);
}

/// A GRE header to build, or parsed from a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreRepr {
    /// Protocol type ([`PROTO_IPV4`]).
    pub protocol: u16,
    /// Whether the checksum field is present. [`emit`](Self::emit) writes it as 0; fill it
    /// with [`GreHeader::fill_checksum`] once the payload is in place.
    pub checksum: bool,
    /// The key (RFC 2890), if any.
    pub key: Option<u32>,
    /// The sequence number (RFC 2890), if any.
    pub seq: Option<u32>,
}

impl GreRepr {
    /// Reads a checked header: the version must be 0 and no RFC 1701-only bit set. The
    /// protocol type and checksum are not judged here.
    pub fn parse<T: AsRef<[u8]>>(h: &GreHeader<T>) -> Result<GreRepr, StripError> {
        if h.version() != 0 {
            return Err(StripError::GreBadVersion);
        }
        if h.rfc1701_bits() {
            return Err(StripError::GreBadFlags);
        }
        Ok(GreRepr {
            protocol: h.protocol_type(),
            checksum: h.checksum_present(),
            key: h.key(),
            seq: h.sequence(),
        })
    }

    /// Length of the header [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        header_len(self.checksum, self.key.is_some(), self.seq.is_some())
    }

    /// Writes the header into the start of `buf` (checksum field 0).
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), BuildError> {
        if buf.len() < self.buffer_len() {
            return Err(BuildError::BufferTooSmall);
        }
        let mut flags = 0;
        let mut at = field::OPTIONAL;
        if self.checksum {
            flags |= FLAG_C;
            put_u32(buf, at, 0);
            at += 4;
        }
        if let Some(key) = self.key {
            flags |= FLAG_K;
            put_u32(buf, at, key);
            at += 4;
        }
        if let Some(seq) = self.seq {
            flags |= FLAG_S;
            put_u32(buf, at, seq);
        }
        put_u16(buf, field::FLAGS_VER.start, flags);
        put_u16(buf, field::PROTOCOL.start, self.protocol);
        Ok(())
    }
}

/// Validates a GRE packet (the outer IPv4 or IPv6 payload) and finds the inner packet in it:
/// version 0, no RFC 1701 bits, protocol 0x0800 (IPv4) or 0x86DD (IPv6), checksum verified when present (unless
/// `csum` is [`GreChecksum::Skip`]), key equal to `expected_key` (absent when `None`),
/// sequence number skipped.
pub fn strip(
    payload: &[u8],
    expected_key: Option<u32>,
    csum: GreChecksum,
) -> Result<Inner, StripError> {
    let h = GreHeader::new_checked(payload)?;
    let repr = GreRepr::parse(&h)?;
    let family = match repr.protocol {
        PROTO_IPV4 => Family::Ipv4,
        PROTO_IPV6 => Family::Ipv6,
        _ => return Err(StripError::GreBadProtocol),
    };
    if csum == GreChecksum::Verify && !h.verify_checksum() {
        return Err(StripError::GreBadChecksum);
    }
    if repr.key != expected_key {
        return Err(StripError::GreKeyMismatch);
    }
    inner_at(payload, h.header_len(), Some(family))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::super::tests::{params, params_for, INNER};
    use super::super::*;
    use super::*;

    /// 192.168.1.1 -> 192.168.1.10, protocol 47, GRE with key 42.
    static GRE_KEY_BYTES: [u8; 60] = [
        0x45, 0xb8, 0x00, 0x3c, 0x00, 0x00, 0x40, 0x00, 0x40, 0x2f, 0xb6, 0x7f, //
        0xc0, 0xa8, 0x01, 0x01, 0xc0, 0xa8, 0x01, 0x0a, 0x20, 0x00, 0x08, 0x00, //
        0x00, 0x00, 0x00, 0x2a, 0x45, 0xb8, 0x00, 0x20, 0x42, 0x42, 0x40, 0x00, //
        0x3f, 0x11, 0xe4, 0x6e, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x64, //
        0x9c, 0x40, 0x00, 0x35, 0x00, 0x0c, 0x70, 0x2b, 0x70, 0x69, 0x6e, 0x67,
    ];

    /// The same inner packet in GRE with checksum (0x7c7a) and sequence number 7, no key.
    static GRE_CSUM_SEQ_BYTES: [u8; 64] = [
        0x45, 0xb8, 0x00, 0x40, 0x00, 0x00, 0x40, 0x00, 0x40, 0x2f, 0xb6, 0x7b, //
        0xc0, 0xa8, 0x01, 0x01, 0xc0, 0xa8, 0x01, 0x0a, 0x90, 0x00, 0x08, 0x00, //
        0x7c, 0x7a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x45, 0xb8, 0x00, 0x20, //
        0x42, 0x42, 0x40, 0x00, 0x3f, 0x11, 0xe4, 0x6e, 0x0a, 0x00, 0x00, 0x01, //
        0x0a, 0x00, 0x00, 0x64, 0x9c, 0x40, 0x00, 0x35, 0x00, 0x0c, 0x70, 0x2b, //
        0x70, 0x69, 0x6e, 0x67,
    ];

    #[test]
    fn parse_keyed_header_fields() {
        let h = GreHeader::new_checked(&GRE_KEY_BYTES[20..]).unwrap();
        assert!(!h.checksum_present());
        assert!(h.key_present());
        assert!(!h.seq_present());
        assert!(!h.rfc1701_bits());
        assert_eq!(h.version(), 0);
        assert_eq!(h.protocol_type(), PROTO_IPV4);
        assert_eq!(h.header_len(), 8);
        assert_eq!(h.checksum(), None);
        assert_eq!(h.key(), Some(42));
        assert_eq!(h.sequence(), None);
        assert!(h.verify_checksum());
        assert_eq!(h.payload(), &INNER[..]);
        let r = GreRepr::parse(&h).unwrap();
        assert_eq!(
            r,
            GreRepr {
                protocol: PROTO_IPV4,
                checksum: false,
                key: Some(42),
                seq: None
            }
        );
    }

    #[test]
    fn parse_checksum_and_sequence_fields() {
        let h = GreHeader::new_checked(&GRE_CSUM_SEQ_BYTES[20..]).unwrap();
        assert!(h.checksum_present());
        assert!(!h.key_present());
        assert!(h.seq_present());
        assert_eq!(h.header_len(), 12);
        assert_eq!(h.checksum(), Some(0x7c7a));
        assert_eq!(h.key(), None);
        assert_eq!(h.sequence(), Some(7));
        assert!(h.verify_checksum());
        assert_eq!(h.payload(), &INNER[..]);
    }

    #[test]
    fn strip_fields() {
        let s = strip_ip(&GRE_KEY_BYTES, TunnelType::Gre, Some(42)).unwrap();
        assert_eq!(s.outer_src, Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(s.outer_dst, Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(s.inner, 28..60);
        let s = strip_ip(&GRE_CSUM_SEQ_BYTES, TunnelType::Gre, None).unwrap();
        assert_eq!(s.inner, 32..64);
        assert_eq!(&GRE_CSUM_SEQ_BYTES[s.inner], &INNER[..]);
    }

    #[test]
    fn key_must_match_exactly() {
        let strip = |b: &[u8], k| strip_ip(b, TunnelType::Gre, k);
        assert_eq!(
            strip(&GRE_KEY_BYTES, Some(43)),
            Err(StripError::GreKeyMismatch)
        );
        assert_eq!(strip(&GRE_KEY_BYTES, None), Err(StripError::GreKeyMismatch));
        assert_eq!(
            strip(&GRE_CSUM_SEQ_BYTES, Some(42)),
            Err(StripError::GreKeyMismatch)
        );
    }

    #[test]
    fn bad_gre_headers_are_refused() {
        let strip = |b: &[u8]| strip_ip(b, TunnelType::Gre, None);
        // The outer checksum covers the outer header only: edits below the GRE header need
        // no fix-up there.
        let mut b = GRE_CSUM_SEQ_BYTES;
        b[21] = 0x01; // version 1 (PPTP)
        assert_eq!(strip(&b), Err(StripError::GreBadVersion));
        let mut b = GRE_CSUM_SEQ_BYTES;
        b[20] |= 0x40; // routing present
        assert_eq!(strip(&b), Err(StripError::GreBadFlags));
        let mut b = GRE_CSUM_SEQ_BYTES;
        b[21] = 0x80; // reserved bit 8: ignored on receipt
        assert_eq!(strip(&b), Err(StripError::GreBadChecksum)); // but it is checksummed
        let mut b = GRE_KEY_BYTES;
        b[21] = 0x80;
        assert!(strip_ip(&b, TunnelType::Gre, Some(42)).is_ok());
        let mut b = GRE_KEY_BYTES;
        b[22] = 0x86; // IPv6, but the inner packet is IPv4
        b[23] = 0xdd;
        assert_eq!(
            strip_ip(&b, TunnelType::Gre, Some(42)),
            Err(StripError::InnerWrongFamily)
        );
        b[22] = 0x88; // 0x88dd: neither
        assert_eq!(
            strip_ip(&b, TunnelType::Gre, Some(42)),
            Err(StripError::GreBadProtocol)
        );
        let mut b = GRE_CSUM_SEQ_BYTES;
        b[63] ^= 0xff; // payload byte under the GRE checksum
        assert_eq!(strip(&b), Err(StripError::GreBadChecksum));
    }

    #[test]
    fn build_matches_bytes() {
        let mut out = [0u8; MAX_OUTER_HEADER];
        let keyed = Tunnel::Gre {
            key: Some(42),
            csum: false,
        };
        let n = build_outer(&params_for(keyed), &INNER, &mut out).unwrap();
        assert_eq!(n, 28);
        assert_eq!(n, overhead(&keyed));
        assert_eq!(&out[..n], &GRE_KEY_BYTES[..n]);
        let n = build_outer(&params(TunnelType::Gre), &INNER, &mut out).unwrap();
        assert_eq!(n, 24);
        assert_eq!(
            n,
            overhead(&Tunnel::Gre {
                key: None,
                csum: false
            })
        );
    }

    /// 192.168.1.1 -> 192.168.1.10, GRE with checksum (C and K bits, flags 0xa000), key 42;
    /// the checksum 0x6c57 computed by hand (outside this crate) over the GRE header with
    /// the field 0, and the inner packet.
    static GRE_CSUM_KEY_BYTES: [u8; 64] = [
        0x45, 0xb8, 0x00, 0x40, 0x00, 0x00, 0x40, 0x00, 0x40, 0x2f, 0xb6, 0x7b, //
        0xc0, 0xa8, 0x01, 0x01, 0xc0, 0xa8, 0x01, 0x0a, 0xa0, 0x00, 0x08, 0x00, //
        0x6c, 0x57, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x45, 0xb8, 0x00, 0x20, //
        0x42, 0x42, 0x40, 0x00, 0x3f, 0x11, 0xe4, 0x6e, 0x0a, 0x00, 0x00, 0x01, //
        0x0a, 0x00, 0x00, 0x64, 0x9c, 0x40, 0x00, 0x35, 0x00, 0x0c, 0x70, 0x2b, //
        0x70, 0x69, 0x6e, 0x67,
    ];

    const CSUM_KEY: Tunnel = Tunnel::Gre {
        key: Some(42),
        csum: true,
    };

    /// The Internet checksum written out the slow way (RFC 1071 §4.1), independent of
    /// [`crate::wire::checksum`].
    fn rfc1071(bytes: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for pair in bytes.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            sum += hi | pair.get(1).map_or(0, |&lo| u32::from(lo));
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn parse_checksum_and_key_fields() {
        let h = GreHeader::new_checked(&GRE_CSUM_KEY_BYTES[20..]).unwrap();
        assert!(h.checksum_present());
        assert!(h.key_present());
        assert!(!h.seq_present());
        assert!(!h.rfc1701_bits());
        assert_eq!(h.version(), 0);
        assert_eq!(h.protocol_type(), PROTO_IPV4);
        assert_eq!(h.header_len(), 12);
        assert_eq!(h.checksum(), Some(0x6c57));
        assert_eq!(&GRE_CSUM_KEY_BYTES[26..28], &[0, 0], "Reserved1");
        assert_eq!(h.key(), Some(42));
        assert_eq!(h.sequence(), None);
        assert!(h.verify_checksum());
        assert_eq!(h.payload(), &INNER[..]);
        assert_eq!(
            GreRepr::parse(&h).unwrap(),
            GreRepr {
                protocol: PROTO_IPV4,
                checksum: true,
                key: Some(42),
                seq: None
            }
        );
    }

    #[test]
    fn build_with_checksum_matches_bytes() {
        let mut out = [0u8; MAX_OUTER_HEADER];
        let n = build_outer(&params_for(CSUM_KEY), &INNER, &mut out).unwrap();
        assert_eq!(n, 32);
        assert_eq!(n, overhead(&CSUM_KEY));
        assert_eq!(&out[..n], &GRE_CSUM_KEY_BYTES[..n]);
        // Without a key: C bit only, 0x8000, and a checksum 0x2000 larger (the flags word
        // lost 0x2000, the key word 0x002a).
        let csum = Tunnel::Gre {
            key: None,
            csum: true,
        };
        let n = build_outer(&params_for(csum), &INNER, &mut out).unwrap();
        assert_eq!(n, 28);
        assert_eq!(&out[20..24], &[0x80, 0x00, 0x08, 0x00]);
        let mut whole = out[20..n].to_vec();
        whole.extend_from_slice(&INNER);
        assert_eq!(rfc1071(&whole), 0);
        whole[4..6].copy_from_slice(&[0, 0]);
        assert_eq!(u16::from_be_bytes([out[24], out[25]]), rfc1071(&whole));
    }

    /// The GRE checksum round trip: built with the checksum, the bytes carry the C bit and
    /// the checksum an independent computation gives, the strip verifies it, and any one
    /// corrupted byte under it is refused as a bad checksum.
    #[test]
    fn checksum_round_trip_and_corruption() {
        let mut rng = crate::wire::checksum::tests::Rng(47);
        for round in 0..200 {
            let len = 28 + rng.below(1400);
            let mut inner = crate::wire::testing::udp_packet(
                Ipv4Addr::new(10, 0, 0, 1),
                40000,
                Ipv4Addr::new(10, 0, 0, 100),
                53,
                len - 28,
            );
            rng.fill(&mut inner[28..]);
            let key = (round % 2 == 0).then(|| rng.next_u64() as u32);
            let t = Tunnel::Gre { key, csum: true };
            let mut out = [0u8; MAX_OUTER_HEADER];
            let n = build_outer(&params_for(t), &inner, &mut out).unwrap();
            let mut pkt = out[..n].to_vec();
            pkt.extend_from_slice(&inner);
            // C bit, Reserved1 zero, the checksum RFC 1071 gives over GRE header + payload.
            assert_eq!(pkt[20] & 0x80, 0x80);
            assert_eq!(&pkt[26..28], &[0, 0]);
            let mut zeroed = pkt[20..].to_vec();
            zeroed[4..6].copy_from_slice(&[0, 0]);
            assert_eq!(u16::from_be_bytes([pkt[24], pkt[25]]), rfc1071(&zeroed));
            let s = strip_ip(&pkt, TunnelType::Gre, key).unwrap();
            assert_eq!(&pkt[s.inner], &inner[..]);
            // One bit flipped anywhere under the GRE checksum (the outer header checksum
            // covers only the outer header) is refused as a bad GRE checksum, or earlier by
            // the flag, version or protocol checks when it hit those.
            let at = 20 + rng.below(pkt.len() - 20);
            let mut bad = pkt.clone();
            bad[at] ^= 1 << rng.below(8);
            let got = strip_ip(&bad, TunnelType::Gre, key);
            if at < 24 {
                assert!(got.is_err(), "byte {at}");
            } else {
                assert_eq!(got, Err(StripError::GreBadChecksum), "byte {at}");
            }
        }
    }

    #[test]
    fn a_bad_checksum_is_refused_unless_skipped() {
        let mut b = GRE_CSUM_KEY_BYTES;
        b[63] ^= 0x20; // a payload byte
        assert_eq!(
            strip_ip(&b, TunnelType::Gre, Some(42)),
            Err(StripError::GreBadChecksum)
        );
        let s = strip_ip_with(&b, TunnelType::Gre, Some(42), GreChecksum::Skip).unwrap();
        assert_eq!(s.inner, 32..64);
        // Skipping the checksum skips nothing else.
        assert_eq!(
            strip_ip_with(&b, TunnelType::Gre, Some(7), GreChecksum::Skip),
            Err(StripError::GreKeyMismatch)
        );
        let mut b = GRE_CSUM_KEY_BYTES;
        b[24] ^= 0xff; // the checksum field itself
        assert_eq!(
            strip_ip(&b, TunnelType::Gre, Some(42)),
            Err(StripError::GreBadChecksum)
        );
    }

    #[test]
    fn repr_with_checksum_and_sequence_matches_bytes() {
        let r = GreRepr {
            protocol: PROTO_IPV4,
            checksum: true,
            key: None,
            seq: Some(7),
        };
        assert_eq!(r.buffer_len(), 12);
        let mut buf = [0u8; 44];
        r.emit(&mut buf).unwrap();
        buf[12..].copy_from_slice(&INNER);
        GreHeader::new_unchecked(&mut buf[..]).fill_checksum();
        assert_eq!(buf, GRE_CSUM_SEQ_BYTES[20..]);
        assert_eq!(r.emit(&mut buf[..11]), Err(BuildError::BufferTooSmall));
    }

    #[test]
    fn every_prefix_is_an_error() {
        for (b, key) in [
            (&GRE_KEY_BYTES[..], Some(42)),
            (&GRE_CSUM_SEQ_BYTES[..], None),
            (&GRE_CSUM_KEY_BYTES[..], Some(42)),
        ] {
            for n in 0..b.len() {
                assert!(strip_ip(&b[..n], TunnelType::Gre, key).is_err(), "{n}");
            }
            // The GRE header alone, every prefix.
            for n in 0..b.len() - 20 {
                assert!(
                    strip(&b[20..20 + n], key, GreChecksum::Verify).is_err(),
                    "{n}"
                );
            }
        }
    }
}
