//! What a VRRP instance is configured with: one model behind keepalived.conf's `vrrp_instance`,
//! `vrrp_script`, `vrrp_sync_group`, `global_defs` and the TOML config's `[[vrrp_instance]]`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::ScriptUser;

/// VRRP protocol version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Version {
    /// RFC 3768 (keepalived's default): advert interval in whole seconds, optional PASS auth.
    #[default]
    #[serde(rename = "2")]
    V2,
    /// RFC 5798: interval in centiseconds, checksum over the IP pseudo-header, no auth; the
    /// only version over IPv6.
    #[serde(rename = "3")]
    V3,
}

impl Version {
    /// 2 or 3, as written in the config and the advert.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

/// The state an instance starts in (`state MASTER|BACKUP`). keepalived (and tunlb) always
/// start as BACKUP and wait for the master-down timer unless the priority is 255 (owner);
/// `Master` only shortens that wait, as keepalived does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum InitialState {
    /// `state MASTER`.
    Master,
    /// `state BACKUP` (the default).
    #[default]
    Backup,
}

impl InitialState {
    /// `MASTER` or `BACKUP`, as keepalived.conf spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            InitialState::Master => "MASTER",
            InitialState::Backup => "BACKUP",
        }
    }
}

/// One `virtual_ipaddress` line: `ADDR[/PREFIX] [dev IFACE] [label LABEL]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualIp {
    /// The address the master answers ARP (IPv4) or Neighbor Solicitations (IPv6) for.
    pub addr: IpAddr,
    /// Prefix length as written (default 32, 128 for IPv6); kept for listings, the VIP is
    /// never a local address.
    pub prefix: u8,
    /// The interface it is answered on (default: the instance's `interface`).
    pub dev: Option<String>,
    /// keepalived's `label` (an interface alias); shown, not applied.
    pub label: Option<String>,
}

/// `track_interface`: the instance goes to FAULT when the interface is down, unless a weight
/// is given, which is added to the priority while it is up (negative: subtracted when down).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInterface {
    /// Interface name.
    pub name: String,
    /// `weight N` (-254..=254); `None` = FAULT when down.
    pub weight: Option<i32>,
}

/// `track_script NAME [weight N]` in an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackScript {
    /// The `vrrp_script` it refers to.
    pub name: String,
    /// Overrides the script's own weight.
    pub weight: Option<i32>,
}

/// `vrrp_script NAME { script ...; interval; timeout; weight; rise; fall }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptConfig {
    /// The script's name.
    pub name: String,
    /// The command line, run with `/bin/sh -c`.
    pub script: String,
    /// How often it runs (default 1 s).
    pub interval: Duration,
    /// How long it may run before it counts as failed (default: the interval).
    pub timeout: Duration,
    /// 0 (default): failing puts the instance in FAULT. > 0: added to the priority while it
    /// succeeds. < 0: added (subtracted) while it fails.
    pub weight: i32,
    /// Successes in a row before a failing script counts as good (default 1).
    pub rise: u32,
    /// Failures in a row before a good script counts as failing (default 1).
    pub fall: u32,
    /// `user USER [GROUP]`: who runs it (default: the global `script_user`, else
    /// `keepalived_script` if that user exists, else `nobody`).
    #[serde(default)]
    pub user: Option<ScriptUser>,
}

/// One `notify*` script: keepalived's `notify_master SCRIPT [USER [GROUP]]` (the script
/// quoted when it has arguments).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyScript {
    /// The command line, run with `/bin/sh -c`.
    pub command: String,
    /// Who runs it (default: the global `script_user`, else `keepalived_script` if that user
    /// exists, else `nobody`).
    #[serde(default)]
    pub user: Option<ScriptUser>,
}

impl From<&str> for NotifyScript {
    /// A script run as the global user.
    fn from(command: &str) -> NotifyScript {
        NotifyScript {
            command: command.to_string(),
            user: None,
        }
    }
}

impl From<String> for NotifyScript {
    /// A script run as the global user.
    fn from(command: String) -> NotifyScript {
        NotifyScript {
            command,
            user: None,
        }
    }
}

