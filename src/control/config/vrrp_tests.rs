//! The TOML VRRP sections: every key into the model, every error with its place, the writer's
//! round trip, and agreement with keepalived.conf.

use super::*;
use std::time::Duration;

use crate::model::ScriptUser;
use crate::vrrp::config::{
    Garp, InitialState, InstanceConfig, Notify, NotifyScript, ScriptConfig, SyncConfig,
    SyncGroupConfig, TrackInterface, TrackScript, Version, VirtualIp,
};

fn ok(text: &str) -> DirectorSettings {
    load_str(text, "d.toml").unwrap_or_else(|e| panic!("{e}")).0
}

/// `(line, column, message)` of every problem.
fn problems(text: &str) -> Vec<(usize, usize, String)> {
    match load_str(text, "d.toml") {
        Ok(_) => panic!("no problem in:\n{text}"),
        Err(ConfigErrors::Invalid { problems, .. }) => problems
            .into_iter()
            .map(|p| (p.line, p.column, p.message))
            .collect(),
        Err(e) => panic!("{e}"),
    }
}

fn check(found: &[(usize, usize, String)], expect: &[(usize, usize, &str)]) {
    assert_eq!(found.len(), expect.len(), "{found:#?}");
    for ((l, c, m), (el, ec, em)) in found.iter().zip(expect) {
        assert_eq!((*l, *c), (*el, *ec), "{m}");
        assert!(m.starts_with(em), "{m:?} does not start with {em:?}");
    }
}

const EVERY_KEY: &str = r#"
[director]
sloppy_tcp = false
sloppy_sctp = true

[vrrp]
router_id = "LVS_A"
version = 3
garp_master_delay = 2
garp_master_repeat = 3
garp_master_refresh = 60
garp_master_refresh_repeat = 2
garp_interval = 0.001

[[vrrp_instance]]
name = "VI_1"
state = "MASTER"
interface = "eth0"
virtual_router_id = 51
priority = 150
advert_int = 0.1
unicast_src_ip = "192.168.150.11"
unicast_peer = ["192.168.150.14", "192.168.150.15"]
virtual_ipaddress = ["192.168.150.100/24 dev eth0 label eth0:3", "192.168.150.101"]
track_interface = ["eth2", { name = "eth3", weight = -30 }, { name = "eth4", weight = 0 }]
track_script = ["chk_web", { name = "chk_disk", weight = 10 }]
notify_master = "/etc/ha/notify master"
notify_backup = { script = "/etc/ha/notify", user = "backup" }
notify_fault = "/etc/ha/fault"
notify_stop = "/etc/ha/stop"
notify = "/etc/ha/any"
garp_master_delay = 1
garp_master_repeat = 4
garp_master_refresh = 30
garp_master_refresh_repeat = 3

[[vrrp_instance]]
name = "VI_2"
interface = "eth0"
virtual_router_id = 52
version = 2
nopreempt = true
auth_type = "PASS"
auth_pass = "secret"
virtual_ipaddress = ["192.168.150.102"]

[[vrrp_instance]]
name = "VI_3"
state = "BACKUP"
interface = "eth0"
virtual_router_id = 53
priority = 90
preempt_delay = 2.5
virtual_ipaddress = ["192.168.150.103"]

[[vrrp_script]]
name = "chk_web"
script = "/usr/bin/curl -sf http://127.0.0.1/"
interval = 2
timeout = 1.5
weight = -20
rise = 3
fall = 2

[[vrrp_script]]
name = "chk_disk"
script = "/bin/true"

[[vrrp_sync_group]]
name = "G"
group = ["VI_1", "VI_2"]
notify_master = { script = "/etc/ha/group-master", user = "nobody", group = "nogroup" }
notify = "/etc/ha/group any"

[sync]
interface = "eth1"
instance = "VI_1"
id = 7
port = 9000
ttl = 2
group = "239.1.1.1"
maxlen = 1400
peers = ["192.168.150.14"]
key = "0123456789abcdef"
"#;

