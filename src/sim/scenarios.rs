//! Scenarios: thousands of flows through directors, agents and the virtual network, each
//! asserting where every flow went. Named after what they show.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{
    dest, nat_dest, service, tunnel, with_expire_nodest_conn, with_persistence, DirectorConfig,
    DropReason, Duration, Flow, FlowState, Forward, Net, NodeId, Protocol, Reach, Rng,
    SchedulerKind, ServiceSet, TunnelType,
};

const DIRECTOR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DIRECTOR2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 100);

/// Real server `i`'s address.
fn rip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 3, 0, 10 + i)
}

/// Client address `i` (in 10.1.0.0/16).
fn client_addr(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a01_0001 + i)
}

fn add_clients(net: &mut Net) -> NodeId {
    net.add_client("10.1.0.0/16".parse().unwrap())
}

/// `n` TCP flows to VIP:80 from `addrs` client addresses, ports from `first_port`.
fn tcp_flows(n: u32, addrs: u32, first_port: u16) -> Vec<Flow> {
    (0..n)
        .map(|i| Flow::tcp(client_addr(i % addrs), first_port + i as u16, VIP, 80))
        .collect()
}

/// `n` UDP flows to VIP:53 from `addrs` client addresses.
fn udp_flows(n: u32, addrs: u32) -> Vec<Flow> {
    (0..n)
        .map(|i| Flow::udp(client_addr(i % addrs), 20000 + i as u16, VIP, 53))
        .collect()
}

fn connect_all(net: &mut Net, cl: NodeId, flows: &[Flow]) {
    for &f in flows {
        net.tcp_connect(cl, f);
    }
    net.settle();
}

fn send_all(net: &mut Net, cl: NodeId, flows: &[Flow]) {
    for &f in flows {
        net.send_data(cl, f);
    }
    net.settle();
}

fn close_all(net: &mut Net, cl: NodeId, flows: &[Flow]) {
    for &f in flows {
        net.tcp_close(cl, f);
    }
    net.settle();
}

/// How many of `flows` each server answered, by the client's account (last server).
fn per_server(net: &Net, cl: NodeId, flows: &[Flow]) -> BTreeMap<NodeId, usize> {
    let mut m = BTreeMap::new();
    for f in flows {
        if let Some(s) = net.client(cl).flow(f).server() {
            *m.entry(s).or_default() += 1;
        }
    }
    m
}

/// Asserts every flow was answered by exactly one server, `echoed` times, that this server's
/// application saw it and no other did, and that nothing went astray.
fn assert_stuck(net: &Net, cl: NodeId, flows: &[Flow], servers: &[NodeId], echoed: u32) {
    for f in flows {
        let cf = net.client(cl).flow(f);
        assert_eq!(cf.servers.len(), 1, "{f:?} answered by {:?}", cf.servers);
        assert_eq!(cf.echoed, echoed, "{f:?}");
        for &s in servers {
            let seen = net.server(s).flows.contains_key(f);
            assert_eq!(seen, cf.servers[0] == s, "{f:?} at {s:?}");
        }
    }
    assert_eq!(net.client(cl).bad_replies, 0);
    assert_eq!(net.stats.unroutable, 0);
    for &s in servers {
        assert_eq!(net.server(s).dropped(), 0, "{:?}", net.server(s).drops);
    }
}

