use super::*;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::director::snat::SnatRule;
use crate::encap::{Tunnel, TunnelType};
use crate::model::{ExpirePolicy, Forward, Persistence, SchedulerKind};

const SEED: &str = r#"
[director]
queues = 2
tun_name = "tunlb0"
tunnel_mtu = 1500
local_address = "192.168.150.2"
announce = ["eth0"]

[timeouts]
tcp = 900
tcpfin = 120
udp = 300

[[service]]
vip = "192.168.150.100"
port = 80
protocol = "tcp"
scheduler = "rr"

  [[service.real_server]]
  address = "192.168.150.12"
  port = 80
  weight = 1
  forward = "tunnel"

  [[service.real_server]]
  address = "192.168.150.13"
  forward = "tunnel"
  tun_type = "gue"
  tun_port = 6080

[[service]]
vip = "192.168.150.101"
port = 0
protocol = "udp"
persistence = 600
netmask = "255.255.255.0"
mss_clamp = 1400
expire_nodest_conn = false
expire_quiescent_template = true

  [[service.real_server]]
  address = "10.0.2.12"
  forward = "tunnel"
  tun_type = "gre"
  tun_csum = true
  gre_key = 7
  u_threshold = 100
  l_threshold = 50
"#;

fn problems(text: &str) -> Vec<(usize, usize, String)> {
    match load_str(text, "t.toml") {
        Ok(_) => Vec::new(),
        Err(ConfigErrors::Invalid { problems, .. }) => problems
            .into_iter()
            .map(|p| (p.line, p.column, p.message))
            .collect(),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn seed_config_loads() {
    let (settings, set) = load_str(SEED, "seed.toml").expect("valid");
    assert_eq!(settings.queues, 2);
    assert_eq!(
        settings.local_address,
        Some(Ipv4Addr::new(192, 168, 150, 2))
    );
    assert_eq!(set.services.len(), 2);
    let web = &set.services[0];
    assert_eq!(web.key.to_string(), "TCP 192.168.150.100:80");
    assert_eq!(web.scheduler, SchedulerKind::Rr);
    assert_eq!(web.dests[0].forward, Forward::tunnel(TunnelType::Ipip));
    assert_eq!(web.dests[1].port, 80);
    assert_eq!(web.dests[1].forward, Forward::tunnel(TunnelType::Gue));
    let dns = &set.services[1];
    assert_eq!(
        dns.persistence,
        Some(Persistence {
            timeout: 600,
            netmask: Ipv4Addr::new(255, 255, 255, 0).into()
        })
    );
    assert_eq!(dns.mss_clamp, Some(1400));
    assert_eq!(
        dns.policy,
        ExpirePolicy {
            expire_nodest_conn: false,
            expire_quiescent_template: true
        }
    );
    assert!(web.policy.is_default());
    assert_eq!(dns.dests[0].port, 0);
    assert_eq!(
        dns.dests[0].forward,
        Forward::Tunnel(Tunnel::Gre {
            key: Some(7),
            csum: true
        })
    );
}

#[test]
fn empty_config_is_all_defaults() {
    let (settings, set) = load_str("", "empty.toml").expect("valid");
    assert_eq!(settings, DirectorSettings::default());
    assert!(set.services.is_empty());
}

#[test]
fn every_problem_is_reported_with_its_place() {
    let text = r#"[director]
queues = 0
tun_name = "a/b"

[[service]]
vip = "192.168.150.300"
port = 80
scheduler = "fastest"

  [[service.real_server]]
  address = "10.0.0.1"
  port = 8080
  weight = 70000
  forward = "tunnel"
  tun_port = 7000

[[service]]
port = 443
"#;
    let got = problems(text);
    let expect: Vec<(usize, usize, &str)> = vec![
        (
            2,
            10,
            "director.queues: expected an integer from 1 to 256, found 0",
        ),
        (3, 12, "director.tun_name: expected an interface name"),
        (6, 7, "service[0].vip: expected an IPv4 address"),
        (8, 13, "service[0].scheduler: unknown scheduler \"fastest\""),
        (
            12,
            10,
            "service[0].real_server[0].port: expected 80 (the service's port)",
        ),
        (
            13,
            12,
            "service[0].real_server[0].weight: expected an integer from 0 to 65535",
        ),
        (
            15,
            14,
            "service[0].real_server[0].tun_port: only valid with tun_type = \"gue\"",
        ),
        (17, 1, "service[1]: missing key `vip`"),
    ];
    assert_eq!(got.len(), expect.len(), "{got:#?}");
    for ((line, col, msg), (el, ec, em)) in got.iter().zip(&expect) {
        assert_eq!((line, col), (el, ec), "{msg}");
        assert!(msg.starts_with(em), "{msg:?} does not start with {em:?}");
    }
}

#[test]
fn unknown_keys_are_refused_with_their_place() {
    let text = "[[service]]\nvip = \"10.0.0.1\"\nport = 80\nschedular = \"rr\"\n";
    let got = problems(text);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0, got[0].1), (4, 1));
    assert!(
        got[0].2.contains("unknown field `schedular`"),
        "{}",
        got[0].2
    );
}

