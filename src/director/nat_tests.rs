//! Scenario tests of NAT mode (`-m`) in the sans-IO core: several workers over one table, a
//! virtual clock, packets built in memory, every rewrite checked with the wire views.

use std::net::Ipv4Addr;

use super::conn::ConnState;
use super::nat::{ReplyRouting, REPLY_TABLE};
use super::testkit::{self, rewritten, Lab};
use super::{Director, DirectorConfig, DropReason, Verdict};
use crate::encap::TunnelType;
use crate::model::v4::{DestConfig, ServiceConfig, ServiceKey, ServiceSet};
use crate::model::{Forward, Protocol, SchedulerKind};
use crate::sys::netcfg::fake::FakeOps;
use crate::sys::netcfg::NetChanges;
use crate::time::{Duration, Instant};
use crate::wire::testing::{icmp_error, ipv4_packet, tcp_packet, udp_packet};
use crate::wire::{checksum, Icmpv4Packet, Ipv4Packet, TcpPacket, UdpPacket};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 100);
const VIP2: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 101);
const RS1: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 12);
const RS2: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 13);
const RS3: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 14);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const SYN_ACK: u8 = 0x12;
const FIN_ACK: u8 = 0x11;
const PSH_ACK: u8 = 0x18;

fn nat_dest(addr: Ipv4Addr, port: u16) -> DestConfig {
    DestConfig {
        addr,
        port,
        weight: 1,
        forward: Forward::Nat,
        u_threshold: 0,
        l_threshold: 0,
    }
}

fn service(vip: Ipv4Addr, port: u16, proto: Protocol, dests: Vec<DestConfig>) -> ServiceConfig {
    ServiceConfig {
        key: ServiceKey { vip, port, proto },
        scheduler: SchedulerKind::Rr,
        persistence: None,
        mss_clamp: None,
        dests,
        policy: Default::default(),
    }
}

/// TCP VIP:80 → RS1:8080 and RS2:8080 (rr), UDP VIP:53 → RS1:5353.
fn nat_set() -> ServiceSet {
    ServiceSet {
        services: vec![
            service(
                VIP,
                80,
                Protocol::Tcp,
                vec![nat_dest(RS1, 8080), nat_dest(RS2, 8080)],
            ),
            service(VIP, 53, Protocol::Udp, vec![nat_dest(RS1, 5353)]),
        ],
    }
}

/// What the NAT tests read of a lab's table.
trait NatLab {
    /// (active, inactive) connections of the real server at `addr` of the TCP service.
    fn counts(&self, addr: Ipv4Addr) -> (u32, u32);
    /// The state of the client's flow from port `cport` to VIP:80.
    fn state(&self, cport: u16) -> ConnState;
}

impl NatLab for Lab {
    fn counts(&self, addr: Ipv4Addr) -> (u32, u32) {
        let snap = self.shared.snapshot();
        let svc = snap.service(Protocol::Tcp, VIP, 80).unwrap();
        let d = svc.sched_dests.iter().find(|d| d.addr == addr).unwrap();
        (d.state.active(), d.state.inactive())
    }

    fn state(&self, cport: u16) -> ConnState {
        let key = super::conn::ConnKey::new(6, CLIENT, cport, VIP, 80);
        self.shared.nat.get(&key).unwrap().conn.state
    }
}

/// [`testkit::assert_tcp`], and the TTL is left for the kernel to decrement.
fn assert_tcp(v: Verdict, pkt: &[u8], src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) {
    let ip = testkit::assert_tcp(v, pkt, src, dst);
    assert_eq!(ip.ttl(), 64, "TTL is left to the kernel");
}

fn rip_of(v: Verdict, pkt: &[u8]) -> Ipv4Addr {
    rewritten(v, pkt).dst_addr()
}

