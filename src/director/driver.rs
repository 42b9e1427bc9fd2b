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

use std::net::Ipv4Addr;
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
use super::{
    Director, DirectorConfig, DropReason, Encap, Shared, Snapshot, Verdict, MAX_FRAGMENTS,
};
use crate::control::config::{self, DirectorSettings};
use crate::control::keepalived;
use crate::encap::{self, IdentSeq, MAX_OUTER_HEADER};
use crate::sys::netcfg::{conf_key, NetChanges};
use crate::sys::raw::{MsgError, RawSender};
use crate::sys::tun::{TunDevice, TunQueue};
use crate::sys::{signal, PacketBatch};
use crate::time::Clock;

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
    let tun = TunDevice::create(&tun_name, queues, 1500)
        .with_context(|| format!("creating TUN device {tun_name} with {queues} queues"))?;
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
    for (i, (queue, core)) in tun_queues.into_iter().zip(cores.clone()).enumerate() {
        let stop = stop.clone();
        let batch = args.batch.max(1);
        let handle = std::thread::Builder::new()
            .name(format!("tunlb-worker-{i}"))
            .spawn(move || worker(i, queues, queue, core, clock, batch, &stop))
            .context("spawning a worker thread")?;
        workers.push(handle);
    }
    let resolver = dr_io::spawn_resolver(shared.clone(), stop.clone())
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
        "rx {} packets, forwarded {} ({} fragmented), nat-rewritten {}, icmp sent {}, connections {} created, {} expired, {} tracked",
        total.rx_packets,
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

/// How many packets the failed datagrams (positions in `pending`, ascending) belonged to:
/// the fragments of one packet sit side by side, and one lost fragment loses the packet.
fn failed_packets(pending: &[Pending], failures: &[MsgError]) -> u64 {
    let mut last = None;
    let mut n = 0;
    for f in failures {
        let slot = pending.get(f.index).map(|p| p.slot);
        if slot != last {
            n += 1;
            last = slot;
        }
    }
    n
}

fn worker(
    index: usize,
    workers: usize,
    queue: Arc<TunQueue>,
    core: Arc<Mutex<Director>>,
    clock: Clock,
    batch_size: usize,
    stop: &AtomicBool,
) {
    let mut batch = PacketBatch::new(batch_size, 2048);
    let mut pending: Vec<Pending> = Vec::with_capacity(batch_size * MAX_FRAGMENTS);
    let mut idents = IdentSeq::new(index, workers);
    let mut replies: Vec<(usize, usize)> = Vec::with_capacity(batch_size);
    let mut sender = match RawSender::new(batch_size) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tunlb director: worker {index}: cannot open raw socket: {e}");
            signal::notify(signal::Signal::Terminate);
            return;
        }
    };
    let mut frames = match FrameQueue::new(batch_size) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("tunlb director: worker {index}: cannot open the DR packet socket: {e}");
            signal::notify(signal::Signal::Terminate);
            return;
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let n = match queue.recv_batch(&mut batch, Some(StdDuration::from_millis(100))) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("tunlb director: worker {index}: TUN read failed: {e}");
                std::thread::sleep(StdDuration::from_millis(10));
                continue;
            }
        };
        pending.clear();
        frames.clear();
        replies.clear();
        {
            let Ok(mut d) = core.lock() else { return };
            let now = clock.now();
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
                match d.handle_packet(now, buf) {
                    Verdict::Encap(e) => {
                        if !queue_encap(&mut pending, &mut idents, i, buf, &e) {
                            d.count_send_errors(1);
                        }
                    }
                    Verdict::Ether(e) => {
                        if !frames.queue(&mut idents, i, buf, &e) {
                            d.count_send_errors(1);
                        }
                    }
                    Verdict::Reply { len } | Verdict::Rewrite { len } => replies.push((i, len)),
                    Verdict::Drop(_) => {}
                }
            }
            d.handle_timeout(now);
            if !pending.is_empty() {
                // queue_encap checked every range, so no item is skipped and the failure
                // positions are positions in `pending`.
                let items = pending.iter().filter_map(|p| {
                    let pkt = batch.get(p.slot)?.get(p.inner.clone())?;
                    Some((p.dst, &p.header[..p.header_len as usize], pkt))
                });
                let report = sender.send_batch(items);
                if report.failed > 0 {
                    d.count_send_errors(failed_packets(&pending, sender.failures()));
                }
            }
            if !frames.is_empty() {
                let failed = frames.flush(&batch);
                if failed > 0 {
                    d.count_send_errors(failed);
                }
            }
        }
        for &(slot, len) in &replies {
            if let Some(pkt) = batch.get(slot).and_then(|p| p.get(..len)) {
                let _ = queue.send(pkt);
            }
        }
    }
}
