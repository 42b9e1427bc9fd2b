//! The director's driver: TUN queues in, raw sockets and the TUN out, one worker per queue.
//!
//! Each worker thread owns one TUN queue and one [`Director`] core. It reads a batch of packets,
//! decides them all under its core's lock (taken once per batch, so the control plane can read
//! counters and the connection table between batches), then sends the encapsulated packets with
//! one `sendmmsg`, the DR frames with one `sendmmsg` on an `AF_PACKET` socket
//! ([`dr_io::FrameQueue`]), and writes any ICMP replies and NAT-rewritten packets back into the
//! TUN (one `write` each: a TUN device has no batched write). An encapsulated packet the core
//! marked for fragmentation goes out as outer IPv4 fragments in the same `sendmmsg`, their
//! headers built into a per-worker array sized for a whole batch of maximally fragmented packets
//! (DR packets likewise). Nothing is allocated per packet. A resolver thread
//! ([`dr_io::spawn_resolver`]) keeps the DR real servers' MAC addresses current.
//!
//! With `--tunnel-tx frames` (the default) the resolver also finds, for each TUN-mode real
//! server, the Ethernet interface and next hop the kernel would route its packets by
//! ([`tunnel_link`](super::tunnel_link)); the worker then sends that server's encapsulated
//! packets (whole, fragmented, or as GSO segments) as frames on the `AF_PACKET` socket, with
//! the outer header completed as the raw socket's kernel path would have (source, ident,
//! checksum), sparing the kernel a route lookup per packet. Servers without such a path, and
//! every server on an interface a send found gone (until the next refresh), keep the raw
//! socket; `--tunnel-tx raw` keeps it for all.
//!
//! With TUN offload (the default; `--no-offload` turns it off) a read returns a whole GRO/GSO
//! TCP super-packet of up to 64 KB behind a `virtio_net_hdr` ([`crate::wire::gso`]). The core
//! decides it once ([`Director::handle_gso`]: one flow); the driver then cuts it into MSS-sized
//! segments, each with its own IPv4/TCP headers (and outer header in TUN mode) built into a
//! per-worker array while the payload stays in the read buffer, and sends them all in the
//! batch's one `sendmmsg`. A NAT-rewritten super-packet goes back into the TUN whole, behind its
//! virtio header, for the kernel to segment. Super-packets the core cannot take whole (no DF,
//! odd checksum offsets) are segmented first and decided packet by packet; ordinary packets
//! get their partial checksum completed and take the old path; malformed virtio headers are
//! dropped as `bad_vnet_hdr`.
//!
//! GUE super-packets skip the per-segment `sendmmsg`: their segments become back-to-back
//! records (GUE header, the segment's IPv4 + TCP headers, its payload) sent with one
//! `sendmsg` per up to 64 records on a UDP socket with `UDP_SEGMENT`
//! ([`crate::sys::udp_gso`]), so the kernel and veth carry one UDP GSO skb and the agent,
//! with `UDP_GRO`, receives it whole. Each worker has a pool of 16 such sockets on their own
//! source ports, picked by the flow's hash (the port the raw path would use, modulo 16), so a
//! flow keeps its port. If the kernel refuses the first train, the worker logs it once and
//! goes back to the raw path for good; `--no-offload` never uses the pool. A GUE super-packet
//! for a real server reached by frames (see above) skips the pool too: each train leaves as
//! one frame on the `PACKET_VNET_HDR` socket with a `GSO_UDP_L4` virtio header
//! (`train_head`), so the kernel does no route lookup for it either; if the kernel refuses
//! the first such frame, the worker logs it and uses the pool from then on.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration as StdDuration;

use anyhow::Context;

use super::dr_io::{self, FrameQueue};
use super::plane::{ControlPlane, HostSetup};
use super::service::ServiceSet;
use super::stats::{BatchHistogram, EncapKind, SendSocket};
use super::tunnel_link::{frame_outer, LinkView, TunnelLink, TunnelLinks, TunnelTx};
use super::{
    Director, DirectorConfig, DropReason, Encap, Shared, Snapshot, Verdict, MAX_FRAGMENTS,
};
use crate::control::config::{self, DirectorSettings};
use crate::control::keepalived;
use crate::encap::{self, gue, IdentSeq, MAX_OUTER_HEADER};
use crate::sys::netcfg::{conf_key, NetChanges};
use crate::sys::raw::RawSender;
use crate::sys::tun::{TunConfig, TunDevice, TunQueue, TUN_F_USO4};
use crate::sys::udp_gso::{self, UdpGsoPool};
use crate::sys::{signal, PacketBatch, PacketMeta};
use crate::time::Clock;
use crate::wire::checksum;
use crate::wire::gso::{self, Segmenter, VnetHdr, MAX_SEGMENT_HEADER, VNET_HDR_LEN};
use crate::wire::IpProtocol;

/// `tunlb director`: starts with an empty table (fill it with `tunlb adm`) unless a config is
/// given.
#[derive(clap::Args, Debug, Clone)]
pub struct DirectorArgs {
    /// Number of TUN queues and worker threads (default: the config's, else the number of CPUs).
    #[arg(long)]
    pub queues: Option<usize>,
    /// Name of the TUN device the VIPs are routed into (default `tunlb0`).
    #[arg(long)]
    pub tun_name: Option<String>,
    /// TOML config to load at start (and again on SIGHUP); see configs/director.toml.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// keepalived.conf to take the virtual servers from instead (`tunlb check-config FILE` first).
    #[arg(long, conflicts_with = "config")]
    pub keepalived_conf: Option<PathBuf>,
    /// Outer source address of tunnel packets (default: the kernel picks the route's source).
    #[arg(long)]
    pub local_address: Option<Ipv4Addr>,
    /// Answer ARP for the VIPs on this LAN interface (proxy neighbour, proxy_delay 0).
    #[arg(long)]
    pub announce: Vec<String>,
    /// MTU of the path to the real servers (default 1500, at least 576). A client packet that
    /// no longer fits once encapsulated is answered with ICMP fragmentation-needed if it has DF
    /// set, else sent as fragments of the outer datagram (as Linux IPVS does).
    #[arg(long, value_parser = clap::value_parser!(u16).range(576..))]
    pub tunnel_mtu: Option<u16>,
    /// Maximum tracked flows per worker.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_conns: usize,
    /// Flows per worker the connection table is sized for at start. It grows beyond that (up
    /// to --max-conns) by doubling, which pauses the worker while it rehashes: size it for the
    /// expected peak to avoid that (1M flows take about 58 MB).
    #[arg(long, default_value_t = 65536)]
    pub conns_hint: usize,
    /// Packets read per batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Print the data path's counters (packets, new connections, drops by reason) every this
    /// many seconds; 0 = only at exit.
    #[arg(long, default_value_t = 0)]
    pub stats_interval: u64,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (see the `metrics` module).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Read one packet per read, without TUN offload. By default the TUN is created with
    /// IFF_VNET_HDR and TCP segmentation offload, so one read returns a whole GRO/GSO
    /// super-packet (up to 64 KB) that the director decides once and segments itself; if the
    /// kernel refuses, it falls back to this mode with a log line.
    #[arg(long)]
    pub no_offload: bool,
    /// How TUN-mode (IPIP/GRE/GUE) packets leave: `frames` sends them as Ethernet frames on
    /// the AF_PACKET socket to each real server reached through an Ethernet interface (next
    /// hop resolved like DR's), the raw socket for the others; `raw` always uses the
    /// IP_HDRINCL raw socket, the kernel routing every packet (choose it when the tunnel
    /// packets must pass this host's netfilter output/postrouting rules or an IPsec policy:
    /// frames skip the IP output path).
    #[arg(long, value_enum, default_value_t = TunnelTx::Frames)]
    pub tunnel_tx: TunnelTx,
}

