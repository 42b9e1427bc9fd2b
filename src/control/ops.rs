//! What an `adm` command does to the service table: the model's [`Edit`].
//!
//! The table edits themselves, their checks and ipvsadm's error texts live in
//! [`crate::model`] ([`ServiceSet::apply`](crate::model::ServiceSet::apply),
//! [`EditError`](crate::model::EditError)); a parsed [`Command`](crate::control::adm::Command)
//! holds its [`Edit`] ([`Command::Edit`](crate::control::adm::Command::Edit)). This module
//! keeps the names the rest of the crate used before the model existed.

pub use crate::model::{
    Applied, BatchError, Edit, Timeouts, HOST_NETMASK, MAX_THRESHOLD, MAX_TIMEOUT, MAX_WEIGHT,
};

/// Why a command could not be applied: the model's [`EditError`](crate::model::EditError),
/// under the name `adm` gave it.
pub use crate::model::EditError as AdmError;

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::control::adm::{parse, Command, ServiceOptions};
    use crate::encap::{Tunnel, TunnelType};
    use crate::model::{
        DestConfig, Forward, Persistence, Protocol, SchedulerKind, ServiceKey, ServiceSet,
    };

    fn command(line: &str) -> Command {
        let args: Vec<std::ffi::OsString> = line.split_whitespace().map(Into::into).collect();
        parse(&args).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    fn cmd(line: &str) -> Edit {
        match command(line) {
            Command::Edit(edit) => edit,
            other => panic!("{line}: not an edit: {other:?}"),
        }
    }

    fn apply_all(set: &mut ServiceSet, lines: &[&str]) -> Result<(), AdmError> {
        for l in lines {
            set.apply(&cmd(l))?;
        }
        Ok(())
    }

    fn key(vip: [u8; 4], port: u16) -> ServiceKey {
        ServiceKey {
            vip: Ipv4Addr::from(vip).into(),
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
                netmask: HOST_NETMASK.into()
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
        let policy = crate::model::ExpirePolicy {
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
            Forward::Tunnel(Tunnel::Gue {
                port: 7000,
                csum: true
            })
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
            (Ipv4Addr::new(10, 0, 1, 2).into(), 80)
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
            addr: Ipv4Addr::new(10, 0, 1, 1).into(),
            port: 8080,
            weight: 1,
            forward: Forward::tunnel(TunnelType::Ipip),
            u_threshold: 0,
            l_threshold: 0,
        };
        let service = key([10, 0, 0, 1], 80);
        let add = |dest: &DestConfig| Edit::AddServer {
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
            set.apply(&Edit::AddService(zero_port)),
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
        let set: ServiceSet = ServiceSet::default();
        assert_eq!(command("-L -n").edit(), None);
        assert_eq!(command("-S").edit(), None);
        assert_eq!(set, ServiceSet::default());
    }
}
