//! Keepalived-compatible health checking of real servers.
//!
//! - [`config`]: the settings (plain data from the TOML config or a keepalived.conf).
//! - [`checker`]: the sans-IO state machine per real server (delay_loop, retry, alpha, ...).
//! - [`service`]: the sans-IO quorum / hysteresis state per service.
//! - [`probe`]: the IO: TCP connect, HTTP GET (+ MD5 digest), MISC program; [`tls`] the
//!   SSL_GET client; [`probe_udp`] UDP_CHECK and PING_CHECK.
//! - [`target`]: where a probe connects from and to: the real server, or with
//!   `check_through_tunnel` the VIP through the director's own data path (pinned to the server
//!   checked, see [`crate::director::probe_pin`]), so that a DSR black hole fails the check.
//! - [`HealthMonitor`]: the thread that runs them and applies up/down/weight to the live table
//!   through [`HealthPlane::set_dest_health`] / [`HealthPlane::set_sorry_server`]; `monitor`
//!   holds its checkers and carries them over a reload (keepalived's: an unchanged checker
//!   keeps its state, failure counts and timers; only changed ones start or stop).
//! - [`plane`]: [`HealthPlane`], what the monitor needs from the control plane (the daemon's
//!   `ControlPlane` implements it).
//!
//! A server that goes down is removed from the table. What happens to its established flows is
//! its service's policy ([`crate::model::ExpirePolicy`]): by default they are
//! forgotten at their next packet (IPVS's `expire_nodest_conn=1`; a UDP packet or a new SYN is
//! rescheduled to a live server at once); with `expire_nodest_conn = false` they are kept and
//! their packets dropped until the server comes back. With `inhibit_on_failure` it stays with
//! weight 0 and keeps its flows (and, unless `expire_quiescent_template`, its persistent clients). When a service loses its quorum and has a sorry server, the sorry
//! server replaces the real servers until the quorum is back (keepalived). With `omega`, a
//! service that still has its quorum when the monitor stops loses it: its `quorum_down` runs.
//! `ha_suspend` is accepted and logged; it is acted on once tunlb has VRRP.

pub mod checker;
pub mod config;
mod monitor;
pub mod plane;
pub mod probe;
pub mod probe_udp;
pub mod service;
pub mod target;
pub mod tls;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use self::checker::{Action, CheckOutcome};
use self::config::HealthConfig;
use self::monitor::{Dest, Monitor, Service};
use self::service::QuorumAction;
use crate::model::ServiceKey;
use crate::time::Clock;

pub use self::plane::{Health, HealthPlane, Sorry};

/// What the monitor thread sends itself: a probe's result for dest `id`, check `k`.
type ProbeResult = (u64, usize, CheckOutcome);

/// Runs the health checks of every configured service on a thread of its own; stops (and
/// joins) when dropped. On a reload ([`HealthPlane::set_health_config`]) it keeps every checker
/// whose checks did not change, with its state, and starts or stops only the changed ones
/// (see the `monitor` module).
pub struct HealthMonitor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HealthMonitor {
    /// Gives `plane` the health settings `health` and starts checking the real servers they
    /// name, over `plane`'s configured table.
    pub fn spawn<P: HealthPlane>(plane: Arc<P>, health: HealthConfig) -> HealthMonitor {
        plane.set_health_config(health);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tunlb-health".into())
            .spawn(move || run(&plane, &s))
            .map_err(|e| log::error!("tunlb director: health: cannot start: {e}"))
            .ok();
        HealthMonitor { stop, thread }
    }
}

impl Drop for HealthMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish()
}

