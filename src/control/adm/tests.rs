//! `tunlb adm`'s tests: parsing as ipvsadm, and running against an in-memory director.

use std::ffi::OsString;
use std::net::Ipv4Addr;

use super::client::*;
use super::grammar::*;
use super::{Command, ListOptions, ListTarget, ServiceOptions};
use crate::control::config::{load_str, to_toml, DirectorSettings};
use crate::control::format::Listing;
use crate::control::format::{ListFormat, PortNames};
use crate::control::proto::{Request, Response};
use crate::control::socket::ClientError;
use crate::encap::TunnelType;
use crate::model::ServiceSet;
use crate::model::{DestConfig, Edit, Forward, Protocol, SchedulerKind, ServiceKey, Timeouts};

fn args(line: &str) -> Vec<OsString> {
    line.split_whitespace().map(Into::into).collect()
}

fn ok(line: &str) -> Command {
    parse(&args(line)).unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn err(line: &str) -> ParseError {
    match parse(&args(line)) {
        Ok(c) => panic!("{line}: parsed as {c:?}"),
        Err(e) => e,
    }
}

fn key(s: &str, proto: Protocol) -> ServiceKey {
    let (vip, port) = s.split_once(':').unwrap();
    ServiceKey {
        vip: vip.parse().unwrap(),
        port: port.parse().unwrap(),
        proto,
    }
}

fn tcp(s: &str) -> ServiceKey {
    key(s, Protocol::Tcp)
}

fn dest(line: &str) -> DestConfig {
    match ok(line) {
        Command::AddServer { dest, .. } | Command::EditServer { dest, .. } => dest,
        other => panic!("{other:?}"),
    }
}

fn svc_opts(line: &str) -> ServiceOptions {
    match ok(line) {
        Command::AddService(o) | Command::EditService(o) => o,
        other => panic!("{other:?}"),
    }
}

#[test]
fn add_service_forms() {
    assert_eq!(
        ok("-A -t 192.168.150.100:80 -s rr"),
        Command::AddService(ServiceOptions {
            key: tcp("192.168.150.100:80"),
            scheduler: SchedulerKind::Rr,
            persistence: None,
            mss_clamp: None,
        })
    );
    for line in [
        "--add-service --tcp-service 10.0.0.1:80 --scheduler wrr",
        "--add-service --tcp-service=10.0.0.1:80 --scheduler=wrr",
        "-At 10.0.0.1:80 -s wrr",
        "-A -t10.0.0.1:80 -swrr",
    ] {
        let o = svc_opts(line);
        assert_eq!(
            (o.key, o.scheduler),
            (tcp("10.0.0.1:80"), SchedulerKind::Wrr),
            "{line}"
        );
    }
    assert_eq!(svc_opts("-A -t 10.0.0.1:80").scheduler, SchedulerKind::Wlc);
    assert_eq!(
        svc_opts("-A -u 10.0.0.1:53 -s sh").key,
        key("10.0.0.1:53", Protocol::Udp)
    );
    assert_eq!(
        svc_opts("-A -t 10.0.0.1:80 --mss-clamp 1400").mss_clamp,
        Some(1400)
    );
    assert!(matches!(
        ok("-E -t 10.0.0.1:80 -s rr"),
        Command::EditService(_)
    ));
    assert!(matches!(
        ok("--edit-service -t 10.0.0.1:80"),
        Command::EditService(_)
    ));
}

#[test]
fn persistence_with_and_without_value() {
    let p = |line: &str| svc_opts(line).persistence.map(|p| (p.timeout, p.netmask));
    let host = Ipv4Addr::BROADCAST;
    let c = Ipv4Addr::new(255, 255, 255, 0);
    assert_eq!(p("-A -t 10.0.0.1:80 -p"), Some((300, host)));
    assert_eq!(p("-A -t 10.0.0.1:80 -p -s rr"), Some((300, host)));
    assert_eq!(p("-A -t 10.0.0.1:80 -s rr -p 600"), Some((600, host)));
    assert_eq!(p("-A -t 10.0.0.1:80 -p600"), Some((600, host)));
    assert_eq!(p("-A -t 10.0.0.1:80 --persistent=600"), Some((600, host)));
    assert_eq!(
        p("-A -t 10.0.0.1:80 --persistent 600 -M 255.255.255.0"),
        Some((600, c))
    );
    assert_eq!(p("-A -t 10.0.0.1:80 -M 255.255.255.0 -p"), Some((300, c)));
    assert_eq!(
        p("-A -t 10.0.0.1:0 -p --netmask 255.255.255.0"),
        Some((300, c))
    );
    // -M without -p has nothing to apply to.
    assert_eq!(p("-A -t 10.0.0.1:80 -M 255.255.255.0"), None);
    assert_eq!(
        err("-A -t 10.0.0.1:80 -p 0"),
        ParseError::BadTimeout("0".into())
    );
    assert_eq!(
        err("-A -t 10.0.0.1:80 -p 2678401"),
        ParseError::BadTimeout("2678401".into())
    );
    assert_eq!(
        err("-A -t 10.0.0.1:80 -p -M 255.255.255.x"),
        ParseError::BadNetmask
    );
}

#[test]
fn delete_and_clear() {
    assert_eq!(
        ok("-D -t 10.0.0.1:80"),
        Command::DeleteService(tcp("10.0.0.1:80"))
    );
    assert_eq!(
        ok("--delete-service --udp-service 10.0.0.1:53"),
        Command::DeleteService(key("10.0.0.1:53", Protocol::Udp))
    );
    assert_eq!(ok("-C"), Command::Clear);
    assert_eq!(ok("--clear"), Command::Clear);
}

#[test]
fn add_server_defaults_as_ipvsadm() {
    let d = dest("-a -t 10.0.0.1:80 -r 10.0.1.1");
    assert_eq!(d.addr, Ipv4Addr::new(10, 0, 1, 1));
    assert_eq!(d.port, 80);
    assert_eq!(d.weight, 1);
    assert_eq!(d.forward, Forward::Dr);
    assert_eq!((d.u_threshold, d.l_threshold), (0, 0));
    match ok("--add-server --tcp-service 10.0.0.1:80 --real-server 10.0.1.1:80 --ipip") {
        Command::AddServer { service, dest } => {
            assert_eq!(service, tcp("10.0.0.1:80"));
            assert_eq!(dest.forward, Forward::tunnel(TunnelType::Ipip));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn add_server_options() {
    let d = dest("-a -t 10.0.0.1:80 -r 10.0.1.1 -i -w 3 -x 100 -y 10");
    assert_eq!((d.weight, d.u_threshold, d.l_threshold), (3, 100, 10));
    let d = dest("-a -t 10.0.0.1:80 -r 10.0.1.1 --ipip --weight 0 --u-threshold 5 --l-threshold 1");
    assert_eq!((d.weight, d.u_threshold, d.l_threshold), (0, 5, 1));
    assert_eq!(
        dest("-a -t 10.0.0.1:80 -r 10.0.1.1 --gatewaying").forward,
        Forward::Dr
    );
    let d = dest("-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m");
    assert_eq!((d.port, d.forward), (8080, Forward::Nat));
    assert_eq!(
        dest("-a -t 10.0.0.1:80 -r 10.0.1.1 --masquerading").port,
        80
    );
    assert!(matches!(
        ok("-e -t 10.0.0.1:80 -r 10.0.1.1 -i -w 2"),
        Command::EditServer { .. }
    ));
    assert!(matches!(
        ok("--edit-server -t 10.0.0.1:80 -r 10.0.1.1"),
        Command::EditServer { .. }
    ));
}

#[test]
fn tunnel_options() {
    let tunnel = |line: &str| match dest(line).forward {
        Forward::Tunnel {
            tun_type,
            tun_port,
            tun_csum,
            gre_key,
        } => (tun_type, tun_port, tun_csum, gre_key),
        other => panic!("{other:?}"),
    };
    let base = "-a -t 10.0.0.1:80 -r 10.0.1.1 -i";
    assert_eq!(tunnel(base), (TunnelType::Ipip, 6080, false, None));
    assert_eq!(
        tunnel(&format!("{base} --tun-type ipip")),
        (TunnelType::Ipip, 6080, false, None)
    );
    assert_eq!(
        tunnel(&format!("{base} --tun-type gue")),
        (TunnelType::Gue, 6080, false, None)
    );
    assert_eq!(
        tunnel(&format!("{base} --tun-type gue --tun-port 7000 --tun-csum")),
        (TunnelType::Gue, 7000, true, None)
    );
    assert_eq!(
        tunnel(&format!(
            "{base} --tun-type gue --tun-port=7000 --tun-nocsum"
        )),
        (TunnelType::Gue, 7000, false, None)
    );
    assert_eq!(
        tunnel(&format!("{base} --tun-type gre --tun-csum --gre-key 42")),
        (TunnelType::Gre, 6080, true, Some(42))
    );
}

#[test]
fn tunnel_option_errors_as_ipvsadm() {
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.1.1 -g --tun-type gue"),
        ParseError::TunnelOptionsConflict
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.1.1 --tun-csum"),
        ParseError::TunnelOptionsConflict
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-port 7000"),
        ParseError::IllegalTunnelOption {
            opt: "tun-port",
            tun: "ipip"
        }
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gre --tun-csum --tun-nocsum"),
        ParseError::ConflictingTunnelOptions {
            opt: "tun-csum",
            other: "tun-nocsum",
            tun: "gre"
        }
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gue --gre-key 1"),
        ParseError::IllegalTunnelOption {
            opt: "gre-key",
            tun: "gue"
        }
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type vxlan"),
        ParseError::BadTunnelType
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gue --tun-port 0"),
        ParseError::BadTunnelPort
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gue --tun-remcsum"),
        ParseError::Unsupported(
            "remote checksum offload (--tun-remcsum) is not supported by tunlb"
        )
    );
    assert_eq!(
        ParseError::IllegalTunnelOption {
            opt: "tun-port",
            tun: "ipip"
        }
        .to_string(),
        "Illegal 'tun-port' option with the 'ipip' tunnel type"
    );
}

#[test]
fn server_port_must_match_for_tunnel_and_dr() {
    assert_eq!(dest("-a -t 10.0.0.1:80 -r 10.0.1.1:80 -i").port, 80);
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -i"),
        ParseError::DestPortMismatch
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.1.1:8080"),
        ParseError::DestPortMismatch
    );
    assert_eq!(dest("-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m").port, 8080);
}

#[test]
fn delete_server() {
    assert_eq!(
        ok("-d -t 10.0.0.1:80 -r 10.0.1.1"),
        Command::DeleteServer {
            service: tcp("10.0.0.1:80"),
            addr: Ipv4Addr::new(10, 0, 1, 1),
            port: 80
        }
    );
    assert_eq!(
        ok("--delete-server -t 10.0.0.1:80 -r 10.0.1.1:8080"),
        Command::DeleteServer {
            service: tcp("10.0.0.1:80"),
            addr: Ipv4Addr::new(10, 0, 1, 1),
            port: 8080
        }
    );
    assert_eq!(
        err("-d -t 10.0.0.1:80 -r 10.0.1.1 -w 2"),
        ParseError::IllegalOption {
            opt: "weight",
            cmd: "delete-server"
        }
    );
}

#[test]
fn list_forms_and_combined_flags() {
    let list = |line: &str| match ok(line) {
        Command::List(o) => o,
        other => panic!("{line}: {other:?}"),
    };
    let numeric = ListFormat {
        numeric: true,
        ..ListFormat::default()
    };
    for line in [
        "-L -n",
        "-l -n",
        "-ln",
        "-Ln",
        "-nL",
        "--list --numeric",
        "-L --numeric",
    ] {
        assert_eq!(
            list(line),
            ListOptions {
                target: ListTarget::Table,
                format: numeric,
                json: false
            },
            "{line}"
        );
    }
    for line in [
        "-lnc",
        "-Lnc",
        "-L -n -c",
        "-l -c -n",
        "--list --connection -n",
        "-Lcn",
    ] {
        let o = list(line);
        assert_eq!(o.target, ListTarget::Connections, "{line}");
        assert!(o.format.numeric, "{line}");
    }
    assert_eq!(list("-L").format, ListFormat::default());
    assert_eq!(list("-L --timeout").target, ListTarget::Timeouts);
    assert_eq!(
        list("-L -n -t 10.0.0.1:80").target,
        ListTarget::Service(tcp("10.0.0.1:80"))
    );
    let f = list("-L -n --stats --exact --nosort --sort").format;
    assert!(f.stats && f.exact && f.nosort && f.numeric);
    assert!(list("-Ln --rate").format.rate);
    assert!(list("-Ln --thresholds").format.thresholds);
    assert!(list("-Ln --persistent-conn").format.persistent_conn);
    assert!(list("-Ln --tun-info").format.tun_info);
    assert!(list("-Ln --json").json);
    assert!(list("-lnc --json").json);
    // No arguments at all lists the table, as plain `ipvsadm`.
    assert_eq!(parse(&[]), Ok(Command::List(ListOptions::default())));
}

#[test]
fn list_conflicts_as_ipvsadm() {
    assert_eq!(
        err("-L -c -t 10.0.0.1:80"),
        ParseError::ConflictingOptions {
            opt: "service-address",
            other: "connection",
            cmd: "list"
        }
    );
    assert_eq!(
        err("-L -c --timeout"),
        ParseError::ConflictingOptions {
            opt: "timeout",
            other: "connection",
            cmd: "list"
        }
    );
    assert_eq!(err("-L -c --stats"), ParseError::ListConflict);
    assert_eq!(
        err("-L --timeout --persistent-conn"),
        ParseError::ListConflict
    );
    assert_eq!(
        err("-L -r 10.0.0.1"),
        ParseError::IllegalOption {
            opt: "real-server",
            cmd: "list"
        }
    );
    assert_eq!(
        ParseError::ConflictingOptions {
            opt: "service-address",
            other: "connection",
            cmd: "list"
        }
        .to_string(),
        "The option 'service-address' conflicts with the 'connection' option in the 'list' command"
    );
}

#[test]
fn set_save_restore_zero_help() {
    assert_eq!(
        ok("--set 900 120 300"),
        Command::SetTimeouts(Timeouts {
            tcp: 900,
            tcpfin: 120,
            udp: 300
        })
    );
    assert_eq!(
        ok("--set 0 0 60"),
        Command::SetTimeouts(Timeouts {
            tcp: 0,
            tcpfin: 0,
            udp: 60
        })
    );
    assert_eq!(err("--set 900 120"), ParseError::SetNeedsThree);
    assert_eq!(
        err("--set 900 120 300 7"),
        ParseError::UnexpectedArgument("7".into())
    );
    assert_eq!(err("--set 900 x 300"), ParseError::BadTimeout("x".into()));
    assert_eq!(ok("-S"), Command::Save { numeric: false });
    assert_eq!(ok("-S -n"), Command::Save { numeric: true });
    assert_eq!(ok("-Sn"), Command::Save { numeric: true });
    assert_eq!(ok("--save --numeric"), Command::Save { numeric: true });
    assert_eq!(ok("-R"), Command::Restore);
    assert_eq!(ok("--restore"), Command::Restore);
    assert_eq!(ok("-Z"), Command::Zero(None));
    assert_eq!(ok("--zero"), Command::Zero(None));
    assert_eq!(
        ok("-Z -t 10.0.0.1:80"),
        Command::Zero(Some(tcp("10.0.0.1:80")))
    );
    assert_eq!(ok("-h"), Command::Help);
    assert_eq!(ok("--help"), Command::Help);
    assert_eq!(ok("-v"), Command::Version);
    assert_eq!(
        err("-S -c"),
        ParseError::IllegalOption {
            opt: "connection",
            cmd: "save"
        }
    );
    assert_eq!(
        err("-C -n"),
        ParseError::IllegalOption {
            opt: "numeric",
            cmd: "flush"
        }
    );
}

#[test]
fn command_line_shape_errors() {
    assert_eq!(err("-t 10.0.0.1:80"), ParseError::NoCommand);
    assert_eq!(err("-A -D -t 10.0.0.1:80"), ParseError::MultipleCommands);
    assert_eq!(err("-L -n -n"), ParseError::MultipleOptions("numeric"));
    assert_eq!(
        err("-a -t 10.0.0.1:80 -r 10.0.1.1 -g -i"),
        ParseError::MultipleOptions("forwarding-method")
    );
    assert_eq!(
        err("-A -t 10.0.0.1:80 -u 10.0.0.1:80"),
        ParseError::MultipleOptions("service-address")
    );
    assert_eq!(
        err("-a -t 10.0.0.1:80"),
        ParseError::NeedOption {
            opt: "real-server",
            cmd: "add-server"
        }
    );
    assert_eq!(
        err("-A -s rr"),
        ParseError::NeedOption {
            opt: "service-address",
            cmd: "add-service"
        }
    );
    assert_eq!(
        err("-D -t 10.0.0.1:80 -s rr"),
        ParseError::IllegalOption {
            opt: "scheduler",
            cmd: "delete-service"
        }
    );
    assert_eq!(err("--foo"), ParseError::UnknownOption("--foo".into()));
    assert_eq!(err("-L -q"), ParseError::UnknownOption("-q".into()));
    assert_eq!(err("-A -t"), ParseError::MissingArgument("-t".into()));
    assert_eq!(
        err("-A --tcp-service"),
        ParseError::MissingArgument("--tcp-service".into())
    );
    assert_eq!(
        err("-L --numeric=yes"),
        ParseError::UnwantedArgument("--numeric".into())
    );
    assert_eq!(
        err("-L extra"),
        ParseError::UnexpectedArgument("extra".into())
    );
    assert_eq!(err("-L -- -n"), ParseError::UnexpectedArgument("-n".into()));
    assert_eq!(
        ParseError::NeedOption {
            opt: "real-server",
            cmd: "add-server"
        }
        .to_string(),
        "You need to supply the 'real-server' option for the 'add-server' command"
    );
    assert_eq!(
        ParseError::IllegalOption {
            opt: "scheduler",
            cmd: "delete-service"
        }
        .to_string(),
        "Illegal 'scheduler' option with the 'delete-service' command"
    );
    assert_eq!(err("--foo").to_string(), "--foo: unknown option");
    assert_eq!(
        err("-A -t 10.0.0.1:80 -n -n").to_string(),
        "multiple 'numeric' options specified"
    );
}

/// Every option counts once, under ipvsadm's name for it, and a repeat is reported before
/// its value is read; `--sort` is a no-op that may repeat.
#[test]
fn each_option_may_be_given_once() {
    let cases: &[(&str, &str)] = &[
        ("-t 10.0.0.1:80 -t bad", "service-address"),
        ("-u 10.0.0.1:80 -t bad", "service-address"),
        ("-s rr -s bad", "scheduler"),
        ("-p 10 -p bad", "persistent"),
        ("-p -p", "persistent"),
        ("-M 255.255.255.0 -M bad", "netmask"),
        ("-r 10.0.1.1 -r bad", "real-server"),
        ("-g -i", "forwarding-method"),
        ("-m -m", "forwarding-method"),
        ("-w 1 -w bad", "weight"),
        ("-x 1 -x bad", "u-threshold"),
        ("-y 1 -y bad", "l-threshold"),
        ("-n --numeric", "numeric"),
        ("-c -c", "connection"),
        ("--timeout --timeout", "timeout"),
        ("--stats --stats", "stats"),
        ("--rate --rate", "rate"),
        ("--thresholds --thresholds", "thresholds"),
        ("--persistent-conn --persistent-conn", "persistent-conn"),
        ("--nosort --nosort", "nosort"),
        ("-X --exact", "exact"),
        ("--tun-info --tun-info", "tun-info"),
        ("--tun-type ipip --tun-type bad", "tun-type"),
        ("--tun-port 1 --tun-port bad", "tun-port"),
        ("--tun-nocsum --tun-nocsum", "tun-nocsum"),
        ("--tun-csum --tun-csum", "tun-csum"),
        ("--json --json", "json"),
        ("--mss-clamp 536 --mss-clamp bad", "mss-clamp"),
        ("--gre-key 1 --gre-key bad", "gre-key"),
    ];
    for (opts, name) in cases {
        let line = format!("-L {opts}");
        assert_eq!(err(&line), ParseError::MultipleOptions(name), "{line}");
    }
    assert!(matches!(ok("-L --sort --sort -n"), Command::List(_)));
}

#[test]
fn value_errors_use_ipvsadm_words() {
    let cases: &[(&str, &str)] = &[
        (
            "-A -t web:80",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -t 10.0.0.1:http",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -t 10.0.0.1:65536",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -t 80",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -t 10.0.0.1:",
            "illegal virtual server address[:port] specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r realserver1",
            "illegal real server address[:port] specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.1.1 -w 65536",
            "illegal weight specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.1.1 -w -1",
            "illegal weight specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.1.1 -x 2147483648",
            "illegal u_threshold specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.1.1 -y abc",
            "illegal l_threshold specified",
        ),
        (
            "-A -t 10.0.0.1:80 -s foo",
            "Scheduler or persistence engine not found",
        ),
        (
            "-A -t 10.0.0.1",
            "Zero port specified for non-persistent service",
        ),
        (
            "-A -t 10.0.0.1:0 -s rr",
            "Zero port specified for non-persistent service",
        ),
        (
            "-A -t 10.0.0.1:80 -p 5x",
            "invalid timeout value `5x' specified",
        ),
        (
            "-A -t 10.0.0.1:80 -p -M 10.0.0.300",
            "illegal virtual server persistent mask specified",
        ),
        (
            "-A -t 10.0.0.1:80 --mss-clamp 20",
            "illegal mss-clamp specified",
        ),
    ];
    for (line, msg) in cases {
        assert_eq!(err(line).to_string(), *msg, "{line}");
    }
    assert_eq!(err("-A -t 10.0.0.1:80 -s foo").exit_code(), 255);
    assert_eq!(err("-A -t web:80").exit_code(), 2);
    assert_eq!(err("--foo").exit_code(), 255);
}

#[test]
fn unsupported_ipvsadm_features_are_named() {
    let cases: &[(&str, &str)] = &[
        (
            "-A -f 1 -s rr",
            "fwmark services are not supported by tunlb",
        ),
        (
            "-A --fwmark-service 1",
            "fwmark services are not supported by tunlb",
        ),
        (
            "-A --sctp-service 10.0.0.1:80",
            "SCTP services are not supported by tunlb",
        ),
        (
            "-A -t [2001:db8::1]:80",
            "IPv6 services are not supported by tunlb",
        ),
        (
            "-A -t 2001:db8::1",
            "IPv6 services are not supported by tunlb",
        ),
        (
            "-A -t 10.0.0.1:80 --pe sip",
            "persistence engines are not supported by tunlb",
        ),
        (
            "-A -u 10.0.0.1:53 -o",
            "one-packet scheduling is not supported by tunlb",
        ),
        (
            "-A -t 10.0.0.1:80 -s sh -b sh-port",
            "scheduler flags are not supported by tunlb",
        ),
        (
            "--start-daemon master",
            "the connection sync daemon is not supported by tunlb",
        ),
        (
            "-L --daemon",
            "the connection sync daemon is not supported by tunlb",
        ),
    ];
    for (line, msg) in cases {
        assert_eq!(err(line).to_string(), *msg, "{line}");
    }
    for line in [
        "--stop-daemon master",
        "--syncid 1",
        "--mcast-interface eth0",
        "--mcast-group 224.0.0.81",
        "--mcast-port 8848",
        "--mcast-ttl 1",
        "--sync-maxlen 1472",
        "-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-remcsum",
    ] {
        assert!(
            matches!(err(line), ParseError::Unsupported(_)),
            "{line}: {}",
            err(line)
        );
    }
}

#[test]
fn port_names_resolve_with_a_table() {
    let names = PortNames::parse("http 80/tcp www\ndomain 53/udp\n");
    let c = parse_with(&args("-A -t 10.0.0.1:http -s rr"), &names).unwrap();
    assert!(matches!(c, Command::AddService(o) if o.key.port == 80));
    let c = parse_with(&args("-a -u 10.0.0.1:domain -r 10.0.1.1:domain -i"), &names).unwrap();
    assert!(matches!(c, Command::AddServer { dest, .. } if dest.port == 53));
    // Names are per protocol.
    assert!(parse_with(&args("-A -u 10.0.0.1:http"), &names).is_err());
}

#[test]
fn restore_input_as_ipvsadm_restore() {
    let text = "\
# saved by ipvsadm-save
-A -t 10.0.0.1:80 -s rr

ipvsadm -a -t 10.0.0.1:80 -r 10.0.1.1:80 -i -w 1 --tun-type ipip
   -a -t 10.0.0.1:80 -r 10.0.1.2 -i
--set 900 120 300
-Z
";
    let cmds = parse_restore(text, &PortNames::empty()).unwrap();
    let lines: Vec<usize> = cmds.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, vec![2, 4, 5, 6, 7]);
    assert!(matches!(cmds[1].1, Edit::AddServer { .. }));
    let bad = "-A -t 10.0.0.1:80\n-a -t 10.0.0.1:80 -r host\n";
    let e = parse_restore(bad, &PortNames::empty()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2: illegal real server address[:port] specified"
    );
    let e = parse_restore("-C\n-L -n\n", &PortNames::empty()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2: the 'list' command cannot be used in a restore file"
    );
    let e = parse_restore("-R\n", &PortNames::empty()).unwrap_err();
    assert_eq!(e.line, 1);
}

/// An in-memory director for `run`: the same `apply_batch` the real one uses.
struct FakeDirector {
    set: ServiceSet,
    timeouts: Timeouts,
    running: bool,
    root: bool,
    /// The text `--reload` loads, if the director had `--config`.
    config: Option<String>,
    /// How many `Apply` requests arrived.
    applies: usize,
}

impl FakeDirector {
    fn new() -> FakeDirector {
        FakeDirector {
            set: ServiceSet::default(),
            timeouts: Timeouts::default(),
            running: true,
            root: true,
            config: None,
            applies: 0,
        }
    }

    fn handle(&mut self, req: &Request) -> Result<Response, ClientError> {
        if !self.running {
            return Err(ClientError::NotRunning);
        }
        if !self.root {
            return Ok(Response::PermissionDenied);
        }
        if matches!(req, Request::Apply(_)) {
            self.applies += 1;
        }
        Ok(match req {
            Request::Apply(cmds) => match self.set.apply_batch(&mut self.timeouts, cmds) {
                Ok(_) => Response::Ok,
                Err(e) => Response::from_batch_error(&e),
            },
            Request::List => Response::Listing(Listing::from_set(&self.set)),
            Request::ListConns => Response::Conns(Vec::new()),
            Request::GetTimeouts => Response::Timeouts(self.timeouts),
            Request::Config => Response::Config {
                toml: to_toml(&self.set, &DirectorSettings::default()),
            },
            Request::Reload => match &self.config {
                None => Response::error("the director was started without --config"),
                Some(text) => match load_str(text, "fake.toml") {
                    Ok((settings, set)) => {
                        self.set = set;
                        self.timeouts = settings.timeouts;
                        Response::Reloaded {
                            message: "reloaded fake.toml".to_string(),
                        }
                    }
                    Err(e) => Response::error(e.to_string()),
                },
            },
        })
    }

    /// Runs `tunlb adm LINE` with `stdin`: (exit status, stdout, stderr).
    fn adm(&mut self, line: &str, stdin: &str) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut input = stdin.as_bytes();
        let code = run(
            &args(line),
            &PortNames::empty(),
            &mut |req: &Request| self.handle(req),
            &mut input,
            &mut out,
            &mut err,
        );
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }
}

