//! The health-check configuration: plain data, filled from the TOML config
//! ([`crate::control::config`]) or from a keepalived.conf, read by the checkers.
//!
//! Field names and defaults follow keepalived's `virtual_server` / `real_server` /
//! `HTTP_GET` / `SSL_GET` / `TCP_CHECK` / `MISC_CHECK` / `UDP_CHECK` / `PING_CHECK` blocks
//! (keepalived.conf(5)).

use std::net::{IpAddr, SocketAddrV4};
use std::time::Duration;

use crate::model::{ScriptUser, ServiceKey};

/// keepalived's default `connect_timeout`: 5 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// keepalived's default `delay_loop`: 60 s.
pub const DEFAULT_DELAY_LOOP: Duration = Duration::from_secs(60);
/// keepalived's default `delay_before_retry` for HTTP_GET and SSL_GET: 3 s.
pub const DEFAULT_HTTP_DELAY_BEFORE_RETRY: Duration = Duration::from_secs(3);
/// keepalived's default `delay_before_retry` for TCP_CHECK, MISC_CHECK, UDP_CHECK and
/// PING_CHECK: 1 s.
pub const DEFAULT_OTHER_DELAY_BEFORE_RETRY: Duration = Duration::from_secs(1);

/// The health configuration of every service that has one.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HealthConfig {
    /// Per virtual service; services not listed here are not checked (always up).
    pub services: Vec<(ServiceKey, ServiceHealth)>,
}

impl HealthConfig {
    /// Whether any script is configured: a MISC_CHECK, `quorum_up` or `quorum_down`.
    pub fn has_scripts(&self) -> bool {
        self.services.iter().any(|(_, s)| {
            s.quorum_up.is_some()
                || s.quorum_down.is_some()
                || s.per_dest.iter().any(|(_, d)| {
                    d.checks
                        .iter()
                        .any(|c| matches!(c.kind, CheckKind::Misc { .. }))
                })
        })
    }

    /// The health settings of `key`, if it has any.
    pub fn service(&self, key: &ServiceKey) -> Option<&ServiceHealth> {
        self.services.iter().find(|(k, _)| k == key).map(|(_, h)| h)
    }
}

/// Service-level health settings (keepalived's `virtual_server` block).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ServiceHealth {
    /// `delay_loop`: the interval between two checks of a real server (default 60 s).
    pub delay_loop: Duration,
    /// `alpha`: a real server starts down and comes up after its first successful check
    /// (default: starts up).
    pub alpha: bool,
    /// `omega`: at shutdown, a service that still has its quorum loses it: its `quorum_down`
    /// runs (keepalived: "on daemon shutdown consider quorum and RS down notifiers").
    pub omega: bool,
    /// `quorum`: the minimum sum of weights of alive real servers for the service to be up
    /// (default 1).
    pub quorum: u32,
    /// `hysteresis`: the service comes up at `quorum + hysteresis` and goes down below
    /// `quorum - hysteresis` (default 0).
    pub hysteresis: u32,
    /// `quorum_up`: a command run when the quorum is gained.
    pub quorum_up: Option<String>,
    /// `quorum_down`: a command run when the quorum is lost.
    pub quorum_down: Option<String>,
    /// Who runs `quorum_up` and `quorum_down`: the global `script_user` (default: see
    /// [`crate::sys::script::RunAs::resolve`]).
    pub script_user: Option<ScriptUser>,
    /// `sorry_server`: added to the service when the quorum is lost, removed when it is regained.
    pub sorry_server: Option<SocketAddrV4>,
    /// `sorry_server_inhibit`: keep the sorry server in the table with weight 0 instead of
    /// removing it while it is not in use.
    pub sorry_server_inhibit: bool,
    /// `ha_suspend`: suspend the checkers while the VRRP instance is not master (accepted;
    /// acted on once tunlb has VRRP).
    pub ha_suspend: bool,
    /// Per real server `(address, port)`: its checkers and `inhibit_on_failure`.
    pub per_dest: Vec<((IpAddr, u16), DestHealth)>,
}

impl Default for ServiceHealth {
    fn default() -> Self {
        ServiceHealth {
            delay_loop: DEFAULT_DELAY_LOOP,
            alpha: false,
            omega: false,
            quorum: 1,
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            script_user: None,
            sorry_server: None,
            sorry_server_inhibit: false,
            ha_suspend: false,
            per_dest: Vec::new(),
        }
    }
}

