//! The connection-sync thread: a UDP socket on the sync interface around a
//! [`SyncSession`](crate::sync::SyncSession).
//!
//! While [`HaLink::is_sync_master`] (set by the VRRP driver for the `lvs_sync_daemon`
//! instance) it turns on every core's emit flag, drains their changes every 20 ms
//! ([`SyncCore::take_sync`]) and sends them; it answers bulk requests and refreshes from
//! [`SyncCore::dump_sync`] (the first core with the shared templates and synced flows, the
//! others their own flows), merging the entries by key. Otherwise it installs what it receives
//! ([`SyncCore::install_synced`], into every core: see [`Thread::install`]); the kernel's
//! multi-queue TUN picks a flow's worker by its own hash, so after a failover the flow may
//! arrive on any of them, which then adopts it. It sets
//! [`HaLink::set_sync_ready`] once the bulk resync is done (or after 2 s).
//!
//! IPv6 flows and templates go the same way beside the IPv4 ones ([`SyncCore::take_sync6`],
//! [`SyncCore::dump_sync6`] after every core's IPv4 dump, [`SyncCore::install_synced6`]), in
//! Conns6 messages ([`crate::sync::wire`]).
//!
//! The socket: bound to the sync port on the interface (`SO_BINDTODEVICE`); multicast (joined
//! on the interface, `IP_MULTICAST_TTL` = `ttl`, loop off) unless unicast `peers` are
//! configured. The thread checks its stop flag at least every 50 ms.
//!
//! Wiring (in `tunlb director`, when the config has `lvs_sync_daemon` / `[sync]`):
//! `let sync = daemon::sync::start(&cfg, cores.clone(), link.clone(), clock,
//! daemon::sync::refresh_for(&settings.timeouts))?; plane.set_sync_stats(sync.stats());` and
//! keep the handle until shutdown (dropping it stops the thread).

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

use super::ha::HaLink;
use crate::director::conn::{ConnKey, ConnKey6, SyncRecord, SyncRecord6};
use crate::director::Director;
use crate::sync::session::{DumpDemand, SessionConfig};
use crate::sync::{Incoming, Key, Refused, SyncSession, SyncStats};
use crate::time::{Clock, Duration, Instant};
use crate::vrrp::config::SyncConfig;

/// What connection sync needs from a director core (implemented by
/// [`Director`](crate::director::Director); tests use a fake).
pub trait SyncCore: Send + 'static {
    /// Turns the recording of changes for [`take_sync`](Self::take_sync) on or off.
    fn set_sync_emit(&mut self, on: bool);
    /// Moves the changes recorded since the last call into `out`.
    fn take_sync(&mut self, out: &mut Vec<SyncRecord>);
    /// Appends up to `limit` flows from `cursor` on (with `shared`, then the state all cores
    /// share: persistence templates, synced flows no core took yet); the next cursor, or
    /// `None` when the table ended. The thread asks the first core with `shared`, the others
    /// without.
    fn dump_sync(
        &self,
        cursor: usize,
        limit: usize,
        now: Instant,
        shared: bool,
        out: &mut Vec<SyncRecord>,
    ) -> Option<usize>;
    /// Installs received records.
    fn install_synced(&mut self, now: Instant, records: &[SyncRecord]) -> Installed;
    /// [`take_sync`](Self::take_sync) for IPv6 flows (a core without any: nothing).
    fn take_sync6(&mut self, _out: &mut Vec<SyncRecord6>) {}
    /// [`dump_sync`](Self::dump_sync) for IPv6 flows (a core without any: none).
    fn dump_sync6(
        &self,
        _cursor: usize,
        _limit: usize,
        _now: Instant,
        _shared: bool,
        _out: &mut Vec<SyncRecord6>,
    ) -> Option<usize> {
        None
    }
    /// [`install_synced`](Self::install_synced) for IPv6 records (a core without IPv6:
    /// every record `no_service`).
    fn install_synced6(&mut self, _now: Instant, records: &[SyncRecord6]) -> Installed {
        Installed {
            no_service: records.len() as u64,
            ..Installed::default()
        }
    }
    /// Whether the table is synced (the bulk resync done, its deadline passed, or this
    /// director the master): until then `sloppy_tcp` does not pick up mid-flow packets of
    /// unknown flows ([`Shared::set_table_synced`](crate::director::shared::Shared::set_table_synced)).
    /// Told on every change, and at the first turn of the thread.
    fn set_table_synced(&mut self, _synced: bool) {}
}

