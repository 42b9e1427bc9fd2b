//! IPVS schedulers: rr, wrr, lc, wlc, sh, dh, sed, nq, mh.
//!
//! A [`Scheduler`] is built by the control plane from a service's real servers ([`SchedDest`])
//! and lives, immutable, in the snapshot the data path reads. Several worker threads, each with
//! its own connection table, call [`Scheduler::pick`] on the same scheduler concurrently, and the
//! decisions are global across them, as in IPVS:
//!
//! - the round-robin position (rr, wrr) is one atomic sequence in [`SchedState`], kept across
//!   snapshot swaps; a pick claims the next available slot with a compare-and-swap, so sequential
//!   connections follow the IPVS order exactly whichever thread handles them;
//! - connection counters and the overload flag of each real server are atomics in [`DestState`],
//!   shared by all workers and kept across swaps.
//!
//! No pick takes a lock or allocates. A server is *unavailable* when its weight is 0 or it is
//! overloaded ([`DestState::is_overloaded`]); no scheduler gives it a new flow.
//!
//! Files: `rr.rs`, `wrr.rs` (IPVS's gcd-stepped weighted round robin), `lc.rs` (lc, wlc, sed,
//! nq), `hash.rs` (sh, dh: IPVS's 256-bucket tables), `maglev.rs` (mh, weighted Maglev).

use core::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::model::SchedulerKind;

mod hash;
mod lc;
mod maglev;
mod rr;
mod wrr;

pub use maglev::{is_valid_mh_table_size, DEFAULT_MH_TABLE_SIZE, MAX_MH_TABLE_SIZE};

/// Live counters of one real server, shared by all workers and kept across table swaps.
///
/// The connection table updates `active` / `inactive` / `persistent` (IPVS's activeconns,
/// inactconns, persistconns) and then calls [`DestState::update_overload`]. Aligned to a cache
/// line so that two servers' counters never share one.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct DestState {
    /// Connections in an active state (TCP ESTABLISHED and before; every UDP flow).
    pub active: AtomicU32,
    /// Connections in an inactive state (TCP FIN_WAIT, TIME_WAIT, ...).
    pub inactive: AtomicU32,
    /// Persistence templates pointing at this server.
    pub persistent: AtomicU32,
    /// IPVS's `IP_VS_DEST_F_OVERLOAD`.
    overloaded: AtomicBool,
    /// DR mode: where the server is on the LAN (its MAC), kept current by the driver's resolver.
    pub neigh: crate::director::shared::neigh::NeighSlot,
}

impl DestState {
    /// Active connections.
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// Inactive connections.
    pub fn inactive(&self) -> u32 {
        self.inactive.load(Ordering::Relaxed)
    }

    /// Persistence templates.
    pub fn persistent(&self) -> u32 {
        self.persistent.load(Ordering::Relaxed)
    }

    /// IPVS's `ip_vs_dest_totalconns`: active + inactive (templates not counted).
    pub fn total_conns(&self) -> u64 {
        u64::from(self.active()) + u64::from(self.inactive())
    }

    /// IPVS's `ip_vs_dest_conn_overhead`: `active * 256 + inactive`, the load lc and wlc compare.
    pub fn conn_overhead(&self) -> u64 {
        (u64::from(self.active()) << 8) + u64::from(self.inactive())
    }

    /// Re-evaluates the IPVS overload flag after a connection count change.
    ///
    /// As `ip_vs_bind_dest` / `ip_vs_unbind_dest`: the flag is set when
    /// `active + inactive >= u_threshold > 0`; otherwise it is cleared once the total drops
    /// below `l_threshold`, or below 3/4 of `u_threshold` when `l_threshold` is 0, and at once
    /// when there is no upper threshold. Between the two thresholds it keeps its value
    /// (hysteresis).
    pub fn update_overload(&self, u_threshold: u32, l_threshold: u32) {
        let total = self.total_conns();
        let (u, l) = (u64::from(u_threshold), u64::from(l_threshold));
        if u > 0 && total >= u {
            self.overloaded.store(true, Ordering::Relaxed);
        } else if l > 0 {
            if total < l {
                self.overloaded.store(false, Ordering::Relaxed);
            }
        } else if u > 0 {
            if total * 4 < u * 3 {
                self.overloaded.store(false, Ordering::Relaxed);
            }
        } else {
            self.overloaded.store(false, Ordering::Relaxed);
        }
    }

    /// Clears the overload flag unconditionally. IPVS does this when a server's upper threshold
    /// is removed or raised (`__ip_vs_update_dest`); the control plane calls it then.
    pub fn clear_overload(&self) {
        self.overloaded.store(false, Ordering::Relaxed);
    }

