//! What a VRRP instance is configured with: one model behind keepalived.conf's `vrrp_instance`,
//! `vrrp_script`, `vrrp_sync_group`, `global_defs` and the TOML config's `[[vrrp_instance]]`.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// VRRP protocol version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Version {
    /// RFC 3768 (keepalived's default): advert interval in whole seconds, optional PASS auth.
    #[default]
    #[serde(rename = "2")]
    V2,
    /// RFC 5798: interval in centiseconds, checksum over the IPv4 pseudo-header, no auth.
    #[serde(rename = "3")]
    V3,
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

/// One `virtual_ipaddress` line: `ADDR[/PREFIX] [dev IFACE] [label LABEL]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualIp {
    /// The address the master answers ARP for.
    pub addr: Ipv4Addr,
    /// Prefix length as written (default 32); kept for listings, the VIP is never a local address.
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
}

/// The `notify_*` scripts of an instance or sync group, run with `/bin/sh -c`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    /// `notify_master`.
    pub master: Option<String>,
    /// `notify_backup`.
    pub backup: Option<String>,
    /// `notify_fault`.
    pub fault: Option<String>,
    /// `notify_stop`.
    pub stop: Option<String>,
    /// `notify`: called on every transition with `INSTANCE|GROUP NAME STATE PRIORITY` appended,
    /// as keepalived does.
    pub any: Option<String>,
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
    /// `unicast_src_ip`: the advert's source (default: the interface's first address).
    pub unicast_src: Option<Ipv4Addr>,
    /// `unicast_peer { ... }`: adverts go to these instead of 224.0.0.18.
    pub unicast_peers: Vec<Ipv4Addr>,
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
    /// `id` (syncid, 0..=255, default 0): messages with another id are refused.
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
}

impl VrrpConfig {
    /// Whether the config runs any VRRP instance.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }
}
