//! keepalived.conf's VRRP blocks: every keyword into the model, every error and warning with
//! its place.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::model::ScriptUser;
use crate::vrrp::config::{
    Garp, InitialState, InstanceConfig, Notify, NotifyScript, ScriptConfig, SyncConfig,
    SyncGroupConfig, TrackInterface, TrackScript, Version, VirtualIp,
};

fn ok(text: &str) -> KeepalivedConfig {
    parse_str(text, "k.conf").unwrap_or_else(|e| panic!("{e}"))
}

/// `(line, col, message)` of every error.
fn errors(text: &str) -> Vec<(usize, usize, String)> {
    match parse_str(text, "k.conf") {
        Ok(_) => panic!("no error in:\n{text}"),
        Err(KeepalivedError::Invalid { errors, .. }) => errors
            .into_iter()
            .map(|d| (d.line, d.col, d.message))
            .collect(),
        Err(e) => panic!("{e}"),
    }
}

/// `(line, col, message)` of every warning of a config that parses.
fn warnings(text: &str) -> Vec<(usize, usize, String)> {
    ok(text)
        .warnings
        .into_iter()
        .map(|d| (d.line, d.col, d.message))
        .collect()
}

/// Each found `(line, col, message)` matches the expected one (message by prefix).
fn check(found: &[(usize, usize, String)], expect: &[(usize, usize, &str)]) {
    assert_eq!(found.len(), expect.len(), "{found:#?}");
    for ((l, c, m), (el, ec, em)) in found.iter().zip(expect) {
        assert_eq!((*l, *c), (*el, *ec), "{m}");
        assert!(m.starts_with(em), "{m:?} does not start with {em:?}");
    }
}

const EVERY_KEYWORD: &str = r#"
global_defs {
    router_id LVS_A
    vrrp_version 3
    vrrp_garp_master_delay 2
    vrrp_garp_master_repeat 3
    vrrp_garp_master_refresh 60
    vrrp_garp_master_refresh_repeat 2
    vrrp_garp_interval 0.001
    vrrp_mcast_group4 224.0.0.18
    lvs_sync_daemon eth1 inst VI_1 id 7 maxlen 1400 port 9000 ttl 2 group 239.1.1.1
}
vrrp_script chk_web {
    script "/usr/bin/curl -sf http://127.0.0.1/"
    interval 2
    timeout 1.5
    weight -20
    rise 3
    fall 2
}
vrrp_script chk_disk {
    script /bin/true
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 0.1
    preempt
    unicast_src_ip 192.168.150.11
    unicast_peer {
        192.168.150.14
        192.168.150.15
    }
    virtual_ipaddress {
        192.168.150.100/24 dev eth0 label eth0:3
        192.168.150.101
        10.9.0.1/32 dev eth2
    }
    track_interface {
        eth2
        eth3 weight -30
        eth4 weight 0
    }
    track_script {
        chk_web
        chk_disk weight 10
    }
    notify_master "/etc/ha/notify master"
    notify_backup /etc/ha/notify backup
    notify_fault /etc/ha/fault
    notify_stop /etc/ha/stop
    notify /etc/ha/any
    garp_master_delay 1
    garp_master_repeat 4
    garp_master_refresh 30
    garp_master_refresh_repeat 3
}
vrrp_instance VI_2 {
    interface eth0
    virtual_router_id 52
    version 2
    nopreempt
    preempt_delay 0
    authentication {
        auth_type PASS
        auth_pass secret
    }
    virtual_ipaddress {
        192.168.150.102
    }
}
vrrp_instance VI_3 {
    state BACKUP
    interface eth0
    virtual_router_id 53
    priority 90
    preempt_delay 2.5
    mcast_src_ip 192.168.150.11
    virtual_ipaddress {
        192.168.150.103
    }
}
vrrp_sync_group G {
    group {
        VI_1 VI_2
    }
    notify_master /etc/ha/group-master nobody nogroup
    notify "/etc/ha/group any"
}
"#;

