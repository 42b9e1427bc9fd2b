//! ipvsadm 1.31's output, byte for byte: `-L` in all its forms, `-c`, `--timeout`, and `-S`.
//!
//! The director fills in a [`Listing`] (the table with its counters) or a list of
//! [`ConnEntry`]s; the functions here print them exactly as ipvsadm prints the kernel's, padding
//! (trailing spaces included), column widths and number abbreviations included. Addresses are
//! always numeric (tunlb never asks DNS); without `-n` ports are named from `/etc/services`
//! ([`PortNames`]), as ipvsadm does.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::encap::Tunnel;
use crate::model::Timeouts;
use crate::model::{DestConfig, Forward, Protocol, ServiceConfig, ServiceKey, ServiceSet};

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
    /// The bounded state's fill and evictions (`adm -L --json` shows it; the text listing
    /// stays ipvsadm's). `None` from a director that does not report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn_table: Option<Box<ConnTableStatus>>,
}

/// The connection tables, templates and fragment tracker: how full, and what was evicted.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConnTableStatus {
    /// Flows in the workers' connection tables.
    pub entries: u64,
    /// Most flows they hold (`--max-conns` × workers).
    pub capacity: u64,
    /// Above this many flows (7/8 of the capacity) new flows evict unconfirmed ones.
    pub high_water: u64,
    /// Flows in the shared NAT flow table.
    pub nat_entries: u64,
    /// Flows evicted because they had expired (found while making room).
    pub evicted_expired: u64,
    /// Never-confirmed flows evicted above the high-water mark.
    pub evicted_unconfirmed: u64,
    /// New flows refused, the table full of confirmed flows (`conn_table_full` drops).
    pub refused_full: u64,
    /// Persistence templates held.
    pub templates: u64,
    /// Most templates held (`--max-templates`).
    pub template_capacity: u64,
    /// Idle templates evicted for new ones.
    pub templates_evicted: u64,
    /// New templates not made (table full of templates in use).
    pub templates_refused: u64,
    /// Fragmented datagrams tracked.
    pub fragments: u64,
    /// Most datagrams tracked (`--max-fragments`).
    pub fragment_capacity: u64,
    /// Oldest datagrams evicted for new ones.
    pub fragments_evicted: u64,
    /// ICMP errors not sent over the rate limit.
    pub icmp_rate_limited: u64,
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
            conn_table: None,
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
    pub client: SocketAddr,
    /// The virtual service's address and port.
    pub vip: SocketAddr,
    /// The real server's address and port.
    pub dest: SocketAddr,
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
            addr_port(c.client.ip(), c.client.port(), c.proto, fmt.numeric, names),
            addr_port(c.vip.ip(), c.vip.port(), c.proto, fmt.numeric, names),
            addr_port(c.dest.ip(), c.dest.port(), c.proto, fmt.numeric, names),
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
            if !p.netmask.is_host() {
                let _ = write!(out, " -M {}", p.netmask);
            }
        }
        if let Some(mss) = svc.mss_clamp {
            let _ = write!(out, " --mss-clamp {mss}");
        }
        out.push('\n');
        let mut dests: Vec<&DestConfig> = svc.dests.iter().collect();
        dests.sort_by_key(|d| (addr_order(d.addr), d.port));
        for d in dests {
            let dname = addr_port(d.addr, d.port, key.proto, numeric, names);
            let _ = write!(
                out,
                "-a {svc_name} -r {dname} {} -w {}",
                forward_switch(&d.forward),
                d.weight
            );
            if let Forward::Tunnel(tunnel) = d.forward {
                let _ = write!(out, " --tun-type {}", tunnel.kind());
                let csum = |on: bool| if on { "--tun-csum" } else { "--tun-nocsum" };
                match tunnel {
                    Tunnel::Ipip => {}
                    Tunnel::Gue { port, csum: on } => {
                        let _ = write!(out, " --tun-port {port} {}", csum(on));
                    }
                    Tunnel::Gre { key, csum: on } => {
                        let _ = write!(out, " {}", csum(on));
                        if let Some(k) = key {
                            let _ = write!(out, " --gre-key {k}");
                        }
                    }
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

/// libipvs's order of services: family (IPv4 first), protocol number, address, port.
fn service_order(key: &ServiceKey) -> (bool, u8, u128, u16) {
    let (v6, addr) = addr_order(key.vip);
    (v6, key.proto.number(), addr, key.port)
}

/// An address as libipvs compares it: family (IPv4 first), then the address as a number.
fn addr_order(addr: IpAddr) -> (bool, u128) {
    match addr {
        IpAddr::V4(a) => (false, u32::from(a).into()),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
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
    // ipvsadm cuts the names of IPv4 services (and of their real servers, below) only.
    let v4 = key.vip.is_ipv4();
    if v4 {
        truncate(&mut svc_name, 33);
    }

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
            if !p.netmask.is_host() {
                let _ = write!(out, " mask {}", p.netmask);
            }
        }
    }
    out.push('\n');

    let mut dests: Vec<&DestStatus> = svc.dests.iter().collect();
    if !fmt.nosort {
        dests.sort_by_key(|d| (addr_order(d.config.addr), d.config.port));
    }
    for d in dests {
        let mut dname = addr_port(d.config.addr, d.config.port, key.proto, fmt.numeric, names);
        if v4 {
            truncate(&mut dname, 28);
        }
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
        Forward::Tunnel(tunnel) => {
            let csum = if tunnel.csum() { "+c" } else { "-c" };
            match tunnel {
                Tunnel::Ipip => "ipip".to_string(),
                Tunnel::Gue { port, .. } => format!("gue:{port}:{csum}"),
                Tunnel::Gre { .. } => format!("gre:{csum}"),
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

/// `ADDR:PORT` or `[IPV6]:PORT`, the port by name unless numeric (ipvsadm's
/// `addrport_to_anyname`).
fn addr_port(addr: IpAddr, port: u16, proto: Protocol, numeric: bool, names: &PortNames) -> String {
    match names.name(proto, port) {
        Some(name) if !numeric => crate::model::fmt_addr_port(addr, name),
        _ => crate::model::fmt_addr_port(addr, port),
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
        Forward::Tunnel(_) => "-i",
        Forward::Dr => "-g",
        Forward::Nat => "-m",
    }
}

#[cfg(test)]
mod tests {
    //! Expected texts are real ipvsadm output (from its printf formats and published listings),
    //! trailing spaces included.

    use super::*;
    use crate::control::adm::{parse, parse_restore};
    use crate::model::Timeouts;

    fn table(lines: &[&str]) -> ServiceSet {
        let mut set = ServiceSet::default();
        for l in lines {
            let args: Vec<std::ffi::OsString> = l.split_whitespace().map(Into::into).collect();
            set.apply(parse(&args).expect(l).edit().expect(l)).expect(l);
        }
        set
    }

    fn numeric() -> ListFormat {
        ListFormat {
            numeric: true,
            ..ListFormat::default()
        }
    }

    fn dest_mut(l: &mut Listing, svc: usize, dest: usize) -> &mut DestStatus {
        &mut l.services[svc].dests[dest]
    }

    fn assert_lines(got: &str, want: &[&str]) {
        let got: Vec<&str> = got.split_terminator('\n').collect();
        assert_eq!(got.len(), want.len(), "{got:#?}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g, w, "line {i}");
        }
    }

    #[test]
    fn list_numeric_tunnel_service() {
        let set = table(&[
            "-A -t 192.168.150.100:80 -s rr",
            "-a -t 192.168.150.100:80 -r 192.168.150.12:80 -i -w 1",
            "-a -t 192.168.150.100:80 -r 192.168.150.13:80 -i -w 1",
        ]);
        let got = list_table(&Listing::from_set(&set), &numeric(), &PortNames::empty());
        assert_eq!(
            got,
            "IP Virtual Server version 1.2.1 (size=4096)\n\
             Prot LocalAddress:Port Scheduler Flags\n  \
             -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
             TCP  192.168.150.100:80 rr\n  \
             -> 192.168.150.12:80            Tunnel  1      0          0         \n  \
             -> 192.168.150.13:80            Tunnel  1      0          0         \n"
        );
    }

    #[test]
    fn list_sorts_by_protocol_address_port() {
        // A kube-proxy table as `ipvsadm --list -n` prints it.
        let set = table(&[
            "-A -u 10.96.0.10:53 -s rr",
            "-a -u 10.96.0.10:53 -r 172.17.0.2:53 -m",
            "-A -t 10.97.181.101:80 -s rr",
            "-a -t 10.97.181.101:80 -r 172.17.0.5:8000 -m",
            "-a -t 10.97.181.101:80 -r 172.17.0.3:8000 -m",
            "-a -t 10.97.181.101:80 -r 172.17.0.4:8000 -m",
            "-A -t 10.96.0.10:9153 -s rr",
            "-a -t 10.96.0.10:9153 -r 172.17.0.2:9153 -m",
            "-A -t 10.96.0.10:53 -s rr",
            "-a -t 10.96.0.10:53 -r 172.17.0.2:53 -m",
            "-A -t 10.96.0.1:443 -s rr",
            "-a -t 10.96.0.1:443 -r 192.168.136.17:8443 -m",
        ]);
        let mut listing = Listing::from_set(&set);
        dest_mut(&mut listing, 1, 0).active_conns = 12;
        dest_mut(&mut listing, 1, 1).inactive_conns = 3;
        let got = list_table(&listing, &numeric(), &PortNames::empty());
        assert_lines(
            &got,
            &[
                "IP Virtual Server version 1.2.1 (size=4096)",
                "Prot LocalAddress:Port Scheduler Flags",
                "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
                "TCP  10.96.0.1:443 rr",
                "  -> 192.168.136.17:8443          Masq    1      0          0         ",
                "TCP  10.96.0.10:53 rr",
                "  -> 172.17.0.2:53                Masq    1      0          0         ",
                "TCP  10.96.0.10:9153 rr",
                "  -> 172.17.0.2:9153              Masq    1      0          0         ",
                "TCP  10.97.181.101:80 rr",
                "  -> 172.17.0.3:8000              Masq    1      0          3         ",
                "  -> 172.17.0.4:8000              Masq    1      0          0         ",
                "  -> 172.17.0.5:8000              Masq    1      12         0         ",
                "UDP  10.96.0.10:53 rr",
                "  -> 172.17.0.2:53                Masq    1      0          0         ",
            ],
        );
        let nosort = ListFormat {
            nosort: true,
            ..numeric()
        };
        let got = list_table(&listing, &nosort, &PortNames::empty());
        assert!(got.lines().nth(3) == Some("UDP  10.96.0.10:53 rr"), "{got}");
    }

    #[test]
    fn list_persistent_services_with_and_without_mask() {
        let set = table(&[
            "-A -t 172.168.2.33:443 -s rr -p 600",
            "-a -t 172.168.2.33:443 -r 172.168.2.34 -g",
            "-a -t 172.168.2.33:443 -r 172.168.2.35 -g",
            "-A -t 10.254.66.97:8080 -s wlc -p 10800 -M 255.255.255.0",
            "-a -t 10.254.66.97:8080 -r 172.20.104.7 -m -w 3",
        ]);
        let got = list_table(&Listing::from_set(&set), &numeric(), &PortNames::empty());
        assert_lines(
            &got,
            &[
                "IP Virtual Server version 1.2.1 (size=4096)",
                "Prot LocalAddress:Port Scheduler Flags",
                "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
                "TCP  10.254.66.97:8080 wlc persistent 10800 mask 255.255.255.0",
                "  -> 172.20.104.7:8080            Masq    3      0          0         ",
                "TCP  172.168.2.33:443 rr persistent 600",
                "  -> 172.168.2.34:443             Route   1      0          0         ",
                "  -> 172.168.2.35:443             Route   1      0          0         ",
            ],
        );
    }

    #[test]
    fn list_stats_as_ipvsadm() {
        let set = table(&[
            "-A -t 172.168.2.33:80 -s rr",
            "-a -t 172.168.2.33:80 -r 172.168.2.34 -g",
            "-a -t 172.168.2.33:80 -r 172.168.2.35 -g",
        ]);
        let mut listing = Listing::from_set(&set);
        listing.conn_tab_size = 1_048_576;
        listing.services[0].stats = Stats {
            conns: 353,
            in_pkts: 2387,
            out_pkts: 0,
            in_bytes: 425_447,
            out_bytes: 0,
        };
        dest_mut(&mut listing, 0, 0).stats = Stats {
            conns: 169,
            in_pkts: 1211,
            out_pkts: 0,
            in_bytes: 199_557,
            out_bytes: 0,
        };
        dest_mut(&mut listing, 0, 1).stats = Stats {
            conns: 184,
            in_pkts: 1176,
            out_pkts: 0,
            in_bytes: 225_890,
            out_bytes: 0,
        };
        let fmt = ListFormat {
            stats: true,
            ..numeric()
        };
        assert_lines(
            &list_table(&listing, &fmt, &PortNames::empty()),
            &[
                "IP Virtual Server version 1.2.1 (size=1048576)",
                "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes",
                "  -> RemoteAddress:Port",
                "TCP  172.168.2.33:80                   353     2387        0   425447        0",
                "  -> 172.168.2.34:80                   169     1211        0   199557        0",
                "  -> 172.168.2.35:80                   184     1176        0   225890        0",
            ],
        );
    }

    #[test]
    fn large_numbers_are_abbreviated_unless_exact() {
        let set = table(&[
            "-A -t 20.20.20.1:2020 -s rr",
            "-a -t 20.20.20.1:2020 -r 17.17.17.1:5001 -m",
        ]);
        let mut listing = Listing::from_set(&set);
        listing.services[0].stats = Stats {
            conns: 401,
            in_pkts: 8_939_187,
            out_pkts: 8_953_980,
            in_bytes: 830_843_512,
            out_bytes: 1_135_000_321,
        };
        dest_mut(&mut listing, 0, 0).stats = Stats {
            conns: 134,
            in_pkts: 3_026_088,
            out_pkts: 3_031_335,
            in_bytes: 281_255_001,
            out_bytes: 384_268_999,
        };
        let fmt = ListFormat {
            stats: true,
            ..numeric()
        };
        let got = list_table(&listing, &fmt, &PortNames::empty());
        assert_eq!(
            got.lines().nth(3),
            Some("TCP  20.20.20.1:2020                   401  8939187  8953980  830843K    1135M")
        );
        assert_eq!(
            got.lines().nth(4),
            Some("  -> 17.17.17.1:5001                   134  3026088  3031335  281255K  384268K")
        );
        let exact = ListFormat { exact: true, ..fmt };
        let got = list_table(&listing, &exact, &PortNames::empty());
        assert_eq!(
            got.lines().nth(3),
            Some(
                "TCP  20.20.20.1:2020                   401  8939187  8953980 830843512 1135000321"
            )
        );
        let mut s = String::new();
        for n in [
            99_999_999,
            100_000_000,
            99_999_999_999,
            100_000_000_000,
            1 << 60,
        ] {
            largenum(&mut s, n, false);
        }
        assert_eq!(s, " 99999999  100000K   99999M     100G 1152921T");
    }

    #[test]
    fn list_rate_as_ipvsadm() {
        let set = table(&[
            "-A -t 1.2.3.4:80 -s rr",
            "-a -t 1.2.3.4:80 -r 172.17.0.3 -g",
        ]);
        let mut listing = Listing::from_set(&set);
        listing.services[0].rates = Rates {
            cps: 22,
            in_pps: 154,
            out_pps: 0,
            in_bps: 9900,
            out_bps: 0,
        };
        dest_mut(&mut listing, 0, 0).rates = listing.services[0].rates;
        let fmt = ListFormat {
            rate: true,
            ..numeric()
        };
        assert_lines(
            &list_table(&listing, &fmt, &PortNames::empty()),
            &[
                "IP Virtual Server version 1.2.1 (size=4096)",
                "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS",
                "  -> RemoteAddress:Port",
                "TCP  1.2.3.4:80                         22      154        0     9900        0",
                "  -> 172.17.0.3:80                      22      154        0     9900        0",
            ],
        );
    }

    #[test]
    fn list_thresholds_persistent_conn_and_tun_info() {
        let set = table(&[
            "-A -t 10.0.0.1:80 -s wlc",
            "-a -t 10.0.0.1:80 -r 10.0.1.1 -i -w 5 -x 100 -y 10",
            "-a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gue --tun-port 6080 -w 2",
            "-a -t 10.0.0.1:80 -r 10.0.1.3 -i --tun-type gre --tun-csum",
            "-a -t 10.0.0.1:80 -r 10.0.1.4 -g",
        ]);
        let mut listing = Listing::from_set(&set);
        dest_mut(&mut listing, 0, 0).active_conns = 4;
        dest_mut(&mut listing, 0, 0).persistent_conns = 7;
        let fmt = ListFormat {
            thresholds: true,
            ..numeric()
        };
        let got = list_table(&listing, &fmt, &PortNames::empty());
        assert_lines(
            &got,
            &[
                "IP Virtual Server version 1.2.1 (size=4096)",
                "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn ",
                "  -> RemoteAddress:Port",
                "TCP  10.0.0.1:80 wlc",
                "  -> 10.0.1.1:80                  100        10         4          0         ",
                "  -> 10.0.1.2:80                  0          0          0          0         ",
                "  -> 10.0.1.3:80                  0          0          0          0         ",
                "  -> 10.0.1.4:80                  0          0          0          0         ",
            ],
        );
        let fmt = ListFormat {
            persistent_conn: true,
            ..numeric()
        };
        let got = list_table(&listing, &fmt, &PortNames::empty());
        assert_eq!(
            got.lines().nth(1),
            Some("Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn ")
        );
        assert_eq!(
            got.lines().nth(4),
            Some("  -> 10.0.1.1:80                  5         7           4          0         ")
        );
        let fmt = ListFormat {
            tun_info: true,
            ..numeric()
        };
        assert_lines(
            &list_table(&listing, &fmt, &PortNames::empty()),
            &[
                "IP Virtual Server version 1.2.1 (size=4096)",
                "Prot LocalAddress:Port Scheduler Flags",
                "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn",
                "TCP  10.0.0.1:80 wlc",
                "  -> 10.0.1.1:80                  Tunnel  ipip          5      4          0         ",
                "  -> 10.0.1.2:80                  Tunnel  gue:6080:-c   2      0          0         ",
                "  -> 10.0.1.3:80                  Tunnel  gre:+c        1      0          0         ",
                "  -> 10.0.1.4:80                  Route   n/a           1      0          0         ",
            ],
        );
    }

    #[test]
    fn list_one_service_has_no_version_header() {
        let set = table(&[
            "-A -t 127.0.0.1:3001 -s rr",
            "-a -t 127.0.0.1:3001 -r 127.0.0.1:3307 -m",
        ]);
        let listing = Listing::from_set(&set);
        assert_lines(
            &list_service(&listing.services[0], &numeric(), &PortNames::empty()),
            &[
                "Prot LocalAddress:Port Scheduler Flags",
                "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
                "TCP  127.0.0.1:3001 rr",
                "  -> 127.0.0.1:3307               Masq    1      0          0         ",
            ],
        );
    }

    #[test]
    fn port_names_without_numeric() {
        let names = PortNames::parse(
            "# services\nhttp\t\t80/tcp\t\twww # WorldWideWeb\nhttp 80/udp\ndomain 53/tcp\ndomain 53/udp\nwww-alt 80/tcp\n",
        );
        assert_eq!(names.port(Protocol::Tcp, "www"), Some(80));
        assert_eq!(names.name(Protocol::Tcp, 80), Some("http"));
        let set = table(&[
            "-A -t 192.168.0.10:80 -s wlc",
            "-a -t 192.168.0.10:80 -r 192.168.0.179 -g -w 2",
        ]);
        let got = list_table(&Listing::from_set(&set), &ListFormat::default(), &names);
        assert_eq!(got.lines().nth(3), Some("TCP  192.168.0.10:http wlc"));
        assert_eq!(
            got.lines().nth(4),
            Some("  -> 192.168.0.179:http           Route   2      0          0         ")
        );
    }

    #[test]
    fn list_connections_as_ipvsadm() {
        let conn = |expires_secs, state: &str, client: &str, dest: &str| ConnEntry {
            proto: Protocol::Tcp,
            expires_secs,
            state: state.to_string(),
            client: client.parse().unwrap(),
            vip: "10.254.66.97:8080".parse().unwrap(),
            dest: dest.parse().unwrap(),
        };
        let conns = [
            conn(
                114,
                "TIME_WAIT",
                "192.168.123.248:35672",
                "172.20.135.6:8080",
            ),
            conn(10_803, "NONE", "192.168.123.248:0", "172.20.135.6:8080"),
            conn(899, "ESTABLISHED", "10.1.2.3:52470", "172.20.135.7:8080"),
        ];
        assert_lines(
            &list_conns(&conns, &numeric(), &PortNames::empty()),
            &[
                "IPVS connection entries",
                "pro expire state       source             virtual            destination",
                "TCP 01:54  TIME_WAIT   192.168.123.248:35672 10.254.66.97:8080  172.20.135.6:8080",
                "TCP 180:03 NONE        192.168.123.248:0  10.254.66.97:8080  172.20.135.6:8080",
                "TCP 14:59  ESTABLISHED 10.1.2.3:52470     10.254.66.97:8080  172.20.135.7:8080",
            ],
        );
    }

    #[test]
    fn timeouts_line() {
        assert_eq!(
            list_timeouts(&Timeouts::default()),
            "Timeout (tcp tcpfin udp): 900 120 300\n"
        );
    }

    #[test]
    fn save_is_ipvsadm_save() {
        let set = table(&[
            "-A -u 192.168.50.100:53 -s rr",
            "-a -u 192.168.50.100:53 -r 192.168.52.101:53 -i",
            "-a -u 192.168.50.100:53 -r 192.168.52.100:53 -i",
            "-A -t 192.168.50.100:53 -s rr",
            "-a -t 192.168.50.100:53 -r 192.168.52.100:53 -i -w 1",
            "-A -t 192.168.146.100:80 -s wlc -p 600 -M 255.255.255.0",
            "-a -t 192.168.146.100:80 -r 192.168.177.10:8080 -m -w 3",
            "-a -t 192.168.146.100:80 -r 192.168.177.20:80 -g -w 0",
            "-a -t 192.168.146.100:80 -r 192.168.177.30 -i --tun-type gue --tun-port 6079 --tun-csum",
            "-a -t 192.168.146.100:80 -r 192.168.177.40 -i --tun-type gre",
        ]);
        assert_lines(
            &save_rules(&set, true, &PortNames::empty()),
            &[
                "-A -t 192.168.50.100:53 -s rr",
                "-a -t 192.168.50.100:53 -r 192.168.52.100:53 -i -w 1 --tun-type ipip",
                "-A -t 192.168.146.100:80 -s wlc -p 600 -M 255.255.255.0",
                "-a -t 192.168.146.100:80 -r 192.168.177.10:8080 -m -w 3",
                "-a -t 192.168.146.100:80 -r 192.168.177.20:80 -g -w 0",
                "-a -t 192.168.146.100:80 -r 192.168.177.30:80 -i -w 1 --tun-type gue --tun-port 6079 --tun-csum",
                "-a -t 192.168.146.100:80 -r 192.168.177.40:80 -i -w 1 --tun-type gre --tun-nocsum",
                "-A -u 192.168.50.100:53 -s rr",
                "-a -u 192.168.50.100:53 -r 192.168.52.100:53 -i -w 1 --tun-type ipip",
                "-a -u 192.168.50.100:53 -r 192.168.52.101:53 -i -w 1 --tun-type ipip",
            ],
        );
    }

    #[test]
    fn save_then_restore_gives_the_same_table() {
        let original = table(&[
            "-A -t 10.0.0.1:80 -s rr",
            "-a -t 10.0.0.1:80 -r 10.0.1.1 -i",
            "-a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gue --tun-port 7000 --tun-csum -w 4",
            "-a -t 10.0.0.1:80 -r 10.0.1.3 -i --tun-type gre --gre-key 99 -x 1000 -y 100",
            "-a -t 10.0.0.1:80 -r 10.0.1.4:8080 -m -w 0",
            "-a -t 10.0.0.1:80 -r 10.0.1.5 -g -w 65535",
            "-A -t 10.0.0.2:0 -s sh -p 3600 -M 255.255.0.0 --mss-clamp 1360",
            "-a -t 10.0.0.2:0 -r 10.0.1.1 -i",
            "-A -u 10.0.0.2:53 -s mh -p",
            "-a -u 10.0.0.2:53 -r 10.0.1.9 -i --tun-type gue",
        ]);
        for numeric in [true, false] {
            let names = PortNames::parse("http 80/tcp\ndomain 53/udp\n");
            let text = save_rules(&original, numeric, &names);
            let cmds = parse_restore(&text, &names).unwrap_or_else(|e| panic!("{e}\n{text}"));
            let mut restored = ServiceSet::default();
            let mut timeouts = Timeouts::default();
            let cmds: Vec<_> = cmds.into_iter().map(|(_, c)| c).collect();
            restored.apply_batch(&mut timeouts, &cmds).expect("restore");
            // The table was built in sorted order, so even the order is the same.
            assert_eq!(restored, original, "{text}");
        }
    }
}
