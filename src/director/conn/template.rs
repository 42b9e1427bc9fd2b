//! Persistence templates: which real server a client (or client network) sticks to.
//!
//! A persistent service (`ipvsadm -p TIMEOUT [-M NETMASK]`) binds every new flow of a client to
//! the real server its earlier flows went to. IPVS keeps that binding in a *template*: a
//! connection entry keyed by (protocol, masked client address, VIP, service port) with client
//! port 0. Here templates live in their own table shared by all worker threads, because a
//! client's flows may arrive on different TUN queues; it is consulted once per new flow, never
//! per packet, so a sharded `Mutex<HashMap>` is enough.
//!
//! Lifetime, as IPVS (`ip_vs_conn_expire` and `n_control`): a template lives while it controls
//! connections; each use restarts its timer, and once its last controlled connection has
//! expired it lives `timeout` longer.
//!
//! # Bounded
//!
//! The table holds at most `max` templates ([`Templates::with_max`]; the daemon's
//! `--max-templates`), split evenly over the shards. A template that controls no connection
//! (*idle*: only a hint of where its client went last) joins its shard's idle queue; a new
//! template for a full shard evicts the oldest idle one, in O(1). With none idle the new
//! template is not made ([`Templates::refused`]): the flow is still scheduled, it just
//! does not stick. The core creates a template only once the flow it is for is in the
//! connection table ([`Templates::lookup`], then [`Templates::bind`]), so a flow
//! refused for a full table leaves nothing behind.

use core::fmt;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

use super::{ConnKey, ConnKey6, DestId, TableKey, KEY_TEMPLATE};
use crate::time::{Duration, Instant};

/// Number of independently locked shards.
const SHARDS: usize = 16;

/// Idle templates [`Templates::bind`] and the others look at (at most) for one that can
/// be evicted: the queue's stale entries (templates since used again or removed) are skipped.
const EVICT_TRIES: usize = 8;

/// The template key for a client of a persistent service: client address masked with the
/// service's persistence netmask, client port 0, flags [`KEY_TEMPLATE`].
///
/// `vport` is the service's port (0 for an all-ports service).
pub fn template_key(
    proto: u8,
    caddr: Ipv4Addr,
    netmask: Ipv4Addr,
    vaddr: Ipv4Addr,
    vport: u16,
) -> ConnKey {
    ConnKey {
        proto,
        flags: KEY_TEMPLATE,
        caddr: Ipv4Addr::from(u32::from(caddr) & u32::from(netmask)),
        cport: 0,
        vaddr,
        vport,
    }
}

/// The template key for a client of a persistent IPv6 service: client address cut to its
/// first `prefix_len` bits (ipvsadm's `-M` is a prefix length for IPv6 services, 128 by
/// default; 0 makes one template for every client, more than 128 counts as 128), client port
/// 0, flags [`KEY_TEMPLATE`].
///
/// `vport` is the service's port (0 for an all-ports service).
pub fn template_key6(
    proto: u8,
    caddr: Ipv6Addr,
    prefix_len: u8,
    vaddr: Ipv6Addr,
    vport: u16,
) -> ConnKey6 {
    ConnKey6 {
        proto,
        flags: KEY_TEMPLATE,
        caddr: ipv6_prefix(caddr, prefix_len),
        cport: 0,
        vaddr,
        vport,
    }
}

/// `addr` with every bit past the first `prefix_len` (at most 128) cleared.
pub fn ipv6_prefix(addr: Ipv6Addr, prefix_len: u8) -> Ipv6Addr {
    let mask = u128::MAX
        .checked_shl(128 - u32::from(prefix_len.min(128)))
        .unwrap_or(0);
    Ipv6Addr::from(u128::from(addr) & mask)
}

#[derive(Clone, Copy, Debug)]
struct Template {
    dest: DestId,
    /// Connections created through this template that have not expired yet.
    controlled: u32,
    /// When the template expires if it controls no connection by then.
    expires: Instant,
    /// The persistence timeout it was last used with.
    timeout: Duration,
    /// Whether its key is in the shard's idle queue (once at most).
    queued: bool,
}

impl Template {
    fn new(dest: DestId, controlled: u32, expires: Instant, timeout: Duration) -> Template {
        Template {
            dest,
            controlled,
            expires,
            timeout,
            queued: false,
        }
    }

    fn is_alive(&self, now: Instant) -> bool {
        self.controlled > 0 || self.expires > now
    }
}

/// One shard: its templates and the keys of those that went idle, oldest first.
#[derive(Debug)]
struct Shard<K> {
    map: HashMap<K, Template>,
    idle: VecDeque<K>,
}

impl<K> Default for Shard<K> {
    fn default() -> Self {
        Shard {
            map: HashMap::new(),
            idle: VecDeque::new(),
        }
    }
}

