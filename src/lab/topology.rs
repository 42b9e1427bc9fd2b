//! The lab's network as data: who lives where, and the `ip` commands that build it.
//!
//! The seed's four nodes sit on one LAN, 192.168.150.0/24: the client (a browser in the seed),
//! the director .11 and the spare node .14 for a future backup director, with the router .1 as
//! the LAN's gateway. Where the real servers live depends on the [`Mode`]:
//!
//! - **TUN** (`-i`): in "the other datacenter", 192.168.160.0/24, behind the router. Both
//!   networks are bridges inside the router's namespace.
//!
//!   ```text
//!    client   192.168.150.2  ─┐
//!    director 192.168.150.11 ─┼─ lan 192.168.150.1  router  192.168.160.1 dc2 ─┬─ rs1 192.168.160.12
//!    backup   192.168.150.14 ─┘                                                 └─ rs2 192.168.160.13
//!   ```
//!
//! - **DR** (`-g`): the seed's own layout, everyone on the LAN; the real servers are .12 and .13.
//!
//!   ```text
//!    client 192.168.150.2, director .11, rs1 .12, rs2 .13, backup .14 ── lan 192.168.150.1 router
//!   ```
//!
//! - **NAT** (`-m`): on a private LAN, 10.0.150.0/24, a bridge inside the director's namespace;
//!   the director (10.0.150.1) is their gateway and nobody else has a route to them.
//!
//!   ```text
//!    client   192.168.150.2  ─┐
//!    director 192.168.150.11 ─┼─ lan 192.168.150.1 router
//!    backup   192.168.150.14 ─┘
//!    director 10.0.150.1 rslan ─┬─ rs1 10.0.150.12
//!                               └─ rs2 10.0.150.13
//!   ```
//!
//! In every mode the VIP 192.168.150.100 is on the LAN, owned by nobody, and answered for by the
//! director (`--announce eth0`).
//!
//! Nothing here runs a command: [`plan`] returns the [`Step`]s, each a few [`Action`]s, and
//! `run.rs` carries them out. Every action names its namespace, so nothing is ever created in
//! the host's namespace: veth pairs are created inside a node's namespace with their peer moved
//! straight into the namespace holding the segment's bridge
//! (`ip -n NODE link add ... peer name ... netns ROUTER`).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::Mode;

/// The virtual service address: on the LAN, owned by nobody, answered for by the director.
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 150, 100);

/// The IPv6 virtual service address of a dual-stack lab (`--ipv6`): on the LAN's IPv6 prefix,
/// owned by nobody, answered for by the director (Neighbor Advertisements).
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x150, 0, 0, 0, 0, 0x100);

/// The prefix length of every segment's IPv6 network.
pub const PREFIX_LEN6: u8 = 64;

/// The virtual service's port.
pub const PORT: u16 = 80;

/// The port the real servers' httpd listens on in NAT mode (the director maps 80 to it).
pub const NAT_PORT: u16 = 8080;

/// The director's interface on the LAN, the one `tunlb director --announce` answers ARP on.
pub const LAN_IF: &str = "eth0";

/// A role in the lab; each gets a namespace `<prefix>-<role>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Sends the requests (the seed's browser).
    Client,
    /// The LAN's gateway and, in TUN mode, the way to the other datacenter.
    Router,
    /// Runs `tunlb director`; in NAT mode also the real servers' gateway.
    Director,
    /// Real server 1: `tunlb httpd`, and `tunlb realserver` in TUN and DR mode.
    Rs1,
    /// Real server 2.
    Rs2,
    /// The seed's spare node .14, for a backup director; nothing runs there yet.
    Backup,
}

impl Role {
    /// Every role, in the order their namespaces are created.
    pub const ALL: [Role; 6] = [
        Role::Client,
        Role::Router,
        Role::Director,
        Role::Rs1,
        Role::Rs2,
        Role::Backup,
    ];

