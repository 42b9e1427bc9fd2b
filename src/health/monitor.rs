//! The checkers of one generation of the health settings, and what a reload does to them.
//!
//! A reload (SIGHUP, `adm --reload`) hands the monitor a new [`HealthConfig`] and a new
//! configured table. [`Monitor::build`] then does what keepalived does on a reload:
//!
//! - a real server checked with the same checks (service, address, port, every
//!   [`CheckSpec`](super::config::CheckSpec), and the service's `delay_loop` and `alpha` the
//!   checks inherit) keeps its checker: its up/down state, failure counts and timers, and its
//!   edit in the live table; a new weight or `inhibit_on_failure` is applied to the kept checker;
//! - a real server whose checks changed gets a new checker (its old edit undone first: the new
//!   checker starts from its own initial state), one no longer checked loses its checker and
//!   its edit (it is up, as every unchecked server is);
//! - a service with the same quorum settings (`quorum`, `hysteresis`, `sorry_server`,
//!   `sorry_server_inhibit`) keeps its quorum state and its sorry server, so a reload neither
//!   brings the real servers back nor runs `quorum_down` again; others start afresh.
//!
//! So a reload of an unchanged file changes nothing, however often it comes.

use std::net::IpAddr;

use super::checker::Checker;
use super::config::{self, HealthConfig, ServiceHealth};
use super::plane::{Health, HealthPlane, Sorry};
use super::service::QuorumState;
use crate::model::ServiceKey;
use crate::time::Clock;

/// One checked real server.
pub(super) struct Dest {
    /// Names the dest in probe results across reloads (indices change, ids do not).
    pub(super) id: u64,
    /// Its service's index in [`Monitor::services`].
    pub(super) service: usize,
    pub(super) addr: IpAddr,
    pub(super) port: u16,
    pub(super) inhibit: bool,
    pub(super) configured_weight: u32,
    pub(super) checker: Checker,
    pub(super) specs: Vec<config::CheckSpec>,
    /// The service settings the checker was made with (a reload keeps the checker only when
    /// they and `specs` are unchanged).
    delay_loop: std::time::Duration,
    alpha: bool,
}

/// One service with health settings.
pub(super) struct Service {
    pub(super) key: ServiceKey,
    pub(super) cfg: ServiceHealth,
    pub(super) quorum: QuorumState,
}

/// What the last [`Monitor::build`] did to the checkers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Changes {
    /// Checkers carried over with their state.
    pub(super) kept: usize,
    /// Of those, the ones given a new weight or `inhibit_on_failure`.
    pub(super) updated: usize,
    /// Checkers of real servers that had none.
    pub(super) started: usize,
    /// Checkers replaced by a new one because their checks changed.
    pub(super) restarted: usize,
    /// Checkers of real servers no longer checked (or no longer in the table).
    pub(super) stopped: usize,
}

impl Changes {
    /// Whether a checker was updated, started, restarted or stopped.
    pub(super) fn any(&self) -> bool {
        self.updated + self.started + self.restarted + self.stopped > 0
    }
}

/// The checkers of one generation of the health config.
pub(super) struct Monitor {
    pub(super) generation: u64,
    pub(super) services: Vec<Service>,
    pub(super) dests: Vec<Dest>,
    next_id: u64,
    /// What the build of this generation did (all `started` for the first one).
    pub(super) changes: Changes,
}

/// Whether a service's quorum state carries over from `old` to `new` settings.
fn same_quorum(old: &ServiceHealth, new: &ServiceHealth) -> bool {
    (
        old.quorum,
        old.hysteresis,
        old.sorry_server,
        old.sorry_server_inhibit,
    ) == (
        new.quorum,
        new.hysteresis,
        new.sorry_server,
        new.sorry_server_inhibit,
    )
}