/// What [`SyncCore::install_synced`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Installed {
    /// Records inserted or updated.
    pub applied: u64,
    /// Records for a service this director does not have.
    pub no_service: u64,
    /// Records for a real server the service does not have.
    pub no_dest: u64,
    /// Records that found the connection table full.
    pub full: u64,
    /// Records of NAT real servers (NAT flows are not synced).
    pub nat: u64,
    /// Records no director could have (a protocol or state that does not fit).
    pub invalid: u64,
}

impl Installed {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &Installed) {
        self.applied += other.applied;
        self.no_service += other.no_service;
        self.no_dest += other.no_dest;
        self.full += other.full;
        self.nat += other.nat;
        self.invalid += other.invalid;
    }
}

impl SyncCore for Director {
    fn set_sync_emit(&mut self, on: bool) {
        self.shared().set_sync_emit(on);
    }

    fn set_table_synced(&mut self, synced: bool) {
        self.shared().set_table_synced(synced);
    }

    fn take_sync(&mut self, out: &mut Vec<SyncRecord>) {
        Director::take_sync(self, out);
    }

    fn dump_sync(
        &self,
        cursor: usize,
        limit: usize,
        now: Instant,
        shared: bool,
        out: &mut Vec<SyncRecord>,
    ) -> Option<usize> {
        if shared {
            Director::dump_sync(self, cursor, limit, now, out)
        } else {
            self.dump_sync_conns(cursor, limit, now, out)
        }
    }

    fn install_synced(&mut self, now: Instant, records: &[SyncRecord]) -> Installed {
        Installed::from(Director::install_synced(self, now, records))
    }

    fn take_sync6(&mut self, out: &mut Vec<SyncRecord6>) {
        Director::take_sync6(self, out);
    }

    fn dump_sync6(
        &self,
        cursor: usize,
        limit: usize,
        now: Instant,
        shared: bool,
        out: &mut Vec<SyncRecord6>,
    ) -> Option<usize> {
        if shared {
            Director::dump_sync6(self, cursor, limit, now, out)
        } else {
            self.dump_sync6_conns(cursor, limit, now, out)
        }
    }

    fn install_synced6(&mut self, now: Instant, records: &[SyncRecord6]) -> Installed {
        Installed::from(Director::install_synced6(self, now, records))
    }
}

impl From<crate::director::InstallStats> for Installed {
    fn from(s: crate::director::InstallStats) -> Installed {
        Installed {
            applied: s.applied as u64,
            no_service: s.no_service as u64,
            no_dest: s.no_dest as u64,
            full: s.full as u64,
            nat: s.nat as u64,
            invalid: s.invalid as u64,
        }
    }
}

/// The running sync thread. Dropping it stops the thread (within 50 ms) and turns the cores'
/// emit flags off.
#[derive(Debug)]
pub struct SyncHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<SyncStats>,
    local: SocketAddr,
}

impl SyncHandle {
    /// The counters, for the metrics.
    pub fn stats(&self) -> Arc<SyncStats> {
        self.stats.clone()
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SyncHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Where the thread sends and how it receives: a bound non-blocking socket and the
/// destinations of every message (the group, or each unicast peer).
#[derive(Debug)]
pub struct Endpoint {
    /// The socket.
    pub socket: UdpSocket,
    /// Every message goes to each of these.
    pub dests: Vec<SocketAddrV4>,
}

impl Endpoint {
    /// The socket `cfg` describes: bound to `cfg.port` on `cfg.interface`, joined to
    /// `cfg.group` there unless `cfg.peers` are set.
    pub fn open(cfg: &SyncConfig) -> io::Result<Endpoint> {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_address(true)?;
        s.bind_device(Some(cfg.interface.as_bytes()))?;
        s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, cfg.port)).into())?;
        let dests = if cfg.peers.is_empty() {
            let index = crate::sys::mcast::interface_index(&cfg.interface)?;
            s.join_multicast_v4_n(&cfg.group, &InterfaceIndexOrAddress::Index(index))?;
            s.set_multicast_ttl_v4(u32::from(cfg.ttl))?;
            s.set_multicast_loop_v4(false)?;
            vec![SocketAddrV4::new(cfg.group, cfg.port)]
        } else {
            s.set_ttl_v4(u32::from(cfg.ttl.max(1)))?;
            cfg.peers
                .iter()
                .map(|p| SocketAddrV4::new(*p, cfg.port))
                .collect()
        };
        s.set_nonblocking(true)?;
        // A bulk answer arrives in bursts of up to 32 messages every 5 ms while this thread
        // installs: room for a whole second of them.
        if let Err(e) = crate::sys::mcast::force_recv_buffer(s.as_raw_fd(), RECV_BUFFER) {
            log::warn!("sync ({}): receive buffer: {e}", cfg.instance);
        }
        Ok(Endpoint {
            socket: s.into(),
            dests,
        })
    }
}

