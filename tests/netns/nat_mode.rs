//! NAT-mode (`-m`) scenarios in the [`nat_lab`] topology.
//!
//! The client talks to VIP:80; the router sends the VIP to the director; the director rewrites
//! each packet to a real server's 8080 and hands it back to its kernel, which routes it onto the
//! private real-server LAN. The real servers (`tunlb httpd` on RIP:8080, no agent, default route
//! via the director) answer the client; the director's policy rules bring those answers into its
//! TUN, where they get the VIP as their source before going on to the client.

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

use tunlb::lab::httpd::{blob_sha256, sha256_hex};

use crate::harness::nat_lab::{self, CLIENT, RS1, RS2, RS_LAN, VIP};
use crate::harness::{
    adm, start_director, start_httpd, upload_blob, wait_until, Netns, Pid, TempPath, Topology,
};

/// The real servers: namespace role and address.
const REAL_SERVERS: [(&str, &str); 2] = [("rs1", RS1), ("rs2", RS2)];

/// Where the director serves `/metrics`.
const METRICS: &str = "127.0.0.1:9100";

/// The port the real servers listen on (the service is VIP:80).
const RPORT: u16 = 8080;

/// The NAT lab with the director (two queues, so the two directions of a flow can land on
/// different workers) and an httpd on each real server's RIP:8080 (also answering UDP there).
struct Lab {
    topo: Topology,
    director: Pid,
}

impl Lab {
    fn start() -> Lab {
        let topo = nat_lab::build();
        let director = start_director(
            topo.ns("director"),
            &["--queues", "2", "--metrics-listen", METRICS],
        );
        for (role, rip) in REAL_SERVERS {
            let listen = format!("{rip}:{RPORT}");
            start_httpd(topo.ns(role), &listen, &banner(rip), &["--udp-echo"]);
        }
        Lab { topo, director }
    }

    fn ns(&self, role: &str) -> &Netns {
        self.topo.ns(role)
    }

    fn adm(&self, args: &str) -> String {
        adm(self.ns("director"), args)
    }

    /// The TCP service VIP:80 (rr) with both real servers on port 8080, masqueraded.
    fn add_http_service(&self) {
        self.adm(&format!("-A -t {VIP}:80 -s rr"));
        for (_, rip) in REAL_SERVERS {
            self.adm(&format!("-a -t {VIP}:80 -r {rip}:{RPORT} -m -w 1"));
        }
        eprintln!("{}", self.adm("-L -n"));
    }
}

fn banner(rip: &str) -> String {
    format!("from {rip}")
}

/// The client's nftables counters: TCP from VIP:80, anything from the real servers' LAN, and
/// ICMP port-unreachable from the VIP.
fn client_counters() -> String {
    format!(
        "table inet tlbnat {{
            counter from_vip {{}}
            counter from_rs_lan {{}}
            counter unreach_from_vip {{}}
            chain input {{ type filter hook input priority 0; policy accept;
                ip saddr {VIP} tcp sport 80 counter name \"from_vip\"
                ip saddr {RS_LAN} counter name \"from_rs_lan\"
                ip saddr {VIP} icmp type destination-unreachable counter name \"unreach_from_vip\"
            }}
        }}"
    )
}

/// One line of `adm -L -n` about a real server: (address:port, forward, weight, active,
/// inactive).
type DestLine = (String, String, u32, u32, u32);

fn dest_lines(listing: &str) -> Vec<DestLine> {
    listing
        .lines()
        .filter(|l| l.starts_with("  -> ") && !l.contains("RemoteAddress"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 6, "a real-server line: {l:?}");
            let n = |s: &str| {
                s.parse::<u32>()
                    .unwrap_or_else(|_| panic!("a number in {l:?}"))
            };
            (f[1].to_owned(), f[2].to_owned(), n(f[3]), n(f[4]), n(f[5]))
        })
        .collect()
}

