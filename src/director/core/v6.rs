//! IPv6 packets: the same decision as IPv4's, over [`Parsed6`] and the worker's
//! [`ConnTable6`](crate::director::conn::ConnTable6).
//!
//! An IPv6 VIP's real servers are reached through a tunnel (what
//! [`check_forwardable`](crate::director::table::check_forwardable) lets in): ip6ip6, GRE or
//! GUE over IPv6 to an IPv6 server, or sit-style IPv6-in-IPv4, GRE or GUE over IPv4 to an IPv4
//! one; by NAT66 ([`nat6`]: flows in the shared `Shared::nat6`, not in `conns6`; a packet
//! not to a VIP is taken for a NAT66 real server's reply while NAT66 servers exist); or, for an
//! IPv6 server on a LAN the director shares, in a frame to its MAC (DR, [`dr::route6`]). The
//! steps are IPv4's: the flow table first (the hot path), then the service, the scheduler (sh,
//! dh and mh hash IPVS's folded IPv6 address), persistence with IPv6 templates (the client
//! address masked to the service's prefix length), then the tunnel: a packet too big for it
//! gets an ICMPv6 Packet Too Big advertising the tunnel MTU less the outer header (never below
//! 1280), a SYN of a service with `mss_clamp` has its MSS clamped. ICMPv6 errors about a flow
//! go to that flow's real server. Fragments after the first (no ports) follow the first one's
//! real server through the fragment tracker ([`crate::director::shared::frag`], keyed by
//! source, destination and identification); one whose first fragment was not seen is dropped
//! as `fragment_no_flow`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::sync6::{adopt6, queue6, record6, template_of6};
use super::{flow_timeout, Director};
use crate::director::conn::{template_key6, Conn, ConnKey6, ConnState, Direction};
use crate::director::modes::context::Ctx;
use crate::director::modes::{dr, nat, nat6, snat6, tunnel};
use crate::director::packet::v6::{parse6, Parsed6};
use crate::director::packet::verdict::{DropReason, Encap, Verdict};
use crate::director::sched::FlowKey;
use crate::director::shared::counts::{add_count, release6, step_state};
use crate::director::stats::{EncapError, EncapKind};
use crate::director::table::Dest;
use crate::encap::v6::{inner_mtu, overhead6, OuterFamily};
use crate::encap::{Family, Tunnel, MAX_OUTER_HEADER};
use crate::hash::flow_hash;
use crate::model::{Forward, Protocol};
use crate::time::{Duration, Instant};
use crate::wire::{IpProtocol, TcpPacket};

/// The 32 bits IPVS hashes for an IPv6 address (the xor of its four words): what the
/// schedulers and the flow hash see of an IPv6 flow.
fn fold(a: Ipv6Addr) -> Ipv4Addr {
    let x = u128::from(a);
    Ipv4Addr::from((x >> 96) as u32 ^ (x >> 64) as u32 ^ (x >> 32) as u32 ^ x as u32)
}

