//! What the core knows about an IPv6 packet: [`Parsed6`], read once by [`parse6`] through the
//! wire views (the fixed header, the extension-header walk, the TCP/UDP ports and flags, an
//! ICMPv6 message and the packet an error quotes).

use std::net::Ipv6Addr;

use super::verdict::DropReason;
use super::{FragKey, Ports};
use crate::wire::ipv6_ext::{self, ExtError, FragmentInfo};
use crate::wire::{IpProtocol, Ipv6Packet};

/// Bytes of the fixed IPv6 header.
const HEADER_LEN: usize = 40;

/// What the parser found in an IPv6 packet's headers.
#[derive(Clone, Copy, Debug)]
pub struct Parsed6 {
    /// The upper-layer protocol (after the extension headers).
    pub proto: u8,
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// 40 + the payload length: the bytes of the packet in the buffer.
    pub len: usize,
    /// Where the upper-layer header starts.
    pub l4_at: usize,
    /// The Fragment header, if the packet is a fragment that is not the whole packet.
    pub fragment: Option<FragmentInfo>,
    /// TCP or UDP with a whole header, not a later fragment: ports and flags. `None` for a
    /// TCP/UDP packet means a malformed header.
    pub l4: Option<Ports>,
    /// ICMPv6 with a whole header, not a later fragment: the message.
    pub icmp: Option<Icmp6Message>,
}

impl Parsed6 {
    /// A fragment other than the first: no ports here.
    pub fn later_fragment(&self) -> bool {
        self.fragment.is_some_and(|f| !f.is_first())
    }

    /// The datagram key of a fragment, `None` if the packet is not one.
    pub fn frag_key(&self) -> Option<FragKey> {
        self.fragment
            .map(|f| FragKey::V6(self.src, self.dst, f.ident))
    }

    /// Bytes of the datagram's fragmentable part this fragment carries (behind its Fragment
    /// header); 0 if the packet is not a fragment.
    pub fn frag_bytes(&self) -> usize {
        self.fragment
            .map_or(0, |f| self.len.saturating_sub(f.header_offset + 8))
    }
}

/// An ICMPv6 message and, for an error, the flow of the packet it quotes.
#[derive(Clone, Copy, Debug)]
pub struct Icmp6Message {
    /// Type.
    pub msg_type: u8,
    /// Code.
    pub code: u8,
    /// An error message (type below 128).
    pub is_error: bool,
    /// An error quoting a TCP or UDP packet with its ports: that packet's flow.
    pub quote: Option<Quote6>,
}

/// The flow of the packet an ICMPv6 error quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quote6 {
    /// Its upper-layer protocol (the quoted fixed header's next header: TCP or UDP).
    pub proto: u8,
    /// Its source address.
    pub src: Ipv6Addr,
    /// Its destination address.
    pub dst: Ipv6Addr,
    /// Its source port.
    pub sport: u16,
    /// Its destination port.
    pub dport: u16,
}

impl From<ExtError> for DropReason {
    fn from(e: ExtError) -> DropReason {
        match e {
            ExtError::TooMany => DropReason::Ipv6TooManyExt,
            ExtError::RoutingHeader => DropReason::Ipv6RoutingHeader,
            ExtError::Truncated => DropReason::Ipv6ExtTruncated,
            ExtError::ChainIncomplete => DropReason::Ipv6ChainIncomplete,
            ExtError::HbhNotFirst => DropReason::Ipv6HbhNotFirst,
            ExtError::FragmentTwice => DropReason::Ipv6FragmentTwice,
        }
    }
}

/// Reads the headers of the IPv6 packet at the start of `buf` (trailing bytes beyond its
/// payload length are padding). Extension headers are walked and refused as
/// [`ipv6_ext::walk`] says, each refusal its own drop reason.
pub fn parse6(buf: &[u8]) -> Result<Parsed6, DropReason> {
    let ip = Ipv6Packet::new_checked(buf).map_err(|_| DropReason::MalformedIp)?;
    if ip.version() != 6 {
        return Err(DropReason::MalformedIp);
    }
    let chain = ipv6_ext::walk(&ip)?;
    let len = ip.total_len();
    let fragment = chain.fragment.filter(|f| !f.is_atomic());
    let later = fragment.is_some_and(|f| !f.is_first());
    let l4_bytes = buf.get(chain.upper_offset..len).unwrap_or_default();
    let (l4, icmp) = match chain.upper {
        _ if later => (None, None),
        IpProtocol::TCP => (super::parse_tcp(l4_bytes), None),
        IpProtocol::UDP => (super::parse_udp(l4_bytes), None),
        IpProtocol::ICMPV6 => (None, parse_icmp6(l4_bytes)),
        _ => (None, None),
    };
    Ok(Parsed6 {
        proto: chain.upper,
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        len,
        l4_at: chain.upper_offset,
        fragment,
        l4,
        icmp,
    })
}

