use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::encap::{Tunnel, TunnelType};
use crate::health::config::{parse_hex, CheckKind, ReplyPattern, UdpCheck, UrlSpec};
use crate::model::{Forward, Persistence, Protocol, SchedulerKind};
use crate::vrrp::config::InitialState;

fn ok(text: &str) -> KeepalivedConfig {
    parse_str(text, "k.conf").unwrap_or_else(|e| panic!("{e}"))
}

/// `(line, col, message)` of every error.
fn errors(text: &str) -> Vec<(usize, usize, String)> {
    match parse_str(text, "k.conf") {
        Ok(_) => Vec::new(),
        Err(KeepalivedError::Invalid { errors, .. }) => errors
            .into_iter()
            .map(|d| (d.line, d.col, d.message))
            .collect(),
        Err(e) => panic!("{e}"),
    }
}

fn warnings(conf: &KeepalivedConfig) -> Vec<String> {
    conf.warnings.iter().map(|w| w.message.clone()).collect()
}

const EVERYTHING: &str = r#"
virtual_server_group web {
    10.0.0.1 80
    10.0.0.10-11 80
}
virtual_server group web {
    lb_algo wrr
    lb_kind TUN type gue port 6080 csum
    persistence_timeout 600
    persistence_granularity 255.255.255.0
    protocol tcp
    delay_loop 2.5
    ha_suspend
    alpha
    omega
    quorum 2
    hysteresis 1
    quorum_up "/bin/echo up"
    quorum_down "/bin/echo down" nobody
    sorry_server 10.0.9.9 80
    virtualhost www.example.com
    connect_timeout 4
    retry 2
    inhibit_on_failure
    real_server 10.0.1.1 80 {
        weight 3
        uthreshold 100
        lthreshold 10
        HTTP_GET {
            url {
                path /health
                status_code 204
                digest 9B3A0C85A887A256D6939DA88AABD8CD
            }
            url { path / }
            connect_port 8080
            warmup 0
        }
        TCP_CHECK {
            connect_ip 10.0.1.100
            bindto 10.0.0.254
            connect_timeout 1
        }
    }
    real_server 10.0.1.2 80 {
        lvs_method DR
        weight 0
        MISC_CHECK {
            misc_path "/usr/bin/check --fast"
            misc_timeout 7
            misc_dynamic
        }
        SSL_GET {
            url {
                path /s
            }
            virtualhost tls.example.com
            delay_before_retry 0.5
        }
    }
}
virtual_server 10.0.0.2 53 {
    lb_algo mh
    lvs_sched sh
    protocol UDP
    lb_kind NAT
    real_server 10.0.2.1 5353 {
    }
}
"#;

