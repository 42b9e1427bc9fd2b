//! Weighted Maglev hashing (IPVS `ip_vs_mh.c`; Eisenbud et al., NSDI 2016, section 3.4).
//!
//! A lookup table of prime size M maps a hash of the client address (plus the client port with
//! `mh-port`) to a server. Each server prefers the table slots `(offset + j * skip) mod M`,
//! `j = 0, 1, ...` (a permutation of the slots since M is prime), computed on the fly and not
//! stored. Servers take turns, in (address, port) order, claiming their next preferred free slot
//! until the table is full; a server's turn lasts `weight / gcd(weights)` slots, so slots are
//! shared in proportion to weight. Changing one server moves few slots of the others (see the
//! tests for figures, and docs/scale-out.md for 1,000 servers).
//!
//! Hashes are keyed SipHash-1-3 ([`siphasher::sip::SipHasher13`]) of a 32-bit value hashed as its
//! 4 little-endian bytes, truncated to 32 bits, with the fixed keys of the kernel's
//! `generate_hash_secret`: every director computes the same table from the same set of servers
//! (same addresses, ports and weights, same M), whatever order they were added or configured in.
//! As in the kernel:
//!
//! - a server's `offset = H1(addr + port) mod M` and `skip = H2(addr + port) mod (M - 1) + 1`,
//!   with `addr + port` the address as a host-order integer plus the port;
//! - a flow's slot is `H1(saddr + sport) mod M` (`sport` = 0 without `mh-port`);
//! - turns are scaled down so that the largest is below 64 (`rshift`), and a server with a
//!   non-zero weight always gets at least one slot per round;
//! - `mh-fallback`: when the slot's server is unavailable, probe the slots
//!   `H1(saddr + sport + r) mod M` for `r = slot, slot + 1, ...` and take the first available.
//!
//! On a 64-bit kernel `hsiphash` is SipHash-1-3, so for the same M and servers listed in
//! (address, port) order the table should match IPVS's; that was not checked against a kernel.
//! Two differences: the kernel's servers take turns in the order they were added, so two IPVS
//! directors given the same servers in another order build different tables (tunlb sorts them:
//! directors behind one ECMP route must agree); and the kernel builds the table
//! from each server's last non-zero weight, so quiescing a server (weight 0) keeps its slots
//! (its flows fail or fall back); here the snapshot only knows the current weight, and a
//! weight-0 server gets no slots.

use core::fmt;

use siphasher::sip::SipHasher13;

use super::{FlowKey, SchedDest, SchedOptions};

/// Default Maglev table size M (a prime; 65537 = 2^16 + 1).
pub const DEFAULT_MH_TABLE_SIZE: u32 = 65537;

/// Largest accepted table size M (a prime, about 2^20: 4 MiB of table per service).
pub const MAX_MH_TABLE_SIZE: u32 = 1_048_573;

/// `hash1` of the kernel's `generate_hash_secret`: offsets and flow slots.
const KEY1: (u64, u64) = (2_654_435_761, 2_654_435_761);
/// `hash2` of the kernel's `generate_hash_secret`: skips.
const KEY2: (u64, u64) = (2_654_446_892, 2_654_446_892);

/// Bits the largest turn may occupy (the kernel's `IP_VS_MH_TAB_BITS`).
const TURN_BITS: u32 = 6;

/// Marks a slot with no server (only when no server has a non-zero weight).
const EMPTY: u32 = u32::MAX;

/// Whether `m` can be used as the Maglev table size: a prime no larger than
/// [`MAX_MH_TABLE_SIZE`].
pub fn is_valid_mh_table_size(m: u32) -> bool {
    m <= MAX_MH_TABLE_SIZE && is_prime(m)
}

fn is_prime(m: u32) -> bool {
    if m < 2 {
        return false;
    }
    let m = u64::from(m);
    (2..).take_while(|d| d * d <= m).all(|d| m % d != 0)
}

