//! Second chance's side map: the flows a worker picked up mid-way whose previous-table server
//! differs from theirs, and that server ([`crate::encap::chance`]).
//!
//! Only such flows pay for an entry. An entry is stale once its flow left the connection table
//! or went to the recorded server; stale entries are found by [`Chances::prune`], which looks
//! at a bounded number of entries per call, oldest first, from a queue kept beside the map —
//! never a scan of the whole map on the worker's timeout tick, however many flows a burst of
//! mid-flow packets (a spoofed-ACK flood inside the window, say) marked. The map holds at
//! most one entry per flow of the connection table, plus the stale ones not yet pruned.

use std::collections::{HashMap, VecDeque};

use crate::director::conn::{ConnKey, DestId};

/// The second choices of one worker's flows.
#[derive(Debug, Default)]
pub struct Chances {
    /// Flow → (previous server, the sequence number of its queue entry).
    map: HashMap<ConnKey, (DestId, u64)>,
    /// Flows in the order they were marked; an entry whose sequence number no longer matches
    /// the map's was replaced or removed and is dropped when it comes up.
    queue: VecDeque<(ConnKey, u64)>,
    next_seq: u64,
}

impl Chances {
    /// Whether no flow has a second choice (the packet path then skips every lookup).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Flows with a second choice.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Entries queued for pruning (flows with a second choice plus stale entries).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The second choice of `key`'s flow.
    pub fn get(&self, key: &ConnKey) -> Option<DestId> {
        self.map.get(key).map(|&(p, _)| p)
    }

    /// Records `previous` as the second choice of `key`'s flow.
    pub fn insert(&mut self, key: ConnKey, previous: DestId) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.map.insert(key, (previous, seq));
        self.queue.push_back((key, seq));
    }

    /// Forgets `key`'s second choice (its flow is being replaced).
    pub fn remove(&mut self, key: &ConnKey) {
        self.map.remove(key);
    }

    /// Looks at up to `budget` queued entries, oldest first: drops those `keep` refuses (the
    /// flow is gone or goes to that server now) and those replaced since, and queues the rest
    /// again.
    pub fn prune(&mut self, budget: usize, mut keep: impl FnMut(&ConnKey, DestId) -> bool) {
        for _ in 0..budget.min(self.queue.len()) {
            let Some((key, seq)) = self.queue.pop_front() else {
                break;
            };
            match self.map.get(&key) {
                Some(&(p, s)) if s == seq => {
                    if keep(&key, p) {
                        self.queue.push_back((key, seq));
                    } else {
                        self.map.remove(&key);
                    }
                }
                // Replaced (a newer entry is queued) or removed: nothing to do.
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::net::Ipv4Addr;

    fn key(i: u32) -> ConnKey {
        ConnKey::new(
            6,
            Ipv4Addr::from(0x0a00_0000 + i),
            5000,
            Ipv4Addr::new(10, 1, 0, 1),
            80,
        )
    }

    #[test]
    fn prune_does_bounded_work_and_drops_only_stale_entries() {
        let mut c = Chances::default();
        const N: u32 = 20_000;
        for i in 0..N {
            c.insert(key(i), DestId::new((i % 7) as u16, 0));
        }
        // Re-marking a flow replaces its entry; the old queue entry is dropped when it comes up.
        for i in 0..100 {
            c.remove(&key(i));
            c.insert(key(i), DestId::new(9, 0));
        }
        assert_eq!(c.len(), N as usize);
        assert_eq!(c.queued(), N as usize + 100);
        // Flows whose number is a multiple of 3 are gone from the connection table.
        let gone: HashSet<ConnKey> = (0..N).filter(|i| i % 3 == 0).map(key).collect();
        let mut looked = 0;
        c.prune(1000, |k, _| {
            looked += 1;
            !gone.contains(k)
        });
        assert_eq!(
            looked,
            1000 - 100,
            "the 100 replaced entries come first, unchecked"
        );
        assert_eq!(c.queued(), N as usize + 100 - 1000 + (900 - 300));
        // Enough calls visit everything once; what stays is exactly the live flows.
        for _ in 0..30 {
            c.prune(1000, |k, _| !gone.contains(k));
        }
        let live = (0..N).filter(|i| i % 3 != 0).count();
        assert_eq!(c.len(), live);
        assert_eq!(c.queued(), live);
        assert_eq!(c.get(&key(1)), Some(DestId::new(9, 0)));
        assert_eq!(c.get(&key(3)), None);
        assert_eq!(c.get(&key(201)), None);
        assert_eq!(c.get(&key(202)), Some(DestId::new((202 % 7) as u16, 0)));
    }

    #[test]
    fn a_removed_entry_never_comes_back() {
        let mut c = Chances::default();
        c.insert(key(1), DestId::new(1, 0));
        c.remove(&key(1));
        assert!(c.is_empty());
        c.prune(10, |_, _| panic!("a removed entry is not checked"));
        assert_eq!(c.queued(), 0);
    }
}
