//! Least privilege: what the daemons keep once they run, and that everything still works with
//! it. In the [`tun_lab`], the director (TOML config with MISC_CHECKs, so it keeps the script
//! capabilities) and both agents: every thread's `CapEff`/`CapPrm`/`CapBnd`/`CapInh`/`CapAmb`/
//! `NoNewPrivs` from `/proc/PID/task/TID/status` is exactly the expected set; then traffic
//! through the VIP, `adm -a/-e/-d` edits, `adm --reload` and SIGHUP after a change of the file,
//! a MISC_CHECK that runs as `nobody` (it writes `id -u` into a file the test reads), a
//! MISC_CHECK that overruns its timeout and is killed as `nobody` (CAP_KILL), and a SIGTERM
//! that restores the host (exit 0). A director without config keeps only CAP_NET_ADMIN and
//! CAP_NET_RAW with `no_new_privs`, and refuses a reload that adds a script (it dropped
//! CAP_SETUID at start), keeping its table.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::tun_lab::{self, DIRECTOR, RS1, RS2, VIP};
use crate::harness::{adm, start_agent, start_director, start_httpd, wait_until, Netns, Pid};

/// CAP_NET_ADMIN | CAP_NET_RAW.
const NET: u64 = 0x3000;
/// NET | CAP_KILL | CAP_SETGID | CAP_SETUID: a daemon that runs scripts.
const NET_AND_SCRIPTS: u64 = 0x30e0;

/// The capability lines of one thread's status.
#[derive(Debug, PartialEq, Eq)]
struct Caps {
    eff: u64,
    prm: u64,
    bnd: u64,
    inh: u64,
    amb: u64,
    no_new_privs: bool,
}

impl Caps {
    fn expected(set: u64, no_new_privs: bool) -> Caps {
        Caps {
            eff: set,
            prm: set,
            bnd: set,
            inh: 0,
            amb: 0,
            no_new_privs,
        }
    }

    fn parse(status: &str) -> Caps {
        let hex = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or_else(|| panic!("no {key} in {status}"))
        };
        Caps {
            eff: hex("CapEff:"),
            prm: hex("CapPrm:"),
            bnd: hex("CapBnd:"),
            inh: hex("CapInh:"),
            amb: hex("CapAmb:"),
            no_new_privs: status
                .lines()
                .find_map(|l| l.strip_prefix("NoNewPrivs:"))
                .is_some_and(|v| v.trim() == "1"),
        }
    }
}

/// The process id of a background process (the harness's `Pid` prints as `Pid(N)`).
fn pid_of(pid: Pid) -> u32 {
    let text = format!("{pid:?}");
    text.trim_start_matches("Pid(")
        .trim_end_matches(')')
        .parse()
        .unwrap_or_else(|_| panic!("cannot read a pid from {text}"))
}

/// Every thread of `pid` with its capabilities; the main thread's line printed for the report.
fn threads(label: &str, pid: Pid) -> Vec<(String, Caps)> {
    let pid = pid_of(pid);
    let mut out = Vec::new();
    let dir = format!("/proc/{pid}/task");
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let path = entry.expect("task entry").path();
        let Ok(status) = std::fs::read_to_string(path.join("status")) else {
            continue; // a thread that just ended
        };
        let name = status
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .unwrap_or("?")
            .trim()
            .to_string();
        let caps = Caps::parse(&status);
        if path
            .file_name()
            .is_some_and(|t| t.to_string_lossy() == pid.to_string())
        {
            eprintln!(
                "{label} pid {pid}: CapEff {:016x} CapPrm {:016x} CapBnd {:016x} CapInh {:016x} CapAmb {:016x} NoNewPrivs {}",
                caps.eff, caps.prm, caps.bnd, caps.inh, caps.amb, caps.no_new_privs as u8
            );
        }
        out.push((name, caps));
    }
    assert!(!out.is_empty(), "no thread of {label} {pid}");
    out
}

/// Every thread of `pid` holds exactly `want`.
fn assert_caps(label: &str, pid: Pid, want: &Caps) {
    let all = threads(label, pid);
    for (name, caps) in &all {
        assert_eq!(caps, want, "{label} thread {name}");
    }
    eprintln!("{label}: {} threads, all {want:?}", all.len());
}

/// `getent passwd nobody`'s uid (the default script user unless `keepalived_script` exists).
fn script_uid() -> String {
    for user in ["keepalived_script", "nobody"] {
        let out = std::process::Command::new("id")
            .args(["-u", user])
            .output()
            .expect("id");
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
    }
    panic!("neither keepalived_script nor nobody exists");
}

