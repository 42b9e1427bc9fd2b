//! The driver thread's loop: sockets, timers, tracking and actions of every instance.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::Context;

use super::scripts::{Notifier, Scripts};
use super::track::{self, Tracked};
use super::{source_address, InstanceCounters, Shown, VrrpStatus};
use crate::control::vrrp_status::VrrpEntry;
use crate::daemon::announce::Announcer;
use crate::daemon::ha::HaLink;
use crate::sys::vrrp::VrrpSocket;
use crate::time::{Clock, Duration, Instant};
use crate::vrrp::config::{InstanceConfig, Notify, SyncGroupConfig, VrrpConfig};
use crate::vrrp::group::SyncGroup;
use crate::vrrp::machine::{Action, Instance, State};
use crate::vrrp::wire::IpInfo;

/// How often interfaces are looked at (and the longest the loop sleeps).
const TICK: Duration = Duration::from_millis(100);

/// The sockets of one interface and source address.
struct Link {
    iface: String,
    src: IpAddr,
    sock: VrrpSocket,
}

/// One instance and what the driver knows around it.
struct Inst {
    cfg: InstanceConfig,
    m: Instance,
    link: usize,
    src: IpAddr,
    vips: Vec<IpAddr>,
    /// The VIPs by the interface they are answered on (`dev`, default the instance's).
    by_iface: BTreeMap<String, BTreeSet<IpAddr>>,
    counters: InstanceCounters,
    group: Option<usize>,
    tracked: Tracked,
    /// Refusal reasons already logged (each is logged once, then only counted).
    logged: BTreeSet<&'static str>,
    send_failing: bool,
}

struct Group {
    cfg: SyncGroupConfig,
    sg: SyncGroup,
    members: Vec<usize>,
}

/// A gratuitous ARP (IPv4) or unsolicited Neighbor Advertisement (IPv6) burst still going
/// (`vrrp_garp_interval` apart).
struct PendingGarp {
    at: Instant,
    iface: String,
    vip: IpAddr,
    left: u32,
    interval: Duration,
}

pub(super) struct Driver {
    clock: Clock,
    links: Vec<Link>,
    insts: Vec<Inst>,
    groups: Vec<Group>,
    scripts: Scripts,
    notifier: Notifier,
    announcer: Arc<Announcer>,
    ha: Arc<HaLink>,
    sync_instance: Option<usize>,
    held: Option<bool>,
    status: Arc<VrrpStatus>,
    garps: Vec<PendingGarp>,
    iface_up: BTreeMap<String, bool>,
    next_track: Instant,
    out: Vec<u8>,
}