#[test]
fn adm_edits_then_lists() {
    let mut d = FakeDirector::new();
    assert_eq!(
        d.adm("-A -t 192.168.150.100:80 -s rr", ""),
        (0, String::new(), String::new())
    );
    assert_eq!(
        d.adm("-a -t 192.168.150.100:80 -r 192.168.150.12:80 -i", "")
            .0,
        0
    );
    let (code, out, _) = d.adm("-ln", "");
    assert_eq!(code, 0);
    assert_eq!(
        out.lines().skip(3).collect::<Vec<_>>(),
        vec![
            "TCP  192.168.150.100:80 rr",
            "  -> 192.168.150.12:80            Tunnel  1      0          0         "
        ]
    );
    let (code, out, _) = d.adm("-S -n", "");
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "-A -t 192.168.150.100:80 -s rr\n\
         -a -t 192.168.150.100:80 -r 192.168.150.12:80 -i -w 1 --tun-type ipip\n"
    );
    let (code, out, _) = d.adm("-L --timeout", "");
    assert_eq!(
        (code, out.as_str()),
        (0, "Timeout (tcp tcpfin udp): 900 120 300\n")
    );
    assert_eq!(d.adm("--set 60 0 0", "").0, 0);
    assert_eq!(d.timeouts.tcp, 60);
    let (code, out, _) = d.adm("-lnc", "");
    assert_eq!(code, 0);
    assert!(out.starts_with("IPVS connection entries\n"));
}

