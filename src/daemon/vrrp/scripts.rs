//! The processes VRRP runs: `vrrp_script` checks (interval, timeout, rise, fall) and the
//! `notify*` scripts, each `/bin/sh -c` as its user ([`crate::sys::script`]: a `vrrp_script`'s
//! `user`, else `script_user`, else `keepalived_script` or `nobody`), in a session of its own,
//! never waited for: the driver polls them ([`Scripts::poll`], [`Notifier::reap`]) so adverts
//! never wait for a script. A `vrrp_script` that overruns its timeout is killed with its
//! process group.

use std::process::Child;

use crate::model::ScriptUser;
use crate::sys::script::{self, RunAs};
use crate::time::{Duration, Instant};
use crate::vrrp::config::{NotifyScript, ScriptConfig};

/// Whether a `vrrp_script` counts as passing, from its results: `rise` successes in a row
/// make a failing script good, `fall` failures in a row make a good one fail. A script starts
/// good (keepalived's default without `init_fail`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptHealth {
    rise: u32,
    fall: u32,
    good: bool,
    streak: u32,
}

impl ScriptHealth {
    /// A good script with these thresholds (0 counts as 1).
    pub fn new(rise: u32, fall: u32) -> ScriptHealth {
        ScriptHealth {
            rise: rise.max(1),
            fall: fall.max(1),
            good: true,
            streak: 0,
        }
    }

    /// Counts one result; returns true when the script's standing changed.
    pub fn record(&mut self, success: bool) -> bool {
        if success == self.good {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        let needed = if self.good { self.fall } else { self.rise };
        if self.streak >= needed {
            self.good = success;
            self.streak = 0;
            return true;
        }
        false
    }

    /// Whether the script counts as passing.
    pub fn is_good(&self) -> bool {
        self.good
    }
}

/// One `vrrp_script` being run every interval.
struct Script {
    cfg: ScriptConfig,
    health: ScriptHealth,
    next: Instant,
    running: Option<(Child, Instant)>,
}

/// Every `vrrp_script`, run on their intervals.
pub struct Scripts {
    scripts: Vec<Script>,
}

impl Scripts {
    /// The scripts, the first runs due at `now`.
    pub fn new(cfgs: &[ScriptConfig], now: Instant) -> Scripts {
        Scripts {
            scripts: cfgs
                .iter()
                .map(|c| Script {
                    health: ScriptHealth::new(c.rise, c.fall),
                    cfg: c.clone(),
                    next: now,
                    running: None,
                })
                .collect(),
        }
    }

    /// Whether the script `name` counts as passing (an unknown name does).
    pub fn is_good(&self, name: &str) -> bool {
        self.scripts
            .iter()
            .find(|s| s.cfg.name == name)
            .is_none_or(|s| s.health.is_good())
    }

    /// The configured weight of script `name`.
    pub fn weight(&self, name: &str) -> i32 {
        self.scripts
            .iter()
            .find(|s| s.cfg.name == name)
            .map_or(0, |s| s.cfg.weight)
    }

    /// Starts the scripts that are due, collects the finished ones, kills the overdue ones.
    /// Returns true when a script's standing changed.
    pub fn poll(&mut self, now: Instant) -> bool {
        let mut changed = false;
        for s in &mut self.scripts {
            if let Some((child, started)) = &mut s.running {
                let outcome = match child.try_wait() {
                    Ok(Some(status)) => Some(status.success()),
                    Ok(None) if now.saturating_since(*started) >= s.cfg.timeout => {
                        log::warn!(
                            "tunlb director: VRRP script {} timed out after {:?}",
                            s.cfg.name,
                            s.cfg.timeout
                        );
                        script::kill_group(child);
                        Some(false)
                    }
                    Ok(None) => None,
                    Err(_) => Some(false),
                };
                if let Some(ok) = outcome {
                    s.running = None;
                    if s.health.record(ok) {
                        changed = true;
                        log::info!(
                            "tunlb director: VRRP script {} now {}",
                            s.cfg.name,
                            if ok { "succeeds" } else { "fails" }
                        );
                    }
                }
            }
            if s.running.is_none() && now >= s.next {
                s.next = now + s.cfg.interval.max(Duration::from_millis(100));
                match start(&s.cfg.script, &[], s.cfg.user.as_ref(), None) {
                    Ok(child) => s.running = Some((child, now)),
                    Err(e) => {
                        log::warn!("tunlb director: VRRP script {}: {e}", s.cfg.name);
                        changed |= s.health.record(false);
                    }
                }
            }
        }
        changed
    }

    /// When [`poll`](Self::poll) should run next: a start due, or a running script to collect
    /// (polled every 50 ms).
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        self.scripts
            .iter()
            .map(|s| {
                if s.running.is_some() {
                    now + Duration::from_millis(50)
                } else {
                    s.next
                }
            })
            .min()
    }

