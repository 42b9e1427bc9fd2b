//! `tunlb director --metrics-listen`: the Prometheus endpoint in the [`tun_lab`] topology.
//!
//! The client makes connections through the director to two real servers; a scrape from inside
//! the director's namespace must count them per real server exactly, agree with `adm -L -n
//! --stats` on the packets, count a TCP segment for an unknown flow as a `no_connection` drop,
//! and speak OpenMetrics when asked.

use std::time::Duration;

use crate::harness::tun_lab::{self, CLIENT, DIRECTOR, RS1, RS2, VIP};
use crate::harness::{
    adm, metric_value, scrape_metrics, start_agent, start_director, start_httpd, wait_until, Netns,
};

const METRICS: &str = "127.0.0.1:9100";

/// Scrapes the director's endpoint from inside its namespace, with extra curl arguments.
fn scrape(ns: &Netns, extra: &[&str]) -> String {
    scrape_metrics(ns, METRICS, extra)
}

/// `adm -L -n --stats`: `(conns, in_pkts)` of real server `rip`.
fn adm_stats(out: &str, rip: &str) -> (u64, u64) {
    let line = out
        .lines()
        .find(|l| l.starts_with("  -> ") && l.contains(&format!("{rip}:")))
        .unwrap_or_else(|| panic!("no line for {rip} in:\n{out}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .skip(2)
        .map(|n| n.parse().unwrap_or_else(|_| panic!("a number in {line:?}")))
        .collect();
    (n[0], n[1])
}

/// Sends one TCP segment with only ACK set from `src:40000` to `dst:80` through a raw socket:
/// for a director that has no such flow, a `no_connection` drop.
fn send_stray_ack(ns: &Netns, src: &str, dst: &str) {
    const SENDER: &str = r#"
import socket, struct, sys
src, dst = sys.argv[1], sys.argv[2]
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
tcp = struct.pack("!HHIIBBHHH", 40000, 80, 12345, 67890, 5 << 4, 0x10, 65535, 0, 0)
pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
s.sendto(tcp, (dst, 0))
"#;
    ns.exec("python3", &["-c", SENDER, src, dst]);
}

#[test]
fn scrape_counts_connections_packets_and_drops_per_real_server() {
    let topo = tun_lab::build();
    let director = topo.ns("director");
    start_director(
        director,
        &["--local-address", DIRECTOR, "--metrics-listen", METRICS],
    );
    for (role, rip) in [("rs1", RS1), ("rs2", RS2)] {
        let ns = topo.ns(role);
        start_agent(ns, VIP, "ipip", &format!("{DIRECTOR}/32"));
        start_httpd(ns, &format!("{VIP}:80"), &format!("from {rip}"), &[]);
    }
    adm(director, &format!("-A -t {VIP}:80 -s rr"));
    for rip in [RS1, RS2] {
        adm(director, &format!("-a -t {VIP}:80 -r {rip} -i -w 1"));
    }

    let before = scrape(director, &[]);
    assert_eq!(metric_value(&before, "node_ipvs_connections_total", &[]), 0);
    for rip in [RS1, RS2] {
        let labels = [
            &format!("remote_address=\"{rip}\"")[..],
            &format!("local_address=\"{VIP}\""),
            "local_port=\"80\"",
            "remote_port=\"80\"",
            "proto=\"TCP\"",
        ];
        assert_eq!(
            metric_value(&before, "node_ipvs_backend_weight", &labels),
            1
        );
        assert_eq!(metric_value(&before, "tunlb_backend_up", &labels), 1);
    }

    // 20 connections, 10 per real server (rr).
    const N: usize = 20;
    let url = format!("http://{VIP}/");
    let mut args = vec!["-s", "-f", "--max-time", "5", "-H", "Connection: close"];
    args.extend(std::iter::repeat_n(url.as_str(), N));
    let answers = topo.ns("client").exec("curl", &args);
    assert_eq!(answers.lines().count(), N, "{answers}");
    // Let the last FINs and ACKs through before comparing counters.
    std::thread::sleep(Duration::from_millis(500));

    let text = scrape(director, &[]);
    let stats = adm(director, "-L -n --stats");
    eprintln!("{stats}");
    assert_eq!(
        metric_value(&text, "node_ipvs_connections_total", &[]),
        N as u64
    );
    let mut in_total = 0;
    for rip in [RS1, RS2] {
        let rs = format!("remote_address=\"{rip}\"");
        let conns = metric_value(&text, "tunlb_backend_connections_total", &[&rs]);
        let in_pkts = metric_value(&text, "tunlb_backend_incoming_packets_total", &[&rs]);
        let (adm_conns, adm_in) = adm_stats(&stats, rip);
        assert_eq!(conns, (N / 2) as u64, "{text}");
        assert_eq!(conns, adm_conns, "{text}\n{stats}");
        assert!(in_pkts >= 4 * conns, "{text}");
        let diff = in_pkts.abs_diff(adm_in) as f64;
        assert!(diff <= 0.02 * adm_in as f64, "{in_pkts} vs adm {adm_in}");
        in_total += in_pkts;
        metric_value(&text, "node_ipvs_backend_connections_active", &[&rs]);
        metric_value(&text, "node_ipvs_backend_connections_inactive", &[&rs]);
    }
    assert_eq!(
        metric_value(&text, "node_ipvs_incoming_packets_total", &[]),
        in_total
    );
    assert_eq!(
        metric_value(&text, "node_ipvs_outgoing_packets_total", &[]),
        0
    );
    assert!(metric_value(&text, "tunlb_conn_table_capacity", &[]) > 0);
    assert!(
        metric_value(&text, "tunlb_tun_read_batch_size_count", &[]) > 0,
        "{text}"
    );
    let sends: u64 = ["raw", "packet", "udp_gso"]
        .iter()
        .map(|s| {
            metric_value(
                &text,
                "tunlb_send_batch_size_count",
                &[&format!("socket=\"{s}\"")],
            )
        })
        .sum();
    assert!(sends > 0, "{text}");
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert_eq!(metric_value(&text, "tunlb_build_info", &[&version]), 1);

    // A TCP segment without SYN for a flow the director does not know.
    let reason = "reason=\"no_connection\"";
    let drops = metric_value(&text, "tunlb_drops_total", &[reason]);
    send_stray_ack(topo.ns("client"), CLIENT, VIP);
    wait_until(
        "tunlb_drops_total{reason=\"no_connection\"} to rise",
        Duration::from_secs(5),
        || metric_value(&scrape(director, &[]), "tunlb_drops_total", &[reason]) > drops,
    );

    // OpenMetrics when asked for.
    let om = scrape(director, &["-H", "Accept: application/openmetrics-text"]);
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE node_ipvs_connections counter"), "{om}");
    assert!(!text.contains("# EOF"), "{text}");
}
