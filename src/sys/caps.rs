//! Linux capabilities: what the daemons keep once they run (`capget`/`capset`, the bounding
//! and ambient sets, `no_new_privs`).
//!
//! A root process holds every capability. The director and the agent need only a few
//! ([`Needs`]): `CAP_NET_ADMIN` (routes, addresses, rules, TUN devices, netlink, `SO_MARK`,
//! `SO_RCVBUFFORCE`; the `net.*` sysctls also accept it), `CAP_NET_RAW` (raw and `AF_PACKET`
//! sockets, `SO_BINDTODEVICE`, ping probes), and with scripts `CAP_SETUID`, `CAP_SETGID` (a
//! script's child switches to its user and groups) and `CAP_KILL` (a script that overruns its
//! timeout runs as another user: killing it needs the capability). [`restrict`] drops the rest
//! from the effective, permitted, inheritable, ambient and bounding sets, and sets
//! `no_new_privs` when asked.
//!
//! Capabilities are per thread: [`restrict`] changes the calling thread, and threads it
//! creates afterwards inherit the result. The daemons call it once, on the main thread, before
//! they start any other thread (see `crate::daemon::run`).
//!
//! The process keeps uid 0: the files it owns under `/run/tunlb` (control socket, journal), the
//! control client's check that the director runs as root, and `ip` (run from `$PATH` for host
//! changes, which inherits the same capabilities) all rely on it. Without `CAP_DAC_OVERRIDE`
//! and `CAP_FOWNER`, uid 0 opens a file only as its owner would: files of other users stay
//! closed unless their mode lets everyone in.

use std::fmt;
use std::io;

/// One capability, by its number in `<linux/capability.h>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cap(pub u8);

impl Cap {
    /// `CAP_CHOWN`.
    pub const CHOWN: Cap = Cap(0);
    /// `CAP_DAC_OVERRIDE`: bypass file permission checks.
    pub const DAC_OVERRIDE: Cap = Cap(1);
    /// `CAP_KILL`: signal processes of other users (a script that overran its timeout).
    pub const KILL: Cap = Cap(5);
    /// `CAP_SETGID`: set the group ids and supplementary groups of a script's process.
    pub const SETGID: Cap = Cap(6);
    /// `CAP_SETUID`: set the user id of a script's process.
    pub const SETUID: Cap = Cap(7);
    /// `CAP_SETPCAP`: shrink the bounding set.
    pub const SETPCAP: Cap = Cap(8);
    /// `CAP_NET_BIND_SERVICE`: bind ports below 1024.
    pub const NET_BIND_SERVICE: Cap = Cap(10);
    /// `CAP_NET_ADMIN`: routes, addresses, rules, TUN, netlink, `SO_MARK`, net sysctls.
    pub const NET_ADMIN: Cap = Cap(12);
    /// `CAP_NET_RAW`: raw and packet sockets, `SO_BINDTODEVICE`.
    pub const NET_RAW: Cap = Cap(13);
    /// `CAP_SYS_ADMIN`.
    pub const SYS_ADMIN: Cap = Cap(21);

    /// The kernel's name of the capability, lower case (`cap_net_admin`), as `capsh` prints it.
    pub fn name(self) -> String {
        const NAMES: [&str; 41] = [
            "chown",
            "dac_override",
            "dac_read_search",
            "fowner",
            "fsetid",
            "kill",
            "setgid",
            "setuid",
            "setpcap",
            "linux_immutable",
            "net_bind_service",
            "net_broadcast",
            "net_admin",
            "net_raw",
            "ipc_lock",
            "ipc_owner",
            "sys_module",
            "sys_rawio",
            "sys_chroot",
            "sys_ptrace",
            "sys_pacct",
            "sys_admin",
            "sys_boot",
            "sys_nice",
            "sys_resource",
            "sys_time",
            "sys_tty_config",
            "mknod",
            "lease",
            "audit_write",
            "audit_control",
            "setfcap",
            "mac_override",
            "mac_admin",
            "syslog",
            "wake_alarm",
            "block_suspend",
            "audit_read",
            "perfmon",
            "bpf",
            "checkpoint_restore",
        ];
        match NAMES.get(usize::from(self.0)) {
            Some(n) => format!("cap_{n}"),
            None => format!("cap_{}", self.0),
        }
    }
}

/// A set of capabilities as the kernel's 64-bit mask (bit `n` = capability `n`), the form
/// `/proc/PID/status` prints in hex (`CapEff: 0000000000003000`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CapSet(pub u64);