/// (a) HTTP through the VIP reaches both real servers; every reply the client gets comes from
/// VIP:80, none from the real servers' addresses; `-L -n` says Masq with the mapped port, and
/// `--stats` counts traffic both ways.
#[test]
fn http_through_the_vip_reaches_both_servers_and_replies_come_from_the_vip() {
    let lab = Lab::start();
    lab.add_http_service();
    let client = lab.ns("client");
    client.nft(&client_counters());

    let url = format!("http://{VIP}/");
    let mut args = vec!["-s", "-f", "--fail-early", "--max-time", "5"];
    args.extend(["-H", "Connection: close"]);
    args.extend(std::iter::repeat_n(url.as_str(), 20));
    let out = client.try_exec("curl", &args);
    let answers: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(answers.len(), 20, "answers: {answers:?}");
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &answers {
        *counts.entry(a.as_str()).or_default() += 1;
    }
    for (_, rip) in REAL_SERVERS {
        assert_eq!(counts.get(banner(rip).as_str()), Some(&10), "{counts:?}");
    }
    // The real server saw the client's own address (NAT rewrites the destination only).
    let whoami = client.exec("curl", &["-s", "--max-time", "5", &format!("{url}whoami")]);
    assert!(whoami.contains(&format!("client {CLIENT}:")), "{whoami}");

    assert!(client.nft_counter("tlbnat", "from_vip") >= 20 * 4);
    assert_eq!(client.nft_counter("tlbnat", "from_rs_lan"), 0);

    let listing = lab.adm("-L -n");
    let dests = dest_lines(&listing);
    assert_eq!(dests.len(), 2, "{listing}");
    for ((addr, fwd, weight, ..), (_, rip)) in dests.iter().zip(REAL_SERVERS) {
        assert_eq!(addr, &format!("{rip}:{RPORT}"), "{listing}");
        assert_eq!((fwd.as_str(), *weight), ("Masq", 1), "{listing}");
    }
    let conns = lab.adm("-L -n -c");
    assert!(
        conns.contains(&format!("{VIP}:80")) && conns.contains(&format!("{RS1}:{RPORT}")),
        "{conns}"
    );
    let stats = lab.adm("-L -n --stats");
    let mut checked = 0;
    for line in stats.lines().filter(|l| l.starts_with("  -> ")) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 7 || f[1].starts_with("Remote") {
            continue;
        }
        checked += 1;
        let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
        let (conns, in_pkts, out_pkts, in_bytes, out_bytes) = (n(2), n(3), n(4), n(5), n(6));
        assert!(conns >= 10, "{stats}");
        assert!(in_pkts >= 4 * conns && out_pkts >= 4 * conns, "{stats}");
        assert!(
            in_bytes >= 40 * in_pkts && out_bytes >= 40 * out_pkts,
            "{stats}"
        );
    }
    assert_eq!(checked, 2, "{stats}");
}

/// Size of each transfer in [`many_concurrent_connections_carry_data_both_ways_intact`].
const SIZE: u64 = 200_000;
/// Concurrent connections.
const CONCURRENT: usize = 200;

