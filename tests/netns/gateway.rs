//! The VPN-like routed gateway: site A (10.1.0.0/24, the director as its gateway) and site B
//! (172.16.8.0/22, a `tunlb realserver --gateway` as its gateway) joined only by an underlay.
//! Ping, HTTP and 4 MB downloads (SHA-256 checked) go both ways through the tunnel, once per
//! encapsulation; a tunnel packet from an underlay address the gateway does not allow is
//! dropped and counted.

use std::fs;
use std::time::Duration;

use crate::harness::gateway_lab::{self, A1, B1, DIRECTOR, GATEWAY, ROUTER, SITE_A, SITE_B};
use crate::harness::{
    start_director, start_httpd, wait_until, Netns, Pid, TempPath, STARTUP, TUNLB,
};
use tunlb::lab::httpd::{blob_sha256, sha256_hex};

/// A director config tunnelling `prefix` to `via` with `encap`.
fn route_config(prefix: &str, via: &str, encap: &str) -> String {
    format!(
        "[director]\nqueues = 1\n\n[[tunnel_route]]\nprefix = \"{prefix}\"\nvia = \"{via}\"\nencap = \"{encap}\"\n"
    )
}

/// Starts the director in `ns` with `config` written to a temp file (kept alive by the caller).
fn start_routing_director(ns: &Netns, config: &str, file: &TempPath) -> Pid {
    fs::write(file.path(), config).expect("write the director config");
    start_director(ns, &["--config", &file.arg()])
}

/// Starts the remote gateway agent and waits for its route back into its TUN.
fn start_gateway(ns: &Netns, encap: &str) -> Pid {
    let args = [
        "realserver",
        "--gateway",
        "--encap",
        encap,
        "--allow",
        DIRECTOR,
        "--route",
        SITE_A,
        "--lan",
        SITE_B,
    ];
    let pid = ns.spawn("gateway", TUNLB, &args);
    wait_until("the gateway's route to site A", STARTUP, || {
        ns.assert_running(pid);
        ns.ip("route show")
            .contains(&format!("{SITE_A} dev tunlb-rs0"))
    });
    pid
}

/// Downloads `size` bytes of the test blob from `http://host/` in `ns` and checks the hash.
fn download_intact(ns: &Netns, host: &str, size: u64, what: &str) {
    let file = TempPath::new(&format!("gw-{what}-{}", ns.name()));
    let url = format!("http://{host}/bytes/{size}");
    let out = ns.try_exec(
        "curl",
        &["-s", "-f", "--max-time", "60", "-o", &file.arg(), &url],
    );
    assert!(
        out.status.success(),
        "{what}: download failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = fs::read(file.path()).expect("read the download");
    assert_eq!(got.len() as u64, size, "{what}: size");
    assert_eq!(sha256_hex(&got), blob_sha256(size), "{what}: corrupted");
}

/// A counter `label=N` from a log line.
fn counter(log: &str, label: &str) -> u64 {
    let key = format!(" {label}=");
    log.rsplit_once(&key)
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label} in:\n{log}"))
}

