//! VRRP basics between two tunlb directors on one LAN: one master is elected, only it answers
//! ARP for the VIP, SIGTERM on the master hands over in under 2 s (priority 0), and after
//! SIGKILL nothing keeps answering for the dead director: the backup takes over and its
//! gratuitous ARPs move the client's neighbour entry.
//!
//! ```text
//!            bridge lan 192.168.150.1/24 (in ns "lan")
//!     ┌──────────────┬──────────────┬──────────────┐
//!  client .2     director a .11  director b .14
//!                (priority 100)  (priority 50)       VIP 192.168.150.100 (VRID 51)
//! ```
//!
//! The big failover tests with traffic and the keepalived interop are in `ha.rs`.

use std::time::{Duration, Instant};

use crate::harness::{
    require_root_and_tools, start_director, wait_until, Netns, TempPath, Topology, TUNLB,
};

const VIP: &str = "192.168.150.100";
const A: &str = "192.168.150.11";
const B: &str = "192.168.150.14";

fn build() -> Topology {
    Topology::builder()
        .netns("lan")
        .netns("client")
        .netns("a")
        .netns("b")
        .bridge("lan", "lan", "192.168.150.1/24")
        .link_to_bridge(
            ("client", "eth0", "192.168.150.2/24"),
            "lan",
            "to-client",
            "lan",
        )
        .link_to_bridge(("a", "eth0", "192.168.150.11/24"), "lan", "to-a", "lan")
        .link_to_bridge(("b", "eth0", "192.168.150.14/24"), "lan", "to-b", "lan")
        .build()
}

/// The director's keepalived.conf: one instance VI_1 on eth0, VRID 51, advert_int 1, PASS
/// auth, the VIP, connection sync following VI_1 (as configs/keepalived-ha-*.conf, without
/// virtual servers).
fn vrrp_config(ns: &Netns, priority: u8) -> TempPath {
    write_config(ns, &vrrp_conf_text(ns.name(), priority))
}

fn write_config(ns: &Netns, text: &str) -> TempPath {
    let path = TempPath::new(&format!("keepalived-{}.conf", ns.name()));
    std::fs::write(path.path(), text).expect("write the keepalived.conf");
    path
}

fn vrrp_conf_text(tag: &str, priority: u8) -> String {
    format!(
        "global_defs {{\n    router_id {tag}\n    lvs_sync_daemon eth0 VI_1\n}}\n\
         vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    \
         priority {priority}\n    advert_int 1\n    authentication {{\n        auth_type PASS\n        \
         auth_pass tunlb\n    }}\n    virtual_ipaddress {{\n        {VIP}\n    }}\n}}\n"
    )
}

/// VRRPv3 with advert_int 0.1 and unicast adverts to the other director.
fn v3_unicast_text(tag: &str, priority: u8, me: &str, peer: &str) -> String {
    format!(
        "global_defs {{\n    router_id {tag}\n    vrrp_version 3\n}}\n\
         vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    \
         priority {priority}\n    advert_int 0.1\n    unicast_src_ip {me}\n    \
         unicast_peer {{\n        {peer}\n    }}\n    virtual_ipaddress {{\n        {VIP}\n    }}\n}}\n"
    )
}

fn start(ns: &Netns, cfg: &TempPath) -> crate::harness::Pid {
    let arg = cfg.arg();
    start_director(ns, &["--queues", "1", "--keepalived-conf", &arg])
}

