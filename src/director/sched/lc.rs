//! Connection-counting schedulers: lc, wlc, sed, nq (IPVS `ip_vs_lc.c`, `ip_vs_wlc.c`,
//! `ip_vs_sed.c`, `ip_vs_nq.c`).
//!
//! Each walks the servers in list order, skips unavailable ones (weight 0 or overloaded) and
//! keeps the first server with the strictly smallest load, so ties go to the earlier server:
//!
//! - lc: smallest overhead `active * 256 + inactive` ([`DestState::conn_overhead`]);
//! - wlc: smallest `overhead / weight`, compared by cross-multiplication;
//! - sed: smallest `(active + 1) / weight`;
//! - nq: the first idle server (no active connection), else as sed.
//!
//! The counters are read without synchronisation with other workers, as in IPVS: two workers
//! picking at the same instant may both see the same least loaded server.
//!
//! [`DestState::conn_overhead`]: super::DestState::conn_overhead

use super::SchedDest;

/// Available servers with their index, in list order.
fn available(dests: &[SchedDest]) -> impl Iterator<Item = (usize, &SchedDest)> {
    dests.iter().enumerate().filter(|(_, d)| d.is_available())
}

/// The first server minimising `load / weight`; `load` is computed once per server.
fn least_by_ratio(dests: &[SchedDest], load: impl Fn(&SchedDest) -> u64) -> Option<usize> {
    let mut least: Option<(usize, u64, u64)> = None;
    for (i, d) in available(dests) {
        let (h, w) = (load(d), u64::from(d.weight));
        match least {
            // h_least / w_least > h / w, without division (weights are > 0 here). Overheads fit
            // in 41 bits and weights in 32, so the products cannot overflow a u128.
            Some((_, lh, lw))
                if u128::from(lh) * u128::from(w) <= u128::from(h) * u128::from(lw) => {}
            _ => least = Some((i, h, w)),
        }
    }
    least.map(|(i, _, _)| i)
}

/// Least connections.
pub(super) fn pick_lc(dests: &[SchedDest]) -> Option<usize> {
    let mut least: Option<(usize, u64)> = None;
    for (i, d) in available(dests) {
        let h = d.state.conn_overhead();
        match least {
            Some((_, lh)) if lh <= h => {}
            _ => least = Some((i, h)),
        }
    }
    least.map(|(i, _)| i)
}

/// Weighted least connections.
pub(super) fn pick_wlc(dests: &[SchedDest]) -> Option<usize> {
    least_by_ratio(dests, |d| d.state.conn_overhead())
}

/// Shortest expected delay.
pub(super) fn pick_sed(dests: &[SchedDest]) -> Option<usize> {
    least_by_ratio(dests, |d| u64::from(d.state.active()) + 1)
}