/// The `notify_*` scripts of an instance or sync group, run with `/bin/sh -c`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    /// `notify_master`.
    pub master: Option<NotifyScript>,
    /// `notify_backup`.
    pub backup: Option<NotifyScript>,
    /// `notify_fault`.
    pub fault: Option<NotifyScript>,
    /// `notify_stop`.
    pub stop: Option<NotifyScript>,
    /// `notify`: called on every transition with `INSTANCE|GROUP NAME STATE PRIORITY` appended,
    /// as keepalived does.
    pub any: Option<NotifyScript>,
}

impl Notify {
    /// Every script with its keyword (`notify_master` ... `notify`).
    pub fn scripts(&self) -> [(&'static str, Option<&NotifyScript>); 5] {
        [
            ("notify_master", self.master.as_ref()),
            ("notify_backup", self.backup.as_ref()),
            ("notify_fault", self.fault.as_ref()),
            ("notify_stop", self.stop.as_ref()),
            ("notify", self.any.as_ref()),
        ]
    }
}

/// Gratuitous ARP at takeover and while master.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Garp {
    /// `garp_master_delay`: the second burst this long after becoming master (default 5 s; 0 = none).
    pub master_delay: Duration,
    /// `garp_master_repeat`: gratuitous ARPs per VIP in each burst (default 5).
    pub master_repeat: u32,
    /// `garp_master_refresh`: repeat a burst this often while master (default: never).
    pub master_refresh: Option<Duration>,
    /// `garp_master_refresh_repeat`: ARPs per VIP in each refresh (default 1).
    pub master_refresh_repeat: u32,
    /// `vrrp_garp_interval` in global_defs: pause between two ARPs of a burst (default 0).
    pub interval: Duration,
}

impl Default for Garp {
    fn default() -> Self {
        Garp {
            master_delay: Duration::from_secs(5),
            master_repeat: 5,
            master_refresh: None,
            master_refresh_repeat: 1,
            interval: Duration::ZERO,
        }
    }
}

/// One `vrrp_instance`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceConfig {
    /// The instance's name (`vrrp_instance VI_1`).
    pub name: String,
    /// `state`.
    pub initial: InitialState,
    /// `interface`: where adverts are sent and received and the VIPs answered.
    pub interface: String,
    /// `virtual_router_id` (1..=255).
    pub vrid: u8,
    /// `priority` (1..=255, default 100; 255 = address owner).
    pub priority: u8,
    /// `advert_int` (default 1 s; v2 rounds to whole seconds, v3 to centiseconds, ≥ 0.01 s).
    pub advert_int: Duration,
    /// `vrrp_version` in global_defs or `version` in the instance.
    pub version: Version,
    /// false with `nopreempt`.
    pub preempt: bool,
    /// `preempt_delay` (0..=1000 s).
    pub preempt_delay: Duration,
    /// `authentication { auth_type PASS; auth_pass X }` (v2 only): the password, NUL-padded to
    /// 8 bytes as keepalived truncates it.
    pub auth_pass: Option<[u8; 8]>,
    /// `virtual_ipaddress` (at most 255... keepalived sends at most 20 in an advert).
    pub vips: Vec<VirtualIp>,
    /// `unicast_src_ip`: the advert's source (default: the interface's first IPv4 address,
    /// for an IPv6 instance its link-local address).
    pub unicast_src: Option<IpAddr>,
    /// `unicast_peer { ... }`: adverts go to these instead of 224.0.0.18 (ff02::12).
    pub unicast_peers: Vec<IpAddr>,
    /// `track_interface`.
    pub track_interfaces: Vec<TrackInterface>,
    /// `track_script`.
    pub track_scripts: Vec<TrackScript>,
    /// `notify_*`.
    pub notify: Notify,
    /// `garp_master_*` (defaults from global_defs' `vrrp_garp_*`).
    pub garp: Garp,
}

impl InstanceConfig {
    /// Whether the instance is VRRPv3 over IPv6: its first `virtual_ipaddress` is IPv6 (or,
    /// without VIPs, its `unicast_src_ip` or first `unicast_peer`), as keepalived decides it.
    pub fn is_ipv6(&self) -> bool {
        self.vips
            .first()
            .map(|v| v.addr)
            .or(self.unicast_src)
            .or(self.unicast_peers.first().copied())
            .is_some_and(|a| a.is_ipv6())
    }

