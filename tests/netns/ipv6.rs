//! An IPv6 VIP in TUN mode over an IPv6 underlay, for ip6ip6 (`ipip`), GRE and GUE, and over an
//! IPv4 underlay (sit-style IPv6-in-IPv4, GRE, GUE): the client
//! talks to `[2001:db8:100::100]:80`; the router sends it to the director; the director wraps
//! each packet in an IPv6 outer header to a real server, whose agent unwraps it for the httpd on
//! the hidden VIP (a /128 on lo); the answer goes from the VIP straight back to the client.
//!
//! Checked per tunnel: `adm -L -n` line by line in ipvsadm's IPv6 format, rr exact over 8
//! connections, the replies bypass the director (nftables counters there and at the router),
//! 8 MB down and up intact, and the client's path MTU to the VIP lowered by the director's
//! Packet Too Big to exactly the tunnel MTU less the outer header.

use std::fs;

use tunlb::lab::httpd::blob_sha256;

use crate::harness::{
    adm, curl_upload_args, for_each_encap, upload_blob, wait_until, Netns, Pid, TempPath, Topology,
    STARTUP,
};

const VIP: &str = "2001:db8:100::100";
const DIRECTOR: &str = "2001:db8:2::2";
const RS1: &str = "2001:db8:3::12";
const RS2: &str = "2001:db8:3::13";

for_each_encap!(
    ipv6_vip_over_an_ipv6_underlay,
    ipv6_vip_over_an_ipv4_underlay
);

/// The real servers' addresses the director tunnels to, and the agents' `--allow`.
#[derive(Clone, Copy, PartialEq)]
enum Underlay {
    Ipv6,
    Ipv4,
}

/// The IPv4 underlay beside the IPv6 network: the director (10.2.0.2) reaches rs1 10.3.0.12
/// and rs2 10.3.0.13 through the router; clients and the VIP stay IPv6.
fn add_ipv4_underlay(topo: &Topology) {
    let ip = |role: &str, cmd: &str| topo.ns(role).ip(cmd);
    ip("director", "addr add 10.2.0.2/24 dev eth0");
    ip("router", "addr add 10.2.0.1/24 dev to-director");
    ip("router", "addr add 10.3.0.1/24 dev rs-lan");
    ip("rs1", "addr add 10.3.0.12/24 dev eth0");
    ip("rs2", "addr add 10.3.0.13/24 dev eth0");
    ip("director", "route add default via 10.2.0.1");
    ip("rs1", "route add default via 10.3.0.1");
    ip("rs2", "route add default via 10.3.0.1");
    topo.ns("router").sysctl("net.ipv4.ip_forward", "1");
}

fn ipv6_vip_over_an_ipv6_underlay(encap: &'static str) {
    run(encap, Underlay::Ipv6);
}

/// The must-show's "IPv6 VIP over an IPv4 underlay": sit-style 41-in-IPv4, GRE 0x86DD and GUE
/// carrying IPv6, the Packet Too Big advertising 1500 less the IPv4 outer header.
fn ipv6_vip_over_an_ipv4_underlay(encap: &'static str) {
    run(encap, Underlay::Ipv4);
}

/// client — router — director, and the router's rs-lan bridge with rs1 and rs2; IPv6 only
/// (every address without duplicate address detection, so it is usable at once).
fn build() -> Topology {
    let topo = Topology::builder()
        .netns("client")
        .netns("router")
        .netns("director")
        .link(
            ("client", "eth0", "2001:db8:1::10/64 nodad"),
            ("router", "to-client", "2001:db8:1::1/64 nodad"),
        )
        .link(
            ("director", "eth0", "2001:db8:2::2/64 nodad"),
            ("router", "to-director", "2001:db8:2::1/64 nodad"),
        )
        .netns("rs1")
        .netns("rs2")
        .bridge("router", "rs-lan", "2001:db8:3::1/64 nodad")
        .link_to_bridge(
            ("rs1", "eth0", "2001:db8:3::12/64 nodad"),
            "router",
            "to-rs1",
            "rs-lan",
        )
        .link_to_bridge(
            ("rs2", "eth0", "2001:db8:3::13/64 nodad"),
            "router",
            "to-rs2",
            "rs-lan",
        )
        .route("client", "default via 2001:db8:1::1")
        .route("director", "default via 2001:db8:2::1")
        .route("rs1", "default via 2001:db8:3::1")
        .route("rs2", "default via 2001:db8:3::1")
        .route("router", &format!("{VIP}/128 via {DIRECTOR}"))
        .build();
    topo.ns("router")
        .sysctl("net.ipv6.conf.all.forwarding", "1");
    topo
}

