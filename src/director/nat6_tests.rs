//! Scenario tests of NAT66 (`-m` with an IPv6 VIP and IPv6 real servers) in the sans-IO core:
//! two workers over one table, a virtual clock, packets built in memory, every rewrite checked
//! with the wire views and every emitted packet by the etherparse oracle.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use super::conn::{ConnKey6, ConnState, Timeouts};
use super::nat::{ReplyRouting, REPLY_TABLE};
use super::{Director, DirectorConfig, DropReason, Registry, Shared, Verdict};
use crate::fuzzing::{emitted, oracle};
use crate::model::ServiceSet;
use crate::model::{DestConfig, Forward, Protocol, SchedulerKind, ServiceConfig, ServiceKey};
use crate::sys::netcfg::fake::FakeOps;
use crate::sys::netcfg::NetChanges;
use crate::time::{Duration, Instant};
use crate::wire::testing::{ipv6_packet, tcp6_packet, udp6_packet};
use crate::wire::{checksum, IpProtocol, Ipv6Packet, TcpPacket, UdpPacket};

const VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x100);
const RS1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 0x12);
const RS2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 0x13);
const CLIENT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
const ROUTER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const SYN_ACK: u8 = 0x12;
const PSH_ACK: u8 = 0x18;

fn nat_dest(addr: Ipv6Addr, port: u16) -> DestConfig {
    DestConfig {
        addr: IpAddr::V6(addr),
        port,
        weight: 1,
        forward: Forward::Nat,
        u_threshold: 0,
        l_threshold: 0,
    }
}

fn service(port: u16, proto: Protocol, dests: Vec<DestConfig>) -> ServiceConfig {
    ServiceConfig {
        key: ServiceKey {
            vip: IpAddr::V6(VIP),
            port,
            proto,
        },
        scheduler: SchedulerKind::Rr,
        persistence: None,
        mss_clamp: None,
        dests,
        policy: Default::default(),
    }
}

/// TCP [VIP]:80 → RS1:8080 and RS2:8080 (rr), UDP [VIP]:53 → RS1:5353.
fn nat6_set() -> ServiceSet {
    ServiceSet {
        services: vec![
            service(
                80,
                Protocol::Tcp,
                vec![nat_dest(RS1, 8080), nat_dest(RS2, 8080)],
            ),
            service(53, Protocol::Udp, vec![nat_dest(RS1, 5353)]),
        ],
    }
}

/// Two workers over one shared table (the two directions of a flow land on different TUN
/// queues).
struct Lab6 {
    shared: Arc<Shared>,
    workers: Vec<Director>,
}

impl Lab6 {
    fn new(set: &ServiceSet, config: DirectorConfig) -> Lab6 {
        let snap = Registry::new().build(set, &Timeouts::default()).unwrap();
        let shared = Arc::new(Shared::new(snap));
        let workers = (0..2)
            .map(|_| Director::new(shared.clone(), config.clone()))
            .collect();
        Lab6 { shared, workers }
    }

    /// Hands `pkt` to worker `w`; every packet the verdict emits is checked by the oracle.
    fn send(&mut self, w: usize, now: Instant, pkt: &mut [u8]) -> Verdict {
        let valid = emitted::valid(oracle::check_ipv4, pkt);
        let v = self.workers[w].handle_packet(now, pkt);
        emitted::check_verdict(oracle::check_ipv4, valid, &v, pkt);
        v
    }

    fn flow(&self, cport: u16) -> super::nat::NatConn<ConnKey6> {
        let key = ConnKey6::new(IpProtocol::TCP, CLIENT, cport, VIP, 80);
        self.shared.nat6.get(&key).expect("the flow")
    }

    /// (active, inactive) of the TCP service's server `addr`.
    fn counts(&self, addr: Ipv6Addr) -> (u32, u32) {
        let snap = self.shared.snapshot();
        let svc = snap.service(Protocol::Tcp, VIP, 80).unwrap();
        let d = svc
            .sched_dests
            .iter()
            .find(|d| d.addr == IpAddr::V6(addr))
            .unwrap();
        (d.state.active(), d.state.inactive())
    }
}

