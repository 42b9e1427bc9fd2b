//! The real-server agent: hidden VIP, tunnel receiver, allow-list, decapsulation into a TUN.
//!
//! `tunlb realserver --vip VIP --encap ipip|gre|gue --allow CIDR` (`--mode tun`, the default)
//! makes this host a TUN-mode real server without kernel tunnel modules:
//!
//! 1. Each VIP goes on `lo` as a `/32` with `arp_ignore=1` and `arp_announce=2` on `all` and `lo`,
//!    so local services can bind it while the host never answers ARP for it (the LVS "hidden
//!    VIP"). An IPv6 VIP goes on `lo` as a `/128` (`nodad`); no sysctl is needed, Linux never
//!    answers Neighbor Discovery on a LAN for an address on `lo`.
//! 2. A receiver takes the director's tunnel packets: a raw socket for IP protocol 4 (IPIP) or 47
//!    (GRE), or a UDP socket on the GUE port. An open raw socket also stops the kernel from
//!    answering tunnel packets with ICMP protocol-unreachable. IPv6 (an IPv6 `--allow`, or
//!    6in4 for an IPv6 VIP) has sockets of its own, read by a second loop ([`ipv6`]).
//! 3. Each packet is checked ([`filter`]): the outer source must be in `--allow` (else the agent
//!    would let anyone inject packets with spoofed sources), the tunnel headers must validate
//!    ([`crate::encap::strip_ip`] / [`crate::encap::strip_gue`]; a GRE checksum, sent by a
//!    director with `--tun-csum`, must verify unless the kernel's GRO merged the packet) and
//!    the inner destination must be a VIP. Drops are counted by reason ([`stats`]), e.g.
//!    `gre_bad_checksum`.
//! 4. The inner packet is written into the agent's own TUN device (`rp_filter=2`, loose, on it
//!    alone, with a link-local address [`TUN_ADDR`] that loose mode needs; `conf/all` is left
//!    as it is, the kernel applying the larger of the two); the kernel delivers it to the
//!    service on the VIP, whose reply goes straight to the client.
//!
//! Narrowing what a forged packet can do: `--tunnel-key` (GUE packets must carry the
//! director's MAC and a fresh sequence number, [`crate::encap::auth`]), `--vip-ports` (the
//! protocols and ports each VIP takes, [`ports`]), and an `--allow` no wider than a /16 unless
//! `--allow-wide`.
//!    For GUE (unless `--no-offload`) the socket has `UDP_GRO` on and the TUN takes virtio
//!    headers: a train of the director's datagrams arrives as one buffer, each record is
//!    checked as above, and consecutive segments of one TCP flow are written back as one
//!    TCP super-packet ([`gro`]). IPIP/GRE packets the kernel's GRO merged (their inner TCP
//!    checksum unfinished) are repaired on their way into the TUN ([`merged`]).
//!
//! `tunlb realserver --vip VIP --mode dr` makes it a DR-mode real server (the seed's LVS-DR
//! set-up): the director sends the client's packets unchanged in Ethernet frames to this host's
//! MAC, so all it needs is step 1, with `arp_ignore=1` / `arp_announce=2` also on the LAN
//! interfaces (`--lan-if`, default every interface but `lo`). There is no receiver: the agent
//! stays in the foreground until a signal and then undoes the settings.
//!
//! `tunlb realserver --gateway --encap gre --allow DIRECTOR --route PREFIX --lan PREFIX` makes
//! it the remote end of a site-to-site link ([`gateway`]): no VIP; decapsulated packets from
//! the director's side are forwarded into this host's LAN, and the LAN's packets for the
//! `--route` prefixes are tunnelled back. The receive loop ([`tunnel`]) is the same.
//!
//! On SIGINT, SIGTERM or SIGHUP the loop stops, every network change is undone and the counters
//! are printed. Every change is first written to the agent's journal
//! (`/run/tunlb/realserver-<tun name>.journal.<netns id>`, `realserver-dr.journal.<id>` in DR
//! mode; see [`crate::sys::journal`]), so an agent that was killed is cleaned up after by the
//! next start or `tunlb realserver --cleanup`; a panicking thread stops the agent with exit
//! status 1.

pub mod chance;
pub mod filter;
pub mod gateway;
pub mod gro;
pub mod ipv6;
pub mod merged;
pub mod ports;
pub mod stats;
pub mod tunnel;

pub use filter::{AgentDrop, AllowList, Filter};
pub use stats::AgentStats;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};
use ipnet::{IpNet, Ipv4Net};

use crate::encap::{TunnelType, DEFAULT_GUE_PORT};
use crate::sys::journal::Journal;
use crate::sys::netcfg::{self, conf_key, Applied, NetChanges};
use crate::sys::tun::{TunConfig, TunDevice};
use crate::sys::{fatal, rundir, signal};
use tunnel::{serve, Receiver, ServeOptions, POLL_TIMEOUT};

/// Prefix of every log line.
const LOG: &str = "tunlb realserver:";

/// How the director reaches this real server (`--mode`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Tunnelled packets (director `-i`): decapsulate them (needs --encap and --allow).
    #[default]
    Tun,
    /// Direct routing (director `-g`): unchanged packets in frames to this host's MAC on a
    /// shared LAN; only the hidden VIP is needed.
    Dr,
}

