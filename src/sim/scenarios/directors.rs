//! Directors replaced, several behind ECMP, and lossy links.

use super::*;

/// How the fresh director of [`replace_director_mid_stream`] starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Takeover {
    /// With an empty connection table.
    Cold,
    /// With the old director's flows: its whole dump installed (connection sync's bulk
    /// resync), as records only (the real servers found by address in the fresh table).
    Synced,
}

/// What happened to flows when their director was replaced mid-stream.
struct Replaced {
    /// UDP flows answered by another server after the replacement.
    udp_moved: usize,
    /// TCP segments of established flows the fresh director dropped as `no_connection`.
    tcp_dropped: u64,
    /// Established TCP flows whose segment after the replacement was not answered, or was
    /// answered by another server (a real TCP stack would reset it): the connections lost.
    tcp_lost: usize,
    /// New TCP connections from the old flows' clients that went to the same server.
    tcp_reconnected_same: usize,
    /// What installing the dump did (`Takeover::Synced`).
    installed: InstallStats,
    /// Flows the fresh director picked up mid-flow (`sloppy_tcp`).
    picked_up: u64,
}

/// 2000 UDP flows and 1000 TCP flows (from 1000 clients) through a director with scheduler
/// `sched` and `config` to five GRE servers; the director is replaced by a fresh process with
/// the same table (started as `takeover` says); then every UDP flow sends again (in another
/// order, as traffic does), every TCP flow sends a segment (also in another order), and every
/// TCP client opens a new connection.
fn replace_director_mid_stream(
    sched: SchedulerKind,
    config: DirectorConfig,
    takeover: Takeover,
) -> Replaced {
    let mut net = Net::new(5);
    let cl = add_clients(&mut net);
    let set = web_and_dns(sched, &[0, 1, 2, 3, 4], tunnel(TunnelType::Gre, None));
    let dir = net.add_director(DIRECTOR, &set, config, 2);
    let rs: Vec<NodeId> = (0..5)
        .map(|i| net.add_server(rip(i), &[VIP], Reach::gre(None)))
        .collect();
    let mut udp = udp_flows(2000, 2000);
    let tcp = tcp_flows(1000, 1000, 10000);
    send_all(&mut net, cl, &udp);
    connect_all(&mut net, cl, &tcp);
    send_all(&mut net, cl, &tcp);
    assert_stuck(&net, cl, &tcp, &rs, 1);
    assert_eq!(
        per_server(&net, cl, &udp).len(),
        5,
        "every server has flows"
    );

    let dump = net.director(dir).dump_sync(net.now(), 100);
    let fresh = net.replace_director(dir);
    assert_eq!(net.director(fresh).conns(), 0);
    let mut installed = InstallStats::default();
    if takeover == Takeover::Synced {
        let now = net.now();
        installed = net.director_mut(fresh).install_synced(now, &dump);
    }
    let mut rng = Rng::new(99);
    shuffle(&mut udp, &mut rng);
    send_all(&mut net, cl, &udp);
    let mut segments = tcp.clone();
    shuffle(&mut segments, &mut rng);
    send_all(&mut net, cl, &segments);
    let again: Vec<Flow> = tcp
        .iter()
        .map(|f| Flow {
            cport: f.cport + 20000,
            ..*f
        })
        .collect();
    let mut order = again.clone();
    shuffle(&mut order, &mut rng);
    connect_all(&mut net, cl, &order);

    let c = net.client(cl);
    assert!(
        udp.iter().all(|f| c.flow(f).echoed == 2),
        "no UDP datagram lost"
    );
    Replaced {
        udp_moved: udp.iter().filter(|f| c.flow(f).servers.len() > 1).count(),
        tcp_dropped: net.director(fresh).dropped(DropReason::NoConnection),
        tcp_lost: tcp
            .iter()
            .filter(|f| c.flow(f).echoed != 2 || c.flow(f).servers.len() > 1)
            .count(),
        tcp_reconnected_same: tcp
            .iter()
            .zip(&again)
            .filter(|(old, new)| c.flow(old).server() == c.flow(new).server())
            .count(),
        installed,
        picked_up: net.director(fresh).sloppy_created(),
    }
}

