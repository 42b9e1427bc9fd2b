//! Connection sync and sloppy pickup in the core: records queued while emitting, dumps,
//! installs on a second director (its own registry and table, as another process), the counts
//! and templates that follow, and mid-flow packets with `sloppy_tcp`.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::{InstallStats, SYNC_QUEUE_MAX};
use crate::director::conn::{ConnKey, ConnState, SyncRecord, KEY_TEMPLATE};
use crate::director::testkit::Lab;
use crate::director::{DirectorConfig, DropReason, Verdict};
use crate::encap::TunnelType;
use crate::model::v4::{DestConfig, Persistence, ServiceConfig, ServiceKey, ServiceSet};
use crate::model::{Forward, Protocol, SchedulerKind};
use crate::time::{Duration, Instant};
use crate::wire::testing::{tcp_packet, udp_packet};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 100);
const RS1: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 12);
const RS2: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 13);
const RS3: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 14);
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN_ACK: u8 = 0x11;
const RST: u8 = 0x04;
const TCP: u8 = 6;
const UDP: u8 = 17;

fn client(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a01_0000 + i)
}

fn dest(addr: Ipv4Addr, port: u16, forward: Forward) -> DestConfig {
    DestConfig {
        addr,
        port,
        weight: 1,
        forward,
        u_threshold: 0,
        l_threshold: 0,
    }
}

fn ipip(addr: Ipv4Addr) -> DestConfig {
    dest(addr, 0, Forward::tunnel(TunnelType::Ipip))
}

fn service(
    proto: Protocol,
    port: u16,
    sched: SchedulerKind,
    dests: Vec<DestConfig>,
) -> ServiceConfig {
    ServiceConfig {
        key: ServiceKey {
            vip: VIP,
            port,
            proto,
        },
        scheduler: sched,
        persistence: None,
        mss_clamp: None,
        dests,
        policy: Default::default(),
    }
}

/// TCP VIP:80 and UDP VIP:53 over RS1 and RS2 (IPIP), with `sched`.
fn web_and_dns(sched: SchedulerKind) -> ServiceSet {
    ServiceSet {
        services: vec![
            service(Protocol::Tcp, 80, sched, vec![ipip(RS1), ipip(RS2)]),
            service(Protocol::Udp, 53, sched, vec![ipip(RS1), ipip(RS2)]),
        ],
    }
}

/// TCP VIP:443, persistent for `timeout` seconds, rr over RS1 and RS2.
fn persistent(timeout: u32) -> ServiceSet {
    let mut svc = service(
        Protocol::Tcp,
        443,
        SchedulerKind::Rr,
        vec![ipip(RS1), ipip(RS2)],
    );
    svc.persistence = Some(Persistence {
        timeout,
        netmask: Ipv4Addr::BROADCAST,
    });
    ServiceSet {
        services: vec![svc],
    }
}

fn sloppy() -> DirectorConfig {
    DirectorConfig {
        sloppy_tcp: true,
        ..DirectorConfig::default()
    }
}

fn encap_dst(v: Verdict) -> Ipv4Addr {
    match v {
        Verdict::Encap(e) => e.dst,
        other => panic!("expected Encap, got {other:?}"),
    }
}

fn key(proto: u8, c: Ipv4Addr, cport: u16, vport: u16) -> ConnKey {
    ConnKey::new(proto, c, cport, VIP, vport)
}

fn rec(key: ConnKey, rs: Ipv4Addr, port: u16, state: ConnState, secs: u64) -> SyncRecord {
    SyncRecord {
        key,
        dest: SocketAddrV4::new(rs, port),
        state,
        timeout: Duration::from_secs(secs),
        confirmed: false,
    }
}

/// (active, inactive) connections of real server `rs` of the service `proto` VIP:`port`.
fn counts(lab: &Lab, proto: Protocol, port: u16, rs: Ipv4Addr) -> (u32, u32) {
    let snap = lab.shared.snapshot();
    let d = snap
        .find_dest(proto, VIP, port, SocketAddrV4::new(rs, port))
        .expect("the server");
    (d.state.active(), d.state.inactive())
}

fn take(lab: &mut Lab) -> Vec<SyncRecord> {
    let mut out = Vec::new();
    for w in &mut lab.workers {
        w.take_sync(&mut out);
    }
    out
}

/// Every record of a whole dump of worker `w` in pieces of `limit`.
fn dump_all(lab: &Lab, w: usize, limit: usize, now: Instant) -> Vec<SyncRecord> {
    let mut out = Vec::new();
    let mut cursor = 0;
    while let Some(next) = lab.workers[w].dump_sync(cursor, limit, now, &mut out) {
        cursor = next;
    }
    out
}

#[test]
fn nothing_is_queued_while_emit_is_off() {
    let mut lab = Lab::new(1, web_and_dns(SchedulerKind::Rr));
    let now = Instant::from_secs(1);
    assert!(!lab.shared.sync_emit(), "off by default");
    let _ = lab.send(0, now, &mut tcp_packet(client(1), 1000, VIP, 80, SYN, 0));
    let _ = lab.send(0, now, &mut tcp_packet(client(1), 1000, VIP, 80, ACK, 10));
    let _ = lab.send(0, now, &mut udp_packet(client(1), 1000, VIP, 53, 10));
    assert_eq!(lab.workers[0].sync_queued(), 0);
    assert!(take(&mut lab).is_empty());
}

