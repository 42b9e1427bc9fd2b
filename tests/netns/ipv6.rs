//! An IPv6 VIP in TUN mode over an IPv6 underlay, for ip6ip6 (`ipip`), GRE and GUE, and over an
//! IPv4 underlay (sit-style IPv6-in-IPv4, GRE, GUE): the client
//! talks to `[2001:db8:100::100]:80`; the router sends it to the director; the director wraps
//! each packet in an IPv6 outer header to a real server, whose agent unwraps it for the httpd on
//! the hidden VIP (a /128 on lo); the answer goes from the VIP straight back to the client.
//!
//! The same over an IPv6 underlay for an IPv4 VIP (`192.168.150.100`, 4in6, GRE and GUE
//! carrying IPv4 over IPv6).
//!
//! Checked per tunnel: `adm -L -n` line by line in ipvsadm's IPv6 format, rr exact over 8
//! connections, the replies bypass the director (nftables counters there and at the router),
//! 8 MB down and up intact, and the client's path MTU to the VIP lowered by the director's
//! Packet Too Big (fragmentation needed, for the IPv4 VIP) to exactly the tunnel MTU less the
//! outer header. With a keepalived.conf, the health checks of IPv6 real servers take a stopped
//! one out and bring it back.

use std::fs;

use tunlb::lab::httpd::blob_sha256;

use std::time::Instant;

use crate::harness::{
    adm, curl_upload_args, for_each_encap, upload_blob, wait_until, Netns, Pid, TempPath, Topology,
    STARTUP,
};
use crate::health::{weight_in, CONNECT_TIMEOUT, DELAY_BEFORE_RETRY, DELAY_LOOP, DETECT, RETRY};

const VIP: &str = "2001:db8:100::100";
/// The IPv4 VIP of the "IPv4 VIP over an IPv6 underlay" tests.
const VIP4: &str = "192.168.150.100";
const DIRECTOR: &str = "2001:db8:2::2";
const RS1: &str = "2001:db8:3::12";
const RS2: &str = "2001:db8:3::13";

for_each_encap!(
    ipv6_vip_over_an_ipv6_underlay,
    ipv6_vip_over_an_ipv4_underlay,
    ipv4_vip_over_an_ipv6_underlay,
    ipv4_datagrams_without_df_over_an_ipv6_underlay
);

