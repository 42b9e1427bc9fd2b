//! The commands the lab runs on this machine: `ip` for namespaces, links and routes, `sh` to
//! write `/proc/sys` inside a namespace, and the programs it runs there (`tunlb` itself, curl).
//!
//! Every command that touches the network names a namespace (`ip -n NS`, `ip netns exec NS`):
//! the host's own interfaces are never touched.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::topology::Action;

/// Why the lab cannot run here, or a command failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Not running as root.
    #[error("the lab creates network namespaces: run it as root (effective uid is {0})")]
    NotRoot(String),
    /// `ip` (iproute2) is not installed.
    #[error("`ip` is not installed (Debian: apt-get install iproute2)")]
    NoIp,
    /// The path of the running `tunlb` is unknown.
    #[error("cannot find the running tunlb binary: {0}")]
    NoExe(#[source] std::io::Error),
    /// A command could not be started at all.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A command ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it wrote to stderr, trimmed.
        stderr: String,
    },
}

/// Finds `tool` on `PATH`, then in the sbin folders root's `PATH` usually has.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// The effective uid from `/proc/self/status` (`?` when unreadable).
fn effective_uid() -> String {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or("?")
        .to_owned()
}

/// The tools found on this machine, and the running binary.
#[derive(Clone, Debug)]
pub struct Host {
    ip: PathBuf,
    curl: Option<PathBuf>,
    exe: PathBuf,
}

impl Host {
    /// Checks that we are root and `ip` is installed; finds curl (optional) and ourselves.
    pub fn probe() -> Result<Host, HostError> {
        let uid = effective_uid();
        if uid != "0" {
            return Err(HostError::NotRoot(uid));
        }
        let ip = find_tool("ip").ok_or(HostError::NoIp)?;
        let exe = std::env::current_exe().map_err(HostError::NoExe)?;
        Ok(Host {
            ip,
            curl: find_tool("curl"),
            exe,
        })
    }

    /// The path of `ip`.
    pub fn ip(&self) -> &Path {
        &self.ip
    }

    /// The path of curl, if installed.
    pub fn curl(&self) -> Option<&Path> {
        self.curl.as_deref()
    }

    /// The running `tunlb` binary, which the lab starts in the namespaces.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// How to spell the running binary in a command a user pastes: `tunlb` when that is what
    /// `PATH` finds, else the full path.
    pub fn exe_for_humans(&self) -> String {
        let on_path = find_tool("tunlb").and_then(|p| fs::canonicalize(p).ok());
        if on_path.is_some() && on_path == fs::canonicalize(&self.exe).ok() {
            "tunlb".to_owned()
        } else {
            self.exe.display().to_string()
        }
    }

    /// Carries out one [`Action`].
    pub fn apply(&self, action: &Action) -> Result<(), HostError> {
        let mut cmd = match action {
            Action::AddNamespace(ns) => {
                let mut cmd = Command::new(&self.ip);
                cmd.args(["netns", "add", ns]);
                cmd
            }
            Action::Ip { ns, args } => {
                let mut cmd = Command::new(&self.ip);
                cmd.args(["-n", ns]).args(args);
                cmd
            }
            Action::Sysctl { ns, key, value } => {
                let path = format!("/proc/sys/{}", key.replace('.', "/"));
                let mut cmd = self.in_ns(ns, "sh");
                cmd.args(["-c", "printf '%s\\n' \"$1\" > \"$2\"", "sh", value, &path]);
                cmd
            }
        };
        check(&action.to_string(), output(&mut cmd, &action.to_string())?)
    }

    /// A command running `program` inside `ns` (`ip netns exec NS PROGRAM`).
    pub fn in_ns(&self, ns: &str, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(&self.ip);
        cmd.args(["netns", "exec", ns]).arg(program);
        cmd
    }

    /// Runs `tunlb ARGS...` inside `ns` to completion, whatever its exit status.
    pub fn tunlb(&self, ns: &str, args: &[&str]) -> Result<Output, HostError> {
        let mut cmd = self.in_ns(ns, &self.exe);
        cmd.args(args);
        output(&mut cmd, &format!("tunlb {}", args.join(" ")))
    }

    /// The names in `ip netns list` (each line is `NAME` or `NAME (id: N)`).
    pub fn namespaces(&self) -> Result<Vec<String>, HostError> {
        let out = output(
            Command::new(&self.ip).args(["netns", "list"]),
            "ip netns list",
        )?;
        let out = check_stdout("ip netns list", out)?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect())
    }

    /// The pids of the processes inside `ns` (`ip netns pids`); empty if unknown.
    pub fn pids_in(&self, ns: &str) -> Vec<u32> {
        let mut cmd = Command::new(&self.ip);
        cmd.args(["netns", "pids", ns]);
        match output(&mut cmd, "ip netns pids") {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Deletes namespace `ns` (`ip netns del`).
    pub fn delete_namespace(&self, ns: &str) -> Result<(), HostError> {
        let line = format!("ip netns del {ns}");
        let out = output(Command::new(&self.ip).args(["netns", "del", ns]), &line)?;
        check(&line, out)
    }
}

/// Runs `cmd` with no stdin and collects its output; `line` names it in errors.
pub fn output(cmd: &mut Command, line: &str) -> Result<Output, HostError> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|source| HostError::Spawn {
            command: line.to_owned(),
            source,
        })
}

/// `Ok` if the command succeeded, else [`HostError::Failed`] with its stderr.
pub fn check(line: &str, out: Output) -> Result<(), HostError> {
    check_stdout(line, out).map(drop)
}

/// Its stdout if the command succeeded, else [`HostError::Failed`] with its stderr.
pub fn check_stdout(line: &str, out: Output) -> Result<String, HostError> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(HostError::Failed {
            command: line.to_owned(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}