impl Driver {
    pub(super) fn new(
        cfg: &VrrpConfig,
        announcer: Arc<Announcer>,
        ha: Arc<HaLink>,
        clock: Clock,
        status: Arc<VrrpStatus>,
    ) -> anyhow::Result<Driver> {
        let now = clock.now();
        let mut links: Vec<Link> = Vec::new();
        let mut insts = Vec::new();
        for ic in &cfg.instances {
            let ipv6 = ic.is_ipv6();
            let src = source_address(ic.unicast_src, ipv6, &ic.interface).with_context(|| {
                format!(
                    "VRRP instance {}: no {} address on {} to send adverts from",
                    ic.name,
                    if ipv6 { "IPv6 link-local" } else { "IPv4" },
                    ic.interface
                )
            })?;
            let link = match links
                .iter()
                .position(|l| l.iface == ic.interface && l.src == src)
            {
                Some(i) => i,
                None => {
                    let sock = VrrpSocket::open(&ic.interface, src)
                        .with_context(|| format!("VRRP instance {}", ic.name))?;
                    links.push(Link {
                        iface: ic.interface.clone(),
                        src,
                        sock,
                    });
                    links.len() - 1
                }
            };
            let mut by_iface: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
            for v in &ic.vips {
                by_iface
                    .entry(v.dev.clone().unwrap_or_else(|| ic.interface.clone()))
                    .or_default()
                    .insert(v.addr);
            }
            for iface in by_iface.keys() {
                let opened = if ipv6 {
                    announcer.open6(iface)
                } else {
                    announcer.open(iface)
                };
                opened.with_context(|| {
                    let what = if ipv6 {
                        "Neighbor Solicitations"
                    } else {
                        "ARP"
                    };
                    format!("VRRP instance {}: answering {what} on {iface}", ic.name)
                })?;
            }
            insts.push(Inst {
                m: Instance::new(ic, src),
                cfg: ic.clone(),
                link,
                src,
                vips: ic.vips.iter().map(|v| v.addr).collect(),
                by_iface,
                counters: InstanceCounters::default(),
                group: None,
                tracked: Tracked::default(),
                logged: BTreeSet::new(),
                send_failing: false,
            });
        }
        let mut groups = Vec::new();
        for g in &cfg.sync_groups {
            let members: Vec<usize> = g
                .members
                .iter()
                .filter_map(|m| insts.iter().position(|i: &Inst| &i.cfg.name == m))
                .collect();
            for &m in &members {
                insts[m].group = Some(groups.len());
            }
            groups.push(Group {
                cfg: g.clone(),
                sg: SyncGroup::new(g),
                members,
            });
        }
        let sync_instance = cfg
            .sync
            .as_ref()
            .and_then(|s| insts.iter().position(|i| i.cfg.name == s.instance));
        Ok(Driver {
            clock,
            links,
            insts,
            groups,
            scripts: Scripts::new(&cfg.scripts, now),
            notifier: Notifier::new(cfg.script_user.clone()),
            announcer,
            ha,
            sync_instance,
            held: None,
            status,
            garps: Vec::new(),
            iface_up: BTreeMap::new(),
            next_track: now,
            out: Vec::with_capacity(128),
        })
    }

    pub(super) fn run(&mut self, stop: &AtomicBool) {
        let now = self.clock.now();
        self.poll_interfaces();
        for i in 0..self.insts.len() {
            self.retrack(i, now);
            let inst = &mut self.insts[i];
            log::info!(
                "tunlb director: VRRP ({}) starting: VRID {} priority {} on {} from {}, VIPs {}",
                inst.cfg.name,
                inst.cfg.vrid,
                inst.m.priority(),
                inst.cfg.interface,
                inst.src,
                list(&inst.vips)
            );
            inst.m.start(now);
        }
        self.update_hold(now);
        self.drain_actions(now);
        self.publish();

        let fds: Vec<_> = self.links.iter().map(|l| l.sock.rx_fd()).collect();
        let mut ready = Vec::new();
        let mut buf = vec![0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            let now = self.clock.now();
            let wait = self
                .next_deadline(now)
                .map_or(TICK, |t| t.saturating_since(now))
                .min(TICK);
            if let Err(e) = crate::sys::poll_any(&fds, wait, &mut ready) {
                log::error!("tunlb director: VRRP: poll: {e}");
                std::thread::sleep(TICK);
            }
            let now = self.clock.now();
            for &l in &ready {
                self.receive(l, now, &mut buf);
            }
            self.step(now);
        }
        self.shutdown();
    }