#[test]
fn every_keyword_into_the_model() {
    let conf = ok(EVERY_KEYWORD);
    assert!(conf.warnings.is_empty(), "{:#?}", conf.warnings);
    let v = &conf.vrrp;
    assert_eq!(v.router_id.as_deref(), Some("LVS_A"));
    let global_garp = Garp {
        master_delay: Duration::from_secs(2),
        master_repeat: 3,
        master_refresh: Some(Duration::from_secs(60)),
        master_refresh_repeat: 2,
        interval: Duration::from_millis(1),
    };
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
            vip([10, 9, 0, 1], 32, Some("eth2"), None),
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
            // keepalived: the word after the script is its user.
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
    assert_eq!(vi2.initial, InitialState::Backup);
    assert_eq!(vi2.priority, 100, "keepalived's default priority");
    assert_eq!(vi2.version, Version::V2, "the instance's version wins");
    assert_eq!(vi2.advert_int, Duration::from_secs(1));
    assert!(!vi2.preempt);
    assert_eq!(vi2.auth_pass, Some(*b"secret\0\0"));
    assert_eq!(
        vi2.garp, global_garp,
        "global_defs' vrrp_garp_* are the defaults"
    );
    let vi3 = &v.instances[2];
    assert_eq!(vi3.preempt_delay, Duration::from_millis(2500));
    assert_eq!(
        vi3.unicast_src,
        Some(Ipv4Addr::new(192, 168, 150, 11).into())
    );
    assert!(vi3.unicast_peers.is_empty());
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
            ..SyncConfig::new("eth1", "VI_1")
        })
    );
}

#[test]
fn defaults_are_keepalived_s() {
    let conf = ok("vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n");
    let mut expect = InstanceConfig::new("VI_1", "eth0", 9);
    expect.vips = conf.vrrp.instances[0].vips.clone();
    assert_eq!(conf.vrrp.instances[0], expect);
    assert_eq!(expect.garp, Garp::default());
    assert_eq!(conf.vrrp.router_id, None);
    assert_eq!(conf.vrrp.sync, None);
}

#[test]
fn lvs_sync_daemon_forms() {
    let inst = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n";
    // The id defaults to the instance's VRID, as keepalived does.
    let conf = ok(&format!(
        "global_defs {{\n lvs_sync_daemon eth0 VI_1\n}}\n{inst}"
    ));
    assert_eq!(
        conf.vrrp.sync,
        Some(SyncConfig {
            id: 51,
            ..SyncConfig::new("eth0", "VI_1")
        })
    );
    // keepalived's old positional sync id: accepted with a warning.
    let text = format!("global_defs {{\n lvs_sync_daemon eth0 VI_1 3\n}}\n{inst}");
    assert_eq!(ok(&text).vrrp.sync.map(|s| s.id), Some(3));
    check(
        &warnings(&text),
        &[(2, 28, "lvs_sync_daemon: write `id N`")],
    );
    // The instance's deprecated lvs_sync_daemon_interface.
    let text = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n lvs_sync_daemon_interface eth1\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n";
    assert_eq!(
        ok(text).vrrp.sync,
        Some(SyncConfig {
            id: 51,
            ..SyncConfig::new("eth1", "VI_1")
        })
    );
    check(
        &warnings(text),
        &[(
            4,
            2,
            "vrrp_instance VI_1: lvs_sync_daemon_interface is deprecated",
        )],
    );
}

#[test]
fn lvs_sync_daemon_errors() {
    let inst = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n";
    let cases: &[(&str, usize, &str)] = &[
        (
            "lvs_sync_daemon eth0 VI_9",
            23,
            "lvs_sync_daemon: no vrrp_instance named VI_9",
        ),
        (
            "lvs_sync_daemon eth0",
            2,
            "lvs_sync_daemon: expected the vrrp_instance",
        ),
        (
            "lvs_sync_daemon",
            2,
            "lvs_sync_daemon: expected an interface",
        ),
        (
            "lvs_sync_daemon eth0:1 VI_1",
            18,
            "lvs_sync_daemon: 'eth0:1' is not an interface name",
        ),
        (
            "lvs_sync_daemon eth0 VI_1 id 256",
            31,
            "lvs_sync_daemon id: expected an integer from 0 to 255",
        ),
        (
            "lvs_sync_daemon eth0 VI_1 port 0",
            33,
            "lvs_sync_daemon port: expected an integer from 1 to 65535",
        ),
        (
            "lvs_sync_daemon eth0 VI_1 ttl 0",
            32,
            "lvs_sync_daemon ttl: expected an integer from 1 to 255",
        ),
        (
            "lvs_sync_daemon eth0 VI_1 maxlen 65508",
            35,
            "lvs_sync_daemon maxlen: expected an integer from 1 to 65507",
        ),
        (
            "lvs_sync_daemon eth0 VI_1 group 10.0.0.1",
            34,
            "lvs_sync_daemon group: expected an IPv4 multicast address",
        ),
        (
            "lvs_sync_daemon eth0 VI_1 port",
            28,
            "lvs_sync_daemon: expected a port (1 to 65535) after 'port'",
        ),
        (
            "lvs_sync_daemon eth0 VI_1 speed 10",
            28,
            "lvs_sync_daemon: unexpected 'speed'",
        ),
        (
            "lvs_sync_daemon eth0 VI_1 inst VI_1",
            33,
            "lvs_sync_daemon: the instance is given twice",
        ),
    ];
    for (line, col, msg) in cases {
        let text = format!("global_defs {{\n {line}\n}}\n{inst}");
        check(&errors(&text), &[(2, *col, msg)]);
    }
    let twice = format!(
        "global_defs {{\n lvs_sync_daemon eth0 VI_1\n lvs_sync_daemon eth1 VI_1\n}}\n{inst}"
    );
    check(&errors(&twice), &[(3, 2, "lvs_sync_daemon: given twice")]);
}