/// The session settings for `cfg` with this refresh interval and a random sender id.
pub fn session_config(cfg: &SyncConfig, refresh: Duration) -> SessionConfig {
    SessionConfig {
        refresh,
        ..SessionConfig::new(
            cfg.id,
            // At least one keyed record per message (a smaller maxlen could send nothing).
            usize::from(cfg.maxlen).max(MIN_MAXLEN),
            cfg.key.as_deref().map(Key::new),
            random_sender(),
        )
    }
}

/// The refresh interval for the running timeouts (`adm --set`, `[timeouts]`): half the
/// shortest non-zero one, within 1 and 60 s ([`crate::sync::session::refresh_interval`]), so
/// a backup's copy of a flow the master keeps alive never expires.
pub fn refresh_for(t: &crate::control::ops::Timeouts) -> Duration {
    let shortest = [t.tcp, t.tcpfin, t.udp]
        .into_iter()
        .filter(|s| *s > 0)
        .min()
        .unwrap_or(120);
    crate::sync::session::refresh_interval(Duration::from_secs(shortest.into()))
}

fn random_sender() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish() as u32
}

/// Opens the socket `cfg` describes and starts the thread. `refresh`: how often the master
/// re-sends its whole table ([`crate::sync::session::refresh_interval`] of the shortest
/// configured timeout).
pub fn start<C: SyncCore>(
    cfg: &SyncConfig,
    cores: Vec<Arc<Mutex<C>>>,
    link: Arc<HaLink>,
    clock: Clock,
    refresh: Duration,
) -> io::Result<SyncHandle> {
    let ep = Endpoint::open(cfg)?;
    log::info!(
        "sync ({}): on {} port {}, {} (syncid {}, maxlen {}{})",
        cfg.instance,
        cfg.interface,
        cfg.port,
        if cfg.peers.is_empty() {
            format!("group {} ttl {}", cfg.group, cfg.ttl)
        } else {
            format!("{} unicast peer(s)", cfg.peers.len())
        },
        cfg.id,
        cfg.maxlen,
        if cfg.key.is_some() {
            ", HMAC-SHA256"
        } else {
            ""
        },
    );
    spawn(
        &cfg.instance,
        ep,
        session_config(cfg, refresh),
        cores,
        link,
        clock,
    )
}

/// Starts the thread on an open endpoint (tests use loopback sockets).
pub fn spawn<C: SyncCore>(
    instance: &str,
    ep: Endpoint,
    session: SessionConfig,
    cores: Vec<Arc<Mutex<C>>>,
    link: Arc<HaLink>,
    clock: Clock,
) -> io::Result<SyncHandle> {
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(SyncStats::default());
    let local = ep.socket.local_addr()?;
    let mut t = Thread {
        instance: instance.to_string(),
        session: SyncSession::new(session, clock.now()),
        ep,
        cores,
        link,
        stats: stats.clone(),
        master: false,
        changes: Vec::new(),
        changes6: Vec::new(),
        pending: Vec::new(),
        pending6: Vec::new(),
        cursor: DumpCursor::default(),
        next_drain: Instant::ZERO,
        last_log: Vec::new(),
    };
    let s = stop.clone();
    let thread = std::thread::Builder::new()
        .name("tunlb-sync".to_string())
        .spawn(move || t.run(&clock, &s))?;
    Ok(SyncHandle {
        stop,
        thread: Some(thread),
        stats,
        local,
    })
}

/// The smallest message size used: header, one IPv6 record (the longer kind) and a MAC.
const MIN_MAXLEN: usize =
    crate::sync::wire::HEADER_LEN + crate::sync::wire::RECORD6_LEN + crate::sync::wire::MAC_LEN;