    /// Whether the server is overloaded (takes no new flows).
    pub fn is_overloaded(&self) -> bool {
        self.overloaded.load(Ordering::Relaxed)
    }
}

/// What a scheduler knows about one real server (immutable within a snapshot).
#[derive(Debug, Clone)]
pub struct SchedDest {
    /// The real server's address (of the VIP's family, or either through a tunnel).
    pub addr: IpAddr,
    /// The real server's port.
    pub port: u16,
    /// Scheduling weight; 0 quiesces the server.
    pub weight: u32,
    /// Live counters, shared with the connection table.
    pub state: Arc<DestState>,
}

impl SchedDest {
    /// Whether the server can take a new flow: weight > 0 and not overloaded.
    pub fn is_available(&self) -> bool {
        self.weight > 0 && !self.state.is_overloaded()
    }
}

/// Per-service scheduler state kept across table swaps (the rr/wrr position).
///
/// Aligned to a cache line: every worker thread writes it on each rr/wrr pick.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct SchedState {
    /// How many slots of the rr/wrr cycle have been consumed, ever (picks plus skipped slots).
    seq: AtomicU64,
}

impl SchedState {
    /// A fresh state (position 0).
    pub fn new() -> SchedState {
        SchedState::default()
    }

    /// How many rr/wrr slots have been consumed so far (for diagnostics and tests).
    pub fn position(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }
}

/// The flow being scheduled (client side addresses as seen on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Client address.
    pub saddr: Ipv4Addr,
    /// Client port.
    pub sport: u16,
    /// Virtual address (the VIP).
    pub daddr: Ipv4Addr,
    /// Virtual port.
    pub dport: u16,
    /// IP protocol number.
    pub proto: u8,
}

/// Scheduler flags and sizes (ipvsadm `-b` / `--sched-flags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedOptions {
    /// Size M of the Maglev lookup table; must be prime (see [`is_valid_mh_table_size`]).
    /// Default [`DEFAULT_MH_TABLE_SIZE`] (65537). An invalid size is replaced by the next prime.
    pub mh_table_size: u32,
    /// `sh-port` / `mh-port`: hash the client port together with the client address.
    pub hash_port: bool,
    /// `sh-fallback` / `mh-fallback`: when the hashed server is unavailable, pick another one
    /// (deterministically) instead of failing.
    pub fallback: bool,
}

impl Default for SchedOptions {
    fn default() -> SchedOptions {
        SchedOptions {
            mh_table_size: DEFAULT_MH_TABLE_SIZE,
            hash_port: false,
            fallback: false,
        }
    }
}

/// A service's scheduler: the algorithm plus whatever it precomputed from the server list.
#[derive(Clone)]
pub struct Scheduler {
    kind: SchedulerKind,
    /// Number of servers given to [`Scheduler::new`]; `pick` refuses another slice length.
    n: usize,
    state: Arc<SchedState>,
    opts: SchedOptions,
    algo: Algo,
}

#[derive(Clone)]
enum Algo {
    Rr,
    Wrr(wrr::WrrTable),
    Lc,
    Wlc,
    Sed,
    Nq,
    Sh(hash::BucketTable),
    Dh(hash::BucketTable),
    Mh(maglev::MaglevTable),
}

impl Scheduler {
    /// Builds the scheduler of `kind` for `dests` (in the order the servers were added).
    ///
    /// `state` is the service's [`SchedState`], reused from the previous snapshot so that the
    /// rr/wrr position survives a swap. Building an mh scheduler fills its lookup table (under a
    /// millisecond for M = 65537 and a handful of servers, release build); the others are cheap.
    pub fn new(
        kind: SchedulerKind,
        dests: &[SchedDest],
        state: Arc<SchedState>,
        opts: SchedOptions,
    ) -> Scheduler {
        let algo = match kind {
            SchedulerKind::Rr => Algo::Rr,
            SchedulerKind::Wrr => Algo::Wrr(wrr::WrrTable::new(dests)),
            SchedulerKind::Lc => Algo::Lc,
            SchedulerKind::Wlc => Algo::Wlc,
            SchedulerKind::Sed => Algo::Sed,
            SchedulerKind::Nq => Algo::Nq,
            SchedulerKind::Sh => Algo::Sh(hash::BucketTable::weighted(dests)),
            SchedulerKind::Dh => Algo::Dh(hash::BucketTable::unweighted(dests)),
            SchedulerKind::Mh => Algo::Mh(maglev::MaglevTable::new(dests, opts.mh_table_size)),
        };
        Scheduler {
            kind,
            n: dests.len(),
            state,
            opts,
            algo,
        }
    }