impl ServiceHealth {
    /// The health settings of the real server `addr:port`, if it has any.
    pub fn dest(&self, addr: impl Into<IpAddr>, port: u16) -> Option<&DestHealth> {
        let addr = addr.into();
        self.per_dest
            .iter()
            .find(|((a, p), _)| *a == addr && *p == port)
            .map(|(_, h)| h)
    }
}

/// Real-server-level health settings (keepalived's `real_server` block).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct DestHealth {
    /// The checkers; the server is up only when all of them are up (none = always up).
    pub checks: Vec<CheckSpec>,
    /// `inhibit_on_failure`: on failure set the weight to 0 instead of removing the server,
    /// which keeps its established flows.
    pub inhibit_on_failure: bool,
}

/// One checker of a real server (`HTTP_GET`, `SSL_GET`, `TCP_CHECK` or `MISC_CHECK`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckSpec {
    /// What the probe does.
    pub kind: CheckKind,
    /// `connect_ip`: probe this address instead of the real server's (default: the RIP);
    /// IPv4 or IPv6, whatever the real server's family (keepalived).
    #[serde(default)]
    pub connect_ip: Option<IpAddr>,
    /// `connect_port`: probe this port instead of the real server's (default: its port).
    #[serde(default)]
    pub connect_port: Option<u16>,
    /// `bindto`: the local source address of the probe; of the family of the address probed
    /// ([`CheckSpec::family_mismatch`]).
    #[serde(default)]
    pub bindto: Option<IpAddr>,
    /// `bind_port`: the local source port of the probe (default: an ephemeral port).
    #[serde(default)]
    pub bind_port: Option<u16>,
    /// `connect_timeout`: how long a connect (and, for HTTP, the whole request) may take
    /// (default 5 s).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// `retry` (alias `nb_get_retry`): how many times a failed probe is retried before the
    /// server is declared down (default 1, so two failures in a row).
    #[serde(default = "default_retry")]
    pub retry: u32,
    /// `delay_before_retry`: the pause before a retry; `None` = 3 s for HTTP_GET/SSL_GET and
    /// 1 s for the others (see [`CheckSpec::delay_before_retry`]).
    #[serde(default)]
    pub delay_before_retry: Option<Duration>,
    /// `warmup`: the first check runs after a random delay in `0..warmup` (default: the
    /// delay_loop, as keepalived; `Some(0)` disables it).
    #[serde(default)]
    pub warmup: Option<Duration>,
    /// `check_through_tunnel` (a tunlb extension): probe `VIP:port` through the director's own
    /// data path (tunnel or DR frame, pinned to this real server) rather than the real address,
    /// so that a DSR black hole fails the check (see [`super::target`]). Not for NAT servers,
    /// not with `connect_ip`.
    #[serde(default)]
    pub check_through_tunnel: bool,
    /// A `delay_loop` of this check's own (keepalived allows it per checker and per real
    /// server); `None`: the service's.
    #[serde(default)]
    pub delay_loop: Option<Duration>,
    /// An `alpha` of this check's own (per checker or real server); `None`: the service's.
    #[serde(default)]
    pub alpha: Option<bool>,
}

fn default_connect_timeout() -> Duration {
    DEFAULT_CONNECT_TIMEOUT
}

fn default_retry() -> u32 {
    1
}

impl CheckSpec {
    /// A check of `kind` with keepalived's defaults.
    pub fn new(kind: CheckKind) -> Self {
        CheckSpec {
            kind,
            connect_ip: None,
            connect_port: None,
            bindto: None,
            bind_port: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            retry: 1,
            delay_before_retry: None,
            warmup: None,
            check_through_tunnel: false,
            delay_loop: None,
            alpha: None,
        }
    }

    /// Why this check cannot have `check_through_tunnel` on real server `rip`, which is
    /// (`nat`) or is not a NAT server: every refusal, none if it can or does not ask for it.
    /// Both config front ends call it once the check is read and report each refusal at their
    /// position.
    pub fn through_tunnel_refusals(&self, nat: bool, rip: IpAddr) -> Vec<ThroughTunnelRefusal> {
        if !self.check_through_tunnel {
            return Vec::new();
        }
        let carried = matches!(
            self.kind,
            CheckKind::HttpGet { .. } | CheckKind::SslGet { .. } | CheckKind::Tcp
        );
        [
            (nat, ThroughTunnelRefusal::NatServer),
            (self.connect_ip.is_some(), ThroughTunnelRefusal::ConnectIp),
            (!carried, ThroughTunnelRefusal::UnsupportedCheck),
            (rip.is_ipv6(), ThroughTunnelRefusal::Ipv6),
        ]
        .into_iter()
        .filter_map(|(refused, why)| refused.then_some(why))
        .collect()
    }

