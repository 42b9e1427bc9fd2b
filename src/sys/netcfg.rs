//! Changes to the host's network configuration that are undone when the program stops.
//!
//! [`NetChanges`] applies a change, records how to undo it, and on [`NetChanges::restore`] (or
//! on drop) undoes every recorded change in reverse order. A change that was already in place
//! (the VIP already on `lo`, a sysctl already at the wanted value) is not recorded, so restoring
//! never removes what the program did not add.
//!
//! Routes, addresses, neighbour proxies and link state are changed by running `ip` from iproute2
//! (`ip route add 10.0.0.1/32 dev tunlb0`, ...): the commands are exactly what an operator would
//! type, show up in error messages as such, and need no netlink code. Sysctls are read and written
//! under `/proc/sys`. The system calls go through the [`NetOps`] trait so tests can check the
//! recorded commands and the restore order against a fake.
//!
//! A daemon opens its [`Journal`] with [`NetChanges::journaled`]: every change is then written
//! to the journal (and fsync'd) *before* it is made, with what undoes it, so a process killed
//! by SIGKILL, the OOM killer or a panic that aborts leaves a record of what it changed. The
//! next start (or `--cleanup`) undoes those records first, newest first, and only then makes
//! its own changes, so a leftover is never mistaken for the host's original state.

use std::io;
use std::path::Path;
use std::process::Command;

use ipnet::{IpNet, Ipv4Net};

use super::journal::{Journal, JournalError, Leftover};

/// Why a network change failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The `ip` program could not be started.
    #[error("cannot run `{cmd}`: {error}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why it could not start.
        error: io::Error,
    },
    /// `ip` said the object to add is already there (`File exists`).
    #[error("`{cmd}`: already exists: {stderr}")]
    Exists {
        /// The command line.
        cmd: String,
        /// What it printed.
        stderr: String,
    },
    /// `ip` said the object (or its device) does not exist.
    #[error("`{cmd}`: not found: {stderr}")]
    Missing {
        /// The command line.
        cmd: String,
        /// What it printed.
        stderr: String,
    },
    /// `ip` failed for another reason.
    #[error("`{cmd}` failed: {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// What it printed (or its exit status when it printed nothing).
        stderr: String,
    },
    /// Reading or writing a sysctl under `/proc/sys` failed.
    #[error("sysctl {key}: {error}")]
    Sysctl {
        /// The sysctl, as a path under `/proc/sys`.
        key: String,
        /// The file error.
        error: io::Error,
    },
    /// A link's state could not be read from `/sys/class/net`.
    #[error("link {dev}: {error}")]
    Link {
        /// The interface.
        dev: String,
        /// The file error.
        error: io::Error,
    },
    /// Some undo steps of a restore failed (the others were done).
    #[error("restore: {}", join_errors(.0))]
    Restore(Vec<NetError>),
    /// The journal of changes could not be opened or written (a change is not made unless
    /// its record is safely written first).
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl NetError {
    /// Whether the error says the object or its device is gone: harmless when undoing.
    pub fn is_missing(&self) -> bool {
        match self {
            NetError::Missing { .. } => true,
            NetError::Sysctl { error, .. } | NetError::Link { error, .. } => {
                error.kind() == io::ErrorKind::NotFound
            }
            _ => false,
        }
    }
}

fn join_errors(errors: &[NetError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The operations [`NetChanges`] is built on: the real system ([`SystemOps`]) or a test fake.
pub trait NetOps {
    /// Runs `ip` with these arguments.
    fn ip(&mut self, args: &[&str]) -> Result<(), NetError>;
    /// Reads a sysctl (`key` is a path under `/proc/sys`), without the trailing newline.
    fn read_sysctl(&mut self, key: &str) -> Result<String, NetError>;
    /// Writes a sysctl.
    fn write_sysctl(&mut self, key: &str, value: &str) -> Result<(), NetError>;
    /// Reads a link's state: (administratively up, MTU).
    fn link_state(&mut self, dev: &str) -> Result<(bool, u32), NetError>;
}

/// The real system: `ip` from `$PATH`, `/proc/sys`, `/sys/class/net`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemOps;

impl NetOps for SystemOps {
    fn ip(&mut self, args: &[&str]) -> Result<(), NetError> {
        let cmd = format!("ip {}", args.join(" "));
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(|error| NetError::Spawn {
                cmd: cmd.clone(),
                error,
            })?;
        if out.status.success() {
            return Ok(());
        }
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if stderr.is_empty() {
            stderr = out.status.to_string();
        }
        Err(classify_ip_error(cmd, stderr))
    }

    fn read_sysctl(&mut self, key: &str) -> Result<String, NetError> {
        std::fs::read_to_string(format!("/proc/sys/{key}"))
            .map(|s| s.trim_end().to_owned())
            .map_err(|error| NetError::Sysctl {
                key: key.to_owned(),
                error,
            })
    }

    fn write_sysctl(&mut self, key: &str, value: &str) -> Result<(), NetError> {
        std::fs::write(format!("/proc/sys/{key}"), value).map_err(|error| NetError::Sysctl {
            key: key.to_owned(),
            error,
        })
    }

    fn link_state(&mut self, dev: &str) -> Result<(bool, u32), NetError> {
        let read = |file: &str| {
            std::fs::read_to_string(format!("/sys/class/net/{dev}/{file}")).map_err(|error| {
                NetError::Link {
                    dev: dev.to_owned(),
                    error,
                }
            })
        };
        let bad = |what: &str| NetError::Link {
            dev: dev.to_owned(),
            error: io::Error::new(io::ErrorKind::InvalidData, format!("unreadable {what}")),
        };
        let flags = read("flags")?;
        let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16)
            .map_err(|_| bad("flags"))?;
        let mtu = read("mtu")?.trim().parse().map_err(|_| bad("mtu"))?;
        Ok((flags & libc::IFF_UP as u32 != 0, mtu))
    }
}

/// Sorts an `ip` failure by what its message says.
fn classify_ip_error(cmd: String, stderr: String) -> NetError {
    const EXISTS: &[&str] = &["File exists", "already assigned"];
    const MISSING: &[&str] = &[
        "No such process",
        "Cannot find device",
        "does not exist",
        "No such file or directory",
        "No such device",
        "Cannot assign requested address",
    ];
    if EXISTS.iter().any(|m| stderr.contains(m)) {
        NetError::Exists { cmd, stderr }
    } else if MISSING.iter().any(|m| stderr.contains(m)) {
        NetError::Missing { cmd, stderr }
    } else {
        NetError::Command { cmd, stderr }
    }
}

/// The sysctl key (path under `/proc/sys`) of `net.ipv4.conf.<iface>.<name>`.
pub fn conf_key(iface: &str, name: &str) -> String {
    format!("net/ipv4/conf/{iface}/{name}")
}

/// The sysctl key (path under `/proc/sys`) of `net.ipv4.neigh.<iface>.<name>`.
pub fn neigh_key(iface: &str, name: &str) -> String {
    format!("net/ipv4/neigh/{iface}/{name}")
}

/// `net.ipv4.ip_forward` as a path under `/proc/sys`.
pub const IP_FORWARD: &str = "net/ipv4/ip_forward";

/// The sysctl key (path under `/proc/sys`) of `net.ipv6.conf.<iface>.<name>`.
pub fn conf6_key(iface: &str, name: &str) -> String {
    format!("net/ipv6/conf/{iface}/{name}")
}

/// IPv6's counterpart of [`IP_FORWARD`]: `net.ipv6.conf.all.forwarding`, which the director
/// sets to 1 beside `ip_forward` once it routes IPv6 VIPs. Beware: with forwarding on, an
/// interface whose `accept_ra` is 1 ignores Router Advertisements (2 keeps accepting them).
pub const IP6_FORWARD: &str = "net/ipv6/conf/all/forwarding";

/// The IPv6 settings of the director's TUN device, in the order to write them: no address
/// generated (`addr_gen_mode` 1, none: the TUN needs no link-local address), no Router
/// Advertisement taken, and IPv6 on (`disable_ipv6` 0), so `VIP/128 dev TUN` routes can be
/// added even where IPv6 is disabled by default. [`NetChanges::tun_ipv6`] applies them.
pub fn tun_ipv6_sysctls(tun: &str) -> [(String, &'static str); 3] {
    [
        (conf6_key(tun, "addr_gen_mode"), "1"),
        (conf6_key(tun, "accept_ra"), "0"),
        (conf6_key(tun, "disable_ipv6"), "0"),
    ]
}

/// Turns `net.ipv4.ip_forward` into `net/ipv4/ip_forward`; a key with a `/` is taken as a path
/// already (interface names may contain dots, so build those with [`conf_key`]).
fn normalize_key(key: &str) -> String {
    if key.contains('/') {
        key.to_owned()
    } else {
        key.replace('.', "/")
    }
}

/// What a policy-routing rule does when it matches (`ip rule ... lookup T | goto P | nop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleAction {
    /// Look the packet up in routing table `T`.
    Lookup(u32),
    /// Continue with the rules of preference `P` (a rule with that preference must exist, or
    /// the jump does nothing).
    Goto(u32),
    /// Do nothing (a landing place for `Goto`).
    Nop,
}

/// A policy-routing rule: `ip [-6] rule add pref P [iif DEV] [from NET] [ipproto N [sport P]]
/// ACTION`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyRule {
    /// An IPv6 rule (`ip -6 rule`); its `from`, if any, is an IPv6 prefix.
    pub ipv6: bool,
    /// Preference (lower runs first; 0 is the `local` table, 32766 `main`).
    pub pref: u32,
    /// Input interface to match, if any.
    pub iif: Option<String>,
    /// Source prefix to match, if any.
    pub from: Option<IpNet>,
    /// IP protocol to match, if any (`ipproto`).
    pub ipproto: Option<u8>,
    /// Source port to match (with `ipproto` TCP or UDP), if any.
    pub sport: Option<u16>,
    /// What to do on a match.
    pub action: RuleAction,
}