impl<K: TableKey> Shard<K> {
    /// Queues `key`'s template as idle if it is and is not queued yet.
    fn note_idle(&mut self, key: &K) {
        if let Some(t) = self.map.get_mut(key) {
            if t.controlled == 0 && !t.queued {
                t.queued = true;
                self.idle.push_back(*key);
            }
        }
    }

    /// Evicts the oldest idle template; false if none of the first `EVICT_TRIES` queued keys
    /// still names an idle template.
    fn evict_idle(&mut self) -> bool {
        for _ in 0..EVICT_TRIES {
            let Some(k) = self.idle.pop_front() else {
                return false;
            };
            match self.map.get_mut(&k) {
                Some(t) if t.queued && t.controlled == 0 => {
                    self.map.remove(&k);
                    return true;
                }
                // In use again: it is queued anew when it goes idle.
                Some(t) => t.queued = false,
                None => {}
            }
        }
        false
    }

    /// Drops the queue's stale keys (removed templates, or used again) and duplicates: one
    /// pass, run with [`Templates::expire`]'s, so the queue never outgrows the map.
    fn compact_idle(&mut self) {
        for t in self.map.values_mut() {
            t.queued = false;
        }
        let map = &mut self.map;
        self.idle.retain(|k| match map.get_mut(k) {
            Some(t) if t.controlled == 0 && !t.queued => {
                t.queued = true;
                true
            }
            _ => false,
        });
        // Idle templates the queue lost track of (none in practice) join at the back.
        for (k, t) in map.iter_mut() {
            if t.controlled == 0 && !t.queued {
                t.queued = true;
                self.idle.push_back(*k);
            }
        }
    }
}

/// Persistence templates of IPv4 services.
pub type TemplateTable = Templates<ConnKey>;

/// Persistence templates of IPv6 services.
pub type TemplateTable6 = Templates<ConnKey6>;

/// Persistence templates keyed by `K`, shared by all worker threads.
pub struct Templates<K: TableKey> {
    shards: [Mutex<Shard<K>>; SHARDS],
    /// Picks a key's shard.
    spread: RandomState,
    /// Most templates one shard holds.
    max_per_shard: usize,
    /// Idle templates evicted to make room for a new one.
    evicted: AtomicU64,
    /// New templates not made: their shard was full of templates in use.
    refused: AtomicU64,
}

impl<K: TableKey> Default for Templates<K> {
    fn default() -> Self {
        Templates::new()
    }
}

impl<K: TableKey> fmt::Debug for Templates<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Templates")
            .field("len", &self.len())
            .field("max", &self.max())
            .finish_non_exhaustive()
    }
}