#[test]
fn rewrites_both_ways_with_port_mapping_and_valid_checksums() {
    let mut lab = Lab::new(2, nat_set());
    let now = Instant::from_secs(1);
    let mut syn = tcp_packet(CLIENT, 40000, VIP, 80, SYN, 0);
    let v = lab.send(0, now, &mut syn);
    assert_tcp(v, &syn, (CLIENT, 40000), (RS1, 8080));
    // The reply arrives on the other worker (another TUN queue) and finds the flow.
    let mut syn_ack = tcp_packet(RS1, 8080, CLIENT, 40000, SYN_ACK, 0);
    let v = lab.send(1, now, &mut syn_ack);
    assert_tcp(v, &syn_ack, (VIP, 80), (CLIENT, 40000));
    for (w, flags, len) in [(1, ACK, 0), (0, PSH_ACK, 300), (1, PSH_ACK, 1200)] {
        let mut p = tcp_packet(CLIENT, 40000, VIP, 80, flags, len);
        assert_tcp(lab.send(w, now, &mut p), &p, (CLIENT, 40000), (RS1, 8080));
        let mut r = tcp_packet(RS1, 8080, CLIENT, 40000, flags, len * 3);
        assert_tcp(lab.send(1 - w, now, &mut r), &r, (VIP, 80), (CLIENT, 40000));
    }
    // Nothing went into a per-worker table; one flow in the shared NAT table.
    assert!(lab.workers.iter().all(|w| w.conns().is_empty()));
    assert_eq!(lab.shared.nat.len(), 1);
    let total: u64 = lab.workers.iter().map(|w| w.counters().rewritten).sum();
    assert_eq!(total, 8);
}

#[test]
fn udp_checksums_follow_and_zero_stays_zero() {
    let mut lab = Lab::new(2, nat_set());
    let now = Instant::from_secs(1);
    let mut q = udp_packet(CLIENT, 5000, VIP, 53, 40);
    let ip = rewritten(lab.send(0, now, &mut q), &q);
    assert_eq!(ip.dst_addr(), RS1);
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(udp.dst_port(), 5353);
    assert!(udp.verify_checksum(CLIENT, RS1));
    let mut a = udp_packet(RS1, 5353, CLIENT, 5000, 100);
    let ip = rewritten(lab.send(1, now, &mut a), &a);
    assert_eq!(ip.src_addr(), VIP);
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(udp.src_port(), 53);
    assert!(udp.verify_checksum(VIP, CLIENT));

    // Without a checksum (0) both ways: it stays 0.
    for (w, mut p) in [
        (0, udp_packet(CLIENT, 5000, VIP, 53, 10)),
        (1, udp_packet(RS1, 5353, CLIENT, 5000, 10)),
    ] {
        p[26..28].copy_from_slice(&[0, 0]);
        let ip = rewritten(lab.send(w, now, &mut p), &p);
        assert_eq!(UdpPacket::new_checked(ip.payload()).unwrap().checksum(), 0);
    }
}

#[test]
fn tcp_states_follow_both_directions_and_counts_follow_states() {
    let mut lab = Lab::new(2, nat_set());
    let t0 = Instant::from_secs(10);
    let c = 41000;
    let steps: [(bool, u8, ConnState, (u32, u32)); 8] = [
        (true, SYN, ConnState::SynRecv, (1, 0)),
        (false, SYN_ACK, ConnState::SynRecv, (1, 0)),
        (true, ACK, ConnState::Established, (1, 0)),
        (false, PSH_ACK, ConnState::Established, (1, 0)),
        // The client closes first.
        (true, FIN_ACK, ConnState::CloseWait, (0, 1)),
        (false, ACK, ConnState::CloseWait, (0, 1)),
        (false, FIN_ACK, ConnState::TimeWait, (0, 1)),
        (true, ACK, ConnState::TimeWait, (0, 1)),
    ];
    for (i, (from_client, flags, state, counts)) in steps.into_iter().enumerate() {
        let mut p = if from_client {
            tcp_packet(CLIENT, c, VIP, 80, flags, 0)
        } else {
            tcp_packet(RS1, 8080, CLIENT, c, flags, 0)
        };
        let v = lab.send(i % 2, t0, &mut p);
        assert!(matches!(v, Verdict::Rewrite { .. }), "step {i}: {v:?}");
        assert_eq!(lab.state(c), state, "step {i}");
        assert_eq!(lab.counts(RS1), counts, "step {i}");
    }
    // TIME_WAIT lasts 120 s; the workers' sweeps remove it and the counts go back to 0. Each
    // sweep step visits one of the 64 shards: run enough steps after the expiry to visit all.
    let mut t = t0;
    for _ in 0..160 {
        t += Duration::from_secs(1);
        for w in &mut lab.workers {
            w.handle_timeout(t);
        }
    }
    assert!(lab.shared.nat.is_empty());
    assert_eq!(lab.counts(RS1), (0, 0));
    let expired: u64 = lab.workers.iter().map(|w| w.counters().conns_expired).sum();
    assert_eq!(expired, 1);
    // The reply tuple is gone with it.
    let mut late = tcp_packet(RS1, 8080, CLIENT, c, ACK, 0);
    assert_eq!(
        lab.send(0, t, &mut late),
        Verdict::Drop(DropReason::NatNoFlow)
    );
}