/// Scenario 1, for each TUN tunnel type and DR: 1200 TCP flows (handshake, three echoed data
/// segments, FIN) to three servers weighted 1:2:3 (wrr). Every flow sticks to one server, the
/// replies reach the client from the server itself (the director only ever sees the client's
/// packets), the split is exactly the weights', and the closed flows leave the table once
/// their FIN timeout passes.
#[test]
fn tcp_flows_stick_to_one_server_and_replies_bypass_the_director() {
    let modes = [
        (tunnel(TunnelType::Ipip, None), Reach::ipip()),
        (tunnel(TunnelType::Gre, Some(42)), Reach::gre(Some(42))),
        (tunnel(TunnelType::Gue, None), Reach::gue()),
        (Forward::Dr, Reach::Dr),
    ];
    for (forward, reach) in modes {
        let mut net = Net::new(1);
        let cl = add_clients(&mut net);
        let dests = (0..3u8).map(|i| dest(rip(i), u32::from(i) + 1, forward));
        let set = ServiceSet {
            services: vec![service(
                Protocol::Tcp,
                VIP,
                80,
                SchedulerKind::Wrr,
                dests.collect(),
            )],
        };
        let dir = net.add_director(DIRECTOR, &set, DirectorConfig::default(), 2);
        let rs: Vec<NodeId> = (0..3)
            .map(|i| net.add_server(rip(i), &[VIP], reach))
            .collect();

        let flows = tcp_flows(1200, 300, 10000);
        connect_all(&mut net, cl, &flows);
        for _ in 0..3 {
            send_all(&mut net, cl, &flows);
        }
        close_all(&mut net, cl, &flows);

        assert_stuck(&net, cl, &flows, &rs, 3);
        let counts: Vec<usize> = rs.iter().map(|&s| net.server(s).flow_count()).collect();
        assert_eq!(counts, [200, 400, 600], "{forward:?}");
        assert!(net
            .client(cl)
            .flows()
            .all(|(_, f)| f.state == FlowState::Closed));
        // SYN, ACK, 3 data, FIN, ACK from the client; no reply passed the director.
        let d = net.director(dir);
        assert_eq!(d.rx_packets(), 7 * 1200, "{forward:?}");
        assert_eq!(d.rewritten(), 0);
        assert!(d.drops().is_empty(), "{:?}", d.drops());
        assert_eq!(d.conns(), 1200);

        // Closed flows go after the FIN timeout (2 min), not the established one (15 min).
        net.advance(Duration::from_secs(125));
        assert_eq!(net.director(dir).conns(), 0, "{forward:?}");
    }
}

/// Scenario 1b: one service whose four real servers are reached four ways (IPIP, GRE with a
/// key, GUE, DR): rr spreads 2000 flows evenly and each agent accepts only its own tunnel.
#[test]
fn one_service_mixes_ipip_gre_gue_and_dr_servers() {
    let mut net = Net::new(2);
    let cl = add_clients(&mut net);
    let ways = [
        (tunnel(TunnelType::Ipip, None), Reach::ipip()),
        (tunnel(TunnelType::Gre, Some(7)), Reach::gre(Some(7))),
        (tunnel(TunnelType::Gue, None), Reach::gue()),
        (Forward::Dr, Reach::Dr),
    ];
    let set = ServiceSet {
        services: vec![service(
            Protocol::Tcp,
            VIP,
            80,
            SchedulerKind::Rr,
            (0..4u8)
                .map(|i| dest(rip(i), 1, ways[i as usize].0))
                .collect(),
        )],
    };
    let dir = net.add_director(DIRECTOR, &set, DirectorConfig::default(), 3);
    let rs: Vec<NodeId> = (0..4u8)
        .map(|i| net.add_server(rip(i), &[VIP], ways[i as usize].1))
        .collect();
    let flows = tcp_flows(2000, 500, 10000);
    connect_all(&mut net, cl, &flows);
    send_all(&mut net, cl, &flows);
    assert_stuck(&net, cl, &flows, &rs, 1);
    let counts: Vec<usize> = rs.iter().map(|&s| net.server(s).flow_count()).collect();
    assert_eq!(counts, [500; 4]);
    assert_eq!(net.director(dir).conns(), 2000);
}

/// The two services of scenarios 2 and 3: TCP VIP:80 and UDP VIP:53 over the same servers.
fn web_and_dns(sched: SchedulerKind, servers: &[u8], forward: Forward) -> ServiceSet {
    let dests = || servers.iter().map(|&i| dest(rip(i), 1, forward)).collect();
    ServiceSet {
        services: vec![
            service(Protocol::Tcp, VIP, 80, sched, dests()),
            service(Protocol::Udp, VIP, 53, sched, dests()),
        ],
    }
}