/// Locks a shard. A panic elsewhere while holding the lock leaves the map consistent (every
/// update is a single map operation), so a poisoned lock is used as is.
fn lock<K>(m: &Mutex<Shard<K>>) -> MutexGuard<'_, Shard<K>> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<K: TableKey> Templates<K> {
    /// An empty table without a practical limit (`usize::MAX`; tests and the simulator).
    pub fn new() -> Self {
        Templates::with_max(usize::MAX)
    }

    /// An empty table holding at most `max` templates (at least one per shard, 16).
    pub fn with_max(max: usize) -> Self {
        Templates {
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
            spread: RandomState::new(),
            max_per_shard: max.div_ceil(SHARDS).max(1),
            evicted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Most templates the table holds.
    pub fn max(&self) -> usize {
        self.max_per_shard.saturating_mul(SHARDS)
    }

    /// Idle templates evicted so far to make room for new ones.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Relaxed)
    }

    /// New templates not made so far because their shard was full of templates in use.
    pub fn refused(&self) -> u64 {
        self.refused.load(Relaxed)
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, Shard<K>> {
        let h = self.spread.hash_one(key);
        lock(&self.shards[(h >> 32) as usize % SHARDS])
    }

    /// Puts a new template for `key` (absent or dead) in `shard`, evicting an idle one if the
    /// shard is full; false (and counted) if there is no room.
    fn put(&self, shard: &mut Shard<K>, key: K, mut t: Template) -> bool {
        // A dead template it replaces may be in the idle queue already.
        t.queued = shard.map.get(&key).is_some_and(|old| old.queued);
        if !shard.map.contains_key(&key) && shard.map.len() >= self.max_per_shard {
            if !shard.evict_idle() {
                self.refused.fetch_add(1, Relaxed);
                return false;
            }
            self.evicted.fetch_add(1, Relaxed);
        }
        shard.map.insert(key, t);
        shard.note_idle(&key);
        true
    }

    /// Looks up the template for `key` (not expired at `now`); if absent, calls `choose()` and,
    /// if it returns `Some(dest)`, creates the template. Either way increments the template's
    /// controlled-connection count and returns the dest. A template expires `timeout` after the
    /// last time it had zero controlled connections (each use also restarts its timer). When
    /// the table is full (and nothing idle can go), the dest is returned without a template.
    ///
    /// `choose` runs with the key's shard locked: it must not call back into this table.
    /// The core uses [`lookup`](Self::lookup) and [`bind`](Self::bind) instead, so that no
    /// template is made for a flow the connection table refuses.
    pub fn get_or_create(
        &self,
        key: K,
        now: Instant,
        timeout: Duration,
        choose: impl FnOnce() -> Option<DestId>,
    ) -> Option<DestId> {
        let mut shard = self.shard(&key);
        if let Some(t) = shard.map.get_mut(&key) {
            if t.is_alive(now) {
                t.controlled = t.controlled.saturating_add(1);
                t.expires = t.expires.max(now + timeout);
                t.timeout = timeout;
                return Some(t.dest);
            }
        }
        match choose() {
            Some(dest) => {
                let t = Template::new(dest, 1, now + timeout, timeout);
                self.put(&mut shard, key, t);
                Some(dest)
            }
            None => {
                // Drop the dead template, if that is what was there.
                shard.map.remove(&key);
                None
            }
        }
    }

    /// The real server of `key`'s template, if one is alive at `now`. Changes nothing: once
    /// the flow is in, [`bind`](Self::bind) counts it.
    pub fn lookup(&self, key: &K, now: Instant) -> Option<DestId> {
        let shard = self.shard(key);
        shard
            .map
            .get(key)
            .filter(|t| t.is_alive(now))
            .map(|t| t.dest)
    }

    /// A flow bound to `dest` under template `key` is in the connection table: the template
    /// controls it (created for `dest` if missing or dead; each use restarts its timer).
    /// Returns false, counting nothing, when a live template binds the key to another server
    /// (another worker scheduled the same client between this one's
    /// [`lookup`](Self::lookup) and now, the race IPVS has between CPUs too: the flow keeps its
    /// server), or when the table is full.
    pub fn bind(&self, key: K, dest: DestId, now: Instant, timeout: Duration) -> bool {
        self.adopt(key, dest, now, timeout)
    }

    /// A connection expired.
    pub fn release(&self, key: &K, now: Instant) {
        self.release_if(key, now, |_| true);
    }

    /// Like [`Templates::release`], but only if the template still points at `dest`: a
    /// connection that outlived its template's removal ([`Templates::remove_dest`]) does
    /// not then count against a newer template of the same key.
    pub fn release_for(&self, key: &K, dest: DestId, now: Instant) {
        self.release_if(key, now, |t| t.dest == dest);
    }

    fn release_if(&self, key: &K, now: Instant, matches: impl Fn(&Template) -> bool) {
        let mut shard = self.shard(key);
        let mut idle = false;
        if let Some(t) = shard.map.get_mut(key) {
            if matches(t) && t.controlled > 0 {
                t.controlled -= 1;
                if t.controlled == 0 {
                    t.expires = t.expires.max(now + t.timeout);
                    idle = true;
                }
            }
        }
        if idle {
            shard.note_idle(key);
        }
    }

    /// Removes templates pointing at `dest` (used when a real server is deleted, or quiesced
    /// with `expire_quiescent_template`).
    pub fn remove_dest(&self, dest: DestId) {
        for m in &self.shards {
            lock(m).map.retain(|_, t| t.dest != dest);
        }
    }

    /// Removes the template of `key` if it points at `dest` (IPVS `ip_vs_check_template`: a
    /// template to a server that is unavailable, or quiesced with
    /// `expire_quiescent_template`, is expired when a new connection would use it). Its
    /// connections keep their server; they no longer count against the key's next template.
    pub fn remove_if_dest(&self, key: &K, dest: DestId) {
        let mut shard = self.shard(key);
        if shard.map.get(key).is_some_and(|t| t.dest == dest) {
            shard.map.remove(key);
        }
    }

    /// Removes the templates that have expired at `now`; returns how many.
    pub fn expire(&self, now: Instant) -> usize {
        let mut removed = 0;
        for m in &self.shards {
            let mut shard = lock(m);
            let before = shard.map.len();
            shard.map.retain(|_, t| t.is_alive(now));
            removed += before - shard.map.len();
            if shard.idle.len() > shard.map.len() {
                shard.compact_idle();
            }
        }
        removed
    }

    /// Every live template at `now`: key, dest, expiry, controlled connections (for
    /// `adm -lnc`). A template that controls connections does not expire at the instant shown;
    /// it is when it would, were they gone.
    pub fn snapshot(&self, now: Instant) -> Vec<(K, DestId, Instant, u32)> {
        let mut out = Vec::new();
        for m in &self.shards {
            let shard = lock(m);
            out.extend(
                shard
                    .map
                    .iter()
                    .filter(|(_, t)| t.is_alive(now))
                    .map(|(k, t)| (*k, t.dest, t.expires, t.controlled)),
            );
        }
        out
    }

    /// Installs a template a peer director synced: `key` binds to `dest` until at least
    /// `now + left`; `timeout` is the service's persistence timeout (how long the template
    /// outlives its last connection). A live template of the same server keeps its
    /// connections and takes the later expiry; one of another server (or an expired one) is
    /// replaced, its connections no longer counting against it (as [`remove_if_dest`]).
    ///
    /// [`remove_if_dest`]: Self::remove_if_dest
    pub fn install(&self, key: K, dest: DestId, now: Instant, left: Duration, timeout: Duration) {
        let mut shard = self.shard(&key);
        let expires = now + left;
        match shard.map.get_mut(&key) {
            Some(t) if t.dest == dest && t.is_alive(now) => {
                t.expires = t.expires.max(expires);
                t.timeout = timeout;
            }
            _ => {
                let t = Template::new(dest, 0, expires, timeout);
                self.put(&mut shard, key, t);
            }
        }
    }

    /// A connection bound to `dest` under template `key` arrived by connection sync (not
    /// through [`get_or_create`](Self::get_or_create)): it counts against the template, so
    /// the template lives as long as it does, and gives its count back with
    /// [`release_for`](Self::release_for) when it ends. A template that is missing (or has
    /// expired) is created for `dest` with `timeout`. Returns false, and counts nothing,
    /// when a live template binds the key to another server (the connection keeps its
    /// server, and its end does not touch that template), or when the table is full.
    pub fn adopt(&self, key: K, dest: DestId, now: Instant, timeout: Duration) -> bool {
        let mut shard = self.shard(&key);
        match shard.map.get_mut(&key) {
            Some(t) if t.is_alive(now) => {
                if t.dest != dest {
                    return false;
                }
                t.controlled = t.controlled.saturating_add(1);
                t.expires = t.expires.max(now + timeout);
                t.timeout = timeout;
                true
            }
            _ => {
                let t = Template::new(dest, 1, now + timeout, timeout);
                self.put(&mut shard, key, t)
            }
        }
    }

    /// Appends up to `limit` live templates to `out`, resuming at `cursor` (0 to start), as
    /// (key, server, time left): a template that controls connections has its whole timeout
    /// left, since it outlives them by that. Returns the cursor to resume at, or `None`
    /// once every template was visited. A paced walk (connection sync's bulk dump and
    /// refresh): templates created or removed between two calls may be missed or repeated.
    pub fn dump(
        &self,
        cursor: u64,
        limit: usize,
        now: Instant,
        out: &mut Vec<(K, DestId, Duration)>,
    ) -> Option<u64> {
        let (mut shard, mut skip) = ((cursor >> 32) as usize, (cursor & 0xffff_ffff) as usize);
        let mut n = 0;
        while shard < SHARDS {
            let guard = lock(&self.shards[shard]);
            for (k, t) in guard.map.iter().skip(skip) {
                if n == limit {
                    return Some(((shard as u64) << 32) | skip as u64);
                }
                skip += 1;
                if t.is_alive(now) {
                    let left = if t.controlled > 0 {
                        t.timeout
                    } else {
                        t.expires.saturating_since(now)
                    };
                    out.push((*k, t.dest, left));
                    n += 1;
                }
            }
            shard += 1;
            skip = 0;
        }
        None
    }

    /// Number of templates held, including expired ones not yet removed by
    /// [`Templates::expire`].
    pub fn len(&self) -> usize {
        self.shards.iter().map(|m| lock(m).map.len()).sum()
    }

    /// Whether no template is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const TCP: u8 = 6;
    const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    const HOST: Ipv4Addr = Ipv4Addr::BROADCAST;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn key(client: [u8; 4]) -> ConnKey {
        template_key(TCP, Ipv4Addr::from(client), HOST, VIP, 443)
    }

    #[test]
    fn template_key_masks_the_client() {
        let k = template_key(
            TCP,
            Ipv4Addr::new(198, 51, 100, 77),
            Ipv4Addr::new(255, 255, 255, 0),
            VIP,
            80,
        );
        assert_eq!(k.caddr, Ipv4Addr::new(198, 51, 100, 0));
        assert_eq!(k.cport, 0);
        assert!(k.is_template());
        assert_eq!((k.proto, k.vaddr, k.vport), (TCP, VIP, 80));
    }

    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x80);

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn template_key6_keeps_the_prefix_of_the_client() {
        let c = v6("2001:db8:aaaa:bbbb:c111:2222:3333:4444");
        let k = |len| template_key6(TCP, c, len, VIP6, 443);
        assert_eq!(k(128).caddr, c);
        assert_eq!(k(64).caddr, v6("2001:db8:aaaa:bbbb::"));
        assert_eq!(k(65).caddr, v6("2001:db8:aaaa:bbbb:8000::"));
        assert_eq!(k(56).caddr, v6("2001:db8:aaaa:bb00::"));
        assert_eq!(k(48).caddr, v6("2001:db8:aaaa::"));
        assert_eq!(k(127).caddr, v6("2001:db8:aaaa:bbbb:c111:2222:3333:4444"));
        assert_eq!(k(126).caddr, v6("2001:db8:aaaa:bbbb:c111:2222:3333:4444"));
        assert_eq!(
            template_key6(TCP, v6("2001:db8::7"), 126, VIP6, 443).caddr,
            v6("2001:db8::4")
        );
        assert_eq!(k(3).caddr, v6("2000::"));
        assert_eq!(k(0).caddr, Ipv6Addr::UNSPECIFIED);
        // Past 128 is 128 (ipvsadm accepts 1-128; the kernel never sees more).
        assert_eq!(k(129).caddr, c);
        assert_eq!(k(u8::MAX).caddr, c);
        for len in [0, 1, 64, 128] {
            let key = k(len);
            assert_eq!(key.cport, 0);
            assert!(key.is_template());
            assert_eq!((key.proto, key.vaddr, key.vport), (TCP, VIP6, 443));
        }
        assert_eq!(ipv6_prefix(c, 16), v6("2001::"));
    }

    #[test]
    fn ipv6_clients_share_a_template_by_prefix() {
        let a = v6("2001:db8:1:2::10");
        let b = v6("2001:db8:1:2:ffff::20");
        let other = v6("2001:db8:1:3::10");
        let now = Instant::from_secs(1);
        // (prefix length, b follows a, the other /64 follows a)
        for (len, same_64, everyone) in [(64, true, false), (128, false, false), (0, true, true)] {
            let t = TemplateTable6::new();
            let key = |c| template_key6(TCP, c, len, VIP6, 443);
            assert_eq!(
                t.get_or_create(key(a), now, secs(60), || Some(DestId(1))),
                Some(DestId(1))
            );
            let want_b = if same_64 { 1 } else { 2 };
            assert_eq!(
                t.get_or_create(key(b), now, secs(60), || Some(DestId(2))),
                Some(DestId(want_b)),
                "/{len}"
            );
            let want_other = if everyone { 1 } else { 3 };
            assert_eq!(
                t.get_or_create(key(other), now, secs(60), || Some(DestId(3))),
                Some(DestId(want_other)),
                "/{len}"
            );
            let templates = [1, usize::from(!same_64), usize::from(!everyone)];
            assert_eq!(t.len(), templates.iter().sum::<usize>(), "/{len}");
        }
    }

    /// The IPv6 table is the same table: bind, lookup, release, expiry, snapshot, dump and
    /// removal by server, with IPv6 keys.
    #[test]
    fn ipv6_templates_live_and_expire_like_ipv4_ones() {
        let t = TemplateTable6::with_max(64);
        let now = Instant::from_secs(100);
        let k = template_key6(TCP, v6("2001:db8:5::1"), 64, VIP6, 443);
        assert_eq!(t.lookup(&k, now), None);
        assert!(t.bind(k, DestId(7), now, secs(60)));
        assert!(!t.bind(k, DestId(8), now, secs(60)), "bound to 7");
        assert_eq!(t.lookup(&k, now), Some(DestId(7)));
        assert_eq!(t.snapshot(now), [(k, DestId(7), now + secs(60), 1)]);
        let mut out = Vec::new();
        assert_eq!(t.dump(0, 10, now, &mut out), None);
        assert_eq!(out, [(k, DestId(7), secs(60))]);
        let end = now + secs(3600);
        assert_eq!(t.expire(end), 0, "controls a connection");
        t.release_for(&k, DestId(7), end);
        assert_eq!(t.expire(end + secs(59)), 0);
        assert_eq!(t.expire(end + secs(60)), 1);
        assert!(t.is_empty());
        // Installed from a peer, removed with its server.
        t.install(k, DestId(9), now, secs(30), secs(60));
        let k2 = template_key6(TCP, v6("2001:db8:6::1"), 64, VIP6, 443);
        t.install(k2, DestId(10), now, secs(30), secs(60));
        t.remove_dest(DestId(9));
        assert_eq!(t.snapshot(now), [(k2, DestId(10), now + secs(30), 0)]);
        assert_eq!(
            format!("{k2}"),
            "proto 6 [2001:db8:6::]:0 -> [2001:db8::80]:443"
        );
    }

    #[test]
    fn second_flow_sticks_to_the_first_choice() {
        let t = TemplateTable::new();
        let now = Instant::from_secs(10);
        let k = key([10, 0, 0, 1]);
        assert_eq!(
            t.get_or_create(k, now, secs(300), || Some(DestId(1))),
            Some(DestId(1))
        );
        let got = t.get_or_create(k, now, secs(300), || panic!("must not reschedule"));
        assert_eq!(got, Some(DestId(1)));
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.snapshot(now),
            [(k, DestId(1), now + secs(300), 2)],
            "two controlled connections"
        );
        // Another client is scheduled afresh.
        let other = key([10, 0, 0, 2]);
        assert_eq!(
            t.get_or_create(other, now, secs(300), || Some(DestId(2))),
            Some(DestId(2))
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn no_dest_creates_no_template() {
        let t = TemplateTable::new();
        let k = key([10, 0, 0, 1]);
        assert_eq!(t.get_or_create(k, Instant::ZERO, secs(60), || None), None);
        assert!(t.is_empty());
    }

    #[test]
    fn lives_while_it_controls_connections_then_timeout_more() {
        let t = TemplateTable::new();
        let k = key([10, 0, 0, 1]);
        let timeout = secs(60);
        let mut now = Instant::from_secs(1000);
        t.get_or_create(k, now, timeout, || Some(DestId(7)));
        // The connection lives far beyond the persistence timeout.
        now += secs(3600);
        assert_eq!(t.expire(now), 0);
        assert_eq!(
            t.get_or_create(k, now, timeout, || Some(DestId(8))),
            Some(DestId(7))
        );
        // Both connections expire; the template outlives the last one by the timeout.
        t.release(&k, now + secs(10));
        assert_eq!(
            t.expire(now + secs(500)),
            0,
            "one connection still controlled"
        );
        let last = now + secs(600);
        t.release(&k, last);
        assert_eq!(t.snapshot(last), [(k, DestId(7), last + timeout, 0)]);
        assert_eq!(t.expire(last + secs(59)), 0);
        // A new flow within the timeout still sticks and restarts the timer.
        let reuse = last + secs(59);
        assert_eq!(
            t.get_or_create(k, reuse, timeout, || Some(DestId(8))),
            Some(DestId(7))
        );
        t.release(&k, reuse);
        assert_eq!(t.expire(reuse + secs(59)), 0);
        assert_eq!(t.expire(reuse + secs(60)), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn expired_template_is_replaced_by_a_new_choice() {
        let t = TemplateTable::new();
        let k = key([10, 0, 0, 1]);
        let t0 = Instant::from_secs(5);
        t.get_or_create(k, t0, secs(60), || Some(DestId(1)));
        t.release(&k, t0);
        // Expired but not yet swept: treated as absent.
        let later = t0 + secs(60);
        assert!(t.snapshot(later).is_empty());
        assert_eq!(
            t.get_or_create(k, later, secs(60), || Some(DestId(2))),
            Some(DestId(2))
        );
        assert_eq!(t.snapshot(later), [(k, DestId(2), later + secs(60), 1)]);
    }

    #[test]
    fn netmask_groups_clients_of_one_network() {
        let t = TemplateTable::new();
        let mask = Ipv4Addr::new(255, 255, 255, 0);
        let now = Instant::from_secs(1);
        let k1 = template_key(TCP, Ipv4Addr::new(198, 51, 100, 1), mask, VIP, 443);
        let k2 = template_key(TCP, Ipv4Addr::new(198, 51, 100, 200), mask, VIP, 443);
        let k3 = template_key(TCP, Ipv4Addr::new(198, 51, 101, 1), mask, VIP, 443);
        assert_eq!(k1, k2);
        assert_eq!(
            t.get_or_create(k1, now, secs(60), || Some(DestId(1))),
            Some(DestId(1))
        );
        assert_eq!(
            t.get_or_create(k2, now, secs(60), || Some(DestId(2))),
            Some(DestId(1))
        );
        assert_eq!(
            t.get_or_create(k3, now, secs(60), || Some(DestId(3))),
            Some(DestId(3))
        );
        // Same network, other service port or protocol: another template.
        let k4 = template_key(TCP, Ipv4Addr::new(198, 51, 100, 1), mask, VIP, 80);
        let k5 = template_key(17, Ipv4Addr::new(198, 51, 100, 1), mask, VIP, 443);
        assert_eq!(
            t.get_or_create(k4, now, secs(60), || Some(DestId(4))),
            Some(DestId(4))
        );
        assert_eq!(
            t.get_or_create(k5, now, secs(60), || Some(DestId(5))),
            Some(DestId(5))
        );
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn remove_dest_drops_its_templates() {
        let t = TemplateTable::new();
        let now = Instant::from_secs(1);
        for i in 0..20u8 {
            let dest = DestId(u32::from(i % 2));
            t.get_or_create(key([10, 0, 0, i]), now, secs(60), || Some(dest));
        }
        t.remove_dest(DestId(1));
        assert_eq!(t.len(), 10);
        assert!(t.snapshot(now).iter().all(|e| e.1 == DestId(0)));
        // The client of a removed dest is scheduled again.
        assert_eq!(
            t.get_or_create(key([10, 0, 0, 1]), now, secs(60), || Some(DestId(9))),
            Some(DestId(9))
        );
    }

    #[test]
    fn release_for_ignores_a_newer_template() {
        let t = TemplateTable::new();
        let k = key([10, 0, 0, 1]);
        let now = Instant::from_secs(1);
        t.get_or_create(k, now, secs(60), || Some(DestId(1)));
        t.remove_dest(DestId(1));
        t.get_or_create(k, now, secs(60), || Some(DestId(2)));
        // The old connection (bound to dest 1) expires: the new template keeps its count.
        t.release_for(&k, DestId(1), now);
        assert_eq!(t.snapshot(now)[0].3, 1);
        t.release_for(&k, DestId(2), now);
        assert_eq!(t.snapshot(now)[0].3, 0);
        // Releasing more than was controlled does not underflow.
        t.release(&k, now);
        assert_eq!(t.snapshot(now)[0].3, 0);
        t.release(&key([1, 2, 3, 4]), now);
    }

    #[test]
    fn installed_template_binds_new_flows_and_expires_on_its_own() {
        let t = TemplateTable::new();
        let k = key([10, 0, 0, 1]);
        let now = Instant::from_secs(100);
        t.install(k, DestId(3), now, secs(40), secs(300));
        assert_eq!(t.snapshot(now), [(k, DestId(3), now + secs(40), 0)]);
        // A new flow of the client follows it.
        assert_eq!(
            t.get_or_create(k, now, secs(300), || panic!("must follow the template")),
            Some(DestId(3))
        );
        t.release(&k, now);
        // A refresh of the same server extends it, never shortens it.
        t.install(k, DestId(3), now, secs(10), secs(300));
        assert_eq!(t.snapshot(now)[0].2, now + secs(300));
        // Another server replaces it.
        t.install(k, DestId(4), now, secs(10), secs(300));
        assert_eq!(t.snapshot(now), [(k, DestId(4), now + secs(10), 0)]);
        assert_eq!(t.expire(now + secs(10)), 1);
    }

    #[test]
    fn adopted_connections_hold_the_template_until_released() {
        let t = TemplateTable::new();
        let k = key([10, 0, 0, 1]);
        let now = Instant::from_secs(100);
        // Missing: created for the connection's server, controlling it.
        assert!(t.adopt(k, DestId(1), now, secs(60)));
        assert!(t.adopt(k, DestId(1), now, secs(60)));
        assert_eq!(t.snapshot(now)[0].3, 2);
        // A connection to another server does not count against it.
        assert!(!t.adopt(k, DestId(2), now, secs(60)));
        assert_eq!(t.snapshot(now)[0].3, 2);
        assert_eq!(t.expire(now + secs(3600)), 0, "controls two connections");
        let end = now + secs(3600);
        t.release_for(&k, DestId(1), end);
        t.release_for(&k, DestId(1), end);
        assert_eq!(t.expire(end + secs(59)), 0);
        assert_eq!(t.expire(end + secs(60)), 1);
    }

    #[test]
    fn dump_walks_every_live_template_in_pieces() {
        let t = TemplateTable::new();
        let now = Instant::from_secs(10);
        for i in 0..100u8 {
            t.install(
                key([10, 0, 1, i]),
                DestId(u32::from(i)),
                now,
                secs(30),
                secs(60),
            );
        }
        // One expired template is not dumped.
        t.install(key([10, 0, 2, 1]), DestId(1), now, secs(0), secs(60));
        // One controlling a connection has its whole timeout left.
        t.adopt(key([10, 0, 3, 1]), DestId(5), now, secs(60));
        let mut out = Vec::new();
        let mut cursor = 0;
        let mut calls = 0;
        loop {
            calls += 1;
            let before = out.len();
            let next = t.dump(cursor, 7, now, &mut out);
            assert!(out.len() - before <= 7);
            match next {
                Some(c) => cursor = c,
                None => break,
            }
        }
        assert!(calls >= 101 / 7, "{calls}");
        assert_eq!(out.len(), 101);
        let keys: std::collections::HashSet<ConnKey> = out.iter().map(|e| e.0).collect();
        assert_eq!(keys.len(), 101, "no template twice");
        let adopted = out.iter().find(|e| e.0 == key([10, 0, 3, 1])).unwrap();
        assert_eq!((adopted.1, adopted.2), (DestId(5), secs(60)));
        assert!(out
            .iter()
            .filter(|e| e.0 != adopted.0)
            .all(|e| e.2 == secs(30)));
        assert!(
            t.dump(0, 0, now, &mut out).is_some(),
            "limit 0 stops at once"
        );
    }

    #[test]
    fn shared_between_threads() {
        let t = Arc::new(TemplateTable::new());
        let now = Instant::from_secs(1);
        let handles: Vec<_> = (0..4u32)
            .map(|w| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || {
                    (0..200u8)
                        .map(|i| {
                            t.get_or_create(key([10, 0, 1, i]), now, secs(60), || Some(DestId(w)))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let results: Vec<Vec<Option<DestId>>> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        // Every worker got the same dest for each client.
        for r in &results[1..] {
            assert_eq!(r, &results[0]);
        }
        assert_eq!(t.len(), 200);
        assert!(t.snapshot(now).iter().all(|e| e.3 == 4));
    }

    #[test]
    fn lookup_changes_nothing_and_bind_counts_the_flow() {
        let t = TemplateTable::new();
        let k = key([10, 0, 0, 1]);
        let now = Instant::from_secs(10);
        assert_eq!(t.lookup(&k, now), None);
        assert!(t.is_empty(), "a lookup makes nothing");
        assert!(t.bind(k, DestId(3), now, secs(60)));
        assert_eq!(t.lookup(&k, now), Some(DestId(3)));
        assert!(t.bind(k, DestId(3), now, secs(60)));
        assert_eq!(t.snapshot(now), [(k, DestId(3), now + secs(60), 2)]);
        // Another worker's flow raced to another server: it keeps its server, uncounted.
        assert!(!t.bind(k, DestId(4), now, secs(60)));
        assert_eq!(t.snapshot(now)[0].3, 2);
    }

    #[test]
    fn a_full_table_evicts_the_oldest_idle_template_then_refuses() {
        // 16 shards of 2: 32 templates at most.
        let t = TemplateTable::with_max(32);
        assert_eq!(t.max(), 32);
        let now = Instant::from_secs(10);
        // Fill with templates in use, then release half of them (idle: a hint only).
        let mut n = 0u32;
        let mut in_use = Vec::new();
        while t.len() < 32 && n < 10_000 {
            let k = key(n.to_be_bytes());
            n += 1;
            if t.bind(k, DestId(1), now, secs(300)) {
                in_use.push(k);
            }
        }
        assert_eq!(t.len(), 32);
        assert!(
            t.refused() > 0,
            "full shards refused some while the others filled"
        );
        let refused = t.refused();
        // Every shard is full of templates in use: a new client's template is refused.
        let newcomer = key([192, 168, 0, 1]);
        assert!(!t.bind(newcomer, DestId(2), now, secs(300)));
        assert_eq!(t.refused(), refused + 1);
        assert_eq!(t.len(), 32);
        // Their flows end: the templates go idle, and new ones evict them, oldest first.
        for k in &in_use {
            t.release(k, now);
        }
        for i in 0..1000u32 {
            let k = key((0xc0a8_0000 + i).to_be_bytes());
            assert!(t.bind(k, DestId(2), now, secs(300)), "{i}");
            t.release(&k, now);
            assert!(t.len() <= 32);
        }
        assert!(t.evicted() >= 1000 - 32, "{}", t.evicted());
        assert_eq!(t.refused(), refused + 1);
        // The idle queues stay bounded by the table.
        t.expire(now);
        for m in &t.shards {
            let shard = lock(m);
            assert!(shard.idle.len() <= shard.map.len());
        }
    }

    #[test]
    fn idle_queue_skips_templates_used_again() {
        let t = TemplateTable::with_max(16);
        let now = Instant::from_secs(10);
        // One shard per template: with max 16 each shard holds one.
        let k = key([10, 0, 0, 1]);
        assert!(t.bind(k, DestId(1), now, secs(300)));
        t.release(&k, now);
        // Used again: no longer idle, though its key is still queued.
        assert!(t.bind(k, DestId(1), now, secs(300)));
        let mut other = None;
        for i in 0..10_000u32 {
            let o = key((0x0b00_0000 + i).to_be_bytes());
            let same_shard = {
                let h = |x: &ConnKey| (t.spread.hash_one(x) >> 32) as usize % SHARDS;
                h(&o) == h(&k)
            };
            if same_shard {
                other = Some(o);
                break;
            }
        }
        let other = other.unwrap();
        assert!(
            !t.bind(other, DestId(2), now, secs(300)),
            "in use: not evicted"
        );
        assert_eq!(t.lookup(&k, now), Some(DestId(1)));
        t.release(&k, now);
        assert!(
            t.bind(other, DestId(2), now, secs(300)),
            "idle now: evicted"
        );
        assert_eq!(t.lookup(&k, now), None);
        assert_eq!(t.evicted(), 1);
    }
}
