//! Virtual services and real servers: what the control plane configures and the data path reads.
//!
//! The control plane edits a [`ServiceSet`] (plain data, serde-able, what `adm` and the TOML
//! config describe) and publishes it; the data path reads an immutable snapshot built from it.
//! The limits every front end checks against are here too ([`MAX_WEIGHT`], ...).

use core::fmt;
use core::hash::Hash;
use core::str::FromStr;
use std::net::{IpAddr, Ipv4Addr};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::encap::{Tunnel, TunnelType, DEFAULT_GUE_PORT};

/// The default persistence netmask of an IPv4 service: every client address is its own group.
pub const HOST_NETMASK: Ipv4Addr = Ipv4Addr::BROADCAST;

/// The default persistence prefix length of an IPv6 service (`-M 128`).
pub const HOST_PREFIX_V6: u8 = 128;

/// The address family the types of the model are written for: [`IpAddr`] (both families,
/// what every front end reads and writes and the director's table holds) or [`Ipv4Addr`]
/// (IPv4-only code and tests; `widen` converts).
pub trait Family:
    Copy + Eq + Ord + Hash + fmt::Debug + fmt::Display + Serialize + DeserializeOwned + 'static
{
    /// How a persistence netmask is written for this family: a dotted IPv4 mask, or a
    /// [`Netmask`] that is either that or an IPv6 prefix length.
    type Mask: Copy + Eq + fmt::Debug + Serialize + DeserializeOwned + 'static;

    /// The address as an [`IpAddr`].
    fn ip(self) -> IpAddr;

    /// The mask as the control plane's [`Netmask`].
    fn netmask(mask: Self::Mask) -> Netmask;
}

impl Family for Ipv4Addr {
    type Mask = Ipv4Addr;
    fn ip(self) -> IpAddr {
        IpAddr::V4(self)
    }
    fn netmask(mask: Ipv4Addr) -> Netmask {
        Netmask::V4(mask)
    }
}

impl Family for IpAddr {
    type Mask = Netmask;
    fn ip(self) -> IpAddr {
        self
    }
    fn netmask(mask: Netmask) -> Netmask {
        mask
    }
}

/// A persistence netmask of a service of either family: a dotted mask for IPv4 (`-M
/// 255.255.255.0`), a prefix length `1..=128` for IPv6 (`-M 64`), as ipvsadm. Serialized as a
/// string for IPv4 (as before IPv6 existed) and as a number for IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Netmask {
    /// An IPv4 netmask (contiguous, checked by [`validate::netmask`](super::validate::netmask)).
    V4(Ipv4Addr),
    /// An IPv6 prefix length, `1..=128`.
    V6(u8),
}

impl Netmask {
    /// The default netmask for a service on `vip`: every client is its own group.
    pub fn host(vip: IpAddr) -> Netmask {
        match vip {
            IpAddr::V4(_) => Netmask::V4(HOST_NETMASK),
            IpAddr::V6(_) => Netmask::V6(HOST_PREFIX_V6),
        }
    }

    /// Whether this is the default for its family (ipvsadm then prints no mask).
    pub fn is_host(self) -> bool {
        matches!(
            self,
            Netmask::V4(HOST_NETMASK) | Netmask::V6(HOST_PREFIX_V6)
        )
    }

    /// The IPv4 netmask (all ones if this is an IPv6 prefix length, which an IPv4 service
    /// never has: [`validate`](super::validate) refuses it).
    pub fn v4(self) -> Ipv4Addr {
        match self {
            Netmask::V4(m) => m,
            Netmask::V6(_) => HOST_NETMASK,
        }
    }

    /// The IPv6 prefix length (128 if this is an IPv4 netmask, which an IPv6 service never
    /// has).
    pub fn prefix_len_v6(self) -> u8 {
        match self {
            Netmask::V6(len) => len,
            Netmask::V4(_) => HOST_PREFIX_V6,
        }
    }

    /// Whether it is written for the family of `vip`.
    pub fn fits(self, vip: IpAddr) -> bool {
        matches!(
            (self, vip),
            (Netmask::V4(_), IpAddr::V4(_)) | (Netmask::V6(_), IpAddr::V6(_))
        )
    }
}

impl From<Ipv4Addr> for Netmask {
    fn from(mask: Ipv4Addr) -> Netmask {
        Netmask::V4(mask)
    }
}

