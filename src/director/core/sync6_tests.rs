//! Connection sync of IPv6 flows and templates in the core ([`super::sync6`]): what a master
//! queues and dumps, and a backup that installs them (its own registry and table, as another
//! process) and carries the flows on once promoted, with the same confirmed-flow and pickup
//! semantics as IPv4's (`sync_tests.rs`).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::director::conn::{ConnKey6, ConnState, SyncRecord6, Timeouts, KEY_TEMPLATE};
use crate::director::testkit::Lab;
use crate::director::{DirectorConfig, DropReason, Registry, Verdict};
use crate::encap::TunnelType;
use crate::model::{
    DestConfig, Forward, Netmask, Persistence, Protocol, SchedulerKind, ServiceConfig, ServiceKey,
    ServiceSet,
};
use crate::time::{Duration, Instant};
use crate::wire::testing::tcp6_packet;
use crate::wire::Ipv6Packet;

const VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
const RS1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 0x12);
const RS2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 0x13);
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const TCP: u8 = 6;

fn client(n: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 1, n, 0, 0, 0, 7)
}

/// TCP [VIP]:80, rr over RS1 and RS2 (ip6ip6), persistent per /64 when `persistent`.
fn set(persistent: bool) -> ServiceSet {
    let dest = |a: Ipv6Addr| DestConfig {
        addr: IpAddr::V6(a),
        port: 80,
        weight: 1,
        forward: Forward::tunnel(TunnelType::Ipip),
        u_threshold: 0,
        l_threshold: 0,
    };
    ServiceSet {
        services: vec![ServiceConfig {
            key: ServiceKey {
                vip: IpAddr::V6(VIP),
                port: 80,
                proto: Protocol::Tcp,
            },
            scheduler: SchedulerKind::Rr,
            persistence: persistent.then_some(Persistence {
                timeout: 300,
                netmask: Netmask::V6(64),
            }),
            mss_clamp: None,
            dests: vec![dest(RS1), dest(RS2)],
            policy: Default::default(),
        }],
    }
}

fn lab(workers: usize, set: &ServiceSet, config: DirectorConfig) -> Lab {
    let mut registry = Registry::new();
    let snap = registry.build(set, &Timeouts::default()).unwrap();
    Lab::from_snapshot(workers, registry, snap, config)
}

fn sloppy() -> DirectorConfig {
    DirectorConfig {
        sloppy_tcp: true,
        ..DirectorConfig::default()
    }
}

/// The real server an encapsulated verdict goes to.
fn to(v: Verdict) -> Ipv6Addr {
    let Verdict::Encap(e) = v else {
        panic!("not encapsulated: {v:?}");
    };
    Ipv6Packet::new_unchecked(e.header()).dst_addr()
}

fn key(c: Ipv6Addr, cport: u16) -> ConnKey6 {
    ConnKey6::new(TCP, c, cport, VIP, 80)
}

fn take6(lab: &mut Lab) -> Vec<SyncRecord6> {
    let mut out = Vec::new();
    for w in &mut lab.workers {
        w.take_sync6(&mut out);
    }
    out
}

fn dump6(lab: &Lab, w: usize, limit: usize, now: Instant) -> Vec<SyncRecord6> {
    let mut out = Vec::new();
    let mut cursor = 0;
    while let Some(next) = lab.workers[w].dump_sync6(cursor, limit, now, &mut out) {
        cursor = next;
    }
    out
}