    /// The role's name, the last part of its namespace's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Router => "router",
            Role::Director => "director",
            Role::Rs1 => "rs1",
            Role::Rs2 => "rs2",
            Role::Backup => "backup",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One network: a bridge inside the namespace of its [`holder`](Segment::holder).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    /// The seed's LAN, 192.168.150.0/24 (bridge `lan` in the router).
    Lan,
    /// The other datacenter, 192.168.160.0/24 (bridge `dc2` in the router): TUN mode's real
    /// servers.
    Dc2,
    /// The private real-server LAN of NAT mode, 10.0.150.0/24 (bridge `rslan` in the director).
    Private,
}

impl Segment {
    /// The segments that exist in `mode`, in the order their bridges are created.
    pub fn for_mode(mode: Mode) -> &'static [Segment] {
        match mode {
            Mode::Tun | Mode::Ecmp => &[Segment::Lan, Segment::Dc2],
            Mode::Dr => &[Segment::Lan],
            Mode::Nat => &[Segment::Lan, Segment::Private],
        }
    }

    /// The bridge's name in the holder's namespace.
    pub fn bridge(self) -> &'static str {
        match self {
            Segment::Lan => "lan",
            Segment::Dc2 => "dc2",
            Segment::Private => "rslan",
        }
    }

    /// Whose namespace holds the bridge (and the gateway address).
    pub fn holder(self) -> Role {
        match self {
            Segment::Lan | Segment::Dc2 => Role::Router,
            Segment::Private => Role::Director,
        }
    }

    /// The holder's address on it: every node's gateway.
    pub fn gateway(self) -> Ipv4Addr {
        match self {
            Segment::Lan => Ipv4Addr::new(192, 168, 150, 1),
            Segment::Dc2 => Ipv4Addr::new(192, 168, 160, 1),
            Segment::Private => Ipv4Addr::new(10, 0, 150, 1),
        }
    }

    /// The segment's IPv6 network in a dual-stack lab (`--ipv6`): its IPv4 network's third
    /// octet (and in NAT mode the first) written into a 2001:db8::/32 documentation prefix.
    fn prefix6(self) -> [u16; 4] {
        match self {
            Segment::Lan => [0x2001, 0xdb8, 0x150, 0],
            Segment::Dc2 => [0x2001, 0xdb8, 0x160, 0],
            Segment::Private => [0x2001, 0xdb8, 0x10, 0x150],
        }
    }

    /// Host `host` of the segment's IPv6 network: the IPv4 host number's decimal digits as
    /// the last group (.11 is `::11`), so the two addresses of a node read alike.
    pub fn host6(self, host: u8) -> Ipv6Addr {
        let [a, b, c, d] = self.prefix6();
        let digits = host.to_string();
        let last = u16::from_str_radix(&digits, 16).unwrap_or(0);
        Ipv6Addr::new(a, b, c, d, 0, 0, 0, last)
    }

    /// The holder's IPv6 address on it: every node's IPv6 gateway.
    pub fn gateway6(self) -> Ipv6Addr {
        self.host6(1)
    }

    /// The prefix length of the segment (all are /24).
    pub fn prefix_len(self) -> u8 {
        24
    }

    /// What it is, for the log.
    pub fn describe(self) -> &'static str {
        match self {
            Segment::Lan => "the LAN 192.168.150.0/24",
            Segment::Dc2 => "the other datacenter's network 192.168.160.0/24",
            Segment::Private => "the real servers' private LAN 10.0.150.0/24",
        }
    }
}

/// A node plugged into one segment with one interface, `eth0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    /// Who it is.
    pub role: Role,
    /// Its address on `eth0`.
    pub addr: Ipv4Addr,
    /// The segment `eth0` is plugged into.
    pub segment: Segment,
    /// The name of the other end of its veth, a port of the segment's bridge.
    pub bridge_port: &'static str,
}