/// IPv6 datagrams larger than the path, fragmented by the client (its link at MTU 1400, so
/// that each fragment fits the tunnel): the first fragment is scheduled, the later ones (no
/// ports) follow it through the director's fragment tracker, and the real server's kernel
/// reassembles the datagram the agent unwrapped; its UDP echo answers with the length and
/// digest of what arrived. Two datagrams from two ports: rr sends one to each server.
#[test]
fn ipv6_fragments_follow_their_first_fragment() {
    const PORT: u16 = 5353;
    let topo = build();
    let (client, director) = (topo.ns("client"), topo.ns("director"));
    client.ip("link set dev eth0 mtu 1400");
    crate::harness::start_director(director, &[]);
    let service = format!("[{VIP}]:{PORT}");
    for (role, rip) in [("rs1", RS1), ("rs2", RS2)] {
        let ns = topo.ns(role);
        start_agent6(ns, VIP, "ipip", Underlay::Ipv6);
        crate::harness::start_httpd(ns, &service, &format!("from {rip}"), &["--udp-echo"]);
    }
    adm(director, &format!("-A -u {service} -s rr"));
    for rip in [RS1, RS2] {
        adm(director, &format!("-a -u {service} -r [{rip}]:{PORT} -i"));
    }
    one_datagram_per_server(client, VIP, PORT, 4000, 42000, [RS1, RS2]);
    let stats = adm(director, "-L -n --stats");
    // Three fragments per datagram crossed the director, one flow each.
    let inpkts: u64 = stats
        .lines()
        .filter(|l| l.starts_with("  -> "))
        .filter_map(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
        .sum();
    assert_eq!(inpkts, 6, "fragments forwarded:\n{stats}");
}

/// The real servers' addresses the director tunnels to, and the agents' `--allow`.
#[derive(Clone, Copy, PartialEq)]
enum Underlay {
    Ipv6,
    Ipv4,
}

/// IPv4 beside the IPv6 network: the director (10.2.0.2) reaches rs1 10.3.0.12 and rs2
/// 10.3.0.13 through the router (the IPv4 underlay), and the client 10.1.0.10 reaches the IPv4
/// VIP through the router and the director.
fn add_ipv4(topo: &Topology) {
    let ip = |role: &str, cmd: &str| topo.ns(role).ip(cmd);
    ip("client", "addr add 10.1.0.10/24 dev eth0");
    ip("router", "addr add 10.1.0.1/24 dev to-client");
    ip("client", "route add default via 10.1.0.1");
    ip("director", "addr add 10.2.0.2/24 dev eth0");
    ip("router", "addr add 10.2.0.1/24 dev to-director");
    ip("router", "addr add 10.3.0.1/24 dev rs-lan");
    ip("rs1", "addr add 10.3.0.12/24 dev eth0");
    ip("rs2", "addr add 10.3.0.13/24 dev eth0");
    ip("director", "route add default via 10.2.0.1");
    ip("rs1", "route add default via 10.3.0.1");
    ip("rs2", "route add default via 10.3.0.1");
    ip("router", &format!("route add {VIP4}/32 via 10.2.0.2"));
    topo.ns("router").sysctl("net.ipv4.ip_forward", "1");
}

fn ipv6_vip_over_an_ipv6_underlay(encap: &'static str) {
    run(encap, Underlay::Ipv6, VIP);
}

/// The must-show's "IPv6 VIP over an IPv4 underlay": sit-style 41-in-IPv4, GRE 0x86DD and GUE
/// carrying IPv6, the Packet Too Big advertising 1500 less the IPv4 outer header.
fn ipv6_vip_over_an_ipv4_underlay(encap: &'static str) {
    run(encap, Underlay::Ipv4, VIP);
}

/// The issue's "IPv4 VIPs over an IPv6 underlay": the client and the VIP are IPv4, the real
/// servers' addresses IPv6; the director sends 4in6 (`ipip`, as the kernel's ip6tnl), GRE
/// 0x0800 or GUE carrying IPv4 over IPv6, the fragmentation needed advertising 1500 less the
/// IPv6 outer header.
fn ipv4_vip_over_an_ipv6_underlay(encap: &'static str) {
    run(encap, Underlay::Ipv6, VIP4);
}

/// IPv4 datagrams without DF that no longer fit 1500 bytes once wrapped in an IPv6 outer
/// header: the director sends the outer datagram as IPv6 fragments (the router counts them),
/// the real server's kernel reassembles them before the agent strips the tunnel, and each
/// server's UDP echo answers the client with the length and digest of what arrived. The
/// client's kernel fragments the 3000-byte datagram first (its own link is 1500): the director
/// takes the IPv4 fragments of each flow to its server as for any IPv4 VIP.
fn ipv4_datagrams_without_df_over_an_ipv6_underlay(encap: &'static str) {
    const PORT: u16 = 5353;
    let topo = build();
    add_ipv4(&topo);
    let (client, director, router) = (topo.ns("client"), topo.ns("director"), topo.ns("router"));
    client.sysctl("net.ipv4.ip_no_pmtu_disc", "1");
    router.nft(
        "table inet tlbfrag6 {
  counter outer_frags {}
  chain forward {
    type filter hook forward priority 0;
    ip6 daddr 2001:db8:3::/64 exthdr frag exists counter name outer_frags
  }
}
",
    );
    crate::harness::start_director(director, &[]);
    let service = format!("{VIP4}:{PORT}");
    for (role, rip) in [("rs1", RS1), ("rs2", RS2)] {
        let ns = topo.ns(role);
        start_agent6(ns, VIP4, encap, Underlay::Ipv6);
        crate::harness::start_httpd(ns, &service, &format!("from {rip}"), &["--udp-echo"]);
    }
    adm(director, &format!("-A -u {service} -s rr"));
    for rip in [RS1, RS2] {
        adm(
            director,
            &format!("-a -u {service} -r [{rip}]:{PORT} -i --tun-type {encap}"),
        );
    }
    one_datagram_per_server(client, VIP4, PORT, 3000, 41000, [RS1, RS2]);
    // Each datagram: IPv4 fragments of 1500, 1500 and 68 bytes from the client; each of the
    // 1500-byte ones leaves the director as two IPv6 fragments, the 68-byte one whole.
    assert_eq!(
        router.nft_counter("tlbfrag6", "outer_frags"),
        8,
        "IPv6 fragments from the director"
    );
}

