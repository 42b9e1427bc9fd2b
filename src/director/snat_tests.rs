//! Scenario tests of the S-NAT gateway in the sans-IO core: two workers over one table, a
//! virtual clock, packets built in memory, every rewrite checked through the wire views.

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::conn::{ConnState, Timeouts};
use super::snat::{self, SnatRouting, SnatRule, SnatRules};
use super::testkit::{assert_tcp, rewritten, Lab};
use super::{DirectorConfig, DropReason, Registry, Verdict};
use crate::model::v4::ServiceSet;
use crate::model::v4::{DestConfig, ServiceConfig, ServiceKey};
use crate::model::{Forward, Protocol, SchedulerKind};
use crate::sys::netcfg::fake::FakeOps;
use crate::sys::netcfg::NetChanges;
use crate::time::{Duration, Instant};
use crate::wire::testing::{icmp_error, ipv4_packet, tcp_packet, udp_packet};
use crate::wire::{checksum, Icmpv4Packet, Ipv4Packet, TcpPacket, UdpPacket};

const H1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
const H2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 12);
const D1: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 80);
const D2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 81);
const P1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const P2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 100);
const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const SYN_ACK: u8 = 0x12;
const FIN_ACK: u8 = 0x11;

fn rules(to: &[Ipv4Addr]) -> SnatRules {
    SnatRules::new(vec![SnatRule {
        source: "10.0.0.0/24".parse().unwrap(),
        to: to.iter().map(|&a| a.into()).collect(),
    }])
}

/// NAT-mode service VIP:80 → H1:8080 (a real server that is also an S-NAT source).
fn nat_set() -> ServiceSet {
    ServiceSet {
        services: vec![ServiceConfig {
            key: ServiceKey {
                vip: VIP,
                port: 80,
                proto: Protocol::Tcp,
            },
            scheduler: SchedulerKind::Rr,
            persistence: None,
            mss_clamp: None,
            dests: vec![DestConfig {
                addr: H1,
                port: 8080,
                weight: 1,
                forward: Forward::Nat,
                u_threshold: 0,
                l_threshold: 0,
            }],
            policy: Default::default(),
        }],
    }
}

/// Two workers over `set` with S-NAT rules leaving behind `to`.
fn snat_lab(set: &ServiceSet, to: &[Ipv4Addr]) -> Lab {
    let mut registry = Registry::new();
    let mut snap = registry.build(set, &Timeouts::default()).unwrap();
    snap.snat = Arc::new(rules(to));
    Lab::from_snapshot(2, registry, snap, DirectorConfig::default())
}

fn assert_udp(v: Verdict, pkt: &[u8], src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) {
    let ip = rewritten(v, pkt);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (src.0, dst.0));
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((udp.src_port(), udp.dst_port()), (src.1, dst.1));
    assert!(udp.verify_checksum(src.0, dst.0), "UDP checksum");
}

/// The public (address, port) an outbound TCP packet was given.
fn public_of(v: Verdict, pkt: &[u8]) -> (Ipv4Addr, u16) {
    let ip = rewritten(v, pkt);
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(tcp.verify_checksum(ip.src_addr(), ip.dst_addr()));
    (ip.src_addr(), tcp.src_port())
}

fn echo(src: Ipv4Addr, dst: Ipv4Addr, msg_type: u8, ident: u16) -> Vec<u8> {
    let mut m = vec![msg_type, 0, 0, 0, 0, 0, 0, 7, 1, 2, 3, 4];
    m[4..6].copy_from_slice(&ident.to_be_bytes());
    let c = checksum::checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4_packet(src, dst, 1, &m)
}

