//! The daemons' life cycle on real interfaces: the director and the agent give back on exit
//! everything they changed in their namespace, `adm` says so when no director runs, the
//! director answers ARP for a VIP on a LAN (`--announce`), and `--config` loads at start and
//! reloads on SIGHUP, keeping the running table when the file is bad. The `sigkill_*` tests kill
//! both daemons and check that the next start (or `--cleanup`) puts the host back exactly as it
//! was, and `worker_panic_*` that a panicking worker stops the director, restored, with status 1.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::harness::{
    adm, lan_lab, start_agent, start_director, start_httpd, tun_lab, wait_until, Netns, Pid,
    TempPath, STARTUP, TUNLB,
};

/// How long a daemon may take to exit after SIGTERM.
const SHUTDOWN: Duration = Duration::from_secs(5);

/// The sysctls the director changes (besides those of its own TUN device, which goes away).
const DIRECTOR_SYSCTLS: [&str; 1] = ["net.ipv4.ip_forward"];

/// The sysctls the agent changes (besides those of its own TUN device).
const AGENT_SYSCTLS: [&str; 5] = [
    "net.ipv4.conf.all.arp_ignore",
    "net.ipv4.conf.all.arp_announce",
    "net.ipv4.conf.lo.arp_ignore",
    "net.ipv4.conf.lo.arp_announce",
    "net.ipv4.conf.all.rp_filter",
];

/// What a daemon may change in its namespace, as text to compare before and after.
#[derive(Debug, PartialEq, Eq)]
struct HostState {
    /// `ip -4 route show table all`: the main table and the local one (addresses).
    routes: String,
    /// `ip -4 -o addr show`.
    addrs: String,
    /// `ip -o link show`: the devices, their flags and MTUs.
    links: String,
    /// `ip neigh show proxy`.
    proxy_neigh: String,
    /// Each sysctl asked for, with its value.
    sysctls: Vec<(String, String)>,
}

impl HostState {
    fn read(ns: &Netns, sysctls: &[&str]) -> HostState {
        HostState {
            routes: ns.ip("-4 route show table all"),
            addrs: ns.ip("-4 -o addr show"),
            links: ns.ip("-o link show"),
            proxy_neigh: ns.ip("neigh show proxy"),
            sysctls: sysctls
                .iter()
                .map(|key| (key.to_string(), ns.read_sysctl(key)))
                .collect(),
        }
    }
}

