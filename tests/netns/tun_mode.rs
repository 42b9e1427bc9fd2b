//! TUN-mode scenarios in the [`tun_lab`] topology, each run for ipip, gre and gue.
//!
//! The client talks to the VIP; the router sends the VIP to the director; the director (`tunlb
//! director`, configured with `tunlb adm`) wraps each packet and sends it to a real server, whose
//! agent (`tunlb realserver`) unwraps it for the `tunlb httpd` bound to the hidden VIP; the
//! answer goes from the VIP straight back to the client through the router.
//!
//! Test names say the scenario and then the encapsulation, e.g.
//! `tun_mode::rr_alternates_between_real_servers::gre`.

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

use tunlb::lab::httpd::blob_sha256;

use crate::harness::tun_lab::{self, CLIENT, DIRECTOR, RS1, RS2, VIP};
use crate::harness::{
    adm, curl_upload_args, for_each_encap, metric_value, receive_like_a_nic, scrape_metrics,
    start_agent, start_director, start_httpd, upload_blob, wait_until, Netns, Pid, ReplyCounters,
    TempPath, Topology, STARTUP,
};

for_each_encap!(
    rr_alternates_between_real_servers,
    wrr_splits_by_weight,
    persistence_pins_a_client,
    agent_drops_tunnels_from_directors_not_allowed,
    replies_bypass_the_director,
    large_download_and_upload_arrive_intact,
    frames_and_raw_socket_both_deliver,
    udp_trains_are_decided_whole_and_arrive_intact,
);

/// Where the banner of each real server comes from.
const REAL_SERVERS: [(&str, &str); 2] = [("rs1", RS1), ("rs2", RS2)];

/// The TUN-mode lab with everything running: director, two agents, two httpds.
struct Lab {
    topo: Topology,
    encap: &'static str,
    /// The director.
    director: Pid,
    /// The agents of rs1 and rs2, in that order.
    agents: [Pid; 2],
}

impl Lab {
    /// Builds the topology and starts the director and, on each real server, an agent that
    /// accepts tunnels from `allow` and an httpd on VIP:80 with banner "from RIP".
    fn start(encap: &'static str, allow: &str) -> Lab {
        Lab::start_with(encap, allow, &[])
    }

    /// [`Lab::start`] with `extra` flags for the director.
    fn start_with(encap: &'static str, allow: &str, extra: &[&str]) -> Lab {
        let topo = tun_lab::build();
        let mut args = vec!["--local-address", DIRECTOR];
        args.extend_from_slice(extra);
        let director = start_director(topo.ns("director"), &args);
        let mut agents = Vec::new();
        for (role, rip) in REAL_SERVERS {
            let ns = topo.ns(role);
            agents.push(start_agent(ns, VIP, encap, allow));
            start_httpd(ns, &format!("{VIP}:80"), &banner(rip), &[]);
        }
        let agents = [agents[0], agents[1]];
        Lab {
            topo,
            encap,
            director,
            agents,
        }
    }

    /// Starts the lab with agents that accept tunnels from the director.
    fn start_allowing_director(encap: &'static str) -> Lab {
        Lab::start(encap, &format!("{DIRECTOR}/32"))
    }

    fn ns(&self, role: &str) -> &Netns {
        self.topo.ns(role)
    }

    /// Runs `tunlb adm <args>` in the director's namespace, echoing the command.
    fn adm(&self, args: &str) -> String {
        adm(self.ns("director"), args)
    }

    /// Adds the service VIP:80 with `sched` (and `extra` flags such as `-p 60`), and both real
    /// servers with the given weights, reached with this lab's encapsulation.
    fn add_service(&self, sched: &str, extra: &str, weights: [u32; 2]) {
        self.adm(&format!("-A -t {VIP}:80 -s {sched} {extra}"));
        for ((_, rip), weight) in REAL_SERVERS.iter().zip(weights) {
            self.adm(&format!(
                "-a -t {VIP}:80 -r {rip} -i -w {weight} --tun-type {}",
                self.encap
            ));
        }
        eprintln!("{}", self.adm("-L -n"));
    }

    /// Replaces real server `index`'s agent with one that accepts tunnels from `allow`.
    fn restart_agent(&mut self, index: usize, allow: &str) {
        let ns = self.topo.ns(REAL_SERVERS[index].0);
        ns.stop(self.agents[index]);
        self.agents[index] = start_agent(ns, VIP, self.encap, allow);
    }