/// The socket's receive buffer (`SO_RCVBUFFORCE`).
const RECV_BUFFER: usize = 8 << 20;
/// How often a master drains the cores' changes.
const DRAIN_EVERY: Duration = Duration::from_millis(20);
/// The longest wait between two turns of the loop (role changes and stop are seen within it).
const MAX_WAIT: Duration = Duration::from_millis(50);
/// Records received in one turn before they are installed.
const INSTALL_BATCH: usize = 4096;
/// A refusal reason is logged at most this often (the count is in the metrics).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Where a pass over the cores' tables is: every core's IPv4 table, then (`v6`) every core's
/// IPv6 one.
#[derive(Debug, Default)]
struct DumpCursor {
    pass: u64,
    core: usize,
    pos: usize,
    v6: bool,
    /// Keys sent in this pass: a flow synced into every core of a former backup goes once.
    seen: HashSet<ConnKey>,
    /// The same for IPv6 keys.
    seen6: HashSet<ConnKey6>,
}

impl DumpCursor {
    /// Fills `out` and `out6` with up to `limit` records (together) of pass `d` not sent yet
    /// in it; true at the end of the last core's IPv6 table.
    fn fetch<C: SyncCore>(
        &mut self,
        cores: &[Arc<Mutex<C>>],
        d: DumpDemand,
        now: Instant,
        out: &mut Vec<SyncRecord>,
        out6: &mut Vec<SyncRecord6>,
    ) -> bool {
        if d.pass != self.pass {
            *self = DumpCursor {
                pass: d.pass,
                ..DumpCursor::default()
            };
        }
        out.clear();
        out6.clear();
        if !self.v6 && self.fetch4(cores, d.limit, now, out) {
            self.v6 = true;
            self.core = 0;
            self.pos = 0;
        }
        if self.v6 {
            return self.fetch6(cores, d.limit.saturating_sub(out.len()), now, out6);
        }
        false
    }

    /// The IPv6 side of [`fetch`](Self::fetch): true at the end of the last core.
    fn fetch6<C: SyncCore>(
        &mut self,
        cores: &[Arc<Mutex<C>>],
        limit: usize,
        now: Instant,
        out: &mut Vec<SyncRecord6>,
    ) -> bool {
        let mut batch = Vec::new();
        while out.len() < limit {
            let Some(core) = cores.get(self.core) else {
                return true;
            };
            batch.clear();
            let next = match core.lock() {
                Ok(c) => c.dump_sync6(self.pos, limit - out.len(), now, self.core == 0, &mut batch),
                Err(_) => None,
            };
            let multi = cores.len() > 1;
            out.extend(
                batch
                    .drain(..)
                    .filter(|r| !multi || self.seen6.insert(r.key)),
            );
            match next {
                Some(n) if n > self.pos => self.pos = n,
                _ => {
                    self.core += 1;
                    self.pos = 0;
                }
            }
        }
        self.core >= cores.len()
    }

    /// The IPv4 side of [`fetch`](Self::fetch): true at the end of the last core.
    fn fetch4<C: SyncCore>(
        &mut self,
        cores: &[Arc<Mutex<C>>],
        limit: usize,
        now: Instant,
        out: &mut Vec<SyncRecord>,
    ) -> bool {
        let d = DumpDemand {
            pass: self.pass,
            limit,
        };
        let mut batch = Vec::new();
        while out.len() < d.limit {
            let Some(core) = cores.get(self.core) else {
                return true;
            };
            batch.clear();
            let next = match core.lock() {
                Ok(c) => c.dump_sync(
                    self.pos,
                    d.limit - out.len(),
                    now,
                    self.core == 0,
                    &mut batch,
                ),
                Err(_) => None,
            };
            let multi = cores.len() > 1;
            out.extend(
                batch
                    .drain(..)
                    .filter(|r| !multi || self.seen.insert(r.key)),
            );
            match next {
                Some(n) if n > self.pos => self.pos = n,
                _ => {
                    self.core += 1;
                    self.pos = 0;
                }
            }
        }
        self.core >= cores.len()
    }
}