#[test]
fn new_flows_and_state_changes_are_queued_while_emitting() {
    let mut lab = Lab::new(1, web_and_dns(SchedulerKind::Rr));
    lab.shared.set_sync_emit(true);
    let now = Instant::from_secs(1);
    let c = client(1);
    let rs = encap_dst(lab.send(0, now, &mut tcp_packet(c, 1000, VIP, 80, SYN, 0)));
    for _ in 0..3 {
        let _ = lab.send(0, now, &mut tcp_packet(c, 1000, VIP, 80, ACK, 10));
    }
    let _ = lab.send(0, now, &mut tcp_packet(c, 1000, VIP, 80, FIN_ACK, 0));
    let urs = encap_dst(lab.send(0, now, &mut udp_packet(c, 2000, VIP, 53, 10)));
    let _ = lab.send(0, now, &mut udp_packet(c, 2000, VIP, 53, 10));
    let k = key(TCP, c, 1000, 80);
    let secs = Duration::from_secs;
    let confirmed = |r: SyncRecord| SyncRecord {
        confirmed: true,
        ..r
    };
    assert_eq!(
        take(&mut lab),
        [
            rec(k, rs, 80, ConnState::SynRecv, 60),
            // Only changes: the later ACKs queue nothing. The first ACK carried data: the
            // flow is confirmed in the same record.
            confirmed(rec(k, rs, 80, ConnState::Established, 900)),
            confirmed(rec(k, rs, 80, ConnState::FinWait, 120)),
            rec(key(UDP, c, 2000, 53), urs, 53, ConnState::Udp, 300),
            // The second datagram confirms the UDP flow.
            confirmed(rec(key(UDP, c, 2000, 53), urs, 53, ConnState::Udp, 300)),
        ]
    );
    assert_eq!(secs(900), lab.shared.snapshot().timeouts.tcp());
    assert_eq!(lab.workers[0].sync_queued(), 0, "taken");
    // Off again: nothing more.
    lab.shared.set_sync_emit(false);
    let _ = lab.send(0, now, &mut tcp_packet(c, 1001, VIP, 80, SYN, 0));
    assert!(take(&mut lab).is_empty());
}

#[test]
fn a_persistent_services_new_flow_queues_its_template() {
    let mut lab = Lab::new(1, persistent(600));
    lab.shared.set_sync_emit(true);
    let now = Instant::from_secs(1);
    let c = client(9);
    let rs = encap_dst(lab.send(0, now, &mut tcp_packet(c, 1000, VIP, 443, SYN, 0)));
    let recs = take(&mut lab);
    let tkey = ConnKey {
        flags: KEY_TEMPLATE,
        cport: 0,
        ..key(TCP, c, 0, 443)
    };
    assert_eq!(
        recs,
        [
            rec(key(TCP, c, 1000, 443), rs, 443, ConnState::SynRecv, 60),
            rec(tkey, rs, 443, ConnState::None, 600),
        ]
    );
}

#[test]
fn the_queue_is_bounded_and_overflow_is_counted() {
    let mut lab = Lab::new(1, web_and_dns(SchedulerKind::Rr));
    lab.shared.set_sync_emit(true);
    let now = Instant::from_secs(1);
    let extra = 10;
    for i in 0..(SYNC_QUEUE_MAX + extra) as u32 {
        let mut p = udp_packet(client(i / 1000), 1000 + (i % 1000) as u16, VIP, 53, 0);
        let _ = lab.send(0, now, &mut p);
    }
    assert_eq!(lab.workers[0].sync_queued(), SYNC_QUEUE_MAX);
    assert_eq!(lab.workers[0].counters().sync_dropped, extra as u64);
    assert_eq!(take(&mut lab).len(), SYNC_QUEUE_MAX);
    // Drained: room again.
    let _ = lab.send(0, now, &mut udp_packet(client(999), 1, VIP, 53, 0));
    assert_eq!(lab.workers[0].sync_queued(), 1);
}

#[test]
fn nat_flows_are_neither_queued_nor_installed() {
    let set = ServiceSet {
        services: vec![service(
            Protocol::Tcp,
            80,
            SchedulerKind::Rr,
            vec![dest(RS1, 8080, Forward::Nat)],
        )],
    };
    let mut lab = Lab::new(1, &set);
    lab.shared.set_sync_emit(true);
    let now = Instant::from_secs(1);
    let _ = lab.send(0, now, &mut tcp_packet(client(1), 1000, VIP, 80, SYN, 0));
    assert_eq!(lab.shared.nat.len(), 1);
    assert!(take(&mut lab).is_empty());
    assert!(dump_all(&lab, 0, 10, now).is_empty());
    let r = rec(
        key(TCP, client(2), 1, 80),
        RS1,
        8080,
        ConnState::Established,
        900,
    );
    let stats = lab.workers[0].install_synced(now, &[r]);
    assert_eq!(
        stats,
        InstallStats {
            nat: 1,
            ..InstallStats::default()
        }
    );
}

