//! A spoofed SYN + ACK flood against a TUN-mode director with a small connection table
//! (issue 13, "Must show" 1).
//!
//! In the [`tun_lab`] topology (ipip), the director runs with one worker and `--max-conns
//! 20000`. The router black-holes `198.18.0.0/15`, so the real servers' answers to the spoofed
//! sources die there. Before the flood, 20 keep-alive connections that carry a request every
//! 100 ms are opened (`tunlb lab clients`). Then `tunlb lab synflood` sends 100,000 spoofed
//! pairs (a SYN, then the ACK that would complete the handshake, from one source each), which
//! a director that sees only the client's half takes for established connections; alongside,
//! a second `tunlb lab clients` opens a new connection every 50 ms. During the flood the test
//! asks `tunlb adm -L -n` every 0.5 s (it must answer within 1 s) and scrapes
//! `tunlb_conn_table_entries` (at most the capacity). At the end: no keep-alive connection
//! lost, at least 99% of the new connections answered (each within 0.9 s, i.e. without a SYN
//! retransmission), the director's RSS (`VmRSS`) grew by less than 64 MB. Run it without
//! `nice`: a director starved of CPU loses packets at its TUN queue, which says nothing about
//! its table (the drops are printed).

use std::collections::BTreeMap;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use tunlb::lab::clients::Summary;

use crate::harness::tun_lab::{self, DIRECTOR, RS1, RS2, VIP};
use crate::harness::{
    adm, metric_value, run, scrape_metrics, start_agent, start_director, start_httpd, wait_until,
    Netns, TUNLB,
};

/// The spoofed source range; the router black-holes it.
const SPOOFED: &str = "198.18.0.0/15";
/// Per-worker table cap (one worker).
const MAX_CONNS: u64 = 20_000;
/// Spoofed SYN + ACK pairs.
const PAIRS: u64 = 100_000;
/// Their rate, pairs per second (8,000 packets/s, 25 s): the debug-build director uses about a
/// tenth of a CPU for it. Starved of CPU (run under `nice` beside builds on a busy 2-vCPU
/// machine) it read only half of 20,000 packets/s, the kernel dropping the rest at its TUN
/// queue, new connections included, before the connection table had a say; the test reports
/// those drops and the director's CPU time.
const RATE: u64 = 4_000;
/// Keep-alive connections opened before the flood.
const KEEP_ALIVE: u32 = 20;
/// Where the director serves /metrics (in its namespace).
const METRICS: &str = "127.0.0.1:9109";
/// Most the director's RSS may grow during the flood.
const RSS_GROWTH_LIMIT_KB: u64 = 64 * 1024;

/// The director's pid: the `tunlb director` process in `ns` (`ip netns pids`).
fn director_pid(ns: &Netns) -> u32 {
    let pids = run(Command::new("ip").args(["netns", "pids", ns.name()]));
    pids.split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| {
                    let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                    args.get(1) == Some(&&b"director"[..])
                })
                .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("no `tunlb director` process in {}", ns.name()))
}

/// A field of /proc/PID/status in kB (`VmRSS`, `VmHWM`).
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// CPU time `pid` used so far (user + system), in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let after_comm = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are the 12th and 13th after the comm.
    fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0)
}

/// Open file descriptors of `pid`.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Packets the kernel dropped on the way into the director's TUN (its TX `dropped`): what a
/// director too slow for the load never saw.
fn tun_tx_dropped(ns: &Netns) -> u64 {
    let stats = ns.ip("-s link show dev tunlb0");
    let mut lines = stats
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("TX:"));
    lines
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap_or_else(|| panic!("no TX dropped count in: {stats}"))
}