#[test]
fn server_closing_first_and_reset() {
    let mut lab = Lab::new(1, nat_set());
    let now = Instant::from_secs(1);
    let c = 42000;
    for (from_client, flags, state) in [
        (true, SYN, ConnState::SynRecv),
        (false, SYN_ACK, ConnState::SynRecv),
        (true, ACK, ConnState::Established),
        (false, FIN_ACK, ConnState::FinWait),
        (true, ACK, ConnState::FinWait),
        (true, FIN_ACK, ConnState::TimeWait),
    ] {
        let mut p = if from_client {
            tcp_packet(CLIENT, c, VIP, 80, flags, 0)
        } else {
            tcp_packet(RS1, 8080, CLIENT, c, flags, 0)
        };
        let _ = lab.send(0, now, &mut p);
        assert_eq!(lab.state(c), state);
    }
    // A reset from the real server closes an established flow.
    let c2 = 42001;
    let mut syn = tcp_packet(CLIENT, c2, VIP, 80, SYN, 0);
    let rip = rip_of(lab.send(0, now, &mut syn), &syn);
    let _ = lab.send(0, now, &mut tcp_packet(rip, 8080, CLIENT, c2, SYN_ACK, 0));
    let _ = lab.send(0, now, &mut tcp_packet(CLIENT, c2, VIP, 80, ACK, 0));
    assert_eq!(lab.state(c2), ConnState::Established);
    let _ = lab.send(0, now, &mut tcp_packet(rip, 8080, CLIENT, c2, 0x04, 0));
    assert_eq!(lab.state(c2), ConnState::Close);
}

#[test]
fn a_new_syn_on_a_closing_flow_starts_a_new_flow() {
    let mut lab = Lab::new(1, nat_set());
    let now = Instant::from_secs(1);
    let mut syn = tcp_packet(CLIENT, 43000, VIP, 80, SYN, 0);
    let first = rip_of(lab.send(0, now, &mut syn), &syn);
    let _ = lab.send(
        0,
        now,
        &mut tcp_packet(first, 8080, CLIENT, 43000, SYN_ACK, 0),
    );
    let _ = lab.send(0, now, &mut tcp_packet(CLIENT, 43000, VIP, 80, ACK, 0));
    // (A reset during the handshake keeps SYN_RECV, as IPVS; after it, it closes.)
    let _ = lab.send(0, now, &mut tcp_packet(CLIENT, 43000, VIP, 80, 0x04, 0));
    assert_eq!(lab.state(43000), ConnState::Close);
    let mut again = tcp_packet(CLIENT, 43000, VIP, 80, SYN, 0);
    let second = rip_of(lab.send(0, now, &mut again), &again);
    assert_ne!(first, second, "rr schedules the reused ports anew");
    assert_eq!(lab.state(43000), ConnState::SynRecv);
    assert_eq!(lab.shared.nat.len(), 1);
    assert_eq!(lab.counts(first), (0, 0));
    assert_eq!(lab.counts(second), (1, 0));
}

#[test]
fn unknown_replies_and_non_syn_are_dropped() {
    let mut lab = Lab::new(1, nat_set());
    let now = Instant::from_secs(1);
    let mut stray = tcp_packet(RS1, 8080, CLIENT, 1234, ACK, 0);
    assert_eq!(
        lab.send(0, now, &mut stray),
        Verdict::Drop(DropReason::NatNoFlow)
    );
    let mut mid = tcp_packet(CLIENT, 1234, VIP, 80, ACK, 0);
    assert_eq!(
        lab.send(0, now, &mut mid),
        Verdict::Drop(DropReason::NoConnection)
    );
    // A reply from the right server but another port is no reply of the flow.
    let mut syn = tcp_packet(CLIENT, 1234, VIP, 80, SYN, 0);
    let rip = rip_of(lab.send(0, now, &mut syn), &syn);
    let mut wrong = tcp_packet(rip, 8081, CLIENT, 1234, SYN_ACK, 0);
    assert_eq!(
        lab.send(0, now, &mut wrong),
        Verdict::Drop(DropReason::NatNoFlow)
    );
    let c = lab.workers[0].counters();
    assert_eq!(c.dropped(DropReason::NatNoFlow), 2);
}