#[test]
fn adm_reports_director_errors_and_touches_nothing() {
    let mut d = FakeDirector::new();
    d.adm("-A -t 10.0.0.1:80", "");
    let before = d.set.clone();
    let (code, out, err) = d.adm("-A -t 10.0.0.1:80 -s rr", "");
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (255, "", "Service already exists\n")
    );
    let (code, _, err) = d.adm("-a -t 10.0.0.2:80 -r 10.0.1.1", "");
    assert_eq!((code, err.as_str()), (255, "Service not defined\n"));
    let (code, _, err) = d.adm("-L -n -t 10.0.0.9:80", "");
    assert_eq!((code, err.as_str()), (1, "No such service\n"));
    assert_eq!(d.set, before);
}

#[test]
fn adm_restore_is_all_or_nothing() {
    let mut d = FakeDirector::new();
    let good = "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1 -i\n";
    let bad = "-A -t 10.0.0.2:80\n\n-a -t 10.0.0.2:80 -r 10.0.1.1 -i\n-a -t 10.0.0.2:80 -r 10.0.1.1:80 -i\n";
    assert_eq!(d.adm("-R", good).0, 0);
    let before = d.set.clone();
    let (code, _, err) = d.adm("-R", bad);
    assert_eq!(
        (code, err.as_str()),
        (255, "line 4: Destination already exists\n")
    );
    assert_eq!(d.set, before);
    let (code, _, err) = d.adm("-R", "-A -t 10.0.0.3:80\n-a -t 10.0.0.3:80 -r nope\n");
    assert_eq!(
        (code, err.as_str()),
        (2, "line 2: illegal real server address[:port] specified\n")
    );
    assert_eq!(d.set, before);
    // -S output restores to the same table.
    let (_, saved, _) = d.adm("-S -n", "");
    let mut d2 = FakeDirector::new();
    assert_eq!(d2.adm("-R", &saved).0, 0);
    assert_eq!(d2.set, d.set);
}

