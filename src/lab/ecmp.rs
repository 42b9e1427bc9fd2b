//! The ECMP lab (`tunlb lab up|demo --mode ecmp [--directors N]`): N directors behind a router
//! that spreads the VIP's flows over them with equal-cost multipath routes learned over BGP.
//!
//! ```text
//!  client 192.168.140.2 (+ .10–.25) ── wan 192.168.140.1 ┐
//!                                                        router (BIRD: BGP, BFD, ECMP)
//!  director1 192.168.150.11 ─┐                           │
//!  director2 192.168.150.12 ─┼──────── lan 192.168.150.1 ┤
//!  directorN 192.168.150.1N ─┘                           │
//!                                     dc2 192.168.160.1 ─┴─┬─ rs1 192.168.160.12
//!                                                          └─ rs2 192.168.160.13
//! ```
//!
//! Each director runs `tunlb director --announce-table 100 --sloppy-tcp` with the same
//! service (VIP 192.168.150.100:80, `mh`, TUN mode to both real servers) and BIRD with
//! `configs/bird-director.conf`: BIRD learns table 100, where the director routes the VIP
//! while the service has a live real server, and announces it to the router. The router runs
//! BIRD with `configs/bird-router.conf` (one dynamic BGP session per director, `merge paths`,
//! BFD) and `net.ipv4.fib_multipath_hash_policy = 1`, so the kernel spreads flows by their
//! ports over the directors. Every director builds the same Maglev table and picks up a flow
//! it did not see start (sloppy TCP), so a flow the router moves to another director keeps its
//! real server. The client is on a network of its own: the VIP must be reached through the
//! router. It holds extra addresses (.10–.25) so that `mh`, which hashes the client address,
//! spreads its connections over both real servers.
//!
//! This module has what the lab and the namespace test `ecmp` share: the addresses, the
//! shipped BIRD configs, the plan of the network and readers of `ip route` and `adm -L -n -c`.

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use super::host::{self, Host};
use super::run::{say_line, unix_ms, Lab};
use super::topology::{Action, Names, Role, Step, VIP};
use super::{ha, UpArgs};
use crate::encap::TunnelType;

/// Prints one line (see `run.rs`).
macro_rules! say {
    ($($arg:tt)*) => {
        say_line(format_args!($($arg)*))
    };
}

/// The routing table the directors route live VIPs into (`--announce-table`), the one the
/// shipped `configs/bird-director.conf` learns.
pub const ANNOUNCE_TABLE: u32 = 100;

/// BIRD's config on each director (the file shipped in `configs/`, used as is).
pub const BIRD_DIRECTOR_CONF: &str = include_str!("../../configs/bird-director.conf");

/// BIRD's config on the router (the file shipped in `configs/`, used as is).
pub const BIRD_ROUTER_CONF: &str = include_str!("../../configs/bird-router.conf");

/// Directors without `--directors`.
pub const DEFAULT_DIRECTORS: u8 = 3;

/// The most directors the lab builds (.11 to .19 on the LAN).
pub const MAX_DIRECTORS: u8 = 9;

/// The router's address on the directors' LAN (their BGP neighbour).
pub const ROUTER_LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 150, 1);

/// The directors' LAN, whose tunnels the real servers' agents accept (`--allow`).
pub const DIRECTORS_LAN: &str = "192.168.150.0/24";

/// The router's address on the client's network.
pub const ROUTER_WAN: Ipv4Addr = Ipv4Addr::new(192, 168, 140, 1);

/// The router's address on the real servers' network.
pub const ROUTER_DC2: Ipv4Addr = Ipv4Addr::new(192, 168, 160, 1);

/// The client's address.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 140, 2);

/// The client's extra addresses, sources of its keep-alive connections (`lab clients --from`).
pub fn client_sources() -> Vec<Ipv4Addr> {
    (10..26).map(|i| Ipv4Addr::new(192, 168, 140, i)).collect()
}

/// Director `i` (1-based): 192.168.150.(10 + i).
pub fn director_addr(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 150, 10 + i)
}

/// The real servers, rs1 and rs2.
pub const REAL_SERVERS: [Ipv4Addr; 2] = [
    Ipv4Addr::new(192, 168, 160, 12),
    Ipv4Addr::new(192, 168, 160, 13),
];