#[test]
fn syntax_errors_have_a_place() {
    let got = problems("[director]\nqueues = = 2\n");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, 2);
}

#[test]
fn duplicates_and_semantics() {
    let text = r#"
[[service]]
vip = "10.0.0.1"
port = 0

[[service]]
vip = "10.0.0.2"
port = 80
netmask = "255.255.255.0"

  [[service.real_server]]
  address = "10.0.1.1"
  forward = "nat"
  port = 8080
  u_threshold = 5
  l_threshold = 9

  [[service.real_server]]
  address = "10.0.1.1"
  forward = "nat"
  port = 8080

  [[service.real_server]]
  address = "10.0.1.2"
  forward = "dr"
  tun_type = "gre"

[[service]]
vip = "10.0.0.2"
port = 80
"#;
    let got = problems(text);
    let msgs: Vec<&str> = got.iter().map(|p| p.2.as_str()).collect();
    assert_eq!(got.len(), 6, "{msgs:#?}");
    assert!(msgs[0].starts_with("service[0].port: port 0 (every port) needs `persistence`"));
    assert!(msgs[1].starts_with("service[1].netmask: only meaningful with `persistence`"));
    assert!(msgs[2].starts_with("service[1].real_server[0].l_threshold: must not exceed"));
    assert!(msgs[3].starts_with("service[1].real_server[1]: duplicate real server 10.0.1.1:8080"));
    assert!(msgs[4]
        .starts_with("service[1].real_server[2].tun_type: only valid with forward = \"tunnel\""));
    assert!(msgs[5]
        .starts_with("service[2]: duplicate service TCP 10.0.0.2:80 (first defined on line 7)"));
    assert_eq!(got[5].0, 29);
}

#[test]
fn errors_display_as_file_line_column() {
    let err = load_str("[timeouts]\ntcp = 0\n", "d.toml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "d.toml:2:7: timeouts.tcp: expected an integer from 1 to 2678400, found 0"
    );
}

#[test]
fn expire_policy_keys_must_be_booleans() {
    let text = "[[service]]\nvip = \"10.0.0.1\"\nport = 80\nexpire_nodest_conn = 0\n";
    let err = load_str(text, "p.toml").unwrap_err().to_string();
    assert!(err.starts_with("p.toml:4:22: "), "{err}");
    assert!(err.contains("bool"), "{err}");
}

#[test]
fn to_toml_writes_the_expire_policy_only_when_not_default() {
    let (settings, set) = load_str(SEED, "seed.toml").unwrap();
    let text = to_toml(&set, &settings);
    assert_eq!(text.matches("expire_nodest_conn = false").count(), 1);
    assert_eq!(text.matches("expire_quiescent_template = true").count(), 1);
    assert_eq!(text.matches("expire_").count(), 2);
}

