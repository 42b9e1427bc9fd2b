//! NAT66 (`-m` with an IPv6 VIP and IPv6 real servers): the client talks to
//! `[2001:db8:100::100]:80` behind a router; the director rewrites each packet to a real
//! server's `[RIP]:8080` and hands it back to its kernel, which routes it onto the real servers'
//! LAN, whose default gateway the director is. The real servers (`tunlb httpd`, no agent)
//! answer the client's own address; the director's `ip -6 rule`s bring the answers into its
//! TUN, where they get the VIP as their source.
//!
//! ```text
//!  client 2001:db8:1::10 ── router ── 2001:db8:2::2 director 2001:db8:10::1 ── rs-lan (MTU 1400)
//!                                                                              ├─ rs1 2001:db8:10::12
//!                                                                              └─ rs2 2001:db8:10::13
//! ```
//!
//! Checked: `adm -L -n` line by line in ipvsadm's IPv6 format (Masq, the mapped port), rr exact
//! over 8 connections with each real server seeing the client's own address, 8 MB down and 8 MB
//! up intact (sha256), no packet from the real servers' addresses reaching the client, `adm -L
//! -n -c` listing the IPv6 connections, the Packet Too Big and the reply rules (`ip -6 rule`,
//! gone after the director stops).
//!
//! Packet Too Big: the real servers' LAN has an MTU of 1400, the client's links 1500, and the
//! director runs with `--tunnel-mtu 1400` (the path MTU to its real servers, as for IPv4 NAT).
//! TCP never needs it (both ends announce their MSS), so the client sends one 1500-byte UDP
//! datagram to the VIP; **the director** answers it with a Packet Too Big from the VIP
//! advertising 1400, and the client's path MTU to the VIP drops to 1400. (Without it the
//! director's kernel would send one when it forwards the rewritten packet onto the LAN, but
//! quoting client → RIP, which lowers the client's path MTU to the RIP, not to the VIP.)

use std::time::Duration;

use crate::harness::{adm, start_director, wait_until, Netns, Pid, Topology, STARTUP};

const VIP: &str = "2001:db8:100::100";
pub(crate) const CLIENT: &str = "2001:db8:1::10";
pub(crate) const RS1: &str = "2001:db8:10::12";
pub(crate) const RS2: &str = "2001:db8:10::13";
/// The real servers' LAN.
pub(crate) const RS_LAN: &str = "2001:db8:10::/64";
/// The port the real servers listen on (the service is [VIP]:80).
const RPORT: u16 = 8080;
/// The real servers' LAN's MTU (the client's links have 1500).
const LAN_MTU: u16 = 1400;

/// client — router — director, and the director's rs-lan bridge with rs1 and rs2 at MTU 1400;
/// IPv6 only, every address without duplicate address detection.
pub(crate) fn build() -> Topology {
    let topo = Topology::builder()
        .netns("client")
        .netns("router")
        .netns("director")
        .netns("rs1")
        .netns("rs2")
        .bridge("director", "rs-lan", "2001:db8:10::1/64 nodad")
        .link_to_bridge(
            ("rs1", "eth0", "2001:db8:10::12/64 nodad"),
            "director",
            "to-rs1",
            "rs-lan",
        )
        .link_to_bridge(
            ("rs2", "eth0", "2001:db8:10::13/64 nodad"),
            "director",
            "to-rs2",
            "rs-lan",
        )
        .link(
            ("client", "eth0", "2001:db8:1::10/64 nodad"),
            ("router", "to-client", "2001:db8:1::1/64 nodad"),
        )
        .link(
            ("director", "eth0", "2001:db8:2::2/64 nodad"),
            ("router", "to-dir", "2001:db8:2::1/64 nodad"),
        )
        .route("client", "default via 2001:db8:1::1")
        .route("director", "default via 2001:db8:2::1")
        .route("rs1", "default via 2001:db8:10::1")
        .route("rs2", "default via 2001:db8:10::1")
        .route("router", &format!("{VIP}/128 via 2001:db8:2::2"))
        .build();
    for role in ["router", "director"] {
        topo.ns(role).sysctl("net.ipv6.conf.all.forwarding", "1");
    }
    let mtu = |role: &str, dev: &str| {
        topo.ns(role)
            .ip(&format!("link set dev {dev} mtu {LAN_MTU}"));
    };
    mtu("rs1", "eth0");
    mtu("rs2", "eth0");
    mtu("director", "to-rs1");
    mtu("director", "to-rs2");
    mtu("director", "rs-lan");
    topo
}

