//! The fragment tracker: which real server the later fragments of a datagram follow (they
//! carry no ports, so only the first fragment's decision can place them).
//!
//! # Bounded, sharded, O(1)
//!
//! Datagrams are spread over `SHARDS` (16) independently locked shards by a keyed hash, so
//! workers seldom wait on one another. Each shard holds at most `max / SHARDS` datagrams and
//! keeps their keys in a FIFO in the order they were first seen: a new datagram for a full
//! shard evicts the oldest one (counted, [`FragTable::evicted`]), and expiry pops the front
//! while it has expired, so neither ever scans the shard. Every datagram lives
//! [`FRAG_TIMEOUT`] at most, and is freed as soon as all its bytes went through: the tracker
//! adds up the payload bytes of the fragments it placed and learns the datagram's length from
//! the last fragment (MF clear), in whatever order they arrive.
//!
//! The FIFO holds one entry per insert; entries of datagrams already freed are skipped when
//! they reach the front, and the FIFO is compacted once it holds twice the shard's limit, so
//! it stays O(limit) however fast datagrams come and go.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

use crate::director::conn::DestId;
use crate::time::{Duration, Instant};

/// How long the fragment tracker remembers a fragmented datagram.
pub const FRAG_TIMEOUT: Duration = Duration::from_secs(30);
/// How many fragmented datagrams may be in flight at once by default (the daemon's
/// `--max-fragments`).
pub const FRAG_MAX: usize = 4096;
/// Number of independently locked shards.
const SHARDS: usize = 16;

pub use crate::director::packet::FragKey;

/// One datagram being forwarded.
#[derive(Clone, Copy, Debug)]
struct Entry {
    dest: DestId,
    expires: Instant,
    /// Which FIFO entry is this datagram's (older ones for the same key are stale).
    seq: u64,
    /// Payload bytes of the fragments placed so far.
    seen: u32,
    /// The datagram's payload length, once its last fragment was seen (0 before).
    total: u32,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<FragKey, Entry>,
    /// (key, seq) in insertion order: the oldest datagram at the front.
    fifo: VecDeque<(FragKey, u64)>,
    next_seq: u64,
}

impl Shard {
    /// Pops stale entries and, while `evict` says so, live ones from the front; returns how
    /// many live datagrams were removed.
    fn pop_front_while(&mut self, mut evict: impl FnMut(&Entry) -> bool) -> usize {
        let mut removed = 0;
        while let Some(&(k, seq)) = self.fifo.front() {
            match self.map.get(&k) {
                Some(e) if e.seq == seq => {
                    if !evict(e) {
                        break;
                    }
                    self.map.remove(&k);
                    removed += 1;
                }
                _ => {}
            }
            self.fifo.pop_front();
        }
        removed
    }
}

/// Which real server the fragments of one datagram go to (shared by all workers).
#[derive(Debug)]
pub struct FragTable {
    shards: [Mutex<Shard>; SHARDS],
    spread: RandomState,
    max_per_shard: usize,
    /// Datagrams evicted to make room for a newer one.
    evicted: AtomicU64,
}

impl Default for FragTable {
    fn default() -> Self {
        FragTable::new(FRAG_MAX)
    }
}

