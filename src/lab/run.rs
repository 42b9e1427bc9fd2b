//! The `tunlb lab` subcommands: `up`, `down`, `demo` and `get`.
//!
//! `up` goes step by step and prints each step as `[lab] ...` before doing it:
//!
//! 1. checks: `--encap` only with `--mode tun`, we are root, `ip` is installed, no lab with this
//!    prefix exists; then creates the state folder (the lab's lock) — nothing else is created
//!    before;
//! 2. builds the network of [`topology::plan`] for the mode;
//! 3. starts `tunlb director --announce eth0` in the director and waits for its control socket;
//!    on each real server starts `tunlb realserver` (TUN: `--encap`, DR: `--mode dr`; NAT needs
//!    no agent), waiting for the hidden VIP on `lo`, and then `tunlb httpd` (on VIP:80, in NAT
//!    mode on RIP:8080), waiting for its banner;
//! 4. configures the director with `tunlb adm` (`-i`, `-g` or `-m`), printing each command as
//!    `$ tunlb adm ...`;
//! 5. sends the requests from the client (curl, else `tunlb lab get`) and prints who answered,
//!    then `adm -L -n` and `adm -L -n -c`, then how to step in.
//!
//! A failed step, or SIGINT / SIGTERM / SIGHUP at any point, prints what went wrong and the last
//! lines of each process's log, then takes down everything created so far (as `lab down` does)
//! and exits non-zero. `down` reads the state folder: it stops the recorded processes (SIGTERM,
//! then SIGKILL after 5 s), deletes the namespaces, removes the folder.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::process::{Child, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use super::host::{self, Host};
use super::process::{self, Stopped};
use super::state::{ProcRecord, StateDir};
use super::topology::{self, Action, Names, Role, LAN_IF, PORT, REAL_SERVERS, VIP, VIP6};
use super::{clients, ecmp, get, ha, LabArgs, LabCommand, Mode, UpArgs};
use crate::sys::signal::{self, Signal};

/// How long a daemon may take to come up.
pub(super) const STARTUP: Duration = Duration::from_secs(15);

/// How long a process may take to exit after SIGTERM before it gets SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(50);

/// How long one of the shown requests may take.
pub(super) const REQUEST_TIME: &str = "5";

/// Lines of each log printed when a step fails.
const LOG_TAIL: usize = 15;

/// Prints one line to stdout, flushed at once; a closed stdout (`lab demo | head`) must not
/// stop the lab from cleaning up, so write errors are ignored.
macro_rules! say {
    ($($arg:tt)*) => {
        say_line(format_args!($($arg)*))
    };
}

pub(super) fn say_line(line: fmt::Arguments) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs `tunlb lab <subcommand>`.
pub fn run(args: LabArgs) -> anyhow::Result<()> {
    match args.command {
        LabCommand::Up(up_args) => up(&up_args),
        LabCommand::Down(down_args) => down(&down_args.prefix.prefix),
        LabCommand::Demo(up_args) => demo(&up_args),
        LabCommand::Get(get_args) => get::run(get_args),
        LabCommand::Clients(clients_args) => super::clients::run(clients_args),
        LabCommand::Synflood(flood_args) => super::synflood::run(flood_args),
    }
}

/// `tunlb lab up`: build, start, configure, show; leave it running.
pub fn up(args: &UpArgs) -> anyhow::Result<()> {
    let mut lab = Lab::prepare(args)?;
    match lab.build(args).and_then(|()| lab.show(args)) {
        Ok(()) => {
            lab.step_in_hints();
            lab.armed = false;
            Ok(())
        }
        Err(e) => Err(lab.fail(e)),
    }
}

/// `tunlb lab demo`: `up`, then `down`; Ok when both real servers answered.
pub fn demo(args: &UpArgs) -> anyhow::Result<()> {
    let mut lab = Lab::prepare(args)?;
    let shown = lab.build(args).and_then(|()| lab.show(args));
    let shown = match (shown, args.ha, args.mode) {
        (Ok(()), true, _) => lab.failover_demo(),
        (Ok(()), _, Mode::Ecmp) => lab.ecmp_demo(),
        (other, _, _) => other,
    };
    match shown {
        Ok(()) => {
            let ns = lab.names.ns(Role::Client);
            say!(
                "[lab] `tunlb lab up` builds the same lab and leaves it running, to step in \
                 with `ip netns exec {ns} curl http://{VIP}/`; taking this one down"
            );
            lab.take_down()
                .context("the demo worked, but taking the lab down failed")
        }
        Err(e) => Err(lab.fail(e)),
    }
}

/// `tunlb lab down`: stop the processes, delete the namespaces and the state folder of the lab
/// with `prefix`. Nothing to take down is not an error.
pub fn down(prefix: &str) -> anyhow::Result<()> {
    let names = Names::new(prefix)?;
    let host = Host::probe()?;
    let state = StateDir::open(prefix);
    let existing = existing_namespaces(&host, &names)?;
    if state.is_none() && existing.is_empty() {
        say!("[lab] no lab with prefix {prefix} is up: nothing to take down");
        return Ok(());
    }
    take_down(&host, &names, state, || {})
}

/// A SIGINT, SIGTERM or SIGHUP arrived while the lab was being built or shown.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {0}")]
struct Interrupted(Signal);

/// Fails with [`Interrupted`] if a signal is pending.
pub(super) fn check_signal() -> anyhow::Result<()> {
    match signal::pending() {
        Some(sig) => Err(Interrupted(sig).into()),
        None => Ok(()),
    }
}

/// ` --prefix P` when `P` is not the default, for commands printed to the user.
fn prefix_flag(names: &Names) -> String {
    if names.prefix() == Names::DEFAULT_PREFIX {
        String::new()
    } else {
        format!(" --prefix {}", names.prefix())
    }
}

/// The lab's namespaces that exist now (an ECMP lab's directors included).
fn existing_namespaces(host: &Host, names: &Names) -> anyhow::Result<Vec<String>> {
    let listed = host.namespaces()?;
    let mut existing: Vec<String> = names
        .all()
        .into_iter()
        .filter(|ns| listed.contains(ns))
        .collect();
    existing.extend(
        listed
            .into_iter()
            .filter(|ns| ecmp::is_director_ns(names, ns)),
    );
    Ok(existing)
}