#[test]
fn a_deleted_real_server_drops_its_flows_both_ways() {
    let mut set = nat_set();
    let mut lab = Lab::new(2, &set);
    let now = Instant::from_secs(1);
    let mut syn = tcp_packet(CLIENT, 44000, VIP, 80, SYN, 0);
    assert_eq!(rip_of(lab.send(0, now, &mut syn), &syn), RS1);
    let mut syn = tcp_packet(CLIENT, 44001, VIP, 80, SYN, 0);
    assert_eq!(rip_of(lab.send(0, now, &mut syn), &syn), RS2);
    set.services[0].dests.remove(0);
    lab.publish(&set);
    let mut reply = tcp_packet(RS1, 8080, CLIENT, 44000, SYN_ACK, 0);
    assert_eq!(
        lab.send(1, now, &mut reply),
        Verdict::Drop(DropReason::DestinationGone)
    );
    let mut ack = tcp_packet(CLIENT, 44000, VIP, 80, ACK, 0);
    assert_eq!(
        lab.send(0, now, &mut ack),
        Verdict::Drop(DropReason::NoConnection)
    );
    // RS2's flow is untouched.
    let mut ack = tcp_packet(CLIENT, 44001, VIP, 80, ACK, 0);
    assert_eq!(rip_of(lab.send(0, now, &mut ack), &ack), RS2);
    assert_eq!(lab.shared.nat.len(), 1);
}

#[test]
fn two_vips_sharing_a_real_server_cannot_share_a_reply_tuple() {
    let set = ServiceSet {
        services: vec![
            service(VIP, 80, Protocol::Tcp, vec![nat_dest(RS1, 8080)]),
            service(VIP2, 80, Protocol::Tcp, vec![nat_dest(RS1, 8080)]),
        ],
    };
    let mut lab = Lab::new(1, &set);
    let now = Instant::from_secs(1);
    let mut a = tcp_packet(CLIENT, 45000, VIP, 80, SYN, 0);
    assert_eq!(rip_of(lab.send(0, now, &mut a), &a), RS1);
    let mut b = tcp_packet(CLIENT, 45000, VIP2, 80, SYN, 0);
    assert_eq!(
        lab.send(0, now, &mut b),
        Verdict::Drop(DropReason::NatConflict)
    );
    // Another client port is fine, and each reply finds its own VIP.
    let mut b = tcp_packet(CLIENT, 45001, VIP2, 80, SYN, 0);
    assert_eq!(rip_of(lab.send(0, now, &mut b), &b), RS1);
    let mut r = tcp_packet(RS1, 8080, CLIENT, 45001, SYN_ACK, 0);
    assert_tcp(lab.send(0, now, &mut r), &r, (VIP2, 80), (CLIENT, 45001));
    let mut r = tcp_packet(RS1, 8080, CLIENT, 45000, SYN_ACK, 0);
    assert_tcp(lab.send(0, now, &mut r), &r, (VIP, 80), (CLIENT, 45000));
    let snap = lab.shared.snapshot();
    let svc = snap.service(Protocol::Tcp, VIP, 80).unwrap();
    assert_eq!(
        svc.sched_dests[0].state.active(),
        1,
        "the refused SYN counts nowhere"
    );
}

#[test]
fn port_zero_dest_keeps_the_virtual_port() {
    let set = ServiceSet {
        services: vec![service(VIP, 443, Protocol::Tcp, vec![nat_dest(RS1, 0)])],
    };
    let mut lab = Lab::new(1, &set);
    let now = Instant::from_secs(1);
    let mut syn = tcp_packet(CLIENT, 46000, VIP, 443, SYN, 0);
    let v = lab.send(0, now, &mut syn);
    assert_tcp(v, &syn, (CLIENT, 46000), (RS1, 443));
    let mut r = tcp_packet(RS1, 443, CLIENT, 46000, SYN_ACK, 0);
    assert_tcp(lab.send(0, now, &mut r), &r, (VIP, 443), (CLIENT, 46000));
}

/// An ICMP error from `src` to `dst` quoting all of `original`.
fn icmp_error_full(src: Ipv4Addr, dst: Ipv4Addr, t: u8, code: u8, original: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; 8 + original.len()];
    m[0] = t;
    m[1] = code;
    m[8..].copy_from_slice(original);
    let c = checksum::checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4_packet(src, dst, 1, &m)
}

/// The ICMP message of a rewritten packet (checksum verified) and its quoted IPv4 packet.
fn icmp_and_quote(ip: &Ipv4Packet<&[u8]>) -> Vec<u8> {
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum(), "ICMP checksum");
    let quote = icmp.invoking_packet().unwrap().to_vec();
    let q = Ipv4Packet::new_unchecked(&quote[..]);
    assert!(q.verify_checksum(), "quoted header checksum");
    quote
}