impl Director {
    /// Decides one IPv6 packet (see the module documentation).
    pub(super) fn decide6(&mut self, now: Instant, buf: &mut [u8]) -> Verdict {
        let p = match parse6(buf) {
            Ok(p) => p,
            Err(r) => return Verdict::Drop(r),
        };
        let snap = self.cache.load();
        let mut cx = Ctx {
            config: &self.config,
            counters: &mut self.counters,
            snap,
            shared: &self.shared,
            now,
            icmp: &mut self.icmp,
            auth_seq: &mut self.auth_seq,
            second_choice: None,
        };
        // A destination behind a tunnel route (and not a VIP): tunnel it as it is, untracked,
        // over the route's IPv4 underlay.
        if let Some(r) = snap.tunnel_route6(p.dst) {
            let (sport, dport) = p.l4.map_or((0, 0), |l4| (l4.sport, l4.dport));
            let hash = flow_hash(fold(p.src), sport, fold(p.dst), dport, p.proto);
            return encap6_over4(&mut cx, r.via, r.tunnel, buf, &p, hash);
        }
        // S-NAT gateway: the inside IPv6 hosts' own connections out, and their replies back.
        if snap.snat.has::<Ipv6Addr>() {
            if let Some(v) = snat6::handle6(&mut cx, buf, &p) {
                return v;
            }
        }
        // With NAT66 real servers, what is not addressed to a VIP is one of their replies.
        if snap.has_nat6() && !snap.is_vip(p.dst) {
            return nat6::handle_from_server(&mut cx, buf, &p);
        }
        // Fragments after the first carry no ports: they follow the first one's real server
        // (NAT66 rewrites only their destination address).
        if let Some(f) = p.fragment.filter(|f| !f.is_first()) {
            let dest = p.frag_key().and_then(|k| {
                cx.shared
                    .follow_fragment(&k, usize::from(f.offset), p.frag_bytes(), !f.more)
            });
            return match dest.and_then(|d| snap.dest(d)) {
                Some(dest) => forward6(&mut cx, dest, buf, &p, None, 0),
                None => Verdict::Drop(DropReason::FragmentNoFlow),
            };
        }
        let proto = match p.proto {
            IpProtocol::TCP => Protocol::Tcp,
            IpProtocol::UDP => Protocol::Udp,
            IpProtocol::ICMPV6 => return icmp6(&mut cx, &mut self.conns6, buf, &p),
            _ => return Verdict::Drop(DropReason::UnsupportedProtocol),
        };
        let Some(l4) = p.l4 else {
            return Verdict::Drop(DropReason::MalformedL4);
        };
        let (sport, dport, flags) = (l4.sport, l4.dport, l4.flags);
        let key = ConnKey6::new(p.proto, p.src, sport, p.dst, dport);
        let hash = flow_hash(fold(p.src), sport, fold(p.dst), dport, p.proto);
        let syn_only = l4.syn_only();
        let rst = flags.contains(crate::wire::TcpFlags::RST);
        let sloppy = self.config.sloppy_tcp && !rst && cx.shared.table_synced();

        // Established flow: the hot path.
        let mut reuse = false;
        let mut found = self.conns6.get_mut(&key);
        if found.is_none() && !cx.shared.synced6.is_empty() {
            // A flow a peer director synced, its first packet here.
            found = adopt6(&mut self.conns6, cx.shared, snap, cx.counters, &key, now);
        }
        if let Some(conn) = found {
            let live = conn.expires() > now;
            if live && !(syn_only && conn.state.is_closing()) {
                if let Some(dest) = snap.dest(conn.dest) {
                    let (before, was_confirmed) = (conn.state, conn.is_confirmed());
                    if proto == Protocol::Tcp {
                        step_state(conn, dest, flags, Direction::InputOnly);
                        if l4.confirms() {
                            conn.confirm();
                        }
                    } else {
                        conn.confirm();
                    }
                    let left = flow_timeout(snap, &self.config, conn);
                    conn.set_expires(now + left);
                    // A state change or the first client data: the backup hears of it.
                    let changed = conn.state != before || conn.is_confirmed() != was_confirmed;
                    if changed && cx.shared.sync_emit() {
                        let rec = record6(dest, key, conn.state, left, conn.is_confirmed());
                        queue6(&mut self.sync_out6, cx.counters, rec);
                    }
                    if let Some(k) = p.frag_key() {
                        cx.shared
                            .remember_fragment(k, conn.dest, p.frag_bytes(), now);
                    }
                    let clamp = syn_only
                        .then(|| snap.service(proto, IpAddr::V6(p.dst), dport))
                        .flatten()
                        .and_then(|s| s.config.mss_clamp);
                    return forward6(&mut cx, dest, buf, &p, clamp, hash);
                }
                if snap.is_held(conn.dest) {
                    return Verdict::Drop(DropReason::DestinationDown);
                }
                if proto == Protocol::Tcp && !syn_only && !sloppy {
                    let old = *conn;
                    self.conns6.remove(&key);
                    cx.counters.conns_expired += 1;
                    release6(snap, &cx.shared.templates6, &key, &old, now);
                    return Verdict::Drop(DropReason::DestinationGone);
                }
            }
            reuse = true;
        } else if snap.has_nat6() {
            match nat::from_client(&mut cx, &key, &l4) {
                Some(nat::FromClient::Flow { dest, mss_clamp }) => {
                    if let Some(k) = p.frag_key() {
                        cx.shared.remember_fragment(k, dest.id, p.frag_bytes(), now);
                    }
                    return forward6(&mut cx, dest, buf, &p, mss_clamp, hash);
                }
                Some(nat::FromClient::Drop(r)) => return Verdict::Drop(r),
                None => {}
            }
        }
        if reuse {
            if let Some(old) = self.conns6.remove(&key) {
                cx.counters.conns_expired += 1;
                release6(snap, &cx.shared.templates6, &key, &old, now);
            }
        }

        // A new flow.
        let Some(svc) = snap.service(proto, IpAddr::V6(p.dst), dport) else {
            return Verdict::Drop(DropReason::NoService);
        };
        if let Err(why) = cx.shared.starts_flows() {
            return Verdict::Drop(why);
        }
        let picked_up = proto == Protocol::Tcp && !syn_only;
        if proto == Protocol::Tcp && (rst || (!syn_only && !sloppy)) {
            return Verdict::Drop(DropReason::NoConnection);
        }
        let flow = FlowKey {
            saddr: fold(p.src),
            sport,
            daddr: fold(p.dst),
            dport,
            proto: p.proto,
        };
        let pick = || {
            svc.scheduler
                .pick(&flow, &svc.sched_dests)
                .map(|i| svc.dest_ids[i])
        };
        let templates = &cx.shared.templates6;
        let template = svc.persistence().map(|pers| {
            let len = pers.netmask.prefix_len_v6();
            let tkey = template_key6(p.proto, p.src, len, p.dst, svc.config.key.port);
            (tkey, Duration::from_secs(u64::from(pers.timeout)))
        });
        let dest_id = match template {
            None => pick(),
            Some((tkey, _)) => super::templated(snap, svc, templates, &tkey, now).or_else(pick),
        };
        let Some(dest) = dest_id.and_then(|id| snap.dest(id)) else {
            return Verdict::Drop(DropReason::NoDestination);
        };
        // NAT66 sees both directions; tunnels only the client's.
        let is_nat = dest.config.forward == Forward::Nat;
        let state = if proto == Protocol::Tcp {
            let dir = if is_nat {
                Direction::Input
            } else {
                Direction::InputOnly
            };
            ConnState::None.after(flags, dir)
        } else {
            ConnState::Udp
        };
        let mut conn = Conn::new(dest.id, state, now);
        if proto == Protocol::Tcp && l4.confirms() {
            conn.confirm();
        }
        conn.set_expires(now + flow_timeout(snap, &self.config, &conn));
        if is_nat {
            if let Err(why) = nat::insert(&mut cx, key, dest, conn) {
                return Verdict::Drop(why);
            }
        } else {
            let (counters, shared) = (&mut *cx.counters, cx.shared);
            self.conns6.make_room(now, |k, c, why| {
                counters.conns_evicted[why as usize] += 1;
                counters.conns_expired += 1;
                release6(snap, &shared.templates6, k, c, now);
            });
            if self.conns6.insert(key, conn).is_err() {
                return Verdict::Drop(DropReason::ConnTableFull);
            }
        }
        if let Some((tkey, timeout)) = template {
            templates.bind(tkey, dest.id, now, timeout);
        }
        if !is_nat && cx.shared.sync_emit() {
            // NAT66 flows are not synced (as IPv4's NAT flows).
            let left = flow_timeout(snap, &self.config, &conn);
            let rec = record6(dest, key, state, left, conn.is_confirmed());
            queue6(&mut self.sync_out6, cx.counters, rec);
            if let Some((tkey, timeout)) = template_of6(svc, &key) {
                let rec = record6(dest, tkey, ConnState::None, timeout, false);
                queue6(&mut self.sync_out6, cx.counters, rec);
            }
        }
        cx.counters.conns_created += 1;
        cx.counters.sloppy_created += u64::from(picked_up);
        cx.counters.dest(dest.id).conns += 1;
        add_count(&dest.state, state, 1);
        dest.state
            .update_overload(dest.config.u_threshold, dest.config.l_threshold);
        if let Some(k) = p.frag_key() {
            cx.shared.remember_fragment(k, dest.id, p.frag_bytes(), now);
        }
        let clamp = if syn_only { svc.config.mss_clamp } else { None };
        forward6(&mut cx, dest, buf, &p, clamp, hash)
    }
}