#[test]
fn masquerades_tcp_both_ways_keeping_the_source_port() {
    let mut lab = snat_lab(&ServiceSet::default(), &[P1]);
    let now = Instant::from_secs(1);
    let mut syn = tcp_packet(H1, 40000, D1, 80, SYN, 0);
    let v = lab.send(0, now, &mut syn);
    assert_tcp(v, &syn, (P1, 40000), (D1, 80));
    // The reply comes in on the other worker.
    let mut syn_ack = tcp_packet(D1, 80, P1, 40000, SYN_ACK, 0);
    let v = lab.send(1, now, &mut syn_ack);
    assert_tcp(v, &syn_ack, (D1, 80), (H1, 40000));
    for (w, flags, len) in [(0, ACK, 0), (1, ACK, 700)] {
        let mut p = tcp_packet(H1, 40000, D1, 80, flags, len);
        assert_tcp(lab.send(w, now, &mut p), &p, (P1, 40000), (D1, 80));
        let mut r = tcp_packet(D1, 80, P1, 40000, flags, len * 2);
        assert_tcp(lab.send(1 - w, now, &mut r), &r, (D1, 80), (H1, 40000));
    }
    let m = snat::mappings(&lab.shared.snat);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].state, ConnState::Established);
    assert_eq!(
        (m[0].host, m[0].public, m[0].remote),
        ((H1, 40000), (P1, 40000), (D1, 80))
    );
    // IPVS's ESTABLISHED timeout (the running `tcp` value).
    assert_eq!(m[0].expires, now + Duration::from_secs(900));
    // Nothing in the per-worker tables or the NAT-mode table.
    assert!(lab.workers.iter().all(|w| w.conns().is_empty()));
    assert!(lab.shared.nat.is_empty());
}

#[test]
fn one_public_port_serves_several_destinations() {
    let mut lab = snat_lab(&ServiceSet::default(), &[P1]);
    let now = Instant::from_secs(1);
    // H1 and H2 both use port 5000, to different destinations: both keep it.
    let mut a = tcp_packet(H1, 5000, D1, 443, SYN, 0);
    assert_eq!(public_of(lab.send(0, now, &mut a), &a), (P1, 5000));
    let mut b = tcp_packet(H2, 5000, D2, 443, SYN, 0);
    assert_eq!(public_of(lab.send(1, now, &mut b), &b), (P1, 5000));
    // H2:5000 to D1:443 clashes with H1's mapping there: the next port.
    let mut c = tcp_packet(H2, 5000, D1, 443, SYN, 0);
    assert_eq!(public_of(lab.send(0, now, &mut c), &c), (P1, 5001));
    // Each reply finds its own host.
    for (d, pport, host) in [(D1, 5000, H1), (D2, 5000, H2), (D1, 5001, H2)] {
        let mut r = tcp_packet(d, 443, P1, pport, SYN_ACK, 10);
        assert_tcp(lab.send(1, now, &mut r), &r, (d, 443), (host, 5000));
    }
    // A privileged port stays privileged.
    let mut e = tcp_packet(H1, 1000, D1, 443, SYN, 0);
    assert_eq!(public_of(lab.send(0, now, &mut e), &e), (P1, 1000));
    let mut f = tcp_packet(H2, 1000, D1, 443, SYN, 0);
    assert_eq!(public_of(lab.send(0, now, &mut f), &f), (P1, 1001));
    assert_eq!(lab.shared.snat.len(), 5);
}

#[test]
fn udp_times_out_like_conntrack_and_ports_are_reused() {
    let mut lab = snat_lab(&ServiceSet::default(), &[P1]);
    let t0 = Instant::from_secs(1);
    let mut q = udp_packet(H1, 5353, D1, 53, 30);
    assert_udp(lab.send(0, t0, &mut q), &q, (P1, 5353), (D1, 53));
    let m = snat::mappings(&lab.shared.snat);
    assert_eq!(m[0].state, ConnState::Udp);
    assert_eq!(m[0].expires, t0 + Duration::from_secs(30));
    // A reply makes it a stream: 180 s.
    let t1 = t0 + Duration::from_secs(10);
    let mut a = udp_packet(D1, 53, P1, 5353, 80);
    assert_udp(lab.send(1, t1, &mut a), &a, (D1, 53), (H1, 5353));
    assert_eq!(
        snat::mappings(&lab.shared.snat)[0].expires,
        t1 + Duration::from_secs(180)
    );
    // A checksum of 0 stays 0.
    let mut z = udp_packet(H1, 5353, D1, 53, 4);
    z[26..28].copy_from_slice(&[0, 0]);
    let ip = rewritten(lab.send(0, t1, &mut z), &z);
    assert_eq!(UdpPacket::new_checked(ip.payload()).unwrap().checksum(), 0);

    // While it lives, H2:5353 → D1:53 gets another port; once it expired, the same one.
    let mut other = udp_packet(H2, 5353, D1, 53, 4);
    assert_udp(lab.send(0, t1, &mut other), &other, (P1, 5354), (D1, 53));
    let late = t1 + Duration::from_secs(181);
    let mut stale = udp_packet(D1, 53, P1, 5353, 8);
    assert_eq!(
        lab.send(1, late, &mut stale),
        Verdict::Drop(DropReason::SnatNoMapping)
    );
    let mut again = udp_packet(H2, 7000, D1, 53, 4);
    assert_udp(lab.send(0, late, &mut again), &again, (P1, 7000), (D1, 53));
    // The sweep removes what expired.
    for i in 0..super::nat::SHARDS as u64 {
        lab.workers[0].handle_timeout(late + Duration::from_secs(3600 + i));
    }
    assert!(lab.shared.snat.is_empty());
}