#[test]
fn to_toml_round_trips() {
    let (settings, set) = load_str(SEED, "seed.toml").unwrap();
    let text = to_toml(&set, &settings);
    let (settings2, set2) = load_str(&text, "saved.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(settings2, settings);
    assert_eq!(set2, set);
}

const ROUTES: &str = r#"[[tunnel_route]]
prefix = "172.16.8.0/22"
via = "10.99.0.2"
encap = "gre"
gre_key = 9

[[tunnel_route]]
prefix = "172.20.0.0/16"
via = "10.99.0.3"
encap = "gue"
gue_port = 7000
"#;

#[test]
fn tunnel_routes_load_and_round_trip() {
    let (settings, set) = load_str(ROUTES, "routes.toml").expect("valid");
    let r = &settings.tunnel_routes;
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].prefix, "172.16.8.0/22".parse().unwrap());
    assert_eq!(r[0].via, Ipv4Addr::new(10, 99, 0, 2));
    assert_eq!(
        r[0].tunnel,
        Tunnel::Gre {
            key: Some(9),
            csum: false
        }
    );
    assert_eq!(
        r[1].tunnel,
        Tunnel::Gue {
            port: 7000,
            csum: false
        }
    );
    let text = to_toml(&set, &settings);
    let (again, _) = load_str(&text, "saved.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(again, settings);
}

#[test]
fn bad_tunnel_routes_are_reported_with_their_place() {
    let text = r#"[[tunnel_route]]
prefix = "172.16.8.0/22"
via = "10.99.0.2"
encap = "gre"

[[tunnel_route]]
prefix = "172.16.10.0/24"
via = "10.99.0.3"
encap = "ipip"

[[tunnel_route]]
prefix = "10.7.0.1/24"
via = "10.99.0.300"
encap = "vxlan"
gue_port = 1

[[tunnel_route]]
via = "10.99.0.2"
encap = "ipip"
gre_key = 1
mtu = 1400
"#;
    let err = load_str(text, "r.toml").unwrap_err().to_string();
    // An unknown key stops the parse at once (the TOML parser's limit).
    assert!(err.starts_with("r.toml:21:1: unknown field `mtu`"), "{err}");
    let got = problems(&text.replace("mtu = 1400\n", ""));
    let lines: Vec<(usize, usize)> = got.iter().map(|(l, c, _)| (*l, *c)).collect();
    assert_eq!(
        lines,
        [(7, 10), (12, 10), (13, 7), (14, 9), (17, 1), (20, 11)],
        "{got:#?}"
    );
    assert!(
        got[0].2.contains("overlaps 172.16.8.0/22 (line 2)"),
        "{}",
        got[0].2
    );
    assert!(got[1].2.contains("host bits"), "{}", got[1].2);
    assert!(got[4].2.contains("missing key `prefix`"), "{}", got[4].2);
    assert!(
        got[5].2.contains("only with encap = \"gre\""),
        "{}",
        got[5].2
    );
}

const ROUTES6: &str = r#"[[tunnel_route]]
prefix = "172.16.8.0/22"
via = "10.99.0.2"
encap = "gre"

[[tunnel_route]]
prefix = "2001:db8:8::/48"
via = "10.99.0.2"
encap = "gre"

[[tunnel_route]]
prefix = "2001:db8:20::/44"
via = "10.99.0.3"
encap = "gue"
gue_port = 7000
"#;