/// `adm -L -n` without the connection counts, which move as connections close.
fn table(ns: &Netns) -> String {
    adm(ns, "-L -n")
        .lines()
        .map(|line| match line.strip_prefix("  -> ") {
            Some(dest) if !dest.starts_with("RemoteAddress") => {
                let columns: Vec<&str> = dest.split_whitespace().take(3).collect();
                format!("  -> {}", columns.join(" "))
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Starts an IPIP agent for `vip` accepting tunnels from `director`, and an httpd on `vip:80`
/// answering "from `rip`"; waits until both are up.
fn start_real_server(ns: &Netns, vip: &str, director: &str, rip: &str) -> Pid {
    let agent = start_agent(ns, vip, "ipip", &format!("{director}/32"));
    start_httpd(ns, &format!("{vip}:80"), &format!("from {rip}"), &[]);
    agent
}

/// One request from `client` to `http://vip/`: the answer's body, or None if it failed.
fn get(client: &Netns, vip: &str, max_time: &str) -> Option<String> {
    let url = format!("http://{vip}/");
    let out = client.try_exec("curl", &["-s", "-f", "--max-time", max_time, &url]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
}

/// Sends SIGTERM and waits for the exit. Returns the status, how long it took and the log.
fn terminate(ns: &Netns, pid: Pid) -> (ExitStatus, Duration, String) {
    let start = Instant::now();
    ns.signal(pid, "TERM");
    let (status, log) = ns.wait_exit(pid, SHUTDOWN);
    (status, start.elapsed(), log)
}

/// The director routes the VIP into its TUN and turns forwarding on while it runs; after
/// SIGTERM it exits 0 and the routes, ip_forward and the devices are as they were.
#[test]
fn director_restores_host_on_exit() {
    use tun_lab::{DIRECTOR, RS1, VIP};
    let lab = tun_lab::build();
    let (director, client) = (lab.ns("director"), lab.ns("client"));
    director.sysctl("net.ipv4.ip_forward", "0");
    let before = HostState::read(director, &DIRECTOR_SYSCTLS);
    assert_eq!(director.read_sysctl("net.ipv4.ip_forward"), "0");

    start_real_server(lab.ns("rs1"), VIP, DIRECTOR, RS1);
    let pid = start_director(director, &["--local-address", DIRECTOR]);
    adm(director, &format!("-A -t {VIP}:80 -s rr"));
    adm(director, &format!("-a -t {VIP}:80 -r {RS1} -i"));

    let routes = director.ip("route show");
    assert!(
        routes
            .lines()
            .any(|l| l.trim_end() == format!("{VIP} dev tunlb0 scope link")),
        "no route for the VIP into tunlb0:\n{routes}"
    );
    assert_eq!(director.read_sysctl("net.ipv4.ip_forward"), "1");
    assert!(director.ip("-o link show").contains(": tunlb0:"));
    assert_eq!(
        get(client, VIP, "5").as_deref(),
        Some(format!("from {RS1}").as_str()),
        "the service works before the director stops"
    );

    let (status, took, log) = terminate(director, pid);
    assert!(
        status.success(),
        "the director exited with {status}:\n{log}"
    );
    assert!(took < SHUTDOWN, "the director took {took:?} to exit");
    eprintln!("the director exited in {took:?}");
    assert_eq!(
        HostState::read(director, &DIRECTOR_SYSCTLS),
        before,
        "{log}"
    );
    assert_eq!(get(client, VIP, "1"), None, "the VIP still answers");
}

/// The agent hides the VIP on `lo` (arp_ignore 1, arp_announce 2), creates its TUN device with
/// loose rp_filter (2) on it alone, `all` left strict, while it runs; after SIGTERM it exits 0
/// and all of that is undone.
#[test]
fn agent_restores_host_on_exit() {
    use tun_lab::{DIRECTOR, VIP};
    let lab = tun_lab::build();
    let rs = lab.ns("rs1");
    // Strict reverse-path filtering before: the agent leaves it on `all`.
    rs.sysctl("net.ipv4.conf.all.rp_filter", "1");
    let before = HostState::read(rs, &AGENT_SYSCTLS);
    let values =
        |ns: &Netns| -> Vec<String> { AGENT_SYSCTLS.iter().map(|k| ns.read_sysctl(k)).collect() };
    assert_eq!(values(rs), ["0", "0", "0", "0", "1"]);

    let pid = start_agent(rs, VIP, "ipip", &format!("{DIRECTOR}/32"));
    // The agent logs "... writing into TUN" once the VIP, the sysctls and the TUN are in place.
    wait_until("the agent to set up", STARTUP, || {
        rs.assert_running(pid);
        rs.log(pid).contains("writing into")
    });
    let lo = rs.ip("-4 -o addr show dev lo");
    assert!(lo.contains(&format!("inet {VIP}/32 ")), "{lo}");
    assert_eq!(values(rs), ["1", "2", "1", "2", "1"]);
    assert_eq!(rs.read_sysctl("net.ipv4.conf.tunlb-rs0.rp_filter"), "2");
    assert!(rs.ip("-o link show").contains(": tunlb-rs0:"));

    let (status, took, log) = terminate(rs, pid);
    assert!(status.success(), "the agent exited with {status}:\n{log}");
    assert!(took < SHUTDOWN, "the agent took {took:?} to exit");
    eprintln!("the agent exited in {took:?}");
    assert!(log.contains("network changes undone"), "{log}");
    assert_eq!(HostState::read(rs, &AGENT_SYSCTLS), before, "{log}");
}

/// With no director in the namespace, `adm` says so (exit 2); a scheduler tunlb does not have
/// gets ipvsadm's message and exit status (255) before any director is asked.
#[test]
fn adm_without_director_says_so() {
    let ns = Netns::new("nodir");
    let out = ns.try_exec(TUNLB, &["adm", "-L", "-n"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr,
        "tunlb adm: no director is running in this network namespace \
         (start one with: tunlb director)\n"
    );
    assert!(out.stdout.is_empty());

    let out = ns.try_exec(TUNLB, &["adm", "-A", "-t", "1.2.3.4:80", "-s", "nosuch"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert_eq!(stderr, "Scheduler or persistence engine not found\n");
}

/// `--announce eth0`: the director answers ARP for the VIP on its LAN, so a client with only
/// its connected /24 reaches the VIP; a real server in another network answers. No kernel
/// proxy neighbour is used (the answers die with the process) and nothing is left changed.
#[test]
fn announce_answers_arp_for_the_vip() {
    use lan_lab::{CLIENT, DIRECTOR, DIRECTOR_LAN_IF, RS1, RS2, VIP};
    let lab = lan_lab::build();
    let (director, client) = (lab.ns("director"), lab.ns("client"));
    let client_routes = client.ip("route show");
    assert_eq!(
        client_routes.trim_end(),
        format!("192.168.150.0/24 dev eth0 proto kernel scope link src {CLIENT}"),
        "the client must have nothing but its connected /24"
    );
    let delay_key = format!("net.ipv4.neigh.{DIRECTOR_LAN_IF}.proxy_delay");
    let before = HostState::read(director, &["net.ipv4.ip_forward", &delay_key]);

    for (role, rip) in [("rs1", RS1), ("rs2", RS2)] {
        start_real_server(lab.ns(role), VIP, DIRECTOR, rip);
    }
    let pid = start_director(
        director,
        &["--local-address", DIRECTOR, "--announce", DIRECTOR_LAN_IF],
    );
    adm(director, &format!("-A -t {VIP}:80 -s rr"));
    for rip in [RS1, RS2] {
        adm(director, &format!("-a -t {VIP}:80 -r {rip} -i"));
    }
    // The answers come from the director's own ARP socket, not from a kernel proxy entry
    // that would outlive it.
    let proxy = director.ip("neigh show proxy");
    assert!(
        proxy.trim().is_empty(),
        "a kernel proxy neighbour: {proxy:?}"
    );

    let mut answers: Vec<String> = (0..2)
        .map(|_| get(client, VIP, "5").expect("a request from the LAN to the VIP failed"))
        .collect();
    answers.sort();
    assert_eq!(answers, [format!("from {RS1}"), format!("from {RS2}")]);

    let link = director.ip(&format!("-o link show dev {DIRECTOR_LAN_IF}"));
    let mac = link
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC in {link:?}"));
    let neigh = client.ip(&format!("neigh show {VIP}"));
    assert!(
        neigh.contains(&format!("{VIP} dev eth0 lladdr {mac} ")),
        "the client should have resolved {VIP} to the director's {mac}: {neigh:?}"
    );

    let (status, _, log) = terminate(director, pid);
    assert!(
        status.success(),
        "the director exited with {status}:\n{log}"
    );
    assert_eq!(
        HostState::read(director, &["net.ipv4.ip_forward", &delay_key]),
        before
    );
}

/// A director config for the TUN lab: VIP:80 with `scheduler` over the real servers `rips`.
fn lab_config(scheduler: &str, rips: &[&str]) -> String {
    let mut text = format!(
        "# written by director_lifecycle.rs\n\
         [director]\n\
         queues = 1\n\
         local_address = \"{}\"\n\
         \n\
         [[service]]\n\
         vip = \"{}\"\n\
         port = 80\n\
         scheduler = \"{scheduler}\"\n",
        tun_lab::DIRECTOR,
        tun_lab::VIP
    );
    for rip in rips {
        text.push_str(&format!(
            "\n  [[service.real_server]]\n  address = \"{rip}\"\n  tun_type = \"ipip\"\n"
        ));
    }
    text
}

/// `--config FILE` fills the table at start; SIGHUP with a broken file keeps the running table
/// and logs `FILE:LINE`; SIGHUP with a good file replaces the table.
#[test]
fn config_file_loads_at_start_and_reload_rejects_bad_file() {
    use tun_lab::{DIRECTOR, RS1, RS2, VIP};
    let lab = tun_lab::build();
    let (director, client) = (lab.ns("director"), lab.ns("client"));
    for (role, rip) in [("rs1", RS1), ("rs2", RS2)] {
        start_real_server(lab.ns(role), VIP, DIRECTOR, rip);
    }
    let file = TempPath::new(&format!("{}-director.toml", director.name()));
    std::fs::write(file.path(), lab_config("rr", &[RS1, RS2])).expect("write the config");
    let pid = start_director(director, &["--config", &file.arg()]);

    let listing = table(director);
    let saved = adm(director, "-S -n");
    let service = format!("TCP  {VIP}:80 rr");
    assert!(listing.lines().any(|l| l == service), "{listing}");
    for rip in [RS1, RS2] {
        let dest = format!("  -> {rip}:80 Tunnel 1");
        assert!(listing.lines().any(|l| l == dest), "{listing}");
    }
    let mut answers: Vec<String> = (0..2)
        .map(|_| get(client, VIP, "5").expect("a request to the configured VIP failed"))
        .collect();
    answers.sort();
    assert_eq!(answers, [format!("from {RS1}"), format!("from {RS2}")]);

    // A broken line 9 (an unquoted string): the reload is rejected, the table kept.
    let broken = lab_config("rr", &[RS1, RS2]).replace("scheduler = \"rr\"", "scheduler = rr");
    assert_eq!(broken.lines().nth(8), Some("scheduler = rr"));
    std::fs::write(file.path(), broken).expect("write the broken config");
    director.signal(pid, "HUP");
    wait_until("the director to reject the reload", STARTUP, || {
        director.assert_running(pid);
        director.log(pid).contains("reload rejected")
    });
    let log = director.log(pid);
    let at = format!("{}:9:", file.arg());
    assert!(log.contains(&at), "the log should point at {at}:\n{log}");
    director.assert_running(pid);
    assert_eq!(table(director), listing, "the table changed");
    assert_eq!(adm(director, "-S -n"), saved, "the table changed");
    assert!(get(client, VIP, "5").is_some(), "the VIP stopped answering");

    // A good file: wrr over rs1 only.
    std::fs::write(file.path(), lab_config("wrr", &[RS1])).expect("write the new config");
    director.signal(pid, "HUP");
    wait_until("the table to change", STARTUP, || {
        director.assert_running(pid);
        table(director) != listing
    });
    let changed = table(director);
    let expected = [
        "IP Virtual Server version 1.2.1 (size=4096)",
        "Prot LocalAddress:Port Scheduler Flags",
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
        &format!("TCP  {VIP}:80 wrr"),
        &format!("  -> {RS1}:80 Tunnel 1"),
    ]
    .join("\n");
    assert_eq!(changed, expected);
    for _ in 0..2 {
        assert_eq!(get(client, VIP, "5"), Some(format!("from {RS1}")));
    }
}

/// `adm -S -n` prints the table as commands that `adm -R` reads back: after `-C` and `-R` the
/// table is the same (the README's "Saving the table").
#[test]
fn save_and_restore_round_trip_the_table() {
    let ns = Netns::new("save");
    start_director(&ns, &[]);
    for cmd in [
        "-A -t 10.100.0.100:80 -s wrr",
        "-a -t 10.100.0.100:80 -r 10.3.0.12 -i -w 3",
        "-a -t 10.100.0.100:80 -r 10.3.0.13 -i -w 1 --tun-type gre",
        "-A -u 10.100.0.101:53 -s sh -p 60",
        "-a -u 10.100.0.101:53 -r 10.3.0.14 -i --tun-type gue",
    ] {
        adm(&ns, cmd);
    }
    let listing = adm(&ns, "-L -n");
    let saved = adm(&ns, "-S -n");
    assert_eq!(saved.lines().count(), 5, "{saved}");
    let rules = TempPath::new(&format!("{}-rules", ns.name()));
    std::fs::write(rules.path(), &saved).expect("write the rules");

    adm(&ns, "-C");
    assert_eq!(adm(&ns, "-S -n"), "");
    let restore = format!("{TUNLB} adm -R < {}", rules.arg());
    ns.exec("sh", &["-c", &restore]);
    assert_eq!(adm(&ns, "-S -n"), saved);
    assert_eq!(adm(&ns, "-L -n"), listing);
}

/// Everything in a namespace a daemon could change, line by line under a section name:
/// every `net.*` sysctl, `ip rule`, routes of every table, addresses, links, proxy neighbours
/// and the nftables ruleset.
fn snapshot(ns: &Netns) -> Vec<String> {
    let mut out = Vec::new();
    let sysctls = ns.try_exec("sysctl", &["-a", "-r", "^net\\."]);
    let sysctls = String::from_utf8_lossy(&sysctls.stdout).into_owned();
    // Counters that move by themselves.
    const MOVING: [&str; 1] = ["net.netfilter.nf_conntrack_count"];
    for line in sysctls.lines() {
        if !MOVING.iter().any(|m| line.starts_with(m)) {
            out.push(format!("sysctl {line}"));
        }
    }
    assert!(out.len() > 100, "sysctl -a gave too little: {sysctls}");
    for (what, args) in [
        ("rule", "-4 rule show"),
        ("route", "-4 route show table all"),
        ("addr", "-4 -o addr show"),
        ("link", "-o link show"),
        ("proxy", "neigh show proxy"),
    ] {
        out.extend(ns.ip(args).lines().map(|l| format!("{what} {l}")));
    }
    let nft = ns.try_exec("nft", &["list", "ruleset"]);
    out.extend(
        String::from_utf8_lossy(&nft.stdout)
            .lines()
            .map(|l| format!("nft {l}")),
    );
    out
}

/// Panics with the lines that differ unless `after` is `before`.
fn assert_same_host(ns: &Netns, before: &[String], after: &[String], log: &str) {
    if before == after {
        return;
    }
    let gone: Vec<&String> = before.iter().filter(|l| !after.contains(l)).collect();
    let new: Vec<&String> = after.iter().filter(|l| !before.contains(l)).collect();
    panic!(
        "{} is not as before the first start:\nonly before: {gone:#?}\nonly after: {new:#?}\n{log}",
        ns.name()
    );
}

/// Sends SIGKILL and waits for the process to be gone.
fn kill(ns: &Netns, pid: Pid) {
    ns.signal(pid, "KILL");
    let (status, _) = ns.wait_exit(pid, SHUTDOWN);
    assert!(!status.success());
}

/// The services of the crash tests: a TUN service on the VIP (announced on the LAN) and a NAT
/// service (which installs policy rules for its replies).
fn configure_crash_lab(director: &Netns) {
    use lan_lab::{RS1, VIP};
    adm(director, &format!("-A -t {VIP}:80 -s rr"));
    adm(director, &format!("-a -t {VIP}:80 -r {RS1} -i"));
    adm(director, &format!("-A -t {VIP}:8080 -s rr"));
    adm(director, &format!("-a -t {VIP}:8080 -r {RS1}:8080 -m"));
}

/// Starts the director of the crash tests (announce on the LAN) and configures it.
fn start_crash_director(director: &Netns) -> Pid {
    use lan_lab::{DIRECTOR, DIRECTOR_LAN_IF};
    let pid = start_director(
        director,
        &["--local-address", DIRECTOR, "--announce", DIRECTOR_LAN_IF],
    );
    configure_crash_lab(director);
    pid
}

/// Sets values the daemons change to something else than they want, so every change shows.
fn prepare_crash_lab(director: &Netns, rs: &Netns) {
    director.sysctl("net.ipv4.ip_forward", "0");
    director.sysctl("net.ipv4.conf.all.rp_filter", "1");
    rs.sysctl("net.ipv4.conf.all.rp_filter", "1");
}

/// What a killed director and agent leave: the NAT reply rules, ip_forward, the VIP on lo and
/// the agent's sysctls (asserted, so the test shows there was something to clean up).
fn assert_leftovers(director: &Netns, rs: &Netns) {
    use lan_lab::VIP;
    let rules = director.ip("-4 rule show");
    assert!(
        rules.contains("iif tunlb0"),
        "no NAT guard rule left: {rules}"
    );
    assert_eq!(director.read_sysctl("net.ipv4.ip_forward"), "1");
    assert!(rs
        .ip("-4 -o addr show dev lo")
        .contains(&format!("{VIP}/32")));
    // The agent loosens rp_filter on its own TUN only; `all` is never touched.
    assert_eq!(rs.read_sysctl("net.ipv4.conf.lo.arp_ignore"), "1");
}

/// SIGKILL the director and the agent, start both again, SIGTERM both: the namespaces are
/// exactly as before the first start (every net sysctl, rules, routes of all tables,
/// addresses, links, proxy neighbours, nftables). The restarts undo the dead processes'
/// changes first (and log them), then serve again.
#[test]
fn sigkill_restart_sigterm_leaves_the_host_exactly_as_before() {
    use lan_lab::{DIRECTOR, RS1, VIP};
    let lab = lan_lab::build();
    let (director, rs, client) = (lab.ns("director"), lab.ns("rs1"), lab.ns("client"));
    prepare_crash_lab(director, rs);
    let (d_before, rs_before) = (snapshot(director), snapshot(rs));

    let agent = start_agent(rs, VIP, "ipip", &format!("{DIRECTOR}/32"));
    // The httpd's socket outlives the VIP's removal and re-adding by the agents below.
    start_httpd(rs, &format!("{VIP}:80"), &format!("from {RS1}"), &[]);
    let pid = start_crash_director(director);
    assert_eq!(
        get(client, VIP, "5").as_deref(),
        Some(format!("from {RS1}").as_str())
    );
    kill(director, pid);
    kill(rs, agent);
    assert_leftovers(director, rs);

    // A new start cleans up after the dead one, then works as usual.
    let agent = start_agent(rs, VIP, "ipip", &format!("{DIRECTOR}/32"));
    let pid = start_crash_director(director);
    assert_eq!(
        get(client, VIP, "5").as_deref(),
        Some(format!("from {RS1}").as_str()),
        "the service works after the restart"
    );
    let d_log = director.log(pid);
    assert!(
        d_log.contains("died without restoring the host")
            && d_log.contains("undone: sysctl net.ipv4.ip_forward=0"),
        "{d_log}"
    );
    let rs_log = rs.log(agent);
    assert!(
        rs_log.contains(&format!("undone: ip addr del {VIP}/32 dev lo")),
        "{rs_log}"
    );
    // While they run, a second of each is refused.
    let second = director.try_exec(TUNLB, &["director", "--tun-name", "tunlb9"]);
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    // The control socket answers first ("a director is already running"); the journal's lock
    // ("another tunlb director") refuses one that got past it.
    assert!(
        err.contains("a director is already running") || err.contains("another tunlb director"),
        "{err}"
    );

    let (status, _, d_log) = terminate(director, pid);
    assert!(status.success(), "{d_log}");
    let (status, _, rs_log) = terminate(rs, agent);
    assert!(status.success(), "{rs_log}");
    assert_same_host(director, &d_before, &snapshot(director), &d_log);
    assert_same_host(rs, &rs_before, &snapshot(rs), &rs_log);
}

/// SIGKILL both, then `tunlb director --cleanup` and `tunlb realserver --cleanup` undo what
/// they left, print it, and the host is exactly as before; a second `--cleanup` finds nothing.
/// `--cleanup` is refused while a director runs.
#[test]
fn sigkill_then_cleanup_restores_the_host() {
    use lan_lab::{DIRECTOR, VIP};
    let lab = lan_lab::build();
    let (director, rs) = (lab.ns("director"), lab.ns("rs1"));
    prepare_crash_lab(director, rs);
    let (d_before, rs_before) = (snapshot(director), snapshot(rs));

    let agent = start_agent(rs, VIP, "ipip", &format!("{DIRECTOR}/32"));
    let pid = start_crash_director(director);
    let busy = director.try_exec(TUNLB, &["director", "--cleanup"]);
    let err = String::from_utf8_lossy(&busy.stderr);
    assert!(!busy.status.success(), "--cleanup with a live director");
    assert!(err.contains("still running"), "{err}");
    kill(director, pid);
    kill(rs, agent);
    assert_leftovers(director, rs);

    let out = director.tunlb(&["director", "--cleanup"]);
    eprintln!("{out}");
    for undo in [
        "undone: ip rule del pref",
        "undone: sysctl net.ipv4.ip_forward=0",
        &format!("undone: ip route del {VIP}/32 dev tunlb0 (already gone)"),
    ] {
        assert!(out.contains(undo), "{undo:?} not in:\n{out}");
    }
    let out = rs.tunlb(&["realserver", "--cleanup"]);
    eprintln!("{out}");
    assert!(
        out.contains(&format!("undone: ip addr del {VIP}/32 dev lo")),
        "{out}"
    );
    assert_same_host(director, &d_before, &snapshot(director), "");
    assert_same_host(rs, &rs_before, &snapshot(rs), "");

    let again = director.tunlb(&["director", "--cleanup"]);
    assert!(again.contains("nothing to undo"), "{again}");
    let again = rs.tunlb(&["realserver", "--cleanup"]);
    assert!(again.contains("nothing to undo"), "{again}");
}

/// A worker that panics (a debug-build trigger, `TUNLB_TEST_PANIC=worker:FILE`, fires when the
/// file appears) stops the director within 2 s: it says which thread panicked, restores the
/// host and exits with status 1, so a supervisor restarts it.
#[test]
fn worker_panic_stops_the_director_restored_and_failing() {
    use lan_lab::{DIRECTOR, DIRECTOR_LAN_IF};
    let lab = lan_lab::build();
    let director = lab.ns("director");
    prepare_crash_lab(director, lab.ns("rs1"));
    let before = snapshot(director);
    let trigger = TempPath::new(&format!("{}-panic", director.name()));
    let _ = std::fs::remove_file(trigger.path());
    let env = format!("TUNLB_TEST_PANIC=worker:{}", trigger.arg());
    let pid = director.spawn(
        "director",
        "env",
        &[
            &env,
            // A symbolized backtrace of a debug build takes a second to print.
            "RUST_BACKTRACE=0",
            TUNLB,
            "director",
            "--queues",
            "2",
            "--local-address",
            DIRECTOR,
            "--announce",
            DIRECTOR_LAN_IF,
        ],
    );
    wait_until("the director's control socket", STARTUP, || {
        director.assert_running(pid);
        director
            .try_exec(TUNLB, &["adm", "-L", "-n"])
            .status
            .success()
    });
    configure_crash_lab(director);
    let start = Instant::now();
    std::fs::write(trigger.path(), "now").unwrap();
    let (status, log) = director.wait_exit(pid, SHUTDOWN);
    let took = start.elapsed();
    eprintln!("the director exited {took:?} after the trigger, with {status}");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(took < Duration::from_secs(2), "took {took:?}:\n{log}");
    assert!(
        log.contains("thread tunlb-worker-0 panicked")
            && log.contains("TUNLB_TEST_PANIC asked worker to panic")
            && log.contains("the host settings were restored"),
        "{log}"
    );
    assert_same_host(director, &before, &snapshot(director), &log);
}
