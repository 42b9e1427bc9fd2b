//! [`FlowTable`]: the per-worker flow table, an open-addressing Robin Hood hash table, generic
//! over its key ([`TableKey`]): [`ConnTable`] holds IPv4 flows, [`ConnTable6`] IPv6 ones.
//!
//! # Layout
//!
//! One flat array of slots (`Conn` 12 + key + probe distance 1 + hash fingerprint 1),
//! power-of-two long, at most 7/8 full: 28 bytes for an IPv4 key ([`ConnKey`], 14), 52 for
//! an IPv6 one ([`ConnKey6`], 38). A lookup hashes the key (a keyed folded-multiply mix),
//! starts at the key's home slot and walks forward; it touches one or two cache lines in the
//! common case.
//!
//! # Robin Hood order
//!
//! Every occupied slot records how far it sits from its home slot. Entries of a run of
//! occupied slots are kept sorted by home slot, so:
//!
//! - a lookup stops as soon as it meets an entry that sits closer to its home than the probe
//!   has travelled (the key cannot be further on);
//! - an insert puts the new entry before the first such entry and shifts the rest of the run
//!   one slot to the right;
//! - a removal shifts the following entries of the run one slot back ("backward-shift
//!   deletion"), so there are no tombstones and lookups never slow down with churn.
//!
//! # Growth and limits
//!
//! The table doubles when an insert would make it more than 7/8 full, up to the capacity that
//! holds `max_entries`; past `max_entries` an insert of a new key fails with [`TableFull`].
//! Doubling rehashes every entry at once (size the table up front with `initial_capacity` to
//! avoid it on a busy worker). The probe distance is stored in a byte; should a run ever get
//! longer than that (only a broken hash could do it), the table grows or re-seeds its hash.
//!
//! # Expiry
//!
//! Nothing expires by itself: [`FlowTable::sweep`] visits a bounded number of slots from a
//! cursor that survives between calls, so expiry work is spread over the worker's idle moments.

use core::fmt;
use core::hash::{BuildHasher, Hasher};
use std::collections::hash_map::RandomState;

use super::{Conn, ConnKey, ConnKey6, ConnState, DestId, TableKey, EXPIRY_UNIT_MS};
use crate::hash::splitmix64;
use crate::sys::huge::HugeArray;
use crate::time::Instant;

/// Why [`FlowTable::make_room`] removed a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// It had expired already (the sweep had not reached it yet).
    Expired,
    /// It was never confirmed (no client payload) and the table was above its high-water mark.
    Unconfirmed,
}

impl Eviction {
    /// Every reason, in discriminant order.
    pub const ALL: [Eviction; 2] = [Eviction::Expired, Eviction::Unconfirmed];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Eviction::Expired => "expired",
            Eviction::Unconfirmed => "unconfirmed",
        }
    }
}

/// Insert failed: the table holds `max_entries` flows already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

impl fmt::Display for TableFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection table full")
    }
}

impl std::error::Error for TableFull {}

/// A random 64-bit seed for [`FlowTable::new`], drawn from the standard library's per-process
/// random hash keys.
pub fn random_seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x7475_6e6c_6220_636f);
    h.finish()
}

/// Smallest number of slots a table has.
const MIN_SLOTS: usize = 16;
/// Largest number of slots a table may have (2^40 slots of 28 bytes is far beyond any memory).
const MAX_SLOTS: usize = 1 << 40;
/// Largest probe distance a slot can record (stored as distance + 1 in a byte, 0 = empty).
const MAX_DIST: u8 = u8::MAX;
/// Slots [`FlowTable::prefetch`] loads from a key's home slot on.
const PREFETCH_SLOTS: usize = 3;
/// Rehash attempts with a fresh hash seed before an insert gives up (see [`FlowTable::insert`]).
const RESEED_ATTEMPTS: u32 = 8;
/// Most contiguous slots [`FlowTable::make_room`] examines from one random start.
const EVICT_WINDOW: usize = 256;
/// Flows [`FlowTable::make_room`] compares from one random start: it stops at this many (or
/// at `EVICT_WINDOW` slots), so a sparse stretch of the table still yields a fair sample.
const EVICT_CANDIDATES: usize = 16;
/// Random windows [`FlowTable::make_room`] tries before it gives up on a full table.
const EVICT_WINDOWS: usize = 4;

/// The high-water mark of a table of `max_entries`: 7/8 of it. Above it every new flow first
/// evicts a never-confirmed one, if it finds one.
fn high_water(max_entries: usize) -> usize {
    max_entries - max_entries / 8
}

/// Entries a table of `slots` slots may hold: 7/8 of them.
fn load_limit(slots: usize) -> usize {
    slots - slots / 8
}

/// Slots needed to hold `entries` at the maximum load, a power of two in
/// `MIN_SLOTS..=MAX_SLOTS`.
fn slots_for(entries: usize) -> usize {
    let mut slots = MIN_SLOTS;
    while slots < MAX_SLOTS && load_limit(slots) < entries {
        slots *= 2;
    }
    slots
}

/// `t` in the expiry's unit, rounded down: a flow with `expires_ds <= this` has expired.
fn to_deciseconds_floor(t: Instant) -> u32 {
    u32::try_from(t.total_millis() / EXPIRY_UNIT_MS).unwrap_or(u32::MAX)
}

/// One slot of the table. `repr(C)`: [`FlowTable::prefetch`] relies on `fp` being the last
/// byte (checked by [`Slot::LAYOUT`] for every key type).
#[derive(Clone, Copy)]
#[repr(C)]
struct Slot<K> {
    conn: Conn,
    key: K,
    /// 0: empty. Otherwise the distance from the entry's home slot, plus one.
    dist: u8,
    /// Bits of the key's hash the home slot does not use: most mismatches end here.
    fp: u8,
}

const _: () = assert!(core::mem::size_of::<Slot<ConnKey>>() == 28);
const _: () = assert!(core::mem::offset_of!(Slot<ConnKey>, fp) == 27);
const _: () = assert!(core::mem::size_of::<Slot<ConnKey6>>() == 52);
const _: () = assert!(core::mem::offset_of!(Slot<ConnKey6>, fp) == 51);

impl<K: TableKey> Slot<K> {
    const EMPTY: Slot<K> = Slot {
        conn: Conn {
            dest: DestId(0),
            state: ConnState::None,
            confirmed: false,
            age: 0,
            expires_ds: 0,
        },
        key: K::EMPTY,
        dist: 0,
        fp: 0,
    };

