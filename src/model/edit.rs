//! [`Edit`]: one change to the service table, and [`ServiceSet::apply`], the one place that
//! applies it.
//!
//! `tunlb adm` sends edits to the director (`-A -E -D -C -a -e -d --set -Z`), a `-R` file is a
//! batch of them, and the director applies every mutating request through
//! [`ServiceSet::apply_batch`], whoever sent it, answering with the [`EditError`] text ipvsadm
//! would print for the same kernel error.

use std::net::IpAddr;

use super::error::{BatchError, EditError};
use super::service::{
    DestConfig, Persistence, SchedulerKind, ServiceConfig, ServiceKey, ServiceSet, Timeouts,
};
use super::validate;

/// The options of `-A` / `-E`: everything about a service but its real servers.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceOptions {
    /// `-t|-u VIP[:PORT]` (no port = port 0, which needs `-p`).
    pub key: ServiceKey,
    /// `-s`, default `wlc`.
    pub scheduler: SchedulerKind,
    /// `-p [TIMEOUT] [-M NETMASK]`.
    pub persistence: Option<Persistence>,
    /// `--mss-clamp N` (tunlb extension).
    pub mss_clamp: Option<u16>,
}

/// One change to the director's table (or its timeouts and counters). The JSON form (what
/// `adm` sends over the control socket) names the variants in snake_case, as ipvsadm's
/// commands were named before this type existed: `add_service`, `add_server`, ...
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Edit {
    /// `-A`: add a virtual service.
    AddService(ServiceOptions),
    /// `-E`: replace a service's options (its real servers stay).
    EditService(ServiceOptions),
    /// `-D`: delete a virtual service.
    DeleteService(ServiceKey),
    /// `-C`: delete every service.
    Clear,
    /// `-a`: add a real server to a service.
    AddServer {
        /// The service.
        service: ServiceKey,
        /// The real server (port 0 = the service's).
        dest: DestConfig,
    },
    /// `-e`: replace a real server's options.
    EditServer {
        /// The service.
        service: ServiceKey,
        /// The real server, found by address and port.
        dest: DestConfig,
    },
    /// `-d`: delete a real server.
    DeleteServer {
        /// The service.
        service: ServiceKey,
        /// The real server's address.
        addr: IpAddr,
        /// The real server's port (0 = the service's).
        port: u16,
    },
    /// `--set TCP TCPFIN UDP`: connection timeouts (0 = unchanged).
    SetTimeouts(Timeouts),
    /// `-Z [-t|-u VIP:PORT]`: zero the counters of one or every service.
    Zero(Option<ServiceKey>),
}

/// What a successful batch asks of the director besides the new table and timeouts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Counters to zero, in order (`-Z`): `None` is every service.
    pub zero: Vec<Option<ServiceKey>>,
    /// True if a `--set` was part of the batch.
    pub timeouts_changed: bool,
}