/// The packet after a `Rewrite`, as an IPv6 view.
fn rewritten(v: Verdict, pkt: &[u8]) -> Ipv6Packet<&[u8]> {
    let Verdict::Rewrite { len } = v else {
        panic!("expected Rewrite, got {v:?}")
    };
    Ipv6Packet::new_checked(&pkt[..len]).unwrap()
}

/// Asserts a rewritten TCP packet goes `src:sport -> dst:dport` with a valid checksum and the
/// hop limit left to the kernel.
fn assert_tcp(v: Verdict, pkt: &[u8], src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16)) {
    let ip = rewritten(v, pkt);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (src.0, dst.0));
    assert_eq!(ip.hop_limit(), 64, "the hop limit is left to the kernel");
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((tcp.src_port(), tcp.dst_port()), (src.1, dst.1));
    assert!(tcp.verify_checksum_v6(src.0, dst.0), "TCP checksum");
}

/// An ICMPv6 error (`icmp_type`, `code`, 4-byte `rest`) from `src` to `dst` quoting all of
/// `original` (up to 1232 bytes), checksum filled in.
fn icmp6_error(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    icmp_type: u8,
    code: u8,
    rest: u32,
    original: &[u8],
) -> Vec<u8> {
    let mut icmp = vec![icmp_type, code, 0, 0];
    icmp.extend(rest.to_be_bytes());
    icmp.extend(&original[..original.len().min(1232)]);
    let sum = !checksum::upper_layer_v6(src, dst, IpProtocol::ICMPV6, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    ipv6_packet(src, dst, IpProtocol::ICMPV6, &icmp)
}

#[test]
fn nat66_rewrites_both_ways_with_port_mapping_and_valid_checksums() {
    let mut lab = Lab6::new(&nat6_set(), DirectorConfig::default());
    let now = Instant::from_secs(1);
    let mut syn = tcp6_packet(CLIENT, 40000, VIP, 80, SYN, 0);
    let v = lab.send(0, now, &mut syn);
    assert_tcp(v, &syn, (CLIENT, 40000), (RS1, 8080));
    // The reply arrives on the other worker and finds the flow by the real server's tuple.
    let mut syn_ack = tcp6_packet(RS1, 8080, CLIENT, 40000, SYN_ACK, 0);
    let v = lab.send(1, now, &mut syn_ack);
    assert_tcp(v, &syn_ack, (VIP, 80), (CLIENT, 40000));
    for (w, flags, len) in [(1, ACK, 0), (0, PSH_ACK, 300), (1, PSH_ACK, 1200)] {
        let mut p = tcp6_packet(CLIENT, 40000, VIP, 80, flags, len);
        assert_tcp(lab.send(w, now, &mut p), &p, (CLIENT, 40000), (RS1, 8080));
        let mut r = tcp6_packet(RS1, 8080, CLIENT, 40000, flags, len + 100);
        assert_tcp(lab.send(1 - w, now, &mut r), &r, (VIP, 80), (CLIENT, 40000));
    }
    // Both directions pass: the full TCP state table, ESTABLISHED, counted active.
    assert_eq!(lab.flow(40000).conn.state, ConnState::Established);
    assert_eq!(lab.counts(RS1), (1, 0));
    // The next flow goes to RS2 (rr).
    let mut syn = tcp6_packet(CLIENT, 40001, VIP, 80, SYN, 0);
    assert_tcp(
        lab.send(1, now, &mut syn),
        &syn,
        (CLIENT, 40001),
        (RS2, 8080),
    );
    // Only the NAT66 table holds them: the workers' tables and the IPv4 NAT table are empty.
    assert_eq!(lab.shared.nat6.len(), 2);
    assert!(lab.shared.nat.is_empty());
    assert!(lab
        .workers
        .iter()
        .all(|w| w.conns().is_empty() && w.conns6().is_empty()));
    let rewritten: u64 = lab.workers.iter().map(|w| w.counters().rewritten).sum();
    assert_eq!(rewritten, 9);

    // Once the flows expire, the sweep removes them and gives their counts back.
    let later = now + Duration::from_secs(24 * 3600);
    for i in 0..64 {
        lab.workers[i % 2].handle_timeout(later + Duration::from_secs(i as u64));
    }
    assert!(lab.shared.nat6.is_empty());
    assert_eq!(lab.counts(RS1), (0, 0));
    assert_eq!(lab.counts(RS2), (0, 0));
}

#[test]
fn nat66_udp_checksums_follow_and_a_zero_checksum_is_dropped() {
    let mut lab = Lab6::new(&nat6_set(), DirectorConfig::default());
    let now = Instant::from_secs(1);
    let mut q = udp6_packet(CLIENT, 5000, VIP, 53, 40);
    let ip = rewritten(lab.send(0, now, &mut q), &q);
    assert_eq!(ip.dst_addr(), RS1);
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(udp.dst_port(), 5353);
    assert!(udp.verify_checksum_v6(CLIENT, RS1));
    let mut a = udp6_packet(RS1, 5353, CLIENT, 5000, 100);
    let ip = rewritten(lab.send(1, now, &mut a), &a);
    assert_eq!(ip.src_addr(), VIP);
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(udp.src_port(), 53);
    assert!(udp.verify_checksum_v6(VIP, CLIENT));
    // Checksum 0 is invalid over IPv6 (RFC 8200 §8.1): dropped both ways, not forwarded.
    for (w, mut p) in [
        (0, udp6_packet(CLIENT, 5000, VIP, 53, 10)),
        (1, udp6_packet(RS1, 5353, CLIENT, 5000, 10)),
    ] {
        p[46..48].copy_from_slice(&[0, 0]);
        assert_eq!(
            lab.send(w, now, &mut p),
            Verdict::Drop(DropReason::MalformedL4)
        );
    }
}

#[test]
fn nat66_packets_over_the_path_mtu_get_packet_too_big_from_the_vip() {
    let config = DirectorConfig {
        tunnel_mtu: 1400,
        ..DirectorConfig::default()
    };
    let mut lab = Lab6::new(&nat6_set(), config);
    let now = Instant::from_secs(1);
    let mut syn = tcp6_packet(CLIENT, 40000, VIP, 80, SYN, 0);
    assert!(matches!(
        lab.send(0, now, &mut syn),
        Verdict::Rewrite { .. }
    ));
    // 1400 bytes fit the real servers' link; 1401 do not.
    let mut fits = tcp6_packet(CLIENT, 40000, VIP, 80, ACK, 1400 - 60);
    assert!(matches!(
        lab.send(0, now, &mut fits),
        Verdict::Rewrite { len: 1400 }
    ));
    let mut big = tcp6_packet(CLIENT, 40000, VIP, 80, ACK, 1500 - 60);
    let Verdict::Reply { len } = lab.send(1, now, &mut big) else {
        panic!("no Packet Too Big");
    };
    let ip = Ipv6Packet::new_checked(&big[..len]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (VIP, CLIENT));
    let icmp = ip.payload();
    assert_eq!(icmp[0], 2, "Packet Too Big");
    assert_eq!(u32::from_be_bytes(icmp[4..8].try_into().unwrap()), 1400);
    // It quotes the packet as the client sent it (to the VIP), so the client's stack finds it.
    let quoted = Ipv6Packet::new_unchecked(&icmp[8..]);
    assert_eq!(quoted.dst_addr(), VIP);
    assert_eq!(lab.workers[1].counters().dropped(DropReason::TooBig), 1);

    // A path MTU below IPv6's minimum is advertised as 1280.
    let config = DirectorConfig {
        tunnel_mtu: 1000,
        ..DirectorConfig::default()
    };
    let mut lab = Lab6::new(&nat6_set(), config);
    let mut syn = tcp6_packet(CLIENT, 40000, VIP, 80, SYN, 0);
    let _ = lab.send(0, now, &mut syn);
    let mut min = tcp6_packet(CLIENT, 40000, VIP, 80, ACK, 1280 - 60);
    assert!(matches!(
        lab.send(0, now, &mut min),
        Verdict::Rewrite { .. }
    ));
    let mut big = tcp6_packet(CLIENT, 40000, VIP, 80, ACK, 1500 - 60);
    let Verdict::Reply { .. } = lab.send(0, now, &mut big) else {
        panic!("no Packet Too Big");
    };
    assert_eq!(u32::from_be_bytes(big[44..48].try_into().unwrap()), 1280);
}

#[test]
fn nat66_icmpv6_errors_are_translated_both_ways() {
    let mut lab = Lab6::new(&nat6_set(), DirectorConfig::default());
    let now = Instant::from_secs(1);
    let mut syn = tcp6_packet(CLIENT, 40000, VIP, 80, SYN, 0);
    let _ = lab.send(0, now, &mut syn);
    let mut q = udp6_packet(CLIENT, 5000, VIP, 53, 12);
    let _ = lab.send(0, now, &mut q);

    // A router on the client's side: the server's answer (from the VIP) was too big. The error
    // goes to RS1, quoting the answer as RS1 sent it.
    let answer = tcp6_packet(VIP, 80, CLIENT, 40000, ACK, 200);
    let mut ptb = icmp6_error(ROUTER, VIP, 2, 0, 1280, &answer);
    let v = lab.send(1, now, &mut ptb);
    let ip = rewritten(v, &ptb);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (ROUTER, RS1));
    let icmp = crate::wire::Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum(ROUTER, RS1), "ICMPv6 checksum");
    let quote = Ipv6Packet::new_checked(&ip.payload()[8..]).unwrap();
    assert_eq!((quote.src_addr(), quote.dst_addr()), (RS1, CLIENT));
    let tcp = TcpPacket::new_checked(quote.payload()).unwrap();
    assert_eq!((tcp.src_port(), tcp.dst_port()), (8080, 40000));
    assert!(
        tcp.verify_checksum_v6(RS1, CLIENT),
        "the quote's TCP checksum"
    );

    // RS1's port unreachable about the client's datagram: from the VIP, quoting VIP:53.
    let datagram = udp6_packet(CLIENT, 5000, RS1, 5353, 12);
    let mut unreach = icmp6_error(RS1, CLIENT, 1, 4, 0, &datagram);
    let v = lab.send(0, now, &mut unreach);
    let ip = rewritten(v, &unreach);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (VIP, CLIENT));
    let icmp = crate::wire::Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum(VIP, CLIENT), "ICMPv6 checksum");
    let quote = Ipv6Packet::new_checked(&ip.payload()[8..]).unwrap();
    assert_eq!((quote.src_addr(), quote.dst_addr()), (CLIENT, VIP));
    let udp = UdpPacket::new_checked(quote.payload()).unwrap();
    assert_eq!((udp.src_port(), udp.dst_port()), (5000, 53));
    assert!(
        udp.verify_checksum_v6(CLIENT, VIP),
        "the quote's UDP checksum"
    );

    // An echo reply from a real server goes back unchanged; an error about no flow to the VIP
    // is not served.
    let mut echo = ipv6_packet(RS1, CLIENT, IpProtocol::ICMPV6, &[129, 0, 0, 0, 0, 1, 0, 1]);
    let before = echo.clone();
    assert!(matches!(
        lab.send(0, now, &mut echo),
        Verdict::Rewrite { .. }
    ));
    assert_eq!(echo, before);
    let stray = tcp6_packet(VIP, 80, CLIENT, 1, ACK, 10);
    let mut err = icmp6_error(ROUTER, VIP, 1, 0, 0, &stray);
    assert_eq!(
        lab.send(0, now, &mut err),
        Verdict::Drop(DropReason::IcmpNoFlow)
    );
}

