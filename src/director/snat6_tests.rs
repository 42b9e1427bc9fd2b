//! Scenario tests of S-NAT for IPv6 (NAT66 source translation) in the sans-IO core, the IPv6
//! counterparts of `snat_tests.rs`: two workers over one table, a virtual clock, packets built
//! in memory, every rewrite checked through the wire views and every emitted packet by the
//! oracle.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::conn::{ConnState, Eviction, Timeouts};
use super::snat::{self, SnatRouting, SnatRule, SnatRules};
use super::testkit::Lab;
use super::{DirectorConfig, DropReason, Registry, Verdict};
use crate::model::v4::ServiceSet;
use crate::sys::netcfg::fake::FakeOps;
use crate::sys::netcfg::NetChanges;
use crate::time::{Duration, Instant};
use crate::wire::testing::{ipv6_packet, tcp6_packet, udp6_packet};
use crate::wire::{checksum, Icmpv6Packet, IpProtocol, Ipv6Packet, TcpPacket, UdpPacket};

const H1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 0x11);
const H2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 0x12);
const D1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xd, 0, 0, 0, 0, 0x80);
const P1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 0x10);
const P2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 0x11);
const ROUTER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xd, 0, 0, 0, 0, 1);
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const SYN_ACK: u8 = 0x12;

/// 2001:db8:10::/64 leaves behind `to`; 10.0.0.0/24 behind 192.0.2.10 (IPv4, untouched here).
fn rules(to: &[Ipv6Addr]) -> SnatRules {
    SnatRules::new(vec![
        SnatRule {
            source: "10.0.0.0/24".parse().unwrap(),
            to: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))],
        },
        SnatRule {
            source: "2001:db8:10::/64".parse().unwrap(),
            to: to.iter().map(|&a| a.into()).collect(),
        },
    ])
}

/// Two workers with the S-NAT rules of `to` over an S-NAT table of `max` mappings.
fn lab(to: &[Ipv6Addr], max: usize) -> Lab {
    let mut registry = Registry::new();
    let mut snap = registry
        .build(&ServiceSet::default(), &Timeouts::default())
        .unwrap();
    snap.snat = Arc::new(rules(to));
    let limits = super::Limits {
        max_snat: max,
        ..super::Limits::default()
    };
    let shared = super::Shared::with_limits(snap, limits);
    Lab::from_shared(2, registry, shared, DirectorConfig::default())
}

fn rewritten(v: Verdict, pkt: &[u8]) -> Ipv6Packet<&[u8]> {
    let Verdict::Rewrite { len } = v else {
        panic!("expected Rewrite, got {v:?}")
    };
    Ipv6Packet::new_checked(&pkt[..len]).unwrap()
}

fn assert_tcp(v: Verdict, pkt: &[u8], src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16)) {
    let ip = rewritten(v, pkt);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (src.0, dst.0));
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((tcp.src_port(), tcp.dst_port()), (src.1, dst.1));
    assert!(tcp.verify_checksum_v6(src.0, dst.0), "TCP checksum");
}

fn assert_udp(v: Verdict, pkt: &[u8], src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16)) {
    let ip = rewritten(v, pkt);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (src.0, dst.0));
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((udp.src_port(), udp.dst_port()), (src.1, dst.1));
    assert!(udp.verify_checksum_v6(src.0, dst.0), "UDP checksum");
}

/// The public (address, port) an outbound TCP packet was given.
fn public_of(v: Verdict, pkt: &[u8]) -> (Ipv6Addr, u16) {
    let ip = rewritten(v, pkt);
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(tcp.verify_checksum_v6(ip.src_addr(), ip.dst_addr()));
    (ip.src_addr(), tcp.src_port())
}

