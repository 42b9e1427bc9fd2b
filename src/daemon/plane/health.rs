//! The health checkers' edits over the configured table, and the control plane as the health
//! monitor's [`HealthPlane`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::{ControlPlane, PlaneError};
use crate::director::probe_pin::ProbePins;
use crate::health::config::HealthConfig;
use crate::health::{Health, HealthPlane, Sorry};
use crate::model::{DestConfig, Forward, ServiceKey, ServiceSet};
use crate::time::Clock;

/// The health checkers' edits, applied over the configured table at every publish, so that
/// `adm` edits and reloads of the configured table keep them.
#[derive(Default)]
pub struct HealthOverlay {
    pub(super) dests: HashMap<(ServiceKey, IpAddr, u16), Health>,
    pub(super) sorry: HashMap<ServiceKey, Sorry>,
}

impl HealthOverlay {
    /// Records the health of real server `addr:port` of `service` (port 0 = the service's;
    /// matched in [`HealthOverlay::apply`] by [`DestConfig::port_in`](crate::model::DestConfig::port_in)). Returns the previous health.
    pub(super) fn set_dest(
        &mut self,
        service: ServiceKey,
        addr: impl Into<IpAddr>,
        port: u16,
        h: Health,
    ) -> Health {
        let k = (service, addr.into(), service.port_or_own(port));
        let old = match h {
            Health::Up => self.dests.remove(&k),
            h => self.dests.insert(k, h),
        };
        old.unwrap_or(Health::Up)
    }

    /// The table the data path gets: `set` with the health edits, and the real servers it
    /// holds ([`Registry::build_with_held`]): those out because they are down, of services
    /// with `expire_nodest_conn = false`.
    pub(super) fn apply(&self, set: &ServiceSet) -> (ServiceSet, Vec<(ServiceKey, DestConfig)>) {
        let mut out = set.clone();
        let mut held = Vec::new();
        if self.dests.is_empty() && self.sorry.is_empty() {
            return (out, held);
        }
        for svc in &mut out.services {
            let key = svc.key;
            if !svc.policy.expire_nodest_conn {
                held.extend(
                    svc.dests
                        .iter()
                        .filter(|d| {
                            self.dests.get(&(key, d.addr, d.port_in(key))) == Some(&Health::Down)
                        })
                        .map(|d| (key, d.clone())),
                );
            }
            let forward = svc.dests.first().map(|d| d.forward);
            let sorry = self.sorry.get(&key);
            if sorry.is_some_and(|s| s.active) {
                svc.dests.clear();
            }
            svc.dests
                .retain_mut(|d| match self.dests.get(&(key, d.addr, d.port_in(key))) {
                    None | Some(Health::Up) => true,
                    Some(Health::Down) => false,
                    Some(Health::Weight(w)) => {
                        d.weight = *w;
                        true
                    }
                });
            if let Some(s) = sorry {
                let present = svc
                    .dests
                    .iter()
                    .any(|d| d.addr == IpAddr::V4(*s.addr.ip()) && d.port == s.addr.port());
                if (s.active || s.inhibit) && !present {
                    svc.dests.push(DestConfig {
                        addr: IpAddr::V4(*s.addr.ip()),
                        port: s.addr.port(),
                        weight: u32::from(s.active),
                        forward: forward.unwrap_or_else(|| Forward::tunnel(Default::default())),
                        u_threshold: 0,
                        l_threshold: 0,
                    });
                }
            }
        }
        (out, held)
    }
}

impl HealthPlane for ControlPlane {
    type Error = PlaneError;

    fn set_health_config(&self, health: HealthConfig) {
        if let Ok(mut h) = self.health_config.lock() {
            *h = (h.0 + 1, health);
        }
    }

    fn health_generation(&self) -> u64 {
        self.health_config.lock().map(|h| h.0).unwrap_or(0)
    }

    fn health_config(&self) -> (u64, HealthConfig) {
        self.health_config
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
    }

    fn set_dest_health(
        &self,
        service: ServiceKey,
        addr: IpAddr,
        port: u16,
        health: Health,
    ) -> Result<bool, PlaneError> {
        let mut st = self.state.lock().map_err(|_| PlaneError::Poisoned)?;
        let old = st.health.set_dest(service, addr, port, health);
        if old == health {
            return Ok(false);
        }
        let (set, timeouts) = (st.set.clone(), st.timeouts);
        if let Err(e) = self.publish(&mut st, set, timeouts) {
            st.health.set_dest(service, addr, port, old);
            return Err(e);
        }
        Ok(true)
    }

    fn set_sorry_server(
        &self,
        service: ServiceKey,
        sorry: Option<Sorry>,
    ) -> Result<bool, PlaneError> {
        let mut st = self.state.lock().map_err(|_| PlaneError::Poisoned)?;
        let old = st.health.sorry.get(&service).copied();
        if old == sorry {
            return Ok(false);
        }
        match sorry {
            Some(s) => st.health.sorry.insert(service, s),
            None => st.health.sorry.remove(&service),
        };
        let (set, timeouts) = (st.set.clone(), st.timeouts);
        if let Err(e) = self.publish(&mut st, set, timeouts) {
            match old {
                Some(s) => st.health.sorry.insert(service, s),
                None => st.health.sorry.remove(&service),
            };
            return Err(e);
        }
        Ok(true)
    }

    fn probe_pins(&self) -> Arc<ProbePins> {
        self.shared.probe_pins.clone()
    }

    fn clock(&self) -> Clock {
        self.clock
    }

    fn configured(&self) -> ServiceSet {
        self.state
            .lock()
            .map(|st| st.set.clone())
            .unwrap_or_default()
    }

    fn accept_probe_replies(&self, iface: &str) -> Result<(), PlaneError> {
        ControlPlane::accept_probe_replies(self, iface)
    }

    fn record_check(
        &self,
        service: ServiceKey,
        addr: IpAddr,
        port: u16,
        check: &'static str,
        took: std::time::Duration,
    ) {
        self.check_durations
            .record(service, addr, port, check, took);
    }
}
