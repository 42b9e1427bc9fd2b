//! ipvsadm 1.31's output, byte for byte: `-L` in all its forms, `-c`, `--timeout`, and `-S`.
//!
//! The director fills in a [`Listing`] (the table with its counters) or a list of
//! [`ConnEntry`]s; the functions here print them exactly as ipvsadm prints the kernel's, padding
//! (trailing spaces included), column widths and number abbreviations included. Addresses are
//! always numeric (tunlb never asks DNS); without `-n` ports are named from `/etc/services`
//! ([`PortNames`]), as ipvsadm does.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::control::ops::{Timeouts, HOST_NETMASK};
use crate::director::service::{
    DestConfig, Forward, Protocol, ServiceConfig, ServiceKey, ServiceSet,
};
use crate::encap::TunnelType;

/// The IPVS version ipvsadm prints in the listing header; tunlb implements IPVS 1.2.1's
/// interface.
pub const IPVS_VERSION: &str = "1.2.1";

/// The connection-table size printed when the director does not report one (IPVS's default).
pub const DEFAULT_CONN_TAB_SIZE: u32 = 4096;

/// Cumulative counters of a service or real server (`--stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets from clients.
    pub in_pkts: u64,
    /// Packets to clients (always 0 in TUN and DR mode: replies bypass the director).
    pub out_pkts: u64,
    /// Bytes from clients.
    pub in_bytes: u64,
    /// Bytes to clients.
    pub out_bytes: u64,
}

/// Per-second rates of the same counters (`--rate`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rates {
    /// Connections per second.
    pub cps: u64,
    /// Packets per second from clients.
    pub in_pps: u64,
    /// Packets per second to clients.
    pub out_pps: u64,
    /// Bytes per second from clients.
    pub in_bps: u64,
    /// Bytes per second to clients.
    pub out_bps: u64,
}

/// A real server with its live numbers.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DestStatus {
    /// Its configuration.
    pub config: DestConfig,
    /// Connections in an active state (TCP established).
    pub active_conns: u32,
    /// Other connections (TCP closing, UDP).
    pub inactive_conns: u32,
    /// Persistence templates pointing at it.
    pub persistent_conns: u32,
    /// Cumulative counters.
    pub stats: Stats,
    /// Rates.
    pub rates: Rates,
}

impl DestStatus {
    /// A real server with every number at zero.
    pub fn new(config: DestConfig) -> DestStatus {
        DestStatus {
            config,
            active_conns: 0,
            inactive_conns: 0,
            persistent_conns: 0,
            stats: Stats::default(),
            rates: Rates::default(),
        }
    }
}

/// A virtual service with its live numbers.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceStatus {
    /// The service's configuration. Its `dests` are empty: the real servers are in
    /// [`ServiceStatus::dests`], with their numbers.
    pub config: ServiceConfig,
    /// Its real servers, in the table's order.
    pub dests: Vec<DestStatus>,
    /// Cumulative counters of the whole service.
    pub stats: Stats,
    /// Rates of the whole service.
    pub rates: Rates,
}

impl ServiceStatus {
    /// A service with every number at zero; its real servers move into [`ServiceStatus::dests`].
    pub fn new(mut config: ServiceConfig) -> ServiceStatus {
        let dests = std::mem::take(&mut config.dests)
            .into_iter()
            .map(DestStatus::new)
            .collect();
        ServiceStatus {
            config,
            dests,
            stats: Stats::default(),
            rates: Rates::default(),
        }
    }

    /// The service's configuration with its real servers back inside.
    pub fn to_config(&self) -> ServiceConfig {
        let mut config = self.config.clone();
        config.dests = self.dests.iter().map(|d| d.config.clone()).collect();
        config
    }
}

/// The whole table as `-L` shows it: what the director answers to a list request.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Listing {
    /// The connection table size printed in the header (`size=4096`).
    pub conn_tab_size: u32,
    /// Services, in the table's order.
    pub services: Vec<ServiceStatus>,
}

impl Listing {
    /// A listing of `set` with every counter at zero.
    pub fn from_set(set: &ServiceSet) -> Listing {
        Listing {
            conn_tab_size: DEFAULT_CONN_TAB_SIZE,
            services: set
                .services
                .iter()
                .cloned()
                .map(ServiceStatus::new)
                .collect(),
        }
    }

    /// The configuration part of the listing.
    pub fn to_set(&self) -> ServiceSet {
        ServiceSet {
            services: self.services.iter().map(ServiceStatus::to_config).collect(),
        }
    }

    /// The service with this key, if listed.
    pub fn find(&self, key: &ServiceKey) -> Option<&ServiceStatus> {
        self.services.iter().find(|s| s.config.key == *key)
    }
}