/// `adm --vrrp --json`'s state of VI_1 in `ns` ("" if the director does not answer).
fn state(ns: &Netns) -> String {
    let out = ns.try_exec(TUNLB, &["adm", "--vrrp", "--json"]);
    if !out.status.success() {
        return String::new();
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v[0]["state"].as_str().unwrap_or_default().to_string()
}

fn mac(ns: &Netns) -> String {
    let link = ns.ip("-o link show dev eth0");
    link.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC in {link:?}"))
        .to_string()
}

/// The client's neighbour entry for the VIP after asking for it (a ping that nobody answers
/// still resolves the address first).
fn resolve_vip(client: &Netns) -> String {
    let _ = client.try_exec("ping", &["-c", "1", "-W", "1", VIP]);
    client.ip(&format!("neigh show {VIP}"))
}

fn assert_no_proxy_entries(nodes: &[&Netns]) {
    for ns in nodes {
        let proxy = ns.ip("neigh show proxy");
        assert!(
            proxy.trim().is_empty(),
            "{}: kernel proxy entry {proxy:?}",
            ns.name()
        );
    }
}

fn elect(topo: &Topology) -> (crate::harness::Pid, crate::harness::Pid, TempPath, TempPath) {
    let (a, b) = (topo.ns("a"), topo.ns("b"));
    let (ca, cb) = (vrrp_config(a, 100), vrrp_config(b, 50));
    let pa = start(a, &ca);
    let pb = start(b, &cb);
    wait_until("a MASTER and b BACKUP", Duration::from_secs(12), || {
        state(a) == "MASTER" && state(b) == "BACKUP"
    });
    (pa, pb, ca, cb)
}

#[test]
fn two_directors_elect_one_master_and_only_it_answers_arp() {
    require_root_and_tools();
    let topo = build();
    let (a, b, client) = (topo.ns("a"), topo.ns("b"), topo.ns("client"));
    let (pa, pb, _ca, _cb) = elect(&topo);
    // Connection sync runs beside VRRP on both.
    for (ns, pid) in [(a, pa), (b, pb)] {
        let log = ns.log(pid);
        assert!(log.contains("sync (VI_1): on eth0"), "{log}");
    }
    // Stable: a few adverts later nothing moved.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!((state(a).as_str(), state(b).as_str()), ("MASTER", "BACKUP"));
    let out = a.tunlb(&["adm", "--vrrp"]);
    assert!(
        out.contains("VI_1") && out.contains("MASTER") && out.contains(VIP),
        "{out}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&b.tunlb(&["adm", "--vrrp", "--json"])).unwrap();
    assert_eq!(v[0]["master"], A, "{v}");
    assert!(v[0]["adverts_received"].as_u64().unwrap() >= 2, "{v}");

    let neigh = resolve_vip(client);
    assert!(
        neigh.contains(&format!("lladdr {} ", mac(a))),
        "the VIP should resolve to the master's MAC {}: {neigh:?}",
        mac(a)
    );
    assert_no_proxy_entries(&[a, b]);
}

#[test]
fn sigterm_on_the_master_hands_over_within_2s() {
    require_root_and_tools();
    let topo = build();
    let (a, b, client) = (topo.ns("a"), topo.ns("b"), topo.ns("client"));
    let (pa, _pb, _ca, _cb) = elect(&topo);
    let before = resolve_vip(client);
    assert!(before.contains(&mac(a)), "{before}");

    let t0 = Instant::now();
    a.signal(pa, "TERM");
    wait_until(
        "b MASTER after a's priority 0",
        Duration::from_secs(2),
        || state(b) == "MASTER",
    );
    let took = t0.elapsed();
    let (status, log) = a.wait_exit(pa, Duration::from_secs(5));
    assert!(status.success(), "a exited with {status}:\n{log}");
    assert!(log.contains("(VI_1) Entering INIT STATE"), "{log}");
    eprintln!("b became MASTER {took:?} after SIGTERM to a");
    let v: serde_json::Value =
        serde_json::from_str(&b.tunlb(&["adm", "--vrrp", "--json"])).unwrap();
    assert_eq!(v[0]["master"], B, "{v}");
    // b's gratuitous ARPs moved the client.
    let mb = mac(b);
    wait_until(
        "the client's VIP entry to move to b",
        Duration::from_secs(3),
        || client.ip(&format!("neigh show {VIP}")).contains(&mb),
    );
    assert_no_proxy_entries(&[a, b]);
}

#[test]
fn sigkill_leaves_nothing_answering_and_garp_moves_the_client() {
    require_root_and_tools();
    let topo = build();
    let (a, b, client) = (topo.ns("a"), topo.ns("b"), topo.ns("client"));
    let (pa, _pb, _ca, _cb) = elect(&topo);
    let before = resolve_vip(client);
    assert!(before.contains(&mac(a)), "{before}");

    let t0 = Instant::now();
    a.signal(pa, "KILL");
    let _ = a.wait_exit(pa, Duration::from_secs(5));
    assert_no_proxy_entries(&[a, b]);
    wait_until("b MASTER after a died", Duration::from_secs(6), || {
        state(b) == "MASTER"
    });
    eprintln!("b became MASTER {:?} after SIGKILL to a", t0.elapsed());
    let mb = mac(b);
    wait_until(
        "the client's VIP entry to move to b",
        Duration::from_secs(3),
        || client.ip(&format!("neigh show {VIP}")).contains(&mb),
    );
    // A fresh resolution finds only b.
    client.ip(&format!("neigh flush {VIP}"));
    let after = resolve_vip(client);
    assert!(after.contains(&mb), "{after}");
}

/// VRRPv3, advert_int 0.1, unicast peers: the master is elected in well under a second, and a
/// SIGKILLed master is replaced after 3 × 0.1 s + skew.
#[test]
fn v3_unicast_elects_and_replaces_a_killed_master_fast() {
    require_root_and_tools();
    let topo = build();
    let (a, b, client) = (topo.ns("a"), topo.ns("b"), topo.ns("client"));
    let ca = write_config(a, &v3_unicast_text(a.name(), 100, A, B));
    let cb = write_config(b, &v3_unicast_text(b.name(), 50, B, A));
    let pa = start(a, &ca);
    let _pb = start(b, &cb);
    wait_until("a MASTER and b BACKUP", Duration::from_secs(5), || {
        state(a) == "MASTER" && state(b) == "BACKUP"
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!((state(a).as_str(), state(b).as_str()), ("MASTER", "BACKUP"));
    let v: serde_json::Value =
        serde_json::from_str(&b.tunlb(&["adm", "--vrrp", "--json"])).unwrap();
    assert_eq!(
        (v[0]["version"].as_u64(), &v[0]["master"]),
        (Some(3), &serde_json::json!(A))
    );
    assert!(v[0]["adverts_received"].as_u64().unwrap() >= 5, "{v}");
    assert!(resolve_vip(client).contains(&mac(a)));

    let t0 = Instant::now();
    a.signal(pa, "KILL");
    wait_until("b MASTER after a died", Duration::from_secs(2), || {
        state(b) == "MASTER"
    });
    eprintln!("v3: b became MASTER {:?} after SIGKILL to a", t0.elapsed());
    let mb = mac(b);
    wait_until(
        "the client's VIP entry to move to b",
        Duration::from_secs(3),
        || client.ip(&format!("neigh show {VIP}")).contains(&mb),
    );
}