/// Scenario 2: with 3000 TCP and 600 UDP flows on servers A, B, C (rr), C is deleted and D
/// added. The flows on A and B go on untouched; C's flows follow `expire_nodest_conn`: a TCP
/// segment is dropped (`destination_gone`) and the flow forgotten, a UDP datagram is
/// rescheduled to a live server at once. New flows go to A, B and D. Then the timeouts empty
/// the table: UDP after 5 minutes, established TCP after 15.
#[test]
fn server_removed_and_another_added_mid_run() {
    let mut net = Net::new(3);
    let cl = add_clients(&mut net);
    let ipip = tunnel(TunnelType::Ipip, None);
    let set = web_and_dns(SchedulerKind::Rr, &[0, 1, 2], ipip);
    let dir = net.add_director(DIRECTOR, &set, DirectorConfig::default(), 2);
    let rs: Vec<NodeId> = (0..4)
        .map(|i| net.add_server(rip(i), &[VIP], Reach::ipip()))
        .collect();
    let (a, b, c, d) = (rs[0], rs[1], rs[2], rs[3]);

    let tcp = tcp_flows(3000, 1000, 10000);
    let udp = udp_flows(600, 600);
    connect_all(&mut net, cl, &tcp);
    send_all(&mut net, cl, &tcp);
    send_all(&mut net, cl, &udp);
    let before = per_server(&net, cl, &tcp);
    assert_eq!(before.values().copied().collect::<Vec<_>>(), [1000; 3]);
    assert_eq!(per_server(&net, cl, &udp).values().sum::<usize>(), 600);
    let owner: HashMap<Flow, NodeId> = tcp
        .iter()
        .chain(&udp)
        .map(|f| (*f, net.client(cl).flow(f).server().unwrap()))
        .collect();

    net.advance(Duration::from_secs(10));
    net.publish(dir, &web_and_dns(SchedulerKind::Rr, &[0, 1, 3], ipip));
    send_all(&mut net, cl, &tcp);
    send_all(&mut net, cl, &udp);

    for f in &tcp {
        let cf = net.client(cl).flow(f);
        assert_eq!(cf.servers, [owner[f]], "{f:?}");
        let expect = if owner[f] == c { 1 } else { 2 };
        assert_eq!(cf.echoed, expect, "{f:?}");
    }
    let dir_ = net.director(dir);
    assert_eq!(dir_.dropped(DropReason::DestinationGone), 1000);
    let mut moved_to = BTreeMap::new();
    for f in &udp {
        let cf = net.client(cl).flow(f);
        assert_eq!(cf.echoed, 2, "{f:?}");
        if owner[f] == c {
            assert_eq!(cf.servers.len(), 2, "{f:?}");
            *moved_to.entry(cf.servers[1]).or_insert(0) += 1;
        } else {
            assert_eq!(cf.servers, [owner[f]], "{f:?}");
        }
    }
    assert_eq!(moved_to.values().sum::<usize>(), 200);
    assert!(
        moved_to.keys().all(|s| [a, b, d].contains(s)),
        "{moved_to:?}"
    );
    // C's TCP flows were forgotten at their first packet; the UDP ones rescheduled.
    assert_eq!(net.director(dir).conns(), 2000 + 600);

    // New flows: rr over A, B and D.
    let fresh = tcp_flows(3000, 1000, 30000);
    connect_all(&mut net, cl, &fresh);
    send_all(&mut net, cl, &fresh);
    let after = per_server(&net, cl, &fresh);
    assert_eq!(after, BTreeMap::from([(a, 1000), (b, 1000), (d, 1000)]));
    assert_eq!(net.server(c).flow_count(), 1000 + 200, "C saw nothing new");
    assert_eq!(net.client(cl).bad_replies, 0);

    // UDP flows time out after 5 minutes, established TCP after 15.
    net.advance(Duration::from_secs(6 * 60));
    assert_eq!(net.director(dir).conns(), 2000 + 3000);
    net.advance(Duration::from_secs(10 * 60));
    assert_eq!(net.director(dir).conns(), 0);
}

