//! The two-director lab (`tunlb lab up --ha`, `tunlb lab demo --ha`): what is the same for the
//! lab and the namespace tests — the keepalived.conf of each director ([`KeepalivedConf`]),
//! reading a director's VRRP state from `tunlb adm --vrrp --json` ([`vrrp_state`]) — and the
//! demo's [`Timeline`].
//!
//! The layout is the seed's §7: the director 192.168.150.11 runs `vrrp_instance VI_1` as
//! `state MASTER`, priority 100; the spare node .14 becomes the backup director with the same
//! file but `state BACKUP`, priority 50. Both carry the VIP's virtual_server (TUN mode here: the
//! real servers are in the other datacenter) and `lvs_sync_daemon eth0 VI_1`, so the MASTER
//! sends its connections to the BACKUP and a failover keeps them.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// One director's keepalived.conf, seed style: `global_defs`, one `vrrp_instance`, one
/// `virtual_server` with HTTP_GET checks.
#[derive(Clone, Debug, PartialEq)]
pub struct KeepalivedConf {
    /// `router_id` in `global_defs`.
    pub router_id: String,
    /// The instance's name (`VI_1`).
    pub instance: String,
    /// `state MASTER` (true) or `state BACKUP`.
    pub master: bool,
    /// `priority`.
    pub priority: u8,
    /// The VRRP interface (`interface eth0`).
    pub interface: String,
    /// `virtual_router_id`.
    pub vrid: u8,
    /// `advert_int` as written (`1`, `0.1`).
    pub advert_int: String,
    /// `vrrp_version` (2 or 3).
    pub version: u8,
    /// `auth_type PASS` with this `auth_pass` (VRRPv2 only; keepalived ignores it in v3).
    pub auth_pass: Option<String>,
    /// `nopreempt`.
    pub nopreempt: bool,
    /// The VIP, its prefix length on the LAN and the `label`.
    pub vip: (Ipv4Addr, u8),
    /// `lvs_sync_daemon INTERFACE INSTANCE` in `global_defs` when set (connection sync).
    pub sync_interface: Option<String>,
    /// The virtual_server on the VIP, when set.
    pub service: Option<ServiceConf>,
}

/// The `virtual_server` block of [`KeepalivedConf`].
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceConf {
    /// The port.
    pub port: u16,
    /// `lb_algo` (`rr`, `mh`, ...).
    pub algo: String,
    /// `lb_kind` (`TUN`, `DR`, `NAT`).
    pub kind: String,
    /// The real servers (port = the service's); each gets an HTTP_GET check of `/`.
    pub real_servers: Vec<Ipv4Addr>,
    /// Write the HTTP_GET checks (the seed's); without them the real servers are simply up.
    pub checks: bool,
}

impl KeepalivedConf {
    /// The seed's MASTER (`master` true: priority 100) or BACKUP (priority 50) node for `vip`,
    /// VRRPv2 with `auth_pass 1111`, advert_int 1, sync on, no service yet.
    pub fn seed(master: bool, vip: Ipv4Addr) -> KeepalivedConf {
        KeepalivedConf {
            router_id: if master { "LVS_MASTER" } else { "LVS_BACKUP" }.to_owned(),
            instance: "VI_1".to_owned(),
            master,
            priority: if master { 100 } else { 50 },
            interface: "eth0".to_owned(),
            vrid: 51,
            advert_int: "1".to_owned(),
            version: 2,
            auth_pass: Some("1111".to_owned()),
            nopreempt: false,
            vip: (vip, 24),
            sync_interface: Some("eth0".to_owned()),
            service: None,
        }
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let role = if self.master { "MASTER" } else { "BACKUP" };
        let _ = writeln!(
            s,
            "! keepalived.conf of the {role} director (the seed's §7, written by tunlb)"
        );
        let _ = writeln!(s, "global_defs {{");
        let _ = writeln!(s, "    router_id {}", self.router_id);
        let _ = writeln!(s, "    vrrp_version {}", self.version);
        if let Some(dev) = &self.sync_interface {
            let _ = writeln!(
                s,
                "    lvs_sync_daemon {dev} {}    # connection sync",
                self.instance
            );
        }
        let _ = writeln!(s, "}}\n");
        let _ = writeln!(s, "vrrp_instance {} {{", self.instance);
        let _ = writeln!(s, "    state {role}");
        let _ = writeln!(s, "    interface {}", self.interface);
        let _ = writeln!(s, "    virtual_router_id {}", self.vrid);
        let _ = writeln!(s, "    priority {}", self.priority);
        let _ = writeln!(s, "    advert_int {}", self.advert_int);
        if self.nopreempt {
            let _ = writeln!(s, "    nopreempt");
        }
        if let (Some(pass), 2) = (&self.auth_pass, self.version) {
            let _ = writeln!(s, "    authentication {{");
            let _ = writeln!(s, "        auth_type PASS");
            let _ = writeln!(s, "        auth_pass {pass}");
            let _ = writeln!(s, "    }}");
        }
        let (vip, len) = self.vip;
        let _ = writeln!(s, "    virtual_ipaddress {{");
        let _ = writeln!(
            s,
            "        {vip}/{len} dev {dev} label {dev}:3",
            dev = self.interface
        );
        let _ = writeln!(s, "    }}");
        let _ = writeln!(s, "}}");
        if let Some(svc) = &self.service {
            let _ = writeln!(s);
            let _ = writeln!(s, "virtual_server {vip} {} {{", svc.port);
            let _ = writeln!(s, "    delay_loop 6");
            let _ = writeln!(s, "    lb_algo {}", svc.algo);
            let _ = writeln!(s, "    lb_kind {}", svc.kind);
            let _ = writeln!(s, "    protocol TCP");
            for rs in &svc.real_servers {
                let _ = writeln!(s, "    real_server {rs} {} {{", svc.port);
                let _ = writeln!(s, "        weight 1");
                if svc.checks {
                    let _ = writeln!(s, "        HTTP_GET {{");
                    let _ = writeln!(s, "            url {{");
                    let _ = writeln!(s, "                path /");
                    let _ = writeln!(s, "                status_code 200");
                    let _ = writeln!(s, "            }}");
                    let _ = writeln!(s, "            connect_timeout 3");
                    let _ = writeln!(s, "            retry 3");
                    let _ = writeln!(s, "            delay_before_retry 3");
                    let _ = writeln!(s, "        }}");
                }
                let _ = writeln!(s, "    }}");
            }
            let _ = writeln!(s, "}}");
        }
        s
    }
}

