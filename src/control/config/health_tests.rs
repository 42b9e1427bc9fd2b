use super::*;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::health::config::{parse_hex, CheckKind, UdpCheck};

#[test]
fn reads_health_checks() {
    let text = r#"
[[service]]
vip = "192.0.2.10"
port = 80
delay_loop = 2
quorum = 2
hysteresis = 1
sorry_server = "10.0.0.9:80"

  [[service.real_server]]
  address = "10.0.0.1"
  inhibit_on_failure = true
  [service.real_server.check]
  type = "http_get"
  url = "/"
  status_code = 200
  connect_timeout = 3
  retry = 3
  delay_before_retry = 4

  [[service.real_server]]
  address = "10.0.0.2"
  [[service.real_server.check]]
  type = "tcp"
  [[service.real_server.check]]
  type = "misc"
  misc_path = "/bin/true"
  misc_dynamic = true
"#;
    let (settings, set) = load_str(text, "h.toml").expect("valid");
    assert_eq!(set.services[0].dests.len(), 2);
    let (key, h) = &settings.health.services[0];
    assert_eq!(*key, set.services[0].key);
    assert_eq!(h.delay_loop, Duration::from_secs(2));
    assert_eq!((h.quorum, h.hysteresis), (2, 1));
    assert_eq!(h.sorry_server, Some("10.0.0.9:80".parse().expect("addr")));
    let d1 = h.dest(Ipv4Addr::new(10, 0, 0, 1), 80).expect("rs1");
    assert!(d1.inhibit_on_failure);
    let c = &d1.checks[0];
    assert_eq!(c.connect_timeout, Duration::from_secs(3));
    assert_eq!(c.retry, 3);
    assert_eq!(c.delay_before_retry(), Duration::from_secs(4));
    assert!(matches!(&c.kind, CheckKind::HttpGet { urls, .. } if urls[0].status_code == Some(200)));
    let d2 = h.dest(Ipv4Addr::new(10, 0, 0, 2), 80).expect("rs2");
    assert_eq!(d2.checks.len(), 2);
    assert_eq!(d2.checks[0].delay_before_retry(), Duration::from_secs(1));
}

#[test]
fn check_through_tunnel_is_read_and_refused_for_nat() {
    let rs = |forward: &str, extra: &str| {
        format!(
            "[[service]]\nvip = \"192.0.2.10\"\nport = 80\n[[service.real_server]]\n\
             address = \"10.0.0.1\"\nforward = \"{forward}\"\n[service.real_server.check]\n\
             type = \"tcp\"\ncheck_through_tunnel = true\n{extra}"
        )
    };
    for forward in ["tunnel", "dr"] {
        let (settings, _) = load_str(&rs(forward, ""), "t.toml").expect("valid");
        let h = &settings.health.services[0].1;
        let d = h.dest(Ipv4Addr::new(10, 0, 0, 1), 80).expect("rs");
        assert!(d.checks[0].check_through_tunnel, "{forward}");
    }
    let err = load_str(&rs("nat", ""), "t.toml")
        .expect_err("nat")
        .to_string();
    assert!(
        err.contains("check_through_tunnel")
            && err.contains("192.0.2.10:80")
            && err.contains("10.0.0.1:80"),
        "{err}"
    );
    let err = load_str(&rs("tunnel", "connect_ip = \"10.0.0.5\"\n"), "t.toml")
        .expect_err("connect_ip")
        .to_string();
    assert!(err.contains("connect_ip and check_through_tunnel"), "{err}");
    let misc = rs("tunnel", "").replace("type = \"tcp\"", "type = \"misc\"\nmisc_path = \"true\"");
    let err = load_str(&misc, "t.toml").expect_err("misc").to_string();
    assert!(err.contains("only for http_get, ssl_get and tcp"), "{err}");
}

#[test]
fn reads_udp_ping_and_ssl_checks() {
    let text = r#"
[[service]]
vip = "192.0.2.10"
port = 53
protocol = "udp"
[[service.real_server]]
address = "10.0.0.1"
  [[service.real_server.check]]
  type = "udp"
  payload = "01 02"
  require_reply = "0x ff"
  max_reply_length = 100
  delay_loop = 7
  alpha = true
  [[service.real_server.check]]
  type = "ping"
  [[service.real_server.check]]
  type = "ssl_get"
  url = "/"
  enable_sni = true
  virtualhost = "www.example.test"
"#;
    let (settings, _) = load_str(text, "h.toml").unwrap_or_else(|e| panic!("{e}"));
    let checks = &settings.health.services[0].1.per_dest[0].1.checks;
    assert_eq!(
        checks[0].kind,
        CheckKind::Udp(UdpCheck {
            payload: vec![1, 2],
            require_reply: parse_hex("0x ff", true),
            min_reply_length: 0,
            max_reply_length: 100,
        })
    );
    assert_eq!(checks[0].delay_loop, Some(Duration::from_secs(7)));
    assert_eq!(checks[0].alpha, Some(true));
    assert_eq!(checks[1].kind, CheckKind::Ping);
    assert!(matches!(
        &checks[2].kind,
        CheckKind::SslGet { enable_sni: true, virtualhost: Some(v), .. } if v == "www.example.test"
    ));
    let bad = text
        .replace("\"0x ff\"", "\"0q\"")
        .replace("delay_loop = 7", "delay_loop = 0");
    let err = load_str(&bad, "h.toml").expect_err("bad").to_string();
    assert!(err.contains("require_reply: expected true or hex"), "{err}");
    assert!(err.contains("delay_loop: expected seconds from 1"), "{err}");
    let sni = text.replace("type = \"ping\"", "type = \"ping\"\n  enable_sni = true");
    let err = load_str(&sni, "h.toml")
        .expect_err("sni on ping")
        .to_string();
    assert!(err.contains("only for type \"ssl_get\""), "{err}");
}

