//! RAII guards for network-namespace tests: [`Netns`], [`Veth`] and a [`Topology`] builder.
//!
//! Everything a test creates lives in namespaces named `tlb-<role>-<pid>-<counter>`, so parallel
//! tests and parallel runs never collide, and nothing is ever created in (or sent from) the host
//! namespace: veth pairs are created inside a namespace with their peer moved straight into the
//! other one. Drop order is the cleanup order: background processes are killed first, then the
//! links, then the namespaces; Drop also runs when an assertion fails (panic unwind), and a failed
//! test prints the logs of the processes it started.
//!
//! Tests need root and the tools `ip`, `nft` and `curl`; without them a test fails with a message
//! saying what is missing (it never passes silently).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// The `tunlb` binary under test.
pub const TUNLB: &str = env!("CARGO_BIN_EXE_tunlb");

/// Tools the namespace tests run; each must be on `PATH` (or in /usr/sbin, /sbin).
const TOOLS: [&str; 3] = ["ip", "nft", "curl"];

/// Numbers the namespaces of this process.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// How many [`Netns`] of this process are alive. The log folder is removed only when the last
/// one goes, under this lock, so a test never sees the folder vanish between creating it and
/// writing a file there.
static LIVE: Mutex<usize> = Mutex::new(0);

/// Panics with a clear message unless we are root and every tool in [`TOOLS`] is installed.
/// Checked once per process; every [`Netns::new`] calls it.
pub fn require_root_and_tools() {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECK.get_or_init(|| {
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        let euid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            .unwrap_or("?");
        if euid != "0" {
            return Err(format!(
                "the netns tests need root (they create network namespaces); effective uid is \
                 {euid}. Run them as root, e.g. `sudo -E cargo test --test netns`"
            ));
        }
        let missing: Vec<&str> = TOOLS
            .into_iter()
            .filter(|t| find_tool(t).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "the netns tests need these tools, which are not installed: {} (Debian: apt-get \
                 install iproute2 nftables curl)",
                missing.join(", ")
            ));
        }
        Ok(())
    });
    if let Err(message) = result {
        panic!("{message}");
    }
}

/// Finds `tool` on `PATH`, then in the sbin folders root's `PATH` usually has.
fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// The absolute path of `tool` (after [`require_root_and_tools`] passed).
fn tool(tool: &str) -> PathBuf {
    find_tool(tool).unwrap_or_else(|| panic!("`{tool}` is not installed"))
}

/// Runs a command to completion; panics with its stderr unless it succeeds. Returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    if !out.status.success() {
        panic!(
            "command failed ({}): {:?}\nstdout: {}\nstderr: {}",
            out.status,
            cmd,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command to completion with no stdin, whatever its exit status.
pub fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// The names in `ip netns list` (each line is `NAME` or `NAME (id: N)`).
pub fn netns_list() -> Vec<String> {
    run(Command::new(tool("ip")).args(["netns", "list"]))
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Runs `$scenario(encap)` as one test per encapsulation (ipip, gre, gue), in a module named
/// after the scenario: `tun_mode::rr_alternates_between_real_servers::gre`.
macro_rules! for_each_encap {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[test]
            fn ipip() {
                super::$scenario("ipip");
            }
            #[test]
            fn gre() {
                super::$scenario("gre");
            }
            #[test]
            fn gue() {
                super::$scenario("gue");
            }
        }
    )*};
}
pub(crate) use for_each_encap;

/// Polls `ready` every 50 ms until it is true; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// How long [`start_director`], [`start_agent`] and [`start_httpd`] wait for a daemon to come up.
pub const STARTUP: Duration = Duration::from_secs(15);

/// Starts `tunlb director <args>` in `ns` and waits until `tunlb adm -L -n` reaches it there.
pub fn start_director(ns: &Netns, args: &[&str]) -> Pid {
    let mut full = vec!["director"];
    full.extend_from_slice(args);
    let pid = ns.spawn("director", TUNLB, &full);
    wait_until(
        &format!("the director's control socket in {}", ns.name()),
        STARTUP,
        || {
            ns.assert_running(pid);
            ns.try_exec(TUNLB, &["adm", "-L", "-n"]).status.success()
        },
    );
    pid
}

/// Starts `tunlb realserver` in `ns` for `vip` with encapsulation `encap`, accepting tunnels
/// from the prefix `allow`, and waits until it has put `vip/32` on `lo`.
pub fn start_agent(ns: &Netns, vip: &str, encap: &str, allow: &str) -> Pid {
    let args = [
        "realserver",
        "--vip",
        vip,
        "--encap",
        encap,
        "--allow",
        allow,
    ];
    let pid = ns.spawn("agent", TUNLB, &args);
    let on_lo = format!("{vip}/32");
    wait_until(
        &format!("the agent in {} to put {on_lo} on lo", ns.name()),
        STARTUP,
        || {
            ns.assert_running(pid);
            ns.ip("-o addr show dev lo").contains(&on_lo)
        },
    );
    pid
}

/// Starts `tunlb realserver --vip <vip> --mode dr` in `ns` and waits until it has put
/// `vip/32` (an IPv6 VIP: `vip/128`) on `lo`.
pub fn start_dr_agent(ns: &Netns, vip: &str) -> Pid {
    let pid = ns.spawn(
        "agent",
        TUNLB,
        &["realserver", "--vip", vip, "--mode", "dr"],
    );
    let host = if vip.contains(':') { 128 } else { 32 };
    let on_lo = format!("{vip}/{host}");
    wait_until(
        &format!("the DR agent in {} to put {on_lo} on lo", ns.name()),
        STARTUP,
        || {
            ns.assert_running(pid);
            ns.ip("-o addr show dev lo").contains(&on_lo)
        },
    );
    pid
}