/// A process the lab started in this invocation.
pub(super) struct Started {
    pub(super) record: ProcRecord,
    /// Log file name (without `.log`) in the state folder.
    pub(super) log: String,
    pub(super) child: Child,
}

/// A lab being built by this invocation. Until it is disarmed, dropping it takes it down
/// (the backstop for a panic; errors and signals take the explicit path, [`Lab::fail`]).
pub(super) struct Lab {
    /// How the director forwards, and so where the real servers live.
    pub(super) mode: Mode,
    pub(super) host: Host,
    pub(super) names: Names,
    pub(super) state: Option<StateDir>,
    pub(super) started: Vec<Started>,
    /// How the shown requests are made: `curl` or `tunlb lab get`.
    pub(super) requests_with_curl: bool,
    /// Two directors with VRRP (`--ha`): the director MASTER, the backup node BACKUP.
    ha: bool,
    /// Index in `started` of each director process (`--ha`: the director's, the backup's).
    directors: Vec<(Role, usize)>,
    /// `--mode ecmp`: the directors (`--directors`) and where BIRD is.
    pub(super) ecmp: Option<ecmp::EcmpLab>,
    /// `--ipv6`: dual-stack, with the IPv6 VIP [`VIP6`] beside [`VIP`].
    ipv6: bool,
    armed: bool,
}

impl Lab {
    /// The checks that come before anything is created, then the state folder (the lock).
    fn prepare(args: &UpArgs) -> anyhow::Result<Lab> {
        if args.ipv6 && args.ha {
            bail!("--ipv6 is not available with --ha yet: use --ipv6 without --ha");
        }
        if args.ipv6 && args.mode == Mode::Ecmp {
            bail!("--ipv6 is not available with --mode ecmp yet: use --mode tun, dr or nat");
        }
        if let (Some(encap), Mode::Dr | Mode::Nat) = (args.encap, args.mode) {
            bail!(
                "--encap {encap} is for --mode tun: in {} mode the director sends no tunnel",
                args.mode.as_str().to_uppercase()
            );
        }
        if args.ha && args.mode != Mode::Tun {
            bail!(
                "--ha is for --mode tun: the two directors share the LAN, the real servers are \
                 in the other datacenter"
            );
        }
        if args.directors.is_some() && args.mode != Mode::Ecmp {
            bail!("--directors is for --mode ecmp");
        }
        let ecmp = (args.mode == Mode::Ecmp)
            .then(|| ecmp::EcmpLab::prepare(args))
            .transpose()?;
        let names = Names::new(&args.prefix.prefix)?;
        let host = Host::probe()?;
        let already = |detail: String| {
            anyhow!(
                "a lab with prefix {} is already up ({detail}); take it down first: \
                 {} lab down{}",
                names.prefix(),
                host.exe_for_humans(),
                prefix_flag(&names)
            )
        };
        let existing = existing_namespaces(&host, &names)?;
        if !existing.is_empty() {
            return Err(already(format!("namespaces {}", existing.join(", "))));
        }
        let path = StateDir::path_for(names.prefix());
        let state = StateDir::create(names.prefix())
            .with_context(|| format!("creating {}", path.display()))?
            .ok_or_else(|| already(format!("{} exists", path.display())))?;
        let lab = Lab {
            mode: args.mode,
            host,
            names,
            state: Some(state),
            started: Vec::new(),
            requests_with_curl: false,
            ha: args.ha,
            directors: Vec::new(),
            ecmp,
            ipv6: args.ipv6,
            armed: true,
        };
        signal::install().context("installing signal handlers")?;
        let what = match args.mode {
            Mode::Tun => format!("TUN mode, {} tunnels", args.encap()),
            Mode::Dr => "DR mode, the seed's own layout: everyone on one LAN".to_owned(),
            Mode::Nat => format!(
                "NAT mode: the real servers on a private LAN behind the director, port {PORT} \
                 mapped to {}",
                topology::NAT_PORT
            ),
            Mode::Ecmp => format!(
                "ECMP: {} directors behind the router's multipath route to {VIP}, announced \
                 over BGP by BIRD; TUN mode (ipip) to the real servers",
                args.directors.unwrap_or(ecmp::DEFAULT_DIRECTORS)
            ),
        };
        let what = if args.ha {
            format!(
                "{what}; two directors: {} MASTER and {} BACKUP (VRRP, connection sync)",
                topology::addr(args.mode, Role::Director),
                topology::addr(args.mode, Role::Backup)
            )
        } else {
            what
        };
        let what = if args.ipv6 {
            format!(
                "{what}; dual-stack: the IPv6 VIP {VIP6} too, over IPv6 addresses in \
                 2001:db8::/32"
            )
        } else {
            what
        };
        say!("[lab] {what}; state and logs in {}", path.display());
        Ok(lab)
    }

    /// The address of `role` in this lab's mode.
    fn addr(&self, role: Role) -> Ipv4Addr {
        topology::addr(self.mode, role)
    }

    /// The IPv6 address of `role` in this lab's mode (`--ipv6`).
    fn addr6(&self, role: Role) -> std::net::Ipv6Addr {
        topology::addr6(self.mode, role)
    }

    pub(super) fn state(&self) -> anyhow::Result<&StateDir> {
        self.state
            .as_ref()
            .context("the lab's state folder is gone")
    }

    /// Steps 2 to 4: the network, the daemons, the service.
    fn build(&mut self, args: &UpArgs) -> anyhow::Result<()> {
        if self.mode == Mode::Ecmp {
            return self.build_ecmp(args);
        }
        self.apply_steps(topology::plan(&self.names, self.mode))?;
        if self.ipv6 {
            self.apply_steps(topology::plan_ipv6(&self.names, self.mode))?;
        }
        self.build_classic(args)
    }

