//! The VRRP driver: one thread running every `vrrp_instance`'s sans-IO state machine
//! ([`crate::vrrp::machine`]) over real sockets, scripts and the ARP responder.
//!
//! - Adverts are sent and received on raw IP-protocol-112 sockets, one pair per interface and
//!   family ([`VrrpSocket`](crate::sys::vrrp::VrrpSocket): 224.0.0.18 or the `unicast_peer`s,
//!   TTL 255, TOS 0xc0), from `unicast_src_ip` or the interface's first address. An instance
//!   whose VIPs are IPv6 runs VRRPv3 over IPv6: ff02::12, hop limit 255, from the interface's
//!   link-local address.
//! - A MASTER's VIPs are answered by the ARP and NDP responder ([`Announcer`]: ARP requests
//!   for IPv4 VIPs, Neighbor Solicitations for IPv6 ones); entering MASTER sends gratuitous
//!   ARPs, or unsolicited Neighbor Advertisements (override set, to ff02::1) for IPv6 VIPs, as
//!   keepalived does (`garp_master_*` apply to both); leaving it stops the answers at once.
//!   The VIPs are never addresses of the host (they are routed into the TUN): nothing is left
//!   behind by a crash, the answers die with the process.
//! - `track_interface` (polled every 100 ms; the instance's own interface is always tracked)
//!   and `vrrp_script` results become FAULT or a priority delta ([`track`]).
//! - `notify*` scripts run on every transition, never waited for ([`scripts`]).
//! - `vrrp_sync_group`: a member in FAULT puts the others in FAULT.
//! - Connection sync ([`HaLink`]): the sync instance's MASTER state is published; no instance
//!   preempts before the bulk resync is done.
//! - On shutdown (SIGTERM) every MASTER sends one advert with priority 0, so a BACKUP takes
//!   over at once, and stops answering ARP.
//!
//! [`VrrpStatus`] is what `tunlb adm --vrrp` and `/metrics` read.

mod driver;
pub mod scripts;
pub mod track;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::control::vrrp_status::VrrpEntry;
use crate::daemon::announce::Announcer;
use crate::daemon::ha::HaLink;
use crate::time::{Clock, Instant};
use crate::vrrp::config::VrrpConfig;

pub use crate::vrrp::machine::State;

/// The counters of one instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceCounters {
    /// Adverts sent (one per destination).
    pub adverts_sent: u64,
    /// Adverts accepted.
    pub adverts_received: u64,
    /// Adverts refused, by reason (`crate::vrrp::wire::Refusal::as_str`); adverts of other
    /// virtual routers are not counted.
    pub refused: BTreeMap<&'static str, u64>,
    /// Transitions, by the state entered.
    pub transitions: BTreeMap<&'static str, u64>,
}

/// One instance as last published by the driver.
#[derive(Clone, Debug)]
struct Shown {
    entry: VrrpEntry,
    state: State,
    last: Option<Instant>,
    counters: InstanceCounters,
}

/// What the driver publishes for `adm --vrrp` and `/metrics`.
pub struct VrrpStatus {
    clock: Clock,
    shown: Mutex<Vec<Shown>>,
}

impl VrrpStatus {
    fn new(clock: Clock) -> VrrpStatus {
        VrrpStatus {
            clock,
            shown: Mutex::new(Vec::new()),
        }
    }

    /// The instances for `adm --vrrp`, in config order.
    pub fn entries(&self) -> Vec<VrrpEntry> {
        let now = self.clock.now();
        let Ok(shown) = self.shown.lock() else {
            return Vec::new();
        };
        shown
            .iter()
            .map(|s| VrrpEntry {
                since_ms: s.last.map(|t| now.saturating_since(t).as_millis() as u64),
                adverts_sent: s.counters.adverts_sent,
                adverts_received: s.counters.adverts_received,
                ..s.entry.clone()
            })
            .collect()
    }

