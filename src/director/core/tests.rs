//! Scenario tests of the sans-IO core: several workers sharing one table, a virtual clock,
//! packets built in memory. No sockets.

use std::net::Ipv4Addr;
use std::num::NonZeroU16;

use crate::director::conn::{ConnKey, ConnState, Eviction};
use crate::director::stats::{EncapError, EncapKind};
use crate::director::testkit::Lab;
use crate::director::{DirectorConfig, DropReason, Verdict, MAX_FRAGMENTS};
use crate::encap::{self, TunnelType};
use crate::model::v4::{DestConfig, Persistence, ServiceConfig, ServiceKey, ServiceSet};
use crate::model::{Forward, Protocol, SchedulerKind};
use crate::time::{Duration, Instant};
use crate::wire::testing::{icmp_error, ipv4_packet, tcp_packet, udp_packet};
use crate::wire::{Ipv4Packet, TcpPacket};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 100);
const RS1: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 12);
const RS2: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 13);
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN_ACK: u8 = 0x11;

fn client(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a01_0000 + i)
}

fn dest(addr: Ipv4Addr, weight: u32, tun: TunnelType) -> DestConfig {
    DestConfig {
        addr,
        port: 80,
        weight,
        forward: Forward::tunnel(tun),
        u_threshold: 0,
        l_threshold: 0,
    }
}

fn service(sched: SchedulerKind, dests: Vec<DestConfig>) -> ServiceConfig {
    ServiceConfig {
        key: ServiceKey {
            vip: VIP,
            port: 80,
            proto: Protocol::Tcp,
        },
        scheduler: sched,
        persistence: None,
        mss_clamp: None,
        dests,
        policy: Default::default(),
    }
}

/// One TCP service VIP:80 with RS1 and RS2, weight 1 each, reached through `tun`.
fn two_servers(sched: SchedulerKind, tun: TunnelType) -> ServiceSet {
    ServiceSet {
        services: vec![service(sched, vec![dest(RS1, 1, tun), dest(RS2, 1, tun)])],
    }
}

fn encap_dst(v: Verdict) -> Ipv4Addr {
    match v {
        Verdict::Encap(e) => e.dst,
        other => panic!("expected Encap, got {other:?}"),
    }
}

#[test]
fn rr_alternates_exactly_across_workers() {
    let set = two_servers(SchedulerKind::Rr, TunnelType::Ipip);
    let mut lab = Lab::new(3, set);
    let now = Instant::from_secs(1);
    let mut seen = Vec::new();
    for i in 0..40 {
        let mut syn = tcp_packet(client(1), 10000 + i as u16, VIP, 80, SYN, 0);
        seen.push(encap_dst(lab.send(i % 3, now, &mut syn)));
    }
    for pair in seen.windows(2) {
        assert_ne!(pair[0], pair[1], "rr must alternate: {seen:?}");
    }
    assert_eq!(seen.iter().filter(|&&d| d == RS1).count(), 20);
}

#[test]
fn wrr_follows_weights_over_sequential_connections() {
    let set = ServiceSet {
        services: vec![service(
            SchedulerKind::Wrr,
            vec![dest(RS1, 3, TunnelType::Gre), dest(RS2, 1, TunnelType::Gre)],
        )],
    };
    let mut lab = Lab::new(2, set);
    let now = Instant::from_secs(1);
    let mut rs1 = 0;
    for i in 0..400u32 {
        let mut syn = tcp_packet(client(i), 20000, VIP, 80, SYN, 0);
        if encap_dst(lab.send(i as usize % 2, now, &mut syn)) == RS1 {
            rs1 += 1;
        }
    }
    assert_eq!(rs1, 300);
}

#[test]
fn established_flow_sticks_and_states_follow_client_flags() {
    let set = two_servers(SchedulerKind::Rr, TunnelType::Ipip);
    let mut lab = Lab::new(1, set);
    let c = client(7);
    let t0 = Instant::from_secs(10);
    let first = encap_dst(lab.send(0, t0, &mut tcp_packet(c, 40000, VIP, 80, SYN, 0)));
    let key_state = |lab: &Lab| lab.workers[0].conns().iter().next().map(|(_, c)| c.state);
    assert_eq!(key_state(&lab), Some(ConnState::SynRecv));
    for _ in 0..5 {
        let d = encap_dst(lab.send(0, t0, &mut tcp_packet(c, 40000, VIP, 80, ACK, 100)));
        assert_eq!(d, first);
    }
    assert_eq!(key_state(&lab), Some(ConnState::Established));
    let snap = lab.shared.snapshot();
    let d = snap.services()[0];
    let idx = d.sched_dests.iter().position(|s| s.addr == first).unwrap();
    assert_eq!(d.sched_dests[idx].state.active(), 1);
    let _ = lab.send(0, t0, &mut tcp_packet(c, 40000, VIP, 80, FIN_ACK, 0));
    assert_eq!(key_state(&lab), Some(ConnState::FinWait));
    assert_eq!(d.sched_dests[idx].state.active(), 0);
    assert_eq!(d.sched_dests[idx].state.inactive(), 1);

    // FIN_WAIT times out after tcpfin (120 s); the sweep removes it and the counts go to 0.
    let mut t = t0;
    for _ in 0..130 {
        t += Duration::from_secs(1);
        lab.workers[0].handle_timeout(t);
    }
    assert_eq!(lab.workers[0].conns().len(), 0);
    assert_eq!(d.sched_dests[idx].state.inactive(), 0);
    assert_eq!(lab.workers[0].counters().conns_expired, 1);
}

