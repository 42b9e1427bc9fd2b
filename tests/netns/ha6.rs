//! Connection sync of IPv6 flows between two directors: an IPv6 VIP in TUN mode (ip6ip6 to
//! IPv6 real servers) survives a SIGKILL of the director that carried it.
//!
//! ```text
//!  client 2001:db8:150::2 ──┐
//!  dir-a eth0 ::11 ─────────┤ bridge `lan` (192.168.150.0/24 and 2001:db8:150::/64, ::1 router)
//!  dir-b eth0 ::14 ─────────┘   router 2001:db8:3::1 (bridge rs-lan) ─┬─ rs1 2001:db8:3::12
//!                                                                      └─ rs2 2001:db8:3::13
//! ```
//!
//! Both directors run `tunlb director --keepalived-conf FILE`: the IPv4 `vrrp_instance VI_1`
//! of `ha.rs` (VRRPv3, 100 ms adverts, the IPv4 VIP 192.168.150.100) with `lvs_sync_daemon eth0
//! VI_1`, and an IPv6 `virtual_server [2001:db8:100::100]:80` (rr, TUN, ip6ip6). The IPv4 VRRP
//! instance only decides which director is the sync master; **the IPv6 VIP is moved by the
//! test** (VRRP over IPv6 is not used): the router routes it to dir-a's LAN address, and once
//! dir-b is MASTER after dir-a's SIGKILL, `ip -6 route replace VIP via dir-b` at the router,
//! as VRRP moving the VIP would. The client holds 40 keep-alive IPv6 connections carrying a
//! request every 100 ms (`tunlb lab clients`); dir-b lists them synced (`adm -L -n -c`) before
//! the kill, and none is lost.

use std::thread;
use std::time::Duration;

use tunlb::lab::clients::Summary;
use tunlb::lab::ha::KeepalivedConf;

use crate::ha::{start_ha_director, wait_state, V3_FAST};
use crate::harness::{wait_until, Netns, Pid, TempPath, Topology, STARTUP, TUNLB};
use crate::ipv6::start_httpd6;

/// The IPv6 virtual service address, routed by the router to the active director.
const VIP6: &str = "2001:db8:100::100";
/// The IPv4 VIP of the VRRP instance that elects the sync master.
const VIP4: &str = "192.168.150.100";
const DIR_A6: &str = "2001:db8:150::11";
const DIR_B6: &str = "2001:db8:150::14";
const RS1: &str = "2001:db8:3::12";
const RS2: &str = "2001:db8:3::13";
/// Keep-alive connections the client holds.
const CONNS: u32 = 40;

/// The topology above (IPv4 on the LAN for VRRP and sync, IPv6 for the service), the IPv6 VIP
/// routed to dir-a.
fn build() -> Topology {
    let topo = Topology::builder()
        .netns("client")
        .netns("router")
        .netns("dir-a")
        .netns("dir-b")
        .netns("rs1")
        .netns("rs2")
        .bridge("router", "lan", "192.168.150.1/24")
        .link_to_bridge(
            ("client", "eth0", "192.168.150.2/24"),
            "router",
            "to-client",
            "lan",
        )
        .link_to_bridge(
            ("dir-a", "eth0", "192.168.150.11/24"),
            "router",
            "to-a",
            "lan",
        )
        .link_to_bridge(
            ("dir-b", "eth0", "192.168.150.14/24"),
            "router",
            "to-b",
            "lan",
        )
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
        .route("rs1", "default via 2001:db8:3::1")
        .route("rs2", "default via 2001:db8:3::1")
        .build();
    topo.ns("router")
        .ip("addr add 2001:db8:150::1/64 dev lan nodad");
    for (role, addr) in [
        ("client", "2001:db8:150::2"),
        ("dir-a", DIR_A6),
        ("dir-b", DIR_B6),
    ] {
        let ns = topo.ns(role);
        ns.ip(&format!("addr add {addr}/64 dev eth0 nodad"));
        ns.ip("-6 route add default via 2001:db8:150::1");
    }
    let router = topo.ns("router");
    router.sysctl("net.ipv6.conf.all.forwarding", "1");
    router.ip(&format!("-6 route add {VIP6}/128 via {DIR_A6}"));
    topo
}

/// An ip6ip6 agent for the IPv6 VIP accepting tunnels from both directors.
fn start_agent(ns: &Netns) -> Pid {
    let allow_a = format!("{DIR_A6}/128");
    let allow_b = format!("{DIR_B6}/128");
    let args = [
        "realserver",
        "--vip",
        VIP6,
        "--encap",
        "ipip",
        "--allow",
        &allow_a,
        "--allow",
        &allow_b,
    ];
    let pid = ns.spawn("agent", TUNLB, &args);
    let on_lo = format!("{VIP6}/128");
    wait_until(&format!("the agent in {}", ns.name()), STARTUP, || {
        ns.assert_running(pid);
        ns.ip("-o addr show dev lo").contains(&on_lo)
    });
    pid
}