impl PolicyRule {
    /// The selector and action as `ip rule add|del` arguments (without the family: see
    /// [`command`](PolicyRule::command)).
    pub fn args(&self) -> Vec<String> {
        let mut a = vec!["pref".to_owned(), self.pref.to_string()];
        if let Some(dev) = &self.iif {
            a.extend(["iif".to_owned(), dev.clone()]);
        }
        if let Some(net) = &self.from {
            a.extend(["from".to_owned(), net.to_string()]);
        }
        if let Some(proto) = self.ipproto {
            a.extend(["ipproto".to_owned(), proto.to_string()]);
        }
        if let Some(port) = self.sport {
            a.extend(["sport".to_owned(), port.to_string()]);
        }
        match self.action {
            RuleAction::Lookup(t) => a.extend(["lookup".to_owned(), t.to_string()]),
            RuleAction::Goto(p) => a.extend(["goto".to_owned(), p.to_string()]),
            RuleAction::Nop => a.push("nop".to_owned()),
        }
        a
    }

    /// The rule as a journal record writes it: `-6` first for an IPv6 rule, then
    /// [`args`](PolicyRule::args).
    pub fn words(&self) -> String {
        let args = self.args().join(" ");
        if self.ipv6 {
            format!("-6 {args}")
        } else {
            args
        }
    }

    /// The `ip` command that `verb`s (`add`, `del`) this rule, for messages:
    /// `ip [-6] rule VERB ARGS`.
    pub fn command(&self, verb: &str) -> String {
        let six = if self.ipv6 { "-6 " } else { "" };
        format!("ip {six}rule {verb} {}", self.args().join(" "))
    }

    /// Parses what [`words`](PolicyRule::words) writes (a journal record's rule).
    pub fn parse_args(words: &[&str]) -> Option<PolicyRule> {
        let mut rule = PolicyRule {
            ipv6: false,
            pref: 0,
            iif: None,
            from: None,
            ipproto: None,
            sport: None,
            action: RuleAction::Nop,
        };
        let (mut pref, mut action) = (None, None);
        let mut it = words.iter();
        while let Some(&w) = it.next() {
            if w == "nop" {
                action = Some(RuleAction::Nop);
                continue;
            }
            if w == "-6" {
                rule.ipv6 = true;
                continue;
            }
            let v = *it.next()?;
            match w {
                "pref" => pref = Some(v.parse().ok()?),
                "iif" => rule.iif = Some(v.to_owned()),
                "from" => rule.from = Some(v.parse().ok()?),
                "ipproto" => rule.ipproto = Some(v.parse().ok()?),
                "sport" => rule.sport = Some(v.parse().ok()?),
                "lookup" => action = Some(RuleAction::Lookup(v.parse().ok()?)),
                "goto" => action = Some(RuleAction::Goto(v.parse().ok()?)),
                _ => return None,
            }
        }
        rule.pref = pref?;
        rule.action = action?;
        if rule.from.is_some_and(|f| f.addr().is_ipv6() != rule.ipv6) {
            return None;
        }
        Some(rule)
    }

    fn run<O: NetOps>(&self, ops: &mut O, verb: &str) -> Result<(), NetError> {
        let args = self.args();
        let mut full = if self.ipv6 {
            vec!["-6", "rule", verb]
        } else {
            vec!["rule", verb]
        };
        full.extend(args.iter().map(String::as_str));
        ops.ip(&full)
    }
}

/// Whether a change was made (and will be undone) or was already in place (and will be left).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The change was made and recorded.
    Changed,
    /// It was already so; nothing was recorded.
    AlreadyInPlace,
}

/// One recorded change and what undoes it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Change {
    Sysctl {
        key: String,
        old: String,
    },
    RouteAdded {
        dst: IpNet,
        dev: String,
    },
    RouteDeleted {
        dst: IpNet,
        dev: String,
    },
    TableRouteAdded {
        dst: IpNet,
        dev: String,
        table: u32,
    },
    TableRouteDeleted {
        dst: IpNet,
        dev: String,
        table: u32,
    },
    RuleAdded(PolicyRule),
    RuleDeleted(PolicyRule),
    AddressAdded {
        addr: IpNet,
        dev: String,
    },
    Link {
        dev: String,
        was_up: bool,
        old_mtu: u32,
    },
}

impl Change {
    /// The change as a journal record (one line; see [`Change::parse`]).
    fn record(&self) -> String {
        match self {
            Change::Sysctl { key, old } => format!("sysctl {key} {old}"),
            Change::RouteAdded { dst, dev } => format!("route-add {dst} {dev}"),
            Change::RouteDeleted { dst, dev } => format!("route-del {dst} {dev}"),
            Change::TableRouteAdded { dst, dev, table } => {
                format!("table-route-add {dst} {dev} {table}")
            }
            Change::TableRouteDeleted { dst, dev, table } => {
                format!("table-route-del {dst} {dev} {table}")
            }
            Change::RuleAdded(rule) => format!("rule-add {}", rule.words()),
            Change::RuleDeleted(rule) => format!("rule-del {}", rule.words()),
            Change::AddressAdded { addr, dev } => format!("addr-add {addr} {dev}"),
            Change::Link {
                dev,
                was_up,
                old_mtu,
            } => format!(
                "link {dev} {} {old_mtu}",
                if *was_up { "up" } else { "down" }
            ),
        }
    }

    /// Reads a journal record back; None if it is not one [`Change::record`] writes.
    fn parse(record: &str) -> Option<Change> {
        let (kind, rest) = record.split_once(' ')?;
        if kind == "sysctl" {
            // The old value is the rest of the line, spaces and all ("4096 131072 6291456").
            let (key, old) = rest.split_once(' ').unwrap_or((rest, ""));
            if key.is_empty() || key.contains("..") || key.starts_with('/') {
                return None;
            }
            return Some(Change::Sysctl {
                key: key.to_owned(),
                old: old.to_owned(),
            });
        }
        let w: Vec<&str> = rest.split(' ').collect();
        let dev = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Some(match (kind, w.as_slice()) {
            ("route-add", [dst, d]) => Change::RouteAdded {
                dst: dst.parse().ok()?,
                dev: dev(d)?,
            },
            ("route-del", [dst, d]) => Change::RouteDeleted {
                dst: dst.parse().ok()?,
                dev: dev(d)?,
            },
            ("table-route-add", [dst, d, t]) => Change::TableRouteAdded {
                dst: dst.parse().ok()?,
                dev: dev(d)?,
                table: t.parse().ok()?,
            },
            ("table-route-del", [dst, d, t]) => Change::TableRouteDeleted {
                dst: dst.parse().ok()?,
                dev: dev(d)?,
                table: t.parse().ok()?,
            },
            ("rule-add", words) => Change::RuleAdded(PolicyRule::parse_args(words)?),
            ("rule-del", words) => Change::RuleDeleted(PolicyRule::parse_args(words)?),
            ("addr-add", [addr, d]) => Change::AddressAdded {
                addr: addr.parse().ok()?,
                dev: dev(d)?,
            },
            ("link", [d, state, mtu]) => Change::Link {
                dev: dev(d)?,
                was_up: match *state {
                    "up" => true,
                    "down" => false,
                    _ => return None,
                },
                old_mtu: mtu.parse().ok()?,
            },
            _ => return None,
        })
    }

