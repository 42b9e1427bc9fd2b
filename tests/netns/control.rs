//! The control socket against an unprivileged squatter (issue 13, "a locked control plane").
//!
//! `squatter_*`: a process running as `nobody` in the director's namespace takes what it can
//! before the director starts: the old abstract name `tunlb-director`, the runtime directory and
//! the exact socket name (it can compute the namespace cookie too). The director starts anyway,
//! root's `tunlb adm` gets the real director's answer, `nobody`'s `tunlb adm` is refused, and a
//! socket that `nobody` serves is refused by the client without being sent anything (and taken
//! back by the director).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{adm, output, start_director, wait_until, Netns, Pid, STARTUP, TUNLB};

/// The squatter: as `nobody`, bind the old abstract name and `<dir>/director.sock.<cookie>`
/// for each directory given (creating it if it can), then answer every connection with a fake
/// `"Ok"`, logging how many bytes each client sent first.
const SQUATTER: &str = r#"
import os, select, socket, struct, sys
SO_NETNS_COOKIE = 71
probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
cookie = struct.unpack("Q", probe.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))[0]
name = "director.sock.%x" % cookie
held = []
def take(what, addr):
    try:
        l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        l.bind(addr)
        l.listen(16)
        held.append(l)
        print("bound", what, flush=True)
    except OSError as e:
        print("cannot bind", what, e, flush=True)
take("abstract", "\0tunlb-director")
for d in sys.argv[1:]:
    try:
        os.makedirs(d, exist_ok=True)
    except OSError as e:
        print("cannot create", d, e, flush=True)
    take(d, os.path.join(d, name))
print("uid", os.geteuid(), "ready", flush=True)
while True:
    ready, _, _ = select.select(held, [], [])
    for l in ready:
        c, _ = l.accept()
        c.settimeout(2)
        try:
            got = c.recv(65536)
        except OSError:
            got = b""
        print("got", len(got), "bytes", flush=True)
        try:
            c.sendall(b'"ok"\n')
        except OSError:
            pass
        c.close()
"#;

/// `setpriv` arguments that run the rest as `nobody` with no supplementary groups.
const AS_NOBODY: [&str; 4] = [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
];

/// Debian's python3 (root's PATH may point at a copy `nobody` cannot execute).
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Starts the squatter as `nobody` in `ns`, trying each of `dirs`; waits until it is ready.
fn start_squatter(ns: &Netns, dirs: &[&str]) -> Pid {
    let mut args: Vec<&str> = AS_NOBODY[1..].to_vec();
    args.extend([python(), "-c", SQUATTER]);
    args.extend_from_slice(dirs);
    let pid = ns.spawn("squatter", AS_NOBODY[0], &args);
    wait_until("the squatter", STARTUP, || {
        ns.assert_running(pid);
        ns.log(pid).contains("ready")
    });
    pid
}