#[test]
fn global_defs_errors() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "vrrp_version 4",
            15,
            "vrrp_version: expected an integer from 2 to 3",
        ),
        (
            "vrrp_garp_master_repeat 0",
            26,
            "vrrp_garp_master_repeat: expected an integer from 1",
        ),
        (
            "vrrp_garp_master_refresh_repeat 0",
            34,
            "vrrp_garp_master_refresh_repeat: expected an integer from 1",
        ),
        (
            "vrrp_garp_master_delay -1",
            25,
            "vrrp_garp_master_delay: expected an integer from 0",
        ),
        (
            "vrrp_garp_master_refresh x",
            27,
            "vrrp_garp_master_refresh: expected an integer from 0",
        ),
        (
            "vrrp_garp_interval 0",
            21,
            "vrrp_garp_interval: expected a time in seconds",
        ),
        (
            "vrrp_mcast_group4 224.0.0.19",
            20,
            "global_defs vrrp_mcast_group4: only 224.0.0.18",
        ),
        ("router_id", 2, "router_id: expected a name"),
        ("router_id a b", 14, "router_id: unexpected 'b'"),
    ];
    for (line, col, msg) in cases {
        check(
            &errors(&format!("global_defs {{\n {line}\n}}\n")),
            &[(2, *col, msg)],
        );
    }
}