#[test]
fn nat66_stray_replies_are_dropped_and_ipv4_is_unaffected() {
    let mut lab = Lab6::new(&nat6_set(), DirectorConfig::default());
    let now = Instant::from_secs(1);
    let mut stray = tcp6_packet(RS1, 8080, CLIENT, 1234, ACK, 0);
    assert_eq!(
        lab.send(0, now, &mut stray),
        Verdict::Drop(DropReason::NatNoFlow)
    );
    // Only IPv6 servers are NAT'ed: an IPv4 packet to no VIP is not taken for a reply.
    let snap = lab.shared.snapshot();
    assert!(snap.has_nat6() && !snap.has_nat());
    let mut v4 = crate::wire::testing::tcp_packet(
        std::net::Ipv4Addr::new(10, 0, 0, 1),
        80,
        std::net::Ipv4Addr::new(10, 0, 0, 2),
        1,
        ACK,
        0,
    );
    assert_eq!(
        lab.send(0, now, &mut v4),
        Verdict::Drop(DropReason::NoService)
    );
    // A NAT66 SYN with the service's MSS clamp gets it.
    let mut set = nat6_set();
    set.services[0].mss_clamp = Some(1200);
    let mut lab = Lab6::new(&set, DirectorConfig::default());
    let mut syn = tcp6_packet(CLIENT, 40000, VIP, 80, SYN, 0);
    assert_tcp(
        lab.send(0, now, &mut syn),
        &syn,
        (CLIENT, 40000),
        (RS1, 8080),
    );
    assert_eq!(&syn[60..64], &[2, 4, 0x04, 0xb0], "MSS 1200");
}