/// The namespace of director `i` (1-based): `<prefix>-director<i>`.
pub fn director_ns(names: &Names, i: u8) -> String {
    format!("{}-director{i}", names.prefix())
}

/// Whether `ns` is a director namespace of an ECMP lab of `names`
/// (`<prefix>-director<digits>`): `lab down` deletes them too.
pub fn is_director_ns(names: &Names, ns: &str) -> bool {
    ns.strip_prefix(names.prefix())
        .and_then(|rest| rest.strip_prefix("-director"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The arguments of `bird` in the foreground with its own control socket and pid file.
pub fn bird_args(conf: &str, ctl: &str, pid: &str) -> Vec<String> {
    ["-f", "-c", conf, "-s", ctl, "-P", pid]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// The arguments of each director: the announce table, sloppy TCP, one queue.
pub fn director_args() -> Vec<String> {
    let table = ANNOUNCE_TABLE.to_string();
    [
        "director",
        "--announce-table",
        &table,
        "--sloppy-tcp",
        "--queues",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The `tunlb adm` commands that configure each director (the same everywhere, in the same
/// order): the service with `mh`, then each real server in TUN mode (IPIP).
pub fn adm_commands() -> Vec<Vec<String>> {
    let service = format!("{VIP}:80");
    let mut cmds = vec![vec!["-A", "-t", &service, "-s", "mh"]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>()];
    for rs in REAL_SERVERS {
        let rs = rs.to_string();
        cmds.push(
            ["-a", "-t", &service, "-r", &rs, "-i", "-w", "1"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
    }
    cmds
}

/// The nexthops of the route `ip route show VIP` printed: one per director for a multipath
/// route (`nexthop via A dev lan weight 1` lines), the one `via` of a single route, none when
/// there is no route.
pub fn nexthops(ip_route: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    for line in ip_route.lines() {
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            if w == "via" {
                if let Some(a) = words.next().and_then(|a| a.parse().ok()) {
                    out.push(a);
                }
            }
        }
    }
    out.sort();
    out
}

/// The ESTABLISHED TCP connections to `vip:port` in the output of `tunlb adm -L -n -c`.
pub fn established(listing: &str, vip: Ipv4Addr, port: u16) -> usize {
    let to = format!("{vip}:{port}");
    listing
        .lines()
        .filter(|l| l.contains("ESTABLISHED") && l.split_whitespace().any(|w| w == to))
        .count()
}

/// The network of the ECMP lab with `directors` directors, in order; no process is started.
/// Namespaces: `P-client`, `P-router`, `P-director1` … `P-directorN`, `P-rs1`, `P-rs2`.
pub fn plan(names: &Names, directors: u8) -> Vec<Step> {
    let router = names.ns(Role::Router);
    let client = names.ns(Role::Client);
    let mut namespaces = vec![client.clone(), router.clone()];
    namespaces.extend((1..=directors).map(|i| director_ns(names, i)));
    namespaces.extend([names.ns(Role::Rs1), names.ns(Role::Rs2)]);
    let mut steps = Vec::new();
    for ns in &namespaces {
        steps.push(Step {
            what: format!("creating namespace {ns}"),
            actions: vec![
                Action::AddNamespace(ns.clone()),
                Action::ip(ns, "link set dev lo up"),
                Action::sysctl(ns, "net.ipv4.conf.all.rp_filter", "0"),
                Action::sysctl(ns, "net.ipv4.conf.default.rp_filter", "0"),
            ],
        });
    }
    for (bridge, gw, what) in [
        ("wan", ROUTER_WAN, "the client's network 192.168.140.0/24"),
        ("lan", ROUTER_LAN, "the directors' LAN 192.168.150.0/24"),
        (
            "dc2",
            ROUTER_DC2,
            "the real servers' network 192.168.160.0/24",
        ),
    ] {
        steps.push(Step {
            what: format!("creating {what}: bridge {bridge} with {gw}/24 in {router}"),
            actions: vec![
                Action::ip(&router, &format!("link add name {bridge} type bridge")),
                Action::ip(&router, &format!("addr add {gw}/24 dev {bridge}")),
                Action::ip(&router, &format!("link set dev {bridge} up")),
            ],
        });
    }
    steps.push(Step {
        what: format!(
            "turning on IPv4 forwarding in {router}, multipath hashing on ports \
             (fib_multipath_hash_policy 1)"
        ),
        actions: vec![
            Action::sysctl(&router, "net.ipv4.ip_forward", "1"),
            Action::sysctl(&router, "net.ipv4.fib_multipath_hash_policy", "1"),
        ],
    });
    let mut plug = |ns: &str, addr: Ipv4Addr, port: &str, bridge: &str, gw: Ipv4Addr| {
        steps.push(Step {
            what: format!("plugging {ns} (eth0 {addr}/24, gateway {gw}) into bridge {bridge}"),
            actions: vec![
                Action::ip(
                    ns,
                    &format!("link add name eth0 type veth peer name {port} netns {router}"),
                ),
                Action::ip(ns, &format!("addr add {addr}/24 dev eth0")),
                Action::ip(ns, "link set dev eth0 up"),
                Action::ip(&router, &format!("link set dev {port} master {bridge}")),
                Action::ip(&router, &format!("link set dev {port} up")),
                Action::ip(ns, &format!("route add default via {gw}")),
            ],
        });
    };
    plug(&client, CLIENT, "to-client", "wan", ROUTER_WAN);
    for i in 1..=directors {
        let ns = director_ns(names, i);
        plug(
            &ns,
            director_addr(i),
            &format!("to-d{i}"),
            "lan",
            ROUTER_LAN,
        );
    }
    for (role, addr) in [Role::Rs1, Role::Rs2].into_iter().zip(REAL_SERVERS) {
        let ns = names.ns(role);
        plug(&ns, addr, &format!("to-{role}"), "dc2", ROUTER_DC2);
    }
    steps.push(Step {
        what: format!("giving {client} the source addresses 192.168.140.10-25"),
        actions: client_sources()
            .into_iter()
            .map(|a| Action::ip(&client, &format!("addr add {a}/24 dev eth0")))
            .collect(),
    });
    steps
}

/// `--mode ecmp`'s part of a lab: how many directors, where BIRD is, which processes are
/// the directors.
#[derive(Debug)]
pub struct EcmpLab {
    /// Directors (`--directors`).
    pub directors: u8,
    /// The `bird` binary.
    pub bird: PathBuf,
    /// Index in the lab's started processes of each director's `tunlb director`.
    director_procs: Vec<usize>,
    /// Index of the router's BIRD.
    router_bird: Option<usize>,
}

impl EcmpLab {
    /// The checks of `--mode ecmp` before anything is created: IPIP tunnels, BIRD installed.
    pub fn prepare(args: &UpArgs) -> anyhow::Result<EcmpLab> {
        if let Some(encap) = args.encap.filter(|&e| e != TunnelType::Ipip) {
            bail!("--mode ecmp tunnels with ipip, not {encap}");
        }
        let bird = host::find_tool("bird").ok_or_else(|| {
            anyhow!("--mode ecmp runs BIRD 2 in the namespaces: apt-get install bird2")
        })?;
        Ok(EcmpLab {
            directors: args.directors.unwrap_or(DEFAULT_DIRECTORS),
            bird,
            director_procs: Vec::new(),
            router_bird: None,
        })
    }
}

/// `ip -n NS route show VIP`'s output ("" when it fails).
fn route_text(host: &Host, ns: &str) -> String {
    let mut cmd = std::process::Command::new(host.ip());
    cmd.args(["-n", ns, "route", "show", &VIP.to_string()]);
    host::output(&mut cmd, "ip route show")
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The lines of `adm -L -n -c` of the director in `ns` ("" when it does not answer).
fn listing(host: &Host, ns: &str) -> String {
    host.tunlb(ns, &["adm", "-L", "-n", "-c"])
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

impl Lab {
    fn ecmp_lab(&self) -> anyhow::Result<&EcmpLab> {
        self.ecmp.as_ref().context("not an ECMP lab")
    }

    fn ecmp_lab_mut(&mut self) -> anyhow::Result<&mut EcmpLab> {
        self.ecmp.as_mut().context("not an ECMP lab")
    }

    /// `--mode ecmp`, steps 2 to 4: the network, the router's BIRD, the real servers, each
    /// director with its service and its BIRD; then waits for the router's multipath route.
    pub(super) fn build_ecmp(&mut self, args: &UpArgs) -> anyhow::Result<()> {
        let n = self.ecmp_lab()?.directors;
        self.apply_steps(plan(&self.names, n))?;
        let router = self.names.ns(Role::Router);
        let i = self.start_bird(&router, "router", BIRD_ROUTER_CONF, "bird-router.conf")?;
        self.ecmp_lab_mut()?.router_bird = Some(i);
        for role in [Role::Rs1, Role::Rs2] {
            self.start_real_server(role, args)?;
        }
        for i in 1..=n {
            self.start_ecmp_director(i)?;
        }
        let all: Vec<u8> = (1..=n).collect();
        self.wait_route(&all)?;
        say!(
            "[lab] the router's route to {VIP}, one nexthop per director (`ip -n {router} route \
             show {VIP}`):"
        );
        say!("{}", route_text(&self.host, &router).trim_end());
        Ok(())
    }

    /// Writes `conf` into the state folder as `file` and starts BIRD in `ns` with it, its
    /// control socket `<who>-bird.ctl` and pid file in the state folder; waits for the socket.
    fn start_bird(&mut self, ns: &str, who: &str, conf: &str, file: &str) -> anyhow::Result<usize> {
        let state = self.state()?.path().to_owned();
        let conf_path = state.join(file);
        if !conf_path.exists() {
            fs::write(&conf_path, conf)
                .with_context(|| format!("writing {}", conf_path.display()))?;
        }
        let ctl = state.join(format!("{who}-bird.ctl"));
        let pid = state.join(format!("{who}-bird.pid"));
        let args = bird_args(
            &conf_path.display().to_string(),
            &ctl.display().to_string(),
            &pid.display().to_string(),
        );
        say!(
            "[lab] starting `bird {}` in {ns} (configs/{file})",
            args.join(" ")
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let bird = self.ecmp_lab()?.bird.clone();
        let i = self.spawn_in(ns, &bird, &format!("{who}-bird"), "bird", &args)?;
        self.wait_until(i, &format!("BIRD's control socket in {ns}"), |_| {
            ctl.exists()
        })?;
        Ok(i)
    }

    /// Starts director `i`: `tunlb director --announce-table 100 --sloppy-tcp`, the service
    /// with `tunlb adm`, then its BIRD.
    fn start_ecmp_director(&mut self, i: u8) -> anyhow::Result<()> {
        let ns = director_ns(&self.names, i);
        let args = director_args();
        say!(
            "[lab] starting `tunlb {}` in {ns} ({}): it routes {VIP} into its TUN, and into \
             table {ANNOUNCE_TABLE} while the service has a live real server; sloppy TCP picks \
             up flows another director started",
            args.join(" "),
            director_addr(i)
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let exe = self.host.exe().to_owned();
        let p = self.spawn_in(&ns, &exe, &format!("director{i}"), "tunlb director", &args)?;
        self.ecmp_lab_mut()?.director_procs.push(p);
        self.wait_until(
            p,
            &format!("the director's control socket in {ns}"),
            |host| {
                host.tunlb(&ns, &["adm", "-L", "-n"])
                    .is_ok_and(|out| out.status.success())
            },
        )?;
        for cmd in adm_commands() {
            let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
            self.adm_in(&ns, &cmd)?;
        }
        self.start_bird(
            &ns,
            &format!("director{i}"),
            BIRD_DIRECTOR_CONF,
            "bird-director.conf",
        )?;
        Ok(())
    }

    /// Waits until the router's route to the VIP goes through exactly `directors`.
    fn wait_route(&mut self, directors: &[u8]) -> anyhow::Result<()> {
        let mut want: Vec<Ipv4Addr> = directors.iter().map(|&i| director_addr(i)).collect();
        want.sort();
        let router = self.names.ns(Role::Router);
        let watch = self.ecmp_lab()?.router_bird.unwrap_or(usize::MAX);
        let what = format!("the router's route to {VIP} through {want:?}");
        self.wait_until(watch, &what, |host| {
            nexthops(&route_text(host, &router)) == want
        })
    }

    /// ESTABLISHED connections to the VIP per running director (`director<i>`, count).
    fn per_director(&self, directors: &[u8]) -> Vec<(String, usize)> {
        directors
            .iter()
            .map(|&i| {
                let ns = director_ns(&self.names, i);
                (
                    format!("director{i}"),
                    established(&listing(&self.host, &ns), VIP, 80),
                )
            })
            .collect()
    }

    /// `--mode ecmp`, step 5: new connections from the client's addresses in turn, who
    /// answered, and the connection entries each director made; fails unless both real
    /// servers answered (with curl; `tunlb lab get` has one source address).
    pub(super) fn show_ecmp(&mut self, args: &UpArgs) -> anyhow::Result<()> {
        let client = self.names.ns(Role::Client);
        let url = format!("http://{VIP}/");
        let curl = self.host.curl().map(|p| p.to_owned());
        self.requests_with_curl = curl.is_some();
        let sources = client_sources();
        say!(
            "[lab] {} requests from {client}, each a new connection from the next of its \
             addresses 192.168.140.10-25 (mh hashes the client address), to {url}:",
            args.requests
        );
        let answers = self.request_round(&client, &url, args.requests, |i| {
            Some(sources[(i as usize - 1) % sources.len()].to_string())
        })?;
        let n = self.ecmp_lab()?.directors;
        let entries: Vec<String> = (1..=n)
            .map(|i| {
                let ns = director_ns(&self.names, i);
                let text = listing(&self.host, &ns);
                let count = text
                    .lines()
                    .filter(|l| l.contains(&format!("{VIP}:80")))
                    .count();
                format!("director{i} {count}")
            })
            .collect();
        say!(
            "[lab] connection entries per director (the router hashed each connection's \
             addresses and ports to one): {}",
            entries.join(", ")
        );
        say!("[lab] {}", self.path_of_answers_ecmp());
        if curl.is_none() {
            say!("[lab] curl is not installed: every request came from one address");
            return if answers.is_empty() {
                Err(anyhow!("no answer"))
            } else {
                Ok(())
            };
        }
        let missing: Vec<String> = REAL_SERVERS
            .iter()
            .map(|r| format!("from {r}"))
            .filter(|banner| !answers.contains_key(banner))
            .collect();
        if !missing.is_empty() {
            bail!("no answer {}", missing.join(" and no answer "));
        }
        Ok(())
    }

    fn path_of_answers_ecmp(&self) -> &'static str {
        "every director builds the same Maglev table from the same service, so whichever \
         director the router picked sent a client address to the same real server; the \
         answers went from the VIP straight to the client through the router"
    }

    /// `demo --mode ecmp`: 60 keep-alive connections spread over the directors, SIGKILL to
    /// the last director, the route shrinking, the connections going on; fails if one was
    /// lost.
    pub(super) fn ecmp_demo(&mut self) -> anyhow::Result<()> {
        const CONNS: u32 = 60;
        let n = self.ecmp_lab()?.directors;
        if n < 2 {
            say!("[lab] one director: no director to kill (try --directors 3)");
            return Ok(());
        }
        let client = self.names.ns(Role::Client);
        let router = self.names.ns(Role::Router);
        let to = format!("{VIP}:80");
        let conns = CONNS.to_string();
        let from: Vec<String> = client_sources().iter().map(Ipv4Addr::to_string).collect();
        let from = from.join(",");
        let args = [
            "lab",
            "clients",
            "--to",
            &to,
            "--conns",
            &conns,
            "--from",
            &from,
            "--status-every",
            "0",
        ];
        say!(
            "[lab] the failover: starting `tunlb lab clients --to {to} --conns {CONNS} --from \
             192.168.140.10,...,192.168.140.25` in {client}: {CONNS} keep-alive connections, \
             each a request every 100 ms, and a new connection every 50 ms"
        );
        let clients = self.spawn(Role::Client, "clients", "tunlb lab clients", &args)?;
        let clients_log = self.state()?.log_path("clients");
        let ready = format!("all {CONNS} connections established");
        self.wait_until(clients, "the client's keep-alive connections", |_| {
            fs::read_to_string(&clients_log).is_ok_and(|l| l.contains(&ready))
        })?;
        thread::sleep(Duration::from_millis(500));
        let all: Vec<u8> = (1..=n).collect();
        let spread = self.per_director(&all);
        let shown: Vec<String> = spread.iter().map(|(d, c)| format!("{d} {c}")).collect();
        say!(
            "[lab] established connections per director (`tunlb adm -L -n -c` in each): {}",
            shown.join(", ")
        );
        let victim = n;
        let victim_ns = director_ns(&self.names, victim);
        let proc_i = *self
            .ecmp_lab()?
            .director_procs
            .get(victim as usize - 1)
            .context("the last director was not started")?;
        let mut timeline = ha::Timeline::new();
        let start_unix_ms = unix_ms();
        say!(
            "[lab] {}",
            timeline.event(format!(
                "SIGKILL to `tunlb director` in {victim_ns} ({}); its BIRD keeps running",
                director_addr(victim)
            ))
        );
        {
            let child = &mut self.started[proc_i].child;
            child.kill().context("killing the director")?;
            let _ = child.wait();
        }
        let survivors: Vec<u8> = (1..n).collect();
        self.wait_route(&survivors)?;
        say!(
            "[lab] {}",
            timeline.event(format!(
                "the router's route lost director{victim}'s nexthop: its VIP route in table \
                 {ANNOUNCE_TABLE} went with its TUN device, BIRD withdrew the VIP"
            ))
        );
        say!("{}", route_text(&self.host, &router).trim_end());
        thread::sleep(Duration::from_secs(3));
        let answer = self.one_request(&client);
        say!(
            "[lab] {}",
            timeline.event(format!("a new request answered: {answer}"))
        );
        let spread = self.per_director(&survivors);
        let shown: Vec<String> = spread.iter().map(|(d, c)| format!("{d} {c}")).collect();
        say!(
            "[lab] {}",
            timeline.event(format!(
                "established connections per director: {} (they picked up director{victim}'s \
                 flows: sloppy TCP, the same Maglev table)",
                shown.join(", ")
            ))
        );
        let summary = self.stop_clients(clients)?;
        timeline.outages(&summary, start_unix_ms, 2);
        timeline.event(format!(
            "clients stopped: {} requests answered; the slowest answer took {:.2} s",
            summary.requests,
            summary.max_request_ms as f64 / 1000.0
        ));
        say!("[lab] timeline:");
        for line in timeline.lines() {
            say!("  {line}");
        }
        let survived = summary.established - summary.lost;
        say!(
            "[lab] connections survived: {survived}/{}",
            summary.established
        );
        for lost in summary.lost_detail.iter().take(5) {
            say!("[lab]   lost {lost}");
        }
        if summary.lost > 0 || summary.established < CONNS {
            bail!(
                "{} of {CONNS} connections lost ({} established)",
                summary.lost,
                summary.established
            );
        }
        Ok(())
    }

    /// The end of `up --mode ecmp`: how to step in.
    pub(super) fn ecmp_hints(&self) {
        let exe = self.host.exe_for_humans();
        let state = self
            .state
            .as_ref()
            .map_or_else(String::new, |s| s.path().display().to_string());
        let router = self.names.ns(Role::Router);
        let d1 = director_ns(&self.names, 1);
        let pid = self
            .ecmp
            .as_ref()
            .and_then(|e| e.director_procs.first())
            .and_then(|&i| self.started.get(i))
            .map_or(0, |s| s.record.pid);
        let prefix = if self.names.prefix() == Names::DEFAULT_PREFIX {
            String::new()
        } else {
            format!(" --prefix {}", self.names.prefix())
        };
        let hints = [
            (
                format!("ip -n {router} route show {VIP}"),
                "the multipath route, one nexthop per director",
            ),
            (
                format!("birdc -s {state}/router-bird.ctl show protocols"),
                "the router's BGP sessions",
            ),
            (
                format!("ip -n {d1} route show table {ANNOUNCE_TABLE}"),
                "what director1 announces",
            ),
            (
                format!("ip netns exec {d1} {exe} adm -L -n -c"),
                "director1's connections",
            ),
            (
                format!(
                    "ip netns exec {} {exe} lab clients --to {VIP}:80 --from 192.168.140.10,192.168.140.11 --duration 30",
                    self.names.ns(Role::Client)
                ),
                "hold 50 keep-alive connections and count what a failover costs",
            ),
            (
                format!("kill -9 {pid}"),
                "crash director1's tunlb director; the route shrinks",
            ),
            (format!("ls {state}"), "each process's log and BIRD's files"),
            (
                format!("{exe} lab down{prefix}"),
                "stop it all (BIRD too) and remove the namespaces",
            ),
        ];
        let width = hints.iter().map(|(cmd, _)| cmd.len()).max().unwrap_or(0);
        say!("[lab] the lab is up and stays up. Step in:");
        for (cmd, note) in hints {
            say!("  {cmd:<width$}   # {note}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nexthops_of_multipath_single_and_no_route() {
        let multi = "192.168.150.100 proto bird metric 32 \n\
                     \tnexthop via 192.168.150.12 dev lan weight 1 \n\
                     \tnexthop via 192.168.150.11 dev lan weight 1 \n";
        assert_eq!(nexthops(multi), [director_addr(1), director_addr(2)]);
        let single = "192.168.150.100 via 192.168.150.13 dev lan proto bird metric 32 \n";
        assert_eq!(nexthops(single), [director_addr(3)]);
        assert!(nexthops("").is_empty());
    }

    #[test]
    fn established_counts_only_the_vips_established_lines() {
        let listing = "IPVS connection entries\n\
            pro expire state       source             virtual            destination\n\
            TCP 14:59  ESTABLISHED 192.168.140.10:40000 192.168.150.100:80 192.168.160.12:80\n\
            TCP 01:59  FIN_WAIT    192.168.140.11:40001 192.168.150.100:80 192.168.160.13:80\n\
            TCP 14:59  ESTABLISHED 192.168.140.12:40002 192.168.150.100:80 192.168.160.13:80\n\
            TCP 14:59  ESTABLISHED 192.168.140.12:40003 192.168.150.101:80 192.168.160.13:80\n";
        assert_eq!(established(listing, VIP, 80), 2);
    }

    #[test]
    fn director_namespaces_are_recognised_by_prefix_and_number() {
        let names = Names::new("p").unwrap();
        assert_eq!(director_ns(&names, 3), "p-director3");
        assert!(is_director_ns(&names, "p-director3"));
        assert!(is_director_ns(&names, "p-director12"));
        for other in [
            "p-director",
            "p-directorx",
            "q-director1",
            "p-client",
            "p-director1a",
        ] {
            assert!(!is_director_ns(&names, other), "{other}");
        }
    }

    /// The lab acts only in its own namespaces, after creating them, and its interface names
    /// fit IFNAMSIZ with the longest prefix and the most directors.
    #[test]
    fn plan_acts_in_its_namespaces_with_short_interface_names() {
        let names = Names::new(&"x".repeat(Names::MAX_PREFIX)).unwrap();
        let mut created: Vec<String> = Vec::new();
        for step in plan(&names, MAX_DIRECTORS) {
            for action in &step.actions {
                if let Action::AddNamespace(ns) = action {
                    created.push(ns.clone());
                }
                assert!(created.iter().any(|c| c == action.ns()), "{action}");
                if let Action::Ip { args, .. } = action {
                    for pair in args.windows(2) {
                        if ["name", "dev", "master"].contains(&pair[0].as_str()) {
                            assert!(pair[1].len() <= 15, "{}", pair[1]);
                        }
                    }
                }
            }
        }
        assert_eq!(created.len(), 4 + MAX_DIRECTORS as usize);
        assert!(created.contains(&director_ns(&names, MAX_DIRECTORS)));
    }

    /// The shipped BIRD configs are the lab's: the director's peers with the router's LAN
    /// address and learns the announce table; the router accepts the directors' LAN, merges
    /// paths and runs BFD on the bridge the directors are plugged into.
    #[test]
    fn the_shipped_bird_configs_match_the_lab() {
        let d = BIRD_DIRECTOR_CONF;
        for want in [
            format!("    kernel table {ANNOUNCE_TABLE};"),
            "    learn;".to_owned(),
            format!("    neighbor {ROUTER_LAN} as 65000;"),
            "    bfd on;".to_owned(),
            "        export where proto = \"announce\";".to_owned(),
        ] {
            assert!(d.lines().any(|l| l == want), "{want:?} in\n{d}");
        }
        let r = BIRD_ROUTER_CONF;
        for want in [
            "    merge paths on;".to_owned(),
            format!("    local {ROUTER_LAN} as 65000;"),
            "    neighbor range 192.168.150.0/24 as 65001;".to_owned(),
            "    interface \"lan\" {".to_owned(),
            format!("        import where net ~ [ {VIP}/24{{32,32}} ];")
                .replace(".100/24", ".0/24"),
        ] {
            assert!(r.lines().any(|l| l == want), "{want:?} in\n{r}");
        }
    }
}