    /// Whether `self` is the add whose effect `del` (a `RouteDeleted` / `RuleDeleted`) cancels.
    fn is_undone_by(&self, del: &Change) -> bool {
        match (self, del) {
            (Change::RouteAdded { dst, dev }, Change::RouteDeleted { dst: d2, dev: v2 }) => {
                dst == d2 && dev == v2
            }
            (
                Change::TableRouteAdded { dst, dev, table },
                Change::TableRouteDeleted {
                    dst: d2,
                    dev: v2,
                    table: t2,
                },
            ) => dst == d2 && dev == v2 && table == t2,
            (Change::RuleAdded(a), Change::RuleDeleted(b)) => a == b,
            _ => false,
        }
    }

    /// Whether `self` changed the same object as `other` (same route, same rule).
    fn same_object(&self, other: &Change) -> bool {
        // Routes of the main table have no table number here (`None`).
        let route = |c: &Change| match c {
            Change::RouteAdded { dst, dev } | Change::RouteDeleted { dst, dev } => {
                Some((*dst, dev.clone(), None))
            }
            Change::TableRouteAdded { dst, dev, table }
            | Change::TableRouteDeleted { dst, dev, table } => {
                Some((*dst, dev.clone(), Some(*table)))
            }
            _ => None,
        };
        let rule = |c: &Change| match c {
            Change::RuleAdded(r) | Change::RuleDeleted(r) => Some(r.clone()),
            _ => None,
        };
        (route(self).is_some() && route(self) == route(other))
            || (rule(self).is_some() && rule(self) == rule(other))
    }
}

/// A change made, and the journal record that describes it (if a journal is kept).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Recorded {
    change: Change,
    seq: Option<u64>,
}

/// What opening a journal undid: the changes a dead process had left.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The pid of the process that left them, if its journal said.
    pub pid: Option<u32>,
    /// One line per change undone, newest first (the command or sysctl write that undid it;
    /// "(already gone)" when its object had disappeared with the process, e.g. a route through
    /// its TUN device).
    pub undone: Vec<String>,
    /// Undo steps that failed; their records stay in the journal (and are tried again at
    /// exit, at the next start or by `--cleanup`).
    pub errors: Vec<NetError>,
    /// Journal lines that could not be read (skipped).
    pub unreadable: usize,
}

impl Recovered {
    /// The report `--cleanup` prints and a start logs: one line per undone change (or error).
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self.undone.iter().map(|u| format!("undone: {u}")).collect();
        out.extend(
            self.errors
                .iter()
                .map(|e| format!("NOT undone (kept for the next try): {e}")),
        );
        if self.unreadable > 0 {
            out.push(format!(
                "{} unreadable journal line(s) skipped",
                self.unreadable
            ));
        }
        out
    }

    /// Whether there was nothing to undo.
    pub fn is_empty(&self) -> bool {
        self.undone.is_empty() && self.errors.is_empty() && self.unreadable == 0
    }
}

/// Opens a daemon's journal ([`NetChanges::journaled`]) and logs, one line each, what a dead
/// predecessor left and this start undid. `prefix` starts each log line (`tunlb director:`).
pub fn open_journaled(
    path: &Path,
    role: &str,
    prefix: &str,
) -> Result<NetChanges<SystemOps>, NetError> {
    let (net, recovered) = NetChanges::journaled(path, role)?;
    if !recovered.is_empty() {
        let who = recovered
            .pid
            .map(|p| format!(" (pid {p})"))
            .unwrap_or_default();
        log::warn!(
            "{prefix} a previous {role}{who} died without restoring the host; undoing what its journal {} records",
            path.display()
        );
        for line in recovered.lines() {
            log::warn!("{prefix} {line}");
        }
    }
    Ok(net)
}

/// `--cleanup`: undoes what a dead `role` daemon left in the journal at `path` (refused while a
/// live one holds it) and returns what was undone; the journal is removed when nothing is left.
/// A missing journal means nothing to undo.
pub fn cleanup(path: &Path, role: &str) -> Result<Recovered, NetError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Recovered::default()),
        _ => {}
    }
    let (net, recovered) = NetChanges::journaled(path, role)?;
    // What failed is tried once more by the drop's restore, and kept in the journal if it
    // fails again.
    drop(net);
    Ok(recovered)
}

/// Network changes made so far, undone in reverse order by [`restore`](NetChanges::restore) or
/// on drop.
#[derive(Debug)]
pub struct NetChanges<O: NetOps = SystemOps> {
    ops: O,
    changes: Vec<Recorded>,
    journal: Option<Journal>,
}

impl NetChanges<SystemOps> {
    /// Changes to the real system, without a journal (tests, tools).
    pub fn new() -> NetChanges<SystemOps> {
        NetChanges::with_ops(SystemOps)
    }

    /// Changes to the real system journaled at `path` (e.g. [`Journal::path_for`]
    /// `("director.journal")`) for a `role` daemon: opens and locks the journal (refusing if a
    /// live process holds it), undoes what a dead process left there, then records every
    /// change before making it.
    pub fn journaled(
        path: &Path,
        role: &str,
    ) -> Result<(NetChanges<SystemOps>, Recovered), NetError> {
        let (journal, left) = Journal::open(path, role)?;
        let mut net = NetChanges::new();
        let recovered = net.use_journal(journal, left)?;
        Ok((net, recovered))
    }
}

impl Default for NetChanges<SystemOps> {
    fn default() -> Self {
        NetChanges::new()
    }
}

impl<O: NetOps> NetChanges<O> {
    /// Changes made through `ops`.
    pub fn with_ops(ops: O) -> NetChanges<O> {
        NetChanges {
            ops,
            changes: Vec::new(),
            journal: None,
        }
    }

    /// Starts recording in `journal`, after undoing (newest first) the records `left` that a
    /// dead process left in it. Undo steps that fail stay recorded (in memory and in the
    /// journal) and are tried again at [`restore`](NetChanges::restore).
    pub fn use_journal(
        &mut self,
        mut journal: Journal,
        left: Leftover,
    ) -> Result<Recovered, NetError> {
        let mut recovered = Recovered {
            pid: left.pid,
            unreadable: left.unreadable,
            ..Recovered::default()
        };
        let mut kept = Vec::new();
        for (_, record) in left.records.iter().rev() {
            let Some(change) = Change::parse(record) else {
                log::warn!(
                    "tunlb: journal {}: cannot read the record {record:?}; skipping it",
                    journal.path().display()
                );
                recovered.unreadable += 1;
                continue;
            };
            let what = undo_text(&change);
            match self.undo(&change) {
                Ok(()) => recovered.undone.push(what),
                Err(e) if e.is_missing() => recovered.undone.push(format!("{what} (already gone)")),
                Err(e) => {
                    recovered.errors.push(e);
                    kept.push(change);
                }
            }
        }
        kept.reverse();
        let records: Vec<String> = kept.iter().map(Change::record).collect();
        let seqs = journal.rewrite(&records)?;
        self.changes.splice(
            0..0,
            kept.into_iter().zip(seqs).map(|(change, seq)| Recorded {
                change,
                seq: Some(seq),
            }),
        );
        self.journal = Some(journal);
        Ok(recovered)
    }