/// dir-a's (`master`) or dir-b's keepalived.conf: the IPv4 VRRP instance with sync, and the
/// IPv6 TUN service (no health checks: the real servers are simply up).
fn conf(master: bool) -> String {
    let vrrp = KeepalivedConf {
        version: V3_FAST.version,
        advert_int: V3_FAST.advert_int.to_owned(),
        ..KeepalivedConf::seed(master, VIP4.parse().unwrap())
    };
    format!(
        "{}
virtual_server {VIP6} 80 {{
    lb_algo rr
    lb_kind TUN
    protocol TCP
    real_server {RS1} 80 {{
        weight 1
    }}
    real_server {RS2} 80 {{
        weight 1
    }}
}}
",
        vrrp.render()
    )
}

/// The IPv6 connections to the VIP `ns`'s director lists (`adm -L -n -c`) as ESTABLISHED,
/// and how many of them with more than the unconfirmed flows' 60 s left (confirmed: they
/// carried client data, ESTABLISHED's 15 minutes).
fn established6(ns: &Netns) -> (usize, usize) {
    let listing = ns.tunlb(&["adm", "-L", "-n", "-c"]);
    let lines: Vec<&str> = listing
        .lines()
        .filter(|l| l.contains("ESTABLISHED") && l.contains(&format!("[{VIP6}]:80")))
        .collect();
    let confirmed = lines
        .iter()
        .filter(|l| {
            let expire = l.split_whitespace().nth(1).unwrap_or("");
            let mut parts = expire.split(':').map(|x| x.parse::<u32>().unwrap_or(0));
            let (m, s) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
            m * 60 + s > 60
        })
        .count();
    (lines.len(), confirmed)
}

#[test]
fn ipv6_tun_flows_synced_to_the_backup_survive_a_sigkill_of_the_master() {
    let lab = build();
    let (client, a_ns, b_ns, router) = (
        lab.ns("client"),
        lab.ns("dir-a"),
        lab.ns("dir-b"),
        lab.ns("router"),
    );
    for (role, rip) in [("rs1", RS1), ("rs2", RS2)] {
        start_agent(lab.ns(role));
        start_httpd6(lab.ns(role), VIP6, rip);
    }
    let write = |ns: &Netns, master: bool| {
        let file = TempPath::new(&format!("{}-ha6.conf", ns.name()));
        std::fs::write(file.path(), conf(master)).expect("write a keepalived.conf");
        file
    };
    let (conf_a, conf_b) = (write(a_ns, true), write(b_ns, false));
    let generous = Duration::from_secs(15);
    let a = start_ha_director(a_ns, &conf_a);
    wait_state(a_ns, a, "MASTER", generous);
    let b = start_ha_director(b_ns, &conf_b);
    wait_state(b_ns, b, "BACKUP", generous);

    let url = format!("http://[{VIP6}]/");
    let body = client.exec("curl", &["-g", "-s", "--max-time", "5", &url]);
    assert!(body.starts_with("from 2001:db8:3::1"), "{body}");

    let to = format!("[{VIP6}]:80");
    let conns = CONNS.to_string();
    let clients = client.spawn(
        "clients",
        TUNLB,
        &["lab", "clients", "--to", &to, "--conns", &conns],
    );
    wait_until("the client's keep-alive connections", generous, || {
        client.assert_running(clients);
        client
            .log(clients)
            .contains(&format!("all {CONNS} connections established"))
    });
    // The backup lists the master's IPv6 flows: synced, before any takeover, and confirmed
    // once they carried a request (the confirmed record installs ESTABLISHED's whole timeout).
    wait_until(
        "the backup to list the master's IPv6 connections (sync), confirmed",
        Duration::from_secs(10),
        || established6(b_ns) == (CONNS as usize, CONNS as usize),
    );
    let listed = b_ns.tunlb(&["adm", "-L", "-n", "-c"]);
    eprintln!("dir-b before the takeover:\n{listed}");
    thread::sleep(Duration::from_millis(500));

    // The master dies without a word; dir-b becomes MASTER (IPv4 VRRP), and the IPv6 VIP's
    // route moves to it (the test's part, see the module docs).
    a_ns.signal(a, "KILL");
    let (status, _) = a_ns.wait_exit(a, Duration::from_secs(5));
    assert!(!status.success(), "{status}");
    wait_state(b_ns, b, "MASTER", generous);
    router.ip(&format!("-6 route replace {VIP6}/128 via {DIR_B6}"));
    thread::sleep(Duration::from_secs(3));

    client.signal(clients, "TERM");
    let (status, out) = client.wait_exit(clients, Duration::from_secs(30));
    assert!(status.success(), "tunlb lab clients: {out}");
    let summary = Summary::from_output(&out).expect("the clients' summary");
    let adopted = b_ns.tunlb(&["adm", "-L", "-n", "-c"]);
    eprintln!(
        "HA IPv6 sync: {} of {} connections lost, {} requests, slowest {} ms; outages {:?}\n\
         dir-b after:\n{adopted}",
        summary.lost,
        summary.established,
        summary.requests,
        summary.max_request_ms,
        summary.outages
    );
    assert_eq!(summary.established, CONNS, "{summary:?}");
    assert_eq!(
        summary.lost, 0,
        "connections lost: {:#?}",
        summary.lost_detail
    );
    assert!(
        summary.stalest_ms < 5000,
        "a connection stopped carrying requests: {summary:?}"
    );
    assert!(
        summary.outages.iter().all(|o| !o.ongoing),
        "new connections still failed at the end: {:?}",
        summary.outages
    );
}