/// Command line of `tunlb realserver`.
#[derive(clap::Args, Clone, Debug)]
pub struct AgentArgs {
    /// A virtual IP served here, IPv4 or IPv6 (repeat for several). Put on `lo` as a hidden
    /// /32 (or /128).
    #[arg(long = "vip", value_name = "VIP", required_unless_present_any = ["gateway", "cleanup"])]
    pub vips: Vec<IpAddr>,
    /// How packets arrive: `tun` (tunnelled, the director's -i) or `dr` (direct routing, -g).
    #[arg(long, value_enum, default_value_t = Mode::Tun)]
    pub mode: Mode,
    /// LAN interfaces on which ARP for the VIP is ignored in DR mode (repeat for several;
    /// default: every interface but `lo`).
    #[arg(long = "lan-if", value_name = "IFACE")]
    pub lan_ifs: Vec<String>,
    /// Tunnel type the director uses: ipip, gre or gue (TUN mode; required there).
    #[arg(long)]
    pub encap: Option<TunnelType>,
    /// UDP port GUE packets arrive on.
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_GUE_PORT)]
    pub gue_port: u16,
    /// GRE key the director sends (packets with another key, or none, are dropped).
    #[arg(long, value_name = "KEY")]
    pub gre_key: Option<u32>,
    /// Accept tunnel packets only from these sources (IPv4 or IPv6 address or CIDR; repeat for
    /// several; TUN mode, required there). An IPv6 director is reached over an IPv6 underlay.
    #[arg(long = "allow", value_name = "CIDR", value_parser = parse_allow_ip)]
    pub allow: Vec<IpNet>,
    /// Name of the TUN device decapsulated packets are written into.
    #[arg(long, value_name = "NAME", default_value = "tunlb-rs0")]
    pub tun_name: String,
    /// MTU of the TUN device.
    #[arg(long, value_name = "BYTES", default_value_t = 1500)]
    pub tun_mtu: u16,
    /// Print the counters every N seconds (0: only on exit).
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub stats_interval: u64,
    /// Packets read per receive call.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub batch: usize,
    /// Be a site-to-site gateway instead of a real server (see [`gateway`]): forward the
    /// decapsulated packets into this host's LAN and tunnel the LAN's traffic for the `--route`
    /// prefixes back to the director. Needs --encap, --allow, --route and --lan; no --vip.
    #[arg(long)]
    pub gateway: bool,
    /// Gateway: a prefix on the director's side, routed back through the tunnel (repeat for
    /// several). Tunnelled packets must come from inside these prefixes.
    #[arg(long = "route", value_name = "PREFIX", value_parser = parse_allow)]
    pub routes: Vec<Ipv4Net>,
    /// Gateway: the director's tunnel endpoint (default: the --allow address, when there is
    /// exactly one and it is a single host).
    #[arg(long, value_name = "ADDR")]
    pub peer: Option<Ipv4Addr>,
    /// Gateway: this site's LAN prefix (repeat for several); only packets from these sources
    /// are tunnelled back (anti-spoofing).
    #[arg(long = "lan", value_name = "PREFIX", value_parser = parse_allow)]
    pub lans: Vec<Ipv4Net>,
    /// Serve Prometheus metrics (the agent's counters) at http://ADDR:PORT/metrics (TUN mode).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// No virtio headers on the TUN. By default the TUN takes them: GUE's socket has UDP_GRO
    /// on (a train of datagrams arrives as one buffer) and the director's segments of one TCP
    /// flow are written back as one super-packet; IPIP/GRE packets the kernel's GRO merged are
    /// written whole with a partial checksum. Without, GUE is received one datagram at a
    /// time and merged IPIP/GRE packets are cut into segments in software. If the kernel
    /// refuses offload, the agent goes on without, with a log line.
    #[arg(long)]
    pub no_offload: bool,
    /// Undo what agents that died without restoring the host (SIGKILL, OOM kill, a crash)
    /// left in this network namespace, as their journals under /run/tunlb record it (the VIPs
    /// on lo, ARP and rp_filter sysctls, gateway routes), print each undo and exit. Journals of
    /// agents still running are left alone. (An agent does this itself when it starts.)
    #[arg(long, conflicts_with_all = ["vips", "gateway"])]
    pub cleanup: bool,
    /// Accept only GUE packets authenticated with this key (a file of 64 hex characters,
    /// mode 0600, owned by the user tunlb runs as; the director's --tunnel-key or the real
    /// server's `tunnel_key`). Give it twice during a key rotation: packets by either key are
    /// taken. Unauthenticated, forged (bad MAC), replayed and unknown-key packets are dropped
    /// and counted (auth_missing, auth_bad_mac, auth_replayed, auth_unknown_key). GUE only:
    /// IPIP and GRE cannot carry a MAC (see --insecure-unauthenticated-encap).
    #[arg(long = "tunnel-key", value_name = "FILE")]
    pub tunnel_keys: Vec<std::path::PathBuf>,
    /// Start with --tunnel-key and --encap ipip or gre anyway, accepting their packets
    /// unauthenticated (anyone who can spoof the director's address can reach the VIPs). Use
    /// GUE with a key, or IPsec between director and real servers, instead.
    #[arg(long)]
    pub insecure_unauthenticated_encap: bool,
    /// Limit what tunnelled packets may reach on a VIP: `[VIP=]RULE[/RULE...]`, RULE being
    /// `tcp:PORTS`, `udp:PORTS` or `icmp`, PORTS like `80,443,8000-8099` (repeat for several
    /// VIPs; without `VIP=` the list is the default of every VIP without its own). E.g.
    /// `--vip-ports 10.0.0.100=tcp:80,443/udp:53`. Others are dropped as port_not_allowed or
    /// proto_not_allowed; ICMP errors always pass. Default: no limit.
    #[arg(long = "vip-ports", value_name = "[VIP=]RULES")]
    pub vip_ports: Vec<String>,
    /// Accept an --allow wider than a /16, or for IPv6 a /48 (by default refused: a wide allow-list lets most
    /// of the Internet pretend to be the director).
    #[arg(long)]
    pub allow_wide: bool,
    /// Turn second chance off (GUE): by default a TCP packet (not a SYN) that carries a second
    /// choice — a director picked its flow up mid-way just after its `mh` table changed — and
    /// for which this host has no socket is sent on in GUE to that real server, whose agent
    /// must then accept this host (its --allow covering the real servers' addresses).
    #[arg(long)]
    pub no_second_chance: bool,
}