/// One connection entry (`-L -c`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConnEntry {
    /// TCP or UDP.
    pub proto: Protocol,
    /// Seconds until the entry expires.
    pub expires_secs: u32,
    /// IPVS state name: `ESTABLISHED`, `SYN_RECV`, `FIN_WAIT`, `CLOSE`, `NONE` (templates), `UDP`...
    pub state: String,
    /// The client's address and port.
    pub client: SocketAddrV4,
    /// The virtual service's address and port.
    pub vip: SocketAddrV4,
    /// The real server's address and port.
    pub dest: SocketAddrV4,
}

/// How `-L` prints: the listing flags of ipvsadm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListFormat {
    /// `-n`: numeric ports (addresses are always numeric in tunlb).
    pub numeric: bool,
    /// `--stats`: cumulative counters.
    pub stats: bool,
    /// `--rate`: rates.
    pub rate: bool,
    /// `--thresholds`: upper and lower connection thresholds.
    pub thresholds: bool,
    /// `--persistent-conn`: persistence templates per real server.
    pub persistent_conn: bool,
    /// `--tun-info`: tunnel type, port and checksum flag.
    pub tun_info: bool,
    /// `--exact`: numbers in full instead of K/M/G/T.
    pub exact: bool,
    /// `--nosort`: table order instead of sorted by protocol, address, port.
    pub nosort: bool,
}

/// Port names from `/etc/services`, for listings without `-n` and for `-t VIP:http`.
#[derive(Clone, Debug, Default)]
pub struct PortNames {
    by_port: HashMap<(Protocol, u16), String>,
    by_name: HashMap<(Protocol, String), u16>,
}

impl PortNames {
    /// No names at all: every port prints as a number.
    pub fn empty() -> PortNames {
        PortNames::default()
    }

    /// The system's `/etc/services`, or no names if it cannot be read.
    pub fn system() -> PortNames {
        std::fs::read_to_string("/etc/services")
            .map(|text| PortNames::parse(&text))
            .unwrap_or_default()
    }

    /// Parses `services(5)` text: `name port/proto [aliases...] [# comment]`. Like
    /// `getservbyport`, the first name listed for a port wins.
    pub fn parse(text: &str) -> PortNames {
        let mut names = PortNames::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut fields = line.split_whitespace();
            let (Some(name), Some(port_proto)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Some((port, proto)) = port_proto.split_once('/') else {
                continue;
            };
            let proto = match proto {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                _ => continue,
            };
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            names
                .by_port
                .entry((proto, port))
                .or_insert_with(|| name.to_string());
            for alias in std::iter::once(name).chain(fields) {
                names
                    .by_name
                    .entry((proto, alias.to_string()))
                    .or_insert(port);
            }
        }
        names
    }

    /// The port called `name` for `proto`, if known.
    pub fn port(&self, proto: Protocol, name: &str) -> Option<u16> {
        self.by_name.get(&(proto, name.to_string())).copied()
    }

    /// The name of `port` for `proto`, if it has one.
    pub fn name(&self, proto: Protocol, port: u16) -> Option<&str> {
        self.by_port.get(&(proto, port)).map(String::as_str)
    }
}

/// `-L` (whole table): the version header, the title and every service with its real servers.
pub fn list_table(listing: &Listing, fmt: &ListFormat, names: &PortNames) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "IP Virtual Server version {IPVS_VERSION} (size={})",
        listing.conn_tab_size
    );
    title(&mut out, fmt);
    for svc in sorted_services(&listing.services, fmt.nosort) {
        service_entry(&mut out, svc, fmt, names);
    }
    out
}

/// `-L -t VIP:PORT`: the title and one service, without the version header.
pub fn list_service(svc: &ServiceStatus, fmt: &ListFormat, names: &PortNames) -> String {
    let mut out = String::new();
    title(&mut out, fmt);
    service_entry(&mut out, svc, fmt, names);
    out
}

/// `-L -c`: the connection entries, in the order given.
pub fn list_conns(conns: &[ConnEntry], fmt: &ListFormat, names: &PortNames) -> String {
    let mut out = String::from("IPVS connection entries\n");
    let _ = writeln!(
        out,
        "pro expire {:<11} {:<18} {:<18} destination",
        "state", "source", "virtual"
    );
    for c in conns {
        let expire = format!("{:02}:{:02}", c.expires_secs / 60, c.expires_secs % 60);
        let _ = writeln!(
            out,
            "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
            c.proto.as_upper(),
            expire,
            c.state,
            addr_port(*c.client.ip(), c.client.port(), c.proto, fmt.numeric, names),
            addr_port(*c.vip.ip(), c.vip.port(), c.proto, fmt.numeric, names),
            addr_port(*c.dest.ip(), c.dest.port(), c.proto, fmt.numeric, names),
        );
    }
    out
}