/// The nodes on the LAN in every mode, in the order they are plugged in.
const LAN_NODES: [Node; 3] = [
    Node {
        role: Role::Client,
        addr: Ipv4Addr::new(192, 168, 150, 2),
        segment: Segment::Lan,
        bridge_port: "to-client",
    },
    Node {
        role: Role::Director,
        addr: Ipv4Addr::new(192, 168, 150, 11),
        segment: Segment::Lan,
        bridge_port: "to-director",
    },
    Node {
        role: Role::Backup,
        addr: Ipv4Addr::new(192, 168, 150, 14),
        segment: Segment::Lan,
        bridge_port: "to-backup",
    },
];

/// The real servers' segment in `mode`.
pub fn real_server_segment(mode: Mode) -> Segment {
    match mode {
        Mode::Tun | Mode::Ecmp => Segment::Dc2,
        Mode::Dr => Segment::Lan,
        Mode::Nat => Segment::Private,
    }
}

/// Every node but the router in `mode`, in the order they are plugged in: the LAN's client,
/// director and backup, then the real servers (.12 and .13 of their segment).
pub fn nodes(mode: Mode) -> [Node; 5] {
    let segment = real_server_segment(mode);
    let [a, b, c, _] = segment.gateway().octets();
    let [client, director, backup] = LAN_NODES;
    let rs = |role, host, bridge_port| Node {
        role,
        addr: Ipv4Addr::new(a, b, c, host),
        segment,
        bridge_port,
    };
    [
        client,
        director,
        backup,
        rs(Role::Rs1, 12, "to-rs1"),
        rs(Role::Rs2, 13, "to-rs2"),
    ]
}

/// The node playing `role` in `mode` (the router is not a [`Node`]: it has bridges instead).
pub fn node(mode: Mode, role: Role) -> Option<Node> {
    nodes(mode).into_iter().find(|n| n.role == role)
}

/// The address of the node playing `role` in `mode`; the router's is its LAN address.
pub fn addr(mode: Mode, role: Role) -> Ipv4Addr {
    node(mode, role).map_or(Segment::Lan.gateway(), |n| n.addr)
}

/// The IPv6 address of the node playing `role` in `mode` in a dual-stack lab (`--ipv6`): its
/// IPv4 host number on its segment's IPv6 prefix; the router's is its LAN address.
pub fn addr6(mode: Mode, role: Role) -> Ipv6Addr {
    match node(mode, role) {
        Some(n) => n.segment.host6(n.addr.octets()[3]),
        None => Segment::Lan.gateway6(),
    }
}

/// The port the real servers' httpd listens on in `mode`: the VIP's [`PORT`], except in NAT
/// mode, where the director maps it to [`NAT_PORT`].
pub fn real_port(mode: Mode) -> u16 {
    match mode {
        Mode::Tun | Mode::Dr | Mode::Ecmp => PORT,
        Mode::Nat => NAT_PORT,
    }
}

/// The real servers' roles, in the order they are added to the service.
pub const REAL_SERVERS: [Role; 2] = [Role::Rs1, Role::Rs2];
/// Namespace names for one lab: `<prefix>-<role>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

/// Why a `--prefix` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrefixError {
    /// Empty, or longer than [`Names::MAX_PREFIX`].
    #[error("the prefix must have 1 to {max} characters, not {0}", max = Names::MAX_PREFIX)]
    Length(usize),
    /// A character other than ASCII letters, digits, `_` and `-` (or a leading `-`).
    #[error("the prefix {0:?} may only have ASCII letters, digits, '_' and '-' (not first)")]
    Chars(String),
}

impl Names {
    /// The prefix of `tunlb lab` without `--prefix`.
    pub const DEFAULT_PREFIX: &'static str = "tunlb";

    /// The longest prefix accepted.
    pub const MAX_PREFIX: usize = 40;