#[test]
fn tcp_fin_states_are_shorter_and_a_new_syn_takes_a_closing_mapping() {
    let mut lab = snat_lab(&ServiceSet::default(), &[P1]);
    let now = Instant::from_secs(5);
    let steps = [
        (true, SYN),
        (false, SYN_ACK),
        (true, ACK),
        (true, FIN_ACK),
        (false, FIN_ACK),
        (true, ACK),
    ];
    for (out, flags) in steps {
        let mut p = if out {
            tcp_packet(H1, 41000, D1, 80, flags, 0)
        } else {
            tcp_packet(D1, 80, P1, 41000, flags, 0)
        };
        assert!(matches!(lab.send(0, now, &mut p), Verdict::Rewrite { .. }));
    }
    let m = snat::mappings(&lab.shared.snat)[0];
    assert!(m.state != ConnState::Established, "{:?}", m.state);
    assert!(m.expires < now + Duration::from_secs(900));
    let mut syn = tcp_packet(H1, 41000, D1, 80, SYN, 0);
    assert_eq!(public_of(lab.send(1, now, &mut syn), &syn), (P1, 41000));
    assert_eq!(lab.shared.snat.len(), 1);
    assert_eq!(
        snat::mappings(&lab.shared.snat)[0].state,
        ConnState::SynRecv
    );
    // A lone RST makes no mapping.
    let mut rst = tcp_packet(H2, 1234, D2, 80, 0x04, 0);
    assert_eq!(
        lab.send(0, now, &mut rst),
        Verdict::Drop(DropReason::NoConnection)
    );
}

#[test]
fn icmp_echo_is_mapped_by_identifier() {
    let mut lab = snat_lab(&ServiceSet::default(), &[P1]);
    let now = Instant::from_secs(1);
    let mut a = echo(H1, D1, 8, 77);
    let mut b = echo(H2, D1, 8, 77);
    let mut ids = Vec::new();
    for p in [&mut a, &mut b] {
        let ip = rewritten(lab.send(0, now, p), p);
        assert_eq!(ip.src_addr(), P1);
        let m = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(m.verify_checksum());
        ids.push(m.echo_ident().unwrap());
    }
    assert_eq!(ids, [77, 78]);
    for (id, host) in [(77, H1), (78, H2)] {
        let mut r = echo(D1, P1, 0, id);
        let ip = rewritten(lab.send(1, now, &mut r), &r);
        assert_eq!(ip.dst_addr(), host);
        let m = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(m.verify_checksum());
        assert_eq!(m.echo_ident(), Some(77));
    }
    let mut unknown = echo(D1, P1, 0, 99);
    assert_eq!(
        lab.send(1, now, &mut unknown),
        Verdict::Drop(DropReason::SnatNoMapping)
    );
}

#[test]
fn icmp_errors_about_a_mapping_reach_the_inside_host() {
    let mut lab = snat_lab(&ServiceSet::default(), &[P1]);
    let now = Instant::from_secs(1);
    let mut q = udp_packet(H1, 6000, D1, 53, 10);
    let _ = lab.send(0, now, &mut q);
    let original = udp_packet(H2, 6000, D1, 53, 10);
    let mut q2 = original.clone();
    let v = lab.send(0, now, &mut q2);
    assert_udp(v, &q2, (P1, 6001), (D1, 53));
    // Port unreachable from D1, and fragmentation needed from a router, about H2's mapping.
    for (from, code) in [(D1, 3u8), (ROUTER, 4)] {
        let mut err = icmp_error(from, P1, 3, code, 1400, &q2);
        let ip = rewritten(lab.send(1, now, &mut err), &err);
        assert_eq!((ip.src_addr(), ip.dst_addr()), (from, H2));
        let m = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(m.verify_checksum(), "ICMP checksum");
        // The quote is cut (28 bytes): check its header and the UDP header it holds.
        let quote = m.invoking_packet().unwrap();
        let inner = Ipv4Packet::new_unchecked(quote);
        assert!(inner.verify_checksum(), "quoted header checksum");
        assert_eq!((inner.src_addr(), inner.dst_addr()), (H2, D1));
        assert_eq!(
            quote[20..26],
            original[20..26],
            "ports and length as H2 sent them"
        );
        assert_eq!(
            quote[26..28],
            original[26..28],
            "UDP checksum as H2 computed it"
        );
    }
}