/// The state (`MASTER`, `BACKUP`, `FAULT`, `INIT`) of `instance` in the output of
/// `tunlb adm --vrrp --json`: the first JSON object anywhere in it whose `name` (or `instance`)
/// is `instance` and that has a string `state`.
pub fn vrrp_state(json: &str, instance: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
    find_instance(&value, instance)
        .and_then(|o| o.get("state"))
        .and_then(|s| s.as_str())
        .map(|s| s.to_ascii_uppercase())
}

/// The JSON object describing `instance` in `value` (searched depth first).
pub fn find_instance<'a>(
    value: &'a serde_json::Value,
    instance: &str,
) -> Option<&'a serde_json::Map<String, serde_json::Value>> {
    match value {
        serde_json::Value::Object(map) => {
            let named = ["name", "instance"]
                .iter()
                .any(|k| map.get(*k).and_then(|v| v.as_str()) == Some(instance));
            if named && map.get("state").is_some_and(|s| s.is_string()) {
                return Some(map);
            }
            map.values().find_map(|v| find_instance(v, instance))
        }
        serde_json::Value::Array(items) => items.iter().find_map(|v| find_instance(v, instance)),
        _ => None,
    }
}

/// What happened when, relative to the start of the demo's failover part.
#[derive(Debug)]
pub struct Timeline {
    start: Instant,
    events: Vec<(Duration, String)>,
}

impl Timeline {
    /// Starts the clock now.
    pub fn new() -> Timeline {
        Timeline::starting_at(Instant::now())
    }

    /// Starts the clock at `start`.
    pub fn starting_at(start: Instant) -> Timeline {
        Timeline {
            start,
            events: Vec::new(),
        }
    }

    /// Records `what` as happening now; returns the line `t+x.xs what` (to print it too).
    pub fn event(&mut self, what: impl Into<String>) -> String {
        self.event_at(self.start.elapsed(), what)
    }

    /// Records `what` at `at` after the start; returns its line.
    pub fn event_at(&mut self, at: Duration, what: impl Into<String>) -> String {
        let what = what.into();
        let line = format!("t+{:.1}s {what}", at.as_secs_f64());
        self.events.push((at, what));
        line
    }

    /// Records the new-connection outages of a `lab clients` run (`summary`), its times
    /// taken from this timeline's start at `start_unix_ms`; lengths with `decimals` digits.
    pub fn outages(
        &mut self,
        summary: &super::clients::Summary,
        start_unix_ms: u64,
        decimals: usize,
    ) {
        let offset = |ms: u64| {
            Duration::from_millis((summary.start_unix_ms + ms).saturating_sub(start_unix_ms))
        };
        for o in &summary.outages {
            self.event_at(
                offset(o.start_ms),
                format!("new connections fail ({} probes in a row)", o.probes),
            );
            if !o.ongoing {
                self.event_at(
                    offset(o.start_ms + o.length_ms),
                    format!(
                        "new connections work again ({:.*} s without)",
                        decimals,
                        o.length_ms as f64 / 1000.0
                    ),
                );
            }
        }
    }