/// The narrowest `--allow` prefix taken without `--allow-wide`.
pub const WIDEST_ALLOW: u8 = 16;

/// The narrowest IPv6 `--allow` prefix taken without `--allow-wide`: a /48, one site's
/// allocation (RFC 6177), as a /16 is a large IPv4 network.
pub const WIDEST_ALLOW6: u8 = 48;

/// The address on the agent's TUN device: loose reverse-path filtering (`rp_filter=2`, set on
/// the TUN alone) drops every packet arriving on a device without an IPv4 address. A
/// link-local /32, never routed anywhere.
pub const TUN_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 253, 1);

/// Parses `--allow`: a CIDR, or a bare address meaning `/32`.
pub(crate) fn parse_allow(s: &str) -> Result<Ipv4Net, String> {
    if let Ok(net) = s.parse::<Ipv4Net>() {
        return Ok(net);
    }
    match s.parse::<Ipv4Addr>() {
        Ok(addr) => Ok(Ipv4Net::from(addr)),
        Err(_) => Err(format!(
            "{s:?} is not an IPv4 address or CIDR (e.g. 192.0.2.1 or 192.0.2.0/24)"
        )),
    }
}

/// Parses `--allow` of either family: a CIDR, or a bare address meaning `/32` or `/128`.
pub(crate) fn parse_allow_ip(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    match s.parse::<IpAddr>() {
        Ok(addr) => Ok(IpNet::from(addr)),
        Err(_) => Err(format!(
            "{s:?} is not an IP address or CIDR (e.g. 192.0.2.1, 192.0.2.0/24 or 2001:db8::1)"
        )),
    }
}

impl AgentArgs {
    /// The IPv4 VIPs.
    pub fn vips4(&self) -> Vec<Ipv4Addr> {
        self.vips
            .iter()
            .filter_map(|v| match v {
                IpAddr::V4(a) => Some(*a),
                IpAddr::V6(_) => None,
            })
            .collect()
    }

    /// The IPv6 VIPs.
    pub fn vips6(&self) -> Vec<Ipv6Addr> {
        self.vips
            .iter()
            .filter_map(|v| match v {
                IpAddr::V6(a) => Some(*a),
                IpAddr::V4(_) => None,
            })
            .collect()
    }

    /// Rejects combinations clap cannot: no VIP, empty allow-list, a GRE key without GRE, ...
    pub fn validate(&self) -> anyhow::Result<()> {
        let too_wide = |n: &&IpNet| match n {
            IpNet::V4(n) => n.prefix_len() < WIDEST_ALLOW,
            IpNet::V6(n) => n.prefix_len() < WIDEST_ALLOW6,
        };
        if let Some(wide) = self.allow.iter().find(too_wide) {
            if !self.allow_wide {
                let limit = match wide {
                    IpNet::V4(_) => WIDEST_ALLOW,
                    IpNet::V6(_) => WIDEST_ALLOW6,
                };
                bail!("--allow {wide} is wider than a /{limit}: most of that range could pretend to be the director; list the directors' addresses, or add --allow-wide if this is meant");
            }
        }
        if self.gateway {
            if !self.tunnel_keys.is_empty() || !self.vip_ports.is_empty() {
                bail!("--tunnel-key and --vip-ports are for real servers, not --gateway");
            }
            return gateway::validate(self);
        }
        if !self.routes.is_empty() || self.peer.is_some() || !self.lans.is_empty() {
            bail!("--route, --peer and --lan are for --gateway");
        }
        if self.vips.is_empty() {
            bail!("at least one --vip is needed");
        }
        let not_unicast = |v: &&IpAddr| match v {
            IpAddr::V4(v) => {
                v.is_unspecified() || v.is_multicast() || v.is_broadcast() || v.is_loopback()
            }
            IpAddr::V6(v) => {
                v.is_unspecified()
                    || v.is_multicast()
                    || v.is_loopback()
                    || v.is_unicast_link_local()
                    || v.to_ipv4_mapped().is_some()
            }
        };
        if let Some(bad) = self.vips.iter().find(not_unicast) {
            bail!("--vip {bad} is not a unicast address");
        }
        if self.mode == Mode::Dr {
            if self.encap.is_some()
                || !self.allow.is_empty()
                || self.gre_key.is_some()
                || !self.tunnel_keys.is_empty()
                || !self.vip_ports.is_empty()
            {
                bail!("--encap, --allow, --gre-key, --tunnel-key and --vip-ports are for --mode tun: in DR mode packets arrive unchanged, with no tunnel");
            }
            if let Some(bad) = self.lan_ifs.iter().find(|i| !valid_ifname(i)) {
                bail!("--lan-if {bad:?} is not a valid interface name");
            }
            return Ok(());
        }
        if !self.lan_ifs.is_empty() {
            bail!("--lan-if is for --mode dr");
        }
        let Some(encap) = self.encap else {
            bail!("--encap ipip|gre|gue is needed in TUN mode (or use --mode dr)");
        };
        if self.allow.is_empty() {
            bail!("at least one --allow is needed: the agent accepts tunnel packets only from listed directors");
        }
        if self.gre_key.is_some() && encap != TunnelType::Gre {
            bail!("--gre-key is only meaningful with --encap gre");
        }
        if !self.tunnel_keys.is_empty()
            && encap != TunnelType::Gue
            && !self.insecure_unauthenticated_encap
        {
            bail!("--tunnel-key with --encap {encap}: IPIP and GRE cannot carry a MAC, so anyone who can spoof the director's address could still reach the VIPs; use --encap gue (the director's real servers with tun_type gue), or IPsec between director and real servers, or add --insecure-unauthenticated-encap to accept {encap} unauthenticated");
        }
        if self.insecure_unauthenticated_encap && self.tunnel_keys.is_empty() {
            bail!("--insecure-unauthenticated-encap only makes sense with --tunnel-key");
        }
        let ports = ports::VipPorts::parse(&self.vip_ports).map_err(anyhow::Error::msg)?;
        if let Some(vip) = ports.unknown_vips(&self.vips).next() {
            bail!("--vip-ports {vip}=...: {vip} is not one of the --vip addresses");
        }
        let name = &self.tun_name;
        if !valid_ifname(name) {
            bail!("--tun-name {name:?} is not a valid interface name (1 to 15 bytes, no '/', ':' or spaces)");
        }
        if self.batch == 0 {
            bail!("--batch must be at least 1");
        }
        Ok(())
    }
}