/// Starts `tunlb httpd --listen <listen> --banner <banner> <extra>` in `ns` and waits until
/// `http://<listen>/` answers there.
pub fn start_httpd(ns: &Netns, listen: &str, banner: &str, extra: &[&str]) -> Pid {
    let mut args = vec!["httpd", "--listen", listen, "--banner", banner];
    args.extend_from_slice(extra);
    let pid = ns.spawn("httpd", TUNLB, &args);
    let url = format!("http://{listen}/");
    wait_until(
        &format!("httpd on {listen} in {}", ns.name()),
        STARTUP,
        || {
            ns.assert_running(pid);
            ns.try_exec("curl", &["-s", "--max-time", "1", &url])
                .status
                .success()
        },
    );
    pid
}

/// nftables counters proving that a service's replies bypass the director (TUN and DR modes):
/// in the director, packets from the VIP matching `reply` (e.g. `tcp sport 80`; empty: any)
/// in input, forward and output, and the requests to the VIP in prerouting; in the client, the
/// replies that arrive.
pub struct ReplyCounters<'a> {
    director: &'a Netns,
    client: &'a Netns,
}

impl<'a> ReplyCounters<'a> {
    /// Loads the counters (table `tlbtest`) into both namespaces.
    pub fn install(director: &'a Netns, client: &'a Netns, vip: &str, reply: &str) -> Self {
        let chain = |name: &str, hook: &str, rule: &str| {
            format!(
                "chain {name} {{ type filter hook {hook} priority 0; policy accept;\n {rule}\n}}\n"
            )
        };
        let mut d = String::from(
            "table inet tlbtest {\n counter reply_in {}\n counter reply_fwd {}\n \
             counter reply_out {}\n counter request_pre {}\n",
        );
        d += &chain(
            "pre_count",
            "prerouting",
            &format!("ip daddr {vip} counter name \"request_pre\""),
        );
        for (name, hook) in [("in", "input"), ("fwd", "forward"), ("out", "output")] {
            d += &chain(
                &format!("{name}_count"),
                hook,
                &format!("ip saddr {vip} {reply} counter name \"reply_{name}\""),
            );
        }
        d += "}\n";
        director.nft(&d);
        client.nft(&format!(
            "table inet tlbtest {{\n counter reply_in {{}}\n{}}}\n",
            chain(
                "in_count",
                "input",
                &format!("ip saddr {vip} {reply} counter name \"reply_in\"")
            )
        ));
        ReplyCounters { director, client }
    }

    /// (replies counted at the client, requests counted at the director, packets from the VIP
    /// counted at the director in input, forward and output).
    pub fn read(&self) -> (u64, u64, [u64; 3]) {
        let d = |c: &str| self.director.nft_counter("tlbtest", c);
        (
            self.client.nft_counter("tlbtest", "reply_in"),
            d("request_pre"),
            [d("reply_in"), d("reply_fwd"), d("reply_out")],
        )
    }

    /// Asserts the client got more than `min_replies` replies, the director saw more than
    /// `min_requests` requests, and not one reply packet crossed the director.
    pub fn assert_bypassed(&self, min_replies: u64, min_requests: u64) {
        let (replies, requests, crossed) = self.read();
        assert!(
            replies > min_replies,
            "the client counted {replies} replies"
        );
        assert!(
            requests > min_requests,
            "the director saw {requests} requests"
        );
        assert_eq!(
            crossed,
            [0, 0, 0],
            "reply packets crossed the director (input, forward, output)"
        );
    }
}

/// A file of `size` bytes of [`tunlb::lab::httpd::fill_blob`]'s pattern from offset 0 (what
/// `tunlb httpd` serves as `/bytes/N`; `blob_sha256(size)` is its hash), named after `tag` and
/// `ns`, for curl to upload; removed when dropped.
pub fn upload_blob(ns: &Netns, tag: &str, size: u64) -> TempPath {
    let file = TempPath::new(&format!("{tag}-{}", ns.name()));
    let mut data = vec![0u8; size as usize];
    tunlb::lab::httpd::fill_blob(0, &mut data);
    fs::write(file.path(), &data).expect("write the upload");
    file
}

/// curl's arguments to POST the file `body` (`@path`) to `url` as a raw octet stream — what
/// `tunlb httpd`'s `/upload` answers with the length and sha256 it received — failing on an
/// HTTP error and after 60 s.
pub fn curl_upload_args<'a>(body: &'a str, url: &'a str) -> [&'a str; 9] {
    [
        "-s",
        "-f",
        "--max-time",
        "60",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        body,
        url,
    ]
}

/// Runs `tunlb adm <args>` (split on whitespace) in `ns`, echoing the command to stderr;
/// panics unless it succeeds. Returns stdout.
pub fn adm(ns: &Netns, args: &str) -> String {
    eprintln!("tunlb adm {args}");
    let mut full = vec!["adm"];
    full.extend(args.split_whitespace());
    ns.tunlb(&full)
}

/// Id of a background process started with [`Netns::spawn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pid(u32);

/// A background process and where its output goes.
struct Proc {
    label: String,
    child: Child,
    log: PathBuf,
}

/// A network namespace, deleted on drop after its background processes are killed.
pub struct Netns {
    name: String,
    procs: Mutex<Vec<Proc>>,
    /// A `tunlb` daemon was started here: its journal may outlive it (see `Drop`).
    ran_tunlb: std::sync::atomic::AtomicBool,
}