/// Scenario 3: a director replaced by a fresh one with a consistent-hash scheduler (mh, sh)
/// picks the same server for every flow, so UDP flows mid-stream keep their server and every
/// client's new TCP connections land where its old ones were. Established TCP flows are
/// dropped by the fresh director (`no_connection`): it has no connection table yet — what
/// connection sync between directors, or `sloppy_tcp`, is for (below).
#[test]
fn replaced_director_keeps_flows_on_their_servers_with_consistent_hashing() {
    for sched in [SchedulerKind::Mh, SchedulerKind::Sh] {
        let r = replace_director_mid_stream(sched, DirectorConfig::default(), Takeover::Cold);
        assert_eq!(r.udp_moved, 0, "{sched}");
        assert_eq!(r.tcp_reconnected_same, 1000, "{sched}");
        assert_eq!(r.tcp_dropped, 1000, "{sched}");
        assert_eq!(r.tcp_lost, 1000, "{sched}");
    }
}

/// Scenario 3, the contrast: with rr the fresh director's picks have nothing to do with the
/// old one's, and most flows change server.
#[test]
fn replaced_director_moves_flows_with_round_robin() {
    let r =
        replace_director_mid_stream(SchedulerKind::Rr, DirectorConfig::default(), Takeover::Cold);
    assert!(r.udp_moved > 2000 / 2, "only {} of 2000 moved", r.udp_moved);
    assert!(
        r.tcp_reconnected_same < 1000 / 2,
        "{}",
        r.tcp_reconnected_same
    );
    assert_eq!(r.tcp_dropped, 1000);
}

/// Connection sync: the fresh director installs the old one's dump (records naming servers
/// by address; its own registry gives them other handles) and loses no established TCP flow
/// and moves no UDP flow, whatever the scheduler — even rr, whose own picks would move most.
#[test]
fn replaced_director_with_synced_flows_loses_no_established_flow() {
    for sched in [SchedulerKind::Rr, SchedulerKind::Wlc, SchedulerKind::Mh] {
        let r = replace_director_mid_stream(sched, DirectorConfig::default(), Takeover::Synced);
        assert_eq!(r.installed.applied, 3000, "{sched}: {:?}", r.installed);
        assert_eq!(r.installed.total(), 3000, "{sched}");
        assert_eq!(r.tcp_dropped, 0, "{sched}");
        assert_eq!(r.tcp_lost, 0, "{sched}");
        assert_eq!(r.udp_moved, 0, "{sched}");
    }
}

/// No connection sync, but mh and `sloppy_tcp`: the fresh director picks each established
/// flow up at its next segment and mh sends it to the server it was on. 0 lost.
#[test]
fn replaced_director_with_mh_and_sloppy_tcp_loses_no_established_flow() {
    let config = DirectorConfig {
        sloppy_tcp: true,
        ..DirectorConfig::default()
    };
    let r = replace_director_mid_stream(SchedulerKind::Mh, config, Takeover::Cold);
    assert_eq!(r.picked_up, 1000);
    assert_eq!(r.tcp_dropped, 0);
    assert_eq!(r.tcp_lost, 0);
    assert_eq!(r.udp_moved, 0);
    assert_eq!(r.tcp_reconnected_same, 1000);
}

/// `sloppy_tcp` alone is not enough: with rr the picked-up flows land on other servers (which
/// would reset them), so most are lost.
#[test]
fn sloppy_tcp_with_round_robin_moves_established_flows() {
    let config = DirectorConfig {
        sloppy_tcp: true,
        ..DirectorConfig::default()
    };
    let r = replace_director_mid_stream(SchedulerKind::Rr, config, Takeover::Cold);
    assert_eq!(r.tcp_dropped, 0, "every segment was forwarded");
    assert_eq!(r.picked_up, 1000);
    assert!(r.tcp_lost > 1000 / 2, "only {} of 1000 moved", r.tcp_lost);
}

