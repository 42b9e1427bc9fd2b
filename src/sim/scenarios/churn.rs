//! Real servers deleted, added, held while down, and persistent clients across them.

use super::*;

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