#[test]
fn a_dump_in_pieces_holds_every_live_flow_and_template_once() {
    let mut set = web_and_dns(SchedulerKind::Rr);
    set.services.extend(persistent(300).services);
    let mut lab = Lab::new(2, &set);
    let t0 = Instant::from_secs(100);
    for i in 0..50u32 {
        let w = i as usize % 2;
        let _ = lab.send(w, t0, &mut tcp_packet(client(i), 1000, VIP, 80, SYN, 0));
        // With data: a confirmed flow keeps ESTABLISHED's whole timeout.
        let _ = lab.send(w, t0, &mut tcp_packet(client(i), 1000, VIP, 80, ACK, 10));
        let _ = lab.send(w, t0, &mut udp_packet(client(i), 2000, VIP, 53, 0));
    }
    for i in 0..10u32 {
        let _ = lab.send(0, t0, &mut tcp_packet(client(i), 3000, VIP, 443, SYN, 0));
    }
    let now = t0 + Duration::from_secs(30);
    // A flow already expired (SYN_RECV lives 60 s) is left out.
    let _ = lab.send(
        1,
        Instant::from_secs(50),
        &mut tcp_packet(client(77), 9, VIP, 80, SYN, 0),
    );
    // Worker 0 (its own 25 + 25 + 10 flows, the 10 shared templates) and worker 1's own.
    let w0 = dump_all(&lab, 0, 7, now);
    assert_eq!(w0.len(), 25 + 25 + 10 + 10);
    let mut w1 = Vec::new();
    let mut cursor = 0;
    while let Some(c) = lab.workers[1].dump_sync_conns(cursor, 7, now, &mut w1) {
        cursor = c;
    }
    assert_eq!(w1.len(), 50);
    let mut all: Vec<SyncRecord> = w0.iter().chain(&w1).copied().collect();
    let n = all.len();
    all.sort_by_key(|r| {
        (
            r.key.proto,
            r.key.flags,
            r.key.caddr,
            r.key.cport,
            r.key.vport,
        )
    });
    all.dedup_by_key(|r| r.key);
    assert_eq!(all.len(), n, "each once");
    for r in &all {
        let want = match (r.key.is_template(), r.key.vport, r.state) {
            (true, _, s) => (ConnState::None, 300, s),
            (false, 53, s) => (ConnState::Udp, 270, s),
            (false, 80, s) => (ConnState::Established, 870, s),
            (false, 443, s) => (ConnState::SynRecv, 30, s),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (r.state, r.timeout),
            (want.0, Duration::from_secs(want.1)),
            "{r:?}"
        );
        assert!([RS1, RS2].contains(r.dest.ip()));
        assert_eq!(r.dest.port(), r.key.vport);
    }
}

/// A second director: its own registry and shared table over the same configuration, as a
/// process on another machine.
fn peer(set: &ServiceSet, workers: usize) -> Lab {
    Lab::new(workers, set)
}

#[test]
fn installed_flows_keep_their_server_on_whichever_worker_sees_them() {
    let set = web_and_dns(SchedulerKind::Rr);
    let mut old = Lab::new(2, &set);
    let now = Instant::from_secs(10);
    let mut servers = Vec::new();
    for i in 0..40u32 {
        let w = i as usize % 2;
        let c = client(i);
        servers.push(encap_dst(old.send(
            w,
            now,
            &mut tcp_packet(c, 1000, VIP, 80, SYN, 0),
        )));
        let _ = old.send(w, now, &mut tcp_packet(c, 1000, VIP, 80, ACK, 0));
    }
    let recs: Vec<SyncRecord> = dump_all(&old, 0, 1000, now)
        .into_iter()
        .chain(dump_all(&old, 1, 1000, now))
        .collect();
    assert_eq!(recs.len(), 40);

    // rr on a fresh table would alternate from RS1: a flow only keeps its server by sync.
    let mut new = peer(&set, 3);
    let later = now + Duration::from_secs(5);
    let stats = new.workers[0].install_synced(later, &recs);
    assert_eq!(stats.applied, 40);
    assert_eq!(stats.total(), 40);
    assert_eq!(new.shared.synced.len(), 40, "waiting for a worker");
    assert_eq!(
        counts(&new, Protocol::Tcp, 80, RS1),
        counts(&old, Protocol::Tcp, 80, RS1)
    );
    assert_eq!(
        counts(&new, Protocol::Tcp, 80, RS2),
        counts(&old, Protocol::Tcp, 80, RS2)
    );
    for i in 0..40u32 {
        // Worker 2 saw none of them on the old director.
        let w = (i as usize * 7) % 3;
        let v = new.send(
            w,
            later,
            &mut tcp_packet(client(i), 1000, VIP, 80, ACK, 100),
        );
        assert_eq!(encap_dst(v), servers[i as usize], "flow {i}");
    }
    assert!(new.shared.synced.is_empty(), "all adopted");
    let adopted: u64 = new.workers.iter().map(|w| w.counters().sync_adopted).sum();
    assert_eq!(adopted, 40);
    assert_eq!(
        new.workers.iter().map(|w| w.conns().len()).sum::<usize>(),
        40
    );
    // i % 3 == 2: 13 of them on worker 2.
    assert_eq!(new.workers[2].conns().len(), 13);
    assert_eq!(
        new.workers
            .iter()
            .map(|w| w.counters().dropped(DropReason::NoConnection))
            .sum::<u64>(),
        0
    );
    // Counts did not move on adoption: 40 ESTABLISHED flows, counted once.
    let (a1, _) = counts(&new, Protocol::Tcp, 80, RS1);
    let (a2, _) = counts(&new, Protocol::Tcp, 80, RS2);
    assert_eq!(a1 + a2, 40);
}

