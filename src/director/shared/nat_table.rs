//! The NAT flow table: the flows of NAT mode (and, as a second table, S-NAT's mappings),
//! shared by all workers, sharded by the client's tuple so that both directions of a flow find
//! the same shard. See [`crate::director::nat`] for why it is one table and not one per worker.

use core::fmt;
use core::hash::{Hash, Hasher};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::director::conn::{Conn, ConnKey, ConnKey6, Eviction};
use crate::hash::{folded_mul, splitmix64, MixState};
use crate::time::Instant;

/// Number of shards of a [`NatTable`] (a power of two).
pub const SHARDS: usize = 64;

/// What the NAT table needs of a flow key's family: [`ConnKey`] (IPv4, the default) or
/// [`ConnKey6`] (NAT66). Each family is its own table ([`NatTable<ConnKey>`],
/// [`NatTable<ConnKey6>`]), so an IPv4 flow keeps its size; the code is the same.
pub trait NatKey: Copy + Eq + fmt::Debug {
    /// The family's address.
    type Addr: Copy + Eq + fmt::Debug;
    /// A tuple packed for the shard's maps (see [`PackedKey`]).
    type Packed: Copy + Eq + Hash + fmt::Debug;

    /// Packs (protocol, client address, client port) and the other end's address and port.
    fn pack(proto: u8, caddr: Self::Addr, cport: u16, addr: Self::Addr, port: u16) -> Self::Packed;
    /// One word of the client's tuple, which chooses the shard.
    fn client_word(proto: u8, caddr: Self::Addr, cport: u16) -> u64;
    /// The address of this family in `a`, if `a` is of it.
    fn addr_of(a: IpAddr) -> Option<Self::Addr>;
    /// Protocol, client address and port, virtual address and port.
    fn parts(&self) -> (u8, Self::Addr, u16, Self::Addr, u16);
}

impl NatKey for ConnKey {
    type Addr = Ipv4Addr;
    type Packed = PackedKey;

    fn pack(proto: u8, caddr: Ipv4Addr, cport: u16, addr: Ipv4Addr, port: u16) -> PackedKey {
        PackedKey::new(proto, caddr, cport, addr, port)
    }

    fn client_word(proto: u8, caddr: Ipv4Addr, cport: u16) -> u64 {
        client_word(proto, caddr, cport)
    }

    fn addr_of(a: IpAddr) -> Option<Ipv4Addr> {
        match a {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }

    fn parts(&self) -> (u8, Ipv4Addr, u16, Ipv4Addr, u16) {
        (self.proto, self.caddr, self.cport, self.vaddr, self.vport)
    }
}

impl NatKey for ConnKey6 {
    type Addr = Ipv6Addr;
    type Packed = PackedKey6;

    fn pack(proto: u8, caddr: Ipv6Addr, cport: u16, addr: Ipv6Addr, port: u16) -> PackedKey6 {
        let (c, a) = (u128::from(caddr), u128::from(addr));
        PackedKey6([
            (c >> 64) as u64,
            c as u64,
            (a >> 64) as u64,
            a as u64,
            u64::from(cport) | u64::from(port) << 16 | u64::from(proto) << 32,
        ])
    }

    /// The client's address folded to 64 bits, its port and the protocol above it (the
    /// shard choice then multiplies it with secret keys).
    fn client_word(proto: u8, caddr: Ipv6Addr, cport: u16) -> u64 {
        let c = u128::from(caddr);
        (c >> 64) as u64 ^ c as u64 ^ (u64::from(cport) << 32 | u64::from(proto) << 48)
    }

    fn addr_of(a: IpAddr) -> Option<Ipv6Addr> {
        match a {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }
    }

    fn parts(&self) -> (u8, Ipv6Addr, u16, Ipv6Addr, u16) {
        (self.proto, self.caddr, self.cport, self.vaddr, self.vport)
    }
}

/// One NAT flow: the client, the VIP it addressed and the real server it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatConn<K: NatKey = ConnKey> {
    /// The flow as the client sends it: client → VIP:vport.
    pub key: K,
    /// The real server's address (RIP).
    pub raddr: K::Addr,
    /// The real server's port.
    pub rport: u16,
    /// The real server's handle, the flow's state and expiry.
    pub conn: Conn,
}