    /// Everything but reading the sockets: timers, tracking, sync hold, GARPs, actions.
    fn step(&mut self, now: Instant) {
        for inst in &mut self.insts {
            if inst.m.poll_timeout().is_some_and(|t| t <= now) {
                inst.m.handle_timeout(now);
            }
        }
        let mut retrack = self.scripts.poll(now);
        if now >= self.next_track {
            self.next_track = now + TICK;
            retrack |= self.poll_interfaces();
        }
        if retrack {
            for i in 0..self.insts.len() {
                self.retrack(i, now);
            }
        }
        self.update_hold(now);
        self.drain_actions(now);
        self.send_garps(now);
        self.notifier.reap();
        self.publish();
    }

    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        self.insts
            .iter()
            .filter_map(|i| i.m.poll_timeout())
            .chain(self.scripts.poll_timeout(now))
            .chain(self.garps.iter().map(|g| g.at))
            .chain(Some(self.next_track))
            .min()
    }

    fn receive(&mut self, l: usize, now: Instant, buf: &mut [u8]) {
        let v6 = self.links[l].src.is_ipv6();
        for _ in 0..64 {
            // IPv4: the whole packet, checked here; IPv6: the message and its header's fields.
            let got = if v6 {
                self.links[l].sock.recv6(buf).map(|r| {
                    r.map(|r| {
                        let info = IpInfo {
                            src: IpAddr::V6(r.src),
                            dst: IpAddr::V6(r.dst),
                            ttl: r.hop_limit,
                        };
                        (Ok((info, 0..r.len)), r.len)
                    })
                })
            } else {
                self.links[l].sock.recv(buf).map(|r| {
                    r.map(|n| {
                        let checked = crate::vrrp::wire::check_ip_any_ttl(&buf[..n])
                            .map(|(info, payload)| (info, n - payload.len()..n));
                        (checked, n)
                    })
                })
            };
            let (checked, n) = match got {
                Ok(Some(g)) => g,
                Ok(None) => return,
                Err(e) => {
                    log::warn!(
                        "tunlb director: VRRP: receiving on {}: {e}",
                        self.links[l].iface
                    );
                    return;
                }
            };
            for inst in self.insts.iter_mut().filter(|i| i.link == l) {
                let handled = match &checked {
                    Ok((info, range)) => inst.m.handle_payload(now, *info, &buf[range.clone()]),
                    Err(r) => Err(*r),
                };
                match handled {
                    Ok(()) => inst.counters.adverts_received += 1,
                    Err(r) if r.as_str() == "vrid" => {}
                    Err(r) => {
                        let reason = r.as_str();
                        *inst.counters.refused.entry(reason).or_default() += 1;
                        if inst.logged.insert(reason) {
                            let from = match &checked {
                                Ok((info, _)) => info.src.to_string(),
                                Err(_) if v6 => "?".to_string(),
                                Err(_) => buf[..n]
                                    .get(12..16)
                                    .map(|a| format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3]))
                                    .unwrap_or_else(|| "?".into()),
                            };
                            log::warn!(
                                "tunlb director: VRRP ({}) advert from {from} refused: {reason} (counted in tunlb_vrrp_adverts_refused_total, logged once)",
                                inst.cfg.name
                            );
                        }
                    }
                }
            }
        }
    }

    /// Looks at every interface an instance tracks; true if one changed.
    fn poll_interfaces(&mut self) -> bool {
        let mut names: BTreeSet<String> = BTreeSet::new();
        for i in &self.insts {
            names.insert(i.cfg.interface.clone());
            names.extend(i.cfg.track_interfaces.iter().map(|t| t.name.clone()));
        }
        let mut changed = false;
        for name in names {
            let up = crate::sys::iface::is_running(&name);
            let before = self.iface_up.insert(name.clone(), up);
            if before.is_some_and(|b| b != up) {
                log::info!(
                    "tunlb director: VRRP: interface {name} is {}",
                    if up { "up" } else { "down" }
                );
                changed = true;
            }
        }
        changed
    }

    /// Re-evaluates instance `i`'s tracking and tells its machine what changed.
    fn retrack(&mut self, i: usize, now: Instant) {
        let up = &self.iface_up;
        let scripts = &self.scripts;
        let t = track::evaluate(
            &self.insts[i].cfg,
            |name| up.get(name).copied().unwrap_or(false),
            |name| (scripts.is_good(name), scripts.weight(name)),
        );
        let inst = &mut self.insts[i];
        let first = inst.m.state() == State::Init;
        if t.delta != inst.tracked.delta || first {
            inst.m.set_priority_delta(now, t.delta);
        }
        if t.fault != inst.tracked.fault || first {
            inst.m.set_fault(now, t.fault);
        }
        inst.tracked = t;
    }

    /// No instance preempts until connection sync's bulk resync is done.
    fn update_hold(&mut self, now: Instant) {
        let hold = !self.ha.is_sync_ready();
        if self.held != Some(hold) {
            if self.held.is_some() || hold {
                log::info!(
                    "tunlb director: VRRP: {}",
                    if hold {
                        "not preempting until the connection table is synced"
                    } else {
                        "connection table synced, preempting allowed"
                    }
                );
            }
            self.held = Some(hold);
            for inst in &mut self.insts {
                inst.m.hold_preempt(now, hold);
            }
        }
    }

    /// Executes every action of every instance, until none is left (a transition can make a
    /// sync group's other members act).
    fn drain_actions(&mut self, now: Instant) {
        for _ in 0..16 {
            let mut any = false;
            for i in 0..self.insts.len() {
                while let Some(a) = self.insts[i].m.poll_action() {
                    any = true;
                    self.act(i, a, now);
                }
            }
            if !any {
                return;
            }
        }
    }

    fn act(&mut self, i: usize, action: Action, now: Instant) {
        match action {
            Action::SendAdvert { priority } => self.send_advert(i, priority),
            Action::GarpBurst { repeat } => {
                let inst = &self.insts[i];
                let interval = inst.cfg.garp.interval;
                for (iface, vips) in &inst.by_iface {
                    for vip in vips {
                        self.garps.push(PendingGarp {
                            at: now,
                            iface: iface.clone(),
                            vip: *vip,
                            left: repeat,
                            interval,
                        });
                    }
                }
                self.send_garps(now);
            }
            Action::Transition { from, to, reason } => self.transition(i, from, to, reason, now),
        }
    }

    fn send_advert(&mut self, i: usize, priority: u8) {
        let inst = &mut self.insts[i];
        let link = &self.links[inst.link];
        for &dst in inst.m.destinations() {
            inst.m.build_advert(priority, dst, &mut self.out);
            match link.sock.send(&self.out, dst) {
                Ok(_) => {
                    inst.counters.adverts_sent += 1;
                    if inst.send_failing {
                        inst.send_failing = false;
                        log::info!(
                            "tunlb director: VRRP ({}) adverts go out again",
                            inst.cfg.name
                        );
                    }
                }
                Err(e) => {
                    if !inst.send_failing {
                        inst.send_failing = true;
                        log::warn!(
                            "tunlb director: VRRP ({}) sending an advert to {dst} on {}: {e}",
                            inst.cfg.name,
                            link.iface
                        );
                    }
                }
            }
        }
    }

    fn send_garps(&mut self, now: Instant) {
        let announcer = &self.announcer;
        self.garps.retain_mut(|g| {
            while g.left > 0 && g.at <= now {
                if let Err(e) = announcer.advertise(&g.iface, g.vip) {
                    let what = if g.vip.is_ipv6() {
                        "unsolicited neighbor advertisement"
                    } else {
                        "gratuitous ARP"
                    };
                    log::warn!(
                        "tunlb director: VRRP: {what} for {} on {}: {e}",
                        g.vip,
                        g.iface
                    );
                }
                g.left -= 1;
                g.at = now + g.interval;
            }
            g.left > 0
        });
    }

    fn transition(&mut self, i: usize, from: State, to: State, reason: &'static str, now: Instant) {
        let inst = &mut self.insts[i];
        *inst.counters.transitions.entry(to.as_str()).or_default() += 1;
        let name = inst.cfg.name.clone();
        let prio = inst.m.priority();
        match to {
            State::Master => log::info!(
                "tunlb director: VRRP ({name}) Entering MASTER STATE ({reason}; was {}): answering for {}",
                from.as_str(),
                list(&inst.vips)
            ),
            _ => log::info!(
                "tunlb director: VRRP ({name}) Entering {} STATE ({reason}; was {}){}",
                to.as_str(),
                from.as_str(),
                inst.m
                    .master()
                    .filter(|m| *m != inst.src)
                    .map_or(String::new(), |m| format!(", master {m}"))
            ),
        }
        // The ARP / NDP answers follow the state: only a MASTER answers for the VIPs. The
        // unsolicited advertisements of a takeover are the GarpBurst's (garp_master_*).
        let announce = to == State::Master;
        for (iface, vips) in &inst.by_iface {
            let set = if announce {
                vips.clone()
            } else {
                BTreeSet::new()
            };
            if let Err(e) = self.announcer.announce_quietly(&name, iface, &set) {
                log::error!("tunlb director: VRRP ({name}) ARP/NDP responder on {iface}: {e}");
            }
        }
        if self.sync_instance == Some(i) {
            self.ha.set_sync_master(to == State::Master);
        }
        run_notify(
            &mut self.notifier,
            &inst.cfg.notify,
            "INSTANCE",
            &name,
            to,
            prio,
        );

        // Sync group (keepalived's semantics, crate::vrrp::group): the members follow.
        if let Some(g) = inst.group {
            let group = &mut self.groups[g];
            let before = group.sg.state();
            let follow = group.sg.handle_transition(&name, to, reason);
            let after = group.sg.state();
            let members = group.members.clone();
            if after != before && after != State::Init {
                let gname = group.cfg.name.clone();
                log::info!(
                    "tunlb director: VRRP sync group {gname} is {}",
                    after.as_str()
                );
                run_notify(
                    &mut self.notifier,
                    &group.cfg.notify,
                    "GROUP",
                    &gname,
                    after,
                    0,
                );
            }
            if let Some(target) = follow {
                for m in members {
                    self.insts[m].m.sync_to(now, target);
                }
            }
        }
    }

    fn publish(&self) {
        let shown = self
            .insts
            .iter()
            .map(|inst| Shown {
                entry: VrrpEntry {
                    name: inst.cfg.name.clone(),
                    state: inst.m.state().as_str().to_string(),
                    priority: inst.m.priority(),
                    base_priority: inst.cfg.priority,
                    vrid: inst.cfg.vrid,
                    interface: inst.cfg.interface.clone(),
                    version: inst.cfg.version.number(),
                    master: inst.m.master(),
                    since_ms: None,
                    vips: inst.vips.clone(),
                    adverts_sent: 0,
                    adverts_received: 0,
                },
                state: inst.m.state(),
                last: inst.m.last_transition(),
                counters: inst.counters.clone(),
            })
            .collect();
        self.status.publish(shown);
    }

    /// SIGTERM: priority 0 from every MASTER, no more ARP answers, `notify_stop`.
    fn shutdown(&mut self) {
        let now = self.clock.now();
        for inst in &mut self.insts {
            inst.m.shutdown(now);
        }
        self.drain_actions(now);
        for inst in &self.insts {
            for iface in inst.by_iface.keys() {
                let _ = self
                    .announcer
                    .announce_quietly(&inst.cfg.name, iface, &BTreeSet::new());
            }
            if let Some(stop) = &inst.cfg.notify.stop {
                self.notifier.run(stop, &[]);
            }
        }
        if self.sync_instance.is_some() {
            self.ha.set_sync_master(false);
        }
        self.scripts.stop();
        self.publish();
        self.notifier.finish(StdDuration::from_millis(500));
        log::info!("tunlb director: VRRP stopped");
    }
}