    /// Checks `prefix` (it becomes part of file and namespace names).
    pub fn new(prefix: &str) -> Result<Names, PrefixError> {
        if prefix.is_empty() || prefix.len() > Self::MAX_PREFIX {
            return Err(PrefixError::Length(prefix.len()));
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if !prefix.chars().all(ok) || prefix.starts_with('-') {
            return Err(PrefixError::Chars(prefix.to_owned()));
        }
        Ok(Names {
            prefix: prefix.to_owned(),
        })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The namespace of `role`, e.g. `tunlb-client`.
    pub fn ns(&self, role: Role) -> String {
        format!("{}-{}", self.prefix, role.as_str())
    }

    /// Every namespace of the lab, in [`Role::ALL`] order.
    pub fn all(&self) -> Vec<String> {
        Role::ALL.iter().map(|&r| self.ns(r)).collect()
    }
}

/// One thing done to the network; every variant names the namespace it acts in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `ip netns add NS`.
    AddNamespace(String),
    /// `ip -n NS ARGS...`.
    Ip {
        /// The namespace.
        ns: String,
        /// The arguments after `ip -n NS`.
        args: Vec<String>,
    },
    /// Write `value` to `/proc/sys/<key with dots as slashes>` inside `ns`.
    Sysctl {
        /// The namespace.
        ns: String,
        /// A key such as `net.ipv4.ip_forward`.
        key: String,
        /// The value to write.
        value: &'static str,
    },
}

impl Action {
    /// The namespace the action acts in.
    pub fn ns(&self) -> &str {
        match self {
            Action::AddNamespace(ns) | Action::Ip { ns, .. } | Action::Sysctl { ns, .. } => ns,
        }
    }

    pub(crate) fn ip(ns: &str, args: &str) -> Action {
        Action::Ip {
            ns: ns.to_owned(),
            args: args.split_whitespace().map(str::to_owned).collect(),
        }
    }

    pub(crate) fn sysctl(ns: &str, key: &str, value: &'static str) -> Action {
        Action::Sysctl {
            ns: ns.to_owned(),
            key: key.to_owned(),
            value,
        }
    }
}

impl fmt::Display for Action {
    /// The action as the shell command that does the same.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::AddNamespace(ns) => write!(f, "ip netns add {ns}"),
            Action::Ip { ns, args } => write!(f, "ip -n {ns} {}", args.join(" ")),
            Action::Sysctl { ns, key, value } => {
                write!(f, "ip netns exec {ns} sysctl -w {key}={value}")
            }
        }
    }
}

/// A step of the build: what it does, in words for the log, and the actions that do it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Printed as `[lab] <what>` before the actions run.
    pub what: String,
    /// Run in order; the first failure fails the step.
    pub actions: Vec<Action>,
}

