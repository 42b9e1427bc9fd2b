//! `vrrp_sync_group`: instances that change state together, with keepalived's semantics
//! (`vrrp_sync.c`): one member in FAULT puts every member in FAULT until no member is in its
//! own fault any more; a member becoming MASTER brings the others to MASTER; a member
//! becoming BACKUP brings the others to BACKUP.
//!
//! Sans-IO like the instances: the driver reports every [`Action::Transition`] of a member
//! with [`SyncGroup::handle_transition`] and, when it answers a state, calls
//! [`Instance::sync_to`] with it on every member (the reporter included: it is a no-op where
//! nothing changes). Transitions the group caused come back with reason
//! [`reason::SYNC_GROUP`] and are only recorded, so there is no feedback loop.
//!
//! Known gap: a member already held in FAULT by the group whose own fault then sets emits no
//! transition, so the group does not know it is down on its own; when the other fault clears
//! the group goes BACKUP while that member stays in FAULT (keepalived keeps the group in
//! FAULT).
//!
//! [`Action::Transition`]: super::machine::Action::Transition
//! [`Instance::sync_to`]: super::machine::Instance::sync_to

use super::config::SyncGroupConfig;
use super::machine::{reason, State};

/// One member as the group last heard of it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Member {
    name: String,
    state: State,
    /// In FAULT of its own (not imposed by the group).
    own_fault: bool,
}

/// The group state of one `vrrp_sync_group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncGroup {
    name: String,
    members: Vec<Member>,
    state: State,
}

impl SyncGroup {
    /// A group in INIT with the configured members.
    pub fn new(cfg: &SyncGroupConfig) -> SyncGroup {
        SyncGroup {
            name: cfg.name.clone(),
            members: cfg
                .members
                .iter()
                .map(|name| Member {
                    name: name.clone(),
                    state: State::Init,
                    own_fault: false,
                })
                .collect(),
            state: State::Init,
        }
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The group's state (for its notify scripts and listings).
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether `instance` is a member.
    pub fn contains(&self, instance: &str) -> bool {
        self.members.iter().any(|m| m.name == instance)
    }

    /// The member names, in config order.
    pub fn members(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.name.as_str())
    }

    /// Records that `member` entered `to` for `reason`; returns the state every member must
    /// be synced to, if any. Unknown members, INIT, and transitions the group caused
    /// ([`reason::SYNC_GROUP`]) only update the record.
    pub fn handle_transition(&mut self, member: &str, to: State, why: &str) -> Option<State> {
        let m = self.members.iter_mut().find(|m| m.name == member)?;
        m.state = to;
        if why == reason::SYNC_GROUP {
            return None;
        }
        m.own_fault = to == State::Fault;
        if to == State::Init {
            if self.members.iter().all(|m| m.state == State::Init) {
                self.state = State::Init;
            }
            return None;
        }
        if self.members.iter().any(|m| m.own_fault) {
            // One member down keeps the whole group down; a member that came back while
            // another is still down is sent back to FAULT.
            let changed = self.state != State::Fault;
            self.state = State::Fault;
            return (changed || to != State::Fault).then_some(State::Fault);
        }
        if self.state == to {
            return None;
        }
        self.state = to;
        Some(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> SyncGroup {
        SyncGroup::new(&SyncGroupConfig {
            name: "G1".into(),
            members: vec!["VI_1".into(), "VI_2".into()],
            notify: Default::default(),
        })
    }

    #[test]
    fn master_and_backup_spread() {
        let mut g = group();
        assert_eq!(
            g.handle_transition("VI_1", State::Backup, reason::INIT),
            Some(State::Backup)
        );
        assert_eq!(
            g.handle_transition("VI_2", State::Backup, reason::INIT),
            None
        );
        assert_eq!(
            g.handle_transition("VI_2", State::Master, reason::MASTER_DOWN),
            Some(State::Master)
        );
        // VI_1 follows; its transition is recorded only.
        assert_eq!(
            g.handle_transition("VI_1", State::Master, reason::SYNC_GROUP),
            None
        );
        assert_eq!(g.state(), State::Master);
        assert_eq!(
            g.handle_transition("VI_1", State::Backup, reason::HIGHER_PRIORITY),
            Some(State::Backup)
        );
        assert_eq!(
            g.handle_transition("nope", State::Fault, reason::FAULT),
            None
        );
        assert!(g.contains("VI_2") && !g.contains("nope"));
        assert_eq!(g.members().collect::<Vec<_>>(), ["VI_1", "VI_2"]);
    }

    #[test]
    fn one_fault_holds_all_down_until_every_fault_clears() {
        let mut g = group();
        g.handle_transition("VI_1", State::Master, reason::MASTER_DOWN);
        assert_eq!(
            g.handle_transition("VI_1", State::Fault, reason::FAULT),
            Some(State::Fault)
        );
        assert_eq!(
            g.handle_transition("VI_2", State::Fault, reason::SYNC_GROUP),
            None
        );
        // VI_2 faults on its own too, then VI_1 clears: still FAULT, VI_1 is sent back.
        assert_eq!(
            g.handle_transition("VI_2", State::Fault, reason::FAULT),
            None
        );
        assert_eq!(
            g.handle_transition("VI_1", State::Backup, reason::FAULT_CLEARED),
            Some(State::Fault)
        );
        assert_eq!(
            g.handle_transition("VI_1", State::Fault, reason::SYNC_GROUP),
            None
        );
        // VI_2 clears: the group comes back as BACKUP.
        assert_eq!(
            g.handle_transition("VI_2", State::Backup, reason::FAULT_CLEARED),
            Some(State::Backup)
        );
        assert_eq!(g.state(), State::Backup);
    }

    #[test]
    fn init_when_all_stopped() {
        let mut g = group();
        g.handle_transition("VI_1", State::Backup, reason::INIT);
        g.handle_transition("VI_2", State::Backup, reason::INIT);
        assert_eq!(
            g.handle_transition("VI_1", State::Init, reason::SHUTDOWN),
            None
        );
        assert_eq!(g.state(), State::Backup);
        assert_eq!(
            g.handle_transition("VI_2", State::Init, reason::SHUTDOWN),
            None
        );
        assert_eq!(g.state(), State::Init);
    }
}