    /// The address a probe of real server `rip` connects to: `connect_ip`, else `rip`.
    pub fn probed(&self, rip: IpAddr) -> IpAddr {
        self.connect_ip.unwrap_or(rip)
    }

    /// `bindto` of another family than the address probed (`connect_ip`, else real server
    /// `rip`): no socket can do both. Both config front ends call it once the check is read.
    pub fn family_mismatch(&self, rip: IpAddr) -> Option<FamilyMismatch> {
        let to = self.probed(rip);
        let bindto = self.bindto?;
        (bindto.is_ipv6() != to.is_ipv6()).then_some(FamilyMismatch { bindto, to })
    }

    /// The effective `delay_before_retry` (keepalived's per-checker default when unset).
    pub fn delay_before_retry(&self) -> Duration {
        self.delay_before_retry.unwrap_or(match self.kind {
            CheckKind::HttpGet { .. } | CheckKind::SslGet { .. } => DEFAULT_HTTP_DELAY_BEFORE_RETRY,
            CheckKind::Tcp | CheckKind::Misc { .. } | CheckKind::Udp(_) | CheckKind::Ping => {
                DEFAULT_OTHER_DELAY_BEFORE_RETRY
            }
        })
    }
}

impl Default for CheckSpec {
    fn default() -> Self {
        CheckSpec::new(CheckKind::Tcp)
    }
}

/// Why a check cannot have `check_through_tunnel` ([`CheckSpec::through_tunnel_refusals`]).
/// The message names neither the service nor the real server: the front ends put them in
/// front.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ThroughTunnelRefusal {
    /// The real server is a NAT server: its replies come back through the director anyway.
    #[error(
        "NAT real servers answer through the director (lb_kind NAT, forward = \"nat\"): there is \
         no tunnel to check"
    )]
    NatServer,
    /// `connect_ip` is set, but a check through the tunnel connects to the VIP.
    #[error(
        "connect_ip and check_through_tunnel exclude each other (a check through the tunnel \
         connects to the VIP)"
    )]
    ConnectIp,
    /// A misc, UDP or ping check: it sends nothing through the pinned tunnel path.
    #[error(
        "only for http_get, ssl_get and tcp checks (HTTP_GET, SSL_GET and TCP_CHECK): misc, udp \
         and ping checks send nothing through the pinned tunnel path"
    )]
    UnsupportedCheck,
    /// An IPv6 real server: the director's probe pins hold IPv4 flows only for now.
    #[error(
        "not for IPv6 real servers yet (the director pins IPv4 probes only); without it the \
         check probes the real server's own address"
    )]
    Ipv6,
}

/// A check's `bindto` and the address it probes are of different families
/// ([`CheckSpec::family_mismatch`]). The message names neither the service nor the real
/// server: the front ends put them in front.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "bindto {bindto} is {}, the address probed ({to}, connect_ip or the real server) is {}",
    crate::model::family_name(*bindto),
    crate::model::family_name(*to)
)]
pub struct FamilyMismatch {
    /// `bindto`.
    pub bindto: IpAddr,
    /// `connect_ip`, else the real server's address.
    pub to: IpAddr,
}