/// ICMPv6 to a VIP: an error about a known flow (quoting a packet the real server sent from
/// the VIP to the client) goes to that flow's real server; anything else is not served.
fn icmp6(
    cx: &mut Ctx<'_>,
    conns: &mut crate::director::conn::ConnTable6,
    buf: &mut [u8],
    p: &Parsed6,
) -> Verdict {
    let Some(q) = p.icmp.filter(|m| m.is_error).and_then(|m| m.quote) else {
        return Verdict::Drop(DropReason::IcmpUnsupported);
    };
    let key = ConnKey6::new(q.proto, q.dst, q.dport, q.src, q.sport);
    let Some(dest) = conns.get(&key).and_then(|c| cx.snap.dest(c.dest)) else {
        if cx.snap.has_nat6() {
            return nat6::icmp_from_client(cx, buf, p);
        }
        return Verdict::Drop(DropReason::IcmpNoFlow);
    };
    let hash = flow_hash(fold(q.dst), q.dport, fold(q.src), q.sport, q.proto);
    forward6(cx, dest, buf, p, None, hash)
}

/// Sends the IPv6 packet to real server `dest` through its tunnel or in a frame to its MAC
/// (DR), its MSS clamped first.
fn forward6(
    cx: &mut Ctx<'_>,
    dest: &Dest,
    buf: &mut [u8],
    p: &Parsed6,
    mss_clamp: Option<u16>,
    hash: u32,
) -> Verdict {
    if let Some(mss) = mss_clamp {
        if let Some(mut tcp) = buf
            .get_mut(p.l4_at..p.len)
            .and_then(|b| TcpPacket::new_checked(b).ok())
        {
            if tcp.clamp_mss(mss) {
                cx.counters.mss_clamped += 1;
            }
        }
    }
    let tunnel = match dest.config.forward {
        Forward::Tunnel(tunnel) => tunnel,
        Forward::Dr => return dr::route6(cx, dest, buf, p),
        Forward::Nat => return nat6::to_server(cx, dest, buf, p),
    };
    let v = match dest.config.addr {
        IpAddr::V6(to) => encap6(cx, to, tunnel, buf, p, hash),
        IpAddr::V4(to) => encap6_over4(cx, to, tunnel, buf, p, hash),
    };
    if let Verdict::Encap(_) = v {
        let per_dest = cx.counters.dest(dest.id);
        per_dest.in_pkts += 1;
        per_dest.in_bytes += p.len as u64;
    }
    v
}