#[test]
fn every_lvs_construct_is_read() {
    let conf = ok(EVERYTHING);
    let keys: Vec<String> = conf
        .services
        .services
        .iter()
        .map(|s| s.key.to_string())
        .collect();
    assert_eq!(
        keys,
        [
            "TCP 10.0.0.1:80",
            "TCP 10.0.0.10:80",
            "TCP 10.0.0.11:80",
            "UDP 10.0.0.2:53"
        ]
    );
    let web = &conf.services.services[0];
    assert_eq!(web.scheduler, SchedulerKind::Wrr);
    assert_eq!(
        web.persistence,
        Some(Persistence {
            timeout: 600,
            netmask: Ipv4Addr::new(255, 255, 255, 0).into()
        })
    );
    let rs1 = &web.dests[0];
    assert_eq!((rs1.weight, rs1.u_threshold, rs1.l_threshold), (3, 100, 10));
    assert_eq!(
        rs1.forward,
        Forward::Tunnel(Tunnel::Gue {
            port: 6080,
            csum: true
        })
    );
    assert_eq!(web.dests[1].forward, Forward::Dr);
    assert_eq!(web.dests[1].weight, 0);
    // The same settings for every member of the group.
    assert_eq!(conf.services.services[2].dests, web.dests);

    let (key, h) = &conf.health.services[0];
    assert_eq!(*key, web.key);
    assert_eq!(h.delay_loop, Duration::from_millis(2500));
    assert!(h.ha_suspend && h.alpha && h.omega);
    assert_eq!((h.quorum, h.hysteresis), (2, 1));
    assert_eq!(h.quorum_up.as_deref(), Some("/bin/echo up"));
    assert_eq!(h.quorum_down.as_deref(), Some("/bin/echo down"));
    // keepalived's `quorum_down SCRIPT USER`: both quorum scripts run as that user.
    assert_eq!(
        h.script_user.as_ref().map(|u| u.user.as_str()),
        Some("nobody")
    );
    assert_eq!(
        h.sorry_server,
        Some(SocketAddrV4::new(Ipv4Addr::new(10, 0, 9, 9), 80))
    );

    let d1 = h.dest(Ipv4Addr::new(10, 0, 1, 1), 80).expect("rs1 health");
    assert!(d1.inhibit_on_failure, "inherited from the virtual_server");
    assert_eq!(d1.checks.len(), 2);
    let http = &d1.checks[0];
    assert_eq!(
        http.kind,
        CheckKind::HttpGet {
            urls: vec![
                UrlSpec {
                    path: "/health".into(),
                    status_code: Some(204),
                    digest: Some("9b3a0c85a887a256d6939da88aabd8cd".into())
                },
                UrlSpec {
                    path: "/".into(),
                    ..UrlSpec::default()
                }
            ],
            virtualhost: Some("www.example.com".into())
        }
    );
    assert_eq!(http.connect_port, Some(8080));
    assert_eq!(
        http.connect_timeout,
        Duration::from_secs(4),
        "from the virtual_server"
    );
    assert_eq!(http.retry, 2);
    assert_eq!(http.warmup, Some(Duration::ZERO));
    let tcp = &d1.checks[1];
    assert_eq!(tcp.kind, CheckKind::Tcp);
    assert_eq!(tcp.connect_ip, Some(Ipv4Addr::new(10, 0, 1, 100).into()));
    assert_eq!(tcp.bindto, Some(Ipv4Addr::new(10, 0, 0, 254).into()));
    assert_eq!(tcp.connect_timeout, Duration::from_secs(1), "its own wins");

    let d2 = h.dest(Ipv4Addr::new(10, 0, 1, 2), 80).expect("rs2 health");
    assert_eq!(
        d2.checks[0].kind,
        CheckKind::Misc {
            path: "/usr/bin/check --fast".into(),
            timeout: Some(Duration::from_secs(7)),
            dynamic: true,
            user: None,
        }
    );
    assert_eq!(
        d2.checks[1].kind,
        CheckKind::SslGet {
            urls: vec![UrlSpec {
                path: "/s".into(),
                ..UrlSpec::default()
            }],
            virtualhost: Some("tls.example.com".into()),
            enable_sni: false,
            sni_name: None,
        }
    );
    assert_eq!(
        d2.checks[1].delay_before_retry,
        Some(Duration::from_millis(500))
    );

    let dns = &conf.services.services[3];
    assert_eq!(dns.key.proto, Protocol::Udp);
    assert_eq!(
        dns.scheduler,
        SchedulerKind::Sh,
        "the last lb_algo/lvs_sched wins"
    );
    assert_eq!(
        (dns.dests[0].port, dns.dests[0].forward),
        (5353, Forward::Nat)
    );
    assert!(conf.health.services[3].1.per_dest.is_empty());
    assert_eq!(
        warnings(&conf),
        [
            "virtual_server group web: ha_suspend accepted, acted on once VRRP exists (until then \
          the checks always run)"
        ]
    );
}

#[test]
fn defaults_follow_keepalived() {
    let conf = ok("virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n }\n}\n");
    let svc = &conf.services.services[0];
    assert_eq!(svc.scheduler, SchedulerKind::Wlc);
    assert_eq!(
        svc.dests[0].forward,
        Forward::Nat,
        "keepalived's default lb_kind"
    );
    assert_eq!(svc.persistence, None);
    let conf =
        ok("virtual_server 10.0.0.1 0 {\n persistence_timeout\n real_server 10.0.1.1 {\n }\n}\n");
    let svc = &conf.services.services[0];
    assert_eq!(svc.persistence.map(|p| p.timeout), Some(300));
    assert_eq!(svc.dests[0].port, 0);
}