#[test]
fn nat_mode_replies_and_vips_are_left_to_the_rest_of_the_core() {
    let mut lab = snat_lab(&nat_set(), &[P1]);
    let now = Instant::from_secs(1);
    // A NAT-mode flow to H1:8080; its reply keeps coming from the VIP.
    let client = Ipv4Addr::new(198, 51, 100, 7);
    let mut syn = tcp_packet(client, 33000, VIP, 80, SYN, 0);
    assert_tcp(
        lab.send(0, now, &mut syn),
        &syn,
        (client, 33000),
        (H1, 8080),
    );
    let mut reply = tcp_packet(H1, 8080, client, 33000, SYN_ACK, 0);
    assert_tcp(
        lab.send(1, now, &mut reply),
        &reply,
        (VIP, 80),
        (client, 33000),
    );
    // H1's own connection from another port is masqueraded.
    let mut own = tcp_packet(H1, 8080, client, 33001, SYN, 0);
    assert_tcp(
        lab.send(1, now, &mut own),
        &own,
        (P1, 8080),
        (client, 33001),
    );
    // H2 talking to the VIP is a client of the service, not masqueraded.
    let mut to_vip = tcp_packet(H2, 34000, VIP, 80, SYN, 0);
    assert_tcp(
        lab.send(0, now, &mut to_vip),
        &to_vip,
        (H2, 34000),
        (H1, 8080),
    );
    assert_eq!(lab.shared.snat.len(), 1);
    assert_eq!(lab.shared.nat.len(), 2);
}

#[test]
fn a_host_keeps_its_address_and_spills_over_when_ports_run_out() {
    let mut lab = snat_lab(&ServiceSet::default(), &[P1, P2]);
    let now = Instant::from_secs(1);
    // Privileged source ports share 1..=1023: fill them towards one destination.
    let mut publics = std::collections::HashSet::new();
    for i in 0..2 * 1023u32 {
        let host = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + i % 250 + 1);
        let sport = 100 + (i / 250) as u16;
        let mut p = tcp_packet(host, sport, D1, 25, SYN, 0);
        let (pa, pp) = public_of(lab.send(0, now, &mut p), &p);
        assert!((1..1024).contains(&pp));
        assert!(publics.insert((pa, pp)), "({pa}, {pp}) given twice");
    }
    let mut full = tcp_packet(H1, 999, D1, 25, SYN, 0);
    assert_eq!(
        lab.send(0, now, &mut full),
        Verdict::Drop(DropReason::SnatPortsExhausted)
    );
    // Another destination still has every port.
    let mut other = tcp_packet(H1, 999, D2, 25, SYN, 0);
    assert!(matches!(
        lab.send(0, now, &mut other),
        Verdict::Rewrite { .. }
    ));
}

#[test]
fn later_fragments_take_the_hosts_address_and_inbound_ones_are_dropped() {
    let mut lab = snat_lab(&ServiceSet::default(), &[P1]);
    let now = Instant::from_secs(1);
    let mut frag = ipv4_packet(H1, D1, 17, &[0u8; 40]);
    frag[6..8].copy_from_slice(&0x0005u16.to_be_bytes()); // offset 40, DF clear
    let mut ip = Ipv4Packet::new_unchecked(&mut frag[..]);
    ip.fill_checksum();
    let ip = rewritten(lab.send(0, now, &mut frag), &frag);
    assert_eq!(ip.src_addr(), P1);
    let mut back = ipv4_packet(D1, P1, 17, &[0u8; 40]);
    back[6..8].copy_from_slice(&0x0005u16.to_be_bytes());
    Ipv4Packet::new_unchecked(&mut back[..]).fill_checksum();
    assert_eq!(
        lab.send(0, now, &mut back),
        Verdict::Drop(DropReason::FragmentNoFlow)
    );
}