#[test]
fn packets_without_service_or_connection_are_dropped_and_counted() {
    let set = ServiceSet {
        services: vec![service(
            SchedulerKind::Rr,
            vec![dest(RS1, 1, TunnelType::Ipip)],
        )],
    };
    let mut lab = Lab::new(1, set);
    let now = Instant::from_secs(1);
    let v = lab.send(0, now, &mut tcp_packet(client(1), 1, VIP, 81, SYN, 0));
    assert_eq!(v, Verdict::Drop(DropReason::NoService));
    let v = lab.send(0, now, &mut tcp_packet(client(1), 1, VIP, 80, ACK, 0));
    assert_eq!(v, Verdict::Drop(DropReason::NoConnection));
    let v = lab.send(0, now, &mut udp_packet(client(1), 1, VIP, 80, 10));
    assert_eq!(v, Verdict::Drop(DropReason::NoService));
    let v = lab.send(0, now, &mut [0x70, 0, 0, 0]);
    assert_eq!(v, Verdict::Drop(DropReason::NotIpv4));
    let v = lab.send(0, now, &mut [0x60, 0, 0, 0]);
    assert_eq!(
        v,
        Verdict::Drop(DropReason::MalformedIp),
        "a short IPv6 header"
    );
    let v = lab.send(0, now, &mut [0x45, 0, 0]);
    assert_eq!(v, Verdict::Drop(DropReason::MalformedIp));
    let c = lab.workers[0].counters();
    assert_eq!(c.dropped(DropReason::NoService), 2);
    assert_eq!(c.dropped(DropReason::NoConnection), 1);
    assert_eq!(c.dropped(DropReason::NotIpv4), 1);
}

#[test]
fn weight_zero_quiesces_but_keeps_established_flows() {
    let mut set = two_servers(SchedulerKind::Rr, TunnelType::Ipip);
    let mut lab = Lab::new(1, set.clone());
    let now = Instant::from_secs(1);
    let mut flows = Vec::new();
    for i in 0..4u16 {
        let d = encap_dst(lab.send(
            0,
            now,
            &mut tcp_packet(client(1), 3000 + i, VIP, 80, SYN, 0),
        ));
        flows.push((3000 + i, d));
    }
    set.services[0].dests[0].weight = 0;
    lab.publish(&set);
    for &(port, d) in &flows {
        assert_eq!(
            encap_dst(lab.send(0, now, &mut tcp_packet(client(1), port, VIP, 80, ACK, 1))),
            d
        );
    }
    for i in 0..6u16 {
        let d = encap_dst(lab.send(
            0,
            now,
            &mut tcp_packet(client(2), 5000 + i, VIP, 80, SYN, 0),
        ));
        assert_eq!(d, RS2);
    }
    // Deleting RS2 drops its flows (expire_nodest_conn) and keeps RS1's.
    set.services[0].dests[0].weight = 1;
    set.services[0].dests.remove(1);
    lab.publish(&set);
    for &(port, d) in &flows {
        let v = lab.send(0, now, &mut tcp_packet(client(1), port, VIP, 80, ACK, 1));
        if d == RS2 {
            assert_eq!(v, Verdict::Drop(DropReason::DestinationGone));
        } else {
            assert_eq!(encap_dst(v), RS1);
        }
    }
}

#[test]
fn persistence_pins_a_client_across_workers_and_netmask() {
    let mut svc = service(
        SchedulerKind::Rr,
        vec![dest(RS1, 1, TunnelType::Gue), dest(RS2, 1, TunnelType::Gue)],
    );
    svc.persistence = Some(Persistence {
        timeout: 60,
        netmask: Ipv4Addr::new(255, 255, 255, 0),
    });
    let mut lab = Lab::new(
        2,
        ServiceSet {
            services: vec![svc],
        },
    );
    let now = Instant::from_secs(1);
    let a = encap_dst(lab.send(0, now, &mut tcp_packet(client(1), 1000, VIP, 80, SYN, 0)));
    for i in 1..20u16 {
        // Same /24, other ports, alternating workers.
        let d = encap_dst(lab.send(
            i as usize % 2,
            now,
            &mut tcp_packet(client(1 + (i as u32 % 3)), 1000 + i, VIP, 80, SYN, 0),
        ));
        assert_eq!(d, a);
    }
    // Another /24 gets the other server next (rr continues).
    let other = Ipv4Addr::new(10, 9, 9, 9);
    let b = encap_dst(lab.send(0, now, &mut tcp_packet(other, 1000, VIP, 80, SYN, 0)));
    assert_ne!(a, b);
}

#[test]
fn too_big_with_df_gets_frag_needed_with_mtu_minus_overhead() {
    let set = ServiceSet {
        services: vec![service(
            SchedulerKind::Rr,
            vec![dest(RS1, 1, TunnelType::Gue)],
        )],
    };
    let mut lab = Lab::new(1, set);
    let now = Instant::from_secs(1);
    let c = client(3);
    let _ = lab.send(0, now, &mut tcp_packet(c, 5555, VIP, 80, SYN, 0));
    let mut big = tcp_packet(c, 5555, VIP, 80, ACK, 1460);
    assert_eq!(big.len(), 1500);
    let v = lab.send(0, now, &mut big);
    let Verdict::Reply { len } = v else {
        panic!("expected an ICMP reply, got {v:?}")
    };
    let ip = Ipv4Packet::new_checked(&big[..len]).unwrap();
    assert_eq!(ip.src_addr(), VIP);
    assert_eq!(ip.dst_addr(), c);
    assert_eq!(ip.protocol(), 1);
    let icmp = ip.payload();
    assert_eq!((icmp[0], icmp[1]), (3, 4));
    let mtu = u16::from_be_bytes([icmp[6], icmp[7]]);
    assert_eq!(
        mtu as usize,
        1500 - encap::overhead(&encap::Tunnel::Gue {
            port: encap::DEFAULT_GUE_PORT,
            csum: false
        })
    );
    assert_eq!(lab.workers[0].counters().dropped(DropReason::TooBig), 1);
    // A packet that fits goes through.
    let mut ok = tcp_packet(c, 5555, VIP, 80, ACK, 1400);
    assert_eq!(encap_dst(lab.send(0, now, &mut ok)), RS1);
}

/// A UDP service on VIP:53 whose only real server is reached with `tun`.
fn udp_service(tun: TunnelType) -> ServiceSet {
    ServiceSet {
        services: vec![ServiceConfig {
            key: ServiceKey {
                vip: VIP,
                port: 53,
                proto: Protocol::Udp,
            },
            ..service(SchedulerKind::Rr, vec![dest(RS1, 1, tun)])
        }],
    }
}

