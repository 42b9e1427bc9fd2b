//! Two sync threads on loopback sockets with fake cores: bulk resync, changes, role swap,
//! refusals, stop.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use super::*;
use crate::director::conn::{ConnKey, ConnState};

#[derive(Default)]
struct FakeCore {
    emit: bool,
    table: Vec<SyncRecord>,
    changes: Vec<SyncRecord>,
    installed: HashMap<ConnKey, SyncRecord>,
    /// What `set_table_synced` was told, in order.
    synced: Vec<bool>,
}

impl FakeCore {
    fn with(table: Vec<SyncRecord>) -> Arc<Mutex<FakeCore>> {
        Arc::new(Mutex::new(FakeCore {
            table,
            ..FakeCore::default()
        }))
    }

    /// A new flow on the packet path: recorded only while emit is on.
    fn new_flow(&mut self, r: SyncRecord) {
        self.table.push(r);
        if self.emit {
            self.changes.push(r);
        }
    }
}

impl SyncCore for FakeCore {
    fn set_sync_emit(&mut self, on: bool) {
        self.emit = on;
    }
    fn take_sync(&mut self, out: &mut Vec<SyncRecord>) {
        out.append(&mut self.changes);
    }
    fn set_table_synced(&mut self, synced: bool) {
        self.synced.push(synced);
    }
    fn dump_sync(
        &self,
        cursor: usize,
        limit: usize,
        _now: Instant,
        _shared: bool,
        out: &mut Vec<SyncRecord>,
    ) -> Option<usize> {
        let end = (cursor + limit).min(self.table.len());
        out.extend_from_slice(self.table.get(cursor..end).unwrap_or(&[]));
        (end < self.table.len()).then_some(end)
    }
    fn install_synced(&mut self, _now: Instant, records: &[SyncRecord]) -> Installed {
        let mut n = Installed::default();
        for r in records {
            if r.key.vport == 9999 {
                n.no_service += 1;
                continue;
            }
            self.installed.insert(r.key, *r);
            n.applied += 1;
        }
        n
    }
}

fn rec(i: u32) -> SyncRecord {
    SyncRecord {
        key: ConnKey::new(
            6,
            Ipv4Addr::from(0x0a00_0000 + i),
            1000 + i as u16,
            Ipv4Addr::new(10, 9, 9, 9),
            80,
        ),
        dest: SocketAddrV4::new(Ipv4Addr::new(172, 16, 0, 1), 80),
        state: ConnState::Established,
        timeout: Duration::from_secs(900),
        confirmed: false,
    }
}

fn loopback() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_nonblocking(true).unwrap();
    crate::sys::mcast::force_recv_buffer(std::os::fd::AsRawFd::as_raw_fd(&s), 8 << 20).unwrap();
    s
}