#[test]
fn instance_errors_with_places() {
    let text = "\
vrrp_instance VI_2 {
    state PRIMARY
    virtual_router_id 0
    priority 256
    advert_int 0.001
    virtual_ipaddress {
        192.168.150.300/24 dev eth0
        10.0.0.1/33
        10.0.0.2 dev
        10.0.0.3 colour blue
        10.0.0.4 // a note
        10.0.0.5
        10.0.0.5/24
    }
    authentication {
        auth_type MD5
        auth_pass 1111
        auth_key x
    }
    prioirty 5
    interface eth0:1
    use_vmac
    track_file {
        f
    }
    version 4
    preempt_delay 1001
    garp_master_repeat 0
    unicast_src_ip 10.0.0.300
    unicast_peer {
        10.0.0.400
        10.0.0.9 ttl 3
        10.0.0.10
        10.0.0.10
    }
    track_interface {
        eth1 weight 254
        eth2 weight
        eth3 weight 5 reverse
        eth4 speed 5
    }
    notify_master
    notify_backup /a
    notify_backup /b
    priority 5
}
vrrp_instance VI_3 {
    state BACKUP
}
vrrp_instance {
}
vrrp_instance A B {
    interface eth0
    virtual_router_id 9
}
";
    check(
        &errors(text),
        &[
            (2, 11, "vrrp_instance VI_2: state: expected MASTER or BACKUP, found 'PRIMARY'"),
            (3, 23, "virtual_router_id: expected an integer from 1 to 255, found '0'"),
            (4, 14, "priority: expected an integer from 1 to 255, found '256'"),
            (5, 16, "advert_int: expected a time in seconds from 0.01 to 255"),
            (7, 9, "vrrp_instance VI_2: virtual_ipaddress: expected an address like 192.0.2.1/24 or 2001:db8::1/64, found '192.168.150.300/24'"),
            (8, 9, "vrrp_instance VI_2: virtual_ipaddress: expected an address like 192.0.2.1/24 or 2001:db8::1/64, found '10.0.0.1/33'"),
            (9, 18, "vrrp_instance VI_2: virtual_ipaddress: expected a value after 'dev'"),
            (10, 18, "vrrp_instance VI_2: virtual_ipaddress: unexpected 'colour'"),
            (11, 18, "vrrp_instance VI_2: virtual_ipaddress: unexpected '//'"),
            (13, 9, "vrrp_instance VI_2: virtual_ipaddress: 10.0.0.5 is listed twice"),
            (16, 19, "vrrp_instance VI_2: auth_type: expected PASS or AH, found 'MD5'"),
            (18, 9, "unknown keyword 'auth_key' in vrrp_instance VI_2 authentication"),
            (20, 5, "unknown keyword 'prioirty' in vrrp_instance VI_2"),
            (21, 15, "vrrp_instance VI_2: interface: 'eth0:1' is not an interface name"),
            (22, 5, "vrrp_instance VI_2: use_vmac is not supported by tunlb"),
            (23, 5, "vrrp_instance VI_2: track_file is not supported by tunlb"),
            (26, 13, "version: expected an integer from 2 to 3"),
            (27, 19, "preempt_delay: expected a time in seconds from 0 to 1000"),
            (28, 24, "garp_master_repeat: expected an integer from 1"),
            (29, 20, "unicast_src_ip: expected an IPv4 address like 192.0.2.1, found '10.0.0.300'"),
            (31, 9, "vrrp_instance VI_2: unicast_peer: expected an IPv4 address like 192.0.2.1, found '10.0.0.400'"),
            (32, 18, "vrrp_instance VI_2: unicast_peer: unexpected 'ttl' after the address"),
            (34, 9, "vrrp_instance VI_2: unicast_peer 10.0.0.10 is listed twice"),
            (37, 21, "vrrp_instance VI_2: track_interface eth1: weight: expected an integer from -253 to 253, found '254'"),
            (38, 14, "vrrp_instance VI_2: track_interface eth2: expected a weight from -253 to 253 after 'weight'"),
            (39, 23, "vrrp_instance VI_2: track_interface eth3: weight ... reverse is not supported by tunlb"),
            (40, 14, "vrrp_instance VI_2: track_interface eth4: unexpected 'speed' (expected weight N)"),
            (42, 5, "vrrp_instance VI_2: notify_master: expected a command after it"),
            (44, 5, "vrrp_instance VI_2: notify_backup given twice"),
            (45, 5, "vrrp_instance VI_2: priority given twice"),
            (47, 1, "vrrp_instance VI_3: expected virtual_router_id (1 to 255)"),
            (47, 1, "vrrp_instance VI_3: expected interface"),
            (50, 1, "vrrp_instance: expected a name after it"),
            (52, 17, "vrrp_instance A: unexpected 'B' (expected '{')"),
        ],
    );
}

#[test]
fn authentication_rules() {
    let inst = |auth: &str, extra: &str| {
        format!("vrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 1\n{extra} authentication {{\n{auth} }}\n virtual_ipaddress {{\n  10.0.0.1\n }}\n}}\n")
    };
    check(
        &errors(&inst("  auth_type AH\n  auth_pass 1111\n", "")),
        &[(
            5,
            13,
            "vrrp_instance VI_1: auth_type AH (IPsec AH) is not supported by tunlb",
        )],
    );
    check(
        &errors(&inst("  auth_type PASS\n", "")),
        &[(
            5,
            13,
            "vrrp_instance VI_1: auth_type PASS without auth_pass",
        )],
    );
    check(
        &warnings(&inst("  auth_pass 1111\n", "")),
        &[(
            5,
            13,
            "vrrp_instance VI_1: auth_pass without auth_type PASS: ignored",
        )],
    );
    let long = inst("  auth_type PASS\n  auth_pass 123456789\n", "");
    check(
        &warnings(&long),
        &[(
            6,
            13,
            "vrrp_instance VI_1: auth_pass longer than 8 characters",
        )],
    );
    assert_eq!(ok(&long).vrrp.instances[0].auth_pass, Some(*b"12345678"));
    // keepalived ignores authentication in VRRPv3, with a message.
    let v3 = inst("  auth_type PASS\n  auth_pass 1111\n", " version 3\n");
    check(
        &warnings(&v3),
        &[(
            5,
            2,
            "vrrp_instance VI_1: VRRP version 3 has no authentication: ignored",
        )],
    );
    assert_eq!(ok(&v3).vrrp.instances[0].auth_pass, None);
}