    /// The instances for `/metrics`.
    pub fn metrics(&self) -> Vec<crate::metrics::VrrpSample> {
        let Ok(shown) = self.shown.lock() else {
            return Vec::new();
        };
        shown
            .iter()
            .map(|s| crate::metrics::VrrpSample {
                instance: s.entry.name.clone(),
                state: state_number(s.state),
                transitions: s
                    .counters
                    .transitions
                    .iter()
                    .map(|(k, v)| (*k, *v))
                    .collect(),
                adverts_sent: s.counters.adverts_sent,
                adverts_received: s.counters.adverts_received,
                refused: s.counters.refused.iter().map(|(k, v)| (*k, *v)).collect(),
            })
            .collect()
    }

    /// The state of instance `name`, if configured.
    pub fn state_of(&self, name: &str) -> Option<State> {
        let shown = self.shown.lock().ok()?;
        shown.iter().find(|s| s.entry.name == name).map(|s| s.state)
    }

    fn publish(&self, shown: Vec<Shown>) {
        if let Ok(mut s) = self.shown.lock() {
            *s = shown;
        }
    }
}

/// `tunlb_vrrp_state`'s value: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT.
pub fn state_number(s: State) -> u8 {
    s.as_u8()
}

/// The running driver.
pub struct VrrpHandle {
    status: Arc<VrrpStatus>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl VrrpHandle {
    /// What `adm --vrrp` and `/metrics` read.
    pub fn status(&self) -> Arc<VrrpStatus> {
        self.status.clone()
    }

    /// Stops the driver: every MASTER sends priority 0 and stops answering ARP, `notify_stop`
    /// runs; returns when the thread is done (well within the 2 s shutdown budget).
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for VrrpHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Opens the sockets of every instance of `cfg` (errors name the instance and interface) and
/// starts the driver thread.
pub fn start(
    cfg: &VrrpConfig,
    announcer: Arc<Announcer>,
    ha: Arc<HaLink>,
    clock: Clock,
) -> anyhow::Result<VrrpHandle> {
    let status = Arc::new(VrrpStatus::new(clock));
    let stop = Arc::new(AtomicBool::new(false));
    let mut driver = driver::Driver::new(cfg, announcer, ha, clock, status.clone())?;
    let s = stop.clone();
    let thread = std::thread::Builder::new()
        .name("tunlb-vrrp".into())
        .spawn(move || driver.run(&s))?;
    Ok(VrrpHandle {
        status,
        stop,
        thread: Some(thread),
    })
}

/// The address adverts of an instance leave from: `unicast_src_ip`, else the interface's
/// first IPv4 address or, for an IPv6 instance, its link-local address.
fn source_address(unicast_src: Option<IpAddr>, ipv6: bool, iface: &str) -> std::io::Result<IpAddr> {
    match unicast_src {
        Some(a) => Ok(a),
        None if ipv6 => crate::sys::iface::ipv6_link_local(iface).map(IpAddr::V6),
        None => crate::sys::iface::ipv4(iface).map(IpAddr::V4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn status_shows_time_since_the_transition_and_the_metric_values() {
        let clock = Clock::new();
        let status = VrrpStatus::new(clock);
        let mut counters = InstanceCounters {
            adverts_sent: 4,
            ..InstanceCounters::default()
        };
        counters.transitions.insert("MASTER", 1);
        counters.refused.insert("ttl", 2);
        status.publish(vec![Shown {
            entry: VrrpEntry {
                name: "VI_1".into(),
                state: "MASTER".into(),
                priority: 100,
                base_priority: 100,
                vrid: 51,
                interface: "eth0".into(),
                version: 2,
                master: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 150, 11))),
                since_ms: None,
                vips: vec![IpAddr::V4(Ipv4Addr::new(192, 168, 150, 100))],
                adverts_sent: 0,
                adverts_received: 0,
            },
            state: State::Master,
            last: Some(Instant::ZERO),
            counters,
        }]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let e = &status.entries()[0];
        assert!(e.since_ms.unwrap() >= 20, "{e:?}");
        assert_eq!(e.adverts_sent, 4);
        let m = &status.metrics()[0];
        assert_eq!((m.state, m.adverts_sent), (2, 4));
        assert_eq!(m.transitions, vec![("MASTER", 1)]);
        assert_eq!(m.refused, vec![("ttl", 2)]);
        assert_eq!(status.state_of("VI_1"), Some(State::Master));
        assert_eq!(status.state_of("VI_2"), None);
    }
}
