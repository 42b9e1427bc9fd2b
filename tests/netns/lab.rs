//! `tunlb lab`, run as a user would: the binary itself, each lab with a unique prefix
//! `tlbt<pid>x<n>` so it never meets another test's (or a user's `tunlb` lab).
//!
//! The lab is a separate program that creates its own namespaces and detached processes, so
//! these tests do not use the harness's guards for them; a [`LabGuard`] runs `tunlb lab down`
//! if a test fails with the lab still up.
//!
//! Other tests of this binary create and delete namespaces while these run, so "nothing left
//! behind" is checked on this lab's names: none before, none after, and no state folder.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::harness::{netns_list, output, require_root_and_tools, TUNLB};

/// The lab's fixed addresses: the seed's VIP, the real servers in TUN mode (the other
/// datacenter), in DR mode (the seed's LAN) and in NAT mode (the private LAN behind the
/// director).
const VIP: &str = "192.168.150.100";
const RS1: &str = "192.168.160.12";
const RS2: &str = "192.168.160.13";
const DR_RS: [&str; 2] = ["192.168.150.12", "192.168.150.13"];
const NAT_RS: [&str; 2] = ["10.0.150.12", "10.0.150.13"];

/// Numbers the labs of this process.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A prefix no other test or run uses (namespaces `<prefix>-client`, ...).
fn unique_prefix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("tlbt{}x{n}", std::process::id())
}

/// The lab's namespaces that exist now.
fn namespaces_of(prefix: &str) -> Vec<String> {
    let mut ours: Vec<String> = netns_list()
        .into_iter()
        .filter(|ns| ns.starts_with(&format!("{prefix}-")))
        .collect();
    ours.sort();
    ours
}

/// The lab's state folder.
fn state_dir(prefix: &str) -> PathBuf {
    PathBuf::from("/run/tunlb-lab").join(prefix)
}

/// Runs `tunlb lab ARGS...` to completion.
fn lab(args: &[&str]) -> Output {
    output(Command::new(TUNLB).arg("lab").args(args))
}