/// The table size actually used for a requested one: itself if valid, else the next prime
/// (within `2..=MAX_MH_TABLE_SIZE`).
fn effective_size(requested: u32) -> u32 {
    let mut m = requested.clamp(2, MAX_MH_TABLE_SIZE);
    while !is_prime(m) {
        m += 1;
    }
    m
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The kernel's `hsiphash(&v, 4, key)` on a 64-bit little-endian host.
fn hsiphash(key: &SipHasher13, v: u32) -> u32 {
    key.hash(&v.to_le_bytes()) as u32
}

/// The integer IPVS hashes for an address and port.
fn addr_port(addr: std::net::IpAddr, port: u16) -> u32 {
    super::hash::source_key(addr, port)
}

/// One server's walk through its preference list while the table fills.
struct Setup {
    /// Its index in the server list (what the table holds).
    dest: u32,
    /// The slot it tries next.
    perm: u32,
    skip: u32,
    /// Slots it claims per round.
    turns: u32,
}

/// A Maglev lookup table.
#[derive(Clone)]
pub(super) struct MaglevTable {
    /// Slot -> server index, or [`EMPTY`].
    table: Vec<u32>,
    h1: SipHasher13,
}

impl fmt::Debug for MaglevTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaglevTable")
            .field("size", &self.table.len())
            .finish_non_exhaustive()
    }
}

