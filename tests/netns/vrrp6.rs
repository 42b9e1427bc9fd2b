//! VRRPv3 over IPv6 (an instance whose `virtual_ipaddress` is IPv6, as keepalived runs it):
//! adverts to ff02::12 from each director's link-local address, hop limit 255. Two tunlb
//! directors elect one master, only it answers Neighbor Solicitations for the VIP; when it
//! dies (SIGKILL) or stops (SIGTERM, priority 0) the backup takes over and its unsolicited
//! Neighbor Advertisements (override set) move the client's neighbour entry at once. Then
//! keepalived 2.2 as the peer: the higher priority is MASTER whichever side it is on, the
//! lower stays BACKUP, and each takes over when the other goes.
//!
//! ```text
//!            bridge lan 2001:db8:150::1/64 (in ns "lan")
//!     ┌──────────────┬──────────────┬──────────────┐
//!  client ::2     director a ::11  director b ::14
//!                 (priority 100)   (priority 50)      VIP 2001:db8:150::100 (VRID 61)
//! ```
//!
//! Every address is `nodad`; the link-local addresses the adverts leave from are waited for
//! until their duplicate address detection is done.

use std::time::{Duration, Instant};

use crate::ha::{assert_stays, keepalived, mac, vrrp_json, wait_state, Keepalived};
use crate::harness::{
    require_root_and_tools, run, start_director, wait_until, Netns, Pid, TempPath, Topology,
};

const VIP: &str = "2001:db8:150::100";
/// The advert interval of every instance here (v3 centiseconds on the wire).
const ADVERT: Duration = Duration::from_millis(500);

/// client, a and b (or t and k for the keepalived interop) on one bridge.
fn build(nodes: [&str; 3]) -> Topology {
    let addr = |last: &str| format!("2001:db8:150::{last}/64 nodad");
    let topo = Topology::builder()
        .netns("lan")
        .netns(nodes[0])
        .netns(nodes[1])
        .netns(nodes[2])
        .bridge("lan", "lan", &addr("1"))
        .link_to_bridge((nodes[0], "eth0", &addr("2")), "lan", "to-n0", "lan")
        .link_to_bridge((nodes[1], "eth0", &addr("11")), "lan", "to-n1", "lan")
        .link_to_bridge((nodes[2], "eth0", &addr("14")), "lan", "to-n2", "lan")
        .build();
    for n in nodes {
        link_local(topo.ns(n));
    }
    topo
}

/// `ns`'s eth0 link-local address once it is past duplicate address detection.
fn link_local(ns: &Netns) -> String {
    let mut found = String::new();
    wait_until(
        &format!("a usable link-local address on {}'s eth0", ns.name()),
        Duration::from_secs(10),
        || {
            let out = ns.ip("-6 -o addr show dev eth0 scope link");
            if out.contains("tentative") {
                return false;
            }
            found = out
                .split_whitespace()
                .skip_while(|w| *w != "inet6")
                .nth(1)
                .and_then(|a| a.split('/').next())
                .unwrap_or_default()
                .to_string();
            !found.is_empty()
        },
    );
    found
}

/// An IPv6-only keepalived.conf: instance VI_1, VRID 61, advert_int 0.5, the VIP; read by
/// tunlb and keepalived alike (neither names the version: IPv6 makes it 3).
fn conf_text(router_id: &str, priority: u8) -> String {
    format!(
        "global_defs {{\n    router_id {router_id}\n}}\n\
         vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 61\n    \
         priority {priority}\n    advert_int {}\n    virtual_ipaddress {{\n        {VIP}/64\n    }}\n}}\n",
        ADVERT.as_secs_f64()
    )
}

fn start(ns: &Netns, priority: u8) -> (Pid, TempPath) {
    let conf = TempPath::new(&format!("keepalived6-{}-{priority}.conf", ns.name()));
    std::fs::write(conf.path(), conf_text(ns.name(), priority)).expect("write keepalived.conf");
    let pid = start_director(ns, &["--queues", "1", "--keepalived-conf", &conf.arg()]);
    (pid, conf)
}

/// `adm --vrrp --json`'s VI_1 in `ns`.
fn entry(ns: &Netns) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&ns.tunlb(&["adm", "--vrrp", "--json"])).expect("adm --vrrp --json");
    v[0].clone()
}