/// Scenario 2b: the service keeps a failed server's flows (`expire_nodest_conn = false`): while
/// C is held out of the table its packets are dropped (`destination_down`) but its flows stay,
/// new flows avoid it, and when C comes back its flows go on on C.
#[test]
fn held_server_keeps_its_flows_until_it_comes_back() {
    let mut net = Net::new(4);
    let cl = add_clients(&mut net);
    let gre = tunnel(TunnelType::Gre, None);
    let set = |servers: &[u8]| {
        let mut s = web_and_dns(SchedulerKind::Rr, servers, gre);
        s.services = s
            .services
            .into_iter()
            .map(|svc| with_expire_nodest_conn(svc, false))
            .collect();
        s
    };
    let full = set(&[0, 1, 2]);
    let dir = net.add_director(DIRECTOR, &full, DirectorConfig::default(), 2);
    let rs: Vec<NodeId> = (0..3)
        .map(|i| net.add_server(rip(i), &[VIP], Reach::gre(None)))
        .collect();
    let c = rs[2];
    let tcp = tcp_flows(1500, 500, 10000);
    connect_all(&mut net, cl, &tcp);
    send_all(&mut net, cl, &tcp);
    let on_c: Vec<Flow> = tcp
        .iter()
        .copied()
        .filter(|f| net.client(cl).flow(f).server() == Some(c))
        .collect();
    assert_eq!(on_c.len(), 500);

    // C's health check fails: out of the table, held.
    let held: Vec<_> = full
        .services
        .iter()
        .map(|s| (s.key, s.dests[2].clone()))
        .collect();
    net.publish_held(dir, &set(&[0, 1]), &held);
    send_all(&mut net, cl, &tcp);
    assert_eq!(net.director(dir).dropped(DropReason::DestinationDown), 500);
    assert_eq!(net.director(dir).conns(), 1500, "C's flows kept");
    let fresh = tcp_flows(600, 600, 30000);
    connect_all(&mut net, cl, &fresh);
    assert!(fresh
        .iter()
        .all(|f| net.client(cl).flow(f).server() != Some(c)));

    // C is back: its flows go on on C.
    net.publish(dir, &full);
    send_all(&mut net, cl, &on_c);
    for f in &on_c {
        let cf = net.client(cl).flow(f);
        assert_eq!((cf.servers.as_slice(), cf.echoed), ([c].as_slice(), 2));
    }
    assert_stuck(&net, cl, &tcp, &rs, 2);
}

/// Puts `v` in a random order (Fisher-Yates).
fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i as u64 + 1) as usize);
    }
}

/// What happened to flows when their director was replaced mid-stream.
struct Replaced {
    /// UDP flows answered by another server after the replacement.
    udp_moved: usize,
    /// TCP segments of established flows the fresh director dropped as `no_connection`.
    tcp_dropped: u64,
    /// New TCP connections from the old flows' clients that went to the same server.
    tcp_reconnected_same: usize,
}

/// 2000 UDP flows and 1000 TCP flows (from 1000 clients) through a director with scheduler
/// `sched` to five GRE servers; the director is replaced by a fresh process with the same
/// table; then every UDP flow sends again (in another order, as traffic does), every TCP flow
/// sends a segment, and every TCP client opens a new connection.
fn replace_director_mid_stream(sched: SchedulerKind) -> Replaced {
    let mut net = Net::new(5);
    let cl = add_clients(&mut net);
    let set = web_and_dns(sched, &[0, 1, 2, 3, 4], tunnel(TunnelType::Gre, None));
    let dir = net.add_director(DIRECTOR, &set, DirectorConfig::default(), 2);
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

    let fresh = net.replace_director(dir);
    assert_eq!(net.director(fresh).conns(), 0);
    let mut rng = Rng::new(99);
    shuffle(&mut udp, &mut rng);
    send_all(&mut net, cl, &udp);
    send_all(&mut net, cl, &tcp);
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
    assert!(
        tcp.iter().all(|f| c.flow(f).echoed == 1),
        "no TCP segment answered"
    );
    Replaced {
        udp_moved: udp.iter().filter(|f| c.flow(f).servers.len() > 1).count(),
        tcp_dropped: net.director(fresh).dropped(DropReason::NoConnection),
        tcp_reconnected_same: tcp
            .iter()
            .zip(&again)
            .filter(|(old, new)| c.flow(old).server() == c.flow(new).server())
            .count(),
    }
}

/// Scenario 3: a director replaced by a fresh one with a consistent-hash scheduler (mh, sh)
/// picks the same server for every flow, so UDP flows mid-stream keep their server and every
/// client's new TCP connections land where its old ones were. Established TCP flows are
/// dropped by the fresh director (`no_connection`): it has no connection table yet — what
/// connection sync between directors is for.
#[test]
fn replaced_director_keeps_flows_on_their_servers_with_consistent_hashing() {
    for sched in [SchedulerKind::Mh, SchedulerKind::Sh] {
        let r = replace_director_mid_stream(sched);
        assert_eq!(r.udp_moved, 0, "{sched}");
        assert_eq!(r.tcp_reconnected_same, 1000, "{sched}");
        assert_eq!(r.tcp_dropped, 1000, "{sched}");
    }
}