#[test]
fn adm_without_director_or_root() {
    let mut d = FakeDirector::new();
    d.running = false;
    let (code, _, err) = d.adm("-ln", "");
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "tunlb adm: no director is running in this network namespace \
         (start one with: tunlb director)\n"
    );
    d.running = true;
    d.root = false;
    let (code, _, err) = d.adm("-C", "");
    assert_eq!(
        (code, err.as_str()),
        (2, "Permission denied (you must be root)\n")
    );
}

#[test]
fn adm_usage_errors_point_at_help() {
    let mut d = FakeDirector::new();
    let (code, _, err) = d.adm("-a -t 10.0.0.1:80", "");
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "You need to supply the 'real-server' option for the 'add-server' command\n\
         Try `tunlb adm -h' or 'tunlb adm --help' for more information.\n"
    );
    let (code, _, err) = d.adm("-A -f 1", "");
    assert_eq!(
        (code, err.as_str()),
        (2, "fwmark services are not supported by tunlb\n")
    );
    let (code, out, _) = d.adm("-h", "");
    assert_eq!(code, 0);
    assert!(out.contains("Usage:"));
}

#[test]
fn adm_json_listing() {
    let mut d = FakeDirector::new();
    d.adm("-A -t 10.0.0.1:80 -s rr", "");
    d.adm("-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gue", "");
    let (code, out, _) = d.adm("-ln --json", "");
    assert_eq!(code, 0);
    let listing: Listing = serde_json::from_str(&out).expect("JSON listing");
    assert_eq!(listing.to_set(), d.set);
    let (_, out, _) = d.adm("-L --timeout --json", "");
    let t: Timeouts = serde_json::from_str(&out).unwrap();
    assert_eq!(t, Timeouts::default());
}