#[test]
fn arbitrary_bytes_never_panic_with_snat() {
    let mut lab = snat_lab(&nat_set(), &[P1]);
    let now = Instant::from_secs(1);
    let seeds = [
        tcp_packet(H1, 1, D1, 2, SYN, 0),
        udp_packet(D1, 2, P1, 1, 3),
        echo(H1, D1, 8, 1),
        icmp_error(D1, P1, 3, 3, 0, &udp_packet(P1, 1, D1, 2, 0)),
    ];
    let mut x: u64 = 0x1234_5678;
    for seed in &seeds {
        for cut in 0..seed.len() {
            for _ in 0..20 {
                let mut p = seed[..cut.max(20)].to_vec();
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = 20 + (x as usize) % p.len().saturating_sub(20).max(1);
                if let Some(b) = p.get_mut(i) {
                    *b ^= (x >> 32) as u8;
                }
                let _ = lab.send((x & 1) as usize, now, &mut p);
            }
        }
    }
}

#[test]
fn routing_brings_sources_and_public_addresses_into_the_tun() {
    let mut net = NetChanges::with_ops(FakeOps::default());
    let mut routing = SnatRouting::default();
    routing.sync(&mut net, &rules(&[P1, P2]), "tunlb0").unwrap();
    let t = super::nat::REPLY_TABLE;
    assert_eq!(
        net.ops().log,
        [
            format!("ip route add 0.0.0.0/0 dev tunlb0 table {t}"),
            "ip rule add pref 100 iif tunlb0 goto 102".to_string(),
            "ip rule add pref 100 iif lo goto 102".to_string(),
            "ip rule add pref 102 nop".to_string(),
            format!("ip rule add pref 101 from 10.0.0.0/24 lookup {t}"),
            "ip route add 192.0.2.10/32 dev tunlb0".to_string(),
            "ip route add 192.0.2.11/32 dev tunlb0".to_string(),
        ]
    );
    // Changing the rules changes only what differs; no rules: nothing but the base stays.
    let n = net.ops().log.len();
    routing.sync(&mut net, &rules(&[P2]), "tunlb0").unwrap();
    assert_eq!(
        net.ops().log[n..],
        ["ip route del 192.0.2.10/32 dev tunlb0".to_string()]
    );
    routing
        .sync(&mut net, &SnatRules::default(), "tunlb0")
        .unwrap();
    assert_eq!(
        net.ops().log[n + 1..],
        [
            format!("ip rule del pref 101 from 10.0.0.0/24 lookup {t}"),
            "ip route del 192.0.2.11/32 dev tunlb0".to_string(),
        ]
    );
}

/// Two workers with S-NAT rules over an S-NAT table of `max` mappings (64 shards of
/// `max / 64`).
fn small_snat_lab(max: usize) -> Lab {
    let mut registry = Registry::new();
    let mut snap = registry
        .build(&ServiceSet::default(), &Timeouts::default())
        .unwrap();
    snap.snat = Arc::new(rules(&[P1, P2]));
    let limits = super::Limits {
        max_snat: max,
        ..super::Limits::default()
    };
    let shared = super::Shared::with_limits(snap, limits);
    Lab::from_shared(2, registry, shared, DirectorConfig::default())
}

/// H1:port ↔ `remote`:443 with traffic both ways (SYN, SYN+ACK, ACK): a confirmed mapping.
fn confirmed_mapping(lab: &mut Lab, now: Instant, port: u16, remote: Ipv4Addr) -> (Ipv4Addr, u16) {
    let mut syn = tcp_packet(H1, port, remote, 443, SYN, 0);
    let public = public_of(lab.send(0, now, &mut syn), &syn);
    let mut syn_ack = tcp_packet(remote, 443, public.0, public.1, SYN_ACK, 0);
    assert_tcp(
        lab.send(1, now, &mut syn_ack),
        &syn_ack,
        (remote, 443),
        (H1, port),
    );
    let mut ack = tcp_packet(H1, port, remote, 443, ACK, 0);
    assert_eq!(public_of(lab.send(0, now, &mut ack), &ack), public);
    public
}