/// A flow tuple packed into two words: (protocol, client address, client port) and (address,
/// port) of the other end, the VIP for lookups by the client's tuple, the RIP for replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PackedKey(u64, u64);

impl PackedKey {
    pub(crate) fn new(
        proto: u8,
        caddr: Ipv4Addr,
        cport: u16,
        addr: Ipv4Addr,
        port: u16,
    ) -> PackedKey {
        PackedKey(
            client_word(proto, caddr, cport),
            u64::from(u32::from(addr)) | u64::from(port) << 32,
        )
    }
}

fn client_word(proto: u8, caddr: Ipv4Addr, cport: u16) -> u64 {
    u64::from(u32::from(caddr)) | u64::from(cport) << 32 | u64::from(proto) << 48
}

/// [`PackedKey`] of an IPv6 tuple, in five words: the client's address, the other end's, then
/// both ports and the protocol. Hashed word by word (five multiplies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedKey6([u64; 5]);

impl Hash for PackedKey6 {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for w in self.0 {
            state.write_u64(w);
        }
    }
}

impl<K: NatKey> NatConn<K> {
    pub(crate) fn client_key(&self) -> K::Packed {
        let (proto, caddr, cport, vaddr, vport) = self.key.parts();
        K::pack(proto, caddr, cport, vaddr, vport)
    }

    pub(crate) fn server_key(&self) -> K::Packed {
        let (proto, caddr, cport, ..) = self.key.parts();
        K::pack(proto, caddr, cport, self.raddr, self.rport)
    }
}

/// The packed client tuple of `key` (client → VIP), as the table's client map holds it.
pub(crate) fn client_key_of<K: NatKey>(key: &K) -> K::Packed {
    let (proto, caddr, cport, vaddr, vport) = key.parts();
    K::pack(proto, caddr, cport, vaddr, vport)
}

/// Why a flow could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InsertError {
    /// The shard holds its share of the table's maximum.
    Full,
}

/// Flows [`Shard::make_room`] looks at, drawn at random from the shard.
const EVICT_SAMPLES: usize = 8;

/// One shard: flows in a dense vector, indexed by both tuples.
pub(crate) struct Shard<K: NatKey = ConnKey> {
    pub(crate) flows: Vec<NatConn<K>>,
    by_client: HashMap<K::Packed, u32, MixState>,
    by_server: HashMap<K::Packed, u32, MixState>,
    /// xorshift state for [`Shard::make_room`]'s samples.
    rng: u64,
}

impl<K: NatKey> Shard<K> {
    fn new(hasher: MixState, seed: u64) -> Shard<K> {
        Shard {
            flows: Vec::new(),
            by_client: HashMap::with_hasher(hasher),
            by_server: HashMap::with_hasher(hasher),
            rng: seed | 1,
        }
    }

    /// Before adding a flow to a shard that holds its high-water mark (7/8 of `max`) or more:
    /// removes and returns one flow among `EVICT_SAMPLES` (8) drawn at random, an expired one
    /// if there is one, else the never-[confirmed](Conn::is_confirmed) one that expires first.
    /// Confirmed flows are never removed; `None` if no sample qualified. O(1): the flows are a
    /// dense vector. The NAT flavour of [`ConnTable::make_room`](crate::director::conn::ConnTable::make_room).
    pub(crate) fn make_room(&mut self, now: Instant, max: usize) -> Option<(NatConn<K>, Eviction)> {
        let n = self.flows.len();
        if n == 0 || n < max - max / 8 {
            return None;
        }
        let mut best: Option<(usize, Instant)> = None;
        for _ in 0..EVICT_SAMPLES {
            let mut x = self.rng;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.rng = x;
            let i = (x % n as u64) as usize;
            let c = &self.flows[i].conn;
            if c.is_expired(now) {
                return Some((self.remove_at(i), Eviction::Expired));
            }
            if !c.is_confirmed() && best.is_none_or(|(_, e)| c.expires() < e) {
                best = Some((i, c.expires()));
            }
        }
        best.map(|(i, _)| (self.remove_at(i), Eviction::Unconfirmed))
    }

    pub(crate) fn find_client(&self, k: &K::Packed) -> Option<usize> {
        self.by_client.get(k).map(|&i| i as usize)
    }

