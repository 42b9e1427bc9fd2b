//! UDP (RFC 768): the [`UdpPacket`] view.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::{get_u16, put_u16, Error, IpProtocol};

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// A view of a UDP datagram (header and payload); the buffer is the IPv4 payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` without checks; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` after checking that it holds the 8-byte header and that the length field
    /// is at least 8 and at most the buffer length (trailing bytes are ignored).
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
        let l = self.len() as usize;
        if l < HEADER_LEN || l > len {
            return Err(Error::BadLength);
        }
        Ok(())
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// The length field: header + payload, in bytes.
    pub fn len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Whether the payload is empty (length field 8).
    pub fn is_empty(&self) -> bool {
        self.len() as usize <= HEADER_LEN
    }

    /// The checksum field (0: the sender computed none).
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Whether the checksum is right for a datagram from `src` to `dst`; a zero checksum (none
    /// sent) is accepted.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let len = self.len();
        let data = &self.buffer.as_ref()[..len as usize];
        checksum::combine(&[
            checksum::pseudo_header_v4(src, dst, IpProtocol::UDP, len),
            checksum::data(data),
        ]) == 0xffff
    }

    /// Whether the checksum is right for a datagram over IPv6 from `src` to `dst` (the
    /// pseudo-header with the 32-bit UDP length). A zero checksum is refused: it is mandatory
    /// over IPv6 (RFC 8200 §8.1).
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        if self.checksum() == 0 {
            return false;
        }
        let data = &self.buffer.as_ref()[..usize::from(self.len())];
        checksum::upper_layer_v6(src, dst, IpProtocol::UDP, data) == 0xffff
    }

    /// The payload, up to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port, updating a non-zero checksum incrementally.
    pub fn set_src_port(&mut self, port: u16) {
        let old = self.src_port();
        put_u16(self.buffer.as_mut(), field::SRC_PORT.start, port);
        self.update_checksum(old, port);
    }

    /// Sets the destination port, updating a non-zero checksum incrementally.
    pub fn set_dst_port(&mut self, port: u16) {
        let old = self.dst_port();
        put_u16(self.buffer.as_mut(), field::DST_PORT.start, port);
        self.update_checksum(old, port);
    }

    fn update_checksum(&mut self, old: u16, new: u16) {
        let c = self.checksum();
        if c != 0 {
            self.set_checksum(nonzero_checksum(checksum::update_u16(c, old, new)));
        }
    }

    /// Updates a non-zero checksum for an IPv4 address of the pseudo-header that changed from
    /// `old` to `new` (call it next to [`Ipv4Packet::set_src_addr`](super::Ipv4Packet::set_src_addr)
    /// or `set_dst_addr` when rewriting addresses). A zero checksum ("none") stays zero.
    pub fn update_checksum_for_addr(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        let c = self.checksum();
        if c != 0 {
            self.set_checksum(nonzero_checksum(checksum::update_addr(c, old, new)));
        }
    }

    /// Updates a non-zero checksum for an IPv6 address of the pseudo-header that changed
    /// (NAT66). A zero checksum (invalid over IPv6, or a tunnel's RFC 6935 zero) stays zero.
    pub fn update_checksum_for_addr_v6(&mut self, old: Ipv6Addr, new: Ipv6Addr) {
        let c = self.checksum();
        if c != 0 {
            self.set_checksum(nonzero_checksum(checksum::update_addr_v6(c, old, new)));
        }
    }

    /// Computes the checksum over the IPv6 pseudo-header and the datagram (up to the length
    /// field) and stores it; a computed 0 is sent as `0xffff`.
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let data = &self.buffer.as_ref()[..usize::from(self.len())];
        let sum = checksum::upper_layer_v6(src, dst, IpProtocol::UDP, data);
        self.set_checksum(nonzero_checksum(!sum));
    }

    /// Sets the length field. The checksum is not updated.
    pub fn set_len(&mut self, len: u16) {
        put_u16(self.buffer.as_mut(), field::LENGTH.start, len);
    }

    /// Sets the checksum field as given (0 = no checksum).
    pub fn set_checksum(&mut self, csum: u16) {
        put_u16(self.buffer.as_mut(), field::CHECKSUM.start, csum);
    }

    /// Computes the checksum over the pseudo-header and the datagram (up to the length field)
    /// and stores it; a computed 0 is sent as `0xffff` (RFC 768).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let len = self.len();
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(src, dst, IpProtocol::UDP, len),
            checksum::data(&self.buffer.as_ref()[..len as usize]),
        ]);
        self.set_checksum(nonzero_checksum(!sum));
    }

    /// The payload, mutable, up to the length field.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.len() as usize;
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// A UDP checksum of 0 means "none"; the computed value 0 is sent as its other form, 0xffff.
pub(crate) fn nonzero_checksum(c: u16) -> u16 {
    if c == 0 {
        0xffff
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::tests::Rng;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

    /// A DNS-like datagram 5353 -> 53 with 4 payload bytes and a valid checksum.
    static BYTES: [u8; 12] = [
        0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0x60, 0xde, 0xde, 0xad, 0xbe, 0xef,
    ];

    #[test]
    fn parse_fields() {
        let p = UdpPacket::new_checked(&BYTES[..]).unwrap();
        assert_eq!(p.src_port(), 5353);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 12);
        assert!(!p.is_empty());
        assert_eq!(p.checksum(), 0x60de);
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(SRC, Ipv4Addr::new(198, 51, 100, 8)));
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn build_matches_bytes() {
        let mut buf = [0u8; 12];
        let mut p = UdpPacket::new_unchecked(&mut buf[..]);
        p.set_src_port(5353);
        p.set_dst_port(53);
        p.set_len(12);
        p.payload_mut().copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        p.fill_checksum(SRC, DST);
        assert_eq!(buf, BYTES);
    }

    #[test]
    fn prefixes_and_bad_lengths_are_rejected() {
        for n in 0..BYTES.len() {
            assert!(UdpPacket::new_checked(&BYTES[..n]).is_err(), "prefix {n}");
        }
        let mut b = BYTES;
        b[5] = 7;
        assert_eq!(UdpPacket::new_checked(&b[..]), Err(Error::BadLength));
        b[5] = 13;
        assert_eq!(UdpPacket::new_checked(&b[..]), Err(Error::BadLength));
    }

    #[test]
    fn zero_checksum_stays_zero_and_is_accepted() {
        let mut b = BYTES;
        b[6] = 0;
        b[7] = 0;
        let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
        assert!(p.verify_checksum(SRC, DST));
        p.set_dst_port(1234);
        p.set_src_port(4321);
        assert_eq!(p.checksum(), 0);
    }

    #[test]
    fn port_rewrites_keep_checksum_valid() {
        let mut rng = Rng(3);
        let mut b = BYTES;
        for _ in 0..5_000 {
            let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
            if rng.below(2) == 0 {
                p.set_src_port(rng.next_u64() as u16);
            } else {
                p.set_dst_port(rng.next_u64() as u16);
            }
            assert_ne!(p.checksum(), 0);
            assert!(p.verify_checksum(SRC, DST));
        }
    }

    #[test]
    fn address_rewrites_keep_checksum_valid_and_zero_stays_zero() {
        let mut rng = Rng(5);
        let mut b = BYTES;
        let mut dst = DST;
        for _ in 0..2_000 {
            let new = Ipv4Addr::from(rng.next_u64() as u32);
            let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
            p.update_checksum_for_addr(dst, new);
            dst = new;
            assert!(p.verify_checksum(SRC, dst));
        }
        let mut b = BYTES;
        b[6..8].copy_from_slice(&[0, 0]);
        let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
        p.update_checksum_for_addr(DST, SRC);
        assert_eq!(p.checksum(), 0);
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Search a port that makes the sum come out as zero, then check the encoding.
        let mut buf = [0u8; 8];
        let mut p = UdpPacket::new_unchecked(&mut buf[..]);
        p.set_len(8);
        p.set_dst_port(0);
        for port in 0..=u16::MAX {
            p.set_src_port(port);
            p.set_checksum(0);
            let raw = !checksum::combine(&[
                checksum::pseudo_header_v4(SRC, DST, IpProtocol::UDP, 8),
                checksum::data(&p.buffer[..]),
            ]);
            if raw == 0 {
                p.fill_checksum(SRC, DST);
                assert_eq!(p.checksum(), 0xffff);
                assert!(p.verify_checksum(SRC, DST));
                return;
            }
        }
        panic!("no port gives a zero checksum");
    }

    /// A datagram over IPv6 built by etherparse verifies; a zero checksum does not; fill and
    /// NAT66 rewrite keep it valid.
    #[test]
    fn ipv6_checksums() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let mut out = Vec::new();
        etherparse::PacketBuilder::ipv6(src.octets(), dst.octets(), 64)
            .udp(5353, 53)
            .write(&mut out, b"query")
            .unwrap();
        let mut d = out[40..].to_vec();
        let mut p = UdpPacket::new_checked(&mut d[..]).unwrap();
        assert!(p.verify_checksum_v6(src, dst));
        assert!(!p.verify_checksum_v6(src, src));
        let stored = p.checksum();
        p.fill_checksum_v6(src, dst);
        assert_eq!(p.checksum(), stored);
        let nat: Ipv6Addr = "fd00::5".parse().unwrap();
        p.update_checksum_for_addr_v6(src, nat);
        assert!(p.verify_checksum_v6(nat, dst));
        p.set_checksum(0);
        assert!(!p.verify_checksum_v6(nat, dst));
        p.update_checksum_for_addr_v6(nat, src);
        assert_eq!(p.checksum(), 0);
    }
}