    /// The journal, if changes are journaled.
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    /// The operations backend (tests inspect their fake through it).
    pub fn ops(&self) -> &O {
        &self.ops
    }

    /// How many changes would be undone.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Whether nothing would be undone.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Writes `change`'s record to the journal (if any) before `op` makes it; keeps it if
    /// `op` made the change, cancels it otherwise (already in place, or failed).
    fn make(
        &mut self,
        change: Change,
        op: impl FnOnce(&mut O) -> Result<Applied, NetError>,
    ) -> Result<Applied, NetError> {
        let seq = match &mut self.journal {
            Some(j) => Some(j.append(&change.record())?),
            None => None,
        };
        let result = op(&mut self.ops);
        if let Ok(Applied::Changed) = result {
            self.changes.push(Recorded { change, seq });
            self.compact_journal();
        } else {
            self.cancel(seq);
        }
        result
    }

    /// Makes a deletion (`RouteDeleted` / `RuleDeleted`). If the object is one this process
    /// added (its newest record is that add), deleting it only forgets the add: the record
    /// is cancelled after the deletion, so the journal never says less than what is on the host.
    fn make_deletion(
        &mut self,
        change: Change,
        op: impl FnOnce(&mut O) -> Result<Applied, NetError>,
    ) -> Result<Applied, NetError> {
        let ours = self
            .changes
            .iter()
            .rposition(|r| r.change.same_object(&change))
            .filter(|&i| self.changes[i].change.is_undone_by(&change));
        let Some(i) = ours else {
            return self.make(change, op);
        };
        let applied = op(&mut self.ops)?;
        let added = self.changes.remove(i);
        self.cancel(added.seq);
        Ok(applied)
    }

    /// Cancels a journal record; a failure is logged (the record's undo is harmless: it
    /// finds its object gone or already as it was).
    fn cancel(&mut self, seq: Option<u64>) {
        if let (Some(j), Some(seq)) = (&mut self.journal, seq) {
            if let Err(e) = j.cancel(seq) {
                log::warn!("tunlb: {e}");
            }
        }
    }

    /// Rewrites the journal with the live records when cancellations have made it long.
    fn compact_journal(&mut self) {
        let Some(j) = &mut self.journal else { return };
        if !j.wants_rewrite() {
            return;
        }
        let records: Vec<String> = self.changes.iter().map(|r| r.change.record()).collect();
        match j.rewrite(&records) {
            Ok(seqs) => {
                for (r, seq) in self.changes.iter_mut().zip(seqs) {
                    r.seq = Some(seq);
                }
            }
            Err(e) => log::warn!("tunlb: compacting the journal: {e}"),
        }
    }

    /// Sets a sysctl (`net.ipv4.ip_forward` or a path under `/proc/sys` such as
    /// [`conf_key`]`("eth0", "rp_filter")`), remembering the old value.
    pub fn set_sysctl(&mut self, key: &str, value: &str) -> Result<Applied, NetError> {
        let key = normalize_key(key);
        let old = self.ops.read_sysctl(&key)?;
        if old == value {
            return Ok(Applied::AlreadyInPlace);
        }
        let change = Change::Sysctl {
            key: key.clone(),
            old,
        };
        self.make(change, |ops| {
            ops.write_sysctl(&key, value).map(|()| Applied::Changed)
        })
    }

    /// `ip route add DST dev DEV`.
    pub fn add_route(&mut self, dst: Ipv4Net, dev: &str) -> Result<Applied, NetError> {
        self.add_route_ip(dst.into(), dev)
    }

    /// `ip route add DST dev DEV` for either family (an IPv6 VIP as `/128` into the TUN).
    pub fn add_route_ip(&mut self, dst: IpNet, dev: &str) -> Result<Applied, NetError> {
        let d = dst.to_string();
        let change = Change::RouteAdded {
            dst,
            dev: dev.to_owned(),
        };
        self.make(change, |ops| {
            exists_ok(ops.ip(&["route", "add", &d, "dev", dev]))
        })
    }

    /// `ip route del DST dev DEV`; restoring adds it back (unless this process had added it).
    pub fn del_route(&mut self, dst: Ipv4Net, dev: &str) -> Result<Applied, NetError> {
        self.del_route_ip(dst.into(), dev)
    }

    /// [`del_route`](Self::del_route) for either family.
    pub fn del_route_ip(&mut self, dst: IpNet, dev: &str) -> Result<Applied, NetError> {
        let d = dst.to_string();
        let change = Change::RouteDeleted {
            dst,
            dev: dev.to_owned(),
        };
        self.make_deletion(change, |ops| {
            missing_ok(ops.ip(&["route", "del", &d, "dev", dev]))
        })
    }

    /// `ip route add DST dev DEV table TABLE`: a route in a policy-routing table.
    pub fn add_table_route(
        &mut self,
        dst: Ipv4Net,
        dev: &str,
        table: u32,
    ) -> Result<Applied, NetError> {
        self.add_table_route_ip(dst.into(), dev, table)
    }

    /// [`add_table_route`](Self::add_table_route) for either family (`--announce-table` with
    /// an IPv6 VIP).
    pub fn add_table_route_ip(
        &mut self,
        dst: IpNet,
        dev: &str,
        table: u32,
    ) -> Result<Applied, NetError> {
        let (d, t) = (dst.to_string(), table.to_string());
        let change = Change::TableRouteAdded {
            dst,
            dev: dev.to_owned(),
            table,
        };
        self.make(change, |ops| {
            exists_ok(ops.ip(&["route", "add", &d, "dev", dev, "table", &t]))
        })
    }

    /// `ip route del DST dev DEV table TABLE`; restoring adds it back (unless this process had
    /// added it).
    pub fn del_table_route(
        &mut self,
        dst: Ipv4Net,
        dev: &str,
        table: u32,
    ) -> Result<Applied, NetError> {
        self.del_table_route_ip(dst.into(), dev, table)
    }

    /// [`del_table_route`](Self::del_table_route) for either family.
    pub fn del_table_route_ip(
        &mut self,
        dst: IpNet,
        dev: &str,
        table: u32,
    ) -> Result<Applied, NetError> {
        let (d, t) = (dst.to_string(), table.to_string());
        let change = Change::TableRouteDeleted {
            dst,
            dev: dev.to_owned(),
            table,
        };
        self.make_deletion(change, |ops| {
            missing_ok(ops.ip(&["route", "del", &d, "dev", dev, "table", &t]))
        })
    }

    /// `ip rule add RULE`.
    pub fn add_rule(&mut self, rule: &PolicyRule) -> Result<Applied, NetError> {
        self.make(Change::RuleAdded(rule.clone()), |ops| {
            exists_ok(rule.run(ops, "add"))
        })
    }

    /// `ip rule del RULE`; restoring adds it back (unless this process had added it).
    pub fn del_rule(&mut self, rule: &PolicyRule) -> Result<Applied, NetError> {
        self.make_deletion(Change::RuleDeleted(rule.clone()), |ops| {
            missing_ok(rule.run(ops, "del"))
        })
    }

    /// `ip addr add ADDR dev DEV` (e.g. a VIP as `/32` on `lo`).
    pub fn add_address(&mut self, addr: Ipv4Net, dev: &str) -> Result<Applied, NetError> {
        self.add_address_ip(addr.into(), dev)
    }

    /// [`add_address`](Self::add_address) for either family. An IPv6 address is added
    /// `nodad` (usable at once, no Duplicate Address Detection probe sent for it: a hidden VIP
    /// is meant to exist on several hosts); restoring deletes it.
    pub fn add_address_ip(&mut self, addr: IpNet, dev: &str) -> Result<Applied, NetError> {
        let a = addr.to_string();
        let change = Change::AddressAdded {
            addr,
            dev: dev.to_owned(),
        };
        let mut args = vec!["addr", "add", a.as_str(), "dev", dev];
        if addr.addr().is_ipv6() {
            args.push("nodad");
        }
        self.make(change, |ops| exists_ok(ops.ip(&args)))
    }