#[test]
fn braces_glued_to_words_and_comments() {
    let conf = ok(concat!(
        "! comment\n",
        "# comment\n",
        "virtual_server 10.0.0.1 80{ # a comment after the brace\n",
        "  lb_algo rr ! another\n",
        "  lb_kind TUN\n",
        "  real_server 10.0.1.1 80{\n",
        "    TCP_CHECK{connect_timeout 2}\n",
        "  }}\n",
        "vrrp_instance VI_1{\n",
        "  state BACKUP\n",
        "  interface eth0\n",
        "  virtual_router_id 51\n",
        "  virtual_ipaddress{10.0.0.1}\n",
        "}\n",
    ));
    let svc = &conf.services.services[0];
    assert_eq!(svc.scheduler, SchedulerKind::Rr);
    assert_eq!(svc.dests[0].forward, Forward::tunnel(TunnelType::Ipip));
    let check = &conf.health.services[0].1.per_dest[0].1.checks[0];
    assert_eq!(check.connect_timeout, Duration::from_secs(2));
    assert!(conf.warnings.is_empty(), "{:?}", warnings(&conf));
    let vi = &conf.vrrp.instances[0];
    assert_eq!((vi.name.as_str(), vi.vrid), ("VI_1", 51));
    assert_eq!(vi.vips[0].addr, Ipv4Addr::new(10, 0, 0, 1));
}

#[test]
fn errors_are_all_reported_with_line_and_column() {
    let text = "\
virtual_server 10.0.0.300 80 {
    lb_algo fastest
    lb_kind TUNNEL
    real_server 10.0.1.1 80 {
        weight 1
        wieght 2
    }
    real_server 10.0.1 80 {
    }
}
virtual_server 10.0.0.2 80 {
    real_server 10.0.2.1 80 {
        weight 1
";
    let got = errors(text);
    let expect: Vec<(usize, usize, &str)> = vec![
        (
            1,
            16,
            "virtual_server: expected an IPv4 address like 192.0.2.1, found '10.0.0.300'",
        ),
        (2, 13, "lb_algo: unknown scheduler \"fastest\""),
        (3, 13, "lb_kind: expected NAT, DR or TUN, found 'TUNNEL'"),
        (
            6,
            9,
            "unknown keyword 'wieght' in virtual_server 10.0.0.300 80 real_server 10.0.1.1 80",
        ),
        (
            8,
            17,
            "real_server: expected an IPv4 address like 192.0.2.1, found '10.0.1'",
        ),
        (11, 28, "missing '}'"),
        (12, 29, "missing '}'"),
    ];
    assert_eq!(got.len(), expect.len(), "{got:#?}");
    for ((line, col, msg), (el, ec, em)) in got.iter().zip(&expect) {
        assert_eq!((line, col), (el, ec), "{msg}");
        assert!(msg.starts_with(em), "{msg:?} does not start with {em:?}");
    }
}

#[test]
fn seed_notes_with_double_slashes_are_explained() {
    let text = "\
virtual_server 192.168.150.100 80{
\tlb_kind DR\t\t//改成DR
\t//可以写多个路径
\treal_server 192.168.150.12 80 {
\t}
}
";
    let got = errors(text);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!((got[0].0, got[0].1), (2, 14));
    assert!(
        got[0].2.contains("keepalived has no `//` comments"),
        "{}",
        got[0].2
    );
    assert_eq!((got[1].0, got[1].1), (3, 2));
    assert!(got[1].2.starts_with("unknown keyword '//可以写多个路径'"));
    assert!(got[1]
        .2
        .contains("keepalived --config-test fails on it too"));
}

#[test]
fn unbalanced_braces() {
    let got = errors("virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n }\n}\n}\n");
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0, got[0].1), (5, 1));
    assert!(got[0].2.starts_with("unexpected '}'"));
    let got = errors("global_defs\n");
    assert_eq!((got[0].0, got[0].1), (1, 1));
    assert!(got[0].2.contains("expected a '{' block"), "{}", got[0].2);
}

