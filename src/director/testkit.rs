//! Scaffolding shared by the core's scenario tests (`tests.rs`, `nat_tests.rs`,
//! `snat_tests.rs`): several [`Director`] cores over one shared table driven by hand with a
//! virtual clock, and checks of packets the core rewrote in place.

use std::borrow::Borrow;
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::conn::Timeouts;
use super::{Director, DirectorConfig, Registry, Shared, Snapshot, Verdict};
use crate::fuzzing::emitted;
use crate::model::v4::{DestConfig, ServiceKey, ServiceSet};
use crate::time::Instant;
use crate::wire::{Ipv4Packet, TcpPacket};

/// A director with several worker cores over one shared table.
pub(super) struct Lab {
    pub(super) registry: Registry,
    pub(super) shared: Arc<Shared>,
    pub(super) workers: Vec<Director>,
}

impl Lab {
    /// `workers` cores with the default config over `set`.
    pub(super) fn new(workers: usize, set: impl Borrow<ServiceSet>) -> Lab {
        Lab::with_config(workers, set, DirectorConfig::default())
    }

    /// `workers` cores with `config` over `set`.
    pub(super) fn with_config(
        workers: usize,
        set: impl Borrow<ServiceSet>,
        config: DirectorConfig,
    ) -> Lab {
        let mut registry = Registry::new();
        let snap = registry.build(set.borrow(), &Timeouts::default()).unwrap();
        Lab::from_snapshot(workers, registry, snap, config)
    }

    /// `workers` cores over a snapshot the test finished itself (e.g. with S-NAT rules).
    pub(super) fn from_snapshot(
        workers: usize,
        registry: Registry,
        snap: Snapshot,
        config: DirectorConfig,
    ) -> Lab {
        Lab::from_shared(workers, registry, Shared::new(snap), config)
    }

    /// `workers` cores over shared state the test made itself (e.g. with small [`Limits`]).
    ///
    /// [`Limits`]: super::shared::Limits
    pub(super) fn from_shared(
        workers: usize,
        registry: Registry,
        shared: Shared,
        config: DirectorConfig,
    ) -> Lab {
        let shared = Arc::new(shared);
        let workers = (0..workers)
            .map(|_| Director::new(shared.clone(), config.clone()))
            .collect();
        Lab {
            registry,
            shared,
            workers,
        }
    }

    /// Publishes a new table built from `set`, as the control plane does.
    pub(super) fn publish(&mut self, set: &ServiceSet) {
        let snap = self.registry.build(set, &Timeouts::default()).unwrap();
        self.shared.publish(snap);
    }

    /// Publishes `set` with the real servers in `held` held (down, flows kept), as the
    /// control plane does for services with `expire_nodest_conn = false`.
    pub(super) fn publish_held(&mut self, set: &ServiceSet, held: &[(ServiceKey, DestConfig)]) {
        let snap = self
            .registry
            .build_with_held(set, held, &Timeouts::default())
            .unwrap();
        self.shared.publish(snap);
    }

    /// Hands `pkt` to worker `worker`; every packet the verdict emits is checked by the
    /// etherparse oracle (`fuzzing::emitted::check_verdict`: lengths and checksums, outer and
    /// inner).
    pub(super) fn send(&mut self, worker: usize, now: Instant, pkt: &mut [u8]) -> Verdict {
        let oracle = crate::fuzzing::oracle::check_ipv4;
        let valid = emitted::valid(oracle, pkt);
        let v = self.workers[worker].handle_packet(now, pkt);
        emitted::check_verdict(oracle, valid, &v, pkt);
        v
    }
}

/// The packet after a `Rewrite`, its IPv4 header checksum verified.
pub(super) fn rewritten(v: Verdict, pkt: &[u8]) -> Ipv4Packet<&[u8]> {
    let Verdict::Rewrite { len } = v else {
        panic!("expected Rewrite, got {v:?}")
    };
    let ip = Ipv4Packet::new_checked(&pkt[..len]).unwrap();
    assert!(ip.verify_checksum(), "IPv4 header checksum");
    ip
}

/// Asserts a rewritten TCP packet goes `src:sport -> dst:dport` with valid checksums, and
/// returns its IPv4 view for further checks.
pub(super) fn assert_tcp(
    v: Verdict,
    pkt: &[u8],
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
) -> Ipv4Packet<&[u8]> {
    let ip = rewritten(v, pkt);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (src.0, dst.0));
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((tcp.src_port(), tcp.dst_port()), (src.1, dst.1));
    assert!(tcp.verify_checksum(src.0, dst.0), "TCP checksum");
    ip
}