/// `tunlb adm ARGS` in `ns`, as `nobody` if `unprivileged`, with `TUNLB_RUN_DIR` if given.
fn adm_as(ns: &Netns, unprivileged: bool, run_dir: Option<&Path>, args: &[&str]) -> Output {
    let mut full: Vec<&str> = Vec::new();
    if unprivileged {
        full.extend_from_slice(&AS_NOBODY[1..]);
        full.push(crate::harness::TUNLB);
    }
    full.push("adm");
    full.extend_from_slice(args);
    let mut cmd: Command = if unprivileged {
        ns.command(AS_NOBODY[0], &full)
    } else {
        ns.command(TUNLB, &full)
    };
    if let Some(dir) = run_dir {
        cmd.env("TUNLB_RUN_DIR", dir);
    }
    output(&mut cmd)
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// A folder under /tmp for a private runtime directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("tunlb-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        TempDir(dir)
    }

    fn chmod(&self, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The squatter takes the abstract name before the director starts and tries `/run/tunlb`:
/// the director starts anyway, root's `adm` gets the director's table, `nobody`'s `adm` is told
/// it must be root, and the squatter never hears from anyone.
#[test]
fn squatter_neither_stops_the_director_nor_fools_adm() {
    let ns = Netns::new("squat");
    let squatter = start_squatter(&ns, &["/run/tunlb"]);
    let log = ns.log(squatter);
    eprintln!("squatter:\n{log}");
    assert!(log.contains("bound abstract"), "{log}");
    assert!(log.contains("uid 65534 ready"), "{log}");
    assert!(
        !log.contains("bound /run/tunlb"),
        "nobody got a socket into /run/tunlb:\n{log}"
    );

    let director = start_director(&ns, &["--tun-name", "tlbsq0"]);
    adm(&ns, "-A -t 10.9.9.9:80 -s rr");
    adm(&ns, "-a -t 10.9.9.9:80 -r 10.9.8.1 -i");
    let table = adm(&ns, "-L -n");
    assert!(table.contains("TCP  10.9.9.9:80 rr"), "{table}");
    assert!(table.contains("10.9.8.1:80"), "{table}");
    let toml = adm(&ns, "--save-config -");
    assert!(toml.contains("10.9.9.9"), "{toml}");

    // nobody cannot reach the socket at all (the directory is root's, 0700).
    let out = adm_as(&ns, true, None, &["-L", "-n"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "Permission denied (you must be root)\n");
    assert!(out.stdout.is_empty());

    let log = ns.log(squatter);
    assert!(
        !log.contains("got "),
        "someone talked to the squatter:\n{log}"
    );
    ns.assert_running(director);
}

/// Defence in depth, with a runtime directory that was once open to `nobody` (a test folder
/// under /tmp): the client refuses the folder while others can write to it, and once it is
/// root's again, refuses the socket `nobody` put there without sending it a byte; the director
/// refuses to start in the open folder and, in the closed one, takes the name back from the
/// squatter. A peer that root let in (socket made world-writable) but is not root gets
/// PermissionDenied and is disconnected at once.
#[test]
fn squatter_socket_is_refused_by_adm_and_taken_back_by_the_director() {
    let ns = Netns::new("squat");
    let dir = TempDir::new("squat-run");
    dir.chmod(0o777);
    let dir_arg = dir.0.to_str().unwrap();
    let squatter = start_squatter(&ns, &[dir_arg]);
    let log = ns.log(squatter);
    assert!(log.contains(&format!("bound {dir_arg}")), "{log}");

    // Open folder: the client refuses to look there; the director refuses to start.
    let out = adm_as(&ns, false, Some(&dir.0), &["-L", "-n"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("writable by group or others"),
        "{}",
        text(&out.stderr)
    );
    let mut cmd = ns.command(TUNLB, &["director", "--tun-name", "tlbsq1"]);
    cmd.env("TUNLB_RUN_DIR", &dir.0);
    let out = output(&mut cmd);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("writable by group or others"),
        "{}",
        text(&out.stderr)
    );
    assert!(!ns.ip("-o link show").contains("tlbsq1"), "a TUN was left");

    // Root closes the folder, the squatter's socket stays: the client checks who serves it.
    dir.chmod(0o755);
    let out = adm_as(&ns, false, Some(&dir.0), &["--save-config", "-"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("it is served by uid 65534") && stderr.contains("not by root"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    wait_until("the squatter to log the refused client", STARTUP, || {
        ns.log(squatter).contains("got ")
    });
    let log = ns.log(squatter);
    assert!(
        log.contains("got 0 bytes") && !log.contains("got 1"),
        "{log}"
    );

    // The director takes the name back and serves.
    let pid = ns.spawn(
        "director",
        "env",
        &[
            &format!("TUNLB_RUN_DIR={dir_arg}"),
            TUNLB,
            "director",
            "--tun-name",
            "tlbsq1",
        ],
    );
    wait_until("the director's control socket", STARTUP, || {
        ns.assert_running(pid);
        adm_as(&ns, false, Some(&dir.0), &["-L", "-n"])
            .status
            .success()
    });
    let log = ns.log(pid);
    assert!(
        // A director without CAP_DAC_OVERRIDE cannot even connect to nobody's socket: it
        // judges by the file's owner instead of the server's credentials.
        (log.contains("served by uid 65534") && log.contains("not by a director"))
            || log.contains("belongs to uid 65534, not to a director"),
        "{log}"
    );
    let out = adm_as(&ns, false, Some(&dir.0), &["-A", "-t", "10.9.9.9:80"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Let nobody reach the socket file: the director itself refuses and disconnects.
    let sock = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("director.sock."))
        .expect("the director's socket");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let out = adm_as(&ns, true, Some(&dir.0), &["-C"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "Permission denied (you must be root)\n");
    // A raw client as nobody that sends nothing: the answer, then end of stream, at once.
    let probe = format!(
        "import socket,time\ns=socket.socket(socket.AF_UNIX)\ns.connect({:?})\ns.settimeout(5)\n\
         t=time.time()\nd=b''\nwhile True:\n    b=s.recv(4096)\n    if not b: break\n    d+=b\n\
         print(repr(d), round(time.time()-t, 2))\n",
        sock.to_str().unwrap()
    );
    let mut args: Vec<&str> = AS_NOBODY[1..].to_vec();
    args.extend([python(), "-c", &probe]);
    let out = output(&mut ns.command(AS_NOBODY[0], &args));
    let said = text(&out.stdout);
    eprintln!("nobody's raw client: {said}");
    assert!(said.starts_with("b'\"permission_denied\"\\n'"), "{said}");
    let secs: f64 = said.split_whitespace().last().unwrap().parse().unwrap();
    assert!(secs < 1.0, "disconnected after {secs} s");
    // The table is untouched, and the director still serves root.
    let out = adm_as(&ns, false, Some(&dir.0), &["-L", "-n"]);
    assert!(
        text(&out.stdout).contains("10.9.9.9:80"),
        "{}",
        text(&out.stdout)
    );
    ns.stop(pid);
    assert!(!sock.exists(), "a clean exit removes the socket file");
}

/// `adm -L -n -c` of more flows than one streamed line holds (1,024 entries): 3,000 spoofed
/// SYN + ACK pairs (one flow each) over a two-worker director. The director streams the
/// listing in chunks; `adm` prints it whole, in the text and in `--json`: the same flows, each
/// once.
#[test]
fn a_listing_of_thousands_of_connections_is_streamed_whole() {
    use crate::harness::tun_lab::{self, DIRECTOR, RS1, RS2, VIP};
    const SPOOFED: &str = "198.18.0.0/15";
    let topo = tun_lab::build();
    let (client, director) = (topo.ns("client"), topo.ns("director"));
    topo.ns("router")
        .ip(&format!("route add blackhole {SPOOFED}"));
    start_director(director, &["--local-address", DIRECTOR, "--queues", "2"]);
    adm(director, &format!("-A -t {VIP}:80 -s rr"));
    for rip in [RS1, RS2] {
        adm(director, &format!("-a -t {VIP}:80 -r {rip} -i"));
    }
    let to = format!("{VIP}:80");
    let flood = client.spawn(
        "synflood",
        TUNLB,
        &[
            "lab",
            "synflood",
            "--to",
            &to,
            "--src",
            SPOOFED,
            "--pairs",
            "3000",
            "--rate",
            "1500",
            "--seconds",
            "20",
        ],
    );
    let (status, log) = client.wait_exit(flood, std::time::Duration::from_secs(30));
    assert!(status.success(), "synflood: {log}");
    std::thread::sleep(std::time::Duration::from_millis(500));

    let text = adm(director, "-L -n -c");
    let json = adm(director, "-L -n -c --json");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("IPVS connection entries"));
    assert_eq!(
        lines.next(),
        Some("pro expire state       source             virtual            destination")
    );
    let mut from_text: Vec<String> = lines
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_owned))
        .filter(|src| src.starts_with("198.1"))
        .collect();
    let entries: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let mut from_json: Vec<String> = entries
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|e| e["client"].as_str().map(str::to_owned))
        .filter(|src| src.starts_with("198.1"))
        .collect();
    eprintln!(
        "{} flows listed ({} bytes of text, {} of JSON)",
        from_text.len(),
        text.len(),
        json.len()
    );
    assert!(
        from_text.len() > 2 * 1024,
        "only {} of 3000 flows listed",
        from_text.len()
    );
    from_text.sort();
    from_json.sort();
    let listed = from_text.len();
    from_text.dedup();
    assert_eq!(from_text.len(), listed, "a flow listed twice");
    assert_eq!(
        from_text, from_json,
        "the text and the JSON list the same flows"
    );
}