/// `-L --timeout`.
pub fn list_timeouts(t: &Timeouts) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        t.tcp, t.tcpfin, t.udp
    )
}

/// `-S`: one ipvsadm command per line, sorted as ipvsadm sorts, readable back by `-R`.
///
/// Exactly ipvsadm 1.31's lines (tunnel servers carry `--tun-type ...`), plus, only when they are
/// set, what ipvsadm cannot save but tunlb must restore: ` -x U` / ` -y L` (thresholds),
/// ` --gre-key K` on real servers and ` --mss-clamp N` on services.
pub fn save_rules(set: &ServiceSet, numeric: bool, names: &PortNames) -> String {
    let mut out = String::new();
    let mut services: Vec<&ServiceConfig> = set.services.iter().collect();
    services.sort_by_key(|s| service_order(&s.key));
    for svc in services {
        let key = svc.key;
        let svc_name = format!(
            "{} {}",
            proto_switch(key.proto),
            addr_port(key.vip, key.port, key.proto, numeric, names)
        );
        let _ = write!(out, "-A {svc_name} -s {}", svc.scheduler);
        if let Some(p) = svc.persistence {
            let _ = write!(out, " -p {}", p.timeout);
            if p.netmask != HOST_NETMASK {
                let _ = write!(out, " -M {}", p.netmask);
            }
        }
        if let Some(mss) = svc.mss_clamp {
            let _ = write!(out, " --mss-clamp {mss}");
        }
        out.push('\n');
        let mut dests: Vec<&DestConfig> = svc.dests.iter().collect();
        dests.sort_by_key(|d| (u32::from(d.addr), d.port));
        for d in dests {
            let dname = addr_port(d.addr, d.port, key.proto, numeric, names);
            let _ = write!(
                out,
                "-a {svc_name} -r {dname} {} -w {}",
                forward_switch(&d.forward),
                d.weight
            );
            if let Forward::Tunnel {
                tun_type,
                tun_port,
                tun_csum,
                gre_key,
            } = d.forward
            {
                let _ = write!(out, " --tun-type {tun_type}");
                let csum = if tun_csum {
                    "--tun-csum"
                } else {
                    "--tun-nocsum"
                };
                match tun_type {
                    TunnelType::Ipip => {}
                    TunnelType::Gue => {
                        let _ = write!(out, " --tun-port {tun_port} {csum}");
                    }
                    TunnelType::Gre => {
                        let _ = write!(out, " {csum}");
                    }
                }
                if let Some(k) = gre_key {
                    let _ = write!(out, " --gre-key {k}");
                }
            }
            if d.u_threshold != 0 {
                let _ = write!(out, " -x {}", d.u_threshold);
            }
            if d.l_threshold != 0 {
                let _ = write!(out, " -y {}", d.l_threshold);
            }
            out.push('\n');
        }
    }
    out
}

/// ipvsadm's order: protocol number, then address, then port.
fn service_order(key: &ServiceKey) -> (u8, u32, u16) {
    (key.proto.number(), u32::from(key.vip), key.port)
}

fn sorted_services(services: &[ServiceStatus], nosort: bool) -> Vec<&ServiceStatus> {
    let mut v: Vec<&ServiceStatus> = services.iter().collect();
    if !nosort {
        v.sort_by_key(|s| service_order(&s.config.key));
    }
    v
}