/// Everything that builds the lab's network for `names` in `mode`, in order; no process is
/// started.
///
/// Each namespace gets loopback up and reverse-path filtering off (new namespaces copy the
/// host's `rp_filter`, and a strict one would drop packets that arrive on another interface
/// than the one their source is routed through: in TUN and DR mode the real servers' replies
/// from the VIP, in NAT mode the client packets the director writes back into the kernel from
/// its TUN, see `director::nat`). The router forwards; the director turns forwarding on itself.
pub fn plan(names: &Names, mode: Mode) -> Vec<Step> {
    let mut steps = Vec::new();
    for role in Role::ALL {
        let ns = names.ns(role);
        steps.push(Step {
            what: format!("creating namespace {ns}"),
            actions: vec![
                Action::AddNamespace(ns.clone()),
                Action::ip(&ns, "link set dev lo up"),
                Action::sysctl(&ns, "net.ipv4.conf.all.rp_filter", "0"),
                Action::sysctl(&ns, "net.ipv4.conf.default.rp_filter", "0"),
            ],
        });
    }
    for &segment in Segment::for_mode(mode) {
        let holder = names.ns(segment.holder());
        let (bridge, gw, len) = (segment.bridge(), segment.gateway(), segment.prefix_len());
        steps.push(Step {
            what: format!(
                "creating {}: bridge {bridge} with {gw}/{len} in {holder}",
                segment.describe()
            ),
            actions: vec![
                Action::ip(&holder, &format!("link add name {bridge} type bridge")),
                Action::ip(&holder, &format!("addr add {gw}/{len} dev {bridge}")),
                Action::ip(&holder, &format!("link set dev {bridge} up")),
            ],
        });
    }
    let router = names.ns(Role::Router);
    steps.push(Step {
        what: format!("turning on IPv4 forwarding in {router}"),
        actions: vec![Action::sysctl(&router, "net.ipv4.ip_forward", "1")],
    });
    for node in nodes(mode) {
        let ns = names.ns(node.role);
        let holder = names.ns(node.segment.holder());
        let (bridge, gw, len) = (
            node.segment.bridge(),
            node.segment.gateway(),
            node.segment.prefix_len(),
        );
        let (addr, port) = (node.addr, node.bridge_port);
        steps.push(Step {
            what: format!("plugging {ns} (eth0 {addr}/{len}, gateway {gw}) into bridge {bridge}"),
            actions: vec![
                Action::ip(
                    &ns,
                    &format!("link add name eth0 type veth peer name {port} netns {holder}"),
                ),
                Action::ip(&ns, &format!("addr add {addr}/{len} dev eth0")),
                Action::ip(&ns, "link set dev eth0 up"),
                Action::ip(&holder, &format!("link set dev {port} master {bridge}")),
                Action::ip(&holder, &format!("link set dev {port} up")),
                Action::ip(&ns, &format!("route add default via {gw}")),
            ],
        });
    }
    steps
}