/// keepalived's notify rules: `notify_master|backup|fault` with no arguments, then `notify`
/// with `KIND NAME STATE PRIORITY`.
fn run_notify(notifier: &mut Notifier, n: &Notify, kind: &str, name: &str, to: State, prio: u8) {
    let specific = match to {
        State::Master => &n.master,
        State::Backup => &n.backup,
        State::Fault => &n.fault,
        State::Init => &None,
    };
    if let Some(s) = specific {
        notifier.run(s, &[]);
    }
    if let Some(s) = &n.any {
        if to != State::Init {
            let quoted = shell_quote(name);
            let prio = prio.to_string();
            notifier.run(s, &[kind, &quoted, to.as_str(), &prio]);
        }
    }
}

/// `'name'`, safe in a `/bin/sh -c` line whatever it contains.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn list(addrs: &[IpAddr]) -> String {
    if addrs.is_empty() {
        return "none".to_string();
    }
    addrs
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("VI_1"), "'VI_1'");
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn notify_runs_the_state_script_and_the_generic_one() {
        let dir = std::env::temp_dir().join(format!("tunlb-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // The scripts run as nobody when the test runs as root.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let out = dir.join("out");
        let n = Notify {
            master: Some(format!("echo master >> {}", out.display()).into()),
            any: Some(format!("echo >> {}", out.display()).into()),
            ..Notify::default()
        };
        let mut notifier = Notifier::default();
        run_notify(&mut notifier, &n, "INSTANCE", "VI_1", State::Master, 100);
        notifier.finish(StdDuration::from_secs(5));
        let mut lines: Vec<String> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        assert_eq!(lines, ["INSTANCE VI_1 MASTER 100", "master"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
