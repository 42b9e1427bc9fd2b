//! Source and destination hashing (IPVS `ip_vs_sh.c`, `ip_vs_dh.c`).
//!
//! Both map a flow to one of 256 buckets with the kernel's `hash_32(key, 8)` (multiply by the
//! 32-bit golden ratio 0x61C88647, keep the top 8 bits) and give it to the bucket's server.
//!
//! - sh hashes the client address, plus the client port with `sh-port` (added to the address as
//!   integers, as the kernel does). Its table is weighted as `ip_vs_sh_reassign` fills it:
//!   buckets are dealt in list order, each server taking `weight` consecutive buckets before the
//!   next one's turn, cycling until the 256 are dealt. A weight-0 server still takes one bucket
//!   per round (flows hashed there find it unavailable), and weights summing past 256 leave the
//!   last servers with fewer buckets, or none: both exactly as in IPVS.
//!   With `sh-fallback`, a flow whose server is unavailable walks the buckets from a point derived
//!   from its hash (as `ip_vs_sh_get_fallback`) and takes the first available server.
//! - dh hashes the destination address (the VIP). As `ip_vs_dh_reassign`, its table ignores
//!   weights (bucket `i` goes to server `i mod n`), and there is no fallback or port flag.

use std::net::IpAddr;

use super::{FlowKey, SchedDest, SchedOptions};

/// Buckets in an sh/dh table (IPVS's default `CONFIG_IP_VS_SH_TAB_BITS` = 8).
pub(super) const TABLE_SIZE: usize = 256;
const TABLE_BITS: u32 = 8;
/// Marks an empty bucket (the service has no servers).
const EMPTY: u32 = u32::MAX;

/// The kernel's `hash_32(key, 8)`: multiplicative hashing with the golden ratio.
fn hash8(key: u32) -> usize {
    (key.wrapping_mul(0x61C8_8647) >> (32 - TABLE_BITS)) as usize
}

/// The 32-bit value IPVS's sh, dh and mh schedulers hash for an address (`addr_fold` in
/// `ip_vs_sh_hashkey`, `ip_vs_dh_hashkey`, `ip_vs_mh_hashkey`): an IPv4 address as its
/// host-order integer; an IPv6 address folded to the xor of its four 32-bit words. (The kernel
/// xors the big-endian words and then converts to host order; byte order commutes with xor,
/// so this is the same value.) Addresses whose words xor alike share every bucket, as in IPVS.
pub(super) fn addr_fold(addr: IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let x = u128::from(a);
            (x >> 96) as u32 ^ (x >> 64) as u32 ^ (x >> 32) as u32 ^ x as u32
        }
    }
}

/// What sh and mh hash for a client: its port (0 without `sh-port`/`mh-port`) plus its
/// [folded](addr_fold) address, as integers. sh's bucket is `hash8` of it (plus the probe's
/// offset with `sh-fallback`); mh's slot is `hsiphash` of it plus the offset. For an IPv4
/// client this is the value `pick_sh` and Maglev's `addr_port` compute today.
pub(super) fn source_key(addr: IpAddr, port: u16) -> u32 {
    u32::from(port).wrapping_add(addr_fold(addr))
}

/// sh's bucket for client `addr` and `port` (0 without `sh-port`): `ip_vs_sh_hashkey` with
/// offset 0.
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "the IPv6 schedulers' input (issue 15), not wired yet"
    )
)]
pub(super) fn sh_bucket(addr: IpAddr, port: u16) -> usize {
    hash8(source_key(addr, port))
}

/// dh's bucket for destination `addr` (the VIP): `ip_vs_dh_hashkey`.
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "the IPv6 schedulers' input (issue 15), not wired yet"
    )
)]
pub(super) fn dh_bucket(addr: IpAddr) -> usize {
    hash8(addr_fold(addr))
}

/// 256 buckets, each the index of a server (or [`EMPTY`]).
#[derive(Clone, Debug)]
pub(super) struct BucketTable {
    buckets: [u32; TABLE_SIZE],
}

