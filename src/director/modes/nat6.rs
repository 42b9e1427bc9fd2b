//! NAT66: NAT mode (`-m`) for an IPv6 VIP and IPv6 real servers, both directions.
//!
//! The design is IPv4's ([`super::nat`]): the client's packet gets RIP:rport as its
//! destination and goes back into the TUN ([`Verdict::Rewrite`]); the real server's reply,
//! brought into the TUN by the IPv6 reply rules ([`ReplyRouting`](super::nat::ReplyRouting)
//! installs `ip -6 rule`s beside the IPv4 ones), is found by the real server's tuple and gets
//! VIP:vport as its source. The flows live in their own shared table (`Shared::nat6`, a
//! [`NatTable<ConnKey6>`](super::nat::NatTable)), so IPv4 flows keep their size; the flow
//! bookkeeping (lookups, states, timers, insertion, removal) is IPv4's generic code
//! ([`super::nat::NatFamily`]). What differs is the packet:
//!
//! - IPv6 has no header checksum: only the TCP/UDP checksum, whose pseudo-header covers the
//!   addresses, is updated incrementally (RFC 1624 over the eight 16-bit words of each).
//! - A UDP datagram with checksum 0 is invalid over IPv6 (RFC 8200 §8.1; a receiver drops
//!   it): the director drops it too, both ways, as `malformed_l4`, rather than forwarding it.
//! - IPv6 routers never fragment: a client packet longer than the path MTU to the real servers
//!   (`--tunnel-mtu`, as for IPv4 NAT; never less than 1280) is answered with an ICMPv6 Packet
//!   Too Big from the VIP advertising it, so the client's path MTU to the VIP drops to it.
//!   (The kernel would send one too when it forwards the rewritten packet onto a smaller link,
//!   but quoting client → RIP, which the client's stack cannot match to its socket.)
//! - ICMPv6's checksum covers a pseudo-header: translating an error's outer address updates it
//!   as well as for the changed quote.
//! - Fragments after the first carry no ports: a client's follows its first fragment's real
//!   server (the fragment tracker, as for tunnels and DR) and gets only the new destination
//!   address; a real server's follows the first fragment of its reply (remembered here,
//!   keyed by RIP, client and identification) and gets the VIP as its source. The first
//!   fragment's TCP/UDP checksum covers the whole datagram, so its incremental update covers
//!   the later fragments too. One whose first fragment was not seen is dropped
//!   (`fragment_no_flow`); ICMPv6 goes back unchanged, as IPv4's NAT does.
//!
//! # ICMPv6 errors
//!
//! - To the VIP (from the client's side), quoting a reply VIP:vport → client: the quote becomes
//!   RIP:rport → client and the packet goes to the real server (a Packet Too Big from a router
//!   on the client's side lowers the real server's path MTU to the client).
//! - From a real server (the `ipproto 58` rule), quoting client → RIP:rport: the quote becomes
//!   client → VIP:vport and the source the VIP (a port unreachable reaches the client's socket).
//!   Other ICMPv6 from a real server is written back unchanged.

use std::net::{IpAddr, Ipv6Addr};

use super::context::Ctx;
use super::nat::{flow_of_server, live_flow_of_client, reply_flow, Side};
use crate::director::conn::ConnKey6;
use crate::director::packet::v6::{Parsed6, Quote6};
use crate::director::packet::verdict::{DropReason, Verdict};
use crate::director::packet::Ports;
use crate::director::table::Dest;
use crate::wire::{checksum, get_u16, IpProtocol, Ipv6Packet, TcpPacket, UdpPacket};

/// The smallest MTU an IPv6 link has (RFC 8200 §5).
const MIN_MTU: u16 = 1280;

/// A client packet of a NAT66 flow to real server `dest`: destination address and port
/// rewritten (a SYN's MSS was clamped by the caller), or a Packet Too Big from the VIP
/// when it exceeds the path MTU to the real servers.
pub fn to_server(cx: &mut Ctx<'_>, dest: &Dest, buf: &mut [u8], p: &Parsed6) -> Verdict {
    let IpAddr::V6(raddr) = dest.config.addr else {
        // `check_forwardable`: an IPv6 VIP's NAT servers are IPv6.
        return Verdict::Drop(DropReason::NoDestination);
    };
    let mtu = cx.config.tunnel_mtu.max(MIN_MTU);
    if p.len > usize::from(mtu) {
        return cx.packet_too_big(buf, p.len, mtu, p.dst);
    }
    if udp_checksum_zero(buf, p) {
        return Verdict::Drop(DropReason::MalformedL4);
    }
    let Some(pkt) = buf.get_mut(..p.len) else {
        return Verdict::Drop(DropReason::MalformedIp);
    };
    Ipv6Packet::new_unchecked(&mut *pkt).set_dst_addr(raddr);
    if p.l4.is_some() {
        // A later fragment has no TCP/UDP header (the first one's checksum covers it).
        rewrite_l4(pkt, p, Side::Dst, p.dst, raddr, dest.config.port);
    }
    let d = cx.counters.dest(dest.id);
    d.in_pkts += 1;
    d.in_bytes += p.len as u64;
    Verdict::Rewrite { len: p.len }
}