/// The client's neighbour entry for the VIP (empty if none).
fn neigh(client: &Netns) -> String {
    client.ip(&format!("-6 neigh show {VIP} dev eth0"))
}

/// The client's neighbour entry for the VIP after asking for it: a ping nobody answers still
/// resolves the address first.
fn resolve_vip(client: &Netns) -> String {
    let _ = client.try_exec("ping", &["-6", "-c", "1", "-W", "1", VIP]);
    neigh(client)
}

/// a (100) MASTER and b (50) BACKUP, b naming a's link-local address as the master; the
/// client resolves the VIP to a's MAC.
fn elect(topo: &Topology) -> [(Pid, TempPath); 2] {
    let (a, b, client) = (topo.ns("a"), topo.ns("b"), topo.ns("client"));
    let ra = start(a, 100);
    let rb = start(b, 50);
    wait_state(a, ra.0, "MASTER", Duration::from_secs(10));
    wait_state(b, rb.0, "BACKUP", Duration::from_secs(5));
    assert_stays(a, ra.0, "MASTER", ADVERT * 4);
    let (ea, eb) = (entry(a), entry(b));
    assert_eq!(ea["version"], 3, "{ea}");
    assert_eq!(ea["vips"], serde_json::json!([VIP]), "{ea}");
    assert_eq!(eb["master"], link_local(a), "{eb}");
    assert!(eb["adverts_received"].as_u64().unwrap() >= 3, "{eb}");
    let n = resolve_vip(client);
    assert!(
        n.contains(&format!("lladdr {} ", mac(a, "eth0"))),
        "the VIP should resolve to the master's MAC {}: {n:?}",
        mac(a, "eth0")
    );
    [ra, rb]
}

/// The client's entry moves to b's MAC without the client asking (b's unsolicited Neighbor
/// Advertisements, override set); `since` is when b became MASTER.
fn client_moves_to(client: &Netns, b: &Netns, since: Instant) {
    let mb = mac(b, "eth0");
    wait_until(
        "the client's VIP entry to move to b's MAC",
        Duration::from_secs(2),
        || neigh(client).contains(&mb),
    );
    eprintln!(
        "client's neighbour entry on b's MAC {:?} after b became MASTER",
        since.elapsed()
    );
    // A fresh resolution finds only b.
    client.ip(&format!("-6 neigh flush {VIP} dev eth0"));
    let after = resolve_vip(client);
    assert!(after.contains(&mb), "{after}");
}

#[test]
fn ipv6_vrrp_master_sigkilled_backup_takes_over_and_the_client_follows() {
    require_root_and_tools();
    let topo = build(["client", "a", "b"]);
    let (a, b, client) = (topo.ns("a"), topo.ns("b"), topo.ns("client"));
    let [(pa, _ca), (pb, _cb)] = elect(&topo);

    let t0 = Instant::now();
    a.signal(pa, "KILL");
    // 3 × 0.5 s + (256 − 50) × 0.5 s / 256 = 1.90 s after a's last advert, plus room for a
    // loaded machine.
    let became = wait_state(
        b,
        pb,
        "MASTER",
        Duration::from_millis(1900) + Duration::from_secs(2),
    );
    eprintln!(
        "IPv6 VRRP: b became MASTER {:?} after SIGKILL to a",
        became - t0
    );
    let _ = a.wait_exit(pa, Duration::from_secs(5));
    assert_eq!(entry(b)["master"], link_local(b));
    client_moves_to(client, b, became);
}

#[test]
fn ipv6_vrrp_master_sigtermed_hands_over_at_once() {
    require_root_and_tools();
    let topo = build(["client", "a", "b"]);
    let (a, b, client) = (topo.ns("a"), topo.ns("b"), topo.ns("client"));
    let [(pa, _ca), (pb, _cb)] = elect(&topo);

    let t0 = Instant::now();
    a.signal(pa, "TERM");
    // Priority 0: the backup waits its skew only, (256 − 50) × 0.5 s / 256 = 0.40 s.
    let became = wait_state(
        b,
        pb,
        "MASTER",
        Duration::from_millis(400) + Duration::from_secs(1),
    );
    eprintln!(
        "IPv6 VRRP: b became MASTER {:?} after SIGTERM to a",
        became - t0
    );
    let (status, log) = a.wait_exit(pa, Duration::from_secs(5));
    assert!(status.success(), "a exited with {status}:\n{log}");
    assert!(log.contains("(VI_1) Entering INIT STATE"), "{log}");
    client_moves_to(client, b, became);
}