    /// Carries out the network's steps, printing each; every namespace is recorded in the
    /// state folder before it is created.
    pub(super) fn apply_steps(&mut self, steps: Vec<topology::Step>) -> anyhow::Result<()> {
        for step in steps {
            check_signal()?;
            say!("[lab] {}", step.what);
            for action in &step.actions {
                if let Action::AddNamespace(ns) = action {
                    // Recorded first: a half-made namespace is deleted too.
                    self.state()?.record_namespace(ns)?;
                }
                self.host
                    .apply(action)
                    .with_context(|| format!("step failed: {}", step.what))?;
            }
        }
        Ok(())
    }

    /// The rest of step 2 to 4 in the classic modes.
    fn build_classic(&mut self, args: &UpArgs) -> anyhow::Result<()> {
        if self.ha {
            // The real servers first: the directors' HTTP_GET checks find them up.
            for role in REAL_SERVERS {
                self.start_real_server(role, args)?;
            }
            self.start_ha_directors(args)?;
            return self.configure(args);
        }
        self.start_director()?;
        for role in REAL_SERVERS {
            self.start_real_server(role, args)?;
        }
        let backup = self.names.ns(Role::Backup);
        say!(
            "[lab] {backup} ({}) is the spare node for a backup director: nothing runs \
             there yet",
            self.addr(Role::Backup)
        );
        self.configure(args)
    }

    /// `--ha`: writes the two keepalived.conf files into the state folder, starts
    /// `tunlb director --keepalived-conf FILE` in the director (waits until it is VRRP MASTER),
    /// then in the backup node (waits until it is BACKUP).
    fn start_ha_directors(&mut self, args: &UpArgs) -> anyhow::Result<()> {
        for (role, master) in [(Role::Director, true), (Role::Backup, false)] {
            let ns = self.names.ns(role);
            let conf = ha::KeepalivedConf {
                service: Some(ha::ServiceConf {
                    port: PORT,
                    algo: args.scheduler.clone(),
                    kind: "TUN".to_owned(),
                    real_servers: REAL_SERVERS.iter().map(|&r| self.addr(r)).collect(),
                    checks: true,
                }),
                ..ha::KeepalivedConf::seed(master, VIP)
            };
            let path = self.state()?.path().join(format!("{role}-keepalived.conf"));
            fs::write(&path, conf.render())
                .with_context(|| format!("writing {}", path.display()))?;
            let path_str = path.display().to_string();
            say!(
                "[lab] {ns} ({}): {path_str}: vrrp_instance VI_1 state {}, priority {}, VIP \
                 {VIP}, lvs_sync_daemon eth0 VI_1, virtual_server {VIP} {PORT} lb_kind TUN",
                self.addr(role),
                if master { "MASTER" } else { "BACKUP" },
                conf.priority
            );
            let i = self.start_ha_director(role, &path_str, "director")?;
            self.directors.push((role, i));
            let want = if master { "MASTER" } else { "BACKUP" };
            self.wait_vrrp(i, role, want)?;
            say!("[lab] {ns} is VRRP {want}");
        }
        Ok(())
    }

    /// Starts `tunlb director --keepalived-conf PATH` in `role`'s namespace and waits for its
    /// control socket; `log` names its log file. Returns its index in `started`.
    fn start_ha_director(&mut self, role: Role, path: &str, log: &str) -> anyhow::Result<usize> {
        let ns = self.names.ns(role);
        let args = ["director", "--keepalived-conf", path];
        say!("[lab] starting `tunlb {}` in {ns}", args.join(" "));
        let log = format!("{role}-{log}");
        let i = self.spawn(role, &log, "tunlb director", &args)?;
        self.wait_until(
            i,
            &format!("the director's control socket in {ns}"),
            |host| {
                host.tunlb(&ns, &["adm", "-L", "-n"])
                    .is_ok_and(|out| out.status.success())
            },
        )?;
        Ok(i)
    }

    /// The VRRP state of VI_1 in `role`'s director (`tunlb adm --vrrp --json`).
    fn vrrp_state(host: &Host, ns: &str) -> Option<String> {
        let out = host.tunlb(ns, &["adm", "--vrrp", "--json"]).ok()?;
        if !out.status.success() {
            return None;
        }
        ha::vrrp_state(&String::from_utf8_lossy(&out.stdout), "VI_1")
    }

    /// Waits until `role`'s director (process `watch`) is VRRP `want`.
    fn wait_vrrp(&mut self, watch: usize, role: Role, want: &str) -> anyhow::Result<()> {
        let ns = self.names.ns(role);
        self.wait_until(watch, &format!("{ns} to be VRRP {want}"), |host| {
            Self::vrrp_state(host, &ns).as_deref() == Some(want)
        })
    }

    /// The MAC address of `eth0` in `role`'s namespace.
    fn mac(&self, role: Role) -> anyhow::Result<String> {
        let ns = self.names.ns(role);
        let mut cmd = std::process::Command::new(self.host.ip());
        cmd.args(["-n", &ns, "-o", "link", "show", "dev", LAN_IF]);
        let out = host::check_stdout("ip link show", host::output(&mut cmd, "ip link show")?)?;
        let mut words = out.split_whitespace();
        words
            .find(|w| *w == "link/ether")
            .and_then(|_| words.next())
            .map(str::to_owned)
            .with_context(|| format!("no MAC address on {LAN_IF} in {ns}"))
    }

    /// The MAC the client's neighbour entry for the VIP holds now.
    fn client_neigh(host: &Host, ns: &str) -> Option<String> {
        let mut cmd = std::process::Command::new(host.ip());
        let vip = VIP.to_string();
        cmd.args(["-n", ns, "neigh", "show", &vip, "dev", LAN_IF]);
        let out =
            host::check_stdout("ip neigh show", host::output(&mut cmd, "ip neigh").ok()?).ok()?;
        let mut words = out.split_whitespace();
        words.find(|w| *w == "lladdr")?;
        words.next().map(str::to_owned)
    }

