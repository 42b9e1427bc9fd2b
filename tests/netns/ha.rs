//! Two directors on one LAN (the seed's §7): VRRP elects the one that answers for the VIP, and a
//! failover must not cost a connection.
//!
//! ```text
//!  client 192.168.150.2 ──┐
//!  dir-a eth0 .11 ────────┤ bridge `lan` (192.168.150.0/24, .1 = router)
//!  dir-b eth0 .14 ────────┘   router 10.3.0.1 (bridge rs-lan) ─┬─ rs1 10.3.0.12
//!                                                              └─ rs2 10.3.0.13
//! ```
//!
//! Both directors run `tunlb director --keepalived-conf FILE` from a keepalived.conf written like
//! the seed's ([`tunlb::lab::ha::KeepalivedConf`]): `vrrp_instance VI_1` for the VIP
//! 192.168.150.100 (dir-a `state MASTER` priority 100, dir-b `state BACKUP` priority 50), the
//! virtual_server in TUN mode with HTTP_GET checks, and `lvs_sync_daemon eth0 VI_1` when sync is
//! on. The VIP belongs to no one: the MASTER answers ARP for it. The client holds 60 keep-alive
//! connections carrying a request every 100 ms and opens a probe connection every 50 ms
//! (`tunlb lab clients`).
//!
//! - §7.1: SIGKILL the MASTER. The BACKUP takes over after its master-down interval; the
//!   client's neighbour entry for the VIP moves to its MAC (gratuitous ARP); every keep-alive
//!   connection survives (sync on + rr: the backup has each flow; mh + sloppy TCP, sync off:
//!   the backup schedules a mid-flow packet to the same real server); new connections fail for
//!   at most 4 s with VRRPv2 advert_int 1, 0.5 s with VRRPv3 advert_int 0.1.
//! - §7.2: restart the old MASTER. It waits for the bulk resync, preempts the BACKUP, the
//!   client's neighbour entry comes back, and again no connection is lost.
//! - Interop with keepalived 2.2 (`keepalived --vrrp` in a namespace), VRRPv2 with PASS auth
//!   and VRRPv3: each side sees the other's adverts, steps down to a higher priority, takes
//!   over when the other crashes or stops. keepalived missing is a failure, not a skip.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tunlb::lab::clients::Summary;
use tunlb::lab::ha::{vrrp_state, KeepalivedConf, ServiceConf};

use crate::harness::{
    run, start_director, start_httpd, wait_until, Netns, Pid, TempPath, Topology, TUNLB,
};

/// The virtual service address, on the LAN, owned by no one.
const VIP: &str = "192.168.150.100";
/// Director A (MASTER, priority 100).
const DIR_A: &str = "192.168.150.11";
/// Director B (BACKUP, priority 50).
const DIR_B: &str = "192.168.150.14";
/// Real server 1.
const RS1: &str = "10.3.0.12";
/// Real server 2.
const RS2: &str = "10.3.0.13";
/// Keep-alive connections the client holds.
const CONNS: u32 = 60;
/// The VRRP instance.
const INSTANCE: &str = "VI_1";

/// The topology above; no process started. Forwarding on in the router.
fn build() -> Topology {
    Topology::builder()
        .netns("client")
        .netns("router")
        .netns("dir-a")
        .netns("dir-b")
        .real_server_lan()
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
        .route("dir-a", "default via 192.168.150.1")
        .route("dir-b", "default via 192.168.150.1")
        .forwarding("router")
        .build()
}

/// An IPIP agent for the VIP accepting tunnels from both directors, and an httpd on VIP:80 (the
/// service) and RIP:80 (what the HTTP_GET checks probe) answering "from RIP".
fn start_real_server(ns: &Netns, rip: &str) {
    let args = [
        "realserver",
        "--vip",
        VIP,
        "--encap",
        "ipip",
        "--allow",
        &format!("{DIR_A}/32"),
        "--allow",
        &format!("{DIR_B}/32"),
    ];
    let pid = ns.spawn("agent", TUNLB, &args);
    let on_lo = format!("{VIP}/32");
    wait_until(
        &format!("the agent in {} to put {on_lo} on lo", ns.name()),
        Duration::from_secs(15),
        || {
            ns.assert_running(pid);
            ns.ip("-o addr show dev lo").contains(&on_lo)
        },
    );
    let rip_listen = format!("{rip}:80");
    start_httpd(
        ns,
        &format!("{VIP}:80"),
        &format!("from {rip}"),
        &["--listen", &rip_listen],
    );
}