/// An IPv6 packet in the TUN whose destination is not a VIP, with NAT66 real servers
/// configured: one of theirs, routed here by the reply rules. A reply of a NAT66 flow gets
/// VIP:vport as its source and goes back into the TUN; an ICMPv6 error about a flow is
/// translated; other ICMPv6 is written back unchanged; anything else is dropped.
pub fn handle_from_server(cx: &mut Ctx<'_>, buf: &mut [u8], p: &Parsed6) -> Verdict {
    if p.fragment.is_some_and(|f| !f.is_first()) {
        return later_fragment_from_server(cx, buf, p);
    }
    match p.proto {
        IpProtocol::TCP | IpProtocol::UDP => {}
        IpProtocol::ICMPV6 => return icmp_from_server(cx, buf, p),
        _ => return Verdict::Drop(DropReason::NatNoFlow),
    }
    let Some(Ports {
        sport,
        dport,
        flags,
        ..
    }) = p.l4
    else {
        return Verdict::Drop(DropReason::MalformedL4);
    };
    if udp_checksum_zero(buf, p) {
        return Verdict::Drop(DropReason::MalformedL4);
    }
    let (dest, vaddr, vport) =
        match reply_flow::<ConnKey6>(cx, p.proto, (p.src, sport), (p.dst, dport), flags) {
            Ok(found) => found,
            Err(why) => return Verdict::Drop(why),
        };
    let pkt = &mut buf[..p.len];
    Ipv6Packet::new_unchecked(&mut *pkt).set_src_addr(vaddr);
    rewrite_l4(pkt, p, Side::Src, p.src, vaddr, vport);
    if let Some(k) = p.frag_key() {
        cx.shared
            .remember_fragment(k, dest.id, p.frag_bytes(), cx.now);
    }
    count_out(cx, dest, p);
    Verdict::Rewrite { len: p.len }
}

/// A later fragment of a real server's datagram: the VIP as its source if its first fragment
/// was a reply of a NAT66 flow (see the module documentation).
fn later_fragment_from_server(cx: &mut Ctx<'_>, buf: &mut [u8], p: &Parsed6) -> Verdict {
    let dest = p.fragment.zip(p.frag_key()).and_then(|(f, k)| {
        cx.shared
            .follow_fragment(&k, usize::from(f.offset), p.frag_bytes(), !f.more)
    });
    match dest.and_then(|d| cx.snap.dest(d)) {
        Some(dest) => {
            let IpAddr::V6(vip) = dest.service.vip else {
                return Verdict::Drop(DropReason::NoDestination);
            };
            if let Some(pkt) = buf.get_mut(..p.len) {
                Ipv6Packet::new_unchecked(pkt).set_src_addr(vip);
            }
            count_out(cx, dest, p);
            Verdict::Rewrite { len: p.len }
        }
        None if p.proto == IpProtocol::ICMPV6 => Verdict::Rewrite { len: p.len },
        None => Verdict::Drop(DropReason::FragmentNoFlow),
    }
}

/// An ICMPv6 error to a VIP about a NAT66 flow (quoting a reply VIP:vport → client): the quote
/// becomes RIP:rport → client and the error goes to the real server. `IcmpNoFlow` if the flow
/// is not a live NAT66 flow.
pub fn icmp_from_client(cx: &mut Ctx<'_>, buf: &mut [u8], p: &Parsed6) -> Verdict {
    let Some(q) = p.icmp.filter(|m| m.is_error).and_then(|m| m.quote) else {
        return Verdict::Drop(DropReason::IcmpUnsupported);
    };
    let key = ConnKey6::new(q.proto, q.dst, q.dport, q.src, q.sport);
    let Some((f, dest)) = live_flow_of_client(cx, &key) else {
        return Verdict::Drop(DropReason::IcmpNoFlow);
    };
    rewrite_quote(buf, p, &q, Side::Src, f.raddr, f.rport);
    set_outer(buf, p, Side::Dst, f.raddr);
    let d = cx.counters.dest(dest.id);
    d.in_pkts += 1;
    d.in_bytes += p.len as u64;
    Verdict::Rewrite { len: p.len }
}

/// ICMPv6 from a NAT66 real server: an error about a flow (quoting client → RIP:rport) is
/// translated to quote client → VIP:vport and sent from the VIP; anything else goes back into
/// the TUN unchanged.
fn icmp_from_server(cx: &mut Ctx<'_>, buf: &mut [u8], p: &Parsed6) -> Verdict {
    let passthrough = Verdict::Rewrite { len: p.len };
    let Some(msg) = p.icmp else {
        return Verdict::Drop(DropReason::IcmpUnsupported);
    };
    let Some(q) = msg.quote.filter(|_| msg.is_error) else {
        return passthrough;
    };
    let found = flow_of_server::<ConnKey6>(cx.shared, q.proto, (q.src, q.sport), (q.dst, q.dport));
    let Some(f) = found else {
        return passthrough;
    };
    let Some(dest) = cx
        .snap
        .dest(f.conn.dest)
        .filter(|_| !f.conn.is_expired(cx.now))
    else {
        return Verdict::Drop(DropReason::IcmpNoFlow);
    };
    rewrite_quote(buf, p, &q, Side::Dst, f.key.vaddr, f.key.vport);
    set_outer(buf, p, Side::Src, f.key.vaddr);
    count_out(cx, dest, p);
    Verdict::Rewrite { len: p.len }
}