    /// `demo --ha`: 50 keep-alive connections, SIGKILL the MASTER, watch the BACKUP take over,
    /// restart the old MASTER, watch it take the VIP back, print the timeline and what the
    /// clients lost. Fails if a connection was lost.
    fn failover_demo(&mut self) -> anyhow::Result<()> {
        const CONNS: u32 = 50;
        let client = self.names.ns(Role::Client);
        let (director, backup) = (self.names.ns(Role::Director), self.names.ns(Role::Backup));
        let (dir_addr, backup_addr) = (self.addr(Role::Director), self.addr(Role::Backup));
        let (dir_mac, backup_mac) = (self.mac(Role::Director)?, self.mac(Role::Backup)?);
        let to = format!("{VIP}:{PORT}");
        let conns = CONNS.to_string();
        let args = [
            "lab",
            "clients",
            "--to",
            &to,
            "--conns",
            &conns,
            "--status-every",
            "0",
        ];
        say!(
            "[lab] the failover (seed §7.1, §7.2): starting `tunlb {}` in {client}: \
            {CONNS} keep-alive connections, each a request every 100 ms, and a new \
            connection every 50 ms",
            args.join(" ")
        );
        let clients = self.spawn(Role::Client, "clients", "tunlb lab clients", &args)?;
        let clients_log = self.state()?.log_path("clients");
        let ready = format!("all {CONNS} connections established");
        self.wait_until(clients, "the client's keep-alive connections", |_| {
            fs::read_to_string(&clients_log).is_ok_and(|l| l.contains(&ready))
        })?;
        // Let the sync carry the connections to the backup.
        thread::sleep(Duration::from_secs(1));
        let mut timeline = ha::Timeline::new();
        let start_unix_ms = unix_ms();
        let master = self
            .directors
            .iter()
            .find(|(r, _)| *r == Role::Director)
            .map(|&(_, i)| i)
            .context("the master director was not started")?;
        let backup_i = self
            .directors
            .iter()
            .find(|(r, _)| *r == Role::Backup)
            .map(|&(_, i)| i)
            .context("the backup director was not started")?;
        say!(
            "[lab] {}",
            timeline.event(format!(
                "{CONNS} connections up; SIGKILL to the MASTER director in {director} \
                ({dir_addr}): no goodbye advert, its ARP answers die with it"
            ))
        );
        {
            let child = &mut self.started[master].child;
            child.kill().context("killing the master director")?;
            let _ = child.wait();
        }
        self.wait_vrrp(backup_i, Role::Backup, "MASTER")?;
        say!(
            "[lab] {}",
            timeline.event(format!(
                "{backup} ({backup_addr}) is MASTER: it stopped hearing adverts for 3 × \
                advert_int + skew, took the VIP and sent gratuitous ARPs"
            ))
        );
        let neigh = |want: &str| {
            let want = want.to_owned();
            let client = client.clone();
            move |host: &Host| Self::client_neigh(host, &client).as_deref() == Some(&want)
        };
        self.wait_until(
            backup_i,
            "the client's neighbour entry to move",
            neigh(&backup_mac),
        )?;
        say!(
            "[lab] {}",
            timeline.event(format!(
                "the client's ARP entry for {VIP} now holds {backup_mac}, the backup's MAC"
            ))
        );
        let answer = self.one_request(&client);
        say!(
            "[lab] {}",
            timeline.event(format!(
                "a new request answered through the backup: {answer}"
            ))
        );
        thread::sleep(Duration::from_secs(2));
        say!(
            "[lab] {}",
            timeline.event(format!("restarting the old MASTER in {director}"))
        );
        let conf = self.state()?.path().join("director-keepalived.conf");
        let restarted =
            self.start_ha_director(Role::Director, &conf.display().to_string(), "restarted")?;
        self.wait_vrrp(restarted, Role::Director, "MASTER")?;
        say!(
            "[lab] {}",
            timeline.event(format!(
                "{director} is MASTER again: bulk resync from the backup done, priority 100 > \
                50, it preempted"
            ))
        );
        self.wait_vrrp(backup_i, Role::Backup, "BACKUP")?;
        self.wait_until(
            restarted,
            "the client's neighbour entry to come back",
            neigh(&dir_mac),
        )?;
        say!(
            "[lab] {}",
            timeline.event(format!(
                "{backup} is BACKUP; the client's ARP entry holds {dir_mac} again"
            ))
        );
        thread::sleep(Duration::from_secs(2));
        let summary = self.stop_clients(clients)?;
        timeline.outages(&summary, start_unix_ms, 1);
        timeline.event(format!(
            "clients stopped: {} requests answered; the slowest answer took {:.1} s{}",
            summary.requests,
            summary.max_request_ms as f64 / 1000.0,
            if summary.lost == 0 {
                " (TCP retransmitting across the takeover)"
            } else {
                ""
            }
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
        if summary.lost_detail.len() > 5 {
            say!("[lab]   ... and {} more", summary.lost_detail.len() - 5);
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

    /// One request from the client; its body, or what went wrong.
    pub(super) fn one_request(&self, client: &str) -> String {
        let url = format!("http://{VIP}/");
        match self
            .host
            .tunlb(client, &["lab", "get", "--max-time", REQUEST_TIME, &url])
        {
            Ok(out) if out.status.success() => {
                String::from_utf8_lossy(&out.stdout).trim().to_owned()
            }
            Ok(out) => format!("failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
            Err(e) => format!("failed: {e}"),
        }
    }

    /// SIGTERM to `tunlb lab clients` (process `i`), waits for it and reads its summary.
    pub(super) fn stop_clients(&mut self, i: usize) -> anyhow::Result<clients::Summary> {
        let pid = self.started[i].record.pid;
        process::send_signal(pid, "TERM").context("stopping tunlb lab clients")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = self.started[i].child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                bail!("tunlb lab clients did not stop within 30 s of SIGTERM");
            }
            thread::sleep(POLL);
        }
        let log = self.state()?.log_path(&self.started[i].log);
        let text =
            fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
        clients::Summary::from_output(&text)
    }

    /// Starts `tunlb director --announce eth0` and waits for its control socket.
    fn start_director(&mut self) -> anyhow::Result<()> {
        let ns = self.names.ns(Role::Director);
        let args = ["director", "--announce", LAN_IF];
        say!(
            "[lab] starting `tunlb {}` in {ns}: VIP {VIP} routed into its TUN device and \
             answered for on the LAN (ARP from its own socket on {LAN_IF})",
            args.join(" ")
        );
        let i = self.spawn(Role::Director, "director", "tunlb director", &args)?;
        self.wait_until(
            i,
            &format!("the director's control socket in {ns}"),
            |host| {
                host.tunlb(&ns, &["adm", "-L", "-n"])
                    .is_ok_and(|out| out.status.success())
            },
        )
    }

    /// Starts the agent (TUN and DR mode) and the httpd of one real server, each once the one
    /// before is ready.
    pub(super) fn start_real_server(&mut self, role: Role, args: &UpArgs) -> anyhow::Result<()> {
        let ns = self.names.ns(role);
        let rip = self.addr(role);
        let vip = VIP.to_string();
        let encap = args.encap().to_string();
        let allow = format!("{}/32", self.addr(Role::Director));
        let allow_backup = format!("{}/32", self.addr(Role::Backup));
        let allow_lan = ecmp::DIRECTORS_LAN.to_string();
        let (agent, what): (Vec<&str>, _) = match self.mode {
            Mode::Ecmp => (
                vec![
                    "realserver",
                    "--vip",
                    &vip,
                    "--encap",
                    "ipip",
                    "--allow",
                    &allow_lan,
                ],
                "VIP hidden on lo, tunnels from every director on the LAN unwrapped",
            ),
            Mode::Tun if self.ha => (
                vec![
                    "realserver",
                    "--vip",
                    &vip,
                    "--encap",
                    &encap,
                    "--allow",
                    &allow,
                    "--allow",
                    &allow_backup,
                ],
                "VIP hidden on lo, tunnels from either director unwrapped",
            ),
            Mode::Tun => (
                vec![
                    "realserver",
                    "--vip",
                    &vip,
                    "--encap",
                    &encap,
                    "--allow",
                    &allow,
                ],
                "VIP hidden on lo, tunnels from the director unwrapped",
            ),
            Mode::Dr => (
                vec!["realserver", "--vip", &vip, "--mode", "dr"],
                "VIP hidden on lo, ARP for it ignored on eth0 (arp_ignore 1, arp_announce 2): \
                 the frames the director sends to this MAC reach the httpd",
            ),
            Mode::Nat => (Vec::new(), ""),
        };
        let mut agent = agent;
        let vip6 = VIP6.to_string();
        let allow6 = format!("{}/128", self.addr6(Role::Director));
        if self.ipv6 && !agent.is_empty() {
            // One agent for both families: both VIPs hidden on lo, and in TUN mode tunnels
            // from the director's IPv6 address too (ip6ip6, GRE or GUE over IPv6).
            agent.extend(["--vip", &vip6]);
            if self.mode == Mode::Tun {
                agent.extend(["--allow", &allow6]);
            }
        }
        if agent.is_empty() {
            say!(
                "[lab] no agent in {ns} ({rip}) in NAT mode: the director rewrites the \
                 addresses both ways, and {ns}'s default route is the director ({})",
                topology::Segment::Private.gateway()
            );
        } else {
            say!(
                "[lab] starting `tunlb {}` in {ns} ({rip}): {what}",
                agent.join(" ")
            );
            let i = self.spawn(role, &format!("{role}-agent"), "tunlb realserver", &agent)?;
            let on_lo = format!("inet {VIP}/32 ");
            self.wait_until(
                i,
                &format!("the agent to put {VIP}/32 on lo in {ns}"),
                |host| {
                    let mut cmd = std::process::Command::new(host.ip());
                    cmd.args(["-n", &ns, "-4", "-o", "addr", "show", "dev", "lo"]);
                    host::output(&mut cmd, "ip addr show dev lo")
                        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(&on_lo))
                },
            )?;
            if self.ipv6 {
                let on_lo6 = format!("inet6 {VIP6}/128 ");
                self.wait_until(
                    i,
                    &format!("the agent to put {VIP6}/128 on lo in {ns}"),
                    |host| {
                        let mut cmd = std::process::Command::new(host.ip());
                        cmd.args(["-n", &ns, "-6", "-o", "addr", "show", "dev", "lo"]);
                        host::output(&mut cmd, "ip addr show dev lo")
                            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(&on_lo6))
                    },
                )?;
            }
        }
        let listen = match self.mode {
            Mode::Tun | Mode::Dr | Mode::Ecmp => format!("{VIP}:{PORT}"),
            Mode::Nat => format!("{rip}:{}", topology::NAT_PORT),
        };
        let banner = format!("from {rip}");
        let rip_listen = format!("{rip}:{PORT}");
        let mut httpd = vec!["httpd", "--listen", &listen, "--banner", &banner];
        if self.ha {
            // What the keepalived.conf's HTTP_GET checks probe.
            httpd.extend(["--listen", &rip_listen]);
        }
        let extra = if self.ha {
            format!(" --listen {rip_listen}")
        } else {
            String::new()
        };
        say!("[lab] starting `tunlb httpd --listen {listen} --banner \"{banner}\"{extra}` in {ns}");
        let i = self.spawn(role, &format!("{role}-httpd"), "tunlb httpd", &httpd)?;
        let url = format!("http://{listen}/");
        self.wait_until(i, &format!("httpd on {listen} in {ns}"), |host| {
            host.tunlb(&ns, &["lab", "get", "--max-time", "1", &url])
                .is_ok_and(|out| out.status.success())
        })?;
        if self.ipv6 {
            self.start_httpd6(role)?;
        }
        Ok(())
    }

    /// `--ipv6`: a second httpd on the real server, on the IPv6 VIP (NAT mode: its IPv6
    /// address, port 8080), its banner naming its IPv6 address.
    fn start_httpd6(&mut self, role: Role) -> anyhow::Result<()> {
        let ns = self.names.ns(role);
        let rip6 = self.addr6(role);
        let listen = match self.mode {
            Mode::Nat => format!("[{rip6}]:{}", topology::NAT_PORT),
            Mode::Tun | Mode::Dr | Mode::Ecmp => format!("[{VIP6}]:{PORT}"),
        };
        let banner = format!("from {rip6}");
        say!("[lab] starting `tunlb httpd --listen {listen} --banner \"{banner}\"` in {ns}");
        let httpd = ["httpd", "--listen", &listen, "--banner", &banner];
        let i = self.spawn(role, &format!("{role}-httpd6"), "tunlb httpd", &httpd)?;
        let url = format!("http://{listen}/");
        self.wait_until(i, &format!("httpd on {listen} in {ns}"), |host| {
            host.tunlb(&ns, &["lab", "get", "--max-time", "1", &url])
                .is_ok_and(|out| out.status.success())
        })
    }

    /// Step 4: the service, with `tunlb adm` commands printed as they run.
    fn configure(&mut self, args: &UpArgs) -> anyhow::Result<()> {
        let ns = self.names.ns(Role::Director);
        if self.ha {
            say!(
                "[lab] no `tunlb adm` needed: each director took the virtual_server from its \
                 keepalived.conf"
            );
            return Ok(());
        }
        say!("[lab] configuring the director in {ns} with ipvsadm's syntax:");
        let service = format!("{VIP}:{PORT}");
        self.adm(&["-A", "-t", &service, "-s", &args.scheduler])?;
        let encap = args.encap().to_string();
        for role in REAL_SERVERS {
            let rip = self.addr(role);
            // ipvsadm's syntax, as the seed writes it: `-r RIP -g -w 1`.
            let (dest, how) = match self.mode {
                Mode::Tun | Mode::Ecmp => (rip.to_string(), "-i"),
                Mode::Dr => (rip.to_string(), "-g"),
                Mode::Nat => (format!("{rip}:{}", topology::NAT_PORT), "-m"),
            };
            let add = ["-a", "-t", &service, "-r", &dest, how, "-w", "1"];
            match self.mode {
                Mode::Tun | Mode::Ecmp => {
                    self.adm(&[&add[..], &["--tun-type", &encap]].concat())?
                }
                Mode::Dr | Mode::Nat => self.adm(&add)?,
            }
        }
        if self.ipv6 {
            self.configure6(args)?;
        }
        Ok(())
    }

    /// `--ipv6`: the IPv6 service, the same mode and scheduler, in ipvsadm's bracketed syntax.
    fn configure6(&mut self, args: &UpArgs) -> anyhow::Result<()> {
        let service = format!("[{VIP6}]:{PORT}");
        self.adm(&["-A", "-t", &service, "-s", &args.scheduler])?;
        let encap = args.encap().to_string();
        for role in REAL_SERVERS {
            let rip6 = self.addr6(role);
            let (dest, how) = match self.mode {
                Mode::Tun | Mode::Ecmp => (format!("[{rip6}]"), "-i"),
                Mode::Dr => (format!("[{rip6}]"), "-g"),
                Mode::Nat => (format!("[{rip6}]:{}", topology::NAT_PORT), "-m"),
            };
            let add = ["-a", "-t", &service, "-r", &dest, how, "-w", "1"];
            match self.mode {
                Mode::Tun | Mode::Ecmp => {
                    self.adm(&[&add[..], &["--tun-type", &encap]].concat())?
                }
                Mode::Dr | Mode::Nat => self.adm(&add)?,
            }
        }
        Ok(())
    }

    /// Prints `$ tunlb adm ARGS`, runs it in the director, prints what it wrote.
    fn adm(&self, args: &[&str]) -> anyhow::Result<()> {
        self.adm_in(&self.names.ns(Role::Director), args)
    }

    /// Prints `$ tunlb adm ARGS` (after `ns:` when not the classic director), runs it in
    /// `ns`, prints what it wrote.
    pub(super) fn adm_in(&self, ns: &str, args: &[&str]) -> anyhow::Result<()> {
        check_signal()?;
        if self.mode == Mode::Ecmp {
            say!("{ns}$ tunlb adm {}", args.join(" "));
        } else {
            say!("$ tunlb adm {}", args.join(" "));
        }
        let out = self.host.tunlb(ns, &[&["adm"], args].concat())?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !stdout.is_empty() {
            say!("{}", stdout.trim_end());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!("`tunlb adm {}` failed: {}", args.join(" "), stderr.trim());
        }
        if !stderr.is_empty() {
            say!("{}", stderr.trim_end());
        }
        Ok(())
    }

    /// Step 5: requests, tables; fails unless both real servers answered.
    fn show(&mut self, args: &UpArgs) -> anyhow::Result<()> {
        if self.mode == Mode::Ecmp {
            return self.show_ecmp(args);
        }
        let client = self.names.ns(Role::Client);
        let url = format!("http://{VIP}/");
        self.requests_with_curl = self.host.curl().is_some();
        let tool = if self.requests_with_curl {
            "curl"
        } else {
            say!(
                "[lab] curl is not installed (apt-get install curl): the requests use \
                 `tunlb lab get` instead"
            );
            "tunlb lab get"
        };
        say!(
            "[lab] {} requests from {client} ({}) with {tool}, each a new connection, to {url}:",
            args.requests,
            self.addr(Role::Client)
        );
        let answers = self.request_round(&client, &url, args.requests, |_| None)?;
        say!("[lab] {}", self.path_of_answers());
        let mut answers6 = BTreeMap::new();
        if self.ipv6 {
            let url6 = format!("http://[{VIP6}]/");
            say!(
                "[lab] {} requests from {client} ({}) with {tool}, each a new connection, to \
                 {url6}:",
                args.requests,
                self.addr6(Role::Client)
            );
            answers6 = self.request_round(&client, &url6, args.requests, |_| None)?;
        }
        self.adm(&["-L", "-n"])?;
        self.adm(&["-L", "-n", "-c"])?;
        let mut missing: Vec<String> = REAL_SERVERS
            .iter()
            .map(|&r| format!("from {}", self.addr(r)))
            .filter(|banner| !answers.contains_key(banner))
            .collect();
        if self.ipv6 {
            missing.extend(
                REAL_SERVERS
                    .iter()
                    .map(|&r| format!("from {}", self.addr6(r)))
                    .filter(|banner| !answers6.contains_key(banner))
                    .map(|banner| format!("{banner} over IPv6")),
            );
        }
        if !missing.is_empty() {
            bail!("no answer {}", missing.join(" and no answer "));
        }
        Ok(())
    }

    /// `count` requests from the namespace `client` to `url`, each a new connection (curl
    /// when installed, from the address `from(i)` gives request `i` if any; else `tunlb lab
    /// get`): prints each answer and the tally, returns how often each answer came.
    pub(super) fn request_round(
        &self,
        client: &str,
        url: &str,
        count: u32,
        from: impl Fn(u32) -> Option<String>,
    ) -> anyhow::Result<BTreeMap<String, u32>> {
        let mut answers: BTreeMap<String, u32> = BTreeMap::new();
        for i in 1..=count {
            check_signal()?;
            let out = match self.host.curl() {
                Some(curl) => {
                    let mut cmd = self.host.in_ns(client, curl);
                    cmd.args(["-sS", "--max-time", REQUEST_TIME]);
                    if url.contains('[') {
                        // An IPv6 literal: no globbing of its brackets.
                        cmd.arg("-g");
                    }
                    if let Some(addr) = from(i) {
                        cmd.args(["--interface", &addr]);
                    }
                    cmd.arg(url);
                    host::output(&mut cmd, "curl")?
                }
                None => self
                    .host
                    .tunlb(client, &["lab", "get", "--max-time", REQUEST_TIME, url])?,
            };
            let body = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() {
                say!("{i:>2}: {body}");
                *answers.entry(body).or_default() += 1;
            } else {
                let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
                say!("{i:>2}: no answer ({err})");
            }
        }
        let tally: Vec<String> = answers.iter().map(|(a, n)| format!("{n} {a}")).collect();
        say!("[lab] answers: {}", tally.join(", "));
        Ok(answers)
    }

    /// How the answers went back to the client, in this mode.
    fn path_of_answers(&self) -> String {
        match self.mode {
            Mode::Tun | Mode::Ecmp => {
                "the answers left each real server from the VIP straight to the client, \
                          through the router: the director only saw the client's half of each \
                          connection"
                    .to_owned()
            }
            Mode::Dr => "the director passed each request unchanged in a frame to a real \
                         server's MAC; the answers left the real servers from the VIP straight to \
                         the client on the LAN: the director only saw the client's half of each \
                         connection"
                .to_owned(),
            Mode::Nat => format!(
                "both halves of each connection crossed the director: each request got \
                 RIP:{} as its destination, each answer VIP:{PORT} as its source (the real \
                 servers' default route is the director; its policy rules bring the answers \
                 into its TUN)",
                topology::NAT_PORT
            ),
        }
    }

    /// The end of `up`: how to step into the running lab and how to take it down.
    fn step_in_hints(&self) {
        if self.mode == Mode::Ecmp {
            return self.ecmp_hints();
        }
        let exe = self.host.exe_for_humans();
        let n = |role| self.names.ns(role);
        let logs = self
            .state
            .as_ref()
            .map_or_else(String::new, |s| s.path().display().to_string());
        let mut hints = vec![(
            format!("ip netns exec {} curl http://{VIP}/", n(Role::Client)),
            "a request, as a browser would send",
        )];
        if self.ipv6 {
            hints.push((
                format!("ip netns exec {} curl -g http://[{VIP6}]/", n(Role::Client)),
                "the same to the IPv6 VIP",
            ));
        }
        if !self.requests_with_curl {
            hints.push((
                format!(
                    "ip netns exec {} {exe} lab get http://{VIP}/",
                    n(Role::Client)
                ),
                "the same without curl",
            ));
        }
        hints.extend([
            (
                format!("ip netns exec {} {exe} adm -L -n -c", n(Role::Director)),
                "the director's connections",
            ),
            match self.mode {
                Mode::Tun | Mode::Dr | Mode::Ecmp => (
                    format!("ip -n {} addr show dev lo", n(Role::Rs1)),
                    "the hidden VIP on a real server",
                ),
                Mode::Nat => (
                    format!("ip -n {} rule show", n(Role::Director)),
                    "the rules that bring the answers into the director's TUN",
                ),
            },
            (format!("ls {logs}"), "each process's log"),
        ]);
        if self.ha {
            hints.extend([
                (
                    format!("ip netns exec {} {exe} adm --vrrp", n(Role::Backup)),
                    "each director's VRRP state (also in the director)",
                ),
                (
                    format!(
                        "ip netns exec {} {exe} lab clients --to {VIP}:{PORT} --duration 30",
                        n(Role::Client)
                    ),
                    "hold 50 keep-alive connections and count what a failover costs",
                ),
                (
                    format!("kill -9 $(ip netns pids {})", n(Role::Director)),
                    "crash the MASTER (seed §7.1); the backup takes over",
                ),
            ]);
        }
        hints.extend([(
            format!("{exe} lab down{}", prefix_flag(&self.names)),
            "stop it all and remove the namespaces",
        )]);
        let width = hints.iter().map(|(cmd, _)| cmd.len()).max().unwrap_or(0);
        say!("[lab] the lab is up and stays up. Step in:");
        for (cmd, note) in hints {
            say!("  {cmd:<width$}   # {note}");
        }
    }

    /// Starts `tunlb ARGS` detached in `role`'s namespace and records it; returns its index.
    pub(super) fn spawn(
        &mut self,
        role: Role,
        log: &str,
        label: &str,
        args: &[&str],
    ) -> anyhow::Result<usize> {
        let exe = self.host.exe().to_owned();
        self.spawn_in(&self.names.ns(role), &exe, log, label, args)
    }

    /// Starts `program ARGS` detached in namespace `ns` and records it; returns its index.
    pub(super) fn spawn_in(
        &mut self,
        ns: &str,
        program: &std::path::Path,
        log: &str,
        label: &str,
        args: &[&str],
    ) -> anyhow::Result<usize> {
        check_signal()?;
        let ns = ns.to_owned();
        let state = self.state()?;
        let file = state.create_log(log)?;
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let child = process::spawn_detached(self.host.ip(), &ns, program, &args, file)
            .with_context(|| format!("starting {label} in {ns}"))?;
        let pid = child.id();
        // The child is ours and not reaped yet, so its /proc entry is there.
        let start_time = process::Stat::read(pid).map_or(0, |s| s.start_time);
        let record = ProcRecord {
            pid,
            start_time,
            ns,
            label: label.to_owned(),
        };
        let recorded = state.record_process(&record);
        self.started.push(Started {
            record,
            log: log.to_owned(),
            child,
        });
        recorded?;
        Ok(self.started.len() - 1)
    }

    /// Polls `ready` until it holds; fails on a signal, when process `watch` exits, or after
    /// [`STARTUP`].
    pub(super) fn wait_until(
        &mut self,
        watch: usize,
        what: &str,
        mut ready: impl FnMut(&Host) -> bool,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            check_signal()?;
            if let Some(started) = self.started.get_mut(watch) {
                if let Ok(Some(status)) = started.child.try_wait() {
                    bail!(
                        "{} in {} exited early ({}) while waiting for {what}",
                        started.record.label,
                        started.record.ns,
                        describe(status)
                    );
                }
            }
            if ready(&self.host) {
                return Ok(());
            }
            if start.elapsed() > STARTUP {
                bail!("timed out after {} s waiting for {what}", STARTUP.as_secs());
            }
            thread::sleep(POLL);
        }
    }