/// `udp_packet` with DF cleared (and the header checksum refreshed).
fn udp_packet_no_df(src: Ipv4Addr, sport: u16, payload_len: usize) -> Vec<u8> {
    let mut p = udp_packet(src, sport, VIP, 53, payload_len);
    let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
    ip.set_flags_and_frag_offset(false, false, 0);
    ip.fill_checksum();
    p
}

#[test]
fn too_big_without_df_is_encapsulated_for_outer_fragmentation() {
    let mut lab = Lab::new(1, udp_service(TunnelType::Gue));
    let now = Instant::from_secs(1);
    let mut big = udp_packet_no_df(client(3), 5353, 1472);
    assert_eq!(big.len(), 1500);
    let v = lab.send(0, now, &mut big);
    let Verdict::Encap(e) = v else {
        panic!("expected Encap, got {v:?}")
    };
    assert_eq!((e.dst, e.len, e.frag_mtu), (RS1, 1500, 1500));
    // The header is the whole datagram's (DF clear, total length 1532): the driver splits it.
    let outer = Ipv4Packet::new_unchecked(e.header());
    assert_eq!(outer.total_len(), 1532);
    assert!(!outer.dont_frag() && !outer.is_fragment());
    let frags: Vec<_> = encap::fragment(e.header(), e.len, e.frag_mtu, NonZeroU16::MIN)
        .unwrap()
        .collect();
    assert_eq!(frags.len(), 2);
    assert_eq!(lab.workers[0].counters().fragmented, 1);
    assert_eq!(lab.workers[0].counters().tx_packets, 1);

    // The next packet of the flow fits and is sent whole.
    let v = lab.send(0, now, &mut udp_packet_no_df(client(3), 5353, 1400));
    assert!(matches!(v, Verdict::Encap(e) if e.frag_mtu == 0), "{v:?}");
    // A client's first fragment (MF, DF clear) that no longer fits is fragmented again.
    let mut first = udp_packet_no_df(client(4), 5353, 1472);
    first[6] = 0x20;
    let v = lab.send(0, now, &mut first);
    assert!(
        matches!(v, Verdict::Encap(e) if e.frag_mtu == 1500),
        "{v:?}"
    );
    assert_eq!(lab.workers[0].counters().fragmented, 2);
}

#[test]
fn too_big_with_df_to_a_udp_service_still_gets_frag_needed() {
    let mut lab = Lab::new(1, udp_service(TunnelType::Gue));
    let now = Instant::from_secs(1);
    let c = client(3);
    let mut big = udp_packet(c, 5353, VIP, 53, 1472);
    assert!(Ipv4Packet::new_checked(&big[..]).unwrap().dont_frag());
    let v = lab.send(0, now, &mut big);
    let Verdict::Reply { len } = v else {
        panic!("expected an ICMP reply, got {v:?}")
    };
    let ip = Ipv4Packet::new_checked(&big[..len]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (VIP, c));
    let icmp = ip.payload();
    assert_eq!((icmp[0], icmp[1]), (3, 4));
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1500 - 32);
    let counters = lab.workers[0].counters();
    assert_eq!(counters.dropped(DropReason::TooBig), 1);
    assert_eq!((counters.fragmented, counters.tx_packets), (0, 0));
    let errors = &counters.encap_errors;
    assert_eq!(errors.get(EncapKind::Gue, EncapError::TooBig), 1);
}

#[test]
fn packet_needing_too_many_fragments_is_dropped() {
    let config = DirectorConfig {
        tunnel_mtu: 576,
        ..DirectorConfig::default()
    };
    let mut lab = Lab::with_config(1, udp_service(TunnelType::Gre), config);
    let now = Instant::from_secs(1);
    // 552 payload bytes per fragment: 48 fragments carry 26496 bytes, 4 of them GRE.
    let fits = 552 * MAX_FRAGMENTS - 4;
    let v = lab.send(0, now, &mut udp_packet_no_df(client(1), 1, fits - 28));
    assert!(matches!(v, Verdict::Encap(e) if e.frag_mtu == 576), "{v:?}");
    let v = lab.send(0, now, &mut udp_packet_no_df(client(1), 1, fits - 28 + 1));
    assert_eq!(v, Verdict::Drop(DropReason::TooManyFragments));
    let counters = lab.workers[0].counters();
    assert_eq!(counters.dropped(DropReason::TooManyFragments), 1);
    assert_eq!((counters.fragmented, counters.tx_packets), (1, 1));
    let errors = &counters.encap_errors;
    assert_eq!(errors.get(EncapKind::Gre, EncapError::TooManyFragments), 1);
    assert_eq!(errors.get(EncapKind::Ipip, EncapError::TooManyFragments), 0);
}

#[test]
fn mss_is_clamped_on_syn_when_configured() {
    let mut svc = service(SchedulerKind::Rr, vec![dest(RS1, 1, TunnelType::Ipip)]);
    svc.mss_clamp = Some(1380);
    let mut lab = Lab::new(
        1,
        ServiceSet {
            services: vec![svc],
        },
    );
    let mut syn = tcp_packet(client(1), 999, VIP, 80, SYN, 0);
    let v = lab.send(0, Instant::from_secs(1), &mut syn);
    assert_eq!(encap_dst(v), RS1);
    let ip = Ipv4Packet::new_checked(&syn[..]).unwrap();
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(tcp.mss(), Some(1380));
    assert!(tcp.verify_checksum(ip.src_addr(), ip.dst_addr()));
}

