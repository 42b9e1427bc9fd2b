//! Directors behind ECMP (issue 14): a router spreads the VIP's flows over several directors
//! with a multipath route that BIRD learns over BGP from each director's BIRD, and the
//! directors all choose the same real server for a flow.
//!
//! ```text
//!  client 192.168.140.2 (+ .10–.25) ── wan ┐
//!  d1 .11, d2 .12, d3 .13, d4 .14 ── lan 192.168.150.1  router (BIRD, fib_multipath_hash_policy 1)
//!  rs1 192.168.160.12, rs2 .13 ─────── dc2 ┘
//! ```
//!
//! The layout, the BIRD configs (`configs/bird-director.conf`, `configs/bird-router.conf`, used
//! as shipped), the directors' arguments and `tunlb adm` commands are the ECMP lab's
//! ([`tunlb::lab::ecmp`]): each director runs `tunlb director --announce-table 100
//! --sloppy-tcp` with VIP:80 `mh` over both real servers (TUN mode, IPIP), and BIRD, which
//! announces the VIP while table 100 holds it. The client holds 60 keep-alive connections
//! from 16 source addresses (so `mh` uses both real servers), a request on each every 100 ms,
//! and opens a probe connection every 50 ms (`tunlb lab clients`).
//!
//! `ecmp::directors_share_flows_and_lose_none` checks, in one run:
//! - the router's route has one nexthop per director and every director carries some of the
//!   connections;
//! - director 3 SIGKILLed (its BIRD lives on): its nexthop leaves the router's route (the VIP
//!   route went with its TUN device), no connection is lost (the other directors pick up its
//!   flows with the same Maglev table), new connections fail for at most 1 s;
//! - a fourth director started: it joins the route, takes some flows, none is lost;
//! - rs2 removed from every director: exactly the connections rs2 served are lost (reset by
//!   rs1, which has no socket for them), every other connection keeps going;
//! - after the clients stop: a director whose service has no live real server left withdraws
//!   its route (and the router drops its nexthop), and announces again when one comes back;
//!   then its link goes down (as when the host freezes: no goodbye reaches the router): BFD
//!   takes its nexthop out within 1 s.
//!
//! `ecmp::a_failed_health_check_withdraws_the_vip_and_a_passing_one_announces_it`: a director
//! whose only real server fails its TCP check withdraws the VIP, and announces it again when
//! the check passes. `ecmp::lab_demo_kills_a_director_and_loses_no_connection` runs
//! `tunlb lab demo --mode ecmp` as a user would.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tunlb::lab::clients::Summary;
use tunlb::lab::ecmp::{
    adm_commands, bird_args, client_sources, director_addr, director_args, established, nexthops,
    ANNOUNCE_TABLE, BIRD_DIRECTOR_CONF, BIRD_ROUTER_CONF, DIRECTORS_LAN, REAL_SERVERS,
};

use crate::harness::{
    start_agent, start_director, start_httpd, wait_until, Netns, Pid, TempPath, Topology, TUNLB,
};

/// The virtual service address (on the directors' LAN, routed by the router to them).
const VIP: &str = "192.168.150.100";
/// Keep-alive connections the client holds.
const CONNS: u32 = 60;

/// The BIRD binary; a missing one fails the test (never a silent pass).
fn bird() -> PathBuf {
    ["/usr/sbin/bird", "/usr/bin/bird", "/sbin/bird"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("BIRD 2 is not installed: apt-get install bird2 (the ECMP test runs it)")
        })
}

/// Starts `tunlb lab clients` in `client`: `conns` keep-alive connections to the VIP from the
/// 16 client source addresses; returns once all are established (also the second-chance
/// test's clients).
pub(crate) fn start_clients(client: &Netns, conns: u32) -> Pid {
    let to = format!("{VIP}:80");
    let n = conns.to_string();
    let from: Vec<String> = client_sources().iter().map(Ipv4Addr::to_string).collect();
    let from = from.join(",");
    let clients = client.spawn(
        "clients",
        TUNLB,
        &[
            "lab",
            "clients",
            "--to",
            &to,
            "--conns",
            &n,
            "--from",
            &from,
            "--status-every",
            "0",
        ],
    );
    wait_until(
        "the client's keep-alive connections",
        Duration::from_secs(15),
        || {
            client.assert_running(clients);
            client
                .log(clients)
                .contains(&format!("all {conns} connections established"))
        },
    );
    clients
}

/// The topology above; no process started.
fn build() -> Topology {
    build_with(4)
}

