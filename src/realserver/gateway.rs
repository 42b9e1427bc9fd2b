//! `tunlb realserver --gateway`: the remote end of a site-to-site link to a director's
//! `[[tunnel_route]]`, built from a TUN device and userspace only.
//!
//! ```text
//!  director side (--route PREFIX)          this host (a router on its LAN, --lan PREFIX)
//!  tunnel from --allow ──► receiver ──► Filter::gateway ──► TUN ──► kernel forwards to the LAN
//!  LAN ──► kernel routes --route into TUN ──► outbound check ──► build_outer ──► raw socket ──► --peer
//! ```
//!
//! 1. `ip_forward=1` and `rp_filter=0` (on `all` and the TUN), each restored on exit; the TUN's
//!    MTU is `--tun-mtu` (the underlay's MTU) minus the tunnel overhead, so the kernel itself
//!    answers too-big packets with DF by ICMP fragmentation-needed and fragments the others
//!    before they reach the tunnel; every `--route` prefix is routed into the TUN.
//! 2. A receiver thread runs the agent's receive loop ([`super::tunnel::serve`]) with
//!    [`Filter::gateway`]: only tunnel packets from `--allow`, and only inner packets whose
//!    source is in a `--route` prefix (anti-spoofing, `inner_source_not_allowed`); any inner
//!    destination. The kernel forwards them into the LAN.
//! 3. The main loop reads the TUN: a packet whose destination is in a `--route` prefix and whose
//!    source is in a `--lan` prefix is wrapped ([`build_outer`]) and sent to `--peer` through a
//!    raw socket; anything else is dropped and counted ([`Outbound`]).

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use ipnet::{IpNet, Ipv4Net};

use super::filter::{Filter, GatewayPeer};
use super::stats::AgentStats;
use super::tunnel::{serve, Receiver, POLL_TIMEOUT};
use super::{valid_ifname, AgentArgs, Mode, LOG};
use crate::encap::{self, build_outer, OuterParams, Tunnel, TunnelType, MAX_OUTER_HEADER};
use crate::sys::netcfg::{conf_key, NetChanges};
use crate::sys::raw::RawSender;
use crate::sys::tun::{TunDevice, TunQueue};
use crate::sys::PacketBatch;

/// Checks the `--gateway` command line.
pub(super) fn validate(args: &AgentArgs) -> anyhow::Result<()> {
    if args.mode != Mode::Tun {
        bail!("--gateway works with tunnels only (not --mode dr)");
    }
    if !args.vips.is_empty() || !args.lan_ifs.is_empty() {
        bail!("--vip and --lan-if are for real servers, not --gateway");
    }
    let Some(encap) = args.encap else {
        bail!("--gateway needs --encap ipip|gre|gue");
    };
    if args.gre_key.is_some() && encap != TunnelType::Gre {
        bail!("--gre-key is only meaningful with --encap gre");
    }
    if args.allow.is_empty() {
        bail!("--gateway needs --allow: the director(s) it accepts tunnel packets from");
    }
    if let Some(v6) = args.allow.iter().find(|n| matches!(n, IpNet::V6(_))) {
        bail!("--allow {v6}: a gateway's peers are IPv4");
    }
    if args.routes.is_empty() {
        bail!("--gateway needs at least one --route: the prefixes on the director's side");
    }
    if args.lans.is_empty() {
        bail!("--gateway needs at least one --lan: this site's prefixes (only they are tunnelled back)");
    }
    if peer(args).is_none() {
        bail!("--gateway needs --peer ADDR (the director's tunnel address) unless --allow is one single address");
    }
    let overhead = encap::overhead(&tunnel(args, encap));
    if usize::from(args.tun_mtu) < 576 + overhead {
        bail!(
            "--tun-mtu {} is too small for a gateway (at least {})",
            args.tun_mtu,
            576 + overhead
        );
    }
    if !valid_ifname(&args.tun_name) {
        bail!(
            "--tun-name {:?} is not a valid interface name",
            args.tun_name
        );
    }
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    Ok(())
}

/// The director's tunnel endpoint: `--peer`, else the single `--allow` host.
fn peer(args: &AgentArgs) -> Option<Ipv4Addr> {
    match (args.peer, args.allow.as_slice()) {
        (Some(p), _) => Some(p),
        (None, [IpNet::V4(only)]) if only.prefix_len() == 32 => Some(only.addr()),
        _ => None,
    }
}

/// Why a packet read from the TUN was not tunnelled back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboundDrop {
    /// Not an IPv4 packet with a sane header.
    Malformed,
    /// The destination is not in a `--route` prefix (the kernel should not have sent it here).
    NotRouted,
    /// The source is not in a `--lan` prefix: possibly spoofed, never tunnelled.
    SourceNotLan,
}

/// Which TUN packets go back through the tunnel: plain logic, no IO.
#[derive(Clone, Debug)]
pub struct Outbound {
    routes: Vec<Ipv4Net>,
    lans: Vec<Ipv4Net>,
}

