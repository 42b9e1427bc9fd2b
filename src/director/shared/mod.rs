//! The state every worker shares, and the settings of the data path: the published
//! [`Snapshot`], the persistence templates, the NAT and S-NAT flow tables, the probe pins,
//! the fragment tracker, the flows a peer director synced ([`synced`]) and the connection-sync
//! emit switch ([`Shared`]); the helpers that keep a real server's connection counts
//! in step with its flows ([`counts`]).
//!
//! The core and the modes both read it; it imports neither.

pub mod counts;
pub mod frag;
pub mod nat_table;
pub mod neigh;
pub mod probe_pins;
pub mod synced;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::director::conn::{DestId, TemplateTable};
use crate::director::table::Snapshot;
use crate::encap::auth::KeyMap;
use crate::time::{Duration, Instant};
use frag::{FragKey, FragTable};
use nat_table::NatTable;
use probe_pins::ProbePins;
use synced::SyncedTable;

/// Settings of the data path that are not part of the service table.
#[derive(Debug, Clone)]
pub struct DirectorConfig {
    /// Largest outer packet a tunnel may carry (the MTU of the path to the real servers).
    pub tunnel_mtu: u16,
    /// Outer source address; `0.0.0.0` lets the kernel fill in the route's source.
    pub local_addr: Ipv4Addr,
    /// Outer source of IPv6 tunnel packets; `::` lets the send path fill in the kernel's
    /// source for each real server (then GUE to IPv6 real servers cannot be authenticated).
    pub local_addr6: std::net::Ipv6Addr,
    /// Initial connection-table capacity per worker, in slots (see `ConnTable::slots_for`).
    pub initial_conns: usize,
    /// Maximum tracked flows per worker.
    pub max_conns: usize,
    /// Slots examined per expiry sweep step.
    pub sweep_budget: usize,
    /// Time between sweep steps.
    pub sweep_interval: Duration,
    /// Seed of the connection table's hash (randomise it in production).
    pub seed: u64,
    /// Longest a TCP flow that has not carried client payload yet (not
    /// [confirmed](crate::director::conn::Conn::is_confirmed)) lives after its last packet,
    /// whatever its state's timeout: a spoofed SYN+ACK pair in ESTABLISHED goes after this
    /// instead of 15 minutes. 60 s by default (IPVS's SYN_RECV timeout), so a server-speaks-first
    /// protocol (SMTP, FTP) has a minute for its banner before the client's first data.
    pub unconfirmed_timeout: Duration,
    /// ICMP errors (fragmentation-needed) each worker sends a second at most after its burst
    /// (0: no limit); see [`crate::director::modes::icmp_limit`]. 1000 by default, as Linux's
    /// `net.ipv4.icmp_msgs_per_sec`.
    pub icmp_rate: u32,
    /// ICMP errors a worker may send at once before the rate applies (50, as Linux's
    /// `net.ipv4.icmp_msgs_burst`).
    pub icmp_burst: u32,
    /// IPVS `sloppy_tcp`: a TCP packet of a flow the director does not know that is not a
    /// SYN (and not a RST) is scheduled as a new flow instead of dropped as `no_connection`,
    /// in the state IPVS's table gives from NONE (ESTABLISHED for an ACK). A RST never
    /// creates a flow. What lets a director that took over without connection sync keep the
    /// flows a consistent-hash scheduler (mh, sh) sends to the same server. Off by default, as
    /// IPVS; the daemon turns it on when the director runs VRRP or connection sync.
    pub sloppy_tcp: bool,
    /// IPVS `sloppy_sctp`: the same for SCTP. tunlb forwards no SCTP (such packets are
    /// dropped as `unsupported_protocol`), so it has no effect; kept so that configurations
    /// naming it carry over.
    pub sloppy_sctp: bool,
    /// First sequence number of each worker's lane of authenticated GUE packets
    /// ([`crate::encap::auth::seq_seed`] of the wall clock at start, which the daemon reads:
    /// the core reads no clock).
    pub auth_seq_seed: u64,
    /// Second chance (docs/scale-out.md): for this long after an `mh` service's server set
    /// changed, a flow picked up mid-way (`sloppy_tcp`) whose server in the previous table
    /// (still in the service) differs from the new table's is sent to the new server with the
    /// previous one as second choice, in the GUE header (GUE real servers only); the flow's
    /// entry keeps it for its life. Zero: off. 600 s by default (`--second-chance-window`).
    pub second_chance_window: Duration,
}