#[test]
fn ipv6_flows_and_templates_are_queued_while_emitting_and_dumped() {
    let mut master = lab(1, &set(true), DirectorConfig::default());
    let now = Instant::from_secs(1);
    let c = client(1);
    // Off: nothing is queued.
    let _ = master.send(0, now, &mut tcp6_packet(c, 999, VIP, 80, SYN, 0));
    assert!(take6(&mut master).is_empty());
    master.shared.set_sync_emit(true);
    let rs = to(master.send(0, now, &mut tcp6_packet(c, 1000, VIP, 80, SYN, 0)));
    let _ = master.send(0, now, &mut tcp6_packet(c, 1000, VIP, 80, ACK, 0));
    let _ = master.send(0, now, &mut tcp6_packet(c, 1000, VIP, 80, ACK, 100));
    let recs = take6(&mut master);
    let mut ipv4 = Vec::new();
    master.workers[0].take_sync(&mut ipv4);
    assert!(ipv4.is_empty(), "IPv6 flows are not in the IPv4 queue");
    let dest = SocketAddr::new(IpAddr::V6(rs), 80);
    let flow: Vec<_> = recs.iter().filter(|r| !r.key.is_template()).collect();
    let states: Vec<_> = flow.iter().map(|r| (r.state, r.confirmed)).collect();
    assert_eq!(
        states,
        [
            (ConnState::SynRecv, false),
            (ConnState::Established, false),
            (ConnState::Established, true),
        ]
    );
    assert!(flow.iter().all(|r| r.key == key(c, 1000) && r.dest == dest));
    let tmpl: Vec<_> = recs.iter().filter(|r| r.key.is_template()).collect();
    assert_eq!(tmpl.len(), 1);
    assert_eq!(tmpl[0].key.flags, KEY_TEMPLATE);
    assert_eq!(tmpl[0].key.cport, 0);
    assert_eq!(
        tmpl[0].key.caddr,
        Ipv6Addr::new(0x2001, 0xdb8, 1, 1, 0, 0, 0, 0),
        "the client's /64"
    );
    assert_eq!(tmpl[0].timeout, Duration::from_secs(300));
    assert_eq!(tmpl[0].dest, dest);
    // The refresh (a dump in pieces of one) carries both flows and the template once.
    let dumped = dump6(&master, 0, 1, now);
    assert_eq!(dumped.len(), 3, "{dumped:?}");
    assert!(dumped
        .iter()
        .any(|r| r.key == key(c, 1000) && r.confirmed && r.state == ConnState::Established));
    assert!(dumped.iter().any(|r| r.key == tmpl[0].key));
    let mut ipv4 = Vec::new();
    let _ = master.workers[0].dump_sync(0, 100, now, &mut ipv4);
    assert!(ipv4.is_empty(), "the IPv4 dump has no IPv6 flow");
}