impl CapSet {
    /// No capability.
    pub const EMPTY: CapSet = CapSet(0);

    /// The set of `caps`.
    pub fn of(caps: &[Cap]) -> CapSet {
        CapSet(caps.iter().fold(0, |m, c| m | (1u64 << c.0)))
    }

    /// Whether `cap` is in the set.
    pub fn has(self, cap: Cap) -> bool {
        cap.0 < 64 && self.0 & (1u64 << cap.0) != 0
    }

    /// The set with `cap` added.
    #[must_use]
    pub fn with(self, cap: Cap) -> CapSet {
        CapSet(self.0 | (1u64 << cap.0))
    }

    /// The capabilities in both sets.
    #[must_use]
    pub fn and(self, other: CapSet) -> CapSet {
        CapSet(self.0 & other.0)
    }

    /// The capabilities of the set, lowest number first.
    pub fn iter(self) -> impl Iterator<Item = Cap> {
        (0u8..64).map(Cap).filter(move |c| self.has(*c))
    }

    /// Parses the hex mask of a `/proc/PID/status` line's value (`0000000000003000`).
    pub fn from_hex(text: &str) -> Option<CapSet> {
        u64::from_str_radix(text.trim(), 16).ok().map(CapSet)
    }
}

impl fmt::Display for CapSet {
    /// `cap_net_admin,cap_net_raw` (`none` when empty), then the mask as `/proc` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.iter().map(Cap::name).collect();
        if names.is_empty() {
            write!(f, "none")?;
        } else {
            write!(f, "{}", names.join(","))?;
        }
        write!(f, " ({:016x})", self.0)
    }
}

/// What a daemon still does once it runs, and so which capabilities it keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Scripts are configured (MISC_CHECK, notify, quorum_up/down, vrrp_script): keep
    /// `CAP_SETUID`, `CAP_SETGID` and `CAP_KILL` to run them as their user and kill them on
    /// timeout, and leave `no_new_privs` off so a script may use a setuid helper.
    pub scripts: bool,
    /// A listener on a port below 1024 may be bound after the drop: keep `CAP_NET_BIND_SERVICE`.
    pub bind_low_port: bool,
}

impl Needs {
    /// The capabilities kept: `CAP_NET_ADMIN` and `CAP_NET_RAW`, plus what [`Needs`] adds.
    pub fn caps(self) -> CapSet {
        let mut set = CapSet::of(&[Cap::NET_ADMIN, Cap::NET_RAW]);
        if self.scripts {
            set = set.with(Cap::SETUID).with(Cap::SETGID).with(Cap::KILL);
        }
        if self.bind_low_port {
            set = set.with(Cap::NET_BIND_SERVICE);
        }
        set
    }

    /// Whether `no_new_privs` is set: always, unless scripts run (a script may call `sudo` or
    /// `ping` with file capabilities, which `no_new_privs` would quietly strip).
    pub fn no_new_privs(self) -> bool {
        !self.scripts
    }
}

/// The calling thread's capability sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapState {
    /// Effective: what the kernel checks.
    pub effective: CapSet,
    /// Permitted: the most the effective set may hold.
    pub permitted: CapSet,
    /// Inheritable: kept across `execve` of a file with matching inheritable file capabilities.
    pub inheritable: CapSet,
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`; version 3 takes two of them (capabilities 0–31, 32–63).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`.
const CAP_VERSION_3: u32 = 0x2008_0522;

/// The calling thread's effective, permitted and inheritable sets (`capget`).
pub fn current() -> io::Result<CapState> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: `header` and the two-element `data` array are what capget(2) reads and writes
    // for version 3; both live across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            std::ptr::addr_of_mut!(header),
            data.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let join =
        |f: fn(&CapData) -> u32| CapSet(u64::from(f(&data[0])) | u64::from(f(&data[1])) << 32);
    Ok(CapState {
        effective: join(|d| d.effective),
        permitted: join(|d| d.permitted),
        inheritable: join(|d| d.inheritable),
    })
}

/// Sets the calling thread's three sets (`capset`).
fn set(state: CapState) -> io::Result<()> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let split = |s: CapSet| [s.0 as u32, (s.0 >> 32) as u32];
    let (e, p, i) = (
        split(state.effective),
        split(state.permitted),
        split(state.inheritable),
    );
    let data = [
        CapData {
            effective: e[0],
            permitted: p[0],
            inheritable: i[0],
        },
        CapData {
            effective: e[1],
            permitted: p[1],
            inheritable: i[1],
        },
    ];
    // SAFETY: version-3 header plus two data structs, as capset(2) expects; capset only reads
    // `data`, and both live across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            std::ptr::addr_of_mut!(header),
            data.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `prctl(option, arg2, 0, 0, 0)`.