/// Starts the agent for the IPv6 VIP and waits for its /128 on lo.
fn start_agent6(ns: &Netns, encap: &str, underlay: Underlay) -> Pid {
    let allow = match underlay {
        Underlay::Ipv6 => format!("{DIRECTOR}/128"),
        Underlay::Ipv4 => "10.2.0.2/32".to_string(),
    };
    let args = [
        "realserver",
        "--vip",
        VIP,
        "--encap",
        encap,
        "--allow",
        &allow,
    ];
    let pid = ns.spawn("agent", crate::harness::TUNLB, &args);
    let on_lo = format!("{VIP}/128");
    wait_until(&format!("the agent in {}", ns.name()), STARTUP, || {
        ns.assert_running(pid);
        ns.ip("-o addr show dev lo").contains(&on_lo)
    });
    pid
}

/// Starts an httpd on [vip]:80 and [rip]:80 (for health checks) answering "from `rip`" and
/// waits until it answers locally.
pub(crate) fn start_httpd6(ns: &Netns, vip: &str, rip: &str) -> Pid {
    let listen = format!("[{vip}]:80");
    let listen_rip = format!("[{rip}]:80");
    let banner = format!("from {rip}");
    let pid = ns.spawn(
        "httpd",
        crate::harness::TUNLB,
        &[
            "httpd",
            "--listen",
            &listen,
            "--listen",
            &listen_rip,
            "--banner",
            &banner,
        ],
    );
    let url = format!("http://[{vip}]/");
    wait_until(&format!("httpd in {}", ns.name()), STARTUP, || {
        ns.assert_running(pid);
        ns.try_exec("curl", &["-g", "-s", "--max-time", "1", &url])
            .status
            .success()
    });
    pid
}

/// One request from `client` to http://[vip]/ on a new connection: the answer's first line,
/// or curl's message.
pub(crate) fn get_vip(client: &Netns, vip: &str) -> Result<String, String> {
    let url = format!("http://[{vip}]/");
    let args = [
        "-g",
        "-s",
        "-S",
        "-f",
        "--max-time",
        "5",
        "-H",
        "Connection: close",
        &url,
    ];
    let out = client.try_exec("curl", &args);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Counts, with nftables, the service's answers (TCP from `vip` port 80) in `ns` on hooks
/// `hooks` (`forward`, `input`, `output`...): the table `tlb6` with one counter `from_vip`.
/// (The director's own Packet Too Big messages come from the VIP too, as ICMPv6.)
pub(crate) fn count_from_vip(ns: &Netns, vip: &str, hooks: &[&str]) {
    let mut rules = String::from("table inet tlb6 {\n  counter from_vip {}\n");
    for hook in hooks {
        rules.push_str(&format!(
            "  chain {hook} {{\n    type filter hook {hook} priority 0;\n    ip6 saddr {vip} tcp sport 80 counter name from_vip\n  }}\n"
        ));
    }
    rules.push_str("}\n");
    ns.nft(&rules);
}

fn run(encap: &'static str, underlay: Underlay) {
    const SIZE: u64 = 8 << 20;
    let topo = build();
    if underlay == Underlay::Ipv4 {
        add_ipv4_underlay(&topo);
    }
    let (rs1, rs2) = match underlay {
        Underlay::Ipv6 => ("[2001:db8:3::12]", "[2001:db8:3::13]"),
        Underlay::Ipv4 => ("10.3.0.12", "10.3.0.13"),
    };
    let director = topo.ns("director");
    let dpid = crate::harness::start_director(director, &[]);
    for (role, rip) in [("rs1", RS1), ("rs2", RS2)] {
        start_agent6(topo.ns(role), encap, underlay);
        start_httpd6(topo.ns(role), VIP, rip);
    }
    adm(director, &format!("-A -t [{VIP}]:80 -s rr"));
    for rip in [rs1, rs2] {
        adm(
            director,
            &format!("-a -t [{VIP}]:80 -r {rip} -i --tun-type {encap}"),
        );
    }
    // ipvsadm's IPv6 listing, line by line.
    let listing = adm(director, "-L -n");
    let lines: Vec<&str> = listing.lines().collect();
    let servers = match underlay {
        Underlay::Ipv6 => [
            "  -> [2001:db8:3::12]:80          Tunnel  1      0          0         ",
            "  -> [2001:db8:3::13]:80          Tunnel  1      0          0         ",
        ],
        Underlay::Ipv4 => [
            "  -> 10.3.0.12:80                 Tunnel  1      0          0         ",
            "  -> 10.3.0.13:80                 Tunnel  1      0          0         ",
        ],
    };
    assert_eq!(
        lines,
        [
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
            "TCP  [2001:db8:100::100]:80 rr",
            servers[0],
            servers[1],
        ],
        "{listing}"
    );
    count_from_vip(director, VIP, &["input", "forward", "output"]);
    count_from_vip(topo.ns("router"), VIP, &["forward"]);

    // rr, exact: 8 new connections alternate.
    let client = topo.ns("client");
    let mut answers = Vec::new();
    for i in 0..8 {
        let answer = get_vip(client, VIP)
            .unwrap_or_else(|e| panic!("request {i} failed: {e}\n{}", director.log(dpid)));
        answers.push(answer);
    }
    let first = answers[0].clone();
    let other = if first == format!("from {RS1}") {
        format!("from {RS2}")
    } else {
        format!("from {RS1}")
    };
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a, if i % 2 == 0 { &first } else { &other }, "{answers:?}");
    }

    // 8 MB down and up.
    let down = TempPath::new(&format!("download6-{encap}-{}", client.name()));
    let big = format!("http://[{VIP}]/bytes/{SIZE}");
    let out = client.try_exec(
        "curl",
        &[
            "-g",
            "-s",
            "-f",
            "--max-time",
            "60",
            "-o",
            &down.arg(),
            &big,
        ],
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
    let up = upload_blob(client, &format!("upload6-{encap}"), SIZE);
    let body = format!("@{}", up.arg());
    let upload = format!("http://[{VIP}]/upload");
    let mut args = vec!["-g"];
    args.extend(curl_upload_args(&body, &upload));
    let answer = client.exec("curl", &args);
    assert_eq!(
        answer,
        format!("length {SIZE}\nsha256 {}\n", blob_sha256(SIZE)),
        "upload"
    );

    // The upload's full-size segments did not fit the tunnel: the director's Packet Too Big
    // set the client's path MTU to the VIP to 1500 less the outer header.
    let overhead = match (underlay, encap) {
        (Underlay::Ipv6, "ipip") => 40,
        (Underlay::Ipv6, "gre") => 44,
        (Underlay::Ipv6, _) => 52,
        (Underlay::Ipv4, "ipip") => 20,
        (Underlay::Ipv4, "gre") => 24,
        (Underlay::Ipv4, _) => 32,
    };
    let route = client.ip(&format!("-6 route get {VIP}"));
    assert!(
        route.contains(&format!("mtu {}", 1500 - overhead)),
        "path MTU to the VIP: {route}"
    );
    let stats = adm(director, "-L -n --stats");
    eprintln!("{stats}");

    // The replies went from the real servers through the router, none through the director.
    let at_director = director.nft_counter("tlb6", "from_vip");
    let at_router = topo.ns("router").nft_counter("tlb6", "from_vip");
    assert_eq!(at_director, 0, "replies crossed the director");
    // At least the SYN-ACK and the answer of each of the 10 connections (the router forwards
    // the real servers' TSO super-packets whole, so the 8 MB download counts in hundreds).
    assert!(
        at_router >= 20,
        "only {at_router} replies from the VIP crossed the router"
    );
}