/// An ICMPv6 message of `msg_type` (echo: 128 request, 129 reply, with `ident`; an error: the
/// 4-byte `ident` field is its "rest" and `body` its quote), checksum filled in.
fn icmp6(src: Ipv6Addr, dst: Ipv6Addr, msg_type: u8, code: u8, rest: u32, body: &[u8]) -> Vec<u8> {
    let mut m = vec![msg_type, code, 0, 0];
    m.extend(rest.to_be_bytes());
    m.extend(body);
    let c = !checksum::upper_layer_v6(src, dst, IpProtocol::ICMPV6, &m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    ipv6_packet(src, dst, IpProtocol::ICMPV6, &m)
}

fn echo(src: Ipv6Addr, dst: Ipv6Addr, msg_type: u8, ident: u16) -> Vec<u8> {
    icmp6(
        src,
        dst,
        msg_type,
        0,
        u32::from(ident) << 16 | 7,
        &[1, 2, 3, 4],
    )
}

#[test]
fn masquerades_ipv6_tcp_both_ways_keeping_the_source_port() {
    let mut lab = lab(&[P1], 1 << 16);
    let now = Instant::from_secs(1);
    let mut syn = tcp6_packet(H1, 40000, D1, 80, SYN, 0);
    assert_tcp(lab.send(0, now, &mut syn), &syn, (P1, 40000), (D1, 80));
    // The reply comes in on the other worker.
    let mut syn_ack = tcp6_packet(D1, 80, P1, 40000, SYN_ACK, 0);
    let v = lab.send(1, now, &mut syn_ack);
    assert_tcp(v, &syn_ack, (D1, 80), (H1, 40000));
    for (w, flags, len) in [(0, ACK, 0), (1, ACK, 700)] {
        let mut p = tcp6_packet(H1, 40000, D1, 80, flags, len);
        assert_tcp(lab.send(w, now, &mut p), &p, (P1, 40000), (D1, 80));
        let mut r = tcp6_packet(D1, 80, P1, 40000, flags, len * 2);
        assert_tcp(lab.send(1 - w, now, &mut r), &r, (D1, 80), (H1, 40000));
    }
    let m = snat::mappings(&lab.shared.snat6);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].state, ConnState::Established);
    assert_eq!(
        (m[0].host, m[0].public, m[0].remote),
        ((H1, 40000), (P1, 40000), (D1, 80))
    );
    assert_eq!(m[0].expires, now + Duration::from_secs(900));
    // Only the IPv6 table holds it; the IPv4 one and the workers' tables are empty.
    assert!(lab.shared.snat.is_empty());
    assert!(lab
        .workers
        .iter()
        .all(|w| w.conns().is_empty() && w.conns6().is_empty()));
    // A second host on the same port to the same destination takes the next port.
    let mut other = tcp6_packet(H2, 40000, D1, 80, SYN, 0);
    assert_eq!(public_of(lab.send(1, now, &mut other), &other), (P1, 40001));
}

#[test]
fn ipv6_udp_is_mapped_and_a_zero_checksum_or_unknown_reply_dropped() {
    let mut lab = lab(&[P1], 1 << 16);
    let now = Instant::from_secs(1);
    let mut q = udp6_packet(H1, 5353, D1, 53, 40);
    assert_udp(lab.send(0, now, &mut q), &q, (P1, 5353), (D1, 53));
    let mut r = udp6_packet(D1, 53, P1, 5353, 120);
    assert_udp(lab.send(1, now, &mut r), &r, (D1, 53), (H1, 5353));
    // A reply confirmed the mapping's "stream" timeout (180 s) once the host speaks again.
    let m = snat::mappings(&lab.shared.snat6);
    assert_eq!(m[0].expires, now + Duration::from_secs(180));
    // Checksum 0 is invalid over IPv6: dropped both ways.
    let mut zero = udp6_packet(H1, 5353, D1, 53, 40);
    zero[46..48].copy_from_slice(&[0, 0]);
    assert_eq!(
        lab.send(0, now, &mut zero),
        Verdict::Drop(DropReason::MalformedL4)
    );
    // Nothing mapped to that port: dropped.
    let mut stray = udp6_packet(D1, 53, P1, 9999, 10);
    assert_eq!(
        lab.send(1, now, &mut stray),
        Verdict::Drop(DropReason::SnatNoMapping)
    );
    // Expired after 180 s: the reply no longer finds it.
    let later = now + Duration::from_secs(181);
    let mut late = udp6_packet(D1, 53, P1, 5353, 10);
    assert_eq!(
        lab.send(1, later, &mut late),
        Verdict::Drop(DropReason::SnatNoMapping)
    );
}

#[test]
fn icmpv6_echo_is_mapped_by_identifier_with_its_pseudo_header_checksum() {
    let mut lab = lab(&[P1], 1 << 16);
    let now = Instant::from_secs(1);
    let mut a = echo(H1, D1, 128, 77);
    let mut b = echo(H2, D1, 128, 77);
    let mut ids = Vec::new();
    for p in [&mut a, &mut b] {
        let ip = rewritten(lab.send(0, now, p), p);
        assert_eq!((ip.src_addr(), ip.dst_addr()), (P1, D1));
        let m = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(m.verify_checksum(P1, D1), "ICMPv6 checksum");
        ids.push(m.echo_ident().unwrap());
    }
    assert_eq!(ids, [77, 78]);
    for (id, host) in [(77, H1), (78, H2)] {
        let mut r = echo(D1, P1, 129, id);
        let ip = rewritten(lab.send(1, now, &mut r), &r);
        assert_eq!(ip.dst_addr(), host);
        let m = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(m.verify_checksum(D1, host), "ICMPv6 checksum");
        assert_eq!(m.echo_ident(), Some(77));
    }
    let mut unknown = echo(D1, P1, 129, 99);
    assert_eq!(
        lab.send(1, now, &mut unknown),
        Verdict::Drop(DropReason::SnatNoMapping)
    );
}