/// What a checker does.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum CheckKind {
    /// `HTTP_GET`: GET each URL; every one must answer with the expected status and digest.
    HttpGet {
        /// The `url { }` blocks.
        urls: Vec<UrlSpec>,
        /// `virtualhost`: the Host header (default: the address probed).
        #[serde(default)]
        virtualhost: Option<String>,
    },
    /// `SSL_GET`: the same over TLS (any server certificate is accepted, as keepalived does
    /// without a CA file).
    SslGet {
        /// The `url { }` blocks.
        urls: Vec<UrlSpec>,
        /// `virtualhost`: the Host header (and the SNI name with `enable_sni`).
        #[serde(default)]
        virtualhost: Option<String>,
        /// `enable_sni`: send a server name in the handshake: `sni_name`, else the
        /// virtualhost (none when that is unset or an IP address).
        #[serde(default)]
        enable_sni: bool,
        /// `sni_name`: the SNI name to send with `enable_sni` instead of the virtualhost.
        #[serde(default)]
        sni_name: Option<String>,
    },
    /// `TCP_CHECK`: a TCP connect.
    Tcp,
    /// `MISC_CHECK`: run a program; exit 0 = up, anything else = down.
    Misc {
        /// `misc_path`: the command line (run through `/bin/sh -c`).
        path: String,
        /// `misc_timeout`: kill it after this long (default: the delay_loop).
        #[serde(default)]
        timeout: Option<Duration>,
        /// `misc_dynamic`: exit 0 = up, 1 = down, 2+N = up with weight N.
        #[serde(default)]
        dynamic: bool,
        /// `user USER [GROUP]`: who runs it (default: the global `script_user`, else
        /// `keepalived_script` if that user exists, else `nobody`; see [`crate::sys::script`]).
        #[serde(default)]
        user: Option<ScriptUser>,
    },
    /// `UDP_CHECK`: send one datagram; down on an ICMP error (port unreachable, ...) within
    /// `connect_timeout`, or, with `require_reply`, on no fitting reply.
    Udp(UdpCheck),
    /// `PING_CHECK`: an ICMP echo request; up when the echo reply comes within
    /// `connect_timeout`.
    Ping,
}

/// The settings of a `UDP_CHECK`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct UdpCheck {
    /// `payload`: the datagram's bytes (empty: a few bytes of the probe's choosing).
    pub payload: Vec<u8>,
    /// `require_reply [HEX]`: a reply must come (`Some`), and must start with the pattern (if
    /// not empty; compared over the shorter of the two).
    pub require_reply: Option<ReplyPattern>,
    /// `min_reply_length`: the shortest reply accepted with `require_reply` (default 0).
    pub min_reply_length: u16,
    /// `max_reply_length`: the longest reply accepted with `require_reply` (default 255).
    pub max_reply_length: u16,
}

/// A UDP_CHECK reply length range no reply can satisfy ([`UdpCheck::reply_lengths`]). The
/// message names neither the service nor the real server: the front ends put them in front.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("min_reply_length {min} > max_reply_length {max}: the check would always fail")]
pub struct ImpossibleReplyLength {
    /// `min_reply_length`.
    pub min: u16,
    /// `max_reply_length`.
    pub max: u16,
}

impl UdpCheck {
    /// The reply lengths must leave room for a reply: both config front ends call this once
    /// the check is read and report the error at their position.
    pub fn reply_lengths(&self) -> Result<(), ImpossibleReplyLength> {
        if self.min_reply_length > self.max_reply_length {
            return Err(ImpossibleReplyLength {
                min: self.min_reply_length,
                max: self.max_reply_length,
            });
        }
        Ok(())
    }
}

impl Default for UdpCheck {
    fn default() -> Self {
        UdpCheck {
            payload: Vec::new(),
            require_reply: None,
            min_reply_length: 0,
            max_reply_length: 255,
        }
    }
}

/// The bytes a UDP_CHECK reply must start with; a nibble written `X` matches anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplyPattern {
    /// The expected bytes (0 where a nibble is ignored).
    pub bytes: Vec<u8>,
    /// Per byte, the bits that are compared (0xf0 when the low nibble was `X`).
    pub mask: Vec<u8>,
}

impl ReplyPattern {
    /// Whether `reply` matches over the shorter of the pattern and the reply (keepalived).
    pub fn matches(&self, reply: &[u8]) -> bool {
        self.bytes
            .iter()
            .zip(&self.mask)
            .zip(reply)
            .all(|((want, mask), got)| (want ^ got) & mask == 0)
    }
}

/// Reads keepalived's free-form hex string: whitespace-separated words, each read two digits
/// at a time, a word's odd last digit making a byte of its own (`"Ab12f 3"` = `ab 12 0f 03`).
/// With `wildcards`, `x`/`X` stands for a nibble that is not compared. `None`: not hex, or
/// empty.
pub fn parse_hex(text: &str, wildcards: bool) -> Option<ReplyPattern> {
    let mut p = ReplyPattern::default();
    let nibble = |c: char| -> Option<(u8, u8)> {
        match c {
            'x' | 'X' if wildcards => Some((0, 0)),
            _ => c.to_digit(16).map(|d| (d as u8, 0xf)),
        }
    };
    for word in text.split_whitespace() {
        let digits: Vec<char> = word.chars().collect();
        for pair in digits.chunks(2) {
            let (v, m) = match *pair {
                [hi, lo] => {
                    let ((hv, hm), (lv, lm)) = (nibble(hi)?, nibble(lo)?);
                    ((hv << 4) | lv, (hm << 4) | lm)
                }
                [lo] => {
                    let (lv, lm) = nibble(lo)?;
                    (lv, 0xf0 | lm)
                }
                _ => return None,
            };
            p.bytes.push(v);
            p.mask.push(m);
        }
    }
    (!p.bytes.is_empty()).then_some(p)
}

