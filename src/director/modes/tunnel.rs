//! TUN mode (`-i`, ipvsadm's "Tunnel"): the client's packet goes to the real server inside an
//! IPIP, GRE or GUE header the core builds; the real server's agent strips it and the server
//! answers the client directly. Tunnel routes and pinned health probes take the same path.
//!
//! The MTU is checked here, against `--tunnel-mtu` less the tunnel's overhead: a packet with DF
//! that does not fit gets an ICMP fragmentation-needed in place ([`Verdict::Reply`]); one
//! without DF is encapsulated whole and the driver sends the outer datagram as fragments
//! ([`Encap::frag_mtu`]), as IPVS lets the kernel do.
//!
//! A GUE packet to a real server with a tunnel key ([`crate::encap::auth`]) carries the
//! authentication option: 28 more bytes of overhead, a sequence number from this worker's
//! lane and a MAC over the packet as the real server receives it. A GSO super-packet cannot
//! be authenticated as one (each segment needs its own MAC); the driver cuts them before the
//! core decides while any key is set, and one that still comes (a key added between the
//! driver's look and the decision) is dropped as `auth_super_packet`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU16;

use super::context::Ctx;
use crate::director::packet::verdict::{DropReason, Encap, Verdict, MAX_FRAGMENTS};
use crate::director::packet::Parsed;
use crate::director::stats::{EncapError, EncapKind};
use crate::director::table::Dest;
use crate::encap::auth::{KeyMap, Seal, TunnelKey};
use crate::encap::chance::SecondChance;
use crate::encap::v6::{build_outer6, inner_mtu, overhead6, OuterFamily, OuterParams6};
use crate::encap::v6::{TrafficClass, Udp6Zero};
use crate::encap::{self, Family, OuterParams, Tunnel, MAX_OUTER_HEADER, OUTER_TTL};

/// Encapsulates the packet to TUN-mode real server `dest` and counts it as its traffic.
#[inline]
pub fn to_dest(
    cx: &mut Ctx<'_>,
    dest: &Dest,
    tunnel: Tunnel,
    buf: &mut [u8],
    p: &Parsed,
    hash: u32,
) -> Verdict {
    let v = match dest.config.addr {
        IpAddr::V4(to) => encap(cx, to, tunnel, buf, p, hash),
        IpAddr::V6(to) => encap_over6(cx, to, tunnel, buf, p, hash),
    };
    if let Verdict::Encap(_) = v {
        let per_dest = cx.counters.dest(dest.id);
        per_dest.in_pkts += u64::from(p.segs);
        per_dest.in_bytes += p.len as u64;
    }
    v
}

/// Encapsulates the packet to `to` through `tunnel`: ICMP fragmentation-needed if it has DF
/// and does not fit the tunnel MTU, outer fragments if it has no DF and does not fit.
pub fn encap(
    cx: &mut Ctx<'_>,
    to: Ipv4Addr,
    tunnel: Tunnel,
    buf: &mut [u8],
    p: &Parsed,
    hash: u32,
) -> Verdict {
    let kind = EncapKind::from(tunnel.kind());
    let keys = keys(cx, tunnel);
    let key = match key_for(cx, &keys, to) {
        Ok(key) => key,
        Err(drop) => return drop,
    };
    if key.is_some() && p.segs > 1 {
        // Counted by the core with the verdict (once per segment).
        return Verdict::Drop(DropReason::AuthSuperPacket);
    }
    let chance = cx
        .second_choice
        .filter(|_| matches!(tunnel, Tunnel::Gue { .. }))
        .map(SecondChance::new);
    let overhead = encap::overhead_full(&tunnel, key.is_some(), chance.is_some());
    let too_big = p.mtu_len + overhead > cx.config.tunnel_mtu as usize;
    if too_big && p.dont_frag {
        let mtu = cx.config.tunnel_mtu.saturating_sub(overhead as u16);
        cx.counters.encap_errors.count(kind, EncapError::TooBig, 1);
        return cx.frag_needed(buf, p.len, mtu);
    }
    let params = OuterParams {
        src: cx.config.local_addr,
        dst: to,
        tunnel,
        flow_hash: hash,
    };
    let mut header = [0u8; MAX_OUTER_HEADER];
    // A GSO super-packet's header is built for its first segment (the driver fixes it per
    // segment); a whole one may not even fit an outer IPv4 length.
    let seal = key.map(|k| cx.auth_seq.seal(k));
    let inner = &buf[..p.mtu_len.min(p.len)];
    let Ok(n) = encap::build_outer_chance(&params, inner, seal.as_ref(), chance, &mut header)
    else {
        return Verdict::Drop(DropReason::MalformedIp);
    };
    // DF clear and too big: as IPVS, send it and let the outer datagram be fragmented (the
    // driver splits it; here we only check that it can). The ident is the driver's to choose.
    let frag_mtu = if too_big {
        match encap::fragment(&header[..n], p.len, cx.config.tunnel_mtu, NonZeroU16::MIN) {
            Ok(frags) if frags.len() <= MAX_FRAGMENTS => {}
            _ => {
                let segs = u64::from(p.segs);
                cx.counters
                    .encap_errors
                    .count(kind, EncapError::TooManyFragments, segs);
                return Verdict::Drop(DropReason::TooManyFragments);
            }
        }
        cx.counters.fragmented += 1;
        cx.config.tunnel_mtu
    } else {
        0
    };
    Verdict::Encap(Encap {
        dst: to,
        header,
        header_len: n as u8,
        len: p.len,
        frag_mtu,
        tunnel,
    })
}

