//! Running configured scripts (MISC_CHECK, `notify*`, `quorum_up`/`quorum_down`,
//! `vrrp_script`) as an unprivileged user, and keepalived's `enable_script_security` check.
//!
//! Every script runs as `/bin/sh -c LINE` in a child that, before `execve`:
//! - starts a new session (`setsid`), so its process group is its own and a timeout kills the
//!   script and everything it started ([`kill_group`]);
//! - takes the user's supplementary groups (`setgroups`, from `getgrouplist` in the parent: the
//!   child may only make async-signal-safe calls), then its group and user id (`setgid`,
//!   `setuid`); leaving uid 0 clears every capability (no `PR_SET_KEEPCAPS`);
//! - gets an empty environment but `PATH` (the daemon's, or a default).
//!
//! A daemon that does not run as root cannot switch users: its scripts run as itself.
//!
//! The user is keepalived's: `script_user USER [GROUP]` in `global_defs`, or `user USER
//! [GROUP]` in a MISC_CHECK or `vrrp_script`; by default `keepalived_script` if that user
//! exists, else `nobody` ([`RunAs::resolve`]). keepalived's default is root; tunlb's is not
//! (`script_user root` restores it).

use std::ffi::{CString, OsStr};
use std::fmt;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::model::{ScriptPolicy, ScriptUser};
use crate::sys::caps::{self, Cap};

/// The default script user when it exists (keepalived's).
pub const KEEPALIVED_SCRIPT_USER: &str = "keepalived_script";
/// The default script user otherwise.
pub const NOBODY: &str = "nobody";
/// `PATH` for scripts when the daemon has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A user (and group) to run a script as, resolved from the user database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// The user's name.
    pub user: String,
    /// Its uid.
    pub uid: u32,
    /// The group id the script runs with: the named group's, else the user's primary one.
    pub gid: u32,
    /// The supplementary groups: the user's groups (`getgrouplist`), the primary one included.
    pub groups: Vec<u32>,
}

impl fmt::Display for RunAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (uid {}, gid {})", self.user, self.uid, self.gid)
    }
}

/// Why a script's user could not be found.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The user database has no such user.
    #[error("script user {0:?} does not exist")]
    NoUser(String),
    /// The group database has no such group.
    #[error("script group {0:?} does not exist")]
    NoGroup(String),
    /// A name with a NUL byte, or the lookup itself failed.
    #[error("looking up {what} {name:?}: {error}")]
    Lookup {
        /// `user` or `group`.
        what: &'static str,
        /// The name looked up.
        name: String,
        /// What the C library said.
        error: io::Error,
    },
}

impl RunAs {
    /// Looks up `user` and, if given, `group` (else the user's primary group).
    pub fn lookup(user: &str, group: Option<&str>) -> Result<RunAs, UserError> {
        let (uid, primary) = passwd(user)?;
        let gid = match group {
            Some(g) => group_id(g)?,
            None => primary,
        };
        let mut groups = group_list(user, gid).map_err(|error| UserError::Lookup {
            what: "the groups of user",
            name: user.to_string(),
            error,
        })?;
        if !groups.contains(&gid) {
            groups.insert(0, gid);
        }
        Ok(RunAs {
            user: user.to_string(),
            uid,
            gid,
            groups,
        })
    }

    /// The default script user: `keepalived_script` if it exists, else `nobody`.
    pub fn default_user() -> Result<RunAs, UserError> {
        match RunAs::lookup(KEEPALIVED_SCRIPT_USER, None) {
            Ok(r) => Ok(r),
            Err(UserError::NoUser(_)) => RunAs::lookup(NOBODY, None),
            Err(e) => Err(e),
        }
    }

    /// The user a script runs as: its own `user` if set, else the global `script_user`, else
    /// [the default](Self::default_user).
    pub fn resolve(
        own: Option<&ScriptUser>,
        global: Option<&ScriptUser>,
    ) -> Result<RunAs, UserError> {
        match own.or(global) {
            Some(u) => RunAs::lookup(&u.user, u.group.as_deref()),
            None => RunAs::default_user(),
        }
    }

    /// Whether the script runs with root's user or group id (keepalived then checks its path:
    /// [`check_secure`]).
    pub fn is_root(&self) -> bool {
        self.uid == 0 || self.gid == 0
    }
}