/// One `url { }` block of HTTP_GET / SSL_GET.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UrlSpec {
    /// `path`: the request path, e.g. `/`.
    pub path: String,
    /// `status_code`: the expected status (default: any 2xx, as keepalived).
    #[serde(default)]
    pub status_code: Option<u16>,
    /// `digest`: the expected MD5 of the body, lowercase hex (default: not checked).
    #[serde(default)]
    pub digest: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn check_through_tunnel_refusals() {
        use ThroughTunnelRefusal::{ConnectIp, Ipv6, NatServer, UnsupportedCheck};
        let rip = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1));
        let mut tcp = CheckSpec::new(CheckKind::Tcp);
        tcp.connect_ip = Some(Ipv4Addr::new(10, 0, 0, 5).into());
        assert!(
            tcp.through_tunnel_refusals(true, rip).is_empty(),
            "not asked for"
        );
        tcp.check_through_tunnel = true;
        assert_eq!(
            tcp.through_tunnel_refusals(true, rip),
            [NatServer, ConnectIp]
        );
        tcp.connect_ip = None;
        assert!(tcp.through_tunnel_refusals(false, rip).is_empty());
        let rip6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1));
        assert_eq!(tcp.through_tunnel_refusals(false, rip6), [Ipv6]);
        let mut ping = CheckSpec::new(CheckKind::Ping);
        ping.check_through_tunnel = true;
        assert_eq!(ping.through_tunnel_refusals(false, rip), [UnsupportedCheck]);
        assert!(UnsupportedCheck
            .to_string()
            .contains("only for http_get, ssl_get and tcp"));
    }

    #[test]
    fn bindto_must_be_of_the_family_probed() {
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1));
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1));
        let mut tcp = CheckSpec::new(CheckKind::Tcp);
        assert_eq!(tcp.family_mismatch(v6), None, "no bindto");
        tcp.bindto = Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)));
        assert_eq!(tcp.family_mismatch(v6), None);
        let e = tcp.family_mismatch(v4).expect("an IPv4 real server");
        assert_eq!(
            e.to_string(),
            "bindto 2001:db8::2 is IPv6, the address probed (10.0.1.1, connect_ip or the real \
             server) is IPv4"
        );
        // connect_ip decides the family probed, whatever the real server's.
        tcp.connect_ip = Some(v6);
        assert_eq!(tcp.probed(v4), v6);
        assert_eq!(tcp.family_mismatch(v4), None);
    }

    #[test]
    fn hex_strings_read_as_keepalived_documents() {
        // keepalived.conf(5): "Ab12f 3 456 546443123" = AB 12 0F 03 45 06 54 64 43 12 03.
        let p = parse_hex("Ab12f 3 456 546443123", false).expect("hex");
        assert_eq!(
            p.bytes,
            [0xab, 0x12, 0x0f, 0x03, 0x45, 0x06, 0x54, 0x64, 0x43, 0x12, 0x03]
        );
        assert!(p.mask.iter().all(|m| *m == 0xff));
        assert_eq!(parse_hex("zz", false), None);
        assert_eq!(parse_hex("  ", false), None);
        assert_eq!(parse_hex("1x", false), None, "x only as a wildcard");
    }

    #[test]
    fn reply_patterns_ignore_x_nibbles_and_compare_the_shorter_length() {
        let p = parse_hex("12x4 ff", true).expect("hex");
        assert_eq!(p.mask, [0xff, 0x0f, 0xff]);
        assert!(p.matches(&[0x12, 0x34, 0xff, 0x99]));
        assert!(
            p.matches(&[0x12, 0xa4]),
            "shorter reply: compared over its length"
        );
        assert!(!p.matches(&[0x12, 0x35, 0xff]));
        assert!(!p.matches(&[0x13]));
    }
}