struct Thread<C> {
    instance: String,
    session: SyncSession,
    ep: Endpoint,
    cores: Vec<Arc<Mutex<C>>>,
    link: Arc<HaLink>,
    stats: Arc<SyncStats>,
    master: bool,
    changes: Vec<SyncRecord>,
    changes6: Vec<SyncRecord6>,
    /// Received records not installed yet.
    pending: Vec<SyncRecord>,
    /// Received IPv6 records not installed yet.
    pending6: Vec<SyncRecord6>,
    cursor: DumpCursor,
    next_drain: Instant,
    /// When each refusal reason was last logged.
    last_log: Vec<(Refused, Instant)>,
}

impl<C: SyncCore> Thread<C> {
    fn run(&mut self, clock: &Clock, stop: &AtomicBool) {
        let mut buf = vec![0u8; 65536];
        let mut was_ready = false;
        let mut told = None;
        while !stop.load(Ordering::Relaxed) {
            let now = clock.now();
            self.follow_role(now);
            self.receive(now, &mut buf);
            if self.master && now >= self.next_drain {
                self.drain(now);
                self.next_drain = now + DRAIN_EVERY;
            }
            self.session.handle_timeout(now);
            self.dump(now);
            self.transmit();
            self.publish();
            let ready = self.session.is_ready();
            self.link.set_sync_ready(ready);
            let synced = !self.session.pickup_held(now);
            if told != Some(synced) {
                for c in &self.cores {
                    if let Ok(mut c) = c.lock() {
                        c.set_table_synced(synced);
                    }
                }
                told = Some(synced);
            }
            if ready && !was_ready {
                log::info!(
                    "sync ({}): ready ({})",
                    self.instance,
                    if self.master {
                        "master"
                    } else {
                        "bulk resync done or its 2 s passed"
                    }
                );
            }
            was_ready = ready;
            let mut wait = MAX_WAIT;
            if self.master {
                wait = wait.min(self.next_drain.saturating_since(now));
            }
            if let Some(t) = self.session.poll_timeout() {
                wait = wait.min(t.saturating_since(now));
            }
            if !synced {
                // Look again soon: the pickup hold ends by time.
                wait = wait.min(DRAIN_EVERY);
            }
            if self.session.poll_dump().is_some() {
                wait = Duration::ZERO;
            }
            let _ = crate::sys::poll_readable(self.ep.socket.as_raw_fd(), Some(wait));
        }
        self.set_emit(false);
    }

    fn set_emit(&self, on: bool) {
        for c in &self.cores {
            if let Ok(mut c) = c.lock() {
                c.set_sync_emit(on);
            }
        }
    }

    fn follow_role(&mut self, now: Instant) {
        let master = self.link.is_sync_master();
        if master == self.master {
            return;
        }
        self.master = master;
        if !master {
            // Stepping down (a preempting peer, a fault, a stop): the changes recorded until
            // the flag goes off still leave — the flows started in the last milliseconds as
            // master, whose next packets go to the new master.
            self.set_emit(false);
            self.drain(now);
            self.session.flush();
            self.transmit();
        }
        self.session.set_master(now, master);
        self.set_emit(master);
        self.stats.master.store(master, Ordering::Relaxed);
        log::info!(
            "sync ({}): {}",
            self.instance,
            if master {
                "MASTER: sending connection changes"
            } else {
                "BACKUP: installing received connections"
            }
        );
    }

