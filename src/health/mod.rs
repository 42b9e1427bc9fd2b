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
//!   through [`HealthPlane::set_dest_health`] / [`HealthPlane::set_sorry_server`].
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
pub mod plane;
pub mod probe;
pub mod probe_udp;
pub mod service;
pub mod target;
pub mod tls;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use self::checker::{Action, CheckOutcome, Checker};
use self::config::{HealthConfig, ServiceHealth};
use self::service::{QuorumAction, QuorumState};
use crate::model::ServiceKey;
use crate::time::Clock;

pub use self::plane::{Health, HealthPlane, Sorry};

/// One checked real server.
struct Dest {
    /// Names the dest in probe results across restarts (indices change, ids do not).
    id: u64,
    service: usize,
    addr: Ipv4Addr,
    port: u16,
    inhibit: bool,
    configured_weight: u32,
    checker: Checker,
    specs: Vec<config::CheckSpec>,
    /// The service settings the checker was made with (a reload keeps the checker only when
    /// they and `specs` are unchanged).
    delay_loop: std::time::Duration,
    alpha: bool,
}

/// One service with health settings.
struct Service {
    key: ServiceKey,
    cfg: ServiceHealth,
    quorum: QuorumState,
}

/// What the monitor thread sends itself: a probe's result for dest `id`, check `k`.
type ProbeResult = (u64, usize, CheckOutcome);

/// Runs the health checks of every configured service on a thread of its own; stops (and
/// joins) when dropped. On a reload ([`HealthPlane::set_health_config`]) it restarts its
/// checkers with the new settings, keeping the state of the real servers whose checks did not
/// change.
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

/// The checkers of one generation of the health config.
struct Monitor {
    generation: u64,
    services: Vec<Service>,
    dests: Vec<Dest>,
    next_id: u64,
}

impl Monitor {
    /// Starts the checkers of `health` over `plane`'s configured table. A real server that
    /// `old` checked with the same checks and service timing keeps its checker (and so its
    /// state in the table); every edit of `old` that is not carried over is undone.
    fn build<P: HealthPlane>(
        plane: &P,
        clock: &Clock,
        (generation, health): (u64, HealthConfig),
        old: Option<Monitor>,
    ) -> Monitor {
        let (mut old_dests, old_services, mut next_id) = match old {
            Some(m) => (m.dests, m.services, m.next_id),
            None => (Vec::new(), Vec::new(), 0),
        };
        let old_keys: Vec<ServiceKey> = old_services.iter().map(|s| s.key).collect();
        let set = plane.configured();
        let mut services = Vec::new();
        let mut dests = Vec::new();
        for (key, cfg) in &health.services {
            let Some(svc) = set.services.iter().find(|s| s.key == *key) else {
                log::warn!(
                    "tunlb director: health: service {key} is not in the table; not checked"
                );
                continue;
            };
            if cfg.ha_suspend && old_keys.iter().all(|k| k != key) {
                log::info!(
                    "tunlb director: health: service {key}: ha_suspend accepted, acted on once \
                     VRRP exists (checks run all the time)"
                );
            }
            let si = services.len();
            for d in &svc.dests {
                let port = d.port_in(*key);
                let Some(dh) = cfg.dest(d.addr, port).filter(|h| !h.checks.is_empty()) else {
                    continue;
                };
                let same = old_dests.iter().position(|o| {
                    old_keys.get(o.service) == Some(key)
                        && (o.addr, o.port) == (d.addr, port)
                        && o.specs == dh.checks
                        && o.inhibit == dh.inhibit_on_failure
                        && o.configured_weight == d.weight
                        && (o.delay_loop, o.alpha) == (cfg.delay_loop, cfg.alpha)
                });
                if let Some(i) = same {
                    let mut kept = old_dests.swap_remove(i);
                    kept.service = si;
                    dests.push(kept);
                    continue;
                }
                next_id += 1;
                dests.push(Dest {
                    id: next_id,
                    service: si,
                    addr: d.addr,
                    port,
                    inhibit: dh.inhibit_on_failure,
                    configured_weight: d.weight,
                    checker: Checker::new(
                        clock.now(),
                        cfg.delay_loop,
                        &dh.checks,
                        cfg.alpha,
                        d.weight,
                        seed(),
                    ),
                    specs: dh.checks.clone(),
                    delay_loop: cfg.delay_loop,
                    alpha: cfg.alpha,
                });
            }
            let alive: u64 = svc
                .dests
                .iter()
                .map(|d| {
                    let port = d.port_in(*key);
                    match dests
                        .iter()
                        .find(|x| x.service == si && (x.addr, x.port) == (d.addr, port))
                    {
                        Some(x) if x.checker.is_up() => u64::from(x.checker.weight()),
                        Some(_) => 0,
                        None => u64::from(d.weight),
                    }
                })
                .sum();
            services.push(Service {
                key: *key,
                cfg: cfg.clone(),
                quorum: QuorumState::new(cfg.quorum, cfg.hysteresis, alive),
            });
        }
        // Undo what the old checkers did and the new ones do not carry on: a new checker
        // starts from its own initial state (up, or down with alpha) in the table.
        for o in &old_dests {
            if let Some(key) = old_keys.get(o.service) {
                let _ = plane.set_dest_health(*key, o.addr, o.port, Health::Up);
            }
        }
        for key in &old_keys {
            let _ = plane.set_sorry_server(*key, None);
        }
        for s in &services {
            if let Some(addr) = s.cfg.sorry_server.filter(|_| s.cfg.sorry_server_inhibit) {
                let sorry = Sorry {
                    addr,
                    active: false,
                    inhibit: true,
                };
                let _ = plane.set_sorry_server(s.key, Some(sorry));
            }
        }
        Monitor {
            generation,
            services,
            dests,
            next_id,
        }
    }
}

