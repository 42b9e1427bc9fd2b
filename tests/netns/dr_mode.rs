//! DR mode (`-g`) in the seed's layout ([`dr_lab`]): client, director and two real servers on
//! one LAN. The director answers ARP for the VIP (`--announce eth0`) and passes each client
//! packet unchanged in a frame to a real server's MAC; the real server (`tunlb realserver
//! --mode dr`: hidden VIP) answers the client directly, so no reply crosses the director.

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

use tunlb::lab::httpd::{blob_sha256, sha256_hex};

use crate::harness::dr_lab::{self, BEHIND_ROUTER, CLIENT, DIRECTOR_LAN_IF, RS1, RS2, VIP};
use crate::harness::{
    adm, curl_upload_args, start_director, start_dr_agent, start_httpd, upload_blob, wait_until,
    Netns, Pid, ReplyCounters, TempPath, Topology, TUNLB,
};

/// The real servers: namespace role and address.
const REAL_SERVERS: [(&str, &str); 2] = [("rs1", RS1), ("rs2", RS2)];

/// Where the director of the DR lab serves `/metrics`.
const METRICS: &str = "127.0.0.1:9100";

/// The DR lab with the director, and on each real server the DR agent and an httpd on VIP:80
/// with banner "from RIP".
struct Lab {
    topo: Topology,
    director: Pid,
    /// The agents of rs1 and rs2, in that order.
    agents: Vec<Pid>,
}

impl Lab {
    fn start() -> Lab {
        let topo = dr_lab::build();
        let director = start_director(
            topo.ns("director"),
            &["--announce", DIRECTOR_LAN_IF, "--metrics-listen", METRICS],
        );
        let mut agents = Vec::new();
        for (role, rip) in REAL_SERVERS {
            let ns = topo.ns(role);
            agents.push(start_dr_agent(ns, VIP));
            start_httpd(ns, &format!("{VIP}:80"), &banner(rip), &[]);
        }
        Lab {
            topo,
            director,
            agents,
        }
    }

    fn ns(&self, role: &str) -> &Netns {
        self.topo.ns(role)
    }

    fn adm(&self, args: &str) -> String {
        adm(self.ns("director"), args)
    }

    /// The service VIP:80 (rr) with the given real servers, each `-g -w 1`.
    fn add_service(&self, rips: &[&str]) {
        self.adm(&format!("-A -t {VIP}:80 -s rr"));
        for rip in rips {
            self.adm(&format!("-a -t {VIP}:80 -r {rip} -g -w 1"));
        }
    }