    /// Compile-time check, evaluated by [`FlowTable::new`] for each key type: `fp` is the
    /// slot's last byte.
    const LAYOUT: () =
        assert!(core::mem::offset_of!(Slot<K>, fp) == core::mem::size_of::<Slot<K>>() - 1);

    fn is_occupied(&self) -> bool {
        self.dist != 0
    }
}

/// The per-worker flow table of IPv4 flows.
pub type ConnTable = FlowTable<ConnKey>;

/// The per-worker flow table of IPv6 flows.
pub type ConnTable6 = FlowTable<ConnKey6>;

/// The per-worker flow table, keyed by `K`. See the module documentation for how it works.
pub struct FlowTable<K: TableKey> {
    /// Allocated 2 MB aligned and advised for transparent huge pages once it is 2 MB or more:
    /// every packet reads a random slot, and huge pages save most of the TLB misses.
    slots: HugeArray<Slot<K>>,
    /// `slots.len() - 1`.
    mask: usize,
    len: usize,
    max_entries: usize,
    /// Slots of the largest table `max_entries` calls for.
    max_slots: usize,
    hasher: K::Hasher,
    /// Seed the hasher came from; re-seeding derives the next one from it.
    seed: u64,
    /// Next slot [`FlowTable::sweep`] examines.
    cursor: usize,
    /// State of the xorshift generator that picks [`FlowTable::make_room`]'s windows (derived
    /// from the secret seed: a flood cannot predict which slots are examined).
    rng: u64,
    /// New keys inserted so far (wrapping): stamps each flow's [`Conn`] `age`.
    inserts: u16,
    /// Test hook: hash bits kept (all ones outside tests), to force collisions.
    #[cfg(test)]
    hash_mask: u64,
}

impl<K: TableKey> fmt::Debug for FlowTable<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowTable")
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

/// Where a new key would go.
enum Placement {
    /// Slot `at`, whose occupant (if any) and the rest of its run shift right by one.
    At { at: usize, dist: u8 },
    /// A run would grow past [`MAX_DIST`]: grow or re-seed first.
    TooFar,
}

impl<K: TableKey> FlowTable<K> {
    /// A table of at least `initial_capacity` slots (rounded up to a power of two, at least 16),
    /// growing by doubling while it holds fewer than `max_entries` flows. `seed` keys the hash
    /// (use [`random_seed`]).
    pub fn new(initial_capacity: usize, max_entries: usize, seed: u64) -> FlowTable<K> {
        #[allow(clippy::let_unit_value)]
        let () = Slot::<K>::LAYOUT;
        let max_slots = slots_for(max_entries);
        let max_entries = max_entries.min(load_limit(max_slots));
        let slots = initial_capacity
            .clamp(MIN_SLOTS, max_slots)
            .next_power_of_two()
            .min(max_slots);
        FlowTable {
            slots: HugeArray::new(slots, Slot::EMPTY),
            mask: slots - 1,
            len: 0,
            max_entries,
            max_slots,
            hasher: K::keyed_hasher(seed),
            seed,
            cursor: 0,
            rng: {
                let mut s = seed ^ 0x6576_6963_7469_6f6e;
                splitmix64(&mut s) | 1
            },
            inserts: 0,
            #[cfg(test)]
            hash_mask: u64::MAX,
        }
    }

    /// Slots needed to hold `entries` flows without growing: pass it as `initial_capacity`.
    pub fn slots_for(entries: usize) -> usize {
        slots_for(entries)
    }

    #[inline(always)]
    fn hash(&self, key: &K) -> u64 {
        let h = key.keyed_hash(&self.hasher);
        #[cfg(test)]
        let h = h & self.hash_mask;
        h
    }

    /// Slot holding `key`, if any.
    #[inline(always)]
    fn find(&self, key: &K, h: u64) -> Option<usize> {
        let fp = (h >> 56) as u8;
        let mut i = h as usize & self.mask;
        let mut dist: u32 = 1;
        loop {
            let s = &self.slots[i];
            if u32::from(s.dist) < dist {
                // Empty, or an entry closer to its home than we are to ours: not here.
                return None;
            }
            if s.fp == fp && s.key == *key {
                return Some(i);
            }
            i = (i + 1) & self.mask;
            dist += 1;
        }
    }

    /// Starts loading the slots a lookup of `key` reads, so that a later
    /// [`get_mut`](Self::get_mut) finds them in cache. Call it for a whole batch first.
    ///
    /// A lookup reads its home slot and walks on while the entries it meets are at least as far
    /// from home as it is: at 1M flows in 2^21 slots 67% of the entries sit in their home slot,
    /// 24% one further and 7% two further, so this loads `PREFETCH_SLOTS` slots. Slots
    /// straddle cache lines, so it loads the line of the home slot's first byte and of each
    /// slot's last byte: no line in between is skipped (each step is < 64 bytes). A 28-byte
    /// slot skips its own last byte (the next slot's last byte is less than 64 bytes on).
    #[inline]
    pub fn prefetch(&self, key: &K) {
        let i = self.hash(key) as usize & self.mask;
        if let Some(slot) = self.slots.get(i) {
            crate::sys::prefetch(slot);
            if 2 * Self::slot_bytes() - 1 > 64 {
                crate::sys::prefetch(&slot.fp);
            }
        }
        for k in 1..PREFETCH_SLOTS {
            if let Some(slot) = self.slots.get((i + k) & self.mask) {
                crate::sys::prefetch(&slot.fp);
            }
        }
    }

    /// The flow `key`, for the per-packet path. No expiry check: compare
    /// [`Conn::expires`] with the current time.
    #[inline]
    pub fn get_mut(&mut self, key: &K) -> Option<&mut Conn> {
        let i = self.find(key, self.hash(key))?;
        Some(&mut self.slots[i].conn)
    }

    /// The flow `key`. No expiry check.
    #[inline]
    pub fn get(&self, key: &K) -> Option<&Conn> {
        let i = self.find(key, self.hash(key))?;
        Some(&self.slots[i].conn)
    }