fn parse_icmp6(l4: &[u8]) -> Option<Icmp6Message> {
    let (&msg_type, &code) = (l4.first()?, l4.get(1)?);
    if l4.len() < 8 {
        return None;
    }
    let is_error = msg_type < 128;
    let quote = if is_error { quote6(&l4[8..]) } else { None };
    Some(Icmp6Message {
        msg_type,
        code,
        is_error,
        quote,
    })
}

/// The flow of a quoted packet: its fixed header and the first 4 bytes of a TCP or UDP header
/// right behind it (a quote with extension headers is not followed).
fn quote6(q: &[u8]) -> Option<Quote6> {
    let ports = q.get(HEADER_LEN..HEADER_LEN + 4)?;
    let ip = Ipv6Packet::new_unchecked(q.get(..HEADER_LEN)?);
    let proto = ip.next_header();
    if proto != IpProtocol::TCP && proto != IpProtocol::UDP {
        return None;
    }
    Some(Quote6 {
        proto,
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        sport: u16::from_be_bytes([ports[0], ports[1]]),
        dport: u16::from_be_bytes([ports[2], ports[3]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::{tcp6_packet, udp6_packet};
    use crate::wire::TcpFlags;

    const C: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 7);
    const V: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

    #[test]
    fn tcp_udp_and_icmpv6_errors_are_read() {
        let syn = tcp6_packet(C, 40000, V, 80, 0x02, 0);
        let p = parse6(&syn).unwrap();
        assert_eq!((p.proto, p.src, p.dst, p.len, p.l4_at), (6, C, V, 64, 40));
        let l4 = p.l4.unwrap();
        assert_eq!((l4.sport, l4.dport), (40000, 80));
        assert!(l4.flags.contains(TcpFlags::SYN) && !l4.payload);
        let u = udp6_packet(C, 5353, V, 53, 10);
        let p = parse6(&u).unwrap();
        assert_eq!(p.l4.map(|l| (l.sport, l.dport)), Some((5353, 53)));

        // A Packet Too Big from a router, quoting a packet the server sent from the VIP.
        let quoted = tcp6_packet(V, 80, C, 40000, 0x10, 100);
        let mut err = vec![0x60, 0, 0, 0, 0, 0, 58, 64];
        err.extend(Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 1).octets());
        err.extend(V.octets());
        let mut icmp = vec![2, 0, 0, 0, 0, 0, 5, 0];
        icmp.extend(&quoted[..48]);
        err[4..6].copy_from_slice(&(icmp.len() as u16).to_be_bytes());
        err.extend(icmp);
        let p = parse6(&err).unwrap();
        let m = p.icmp.unwrap();
        assert_eq!((m.msg_type, m.is_error), (2, true));
        assert_eq!(
            m.quote,
            Some(Quote6 {
                proto: 6,
                src: V,
                dst: C,
                sport: 80,
                dport: 40000
            })
        );
    }

    #[test]
    fn malformed_and_refused_chains_are_drop_reasons() {
        assert_eq!(parse6(&[0x60; 20]).unwrap_err(), DropReason::MalformedIp);
        // A Routing header of type 0 with segments left.
        let mut p = tcp6_packet(C, 1, V, 80, 0x02, 0);
        let tcp = p.split_off(40);
        p[6] = IpProtocol::IPV6_ROUTE;
        p.extend([IpProtocol::TCP, 0, 0, 1, 0, 0, 0, 0]);
        p.extend(tcp);
        let plen = (p.len() - 40) as u16;
        p[4..6].copy_from_slice(&plen.to_be_bytes());
        assert_eq!(parse6(&p).unwrap_err(), DropReason::Ipv6RoutingHeader);
        // A truncated TCP header: parsed, without ports.
        let mut short = tcp6_packet(C, 1, V, 80, 0x02, 0);
        short.truncate(50);
        short[4..6].copy_from_slice(&10u16.to_be_bytes());
        let p = parse6(&short).unwrap();
        assert!(p.l4.is_none());
    }
}