    /// `ip link set dev DEV up|down [mtu MTU]`; restoring puts back the old state and MTU.
    pub fn set_link(&mut self, dev: &str, up: bool, mtu: Option<u16>) -> Result<Applied, NetError> {
        let (was_up, old_mtu) = self.ops.link_state(dev)?;
        let mtu_changes = mtu.is_some_and(|m| u32::from(m) != old_mtu);
        if was_up == up && !mtu_changes {
            return Ok(Applied::AlreadyInPlace);
        }
        let m = mtu.map(|m| m.to_string());
        let mut args = vec!["link", "set", "dev", dev, if up { "up" } else { "down" }];
        if let Some(m) = &m {
            args.extend(["mtu", m.as_str()]);
        }
        let change = Change::Link {
            dev: dev.to_owned(),
            was_up,
            old_mtu,
        };
        self.make(change, |ops| ops.ip(&args).map(|()| Applied::Changed))
    }

    /// Readies the TUN device `tun` for IPv6 VIP routes ([`tun_ipv6_sysctls`]) and turns IPv6
    /// forwarding on ([`IP6_FORWARD`]); every change is recorded and undone like the others.
    pub fn tun_ipv6(&mut self, tun: &str) -> Result<(), NetError> {
        for (key, value) in tun_ipv6_sysctls(tun) {
            self.set_sysctl(&key, value)?;
        }
        self.set_sysctl(IP6_FORWARD, "1").map(drop)
    }

    /// Undoes every recorded change, newest first. A failed step does not stop the others;
    /// steps that fail because the object or its device is gone count as done. Afterwards
    /// nothing is recorded, so a second call (or the drop) does nothing. With a journal, the
    /// file is then removed, or keeps only the steps that failed (for the next start or
    /// `--cleanup`).
    pub fn restore(&mut self) -> Result<(), NetError> {
        if self.changes.is_empty() {
            // Nothing to undo; a journal that holds nothing either goes, one that keeps what
            // an earlier restore could not undo stays.
            if self.journal.as_ref().is_some_and(|j| j.live() == 0) {
                self.journal = None;
            }
            return Ok(());
        }
        let mut errors = Vec::new();
        let mut failed = Vec::new();
        while let Some(rec) = self.changes.pop() {
            if let Err(e) = self.undo(&rec.change) {
                if !e.is_missing() {
                    errors.push(e);
                    failed.push(rec.change.record());
                }
            }
        }
        if let Some(j) = &mut self.journal {
            if failed.is_empty() {
                // Nothing left to undo: the journal goes (its drop removes the file), and what
                // a late caller might still change is no longer journaled.
                if j.live() > 0 {
                    if let Err(e) = j.rewrite(&[]) {
                        errors.push(e.into());
                    }
                }
                if errors.is_empty() {
                    self.journal = None;
                }
            } else {
                failed.reverse();
                if let Err(e) = j.rewrite(&failed) {
                    errors.push(e.into());
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(NetError::Restore(errors))
        }
    }

    fn undo(&mut self, change: &Change) -> Result<(), NetError> {
        match change {
            Change::Sysctl { key, old } => self.ops.write_sysctl(key, old),
            Change::RouteAdded { dst, dev } => {
                self.ops.ip(&["route", "del", &dst.to_string(), "dev", dev])
            }
            Change::RouteDeleted { dst, dev } => {
                exists_ok(self.ops.ip(&["route", "add", &dst.to_string(), "dev", dev])).map(drop)
            }
            Change::TableRouteAdded { dst, dev, table } => self.ops.ip(&[
                "route",
                "del",
                &dst.to_string(),
                "dev",
                dev,
                "table",
                &table.to_string(),
            ]),
            Change::TableRouteDeleted { dst, dev, table } => exists_ok(self.ops.ip(&[
                "route",
                "add",
                &dst.to_string(),
                "dev",
                dev,
                "table",
                &table.to_string(),
            ]))
            .map(drop),
            Change::RuleAdded(rule) => rule.run(&mut self.ops, "del"),
            Change::RuleDeleted(rule) => exists_ok(rule.run(&mut self.ops, "add")).map(drop),
            Change::AddressAdded { addr, dev } => {
                self.ops.ip(&["addr", "del", &addr.to_string(), "dev", dev])
            }
            Change::Link {
                dev,
                was_up,
                old_mtu,
            } => {
                let m = old_mtu.to_string();
                let state = if *was_up { "up" } else { "down" };
                self.ops.ip(&["link", "set", "dev", dev, state, "mtu", &m])
            }
        }
    }
}

/// What undoing `change` does, as a line for the log and `--cleanup`'s report.
fn undo_text(change: &Change) -> String {
    match change {
        Change::Sysctl { key, old } => format!("sysctl {}={old}", key.replace('/', ".")),
        Change::RouteAdded { dst, dev } => format!("ip route del {dst} dev {dev}"),
        Change::RouteDeleted { dst, dev } => format!("ip route add {dst} dev {dev}"),
        Change::TableRouteAdded { dst, dev, table } => {
            format!("ip route del {dst} dev {dev} table {table}")
        }
        Change::TableRouteDeleted { dst, dev, table } => {
            format!("ip route add {dst} dev {dev} table {table}")
        }
        Change::RuleAdded(rule) => rule.command("del"),
        Change::RuleDeleted(rule) => rule.command("add"),
        Change::AddressAdded { addr, dev } => format!("ip addr del {addr} dev {dev}"),
        Change::Link {
            dev,
            was_up,
            old_mtu,
        } => format!(
            "ip link set dev {dev} {} mtu {old_mtu}",
            if *was_up { "up" } else { "down" }
        ),
    }
}

#[cfg(test)]
impl<O: NetOps> NetChanges<O> {
    /// Tests: leaves as a killed process would, with nothing undone and the journal kept.
    pub(crate) fn crash(mut self) {
        self.changes.clear();
        if let Some(j) = self.journal.take() {
            j.crash();
        }
    }
}

impl<O: NetOps> Drop for NetChanges<O> {
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            log::error!("tunlb: could not undo every network change: {e}");
        }
    }
}

fn exists_ok(r: Result<(), NetError>) -> Result<Applied, NetError> {
    match r {
        Ok(()) => Ok(Applied::Changed),
        Err(NetError::Exists { .. }) => Ok(Applied::AlreadyInPlace),
        Err(e) => Err(e),
    }
}