impl AgentArgs {
    /// How the tunnel receive loop runs.
    fn serve_options(&self) -> ServeOptions<'static> {
        ServeOptions {
            batch: self.batch,
            stats_interval: (self.stats_interval > 0)
                .then(|| Duration::from_secs(self.stats_interval)),
            log: LOG,
            publish: None,
        }
    }
}

/// Whether Linux accepts `name` as an interface name: 1 to 15 bytes, no '/', ':' or spaces.
pub(crate) fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && !name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace())
}

/// Runs the agent until SIGINT, SIGTERM or SIGHUP, then undoes its network changes and exits.
pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    if args.cleanup {
        return cleanup();
    }
    signal::install().context("install signal handlers")?;
    fatal::install_panic_hook(LOG);
    // Only CAP_NET_ADMIN and CAP_NET_RAW from here on, before any thread: crate::sys::caps.
    let needs = crate::sys::caps::Needs {
        scripts: false,
        bind_low_port: args
            .metrics_listen
            .is_some_and(|a| (1..1024).contains(&a.port())),
    };
    crate::sys::caps::drop_to(needs, "tunlb realserver").context("drop capabilities")?;
    let stop = || match signal::pending() {
        Some(sig) => {
            log::info!("{LOG} {sig} received, stopping");
            true
        }
        None => false,
    };
    run_until(&args, stop)?;
    match fatal::reason() {
        Some(why) => bail!("stopped because {why} (the host settings were restored)"),
        None => Ok(()),
    }
}

/// The journal stem of this agent: one per TUN device (DR mode has none: `realserver-dr`).
fn journal_stem(args: &AgentArgs) -> String {
    match (args.gateway, args.mode) {
        (false, Mode::Dr) => "realserver-dr.journal".to_owned(),
        _ => format!("realserver-{}.journal", args.tun_name),
    }
}

/// Opens this agent's journal (refusing if a live agent holds it), undoing what a dead one
/// left there.
pub(crate) fn journaled_changes(args: &AgentArgs) -> anyhow::Result<NetChanges> {
    let path = Journal::path_for(&journal_stem(args))?;
    netcfg::open_journaled(&path, "realserver", LOG).context("opening the journal of host changes")
}

/// `tunlb realserver --cleanup`: undoes what dead agents of this network namespace left, from
/// every `realserver-*.journal.<netns id>` no live agent holds, and prints it.
fn cleanup() -> anyhow::Result<()> {
    let dir = rundir::run_dir()?;
    let suffix = format!(".journal.{:x}", rundir::netns_id()?);
    let mut journals: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("realserver-") && n.ends_with(&suffix))
        .collect();
    journals.sort();
    let mut failed = false;
    let mut any = false;
    for name in journals {
        let path = dir.join(&name);
        match netcfg::cleanup(&path, "realserver") {
            Ok(rec) if rec.is_empty() => {}
            Ok(rec) => {
                any = true;
                let who = rec
                    .pid
                    .map(|p| format!(", left by pid {p}"))
                    .unwrap_or_default();
                println!("{LOG} --cleanup: {}{who}:", path.display());
                for line in rec.lines() {
                    println!("  {line}");
                }
                failed |= !rec.errors.is_empty();
            }
            Err(netcfg::NetError::Journal(e @ crate::sys::journal::JournalError::Busy { .. })) => {
                println!("{LOG} --cleanup: skipping {e}");
            }
            Err(e) => {
                println!("{LOG} --cleanup: {}: {e}", path.display());
                failed = true;
            }
        }
    }
    if !any && !failed {
        println!("{LOG} --cleanup: nothing to undo in this network namespace");
    }
    if failed {
        bail!("some changes could not be undone; they stay in their journals");
    }
    Ok(())
}