impl ServiceSet {
    /// The service with this key, if any.
    pub fn find(&self, key: &ServiceKey) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.key == *key)
    }

    fn find_mut(&mut self, key: &ServiceKey) -> Option<&mut ServiceConfig> {
        self.services.iter_mut().find(|s| s.key == *key)
    }

    /// Applies one edit to the table, as the IPVS kernel code would, or changes nothing.
    ///
    /// `--set` and `-Z` do not touch the table: they only check their service exists; the
    /// director applies them to its timeouts and counters ([`ServiceSet::apply_batch`] reports
    /// them).
    pub fn apply(&mut self, edit: &Edit) -> Result<(), EditError> {
        match edit {
            Edit::AddService(opts) => {
                check_service(opts)?;
                if self.find(&opts.key).is_some() {
                    return Err(EditError::ServiceExists);
                }
                self.services.push(ServiceConfig {
                    key: opts.key,
                    scheduler: opts.scheduler,
                    persistence: opts.persistence,
                    mss_clamp: opts.mss_clamp,
                    dests: Vec::new(),
                    policy: Default::default(),
                });
                Ok(())
            }
            Edit::EditService(opts) => {
                let svc = self.find_mut(&opts.key).ok_or(EditError::NoSuchService)?;
                check_service(opts)?;
                svc.scheduler = opts.scheduler;
                svc.persistence = opts.persistence;
                svc.mss_clamp = opts.mss_clamp;
                Ok(())
            }
            Edit::DeleteService(key) => {
                let before = self.services.len();
                self.services.retain(|s| s.key != *key);
                if self.services.len() == before {
                    return Err(EditError::NoSuchService);
                }
                Ok(())
            }
            Edit::Clear => {
                self.services.clear();
                Ok(())
            }
            Edit::AddServer { service, dest } => {
                let svc = self.find_mut(service).ok_or(EditError::ServiceNotDefined)?;
                let dest = normalize_dest(svc.key, dest)?;
                validate::unique_dest(&svc.dests, dest.addr, dest.port)?;
                svc.dests.push(dest);
                Ok(())
            }
            Edit::EditServer { service, dest } => {
                let svc = self.find_mut(service).ok_or(EditError::ServiceNotDefined)?;
                let dest = normalize_dest(svc.key, dest)?;
                let slot = svc
                    .dests
                    .iter_mut()
                    .find(|d| d.addr == dest.addr && d.port == dest.port)
                    .ok_or(EditError::NoSuchDest)?;
                *slot = dest;
                Ok(())
            }
            Edit::DeleteServer {
                service,
                addr,
                port,
            } => {
                let svc = self.find_mut(service).ok_or(EditError::ServiceNotDefined)?;
                let port = if *port == 0 { svc.key.port } else { *port };
                let pos = svc
                    .dests
                    .iter()
                    .position(|d| d.addr == *addr && d.port == port)
                    .ok_or(EditError::NoSuchDest)?;
                svc.dests.remove(pos);
                Ok(())
            }
            Edit::Zero(Some(key)) => match self.find(key) {
                Some(_) => Ok(()),
                None => Err(EditError::NoSuchService),
            },
            Edit::Zero(None) | Edit::SetTimeouts(_) => Ok(()),
        }
    }

    /// Applies every edit in order, all or nothing (`-R`, and single commands too).
    ///
    /// On success `self` and `timeouts` hold the result and the returned [`Applied`] lists the
    /// counters to zero; on failure neither is changed.
    pub fn apply_batch(
        &mut self,
        timeouts: &mut Timeouts,
        edits: &[Edit],
    ) -> Result<Applied, BatchError> {
        let mut table = self.clone();
        let mut new_timeouts = *timeouts;
        let mut applied = Applied::default();
        for (index, edit) in edits.iter().enumerate() {
            table
                .apply(edit)
                .map_err(|error| BatchError { index, error })?;
            match edit {
                Edit::SetTimeouts(t) => {
                    new_timeouts.update(t);
                    applied.timeouts_changed = true;
                }
                Edit::Zero(key) => applied.zero.push(*key),
                _ => {}
            }
        }
        *self = table;
        *timeouts = new_timeouts;
        Ok(applied)
    }
}

/// What the kernel checks when a service is added or edited.
fn check_service(opts: &ServiceOptions) -> Result<(), EditError> {
    validate::service_port(opts.key.port, opts.persistence.as_ref())?;
    if let Some(p) = opts.persistence {
        validate::persistence_timeout(p.timeout)?;
        validate::service_netmask(opts.key.vip, p.netmask)?;
    }
    Ok(())
}

/// Checks a real server's numbers and fills in its port (0 = the service's).
fn normalize_dest(svc: ServiceKey, dest: &DestConfig) -> Result<DestConfig, EditError> {
    validate::weight_and_thresholds(dest.weight, dest.u_threshold, dest.l_threshold)?;
    validate::dest_family(svc.vip, dest.addr, &dest.forward)?;
    let port =
        validate::real_server_port(svc.port, &dest.forward, validate::zero_is_unset(dest.port))?;
    Ok(DestConfig {
        port,
        ..dest.clone()
    })
}