fn run<P: HealthPlane>(plane: &Arc<P>, stop: &AtomicBool) {
    let clock = Clock::new();
    let (tx, rx) = mpsc::channel::<ProbeResult>();
    let mut m = Monitor::build(&**plane, &clock, plane.health_config(), None);
    let mut changed = true;
    while !stop.load(Ordering::SeqCst) {
        if plane.health_generation() != m.generation {
            let health = plane.health_config();
            log::info!("tunlb director: health: new settings, restarting the checkers");
            m = Monitor::build(&**plane, &clock, health, Some(m));
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
    Some(
        svc.dests
            .iter()
            .map(|d| {
                let port = d.port_in(key);
                match dests
                    .iter()
                    .find(|x| x.service == si && x.addr == d.addr && x.port == port)
                {
                    Some(x) if x.checker.is_up() => u64::from(x.checker.weight()),
                    Some(_) => 0,
                    None => u64::from(d.weight),
                }
            })
            .sum(),
    )
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
    record: impl FnOnce(ServiceKey, Ipv4Addr, u16, &'static str, std::time::Duration),
    key: ServiceKey,
    addr: Ipv4Addr,
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
                "tunlb director: health: service {key}: real server {}:{} {what}",
                d.addr,
                d.port
            ),
            Err(e) => log::error!(
                "tunlb director: health: service {key}: real server {}:{} {what}: not applied: {e}",
                d.addr,
                d.port
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

    /// A plane without a data path: the configured table and the health checkers' edits.
    #[derive(Default)]
    struct FakePlane {
        set: std::sync::Mutex<crate::model::ServiceSet>,
        dests: std::sync::Mutex<std::collections::HashMap<(ServiceKey, Ipv4Addr, u16), Health>>,
    }

    impl HealthPlane for FakePlane {
        type Error = String;
        fn configured(&self) -> crate::model::ServiceSet {
            self.set.lock().expect("set").clone()
        }
        fn set_health_config(&self, _: HealthConfig) {}
        fn health_generation(&self) -> u64 {
            0
        }
        fn health_config(&self) -> (u64, HealthConfig) {
            (0, HealthConfig::default())
        }
        fn set_dest_health(
            &self,
            service: ServiceKey,
            addr: Ipv4Addr,
            port: u16,
            health: Health,
        ) -> Result<bool, String> {
            let mut d = self.dests.lock().expect("dests");
            let old = match health {
                Health::Up => d.remove(&(service, addr, port)),
                h => d.insert((service, addr, port), h),
            };
            Ok(old.unwrap_or(Health::Up) != health)
        }
        fn set_sorry_server(&self, _: ServiceKey, _: Option<Sorry>) -> Result<bool, String> {
            Ok(false)
        }
        fn probe_pins(&self) -> Arc<crate::director::probe_pin::ProbePins> {
            Arc::new(Default::default())
        }
        fn clock(&self) -> Clock {
            Clock::new()
        }
        fn accept_probe_replies(&self, _: &str) -> Result<(), String> {
            Ok(())
        }
        fn record_check(
            &self,
            _: ServiceKey,
            _: Ipv4Addr,
            _: u16,
            _: &'static str,
            _: std::time::Duration,
        ) {
        }
    }

    /// Reads the soak's keepalived.conf (HTTP_GET on two real servers), as a reload does.
    fn keepalived(delay_loop: &str) -> crate::control::keepalived::KeepalivedConfig {
        let text = include_str!("../../configs/keepalived-ha-master.conf")
            .replace("delay_loop 6", delay_loop);
        crate::control::keepalived::parse_str(&text, "keepalived.conf").expect("parse")
    }

    /// Applies every pending action of `m`'s checkers the way the monitor does (probes are
    /// not run: the test hands in their results).
    fn apply(plane: &FakePlane, m: &mut Monitor) {
        for d in &mut m.dests {
            let key = m.services[d.service].key;
            while let Some(a) = d.checker.poll_action() {
                let h = match a {
                    Action::SetDown { .. } => Health::Down,
                    Action::SetUp { .. } => Health::Up,
                    _ => continue,
                };
                let _ = plane.set_dest_health(key, d.addr, d.port, h);
            }
        }
    }

    #[test]
    fn a_reload_keeps_unchanged_checkers_and_restarts_changed_ones() {
        let plane = FakePlane::default();
        let clock = Clock::new();
        let conf = keepalived("delay_loop 6");
        *plane.set.lock().expect("set") = conf.services.clone();
        let mut m = Monitor::build(&plane, &clock, (1, conf.health), None);
        assert_eq!(m.dests.len(), 2);
        // The second real server fails its HTTP_GET retry + 1 times: down.
        let rs = m.dests[1].addr;
        let (id, retry) = (m.dests[1].id, m.dests[1].specs[0].retry);
        for _ in 0..=retry {
            let now = clock.now();
            m.dests[1]
                .checker
                .handle_result(now, 0, CheckOutcome::failed("connection refused"));
        }
        apply(&plane, &mut m);
        assert!(!m.dests[1].checker.is_up());
        let down = |p: &FakePlane| {
            p.dests
                .lock()
                .expect("dests")
                .iter()
                .any(|((_, a, _), h)| *a == rs && *h == Health::Down)
        };
        assert!(down(&plane));

        // A reload of the same file: the table is replaced with an equal one, the checkers
        // are kept with their state, the server stays down.
        let again = keepalived("delay_loop 6");
        *plane.set.lock().expect("set") = again.services.clone();
        let mut m = Monitor::build(&plane, &clock, (2, again.health), Some(m));
        apply(&plane, &mut m);
        let d = m.dests.iter().find(|d| d.addr == rs).expect("kept");
        assert_eq!(d.id, id, "the checker was not restarted");
        assert!(!d.checker.is_up());
        assert!(down(&plane), "the down server stays out of the table");

        // A changed check (delay_loop) restarts the checker: fresh (up, no alpha).
        let changed = keepalived("delay_loop 7");
        *plane.set.lock().expect("set") = changed.services.clone();
        let mut m = Monitor::build(&plane, &clock, (3, changed.health), Some(m));
        apply(&plane, &mut m);
        let d = m.dests.iter().find(|d| d.addr == rs).expect("restarted");
        assert_ne!(d.id, id, "a new checker");
        assert!(d.checker.is_up());
        assert!(!down(&plane), "the new checker starts from up");
    }

    #[test]
    fn a_probes_wall_time_lands_in_the_check_histogram() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let lo = Ipv4Addr::LOCALHOST;
        let key = ServiceKey {
            vip: Ipv4Addr::new(10, 0, 0, 100),
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