/// Both streams of an output, for assertion messages.
fn text(out: &Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Takes the lab down on drop if anything of it is left (a failed test).
struct LabGuard(String);

impl Drop for LabGuard {
    fn drop(&mut self) {
        if !namespaces_of(&self.0).is_empty() || state_dir(&self.0).exists() {
            let out = lab(&["down", "--prefix", &self.0]);
            eprintln!(
                "cleanup: tunlb lab down --prefix {}:\n{}",
                self.0,
                text(&out)
            );
        }
    }
}

/// Asserts that nothing of the lab with `prefix` is left.
fn assert_gone(prefix: &str, log: &str) {
    assert_eq!(namespaces_of(prefix), Vec::<String>::new(), "{log}");
    assert!(!state_dir(prefix).exists(), "state folder left: {log}");
}

/// What one demo must print besides the lines every mode prints.
struct Expected<'a> {
    /// The real servers' addresses.
    rips: [&'a str; 2],
    /// Their port (the service is VIP:80).
    rport: &'a str,
    /// `-L -n`'s Forward column for them.
    forward: &'a str,
    /// Lines about the real servers and the `adm -a` commands.
    lines: Vec<String>,
}

/// `tunlb lab demo ARGS`: exit 0, both real servers answered in turn (round robin), the `adm`
/// commands, the service table (Forward column as expected) and the connection table are
/// printed, and nothing is left afterwards.
fn lab_demo_shows_both_servers_and_leaves_nothing(args: &[&str], expected: Expected) {
    require_root_and_tools();
    let prefix = unique_prefix();
    let _guard = LabGuard(prefix.clone());
    assert_eq!(namespaces_of(&prefix), Vec::<String>::new());

    let out = lab(&[&["demo", "--prefix", &prefix][..], args].concat());
    let log = text(&out);
    assert!(out.status.success(), "lab demo failed:\n{log}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let [rs1, rs2] = expected.rips;
    let common = [
        format!("[lab] creating namespace {prefix}-client"),
        format!(
            "[lab] starting `tunlb director --announce eth0` in {prefix}-director: VIP {VIP} \
             routed into its TUN device and answered for on the LAN (ARP from its own socket on eth0)"
        ),
        format!("$ tunlb adm -A -t {VIP}:80 -s rr"),
        format!("[lab] answers: 6 from {rs1}, 6 from {rs2}"),
        "$ tunlb adm -L -n".to_owned(),
        format!("TCP  {VIP}:80 rr"),
        "$ tunlb adm -L -n -c".to_owned(),
        "IPVS connection entries".to_owned(),
        "pro expire state       source             virtual            destination".to_owned(),
        format!("[lab] deleting namespace {prefix}-backup"),
    ];
    for line in common.iter().chain(&expected.lines) {
        let line = line.replace("{prefix}", &prefix);
        assert!(
            stdout.lines().any(|l| l == line),
            "no line {line:?} in:\n{log}"
        );
    }
    // The answers alternate, as round robin over new connections does.
    let answers: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_once(": from ").map(|(_, rip)| rip))
        .collect();
    assert_eq!(answers.len(), 12, "{log}");
    for pair in answers.chunks(2) {
        let mut pair = pair.to_vec();
        pair.sort();
        assert_eq!(pair, [rs1, rs2], "{log}");
    }
    for rip in expected.rips {
        let dest = stdout
            .lines()
            .find(|l| l.starts_with(&format!("  -> {rip}:{} ", expected.rport)))
            .unwrap_or_else(|| panic!("no table line for {rip}:\n{log}"));
        let columns: Vec<&str> = dest.split_whitespace().collect();
        assert_eq!(
            columns.get(2..4),
            Some(&[expected.forward, "1"][..]),
            "{dest}"
        );
    }
    let conns = stdout
        .lines()
        .filter(|l| l.starts_with("TCP ") && l.contains(" 192.168.150.2:"))
        .count();
    assert_eq!(conns, 12, "{log}");
    assert_gone(&prefix, &log);
}

/// TUN mode, one test per encapsulation: the real servers in the other datacenter.
fn tun_demo(encap: &str) {
    let mut lines = vec![format!(
        "[lab] starting `tunlb realserver --vip {VIP} --encap {encap} --allow \
         192.168.150.11/32` in {{prefix}}-rs1 ({RS1}): VIP hidden on lo, tunnels from the \
         director unwrapped"
    )];
    for rip in [RS1, RS2] {
        lines.push(format!(
            "$ tunlb adm -a -t {VIP}:80 -r {rip} -i -w 1 --tun-type {encap}"
        ));
    }
    let expected = Expected {
        rips: [RS1, RS2],
        rport: "80",
        forward: "Tunnel",
        lines,
    };
    lab_demo_shows_both_servers_and_leaves_nothing(&["--encap", encap], expected);
}

/// One test per encapsulation.
mod lab_demo_shows_both_servers_and_leaves_nothing {
    #[test]
    fn ipip() {
        super::tun_demo("ipip");
    }
    #[test]
    fn gre() {
        super::tun_demo("gre");
    }
    #[test]
    fn gue() {
        super::tun_demo("gue");
    }

    /// DR mode, the seed's own layout: the real servers .12 and .13 on the LAN run the DR agent
    /// and an httpd on the VIP; `-g` exactly as the seed writes it; `Route` in the table.
    #[test]
    fn dr() {
        let mut lines = Vec::new();
        for (n, rip) in super::DR_RS.iter().enumerate() {
            let vip = super::VIP;
            lines.extend([
                format!(
                    "[lab] starting `tunlb realserver --vip {vip} --mode dr` in \
                     {{prefix}}-rs{} ({rip}): VIP hidden on lo, ARP for it ignored on eth0 \
                     (arp_ignore 1, arp_announce 2): the frames the director sends to this MAC \
                     reach the httpd",
                    n + 1
                ),
                format!(
                    "[lab] starting `tunlb httpd --listen {vip}:80 --banner \"from {rip}\"` in \
                     {{prefix}}-rs{}",
                    n + 1
                ),
                format!("$ tunlb adm -a -t {vip}:80 -r {rip} -g -w 1"),
            ]);
        }
        lines.push(
            "[lab] plugging {prefix}-rs1 (eth0 192.168.150.12/24, gateway 192.168.150.1) into \
             bridge lan"
                .to_owned(),
        );
        let expected = super::Expected {
            rips: super::DR_RS,
            rport: "80",
            forward: "Route",
            lines,
        };
        super::lab_demo_shows_both_servers_and_leaves_nothing(&["--mode", "dr"], expected);
    }

    /// NAT mode: the real servers on the private LAN behind the director, httpd on RIP:8080,
    /// port 80 mapped to it with `-m`; `Masq` in the table.
    #[test]
    fn nat() {
        let mut lines = vec![
            "[lab] creating the real servers' private LAN 10.0.150.0/24: bridge rslan with \
             10.0.150.1/24 in {prefix}-director"
                .to_owned(),
        ];
        for (n, rip) in super::NAT_RS.iter().enumerate() {
            let vip = super::VIP;
            lines.extend([
                format!(
                    "[lab] starting `tunlb httpd --listen {rip}:8080 --banner \"from {rip}\"` \
                     in {{prefix}}-rs{}",
                    n + 1
                ),
                format!("$ tunlb adm -a -t {vip}:80 -r {rip}:8080 -m -w 1"),
            ]);
        }
        let expected = super::Expected {
            rips: super::NAT_RS,
            rport: "8080",
            forward: "Masq",
            lines,
        };
        super::lab_demo_shows_both_servers_and_leaves_nothing(&["--mode", "nat"], expected);
    }
}

/// `lab up` leaves the lab running (curl and `tunlb lab get` from the client reach the VIP; a
/// second `up` with the prefix is refused), `lab down` stops every recorded process and removes
/// the namespaces and the state folder, and a second `down` has nothing to do.
#[test]
fn lab_up_then_down() {
    require_root_and_tools();
    let prefix = unique_prefix();
    let _guard = LabGuard(prefix.clone());

    let out = lab(&["up", "--prefix", &prefix, "--encap", "gre"]);
    let log = text(&out);
    assert!(out.status.success(), "lab up failed:\n{log}");
    assert!(
        log.contains(&format!(
            "  ip netns exec {prefix}-client curl http://{VIP}/ "
        )),
        "no step-in hint:\n{log}"
    );
    let mut expected: Vec<String> = ["backup", "client", "director", "router", "rs1", "rs2"]
        .iter()
        .map(|role| format!("{prefix}-{role}"))
        .collect();
    expected.sort();
    assert_eq!(namespaces_of(&prefix), expected);

    let pids_file = fs::read_to_string(state_dir(&prefix).join("pids")).expect("the pids file");
    let pids: Vec<(String, String)> = pids_file
        .lines()
        .map(|l| {
            let mut fields = l.split(' ');
            let pid = fields.next().unwrap_or_default().to_owned();
            (pid, fields.next().unwrap_or_default().to_owned())
        })
        .collect();
    assert_eq!(pids.len(), 5, "director, 2 agents, 2 httpds:\n{pids_file}");
    // Field 22 of /proc/PID/stat, if that process runs and is not a zombie.
    let start_time = |pid: &str| -> Option<String> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        (fields.first() != Some(&"Z")).then(|| fields.get(19).map(|s| s.to_string()))?
    };
    for (pid, start) in &pids {
        assert_eq!(
            start_time(pid).as_ref(),
            Some(start),
            "pid {pid} is not running"
        );
    }

    let client = format!("{prefix}-client");
    let url = format!("http://{VIP}/");
    let curl = output(Command::new("ip").args([
        "netns",
        "exec",
        &client,
        "curl",
        "-s",
        "--max-time",
        "5",
        &url,
    ]));
    let body = String::from_utf8_lossy(&curl.stdout);
    assert!(
        body == format!("from {RS1}\n") || body == format!("from {RS2}\n"),
        "curl from the client: {}",
        text(&curl)
    );
    let get = output(
        Command::new("ip")
            .args(["netns", "exec", &client, TUNLB])
            .args(["lab", "get", &format!("http://{VIP}/whoami")]),
    );
    assert!(
        String::from_utf8_lossy(&get.stdout).contains("client 192.168.150.2:"),
        "tunlb lab get from the client: {}",
        text(&get)
    );

    let again = lab(&["up", "--prefix", &prefix]);
    assert!(!again.status.success(), "a second up succeeded");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("is already up"), "{stderr}");
    assert!(
        stderr.contains(&format!("lab down --prefix {prefix}")),
        "{stderr}"
    );
    assert_eq!(
        namespaces_of(&prefix),
        expected,
        "the refused up changed the lab"
    );

    let out = lab(&["down", "--prefix", &prefix]);
    let log = text(&out);
    assert!(out.status.success(), "lab down failed:\n{log}");
    assert!(log.contains(&format!(
        "[lab] stopping tunlb director in {prefix}-director"
    )));
    assert_gone(&prefix, &log);
    for (pid, start) in &pids {
        assert_ne!(
            start_time(pid).as_ref(),
            Some(start),
            "pid {pid} still runs"
        );
    }

    let out = lab(&["down", "--prefix", &prefix]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("nothing to take down"),
        "{}",
        text(&out)
    );
}