impl Default for DirectorConfig {
    fn default() -> Self {
        DirectorConfig {
            tunnel_mtu: 1500,
            local_addr: Ipv4Addr::UNSPECIFIED,
            local_addr6: std::net::Ipv6Addr::UNSPECIFIED,
            initial_conns: 4096,
            max_conns: 4 << 20,
            sweep_budget: 8192,
            sweep_interval: Duration::from_millis(100),
            seed: 0x7475_6e6c_6221,
            unconfirmed_timeout: Duration::from_secs(60),
            icmp_rate: 1000,
            icmp_burst: 50,
            sloppy_tcp: false,
            sloppy_sctp: false,
            auth_seq_seed: 1,
            second_chance_window: Duration::from_secs(600),
        }
    }
}

/// Bounds of the tables all workers share (the daemon's `--max-templates`,
/// `--max-fragments`; S-NAT's is fixed there, [`NAT_MAX`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most persistence templates held at once ([`TemplateTable::with_max`]).
    pub max_templates: usize,
    /// Most fragmented datagrams tracked at once ([`FragTable::new`]).
    pub max_fragments: usize,
    /// Most S-NAT mappings held at once ([`NatTable::new`]; above 7/8 of a shard's share,
    /// never-confirmed mappings are evicted for new ones).
    pub max_snat: usize,
}

/// The default size of the NAT and S-NAT tables (entries).
pub const NAT_MAX: usize = 4 << 20;

impl Default for Limits {
    /// No practical limit on templates (tests and the simulator), [`frag::FRAG_MAX`]
    /// datagrams, [`NAT_MAX`] S-NAT mappings.
    fn default() -> Self {
        Limits {
            max_templates: usize::MAX,
            max_fragments: frag::FRAG_MAX,
            max_snat: NAT_MAX,
        }
    }
}

/// State shared by all workers.
#[derive(Debug)]
pub struct Shared {
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// Persistence templates (global, as persistence must hold whichever queue a flow lands on).
    pub templates: TemplateTable,
    /// Persistence templates of IPv6 services.
    pub templates6: crate::director::conn::TemplateTable6,
    /// NAT flows (global, as the two directions of a flow land on different queues).
    pub nat: NatTable,
    /// NAT66 flows: the IPv6 NAT table, of its own so that IPv4 flows keep their size.
    pub nat6: NatTable<crate::director::conn::ConnKey6>,
    /// S-NAT gateway mappings (same table type; see [`crate::director::snat`]).
    pub snat: NatTable,
    /// S-NAT mappings of IPv6 hosts ([`crate::director::snat6`]), a table of their own so
    /// that IPv4 mappings keep their size; bounded like `snat`.
    pub snat6: NatTable<crate::director::conn::ConnKey6>,
    /// Health probes sent through the data path, pinned to the real server they check
    /// ([`crate::director::probe_pin`]).
    pub probe_pins: Arc<ProbePins>,
    /// Flows a peer director synced, waiting for a worker to see their first packet
    /// ([`synced`]).
    pub synced: SyncedTable,
    /// IPv6 flows a peer director synced, as [`Shared::synced`].
    pub synced6: SyncedTable<crate::director::conn::ConnKey6>,
    /// Connection sync: whether workers queue a record of every new flow, state change and
    /// persistence template ([`Shared::set_sync_emit`]).
    sync_emit: AtomicBool,
    /// Whether this director's connection table is complete enough for `sloppy_tcp`
    /// ([`Shared::set_table_synced`]); true unless connection sync holds it.
    table_synced: AtomicBool,
    /// Set once the director is stopping ([`Shared::set_stopping`]): no new flows.
    stopping: AtomicBool,
    /// Connection sync is configured ([`Shared::set_sync_configured`]): new flows only while
    /// this director is the sync master.
    sync_configured: AtomicBool,
    frags: FragTable,
    /// Tunnel keys (authenticated GUE, [`crate::encap::auth`]); `tunnel_auth` says whether
    /// there is any, so a director without keys pays one relaxed load per GUE packet.
    tunnel_keys: ArcSwap<KeyMap>,
    tunnel_auth: AtomicBool,
    /// The next worker's lane of sequence numbers.
    next_lane: AtomicU16,
}

