//! What the core and the modes know about a packet, and what they make of it: the [`Parsed`]
//! headers (read once, through the wire views), the [`Verdict`](verdict::Verdict) and the
//! per-worker [`Counters`](counters::Counters).
//!
//! [`parse`] is the only place that reads a packet's headers for a decision: the IPv4 header,
//! the TCP/UDP ports and flags, and an ICMP message with the packet it quotes. The core and
//! every mode then read the fields of one [`Parsed`]; the rewrites (NAT, S-NAT, MSS clamp)
//! edit the buffer in place through the same views.

pub mod counters;
pub mod v6;
pub mod verdict;

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire::{icmp, IpProtocol, Ipv4Packet, TcpFlags, TcpPacket};
use verdict::DropReason;

/// What the parser found in a packet's headers.
#[derive(Clone, Copy, Debug)]
pub struct Parsed {
    /// IP protocol number.
    pub proto: u8,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IPv4 total length (bytes of the packet in the buffer; trailing bytes are padding).
    pub len: usize,
    /// IPv4 header length.
    pub ihl: usize,
    /// DF set.
    pub dont_frag: bool,
    /// MF set and offset 0: the fragment that carries the ports.
    pub first_fragment_of_many: bool,
    /// Offset non-zero: a fragment without ports.
    pub later_fragment: bool,
    /// MF set: more fragments follow (false for the last one, and for a whole datagram).
    pub more_frags: bool,
    /// Fragment offset in bytes (0 for the first fragment and a whole datagram).
    pub frag_offset: usize,
    /// IPv4 identification.
    pub ident: u16,
    /// The length the MTU checks use: `len`, or for a GSO super-packet the IPv4 length of its
    /// largest segment.
    pub mtu_len: usize,
    /// How many packets this is on the wire: 1, or a GSO super-packet's segment count.
    pub segs: u32,
    /// TCP or UDP, not a later fragment, with a whole header (TCP: a valid data offset; UDP:
    /// 8 bytes): its ports and flags. `None` for a TCP/UDP packet means a malformed header.
    pub l4: Option<Ports>,
    /// ICMP, not a later fragment, with a whole 8-byte header: the message.
    pub icmp: Option<IcmpMessage>,
}

/// A datagram of either family: what identifies its fragments (the fragment tracker's key,
/// [`crate::director::shared::frag`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FragKey {
    /// IPv4: source, destination, protocol, identification (RFC 791).
    V4(Ipv4Addr, Ipv4Addr, u8, u16),
    /// IPv6: source, destination, identification (RFC 8200 §4.5).
    V6(Ipv6Addr, Ipv6Addr, u32),
}

impl Parsed {
    /// The datagram key of a fragment: source, destination, protocol, identification.
    pub fn frag_key(&self) -> FragKey {
        FragKey::V4(self.src, self.dst, self.proto, self.ident)
    }

    /// IPv4 payload bytes of this packet (of this fragment, for a fragment).
    pub fn payload_len(&self) -> usize {
        self.len - self.ihl
    }
}

/// The ports and TCP flags of a TCP or UDP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// TCP flags (none for UDP).
    pub flags: TcpFlags,
    /// Whether the segment carries payload after its header (TCP data; always true for UDP).
    /// What confirms a flow ([`crate::director::conn::Conn::is_confirmed`]).
    pub payload: bool,
}

impl Ports {
    /// A SYN without ACK: the first packet of a TCP connection.
    #[inline]
    pub fn syn_only(&self) -> bool {
        self.flags.contains(TcpFlags::SYN) && !self.flags.contains(TcpFlags::ACK)
    }

    /// Whether this TCP segment confirms its flow
    /// ([`Conn::is_confirmed`](crate::director::conn::Conn::is_confirmed)): it carries
    /// payload and is not a SYN (a SYN's data, TCP Fast Open, is as easy to spoof as the SYN)
    /// or a RST.
    #[inline]
    pub fn confirms(&self) -> bool {
        self.payload && !self.flags.contains(TcpFlags::SYN) && !self.flags.contains(TcpFlags::RST)
    }
}