#[test]
fn rejects_a_bad_check() {
    let text = "[[service]]\nvip = \"192.0.2.10\"\nport = 80\n[[service.real_server]]\naddress = \"10.0.0.1\"\n[service.real_server.check]\ntype = \"smtp\"\n";
    let err = load_str(text, "h.toml").expect_err("bad type").to_string();
    assert!(err.contains("check[0].type"), "{err}");
}

#[test]
fn reads_who_runs_the_scripts() {
    let text = r#"
[scripts]
user = "nobody"
enable_script_security = false

[[service]]
vip = "192.0.2.10"
port = 80
quorum_down = "/bin/true"

  [[service.real_server]]
  address = "10.0.0.1"
  [service.real_server.check]
  type = "misc"
  misc_path = "/bin/true"
  user = "root"
  group = "root"

  [[service.real_server]]
  address = "10.0.0.2"
  [service.real_server.check]
  type = "misc"
  misc_path = "/bin/true"

[[vrrp_script]]
name = "chk"
script = "/bin/true"
user = "root"
"#;
    let (settings, _) = load_str(text, "s.toml").expect("valid");
    let nobody = Some(crate::model::ScriptUser {
        user: "nobody".into(),
        group: None,
    });
    let (_, h) = &settings.health.services[0];
    assert_eq!(h.script_user, nobody, "quorum_down runs as [scripts] user");
    let user_of = |i: usize| match &h.per_dest[i].1.checks[0].kind {
        CheckKind::Misc { user, .. } => user.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        user_of(0),
        Some(crate::model::ScriptUser {
            user: "root".into(),
            group: Some("root".into())
        })
    );
    assert_eq!(user_of(1), nobody, "inherited");
    assert_eq!(
        settings.vrrp.scripts[0]
            .user
            .as_ref()
            .map(|u| u.user.as_str()),
        Some("root")
    );
    assert_eq!(settings.vrrp.script_user, nobody);

    let bad = text
        .replace("user = \"root\"\n  group", "  group")
        .replace("user = \"nobody\"", "user = \"no-such-user-tunlb\"");
    let err = load_str(&bad, "s.toml").expect_err("refused").to_string();
    assert!(err.contains("`group` needs `user`"), "{err}");
    assert!(err.contains("no-such-user-tunlb"), "{err}");
}

#[test]
fn ipv6_check_options_are_read_and_a_bindto_of_the_other_family_refused() {
    let text = |bindto: &str| {
        format!(
            "[[service]]\nvip = \"2001:db8::1\"\nport = 80\n[[service.real_server]]\n\
             address = \"2001:db8:0:2::12\"\nforward = \"tunnel\"\n[service.real_server.check]\n\
             type = \"http_get\"\nurl = \"/\"\nconnect_ip = \"2001:db8:0:2::99\"\n\
             connect_port = 8080\nbindto = \"{bindto}\"\nbind_port = 4000\n"
        )
    };
    let (settings, _) = load_str(&text("2001:db8::fe"), "h.toml").expect("valid");
    let h = &settings.health.services[0].1;
    let rip: std::net::IpAddr = "2001:db8:0:2::12".parse().expect("rip");
    let c = &h.dest(rip, 80).expect("rs").checks[0];
    assert_eq!(c.connect_ip, Some("2001:db8:0:2::99".parse().expect("ip")));
    assert_eq!(c.connect_port, Some(8080));
    assert_eq!(c.bindto, Some("2001:db8::fe".parse().expect("ip")));
    assert_eq!(c.bind_port, Some(4000));
    let err = load_str(&text("10.0.0.254"), "h.toml")
        .expect_err("family")
        .to_string();
    assert!(
        err.contains(
            "bindto: virtual server [2001:db8::1]:80 real server [2001:db8:0:2::12]:80: bindto \
             10.0.0.254 is IPv4, the address probed (2001:db8:0:2::99, connect_ip or the real \
             server) is IPv6"
        ),
        "{err}"
    );
    let err = load_str(&text("2001:db8::zz"), "h.toml")
        .expect_err("not an address")
        .to_string();
    assert!(
        err.contains("bindto: expected an IPv4 or IPv6 address, found \"2001:db8::zz\""),
        "{err}"
    );
}