    /// An instance with keepalived's defaults for everything but its name, interface and VRID.
    pub fn new(name: &str, interface: &str, vrid: u8) -> InstanceConfig {
        InstanceConfig {
            name: name.to_string(),
            initial: InitialState::Backup,
            interface: interface.to_string(),
            vrid,
            priority: 100,
            advert_int: Duration::from_secs(1),
            version: Version::V2,
            preempt: true,
            preempt_delay: Duration::ZERO,
            auth_pass: None,
            vips: Vec::new(),
            unicast_src: None,
            unicast_peers: Vec::new(),
            track_interfaces: Vec::new(),
            track_scripts: Vec::new(),
            notify: Notify::default(),
            garp: Garp::default(),
        }
    }
}

/// `vrrp_sync_group NAME { group { I1 I2 } notify_* }`: its instances change state together
/// (one FAULT puts all in FAULT; one MASTER brings the others up).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncGroupConfig {
    /// The group's name.
    pub name: String,
    /// Member instance names.
    pub members: Vec<String>,
    /// The group's own notify scripts.
    pub notify: Notify,
}

/// Connection sync (keepalived's `lvs_sync_daemon INTERFACE VRRP_INSTANCE [id N] [maxlen L]
/// [port P] [ttl T] [group ADDR]` in global_defs, TOML `[sync]`): the instance's MASTER sends
/// its connection-table changes to the BACKUPs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncConfig {
    /// Interface the messages are sent and received on.
    pub interface: String,
    /// The VRRP instance whose state decides who sends (its MASTER) and who installs.
    pub instance: String,
    /// `id` (syncid, 0..=255): messages with another id are refused. keepalived's default is
    /// the instance's `virtual_router_id`, and both config parsers fill it in so.
    pub id: u8,
    /// `port` (default 8848, IPVS's).
    pub port: u16,
    /// `ttl` (default 1).
    pub ttl: u8,
    /// `group` (default 224.0.0.81, IPVS's).
    pub group: Ipv4Addr,
    /// `maxlen`: largest message payload (default 1472, the Ethernet MTU's UDP payload).
    pub maxlen: u16,
    /// Unicast peers (TOML only): messages go to each instead of the group.
    pub peers: Vec<Ipv4Addr>,
    /// Shared key (TOML `key` / `key_file`): messages are authenticated with HMAC-SHA256;
    /// unauthenticated messages are refused when set.
    pub key: Option<Vec<u8>>,
}

impl SyncConfig {
    /// IPVS's defaults for the given interface and instance.
    pub fn new(interface: &str, instance: &str) -> SyncConfig {
        SyncConfig {
            interface: interface.to_string(),
            instance: instance.to_string(),
            id: 0,
            port: 8848,
            ttl: 1,
            group: Ipv4Addr::new(224, 0, 0, 81),
            maxlen: 1472,
            peers: Vec::new(),
            key: None,
        }
    }
}

/// Everything VRRP in one config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpConfig {
    /// global_defs `router_id` (shown in logs and notify; default the host name).
    pub router_id: Option<String>,
    /// The instances, in file order.
    pub instances: Vec<InstanceConfig>,
    /// The `vrrp_script`s.
    pub scripts: Vec<ScriptConfig>,
    /// The `vrrp_sync_group`s.
    pub sync_groups: Vec<SyncGroupConfig>,
    /// `lvs_sync_daemon`.
    pub sync: Option<SyncConfig>,
    /// `global_defs script_user`: who runs the `notify*` scripts that name no user of their
    /// own (default: `keepalived_script` if that user exists, else `nobody`).
    #[serde(default)]
    pub script_user: Option<ScriptUser>,
}

impl VrrpConfig {
    /// Whether any script is configured: a `vrrp_script` or a `notify*` of an instance or a
    /// sync group.
    pub fn has_scripts(&self) -> bool {
        let notify = |n: &Notify| n.scripts().iter().any(|(_, s)| s.is_some());
        !self.scripts.is_empty()
            || self.instances.iter().any(|i| notify(&i.notify))
            || self.sync_groups.iter().any(|g| notify(&g.notify))
    }

    /// Whether the config runs any VRRP instance.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }
}

impl VrrpConfig {
    /// The instance named `name`.
    pub fn instance(&self, name: &str) -> Option<&InstanceConfig> {
        self.instances.iter().find(|i| i.name == name)
    }

    /// The sync group `instance` belongs to.
    pub fn group_of(&self, instance: &str) -> Option<&SyncGroupConfig> {
        self.sync_groups
            .iter()
            .find(|g| g.members.iter().any(|m| m == instance))
    }