fn missing_ok(r: Result<(), NetError>) -> Result<Applied, NetError> {
    match r {
        Ok(()) => Ok(Applied::Changed),
        Err(NetError::Missing { .. }) => Ok(Applied::AlreadyInPlace),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A [`NetOps`] that records commands and keeps sysctls in a map.

    use super::*;
    use std::collections::HashMap;

    /// Builds the error an `ip` command fails with, from its command line.
    pub type MakeError = fn(String) -> NetError;

    /// Records every call; `fail_ip` makes `ip` commands starting with a prefix fail.
    #[derive(Debug, Default)]
    pub struct FakeOps {
        pub log: Vec<String>,
        pub sysctls: HashMap<String, String>,
        pub links: HashMap<String, (bool, u32)>,
        pub fail_ip: Vec<(String, MakeError)>,
        /// A journal file to read at every change: `snooped` gets its last live record then.
        pub snoop: Option<std::path::PathBuf>,
        /// The newest live journal record at each change (see `snoop`).
        pub snooped: Vec<String>,
    }

    impl FakeOps {
        fn peek(&mut self) {
            if let Some(path) = &self.snoop {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let left = crate::sys::journal::parse(&text);
                let last = left.records.last().map(|(_, r)| r.clone());
                self.snooped.push(last.unwrap_or_default());
            }
        }
    }

    impl NetOps for FakeOps {
        fn ip(&mut self, args: &[&str]) -> Result<(), NetError> {
            let cmd = format!("ip {}", args.join(" "));
            self.peek();
            self.log.push(cmd.clone());
            for (prefix, make) in &self.fail_ip {
                if cmd.starts_with(prefix.as_str()) {
                    return Err(make(cmd));
                }
            }
            Ok(())
        }

        fn read_sysctl(&mut self, key: &str) -> Result<String, NetError> {
            self.sysctls
                .get(key)
                .cloned()
                .ok_or_else(|| NetError::Sysctl {
                    key: key.to_owned(),
                    error: io::Error::from(io::ErrorKind::NotFound),
                })
        }

        fn write_sysctl(&mut self, key: &str, value: &str) -> Result<(), NetError> {
            self.peek();
            self.log.push(format!("sysctl {key}={value}"));
            match self.sysctls.get_mut(key) {
                Some(v) => {
                    *v = value.to_owned();
                    Ok(())
                }
                None => Err(NetError::Sysctl {
                    key: key.to_owned(),
                    error: io::Error::from(io::ErrorKind::NotFound),
                }),
            }
        }

        fn link_state(&mut self, dev: &str) -> Result<(bool, u32), NetError> {
            self.links.get(dev).copied().ok_or_else(|| NetError::Link {
                dev: dev.to_owned(),
                error: io::Error::from(io::ErrorKind::NotFound),
            })
        }
    }

    impl FakeOps {
        /// A fake whose sysctls start at these values.
        pub fn with_sysctls(pairs: &[(&str, &str)]) -> FakeOps {
            FakeOps {
                sysctls: pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..FakeOps::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeOps;
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn restore_undoes_every_change_in_reverse_order() {
        let ops = FakeOps::with_sysctls(&[
            ("net/ipv4/ip_forward", "0"),
            ("net/ipv4/conf/all/rp_filter", "2"),
            ("net/ipv4/conf/eth0.100/arp_ignore", "0"),
        ]);
        let mut nc = NetChanges::with_ops(ops);
        nc.ops.links.insert("tun0".into(), (false, 1500));
        assert_eq!(
            nc.set_sysctl("net.ipv4.ip_forward", "1").unwrap(),
            Applied::Changed
        );
        nc.set_sysctl(&conf_key("all", "rp_filter"), "0").unwrap();
        nc.set_sysctl(&conf_key("eth0.100", "arp_ignore"), "1")
            .unwrap();
        nc.set_link("tun0", true, Some(1400)).unwrap();
        nc.add_address(net("10.0.0.10/32"), "lo").unwrap();
        nc.add_route(net("10.0.0.10/32"), "tun0").unwrap();
        assert_eq!(nc.len(), 6);
        let applied = nc.ops.log.len();
        nc.restore().unwrap();
        assert!(nc.is_empty());
        assert_eq!(
            nc.ops.log[applied..],
            [
                "ip route del 10.0.0.10/32 dev tun0",
                "ip addr del 10.0.0.10/32 dev lo",
                "ip link set dev tun0 down mtu 1500",
                "sysctl net/ipv4/conf/eth0.100/arp_ignore=0",
                "sysctl net/ipv4/conf/all/rp_filter=2",
                "sysctl net/ipv4/ip_forward=0",
            ]
        );
        assert_eq!(nc.ops.sysctls["net/ipv4/ip_forward"], "0");
        // A second restore, and the drop, do nothing more.
        nc.restore().unwrap();
        assert_eq!(nc.ops.log.len(), applied + 6);
    }

    #[test]
    fn ipv6_vip_routes_and_tun_sysctls_are_undone() {
        let ops = FakeOps::with_sysctls(&[
            ("net/ipv6/conf/all/forwarding", "0"),
            ("net/ipv6/conf/tun0/addr_gen_mode", "0"),
            ("net/ipv6/conf/tun0/accept_ra", "1"),
            ("net/ipv6/conf/tun0/disable_ipv6", "1"),
        ]);
        let mut nc = NetChanges::with_ops(ops);
        let vip: IpNet = "2001:db8::100/128".parse().unwrap();
        nc.tun_ipv6("tun0").unwrap();
        nc.add_route_ip(vip, "tun0").unwrap();
        nc.add_table_route_ip(vip, "tun0", 100).unwrap();
        // Deleting what this process added only forgets the add.
        nc.del_table_route_ip(vip, "tun0", 100).unwrap();
        assert_eq!(nc.ops.sysctls["net/ipv6/conf/all/forwarding"], "1");
        assert_eq!(nc.ops.sysctls["net/ipv6/conf/tun0/disable_ipv6"], "0");
        assert_eq!(nc.len(), 5);
        let applied = nc.ops.log.len();
        nc.restore().unwrap();
        assert_eq!(
            nc.ops.log[applied..],
            [
                "ip route del 2001:db8::100/128 dev tun0",
                "sysctl net/ipv6/conf/all/forwarding=0",
                "sysctl net/ipv6/conf/tun0/disable_ipv6=1",
                "sysctl net/ipv6/conf/tun0/accept_ra=1",
                "sysctl net/ipv6/conf/tun0/addr_gen_mode=0",
            ]
        );
        // The journal records of IPv6 routes read back (a crash's leftovers are undone).
        for record in [
            "route-add 2001:db8::100/128 tun0",
            "table-route-del 2001:db8::100/128 tun0 100",
        ] {
            let change = Change::parse(record).expect(record);
            assert_eq!(change.record(), record);
        }
        assert_eq!(
            undo_text(&Change::parse("route-add 2001:db8::100/128 tun0").unwrap()),
            "ip route del 2001:db8::100/128 dev tun0"
        );
    }

    #[test]
    fn policy_rules_and_table_routes_are_undone() {
        let mut nc = NetChanges::with_ops(FakeOps::default());
        let lookup = PolicyRule {
            ipv6: false,
            pref: 101,
            iif: None,
            from: Some(net("10.10.0.12/32").into()),
            ipproto: Some(6),
            sport: Some(8080),
            action: RuleAction::Lookup(7461),
        };
        let guard = PolicyRule {
            ipv6: false,
            pref: 100,
            iif: Some("tunlb0".into()),
            from: None,
            ipproto: None,
            sport: None,
            action: RuleAction::Goto(102),
        };
        let nop = PolicyRule {
            ipv6: false,
            pref: 102,
            iif: None,
            from: None,
            ipproto: None,
            sport: None,
            action: RuleAction::Nop,
        };
        nc.add_table_route(net("0.0.0.0/0"), "tunlb0", 7461)
            .unwrap();
        for r in [&guard, &nop, &lookup] {
            nc.add_rule(r).unwrap();
        }
        nc.del_rule(&lookup).unwrap();
        assert_eq!(
            nc.ops.log,
            [
                "ip route add 0.0.0.0/0 dev tunlb0 table 7461",
                "ip rule add pref 100 iif tunlb0 goto 102",
                "ip rule add pref 102 nop",
                "ip rule add pref 101 from 10.10.0.12/32 ipproto 6 sport 8080 lookup 7461",
                "ip rule del pref 101 from 10.10.0.12/32 ipproto 6 sport 8080 lookup 7461",
            ]
        );
        nc.ops.log.clear();
        // The rule added then deleted is forgotten: nothing to undo for it.
        nc.restore().unwrap();
        assert_eq!(
            nc.ops.log,
            [
                "ip rule del pref 102 nop",
                "ip rule del pref 100 iif tunlb0 goto 102",
                "ip route del 0.0.0.0/0 dev tunlb0 table 7461",
            ]
        );
    }

    #[test]
    fn what_was_already_in_place_is_left_alone() {
        let mut ops = FakeOps::with_sysctls(&[("net/ipv4/conf/lo/arp_ignore", "1")]);
        ops.fail_ip
            .push(("ip addr add".into(), |cmd| NetError::Exists {
                cmd,
                stderr: "RTNETLINK answers: File exists".into(),
            }));
        ops.links.insert("lo".into(), (true, 65536));
        let mut nc = NetChanges::with_ops(ops);
        assert_eq!(
            nc.set_sysctl(&conf_key("lo", "arp_ignore"), "1").unwrap(),
            Applied::AlreadyInPlace
        );
        assert_eq!(
            nc.add_address(net("10.0.0.10/32"), "lo").unwrap(),
            Applied::AlreadyInPlace
        );
        assert_eq!(
            nc.set_link("lo", true, None).unwrap(),
            Applied::AlreadyInPlace
        );
        assert!(nc.is_empty());
    }

    #[test]
    fn a_failed_undo_step_does_not_stop_the_others_and_gone_objects_are_fine() {
        let mut ops = FakeOps::with_sysctls(&[("net/ipv4/ip_forward", "0")]);
        ops.fail_ip
            .push(("ip route del".into(), |cmd| NetError::Missing {
                cmd,
                stderr: "Cannot find device \"tun0\"".into(),
            }));
        ops.fail_ip
            .push(("ip addr del".into(), |cmd| NetError::Command {
                cmd,
                stderr: "Operation not permitted".into(),
            }));
        let mut nc = NetChanges::with_ops(ops);
        nc.set_sysctl(IP_FORWARD, "1").unwrap();
        nc.add_address(net("10.0.0.10/32"), "lo").unwrap();
        nc.add_route(net("10.0.0.10/32"), "tun0").unwrap();
        let err = nc.restore().unwrap_err();
        let NetError::Restore(errs) = &err else {
            panic!("{err}")
        };
        assert_eq!(errs.len(), 1);
        assert!(err.to_string().contains("ip addr del 10.0.0.10/32 dev lo"));
        assert_eq!(nc.ops.sysctls["net/ipv4/ip_forward"], "0");
    }

    #[test]
    fn errors_name_the_command_and_what_it_said() {
        let e = classify_ip_error(
            "ip route add 10.0.0.1/32 dev x".into(),
            "RTNETLINK answers: File exists".into(),
        );
        assert!(matches!(e, NetError::Exists { .. }));
        let e = classify_ip_error(
            "ip link set dev x up".into(),
            "Cannot find device \"x\"".into(),
        );
        assert!(e.is_missing());
        let e = classify_ip_error(
            "ip addr add x dev lo".into(),
            "Error: any valid prefix is expected rather than \"x\".".into(),
        );
        assert!(matches!(e, NetError::Command { .. }));
        assert!(e
            .to_string()
            .contains("`ip addr add x dev lo` failed: Error: any valid"));
        let mut nc = NetChanges::with_ops(FakeOps::default());
        let e = nc
            .set_sysctl("net.ipv4.conf.nope.rp_filter", "0")
            .unwrap_err();
        assert!(e
            .to_string()
            .starts_with("sysctl net/ipv4/conf/nope/rp_filter"));
    }

    #[test]
    fn system_ops_read_real_sysctls_and_links() {
        let mut ops = SystemOps;
        let v = ops.read_sysctl(IP_FORWARD).unwrap();
        assert!(v == "0" || v == "1");
        let (_, mtu) = ops.link_state("lo").unwrap();
        assert!(mtu > 0);
        assert!(ops.read_sysctl("net/ipv4/nope").unwrap_err().is_missing());
    }

    /// A private directory for a journal, removed at the end.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            use std::os::unix::fs::PermissionsExt;
            let d =
                std::env::temp_dir().join(format!("tunlb-netcfg-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir(&d).unwrap();
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
            TempDir(d)
        }
        fn journal(&self) -> std::path::PathBuf {
            self.0.join("director.journal.1")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn journaled(ops: FakeOps, path: &std::path::Path) -> (NetChanges<FakeOps>, Recovered) {
        let (j, left) = Journal::open(path, "director").unwrap();
        let mut nc = NetChanges::with_ops(ops);
        let rec = nc.use_journal(j, left).unwrap();
        (nc, rec)
    }

    /// An IPv6 rule (NAT66 replies) survives its journal record, `-6` and all, and a record
    /// whose family and prefix disagree is refused.
    #[test]
    fn ipv6_rules_round_trip_through_their_record() {
        let six = PolicyRule {
            ipv6: true,
            from: Some("2001:db8:3::12/128".parse().unwrap()),
            ipproto: Some(58),
            sport: None,
            ..rule(101)
        };
        let words = six.words();
        assert_eq!(
            words,
            "-6 pref 101 iif tunlb0 from 2001:db8:3::12/128 ipproto 58 lookup 7461"
        );
        let parsed = PolicyRule::parse_args(&words.split(' ').collect::<Vec<_>>());
        assert_eq!(parsed, Some(six.clone()));
        assert_eq!(
            six.command("del"),
            "ip -6 rule del pref 101 iif tunlb0 from 2001:db8:3::12/128 ipproto 58 lookup 7461"
        );
        let mismatch = words.trim_start_matches("-6 ");
        assert_eq!(
            PolicyRule::parse_args(&mismatch.split(' ').collect::<Vec<_>>()),
            None
        );
        let mut nc = NetChanges::with_ops(FakeOps::default());
        nc.add_rule(&six).unwrap();
        nc.restore().unwrap();
        assert_eq!(
            nc.ops().log,
            [
                "ip -6 rule add pref 101 iif tunlb0 from 2001:db8:3::12/128 ipproto 58 lookup 7461",
                "ip -6 rule del pref 101 iif tunlb0 from 2001:db8:3::12/128 ipproto 58 lookup 7461",
            ]
        );
    }

    fn rule(pref: u32) -> PolicyRule {
        PolicyRule {
            ipv6: false,
            pref,
            iif: Some("tunlb0".into()),
            from: Some(net("10.10.0.0/24").into()),
            ipproto: Some(17),
            sport: Some(53),
            action: RuleAction::Lookup(7461),
        }
    }

    #[test]
    fn every_record_reads_back_as_the_same_change() {
        let changes = [
            Change::Sysctl {
                key: "net/ipv4/tcp_rmem".into(),
                old: "4096 131072 6291456".into(),
            },
            Change::Sysctl {
                key: "net/ipv4/conf/eth0.100/rp_filter".into(),
                old: String::new(),
            },
            Change::RouteAdded {
                dst: net("10.0.0.1/32").into(),
                dev: "tunlb0".into(),
            },
            Change::RouteDeleted {
                dst: net("10.0.0.0/24").into(),
                dev: "eth0".into(),
            },
            Change::TableRouteAdded {
                dst: net("0.0.0.0/0").into(),
                dev: "tunlb0".into(),
                table: 7461,
            },
            Change::RuleAdded(rule(101)),
            Change::RuleDeleted(PolicyRule {
                ipv6: false,
                pref: 102,
                iif: None,
                from: None,
                ipproto: None,
                sport: None,
                action: RuleAction::Nop,
            }),
            Change::RuleAdded(PolicyRule {
                action: RuleAction::Goto(102),
                ..rule(100)
            }),
            Change::AddressAdded {
                addr: net("10.0.0.10/32").into(),
                dev: "lo".into(),
            },
            Change::AddressAdded {
                addr: "2001:db8:a::1/128".parse().unwrap(),
                dev: "lo".into(),
            },
            Change::Link {
                dev: "tun0".into(),
                was_up: false,
                old_mtu: 1500,
            },
        ];
        for c in changes {
            let r = c.record();
            assert!(!r.contains('\n'));
            assert_eq!(Change::parse(&r), Some(c), "{r}");
        }
        for bad in [
            "",
            "sysctl",
            "sysctl ../../etc/x 1",
            "route-add 10.0.0.1/32",
            "route-add nope tun0",
            "rule-add pref x nop",
            "rule-add iif tun0",
            "link tun0 sideways 1500",
            "mystery 1 2",
        ] {
            assert_eq!(Change::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn an_ipv6_address_is_added_nodad_and_deleted_on_restore() {
        let mut nc = NetChanges::with_ops(FakeOps::default());
        let vip: IpNet = "2001:db8:a::1/128".parse().unwrap();
        assert_eq!(nc.add_address_ip(vip, "lo").unwrap(), Applied::Changed);
        nc.add_address(net("10.0.0.10/32"), "lo").unwrap();
        nc.restore().unwrap();
        assert_eq!(
            nc.ops.log,
            [
                "ip addr add 2001:db8:a::1/128 dev lo nodad",
                "ip addr add 10.0.0.10/32 dev lo",
                "ip addr del 10.0.0.10/32 dev lo",
                "ip addr del 2001:db8:a::1/128 dev lo",
            ]
        );
    }

    #[test]
    fn each_change_is_journaled_before_it_is_made_and_cancelled_if_not_made() {
        let dir = TempDir::new("before");
        let mut ops = FakeOps::with_sysctls(&[("net/ipv4/ip_forward", "0")]);
        ops.snoop = Some(dir.journal());
        ops.fail_ip
            .push(("ip addr add".into(), |cmd| NetError::Exists {
                cmd,
                stderr: "RTNETLINK answers: File exists".into(),
            }));
        let (mut nc, rec) = journaled(ops, &dir.journal());
        assert!(rec.undone.is_empty());
        nc.set_sysctl(IP_FORWARD, "1").unwrap();
        nc.add_route(net("10.0.0.1/32"), "tunlb0").unwrap();
        assert_eq!(
            nc.add_address(net("10.0.0.1/32"), "lo").unwrap(),
            Applied::AlreadyInPlace
        );
        assert_eq!(
            nc.ops.snooped,
            [
                "sysctl net/ipv4/ip_forward 0",
                "route-add 10.0.0.1/32 tunlb0",
                "addr-add 10.0.0.1/32 lo",
            ],
            "the record is in the journal when the change is made"
        );
        let left = crate::sys::journal::parse(&std::fs::read_to_string(dir.journal()).unwrap());
        let live: Vec<&str> = left.records.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(
            live,
            [
                "sysctl net/ipv4/ip_forward 0",
                "route-add 10.0.0.1/32 tunlb0"
            ],
            "the address already there is cancelled: it is not ours to remove"
        );
        assert_eq!(left.pid, Some(std::process::id()));
        // A clean restore empties the journal, and the drop removes it.
        nc.ops.snoop = None;
        nc.restore().unwrap();
        assert!(nc.journal().is_none());
        assert!(!dir.journal().exists());
    }

    #[test]
    fn the_next_start_undoes_what_a_killed_process_left_then_records_afresh() {
        let dir = TempDir::new("recover");
        let sysctls = [
            ("net/ipv4/ip_forward", "0"),
            ("net/ipv4/conf/all/arp_ignore", "0"),
        ];
        let (mut nc, _) = journaled(FakeOps::with_sysctls(&sysctls), &dir.journal());
        nc.set_sysctl(IP_FORWARD, "1").unwrap();
        nc.set_sysctl(&conf_key("all", "arp_ignore"), "1").unwrap();
        nc.add_address(net("10.0.0.10/32"), "lo").unwrap();
        nc.add_route(net("10.0.0.10/32"), "tunlb0").unwrap();
        nc.add_rule(&rule(100)).unwrap();
        // Killed: the host keeps the changes, the journal keeps the records.
        let mut host = std::mem::take(&mut nc.ops.sysctls);
        nc.crash();
        assert!(dir.journal().exists());
        assert_eq!(host["net/ipv4/ip_forward"], "1");

        // The next start sees the host as the dead process left it.
        let mut ops = FakeOps {
            sysctls: std::mem::take(&mut host),
            ..FakeOps::default()
        };
        ops.fail_ip
            .push(("ip route del".into(), |cmd| NetError::Missing {
                cmd,
                stderr: "Cannot find device \"tunlb0\"".into(),
            }));
        let (mut nc, rec) = journaled(ops, &dir.journal());
        assert_eq!(rec.pid, Some(std::process::id()));
        assert!(rec.errors.is_empty());
        assert_eq!(
            rec.undone,
            [
                "ip rule del pref 100 iif tunlb0 from 10.10.0.0/24 ipproto 17 sport 53 lookup 7461",
                "ip route del 10.0.0.10/32 dev tunlb0 (already gone)",
                "ip addr del 10.0.0.10/32 dev lo",
                "sysctl net.ipv4.conf.all.arp_ignore=0",
                "sysctl net.ipv4.ip_forward=0",
            ]
        );
        assert_eq!(nc.ops.sysctls["net/ipv4/ip_forward"], "0");
        assert_eq!(nc.ops.sysctls["net/ipv4/conf/all/arp_ignore"], "0");
        assert!(nc.is_empty());
        // Its own change records the original value, not the leftover.
        nc.set_sysctl(IP_FORWARD, "1").unwrap();
        let left = crate::sys::journal::parse(&std::fs::read_to_string(dir.journal()).unwrap());
        assert_eq!(
            left.records,
            [(1, "sysctl net/ipv4/ip_forward 0".to_owned())]
        );
        // A second daemon is refused while this one runs.
        let err = Journal::open(&dir.journal(), "director").unwrap_err();
        assert!(err.to_string().contains("still running"), "{err}");
        drop(nc);
        assert!(!dir.journal().exists());
    }

    #[test]
    fn a_failed_undo_stays_in_the_journal_for_the_next_try() {
        let dir = TempDir::new("failed");
        let (mut nc, _) = journaled(FakeOps::default(), &dir.journal());
        nc.add_address(net("10.0.0.10/32"), "lo").unwrap();
        nc.add_route(net("10.0.0.0/24"), "tunlb0").unwrap();
        nc.ops
            .fail_ip
            .push(("ip addr del".into(), |cmd| NetError::Command {
                cmd,
                stderr: "Operation not permitted".into(),
            }));
        assert!(nc.restore().is_err());
        let left = crate::sys::journal::parse(&std::fs::read_to_string(dir.journal()).unwrap());
        let live: Vec<&str> = left.records.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(live, ["addr-add 10.0.0.10/32 lo"]);
        drop(nc);
        assert!(dir.journal().exists(), "kept: something is left to undo");
        let (nc, rec) = journaled(FakeOps::default(), &dir.journal());
        assert_eq!(rec.undone, ["ip addr del 10.0.0.10/32 dev lo"]);
        drop(nc);
        assert!(!dir.journal().exists());
    }

    #[test]
    fn routes_and_rules_added_then_deleted_leave_nothing_to_undo_and_the_journal_stays_short() {
        let dir = TempDir::new("churn");
        let (mut nc, _) = journaled(FakeOps::default(), &dir.journal());
        // A route that was there before this process: deleting it is recorded.
        nc.del_route(net("10.9.0.0/24"), "eth0").unwrap();
        for i in 0..500u32 {
            let vip = net(&format!("10.0.{}.{}/32", i / 250, i % 250));
            nc.add_route(vip, "tunlb0").unwrap();
            nc.add_rule(&rule(1000 + i)).unwrap();
            nc.del_route(vip, "tunlb0").unwrap();
            nc.del_rule(&rule(1000 + i)).unwrap();
        }
        assert_eq!(nc.len(), 1);
        let text = std::fs::read_to_string(dir.journal()).unwrap();
        assert!(text.lines().count() < 200, "{} lines", text.lines().count());
        let left = crate::sys::journal::parse(&text);
        let live: Vec<&str> = left.records.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(live, ["route-del 10.9.0.0/24 eth0"]);
        nc.ops.log.clear();
        nc.restore().unwrap();
        assert_eq!(nc.ops.log, ["ip route add 10.9.0.0/24 dev eth0"]);
    }

    /// The announce routes (`--announce-table`): added and withdrawn as services come and go;
    /// a withdrawn route of ours leaves nothing to undo, a route of another table or of the
    /// main table is another object, and a pre-existing one deleted is put back at exit.
    #[test]
    fn table_routes_added_then_deleted_leave_nothing_to_undo() {
        let dir = TempDir::new("table");
        let (mut nc, _) = journaled(FakeOps::default(), &dir.journal());
        let vip = net("10.0.0.10/32");
        nc.add_route(vip, "tunlb0").unwrap();
        nc.add_table_route(vip, "tunlb0", 100).unwrap();
        nc.del_table_route(vip, "tunlb0", 100).unwrap();
        // Another table's route was not ours: deleting it is recorded, restored at exit.
        nc.del_table_route(vip, "tunlb0", 101).unwrap();
        let text = std::fs::read_to_string(dir.journal()).unwrap();
        let left = crate::sys::journal::parse(&text);
        let live: Vec<&str> = left.records.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(
            live,
            [
                "route-add 10.0.0.10/32 tunlb0",
                "table-route-del 10.0.0.10/32 tunlb0 101"
            ]
        );
        for (_, record) in &left.records {
            assert_eq!(
                Change::parse(record).map(|c| c.record()).as_ref(),
                Some(record)
            );
        }
        nc.ops.log.clear();
        nc.restore().unwrap();
        assert_eq!(
            nc.ops.log,
            [
                "ip route add 10.0.0.10/32 dev tunlb0 table 101",
                "ip route del 10.0.0.10/32 dev tunlb0"
            ]
        );
    }
}