fn prctl(option: libc::c_int, arg2: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: the prctl options used here take integer arguments only, no pointers.
    let rc = unsafe { libc::prctl(option, arg2, 0 as libc::c_ulong, 0 as libc::c_ulong, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// The highest capability number this kernel knows (`/proc/sys/kernel/cap_last_cap`; 40 if it
/// cannot be read).
pub fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
        .min(63)
}

/// The calling thread's bounding set (`PR_CAPBSET_READ` of every capability).
pub fn bounding() -> io::Result<CapSet> {
    let mut set = CapSet::EMPTY;
    for n in 0..=last_cap() {
        if prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(n))? == 1 {
            set = set.with(Cap(n));
        }
    }
    Ok(set)
}

/// Whether `no_new_privs` is set on the calling thread.
pub fn no_new_privs() -> io::Result<bool> {
    Ok(prctl(libc::PR_GET_NO_NEW_PRIVS, 0)? == 1)
}

/// `PR_SET_KEEPCAPS`: whether the permitted set survives a switch from uid 0 to another uid
/// (the kernel clears it otherwise; the flag itself is cleared by `execve`). A script's child
/// leaves it off, so it drops every capability with its uid.
pub fn set_keepcaps(keep: bool) -> io::Result<()> {
    prctl(libc::PR_SET_KEEPCAPS, libc::c_ulong::from(keep)).map(drop)
}

/// What [`restrict`] left the thread with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restricted {
    /// The effective and permitted sets.
    pub kept: CapSet,
    /// The bounding set (unchanged if the thread could not shrink it: no `CAP_SETPCAP`).
    pub bounding: CapSet,
    /// Whether `no_new_privs` is set.
    pub no_new_privs: bool,
}

/// Drops every capability outside `keep` from the calling thread: the bounding set first
/// (which needs `CAP_SETPCAP`, itself dropped last), the ambient set, then effective =
/// permitted = `keep` ∩ permitted, inheritable = none; then sets `no_new_privs` if asked.
///
/// A process without `CAP_SETPCAP` (not started as root) keeps its bounding set; everything
/// else applies. Threads created afterwards inherit the result; threads that already exist
/// keep theirs, so call it before starting any.
pub fn restrict(keep: CapSet, set_no_new_privs: bool) -> io::Result<Restricted> {
    let before = current()?;
    if before.effective.has(Cap::SETPCAP) {
        for n in 0..=last_cap() {
            let cap = Cap(n);
            if keep.has(cap) || prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(n))? != 1 {
                continue;
            }
            prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(n)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("dropping {} from the bounding set: {e}", cap.name()),
                )
            })?;
        }
    }
    // EINVAL: a kernel without ambient capabilities (< 4.3), which then has none to clear.
    if let Err(e) = prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    ) {
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(e);
        }
    }
    let kept = keep.and(before.permitted);
    set(CapState {
        effective: kept,
        permitted: kept,
        inheritable: CapSet::EMPTY,
    })
    .map_err(|e| io::Error::new(e.kind(), format!("capset to {kept}: {e}")))?;
    if set_no_new_privs {
        prctl(libc::PR_SET_NO_NEW_PRIVS, 1)?;
    }
    Ok(Restricted {
        kept,
        bounding: bounding()?,
        no_new_privs: no_new_privs()?,
    })
}

/// [`restrict`] to what `needs` keeps, logged as `WHO: capabilities: ...` (one info line).
pub fn drop_to(needs: Needs, who: &str) -> io::Result<Restricted> {
    let r = restrict(needs.caps(), needs.no_new_privs())?;
    log::info!(
        "{who}: capabilities: kept {}; bounding set {}; no_new_privs {}",
        r.kept,
        if r.bounding == r.kept {
            "the same".to_string()
        } else {
            r.bounding.to_string()
        },
        if r.no_new_privs {
            "on"
        } else {
            "off (scripts may use setuid helpers)"
        }
    );
    Ok(r)
}