/// VRRP version and advert_int as keepalived.conf writes it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Vrrp {
    pub(crate) version: u8,
    pub(crate) advert_int: &'static str,
}

/// VRRPv2 with the seed's advert_int 1 (and PASS auth).
const V2: Vrrp = Vrrp {
    version: 2,
    advert_int: "1",
};

/// VRRPv3 with 100 ms adverts.
pub(crate) const V3_FAST: Vrrp = Vrrp {
    version: 3,
    advert_int: "0.1",
};

/// The keepalived.conf of director A (`master`) or B for a scenario.
fn director_conf(master: bool, vrrp: Vrrp, algo: &str, sync: bool) -> KeepalivedConf {
    KeepalivedConf {
        version: vrrp.version,
        advert_int: vrrp.advert_int.to_owned(),
        sync_interface: sync.then(|| "eth0".to_owned()),
        service: Some(ServiceConf {
            port: 80,
            algo: algo.to_owned(),
            kind: "TUN".to_owned(),
            real_servers: vec![RS1.parse().unwrap(), RS2.parse().unwrap()],
            checks: true,
        }),
        ..KeepalivedConf::seed(master, VIP.parse().unwrap())
    }
}

/// Writes `conf` to a file named after `ns` and `tag`, removed when dropped.
fn write_conf(ns: &Netns, tag: &str, conf: &KeepalivedConf) -> TempPath {
    let file = TempPath::new(&format!("{}-{tag}.conf", ns.name()));
    std::fs::write(file.path(), conf.render()).expect("write a keepalived.conf");
    file
}

/// `tunlb director --keepalived-conf FILE` in `ns`, up when its control socket answers.
pub(crate) fn start_ha_director(ns: &Netns, conf: &TempPath) -> Pid {
    start_director(ns, &["--keepalived-conf", &conf.arg()])
}

/// The state of [`INSTANCE`] in `ns`'s director (`tunlb adm --vrrp --json`), if it answers.
fn state_of(ns: &Netns) -> Option<String> {
    let out = ns.try_exec(TUNLB, &["adm", "--vrrp", "--json"]);
    if !out.status.success() {
        return None;
    }
    vrrp_state(&String::from_utf8_lossy(&out.stdout), INSTANCE)
}