/// Two directors as VRRP and connection sync run them: the master (2 workers) emits records
/// as its flows come and go, the sync daemon carries each batch to the backup (3 workers, so
/// flows land on other workers there), which installs it; some flows close before the
/// failover and their closing states travel too. The VIP then moves to the backup (the
/// master dies): every established flow goes on, on its server; new flows are scheduled.
#[test]
fn backup_fed_by_sync_records_takes_over_without_losing_a_flow() {
    let mut net = Net::new(21);
    let cl = add_clients(&mut net);
    let set = web_and_dns(
        SchedulerKind::Rr,
        &[0, 1, 2],
        tunnel(TunnelType::Ipip, None),
    );
    let master = net.add_director(DIRECTOR, &set, DirectorConfig::default(), 2);
    let backup = net.add_director(DIRECTOR2, &set, DirectorConfig::default(), 3);
    net.set_route(Ipv4Net::from(VIP), &[master]);
    let rs: Vec<NodeId> = (0..3)
        .map(|i| net.add_server(rip(i), &[VIP], Reach::ipip()))
        .collect();
    net.director(master).set_sync_emit(true);
    let sync = |net: &mut Net| {
        let recs = net.director_mut(master).take_sync();
        let now = net.now();
        let stats = net.director_mut(backup).install_synced(now, &recs);
        assert_eq!(stats.applied, recs.len(), "{stats:?}");
        recs.len()
    };

    let tcp = tcp_flows(600, 300, 30000);
    let udp = udp_flows(400, 400);
    connect_all(&mut net, cl, &tcp);
    send_all(&mut net, cl, &udp);
    // SYN_RECV, then ESTABLISHED: two records per TCP flow, one per UDP flow.
    assert_eq!(sync(&mut net), 600 * 2 + 400);
    send_all(&mut net, cl, &tcp);
    assert_eq!(
        sync(&mut net),
        600,
        "data confirms each TCP flow (no state change)"
    );
    close_all(&mut net, cl, &tcp[..100]);
    assert_eq!(sync(&mut net), 100, "FIN_WAIT");
    assert_eq!(net.director(backup).conns(), 0, "none adopted yet");
    assert_eq!(net.director(backup).shared.synced.len(), 600 + 400);

    // The master dies; the VIP moves.
    net.remove_node(master);
    net.set_route(Ipv4Net::from(VIP), &[backup]);
    let open = &tcp[100..];
    send_all(&mut net, cl, open);
    send_all(&mut net, cl, &udp);
    assert_stuck(&net, cl, open, &rs, 2);
    assert_stuck(&net, cl, &udp, &rs, 2);
    let b = net.director(backup);
    assert_eq!(b.dropped(DropReason::NoConnection), 0);
    assert_eq!(b.conns(), 500 + 400);
    let adopted: u64 = b.workers.iter().map(|w| w.counters().sync_adopted).sum();
    assert_eq!(adopted, 900);
    let used: Vec<usize> = b.workers.iter().map(|w| w.conns().len()).collect();
    assert!(
        used.iter().all(|&n| n > 150),
        "spread over 3 workers: {used:?}"
    );
    // The closed flows' records expire on the backup as they would have on the master.
    net.advance(Duration::from_secs(121));
    assert_eq!(net.director(backup).shared.synced.len(), 0);
}
/// Two directors behind ECMP with the same table and mh: each sees about half the flows, yet
/// every client address lands on one server whichever director its flows cross; when one
/// director leaves the ECMP group (its route to the VIP withdrawn) its UDP flows cross the
/// other and keep their server.
#[test]
fn ecmp_directors_with_maglev_agree_and_survive_losing_one() {
    let mut net = Net::new(7);
    let cl = add_clients(&mut net);
    let set = web_and_dns(
        SchedulerKind::Mh,
        &[0, 1, 2, 3],
        tunnel(TunnelType::Ipip, None),
    );
    let d1 = net.add_director(DIRECTOR, &set, DirectorConfig::default(), 2);
    let d2 = net.add_director(DIRECTOR2, &set, DirectorConfig::default(), 2);
    let rs: Vec<NodeId> = (0..4)
        .map(|i| net.add_server(rip(i), &[VIP], Reach::ipip()))
        .collect();
    // 500 client addresses, four UDP flows each.
    let udp = udp_flows(2000, 500);
    send_all(&mut net, cl, &udp);
    let (n1, n2) = (net.director(d1).conns(), net.director(d2).conns());
    assert_eq!(n1 + n2, 2000);
    assert!(n1 > 800 && n2 > 800, "{n1} / {n2}");
    let mut by_client: HashMap<Ipv4Addr, NodeId> = HashMap::new();
    for f in &udp {
        let s = net.client(cl).flow(f).server().unwrap();
        assert_eq!(*by_client.entry(f.client).or_insert(s), s, "{f:?}");
    }

    net.set_route(Ipv4Net::from(VIP), &[d2]);
    send_all(&mut net, cl, &udp);
    assert_stuck(&net, cl, &udp, &rs, 2);
    assert_eq!(net.director(d2).conns(), 2000);
    assert_eq!(net.director(d1).conns(), n1, "d1 saw nothing more");
}