    /// One line per instance and one for connection sync, as `tunlb check-config` prints them:
    /// `VRRP instance VI_1: MASTER priority 100, VRID 51 on eth0, v2 every 1s, auth PASS,
    /// VIPs 192.168.150.100/24`.
    pub fn summary(&self) -> Vec<String> {
        let mut out = Vec::new();
        for i in &self.instances {
            let (state, version) = (i.initial.as_str(), i.version.number());
            let mut line = format!(
                "VRRP instance {}: {state} priority {}, VRID {} on {}, v{version} every {:?}",
                i.name, i.priority, i.vrid, i.interface, i.advert_int
            );
            if !i.preempt {
                line.push_str(", nopreempt");
            } else if !i.preempt_delay.is_zero() {
                line.push_str(&format!(", preempt_delay {:?}", i.preempt_delay));
            }
            if i.auth_pass.is_some() {
                line.push_str(", auth PASS");
            }
            if !i.unicast_peers.is_empty() {
                let peers: Vec<String> = i.unicast_peers.iter().map(|p| p.to_string()).collect();
                line.push_str(&format!(", unicast to {}", peers.join(" ")));
            }
            let vips: Vec<String> = i
                .vips
                .iter()
                .map(|v| format!("{}/{}", v.addr, v.prefix))
                .collect();
            line.push_str(&format!(", VIPs {}", vips.join(" ")));
            if let Some(g) = self.group_of(&i.name) {
                line.push_str(&format!(", sync group {}", g.name));
            }
            out.push(line);
        }
        if let Some(s) = &self.sync {
            let to = if s.peers.is_empty() {
                s.group.to_string()
            } else {
                let peers: Vec<String> = s.peers.iter().map(|p| p.to_string()).collect();
                peers.join(" ")
            };
            out.push(format!(
                "connection sync: on {} following {}, id {}, to {to} port {}, ttl {}, maxlen {}{}",
                s.interface,
                s.instance,
                s.id,
                s.port,
                s.ttl,
                s.maxlen,
                if s.key.is_some() {
                    ", authenticated"
                } else {
                    ""
                }
            ));
        }
        out
    }

    /// keepalived's checks and corrections of a whole VRRP config, shared by keepalived.conf
    /// and the TOML config: what keepalived corrects with a message is corrected here too (and
    /// reported as a warning), what keepalived refuses or tunlb cannot run is an error.
    /// Each issue names what it is about ([`Subject`]) so each syntax can place it.
    pub fn finish(&mut self) -> Vec<Issue> {
        let mut issues = Vec::new();
        for (i, inst) in self.instances.iter_mut().enumerate() {
            finish_instance(i, inst, &mut issues);
        }
        self.cross_check(&mut issues);
        issues
    }