/// One `/proc/PID/status` (or `/proc/PID/task/TID/status`) reading of the capability lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcCaps {
    /// `CapEff`.
    pub effective: CapSet,
    /// `CapPrm`.
    pub permitted: CapSet,
    /// `CapInh`.
    pub inheritable: CapSet,
    /// `CapBnd`.
    pub bounding: CapSet,
    /// `CapAmb`.
    pub ambient: CapSet,
    /// `NoNewPrivs`.
    pub no_new_privs: bool,
}

impl ProcCaps {
    /// Reads the lines of a `status` file's text; a missing line reads as empty / false.
    pub fn parse(status: &str) -> ProcCaps {
        let mut out = ProcCaps::default();
        for line in status.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let set = || CapSet::from_hex(value).unwrap_or_default();
            match key {
                "CapEff" => out.effective = set(),
                "CapPrm" => out.permitted = set(),
                "CapInh" => out.inheritable = set(),
                "CapBnd" => out.bounding = set(),
                "CapAmb" => out.ambient = set(),
                "NoNewPrivs" => out.no_new_privs = value.trim() == "1",
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_print_as_proc_does_and_name_their_capabilities() {
        let s = Needs::default().caps();
        assert_eq!(s.0, 0x3000);
        assert_eq!(
            s.to_string(),
            "cap_net_admin,cap_net_raw (0000000000003000)"
        );
        let scripts = Needs {
            scripts: true,
            bind_low_port: false,
        };
        assert_eq!(scripts.caps().0, 0x30e0);
        assert!(!scripts.no_new_privs());
        assert!(Needs::default().no_new_privs());
        let low = Needs {
            scripts: false,
            bind_low_port: true,
        };
        assert_eq!(low.caps().0, 0x3400);
        assert_eq!(CapSet::EMPTY.to_string(), "none (0000000000000000)");
        assert_eq!(Cap(63).name(), "cap_63");
    }

    #[test]
    fn proc_status_lines_parse() {
        let status = "Name:\ttunlb\nCapInh:\t0000000000000000\nCapPrm:\t00000000000030e0\n\
                      CapEff:\t00000000000030e0\nCapBnd:\t00000000000030e0\n\
                      CapAmb:\t0000000000000000\nNoNewPrivs:\t0\n";
        let p = ProcCaps::parse(status);
        assert_eq!(p.effective, CapSet(0x30e0));
        assert_eq!(p.permitted, CapSet(0x30e0));
        assert_eq!(p.bounding, CapSet(0x30e0));
        assert_eq!(p.inheritable, CapSet::EMPTY);
        assert!(!p.no_new_privs);
        assert!(ProcCaps::parse("NoNewPrivs:\t1").no_new_privs);
    }

    #[test]
    fn capget_agrees_with_proc() {
        let mine = current().expect("capget");
        let tid = unsafe_free_gettid();
        let status =
            std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).expect("status");
        let p = ProcCaps::parse(&status);
        assert_eq!(mine.effective, p.effective);
        assert_eq!(mine.permitted, p.permitted);
        assert_eq!(bounding().expect("bounding"), p.bounding);
        assert_eq!(no_new_privs().expect("nnp"), p.no_new_privs);
    }

    /// This thread's id, read from `/proc/thread-self`.
    fn unsafe_free_gettid() -> String {
        std::fs::read_link("/proc/thread-self")
            .expect("thread-self")
            .file_name()
            .expect("tid")
            .to_string_lossy()
            .into_owned()
    }

    /// Runs on a thread of its own (capabilities are per thread, so the test process's other
    /// threads keep theirs) and checks the result the way the namespace test reads a daemon.
    #[test]
    fn restrict_drops_everything_else_on_this_thread_and_its_children() {
        std::thread::spawn(|| {
            let before = current().expect("capget");
            let keep = Needs::default().caps();
            let r = restrict(keep, true).expect("restrict");
            assert_eq!(r.kept, keep.and(before.permitted));
            assert!(r.no_new_privs);
            if before.effective.has(Cap::SETPCAP) {
                assert_eq!(r.bounding, keep, "bounding set shrunk");
            }
            // A thread started now inherits the sets.
            let child = std::thread::spawn(current)
                .join()
                .expect("join")
                .expect("capget");
            assert_eq!(child.effective, r.kept);
            assert_eq!(child.permitted, r.kept);
            // Dropped is dropped: restoring fails unless nothing was held to begin with.
            let regain = set(CapState {
                effective: before.permitted,
                permitted: before.permitted,
                inheritable: CapSet::EMPTY,
            });
            assert_eq!(regain.is_ok(), before.permitted == r.kept);
        })
        .join()
        .expect("thread");
    }
}