/// What `--ipv6` adds to [`plan`]'s network, run after it: IPv6 forwarding in the router and
/// the director (NAT66 routes the real servers' answers through the director's kernel), an
/// IPv6 address on each bridge and each node's `eth0` (`nodad`: usable at once, no duplicate
/// address detection wait) and each node's IPv6 default route to its segment's holder.
pub fn plan_ipv6(names: &Names, mode: Mode) -> Vec<Step> {
    let (router, director) = (names.ns(Role::Router), names.ns(Role::Director));
    let mut steps = vec![Step {
        what: format!("turning on IPv6 forwarding in {router} and {director}"),
        actions: vec![
            Action::sysctl(&router, "net.ipv6.conf.all.forwarding", "1"),
            Action::sysctl(&director, "net.ipv6.conf.all.forwarding", "1"),
        ],
    }];
    for &segment in Segment::for_mode(mode) {
        let holder = names.ns(segment.holder());
        let (bridge, gw) = (segment.bridge(), segment.gateway6());
        steps.push(Step {
            what: format!("adding {gw}/{PREFIX_LEN6} to bridge {bridge} in {holder}"),
            actions: vec![Action::ip(
                &holder,
                &format!("-6 addr add {gw}/{PREFIX_LEN6} dev {bridge} nodad"),
            )],
        });
    }
    for node in nodes(mode) {
        let ns = names.ns(node.role);
        let (addr, gw) = (addr6(mode, node.role), node.segment.gateway6());
        steps.push(Step {
            what: format!("giving {ns} eth0 {addr}/{PREFIX_LEN6}, IPv6 gateway {gw}"),
            actions: vec![
                Action::ip(
                    &ns,
                    &format!("-6 addr add {addr}/{PREFIX_LEN6} dev eth0 nodad"),
                ),
                Action::ip(&ns, &format!("-6 route add default via {gw}")),
            ],
        });
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefix_dash_role_and_bad_prefixes_are_refused() {
        let names = Names::new(Names::DEFAULT_PREFIX).unwrap();
        assert_eq!(
            names.all(),
            [
                "tunlb-client",
                "tunlb-router",
                "tunlb-director",
                "tunlb-rs1",
                "tunlb-rs2",
                "tunlb-backup"
            ]
        );
        assert_eq!(
            Names::new("tlbt123x4").unwrap().ns(Role::Rs2),
            "tlbt123x4-rs2"
        );
        assert_eq!(Names::new(""), Err(PrefixError::Length(0)));
        assert_eq!(Names::new(&"a".repeat(41)), Err(PrefixError::Length(41)));
        for bad in ["a/b", "../x", "-x", "a b", "é"] {
            assert!(
                matches!(Names::new(bad), Err(PrefixError::Chars(_))),
                "{bad}"
            );
        }
    }

    const MODES: [Mode; 3] = [Mode::Tun, Mode::Dr, Mode::Nat];

    #[test]
    fn plan_acts_only_inside_the_labs_namespaces_after_creating_them() {
        let names = Names::new("p").unwrap();
        let all = names.all();
        for mode in MODES {
            let mut created = Vec::new();
            for step in plan(&names, mode) {
                for action in &step.actions {
                    if let Action::AddNamespace(ns) = action {
                        created.push(ns.clone());
                    }
                    assert!(
                        created.iter().any(|c| c == action.ns()),
                        "`{action}` acts in a namespace not created yet"
                    );
                    if let Action::Ip { args, .. } = action {
                        // A veth's peer goes into the router, or in NAT mode into the director
                        // (the private LAN's bridge), never elsewhere.
                        if let Some(i) = args.iter().position(|a| a == "netns") {
                            let peer = args.get(i + 1).cloned().unwrap_or_default();
                            let holders = [names.ns(Role::Router), names.ns(Role::Director)];
                            assert!(holders.contains(&peer), "{action}");
                        }
                    }
                }
            }
            assert_eq!(created, all, "{mode:?}");
        }
    }

    #[test]
    fn interface_names_fit_ifnamsiz() {
        for mode in MODES {
            for step in plan(&Names::new(&"x".repeat(Names::MAX_PREFIX)).unwrap(), mode) {
                for action in step.actions {
                    if let Action::Ip { args, .. } = action {
                        for pair in args.windows(2) {
                            if ["name", "dev", "master"].contains(&pair[0].as_str()) {
                                assert!(pair[1].len() <= 15, "{}", pair[1]);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_seed_addresses() {
        for mode in MODES {
            assert_eq!(addr(mode, Role::Client), Ipv4Addr::new(192, 168, 150, 2));
            assert_eq!(addr(mode, Role::Router), Ipv4Addr::new(192, 168, 150, 1));
            assert_eq!(addr(mode, Role::Director), Ipv4Addr::new(192, 168, 150, 11));
            assert_eq!(addr(mode, Role::Backup), Ipv4Addr::new(192, 168, 150, 14));
        }
        let rs = |mode| (addr(mode, Role::Rs1), addr(mode, Role::Rs2));
        assert_eq!(
            rs(Mode::Tun),
            (
                Ipv4Addr::new(192, 168, 160, 12),
                Ipv4Addr::new(192, 168, 160, 13)
            )
        );
        // DR: the seed's own layout, the real servers on the LAN.
        assert_eq!(
            rs(Mode::Dr),
            (
                Ipv4Addr::new(192, 168, 150, 12),
                Ipv4Addr::new(192, 168, 150, 13)
            )
        );
        assert_eq!(
            rs(Mode::Nat),
            (Ipv4Addr::new(10, 0, 150, 12), Ipv4Addr::new(10, 0, 150, 13))
        );
        assert_eq!(VIP, Ipv4Addr::new(192, 168, 150, 100));
        assert_eq!(
            (
                real_port(Mode::Tun),
                real_port(Mode::Dr),
                real_port(Mode::Nat)
            ),
            (80, 80, 8080)
        );
        let plan = plan(&Names::new("tunlb").unwrap(), Mode::Tun);
        let director = plan
            .iter()
            .find(|s| s.what.starts_with("plugging tunlb-director"))
            .unwrap();
        let commands: Vec<String> = director.actions.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            commands,
            [
                "ip -n tunlb-director link add name eth0 type veth peer name to-director \
                 netns tunlb-router",
                "ip -n tunlb-director addr add 192.168.150.11/24 dev eth0",
                "ip -n tunlb-director link set dev eth0 up",
                "ip -n tunlb-router link set dev to-director master lan",
                "ip -n tunlb-router link set dev to-director up",
                "ip -n tunlb-director route add default via 192.168.150.1",
            ]
        );
    }

    #[test]
    fn ipv6_addresses_mirror_the_ipv4_ones() {
        let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        assert_eq!(VIP6, v6("2001:db8:150::100"));
        assert_eq!(addr6(Mode::Tun, Role::Director), v6("2001:db8:150::11"));
        assert_eq!(addr6(Mode::Tun, Role::Router), v6("2001:db8:150::1"));
        assert_eq!(addr6(Mode::Tun, Role::Rs1), v6("2001:db8:160::12"));
        assert_eq!(addr6(Mode::Dr, Role::Rs2), v6("2001:db8:150::13"));
        assert_eq!(addr6(Mode::Nat, Role::Rs1), v6("2001:db8:10:150::12"));
        assert_eq!(Segment::Private.gateway6(), v6("2001:db8:10:150::1"));
        let names = Names::new("t").unwrap();
        let rs1 = plan_ipv6(&names, Mode::Nat)
            .into_iter()
            .find(|s| s.what.starts_with("giving t-rs1"))
            .unwrap();
        let commands: Vec<String> = rs1.actions.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            commands,
            [
                "ip -n t-rs1 -6 addr add 2001:db8:10:150::12/64 dev eth0 nodad",
                "ip -n t-rs1 -6 route add default via 2001:db8:10:150::1",
            ]
        );
        // Everything acts in the namespaces `plan` created.
        for mode in MODES {
            let all = names.all();
            for step in plan_ipv6(&names, mode) {
                for action in &step.actions {
                    assert!(all.iter().any(|ns| ns == action.ns()), "{action}");
                }
            }
        }
    }

    /// DR builds only the LAN; NAT puts the real servers on a bridge in the director, which is
    /// their gateway.
    #[test]
    fn dr_has_one_lan_and_nat_a_private_lan_in_the_director() {
        let names = Names::new("t").unwrap();
        let bridges = |mode| -> Vec<String> {
            plan(&names, mode)
                .iter()
                .filter(|s| s.what.contains(": bridge "))
                .map(|s| s.what.clone())
                .collect()
        };
        assert_eq!(
            bridges(Mode::Dr),
            ["creating the LAN 192.168.150.0/24: bridge lan with 192.168.150.1/24 in t-router"]
        );
        assert_eq!(
            bridges(Mode::Nat),
            [
                "creating the LAN 192.168.150.0/24: bridge lan with 192.168.150.1/24 in t-router",
                "creating the real servers' private LAN 10.0.150.0/24: bridge rslan with \
                 10.0.150.1/24 in t-director",
            ]
        );
        // NAT's host requirement (see `director::nat`): rp_filter not strict in the director.
        let director = plan(&names, Mode::Nat)
            .into_iter()
            .find(|s| s.what == "creating namespace t-director")
            .unwrap();
        assert!(director.actions.contains(&Action::sysctl(
            "t-director",
            "net.ipv4.conf.all.rp_filter",
            "0"
        )));
        let rs1 = plan(&names, Mode::Nat)
            .into_iter()
            .find(|s| s.what.starts_with("plugging t-rs1"))
            .unwrap();
        let commands: Vec<String> = rs1.actions.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            commands,
            [
                "ip -n t-rs1 link add name eth0 type veth peer name to-rs1 netns t-director",
                "ip -n t-rs1 addr add 10.0.150.12/24 dev eth0",
                "ip -n t-rs1 link set dev eth0 up",
                "ip -n t-director link set dev to-rs1 master rslan",
                "ip -n t-director link set dev to-rs1 up",
                "ip -n t-rs1 route add default via 10.0.150.1",
            ]
        );
    }
}