impl Monitor {
    /// Starts the checkers of `health` over `plane`'s configured table, carrying over from
    /// `old` (the previous generation) every checker and quorum state whose settings did not
    /// change; every edit of `old` that is not carried over is undone. `seed` gives each new
    /// checker its warmup seed.
    pub(super) fn build<P: HealthPlane>(
        plane: &P,
        clock: &Clock,
        (generation, health): (u64, HealthConfig),
        old: Option<Monitor>,
        mut seed: impl FnMut() -> u64,
    ) -> Monitor {
        let reloading = old.is_some();
        let (mut old_dests, old_services, mut next_id) = match old {
            Some(m) => (m.dests, m.services, m.next_id),
            None => (Vec::new(), Vec::new(), 0),
        };
        let old_keys: Vec<ServiceKey> = old_services.iter().map(|s| s.key).collect();
        let mut old_services: Vec<Option<Service>> = old_services.into_iter().map(Some).collect();
        let set = plane.configured();
        let mut services = Vec::new();
        let mut dests = Vec::new();
        let mut changes = Changes::default();
        // Services whose quorum state is new (their sorry server is set up afresh below).
        let mut fresh = Vec::new();
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
                let addr = d.addr;
                let same = old_dests.iter().position(|o| {
                    old_keys.get(o.service) == Some(key)
                        && (o.addr, o.port) == (addr, port)
                        && o.specs == dh.checks
                        && (o.delay_loop, o.alpha) == (cfg.delay_loop, cfg.alpha)
                });
                if let Some(i) = same {
                    let mut kept = old_dests.swap_remove(i);
                    kept.service = si;
                    if kept.update(plane, *key, d.weight, dh.inhibit_on_failure) {
                        changes.updated += 1;
                    }
                    changes.kept += 1;
                    dests.push(kept);
                    continue;
                }
                let replaces = old_dests.iter().any(|o| {
                    old_keys.get(o.service) == Some(key) && (o.addr, o.port) == (addr, port)
                });
                if replaces {
                    changes.restarted += 1;
                    log::info!(
                        "tunlb director: health: service {key}: real server {}: its checks \
                         changed, new checker",
                        crate::model::fmt_addr_port(addr, port)
                    );
                } else {
                    changes.started += 1;
                    if reloading {
                        log::info!(
                            "tunlb director: health: service {key}: real server {}: \
                             checker started",
                            crate::model::fmt_addr_port(addr, port)
                        );
                    }
                }
                next_id += 1;
                dests.push(Dest {
                    id: next_id,
                    service: si,
                    addr,
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
            let old_service = old_keys
                .iter()
                .position(|k| k == key)
                .and_then(|i| old_services[i].take_if(|o| same_quorum(&o.cfg, cfg)));
            let quorum = match old_service {
                Some(o) => o.quorum,
                None => {
                    fresh.push(si);
                    let alive = alive_weight(svc, *key, &dests, si);
                    QuorumState::new(cfg.quorum, cfg.hysteresis, alive)
                }
            };
            services.push(Service {
                key: *key,
                cfg: cfg.clone(),
                quorum,
            });
        }
        // Undo what the old checkers did and the new ones do not carry on: a new checker
        // starts from its own initial state (up, or down with alpha) in the table.
        for o in &old_dests {
            let Some(key) = old_keys.get(o.service) else {
                continue;
            };
            let replaced = dests.iter().any(|d| {
                services.get(d.service).map(|s| s.key) == Some(*key)
                    && (d.addr, d.port) == (o.addr, o.port)
            });
            if !replaced {
                changes.stopped += 1;
                log::info!(
                    "tunlb director: health: service {key}: real server {}: no longer \
                     checked, checker stopped",
                    crate::model::fmt_addr_port(o.addr, o.port)
                );
            }
            let _ = plane.set_dest_health(*key, o.addr, o.port, Health::Up);
        }
        // The sorry servers of the quorum states that were not carried over.
        for o in old_services.iter().flatten() {
            let _ = plane.set_sorry_server(o.key, None);
        }
        for s in fresh.iter().filter_map(|&si| services.get(si)) {
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
            changes,
        }
    }
}

impl Dest {
    /// A kept checker gets its real server's new configured `weight` and `inhibit_on_failure`;
    /// a down server's edit in the table follows the new `inhibit` (weight 0 or out). Returns
    /// whether either changed.
    fn update<P: HealthPlane>(
        &mut self,
        plane: &P,
        key: ServiceKey,
        weight: u32,
        inhibit: bool,
    ) -> bool {
        let reweighted = weight != self.configured_weight;
        if reweighted {
            self.configured_weight = weight;
            self.checker.set_configured_weight(weight);
        }
        if inhibit == self.inhibit {
            return reweighted;
        }
        self.inhibit = inhibit;
        if self.checker.is_up() {
            return true;
        }
        let health = if inhibit {
            Health::Weight(0)
        } else {
            Health::Down
        };
        let what = if inhibit { "weight 0" } else { "removed" };
        match plane.set_dest_health(key, self.addr, self.port, health) {
            Ok(_) => log::info!(
                "tunlb director: health: service {key}: real server {} down, \
                 inhibit_on_failure now {inhibit}: {what}",
                crate::model::fmt_addr_port(self.addr, self.port)
            ),
            Err(e) => log::error!(
                "tunlb director: health: service {key}: real server {} down, \
                 inhibit_on_failure now {inhibit}: {what}: not applied: {e}",
                crate::model::fmt_addr_port(self.addr, self.port)
            ),
        }
        true
    }
}

/// The sum of the weights of `svc`'s (service `key`, index `si`) alive real servers;
/// unchecked ones count as alive.
pub(super) fn alive_weight(
    svc: &crate::model::ServiceConfig,
    key: ServiceKey,
    dests: &[Dest],
    si: usize,
) -> u64 {
    svc.dests
        .iter()
        .map(|d| {
            let port = d.port_in(key);
            match dests
                .iter()
                .find(|x| x.service == si && (x.addr, x.port) == (d.addr, port))
            {
                Some(x) if x.checker.is_up() => u64::from(x.checker.weight()),
                Some(_) => 0,
                None => u64::from(d.weight),
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::health::checker::{Action, CheckOutcome};
    use crate::model::ServiceSet;

    const RS1: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1));
    const RS2: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2));
    const RS6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1));
    const RS7: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2));

    /// A plane without a data path: the configured table, the health checkers' edits, and how
    /// many edits changed something (each is a publish of the table in the director).
    #[derive(Default)]
    struct FakePlane {
        set: Mutex<ServiceSet>,
        dests: Mutex<HashMap<(ServiceKey, IpAddr, u16), Health>>,
        sorry: Mutex<HashMap<ServiceKey, Sorry>>,
        publishes: Mutex<usize>,
    }

    impl FakePlane {
        fn health(&self, addr: IpAddr) -> Health {
            let d = self.dests.lock().expect("dests");
            let mut of = d
                .iter()
                .filter(|((_, a, _), _)| *a == addr)
                .map(|(_, h)| *h);
            of.next().unwrap_or(Health::Up)
        }
        fn sorry(&self) -> Option<Sorry> {
            self.sorry.lock().expect("sorry").values().next().copied()
        }
        fn publishes(&self) -> usize {
            *self.publishes.lock().expect("publishes")
        }
        fn published(&self, changed: bool) -> Result<bool, String> {
            *self.publishes.lock().expect("publishes") += usize::from(changed);
            Ok(changed)
        }
    }

    impl HealthPlane for FakePlane {
        type Error = String;
        fn configured(&self) -> ServiceSet {
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
            addr: IpAddr,
            port: u16,
            health: Health,
        ) -> Result<bool, String> {
            let mut d = self.dests.lock().expect("dests");
            let old = match health {
                Health::Up => d.remove(&(service, addr, port)),
                h => d.insert((service, addr, port), h),
            };
            drop(d);
            self.published(old.unwrap_or(Health::Up) != health)
        }
        fn set_sorry_server(&self, key: ServiceKey, sorry: Option<Sorry>) -> Result<bool, String> {
            let mut s = self.sorry.lock().expect("sorry");
            let old = match sorry {
                Some(x) => s.insert(key, x),
                None => s.remove(&key),
            };
            drop(s);
            self.published(old != sorry)
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
            _: IpAddr,
            _: u16,
            _: &'static str,
            _: std::time::Duration,
        ) {
        }
    }

    /// A real server of the test's keepalived.conf.
    #[derive(Clone, Copy)]
    struct Rs {
        addr: IpAddr,
        weight: u32,
        /// The TCP_CHECK's connect_timeout; `None`: no checker.
        timeout: Option<u32>,
        inhibit: bool,
    }

    fn rs(addr: IpAddr) -> Rs {
        Rs {
            addr,
            weight: 1,
            timeout: Some(3),
            inhibit: false,
        }
    }

    /// A keepalived.conf: 10.0.0.100:80 over `servers`, each with a TCP_CHECK (retry 3, no
    /// warmup); with `quorum` > 0 also a quorum, hysteresis 0 and a sorry server.
    fn conf(delay_loop: u32, servers: &[Rs], quorum: u32) -> String {
        conf_at("10.0.0.100", delay_loop, servers, quorum)
    }

    /// [`conf`] with the VIP `vip`.
    fn conf_at(vip: &str, delay_loop: u32, servers: &[Rs], quorum: u32) -> String {
        let mut t = format!(
            "virtual_server {vip} 80 {{\n delay_loop {delay_loop}\n lb_algo rr\n \
             lb_kind TUN\n protocol TCP\n"
        );
        if quorum > 0 {
            t += &format!(" quorum {quorum}\n hysteresis 0\n sorry_server 10.0.9.9 80\n");
        }
        for r in servers {
            t += &format!(" real_server {} 80 {{\n  weight {}\n", r.addr, r.weight);
            if r.inhibit {
                t += "  inhibit_on_failure\n";
            }
            if let Some(timeout) = r.timeout {
                t += &format!(
                    "  TCP_CHECK {{\n   connect_timeout {timeout}\n   retry 3\n   \
                     delay_before_retry 1\n   warmup 0\n  }}\n"
                );
            }
            t += " }\n";
        }
        t + "}\n"
    }

    /// Loads `text` as a reload does (the table first, then the health settings) and builds
    /// generation `generation` of the checkers over `old`.
    fn load(plane: &FakePlane, text: &str, generation: u64, old: Option<Monitor>) -> Monitor {
        let k = crate::control::keepalived::parse_str(text, "keepalived.conf").expect("parse");
        *plane.set.lock().expect("set") = k.services;
        let clock = Clock::new();
        let mut m = Monitor::build(plane, &clock, (generation, k.health), old, || 0);
        apply(plane, &mut m);
        m
    }

    /// Applies every pending action of `m`'s checkers and services the way the monitor does
    /// (probes are not run: the tests hand in their results).
    fn apply(plane: &FakePlane, m: &mut Monitor) {
        for d in &mut m.dests {
            let key = m.services[d.service].key;
            while let Some(a) = d.checker.poll_action() {
                let h = match a {
                    Action::SetDown { .. } if d.inhibit => Health::Weight(0),
                    Action::SetDown { .. } => Health::Down,
                    Action::SetUp { .. } => Health::Up,
                    _ => continue,
                };
                let _ = plane.set_dest_health(key, d.addr, d.port, h);
            }
        }
        crate::health::quorum(plane, &m.dests, &mut m.services);
    }

    fn dest(m: &Monitor, addr: IpAddr) -> &Dest {
        m.dests.iter().find(|d| d.addr == addr).expect("checked")
    }

    /// `n` failed probes of `addr`'s check, then the monitor's actions.
    fn fail(plane: &FakePlane, m: &mut Monitor, addr: IpAddr, n: u32) {
        let now = Clock::new().now();
        let d = m
            .dests
            .iter_mut()
            .find(|d| d.addr == addr)
            .expect("checked");
        for _ in 0..n {
            d.checker
                .handle_result(now, 0, CheckOutcome::failed("connection refused"));
        }
        apply(plane, m);
    }

    fn kept(n: usize) -> Changes {
        Changes {
            kept: n,
            ..Changes::default()
        }
    }

    #[test]
    fn ipv6_real_servers_are_checked_taken_out_and_brought_back() {
        let plane = FakePlane::default();
        let text = conf_at("2001:db8::100", 6, &[rs(RS6), rs(RS7)], 0);
        let mut m = load(&plane, &text, 1, None);
        assert_eq!(
            m.changes.started, 2,
            "both IPv6 real servers have a checker"
        );
        fail(&plane, &mut m, RS7, 4);
        assert_eq!(plane.health(RS7), Health::Down);
        assert_eq!(plane.health(RS6), Health::Up);
        let d = m.dests.iter_mut().find(|d| d.addr == RS7).expect("RS7");
        d.checker
            .handle_result(Clock::new().now(), 0, CheckOutcome::ok("connected"));
        apply(&plane, &mut m);
        assert_eq!(plane.health(RS7), Health::Up);
        // A reload of the same file keeps both checkers.
        let m = load(&plane, &text, 2, Some(m));
        assert_eq!(m.changes, kept(2));
    }

    #[test]
    fn reloads_of_an_unchanged_file_keep_state_failure_counts_and_timers() {
        let plane = FakePlane::default();
        let text = conf(6, &[rs(RS1), rs(RS2)], 0);
        let mut m = load(&plane, &text, 1, None);
        assert_eq!(m.changes.started, 2);
        // RS2 fails retry + 1 = 4 times: down. RS1 fails twice: still up, 2 failures counted.
        fail(&plane, &mut m, RS2, 4);
        fail(&plane, &mut m, RS1, 2);
        assert_eq!(plane.health(RS2), Health::Down);
        assert_eq!(plane.health(RS1), Health::Up);
        let ids = (dest(&m, RS1).id, dest(&m, RS2).id);
        let due = (
            dest(&m, RS1).checker.poll_timeout(),
            dest(&m, RS2).checker.poll_timeout(),
        );
        let publishes = plane.publishes();

        // Ten reloads of the same file (the soak reloads every second).
        for generation in 2..12 {
            m = load(&plane, &text, generation, Some(m));
            assert_eq!(m.changes, kept(2));
        }
        assert_eq!(
            (dest(&m, RS1).id, dest(&m, RS2).id),
            ids,
            "no checker restarted"
        );
        let after = (
            dest(&m, RS1).checker.poll_timeout(),
            dest(&m, RS2).checker.poll_timeout(),
        );
        assert_eq!(after, due, "the timers carried over");
        assert!(!dest(&m, RS2).checker.is_up());
        assert_eq!(plane.health(RS2), Health::Down, "the down server stays out");
        assert_eq!(plane.publishes(), publishes, "the reloads edited nothing");

        // RS1's two failures were kept: two more take it down (a new checker needs four).
        fail(&plane, &mut m, RS1, 2);
        assert_eq!(plane.health(RS1), Health::Down);
    }

    #[test]
    fn a_changed_check_restarts_only_its_checker() {
        let plane = FakePlane::default();
        let mut m = load(&plane, &conf(6, &[rs(RS1), rs(RS2)], 0), 1, None);
        fail(&plane, &mut m, RS1, 4);
        fail(&plane, &mut m, RS2, 4);
        let (id1, id2) = (dest(&m, RS1).id, dest(&m, RS2).id);

        // RS2's connect_timeout changes: RS2 gets a new checker, which starts up.
        let slower = Rs {
            timeout: Some(5),
            ..rs(RS2)
        };
        let mut m = load(&plane, &conf(6, &[rs(RS1), slower], 0), 2, Some(m));
        let want = Changes {
            kept: 1,
            restarted: 1,
            ..Changes::default()
        };
        assert_eq!(m.changes, want);
        assert_eq!(dest(&m, RS1).id, id1);
        assert_eq!(plane.health(RS1), Health::Down, "RS1's checker was kept");
        assert_ne!(dest(&m, RS2).id, id2, "a new checker for RS2");
        assert!(dest(&m, RS2).checker.is_up());
        assert_eq!(
            plane.health(RS2),
            Health::Up,
            "the new checker starts from up"
        );

        // The service's delay_loop (which both checks inherit) changes: both restart.
        fail(&plane, &mut m, RS2, 4);
        let m = load(&plane, &conf(7, &[rs(RS1), slower], 0), 3, Some(m));
        let want = Changes {
            restarted: 2,
            ..Changes::default()
        };
        assert_eq!(m.changes, want);
        assert_eq!(
            (plane.health(RS1), plane.health(RS2)),
            (Health::Up, Health::Up)
        );
    }

    #[test]
    fn a_removed_or_unchecked_real_server_loses_its_checker_and_its_edit() {
        let plane = FakePlane::default();
        let mut m = load(&plane, &conf(6, &[rs(RS1), rs(RS2)], 0), 1, None);
        fail(&plane, &mut m, RS2, 4);
        assert_eq!(plane.health(RS2), Health::Down);

        // RS2 still in the table, its check removed: unchecked servers are up.
        let unchecked = Rs {
            timeout: None,
            ..rs(RS2)
        };
        let m = load(&plane, &conf(6, &[rs(RS1), unchecked], 0), 2, Some(m));
        let want = Changes {
            kept: 1,
            stopped: 1,
            ..Changes::default()
        };
        assert_eq!(m.changes, want);
        assert!(m.dests.iter().all(|d| d.addr != RS2));
        assert_eq!(plane.health(RS2), Health::Up);

        // Checked again and down, then removed from the file: its checker and edit go.
        let mut m = load(&plane, &conf(6, &[rs(RS1), rs(RS2)], 0), 3, Some(m));
        assert_eq!(m.changes.started, 1);
        fail(&plane, &mut m, RS2, 4);
        let id2 = dest(&m, RS2).id;
        let m = load(&plane, &conf(6, &[rs(RS1)], 0), 4, Some(m));
        assert_eq!(m.changes.stopped, 1);
        assert!(
            m.dests.iter().all(|d| d.id != id2),
            "its probe results find no one"
        );
        assert!(
            plane.dests.lock().expect("dests").is_empty(),
            "no edit left"
        );
    }

    #[test]
    fn a_lost_quorum_and_its_sorry_server_survive_a_reload() {
        let plane = FakePlane::default();
        let text = conf(6, &[rs(RS1), rs(RS2)], 2);
        let mut m = load(&plane, &text, 1, None);
        assert_eq!(plane.sorry(), None);
        fail(&plane, &mut m, RS2, 4);
        let sorry = plane.sorry().expect("the sorry server");
        assert!(sorry.active, "alive weight 1 < quorum 2");
        let publishes = plane.publishes();

        // Reloads of the same file: the quorum stays lost, the sorry server in use, and no
        // edit is undone and redone (nor quorum_down run again).
        for generation in 2..5 {
            m = load(&plane, &text, generation, Some(m));
            assert!(!m.services[0].quorum.is_up());
        }
        assert_eq!(plane.sorry(), Some(sorry));
        assert_eq!(plane.publishes(), publishes);

        // A new quorum (1): the service starts afresh, has its quorum, no sorry server.
        let m = load(&plane, &conf(6, &[rs(RS1), rs(RS2)], 1), 5, Some(m));
        assert!(m.services[0].quorum.is_up());
        assert_eq!(plane.sorry(), None);
        assert_eq!(m.changes, kept(2), "the checkers are kept all the same");
    }

    #[test]
    fn a_new_weight_or_inhibit_on_failure_applies_to_the_kept_checker() {
        let plane = FakePlane::default();
        let mut m = load(&plane, &conf(6, &[rs(RS1), rs(RS2)], 0), 1, None);
        fail(&plane, &mut m, RS2, 4);
        let heavier = Rs {
            weight: 3,
            ..rs(RS1)
        };
        let inhibit = Rs {
            inhibit: true,
            ..rs(RS2)
        };
        let mut m = load(&plane, &conf(6, &[heavier, inhibit], 0), 2, Some(m));
        let want = Changes {
            updated: 2,
            ..kept(2)
        };
        assert_eq!(m.changes, want);
        assert_eq!(dest(&m, RS1).checker.weight(), 3);
        assert_eq!(plane.health(RS1), Health::Up, "the table has weight 3");
        assert_eq!(plane.health(RS2), Health::Weight(0), "down, now inhibited");

        // Back up, then down again: inhibited (weight 0), not removed.
        let now = Clock::new().now();
        let d = m.dests.iter_mut().find(|d| d.addr == RS2).expect("RS2");
        d.checker
            .handle_result(now, 0, CheckOutcome::ok("connected"));
        apply(&plane, &mut m);
        assert_eq!(plane.health(RS2), Health::Up);
        fail(&plane, &mut m, RS2, 4);
        assert_eq!(plane.health(RS2), Health::Weight(0));
    }
}
