//! How packets reach real servers and come back: TUN (IPIP, GRE, GUE), DR and NAT, and what
//! the agents refuse.

use super::*;

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