#[test]
fn semantic_errors() {
    let text = "\
virtual_server 10.0.0.1 80 {
    lb_kind TUN type gue
    persistence_granularity 255.0.255.0
    protocol SCTP
    real_server 10.0.1.1 8080 {
        lvs_method DR
        uthreshold 5
        lthreshold 9
        HTTP_GET {
            connect_timeout 1
        }
        MISC_CHECK {
        }
        DNS_CHECK {
        }
    }
    real_server 10.0.1.1 8080 {
    }
}
virtual_server 10.0.0.1 80 {
    real_server 10.0.1.1 80 {
    }
}
virtual_server 10.0.0.3 0 {
    real_server 10.0.1.1 {
    }
}
virtual_server group nope {
}
virtual_server fwmark 1 {
}
";
    let msgs: Vec<String> = errors(text)
        .into_iter()
        .map(|e| format!("{}: {}", e.0, e.2))
        .collect();
    let expect = [
        "2: lb_kind TUN type gue: expected `port N`",
        "3: persistence_granularity: expected a contiguous netmask",
        "4: protocol SCTP is not supported",
        "5: virtual_server 10.0.0.1 80 real_server 10.0.1.1 8080: lthreshold (9) must not exceed uthreshold (5)",
        "5: virtual_server 10.0.0.1 80 real_server 10.0.1.1 8080: port must be 80",
        "9: virtual_server 10.0.0.1 80 real_server 10.0.1.1 8080 HTTP_GET: expected at least one url",
        "12: virtual_server 10.0.0.1 80 real_server 10.0.1.1 8080 MISC_CHECK: expected misc_path",
        "14: virtual_server 10.0.0.1 80 real_server 10.0.1.1 8080: DNS_CHECK is not supported",
        "17: virtual_server 10.0.0.1 80: real_server 10.0.1.1:8080 is listed twice",
        "20: virtual_server: TCP 10.0.0.1:80 is already defined on line 1",
        "24: virtual_server 10.0.0.3 0: port 0 (every port) needs persistence_timeout",
        "28: virtual_server group: no virtual_server_group named 'nope'",
        "30: virtual_server fwmark: firewall-mark services are not supported",
    ];
    assert_eq!(msgs.len(), expect.len(), "{msgs:#?}");
    for (m, e) in msgs.iter().zip(expect) {
        assert!(m.starts_with(e), "{m:?} does not start with {e:?}");
    }
}

#[test]
fn warnings_for_what_tunlb_ignores() {
    let conf = ok("\
global_defs {
    router_id A
    router_id B
    notification_email {
        a@b
    }
}
static_ipaddress {
    10.9.9.9/32 dev lo
}
virtual_server 10.0.0.1 80 {
    smtp_alert
    persistence_timeout 0
    real_server 10.0.1.1 80 {
        notify_up /bin/true
        TCP_CHECK {
            nb_get_retry 3
        }
    }
}
virtual_server 10.0.0.2 80 {
}
");
    let w = warnings(&conf);
    assert_eq!(
        conf.vrrp.router_id.as_deref(),
        Some("B"),
        "the last router_id"
    );
    let expect = [
        "global_defs: notification_email ignored",
        "static_ipaddress ignored",
        "virtual_server 10.0.0.1 80: smtp_alert ignored",
        "persistence_timeout 0: keepalived reports",
        "virtual_server 10.0.0.1 80 real_server 10.0.1.1 80: notify_up ignored",
        "nb_get_retry is deprecated",
        "virtual_server 10.0.0.2 80 has no real servers",
    ];
    assert_eq!(w.len(), expect.len(), "{w:#?}");
    for (m, e) in w.iter().zip(expect) {
        assert!(m.starts_with(e), "{m:?} does not start with {e:?}");
    }
    assert_eq!(conf.services.services.len(), 1);
    assert_eq!(conf.services.services[0].persistence, None);
    assert_eq!(conf.health.services[0].1.per_dest[0].1.checks[0].retry, 3);
}

/// A scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("tunlb-kconf-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, text).expect("write");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn include_globs_are_relative_to_the_including_file() {
    let dir = TempDir::new("inc");
    let main = dir.write(
        "keepalived.conf",
        "global_defs {\n router_id X\n}\ninclude conf.d/*.conf\ninclude nothing-*.conf\n",
    );
    dir.write(
        "conf.d/20-b.conf",
        "virtual_server 10.0.0.2 80 {\n include ../rs/*.inc\n}\n",
    );
    dir.write(
        "conf.d/10-a.conf",
        "virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n }\n}\n",
    );
    dir.write("conf.d/skip.txt", "this is not read\n");
    dir.write("rs/one.inc", "real_server 10.0.2.1 80 {\n weight 7\n}\n");
    let conf = load(&main).unwrap_or_else(|e| panic!("{e}"));
    let keys: Vec<String> = conf
        .services
        .services
        .iter()
        .map(|s| s.key.to_string())
        .collect();
    assert_eq!(
        keys,
        ["TCP 10.0.0.1:80", "TCP 10.0.0.2:80"],
        "sorted glob order"
    );
    assert_eq!(conf.services.services[1].dests[0].weight, 7);
    let w: Vec<String> = conf.warnings.iter().map(ToString::to_string).collect();
    // (router_id is read now: no warning for it.)
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(conf.vrrp.router_id.as_deref(), Some("X"));
    assert!(w[0].ends_with("keepalived.conf:5:1: include nothing-*.conf: no file matches (keepalived skips this silently; `includer` makes it an error)"), "{}", w[0]);

    // Errors in included files name the file they are in.
    dir.write("rs/one.inc", "real_server 10.0.2.1 80 {\n wait 7\n}\n");
    let err = load(&main).unwrap_err().to_string();
    assert!(
        err.contains("rs/one.inc:2:2: unknown keyword 'wait'"),
        "{err}"
    );

    // A file that includes itself is an error, not a hang.
    dir.write("conf.d/30-loop.conf", "include 30-loop.conf\n");
    let err = load(&main).unwrap_err().to_string();
    assert!(err.contains("includes itself"), "{err}");
}