    /// `n` requests from the client to the VIP, each on a new connection, in one curl run that
    /// stops at the first failure. Returns the answers' lines, in order.
    fn get_many(&self, n: usize, max_time: &str) -> Vec<String> {
        let url = format!("http://{VIP}/");
        let mut args = vec!["-s", "-f", "--fail-early", "--max-time", max_time];
        args.extend(["-H", "Connection: close"]);
        args.extend(std::iter::repeat_n(url.as_str(), n));
        let out = self.ns("client").try_exec("curl", &args);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Stops the director and returns what it logged (its counters at exit included).
    fn stop_director(&self) -> String {
        let ns = self.ns("director");
        ns.signal(self.director, "TERM");
        let (status, log) = ns.wait_exit(self.director, Duration::from_secs(10));
        assert!(status.success(), "the director failed: {log}");
        log
    }
}

fn banner(rip: &str) -> String {
    format!("from {rip}")
}

fn count(answers: &[String]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for a in answers {
        *counts.entry(a.as_str()).or_insert(0) += 1;
    }
    counts
}

/// The seed's walk-through: `-A -t VIP:80 -s rr`, `-a ... -g -w 1` twice; 40 requests reach
/// both real servers 20/20; the director sees every request and no reply; `-ln` shows `Route`.
#[test]
fn rr_serves_both_real_servers_and_replies_bypass_the_director() {
    let lab = Lab::start();
    let (director, client) = (lab.ns("director"), lab.ns("client"));
    let counters = ReplyCounters::install(director, client, VIP, "");
    lab.add_service(&[RS1, RS2]);

    let answers = lab.get_many(40, "5");
    assert_eq!(
        answers.len(),
        40,
        "only {} answered: {answers:?}",
        answers.len()
    );
    let counts = count(&answers);
    assert_eq!(counts.get(banner(RS1).as_str()), Some(&20), "{counts:?}");
    assert_eq!(counts.get(banner(RS2).as_str()), Some(&20), "{counts:?}");

    // 40 connections: at least 2 replies and 4 requests each.
    counters.assert_bypassed(79, 159);

    let listing = lab.adm("-L -n");
    eprintln!("{listing}");
    for rip in [RS1, RS2] {
        let prefix = format!("  -> {:<28} {:<7} {:<6} ", format!("{rip}:80"), "Route", 1);
        assert!(
            listing.lines().any(|l| l.starts_with(&prefix)),
            "no line starting {prefix:?} in:\n{listing}"
        );
    }
    let conns = lab.adm("-L -n -c");
    assert!(conns.contains(CLIENT), "{conns}");

    let log = lab.stop_director();
    assert!(
        log.contains(&format!("real server {RS1} (DR) is at ")),
        "the resolver did not log {RS1}'s MAC:\n{log}"
    );
    assert!(!log.contains("send_failed"), "{log}");
}

/// A real server the director reaches only through a router is refused with a clear message,
/// and the table stays as it was.
#[test]
fn a_real_server_behind_a_router_is_refused() {
    let lab = Lab::start();
    lab.adm(&format!("-A -t {VIP}:80 -s rr"));
    let before = lab.adm("-L -n");
    let out = lab.ns("director").try_exec(
        TUNLB,
        &[
            "adm",
            "-a",
            "-t",
            &format!("{VIP}:80"),
            "-r",
            BEHIND_ROUTER,
            "-g",
            "-w",
            "1",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "adding {BEHIND_ROUTER} with -g succeeded"
    );
    let wanted = format!(
        "real server {BEHIND_ROUTER} is not on a directly connected network: DR cannot cross a router (use -i)"
    );
    assert!(stderr.contains(&wanted), "stderr: {stderr}");
    assert_eq!(lab.adm("-L -n"), before);
    // The same address as a tunnel server is fine (a tunnel crosses routers).
    lab.adm(&format!("-a -t {VIP}:80 -r {BEHIND_ROUTER} -i -w 1"));
}

/// A real server whose MAC cannot be learnt yet (its link is down when it is added): packets
/// for it are dropped and counted as `neighbour_unresolved`; once it comes up, the resolver
/// learns its MAC within about a second and requests pass. Its agent undoes its settings on
/// exit.
#[test]
fn an_unknown_mac_is_resolved_and_early_drops_are_counted() {
    let lab = Lab::start();
    let rs1 = lab.ns("rs1");
    rs1.ip("link set dev eth0 down");
    lab.add_service(&[RS1]);

    let answers = lab.get_many(1, "2");
    assert!(
        answers.is_empty(),
        "rs1 answered while its link was down: {answers:?}"
    );

    rs1.ip("link set dev eth0 up");
    wait_until(
        "requests to pass once rs1 is up",
        Duration::from_secs(15),
        || lab.get_many(1, "2").len() == 1,
    );
    let answers = lab.get_many(10, "5");
    assert_eq!(answers, vec![banner(RS1); 10]);

    let log = lab.stop_director();
    let drops = log
        .lines()
        .filter(|l| l.contains("at exit:"))
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("neighbour_unresolved="))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .unwrap_or(0);
    assert!(drops >= 1, "no neighbour_unresolved drops counted:\n{log}");

    // The agent restores arp_ignore / arp_announce and takes the VIP off lo.
    assert_eq!(rs1.read_sysctl("net.ipv4.conf.eth0.arp_ignore"), "1");
    rs1.signal(lab.agents[0], "TERM");
    let (status, log) = rs1.wait_exit(lab.agents[0], Duration::from_secs(10));
    assert!(status.success(), "{log}");
    for key in ["all", "lo", "eth0"] {
        assert_eq!(
            rs1.read_sysctl(&format!("net.ipv4.conf.{key}.arp_ignore")),
            "0"
        );
        assert_eq!(
            rs1.read_sysctl(&format!("net.ipv4.conf.{key}.arp_announce")),
            "0"
        );
    }
    assert!(!rs1.ip("-o addr show dev lo").contains(VIP));
}

/// 16 MB up (full-size 1500-byte packets through the director's AF_PACKET socket) and 16 MB
/// down (straight from the real server) arrive intact; prints the rates as a rough measure.
#[test]
fn large_upload_and_download_arrive_intact() {
    const SIZE: u64 = 16 << 20;
    let lab = Lab::start();
    lab.add_service(&[RS1, RS2]);
    let client = lab.ns("client");

    let up = upload_blob(client, "dr-upload", SIZE);
    let body = format!("@{}", up.arg());
    let url = format!("http://{VIP}/upload");
    let start = Instant::now();
    let answer = client.exec("curl", &curl_upload_args(&body, &url));
    let up_secs = start.elapsed().as_secs_f64();
    assert_eq!(
        answer,
        format!("length {SIZE}\nsha256 {}\n", blob_sha256(SIZE)),
        "upload"
    );

    let down = TempPath::new(&format!("dr-download-{}", client.name()));
    let url = format!("http://{VIP}/bytes/{SIZE}");
    let start = Instant::now();
    let out = client.try_exec(
        "curl",
        &["-s", "-f", "--max-time", "60", "-o", &down.arg(), &url],
    );
    let down_secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "download: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = fs::read(down.path()).expect("read the download");
    assert_eq!(got.len() as u64, SIZE, "download size");
    assert_eq!(sha256_hex(&got), blob_sha256(SIZE), "download corrupted");
    let mbit = |secs: f64| SIZE as f64 * 8.0 / secs / 1e6;
    eprintln!(
        "DR: upload {:.0} Mbit/s ({up_secs:.2} s), download {:.0} Mbit/s ({down_secs:.2} s)",
        mbit(up_secs),
        mbit(down_secs)
    );
    let log = lab.stop_director();
    assert!(!log.contains("send_failed"), "{log}");
    assert!(!log.contains("too_big"), "{log}");
}

/// Modes mix, as IPVS allows: one service with rs1 reached by DR (`-g`) and rs2 by an IPIP
/// tunnel (`-i`, its agent on the same LAN). Round robin alternates between them and `-L -n`
/// shows the forwarding method per real server.
#[test]
fn one_service_mixes_dr_and_tunnel_servers() {
    let topo = dr_lab::build();
    let director = topo.ns("director");
    start_director(director, &["--announce", DIRECTOR_LAN_IF]);
    let rs1 = topo.ns("rs1");
    start_dr_agent(rs1, VIP);
    start_httpd(rs1, &format!("{VIP}:80"), &banner(RS1), &[]);
    let rs2 = topo.ns("rs2");
    crate::harness::start_agent(rs2, VIP, "ipip", "192.168.150.11/32");
    start_httpd(rs2, &format!("{VIP}:80"), &banner(RS2), &[]);

    adm(director, &format!("-A -t {VIP}:80 -s rr"));
    adm(director, &format!("-a -t {VIP}:80 -r {RS1} -g -w 1"));
    adm(
        director,
        &format!("-a -t {VIP}:80 -r {RS2} -i -w 1 --tun-type ipip"),
    );
    let listing = adm(director, "-L -n");
    for (rip, method) in [(RS1, "Route"), (RS2, "Tunnel")] {
        let prefix = format!("  -> {:<28} {:<7} 1", format!("{rip}:80"), method);
        assert!(
            listing.lines().any(|l| l.starts_with(&prefix)),
            "{prefix:?} in:\n{listing}"
        );
    }

    let url = format!("http://{VIP}/");
    let mut args = vec!["-s", "-f", "--max-time", "5", "-H", "Connection: close"];
    // The first DR packet may wait for the neighbour entry: retry a failed request once.
    args.extend(["--retry", "1", "--retry-all-errors"]);
    args.extend(std::iter::repeat_n(url.as_str(), 20));
    let out = topo.ns("client").try_exec("curl", &args);
    let answers: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let from = |rip: &str| answers.iter().filter(|a| **a == banner(rip)).count();
    assert_eq!(answers.len(), 20, "{answers:?}");
    assert_eq!((from(RS1), from(RS2)), (10, 10), "{answers:?}");
}

/// UDP GRO forwarding on the director's NIC: the kernel's UDP trains are decided whole and
/// leave as one Ethernet frame each (`GSO_UDP_L4`, cut by the kernel on the way to the real
/// server); every datagram arrives intact (see [`crate::harness::udp_trains_check`]).
#[test]
fn udp_trains_are_decided_whole_and_arrive_intact() {
    let lab = Lab::start();
    crate::harness::udp_trains_check(
        (lab.ns("director"), lab.director),
        (lab.ns("lan"), "to-dir"),
        lab.ns("client"),
        &[lab.ns("rs1"), lab.ns("rs2")],
        &format!("{VIP}:9000"),
        &REAL_SERVERS.map(|(_, rip)| format!("{rip} -g -w 1")),
        METRICS,
    );
}
