//! The director's TOML config (`tunlb director --config FILE`).
//!
//! ```toml
//! [director]                 # optional
//! queues = 1                 # TUN queues = worker threads
//! tun_name = "tunlb0"
//! tunnel_mtu = 1500          # MTU towards the real servers
//! local_address = "10.0.0.1" # outer source address of tunnel packets (default: routing decides)
//! announce = ["eth0"]        # answer ARP for every VIP on these LAN interfaces
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
//!   u_threshold = 0          # optional, 0 = none
//!   l_threshold = 0          # optional
//!
//! [[tunnel_route]]           # optional, repeatable: a prefix tunnelled to a remote gateway
//! prefix = "172.16.8.0/22"   # its LAN (prefixes must not overlap)
//! via = "10.99.0.2"          # the gateway's tunnel address (`tunlb realserver --gateway`)
//! encap = "gre"              # ipip, gre or gue (required)
//! gre_key = 7                # gre only, optional
//! gue_port = 6080            # gue only, default 6080
//! [[snat]]                   # S-NAT gateway (see crate::director::snat), any number
//! source = "10.0.0.0/24"     # inside prefix (no overlap between entries)
//! to = ["192.0.2.10"]        # public addresses, at least one
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
//!   connect_ip = "10.0.2.12" # optional; connect_port, bindto too
//!   misc_path = "/bin/check" # misc: the command; misc_timeout, misc_dynamic
//!   enable_sni = true        # ssl_get: send the virtualhost (or sni_name) as SNI
//!   payload = "01 02 ab"     # udp: the datagram, keepalived's hex string
//!   require_reply = true     # udp: a reply must come; or a hex pattern ("x" = any nibble)
//!   min_reply_length = 0     # udp, with require_reply; max_reply_length (default 255)
//!   delay_loop = 10          # this check's own delay_loop (seconds); alpha = true too
//! ```
//!
//! Unknown keys are errors. Loading checks everything and reports every problem at once, each
//! with `file:line:column` and what was expected; only a TOML syntax or type error stops at the
//! first one (the TOML parser's limit).

use std::fmt;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use ipnet::Ipv4Net;
use toml::Spanned;

use crate::director::route::{self, TunnelRoute};
use crate::director::snat::SnatRule;
use crate::encap::{TunnelType, DEFAULT_GUE_PORT};
use crate::health::config::{
    parse_hex, CheckKind, CheckSpec, DestHealth, HealthConfig, ReplyPattern, ServiceHealth,
    UdpCheck, UrlSpec,
};
use crate::model::validate::{self, TunnelOption};
use crate::model::RuleError;
use crate::model::{
    DestConfig, ExpirePolicy, Forward, Persistence, Protocol, SchedulerKind, ServiceConfig,
    ServiceKey, ServiceSet,
};
use crate::model::{Timeouts, HOST_NETMASK, MAX_THRESHOLD, MAX_TIMEOUT, MAX_WEIGHT, MIN_MSS_CLAMP};

/// The most TUN queues (worker threads) a director may ask for.
pub const MAX_QUEUES: usize = 256;

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
    /// LAN interfaces on which the director answers ARP for every VIP (proxy neighbour,
    /// proxy_delay 0), as `--announce IFACE` does; empty by default.
    pub announce: Vec<String>,
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
}