fn count_out(cx: &mut Ctx<'_>, dest: &Dest, p: &Parsed6) {
    let d = cx.counters.dest(dest.id);
    d.out_pkts += 1;
    d.out_bytes += p.len as u64;
}

/// Whether the packet is a UDP datagram (with its whole header) whose checksum is 0.
pub(super) fn udp_checksum_zero(buf: &[u8], p: &Parsed6) -> bool {
    p.proto == IpProtocol::UDP && p.l4.is_some() && get_u16(buf, p.l4_at + 6) == 0
}

/// Updates the TCP or UDP header of `pkt` for its `side` address changing from `old` to `new`
/// (pseudo-header) and sets that side's port to `port` (0: unchanged), all incrementally.
pub(super) fn rewrite_l4(
    pkt: &mut [u8],
    p: &Parsed6,
    side: Side,
    old: Ipv6Addr,
    new: Ipv6Addr,
    port: u16,
) {
    let Some(l4) = pkt.get_mut(p.l4_at..) else {
        return;
    };
    match p.proto {
        IpProtocol::TCP if l4.len() >= 20 => {
            let mut t = TcpPacket::new_unchecked(l4);
            t.update_checksum_for_addr_v6(old, new);
            match (side, port) {
                (_, 0) => {}
                (Side::Src, port) => t.set_src_port(port),
                (Side::Dst, port) => t.set_dst_port(port),
            }
        }
        IpProtocol::UDP if l4.len() >= 8 => {
            let mut u = UdpPacket::new_unchecked(l4);
            u.update_checksum_for_addr_v6(old, new);
            match (side, port) {
                (_, 0) => {}
                (Side::Src, port) => u.set_src_port(port),
                (Side::Dst, port) => u.set_dst_port(port),
            }
        }
        _ => {}
    }
}

/// Sets the ICMPv6 error's outer `side` address to `addr`, updating the ICMPv6 checksum for
/// its pseudo-header.
pub(super) fn set_outer(buf: &mut [u8], p: &Parsed6, side: Side, addr: Ipv6Addr) {
    let at = p.l4_at + 2;
    let mut ip = Ipv6Packet::new_unchecked(&mut buf[..p.len]);
    let old = match side {
        Side::Src => ip.src_addr(),
        Side::Dst => ip.dst_addr(),
    };
    match side {
        Side::Src => ip.set_src_addr(addr),
        Side::Dst => ip.set_dst_addr(addr),
    }
    let c = checksum::update_addr_v6(get_u16(buf, at), old, addr);
    buf[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Rewrites the packet an ICMPv6 error quotes (a fixed header right behind the 8-byte ICMPv6
/// header, then TCP or UDP: what [`Quote6`] was read from): its `side` address to `addr` and
/// port to `port`, its TCP/UDP checksum if quoted (a UDP checksum of 0 stays 0), and the
/// ICMPv6 checksum, all incrementally. Every field sits at an even offset of the ICMPv6
/// message, so the ICMPv6 checksum takes 16-bit updates.
pub(super) fn rewrite_quote(
    buf: &mut [u8],
    p: &Parsed6,
    q: &Quote6,
    side: Side,
    addr: Ipv6Addr,
    port: u16,
) {
    let icmp_at = p.l4_at;
    let (q_at, end) = (icmp_at + 8, p.len);
    let l4 = q_at + 40;
    let mut icsum = get_u16(buf, icmp_at + 2);
    let mut put = |buf: &mut [u8], at: usize, new: u16| {
        let old = get_u16(buf, at);
        buf[at..at + 2].copy_from_slice(&new.to_be_bytes());
        icsum = checksum::update_u16(icsum, old, new);
    };
    let (old_addr, addr_at, old_port, port_at) = match side {
        Side::Src => (q.src, q_at + 8, q.sport, l4),
        Side::Dst => (q.dst, q_at + 24, q.dport, l4 + 2),
    };
    let l4_csum_at = match q.proto {
        IpProtocol::TCP if end >= l4 + 18 => Some(l4 + 16),
        IpProtocol::UDP if end >= l4 + 8 && get_u16(buf, l4 + 6) != 0 => Some(l4 + 6),
        _ => None,
    };
    if let Some(at) = l4_csum_at {
        let c = checksum::update_addr_v6(get_u16(buf, at), old_addr, addr);
        let c = checksum::update_u16(c, old_port, port);
        let c = if q.proto == IpProtocol::UDP && c == 0 {
            0xffff
        } else {
            c
        };
        put(buf, at, c);
    }
    for (i, w) in addr.segments().into_iter().enumerate() {
        put(buf, addr_at + 2 * i, w);
    }
    put(buf, port_at, port);
    buf[icmp_at + 2..icmp_at + 4].copy_from_slice(&icsum.to_be_bytes());
}
