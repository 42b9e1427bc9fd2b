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
use crate::encap::{Tunnel, TunnelType};
use crate::model::{DestConfig, Edit, Forward, Protocol, SchedulerKind, ServiceKey, Timeouts};
use crate::model::{Netmask, ServiceSet};

fn args(line: &str) -> Vec<OsString> {
    line.split_whitespace().map(Into::into).collect()
}

fn ok(line: &str) -> Command {
    parse(&args(line)).unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn edit(line: &str) -> Edit {
    match ok(line) {
        Command::Edit(edit) => edit,
        other => panic!("{line}: not an edit: {other:?}"),
    }
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
    match edit(line) {
        Edit::AddServer { dest, .. } | Edit::EditServer { dest, .. } => dest,
        other => panic!("{other:?}"),
    }
}

fn svc_opts(line: &str) -> ServiceOptions {
    match edit(line) {
        Edit::AddService(o) | Edit::EditService(o) => o,
        other => panic!("{other:?}"),
    }
}

#[test]
fn add_service_forms() {
    assert_eq!(
        edit("-A -t 192.168.150.100:80 -s rr"),
        Edit::AddService(ServiceOptions {
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
        edit("-E -t 10.0.0.1:80 -s rr"),
        Edit::EditService(_)
    ));
    assert!(matches!(
        edit("--edit-service -t 10.0.0.1:80"),
        Edit::EditService(_)
    ));
}

#[test]
fn persistence_with_and_without_value() {
    let p = |line: &str| svc_opts(line).persistence.map(|p| (p.timeout, p.netmask));
    let host = Netmask::V4(Ipv4Addr::BROADCAST);
    let c = Netmask::V4(Ipv4Addr::new(255, 255, 255, 0));
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
        edit("-D -t 10.0.0.1:80"),
        Edit::DeleteService(tcp("10.0.0.1:80"))
    );
    assert_eq!(
        edit("--delete-service --udp-service 10.0.0.1:53"),
        Edit::DeleteService(key("10.0.0.1:53", Protocol::Udp))
    );
    assert_eq!(edit("-C"), Edit::Clear);
    assert_eq!(edit("--clear"), Edit::Clear);
}

#[test]
fn add_server_defaults_as_ipvsadm() {
    let d = dest("-a -t 10.0.0.1:80 -r 10.0.1.1");
    assert_eq!(d.addr, Ipv4Addr::new(10, 0, 1, 1));
    assert_eq!(d.port, 80);
    assert_eq!(d.weight, 1);
    assert_eq!(d.forward, Forward::Dr);
    assert_eq!((d.u_threshold, d.l_threshold), (0, 0));
    match edit("--add-server --tcp-service 10.0.0.1:80 --real-server 10.0.1.1:80 --ipip") {
        Edit::AddServer { service, dest } => {
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
        edit("-e -t 10.0.0.1:80 -r 10.0.1.1 -i -w 2"),
        Edit::EditServer { .. }
    ));
    assert!(matches!(
        edit("--edit-server -t 10.0.0.1:80 -r 10.0.1.1"),
        Edit::EditServer { .. }
    ));
}

#[test]
fn tunnel_options() {
    let tunnel = |line: &str| match dest(line).forward {
        Forward::Tunnel(t) => t,
        other => panic!("{other:?}"),
    };
    let base = "-a -t 10.0.0.1:80 -r 10.0.1.1 -i";
    assert_eq!(tunnel(base), Tunnel::Ipip);
    assert_eq!(tunnel(&format!("{base} --tun-type ipip")), Tunnel::Ipip);
    assert_eq!(
        tunnel(&format!("{base} --tun-type gue")),
        Tunnel::Gue {
            port: 6080,
            csum: false
        }
    );
    assert_eq!(
        tunnel(&format!("{base} --tun-type gue --tun-port 7000 --tun-csum")),
        Tunnel::Gue {
            port: 7000,
            csum: true
        }
    );
    assert_eq!(
        tunnel(&format!(
            "{base} --tun-type gue --tun-port=7000 --tun-nocsum"
        )),
        Tunnel::Gue {
            port: 7000,
            csum: false
        }
    );
    assert_eq!(
        tunnel(&format!("{base} --tun-type gre --tun-csum --gre-key 42")),
        Tunnel::Gre {
            key: Some(42),
            csum: true
        }
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
        edit("-d -t 10.0.0.1:80 -r 10.0.1.1"),
        Edit::DeleteServer {
            service: tcp("10.0.0.1:80"),
            addr: Ipv4Addr::new(10, 0, 1, 1).into(),
            port: 80
        }
    );
    assert_eq!(
        edit("--delete-server -t 10.0.0.1:80 -r 10.0.1.1:8080"),
        Edit::DeleteServer {
            service: tcp("10.0.0.1:80"),
            addr: Ipv4Addr::new(10, 0, 1, 1).into(),
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
        edit("--set 900 120 300"),
        Edit::SetTimeouts(Timeouts {
            tcp: 900,
            tcpfin: 120,
            udp: 300
        })
    );
    assert_eq!(
        edit("--set 0 0 60"),
        Edit::SetTimeouts(Timeouts {
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
    assert_eq!(edit("-Z"), Edit::Zero(None));
    assert_eq!(edit("--zero"), Edit::Zero(None));
    assert_eq!(
        edit("-Z -t 10.0.0.1:80"),
        Edit::Zero(Some(tcp("10.0.0.1:80")))
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
        // IPv6 services parse now (tests/ipv6.rs); `-6` needs `-f`, which tunlb refuses.
        ("-A -t 10.0.0.1:80 -6", "-6 used before -f\n"),
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
    assert!(matches!(c, Command::Edit(Edit::AddService(o)) if o.key.port == 80));
    let c = parse_with(&args("-a -u 10.0.0.1:domain -r 10.0.1.1:domain -i"), &names).unwrap();
    assert!(matches!(c, Command::Edit(Edit::AddServer { dest, .. }) if dest.port == 53));
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

/// `run` against an in-memory director.
mod client;

mod ipv6;
