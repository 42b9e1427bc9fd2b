//! IPv4 (RFC 791): the [`Ipv4Packet`] view and the [`Ipv4Repr`] builder for plain 20-byte headers.

use std::net::Ipv4Addr;

use super::checksum;
use super::{get_u16, put_u16, Error};

mod field {
    use core::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// Flag bits in the flags/fragment-offset word.
const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 datagram: header, options and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without checks; accessors may panic if it is not a valid IPv4 packet.
    /// Use for buffers this process built itself.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` after checking everything the accessors rely on: at least 20 bytes,
    /// version 4, IHL >= 5, header length within the buffer, and a total length that is at
    /// least the header length and at most the buffer length. Trailing bytes past the total
    /// length (link padding) are allowed and ignored by [`payload`](Self::payload).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The checks of [`new_checked`](Self::new_checked).
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::BadVersion);
        }
        let hlen = self.header_len();
        if hlen < HEADER_LEN || hlen > len {
            return Err(Error::BadHeaderLen);
        }
        let total = self.total_len() as usize;
        if total < hlen || total > len {
            return Err(Error::BadLength);
        }
        Ok(())
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole underlying buffer (may extend past [`total_len`](Self::total_len)).
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The version field (4 for a valid packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4), options included.
    pub fn header_len(&self) -> usize {
        ((self.buffer.as_ref()[field::VER_IHL] & 0x0f) as usize) * 4
    }

    /// The whole TOS byte: DSCP (upper 6 bits) and ECN (lower 2 bits).
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// The total length field: header + payload, in bytes.
    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// The identification field.
    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT.start)
    }

    fn flags_offset(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::FLG_OFF.start)
    }

    /// The Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & FLAG_DF != 0
    }

    /// The More Fragments flag.
    pub fn more_frags(&self) -> bool {
        self.flags_offset() & FLAG_MF != 0
    }

    /// The fragment offset, in bytes (the field × 8).
    pub fn frag_offset(&self) -> u16 {
        (self.flags_offset() & OFFSET_MASK) << 3
    }

    /// Whether this datagram is a fragment (first or later): MF set or a non-zero offset.
    pub fn is_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The payload's IP protocol number (see [`IpProtocol`](super::IpProtocol)).
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// The header checksum field.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Whether the header checksum (over the header and its options) is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(&self.buffer.as_ref()[..self.header_len()]) == 0xffff
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        addr(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        addr(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// The header bytes, options included.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The options bytes (empty for a 20-byte header).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The payload: after the options, up to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.total_len() as usize]
    }

    /// The datagram: header and payload, up to the total length (link padding cut off).
    pub fn packet(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.total_len() as usize]
    }
}