#[test]
fn every_key_into_the_model() {
    let s = ok(EVERY_KEY);
    assert_eq!((s.sloppy_tcp, s.sloppy_sctp), (Some(false), Some(true)));
    assert_eq!(s.sloppy(), (false, true));
    let v = &s.vrrp;
    assert_eq!(v.router_id.as_deref(), Some("LVS_A"));
    let vip = |a: [u8; 4], prefix, dev: Option<&str>, label: Option<&str>| VirtualIp {
        addr: Ipv4Addr::from(a).into(),
        prefix,
        dev: dev.map(String::from),
        label: label.map(String::from),
    };
    let vi1 = InstanceConfig {
        name: "VI_1".into(),
        initial: InitialState::Master,
        interface: "eth0".into(),
        vrid: 51,
        priority: 150,
        advert_int: Duration::from_millis(100),
        version: Version::V3,
        preempt: true,
        preempt_delay: Duration::ZERO,
        auth_pass: None,
        vips: vec![
            vip([192, 168, 150, 100], 24, Some("eth0"), Some("eth0:3")),
            vip([192, 168, 150, 101], 32, None, None),
        ],
        unicast_src: Some(Ipv4Addr::new(192, 168, 150, 11).into()),
        unicast_peers: vec![
            Ipv4Addr::new(192, 168, 150, 14).into(),
            Ipv4Addr::new(192, 168, 150, 15).into(),
        ],
        track_interfaces: vec![
            TrackInterface {
                name: "eth2".into(),
                weight: None,
            },
            TrackInterface {
                name: "eth3".into(),
                weight: Some(-30),
            },
            TrackInterface {
                name: "eth4".into(),
                weight: None,
            },
        ],
        track_scripts: vec![
            TrackScript {
                name: "chk_web".into(),
                weight: None,
            },
            TrackScript {
                name: "chk_disk".into(),
                weight: Some(10),
            },
        ],
        notify: Notify {
            master: Some("/etc/ha/notify master".into()),
            backup: Some(NotifyScript {
                command: "/etc/ha/notify".into(),
                user: Some(ScriptUser {
                    user: "backup".into(),
                    group: None,
                }),
            }),
            fault: Some("/etc/ha/fault".into()),
            stop: Some("/etc/ha/stop".into()),
            any: Some("/etc/ha/any".into()),
        },
        garp: Garp {
            master_delay: Duration::from_secs(1),
            master_repeat: 4,
            master_refresh: Some(Duration::from_secs(30)),
            master_refresh_repeat: 3,
            interval: Duration::from_millis(1),
        },
    };
    assert_eq!(v.instances[0], vi1);
    let vi2 = &v.instances[1];
    assert_eq!(
        (vi2.initial, vi2.priority, vi2.version),
        (InitialState::Backup, 100, Version::V2)
    );
    assert!(!vi2.preempt);
    assert_eq!(vi2.auth_pass, Some(*b"secret\0\0"));
    assert_eq!(
        vi2.garp,
        Garp {
            master_delay: Duration::from_secs(2),
            master_repeat: 3,
            master_refresh: Some(Duration::from_secs(60)),
            master_refresh_repeat: 2,
            interval: Duration::from_millis(1),
        },
        "[vrrp]'s garp keys are the defaults"
    );
    assert_eq!(v.instances[2].preempt_delay, Duration::from_millis(2500));
    assert_eq!(
        v.scripts,
        [
            ScriptConfig {
                name: "chk_web".into(),
                script: "/usr/bin/curl -sf http://127.0.0.1/".into(),
                interval: Duration::from_secs(2),
                timeout: Duration::from_millis(1500),
                weight: -20,
                rise: 3,
                fall: 2,
                user: None,
            },
            ScriptConfig {
                name: "chk_disk".into(),
                script: "/bin/true".into(),
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                weight: 0,
                rise: 1,
                fall: 1,
                user: None,
            },
        ]
    );
    assert_eq!(
        v.sync_groups,
        [SyncGroupConfig {
            name: "G".into(),
            members: vec!["VI_1".into(), "VI_2".into()],
            notify: Notify {
                master: Some(NotifyScript {
                    command: "/etc/ha/group-master".into(),
                    user: Some(ScriptUser {
                        user: "nobody".into(),
                        group: Some("nogroup".into()),
                    }),
                }),
                any: Some("/etc/ha/group any".into()),
                ..Notify::default()
            },
        }]
    );
    assert_eq!(
        v.sync,
        Some(SyncConfig {
            id: 7,
            port: 9000,
            ttl: 2,
            group: Ipv4Addr::new(239, 1, 1, 1),
            maxlen: 1400,
            peers: vec![Ipv4Addr::new(192, 168, 150, 14)],
            key: Some(b"0123456789abcdef".to_vec()),
            ..SyncConfig::new("eth1", "VI_1")
        })
    );
}

