//! Flows a peer director synced that no worker of this one has seen yet.
//!
//! Connection sync hands the backup every flow the master tracks. The backup cannot know which
//! worker a flow will land on once it takes over (the kernel's multi-queue TUN picks the queue
//! by its own hash), so a synced flow waits here, in one table all workers share, and the first
//! worker that gets a packet of it and has no entry of its own takes it out
//! ([`SyncedTable::take`]) into its connection table. The real server's connection counts are
//! counted once, when the flow is installed here, and move with the flow.
//!
//! The table is consulted only on a connection-table miss and only while it is not empty (one
//! relaxed load): a director that never receives sync records pays nothing more.

use core::fmt;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

use crate::director::conn::{Conn, ConnKey, TableFull, TableKey};
use crate::time::Instant;

/// Number of independently locked shards.
const SHARDS: usize = 16;

type Shard<K> = HashMap<K, Conn>;

/// Synced flows waiting for their first packet, shared by all workers: IPv4 ones
/// ([`ConnKey`], the default) or IPv6 ones (`SyncedTable<ConnKey6>`).
pub struct SyncedTable<K = ConnKey> {
    shards: [Mutex<Shard<K>>; SHARDS],
    spread: RandomState,
    len: AtomicUsize,
    max: usize,
}

impl<K: TableKey> fmt::Debug for SyncedTable<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncedTable")
            .field("len", &self.len())
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