#[test]
fn icmp_error_about_a_flow_goes_to_its_real_server() {
    let set = two_servers(SchedulerKind::Rr, TunnelType::Ipip);
    let mut lab = Lab::new(1, set);
    let now = Instant::from_secs(1);
    let c = client(4);
    let _ = lab.send(
        0,
        now,
        &mut tcp_packet(Ipv4Addr::new(1, 1, 1, 1), 1, VIP, 80, SYN, 0),
    );
    let d = encap_dst(lab.send(0, now, &mut tcp_packet(c, 6000, VIP, 80, SYN, 0)));
    // The real server's reply (VIP:80 -> c:6000) hit a smaller MTU on the client's path.
    let reply = tcp_packet(VIP, 80, c, 6000, ACK, 1000);
    let router = Ipv4Addr::new(10, 1, 0, 1);
    let mut err = icmp_error(router, VIP, 3, 4, 1400, &reply);
    assert_eq!(encap_dst(lab.send(0, now, &mut err)), d);
    // An error about an unknown flow is dropped.
    let stray = tcp_packet(VIP, 80, c, 6001, ACK, 10);
    let mut err = icmp_error(router, VIP, 3, 4, 1400, &stray);
    assert_eq!(
        lab.send(0, now, &mut err),
        Verdict::Drop(DropReason::IcmpNoFlow)
    );
    // Echo to the VIP is not forwarded.
    let mut echo = ipv4_packet(c, VIP, 1, &[8, 0, 0xf7, 0xff, 0, 0, 0, 0]);
    assert_eq!(
        lab.send(0, now, &mut echo),
        Verdict::Drop(DropReason::IcmpUnsupported)
    );
}

/// VIP:53/udp, rr over IPIP to RS1 and RS2: the fragment tests' service.
fn dns_over_ipip() -> ServiceSet {
    ServiceSet {
        services: vec![ServiceConfig {
            key: ServiceKey {
                vip: VIP,
                port: 53,
                proto: Protocol::Udp,
            },
            ..service(
                SchedulerKind::Rr,
                vec![
                    dest(RS1, 1, TunnelType::Ipip),
                    dest(RS2, 1, TunnelType::Ipip),
                ],
            )
        }],
    }
}

#[test]
fn later_fragments_follow_the_first() {
    let set = dns_over_ipip();
    let mut lab = Lab::new(2, set);
    let now = Instant::from_secs(1);
    let _ = lab.send(0, now, &mut udp_packet(client(9), 1, VIP, 53, 8));
    let mut first = udp_packet(client(5), 4444, VIP, 53, 100);
    first[6] = 0x20; // MF, offset 0
    first[4..6].copy_from_slice(&0x7777u16.to_be_bytes());
    let mut later = ipv4_packet(client(5), VIP, 17, &[0u8; 64]);
    later[4..6].copy_from_slice(&0x7777u16.to_be_bytes());
    later[6] = 0x00;
    later[7] = 14; // offset 112 bytes
                   // (Header checksums are not re-verified by the core: the kernel checked them.)
    let d = encap_dst(lab.send(0, now, &mut first));
    assert_eq!(encap_dst(lab.send(1, now, &mut later)), d);
    let mut orphan = later.clone();
    orphan[4..6].copy_from_slice(&0x1111u16.to_be_bytes());
    assert_eq!(
        lab.send(1, now, &mut orphan),
        Verdict::Drop(DropReason::FragmentNoFlow)
    );
}

#[test]
fn encap_header_is_well_formed_for_each_tunnel() {
    for tun in [TunnelType::Ipip, TunnelType::Gre, TunnelType::Gue] {
        let set = ServiceSet {
            services: vec![service(SchedulerKind::Rr, vec![dest(RS1, 1, tun)])],
        };
        let mut lab = Lab::new(1, set);
        let mut syn = tcp_packet(client(1), 1234, VIP, 80, SYN, 0);
        let Verdict::Encap(e) = lab.send(0, Instant::from_secs(1), &mut syn) else {
            panic!("no encap for {tun}")
        };
        // The outer header followed by the inner packet strips back to the inner packet.
        let mut wire = e.header().to_vec();
        wire.extend_from_slice(&syn[..e.len]);
        let inner = match tun {
            TunnelType::Gue => encap::strip_gue(&wire[28..]).map(|r| (r.start + 28)..(r.end + 28)),
            _ => encap::strip_ip(&wire, tun, None).map(|s| s.inner),
        }
        .unwrap_or_else(|e| panic!("{tun}: {e}"));
        assert_eq!(&wire[inner], &syn[..]);
        assert_eq!(wire[8], 64, "outer TTL");
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let set = ServiceSet {
        services: vec![service(
            SchedulerKind::Rr,
            vec![dest(RS1, 1, TunnelType::Gre)],
        )],
    };
    let mut lab = Lab::new(1, set);
    let mut x: u64 = 0x1234_5678;
    let samples = [
        tcp_packet(client(1), 1, VIP, 80, SYN, 0),
        udp_packet(client(1), 1, VIP, 80, 4),
        icmp_error(
            client(1),
            VIP,
            3,
            4,
            0,
            &tcp_packet(VIP, 80, client(1), 1, ACK, 0),
        ),
    ];
    for round in 0..20_000 {
        let mut p = samples[round % samples.len()].clone();
        for _ in 0..3 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x as usize) % p.len();
            p[i] = (x >> 32) as u8;
        }
        p.truncate((x >> 40) as usize % (p.len() + 1));
        let _ = lab.send(0, Instant::from_millis(round as u64), &mut p);
    }
}

#[test]
fn per_server_counters_follow_what_was_forwarded() {
    let mut lab = Lab::new(1, two_servers(SchedulerKind::Rr, TunnelType::Ipip));
    let now = Instant::from_secs(1);
    let mut sent = std::collections::HashMap::new();
    for i in 0..6u16 {
        let c = client(1);
        let mut syn = tcp_packet(c, 7000 + i, VIP, 80, SYN, 0);
        let d = encap_dst(lab.send(0, now, &mut syn));
        let mut data = tcp_packet(c, 7000 + i, VIP, 80, ACK, 100);
        assert_eq!(encap_dst(lab.send(0, now, &mut data)), d);
        let e = sent.entry(d).or_insert((0u64, 0u64, 0u64));
        e.0 += 1;
        e.1 += 2;
        e.2 += (syn.len() + data.len()) as u64;
    }
    // Dropped packets count nowhere.
    let _ = lab.send(0, now, &mut tcp_packet(client(2), 1, VIP, 80, ACK, 0));
    let snap = lab.shared.snapshot();
    let svc = snap.services()[0];
    for (sd, id) in svc.sched_dests.iter().zip(&svc.dest_ids) {
        let c = lab.workers[0].counters().per_dest[usize::from(id.slot())];
        assert_eq!(c.id, *id);
        assert_eq!(
            (c.conns, c.in_pkts, c.in_bytes),
            sent[&v4(sd.addr)],
            "{}",
            sd.addr
        );
    }
}