    pub(crate) fn find_server(&self, k: &K::Packed) -> Option<usize> {
        self.by_server.get(k).map(|&i| i as usize)
    }

    /// Adds a flow whose two tuples are both free.
    pub(crate) fn insert(&mut self, c: NatConn<K>, max: usize) -> Result<(), InsertError> {
        if self.flows.len() >= max {
            return Err(InsertError::Full);
        }
        let i = self.flows.len() as u32;
        self.by_client.insert(c.client_key(), i);
        self.by_server.insert(c.server_key(), i);
        self.flows.push(c);
        Ok(())
    }

    /// Removes flow `i` (the last flow moves into its place).
    pub(crate) fn remove_at(&mut self, i: usize) -> NatConn<K> {
        let c = self.flows.swap_remove(i);
        self.by_client.remove(&c.client_key());
        self.by_server.remove(&c.server_key());
        if let Some(moved) = self.flows.get(i) {
            let (ck, sk) = (moved.client_key(), moved.server_key());
            if let Some(v) = self.by_client.get_mut(&ck) {
                *v = i as u32;
            }
            if let Some(v) = self.by_server.get_mut(&sk) {
                *v = i as u32;
            }
        }
        c
    }
}

/// Cache-line aligned, so that two workers locking neighbouring shards do not share a line.
#[repr(align(128))]
struct Padded<K: NatKey>(Mutex<Shard<K>>);

/// The NAT flows of all workers (see the module documentation for the design), of one family:
/// `NatTable` (IPv4) or `NatTable<ConnKey6>` (NAT66).
pub struct NatTable<K: NatKey = ConnKey> {
    shards: Box<[Padded<K>]>,
    /// Keys of the shard choice.
    shard_k0: u64,
    shard_k1: u64,
    pub(crate) max_per_shard: usize,
    pub(crate) len: AtomicUsize,
    sweep_cursor: AtomicUsize,
}

impl<K: NatKey> core::fmt::Debug for NatTable<K> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NatTable")
            .field("len", &self.len())
            .field("max_per_shard", &self.max_per_shard)
            .finish_non_exhaustive()
    }
}

impl<K: NatKey> NatTable<K> {
    /// A table for at most about `max_entries` flows (each shard takes `max_entries / SHARDS`,
    /// rounded up), its hashes keyed by `seed`.
    pub fn new(max_entries: usize, seed: u64) -> NatTable<K> {
        let mut s = seed;
        let (shard_k0, shard_k1) = (splitmix64(&mut s), splitmix64(&mut s) | 1);
        let hasher = MixState::from_seed(splitmix64(&mut s));
        NatTable {
            shards: (0..SHARDS)
                .map(|_| Padded(Mutex::new(Shard::new(hasher, splitmix64(&mut s)))))
                .collect(),
            shard_k0,
            shard_k1,
            max_per_shard: max_entries.div_ceil(SHARDS),
            len: AtomicUsize::new(0),
            sweep_cursor: AtomicUsize::new(0),
        }
    }

    /// The shard of the flows of client `caddr:cport` over `proto`, locked. A poisoned lock is
    /// taken anyway: a shard is plain data and every update leaves it consistent.
    pub(crate) fn shard(&self, proto: u8, caddr: K::Addr, cport: u16) -> MutexGuard<'_, Shard<K>> {
        let h = folded_mul(
            K::client_word(proto, caddr, cport) ^ self.shard_k0,
            self.shard_k1,
        );
        let i = (h >> 32) as usize & (SHARDS - 1);
        self.shards[i].0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether the table holds no flow.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every flow (for `adm -L -c`; locks each shard in turn).
    pub fn flows(&self) -> Vec<NatConn<K>> {
        let mut out = Vec::with_capacity(self.len());
        for s in self.shards.iter() {
            let shard = s.0.lock().unwrap_or_else(|e| e.into_inner());
            out.extend_from_slice(&shard.flows);
        }
        out
    }

    /// The flow of client key `key` (client → VIP), if tracked (expired or not).
    pub fn get(&self, key: &K) -> Option<NatConn<K>> {
        let (proto, caddr, cport, ..) = key.parts();
        let shard = self.shard(proto, caddr, cport);
        let i = shard.find_client(&client_key_of(key))?;
        shard.flows.get(i).copied()
    }