#[test]
fn the_same_config_in_both_syntaxes_is_the_same_model() {
    let keepalived = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/control/keepalived/vrrp_tests.rs"),
    )
    .expect("the keepalived test");
    // The keepalived test's EVERY_KEYWORD config, parsed again here, minus what TOML has and
    // keepalived.conf has not (sync peers and key) and the VIP only keepalived's test has.
    let start = keepalived
        .find("const EVERY_KEYWORD: &str = r#\"")
        .expect("const")
        + 31;
    let end = start + keepalived[start..].find("\"#;").expect("end");
    let kconf = crate::control::keepalived::parse_str(&keepalived[start..end], "k.conf")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut t = ok(EVERY_KEY).vrrp;
    let mut k = kconf.vrrp;
    k.instances[0].vips.pop();
    k.instances[2].unicast_src = None; // mcast_src_ip
    if let Some(s) = &mut t.sync {
        s.peers.clear();
        s.key = None;
    }
    assert_eq!(t, k);
}

#[test]
fn defaults_and_the_sync_id() {
    let s = ok(r#"
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
virtual_ipaddress = ["10.0.0.1"]

[sync]
interface = "eth0"
instance = "VI_1"
"#);
    let mut expect = InstanceConfig::new("VI_1", "eth0", 51);
    expect.vips = s.vrrp.instances[0].vips.clone();
    assert_eq!(s.vrrp.instances[0], expect);
    assert_eq!(
        s.vrrp.sync,
        Some(SyncConfig {
            id: 51,
            ..SyncConfig::new("eth0", "VI_1")
        }),
        "the sync id defaults to the instance's VRID, as keepalived's"
    );
    assert_eq!((s.sloppy_tcp, s.sloppy_sctp), (None, None));
    assert_eq!(s.sloppy(), (true, true), "on by default with VRRP");
    assert_eq!(
        DirectorSettings::default().sloppy(),
        (false, false),
        "off for a lone director"
    );
}

#[test]
fn every_error_has_its_place() {
    let text = r#"
[vrrp]
version = 4
garp_master_repeat = 0
garp_interval = -1

[[vrrp_instance]]
state = "PRIMARY"
interface = "eth0:1"
virtual_router_id = 0
priority = 256
advert_int = 0.001
preempt_delay = 1001
auth_type = "AH"
auth_pass = "123456789"
virtual_ipaddress = ["10.0.0.300", "10.0.0.1 colour blue", "10.0.0.2", "10.0.0.2/24"]
unicast_src_ip = "224.0.0.1"
unicast_peer = ["10.0.0.9", "10.0.0.9", "x"]
track_interface = ["eth1:2", { name = "eth2", weight = 254 }]
garp_master_refresh_repeat = 0

[[vrrp_instance]]
name = "VI_2"
state = "MASTER"

[[vrrp_instance]]
name = "VI 3"
interface = "eth0"
virtual_router_id = 3
auth_type = "PASS"
virtual_ipaddress = ["10.0.0.3"]

[[vrrp_script]]
name = "chk"
interval = 0
weight = 254
rise = 0

[[vrrp_sync_group]]
group = ["VI_9"]

[sync]
interface = "e/th0"
instance = "VI_1"
id = 256
port = 0
ttl = 0
group = "10.0.0.1"
maxlen = 70000
peers = ["0.0.0.0"]
key = "short"
"#;
    check(
        &problems(text),
        &[
            (3, 11, "vrrp.version: expected an integer from 2 to 3, found 4"),
            (4, 22, "vrrp.garp_master_repeat: expected an integer from 1"),
            (5, 17, "vrrp.garp_interval: expected a time in seconds from 0 to 60, found -1"),
            (7, 1, "vrrp_instance[0]: missing key `name`"),
            (8, 9, "vrrp_instance[0].state: expected \"MASTER\" or \"BACKUP\", found \"PRIMARY\""),
            (9, 13, "vrrp_instance[0].interface: expected an interface name"),
            (10, 21, "vrrp_instance[0].virtual_router_id: expected an integer from 1 to 255, found 0"),
            (11, 12, "vrrp_instance[0].priority: expected an integer from 1 to 255, found 256"),
            (12, 14, "vrrp_instance[0].advert_int: expected a time in seconds from 0.01 to 255"),
            (13, 17, "vrrp_instance[0].preempt_delay: expected a time in seconds from 0 to 1000"),
            (14, 13, "vrrp_instance[0].auth_type: AH (IPsec AH) is not supported by tunlb"),
            (15, 13, "vrrp_instance[0].auth_pass: expected 1 to 8 characters"),
            (16, 22, "vrrp_instance[0].virtual_ipaddress[0]: expected an address like 192.0.2.1/24"),
            (16, 36, "vrrp_instance[0].virtual_ipaddress[1]: unexpected 'colour'"),
            (16, 72, "vrrp_instance[0].virtual_ipaddress[3]: 10.0.0.2 is listed twice"),
            (17, 18, "vrrp_instance[0].unicast_src_ip: expected a unicast address"),
            (18, 29, "vrrp_instance[0].unicast_peer[1]: 10.0.0.9 is listed twice"),
            (18, 41, "vrrp_instance[0].unicast_peer[2]: expected an IPv4 address"),
            (19, 20, "vrrp_instance[0].track_interface[0]: expected an interface name"),
            (19, 30, "vrrp_instance[0].track_interface[1].weight: expected an integer from -253 to 253, found 254"),
            (20, 30, "vrrp_instance[0].garp_master_refresh_repeat: expected an integer from 1"),
            (22, 1, "vrrp_instance[1]: missing key `interface`"),
            (22, 1, "vrrp_instance[1]: missing key `virtual_router_id`"),
            (23, 8, "vrrp_instance VI_2: no virtual_ipaddress: this instance answers for no address (an error in the TOML config"),
            (24, 9, "vrrp_instance[1]: state = \"MASTER\" without `priority`"),
            (27, 8, "vrrp_instance[2].name: expected a name without spaces"),
            (30, 13, "vrrp_instance[2].auth_type: `auth_pass` is missing"),
            (33, 1, "vrrp_script[0]: missing key `script`"),
            (35, 12, "vrrp_script[0].interval: expected a time in seconds from 0.001"),
            (36, 10, "vrrp_script[0].weight: expected an integer from -253 to 253, found 254"),
            (37, 8, "vrrp_script[0].rise: expected an integer from 1"),
            (39, 1, "vrrp_sync_group[0]: missing key `name`"),
            (40, 9, "vrrp_sync_group  has only 1 instance"),
            (40, 10, "vrrp_sync_group : no vrrp_instance named VI_9"),
            (43, 13, "sync.interface: expected an interface name"),
            (45, 6, "sync.id: expected an integer from 0 to 255, found 256"),
            (46, 8, "sync.port: expected an integer from 1 to 65535, found 0"),
            (47, 7, "sync.ttl: expected an integer from 1 to 255, found 0"),
            (48, 9, "sync.group: expected an IPv4 multicast address"),
            (49, 10, "sync.maxlen: expected an integer from 1 to 65507, found 70000"),
            (50, 10, "sync.peers[0]: expected a unicast IPv4 address"),
            (51, 7, "sync: the key has 5 bytes, expected at least 16"),
        ],
    );
}

#[test]
fn cross_reference_errors_are_placed_in_toml_too() {
    let text = r#"
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 1
version = 3
advert_int = 0.015
auth_pass = "x"
virtual_ipaddress = ["10.0.0.1"]
track_script = ["nope"]

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 1
virtual_ipaddress = ["10.0.0.2"]

[[vrrp_sync_group]]
name = "G"
group = ["VI_1", "VI_7"]

[sync]
interface = "eth0"
instance = "VI_8"
key = "0123456789abcdef"
key_file = "/nonexistent"
"#;
    check(
        &problems(text),
        &[
            (7, 14, "vrrp_instance VI_1: VRRP version 3 sends advert_int in centiseconds"),
            (8, 13, "vrrp_instance VI_1: VRRP version 3 has no authentication: ignored, as keepalived does (an error in the TOML config"),
            (10, 17, "vrrp_instance VI_1: track_script nope: no vrrp_script of that name"),
            (13, 8, "vrrp_instance VI_1 is already defined"),
            (15, 21, "vrrp_instance VI_1: VI_1 and VI_1 both use VRID 1 on interface eth0"),
            (20, 18, "vrrp_sync_group G: no vrrp_instance named VI_7"),
            (24, 12, "lvs_sync_daemon: no vrrp_instance named VI_8"),
            (25, 7, "sync: give `key` or `key_file`, not both"),
        ],
    );
}

#[test]
fn the_key_can_come_from_a_file() {
    let path = std::env::temp_dir().join(format!("tunlb-synckey-{}", std::process::id()));
    std::fs::write(&path, "0123456789abcdef0123\n").expect("write the key");
    let text = format!(
        "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 1\nvirtual_ipaddress = [\"10.0.0.1\"]\n[sync]\ninterface = \"eth0\"\ninstance = \"VI_1\"\nkey_file = {:?}\n",
        path.display().to_string()
    );
    let s = ok(&text);
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        s.vrrp.sync.and_then(|s| s.key),
        Some(b"0123456789abcdef0123".to_vec()),
        "the trailing newline is not part of the key"
    );
    let missing = text.replace(&path.display().to_string(), "/nonexistent/key");
    check(
        &problems(&missing),
        &[(9, 12, "sync.key_file: /nonexistent/key:")],
    );
}