impl fmt::Display for Netmask {
    /// As ipvsadm prints it after `mask` / `-M`: dotted for IPv4, the prefix length for IPv6.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Netmask::V4(m) => write!(f, "{m}"),
            Netmask::V6(len) => write!(f, "{len}"),
        }
    }
}

/// `addr:port` as ipvsadm writes an endpoint: `10.0.0.1:80`, `[2001:db8::1]:80`.
pub fn fmt_addr_port(addr: IpAddr, port: impl fmt::Display) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// The family of an address in words, for error messages.
pub fn family_name(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

/// The largest timeout `--set` and `-p` accept: 31 days, as ipvsadm.
pub const MAX_TIMEOUT: u32 = 86_400 * 31;

/// The largest weight a real server can have (`-w`).
pub const MAX_WEIGHT: u32 = 65_535;

/// The largest connection threshold (`-x`, `-y`): `INT_MAX`, as ipvsadm.
pub const MAX_THRESHOLD: u32 = i32::MAX as u32;

/// The smallest MSS `--mss-clamp` accepts (Linux's `TCP_MIN_MSS`).
pub const MIN_MSS_CLAMP: u16 = 88;

/// Transport protocol of a virtual service.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// IP protocol 6; `-t` in ipvsadm.
    Tcp,
    /// IP protocol 17; `-u` in ipvsadm.
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// The protocol for an IP protocol number, if a service can carry it.
    pub fn from_number(n: u8) -> Option<Protocol> {
        match n {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            _ => None,
        }
    }

    /// `TCP` / `UDP`, as ipvsadm prints it.
    pub fn as_upper(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

/// The key of a virtual service: VIP, port and protocol. Port 0 means "all ports"
/// (a persistent port-zero service, as in IPVS).
///
/// `A` is the address family ([`Family`]): [`IpAddr`] in the control plane, [`Ipv4Addr`] in
/// the data path.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(bound = "A: Family")]
pub struct ServiceKey<A: Family = IpAddr> {
    /// The virtual IP address.
    pub vip: A,
    /// The virtual port (0 = any port).
    pub port: u16,
    /// TCP or UDP.
    pub proto: Protocol,
}

impl<A: Family> ServiceKey<A> {
    /// `port`, or this service's port when `port` is 0 (a real server given without one).
    pub fn port_or_own(self, port: u16) -> u16 {
        if port == 0 {
            self.port
        } else {
            port
        }
    }
}

impl<A: Family> ServiceKey<A> {
    /// The same key in the control plane's type.
    pub fn widen(self) -> ServiceKey {
        ServiceKey {
            vip: self.vip.ip(),
            port: self.port,
            proto: self.proto,
        }
    }
}

impl<A: Family> fmt::Display for ServiceKey<A> {
    /// `TCP 10.0.0.1:80`, `TCP [2001:db8::1]:80`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vip = fmt_addr_port(self.vip.ip(), self.port);
        write!(f, "{} {vip}", self.proto.as_upper())
    }
}

/// IPVS scheduling algorithms.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum SchedulerKind {
    /// Round robin.
    Rr,
    /// Weighted round robin (IPVS's gcd-stepped sequence).
    Wrr,
    /// Least connections.
    Lc,
    /// Weighted least connections (ipvsadm's default).
    #[default]
    Wlc,
    /// Source hashing.
    Sh,
    /// Destination hashing.
    Dh,
    /// Shortest expected delay.
    Sed,
    /// Never queue.
    Nq,
    /// Weighted Maglev hashing.
    Mh,
}

impl SchedulerKind {
    /// The ipvsadm name.
    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Lc => "lc",
            SchedulerKind::Wlc => "wlc",
            SchedulerKind::Sh => "sh",
            SchedulerKind::Dh => "dh",
            SchedulerKind::Sed => "sed",
            SchedulerKind::Nq => "nq",
            SchedulerKind::Mh => "mh",
        }
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scheduler name tunlb does not have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown scheduler {0:?}: expected one of rr wrr lc wlc sh dh sed nq mh")]
pub struct UnknownScheduler(pub String);