#[test]
fn icmp_error_from_the_client_side_is_translated_for_the_real_server() {
    let mut lab = Lab::new(2, nat_set());
    let now = Instant::from_secs(1);
    let mut syn = tcp_packet(CLIENT, 47000, VIP, 80, SYN, 0);
    let rip = rip_of(lab.send(0, now, &mut syn), &syn);
    // A router on the client's path cannot forward a full-size reply (VIP:80 -> client).
    let reply = tcp_packet(VIP, 80, CLIENT, 47000, ACK, 0);
    for (w, mut err) in [
        (1, icmp_error_full(ROUTER, VIP, 3, 4, &reply)),
        (0, icmp_error(ROUTER, VIP, 3, 4, 1400, &reply)),
    ] {
        let v = lab.send(w, now, &mut err);
        let ip = rewritten(v, &err);
        assert_eq!((ip.src_addr(), ip.dst_addr()), (ROUTER, rip));
        let quote = icmp_and_quote(&ip);
        let q = Ipv4Packet::new_unchecked(&quote[..]);
        assert_eq!((q.src_addr(), q.dst_addr()), (rip, CLIENT));
        assert_eq!(
            &quote[20..24],
            &[0x1f, 0x90, 0xb7, 0x98],
            "ports 8080 -> 47000"
        );
        if quote.len() == reply.len() {
            // The whole segment is quoted: its checksum was updated too.
            let tcp = TcpPacket::new_checked(&quote[20..]).unwrap();
            assert!(tcp.verify_checksum(rip, CLIENT), "quoted TCP checksum");
        }
    }
    // An error about a flow nobody knows is dropped.
    let stray = tcp_packet(VIP, 80, CLIENT, 47001, ACK, 0);
    let mut err = icmp_error(ROUTER, VIP, 3, 4, 1400, &stray);
    assert_eq!(
        lab.send(0, now, &mut err),
        Verdict::Drop(DropReason::IcmpNoFlow)
    );
}

#[test]
fn icmp_error_from_the_real_server_is_translated_for_the_client() {
    let mut lab = Lab::new(2, nat_set());
    let now = Instant::from_secs(1);
    let mut q = udp_packet(CLIENT, 5001, VIP, 53, 12);
    let _ = lab.send(0, now, &mut q);
    // Nothing listens on RS1:5353: port unreachable, quoting what the director sent it.
    let sent = udp_packet(CLIENT, 5001, RS1, 5353, 12);
    for mut err in [
        icmp_error_full(RS1, CLIENT, 3, 3, &sent),
        icmp_error(RS1, CLIENT, 3, 3, 0, &sent),
    ] {
        let v = lab.send(1, now, &mut err);
        let ip = rewritten(v, &err);
        assert_eq!((ip.src_addr(), ip.dst_addr()), (VIP, CLIENT));
        let quote = icmp_and_quote(&ip);
        let qip = Ipv4Packet::new_unchecked(&quote[..]);
        assert_eq!((qip.src_addr(), qip.dst_addr()), (CLIENT, VIP));
        assert_eq!(&quote[20..24], &[0x13, 0x89, 0, 53], "ports 5001 -> 53");
        if quote.len() == sent.len() {
            let udp = UdpPacket::new_checked(&quote[20..]).unwrap();
            assert!(udp.verify_checksum(CLIENT, VIP), "quoted UDP checksum");
        }
    }
    // Echo from a real server, and errors about flows that are not NAT flows, go back as they
    // are (the kernel routes them normally).
    let mut echo = ipv4_packet(
        RS1,
        Ipv4Addr::new(8, 8, 8, 8),
        1,
        &[8, 0, 0xf7, 0xff, 0, 0, 0, 0],
    );
    let before = echo.clone();
    assert_eq!(
        lab.send(0, now, &mut echo),
        Verdict::Rewrite { len: before.len() }
    );
    assert_eq!(echo, before);
    let other = udp_packet(Ipv4Addr::new(192, 0, 2, 1), 9, RS1, 7777, 4);
    let mut err = icmp_error(RS1, Ipv4Addr::new(192, 0, 2, 1), 3, 3, 0, &other);
    let before = err.clone();
    let _ = lab.send(0, now, &mut err);
    assert_eq!(err, before);
    let stats = lab.workers[1].counters().per_dest.clone();
    assert!(stats.iter().any(|d| d.out_pkts == 2));
}

