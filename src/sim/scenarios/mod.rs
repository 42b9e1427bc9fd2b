//! Scenarios: thousands of flows through directors, agents and the virtual network, each
//! asserting where every flow went. Named after what they show.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{
    dest, nat_dest, service, tunnel, with_expire_nodest_conn, with_persistence, DirectorConfig,
    DropReason, Duration, Flow, FlowState, Forward, InstallStats, Net, NodeId, Protocol, Reach,
    Rng, SchedulerKind, ServiceSet, TunnelType,
};

mod churn;
mod directors;
mod forwarding;

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

/// Puts `v` in a random order (Fisher-Yates).
fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i as u64 + 1) as usize);
    }
}