/// (b) 200 concurrent connections, each slowed to ~2 s by `--limit-rate` so they overlap,
/// download 200 kB each and then upload 200 kB each; every byte arrives intact. (c) While they
/// run, `-L -n` shows them as active connections; once they are done, each real server's
/// ActiveConn/InActConn agree with the states `-L -n -c` lists for it.
#[test]
fn many_concurrent_connections_carry_data_both_ways_intact() {
    let lab = Lab::start();
    lab.add_http_service();
    let client = lab.ns("client");
    client.nft(&client_counters());

    let prefix = format!("nat-down-{}", client.name());
    let files: Vec<TempPath> = (1..=CONCURRENT)
        .map(|i| TempPath::new(&format!("{prefix}-{i}")))
        .collect();
    let pattern = files[0]
        .arg()
        .replace(&format!("{prefix}-1"), &format!("{prefix}-#1"));
    let url = format!("http://{VIP}/bytes/{SIZE}?[1-{CONCURRENT}]");
    let parallel = CONCURRENT.to_string();
    let common = [
        "-s",
        "-f",
        "--parallel",
        "--parallel-immediate",
        "--parallel-max",
        &parallel,
        "--limit-rate",
        "100k",
        "--max-time",
        "90",
    ];
    let mut args: Vec<&str> = common.to_vec();
    args.extend(["-o", &pattern, &url]);
    let started = Instant::now();
    let pid = client.spawn("curl-down", "curl", &args);
    let peak = watch_active_conns(&lab, client, pid);
    let (status, log) = client.wait_exit(pid, Duration::from_secs(120));
    eprintln!(
        "{CONCURRENT} downloads of {SIZE} bytes: {:?}, peak ActiveConn {peak}",
        started.elapsed()
    );
    assert!(status.success(), "curl failed ({status}): {log}");
    let want = blob_sha256(SIZE);
    for f in &files {
        let got = fs::read(f.path()).unwrap_or_default();
        assert_eq!(got.len() as u64, SIZE, "{}", f.arg());
        assert_eq!(sha256_hex(&got), want, "{} corrupted", f.arg());
    }
    assert!(
        peak >= CONCURRENT as u32 / 2,
        "only {peak} connections were active at once"
    );

    let body = upload_blob(client, "nat-body", SIZE);
    let body_arg = format!("@{}", body.arg());
    let prefix = format!("nat-up-{}", client.name());
    let answers: Vec<TempPath> = (1..=CONCURRENT)
        .map(|i| TempPath::new(&format!("{prefix}-{i}")))
        .collect();
    let pattern = answers[0]
        .arg()
        .replace(&format!("{prefix}-1"), &format!("{prefix}-#1"));
    let url = format!("http://{VIP}/upload?[1-{CONCURRENT}]");
    let mut args: Vec<&str> = common.to_vec();
    args.extend([
        "-H",
        "Expect:",
        "-H",
        "Content-Type: application/octet-stream",
    ]);
    args.extend(["--data-binary", &body_arg, "-o", &pattern, &url]);
    let started = Instant::now();
    let pid = client.spawn("curl-up", "curl", &args);
    let peak = watch_active_conns(&lab, client, pid);
    let (status, log) = client.wait_exit(pid, Duration::from_secs(120));
    eprintln!(
        "{CONCURRENT} uploads of {SIZE} bytes: {:?}, peak ActiveConn {peak}",
        started.elapsed()
    );
    assert!(status.success(), "curl failed ({status}): {log}");
    let want = format!("length {SIZE}\nsha256 {}\n", blob_sha256(SIZE));
    for f in &answers {
        let got = fs::read_to_string(f.path()).unwrap_or_default();
        assert_eq!(got, want, "{}", f.arg());
    }
    assert_eq!(lab.ns("client").nft_counter("tlbnat", "from_rs_lan"), 0);

    assert_counts_match_conn_states(&lab, 2 * CONCURRENT);
}

/// Polls `-L -n` while the client's `pid` runs; returns the most active connections seen.
fn watch_active_conns(lab: &Lab, client: &Netns, pid: Pid) -> u32 {
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let active: u32 = dest_lines(&lab.adm("-L -n")).iter().map(|d| d.3).sum();
        peak = peak.max(active);
        if peak >= CONCURRENT as u32 * 9 / 10 || client.log(pid).contains("curl:") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    peak
}