fn run<P: HealthPlane>(plane: &Arc<P>, stop: &AtomicBool) {
    let clock = Clock::new();
    let (tx, rx) = mpsc::channel::<ProbeResult>();
    let mut m = Monitor::build(&**plane, &clock, plane.health_config(), None, seed);
    let mut changed = true;
    while !stop.load(Ordering::SeqCst) {
        if plane.health_generation() != m.generation {
            let health = plane.health_config();
            m = Monitor::build(&**plane, &clock, health, Some(m), seed);
            let c = m.changes;
            let level = if c.any() {
                log::Level::Info
            } else {
                log::Level::Debug
            };
            log::log!(
                level,
                "tunlb director: health: new settings: checkers kept: {} ({} updated), \
                 started: {}, restarted: {}, stopped: {}",
                c.kept,
                c.updated,
                c.started,
                c.restarted,
                c.stopped
            );
            changed = true;
        }
        let now = clock.now();
        for d in m.dests.iter_mut() {
            if d.checker.poll_timeout().is_some_and(|t| t <= now) {
                d.checker.handle_timeout(now);
            }
        }
        for i in 0..m.dests.len() {
            changed |= drain(plane, &mut m.dests, &m.services, i, &tx);
        }
        if changed {
            quorum(&**plane, &m.dests, &mut m.services);
            changed = false;
        }
        let next = m
            .dests
            .iter()
            .filter_map(|d| d.checker.poll_timeout())
            .min();
        let wait = next.map_or(std::time::Duration::from_millis(200), |t| {
            t.saturating_since(clock.now())
                .min(std::time::Duration::from_millis(200))
        });
        if let Ok((id, k, outcome)) = rx.recv_timeout(wait) {
            // A result for a dest a reload dropped finds no one.
            if let Some(d) = m.dests.iter_mut().find(|d| d.id == id) {
                d.checker.handle_result(clock.now(), k, outcome);
            }
        }
    }
    shutdown(&**plane, &m.dests, &mut m.services);
}

/// The sum of the weights of service `key`'s (index `si`) alive real servers; unchecked ones
/// count as alive. `None`: the service is not in the table.
fn alive_weight<P: HealthPlane>(
    plane: &P,
    dests: &[Dest],
    si: usize,
    key: ServiceKey,
) -> Option<u64> {
    let set = plane.configured();
    let svc = set.services.iter().find(|x| x.key == key)?;
    Some(monitor::alive_weight(svc, key, dests, si))
}

/// The monitor stops: `omega` services that still have their quorum lose it and run
/// `quorum_down` (started, not waited for: it outlives the director if it must).
fn shutdown<P: HealthPlane>(plane: &P, dests: &[Dest], services: &mut [Service]) {
    for (si, s) in services.iter_mut().enumerate() {
        let alive = alive_weight(plane, dests, si, s.key).unwrap_or(0);
        s.quorum.handle_shutdown(s.cfg.omega, alive);
        while let Some(a) = s.quorum.poll_action() {
            if !matches!(a, QuorumAction::Lost { .. }) {
                continue;
            }
            let run = match &s.cfg.quorum_down {
                Some(cmd) => format!(", running quorum_down {cmd:?}"),
                None => String::new(),
            };
            log::warn!(
                "tunlb director: health: service {}: shutting down with omega: quorum lost{run}",
                s.key
            );
            if let Some(cmd) = &s.cfg.quorum_down {
                match run_script(cmd, s.cfg.script_user.as_ref()) {
                    Ok(mut child) => {
                        let _ = std::thread::Builder::new().spawn(move || child.wait());
                    }
                    Err(e) => log::error!("tunlb director: health: quorum_down: {e}"),
                }
            }
        }
    }
}

/// Starts `quorum_up` / `quorum_down` as `user` (see [`crate::sys::script`]).
fn run_script(
    cmd: &str,
    user: Option<&crate::model::ScriptUser>,
) -> std::io::Result<std::process::Child> {
    let who = crate::sys::script::RunAs::resolve(user, None)
        .map_err(|e| std::io::Error::other(format!("running {cmd:?}: {e}")))?;
    crate::sys::script::spawn(cmd, &who)
}