#[test]
fn ipv6_tunnel_routes_load_and_round_trip() {
    let (settings, set) = load_str(ROUTES6, "routes6.toml").expect("valid");
    let r = &settings.tunnel_routes;
    assert_eq!(r.len(), 3);
    assert_eq!(r[1].prefix, "2001:db8:8::/48".parse().unwrap());
    assert_eq!(r[1].via, Ipv4Addr::new(10, 99, 0, 2));
    assert_eq!(
        r[1].tunnel,
        Tunnel::Gre {
            key: None,
            csum: false
        }
    );
    assert_eq!(r[2].prefix, "2001:db8:20::/44".parse().unwrap());
    assert_eq!(
        r[2].tunnel,
        Tunnel::Gue {
            port: 7000,
            csum: false
        }
    );
    let text = to_toml(&set, &settings);
    assert!(text.contains("prefix = \"2001:db8:8::/48\""), "{text}");
    let (again, _) = load_str(&text, "saved.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(again, settings);
}

#[test]
fn bad_ipv6_tunnel_routes_are_reported_with_their_place() {
    let text = r#"[[tunnel_route]]
prefix = "2001:db8:8::/48"
via = "10.99.0.2"
encap = "gre"

[[tunnel_route]]
prefix = "2001:db8:8:40::/58"
via = "10.99.0.3"
encap = "gre"

[[tunnel_route]]
prefix = "2001:db8:9::1/48"
via = "10.99.0.2"
encap = "gre"

[[tunnel_route]]
prefix = "::/0"
via = "10.99.0.2"
encap = "gre"

[[tunnel_route]]
prefix = "2001:db8:a::/48"
via = "10.99.0.4"
encap = "ipip"

[[tunnel_route]]
prefix = "2001:db8:b::/48x"
via = "10.99.0.2"
encap = "gre"

[[tunnel_route]]
prefix = "2001:db8:c::/48"
via = "2001:db8::1"
encap = "gre"
"#;
    let got = problems(text);
    let lines: Vec<(usize, usize)> = got.iter().map(|(l, c, _)| (*l, *c)).collect();
    assert_eq!(
        lines,
        [(7, 10), (12, 10), (17, 10), (24, 9), (27, 10), (33, 7)],
        "{got:#?}"
    );
    assert!(
        got[0].2.contains("overlaps 2001:db8:8::/48 (line 2)"),
        "{}",
        got[0].2
    );
    assert!(
        got[1].2.contains("did you mean 2001:db8:9::/48?"),
        "{}",
        got[1].2
    );
    assert!(got[2].2.contains("default route (/0)"), "{}", got[2].2);
    assert!(
        got[3].2.contains("needs \"gre\" or \"gue\""),
        "{}",
        got[3].2
    );
    assert!(got[4].2.contains("expected a CIDR"), "{}", got[4].2);
    assert!(got[5].2.contains("tunnel_route[6].via"), "{}", got[5].2);
    // An IPv4 and an IPv6 prefix never overlap.
    let both =
        "[[tunnel_route]]\nprefix = \"128.0.0.0/1\"\nvia = \"10.99.0.2\"\nencap = \"gre\"\n\n\
                [[tunnel_route]]\nprefix = \"::/1\"\nvia = \"10.99.0.2\"\nencap = \"gre\"\n";
    let (settings, _) = load_str(both, "both.toml").expect("no overlap across families");
    assert_eq!(settings.tunnel_routes.len(), 2);
}

#[test]
fn reads_snat_rules_and_writes_them_back() {
    let text = "[[snat]]\nsource = \"10.0.0.0/24\"\nto = [\"192.0.2.10\", \"192.0.2.11\"]\n\n\
                [[snat]]\nsource = \"10.9.0.0/16\"\nto = [\"192.0.2.12\"]\n";
    let (settings, set) = load_str(text, "snat.toml").unwrap();
    assert_eq!(
        settings.snat,
        [
            SnatRule {
                source: "10.0.0.0/24".parse().unwrap(),
                to: vec![
                    Ipv4Addr::new(192, 0, 2, 10).into(),
                    Ipv4Addr::new(192, 0, 2, 11).into(),
                ],
            },
            SnatRule {
                source: "10.9.0.0/16".parse().unwrap(),
                to: vec![Ipv4Addr::new(192, 0, 2, 12).into()],
            },
        ]
    );
    let saved = to_toml(&set, &settings);
    let (again, _) = load_str(&saved, "saved.toml").unwrap_or_else(|e| panic!("{e}\n{saved}"));
    assert_eq!(again.snat, settings.snat);
}

#[test]
fn reads_ipv6_snat_rules_beside_ipv4_ones_and_writes_them_back() {
    let text = "[[snat]]\nsource = \"10.0.0.0/24\"\nto = [\"192.0.2.10\"]\n\n\
                [[snat]]\nsource = \"2001:db8:10::/64\"\nto = [\"2001:db8:ff::10\", \"2001:db8:ff::11\"]\n";
    let (settings, set) = load_str(text, "snat6.toml").unwrap();
    let v6 = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    assert_eq!(
        settings.snat[1],
        SnatRule {
            source: "2001:db8:10::/64".parse().unwrap(),
            to: vec![v6("2001:db8:ff::10"), v6("2001:db8:ff::11")],
        }
    );
    let saved = to_toml(&set, &settings);
    let (again, _) = load_str(&saved, "saved.toml").unwrap_or_else(|e| panic!("{e}\n{saved}"));
    assert_eq!(again.snat, settings.snat);
}

#[test]
fn rejects_bad_ipv6_snat_rules_with_their_place() {
    let text = "[[snat]]\nsource = \"2001:db8:10::5/64\"\nto = [\"2001:db8:ff::10\"]\n\
                [[snat]]\nsource = \"2001:db8:20::/64\"\nto = [\"192.0.2.1\", \"ff02::1\", \"2001:db8:ff::1\"]\n\
                [[snat]]\nsource = \"2001:db8:20::/80\"\nto = [\"2001:db8:ff::2\"]\n\
                [[snat]]\nsource = \"10.0.0.0/24\"\nto = [\"2001:db8:ff::3\"]\n";
    let found = problems(text);
    let expect: [(usize, usize, &str); 5] = [
        (
            2,
            10,
            "snat[0].source: 2001:db8:10::5/64 has host bits set; the prefix is 2001:db8:10::/64",
        ),
        (
            6,
            7,
            "snat[1].to[0]: 192.0.2.1 is an IPv4 address but the source 2001:db8:20::/64 is IPv6",
        ),
        (6, 20, "snat[1].to[1]: expected a unicast"),
        (
            8,
            10,
            "snat[2].source: 2001:db8:20::/80 overlaps 2001:db8:20::/64 (line 5)",
        ),
        (
            12,
            7,
            "snat[3].to[0]: 2001:db8:ff::3 is an IPv6 address but the source 10.0.0.0/24 is IPv4",
        ),
    ];
    assert_eq!(found.len(), expect.len(), "{found:#?}");
    for ((line, col, msg), (el, ec, em)) in found.iter().zip(expect) {
        assert_eq!((*line, *col), (el, ec), "{msg}");
        assert!(msg.starts_with(em), "{msg:?} does not start with {em:?}");
    }
}

#[test]
fn rejects_bad_snat_rules_with_their_place() {
    let text = "[[snat]]\nsource = \"10.0.0.5/24\"\nto = [\"192.0.2.1\"]\n\
                [[snat]]\nsource = \"10.0.0.0/16\"\nto = []\n\
                [[snat]]\nsource = \"10.1.0.0/24\"\nto = [\"192.0.2.1\", \"x\", \"192.0.2.1\"]\n\
                [[snat]]\nsource = \"10.1.0.0/25\"\nto = [\"192.0.2.3\"]\n\
                [[snat]]\nsource = \"nope\"\n\
                [[snat]]\nfrom = \"10.0.0.0/8\"\n";
    let found = problems(text);
    let unknown = problems("[[snat]]\nfrom = \"10.0.0.0/8\"\n");
    assert_eq!(unknown.len(), 1);
    assert_eq!((unknown[0].0, unknown[0].1), (2, 1), "{unknown:?}");
    assert!(unknown[0].2.contains("unknown field `from`"), "{unknown:?}");
    // The unknown key stops parsing (line 16 of the whole text); check the rest without it.
    assert_eq!(found, [(16, 1, unknown[0].2.clone())]);
    let text = &text[..text.rfind("[[snat]]").unwrap()];
    let found = problems(text);
    let expect: [(usize, usize, &str); 7] = [
        (
            2,
            10,
            "snat[0].source: 10.0.0.5/24 has host bits set; the prefix is 10.0.0.0/24",
        ),
        (6, 6, "snat[1].to: expected at least one address"),
        (9, 20, "snat[2].to[1]: expected an IPv4 address"),
        (9, 25, "snat[2].to[2]: duplicate address 192.0.2.1"),
        (
            11,
            10,
            "snat[3].source: 10.1.0.0/25 overlaps 10.1.0.0/24 (line 8)",
        ),
        (13, 1, "snat[4]: missing key `to`"),
        (
            14,
            10,
            "snat[4].source: expected an IPv4 prefix like \"10.0.0.0/24\" or an IPv6 prefix like \"2001:db8:10::/64\", found \"nope\"",
        ),
    ];
    assert_eq!(found.len(), expect.len(), "{found:#?}");
    for ((line, col, msg), (el, ec, em)) in found.iter().zip(expect) {
        assert_eq!((*line, *col), (el, ec), "{msg}");
        assert!(msg.starts_with(em), "{msg:?} does not start with {em:?}");
    }
}

#[test]
fn every_file_in_configs_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("configs/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        } else if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("bird-"))
        {
            // BIRD's own configs: the ECMP namespace test runs BIRD with them.
        } else if path.extension().is_some_and(|e| e == "conf") {
            // keepalived.conf files (control::keepalived).
            crate::control::keepalived::load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n > 0, "no config in {}", dir.display());
}

/// A real server's `tunnel_key`: loaded (and its file checked) at load time, GUE only, one per
/// address, written back by `to_toml`.
#[test]
fn tunnel_keys_load_check_and_round_trip() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("tunlb-cfg-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("rs1.key");
    std::fs::write(&good, "42".repeat(32)).unwrap();
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o600)).unwrap();
    let open = dir.join("open.key");
    std::fs::write(&open, "42".repeat(32)).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = |tun_type: &str, key: &std::path::Path| {
        format!(
            "[[service]]\nprotocol = \"tcp\"\nvip = \"10.0.0.100\"\nport = 80\n\n  [[service.real_server]]\n  address = \"10.0.2.12\"\n  tun_type = \"{tun_type}\"\n  tunnel_key = \"{}\"\n",
            key.display()
        )
    };
    let (settings, set) = load_str(&config("gue", &good), "k.toml").unwrap();
    assert_eq!(
        settings
            .tunnel_keys
            .get(&std::net::IpAddr::from([10, 0, 2, 12])),
        Some(&good)
    );
    let text = to_toml(&set, &settings);
    assert!(text.contains("tunnel_key = "), "{text}");
    let (settings2, _) = load_str(&text, "saved.toml").unwrap();
    assert_eq!(settings2.tunnel_keys, settings.tunnel_keys);
    // An IPv6 real server's key, with the director's IPv6 outer source, round trip too.
    let v6 = format!(
        "[director]\nlocal_address6 = \"2001:db8:2::2\"\n\n{}",
        config("gue", &good)
            .replace("10.0.0.100", "2001:db8::100")
            .replace("10.0.2.12", "2001:db8:3::12")
    );
    let (settings, set) = load_str(&v6, "k6.toml").unwrap();
    let rs6: std::net::IpAddr = "2001:db8:3::12".parse().unwrap();
    assert_eq!(settings.tunnel_keys.get(&rs6), Some(&good));
    assert_eq!(settings.local_address6, "2001:db8:2::2".parse().ok());
    let (settings2, _) = load_str(&to_toml(&set, &settings), "saved6.toml").unwrap();
    assert_eq!(settings2.tunnel_keys, settings.tunnel_keys);
    assert_eq!(settings2.local_address6, settings.local_address6);
    assert_eq!(
        problems("[director]\nlocal_address6 = \"ff02::1\"\n"),
        [(
            2,
            18,
            "director.local_address6: expected a unicast IPv6 address like \"2001:db8::1\", found \"ff02::1\"".to_string()
        )]
    );
    let p = problems(&config("ipip", &good));
    assert!(
        p.iter()
            .any(|(line, _, m)| *line == 9 && m.contains("only valid with tun_type = \"gue\"")),
        "{p:?}"
    );
    let p = problems(&config("gue", &open));
    assert!(
        p.iter()
            .any(|(line, _, m)| *line == 9 && m.contains("mode 0644")),
        "{p:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `announce_table` (docs/scale-out.md): loads, is written back, and a table the kernel or
/// tunlb already uses is refused with its place.
#[test]
fn announce_table_loads_round_trips_and_refuses_reserved_tables() {
    let (settings, set) = load_str("[director]\nannounce_table = 100\n", "t.toml").expect("valid");
    assert_eq!(settings.announce_table, Some(100));
    let (again, _) = load_str(&to_toml(&set, &settings), "saved.toml").expect("saved");
    assert_eq!(again, settings);
    assert!(!to_toml(&set, &DirectorSettings::default()).contains("announce_table"));
    for bad in ["0", "254", "255", "7461", "-1", "4294967296"] {
        let found = problems(&format!("[director]\nannounce_table = {bad}\n"));
        assert_eq!(found.len(), 1, "{bad}: {found:?}");
        let (line, column, message) = &found[0];
        assert_eq!((*line, *column), (2, 18), "{bad}");
        assert!(
            message.starts_with("director.announce_table: expected a routing table number"),
            "{message}"
        );
    }
}

/// IPv6 VIPs and real servers in the existing schema; `netmask` is a prefix length for an
/// IPv6 service; `--save-config` writes them back.
#[test]
fn ipv6_services_load_and_round_trip() {
    let text = r#"
[[service]]
vip = "2001:db8::1"
port = 80
scheduler = "rr"
persistence = 300
netmask = 64

  [[service.real_server]]
  address = "2001:db8::10"
  forward = "dr"

  [[service.real_server]]
  address = "10.0.1.1"
  forward = "tunnel"
  tun_type = "gue"

[[service]]
vip = "10.0.0.1"
port = 80
persistence = 300
netmask = "255.255.255.0"

  [[service.real_server]]
  address = "2001:db8::11"
  forward = "tunnel"
"#;
    let (settings, set) = load_str(text, "v6.toml").unwrap_or_else(|e| panic!("{e}"));
    let s = &set.services[0];
    assert_eq!(
        s.key.vip,
        "2001:db8::1".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(
        s.persistence.unwrap().netmask,
        crate::model::Netmask::V6(64)
    );
    assert_eq!(
        s.dests[0].addr,
        "2001:db8::10".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(s.dests[0].port, 80);
    let saved = to_toml(&set, &settings);
    assert!(saved.contains("vip = \"2001:db8::1\"\n"), "{saved}");
    assert!(saved.contains("netmask = 64\n"), "{saved}");
    assert!(saved.contains("netmask = \"255.255.255.0\"\n"), "{saved}");
    let (_, again) = load_str(&saved, "saved.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, set);

    // DR/NAT across families, a dotted mask on an IPv6 service, a prefix out of range.
    let bad = r#"
[[service]]
vip = "2001:db8::1"
port = 80
persistence = 300
netmask = "255.255.255.0"

  [[service.real_server]]
  address = "10.0.1.1"
  forward = "dr"

[[service]]
vip = "2001:db8::2"
port = 80
persistence = 300
netmask = 129
"#;
    let err = load_str(bad, "bad.toml").unwrap_err().to_string();
    assert!(
        err.contains("service[0].netmask: expected a prefix length like 64 for an IPv6 vip"),
        "{err}"
    );
    assert!(err.contains("service[0].real_server[0].address: real server 10.0.1.1 is IPv4 but VIP 2001:db8::1 is IPv6"), "{err}");
    assert!(
        err.contains("service[1].netmask: expected an IPv6 prefix length 1 to 128, found 129"),
        "{err}"
    );
}