fn addr(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version 4 and the header length in bytes (a multiple of 4, 20..=60).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }

    /// Sets the TOS byte (DSCP + ECN). The checksum is not updated.
    pub fn set_dscp_ecn(&mut self, tos: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = tos;
    }

    /// Sets the total length field. The checksum is not updated: call
    /// [`fill_checksum`](Self::fill_checksum) afterwards.
    pub fn set_total_len(&mut self, len: u16) {
        put_u16(self.buffer.as_mut(), field::LENGTH.start, len);
    }

    /// Sets the identification field. The checksum is not updated.
    pub fn set_ident(&mut self, ident: u16) {
        put_u16(self.buffer.as_mut(), field::IDENT.start, ident);
    }

    /// Sets the flags (DF, MF) and fragment offset (in bytes, a multiple of 8). The checksum is
    /// not updated.
    pub fn set_flags_and_frag_offset(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut w = (offset >> 3) & OFFSET_MASK;
        if dont_frag {
            w |= FLAG_DF;
        }
        if more_frags {
            w |= FLAG_MF;
        }
        put_u16(self.buffer.as_mut(), field::FLG_OFF.start, w);
    }

    /// Sets the TTL and updates the header checksum incrementally.
    pub fn set_ttl(&mut self, ttl: u8) {
        let buf = self.buffer.as_mut();
        let old = get_u16(buf, field::TTL);
        buf[field::TTL] = ttl;
        let new = get_u16(buf, field::TTL);
        let c = checksum::update_u16(get_u16(buf, field::CHECKSUM.start), old, new);
        put_u16(buf, field::CHECKSUM.start, c);
    }

    /// Sets the protocol field. The checksum is not updated.
    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    /// Sets the checksum field as given.
    pub fn set_checksum(&mut self, csum: u16) {
        put_u16(self.buffer.as_mut(), field::CHECKSUM.start, csum);
    }

    /// Sets the source address and updates the header checksum incrementally. A transport
    /// checksum that covers the pseudo-header must be updated by the caller (e.g.
    /// [`TcpPacket::set_checksum`](super::TcpPacket::set_checksum) with
    /// [`checksum::update_addr`]).
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        let old = self.src_addr();
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
        let c = checksum::update_addr(self.checksum(), old, addr);
        self.set_checksum(c);
    }

    /// Sets the destination address and updates the header checksum incrementally (see
    /// [`set_src_addr`](Self::set_src_addr) about transport checksums).
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        let old = self.dst_addr();
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
        let c = checksum::update_addr(self.checksum(), old, addr);
        self.set_checksum(c);
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hlen = self.header_len();
        let c = checksum::checksum(&self.buffer.as_ref()[..hlen]);
        self.set_checksum(c);
    }

    /// The payload, mutable (after the options, up to the total length).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), self.total_len() as usize);
        &mut self.buffer.as_mut()[start..end]
    }
}

/// A plain IPv4 header (no options) to build, or parsed from a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Payload protocol (see [`IpProtocol`](super::IpProtocol)).
    pub protocol: u8,
    /// The TOS byte (DSCP + ECN).
    pub tos: u8,
    /// The Don't Fragment flag.
    pub dont_frag: bool,
    /// Time to live.
    pub ttl: u8,
    /// Payload length in bytes (total length minus header length).
    pub payload_len: usize,
    /// Identification.
    pub ident: u16,
}