fn title(out: &mut String, fmt: &ListFormat) {
    const PROT: &str = "Prot LocalAddress:Port";
    if fmt.stats {
        let _ = writeln!(
            out,
            "{PROT:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        );
    } else if fmt.rate {
        let _ = writeln!(
            out,
            "{PROT:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        );
    } else if fmt.thresholds {
        let _ = writeln!(
            out,
            "{PROT:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port",
            "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        );
    } else if fmt.persistent_conn {
        let _ = writeln!(
            out,
            "{PROT:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port",
            "Weight", "PersistConn", "ActiveConn", "InActConn"
        );
    } else if fmt.tun_info {
        out.push_str(
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           \
             Forward TunnelInfo    Weight ActiveConn InActConn\n",
        );
    } else {
        out.push_str(
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           \
             Forward Weight ActiveConn InActConn\n",
        );
    }
}

fn service_entry(out: &mut String, svc: &ServiceStatus, fmt: &ListFormat, names: &PortNames) {
    let cfg = &svc.config;
    let key = cfg.key;
    let mut svc_name = format!(
        "{:<4} {}",
        key.proto.as_upper(),
        addr_port(key.vip, key.port, key.proto, fmt.numeric, names)
    );
    truncate(&mut svc_name, 33);

    if fmt.stats {
        let _ = write!(out, "{svc_name:<33}");
        let s = &svc.stats;
        for n in [s.conns, s.in_pkts, s.out_pkts, s.in_bytes, s.out_bytes] {
            largenum(out, n, fmt.exact);
        }
    } else if fmt.rate {
        let _ = write!(out, "{svc_name:<33}");
        let r = &svc.rates;
        for n in [r.cps, r.in_pps, r.out_pps, r.in_bps, r.out_bps] {
            largenum(out, n, fmt.exact);
        }
    } else {
        let _ = write!(out, "{svc_name} {}", cfg.scheduler);
        if let Some(p) = cfg.persistence {
            let _ = write!(out, " persistent {}", p.timeout);
            if p.netmask != HOST_NETMASK {
                let _ = write!(out, " mask {}", p.netmask);
            }
        }
    }
    out.push('\n');

    let mut dests: Vec<&DestStatus> = svc.dests.iter().collect();
    if !fmt.nosort {
        dests.sort_by_key(|d| (u32::from(d.config.addr), d.config.port));
    }
    for d in dests {
        let mut dname = addr_port(d.config.addr, d.config.port, key.proto, fmt.numeric, names);
        truncate(&mut dname, 28);
        if fmt.stats {
            let _ = write!(out, "  -> {dname:<28}");
            let s = &d.stats;
            for n in [s.conns, s.in_pkts, s.out_pkts, s.in_bytes, s.out_bytes] {
                largenum(out, n, fmt.exact);
            }
            out.push('\n');
        } else if fmt.rate {
            let r = &d.rates;
            let _ = write!(
                out,
                "  -> {dname:<28} {:>8} {:>8} {:>8}",
                r.cps, r.in_pps, r.out_pps
            );
            largenum(out, r.in_bps, fmt.exact);
            largenum(out, r.out_bps, fmt.exact);
            out.push('\n');
        } else if fmt.thresholds {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                d.config.u_threshold, d.config.l_threshold, d.active_conns, d.inactive_conns
            );
        } else if fmt.persistent_conn {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}",
                d.config.weight, d.persistent_conns, d.active_conns, d.inactive_conns
            );
        } else if fmt.tun_info {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<7} {:<13} {:<6} {:<10} {:<10}",
                d.config.forward.ipvsadm_name(),
                tun_info(&d.config.forward),
                d.config.weight,
                d.active_conns,
                d.inactive_conns
            );
        } else {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                d.config.forward.ipvsadm_name(),
                d.config.weight,
                d.active_conns,
                d.inactive_conns
            );
        }
    }
}

/// The `TunnelInfo` column: `ipip`, `gue:6080:-c`, `gre:+c`, or `n/a` for other methods.
fn tun_info(forward: &Forward) -> String {
    match *forward {
        Forward::Tunnel {
            tun_type,
            tun_port,
            tun_csum,
            ..
        } => {
            let csum = if tun_csum { "+c" } else { "-c" };
            match tun_type {
                TunnelType::Ipip => "ipip".to_string(),
                TunnelType::Gue => format!("gue:{tun_port}:{csum}"),
                TunnelType::Gre => format!("gre:{csum}"),
            }
        }
        Forward::Dr | Forward::Nat => "n/a".to_string(),
    }
}

/// ipvsadm's `print_largenum`: 9 columns, abbreviated with K/M/G/T unless `--exact`.
fn largenum(out: &mut String, n: u64, exact: bool) {
    if exact {
        let digits = n.to_string();
        let width = if digits.len() <= 8 {
            9
        } else {
            digits.len() + 1
        };
        let _ = write!(out, "{digits:>width$}");
    } else if n < 100_000_000 {
        let _ = write!(out, "{n:>9}");
    } else if n < 1_000_000_000 {
        let _ = write!(out, "{:>8}K", n / 1_000);
    } else if n < 100_000_000_000 {
        let _ = write!(out, "{:>8}M", n / 1_000_000);
    } else if n < 100_000_000_000_000 {
        let _ = write!(out, "{:>8}G", n / 1_000_000_000);
    } else {
        let _ = write!(out, "{:>8}T", n / 1_000_000_000_000);
    }
}

/// `ADDR:PORT`, the port by name unless numeric (ipvsadm's `addrport_to_anyname`).
fn addr_port(
    addr: Ipv4Addr,
    port: u16,
    proto: Protocol,
    numeric: bool,
    names: &PortNames,
) -> String {
    match names.name(proto, port) {
        Some(name) if !numeric => format!("{addr}:{name}"),
        _ => format!("{addr}:{port}"),
    }
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

fn proto_switch(proto: Protocol) -> &'static str {
    match proto {
        Protocol::Tcp => "-t",
        Protocol::Udp => "-u",
    }
}

fn forward_switch(forward: &Forward) -> &'static str {
    match forward {
        Forward::Tunnel { .. } => "-i",
        Forward::Dr => "-g",
        Forward::Nat => "-m",
    }
}