#[test]
fn include_in_text_without_a_file_is_an_error() {
    let got = errors("include /etc/keepalived/*.conf\n");
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0, got[0].1), (1, 1));
}

#[test]
fn the_seed_file_makes_the_seed_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/keepalived-seed.conf");
    let conf = load(&path).unwrap_or_else(|e| panic!("{e}"));
    let (toml_settings, toml) =
        config::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/director-seed.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        conf.services, toml,
        "the keepalived file and its TOML twin agree"
    );
    let h = &conf.health.services[0].1;
    assert_eq!(h.delay_loop, Duration::from_secs(6));
    for (_, d) in &h.per_dest {
        let c = &d.checks[0];
        assert!(
            matches!(&c.kind, CheckKind::HttpGet { urls, .. } if urls[0].path == "/" && urls[0].status_code == Some(200))
        );
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.retry, 3);
        assert_eq!(c.delay_before_retry(), Duration::from_secs(3));
    }
    assert_eq!(h.per_dest.len(), 2);
    assert!(
        !warnings(&conf).iter().any(|w| w.contains("VRRP")),
        "{:?}",
        warnings(&conf)
    );
    let vi = &conf.vrrp.instances[0];
    assert_eq!(vi.initial, InitialState::Master);
    assert_eq!((vi.vrid, vi.priority), (51, 100));
    assert_eq!(vi.auth_pass, Some(*b"1111\0\0\0\0"));
    assert_eq!(
        vi.vips[0].to_line(),
        "192.168.150.100/24 dev eth0 label eth0:3"
    );
    assert_eq!(conf.vrrp.router_id.as_deref(), Some("LVS_DEVEL"));
    assert_eq!(conf.vrrp, toml_settings.vrrp, "and the same VRRP instance");
}

#[test]
fn check_through_tunnel_is_a_tunlb_extension() {
    let conf = ok(concat!(
        "virtual_server 10.0.0.1 80 {\n lb_kind TUN\n",
        " real_server 10.0.1.1 80 {\n  TCP_CHECK {\n   check_through_tunnel\n  }\n",
        "  HTTP_GET {\n   url {\n    path /\n   }\n   check_through_tunnel false\n  }\n }\n}\n",
    ));
    let d = &conf.health.services[0].1.per_dest[0].1;
    assert!(d.checks[0].check_through_tunnel);
    assert!(!d.checks[1].check_through_tunnel);
    let nat = errors(concat!(
        "virtual_server 10.0.0.1 80 {\n lb_kind NAT\n",
        " real_server 10.0.1.1 80 {\n  TCP_CHECK {\n   check_through_tunnel\n  }\n }\n}\n",
    ));
    assert_eq!(nat.len(), 1, "{nat:?}");
    let (line, _, message) = &nat[0];
    assert_eq!(*line, 5);
    assert!(
        message.contains("10.0.0.1 80") && message.contains("10.0.1.1 80"),
        "names the virtual and the real server: {message}"
    );
    let both = errors(concat!(
        "virtual_server 10.0.0.1 80 {\n lb_kind DR\n real_server 10.0.1.1 80 {\n",
        "  TCP_CHECK {\n   connect_ip 10.0.1.2\n   check_through_tunnel yes\n  }\n }\n}\n",
    ));
    assert!(
        both.iter()
            .any(|(_, _, m)| m.contains("connect_ip and check_through_tunnel")),
        "{both:?}"
    );
    let misc = errors(concat!(
        "virtual_server 10.0.0.1 80 {\n lb_kind DR\n real_server 10.0.1.1 80 {\n",
        "  MISC_CHECK {\n   misc_path /bin/true\n   check_through_tunnel\n  }\n }\n}\n",
    ));
    assert_eq!(misc.len(), 1, "{misc:?}");
    assert_eq!(misc[0].0, 6, "at the keyword: {misc:?}");
    assert!(
        misc[0].2.contains("only for http_get, ssl_get and tcp"),
        "{misc:?}"
    );
}