/// tunlb (t) and keepalived 2.2 (k) over IPv6: the higher priority is MASTER whichever side
/// it is on, the lower side stays BACKUP (each accepts the other's adverts), and each takes
/// over when the other goes.
#[test]
fn ipv6_vrrp_interop_with_keepalived() {
    require_root_and_tools();
    let exe = keepalived();
    let version = run(std::process::Command::new(&exe).arg("--version"));
    eprintln!("{}", version.lines().next().unwrap_or(""));
    let topo = build(["client", "t", "k"]);
    let (t_ns, k_ns, client) = (topo.ns("t"), topo.ns("k"), topo.ns("client"));
    let takeover = ADVERT * 4 + Duration::from_secs(1);
    let k_text = conf_text("KEEPALIVED", 50);
    let mut times = Vec::new();

    // tunlb 100 MASTER, keepalived 50 BACKUP: keepalived accepts tunlb's adverts.
    let (t, _tc) = start(t_ns, 100);
    wait_state(t_ns, t, "MASTER", Duration::from_secs(10));
    let k = Keepalived::start_text(k_ns, "k6a", &k_text);
    assert_stays(t_ns, t, "MASTER", ADVERT * 6);
    assert_eq!(
        k.count("Entering MASTER STATE"),
        0,
        "keepalived did not accept tunlb's IPv6 adverts:\n{}",
        k.log()
    );
    assert!(resolve_vip(client).contains(&mac(t_ns, "eth0")));

    // tunlb crashes: keepalived takes over after its master-down interval.
    let killed = Instant::now();
    t_ns.signal(t, "KILL");
    let k_master = k.wait_log("Entering MASTER STATE", 1, takeover);
    times.push(("tunlb SIGKILL -> keepalived MASTER", k_master - killed));
    let _ = t_ns.wait_exit(t, Duration::from_secs(5));

    // tunlb 30: it accepts keepalived's adverts and stays BACKUP, naming keepalived's
    // link-local address as the master.
    let (t, _tc) = start(t_ns, 30);
    wait_state(t_ns, t, "BACKUP", Duration::from_secs(5));
    assert_stays(t_ns, t, "BACKUP", ADVERT * 6);
    let e = entry(t_ns);
    assert_eq!(e["master"], link_local(k_ns), "{}", vrrp_json(t_ns));
    assert!(e["adverts_received"].as_u64().unwrap() >= 5, "{e}");

    // keepalived stops (priority 0): tunlb takes over within its skew, and its unsolicited
    // Neighbor Advertisements move the client.
    let stopped = Instant::now();
    k.stop();
    let t_master = wait_state(t_ns, t, "MASTER", takeover);
    times.push(("keepalived SIGTERM -> tunlb MASTER", t_master - stopped));
    // keepalived removed its VIP address on the way out; the client follows tunlb.
    let mt = mac(t_ns, "eth0");
    wait_until(
        "the client's VIP entry on tunlb's MAC",
        Duration::from_secs(3),
        || resolve_vip(client).contains(&mt),
    );

    // keepalived 200 comes back: tunlb steps down (keepalived accepts tunlb's adverts and
    // preempts it, tunlb accepts the higher priority).
    let k = Keepalived::start_text(k_ns, "k6b", &conf_text("KEEPALIVED", 200));
    let started = Instant::now();
    let t_backup = wait_state(t_ns, t, "BACKUP", takeover + ADVERT * 2);
    k.wait_log("Entering MASTER STATE", 1, takeover);
    times.push(("keepalived 200 start -> tunlb BACKUP", t_backup - started));
    assert_stays(t_ns, t, "BACKUP", ADVERT * 4);
    k.stop();

    for (what, took) in &times {
        eprintln!("IPv6 interop: {what}: {:.2} s", took.as_secs_f64());
    }
}