/// `--encap` with `--mode dr` or `--mode nat` (no tunnel there) is refused with a clear
/// message, before anything is created.
#[test]
fn lab_refuses_encap_without_tunnels() {
    require_root_and_tools();
    let prefix = unique_prefix();
    let _guard = LabGuard(prefix.clone());
    for command in ["up", "demo"] {
        for (mode, name) in [("dr", "DR"), ("nat", "NAT")] {
            let args = [
                command, "--mode", mode, "--encap", "gre", "--prefix", &prefix,
            ];
            let out = lab(&args);
            let log = text(&out);
            assert!(!out.status.success(), "lab {args:?} succeeded:\n{log}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(&format!(
                    "--encap gre is for --mode tun: in {name} mode the director sends no tunnel"
                )),
                "{stderr}"
            );
            assert!(out.stdout.is_empty(), "{log}");
            assert_gone(&prefix, &log);
        }
    }
}

/// `tunlb lab demo --ha`: two directors, the master killed under 50 keep-alive connections and
/// brought back; the timeline is printed, every connection survives, nothing is left. `--ha`
/// outside TUN mode is refused before anything is created.
#[test]
fn lab_demo_ha_survives_the_failover_and_leaves_nothing() {
    require_root_and_tools();
    let prefix = unique_prefix();
    let _guard = LabGuard(prefix.clone());
    let out = lab(&["demo", "--ha", "--mode", "dr", "--prefix", &prefix]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--ha is for --mode tun"),
        "{}",
        text(&out)
    );
    assert_gone(&prefix, &text(&out));

    let out = lab(&["demo", "--ha", "--prefix", &prefix]);
    let log = text(&out);
    assert!(out.status.success(), "lab demo --ha failed:\n{log}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for want in [
        format!("[lab] {prefix}-director is VRRP MASTER"),
        format!("[lab] {prefix}-backup is VRRP BACKUP"),
        format!("[lab] answers: 6 from {RS1}, 6 from {RS2}"),
        "[lab] timeline:".to_owned(),
        "[lab] connections survived: 50/50".to_owned(),
    ] {
        assert!(
            stdout.lines().any(|l| l == want),
            "no line {want:?} in:\n{log}"
        );
    }
    for want in [
        "SIGKILL to the MASTER director",
        &format!("{prefix}-backup (192.168.150.14) is MASTER"),
        &format!("{prefix}-director is MASTER again"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("  t+") && l.contains(want)),
            "no timeline line with {want:?} in:\n{log}"
        );
    }
    assert_gone(&prefix, &log);
}

