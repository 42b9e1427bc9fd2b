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

use core::ops::Range;

use super::{inner_range, BuildError, StripError};
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
        let at = field::OPTIONAL;
        put_u16(self.buffer.as_mut(), at, 0);
        let c = checksum::checksum(self.buffer.as_ref());
        put_u16(self.buffer.as_mut(), at, c);
    }
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

/// Validates a GRE packet (the outer IPv4 payload) and finds the inner IPv4 packet in it:
/// version 0, no RFC 1701 bits, protocol 0x0800, checksum verified when present, key equal to
/// `expected_key` (absent when `None`), sequence number skipped.
pub fn strip(payload: &[u8], expected_key: Option<u32>) -> Result<Range<usize>, StripError> {
    let h = GreHeader::new_checked(payload)?;
    let repr = GreRepr::parse(&h)?;
    if repr.protocol != PROTO_IPV4 {
        return Err(StripError::GreBadProtocol);
    }
    if !h.verify_checksum() {
        return Err(StripError::GreBadChecksum);
    }
    if repr.key != expected_key {
        return Err(StripError::GreKeyMismatch);
    }
    inner_range(payload, h.header_len())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::super::tests::{params, INNER};
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
        b[22] = 0x86; // IPv6
        b[23] = 0xdd;
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
        let p = OuterParams {
            gre_key: Some(42),
            ..params(TunnelType::Gre)
        };
        let n = build_outer(&p, &INNER, &mut out).unwrap();
        assert_eq!(n, 28);
        assert_eq!(n, overhead(TunnelType::Gre, true));
        assert_eq!(&out[..n], &GRE_KEY_BYTES[..n]);
        let n = build_outer(&params(TunnelType::Gre), &INNER, &mut out).unwrap();
        assert_eq!(n, 24);
        assert_eq!(n, overhead(TunnelType::Gre, false));
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
        ] {
            for n in 0..b.len() {
                assert!(strip_ip(&b[..n], TunnelType::Gre, key).is_err(), "{n}");
            }
            // The GRE header alone, every prefix.
            for n in 0..b.len() - 20 {
                assert!(strip(&b[20..20 + n], key).is_err(), "{n}");
            }
        }
    }
}