/// A flow the master saw carry client data is confirmed on the backup too: once adopted,
/// a client that only ACKs (a download) keeps ESTABLISHED's 15 minutes, not the 60 s cap of
/// an unconfirmed flow, and a flood cannot evict it. A spoofed SYN+ACK pair stays unconfirmed.
#[test]
fn a_flow_confirmed_on_the_master_is_installed_confirmed() {
    let set = web_and_dns(SchedulerKind::Rr);
    let mut master = Lab::new(1, &set);
    master.shared.set_sync_emit(true);
    let t0 = Instant::from_secs(10);
    let (real, spoofed) = (client(1), client(2));
    for c in [real, spoofed] {
        let _ = master.send(0, t0, &mut tcp_packet(c, 1000, VIP, 80, SYN, 0));
        let _ = master.send(0, t0, &mut tcp_packet(c, 1000, VIP, 80, ACK, 0));
    }
    // The real client's request: no state change, but the flow is confirmed now.
    let _ = master.send(0, t0, &mut tcp_packet(real, 1000, VIP, 80, ACK, 300));
    let changes = take(&mut master);
    let last = |c: Ipv4Addr| {
        *changes
            .iter()
            .rev()
            .find(|r| r.key.caddr == c)
            .expect("a record")
    };
    assert_eq!(
        changes.len(),
        5,
        "SYN_RECV, ESTABLISHED twice, confirmed once"
    );
    let (r, s) = (last(real), last(spoofed));
    assert_eq!((r.state, r.confirmed), (ConnState::Established, true));
    assert_eq!(r.timeout, Duration::from_secs(900));
    assert_eq!((s.state, s.confirmed), (ConnState::Established, false));
    assert_eq!(s.timeout, Duration::from_secs(60));
    // The periodic refresh (a dump) carries the same.
    let dumped = dump_all(&master, 0, 100, t0);
    assert!(dumped.iter().any(|d| d.key.caddr == real && d.confirmed));
    assert!(dumped
        .iter()
        .any(|d| d.key.caddr == spoofed && !d.confirmed));

    for recs in [changes, dumped] {
        let mut backup = peer(&set, 2);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            backup.workers[0].install_synced(t1, &recs).applied,
            recs.len()
        );
        let k = |c| key(TCP, c, 1000, 80);
        assert!(backup.shared.synced.get(&k(real)).unwrap().is_confirmed());
        assert!(!backup
            .shared
            .synced
            .get(&k(spoofed))
            .unwrap()
            .is_confirmed());
        // Failover: pure ACKs reach worker 1, which adopts both flows.
        let t2 = t1 + Duration::from_secs(1);
        for c in [real, spoofed] {
            let _ = backup.send(1, t2, &mut tcp_packet(c, 1000, VIP, 80, ACK, 0));
        }
        let conns = backup.workers[1].conns();
        let (fr, fs) = (
            conns.get(&k(real)).unwrap(),
            conns.get(&k(spoofed)).unwrap(),
        );
        assert!(fr.is_confirmed());
        assert_eq!(fr.expires(), t2 + Duration::from_secs(900));
        assert!(!fs.is_confirmed());
        assert_eq!(fs.expires(), t2 + Duration::from_secs(60));
        // A later record (an older sender's, without the flag) does not unconfirm the flow
        // this worker holds.
        let mut old = r;
        old.confirmed = false;
        let _ = backup.workers[1].install_synced(t2, &[old]);
        assert!(backup.workers[1]
            .conns()
            .get(&k(real))
            .unwrap()
            .is_confirmed());
    }
}

