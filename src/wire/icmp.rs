//! ICMP for IPv4 (RFC 792): the [`Icmpv4Packet`] view, and ICMP error replies built in place
//! over the offending packet ([`frag_needed_in_place`], [`error_in_place`]).

use std::net::Ipv4Addr;

use super::checksum;
use super::ipv4::{self, Ipv4Packet, Ipv4Repr};
use super::{get_u16, get_u32, put_u16, put_u32, Error, IpProtocol};

mod field {
    use core::ops::Range;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const REST: Range<usize> = 4..8;
    pub const NEXT_HOP_MTU: Range<usize> = 6..8;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQ: Range<usize> = 6..8;
}

/// Length of the ICMP header (type, code, checksum, rest of header).
pub const HEADER_LEN: usize = field::REST.end;

/// ICMP message types the data path knows.
pub mod msg_type {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable (error).
    pub const DEST_UNREACHABLE: u8 = 3;
    /// Source quench (error, deprecated).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect (error).
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded (error).
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem (error).
    pub const PARAM_PROBLEM: u8 = 12;

    /// Whether `t` is an error message, which carries the invoking packet's header.
    pub const fn is_error(t: u8) -> bool {
        matches!(
            t,
            DEST_UNREACHABLE | SOURCE_QUENCH | REDIRECT | TIME_EXCEEDED | PARAM_PROBLEM
        )
    }
}

/// Destination unreachable code: fragmentation needed and DF set (RFC 1191).
pub const CODE_FRAG_NEEDED: u8 = 4;
/// Time exceeded code: TTL exceeded in transit.
pub const CODE_TTL_EXCEEDED: u8 = 0;

/// TTL of the replies this module builds.
pub const REPLY_TTL: u8 = 64;
/// TOS of the replies this module builds: DSCP CS6 (network control), ECN not-ECT, as Linux
/// sends its ICMP errors.
pub const REPLY_TOS: u8 = 0xc0;
/// How many bytes of the invoking packet's payload an error quotes (RFC 792).
pub const QUOTED_PAYLOAD: usize = 8;

/// A view of an ICMPv4 message; the buffer is the IPv4 payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps `buffer` without checks; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    /// Wraps `buffer` after checking that it holds the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        if p.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(p)
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The message type (see [`msg_type`]).
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// The code.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Whether the checksum over the whole message is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
    }

    /// The 4 bytes after the checksum, whose meaning depends on the type.
    pub fn rest_of_header(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::REST.start)
    }

    /// Whether this is an error message (types 3, 4, 5, 11, 12).
    pub fn is_error(&self) -> bool {
        msg_type::is_error(self.msg_type())
    }

    /// For "fragmentation needed" (type 3 code 4): the next-hop MTU (RFC 1191; 0 from an old
    /// router).
    pub fn next_hop_mtu(&self) -> Option<u16> {
        (self.msg_type() == msg_type::DEST_UNREACHABLE && self.code() == CODE_FRAG_NEEDED)
            .then(|| get_u16(self.buffer.as_ref(), field::NEXT_HOP_MTU.start))
    }

    /// For echo request and reply: the identifier.
    pub fn echo_ident(&self) -> Option<u16> {
        self.is_echo()
            .then(|| get_u16(self.buffer.as_ref(), field::ECHO_IDENT.start))
    }

    /// For echo request and reply: the sequence number.
    pub fn echo_seq(&self) -> Option<u16> {
        self.is_echo()
            .then(|| get_u16(self.buffer.as_ref(), field::ECHO_SEQ.start))
    }

    fn is_echo(&self) -> bool {
        matches!(
            self.msg_type(),
            msg_type::ECHO_REQUEST | msg_type::ECHO_REPLY
        )
    }

    /// For an error message: the quoted (invoking) packet, an IPv4 header and the start of its
    /// payload. Parse it with [`Ipv4Packet::new_unchecked`] and check lengths yourself: the
    /// quote is usually cut short of the quoted total length.
    pub fn invoking_packet(&self) -> Option<&[u8]> {
        self.is_error().then(|| self.data())
    }

    /// Everything after the 8-byte header.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the type. The checksum is not updated.
    pub fn set_msg_type(&mut self, t: u8) {
        self.buffer.as_mut()[field::TYPE] = t;
    }

    /// Sets the code. The checksum is not updated.
    pub fn set_code(&mut self, code: u8) {
        self.buffer.as_mut()[field::CODE] = code;
    }

    /// Sets the checksum field as given.
    pub fn set_checksum(&mut self, csum: u16) {
        put_u16(self.buffer.as_mut(), field::CHECKSUM.start, csum);
    }

    /// Sets the rest of the header. The checksum is not updated.
    pub fn set_rest_of_header(&mut self, rest: u32) {
        put_u32(self.buffer.as_mut(), field::REST.start, rest);
    }

    /// Computes the checksum over the whole buffer and stores it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Everything after the 8-byte header, mutable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// Turns `buf[..pkt_len]`, an IPv4 packet too big for the next hop, into an ICMP