/// A directory scripts running as `nobody` can write into, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(tag: &str) -> ScratchDir {
        let dir = std::env::temp_dir().join(format!("tunlb-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        ScratchDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The director's config: VIP:80 (rr) over IPIP to rs1 (MISC_CHECK writing its uid) and rs2
/// with `rs2_weight`; VIP:8080 to rs1 whose MISC_CHECK sleeps past its timeout.
fn config(out: &Path, rs2_weight: u32) -> String {
    format!(
        "[director]\n\
         queues = 1\n\
         local_address = \"{DIRECTOR}\"\n\
         \n\
         [[service]]\n\
         vip = \"{VIP}\"\n\
         port = 80\n\
         scheduler = \"rr\"\n\
         delay_loop = 1\n\
         \n\
         \x20 [[service.real_server]]\n\
         \x20 address = \"{RS1}\"\n\
         \x20 tun_type = \"ipip\"\n\
         \x20 [service.real_server.check]\n\
         \x20 type = \"misc\"\n\
         \x20 misc_path = \"id -u > {dir}/uid.tmp && mv {dir}/uid.tmp {dir}/uid\"\n\
         \x20 warmup = 0\n\
         \n\
         \x20 [[service.real_server]]\n\
         \x20 address = \"{RS2}\"\n\
         \x20 tun_type = \"ipip\"\n\
         \x20 weight = {rs2_weight}\n\
         \n\
         [[service]]\n\
         vip = \"{VIP}\"\n\
         port = 8080\n\
         scheduler = \"rr\"\n\
         delay_loop = 1\n\
         \n\
         \x20 [[service.real_server]]\n\
         \x20 address = \"{RS1}\"\n\
         \x20 tun_type = \"ipip\"\n\
         \x20 [service.real_server.check]\n\
         \x20 type = \"misc\"\n\
         \x20 misc_path = \"echo $$ >> {dir}/sleepers; exec sleep 60\"\n\
         \x20 misc_timeout = 1\n\
         \x20 retry = 0\n\
         \x20 warmup = 0\n",
        dir = out.display()
    )
}

/// The weight `adm -L -n` shows for `rip` in the VIP:80 service.
fn weight(director: &Netns, rip: &str) -> Option<u32> {
    let listing = adm(director, "-L -n");
    let mut in_80 = false;
    for line in listing.lines() {
        if line.starts_with("TCP") {
            in_80 = line.contains(&format!("{VIP}:80 "));
            continue;
        }
        if !in_80 {
            continue;
        }
        let mut cols = line.strip_prefix("  -> ").unwrap_or("").split_whitespace();
        if cols.next() == Some(&format!("{rip}:80")) {
            return cols.nth(1).and_then(|w| w.parse().ok());
        }
    }
    None
}

/// One request through the VIP; the banner.
fn get(client: &Netns) -> String {
    let url = format!("http://{VIP}/");
    let args = [
        "-s",
        "-f",
        "--max-time",
        "3",
        "-H",
        "Connection: close",
        &url,
    ];
    client.exec("curl", &args).trim_end().to_string()
}

/// Whether process `pid` is alive (not a zombie).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[test]
fn daemons_keep_only_their_capabilities_and_everything_still_works() {
    let topo = tun_lab::build();
    let mut agents = Vec::new();
    for (role, rip) in [("rs1", RS1), ("rs2", RS2)] {
        let ns = topo.ns(role);
        agents.push((
            role,
            start_agent(ns, VIP, "ipip", &format!("{DIRECTOR}/32")),
        ));
        let vip = format!("{VIP}:80");
        start_httpd(
            ns,
            &format!("{rip}:80"),
            &format!("from {role}"),
            &["--listen", &vip],
        );
    }
    let scratch = ScratchDir::new("priv");
    let file = scratch.path().join("director.toml");
    std::fs::write(&file, config(scratch.path(), 1)).expect("write the config");
    let director = topo.ns("director");
    let dpid = start_director(director, &["--config", &file.display().to_string()]);

    // What they keep, every thread.
    assert_caps("director", dpid, &Caps::expected(NET_AND_SCRIPTS, false));
    for (role, pid) in &agents {
        assert_caps(&format!("agent {role}"), *pid, &Caps::expected(NET, true));
    }

    // Traffic through the VIP: round robin over both.
    let client = topo.ns("client");
    let mut answers: Vec<String> = (0..4).map(|_| get(client)).collect();
    answers.sort();
    answers.dedup();
    assert_eq!(answers, ["from rs1", "from rs2"]);

    // The MISC_CHECK ran as the script user.
    let uid_file = scratch.path().join("uid");
    wait_until(
        "the MISC_CHECK to write its uid",
        Duration::from_secs(10),
        || uid_file.exists(),
    );
    let uid = std::fs::read_to_string(&uid_file).expect("uid");
    eprintln!("MISC_CHECK ran as uid {}", uid.trim());
    assert_eq!(uid.trim(), script_uid(), "the MISC_CHECK's uid");

    // Edits: -e, -d, -a, a new service and its removal.
    adm(director, &format!("-e -t {VIP}:80 -r {RS2}:80 -i -w 3"));
    assert_eq!(weight(director, RS2), Some(3));
    adm(director, &format!("-d -t {VIP}:80 -r {RS2}:80"));
    assert_eq!(weight(director, RS2), None);
    for _ in 0..3 {
        assert_eq!(get(client), "from rs1", "rs2 deleted");
    }
    adm(director, &format!("-a -t {VIP}:80 -r {RS2}:80 -i -w 1"));
    assert_eq!(weight(director, RS2), Some(1));
    adm(director, &format!("-A -t {VIP}:81 -s rr"));
    adm(director, &format!("-a -t {VIP}:81 -r {RS2}:81 -i -w 1"));
    assert!(adm(director, "-L -n").contains(&format!("{VIP}:81")));
    adm(director, &format!("-D -t {VIP}:81"));

    // Reload (adm --reload, then SIGHUP) after a change of the file: the checks are vetted
    // again and the table follows the file.
    std::fs::write(&file, config(scratch.path(), 2)).expect("rewrite the config");
    adm(director, "--reload");
    assert_eq!(weight(director, RS2), Some(2), "adm --reload");
    std::fs::write(&file, config(scratch.path(), 4)).expect("rewrite the config");
    director.signal(dpid, "HUP");
    wait_until("SIGHUP to apply weight 4", Duration::from_secs(5), || {
        weight(director, RS2) == Some(4)
    });
    let mut answers: Vec<String> = (0..6).map(|_| get(client)).collect();
    answers.sort();
    answers.dedup();
    assert_eq!(answers, ["from rs1", "from rs2"], "after the reloads");

    // The overrunning MISC_CHECK (runs as nobody) was killed each time: CAP_KILL works.
    std::thread::sleep(Duration::from_secs(3));
    let sleepers = std::fs::read_to_string(scratch.path().join("sleepers")).unwrap_or_default();
    let pids: Vec<&str> = sleepers.split_whitespace().collect();
    assert!(
        pids.len() >= 2,
        "the 8080 check ran at least twice: {pids:?}"
    );
    let living: Vec<&&str> = pids.iter().filter(|p| alive(p)).collect();
    eprintln!(
        "timed-out MISC_CHECKs: {} started, {} still running",
        pids.len(),
        living.len()
    );
    assert!(
        living.len() <= 1,
        "timed-out scripts were not killed: {living:?}"
    );

    // Still the same after all that.
    assert_caps("director", dpid, &Caps::expected(NET_AND_SCRIPTS, false));

    // SIGTERM: the host is restored with the capabilities kept.
    director.signal(dpid, "TERM");
    let (status, log) = director.wait_exit(dpid, Duration::from_secs(10));
    assert!(status.success(), "director exit {status}:\n{log}");
    assert!(
        log.contains("capabilities: kept cap_kill,cap_setgid,cap_setuid,cap_net_admin,cap_net_raw"),
        "{log}"
    );
    assert!(
        !director.ip("route show").contains(VIP),
        "VIP route removed"
    );
    for (role, pid) in agents {
        let ns = topo.ns(role);
        ns.signal(pid, "TERM");
        let (status, log) = ns.wait_exit(pid, Duration::from_secs(10));
        assert!(status.success(), "agent {role} exit {status}:\n{log}");
        assert!(
            !ns.ip("-o addr show dev lo").contains(VIP),
            "VIP left lo on {role}"
        );
    }
}

#[test]
fn a_director_without_scripts_keeps_two_capabilities_and_refuses_to_add_one() {
    let ns = Netns::new("priv");
    ns.ip("link set lo up");
    let scratch = ScratchDir::new("priv-noscript");
    let file = scratch.path().join("director.toml");
    let plain = format!(
        "[director]\nqueues = 1\n\n[[service]]\nvip = \"{VIP}\"\nport = 80\n\n\
         \x20 [[service.real_server]]\n\x20 address = \"{RS1}\"\n"
    );
    std::fs::write(&file, &plain).expect("write the config");
    let pid = start_director(&ns, &["--config", &file.display().to_string()]);
    assert_caps("director without scripts", pid, &Caps::expected(NET, true));

    // A reload that adds a MISC_CHECK: refused (no CAP_SETUID any more), table kept.
    let with_script = format!(
        "{plain}\x20 [service.real_server.check]\n\x20 type = \"misc\"\n\x20 misc_path = \"true\"\n"
    );
    std::fs::write(&file, with_script).expect("rewrite the config");
    let out = ns.try_exec(crate::harness::TUNLB, &["adm", "--reload"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("adm --reload: {said}");
    assert!(!out.status.success(), "the reload was accepted: {said}");
    assert!(said.contains("CAP_SETUID"), "{said}");
    assert!(adm(&ns, "-L -n").contains(&format!("{RS1}:80")));
    assert_caps("director without scripts", pid, &Caps::expected(NET, true));
    ns.signal(pid, "TERM");
    let (status, log) = ns.wait_exit(pid, Duration::from_secs(10));
    assert!(status.success(), "director exit {status}:\n{log}");
}