/// Runs the director until SIGINT/SIGTERM, then restores what it changed.
pub fn run(args: DirectorArgs) -> anyhow::Result<()> {
    signal::install().context("installing signal handlers")?;
    // Command-line flags win over the config file, which wins over the defaults.
    let (settings, set) = match &args.config {
        Some(path) => config::load(path)?,
        None => match &args.keepalived_conf {
            Some(path) => {
                // The virtual servers and their checkers; VRRP blocks are warned about.
                let k = keepalived::load_reporting(path)?;
                let settings = DirectorSettings {
                    health: k.health,
                    ..DirectorSettings::default()
                };
                (settings, k.services)
            }
            None => (DirectorSettings::default(), ServiceSet::default()),
        },
    };
    let queues = args
        .queues
        .or(args.config.as_ref().map(|_| settings.queues))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let tun_name = args.tun_name.clone().unwrap_or(settings.tun_name.clone());
    let tunnel_mtu = args.tunnel_mtu.unwrap_or(settings.tunnel_mtu);
    let local_addr = args
        .local_address
        .or(settings.local_address)
        .unwrap_or(Ipv4Addr::UNSPECIFIED);

    let mut net = NetChanges::new();
    let tun = TunDevice::with_config(&TunConfig {
        offload: !args.no_offload,
        udp_offload: !args.no_offload,
        ..TunConfig::new(&tun_name, queues, 1500)
    })
    .with_context(|| format!("creating TUN device {tun_name} with {queues} queues"))?;
    match tun.offload() {
        Some(flags) => eprintln!(
            "tunlb director: TUN offload on (IFF_VNET_HDR, TUNSETOFFLOAD {flags:#04x}): GSO super-packets are segmented in userspace{}",
            if flags & TUN_F_USO4 != 0 {
                "; UDP trains too (with rx-udp-gro-forwarding on the receiving interface)"
            } else {
                ""
            }
        ),
        None if args.no_offload => {}
        None => eprintln!("tunlb director: TUN offload unavailable, reading one packet per read"),
    }
    net.set_sysctl("net.ipv4.ip_forward", "1")?;
    net.set_sysctl(&conf_key(&tun_name, "rp_filter"), "0")?;

    let shared = Arc::new(Shared::new(Snapshot::default()));
    let config = DirectorConfig {
        tunnel_mtu,
        local_addr,
        max_conns: args.max_conns,
        initial_conns: super::conn::ConnTable::slots_for(args.conns_hint.min(args.max_conns)),
        seed: random_seed(),
        ..DirectorConfig::default()
    };
    let cores: Vec<Arc<Mutex<Director>>> = (0..queues)
        .map(|_| Arc::new(Mutex::new(Director::new(shared.clone(), config.clone()))))
        .collect();
    let clock = Clock::new();
    let plane = Arc::new(ControlPlane::new(
        shared.clone(),
        cores.clone(),
        clock,
        HostSetup {
            net,
            tun_name: tun_name.clone(),
            announce: if args.announce.is_empty() {
                settings.announce.clone()
            } else {
                args.announce.clone()
            },
            config_path: args.config.clone(),
        },
        set,
        settings.timeouts,
    )?);
    plane
        .set_snat(settings.snat.clone())
        .map_err(anyhow::Error::msg)?;
    if let (None, Some(path)) = (&args.config, &args.keepalived_conf) {
        plane.set_keepalived_path(path.clone());
    }
    let health = crate::health::HealthMonitor::spawn(plane.clone(), settings.health.clone());
    plane.set_settings(DirectorSettings {
        tunnel_mtu,
        local_address: Some(local_addr),
        ..settings.clone()
    });
    plane
        .set_tunnel_routes(&settings.tunnel_routes)
        .map_err(anyhow::Error::msg)?;
    plane
        .clone()
        .serve()
        .context("starting the control socket")?;
    if let Some(addr) = args.metrics_listen {
        let p = plane.clone();
        let render: crate::metrics::http::Render = Arc::new(move |format| {
            crate::metrics::encode(
                &crate::metrics::director_registry(&p.metrics_sample()),
                format,
            )
        });
        let (bound, _thread) = crate::metrics::http::serve(addr, render)
            .with_context(|| format!("serving metrics on {addr}"))?;
        eprintln!("tunlb director: metrics at http://{bound}/metrics");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let tun_queues: Vec<Arc<TunQueue>> = tun.queues().into_iter().map(Arc::new).collect();
    // The return traffic of tunnel routes goes into the TUN through the first queue.
    let gateways = match tun_queues.first() {
        Some(q) => super::gateway::spawn(&settings.tunnel_routes, &shared, q, &stop)?,
        None => Vec::new(),
    };
    let tunnel_links = match args.tunnel_tx {
        TunnelTx::Frames => Some(Arc::new(TunnelLinks::new())),
        TunnelTx::Raw => None,
    };
    for (i, (queue, core)) in tun_queues.into_iter().zip(cores.clone()).enumerate() {
        let stop = stop.clone();
        let batch = args.batch.max(1);
        let links = tunnel_links.clone().map(LinkView::new);
        let handle = std::thread::Builder::new()
            .name(format!("tunlb-worker-{i}"))
            .spawn(move || {
                let start = WorkerStart {
                    index: i,
                    workers: queues,
                    queue,
                    core,
                    clock,
                    batch_size: batch,
                    links,
                };
                worker(start, &stop)
            })
            .context("spawning a worker thread")?;
        workers.push(handle);
    }
    let resolver = dr_io::spawn_resolver(shared.clone(), stop.clone(), tunnel_links)
        .context("starting the DR neighbour resolver")?;
    eprintln!(
        "tunlb director: {} queue(s) on {}, control socket ready; configure with `tunlb adm`",
        queues, tun_name
    );

    let stats_every = StdDuration::from_secs(args.stats_interval);
    let mut last_stats = std::time::Instant::now();
    loop {
        if args.stats_interval > 0 && last_stats.elapsed() >= stats_every {
            last_stats = std::time::Instant::now();
            eprintln!("tunlb director: {}", summary(&cores));
        }
        let _ = crate::sys::poll_readable(
            signal::wake_fd().unwrap_or(-1),
            Some(StdDuration::from_millis(500)),
        );
        shared.handle_timeout(clock.now());
        plane.tick();
        match signal::take() {
            Some(signal::Signal::Hangup) => match plane.reload() {
                Ok(msg) => eprintln!("tunlb director: SIGHUP: {msg}"),
                Err(e) => {
                    eprintln!("tunlb director: SIGHUP: reload rejected, running table kept: {e:#}")
                }
            },
            Some(sig) => {
                eprintln!("tunlb director: {sig}: shutting down");
                break;
            }
            None => {}
        }
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers.into_iter().chain(gateways) {
        let _ = w.join();
    }
    let _ = resolver.join();
    eprintln!("tunlb director: at exit: {}", summary(&cores));
    drop(health);
    plane.shutdown();
    Ok(())
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish()
}

/// The workers' counters added up, in one log line: packets in and out, connections, and every
/// drop reason that occurred (labelled as the metrics will be).
fn summary(cores: &[Arc<Mutex<Director>>]) -> String {
    let mut total = super::Counters::default();
    let mut conns = 0;
    for core in cores {
        let Ok(d) = core.lock() else { continue };
        total.add(d.counters());
        conns += d.conns().len();
    }
    if let Some(d) = cores.first().and_then(|c| c.lock().ok()) {
        conns += d.shared().nat.len();
    }
    let mut line = format!(
        "rx {} packets ({} GSO super-packets decided whole, {} segmented first), forwarded {} ({} fragmented), nat-rewritten {}, icmp sent {}, connections {} created, {} expired, {} tracked",
        total.rx_packets,
        total.gso_whole,
        total.gso_split,
        total.tx_packets,
        total.fragmented,
        total.rewritten,
        total.icmp_sent,
        total.conns_created,
        total.conns_expired,
        conns
    );
    let drops: Vec<String> = DropReason::ALL
        .iter()
        .filter(|r| total.dropped(**r) > 0)
        .map(|r| format!("{}={}", r.as_str(), total.dropped(*r)))
        .collect();
    if drops.is_empty() {
        line.push_str("; no drops");
    } else {
        line.push_str("; dropped: ");
        line.push_str(&drops.join(" "));
    }
    line
}

/// An outgoing datagram (a whole encapsulated packet or one fragment of it) waiting for the
/// batch send: `header` then bytes `inner` of the packet in batch slot `slot`.
#[derive(Clone)]
struct Pending {
    slot: usize,
    dst: Ipv4Addr,
    header: [u8; MAX_OUTER_HEADER],
    header_len: u8,
    inner: Range<usize>,
}

/// Queues the datagrams of one encapsulated packet (`pkt`, in batch slot `slot`): the packet
/// whole, or its fragments with the next identification of `idents`. Returns false, queueing
/// nothing, if it cannot be fragmented (the core checked that it can, so this does not happen).
///
/// Every queued `inner` range lies within `pkt`, so the send loop finds all of them.
fn queue_encap(
    pending: &mut Vec<Pending>,
    idents: &mut IdentSeq,
    slot: usize,
    pkt: &[u8],
    e: &Encap,
) -> bool {
    if e.len > pkt.len() {
        return false;
    }
    if e.frag_mtu == 0 {
        pending.push(Pending {
            slot,
            dst: e.dst,
            header: e.header,
            header_len: e.header_len,
            inner: 0..e.len,
        });
        return true;
    }
    match encap::fragment(e.header(), e.len, e.frag_mtu, idents.next_ident()) {
        // `pending` has room for MAX_FRAGMENTS per packet of the batch: no reallocation.
        Ok(frags) if frags.len() <= MAX_FRAGMENTS => {
            pending.extend(frags.map(|f| Pending {
                slot,
                dst: e.dst,
                header: f.header,
                header_len: f.header_len as u8,
                inner: f.inner,
            }));
            true
        }
        _ => false,
    }
}

/// One segment of a GSO super-packet waiting for the batch send: outer headers and the
/// segment's own IPv4 + TCP headers in `header`, then bytes `payload` of the super-packet in
/// batch slot `slot`.
#[derive(Clone)]
struct SegPending {
    slot: usize,
    dst: Ipv4Addr,
    header: [u8; MAX_OUTER_HEADER + MAX_SEGMENT_HEADER],
    header_len: u8,
    payload: Range<usize>,
}

/// Queues every segment of the super-packet `pkt` (batch slot `slot`) that the core decided
/// to encapsulate as `e`: the outer header is copied in front of each segment's headers and
/// fixed for its length ([`gso::fix_outer`]). Returns false, queueing nothing, if `segs` has no
/// room for them all, the core asked for fragments, or `seg` does not describe `pkt`.
fn queue_gso_encap(
    segs: &mut Vec<SegPending>,
    slot: usize,
    pkt: &[u8],
    e: &Encap,
    seg: &Segmenter,
) -> bool {
    if segs.capacity() - segs.len() < seg.count() || e.frag_mtu != 0 {
        return false;
    }
    let start = segs.len();
    let ok = encap_segments(pkt, e, seg, |header, payload| {
        let mut sp = SegPending {
            slot,
            dst: e.dst,
            header: [0; MAX_OUTER_HEADER + MAX_SEGMENT_HEADER],
            header_len: header.len() as u8,
            payload,
        };
        sp.header[..header.len()].copy_from_slice(header);
        segs.push(sp);
        true
    });
    if !ok {
        segs.truncate(start);
    }
    ok
}

/// [`queue_gso_encap`] for a real server reached by frames (`link`): the outer header is
/// completed for an `AF_PACKET` send first ([`frame_outer`]; every segment has DF set and
/// shares the identification), and the segments go to `frames`.
fn queue_gso_frames(
    frames: &mut FrameQueue,
    idents: &mut IdentSeq,
    slot: usize,
    pkt: &[u8],
    e: &Encap,
    seg: &Segmenter,
    link: &TunnelLink,
) -> bool {
    if frames.segment_room() < seg.count() || e.frag_mtu != 0 {
        return false;
    }
    let mut e = *e;
    let hl = usize::from(e.header_len).min(MAX_OUTER_HEADER);
    if !frame_outer(&mut e.header[..hl], link.src, idents.next_ident().get()) {
        return false;
    }
    let start = frames.segments_len();
    let kind = EncapKind::of_outer(e.header());
    let ok = encap_segments(pkt, &e, seg, |header, payload| {
        frames.push_segment(slot, link.to, kind, header, payload)
    });
    if !ok {
        frames.truncate_segments(start);
    }
    ok
}

/// Builds every segment of the super-packet `pkt` that the core decided to encapsulate as
/// `e` and hands it to `push` (headers, payload range in `pkt`): the outer header is copied in
/// front of each segment's headers and fixed for its length ([`gso::fix_outer`]). Returns
/// false at the first segment that cannot be built or pushed.
fn encap_segments(
    pkt: &[u8],
    e: &Encap,
    seg: &Segmenter,
    mut push: impl FnMut(&[u8], Range<usize>) -> bool,
) -> bool {
    let hl = usize::from(e.header_len);
    for i in 0..seg.count() {
        let mut header = [0u8; MAX_OUTER_HEADER + MAX_SEGMENT_HEADER];
        let (outer, inner) = header.split_at_mut(hl);
        outer.copy_from_slice(e.header());
        let Some(s) = seg.segment(pkt, i, inner) else {
            return false;
        };
        let inner_sum = checksum::combine(&[checksum::data(&inner[..s.header_len]), s.payload_sum]);
        if !gso::fix_outer(outer, s.header_len + s.payload.len(), inner_sum) {
            return false;
        }
        if !push(&header[..hl + s.header_len], s.payload) {
            return false;
        }
    }
    true
}

/// Bytes in front of one record's payload in a GUE train: the GUE header, then the segment's
/// own IPv4 and TCP headers.
const RECORD_HEADER: usize = gue::HEADER_LEN + MAX_SEGMENT_HEADER;

/// UDP sockets per worker for GUE trains (each its own source port, picked by flow hash).
const GUE_POOL_SOCKETS: usize = 16;

/// A GSO super-packet the core decided to send over GUE, waiting to go out as UDP trains.
#[derive(Clone)]
struct GueTrain {
    slot: usize,
    encap: Encap,
    seg: Segmenter,
}

impl GueTrain {
    /// The outer fields a UDP socket sets itself, read from the header the core built:
    /// destination, source address, TOS, and the pool socket its source port maps to.
    fn outer(&self, pool_len: usize) -> Option<(SocketAddrV4, Ipv4Addr, u8, usize, [u8; 4])> {
        let h = self.encap.header();
        let ihl = usize::from(*h.first()? & 0x0f) * 4;
        if *h.get(9)? != crate::wire::IpProtocol::UDP {
            return None;
        }
        let udp = h.get(ihl..ihl + 8)?;
        let gue: [u8; 4] = h.get(ihl + 8..ihl + 8 + gue::HEADER_LEN)?.try_into().ok()?;
        let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
        let sport = u16::from_be_bytes([udp[0], udp[1]]);
        let dport = u16::from_be_bytes([udp[2], udp[3]]);
        let sock = usize::from(sport.wrapping_sub(encap::GUE_SRC_PORT_BASE)) % pool_len.max(1);
        Some((
            SocketAddrV4::new(self.encap.dst, dport),
            src,
            h[1],
            sock,
            gue,
        ))
    }
}

/// How many records of `record` bytes (GUE + headers + one MSS of payload) one UDP GSO send
/// carries: at most [`udp_gso::MAX_SEGMENTS`] and [`udp_gso::MAX_PAYLOAD`] bytes.
fn records_per_send(record: usize) -> usize {
    (udp_gso::MAX_PAYLOAD / record.max(1)).clamp(1, udp_gso::MAX_SEGMENTS)
}

/// Builds the records of segments `range` of the super-packet `pkt`: for each, `gue` then the
/// segment's IPv4 and TCP headers (full checksums, [`Segmenter::segment`]) into the next
/// entry of `hdrs`, and two entries of `parts`: those headers and the payload (left in `pkt`).
/// Sent back to back with `UDP_SEGMENT` = the first record's length, every datagram is one
/// GUE packet. Returns the parts used and the first record's length; `None` if `hdrs` or
/// `parts` are too short or `seg` does not describe `pkt`.
fn gue_records<'a>(
    pkt: &'a [u8],
    seg: &Segmenter,
    gue_hdr: [u8; 4],
    range: Range<usize>,
    hdrs: &'a mut [[u8; RECORD_HEADER]],
    parts: &mut [&'a [u8]],
) -> Option<(usize, usize)> {
    let mut used = 0;
    let mut first = 0;
    let mut hdrs = hdrs.iter_mut();
    for i in range {
        let h = hdrs.next()?;
        h[..gue::HEADER_LEN].copy_from_slice(&gue_hdr);
        let s = seg.segment(pkt, i, &mut h[gue::HEADER_LEN..])?;
        let h: &'a [u8] = h.get(..gue::HEADER_LEN + s.header_len)?;
        let payload = pkt.get(s.payload)?;
        if used == 0 {
            first = h.len() + payload.len();
        }
        *parts.get_mut(used)? = h;
        *parts.get_mut(used + 1)? = payload;
        used += 2;
    }
    Some((used, first))
}

/// Sends every segment of `t` (super-packet `pkt`) as GUE records in UDP GSO trains, as many
/// records per `sendmsg` as [`records_per_send`] allows, each counted in `sizes`. Stops at
/// the first refused send.
fn send_train(
    pool: &mut UdpGsoPool,
    records: &mut [[u8; RECORD_HEADER]],
    pkt: &[u8],
    t: &GueTrain,
    sizes: &mut BatchHistogram,
) -> std::io::Result<()> {
    let bad = || std::io::Error::from_raw_os_error(libc::EINVAL);
    let (dst, src, tos, sock, gue_hdr) = t.outer(pool.len()).ok_or_else(bad)?;
    let record = gue::HEADER_LEN + t.seg.max_segment_len();
    let per_send = records_per_send(record).min(records.len());
    let mut i = 0;
    while i < t.seg.count() {
        let mut parts: [&[u8]; udp_gso::MAX_PARTS] = [&[]; udp_gso::MAX_PARTS];
        let end = (i + per_send).min(t.seg.count());
        let (used, first) =
            gue_records(pkt, &t.seg, gue_hdr, i..end, records, &mut parts).ok_or_else(bad)?;
        let size = u16::try_from(first).map_err(|_| bad())?;
        pool.send(sock, dst, src, tos, size, &parts[..used])?;
        sizes.record(end - i);
        i = end;
    }
    Ok(())
}

/// Bytes in front of a GUE train sent whole as one frame: the virtio header, the Ethernet
/// header, the outer IPv4 and UDP headers.
const TRAIN_HEAD: usize = VNET_HDR_LEN + ETH_HLEN + 20 + 8;
/// Length of an Ethernet header.
const ETH_HLEN: usize = 14;

/// The headers of a GUE train of `records` records (the first `record` bytes long, `len`
/// bytes in all) sent whole to `link` as one frame from the outer header `e.header()`: a
/// virtio header asking for UDP segmentation (`GSO_UDP_L4`, one record per datagram; none for
/// a single record) with the UDP checksum left partial (the pseudo-header sum, completed per
/// datagram), the Ethernet header, and the outer IPv4 header completed for an `AF_PACKET` send
/// ([`frame_outer`], identification `ident`). `None` if the header is not IPv4 + UDP or the
/// train does not fit one UDP datagram.
fn train_head(
    e: &Encap,
    link: &TunnelLink,
    ident: u16,
    record: usize,
    records: usize,
    len: usize,
) -> Option<[u8; TRAIN_HEAD]> {
    let h = e.header();
    if h.first() != Some(&0x45) || h.get(9) != Some(&crate::wire::IpProtocol::UDP) {
        return None;
    }
    let udp_len = u16::try_from(8 + len).ok()?;
    let total = u16::try_from(20 + 8 + len).ok()?;
    let mut head = [0u8; TRAIN_HEAD];
    let (vnet, rest) = head.split_at_mut(VNET_HDR_LEN);
    let (eth, outer) = rest.split_at_mut(ETH_HLEN);
    outer.copy_from_slice(h.get(..28)?);
    outer[2..4].copy_from_slice(&total.to_be_bytes());
    outer[24..26].copy_from_slice(&udp_len.to_be_bytes());
    outer[26..28].copy_from_slice(&[0, 0]);
    if !frame_outer(outer, link.src, ident) {
        return None;
    }
    let src = Ipv4Addr::new(outer[12], outer[13], outer[14], outer[15]);
    let partial = checksum::pseudo_header_v4(src, e.dst, crate::wire::IpProtocol::UDP, udp_len);
    outer[26..28].copy_from_slice(&partial.to_be_bytes());
    eth[..6].copy_from_slice(&link.to.mac);
    eth[6..12].copy_from_slice(&link.src_mac);
    eth[12..14].copy_from_slice(&(libc::ETH_P_IP as u16).to_be_bytes());
    let segmented = records > 1;
    let vh = VnetHdr {
        flags: gso::F_NEEDS_CSUM,
        gso_type: if segmented {
            gso::GSO_UDP_L4
        } else {
            gso::GSO_NONE
        },
        hdr_len: (ETH_HLEN + 28) as u16,
        gso_size: if segmented {
            u16::try_from(record).ok()?
        } else {
            0
        },
        csum_start: (ETH_HLEN + 20) as u16,
        csum_offset: 6,
    };
    vh.emit(<&mut [u8; VNET_HDR_LEN]>::try_from(vnet).ok()?);
    Some(head)
}

/// Sends every segment of `t` (super-packet `pkt`) as GUE records in frames to `link` on the
/// `PACKET_VNET_HDR` socket, as many records per frame as [`records_per_send`] allows, each
/// frame one UDP GSO super-packet ([`train_head`]), its records counted in `sizes` as a
/// `UDP_SEGMENT` send's are. Stops at the first refused send.
fn send_train_frames(
    frames: &FrameQueue,
    records: &mut [[u8; RECORD_HEADER]],
    idents: &mut IdentSeq,
    pkt: &[u8],
    t: &GueTrain,
    link: &TunnelLink,
    sizes: &mut BatchHistogram,
) -> std::io::Result<()> {
    let bad = || std::io::Error::from_raw_os_error(libc::EINVAL);
    let (_, _, _, _, gue_hdr) = t.outer(1).ok_or_else(bad)?;
    let record = gue::HEADER_LEN + t.seg.max_segment_len();
    let per_send = records_per_send(record).min(records.len());
    let mut i = 0;
    while i < t.seg.count() {
        let mut parts: [&[u8]; 1 + udp_gso::MAX_PARTS] = [&[]; 1 + udp_gso::MAX_PARTS];
        let end = (i + per_send).min(t.seg.count());
        let (used, first) =
            gue_records(pkt, &t.seg, gue_hdr, i..end, records, &mut parts[1..]).ok_or_else(bad)?;
        let len = parts[1..=used].iter().map(|p| p.len()).sum();
        let ident = idents.next_ident().get();
        let head = train_head(&t.encap, link, ident, first, end - i, len).ok_or_else(bad)?;
        parts[0] = &head;
        match frames.send_whole(link.to, &parts[..=used]) {
            Some(Ok(_)) => sizes.record(end - i),
            Some(Err(e)) => return Err(e),
            None => return Err(bad()),
        }
        i = end;
    }
    Ok(())
}

/// How a packet read from an offloading TUN is handled.
enum Offloaded {
    /// An ordinary packet (checksum completed if it was partial): decided as before.
    Plain,
    /// A TCP/IPv4 or UDP/IPv4 super-packet the core decides once; the driver segments it
    /// after (or hands it on whole).
    Gso(Segmenter, VnetHdr),
    /// A super-packet to cut into whole packets first, each then decided on its own (no DF, no
    /// partial checksum, checksum offsets not the L4 header's, or too many segments for this
    /// batch).
    Segment(u16),
    /// A malformed virtio header.
    Bad,
}

/// Looks at a packet's virtio header (`room`: how many more GSO segments this batch takes).
fn classify(hdr: &[u8; VNET_HDR_LEN], pkt: &mut [u8], room: usize) -> Offloaded {
    let Ok(vh) = VnetHdr::parse(hdr) else {
        return Offloaded::Bad;
    };
    if vh.check(pkt).is_err() {
        return Offloaded::Bad;
    }
    if !vh.is_gso() {
        if vh.needs_csum() && gso::complete_checksum(pkt, vh.csum_start, vh.csum_offset).is_err() {
            return Offloaded::Bad;
        }
        return Offloaded::Plain;
    }
    let proto = match vh.kind() {
        gso::GSO_TCPV4 => IpProtocol::TCP,
        // Not served (IPv4 only): the core drops it as not_ipv4.
        gso::GSO_TCPV6 => return Offloaded::Plain,
        gso::GSO_UDP_L4 if pkt.first().is_some_and(|b| b >> 4 == 6) => return Offloaded::Plain,
        // UDP GRO forwarding (TUN_F_USO4): datagrams of one flow, gso_size bytes each.
        gso::GSO_UDP_L4 => IpProtocol::UDP,
        // UFO and IPv6 UDP were not asked for.
        _ => return Offloaded::Bad,
    };
    let Ok(seg) = Segmenter::new(pkt, vh.gso_size) else {
        return Offloaded::Bad;
    };
    if seg.protocol() != proto {
        return Offloaded::Bad;
    }
    let ihl = usize::from(pkt.first().map_or(0, |b| b & 0x0f)) * 4;
    let dont_frag = pkt.get(6).is_some_and(|b| b & 0x40 != 0);
    let l4_csum = vh.needs_csum()
        && usize::from(vh.csum_start) == ihl
        && Some(vh.csum_offset) == gso::l4_checksum_offset(proto);
    if seg.count() == 1 && l4_csum {
        if gso::complete_checksum(pkt, vh.csum_start, vh.csum_offset).is_err() {
            return Offloaded::Bad;
        }
        return Offloaded::Plain;
    }
    if !l4_csum || !dont_frag || seg.count() > room {
        return Offloaded::Segment(vh.gso_size);
    }
    Offloaded::Gso(seg, vh)
}

/// A packet to write back into the TUN: batch slot, length, and the virtio header to put in
/// front of a GSO packet (`None`: an all-zero one).
type Reply = (usize, usize, Option<[u8; VNET_HDR_LEN]>);

/// What one worker owns besides its input batch.
struct Worker {
    index: usize,
    queue: Arc<TunQueue>,
    core: Arc<Mutex<Director>>,
    clock: Clock,
    pending: Vec<Pending>,
    segs: Vec<SegPending>,
    idents: IdentSeq,
    replies: Vec<Reply>,
    /// Slots (and MSS) of super-packets to segment before deciding.
    deferred: Vec<(usize, u16)>,
    sender: RawSender,
    frames: FrameQueue,
    /// The TUN-mode real servers reached by frames; `None` with `--tunnel-tx raw`.
    links: Option<LinkView>,
    /// TUN-mode packets queued as frames in this batch.
    tunnel_framed: usize,
    /// Whether this worker has logged its first tunnel frames.
    framed_logged: bool,
    /// Whether GUE trains to framed real servers go out whole as frames (until the kernel
    /// refuses the first one).
    train_frames: bool,
    /// Whether a GUE train has gone out as a frame (a refusal after that is a send error).
    train_frames_sent: bool,
    /// UDP sockets for GUE trains; `None` without offload or once the kernel refused one.
    gue_pool: Option<UdpGsoPool>,
    /// Whether a train has gone out (a refusal after that is a send error, not a fallback).
    gue_sent: bool,
    /// Record headers of one train send.
    records: Vec<[u8; RECORD_HEADER]>,
    /// Packets the last TUN read returned, counted (and reset) by the next `process` under the
    /// core's lock; 0 for a batch that does not come from a read (segmented super-packets).
    read_len: usize,
}

impl Worker {
    /// Decides packets `0..batch.len()` (with their virtio headers when the TUN offloads),
    /// sends what is to be sent, and writes replies back into the TUN. Super-packets to be
    /// segmented first are left in `self.deferred`.
    fn process(&mut self, batch: &mut PacketBatch, hdrs: Option<&[[u8; VNET_HDR_LEN]]>) {
        let n = batch.len();
        self.pending.clear();
        self.segs.clear();
        self.frames.clear();
        self.replies.clear();
        self.deferred.clear();
        self.tunnel_framed = 0;
        if let Some(v) = &mut self.links {
            v.sync();
        }
        // A handle of our own, so `self` stays free for the send helpers while it is locked.
        let core = self.core.clone();
        let Ok(mut d) = core.lock() else { return };
        d.count_read_batch(std::mem::take(&mut self.read_len));
        let now = self.clock.now();
        // Start every packet's connection-table load before deciding any, so the cache
        // misses of a large table overlap.
        for i in 0..n {
            if let Some(buf) = batch.get(i) {
                d.prefetch(buf);
            }
        }
        for i in 0..n {
            let Some(meta) = batch.meta(i).copied() else {
                continue;
            };
            if meta.truncated {
                d.count_drop(DropReason::Oversized);
                continue;
            }
            let Some(buf) = batch.get_mut(i) else {
                continue;
            };
            let kind = match hdrs.and_then(|h| h.get(i)) {
                None => Offloaded::Plain,
                Some(h) => {
                    let room =
                        (self.segs.capacity() - self.segs.len()).min(self.frames.segment_room());
                    classify(h, buf, room)
                }
            };
            let (v, gso) = match kind {
                Offloaded::Plain => (d.handle_packet(now, buf), None),
                Offloaded::Gso(seg, vh) => {
                    let segs = seg.count() as u32;
                    (
                        d.handle_gso(now, buf, seg.max_segment_len(), segs),
                        Some((seg, vh)),
                    )
                }
                Offloaded::Segment(mss) => {
                    d.count_gso_split();
                    self.deferred.push((i, mss));
                    continue;
                }
                Offloaded::Bad => {
                    d.count_drop(DropReason::BadVnetHdr);
                    continue;
                }
            };
            match (v, gso) {
                (Verdict::Encap(e), None) => {
                    let queued = match self.links.as_ref().and_then(|v| v.get(e.dst)) {
                        Some(link) => {
                            self.tunnel_framed += 1;
                            self.frames.queue_encap(&mut self.idents, i, buf, &e, link)
                        }
                        None => queue_encap(&mut self.pending, &mut self.idents, i, buf, &e),
                    };
                    if !queued {
                        d.count_send_errors(EncapKind::of_outer(e.header()), 1);
                    }
                }
                (Verdict::Encap(e), Some((seg, _)))
                    if self.gue_pool.is_some()
                        && e.frag_mtu == 0
                        && e.header().get(9) == Some(&crate::wire::IpProtocol::UDP) =>
                {
                    let t = GueTrain {
                        slot: i,
                        encap: e,
                        seg,
                    };
                    self.send_train_now(batch, &t, &mut d);
                }
                (Verdict::Encap(e), Some((seg, _))) => {
                    let queued = match self.links.as_ref().and_then(|v| v.get(e.dst)) {
                        Some(link) => {
                            self.tunnel_framed += 1;
                            let (frames, idents) = (&mut self.frames, &mut self.idents);
                            queue_gso_frames(frames, idents, i, buf, &e, &seg, link)
                        }
                        None => queue_gso_encap(&mut self.segs, i, buf, &e, &seg),
                    };
                    if !queued {
                        let kind = EncapKind::of_outer(e.header());
                        d.count_send_errors(kind, u64::from(seg.count() as u32));
                    }
                }
                (Verdict::Ether(e), None) => {
                    if !self.frames.queue(&mut self.idents, i, buf, &e) {
                        d.count_send_errors(EncapKind::Dr, 1);
                    }
                }
                (Verdict::Ether(e), Some((seg, vh))) => {
                    if !self.frames.queue_gso(i, buf, &e, &seg, &vh) {
                        d.count_send_errors(EncapKind::Dr, u64::from(seg.count() as u32));
                    }
                }
                (Verdict::Rewrite { len }, Some((_, vh))) => {
                    // NAT rewrote addresses: the partial checksum (a pseudo-header sum) must
                    // follow them; the kernel completes it per segment. `classify` checked that
                    // the field lies inside the TCP or UDP header.
                    let at = usize::from(vh.csum_start) + usize::from(vh.csum_offset);
                    if let (Some(sum), Some(field)) =
                        (gso::partial_checksum(buf, len), buf.get_mut(at..at + 2))
                    {
                        field.copy_from_slice(&sum.to_be_bytes());
                    }
                    let mut h = [0u8; VNET_HDR_LEN];
                    vh.emit(&mut h);
                    self.replies.push((i, len, Some(h)));
                }
                (Verdict::Reply { len } | Verdict::Rewrite { len }, _) => {
                    self.replies.push((i, len, None))
                }
                (Verdict::Drop(_), _) => {}
            }
        }
        d.handle_timeout(now);
        if !self.pending.is_empty() || !self.segs.is_empty() {
            self.flush_raw(batch, &mut d);
        }
        if !self.frames.is_empty() {
            self.flush_frames(batch, &mut d);
        }
        d.count_tun_writes(self.replies.len());
        drop(d);
        for &(slot, len, hdr) in &self.replies {
            if let Some(pkt) = batch.get(slot).and_then(|p| p.get(..len)) {
                let _ = match hdr {
                    Some(h) => self.queue.send_vnet(&h, pkt),
                    None => self.queue.send(pkt),
                };
            }
        }
    }

    /// Sends the queued frames (DR and TUN mode) in one batch and empties the queue.
    fn flush_frames(&mut self, batch: &PacketBatch, d: &mut Director) {
        let failed = self
            .frames
            .flush(batch, d.send_batch_sizes(SendSocket::Packet));
        for (kind, n) in failed.by_kind() {
            d.count_send_errors(kind, n);
        }
        self.note_tunnel_frames(failed.total());
        self.frames.clear();
        self.tunnel_framed = 0;
    }

    /// After a frame flush: remembers the interfaces it found gone (their TUN-mode servers take
    /// the raw socket until the resolver's next refresh) and logs the first tunnel frames sent.
    fn note_tunnel_frames(&mut self, failed: u64) {
        let Some(view) = &mut self.links else { return };
        for &ifindex in self.frames.gone_interfaces() {
            if view.mark_gone(ifindex) {
                eprintln!(
                    "tunlb director: worker {}: interface {ifindex} is gone; its TUN real servers take the raw socket until the next refresh",
                    self.index
                );
            }
        }
        if self.tunnel_framed > 0 && failed == 0 && !self.framed_logged {
            self.framed_logged = true;
            eprintln!(
                "tunlb director: worker {}: tunnel packets sent as Ethernet frames ({} in the first batch)",
                self.index, self.tunnel_framed
            );
        }
    }

    /// Sends the datagrams queued for the raw socket (`pending`, then `segs`) in one batch and
    /// empties both queues.
    fn flush_raw(&mut self, batch: &PacketBatch, d: &mut Director) {
        // queue_encap and queue_gso_encap checked every range, so no item is skipped and
        // the failure positions are positions in `pending` followed by `segs`.
        let items = self.pending.iter().filter_map(|p| {
            let pkt = batch.get(p.slot)?.get(p.inner.clone())?;
            Some((p.dst, &p.header[..p.header_len as usize], pkt))
        });
        let segs = self.segs.iter().filter_map(|p| {
            let payload = batch.get(p.slot)?.get(p.payload.clone())?;
            Some((p.dst, &p.header[..p.header_len as usize], payload))
        });
        let report = self.sender.send_batch(items.chain(segs));
        d.send_batch_sizes(SendSocket::Raw)
            .record(report.sent + report.failed);
        if report.failed > 0 {
            let failures = self.sender.failures();
            let whole = failures.partition_point(|f| f.index < self.pending.len());
            for p in dr_io::lost_packets(&self.pending, &failures[..whole], |p| p.slot) {
                d.count_send_errors(EncapKind::of_outer(&p.header), 1);
            }
            for f in &failures[whole..] {
                let seg = f.index.checked_sub(self.pending.len());
                if let Some(s) = seg.and_then(|i| self.segs.get(i)) {
                    d.count_send_errors(EncapKind::of_outer(&s.header), 1);
                }
            }
        }
        self.pending.clear();
        self.segs.clear();
    }

    /// Sends a GUE super-packet as UDP GSO trains, right away: what the raw socket and the
    /// frame queue hold from earlier packets of the batch goes first, so a flow's packets keep
    /// their order. If
    /// the kernel refuses the very first train (no `UDP_SEGMENT`, or a path MTU below the
    /// records), the pool is dropped with a log line and this and every later super-packet
    /// takes the raw path (segments queued in `segs`).
    fn send_train_now(&mut self, batch: &PacketBatch, t: &GueTrain, d: &mut Director) {
        let Some(pkt) = batch.get(t.slot) else { return };
        if self.gue_pool.is_some() {
            if !self.pending.is_empty() || !self.segs.is_empty() {
                self.flush_raw(batch, d);
            }
            if !self.frames.is_empty() {
                self.flush_frames(batch, d);
            }
            let link = self
                .links
                .as_ref()
                .and_then(|v| v.get(t.encap.dst))
                .copied();
            if let (Some(link), true) = (link, self.train_frames) {
                let (frames, idents) = (&self.frames, &mut self.idents);
                let sizes = d.send_batch_sizes(SendSocket::UdpGso);
                match send_train_frames(frames, &mut self.records, idents, pkt, t, &link, sizes) {
                    Ok(()) => {
                        if !self.train_frames_sent {
                            self.train_frames_sent = true;
                            eprintln!(
                                "tunlb director: worker {}: GUE trains leave whole as Ethernet frames (UDP segmentation offload)",
                                self.index
                            );
                        }
                        return;
                    }
                    Err(e) if !self.train_frames_sent => {
                        eprintln!(
                            "tunlb director: worker {}: a GUE train as one frame refused ({e}); GUE super-packets go to the UDP sockets",
                            self.index
                        );
                        self.train_frames = false;
                    }
                    Err(_) => {
                        d.count_send_errors(EncapKind::Gue, t.seg.count() as u64);
                        return;
                    }
                }
            }
            let Some(pool) = self.gue_pool.as_mut() else {
                return;
            };
            let sizes = d.send_batch_sizes(SendSocket::UdpGso);
            match send_train(pool, &mut self.records, pkt, t, sizes) {
                Ok(()) => {
                    self.gue_sent = true;
                    return;
                }
                Err(e)
                    if !self.gue_sent
                        && matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EIO)) =>
                {
                    eprintln!(
                        "tunlb director: worker {}: UDP_SEGMENT refused ({e}); GUE super-packets are segmented and sent one by one",
                        self.index
                    );
                    self.gue_pool = None;
                }
                Err(_) => {
                    d.count_send_errors(EncapKind::Gue, t.seg.count() as u64);
                    return;
                }
            }
        }
        if !queue_gso_encap(&mut self.segs, t.slot, pkt, &t.encap, &t.seg) {
            d.count_send_errors(EncapKind::Gue, t.seg.count() as u64);
        }
    }

    /// Cuts the deferred super-packets of `batch` into whole packets in `spill` (as many at a
    /// time as it holds) and decides and sends those like packets read from the TUN.
    fn process_deferred(&mut self, batch: &PacketBatch, spill: &mut PacketBatch) {
        let deferred = std::mem::take(&mut self.deferred);
        for &(slot, mss) in &deferred {
            let Some(pkt) = batch.get(slot) else { continue };
            let Ok(seg) = Segmenter::new(pkt, mss) else {
                continue;
            };
            let mut k = 0;
            while k < seg.count() {
                spill.clear();
                let mut m = 0;
                while m < spill.capacity() && k < seg.count() {
                    let Some(out) = spill.slot_mut(m) else { break };
                    let (len, truncated) = match seg.write_segment(pkt, k, out) {
                        Some(len) => (len, false),
                        None => (0, true),
                    };
                    spill.set_meta(
                        m,
                        PacketMeta {
                            len,
                            src: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                            truncated,
                        },
                    );
                    m += 1;
                    k += 1;
                }
                spill.set_filled(m);
                self.process(spill, None);
            }
        }
        // Hand the (empty) vector back so its capacity is kept.
        self.deferred = deferred;
        self.deferred.clear();
    }
}