/// Never queue: an idle server if there is one, else shortest expected delay.
pub(super) fn pick_nq(dests: &[SchedDest]) -> Option<usize> {
    available(dests)
        .find(|(_, d)| d.state.active() == 0)
        .map(|(i, _)| i)
        .or_else(|| pick_sed(dests))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::super::testutil::*;
    use super::super::SchedDest;
    use crate::model::SchedulerKind;

    fn set(d: &SchedDest, active: u32, inactive: u32) {
        d.state.active.store(active, Ordering::Relaxed);
        d.state.inactive.store(inactive, Ordering::Relaxed);
    }

    fn pick(kind: SchedulerKind, d: &[SchedDest]) -> Option<usize> {
        let f = flow("198.51.100.1".parse().unwrap(), 1);
        sched(kind, d).pick(&f, d)
    }

    #[test]
    fn lc_picks_the_least_overhead() {
        let d = dests(&[1, 1, 1]);
        set(&d[0], 2, 0);
        set(&d[1], 1, 300);
        set(&d[2], 1, 10);
        assert_eq!(pick(SchedulerKind::Lc, &d), Some(2));
        // One active weighs 256 inactive: 1*256+300 > 2*256+0? No: 556 > 512.
        set(&d[2], 3, 0);
        assert_eq!(pick(SchedulerKind::Lc, &d), Some(0));
    }

    #[test]
    fn lc_ignores_weights_but_not_weight_zero() {
        let d = dests(&[100, 1, 0]);
        set(&d[0], 5, 0);
        set(&d[1], 4, 0);
        assert_eq!(pick(SchedulerKind::Lc, &d), Some(1));
    }

    #[test]
    fn lc_ties_go_to_the_first_server() {
        let d = dests(&[1, 1, 1]);
        assert_eq!(pick(SchedulerKind::Lc, &d), Some(0));
        set(&d[0], 1, 0);
        assert_eq!(pick(SchedulerKind::Lc, &d), Some(1));
    }

    #[test]
    fn lc_spreads_flows_evenly_as_counters_grow() {
        let d = dests(&[1, 1, 1]);
        let s = sched(SchedulerKind::Lc, &d);
        let f = flow("198.51.100.1".parse().unwrap(), 1);
        for _ in 0..30 {
            let i = s.pick(&f, &d).unwrap();
            d[i].state.active.fetch_add(1, Ordering::Relaxed);
        }
        assert!(d.iter().all(|x| x.state.active() == 10));
    }

    #[test]
    fn wlc_divides_overhead_by_weight() {
        let d = dests(&[1, 3]);
        set(&d[0], 1, 0); // 256 / 1
        set(&d[1], 2, 0); // 512 / 3
        assert_eq!(pick(SchedulerKind::Wlc, &d), Some(1));
        set(&d[1], 4, 0); // 1024 / 3 > 256
        assert_eq!(pick(SchedulerKind::Wlc, &d), Some(0));
        // Equal ratios: the first server keeps it.
        set(&d[1], 3, 0); // 768 / 3 == 256 / 1
        assert_eq!(pick(SchedulerKind::Wlc, &d), Some(0));
    }

    #[test]
    fn wlc_fills_servers_in_proportion_to_weight() {
        let d = dests(&[1, 2, 3]);
        let s = sched(SchedulerKind::Wlc, &d);
        let f = flow("198.51.100.1".parse().unwrap(), 1);
        for _ in 0..600 {
            let i = s.pick(&f, &d).unwrap();
            d[i].state.active.fetch_add(1, Ordering::Relaxed);
        }
        let got: Vec<u32> = d.iter().map(|x| x.state.active()).collect();
        assert_eq!(got, [100, 200, 300]);
    }

    #[test]
    fn wlc_skips_overloaded_and_weight_zero() {
        let d = dests(&[0, 1, 1]);
        set(&d[2], 50, 0);
        d[1].state.active.store(1, Ordering::Relaxed);
        d[1].state.update_overload(1, 0);
        assert_eq!(pick(SchedulerKind::Wlc, &d), Some(2));
        d[2].state.update_overload(10, 0);
        assert_eq!(pick(SchedulerKind::Wlc, &d), None);
    }

    #[test]
    fn sed_uses_active_plus_one_over_weight() {
        let d = dests(&[1, 3]);
        // Both idle: (0+1)/1 vs (0+1)/3, the heavier server wins (wlc would pick the first).
        assert_eq!(pick(SchedulerKind::Sed, &d), Some(1));
        assert_eq!(pick(SchedulerKind::Wlc, &d), Some(0));
        set(&d[1], 2, 0); // 3/3 vs 1/1: tie, first wins
        assert_eq!(pick(SchedulerKind::Sed, &d), Some(0));
        // Inactive connections do not count for sed.
        set(&d[0], 0, 1000);
        set(&d[1], 3, 0); // 1/1 vs 4/3
        assert_eq!(pick(SchedulerKind::Sed, &d), Some(0));
    }

    #[test]
    fn nq_prefers_an_idle_server() {
        let d = dests(&[10, 1, 1]);
        set(&d[0], 1, 0); // (1+1)/10 is the best expected delay...
        set(&d[1], 0, 500); // ...but server 1 is idle (inactive ones do not count).
        assert_eq!(pick(SchedulerKind::Nq, &d), Some(1));
        assert_eq!(pick(SchedulerKind::Sed, &d), Some(0));
        set(&d[1], 1, 0);
        set(&d[2], 1, 0);
        assert_eq!(pick(SchedulerKind::Nq, &d), Some(0));
    }

    #[test]
    fn nq_does_not_pick_an_idle_but_unavailable_server() {
        let d = dests(&[0, 1, 1]);
        set(&d[2], 0, 0);
        set(&d[1], 5, 0);
        overload(&d[2]); // now active 1, overloaded
        assert_eq!(pick(SchedulerKind::Nq, &d), Some(1));
    }
}
