//! The director's TOML config (`tunlb director --config FILE`).
//!
//! ```toml
//! [director]                 # optional
//! queues = 1                 # TUN queues = worker threads
//! tun_name = "tunlb0"
//! tunnel_mtu = 1500          # MTU towards the real servers
//! local_address = "10.0.0.1" # outer source address of tunnel packets (default: routing decides)
//! local_address6 = "2001:db8::1" # the same for IPv6 real servers (needed for tunnel keys)
//! announce = ["eth0"]        # answer ARP for every VIP on these LAN interfaces
//! announce_table = 100       # VIPs with a live real server also routed into this table,
//!                            # for a routing daemon (BIRD) to announce (docs/scale-out.md)
//!
//! [timeouts]                 # optional, seconds
//! tcp = 900
//! tcpfin = 120
//! udp = 300
//!
//! [[service]]
//! vip = "192.168.150.100"
//! port = 80
//! protocol = "tcp"           # default tcp
//! scheduler = "rr"           # default wlc
//! persistence = 300          # optional, seconds
//! netmask = "255.255.255.0"  # optional, with persistence
//! mss_clamp = 1400           # optional
//! expire_nodest_conn = true  # default: flows of a server that left the table are forgotten
//! expire_quiescent_template = false # default: persistence sticks to a weight-0 server
//!
//!   [[service.real_server]]
//!   address = "10.0.2.12"
//!   port = 80                # optional: the service's port
//!   weight = 1               # default 1
//!   forward = "tunnel"       # tunnel (default), dr or nat
//!   tun_type = "gue"         # ipip (default), gre or gue
//!   tun_port = 6080          # gue only, default 6080
//!   tun_csum = false         # gue and gre only
//!   gre_key = 7              # gre only, optional
//!   tunnel_key = "/etc/tunlb/rs1.key"  # gue only, optional: authenticate (docs/security.md)
//!   u_threshold = 0          # optional, 0 = none
//!   l_threshold = 0          # optional
//!
//! [[tunnel_route]]           # optional, repeatable: a prefix tunnelled to a remote gateway
//! prefix = "172.16.8.0/22"   # its LAN (prefixes must not overlap), IPv4 or IPv6
//! via = "10.99.0.2"          # the gateway's tunnel address (`tunlb realserver --gateway`)
//! encap = "gre"              # ipip, gre or gue (required)
//! gre_key = 7                # gre only, optional
//! gue_port = 6080            # gue only, default 6080
//! [[snat]]                   # S-NAT gateway (see crate::director::snat), any number
//! source = "10.0.0.0/24"     # inside prefix (no overlap between entries), IPv4 or IPv6
//! to = ["192.0.2.10"]        # public addresses of the source's family, at least one
//! ```
//!
//! VRRP and connection sync (`vrrp.rs`; every key in docs/ha.md): `[director] sloppy_tcp` /
//! `sloppy_sctp`, `[vrrp]` (global_defs' VRRP keys), `[[vrrp_instance]]`, `[[vrrp_script]]`,
//! `[[vrrp_sync_group]]` and `[sync]` (lvs_sync_daemon), with keepalived's keywords as keys:
//!
//! ```toml
//! [[vrrp_instance]]
//! name = "VI_1"
//! state = "MASTER"
//! interface = "eth0"
//! virtual_router_id = 51
//! priority = 100
//! auth_pass = "1111"
//! virtual_ipaddress = ["192.168.150.100/24 dev eth0 label eth0:3"]
//!
//! [sync]
//! interface = "eth0"
//! instance = "VI_1"
//! ```
//!
//! Health checks (keepalived's names and defaults, see [`crate::health`]): on a service
//! `delay_loop` (seconds, default 60), `alpha`, `omega`, `quorum` (1), `hysteresis` (0),
//! `quorum_up`, `quorum_down` (commands), `sorry_server = "ip:port"`, `sorry_server_inhibit`,
//! `ha_suspend`; on a real server `inhibit_on_failure` and one `[service.real_server.check]`
//! table or several `[[service.real_server.check]]`:
//!
//! ```toml
//!   [service.real_server.check]
//!   type = "http_get"        # http_get, ssl_get, tcp, misc, udp or ping
//!   url = "/"                # http_get/ssl_get: one URL (or urls = [{ path = "/", ... }])
//!   status_code = 200        # default: any 2xx
//!   digest = "9b3a..."       # optional: MD5 of the body, hex
//!   virtualhost = "www"      # optional: the Host header
//!   connect_timeout = 3      # seconds, default 5
//!   retry = 3                # default 1 (alias nb_get_retry)
//!   delay_before_retry = 3   # seconds, default 3 (http/ssl) or 1 (tcp/misc)
//!   warmup = 0               # seconds, default: delay_loop
//!   connect_ip = "10.0.2.12" # optional, IPv4 or IPv6; connect_port, bindto, bind_port too
//!   misc_path = "/bin/check" # misc: the command; misc_timeout, misc_dynamic
//!   user = "nobody"          # misc: who runs it (and group = "..."); default [scripts] user
//!   enable_sni = true        # ssl_get: send the virtualhost (or sni_name) as SNI
//!   payload = "01 02 ab"     # udp: the datagram, keepalived's hex string
//!   require_reply = true     # udp: a reply must come; or a hex pattern ("x" = any nibble)
//!   min_reply_length = 0     # udp, with require_reply; max_reply_length (default 255)
//!   delay_loop = 10          # this check's own delay_loop (seconds); alpha = true too
//! ```
//!
//! Who runs scripts (keepalived's `global_defs` `script_user` and `enable_script_security`; see
//! `crate::sys::script`); `[[vrrp_script]]` takes `user` and `group` too:
//!
//! ```toml
//! [scripts]
//! user = "keepalived_script"    # default: keepalived_script if it exists, else nobody
//! group = "keepalived_script"   # optional: the user's primary group
//! enable_script_security = true # refuse unsafe scripts that would run as root
//! ```
//!
//! Unknown keys are errors. Loading checks everything and reports every problem at once, each
//! with `file:line:column` and what was expected; only a TOML syntax or type error stops at the
//! first one (the TOML parser's limit).
//!
//! # Layout
//!
//! `raw.rs` (the serde types, unknown keys refused) → `validate.rs` (into the model, every
//! problem with its place; the model's rules in the config's words), with `network.rs`
//! (`[[snat]]`, `[[tunnel_route]]`) and `checks.rs` (health checks) → [`load_str`];
//! `writer.rs`: [`to_toml`], the way back.

