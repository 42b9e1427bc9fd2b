//! IPv6 (RFC 8200): the [`Ipv6Packet`] view of the fixed 40-byte header and the [`Ipv6Repr`]
//! builder. The extension headers behind it are walked by [`ipv6_ext::walk`](super::ipv6_ext::walk).
//!
//! Length rule: the payload length field counts everything after the fixed header (extension
//! headers included) and must fit the buffer; bytes past `40 + payload_len` (link padding) are
//! allowed and ignored, as for IPv4. The TUN hands exact packets, so there they are none.
//! Jumbograms (RFC 2675: payload length 0 with a Hop-by-Hop header carrying the real length)
//! are refused: a payload length of 0 behind a Hop-by-Hop header with bytes after the fixed
//! header is [`Error::BadLength`].

use std::net::Ipv6Addr;

use super::{get_u16, get_u32, put_u16, put_u32, Error};

mod field {
    use core::ops::Range;

    /// Version (4 bits), traffic class (8), flow label (20).
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// The IPv6 minimum link MTU (RFC 8200 §5): every link carries 1280-byte packets, and an
/// ICMPv6 error never exceeds it (RFC 4443 §2.4 (c)).
pub const MIN_MTU: usize = 1280;

const FLOW_MASK: u32 = 0x000f_ffff;

/// A view of an IPv6 packet: the fixed header, then the payload (extension headers and the
/// upper-layer packet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps `buffer` without checks; accessors may panic if it is not a valid IPv6 packet.
    /// Use for buffers this process built itself.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps `buffer` after checking everything the accessors rely on: at least 40 bytes,
    /// version 6, `40 + payload_len` within the buffer (trailing bytes ignored), and no
    /// jumbogram (see the module doc).
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
        if self.version() != 6 {
            return Err(Error::BadVersion);
        }
        let payload = self.payload_len() as usize;
        if HEADER_LEN + payload > len {
            return Err(Error::BadLength);
        }
        if payload == 0 && self.next_header() == super::IpProtocol::HOPOPT && len > HEADER_LEN {
            // A jumbogram: the real length sits in a Hop-by-Hop option. Refused.
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

    fn ver_tc_flow(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::VER_TC_FLOW.start)
    }

    /// The version field (6 for a valid packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// The traffic class: DSCP (upper 6 bits) and ECN (lower 2 bits).
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    /// The 20-bit flow label.
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & FLOW_MASK
    }

    /// The payload length field: everything after the fixed header, in bytes.
    pub fn payload_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// The packet's length: 40 + payload length.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len() as usize
    }

    /// The next header: the first extension header's type, or the upper-layer protocol (see
    /// [`IpProtocol`](super::IpProtocol)).
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    /// The hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        addr(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        addr(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// The payload: after the fixed header, up to the payload length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.total_len()]
    }

    /// The packet: header and payload, up to the payload length (link padding cut off).
    pub fn packet(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.total_len()]
    }
}

pub(crate) fn addr(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Ipv6Addr::from(a)
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    fn set_ver_tc_flow(&mut self, w: u32) {
        put_u32(self.buffer.as_mut(), field::VER_TC_FLOW.start, w);
    }

    /// Sets version 6, keeping the traffic class and flow label.
    pub fn set_version(&mut self) {
        let w = self.ver_tc_flow();
        self.set_ver_tc_flow((w & 0x0fff_ffff) | 0x6000_0000);
    }

    /// Sets the traffic class (DSCP + ECN).
    pub fn set_traffic_class(&mut self, tc: u8) {
        let w = self.ver_tc_flow();
        self.set_ver_tc_flow((w & 0xf00f_ffff) | (u32::from(tc) << 20));
    }

    /// Sets the flow label (the low 20 bits of `label`).
    pub fn set_flow_label(&mut self, label: u32) {
        let w = self.ver_tc_flow();
        self.set_ver_tc_flow((w & !FLOW_MASK) | (label & FLOW_MASK));
    }

    /// Sets the payload length field. There is no header checksum; an upper-layer checksum
    /// covering the length is the caller's.
    pub fn set_payload_len(&mut self, len: u16) {
        put_u16(self.buffer.as_mut(), field::LENGTH.start, len);
    }

    /// Sets the next header field.
    pub fn set_next_header(&mut self, next: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = next;
    }

    /// Sets the hop limit (no header checksum to update).
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hop_limit;
    }

    /// Sets the source address. IPv6 has no header checksum, but TCP, UDP and ICMPv6 cover
    /// the address in their pseudo-header: update theirs with
    /// [`checksum::update_addr_v6`](super::checksum::update_addr_v6) (e.g.
    /// [`TcpPacket::update_checksum_for_addr_v6`](super::TcpPacket::update_checksum_for_addr_v6)).
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address (see [`set_src_addr`](Self::set_src_addr) about
    /// upper-layer checksums).
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// The payload, mutable (after the fixed header, up to the payload length).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// A fixed IPv6 header to build, or read from a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Next header (first extension header or upper-layer protocol).
    pub next_header: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class (DSCP + ECN).
    pub traffic_class: u8,
    /// Flow label (20 bits; higher bits are dropped by `emit`).
    pub flow_label: u32,
    /// Payload length in bytes (everything after the fixed header).
    pub payload_len: usize,
}