impl MaglevTable {
    /// Fills a table of (about) `requested_size` slots; see [`effective_size`].
    pub(super) fn new(dests: &[SchedDest], requested_size: u32) -> MaglevTable {
        let m = effective_size(requested_size);
        let h1 = SipHasher13::new_with_keys(KEY1.0, KEY1.1);
        let h2 = SipHasher13::new_with_keys(KEY2.0, KEY2.1);
        let mut table = vec![EMPTY; m as usize];

        let g = dests.iter().fold(0, |g, d| gcd(g, d.weight));
        if g == 0 {
            return MaglevTable { table, h1 };
        }
        let max_turns = dests.iter().map(|d| d.weight / g).max().unwrap_or(0);
        let rshift = (u32::BITS - max_turns.leading_zeros()).saturating_sub(TURN_BITS);
        // Servers take turns in (address, port) order, not in list order: directors that were
        // given the same servers in another order (added with `adm` in another sequence,
        // another config file) build the same table.
        let mut order: Vec<usize> = (0..dests.len()).collect();
        order.sort_by_key(|&i| (dests[i].addr, dests[i].port));
        let mut setups: Vec<Setup> = order
            .into_iter()
            .map(|i| {
                let d = &dests[i];
                let key = addr_port(d.addr, d.port);
                let turns = (d.weight / g) >> rshift;
                Setup {
                    dest: i as u32,
                    perm: hsiphash(&h1, key) % m,
                    skip: hsiphash(&h2, key) % (m - 1) + 1,
                    turns: if turns == 0 && d.weight != 0 {
                        1
                    } else {
                        turns
                    },
                }
            })
            .collect();

        let mut taken = vec![0u64; (m as usize).div_ceil(64)];
        let mut left = m as usize;
        'fill: loop {
            for s in &mut setups {
                for _ in 0..s.turns {
                    let mut c = s.perm;
                    while taken[(c / 64) as usize] & (1 << (c % 64)) != 0 {
                        c += s.skip;
                        if c >= m {
                            c -= m;
                        }
                    }
                    s.perm = c;
                    taken[(c / 64) as usize] |= 1 << (c % 64);
                    table[c as usize] = s.dest;
                    left -= 1;
                    if left == 0 {
                        break 'fill;
                    }
                }
            }
        }
        MaglevTable { table, h1 }
    }

    /// The table size M.
    pub(super) fn size(&self) -> usize {
        self.table.len()
    }

    /// The slot of a flow key hashed with a fallback offset.
    fn slot(&self, key: u32, offset: u32) -> usize {
        (hsiphash(&self.h1, offset.wrapping_add(key)) as usize) % self.table.len()
    }

    /// The server of a slot, None if empty.
    fn get(&self, slot: usize) -> Option<usize> {
        match self.table.get(slot) {
            Some(&i) if i != EMPTY => Some(i as usize),
            _ => None,
        }
    }

    /// Looks up the flow's server, falling back to another one if `opts.fallback`.
    pub(super) fn pick(
        &self,
        flow: &FlowKey,
        opts: SchedOptions,
        dests: &[SchedDest],
    ) -> Option<usize> {
        let key = addr_port(
            flow.saddr.into(),
            if opts.hash_port { flow.sport } else { 0 },
        );
        let available = |i: usize| dests.get(i).is_some_and(SchedDest::is_available);
        let ihash = self.slot(key, 0);
        let first = self.get(ihash)?;
        if available(first) {
            return Some(first);
        }
        // The probe below may hash up to M times; skip it when it cannot succeed.
        if !opts.fallback || !dests.iter().any(SchedDest::is_available) {
            return None;
        }
        let m = self.table.len();
        for offset in 0..m {
            let i = self.get(self.slot(key, ((offset + ihash) % m) as u32))?;
            if available(i) {
                return Some(i);
            }
        }
        None
    }

    #[cfg(test)]
    fn slots(&self) -> &[u32] {
        &self.table
    }

    /// The table itself: slot -> server index, `u32::MAX` for a slot with no server.
    #[cfg(any(test, feature = "sim"))]
    pub(super) fn into_slots(self) -> Vec<u32> {
        self.table
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use super::super::testutil::*;
    use super::super::{DestState, SchedOptions, Scheduler};
    use super::*;
    use crate::model::SchedulerKind;

    /// Slots per server.
    fn shares(t: &MaglevTable, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &s in t.slots() {
            c[s as usize] += 1;
        }
        c
    }

    fn assert_balanced(weights: &[u32], m: u32) {
        let d = dests(weights);
        let t = MaglevTable::new(&d, m);
        let total: u32 = weights.iter().sum();
        for (i, &got) in shares(&t, d.len()).iter().enumerate() {
            let ideal = f64::from(m) * f64::from(weights[i]) / f64::from(total);
            let err = (got as f64 - ideal).abs() / ideal;
            assert!(
                err < 0.01,
                "weights {weights:?}: server {i} has {got}, ideal {ideal}"
            );
        }
    }

    #[test]
    fn table_sizes() {
        assert!(is_valid_mh_table_size(DEFAULT_MH_TABLE_SIZE));
        assert!(is_valid_mh_table_size(MAX_MH_TABLE_SIZE));
        assert!(is_valid_mh_table_size(251));
        assert!(!is_valid_mh_table_size(65536));
        assert!(!is_valid_mh_table_size(0));
        assert!(!is_valid_mh_table_size(1));
        assert_eq!(effective_size(65536), 65537);
        assert_eq!(effective_size(0), 2);
        assert_eq!(effective_size(u32::MAX), MAX_MH_TABLE_SIZE);
        assert_eq!(MaglevTable::new(&dests(&[1]), 100).size(), 101);
    }

    #[test]
    fn mh_balance_is_within_one_percent_of_ideal() {
        assert_balanced(&[1, 1, 1, 1, 1], DEFAULT_MH_TABLE_SIZE);
        assert_balanced(&[2, 1], DEFAULT_MH_TABLE_SIZE);
        assert_balanced(&[2, 2, 1, 1, 1], DEFAULT_MH_TABLE_SIZE);
        assert_balanced(&[100, 100, 100], DEFAULT_MH_TABLE_SIZE);
        // M = 100 * N is enough.
        assert_balanced(&[1, 1, 1, 1, 1], 503);
    }

    #[test]
    fn mh_flows_spread_like_the_table() {
        let d = dests(&[2, 1]);
        let s = sched(SchedulerKind::Mh, &d);
        let c = counts_over_addrs(&s, &d, 30_000);
        // 20000 : 10000 expected; allow sampling noise.
        assert!((19_400..=20_600).contains(&c[0]), "{c:?}");
    }

    fn counts_over_addrs(s: &Scheduler, d: &[super::SchedDest], n: u32) -> Vec<usize> {
        let mut c = vec![0; d.len() + 1];
        for i in 0..n {
            let f = flow(Ipv4Addr::from(0x0a00_0000 + i * 13), 1);
            c[s.pick(&f, d).unwrap_or(d.len())] += 1;
        }
        c
    }

    #[test]
    fn mh_is_stable_across_rebuilds() {
        let d1 = dests(&[1, 2, 1]);
        let d2 = dests(&[1, 2, 1]); // fresh states, same servers
        let s1 = sched(SchedulerKind::Mh, &d1);
        let s2 = sched(SchedulerKind::Mh, &d2);
        for i in 0..2000u32 {
            let f = flow(Ipv4Addr::from(0xc000_0000 + i * 101), i as u16);
            assert_eq!(s1.pick(&f, &d1), s2.pick(&f, &d2));
            assert_eq!(
                s1.pick(&f, &d1),
                s1.pick(&flow(f.saddr, 7), &d1),
                "port ignored"
            );
        }
    }

    /// The table as (address, port) per slot: comparable across server lists in other orders.
    fn owners(t: &MaglevTable, d: &[super::SchedDest]) -> Vec<(std::net::IpAddr, u16)> {
        t.slots()
            .iter()
            .map(|&i| (d[i as usize].addr, d[i as usize].port))
            .collect()
    }

    #[test]
    fn mh_table_does_not_depend_on_the_order_servers_were_added_in() {
        // Weighted, two ports on one address, addresses out of order: every permutation a
        // director could have been given (adm order, reload order) builds the same table.
        let servers: [(&str, u16, u32); 5] = [
            ("10.2.0.9", 80, 3),
            ("10.2.0.1", 8080, 1),
            ("10.2.0.1", 80, 2),
            ("192.168.1.4", 443, 1),
            ("10.10.0.3", 80, 5),
        ];
        let list = |order: &[usize]| -> Vec<super::SchedDest> {
            order
                .iter()
                .map(|&i| {
                    let (a, port, weight) = servers[i];
                    super::SchedDest {
                        addr: a.parse().unwrap(),
                        port,
                        weight,
                        state: Arc::new(DestState::default()),
                    }
                })
                .collect()
        };
        let first = list(&[0, 1, 2, 3, 4]);
        let reference = owners(&MaglevTable::new(&first, 4093), &first);
        let mut order = [0, 1, 2, 3, 4];
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..40 {
            // Fisher-Yates with a xorshift: 40 orders out of 120.
            for i in (1..order.len()).rev() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                order.swap(i, (rng % (i as u64 + 1)) as usize);
            }
            let d = list(&order);
            let t = MaglevTable::new(&d, 4093);
            assert_eq!(owners(&t, &d), reference, "order {order:?}");
            // And a flow goes to the same server through the scheduler.
            let (s1, s2) = (
                sched(SchedulerKind::Mh, &first),
                sched(SchedulerKind::Mh, &d),
            );
            for k in 0..200u32 {
                let f = flow(Ipv4Addr::from(0xc000_0200 + k * 7919), 1);
                let (a, b) = (s1.pick(&f, &first).unwrap(), s2.pick(&f, &d).unwrap());
                assert_eq!((first[a].addr, first[a].port), (d[b].addr, d[b].port));
            }
        }
    }

    #[test]
    fn mh_port_flag_spreads_one_client_over_servers() {
        let d = dests(&[1, 1, 1, 1]);
        let opts = SchedOptions {
            hash_port: true,
            ..SchedOptions::default()
        };
        let s = Scheduler::new(SchedulerKind::Mh, &d, Arc::default(), opts);
        let a = Ipv4Addr::new(203, 0, 113, 9);
        let picks: std::collections::HashSet<_> = (0..64)
            .map(|p| s.pick(&flow(a, 1000 + p), &d).unwrap())
            .collect();
        assert_eq!(picks.len(), 4);
    }

    /// Slots of the servers that stay which change owner when `removed` leaves.
    fn moved_when_removed(n: usize, removed: usize, m: u32) -> (usize, usize) {
        let before = dests(&vec![1; n]);
        let after: Vec<_> = before
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != removed)
            .map(|(_, d)| d.clone())
            .collect();
        let t1 = MaglevTable::new(&before, m);
        let t2 = MaglevTable::new(&after, m);
        let owner = |ds: &[super::SchedDest], i: u32| ds[i as usize].addr;
        let mut moved = 0;
        let mut kept_total = 0;
        for (&a, &b) in t1.slots().iter().zip(t2.slots()) {
            if a as usize != removed {
                kept_total += 1;
                if owner(&before, a) != owner(&after, b) {
                    moved += 1;
                }
            }
        }
        (moved, kept_total)
    }

    #[test]
    fn mh_removing_a_server_barely_moves_the_others() {
        for removed in 0..5 {
            let (moved, total) = moved_when_removed(5, removed, DEFAULT_MH_TABLE_SIZE);
            println!(
                "mh N=5 M=65537, server {removed} leaves: {moved} of {total} slots of the \
                 remaining servers move ({:.2}%)",
                100.0 * moved as f64 / total as f64
            );
            assert!(moved * 100 < total, "{moved} of {total} moved");
        }
        let (moved, total) = moved_when_removed(20, 7, DEFAULT_MH_TABLE_SIZE);
        println!(
            "mh N=20 M=65537, one server leaves: {moved} of {total} slots move ({:.2}%)",
            100.0 * moved as f64 / total as f64
        );
        assert!(moved * 100 < total, "{moved} of {total} moved");
    }

    #[test]
    fn mh_never_picks_weight_zero_or_overloaded_and_falls_back_when_asked() {
        let d = dests(&[1, 0, 1, 1]);
        let t = MaglevTable::new(&d, 251);
        assert_eq!(shares(&t, 4)[1], 0, "weight 0 gets no slot");

        let f = |i: u32| flow(Ipv4Addr::from(0x0a00_0000 + i * 7), 1);
        let plain = sched(SchedulerKind::Mh, &d);
        let opts = SchedOptions {
            fallback: true,
            ..SchedOptions::default()
        };
        let fb = Scheduler::new(SchedulerKind::Mh, &d, Arc::default(), opts);
        let before: Vec<_> = (0..1000).map(|i| plain.pick(&f(i), &d).unwrap()).collect();
        overload(&d[2]);
        for (i, &b) in before.iter().enumerate() {
            let i = i as u32;
            if b == 2 {
                assert_eq!(plain.pick(&f(i), &d), None);
                let now = fb.pick(&f(i), &d).unwrap();
                assert!(now == 0 || now == 3);
                assert_eq!(fb.pick(&f(i), &d), Some(now), "deterministic");
            } else {
                assert_eq!(plain.pick(&f(i), &d), Some(b));
                assert_eq!(fb.pick(&f(i), &d), Some(b));
            }
        }
        overload(&d[0]);
        overload(&d[3]);
        assert_eq!(fb.pick(&f(1), &d), None);
    }

    #[test]
    fn mh_turns_follow_ipvs_scaling() {
        // gcd 100: turns 3 and 1.
        assert_balanced(&[300, 100], 4093);
        // 1000 : 1 needs 10 bits, scaled by 2^4: 62 : 1 (the small server keeps one slot a round).
        // M = 4093 = 64 rounds of 63 slots, then 61 more for the first server.
        let d = dests(&[1000, 1]);
        let t = MaglevTable::new(&d, 4093);
        assert_eq!(shares(&t, 2), [4029, 64]);
    }

    /// Pins the mh mapping: a change here changes which real server every existing client is
    /// sent to, on every director. Make it only on purpose.
    #[test]
    fn mh_golden_vectors() {
        let d: Vec<_> = [
            ("10.1.0.1", 80, 1),
            ("10.1.0.2", 80, 1),
            ("10.1.0.3", 8080, 2),
            ("192.168.7.20", 443, 3),
        ]
        .iter()
        .map(|&(a, port, weight)| super::SchedDest {
            addr: a.parse().unwrap(),
            port,
            weight,
            state: Arc::new(DestState::default()),
        })
        .collect();
        let t = MaglevTable::new(&d, DEFAULT_MH_TABLE_SIZE);
        assert_eq!(fnv1a(t.slots()), 0x87d5_0550_ac0f_4f36);
        assert_eq!(
            &t.slots()[..16],
            &[3, 3, 1, 2, 3, 0, 3, 0, 2, 1, 0, 3, 3, 3, 3, 3]
        );
        assert_eq!(shares(&t, 4), [9363, 9363, 18725, 28086]);

        let s = sched(SchedulerKind::Mh, &d);
        let picks: Vec<usize> = (0..8u32)
            .map(|k| {
                let f = flow(Ipv4Addr::from(0xc633_6401u32.wrapping_mul(2 * k + 1)), 1);
                s.pick(&f, &d).unwrap()
            })
            .collect();
        assert_eq!(picks, [2, 2, 2, 0, 0, 0, 3, 0]);
    }

    /// Build time for M = 65537; run with
    /// `cargo test --release --lib mh_build_time -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing, run in release with --nocapture"]
    fn mh_build_time() {
        for n in [2, 5, 10, 50] {
            let d = dests(&vec![1; n]);
            let mut best = std::time::Duration::MAX;
            let start = std::time::Instant::now();
            let rounds = 50;
            for _ in 0..rounds {
                let t0 = std::time::Instant::now();
                let t = MaglevTable::new(&d, DEFAULT_MH_TABLE_SIZE);
                best = best.min(t0.elapsed());
                std::hint::black_box(t);
            }
            println!(
                "mh build M=65537 N={n}: best {best:?}, mean {:?}",
                start.elapsed() / rounds
            );
        }
    }
}
