//! S-NAT gateway scenarios in the [`nat_lab`] topology.
//!
//! The real servers' LAN (10.10.0.0/24) has no route from outside; the director masquerades
//! what its hosts send out behind the public address [`PUBLIC`], which the router routes to
//! the director. The "outside" hosts are the client (httpd on 10.1.0.2:80) and the router
//! (httpd on 10.1.0.1:80): their `/whoami` echoes the address they saw.

use std::fs;
use std::time::Duration;

use crate::harness::nat_lab::{self, CLIENT, RS1, RS2, RS_LAN};
use crate::harness::{
    adm, start_director, start_httpd, wait_until, Netns, Pid, TempPath, Topology,
};

/// The public address the real servers leave behind.
const PUBLIC: &str = "10.200.0.10";
/// The router's address on the client's side (a second outside host).
const ROUTER: &str = "10.1.0.1";
/// A second address of rs2.
const RS2_BIS: &str = "10.10.0.23";

struct Lab {
    topo: Topology,
    director: Pid,
    _config: TempPath,
}

impl Lab {
    /// The NAT lab, the public address routed to the director, httpds on both outside hosts
    /// and the director (two queues) with an `[[snat]]` rule and a UDP timeout of 2 s (its
    /// config file named after `test`, as tests run in parallel).
    fn start(test: &str) -> Lab {
        let topo = nat_lab::build();
        topo.ns("router")
            .ip(&format!("route add {PUBLIC}/32 via 10.2.0.2"));
        let config = TempPath::new(&format!("snat-{test}.toml"));
        let text = format!(
            "[director]\nqueues = 2\n\n[timeouts]\nudp = 2\n\n\
             [[snat]]\nsource = \"{RS_LAN}\"\nto = [\"{PUBLIC}\"]\n"
        );
        fs::write(config.path(), text).expect("write the config");
        let director = start_director(topo.ns("director"), &["--config", &config.arg()]);
        start_httpd(
            topo.ns("client"),
            &format!("{CLIENT}:80"),
            "outside client",
            &["--udp-echo"],
        );
        start_httpd(
            topo.ns("router"),
            &format!("{ROUTER}:80"),
            "outside router",
            &[],
        );
        Lab {
            topo,
            director,
            _config: config,
        }
    }

    fn ns(&self, role: &str) -> &Netns {
        self.topo.ns(role)
    }

    /// `curl http://<host>/whoami` from `role`'s `src:port`; the body's last line.
    fn whoami(&self, role: &str, src: &str, port: u16, host: &str) -> String {
        let url = format!("http://{host}/whoami");
        let port = port.to_string();
        let args = [
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
        let body = self.ns(role).exec("curl", &args);
        body.lines().last().unwrap_or_default().to_owned()
    }

    /// `adm -L -n -c` lines with `proto`, as (state, source, virtual, destination, expire s).
    fn mappings(&self, proto: &str) -> Vec<(String, String, String, String, u32)> {
        adm(self.ns("director"), "-L -n -c")
            .lines()
            .skip(2)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() != 6 || f[0] != proto {
                    return None;
                }
                let (m, s) = f[1].split_once(':')?;
                let secs = m.parse::<u32>().ok()? * 60 + s.parse::<u32>().ok()?;
                Some((f[2].into(), f[3].into(), f[4].into(), f[5].into(), secs))
            })
            .collect()
    }
}