fn c_name(what: &'static str, name: &str) -> Result<CString, UserError> {
    CString::new(name).map_err(|_| UserError::Lookup {
        what,
        name: name.to_string(),
        error: io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"),
    })
}

/// The buffer `getpwnam_r` / `getgrnam_r` fill; grown on `ERANGE`.
fn lookup_buffer(len: usize) -> Vec<libc::c_char> {
    vec![0; len]
}

/// `(uid, primary gid)` of `user`.
fn passwd(user: &str) -> Result<(u32, u32), UserError> {
    let found = lookup("user", user, |name, buf| {
        // SAFETY: `passwd` is plain old data; zeroed is a valid value the call overwrites.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is to a live local; `buf` has `buf.len()` bytes; the strings
        // getpwnam_r stores in `pwd` point into `buf`, which we do not read.
        let rc =
            unsafe { libc::getpwnam_r(name, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
        (rc, (!result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid)))
    })?;
    found.ok_or_else(|| UserError::NoUser(user.to_string()))
}

/// The gid of `group`.
fn group_id(group: &str) -> Result<u32, UserError> {
    let found = lookup("group", group, |name, buf| {
        // SAFETY: `group` is plain old data; zeroed is a valid value the call overwrites.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as in `passwd`: live locals, `buf` of `buf.len()` bytes.
        let rc =
            unsafe { libc::getgrnam_r(name, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
        (rc, (!result.is_null()).then_some(grp.gr_gid))
    })?;
    found.ok_or_else(|| UserError::NoGroup(group.to_string()))
}

/// One `get*nam_r` call with a buffer grown on ERANGE (up to 1 MiB): `call` returns the call's
/// error number and what it found (None: no such entry).
fn lookup<T>(
    what: &'static str,
    name: &str,
    mut call: impl FnMut(*const libc::c_char, &mut [libc::c_char]) -> (i32, Option<T>),
) -> Result<Option<T>, UserError> {
    let c = c_name(what, name)?;
    let mut len = 1024;
    loop {
        let mut buf = lookup_buffer(len);
        let (rc, found) = call(c.as_ptr(), &mut buf);
        if rc == libc::ERANGE && len < 1 << 20 {
            len *= 4;
            continue;
        }
        if rc != 0 {
            return Err(UserError::Lookup {
                what,
                name: name.to_string(),
                error: io::Error::from_raw_os_error(rc),
            });
        }
        return Ok(found);
    }
}

/// The groups of `user` (`getgrouplist`), `gid` included.
fn group_list(user: &str, gid: u32) -> io::Result<Vec<u32>> {
    let name = CString::new(user).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut n: libc::c_int = 32;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let mut count = n;
        // SAFETY: `groups` has room for `count` gids; getgrouplist writes at most that many and
        // stores the number it needs in `count`.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count.max(0) as usize);
            return Ok(groups);
        }
        if count <= n || n > 65536 {
            return Err(io::Error::other("getgrouplist failed"));
        }
        n = count;
    }
}

/// `/bin/sh -c LINE` as `who` (when this process runs as root; else as itself), in a session of
/// its own, with only `PATH` in its environment and no stdin, stdout or stderr. Spawning fails
/// (with the reason) if the child cannot take the user's ids, e.g. when the daemon lacks
/// `CAP_SETUID`.
pub fn shell(line: &str, who: &RunAs) -> Command {
    let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    let mut c = Command::new("/bin/sh");
    c.arg("-c")
        .arg(line)
        .env_clear()
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let (uid, gid, groups) = (who.uid, who.gid, who.groups.clone());
    // SAFETY: the closure runs in the forked child before execve and makes only
    // async-signal-safe system calls (setsid, geteuid, setgroups, setgid, setuid) on
    // data prepared in the parent; it allocates nothing.
    unsafe {
        c.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // A daemon that does not run as root cannot switch users: its scripts run as
            // itself (tests, a lab run by a user).
            if libc::geteuid() != 0 {
                return Ok(());
            }
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c
}

/// Spawns `/bin/sh -c LINE` as `who` ([`shell`]); the error names the script and the user.
pub fn spawn(line: &str, who: &RunAs) -> io::Result<Child> {
    shell(line, who)
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("running {line:?} as {who}: {e}")))
}