#[test]
fn nat66_reply_routing_uses_ip_dash_6_and_is_undone() {
    let mut set = nat6_set();
    // An IPv4 NAT service beside it: both families' bases, each once.
    set.services.push(ServiceConfig {
        key: ServiceKey {
            vip: "10.100.0.100".parse().unwrap(),
            port: 80,
            proto: Protocol::Tcp,
        },
        dests: vec![DestConfig {
            addr: "10.10.0.12".parse().unwrap(),
            ..nat_dest(RS1, 8080)
        }],
        ..service(80, Protocol::Tcp, Vec::new())
    });
    let lab = Lab6::new(&set, DirectorConfig::default());
    let mut net = NetChanges::with_ops(FakeOps::default());
    let mut routing = ReplyRouting::default();
    routing
        .sync(&mut net, &lab.shared.snapshot(), "tunlb0")
        .unwrap();
    routing
        .sync(&mut net, &lab.shared.snapshot(), "tunlb0")
        .unwrap();
    let t = REPLY_TABLE;
    assert_eq!(
        net.ops().log,
        [
            format!("ip route add 0.0.0.0/0 dev tunlb0 table {t}"),
            "ip rule add pref 100 iif tunlb0 goto 102".to_string(),
            "ip rule add pref 102 nop".to_string(),
            format!("ip route add ::/0 dev tunlb0 table {t}"),
            "ip -6 rule add pref 100 iif tunlb0 goto 102".to_string(),
            "ip -6 rule add pref 102 nop".to_string(),
            format!("ip rule add pref 101 from 10.10.0.12/32 ipproto 1 lookup {t}"),
            format!("ip rule add pref 101 from 10.10.0.12/32 ipproto 6 sport 8080 lookup {t}"),
            format!(
                "ip -6 rule add pref 101 from 2001:db8:3::12/128 ipproto 6 sport 8080 lookup {t}"
            ),
            format!(
                "ip -6 rule add pref 101 from 2001:db8:3::12/128 ipproto 17 sport 5353 lookup {t}"
            ),
            format!("ip -6 rule add pref 101 from 2001:db8:3::12/128 ipproto 58 lookup {t}"),
            format!(
                "ip -6 rule add pref 101 from 2001:db8:3::13/128 ipproto 6 sport 8080 lookup {t}"
            ),
            format!("ip -6 rule add pref 101 from 2001:db8:3::13/128 ipproto 58 lookup {t}"),
        ]
    );
    // At exit everything goes, newest first, IPv6 rules with `ip -6`.
    let n = net.ops().log.len();
    net.restore().unwrap();
    let undone = &net.ops().log[n..];
    assert_eq!(undone.len(), n);
    assert_eq!(
        undone[0],
        format!("ip -6 rule del pref 101 from 2001:db8:3::13/128 ipproto 58 lookup {t}")
    );
    assert!(undone.contains(&"ip -6 rule del pref 100 iif tunlb0 goto 102".to_string()));
    assert!(undone.contains(&format!("ip route del ::/0 dev tunlb0 table {t}")));
}