/// "fragmentation needed" (type 3 code 4) reply advertising `mtu`, in place.
///
/// See [`error_in_place`] for the reply's shape and when no reply is due.
pub fn frag_needed_in_place(buf: &mut [u8], pkt_len: usize, mtu: u16) -> Option<usize> {
    error_in_place(
        buf,
        pkt_len,
        msg_type::DEST_UNREACHABLE,
        CODE_FRAG_NEEDED,
        mtu as u32,
    )
}

/// Turns `buf[..pkt_len]`, an IPv4 packet, into an ICMP error reply about it, in place, and
/// returns the reply's length (at the start of `buf`).
///
/// The reply goes from the original destination to the original source, TTL 64, TOS
/// [`REPLY_TOS`], DF set, ident 0, with the given type, code and rest-of-header, and quotes
/// the original IP header (options included) and the first 8 bytes of its payload (RFC 792,
/// RFC 1191). `buf` must have room for it: at most 20 + 8 + 60 + 8 = 96 bytes.
///
/// Returns `None`, leaving `buf` untouched, when no reply is due or possible (RFC 1122
/// §3.2.2): the packet is malformed or fails its header checksum, is a non-first fragment, is
/// itself an ICMP error (or an ICMP message too short to tell), comes from an address that is
/// not a unicast host (unspecified, loopback, broadcast, multicast), is sent to a broadcast
/// or multicast address, or `buf` is too small for the reply.
pub fn error_in_place(
    buf: &mut [u8],
    pkt_len: usize,
    icmp_type: u8,
    code: u8,
    rest_of_header: u32,
) -> Option<usize> {
    let orig = Ipv4Packet::new_checked(buf.get(..pkt_len)?).ok()?;
    if !orig.verify_checksum() || orig.frag_offset() != 0 {
        return None;
    }
    let (src, dst) = (orig.src_addr(), orig.dst_addr());
    if !is_unicast_host(src) || dst.is_broadcast() || dst.is_multicast() {
        return None;
    }
    if orig.protocol() == IpProtocol::ICMP {
        let t = *orig.payload().first()?;
        if msg_type::is_error(t) {
            return None;
        }
    }
    let quoted = orig.header_len() + orig.payload().len().min(QUOTED_PAYLOAD);
    let icmp_len = HEADER_LEN + quoted;
    let reply_len = ipv4::HEADER_LEN + icmp_len;
    if buf.len() < reply_len {
        return None;
    }

    // Move the quote into place first (the regions overlap), then write the headers over
    // the start of the original.
    buf.copy_within(..quoted, ipv4::HEADER_LEN + HEADER_LEN);
    let ip = Ipv4Repr {
        src: dst,
        dst: src,
        protocol: IpProtocol::ICMP,
        tos: REPLY_TOS,
        dont_frag: true,
        ttl: REPLY_TTL,
        payload_len: icmp_len,
        ident: 0,
    };
    ip.emit(buf).ok()?;
    let mut icmp = Icmpv4Packet::new_unchecked(&mut buf[ipv4::HEADER_LEN..reply_len]);
    icmp.set_msg_type(icmp_type);
    icmp.set_code(code);
    icmp.set_rest_of_header(rest_of_header);
    icmp.fill_checksum();
    Some(reply_len)
}