/// Downloads `size` bytes from http://`vhost`/bytes/`size` and uploads as many to
/// http://`vhost`/upload from `client` (curl; `tag` names the temporary files); panics with
/// curl's message unless both arrive intact (length and sha256).
pub(crate) fn down_and_up(client: &Netns, vhost: &str, tag: &str, size: u64) {
    let down = TempPath::new(&format!("{tag}-down-{}", client.name()));
    let big = format!("http://{vhost}/bytes/{size}");
    let args = [
        "-g",
        "-s",
        "-f",
        "--max-time",
        "60",
        "-o",
        &down.arg(),
        &big,
    ];
    let out = client.try_exec("curl", &args);
    assert!(
        out.status.success(),
        "download failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = fs::read(down.path()).expect("read the download");
    assert_eq!(got.len() as u64, size, "download size");
    assert_eq!(
        tunlb::lab::httpd::sha256_hex(&got),
        blob_sha256(size),
        "download corrupted"
    );
    let up = upload_blob(client, &format!("{tag}-up"), size);
    let body = format!("@{}", up.arg());
    let upload = format!("http://{vhost}/upload");
    let mut args = vec!["-g"];
    args.extend(curl_upload_args(&body, &upload));
    let answer = client.exec("curl", &args);
    assert_eq!(
        answer,
        format!("length {size}\nsha256 {}\n", blob_sha256(size)),
        "upload"
    );
}

/// Sends two UDP datagrams of `size` bytes from `client` to `vip`:`port`, from source ports
/// `sport` and `sport + 1` (two flows), and checks that each real server's UDP echo answered
/// one of them with its exact length and sha256 (rr over the real servers `rips`).
pub(crate) fn one_datagram_per_server(
    client: &Netns,
    vip: &str,
    port: u16,
    size: usize,
    sport: u16,
    rips: [&str; 2],
) {
    let mut from = Vec::new();
    for i in 0..2u16 {
        let mut data = vec![0u8; size];
        tunlb::lab::httpd::fill_blob(u64::from(i) << 20, &mut data);
        let file = TempPath::new(&format!("datagram-{sport}-{i}-{}", client.name()));
        fs::write(file.path(), &data).expect("write the datagram");
        let answer = crate::fragments::send_datagram(client, &file, sport + i, vip, port);
        let mut lines = answer.lines();
        let banner = lines.next().unwrap_or_default().to_owned();
        assert_eq!(
            lines.collect::<Vec<_>>(),
            [
                format!("length {size}"),
                format!("sha256 {}", tunlb::lab::httpd::sha256_hex(&data))
            ],
            "datagram {i} to {vip}: answer {answer:?}"
        );
        from.push(banner);
    }
    from.sort();
    assert_eq!(from, rips.map(|r| format!("from {r}")), "rr");
}

/// rr, exact: `answers` (each a real server's banner, "from RIP") alternate between the two
/// real servers `rips`, starting with either.
pub(crate) fn assert_rr_alternates(answers: &[String], rips: [&str; 2]) {
    let (rs1, rs2) = (format!("from {}", rips[0]), format!("from {}", rips[1]));
    let first = answers.first().expect("answers");
    assert!(*first == rs1 || *first == rs2, "{answers:?}");
    let other = if *first == rs1 { &rs2 } else { &rs1 };
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a, if i % 2 == 0 { first } else { other }, "{answers:?}");
    }
}