/// Seeded loss on the client's links: the same seed loses the same packets, the loss rate is
/// what was asked, and a lost packet never sends a flow to another server.
#[test]
fn seeded_loss_is_reproducible_and_keeps_flow_affinity() {
    let run = |seed: u64| {
        let mut net = Net::new(seed);
        let cl = add_clients(&mut net);
        let set = web_and_dns(
            SchedulerKind::Wrr,
            &[0, 1, 2],
            tunnel(TunnelType::Gue, None),
        );
        let dir = net.add_director(DIRECTOR, &set, DirectorConfig::default(), 2);
        let rs: Vec<NodeId> = (0..3)
            .map(|i| net.add_server(rip(i), &[VIP], Reach::gue()))
            .collect();
        net.set_loss(cl, dir, 0.05);
        for &s in &rs {
            net.set_loss(s, cl, 0.05);
        }
        let udp = udp_flows(1000, 1000);
        for _ in 0..5 {
            send_all(&mut net, cl, &udp);
        }
        for (f, cf) in net.client(cl).flows() {
            assert!(cf.servers.len() <= 1, "{f:?}");
        }
        let echoed: u32 = udp.iter().map(|f| net.client(cl).flow(f).echoed).sum();
        // 5000 datagrams, each lost on the way in or back with about 1 - 0.95² ≈ 9.75%.
        assert_eq!(u64::from(echoed) + net.stats.lost, 5000);
        assert!((350..650).contains(&net.stats.lost), "{}", net.stats.lost);
        // Nothing is lost between the director and the servers: each datagram it took was
        // answered once.
        let answered: u64 = rs
            .iter()
            .flat_map(|&s| net.server(s).flows.values())
            .map(|f| f.answered)
            .sum();
        assert_eq!(net.director(dir).rx_packets(), answered);
        (net.stats, echoed)
    };
    let first = run(11);
    assert_eq!(run(11), first);
    assert_ne!(run(12), first);
}