#[test]
fn arbitrary_bytes_never_panic_with_nat66() {
    let mut lab = Lab6::new(&nat6_set(), DirectorConfig::default());
    let now = Instant::from_secs(1);
    let _ = lab.send(0, now, &mut tcp6_packet(CLIENT, 1, VIP, 80, SYN, 0));
    let _ = lab.send(0, now, &mut udp6_packet(CLIENT, 1, VIP, 53, 4));
    let samples = [
        tcp6_packet(CLIENT, 1, VIP, 80, ACK, 0),
        tcp6_packet(RS1, 8080, CLIENT, 1, ACK, 0),
        udp6_packet(RS1, 5353, CLIENT, 1, 4),
        icmp6_error(
            ROUTER,
            VIP,
            2,
            0,
            1280,
            &tcp6_packet(VIP, 80, CLIENT, 1, ACK, 0),
        ),
        icmp6_error(RS1, CLIENT, 1, 4, 0, &udp6_packet(CLIENT, 1, RS1, 5353, 4)),
    ];
    let mut x: u64 = 0x9e37_79b9;
    for round in 0..30_000 {
        let mut p = samples[round % samples.len()].clone();
        for _ in 0..3 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x as usize) % p.len();
            p[i] = (x >> 32) as u8;
        }
        p.truncate((x >> 40) as usize % (p.len() + 1));
        let len = p.len();
        match lab.workers[round % 2].handle_packet(now, &mut p) {
            Verdict::Rewrite { len: n } | Verdict::Reply { len: n } => assert!(n <= len),
            _ => {}
        }
    }
}