/// Encapsulates the IPv6 packet in an IPv6 outer header to `to`, or answers it with a Packet
/// Too Big when it does not fit the tunnel. The outer source is `--local-address6`, else left
/// unspecified for the send path to fill in the kernel's source for `to` (and fix the GUE
/// checksum for it); authenticated GUE needs the former ([`tunnel::key_for`]).
fn encap6(
    cx: &mut Ctx<'_>,
    to: Ipv6Addr,
    tunnel: Tunnel,
    buf: &mut [u8],
    p: &Parsed6,
    hash: u32,
) -> Verdict {
    let kind = EncapKind::from(tunnel.kind());
    let keys = tunnel::keys(cx, tunnel);
    let key = match tunnel::key_for(cx, &keys, to) {
        Ok(key) => key,
        Err(drop) => return drop,
    };
    let overhead = overhead6(&tunnel, key.is_some());
    if p.len + overhead > usize::from(cx.config.tunnel_mtu) {
        let mtu = inner_mtu(
            cx.config.tunnel_mtu,
            OuterFamily::Ipv6,
            Family::Ipv6,
            &tunnel,
            key.is_some(),
            false,
        );
        return too_big(cx, buf, p, kind, mtu);
    }
    let seal = key.map(|k| cx.auth_seq.seal(k));
    let src = cx.config.local_addr6;
    tunnel::wrap6(src, to, tunnel, &buf[..p.len], hash, 0, seal.as_ref())
}