/// Scenario 3, the contrast: with rr the fresh director's picks have nothing to do with the
/// old one's, and most flows change server.
#[test]
fn replaced_director_moves_flows_with_round_robin() {
    let r = replace_director_mid_stream(SchedulerKind::Rr);
    assert!(r.udp_moved > 2000 / 2, "only {} of 2000 moved", r.udp_moved);
    assert!(
        r.tcp_reconnected_same < 1000 / 2,
        "{}",
        r.tcp_reconnected_same
    );
    assert_eq!(r.tcp_dropped, 1000);
}

/// Scenario 4: NAT round trip for 2000 TCP and 500 UDP flows: the director rewrites every
/// packet both ways (VIP:80 to RIP:8080 and back), every reply reaches the client from the
/// VIP with valid checksums, the NAT table holds one entry per flow and empties when they
/// time out.
#[test]
fn nat_round_trip_for_many_flows() {
    let mut net = Net::new(6);
    let cl = add_clients(&mut net);
    let servers = 0..3u8;
    let set = ServiceSet {
        services: vec![
            service(
                Protocol::Tcp,
                VIP,
                80,
                SchedulerKind::Rr,
                servers.clone().map(|i| nat_dest(rip(i), 8080, 1)).collect(),
            ),
            service(
                Protocol::Udp,
                VIP,
                53,
                SchedulerKind::Wlc,
                servers.clone().map(|i| nat_dest(rip(i), 5353, 1)).collect(),
            ),
        ],
    };
    let dir = net.add_director(DIRECTOR, &set, DirectorConfig::default(), 4);
    let nat = Reach::Nat { gateway: DIRECTOR };
    let rs: Vec<NodeId> = servers.map(|i| net.add_server(rip(i), &[], nat)).collect();

    let tcp = tcp_flows(2000, 400, 10000);
    let udp = udp_flows(500, 250);
    connect_all(&mut net, cl, &tcp);
    for _ in 0..2 {
        send_all(&mut net, cl, &tcp);
        send_all(&mut net, cl, &udp);
    }
    close_all(&mut net, cl, &tcp);

    let c = net.client(cl);
    assert_eq!(
        c.bad_replies, 0,
        "every reply from VIP:port, checksums valid"
    );
    for f in tcp.iter().chain(&udp) {
        let cf = c.flow(f);
        assert_eq!((cf.servers.len(), cf.echoed), (1, 2), "{f:?}");
    }
    assert!(tcp.iter().all(|f| c.flow(f).state == FlowState::Closed));
    // The servers saw their own address and port, never the VIP.
    for (i, &s) in rs.iter().enumerate() {
        let srv = net.server(s);
        assert!(srv
            .flows
            .keys()
            .all(|f| f.vip == rip(i as u8) && [8080, 5353].contains(&f.vport)));
        assert!(srv.flow_count() > 0);
        assert_eq!(srv.dropped(), 0);
    }
    assert_eq!(
        per_server(&net, cl, &tcp)
            .values()
            .copied()
            .collect::<Vec<_>>(),
        [667, 667, 666]
    );
    // TCP: SYN, ACK, 2 data, FIN, ACK in; SYN|ACK, 2 data, FIN|ACK out. UDP: 2 each way.
    let d = net.director(dir);
    assert_eq!(d.rewritten(), 2000 * 10 + 500 * 4);
    assert!(d.drops().is_empty(), "{:?}", d.drops());
    assert_eq!(d.nat_flows(), 2500);
    net.advance(Duration::from_secs(5 * 60 + 5));
    assert_eq!(net.director(dir).nat_flows(), 0);
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
    assert_eq!(run(11), run(11));
    assert_ne!(run(11), run(12));
}