/// keepalived.conf with an IPv6 virtual_server (`ip_family inet6`, GUE to IPv6 real servers,
/// a TCP_CHECK and an HTTP_GET): `tunlb check-config` passes it, the director runs it and
/// spreads requests over both servers; the checks of IPv6 real servers are not run yet, and
/// the director says so for each of them.
#[test]
fn keepalived_conf_with_ipv6_services_runs() {
    let topo = build();
    for role in ["rs1", "rs2"] {
        start_agent6(topo.ns(role), "gue", Underlay::Ipv6);
    }
    start_httpd6(topo.ns("rs1"), VIP, RS1);
    start_httpd6(topo.ns("rs2"), VIP, RS2);
    let director = topo.ns("director");
    let conf = TempPath::new(&format!("keepalived6-{}.conf", director.name()));
    fs::write(
        conf.path(),
        format!(
            "virtual_server {VIP} 80 {{
    ip_family inet6
    delay_loop 1
    lb_algo rr
    lb_kind TUN type gue port 6080
    protocol TCP
    real_server {RS1} 80 {{
        weight 1
        TCP_CHECK {{
            connect_timeout 1
            retry 0
        }}
    }}
    real_server {RS2} 80 {{
        weight 1
        HTTP_GET {{
            url {{
                path /
                status_code 200
            }}
            connect_timeout 1
            retry 0
        }}
    }}
}}
"
        ),
    )
    .expect("write the keepalived.conf");
    let check = director.try_exec(crate::harness::TUNLB, &["check-config", &conf.arg()]);
    assert!(
        check.status.success(),
        "check-config: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let dpid = crate::harness::start_director(director, &["--keepalived-conf", &conf.arg()]);
    let listed = |rip: &str| {
        adm(director, "-L -n")
            .lines()
            .any(|l| l.starts_with(&format!("  -> [{rip}]:80 ")))
    };
    wait_until("both IPv6 real servers listed", STARTUP, || {
        listed(RS1) && listed(RS2)
    });
    let client = topo.ns("client");
    let get = || get_vip(client, VIP).unwrap_or_else(|e| e);
    let mut answers: Vec<String> = (0..4).map(|_| get()).collect();
    answers.sort();
    assert_eq!(
        answers,
        [
            format!("from {RS1}"),
            format!("from {RS1}"),
            format!("from {RS2}"),
            format!("from {RS2}")
        ],
        "rr over both\n{}",
        director.log(dpid)
    );
    let log = director.log(dpid);
    for rip in [RS1, RS2] {
        assert!(
            log.contains(&format!(
                "real server [{rip}]:80: health checks of IPv6 real servers are not run yet"
            )),
            "the director says {rip} is not checked:\n{log}"
        );
    }
}