/// An ICMP message's header and, for an error, the packet it quotes.
#[derive(Clone, Copy, Debug)]
pub struct IcmpMessage {
    /// Type.
    pub msg_type: u8,
    /// Code.
    pub code: u8,
    /// An error message (destination unreachable, time exceeded, ...).
    pub is_error: bool,
    /// Echo request or reply: the identifier.
    pub echo_ident: Option<u16>,
    /// An error quoting an IPv4 packet with at least its ports (or first 4 payload bytes).
    pub quote: Option<Quote>,
}

/// The packet an ICMP error quotes: where it starts in the buffer and its header fields.
#[derive(Clone, Copy, Debug)]
pub struct Quote {
    /// Offset of the quoted IPv4 header in the buffer.
    pub at: usize,
    /// Bytes of the quote in the buffer (from `at`).
    pub len: usize,
    /// The quoted IPv4 header's length.
    pub ihl: usize,
    /// Its protocol.
    pub proto: u8,
    /// Its source address.
    pub src: Ipv4Addr,
    /// Its destination address.
    pub dst: Ipv4Addr,
    /// The first two bytes of its payload (the source port of TCP/UDP).
    pub sport: u16,
    /// The next two (the destination port).
    pub dport: u16,
}

impl Quote {
    /// Whether it quotes a TCP or UDP packet (the only ones NAT and S-NAT translate).
    pub fn is_tcp_or_udp(&self) -> bool {
        self.proto == IpProtocol::TCP || self.proto == IpProtocol::UDP
    }
}

/// Reads the headers of the IPv4 packet at the start of `buf`.
#[inline]
pub fn parse(buf: &[u8]) -> Result<Parsed, DropReason> {
    match buf.first().map(|b| b >> 4) {
        Some(4) => {}
        Some(_) => return Err(DropReason::NotIpv4),
        None => return Err(DropReason::MalformedIp),
    }
    let ip = Ipv4Packet::new_checked(buf).map_err(|_| DropReason::MalformedIp)?;
    let (proto, ihl, len) = (ip.protocol(), ip.header_len(), usize::from(ip.total_len()));
    let later_fragment = ip.frag_offset() != 0;
    let payload = &buf[ihl..len];
    let (l4, icmp) = match proto {
        _ if later_fragment => (None, None),
        IpProtocol::TCP => (parse_tcp(payload), None),
        IpProtocol::UDP => (parse_udp(payload), None),
        IpProtocol::ICMP => (None, parse_icmp(payload, ihl)),
        _ => (None, None),
    };
    Ok(Parsed {
        proto,
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        len,
        ihl,
        dont_frag: ip.dont_frag(),
        first_fragment_of_many: ip.more_frags() && !later_fragment,
        later_fragment,
        more_frags: ip.more_frags(),
        frag_offset: usize::from(ip.frag_offset()),
        ident: ip.ident(),
        mtu_len: len,
        segs: 1,
        l4,
        icmp,
    })
}

#[inline]
fn parse_tcp(l4: &[u8]) -> Option<Ports> {
    let t = TcpPacket::new_checked(l4).ok()?;
    Some(Ports {
        sport: t.src_port(),
        dport: t.dst_port(),
        flags: t.flags(),
        payload: l4.len() > t.header_len(),
    })
}

#[inline]
fn parse_udp(l4: &[u8]) -> Option<Ports> {
    if l4.len() < 8 {
        return None;
    }
    Some(Ports {
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
        flags: TcpFlags::default(),
        payload: true,
    })
}

/// The ICMP message in `payload` (which starts `ihl` bytes into the buffer).
fn parse_icmp(payload: &[u8], ihl: usize) -> Option<IcmpMessage> {
    let msg = icmp::Icmpv4Packet::new_checked(payload).ok()?;
    Some(IcmpMessage {
        msg_type: msg.msg_type(),
        code: msg.code(),
        is_error: msg.is_error(),
        echo_ident: msg.echo_ident(),
        quote: msg.invoking_packet().and_then(|q| parse_quote(q, ihl + 8)),
    })
}