#[test]
fn fragments_follow_their_first_fragment_both_ways() {
    let mut lab = Lab::new(2, nat_set());
    let now = Instant::from_secs(1);
    // A client datagram in two fragments: the first carries the ports.
    let mut first = udp_packet(CLIENT, 5002, VIP, 53, 100);
    first[6] = 0x20; // MF
    first[4..6].copy_from_slice(&0x4242u16.to_be_bytes());
    first[10..12].copy_from_slice(&[0, 0]);
    Ipv4Packet::new_unchecked(&mut first[..]).fill_checksum();
    let ip = rewritten(lab.send(0, now, &mut first), &first);
    assert_eq!(ip.dst_addr(), RS1);
    assert_eq!(u16::from_be_bytes([first[22], first[23]]), 5353);
    let mut later = ipv4_packet(CLIENT, VIP, 17, &[7u8; 64]);
    later[4..6].copy_from_slice(&0x4242u16.to_be_bytes());
    later[6] = 0x00;
    later[7] = 14;
    later[10..12].copy_from_slice(&[0, 0]);
    Ipv4Packet::new_unchecked(&mut later[..]).fill_checksum();
    let ip = rewritten(lab.send(1, now, &mut later), &later);
    assert_eq!(ip.dst_addr(), RS1);
    assert_eq!(&ip.payload()[..4], &[7, 7, 7, 7], "payload untouched");

    // The answer, in fragments too.
    let mut first = udp_packet(RS1, 5353, CLIENT, 5002, 100);
    first[6] = 0x20;
    first[4..6].copy_from_slice(&0x5151u16.to_be_bytes());
    first[10..12].copy_from_slice(&[0, 0]);
    Ipv4Packet::new_unchecked(&mut first[..]).fill_checksum();
    let ip = rewritten(lab.send(1, now, &mut first), &first);
    assert_eq!(ip.src_addr(), VIP);
    let mut later = ipv4_packet(RS1, CLIENT, 17, &[9u8; 64]);
    later[4..6].copy_from_slice(&0x5151u16.to_be_bytes());
    later[7] = 14;
    later[10..12].copy_from_slice(&[0, 0]);
    Ipv4Packet::new_unchecked(&mut later[..]).fill_checksum();
    let ip = rewritten(lab.send(0, now, &mut later), &later);
    assert_eq!(ip.src_addr(), VIP);
    // A later fragment nobody announced is dropped.
    later[4..6].copy_from_slice(&0x1111u16.to_be_bytes());
    assert_eq!(
        lab.send(0, now, &mut later),
        Verdict::Drop(DropReason::FragmentNoFlow)
    );
}

#[test]
fn too_big_with_df_gets_frag_needed_from_the_vip() {
    let mut lab = Lab::new(1, nat_set());
    lab.workers[0] = Director::new(
        lab.shared.clone(),
        DirectorConfig {
            tunnel_mtu: 1400,
            ..DirectorConfig::default()
        },
    );
    let now = Instant::from_secs(1);
    let _ = lab.send(0, now, &mut tcp_packet(CLIENT, 48000, VIP, 80, SYN, 0));
    let mut big = tcp_packet(CLIENT, 48000, VIP, 80, ACK, 1460);
    let Verdict::Reply { len } = lab.send(0, now, &mut big) else {
        panic!("expected an ICMP reply")
    };
    let ip = Ipv4Packet::new_checked(&big[..len]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (VIP, CLIENT));
    assert_eq!(u16::from_be_bytes([ip.payload()[6], ip.payload()[7]]), 1400);
}

#[test]
fn per_server_counters_count_both_directions() {
    let mut lab = Lab::new(2, nat_set());
    let now = Instant::from_secs(1);
    let mut syn = tcp_packet(CLIENT, 49000, VIP, 80, SYN, 0);
    let rip = rip_of(lab.send(0, now, &mut syn), &syn);
    let mut data = tcp_packet(CLIENT, 49000, VIP, 80, ACK, 100);
    let _ = lab.send(0, now, &mut data);
    let mut r1 = tcp_packet(rip, 8080, CLIENT, 49000, SYN_ACK, 0);
    let mut r2 = tcp_packet(rip, 8080, CLIENT, 49000, PSH_ACK, 1000);
    let _ = lab.send(1, now, &mut r1);
    let _ = lab.send(1, now, &mut r2);
    let snap = lab.shared.snapshot();
    let svc = snap.service(Protocol::Tcp, VIP, 80).unwrap();
    let i = svc.sched_dests.iter().position(|d| d.addr == rip).unwrap();
    let slot = usize::from(svc.dest_ids[i].slot());
    let w0 = lab.workers[0].counters().per_dest[slot];
    let w1 = lab.workers[1].counters().per_dest[slot];
    assert_eq!(
        (w0.conns, w0.in_pkts, w0.in_bytes),
        (1, 2, (syn.len() + data.len()) as u64)
    );
    assert_eq!(
        (w1.out_pkts, w1.out_bytes),
        (2, (r1.len() + r2.len()) as u64)
    );
}