/// The topology above with `directors` director namespaces `d1`… (also the second-chance
/// test's, with two); no process started.
pub(crate) fn build_with(directors: u8) -> Topology {
    let mut b = Topology::builder().netns("client").netns("router");
    for i in 1..=directors {
        b = b.netns(&format!("d{i}"));
    }
    let mut b = b
        .netns("rs1")
        .netns("rs2")
        .bridge("router", "wan", "192.168.140.1/24")
        .bridge("router", "lan", "192.168.150.1/24")
        .bridge("router", "dc2", "192.168.160.1/24")
        .link_to_bridge(
            ("client", "eth0", "192.168.140.2/24"),
            "router",
            "to-client",
            "wan",
        )
        .route("client", "default via 192.168.140.1");
    for i in 1..=directors {
        let role = format!("d{i}");
        let addr = format!("{}/24", director_addr(i));
        b = b
            .link_to_bridge(
                (role.as_str(), "eth0", addr.as_str()),
                "router",
                &format!("to-d{i}"),
                "lan",
            )
            .route(&role, "default via 192.168.150.1");
    }
    for (role, rip) in ["rs1", "rs2"].into_iter().zip(REAL_SERVERS) {
        let addr = format!("{rip}/24");
        b = b
            .link_to_bridge(
                (role, "eth0", addr.as_str()),
                "router",
                &format!("to-{role}"),
                "dc2",
            )
            .route(role, "default via 192.168.160.1");
    }
    let lab = b.forwarding("router").build();
    lab.ns("router")
        .sysctl("net.ipv4.fib_multipath_hash_policy", "1");
    for a in client_sources() {
        lab.ns("client").ip(&format!("addr add {a}/24 dev eth0"));
    }
    lab
}

/// A BIRD daemon and its files (removed when dropped, after the namespace stopped it).
struct Bird {
    pid: Pid,
    _files: [TempPath; 3],
}

/// Starts BIRD in `ns` with `conf` (foreground, its own control socket and pid file) and waits
/// for its control socket.
fn start_bird(ns: &Netns, conf: &str) -> Bird {
    let file = TempPath::new(&format!("{}-bird.conf", ns.name()));
    std::fs::write(file.path(), conf).expect("write a BIRD config");
    let ctl = TempPath::new(&format!("{}-bird.ctl", ns.name()));
    let pidfile = TempPath::new(&format!("{}-bird.pid", ns.name()));
    let args = bird_args(&file.arg(), &ctl.arg(), &pidfile.arg());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let pid = ns.spawn("bird", &bird().to_string_lossy(), &args);
    wait_until(
        &format!("BIRD's control socket in {}", ns.name()),
        Duration::from_secs(10),
        || {
            ns.assert_running(pid);
            ctl.path().exists()
        },
    );
    Bird {
        pid,
        _files: [file, ctl, pidfile],
    }
}

/// Starts a director as the lab does (announce table, sloppy TCP, the same `adm` commands),
/// checks that it routed the VIP into the announce table, then starts its BIRD.
fn start_ecmp_director(ns: &Netns) -> (Pid, Bird) {
    let args = director_args();
    let args: Vec<&str> = args[1..].iter().map(String::as_str).collect();
    let director = start_director(ns, &args);
    for cmd in adm_commands() {
        let cmd: Vec<&str> = std::iter::once("adm")
            .chain(cmd.iter().map(String::as_str))
            .collect();
        ns.tunlb(&cmd);
    }
    let table = ns.ip(&format!("route show table {ANNOUNCE_TABLE}"));
    assert!(
        table.contains(&format!("{VIP} dev tunlb0")),
        "{}: the VIP is not in table {ANNOUNCE_TABLE}: {table}",
        ns.name()
    );
    (director, start_bird(ns, BIRD_DIRECTOR_CONF))
}

/// The directors the router's route to the VIP goes through now.
fn router_nexthops(router: &Netns) -> Vec<Ipv4Addr> {
    nexthops(&router.ip(&format!("route show {VIP}")))
}