#[test]
fn save_config_and_reload_forms() {
    assert_eq!(
        ok("--save-config /etc/tunlb/director.toml"),
        Command::SaveConfig {
            path: "/etc/tunlb/director.toml".into()
        }
    );
    assert_eq!(
        ok("--save-config=saved.toml"),
        Command::SaveConfig {
            path: "saved.toml".into()
        }
    );
    assert_eq!(
        ok("--save-config -"),
        Command::SaveConfig { path: "-".into() }
    );
    assert_eq!(ok("--reload"), Command::Reload);
    assert_eq!(
        err("--save-config"),
        ParseError::MissingArgument("--save-config".into())
    );
    assert_eq!(err("--save-config="), ParseError::NoConfigPath);
    assert_eq!(
        err("--reload=now"),
        ParseError::UnwantedArgument("--reload".into())
    );
    assert_eq!(err("--reload -S"), ParseError::MultipleCommands);
    assert_eq!(
        err("--save-config f.toml -n"),
        ParseError::IllegalOption {
            opt: "numeric",
            cmd: "save-config"
        }
    );
    assert_eq!(
        err("--reload -t 10.0.0.1:80"),
        ParseError::IllegalOption {
            opt: "service-address",
            cmd: "reload"
        }
    );
    assert_eq!(
        err("--save-config a.toml b.toml"),
        ParseError::UnexpectedArgument("b.toml".into())
    );
    for line in ["--reload", "--save-config x.toml"] {
        let e = parse_restore(line, &PortNames::empty()).unwrap_err();
        assert!(matches!(e.error, ParseError::NotRestorable(_)), "{e}");
    }
    assert!(!ok("--reload").is_table_edit());
}