/// The whole `tunlb adm --vrrp --json` answer of `ns`'s director (for messages).
pub(crate) fn vrrp_json(ns: &Netns) -> String {
    let out = ns.try_exec(TUNLB, &["adm", "--vrrp", "--json"]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `ns`'s director every 20 ms until [`INSTANCE`] is in `want`; returns when it was
/// seen. Panics after `timeout`, or if the director exited.
pub(crate) fn wait_state(ns: &Netns, pid: Pid, want: &str, timeout: Duration) -> Instant {
    let start = Instant::now();
    loop {
        ns.assert_running(pid);
        if state_of(ns).as_deref() == Some(want) {
            return Instant::now();
        }
        if start.elapsed() > timeout {
            panic!(
                "{} did not reach {want} within {timeout:?}; adm --vrrp --json: {}",
                ns.name(),
                vrrp_json(ns)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts `ns`'s director stays in `want` for `period` (sampled every 100 ms).
pub(crate) fn assert_stays(ns: &Netns, pid: Pid, want: &str, period: Duration) {
    let start = Instant::now();
    while start.elapsed() < period {
        ns.assert_running(pid);
        let state = state_of(ns);
        assert_eq!(
            state.as_deref(),
            Some(want),
            "{} left {want} after {:?}: {}",
            ns.name(),
            start.elapsed(),
            vrrp_json(ns)
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The MAC address of `ifname` in `ns`.
pub(crate) fn mac(ns: &Netns, ifname: &str) -> String {
    let out = ns.ip(&format!("-o link show dev {ifname}"));
    let mut words = out.split_whitespace();
    words
        .find(|w| *w == "link/ether")
        .and_then(|_| words.next())
        .unwrap_or_else(|| panic!("no MAC in {out}"))
        .to_owned()
}

/// The MAC the client's neighbour entry for the VIP has now, if any.
fn client_neigh(client: &Netns) -> Option<String> {
    let out = client.ip(&format!("neigh show {VIP} dev eth0"));
    let mut words = out.split_whitespace();
    words.find(|w| *w == "lladdr")?;
    words.next().map(str::to_owned)
}

/// Waits until the client's neighbour entry for the VIP has `want` (`whose` names it).
fn wait_neigh(client: &Netns, want: &str, whose: &str) {
    wait_until(
        &format!("the client's neighbour entry for {VIP} to move to {whose} ({want})"),
        Duration::from_secs(10),
        || client_neigh(client).as_deref() == Some(want),
    );
}

/// Milliseconds since the UNIX epoch (the clients' summary uses that origin).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The connections `ns`'s director lists (`adm -L -n -c`) to the VIP in state ESTABLISHED.
fn established(ns: &Netns) -> usize {
    ns.tunlb(&["adm", "-L", "-n", "-c"])
        .lines()
        .filter(|l| l.contains("ESTABLISHED") && l.contains(&format!("{VIP}:80")))
        .count()
}

/// One §7.1 + §7.2 run.
struct Scenario {
    vrrp: Vrrp,
    algo: &'static str,
    sync: bool,
    /// The longest new-connection outage allowed, at the failover and at the return.
    bound: Duration,
}

/// Builds the lab, elects A, holds [`CONNS`] connections, SIGKILLs A (§7.1), restarts it
/// (§7.2), and checks that no connection was lost and new ones failed at most `bound`.
fn failover_and_return(s: Scenario) {
    let lab = build();
    let (client, a_ns, b_ns) = (lab.ns("client"), lab.ns("dir-a"), lab.ns("dir-b"));
    for (role, rip) in [("rs1", RS1), ("rs2", RS2)] {
        start_real_server(lab.ns(role), rip);
    }
    let conf_a = write_conf(a_ns, "a", &director_conf(true, s.vrrp, s.algo, s.sync));
    let conf_b = write_conf(b_ns, "b", &director_conf(false, s.vrrp, s.algo, s.sync));
    let generous = Duration::from_secs(15);

    let a = start_ha_director(a_ns, &conf_a);
    wait_state(a_ns, a, "MASTER", generous);
    let b = start_ha_director(b_ns, &conf_b);
    wait_state(b_ns, b, "BACKUP", generous);
    assert_stays(a_ns, a, "MASTER", Duration::from_millis(500));
    let (mac_a, mac_b) = (mac(a_ns, "eth0"), mac(b_ns, "eth0"));
    let body = client.exec(
        "curl",
        &["-s", "--max-time", "5", &format!("http://{VIP}/")],
    );
    assert!(body.starts_with("from 10.3.0.1"), "{body}");
    assert_eq!(client_neigh(client).as_deref(), Some(mac_a.as_str()));

    let to = format!("{VIP}:80");
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
    if s.sync {
        wait_until(
            "the backup to list the master's connections (sync)",
            Duration::from_secs(10),
            || established(b_ns) >= CONNS as usize,
        );
    } else {
        thread::sleep(Duration::from_millis(500));
        assert_eq!(
            established(b_ns),
            0,
            "sync is off, yet the backup knows connections"
        );
    }
    thread::sleep(Duration::from_millis(500));

    // §7.1: the master dies without a word.
    let killed = (Instant::now(), unix_ms());
    a_ns.signal(a, "KILL");
    let (status, _) = a_ns.wait_exit(a, Duration::from_secs(5));
    assert!(!status.success(), "{status}");
    let b_master = wait_state(b_ns, b, "MASTER", generous);
    let takeover = b_master.duration_since(killed.0);
    wait_neigh(client, &mac_b, "director B");
    let neigh_b = killed.0.elapsed();
    thread::sleep(Duration::from_secs(2));

    // §7.2: the master comes back, resyncs and preempts.
    let restarted = (Instant::now(), unix_ms());
    let a = start_ha_director(a_ns, &conf_a);
    let a_master = wait_state(a_ns, a, "MASTER", generous);
    wait_state(b_ns, b, "BACKUP", Duration::from_secs(5));
    let preempt = a_master.duration_since(restarted.0);
    wait_neigh(client, &mac_a, "director A");
    thread::sleep(Duration::from_secs(2));

    client.signal(clients, "TERM");
    let (status, out) = client.wait_exit(clients, Duration::from_secs(30));
    assert!(status.success(), "tunlb lab clients: {out}");
    let summary = Summary::from_output(&out).expect("the clients' summary");
    let rel = |unix: u64| unix.saturating_sub(summary.start_unix_ms);
    let (kill_ms, back_ms) = (rel(killed.1), rel(restarted.1));
    let near = |at: u64, until: u64| {
        summary
            .outages
            .iter()
            .filter(|o| o.start_ms + 200 >= at && o.start_ms < until)
            .map(|o| o.length_ms)
            .max()
            .unwrap_or(0)
    };
    let failover_outage = near(kill_ms, back_ms);
    let return_outage = near(back_ms, summary.duration_ms);
    eprintln!(
        "HA {:?} {} sync={}: B MASTER {:.2} s after SIGKILL (client's neighbour moved after \
         {:.2} s); new connections failed {:.2} s; A back MASTER {:.2} s after restart, new \
         connections failed {:.2} s then; {} of {} connections lost, {} requests, slowest \
         {} ms; outages {:?}",
        s.vrrp,
        s.algo,
        s.sync,
        takeover.as_secs_f64(),
        neigh_b.as_secs_f64(),
        failover_outage as f64 / 1000.0,
        preempt.as_secs_f64(),
        return_outage as f64 / 1000.0,
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
        summary.stalest_ms < 3000,
        "a connection stopped carrying requests: {summary:?}"
    );
    assert!(
        summary.outages.iter().all(|o| !o.ongoing),
        "new connections still failed at the end: {:?}",
        summary.outages
    );
    let bound = s.bound.as_millis() as u64;
    assert!(
        failover_outage <= bound,
        "new connections failed {failover_outage} ms after the SIGKILL (bound {bound} ms): {:?}",
        summary.outages
    );
    assert!(
        summary.longest_outage_ms() <= bound,
        "an outage of new connections over {bound} ms: {:?}",
        summary.outages
    );
}

/// §7.1 and §7.2 with the seed's VRRPv2 advert_int 1, sync on, rr.
#[test]
fn seed_7_sigkill_and_return_v2_sync_rr_lose_no_connection() {
    failover_and_return(Scenario {
        vrrp: V2,
        algo: "rr",
        sync: true,
        bound: Duration::from_secs(4),
    });
}

/// §7.1 and §7.2 with VRRPv3 adverts every 100 ms, sync on, rr: new connections fail at most
/// half a second.
#[test]
fn seed_7_sigkill_and_return_v3_fast_sync_rr_lose_no_connection() {
    failover_and_return(Scenario {
        vrrp: V3_FAST,
        algo: "rr",
        sync: true,
        bound: Duration::from_millis(500),
    });
}

/// §7.1 and §7.2 without sync: mh gives every director the same real server for a flow and
/// sloppy TCP lets the new master take a flow up mid-way.
#[test]
fn seed_7_sigkill_and_return_mh_sloppy_without_sync_lose_no_connection() {
    failover_and_return(Scenario {
        vrrp: V2,
        algo: "mh",
        sync: false,
        bound: Duration::from_secs(4),
    });
}

// ---- keepalived interop ----

/// keepalived's path; panics (the test fails, never skips) when it is not installed.
pub(crate) fn keepalived() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("keepalived"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "keepalived is not installed: the VRRP interop tests need it (Debian: apt-get \
                 install keepalived; .ci/run installs it)"
            )
        })
}

/// A keepalived VRRP daemon in a namespace.
pub(crate) struct Keepalived<'a> {
    ns: &'a Netns,
    pid: Pid,
    _conf: TempPath,
    _pidfile: TempPath,
    vrrp_pidfile: TempPath,
}

impl<'a> Keepalived<'a> {
    /// `keepalived --vrrp -n -l -D -R -G -f CONF -p PID -r VRRP_PID` in `ns` (the VRRP child
    /// is not respawned: killing it is a crash of the whole node).
    fn start(ns: &'a Netns, tag: &str, conf: &KeepalivedConf) -> Keepalived<'a> {
        Self::start_text(ns, tag, &conf.render())
    }

    /// [`start`](Self::start) with the keepalived.conf's text.
    pub(crate) fn start_text(ns: &'a Netns, tag: &str, text: &str) -> Keepalived<'a> {
        let file = TempPath::new(&format!("{}-{tag}.conf", ns.name()));
        std::fs::write(file.path(), text).expect("write a keepalived.conf");
        let pidfile = TempPath::new(&format!("{}-{tag}.pid", ns.name()));
        let vrrp_pidfile = TempPath::new(&format!("{}-{tag}.vrrp.pid", ns.name()));
        let exe = keepalived();
        let (f, p, r) = (file.arg(), pidfile.arg(), vrrp_pidfile.arg());
        let args = [
            "--vrrp", "-n", "-l", "-D", "-R", "-G", "-f", &f, "-p", &p, "-r", &r,
        ];
        let pid = ns.spawn("keepalived", &exe.to_string_lossy(), &args);
        let k = Keepalived {
            ns,
            pid,
            _conf: file,
            _pidfile: pidfile,
            vrrp_pidfile,
        };
        k.wait_log("(VI_1) Entering BACKUP STATE", 1, Duration::from_secs(10));
        k
    }

    /// keepalived's log so far.
    pub(crate) fn log(&self) -> String {
        self.ns.log(self.pid)
    }

    /// How many times `line` appears in the log.
    pub(crate) fn count(&self, line: &str) -> usize {
        self.log().matches(line).count()
    }

    /// Waits until `line` appears `n` times in the log; returns when.
    pub(crate) fn wait_log(&self, line: &str, n: usize, timeout: Duration) -> Instant {
        let start = Instant::now();
        loop {
            self.ns.assert_running(self.pid);
            if self.count(line) >= n {
                return Instant::now();
            }
            if start.elapsed() > timeout {
                panic!(
                    "keepalived did not log {line:?} ({n} times) within {timeout:?}:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the VRRP child with SIGKILL (a crash: no priority-0 advert); the parent, which does
    /// not respawn it (`-R`), exits.
    pub(crate) fn crash(self) {
        let child = std::fs::read_to_string(self.vrrp_pidfile.path())
            .expect("keepalived's VRRP pid file")
            .trim()
            .to_owned();
        run(Command::new("kill").args(["-KILL", &child]));
        let _ = self.ns.wait_exit(self.pid, Duration::from_secs(10));
    }

    /// SIGTERM to the parent: a clean stop (the VRRP child sends priority 0).
    pub(crate) fn stop(self) {
        self.ns.signal(self.pid, "TERM");
        let _ = self.ns.wait_exit(self.pid, Duration::from_secs(10));
    }
}

/// The keepalived.conf of one side of the interop tests: VRRP only, no sync, no service.
fn interop_conf(master: bool, priority: u8, vrrp: Vrrp, router_id: &str) -> KeepalivedConf {
    KeepalivedConf {
        router_id: router_id.to_owned(),
        priority,
        version: vrrp.version,
        advert_int: vrrp.advert_int.to_owned(),
        sync_interface: None,
        service: None,
        ..KeepalivedConf::seed(master, VIP.parse::<Ipv4Addr>().unwrap())
    }
}

/// tunlb (T, .11) and keepalived (K, .14) on one bridge, both ways round.
fn keepalived_interop(vrrp: Vrrp) {
    let exe = keepalived();
    let version = run(Command::new(&exe).arg("--version"));
    eprintln!("{}", version.lines().next().unwrap_or(""));
    let lab = Topology::builder()
        .netns("lan")
        .netns("t")
        .netns("k")
        .bridge("lan", "lan", "192.168.150.1/24")
        .link_to_bridge(("t", "eth0", "192.168.150.11/24"), "lan", "to-t", "lan")
        .link_to_bridge(("k", "eth0", "192.168.150.14/24"), "lan", "to-k", "lan")
        .build();
    let (t_ns, k_ns) = (lab.ns("t"), lab.ns("k"));
    let advert = Duration::from_secs_f64(vrrp.advert_int.parse().unwrap());
    // Master down interval of the slowest side, plus room for a loaded machine.
    let takeover = advert * 4 + Duration::from_secs(1);
    let t_high = write_conf(t_ns, "t-high", &interop_conf(true, 100, vrrp, "TUNLB"));
    let t_low = write_conf(t_ns, "t-low", &interop_conf(false, 30, vrrp, "TUNLB"));
    let k_conf = interop_conf(false, 50, vrrp, "KEEPALIVED");
    let mut times = Vec::new();

    // tunlb MASTER, keepalived BACKUP: keepalived sees tunlb's adverts and stays BACKUP.
    let t = start_ha_director(t_ns, &t_high);
    wait_state(t_ns, t, "MASTER", Duration::from_secs(15));
    let k = Keepalived::start(k_ns, "k1", &k_conf);
    assert_stays(t_ns, t, "MASTER", advert * 5);
    assert_eq!(
        k.count("Entering MASTER STATE"),
        0,
        "keepalived did not see tunlb's adverts:\n{}",
        k.log()
    );

    // tunlb stops cleanly (priority 0): keepalived takes over within its skew time.
    let stopped = Instant::now();
    t_ns.signal(t, "TERM");
    let k_master = k.wait_log("Entering MASTER STATE", 1, takeover);
    times.push(("tunlb SIGTERM -> keepalived MASTER", k_master - stopped));
    let _ = t_ns.wait_exit(t, Duration::from_secs(5));

    // tunlb comes back with the higher priority: keepalived steps down.
    let t = start_ha_director(t_ns, &t_high);
    let started = Instant::now();
    wait_state(t_ns, t, "MASTER", Duration::from_secs(15));
    let k_backup = k.wait_log("Entering BACKUP STATE", 2, takeover);
    times.push(("tunlb restart -> keepalived BACKUP", k_backup - started));

    // tunlb crashes: keepalived takes over after its master-down interval.
    let killed = Instant::now();
    t_ns.signal(t, "KILL");
    let k_master = k.wait_log("Entering MASTER STATE", 2, takeover);
    times.push(("tunlb SIGKILL -> keepalived MASTER", k_master - killed));
    let _ = t_ns.wait_exit(t, Duration::from_secs(5));

    // tunlb with a lower priority: it sees keepalived's adverts and stays BACKUP.
    let t = start_ha_director(t_ns, &t_low);
    wait_state(t_ns, t, "BACKUP", Duration::from_secs(15));
    assert_stays(t_ns, t, "BACKUP", advert * 5);
    let json = vrrp_json(t_ns);
    assert!(
        json.contains(DIR_B),
        "tunlb does not name keepalived ({DIR_B}) as the master: {json}"
    );

    // keepalived crashes (its VRRP child killed): tunlb takes over.
    let crashed = Instant::now();
    k.crash();
    let t_master = wait_state(t_ns, t, "MASTER", takeover);
    times.push(("keepalived crash -> tunlb MASTER", t_master - crashed));

    // keepalived comes back with the higher priority: tunlb steps down.
    let k = Keepalived::start(k_ns, "k2", &k_conf);
    let started = Instant::now();
    let t_backup = wait_state(t_ns, t, "BACKUP", takeover + advert * 2);
    k.wait_log("Entering MASTER STATE", 1, takeover);
    times.push(("keepalived restart -> tunlb BACKUP", t_backup - started));

    // keepalived stops cleanly: tunlb takes over within its skew time.
    let stopped = Instant::now();
    k.stop();
    let t_master = wait_state(t_ns, t, "MASTER", takeover);
    times.push(("keepalived SIGTERM -> tunlb MASTER", t_master - stopped));

    for (what, took) in &times {
        eprintln!("interop {vrrp:?}: {what}: {:.2} s", took.as_secs_f64());
    }
}

/// tunlb and keepalived 2.2, VRRPv2 with PASS authentication, advert_int 1.
#[test]
fn keepalived_interop_v2_pass() {
    keepalived_interop(V2);
}

/// tunlb and keepalived 2.2, VRRPv3, advert_int 0.5 (centiseconds on the wire).
#[test]
fn keepalived_interop_v3() {
    keepalived_interop(Vrrp {
        version: 3,
        advert_int: "0.5",
    });
}