/// (c) `-L -n` and `-L -n -c` agree: per real server, ActiveConn is the number of its flows in
/// an active state (ESTABLISHED, SYN_*), InActConn the others, and all `total` connections made
/// are accounted for. Listing and connection table are read twice around each other so that a
/// flow expiring in between is seen as a retry, not as a mismatch.
fn assert_counts_match_conn_states(lab: &Lab, total: usize) {
    let mut last = String::new();
    for _ in 0..5 {
        let before = lab.adm("-L -n");
        let conns = lab.adm("-L -n -c");
        let after = lab.adm("-L -n");
        if before != after {
            continue;
        }
        let mut states: BTreeMap<String, (u32, u32)> = BTreeMap::new();
        for line in conns.lines().skip(2) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() != 6 || f[0] != "TCP" {
                continue;
            }
            let e = states.entry(f[5].to_owned()).or_default();
            if matches!(f[2], "ESTABLISHED" | "SYN_RECV" | "SYN_SENT" | "SYNACK") {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
        let dests = dest_lines(&after);
        let listed: Vec<(String, (u32, u32))> = dests
            .iter()
            .map(|(addr, _, _, a, i)| (addr.clone(), (*a, *i)))
            .collect();
        let from_conns: Vec<(String, (u32, u32))> = dests
            .iter()
            .map(|(addr, ..)| (addr.clone(), states.get(addr).copied().unwrap_or((0, 0))))
            .collect();
        if listed != from_conns {
            last = format!("listing {listed:?} vs connections {from_conns:?}\n{after}\n{conns}");
            continue;
        }
        let sum: u32 = listed.iter().map(|(_, (a, i))| a + i).sum();
        assert!(
            sum as usize >= total * 9 / 10 && sum as usize <= total,
            "{sum} of {total} connections accounted for:\n{after}"
        );
        assert!(
            listed.iter().all(|(_, (a, _))| *a == 0),
            "all done, yet active:\n{after}\n{conns}"
        );
        return;
    }
    panic!("-L -n and -L -n -c disagree: {last}");
}

/// UDP through NAT, and ICMP from a real server: a UDP service VIP:53 → RS1:8080 answers the
/// client (with the VIP as source); a service VIP:9000 → RS1:9001, where nothing listens, makes
/// RS1 send a port unreachable, which the director translates so the client's connected socket
/// sees "Connection refused" (its kernel matched the quote to VIP:9000) from the VIP.
#[test]
fn udp_answers_and_port_unreachable_from_a_real_server_reach_the_client_as_from_the_vip() {
    let lab = Lab::start();
    lab.adm(&format!("-A -u {VIP}:53 -s rr"));
    lab.adm(&format!("-a -u {VIP}:53 -r {RS1}:{RPORT} -m"));
    lab.adm(&format!("-A -u {VIP}:9000 -s rr"));
    lab.adm(&format!("-a -u {VIP}:9000 -r {RS1}:9001 -m"));
    let client = lab.ns("client");
    client.nft(&client_counters());

    let ask = format!("exec 3<>/dev/udp/{VIP}/53; printf hello >&3; timeout 3 head -n 1 <&3");
    let answer = client.exec("bash", &["-c", &ask]);
    assert_eq!(answer.trim(), banner(RS1));

    let probe =
        format!("exec 3<>/dev/udp/{VIP}/9000; printf x >&3; sleep 1; printf x >&3 && echo sent");
    wait_until(
        "a port unreachable from the VIP",
        Duration::from_secs(10),
        || {
            let out = client.try_exec("bash", &["-c", &probe]);
            let err = String::from_utf8_lossy(&out.stderr);
            !out.status.success() && err.contains("Connection refused")
        },
    );
    assert!(client.nft_counter("tlbnat", "unreach_from_vip") >= 1);
    assert_eq!(client.nft_counter("tlbnat", "from_rs_lan"), 0);

    // The director's policy routing for the replies was in place, and is gone once it stops.
    let director = lab.ns("director");
    let rules = director.ip("rule show");
    assert!(
        rules.contains(&format!("from {RS1} ipproto udp sport {RPORT} lookup")),
        "{rules}"
    );
    assert!(
        rules.contains("iif tunlb0 goto 102") && rules.contains("nop"),
        "{rules}"
    );
    director.signal(lab.director, "TERM");
    let (status, log) = director.wait_exit(lab.director, Duration::from_secs(10));
    assert!(status.success(), "{log}");
    assert!(!log.contains("nat-rewritten 0,"), "{log}");
    let rules = director.ip("rule show");
    assert_eq!(
        rules.lines().count(),
        3,
        "only the default rules are left:\n{rules}"
    );
    assert_eq!(director.ip("route show table 7461"), "");
}

/// UDP GRO forwarding on the director's NIC: the kernel's UDP trains are decided whole,
/// rewritten once and written back into the TUN whole (the partial checksum follows the new
/// addresses; the kernel cuts the datagrams); every datagram arrives intact (see
/// [`crate::harness::udp_trains_check`]).
#[test]
fn udp_trains_are_decided_whole_and_arrive_intact() {
    let lab = Lab::start();
    crate::harness::udp_trains_check(
        (lab.ns("director"), lab.director),
        (lab.ns("router"), "to-dir"),
        lab.ns("client"),
        &[lab.ns("rs1"), lab.ns("rs2")],
        &format!("{VIP}:9000"),
        &REAL_SERVERS.map(|(_, rip)| format!("{rip}:9000 -m")),
        METRICS,
    );
}