/// Section 6 of the seed, with `tunlb adm` for ipvsadm and the lab's addresses: every
/// command parses as ipvsadm reads it.
#[test]
fn seed_section_6_commands_parse() {
    let vip = tcp("192.168.150.100:80");
    assert_eq!(
        ok("-A -t 192.168.150.100:80 -s rr"),
        Command::AddService(ServiceOptions {
            key: vip,
            scheduler: SchedulerKind::Rr,
            persistence: None,
            mss_clamp: None,
        })
    );
    for rip in ["192.168.150.12", "192.168.150.13"] {
        // As in the seed (direct routing) and as tunlb runs it today (tunnel).
        for (flag, forward) in [
            ("-g", Forward::Dr),
            ("-i", Forward::tunnel(TunnelType::Ipip)),
        ] {
            let line = format!("-a -t 192.168.150.100:80 -r {rip} {flag} -w 1");
            assert_eq!(
                ok(&line),
                Command::AddServer {
                    service: vip,
                    dest: DestConfig {
                        addr: rip.parse().unwrap(),
                        port: 80,
                        weight: 1,
                        forward,
                        u_threshold: 0,
                        l_threshold: 0,
                    }
                },
                "{line}"
            );
        }
    }
    assert!(matches!(ok("-ln"), Command::List(o) if o.target == ListTarget::Table));
    assert!(matches!(ok("-lnc"), Command::List(o) if o.target == ListTarget::Connections));
    assert_eq!(ok("-C"), Command::Clear);
    // The seed's `192.168.100:80` is a typo that inet_aton would read as 192.168.0.100;
    // tunlb wants four numbers.
    assert_eq!(
        err("-A -t 192.168.100:80 -s rr"),
        ParseError::BadServiceAddress
    );
}