#[test]
fn udp_ping_and_sni_checkers_are_read() {
    let conf = ok("\
virtual_server 10.0.0.1 53 {
    protocol UDP
    real_server 10.0.1.1 53 {
        UDP_CHECK {
            payload 00 01 ab
            require_reply 00 0x
            min_reply_length 2
            max_reply_length 512
            connect_timeout 2
        }
        PING_CHECK {
            retry 0
        }
    }
    real_server 10.0.1.2 53 {
        UDP_CHECK { require_reply }
        SSL_GET {
            url { path / }
            enable_sni
            sni_name sni.example.com
        }
    }
}
");
    let h = &conf.health.services[0].1;
    let d1 = h.dest(Ipv4Addr::new(10, 0, 1, 1), 53).expect("rs1");
    assert_eq!(
        d1.checks[0].kind,
        CheckKind::Udp(UdpCheck {
            payload: vec![0, 1, 0xab],
            require_reply: parse_hex("00 0x", true),
            min_reply_length: 2,
            max_reply_length: 512,
        })
    );
    assert_eq!(d1.checks[0].connect_timeout, Duration::from_secs(2));
    assert_eq!(d1.checks[0].delay_before_retry(), Duration::from_secs(1));
    assert_eq!(d1.checks[1].kind, CheckKind::Ping);
    assert_eq!(d1.checks[1].retry, 0);
    let d2 = h.dest(Ipv4Addr::new(10, 0, 1, 2), 53).expect("rs2");
    assert_eq!(
        d2.checks[0].kind,
        CheckKind::Udp(UdpCheck {
            require_reply: Some(ReplyPattern::default()),
            ..UdpCheck::default()
        })
    );
    assert!(matches!(
        &d2.checks[1].kind,
        CheckKind::SslGet { enable_sni: true, sni_name: Some(n), .. } if n == "sni.example.com"
    ));
}

#[test]
fn bad_udp_and_sni_settings_are_errors() {
    let errs = errors(
        "\
virtual_server 10.0.0.1 53 {
    real_server 10.0.1.1 53 {
        UDP_CHECK {
            payload zz
            require_reply 0g
            min_reply_length 10
            max_reply_length 5
        }
        HTTP_GET {
            url { path / }
            enable_sni
        }
        TCP_CHECK { payload 00 }
    }
}
",
    );
    let msgs: Vec<&str> = errs.iter().map(|(_, _, m)| m.as_str()).collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("payload: expected hex digits")),
        "{msgs:#?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("require_reply: expected hex digits")),
        "{msgs:#?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("min_reply_length 10 > max_reply_length 5")),
        "{msgs:#?}"
    );
    assert!(
        errs.iter()
            .any(|(l, _, m)| *l == 11 && m.contains("enable_sni")),
        "enable_sni is an SSL_GET keyword: {errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|(l, _, m)| *l == 13 && m.contains("payload")),
        "{errs:#?}"
    );
}

#[test]
fn delay_loop_and_alpha_are_inherited_real_server_then_checker() {
    let conf = ok("\
virtual_server 10.0.0.1 80 {
    delay_loop 30
    alpha
    ha_suspend
    real_server 10.0.1.1 80 {
        delay_loop 5
        alpha false
        TCP_CHECK { }
        TCP_CHECK {
            delay_loop 2
            alpha
        }
    }
    real_server 10.0.1.2 80 {
        TCP_CHECK { }
    }
}
");
    let h = &conf.health.services[0].1;
    assert_eq!(h.delay_loop, Duration::from_secs(30), "the service's");
    assert!(h.alpha);
    let d1 = h.dest(Ipv4Addr::new(10, 0, 1, 1), 80).expect("rs1");
    assert_eq!(d1.checks[0].delay_loop, Some(Duration::from_secs(5)));
    assert_eq!(d1.checks[0].alpha, Some(false));
    assert_eq!(d1.checks[1].delay_loop, Some(Duration::from_secs(2)));
    assert_eq!(d1.checks[1].alpha, Some(true));
    let d2 = h.dest(Ipv4Addr::new(10, 0, 1, 2), 80).expect("rs2");
    assert_eq!(
        (d2.checks[0].delay_loop, d2.checks[0].alpha),
        (None, None),
        "the service's apply"
    );
    assert!(warnings(&conf)
        .iter()
        .any(|w| w.contains("ha_suspend accepted, acted on once VRRP exists")));
}