    /// Whether a packet `src:sport → dst:dport` over `proto` is a reply of a live NAT flow
    /// (the real server's tuple, as SNAT checks before it masquerades a packet).
    pub fn is_reply(
        &self,
        proto: u8,
        (src, sport): (K::Addr, u16),
        (dst, dport): (K::Addr, u16),
        now: Instant,
    ) -> bool {
        if self.is_empty() {
            return false;
        }
        let shard = self.shard(proto, dst, dport);
        shard
            .find_server(&K::pack(proto, dst, dport, src, sport))
            .is_some_and(|i| !shard.flows[i].conn.is_expired(now))
    }

    /// Removes the expired flows of the next few shards (each call takes the next
    /// [`SWEEP_SHARDS`], whichever worker calls, so one worker sweeping every 100 ms visits the
    /// whole table in 1.6 s), calling `on_expire` for each. Returns how many were removed.
    pub fn sweep_next(&self, now: Instant, mut on_expire: impl FnMut(&NatConn<K>)) -> usize {
        if self.is_empty() {
            return 0;
        }
        let mut removed = 0;
        let mut gone = Vec::new();
        for _ in 0..SWEEP_SHARDS {
            let i = self.sweep_cursor.fetch_add(1, Ordering::Relaxed) & (SHARDS - 1);
            {
                let mut shard = self.shards[i].0.lock().unwrap_or_else(|e| e.into_inner());
                let mut j = 0;
                while j < shard.flows.len() {
                    if shard.flows[j].conn.is_expired(now) {
                        gone.push(shard.remove_at(j));
                    } else {
                        j += 1;
                    }
                }
            }
            self.len.fetch_sub(gone.len(), Ordering::Relaxed);
            for c in gone.drain(..) {
                on_expire(&c);
                removed += 1;
            }
        }
        removed
    }
}

/// Shards one [`NatTable::sweep_next`] call visits.
pub const SWEEP_SHARDS: usize = SHARDS / 16;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::director::conn::{ConnState, DestId};

    fn flow(n: u32, expires_s: u64, confirmed: bool) -> NatConn {
        let mut conn = Conn::new(DestId(1), ConnState::SynRecv, Instant::from_secs(expires_s));
        if confirmed {
            conn.confirm();
        }
        NatConn {
            key: ConnKey::new(
                6,
                Ipv4Addr::from(0xc612_0000 + n),
                1024,
                Ipv4Addr::new(10, 0, 0, 1),
                80,
            ),
            raddr: Ipv4Addr::new(10, 1, 0, 1),
            rport: 80,
            conn,
        }
    }

    #[test]
    fn a_full_shard_evicts_only_unconfirmed_flows() {
        let hasher = MixState::from_seed(1);
        let mut shard: Shard = Shard::new(hasher, 7);
        let max = 64;
        let now = Instant::from_secs(1);
        // 8 confirmed flows, then a flood of unconfirmed ones.
        for n in 0..8 {
            shard.insert(flow(n, 100, true), max).unwrap();
        }
        let mut evicted = 0;
        for n in 8..10_000 {
            if let Some((old, why)) = shard.make_room(now, max) {
                assert!(!old.conn.is_confirmed());
                assert_eq!(why, Eviction::Unconfirmed);
                evicted += 1;
            }
            shard
                .insert(flow(n, 100 + u64::from(n), false), max)
                .unwrap();
            assert!(shard.flows.len() <= max);
        }
        assert!(evicted > 9_000, "{evicted}");
        for n in 0..8 {
            let k = flow(n, 0, true).client_key();
            assert!(shard.find_client(&k).is_some(), "{n}");
        }
        // Below the high-water mark nothing goes.
        let mut small: Shard = Shard::new(hasher, 9);
        for n in 0..55 {
            small.insert(flow(n, 100, false), max).unwrap();
        }
        assert!(small.make_room(now, max).is_none());
        // An expired flow goes first, confirmed or not.
        let mut all_expired: Shard = Shard::new(hasher, 11);
        for n in 0..64 {
            all_expired.insert(flow(n, 1, true), max).unwrap();
        }
        let (_, why) = all_expired.make_room(now, max).unwrap();
        assert_eq!(why, Eviction::Expired);
    }
}