/// Runs the agent until `stop()` returns true (checked at least every 200 ms), undoes its
/// network changes and returns the counters. [`run`] stops on signals; tests stop it with a flag
/// (see [`stop_flag`]).
pub fn run_until(args: &AgentArgs, stop: impl FnMut() -> bool) -> anyhow::Result<AgentStats> {
    args.validate()?;
    // The journal before any change: it refuses a second agent with the same TUN, and
    // undoes what a dead one left before this one looks at the host.
    let net = journaled_changes(args)?;
    if args.gateway {
        return gateway::run(args, net, stop);
    }
    match (args.mode, args.encap) {
        (Mode::Dr, _) => run_dr(args, net, stop),
        (Mode::Tun, Some(encap)) => run_tun(args, encap, net, stop),
        (Mode::Tun, None) => bail!("--encap is needed in TUN mode"),
    }
}

/// DR mode: hide the VIPs (also from ARP on the LAN interfaces) and wait for `stop()`.
fn run_dr(
    args: &AgentArgs,
    mut net: NetChanges,
    mut stop: impl FnMut() -> bool,
) -> anyhow::Result<AgentStats> {
    let lan = if args.lan_ifs.is_empty() {
        lan_interfaces().context("list the network interfaces")?
    } else {
        args.lan_ifs.clone()
    };
    // The LAN interfaces' ARP settings before the VIP appears on lo, so it is never
    // answered for on any of them.
    for iface in &lan {
        net.set_sysctl(&conf_key(iface, "arp_ignore"), "1")?;
        net.set_sysctl(&conf_key(iface, "arp_announce"), "2")?;
    }
    hide_vips(&mut net, &args.vips4())?;
    hide_vips6(&mut net, &args.vips6())?;
    log::info!(
        "{LOG} serving {} in DR mode: hidden on lo, ARP for it ignored on {}",
        join(&args.vips),
        if lan.is_empty() {
            "all interfaces".to_string()
        } else {
            format!("all, {}", lan.join(", "))
        }
    );
    if !args.vips6().is_empty() {
        log::info!(
            "{LOG} IPv6 VIPs {} as /128 on lo: Neighbor Discovery answers only for addresses on the interface asked, so no LAN gets an advertisement for them",
            join(&args.vips6())
        );
    }
    while !stop() {
        std::thread::sleep(POLL_TIMEOUT);
    }
    net.restore().context("undo network changes")?;
    log::info!("{LOG} network changes undone");
    Ok(AgentStats::default())
}

