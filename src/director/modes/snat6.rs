//! S-NAT for IPv6 (NAT66 source translation): the IPv6 hosts of a `[[snat]]` source prefix
//! leave behind an IPv6 public address of the director.
//!
//! Everything but the packet is IPv4's ([`super::snat`]): the same rules (`[[snat]] source =
//! "2001:db8:10::/64" to = ["2001:db8:ff::10"]`), the same mapping code (generic over the
//! family, [`SnatFamily`]) in a table of its own (`Shared::snat6`, so IPv4 mappings keep
//! their size), the same port choice, timeouts, confirmation and eviction of never-confirmed
//! mappings above 7/8 of a shard (counted with IPv4's in
//! `tunlb_conn_evictions_total{table="snat"}`), and the same policy routing with `ip -6`
//! ([`SnatRouting`](super::snat::SnatRouting)). What differs is the packet, as for NAT66
//! ([`super::nat6`], whose rewrites this module uses):
//!
//! - no IP header checksum; the TCP/UDP checksum's pseudo-header covers the addresses and is
//!   updated incrementally, and a UDP datagram with checksum 0 (invalid over IPv6) is dropped
//!   as `malformed_l4`;
//! - ICMPv6 echo (types 128/129) is mapped by its identifier, and ICMPv6's checksum covers a
//!   pseudo-header too: changing the address updates it;
//! - ICMPv6 errors to a public address quoting a mapping (Packet Too Big, Destination
//!   Unreachable, Time Exceeded) are translated back to the inside host, their quote too;
//! - later fragments of an outbound datagram get the host's preferred public address, inbound
//!   ones are dropped (`fragment_no_flow`), as for IPv4.

use super::context::Ctx;
use super::nat::Side;
use super::nat6::{rewrite_l4, rewrite_quote, set_outer, udp_checksum_zero};
use super::snat::{echo_ports, map_in, map_out, map_quote, preferred};
use crate::director::conn::ConnKey6;
use crate::director::packet::v6::Parsed6;
use crate::director::packet::verdict::{DropReason, Verdict};
use crate::director::packet::Ports;
use crate::wire::icmpv6::msg_type;
use crate::wire::{checksum, get_u16, IpProtocol, Ipv6Packet};

/// The ports of a TCP/UDP packet, or the identifier of an ICMPv6 echo request (`sport`) or
/// reply (`dport`) of type `echo`. `None`: not something S-NAT translates.
fn ports6(buf: &[u8], p: &Parsed6, echo: u8) -> Result<Option<Ports>, DropReason> {
    match p.proto {
        IpProtocol::TCP | IpProtocol::UDP => {
            let l4 = p.l4.ok_or(DropReason::MalformedL4)?;
            if udp_checksum_zero(buf, p) {
                return Err(DropReason::MalformedL4);
            }
            Ok(Some(l4))
        }
        IpProtocol::ICMPV6 => {
            let echo_msg = p.icmp.is_some_and(|m| m.msg_type == echo && m.code == 0);
            let whole = p.l4_at + 8 <= p.len.min(buf.len());
            Ok((echo_msg && whole)
                .then(|| echo_ports(get_u16(buf, p.l4_at + 4), echo == msg_type::ECHO_REQUEST)))
        }
        _ => Ok(None),
    }
}