#[test]
fn tunnel_and_nat_services_side_by_side() {
    let mut set = nat_set();
    set.services.push(service(
        VIP2,
        80,
        Protocol::Tcp,
        vec![DestConfig {
            forward: Forward::tunnel(TunnelType::Ipip),
            ..nat_dest(RS3, 80)
        }],
    ));
    let mut lab = Lab::new(1, &set);
    let now = Instant::from_secs(1);
    let mut syn = tcp_packet(CLIENT, 50000, VIP2, 80, SYN, 0);
    assert!(matches!(lab.send(0, now, &mut syn), Verdict::Encap(e) if e.dst == RS3));
    let mut ack = tcp_packet(CLIENT, 50000, VIP2, 80, ACK, 0);
    assert!(matches!(lab.send(0, now, &mut ack), Verdict::Encap(_)));
    assert_eq!(lab.workers[0].conns().len(), 1);
    let mut syn = tcp_packet(CLIENT, 50000, VIP, 80, SYN, 0);
    assert!(matches!(
        lab.send(0, now, &mut syn),
        Verdict::Rewrite { .. }
    ));
    assert_eq!(lab.shared.nat.len(), 1);
}

#[test]
fn reply_routing_rules_follow_the_nat_servers() {
    let mut set = nat_set();
    let mut lab = Lab::new(1, &set);
    let mut net = NetChanges::with_ops(FakeOps::default());
    let mut routing = ReplyRouting::default();
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
            format!("ip rule add pref 101 from 10.10.0.12/32 ipproto 1 lookup {t}"),
            format!("ip rule add pref 101 from 10.10.0.12/32 ipproto 6 sport 8080 lookup {t}"),
            format!("ip rule add pref 101 from 10.10.0.12/32 ipproto 17 sport 5353 lookup {t}"),
            format!("ip rule add pref 101 from 10.10.0.13/32 ipproto 1 lookup {t}"),
            format!("ip rule add pref 101 from 10.10.0.13/32 ipproto 6 sport 8080 lookup {t}"),
        ]
    );
    // RS2 leaves: its two rules go; syncing again changes nothing more.
    set.services[0].dests.remove(1);
    lab.publish(&set);
    let n = net.ops().log.len();
    routing
        .sync(&mut net, &lab.shared.snapshot(), "tunlb0")
        .unwrap();
    routing
        .sync(&mut net, &lab.shared.snapshot(), "tunlb0")
        .unwrap();
    assert_eq!(
        net.ops().log[n..],
        [
            format!("ip rule del pref 101 from 10.10.0.13/32 ipproto 1 lookup {t}"),
            format!("ip rule del pref 101 from 10.10.0.13/32 ipproto 6 sport 8080 lookup {t}"),
        ]
    );
    // A table without NAT servers installs nothing.
    let mut none = NetChanges::with_ops(FakeOps::default());
    let tun_only = Lab::new(1, ServiceSet::default());
    ReplyRouting::default()
        .sync(&mut none, &tun_only.shared.snapshot(), "tunlb0")
        .unwrap();
    assert!(none.ops().log.is_empty());
}

#[test]
fn arbitrary_bytes_never_panic_with_nat() {
    let mut lab = Lab::new(2, nat_set());
    let now = Instant::from_secs(1);
    let _ = lab.send(0, now, &mut tcp_packet(CLIENT, 1, VIP, 80, SYN, 0));
    let _ = lab.send(0, now, &mut udp_packet(CLIENT, 1, VIP, 53, 4));
    let samples = [
        tcp_packet(CLIENT, 1, VIP, 80, ACK, 0),
        tcp_packet(RS1, 8080, CLIENT, 1, ACK, 0),
        udp_packet(RS1, 5353, CLIENT, 1, 4),
        icmp_error(
            ROUTER,
            VIP,
            3,
            4,
            0,
            &tcp_packet(VIP, 80, CLIENT, 1, ACK, 0),
        ),
        icmp_error(RS1, CLIENT, 3, 3, 0, &udp_packet(CLIENT, 1, RS1, 5353, 4)),
        icmp_error_full(RS1, CLIENT, 3, 3, &udp_packet(CLIENT, 1, RS1, 5353, 4)),
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
        match lab.send(round % 2, now, &mut p) {
            Verdict::Rewrite { len: n } | Verdict::Reply { len: n } => assert!(n <= len),
            _ => {}
        }
    }
}

