use super::*;

fn vip(words: &str) -> Result<VirtualIp, (usize, String)> {
    let w: Vec<&str> = words.split_whitespace().collect();
    parse_vip(&w)
}

#[test]
fn vip_lines_parse_as_keepalived_writes_them() {
    let v = vip("192.168.150.100/24 dev eth0 label eth0:3").expect("parses");
    assert_eq!(v.addr, Ipv4Addr::new(192, 168, 150, 100));
    assert_eq!(v.prefix, 24);
    assert_eq!(v.dev.as_deref(), Some("eth0"));
    assert_eq!(v.label.as_deref(), Some("eth0:3"));
    assert_eq!(v.to_line(), "192.168.150.100/24 dev eth0 label eth0:3");
    let plain = vip("10.0.0.1").expect("parses");
    assert_eq!((plain.prefix, &plain.dev, &plain.label), (32, &None, &None));
    let flags =
        vip("10.0.0.2/32 brd 10.0.0.255 scope global no_track -nodad home").expect("parses");
    assert_eq!(flags.addr, Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(vip(&plain.to_line()).expect("round trip"), plain);
}

#[test]
fn ipv6_vip_lines_parse_with_a_128_bit_prefix() {
    let v = vip("2001:db8::100/64 dev eth0 nodad").expect("parses");
    assert_eq!(v.addr, "2001:db8::100".parse::<IpAddr>().unwrap());
    assert_eq!((v.prefix, v.dev.as_deref()), (64, Some("eth0")));
    assert_eq!(v.to_line(), "2001:db8::100/64 dev eth0");
    assert_eq!(vip("fe80::1").expect("link-local").prefix, 128);
}

#[test]
fn bad_vip_lines_name_the_word() {
    for (line, word, msg) in [
        ("10.0.0.300/24", 0, "expected an address like 192.0.2.1/24"),
        ("10.0.0.1/33", 0, "expected an address"),
        ("10.0.0.1/+3", 0, "expected an address"),
        ("2001:db8::1/129", 0, "or 2001:db8::1/64"),
        ("ff02::12", 0, "expected a unicast address"),
        ("::", 0, "expected a unicast address"),
        ("224.0.0.1", 0, "expected a unicast address"),
        ("10.0.0.1 dev", 1, "expected a value after 'dev'"),
        ("10.0.0.1 dev a/b", 2, "is not an interface name"),
        ("10.0.0.1 colour blue", 1, "unexpected 'colour'"),
    ] {
        let (at, m) = vip(line).expect_err(line);
        assert_eq!(at, word, "{line}: {m}");
        assert!(m.contains(msg), "{line}: {m}");
    }
}

#[test]
fn seconds_are_exact_decimals() {
    assert_eq!(parse_seconds("1"), Some(Duration::from_secs(1)));
    assert_eq!(parse_seconds("0.1"), Some(Duration::from_millis(100)));
    assert_eq!(parse_seconds("2.25"), Some(Duration::from_millis(2250)));
    assert_eq!(parse_seconds(".5"), Some(Duration::from_millis(500)));
    assert_eq!(parse_seconds("0.000000001"), Some(Duration::from_nanos(1)));
    for bad in [
        "",
        ".",
        "1.",
        "-1",
        "+1",
        "1e3",
        "0.0000000001",
        "a",
        "1.2.3",
    ] {
        assert_eq!(parse_seconds(bad), None, "{bad}");
    }
}

#[test]
fn auth_pass_is_truncated_and_padded_to_8_bytes() {
    assert_eq!(auth_pass_bytes("1111"), Some(*b"1111\0\0\0\0"));
    assert_eq!(auth_pass_bytes("123456789"), Some(*b"12345678"));
    assert_eq!(auth_pass_bytes(""), None);
    assert_eq!(auth_pass_text(b"1111\0\0\0\0"), "1111");
    assert_eq!(auth_pass_text(b"12345678"), "12345678");
}

#[test]
fn interface_names_follow_the_kernel() {
    assert!(is_ifname("eth0"));
    assert!(is_ifname("a23456789012345"));
    for bad in ["", ".", "..", "a234567890123456", "eth0:3", "a/b", "a b"] {
        assert!(!is_ifname(bad), "{bad}");
    }
}

fn one(name: &str, vrid: u8) -> InstanceConfig {
    let mut i = InstanceConfig::new(name, "eth0", vrid);
    i.vips.push(vip("10.0.0.100").expect("vip"));
    i
}

fn issues(cfg: &mut VrrpConfig) -> Vec<(Subject, bool, String)> {
    cfg.finish()
        .into_iter()
        .map(|i| (i.subject, i.error, i.message))
        .collect()
}

#[test]
fn a_plain_instance_has_no_issue() {
    let mut cfg = VrrpConfig {
        instances: vec![one("VI_1", 51)],
        ..VrrpConfig::default()
    };
    assert!(issues(&mut cfg).is_empty());
    assert_eq!(
        cfg.summary(),
        ["VRRP instance VI_1: BACKUP priority 100, VRID 51 on eth0, v2 every 1s, VIPs 10.0.0.100/32"]
    );
}

#[test]
fn keepalived_corrections_are_warnings_and_applied() {
    let mut v3 = one("A", 1);
    v3.version = Version::V3;
    v3.auth_pass = auth_pass_bytes("x");
    let mut master_nopreempt = one("B", 2);
    master_nopreempt.initial = InitialState::Master;
    master_nopreempt.preempt = false;
    let mut master_delay = one("C", 3);
    master_delay.initial = InitialState::Master;
    master_delay.preempt_delay = Duration::from_secs(5);
    let mut owner = one("D", 4);
    owner.priority = 255;
    owner.preempt = false;
    let mut nopreempt_delay = one("E", 5);
    nopreempt_delay.preempt = false;
    nopreempt_delay.preempt_delay = Duration::from_secs(5);
    let mut no_vips = one("F", 6);
    no_vips.vips.clear();
    let mut cfg = VrrpConfig {
        instances: vec![
            v3,
            master_nopreempt,
            master_delay,
            owner,
            nopreempt_delay,
            no_vips,
        ],
        ..VrrpConfig::default()
    };
    let got = issues(&mut cfg);
    let expect: [(Subject, &str); 7] = [
        (
            Subject::Field(0, "authentication"),
            "vrrp_instance A: VRRP version 3 has no authentication",
        ),
        (
            Subject::Field(1, "nopreempt"),
            "vrrp_instance B: nopreempt does not work with state MASTER",
        ),
        (
            Subject::Field(2, "preempt_delay"),
            "vrrp_instance C: preempt_delay does not work with state MASTER",
        ),
        (
            Subject::Field(3, "nopreempt"),
            "vrrp_instance D: nopreempt does not work with priority 255",
        ),
        (
            Subject::Field(3, "priority"),
            "vrrp_instance D: priority 255 is the address owner",
        ),
        (
            Subject::Field(4, "preempt_delay"),
            "vrrp_instance E: preempt_delay has no meaning with nopreempt",
        ),
        (
            Subject::Instance(5),
            "vrrp_instance F: no virtual_ipaddress",
        ),
    ];
    assert_eq!(got.len(), expect.len(), "{got:#?}");
    for ((s, error, m), (es, em)) in got.iter().zip(expect) {
        assert_eq!(*s, es, "{m}");
        assert!(!error, "{m}");
        assert!(m.starts_with(em), "{m:?} does not start with {em:?}");
    }
    let i = &cfg.instances;
    assert_eq!(i[0].auth_pass, None);
    assert!(i[1].preempt);
    assert_eq!(i[2].preempt_delay, Duration::ZERO);
    assert!(i[3].preempt);
    assert_eq!(i[4].preempt_delay, Duration::ZERO);
}

#[test]
fn advert_int_must_fit_the_version() {
    let cases = [
        (Version::V2, 1000, true),
        (Version::V2, 255_000, true),
        (Version::V2, 500, false),
        (Version::V2, 1500, false),
        (Version::V2, 256_000, false),
        (Version::V3, 10, true),
        (Version::V3, 40_950, true),
        (Version::V3, 15, false),
        (Version::V3, 41_000, false),
    ];
    for (version, ms, ok) in cases {
        let mut i = one("VI", 1);
        i.version = version;
        i.advert_int = Duration::from_millis(ms);
        let mut cfg = VrrpConfig {
            instances: vec![i],
            ..VrrpConfig::default()
        };
        let got = issues(&mut cfg);
        if ok {
            assert!(got.is_empty(), "{version:?} {ms}: {got:?}");
        } else {
            assert_eq!(got.len(), 1, "{version:?} {ms}: {got:?}");
            assert_eq!(got[0].0, Subject::Field(0, "advert_int"));
            assert!(got[0].1);
        }
    }
}

#[test]
fn too_many_vips_is_an_error() {
    let mut i = one("VI", 1);
    i.vips = (0..256u32)
        .map(|n| VirtualIp {
            addr: Ipv4Addr::from(0x0a00_0000 + n + 1).into(),
            prefix: 32,
            dev: None,
            label: None,
        })
        .collect();
    let mut cfg = VrrpConfig {
        instances: vec![i],
        ..VrrpConfig::default()
    };
    let got = issues(&mut cfg);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].1 && got[0].2.contains("at most 255"), "{got:?}");
}