/// Every interface with IPv4 settings except `lo` (the DR mode default for `--lan-if`).
fn lan_interfaces() -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/sys/net/ipv4/conf")? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !matches!(name.as_str(), "all" | "default" | "lo") {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// TUN mode: hide the VIPs, receive tunnel packets and write them, unwrapped, into a TUN.
fn run_tun(
    args: &AgentArgs,
    encap: TunnelType,
    mut net: NetChanges,
    mut stop: impl FnMut() -> bool,
) -> anyhow::Result<AgentStats> {
    let (vips4, vips6) = (args.vips4(), args.vips6());
    hide_vips(&mut net, &vips4)?;
    hide_vips6(&mut net, &vips6)?;

    // Virtio headers let GUE trains and kernel-merged IPIP/GRE packets in whole.
    let offload = !args.no_offload;
    let tun = TunDevice::with_config(&TunConfig {
        offload,
        ..TunConfig::new(&args.tun_name, 1, args.tun_mtu)
    })
    .with_context(|| format!("create TUN device {}", args.tun_name))?;
    let tun_name = tun.name().to_owned();
    // Reverse-path filtering: the kernel applies max(conf/all, conf/TUN). Loose (2) on the
    // TUN alone lets the clients' packets in (their source is routed elsewhere) whatever
    // `all` is; loose mode wants an address on the device. `all` stays as it is.
    net.add_address(Ipv4Net::from(TUN_ADDR), &tun_name)?;
    net.set_sysctl(&conf_key(&tun_name, "rp_filter"), "2")?;
    if !vips6.is_empty() {
        // IPv6 on for the TUN (no link-local address, no Router Advertisements), so the
        // kernel takes the inner IPv6 packets written into it. Not forwarding: a real server
        // routes nothing.
        for (key, value) in netcfg::tun_ipv6_sysctls(&tun_name) {
            net.set_sysctl(&key, value)?;
        }
    }
    let Some(queue) = tun.queues().pop() else {
        bail!("TUN device {tun_name} has no queue");
    };

    let mut rx = Receiver::open(encap, args.gue_port)?;
    let v4_underlay = args.allow.iter().any(|n| matches!(n, IpNet::V4(_)));
    let v6_underlay = args.allow.iter().any(|n| matches!(n, IpNet::V6(_)));
    let plan6 = ipv6::Source::plan(
        encap,
        v4_underlay,
        v6_underlay,
        !vips4.is_empty(),
        !vips6.is_empty(),
    );
    let rx6 = ipv6::Receivers6::open(&plan6, args.gue_port)?;
    if offload && encap != TunnelType::Gue {
        if queue.vnet_hdr() {
            log::info!("{LOG} TUN offload on: packets the kernel's GRO merged are written whole");
        } else {
            log::info!("{LOG} TUN offload unavailable: packets the kernel's GRO merged are cut into segments");
        }
    }
    if offload && encap == TunnelType::Gue {
        match rx.enable_gro() {
            Ok(_) if queue.vnet_hdr() => log::info!(
                "{LOG} UDP_GRO on, TUN offload on: GUE trains are merged into TCP super-packets"
            ),
            Ok(_) => log::info!("{LOG} UDP_GRO on, TUN offload unavailable: trains are written one packet at a time"),
            Err(e) => log::warn!("{LOG} UDP_GRO refused ({e}): one datagram at a time"),
        }
    }
    let allow: Vec<String> = args.allow.iter().map(ToString::to_string).collect();
    log::info!(
        "{LOG} serving {} via {} ({}), allowed directors {}, writing into {tun_name}",
        join(&args.vips),
        encap,
        rx.describe(),
        allow.join(", "),
    );
    if !vips6.is_empty() || v6_underlay {
        let vips6 = if vips6.is_empty() {
            "no IPv6 VIP".to_owned()
        } else {
            format!("IPv6 VIPs {} (/128 on lo)", join(&vips6))
        };
        let underlay = match (v4_underlay, v6_underlay) {
            (true, true) => "IPv4 and IPv6 underlays",
            (false, true) => "IPv6 underlay",
            _ => "IPv4 underlay",
        };
        let socks = if rx6.is_empty() {
            format!("on the {encap} IPv4 socket")
        } else {
            rx6.describe()
        };
        log::info!("{LOG} {vips6}, {underlay}: IPv6 receivers {socks}");
    }

    let mut filter = agent_filter(args, encap, load_keyring(args, encap, true)?)?;
    if encap == TunnelType::Gue && !args.no_second_chance {
        let key = filter
            .first_key()
            .map(|k| (k, crate::encap::auth::seq_seed(wall_clock_ns())));
        match chance::Forwarder::system(args.gue_port, key) {
            Ok(f) => {
                filter = filter.with_second_chance(f);
                log::info!("{LOG} second chance on: a packet carrying a second choice with no local socket goes on to that real server (whose --allow must include this host)");
            }
            Err(e) => log::warn!("{LOG} second chance off: {e}"),
        }
    }
    // The IPv6 loop checks with a filter of its own (its replay windows apart: a MAC covers
    // the outer addresses, so a packet cannot be replayed from one family into the other).
    let mut filter6 = if rx6.is_empty() {
        None
    } else {
        Some(agent_filter(
            args,
            encap,
            load_keyring(args, encap, false)?,
        )?)
    };
    let mut stats = AgentStats::default();
    let mut stats6 = AgentStats::default();
    let shared = std::sync::Arc::new(std::sync::Mutex::new(AgentStats::default()));
    let shared6 = std::sync::Arc::new(std::sync::Mutex::new(AgentStats::default()));
    let mut opts = args.serve_options();
    let mut opts6 = args.serve_options();
    if let Some(addr) = args.metrics_listen {
        let (copy, copy6) = (shared.clone(), shared6.clone());
        let render: crate::metrics::http::Render = std::sync::Arc::new(move |format| {
            let stats = ipv6::summed(&copy, &copy6);
            crate::metrics::encode(&crate::metrics::agent_registry(&stats), format)
        });
        let (bound, _thread) = crate::metrics::http::serve(addr, render)
            .with_context(|| format!("serving metrics on {addr}"))?;
        log::info!("{LOG} metrics at http://{bound}/metrics");
        opts.publish = Some(&shared);
        opts6.publish = Some(&shared6);
    }
    // The IPv6 loop runs on a thread of its own until the IPv4 loop ends (or ends it, by
    // failing).
    let done = AtomicBool::new(false);
    let failed6 = AtomicBool::new(false);
    let (result, result6) = std::thread::scope(|s| {
        let loop6 = filter6.as_mut().map(|f6| {
            let (rx6, queue, stats6, done, failed6) = (&rx6, &queue, &mut stats6, &done, &failed6);
            s.spawn(move || {
                let r = ipv6::serve6(rx6, queue, f6, opts6, stats6, &|| {
                    done.load(Ordering::Relaxed)
                });
                if r.is_err() {
                    failed6.store(true, Ordering::Relaxed);
                }
                r
            })
        });
        let result = serve(&mut rx, &queue, &mut filter, opts, &mut stats, &mut || {
            stop() || failed6.load(Ordering::Relaxed)
        });
        done.store(true, Ordering::Relaxed);
        let result6 = match loop6 {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the IPv6 receive loop panicked"))),
            None => Ok(()),
        };
        (result, result6)
    });
    stats.add(&stats6);

    log::info!("{LOG} {stats}");
    // Undo while the TUN device still exists, so its own sysctl is restored too.
    let restored = net.restore();
    drop(queue);
    match (result.and(result6), restored) {
        (Err(e), _) => Err(e),
        (Ok(()), Err(e)) => Err(e).context("undo network changes"),
        (Ok(()), Ok(())) => {
            log::info!("{LOG} network changes undone");
            Ok(stats)
        }
    }
}

/// The agent's filter: `--allow`, the VIPs of both families, `--gre-key`, `--vip-ports`,
/// the keyring (`--tunnel-key`, GUE).
fn agent_filter(
    args: &AgentArgs,
    encap: TunnelType,
    keys: Option<crate::encap::auth::Keyring>,
) -> anyhow::Result<Filter> {
    let mut filter = Filter::new(
        AllowList::of(&args.allow),
        &args.vips4(),
        encap,
        args.gre_key,
    )
    .with_vips6(&args.vips6())
    .with_ports(ports::VipPorts::parse(&args.vip_ports).map_err(anyhow::Error::msg)?);
    if let Some(keys) = keys {
        filter = filter.with_keys(keys);
    }
    Ok(filter)
}