/// Persistence across four worker cores: each of 400 clients opens five connections (on
/// whichever core its flows hash to) and all five reach one server, through the shared
/// templates. A server deleted mid-run takes its templates along: its clients' next
/// connections go to one live server each. Templates expire with their timeout once the
/// connections are gone.
#[test]
fn persistent_clients_stick_to_one_server_across_workers_and_churn() {
    let mut net = Net::new(8);
    let cl = add_clients(&mut net);
    let dr = |servers: &[u8]| {
        let dests = servers
            .iter()
            .map(|&i| dest(rip(i), 1, Forward::Dr))
            .collect();
        ServiceSet {
            services: vec![with_persistence(
                service(Protocol::Tcp, VIP, 80, SchedulerKind::Wlc, dests),
                60,
            )],
        }
    };
    let dir = net.add_director(DIRECTOR, &dr(&[0, 1, 2]), DirectorConfig::default(), 4);
    let rs: Vec<NodeId> = (0..3)
        .map(|i| net.add_server(rip(i), &[VIP], Reach::Dr))
        .collect();
    let by_client = |net: &Net, flows: &[Flow]| {
        let mut m: HashMap<Ipv4Addr, Vec<NodeId>> = HashMap::new();
        for f in flows {
            m.entry(f.client)
                .or_default()
                .push(net.client(cl).flow(f).server().unwrap());
        }
        m
    };
    let first = tcp_flows(2000, 400, 10000);
    connect_all(&mut net, cl, &first);
    send_all(&mut net, cl, &first);
    assert_stuck(&net, cl, &first, &rs, 1);
    let before = by_client(&net, &first);
    assert!(before.values().all(|s| s.iter().all(|x| *x == s[0])));
    assert_eq!(net.director(dir).templates(), 400);
    let on_c: usize = before.values().filter(|s| s[0] == rs[2]).count();
    assert!(on_c > 50, "wlc spread the clients: {on_c} on C");

    // C is deleted: its clients' next connections each go to one live server.
    net.publish(dir, &dr(&[0, 1]));
    let second = tcp_flows(2000, 400, 20000);
    connect_all(&mut net, cl, &second);
    let after = by_client(&net, &second);
    for (client, servers) in &after {
        assert!(servers.iter().all(|x| *x == servers[0]), "{client}");
        if before[client][0] != rs[2] {
            assert_eq!(servers[0], before[client][0], "{client} moved");
        } else {
            assert_ne!(servers[0], rs[2]);
        }
    }

    // Everything closes; the templates outlive the flows by their timeout, then go.
    close_all(&mut net, cl, &first);
    close_all(&mut net, cl, &second);
    net.advance(Duration::from_secs(125));
    assert_eq!(net.director(dir).conns(), 0);
    net.advance(Duration::from_secs(65));
    assert_eq!(net.director(dir).templates(), 0);
}

/// The agents run their real checks: a director outside their allow-list, a GRE key they do
/// not expect and a tunnel type they do not listen for are all refused, with the agent's drop
/// reason, and no client gets an answer.
#[test]
fn agents_refuse_tunnels_they_do_not_expect() {
    let cases = [
        // (director, how it sends, how the agent listens, the agent's drop label)
        (
            Ipv4Addr::new(10, 9, 0, 1),
            tunnel(TunnelType::Ipip, None),
            Reach::ipip(),
            "not_allowed",
        ),
        (
            DIRECTOR,
            tunnel(TunnelType::Gre, Some(42)),
            Reach::gre(Some(7)),
            "gre_key_mismatch",
        ),
        (
            DIRECTOR,
            tunnel(TunnelType::Gre, None),
            Reach::ipip(),
            "wrong_protocol",
        ),
        (
            DIRECTOR,
            tunnel(TunnelType::Ipip, None),
            Reach::gue(),
            "not_for_me",
        ),
    ];
    for (addr, forward, reach, label) in cases {
        let mut net = Net::new(9);
        let cl = add_clients(&mut net);
        let set = ServiceSet {
            services: vec![service(
                Protocol::Udp,
                VIP,
                53,
                SchedulerKind::Rr,
                vec![dest(rip(0), 1, forward)],
            )],
        };
        net.add_director(addr, &set, DirectorConfig::default(), 1);
        let rs = net.add_server(rip(0), &[VIP], reach);
        let udp = udp_flows(100, 100);
        send_all(&mut net, cl, &udp);
        let srv = net.server(rs);
        assert_eq!(srv.drops.get(label), Some(&100), "{label}: {:?}", srv.drops);
        assert_eq!(srv.flow_count(), 0);
        assert!(udp
            .iter()
            .all(|f| net.client(cl).flow(f).servers.is_empty()));
    }
}