    /// Whether `key` is in the table (expired or not).
    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Inserts the flow `key`, replacing the flow of the same key if there is one. Fails when
    /// the key is new and the table holds `max_entries` flows.
    pub fn insert(&mut self, key: K, conn: Conn) -> Result<&mut Conn, TableFull> {
        let h = self.hash(&key);
        if let Some(i) = self.find(&key, h) {
            let slot = &mut self.slots[i].conn;
            *slot = conn;
            return Ok(slot);
        }
        if self.len >= self.max_entries {
            return Err(TableFull);
        }
        if self.len + 1 > load_limit(self.slots.len()) {
            // max_entries <= load_limit(max_slots), so there is room to double.
            self.resize(self.slots.len() * 2);
        }
        let mut conn = conn;
        conn.age = self.inserts;
        self.inserts = self.inserts.wrapping_add(1);
        let mut attempts = 0;
        loop {
            let h = self.hash(&key);
            match self.placement(h) {
                Placement::At { at, dist } => {
                    self.place(at, dist, (h >> 56) as u8, key, conn);
                    self.len += 1;
                    return Ok(&mut self.slots[at].conn);
                }
                Placement::TooFar if attempts < RESEED_ATTEMPTS => {
                    attempts += 1;
                    if self.slots.len() < self.max_slots {
                        self.resize(self.slots.len() * 2);
                    } else {
                        self.reseed();
                    }
                }
                Placement::TooFar => return Err(TableFull),
            }
        }
    }

    /// The high-water mark: 7/8 of [`max_entries`](Self::max_entries). Above it
    /// [`make_room`](Self::make_room) evicts a never-confirmed flow for each new one.
    pub fn high_water(&self) -> usize {
        high_water(self.max_entries)
    }

    /// Call before inserting a flow whose key is not in the table. Below the
    /// [high-water mark](Self::high_water) it does nothing. Above it, it examines the first
    /// `EVICT_CANDIDATES` (16) flows in consecutive slots from a random start (at most
    /// `EVICT_WINDOW`, 256 slots) and removes one: an expired one if it meets one, else the
    /// never-[confirmed](Conn::is_confirmed) one that expires first, the one that entered the
    /// table first among equals (the one idle longest: unconfirmed flows share one short
    /// timeout).
    /// Confirmed flows are never removed. When the window holds no candidate and the table is
    /// full, it tries up to `EVICT_WINDOWS` (4) windows in all, so the work is bounded
    /// (at most 64 flows in 1,024 slots, no scan of the table); should they all fail, the
    /// insert then fails with [`TableFull`] as before.
    ///
    /// Calls `on_evict` for the flow removed (to give back its counts and template) and
    /// returns why it went, or `None` if nothing was removed.
    ///
    /// IPVS's `drop_entry` defence, adapted: IPVS drops half-open entries from a random part of
    /// the table once a second when memory runs low; here every insert over the mark pays for
    /// itself, so a flood of any rate cannot outrun the eviction, and a new legitimate flow
    /// always finds room while the table is full of unconfirmed ones.
    pub fn make_room(
        &mut self,
        now: Instant,
        mut on_evict: impl FnMut(&K, &Conn, Eviction),
    ) -> Option<Eviction> {
        if self.len < self.high_water() {
            return None;
        }
        for _ in 0..EVICT_WINDOWS {
            let start = self.next_random() as usize & self.mask;
            if let Some((i, why)) = self.victim_in_window(start, now) {
                let s = self.slots[i];
                self.remove_at(i);
                on_evict(&s.key, &s.conn, why);
                return Some(why);
            }
            if self.len < self.max_entries {
                // Room anyway: one window's work is enough.
                return None;
            }
        }
        None
    }

    /// The slot of the best flow to evict among the first `EVICT_CANDIDATES` flows of the
    /// `EVICT_WINDOW` slots from `start`.
    fn victim_in_window(&self, start: usize, now: Instant) -> Option<(usize, Eviction)> {
        let now_ds = to_deciseconds_floor(now);
        // (slot, expiry, inserts since): the first to expire, the oldest among equals.
        let mut best: Option<(usize, u32, u16)> = None;
        let mut seen = 0;
        for k in 0..EVICT_WINDOW.min(self.slots.len()) {
            let i = (start + k) & self.mask;
            let s = &self.slots[i];
            if !s.is_occupied() {
                continue;
            }
            if seen == EVICT_CANDIDATES {
                break;
            }
            seen += 1;
            let c = &s.conn;
            if c.expires_ds <= now_ds {
                return Some((i, Eviction::Expired));
            }
            if c.confirmed {
                continue;
            }
            let since = self.inserts.wrapping_sub(c.age);
            let better = best
                .is_none_or(|(_, e, old)| c.expires_ds < e || (c.expires_ds == e && since > old));
            if better {
                best = Some((i, c.expires_ds, since));
            }
        }
        best.map(|(i, _, _)| (i, Eviction::Unconfirmed))
    }

    /// xorshift64: the next window start.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Where a key of hash `h`, known to be absent, goes.
    fn placement(&self, h: u64) -> Placement {
        let mut i = h as usize & self.mask;
        let mut dist: u8 = 1;
        // Find the first slot that is empty or holds an entry closer to its home.
        while self.slots[i].dist >= dist {
            if dist == MAX_DIST {
                return Placement::TooFar;
            }
            i = (i + 1) & self.mask;
            dist += 1;
        }
        // Every entry from there to the end of the run moves one slot further from home.
        let mut j = i;
        while self.slots[j].is_occupied() {
            if self.slots[j].dist == MAX_DIST {
                return Placement::TooFar;
            }
            j = (j + 1) & self.mask;
        }
        Placement::At { at: i, dist }
    }

    /// Shifts the run starting at `at` one slot right and writes the new entry at `at`.
    fn place(&mut self, at: usize, dist: u8, fp: u8, key: K, conn: Conn) {
        let mut end = at;
        while self.slots[end].is_occupied() {
            end = (end + 1) & self.mask;
        }
        while end != at {
            let prev = end.wrapping_sub(1) & self.mask;
            let mut moved = self.slots[prev];
            moved.dist += 1;
            self.slots[end] = moved;
            end = prev;
        }
        self.slots[at] = Slot {
            conn,
            key,
            dist,
            fp,
        };
    }

    /// Removes the flow `key`.
    pub fn remove(&mut self, key: &K) -> Option<Conn> {
        let i = self.find(key, self.hash(key))?;
        let conn = self.slots[i].conn;
        self.remove_at(i);
        Some(conn)
    }

    /// Empties slot `i` and pulls the rest of its run one slot back.
    fn remove_at(&mut self, mut i: usize) {
        loop {
            let next = (i + 1) & self.mask;
            let s = self.slots[next];
            if s.dist <= 1 {
                // Empty, or at its home slot: the run ends here.
                self.slots[i] = Slot::EMPTY;
                break;
            }
            self.slots[i] = Slot {
                dist: s.dist - 1,
                ..s
            };
            i = next;
        }
        self.len -= 1;
    }