#[test]
fn install_refuses_what_this_director_cannot_have() {
    let mut lab = Lab::new(1, web_and_dns(SchedulerKind::Rr));
    let now = Instant::from_secs(1);
    let c = client(1);
    let est = ConnState::Established;
    let recs = [
        // Applied.
        rec(key(TCP, c, 1, 80), RS1, 80, est, 900),
        rec(key(UDP, c, 1, 53), RS2, 53, ConnState::Udp, 300),
        // No service on that port, that VIP, that protocol.
        rec(key(TCP, c, 2, 81), RS1, 81, est, 900),
        rec(
            ConnKey::new(TCP, c, 2, Ipv4Addr::new(10, 100, 0, 1), 80),
            RS1,
            80,
            est,
            900,
        ),
        rec(key(UDP, c, 2, 80), RS1, 80, ConnState::Udp, 900),
        // No such server, or not on that port.
        rec(key(TCP, c, 3, 80), RS3, 80, est, 900),
        rec(key(TCP, c, 3, 80), RS1, 8080, est, 900),
        // Not TCP or UDP; a UDP state for TCP; a TCP state for UDP.
        rec(key(47, c, 4, 80), RS1, 80, est, 900),
        rec(key(TCP, c, 4, 80), RS1, 80, ConnState::Udp, 900),
        rec(key(UDP, c, 4, 53), RS1, 53, est, 900),
    ];
    let stats = lab.workers[0].install_synced(now, &recs);
    assert_eq!(
        stats,
        InstallStats {
            applied: 2,
            no_service: 3,
            no_dest: 2,
            full: 0,
            nat: 0,
            invalid: 3,
        }
    );
    assert_eq!(stats.total(), recs.len());
    assert_eq!(lab.shared.synced.len(), 2);
    let mut sum = InstallStats::default();
    sum.add(&stats);
    sum.add(&stats);
    assert_eq!(sum.no_service, 6);
}

#[test]
fn repeated_and_changed_records_keep_the_counts_right() {
    let set = web_and_dns(SchedulerKind::Rr);
    let mut lab = Lab::new(2, &set);
    let now = Instant::from_secs(1);
    let k = key(TCP, client(1), 1000, 80);
    let est = rec(k, RS1, 80, ConnState::Established, 900);
    // Installed on every worker, twice: one flow, counted once.
    for w in 0..2 {
        lab.workers[w].install_synced(now, &[est]);
        lab.workers[w].install_synced(now, &[est]);
    }
    assert_eq!(lab.shared.synced.len(), 1);
    assert_eq!(counts(&lab, Protocol::Tcp, 80, RS1), (1, 0));
    // ESTABLISHED -> FIN_WAIT: active -> inactive.
    let fin = rec(k, RS1, 80, ConnState::FinWait, 120);
    lab.workers[1].install_synced(now, &[fin]);
    assert_eq!(counts(&lab, Protocol::Tcp, 80, RS1), (0, 1));
    // The flow moved to another server on the master: the counts follow.
    let moved = rec(k, RS2, 80, ConnState::Established, 900);
    lab.workers[0].install_synced(now, &[moved]);
    assert_eq!(counts(&lab, Protocol::Tcp, 80, RS1), (0, 0));
    assert_eq!(counts(&lab, Protocol::Tcp, 80, RS2), (1, 0));
    // A worker adopts it at its first packet; a later record updates it in place.
    let v = lab.send(1, now, &mut tcp_packet(client(1), 1000, VIP, 80, ACK, 1));
    assert_eq!(encap_dst(v), RS2);
    assert!(lab.shared.synced.is_empty());
    lab.workers[1].install_synced(now, &[rec(k, RS2, 80, ConnState::TimeWait, 120)]);
    assert!(lab.shared.synced.is_empty(), "updated in place");
    assert_eq!(
        lab.workers[1].conns().get(&k).unwrap().state,
        ConnState::TimeWait
    );
    assert_eq!(counts(&lab, Protocol::Tcp, 80, RS2), (0, 1));
    // It expires in the worker's sweep: the count goes back.
    let end = now + Duration::from_secs(121);
    for w in &mut lab.workers {
        w.handle_timeout(end);
    }
    lab.shared.handle_timeout(end);
    assert_eq!(lab.workers[1].conns().len(), 0);
    assert_eq!(counts(&lab, Protocol::Tcp, 80, RS2), (0, 0));
}

#[test]
fn a_synced_flow_no_worker_took_expires_and_gives_its_count_back() {
    let mut lab = Lab::new(1, web_and_dns(SchedulerKind::Rr));
    let now = Instant::from_secs(1);
    let recs = [
        rec(
            key(TCP, client(1), 1, 80),
            RS1,
            80,
            ConnState::Established,
            10,
        ),
        rec(
            key(TCP, client(2), 1, 80),
            RS1,
            80,
            ConnState::Established,
            100,
        ),
    ];
    lab.workers[0].install_synced(now, &recs);
    assert_eq!(counts(&lab, Protocol::Tcp, 80, RS1), (2, 0));
    lab.shared.handle_timeout(now + Duration::from_secs(10));
    assert_eq!(lab.shared.synced.len(), 1);
    assert_eq!(counts(&lab, Protocol::Tcp, 80, RS1), (1, 0));
    // Expired but not yet swept: its packet does not revive it (no_connection).
    let late = now + Duration::from_secs(100);
    let v = lab.send(0, late, &mut tcp_packet(client(2), 1, VIP, 80, ACK, 1));
    assert_eq!(v, Verdict::Drop(DropReason::NoConnection));
    assert!(lab.shared.synced.is_empty());
    assert_eq!(counts(&lab, Protocol::Tcp, 80, RS1), (0, 0));
    assert_eq!(lab.workers[0].counters().sync_adopted, 0);
}