#[test]
fn a_gso_super_packet_is_decided_once_and_counted_per_segment() {
    let mut lab = Lab::new(1, two_servers(SchedulerKind::Rr, TunnelType::Gue));
    let now = Instant::ZERO;
    let c = client(1);
    let mut syn = tcp_packet(c, 40000, VIP, 80, SYN, 0);
    let Verdict::Encap(first) = lab.send(0, now, &mut syn) else {
        panic!("SYN not forwarded")
    };
    // 10 segments of 1400 bytes in one 14 KB super-packet; the largest segment is 1440 bytes.
    let mut big = tcp_packet(c, 40000, VIP, 80, ACK, 14_000);
    let v = lab.workers[0].handle_gso(now, &mut big, 1440, 10);
    let Verdict::Encap(e) = v else {
        panic!("super-packet not forwarded: {v:?}")
    };
    assert_eq!((e.dst, e.len, e.frag_mtu), (first.dst, big.len(), 0));
    // The outer header is built for the first segment (the driver fixes it per segment).
    assert_eq!(
        u16::from_be_bytes([e.header[2], e.header[3]]) as usize,
        e.header_len as usize + 1440
    );
    let counters = lab.workers[0].counters();
    assert_eq!((counters.rx_packets, counters.tx_packets), (11, 11));
    assert_eq!(counters.gso_whole, 1);
    assert_eq!(counters.per_dest.iter().map(|d| d.in_pkts).sum::<u64>(), 11);

    // Segments too big for the tunnel MTU: frag-needed by the segment size, not the total.
    let mut huge = tcp_packet(c, 40000, VIP, 80, ACK, 14_000);
    let v = lab.workers[0].handle_gso(now, &mut huge, 1500, 10);
    assert!(matches!(v, Verdict::Reply { .. }), "{v:?}");
    assert_eq!(lab.workers[0].counters().dropped(DropReason::TooBig), 1);
}

/// The key of the TCP service of [`service`].
const TCP80: ServiceKey = ServiceKey {
    vip: VIP,
    port: 80,
    proto: Protocol::Tcp,
};

/// Opens an established TCP flow from `client(1):cport` and returns its real server.
fn open_flow(lab: &mut Lab, now: Instant, cport: u16) -> Ipv4Addr {
    let d = encap_dst(lab.send(0, now, &mut tcp_packet(client(1), cport, VIP, 80, SYN, 0)));
    let again = encap_dst(lab.send(0, now, &mut tcp_packet(client(1), cport, VIP, 80, ACK, 1)));
    assert_eq!(d, again);
    d
}

/// RS1's health check fails: the control plane takes it out of `set` and, the service having
/// `expire_nodest_conn = false`, holds it. Returns the table without RS1.
fn hold_rs1(lab: &mut Lab, set: &ServiceSet) -> ServiceSet {
    let mut down = set.clone();
    let rs1 = down.services[0].dests.remove(0);
    lab.publish_held(&down, &[(TCP80, rs1)]);
    down
}

#[test]
fn held_server_keeps_its_flows_and_they_resume_when_it_returns() {
    let mut set = two_servers(SchedulerKind::Rr, TunnelType::Ipip);
    set.services[0].policy.expire_nodest_conn = false;
    let mut lab = Lab::new(1, &set);
    let t0 = Instant::from_secs(1);
    assert_eq!(open_flow(&mut lab, t0, 1000), RS1);
    assert_eq!(open_flow(&mut lab, t0, 1001), RS2);
    let expires = |lab: &Lab| {
        let (_, c) = lab.workers[0]
            .conns()
            .iter()
            .find(|(k, _)| k.cport == 1000)
            .unwrap();
        c.expires()
    };
    let before = expires(&lab);

    hold_rs1(&mut lab, &set);
    let t1 = t0 + Duration::from_secs(5);
    let mut ack = tcp_packet(client(1), 1000, VIP, 80, ACK, 1);
    assert_eq!(
        lab.send(0, t1, &mut ack),
        Verdict::Drop(DropReason::DestinationDown)
    );
    assert_eq!(
        expires(&lab),
        before,
        "a dropped packet does not refresh the flow"
    );
    assert_eq!(lab.workers[0].conns().len(), 2);
    // New flows go to RS2 only; RS2's flow goes on.
    for port in 2000..2004 {
        let mut syn = tcp_packet(client(2), port, VIP, 80, SYN, 0);
        assert_eq!(encap_dst(lab.send(0, t1, &mut syn)), RS2);
    }
    let mut ack = tcp_packet(client(1), 1001, VIP, 80, ACK, 1);
    assert_eq!(encap_dst(lab.send(0, t1, &mut ack)), RS2);

    // It comes back within the flow timeout: the flow goes on on RS1, its count kept.
    lab.publish(&set);
    let mut ack = tcp_packet(client(1), 1000, VIP, 80, ACK, 1);
    assert_eq!(encap_dst(lab.send(0, t1, &mut ack)), RS1);
    let snap = lab.shared.snapshot();
    let svc = snap.service(Protocol::Tcp, VIP, 80).unwrap();
    assert_eq!(svc.sched_dests[0].addr, RS1);
    assert_eq!(svc.sched_dests[0].state.active(), 1);
    let c = lab.workers[0].counters();
    assert_eq!(c.dropped(DropReason::DestinationDown), 1);
    assert_eq!(c.dropped(DropReason::DestinationGone), 0);
}

