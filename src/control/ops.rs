//! What an `adm` command does to the service table, without any IO.
//!
//! [`ServiceSet::apply`] is the authority on table edits: the director calls it (through
//! [`ServiceSet::apply_batch`]) for every mutating request, whoever sent it, and answers with the
//! [`AdmError`] text ipvsadm would print for the same kernel error.

use std::net::Ipv4Addr;

use crate::control::adm::{Command, ServiceOptions};
use crate::director::service::{DestConfig, Forward, ServiceConfig, ServiceKey, ServiceSet};

/// The default persistence netmask: every client address is its own group.
pub const HOST_NETMASK: Ipv4Addr = Ipv4Addr::BROADCAST;

/// The largest timeout `--set` and `-p` accept: 31 days, as ipvsadm.
pub const MAX_TIMEOUT: u32 = 86_400 * 31;

/// The largest weight a real server can have (`-w`).
pub const MAX_WEIGHT: u32 = 65_535;

/// The largest connection threshold (`-x`, `-y`): `INT_MAX`, as ipvsadm.
pub const MAX_THRESHOLD: u32 = i32::MAX as u32;

/// Idle timeouts of connection entries, in seconds (`--set tcp tcpfin udp`, `-L --timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Timeouts {
    /// Established TCP connections.
    pub tcp: u32,
    /// TCP connections after the client's FIN.
    pub tcpfin: u32,
    /// UDP flows.
    pub udp: u32,
}

impl Default for Timeouts {
    /// IPVS's defaults: 900 s, 120 s, 300 s.
    fn default() -> Self {
        Timeouts {
            tcp: 900,
            tcpfin: 120,
            udp: 300,
        }
    }
}

impl Timeouts {
    /// Applies a `--set`: as in IPVS, a zero leaves that timeout unchanged.
    pub fn update(&mut self, set: &Timeouts) {
        if set.tcp != 0 {
            self.tcp = set.tcp;
        }
        if set.tcpfin != 0 {
            self.tcpfin = set.tcpfin;
        }
        if set.udp != 0 {
            self.udp = set.udp;
        }
    }
}

/// Why a command could not be applied. `Display` is ipvsadm's text for the same kernel error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum AdmError {
    /// `-A` for a service that exists (EEXIST).
    #[error("Service already exists")]
    ServiceExists,
    /// `-E`, `-D`, `-Z`, `-L` for a service that does not exist (ESRCH).
    #[error("No such service")]
    NoSuchService,
    /// `-a`, `-e`, `-d` on a service that does not exist (ESRCH).
    #[error("Service not defined")]
    ServiceNotDefined,
    /// `-a` for a real server the service already has (EEXIST).
    #[error("Destination already exists")]
    DestExists,
    /// `-e`, `-d` for a real server the service does not have (ENOENT).
    #[error("No such destination")]
    NoSuchDest,
    /// A weight above 65535, a threshold above `INT_MAX`, or a lower threshold above the upper
    /// one (ERANGE, printed by ipvsadm with `strerror`).
    #[error("Numerical result out of range")]
    OutOfRange,
    /// A port-zero service without `-p`: it would match every port with no reason to.
    #[error("Zero port specified for non-persistent service")]
    ZeroPortNotPersistent,
    /// A tunnel or direct-routing real server on another port than the service's: those modes
    /// cannot change the port (ipvsadm silently overrides it; tunlb refuses).
    #[error(
        "The real server port must equal the virtual service port (or be omitted) \
         with tunneling and direct routing"
    )]
    DestPortMismatch,
    /// A command that does not edit the table (`-L`, `-S`, `-R`, `--save-config`, `--reload`,
    /// `-h`) was given to `apply`.
    #[error("this command does not change the service table")]
    NotATableCommand,
}