/// Starts `tunlb httpd` on [rip]:8080 (TCP, and UDP echo) answering "from `rip`".
fn start_httpd6(ns: &Netns, rip: &str) -> Pid {
    let listen = format!("[{rip}]:{RPORT}");
    let banner = format!("from {rip}");
    let args = [
        "httpd",
        "--listen",
        &listen,
        "--banner",
        &banner,
        "--udp-echo",
    ];
    let pid = ns.spawn("httpd", crate::harness::TUNLB, &args);
    let url = format!("http://[{rip}]:{RPORT}/");
    wait_until(&format!("httpd in {}", ns.name()), STARTUP, || {
        ns.assert_running(pid);
        ns.try_exec("curl", &["-g", "-s", "--max-time", "1", &url])
            .status
            .success()
    });
    pid
}

#[test]
fn nat66_forwards_both_ways_with_port_mapping() {
    const SIZE: u64 = 8 << 20;
    let topo = build();
    let director = topo.ns("director");
    let dpid = start_director(director, &["--tunnel-mtu", &LAN_MTU.to_string()]);
    for (role, rip) in [("rs1", RS1), ("rs2", RS2)] {
        start_httpd6(topo.ns(role), rip);
    }
    adm(director, &format!("-A -t [{VIP}]:80 -s rr"));
    for rip in [RS1, RS2] {
        adm(director, &format!("-a -t [{VIP}]:80 -r [{rip}]:{RPORT} -m"));
    }
    adm(director, &format!("-A -u [{VIP}]:53 -s rr"));
    adm(director, &format!("-a -u [{VIP}]:53 -r [{RS1}]:{RPORT} -m"));

    // ipvsadm's IPv6 listing, line by line.
    let listing = adm(director, "-L -n");
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(
        lines,
        [
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
            "TCP  [2001:db8:100::100]:80 rr",
            "  -> [2001:db8:10::12]:8080       Masq    1      0          0         ",
            "  -> [2001:db8:10::13]:8080       Masq    1      0          0         ",
            "UDP  [2001:db8:100::100]:53 rr",
            "  -> [2001:db8:10::12]:8080       Masq    1      0          0         ",
        ],
        "{listing}"
    );
    // The reply rules, IPv6 ones.
    let rules = director.ip("-6 rule show");
    for want in [
        format!("from {RS1} ipproto tcp sport {RPORT} lookup 7461"),
        format!("from {RS2} ipproto tcp sport {RPORT} lookup 7461"),
        format!("from {RS1} ipproto ipv6-icmp lookup 7461"),
        "iif tunlb0 goto 102".to_string(),
    ] {
        assert!(rules.contains(&want), "{want} in:\n{rules}");
    }

    let client = topo.ns("client");
    client.nft(&format!(
        "table inet tlbnat6 {{
            counter from_rs_lan {{}}
            chain input {{ type filter hook input priority 0; policy accept;
                ip6 saddr {RS_LAN} counter name \"from_rs_lan\"
            }}
        }}"
    ));

    // rr, exact: 8 new connections alternate; each real server saw the client's own address.
    let mut servers = Vec::new();
    for i in 0..8 {
        let answer = crate::ipv6::get_path(client, VIP, "/whoami")
            .unwrap_or_else(|e| panic!("request {i} failed: {e}\n{}", director.log(dpid)));
        let mut lines = answer.lines();
        servers.push(lines.next().unwrap_or_default().to_owned());
        let seen = lines.next().unwrap_or_default();
        assert!(
            seen.starts_with(&format!("client [{CLIENT}]:")),
            "the real server saw {seen:?}"
        );
    }
    crate::ipv6::assert_rr_alternates(&servers, [RS1, RS2]);

    // 8 MB down and up.
    crate::ipv6::down_and_up(client, &format!("[{VIP}]"), "nat66", SIZE);
    assert_eq!(
        client.nft_counter("tlbnat6", "from_rs_lan"),
        0,
        "a packet from a real server's address reached the client"
    );

    // The IPv6 connections, as `-L -n -c` lists them (client, VIP, real server).
    let conns = adm(director, "-L -n -c");
    let listed = |rip: &str| {
        conns
            .lines()
            .filter(|l| {
                l.starts_with("TCP ")
                    && l.contains(&format!("[{CLIENT}]:"))
                    && l.contains(&format!("[{VIP}]:80"))
                    && l.contains(&format!("[{rip}]:{RPORT}"))
            })
            .count()
    };
    assert!(listed(RS1) >= 5 && listed(RS2) >= 5, "{conns}");

    // Packet Too Big: a 1500-byte datagram does not fit the real servers' LAN; the director
    // answers from the VIP with 1400, and the client's path MTU to the VIP drops to it.
    let before = client.ip(&format!("-6 route get {VIP}"));
    assert!(!before.contains("mtu"), "{before}");
    let send = format!("exec 3<>/dev/udp/{VIP}/53; head -c 1452 /dev/zero >&3");
    client.exec("bash", &["-c", &send]);
    wait_until(
        "the client's path MTU to the VIP",
        Duration::from_secs(5),
        || {
            client
                .ip(&format!("-6 route get {VIP}"))
                .contains(&format!("mtu {LAN_MTU}"))
        },
    );
    // A datagram that fits goes through and is answered from the VIP.
    let ask = format!("exec 3<>/dev/udp/{VIP}/53; printf hello >&3; timeout 3 head -n 1 <&3");
    assert_eq!(
        client.exec("bash", &["-c", &ask]).trim(),
        format!("from {RS1}")
    );
    let stats = adm(director, "-L -n --stats");
    eprintln!("{stats}");

    // The director stops: its IPv6 reply rules and table go with it.
    director.signal(dpid, "TERM");
    let (status, log) = director.wait_exit(dpid, Duration::from_secs(10));
    assert!(status.success(), "{log}");
    let rules = director.ip("-6 rule show");
    assert_eq!(
        rules.lines().count(),
        2,
        "only the default IPv6 rules are left:\n{rules}"
    );
    assert_eq!(director.ip("-6 route show table 7461"), "");
}