/// A fragment from `src` to `dst` of a UDP datagram `sport → dport` (the UDP header, with a
/// non-zero checksum the director only updates, in the first): identification `ident`,
/// offset `offset` bytes, M `more`, then `data`.
#[allow(clippy::too_many_arguments)]
fn udp6_fragment(
    (src, sport): (Ipv6Addr, u16),
    (dst, dport): (Ipv6Addr, u16),
    ident: u32,
    offset: u16,
    more: bool,
    data: &[u8],
) -> Vec<u8> {
    let mut f = vec![IpProtocol::UDP, 0];
    f.extend((offset | u16::from(more)).to_be_bytes());
    f.extend(ident.to_be_bytes());
    if offset == 0 {
        f.extend(sport.to_be_bytes());
        f.extend(dport.to_be_bytes());
        f.extend(((8 + 2 * data.len()) as u16).to_be_bytes());
        f.extend([0x12, 0x34]);
    }
    f.extend_from_slice(data);
    crate::wire::testing::ipv6_packet(src, dst, IpProtocol::IPV6_FRAG, &f)
}

#[test]
fn nat66_later_fragments_follow_their_first_fragment_both_ways() {
    let mut lab = Lab6::new(&nat6_set(), DirectorConfig::default());
    let now = Instant::from_secs(1);
    // The client's datagram: the first fragment gets RS1:5353, the later one (on the other
    // worker) RS1 only, its bytes otherwise unchanged.
    let mut first = udp6_fragment((CLIENT, 5000), (VIP, 53), 7, 0, true, &[1; 16]);
    let ip = rewritten(lab.send(0, now, &mut first), &first);
    assert_eq!(ip.dst_addr(), RS1);
    assert_eq!(
        crate::wire::get_u16(ip.payload(), 8 + 2),
        5353,
        "the UDP port"
    );
    let mut later = udp6_fragment((CLIENT, 5000), (VIP, 53), 7, 24, false, &[2; 16]);
    let before = later.clone();
    let ip = rewritten(lab.send(1, now, &mut later), &later);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (CLIENT, RS1));
    assert_eq!(
        later[40..],
        before[40..],
        "a later fragment keeps its bytes"
    );
    // The reply, fragmented by the real server: every fragment gets the VIP as its source.
    let mut first = udp6_fragment((RS1, 5353), (CLIENT, 5000), 9, 0, true, &[3; 16]);
    let ip = rewritten(lab.send(1, now, &mut first), &first);
    assert_eq!(ip.src_addr(), VIP);
    assert_eq!(crate::wire::get_u16(ip.payload(), 8), 53, "the UDP port");
    let mut later = udp6_fragment((RS1, 5353), (CLIENT, 5000), 9, 24, false, &[4; 16]);
    let ip = rewritten(lab.send(0, now, &mut later), &later);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (VIP, CLIENT));
    // Later fragments whose first was not seen: dropped, both ways.
    for (w, mut f) in [
        (
            0,
            udp6_fragment((CLIENT, 5000), (VIP, 53), 8, 24, false, &[5; 16]),
        ),
        (
            1,
            udp6_fragment((RS1, 5353), (CLIENT, 5000), 10, 24, false, &[6; 16]),
        ),
    ] {
        assert_eq!(
            lab.send(w, now, &mut f),
            Verdict::Drop(DropReason::FragmentNoFlow)
        );
    }
}