/// A batch that failed: which command (0-based) and why. Nothing of the batch was applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct BatchError {
    /// Index of the failing command in the batch.
    pub index: usize,
    /// The error of that command.
    pub error: AdmError,
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

    /// Applies one command to the table, as the IPVS kernel code would, or changes nothing.
    ///
    /// `--set` and `-Z` do not touch the table: they only check their service exists; the
    /// director applies them to its timeouts and counters ([`ServiceSet::apply_batch`] reports
    /// them). Listing, saving, restoring and help are refused with [`AdmError::NotATableCommand`].
    pub fn apply(&mut self, cmd: &Command) -> Result<(), AdmError> {
        match cmd {
            Command::AddService(opts) => {
                check_service(opts)?;
                if self.find(&opts.key).is_some() {
                    return Err(AdmError::ServiceExists);
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
            Command::EditService(opts) => {
                let svc = self.find_mut(&opts.key).ok_or(AdmError::NoSuchService)?;
                check_service(opts)?;
                svc.scheduler = opts.scheduler;
                svc.persistence = opts.persistence;
                svc.mss_clamp = opts.mss_clamp;
                Ok(())
            }
            Command::DeleteService(key) => {
                let before = self.services.len();
                self.services.retain(|s| s.key != *key);
                if self.services.len() == before {
                    return Err(AdmError::NoSuchService);
                }
                Ok(())
            }
            Command::Clear => {
                self.services.clear();
                Ok(())
            }
            Command::AddServer { service, dest } => {
                let svc = self.find_mut(service).ok_or(AdmError::ServiceNotDefined)?;
                let dest = normalize_dest(svc.key, dest)?;
                if svc
                    .dests
                    .iter()
                    .any(|d| d.addr == dest.addr && d.port == dest.port)
                {
                    return Err(AdmError::DestExists);
                }
                svc.dests.push(dest);
                Ok(())
            }
            Command::EditServer { service, dest } => {
                let svc = self.find_mut(service).ok_or(AdmError::ServiceNotDefined)?;
                let dest = normalize_dest(svc.key, dest)?;
                let slot = svc
                    .dests
                    .iter_mut()
                    .find(|d| d.addr == dest.addr && d.port == dest.port)
                    .ok_or(AdmError::NoSuchDest)?;
                *slot = dest;
                Ok(())
            }
            Command::DeleteServer {
                service,
                addr,
                port,
            } => {
                let svc = self.find_mut(service).ok_or(AdmError::ServiceNotDefined)?;
                let port = if *port == 0 { svc.key.port } else { *port };
                let pos = svc
                    .dests
                    .iter()
                    .position(|d| d.addr == *addr && d.port == port)
                    .ok_or(AdmError::NoSuchDest)?;
                svc.dests.remove(pos);
                Ok(())
            }
            Command::Zero(Some(key)) => match self.find(key) {
                Some(_) => Ok(()),
                None => Err(AdmError::NoSuchService),
            },
            Command::Zero(None) | Command::SetTimeouts(_) => Ok(()),
            Command::List(_)
            | Command::Save { .. }
            | Command::Restore
            | Command::SaveConfig { .. }
            | Command::Reload
            | Command::Help
            | Command::Version => Err(AdmError::NotATableCommand),
        }
    }

    /// Applies every command in order, all or nothing (`-R`, and single commands too).
    ///
    /// On success `self` and `timeouts` hold the result and the returned [`Applied`] lists the
    /// counters to zero; on failure neither is changed.
    pub fn apply_batch(
        &mut self,
        timeouts: &mut Timeouts,
        cmds: &[Command],
    ) -> Result<Applied, BatchError> {
        let mut table = self.clone();
        let mut new_timeouts = *timeouts;
        let mut applied = Applied::default();
        for (index, cmd) in cmds.iter().enumerate() {
            table
                .apply(cmd)
                .map_err(|error| BatchError { index, error })?;
            match cmd {
                Command::SetTimeouts(t) => {
                    new_timeouts.update(t);
                    applied.timeouts_changed = true;
                }
                Command::Zero(key) => applied.zero.push(*key),
                _ => {}
            }
        }
        *self = table;
        *timeouts = new_timeouts;
        Ok(applied)
    }
}

/// What the kernel checks when a service is added or edited.
fn check_service(opts: &ServiceOptions) -> Result<(), AdmError> {
    if opts.key.port == 0 && opts.persistence.is_none() {
        return Err(AdmError::ZeroPortNotPersistent);
    }
    if let Some(p) = opts.persistence {
        if p.timeout == 0 || p.timeout > MAX_TIMEOUT {
            return Err(AdmError::OutOfRange);
        }
    }
    Ok(())
}

/// Checks a real server's numbers and fills in its port (0 = the service's).
fn normalize_dest(svc: ServiceKey, dest: &DestConfig) -> Result<DestConfig, AdmError> {
    if dest.weight > MAX_WEIGHT
        || dest.u_threshold > MAX_THRESHOLD
        || dest.l_threshold > MAX_THRESHOLD
        || dest.l_threshold > dest.u_threshold
    {
        return Err(AdmError::OutOfRange);
    }
    let mut dest = dest.clone();
    let keeps_port = matches!(dest.forward, Forward::Tunnel { .. } | Forward::Dr);
    if dest.port == 0 {
        dest.port = svc.port;
    } else if keeps_port && dest.port != svc.port {
        return Err(AdmError::DestPortMismatch);
    }
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::adm::parse;
    use crate::director::service::{Persistence, Protocol, SchedulerKind};
    use crate::encap::TunnelType;

    fn cmd(line: &str) -> Command {
        let args: Vec<std::ffi::OsString> = line.split_whitespace().map(Into::into).collect();
        parse(&args).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    fn apply_all(set: &mut ServiceSet, lines: &[&str]) -> Result<(), AdmError> {
        for l in lines {
            set.apply(&cmd(l))?;
        }
        Ok(())
    }

    fn key(vip: [u8; 4], port: u16) -> ServiceKey {
        ServiceKey {
            vip: Ipv4Addr::from(vip),
            port,
            proto: Protocol::Tcp,
        }
    }

    #[test]
    fn add_service_then_servers() {
        let mut set = ServiceSet::default();
        apply_all(
            &mut set,
            &[
                "-A -t 192.168.150.100:80 -s rr",
                "-a -t 192.168.150.100:80 -r 192.168.150.12 -i",
                "-a -t 192.168.150.100:80 -r 192.168.150.13:80 -i -w 3",
            ],
        )
        .unwrap();
        assert_eq!(set.services.len(), 1);
        let svc = &set.services[0];
        assert_eq!(svc.key, key([192, 168, 150, 100], 80));
        assert_eq!(svc.scheduler, SchedulerKind::Rr);
        assert_eq!(svc.dests.len(), 2);
        assert_eq!(svc.dests[0].port, 80);
        assert_eq!(svc.dests[0].weight, 1);
        assert_eq!(svc.dests[0].forward, Forward::tunnel(TunnelType::Ipip));
        assert_eq!(svc.dests[1].weight, 3);
    }

    #[test]
    fn duplicate_service_is_refused() {
        let mut set = ServiceSet::default();
        apply_all(&mut set, &["-A -t 10.0.0.1:80"]).unwrap();
        let before = set.clone();
        assert_eq!(
            set.apply(&cmd("-A -t 10.0.0.1:80 -s rr")),
            Err(AdmError::ServiceExists)
        );
        assert_eq!(set, before);
        // Same address and port over UDP is another service.
        set.apply(&cmd("-A -u 10.0.0.1:80")).unwrap();
        assert_eq!(set.services.len(), 2);
    }

    #[test]
    fn missing_service_errors_use_ipvsadm_words() {
        let mut set = ServiceSet::default();
        assert_eq!(
            set.apply(&cmd("-E -t 10.0.0.1:80 -s rr")),
            Err(AdmError::NoSuchService)
        );
        assert_eq!(
            set.apply(&cmd("-D -t 10.0.0.1:80")),
            Err(AdmError::NoSuchService)
        );
        assert_eq!(
            set.apply(&cmd("-Z -t 10.0.0.1:80")),
            Err(AdmError::NoSuchService)
        );
        assert_eq!(
            set.apply(&cmd("-a -t 10.0.0.1:80 -r 10.0.1.1")),
            Err(AdmError::ServiceNotDefined)
        );
        assert_eq!(
            set.apply(&cmd("-e -t 10.0.0.1:80 -r 10.0.1.1")),
            Err(AdmError::ServiceNotDefined)
        );
        assert_eq!(
            set.apply(&cmd("-d -t 10.0.0.1:80 -r 10.0.1.1")),
            Err(AdmError::ServiceNotDefined)
        );
        assert_eq!(
            AdmError::ServiceNotDefined.to_string(),
            "Service not defined"
        );
        assert_eq!(AdmError::NoSuchService.to_string(), "No such service");
    }

    #[test]
    fn edit_service_keeps_servers_and_replaces_options() {
        let mut set = ServiceSet::default();
        apply_all(
            &mut set,
            &[
                "-A -t 10.0.0.1:80 -s rr -p 600 -M 255.255.255.0",
                "-a -t 10.0.0.1:80 -r 10.0.1.1 -i",
                "-E -t 10.0.0.1:80 -s wrr",
            ],
        )
        .unwrap();
        let svc = &set.services[0];
        assert_eq!(svc.scheduler, SchedulerKind::Wrr);
        // -E without -p drops persistence, as IPVS does.
        assert_eq!(svc.persistence, None);
        assert_eq!(svc.dests.len(), 1);
        set.apply(&cmd("-E -t 10.0.0.1:80 -p")).unwrap();
        assert_eq!(
            set.services[0].persistence,
            Some(Persistence {
                timeout: 300,
                netmask: HOST_NETMASK
            })
        );
        // -E without -s is back to the default scheduler.
        assert_eq!(set.services[0].scheduler, SchedulerKind::Wlc);
    }

    #[test]
    fn edits_keep_the_expire_policy() {
        let mut set = ServiceSet::default();
        apply_all(&mut set, &["-A -t 10.0.0.1:80 -s rr"]).unwrap();
        assert!(
            set.services[0].policy.is_default(),
            "-A gives IPVS's defaults"
        );
        let policy = crate::director::service::ExpirePolicy {
            expire_nodest_conn: false,
            expire_quiescent_template: true,
        };
        set.services[0].policy = policy;
        apply_all(
            &mut set,
            &[
                "-E -t 10.0.0.1:80 -s wrr -p 60",
                "-a -t 10.0.0.1:80 -r 10.0.1.1 -i",
                "-e -t 10.0.0.1:80 -r 10.0.1.1 -i -w 0",
                "-d -t 10.0.0.1:80 -r 10.0.1.1",
            ],
        )
        .unwrap();
        assert_eq!(
            set.services[0].policy, policy,
            "no ipvsadm option touches it"
        );
    }

    #[test]
    fn delete_service_and_clear() {
        let mut set = ServiceSet::default();
        apply_all(&mut set, &["-A -t 10.0.0.1:80", "-A -t 10.0.0.2:80"]).unwrap();
        set.apply(&cmd("-D -t 10.0.0.1:80")).unwrap();
        assert_eq!(set.services.len(), 1);
        assert_eq!(set.services[0].key, key([10, 0, 0, 2], 80));
        set.apply(&cmd("-C")).unwrap();
        assert!(set.services.is_empty());
    }

    #[test]
    fn duplicate_and_missing_destination() {
        let mut set = ServiceSet::default();
        apply_all(
            &mut set,
            &["-A -t 10.0.0.1:80", "-a -t 10.0.0.1:80 -r 10.0.1.1 -i"],
        )
        .unwrap();
        assert_eq!(
            set.apply(&cmd("-a -t 10.0.0.1:80 -r 10.0.1.1:80 -i -w 5")),
            Err(AdmError::DestExists)
        );
        assert_eq!(
            set.apply(&cmd("-e -t 10.0.0.1:80 -r 10.0.1.2 -i")),
            Err(AdmError::NoSuchDest)
        );
        assert_eq!(
            set.apply(&cmd("-d -t 10.0.0.1:80 -r 10.0.1.2")),
            Err(AdmError::NoSuchDest)
        );
        assert_eq!(
            AdmError::DestExists.to_string(),
            "Destination already exists"
        );
        assert_eq!(AdmError::NoSuchDest.to_string(), "No such destination");
    }

    #[test]
    fn edit_server_replaces_its_config() {
        let mut set = ServiceSet::default();
        apply_all(
            &mut set,
            &[
                "-A -t 10.0.0.1:80",
                "-a -t 10.0.0.1:80 -r 10.0.1.1 -i -w 2 -x 100 -y 50",
                "-e -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gue --tun-port 7000 --tun-csum -w 0",
            ],
        )
        .unwrap();
        let d = &set.services[0].dests[0];
        assert_eq!(d.weight, 0);
        assert_eq!(d.u_threshold, 0);
        assert_eq!(
            d.forward,
            Forward::Tunnel {
                tun_type: TunnelType::Gue,
                tun_port: 7000,
                tun_csum: true,
                gre_key: None
            }
        );
    }

    #[test]
    fn delete_server_by_address_with_or_without_port() {
        let mut set = ServiceSet::default();
        apply_all(
            &mut set,
            &[
                "-A -t 10.0.0.1:80",
                "-a -t 10.0.0.1:80 -r 10.0.1.1 -i",
                "-a -t 10.0.0.1:80 -r 10.0.1.2 -m",
                "-a -t 10.0.0.1:80 -r 10.0.1.2:8080 -m",
            ],
        )
        .unwrap();
        set.apply(&cmd("-d -t 10.0.0.1:80 -r 10.0.1.1")).unwrap();
        set.apply(&cmd("-d -t 10.0.0.1:80 -r 10.0.1.2:8080"))
            .unwrap();
        let dests = &set.services[0].dests;
        assert_eq!(dests.len(), 1);
        assert_eq!(
            (dests[0].addr, dests[0].port),
            (Ipv4Addr::new(10, 0, 1, 2), 80)
        );
    }

    #[test]
    fn thresholds_out_of_order_are_out_of_range() {
        let mut set = ServiceSet::default();
        set.apply(&cmd("-A -t 10.0.0.1:80")).unwrap();
        assert_eq!(
            set.apply(&cmd("-a -t 10.0.0.1:80 -r 10.0.1.1 -i -y 5")),
            Err(AdmError::OutOfRange)
        );
        assert_eq!(
            AdmError::OutOfRange.to_string(),
            "Numerical result out of range"
        );
    }

    #[test]
    fn apply_checks_what_json_clients_could_send() {
        let mut set = ServiceSet::default();
        set.apply(&cmd("-A -t 10.0.0.1:80")).unwrap();
        let mut dest = DestConfig {
            addr: Ipv4Addr::new(10, 0, 1, 1),
            port: 8080,
            weight: 1,
            forward: Forward::tunnel(TunnelType::Ipip),
            u_threshold: 0,
            l_threshold: 0,
        };
        let service = key([10, 0, 0, 1], 80);
        let add = |dest: &DestConfig| Command::AddServer {
            service,
            dest: dest.clone(),
        };
        assert_eq!(set.apply(&add(&dest)), Err(AdmError::DestPortMismatch));
        dest.port = 0;
        dest.weight = 70_000;
        assert_eq!(set.apply(&add(&dest)), Err(AdmError::OutOfRange));
        dest.weight = 1;
        set.apply(&add(&dest)).unwrap();
        assert_eq!(set.services[0].dests[0].port, 80);
        let zero_port = ServiceOptions {
            key: key([10, 0, 0, 9], 0),
            scheduler: SchedulerKind::Rr,
            persistence: None,
            mss_clamp: None,
        };
        assert_eq!(
            set.apply(&Command::AddService(zero_port)),
            Err(AdmError::ZeroPortNotPersistent)
        );
    }

    #[test]
    fn batch_is_all_or_nothing() {
        let mut set = ServiceSet::default();
        let mut timeouts = Timeouts::default();
        set.apply(&cmd("-A -t 10.0.0.1:80")).unwrap();
        let before = set.clone();
        let batch = vec![
            cmd("-A -t 10.0.0.2:80"),
            cmd("--set 100 0 0"),
            cmd("-a -t 10.0.0.2:80 -r 10.0.1.1 -i"),
            cmd("-A -t 10.0.0.1:80"),
        ];
        let err = set.apply_batch(&mut timeouts, &batch).unwrap_err();
        assert_eq!(
            err,
            BatchError {
                index: 3,
                error: AdmError::ServiceExists
            }
        );
        assert_eq!(set, before);
        assert_eq!(timeouts, Timeouts::default());

        let applied = set
            .apply_batch(&mut timeouts, &batch[..3])
            .expect("valid batch");
        assert_eq!(set.services.len(), 2);
        assert_eq!(set.services[1].dests.len(), 1);
        assert!(applied.timeouts_changed);
        assert_eq!(
            timeouts,
            Timeouts {
                tcp: 100,
                tcpfin: 120,
                udp: 300
            }
        );
    }

    #[test]
    fn zero_is_reported_not_applied() {
        let mut set = ServiceSet::default();
        let mut timeouts = Timeouts::default();
        set.apply(&cmd("-A -t 10.0.0.1:80")).unwrap();
        let applied = set
            .apply_batch(&mut timeouts, &[cmd("-Z"), cmd("-Z -t 10.0.0.1:80")])
            .unwrap();
        assert_eq!(applied.zero, vec![None, Some(key([10, 0, 0, 1], 80))]);
    }

    #[test]
    fn listing_is_not_a_table_command() {
        let mut set = ServiceSet::default();
        assert_eq!(set.apply(&cmd("-L -n")), Err(AdmError::NotATableCommand));
        assert_eq!(set.apply(&cmd("-S")), Err(AdmError::NotATableCommand));
    }
}