    fn cross_check(&self, issues: &mut Vec<Issue>) {
        let err = |subject, message| Issue {
            subject,
            error: true,
            message,
        };
        for (i, inst) in self.instances.iter().enumerate() {
            // Empty names, VRIDs and interfaces were refused where they were read.
            if let Some(first) = self.instances[..i]
                .iter()
                .find(|o| o.name == inst.name && !inst.name.is_empty())
            {
                issues.push(err(
                    Subject::Instance(i),
                    format!("vrrp_instance {} is already defined", first.name),
                ));
            }
            // An IPv4 and an IPv6 instance may share a VRID: their adverts never meet.
            if let Some(other) = self.instances[..i].iter().find(|o| {
                o.vrid == inst.vrid
                    && o.interface == inst.interface
                    && o.is_ipv6() == inst.is_ipv6()
                    && inst.vrid != 0
                    && !inst.interface.is_empty()
            }) {
                issues.push(err(
                    Subject::Field(i, "virtual_router_id"),
                    format!(
                        "vrrp_instance {}: {} and {} both use VRID {} on interface {} \
                         (keepalived refuses it: their adverts would be mixed up)",
                        inst.name, other.name, inst.name, inst.vrid, inst.interface
                    ),
                ));
            }
            for (j, t) in inst.track_scripts.iter().enumerate() {
                if !self.scripts.iter().any(|s| s.name == t.name) {
                    issues.push(err(
                        Subject::TrackScript(i, j),
                        format!(
                            "vrrp_instance {}: track_script {}: no vrrp_script of that name",
                            inst.name, t.name
                        ),
                    ));
                } else if inst.track_scripts[..j].iter().any(|o| o.name == t.name) {
                    issues.push(err(
                        Subject::TrackScript(i, j),
                        format!(
                            "vrrp_instance {}: track_script {} is listed twice",
                            inst.name, t.name
                        ),
                    ));
                }
            }
            for (j, t) in inst.track_interfaces.iter().enumerate() {
                if inst.track_interfaces[..j].iter().any(|o| o.name == t.name) {
                    issues.push(err(
                        Subject::TrackInterface(i, j),
                        format!(
                            "vrrp_instance {}: track_interface {} is listed twice",
                            inst.name, t.name
                        ),
                    ));
                }
            }
        }
        for (k, s) in self.scripts.iter().enumerate() {
            if self.scripts[..k].iter().any(|o| o.name == s.name) {
                issues.push(err(
                    Subject::Script(k),
                    format!("vrrp_script {} is already defined", s.name),
                ));
            }
        }
        for (g, group) in self.sync_groups.iter().enumerate() {
            if self.sync_groups[..g].iter().any(|o| o.name == group.name) {
                issues.push(err(
                    Subject::SyncGroup(g),
                    format!("vrrp_sync_group {} is already defined", group.name),
                ));
            }
            if group.members.is_empty() {
                issues.push(err(
                    Subject::SyncGroup(g),
                    format!(
                        "vrrp_sync_group {}: expected a `group` of vrrp_instance names",
                        group.name
                    ),
                ));
            } else if group.members.len() == 1 {
                issues.push(Issue {
                    subject: Subject::SyncGroup(g),
                    error: false,
                    message: format!(
                        "vrrp_sync_group {} has only 1 instance: this probably isn't what you want",
                        group.name
                    ),
                });
            }
            for (m, member) in group.members.iter().enumerate() {
                if self.instance(member).is_none() {
                    issues.push(err(
                        Subject::Member(g, m),
                        format!(
                            "vrrp_sync_group {}: no vrrp_instance named {member}",
                            group.name
                        ),
                    ));
                } else if group.members[..m].contains(member) {
                    issues.push(err(
                        Subject::Member(g, m),
                        format!("vrrp_sync_group {}: {member} is listed twice", group.name),
                    ));
                } else if let Some(other) = self.sync_groups[..g]
                    .iter()
                    .find(|o| o.members.contains(member))
                {
                    issues.push(err(
                        Subject::Member(g, m),
                        format!(
                            "vrrp_sync_group {}: {member} is already in vrrp_sync_group {} \
                             (an instance can be in one sync group only)",
                            group.name, other.name
                        ),
                    ));
                }
            }
        }
        if let Some(s) = &self.sync {
            if self.instance(&s.instance).is_none() {
                issues.push(err(
                    Subject::SyncInstance,
                    format!(
                        "lvs_sync_daemon: no vrrp_instance named {} (the instance whose MASTER sends)",
                        s.instance
                    ),
                ));
            }
        }
    }
}

/// What an [`Issue`] is about, for the parser to give it a place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// Instance `i` as a whole (its name).
    Instance(usize),
    /// A keyword of instance `i`, by its keepalived name (`priority`, `advert_int`,
    /// `authentication`, `nopreempt`, `preempt_delay`, `virtual_ipaddress`,
    /// `virtual_router_id`, `state`).
    Field(usize, &'static str),
    /// Entry `j` of instance `i`'s `track_script`.
    TrackScript(usize, usize),
    /// Entry `j` of instance `i`'s `track_interface`.
    TrackInterface(usize, usize),
    /// `vrrp_script` number `k`.
    Script(usize),
    /// `vrrp_sync_group` number `g`.
    SyncGroup(usize),
    /// Member `m` of sync group `g`.
    Member(usize, usize),
    /// The instance named by `lvs_sync_daemon` / `[sync]`.
    SyncInstance,
}

/// A problem [`VrrpConfig::finish`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// What it is about.
    pub subject: Subject,
    /// An error (the config is refused) or a warning (corrected as keepalived does).
    pub error: bool,
    /// The message, naming the instance.
    pub message: String,
}

/// The most addresses a VRRP advert carries (its count field is 8 bits).
pub const MAX_VIPS: usize = 255;