    /// `n` requests for `path` from the client to the VIP, each on a new connection, in one
    /// curl run that stops at the first failure. Returns the answers' lines, in order.
    fn get_many(&self, n: usize, path: &str, max_time: &str) -> Vec<String> {
        let url = format!("http://{VIP}{path}");
        let mut args = vec!["-s", "-f", "--fail-early", "--max-time", max_time];
        args.extend(["-H", "Connection: close"]);
        args.extend(std::iter::repeat_n(url.as_str(), n));
        let out = self.ns("client").try_exec("curl", &args);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Like [`Lab::get_many`] for `/`, and asserts every one of the `n` requests was answered.
    fn banners(&self, n: usize) -> Vec<String> {
        let answers = self.get_many(n, "/", "5");
        assert_eq!(
            answers.len(),
            n,
            "only {} of {n} requests answered: {answers:?}",
            answers.len()
        );
        answers
    }
}

/// How many answers came from each banner.
fn count(answers: &[String]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for answer in answers {
        *counts.entry(answer.as_str()).or_insert(0) += 1;
    }
    counts
}

fn banner(rip: &str) -> String {
    format!("from {rip}")
}

/// (a) Round robin: 40 new connections alternate between the two real servers, 20 each.
fn rr_alternates_between_real_servers(encap: &'static str) {
    let lab = Lab::start_allowing_director(encap);
    lab.add_service("rr", "", [1, 1]);
    let answers = lab.banners(40);
    let counts = count(&answers);
    assert_eq!(counts.get(banner(RS1).as_str()), Some(&20), "{counts:?}");
    assert_eq!(counts.get(banner(RS2).as_str()), Some(&20), "{counts:?}");
    for pair in answers.windows(2) {
        assert_ne!(pair[0], pair[1], "rr must alternate: {answers:?}");
    }
    let conns = lab.adm("-L -n -c");
    eprintln!("{conns}");
    assert!(
        conns.contains(CLIENT),
        "the connection table should list the client:\n{conns}"
    );
    assert_ipvsadm_listing(&lab.adm("-L -n"), "rr", [1, 1], 40);
    assert_stats_match_traffic(&lab.adm("-L -n --stats"), 20);
    // -Z starts the counters again.
    lab.adm("-Z");
    assert_stats_match_traffic(&lab.adm("-L -n --stats"), 0);
}

/// `adm -L -n --stats`: each real server got `conns` connections, each at least 4 packets
/// (SYN, ACK, request, FIN) forwarded, and nothing flowed back through the director.
fn assert_stats_match_traffic(out: &str, conns: u64) {
    let dests: Vec<Vec<u64>> = out
        .lines()
        .filter(|l| l.starts_with("  -> ") && l.split_whitespace().count() == 7)
        .map(|l| {
            l.split_whitespace()
                .skip(2)
                .map(|n| n.parse().unwrap_or_else(|_| panic!("a number in {l:?}")))
                .collect()
        })
        .collect();
    assert_eq!(dests.len(), 2, "two real servers with counters in:\n{out}");
    for d in &dests {
        let (c, in_pkts, out_pkts, in_bytes, out_bytes) = (d[0], d[1], d[2], d[3], d[4]);
        assert_eq!(c, conns, "connections per server in:\n{out}");
        assert!(in_pkts >= 4 * conns, "packets per server in:\n{out}");
        assert!(in_bytes >= 40 * in_pkts, "bytes per server in:\n{out}");
        if conns == 0 {
            assert_eq!((in_pkts, in_bytes), (0, 0), "zeroed counters in:\n{out}");
        }
        assert_eq!((out_pkts, out_bytes), (0, 0), "nothing flows back:\n{out}");
    }
}

/// `adm -L -n` in the director's namespace prints ipvsadm's format, line by line: header,
/// the service, and one line per real server with column widths as ipvsadm 1.31 prints them.
/// The connection counts are not fixed (closing flows move between states) but must add up to
/// the `conns` connections made.
fn assert_ipvsadm_listing(out: &str, sched: &str, weights: [u32; 2], conns: u32) {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "expected 6 lines:\n{out}");
    assert_eq!(lines[0], "IP Virtual Server version 1.2.1 (size=4096)");
    assert_eq!(lines[1], "Prot LocalAddress:Port Scheduler Flags");
    assert_eq!(
        lines[2],
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"
    );
    assert_eq!(lines[3], format!("TCP  {VIP}:80 {sched}"));
    let mut total = 0;
    for ((line, (_, rip)), weight) in lines[4..].iter().zip(REAL_SERVERS).zip(weights) {
        let prefix = format!(
            "  -> {:<28} {:<7} {:<6} ",
            format!("{rip}:80"),
            "Tunnel",
            weight
        );
        assert!(
            line.starts_with(&prefix),
            "{line:?} should start with {prefix:?}"
        );
        let counts: Vec<u32> = line[prefix.len()..]
            .split_whitespace()
            .map(|c| c.parse().expect("a connection count"))
            .collect();
        assert_eq!(counts.len(), 2, "{line:?}");
        assert_eq!(
            line[prefix.len()..],
            format!("{:<10} {:<10}", counts[0], counts[1]),
            "count columns of {line:?}"
        );
        total += counts[0] + counts[1];
    }
    assert_eq!(total, conns, "connection counts in:\n{out}");
}