/// Every `tunlb_conn_*` and `tunlb_drops_total` sample with a non-zero value, for the log.
fn conn_metrics(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with("tunlb_conn") || l.starts_with("tunlb_drops_total"))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(_, v)| *v != "0")
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn syn_ack_flood_spares_established_and_new_connections() {
    let topo = tun_lab::build();
    let (client, router, director) = (topo.ns("client"), topo.ns("router"), topo.ns("director"));
    router.ip(&format!("route add blackhole {SPOOFED}"));
    let max_conns = MAX_CONNS.to_string();
    start_director(
        director,
        &[
            "--local-address",
            DIRECTOR,
            "--queues",
            "1",
            "--max-conns",
            &max_conns,
            "--metrics-listen",
            METRICS,
        ],
    );
    for (role, rip) in [("rs1", RS1), ("rs2", RS2)] {
        let ns = topo.ns(role);
        ns.sysctl("net.ipv4.tcp_syncookies", "1");
        start_agent(ns, VIP, "ipip", &format!("{DIRECTOR}/32"));
        start_httpd(ns, &format!("{VIP}:80"), &format!("from {rip}"), &[]);
    }
    adm(director, &format!("-A -t {VIP}:80 -s rr"));
    for rip in [RS1, RS2] {
        adm(director, &format!("-a -t {VIP}:80 -r {rip} -i"));
    }
    // A longer TUN queue than the default 500 absorbs the moments a busy machine's scheduler
    // leaves the director off the CPU (drops there are reported below).
    director.ip("link set dev tunlb0 txqueuelen 4096");
    let pid = director_pid(director);
    let to = format!("{VIP}:80");

    // The keep-alive connections, opened before the flood, a request every 100 ms each.
    let keep_alive = KEEP_ALIVE.to_string();
    let held = client.spawn(
        "keepalive",
        TUNLB,
        &[
            "lab",
            "clients",
            "--to",
            &to,
            "--conns",
            &keep_alive,
            "--interval-ms",
            "100",
            "--probe-every-ms",
            "0",
            "--status-every",
            "5",
        ],
    );
    wait_until(
        "the keep-alive connections",
        Duration::from_secs(15),
        || {
            client.assert_running(held);
            client
                .log(held)
                .contains(&format!("all {KEEP_ALIVE} connections established"))
        },
    );
    thread::sleep(Duration::from_millis(500));
    let rss_before = status_kb(pid, "VmRSS");
    let fds_before = fd_count(pid);
    let cpu_before = cpu_ticks(pid);

    // The flood, and new connections every 50 ms while it lasts.
    let seconds = PAIRS / RATE;
    let (pairs, rate) = (PAIRS.to_string(), RATE.to_string());
    let flood_seconds = (seconds * 3).to_string();
    let flood = client.spawn(
        "synflood",
        TUNLB,
        &[
            "lab",
            "synflood",
            "--to",
            &to,
            "--src",
            SPOOFED,
            "--pairs",
            &pairs,
            "--rate",
            &rate,
            "--seconds",
            &flood_seconds,
        ],
    );
    let probe_seconds = seconds.to_string();
    let probes = client.spawn(
        "probes",
        TUNLB,
        &[
            "lab",
            "clients",
            "--to",
            &to,
            "--conns",
            "0",
            "--probe-every-ms",
            "50",
            "--probe-timeout-ms",
            "900",
            "--duration",
            &probe_seconds,
            "--status-every",
            "2",
        ],
    );

    // While it lasts: the control socket answers, the table stays within its capacity.
    let started = Instant::now();
    let (mut slowest_adm, mut max_entries) = (Duration::ZERO, 0);
    let mut max_rss = rss_before;
    let flood_done = loop {
        let t = Instant::now();
        let out = director.try_exec(TUNLB, &["adm", "-L", "-n"]);
        let took = t.elapsed();
        assert!(
            out.status.success(),
            "tunlb adm -L -n failed during the flood: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        slowest_adm = slowest_adm.max(took);
        let metrics = scrape_metrics(director, METRICS, &[]);
        max_entries = max_entries.max(metric_value(&metrics, "tunlb_conn_table_entries", &[]));
        max_rss = max_rss.max(status_kb(pid, "VmRSS"));
        if client.log(flood).lines().any(|l| l.starts_with('{')) {
            break true;
        }
        if started.elapsed() > Duration::from_secs(seconds * 3 + 10) {
            break false;
        }
        thread::sleep(Duration::from_millis(500));
    };
    assert!(flood_done, "the flood did not end: {}", client.log(flood));
    let (status, flood_out) = client.wait_exit(flood, Duration::from_secs(5));
    assert!(status.success(), "tunlb lab synflood: {flood_out}");
    let flood_line: serde_json::Value = serde_json::from_str(
        flood_out
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .expect("the flood's JSON line"),
    )
    .expect("the flood's JSON line parses");
    let (status, probes_out) = client.wait_exit(probes, Duration::from_secs(seconds * 3 + 10));
    assert!(status.success(), "tunlb lab clients (probes): {probes_out}");
    let probes = Summary::from_output(&probes_out).expect("the probes' summary");
    thread::sleep(Duration::from_secs(1));
    let rss_after = status_kb(pid, "VmRSS");
    let fds_after = fd_count(pid);
    let cpu_used = cpu_ticks(pid) - cpu_before;
    let metrics = scrape_metrics(director, METRICS, &[]);
    max_entries = max_entries.max(metric_value(&metrics, "tunlb_conn_table_entries", &[]));
    let capacity = metric_value(&metrics, "tunlb_conn_table_capacity", &[]);
    client.signal(held, "TERM");
    let (status, held_out) = client.wait_exit(held, Duration::from_secs(30));
    assert!(
        status.success(),
        "tunlb lab clients (keep-alive): {held_out}"
    );
    let held = Summary::from_output(&held_out).expect("the keep-alive clients' summary");

    // Packets the kernel could not queue to the director's TUN (its TX side): a director too
    // slow for the flood loses packets there, before it can count them.
    let tun_dropped = tun_tx_dropped(director);
    let received = metric_value(&metrics, "tunlb_received_packets_total", &[]);
    let ok_ratio = if probes.probes == 0 {
        0.0
    } else {
        (probes.probes - probes.probes_failed) as f64 / probes.probes as f64
    };
    eprintln!(
        "flood: {flood_line}\nkeep-alive: {}/{} established, {} lost, {} requests, slowest {} \
         ms\nnew connections during the flood: {} of {} answered ({:.2}%), outages {:?}\n\
         table: at most {max_entries} entries of {capacity}; adm -L -n slowest {:.0} ms\n\
         director read {received} packets from its TUN, the kernel dropped {tun_dropped} there; \
         it used {:.1} s of CPU in {:.1} s\n\
         director RSS {rss_before} kB before, {max_rss} kB at most, {rss_after} kB after; fds \
         {fds_before} -> {fds_after}\nconnection metrics: {:#?}",
        held.established,
        held.conns,
        held.lost,
        held.requests,
        held.max_request_ms,
        probes.probes - probes.probes_failed,
        probes.probes,
        ok_ratio * 100.0,
        probes.outages,
        slowest_adm.as_secs_f64() * 1000.0,
        cpu_used as f64 / 100.0,
        started.elapsed().as_secs_f64(),
        conn_metrics(&metrics),
    );
    assert!(
        flood_line["pairs"].as_u64() >= Some(PAIRS),
        "the flood sent fewer than {PAIRS} pairs: {flood_line}"
    );
    assert_eq!(held.established, KEEP_ALIVE, "{held:?}");
    assert_eq!(
        held.lost, 0,
        "keep-alive connections lost: {:#?}",
        held.lost_detail
    );
    assert!(
        held.stalest_ms < 3000,
        "a keep-alive connection stopped carrying requests: {held:?}"
    );
    assert!(probes.probes >= 100, "too few probes: {probes:?}");
    assert!(
        ok_ratio >= 0.99,
        "only {:.2}% of the new connections during the flood were answered: {probes:?}",
        ok_ratio * 100.0
    );
    assert!(
        capacity > 0 && max_entries <= capacity,
        "{max_entries} entries in a table of {capacity}"
    );
    assert!(
        slowest_adm < Duration::from_secs(1),
        "tunlb adm -L -n took {slowest_adm:?} during the flood"
    );
    assert!(
        max_rss.saturating_sub(rss_before) < RSS_GROWTH_LIMIT_KB,
        "the director's RSS grew from {rss_before} kB to {max_rss} kB"
    );
}