#[test]
fn held_server_flow_that_times_out_gives_back_its_count() {
    let mut set = two_servers(SchedulerKind::Rr, TunnelType::Ipip);
    set.services[0].policy.expire_nodest_conn = false;
    let mut lab = Lab::new(1, &set);
    let t0 = Instant::from_secs(1);
    assert_eq!(open_flow(&mut lab, t0, 1000), RS1);
    hold_rs1(&mut lab, &set);
    // Past the TCP timeout (900 s) while held: the sweep forgets the flow and gives back
    // RS1's count, so RS1 returns with none.
    let late = t0 + Duration::from_secs(1000);
    lab.workers[0].handle_timeout(late);
    lab.workers[0].handle_timeout(late + Duration::from_secs(1));
    assert_eq!(lab.workers[0].conns().len(), 0);
    lab.publish(&set);
    let snap = lab.shared.snapshot();
    let svc = snap.service(Protocol::Tcp, VIP, 80).unwrap();
    assert_eq!(svc.sched_dests[0].state.active(), 0);
}

#[test]
fn by_default_a_down_servers_flow_is_forgotten() {
    let set = two_servers(SchedulerKind::Rr, TunnelType::Ipip);
    let mut lab = Lab::new(1, &set);
    let now = Instant::from_secs(1);
    assert_eq!(open_flow(&mut lab, now, 1000), RS1);
    let mut down = set.clone();
    down.services[0].dests.remove(0);
    lab.publish(&down);
    let mut ack = tcp_packet(client(1), 1000, VIP, 80, ACK, 1);
    assert_eq!(
        lab.send(0, now, &mut ack),
        Verdict::Drop(DropReason::DestinationGone)
    );
    assert_eq!(lab.workers[0].conns().len(), 0);
    // Back again: the flow is not.
    lab.publish(&set);
    assert_eq!(
        lab.send(0, now, &mut ack),
        Verdict::Drop(DropReason::NoConnection)
    );
    // A new SYN of a forgotten flow's ports is scheduled at once.
    lab.publish(&down);
    assert_eq!(open_flow(&mut lab, now, 1001), RS2);
    lab.publish(&set);
    let _ = open_flow(&mut lab, now, 1002);
    let mut down_rs2 = set.clone();
    down_rs2.services[0].dests.remove(1);
    lab.publish(&down_rs2);
    let mut syn = tcp_packet(client(1), 1001, VIP, 80, SYN, 0);
    assert_eq!(encap_dst(lab.send(0, now, &mut syn)), RS1);
}

#[test]
fn a_udp_flow_of_a_removed_server_is_rescheduled_at_once() {
    let mut set = udp_service(TunnelType::Ipip);
    set.services[0].dests.push(dest(RS2, 1, TunnelType::Ipip));
    let mut lab = Lab::new(1, &set);
    let now = Instant::from_secs(1);
    let mut dgram = udp_packet(client(1), 5000, VIP, 53, 20);
    assert_eq!(encap_dst(lab.send(0, now, &mut dgram)), RS1);
    set.services[0].dests.remove(0);
    lab.publish(&set);
    let mut dgram = udp_packet(client(1), 5000, VIP, 53, 20);
    assert_eq!(encap_dst(lab.send(0, now, &mut dgram)), RS2);
    let mut dgram = udp_packet(client(1), 5000, VIP, 53, 20);
    assert_eq!(encap_dst(lab.send(0, now, &mut dgram)), RS2);
    let c = lab.workers[0].counters();
    assert_eq!(c.dropped(DropReason::DestinationGone), 0);
    assert_eq!(c.conns_created, 2);
    assert_eq!(lab.workers[0].conns().len(), 1);
}

#[test]
fn expire_quiescent_template_moves_persistent_clients_off_a_weight_zero_server() {
    for expire in [false, true] {
        let mut set = two_servers(SchedulerKind::Rr, TunnelType::Ipip);
        set.services[0].persistence = Some(Persistence {
            timeout: 300,
            netmask: Ipv4Addr::BROADCAST,
        });
        set.services[0].policy.expire_quiescent_template = expire;
        let mut lab = Lab::new(2, &set);
        let now = Instant::from_secs(1);
        let first = open_flow(&mut lab, now, 1000);
        // inhibit_on_failure: the server stays with weight 0.
        let i = usize::from(first != RS1);
        set.services[0].dests[i].weight = 0;
        lab.publish(&set);
        // The established flow stays either way (weight 0 only stops new flows).
        let mut ack = tcp_packet(client(1), 1000, VIP, 80, ACK, 1);
        assert_eq!(encap_dst(lab.send(0, now, &mut ack)), first);
        let mut syn = tcp_packet(client(1), 1001, VIP, 80, SYN, 0);
        let next = encap_dst(lab.send(1, now, &mut syn));
        if expire {
            assert_ne!(
                next, first,
                "the template to the quiesced server is expired"
            );
            // The new template holds.
            let mut syn = tcp_packet(client(1), 1002, VIP, 80, SYN, 0);
            assert_eq!(encap_dst(lab.send(0, now, &mut syn)), next);
        } else {
            assert_eq!(
                next, first,
                "IPVS's default: the client sticks to the weight-0 server"
            );
        }
    }
}

#[test]
fn a_template_to_a_held_server_is_replaced() {
    let mut set = two_servers(SchedulerKind::Rr, TunnelType::Ipip);
    set.services[0].persistence = Some(Persistence {
        timeout: 300,
        netmask: Ipv4Addr::BROADCAST,
    });
    set.services[0].policy.expire_nodest_conn = false;
    let mut lab = Lab::new(1, &set);
    let now = Instant::from_secs(1);
    assert_eq!(open_flow(&mut lab, now, 1000), RS1);
    hold_rs1(&mut lab, &set);
    let mut syn = tcp_packet(client(1), 1001, VIP, 80, SYN, 0);
    assert_eq!(encap_dst(lab.send(0, now, &mut syn)), RS2);
    let mut ack = tcp_packet(client(1), 1000, VIP, 80, ACK, 1);
    assert_eq!(
        lab.send(0, now, &mut ack),
        Verdict::Drop(DropReason::DestinationDown)
    );
}

