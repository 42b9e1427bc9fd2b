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

use std::io;
use std::process::Command;

use ipnet::Ipv4Net;

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

/// A policy-routing rule: `ip rule add pref P [iif DEV] [from NET] [ipproto N [sport P]] ACTION`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyRule {
    /// Preference (lower runs first; 0 is the `local` table, 32766 `main`).
    pub pref: u32,
    /// Input interface to match, if any.
    pub iif: Option<String>,
    /// Source prefix to match, if any.
    pub from: Option<Ipv4Net>,
    /// IP protocol to match, if any (`ipproto`).
    pub ipproto: Option<u8>,
    /// Source port to match (with `ipproto` TCP or UDP), if any.
    pub sport: Option<u16>,
    /// What to do on a match.
    pub action: RuleAction,
}

impl PolicyRule {
    /// The selector and action as `ip rule add|del` arguments.
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

    fn run<O: NetOps>(&self, ops: &mut O, verb: &str) -> Result<(), NetError> {
        let args = self.args();
        let mut full = vec!["rule", verb];
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
        dst: Ipv4Net,
        dev: String,
    },
    RouteDeleted {
        dst: Ipv4Net,
        dev: String,
    },
    TableRouteAdded {
        dst: Ipv4Net,
        dev: String,
        table: u32,
    },
    RuleAdded(PolicyRule),
    RuleDeleted(PolicyRule),
    AddressAdded {
        addr: Ipv4Net,
        dev: String,
    },
    Link {
        dev: String,
        was_up: bool,
        old_mtu: u32,
    },
}

/// Network changes made so far, undone in reverse order by [`restore`](NetChanges::restore) or
/// on drop.
#[derive(Debug)]
pub struct NetChanges<O: NetOps = SystemOps> {
    ops: O,
    changes: Vec<Change>,
}

impl NetChanges<SystemOps> {
    /// Changes to the real system.
    pub fn new() -> NetChanges<SystemOps> {
        NetChanges::with_ops(SystemOps)
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
        }
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

    /// Sets a sysctl (`net.ipv4.ip_forward` or a path under `/proc/sys` such as
    /// [`conf_key`]`("eth0", "rp_filter")`), remembering the old value.
    pub fn set_sysctl(&mut self, key: &str, value: &str) -> Result<Applied, NetError> {
        let key = normalize_key(key);
        let old = self.ops.read_sysctl(&key)?;
        if old == value {
            return Ok(Applied::AlreadyInPlace);
        }
        self.ops.write_sysctl(&key, value)?;
        self.changes.push(Change::Sysctl { key, old });
        Ok(Applied::Changed)
    }

    /// `ip route add DST dev DEV`.
    pub fn add_route(&mut self, dst: Ipv4Net, dev: &str) -> Result<Applied, NetError> {
        let d = dst.to_string();
        let applied = exists_ok(self.ops.ip(&["route", "add", &d, "dev", dev]))?;
        if applied == Applied::Changed {
            self.changes.push(Change::RouteAdded {
                dst,
                dev: dev.to_owned(),
            });
        }
        Ok(applied)
    }

    /// `ip route del DST dev DEV`; restoring adds it back.
    pub fn del_route(&mut self, dst: Ipv4Net, dev: &str) -> Result<Applied, NetError> {
        let d = dst.to_string();
        let applied = missing_ok(self.ops.ip(&["route", "del", &d, "dev", dev]))?;
        if applied == Applied::Changed {
            self.changes.push(Change::RouteDeleted {
                dst,
                dev: dev.to_owned(),
            });
        }
        Ok(applied)
    }

    /// `ip route add DST dev DEV table TABLE`: a route in a policy-routing table.
    pub fn add_table_route(
        &mut self,
        dst: Ipv4Net,
        dev: &str,
        table: u32,
    ) -> Result<Applied, NetError> {
        let (d, t) = (dst.to_string(), table.to_string());
        let applied = exists_ok(self.ops.ip(&["route", "add", &d, "dev", dev, "table", &t]))?;
        if applied == Applied::Changed {
            self.changes.push(Change::TableRouteAdded {
                dst,
                dev: dev.to_owned(),
                table,
            });
        }
        Ok(applied)
    }

    /// `ip rule add RULE`.
    pub fn add_rule(&mut self, rule: &PolicyRule) -> Result<Applied, NetError> {
        let applied = exists_ok(rule.run(&mut self.ops, "add"))?;
        if applied == Applied::Changed {
            self.changes.push(Change::RuleAdded(rule.clone()));
        }
        Ok(applied)
    }

    /// `ip rule del RULE`; restoring adds it back.
    pub fn del_rule(&mut self, rule: &PolicyRule) -> Result<Applied, NetError> {
        let applied = missing_ok(rule.run(&mut self.ops, "del"))?;
        if applied == Applied::Changed {
            self.changes.push(Change::RuleDeleted(rule.clone()));
        }
        Ok(applied)
    }

    /// `ip addr add ADDR dev DEV` (e.g. a VIP as `/32` on `lo`).
    pub fn add_address(&mut self, addr: Ipv4Net, dev: &str) -> Result<Applied, NetError> {
        let a = addr.to_string();
        let applied = exists_ok(self.ops.ip(&["addr", "add", &a, "dev", dev]))?;
        if applied == Applied::Changed {
            self.changes.push(Change::AddressAdded {
                addr,
                dev: dev.to_owned(),
            });
        }
        Ok(applied)
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
        self.ops.ip(&args)?;
        self.changes.push(Change::Link {
            dev: dev.to_owned(),
            was_up,
            old_mtu,
        });
        Ok(Applied::Changed)
    }

    /// Undoes every recorded change, newest first. A failed step does not stop the others;
    /// steps that fail because the object or its device is gone count as done. Afterwards
    /// nothing is recorded, so a second call (or the drop) does nothing.
    pub fn restore(&mut self) -> Result<(), NetError> {
        let mut errors = Vec::new();
        while let Some(change) = self.changes.pop() {
            if let Err(e) = self.undo(&change) {
                if !e.is_missing() {
                    errors.push(e);
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
    }

    impl NetOps for FakeOps {
        fn ip(&mut self, args: &[&str]) -> Result<(), NetError> {
            let cmd = format!("ip {}", args.join(" "));
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
    fn policy_rules_and_table_routes_are_undone() {
        let mut nc = NetChanges::with_ops(FakeOps::default());
        let lookup = PolicyRule {
            pref: 101,
            iif: None,
            from: Some(net("10.10.0.12/32")),
            ipproto: Some(6),
            sport: Some(8080),
            action: RuleAction::Lookup(7461),
        };
        let guard = PolicyRule {
            pref: 100,
            iif: Some("tunlb0".into()),
            from: None,
            ipproto: None,
            sport: None,
            action: RuleAction::Goto(102),
        };
        let nop = PolicyRule {
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
        nc.restore().unwrap();
        assert_eq!(
            nc.ops.log,
            [
                "ip rule add pref 101 from 10.10.0.12/32 ipproto 6 sport 8080 lookup 7461",
                "ip rule del pref 101 from 10.10.0.12/32 ipproto 6 sport 8080 lookup 7461",
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
}
