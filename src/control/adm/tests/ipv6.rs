//! ipvsadm's IPv6 syntax and output: `-t [2001:db8::1]:80`, `-r [..]:80`, `-M 64`, `-6`, and
//! the listings, byte for byte. Expected texts follow ipvsadm's printf formats
//! (`print_title`, `print_service_entry`, `addrport_to_anyname`, `print_conn`): IPv6 addresses
//! in brackets, IPv4 service names cut at 33 columns and their real servers at 28, IPv6 ones
//! never cut; `mask N` / `-M N` as a prefix length, omitted at 128.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::*;
use crate::control::format::{list_conns, list_table, save_rules, ConnEntry};
use crate::model::{EditError, Netmask};

fn v6(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v6_key(port: u16, proto: Protocol) -> ServiceKey {
    ServiceKey {
        vip: v6("2001:db8::1"),
        port,
        proto,
    }
}

/// A table built by applying `adm` lines, as the director does.
fn table(lines: &[&str]) -> ServiceSet {
    let mut set = ServiceSet::default();
    for l in lines {
        set.apply(&edit(l)).expect(l);
    }
    set
}

fn numeric() -> ListFormat {
    ListFormat {
        numeric: true,
        ..ListFormat::default()
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// The mixed table of the golden listings below.
const MIXED: &[&str] = &[
    "-A -t 10.0.0.1:80 -s rr",
    "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 1",
    "-a -t 10.0.0.1:80 -r [2001:db8::10]:80 -i -w 1",
    "-a -t 10.0.0.1:80 -r [2001:db8:1234:5678:9abc:def0:1234:5678]:80 -i -w 1",
    "-A -u 10.0.0.1:53",
    "-a -u 10.0.0.1:53 -r 10.0.1.2 -w 2",
    "-A -t [2001:db8::1]:80 -s rr -p -M 64",
    "-a -t [2001:db8::1]:80 -r [2001:db8:1234:5678:9abc:def0:1234:5678] -g",
    "-a -t [2001:db8::1]:80 -r [2001:db8::11]:80 -g -w 3 -x 100 -y 10",
    "-a -t [2001:db8::1]:80 -r 2001:db8::10 -g",
    "-A -u [2001:db8::1]:53 -p 600",
    "-a -u [2001:db8::1]:53 -r 10.0.1.3 -i",
];

#[test]
fn service_and_server_addresses_parse_as_ipvsadm() {
    assert_eq!(
        svc_opts("-A -t [2001:db8::1]:80 -s rr").key,
        v6_key(80, Protocol::Tcp)
    );
    assert_eq!(
        svc_opts("-A -u [2001:db8::1]:53").key,
        v6_key(53, Protocol::Udp)
    );
    // A bare IPv6 address is the service without a port (ipvsadm's parse_service).
    assert_eq!(
        svc_opts("-A -t 2001:db8::1 -p").key,
        v6_key(0, Protocol::Tcp)
    );
    // Port from the service: bare, or bracketed without a port (a tunlb extension).
    for r in ["[2001:db8::10]", "2001:db8::10", "[2001:db8::10]:80"] {
        let d = dest(&format!("-a -t [2001:db8::1]:80 -r {r} -g"));
        assert_eq!((d.addr, d.port), (v6("2001:db8::10"), 80), "{r}");
    }
    let d = dest("-a -t [2001:db8::1]:80 -r [2001:db8::10]:8080 -m");
    assert_eq!((d.addr, d.port), (v6("2001:db8::10"), 8080));
    assert!(matches!(
        edit("-d -t [2001:db8::1]:80 -r [2001:db8::10]"),
        Edit::DeleteServer { port: 80, .. }
    ));
    for bad in [
        "-A -t [2001:db8::1]80",
        "-A -t [2001:db8::1",
        "-A -t [10.0.0.1]:80",
        "-A -t [2001:db8::1]:",
        "-A -t [2001:db8::1]:70000",
    ] {
        assert_eq!(err(bad), ParseError::BadServiceAddress, "{bad}");
    }
    assert_eq!(
        err("-a -t [2001:db8::1]:80 -r [2001:db8::zz]"),
        ParseError::BadServerAddress
    );
}

#[test]
fn netmask_is_a_prefix_length_for_ipv6() {
    let mask = |l: &str| svc_opts(l).persistence.map(|p| p.netmask);
    assert_eq!(
        mask("-A -t [2001:db8::1]:80 -p -M 64"),
        Some(Netmask::V6(64))
    );
    assert_eq!(mask("-A -t [2001:db8::1]:80 -p"), Some(Netmask::V6(128)));
    // As ipvsadm: an IPv6 `-t` after `-M` resets the granularity to /128.
    assert_eq!(
        mask("-A -M 255.255.255.0 -t [2001:db8::1]:80 -p"),
        Some(Netmask::V6(128))
    );
    assert_eq!(
        mask("-A -t 10.0.0.1:80 -p -M 255.255.255.0"),
        Some(Netmask::V4(Ipv4Addr::new(255, 255, 255, 0)))
    );
    for bad in ["0", "129", "255.255.255.0", "x"] {
        let e = err(&format!("-A -t [2001:db8::1]:80 -p -M {bad}"));
        assert_eq!(e.to_string(), "illegal ipv6 netmask specified", "{bad}");
    }
    assert_eq!(
        err("-A -t 10.0.0.1:80 -p -M 64").to_string(),
        "illegal virtual server persistent mask specified"
    );
}

#[test]
fn ipv6_flag_needs_fwmark() {
    // ipvsadm's text, its own newline included; `-f` itself stays refused.
    assert_eq!(
        err("-A -t 10.0.0.1:80 -6").to_string(),
        "-6 used before -f\n"
    );
    assert_eq!(
        err("-A -6 -t 10.0.0.1:80").to_string(),
        "-6 used before -f\n"
    );
    assert_eq!(
        err("-A -f 1 -6").to_string(),
        "fwmark services are not supported by tunlb"
    );
}

#[test]
fn mixed_families_only_through_tunnels() {
    for fwd in ["-g", "-m"] {
        let e = err(&format!("-a -t [2001:db8::1]:80 -r 10.0.1.1 {fwd}"));
        let text = e.to_string();
        assert!(
            text.contains("10.0.1.1") && text.contains("2001:db8::1"),
            "{text}"
        );
    }
    let d = dest("-a -t [2001:db8::1]:80 -r 10.0.1.1 -i --tun-type gue");
    assert_eq!(d.addr, IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1)));
    // The table refuses it too (IPVS: EINVAL), whoever sends the edit.
    let mut set = table(&["-A -t 10.0.0.1:80"]);
    let mut bad = dest("-a -t 10.0.0.1:80 -r [2001:db8::10] -i");
    bad.forward = Forward::Dr;
    let e = set
        .apply(&Edit::AddServer {
            service: tcp("10.0.0.1:80"),
            dest: bad,
        })
        .unwrap_err();
    assert_eq!(
        e,
        EditError::FamilyMismatch {
            vip: "10.0.0.1".parse().unwrap(),
            addr: v6("2001:db8::10")
        }
    );
    assert!(e.to_string().starts_with("Invalid argument"), "{e}");
    // A delete of a mixed-family server is not checked (IPVS neither).
    set.apply(&edit("-a -t 10.0.0.1:80 -r [2001:db8::10] -i"))
        .unwrap();
    set.apply(&edit("-d -t 10.0.0.1:80 -r [2001:db8::10]"))
        .unwrap();
}

#[test]
fn list_numeric_mixed_table() {
    let got = list_table(
        &Listing::from_set(&table(MIXED)),
        &numeric(),
        &PortNames::empty(),
    );
    assert_eq!(
        lines(&got),
        [
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
            "TCP  10.0.0.1:80 rr",
            "  -> 10.0.1.1:80                  Route   1      0          0         ",
            "  -> [2001:db8::10]:80            Tunnel  1      0          0         ",
            "  -> [2001:db8:1234:5678:9abc:def Tunnel  1      0          0         ",
            "UDP  10.0.0.1:53 wlc",
            "  -> 10.0.1.2:53                  Route   2      0          0         ",
            "TCP  [2001:db8::1]:80 rr persistent 300 mask 64",
            "  -> [2001:db8::10]:80            Route   1      0          0         ",
            "  -> [2001:db8::11]:80            Route   3      0          0         ",
            "  -> [2001:db8:1234:5678:9abc:def0:1234:5678]:80 Route   1      0          0         ",
            "UDP  [2001:db8::1]:53 wlc persistent 600",
            "  -> 10.0.1.3:53                  Tunnel  1      0          0         ",
        ]
    );
}

#[test]
fn list_stats_thresholds_and_persistent_conn_of_an_ipv6_service() {
    let set = table(&MIXED[6..10]);
    let listing = Listing::from_set(&set);
    let names = PortNames::empty();
    let stats = ListFormat {
        stats: true,
        ..numeric()
    };
    assert_eq!(
        lines(&list_table(&listing, &stats, &names)),
        [
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes",
            "  -> RemoteAddress:Port",
            "TCP  [2001:db8::1]:80                    0        0        0        0        0",
            "  -> [2001:db8::10]:80                   0        0        0        0        0",
            "  -> [2001:db8::11]:80                   0        0        0        0        0",
            "  -> [2001:db8:1234:5678:9abc:def0:1234:5678]:80        0        0        0        0        0",
        ]
    );
    let rate = ListFormat {
        rate: true,
        exact: true,
        ..numeric()
    };
    assert_eq!(
        lines(&list_table(&listing, &rate, &names))[3..5],
        [
            "TCP  [2001:db8::1]:80                    0        0        0        0        0",
            "  -> [2001:db8::10]:80                   0        0        0        0        0",
        ]
    );
    let thresholds = ListFormat {
        thresholds: true,
        ..numeric()
    };
    assert_eq!(
        lines(&list_table(&listing, &thresholds, &names))[1..6],
        [
            "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn ",
            "  -> RemoteAddress:Port",
            "TCP  [2001:db8::1]:80 rr persistent 300 mask 64",
            "  -> [2001:db8::10]:80            0          0          0          0         ",
            "  -> [2001:db8::11]:80            100        10         0          0         ",
        ]
    );
    let pc = ListFormat {
        persistent_conn: true,
        ..numeric()
    };
    assert_eq!(
        lines(&list_table(&listing, &pc, &names))[1..5],
        [
            "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn ",
            "  -> RemoteAddress:Port",
            "TCP  [2001:db8::1]:80 rr persistent 300 mask 64",
            "  -> [2001:db8::10]:80            1         0           0          0         ",
        ]
    );
    // Without -n the port is named, inside ipvsadm's brackets.
    let names = PortNames::parse("http 80/tcp\n");
    assert_eq!(
        lines(&list_table(&listing, &ListFormat::default(), &names))[3..5],
        [
            "TCP  [2001:db8::1]:http rr persistent 300 mask 64",
            "  -> [2001:db8::10]:http          Route   1      0          0         ",
        ]
    );
}

#[test]
fn save_and_restore_a_mixed_table() {
    let set = table(MIXED);
    let saved = save_rules(&set, true, &PortNames::empty());
    assert_eq!(
        lines(&saved),
        [
            "-A -t 10.0.0.1:80 -s rr",
            "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 1",
            "-a -t 10.0.0.1:80 -r [2001:db8::10]:80 -i -w 1 --tun-type ipip",
            "-a -t 10.0.0.1:80 -r [2001:db8:1234:5678:9abc:def0:1234:5678]:80 -i -w 1 --tun-type ipip",
            "-A -u 10.0.0.1:53 -s wlc",
            "-a -u 10.0.0.1:53 -r 10.0.1.2:53 -g -w 2",
            "-A -t [2001:db8::1]:80 -s rr -p 300 -M 64",
            "-a -t [2001:db8::1]:80 -r [2001:db8::10]:80 -g -w 1",
            "-a -t [2001:db8::1]:80 -r [2001:db8::11]:80 -g -w 3 -x 100 -y 10",
            "-a -t [2001:db8::1]:80 -r [2001:db8:1234:5678:9abc:def0:1234:5678]:80 -g -w 1",
            "-A -u [2001:db8::1]:53 -s wlc -p 600",
            "-a -u [2001:db8::1]:53 -r 10.0.1.3:53 -i -w 1 --tun-type ipip",
        ]
    );
    // -R of that output gives the same table (services in -S order).
    let mut restored = ServiceSet::default();
    for (line, e) in parse_restore(&saved, &PortNames::empty()).expect("restore") {
        restored
            .apply(&e)
            .unwrap_or_else(|e| panic!("line {line}: {e}"));
    }
    assert_eq!(save_rules(&restored, true, &PortNames::empty()), saved);
    let mut want = set.services.clone();
    let mut got = restored.services.clone();
    let order = |s: &crate::model::ServiceConfig| (s.key.vip.is_ipv6(), s.key);
    want.sort_by_key(order);
    got.sort_by_key(order);
    for (w, g) in want.iter_mut().zip(got.iter_mut()) {
        w.dests.sort_by_key(|d| d.addr);
        g.dests.sort_by_key(|d| d.addr);
    }
    assert_eq!(got, want);
}

#[test]
fn list_connections_with_ipv6_columns() {
    let conn = |client: &str, vip: &str, dest: &str, state: &str, secs| ConnEntry {
        proto: Protocol::Tcp,
        expires_secs: secs,
        state: state.to_string(),
        client: client.parse::<SocketAddr>().unwrap(),
        vip: vip.parse::<SocketAddr>().unwrap(),
        dest: dest.parse::<SocketAddr>().unwrap(),
    };
    let conns = [
        conn(
            "[2001:db8:ff::7]:40000",
            "[2001:db8::1]:80",
            "[2001:db8::10]:80",
            "ESTABLISHED",
            898,
        ),
        conn(
            "10.1.1.1:1234",
            "10.0.0.1:80",
            "10.0.1.1:80",
            "SYN_RECV",
            60,
        ),
    ];
    assert_eq!(
        lines(&list_conns(&conns, &numeric(), &PortNames::empty())),
        [
            "IPVS connection entries",
            "pro expire state       source             virtual            destination",
            "TCP 14:58  ESTABLISHED [2001:db8:ff::7]:40000 [2001:db8::1]:80   [2001:db8::10]:80",
            "TCP 01:00  SYN_RECV    10.1.1.1:1234      10.0.0.1:80        10.0.1.1:80",
        ]
    );
    // --json carries the addresses as strings.
    let json = serde_json::to_string(&conns[0]).unwrap();
    assert!(
        json.contains(r#""client":"[2001:db8:ff::7]:40000""#),
        "{json}"
    );
}

#[test]
fn json_listing_carries_ipv6_addresses_as_strings() {
    let listing = Listing::from_set(&table(&MIXED[6..8]));
    let json = serde_json::to_string(&listing).unwrap();
    assert!(json.contains(r#""vip":"2001:db8::1""#), "{json}");
    assert!(
        json.contains(r#""addr":"2001:db8:1234:5678:9abc:def0:1234:5678""#),
        "{json}"
    );
    assert!(json.contains(r#""netmask":64"#), "{json}");
    let back: Listing = serde_json::from_str(&json).unwrap();
    assert_eq!(back.to_set(), table(&MIXED[6..8]));
}