/// Encapsulates the IPv6 packet in an IPv4 outer header to `to` (protocol 41 for `ipip`, as
/// the kernel's sit; GRE 0x86DD; GUE with inner protocol 41), or answers it with a Packet Too
/// Big when it does not fit the tunnel. Authenticated GUE works as over IPv4 (the MAC covers
/// the IPv4 outer addresses).
fn encap6_over4(
    cx: &mut Ctx<'_>,
    to: Ipv4Addr,
    tunnel: Tunnel,
    buf: &mut [u8],
    p: &Parsed6,
    hash: u32,
) -> Verdict {
    let kind = EncapKind::from(tunnel.kind());
    let keys = tunnel::keys(cx, tunnel);
    let key = match tunnel::key_for(cx, &keys, to) {
        Ok(key) => key,
        Err(drop) => return drop,
    };
    let overhead = crate::encap::overhead_full(&tunnel, key.is_some(), false);
    if p.len + overhead > usize::from(cx.config.tunnel_mtu) {
        let mtu = inner_mtu(
            cx.config.tunnel_mtu,
            OuterFamily::Ipv4,
            Family::Ipv6,
            &tunnel,
            key.is_some(),
            false,
        );
        return too_big(cx, buf, p, kind, mtu);
    }
    let params = crate::encap::OuterParams {
        src: cx.config.local_addr,
        dst: to,
        tunnel,
        flow_hash: hash,
    };
    let seal = key.map(|k| cx.auth_seq.seal(k));
    let mut header = [0u8; MAX_OUTER_HEADER];
    let Ok(n) =
        crate::encap::build_outer_sealed(&params, &buf[..p.len], seal.as_ref(), &mut header)
    else {
        return Verdict::Drop(DropReason::MalformedIp);
    };
    Verdict::Encap(Encap {
        dst: to,
        header,
        header_len: n as u8,
        len: p.len,
        frag_mtu: 0,
        tunnel,
    })
}

/// A packet too big for its tunnel (`kind`), whose inner MTU is `mtu`: a Packet Too Big
/// advertising it; or, when the packet already fits `mtu` (a tunnel MTU below 1280 + the outer
/// header: RFC 2473 would fragment the outer packet, which the director does not do yet, and
/// an ICMPv6 advertising 1280 would not help), a `too_big` drop.
fn too_big(cx: &mut Ctx<'_>, buf: &mut [u8], p: &Parsed6, kind: EncapKind, mtu: u16) -> Verdict {
    cx.counters.encap_errors.count(kind, EncapError::TooBig, 1);
    if usize::from(mtu) >= p.len {
        return Verdict::Drop(DropReason::TooBig);
    }
    cx.packet_too_big(buf, p.len, mtu, p.dst)
}