    /// Index into `dests` (the same slice given to `new`) for a new flow, or None when no server
    /// can take it. Never blocks, never allocates; safe to call from many threads at once.
    pub fn pick(&self, flow: &FlowKey, dests: &[SchedDest]) -> Option<usize> {
        if dests.len() != self.n {
            return None;
        }
        match &self.algo {
            Algo::Rr => rr::pick(&self.state.seq, dests),
            Algo::Wrr(table) => table.pick(&self.state.seq, dests),
            Algo::Lc => lc::pick_lc(dests),
            Algo::Wlc => lc::pick_wlc(dests),
            Algo::Sed => lc::pick_sed(dests),
            Algo::Nq => lc::pick_nq(dests),
            Algo::Sh(table) => table.pick_sh(flow, self.opts, dests),
            Algo::Dh(table) => table.pick_dh(flow, dests),
            Algo::Mh(table) => table.pick(flow, self.opts, dests),
        }
    }

    /// The algorithm.
    pub fn kind(&self) -> SchedulerKind {
        self.kind
    }

    /// The options the scheduler was built with.
    pub fn options(&self) -> SchedOptions {
        self.opts
    }

    /// The shared rr/wrr position, to hand to the next snapshot's scheduler of this service.
    pub fn state(&self) -> &Arc<SchedState> {
        &self.state
    }
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Scheduler");
        s.field("kind", &self.kind)
            .field("dests", &self.n)
            .field("position", &self.state.position())
            .field("opts", &self.opts);
        match &self.algo {
            Algo::Wrr(table) => s.field("wrr_cycle", &table.cycle_len()),
            Algo::Mh(table) => s.field("mh_table_size", &table.size()),
            _ => &mut s,
        };
        s.finish()
    }
}

/// Claims the next available slot of a cyclic sequence shared by all threads.
///
/// `find(pos)` returns `(skip, dest)`: the first available slot at or after position `pos` is
/// `skip` slots further on and holds server `dest`; or None when no slot is available. The
/// sequence then advances past that slot, so the skipped (unavailable) slots are consumed as
/// IPVS's rr/wrr cursor consumes them. Lock-free: a failed compare-and-swap means another thread
/// picked meanwhile, and the search restarts from the new position.
fn claim(seq: &AtomicU64, find: impl Fn(u64) -> Option<(u64, usize)>) -> Option<usize> {
    let mut cur = seq.load(Ordering::Relaxed);
    loop {
        let (skip, dest) = find(cur)?;
        let next = cur.wrapping_add(skip).wrapping_add(1);
        match seq.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Some(dest),
            Err(now) => cur = now,
        }
    }
}