/// The IPv4 packet an error quotes (`inner`, at `at` in the buffer), if its header and the
/// first 4 bytes after it are there.
fn parse_quote(inner: &[u8], at: usize) -> Option<Quote> {
    if inner.len() < 20 || inner[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(inner[0] & 0x0f) * 4;
    if ihl < 20 || inner.len() < ihl + 4 {
        return None;
    }
    Some(Quote {
        at,
        len: inner.len(),
        ihl,
        proto: inner[9],
        src: Ipv4Addr::new(inner[12], inner[13], inner[14], inner[15]),
        dst: Ipv4Addr::new(inner[16], inner[17], inner[18], inner[19]),
        sport: u16::from_be_bytes([inner[ihl], inner[ihl + 1]]),
        dport: u16::from_be_bytes([inner[ihl + 2], inner[ihl + 3]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::{icmp_error, ipv4_packet, tcp_packet, udp_packet};

    const C: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
    const V: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 100);

    #[test]
    fn a_tcp_syn_is_read_once_with_its_ports_and_flags() {
        let buf = tcp_packet(C, 40000, V, 80, 0x02, 0);
        let p = parse(&buf).unwrap();
        assert_eq!(
            (p.proto, p.src, p.dst, p.len, p.ihl),
            (6, C, V, buf.len(), 20)
        );
        assert_eq!((p.mtu_len, p.segs), (buf.len(), 1));
        assert!(!p.first_fragment_of_many && !p.later_fragment);
        let l4 = p.l4.unwrap();
        assert_eq!((l4.sport, l4.dport), (40000, 80));
        assert!(l4.syn_only());
        assert!(p.icmp.is_none());
    }

    #[test]
    fn short_or_broken_l4_headers_have_no_ports() {
        let udp = ipv4_packet(C, V, 17, &[0, 53, 0, 53]);
        assert!(parse(&udp).unwrap().l4.is_none());
        let mut tcp = tcp_packet(C, 1, V, 80, 0x10, 0);
        tcp[20 + 12] = 0x20; // data offset 8 bytes: below the minimum
        assert!(parse(&tcp).unwrap().l4.is_none());
        assert_eq!(
            parse(&udp_packet(C, 5353, V, 53, 0))
                .unwrap()
                .l4
                .map(|l| l.dport),
            Some(53)
        );
    }

    #[test]
    fn a_later_fragment_has_no_ports_and_the_first_one_says_so() {
        let mut buf = udp_packet(C, 5353, V, 53, 16);
        buf[6] = 0x20; // MF, offset 0
        let p = parse(&buf).unwrap();
        assert!(p.first_fragment_of_many && p.l4.is_some());
        buf[6..8].copy_from_slice(&3u16.to_be_bytes()); // offset 24, no MF
        let p = parse(&buf).unwrap();
        assert!(p.later_fragment && !p.first_fragment_of_many && p.l4.is_none());
    }

    #[test]
    fn an_icmp_error_is_parsed_with_its_quote() {
        let reply = tcp_packet(V, 80, C, 40000, 0x12, 0);
        let buf = icmp_error(C, V, 3, 3, 0, &reply);
        let p = parse(&buf).unwrap();
        let m = p.icmp.unwrap();
        assert!(m.is_error && m.echo_ident.is_none());
        assert_eq!((m.msg_type, m.code), (3, 3));
        let q = m.quote.unwrap();
        assert_eq!((q.at, q.ihl, q.proto, q.src, q.dst), (28, 20, 6, V, C));
        assert_eq!((q.sport, q.dport, q.len), (80, 40000, 28));
        assert!(q.is_tcp_or_udp());
    }

    #[test]
    fn not_ipv4_or_truncated_is_refused() {
        assert_eq!(parse(&[]).unwrap_err(), DropReason::MalformedIp);
        assert_eq!(parse(&[0x60; 40]).unwrap_err(), DropReason::NotIpv4);
        assert_eq!(parse(&[0x45; 10]).unwrap_err(), DropReason::MalformedIp);
    }
}