    /// Kills the scripts still running (at exit).
    pub fn stop(&mut self) {
        for s in &mut self.scripts {
            if let Some((mut child, _)) = s.running.take() {
                script::kill_group(&mut child);
            }
        }
    }
}

/// Starts `/bin/sh -c 'SCRIPT ARGS...'` as `own`, else `global` (no stdin, output
/// discarded).
fn start(
    script: &str,
    args: &[&str],
    own: Option<&ScriptUser>,
    global: Option<&ScriptUser>,
) -> std::io::Result<Child> {
    let mut line = script.to_string();
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    let who = RunAs::resolve(own, global)
        .map_err(|e| std::io::Error::other(format!("running {line:?}: {e}")))?;
    script::spawn(&line, &who)
}

/// Runs notify scripts without waiting for them and reaps them later.
#[derive(Default)]
pub struct Notifier {
    children: Vec<Child>,
    user: Option<ScriptUser>,
}

impl Notifier {
    /// A notifier whose scripts run as their own user, else `user` (the global
    /// `script_user`; `None`: the default).
    pub fn new(user: Option<ScriptUser>) -> Notifier {
        Notifier {
            children: Vec::new(),
            user,
        }
    }

    /// Starts `script` (as its own user, else the global one) with `args` appended
    /// (keepalived's `notify`: `INSTANCE NAME STATE PRIORITY`).
    pub fn run(&mut self, script: &NotifyScript, args: &[&str]) {
        let (line, own) = (&script.command, script.user.as_ref());
        match start(line, args, own, self.user.as_ref()) {
            Ok(child) => self.children.push(child),
            Err(e) => log::warn!("tunlb director: notify script {line:?}: {e}"),
        }
    }

    /// Collects the scripts that finished.
    pub fn reap(&mut self) {
        self.children
            .retain_mut(|c| matches!(c.try_wait(), Ok(None)));
    }

    /// Waits up to `budget` for the scripts still running (at exit), then leaves them.
    pub fn finish(&mut self, budget: std::time::Duration) {
        let end = std::time::Instant::now() + budget;
        while !self.children.is_empty() && std::time::Instant::now() < end {
            self.reap();
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_failures_in_a_row_fail_a_script_and_rise_successes_restore_it() {
        let mut h = ScriptHealth::new(2, 3);
        assert!(h.is_good());
        assert!(!h.record(false));
        assert!(!h.record(true), "a success resets the streak");
        assert!(!h.record(false));
        assert!(!h.record(false));
        assert!(h.record(false));
        assert!(!h.is_good());
        assert!(!h.record(true));
        assert!(h.record(true));
        assert!(h.is_good());
    }

    #[test]
    fn a_notify_script_runs_as_its_own_user_else_the_global_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("tunlb-notify-user-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let (own, global) = (dir.join("own"), dir.join("global"));
        let user = |u: &str| ScriptUser {
            user: u.into(),
            group: None,
        };
        let mut n = Notifier::new(Some(user("daemon")));
        n.run(
            &NotifyScript {
                command: format!("id -u > {}", own.display()),
                user: Some(user("nobody")),
            },
            &[],
        );
        n.run(&format!("id -u > {}", global.display()).into(), &[]);
        n.finish(std::time::Duration::from_secs(5));
        let uid = |p: &std::path::Path| std::fs::read_to_string(p).unwrap().trim().to_string();
        // Our effective uid: the owner of the folder we made.
        let euid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&dir).unwrap());
        if euid == 0 {
            let id = |u: &str| RunAs::lookup(u, None).unwrap().uid.to_string();
            assert_eq!(uid(&own), id("nobody"));
            assert_eq!(uid(&global), id("daemon"));
        } else {
            // Not root: no user switch, both run as this process (crate::sys::script::shell).
            assert_eq!(
                (uid(&own), uid(&global)),
                (euid.to_string(), euid.to_string())
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn scripts_run_and_their_results_count() {
        let cfg = |name: &str, script: &str| ScriptConfig {
            name: name.into(),
            script: script.into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            weight: -10,
            rise: 1,
            fall: 1,
            user: None,
        };
        let mut s = Scripts::new(&[cfg("ok", "true"), cfg("bad", "exit 3")], Instant::ZERO);
        assert!(!s.poll(Instant::ZERO));
        let mut changed = false;
        for _ in 0..200 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            changed |= s.poll(Instant::from_millis(10));
            if !s.is_good("bad") {
                break;
            }
        }
        assert!(changed);
        assert!(s.is_good("ok"));
        assert!(!s.is_good("bad"));
        assert_eq!(s.weight("bad"), -10);
        assert!(s.is_good("unknown"));
        s.stop();
    }
}
