//! Services and real servers in a line each: the only file that spells out the model's
//! structs, so a change to them is fixed here once.

use std::net::Ipv4Addr;

use crate::encap::Tunnel;

use super::{
    DestConfig, ExpirePolicy, Forward, Persistence, Protocol, SchedulerKind, ServiceConfig,
    ServiceKey, TunnelType, DEFAULT_GUE_PORT,
};

/// A real server of weight `weight` reached by `forward`, on the service's port.
pub(crate) fn dest(addr: Ipv4Addr, weight: u32, forward: Forward) -> DestConfig {
    DestConfig {
        addr,
        port: 0,
        weight,
        forward,
        u_threshold: 0,
        l_threshold: 0,
    }
}

/// A NAT real server listening on `port`.
pub(crate) fn nat_dest(addr: Ipv4Addr, port: u16, weight: u32) -> DestConfig {
    DestConfig {
        port,
        ..dest(addr, weight, Forward::Nat)
    }
}

/// TUN mode through `tun` (GUE on the default port, no checksum), with `gre_key` for GRE.
pub(crate) fn tunnel(tun: TunnelType, gre_key: Option<u32>) -> Forward {
    Forward::Tunnel(Tunnel::new(tun, DEFAULT_GUE_PORT, false, gre_key))
}

/// A service `vip:port` over `proto` with scheduler `sched` and real servers `dests`.
pub(crate) fn service(
    proto: Protocol,
    vip: Ipv4Addr,
    port: u16,
    sched: SchedulerKind,
    dests: Vec<DestConfig>,
) -> ServiceConfig {
    ServiceConfig {
        key: ServiceKey { vip, port, proto },
        scheduler: sched,
        persistence: None,
        mss_clamp: None,
        dests,
        policy: ExpirePolicy::default(),
    }
}

/// The service's policy with `expire_nodest_conn` set to `expire`.
pub(crate) fn with_expire_nodest_conn(mut svc: ServiceConfig, expire: bool) -> ServiceConfig {
    svc.policy.expire_nodest_conn = expire;
    svc
}

/// The service made persistent (`-p timeout`, one template per client address).
pub(crate) fn with_persistence(mut svc: ServiceConfig, timeout_secs: u32) -> ServiceConfig {
    svc.persistence = Some(Persistence {
        timeout: timeout_secs,
        netmask: Ipv4Addr::BROADCAST,
    });
    svc
}