#[test]
fn cross_references_are_checked() {
    let mut a = one("A", 1);
    a.track_scripts = vec![
        TrackScript {
            name: "chk".into(),
            weight: None,
        },
        TrackScript {
            name: "nope".into(),
            weight: Some(5),
        },
        TrackScript {
            name: "chk".into(),
            weight: None,
        },
    ];
    a.track_interfaces = vec![
        TrackInterface {
            name: "eth1".into(),
            weight: None,
        },
        TrackInterface {
            name: "eth1".into(),
            weight: Some(-10),
        },
    ];
    let b = one("B", 1); // same VRID on the same interface
    let dup = one("A", 2);
    let script = ScriptConfig {
        name: "chk".into(),
        script: "true".into(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        weight: 0,
        rise: 1,
        fall: 1,
        user: None,
    };
    let group = |name: &str, members: &[&str]| SyncGroupConfig {
        name: name.into(),
        members: members.iter().map(|m| m.to_string()).collect(),
        notify: Notify::default(),
    };
    let mut cfg = VrrpConfig {
        router_id: None,
        instances: vec![a, b, dup],
        scripts: vec![script.clone(), script],
        sync_groups: vec![
            group("G", &["A", "B", "Z", "A"]),
            group("H", &["B"]),
            group("G", &[]),
        ],
        sync: Some(SyncConfig::new("eth0", "VI_9")),
        script_user: None,
    };
    let got = issues(&mut cfg);
    let expect: [(Subject, bool, &str); 12] = [
        (
            Subject::TrackScript(0, 1),
            true,
            "vrrp_instance A: track_script nope: no vrrp_script",
        ),
        (
            Subject::TrackScript(0, 2),
            true,
            "vrrp_instance A: track_script chk is listed twice",
        ),
        (
            Subject::TrackInterface(0, 1),
            true,
            "vrrp_instance A: track_interface eth1 is listed twice",
        ),
        (
            Subject::Field(1, "virtual_router_id"),
            true,
            "vrrp_instance B: A and B both use VRID 1 on interface eth0",
        ),
        (
            Subject::Instance(2),
            true,
            "vrrp_instance A is already defined",
        ),
        (
            Subject::Script(1),
            true,
            "vrrp_script chk is already defined",
        ),
        (
            Subject::Member(0, 2),
            true,
            "vrrp_sync_group G: no vrrp_instance named Z",
        ),
        (
            Subject::Member(0, 3),
            true,
            "vrrp_sync_group G: A is listed twice",
        ),
        (
            Subject::SyncGroup(1),
            false,
            "vrrp_sync_group H has only 1 instance",
        ),
        (
            Subject::Member(1, 0),
            true,
            "vrrp_sync_group H: B is already in vrrp_sync_group G",
        ),
        (
            Subject::SyncGroup(2),
            true,
            "vrrp_sync_group G is already defined",
        ),
        (
            Subject::SyncInstance,
            true,
            "lvs_sync_daemon: no vrrp_instance named VI_9",
        ),
    ];
    // The empty duplicate group also lacks members.
    let mut got = got;
    let empty = got
        .iter()
        .position(|(s, _, m)| *s == Subject::SyncGroup(2) && m.contains("expected a `group`"))
        .expect("empty group reported");
    got.remove(empty);
    assert_eq!(got.len(), expect.len(), "{got:#?}");
    for ((s, e, m), (es, ee, em)) in got.iter().zip(expect) {
        assert_eq!((*s, *e), (es, ee), "{m}");
        assert!(m.starts_with(em), "{m:?} does not start with {em:?}");
    }
}

#[test]
fn lookups_and_the_sync_summary() {
    let mut cfg = VrrpConfig {
        instances: vec![one("VI_1", 51)],
        sync_groups: vec![SyncGroupConfig {
            name: "G".into(),
            members: vec!["VI_1".into()],
            notify: Notify::default(),
        }],
        sync: Some(SyncConfig {
            id: 51,
            key: Some(vec![0; 16]),
            ..SyncConfig::new("eth0", "VI_1")
        }),
        ..VrrpConfig::default()
    };
    cfg.instances[0].auth_pass = auth_pass_bytes("1111");
    cfg.instances[0].preempt = false;
    cfg.instances[0].unicast_peers = vec![Ipv4Addr::new(10, 0, 0, 2).into()];
    assert_eq!(cfg.instance("VI_1").map(|i| i.vrid), Some(51));
    assert!(cfg.instance("VI_2").is_none());
    assert_eq!(cfg.group_of("VI_1").map(|g| g.name.as_str()), Some("G"));
    assert_eq!(
        cfg.summary(),
        [
            "VRRP instance VI_1: BACKUP priority 100, VRID 51 on eth0, v2 every 1s, nopreempt, auth PASS, unicast to 10.0.0.2, VIPs 10.0.0.100/32, sync group G",
            "connection sync: on eth0 following VI_1, id 51, to 224.0.0.81 port 8848, ttl 1, maxlen 1472, authenticated",
        ]
    );
}
