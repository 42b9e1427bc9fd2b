//! Weighted round robin (IPVS `wrr`).
//!
//! IPVS walks the server list in passes with a current weight `cw`: it starts at
//! `mw = max weight - (gcd - 1)`, gives one flow to each server whose weight is >= `cw` in list
//! order, then lowers `cw` by the gcd of the weights `di`, and starts again at `mw` once `cw`
//! drops to 0 or below. With weights 3, 1 the cycle is A A A B; with 4, 3, 2 it is
//! A, A B, A B C, A B C. Each server appears `weight / gcd` times per cycle.
//!
//! This module precomputes that cycle and indexes it with the service's atomic sequence. The
//! cycle can be long (up to 65535 passes), but consecutive passes with the same `cw` bracket
//! select the same servers, so it is stored as *bands*: a run of identical passes and the
//! servers each of them visits (a band per distinct weight). Looking up a position is a binary
//! search over the bands; skipping unavailable servers is a walk that never takes more than one
//! look at each band.

use std::sync::atomic::AtomicU64;

use super::{claim, SchedDest};

/// The IPVS wrr cycle of one service, compressed into bands.
#[derive(Clone, Debug)]
pub(super) struct WrrTable {
    /// Bands in cycle order (strictly growing `start`).
    bands: Vec<Band>,
    /// Slots in one cycle: the sum of `weight / gcd` over the servers.
    len: u64,
}

/// `passes` consecutive passes that each visit `members` (indexes into the dests, list order).
#[derive(Clone, Debug)]
struct Band {
    /// Position of the band's first slot in the cycle.
    start: u64,
    passes: u64,
    members: Vec<u32>,
}