    /// Rebuilds the table with `slots` slots (a power of two).
    fn resize(&mut self, slots: usize) {
        let old = core::mem::replace(&mut self.slots, HugeArray::new(slots, Slot::EMPTY));
        self.mask = slots - 1;
        self.cursor = 0;
        self.reinsert_all(&old);
    }

    /// Draws a new hash seed (derived from the old one) and rehashes in place.
    fn reseed(&mut self) {
        let mut s = self.seed;
        self.seed = splitmix64(&mut s);
        self.hasher = K::keyed_hasher(self.seed);
        let slots = self.slots.len();
        self.resize(slots);
    }

    /// Puts every entry of `old` into the (empty) slot array.
    fn reinsert_all(&mut self, old: &[Slot<K>]) {
        for s in old.iter().filter(|s| s.is_occupied()) {
            let h = self.hash(&s.key);
            match self.placement(h) {
                Placement::At { at, dist } => self.place(at, dist, (h >> 56) as u8, s.key, s.conn),
                Placement::TooFar => {
                    // Only a hash that sends a whole table's worth of keys to one run gets
                    // here. Keep every flow anyway: start over with the next seed.
                    let mut seed = self.seed;
                    self.seed = splitmix64(&mut seed);
                    self.hasher = K::keyed_hasher(self.seed);
                    self.slots.fill(Slot::EMPTY);
                    return self.reinsert_all(old);
                }
            }
        }
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table holds no flow.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of slots (a power of two); the table holds up to 7/8 of that before doubling.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Most flows the table will hold.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Bytes allocated by the table (a slot array of 2 MB or more is rounded up to whole 2 MB
    /// pages).
    pub fn heap_bytes(&self) -> usize {
        self.slots.allocated_bytes()
    }

    /// Size of one slot in bytes.
    pub const fn slot_bytes() -> usize {
        core::mem::size_of::<Slot<K>>()
    }

    /// Visits up to `budget` slots from a resumable cursor; removes entries with
    /// `expires <= now` and calls `on_expire(&key, &conn)` for each removed one. Returns the
    /// number removed.
    ///
    /// `capacity() / budget` calls (rounded up) visit every slot once, as long as the table
    /// is not changed in between; an entry that a removal or insert moves across the cursor
    /// is examined one pass later (or twice). Growing restarts the cursor.
    pub fn sweep(
        &mut self,
        now: Instant,
        budget: usize,
        mut on_expire: impl FnMut(&K, &Conn),
    ) -> usize {
        let mut removed = 0;
        let mut i = self.cursor & self.mask;
        for _ in 0..budget.min(self.slots.len()) {
            // A removal pulls the next entry of the run into slot i: look at it too.
            while self.slots[i].is_occupied() && self.slots[i].conn.expires() <= now {
                let s = self.slots[i];
                self.remove_at(i);
                on_expire(&s.key, &s.conn);
                removed += 1;
            }
            i = (i + 1) & self.mask;
        }
        self.cursor = i;
        removed
    }

    /// Keeps only the flows for which `keep` returns true (one full pass; for control-plane
    /// events such as a real server's removal, not for the packet path).
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut Conn) -> bool) {
        // Start at an empty slot so that no run wraps around the start of the pass: removals
        // only pull entries back into the slot being visited, never behind it.
        let Some(start) = self.slots.iter().position(|s| !s.is_occupied()) else {
            return;
        };
        for step in 0..self.slots.len() {
            let i = (start + step) & self.mask;
            loop {
                let s = &mut self.slots[i];
                if !s.is_occupied() || keep(&s.key, &mut s.conn) {
                    break;
                }
                // The next entry of the run moves into slot i: examine it too.
                self.remove_at(i);
            }
        }
    }

