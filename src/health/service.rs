//! The service-level state machine: quorum with hysteresis (keepalived's `quorum`,
//! `hysteresis`, `quorum_up`, `quorum_down`, `sorry_server`).
//!
//! Event in: [`QuorumState::handle_weights`] with the sum of the weights of the alive real
//! servers. Actions out ([`QuorumState::poll_action`]): [`QuorumAction::Lost`] when the sum falls
//! below `quorum - hysteresis` (or to 0), [`QuorumAction::Gained`] when it reaches
//! `quorum + hysteresis` again. The monitor turns them into: sorry server in (and the alive real
//! servers out, as keepalived does) and `quorum_down` run on loss; the reverse on gain.
//!
//! `omega` (keepalived: "on daemon shutdown consider quorum and RS down notifiers"): at
//! shutdown [`QuorumState::handle_shutdown`] reports a service that still has its quorum as
//! [`QuorumAction::Lost`], so its `quorum_down` runs once more on the way out.

use std::collections::VecDeque;

/// A quorum change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuorumAction {
    /// The alive weight fell below `quorum - hysteresis`: use the sorry server, run
    /// `quorum_down`.
    Lost {
        /// The alive weight.
        alive: u64,
    },
    /// The alive weight reached `quorum + hysteresis`: drop the sorry server, run `quorum_up`.
    Gained {
        /// The alive weight.
        alive: u64,
    },
}

/// Whether a service has its quorum.
#[derive(Clone, Debug)]
pub struct QuorumState {
    quorum: u64,
    hysteresis: u64,
    up: bool,
    actions: VecDeque<QuorumAction>,
}

impl QuorumState {
    /// The state of a service whose alive servers weigh `alive` at start. A service that
    /// starts without its quorum reports [`QuorumAction::Lost`] at once.
    pub fn new(quorum: u32, hysteresis: u32, alive: u64) -> QuorumState {
        let mut s = QuorumState {
            quorum: quorum.into(),
            hysteresis: hysteresis.into(),
            up: true,
            actions: VecDeque::new(),
        };
        if alive == 0 || alive < s.quorum {
            s.up = false;
            s.actions.push_back(QuorumAction::Lost { alive });
        }
        s
    }

    /// Whether the service has its quorum.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The alive servers now weigh `alive`.
    pub fn handle_weights(&mut self, alive: u64) {
        if self.up {
            if alive == 0 || alive < self.quorum.saturating_sub(self.hysteresis) {
                self.up = false;
                self.actions.push_back(QuorumAction::Lost { alive });
            }
        } else if alive > 0 && alive >= self.quorum + self.hysteresis {
            self.up = true;
            self.actions.push_back(QuorumAction::Gained { alive });
        }
    }

    /// The monitor is stopping. With `omega`, a service that has its quorum loses it (its
    /// `quorum_down` is to run); without, nothing changes (keepalived's default).
    pub fn handle_shutdown(&mut self, omega: bool, alive: u64) {
        if omega && self.up {
            self.up = false;
            self.actions.push_back(QuorumAction::Lost { alive });
        }
    }

    /// The next quorum change, if any.
    pub fn poll_action(&mut self) -> Option<QuorumAction> {
        self.actions.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_with_hysteresis() {
        // quorum 5, hysteresis 2: lost below 3, regained at 7.
        let mut q = QuorumState::new(5, 2, 10);
        assert!(q.is_up());
        assert_eq!(q.poll_action(), None);
        for (alive, expect) in [
            (5, None),
            (3, None),
            (2, Some(QuorumAction::Lost { alive: 2 })),
            (5, None),
            (6, None),
            (7, Some(QuorumAction::Gained { alive: 7 })),
            (4, None),
            (0, Some(QuorumAction::Lost { alive: 0 })),
        ] {
            q.handle_weights(alive);
            assert_eq!(q.poll_action(), expect, "alive {alive}");
        }
    }

    #[test]
    fn default_quorum_one_is_lost_when_all_servers_are_down() {
        let mut q = QuorumState::new(1, 0, 2);
        q.handle_weights(1);
        assert_eq!(q.poll_action(), None);
        q.handle_weights(0);
        assert_eq!(q.poll_action(), Some(QuorumAction::Lost { alive: 0 }));
        q.handle_weights(1);
        assert_eq!(q.poll_action(), Some(QuorumAction::Gained { alive: 1 }));
    }

    #[test]
    fn starting_without_quorum_reports_it_lost() {
        let mut q = QuorumState::new(1, 0, 0);
        assert!(!q.is_up());
        assert_eq!(q.poll_action(), Some(QuorumAction::Lost { alive: 0 }));
    }

    #[test]
    fn omega_loses_the_quorum_at_shutdown_once() {
        let mut q = QuorumState::new(1, 0, 2);
        q.handle_shutdown(false, 2);
        assert_eq!(
            q.poll_action(),
            None,
            "without omega nothing runs at shutdown"
        );
        assert!(q.is_up());
        q.handle_shutdown(true, 2);
        assert_eq!(q.poll_action(), Some(QuorumAction::Lost { alive: 2 }));
        q.handle_shutdown(true, 2);
        assert_eq!(
            q.poll_action(),
            None,
            "already lost: quorum_down does not run twice"
        );
        // A service that lost its quorum before shutdown ran quorum_down then.
        let mut lost = QuorumState::new(1, 0, 0);
        assert!(lost.poll_action().is_some());
        lost.handle_shutdown(true, 0);
        assert_eq!(lost.poll_action(), None);
    }

    #[test]
    fn hysteresis_larger_than_quorum_still_loses_at_zero() {
        let mut q = QuorumState::new(1, 5, 10);
        q.handle_weights(0);
        assert_eq!(q.poll_action(), Some(QuorumAction::Lost { alive: 0 }));
    }
}