impl Shared {
    /// Shared state starting from `snapshot`, with the default [`Limits`].
    pub fn new(snapshot: Snapshot) -> Shared {
        Shared::with_limits(snapshot, Limits::default())
    }

    /// Shared state starting from `snapshot`, its tables bounded by `limits`.
    pub fn with_limits(snapshot: Snapshot, limits: Limits) -> Shared {
        Shared {
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
            templates: TemplateTable::with_max(limits.max_templates),
            templates6: crate::director::conn::TemplateTable6::with_max(limits.max_templates),
            nat: NatTable::new(NAT_MAX, crate::director::conn::random_seed()),
            nat6: NatTable::new(NAT_MAX, crate::director::conn::random_seed()),
            snat: NatTable::new(limits.max_snat, crate::director::conn::random_seed()),
            snat6: NatTable::new(limits.max_snat, crate::director::conn::random_seed()),
            probe_pins: Arc::new(ProbePins::new()),
            synced: SyncedTable::new(4 << 20),
            synced6: SyncedTable::new(4 << 20),
            sync_emit: AtomicBool::new(false),
            table_synced: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            sync_configured: AtomicBool::new(false),
            frags: FragTable::new(limits.max_fragments),
            tunnel_keys: ArcSwap::from_pointee(KeyMap::default()),
            tunnel_auth: AtomicBool::new(false),
            next_lane: AtomicU16::new(0),
        }
    }

    /// Turns connection-sync records on or off for every worker: the sync daemon sets it while
    /// this director is the sync master, and drains each worker with
    /// [`Director::take_sync`](crate::director::Director::take_sync). Off, a worker pays one
    /// relaxed load per new flow or state change.
    pub fn set_sync_emit(&self, on: bool) {
        self.sync_emit.store(on, Relaxed);
    }

    /// Whether workers queue connection-sync records ([`Shared::set_sync_emit`]).
    #[inline]
    pub fn sync_emit(&self) -> bool {
        self.sync_emit.load(Relaxed)
    }

    /// Whether `sloppy_tcp` may pick up a mid-flow packet of a flow this director does not
    /// know. Connection sync turns it off at start until the bulk resync is done (or its
    /// deadline passed, or this director became the sync master): a restarting director
    /// still gets the packets the router sends to its MAC before the backup takes over, and
    /// with an empty table it would reschedule every established flow, half of them to a
    /// server that answers with a reset. Held, such a packet is dropped as `no_connection`
    /// (the client retransmits to whichever director then has the flow). On by default.
    pub fn set_table_synced(&self, synced: bool) {
        self.table_synced.store(synced, Relaxed);
    }

    /// Whether `sloppy_tcp` pickup is allowed ([`Shared::set_table_synced`]).
    #[inline]
    pub fn table_synced(&self) -> bool {
        self.table_synced.load(Relaxed)
    }

