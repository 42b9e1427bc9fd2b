//! The lab's long-running processes: started detached inside a namespace, recorded with their
//! start time, stopped by pid from a later invocation.
//!
//! A process is `ip netns exec NS <tunlb> ...` in its own process group (so a Ctrl-C typed
//! after `lab up` returns never reaches it), with stdin from `/dev/null` and stdout and stderr
//! in a log file. `ip netns exec` execs the program, so the child's pid is the program's.
//!
//! Signals are sent with the shell's `kill` builtin (`sh` is always there; the `kill` program
//! is not, on a minimal Debian). Before a signal, the pid's start time is compared with the
//! recorded one, so a pid the kernel has since given to another process is left alone.

use std::fs::{self, File};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::state::ProcRecord;

/// Starts `ip netns exec NS PROGRAM ARGS...` detached, its output into `log`.
pub fn spawn_detached(
    ip: &Path,
    ns: &str,
    program: &Path,
    args: &[String],
    log: File,
) -> io::Result<Child> {
    let err = log.try_clone()?;
    Command::new(ip)
        .args(["netns", "exec", ns])
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
}

/// What `/proc/PID/stat` says about a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// The state letter: `R`, `S`, `D`, `Z` (exited, not yet reaped), ...
    pub state: char,
    /// When it started, in clock ticks since boot (field 22).
    pub start_time: u64,
}

impl Stat {
    /// Reads `/proc/PID/stat`; `None` when there is no such process.
    pub fn read(pid: u32) -> Option<Stat> {
        Stat::parse(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// Parses the text of `/proc/PID/stat`. The command name (field 2) is in parentheses and may
    /// hold spaces and parentheses itself, so fields are counted from the last `)`.
    pub fn parse(text: &str) -> Option<Stat> {
        let rest = text.get(text.rfind(')')? + 1..)?;
        let mut fields = rest.split_whitespace();
        let state = fields.next()?.chars().next()?;
        // Fields 4 to 21 lie between the state (3) and the start time (22).
        let start_time = fields.nth(18)?.parse().ok()?;
        Some(Stat { state, start_time })
    }

    /// Whether the process still runs (a zombie has exited).
    pub fn is_running(self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Whether the recorded process still runs: same pid, same start time, not a zombie.
pub fn is_running(record: &ProcRecord) -> bool {
    Stat::read(record.pid)
        .is_some_and(|stat| stat.start_time == record.start_time && stat.is_running())
}

/// Sends `signal` (`TERM`, `KILL`) to `pid` with the shell's `kill` builtin.
pub fn send_signal(pid: u32, signal: &str) -> io::Result<()> {
    let status = Command::new("sh")
        .args(["-c", "kill -s \"$1\" \"$2\" 2>/dev/null", "sh", signal])
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("kill -s {signal} {pid} failed")))
    }
}

/// What [`stop_all`] did with one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// It was no longer running.
    AlreadyGone,
    /// It exited after SIGTERM.
    Terminated,
    /// It ignored SIGTERM for the grace period and got SIGKILL.
    Killed,
}

/// Stops every running process of `records`: SIGTERM to all, up to `grace` for them to exit,
/// then SIGKILL to the rest (and up to a second for those). `report` hears about each one
/// before it is signalled and when it is done. `reap` is called while waiting, so a caller that
/// started the processes itself can collect its children (a zombie counts as exited).
pub fn stop_all(
    records: &[ProcRecord],
    grace: Duration,
    mut reap: impl FnMut(),
    mut report: impl FnMut(&ProcRecord, Option<Stopped>),
) {
    let mut waiting = Vec::new();
    for record in records {
        if is_running(record) {
            report(record, None);
            // A failed kill means it exited meanwhile; the wait below sees that.
            let _ = send_signal(record.pid, "TERM");
            waiting.push(record);
        } else {
            report(record, Some(Stopped::AlreadyGone));
        }
    }
    let mut outcome = Stopped::Terminated;
    let mut deadline = Instant::now() + grace;
    while !waiting.is_empty() {
        reap();
        waiting.retain(|record| {
            let running = is_running(record);
            if !running {
                report(record, Some(outcome));
            }
            running
        });
        if waiting.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            if outcome == Stopped::Killed {
                break; // Unkillable (stuck in the kernel): nothing more to do.
            }
            outcome = Stopped::Killed;
            deadline = Instant::now() + Duration::from_secs(1);
            for record in &waiting {
                let _ = send_signal(record.pid, "KILL");
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_parsed_after_the_last_parenthesis() {
        let text = "1234 (a) b)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    5550123 1000 200 18446744073709551615";
        assert_eq!(
            Stat::parse(text),
            Some(Stat {
                state: 'S',
                start_time: 5_550_123
            })
        );
        assert_eq!(Stat::parse("1 (x) Z 1 2 3"), None);
        assert_eq!(Stat::parse("no parenthesis"), None);
        assert!(!Stat {
            state: 'Z',
            start_time: 0
        }
        .is_running());
    }

    #[test]
    fn our_own_stat_is_readable_and_a_wrong_start_time_is_not_us() {
        let pid = std::process::id();
        let stat = Stat::read(pid).expect("our own /proc/self/stat");
        assert!(stat.is_running());
        let mut me = ProcRecord {
            pid,
            start_time: stat.start_time,
            ns: "x".into(),
            label: "me".into(),
        };
        assert!(is_running(&me));
        me.start_time += 1;
        assert!(!is_running(&me));
    }

    #[test]
    fn stop_all_terminates_a_sleeping_child() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let record = ProcRecord {
            pid,
            start_time: Stat::read(pid).unwrap().start_time,
            ns: "host".into(),
            label: "sleep".into(),
        };
        let mut seen = Vec::new();
        stop_all(
            std::slice::from_ref(&record),
            Duration::from_secs(5),
            || {
                let _ = child.try_wait();
            },
            |_, outcome| seen.push(outcome),
        );
        assert_eq!(seen, [None, Some(Stopped::Terminated)]);
        assert!(!is_running(&record));
    }
}
