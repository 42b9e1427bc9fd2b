//! Second chance end to end (docs/scale-out.md, "Second chance"): two directors behind a
//! router's static multipath route, `mh` and `sloppy_tcp`, GUE to two real servers whose
//! agents allow each other.
//!
//! ```text
//!  client 192.168.140.2 (+ .10–.25) ── wan ┐
//!  d1 .11, d2 .12 ───────────── lan 192.168.150.1  router (fib_multipath_hash_policy 1)
//!  rs1 192.168.160.12, rs2 .13 ─────── dc2 ┘
//! ```
//!
//! 60 keep-alive connections on rs1 (the only server); rs2 added on both directors (their
//! tables now give about half the client addresses to rs2, their connection entries keep the
//! flows on rs1); d2 SIGKILLed and the route cut to d1: d1 picks up d2's flows with the new
//! table, sends the moved ones to rs2 with rs1 as second choice, rs2's agent has no socket
//! for them and forwards them to rs1: **0 connections lost**, and rs2's agent counts the
//! forwarded packets.

use std::net::Ipv4Addr;
use std::thread;
use std::time::Duration;

use tunlb::lab::clients::Summary;
use tunlb::lab::ecmp::{director_addr, established, REAL_SERVERS};

use crate::harness::{start_agent, start_director, start_httpd, Netns, Topology};

const VIP: &str = "192.168.150.100";
const CONNS: u32 = 60;

/// Two directors (d1, d2), the ECMP test's layout.
fn build() -> Topology {
    crate::ecmp::build_with(2)
}

fn conns_of(ns: &Netns) -> usize {
    established(
        &ns.tunlb(&["adm", "-L", "-n", "-c"]),
        VIP.parse().unwrap(),
        80,
    )
}

fn add_server(d: &Netns, rs: Ipv4Addr) {
    let to = format!("{VIP}:80");
    let rs = rs.to_string();
    d.tunlb(&[
        "adm",
        "-a",
        "-t",
        &to,
        "-r",
        &rs,
        "-i",
        "--tun-type",
        "gue",
        "-w",
        "1",
    ]);
}

#[test]
fn a_server_added_then_a_director_killed_loses_no_connection() {
    let (lost, forwarded) = server_added_then_director_killed(&[]);
    assert_eq!(lost, 0);
    assert!(forwarded > 0, "no packet took the second chance");
}

/// The control: the same with second chance off on the directors loses the connections d1
/// picks up and sends to rs2.
#[test]
fn without_second_chance_the_same_change_loses_connections() {
    let (lost, forwarded) = server_added_then_director_killed(&["--second-chance-window", "0"]);
    assert!(lost > 0, "nothing lost without second chance");
    assert_eq!(forwarded, 0);
}

/// Runs the scenario with `extra` director arguments: (connections lost, packets rs2's agent
/// forwarded).
fn server_added_then_director_killed(extra: &[&str]) -> (u32, u64) {
    let lab = build();
    let (client, router) = (lab.ns("client"), lab.ns("router"));
    let (d1, d2) = (lab.ns("d1"), lab.ns("d2"));
    // Each agent takes tunnels from the directors and from the other real server.
    let mut agents = Vec::new();
    for (role, rip) in ["rs1", "rs2"].into_iter().zip(REAL_SERVERS) {
        let ns = lab.ns(role);
        agents.push(start_agent(ns, VIP, "gue", "192.168.128.0/18"));
        start_httpd(ns, &format!("{VIP}:80"), &format!("from {rip}"), &[]);
    }
    let mut directors = Vec::new();
    for d in [d1, d2] {
        let mut args = vec!["--sloppy-tcp", "--queues", "1"];
        args.extend_from_slice(extra);
        directors.push(start_director(d, &args));
        d.tunlb(&["adm", "-A", "-t", &format!("{VIP}:80"), "-s", "mh"]);
        add_server(d, REAL_SERVERS[0]);
    }
    router.ip(&format!(
        "route add {VIP} nexthop via {} nexthop via {}",
        director_addr(1),
        director_addr(2)
    ));
    let body = client.exec(
        "curl",
        &["-s", "--max-time", "5", &format!("http://{VIP}/")],
    );
    assert!(body.starts_with("from 192.168.160.12"), "{body}");

    let clients = crate::ecmp::start_clients(client, CONNS);
    thread::sleep(Duration::from_millis(500));
    let spread = [conns_of(d1), conns_of(d2)];
    eprintln!("second chance: connections per director (d1, d2): {spread:?}");
    assert!(spread.iter().all(|&n| n > 0), "{spread:?}");

    // rs2 joins both tables: established flows stay on rs1 (the entries decide).
    for d in [d1, d2] {
        add_server(d, REAL_SERVERS[1]);
    }
    thread::sleep(Duration::from_secs(1));

    // d2 dies; the router sends everything to d1, which picks d2's flows up.
    d2.signal(directors[1], "KILL");
    router.ip(&format!("route replace {VIP} via {}", director_addr(1)));
    thread::sleep(Duration::from_secs(3));
    eprintln!(
        "second chance: d1 has {} connections after the kill",
        conns_of(d1)
    );

    client.signal(clients, "TERM");
    let (status, out) = client.wait_exit(clients, Duration::from_secs(30));
    assert!(status.success(), "tunlb lab clients: {out}");
    let summary = Summary::from_output(&out).expect("the clients' summary");
    let rs2 = lab.ns("rs2");
    rs2.signal(agents[1], "TERM");
    let (_, log) = rs2.wait_exit(agents[1], Duration::from_secs(10));
    let forwarded = log
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("chance_forwarded="))
        .filter_map(|n| n.parse::<u64>().ok())
        .next_back()
        .unwrap_or(0);
    eprintln!(
        "second chance: {} of {} connections lost; rs2's agent forwarded {forwarded} packets to rs1",
        summary.lost, summary.established
    );
    assert_eq!(summary.established, CONNS);
    if forwarded > 0 {
        assert_eq!(summary.lost, 0, "{:#?}", summary.lost_detail);
    }
    (summary.lost, forwarded)
}