#[test]
fn a_held_server_deleted_for_good_expires_its_flows() {
    let mut set = two_servers(SchedulerKind::Rr, TunnelType::Ipip);
    set.services[0].policy.expire_nodest_conn = false;
    let mut lab = Lab::new(1, &set);
    let now = Instant::from_secs(1);
    assert_eq!(open_flow(&mut lab, now, 1000), RS1);
    let down = hold_rs1(&mut lab, &set);
    let mut ack = tcp_packet(client(1), 1000, VIP, 80, ACK, 1);
    assert_eq!(
        lab.send(0, now, &mut ack),
        Verdict::Drop(DropReason::DestinationDown)
    );
    // `adm -d` (or a reload without it): no longer held, really gone.
    lab.publish(&down);
    assert_eq!(
        lab.send(0, now, &mut ack),
        Verdict::Drop(DropReason::DestinationGone)
    );
    assert_eq!(lab.workers[0].conns().len(), 0);
    // Added back later, it is a new server: the old flow does not come back.
    lab.publish(&set);
    assert_eq!(
        lab.send(0, now, &mut ack),
        Verdict::Drop(DropReason::NoConnection)
    );
}

#[test]
fn send_errors_move_from_tx_to_send_failed_by_tunnel_type() {
    let mut lab = Lab::new(1, udp_service(TunnelType::Ipip));
    let now = Instant::from_secs(1);
    let v = lab.send(0, now, &mut udp_packet(client(1), 1, VIP, 53, 100));
    assert!(matches!(v, Verdict::Encap(_)), "{v:?}");
    lab.workers[0].count_send_errors(EncapKind::Ipip, 1);
    let counters = lab.workers[0].counters();
    assert_eq!(counters.tx_packets, 0);
    assert_eq!(counters.dropped(DropReason::SendFailed), 1);
    let errors = &counters.encap_errors;
    assert_eq!(errors.get(EncapKind::Ipip, EncapError::SendFailed), 1);
    assert_eq!(errors.get(EncapKind::Gre, EncapError::SendFailed), 0);
}

/// A spoofed source of the flood (198.18.0.0/15, the range the namespace tests black-hole).
fn spoofed(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0xc612_0000 + (i % 0x2_0000))
}

#[test]
fn syn_ack_flood_evicts_only_unconfirmed_flows_and_new_clients_get_in() {
    // A small table (2,000 flows) against 100,000 spoofed SYN+ACK pairs: the 20 clients that
    // sent data before the flood keep their server, every new client during the flood gets
    // in, the table never holds more than its limit and nothing is refused as full.
    let config = DirectorConfig {
        max_conns: 2000,
        initial_conns: crate::director::conn::ConnTable::slots_for(2000),
        ..DirectorConfig::default()
    };
    let set = two_servers(SchedulerKind::Rr, TunnelType::Ipip);
    let mut lab = Lab::with_config(1, &set, config);
    let mut now = Instant::from_secs(100);
    let mut keep = Vec::new();
    for i in 0..20u32 {
        let c = client(i);
        let d = encap_dst(lab.send(0, now, &mut tcp_packet(c, 5000, VIP, 80, SYN, 0)));
        let _ = lab.send(0, now, &mut tcp_packet(c, 5000, VIP, 80, ACK, 0));
        let _ = lab.send(0, now, &mut tcp_packet(c, 5000, VIP, 80, ACK, 100));
        keep.push((c, d));
    }
    let (mut legit_ok, mut legit_tried) = (0u32, 0u32);
    for i in 0..100_000u32 {
        now += Duration::from_micros(20);
        let (src, port) = (spoofed(i), 1024 + (i % 50_000) as u16);
        let _ = lab.send(0, now, &mut tcp_packet(src, port, VIP, 80, SYN, 0));
        let _ = lab.send(0, now, &mut tcp_packet(src, port, VIP, 80, ACK, 0));
        if i % 100 == 0 {
            // A new legitimate client's SYN; its ACK and request follow one round trip (50
            // flood pairs, 1 ms) later, while the flood goes on.
            let c = client(1000 + i);
            let syn = lab.send(0, now, &mut tcp_packet(c, 6000, VIP, 80, SYN, 0));
            legit_ok += u32::from(matches!(syn, Verdict::Encap(_)));
        }
        if i % 100 == 50 {
            legit_tried += 1;
            let c = client(1000 + i - 50);
            let ack = lab.send(0, now, &mut tcp_packet(c, 6000, VIP, 80, ACK, 0));
            let data = lab.send(0, now, &mut tcp_packet(c, 6000, VIP, 80, ACK, 200));
            if ![ack, data].iter().all(|v| matches!(v, Verdict::Encap(_))) {
                legit_ok -= 1;
            }
        }
        if i % 1000 == 0 {
            // The keep-alive clients' requests.
            for &(c, d) in &keep {
                let v = lab.send(0, now, &mut tcp_packet(c, 5000, VIP, 80, ACK, 100));
                assert_eq!(encap_dst(v), d, "client {c} at pair {i}");
            }
        }
        assert!(lab.workers[0].conns().len() <= 2000);
    }
    let c = lab.workers[0].counters();
    // The bar: at least 99% of new clients during the flood (995 of 1000 here: a
    // client whose ACK comes a round trip after its SYN may be the oldest unconfirmed flow of
    // a sample in between).
    assert!(
        legit_ok * 100 >= legit_tried * 99,
        "{legit_ok} of {legit_tried} new clients got in"
    );
    assert_eq!(c.dropped(DropReason::ConnTableFull), 0);
    // A lost client's ACK and request, nothing else.
    assert_eq!(
        c.dropped(DropReason::NoConnection),
        2 * u64::from(legit_tried - legit_ok)
    );
    let evicted = c.evicted(Eviction::Unconfirmed) + c.evicted(Eviction::Expired);
    assert!(evicted > 90_000, "{evicted}");
    let conns = lab.workers[0].conns();
    assert!(conns.len() >= conns.high_water() - 1);
    for (c, _) in &keep {
        let key = ConnKey::new(6, *c, 5000, VIP, 80);
        let flow = conns.get(&key).expect("kept");
        assert!(flow.is_confirmed());
        assert_eq!(flow.state, ConnState::Established);
    }
}