impl FromStr for SchedulerKind {
    type Err = UnknownScheduler;
    fn from_str(s: &str) -> Result<Self, UnknownScheduler> {
        Ok(match s {
            "rr" => SchedulerKind::Rr,
            "wrr" => SchedulerKind::Wrr,
            "lc" => SchedulerKind::Lc,
            "wlc" => SchedulerKind::Wlc,
            "sh" => SchedulerKind::Sh,
            "dh" => SchedulerKind::Dh,
            "sed" => SchedulerKind::Sed,
            "nq" => SchedulerKind::Nq,
            "mh" => SchedulerKind::Mh,
            other => return Err(UnknownScheduler(other.to_string())),
        })
    }
}

/// How packets reach a real server (ipvsadm `-i`, `-g`, `-m`).
///
/// Serialized flat, as before the tunnel was typed (`method = "tunnel"`, `tun_type`,
/// `tun_port`, `tun_csum`, `gre_key`; `method = "dr"`, `"nat"`) through a private raw type. A tunnel
/// keeps only the options its kind has; the others serialize as their defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(from = "RawForward", into = "RawForward")]
pub enum Forward {
    /// `-i`: encapsulate and send across networks, through this tunnel.
    Tunnel(Tunnel),
    /// `-g`: direct routing: the unchanged packet in an Ethernet frame to the real server's
    /// MAC on a LAN the director shares with it (see [`crate::director::dr`]).
    Dr,
    /// `-m`: masquerading (rewrite the destination address). Arrives in a later issue.
    Nat,
}

/// The serialized form of [`Forward`]: the flat tunnel options the control socket's JSON (and
/// any serde format) carries.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase", tag = "method")]
enum RawForward {
    Tunnel {
        /// ipip, gre or gue.
        #[serde(default)]
        tun_type: TunnelType,
        /// GUE destination port (`--tun-port`), default 6080.
        #[serde(default = "default_tun_port")]
        tun_port: u16,
        /// The GUE UDP or GRE checksum (`--tun-csum`); off (`--tun-nocsum`) by default.
        #[serde(default)]
        tun_csum: bool,
        /// GRE key, if any.
        #[serde(default)]
        gre_key: Option<u32>,
    },
    Dr,
    Nat,
}

fn default_tun_port() -> u16 {
    DEFAULT_GUE_PORT
}

impl From<RawForward> for Forward {
    fn from(raw: RawForward) -> Forward {
        match raw {
            RawForward::Tunnel {
                tun_type,
                tun_port,
                tun_csum,
                gre_key,
            } => Forward::Tunnel(Tunnel::new(tun_type, tun_port, tun_csum, gre_key)),
            RawForward::Dr => Forward::Dr,
            RawForward::Nat => Forward::Nat,
        }
    }
}

impl From<Forward> for RawForward {
    fn from(forward: Forward) -> RawForward {
        match forward {
            Forward::Tunnel(t) => RawForward::Tunnel {
                tun_type: t.kind(),
                tun_port: t.gue_port().unwrap_or(DEFAULT_GUE_PORT),
                tun_csum: t.csum(),
                gre_key: t.gre_key(),
            },
            Forward::Dr => RawForward::Dr,
            Forward::Nat => RawForward::Nat,
        }
    }
}

impl Forward {
    /// A tunnel of kind `tun_type` with the default options (GUE port 6080, no checksum, no
    /// GRE key).
    pub const fn tunnel(tun_type: TunnelType) -> Forward {
        Forward::Tunnel(Tunnel::new(tun_type, DEFAULT_GUE_PORT, false, None))
    }

    /// ipvsadm's "Forward" column: `Tunnel`, `Route`, `Masq`.
    pub fn ipvsadm_name(&self) -> &'static str {
        match self {
            Forward::Tunnel(_) => "Tunnel",
            Forward::Dr => "Route",
            Forward::Nat => "Masq",
        }
    }
}

/// A real server of a service.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(bound = "A: Family")]
pub struct DestConfig<A: Family = IpAddr> {
    /// The real server's address (RIP).
    pub addr: A,
    /// The real server's port; for tunnel and DR it must equal the service port (0 = same).
    pub port: u16,
    /// Scheduling weight, 0..=65535; 0 quiesces the server (no new flows).
    pub weight: u32,
    /// How packets reach it.
    #[serde(flatten)]
    pub forward: Forward,
    /// Upper connection threshold (`-x`), 0 = none.
    #[serde(default)]
    pub u_threshold: u32,
    /// Lower connection threshold (`-y`), 0 = none.
    #[serde(default)]
    pub l_threshold: u32,
}