/// Locks a shard; a poisoned lock is used as is (every update is one map operation).
fn lock<K>(m: &Mutex<Shard<K>>) -> MutexGuard<'_, Shard<K>> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<K: TableKey> SyncedTable<K> {
    /// An empty table holding at most `max` flows.
    pub fn new(max: usize) -> SyncedTable<K> {
        SyncedTable {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            spread: RandomState::new(),
            len: AtomicUsize::new(0),
            max,
        }
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, Shard<K>> {
        let h = self.spread.hash_one(key);
        lock(&self.shards[(h >> 32) as usize % SHARDS])
    }

    /// Number of flows waiting (expired ones included until [`sweep`](Self::sweep)).
    #[inline]
    pub fn len(&self) -> usize {
        self.len.load(Relaxed)
    }

    /// Whether no flow waits: the packet path's one check.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The flow `key`, if it waits here (expired or not).
    pub fn get(&self, key: &K) -> Option<Conn> {
        self.shard(key).get(key).copied()
    }

    /// Puts or replaces the flow `key`; returns the flow it replaced. Fails when the key is
    /// new and the table is full.
    pub fn upsert(&self, key: K, conn: Conn) -> Result<Option<Conn>, TableFull> {
        let mut shard = self.shard(&key);
        if let Some(old) = shard.get_mut(&key) {
            return Ok(Some(core::mem::replace(old, conn)));
        }
        if self.len() >= self.max {
            return Err(TableFull);
        }
        shard.insert(key, conn);
        self.len.fetch_add(1, Relaxed);
        Ok(None)
    }

    /// Takes the flow `key` out (a worker adopts it).
    pub fn take(&self, key: &K) -> Option<Conn> {
        let conn = self.shard(key).remove(key)?;
        self.len.fetch_sub(1, Relaxed);
        Some(conn)
    }

    /// Removes the flows that have expired at `now`, calling `on_expire` for each (to give
    /// back its counts). Returns how many.
    pub fn sweep(&self, now: Instant, mut on_expire: impl FnMut(&K, &Conn)) -> usize {
        if self.is_empty() {
            return 0;
        }
        let mut removed = 0;
        for m in &self.shards {
            let mut shard = lock(m);
            shard.retain(|k, c| {
                let keep = !c.is_expired(now);
                if !keep {
                    on_expire(k, c);
                    removed += 1;
                }
                keep
            });
        }
        self.len.fetch_sub(removed, Relaxed);
        removed
    }

    /// Every flow waiting (expired ones included until [`sweep`](Self::sweep)), for a
    /// listing (`adm -L -n -c`: they are flows of this director that no worker holds yet).
    pub fn entries(&self) -> Vec<(K, Conn)> {
        let mut out = Vec::with_capacity(self.len());
        for m in &self.shards {
            out.extend(lock(m).iter().map(|(k, c)| (*k, *c)));
        }
        out
    }

    /// Appends up to `limit` live flows to `out`, resuming at `cursor` (0 to start). Returns
    /// the cursor to resume at, or `None` once every flow was visited. Flows added or taken
    /// between two calls may be missed or repeated.
    pub fn dump(
        &self,
        cursor: u64,
        limit: usize,
        now: Instant,
        out: &mut Vec<(K, Conn)>,
    ) -> Option<u64> {
        let (mut shard, mut skip) = ((cursor >> 32) as usize, (cursor & 0xffff_ffff) as usize);
        let mut n = 0;
        while shard < SHARDS {
            let map = lock(&self.shards[shard]);
            for (k, c) in map.iter().skip(skip) {
                if n == limit {
                    return Some(((shard as u64) << 32) | skip as u64);
                }
                skip += 1;
                if !c.is_expired(now) {
                    out.push((*k, *c));
                    n += 1;
                }
            }
            shard += 1;
            skip = 0;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::director::conn::{ConnState, DestId};
    use std::net::Ipv4Addr;

    fn key(i: u16) -> ConnKey {
        ConnKey::new(
            6,
            Ipv4Addr::new(10, 1, 0, 1),
            i,
            Ipv4Addr::new(10, 100, 0, 100),
            80,
        )
    }

    fn conn(dest: u32, expires: u64) -> Conn {
        Conn::new(
            DestId(dest),
            ConnState::Established,
            Instant::from_secs(expires),
        )
    }

    #[test]
    fn upsert_take_and_the_length() {
        let t = SyncedTable::new(2);
        assert!(t.is_empty());
        assert_eq!(t.upsert(key(1), conn(1, 10)), Ok(None));
        assert_eq!(t.upsert(key(1), conn(2, 20)), Ok(Some(conn(1, 10))));
        assert_eq!(t.upsert(key(2), conn(1, 10)), Ok(None));
        assert_eq!(t.upsert(key(3), conn(1, 10)), Err(TableFull), "full");
        assert_eq!(
            t.upsert(key(2), conn(3, 10)),
            Ok(Some(conn(1, 10))),
            "update when full"
        );
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(&key(1)), Some(conn(2, 20)));
        let mut all = t.entries();
        all.sort_by_key(|(k, _)| k.cport);
        assert_eq!(all, [(key(1), conn(2, 20)), (key(2), conn(3, 10))]);
        assert_eq!(t.take(&key(1)), Some(conn(2, 20)));
        assert_eq!(t.take(&key(1)), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn sweep_removes_expired_flows_and_reports_them() {
        let t = SyncedTable::new(100);
        for i in 0..10 {
            t.upsert(key(i), conn(1, u64::from(i) + 1)).unwrap();
        }
        let mut gone = Vec::new();
        assert_eq!(t.sweep(Instant::from_secs(5), |k, _| gone.push(k.cport)), 5);
        gone.sort();
        assert_eq!(gone, [0, 1, 2, 3, 4]);
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn dump_visits_every_live_flow_once() {
        let t = SyncedTable::new(1000);
        for i in 0..300 {
            t.upsert(key(i), conn(1, if i == 7 { 1 } else { 100 }))
                .unwrap();
        }
        let mut out = Vec::new();
        let mut cursor = 0;
        while let Some(c) = t.dump(cursor, 13, Instant::from_secs(50), &mut out) {
            cursor = c;
        }
        let mut ports: Vec<u16> = out.iter().map(|(k, _)| k.cport).collect();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 299);
        assert_eq!(out.len(), 299);
        assert!(!ports.contains(&7));
    }
}