#[test]
fn expire_policy_is_a_per_virtual_server_extension() {
    use crate::model::ExpirePolicy;
    let conf = ok("virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n }\n}\n");
    assert!(conf.services.services[0].policy.is_default());
    let conf = ok("virtual_server 10.0.0.1 80 {\n expire_nodest_conn false\n \
                   expire_quiescent_template\n real_server 10.0.1.1 80 {\n }\n}\n");
    assert_eq!(
        conf.services.services[0].policy,
        ExpirePolicy {
            expire_nodest_conn: false,
            expire_quiescent_template: true,
        }
    );
    assert!(warnings(&conf).is_empty(), "{:?}", warnings(&conf));
    let conf = ok("virtual_server 10.0.0.1 80 {\n expire_nodest_conn 0\n \
                   expire_quiescent_template off\n real_server 10.0.1.1 80 {\n }\n}\n");
    assert_eq!(
        conf.services.services[0].policy,
        ExpirePolicy {
            expire_nodest_conn: false,
            expire_quiescent_template: false,
        }
    );
    assert_eq!(
        errors(
            "virtual_server 10.0.0.1 80 {\n expire_nodest_conn maybe\n \
             real_server 10.0.1.1 80 {\n }\n}\n"
        ),
        [(
            2,
            21,
            "expire_nodest_conn: expected true or false, found 'maybe'".to_string()
        )]
    );
}