impl Outbound {
    /// Packets to `routes` from `lans`.
    pub fn new(routes: &[Ipv4Net], lans: &[Ipv4Net]) -> Outbound {
        Outbound {
            routes: routes.iter().map(Ipv4Net::trunc).collect(),
            lans: lans.iter().map(Ipv4Net::trunc).collect(),
        }
    }

    /// Checks a packet read from the TUN; returns its length (the IPv4 total length).
    pub fn check(&self, packet: &[u8]) -> Result<usize, OutboundDrop> {
        let ip =
            crate::wire::Ipv4Packet::new_checked(packet).map_err(|_| OutboundDrop::Malformed)?;
        if !self.routes.iter().any(|n| n.contains(&ip.dst_addr())) {
            return Err(OutboundDrop::NotRouted);
        }
        if !self.lans.iter().any(|n| n.contains(&ip.src_addr())) {
            return Err(OutboundDrop::SourceNotLan);
        }
        Ok(usize::from(ip.total_len()))
    }
}

/// What the gateway did with the packets its LAN sent towards the director's side.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboundStats {
    /// Packets read from the TUN.
    pub read: u64,
    /// Packets tunnelled to the peer.
    pub tunnelled: u64,
    /// Dropped: not a sane IPv4 packet, or cut by the read.
    pub malformed: u64,
    /// Dropped: destination outside the `--route` prefixes.
    pub not_routed: u64,
    /// Dropped: source outside the `--lan` prefixes.
    pub source_not_lan: u64,
    /// Dropped: the kernel refused to send it.
    pub send_failed: u64,
}

impl OutboundStats {
    fn count(&mut self, d: OutboundDrop) {
        match d {
            OutboundDrop::Malformed => self.malformed += 1,
            OutboundDrop::NotRouted => self.not_routed += 1,
            OutboundDrop::SourceNotLan => self.source_not_lan += 1,
        }
    }
}

impl fmt::Display for OutboundStats {
    /// `out_read=.. out_tunnelled=.. out_malformed=.. ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "out_read={} out_tunnelled={} out_malformed={} out_not_routed={} source_not_lan={} out_send_failed={}",
            self.read, self.tunnelled, self.malformed, self.not_routed, self.source_not_lan, self.send_failed
        )
    }
}

/// The tunnel a gateway sends on: `--encap` with `--gre-key` or `--gue-port` (no checksum).
fn tunnel(args: &AgentArgs, encap: TunnelType) -> Tunnel {
    Tunnel::new(encap, args.gue_port, false, args.gre_key)
}

/// Runs the gateway until `stop()`; undoes its network changes and returns the receiver's
/// counters (the outbound ones are logged).
pub(super) fn run(
    args: &AgentArgs,
    mut net: NetChanges,
    mut stop: impl FnMut() -> bool,
) -> anyhow::Result<AgentStats> {
    let (Some(encap), Some(peer)) = (args.encap, peer(args)) else {
        bail!("--gateway needs --encap and a peer");
    };
    let overhead = encap::overhead(&tunnel(args, encap));
    let mtu = args.tun_mtu.saturating_sub(overhead as u16);
    let tun = TunDevice::create(&args.tun_name, 1, mtu)
        .with_context(|| format!("create TUN device {}", args.tun_name))?;
    let tun_name = tun.name().to_owned();
    let Some(queue) = tun.queues().pop() else {
        bail!("TUN device {tun_name} has no queue");
    };
    let queue = Arc::new(queue);
    let result = setup_and_serve(args, encap, peer, &tun_name, &queue, &mut net, &mut stop);
    // Undo while the TUN device still exists, so its own sysctl is restored too.
    let restored = net.restore();
    drop(queue);
    match (result, restored) {
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e).context("undo network changes"),
        (Ok(stats), Ok(())) => {
            log::info!("{LOG} network changes undone");
            Ok(stats)
        }
    }
}

