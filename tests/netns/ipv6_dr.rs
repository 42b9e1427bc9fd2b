//! DR mode (`-g`) over IPv6: the director hands each client packet for `[2001:db8:3::100]:80`
//! unchanged, in an Ethernet frame (EtherType 0x86DD), to the MAC of a real server on the LAN
//! it shares with them; the real server (`tunlb realserver --mode dr`: the VIP as a /128 on
//! lo) answers the client straight through the router.
//!
//! ```text
//!  client 2001:db8:1::10 ── router ── 2001:db8:2::2 eth0 director   (the way in: the router
//!                             │                     eth1 2001:db8:3::2  routes VIP/128 to eth0)
//!                       lan bridge 2001:db8:3::1/64 ──┘  MTU 1400
//!                             ├── rs1 2001:db8:3::12
//!                             └── rs2 2001:db8:3::13      VIP 2001:db8:3::100, hidden on lo
//! ```
//!
//! The director's leg on the LAN has MTU 1400 while everything else has 1500, so that the
//! client's 1500-byte segments (the real servers advertise an MSS for 1500) reach the director
//! and are too big for the LAN: the director answers them with a Packet Too Big advertising
//! 1400. The VIP is in the LAN's prefix and the director answers Neighbor Solicitations for it
//! there (`--announce eth1`); a host on the LAN that solicits it (the router, through its LAN
//! port) gets the director's MAC, never a real server's.
//!
//! Checked: `adm -L -n` line by line in ipvsadm's IPv6 format (`Route`), rr exact over 8
//! connections, no TCP packet from the VIP crosses the director (nftables), 8 MB down and up
//! intact, the client's path MTU to the VIP lowered to exactly the LAN's 1400 by the director's
//! Packet Too Big, and the router's neighbour entry for the VIP on the LAN.

use crate::harness::{adm, start_director, start_dr_agent, Topology};
use crate::ipv6::{count_from_vip, get_vip, start_httpd6};

const VIP: &str = "2001:db8:3::100";
const DIRECTOR_IN: &str = "2001:db8:2::2";
const RS1: &str = "2001:db8:3::12";
const RS2: &str = "2001:db8:3::13";
/// The MTU of the director's leg on the real servers' LAN.
const LAN_MTU: u32 = 1400;

/// The topology of the module documentation; IPv6 only, every address without duplicate
/// address detection so that it is usable at once.
fn build() -> Topology {
    let topo = Topology::builder()
        .netns("client")
        .netns("router")
        .netns("director")
        .netns("rs1")
        .netns("rs2")
        .link(
            ("client", "eth0", "2001:db8:1::10/64 nodad"),
            ("router", "to-client", "2001:db8:1::1/64 nodad"),
        )
        .link(
            ("director", "eth0", "2001:db8:2::2/64 nodad"),
            ("router", "to-director", "2001:db8:2::1/64 nodad"),
        )
        .bridge("router", "lan", "2001:db8:3::1/64 nodad")
        .link_to_bridge(
            ("director", "eth1", "2001:db8:3::2/64 nodad"),
            "router",
            "to-dir",
            "lan",
        )
        .link_to_bridge(
            ("rs1", "eth0", "2001:db8:3::12/64 nodad"),
            "router",
            "to-rs1",
            "lan",
        )
        .link_to_bridge(
            ("rs2", "eth0", "2001:db8:3::13/64 nodad"),
            "router",
            "to-rs2",
            "lan",
        )
        .route("client", "default via 2001:db8:1::1")
        .route("director", "default via 2001:db8:2::1")
        .route("rs1", "default via 2001:db8:3::1")
        .route("rs2", "default via 2001:db8:3::1")
        .route("router", &format!("{VIP}/128 via {DIRECTOR_IN}"))
        .build();
    topo.ns("router")
        .sysctl("net.ipv6.conf.all.forwarding", "1");
    topo.ns("director")
        .ip(&format!("link set dev eth1 mtu {LAN_MTU}"));
    topo
}

/// The MAC of interface `dev` in `ns`.
fn mac_of(ns: &crate::harness::Netns, dev: &str) -> String {
    let out = ns.ip(&format!("-o link show dev {dev}"));
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC for {dev}: {out}"))
        .to_owned()
}

