//! The per-real-server checker: a sans-IO state machine with keepalived's timing.
//!
//! Events in: [`Checker::handle_timeout`] (a probe is due) and [`Checker::handle_result`] (a
//! probe finished). Actions out: [`Checker::poll_action`] ([`Action::Probe`] asks the caller to
//! run check `i`; [`Action::SetUp`] / [`Action::SetDown`] / [`Action::SetWeight`] change the
//! server in the table). [`Checker::poll_timeout`] says when to call `handle_timeout` next.
//!
//! Rules (keepalived's):
//! - each check runs every `delay_loop`, counted from the end of the previous probe (a check may
//!   have a `delay_loop` of its own, [`CheckSpec::delay_loop`]; else the service's);
//! - a failed probe is retried `retry` times, `delay_before_retry` apart; the check fails after
//!   `retry + 1` failures in a row, and one success brings it back;
//! - the server is up only while every one of its checks is up;
//! - `alpha`: the check starts down and comes up at its first success (default: starts up); a
//!   check may set it for itself ([`CheckSpec::alpha`]), else the service's applies; the server
//!   starts down when any of its checks does;
//! - warmup: the first probe of each check waits a delay in `0..warmup` (default warmup: the
//!   delay_loop), derived from a seed the caller passes in (no RNG inside);
//! - MISC_CHECK dynamic: a success may carry a weight ([`CheckOutcome::weight`]).

use std::collections::VecDeque;

use super::config::CheckSpec;
use crate::time::{Duration, Instant};

/// The result of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOutcome {
    /// Whether the probe succeeded.
    pub ok: bool,
    /// MISC_CHECK dynamic: the weight the program asked for (exit 2 + N); `None` = configured.
    pub weight: Option<u32>,
    /// What happened, for the log: "HTTP status 503 on /", "connect timeout 3s".
    pub reason: String,
}

impl CheckOutcome {
    /// A successful probe.
    pub fn ok(reason: impl Into<String>) -> Self {
        CheckOutcome {
            ok: true,
            weight: None,
            reason: reason.into(),
        }
    }

    /// A failed probe.
    pub fn failed(reason: impl Into<String>) -> Self {
        CheckOutcome {
            ok: false,
            weight: None,
            reason: reason.into(),
        }
    }
}

/// What the checker asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run the probe of check number `.0` (an index into the specs) and report its result.
    Probe(usize),
    /// Put the server (back) into the table with its weight.
    SetUp {
        /// Why (the successful probe).
        reason: String,
    },
    /// Take the server out (or set its weight to 0 with `inhibit_on_failure`).
    SetDown {
        /// Why (the last failed probe).
        reason: String,
    },
    /// MISC_CHECK dynamic: set the server's weight (the configured one when the program exits 0
    /// again).
    SetWeight(u32),
}

#[derive(Clone, Debug)]
struct Check {
    delay_loop: Duration,
    retry: u32,
    delay_before_retry: Duration,
    failures: u32,
    up: bool,
    /// When the next probe is due; `None` while one is in flight.
    due: Option<Instant>,
    weight: Option<u32>,
}

/// The checks of one real server.
#[derive(Clone, Debug)]
pub struct Checker {
    checks: Vec<Check>,
    up: bool,
    configured_weight: u32,
    weight: u32,
    actions: VecDeque<Action>,
}