fn addr(s: &UdpSocket) -> SocketAddrV4 {
    match s.local_addr().unwrap() {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!(),
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) -> StdDuration {
    let start = StdInstant::now();
    while !cond() {
        assert!(
            start.elapsed() < StdDuration::from_secs(5),
            "timed out: {what}"
        );
        std::thread::sleep(StdDuration::from_millis(5));
    }
    start.elapsed()
}

struct Node {
    cores: Vec<Arc<Mutex<FakeCore>>>,
    link: Arc<HaLink>,
    handle: SyncHandle,
}

fn node(
    sock: UdpSocket,
    peer: SocketAddrV4,
    cores: Vec<Arc<Mutex<FakeCore>>>,
    master: bool,
    sender: u32,
) -> Node {
    let link = Arc::new(HaLink::default());
    link.set_sync_master(master);
    let ep = Endpoint {
        socket: sock,
        dests: vec![peer],
    };
    let cfg = SessionConfig::new(0, 1472, Some(Key::new(b"k")), sender);
    let handle = spawn("VI_1", ep, cfg, cores.clone(), link.clone(), Clock::new()).unwrap();
    Node {
        cores,
        link,
        handle,
    }
}

fn installed(n: &Node, core: usize) -> usize {
    n.cores[core].lock().unwrap().installed.len()
}

#[test]
fn a_backup_resyncs_from_the_master_then_follows_its_changes_and_roles_swap() {
    let (sa, sb) = (loopback(), loopback());
    let (aa, ab) = (addr(&sa), addr(&sb));
    // The master's two cores; flow 5 sits in both (synced earlier into every core).
    let mut t0: Vec<_> = (0..3000).map(rec).collect();
    t0.push(rec(9000));
    let t1: Vec<_> = (3000..6000).chain([5, 9000]).map(rec).collect();
    let mut skipped = rec(7);
    skipped.key.vport = 9999;
    t0.push(skipped);
    let a = node(
        sa,
        ab,
        vec![FakeCore::with(t0), FakeCore::with(t1)],
        true,
        1,
    );
    std::thread::sleep(StdDuration::from_millis(100));
    let b = node(
        sb,
        aa,
        vec![FakeCore::with(vec![]), FakeCore::with(vec![])],
        false,
        2,
    );
    assert!(!b.link.is_sync_ready());
    let took = wait_for("backup ready", || b.link.is_sync_ready());
    assert!(
        took < StdDuration::from_millis(1500),
        "ready after {took:?}: the BulkEnd, not the deadline"
    );
    for core in 0..2 {
        assert_eq!(installed(&b, core), 6001, "core {core} has the whole table");
    }
    let s = b.handle.stats().snapshot();
    assert_eq!(
        s.records_received, 6002,
        "flows in both master cores sent once"
    );
    assert_eq!(s.records_applied, 6001);
    assert_eq!(s.no_service, 1);
    assert!(a.cores.iter().all(|c| c.lock().unwrap().emit));
    assert!(b.cores.iter().all(|c| !c.lock().unwrap().emit));
    // Sloppy pickup: the master's cores held for 500 ms after taking over, the backup's
    // until resynced.
    wait_for("master's pickup hold over", || {
        a.cores
            .iter()
            .all(|c| c.lock().unwrap().synced == [false, true])
    });
    assert!(b
        .cores
        .iter()
        .all(|c| c.lock().unwrap().synced == [false, true]));

    // A new flow on the master reaches both backup cores within a few drain intervals.
    a.cores[1].lock().unwrap().new_flow(rec(20_000));
    let took = wait_for("change synced", || {
        installed(&b, 0) == 6002 && installed(&b, 1) == 6002
    });
    assert!(took < StdDuration::from_millis(500), "change took {took:?}");
    // A flow on the backup is not sent.
    b.cores[0].lock().unwrap().new_flow(rec(30_000));

    // Roles swap: B sends, A installs. A's last change, recorded just before it steps down,
    // still leaves (flushed), and reaches B even though B has taken over meanwhile.
    a.cores[0].lock().unwrap().new_flow(rec(25_000));
    a.link.set_sync_master(false);
    b.link.set_sync_master(true);
    wait_for("A's last change at B", || {
        b.cores[0]
            .lock()
            .unwrap()
            .installed
            .contains_key(&rec(25_000).key)
    });
    wait_for("emit flags follow", || {
        b.cores.iter().all(|c| c.lock().unwrap().emit)
            && a.cores.iter().all(|c| !c.lock().unwrap().emit)
    });
    b.cores[0].lock().unwrap().new_flow(rec(40_000));
    wait_for("B's change at A", || {
        a.cores[0]
            .lock()
            .unwrap()
            .installed
            .contains_key(&rec(40_000).key)
    });
    assert!(!a.cores[0]
        .lock()
        .unwrap()
        .installed
        .contains_key(&rec(30_000).key));
    let sa_stats = a.handle.stats().snapshot();
    assert!(sa_stats.sent > 100 && sa_stats.records_sent >= 6003);
    assert_eq!(sa_stats.refused().map(|(_, n)| n).sum::<u64>(), 0);

    // Stop: fast, emit off.
    let t = StdInstant::now();
    let cores = b.cores.clone();
    drop(b.handle);
    assert!(t.elapsed() < StdDuration::from_secs(2));
    assert!(cores.iter().all(|c| !c.lock().unwrap().emit));
}

#[test]
fn refused_messages_are_counted_by_reason_and_a_lone_backup_is_ready_after_two_seconds() {
    let (sb, probe) = (loopback(), loopback());
    let b = node(sb, addr(&probe), vec![FakeCore::with(vec![])], false, 2);
    let to = b.handle.local_addr();
    // Not synced (no sloppy pickup) from the first turn until the deadline.
    wait_for("told not synced", || {
        !b.cores[0].lock().unwrap().synced.is_empty()
    });
    probe.send_to(b"not a sync message at all", to).unwrap();
    let mut unkeyed = Vec::new();
    let hdr = crate::sync::wire::Header {
        syncid: 0,
        sender: 77,
        sequence: 1,
    };
    crate::sync::wire::build(
        &hdr,
        crate::sync::wire::Body::Conns(&[rec(1)]),
        None,
        &mut unkeyed,
    );
    probe.send_to(&unkeyed, to).unwrap();
    wait_for("refusals counted", || {
        let s = b.handle.stats();
        s.refused(Refused::Magic) == 1 && s.refused(Refused::Auth) == 1
    });
    assert_eq!(installed(&b, 0), 0);
    // Its BulkRequests went to the probe, unanswered.
    let took = wait_for("ready by deadline", || b.link.is_sync_ready());
    assert!(
        took > StdDuration::from_millis(1500) && took < StdDuration::from_millis(2600),
        "{took:?}"
    );
    wait_for("told synced", || {
        b.cores[0].lock().unwrap().synced.len() == 2
    });
    assert_eq!(b.cores[0].lock().unwrap().synced, [false, true]);
    let mut buf = [0u8; 2048];
    let mut requests = 0;
    while let Ok((n, _)) = probe.recv_from(&mut buf) {
        let m = crate::sync::wire::Message::new_checked(&buf[..n]).unwrap();
        assert_eq!(m.kind(), crate::sync::wire::MessageType::BulkRequest);
        requests += 1;
    }
    assert_eq!(requests, 4, "at 0, 0.5, 1 and 1.5 s");
}

#[test]
fn refresh_follows_the_shortest_timeout() {
    use crate::control::ops::Timeouts;
    assert_eq!(refresh_for(&Timeouts::default()), Duration::from_secs(60));
    let t = Timeouts {
        tcp: 900,
        tcpfin: 0,
        udp: 30,
    };
    assert_eq!(refresh_for(&t), Duration::from_secs(15));
}

mod directors {
    //! The real cores: a flow created on one director's worker reaches the other's shared
    //! synced table, by bulk resync and by change.
    use super::*;
    use crate::director::conn::Timeouts as ConnTimeouts;
    use crate::director::{Director, DirectorConfig, Registry, Shared};
    use crate::encap::TunnelType;
    use crate::model::v4::{DestConfig, ServiceConfig, ServiceKey, ServiceSet};
    use crate::model::{Forward, Protocol, SchedulerKind};
    use crate::wire::testing::tcp_packet;

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 100);
    const RS: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 12);

    fn set() -> ServiceSet {
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
                    addr: RS,
                    port: 0,
                    weight: 1,
                    forward: Forward::tunnel(TunnelType::Ipip),
                    u_threshold: 0,
                    l_threshold: 0,
                }],
                policy: Default::default(),
            }],
        }
    }

    fn director(workers: usize) -> (Arc<Shared>, Vec<Arc<Mutex<Director>>>) {
        let snap = Registry::new()
            .build(&set(), &ConnTimeouts::default())
            .unwrap();
        let shared = Arc::new(Shared::new(snap));
        let cores = (0..workers)
            .map(|_| {
                Arc::new(Mutex::new(Director::new(
                    shared.clone(),
                    DirectorConfig::default(),
                )))
            })
            .collect();
        (shared, cores)
    }

    fn start(
        sock: UdpSocket,
        peer: SocketAddrV4,
        cores: &[Arc<Mutex<Director>>],
        master: bool,
        sender: u32,
    ) -> (Arc<HaLink>, SyncHandle) {
        let link = Arc::new(HaLink::default());
        link.set_sync_master(master);
        let ep = Endpoint {
            socket: sock,
            dests: vec![peer],
        };
        let cfg = SessionConfig::new(51, 1472, None, sender);
        let h = spawn("VI_1", ep, cfg, cores.to_vec(), link.clone(), Clock::new()).unwrap();
        (link, h)
    }

    fn syn(cores: &[Arc<Mutex<Director>>], core: usize, cport: u16) {
        let mut p = tcp_packet(Ipv4Addr::new(192, 168, 1, 2), cport, VIP, 80, 0x02, 0);
        let _ = cores[core]
            .lock()
            .unwrap()
            .handle_packet(Clock::new().now(), &mut p);
    }

    const VIP6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
    const RS6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 0x12);

    /// [`set`]'s IPv4 service and the same on an IPv6 VIP to an IPv6 server (ip6ip6).
    fn director_dual(workers: usize) -> (Arc<Shared>, Vec<Arc<Mutex<Director>>>) {
        use std::net::IpAddr;
        let mut services: Vec<crate::model::ServiceConfig> = Vec::new();
        for (vip, rs) in [(IpAddr::V4(VIP), IpAddr::V4(RS)), (VIP6.into(), RS6.into())] {
            services.push(crate::model::ServiceConfig {
                key: crate::model::ServiceKey {
                    vip,
                    port: 80,
                    proto: Protocol::Tcp,
                },
                scheduler: SchedulerKind::Rr,
                persistence: None,
                mss_clamp: None,
                dests: vec![crate::model::DestConfig {
                    addr: rs,
                    port: 0,
                    weight: 1,
                    forward: Forward::tunnel(TunnelType::Ipip),
                    u_threshold: 0,
                    l_threshold: 0,
                }],
                policy: Default::default(),
            });
        }
        let set = crate::model::ServiceSet { services };
        let snap = Registry::new()
            .build(&set, &ConnTimeouts::default())
            .unwrap();
        let shared = Arc::new(Shared::new(snap));
        let cores = (0..workers)
            .map(|_| {
                Arc::new(Mutex::new(Director::new(
                    shared.clone(),
                    DirectorConfig::default(),
                )))
            })
            .collect();
        (shared, cores)
    }

    fn syn6(cores: &[Arc<Mutex<Director>>], core: usize, cport: u16) {
        let client = std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
        let mut p = crate::wire::testing::tcp6_packet(client, cport, VIP6, 80, 0x02, 0);
        let v = cores[core]
            .lock()
            .unwrap()
            .handle_packet(Clock::new().now(), &mut p);
        assert!(matches!(v, crate::director::Verdict::Encap(_)), "{v:?}");
    }

    #[test]
    fn ipv6_flows_reach_the_backup_by_bulk_resync_and_by_change_beside_ipv4_ones() {
        let (sa, sb) = (loopback(), loopback());
        let (aa, ab) = (addr(&sa), addr(&sb));
        let (a_shared, a_cores) = director_dual(2);
        let (b_shared, b_cores) = director_dual(2);
        let (_la, ha) = start(sa, ab, &a_cores, true, 1);
        wait_for("emit on", || a_shared.sync_emit());
        // Before the backup starts (the bulk resync): an IPv4 flow and IPv6 flows on both
        // workers.
        syn(&a_cores, 0, 40000);
        syn6(&a_cores, 0, 50000);
        syn6(&a_cores, 1, 50001);
        let (lb, hb) = start(sb, aa, &b_cores, false, 2);
        wait_for("backup ready", || lb.is_sync_ready());
        wait_for("bulk flows", || {
            b_shared.synced6.len() == 2 && b_shared.synced.len() == 1
        });
        syn6(&a_cores, 1, 50002); // a change
        wait_for("changed flow", || b_shared.synced6.len() == 3);
        let mut ports: Vec<u16> = b_shared
            .synced6
            .entries()
            .iter()
            .map(|(k, _)| k.cport)
            .collect();
        ports.sort_unstable();
        assert_eq!(ports, [50000, 50001, 50002]);
        let (k, c) = b_shared.synced6.entries()[0];
        assert_eq!((k.vaddr, c.state), (VIP6, ConnState::SynRecv));
        let s = hb.stats().snapshot();
        assert!(s.records_applied >= 4, "{s:?}");
        assert_eq!(s.no_service + s.no_dest + s.nat + s.invalid, 0, "{s:?}");
        assert_eq!(s.refused().map(|(_, n)| n).sum::<u64>(), 0, "{s:?}");
        drop(hb);
        drop(ha);
    }

    #[test]
    fn a_flow_reaches_the_backup_by_bulk_resync_and_by_change() {
        let (sa, sb) = (loopback(), loopback());
        let (aa, ab) = (addr(&sa), addr(&sb));
        let (a_shared, a_cores) = director(2);
        let (b_shared, b_cores) = director(2);
        let (_la, ha) = start(sa, ab, &a_cores, true, 1);
        wait_for("emit on", || a_shared.sync_emit());
        syn(&a_cores, 1, 40000); // before the backup starts: bulk
        let (lb, hb) = start(sb, aa, &b_cores, false, 2);
        wait_for("backup ready", || lb.is_sync_ready());
        wait_for("bulk flow", || b_shared.synced.len() == 1);
        syn(&a_cores, 0, 40001); // a change
        wait_for("changed flow", || b_shared.synced.len() == 2);
        let ports: std::collections::BTreeSet<u16> = b_shared
            .synced
            .entries()
            .iter()
            .map(|(k, _)| k.cport)
            .collect();
        assert_eq!(ports, [40000, 40001].into());
        let (_, c) = b_shared.synced.entries()[0];
        assert_eq!(c.state, ConnState::SynRecv);
        let s = hb.stats().snapshot();
        assert!(s.records_applied >= 2, "{s:?}");
        assert_eq!(s.no_service + s.no_dest + s.nat + s.invalid, 0);
        assert!(!b_shared.sync_emit());
        drop(ha);
        assert!(!a_shared.sync_emit(), "emit off when the thread stops");
    }
}

#[test]
fn a_tiny_maxlen_still_carries_a_record() {
    let mut cfg = SyncConfig::new("eth0", "VI_1");
    cfg.maxlen = 10;
    cfg.key = Some(b"k".to_vec());
    let s = SyncSession::new(session_config(&cfg, Duration::from_secs(60)), Instant::ZERO);
    // 24 + 62 + 32 = 118 bytes: one keyed IPv6 record, two IPv4 ones.
    assert_eq!(s.records6_per_message(), 1);
    assert_eq!(s.records_per_message(), 2);
}