/// Whether `ping` is on `PATH`.
fn have_ping() -> bool {
    std::process::Command::new("ping")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn sites_talk_both_ways(encap: &str, inject: bool) {
    let lab = gateway_lab::build();
    let (a1, director, gw, b1) = (lab.ns("a1"), lab.ns("director"), lab.ns("gw"), lab.ns("b1"));
    let config = TempPath::new(&format!("gw-director-{encap}-{}.toml", director.name()));
    let dpid = start_routing_director(director, &route_config(SITE_B, GATEWAY, encap), &config);
    let gpid = start_gateway(gw, encap);

    // Ping both ways (the first may be lost while neighbours resolve). ping is one of the tools
    // test.sh requires (iputils-ping); without it this test fails rather than skip the check.
    assert!(
        have_ping(),
        "ping is not installed (apt-get install iputils-ping)"
    );
    for &(from, to) in &[(a1, B1), (b1, A1)] {
        let out = from.try_exec("ping", &["-c", "3", "-i", "0.2", "-W", "2", to]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(" 0% packet loss")
                || text.contains("3 received")
                || text.contains("2 received"),
            "ping {to} from {}: {text}",
            from.name()
        );
    }

    // HTTP both ways; the far side sees the real client address (routed, not translated).
    start_httpd(b1, &format!("{B1}:80"), "site B", &[]);
    start_httpd(a1, &format!("{A1}:80"), "site A", &[]);
    let body = a1.exec(
        "curl",
        &["-s", "--max-time", "5", &format!("http://{B1}/whoami")],
    );
    assert!(body.contains(&format!("client {A1}:")), "a1 -> b1: {body}");
    let body = b1.exec(
        "curl",
        &["-s", "--max-time", "5", &format!("http://{A1}/whoami")],
    );
    assert!(body.contains(&format!("client {B1}:")), "b1 -> a1: {body}");

    // 4 MB each way, full-size segments: the tunnel's MTU is learnt (ICMP frag-needed from the
    // director's core on site A, from the gateway's kernel on site B).
    const SIZE: u64 = 4 << 20;
    download_intact(a1, B1, SIZE, "b1 to a1");
    download_intact(b1, A1, SIZE, "a1 to b1");

    if inject {
        // A second director in the router tunnels site B's prefix from 10.99.2.1, which the
        // gateway does not allow: its packets must be dropped and counted, never delivered.
        let router = lab.ns("router");
        let rconfig = TempPath::new(&format!("gw-router-{}.toml", router.name()));
        let rpid = start_routing_director(router, &route_config(SITE_B, GATEWAY, encap), &rconfig);
        // Two TCP SYNs (curl retries once) from the router into the tunnel.
        let out = router.try_exec("curl", &["-s", "--max-time", "2", &format!("http://{B1}/")]);
        assert!(
            !out.status.success(),
            "a request from {ROUTER} crossed the gateway"
        );
        wait_until(
            "the gateway to count the injected packets",
            Duration::from_secs(5),
            || gw.log(gpid).contains("not allowed"),
        );
        router.stop(rpid);
    }

    gw.signal(gpid, "TERM");
    let (status, log) = gw.wait_exit(gpid, Duration::from_secs(10));
    assert!(status.success(), "gateway exit: {status}\n{log}");
    assert!(counter(&log, "delivered") > 100, "{log}");
    assert!(counter(&log, "out_tunnelled") > 100, "{log}");
    assert_eq!(counter(&log, "inner_source_not_allowed"), 0, "{log}");
    if inject {
        assert!(counter(&log, "not_allowed") >= 1, "{log}");
    } else {
        assert_eq!(counter(&log, "not_allowed"), 0, "{log}");
    }
    assert!(
        !gw.ip("route show").contains("tunlb-rs0"),
        "the gateway's routes are left behind"
    );
    assert_eq!(gw.read_sysctl("net.ipv4.ip_forward"), "0");

    director.signal(dpid, "TERM");
    let (status, log) = director.wait_exit(dpid, Duration::from_secs(10));
    assert!(status.success(), "director exit: {status}\n{log}");
    let line = log
        .lines()
        .find(|l| l.contains("receiver at exit"))
        .unwrap_or_else(|| panic!("no receiver counters:\n{log}"));
    assert!(counter(line, "delivered") > 100, "{line}");
    assert_eq!(counter(line, "not_allowed"), 0, "{line}");
}

#[test]
fn gateway_links_two_sites_gre() {
    sites_talk_both_ways("gre", true);
}

#[test]
fn gateway_links_two_sites_ipip() {
    sites_talk_both_ways("ipip", false);
}

#[test]
fn gateway_links_two_sites_gue() {
    sites_talk_both_ways("gue", false);
}

/// An IPv6 prefix in `[[tunnel_route]]` (director side): the director routes
/// `2001:db8:b::/48` into its TUN (`ip -6`), wraps what the host sends there in GRE over the
/// IPv4 underlay to the gateway's address (counted by nftables in the gateway's namespace:
/// GRE carrying IPv6, EtherType 0x86DD, from the director), and takes the route away at
/// SIGTERM. (The far end, `tunlb realserver --gateway`, takes IPv4 prefixes only so far.)
#[test]
fn an_ipv6_prefix_is_routed_into_the_tunnel_and_released() {
    const PREFIX6: &str = "2001:db8:b::/48";
    let lab = gateway_lab::build();
    let (director, gw) = (lab.ns("director"), lab.ns("gw"));
    director.ip("-6 addr add 2001:db8:a::1/128 dev lo nodad");
    gw.nft(&format!(
        "table inet tlbgw {{\n  counter gre6 {{}}\n  chain input {{\n    type filter hook input priority 0;\n    ip saddr {DIRECTOR} ip protocol gre @th,16,16 0x86dd counter name gre6\n  }}\n}}\n"
    ));
    let config = TempPath::new(&format!("gw6-director-{}.toml", director.name()));
    let text = format!(
        "{}\n[[tunnel_route]]\nprefix = \"{PREFIX6}\"\nvia = \"{GATEWAY}\"\nencap = \"gre\"\n",
        route_config(SITE_B, GATEWAY, "gre")
    );
    let dpid = start_routing_director(director, &text, &config);
    let route = director.ip(&format!("-6 route show {PREFIX6}"));
    assert!(route.contains("dev tunlb0"), "ip -6 route: {route:?}");
    director.try_exec(
        "ping",
        &["-6", "-c", "3", "-i", "0.2", "-W", "1", "2001:db8:b::1"],
    );
    let carried = gw.nft_counter("tlbgw", "gre6");
    assert!(
        carried >= 3,
        "GRE packets carrying IPv6 at the gateway: {carried}\n{}",
        director.log(dpid)
    );
    director.stop(dpid);
    let route = director.ip(&format!("-6 route show {PREFIX6}"));
    assert!(route.trim().is_empty(), "left behind: {route:?}");
}