/// `vip` as a URL's or ipvsadm's host: IPv6 in brackets.
fn host(vip: &str) -> String {
    if vip.contains(':') {
        format!("[{vip}]")
    } else {
        vip.to_owned()
    }
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

/// Starts the agent for `vip` and waits for it on lo.
fn start_agent6(ns: &Netns, vip: &str, encap: &str, underlay: Underlay) -> Pid {
    start_agent6_with(ns, vip, encap, underlay, &[])
}

/// [`start_agent6`] with `extra` flags.
fn start_agent6_with(
    ns: &Netns,
    vip: &str,
    encap: &str,
    underlay: Underlay,
    extra: &[&str],
) -> Pid {
    let allow = match underlay {
        Underlay::Ipv6 => format!("{DIRECTOR}/128"),
        Underlay::Ipv4 => "10.2.0.2/32".to_string(),
    };
    let mut args = vec![
        "realserver",
        "--vip",
        vip,
        "--encap",
        encap,
        "--allow",
        &allow,
    ];
    args.extend_from_slice(extra);
    let pid = ns.spawn("agent", crate::harness::TUNLB, &args);
    let on_lo = format!("{vip}/{}", if vip.contains(':') { 128 } else { 32 });
    wait_until(&format!("the agent in {}", ns.name()), STARTUP, || {
        ns.assert_running(pid);
        ns.ip("-o addr show dev lo").contains(&on_lo)
    });
    pid
}

/// Starts an httpd on `vip`:80 and [RIP]:80 (for health checks) answering "from `rip`" and
/// waits until it answers locally.
pub(crate) fn start_httpd6(ns: &Netns, vip: &str, rip: &str) -> Pid {
    let listen = format!("{}:80", host(vip));
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
    let url = format!("http://{}/", host(vip));
    wait_until(&format!("httpd in {}", ns.name()), STARTUP, || {
        ns.assert_running(pid);
        ns.try_exec("curl", &["-g", "-s", "--max-time", "1", &url])
            .status
            .success()
    });
    pid
}

/// One request from `client` to http://`vip`/ on a new connection: the answer's first line,
/// or curl's message.
pub(crate) fn get_vip(client: &Netns, vip: &str) -> Result<String, String> {
    get_path(client, vip, "/")
}

/// One GET of http://`vip``path` from `client` on a new connection: the answer, or curl's
/// message.
pub(crate) fn get_path(client: &Netns, vip: &str, path: &str) -> Result<String, String> {
    let url = format!("http://{}{path}", host(vip));
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
    let family = if vip.contains(':') { "ip6" } else { "ip" };
    let mut rules = String::from("table inet tlb6 {\n  counter from_vip {}\n");
    for hook in hooks {
        rules.push_str(&format!(
            "  chain {hook} {{\n    type filter hook {hook} priority 0;\n    {family} saddr {vip} tcp sport 80 counter name from_vip\n  }}\n"
        ));
    }
    rules.push_str("}\n");
    ns.nft(&rules);
}

fn run(encap: &'static str, underlay: Underlay, vip: &str) {
    const SIZE: u64 = 8 << 20;
    let topo = build();
    if underlay == Underlay::Ipv4 || !vip.contains(':') {
        add_ipv4(&topo);
    }
    let vhost = host(vip);
    let (rs1, rs2) = match underlay {
        Underlay::Ipv6 => ("[2001:db8:3::12]", "[2001:db8:3::13]"),
        Underlay::Ipv4 => ("10.3.0.12", "10.3.0.13"),
    };
    let director = topo.ns("director");
    let dpid = crate::harness::start_director(director, &[]);
    for (role, rip) in [("rs1", RS1), ("rs2", RS2)] {
        start_agent6(topo.ns(role), vip, encap, underlay);
        start_httpd6(topo.ns(role), vip, rip);
    }
    adm(director, &format!("-A -t {vhost}:80 -s rr"));
    for rip in [rs1, rs2] {
        adm(
            director,
            &format!("-a -t {vhost}:80 -r {rip} -i --tun-type {encap}"),
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
    let service_line = format!("TCP  {vhost}:80 rr");
    assert_eq!(
        lines,
        [
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
            service_line.as_str(),
            servers[0],
            servers[1],
        ],
        "{listing}"
    );
    count_from_vip(director, vip, &["input", "forward", "output"]);
    count_from_vip(topo.ns("router"), vip, &["forward"]);

    // rr, exact: 8 new connections alternate.
    let client = topo.ns("client");
    let mut answers = Vec::new();
    for i in 0..8 {
        let answer = get_vip(client, vip)
            .unwrap_or_else(|e| panic!("request {i} failed: {e}\n{}", director.log(dpid)));
        answers.push(answer);
    }
    assert_rr_alternates(&answers, [RS1, RS2]);
    // `-L -n -c` lists the 8 connections, in ipvsadm's columns (IPv6 in brackets).
    let conns = adm(director, "-L -n -c");
    let listed = conns
        .lines()
        .filter(|l| l.starts_with("TCP ") && l.contains(&format!(" {vhost}:80 ")))
        .count();
    assert_eq!(listed, 8, "-L -n -c:\n{conns}");

    // 8 MB down and up.
    down_and_up(client, &vhost, &format!("tun6-{encap}"), SIZE);

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
    let route = client.ip(&format!("route get {vip}"));
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

/// Authenticated GUE over the IPv6 underlay: the director (`--tunnel-key`,
/// `--local-address6`) seals every packet to the IPv6 real servers with a MAC over the IPv6
/// outer addresses; agents holding the key deliver them (rr over both, 1 MB down and up
/// intact), and GUE forged from the client with the director's address as source — without
/// the option, or with the right key id and a made-up MAC — is dropped and counted by reason,
/// nothing of it delivered.
#[test]
fn authenticated_gue_over_an_ipv6_underlay() {
    use crate::harness::{metric_value, scrape_metrics};
    use crate::tun_mode::{forged_auth_header, key_file, KEY_A};
    let topo = build();
    let key = key_file("gue6-auth.key", KEY_A);
    let k = key.arg();
    let director = topo.ns("director");
    let dpid = crate::harness::start_director(
        director,
        &["--tunnel-key", &k, "--local-address6", DIRECTOR],
    );
    let agent_flags = ["--tunnel-key", &k, "--metrics-listen", "127.0.0.1:9101"];
    for (role, rip) in [("rs1", RS1), ("rs2", RS2)] {
        start_agent6_with(topo.ns(role), VIP, "gue", Underlay::Ipv6, &agent_flags);
        start_httpd6(topo.ns(role), VIP, rip);
    }
    let vhost = host(VIP);
    adm(director, &format!("-A -t {vhost}:80 -s rr"));
    for rip in [RS1, RS2] {
        adm(
            director,
            &format!("-a -t {vhost}:80 -r [{rip}] -i --tun-type gue"),
        );
    }
    let client = topo.ns("client");
    let mut answers = Vec::new();
    for i in 0..4 {
        let answer = get_vip(client, VIP)
            .unwrap_or_else(|e| panic!("request {i} failed: {e}\n{}", director.log(dpid)));
        answers.push(answer);
    }
    assert_rr_alternates(&answers, [RS1, RS2]);
    down_and_up(client, &vhost, "gue6-auth", 1 << 20);

    let rs1 = |what: &str| {
        let text = scrape_metrics(topo.ns("rs1"), "127.0.0.1:9101", &[]);
        if what == "delivered" {
            metric_value(&text, "tunlb_agent_delivered_packets_total", &[])
        } else {
            let label = format!("reason=\"{what}\"");
            metric_value(&text, "tunlb_agent_drops_total", &[&label])
        }
    };
    let delivered = rs1("delivered");
    assert!(delivered > 0);
    assert_eq!(rs1("auth_missing") + rs1("auth_bad_mac"), 0);
    // Inner protocol 41 (IPv6): no option; then the option with a made-up MAC.
    send_forged_gue6(client, "00290000", 20);
    let forged = forged_auth_header(KEY_A, u64::MAX / 2).replacen("0704", "0729", 1);
    send_forged_gue6(client, &forged, 20);
    wait_until("the forged packets to be counted", STARTUP, || {
        rs1("auth_missing") >= 20 && rs1("auth_bad_mac") >= 20
    });
    assert_eq!(rs1("auth_missing"), 20);
    assert_eq!(rs1("auth_bad_mac"), 20);
    assert_eq!(rs1("delivered"), delivered, "a forged packet was delivered");
    // Real traffic still flows.
    assert!(get_vip(client, VIP).is_ok());
}

/// Sends `count` GUE datagrams (header `gue`, hex, carrying an IPv6 UDP packet to the VIP)
/// from the client with the director's address as outer source to rs1's GUE port.
fn send_forged_gue6(client: &Netns, gue: &str, count: u32) {
    const SCRIPT: &str = r#"
import socket, struct, sys
src, dst, vip, client, gue, count = sys.argv[1:7]
def a(x): return socket.inet_pton(socket.AF_INET6, x)
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
def udp(s, d, sport, dport, data):
    u = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    c = csum(a(s) + a(d) + struct.pack("!IxxxB", len(u), 17) + u) or 0xffff
    return u[:6] + struct.pack("!H", c) + u[8:]
def ip6(s, d, payload):
    return struct.pack("!IHBB", 0x60000000, len(payload), 17, 64) + a(s) + a(d) + payload
sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
for n in range(int(count)):
    inner = ip6(client, vip, udp(client, vip, 5555, 9999, b"forged %d" % n))
    outer = ip6(src, dst, udp(src, dst, 50000, 6080, bytes.fromhex(gue) + inner))
    sock.sendto(outer, (dst, 0))
"#;
    let n = count.to_string();
    client.exec(
        "python3",
        &["-c", SCRIPT, DIRECTOR, RS1, VIP, "2001:db8:1::10", gue, &n],
    );
}

/// keepalived.conf with an IPv6 virtual_server (`ip_family inet6`, GUE to IPv6 real servers,
/// each with a TCP_CHECK and an HTTP_GET on its RIP, rs2 with `inhibit_on_failure`):
/// `tunlb check-config` passes it, the director spreads requests over both servers, and the
/// health checks (issue 15) run against the IPv6 real servers as against IPv4 ones
/// (`health.rs`'s timing): rs1's httpd stops, rs1 leaves `adm -L -n` within the checks'
/// detection time and every new connection goes to rs2; it starts again, rs1 comes back and
/// answers again. Then the same with rs2, which stays listed with weight 0 while down.
#[test]
fn keepalived_conf_with_ipv6_services_checks_its_real_servers() {
    let topo = build();
    for role in ["rs1", "rs2"] {
        start_agent6(topo.ns(role), VIP, "gue", Underlay::Ipv6);
    }
    let mut httpds = [
        start_httpd6(topo.ns("rs1"), VIP, RS1),
        start_httpd6(topo.ns("rs2"), VIP, RS2),
    ];
    let director = topo.ns("director");
    let conf = TempPath::new(&format!("keepalived6-{}.conf", director.name()));
    let checks = format!(
        "TCP_CHECK {{
            connect_timeout {CONNECT_TIMEOUT}
            retry {RETRY}
            delay_before_retry {DELAY_BEFORE_RETRY}
            warmup 0
        }}
        HTTP_GET {{
            url {{
                path /
                status_code 200
            }}
            connect_timeout {CONNECT_TIMEOUT}
            retry {RETRY}
            delay_before_retry {DELAY_BEFORE_RETRY}
            warmup 0
        }}"
    );
    fs::write(
        conf.path(),
        format!(
            "virtual_server {VIP} 80 {{
    ip_family inet6
    delay_loop {DELAY_LOOP}
    lb_algo rr
    lb_kind TUN type gue port 6080
    protocol TCP
    real_server {RS1} 80 {{
        weight 1
        {checks}
    }}
    real_server {RS2} 80 {{
        weight 1
        inhibit_on_failure
        {checks}
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
    let weight = |rip: &str| weight_in(director, &format!("[{rip}]"));
    wait_until("both IPv6 real servers listed", STARTUP, || {
        weight(RS1) == Some(1) && weight(RS2) == Some(1)
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

    // rs1 (removed on failure), then rs2 (inhibit_on_failure: weight 0).
    for (i, (role, rip, other, down)) in [("rs1", RS1, RS2, None), ("rs2", RS2, RS1, Some(0))]
        .into_iter()
        .enumerate()
    {
        let ns = topo.ns(role);
        let stopped_at = Instant::now();
        ns.stop(httpds[i]);
        wait_until(&format!("{rip} to leave the table"), DETECT * 2, || {
            weight(rip) == down
        });
        let took = stopped_at.elapsed();
        eprintln!("{rip} left the table {took:?} after its httpd stopped");
        assert!(
            took <= DETECT,
            "{rip} left after {took:?}, more than {DETECT:?}\n{}",
            director.log(dpid)
        );
        let listing = adm(director, "-L -n");
        let want = match down {
            None => vec![format!("  -> [{other}]:80 ")],
            Some(_) => vec![format!("  -> [{RS1}]:80 "), format!("  -> [{RS2}]:80 ")],
        };
        let servers: Vec<&str> = listing
            .lines()
            .filter(|l| l.starts_with("  -> ["))
            .collect();
        assert_eq!(servers.len(), want.len(), "{listing}");
        for (line, prefix) in servers.iter().zip(&want) {
            assert!(line.starts_with(prefix.as_str()), "{listing}");
        }
        for _ in 0..6 {
            assert_eq!(get(), format!("from {other}"), "while {rip} is down");
        }

        let restarted_at = Instant::now();
        httpds[i] = start_httpd6(ns, VIP, rip);
        wait_until(&format!("{rip} back in the table"), DETECT * 2, || {
            weight(rip) == Some(1)
        });
        eprintln!(
            "{rip} back {:?} after its httpd restarted",
            restarted_at.elapsed()
        );
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
            "rr over both again after {rip} came back"
        );
    }
    // The checker's log lines name the IPv6 real servers in brackets; no warning that they
    // are not checked.
    let log = director.log(dpid);
    for (rip, what) in [(RS1, "removed"), (RS2, "weight 0")] {
        let down = format!("real server [{rip}]:80 down (");
        assert!(
            log.lines().any(|l| l.contains(&down) && l.ends_with(what)),
            "the director logs {rip} down, {what}:\n{log}"
        );
        assert!(
            log.contains(&format!("real server [{rip}]:80 up (")),
            "the director logs {rip} up:\n{log}"
        );
    }
    assert!(!log.contains("not run yet"), "{log}");
}
