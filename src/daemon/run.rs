//! `tunlb director`: the command line ([`DirectorArgs`]) and [`run`], which wires the layers
//! together: it loads the config (TOML or keepalived.conf), creates the TUN device, builds one
//! sans-IO [`Director`] core per queue, starts the control plane ([`ControlPlane`]: the control
//! socket, reloads, host routing), the health monitor, the metrics endpoint, the tunnel-route
//! gateways, the neighbour resolver and one worker thread per TUN queue
//! ([`crate::director::io`]), then waits for signals: SIGHUP reloads, SIGINT/SIGTERM stop
//! everything and restore the host.
//!
//! Every host change goes through the journal `/run/tunlb/director.journal.<netns id>`
//! ([`crate::sys::journal`]), opened before the first change: a director that was killed is
//! cleaned up after by the next start (or by `tunlb director --cleanup`), and a second director
//! in the same network namespace is refused. A panic in any thread, or a worker that quits,
//! stops the director like SIGTERM does, and it exits with status 1 naming the thread
//! ([`crate::sys::fatal`]).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration as StdDuration;

use anyhow::Context;

use super::announce::Announcer;
use super::ha::HaLink;
use super::plane::{ControlPlane, HostSetup};
use super::vrrp;
use crate::control::config::{self, DirectorSettings};
use crate::control::keepalived;
use crate::director::io::tunnel_link::{LinkView, TunnelLinks, TunnelTx};
use crate::director::io::{gateway, resolver, worker};
use crate::director::shared::frag;
use crate::director::{Director, DirectorConfig, DropReason, Limits, Shared, Snapshot};
use crate::model::ServiceSet;
use crate::sys::journal::Journal;
use crate::sys::netcfg::{self, conf_key};
use crate::sys::tun::{TunConfig, TunDevice, TunQueue, TUN_F_USO4};
use crate::sys::{fatal, signal};
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
    /// Outer source address of tunnel packets to IPv6 real servers (default: the kernel picks
    /// the route's source); authenticated GUE to IPv6 real servers needs it.
    #[arg(long)]
    pub local_address6: Option<std::net::Ipv6Addr>,
    /// Answer ARP for every VIP on this LAN interface (from this process's own AF_PACKET
    /// socket: the answers stop when it exits, however it exits).
    #[arg(long)]
    pub announce: Vec<String>,
    /// Also route every VIP whose service has a live real server into this routing table
    /// (`VIP/32 dev TUN table N`), and withdraw it when the service has none left: a routing
    /// daemon (BIRD's kernel protocol with `learn`) announces what it finds there over BGP.
    /// The route goes with the TUN device, so a director that dies however it dies (SIGKILL
    /// included) stops being announced. Forwarding is unchanged (the main table routes the
    /// VIPs). Default: the config's `announce_table`, else none. See docs/scale-out.md.
    #[arg(long, value_name = "N", value_parser = parse_announce_table)]
    pub announce_table: Option<u32>,
    /// MTU of the path to the real servers (default 1500, at least 576). A client packet that
    /// no longer fits once encapsulated is answered with ICMP fragmentation-needed if it has DF
    /// set, else sent as fragments of the outer datagram (as Linux IPVS does).
    #[arg(long, value_parser = clap::value_parser!(u16).range(576..))]
    pub tunnel_mtu: Option<u16>,
    /// Maximum tracked flows per worker.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_conns: usize,
    /// Most persistence templates held, all workers together (default: --max-conns × the
    /// number of workers, one per flow). When full, a new template evicts the oldest idle one
    /// (one that controls no flow any more); with none idle the flow is scheduled without
    /// persistence (`tunlb_conn_templates_refused_total`).
    #[arg(long)]
    pub max_templates: Option<usize>,
    /// Most fragmented datagrams whose later fragments are tracked (default: 4096, or
    /// --max-conns / 64 if more). When full, a new datagram evicts the oldest (its later
    /// fragments are then dropped as `fragment_no_flow`).
    #[arg(long)]
    pub max_fragments: Option<usize>,
    /// Longest a TCP flow that has carried no client data lives after its last packet, in
    /// seconds, whatever its state's timeout (a spoofed SYN+ACK pair ends up ESTABLISHED:
    /// without this it would stay 15 minutes). Such flows are also the ones evicted, oldest
    /// first, once a worker's table is 7/8 full.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub unconfirmed_timeout: u64,
    /// ICMP errors (fragmentation-needed) each worker sends a second at most, after a burst
    /// of --icmp-burst; 0 = no limit. Packets over it are dropped without an answer
    /// (`tunlb_icmp_rate_limited_total`).
    #[arg(long, default_value_t = 1000)]
    pub icmp_rate: u32,
    /// ICMP errors a worker may send at once before --icmp-rate applies.
    #[arg(long, default_value_t = 50)]
    pub icmp_burst: u32,
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
    /// IPVS's sloppy_tcp: a mid-flow TCP packet of a flow this director does not know (one
    /// another director started) is scheduled instead of dropped. Default: the config's
    /// `sloppy_tcp`, else on when VRRP or connection sync is configured and off for a lone
    /// director, as IPVS. `--sloppy-tcp` alone means `--sloppy-tcp true`.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub sloppy_tcp: Option<bool>,
    /// IPVS's sloppy_sctp, with the same default; accepted for scripts written for IPVS
    /// (tunlb forwards no SCTP, so it changes nothing).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub sloppy_sctp: Option<bool>,
    /// Second chance (docs/scale-out.md): for this many seconds after an `mh` service's real
    /// servers changed, a flow picked up mid-way (`sloppy_tcp`) that the previous table gave
    /// to another server still in the service goes to the new server with the previous one as
    /// second choice in its GUE header; the new server's agent forwards it there if it has
    /// no socket for it. GUE real servers only; 0 turns it off.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub second_chance_window: u64,
    /// Undo what a director that died without restoring the host (SIGKILL, OOM kill, a crash)
    /// left in this network namespace, as its journal under /run/tunlb records it, print each
    /// undo and exit. Refused while a director runs here. (A director does this itself when
    /// it starts.)
    #[arg(long)]
    pub cleanup: bool,
    /// Authenticate GUE tunnel packets with this key file (64 hex characters, mode 0600,
    /// owned by the user tunlb runs as): each carries a key id, a sequence number and an
    /// HMAC-SHA-256-128 the real server's agent (`--tunnel-key`) checks. For every GUE real
    /// server without its own `tunnel_key` in the config. Needs --local-address. See
    /// docs/security.md.
    #[arg(long, value_name = "FILE")]
    pub tunnel_key: Option<PathBuf>,
}