impl BucketTable {
    /// sh's table: each server fills `weight` consecutive buckets in turn.
    pub(super) fn weighted(dests: &[SchedDest]) -> BucketTable {
        let mut buckets = [EMPTY; TABLE_SIZE];
        if !dests.is_empty() {
            let (mut cur, mut filled) = (0usize, 0u32);
            for b in buckets.iter_mut() {
                *b = cur as u32;
                filled += 1;
                if filled >= dests.get(cur).map_or(0, |d| d.weight) {
                    cur = (cur + 1) % dests.len();
                    filled = 0;
                }
            }
        }
        BucketTable { buckets }
    }

    /// dh's table: one bucket per server in turn, whatever the weights.
    pub(super) fn unweighted(dests: &[SchedDest]) -> BucketTable {
        let mut buckets = [EMPTY; TABLE_SIZE];
        if !dests.is_empty() {
            for (i, b) in buckets.iter_mut().enumerate() {
                *b = (i % dests.len()) as u32;
            }
        }
        BucketTable { buckets }
    }

    /// The server of a bucket, None if empty.
    fn get(&self, bucket: usize) -> Option<usize> {
        match self.buckets.get(bucket % TABLE_SIZE) {
            Some(&i) if i != EMPTY => Some(i as usize),
            _ => None,
        }
    }

    /// Source hashing.
    pub(super) fn pick_sh(
        &self,
        flow: &FlowKey,
        opts: SchedOptions,
        dests: &[SchedDest],
    ) -> Option<usize> {
        let port = if opts.hash_port { flow.sport } else { 0 };
        let h = hash8(u32::from(port).wrapping_add(u32::from(flow.saddr)));
        let available = |i: usize| dests.get(i).is_some_and(SchedDest::is_available);
        let first = self.get(h)?;
        if available(first) {
            return Some(first);
        }
        if !opts.fallback {
            return None;
        }
        // ip_vs_sh_get_fallback: probe bucket (roffset + h) for roffset = h, h + 1, ... (mod 256).
        for offset in 0..TABLE_SIZE {
            let roffset = (offset + h) % TABLE_SIZE;
            let i = self.get(roffset + h)?;
            if available(i) {
                return Some(i);
            }
        }
        None
    }

    /// Destination hashing.
    pub(super) fn pick_dh(&self, flow: &FlowKey, dests: &[SchedDest]) -> Option<usize> {
        let i = self.get(hash8(u32::from(flow.daddr)))?;
        dests.get(i)?.is_available().then_some(i)
    }