impl Default for DirectorSettings {
    fn default() -> Self {
        DirectorSettings {
            queues: 1,
            tun_name: "tunlb0".to_string(),
            tunnel_mtu: 1500,
            local_address: None,
            announce: Vec::new(),
            timeouts: Timeouts::default(),
            health: HealthConfig::default(),
            tunnel_routes: Vec::new(),
            snat: Vec::new(),
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
    };
    let mut out = v.config(&raw);
    out.0.health = std::mem::take(&mut v.health);
    if v.problems.is_empty() {
        Ok(out)
    } else {
        v.problems.sort_by_key(|p| (p.line, p.column));
        Err(invalid(v.problems))
    }
}

/// The config that [`load_str`] reads back as `settings` and `set`.
pub fn to_toml(set: &ServiceSet, settings: &DirectorSettings) -> String {
    let mut out = String::new();
    let s = settings;
    let _ = writeln!(out, "[director]");
    let _ = writeln!(out, "queues = {}", s.queues);
    let _ = writeln!(out, "tun_name = {}", quote(&s.tun_name));
    let _ = writeln!(out, "tunnel_mtu = {}", s.tunnel_mtu);
    if let Some(a) = s.local_address {
        let _ = writeln!(out, "local_address = \"{a}\"");
    }
    if !s.announce.is_empty() {
        let list: Vec<String> = s.announce.iter().map(|i| quote(i)).collect();
        let _ = writeln!(out, "announce = [{}]", list.join(", "));
    }
    let t = s.timeouts;
    let _ = writeln!(
        out,
        "\n[timeouts]\ntcp = {}\ntcpfin = {}\nudp = {}",
        t.tcp, t.tcpfin, t.udp
    );
    for r in &s.tunnel_routes {
        let _ = writeln!(
            out,
            "\n[[tunnel_route]]\nprefix = \"{}\"\nvia = \"{}\"\nencap = \"{}\"",
            r.prefix, r.via, r.encap
        );
        if let Some(k) = r.gre_key {
            let _ = writeln!(out, "gre_key = {k}");
        }
        if r.encap == TunnelType::Gue {
            let _ = writeln!(out, "gue_port = {}", r.gue_port);
        }
    }
    for svc in &set.services {
        let k = svc.key;
        let proto = match k.proto {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        let _ = writeln!(
            out,
            "\n[[service]]\nvip = \"{}\"\nport = {}\nprotocol = \"{proto}\"\nscheduler = \"{}\"",
            k.vip, k.port, svc.scheduler
        );
        if let Some(p) = svc.persistence {
            let _ = writeln!(out, "persistence = {}", p.timeout);
            if p.netmask != HOST_NETMASK {
                let _ = writeln!(out, "netmask = \"{}\"", p.netmask);
            }
        }
        if let Some(mss) = svc.mss_clamp {
            let _ = writeln!(out, "mss_clamp = {mss}");
        }
        let policy = svc.policy;
        if policy.expire_nodest_conn != ExpirePolicy::default().expire_nodest_conn {
            let _ = writeln!(out, "expire_nodest_conn = {}", policy.expire_nodest_conn);
        }
        if policy.expire_quiescent_template != ExpirePolicy::default().expire_quiescent_template {
            let _ = writeln!(
                out,
                "expire_quiescent_template = {}",
                policy.expire_quiescent_template
            );
        }
        for d in &svc.dests {
            let _ = writeln!(
                out,
                "\n  [[service.real_server]]\n  address = \"{}\"\n  port = {}\n  weight = {}",
                d.addr, d.port, d.weight
            );
            match d.forward {
                Forward::Tunnel {
                    tun_type,
                    tun_port,
                    tun_csum,
                    gre_key,
                } => {
                    let _ = writeln!(out, "  forward = \"tunnel\"\n  tun_type = \"{tun_type}\"");
                    if tun_type == TunnelType::Gue {
                        let _ = writeln!(out, "  tun_port = {tun_port}");
                    }
                    if tun_csum {
                        let _ = writeln!(out, "  tun_csum = true");
                    }
                    if let Some(key) = gre_key {
                        let _ = writeln!(out, "  gre_key = {key}");
                    }
                }
                Forward::Dr => {
                    let _ = writeln!(out, "  forward = \"dr\"");
                }
                Forward::Nat => {
                    let _ = writeln!(out, "  forward = \"nat\"");
                }
            }
            if d.u_threshold != 0 {
                let _ = writeln!(out, "  u_threshold = {}", d.u_threshold);
            }
            if d.l_threshold != 0 {
                let _ = writeln!(out, "  l_threshold = {}", d.l_threshold);
            }
        }
    }
    for r in &s.snat {
        let to: Vec<String> = r.to.iter().map(|a| format!("\"{a}\"")).collect();
        let _ = writeln!(
            out,
            "\n[[snat]]\nsource = \"{}\"\nto = [{}]",
            r.source,
            to.join(", ")
        );
    }
    out
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

// --- What the file says, before checking ------------------------------------------------------
//
// Everything that can be wrong in a way worth reporting together is read loosely (numbers as
// i64, enums and addresses as strings, required keys as options) and checked by `Validator`.

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    director: Option<RawDirector>,
    timeouts: Option<RawTimeouts>,
    #[serde(default)]
    service: Vec<Spanned<RawService>>,
    #[serde(default)]
    tunnel_route: Vec<Spanned<RawTunnelRoute>>,
    #[serde(default)]
    snat: Vec<Spanned<RawSnat>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTunnelRoute {
    prefix: Option<Spanned<String>>,
    via: Option<Spanned<String>>,
    encap: Option<Spanned<String>>,
    gre_key: Option<Spanned<i64>>,
    gue_port: Option<Spanned<i64>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSnat {
    source: Option<Spanned<String>>,
    to: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirector {
    queues: Option<Spanned<i64>>,
    tun_name: Option<Spanned<String>>,
    tunnel_mtu: Option<Spanned<i64>>,
    local_address: Option<Spanned<String>>,
    announce: Option<Vec<String>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    tcp: Option<Spanned<i64>>,
    tcpfin: Option<Spanned<i64>>,
    udp: Option<Spanned<i64>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    vip: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    protocol: Option<Spanned<String>>,
    scheduler: Option<Spanned<String>>,
    persistence: Option<Spanned<i64>>,
    netmask: Option<Spanned<String>>,
    mss_clamp: Option<Spanned<i64>>,
    expire_nodest_conn: Option<bool>,
    expire_quiescent_template: Option<bool>,
    #[serde(default)]
    real_server: Vec<Spanned<RawRealServer>>,
    delay_loop: Option<Spanned<i64>>,
    alpha: Option<bool>,
    omega: Option<bool>,
    quorum: Option<Spanned<i64>>,
    hysteresis: Option<Spanned<i64>>,
    quorum_up: Option<String>,
    quorum_down: Option<String>,
    sorry_server: Option<Spanned<String>>,
    sorry_server_inhibit: Option<bool>,
    ha_suspend: Option<bool>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(t) => std::slice::from_ref(t),
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    #[serde(rename = "type")]
    kind: Option<String>,
    url: Option<String>,
    status_code: Option<i64>,
    digest: Option<String>,
    #[serde(default)]
    urls: Vec<RawUrl>,
    virtualhost: Option<String>,
    connect_ip: Option<String>,
    connect_port: Option<i64>,
    bindto: Option<String>,
    connect_timeout: Option<i64>,
    retry: Option<i64>,
    nb_get_retry: Option<i64>,
    delay_before_retry: Option<i64>,
    warmup: Option<i64>,
    #[serde(default)]
    check_through_tunnel: bool,
    misc_path: Option<String>,
    misc_timeout: Option<i64>,
    #[serde(default)]
    misc_dynamic: bool,
    #[serde(default)]
    enable_sni: bool,
    sni_name: Option<String>,
    payload: Option<String>,
    require_reply: Option<RequireReply>,
    min_reply_length: Option<i64>,
    max_reply_length: Option<i64>,
    delay_loop: Option<i64>,
    alpha: Option<bool>,
}

/// `require_reply = true` (any reply) or `require_reply = "HEX"` (a pattern).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum RequireReply {
    Any(bool),
    Pattern(String),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUrl {
    path: String,
    status_code: Option<i64>,
    digest: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRealServer {
    address: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    weight: Option<Spanned<i64>>,
    forward: Option<Spanned<String>>,
    tun_type: Option<Spanned<String>>,
    tun_port: Option<Spanned<i64>>,
    tun_csum: Option<Spanned<bool>>,
    gre_key: Option<Spanned<i64>>,
    u_threshold: Option<Spanned<i64>>,
    l_threshold: Option<Spanned<i64>>,
    inhibit_on_failure: Option<bool>,
    check: Option<OneOrMany<RawCheck>>,
}

fn problem(text: &str, offset: usize, message: String) -> Problem {
    let offset = offset.min(text.len());
    let mut cut = offset;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let before = &text[..cut];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    Problem {
        line,
        column,
        message,
    }
}

/// Collects every problem while building the result.
struct Validator<'a> {
    text: &'a str,
    problems: Vec<Problem>,
    health: HealthConfig,
}

impl Validator<'_> {
    fn report(&mut self, span: Range<usize>, message: String) {
        let p = problem(self.text, span.start, message);
        self.problems.push(p);
    }

    /// An integer in `min..=max`, or the default when absent.
    fn int(
        &mut self,
        value: &Option<Spanned<i64>>,
        what: &str,
        min: i64,
        max: i64,
        default: i64,
    ) -> i64 {
        match value {
            None => default,
            Some(v) if (min..=max).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                self.report(
                    v.span(),
                    format!(
                        "{what}: expected an integer from {min} to {max}, found {}",
                        v.get_ref()
                    ),
                );
                default
            }
        }
    }

    fn ipv4(&mut self, value: &Spanned<String>, what: &str) -> Option<Ipv4Addr> {
        match value.get_ref().parse::<Ipv4Addr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.report(
                    value.span(),
                    format!(
                        "{what}: expected an IPv4 address like \"192.0.2.1\", found {:?}",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn unicast(&mut self, value: &Spanned<String>, what: &str) -> Option<Ipv4Addr> {
        let addr = self.ipv4(value, what)?;
        if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() {
            self.report(
                value.span(),
                format!("{what}: expected a unicast IPv4 address, found {addr}"),
            );
            return None;
        }
        Some(addr)
    }

    fn config(&mut self, raw: &RawConfig) -> (DirectorSettings, ServiceSet) {
        let mut settings = DirectorSettings::default();
        if let Some(d) = &raw.director {
            self.director(d, &mut settings);
        }
        if let Some(t) = &raw.timeouts {
            let max = i64::from(MAX_TIMEOUT);
            let defaults = Timeouts::default();
            settings.timeouts = Timeouts {
                tcp: self.int(&t.tcp, "timeouts.tcp", 1, max, defaults.tcp.into()) as u32,
                tcpfin: self.int(&t.tcpfin, "timeouts.tcpfin", 1, max, defaults.tcpfin.into())
                    as u32,
                udp: self.int(&t.udp, "timeouts.udp", 1, max, defaults.udp.into()) as u32,
            };
        }
        let mut set = ServiceSet::default();
        let mut first_seen: Vec<(ServiceKey, usize)> = Vec::new();
        for (i, svc) in raw.service.iter().enumerate() {
            let Some(config) = self.service(svc, i) else {
                continue;
            };
            let key = config.key;
            let at = svc.get_ref().vip.as_ref().map_or(svc.span(), Spanned::span);
            if let Some((_, line)) = first_seen.iter().find(|(k, _)| *k == key) {
                let line = *line;
                self.report(
                    at,
                    format!("service[{i}]: duplicate service {key} (first defined on line {line})"),
                );
                continue;
            }
            first_seen.push((key, problem(self.text, at.start, String::new()).line));
            set.services.push(config);
        }
        settings.tunnel_routes = self.tunnel_routes(&raw.tunnel_route);
        settings.snat = self.snat(&raw.snat);
        (settings, set)
    }

    /// The `[[snat]]` entries: a source prefix each, not overlapping another, and at least one
    /// unicast address to leave behind, none twice.
    fn snat(&mut self, raw: &[Spanned<RawSnat>]) -> Vec<SnatRule> {
        let mut out: Vec<(SnatRule, usize)> = Vec::new();
        for (i, entry) in raw.iter().enumerate() {
            let what = format!("snat[{i}]");
            let e = entry.get_ref();
            let source = match &e.source {
                None => {
                    self.report(
                        entry.span(),
                        format!("{what}: missing key `source` (a prefix like \"10.0.0.0/24\")"),
                    );
                    None
                }
                Some(v) => self.prefix(v, &format!("{what}.source")),
            };
            let mut to: Vec<Ipv4Addr> = Vec::new();
            match &e.to {
                None => self.report(
                    entry.span(),
                    format!("{what}: missing key `to` (a list of public IPv4 addresses)"),
                ),
                Some(list) if list.get_ref().is_empty() => self.report(
                    list.span(),
                    format!("{what}.to: expected at least one IPv4 address, found an empty list"),
                ),
                Some(list) => {
                    for (j, a) in list.get_ref().iter().enumerate() {
                        let Some(addr) = self.unicast(a, &format!("{what}.to[{j}]")) else {
                            continue;
                        };
                        if to.contains(&addr) {
                            self.report(
                                a.span(),
                                format!("{what}.to[{j}]: duplicate address {addr}"),
                            );
                            continue;
                        }
                        to.push(addr);
                    }
                }
            }
            let Some(source) = source else { continue };
            let at = e.source.as_ref().map_or(entry.span(), Spanned::span);
            let line = problem(self.text, at.start, String::new()).line;
            let clash = out
                .iter()
                .find(|(r, _)| r.source.contains(&source) || source.contains(&r.source));
            if let Some((r, first)) = clash {
                let msg = format!(
                    "{what}.source: {source} overlaps {} (line {first}); a host must have one S-NAT rule",
                    r.source
                );
                self.report(at, msg);
                continue;
            }
            if !to.is_empty() {
                out.push((SnatRule { source, to }, line));
            }
        }
        out.into_iter().map(|(r, _)| r).collect()
    }

    /// An IPv4 prefix `a.b.c.d/len` without host bits.
    fn prefix(&mut self, value: &Spanned<String>, what: &str) -> Option<Ipv4Net> {
        let text = value.get_ref();
        let Ok(net) = text.parse::<Ipv4Net>() else {
            self.report(
                value.span(),
                format!("{what}: expected an IPv4 prefix like \"10.0.0.0/24\", found {text:?}"),
            );
            return None;
        };
        if net.trunc() != net {
            self.report(
                value.span(),
                format!(
                    "{what}: {net} has host bits set; the prefix is {}",
                    net.trunc()
                ),
            );
            return None;
        }
        Some(net)
    }

    /// Every `[[tunnel_route]]`; overlapping prefixes are refused.
    fn tunnel_routes(&mut self, raw: &[Spanned<RawTunnelRoute>]) -> Vec<TunnelRoute> {
        let mut out: Vec<TunnelRoute> = Vec::new();
        let mut spans: Vec<Range<usize>> = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let Some(route) = self.tunnel_route(r, i) else {
                continue;
            };
            let at = r.get_ref().prefix.as_ref().map_or(r.span(), Spanned::span);
            if let Some(j) = out
                .iter()
                .position(|o| o.prefix.contains(&route.prefix) || route.prefix.contains(&o.prefix))
            {
                let line = problem(self.text, spans[j].start, String::new()).line;
                self.report(
                    at,
                    format!(
                        "tunnel_route[{i}].prefix: {} overlaps {} (line {line}); tunnel-route prefixes must not overlap",
                        route.prefix, out[j].prefix
                    ),
                );
                continue;
            }
            if let Some(o) = out.iter().find(|o| {
                o.via == route.via
                    && (o.encap, o.gre_key, o.gue_port)
                        != (route.encap, route.gre_key, route.gue_port)
            }) {
                self.report(
                    at,
                    format!(
                        "tunnel_route[{i}]: via {} is already reached with {} (prefix {}); every route to one gateway must use the same encap, gre_key and gue_port",
                        route.via, o.encap, o.prefix
                    ),
                );
                continue;
            }
            spans.push(at);
            out.push(route);
        }
        debug_assert!(route::find_overlap(&out).is_none());
        out
    }

    fn tunnel_route(&mut self, r: &Spanned<RawTunnelRoute>, i: usize) -> Option<TunnelRoute> {
        let at = r.span();
        let t = r.get_ref();
        let what = format!("tunnel_route[{i}]");
        let prefix = match &t.prefix {
            None => {
                self.report(
                    at.clone(),
                    format!("{what}: missing key `prefix` (a CIDR like \"172.16.8.0/22\")"),
                );
                None
            }
            Some(p) => match p.get_ref().parse::<Ipv4Net>() {
                Ok(net) if net.trunc() == net && net.prefix_len() > 0 => Some(net),
                Ok(net) if net.prefix_len() == 0 => {
                    self.report(
                        p.span(),
                        format!("{what}.prefix: a default route (/0) would swallow everything, tunnel address included"),
                    );
                    None
                }
                Ok(net) => {
                    self.report(
                        p.span(),
                        format!(
                            "{what}.prefix: {net} has host bits set; did you mean {}?",
                            net.trunc()
                        ),
                    );
                    None
                }
                Err(_) => {
                    self.report(
                        p.span(),
                        format!(
                            "{what}.prefix: expected a CIDR like \"172.16.8.0/22\", found {:?}",
                            p.get_ref()
                        ),
                    );
                    None
                }
            },
        };
        let via = match &t.via {
            None => {
                self.report(
                    at.clone(),
                    format!("{what}: missing key `via` (the gateway's IPv4 tunnel address)"),
                );
                None
            }
            Some(v) => self.unicast(v, &format!("{what}.via")),
        };
        let encap = match &t.encap {
            None => {
                self.report(
                    at.clone(),
                    format!("{what}: missing key `encap` (\"ipip\", \"gre\" or \"gue\")"),
                );
                None
            }
            Some(e) => match e.get_ref().parse::<TunnelType>() {
                Ok(tt) => Some(tt),
                Err(msg) => {
                    self.report(e.span(), format!("{what}.encap: {msg}"));
                    None
                }
            },
        };
        let gre_key = t.gre_key.as_ref().map(|_| {
            self.int(
                &t.gre_key,
                &format!("{what}.gre_key"),
                0,
                u32::MAX.into(),
                0,
            ) as u32
        });
        if let (Some(k), Some(e)) = (&t.gre_key, encap) {
            if e != TunnelType::Gre {
                self.report(
                    k.span(),
                    format!("{what}.gre_key: only with encap = \"gre\""),
                );
            }
        }
        let gue_port = self.int(
            &t.gue_port,
            &format!("{what}.gue_port"),
            1,
            65_535,
            DEFAULT_GUE_PORT.into(),
        ) as u16;
        if let (Some(p), Some(e)) = (&t.gue_port, encap) {
            if e != TunnelType::Gue {
                self.report(
                    p.span(),
                    format!("{what}.gue_port: only with encap = \"gue\""),
                );
            }
        }
        if let (Some(prefix), Some(via)) = (prefix, via) {
            if prefix.contains(&via) {
                let span = t.via.as_ref().map_or(at.clone(), Spanned::span);
                self.report(
                    span,
                    format!("{what}.via: {via} is inside the prefix {prefix} it would carry"),
                );
                return None;
            }
        }
        Some(TunnelRoute {
            gre_key,
            gue_port,
            ..TunnelRoute::new(prefix?, via?, encap?)
        })
    }

    fn director(&mut self, d: &RawDirector, settings: &mut DirectorSettings) {
        settings.queues = self.int(&d.queues, "director.queues", 1, MAX_QUEUES as i64, 1) as usize;
        settings.tunnel_mtu =
            self.int(&d.tunnel_mtu, "director.tunnel_mtu", 576, 65_535, 1500) as u16;
        if let Some(name) = &d.tun_name {
            let n = name.get_ref();
            let valid = !n.is_empty()
                && n.len() < 16
                && n != "."
                && n != ".."
                && !n.contains(|c: char| c == '/' || c.is_whitespace() || c == ':');
            if valid {
                settings.tun_name = n.clone();
            } else {
                self.report(
                    name.span(),
                    format!(
                        "director.tun_name: expected an interface name of 1 to 15 characters \
                         without '/', ':' or spaces, found {n:?}"
                    ),
                );
            }
        }
        if let Some(a) = &d.local_address {
            settings.local_address = self.unicast(a, "director.local_address");
        }
        if let Some(announce) = &d.announce {
            settings.announce = announce.clone();
        }
    }

    fn service(&mut self, svc: &Spanned<RawService>, i: usize) -> Option<ServiceConfig> {
        let at = svc.span();
        let s = svc.get_ref();
        let what = format!("service[{i}]");
        let vip = match &s.vip {
            Some(v) => self.unicast(v, &format!("{what}.vip")),
            None => {
                self.report(
                    at.clone(),
                    format!("{what}: missing key `vip` (an IPv4 address)"),
                );
                None
            }
        };
        let port = match &s.port {
            Some(_) => self.int(&s.port, &format!("{what}.port"), 0, 65_535, 0) as u16,
            None => {
                self.report(
                    at.clone(),
                    format!("{what}: missing key `port` (0 to 65535; 0 = every port)"),
                );
                0
            }
        };
        let proto = match &s.protocol {
            None => Protocol::Tcp,
            Some(p) => match p.get_ref().as_str() {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                other => {
                    self.report(
                        p.span(),
                        format!("{what}.protocol: expected \"tcp\" or \"udp\", found {other:?}"),
                    );
                    Protocol::Tcp
                }
            },
        };
        let scheduler = match &s.scheduler {
            None => SchedulerKind::default(),
            Some(name) => {
                name.get_ref()
                    .parse()
                    .unwrap_or_else(|e: crate::model::UnknownScheduler| {
                        self.report(name.span(), format!("{what}.scheduler: {e}"));
                        SchedulerKind::default()
                    })
            }
        };
        let persistence = s.persistence.as_ref().map(|_| Persistence {
            timeout: self.int(
                &s.persistence,
                &format!("{what}.persistence"),
                1,
                MAX_TIMEOUT.into(),
                300,
            ) as u32,
            netmask: HOST_NETMASK,
        });
        let persistence = match (persistence, &s.netmask) {
            (p, None) => p,
            (None, Some(m)) => {
                self.report(
                    m.span(),
                    format!("{what}.netmask: only meaningful with `persistence`; add it or remove the netmask"),
                );
                None
            }
            (Some(mut p), Some(m)) => {
                if let Some(mask) = self.ipv4(m, &format!("{what}.netmask")) {
                    match validate::netmask(mask) {
                        Ok(mask) => p.netmask = mask,
                        Err(e) => self.report(m.span(), rule_message(&what, &e)),
                    }
                }
                Some(p)
            }
        };
        if let (Some(p), Err(e)) = (&s.port, validate::service_port(port, persistence.as_ref())) {
            self.report(p.span(), rule_message(&what, &e));
        }
        let mss_clamp = s.mss_clamp.as_ref().map(|_| {
            self.int(
                &s.mss_clamp,
                &format!("{what}.mss_clamp"),
                MIN_MSS_CLAMP.into(),
                65_535,
                1460,
            ) as u16
        });

        let key = ServiceKey {
            vip: vip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            port,
            proto,
        };
        let mut dests: Vec<DestConfig> = Vec::new();
        for (j, rs) in s.real_server.iter().enumerate() {
            let what = format!("{what}.real_server[{j}]");
            let Some(d) = self.real_server(rs, &what, key) else {
                continue;
            };
            if let Err(e) = validate::unique_dest(&dests, d.addr, d.port) {
                let span = rs
                    .get_ref()
                    .address
                    .as_ref()
                    .map_or(rs.span(), Spanned::span);
                self.report(span, rule_message(&what, &e));
                continue;
            }
            dests.push(d);
        }
        self.service_health(s, &what, key);
        vip?;
        Some(ServiceConfig {
            key,
            scheduler,
            persistence,
            mss_clamp,
            dests,
            policy: ExpirePolicy {
                expire_nodest_conn: s
                    .expire_nodest_conn
                    .unwrap_or(ExpirePolicy::default().expire_nodest_conn),
                expire_quiescent_template: s
                    .expire_quiescent_template
                    .unwrap_or(ExpirePolicy::default().expire_quiescent_template),
            },
        })
    }

    fn seconds(&mut self, v: Option<i64>, span: &Range<usize>, what: &str) -> Option<Duration> {
        match v {
            None => None,
            Some(n) if (0..=86_400).contains(&n) => Some(Duration::from_secs(n as u64)),
            Some(n) => {
                self.report(
                    span.clone(),
                    format!("{what}: expected seconds from 0 to 86400, found {n}"),
                );
                None
            }
        }
    }

    /// The health settings of one service, added to `self.health` when it has any.
    fn service_health(&mut self, s: &RawService, what: &str, key: ServiceKey) {
        let mut h = ServiceHealth::default();
        let mut any = false;
        if s.delay_loop.is_some() {
            any = true;
            let n = self.int(&s.delay_loop, &format!("{what}.delay_loop"), 1, 86_400, 60);
            h.delay_loop = Duration::from_secs(n as u64);
        }
        h.alpha = s.alpha.unwrap_or(false);
        h.omega = s.omega.unwrap_or(false);
        h.quorum = self.int(&s.quorum, &format!("{what}.quorum"), 1, u32::MAX.into(), 1) as u32;
        h.hysteresis = self.int(
            &s.hysteresis,
            &format!("{what}.hysteresis"),
            0,
            u32::MAX.into(),
            0,
        ) as u32;
        h.quorum_up = s.quorum_up.clone();
        h.quorum_down = s.quorum_down.clone();
        if let Some(ss) = &s.sorry_server {
            match ss.get_ref().parse::<SocketAddrV4>() {
                Ok(a) => h.sorry_server = Some(a),
                Err(_) => self.report(
                    ss.span(),
                    format!(
                        "{what}.sorry_server: expected \"ip:port\" like \"192.0.2.9:80\", found {:?}",
                        ss.get_ref()
                    ),
                ),
            }
        }
        h.sorry_server_inhibit = s.sorry_server_inhibit.unwrap_or(false);
        h.ha_suspend = s.ha_suspend.unwrap_or(false);
        any |= s.alpha.is_some()
            || s.quorum.is_some()
            || s.hysteresis.is_some()
            || h.sorry_server.is_some()
            || h.quorum_up.is_some()
            || h.quorum_down.is_some();
        for (j, rs) in s.real_server.iter().enumerate() {
            let r = rs.get_ref();
            let what = format!("{what}.real_server[{j}]");
            let Some(Ok(addr)) = r.address.as_ref().map(|a| a.get_ref().parse::<Ipv4Addr>()) else {
                continue;
            };
            let port = match r.port.as_ref().map(|p| *p.get_ref()) {
                Some(p) if (1..=65_535).contains(&p) => p as u16,
                _ => key.port,
            };
            let mut dh = DestHealth {
                checks: Vec::new(),
                inhibit_on_failure: r.inhibit_on_failure.unwrap_or(false),
            };
            let nat = r.forward.as_ref().is_some_and(|f| f.get_ref() == "nat");
            if let Some(checks) = &r.check {
                for (k, c) in checks.as_slice().iter().enumerate() {
                    let what = format!("{what}.check[{k}]");
                    let Some(spec) = self.check(c, &rs.span(), &what) else {
                        continue;
                    };
                    for why in spec.through_tunnel_refusals(nat) {
                        self.report(
                            rs.span(),
                            format!(
                                "{what}.check_through_tunnel: virtual server {}:{} real server \
                                 {addr}:{port}: {why}",
                                key.vip, key.port
                            ),
                        );
                    }
                    dh.checks.push(spec);
                }
            }
            if !dh.checks.is_empty() || dh.inhibit_on_failure {
                any = true;
                h.per_dest.push(((addr, port), dh));
            }
        }
        if any {
            self.health.services.push((key, h));
        }
    }

    fn check(&mut self, c: &RawCheck, span: &Range<usize>, what: &str) -> Option<CheckSpec> {
        let port = |v: &mut Self, p: Option<i64>, name: &str| match p {
            None => None,
            Some(p) if (1..=65_535).contains(&p) => Some(p as u16),
            Some(p) => {
                v.report(
                    span.clone(),
                    format!("{what}.{name}: expected a port from 1 to 65535, found {p}"),
                );
                None
            }
        };
        let status = |v: &mut Self, p: Option<i64>| match p {
            None => None,
            Some(p) if (100..=599).contains(&p) => Some(p as u16),
            Some(p) => {
                v.report(
                    span.clone(),
                    format!("{what}.status_code: expected 100 to 599, found {p}"),
                );
                None
            }
        };
        let mut urls: Vec<UrlSpec> = Vec::new();
        if let Some(u) = &c.url {
            urls.push(UrlSpec {
                path: u.clone(),
                status_code: status(self, c.status_code),
                digest: c.digest.clone(),
            });
        }
        for u in &c.urls {
            urls.push(UrlSpec {
                path: u.path.clone(),
                status_code: status(self, u.status_code),
                digest: u.digest.clone(),
            });
        }
        let kind = match c.kind.as_deref() {
            Some("http_get") | Some("ssl_get") => {
                if urls.is_empty() {
                    self.report(span.clone(), format!("{what}: needs `url` or `urls`"));
                    return None;
                }
                let virtualhost = c.virtualhost.clone();
                if c.kind.as_deref() == Some("http_get") {
                    CheckKind::HttpGet { urls, virtualhost }
                } else {
                    CheckKind::SslGet {
                        urls,
                        virtualhost,
                        enable_sni: c.enable_sni,
                        sni_name: c.sni_name.clone(),
                    }
                }
            }
            Some("udp") => CheckKind::Udp(self.udp_check(c, span, what)),
            Some("ping") => CheckKind::Ping,
            Some("tcp") => CheckKind::Tcp,
            Some("misc") => {
                let Some(path) = c.misc_path.clone() else {
                    self.report(
                        span.clone(),
                        format!("{what}: type \"misc\" needs `misc_path`"),
                    );
                    return None;
                };
                CheckKind::Misc {
                    path,
                    timeout: self.seconds(c.misc_timeout, span, &format!("{what}.misc_timeout")),
                    dynamic: c.misc_dynamic,
                }
            }
            other => {
                self.report(
                    span.clone(),
                    format!(
                        "{what}.type: expected \"http_get\", \"ssl_get\", \"tcp\", \"misc\", \"udp\" or \"ping\", found {other:?}"
                    ),
                );
                return None;
            }
        };
        let addr = |v: &mut Self, a: &Option<String>, name: &str| match a {
            None => None,
            Some(a) => match a.parse::<Ipv4Addr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    v.report(
                        span.clone(),
                        format!("{what}.{name}: expected an IPv4 address, found {a:?}"),
                    );
                    None
                }
            },
        };
        let mut spec = CheckSpec::new(kind);
        spec.connect_ip = addr(self, &c.connect_ip, "connect_ip");
        spec.bindto = addr(self, &c.bindto, "bindto");
        spec.connect_port = port(self, c.connect_port, "connect_port");
        if let Some(t) = self.seconds(c.connect_timeout, span, &format!("{what}.connect_timeout")) {
            spec.connect_timeout = t;
        }
        match c.retry.or(c.nb_get_retry) {
            None => {}
            Some(n) if (0..=1000).contains(&n) => spec.retry = n as u32,
            Some(n) => self.report(
                span.clone(),
                format!("{what}.retry: expected 0 to 1000, found {n}"),
            ),
        }
        spec.delay_before_retry = self.seconds(
            c.delay_before_retry,
            span,
            &format!("{what}.delay_before_retry"),
        );
        spec.warmup = self.seconds(c.warmup, span, &format!("{what}.warmup"));
        spec.check_through_tunnel = c.check_through_tunnel;
        spec.delay_loop = match c.delay_loop {
            Some(0) => {
                self.report(
                    span.clone(),
                    format!("{what}.delay_loop: expected seconds from 1 to 86400, found 0"),
                );
                None
            }
            d => self.seconds(d, span, &format!("{what}.delay_loop")),
        };
        spec.alpha = c.alpha;
        if (c.enable_sni || c.sni_name.is_some()) && c.kind.as_deref() != Some("ssl_get") {
            self.report(
                span.clone(),
                format!("{what}: enable_sni and sni_name are only for type \"ssl_get\""),
            );
        }
        let udp_keys = c.payload.is_some()
            || c.require_reply.is_some()
            || c.min_reply_length.is_some()
            || c.max_reply_length.is_some();
        if udp_keys && c.kind.as_deref() != Some("udp") {
            self.report(
                span.clone(),
                format!(
                    "{what}: payload, require_reply, min_reply_length and max_reply_length are \
                     only for type \"udp\""
                ),
            );
        }
        Some(spec)
    }

    /// The UDP_CHECK settings of a `type = "udp"` check.
    fn udp_check(&mut self, c: &RawCheck, span: &Range<usize>, what: &str) -> UdpCheck {
        let mut u = UdpCheck::default();
        if let Some(p) = &c.payload {
            match parse_hex(p, false) {
                Some(h) => u.payload = h.bytes,
                None => self.report(
                    span.clone(),
                    format!("{what}.payload: expected hex digits like \"01 ab 3f\", found {p:?}"),
                ),
            }
        }
        u.require_reply = match &c.require_reply {
            None | Some(RequireReply::Any(false)) => None,
            Some(RequireReply::Any(true)) => Some(ReplyPattern::default()),
            Some(RequireReply::Pattern(p)) => match parse_hex(p, true) {
                Some(h) => Some(h),
                None => {
                    self.report(
                        span.clone(),
                        format!(
                            "{what}.require_reply: expected true or hex digits (x for any \
                             nibble) like \"01 xx\", found {p:?}"
                        ),
                    );
                    None
                }
            },
        };
        let len = |v: &mut Self, l: Option<i64>, name: &str, default: u16| match l {
            None => default,
            Some(l) if (0..=65_535).contains(&l) => l as u16,
            Some(l) => {
                v.report(
                    span.clone(),
                    format!("{what}.{name}: expected 0 to 65535, found {l}"),
                );
                default
            }
        };
        u.min_reply_length = len(self, c.min_reply_length, "min_reply_length", 0);
        u.max_reply_length = len(self, c.max_reply_length, "max_reply_length", 255);
        if u.min_reply_length > u.max_reply_length {
            self.report(
                span.clone(),
                format!(
                    "{what}: min_reply_length {} > max_reply_length {}: the check would always fail",
                    u.min_reply_length, u.max_reply_length
                ),
            );
        }
        u
    }

    fn real_server(
        &mut self,
        rs: &Spanned<RawRealServer>,
        what: &str,
        svc: ServiceKey,
    ) -> Option<DestConfig> {
        let r = rs.get_ref();
        let addr = match &r.address {
            Some(a) => self.unicast(a, &format!("{what}.address")),
            None => {
                self.report(
                    rs.span(),
                    format!("{what}: missing key `address` (an IPv4 address)"),
                );
                None
            }
        };
        let weight = self.int(
            &r.weight,
            &format!("{what}.weight"),
            0,
            MAX_WEIGHT.into(),
            1,
        ) as u32;
        let max_t = i64::from(MAX_THRESHOLD);
        let u_threshold =
            self.int(&r.u_threshold, &format!("{what}.u_threshold"), 0, max_t, 0) as u32;
        let l_threshold =
            self.int(&r.l_threshold, &format!("{what}.l_threshold"), 0, max_t, 0) as u32;
        if let Err(e) = validate::thresholds(u_threshold, l_threshold) {
            let span = r.l_threshold.as_ref().map_or(rs.span(), Spanned::span);
            self.report(span, rule_message(what, &e));
        }

        #[derive(PartialEq)]
        enum Method {
            Tunnel,
            Dr,
            Nat,
        }
        let method = match &r.forward {
            None => Method::Tunnel,
            Some(f) => match f.get_ref().as_str() {
                "tunnel" => Method::Tunnel,
                "dr" => Method::Dr,
                "nat" => Method::Nat,
                other => {
                    self.report(
                        f.span(),
                        format!("{what}.forward: expected \"tunnel\", \"dr\" or \"nat\", found {other:?}"),
                    );
                    Method::Tunnel
                }
            },
        };
        let tun_type = match &r.tun_type {
            None => TunnelType::default(),
            Some(t) => t.get_ref().parse().unwrap_or_else(|e: String| {
                self.report(t.span(), format!("{what}.tun_type: {e}"));
                TunnelType::default()
            }),
        };
        // Tunnel keys only where they mean something.
        let tunnel_keys: [(&str, Option<Range<usize>>, bool); 4] = [
            (
                "tun_type",
                r.tun_type.as_ref().map(Spanned::span),
                method == Method::Tunnel,
            ),
            (
                "tun_port",
                r.tun_port.as_ref().map(Spanned::span),
                method == Method::Tunnel
                    && validate::tunnel_option_allowed(tun_type, TunnelOption::Port),
            ),
            (
                "tun_csum",
                r.tun_csum.as_ref().map(Spanned::span),
                method == Method::Tunnel
                    && validate::tunnel_option_allowed(tun_type, TunnelOption::Checksum),
            ),
            (
                "gre_key",
                r.gre_key.as_ref().map(Spanned::span),
                method == Method::Tunnel
                    && validate::tunnel_option_allowed(tun_type, TunnelOption::GreKey),
            ),
        ];
        for (key, span, allowed) in tunnel_keys {
            if let (Some(span), false) = (span, allowed) {
                let only = match key {
                    "tun_type" => "forward = \"tunnel\"",
                    "tun_port" => "tun_type = \"gue\"",
                    "tun_csum" => "tun_type = \"gue\" or \"gre\"",
                    _ => "tun_type = \"gre\"",
                };
                self.report(span, format!("{what}.{key}: only valid with {only}"));
            }
        }
        let tun_port = self.int(
            &r.tun_port,
            &format!("{what}.tun_port"),
            1,
            65_535,
            DEFAULT_GUE_PORT.into(),
        ) as u16;
        let gre_key = r.gre_key.as_ref().map(|_| {
            self.int(
                &r.gre_key,
                &format!("{what}.gre_key"),
                0,
                u32::MAX.into(),
                0,
            ) as u32
        });
        let forward = match method {
            Method::Tunnel => Forward::Tunnel {
                tun_type,
                tun_port,
                tun_csum: r.tun_csum.as_ref().is_some_and(|c| *c.get_ref()),
                gre_key,
            },
            Method::Dr => Forward::Dr,
            Method::Nat => Forward::Nat,
        };

        let port = match &r.port {
            None => svc.port,
            Some(p) => {
                let port = self.int(&r.port, &format!("{what}.port"), 0, 65_535, 0) as u16;
                validate::real_server_port(svc.port, &forward, validate::zero_is_unset(port))
                    .unwrap_or_else(|e| {
                        self.report(p.span(), rule_message(what, &e));
                        svc.port
                    })
            }
        };
        Some(DestConfig {
            addr: addr?,
            port,
            weight,
            forward,
            u_threshold,
            l_threshold,
        })
    }
}

/// A broken model rule in the config's words; `what` is the service or real server
/// (`service[0]`, `service[0].real_server[1]`) and the key is named after it.
fn rule_message(what: &str, e: &RuleError) -> String {
    match e {
        RuleError::ZeroPortNeedsPersistence => {
            format!("{what}.port: port 0 (every port) needs `persistence`")
        }
        RuleError::NetmaskNotContiguous(mask) => format!(
            "{what}.netmask: expected a contiguous netmask like \"255.255.255.0\", found {mask}"
        ),
        RuleError::ThresholdsOutOfOrder { upper, .. } => {
            format!("{what}.l_threshold: must not exceed u_threshold ({upper})")
        }
        RuleError::DestPortMismatch { service_port } => format!(
            "{what}.port: expected {service_port} (the service's port) or nothing: \
             tunnel and dr cannot change the port"
        ),
        RuleError::DuplicateDest { addr, port } => {
            format!("{what}: duplicate real server {addr}:{port}")
        }
        // Ranges are checked where the number is read, with the key's own bounds.
        RuleError::PersistenceTimeout(_) | RuleError::Weight(_) | RuleError::Threshold(_) => {
            format!("{what}: {e}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"
[director]
queues = 2
tun_name = "tunlb0"
tunnel_mtu = 1500
local_address = "192.168.150.2"
announce = ["eth0"]

[timeouts]
tcp = 900
tcpfin = 120
udp = 300

[[service]]
vip = "192.168.150.100"
port = 80
protocol = "tcp"
scheduler = "rr"

  [[service.real_server]]
  address = "192.168.150.12"
  port = 80
  weight = 1
  forward = "tunnel"

  [[service.real_server]]
  address = "192.168.150.13"
  forward = "tunnel"
  tun_type = "gue"
  tun_port = 6080

[[service]]
vip = "192.168.150.101"
port = 0
protocol = "udp"
persistence = 600
netmask = "255.255.255.0"
mss_clamp = 1400
expire_nodest_conn = false
expire_quiescent_template = true

  [[service.real_server]]
  address = "10.0.2.12"
  forward = "tunnel"
  tun_type = "gre"
  tun_csum = true
  gre_key = 7
  u_threshold = 100
  l_threshold = 50
"#;

    fn problems(text: &str) -> Vec<(usize, usize, String)> {
        match load_str(text, "t.toml") {
            Ok(_) => Vec::new(),
            Err(ConfigErrors::Invalid { problems, .. }) => problems
                .into_iter()
                .map(|p| (p.line, p.column, p.message))
                .collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn seed_config_loads() {
        let (settings, set) = load_str(SEED, "seed.toml").expect("valid");
        assert_eq!(settings.queues, 2);
        assert_eq!(
            settings.local_address,
            Some(Ipv4Addr::new(192, 168, 150, 2))
        );
        assert_eq!(set.services.len(), 2);
        let web = &set.services[0];
        assert_eq!(web.key.to_string(), "TCP 192.168.150.100:80");
        assert_eq!(web.scheduler, SchedulerKind::Rr);
        assert_eq!(web.dests[0].forward, Forward::tunnel(TunnelType::Ipip));
        assert_eq!(web.dests[1].port, 80);
        assert_eq!(web.dests[1].forward, Forward::tunnel(TunnelType::Gue));
        let dns = &set.services[1];
        assert_eq!(
            dns.persistence,
            Some(Persistence {
                timeout: 600,
                netmask: Ipv4Addr::new(255, 255, 255, 0)
            })
        );
        assert_eq!(dns.mss_clamp, Some(1400));
        assert_eq!(
            dns.policy,
            ExpirePolicy {
                expire_nodest_conn: false,
                expire_quiescent_template: true
            }
        );
        assert!(web.policy.is_default());
        assert_eq!(dns.dests[0].port, 0);
        assert_eq!(
            dns.dests[0].forward,
            Forward::Tunnel {
                tun_type: TunnelType::Gre,
                tun_port: DEFAULT_GUE_PORT,
                tun_csum: true,
                gre_key: Some(7)
            }
        );
    }

    #[test]
    fn empty_config_is_all_defaults() {
        let (settings, set) = load_str("", "empty.toml").expect("valid");
        assert_eq!(settings, DirectorSettings::default());
        assert!(set.services.is_empty());
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let text = r#"[director]
queues = 0
tun_name = "a/b"

[[service]]
vip = "192.168.150.300"
port = 80
scheduler = "fastest"

  [[service.real_server]]
  address = "10.0.0.1"
  port = 8080
  weight = 70000
  forward = "tunnel"
  tun_port = 7000

[[service]]
port = 443
"#;
        let got = problems(text);
        let expect: Vec<(usize, usize, &str)> = vec![
            (
                2,
                10,
                "director.queues: expected an integer from 1 to 256, found 0",
            ),
            (3, 12, "director.tun_name: expected an interface name"),
            (6, 7, "service[0].vip: expected an IPv4 address"),
            (8, 13, "service[0].scheduler: unknown scheduler \"fastest\""),
            (
                12,
                10,
                "service[0].real_server[0].port: expected 80 (the service's port)",
            ),
            (
                13,
                12,
                "service[0].real_server[0].weight: expected an integer from 0 to 65535",
            ),
            (
                15,
                14,
                "service[0].real_server[0].tun_port: only valid with tun_type = \"gue\"",
            ),
            (17, 1, "service[1]: missing key `vip`"),
        ];
        assert_eq!(got.len(), expect.len(), "{got:#?}");
        for ((line, col, msg), (el, ec, em)) in got.iter().zip(&expect) {
            assert_eq!((line, col), (el, ec), "{msg}");
            assert!(msg.starts_with(em), "{msg:?} does not start with {em:?}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_their_place() {
        let text = "[[service]]\nvip = \"10.0.0.1\"\nport = 80\nschedular = \"rr\"\n";
        let got = problems(text);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].0, got[0].1), (4, 1));
        assert!(
            got[0].2.contains("unknown field `schedular`"),
            "{}",
            got[0].2
        );
    }

    #[test]
    fn syntax_errors_have_a_place() {
        let got = problems("[director]\nqueues = = 2\n");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 2);
    }

    #[test]
    fn duplicates_and_semantics() {
        let text = r#"
[[service]]
vip = "10.0.0.1"
port = 0

[[service]]
vip = "10.0.0.2"
port = 80
netmask = "255.255.255.0"

  [[service.real_server]]
  address = "10.0.1.1"
  forward = "nat"
  port = 8080
  u_threshold = 5
  l_threshold = 9

  [[service.real_server]]
  address = "10.0.1.1"
  forward = "nat"
  port = 8080

  [[service.real_server]]
  address = "10.0.1.2"
  forward = "dr"
  tun_type = "gre"

[[service]]
vip = "10.0.0.2"
port = 80
"#;
        let got = problems(text);
        let msgs: Vec<&str> = got.iter().map(|p| p.2.as_str()).collect();
        assert_eq!(got.len(), 6, "{msgs:#?}");
        assert!(msgs[0].starts_with("service[0].port: port 0 (every port) needs `persistence`"));
        assert!(msgs[1].starts_with("service[1].netmask: only meaningful with `persistence`"));
        assert!(msgs[2].starts_with("service[1].real_server[0].l_threshold: must not exceed"));
        assert!(
            msgs[3].starts_with("service[1].real_server[1]: duplicate real server 10.0.1.1:8080")
        );
        assert!(msgs[4].starts_with(
            "service[1].real_server[2].tun_type: only valid with forward = \"tunnel\""
        ));
        assert!(msgs[5].starts_with(
            "service[2]: duplicate service TCP 10.0.0.2:80 (first defined on line 7)"
        ));
        assert_eq!(got[5].0, 29);
    }

    #[test]
    fn errors_display_as_file_line_column() {
        let err = load_str("[timeouts]\ntcp = 0\n", "d.toml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "d.toml:2:7: timeouts.tcp: expected an integer from 1 to 2678400, found 0"
        );
    }

    #[test]
    fn expire_policy_keys_must_be_booleans() {
        let text = "[[service]]\nvip = \"10.0.0.1\"\nport = 80\nexpire_nodest_conn = 0\n";
        let err = load_str(text, "p.toml").unwrap_err().to_string();
        assert!(err.starts_with("p.toml:4:22: "), "{err}");
        assert!(err.contains("bool"), "{err}");
    }

    #[test]
    fn to_toml_writes_the_expire_policy_only_when_not_default() {
        let (settings, set) = load_str(SEED, "seed.toml").unwrap();
        let text = to_toml(&set, &settings);
        assert_eq!(text.matches("expire_nodest_conn = false").count(), 1);
        assert_eq!(text.matches("expire_quiescent_template = true").count(), 1);
        assert_eq!(text.matches("expire_").count(), 2);
    }

    #[test]
    fn to_toml_round_trips() {
        let (settings, set) = load_str(SEED, "seed.toml").unwrap();
        let text = to_toml(&set, &settings);
        let (settings2, set2) =
            load_str(&text, "saved.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(settings2, settings);
        assert_eq!(set2, set);
    }

    const ROUTES: &str = r#"[[tunnel_route]]
prefix = "172.16.8.0/22"
via = "10.99.0.2"
encap = "gre"
gre_key = 9

[[tunnel_route]]
prefix = "172.20.0.0/16"
via = "10.99.0.3"
encap = "gue"
gue_port = 7000
"#;

    #[test]
    fn tunnel_routes_load_and_round_trip() {
        let (settings, set) = load_str(ROUTES, "routes.toml").expect("valid");
        let r = &settings.tunnel_routes;
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].prefix, "172.16.8.0/22".parse().unwrap());
        assert_eq!(r[0].via, Ipv4Addr::new(10, 99, 0, 2));
        assert_eq!((r[0].encap, r[0].gre_key), (TunnelType::Gre, Some(9)));
        assert_eq!((r[1].encap, r[1].gue_port), (TunnelType::Gue, 7000));
        let text = to_toml(&set, &settings);
        let (again, _) = load_str(&text, "saved.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(again, settings);
    }

    #[test]
    fn bad_tunnel_routes_are_reported_with_their_place() {
        let text = r#"[[tunnel_route]]
prefix = "172.16.8.0/22"
via = "10.99.0.2"
encap = "gre"

[[tunnel_route]]
prefix = "172.16.10.0/24"
via = "10.99.0.3"
encap = "ipip"

[[tunnel_route]]
prefix = "10.7.0.1/24"
via = "10.99.0.300"
encap = "vxlan"
gue_port = 1

[[tunnel_route]]
via = "10.99.0.2"
encap = "ipip"
gre_key = 1
mtu = 1400
"#;
        let err = load_str(text, "r.toml").unwrap_err().to_string();
        // An unknown key stops the parse at once (the TOML parser's limit).
        assert!(err.starts_with("r.toml:21:1: unknown field `mtu`"), "{err}");
        let got = problems(&text.replace("mtu = 1400\n", ""));
        let lines: Vec<(usize, usize)> = got.iter().map(|(l, c, _)| (*l, *c)).collect();
        assert_eq!(
            lines,
            [(7, 10), (12, 10), (13, 7), (14, 9), (17, 1), (20, 11)],
            "{got:#?}"
        );
        assert!(
            got[0].2.contains("overlaps 172.16.8.0/22 (line 2)"),
            "{}",
            got[0].2
        );
        assert!(got[1].2.contains("host bits"), "{}", got[1].2);
        assert!(got[4].2.contains("missing key `prefix`"), "{}", got[4].2);
        assert!(
            got[5].2.contains("only with encap = \"gre\""),
            "{}",
            got[5].2
        );
    }

    #[test]
    fn reads_snat_rules_and_writes_them_back() {
        let text = "[[snat]]\nsource = \"10.0.0.0/24\"\nto = [\"192.0.2.10\", \"192.0.2.11\"]\n\n\
                    [[snat]]\nsource = \"10.9.0.0/16\"\nto = [\"192.0.2.12\"]\n";
        let (settings, set) = load_str(text, "snat.toml").unwrap();
        assert_eq!(
            settings.snat,
            [
                SnatRule {
                    source: "10.0.0.0/24".parse().unwrap(),
                    to: vec![Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(192, 0, 2, 11)],
                },
                SnatRule {
                    source: "10.9.0.0/16".parse().unwrap(),
                    to: vec![Ipv4Addr::new(192, 0, 2, 12)],
                },
            ]
        );
        let saved = to_toml(&set, &settings);
        let (again, _) = load_str(&saved, "saved.toml").unwrap_or_else(|e| panic!("{e}\n{saved}"));
        assert_eq!(again.snat, settings.snat);
    }

    #[test]
    fn rejects_bad_snat_rules_with_their_place() {
        let text = "[[snat]]\nsource = \"10.0.0.5/24\"\nto = [\"192.0.2.1\"]\n\
                    [[snat]]\nsource = \"10.0.0.0/16\"\nto = []\n\
                    [[snat]]\nsource = \"10.1.0.0/24\"\nto = [\"192.0.2.1\", \"x\", \"192.0.2.1\"]\n\
                    [[snat]]\nsource = \"10.1.0.0/25\"\nto = [\"192.0.2.3\"]\n\
                    [[snat]]\nsource = \"nope\"\n\
                    [[snat]]\nfrom = \"10.0.0.0/8\"\n";
        let found = problems(text);
        let unknown = problems("[[snat]]\nfrom = \"10.0.0.0/8\"\n");
        assert_eq!(unknown.len(), 1);
        assert_eq!((unknown[0].0, unknown[0].1), (2, 1), "{unknown:?}");
        assert!(unknown[0].2.contains("unknown field `from`"), "{unknown:?}");
        // The unknown key stops parsing (line 16 of the whole text); check the rest without it.
        assert_eq!(found, [(16, 1, unknown[0].2.clone())]);
        let text = &text[..text.rfind("[[snat]]").unwrap()];
        let found = problems(text);
        let expect: [(usize, usize, &str); 7] = [
            (
                2,
                10,
                "snat[0].source: 10.0.0.5/24 has host bits set; the prefix is 10.0.0.0/24",
            ),
            (6, 6, "snat[1].to: expected at least one IPv4 address"),
            (9, 20, "snat[2].to[1]: expected an IPv4 address"),
            (9, 25, "snat[2].to[2]: duplicate address 192.0.2.1"),
            (
                11,
                10,
                "snat[3].source: 10.1.0.0/25 overlaps 10.1.0.0/24 (line 8)",
            ),
            (13, 1, "snat[4]: missing key `to`"),
            (
                14,
                10,
                "snat[4].source: expected an IPv4 prefix like \"10.0.0.0/24\", found \"nope\"",
            ),
        ];
        assert_eq!(found.len(), expect.len(), "{found:#?}");
        for ((line, col, msg), (el, ec, em)) in found.iter().zip(expect) {
            assert_eq!((*line, *col), (el, ec), "{msg}");
            assert!(msg.starts_with(em), "{msg:?} does not start with {em:?}");
        }
    }

    #[test]
    fn every_file_in_configs_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("configs/") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                load(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            } else if path.extension().is_some_and(|e| e == "conf") {
                // keepalived.conf files (control::keepalived).
                crate::control::keepalived::load(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n > 0, "no config in {}", dir.display());
    }
}

#[cfg(test)]
mod health_tests {
    use super::*;

    #[test]
    fn reads_health_checks() {
        let text = r#"
[[service]]
vip = "192.0.2.10"
port = 80
delay_loop = 2
quorum = 2
hysteresis = 1
sorry_server = "10.0.0.9:80"

  [[service.real_server]]
  address = "10.0.0.1"
  inhibit_on_failure = true
  [service.real_server.check]
  type = "http_get"
  url = "/"
  status_code = 200
  connect_timeout = 3
  retry = 3
  delay_before_retry = 4

  [[service.real_server]]
  address = "10.0.0.2"
  [[service.real_server.check]]
  type = "tcp"
  [[service.real_server.check]]
  type = "misc"
  misc_path = "/bin/true"
  misc_dynamic = true
"#;
        let (settings, set) = load_str(text, "h.toml").expect("valid");
        assert_eq!(set.services[0].dests.len(), 2);
        let (key, h) = &settings.health.services[0];
        assert_eq!(*key, set.services[0].key);
        assert_eq!(h.delay_loop, Duration::from_secs(2));
        assert_eq!((h.quorum, h.hysteresis), (2, 1));
        assert_eq!(h.sorry_server, Some("10.0.0.9:80".parse().expect("addr")));
        let d1 = h.dest(Ipv4Addr::new(10, 0, 0, 1), 80).expect("rs1");
        assert!(d1.inhibit_on_failure);
        let c = &d1.checks[0];
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.retry, 3);
        assert_eq!(c.delay_before_retry(), Duration::from_secs(4));
        assert!(
            matches!(&c.kind, CheckKind::HttpGet { urls, .. } if urls[0].status_code == Some(200))
        );
        let d2 = h.dest(Ipv4Addr::new(10, 0, 0, 2), 80).expect("rs2");
        assert_eq!(d2.checks.len(), 2);
        assert_eq!(d2.checks[0].delay_before_retry(), Duration::from_secs(1));
    }

    #[test]
    fn check_through_tunnel_is_read_and_refused_for_nat() {
        let rs = |forward: &str, extra: &str| {
            format!(
                "[[service]]\nvip = \"192.0.2.10\"\nport = 80\n[[service.real_server]]\n\
                 address = \"10.0.0.1\"\nforward = \"{forward}\"\n[service.real_server.check]\n\
                 type = \"tcp\"\ncheck_through_tunnel = true\n{extra}"
            )
        };
        for forward in ["tunnel", "dr"] {
            let (settings, _) = load_str(&rs(forward, ""), "t.toml").expect("valid");
            let h = &settings.health.services[0].1;
            let d = h.dest(Ipv4Addr::new(10, 0, 0, 1), 80).expect("rs");
            assert!(d.checks[0].check_through_tunnel, "{forward}");
        }
        let err = load_str(&rs("nat", ""), "t.toml")
            .expect_err("nat")
            .to_string();
        assert!(
            err.contains("check_through_tunnel")
                && err.contains("192.0.2.10:80")
                && err.contains("10.0.0.1:80"),
            "{err}"
        );
        let err = load_str(&rs("tunnel", "connect_ip = \"10.0.0.5\"\n"), "t.toml")
            .expect_err("connect_ip")
            .to_string();
        assert!(err.contains("connect_ip and check_through_tunnel"), "{err}");
        let misc =
            rs("tunnel", "").replace("type = \"tcp\"", "type = \"misc\"\nmisc_path = \"true\"");
        let err = load_str(&misc, "t.toml").expect_err("misc").to_string();
        assert!(err.contains("only for http_get, ssl_get and tcp"), "{err}");
    }

    #[test]
    fn reads_udp_ping_and_ssl_checks() {
        let text = r#"
[[service]]
vip = "192.0.2.10"
port = 53
protocol = "udp"
[[service.real_server]]
address = "10.0.0.1"
  [[service.real_server.check]]
  type = "udp"
  payload = "01 02"
  require_reply = "0x ff"
  max_reply_length = 100
  delay_loop = 7
  alpha = true
  [[service.real_server.check]]
  type = "ping"
  [[service.real_server.check]]
  type = "ssl_get"
  url = "/"
  enable_sni = true
  virtualhost = "www.example.test"
"#;
        let (settings, _) = load_str(text, "h.toml").unwrap_or_else(|e| panic!("{e}"));
        let checks = &settings.health.services[0].1.per_dest[0].1.checks;
        assert_eq!(
            checks[0].kind,
            CheckKind::Udp(UdpCheck {
                payload: vec![1, 2],
                require_reply: parse_hex("0x ff", true),
                min_reply_length: 0,
                max_reply_length: 100,
            })
        );
        assert_eq!(checks[0].delay_loop, Some(Duration::from_secs(7)));
        assert_eq!(checks[0].alpha, Some(true));
        assert_eq!(checks[1].kind, CheckKind::Ping);
        assert!(matches!(
            &checks[2].kind,
            CheckKind::SslGet { enable_sni: true, virtualhost: Some(v), .. } if v == "www.example.test"
        ));
        let bad = text
            .replace("\"0x ff\"", "\"0q\"")
            .replace("delay_loop = 7", "delay_loop = 0");
        let err = load_str(&bad, "h.toml").expect_err("bad").to_string();
        assert!(err.contains("require_reply: expected true or hex"), "{err}");
        assert!(err.contains("delay_loop: expected seconds from 1"), "{err}");
        let sni = text.replace("type = \"ping\"", "type = \"ping\"\n  enable_sni = true");
        let err = load_str(&sni, "h.toml")
            .expect_err("sni on ping")
            .to_string();
        assert!(err.contains("only for type \"ssl_get\""), "{err}");
    }

    #[test]
    fn rejects_a_bad_check() {
        let text = "[[service]]\nvip = \"192.0.2.10\"\nport = 80\n[[service.real_server]]\naddress = \"10.0.0.1\"\n[service.real_server.check]\ntype = \"smtp\"\n";
        let err = load_str(text, "h.toml").expect_err("bad type").to_string();
        assert!(err.contains("check[0].type"), "{err}");
    }
}