/// The `--tunnel-key` files as a keyring (GUE; `None` without keys, or for IPIP/GRE, which
/// `validate` only lets through with `--insecure-unauthenticated-encap`).
/// `log`: say so in the log (once per agent, not per loop).
fn load_keyring(
    args: &AgentArgs,
    encap: TunnelType,
    log: bool,
) -> anyhow::Result<Option<crate::encap::auth::Keyring>> {
    use crate::encap::auth::{Keyring, TunnelKey};
    if args.tunnel_keys.is_empty() {
        return Ok(None);
    }
    if encap != TunnelType::Gue {
        if log {
            log::warn!("{LOG} --insecure-unauthenticated-encap: {encap} packets are accepted without authentication (the --tunnel-key is not used); use GUE or IPsec");
        }
        return Ok(None);
    }
    let keys = args
        .tunnel_keys
        .iter()
        .map(|p| TunnelKey::load(p).context("--tunnel-key"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ring = Keyring::new(keys).map_err(anyhow::Error::msg)?;
    let ids: Vec<String> = ring.ids().iter().map(|i| format!("{i:#06x}")).collect();
    if log {
        log::info!(
            "{LOG} GUE packets must be authenticated (key id {})",
            ids.join(", ")
        );
    }
    Ok(Some(ring))
}

/// Nanoseconds since the Unix epoch (the forwarded packets' sequence numbers start there).
fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// A stop condition for [`run_until`] that watches a flag.
pub fn stop_flag(flag: &AtomicBool) -> impl FnMut() -> bool + '_ {
    move || flag.load(Ordering::Relaxed)
}

/// Puts every IPv6 VIP on `lo` as a /128 (`nodad`), with IPv6 on for `lo`. No sysctl keeps
/// the host from advertising it: Linux answers a Neighbor Solicitation only for an address
/// on the interface it arrived on (`ndisc_recv_ns` looks the target up strictly on that
/// device), so a VIP on `lo` is never advertised on a LAN (root test
/// `dr_mode_ipv6_vip_on_lo_gets_no_neighbor_advertisement`).
fn hide_vips6(net: &mut NetChanges, vips: &[Ipv6Addr]) -> anyhow::Result<()> {
    if vips.is_empty() {
        return Ok(());
    }
    net.set_sysctl(&netcfg::conf6_key("lo", "disable_ipv6"), "0")?;
    for &vip in vips {
        if net.add_address_ip(IpNet::from(IpAddr::V6(vip)), "lo")? == Applied::AlreadyInPlace {
            log::info!("{LOG} {vip}/128 already on lo, leaving it there on exit");
        }
    }
    Ok(())
}

/// Puts every VIP on `lo` as a /32 and keeps the host from answering ARP for it.
fn hide_vips(net: &mut NetChanges, vips: &[Ipv4Addr]) -> anyhow::Result<()> {
    for iface in ["all", "lo"] {
        net.set_sysctl(&conf_key(iface, "arp_ignore"), "1")?;
        net.set_sysctl(&conf_key(iface, "arp_announce"), "2")?;
    }
    for &vip in vips {
        if net.add_address(Ipv4Net::from(vip), "lo")? == Applied::AlreadyInPlace {
            log::info!("{LOG} {vip}/32 already on lo, leaving it there on exit");
        }
    }
    Ok(())
}

fn join<T: std::fmt::Display>(addrs: &[T]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod root_tests;
#[cfg(test)]
mod root_tests6;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        agent: AgentArgs,
    }

    fn parse(args: &[&str]) -> Result<AgentArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("realserver").chain(args.iter().copied()))
            .map(|c| c.agent)
    }

    #[test]
    fn command_line_parses_with_defaults() {
        let a = parse(&[
            "--vip",
            "10.0.0.100",
            "--vip",
            "10.0.0.101",
            "--encap",
            "gre",
            "--gre-key",
            "7",
            "--allow",
            "192.168.1.2",
            "--allow",
            "192.168.2.0/24",
        ])
        .unwrap();
        assert_eq!(a.vips.len(), 2);
        assert_eq!(a.encap, Some(TunnelType::Gre));
        assert_eq!(a.mode, Mode::Tun);
        assert_eq!(a.gre_key, Some(7));
        assert_eq!(
            a.allow,
            vec![
                "192.168.1.2/32".parse::<IpNet>().unwrap(),
                "192.168.2.0/24".parse().unwrap()
            ]
        );
        assert_eq!(a.tun_name, "tunlb-rs0");
        assert_eq!(a.gue_port, 6080);
        a.validate().unwrap();
    }

    #[test]
    fn wide_allow_lists_keys_with_ipip_and_vip_ports_are_checked() {
        let base = ["--vip", "10.0.0.100", "--encap", "gue"];
        let with = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            parse(&v).unwrap().validate()
        };
        let e = with(&["--allow", "10.0.0.0/8"]).unwrap_err().to_string();
        assert!(
            e.contains("wider than a /16") && e.contains("--allow-wide"),
            "{e}"
        );
        with(&["--allow", "10.0.0.0/8", "--allow-wide"]).unwrap();
        with(&["--allow", "10.1.0.0/16"]).unwrap();
        // A key with IPIP or GRE: refused unless told.
        let k = ["--allow", "10.1.0.2", "--tunnel-key", "/k"];
        with(&k).unwrap();
        let mut ipip = vec!["--vip", "10.0.0.100", "--encap", "ipip"];
        ipip.extend_from_slice(&k);
        let e = parse(&ipip).unwrap().validate().unwrap_err().to_string();
        assert!(
            e.contains("cannot carry a MAC") && e.contains("--insecure-unauthenticated-encap"),
            "{e}"
        );
        ipip.push("--insecure-unauthenticated-encap");
        parse(&ipip).unwrap().validate().unwrap();
        // --vip-ports: the syntax, and only for the agent's VIPs.
        with(&[
            "--allow",
            "10.1.0.2",
            "--vip-ports",
            "10.0.0.100=tcp:80,443/udp:53",
        ])
        .unwrap();
        with(&["--allow", "10.1.0.2", "--vip-ports", "tcp:80"]).unwrap();
        let e = with(&["--allow", "10.1.0.2", "--vip-ports", "10.0.0.9=tcp:80"]).unwrap_err();
        assert!(e.to_string().contains("not one of the --vip"), "{e}");
        assert!(with(&["--allow", "10.1.0.2", "--vip-ports", "ssh"]).is_err());
    }

    #[test]
    fn dr_mode_needs_only_the_vip() {
        let a = parse(&["--vip", "192.168.150.100", "--mode", "dr"]).unwrap();
        assert_eq!(a.mode, Mode::Dr);
        a.validate().unwrap();
        let a = parse(&[
            "--vip",
            "192.168.150.100",
            "--mode",
            "dr",
            "--lan-if",
            "eth0",
        ])
        .unwrap();
        assert_eq!(a.lan_ifs, ["eth0"]);
        a.validate().unwrap();
        for extra in [&["--encap", "ipip"][..], &["--allow", "10.0.0.1"]] {
            let a = parse(&[&["--vip", "10.0.0.1", "--mode", "dr"][..], extra].concat()).unwrap();
            let err = a.validate().unwrap_err().to_string();
            assert!(err.contains("for --mode tun"), "{err}");
        }
        let a = parse(&["--vip", "10.0.0.1", "--mode", "dr", "--lan-if", "a/b"]).unwrap();
        assert!(a.validate().is_err());
        assert!(parse(&["--vip", "10.0.0.1", "--mode", "nat"]).is_err());
    }

    #[test]
    fn allow_and_vip_are_required_and_checked() {
        let no_allow = parse(&["--vip", "10.0.0.1", "--encap", "ipip"]).unwrap();
        assert!(no_allow.validate().is_err());
        let no_encap = parse(&["--vip", "10.0.0.1", "--allow", "1.2.3.4"]).unwrap();
        assert!(no_encap
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--encap"));
        let lan_if = ["--vip", "10.0.0.1", "--allow", "1.2.3.4", "--encap", "ipip"];
        let a = parse(&[&lan_if[..], &["--lan-if", "eth0"]].concat()).unwrap();
        assert!(a.validate().is_err());
        assert!(parse(&["--allow", "10.0.0.1", "--encap", "ipip"]).is_err());
        assert!(parse(&["--vip", "10.0.0.1", "--allow", "nope", "--encap", "ipip"]).is_err());
        assert!(parse(&["--vip", "10.0.0.1", "--allow", "1.2.3.4", "--encap", "vxlan"]).is_err());
        let a = parse(&[
            "--vip",
            "10.0.0.1",
            "--allow",
            "1.2.3.4",
            "--encap",
            "ipip",
            "--gre-key",
            "1",
        ])
        .unwrap();
        assert!(a.validate().is_err());
        let a = parse(&[
            "--vip",
            "127.0.0.1",
            "--allow",
            "1.2.3.4",
            "--encap",
            "ipip",
        ])
        .unwrap();
        assert!(a.validate().is_err());
        let long_name = ["--vip", "10.0.0.1", "--allow", "1.2.3.4", "--encap", "ipip"];
        let a = parse(&[&long_name[..], &["--tun-name", "a-name-too-long-for-linux"]].concat());
        assert!(a.unwrap().validate().is_err());
    }

    #[test]
    fn ipv6_vips_allow_lists_and_vip_ports_parse() {
        let a = parse(&[
            "--vip",
            "2001:db8:a::1",
            "--vip",
            "10.0.0.100",
            "--encap",
            "gue",
            "--allow",
            "2001:db8:1::2",
            "--allow",
            "2001:db8:2::/56",
            "--vip-ports",
            "[2001:db8:a::1]=tcp:80",
        ])
        .unwrap();
        assert_eq!(a.vips4(), [Ipv4Addr::new(10, 0, 0, 100)]);
        assert_eq!(a.vips6(), ["2001:db8:a::1".parse::<Ipv6Addr>().unwrap()]);
        assert_eq!(a.allow[0], "2001:db8:1::2/128".parse::<IpNet>().unwrap());
        a.validate().unwrap();
        // The IPv6 width rule: a /48 at most without --allow-wide.
        let wide = |allow: &str, extra: &[&str]| {
            let mut v = vec!["--vip", "2001:db8:a::1", "--encap", "gue", "--allow", allow];
            v.extend_from_slice(extra);
            parse(&v).unwrap().validate()
        };
        wide("2001:db8::/48", &[]).unwrap();
        let e = wide("2001:db8::/32", &[]).unwrap_err().to_string();
        assert!(e.contains("wider than a /48"), "{e}");
        wide("2001:db8::/32", &["--allow-wide"]).unwrap();
        // Not unicast, link-local, IPv4-mapped: refused as VIPs; a port list for another VIP.
        for bad in ["::1", "ff02::1", "fe80::1", "::ffff:10.0.0.1", "::"] {
            let v = ["--vip", bad, "--encap", "gue", "--allow", "2001:db8::1"];
            assert!(parse(&v).unwrap().validate().is_err(), "{bad}");
        }
        let e = wide("2001:db8::1", &["--vip-ports", "[2001:db8:a::2]=tcp:80"]).unwrap_err();
        assert!(e.to_string().contains("not one of the --vip"), "{e}");
        // A gateway's peers are IPv4.
        let g = parse(&[
            "--gateway",
            "--encap",
            "gre",
            "--allow",
            "2001:db8::1",
            "--route",
            "10.9.0.0/16",
            "--lan",
            "10.8.0.0/16",
        ])
        .unwrap();
        assert!(g.validate().is_err());
    }
}