fn setup_and_serve(
    args: &AgentArgs,
    encap: TunnelType,
    peer: Ipv4Addr,
    tun_name: &str,
    queue: &Arc<TunQueue>,
    net: &mut NetChanges,
    stop: &mut dyn FnMut() -> bool,
) -> anyhow::Result<AgentStats> {
    net.set_sysctl("net.ipv4.ip_forward", "1")?;
    net.set_sysctl(&conf_key("all", "rp_filter"), "0")?;
    net.set_sysctl(&conf_key(tun_name, "rp_filter"), "0")?;
    for prefix in &args.routes {
        net.add_route(prefix.trunc(), tun_name)
            .with_context(|| format!("route {prefix} into {tun_name}"))?;
    }
    let mut rx = Receiver::open(encap, args.gue_port)?;
    let mut sender = RawSender::new(args.batch).context("open the raw send socket")?;
    let peers = args
        .allow
        .iter()
        .filter_map(|n| match n {
            IpNet::V4(n) => Some(*n),
            IpNet::V6(_) => None,
        })
        .map(|outer| GatewayPeer {
            outer: outer.trunc(),
            gre_key: args.gre_key,
            prefixes: args.routes.iter().map(|n| IpNet::V4(n.trunc())).collect(),
        })
        .collect();
    let mut filter = Filter::gateway(encap, peers);
    fn show<T: std::fmt::Display>(nets: &[T]) -> String {
        nets.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
    log::info!(
        "{LOG} gateway via {encap} ({}): from {} into {tun_name} (MTU {}) for {}; {} back to {peer}",
        rx.describe(),
        show(&args.allow),
        args.tun_mtu
            .saturating_sub(encap::overhead(&tunnel(args, encap)) as u16),
        show(&args.lans),
        show(&args.routes),
    );

    let done = Arc::new(AtomicBool::new(false));
    let receiver = {
        let done = done.clone();
        let queue = queue.clone();
        let opts = args.serve_options();
        std::thread::Builder::new()
            .name("tunlb-gw-rx".to_string())
            .spawn(move || {
                let mut stats = AgentStats::default();
                let mut stop = || done.load(Ordering::Relaxed);
                let r = serve(&mut rx, &queue, &mut filter, opts, &mut stats, &mut stop);
                (r, stats)
            })
            .context("start the receiver thread")?
    };

    let outbound = Outbound::new(&args.routes, &args.lans);
    let params = OuterParams {
        src: Ipv4Addr::UNSPECIFIED,
        dst: peer,
        tunnel: tunnel(args, encap),
        flow_hash: 0,
    };
    let mut out = OutboundStats::default();
    let result = send_loop(
        queue,
        &outbound,
        &params,
        &mut sender,
        args.batch,
        &mut out,
        || stop() || receiver.is_finished(),
    );
    done.store(true, Ordering::Relaxed);
    let (rx_result, stats) = match receiver.join() {
        Ok(v) => v,
        Err(_) => bail!("the receiver thread panicked"),
    };
    log::info!("{LOG} {stats} {out}");
    result?;
    rx_result?;
    Ok(stats)
}

/// Reads the TUN and tunnels every packet [`Outbound`] accepts to the peer.
fn send_loop(
    tun: &TunQueue,
    outbound: &Outbound,
    params: &OuterParams,
    sender: &mut RawSender,
    batch_size: usize,
    out: &mut OutboundStats,
    mut stop: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let mut batch = PacketBatch::new(batch_size, usize::from(u16::MAX));
    let mut headers: Vec<([u8; MAX_OUTER_HEADER], usize, usize, usize)> =
        Vec::with_capacity(batch_size);
    let mut warned = false;
    while !stop() {
        let n = tun
            .recv_batch(&mut batch, Some(POLL_TIMEOUT))
            .context("read the TUN device")?;
        if n == 0 {
            continue;
        }
        headers.clear();
        for (i, (packet, meta)) in batch.iter().enumerate() {
            out.read += 1;
            if meta.truncated {
                out.count(OutboundDrop::Malformed);
                continue;
            }
            let len = match outbound.check(packet) {
                Ok(len) => len,
                Err(d) => {
                    out.count(d);
                    continue;
                }
            };
            let Some(inner) = packet.get(..len) else {
                out.count(OutboundDrop::Malformed);
                continue;
            };
            let mut header = [0u8; MAX_OUTER_HEADER];
            let p = OuterParams {
                flow_hash: crate::director::route::flow_hash(inner),
                ..*params
            };
            match build_outer(&p, inner, &mut header) {
                Ok(h) => headers.push((header, h, i, len)),
                Err(_) => out.count(OutboundDrop::Malformed),
            }
        }
        let items = headers.iter().filter_map(|(h, hlen, i, len)| {
            Some((params.dst, &h[..*hlen], batch.get(*i)?.get(..*len)?))
        });
        let report = sender.send_batch(items);
        out.tunnelled += (headers.len() - report.failed.min(headers.len())) as u64;
        out.send_failed += report.failed as u64;
        if report.failed > 0 && !warned {
            warned = true;
            if let Some(e) = report.last_error() {
                log::warn!(
                    "{LOG} tunnelling back failed: {e} (counted as out_send_failed, logged once)"
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 28, 0, 1, 0x40, 0, 64, 17, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 8, 0, 0]);
        let sum = crate::wire::checksum::checksum(&p[..20]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p
    }

    #[test]
    fn only_lan_sources_to_routed_prefixes_go_back() {
        let o = Outbound::new(
            &["10.1.0.0/24".parse().unwrap()],
            &["172.16.8.0/22".parse().unwrap()],
        );
        assert_eq!(o.check(&packet([172, 16, 9, 2], [10, 1, 0, 2])), Ok(28));
        assert_eq!(
            o.check(&packet([192, 168, 1, 1], [10, 1, 0, 2])),
            Err(OutboundDrop::SourceNotLan)
        );
        assert_eq!(
            o.check(&packet([172, 16, 9, 2], [10, 2, 0, 2])),
            Err(OutboundDrop::NotRouted)
        );
        assert_eq!(o.check(&[0x45, 0, 0]), Err(OutboundDrop::Malformed));
    }
}