#[test]
fn a_held_nat_server_keeps_its_flows_both_ways_until_it_returns() {
    let mut set = nat_set();
    set.services[0].policy.expire_nodest_conn = false;
    let mut lab = Lab::new(2, &set);
    let now = Instant::from_secs(1);
    let mut syn = tcp_packet(CLIENT, 44000, VIP, 80, SYN, 0);
    assert_eq!(rip_of(lab.send(0, now, &mut syn), &syn), RS1);
    let mut syn_ack = tcp_packet(RS1, 8080, CLIENT, 44000, SYN_ACK, 0);
    let v = lab.send(1, now, &mut syn_ack);
    assert_tcp(v, &syn_ack, (VIP, 80), (CLIENT, 44000));
    // With data: the flow is confirmed and has ESTABLISHED's whole timeout.
    let mut ack = tcp_packet(CLIENT, 44000, VIP, 80, ACK, 10);
    assert_eq!(rip_of(lab.send(0, now, &mut ack), &ack), RS1);
    assert_eq!(lab.counts(RS1), (1, 0));

    // RS1's check fails: held. Both directions are dropped, the flow and the reply routing kept.
    let mut down = set.clone();
    let rs1 = down.services[0].dests.remove(0);
    let key = down.services[0].key;
    lab.publish_held(&down, &[(key, rs1)]);
    let later = now + Duration::from_secs(3);
    let mut data = tcp_packet(CLIENT, 44000, VIP, 80, PSH_ACK, 10);
    assert_eq!(
        lab.send(0, later, &mut data),
        Verdict::Drop(DropReason::DestinationDown)
    );
    let mut reply = tcp_packet(RS1, 8080, CLIENT, 44000, ACK, 0);
    assert_eq!(
        lab.send(1, later, &mut reply),
        Verdict::Drop(DropReason::DestinationDown)
    );
    assert_eq!(lab.shared.nat.len(), 1);
    let snap = lab.shared.snapshot();
    assert!(snap
        .nat_endpoints()
        .iter()
        .any(|e| e.addr == RS1 && e.port == 8080));
    let flow = lab
        .shared
        .nat
        .get(&super::conn::ConnKey::new(6, CLIENT, 44000, VIP, 80))
        .unwrap();
    assert_eq!(
        flow.conn.expires(),
        now + snap.timeouts.get(ConnState::Established)
    );
    // New flows go to RS2.
    let mut syn = tcp_packet(CLIENT, 44001, VIP, 80, SYN, 0);
    assert_eq!(rip_of(lab.send(0, later, &mut syn), &syn), RS2);

    // Back: the flow goes on, both ways.
    lab.publish(&set);
    let mut data = tcp_packet(CLIENT, 44000, VIP, 80, PSH_ACK, 10);
    assert_eq!(rip_of(lab.send(0, later, &mut data), &data), RS1);
    let mut reply = tcp_packet(RS1, 8080, CLIENT, 44000, ACK, 0);
    let v = lab.send(1, later, &mut reply);
    assert_tcp(v, &reply, (VIP, 80), (CLIENT, 44000));
    assert_eq!(lab.counts(RS1), (1, 0));
}

#[test]
fn a_nat_udp_flow_of_a_removed_server_is_rescheduled_at_once() {
    let mut set = nat_set();
    set.services[1].dests.push(nat_dest(RS2, 5353));
    let mut lab = Lab::new(1, &set);
    let now = Instant::from_secs(1);
    let mut q = udp_packet(CLIENT, 5000, VIP, 53, 12);
    assert_eq!(rip_of(lab.send(0, now, &mut q), &q), RS1);
    set.services[1].dests.remove(0);
    lab.publish(&set);
    let mut q = udp_packet(CLIENT, 5000, VIP, 53, 12);
    assert_eq!(rip_of(lab.send(0, now, &mut q), &q), RS2);
    // The old reply tuple is gone, the new one answers.
    let mut old = udp_packet(RS1, 5353, CLIENT, 5000, 12);
    assert_eq!(
        lab.send(0, now, &mut old),
        Verdict::Drop(DropReason::NatNoFlow)
    );
    let mut reply = udp_packet(RS2, 5353, CLIENT, 5000, 12);
    assert_eq!(
        rewritten(lab.send(0, now, &mut reply), &reply).src_addr(),
        VIP
    );
    assert_eq!(
        lab.workers[0]
            .counters()
            .dropped(DropReason::DestinationGone),
        0
    );
}