#[test]
fn keepalived_corrections_are_warnings_at_their_keyword() {
    let text = "\
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 1
    priority 100
    nopreempt
    preempt_delay 3
    virtual_ipaddress {
        10.0.0.1
    }
}
vrrp_instance VI_2 {
    state MASTER
    interface eth0
    virtual_router_id 2
}
vrrp_instance VI_3 {
    interface eth0
    virtual_router_id 3
    priority 255
    virtual_ipaddress {
        10.0.0.3
    }
}
";
    check(
        &warnings(text),
        &[
            (6, 5, "vrrp_instance VI_1: nopreempt does not work with state MASTER"),
            (7, 5, "vrrp_instance VI_1: preempt_delay does not work with state MASTER"),
            (12, 1, "vrrp_instance VI_2: no priority: keepalived makes a state MASTER instance the address owner"),
            (12, 1, "vrrp_instance VI_2: no virtual_ipaddress"),
            (20, 5, "vrrp_instance VI_3: priority 255 is the address owner"),
        ],
    );
    let conf = ok(text);
    assert!(conf.vrrp.instances[0].preempt);
    assert_eq!(conf.vrrp.instances[0].preempt_delay, Duration::ZERO);
    assert_eq!(conf.vrrp.instances[1].priority, 255);
}

#[test]
fn advert_int_follows_the_version() {
    let inst = |global: &str, body: &str| {
        format!("global_defs {{\n{global}}}\nvrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 1\n{body} virtual_ipaddress {{\n  10.0.0.1\n }}\n}}\n")
    };
    check(
        &errors(&inst("", " advert_int 0.5\n")),
        &[(
            6,
            2,
            "vrrp_instance VI_1: VRRP version 2 sends advert_int in whole seconds",
        )],
    );
    check(
        &errors(&inst(" vrrp_version 3\n", " advert_int 0.015\n")),
        &[(
            7,
            2,
            "vrrp_instance VI_1: VRRP version 3 sends advert_int in centiseconds",
        )],
    );
    check(
        &errors(&inst("", " version 3\n advert_int 41\n")),
        &[(
            7,
            2,
            "vrrp_instance VI_1: VRRP version 3 sends advert_int in centiseconds",
        )],
    );
    let fast = ok(&inst(" vrrp_version 3\n", " advert_int 0.01\n"));
    assert_eq!(fast.vrrp.instances[0].advert_int, Duration::from_millis(10));
    assert_eq!(fast.vrrp.instances[0].version, Version::V3);
}

#[test]
fn ignored_keywords_are_warnings() {
    let text = "\
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 1
    smtp_alert
    debug 2
    garp_lower_prio_repeat 2
    virtual_ipaddress {
        10.0.0.1
    }
    unicast_peer {
        10.0.0.2 min_ttl 250
    }
}
vrrp_script chk {
    script /bin/true
    user nobody
    init_fail
}
vrrp_sync_group G {
    group {
        VI_1
    }
    smtp_alert
}
";
    check(
        &warnings(text),
        &[
            (4, 5, "vrrp_instance VI_1: smtp_alert ignored"),
            (5, 5, "vrrp_instance VI_1: debug ignored"),
            (6, 5, "vrrp_instance VI_1: garp_lower_prio_repeat ignored"),
            (
                11,
                18,
                "vrrp_instance VI_1: unicast_peer 10.0.0.2: min_ttl ignored",
            ),
            (17, 5, "vrrp_script chk: init_fail ignored"),
            (19, 1, "vrrp_sync_group G has only 1 instance"),
            (23, 5, "vrrp_sync_group G: smtp_alert ignored"),
        ],
    );
}