fn finish_instance(i: usize, inst: &mut InstanceConfig, issues: &mut Vec<Issue>) {
    let name = inst.name.clone();
    let mut warn = |subject, message: String| {
        issues.push(Issue {
            subject,
            error: false,
            message: format!("vrrp_instance {name}: {message}"),
        })
    };
    let v6 = inst.is_ipv6();
    if v6 {
        // keepalived runs every IPv6 instance as VRRPv3 (v2 is IPv4 only, RFC 3768).
        inst.version = Version::V3;
    }
    if inst.version == Version::V3 && inst.auth_pass.is_some() {
        warn(
            Subject::Field(i, "authentication"),
            "VRRP version 3 has no authentication: ignored, as keepalived does".to_string(),
        );
        inst.auth_pass = None;
    }
    if inst.initial == InitialState::Master && !inst.preempt {
        warn(
            Subject::Field(i, "nopreempt"),
            "nopreempt does not work with state MASTER: cleared, as keepalived does (use state BACKUP)"
                .to_string(),
        );
        inst.preempt = true;
    }
    if inst.priority == 255 && !inst.preempt {
        warn(
            Subject::Field(i, "nopreempt"),
            "nopreempt does not work with priority 255 (the address owner): cleared, as keepalived does"
                .to_string(),
        );
        inst.preempt = true;
    }
    if !inst.preempt_delay.is_zero() {
        if inst.initial == InitialState::Master {
            warn(
                Subject::Field(i, "preempt_delay"),
                "preempt_delay does not work with state MASTER: cleared, as keepalived does (use state BACKUP)"
                    .to_string(),
            );
            inst.preempt_delay = Duration::ZERO;
        } else if !inst.preempt {
            warn(
                Subject::Field(i, "preempt_delay"),
                "preempt_delay has no meaning with nopreempt: cleared, as keepalived does"
                    .to_string(),
            );
            inst.preempt_delay = Duration::ZERO;
        }
    }
    if inst.priority == 255 && inst.initial == InitialState::Backup {
        warn(
            Subject::Field(i, "priority"),
            "priority 255 is the address owner, which takes over at once whatever the state (write state MASTER)"
                .to_string(),
        );
    }
    if inst.vips.is_empty() {
        warn(
            Subject::Instance(i),
            "no virtual_ipaddress: this instance answers for no address".to_string(),
        );
    }
    let mut err = |subject, message: String| {
        issues.push(Issue {
            subject,
            error: true,
            message: format!("vrrp_instance {}: {message}", inst.name),
        })
    };
    let family = if v6 { "IPv6" } else { "IPv4" };
    let other = |a: &IpAddr| a.is_ipv6() != v6;
    for v in inst.vips.iter().filter(|v| other(&v.addr)) {
        err(
            Subject::Field(i, "virtual_ipaddress"),
            format!(
                "virtual_ipaddress {}: address family must match VRRP instance (it is {family})",
                v.addr
            ),
        );
    }
    if let Some(a) = inst.unicast_src.filter(other) {
        err(
            Subject::Field(i, "unicast_src_ip"),
            format!("unicast_src_ip {a}: address family must match VRRP instance (it is {family})"),
        );
    }
    for a in inst.unicast_peers.iter().filter(|a| other(a)) {
        err(
            Subject::Field(i, "unicast_peer"),
            format!("unicast_peer {a}: address family must match VRRP instance (it is {family})"),
        );
    }
    if inst.vips.len() > MAX_VIPS {
        err(
            Subject::Field(i, "virtual_ipaddress"),
            format!(
                "{} addresses in virtual_ipaddress, an advert carries at most {MAX_VIPS}",
                inst.vips.len()
            ),
        );
    }
    let ms = inst.advert_int.as_millis();
    match inst.version {
        Version::V2 => {
            if inst.advert_int.subsec_nanos() != 0
                || !(1..=255).contains(&inst.advert_int.as_secs())
            {
                err(
                    Subject::Field(i, "advert_int"),
                    format!(
                        "VRRP version 2 sends advert_int in whole seconds from 1 to 255, found {}s \
                         (keepalived rounds it and reports it; use version 3 for intervals below a second)",
                        inst.advert_int.as_secs_f64()
                    ),
                );
            }
        }
        Version::V3 => {
            if !inst.advert_int.as_nanos().is_multiple_of(10_000_000)
                || !(10..=40_950).contains(&ms)
            {
                err(
                    Subject::Field(i, "advert_int"),
                    format!(
                        "VRRP version 3 sends advert_int in centiseconds from 0.01 to 40.95 s, found {}s",
                        inst.advert_int.as_secs_f64()
                    ),
                );
            }
        }
    }
}