#[test]
fn synced_templates_bind_new_flows_and_synced_flows_hold_them() {
    let set = persistent(60);
    let mut lab = Lab::new(1, &set);
    let now = Instant::from_secs(1);
    let c = client(5);
    let tkey = ConnKey {
        flags: KEY_TEMPLATE,
        ..key(TCP, c, 0, 443)
    };
    // rr would give RS1 first: the template sends the client to RS2.
    let stats = lab.workers[0].install_synced(now, &[rec(tkey, RS2, 443, ConnState::None, 60)]);
    assert_eq!(stats.applied, 1);
    let v = lab.send(0, now, &mut tcp_packet(c, 7000, VIP, 443, SYN, 0));
    assert_eq!(encap_dst(v), RS2);
    // A synced flow of another client creates and holds its template.
    let c2 = client(6);
    let flow = rec(
        key(TCP, c2, 7000, 443),
        RS2,
        443,
        ConnState::Established,
        900,
    );
    lab.workers[0].install_synced(now, &[flow]);
    let t2 = ConnKey {
        flags: KEY_TEMPLATE,
        ..key(TCP, c2, 0, 443)
    };
    let held = lab.shared.templates.snapshot(now);
    let entry = held
        .iter()
        .find(|t| t.0 == t2)
        .expect("template of the synced flow");
    assert_eq!(entry.3, 1, "controls the synced flow");
    // Long after the persistence timeout the flow still holds it: the client's next flow
    // goes where its synced one went.
    let later = now + Duration::from_secs(600);
    lab.shared.handle_timeout(later);
    let v = lab.send(0, later, &mut tcp_packet(c2, 7001, VIP, 443, SYN, 0));
    assert_eq!(encap_dst(v), RS2);
}

#[test]
fn tcp_mid_flow_packets_are_dropped_without_sloppy_tcp() {
    let mut lab = Lab::new(1, web_and_dns(SchedulerKind::Rr));
    let now = Instant::from_secs(1);
    for flags in [ACK, FIN_ACK, RST, 0] {
        let v = lab.send(0, now, &mut tcp_packet(client(1), 1000, VIP, 80, flags, 10));
        assert_eq!(v, Verdict::Drop(DropReason::NoConnection), "{flags:#x}");
    }
    assert_eq!(lab.workers[0].conns().len(), 0);
}

#[test]
fn sloppy_tcp_picks_up_mid_flow_packets_as_ipvs_does() {
    let mut lab = Lab::with_config(1, web_and_dns(SchedulerKind::Rr), sloppy());
    let now = Instant::from_secs(1);
    let state = |lab: &Lab, cport| {
        lab.workers[0]
            .conns()
            .get(&key(TCP, client(1), cport, 80))
            .map(|c| c.state)
    };
    // An ACK: scheduled, ESTABLISHED (NONE + ACK).
    let rs = encap_dst(lab.send(0, now, &mut tcp_packet(client(1), 1000, VIP, 80, ACK, 10)));
    assert_eq!(state(&lab, 1000), Some(ConnState::Established));
    let v = lab.send(0, now, &mut tcp_packet(client(1), 1000, VIP, 80, ACK, 10));
    assert_eq!(encap_dst(v), rs, "sticks");
    // A FIN: CLOSE (NONE + FIN), as IPVS.
    let _ = lab.send(
        0,
        now,
        &mut tcp_packet(client(1), 1001, VIP, 80, FIN_ACK, 0),
    );
    assert_eq!(state(&lab, 1001), Some(ConnState::Close));
    // A RST never starts a flow, nor a SYN with RST.
    for (cport, flags) in [(1002, RST), (1003, RST | ACK), (1004, SYN | RST)] {
        let v = lab.send(0, now, &mut tcp_packet(client(1), cport, VIP, 80, flags, 0));
        assert_eq!(v, Verdict::Drop(DropReason::NoConnection), "{flags:#x}");
        assert_eq!(state(&lab, cport), None);
    }
    let c = lab.workers[0].counters();
    assert_eq!((c.sloppy_created, c.conns_created), (2, 2));
    // A SYN is still a SYN.
    let _ = lab.send(0, now, &mut tcp_packet(client(1), 1005, VIP, 80, SYN, 0));
    assert_eq!(state(&lab, 1005), Some(ConnState::SynRecv));
    assert_eq!(lab.workers[0].counters().sloppy_created, 2);
}