/// Encapsulates the IPv4 packet in an IPv6 outer header to `to` (an IPv4 VIP over an IPv6
/// underlay: 4in6 for `ipip`, as the kernel's ip6tnl; GRE 0x0800 or GUE over IPv6). The outer
/// source is left unspecified for the send path to fill in, as for IPv6 VIPs. A packet with
/// DF that does not fit gets an ICMP fragmentation-needed advertising the tunnel MTU less the
/// IPv6 outer header; one without DF is encapsulated whole and the driver sends the outer
/// datagram as IPv6 fragments ([`Encap::frag_mtu`], RFC 2473 §7.1). The driver cuts GSO
/// super-packets before the core decides while such servers exist
/// ([`crate::director::Snapshot::tunnels_ipv4_over_ipv6`]); one that still comes (the table
/// changed between the driver's look and the decision) is dropped as `ipv6_super_packet`.
/// Authenticated GUE works as over IPv4 (see [`wrap6`]).
pub fn encap_over6(
    cx: &mut Ctx<'_>,
    to: Ipv6Addr,
    tunnel: Tunnel,
    buf: &mut [u8],
    p: &Parsed,
    hash: u32,
) -> Verdict {
    if p.segs > 1 {
        return Verdict::Drop(DropReason::Ipv6SuperPacket);
    }
    let keys = keys(cx, tunnel);
    let key = match key_for(cx, &keys, to) {
        Ok(key) => key,
        Err(drop) => return drop,
    };
    let kind = EncapKind::from(tunnel.kind());
    let too_big = p.len + overhead6(&tunnel, key.is_some()) > usize::from(cx.config.tunnel_mtu);
    if too_big && p.dont_frag {
        let mtu = inner_mtu(
            cx.config.tunnel_mtu,
            OuterFamily::Ipv6,
            Family::Ipv4,
            &tunnel,
            key.is_some(),
            false,
        );
        cx.counters.encap_errors.count(kind, EncapError::TooBig, 1);
        return cx.frag_needed(buf, p.len, mtu);
    }
    let frag_mtu = if too_big {
        cx.counters.fragmented += 1;
        cx.config.tunnel_mtu
    } else {
        0
    };
    let seal = key.map(|k| cx.auth_seq.seal(k));
    let src = cx.config.local_addr6;
    wrap6(
        src,
        to,
        tunnel,
        &buf[..p.len],
        hash,
        frag_mtu,
        seal.as_ref(),
    )
}

/// The tunnel keys, when `tunnel` is GUE and any key is set.
#[inline]
pub fn keys(cx: &Ctx<'_>, tunnel: Tunnel) -> Option<arc_swap::Guard<std::sync::Arc<KeyMap>>> {
    match tunnel {
        Tunnel::Gue { .. } if cx.shared.tunnel_auth() => Some(cx.shared.tunnel_keys()),
        _ => None,
    }
}

/// The key GUE packets to real server `to` are sealed with, if any; a drop
/// (`tunnel_auth_no_source`) when there is one but no outer source address of `to`'s family
/// (`--local-address`, `--local-address6`): the MAC covers the outer source, which the
/// director must know when it builds the packet (the start and reloads refuse keys that
/// could never be used, [`KeyMap::check_sources`]).
#[inline]
pub fn key_for<'k>(
    cx: &Ctx<'_>,
    keys: &'k Option<arc_swap::Guard<std::sync::Arc<KeyMap>>>,
    to: impl Into<IpAddr>,
) -> Result<Option<&'k TunnelKey>, Verdict> {
    let to = to.into();
    let key = keys.as_ref().and_then(|k| k.get(to));
    let no_source = match to {
        IpAddr::V4(_) => cx.config.local_addr.is_unspecified(),
        IpAddr::V6(_) => cx.config.local_addr6.is_unspecified(),
    };
    if key.is_some() && no_source {
        return Err(Verdict::Drop(DropReason::TunnelAuthNoSource));
    }
    Ok(key)
}

/// The [`Verdict::Encap`] of `inner` (either family) in an IPv6 outer header from `src` to
/// `to`, the flow label from `hash`, sent as outer fragments of `frag_mtu` bytes unless 0.
/// An unspecified `src` (no `--local-address6`) is filled in by the send path
/// (`sys/raw_tx6.rs`). A GUE packet with a `seal` carries the authentication option, its MAC
/// over the IPv6 outer addresses (the agent checks it as over IPv4).
pub fn wrap6(
    src: Ipv6Addr,
    to: Ipv6Addr,
    tunnel: Tunnel,
    inner: &[u8],
    hash: u32,
    frag_mtu: u16,
    seal: Option<&Seal<'_>>,
) -> Verdict {
    let params = OuterParams6 {
        src,
        dst: to,
        tunnel,
        flow_hash: hash,
        hop_limit: OUTER_TTL,
        traffic_class: TrafficClass::CopyInner,
        udp_zero: Udp6Zero::Never,
    };
    let mut header = [0u8; MAX_OUTER_HEADER];
    let Ok(n) = build_outer6(&params, inner, seal, &mut header) else {
        return Verdict::Drop(DropReason::MalformedIp);
    };
    Verdict::Encap(Encap {
        dst: Ipv4Addr::UNSPECIFIED,
        header,
        header_len: n as u8,
        len: inner.len(),
        frag_mtu,
        tunnel,
    })
}