/// Every command and option of the list, run through `adm` against the in-memory
/// director: each succeeds, and every listing also comes as JSON.
#[test]
fn adm_takes_every_listed_option() {
    let mut d = FakeDirector::new();
    let good = [
        "-A -t 10.0.0.1:80 -s rr",
        "-E -t 10.0.0.1:80 -s wlc -p 600 -M 255.255.255.0",
        "-A -u 10.0.0.1:53 -s sh -p",
        "-a -t 10.0.0.1:80 -r 10.0.1.1 -i -w 2 -x 100 -y 10 --tun-type ipip",
        "-a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gue --tun-port 6081 --tun-nocsum",
        "-a -t 10.0.0.1:80 -r 10.0.1.3 -i --tun-type gre --tun-csum",
        "-a -t 10.0.0.1:80 -r 10.0.1.4 -g -w 0",
        "-a -t 10.0.0.1:80 -r 10.0.1.5:8080 -m",
        "-e -t 10.0.0.1:80 -r 10.0.1.4 -g -w 5",
        "-a -u 10.0.0.1:53 -r 10.0.1.1 -i",
        "-d -u 10.0.0.1:53 -r 10.0.1.1",
        "--set 1000 100 200",
        "-Z",
        "-Z -t 10.0.0.1:80",
        "-L",
        "-l",
        "-ln",
        "-lnc",
        "-L -n --stats",
        "-L -n --stats --exact",
        "-L -n --rate",
        "-L -n --thresholds",
        "-L -n --persistent-conn",
        "-L -n --tun-info",
        "-L -n --sort",
        "-L --timeout",
        "-L -n -t 10.0.0.1:80",
        "-S",
        "-S -n",
    ];
    for line in good {
        let (code, _, err) = d.adm(line, "");
        assert_eq!((code, err.as_str()), (0, ""), "{line}");
    }
    assert_eq!(d.set.services.len(), 2);
    assert_eq!(d.set.services[0].dests.len(), 5);
    assert_eq!(d.set.services[1].dests.len(), 0);
    for line in [
        "-L -n --json",
        "-L -n --stats --json",
        "-L -n --rate --json",
        "-L -n -t 10.0.0.1:80 --json",
        "-lnc --json",
        "-L --timeout --json",
    ] {
        let (code, out, err) = d.adm(line, "");
        assert_eq!((code, err.as_str()), (0, ""), "{line}");
        let _: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{line}: {e}\n{out}"));
    }
    let (_, out, _) = d.adm("-L --timeout", "");
    assert_eq!(out, "Timeout (tcp tcpfin udp): 1000 100 200\n");
    let (_, out, _) = d.adm("-D -u 10.0.0.1:53", "");
    assert_eq!(out, "");
    assert_eq!(d.adm("-C", "").0, 0);
    assert!(d.set.services.is_empty());
}