    /// Reports a failed or interrupted `up`/`demo`, shows the logs, takes the lab down; returns
    /// the error for `main` to print.
    fn fail(mut self, error: anyhow::Error) -> anyhow::Error {
        let interrupted = error.downcast_ref::<Interrupted>().map(|i| i.0);
        // A Ctrl-C also kills the `ip` or curl running at that moment: blame the signal.
        let mut error = error;
        match interrupted.or_else(signal::pending) {
            Some(sig) => {
                say!("[lab] interrupted by {sig}: taking everything down");
                error = Interrupted(sig).into();
            }
            None => {
                say!("[lab] failed: {error:#}");
                self.print_logs();
                say!("[lab] taking everything down");
            }
        }
        let result = match self.take_down() {
            Ok(()) => "everything it created is removed".to_owned(),
            Err(e) => format!("and taking it down failed too: {e:#}; try `tunlb lab down`"),
        };
        error.context(format!("lab {} ({result})", self.names.prefix()))
    }

    /// The last lines of each started process's log.
    fn print_logs(&self) {
        let Some(state) = &self.state else { return };
        for started in &self.started {
            let path = state.log_path(&started.log);
            let text = fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            say!(
                "[lab] {} in {} ({}), last lines:",
                started.record.label,
                started.record.ns,
                path.display()
            );
            for line in tail {
                say!("    {line}");
            }
        }
    }