/// Kills a script and everything in its process group (its session: see [`shell`]), then
/// reaps it.
pub fn kill_group(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) takes plain integers; the group id is the child's pid (setsid), and
        // the child is not reaped yet, so the id cannot have been reused.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Why [`check_secure`] refuses a script.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Insecure {
    /// The program is not found (not a path, and not in `PATH`), or cannot be accessed.
    #[error("cannot find script {0:?}")]
    NotFound(String),
    /// The program is not executable for the user.
    #[error("script {path} is not executable for uid:gid {uid}:{gid}")]
    NotExecutable {
        /// The program.
        path: String,
        /// The user.
        uid: u32,
        /// The group.
        gid: u32,
    },
    /// A part of the path is not a directory, or the program not a file or a symbolic link.
    #[error("wrong file type in script path {0}")]
    WrongType(String),
    /// A part of the path (the program or a directory above it) is owned by a user other than
    /// root, or writable by a group other than root's or by everyone (a directory with the
    /// sticky bit, like /tmp, may be world-writable).
    #[error("unsafe permissions on {0} (owned by a user other than root, or writable by a non-root group or by everyone)")]
    Writable(String),
}

/// keepalived's `check_script_secure` for the program of `line` (its first word; a bare name is
/// searched in `PATH`) run as `who`: the program must exist and be executable for `who`; when
/// it runs with root's uid or gid, or is setuid/setgid root, every part of its path — its
/// directories resolved, under its own name, and the file a symbolic link leads to — must be
/// owned by root and not writable by a
/// non-root group or by everyone (a directory with the sticky bit may be).
///
/// Returns the resolved program path.
pub fn check_secure(line: &str, who: &RunAs) -> Result<PathBuf, Insecure> {
    let program = line.split_whitespace().next().unwrap_or("");
    let path = if program.contains('/') {
        PathBuf::from(program)
    } else {
        find_in_path(program).ok_or_else(|| Insecure::NotFound(program.to_string()))?
    };
    let real =
        std::fs::canonicalize(&path).map_err(|_| Insecure::NotFound(path.display().to_string()))?;
    let meta =
        std::fs::metadata(&real).map_err(|_| Insecure::NotFound(path.display().to_string()))?;
    if !executable_by(&meta, who) {
        return Err(Insecure::NotExecutable {
            path: path.display().to_string(),
            uid: who.uid,
            gid: who.gid,
        });
    }
    let mode = meta.mode();
    let setid_root = (meta.uid() == 0 && mode & 0o4100 == 0o4100)
        || (meta.gid() == 0 && mode & 0o2010 == 0o2010);
    if who.is_root() || setid_root {
        // As keepalived: the directories resolved (so `/bin` → `/usr/bin` is no finding), the
        // program under its own name (a symbolic link there is checked as a link), then the
        // file it resolves to.
        let named = match (path.parent(), path.file_name()) {
            (Some(dir), Some(name)) => std::fs::canonicalize(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
            .map(|d| d.join(name))
            .unwrap_or_else(|_| real.clone()),
            _ => real.clone(),
        };
        check_path(&named)?;
        if real != named {
            check_path(&real)?;
        }
    }
    Ok(real)
}

/// What a config loader checks for each script it reads (`line` run as `own`, else as the
/// policy's user): the user exists; with `enable_script_security`, [`check_secure`] passes;
/// and this process can switch to that user (a director that dropped `CAP_SETUID` at start,
/// having no script then, refuses a reload that adds one). `Ok(Some(warning))`: keepalived
/// would log a warning (a script that runs as root and is not secure, without
/// `enable_script_security`); `Err`: the script must be refused, with why.
pub fn vet(
    line: &str,
    own: Option<&ScriptUser>,
    policy: &ScriptPolicy,
) -> Result<Option<String>, String> {
    let who = RunAs::resolve(own, policy.user.as_ref()).map_err(|e| e.to_string())?;
    if let Ok(now) = caps::current() {
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        // Root without the two capabilities is a daemon that dropped them; a user running
        // `tunlb check-config` cannot switch users anyway and is not refused for it.
        if euid == 0 && !(now.effective.has(Cap::SETUID) && now.effective.has(Cap::SETGID)) {
            return Err(format!(
                "cannot run scripts as {who}: this process has no CAP_SETUID/CAP_SETGID (a director drops them at start when its config has no script; restart it to add scripts)"
            ));
        }
    }
    let secure = check_secure(line, &who);
    if policy.security {
        return secure.map(|_| None).map_err(|e| {
            format!("{e}: refused by enable_script_security (the script would run as {who})")
        });
    }
    match secure {
        Err(e @ Insecure::Writable(_)) if who.is_root() => Ok(Some(format!(
            "{e}: this script runs as {who}; enable_script_security would refuse it"
        ))),
        _ => Ok(None),
    }
}

/// The first executable `name` in `PATH`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    if name.is_empty() {
        return None;
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// keepalived's `is_executable`: the owner's, the group's or the others' execute bit, as the
/// kernel would pick it for `who` (root: any execute bit).
fn executable_by(meta: &std::fs::Metadata, who: &RunAs) -> bool {
    let mode = meta.mode();
    if !meta.is_file() {
        return false;
    }
    if who.uid == 0 {
        return mode & 0o111 != 0;
    }
    if meta.uid() == who.uid {
        mode & 0o100 != 0
    } else if meta.gid() == who.gid || who.groups.contains(&meta.gid()) {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

/// keepalived's `check_security`: every prefix of `path` from `/`, not following symbolic
/// links.
fn check_path(path: &Path) -> Result<(), Insecure> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|_| Insecure::NotFound(path.display().to_string()))?
            .join(path)
    };
    let parts: Vec<&OsStr> = absolute.iter().collect();
    let mut prefix = PathBuf::new();
    for (i, part) in parts.iter().enumerate() {
        prefix.push(part);
        let last = i + 1 == parts.len();
        let meta = std::fs::symlink_metadata(&prefix)
            .map_err(|_| Insecure::NotFound(prefix.display().to_string()))?;
        let ft = meta.file_type();
        if (!last && !ft.is_dir()) || (last && !ft.is_file() && !ft.is_symlink()) {
            return Err(Insecure::WrongType(prefix.display().to_string()));
        }
        let mode = meta.mode();
        let checked = (ft.is_dir() && mode & 0o1000 == 0) || ft.is_file();
        let group_writable = meta.gid() != 0 && mode & 0o020 != 0;
        if meta.uid() != 0 || (checked && (group_writable || mode & 0o002 != 0)) {
            return Err(Insecure::Writable(prefix.display().to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::time::{Duration, Instant};

    fn me() -> RunAs {
        // SAFETY: geteuid/getegid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        RunAs {
            user: "me".into(),
            uid,
            gid,
            groups: vec![gid],
        }
    }

    fn root() -> RunAs {
        RunAs {
            user: "root".into(),
            uid: 0,
            gid: 0,
            groups: vec![0],
        }
    }

    #[test]
    fn root_and_nobody_resolve_and_unknown_names_are_errors() {
        let r = RunAs::lookup("root", None).expect("root exists");
        assert_eq!((r.uid, r.gid), (0, 0));
        assert!(r.is_root());
        let n = RunAs::default_user().expect("nobody or keepalived_script exists");
        assert_ne!(n.uid, 0);
        assert!(!n.is_root());
        assert!(matches!(
            RunAs::lookup("no-such-user-tunlb", None),
            Err(UserError::NoUser(_))
        ));
        assert!(matches!(
            RunAs::lookup("root", Some("no-such-group-tunlb")),
            Err(UserError::NoGroup(_))
        ));
        let own = ScriptUser {
            user: "root".into(),
            group: None,
        };
        assert_eq!(RunAs::resolve(Some(&own), None).expect("root").uid, 0);
        assert_eq!(RunAs::resolve(None, Some(&own)).expect("root").uid, 0);
        assert_ne!(RunAs::resolve(None, None).expect("default").uid, 0);
    }

    #[test]
    fn a_script_gets_only_path_and_a_session_of_its_own() {
        let dir = std::env::temp_dir().join(format!("tunlb-script-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let out = dir.join("env");
        let line = format!(
            "{{ env; echo SID=$(cut -d' ' -f6 /proc/$$/stat); echo PID=$$; }} > {}",
            out.display()
        );
        let mut child = spawn(&line, &me()).expect("spawn");
        assert!(child.wait().expect("wait").success());
        let text = std::fs::read_to_string(&out).expect("output");
        let vars: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("SID=") && !l.starts_with("PID="))
            .map(|l| l.split('=').next().unwrap_or(""))
            .filter(|k| !matches!(*k, "PWD" | "SHLVL" | "_" | "OLDPWD"))
            .collect();
        assert_eq!(vars, ["PATH"], "{text}");
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
        };
        assert_eq!(
            field("SID="),
            field("PID="),
            "the shell leads its own session"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// As root: the script runs as the default user, with its groups and no capability.
    #[test]
    fn as_root_a_script_runs_as_its_user_without_capabilities() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = std::env::temp_dir().join(format!("tunlb-runas-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        let out = dir.join("id");
        let who = RunAs::default_user().expect("nobody");
        let line = format!(
            "{{ id -u; id -g; grep -E '^(CapEff|CapPrm|CapBnd)' /proc/self/status; }} > {}",
            out.display()
        );
        let mut child = spawn(&line, &who).expect("spawn");
        assert!(child.wait().expect("wait").success());
        let text = std::fs::read_to_string(&out).expect("output");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], who.uid.to_string(), "{text}");
        assert_eq!(lines[1], who.gid.to_string(), "{text}");
        assert!(text.contains("CapEff:\t0000000000000000"), "{text}");
        assert!(text.contains("CapPrm:\t0000000000000000"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_timed_out_script_dies_with_its_children() {
        let mut child = spawn("sleep 30 & sleep 30; wait", &me()).expect("spawn");
        std::thread::sleep(Duration::from_millis(100));
        let pgid = child.id() as i32;
        let started = Instant::now();
        kill_group(&mut child);
        // SAFETY: kill with signal 0 only checks for existence.
        let alive = |p: i32| unsafe { libc::kill(-p, 0) } == 0;
        while alive(pgid) && started.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!alive(pgid), "the background sleep died too");
    }

    fn write_script(path: &Path, mode: u32) {
        let mut f = std::fs::File::create(path).expect("create");
        writeln!(f, "#!/bin/sh\nexit 0").expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn script_security_follows_keepalived() {
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        // A private directory under a root-owned, sticky /tmp.
        let dir = std::env::temp_dir().join(format!("tunlb-secure-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let ok = dir.join("ok.sh");
        write_script(&ok, 0o755);
        let writable = dir.join("writable.sh");
        write_script(&writable, 0o757);
        let noexec = dir.join("noexec.sh");
        write_script(&noexec, 0o644);

        // Found in PATH; /bin/sh is root's and safe.
        assert!(check_secure("sh -c true", &root()).is_ok());
        assert_eq!(
            check_secure("no-such-program-tunlb arg", &root()),
            Err(Insecure::NotFound("no-such-program-tunlb".into()))
        );
        assert!(matches!(
            check_secure(&format!("{} arg", noexec.display()), &root()),
            Err(Insecure::NotExecutable { .. })
        ));
        // World-writable file: refused when root runs it, fine for an unprivileged user.
        assert_eq!(
            check_secure(&writable.display().to_string(), &root()),
            Err(Insecure::Writable(writable.display().to_string()))
        );
        let nobody = RunAs::default_user().expect("nobody");
        assert!(check_secure(&writable.display().to_string(), &nobody).is_ok());
        if euid == 0 {
            // Root-owned, 0755 in a root-owned 0755 dir under sticky /tmp: safe.
            assert!(check_secure(&ok.display().to_string(), &root()).is_ok());
            // The directory writable by everyone (no sticky bit): unsafe.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
            assert_eq!(
                check_secure(&ok.display().to_string(), &root()),
                Err(Insecure::Writable(dir.display().to_string()))
            );
            // Owned by another user: unsafe.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            std::os::unix::fs::chown(&ok, Some(nobody.uid), None).expect("chown");
            assert_eq!(
                check_secure(&ok.display().to_string(), &root()),
                Err(Insecure::Writable(ok.display().to_string()))
            );
            // A symbolic link is checked as written and resolved.
            let link = dir.join("link.sh");
            std::os::unix::fs::symlink(&ok, &link).expect("symlink");
            assert_eq!(
                check_secure(&link.display().to_string(), &root()),
                Err(Insecure::Writable(ok.display().to_string()))
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