/// `tunlb lab demo --ipv6` in the default mode (TUN, IPIP): exit 0, the IPv6 service configured
/// with ipvsadm's bracketed syntax, both real servers answering the IPv6 VIP over IPv6 (their
/// IPv6 banners, 6 each under round robin) besides the IPv4 ones, both services in `-L -n`, and
/// nothing of the lab left afterwards.
#[test]
fn lab_demo_ipv6_answers_on_both_vips_and_leaves_nothing() {
    const VIP6: &str = "2001:db8:150::100";
    const RS6: [&str; 2] = ["2001:db8:160::12", "2001:db8:160::13"];
    require_root_and_tools();
    let prefix = unique_prefix();
    let _guard = LabGuard(prefix.clone());
    assert_eq!(namespaces_of(&prefix), Vec::<String>::new());

    let out = lab(&["demo", "--prefix", &prefix, "--ipv6"]);
    let log = text(&out);
    assert!(out.status.success(), "lab demo --ipv6 failed:\n{log}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut want = vec![
        format!(
            "[lab] starting `tunlb realserver --vip {VIP} --encap ipip --allow \
             192.168.150.11/32 --vip {VIP6} --allow 2001:db8:150::11/128` in {prefix}-rs1 \
             ({RS1}): VIP hidden on lo, tunnels from the director unwrapped"
        ),
        format!("$ tunlb adm -A -t {VIP}:80 -s rr"),
        format!("$ tunlb adm -A -t [{VIP6}]:80 -s rr"),
        format!("[lab] answers: 6 from {RS1}, 6 from {RS2}"),
        format!("[lab] answers: 6 from {}, 6 from {}", RS6[0], RS6[1]),
        "$ tunlb adm -L -n".to_owned(),
        format!("TCP  {VIP}:80 rr"),
        format!("TCP  [{VIP6}]:80 rr"),
        format!("[lab] deleting namespace {prefix}-backup"),
    ];
    for rip in RS6 {
        want.push(format!(
            "$ tunlb adm -a -t [{VIP6}]:80 -r [{rip}] -i -w 1 --tun-type ipip"
        ));
    }
    for line in &want {
        assert!(
            stdout.lines().any(|l| l == line),
            "no line {line:?} in:\n{log}"
        );
    }
    // Each IPv6 real server answered, and its table line is a tunnel with weight 1.
    for rip in RS6 {
        let answered = stdout
            .lines()
            .filter(|l| l.ends_with(&format!(": from {rip}")))
            .count();
        assert_eq!(answered, 6, "{rip} answered {answered} times:\n{log}");
        let dest = stdout
            .lines()
            .find(|l| l.starts_with(&format!("  -> [{rip}]:80 ")))
            .unwrap_or_else(|| panic!("no table line for [{rip}]:80:\n{log}"));
        let columns: Vec<&str> = dest.split_whitespace().collect();
        assert_eq!(columns.get(2..4), Some(&["Tunnel", "1"][..]), "{dest}");
    }
    assert_gone(&prefix, &log);
}