mod checks;
#[cfg(test)]
mod health_tests;
mod network;
mod raw;
#[cfg(test)]
mod tests;
mod validate;
mod vrrp;
#[cfg(test)]
mod vrrp_tests;
mod writer;

pub use writer::to_toml;

use raw::RawConfig;
use validate::{problem, Validator};

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::director::route::TunnelRoute;
use crate::director::snat::SnatRule;
use crate::health::config::HealthConfig;
use crate::model::ServiceSet;
use crate::model::Timeouts;
use crate::vrrp::config::VrrpConfig;

/// The most TUN queues (worker threads) a director may ask for.
pub const MAX_QUEUES: usize = 256;

/// Checks an announce table number (`--announce-table`, `[director] announce_table`): a
/// routing table of its own, so 1 to 2³²−1 but not the kernel's `default` (253), `main` (254)
/// or `local` (255) tables, nor the NAT reply table.
pub fn announce_table(table: i64) -> Result<u32, String> {
    let reserved = [253, 254, 255, i64::from(crate::director::nat::REPLY_TABLE)];
    match u32::try_from(table) {
        Ok(t) if t > 0 && !reserved.contains(&table) => Ok(t),
        _ => Err(format!(
            "expected a routing table number from 1 to {} other than 253 (default), 254 \
             (main), 255 (local) and {} (tunlb's NAT replies), found {table}",
            u32::MAX,
            crate::director::nat::REPLY_TABLE
        )),
    }
}

