//! What the health monitor needs from the director's control plane, as a trait the
//! application layer implements (the daemon's `ControlPlane`), so that health checking
//! does not depend on it: the configured table and the health settings to read, up/down/weight
//! and sorry-server edits to apply, the probe pins and clock of the data path for
//! `check_through_tunnel`, and where probe durations are recorded.

use std::net::{IpAddr, SocketAddrV4};
use std::sync::Arc;

use super::config::HealthConfig;
use crate::director::probe_pin::ProbePins;
use crate::model::{ServiceKey, ServiceSet};
use crate::time::Clock;

/// A real server's state as the health checkers see it ([`HealthPlane::set_dest_health`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// In the table with its configured weight.
    Up,
    /// Out of the table. Its flows are forgotten at their next packet (the service's
    /// `expire_nodest_conn`, the default), or, with `expire_nodest_conn = false`, kept and
    /// their packets dropped until it comes back or they time out.
    Down,
    /// In the table with this weight (0 = `inhibit_on_failure`: no new flows, old ones kept;
    /// other values: MISC_CHECK dynamic weights).
    Weight(u32),
}

/// A service's sorry server as the health checkers set it ([`HealthPlane::set_sorry_server`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sorry {
    /// The sorry server.
    pub addr: SocketAddrV4,
    /// In use: the quorum is lost, it replaces the real servers (weight 1).
    pub active: bool,
    /// `sorry_server_inhibit`: while not in use it stays in the table with weight 0.
    pub inhibit: bool,
}

/// The control plane as the health monitor uses it.
pub trait HealthPlane: Send + Sync + 'static {
    /// Why an edit was refused (shown in the log line).
    type Error: std::fmt::Display;

    /// The configured table (without the health checkers' edits).
    fn configured(&self) -> ServiceSet;

    /// Replaces the health checks to run; the generation moves, so the monitor rebuilds its
    /// checkers (keeping the unchanged ones with their state).
    fn set_health_config(&self, health: HealthConfig);

    /// The generation of the health config: it changes at every
    /// [`set_health_config`](Self::set_health_config).
    fn health_generation(&self) -> u64;

    /// The health checks to run and their generation.
    fn health_config(&self) -> (u64, HealthConfig);

    /// Puts real server `addr:port` of `service` up, down or at a weight, over the configured
    /// table, and publishes at once. Returns whether anything changed. The server is matched
    /// by [`DestConfig::port_in`](crate::model::DestConfig::port_in), so port 0 here or in the table means the service's.
    fn set_dest_health(
        &self,
        service: ServiceKey,
        addr: IpAddr,
        port: u16,
        health: Health,
    ) -> Result<bool, Self::Error>;

    /// Sets (or with `None` clears) the sorry server of `service` and publishes. Returns
    /// whether anything changed.
    fn set_sorry_server(
        &self,
        service: ServiceKey,
        sorry: Option<Sorry>,
    ) -> Result<bool, Self::Error>;

    /// The pins of health probes sent through the data path
    /// ([`crate::director::probe_pin`]).
    fn probe_pins(&self) -> Arc<ProbePins>;

    /// The data path's clock (the workers' and the probe pins' deadlines are on it).
    fn clock(&self) -> Clock;

    /// Lets the answers to probes through the data path in on `iface` (loosens a strict
    /// rp_filter there and on `all`, restored on exit).
    fn accept_probe_replies(&self, iface: &str) -> Result<(), Self::Error>;

    /// Records the wall time of one probe (`check`: its label, e.g. `http_get`) of real
    /// server `addr:port` of `service` (`tunlb_check_duration_seconds`).
    fn record_check(
        &self,
        service: ServiceKey,
        addr: IpAddr,
        port: u16,
        check: &'static str,
        took: std::time::Duration,
    );
}