/// The soak's resets at a master restart: the restarted director, BACKUP with an empty table
/// while its bulk resync waits for the peer to take over, still got the client's packets (the
/// router's ARP entry names its MAC) and sloppy_tcp rescheduled every established flow, half
/// of them to a server that reset them. Until the table is synced, sloppy_tcp picks up
/// nothing: the packets are dropped (the client retransmits), synced flows still go to their
/// servers and SYNs still start flows.
#[test]
fn sloppy_tcp_waits_until_the_table_is_synced() {
    let mut lab = Lab::with_config(2, web_and_dns(SchedulerKind::Rr), sloppy());
    let now = Instant::from_secs(1);
    lab.shared.set_table_synced(false);
    for (cport, flags) in [(1000, ACK), (1001, FIN_ACK)] {
        let v = lab.send(
            0,
            now,
            &mut tcp_packet(client(1), cport, VIP, 80, flags, 10),
        );
        assert_eq!(v, Verdict::Drop(DropReason::NoConnection), "{flags:#x}");
    }
    assert_eq!(lab.workers[0].conns().len(), 0);
    assert_eq!(lab.workers[0].counters().sloppy_created, 0);
    // A flow the bulk resync brought is adopted and keeps its server (rr would pick RS1).
    let stats = lab.workers[0].install_synced(
        now,
        &[rec(
            key(TCP, client(2), 2000, 80),
            RS2,
            80,
            ConnState::Established,
            900,
        )],
    );
    assert_eq!(stats.applied, 1);
    let v = lab.send(1, now, &mut tcp_packet(client(2), 2000, VIP, 80, ACK, 10));
    assert_eq!(encap_dst(v), RS2);
    // A SYN is a new connection: scheduled as ever.
    let v = lab.send(0, now, &mut tcp_packet(client(3), 3000, VIP, 80, SYN, 0));
    assert_eq!(encap_dst(v), RS1);
    // Synced (or the deadline passed, or master): mid-flow packets are picked up again.
    lab.shared.set_table_synced(true);
    let v = lab.send(0, now, &mut tcp_packet(client(1), 1000, VIP, 80, ACK, 10));
    assert_eq!(encap_dst(v), RS2);
    assert_eq!(lab.workers[0].counters().sloppy_created, 1);
}

/// The soak's resets when a director stops: its workers stop one by one and the kernel moves
/// a closed TUN queue's flows to the queues left; the worker that got a flow it did not know
/// rescheduled it (sloppy_tcp), half of them to a server that reset them. Stopping, a worker
/// starts no flow (SYN, sloppy pickup, UDP) and goes on with the flows it has.
#[test]
fn a_stopping_director_starts_no_flow_and_keeps_its_own() {
    let mut lab = Lab::with_config(2, web_and_dns(SchedulerKind::Rr), sloppy());
    let now = Instant::from_secs(1);
    let v = lab.send(0, now, &mut tcp_packet(client(1), 1000, VIP, 80, SYN, 0));
    assert_eq!(encap_dst(v), RS1);
    lab.shared.set_stopping();
    // The flow worker 0 has goes on.
    let v = lab.send(0, now, &mut tcp_packet(client(1), 1000, VIP, 80, ACK, 10));
    assert_eq!(encap_dst(v), RS1);
    // On worker 1 (its queue took the flow over) it is not picked up, nor is anything new.
    let mut dns = udp_packet(client(3), 3000, VIP, 53, 8);
    for (worker, pkt) in [
        (1, tcp_packet(client(1), 1000, VIP, 80, ACK, 10)),
        (0, tcp_packet(client(2), 2000, VIP, 80, SYN, 0)),
        (0, tcp_packet(client(2), 2001, VIP, 80, ACK, 10)),
        (0, std::mem::take(&mut dns)),
    ] {
        let mut pkt = pkt;
        let v = lab.send(worker, now, &mut pkt);
        assert_eq!(v, Verdict::Drop(DropReason::DirectorStopping), "{worker}");
    }
    assert_eq!(lab.workers[1].conns().len(), 0);
    assert_eq!(lab.workers[0].conns().len(), 1);
    assert_eq!(lab.workers[1].counters().sloppy_created, 0);
}

/// With connection sync, a BACKUP that gets clients' packets (their ARP entries name it for a
/// moment after a preemption or a restart) starts no flow: no other director would know it.
/// Synced flows go on; as master it starts flows again.
#[test]
fn with_sync_only_the_master_starts_flows() {
    let mut lab = Lab::with_config(1, web_and_dns(SchedulerKind::Rr), sloppy());
    let now = Instant::from_secs(1);
    lab.shared.set_sync_configured();
    let v = lab.send(0, now, &mut tcp_packet(client(1), 1000, VIP, 80, SYN, 0));
    assert_eq!(v, Verdict::Drop(DropReason::NotMaster));
    let stats = lab.workers[0].install_synced(
        now,
        &[rec(
            key(TCP, client(2), 2000, 80),
            RS2,
            80,
            ConnState::Established,
            900,
        )],
    );
    assert_eq!(stats.applied, 1);
    let v = lab.send(0, now, &mut tcp_packet(client(2), 2000, VIP, 80, ACK, 10));
    assert_eq!(encap_dst(v), RS2);
    lab.shared.set_sync_emit(true);
    let v = lab.send(0, now, &mut tcp_packet(client(1), 1000, VIP, 80, SYN, 0));
    assert_eq!(encap_dst(v), RS1);
}