    /// The director is stopping: from now on no worker starts a flow (a SYN, a `sloppy_tcp`
    /// pickup or a new UDP flow is dropped as `director_stopping`); established flows go on
    /// until the workers stop. The workers stop one by one and the kernel moves the flows of
    /// a closed TUN queue to the queues left: without this, the worker that then gets a flow
    /// it does not know would reschedule it (sloppy_tcp) — half of them to a server that
    /// resets them — and a flow started in the last milliseconds would never reach the peer
    /// director that takes over (connection sync stopped with VRRP). Never cleared.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Relaxed);
    }

    /// Connection sync is configured: from now on a worker starts a flow (a SYN, a
    /// `sloppy_tcp` pickup, a new UDP flow) only while this director is the sync master
    /// ([`Shared::sync_emit`]). A BACKUP still gets clients' packets now and then — after a
    /// preemption or at a restart the clients' ARP entries name it for a moment — and a flow
    /// it started there would be known to no other director (a backup sends no records):
    /// the next packets, at the master, would be rescheduled. Dropped (`not_master`), the
    /// client retransmits to the master. Flows it has (synced, or from its time as master)
    /// go on.
    pub fn set_sync_configured(&self) {
        self.sync_configured.store(true, Relaxed);
    }

    /// Whether a worker may start a flow: not stopping ([`Shared::set_stopping`]), and the
    /// sync master if connection sync is configured ([`Shared::set_sync_configured`]).
    #[inline]
    pub fn starts_flows(&self) -> Result<(), crate::director::DropReason> {
        use crate::director::DropReason;
        if self.stopping.load(Relaxed) {
            Err(DropReason::DirectorStopping)
        } else if self.sync_configured.load(Relaxed) && !self.sync_emit() {
            Err(DropReason::NotMaster)
        } else {
            Ok(())
        }
    }

    /// Replaces the tunnel keys (at start and on a reload): GUE packets to a real server with
    /// a key carry the authentication option from the next packet on.
    pub fn set_tunnel_keys(&self, keys: KeyMap) {
        let any = !keys.is_empty();
        self.tunnel_keys.store(Arc::new(keys));
        self.tunnel_auth.store(any, Relaxed);
    }

    /// Whether any tunnel key is set (then GSO super-packets are cut before the core decides
    /// them, so that each segment gets its own MAC).
    #[inline]
    pub fn tunnel_auth(&self) -> bool {
        self.tunnel_auth.load(Relaxed)
    }

    /// The tunnel keys.
    #[inline]
    pub fn tunnel_keys(&self) -> arc_swap::Guard<Arc<KeyMap>> {
        self.tunnel_keys.load()
    }

    /// A lane of sequence numbers for a new worker (each worker numbers its packets alone).
    pub(crate) fn take_lane(&self) -> u16 {
        self.next_lane.fetch_add(1, Relaxed)
    }

    /// Publishes a new table; workers pick it up at their next packet.
    pub fn publish(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    /// The current table.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The cell the table is published in (a worker keeps a cache of it).
    pub(crate) fn snapshot_cell(&self) -> &Arc<ArcSwap<Snapshot>> {
        &self.snapshot
    }

    /// The real server the later fragments of datagram `key` follow, if its first fragment was seen. A look only: the packet path
    /// uses [`Shared::follow_fragment`].
    pub(crate) fn fragment_dest(&self, key: &FragKey) -> Option<DestId> {
        self.frags.dest(key)
    }

    /// A later fragment (offset `offset` bytes, `bytes` of payload, `last` when MF is clear)
    /// of datagram `key`: the real server it follows (see [`FragTable::follow`]).
    pub(crate) fn follow_fragment(
        &self,
        key: &FragKey,
        offset: usize,
        bytes: usize,
        last: bool,
    ) -> Option<DestId> {
        self.frags.follow(key, offset, bytes, last)
    }

    /// Remembers where the later fragments of a datagram go, from its first fragment of
    /// `bytes` payload bytes (see [`FragTable::remember`]).
    pub(crate) fn remember_fragment(&self, key: FragKey, dest: DestId, bytes: usize, now: Instant) {
        self.frags.remember(key, dest, bytes, now);
    }

    /// The fragment tracker (its size and eviction count, for the metrics).
    pub fn frags(&self) -> &FragTable {
        &self.frags
    }

    /// Housekeeping that is not per worker: expire synced flows no worker took (giving back
    /// their counts), templates, fragment entries and probe pins.
    pub fn handle_timeout(&self, now: Instant) {
        if !self.synced.is_empty() {
            let snap = self.snapshot();
            self.synced.sweep(now, |key, conn| {
                counts::release(&snap, &self.templates, key, conn, now);
            });
        }
        if !self.synced6.is_empty() {
            let snap = self.snapshot();
            self.synced6.sweep(now, |key, conn| {
                counts::release6(&snap, &self.templates6, key, conn, now);
            });
        }
        self.templates.expire(now);
        self.templates6.expire(now);
        self.probe_pins.expire(now);
        self.frags.expire(now);
    }
}