/// keepalived.conf with IPv6 services: addresses, groups with IPv6 ranges, ip_family,
/// persistence_granularity as a prefix length, mixed families through TUN only.
#[test]
fn ipv6_virtual_and_real_servers() {
    let conf = ok(r#"
virtual_server_group v6web {
    2001:db8::1 80
    2001:db8::a-c 80
}
virtual_server 2001:db8::1 443 {
    ip_family inet6
    lb_algo rr
    lb_kind DR
    persistence_timeout 300
    persistence_granularity 64
    protocol TCP
    real_server 2001:db8::10 443 {
        weight 2
    }
}
virtual_server group v6web {
    lb_kind TUN
    protocol TCP
    real_server 10.0.1.1 80 {
    }
    real_server 2001:db8::11 80 {
    }
}
"#);
    let set = &conf.services;
    let keys: Vec<String> = set.services.iter().map(|s| s.key.to_string()).collect();
    assert_eq!(
        keys,
        [
            "TCP [2001:db8::1]:443",
            "TCP [2001:db8::1]:80",
            "TCP [2001:db8::a]:80",
            "TCP [2001:db8::b]:80",
            "TCP [2001:db8::c]:80",
        ]
    );
    let first = &set.services[0];
    assert_eq!(
        first.persistence.unwrap().netmask,
        crate::model::Netmask::V6(64)
    );
    assert_eq!(
        first.dests[0].addr,
        "2001:db8::10".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(set.services[1].dests.len(), 2);
    // `lb_kind DR` to an IPv6 real server: what the data path forwards (DR over IPv6).
    assert_eq!(first.dests[0].forward, Forward::Dr);
    assert_eq!(crate::director::table::check_forwardable(set), Ok(()));

    let got = errors(
        r#"
virtual_server 2001:db8::1 80 {
    ip_family inet
    lb_kind DR
    real_server 10.0.1.1 80 {
    }
    real_server 2001:db8::10 80 {
    }
}
virtual_server 10.0.0.1 80 {
    ip_family inet7
    lb_kind NAT
    real_server 2001:db8::10 80 {
    }
}
"#,
    );
    let msgs: Vec<(usize, &str)> = got.iter().map(|(l, _, m)| (*l, m.as_str())).collect();
    assert_eq!(
        msgs,
        [
            (3, "virtual_server 2001:db8::1 80: ip_family inet conflicts with the virtual server's address family (2001:db8::1 is IPv6)"),
            (5, "virtual_server 2001:db8::1 80: real server 10.0.1.1 is IPv4 but VIP 2001:db8::1 is IPv6: only tunnel forwarding (ipip, gre, gue) mixes IPv4 and IPv6"),
            (11, "ip_family: unknown address family 'inet7' (expected inet or inet6)"),
            (13, "virtual_server 10.0.0.1 80: real server 2001:db8::10 is IPv6 but VIP 10.0.0.1 is IPv4: only tunnel forwarding (ipip, gre, gue) mixes IPv4 and IPv6"),
        ]
    );
}

/// configs/keepalived-ipv6.conf: an IPv6 GUE service from a group range beside an IPv4 one,
/// no warning, and the `-L -n` listing docs/ipv6.md shows (ipvsadm's IPv6 format).
#[test]
fn the_ipv6_sample_file_lists_as_ipvsadm() {
    use crate::control::format::{list_table, ListFormat, Listing, PortNames};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/keepalived-ipv6.conf");
    let conf = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        conf.warnings.is_empty(),
        "{:?}",
        conf.warnings
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
    );
    let fmt = ListFormat {
        numeric: true,
        ..ListFormat::default()
    };
    let got = list_table(
        &Listing::from_set(&conf.services),
        &fmt,
        &PortNames::empty(),
    );
    assert_eq!(
        got.lines().collect::<Vec<_>>(),
        [
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
            "TCP  192.0.2.100:80 wlc",
            "  -> 10.0.2.12:80                 Tunnel  1      0          0         ",
            "TCP  [2001:db8::1]:80 rr persistent 300 mask 64",
            "  -> [2001:db8:0:2::12]:80        Tunnel  1      0          0         ",
            "  -> [2001:db8:0:2::13]:80        Tunnel  1      0          0         ",
            "TCP  [2001:db8::2]:80 rr persistent 300 mask 64",
            "  -> [2001:db8:0:2::12]:80        Tunnel  1      0          0         ",
            "  -> [2001:db8:0:2::13]:80        Tunnel  1      0          0         ",
        ]
    );
}

/// The checkers of IPv6 real servers: connect_ip and bindto take IPv6 addresses (or IPv4 ones
/// with an IPv4 connect_ip), bind_port and connect_port are read; a bindto of the other family
/// than the address probed, and check_through_tunnel on an IPv6 real server, are refused.
#[test]
fn ipv6_checker_options() {
    let conf = ok(r#"
virtual_server 2001:db8::1 80 {
    lb_kind TUN
    protocol TCP
    real_server 2001:db8:0:2::12 80 {
        HTTP_GET {
            url {
                path /health
            }
            connect_ip 2001:db8:0:2::99
            connect_port 8080
            bindto 2001:db8::fe
            bind_port 4000
        }
        TCP_CHECK {
            connect_ip 10.0.2.99
            bindto 10.0.0.254
        }
    }
}
"#);
    let (key, h) = &conf.health.services[0];
    assert_eq!(key.to_string(), "TCP [2001:db8::1]:80");
    let rip: std::net::IpAddr = "2001:db8:0:2::12".parse().expect("rip");
    let checks = &h.dest(rip, 80).expect("checked").checks;
    let http = &checks[0];
    assert_eq!(
        http.connect_ip,
        Some("2001:db8:0:2::99".parse().expect("ip"))
    );
    assert_eq!(http.connect_port, Some(8080));
    assert_eq!(http.bindto, Some("2001:db8::fe".parse().expect("ip")));
    assert_eq!(http.bind_port, Some(4000));
    let tcp = &checks[1];
    assert_eq!(tcp.connect_ip, Some(Ipv4Addr::new(10, 0, 2, 99).into()));
    assert_eq!(tcp.bindto, Some(Ipv4Addr::new(10, 0, 0, 254).into()));
    assert!(warnings(&conf).is_empty(), "{:?}", warnings(&conf));

    let got = errors(
        r#"
virtual_server 2001:db8::1 80 {
    lb_kind TUN
    protocol TCP
    real_server 2001:db8:0:2::12 80 {
        TCP_CHECK {
            bindto 10.0.0.254
        }
        TCP_CHECK {
            check_through_tunnel
        }
        TCP_CHECK {
            bindto 2001:db8::zz
        }
    }
}
"#,
    );
    let msgs: Vec<(usize, &str)> = got.iter().map(|(l, _, m)| (*l, m.as_str())).collect();
    assert_eq!(
        msgs,
        [
            (7, "virtual_server 2001:db8::1 80 real_server 2001:db8:0:2::12 80 TCP_CHECK: bindto 10.0.0.254 is IPv4, the address probed (2001:db8:0:2::12, connect_ip or the real server) is IPv6"),
            (10, "virtual_server 2001:db8::1 80 real_server 2001:db8:0:2::12 80 TCP_CHECK: check_through_tunnel: not for IPv6 real servers yet (the director pins IPv4 probes only); without it the check probes the real server's own address"),
            (13, "bindto: expected an IPv4 address like 192.0.2.1, found '2001:db8::zz' (or an IPv6 address like 2001:db8::1)"),
        ]
    );
}