#[test]
fn unknown_keys_are_refused() {
    check(
        &problems("[[vrrp_instance]]\nname = \"VI_1\"\nprioirty = 5\n"),
        &[(3, 1, "unknown field `prioirty`")],
    );
}

#[test]
fn to_toml_round_trips_vrrp() {
    let (settings, set) = load_str(EVERY_KEY, "d.toml").unwrap_or_else(|e| panic!("{e}"));
    let text = to_toml(&set, &settings);
    let (back, _) = load_str(&text, "saved.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back.vrrp, settings.vrrp, "{text}");
    assert_eq!(
        (back.sloppy_tcp, back.sloppy_sctp),
        (Some(false), Some(true))
    );
    // Not written when not set.
    let plain = to_toml(&set, &DirectorSettings::default());
    assert!(
        !plain.contains("sloppy") && !plain.contains("vrrp"),
        "{plain}"
    );
}

#[test]
fn an_ipv6_instance_runs_v3_and_mixed_families_are_refused_at_their_key() {
    let settings = ok(r#"
[[vrrp_instance]]
name = "VI_6"
interface = "eth0"
virtual_router_id = 61
advert_int = 0.5
unicast_src_ip = "fe80::11"
unicast_peer = ["fe80::14"]
virtual_ipaddress = ["2001:db8::100/64 dev eth0"]
"#);
    let i = &settings.vrrp.instances[0];
    assert!(i.is_ipv6());
    assert_eq!(i.version, Version::V3);
    assert_eq!(i.vips[0].to_line(), "2001:db8::100/64 dev eth0");
    assert_eq!(
        i.unicast_peers,
        ["fe80::14".parse::<std::net::IpAddr>().unwrap()]
    );
    check(
        &problems(
            r#"
[[vrrp_instance]]
name = "VI_6"
interface = "eth0"
virtual_router_id = 61
unicast_peer = ["192.0.2.14"]
virtual_ipaddress = ["2001:db8::100/64", "192.0.2.100"]
"#,
        ),
        &[
            (6, 17, "vrrp_instance VI_6: unicast_peer 192.0.2.14: address family must match VRRP instance (it is IPv6)"),
            (7, 21, "vrrp_instance VI_6: virtual_ipaddress 192.0.2.100: address family must match VRRP instance (it is IPv6)"),
        ],
    );
}