#[test]
fn icmpv6_errors_about_a_mapping_reach_the_inside_host() {
    let mut lab = lab(&[P1], 1 << 16);
    let now = Instant::from_secs(1);
    let mut first = udp6_packet(H1, 6000, D1, 53, 10);
    let _ = lab.send(0, now, &mut first);
    let original = udp6_packet(H2, 6000, D1, 53, 10);
    let mut sent = original.clone();
    let v = lab.send(0, now, &mut sent);
    assert_udp(v, &sent, (P1, 6001), (D1, 53));
    // Port unreachable from D1, Packet Too Big from a router, about H2's mapping.
    for (from, t, code, rest) in [(D1, 1u8, 4u8, 0u32), (ROUTER, 2, 0, 1400)] {
        let mut err = icmp6(from, P1, t, code, rest, &sent);
        let ip = rewritten(lab.send(1, now, &mut err), &err);
        assert_eq!((ip.src_addr(), ip.dst_addr()), (from, H2));
        let m = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(m.verify_checksum(from, H2), "ICMPv6 checksum");
        // The quote is the packet as H2 sent it, byte for byte.
        assert_eq!(&ip.payload()[8..], &original[..], "quote as H2 sent it");
    }
    // An error about nothing mapped is dropped.
    let stray = udp6_packet(P1, 7777, D1, 53, 10);
    let mut err = icmp6(D1, P1, 1, 4, 0, &stray);
    assert_eq!(
        lab.send(1, now, &mut err),
        Verdict::Drop(DropReason::IcmpNoFlow)
    );
}

#[test]
fn other_ipv6_traffic_is_left_alone_and_ipv4_rules_do_not_apply() {
    let mut lab = lab(&[P1], 1 << 16);
    let now = Instant::from_secs(1);
    // Not from the source prefix: not S-NAT's (no service either).
    let outside = Ipv6Addr::new(0x2001, 0xdb8, 0x11, 0, 0, 0, 0, 1);
    let mut p = tcp6_packet(outside, 1000, D1, 80, SYN, 0);
    assert_eq!(
        lab.send(0, now, &mut p),
        Verdict::Drop(DropReason::NoService)
    );
    assert!(lab.shared.snat6.is_empty());
    // An IPv4 host of the IPv4 rule still goes to the IPv4 table.
    let mut v4 = crate::wire::testing::tcp_packet(
        Ipv4Addr::new(10, 0, 0, 5),
        1000,
        Ipv4Addr::new(203, 0, 113, 1),
        80,
        SYN,
        0,
    );
    assert!(matches!(lab.send(0, now, &mut v4), Verdict::Rewrite { .. }));
    assert_eq!((lab.shared.snat.len(), lab.shared.snat6.len()), (1, 0));
}

/// H1:port ↔ `remote`:443 with traffic both ways (SYN, SYN+ACK, ACK): a confirmed mapping.
fn confirmed_mapping(lab: &mut Lab, now: Instant, port: u16, remote: Ipv6Addr) -> (Ipv6Addr, u16) {
    let mut syn = tcp6_packet(H1, port, remote, 443, SYN, 0);
    let public = public_of(lab.send(0, now, &mut syn), &syn);
    let mut syn_ack = tcp6_packet(remote, 443, public.0, public.1, SYN_ACK, 0);
    let v = lab.send(1, now, &mut syn_ack);
    assert_tcp(v, &syn_ack, (remote, 443), (H1, port));
    let mut ack = tcp6_packet(H1, port, remote, 443, ACK, 0);
    assert_eq!(public_of(lab.send(0, now, &mut ack), &ack), public);
    public
}