/// S-NAT's look at an IPv6 packet from the TUN, before anything else decides it: IPv4's
/// [`super::snat::handle`] over [`Parsed6`]. `None`: not S-NAT's, the caller goes on.
pub fn handle6(cx: &mut Ctx<'_>, buf: &mut [u8], p: &Parsed6) -> Option<Verdict> {
    let (snap, shared, now) = (cx.snap, cx.shared, cx.now);
    let rules = &snap.snat;
    if rules.is_public(p.dst) {
        return Some(inbound6(cx, buf, p));
    }
    let rule = rules.rule_for(p.src)?;
    if snap.is_vip(p.dst) {
        return None;
    }
    if p.later_fragment() {
        let public = rule.to[preferred(&rule.to, p.src)];
        Ipv6Packet::new_unchecked(&mut buf[..p.len]).set_src_addr(public);
        return Some(Verdict::Rewrite { len: p.len });
    }
    let l4 = match ports6(buf, p, msg_type::ECHO_REQUEST) {
        Ok(Some(l4)) => l4,
        Ok(None) => return None,
        Err(r) => return Some(Verdict::Drop(r)),
    };
    if p.proto != IpProtocol::ICMPV6
        && shared
            .nat6
            .is_reply(p.proto, (p.src, l4.sport), (p.dst, l4.dport), now)
    {
        return None;
    }
    let (public, pport) = match map_out::<ConnKey6>(cx, rule, p.proto, (p.src, p.dst), &l4) {
        Ok(found) => found,
        Err(why) => return Some(Verdict::Drop(why)),
    };
    if p.proto == IpProtocol::ICMPV6 {
        set_outer(buf, p, Side::Src, public);
        set_echo_ident6(buf, p, pport);
    } else {
        let pkt = &mut buf[..p.len];
        Ipv6Packet::new_unchecked(&mut *pkt).set_src_addr(public);
        rewrite_l4(pkt, p, Side::Src, p.src, public, pport);
    }
    Some(Verdict::Rewrite { len: p.len })
}

/// An IPv6 packet to a public address: a reply D:dport → P:pport goes back to H:hport; an
/// ICMPv6 error about a mapping is translated; anything else is dropped.
fn inbound6(cx: &mut Ctx<'_>, buf: &mut [u8], p: &Parsed6) -> Verdict {
    if p.later_fragment() {
        return Verdict::Drop(DropReason::FragmentNoFlow);
    }
    if p.proto == IpProtocol::ICMPV6 {
        match p.icmp {
            Some(m) if m.is_error => return icmp_error_in6(cx, buf, p),
            Some(_) => {}
            None => return Verdict::Drop(DropReason::IcmpUnsupported),
        }
    }
    let l4 = match ports6(buf, p, msg_type::ECHO_REPLY) {
        Ok(Some(l4)) => l4,
        Ok(None) => return Verdict::Drop(DropReason::SnatNoMapping),
        Err(r) => return Verdict::Drop(r),
    };
    let (host, hport) = match map_in::<ConnKey6>(cx, p.proto, (p.src, p.dst), &l4) {
        Ok(found) => found,
        Err(why) => return Verdict::Drop(why),
    };
    if p.proto == IpProtocol::ICMPV6 {
        set_outer(buf, p, Side::Dst, host);
        set_echo_ident6(buf, p, hport);
    } else {
        let pkt = &mut buf[..p.len];
        Ipv6Packet::new_unchecked(&mut *pkt).set_dst_addr(host);
        rewrite_l4(pkt, p, Side::Dst, p.dst, host, hport);
    }
    Verdict::Rewrite { len: p.len }
}

/// An ICMPv6 error to a public address quoting P:pport → D:dport: the quote becomes
/// H:hport → D:dport and the error goes to H.
fn icmp_error_in6(cx: &mut Ctx<'_>, buf: &mut [u8], p: &Parsed6) -> Verdict {
    let Some(q) = p.icmp.and_then(|m| m.quote) else {
        return Verdict::Drop(DropReason::IcmpUnsupported);
    };
    let Some((host, hport)) =
        map_quote::<ConnKey6>(cx, q.proto, (q.src, q.sport), (q.dst, q.dport))
    else {
        return Verdict::Drop(DropReason::IcmpNoFlow);
    };
    rewrite_quote(buf, p, &q, Side::Src, host, hport);
    set_outer(buf, p, Side::Dst, host);
    Verdict::Rewrite { len: p.len }
}

/// Sets the identifier of the ICMPv6 echo message at `p.l4_at`, updating its checksum (the
/// caller checked the message is whole).
fn set_echo_ident6(buf: &mut [u8], p: &Parsed6, ident: u16) {
    let at = p.l4_at;
    let Some(m) = buf.get_mut(at..at + 8) else {
        return;
    };
    let old = u16::from_be_bytes([m[4], m[5]]);
    let csum = u16::from_be_bytes([m[2], m[3]]);
    m[4..6].copy_from_slice(&ident.to_be_bytes());
    m[2..4].copy_from_slice(&checksum::update_u16(csum, old, ident).to_be_bytes());
}