impl<A: Family> DestConfig<A> {
    /// The port this real server of `service` is reached on: its own for NAT (the service's
    /// when it has none), the service's for TUN and DR, which cannot change it.
    pub fn port_in<B: Family>(&self, service: ServiceKey<B>) -> u16 {
        match self.forward {
            Forward::Nat => service.port_or_own(self.port),
            Forward::Tunnel(_) | Forward::Dr => service.port,
        }
    }
}

/// Persistence of a service (`-p [timeout] [-M netmask]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(bound = "A: Family")]
pub struct Persistence<A: Family = IpAddr> {
    /// Template timeout in seconds (ipvsadm default 300 when `-p` has no value).
    pub timeout: u32,
    /// Client addresses in the same netmask share a template (default 255.255.255.255 for
    /// IPv4, prefix length 128 for IPv6).
    pub netmask: A::Mask,
}

/// What happens to the flows of a real server that fails, per service. IPVS has these as the
/// global sysctls `net.ipv4.vs.expire_nodest_conn` and `expire_quiescent_template`; tunlb sets
/// them per service (`[[service]]` keys and keepalived `virtual_server` keywords of the same
/// names). ipvsadm's `-S` has no place for them: `-R` of such a dump gives the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ExpirePolicy {
    /// `true` (default, IPVS `expire_nodest_conn=1`): the flows of a real server that left
    /// the table are forgotten at their next packet; a TCP packet that is not a SYN is
    /// dropped, anything else (UDP, a new SYN) is rescheduled at once to a live server.
    /// `false` (IPVS 0): while a server is out because its health check failed, its flows
    /// are kept and their packets dropped (`destination_down`); if it comes back before they
    /// time out they go on on the same server. A server deleted by `adm -d` or a reload is
    /// always expired.
    pub expire_nodest_conn: bool,
    /// `true` (IPVS `expire_quiescent_template=1`): a persistence template that points at a
    /// real server with weight 0 (quiesced, e.g. by `inhibit_on_failure`) is expired when a
    /// new connection uses it, so the client's new connections go to a live server. `false`
    /// (default, as IPVS): persistent clients stick to the weight-0 server.
    pub expire_quiescent_template: bool,
}

impl Default for ExpirePolicy {
    fn default() -> Self {
        ExpirePolicy {
            expire_nodest_conn: true,
            expire_quiescent_template: false,
        }
    }
}

impl ExpirePolicy {
    /// Whether this is the default policy (IPVS's sysctl defaults).
    pub fn is_default(&self) -> bool {
        *self == ExpirePolicy::default()
    }
}

/// A virtual service and its real servers.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(bound = "A: Family")]
pub struct ServiceConfig<A: Family = IpAddr> {
    /// VIP, port, protocol.
    #[serde(flatten)]
    pub key: ServiceKey<A>,
    /// Scheduler.
    pub scheduler: SchedulerKind,
    /// Persistence, if `-p` was given.
    #[serde(default)]
    pub persistence: Option<Persistence<A>>,
    /// Clamp the TCP MSS option of client SYNs to this value, if set.
    #[serde(default)]
    pub mss_clamp: Option<u16>,
    /// Real servers, in the order they were added.
    #[serde(default)]
    pub dests: Vec<DestConfig<A>>,
    /// What happens to the flows of a failed real server.
    #[serde(default)]
    pub policy: ExpirePolicy,
}

/// The whole virtual-service table as the control plane sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(bound = "A: Family")]
pub struct ServiceSet<A: Family = IpAddr> {
    /// Services, in the order they were added.
    pub services: Vec<ServiceConfig<A>>,
}

impl<A: Family> ServiceSet<A> {
    /// The same table in the control plane's type.
    pub fn widen(&self) -> ServiceSet {
        ServiceSet {
            services: self.services.iter().map(ServiceConfig::widen).collect(),
        }
    }
}

impl<A: Family> Default for ServiceSet<A> {
    fn default() -> Self {
        ServiceSet {
            services: Vec::new(),
        }
    }
}

impl<A: Family> DestConfig<A> {
    /// The same real server in the control plane's type.
    pub fn widen(&self) -> DestConfig {
        DestConfig {
            addr: self.addr.ip(),
            port: self.port,
            weight: self.weight,
            forward: self.forward,
            u_threshold: self.u_threshold,
            l_threshold: self.l_threshold,
        }
    }
}