impl Checker {
    /// A checker for a server with these checks, created at `now`. `delay_loop` and `alpha` are
    /// the service's, for the checks that do not set their own. `warmup_seed` spreads the
    /// first probes (any value; pass a random one in production, a fixed one in tests).
    pub fn new(
        now: Instant,
        delay_loop: Duration,
        specs: &[CheckSpec],
        alpha: bool,
        weight: u32,
        warmup_seed: u64,
    ) -> Checker {
        let mut seed = warmup_seed;
        let checks = specs
            .iter()
            .map(|s| {
                let delay_loop = s.delay_loop.unwrap_or(delay_loop);
                let alpha = s.alpha.unwrap_or(alpha);
                let warmup = s.warmup.unwrap_or(delay_loop).as_millis() as u64;
                // splitmix64 step: one value per check from one seed.
                seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = seed;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                let delay = if warmup == 0 { 0 } else { z % warmup };
                Check {
                    delay_loop,
                    retry: s.retry,
                    delay_before_retry: s.delay_before_retry(),
                    failures: 0,
                    up: !alpha,
                    due: Some(now + Duration::from_millis(delay)),
                    weight: None,
                }
            })
            .collect::<Vec<Check>>();
        let up = checks.iter().all(|c| c.up);
        let mut c = Checker {
            checks,
            up,
            configured_weight: weight,
            weight,
            actions: VecDeque::new(),
        };
        if !up {
            c.actions.push_back(Action::SetDown {
                reason: "alpha: down until its first successful check".into(),
            });
        }
        c
    }

    /// Whether the server is up (every check up).
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The weight the server has while up.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// A reload changed the server's configured weight: it is the weight from now on unless a
    /// MISC_CHECK asked for one (that stays until its next result). No action: the caller's
    /// table already carries the configured weight.
    pub fn set_configured_weight(&mut self, weight: u32) {
        self.configured_weight = weight;
        self.weight = self
            .checks
            .iter()
            .rev()
            .find_map(|c| c.weight)
            .unwrap_or(weight);
    }