/// Unknown or malformed arguments: a message on stderr, a non-zero exit, and the director
/// is never asked to change anything.
#[test]
fn bad_command_lines_never_reach_the_director() {
    let mut d = FakeDirector::new();
    d.adm("-A -t 10.0.0.1:80 -s rr", "");
    let (before, applies) = (d.set.clone(), d.applies);
    let cases: &[(&str, u8, &str)] = &[
        ("--bogus", 255, "--bogus: unknown option"),
        ("-A -t 10.0.0.2:80 -q", 255, "-q: unknown option"),
        ("-A -t", 255, "-t: missing argument"),
        ("-A -t 10.0.0.2:80 -s", 255, "-s: missing argument"),
        (
            "-A -t 10.0.0.2:80 -s nosuch",
            255,
            "Scheduler or persistence engine not found",
        ),
        (
            "-A -f 7 -s rr",
            2,
            "fwmark services are not supported by tunlb",
        ),
        (
            "-A -t 10.0.0.256:80",
            2,
            "illegal virtual server address[:port] specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.1.x -i",
            2,
            "illegal real server address[:port] specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.1.1 -i -w 70000",
            2,
            "illegal weight specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type vxlan",
            2,
            "illegal tunnel type specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gue --tun-port 0",
            2,
            "illegal tunnel port specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.1.1 -g --tun-type gre",
            2,
            "Tunnel options conflict with forward method",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gre --tun-csum --tun-nocsum",
            2,
            "The option 'tun-csum' conflicts with the 'tun-nocsum' option in the 'gre' tunnel type",
        ),
        ("--set 1 2", 2, "--set option requires 3 timeout values"),
        (
            "-A -t 10.0.0.2:80 -p 1x",
            2,
            "invalid timeout value `1x' specified",
        ),
        ("-C extra", 2, "unexpected argument extra"),
        ("-t 10.0.0.2:80", 255, "no command specified"),
    ];
    for (line, code, message) in cases {
        let (got, out, err) = d.adm(line, "");
        assert_eq!(got, *code, "{line}: {err}");
        assert_eq!(out, "", "{line}");
        assert_eq!(err.lines().next(), Some(*message), "{line}");
    }
    assert_eq!(d.set, before);
    assert_eq!(d.applies, applies);
}

#[test]
fn adm_save_config_writes_the_toml_atomically() {
    let mut d = FakeDirector::new();
    d.adm("-A -t 10.0.0.1:80 -s rr", "");
    d.adm("-a -t 10.0.0.1:80 -r 10.0.1.1 -i -w 3", "");
    let (code, stdout_toml, _) = d.adm("--save-config -", "");
    assert_eq!(code, 0);
    let (_, set) = load_str(&stdout_toml, "stdout").expect("the TOML loads");
    assert_eq!(set, d.set);

    let dir = std::env::temp_dir().join(format!("tunlb-adm-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("director.toml");
    std::fs::write(&file, "old contents\n").unwrap();
    let line = format!("--save-config {}", file.display());
    let (code, out, err) = d.adm(&line, "");
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), stdout_toml);
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["director.toml"], "no temporary file is left behind");

    // A folder that does not exist: exit 1, and the message names the file.
    let missing = dir.join("no/such/dir.toml");
    let (code, _, err) = d.adm(&format!("--save-config {}", missing.display()), "");
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!("tunlb adm: writing {}: ", missing.display())),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn adm_reload_prints_the_outcome() {
    let mut d = FakeDirector::new();
    d.adm("-A -t 10.0.0.1:80 -s rr", "");
    let before = d.set.clone();
    let (code, _, err) = d.adm("--reload", "");
    assert_eq!(
        (code, err.as_str()),
        (255, "the director was started without --config\n")
    );
    d.config = Some("[[service]]\nvip = \"10.0.0.9\"\nport = 80\nscheduler = rr\n".into());
    let (code, out, err) = d.adm("--reload", "");
    assert_eq!((code, out.as_str()), (255, ""));
    assert!(err.starts_with("fake.toml:4:"), "{err}");
    assert_eq!(d.set, before);
    d.config = Some("[[service]]\nvip = \"10.0.0.9\"\nport = 80\nscheduler = \"rr\"\n".into());
    let (code, out, _) = d.adm("--reload", "");
    assert_eq!((code, out.as_str()), (0, "reloaded fake.toml\n"));
    assert_eq!(d.set.services[0].key, tcp("10.0.0.9:80"));
}