    #[cfg(test)]
    pub(super) fn buckets(&self) -> &[u32; TABLE_SIZE] {
        &self.buckets
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use super::super::testutil::*;
    use super::super::{SchedOptions, Scheduler};
    use super::*;
    use crate::model::SchedulerKind;

    fn count(table: &BucketTable, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &b in table.buckets() {
            c[b as usize] += 1;
        }
        c
    }

    #[test]
    fn hash8_is_the_kernels_hash_32() {
        // hash_32(val, 8) = (val * 0x61C88647) >> 24.
        assert_eq!(hash8(0), 0);
        assert_eq!(hash8(1), 0x61);
        assert_eq!(
            hash8(0xc0a8_0001),
            ((0xc0a8_0001u64 * 0x61C8_8647) as u32 >> 24) as usize
        );
    }

    #[test]
    fn sh_table_gives_buckets_in_proportion_to_weight() {
        let d = dests(&[3, 1]);
        let t = BucketTable::weighted(&d);
        assert_eq!(&t.buckets()[..8], &[0, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(count(&t, 2), [192, 64]);
        // Weight 0 still takes one bucket per round, as in the kernel.
        let d = dests(&[2, 0, 1]);
        assert_eq!(
            &BucketTable::weighted(&d).buckets()[..8],
            &[0, 0, 1, 2, 0, 0, 1, 2]
        );
    }

    #[test]
    fn dh_table_ignores_weights() {
        let d = dests(&[3, 1, 1]);
        let t = BucketTable::unweighted(&d);
        assert_eq!(&t.buckets()[..6], &[0, 1, 2, 0, 1, 2]);
        assert_eq!(count(&t, 3), [86, 85, 85]);
    }

    #[test]
    fn sh_is_stable_across_rebuilds_and_spreads_by_weight() {
        let d = dests(&[1, 1, 2]);
        let s1 = sched(SchedulerKind::Sh, &d);
        let s2 = sched(SchedulerKind::Sh, &dests(&[1, 1, 2]));
        let mut c = [0usize; 3];
        for i in 0..25600u32 {
            let f = flow(Ipv4Addr::from(0x0a00_0000 + i), 1);
            let p = s1.pick(&f, &d).unwrap();
            assert_eq!(s2.pick(&f, &d), Some(p));
            assert_eq!(s1.pick(&flow(f.saddr, 999), &d), Some(p), "port ignored");
            c[p] += 1;
        }
        // 1:1:2, within 1% for consecutive addresses.
        for (got, ideal) in c.iter().zip([6400, 6400, 12800]) {
            assert!(got.abs_diff(ideal) * 100 < ideal, "{c:?}");
        }
    }

    #[test]
    fn sh_port_flag_hashes_the_source_port_too() {
        let d = dests(&[1, 1, 1, 1]);
        let opts = SchedOptions {
            hash_port: true,
            ..SchedOptions::default()
        };
        let s = Scheduler::new(SchedulerKind::Sh, &d, Arc::default(), opts);
        let a = Ipv4Addr::new(203, 0, 113, 9);
        let picks: std::collections::HashSet<_> = (0..64)
            .map(|p| s.pick(&flow(a, 1000 + p), &d).unwrap())
            .collect();
        assert_eq!(picks.len(), 4);
    }

    #[test]
    fn sh_without_fallback_fails_when_the_server_is_down() {
        let d = dests(&[1, 1]);
        let s = sched(SchedulerKind::Sh, &d);
        let f = flow(Ipv4Addr::new(203, 0, 113, 9), 1);
        let p = s.pick(&f, &d).unwrap();
        overload(&d[p]);
        assert_eq!(s.pick(&f, &d), None);
    }

    #[test]
    fn sh_fallback_moves_only_the_flows_of_the_unavailable_server() {
        let d = dests(&[1, 1, 1]);
        let opts = SchedOptions {
            fallback: true,
            ..SchedOptions::default()
        };
        let s = Scheduler::new(SchedulerKind::Sh, &d, Arc::default(), opts);
        let flows: Vec<_> = (0..1000u32)
            .map(|i| flow(Ipv4Addr::from(0x0a01_0000 + i * 7), 1))
            .collect();
        let before: Vec<_> = flows.iter().map(|f| s.pick(f, &d).unwrap()).collect();
        overload(&d[1]);
        for (f, &b) in flows.iter().zip(&before) {
            let now = s.pick(f, &d).unwrap();
            if b == 1 {
                assert_ne!(now, 1);
                // Deterministic: the same flow falls back to the same server.
                assert_eq!(s.pick(f, &d), Some(now));
            } else {
                assert_eq!(now, b);
            }
        }
        overload(&d[0]);
        overload(&d[2]);
        assert_eq!(s.pick(&flows[0], &d), None);
    }

    #[test]
    fn dh_hashes_the_destination_only() {
        let d = dests(&[1, 1, 1]);
        let s = sched(SchedulerKind::Dh, &d);
        let mut f = flow(Ipv4Addr::new(203, 0, 113, 9), 1);
        let p = s.pick(&f, &d).unwrap();
        for i in 0..100u32 {
            f.saddr = Ipv4Addr::from(i);
            f.sport = i as u16;
            assert_eq!(s.pick(&f, &d), Some(p));
        }
        overload(&d[p]);
        assert_eq!(s.pick(&f, &d), None);
    }

    #[test]
    fn ipv4_inputs_are_the_ones_the_schedulers_hash_today() {
        let mut f = flow(Ipv4Addr::new(203, 0, 113, 9), 4321);
        f.daddr = Ipv4Addr::new(192, 0, 2, 80);
        for port in [0, f.sport] {
            let v4 = u32::from(port).wrapping_add(u32::from(f.saddr));
            assert_eq!(source_key(f.saddr.into(), port), v4);
            assert_eq!(sh_bucket(f.saddr.into(), port), hash8(v4));
        }
        assert_eq!(dh_bucket(f.daddr.into()), hash8(u32::from(f.daddr)));
        // Wraps as the kernel's unsigned sum does.
        assert_eq!(source_key(Ipv4Addr::BROADCAST.into(), 2), 1);
    }

    #[test]
    fn ipv6_addresses_fold_to_the_xor_of_their_words() {
        use std::net::Ipv6Addr;
        let a = Ipv6Addr::new(
            0x2001, 0x0db8, 0x0001, 0x0002, 0x0000, 0x0000, 0x00ab, 0xcdef,
        );
        let fold = 0x2001_0db8 ^ 0x0001_0002 ^ 0x00ab_cdef; // the third word is 0
        assert_eq!(addr_fold(a.into()), fold);
        assert_eq!(source_key(a.into(), 443), fold + 443);
        assert_eq!(sh_bucket(a.into(), 0), hash8(fold));
        assert_eq!(sh_bucket(a.into(), 443), hash8(fold + 443));
        assert_eq!(dh_bucket(a.into()), hash8(fold));
        // Pinned: the bucket IPVS gives this client and this VIP.
        assert_eq!(sh_bucket(a.into(), 0), 0x6d);
        assert_eq!(dh_bucket(a.into()), 0x6d);
        // As in IPVS, addresses whose words xor alike share a bucket: swapping two words, or
        // flipping the same bits in two of them, changes nothing.
        let swapped = Ipv6Addr::new(
            0x0001, 0x0002, 0x2001, 0x0db8, 0x0000, 0x0000, 0x00ab, 0xcdef,
        );
        assert_eq!(addr_fold(swapped.into()), fold);
        let twice = Ipv6Addr::from(u128::from(a) ^ (1 << 100 | 1 << 4));
        assert_eq!(addr_fold(twice.into()), fold);
        // The IPv4-mapped address ::ffff:a.b.c.d is an IPv6 address to IPVS: another fold.
        let v4 = Ipv4Addr::new(203, 0, 113, 9);
        assert_eq!(
            addr_fold(v4.to_ipv6_mapped().into()),
            0x0000_ffff ^ u32::from(v4)
        );
        // A /64's clients spread over the buckets (their interface identifiers differ).
        let buckets: std::collections::HashSet<_> = (0..4096u128)
            .map(|i| sh_bucket(Ipv6Addr::from(u128::from(a) + i * 0x1_0001).into(), 0))
            .collect();
        assert_eq!(buckets.len(), TABLE_SIZE);
    }

    /// Pins the sh/dh mapping: bucket tables and the picks of fixed flows. A change here changes
    /// which real server every existing client is sent to: make it only on purpose.
    #[test]
    fn sh_and_dh_golden_vectors() {
        let d = dests(&[5, 0, 3, 7, 1]);
        let sh = BucketTable::weighted(&d);
        let dh = BucketTable::unweighted(&d);
        assert_eq!(fnv1a(sh.buckets()), 0x5a9a_a054_50f5_8631);
        assert_eq!(
            &sh.buckets()[..16],
            &[0, 0, 0, 0, 0, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3]
        );
        assert_eq!(fnv1a(dh.buckets()), 0x68b2_be79_6501_ea61);

        // (bucket, pick) of 8 fixed flows; 9 = None (the bucket of the weight-0 server).
        let s = sched(SchedulerKind::Sh, &d);
        let dhs = sched(SchedulerKind::Dh, &d);
        let mut sh_picks = Vec::new();
        let mut dh_picks = Vec::new();
        for k in 0..8u32 {
            let mut f = flow(Ipv4Addr::from(0xc633_6401u32.wrapping_mul(k + 1)), 1);
            f.daddr = Ipv4Addr::from(0xc000_0201u32.wrapping_mul(k + 3));
            sh_picks.push((hash8(u32::from(f.saddr)), s.pick(&f, &d)));
            dh_picks.push((hash8(u32::from(f.daddr)), dhs.pick(&f, &d)));
        }
        let some = |v: [(usize, usize); 8]| v.map(|(b, i)| (b, (i != 9).then_some(i)));
        assert_eq!(
            sh_picks,
            some([
                (96, 3),
                (192, 9),
                (33, 4),
                (129, 3),
                (225, 0),
                (66, 3),
                (162, 3),
                (3, 0)
            ])
        );
        assert_eq!(
            dh_picks,
            some([
                (152, 2),
                (203, 3),
                (254, 4),
                (48, 3),
                (99, 4),
                (150, 0),
                (201, 9),
                (252, 2)
            ])
        );
    }
}