#[test]
fn unconfirmed_flows_live_a_minute_confirmed_ones_their_state_timeout() {
    let set = two_servers(SchedulerKind::Rr, TunnelType::Ipip);
    let mut lab = Lab::new(1, &set);
    let now = Instant::from_secs(100);
    let c = client(1);
    let flow = |lab: &Lab, port| {
        *lab.workers[0]
            .conns()
            .get(&ConnKey::new(6, c, port, VIP, 80))
            .unwrap()
    };
    let _ = lab.send(0, now, &mut tcp_packet(c, 1, VIP, 80, SYN, 0));
    let _ = lab.send(0, now, &mut tcp_packet(c, 1, VIP, 80, ACK, 0));
    let f = flow(&lab, 1);
    assert_eq!(f.state, ConnState::Established);
    assert!(!f.is_confirmed());
    assert_eq!(f.expires(), now + Duration::from_secs(60));
    // A SYN's data (TCP Fast Open) does not confirm; a RST's neither.
    let _ = lab.send(0, now, &mut tcp_packet(c, 2, VIP, 80, SYN, 50));
    assert!(!flow(&lab, 2).is_confirmed());
    let _ = lab.send(0, now, &mut tcp_packet(c, 1, VIP, 80, ACK, 1));
    let f = flow(&lab, 1);
    assert!(f.is_confirmed());
    assert_eq!(f.expires(), now + Duration::from_secs(900));
    // UDP: the second datagram confirms.
    let mut set = set;
    set.services.push(ServiceConfig {
        key: ServiceKey {
            vip: VIP,
            port: 53,
            proto: Protocol::Udp,
        },
        ..service(SchedulerKind::Rr, vec![dest(RS1, 1, TunnelType::Ipip)])
    });
    lab.publish(&set);
    let _ = lab.send(0, now, &mut udp_packet(c, 9, VIP, 53, 10));
    let key = ConnKey::new(17, c, 9, VIP, 53);
    assert!(!lab.workers[0].conns().get(&key).unwrap().is_confirmed());
    let _ = lab.send(0, now, &mut udp_packet(c, 9, VIP, 53, 10));
    assert!(lab.workers[0].conns().get(&key).unwrap().is_confirmed());
}

#[test]
fn no_template_for_a_flow_the_full_table_refuses() {
    let mut set = two_servers(SchedulerKind::Rr, TunnelType::Ipip);
    set.services[0].persistence = Some(Persistence {
        timeout: 300,
        netmask: Ipv4Addr::BROADCAST,
    });
    let config = DirectorConfig {
        max_conns: 14,
        initial_conns: 16,
        ..DirectorConfig::default()
    };
    let mut lab = Lab::with_config(1, &set, config);
    let now = Instant::from_secs(1);
    // 14 confirmed flows of 14 clients fill the table (and make 14 templates).
    for i in 0..14u32 {
        let _ = lab.send(0, now, &mut tcp_packet(client(i), 1, VIP, 80, SYN, 0));
        let _ = lab.send(0, now, &mut tcp_packet(client(i), 1, VIP, 80, ACK, 10));
    }
    assert_eq!(lab.shared.templates.len(), 14);
    let v = lab.send(0, now, &mut tcp_packet(client(99), 1, VIP, 80, SYN, 0));
    assert!(
        matches!(v, Verdict::Drop(DropReason::ConnTableFull)),
        "{v:?}"
    );
    assert_eq!(
        lab.shared.templates.len(),
        14,
        "no template for the refused flow"
    );
    // A known client's new flow is refused too, and its template keeps one flow.
    let v = lab.send(0, now, &mut tcp_packet(client(3), 2, VIP, 80, SYN, 0));
    assert!(matches!(v, Verdict::Drop(DropReason::ConnTableFull)));
    let t = lab.shared.templates.snapshot(now);
    assert!(t.iter().all(|e| e.3 == 1), "{t:?}");
}

#[test]
fn later_fragments_follow_the_first_and_the_last_byte_frees_the_tracker() {
    let set = dns_over_ipip();
    let mut lab = Lab::new(1, &set);
    let now = Instant::from_secs(1);
    let c = client(5);
    // A 1,500-byte UDP datagram in two fragments: 1,000 bytes (UDP header included), 500.
    let mut first = udp_packet(c, 7, VIP, 53, 992);
    let mut ip = Ipv4Packet::new_unchecked(&mut first[..]);
    ip.set_ident(0x4242);
    ip.set_flags_and_frag_offset(false, true, 0);
    ip.fill_checksum();
    let d = encap_dst(lab.send(0, now, &mut first));
    assert_eq!(lab.shared.frags().len(), 1);
    let mut last = ipv4_packet(c, VIP, 17, &[0u8; 500]);
    let mut ip = Ipv4Packet::new_unchecked(&mut last[..]);
    ip.set_ident(0x4242);
    ip.set_flags_and_frag_offset(false, false, 1000);
    ip.fill_checksum();
    let mut again = last.clone();
    assert_eq!(encap_dst(lab.send(0, now, &mut last)), d);
    assert!(lab.shared.frags().is_empty(), "freed at the last byte");
    let v = lab.send(0, now, &mut again);
    assert!(
        matches!(v, Verdict::Drop(DropReason::FragmentNoFlow)),
        "{v:?}"
    );
}

/// The IPv4 address of a server in these IPv4 tests.
fn v4(a: std::net::IpAddr) -> Ipv4Addr {
    match a {
        std::net::IpAddr::V4(a) => a,
        std::net::IpAddr::V6(a) => panic!("{a}: an IPv6 server in an IPv4 test"),
    }
}