impl Band {
    fn slots(&self) -> u64 {
        self.passes * self.members.len() as u64
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl WrrTable {
    /// Computes the cycle IPVS's `ip_vs_wrr_schedule` walks for these weights.
    pub(super) fn new(dests: &[SchedDest]) -> WrrTable {
        let weights: Vec<u64> = dests.iter().map(|d| u64::from(d.weight)).collect();
        let di = weights.iter().fold(0, |g, &w| gcd(g, w));
        let max = weights.iter().copied().max().unwrap_or(0);
        if max == 0 {
            return WrrTable {
                bands: Vec::new(),
                len: 0,
            };
        }
        // Pass k runs with cw = mw - k * di, for every k with cw > 0.
        let mw = max - (di - 1);
        let passes = mw.div_ceil(di);
        // The first pass at which a server of weight u joins: the first k with cw <= u.
        let first_pass = |u: u64| (mw.saturating_sub(u)).div_ceil(di);

        let mut distinct: Vec<u64> = weights.iter().copied().filter(|&w| w > 0).collect();
        distinct.sort_unstable_by(|a, b| b.cmp(a));
        distinct.dedup();

        let mut bands = Vec::with_capacity(distinct.len());
        let mut start = 0;
        for (t, &u) in distinct.iter().enumerate() {
            let from = first_pass(u);
            let to = distinct.get(t + 1).map_or(passes, |&next| first_pass(next));
            if to <= from {
                continue;
            }
            let members: Vec<u32> = (0..weights.len())
                .filter(|&i| weights[i] >= u)
                .map(|i| i as u32)
                .collect();
            let band = Band {
                start,
                passes: to - from,
                members,
            };
            start += band.slots();
            bands.push(band);
        }
        WrrTable { bands, len: start }
    }

    /// Slots in one cycle (0 when every weight is 0).
    pub(super) fn cycle_len(&self) -> u64 {
        self.len
    }

    /// Picks the server of the next available slot and advances the shared sequence past it.
    pub(super) fn pick(&self, seq: &AtomicU64, dests: &[SchedDest]) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        claim(seq, |pos| self.find(pos % self.len, dests))
    }

    /// The first slot at or after `pos` (< len) whose server is available, as
    /// `(distance from pos, server index)`, wrapping around the cycle once.
    fn find(&self, pos: u64, dests: &[SchedDest]) -> Option<(u64, usize)> {
        let available = |i: u32| dests.get(i as usize).is_some_and(SchedDest::is_available);
        let b = self
            .bands
            .partition_point(|band| band.start <= pos)
            .checked_sub(1)?;
        let band = self.bands.get(b)?;
        let m = band.members.len() as u64;
        let offset = pos - band.start;
        let (pass, j) = (offset / m, (offset % m) as usize);

        // The rest of the current pass.
        let rest = band.members.get(j..).unwrap_or_default();
        if let Some(k) = rest.iter().position(|&i| available(i)) {
            return Some((k as u64, rest[k] as usize));
        }
        // The next pass of the same band: only its members before `j` are left to try.
        if pass + 1 < band.passes {
            let head = band.members.get(..j).unwrap_or_default();
            if let Some(k) = head.iter().position(|&i| available(i)) {
                return Some((m - j as u64 + k as u64, head[k] as usize));
            }
        }
        // Every member of this band is down: the first available member of a later band, in
        // cycle order, wrapping around to this band's own first pass last.
        let mut distance = band.start + band.slots() - pos;
        for step in 1..=self.bands.len() {
            let next = self.bands.get((b + step) % self.bands.len())?;
            if let Some(k) = next.members.iter().position(|&i| available(i)) {
                return Some((distance + k as u64, next.members[k] as usize));
            }
            distance += next.slots();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::super::testutil::*;
    use super::*;
    use crate::model::SchedulerKind;

    /// A straightforward model of IPVS's wrr cursor (current server, cw, mw, di), written from
    /// the description in the kernel's ip_vs_wrr.c, to check the band table against.
    struct Reference {
        weights: Vec<i64>,
        cl: Option<usize>,
        cw: i64,
        mw: i64,
        di: i64,
    }

    impl Reference {
        fn new(weights: &[u32]) -> Reference {
            let weights: Vec<i64> = weights.iter().map(|&w| i64::from(w)).collect();
            let di = weights.iter().fold(0, |g, &w| gcd(g, w as u64)).max(1) as i64;
            let mw = weights.iter().copied().max().unwrap_or(0) - (di - 1);
            Reference {
                weights,
                cl: None,
                cw: mw,
                mw,
                di,
            }
        }

        /// One IPVS schedule call: scan on from the cursor for an available server with
        /// weight >= cw, lowering cw at each wrap of the list; give up after one whole cycle.
        /// (Giving up leaves the cursor where it was, as the band table does; IPVS moves it.)
        fn pick(&mut self, overloaded: &[bool]) -> Option<usize> {
            if self.mw <= 0 {
                return None;
            }
            let saved = (self.cl, self.cw);
            let n = self.weights.len();
            let cycle: i64 = self.weights.iter().map(|w| w / self.di).sum();
            let mut i = self.cl.map_or(0, |c| c + 1);
            for _ in 0..=(cycle as usize * n + n) {
                if i == n {
                    i = 0;
                    self.cw -= self.di;
                    if self.cw <= 0 {
                        self.cw = self.mw;
                    }
                }
                if self.weights[i] >= self.cw && self.weights[i] > 0 && !overloaded[i] {
                    self.cl = Some(i);
                    return Some(i);
                }
                i += 1;
            }
            (self.cl, self.cw) = saved;
            None
        }
    }

    fn sequence(weights: &[u32], n: usize) -> Vec<usize> {
        let d = dests(weights);
        let s = sched(SchedulerKind::Wrr, &d);
        let f = flow("198.51.100.1".parse().unwrap(), 1);
        (0..n).map(|_| s.pick(&f, &d).unwrap()).collect()
    }

    #[test]
    fn wrr_3_1_is_a_a_a_b() {
        assert_eq!(sequence(&[3, 1], 8), [0, 0, 0, 1, 0, 0, 0, 1]);
    }

    #[test]
    fn wrr_4_3_2_follows_the_ipvs_passes() {
        // cw = 4: A; cw = 3: A B; cw = 2: A B C; cw = 1: A B C.
        assert_eq!(sequence(&[4, 3, 2], 9), [0, 0, 1, 0, 1, 2, 0, 1, 2]);
        let d = dests(&[4, 3, 2]);
        assert_eq!(WrrTable::new(&d).cycle_len(), 9);
    }

    #[test]
    fn wrr_steps_by_the_gcd() {
        // di = 2, mw = 3: cw = 3: A; cw = 1: A B.
        assert_eq!(sequence(&[4, 2], 6), [0, 0, 1, 0, 0, 1]);
        // Weights 100 and 50 give the same cycle as 2 and 1.
        assert_eq!(sequence(&[100, 50], 6), sequence(&[2, 1], 6));
    }

    #[test]
    fn wrr_3_1_gives_exactly_3_to_1_over_400_picks() {
        let d = dests(&[3, 1]);
        let s = sched(SchedulerKind::Wrr, &d);
        assert_eq!(counts(&s, &d, 400), [300, 100, 0]);
    }

    #[test]
    fn wrr_from_two_threads_keeps_exact_totals() {
        let d = dests(&[3, 1]);
        let s = sched(SchedulerKind::Wrr, &d);
        let total = counts_from_two_threads(&s, &d, 200);
        assert_eq!(total, [300, 100, 0]);
        assert_eq!(s.state().position(), 400);
    }

    #[test]
    fn wrr_never_picks_weight_zero() {
        let d = dests(&[0, 2, 0, 1]);
        let s = sched(SchedulerKind::Wrr, &d);
        assert_eq!(counts(&s, &d, 300), [0, 200, 0, 100, 0]);
    }

    #[test]
    fn wrr_all_weights_zero_picks_nothing() {
        let d = dests(&[0, 0]);
        let s = sched(SchedulerKind::Wrr, &d);
        assert_eq!(counts(&s, &d, 5), [0, 0, 5]);
    }

    #[test]
    fn wrr_skips_an_overloaded_server_and_resumes_after_it_recovers() {
        let d = dests(&[3, 2, 1]);
        overload(&d[0]);
        let s = sched(SchedulerKind::Wrr, &d);
        // Cycle A, A B, A B C; without A: B, B C, B, ...
        let f = flow("198.51.100.1".parse().unwrap(), 1);
        let got: Vec<_> = (0..3).map(|_| s.pick(&f, &d)).collect();
        assert_eq!(got, [1, 1, 2].map(Some));
        d[0].state.active.store(0, Ordering::Relaxed);
        d[0].state.update_overload(1, 0);
        let got: Vec<_> = (0..6).map(|_| s.pick(&f, &d)).collect();
        assert_eq!(got, [0, 0, 1, 0, 1, 2].map(Some));
    }

    #[test]
    fn wrr_matches_the_ipvs_cursor_model_with_servers_going_up_and_down() {
        // A small deterministic generator, so the test needs no dependency.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rand = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for round in 0..300 {
            let n = 1 + rand(6) as usize;
            let weights: Vec<u32> = (0..n)
                .map(|_| match rand(4) {
                    0 => 0,
                    1 => 1 + rand(5) as u32,
                    2 => 10 * (1 + rand(4) as u32),
                    _ => 1 + rand(300) as u32,
                })
                .collect();
            let d = dests(&weights);
            let s = sched(SchedulerKind::Wrr, &d);
            let mut model = Reference::new(&weights);
            let f = flow("198.51.100.1".parse().unwrap(), 1);
            let mut down = vec![false; n];
            for step in 0..400 {
                if rand(10) == 0 {
                    let i = rand(n as u64) as usize;
                    down[i] = !down[i];
                    d[i].state
                        .active
                        .store(u32::from(down[i]), Ordering::Relaxed);
                    d[i].state.update_overload(1, 0);
                }
                assert_eq!(
                    s.pick(&f, &d),
                    model.pick(&down),
                    "round {round} step {step} weights {weights:?} down {down:?}"
                );
            }
        }
    }

    #[test]
    fn wrr_cycle_with_large_distinct_weights_stays_compact() {
        let weights: Vec<u32> = (0..100).map(|i| 65535 - i * 7).collect();
        let d = dests(&weights);
        let t = WrrTable::new(&d);
        assert_eq!(
            t.cycle_len(),
            weights.iter().map(|&w| u64::from(w)).sum::<u64>()
        );
        assert_eq!(t.bands.len(), 100);
    }
}