    /// How long after the start `at` is (zero if before).
    pub fn since_start(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.start)
    }

    /// Every event, in time order, one `t+x.xs what` line each.
    pub fn lines(&self) -> Vec<String> {
        let mut events = self.events.clone();
        events.sort_by_key(|e| e.0);
        events
            .iter()
            .map(|(at, what)| format!("t+{:.1}s {what}", at.as_secs_f64()))
            .collect()
    }
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_pair_differs_only_in_state_priority_and_router_id() {
        let vip = Ipv4Addr::new(192, 168, 150, 100);
        let service = ServiceConf {
            port: 80,
            algo: "rr".into(),
            kind: "TUN".into(),
            real_servers: vec![Ipv4Addr::new(192, 168, 160, 12)],
            checks: true,
        };
        let master = KeepalivedConf {
            service: Some(service.clone()),
            ..KeepalivedConf::seed(true, vip)
        }
        .render();
        let backup = KeepalivedConf {
            service: Some(service),
            ..KeepalivedConf::seed(false, vip)
        }
        .render();
        let diff: Vec<(&str, &str)> = master
            .lines()
            .zip(backup.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(
            diff,
            [
                (
                    "! keepalived.conf of the MASTER director (the seed's §7, written by tunlb)",
                    "! keepalived.conf of the BACKUP director (the seed's §7, written by tunlb)"
                ),
                ("    router_id LVS_MASTER", "    router_id LVS_BACKUP"),
                ("    state MASTER", "    state BACKUP"),
                ("    priority 100", "    priority 50"),
            ]
        );
        for want in [
            "    lvs_sync_daemon eth0 VI_1    # connection sync",
            "        auth_pass 1111",
            "        192.168.150.100/24 dev eth0 label eth0:3",
            "virtual_server 192.168.150.100 80 {",
            "    lb_kind TUN",
            "    real_server 192.168.160.12 80 {",
            "        HTTP_GET {",
        ] {
            assert!(master.lines().any(|l| l == want), "{want:?} in\n{master}");
        }
    }

    /// The generated pair is what `configs/keepalived-ha-{master,backup}.conf` say, as tunlb's
    /// keepalived.conf parser reads them: the same VRRP instance and connection sync, without a
    /// warning.
    #[test]
    fn the_seed_pair_parses_like_the_shipped_ha_configs() {
        use crate::control::keepalived::parse_str;
        let vip = Ipv4Addr::new(192, 168, 150, 100);
        for (master, shipped) in [
            (
                true,
                include_str!("../../configs/keepalived-ha-master.conf"),
            ),
            (
                false,
                include_str!("../../configs/keepalived-ha-backup.conf"),
            ),
        ] {
            let conf = KeepalivedConf {
                service: Some(ServiceConf {
                    port: 80,
                    algo: "rr".into(),
                    kind: "TUN".into(),
                    real_servers: vec![
                        Ipv4Addr::new(192, 168, 150, 12),
                        Ipv4Addr::new(192, 168, 150, 13),
                    ],
                    checks: true,
                }),
                ..KeepalivedConf::seed(master, vip)
            };
            let ours = parse_str(&conf.render(), "generated").expect("the generated file");
            let theirs = parse_str(shipped, "shipped").expect("the shipped file");
            assert!(
                ours.warnings.is_empty(),
                "{:?}\n{}",
                ours.warnings,
                conf.render()
            );
            let (mut a, b) = (ours.vrrp.clone(), theirs.vrrp.clone());
            a.router_id = b.router_id.clone();
            assert_eq!(a, b, "master: {master}");
            assert_eq!(ours.services, theirs.services);
        }
    }

    #[test]
    fn v3_has_no_authentication_and_sync_can_be_off() {
        let conf = KeepalivedConf {
            version: 3,
            advert_int: "0.1".into(),
            sync_interface: None,
            ..KeepalivedConf::seed(true, Ipv4Addr::new(10, 0, 0, 1))
        }
        .render();
        assert!(!conf.contains("auth"), "{conf}");
        assert!(!conf.contains("lvs_sync_daemon"), "{conf}");
        assert!(conf.contains("    vrrp_version 3\n"), "{conf}");
        assert!(conf.contains("    advert_int 0.1\n"), "{conf}");
    }

    #[test]
    fn vrrp_state_finds_the_instance_in_any_shape() {
        let shapes = [
            r#"[{"name":"VI_1","state":"MASTER","priority":100}]"#,
            r#"{"instances":[{"name":"VI_2","state":"BACKUP"},{"name":"VI_1","state":"master"}]}"#,
            r#"{"vrrp":{"instances":[{"instance":"VI_1","state":"MASTER"}]}}"#,
        ];
        for json in shapes {
            assert_eq!(
                vrrp_state(json, "VI_1").as_deref(),
                Some("MASTER"),
                "{json}"
            );
        }
        assert_eq!(
            vrrp_state(r#"[{"name":"VI_2","state":"BACKUP"}]"#, "VI_1"),
            None
        );
        assert_eq!(vrrp_state("not json", "VI_1"), None);
    }

    #[test]
    fn timeline_lines_are_sorted_and_relative() {
        let start = Instant::now();
        let mut t = Timeline::starting_at(start);
        let line = t.event_at(Duration::from_millis(3500), "backup is MASTER");
        assert_eq!(line, "t+3.5s backup is MASTER");
        t.event_at(Duration::from_millis(0), "master killed");
        assert_eq!(
            t.lines(),
            ["t+0.0s master killed", "t+3.5s backup is MASTER"]
        );
    }
}