#[test]
fn scripts_and_sync_groups_errors() {
    let text = "\
vrrp_script chk {
    interval 0
    weight 300
    rise 0
    speed 3
}
vrrp_script chk2 {
    script /bin/true
    weight 10 reverse
    timeout x
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 1
    virtual_ipaddress {
        10.0.0.1
    }
    track_script {
        chk2 weight 5
        nope
    }
}
vrrp_instance VI_2 {
    interface eth0
    virtual_router_id 1
    virtual_ipaddress {
        10.0.0.2
    }
}
vrrp_sync_group G {
    group {
        VI_1 VI_9
    }
    group {
        VI_2
    }
    track_script {
        chk2
    }
    notify_fault
}
vrrp_sync_group H {
}
vrrp_instance VI_1 {
    interface eth1
    virtual_router_id 1
    virtual_ipaddress {
        10.0.0.1
    }
}
";
    check(
        &errors(text),
        &[
            (1, 1, "vrrp_script chk: expected a `script` line"),
            (2, 14, "interval: expected a time in seconds from 0.001"),
            (
                3,
                12,
                "vrrp_script chk: weight: expected an integer from -253 to 253, found '300'",
            ),
            (4, 10, "rise: expected an integer from 1"),
            (5, 5, "unknown keyword 'speed' in vrrp_script chk"),
            (
                9,
                15,
                "vrrp_script chk2: weight ... reverse is not supported by tunlb",
            ),
            (10, 13, "timeout: expected a time in seconds"),
            (
                20,
                9,
                "vrrp_instance VI_1: track_script nope: no vrrp_script of that name",
            ),
            (
                25,
                5,
                "vrrp_instance VI_2: VI_1 and VI_2 both use VRID 1 on interface eth0",
            ),
            (32, 14, "vrrp_sync_group G: no vrrp_instance named VI_9"),
            (34, 5, "vrrp_sync_group G: group given twice"),
            (
                37,
                5,
                "vrrp_sync_group G: track_script in a sync group is not supported by tunlb",
            ),
            (
                40,
                5,
                "vrrp_sync_group G: notify_fault: expected a command after it",
            ),
            (
                42,
                1,
                "vrrp_sync_group H: expected a `group` of vrrp_instance names",
            ),
            (44, 1, "vrrp_instance VI_1 is already defined"),
        ],
    );
}

fn config_file(name: &str) -> KeepalivedConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("configs")
        .join(name);
    load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// The §7 pair: the same services, VIP, VRID and sync, the master at 100 and the backup at 50.
#[test]
fn the_ha_pair_files_differ_only_where_they_must() {
    let master = config_file("keepalived-ha-master.conf");
    let backup = config_file("keepalived-ha-backup.conf");
    for c in [&master, &backup] {
        assert!(
            c.warnings.is_empty(),
            "{:?}",
            c.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>()
        );
        assert_eq!(c.vrrp.instances.len(), 1);
        let s = &c.services.services[0];
        assert_eq!(s.key.vip, Ipv4Addr::new(192, 168, 150, 100));
        assert!(s
            .dests
            .iter()
            .all(|d| matches!(d.forward, crate::model::Forward::Tunnel(_))));
        assert_eq!(
            c.vrrp.sync,
            Some(SyncConfig {
                id: 51,
                ..SyncConfig::new("eth0", "VI_1")
            })
        );
    }
    assert_eq!(master.services, backup.services);
    let (m, b) = (&master.vrrp.instances[0], &backup.vrrp.instances[0]);
    assert_eq!((m.initial, m.priority), (InitialState::Master, 100));
    assert_eq!((b.initial, b.priority), (InitialState::Backup, 50));
    assert_eq!(
        InstanceConfig {
            initial: InitialState::Backup,
            priority: 50,
            ..m.clone()
        },
        *b
    );
    assert_eq!(m.auth_pass, Some(*b"1111\0\0\0\0"));
    assert_eq!(
        m.vips[0].to_line(),
        "192.168.150.100/24 dev eth0 label eth0:3"
    );
    assert_eq!(master.vrrp.router_id.as_deref(), Some("LVS_A"));
    assert_eq!(backup.vrrp.router_id.as_deref(), Some("LVS_B"));
}