/// Both real servers reach the outside from the public address: each gets its own answer, the
/// source port is kept when free for the destination, the same public port serves two
/// destinations at once, the mappings are listed by `-L -n -c` (and `--json`), nothing from the
/// private LAN reaches the outside, and the routing is gone when the director stops.
#[test]
fn real_servers_reach_the_outside_from_the_public_address() {
    let lab = Lab::start("tcp");
    let client = lab.ns("client");
    client.nft(&format!(
        "table inet tlbsnat {{
            counter from_rs_lan {{}}
            chain input {{ type filter hook input priority 0; policy accept;
                ip saddr {RS_LAN} counter name \"from_rs_lan\"
            }}
        }}"
    ));

    // rs1 and rs2 both use source port 40000 towards the client: the second one's mapping
    // takes the next port. Towards the router, a third address (on rs2, as its port 40000 is
    // in TIME_WAIT) keeps 40000, which P:40000 to the client does not prevent.
    lab.ns("rs2").ip(&format!("addr add {RS2_BIS}/24 dev eth0"));
    assert_eq!(
        lab.whoami("rs1", RS1, 40000, CLIENT),
        format!("client {PUBLIC}:40000")
    );
    assert_eq!(
        lab.whoami("rs2", RS2, 40000, CLIENT),
        format!("client {PUBLIC}:40001")
    );
    assert_eq!(
        lab.whoami("rs2", RS2_BIS, 40000, ROUTER),
        format!("client {PUBLIC}:40000")
    );
    // Each server's curl got its own answer (the banner line comes first).
    let banner = lab.ns("rs1").exec(
        "curl",
        &["-s", "-f", "--max-time", "5", &format!("http://{CLIENT}/")],
    );
    assert_eq!(banner.trim(), "outside client");
    assert_eq!(client.nft_counter("tlbsnat", "from_rs_lan"), 0);

    let tcp = lab.mappings("TCP");
    for (src, public, dst) in [
        (
            format!("{RS1}:40000"),
            format!("{PUBLIC}:40000"),
            format!("{CLIENT}:80"),
        ),
        (
            format!("{RS2}:40000"),
            format!("{PUBLIC}:40001"),
            format!("{CLIENT}:80"),
        ),
        (
            format!("{RS2_BIS}:40000"),
            format!("{PUBLIC}:40000"),
            format!("{ROUTER}:80"),
        ),
    ] {
        assert!(
            tcp.iter()
                .any(|m| (&m.1, &m.2, &m.3) == (&src, &public, &dst)),
            "{src} -> {public} -> {dst} missing from {tcp:?}"
        );
    }
    let json = adm(lab.ns("director"), "-L -n -c --json");
    assert!(json.contains(&format!("\"{PUBLIC}:40001\"")), "{json}");

    // The policy routing, and its removal at exit.
    let director = lab.ns("director");
    let rules = director.ip("rule show");
    assert!(
        rules.contains(&format!("from {RS_LAN} lookup 7461")),
        "{rules}"
    );
    assert!(rules.contains("iif lo goto 102"), "{rules}");
    assert!(director.ip("route show").contains(PUBLIC));
    director.signal(lab.director, "TERM");
    let (status, log) = director.wait_exit(lab.director, Duration::from_secs(10));
    assert!(status.success(), "{log}");
    let rules = director.ip("rule show");
    assert_eq!(rules.lines().count(), 3, "only the default rules:\n{rules}");
    assert!(!director.ip("route show").contains(PUBLIC));
}

/// A UDP exchange from a real server: the answer comes back to it, the mapping is listed as
/// `UDP` with the configured 2 s timeout and is gone once that passed.
#[test]
fn udp_mappings_are_listed_and_expire() {
    let lab = Lab::start("udp");
    let ask = format!("exec 3<>/dev/udp/{CLIENT}/80; printf hello >&3; timeout 3 head -n 1 <&3");
    let answer = lab.ns("rs1").exec("bash", &["-c", &ask]);
    assert_eq!(answer.trim(), "outside client");
    let udp = lab.mappings("UDP");
    assert_eq!(udp.len(), 1, "{udp:?}");
    let (state, src, public, dst, expire) = &udp[0];
    assert_eq!(state, "UDP");
    assert!(src.starts_with(&format!("{RS1}:")), "{src}");
    assert!(public.starts_with(&format!("{PUBLIC}:")), "{public}");
    assert_eq!(dst, &format!("{CLIENT}:80"));
    assert!(*expire <= 2, "expires in {expire} s");
    wait_until("the UDP mapping to expire", Duration::from_secs(10), || {
        lab.mappings("UDP").is_empty()
    });
}
