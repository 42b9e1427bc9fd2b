//! S-NAT for IPv6 in the NAT66 lab ([`ipv6_nat::build`]): the real servers' LAN
//! (2001:db8:10::/64, behind the director) has no route from outside; the director masquerades
//! what its hosts send out behind the public address [`PUBLIC`], which the router routes to
//! the director. The outside host is the client (httpd on [2001:db8:1::10]:80, whose `/whoami`
//! echoes the address it saw).

use std::fs;
use std::time::Duration;

use tunlb::lab::httpd::blob_sha256;

use crate::harness::{adm, start_director, start_httpd, TempPath};
use crate::ipv6_nat::{self, CLIENT, RS1, RS2, RS_LAN};

/// The public IPv6 address the real servers leave behind.
const PUBLIC: &str = "2001:db8:200::10";

/// `curl http://[CLIENT]/whoami` from `role`'s `src:port`; the body's last line.
fn whoami(ns: &crate::harness::Netns, src: &str, port: u16) -> String {
    let url = format!("http://[{CLIENT}]/whoami");
    let port = port.to_string();
    let args = [
        "-g",
        "-s",
        "-f",
        "--max-time",
        "5",
        "--interface",
        src,
        "--local-port",
        &port,
        &url,
    ];
    let body = ns.exec("curl", &args);
    body.lines().last().unwrap_or_default().to_owned()
}

/// Both real servers reach the outside over IPv6 from the public address: each gets its own
/// answer, the source port is kept when free (the second host on the same port takes the
/// next one), 4 MB come back intact (sha256), ping6 is answered through an echo mapping,
/// the mappings are listed by `-L -n -c`, nothing from the private LAN reaches the outside,
/// and the `ip -6` rules and routes are gone when the director stops.
#[test]
fn ipv6_real_servers_reach_the_outside_from_the_public_address() {
    let topo = ipv6_nat::build();
    topo.ns("router")
        .ip(&format!("-6 route add {PUBLIC}/128 via 2001:db8:2::2"));
    let config = TempPath::new("snat6.toml");
    let text =
        format!("[director]\nqueues = 2\n\n[[snat]]\nsource = \"{RS_LAN}\"\nto = [\"{PUBLIC}\"]\n");
    fs::write(config.path(), text).expect("write the config");
    let director_ns = topo.ns("director");
    let director = start_director(director_ns, &["--config", &config.arg()]);
    start_httpd(
        topo.ns("client"),
        &format!("[{CLIENT}]:80"),
        "outside client",
        &[],
    );
    let client = topo.ns("client");
    client.nft(&format!(
        "table inet tlbsnat6 {{
            counter from_rs_lan {{}}
            chain input {{ type filter hook input priority 0; policy accept;
                ip6 saddr {RS_LAN} counter name \"from_rs_lan\"
            }}
        }}"
    ));

    let (rs1, rs2) = (topo.ns("rs1"), topo.ns("rs2"));
    assert_eq!(whoami(rs1, RS1, 40000), format!("client [{PUBLIC}]:40000"));
    assert_eq!(whoami(rs2, RS2, 40000), format!("client [{PUBLIC}]:40001"));
    // A few MB back through the mapping, intact.
    let size = 4_000_000u64;
    let got = rs1.exec(
        "bash",
        &[
            "-c",
            &format!("curl -g -s -f --max-time 20 http://[{CLIENT}]/bytes/{size} | sha256sum"),
        ],
    );
    assert_eq!(
        got.split_whitespace().next(),
        Some(blob_sha256(size).as_str()),
        "download through S-NAT"
    );
    // ICMPv6 echo, mapped by its identifier.
    rs2.exec("ping", &["-6", "-c", "2", "-W", "2", CLIENT]);
    assert_eq!(client.nft_counter("tlbsnat6", "from_rs_lan"), 0);

    let listing = adm(director_ns, "-L -n -c");
    for (src, public) in [
        (format!("[{RS1}]:40000"), format!("[{PUBLIC}]:40000")),
        (format!("[{RS2}]:40000"), format!("[{PUBLIC}]:40001")),
    ] {
        assert!(
            listing.lines().any(|l| l.starts_with("TCP")
                && l.contains(&src)
                && l.contains(&public)
                && l.contains(&format!("[{CLIENT}]:80"))),
            "{src} -> {public} missing from\n{listing}"
        );
    }

    // The policy routing (`ip -6`), and its removal at exit.
    let rules = director_ns.ip("-6 rule show");
    assert!(
        rules.contains(&format!("from {RS_LAN} lookup 7461")),
        "{rules}"
    );
    assert!(rules.contains("iif lo goto 102"), "{rules}");
    assert!(director_ns.ip("-6 route show").contains(PUBLIC));
    director_ns.signal(director, "TERM");
    let (status, log) = director_ns.wait_exit(director, Duration::from_secs(10));
    assert!(status.success(), "{log}");
    let rules = director_ns.ip("-6 rule show");
    assert!(!rules.contains("7461"), "{rules}");
    assert!(!rules.contains("goto 102"), "{rules}");
    assert!(!director_ns.ip("-6 route show").contains(PUBLIC));
}