#[test]
fn an_ipv6_flow_and_template_synced_to_a_backup_are_picked_up_after_promotion() {
    let set = set(true);
    let mut master = lab(1, &set, sloppy());
    master.shared.set_sync_emit(true);
    let t0 = Instant::from_secs(10);
    let (real, spoofed) = (client(1), client(2));
    let mut servers = Vec::new();
    for c in [real, spoofed] {
        servers.push(to(master.send(
            0,
            t0,
            &mut tcp6_packet(c, 1000, VIP, 80, SYN, 0),
        )));
        let _ = master.send(0, t0, &mut tcp6_packet(c, 1000, VIP, 80, ACK, 0));
    }
    let _ = master.send(0, t0, &mut tcp6_packet(real, 1000, VIP, 80, ACK, 300));
    assert_ne!(servers[0], servers[1], "rr spread them");
    let changes = take6(&mut master);
    let dumped = dump6(&master, 0, 100, t0);

    for recs in [changes, dumped] {
        // The backup: sync configured, not master, its bulk resync not done.
        let mut backup = lab(2, &set, sloppy());
        backup.shared.set_sync_configured();
        backup.shared.set_table_synced(false);
        let t1 = t0 + Duration::from_secs(1);
        let stats = backup.workers[0].install_synced6(t1, &recs);
        assert_eq!(stats.applied, recs.len(), "{stats:?}");
        assert_eq!(backup.shared.synced6.len(), 2);
        assert!(backup
            .shared
            .synced6
            .get(&key(real, 1000))
            .unwrap()
            .is_confirmed());
        assert!(!backup
            .shared
            .synced6
            .get(&key(spoofed, 1000))
            .unwrap()
            .is_confirmed());
        assert_eq!(backup.shared.templates6.len(), 2, "both clients' /64");
        // Not master: an unknown mid-flow packet and a SYN start nothing.
        for flags in [ACK, SYN] {
            let v = backup.send(1, t1, &mut tcp6_packet(client(9), 5, VIP, 80, flags, 0));
            assert_eq!(v, Verdict::Drop(DropReason::NotMaster));
        }

        // Promotion: VRRP made it master and the sync daemon turned emitting on; pickup
        // stays held a while (`SessionConfig::pickup_hold`).
        backup.shared.set_sync_emit(true);
        let t2 = t1 + Duration::from_secs(1);
        let v = backup.send(1, t2, &mut tcp6_packet(client(9), 5, VIP, 80, ACK, 10));
        assert_eq!(v, Verdict::Drop(DropReason::NoConnection), "pickup held");
        // The clients' next segments reach worker 1, which adopts the flows with their
        // servers and their confirmed state.
        for (c, rs) in [real, spoofed].into_iter().zip(&servers) {
            let v = backup.send(1, t2, &mut tcp6_packet(c, 1000, VIP, 80, ACK, 0));
            assert_eq!(to(v), *rs);
        }
        assert!(backup.shared.synced6.is_empty());
        let conns = backup.workers[1].conns6();
        let (fr, fs) = (
            conns.get(&key(real, 1000)).unwrap(),
            conns.get(&key(spoofed, 1000)).unwrap(),
        );
        assert!(fr.is_confirmed());
        assert_eq!(fr.expires(), t2 + Duration::from_secs(900));
        assert!(!fs.is_confirmed());
        assert_eq!(fs.expires(), t2 + Duration::from_secs(60));
        assert_eq!(backup.workers[1].counters().sync_adopted, 2);
        // A new connection of the real client follows the synced template (rr alone would
        // start at RS1 for both ports).
        for port in [2000, 2001] {
            let v = backup.send(0, t2, &mut tcp6_packet(real, port, VIP, 80, SYN, 0));
            assert_eq!(to(v), servers[0]);
        }
        // The pickup hold over: a mid-flow packet of an unknown flow is picked up.
        backup.shared.set_table_synced(true);
        let v = backup.send(0, t2, &mut tcp6_packet(client(9), 5, VIP, 80, ACK, 10));
        assert!(matches!(v, Verdict::Encap(_)), "{v:?}");
        assert_eq!(backup.workers[0].counters().sloppy_created, 1);
        // A later record without the flag (an older sender's refresh) does not unconfirm
        // the flow the worker holds.
        let mut old = *recs
            .iter()
            .rev()
            .find(|r| r.key == key(real, 1000))
            .unwrap();
        old.confirmed = false;
        let _ = backup.workers[1].install_synced6(t2, &[old]);
        assert!(backup.workers[1]
            .conns6()
            .get(&key(real, 1000))
            .unwrap()
            .is_confirmed());
    }
}

#[test]
fn install6_refuses_what_this_director_cannot_have_and_expires_what_no_worker_took() {
    let mut backup = lab(1, &set(false), DirectorConfig::default());
    let now = Instant::from_secs(1);
    let good = SyncRecord6 {
        key: key(client(1), 1000),
        dest: SocketAddr::new(IpAddr::V6(RS1), 80),
        state: ConnState::Established,
        timeout: Duration::from_secs(5),
        confirmed: false,
    };
    let bad = [
        SyncRecord6 {
            key: ConnKey6 {
                vport: 81,
                ..good.key
            },
            ..good
        },
        SyncRecord6 {
            dest: SocketAddr::new(IpAddr::V6(client(5)), 80),
            ..good
        },
        SyncRecord6 {
            state: ConnState::Udp,
            ..good
        },
        SyncRecord6 {
            key: ConnKey6 {
                proto: 58,
                ..good.key
            },
            ..good
        },
    ];
    let stats = backup.workers[0].install_synced6(now, &bad);
    assert_eq!(
        (
            stats.no_service,
            stats.no_dest,
            stats.invalid,
            stats.applied
        ),
        (1, 1, 2, 0)
    );
    assert_eq!(backup.workers[0].install_synced6(now, &[good]).applied, 1);
    let snap = backup.shared.snapshot();
    let d = snap
        .find_dest(Protocol::Tcp, VIP, 80, SocketAddr::new(IpAddr::V6(RS1), 80))
        .unwrap();
    assert_eq!(d.state.active(), 1, "counted once at install");
    // Nobody took it: it expires with its timeout and gives its count back.
    backup.shared.handle_timeout(now + Duration::from_secs(6));
    assert!(backup.shared.synced6.is_empty());
    assert_eq!(d.state.active(), 0);
}