#[test]
fn ipv6_dr_serves_from_the_lan_and_replies_bypass_the_director() {
    const SIZE: u64 = 8 << 20;
    let topo = build();
    let director = topo.ns("director");
    let dpid = start_director(director, &["--announce", "eth1"]);
    for (role, rip) in [("rs1", RS1), ("rs2", RS2)] {
        start_dr_agent(topo.ns(role), VIP);
        start_httpd6(topo.ns(role), VIP, rip);
    }
    adm(director, &format!("-A -t [{VIP}]:80 -s rr"));
    for rip in [RS1, RS2] {
        adm(director, &format!("-a -t [{VIP}]:80 -r [{rip}] -g -w 1"));
    }
    // ipvsadm's IPv6 listing, line by line.
    let listing = adm(director, "-L -n");
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(
        lines,
        [
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
            "TCP  [2001:db8:3::100]:80 rr",
            "  -> [2001:db8:3::12]:80          Route   1      0          0         ",
            "  -> [2001:db8:3::13]:80          Route   1      0          0         ",
        ],
        "{listing}"
    );
    count_from_vip(director, VIP, &["input", "forward", "output"]);

    // rr, exact: 8 new connections alternate (the first may wait for a MAC: the kernel was
    // asked to resolve both servers when they were added).
    let client = topo.ns("client");
    let mut answers = Vec::new();
    for i in 0..8 {
        let answer = get_vip(client, VIP)
            .unwrap_or_else(|e| panic!("request {i} failed: {e}\n{}", director.log(dpid)));
        answers.push(answer);
    }
    crate::ipv6::assert_rr_alternates(&answers, [RS1, RS2]);

    // 8 MB down, straight from a real server, and up through the director's AF_PACKET
    // frames; its first full-size segments are too big for the LAN.
    crate::ipv6::down_and_up(client, &format!("[{VIP}]"), "dr6", SIZE);
    let route = client.ip(&format!("-6 route get {VIP}"));
    assert!(
        route.contains(&format!("mtu {LAN_MTU}")),
        "path MTU to the VIP (the director's Packet Too Big): {route}"
    );
    let stats = adm(director, "-L -n --stats");
    eprintln!("{stats}");

    // Not one TCP packet from the VIP crossed the director.
    assert_eq!(
        director.nft_counter("tlb6", "from_vip"),
        0,
        "replies crossed the director"
    );

    // On the LAN, the VIP resolves to the director, not to a real server (whose VIP is on lo):
    // the router asks through its LAN port, and its request is served that way too.
    let router = topo.ns("router");
    let url = format!("http://[{VIP}]/");
    let out = router.try_exec(
        "curl",
        &[
            "-g",
            "-s",
            "-f",
            "--max-time",
            "5",
            "--interface",
            "lan",
            &url,
        ],
    );
    assert!(
        out.status.success(),
        "a request over the LAN failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let neigh = router.ip(&format!("-6 neigh show {VIP} dev lan"));
    let director_mac = mac_of(director, "eth1");
    assert!(
        neigh.contains(&format!("lladdr {director_mac}")),
        "the router's entry for the VIP is not the director's {director_mac}: {neigh:?}"
    );
    for role in ["rs1", "rs2"] {
        let mac = mac_of(topo.ns(role), "eth0");
        assert!(
            !neigh.contains(&mac),
            "{role} answered for the VIP: {neigh}"
        );
    }

    director.signal(dpid, "TERM");
    let (status, log) = director.wait_exit(dpid, std::time::Duration::from_secs(10));
    assert!(status.success(), "the director failed: {log}");
    for rip in [RS1, RS2] {
        assert!(
            log.contains(&format!("real server {rip} (DR) is at ")),
            "the resolver did not log {rip}'s MAC:\n{log}"
        );
    }
    assert!(!log.contains("send_failed"), "{log}");
    // The Packet Too Big came from the director (the router's links are all 1500).
    let too_big = log
        .lines()
        .filter(|l| l.contains("at exit:"))
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("too_big="))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .unwrap_or(0);
    assert!(too_big >= 1, "no too_big drop counted:\n{log}");
}