#[test]
fn a_flood_of_new_ipv6_flows_evicts_only_unconfirmed_mappings() {
    // 64 shards of 32 mappings: each shard evicts from 28 (7/8) on.
    let mut lab = lab(&[P1, P2], 64 * 32);
    let t0 = Instant::from_secs(10);
    let remote = |i: u32| Ipv6Addr::from(0x2001_0db8_0099_u128 << 80 | u128::from(i));
    let good: Vec<_> = (0..40u32)
        .map(|i| {
            let public = confirmed_mapping(&mut lab, t0, 20000 + i as u16, remote(i));
            (i, public)
        })
        .collect();
    assert_eq!(lab.shared.snat6.len(), 40);
    // The flood: 20,000 new flows from an inside address to ever new destinations.
    let t1 = t0 + Duration::from_secs(1);
    let mut dropped = 0;
    for i in 0..20_000u32 {
        let (src_port, dst) = (1024 + i as u16, remote(1000 + i));
        for flags in [SYN, ACK] {
            let mut p = tcp6_packet(H2, src_port, dst, 80, flags, 0);
            if !matches!(
                lab.send(i as usize % 2, t1, &mut p),
                Verdict::Rewrite { .. }
            ) {
                dropped += 1;
            }
        }
    }
    assert_eq!(dropped, 0, "every new flow got a mapping");
    let len = lab.shared.snat6.len();
    assert!(len <= 64 * 28 + 40, "{len} mappings");
    let (c0, c1) = (lab.workers[0].counters(), lab.workers[1].counters());
    let evicted = |why: Eviction| c0.snat_evicted[why as usize] + c1.snat_evicted[why as usize];
    assert_eq!(
        evicted(Eviction::Unconfirmed) + evicted(Eviction::Expired),
        20_000 + 40 - len as u64
    );
    assert!(lab.shared.snat.is_empty());
    // Every confirmed mapping is still there and still carries replies.
    for (i, public) in good {
        let mut r = tcp6_packet(remote(i), 443, public.0, public.1, ACK, 100);
        let port = 20000 + i as u16;
        assert_tcp(lab.send(1, t1, &mut r), &r, (remote(i), 443), (H1, port));
    }
    // The flood's mappings are unconfirmed: at most 60 s.
    let flood = snat::mappings(&lab.shared.snat6)
        .into_iter()
        .find(|m| m.host.0 == H2)
        .unwrap();
    assert_eq!(flood.expires, t1 + Duration::from_secs(60));
    // The sweep removes expired IPv6 mappings too.
    let later = t1 + Duration::from_secs(3600);
    for i in 0..64 {
        lab.workers[i % 2].handle_timeout(later + Duration::from_secs(i as u64));
    }
    assert!(lab.shared.snat6.is_empty());
}

#[test]
fn a_shard_full_of_confirmed_ipv6_mappings_refuses_new_ones() {
    let mut lab = lab(&[P1], 64 * 4);
    let now = Instant::from_secs(1);
    for port in 0..4 {
        confirmed_mapping(&mut lab, now, 6000 + port, D1);
    }
    let mut syn = tcp6_packet(H1, 7000, D1, 443, SYN, 0);
    assert_eq!(
        lab.send(0, now, &mut syn),
        Verdict::Drop(DropReason::ConnTableFull)
    );
    assert_eq!(lab.workers[0].counters().snat_evicted, [0, 0]);
}

#[test]
fn ipv6_routing_uses_ip_6_rules_and_host_routes() {
    let mut net = NetChanges::with_ops(FakeOps::default());
    let mut routing = SnatRouting::default();
    let only6 = SnatRules::new(vec![SnatRule {
        source: "2001:db8:10::/64".parse().unwrap(),
        to: vec![P1.into(), P2.into()],
    }]);
    routing.sync(&mut net, &only6, "tunlb0").unwrap();
    let t = super::nat::REPLY_TABLE;
    assert_eq!(
        net.ops().log,
        [
            format!("ip route add ::/0 dev tunlb0 table {t}"),
            "ip -6 rule add pref 100 iif tunlb0 goto 102".to_string(),
            "ip -6 rule add pref 100 iif lo goto 102".to_string(),
            "ip -6 rule add pref 102 nop".to_string(),
            format!("ip -6 rule add pref 101 from 2001:db8:10::/64 lookup {t}"),
            "ip route add 2001:db8:ff::10/128 dev tunlb0".to_string(),
            "ip route add 2001:db8:ff::11/128 dev tunlb0".to_string(),
        ]
    );
    // Adding the IPv4 rule brings IPv4's base and only what is new.
    let n = net.ops().log.len();
    routing.sync(&mut net, &rules(&[P1, P2]), "tunlb0").unwrap();
    assert_eq!(
        net.ops().log[n..],
        [
            format!("ip route add 0.0.0.0/0 dev tunlb0 table {t}"),
            "ip rule add pref 100 iif tunlb0 goto 102".to_string(),
            "ip rule add pref 100 iif lo goto 102".to_string(),
            "ip rule add pref 102 nop".to_string(),
            format!("ip rule add pref 101 from 10.0.0.0/24 lookup {t}"),
            "ip route add 192.0.2.10/32 dev tunlb0".to_string(),
        ]
    );
}