    /// Every flow, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &Conn)> {
        self.slots
            .iter()
            .filter(|s| s.is_occupied())
            .map(|s| (&s.key, &s.conn))
    }

    /// The flows from slot `slot` on, in slot order, each with its slot number: a resumable
    /// walk for a paced dump (connection sync). Slots past [`capacity`](Self::capacity) give
    /// nothing. A flow that an insert or removal moves across the resume point between two
    /// walks is seen twice or not at all; growing the table reorders every slot.
    pub fn entries_from(&self, slot: usize) -> impl Iterator<Item = (usize, &K, &Conn)> {
        self.slots
            .iter()
            .enumerate()
            .skip(slot)
            .filter(|(_, s)| s.is_occupied())
            .map(|(i, s)| (i, &s.key, &s.conn))
    }

    /// The flows in slots `start..end` (clamped to the table), each with its slot number: a
    /// bounded piece of a walk, whatever the table's fill (`adm -L -c` reads the table in such
    /// pieces, releasing the worker between them).
    pub fn entries_in(&self, start: usize, end: usize) -> impl Iterator<Item = (usize, &K, &Conn)> {
        let end = end.min(self.slots.len());
        let start = start.min(end);
        self.slots[start..end]
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_occupied())
            .map(move |(i, s)| (start + i, &s.key, &s.conn))
    }

    /// Removes every flow, keeping the allocation.
    pub fn clear(&mut self) {
        self.slots.fill(Slot::EMPTY);
        self.len = 0;
        self.cursor = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::director::conn::KEY_TEMPLATE;
    use crate::time::Duration;
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// xorshift64*: a tiny deterministic PRNG for the model tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A key type the table's tests run with: each test below is a generic function, run for
    /// [`ConnKey`] and [`ConnKey6`] by `for_both_keys!`.
    trait TestKey: TableKey {
        /// Key number `n`: distinct for distinct `n`, the same flow every time.
        fn nth(n: u32) -> Self;
        /// The `n` of [`TestKey::nth`].
        fn index(&self) -> u32;
        fn with_flags(self, flags: u8) -> Self;
        fn with_proto(self, proto: u8) -> Self;
        fn with_vport(self, vport: u16) -> Self;
    }

    impl TestKey for ConnKey {
        fn nth(n: u32) -> ConnKey {
            ConnKey::new(
                6,
                Ipv4Addr::from(0x0a00_0000 | (n >> 16)),
                n as u16,
                Ipv4Addr::new(192, 0, 2, 1),
                80,
            )
        }
        fn index(&self) -> u32 {
            (u32::from(self.caddr) & 0xffff) << 16 | u32::from(self.cport)
        }
        fn with_flags(self, flags: u8) -> Self {
            ConnKey { flags, ..self }
        }
        fn with_proto(self, proto: u8) -> Self {
            ConnKey { proto, ..self }
        }
        fn with_vport(self, vport: u16) -> Self {
            ConnKey { vport, ..self }
        }
    }

    impl TestKey for ConnKey6 {
        /// Clients of one /64 (the high half of `n` in the interface identifier's first group).
        fn nth(n: u32) -> ConnKey6 {
            ConnKey6::new(
                6,
                Ipv6Addr::new(0x2001, 0xdb8, 0, 7, (n >> 16) as u16, 0, 0, 1),
                n as u16,
                Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1),
                80,
            )
        }
        fn index(&self) -> u32 {
            u32::from(self.caddr.segments()[4]) << 16 | u32::from(self.cport)
        }
        fn with_flags(self, flags: u8) -> Self {
            ConnKey6 { flags, ..self }
        }
        fn with_proto(self, proto: u8) -> Self {
            ConnKey6 { proto, ..self }
        }
        fn with_vport(self, vport: u16) -> Self {
            ConnKey6 { vport, ..self }
        }
    }

    /// `for_both_keys!(test, ...)`: a module per test with a `v4` and a `v6` test running the
    /// generic function of that name with [`ConnKey`] and [`ConnKey6`].
    macro_rules! for_both_keys {
        ($($name:ident),* $(,)?) => {$(
            mod $name {
                #[test]
                fn v4() {
                    super::$name::<super::ConnKey>();
                }
                #[test]
                fn v6() {
                    super::$name::<super::ConnKey6>();
                }
            }
        )*};
    }

    for_both_keys!(
        entries_from_resumes_a_walk_at_a_slot,
        insert_get_remove_replace,
        grows_by_doubling_up_to_max_then_table_full,
        capacity_bounds,
        randomised_model_against_std_hashmap,
        deletion_keeps_colliding_keys_findable,
        degenerate_hash_fails_cleanly_instead_of_losing_flows,
        sweep_removes_exactly_the_expired,
        sweep_is_resumable_with_small_budgets,
        sweep_budget_bounds_the_work,
        sweep_with_virtual_clock,
        retain_keeps_what_the_predicate_keeps,
        seeds_change_the_layout,
        make_room_does_nothing_below_the_high_water_mark,
        flood_of_unconfirmed_flows_never_evicts_confirmed_ones_and_lets_new_flows_in,
        a_table_full_of_confirmed_flows_refuses_new_ones,
        make_room_prefers_expired_flows_and_then_the_oldest_unconfirmed,
        make_room_work_is_bounded,
    );

    fn key<K: TestKey>(n: u32) -> K {
        K::nth(n)
    }

    fn conn(d: u32, expires_s: u64) -> Conn {
        Conn::new(
            DestId(d),
            ConnState::Established,
            Instant::from_secs(expires_s),
        )
    }

    /// Checks the Robin Hood invariants and the length.
    fn check_invariants<K: TestKey>(t: &FlowTable<K>) {
        let mut count = 0;
        for (i, s) in t.slots.iter().enumerate() {
            if !s.is_occupied() {
                continue;
            }
            count += 1;
            let h = t.hash(&s.key);
            let home = h as usize & t.mask;
            assert_eq!((home + usize::from(s.dist) - 1) & t.mask, i, "distance");
            assert_eq!(s.fp, (h >> 56) as u8, "fingerprint");
            // The previous slot is occupied unless this entry is at home, and entries of a run
            // are sorted by home: the next one is at most one step further from home.
            let prev = &t.slots[(i + t.mask) & t.mask];
            if s.dist > 1 {
                assert!(
                    prev.is_occupied() && u16::from(prev.dist) + 1 >= u16::from(s.dist),
                    "run order"
                );
            }
        }
        assert_eq!(count, t.len());
    }

    fn entries_from_resumes_a_walk_at_a_slot<K: TestKey>() {
        let mut t = FlowTable::<K>::new(256, 1000, 7);
        for n in 0..100 {
            t.insert(key(n), conn(n, 100)).unwrap();
        }
        // Walk in pieces of 9 entries, resuming at the slot after the last one seen.
        let mut seen = Vec::new();
        let mut at = 0;
        loop {
            let piece: Vec<_> = t.entries_from(at).take(9).collect();
            let Some(&(last, _, _)) = piece.last() else {
                break;
            };
            assert!(piece.windows(2).all(|w| w[0].0 < w[1].0), "slot order");
            seen.extend(piece.iter().map(|(_, _, c)| c.dest.0));
            at = last + 1;
        }
        seen.sort();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        assert_eq!(t.entries_from(t.capacity()).count(), 0);
        assert_eq!(t.entries_from(usize::MAX).count(), 0);
        // The same in fixed pieces of slots.
        let mut pieces = Vec::new();
        for start in (0..t.capacity()).step_by(10) {
            pieces.extend(
                t.entries_in(start, start + 10)
                    .map(|(i, _, c)| (i, c.dest.0)),
            );
        }
        assert!(pieces.windows(2).all(|w| w[0].0 < w[1].0));
        let mut dests: Vec<_> = pieces.iter().map(|p| p.1).collect();
        dests.sort();
        assert_eq!(dests, (0..100).collect::<Vec<_>>());
        assert_eq!(t.entries_in(usize::MAX, usize::MAX).count(), 0);
        assert_eq!(t.entries_in(50, 10).count(), 0);
    }

    fn insert_get_remove_replace<K: TestKey>() {
        let mut t = FlowTable::<K>::new(16, 1000, 1);
        assert!(t.is_empty());
        assert!(t.get(&key(1)).is_none());
        t.insert(key(1), conn(10, 100)).unwrap();
        t.insert(key(2), conn(20, 100)).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(&key(1)).unwrap().dest, DestId(10));
        assert_eq!(t.get(&key(2)).unwrap().dest, DestId(20));

        // Replace keeps one entry and returns the stored conn.
        let c = t.insert(key(1), conn(11, 200)).unwrap();
        assert_eq!(c.dest, DestId(11));
        c.state = ConnState::FinWait;
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(&key(1)).unwrap().state, ConnState::FinWait);
        assert_eq!(t.get(&key(1)).unwrap().expires(), Instant::from_secs(200));

        // get_mut edits in place.
        t.get_mut(&key(2))
            .unwrap()
            .set_expires(Instant::from_secs(5));
        assert_eq!(t.get(&key(2)).unwrap().expires(), Instant::from_secs(5));

        // A key differing only in flags, proto or a port is another flow.
        assert!(t.get(&key::<K>(1).with_flags(KEY_TEMPLATE)).is_none());
        assert!(t.get(&key::<K>(1).with_proto(17)).is_none());
        assert!(t.get(&key::<K>(1).with_vport(81)).is_none());

        assert_eq!(t.remove(&key(1)).unwrap().dest, DestId(11));
        assert!(t.remove(&key(1)).is_none());
        assert!(t.get(&key(1)).is_none());
        assert_eq!(t.len(), 1);
        check_invariants(&t);

        t.clear();
        assert!(t.is_empty());
        assert!(t.get(&key(2)).is_none());
        assert_eq!(t.iter().count(), 0);
    }

    fn grows_by_doubling_up_to_max_then_table_full<K: TestKey>() {
        let mut t = FlowTable::<K>::new(16, 100, 7);
        assert_eq!(t.capacity(), 16);
        assert_eq!(t.max_entries(), 100);
        let mut caps = vec![t.capacity()];
        for n in 0..100 {
            t.insert(key(n), conn(n, 10)).unwrap();
            if *caps.last().unwrap() != t.capacity() {
                caps.push(t.capacity());
            }
            assert!(t.len() <= t.capacity() * 7 / 8);
        }
        assert_eq!(caps, [16, 32, 64, 128]);
        assert!(matches!(t.insert(key(100), conn(0, 10)), Err(TableFull)));
        assert_eq!(TableFull.to_string(), "connection table full");
        // Replacing an existing key still works when full.
        t.insert(key(5), conn(55, 10)).unwrap();
        assert_eq!(t.get(&key(5)).unwrap().dest, DestId(55));
        // After a removal there is room again.
        t.remove(&key(0)).unwrap();
        t.insert(key(100), conn(1, 10)).unwrap();
        assert_eq!(t.capacity(), 128);
        for n in 1..=100 {
            assert!(t.get(&key(n)).is_some(), "{n}");
        }
        check_invariants(&t);
    }

    fn capacity_bounds<K: TestKey>() {
        assert_eq!(FlowTable::<K>::new(0, 0, 0).capacity(), 16);
        assert!(FlowTable::<K>::new(0, 0, 0)
            .insert(key(1), conn(1, 1))
            .is_err());
        // Initial capacity is clamped to what max_entries needs.
        assert_eq!(FlowTable::<K>::new(1 << 20, 14, 0).capacity(), 16);
        assert_eq!(FlowTable::<K>::new(100, 1000, 0).capacity(), 128);
        assert_eq!(ConnTable::slots_for(1_000_000), 1 << 21);
        assert_eq!(ConnTable::slots_for(14), 16);
        assert_eq!(ConnTable::slots_for(15), 32);
        // A huge max_entries does not overflow.
        let t = FlowTable::<K>::new(16, usize::MAX, 0);
        assert_eq!(t.max_entries(), load_limit(MAX_SLOTS));
    }

    fn randomised_model_against_std_hashmap<K: TestKey>() {
        // Small key space so inserts replace and removes hit; small initial size so the table
        // grows, wraps around its end and runs long clusters.
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut t = FlowTable::<K>::new(16, 3000, 42);
        let mut model: HashMap<K, Conn> = HashMap::new();
        for op in 0..100_000u32 {
            let k = key(rng.below(4000) as u32);
            match rng.below(10) {
                0..=3 => {
                    let c = conn(op, u64::from(op));
                    match t.insert(k, c) {
                        Ok(stored) => {
                            assert_eq!(*stored, c);
                            model.insert(k, c);
                        }
                        Err(TableFull) => {
                            assert!(!model.contains_key(&k));
                            assert_eq!(model.len(), 3000);
                        }
                    }
                }
                4..=6 => assert_eq!(t.remove(&k), model.remove(&k)),
                7 => {
                    if let Some(c) = t.get_mut(&k) {
                        c.state = ConnState::TimeWait;
                        model.get_mut(&k).unwrap().state = ConnState::TimeWait;
                    } else {
                        assert!(!model.contains_key(&k));
                    }
                }
                _ => assert_eq!(t.get(&k), model.get(&k)),
            }
            assert_eq!(t.len(), model.len());
            if op % 10_000 == 0 {
                check_invariants(&t);
            }
        }
        check_invariants(&t);
        for (k, c) in &model {
            assert_eq!(t.get(k), Some(c));
        }
        let mut seen: Vec<_> = t.iter().map(|(k, c)| (*k, *c)).collect();
        seen.sort_by_key(|(k, _)| k.index());
        let mut want: Vec<_> = model.into_iter().collect();
        want.sort_by_key(|(k, _)| k.index());
        assert_eq!(seen, want);
    }

    fn deletion_keeps_colliding_keys_findable<K: TestKey>() {
        // Only 3 hash bits: every key lands in one of 8 homes, runs wrap around the end.
        let mut t = FlowTable::<K>::new(64, 56, 3);
        t.hash_mask = 0x7;
        let mut rng = Rng(99);
        let mut model: HashMap<K, Conn> = HashMap::new();
        for op in 0..20_000u32 {
            let k = key(rng.below(80) as u32);
            if rng.below(2) == 0 {
                if t.insert(k, conn(op, 1)).is_ok() {
                    model.insert(k, conn(op, 1));
                }
            } else {
                assert_eq!(t.remove(&k), model.remove(&k));
            }
            for (k, c) in &model {
                assert_eq!(t.get(k), Some(c));
            }
        }
        check_invariants(&t);
    }

    fn degenerate_hash_fails_cleanly_instead_of_losing_flows<K: TestKey>() {
        // Every key hashes to 0: runs reach the distance limit, the table grows and re-seeds
        // (no help with a constant hash), and the insert reports TableFull.
        let mut t = FlowTable::<K>::new(512, 400, 5);
        t.hash_mask = 0;
        let mut stored = 0u32;
        for n in 0..400 {
            if t.insert(key(n), conn(n, 1)).is_err() {
                break;
            }
            stored += 1;
        }
        assert_eq!(stored, u32::from(MAX_DIST));
        assert_eq!(t.len(), stored as usize);
        for n in 0..stored {
            assert_eq!(t.get(&key(n)).unwrap().dest, DestId(n));
        }
        check_invariants(&t);
    }

    fn sweep_removes_exactly_the_expired<K: TestKey>() {
        let mut t = FlowTable::<K>::new(1024, 1000, 11);
        for n in 0..800 {
            // Expiries 1..=8 s.
            t.insert(key(n), conn(n, u64::from(n % 8) + 1)).unwrap();
        }
        let now = Instant::from_secs(4);
        let mut expired = Vec::new();
        let removed = t.sweep(now, t.capacity(), |k, c| {
            assert!(c.expires() <= now);
            expired.push(*k);
        });
        assert_eq!(removed, 400);
        assert_eq!(expired.len(), 400);
        assert_eq!(t.len(), 400);
        for n in 0..800 {
            assert_eq!(t.get(&key(n)).is_some(), n % 8 >= 4, "{n}");
        }
        for (_, c) in t.iter() {
            assert!(c.expires() > now);
        }
        check_invariants(&t);
    }

    fn sweep_is_resumable_with_small_budgets<K: TestKey>() {
        for budget in [1, 7, 64, 1000] {
            let mut t = FlowTable::<K>::new(256, 200, 13);
            for n in 0..200 {
                t.insert(key(n), conn(n, if n % 3 == 0 { 1 } else { 100 }))
                    .unwrap();
            }
            let expired_count = (0..200).filter(|n| n % 3 == 0).count();
            let calls = t.capacity().div_ceil(budget);
            let mut removed = 0;
            for _ in 0..calls {
                removed += t.sweep(Instant::from_secs(1), budget, |_, _| {});
            }
            assert_eq!(removed, expired_count, "budget {budget}");
            assert_eq!(t.len(), 200 - expired_count);
            check_invariants(&t);
        }
    }

    fn sweep_budget_bounds_the_work<K: TestKey>() {
        let mut t = FlowTable::<K>::new(1024, 1000, 17);
        for n in 0..800 {
            t.insert(key(n), conn(n, 1)).unwrap();
        }
        // All expired; one call with budget 16 removes only what those 16 slots hold
        // (plus the entries that backward shifts pull into them).
        let removed = t.sweep(Instant::from_secs(2), 16, |_, _| {});
        assert!(removed < 800);
        assert_eq!(t.len(), 800 - removed);
        let mut total = removed;
        while !t.is_empty() {
            total += t.sweep(Instant::from_secs(2), 16, |_, _| {});
        }
        assert_eq!(total, 800);
        // A sweep over an empty table, or with zero budget, is a no-op.
        assert_eq!(t.sweep(Instant::from_secs(2), 0, |_, _| {}), 0);
        assert_eq!(t.sweep(Instant::from_secs(2), 10_000, |_, _| {}), 0);
    }

    fn sweep_with_virtual_clock<K: TestKey>() {
        let mut t = FlowTable::<K>::new(64, 50, 19);
        let mut now = Instant::from_secs(100);
        let timeout = Duration::from_secs(60);
        t.insert(
            key(1),
            Conn::new(DestId(1), ConnState::SynRecv, now + timeout),
        )
        .unwrap();
        now += Duration::from_secs(30);
        t.insert(key(2), Conn::new(DestId(2), ConnState::Udp, now + timeout))
            .unwrap();
        now += Duration::from_secs(30);
        let mut gone = Vec::new();
        t.sweep(now, 64, |k, _| gone.push(*k));
        assert_eq!(gone, [key(1)]);
        now += Duration::from_secs(29);
        assert_eq!(t.sweep(now, 64, |_, _| {}), 0);
        now += Duration::from_secs(1);
        assert_eq!(t.sweep(now, 64, |_, _| {}), 1);
        assert!(t.is_empty());
    }

    fn retain_keeps_what_the_predicate_keeps<K: TestKey>() {
        let mut t = FlowTable::<K>::new(64, 1000, 23);
        for n in 0..500 {
            t.insert(key(n), conn(n % 5, 1)).unwrap();
        }
        t.retain(|_, c| {
            c.state = ConnState::Close;
            c.dest != DestId(3)
        });
        assert_eq!(t.len(), 400);
        for n in 0..500 {
            let got = t.get(&key(n));
            assert_eq!(got.is_some(), n % 5 != 3);
            if let Some(c) = got {
                assert_eq!(c.state, ConnState::Close);
            }
        }
        check_invariants(&t);
    }

    fn seeds_change_the_layout<K: TestKey>() {
        let mut a = FlowTable::<K>::new(64, 40, 1);
        let mut b = FlowTable::<K>::new(64, 40, 2);
        for n in 0..40 {
            a.insert(key(n), conn(n, 1)).unwrap();
            b.insert(key(n), conn(n, 1)).unwrap();
        }
        let order = |t: &FlowTable<K>| t.iter().map(|(k, _)| *k).collect::<Vec<_>>();
        assert_ne!(order(&a), order(&b));
        assert_ne!(random_seed(), random_seed());
    }

    /// Allocated bytes per flow at `n` flows, flow `i` keyed `key(i)`.
    fn bytes_per_flow<K: TableKey>(n: u32, key: impl Fn(u32) -> K) -> f64 {
        let mut t = FlowTable::<K>::new(16, 2_000_000, 29);
        for i in 0..n {
            t.insert(key(i), conn(i, 900)).unwrap();
        }
        assert_eq!(t.len(), n as usize);
        t.heap_bytes() as f64 / f64::from(n)
    }

    #[test]
    fn memory_per_flow_at_one_million_is_under_64_bytes() {
        assert_eq!(ConnTable::slot_bytes(), 28);
        // At 1M flows the table has 2^21 slots: 28 * 2^21 / 10^6 = 58.7 bytes per flow.
        let per_flow = bytes_per_flow(1_000_000, |i| {
            ConnKey::new(
                6,
                Ipv4Addr::from(0x0a00_0000 + (i / 50_000)),
                (i % 50_000) as u16 + 1024,
                Ipv4Addr::new(192, 0, 2, (i % 4) as u8),
                443,
            )
        });
        assert!(per_flow <= 64.0, "{per_flow} bytes per flow");
        assert_eq!(
            format!("{per_flow:.1}"),
            "58.7",
            "IPv4 flows no bigger than before"
        );
        // Worst case, just after a doubling (7/16 full): 28 * 16 / 7 = 64.
        assert!(ConnTable::slot_bytes() * 16 / 7 <= 64);
    }

    /// The IPv6 table's figure, beside the IPv4 one: its slot (`Conn` 12 + `ConnKey6` 38 +
    /// 2) times the same 2^21 slots at 1M flows, 109.1 bytes per flow.
    #[test]
    fn memory_per_flow_of_ipv6_flows_at_one_million() {
        assert_eq!(ConnTable6::slot_bytes(), 52);
        let n = 1_000_000;
        let per_flow = bytes_per_flow(n, |i| {
            ConnKey6::new(
                6,
                Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0000 + u128::from(i / 50_000)),
                (i % 50_000) as u16 + 1024,
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 2, (i % 4) as u16),
                443,
            )
        });
        let slots = ConnTable6::slots_for(n as usize);
        assert_eq!(slots, 1 << 21);
        let computed = (ConnTable6::slot_bytes() * slots) as f64 / f64::from(n);
        assert_eq!(per_flow, computed, "{per_flow} bytes per flow");
        println!("IPv6: {per_flow:.1} bytes per flow at 1M flows (IPv4: 58.7)");
        // Worst case, just after a doubling: 52 * 16 / 7 = 118.
        assert!(ConnTable6::slot_bytes() * 16 / 7 <= 119);
    }

    fn unconfirmed(d: u32, expires_s: u64) -> Conn {
        Conn::new(DestId(d), ConnState::SynRecv, Instant::from_secs(expires_s))
    }

    fn confirmed(d: u32, expires_s: u64) -> Conn {
        let mut c = conn(d, expires_s);
        c.confirm();
        c
    }

    fn make_room_does_nothing_below_the_high_water_mark<K: TestKey>() {
        let mut t = FlowTable::<K>::new(16, 800, 31);
        assert_eq!(t.high_water(), 700);
        for n in 0..699 {
            t.insert(key(n), unconfirmed(n, 100)).unwrap();
        }
        let now = Instant::from_secs(1);
        assert_eq!(t.make_room(now, |_, _, _| panic!("below the mark")), None);
        t.insert(key(699), unconfirmed(699, 100)).unwrap();
        assert!(t.make_room(now, |_, _, _| {}).is_some());
        assert_eq!(t.len(), 699);
    }

    fn flood_of_unconfirmed_flows_never_evicts_confirmed_ones_and_lets_new_flows_in<K: TestKey>() {
        // A small table: 200 confirmed flows, then a flood of 100,000 unconfirmed ones (a
        // spoofed SYN+ACK pair each), with a legitimate new flow every 100 flood flows.
        let max = 2000;
        let mut t = FlowTable::<K>::new(16, max, 37);
        let mut now = Instant::from_secs(1000);
        for n in 0..200 {
            t.insert(key(n), confirmed(n, 2000)).unwrap();
        }
        let mut evicted = [0u64; 2];
        let (mut legit_in, mut legit_tried) = (0, 0);
        for n in 0..100_000u32 {
            // 1,000 pairs a second: expiries (kept in tenths of a second) differ every 100.
            now += Duration::from_millis(1);
            let k = key(1_000_000 + n);
            let exp = now + Duration::from_secs(60);
            t.make_room(now, |k, c, why| {
                assert!(!c.is_confirmed(), "{k}");
                evicted[why as usize] += 1;
            });
            t.insert(k, Conn::new(DestId(n), ConnState::Established, exp))
                .unwrap();
            if n % 100 == 0 {
                legit_tried += 1;
                let k = key(500_000 + n);
                t.make_room(now, |_, c, why| {
                    assert!(!c.is_confirmed());
                    evicted[why as usize] += 1;
                });
                if t.insert(k, Conn::new(DestId(n), ConnState::SynRecv, exp))
                    .is_ok()
                {
                    legit_in += 1;
                }
            }
            assert!(t.len() <= max);
        }
        assert_eq!(legit_in, legit_tried, "every new flow got in");
        for n in 0..200 {
            assert!(t.get(&key(n)).unwrap().is_confirmed(), "{n}");
        }
        // The table sits at its high-water mark; every insert over it evicted one.
        assert!(
            t.len() <= max && t.len() >= t.high_water() - 1,
            "{}",
            t.len()
        );
        let inserted = 100_000 + legit_tried;
        assert_eq!(
            evicted[Eviction::Unconfirmed as usize] + evicted[Eviction::Expired as usize],
            inserted as u64 + 200 - t.len() as u64
        );
        // The oldest-first choice keeps young flows: the newest legitimate flows are in.
        let young = (99_000..100_000)
            .step_by(100)
            .filter(|n| t.contains_key(&key(500_000 + n)))
            .count();
        assert!(young >= 9, "{young} of the last 10");
        check_invariants(&t);
    }

    fn a_table_full_of_confirmed_flows_refuses_new_ones<K: TestKey>() {
        let mut t = FlowTable::<K>::new(16, 100, 41);
        for n in 0..100 {
            t.insert(key(n), confirmed(n, 100)).unwrap();
        }
        let now = Instant::from_secs(1);
        assert_eq!(t.make_room(now, |_, _, _| panic!("confirmed")), None);
        assert_eq!(t.insert(key(100), unconfirmed(100, 100)), Err(TableFull));
        assert_eq!(t.len(), 100);
    }

    fn make_room_prefers_expired_flows_and_then_the_oldest_unconfirmed<K: TestKey>() {
        // A table smaller than one sample: make_room sees every flow.
        let mut t = FlowTable::<K>::new(16, 14, 43);
        assert_eq!(t.capacity(), 16);
        for n in 0..13 {
            t.insert(key(n), unconfirmed(n, 100 + u64::from(n)))
                .unwrap();
        }
        t.insert(key(27), confirmed(27, 1)).unwrap();
        let now = Instant::from_secs(50);
        // key 27 is confirmed but expired: an expired flow goes first, confirmed or not.
        let mut gone = Vec::new();
        t.make_room(now, |k, _, why| gone.push((*k, why)));
        assert_eq!(gone, [(key(27), Eviction::Expired)]);
        t.insert(key(28), unconfirmed(28, 500)).unwrap();
        gone.clear();
        t.make_room(now, |k, _, why| gone.push((*k, why)));
        assert_eq!(
            gone,
            [(key(0), Eviction::Unconfirmed)],
            "the first to expire"
        );
        assert_eq!(Eviction::Unconfirmed.as_str(), "unconfirmed");
        assert_eq!(Eviction::Expired.as_str(), "expired");
        check_invariants(&t);
    }

    fn make_room_work_is_bounded<K: TestKey>() {
        // A big table full of confirmed flows: each call looks at 4 samples of 16 flows at most,
        // a few microseconds, not a scan of the 2^17 slots.
        let mut t = FlowTable::<K>::new(1 << 17, 100_000, 47);
        for n in 0..100_000 {
            t.insert(key(n), confirmed(n, 100)).unwrap();
        }
        let start = std::time::Instant::now();
        for _ in 0..10_000 {
            assert_eq!(t.make_room(Instant::from_secs(1), |_, _, _| {}), None);
        }
        let per_call = start.elapsed() / 10_000;
        assert!(
            per_call < std::time::Duration::from_micros(200),
            "{per_call:?}"
        );
    }
}