impl Ipv4Repr {
    /// Reads the header of a checked packet. Fails on a bad header checksum; options are
    /// skipped (not represented), fragment fields other than DF are not represented.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr, Error> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        Ok(Ipv4Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            protocol: packet.protocol(),
            tos: packet.dscp_ecn(),
            dont_frag: packet.dont_frag(),
            ttl: packet.ttl(),
            payload_len: packet.total_len() as usize - packet.header_len(),
            ident: packet.ident(),
        })
    }

    /// Length of the header [`emit`](Self::emit) writes: always 20.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 20-byte header, checksum included, into the start of `buf`. Fails if `buf`
    /// is shorter than 20 bytes or the total length would not fit 16 bits.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), Error> {
        let total = HEADER_LEN + self.payload_len;
        if buf.len() < HEADER_LEN || total > u16::MAX as usize {
            return Err(Error::BufferTooSmall);
        }
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..HEADER_LEN]);
        p.set_version_and_header_len(HEADER_LEN);
        p.set_dscp_ecn(self.tos);
        p.set_total_len(total as u16);
        p.set_ident(self.ident);
        p.set_flags_and_frag_offset(self.dont_frag, false, 0);
        p.buffer[field::TTL] = self.ttl;
        p.set_protocol(self.protocol);
        p.buffer[field::SRC_ADDR].copy_from_slice(&self.src.octets());
        p.buffer[field::DST_ADDR].copy_from_slice(&self.dst.octets());
        let (s, d) = (u32::from(self.src), u32::from(self.dst));
        let df = if self.dont_frag { FLAG_DF } else { 0 };
        let sum = (0x4500 | u32::from(self.tos))
            + total as u32
            + u32::from(self.ident)
            + u32::from(df)
            + (u32::from(self.ttl) << 8 | u32::from(self.protocol))
            + (s >> 16)
            + (s & 0xffff)
            + (d >> 16)
            + (d & 0xffff);
        let sum = (sum & 0xffff) + (sum >> 16);
        let sum = (sum & 0xffff) + (sum >> 16);
        p.set_checksum(!(sum as u16));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::tests::Rng;
    use crate::wire::IpProtocol;

    /// A TCP SYN from 10.0.0.1 to 10.0.0.2: 20-byte header, DF, TTL 64, 4 payload bytes.
    static BYTES: [u8; 24] = [
        0x45, 0x10, 0x00, 0x18, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x14, 0x9a, 0x0a, 0x00, 0x00,
        0x01, 0x0a, 0x00, 0x00, 0x02, 0xaa, 0xbb, 0xcc, 0xdd,
    ];

    /// A header with 4 bytes of options (NOP NOP NOP EOL), MF set, offset 1480 bytes.
    static OPT_BYTES: [u8; 28] = [
        0x46, 0x00, 0x00, 0x1c, 0x00, 0x01, 0x20, 0xb9, 0x05, 0x11, 0xa5, 0xe0, 0xc0, 0x00, 0x02,
        0x01, 0xc6, 0x33, 0x64, 0x01, 0x01, 0x01, 0x01, 0x00, 0x01, 0x02, 0x03, 0x04,
    ];

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            protocol: IpProtocol::TCP,
            tos: 0x10,
            dont_frag: true,
            ttl: 64,
            payload_len: 4,
            ident: 0x1234,
        }
    }

    #[test]
    fn parse_fields() {
        let p = Ipv4Packet::new_checked(&BYTES[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.dscp_ecn(), 0x10);
        assert_eq!(p.total_len(), 24);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::TCP);
        assert_eq!(p.checksum(), 0x149a);
        assert!(p.verify_checksum());
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(p.options(), &[] as &[u8]);
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(Ipv4Repr::parse(&p).unwrap(), repr());
    }

    #[test]
    fn parse_options_and_fragment() {
        let p = Ipv4Packet::new_checked(&OPT_BYTES[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert!(p.more_frags());
        assert!(!p.dont_frag());
        assert_eq!(p.frag_offset(), 1480);
        assert!(p.is_fragment());
        assert_eq!(p.ttl(), 5);
        assert_eq!(p.protocol(), IpProtocol::UDP);
        assert!(p.verify_checksum());
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        let r = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(r.payload_len, 4);
    }

    #[test]
    fn emit_matches_bytes() {
        let r = repr();
        assert_eq!(r.buffer_len(), 20);
        let mut buf = [0u8; 24];
        r.emit(&mut buf).unwrap();
        buf[20..].copy_from_slice(&BYTES[20..]);
        assert_eq!(buf, BYTES);
        assert_eq!(r.emit(&mut [0u8; 19]), Err(Error::BufferTooSmall));
        let huge = Ipv4Repr {
            payload_len: 65_516,
            ..r
        };
        assert_eq!(huge.emit(&mut buf), Err(Error::BufferTooSmall));
    }

    #[test]
    fn emitted_checksum_is_the_header_sum_for_extreme_fields() {
        // emit sums the fields directly instead of re-reading the header; it must agree with
        // the checksum computed over the written bytes for every corner of every field.
        for (tos, df, ttl, ident, len, src, dst) in [
            (
                0,
                false,
                0,
                0,
                0,
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED,
            ),
            (
                0xff,
                true,
                0xff,
                0xffff,
                65_515,
                Ipv4Addr::BROADCAST,
                Ipv4Addr::BROADCAST,
            ),
            (
                0xb8,
                true,
                64,
                0x8001,
                1480,
                Ipv4Addr::new(10, 3, 0, 11),
                Ipv4Addr::new(255, 255, 0, 1),
            ),
            (
                3,
                false,
                1,
                1,
                1,
                Ipv4Addr::new(0, 0, 255, 255),
                Ipv4Addr::new(255, 255, 255, 0),
            ),
        ] {
            let r = Ipv4Repr {
                src,
                dst,
                protocol: IpProtocol::UDP,
                tos,
                dont_frag: df,
                ttl,
                payload_len: len,
                ident,
            };
            let mut buf = [0u8; 20];
            r.emit(&mut buf).unwrap();
            let emitted = u16::from_be_bytes([buf[10], buf[11]]);
            let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
            p.fill_checksum();
            assert_eq!(emitted, p.checksum(), "{r:?}");
        }
    }

    #[test]
    fn build_with_setters_matches_bytes() {
        let mut buf = [0u8; 28];
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        p.set_version_and_header_len(24);
        p.set_total_len(28);
        p.set_ident(1);
        p.set_flags_and_frag_offset(false, true, 1480);
        p.buffer[field::TTL] = 5;
        p.set_protocol(IpProtocol::UDP);
        p.set_src_addr(Ipv4Addr::new(192, 0, 2, 1));
        p.set_dst_addr(Ipv4Addr::new(198, 51, 100, 1));
        p.buffer[20..24].copy_from_slice(&[1, 1, 1, 0]);
        p.payload_mut().copy_from_slice(&[1, 2, 3, 4]);
        p.fill_checksum();
        assert_eq!(buf, OPT_BYTES);
    }

    #[test]
    fn every_prefix_is_rejected_not_panicking() {
        for sample in [&BYTES[..], &OPT_BYTES[..]] {
            for n in 0..sample.len() {
                assert!(Ipv4Packet::new_checked(&sample[..n]).is_err(), "prefix {n}");
            }
            assert!(Ipv4Packet::new_checked(sample).is_ok());
        }
    }

    #[test]
    fn bad_fields_are_rejected() {
        let mut b = BYTES;
        b[0] = 0x65;
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(Error::BadVersion));
        b[0] = 0x44;
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(Error::BadHeaderLen));
        b[0] = 0x4f;
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(Error::BadHeaderLen));
        b[0] = 0x45;
        b[3] = 19;
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(Error::BadLength));
        b[3] = 25;
        assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(Error::BadLength));
        // Link padding past the total length is fine and cut off.
        let mut padded = [0u8; 30];
        padded[..24].copy_from_slice(&BYTES);
        let p = Ipv4Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(p.payload().len(), 4);
        assert_eq!(p.packet().len(), 24);
        // A corrupted checksum fails Repr::parse.
        let mut c = BYTES;
        c[10] ^= 1;
        let p = Ipv4Packet::new_checked(&c[..]).unwrap();
        assert!(!p.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&p), Err(Error::BadChecksum));
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng(7);
        let mut buf = [0u8; 80];
        for _ in 0..20_000 {
            let n = rng.below(buf.len());
            rng.fill(&mut buf[..n]);
            buf[0] = 0x40 | (buf[0] & 0x0f);
            if let Ok(p) = Ipv4Packet::new_checked(&buf[..n]) {
                let _ = (
                    p.payload(),
                    p.options(),
                    p.verify_checksum(),
                    p.frag_offset(),
                );
                let _ = Ipv4Repr::parse(&p);
            }
        }
    }

    #[test]
    fn incremental_setters_keep_checksum_valid() {
        let mut rng = Rng(99);
        let mut buf = OPT_BYTES;
        for _ in 0..5_000 {
            let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
            match rng.below(3) {
                0 => p.set_ttl(rng.next_u64() as u8),
                1 => p.set_src_addr(Ipv4Addr::from(rng.next_u64() as u32)),
                _ => p.set_dst_addr(Ipv4Addr::from(rng.next_u64() as u32)),
            }
            assert!(p.verify_checksum());
            let incremental = p.checksum();
            p.fill_checksum();
            assert!(incremental == p.checksum() || incremental == 0 && p.checksum() == 0xffff);
        }
    }
}