/// One `virtual_ipaddress` line, split in words: `ADDR[/PREFIX] [dev IF] [label L] [brd B]
/// [scope S] [flags]`. `Err((word, message))` names the word at fault. `brd`, `scope`,
/// `preferred_lft`, `track_group` and the flags keepalived knows are accepted and have no
/// effect (the VIP is never a local address of the director).
pub fn parse_vip(words: &[&str]) -> Result<VirtualIp, (usize, String)> {
    let Some(first) = words.first() else {
        return Err((0, "expected an address like 192.0.2.1/24".to_string()));
    };
    let (ip, len) = match first.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (*first, None),
    };
    let addr = ip.parse::<IpAddr>();
    let max = if addr.as_ref().is_ok_and(IpAddr::is_ipv6) {
        128
    } else {
        32
    };
    let prefix = len.map_or(Ok(max), |l| match l.parse::<u8>() {
        Ok(n) if n <= max && l.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(()),
    });
    let (Ok(addr), Ok(prefix)) = (addr, prefix) else {
        return Err((
            0,
            format!("expected an address like 192.0.2.1/24 or 2001:db8::1/64, found '{first}'"),
        ));
    };
    let bad = match addr {
        IpAddr::V4(a) => a.is_broadcast(),
        IpAddr::V6(_) => false,
    };
    if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() || bad {
        return Err((0, format!("expected a unicast address, found '{first}'")));
    }
    let mut vip = VirtualIp {
        addr,
        prefix,
        dev: None,
        label: None,
    };
    let mut i = 1;
    while let Some(w) = words.get(i) {
        match *w {
            "dev" | "brd" | "broadcast" | "scope" | "label" | "preferred_lft" | "track_group" => {
                let Some(value) = words.get(i + 1) else {
                    return Err((i, format!("expected a value after '{w}'")));
                };
                match *w {
                    "dev" => {
                        if !is_ifname(value) {
                            return Err((
                                i + 1,
                                format!("dev: '{value}' is not an interface name (1 to 15 characters, no '/', ':' or spaces)"),
                            ));
                        }
                        vip.dev = Some(value.to_string());
                    }
                    "label" => vip.label = Some(value.to_string()),
                    _ => {}
                }
                i += 2;
            }
            "home" | "-nodad" | "nodad" | "noprefixroute" | "autojoin" | "no_track" => i += 1,
            other => {
                return Err((
                    i,
                    format!("unexpected '{other}' (expected dev, label, brd, scope or a flag)"),
                ))
            }
        }
    }
    Ok(vip)
}

impl VirtualIp {
    /// The `virtual_ipaddress` line: `ADDR/PREFIX [dev IF] [label L]`.
    pub fn to_line(&self) -> String {
        let mut s = format!("{}/{}", self.addr, self.prefix);
        if let Some(d) = &self.dev {
            s.push_str(&format!(" dev {d}"));
        }
        if let Some(l) = &self.label {
            s.push_str(&format!(" label {l}"));
        }
        s
    }
}

/// Whether `name` can be a Linux interface name: 1 to 15 bytes, not `.`/`..`, no `/`, `:` or
/// whitespace (the kernel's `dev_valid_name`).
pub fn is_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace())
}

/// A time in seconds written as keepalived writes them (`1`, `0.5`, `2.25`: digits, an optional
/// fraction of at most 9 digits), exactly; `None` for anything else.
pub fn parse_seconds(text: &str) -> Option<Duration> {
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && frac.is_empty()
        || !digits(whole)
        || !digits(frac)
        || frac.len() > 9
        || text.ends_with('.')
    {
        return None;
    }
    let secs: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    Some(Duration::new(secs, nanos))
}

/// `auth_pass` as keepalived keeps it: the first 8 bytes, NUL-padded. `None` when empty.
pub fn auth_pass_bytes(pass: &str) -> Option<[u8; 8]> {
    if pass.is_empty() {
        return None;
    }
    let mut out = [0u8; 8];
    for (o, b) in out.iter_mut().zip(pass.as_bytes()) {
        *o = *b;
    }
    Some(out)
}

/// The password of [`auth_pass_bytes`] back as text (NULs dropped).
pub fn auth_pass_text(pass: &[u8; 8]) -> String {
    let end = pass.iter().position(|b| *b == 0).unwrap_or(8);
    String::from_utf8_lossy(&pass[..end]).into_owned()
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