/// A keepalived.conf as an operator writes it, with IPv6 VRRP addresses: keepalived accepts
/// them (the instance becomes VRRPv3 over IPv6), tunlb refuses each at its place rather than
/// leave the address unannounced. An instance mixing families is refused as keepalived words it
/// ("address family must match VRRP instance"; keepalived drops the address, tunlb refuses it).
#[test]
fn an_ipv6_instance_is_vrrpv3_over_ipv6() {
    let conf = ok("\
global_defs {
    vrrp_version 2
    vrrp_mcast_group6 ff02::12
}
vrrp_instance VI_6 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 100
    advert_int 0.5
    authentication {
        auth_type PASS
        auth_pass secret
    }
    virtual_ipaddress {
        2001:db8::100/64 dev eth0
        2001:db8::101
    }
    unicast_src_ip fe80::11
    unicast_peer {
        fe80::14
    }
}
vrrp_instance VI_4 {
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {
        192.0.2.1/24
    }
}
");
    let v6 = &conf.vrrp.instances[0];
    assert!(v6.is_ipv6());
    // keepalived forces version 3 over IPv6; its auth is ignored (with a warning).
    assert_eq!((v6.version, v6.auth_pass), (Version::V3, None));
    assert_eq!(v6.advert_int, Duration::from_millis(500));
    let vips: Vec<String> = v6.vips.iter().map(VirtualIp::to_line).collect();
    assert_eq!(vips, ["2001:db8::100/64 dev eth0", "2001:db8::101/128"]);
    assert_eq!(v6.unicast_src, Some("fe80::11".parse().unwrap()));
    assert_eq!(
        v6.unicast_peers,
        ["fe80::14".parse::<std::net::IpAddr>().unwrap()]
    );
    // The IPv4 instance with the same VRID on the same interface is another router.
    let v4 = &conf.vrrp.instances[1];
    assert!(!v4.is_ipv6());
    assert_eq!(v4.version, Version::V2);
    assert!(
        conf.warnings
            .iter()
            .any(|d| d.message.contains("version 3 has no authentication")),
        "{:?}",
        conf.warnings
    );
}

#[test]
fn mixing_address_families_in_an_instance_is_refused_at_its_place() {
    check(
        &errors("global_defs {\n    vrrp_mcast_group6 ff02::1\n}\n"),
        &[(2, 23, "global_defs vrrp_mcast_group6: only ff02::12 (VRRP's IPv6 group) is supported by tunlb, found ff02::1")],
    );
    let text = "\
global_defs {
    router_id LVS_A
}
vrrp_instance VI_6 {
    state MASTER
    interface eth0
    virtual_router_id 61
    priority 100
    advert_int 1
    virtual_ipaddress {
        2001:db8::1/64 dev eth0
        2001:db8::2
        192.0.2.9/24
    }
    unicast_peer {
        192.0.2.14
    }
}
vrrp_instance VI_4 {
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {
        192.0.2.1/24
        2001:db8::3/64
    }
    unicast_src_ip 2001:db8::11
    virtual_ipaddress_excluded {
        2001:db8::4/64
        192.0.2.5
    }
}
virtual_server 192.0.2.1 80 {
    lb_kind TUN
    protocol TCP
    real_server 10.3.0.12 80 {
    }
}
";
    check(
        &errors(text),
        &[
            (13, 9, "vrrp_instance VI_6: virtual_ipaddress 192.0.2.9/24: address family must match VRRP instance (its first address 2001:db8::1/64 is IPv6; keepalived ignores this address, tunlb refuses it)"),
            (15, 5, "vrrp_instance VI_6: unicast_peer 192.0.2.14: address family must match VRRP instance (it is IPv6)"),
            (24, 9, "vrrp_instance VI_4: virtual_ipaddress 2001:db8::3/64: address family must match VRRP instance (its first address 192.0.2.1/24 is IPv4; keepalived ignores this address, tunlb refuses it)"),
            (26, 5, "vrrp_instance VI_4: unicast_src_ip 2001:db8::11: address family must match VRRP instance (it is IPv4)"),
            (27, 5, "vrrp_instance VI_4: virtual_ipaddress_excluded is not supported by tunlb"),
        ],
    );
    // The same from a file, as `check-config` and `director --keepalived-conf` print it.
    let path = std::env::temp_dir().join(format!("tunlb-kv6-{}.conf", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let shown = load(&path).expect_err("mixed families refused").to_string();
    std::fs::remove_file(&path).unwrap();
    assert!(
        shown.contains("tunlb-kv6-") && shown.contains(".conf:15:5: vrrp_instance VI_6: unicast_peer 192.0.2.14: address family must match"),
        "{shown}"
    );
}