impl Ipv6Repr {
    /// Reads the fixed header of a packet (checked again here).
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Ipv6Repr, Error> {
        packet.check_len()?;
        Ok(Ipv6Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            next_header: packet.next_header(),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
            payload_len: packet.payload_len() as usize,
        })
    }

    /// Bytes [`emit`](Self::emit) writes: 40.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the fixed header into the start of `buf`. `BufferTooSmall` if `buf` is shorter
    /// than 40 bytes or the payload length does not fit 16 bits (no jumbograms).
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), Error> {
        let len = u16::try_from(self.payload_len).map_err(|_| Error::BufferTooSmall)?;
        let hdr = buf.get_mut(..HEADER_LEN).ok_or(Error::BufferTooSmall)?;
        let mut p = Ipv6Packet::new_unchecked(hdr);
        p.set_ver_tc_flow(
            0x6000_0000 | (u32::from(self.traffic_class) << 20) | (self.flow_label & FLOW_MASK),
        );
        p.set_payload_len(len);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src_addr(self.src);
        p.set_dst_addr(self.dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::tests::Rng;
    use crate::wire::IpProtocol;

    /// 2001:db8::1 -> 2001:db8::100, traffic class 0xb8 (EF), flow label 0x12345, UDP, hop
    /// limit 64, payload length 4 ("abcd", not a real UDP header).
    static BYTES: [u8; 44] = [
        0x6b, 0x81, 0x23, 0x45, 0x00, 0x04, 0x11, 0x40, //
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, //
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, //
        0x61, 0x62, 0x63, 0x64,
    ];

    fn repr() -> Ipv6Repr {
        Ipv6Repr {
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8::100".parse().unwrap(),
            next_header: IpProtocol::UDP,
            hop_limit: 64,
            traffic_class: 0xb8,
            flow_label: 0x12345,
            payload_len: 4,
        }
    }

    #[test]
    fn parse_fields() {
        let p = Ipv6Packet::new_checked(&BYTES[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 4);
        assert_eq!(p.total_len(), 44);
        assert_eq!(p.next_header(), IpProtocol::UDP);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "2001:db8::100".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload(), b"abcd");
        assert_eq!(Ipv6Repr::parse(&p), Ok(repr()));
    }

    #[test]
    fn bytes_agree_with_etherparse() {
        let (h, rest) = etherparse::Ipv6Header::from_slice(&BYTES).unwrap();
        assert_eq!(rest, b"abcd");
        assert_eq!(h.traffic_class, 0xb8);
        assert_eq!(h.flow_label.value(), 0x12345);
        assert_eq!(h.hop_limit, 64);
        assert_eq!(h.payload_length, 4);
        assert_eq!(h.source, repr().src.octets());
    }

    #[test]
    fn emit_matches_bytes() {
        let mut buf = [0u8; 44];
        repr().emit(&mut buf).unwrap();
        buf[40..].copy_from_slice(b"abcd");
        assert_eq!(buf, BYTES);
        assert_eq!(repr().emit(&mut [0u8; 39]), Err(Error::BufferTooSmall));
        let huge = Ipv6Repr {
            payload_len: 65_536,
            ..repr()
        };
        assert_eq!(huge.emit(&mut buf), Err(Error::BufferTooSmall));
    }

    #[test]
    fn build_with_setters_matches_bytes() {
        let mut buf = [0u8; 44];
        let mut p = Ipv6Packet::new_unchecked(&mut buf[..]);
        p.set_version();
        p.set_flow_label(0xfff1_2345);
        p.set_traffic_class(0xb8);
        p.set_payload_len(4);
        p.set_next_header(IpProtocol::UDP);
        p.set_hop_limit(64);
        p.set_src_addr(repr().src);
        p.set_dst_addr(repr().dst);
        p.payload_mut().copy_from_slice(b"abcd");
        assert_eq!(buf, BYTES);
        // Each setter leaves the neighbouring fields alone.
        let mut p = Ipv6Packet::new_checked(&mut buf[..]).unwrap();
        p.set_flow_label(0);
        assert_eq!((p.version(), p.traffic_class()), (6, 0xb8));
        p.set_traffic_class(0);
        p.set_flow_label(FLOW_MASK);
        assert_eq!((p.version(), p.traffic_class()), (6, 0));
    }

    #[test]
    fn lengths_and_versions_are_checked() {
        for n in 0..BYTES.len() {
            assert!(Ipv6Packet::new_checked(&BYTES[..n]).is_err(), "prefix {n}");
        }
        let mut b = BYTES;
        b[0] = 0x4b;
        assert_eq!(Ipv6Packet::new_checked(&b[..]), Err(Error::BadVersion));
        let mut b = BYTES;
        b[5] = 5;
        assert_eq!(Ipv6Packet::new_checked(&b[..]), Err(Error::BadLength));
        // Link padding is allowed and cut off.
        let mut padded = [0u8; 60];
        padded[..44].copy_from_slice(&BYTES);
        let p = Ipv6Packet::new_checked(&padded[..]).unwrap();
        assert_eq!((p.payload().len(), p.packet().len()), (4, 44));
        // Payload length 0: fine with nothing behind, or behind a non-HBH header ...
        let mut b = BYTES;
        b[5] = 0;
        assert!(Ipv6Packet::new_checked(&b[..40]).is_ok());
        assert!(Ipv6Packet::new_checked(&b[..]).is_ok());
        // ... but a jumbogram (HBH next, bytes after the header) is refused.
        b[6] = IpProtocol::HOPOPT;
        assert_eq!(Ipv6Packet::new_checked(&b[..]), Err(Error::BadLength));
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng(6);
        let mut buf = [0u8; 96];
        for _ in 0..20_000 {
            let n = rng.below(buf.len());
            rng.fill(&mut buf[..n]);
            if n > 0 {
                buf[0] = 0x60 | (buf[0] & 0x0f);
            }
            if let Ok(p) = Ipv6Packet::new_checked(&buf[..n]) {
                let _ = (p.payload(), p.packet(), p.flow_label(), p.traffic_class());
                assert!(Ipv6Repr::parse(&p).is_ok());
            }
        }
    }
}