/// Polls the router every 5 ms until its route to the VIP goes through exactly `want`;
/// returns when it was seen.
fn wait_nexthops(router: &Netns, want: &[u8], timeout: Duration) -> Instant {
    let mut want: Vec<Ipv4Addr> = want.iter().map(|&i| director_addr(i)).collect();
    want.sort();
    let start = Instant::now();
    loop {
        let now = router_nexthops(router);
        if now == want {
            return Instant::now();
        }
        if start.elapsed() > timeout {
            panic!(
                "the router's route to {VIP} goes through {now:?}, not {want:?}, after \
                 {timeout:?}"
            );
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// The ESTABLISHED connections to the VIP that the director in `ns` lists.
fn conns_of(ns: &Netns) -> usize {
    established(
        &ns.tunlb(&["adm", "-L", "-n", "-c"]),
        VIP.parse().unwrap(),
        80,
    )
}

/// Milliseconds since the UNIX epoch (the clients' summary uses that origin).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[test]
fn directors_share_flows_and_lose_none() {
    let lab = build();
    let (client, router) = (lab.ns("client"), lab.ns("router"));
    let d = |i: u8| lab.ns(&format!("d{i}"));
    let _router_bird = start_bird(router, BIRD_ROUTER_CONF);
    for (role, rip) in ["rs1", "rs2"].into_iter().zip(REAL_SERVERS) {
        let ns = lab.ns(role);
        start_agent(ns, VIP, "ipip", DIRECTORS_LAN);
        start_httpd(ns, &format!("{VIP}:80"), &format!("from {rip}"), &[]);
    }
    let started = Instant::now();
    let mut directors: Vec<(Pid, Bird)> = (1..=3).map(|i| start_ecmp_director(d(i))).collect();
    wait_nexthops(router, &[1, 2, 3], Duration::from_secs(20));
    eprintln!(
        "ECMP: the router's route has 3 nexthops {:.1} s after the directors started:\n{}",
        started.elapsed().as_secs_f64(),
        router.ip(&format!("route show {VIP}"))
    );
    let body = client.exec(
        "curl",
        &["-s", "--max-time", "5", &format!("http://{VIP}/")],
    );
    assert!(body.starts_with("from 192.168.160.1"), "{body}");

    // 60 keep-alive connections.
    let clients = start_clients(client, CONNS);
    let to = format!("{VIP}:80");
    thread::sleep(Duration::from_millis(300));
    let spread: Vec<usize> = (1..=3).map(|i| conns_of(d(i))).collect();
    eprintln!("ECMP: connections per director (d1, d2, d3): {spread:?}");
    assert!(
        spread.iter().all(|&n| n > 0),
        "the router did not spread the connections over all three directors: {spread:?}"
    );
    assert!(spread.iter().sum::<usize>() >= CONNS as usize, "{spread:?}");
    thread::sleep(Duration::from_millis(700));

    // Director 3 dies without a word; its BIRD lives on.
    let killed = (Instant::now(), unix_ms());
    let (d3, _) = &directors[2];
    d(3).signal(*d3, "KILL");
    let shrunk = wait_nexthops(router, &[1, 2], Duration::from_secs(5));
    let withdrawal = shrunk.duration_since(killed.0);
    let (status, _) = d(3).wait_exit(*d3, Duration::from_secs(5));
    assert!(!status.success(), "{status}");
    d(3).assert_running(directors[2].1.pid);
    assert_eq!(
        d(3).ip(&format!("route show table {ANNOUNCE_TABLE}"))
            .trim(),
        "",
        "the announce route outlived the director"
    );
    thread::sleep(Duration::from_secs(3));
    let after_kill: Vec<usize> = (1..=2).map(|i| conns_of(d(i))).collect();

    // A fourth director joins.
    let added = (Instant::now(), unix_ms());
    directors.push(start_ecmp_director(d(4)));
    let joined = wait_nexthops(router, &[1, 2, 4], Duration::from_secs(20));
    let join_time = joined.duration_since(added.0);
    thread::sleep(Duration::from_secs(3));
    let after_add: Vec<usize> = [1, 2, 4].iter().map(|&i| conns_of(d(i))).collect();
    assert!(
        after_add[2] > 0,
        "the fourth director took no flow: {after_add:?}"
    );

    // rs2 leaves every director's table.
    let removed = (Instant::now(), unix_ms());
    let rs2 = REAL_SERVERS[1].to_string();
    for i in [1, 2, 4] {
        d(i).tunlb(&["adm", "-d", "-t", &to, "-r", &rs2]);
    }
    thread::sleep(Duration::from_secs(3));
    assert_eq!(
        router_nexthops(router).len(),
        3,
        "rs1 is live: still announced"
    );

    client.signal(clients, "TERM");
    let (status, out) = client.wait_exit(clients, Duration::from_secs(30));
    assert!(status.success(), "tunlb lab clients: {out}");
    let summary = Summary::from_output(&out).expect("the clients' summary");

    // No live real server left on d4: it withdraws; one back: it announces again.
    let rs1 = REAL_SERVERS[0].to_string();
    d(4).tunlb(&["adm", "-d", "-t", &to, "-r", &rs1]);
    wait_nexthops(router, &[1, 2], Duration::from_secs(5));
    d(4).tunlb(&["adm", "-a", "-t", &to, "-r", &rs1, "-i", "-w", "1"]);
    wait_nexthops(router, &[1, 2, 4], Duration::from_secs(5));
    // d4's link fails (as when its host freezes): no TCP close, no withdrawal reaches the
    // router; only BFD can tell.
    let cut = Instant::now();
    d(4).ip("link set dev eth0 down");
    let bfd = wait_nexthops(router, &[1, 2], Duration::from_secs(5)).duration_since(cut);
    d(4).assert_running(directors[3].1.pid);

    let rel = |unix: u64| unix.saturating_sub(summary.start_unix_ms);
    let (kill_ms, add_ms, remove_ms) = (rel(killed.1), rel(added.1), rel(removed.1));
    let kill_outage = summary
        .outages
        .iter()
        .filter(|o| o.start_ms + 200 >= kill_ms && o.start_ms < add_ms)
        .map(|o| o.length_ms)
        .max()
        .unwrap_or(0);
    let rs2_from = format!("from {}", REAL_SERVERS[1]);
    let served_rs2 = summary
        .served_by
        .iter()
        .find(|(by, _)| *by == rs2_from)
        .map_or(0, |(_, n)| *n);
    eprintln!(
        "ECMP: d3 SIGKILLed: its nexthop left the router's route {:.3} s later; new connections \
         failed {:.2} s; connections then (d1, d2) {after_kill:?}. d4 joined the route {:.1} s \
         after its start; connections then (d1, d2, d4) {after_add:?}. rs2 removed: {} \
         connections lost of the {served_rs2} it served. {} of {} connections lost in all, \
         {} requests, slowest {} ms; served by {:?}; outages {:?}",
        withdrawal.as_secs_f64(),
        kill_outage as f64 / 1000.0,
        join_time.as_secs_f64(),
        summary
            .lost_conns
            .iter()
            .filter(|l| l.at_ms + 200 >= remove_ms)
            .count(),
        summary.lost,
        summary.established,
        summary.requests,
        summary.max_request_ms,
        summary.served_by,
        summary.outages
    );
    eprintln!(
        "ECMP: d4's link down: BFD took its nexthop out {:.3} s later",
        bfd.as_secs_f64()
    );
    assert!(bfd < Duration::from_secs(1), "BFD took {bfd:?}");
    assert_eq!(summary.established, CONNS, "{summary:?}");
    assert_eq!(
        summary.served_by.len(),
        2,
        "mh used one real server: {summary:?}"
    );
    // Nothing lost before rs2 left; then exactly rs2's connections.
    let early: Vec<&String> = summary
        .lost_conns
        .iter()
        .zip(&summary.lost_detail)
        .filter(|(l, _)| l.at_ms + 200 < remove_ms)
        .map(|(_, d)| d)
        .collect();
    assert!(
        early.is_empty(),
        "connections lost at the director kill or addition: {early:#?}"
    );
    assert!(
        summary
            .lost_conns
            .iter()
            .all(|l| l.served_by.as_deref() == Some(rs2_from.as_str())),
        "a connection of rs1 was lost when rs2 left: {:#?}",
        summary.lost_detail
    );
    assert_eq!(
        summary.lost, served_rs2,
        "not every connection of rs2 moved: {:#?}",
        summary.lost_detail
    );
    assert!(
        summary.stalest_ms < 3000,
        "a surviving connection stopped carrying requests: {summary:?}"
    );
    assert!(
        withdrawal < Duration::from_secs(1),
        "the killed director's route stayed {withdrawal:?}"
    );
    assert!(
        kill_outage <= 1000,
        "new connections failed {kill_outage} ms after the kill: {:?}",
        summary.outages
    );
    assert!(
        summary
            .outages
            .iter()
            .all(|o| !o.ongoing && o.length_ms <= 1000),
        "new connections failed too long: {:?}",
        summary.outages
    );
    drop(directors);
}

/// `tunlb lab demo --mode ecmp`, run as a user would, with a prefix of its own: it builds the
/// lab, shows the multipath route and both real servers answering, kills a director under 60
/// connections and loses none; nothing of it is left afterwards (BIRD included).
#[test]
fn lab_demo_kills_a_director_and_loses_no_connection() {
    crate::harness::require_root_and_tools();
    bird();
    let prefix = format!("tlbe{}", std::process::id());
    let ours = || -> Vec<String> {
        crate::harness::netns_list()
            .into_iter()
            .filter(|ns| ns.starts_with(&format!("{prefix}-")))
            .collect()
    };
    let state = PathBuf::from("/run/tunlb-lab").join(&prefix);
    assert!(ours().is_empty());
    let out = crate::harness::output(
        std::process::Command::new(TUNLB)
            .args(["lab", "demo", "--mode", "ecmp", "--prefix", &prefix]),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = format!(
        "{stdout}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if !ours().is_empty() || state.exists() {
        let down = crate::harness::output(
            std::process::Command::new(TUNLB).args(["lab", "down", "--prefix", &prefix]),
        );
        eprintln!("cleanup: {}", String::from_utf8_lossy(&down.stdout));
    }
    assert!(out.status.success(), "lab demo --mode ecmp failed:\n{log}");
    for want in [
        format!("[lab] creating namespace {prefix}-director3"),
        "[lab] connections survived: 60/60".to_owned(),
        format!("[lab] deleting namespace {prefix}-director3"),
    ] {
        assert!(
            stdout.lines().any(|l| l == want),
            "{want:?} not printed:\n{log}"
        );
    }
    for rs in REAL_SERVERS {
        assert!(
            stdout.contains(&format!(" from {rs}")),
            "no answer from {rs}:\n{log}"
        );
    }
    assert!(
        stdout
            .lines()
            .any(|l| l.trim() == "nexthop via 192.168.150.13 dev lan weight 1"),
        "no nexthop via director3:\n{log}"
    );
    assert!(
        stdout.contains("the router's route lost director3's nexthop"),
        "{log}"
    );
    assert!(ours().is_empty(), "namespaces left: {:?}\n{log}", ours());
    assert!(!state.exists(), "state folder left:\n{log}");
}

/// A director whose only real server fails its health check withdraws the VIP (the router's
/// route goes), and announces it again when the check passes: the announce route follows the
/// health-checked table, not only `adm` edits. One director (d1, from a TOML config with
/// `announce_table` and a TCP check through the tunnel), one real server (rs1).
#[test]
fn a_failed_health_check_withdraws_the_vip_and_a_passing_one_announces_it() {
    // connect_timeout 1, retry 1, delay_before_retry 1, delay_loop 1: down within ~5 s.
    const DETECT: Duration = Duration::from_secs(8);
    let lab = build();
    let (router, d1, rs1) = (lab.ns("router"), lab.ns("d1"), lab.ns("rs1"));
    let _router_bird = start_bird(router, BIRD_ROUTER_CONF);
    let rip = REAL_SERVERS[0];
    start_agent(rs1, VIP, "ipip", DIRECTORS_LAN);
    let httpd = start_httpd(rs1, &format!("{VIP}:80"), &format!("from {rip}"), &[]);
    let text = format!(
        "[director]\nqueues = 1\nannounce_table = {ANNOUNCE_TABLE}\n\n[[service]]\n\
         vip = \"{VIP}\"\nport = 80\nscheduler = \"mh\"\ndelay_loop = 1\n\n\
         \x20 [[service.real_server]]\n  address = \"{rip}\"\n  forward = \"tunnel\"\n\
         \x20 [service.real_server.check]\n  type = \"tcp\"\n  connect_timeout = 1\n\
         \x20 retry = 1\n  delay_before_retry = 1\n  warmup = 0\n  check_through_tunnel = true\n"
    );
    let file = TempPath::new(&format!("{}-ecmp-health.toml", d1.name()));
    std::fs::write(file.path(), text).expect("write the config");
    let director = start_director(d1, &["--config", &file.arg()]);
    let _bird = start_bird(d1, BIRD_DIRECTOR_CONF);
    wait_nexthops(router, &[1], Duration::from_secs(20));

    rs1.stop(httpd);
    let stopped = Instant::now();
    let down = wait_nexthops(router, &[], DETECT).duration_since(stopped);
    assert_eq!(
        d1.ip(&format!("route show table {ANNOUNCE_TABLE}")).trim(),
        "",
        "the VIP stays in the announce table with its only real server down"
    );
    assert!(
        d1.ip("route show").contains(&format!("{VIP} dev tunlb0")),
        "forwarding changed: the VIP left the main table"
    );

    let restarted = Instant::now();
    start_httpd(rs1, &format!("{VIP}:80"), &format!("from {rip}"), &[]);
    let up = wait_nexthops(router, &[1], DETECT).duration_since(restarted);
    d1.assert_running(director);
    eprintln!(
        "ECMP health: rs1's httpd stopped: the VIP withdrawn {:.1} s later; started again: \
         announced {:.1} s later",
        down.as_secs_f64(),
        up.as_secs_f64()
    );
}