/// The `mh` lookup table the scheduler would build for `dests` (in this order) and a requested
/// size M: slot -> index into `dests`, `u32::MAX` for a slot with no server (all weights 0).
/// For the simulator's comparison with the Maglev paper (`sim::maglev_paper`).
#[cfg(any(test, feature = "sim"))]
pub(crate) fn mh_table(dests: &[SchedDest], table_size: u32) -> Vec<u32> {
    maglev::MaglevTable::new(dests, table_size).into_slots()
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Helpers shared by the schedulers' tests.

    use super::*;

    /// Servers 10.0.0.1, 10.0.0.2, ... port 80 with these weights.
    pub fn dests(weights: &[u32]) -> Vec<SchedDest> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| SchedDest {
                addr: Ipv4Addr::new(10, 0, 0, (i + 1) as u8).into(),
                port: 80,
                weight,
                state: Arc::new(DestState::default()),
            })
            .collect()
    }

    /// A TCP flow from `saddr:sport` to 192.0.2.1:80.
    pub fn flow(saddr: Ipv4Addr, sport: u16) -> FlowKey {
        FlowKey {
            saddr,
            sport,
            daddr: Ipv4Addr::new(192, 0, 2, 1),
            dport: 80,
            proto: 6,
        }
    }

    /// Marks a server overloaded (u_threshold 1 with one active connection).
    pub fn overload(d: &SchedDest) {
        d.state.active.fetch_add(1, Ordering::Relaxed);
        d.state.update_overload(1, 0);
    }

    /// FNV-1a over the little-endian bytes of a table, to pin a whole table in a golden test.
    pub fn fnv1a(words: &[u32]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in words.iter().flat_map(|w| w.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    }

    /// A scheduler with default options and a fresh state.
    pub fn sched(kind: SchedulerKind, dests: &[SchedDest]) -> Scheduler {
        Scheduler::new(kind, dests, Arc::default(), SchedOptions::default())
    }

    /// Two threads each make `rounds` picks, in lock step (a barrier before every pick, so the
    /// picks really race); returns the summed counts per server (None counted last).
    pub fn counts_from_two_threads(
        s: &Scheduler,
        dests: &[SchedDest],
        rounds: usize,
    ) -> Vec<usize> {
        let barrier = std::sync::Barrier::new(2);
        let per_thread: Vec<Vec<usize>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    scope.spawn(|| {
                        let mut c = vec![0; dests.len() + 1];
                        let f = flow(Ipv4Addr::new(198, 51, 100, 1), 1000);
                        for _ in 0..rounds {
                            barrier.wait();
                            c[s.pick(&f, dests).unwrap_or(dests.len())] += 1;
                        }
                        c
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        (0..=dests.len())
            .map(|i| per_thread[0][i] + per_thread[1][i])
            .collect()
    }

    /// How often each server is picked over `rounds` sequential picks (None counted last).
    pub fn counts(s: &Scheduler, dests: &[SchedDest], rounds: usize) -> Vec<usize> {
        let mut c = vec![0; dests.len() + 1];
        let f = flow(Ipv4Addr::new(198, 51, 100, 1), 1000);
        for _ in 0..rounds {
            c[s.pick(&f, dests).unwrap_or(dests.len())] += 1;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn overload_follows_ipvs_thresholds() {
        let st = DestState::default();
        // u=10, l=0: set at 10, cleared below 3/4 * 10 (i.e. at 7).
        st.active.store(9, Ordering::Relaxed);
        st.update_overload(10, 0);
        assert!(!st.is_overloaded());
        st.inactive.store(1, Ordering::Relaxed);
        st.update_overload(10, 0);
        assert!(st.is_overloaded());
        st.active.store(7, Ordering::Relaxed);
        st.inactive.store(1, Ordering::Relaxed);
        st.update_overload(10, 0);
        assert!(st.is_overloaded(), "8 is not below 7.5");
        st.inactive.store(0, Ordering::Relaxed);
        st.update_overload(10, 0);
        assert!(!st.is_overloaded(), "7*4 < 10*3");

        // u=10, l=5: hysteresis between 5 and 10.
        st.active.store(10, Ordering::Relaxed);
        st.update_overload(10, 5);
        assert!(st.is_overloaded());
        st.active.store(5, Ordering::Relaxed);
        st.update_overload(10, 5);
        assert!(st.is_overloaded());
        st.active.store(4, Ordering::Relaxed);
        st.update_overload(10, 5);
        assert!(!st.is_overloaded());

        // No upper threshold: never overloaded.
        st.active.store(1_000_000, Ordering::Relaxed);
        st.update_overload(0, 0);
        assert!(!st.is_overloaded());
        // Persistence templates do not count.
        st.active.store(0, Ordering::Relaxed);
        st.persistent.store(100, Ordering::Relaxed);
        st.update_overload(1, 0);
        assert!(!st.is_overloaded());
    }

    #[test]
    fn conn_overhead_is_active_times_256_plus_inactive() {
        let st = DestState::default();
        st.active.store(3, Ordering::Relaxed);
        st.inactive.store(7, Ordering::Relaxed);
        assert_eq!(st.conn_overhead(), 3 * 256 + 7);
        assert_eq!(st.total_conns(), 10);
    }

    #[test]
    fn pick_refuses_a_different_server_list() {
        let d = dests(&[1, 1]);
        for kind in ALL_KINDS {
            let s = sched(kind, &d);
            let f = flow(Ipv4Addr::new(198, 51, 100, 7), 4242);
            assert!(s.pick(&f, &d[..1]).is_none(), "{kind}");
            assert!(s.pick(&f, &d).is_some(), "{kind}");
        }
    }

    #[test]
    fn empty_service_picks_nothing() {
        for kind in ALL_KINDS {
            let s = sched(kind, &[]);
            assert_eq!(s.pick(&flow(Ipv4Addr::new(198, 51, 100, 7), 1), &[]), None);
        }
    }

    #[test]
    fn weight_zero_and_overloaded_servers_are_never_picked_by_any_scheduler() {
        for kind in ALL_KINDS {
            let d = dests(&[0, 3, 2, 1]);
            overload(&d[2]);
            let s = sched(kind, &d);
            for i in 0..2000u32 {
                let f = flow(Ipv4Addr::from(0xc633_6400 + i), (i % 60000) as u16);
                if let Some(p) = s.pick(&f, &d) {
                    assert!(p == 1 || p == 3, "{kind} picked {p}");
                }
            }
        }
    }

    const ALL_KINDS: [SchedulerKind; 9] = [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Sh,
        SchedulerKind::Dh,
        SchedulerKind::Sed,
        SchedulerKind::Nq,
        SchedulerKind::Mh,
    ];

    #[test]
    fn scheduler_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Scheduler>();
        check::<SchedDest>();
    }
}