impl Netns {
    /// Creates `tlb-<role>-<pid>-<counter>` with loopback up, rp_filter 0 (on `all`, `default`
    /// and `lo`) and forwarding off.
    pub fn new(role: &str) -> Netns {
        require_root_and_tools();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("tlb-{role}-{}-{n}", std::process::id());
        run(Command::new(tool("ip")).args(["netns", "add", &name]));
        *LIVE.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let ns = Netns {
            name,
            procs: Mutex::new(Vec::new()),
            ran_tunlb: std::sync::atomic::AtomicBool::new(false),
        };
        ns.ip("link set dev lo up");
        for conf in ["all", "default", "lo"] {
            ns.sysctl(&format!("net.ipv4.conf.{conf}.rp_filter"), "0");
        }
        ns.sysctl("net.ipv4.ip_forward", "0");
        ns
    }

    /// The namespace's name (for `ip netns exec` and `ip -n`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program args...` inside this namespace (`ip netns exec`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
        let mut cmd = Command::new(tool("ip"));
        cmd.args(["netns", "exec", &self.name])
            .arg(program)
            .args(args);
        cmd
    }

    /// Runs `program args...` in this namespace; panics unless it succeeds. Returns stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        run(&mut self.command(program, args))
    }

    /// Runs `program args...` in this namespace and returns its output whatever the status.
    pub fn try_exec(&self, program: &str, args: &[&str]) -> Output {
        output(&mut self.command(program, args))
    }

    /// Runs `tunlb args...` in this namespace; panics unless it succeeds. Returns stdout.
    pub fn tunlb(&self, args: &[&str]) -> String {
        self.exec(TUNLB, args)
    }

    /// Runs `ip -n NAME <args>` (args split on whitespace); panics unless it succeeds.
    pub fn ip(&self, args: &str) -> String {
        run(Command::new(tool("ip"))
            .args(["-n", &self.name])
            .args(args.split_whitespace()))
    }

    /// Sets a sysctl of this namespace (`net.ipv4.ip_forward` style key).
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.exec("sh", &["-c", &format!("echo {value} > {path}")]);
    }

    /// Reads a sysctl of this namespace (`net.ipv4.ip_forward` style key), trimmed.
    pub fn read_sysctl(&self, key: &str) -> String {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.exec("cat", &[&path]).trim().to_owned()
    }

    /// Loads an nftables ruleset (the text of an `nft -f` file) into this namespace.
    pub fn nft(&self, ruleset: &str) {
        let file = TempPath::new(&format!("{}.nft", self.name));
        fs::write(file.path(), ruleset).expect("write the nft ruleset");
        self.exec(&tool("nft").to_string_lossy(), &["-f", &file.arg()]);
    }

    /// Packets counted so far by the named nftables counter `name` of `table` (family `inet`).
    pub fn nft_counter(&self, table: &str, name: &str) -> u64 {
        let nft = tool("nft");
        let text = self.exec(
            &nft.to_string_lossy(),
            &["list", "counter", "inet", table, name],
        );
        text.split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no packet count in `nft list counter`: {text}"))
    }

    /// Starts `program args...` in the background in this namespace, output to a log file.
    /// The process is killed when this namespace is dropped, or by [`Netns::stop`].
    pub fn spawn(&self, label: &str, program: &str, args: &[&str]) -> Pid {
        if program == TUNLB || args.contains(&TUNLB) {
            self.ran_tunlb.store(true, Ordering::Relaxed);
        }
        let log = log_dir().join(format!("{}-{label}.log", self.name));
        let file = fs::File::create(&log).expect("create a log file");
        let err = file.try_clone().expect("clone a log file");
        let mut cmd = self.command(program, args);
        cmd.stdin(Stdio::null()).stdout(file).stderr(err);
        // `ip netns exec` execs the program, so the child's pid is the program's.
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let pid = Pid(child.id());
        self.procs.lock().unwrap().push(Proc {
            label: label.to_owned(),
            child,
            log,
        });
        pid
    }

    /// Panics with the process's log if it has exited (use in readiness loops).
    pub fn assert_running(&self, pid: Pid) {
        let mut procs = self.procs.lock().unwrap();
        let Some(proc) = procs.iter_mut().find(|p| p.child.id() == pid.0) else {
            panic!("no background process {pid:?} in {}", self.name);
        };
        if let Ok(Some(status)) = proc.child.try_wait() {
            panic!(
                "`{}` in {} exited early ({status}); its output:\n{}",
                proc.label,
                self.name,
                fs::read_to_string(&proc.log).unwrap_or_default()
            );
        }
    }

    /// Sends `signal` (a name `kill -s` knows: `TERM`, `HUP`, ...) to a background process;
    /// panics if it has already exited (its pid may belong to another process by now).
    pub fn signal(&self, pid: Pid, signal: &str) {
        let mut procs = self.procs.lock().unwrap();
        let Some(proc) = procs.iter_mut().find(|p| p.child.id() == pid.0) else {
            panic!("no background process {pid:?} in {}", self.name);
        };
        if let Ok(Some(status)) = proc.child.try_wait() {
            panic!(
                "cannot send SIG{signal}: `{}` in {} has exited ({status})",
                proc.label, self.name
            );
        }
        run(Command::new("kill").args(["-s", signal, &pid.0.to_string()]));
    }

    /// Waits up to `timeout` for a background process to exit by itself (after
    /// [`Netns::signal`], say) and forgets it. Returns its exit status and everything it wrote;
    /// panics if it still runs (it is then killed with the namespace, and its log printed).
    pub fn wait_exit(&self, pid: Pid, timeout: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut procs = self.procs.lock().unwrap();
                let Some(i) = procs.iter().position(|p| p.child.id() == pid.0) else {
                    panic!("no background process {pid:?} in {}", self.name);
                };
                if let Ok(Some(status)) = procs[i].child.try_wait() {
                    let proc = procs.remove(i);
                    let log = fs::read_to_string(&proc.log).unwrap_or_default();
                    let _ = fs::remove_file(&proc.log);
                    return (status, log);
                }
                if Instant::now() > deadline {
                    panic!(
                        "`{}` in {} still runs {timeout:?} later",
                        procs[i].label, self.name
                    );
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything a background process has written so far (stdout and stderr).
    pub fn log(&self, pid: Pid) -> String {
        let procs = self.procs.lock().unwrap();
        let Some(proc) = procs.iter().find(|p| p.child.id() == pid.0) else {
            panic!("no background process {pid:?} in {}", self.name);
        };
        fs::read_to_string(&proc.log).unwrap_or_default()
    }

    /// Stops one background process: SIGTERM, then SIGKILL after 3 s.
    pub fn stop(&self, pid: Pid) {
        let mut procs = self.procs.lock().unwrap();
        if let Some(i) = procs.iter().position(|p| p.child.id() == pid.0) {
            let mut proc = procs.remove(i);
            terminate(&mut proc.child);
            let _ = fs::remove_file(&proc.log);
        }
    }

    /// Stops every background process of this namespace (all get SIGTERM at once).
    pub fn stop_all(&self) {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        if thread::panicking() {
            for proc in procs.iter() {
                eprintln!("---- log of `{}` in {} ----", proc.label, self.name);
                eprintln!("{}", tail(&proc.log, 40));
            }
        }
        for proc in procs.iter_mut() {
            signal_term(&proc.child);
        }
        for mut proc in procs.drain(..) {
            // One SIGTERM only: the daemons treat a second one as "die now", skipping the
            // restore of the host that the first one started.
            wait_or_kill(&mut proc.child);
            let _ = fs::remove_file(&proc.log);
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.stop_all();
        // A daemon killed here (on purpose, or after SIGTERM timed out) leaves its journal in
        // /run/tunlb, named after this namespace, which is about to go: undo and remove it.
        if self.ran_tunlb.load(Ordering::Relaxed) {
            for role in ["director", "realserver"] {
                let _ = output(&mut self.command(TUNLB, &["-qqq", role, "--cleanup"]));
            }
        }
        let out = output(Command::new(tool("ip")).args(["netns", "del", &self.name]));
        if !out.status.success() {
            eprintln!(
                "warning: could not delete netns {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        *live -= 1;
        if *live == 0 {
            // Fails if logs were kept for a failure (or a TempPath outlives the namespaces).
            let _ = fs::remove_dir(log_dir());
        }
    }
}

/// Sends SIGTERM (via kill(1): the test crate has no unsafe).
fn signal_term(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
}

/// SIGTERM, wait up to 3 s, then SIGKILL; always reaps the child.
fn terminate(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    signal_term(child);
    wait_or_kill(child);
}

/// Waits up to 3 s for a signalled child to exit, then SIGKILLs it; always reaps it.
fn wait_or_kill(child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The last `lines` lines of a log file.
fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Where background processes' logs go: a folder per test process, created on demand and
/// removed by the last [`Netns`] dropped while it is empty.
fn log_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tlb-logs-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("create the log folder");
    dir
}

/// A file path in the temp folder, unique to this process, removed on drop.
pub struct TempPath(PathBuf);

impl TempPath {
    /// `<tmp>/tlb-logs-<pid>/<name>` (nothing is created yet).
    pub fn new(name: &str) -> TempPath {
        TempPath(log_dir().join(name))
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The path as a string, for command lines.
    pub fn arg(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A veth pair between two namespaces, created inside them (never in the host namespace).
/// Dropping it deletes the pair (deleting either namespace does too).
pub struct Veth {
    ns: String,
    name: String,
}

impl Veth {
    /// Creates `a_if` in `a` and its peer `b_if` in `b`, both with MTU 1500 and still down.
    pub fn new(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Veth {
        run(Command::new(tool("ip"))
            .args(["-n", a.name(), "link", "add", "name", a_if, "mtu"])
            .args([
                "1500",
                "type",
                "veth",
                "peer",
                "name",
                b_if,
                "mtu",
                "1500",
                "netns",
                b.name(),
            ]));
        Veth {
            ns: a.name().to_owned(),
            name: a_if.to_owned(),
        }
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = output(Command::new(tool("ip")).args(["-n", &self.ns, "link", "del", &self.name]));
    }
}

/// One end of a link: namespace role, interface name, address with prefix (`10.1.0.2/24`).
pub type End<'a> = (&'a str, &'a str, &'a str);

/// Namespaces joined by veth links. Dropping it stops every background process in every
/// namespace first, then deletes the links and the namespaces.
pub struct Topology {
    // Field order is drop order: links before namespaces.
    links: Vec<Veth>,
    namespaces: BTreeMap<String, Netns>,
}

impl Topology {
    /// Starts an empty topology; add to it with the builder methods.
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder {
            topo: Topology {
                links: Vec::new(),
                namespaces: BTreeMap::new(),
            },
        }
    }

    /// The namespace playing `role`.
    pub fn ns(&self, role: &str) -> &Netns {
        self.namespaces
            .get(role)
            .unwrap_or_else(|| panic!("the topology has no namespace `{role}`"))
    }

    /// The names of all namespaces (to check they are gone after drop).
    pub fn names(&self) -> Vec<String> {
        self.namespaces
            .values()
            .map(|ns| ns.name().to_owned())
            .collect()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in self.namespaces.values() {
            ns.stop_all();
        }
    }
}

/// Builds a [`Topology`] step by step; each step acts at once, so a failing step cleans up
/// what was built before it.
pub struct TopologyBuilder {
    topo: Topology,
}

impl TopologyBuilder {
    /// Adds a namespace playing `role`.
    pub fn netns(mut self, role: &str) -> Self {
        self.topo
            .namespaces
            .insert(role.to_owned(), Netns::new(role));
        self
    }

    /// Links two namespaces with a veth pair (MTU 1500), addresses both ends, brings them up.
    pub fn link(mut self, a: End, b: End) -> Self {
        let veth = Veth::new(self.topo.ns(a.0), a.1, self.topo.ns(b.0), b.1);
        self.topo.links.push(veth);
        self.address(a);
        self.address(b);
        self
    }

    /// Addresses one end of a link (rp_filter off on it) and brings it up.
    fn address(&self, (role, ifname, addr): End) {
        let ns = self.topo.ns(role);
        ns.sysctl(&format!("net.ipv4.conf.{ifname}.rp_filter"), "0");
        ns.ip(&format!("addr add {addr} dev {ifname}"));
        ns.ip(&format!("link set dev {ifname} up"));
    }

    /// Adds a bridge `name` with address `addr` in `role`'s namespace: a LAN that
    /// [`TopologyBuilder::link_to_bridge`] plugs namespaces into.
    pub fn bridge(self, role: &str, name: &str, addr: &str) -> Self {
        let ns = self.topo.ns(role);
        ns.ip(&format!("link add name {name} mtu 1500 type bridge"));
        ns.sysctl(&format!("net.ipv4.conf.{name}.rp_filter"), "0");
        ns.ip(&format!("addr add {addr} dev {name}"));
        ns.ip(&format!("link set dev {name} up"));
        self
    }

    /// Links end `a` (addressed, up) to a port `b_if` of `bridge` in `b_role`'s namespace.
    pub fn link_to_bridge(mut self, a: End, b_role: &str, b_if: &str, bridge: &str) -> Self {
        let veth = Veth::new(self.topo.ns(a.0), a.1, self.topo.ns(b_role), b_if);
        self.topo.links.push(veth);
        self.address(a);
        let ns = self.topo.ns(b_role);
        ns.ip(&format!("link set dev {b_if} master {bridge}"));
        ns.ip(&format!("link set dev {b_if} up"));
        self
    }

    /// Adds a route in `role`'s namespace, e.g. `default via 10.2.0.1`.
    pub fn route(self, role: &str, route: &str) -> Self {
        self.topo.ns(role).ip(&format!("route add {route}"));
        self
    }

    /// Adds the real servers' LAN behind the namespace `router` (which must exist): rs1
    /// 10.3.0.12 and rs2 10.3.0.13 on the bridge `rs-lan` (10.3.0.0/24), their default route via
    /// the router's 10.3.0.1.
    pub fn real_server_lan(self) -> Self {
        self.netns("rs1")
            .netns("rs2")
            .bridge("router", "rs-lan", "10.3.0.1/24")
            .link_to_bridge(
                ("rs1", "eth0", "10.3.0.12/24"),
                "router",
                "to-rs1",
                "rs-lan",
            )
            .link_to_bridge(
                ("rs2", "eth0", "10.3.0.13/24"),
                "router",
                "to-rs2",
                "rs-lan",
            )
            .route("rs1", "default via 10.3.0.1")
            .route("rs2", "default via 10.3.0.1")
    }

    /// Turns on IPv4 forwarding in `role`'s namespace.
    pub fn forwarding(self, role: &str) -> Self {
        self.topo.ns(role).sysctl("net.ipv4.ip_forward", "1");
        self
    }

    /// The finished topology.
    pub fn build(self) -> Topology {
        self.topo
    }
}

/// The five namespaces of [`tun_lab`] and [`lan_lab`] (client, router, director, rs1, rs2), with
/// the real servers' side already built ([`TopologyBuilder::real_server_lan`]).
fn real_server_lan_lab() -> TopologyBuilder {
    Topology::builder()
        .netns("client")
        .netns("router")
        .netns("director")
        .real_server_lan()
}

/// The TUN-mode lab: a client and a director in one network, two real servers in another,
/// joined by a router; the router sends the VIP to the director. All links have MTU 1500.
///
/// ```text
///  client 10.1.0.2 ── 10.1.0.1 router 10.2.0.1 ── 10.2.0.2 director
///                                 10.3.0.1 (bridge rs-lan: 10.3.0.0/24)
///                                  ┌────┴────┐
///                      rs1 10.3.0.12       rs2 10.3.0.13
/// ```
pub mod tun_lab {
    use super::{real_server_lan_lab, Topology};

    /// The virtual service address.
    pub const VIP: &str = "10.100.0.100";
    /// The client.
    pub const CLIENT: &str = "10.1.0.2";
    /// The director's address (the tunnel source).
    pub const DIRECTOR: &str = "10.2.0.2";
    /// Real server 1.
    pub const RS1: &str = "10.3.0.12";
    /// Real server 2.
    pub const RS2: &str = "10.3.0.13";

    /// Builds the topology (no processes started).
    pub fn build() -> Topology {
        real_server_lan_lab()
            .link(
                ("client", "eth0", "10.1.0.2/24"),
                ("router", "to-client", "10.1.0.1/24"),
            )
            .link(
                ("director", "eth0", "10.2.0.2/24"),
                ("router", "to-dir", "10.2.0.1/24"),
            )
            .route("router", "10.100.0.100/32 via 10.2.0.2")
            .route("client", "default via 10.1.0.1")
            .route("director", "default via 10.2.0.1")
            .forwarding("router")
            .forwarding("director")
            .build()
    }
}

/// A LAN lab for `--announce`: the client and the director share one LAN, on which the VIP
/// lives without belonging to anyone; the real servers are in another network (another
/// datacenter) behind a router that is also the LAN's gateway. The client has no route but its
/// connected /24, so it reaches the VIP only if someone answers ARP for it: the director. The
/// real servers' replies go from the VIP to the client through the router, not the director.
///
/// ```text
///  client 192.168.150.2 ──┐   LAN 192.168.150.0/24 (bridge `lan` in the router, .1)
///                         ├── router ── 10.2.0.1 ─── 10.2.0.2 eth1 director
///  director eth0 .11 ─────┘     │                  (VIP 192.168.150.100 announced on eth0)
///                     10.3.0.1 (bridge rs-lan: 10.3.0.0/24)
///                      rs1 10.3.0.12    rs2 10.3.0.13
/// ```
pub mod lan_lab {
    use super::{real_server_lan_lab, Topology};

    /// The virtual service address, on the LAN.
    pub const VIP: &str = "192.168.150.100";
    /// The client, on the LAN.
    pub const CLIENT: &str = "192.168.150.2";
    /// The director's LAN interface (the one to `--announce`).
    pub const DIRECTOR_LAN_IF: &str = "eth0";
    /// The director's address towards the real servers (the tunnel source).
    pub const DIRECTOR: &str = "10.2.0.2";
    /// Real server 1.
    pub const RS1: &str = "10.3.0.12";
    /// Real server 2.
    pub const RS2: &str = "10.3.0.13";

    /// Builds the topology (no processes started; forwarding is on in the router only).
    pub fn build() -> Topology {
        real_server_lan_lab()
            .bridge("router", "lan", "192.168.150.1/24")
            .link_to_bridge(
                ("client", "eth0", "192.168.150.2/24"),
                "router",
                "to-client",
                "lan",
            )
            .link_to_bridge(
                ("director", "eth0", "192.168.150.11/24"),
                "router",
                "to-dir-lan",
                "lan",
            )
            .link(
                ("director", "eth1", "10.2.0.2/24"),
                ("router", "to-dir", "10.2.0.1/24"),
            )
            .route("director", "10.3.0.0/24 via 10.2.0.1")
            .forwarding("router")
            .build()
    }
}

/// The seed's DR lab: client, director and both real servers on ONE LAN (a bridge in the
/// namespace `lan`, which also has 192.168.150.1). The VIP belongs to no one; the director
/// answers ARP for it (`--announce eth0`) and passes each packet, unchanged, in a frame to a
/// real server's MAC; the real server (hidden VIP) answers the client directly on the LAN. The
/// director's route to 10.3.0.0/24 goes through 192.168.150.1: a real server there is behind a
/// router, which DR cannot cross.
///
/// ```text
///   client 192.168.150.2 ──┐
///   director eth0 .11 ─────┤ bridge `lan` (192.168.150.0/24, .1 in the namespace `lan`)
///   rs1 eth0 .12 ──────────┤
///   rs2 eth0 .13 ──────────┘
/// ```
pub mod dr_lab {
    use super::Topology;

    /// The virtual service address, on the LAN.
    pub const VIP: &str = "192.168.150.100";
    /// The client.
    pub const CLIENT: &str = "192.168.150.2";
    /// The director's LAN interface (the one to `--announce`).
    pub const DIRECTOR_LAN_IF: &str = "eth0";
    /// Real server 1.
    pub const RS1: &str = "192.168.150.12";
    /// Real server 2.
    pub const RS2: &str = "192.168.150.13";
    /// An address the director reaches only through a router.
    pub const BEHIND_ROUTER: &str = "10.3.0.12";

    /// Builds the topology (no processes started).
    pub fn build() -> Topology {
        Topology::builder()
            .netns("lan")
            .netns("client")
            .netns("director")
            .netns("rs1")
            .netns("rs2")
            .bridge("lan", "lan", "192.168.150.1/24")
            .link_to_bridge(
                ("client", "eth0", "192.168.150.2/24"),
                "lan",
                "to-client",
                "lan",
            )
            .link_to_bridge(
                ("director", "eth0", "192.168.150.11/24"),
                "lan",
                "to-dir",
                "lan",
            )
            .link_to_bridge(("rs1", "eth0", "192.168.150.12/24"), "lan", "to-rs1", "lan")
            .link_to_bridge(("rs2", "eth0", "192.168.150.13/24"), "lan", "to-rs2", "lan")
            .route("director", "10.3.0.0/24 via 192.168.150.1")
            .build()
    }
}

/// The NAT-mode lab: the client reaches the VIP through a router; the director is the gateway
/// of a private real-server LAN (10.10.0.0/24, a bridge inside the director's namespace) that
/// nobody else has a route to, so everything between the client and the real servers crosses
/// the director both ways.
///
/// ```text
///  client 10.1.0.2 ── 10.1.0.1 router 10.2.0.1 ── 10.2.0.2 eth0 director
///                                                  10.10.0.1 (bridge rs-lan: 10.10.0.0/24)
///                                                   ┌────┴────┐
///                                       rs1 10.10.0.12       rs2 10.10.0.13
/// ```
pub mod nat_lab {
    use super::Topology;

    /// The virtual service address.
    pub const VIP: &str = "10.100.0.100";
    /// The client.
    pub const CLIENT: &str = "10.1.0.2";
    /// The real servers' LAN.
    pub const RS_LAN: &str = "10.10.0.0/24";
    /// Real server 1.
    pub const RS1: &str = "10.10.0.12";
    /// Real server 2.
    pub const RS2: &str = "10.10.0.13";

    /// Builds the topology (no processes started; forwarding on in the router and the director).
    pub fn build() -> Topology {
        Topology::builder()
            .netns("client")
            .netns("router")
            .netns("director")
            .netns("rs1")
            .netns("rs2")
            .bridge("director", "rs-lan", "10.10.0.1/24")
            .link_to_bridge(
                ("rs1", "eth0", "10.10.0.12/24"),
                "director",
                "to-rs1",
                "rs-lan",
            )
            .link_to_bridge(
                ("rs2", "eth0", "10.10.0.13/24"),
                "director",
                "to-rs2",
                "rs-lan",
            )
            .route("rs1", "default via 10.10.0.1")
            .route("rs2", "default via 10.10.0.1")
            .link(
                ("client", "eth0", "10.1.0.2/24"),
                ("router", "to-client", "10.1.0.1/24"),
            )
            .link(
                ("director", "eth0", "10.2.0.2/24"),
                ("router", "to-dir", "10.2.0.1/24"),
            )
            .route("router", "10.100.0.100/32 via 10.2.0.2")
            .route("client", "default via 10.1.0.1")
            .route("director", "default via 10.2.0.1")
            .forwarding("router")
            .forwarding("director")
            .build()
    }
}

/// The site-to-site lab: two LANs, each behind its own gateway, joined only by an underlay
/// through a router. Site A's gateway is the director (its tunnel routes carry site B's
/// prefix); site B's is a `tunlb realserver --gateway` agent. No process is started; forwarding
/// is on in the router only (the director and the agent turn it on themselves).
///
/// ```text
///  a1 10.1.0.2 ── 10.1.0.1 director 10.99.1.2 ── 10.99.1.1 router 10.99.2.1 ── 10.99.2.2 gw 172.16.8.1 ── 172.16.8.2 b1
///  site A 10.1.0.0/24                      underlay 10.99.0.0/16                 site B 172.16.8.0/22
/// ```
pub mod gateway_lab {
    use super::Topology;

    /// Site A's LAN.
    pub const SITE_A: &str = "10.1.0.0/24";
    /// Site B's LAN.
    pub const SITE_B: &str = "172.16.8.0/22";
    /// A host on site A.
    pub const A1: &str = "10.1.0.2";
    /// A host on site B.
    pub const B1: &str = "172.16.8.2";
    /// The director's underlay address (its tunnel endpoint).
    pub const DIRECTOR: &str = "10.99.1.2";
    /// The remote gateway's underlay address (its tunnel endpoint).
    pub const GATEWAY: &str = "10.99.2.2";
    /// The router's address towards the gateway: an underlay address the gateway does not allow.
    pub const ROUTER: &str = "10.99.2.1";

    /// Builds the topology (no processes started).
    pub fn build() -> Topology {
        Topology::builder()
            .netns("a1")
            .netns("director")
            .netns("router")
            .netns("gw")
            .netns("b1")
            .link(
                ("a1", "eth0", "10.1.0.2/24"),
                ("director", "eth0", "10.1.0.1/24"),
            )
            .link(
                ("director", "eth1", "10.99.1.2/24"),
                ("router", "to-dir", "10.99.1.1/24"),
            )
            .link(
                ("gw", "eth0", "10.99.2.2/24"),
                ("router", "to-gw", "10.99.2.1/24"),
            )
            .link(
                ("gw", "eth1", "172.16.8.1/22"),
                ("b1", "eth0", "172.16.8.2/22"),
            )
            .route("a1", "default via 10.1.0.1")
            .route("b1", "default via 172.16.8.1")
            .route("director", "10.99.0.0/16 via 10.99.1.1")
            .route("gw", "10.99.0.0/16 via 10.99.2.1")
            .forwarding("router")
            .build()
    }
}

/// Scrapes `http://ADDR/metrics` (a director's or an agent's `--metrics-listen`) from inside
/// `ns`, with extra curl arguments.
pub fn scrape_metrics(ns: &Netns, addr: &str, extra: &[&str]) -> String {
    let url = format!("http://{addr}/metrics");
    let mut args = vec!["-s", "-f", "--max-time", "5"];
    args.extend_from_slice(extra);
    args.push(&url);
    ns.exec("curl", &args)
}

/// The value of the first sample of `name` whose labels contain every one of `labels`
/// (`key="value"` strings); panics if there is none.
pub fn metric_value(text: &str, name: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no sample {name}{labels:?} in:\n{text}"))
}

/// Makes `ns`'s `eth0` receive as a NIC does: GRO on (plus the ethtool `features` given, e.g.
/// `rx-udp-gro-forwarding`) and threaded NAPI, so its receive work runs in its own kernel
/// thread and packets queue up between polls to be merged (inline, each one is polled, and so
/// flushed, alone); and TSO off on the veth end `feeder` that sends to it (veth hands a
/// forwarded packet to NAPI only from an end without TSO). Panics unless all of it took.
pub fn receive_like_a_nic(ns: &Netns, (feeder, feeder_if): (&Netns, &str), features: &[&str]) {
    feeder.exec("ethtool", &["-K", feeder_if, "tso", "off"]);
    let mut args = vec!["-K", "eth0", "gro", "on"];
    for f in features {
        args.extend([*f, "on"]);
    }
    ns.exec("ethtool", &args);
    ns.exec("sh", &["-c", "echo 1 > /sys/class/net/eth0/threaded"]);
    let shown = ns.exec("ethtool", &["-k", "eth0"]);
    for f in ["generic-receive-offload"].iter().chain(features) {
        assert!(
            shown.contains(&format!("{f}: on")),
            "{f} is not on for eth0 in {}: {shown}",
            ns.name()
        );
    }
    let threaded = ns.exec("cat", &["/sys/class/net/eth0/threaded"]);
    assert_eq!(
        threaded.trim(),
        "1",
        "threaded NAPI is not on in {}",
        ns.name()
    );
}

/// A number from a JSON line `tunlb udpblast` printed.
fn json_u64(line: &str, key: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(line.trim())
        .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

/// UDP GRO forwarding on the director's NIC, end to end: turns on GRO, `rx-udp-gro-forwarding`
/// and threaded NAPI on the director's `eth0` (so datagrams queue up between polls, as on a real
/// NIC; inline, each one is polled and flushed alone) and TSO off on the veth end that feeds it
/// (`feeder`: veth hands a forwarded packet to NAPI only from an end without TSO); starts a
/// `tunlb udpblast sink` on port 9000 (all addresses) on each of `receivers`; adds the UDP
/// service `service` (rr) with one real server per entry of `servers` (`adm -a` arguments after
/// `-r`, e.g. `10.3.0.12 -i --tun-type gre`); sends 20,000
/// datagrams of 1200 bytes in one flow to `service` from `client` (paced at 10k/s in bursts of
/// 32). Checks that the director's TUN took UDP offload (`TUN_F_USO4`, its log), that the
/// kernel handed it trains it decided whole (`tunlb_gso_packets_total{path="whole"}` from the
/// director's `metrics` address), that no datagram arrived changed (`corrupt` 0) and at least
/// 99% arrived. Needs `ethtool`.
pub fn udp_trains_check(
    (director, director_pid): (&Netns, Pid),
    (feeder, feeder_if): (&Netns, &str),
    client: &Netns,
    receivers: &[&Netns],
    service: &str,
    servers: &[String],
    metrics: &str,
) {
    const SENT: u64 = 20_000;
    adm(director, &format!("-A -u {service} -s rr"));
    for server in servers {
        adm(director, &format!("-a -u {service} -r {server}"));
    }
    let log = director.log(director_pid);
    assert!(
        log.contains("UDP trains too"),
        "the director's TUN did not take UDP offload (TUN_F_USO4, Linux 6.2+):\n{log}"
    );
    receive_like_a_nic(director, (feeder, feeder_if), &["rx-udp-gro-forwarding"]);

    let sinks: Vec<(&Netns, Pid)> = receivers
        .iter()
        .map(|&ns| {
            let args = [
                "udpblast",
                "sink",
                "--listen",
                "0.0.0.0:9000",
                "--duration",
                "8",
                "--idle",
                "2",
            ];
            let pid = ns.spawn("sink", TUNLB, &args);
            wait_until(&format!("the sink in {}", ns.name()), STARTUP, || {
                ns.log(pid).contains("listening on")
            });
            (ns, pid)
        })
        .collect();

    let sent = client.tunlb(&[
        "udpblast",
        "send",
        "--to",
        service,
        "--size",
        "1200",
        "--flows",
        "1",
        "--max-packets",
        &SENT.to_string(),
        "--duration",
        "5",
        "--rate",
        "10000",
        "--batch",
        "32",
    ]);
    assert_eq!(json_u64(&sent, "packets"), SENT, "sent: {sent}");

    let (mut received, mut corrupt) = (0, 0);
    for (ns, pid) in sinks {
        let (status, out) = ns.wait_exit(pid, Duration::from_secs(20));
        assert!(status.success(), "sink in {}: {out}", ns.name());
        let line = out
            .lines()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("no JSON line from the sink in {}: {out}", ns.name()));
        received += json_u64(line, "packets");
        corrupt += json_u64(line, "corrupt");
    }
    assert_eq!(corrupt, 0, "datagrams changed on the way");
    let page = scrape_metrics(director, metrics, &[]);
    let whole = metric_value(&page, "tunlb_gso_packets_total", &["path=\"whole\""]);
    assert!(
        whole > 0,
        "no UDP train reached the director whole:\n{page}"
    );
    // Paced at 10k datagrams/s in bursts of 32, nothing should be lost; a loaded machine may
    // still overrun a queue on the way (the TUN's, a socket's), so 1% is tolerated.
    let director_lost: Vec<&str> = page
        .lines()
        .filter(|l| {
            (l.starts_with("tunlb_drops_total") || l.starts_with("tunlb_encap_errors_total"))
                && !l.ends_with(" 0")
        })
        .collect();
    assert!(
        received * 100 >= SENT * 99,
        "{received} of {SENT} datagrams arrived ({whole} trains decided whole); the director's \
         drops and send errors: {director_lost:?}; its TUN:\n{}",
        director.ip("-s link show tunlb0")
    );
    eprintln!("{received} of {SENT} datagrams arrived, {whole} trains decided whole");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness itself, without the director: the topology comes up, every real server's
    /// httpd answers the client directly on its RIP, an nftables counter sees the replies, and
    /// every namespace is gone after drop.
    #[test]
    fn harness_self_test_topology_routes_and_cleanup() {
        let names;
        {
            let lab = tun_lab::build();
            names = lab.names();
            // Count what the client receives from the real servers' port 80.
            lab.ns("client").nft(
                "table inet tlbtest {
                    counter from_rs {}
                    chain in_count { type filter hook input priority 0; policy accept;
                        ip saddr 10.3.0.0/24 tcp sport 80 counter name \"from_rs\"
                    }
                }",
            );
            let listed = netns_list();
            for name in &names {
                assert!(listed.contains(name), "{name} missing from `ip netns list`");
            }
            for (role, rip) in [("rs1", tun_lab::RS1), ("rs2", tun_lab::RS2)] {
                let ns = lab.ns(role);
                let banner = format!("from {rip}");
                let pid = start_httpd(ns, &format!("{rip}:80"), &banner, &[]);
                let url = format!("http://{rip}/");
                let client = lab.ns("client");
                let body = client.exec("curl", &["-s", "--max-time", "5", &url]);
                assert_eq!(body, format!("{banner}\n"), "client -> {url}");
                // The reply came back through the router to the client's own address.
                let whoami = format!("http://{rip}/whoami");
                let body = client.exec("curl", &["-s", "--max-time", "5", &whoami]);
                assert!(
                    body.contains(&format!("client {}:", tun_lab::CLIENT)),
                    "{body}"
                );
                // Stopping one process leaves the namespace and the others running.
                ns.stop(pid);
                let out = client.try_exec("curl", &["-s", "--max-time", "2", &url]);
                assert!(!out.status.success(), "{url} still answers after stop");
            }
            let replies = lab.ns("client").nft_counter("tlbtest", "from_rs");
            assert!(
                replies >= 8,
                "the client counted {replies} packets from the real servers"
            );
        }
        let listed = netns_list();
        for name in &names {
            assert!(!listed.contains(name), "{name} still exists after drop");
        }
    }
}