impl<A: Family> ServiceConfig<A> {
    /// The same service in the control plane's type (what the listings print).
    pub fn widen(&self) -> ServiceConfig {
        ServiceConfig {
            key: self.key.widen(),
            scheduler: self.scheduler,
            persistence: self.persistence.map(|p| Persistence {
                timeout: p.timeout,
                netmask: A::netmask(p.netmask),
            }),
            mss_clamp: self.mss_clamp,
            dests: self.dests.iter().map(DestConfig::widen).collect(),
            policy: self.policy,
        }
    }
}

/// Idle timeouts of connection entries, in seconds (`--set tcp tcpfin udp`, `-L --timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Timeouts {
    /// Established TCP connections.
    pub tcp: u32,
    /// TCP connections after the client's FIN.
    pub tcpfin: u32,
    /// UDP flows.
    pub udp: u32,
}

impl Default for Timeouts {
    /// IPVS's defaults: 900 s, 120 s, 300 s.
    fn default() -> Self {
        Timeouts {
            tcp: 900,
            tcpfin: 120,
            udp: 300,
        }
    }
}

impl Timeouts {
    /// Applies a `--set`: as in IPVS, a zero leaves that timeout unchanged.
    pub fn update(&mut self, set: &Timeouts) {
        if set.tcp != 0 {
            self.tcp = set.tcp;
        }
        if set.tcpfin != 0 {
            self.tcpfin = set.tcpfin;
        }
        if set.udp != 0 {
            self.udp = set.udp;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(forward: Forward) -> DestConfig {
        DestConfig {
            addr: Ipv4Addr::new(10, 0, 0, 1).into(),
            port: 80,
            weight: 1,
            forward,
            u_threshold: 0,
            l_threshold: 0,
        }
    }

    /// The serialized forms of every forwarding method, as they were before the tunnel was
    /// typed: JSON (the control socket) and TOML, both ways.
    #[test]
    fn forward_serde_forms_are_unchanged() {
        let cases = [
            (
                Forward::tunnel(TunnelType::Ipip),
                r#""method":"tunnel","tun_type":"ipip","tun_port":6080,"tun_csum":false,"gre_key":null"#,
                "method = \"tunnel\"\ntun_type = \"ipip\"\ntun_port = 6080\ntun_csum = false\n",
            ),
            (
                Forward::Tunnel(Tunnel::Gre {
                    key: Some(7),
                    csum: true,
                }),
                r#""method":"tunnel","tun_type":"gre","tun_port":6080,"tun_csum":true,"gre_key":7"#,
                "method = \"tunnel\"\ntun_type = \"gre\"\ntun_port = 6080\ntun_csum = true\ngre_key = 7\n",
            ),
            (
                Forward::Tunnel(Tunnel::Gue {
                    port: 7000,
                    csum: true,
                }),
                r#""method":"tunnel","tun_type":"gue","tun_port":7000,"tun_csum":true,"gre_key":null"#,
                "method = \"tunnel\"\ntun_type = \"gue\"\ntun_port = 7000\ntun_csum = true\n",
            ),
            (Forward::Dr, r#""method":"dr""#, "method = \"dr\"\n"),
            (Forward::Nat, r#""method":"nat""#, "method = \"nat\"\n"),
        ];
        for (forward, json, toml_form) in cases {
            let d = dest(forward);
            let json = format!(
                r#"{{"addr":"10.0.0.1","port":80,"weight":1,{json},"u_threshold":0,"l_threshold":0}}"#
            );
            assert_eq!(serde_json::to_string(&d).unwrap(), json);
            assert_eq!(serde_json::from_str::<DestConfig>(&json).unwrap(), d);
            let toml_form = format!(
                "addr = \"10.0.0.1\"\nport = 80\nweight = 1\n{toml_form}u_threshold = 0\nl_threshold = 0\n"
            );
            assert_eq!(toml::to_string(&d).unwrap(), toml_form);
            assert_eq!(toml::from_str::<DestConfig>(&toml_form).unwrap(), d);
        }
        // Options left out take their defaults.
        let short =
            r#"{"addr":"10.0.0.1","port":80,"weight":1,"method":"tunnel","tun_type":"gue"}"#;
        assert_eq!(
            serde_json::from_str::<DestConfig>(short).unwrap().forward,
            Forward::tunnel(TunnelType::Gue)
        );
    }
}