#[test]
fn a_flood_of_new_outbound_flows_evicts_only_unconfirmed_mappings() {
    // 64 shards of 32 mappings: each shard evicts from 28 (7/8) on.
    let mut lab = small_snat_lab(64 * 32);
    let t0 = Instant::from_secs(10);
    let remote = |i: u32| Ipv4Addr::from(0xc612_0000 + i); // 198.18.0.0/15
    let good: Vec<_> = (0..40u32)
        .map(|i| {
            (
                i,
                confirmed_mapping(&mut lab, t0, 20000 + i as u16, remote(i)),
            )
        })
        .collect();
    assert_eq!(lab.shared.snat.len(), 40);
    // The flood: 20,000 new flows (a spoofed SYN+ACK pair each) from an inside address to
    // ever new destinations; nothing answers them.
    let t1 = t0 + Duration::from_secs(1);
    let mut dropped = 0;
    for i in 0..20_000u32 {
        let (src_port, dst) = (1024 + (i % 50_000) as u16, remote(1000 + i));
        for flags in [SYN, ACK] {
            let mut p = tcp_packet(H2, src_port, dst, 80, flags, 0);
            if !matches!(
                lab.send(i as usize % 2, t1, &mut p),
                Verdict::Rewrite { .. }
            ) {
                dropped += 1;
            }
        }
    }
    assert_eq!(dropped, 0, "every new flow got a mapping");
    // Bounded: at most 7/8 of the table, plus the shards' confirmed mappings.
    let len = lab.shared.snat.len();
    assert!(len <= 64 * 28 + 40, "{len} mappings");
    let c = lab.workers[0].counters().clone();
    let c1 = lab.workers[1].counters().clone();
    let evicted =
        |why: super::conn::Eviction| c.snat_evicted[why as usize] + c1.snat_evicted[why as usize];
    assert_eq!(
        evicted(super::conn::Eviction::Unconfirmed) + evicted(super::conn::Eviction::Expired),
        20_000 + 40 - len as u64
    );
    assert_eq!(
        c.evicted(super::conn::Eviction::Unconfirmed),
        0,
        "not the flow table's"
    );
    // Every confirmed mapping is still there and still carries replies.
    for (i, public) in good {
        let mut r = tcp_packet(remote(i), 443, public.0, public.1, ACK, 100);
        let port = 20000 + i as u16;
        assert_tcp(lab.send(1, t1, &mut r), &r, (remote(i), 443), (H1, port));
    }
    // The flood's mappings are unconfirmed: ESTABLISHED, but 60 s, not 900.
    let flood = snat::mappings(&lab.shared.snat)
        .into_iter()
        .find(|m| m.host.0 == H2)
        .unwrap();
    assert_eq!(flood.state, ConnState::Established);
    assert_eq!(flood.expires, t1 + Duration::from_secs(60));
    // A new legitimate flow still gets in.
    let t2 = t1 + Duration::from_secs(1);
    confirmed_mapping(&mut lab, t2, 30000, remote(999_999));
    let m = snat::mappings(&lab.shared.snat);
    let new = m.iter().find(|m| m.host == (H1, 30000)).unwrap();
    assert_eq!(new.expires, t2 + Duration::from_secs(900), "confirmed");
}

#[test]
fn a_shard_full_of_confirmed_mappings_refuses_new_ones() {
    // 64 shards of 4: every mapping to one destination is in one shard.
    let mut lab = small_snat_lab(64 * 4);
    let now = Instant::from_secs(1);
    for port in 0..4 {
        confirmed_mapping(&mut lab, now, 6000 + port, D1);
    }
    let mut syn = tcp_packet(H1, 7000, D1, 443, SYN, 0);
    assert_eq!(
        lab.send(0, now, &mut syn),
        Verdict::Drop(DropReason::ConnTableFull)
    );
    let c = lab.workers[0].counters();
    assert_eq!(
        c.snat_evicted,
        [0, 0],
        "confirmed mappings are never evicted"
    );
    // Once they expired, the first new mapping evicts one.
    let later = now + Duration::from_secs(901);
    let mut syn = tcp_packet(H1, 7000, D1, 443, SYN, 0);
    assert!(matches!(
        lab.send(0, later, &mut syn),
        Verdict::Rewrite { .. }
    ));
    let c = lab.workers[0].counters();
    assert_eq!(c.snat_evicted[super::conn::Eviction::Expired as usize], 1);
}