/// (b) Weighted round robin 3:1 over 400 new connections gives 3:1 within 10%.
fn wrr_splits_by_weight(encap: &'static str) {
    let lab = Lab::start_allowing_director(encap);
    lab.add_service("wrr", "", [3, 1]);
    let answers = lab.banners(400);
    let counts = count(&answers);
    let rs1 = *counts.get(banner(RS1).as_str()).unwrap_or(&0) as f64;
    let rs2 = *counts.get(banner(RS2).as_str()).unwrap_or(&0) as f64;
    let ratio = rs1 / rs2.max(1.0);
    assert!(
        (2.7..=3.3).contains(&ratio),
        "wrr 3:1 gave {counts:?} (ratio {ratio:.2})"
    );
}

/// (c) A persistent service (`-p 60`) sends all 20 connections of one client to one server.
fn persistence_pins_a_client(encap: &'static str) {
    let lab = Lab::start_allowing_director(encap);
    lab.add_service("rr", "-p 60", [1, 1]);
    let answers = lab.banners(20);
    let counts = count(&answers);
    assert_eq!(
        counts.len(),
        1,
        "a persistent service must pin the client: {counts:?}"
    );
}

/// (d) Agents that only accept tunnels from another address drop the director's packets, so
/// requests fail; agents restarted with the director allowed serve the same requests.
fn agent_drops_tunnels_from_directors_not_allowed(encap: &'static str) {
    let mut lab = Lab::start(encap, "10.2.0.99/32");
    lab.add_service("rr", "", [1, 1]);
    let answers = lab.get_many(2, "/", "2");
    assert!(
        answers.is_empty(),
        "agents not allowing {DIRECTOR} answered: {answers:?}"
    );
    // TODO(integrator): also read the agent's drop counter for "source not allowed" once the
    // agent exposes its counters (e.g. a stats command or /metrics), and assert it rose.

    for index in 0..2 {
        lab.restart_agent(index, &format!("{DIRECTOR}/32"));
    }
    wait_until(
        "requests to work once the director is allowed",
        STARTUP,
        || lab.get_many(1, "/", "1").len() == 1,
    );
    let answers = lab.banners(10);
    let counts = count(&answers);
    assert_eq!(
        counts.len(),
        2,
        "both real servers should answer: {counts:?}"
    );
}

/// (e) No reply packet crosses the director: its counters of packets from the VIP stay at 0
/// while the client counts the replies and the director counts the requests.
fn replies_bypass_the_director(encap: &'static str) {
    let lab = Lab::start_allowing_director(encap);
    lab.add_service("rr", "", [1, 1]);
    let (director, client) = (lab.ns("director"), lab.ns("client"));
    let counters = ReplyCounters::install(director, client, VIP, "tcp sport 80");

    lab.banners(20);
    let download = lab.get_many(1, "/bytes/1000000", "20");
    assert!(!download.is_empty(), "the 1 MB download failed");
    // Only TCP from VIP:80 counts as a reply, so an ICMP error the director may send for the
    // VIP (fragmentation needed) does not.
    counters.assert_bypassed(100, 40);
}