/// Issue 14 end to end, on a small scale (what `scale` counts with a million flows): three
/// directors behind ECMP with mh and sloppy pickup, each given the real servers in another
/// order. A director leaving moves no TCP flow to another server. A real server added, then a
/// director leaving: the flows the router moves are picked up with the new table, so exactly
/// those whose table entry changed reach the new table's server (a reset in real life), and no
/// other flow does.
#[test]
fn ecmp_group_after_a_server_change_breaks_only_moved_flows_whose_entry_changed() {
    let group = |order: &[u8]| -> ServiceSet {
        let forward = tunnel(TunnelType::Ipip, None);
        let dests = order.iter().map(|&i| dest(rip(i), 1, forward)).collect();
        ServiceSet {
            services: vec![service(Protocol::Tcp, VIP, 80, SchedulerKind::Mh, dests)],
        }
    };
    let orders: [&[u8]; 3] = [
        &[0, 1, 2, 3, 4, 5],
        &[5, 3, 1, 0, 2, 4],
        &[2, 4, 0, 5, 1, 3],
    ];
    // After the change: server 6 added, at another place in each director's list.
    let orders_after: [&[u8]; 3] = [
        &[0, 1, 2, 3, 4, 5, 6],
        &[6, 5, 3, 1, 0, 2, 4],
        &[2, 4, 0, 6, 5, 1, 3],
    ];
    let config = DirectorConfig {
        sloppy_tcp: true,
        ..DirectorConfig::default()
    };
    let start = |net: &mut Net| {
        let cl = add_clients(net);
        let dirs: Vec<NodeId> = orders
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let addr = Ipv4Addr::new(10, 0, 0, 1 + i as u8);
                net.add_director(addr, &group(o), config.clone(), 1)
            })
            .collect();
        let rs: Vec<NodeId> = (0..7)
            .map(|i| net.add_server(rip(i), &[VIP], Reach::ipip()))
            .collect();
        let tcp = tcp_flows(3000, 3000, 10000);
        connect_all(net, cl, &tcp);
        send_all(net, cl, &tcp);
        assert_stuck(net, cl, &tcp, &rs, 1);
        for &d in &dirs {
            assert!(net.director(d).conns() > 600, "ECMP spreads the flows");
        }
        (cl, dirs, rs, tcp)
    };

    // A director leaves: every flow keeps its server.
    let mut net = Net::new(11);
    let (cl, dirs, rs, tcp) = start(&mut net);
    net.remove_node(dirs[1]);
    send_all(&mut net, cl, &tcp);
    assert_stuck(&net, cl, &tcp, &rs, 2);
    assert!(net.director(dirs[0]).sloppy_created() + net.director(dirs[2]).sloppy_created() > 0);

    // A server joins every director's table, then a director leaves.
    let mut net = Net::new(11);
    let (cl, dirs, rs, tcp) = start(&mut net);
    let before: Vec<_> = tcp
        .iter()
        .map(|f| net.director(dirs[0]).table_pick(f))
        .collect();
    for (i, &d) in dirs.iter().enumerate() {
        net.publish(d, &group(orders_after[i]));
    }
    let after: Vec<_> = tcp
        .iter()
        .map(|f| net.director(dirs[0]).table_pick(f))
        .collect();
    for f in tcp.iter().step_by(7) {
        let picks: Vec<_> = dirs
            .iter()
            .map(|&d| net.director(d).table_pick(f))
            .collect();
        assert!(picks.iter().all(|p| *p == picks[0]), "{f:?}: {picks:?}");
    }
    send_all(&mut net, cl, &tcp);
    assert_stuck(&net, cl, &tcp, &rs, 2);
    net.remove_node(dirs[1]);
    send_all(&mut net, cl, &tcp);
    let (mut broken, mut changed) = (0, 0);
    for (i, f) in tcp.iter().enumerate() {
        let cf = net.client(cl).flow(f);
        assert_eq!(
            cf.echoed, 3,
            "{f:?}: every segment answered (sloppy pickup)"
        );
        changed += usize::from(before[i] != after[i]);
        match cf.servers[..] {
            [_] => {}
            [first, now] => {
                broken += 1;
                assert_ne!(before[i], after[i], "{f:?} moved with an unchanged entry");
                assert_eq!(Some(net.server(first).addr), before[i], "{f:?}");
                assert_eq!(Some(net.server(now).addr), after[i], "{f:?}");
            }
            _ => panic!("{f:?} answered by {:?}", cf.servers),
        }
    }
    // One server in seven joins: about a seventh of the entries change; the router moves
    // about two thirds of the flows (three next hops become two, by flow hash modulo).
    assert!(changed > 300, "{changed} entries changed");
    assert!(
        broken > changed / 3 && broken < changed,
        "{broken} of {changed}"
    );
    println!("{changed} of 3000 entries changed, {broken} moved flows broke");
}