#[test]
fn sloppy_tcp_reschedules_a_flow_whose_server_left() {
    let set = ServiceSet {
        services: vec![service(
            Protocol::Tcp,
            80,
            SchedulerKind::Rr,
            vec![ipip(RS1), ipip(RS2)],
        )],
    };
    let mut lab = Lab::with_config(1, &set, sloppy());
    let now = Instant::from_secs(1);
    let v = lab.send(0, now, &mut tcp_packet(client(1), 1000, VIP, 80, SYN, 0));
    assert_eq!(encap_dst(v), RS1);
    let mut down = set.clone();
    down.services[0].dests.remove(0);
    lab.publish(&down);
    // Without sloppy_tcp this is `destination_gone`; with it the flow goes on elsewhere.
    let v = lab.send(0, now, &mut tcp_packet(client(1), 1000, VIP, 80, ACK, 1));
    assert_eq!(encap_dst(v), RS2);
    let conn = *lab.workers[0]
        .conns()
        .get(&key(TCP, client(1), 1000, 80))
        .unwrap();
    assert_eq!(conn.state, ConnState::Established);
    assert_eq!(counts(&lab, Protocol::Tcp, 80, RS2), (1, 0));
    // A RST of a gone server's flow is dropped and starts nothing.
    let mut lab = Lab::with_config(1, &set, sloppy());
    let v = lab.send(0, now, &mut tcp_packet(client(2), 2000, VIP, 80, SYN, 0));
    assert_eq!(encap_dst(v), RS1);
    lab.publish(&down);
    let v = lab.send(0, now, &mut tcp_packet(client(2), 2000, VIP, 80, RST, 0));
    assert_eq!(v, Verdict::Drop(DropReason::DestinationGone));
    assert_eq!(lab.workers[0].conns().len(), 0);
}

/// The servers `mh` gives 2000 flows from 1000 clients on a director of its own.
fn mh_picks(workers: usize, config: DirectorConfig) -> Vec<Ipv4Addr> {
    let set = ServiceSet {
        services: vec![service(
            Protocol::Tcp,
            80,
            SchedulerKind::Mh,
            vec![ipip(RS1), ipip(RS2), ipip(RS3)],
        )],
    };
    let mut lab = Lab::with_config(workers, &set, config);
    let now = Instant::from_secs(1);
    (0..2000u32)
        .map(|i| {
            let mut p = tcp_packet(client(i % 1000), 1000 + i as u16, VIP, 80, SYN, 0);
            encap_dst(lab.send(i as usize % workers, now, &mut p))
        })
        .collect()
}

/// mh hashes with the kernel's fixed keys (see `sched/maglev.rs` and its golden vectors),
/// never a per-process seed: two directors built apart (own registry, own table seed, other
/// worker counts) send every flow to the same server.
#[test]
fn mh_gives_every_director_the_same_server() {
    let a = mh_picks(1, DirectorConfig::default());
    let b = mh_picks(
        3,
        DirectorConfig {
            seed: crate::director::conn::random_seed(),
            ..sloppy()
        },
    );
    assert_eq!(a, b);
    for s in [RS1, RS2, RS3] {
        let n = a.iter().filter(|&&d| d == s).count();
        assert!((400..1000).contains(&n), "{s}: {n}");
    }
}

/// The unit version of the takeover without sync: flows established through one director
/// continue through a fresh one with mh and sloppy_tcp, each on its server.
#[test]
fn mh_with_sloppy_tcp_continues_flows_a_fresh_director_never_saw() {
    let set = ServiceSet {
        services: vec![service(
            Protocol::Tcp,
            80,
            SchedulerKind::Mh,
            vec![ipip(RS1), ipip(RS2), ipip(RS3)],
        )],
    };
    let mut old = Lab::new(2, &set);
    let now = Instant::from_secs(1);
    let servers: Vec<Ipv4Addr> = (0..300u32)
        .map(|i| {
            let c = client(i);
            let rs = encap_dst(old.send(0, now, &mut tcp_packet(c, 5000, VIP, 80, SYN, 0)));
            let _ = old.send(0, now, &mut tcp_packet(c, 5000, VIP, 80, ACK, 0));
            rs
        })
        .collect();
    let mut fresh = Lab::with_config(2, &set, sloppy());
    for (i, rs) in servers.iter().enumerate() {
        let mut p = tcp_packet(client(i as u32), 5000, VIP, 80, ACK, 100);
        assert_eq!(encap_dst(fresh.send(i % 2, now, &mut p)), *rs, "flow {i}");
    }
    let created: u64 = fresh
        .workers
        .iter()
        .map(|w| w.counters().sloppy_created)
        .sum();
    assert_eq!(created, 300);
    let (a1, _) = counts(&fresh, Protocol::Tcp, 80, RS1);
    let (a2, _) = counts(&fresh, Protocol::Tcp, 80, RS2);
    let (a3, _) = counts(&fresh, Protocol::Tcp, 80, RS3);
    assert_eq!(a1 + a2 + a3, 300, "picked up as ESTABLISHED: active");
}