/// The `check` label of a probe of `kind` in `tunlb_check_duration_seconds`.
fn check_label(kind: &config::CheckKind) -> &'static str {
    match kind {
        config::CheckKind::HttpGet { .. } => "http_get",
        config::CheckKind::SslGet { .. } => "ssl_get",
        config::CheckKind::Tcp => "tcp",
        config::CheckKind::Misc { .. } => "misc",
        config::CheckKind::Udp(_) => "udp",
        config::CheckKind::Ping => "ping",
    }
}

/// Runs `probe` (a `kind` check of real server `addr:port` of service `key`) and records its
/// wall time with `record` (`tunlb_check_duration_seconds`).
fn timed(
    record: impl FnOnce(ServiceKey, IpAddr, u16, &'static str, std::time::Duration),
    key: ServiceKey,
    addr: IpAddr,
    port: u16,
    kind: &config::CheckKind,
    probe: impl FnOnce() -> CheckOutcome,
) -> CheckOutcome {
    let started = std::time::Instant::now();
    let outcome = probe();
    record(key, addr, port, check_label(kind), started.elapsed());
    outcome
}

/// Runs dest `i`'s actions; returns whether its state in the table changed.
fn drain<P: HealthPlane>(
    plane: &Arc<P>,
    dests: &mut [Dest],
    services: &[Service],
    i: usize,
    tx: &mpsc::Sender<ProbeResult>,
) -> bool {
    let mut changed = false;
    let Some(d) = dests.get_mut(i) else {
        return false;
    };
    let key = services[d.service].key;
    let delay_loop = services[d.service].cfg.delay_loop;
    while let Some(a) = d.checker.poll_action() {
        let (health, what) = match a {
            Action::Probe(k) => {
                let Some(spec) = d.specs.get(k).cloned() else {
                    continue;
                };
                let (tx, id, addr, port) = (tx.clone(), d.id, d.addr, d.port);
                let plane = plane.clone();
                let delay_loop = spec.delay_loop.unwrap_or(delay_loop);
                let _ = std::thread::Builder::new()
                    .name("tunlb-probe".into())
                    .spawn(move || {
                        let record = |k, a, p, c, t| plane.record_check(k, a, p, c, t);
                        let outcome = timed(record, key, addr, port, &spec.kind, || {
                            if spec.check_through_tunnel {
                                match target::tunnel_path(&*plane, key, addr, port, spec.bindto) {
                                    Ok(path) => {
                                        let to = target::target(&spec, addr, port, Some(path));
                                        probe::run_to(&spec, &to, delay_loop)
                                    }
                                    Err(reason) => CheckOutcome::failed(reason),
                                }
                            } else {
                                probe::run(&spec, addr, port, delay_loop)
                            }
                        });
                        let _ = tx.send((id, k, outcome));
                    });
                continue;
            }
            Action::SetUp { reason } => {
                let w = d.checker.weight();
                let h = if w == d.configured_weight {
                    Health::Up
                } else {
                    Health::Weight(w)
                };
                (h, format!("up ({reason}), weight {w}"))
            }
            Action::SetDown { reason } if d.inhibit => {
                (Health::Weight(0), format!("down ({reason}), weight 0"))
            }
            Action::SetDown { reason } => (Health::Down, format!("down ({reason}), removed")),
            Action::SetWeight(w) => {
                let h = if w == d.configured_weight {
                    Health::Up
                } else {
                    Health::Weight(w)
                };
                (h, format!("weight {w} (MISC_CHECK dynamic)"))
            }
        };
        changed = true;
        match plane.set_dest_health(key, d.addr, d.port, health) {
            // A real server taken out is a warning; back in or reweighted, news.
            Ok(_) => log::log!(
                if what.starts_with("down") {
                    log::Level::Warn
                } else {
                    log::Level::Info
                },
                "tunlb director: health: service {key}: real server {} {what}",
                crate::model::fmt_addr_port(d.addr, d.port)
            ),
            Err(e) => log::error!(
                "tunlb director: health: service {key}: real server {} {what}: not applied: {e}",
                crate::model::fmt_addr_port(d.addr, d.port)
            ),
        }
    }
    changed
}

/// Recomputes every service's alive weight and applies quorum changes.
fn quorum<P: HealthPlane>(plane: &P, dests: &[Dest], services: &mut [Service]) {
    for (si, s) in services.iter_mut().enumerate() {
        let Some(alive) = alive_weight(plane, dests, si, s.key) else {
            continue;
        };
        s.quorum.handle_weights(alive);
        while let Some(a) = s.quorum.poll_action() {
            let (active, cmd, what) = match a {
                QuorumAction::Lost { alive } => (
                    true,
                    &s.cfg.quorum_down,
                    format!(
                        "lost quorum (alive weight {alive} < {} - {})",
                        s.cfg.quorum, s.cfg.hysteresis
                    ),
                ),
                QuorumAction::Gained { alive } => (
                    false,
                    &s.cfg.quorum_up,
                    format!(
                        "gained quorum (alive weight {alive} >= {} + {})",
                        s.cfg.quorum, s.cfg.hysteresis
                    ),
                ),
            };
            let level = if active {
                log::Level::Warn
            } else {
                log::Level::Info
            };
            log::log!(level, "tunlb director: health: service {}: {what}", s.key);
            if let Some(addr) = s.cfg.sorry_server {
                let sorry = (active || s.cfg.sorry_server_inhibit).then_some(Sorry {
                    addr,
                    active,
                    inhibit: s.cfg.sorry_server_inhibit,
                });
                if let Err(e) = plane.set_sorry_server(s.key, sorry) {
                    log::error!("tunlb director: health: sorry server {addr}: {e}");
                } else {
                    log::info!(
                        "tunlb director: health: service {}: sorry server {addr} {}",
                        s.key,
                        if active { "in use" } else { "out of use" }
                    );
                }
            }
            if let Some(cmd) = cmd {
                match run_script(cmd, s.cfg.script_user.as_ref()) {
                    Ok(mut child) => {
                        let _ = std::thread::Builder::new().spawn(move || child.wait());
                    }
                    Err(e) => log::error!("tunlb director: health: service {}: {e}", s.key),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{CheckDurations, CHECK_BUCKETS};
    use crate::model::Protocol;
    use config::{CheckKind, CheckSpec};

    #[test]
    fn a_probes_wall_time_lands_in_the_check_histogram() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let lo = std::net::Ipv4Addr::LOCALHOST.into();
        let key = ServiceKey {
            vip: std::net::Ipv4Addr::new(10, 0, 0, 100).into(),
            port: 80,
            proto: Protocol::Tcp,
        };
        let durations = CheckDurations::default();
        let spec = CheckSpec::new(CheckKind::Tcp);
        let delay = std::time::Duration::from_secs(5);
        let record = |k, a, p, c, t| durations.record(k, a, p, c, t);
        let outcome = timed(record, key, lo, port, &spec.kind, || {
            probe::run(&spec, lo, port, delay)
        });
        assert!(outcome.ok);
        // A probe that takes at least 20 ms lands at or above the 25 ms bucket.
        timed(record, key, lo, port, &spec.kind, || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            probe::run(&spec, lo, port, delay)
        });
        let series = durations.snapshot();
        assert_eq!(series.len(), 1, "{series:?}");
        let s = &series[0];
        assert_eq!((s.service, s.addr, s.port, s.check), (key, lo, port, "tcp"));
        assert_eq!(s.hist.count, 2);
        assert_eq!(s.hist.buckets.iter().sum::<u64>(), 2);
        assert!(s.hist.sum >= 0.02 && s.hist.sum < 5.0, "{}", s.hist.sum);
        let at_least_20ms = CHECK_BUCKETS.iter().position(|b| *b >= 0.025).unwrap_or(0);
        assert!(
            s.hist.buckets[at_least_20ms..].iter().sum::<u64>() >= 1,
            "{s:?}"
        );
    }
}