    /// Takes down what this invocation built, as `lab down` would, reaping our children.
    fn take_down(&mut self) -> anyhow::Result<()> {
        self.armed = false;
        let state = self.state.take();
        let started = &mut self.started;
        take_down(&self.host, &self.names, state, || {
            for s in started.iter_mut() {
                let _ = s.child.try_wait();
            }
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.take_down();
        }
    }
}

/// Milliseconds since the UNIX epoch (the origin of `tunlb lab clients`' times).
pub(super) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Words for an exit status.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// Stops the recorded processes (last started first), deletes the lab's namespaces (those
/// recorded and any other `<prefix>-<role>` that exists) and the state folder. Goes on after
/// an error and returns the first.
fn take_down(
    host: &Host,
    names: &Names,
    state: Option<StateDir>,
    mut reap: impl FnMut(),
) -> anyhow::Result<()> {
    let mut first_error: Option<anyhow::Error> = None;
    let mut keep = |e: anyhow::Error| {
        say!("[lab] error: {e:#}");
        first_error.get_or_insert(e);
    };
    let mut records = state.as_ref().map(StateDir::processes).unwrap_or_default();
    records.reverse();
    process::stop_all(&records, GRACE, &mut reap, |record, outcome| {
        let (label, ns, pid) = (&record.label, &record.ns, record.pid);
        match outcome {
            None => say!("[lab] stopping {label} in {ns} (pid {pid})"),
            Some(Stopped::AlreadyGone) => say!("[lab] {label} in {ns} (pid {pid}) is not running"),
            Some(Stopped::Killed) => say!(
                "[lab] {label} in {ns} (pid {pid}) ignored SIGTERM for {} s: killed",
                GRACE.as_secs()
            ),
            Some(Stopped::Terminated) => {}
        }
    });
    let mut candidates = state.as_ref().map(StateDir::namespaces).unwrap_or_default();
    for ns in names.all() {
        if !candidates.contains(&ns) {
            candidates.push(ns);
        }
    }
    match host.namespaces() {
        Ok(listed) => {
            // An ECMP lab's directors, also when its state folder is gone.
            for ns in listed.iter().filter(|ns| ecmp::is_director_ns(names, ns)) {
                if !candidates.contains(ns) {
                    candidates.push(ns.clone());
                }
            }
            for ns in candidates.iter().filter(|ns| listed.contains(ns)) {
                let left = host.pids_in(ns);
                if !left.is_empty() {
                    say!(
                        "[lab] warning: processes the lab did not start still run in {ns} \
                         (pids {left:?}); its network lives on until they exit"
                    );
                }
                say!("[lab] deleting namespace {ns}");
                if let Err(e) = host.delete_namespace(ns) {
                    keep(e.into());
                }
            }
        }
        Err(e) => keep(e.into()),
    }
    if let Some(state) = state {
        let path = state.path().to_owned();
        say!("[lab] removing {}", path.display());
        if let Err(e) = state.remove() {
            keep(anyhow::Error::new(e).context(format!("removing {}", path.display())));
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