/// GSO segments one batch can queue (allocated once per worker).
const MAX_QUEUED_SEGMENTS: usize = dr_io::MAX_QUEUED_SEGMENTS;
/// Reads per batch when the TUN offloads: each may be a 64 KB super-packet.
const OFFLOAD_BATCH: usize = 16;
/// Slot size when the TUN offloads: the largest IPv4 packet.
const OFFLOAD_SLOT: usize = 65535;

/// What a worker thread starts with.
struct WorkerStart {
    /// Its number, and how many there are (for IP identifications of its own).
    index: usize,
    workers: usize,
    queue: Arc<TunQueue>,
    core: Arc<Mutex<Director>>,
    clock: Clock,
    batch_size: usize,
    links: Option<LinkView>,
}

fn worker(start: WorkerStart, stop: &AtomicBool) {
    let WorkerStart {
        index,
        workers,
        queue,
        core,
        clock,
        batch_size,
        links,
    } = start;
    let offload = queue.vnet_hdr();
    let mut batch = if offload {
        PacketBatch::new(batch_size.min(OFFLOAD_BATCH), OFFLOAD_SLOT)
    } else {
        PacketBatch::new(batch_size, 2048)
    };
    let mut hdrs = vec![[0u8; VNET_HDR_LEN]; batch.capacity()];
    // Super-packets segmented before deciding land here (2048-byte slots, as without offload).
    let mut spill = PacketBatch::new(if offload { batch_size } else { 1 }, 2048);
    let sender = match RawSender::new(batch_size.max(MAX_QUEUED_SEGMENTS)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tunlb director: worker {index}: cannot open raw socket: {e}");
            signal::notify(signal::Signal::Terminate);
            return;
        }
    };
    let frames = match FrameQueue::new(batch_size) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("tunlb director: worker {index}: cannot open the DR packet socket: {e}");
            signal::notify(signal::Signal::Terminate);
            return;
        }
    };
    let mut w = Worker {
        index,
        queue,
        core,
        clock,
        pending: Vec::with_capacity(batch_size * MAX_FRAGMENTS),
        segs: Vec::with_capacity(if offload { MAX_QUEUED_SEGMENTS } else { 0 }),
        idents: IdentSeq::new(index, workers),
        replies: Vec::with_capacity(batch_size),
        deferred: Vec::with_capacity(batch.capacity()),
        sender,
        frames,
        links,
        tunnel_framed: 0,
        framed_logged: false,
        train_frames: true,
        train_frames_sent: false,
        gue_pool: None,
        gue_sent: false,
        records: vec![[0u8; RECORD_HEADER]; if offload { udp_gso::MAX_SEGMENTS } else { 0 }],
        read_len: 0,
    };
    if offload {
        match UdpGsoPool::new(GUE_POOL_SOCKETS) {
            Ok(p) => w.gue_pool = Some(p),
            Err(e) => eprintln!(
                "tunlb director: worker {index}: no UDP sockets for GUE trains ({e}); GUE super-packets are segmented"
            ),
        }
    }
    while !stop.load(Ordering::Relaxed) {
        let timeout = Some(StdDuration::from_millis(100));
        let read = if offload {
            w.queue.recv_batch_vnet(&mut batch, &mut hdrs, timeout)
        } else {
            w.queue.recv_batch(&mut batch, timeout)
        };
        if let Err(e) = read {
            eprintln!("tunlb director: worker {}: TUN read failed: {e}", w.index);
            std::thread::sleep(StdDuration::from_millis(10));
            continue;
        }
        w.read_len = batch.len();
        w.process(&mut batch, offload.then_some(&hdrs[..]));
        if !w.deferred.is_empty() {
            w.process_deferred(&batch, &mut spill);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encap::{build_outer, OuterParams, Tunnel};
    use crate::wire::testing::tcp_packet;
    use crate::wire::Ipv4Packet;

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 100);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);

    /// A 3-segment super-packet as TUN hands it out: TCP checksum = pseudo-header sum.
    fn super_packet(df: bool) -> (Vec<u8>, [u8; VNET_HDR_LEN]) {
        let mut p = tcp_packet(CLIENT, 40000, VIP, 80, 0x18, 3000);
        if !df {
            p[6] = 0;
            p[10..12].copy_from_slice(&[0, 0]);
            let c = !checksum::data(&p[..20]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
        }
        let partial = gso::partial_checksum(&p, p.len()).unwrap();
        p[36..38].copy_from_slice(&partial.to_be_bytes());
        (p, gso_hdr(gso::GSO_TCPV4, 40, 1400, 16))
    }

    /// The virtio header of a GSO packet with a partial checksum at `csum_offset` in the L4
    /// header (after a 20-byte IPv4 header).
    fn gso_hdr(gso_type: u8, hdr_len: u16, gso_size: u16, csum_offset: u16) -> [u8; VNET_HDR_LEN] {
        let vh = VnetHdr {
            flags: gso::F_NEEDS_CSUM,
            gso_type,
            hdr_len,
            gso_size,
            csum_start: 20,
            csum_offset,
        };
        let mut h = [0u8; VNET_HDR_LEN];
        vh.emit(&mut h);
        h
    }

    fn tcp_checksum_ok(seg: &[u8]) -> bool {
        let ip = Ipv4Packet::new_checked(seg).unwrap();
        let l4 = &seg[ip.header_len()..];
        checksum::combine(&[
            checksum::pseudo_header_v4(ip.src_addr(), ip.dst_addr(), 6, l4.len() as u16),
            checksum::data(l4),
        ]) == 0xffff
    }

    #[test]
    fn classify_sorts_offloaded_packets() {
        let (mut p, h) = super_packet(true);
        assert!(matches!(classify(&h, &mut p, 64), Offloaded::Gso(s, _) if s.count() == 3));
        // No room for 3 segments, or no DF: segment first, then decide each.
        assert!(matches!(classify(&h, &mut p, 2), Offloaded::Segment(1400)));
        let (mut q, h2) = super_packet(false);
        assert!(matches!(
            classify(&h2, &mut q, 64),
            Offloaded::Segment(1400)
        ));
        // A UDP offload over a TCP packet, and offsets outside the packet: malformed.
        let mut bad = h;
        bad[1] = gso::GSO_UDP_L4;
        assert!(matches!(classify(&bad, &mut p, 64), Offloaded::Bad));
        // A UDP train (UDP GRO forwarding, TUN_F_USO4): decided once, 4 datagrams; a UDP
        // offload not asked for (UFO) is malformed; a TCP offload over UDP too.
        let mut u = crate::wire::testing::udp_packet(CLIENT, 40000, VIP, 443, 3 * 1200 + 500);
        let partial = gso::partial_checksum(&u, u.len()).unwrap();
        u[26..28].copy_from_slice(&partial.to_be_bytes());
        let uh = gso_hdr(gso::GSO_UDP_L4, 28, 1200, 6);
        assert!(matches!(classify(&uh, &mut u, 64), Offloaded::Gso(s, _)
            if s.count() == 4 && s.protocol() == crate::wire::IpProtocol::UDP));
        let mut ufo = uh;
        ufo[1] = gso::GSO_UDP;
        assert!(matches!(classify(&ufo, &mut u, 64), Offloaded::Bad));
        let mut tso = uh;
        tso[1] = gso::GSO_TCPV4;
        assert!(matches!(classify(&tso, &mut u, 64), Offloaded::Bad));
        // TCP's checksum offset on a UDP train: cut first, then each datagram decided.
        let mut odd = uh;
        odd[8..10].copy_from_slice(&16u16.to_le_bytes());
        assert!(matches!(
            classify(&odd, &mut u, 64),
            Offloaded::Segment(1200)
        ));
        let mut bad = h;
        bad[6..8].copy_from_slice(&5000u16.to_le_bytes());
        assert!(matches!(classify(&bad, &mut p, 64), Offloaded::Bad));
        // An ordinary packet with a partial checksum: completed, then the old path.
        let mut small = tcp_packet(CLIENT, 40000, VIP, 80, 0x18, 100);
        let partial = gso::partial_checksum(&small, small.len()).unwrap();
        small[36..38].copy_from_slice(&partial.to_be_bytes());
        assert!(!tcp_checksum_ok(&small));
        let plain = VnetHdr {
            flags: gso::F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 16,
            ..VnetHdr::NONE
        };
        let mut hp = [0u8; VNET_HDR_LEN];
        plain.emit(&mut hp);
        assert!(matches!(classify(&hp, &mut small, 64), Offloaded::Plain));
        assert!(tcp_checksum_ok(&small));
    }

    /// The GUE verdict for super-packet `p` (outer header built for its first segment, as the
    /// core does), from 10.3.0.11 to 10.3.0.12 with `flow_hash`.
    fn gue_encap(p: &[u8], seg: &Segmenter, flow_hash: u32) -> (OuterParams, Encap) {
        let params = OuterParams {
            src: Ipv4Addr::new(10, 3, 0, 11),
            dst: Ipv4Addr::new(10, 3, 0, 12),
            tunnel: Tunnel::Gue {
                port: 6080,
                csum: true,
            },
            flow_hash,
        };
        let mut header = [0u8; MAX_OUTER_HEADER];
        let n = build_outer(&params, &p[..seg.max_segment_len()], &mut header).unwrap();
        let e = Encap {
            dst: params.dst,
            header,
            header_len: n as u8,
            len: p.len(),
            frag_mtu: 0,
        };
        (params, e)
    }

    #[test]
    fn gso_encap_queues_one_valid_datagram_per_segment() {
        let (mut p, h) = super_packet(true);
        let Offloaded::Gso(seg, _) = classify(&h, &mut p, 64) else {
            panic!("not GSO")
        };
        let (params, e) = gue_encap(&p, &seg, 9);
        let n = usize::from(e.header_len);
        let mut segs = Vec::with_capacity(4);
        assert!(queue_gso_encap(&mut segs, 5, &p, &e, &seg));
        assert_eq!(segs.len(), 3);
        let mut inner_payload = Vec::new();
        for s in &segs {
            let mut dgram = s.header[..s.header_len as usize].to_vec();
            dgram.extend_from_slice(&p[s.payload.clone()]);
            let outer = Ipv4Packet::new_checked(&dgram[..]).unwrap();
            assert!(outer.verify_checksum());
            assert_eq!(outer.total_len() as usize, dgram.len());
            let udp = &dgram[20..];
            let sum = checksum::combine(&[
                checksum::pseudo_header_v4(params.src, params.dst, 17, udp.len() as u16),
                checksum::data(udp),
            ]);
            assert_eq!(sum, 0xffff, "outer UDP checksum");
            let inner = &dgram[n..];
            assert!(tcp_checksum_ok(inner));
            inner_payload.extend_from_slice(&inner[40..]);
        }
        assert_eq!(inner_payload, &p[40..]);
        // No room for another 3: nothing queued.
        assert!(!queue_gso_encap(&mut segs, 6, &p, &e, &seg));
        assert_eq!(segs.len(), 3);
    }

    #[test]
    fn gue_train_records_are_whole_gue_packets_of_one_size() {
        let (mut p, h) = super_packet(true);
        let Offloaded::Gso(seg, _) = classify(&h, &mut p, 64) else {
            panic!("not GSO")
        };
        let (params, encap) = gue_encap(&p, &seg, 16 * 1000 + 5);
        let t = GueTrain {
            slot: 0,
            encap,
            seg,
        };
        let (dst, src, tos, sock, gue_hdr) = t.outer(16).unwrap();
        assert_eq!(dst, SocketAddrV4::new(params.dst, 6080));
        assert_eq!(src, params.src);
        assert_eq!(tos, p[1]);
        assert_eq!(sock, 5, "the flow's source port picks the socket");
        assert_eq!(gue_hdr, [0, 4, 0, 0]);

        let mut hdrs = vec![[0u8; RECORD_HEADER]; 8];
        let mut parts: [&[u8]; 16] = [&[]; 16];
        let (used, first) = gue_records(&p, &seg, gue_hdr, 0..3, &mut hdrs, &mut parts).unwrap();
        assert_eq!(used, 6);
        assert_eq!(first, 4 + 40 + 1400);
        let train: Vec<u8> = parts[..used].concat();
        // What UDP_SEGMENT makes of it: datagrams of `first` bytes, the last shorter.
        let mut payload = Vec::new();
        let records: Vec<&[u8]> = train.chunks(first).collect();
        assert_eq!(records.len(), 3);
        for r in &records {
            assert_eq!(encap::strip_gue(r).unwrap(), 4..r.len());
            let inner = &r[4..];
            assert!(Ipv4Packet::new_checked(inner).unwrap().verify_checksum());
            assert!(tcp_checksum_ok(inner));
            payload.extend_from_slice(&inner[40..]);
        }
        assert_eq!(payload, &p[40..]);
        // Too few header slots: refused, not cut short.
        let mut few = vec![[0u8; RECORD_HEADER]; 2];
        let mut parts2: [&[u8]; 16] = [&[]; 16];
        assert!(gue_records(&p, &seg, gue_hdr, 0..3, &mut few, &mut parts2).is_none());
        assert_eq!(records_per_send(first), 45);
        assert_eq!(records_per_send(100), udp_gso::MAX_SEGMENTS);
    }

    #[test]
    fn a_gue_train_frame_has_virtio_ethernet_and_completable_outer_headers() {
        let (mut p, h) = super_packet(true);
        let Offloaded::Gso(seg, _) = classify(&h, &mut p, 64) else {
            panic!("not GSO")
        };
        let (params, encap) = gue_encap(&p, &seg, 9);
        let link = TunnelLink {
            to: crate::sys::packet::LinkDst {
                ifindex: 2,
                mac: [2, 0, 0, 0, 0, 0x01],
            },
            src_mac: [2, 0, 0, 0, 0, 0x0b],
            src: Ipv4Addr::new(192, 0, 2, 1),
        };
        let t = GueTrain {
            slot: 0,
            encap,
            seg,
        };
        let (_, _, _, _, gue_hdr) = t.outer(1).unwrap();
        let mut hdrs = vec![[0u8; RECORD_HEADER]; 8];
        let mut parts: [&[u8]; 16] = [&[]; 16];
        let (used, first) = gue_records(&p, &t.seg, gue_hdr, 0..3, &mut hdrs, &mut parts).unwrap();
        let train: Vec<u8> = parts[..used].concat();
        let head = train_head(&t.encap, &link, 0x0102, first, 3, train.len()).unwrap();
        // Virtio: needs checksum, UDP segmentation into records, headers 14 + 28 bytes,
        // checksum from the UDP header (offset 34 of the frame), field at 6.
        let record = first as u16;
        let mut want = vec![1, gso::GSO_UDP_L4, 42, 0];
        want.extend_from_slice(&record.to_le_bytes());
        want.extend_from_slice(&[34, 0, 6, 0]);
        // Ethernet: next hop's MAC, the interface's, IPv4.
        want.extend_from_slice(&[2, 0, 0, 0, 0, 0x01, 2, 0, 0, 0, 0, 0x0b, 0x08, 0x00]);
        assert_eq!(&head[..VNET_HDR_LEN + ETH_HLEN], &want[..]);
        // The outer IPv4 header: the whole train's length, the ident, the core's source (it
        // was set), a valid checksum; UDP: the train's length, the partial checksum.
        let ip = &head[VNET_HDR_LEN + ETH_HLEN..];
        let udp_len = 8 + train.len() as u16;
        assert_eq!(&ip[2..4], &(20 + udp_len).to_be_bytes());
        assert_eq!(&ip[4..6], &[1, 2]);
        assert_eq!(&ip[12..16], &params.src.octets());
        assert_eq!(checksum::data(&ip[..20]), 0xffff);
        assert_eq!(&ip[24..26], &udp_len.to_be_bytes());
        let partial = checksum::pseudo_header_v4(params.src, params.dst, 17, udp_len);
        assert_eq!(&ip[26..28], &partial.to_be_bytes());

        // One record alone: no segmentation, and completing the checksum as the kernel does
        // gives a valid UDP datagram.
        let one = parts[..2].concat();
        let head = train_head(&t.encap, &link, 7, one.len(), 1, one.len()).unwrap();
        let vh = VnetHdr::parse(&head[..VNET_HDR_LEN]).unwrap();
        assert_eq!((vh.gso_type, vh.gso_size), (gso::GSO_NONE, 0));
        let mut pkt = head[VNET_HDR_LEN + ETH_HLEN..].to_vec();
        pkt.extend_from_slice(&one);
        gso::complete_checksum(&mut pkt, 20, 6).unwrap();
        let udp = &pkt[20..];
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(params.src, params.dst, 17, udp.len() as u16),
            checksum::data(udp),
        ]);
        assert_eq!(sum, 0xffff, "outer UDP checksum");
        assert_eq!(encap::strip_gue(udp.get(8..).unwrap()).unwrap().start, 4);
        // Not UDP (an IPIP header), or a train too long for one datagram: no head.
        let mut ipip = t.encap;
        ipip.header[9] = 4;
        assert!(train_head(&ipip, &link, 7, first, 3, train.len()).is_none());
        assert!(train_head(&t.encap, &link, 7, first, 60, 65_510).is_none());
    }
}
