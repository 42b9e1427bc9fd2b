//! What a running lab leaves on disk so that `tunlb lab down`, a later invocation, can find it:
//! `/run/tunlb-lab/<prefix>/` with
//!
//! - `namespaces`: one namespace name a line, appended as each is created;
//! - `pids`: `PID START_TIME NAMESPACE LABEL` a line, appended as each process starts
//!   (`START_TIME` is field 22 of `/proc/PID/stat`, so a pid reused by another process is
//!   never mistaken for ours);
//! - `*.log`: each process's stdout and stderr.
//!
//! Creating the folder is the lab's lock: [`StateDir::create`] fails when it exists, so two
//! `lab up` with one prefix never build over each other. Both files are append-only and read
//! leniently: a line cut short by a crash is skipped.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};

/// Where every lab's state folder lives (a tmpfs on Debian: gone after a reboot, as are the
/// namespaces).
pub const STATE_ROOT: &str = "/run/tunlb-lab";

/// A process the lab started, as recorded in `pids`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcRecord {
    /// Its pid (`ip netns exec` execs the program, so this is the program itself).
    pub pid: u32,
    /// Field 22 of `/proc/PID/stat` when it started: clock ticks since boot.
    pub start_time: u64,
    /// The namespace it runs in.
    pub ns: String,
    /// What it is, e.g. `tunlb httpd` (may contain spaces).
    pub label: String,
}

impl ProcRecord {
    /// The record as a line of `pids` (without the newline).
    pub fn to_line(&self) -> String {
        format!(
            "{} {} {} {}",
            self.pid, self.start_time, self.ns, self.label
        )
    }

    /// Parses a line of `pids`; `None` for anything malformed.
    pub fn parse(line: &str) -> Option<ProcRecord> {
        let mut fields = line.splitn(4, ' ');
        let pid = fields.next()?.parse().ok().filter(|&p| p > 0)?;
        let start_time = fields.next()?.parse().ok()?;
        let ns = fields.next().filter(|s| !s.is_empty())?.to_owned();
        let label = fields.next().unwrap_or("").trim().to_owned();
        Some(ProcRecord {
            pid,
            start_time,
            ns,
            label,
        })
    }
}

/// A lab's state folder.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// The folder of the lab with `prefix`.
    pub fn path_for(prefix: &str) -> PathBuf {
        Path::new(STATE_ROOT).join(prefix)
    }

    /// Creates the folder of the lab with `prefix`; `Ok(None)` when it already exists (that lab
    /// is up, or was not taken down).
    pub fn create(prefix: &str) -> io::Result<Option<StateDir>> {
        fs::create_dir_all(STATE_ROOT)?;
        let path = Self::path_for(prefix);
        match fs::create_dir(&path) {
            Ok(()) => Ok(Some(StateDir { path })),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The folder of the lab with `prefix`, if it exists.
    pub fn open(prefix: &str) -> Option<StateDir> {
        let path = Self::path_for(prefix);
        path.is_dir().then_some(StateDir { path })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the output of the process called `name` goes (`<folder>/<name>.log`).
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.path.join(format!("{name}.log"))
    }

    /// Creates (truncates) the log file of `name`.
    pub fn create_log(&self, name: &str) -> io::Result<File> {
        File::create(self.log_path(name))
    }

    /// Appends a namespace to `namespaces`.
    pub fn record_namespace(&self, ns: &str) -> io::Result<()> {
        self.append("namespaces", ns)
    }

    /// Appends a process to `pids`.
    pub fn record_process(&self, record: &ProcRecord) -> io::Result<()> {
        self.append("pids", &record.to_line())
    }

    /// The namespaces recorded so far, in creation order.
    pub fn namespaces(&self) -> Vec<String> {
        self.read_lines("namespaces")
            .into_iter()
            .filter(|l| !l.is_empty() && !l.contains(char::is_whitespace))
            .collect()
    }

    /// The processes recorded so far, in start order.
    pub fn processes(&self) -> Vec<ProcRecord> {
        self.read_lines("pids")
            .iter()
            .filter_map(|l| ProcRecord::parse(l))
            .collect()
    }

    /// Removes the folder and everything in it, then [`STATE_ROOT`] if no other lab uses it.
    pub fn remove(self) -> io::Result<()> {
        fs::remove_dir_all(&self.path)?;
        // Fails harmlessly while another lab's folder is there.
        let _ = fs::remove_dir(STATE_ROOT);
        Ok(())
    }

    fn append(&self, file: &str, line: &str) -> io::Result<()> {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path.join(file))?;
        // One write per line, so a crash leaves whole lines or a short last one.
        f.write_all(format!("{line}\n").as_bytes())
    }

    fn read_lines(&self, file: &str) -> Vec<String> {
        let text = fs::read_to_string(self.path.join(file)).unwrap_or_default();
        // A last line without its newline was cut short.
        let complete = match text.rfind('\n') {
            Some(end) => &text[..end],
            None => "",
        };
        complete.lines().map(str::to_owned).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_records_round_trip_and_bad_lines_are_skipped() {
        let record = ProcRecord {
            pid: 4242,
            start_time: 987_654,
            ns: "tunlb-rs1".into(),
            label: "tunlb httpd".into(),
        };
        assert_eq!(record.to_line(), "4242 987654 tunlb-rs1 tunlb httpd");
        assert_eq!(ProcRecord::parse(&record.to_line()), Some(record));
        for bad in ["", "x 1 ns l", "0 1 ns l", "1 x ns l", "1 2", "1 2 "] {
            assert_eq!(ProcRecord::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_line_cut_short_is_not_read() {
        let dir = std::env::temp_dir().join(format!("tunlb-state-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let state = StateDir { path: dir.clone() };
        state.record_namespace("a-client").unwrap();
        state.record_namespace("a-router").unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(dir.join("namespaces"))
            .unwrap()
            .write_all(b"a-dir")
            .unwrap();
        assert_eq!(state.namespaces(), ["a-client", "a-router"]);
        assert!(state.processes().is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