    /// When [`Checker::handle_timeout`] should next be called (`None`: only probes in flight).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.checks.iter().filter_map(|c| c.due).min()
    }

    /// Starts every probe that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (i, c) in self.checks.iter_mut().enumerate() {
            if c.due.is_some_and(|d| d <= now) {
                c.due = None;
                self.actions.push_back(Action::Probe(i));
            }
        }
    }

    /// A probe of check `index` finished at `now`.
    pub fn handle_result(&mut self, now: Instant, index: usize, outcome: CheckOutcome) {
        let Some(c) = self.checks.get_mut(index) else {
            return;
        };
        let delay_loop = c.delay_loop;
        if outcome.ok {
            c.failures = 0;
            c.up = true;
            c.weight = outcome.weight;
            c.due = Some(now + delay_loop);
        } else {
            c.failures += 1;
            if c.failures > c.retry {
                c.failures = 0;
                c.up = false;
                c.due = Some(now + delay_loop);
            } else {
                c.due = Some(now + c.delay_before_retry);
            }
        }
        let all_up = self.checks.iter().all(|c| c.up);
        if all_up != self.up {
            self.up = all_up;
            let reason = outcome.reason.clone();
            self.actions.push_back(if all_up {
                Action::SetUp { reason }
            } else {
                Action::SetDown { reason }
            });
        }
        // Dynamic weight: the last check that asked for one wins.
        let wanted = self
            .checks
            .iter()
            .rev()
            .find_map(|c| c.weight)
            .unwrap_or(self.configured_weight);
        if wanted != self.weight {
            self.weight = wanted;
            if self.up {
                self.actions.push_back(Action::SetWeight(wanted));
            }
        }
    }

    /// The next action, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::config::{CheckKind, UrlSpec};

    fn http(timeout: u64, retry: u32, dbr: u64) -> CheckSpec {
        CheckSpec {
            connect_timeout: Duration::from_secs(timeout),
            retry,
            delay_before_retry: Some(Duration::from_secs(dbr)),
            warmup: Some(Duration::ZERO),
            ..CheckSpec::new(CheckKind::HttpGet {
                urls: vec![UrlSpec {
                    path: "/".into(),
                    status_code: Some(200),
                    digest: None,
                }],
                virtualhost: None,
            })
        }
    }

    /// A checker started at 0 s with one HTTP check, `delay_loop` seconds, no alpha, weight 1,
    /// no warmup.
    fn http_checker(delay_loop: u64, spec: CheckSpec) -> Checker {
        Checker::new(
            secs(0),
            Duration::from_secs(delay_loop),
            &[spec],
            false,
            1,
            0,
        )
    }

    fn drain(c: &mut Checker) -> Vec<Action> {
        std::iter::from_fn(|| c.poll_action()).collect()
    }

    fn secs(s: u64) -> Instant {
        Instant::from_secs(s)
    }

    /// Runs probes of check 0 that all end `took` after they start, with `ok(i)` deciding the
    /// i-th, until `end`; returns (time, action) of every up/down/weight action.
    fn run(
        c: &mut Checker,
        end: Instant,
        took: Duration,
        ok: impl Fn(usize) -> CheckOutcome,
    ) -> Vec<(Instant, Action)> {
        let mut out = Vec::new();
        let mut n = 0;
        while let Some(t) = c.poll_timeout() {
            if t > end {
                break;
            }
            c.handle_timeout(t);
            for a in drain(c) {
                match a {
                    Action::Probe(i) => {
                        c.handle_result(t + took, i, ok(n));
                        n += 1;
                    }
                    other => out.push((t, other)),
                }
            }
            for a in drain(c) {
                out.push((t + took, a));
            }
        }
        out
    }

    #[test]
    fn down_after_retry_plus_one_failures_spaced_by_delay_before_retry() {
        // delay_loop 10, connect_timeout 2, retry 3, delay_before_retry 4.
        let mut c = http_checker(10, http(2, 3, 4));
        let acts = run(&mut c, secs(100), Duration::from_secs(2), |i| {
            if i == 0 {
                CheckOutcome::ok("HTTP status 200 on /")
            } else {
                CheckOutcome::failed("connect timeout 2s")
            }
        });
        // Probe 0 at 0 (ok, ends 2); failures at 12, 18, 24, 30 (each ends 2 s later, retries
        // 4 s after the end): the 4th failure ends at 32.
        assert_eq!(
            acts.first(),
            Some(&(
                secs(32),
                Action::SetDown {
                    reason: "connect timeout 2s".into()
                }
            ))
        );
        assert_eq!(
            acts.len(),
            1,
            "no flapping while it keeps failing: {acts:?}"
        );
    }

    #[test]
    fn one_success_brings_it_back() {
        let mut c = http_checker(5, http(1, 1, 1));
        let acts = run(&mut c, secs(60), Duration::from_secs(1), |i| {
            if (1..3).contains(&i) {
                CheckOutcome::failed("HTTP status 503 on /")
            } else {
                CheckOutcome::ok("HTTP status 200 on /")
            }
        });
        // ok at 0..1; fail at 6..7, retry at 8..9 -> down at 9; next probe at 14..15 -> up.
        assert_eq!(
            acts,
            vec![
                (
                    secs(9),
                    Action::SetDown {
                        reason: "HTTP status 503 on /".into()
                    }
                ),
                (
                    secs(15),
                    Action::SetUp {
                        reason: "HTTP status 200 on /".into()
                    }
                ),
            ]
        );
    }

    #[test]
    fn a_single_failure_is_retried_not_fatal() {
        let mut c = http_checker(5, http(1, 1, 1));
        let acts = run(&mut c, secs(60), Duration::from_secs(1), |i| {
            if i == 2 {
                CheckOutcome::failed("connect refused")
            } else {
                CheckOutcome::ok("ok")
            }
        });
        assert!(acts.is_empty(), "{acts:?}");
    }

    #[test]
    fn alpha_starts_down_until_first_success() {
        let mut c = Checker::new(
            secs(0),
            Duration::from_secs(5),
            &[http(1, 0, 1)],
            true,
            1,
            0,
        );
        assert!(!c.is_up());
        assert!(matches!(c.poll_action(), Some(Action::SetDown { .. })));
        let acts = run(&mut c, secs(20), Duration::from_secs(1), |_| {
            CheckOutcome::ok("ok")
        });
        assert_eq!(
            acts,
            vec![(
                secs(1),
                Action::SetUp {
                    reason: "ok".into()
                }
            )]
        );
    }

    #[test]
    fn a_check_with_its_own_delay_loop_runs_at_its_own_pace() {
        // Service delay_loop 10; the TCP check says 3 (a real_server or checker delay_loop).
        let fast = CheckSpec {
            warmup: Some(Duration::ZERO),
            delay_loop: Some(Duration::from_secs(3)),
            ..CheckSpec::new(CheckKind::Tcp)
        };
        let mut c = Checker::new(
            secs(0),
            Duration::from_secs(10),
            &[http(1, 1, 1), fast],
            false,
            1,
            0,
        );
        let mut starts = Vec::new();
        while let Some(t) = c.poll_timeout().filter(|t| *t <= secs(20)) {
            c.handle_timeout(t);
            for a in drain(&mut c) {
                if let Action::Probe(i) = a {
                    starts.push((t, i));
                    c.handle_result(t, i, CheckOutcome::ok("ok"));
                }
            }
        }
        let at = |i| {
            starts
                .iter()
                .filter(|(_, k)| *k == i)
                .map(|(t, _)| *t)
                .collect::<Vec<_>>()
        };
        assert_eq!(at(0), [secs(0), secs(10), secs(20)]);
        assert_eq!(
            at(1),
            [0, 3, 6, 9, 12, 15, 18].map(secs),
            "its own delay_loop"
        );
    }

    #[test]
    fn alpha_of_one_check_starts_the_server_down_until_that_check_succeeds() {
        // The service has no alpha; the second check sets it for itself.
        let alpha_check = CheckSpec {
            warmup: Some(Duration::ZERO),
            retry: 0,
            alpha: Some(true),
            ..CheckSpec::new(CheckKind::Tcp)
        };
        let mut c = Checker::new(
            secs(0),
            Duration::from_secs(5),
            &[http(1, 0, 1), alpha_check],
            false,
            1,
            0,
        );
        assert!(!c.is_up());
        assert!(matches!(c.poll_action(), Some(Action::SetDown { .. })));
        c.handle_timeout(secs(0));
        assert_eq!(drain(&mut c), [Action::Probe(0), Action::Probe(1)]);
        c.handle_result(secs(1), 0, CheckOutcome::ok("http ok"));
        assert_eq!(drain(&mut c), [], "still down: the alpha check has not run");
        c.handle_result(secs(1), 1, CheckOutcome::ok("tcp ok"));
        assert_eq!(
            drain(&mut c),
            [Action::SetUp {
                reason: "tcp ok".into()
            }]
        );
        // And a check that says alpha false under a service with alpha starts up.
        let no_alpha = CheckSpec {
            alpha: Some(false),
            ..http(1, 0, 1)
        };
        let c = Checker::new(secs(0), Duration::from_secs(5), &[no_alpha], true, 1, 0);
        assert!(c.is_up());
    }

    #[test]
    fn warmup_defaults_to_the_checks_own_delay_loop() {
        let spec = CheckSpec {
            delay_loop: Some(Duration::from_secs(2)),
            ..http(1, 1, 1)
        };
        let spec = CheckSpec {
            warmup: None,
            ..spec
        };
        for seed in 0..20 {
            let c = Checker::new(
                secs(0),
                Duration::from_secs(60),
                std::slice::from_ref(&spec),
                false,
                1,
                seed,
            );
            let first = c.poll_timeout().expect("a probe is due");
            assert!(first < secs(2), "seed {seed}: {first:?}");
        }
    }

    #[test]
    fn without_alpha_starts_up() {
        let mut c = http_checker(5, http(1, 0, 1));
        assert!(c.is_up());
        assert_eq!(c.poll_action(), None);
    }

    #[test]
    fn warmup_delays_the_first_probe_within_bounds_and_by_seed() {
        let spec = CheckSpec {
            warmup: Some(Duration::from_secs(10)),
            ..http(1, 1, 1)
        };
        let firsts: Vec<Instant> = (0..20)
            .map(|seed| {
                Checker::new(
                    secs(100),
                    Duration::from_secs(60),
                    std::slice::from_ref(&spec),
                    false,
                    1,
                    seed,
                )
                .poll_timeout()
                .unwrap()
            })
            .collect();
        assert!(firsts.iter().all(|t| *t >= secs(100) && *t < secs(110)));
        assert!(firsts.iter().any(|t| *t != firsts[0]), "seeds spread it");
        let no_warmup = http(1, 1, 1);
        let c = Checker::new(
            secs(100),
            Duration::from_secs(60),
            &[no_warmup],
            false,
            1,
            7,
        );
        assert_eq!(c.poll_timeout(), Some(secs(100)));
    }

    #[test]
    fn several_checks_up_only_when_all_up() {
        let specs = [http(1, 0, 1), CheckSpec::new(CheckKind::Tcp)];
        let mut specs = specs.to_vec();
        specs[1].warmup = Some(Duration::ZERO);
        specs[1].retry = 0;
        let mut c = Checker::new(secs(0), Duration::from_secs(5), &specs, false, 1, 0);
        c.handle_timeout(secs(0));
        assert_eq!(drain(&mut c), vec![Action::Probe(0), Action::Probe(1)]);
        c.handle_result(secs(1), 1, CheckOutcome::failed("tcp refused"));
        assert_eq!(
            drain(&mut c),
            vec![Action::SetDown {
                reason: "tcp refused".into()
            }]
        );
        c.handle_result(secs(1), 0, CheckOutcome::ok("http ok"));
        assert_eq!(drain(&mut c), vec![], "still down: the TCP check fails");
        c.handle_timeout(secs(6));
        assert_eq!(drain(&mut c), vec![Action::Probe(0), Action::Probe(1)]);
        c.handle_result(secs(6), 1, CheckOutcome::ok("tcp ok"));
        assert_eq!(
            drain(&mut c),
            vec![Action::SetUp {
                reason: "tcp ok".into()
            }]
        );
    }

    #[test]
    fn misc_dynamic_weight_follows_the_exit_code() {
        let spec = CheckSpec {
            warmup: Some(Duration::ZERO),
            retry: 0,
            ..CheckSpec::new(CheckKind::Misc {
                path: "/bin/check".into(),
                timeout: None,
                dynamic: true,
                user: None,
            })
        };
        let mut c = Checker::new(secs(0), Duration::from_secs(5), &[spec], false, 3, 0);
        let with = |w| CheckOutcome {
            ok: true,
            weight: Some(w),
            reason: format!("exit {}", w + 2),
        };
        c.handle_timeout(secs(0));
        drain(&mut c);
        c.handle_result(secs(0), 0, with(7));
        assert_eq!(drain(&mut c), vec![Action::SetWeight(7)]);
        c.handle_timeout(secs(5));
        drain(&mut c);
        c.handle_result(secs(5), 0, CheckOutcome::ok("exit 0"));
        assert_eq!(
            drain(&mut c),
            vec![Action::SetWeight(3)],
            "exit 0: configured"
        );
        c.handle_timeout(secs(10));
        drain(&mut c);
        c.handle_result(secs(10), 0, CheckOutcome::failed("exit 1"));
        assert_eq!(
            drain(&mut c),
            vec![Action::SetDown {
                reason: "exit 1".into()
            }]
        );
        c.handle_timeout(secs(15));
        drain(&mut c);
        c.handle_result(secs(15), 0, with(2));
        assert_eq!(
            drain(&mut c),
            vec![
                Action::SetUp {
                    reason: "exit 4".into()
                },
                Action::SetWeight(2)
            ]
        );
        assert_eq!(c.weight(), 2);
    }
}