/// `--announce-table`'s value: a table of its own ([`config::announce_table`]).
fn parse_announce_table(s: &str) -> Result<u32, String> {
    let n: i64 = s
        .parse()
        .map_err(|_| format!("expected a routing table number, found {s:?}"))?;
    config::announce_table(n)
}

/// The journal of the director of this network namespace.
const JOURNAL: &str = "director.journal";

/// `tunlb director --cleanup`: undoes a dead director's leftovers and prints them.
fn cleanup() -> anyhow::Result<()> {
    let path = Journal::path_for(JOURNAL)?;
    let recovered = netcfg::cleanup(&path, "director")?;
    if recovered.is_empty() {
        println!(
            "tunlb director --cleanup: nothing to undo ({} holds no changes)",
            path.display()
        );
        return Ok(());
    }
    let who = recovered
        .pid
        .map(|p| format!(", left by pid {p}"))
        .unwrap_or_default();
    println!("tunlb director --cleanup: {}{who}:", path.display());
    for line in recovered.lines() {
        println!("  {line}");
    }
    if recovered.errors.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "some changes could not be undone; they stay in {}",
            path.display()
        )
    }
}

/// Runs the director until SIGINT/SIGTERM, then restores what it changed.
pub fn run(args: DirectorArgs) -> anyhow::Result<()> {
    if args.cleanup {
        return cleanup();
    }
    signal::install().context("installing signal handlers")?;
    fatal::install_panic_hook("tunlb director:");
    // Command-line flags win over the config file, which wins over the defaults.
    let (settings, set) = match &args.config {
        Some(path) => config::load(path)?,
        None => match &args.keepalived_conf {
            Some(path) => {
                // The virtual servers, their checkers and the VRRP instances.
                let k = keepalived::load_reporting(path)?;
                let settings = DirectorSettings {
                    health: k.health,
                    vrrp: k.vrrp,
                    ..DirectorSettings::default()
                };
                (settings, k.services)
            }
            None => (DirectorSettings::default(), ServiceSet::default()),
        },
    };
    // Least privilege, before the first thread starts (capabilities are per thread and the
    // threads started later inherit these): see crate::sys::caps.
    crate::sys::caps::drop_to(
        crate::sys::caps::Needs {
            scripts: settings.health.has_scripts() || settings.vrrp.has_scripts(),
            bind_low_port: args
                .metrics_listen
                .is_some_and(|a| (1..1024).contains(&a.port())),
        },
        "tunlb director",
    )
    .context("dropping capabilities")?;
    let queues = args
        .queues
        .or(args.config.as_ref().map(|_| settings.queues))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let tun_name = args.tun_name.clone().unwrap_or(settings.tun_name.clone());
    let announce_table = args.announce_table.or(settings.announce_table);
    let tunnel_mtu = args.tunnel_mtu.unwrap_or(settings.tunnel_mtu);
    let local_addr = args
        .local_address
        .or(settings.local_address)
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    let local_addr6 = args
        .local_address6
        .or(settings.local_address6)
        .unwrap_or(std::net::Ipv6Addr::UNSPECIFIED);

    // The control socket first: a director already running in this namespace stops us before
    // we change anything on the host.
    let control = crate::control::socket::Listener::bind()?;

    // The journal first: it refuses a second director here, and undoes a dead one's leftovers
    // before this one looks at the host.
    let journal = Journal::path_for(JOURNAL)?;
    let mut net = netcfg::open_journaled(&journal, "director", "tunlb director:")
        .context("opening the journal of host changes")?;

    let tunnel_keys = load_tunnel_keys(
        args.tunnel_key.as_deref(),
        &settings,
        local_addr,
        local_addr6,
    )?;
    let tun = TunDevice::with_config(&TunConfig {
        offload: !args.no_offload,
        udp_offload: !args.no_offload,
        ..TunConfig::new(&tun_name, queues, 1500)
    })
    .with_context(|| format!("creating TUN device {tun_name} with {queues} queues"))?;
    match tun.offload() {
        Some(flags) => log::info!(
            "tunlb director: TUN offload on (IFF_VNET_HDR, TUNSETOFFLOAD {flags:#04x}): GSO super-packets are segmented in userspace{}",
            if flags & TUN_F_USO4 != 0 {
                "; UDP trains too (with rx-udp-gro-forwarding on the receiving interface)"
            } else {
                ""
            }
        ),
        None if args.no_offload => {}
        None => log::warn!("tunlb director: TUN offload unavailable, reading one packet per read"),
    }
    net.set_sysctl("net.ipv4.ip_forward", "1")?;
    net.set_sysctl(&conf_key(&tun_name, "rp_filter"), "0")?;

    let limits = Limits {
        max_templates: args
            .max_templates
            .unwrap_or(args.max_conns.saturating_mul(queues)),
        max_fragments: args
            .max_fragments
            .unwrap_or((args.max_conns / 64).max(frag::FRAG_MAX)),
        ..Limits::default()
    };
    let shared = Arc::new(Shared::with_limits(Snapshot::default(), limits));
    shared.set_tunnel_keys(tunnel_keys);
    // With connection sync, no sloppy_tcp pickup until the table is synced (the sync thread
    // turns it on): the workers start before the bulk resync, and a restarting director
    // still gets the packets the router sends to its MAC before the backup takes over.
    // A backup starts no flows either (`Shared::set_sync_configured`).
    if settings.vrrp.sync.is_some() {
        shared.set_table_synced(false);
        shared.set_sync_configured();
    }
    // IPVS's sloppy_tcp: on by default when this director runs VRRP or connection sync, so a
    // director that took over keeps the flows it did not see start.
    let (sloppy_tcp, sloppy_sctp) = settings.sloppy();
    let (sloppy_tcp, sloppy_sctp) = (
        args.sloppy_tcp.unwrap_or(sloppy_tcp),
        args.sloppy_sctp.unwrap_or(sloppy_sctp),
    );
    let config = DirectorConfig {
        sloppy_tcp,
        sloppy_sctp,
        tunnel_mtu,
        local_addr,
        local_addr6,
        max_conns: args.max_conns,
        initial_conns: crate::director::conn::ConnTable::slots_for(
            args.conns_hint.min(args.max_conns),
        ),
        seed: random_seed(),
        unconfirmed_timeout: crate::time::Duration::from_secs(args.unconfirmed_timeout),
        icmp_rate: args.icmp_rate,
        icmp_burst: args.icmp_burst,
        auth_seq_seed: crate::encap::auth::seq_seed(wall_clock_ns()),
        second_chance_window: crate::time::Duration::from_secs(args.second_chance_window),
        ..DirectorConfig::default()
    };
    let cores: Vec<Arc<Mutex<Director>>> = (0..queues)
        .map(|_| Arc::new(Mutex::new(Director::new(shared.clone(), config.clone()))))
        .collect();
    let clock = Clock::new();
    let announcer = Announcer::new();
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
            announcer: announcer.clone(),
            announce_table,
            config_path: args.config.clone(),
        },
        set,
        settings.timeouts,
    )?);
    plane.set_snat(settings.snat.clone())?;
    if let (None, Some(path)) = (&args.config, &args.keepalived_conf) {
        plane.set_keepalived_path(path.clone());
    }
    let health = crate::health::HealthMonitor::spawn(plane.clone(), settings.health.clone());
    plane.set_settings(DirectorSettings {
        tunnel_mtu,
        local_address: Some(local_addr),
        local_address6: Some(local_addr6),
        announce_table,
        ..settings.clone()
    });
    plane.set_tunnel_routes(&settings.tunnel_routes)?;
    // Dropped when `run` returns: a clean exit removes the socket file.
    let _control = plane
        .clone()
        .serve(control)
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
        log::info!("tunlb director: metrics at http://{bound}/metrics");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let tun_queues: Vec<Arc<TunQueue>> = tun.queues().into_iter().map(Arc::new).collect();
    // The return traffic of tunnel routes goes into the TUN through the first queue.
    let gateways = match tun_queues.first() {
        Some(q) => gateway::spawn(&settings.tunnel_routes, &shared, q, &stop)?,
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
                let start = worker::WorkerStart {
                    index: i,
                    workers: queues,
                    queue,
                    core,
                    clock,
                    batch_size: batch,
                    links,
                };
                #[cfg(debug_assertions)]
                if i == 0 {
                    fatal::test_trigger("worker");
                }
                worker::run(start, &stop)
            })
            .context("spawning a worker thread")?;
        workers.push(handle);
    }
    let resolver = resolver::spawn_resolver(shared.clone(), stop.clone(), tunnel_links)
        .context("starting the DR neighbour resolver")?;
    // Connection sync before VRRP: a backup asks for the table at once, and no instance
    // preempts until it has it (HaLink's sync_ready).
    let ha = Arc::new(match settings.vrrp.sync {
        Some(_) => HaLink::default(),
        None => HaLink::without_sync(),
    });
    let sync = match &settings.vrrp.sync {
        Some(sc) => {
            let refresh = super::sync::refresh_for(&settings.timeouts);
            let handle = super::sync::start(sc, cores.clone(), ha.clone(), clock, refresh)
                .context("starting connection sync")?;
            plane.set_sync_stats(handle.stats());
            Some(handle)
        }
        None => None,
    };
    // VRRP last: this director answers for the VIPs only once it can forward.
    let vrrp_cfg = &settings.vrrp;
    let vrrp = if vrrp_cfg.is_empty() {
        None
    } else {
        let handle =
            vrrp::start(vrrp_cfg, announcer.clone(), ha.clone(), clock).context("starting VRRP")?;
        plane.set_vrrp_status(handle.status());
        Some(handle)
    };
    log::info!(
        "tunlb director: {} queue(s) on {}, control socket ready; configure with `tunlb adm`",
        queues,
        tun_name
    );

    let stats_every = StdDuration::from_secs(args.stats_interval);
    let mut last_stats = std::time::Instant::now();
    loop {
        if args.stats_interval > 0 && last_stats.elapsed() >= stats_every {
            last_stats = std::time::Instant::now();
            log::info!("tunlb director: {}", summary(&cores));
        }
        let _ = crate::sys::poll_readable(
            signal::wake_fd().unwrap_or(-1),
            Some(StdDuration::from_millis(500)),
        );
        shared.handle_timeout(clock.now());
        plane.tick();
        // A worker that ended by itself (a panic, a socket it could not open) leaves its queue
        // unread: stop everything rather than run on without it.
        if let Some(i) = workers.iter().position(|w| w.is_finished()) {
            if fatal::reason().is_none() {
                fatal::raise(format!("worker {i} stopped"));
            }
        }
        match signal::take() {
            Some(signal::Signal::Hangup) => match plane.reload() {
                Ok(msg) => log::info!("tunlb director: SIGHUP: {msg}"),
                Err(e) => {
                    log::error!(
                        "tunlb director: SIGHUP: reload rejected, running table kept: {e:#}"
                    )
                }
            },
            Some(sig) => {
                log::info!("tunlb director: {sig}: shutting down");
                break;
            }
            None => {}
        }
    }
    // No new flow from here on (`Shared::set_stopping`): the workers stop one by one, and the
    // kernel moves a closed queue's flows to the others.
    shared.set_stopping();
    // First VRRP: a MASTER sends priority 0 and stops answering ARP, so a BACKUP takes over
    // while this director still forwards what reaches it.
    if let Some(v) = vrrp {
        v.shutdown();
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers.into_iter().chain(gateways) {
        let _ = w.join();
    }
    let _ = resolver.join();
    if let Some(s) = sync {
        s.stop();
    }
    log::info!("tunlb director: at exit: {}", summary(&cores));
    drop(health);
    plane.shutdown();
    announcer.shutdown();
    match fatal::reason() {
        Some(why) => anyhow::bail!("stopped because {why} (the host settings were restored)"),
        None => Ok(()),
    }
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
    let mut total = crate::director::Counters::default();
    let mut conns = 0;
    for core in cores {
        let Ok(d) = core.lock() else { continue };
        total.add(d.counters());
        conns += d.conns().len();
    }
    if let Some(d) = cores.first().and_then(|c| c.lock().ok()) {
        conns += d.shared().nat.len() + d.shared().nat6.len();
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

/// Nanoseconds since the Unix epoch (0 if the clock is before it): where each worker's lane
/// of authenticated GUE sequence numbers starts, above anything a previous run sent.
fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The tunnel keys at start: `--tunnel-key` for every GUE real server, the config's
/// `tunnel_key` files for theirs. Keys need a set outer source address, which the MAC covers
/// ([`KeyMap::check_sources`](crate::encap::auth::KeyMap::check_sources)).
fn load_tunnel_keys(
    global: Option<&std::path::Path>,
    settings: &DirectorSettings,
    local_addr: Ipv4Addr,
    local_addr6: std::net::Ipv6Addr,
) -> anyhow::Result<crate::encap::auth::KeyMap> {
    use crate::encap::auth::{KeyMap, TunnelKey};
    let global = global
        .map(TunnelKey::load)
        .transpose()
        .context("--tunnel-key")?;
    let servers = KeyMap::load_servers(&settings.tunnel_keys)?;
    let has_global = global.is_some();
    let keys = KeyMap::new(global, servers);
    if keys.is_empty() {
        return Ok(keys);
    }
    let warning = keys
        .check_sources(!local_addr.is_unspecified(), !local_addr6.is_unspecified())
        .map_err(anyhow::Error::msg)?;
    if let Some(w) = warning {
        log::warn!("tunlb director: {w}");
    }
    log::info!(
        "tunlb director: GUE packets carry a MAC{}; GSO super-packets are cut before they are decided (one MAC per segment)",
        match (has_global, settings.tunnel_keys.len()) {
            (true, 0) => " (--tunnel-key, every GUE real server)".to_string(),
            (true, n) => format!(" (--tunnel-key; {n} real servers with their own)"),
            (false, n) => format!(" ({n} real servers with a tunnel_key)"),
        }
    );
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::DirectorArgs;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: DirectorArgs,
    }

    fn sloppy(argv: &[&str]) -> (Option<bool>, Option<bool>) {
        let cli = Cli::try_parse_from(std::iter::once("director").chain(argv.iter().copied()))
            .expect("parses");
        (cli.args.sloppy_tcp, cli.args.sloppy_sctp)
    }

    #[test]
    fn sloppy_flags_take_ipvs_names_and_an_optional_value() {
        assert_eq!(
            sloppy(&[]),
            (None, None),
            "unset: the config's or the HA default"
        );
        assert_eq!(sloppy(&["--sloppy-tcp"]), (Some(true), None));
        assert_eq!(sloppy(&["--sloppy-tcp", "false"]), (Some(false), None));
        assert_eq!(
            sloppy(&["--sloppy-tcp=false", "--sloppy-sctp"]),
            (Some(false), Some(true))
        );
        assert!(Cli::try_parse_from(["director", "--sloppy-tcp", "maybe"]).is_err());
    }
}