/// NAT66 and IPv6 fragments from the client: it sends 4000-byte UDP datagrams to
/// `[VIP]:5353` (its link at MTU 1400, so its kernel fragments them); the director sends each
/// fragment to the first fragment's real server `[RIP]:8080` (only the first carries the
/// ports; the later ones get only the new destination address), the first of a datagram
/// whose flow exists already included; each real server's UDP echo gets the datagram whole
/// (length and sha256), rr over both. The same two datagrams again (established flows).
#[test]
fn nat66_fragments_follow_their_first_fragment() {
    let topo = build();
    let (client, director) = (topo.ns("client"), topo.ns("director"));
    client.ip("link set dev eth0 mtu 1400");
    start_director(director, &["--tunnel-mtu", &LAN_MTU.to_string()]);
    for (role, rip) in [("rs1", RS1), ("rs2", RS2)] {
        start_httpd6(topo.ns(role), rip);
    }
    adm(director, &format!("-A -u [{VIP}]:5353 -s rr"));
    for rip in [RS1, RS2] {
        adm(
            director,
            &format!("-a -u [{VIP}]:5353 -r [{rip}]:{RPORT} -m"),
        );
    }
    for _ in 0..2 {
        crate::ipv6::one_datagram_per_server(client, VIP, 5353, 4000, 43000, [RS1, RS2]);
    }
    // 3 fragments per datagram, 4 datagrams, each counted to its real server.
    let stats = adm(director, "-L -n --stats");
    let inpkts: u64 = stats
        .lines()
        .filter(|l| l.starts_with("  -> "))
        .filter_map(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
        .sum();
    assert_eq!(inpkts, 12, "fragments forwarded:\n{stats}");
}