/// Locks a shard (every update is one map and one FIFO operation: a poisoned lock is used as
/// is).
fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FragTable {
    /// A tracker of at most `max` datagrams in flight (at least one per shard).
    pub fn new(max: usize) -> FragTable {
        FragTable {
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
            spread: RandomState::new(),
            max_per_shard: max.div_ceil(SHARDS).max(1),
            evicted: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &FragKey) -> MutexGuard<'_, Shard> {
        let h = self.spread.hash_one(key);
        lock(&self.shards[(h >> 32) as usize % SHARDS])
    }

    /// Most datagrams tracked at once.
    pub fn max(&self) -> usize {
        self.max_per_shard * SHARDS
    }

    /// Datagrams evicted so far (the oldest of a full shard, for a new one).
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Relaxed)
    }

    /// Datagrams tracked (some may have expired and not been removed yet).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    /// Whether no datagram is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The real server the later fragments of datagram `key` follow, if its first fragment
    /// was seen (a look only: see [`follow`](Self::follow)).
    pub fn dest(&self, key: &FragKey) -> Option<DestId> {
        self.shard(key).map.get(key).map(|e| e.dest)
    }

    /// A later fragment of datagram `key` (payload `offset..offset + bytes`, `last` when MF is
    /// clear): the real server it follows, if the first fragment was seen. Frees the datagram
    /// once all its bytes went through.
    pub fn follow(&self, key: &FragKey, offset: usize, bytes: usize, last: bool) -> Option<DestId> {
        let mut shard = self.shard(key);
        let e = shard.map.get_mut(key)?;
        let dest = e.dest;
        e.seen = e.seen.saturating_add(bytes as u32);
        if last {
            e.total = (offset + bytes) as u32;
        }
        if e.total != 0 && e.seen >= e.total {
            // Its FIFO entry is skipped when it reaches the front.
            shard.map.remove(key);
        }
        Some(dest)
    }

    /// Remembers where the later fragments of a datagram go, from its first fragment
    /// (`bytes` of payload). A full shard evicts its oldest datagram first, whose later
    /// fragments are then dropped as `fragment_no_flow`.
    pub fn remember(&self, key: FragKey, dest: DestId, bytes: usize, now: Instant) {
        let max = self.max_per_shard;
        let mut shard = self.shard(&key);
        if !shard.map.contains_key(&key) && shard.map.len() >= max {
            let mut budget = 1;
            let evicted = shard.pop_front_while(|_| {
                let go = budget > 0;
                budget -= 1;
                go
            });
            self.evicted.fetch_add(evicted as u64, Relaxed);
        }
        let seq = shard.next_seq;
        shard.next_seq += 1;
        shard.map.insert(
            key,
            Entry {
                dest,
                expires: now + FRAG_TIMEOUT,
                seq,
                seen: bytes as u32,
                total: 0,
            },
        );
        shard.fifo.push_back((key, seq));
        if shard.fifo.len() > 2 * max {
            // Mostly datagrams freed at their last fragment: drop their entries.
            let Shard { map, fifo, .. } = &mut *shard;
            fifo.retain(|(k, seq)| map.get(k).is_some_and(|e| e.seq == *seq));
        }
    }

    /// Forgets the datagrams expired at `now` (they expire in FIFO order: each shard pops its
    /// front while it has expired). Returns how many.
    pub fn expire(&self, now: Instant) -> usize {
        self.shards
            .iter()
            .map(|s| lock(s).pop_front_while(|e| e.expires <= now))
            .sum()
    }

    /// Test hook: FIFO entries of every shard.
    #[cfg(test)]
    fn fifo_len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).fifo.len()).sum()
    }

    /// Test hook: whether `key`'s FIFO entry is live.
    #[cfg(test)]
    fn live(&self, key: &FragKey) -> bool {
        let s = self.shard(key);
        let live = |k: &FragKey, seq: u64| s.map.get(k).is_some_and(|e| e.seq == seq);
        s.fifo.iter().any(|(k, seq)| k == key && live(k, *seq))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn key(n: u32) -> FragKey {
        FragKey::V4(
            Ipv4Addr::from(0x0a00_0000 + (n >> 16)),
            Ipv4Addr::new(192, 0, 2, 1),
            17,
            n as u16,
        )
    }

    #[test]
    fn later_fragments_follow_and_the_last_byte_frees_the_datagram() {
        let t = FragTable::new(64);
        let now = Instant::from_secs(1);
        t.remember(key(1), DestId(7), 1480, now);
        assert!(t.live(&key(1)));
        // Out of order: the last fragment first, then the middle one.
        assert_eq!(t.follow(&key(1), 2960, 100, true), Some(DestId(7)));
        assert_eq!(t.len(), 1, "the middle fragment is still to come");
        assert_eq!(t.follow(&key(1), 1480, 1480, false), Some(DestId(7)));
        assert!(t.is_empty(), "all 3060 bytes went through");
        assert_eq!(t.follow(&key(1), 1480, 1480, false), None);
        assert_eq!(t.dest(&key(1)), None);
    }

    #[test]
    fn a_full_shard_evicts_its_oldest_datagram_in_constant_time() {
        let t = FragTable::new(16 * 8);
        assert_eq!(t.max(), 128);
        let now = Instant::from_secs(1);
        for n in 0..100_000 {
            t.remember(key(n), DestId(n), 8, now);
            assert!(t.len() <= t.max());
        }
        assert!(t.evicted() >= 100_000 - 128);
        assert_eq!(t.evicted() + t.len() as u64, 100_000);
        // The newest of each shard are kept.
        assert_eq!(t.dest(&key(99_999)), Some(DestId(99_999)));
        assert!(t.fifo_len() <= 2 * t.max() + SHARDS);
    }

    #[test]
    fn eviction_cost_does_not_grow_with_the_table() {
        // A big full tracker: each new datagram costs one FIFO pop, not a scan.
        let big = FragTable::new(1 << 18);
        let now = Instant::from_secs(1);
        for n in 0..(1 << 18) {
            big.remember(key(n), DestId(0), 8, now);
        }
        let start = std::time::Instant::now();
        for n in 0..100_000 {
            big.remember(key((1 << 18) + n), DestId(0), 8, now);
        }
        let per_insert = start.elapsed() / 100_000;
        assert!(big.evicted() >= 99_000);
        assert!(
            per_insert < std::time::Duration::from_micros(20),
            "{per_insert:?}"
        );
    }

    #[test]
    fn freed_datagrams_do_not_grow_the_fifo() {
        let t = FragTable::new(1024);
        let now = Instant::from_secs(1);
        // A long-lived datagram at the front of every shard, then many that complete.
        for n in 0..16 {
            t.remember(key(1_000_000 + n), DestId(0), 8, now);
        }
        for n in 0..50_000 {
            t.remember(key(n), DestId(1), 8, now);
            assert_eq!(t.follow(&key(n), 8, 8, true), Some(DestId(1)));
        }
        assert_eq!(t.len(), 16);
        assert!(t.fifo_len() <= 2 * t.max() + SHARDS, "{}", t.fifo_len());
        assert_eq!(t.evicted(), 0);
    }

    #[test]
    fn expiry_pops_only_what_expired() {
        let t = FragTable::new(1024);
        for n in 0..100 {
            t.remember(key(n), DestId(n), 8, Instant::from_secs(u64::from(n)));
        }
        // Datagram n expires at n + 30 s.
        assert_eq!(t.expire(Instant::from_secs(30)), 1);
        assert_eq!(t.expire(Instant::from_secs(79)), 49);
        assert_eq!(t.len(), 50);
        assert_eq!(t.dest(&key(49)), None);
        assert_eq!(t.dest(&key(50)), Some(DestId(50)));
        // Seen again: the datagram's timer restarts, its old FIFO entry is stale.
        t.remember(key(50), DestId(50), 8, Instant::from_secs(79));
        assert_eq!(t.expire(Instant::from_secs(80)), 0);
        assert_eq!(t.dest(&key(50)), Some(DestId(50)));
        assert_eq!(t.expire(Instant::from_secs(200)), 50);
        assert!(t.is_empty());
    }
}