/// (f) 8 MB down and 8 MB up through the VIP over the 1500-byte links arrive intact.
fn large_download_and_upload_arrive_intact(encap: &'static str) {
    const SIZE: u64 = 8 << 20;
    let lab = Lab::start_allowing_director(encap);
    lab.add_service("rr", "", [1, 1]);
    let client = lab.ns("client");

    let down = TempPath::new(&format!("download-{encap}-{}", client.name()));
    let url = format!("http://{VIP}/bytes/{SIZE}");
    let out = client.try_exec(
        "curl",
        &["-s", "-f", "--max-time", "60", "-o", &down.arg(), &url],
    );
    assert!(
        out.status.success(),
        "download failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = fs::read(down.path()).expect("read the download");
    assert_eq!(got.len() as u64, SIZE, "download size");
    assert_eq!(
        tunlb::lab::httpd::sha256_hex(&got),
        blob_sha256(SIZE),
        "download corrupted"
    );

    let up = upload_blob(client, &format!("upload-{encap}"), SIZE);
    let body = format!("@{}", up.arg());
    let url = format!("http://{VIP}/upload");
    let answer = client.exec("curl", &curl_upload_args(&body, &url));
    assert_eq!(
        answer,
        format!("length {SIZE}\nsha256 {}\n", blob_sha256(SIZE)),
        "upload"
    );
}

/// (g) `--tunnel-tx raw` (the kernel routes every packet) and `--tunnel-tx frames` (Ethernet
/// frames to the router's MAC on the AF_PACKET socket) both deliver new connections, a 1 MB
/// download and a 1 MB upload; only the second takes the frame path (for GUE super-packets
/// too: trains sent whole as frames), as the director's log says.
fn frames_and_raw_socket_both_deliver(encap: &'static str) {
    for tx in ["raw", "frames"] {
        let lab = Lab::start_with(encap, &format!("{DIRECTOR}/32"), &["--tunnel-tx", tx]);
        lab.add_service("rr", "", [1, 1]);
        let framed_expected = if tx == "frames" {
            // The first packets may take the raw socket while the router's MAC is resolved.
            wait_until("the resolver to frame both real servers", STARTUP, || {
                let log = lab.ns("director").log(lab.director);
                [RS1, RS2].iter().all(|rip| {
                    log.contains(&format!(
                        "TUN real server {rip} (TCP {VIP}:80): tunnel packets leave as Ethernet frames on interface"
                    ))
                })
            });
            true
        } else {
            false
        };
        let answers = lab.banners(20);
        let counts = count(&answers);
        assert_eq!(
            counts.len(),
            2,
            "{tx}: both real servers answer: {counts:?}"
        );
        let download = lab.get_many(1, "/bytes/1000000", "20");
        assert!(!download.is_empty(), "{tx}: the 1 MB download failed");
        // An upload crosses the director as GSO super-packets (GUE: trains).
        const SIZE: u64 = 1 << 20;
        let up = upload_blob(lab.ns("client"), &format!("upload-{tx}-{encap}"), SIZE);
        let body = format!("@{}", up.arg());
        let url = format!("http://{VIP}/upload");
        let answer = lab.ns("client").exec(
            "curl",
            &["-s", "-f", "--max-time", "20", "--data-binary", &body, &url],
        );
        assert_eq!(
            answer,
            format!("length {SIZE}\nsha256 {}\n", blob_sha256(SIZE)),
            "{tx}: upload"
        );
        let log = lab.ns("director").log(lab.director);
        if encap == "gue" {
            assert_eq!(
                log.contains("GUE trains leave whole as Ethernet frames"),
                framed_expected,
                "{tx}: GUE trains as frames? director log:\n{log}"
            );
        }
        let framed = log.contains("tunnel packets sent as Ethernet frames");
        assert_eq!(
            framed, framed_expected,
            "{tx}: frames sent? director log:\n{log}"
        );
        assert_eq!(
            log.contains("tunnel packets leave as Ethernet frames"),
            framed_expected,
            "{tx}: the resolver's decision, director log:\n{log}"
        );
    }
}

/// Needs no director (so it runs with the harness self-test, `cargo test --test netns harness`):
/// the nftables rulesets of [`replies_bypass_the_director`] load and their counters read 0.
#[test]
fn harness_loads_the_reply_counters() {
    let topo = tun_lab::build();
    let (director, client) = (topo.ns("director"), topo.ns("client"));
    let counters = ReplyCounters::install(director, client, VIP, "tcp sport 80");
    assert_eq!(counters.read(), (0, 0, [0, 0, 0]));
}

/// (g) GRO on the real servers' NICs: their veth ends receive through threaded NAPI with GRO
/// on (the router's sending ends without TSO, so the packets are eligible), and the kernel's
/// IPIP GRO merges the director's tunnelled segments before the agent's raw socket sees them,
/// leaving the inner TCP checksum unfinished. Two 8 MB uploads through the VIP (round robin:
/// one to rs1, whose agent writes merged packets whole with a virtio header, one to rs2,
/// whose agent runs with `--no-offload` and cuts them into segments) still arrive whole, and
/// each agent's counter shows that merged packets did occur, and the real servers' TCP
/// counted no checksum error. Needs `ethtool`; fails if GRO or threaded NAPI cannot be turned
/// on.
#[test]
fn upload_survives_kernel_gro_of_ipip() {
    upload_survives_kernel_gro("ipip", "");
}

/// (g) The same with GRE and `--tun-csum`: the director sends the RFC 2784 checksum over
/// every packet (per segment of the super-packets it cuts), the kernel's GRE GRO verifies and
/// merges them, leaving the first segment's checksum in the merged header; the agents take
/// the merged packets by GRO's mark and verify the checksum of every other one: no drop as
/// `gre_bad_checksum`.
#[test]
fn upload_survives_kernel_gro_of_gre_with_checksums() {
    upload_survives_kernel_gro("gre", " --tun-csum");
}

/// Two uploads through agents receiving `encap` with GRO on, the real servers added with
/// `--tun-type encap` and `tun_flags` (see the tests above).
fn upload_survives_kernel_gro(encap: &str, tun_flags: &str) {
    const SIZE: u64 = 8 << 20;
    const METRICS: &str = "127.0.0.1:9100";
    let topo = tun_lab::build();
    start_director(topo.ns("director"), &["--local-address", DIRECTOR]);
    for ((role, rip), offload) in REAL_SERVERS.into_iter().zip([true, false]) {
        let ns = topo.ns(role);
        let feeder = format!("to-{role}");
        receive_like_a_nic(ns, (topo.ns("router"), &feeder), &[]);

        let allow = format!("{DIRECTOR}/32");
        let mut args = vec![
            "realserver",
            "--vip",
            VIP,
            "--encap",
            encap,
            "--allow",
            &allow,
            "--metrics-listen",
            METRICS,
        ];
        if !offload {
            args.push("--no-offload");
        }
        let pid = ns.spawn("agent", crate::harness::TUNLB, &args);
        let url = format!("http://{METRICS}/metrics");
        wait_until(&format!("the agent's metrics in {role}"), STARTUP, || {
            ns.assert_running(pid);
            ns.try_exec("curl", &["-s", "-f", &url]).status.success()
        });
        start_httpd(ns, &format!("{VIP}:80"), &banner(rip), &[]);
    }
    adm(topo.ns("director"), &format!("-A -t {VIP}:80 -s rr"));
    for (_, rip) in REAL_SERVERS {
        adm(
            topo.ns("director"),
            &format!("-a -t {VIP}:80 -r {rip} -i --tun-type {encap}{tun_flags}"),
        );
    }

    let client = topo.ns("client");
    let up = upload_blob(client, "gro-upload", SIZE);
    let body = format!("@{}", up.arg());
    let url = format!("http://{VIP}/upload");
    for _ in REAL_SERVERS {
        let out = client.try_exec("curl", &curl_upload_args(&body, &url));
        let answer = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            answer,
            format!("length {SIZE}\nsha256 {}\n", blob_sha256(SIZE)),
            "upload through merged {encap} packets (curl: {})",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    for (role, _) in REAL_SERVERS {
        let page = scrape_metrics(topo.ns(role), METRICS, &[]);
        let merged = metric_value(&page, "tunlb_agent_kernel_merged_packets_total", &[]);
        assert!(
            merged > 0,
            "no {encap} packet reached {role} merged by GRO: the scenario did not occur"
        );
        let reason = ["reason=\"gre_bad_checksum\""];
        let bad = metric_value(&page, "tunlb_agent_drops_total", &reason);
        assert_eq!(bad, 0, "{role} dropped packets as gre_bad_checksum");
        // Every merged packet was repaired: the real server's TCP saw no bad checksum.
        let snmp = topo.ns(role).exec("cat", &["/proc/net/snmp"]);
        let tcp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Tcp:")).collect();
        let errors = tcp
            .first()
            .zip(tcp.get(1))
            .and_then(|(names, values)| {
                names
                    .split_whitespace()
                    .zip(values.split_whitespace())
                    .find(|(n, _)| *n == "InCsumErrors")
                    .and_then(|(_, v)| v.parse::<u64>().ok())
            })
            .unwrap_or_else(|| panic!("no Tcp InCsumErrors in {role}'s /proc/net/snmp"));
        assert_eq!(errors, 0, "TCP checksum errors on {role}");
    }
}

/// (h) `--tunnel-tx frames` follows a change of the next hop's MAC while traffic flows. The
/// router's interface facing the director takes a new Ethernet address twice:
///
/// 1. announced with a gratuitous ARP (`arp_notify`, as a replaced router would): the
///    director's kernel updates its neighbour entry at once and the resolver, woken by the
///    notification, publishes the new MAC;
/// 2. silently, the router keeping a permanent entry for the director (so it does not ARP for
///    it from the new MAC, which would teach the director's kernel the new MAC at once): the
///    director's entry goes stale (reachable time shortened to 1-3 s here), the resolver asks
///    the kernel to re-probe it, the unicast probes to the old MAC fail and the kernel learns
///    the new one by broadcast (the servers take the raw socket meanwhile).
///
/// After each change, requests succeed again within a bounded time, then 20 in a row, all as
/// frames (the `packet` socket's send counter grows by their packets, the `raw` one does not
/// move) to the new MAC, as the director's log says.
#[test]
fn frames_follow_a_new_next_hop_mac() {
    const METRICS: &str = "127.0.0.1:9100";
    const ROUTER: &str = "10.2.0.1";
    let lab = Lab::start_with(
        "ipip",
        &format!("{DIRECTOR}/32"),
        &["--tunnel-tx", "frames", "--metrics-listen", METRICS],
    );
    let (director, router) = (lab.ns("director"), lab.ns("router"));
    // Neighbour entries go stale after 1-3 s and a failed one is found out in about 2 s.
    for (key, value) in [
        ("base_reachable_time_ms", "2000"),
        ("delay_first_probe_time", "1"),
        ("retrans_time_ms", "300"),
    ] {
        director.sysctl(&format!("net.ipv4.neigh.eth0.{key}"), value);
    }
    lab.add_service("rr", "", [1, 1]);
    // Both real servers framed to the router at `mac`, per the resolver's log lines.
    let framed_to = |mac: &str| {
        let log = director.log(lab.director);
        [RS1, RS2].iter().all(|rip| {
            let server = format!(
                "TUN real server {rip} (TCP {VIP}:80): tunnel packets leave as Ethernet frames on interface "
            );
            let hop = format!(" to next hop {ROUTER} at {mac}");
            log.lines().any(|l| l.contains(&server) && l.ends_with(&hop))
        })
    };
    // Packets sent as frames and as raw datagrams so far, from the director's metrics.
    let sent = || {
        let page = scrape_metrics(director, METRICS, &[]);
        let sum = |socket: &str| {
            let label = format!("socket=\"{socket}\"");
            metric_value(&page, "tunlb_send_batch_size_sum", &[&label])
        };
        (sum("packet"), sum("raw"))
    };
    // 20 requests answered by both servers, every packet of them a frame.
    let all_framed = |when: &str| {
        let (frames, raw) = sent();
        let answers = lab.banners(20);
        let counts = count(&answers);
        assert_eq!(
            counts.len(),
            2,
            "{when}: both real servers answer: {counts:?}"
        );
        // At least SYN, ACK, request and FIN of each connection, once the workers' counters
        // reach the metrics.
        wait_until(
            &format!("{when}: the frames in the metrics"),
            STARTUP,
            || sent().0 >= frames + 4 * 20,
        );
        assert_eq!(
            sent().1,
            raw,
            "{when}: tunnel packets took the raw socket; director log:\n{}",
            director.log(lab.director)
        );
    };

    let old_mac = router
        .exec("cat", &["/sys/class/net/to-dir/address"])
        .trim()
        .to_owned();
    let director_mac = director
        .exec("cat", &["/sys/class/net/eth0/address"])
        .trim()
        .to_owned();
    wait_until("the resolver to frame both real servers", STARTUP, || {
        framed_to(&old_mac)
    });
    all_framed("before the change");

    // (mac, arp_notify, how long the director may take to send to it)
    let changes = [
        ("02:00:5e:00:53:01", "1", Duration::from_secs(5)),
        ("02:00:5e:00:53:02", "0", Duration::from_secs(20)),
    ];
    for (mac, notify, settle) in changes {
        assert_ne!(old_mac, mac);
        let when = format!("after the change to {mac} (arp_notify {notify})");
        router.sysctl("net.ipv4.conf.to-dir.arp_notify", notify);
        let changed = Instant::now();
        router.ip(&format!("link set dev to-dir address {mac}"));
        if notify == "0" {
            // The address change flushed the router's neighbour entries; nothing was sent
            // since (the last requests are answered), so the director has not heard of it.
            router.ip(&format!(
                "neigh replace {DIRECTOR} lladdr {director_mac} dev to-dir nud permanent"
            ));
        }
        wait_until(&format!("{when}: a request to succeed"), settle, || {
            lab.get_many(1, "/", "1").len() == 1
        });
        let answered = changed.elapsed();
        wait_until(&format!("{when}: frames to the new MAC"), settle, || {
            framed_to(mac)
        });
        eprintln!(
            "{when}: a request answered after {answered:?}, frames to the new MAC logged by {:?}",
            changed.elapsed()
        );
        let neigh = director.ip(&format!("neigh show {ROUTER}"));
        assert!(
            neigh.contains(mac),
            "{when}: the director's neighbour entry: {neigh}"
        );
        all_framed(&when);
    }
    let log = director.log(lab.director);
    let paths: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("TUN real server"))
        .collect();
    eprintln!("the resolver's decisions:\n{}", paths.join("\n"));
}

/// (i) UDP GRO forwarding on the director's NIC: trains decided whole, every datagram intact
/// at the real servers (see [`crate::harness::udp_trains_check`]).
fn udp_trains_are_decided_whole_and_arrive_intact(encap: &'static str) {
    const METRICS: &str = "127.0.0.1:9100";
    let lab = Lab::start_with(
        encap,
        &format!("{DIRECTOR}/32"),
        &["--metrics-listen", METRICS],
    );
    crate::harness::udp_trains_check(
        (lab.ns("director"), lab.director),
        (lab.ns("router"), "to-dir"),
        lab.ns("client"),
        &[lab.ns("rs1"), lab.ns("rs2")],
        &format!("{VIP}:9000"),
        &REAL_SERVERS.map(|(_, rip)| format!("{rip} -i --tun-type {encap}")),
        METRICS,
    );
}

/// Sends `count` forged GUE packets from the client's namespace to real server 1: outer source
/// the director (spoofed; nothing on the way checks it), UDP to port 6080, `gue` as the GUE
/// header (hex), then an inner UDP datagram CLIENT:5555 -> VIP:9999 saying "forged N".
fn send_forged_gue(client: &Netns, gue: &str, count: u32) {
    const SCRIPT: &str = r#"
import socket, struct, sys
src, dst, vip, client, gue, count = sys.argv[1:7]
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
def ip(src, dst, proto, payload):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 7, 0, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for n in range(int(count)):
    data = b"forged %d" % n
    inner = ip(client, vip, 17, struct.pack("!HHHH", 5555, 9999, 8 + len(data), 0) + data)
    g = bytes.fromhex(gue) + inner
    outer = ip(src, dst, 17, struct.pack("!HHHH", 50000, 6080, 8 + len(g), 0) + g)
    s.sendto(outer, (dst, 0))
"#;
    let n = count.to_string();
    client.exec(
        "python3",
        &["-c", SCRIPT, DIRECTOR, RS1, VIP, CLIENT, gue, &n],
    );
}

/// A GUE header with the authentication option for the key in `key_hex`: the right key id
/// (HMAC-SHA-256 of the label, as tunlb derives it), sequence `seq`, and a made-up MAC: what a
/// forger who saw the director's packets can build without the key.
pub(crate) fn forged_auth_header(key_hex: &str, seq: u64) -> String {
    let id = tunlb::encap::auth::TunnelKey::from_hex(key_hex)
        .expect("a test key")
        .id();
    format!("07040001{id:04x}0000{seq:016x}{}", "ab".repeat(16))
}

/// A tunnel key file (mode 0600) holding `hex`.
pub(crate) fn key_file(name: &str, hex: &str) -> TempPath {
    use std::os::unix::fs::PermissionsExt;
    let path = TempPath::new(name);
    fs::write(path.path(), format!("{hex}\n")).expect("write a key file");
    fs::set_permissions(path.path(), fs::Permissions::from_mode(0o600)).expect("chmod 600");
    path
}

pub(crate) const KEY_A: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
const KEY_B: &str = "f9e8d7c6b5a4938271605f4e3d2c1b0af9e8d7c6b5a4938271605f4e3d2c1b0a";

/// The GUE lab with every process's extra flags: the director's and the agents'; the agents
/// serve /metrics on 127.0.0.1:9101 in their namespace, and a UDP sink on VIP:9999 in rs1
/// notes what reaches it.
struct AuthLab {
    lab: Lab,
}

impl AuthLab {
    fn start(director: &[&str], agent: &[&str]) -> AuthLab {
        let topo = tun_lab::build();
        let mut args = vec!["--local-address", DIRECTOR];
        args.extend_from_slice(director);
        let director = start_director(topo.ns("director"), &args);
        let mut agents = Vec::new();
        for (role, rip) in REAL_SERVERS {
            let ns = topo.ns(role);
            agents.push(start_agent_with(ns, agent));
            start_httpd(ns, &format!("{VIP}:80"), &banner(rip), &[]);
        }
        let lab = Lab {
            topo,
            encap: "gue",
            director,
            agents: [agents[0], agents[1]],
        };
        lab.add_service("rr", "", [1, 1]);
        AuthLab { lab }
    }

    fn restart_agents(&mut self, agent: &[&str]) {
        for (i, (role, _)) in REAL_SERVERS.iter().enumerate() {
            let ns = self.lab.topo.ns(role);
            ns.stop(self.lab.agents[i]);
            self.lab.agents[i] = start_agent_with(ns, agent);
        }
    }

    fn restart_director(&mut self, director: &[&str]) {
        let ns = self.lab.topo.ns("director");
        ns.stop(self.lab.director);
        let mut args = vec!["--local-address", DIRECTOR];
        args.extend_from_slice(director);
        self.lab.director = start_director(ns, &args);
        self.lab.add_service("rr", "", [1, 1]);
    }

    /// rs1's agent counter `name` (`delivered`, or a drop reason).
    fn rs1(&self, what: &str) -> u64 {
        let text = scrape_metrics(self.lab.ns("rs1"), "127.0.0.1:9101", &[]);
        if what == "delivered" {
            metric_value(&text, "tunlb_agent_delivered_packets_total", &[])
        } else {
            let label = format!("reason=\"{what}\"");
            metric_value(&text, "tunlb_agent_drops_total", &[&label])
        }
    }
}

/// `tunlb realserver` for the VIP over GUE from the director, with metrics and `extra` flags.
fn start_agent_with(ns: &Netns, extra: &[&str]) -> Pid {
    let allow = format!("{DIRECTOR}/32");
    let mut args = vec![
        "realserver",
        "--vip",
        VIP,
        "--encap",
        "gue",
        "--allow",
        &allow,
        "--metrics-listen",
        "127.0.0.1:9101",
    ];
    args.extend_from_slice(extra);
    let pid = ns.spawn("agent", crate::harness::TUNLB, &args);
    let on_lo = format!("{VIP}/32");
    wait_until("the agent to put the VIP on lo", STARTUP, || {
        ns.assert_running(pid);
        ns.ip("-o addr show dev lo").contains(&on_lo) && ns.log(pid).contains("writing into")
    });
    pid
}

/// Forged GUE (outer source = the director, sent from the client's side) reaches the service
/// on the VIP of an agent without a key: the hole the keys close.
#[test]
fn forged_gue_is_delivered_without_a_key() {
    let lab = AuthLab::start(&[], &[]);
    lab.lab.banners(4);
    let before = lab.rs1("delivered");
    send_forged_gue(lab.lab.ns("client"), "00040000", 20);
    wait_until("the forged packets to be delivered", STARTUP, || {
        lab.rs1("delivered") >= before + 20
    });
    eprintln!(
        "without a key: {} forged packets delivered",
        lab.rs1("delivered") - before
    );
}

/// With keys on both sides: the director's packets are authenticated and served; forged ones
/// (no option, or the right key id with a made-up MAC) are dropped and counted by reason.
#[test]
fn forged_gue_is_dropped_with_a_key() {
    let key = key_file("forged-gue-a.key", KEY_A);
    let k = key.arg();
    let lab = AuthLab::start(&["--tunnel-key", &k], &["--tunnel-key", &k]);
    let answers = lab.lab.banners(10);
    assert_eq!(count(&answers).len(), 2, "{answers:?}");
    let delivered = lab.rs1("delivered");
    assert!(delivered > 0);
    send_forged_gue(lab.lab.ns("client"), "00040000", 20);
    send_forged_gue(
        lab.lab.ns("client"),
        &forged_auth_header(KEY_A, u64::MAX / 2),
        20,
    );
    wait_until("the forged packets to be counted", STARTUP, || {
        lab.rs1("auth_missing") >= 20 && lab.rs1("auth_bad_mac") >= 20
    });
    assert_eq!(lab.rs1("auth_missing"), 20);
    assert_eq!(lab.rs1("auth_bad_mac"), 20);
    // Nothing forged was delivered; the real traffic still is.
    assert_eq!(lab.rs1("delivered"), delivered);
    lab.lab.banners(4);
}

/// Rotation: agents holding keys A and B take the director's packets whether it signs with A
/// or, after a restart, with B (its new sequence numbers start above the old ones, so nothing
/// is refused as a replay); agents holding only A then refuse B's as an unknown key.
#[test]
fn forged_gue_rotation_with_two_keys() {
    let (a, b) = (key_file("rot-a.key", KEY_A), key_file("rot-b.key", KEY_B));
    let (a, b) = (a.arg(), b.arg());
    let mut lab = AuthLab::start(
        &["--tunnel-key", &a],
        &["--tunnel-key", &a, "--tunnel-key", &b],
    );
    lab.lab.banners(6);
    lab.restart_director(&["--tunnel-key", &b]);
    lab.lab.banners(6);
    lab.restart_director(&["--tunnel-key", &b]);
    lab.lab.banners(6);
    assert_eq!(lab.rs1("auth_replayed"), 0);
    lab.restart_agents(&["--tunnel-key", &a]);
    let answers = lab.lab.get_many(2, "/", "2");
    assert!(
        answers.is_empty(),
        "served without the director's key: {answers:?}"
    );
    assert!(lab.rs1("auth_unknown_key") > 0);
}