    fn receive(&mut self, now: Instant, buf: &mut [u8]) {
        loop {
            let (n, from) = match self.ep.socket.recv_from(buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("sync ({}): receive: {e}", self.instance);
                    break;
                }
            };
            match self.session.handle_message(now, &buf[..n]) {
                Ok(incoming) => {
                    self.stats.received.fetch_add(1, Ordering::Relaxed);
                    if let Incoming::Records(records) = &incoming {
                        let records = records.clone();
                        let before = self.pending.len();
                        self.pending.extend(records);
                        let got = (self.pending.len() - before) as u64;
                        self.stats
                            .records_received
                            .fetch_add(got, Ordering::Relaxed);
                        self.stats.applied.fetch_add(1, Ordering::Relaxed);
                        if self.pending.len() >= INSTALL_BATCH {
                            self.install(now);
                        }
                    }
                    if let Incoming::Records6(records) = incoming {
                        let before = self.pending6.len();
                        self.pending6.extend(records);
                        let got = (self.pending6.len() - before) as u64;
                        self.stats
                            .records_received
                            .fetch_add(got, Ordering::Relaxed);
                        self.stats.applied.fetch_add(1, Ordering::Relaxed);
                        if self.pending6.len() >= INSTALL_BATCH {
                            self.install(now);
                        }
                    }
                }
                Err(r) => self.refused(now, r, from),
            }
        }
        self.install(now);
    }

    fn refused(&mut self, now: Instant, r: Refused, from: SocketAddr) {
        self.stats.count_refused(r);
        if r == Refused::Own {
            return;
        }
        let due = match self.last_log.iter_mut().find(|(x, _)| *x == r) {
            Some((_, t)) if now.saturating_since(*t) < LOG_EVERY => false,
            Some((_, t)) => {
                *t = now;
                true
            }
            None => {
                self.last_log.push((r, now));
                true
            }
        };
        if due {
            log::warn!(
                "sync ({}): refused a message from {}: {} ({} so far; logged at most every {} s)",
                self.instance,
                from.ip(),
                r.as_str(),
                self.stats.refused(r),
                LOG_EVERY.as_secs()
            );
        }
    }

    /// Installs the pending records into every core; the counts are the first core's (every
    /// core resolves against the same table), `full` is any core's. One core would do (a flow
    /// no core tracks goes to the table they share, `Shared::synced`, for the first core that
    /// sees a packet of it), but a core that tracks the flow itself (a former master's) only
    /// updates its own copy, so every core gets the records.
    fn install(&mut self, now: Instant) {
        if self.pending.is_empty() && self.pending6.is_empty() {
            return;
        }
        let mut first: Option<Installed> = None;
        let mut full = 0;
        for c in &self.cores {
            let Ok(mut c) = c.lock() else { continue };
            let mut got = Installed::default();
            if !self.pending.is_empty() {
                got = c.install_synced(now, &self.pending);
            }
            if !self.pending6.is_empty() {
                got.add(&c.install_synced6(now, &self.pending6));
            }
            full = full.max(got.full);
            first.get_or_insert(got);
        }
        let got = first.unwrap_or_default();
        let s = &self.stats;
        s.records_applied.fetch_add(got.applied, Ordering::Relaxed);
        s.no_service.fetch_add(got.no_service, Ordering::Relaxed);
        s.no_dest.fetch_add(got.no_dest, Ordering::Relaxed);
        s.full.fetch_add(full, Ordering::Relaxed);
        s.nat.fetch_add(got.nat, Ordering::Relaxed);
        s.invalid.fetch_add(got.invalid, Ordering::Relaxed);
        self.pending.clear();
        self.pending6.clear();
    }

    fn drain(&mut self, now: Instant) {
        self.changes.clear();
        self.changes6.clear();
        for c in &self.cores {
            if let Ok(mut c) = c.lock() {
                c.take_sync(&mut self.changes);
                c.take_sync6(&mut self.changes6);
            }
        }
        self.session.queue(now, &self.changes);
        self.session.queue6(now, &self.changes6);
    }

    fn dump(&mut self, now: Instant) {
        let (mut out, mut out6) = (Vec::new(), Vec::new());
        while let Some(d) = self.session.poll_dump() {
            let end = self.cursor.fetch(&self.cores, d, now, &mut out, &mut out6);
            // The IPv6 records first: the IPv4 push with `end` closes the pass.
            self.session.push_dump6(d.pass, &out6);
            self.session.push_dump(now, d.pass, &out, end);
            self.transmit();
        }
    }

    fn transmit(&mut self) {
        while let Some(msg) = self.session.poll_transmit() {
            for dest in &self.ep.dests {
                match self.ep.socket.send_to(&msg, *dest) {
                    Ok(_) => {}
                    Err(e) => {
                        let n = self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                        if n == 0 || n.is_power_of_two() {
                            log::warn!(
                                "sync ({}): send to {dest}: {e} ({} send errors so far)",
                                self.instance,
                                n + 1
                            );
                        }
                    }
                }
            }
        }
    }

    fn publish(&self) {
        let c = self.session.counters();
        let s = &self.stats;
        s.sent.store(c.messages_sent, Ordering::Relaxed);
        s.records_sent.store(c.records_sent, Ordering::Relaxed);
        s.dropped.store(c.dropped, Ordering::Relaxed);
        s.ready.store(self.session.is_ready(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