/// Whether an error may be sent to `a` (RFC 1122 §3.2.2: not to a broadcast, multicast,
/// unspecified or loopback source).
fn is_unicast_host(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_loopback() || a.is_broadcast() || a.is_multicast())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::tests::Rng;

    /// Echo request 10.0.0.1 -> 10.0.0.100, ident 0x1234, seq 1, data "abcd".
    static ECHO_BYTES: [u8; 12] = [
        0x08, 0x00, 0x21, 0x04, 0x12, 0x34, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64,
    ];

    /// Frag needed, MTU 1480, quoting a 20-byte header and 8 bytes of a TCP segment.
    static FRAG_NEEDED_BYTES: [u8; 36] = [
        0x03, 0x04, 0xf1, 0xf6, 0x00, 0x00, 0x05, 0xc8, 0x45, 0x00, 0x05, 0xdc, //
        0x00, 0x01, 0x40, 0x00, 0x40, 0x06, 0x20, 0xb7, 0x0a, 0x00, 0x00, 0x01, //
        0x0a, 0x00, 0x00, 0x64, 0x9c, 0x40, 0x00, 0x50, 0x12, 0x34, 0x56, 0x78,
    ];

    #[test]
    fn parse_echo_fields() {
        let p = Icmpv4Packet::new_checked(&ECHO_BYTES[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(p.code(), 0);
        assert_eq!(p.checksum(), 0x2104);
        assert!(p.verify_checksum());
        assert_eq!(p.rest_of_header(), 0x1234_0001);
        assert_eq!(p.echo_ident(), Some(0x1234));
        assert_eq!(p.echo_seq(), Some(1));
        assert!(!p.is_error());
        assert_eq!(p.next_hop_mtu(), None);
        assert_eq!(p.invoking_packet(), None);
        assert_eq!(p.data(), b"abcd");
    }

    #[test]
    fn parse_frag_needed_fields() {
        let p = Icmpv4Packet::new_checked(&FRAG_NEEDED_BYTES[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::DEST_UNREACHABLE);
        assert_eq!(p.code(), CODE_FRAG_NEEDED);
        assert!(p.verify_checksum());
        assert!(p.is_error());
        assert_eq!(p.next_hop_mtu(), Some(1480));
        assert_eq!(p.echo_ident(), None);
        let inner = Ipv4Packet::new_unchecked(p.invoking_packet().unwrap());
        assert_eq!(inner.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(inner.dst_addr(), Ipv4Addr::new(10, 0, 0, 100));
        assert_eq!(inner.total_len(), 1500);
        assert_eq!(&inner.as_bytes()[20..24], &[0x9c, 0x40, 0x00, 0x50]);
    }

    #[test]
    fn build_matches_bytes() {
        let mut buf = [0u8; 12];
        let mut p = Icmpv4Packet::new_unchecked(&mut buf[..]);
        p.set_msg_type(msg_type::ECHO_REQUEST);
        p.set_code(0);
        p.set_rest_of_header(0x1234_0001);
        p.data_mut().copy_from_slice(b"abcd");
        p.fill_checksum();
        assert_eq!(buf, ECHO_BYTES);
    }

    #[test]
    fn prefixes_are_rejected() {
        for n in 0..HEADER_LEN {
            assert!(Icmpv4Packet::new_checked(&ECHO_BYTES[..n]).is_err());
        }
    }

    /// A 1500-byte TCP packet 10.0.0.1:40000 -> 10.0.0.100:80, DF, in a 1500-byte buffer.
    fn big_tcp_packet() -> Vec<u8> {
        let mut buf = vec![0u8; 1500];
        Ipv4Repr {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 100),
            protocol: IpProtocol::TCP,
            tos: 0,
            dont_frag: true,
            ttl: 64,
            payload_len: 1480,
            ident: 1,
        }
        .emit(&mut buf)
        .unwrap();
        buf[20..28].copy_from_slice(&[0x9c, 0x40, 0x00, 0x50, 0x12, 0x34, 0x56, 0x78]);
        for (i, b) in buf[28..].iter_mut().enumerate() {
            *b = i as u8;
        }
        buf
    }

    #[test]
    fn frag_needed_reply_field_by_field() {
        let mut buf = big_tcp_packet();
        let orig_head: Vec<u8> = buf[..28].to_vec();
        let n = frag_needed_in_place(&mut buf, 1500, 1480).unwrap();
        assert_eq!(n, 20 + 8 + 20 + 8);

        let ip = Ipv4Packet::new_checked(&buf[..n]).unwrap();
        assert_eq!(ip.header_len(), 20);
        assert_eq!(ip.total_len() as usize, n);
        assert_eq!(ip.src_addr(), Ipv4Addr::new(10, 0, 0, 100));
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(ip.protocol(), IpProtocol::ICMP);
        assert_eq!(ip.ttl(), REPLY_TTL);
        assert_eq!(ip.dscp_ecn(), REPLY_TOS);
        assert!(ip.dont_frag());
        assert!(!ip.is_fragment());
        assert_eq!(ip.ident(), 0);
        assert!(ip.verify_checksum());

        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(icmp.msg_type(), msg_type::DEST_UNREACHABLE);
        assert_eq!(icmp.code(), CODE_FRAG_NEEDED);
        assert_eq!(icmp.rest_of_header(), 1480);
        assert_eq!(icmp.next_hop_mtu(), Some(1480));
        assert!(icmp.verify_checksum());
        assert_eq!(icmp.invoking_packet(), Some(&orig_head[..]));
        assert_eq!(ip.payload(), &FRAG_NEEDED_BYTES[..]);
    }

    #[test]
    fn reply_quotes_options_and_short_payloads() {
        // 24-byte header (one NOP word of options), 3 payload bytes, UDP.
        let mut buf = [0u8; 96];
        buf[..27].copy_from_slice(&[
            0x46, 0x00, 0x00, 0x1b, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 10, 0, 0, 1,
            10, 0, 0, 100, 1, 1, 1, 0, 0xaa, 0xbb, 0xcc,
        ]);
        Ipv4Packet::new_unchecked(&mut buf[..]).fill_checksum();
        let orig = buf;
        let n =
            error_in_place(&mut buf, 27, msg_type::TIME_EXCEEDED, CODE_TTL_EXCEEDED, 0).unwrap();
        assert_eq!(n, 20 + 8 + 27);
        let ip = Ipv4Packet::new_checked(&buf[..n]).unwrap();
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(icmp.msg_type(), msg_type::TIME_EXCEEDED);
        assert_eq!(icmp.invoking_packet(), Some(&orig[..27]));
        assert!(icmp.verify_checksum());
        // Too small a buffer for the reply: no reply, buffer untouched.
        let mut small = orig;
        assert_eq!(frag_needed_in_place(&mut small[..54], 27, 576), None);
        assert_eq!(small, orig);
    }

    #[test]
    fn no_reply_when_none_is_due() {
        let base = big_tcp_packet();
        let refuse = |edit: &dyn Fn(&mut Ipv4Packet<&mut [u8]>)| {
            let mut b = base.clone();
            let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
            edit(&mut p);
            p.fill_checksum();
            let before = b.clone();
            assert_eq!(frag_needed_in_place(&mut b, 1500, 1400), None);
            assert_eq!(b, before, "buffer must stay untouched");
        };
        refuse(&|p| p.set_flags_and_frag_offset(true, false, 1480));
        refuse(&|p| p.set_flags_and_frag_offset(true, true, 8));
        refuse(&|p| p.set_src_addr(Ipv4Addr::UNSPECIFIED));
        refuse(&|p| p.set_src_addr(Ipv4Addr::BROADCAST));
        refuse(&|p| p.set_src_addr(Ipv4Addr::new(127, 0, 0, 1)));
        refuse(&|p| p.set_src_addr(Ipv4Addr::new(224, 0, 0, 5)));
        refuse(&|p| p.set_dst_addr(Ipv4Addr::new(239, 1, 2, 3)));
        refuse(&|p| p.set_dst_addr(Ipv4Addr::BROADCAST));
        refuse(&|p| {
            p.set_protocol(IpProtocol::ICMP);
            p.payload_mut()[0] = msg_type::DEST_UNREACHABLE;
        });
        refuse(&|p| p.set_total_len(1501));
        // An ICMP query (echo request) does get an error; a bad header checksum does not.
        let mut b = base.clone();
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_protocol(IpProtocol::ICMP);
        p.payload_mut()[0] = msg_type::ECHO_REQUEST;
        p.fill_checksum();
        assert!(frag_needed_in_place(&mut b, 1500, 1400).is_some());
        let mut b = base.clone();
        b[10] ^= 0xff;
        assert_eq!(frag_needed_in_place(&mut b, 1500, 1400), None);
        // A first fragment (MF, offset 0) is answered.
        let mut b = base.clone();
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_flags_and_frag_offset(true, true, 0);
        p.fill_checksum();
        assert!(frag_needed_in_place(&mut b, 1500, 1400).is_some());
        // pkt_len past the buffer.
        let mut b = base.clone();
        assert_eq!(frag_needed_in_place(&mut b, 1501, 1400), None);
    }

    #[test]
    fn every_prefix_and_garbage_never_panics() {
        let base = big_tcp_packet();
        for n in 0..=60 {
            let mut b = base.clone();
            // Declared length longer than what is passed: malformed, no reply.
            assert_eq!(frag_needed_in_place(&mut b[..n], n, 1400), None);
        }
        let mut rng = Rng(31);
        let mut buf = [0u8; 128];
        for round in 0..20_000 {
            let n = rng.below(buf.len());
            rng.fill(&mut buf[..n]);
            if n >= 20 && round % 2 == 0 {
                buf[0] = 0x45;
                buf[6] &= 0x40;
                buf[7] = 0;
                let tl = rng.below(n + 1) as u16;
                buf[2..4].copy_from_slice(&tl.to_be_bytes());
                Ipv4Packet::new_unchecked(&mut buf[..]).fill_checksum();
            }
            let pkt_len = rng.below(n + 2);
            if let Some(len) = frag_needed_in_place(&mut buf[..n.max(96)], pkt_len, 1400) {
                let ip = Ipv4Packet::new_checked(&buf[..len]).unwrap();
                assert!(ip.verify_checksum());
                assert!(Icmpv4Packet::new_checked(ip.payload())
                    .unwrap()
                    .verify_checksum());
            }
            if let Ok(p) = Icmpv4Packet::new_checked(&buf[..n]) {
                let _ = (p.invoking_packet(), p.next_hop_mtu(), p.verify_checksum());
            }
        }
    }
}