/// The `[director]` and `[timeouts]` sections, with defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DirectorSettings {
    /// TUN queues, one worker thread each (default 1).
    pub queues: usize,
    /// Name of the director's TUN device (default `tunlb0`).
    pub tun_name: String,
    /// MTU of the links towards the real servers (default 1500): a client packet that no longer
    /// fits once encapsulated is answered with ICMP fragmentation-needed.
    pub tunnel_mtu: u16,
    /// Source address of the outer header of tunnel packets; `None` lets routing choose.
    pub local_address: Option<Ipv4Addr>,
    /// Source address of the outer IPv6 header of tunnel packets to IPv6 real servers;
    /// `None` lets routing choose (authenticated GUE to IPv6 real servers needs it).
    pub local_address6: Option<std::net::Ipv6Addr>,
    /// LAN interfaces on which the director answers ARP for every VIP from its own AF_PACKET
    /// socket (the answers stop with the process), as `--announce IFACE` does; empty by default.
    pub announce: Vec<String>,
    /// The routing table (`--announce-table`) into which every VIP whose service has a live
    /// real server is also routed (`VIP/32 dev TUN table N`), for a routing daemon such as
    /// BIRD to learn and announce over BGP; `None` (the default): no such routes.
    #[serde(default)]
    pub announce_table: Option<u32>,
    /// Connection timeouts.
    pub timeouts: Timeouts,
    /// Health checks of the services (`delay_loop`, ... and `[service.real_server.check]`);
    /// not written back by [`to_toml`].
    #[serde(default)]
    pub health: HealthConfig,
    /// `[[tunnel_route]]`: prefixes tunnelled to remote gateways (config file only).
    #[serde(skip)]
    pub tunnel_routes: Vec<TunnelRoute>,
    /// The S-NAT gateway's rules (`[[snat]]`), in file order.
    #[serde(default)]
    pub snat: Vec<SnatRule>,
    /// VRRP and connection sync (`[vrrp]`, `[[vrrp_instance]]`, `[[vrrp_script]]`,
    /// `[[vrrp_sync_group]]`, `[sync]`; see docs/ha.md).
    #[serde(default)]
    pub vrrp: VrrpConfig,
    /// IPVS's `sloppy_tcp` (`[director] sloppy_tcp`): a mid-flow TCP packet of a flow the
    /// director does not know is scheduled instead of dropped. `None` (not written): the
    /// default of [`DirectorSettings::sloppy`].
    #[serde(default)]
    pub sloppy_tcp: Option<bool>,
    /// IPVS's `sloppy_sctp`, the same for SCTP (accepted for IPVS's name; tunlb balances TCP
    /// and UDP only).
    #[serde(default)]
    pub sloppy_sctp: Option<bool>,
    /// The real servers' tunnel key files (`tunnel_key = "/path"` on a GUE real server):
    /// their GUE packets carry a MAC ([`crate::encap::auth`]). A real server without one takes
    /// the director's `--tunnel-key`, if given.
    #[serde(default)]
    pub tunnel_keys: std::collections::BTreeMap<std::net::IpAddr, std::path::PathBuf>,
}

impl DirectorSettings {
    /// `(sloppy_tcp, sloppy_sctp)` in effect: as configured, else on when the director runs
    /// VRRP or connection sync (a director that takes over a VIP must pick up the flows it
    /// has no entry for) and off for a lone director, as IPVS.
    pub fn sloppy(&self) -> (bool, bool) {
        let ha = !self.vrrp.is_empty() || self.vrrp.sync.is_some();
        (
            self.sloppy_tcp.unwrap_or(ha),
            self.sloppy_sctp.unwrap_or(ha),
        )
    }
}

impl Default for DirectorSettings {
    fn default() -> Self {
        DirectorSettings {
            queues: 1,
            tun_name: "tunlb0".to_string(),
            tunnel_mtu: 1500,
            local_address: None,
            local_address6: None,
            announce: Vec::new(),
            announce_table: None,
            timeouts: Timeouts::default(),
            health: HealthConfig::default(),
            tunnel_routes: Vec::new(),
            snat: Vec::new(),
            vrrp: VrrpConfig::default(),
            sloppy_tcp: None,
            sloppy_sctp: None,
            tunnel_keys: Default::default(),
        }
    }
}

/// One problem in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigErrors {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file has problems: every one found, in file order.
    #[error("{}", ProblemList { path, problems })]
    Invalid {
        /// The file.
        path: String,
        /// The problems.
        problems: Vec<Problem>,
    },
}

/// `path:line:column: message`, one per line.
struct ProblemList<'a> {
    path: &'a str,
    problems: &'a [Problem],
}

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}:{}:{}: {}", self.path, p.line, p.column, p.message)?;
        }
        Ok(())
    }
}

/// Reads and checks a config file.
pub fn load(path: impl AsRef<Path>) -> Result<(DirectorSettings, ServiceSet), ConfigErrors> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigErrors::Read {
        path: shown.clone(),
        source,
    })?;
    load_str(&text, &shown)
}

/// Checks config text; `path` only names it in messages.
pub fn load_str(text: &str, path: &str) -> Result<(DirectorSettings, ServiceSet), ConfigErrors> {
    let invalid = |problems| ConfigErrors::Invalid {
        path: path.to_string(),
        problems,
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        invalid(vec![problem(text, at, e.message().trim_end().to_string())])
    })?;
    let mut v = Validator {
        text,
        problems: Vec::new(),
        health: HealthConfig::default(),
        scripts: crate::model::ScriptPolicy::default(),
        tunnel_keys: Default::default(),
    };
    let mut out = v.config(&raw);
    out.0.health = std::mem::take(&mut v.health);
    out.0.tunnel_keys = std::mem::take(&mut v.tunnel_keys);
    if v.problems.is_empty() {
        Ok(out)
    } else {
        v.problems.sort_by_key(|p| (p.line, p.column));
        Err(invalid(v.problems))
    }
}
