//! Round robin (IPVS `rr`).
//!
//! IPVS keeps a cursor on the last server picked and gives the next flow to the first available
//! server after it, in list order. Here the cursor is the service's atomic sequence taken modulo
//! the number of servers: slot `s` is server `s % n`, and a pick claims the first available slot
//! at or after the current position, consuming the unavailable ones it skips, so that with A, B,
//! C and B down the order is A, C, A, C as in IPVS.

use std::sync::atomic::AtomicU64;

use super::{claim, SchedDest};

/// Picks the next available server in list order.
pub(super) fn pick(seq: &AtomicU64, dests: &[SchedDest]) -> Option<usize> {
    let n = dests.len() as u64;
    if n == 0 {
        return None;
    }
    claim(seq, |pos| {
        let start = pos % n;
        (0..n).find_map(|skip| {
            let i = ((start + skip) % n) as usize;
            let d = dests.get(i)?;
            d.is_available().then_some((skip, i))
        })
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use super::super::testutil::*;
    use super::super::{SchedOptions, SchedState, Scheduler};
    use crate::model::SchedulerKind;

    fn order(s: &Scheduler, d: &[super::SchedDest], n: usize) -> Vec<Option<usize>> {
        let f = flow("198.51.100.1".parse().unwrap(), 1);
        (0..n).map(|_| s.pick(&f, d)).collect()
    }

    #[test]
    fn rr_alternates_exactly() {
        let d = dests(&[1, 1]);
        let s = sched(SchedulerKind::Rr, &d);
        let got = order(&s, &d, 6);
        assert_eq!(got, [0, 1, 0, 1, 0, 1].map(Some));
    }

    #[test]
    fn rr_ignores_weights_other_than_zero() {
        let d = dests(&[5, 1, 3]);
        let s = sched(SchedulerKind::Rr, &d);
        assert_eq!(counts(&s, &d, 300), [100, 100, 100, 0]);
    }

    #[test]
    fn rr_skips_unavailable_servers_like_the_ipvs_cursor() {
        let d = dests(&[1, 1, 1, 0]);
        overload(&d[1]);
        let s = sched(SchedulerKind::Rr, &d);
        assert_eq!(order(&s, &d, 6), [0, 2, 0, 2, 0, 2].map(Some));
        // The overloaded server comes back: the cycle resumes in list order.
        d[1].state.active.store(0, Ordering::Relaxed);
        d[1].state.update_overload(1, 0);
        assert_eq!(order(&s, &d, 3), [0, 1, 2].map(Some));
    }

    #[test]
    fn rr_with_nothing_available_picks_nothing_and_keeps_its_position() {
        let d = dests(&[1, 0]);
        overload(&d[0]);
        let s = sched(SchedulerKind::Rr, &d);
        assert_eq!(order(&s, &d, 3), [None, None, None]);
        assert_eq!(s.state().position(), 0);
    }

    #[test]
    fn rr_position_survives_a_snapshot_swap() {
        let d = dests(&[1, 1, 1]);
        let state = Arc::new(SchedState::new());
        let s1 = Scheduler::new(
            SchedulerKind::Rr,
            &d,
            state.clone(),
            SchedOptions::default(),
        );
        assert_eq!(order(&s1, &d, 2), [0, 1].map(Some));
        let s2 = Scheduler::new(SchedulerKind::Rr, &d, state, SchedOptions::default());
        assert_eq!(order(&s2, &d, 2), [2, 0].map(Some));
    }

    #[test]
    fn rr_from_two_threads_keeps_the_global_sequence_exact() {
        let d = dests(&[1, 1, 1]);
        let s = sched(SchedulerKind::Rr, &d);
        let total = counts_from_two_threads(&s, &d, 300);
        assert_eq!(total, [200, 200, 200, 0]);
        assert_eq!(s.state().position(), 600);
    }
}
