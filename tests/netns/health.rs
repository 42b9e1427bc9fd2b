//! Health checks in the [`tun_lab`]: the seed's keepalived steps 7.3 (a real server's service
//! stops, the director takes it out) and 7.4 (it is repaired, the director puts it back), with
//! the checks in the director's TOML config (`[service.real_server.check]`, HTTP_GET on `/`).
//!
//! Each real server runs an agent and one httpd on both its RIP (what the check probes) and
//! the hidden VIP (what clients reach through the tunnel), answering "from rs1" / "from rs2".
//! While the test stops and restarts rs1's httpd, a background thread keeps sending requests
//! (`Connection: close`, one connection each) and records when each started and what answered.
//!
//! The same with rs1's agent stopped instead while its httpd runs on (a DSR black hole: the
//! tunnel is no longer decapsulated and the VIP leaves rs1's `lo`, but the RIP still answers):
//! with `check_through_tunnel` the checks probe the VIP through the director's own data path
//! and catch it; without it they probe the RIP and do not (why the option exists).

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::tun_lab::{self, DIRECTOR, RS1, RS2, VIP};
use crate::harness::{
    adm, dr_lab, start_agent, start_director, start_dr_agent, start_httpd, wait_until, Netns, Pid,
    TempPath, Topology,
};

/// The checks' settings, in seconds (the brief's keepalived values).
pub(crate) const CONNECT_TIMEOUT: u64 = 1;
pub(crate) const RETRY: u64 = 1;
pub(crate) const DELAY_BEFORE_RETRY: u64 = 1;
pub(crate) const DELAY_LOOP: u64 = 1;

/// The longest a failed server may stay in the table: every try times out
/// (`connect_timeout × (retry + 1)`), the pauses between them (`delay_before_retry × retry`),
/// one second of slack, and up to one `delay_loop` before the first failed check starts.
pub(crate) const DETECT: Duration = Duration::from_secs(
    CONNECT_TIMEOUT * (RETRY + 1) + DELAY_BEFORE_RETRY * RETRY + 1 + DELAY_LOOP,
);

/// The real servers: namespace role and RIP.
const REAL_SERVERS: [(&str, &str); 2] = [("rs1", RS1), ("rs2", RS2)];

/// The director's config: VIP:80, rr, both real servers over IPIP, each with an HTTP_GET check.
fn config(inhibit_on_failure: bool) -> String {
    config_checking(inhibit_on_failure, &["rs1", "rs2"], false)
}

/// The director's config: VIP:80, rr, both real servers over IPIP; those whose role is in
/// `checked` have an HTTP_GET check, through the tunnel with `through`.
fn config_checking(inhibit_on_failure: bool, checked: &[&str], through: bool) -> String {
    let mut text = service_head("");
    for (role, rip) in REAL_SERVERS {
        text.push_str(&format!(
            "\n  [[service.real_server]]\n\
             \x20 address = \"{rip}\"\n\
             \x20 tun_type = \"ipip\"\n"
        ));
        if !checked.contains(&role) {
            continue;
        }
        text.push_str(&format!(
            "\x20 inhibit_on_failure = {inhibit_on_failure}\n{}",
            http_check(&format!(
                "status_code = 200\n\x20 check_through_tunnel = {through}\n"
            ))
        ));
    }
    text
}

/// The lab with the director (started from `config`), both agents and both httpds running.
struct Lab {
    topo: Topology,
    /// The director's config file (removed on drop).
    config: TempPath,
    /// The director.
    director: Pid,
    /// The httpd of rs1 (the one the test stops and starts).
    rs1_httpd: Pid,
    /// The agent of rs1 (the other one the test stops and starts).
    rs1_agent: Pid,
}

impl Lab {
    fn start(config_text: &str) -> Lab {
        let topo = tun_lab::build();
        let mut httpds = Vec::new();
        let mut agents = Vec::new();
        for (role, rip) in REAL_SERVERS {
            let ns = topo.ns(role);
            agents.push(start_rs_agent(ns));
            httpds.push(start_rs_httpd(ns, role, rip));
        }
        let director = topo.ns("director");
        // Strict reverse-path filtering, as many hosts have it: the answers to probes through
        // the tunnel (from the VIP, which the director routes into its TUN) need it loosened.
        for conf in ["all", "eth0"] {
            director.sysctl(&format!("net.ipv4.conf.{conf}.rp_filter"), "1");
        }
        let file = TempPath::new(&format!("{}-health.toml", director.name()));
        std::fs::write(file.path(), config_text).expect("write the config");
        let pid = start_director(director, &["--config", &file.arg()]);
        Lab {
            topo,
            config: file,
            director: pid,
            rs1_httpd: httpds[0],
            rs1_agent: agents[0],
        }
    }

    fn ns(&self, role: &str) -> &Netns {
        self.topo.ns(role)
    }

    /// The weight `adm -L -n` shows for `rip`, or `None` when it is not listed.
    fn weight(&self, rip: &str) -> Option<u32> {
        weight_in(self.ns("director"), rip)
    }

    /// `n` requests from the client, each on a new connection; the answers (`None` = failed).
    fn get_many(&self, n: usize) -> Vec<Option<String>> {
        (0..n).map(|_| get(self.ns("client"))).collect()
    }
}

/// The weight `adm -L -n` in `director` shows for `rip`, or `None` when it is not listed.
pub(crate) fn weight_in(director: &Netns, rip: &str) -> Option<u32> {
    let prefix = format!("{rip}:80");
    adm(director, "-L -n").lines().find_map(|line| {
        let mut cols = line.strip_prefix("  -> ")?.split_whitespace();
        (cols.next()? == prefix).then_some(())?;
        cols.nth(1)?.parse().ok()
    })
}

/// Starts the agent of a real server (IPIP from the director).
fn start_rs_agent(ns: &Netns) -> Pid {
    start_agent(ns, VIP, "ipip", &format!("{DIRECTOR}/32"))
}

/// Starts an httpd on `rip:80` and `VIP:80` answering "from `role`".
fn start_rs_httpd(ns: &Netns, role: &str, rip: &str) -> Pid {
    let vip = format!("{VIP}:80");
    start_httpd(
        ns,
        &format!("{rip}:80"),
        &format!("from {role}"),
        &["--listen", &vip],
    )
}

/// One request from the client to the VIP on a new connection; the banner, or `None`.
pub(crate) fn get(client: &Netns) -> Option<String> {
    attempt(client).ok()
}

/// One request from the client to the VIP on a new connection: the banner, or why it failed
/// (curl's exit code and message, and how long it took: 7 is a refused connection, 28 a timeout).
fn attempt(client: &Netns) -> Result<String, String> {
    let url = format!("http://{VIP}/");
    let started = Instant::now();
    let out = client.try_exec(
        "curl",
        &[
            "-sS",
            "-f",
            "--max-time",
            "2",
            "-H",
            "Connection: close",
            &url,
        ],
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    } else {
        Err(format!(
            "{} after {:?}: {}",
            out.status,
            started.elapsed(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}

/// One request of the background load: when curl was started, when it ended, and what
/// answered (or why none did). Starting curl in the namespace can take a while on a loaded
/// machine, so a request belongs to a window only if it started and ended inside it.
type Sample = (Instant, Instant, Result<String, String>);

/// What goes wrong on rs1.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// Its httpd stops.
    Httpd,
    /// Its agent stops, its httpd runs on: a DSR black hole.
    Agent,
}

/// The seed's 7.3 and 7.4 under load. With `inhibit_on_failure` rs1 stays listed with weight 0
/// while it is down instead of leaving the table. `config_text` is the director's config.
fn failed_server_leaves_and_comes_back(inhibit: bool, fault: Fault, config_text: &str) {
    let lab = Lab::start(config_text);
    for (_, rip) in REAL_SERVERS {
        assert_eq!(
            lab.weight(rip),
            Some(1),
            "{rip} is not listed with weight 1"
        );
    }
    let mut answers: Vec<String> = lab.get_many(2).into_iter().flatten().collect();
    answers.sort();
    assert_eq!(answers, ["from rs1", "from rs2"], "rr over both at start");

    let stop = AtomicBool::new(false);
    let (stopped_at, left_at, restarted_at, back_at, samples) = thread::scope(|s| {
        let load = s.spawn(|| {
            let mut samples: Vec<Sample> = Vec::new();
            // Bounded: at most 2 s per request, and the test takes well under 2000 of them.
            for _ in 0..2000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let started = Instant::now();
                let answer = attempt(lab.ns("client"));
                samples.push((started, Instant::now(), answer));
            }
            samples
        });
        thread::sleep(Duration::from_millis(500));

        // 7.3: rs1's service (or its agent) stops; the checker takes rs1 out (or to weight 0).
        let rs1 = lab.ns("rs1");
        let stopped_at = Instant::now();
        match fault {
            Fault::Httpd => rs1.stop(lab.rs1_httpd),
            Fault::Agent => rs1.stop(lab.rs1_agent),
        }
        let gone = |w: Option<u32>| if inhibit { w == Some(0) } else { w.is_none() };
        wait_until("rs1 to leave the table", DETECT * 2, || {
            gone(lab.weight(RS1))
        });
        let left_at = Instant::now();
        let took = left_at - stopped_at;
        eprintln!("rs1 left the table {took:?} after its {fault:?} stopped");
        assert!(
            took <= DETECT,
            "rs1 left after {took:?}, more than {DETECT:?}"
        );
        assert_eq!(lab.weight(RS2), Some(1));
        if fault == Fault::Agent {
            let rp = lab
                .ns("director")
                .read_sysctl("net.ipv4.conf.eth0.rp_filter");
            assert_eq!(rp.trim(), "2", "the director loosened rp_filter on eth0");
        }
        for answer in lab.get_many(6) {
            assert_eq!(answer.as_deref(), Some("from rs2"), "while rs1 is down");
        }

        // 7.4: rs1's service is repaired; the checker puts it back. Before that, the load
        // must send requests while rs1 is out: a request that went into the black hole before
        // rs1 left holds the load thread until curl's 2 s limit.
        thread::sleep(match fault {
            Fault::Httpd => Duration::from_millis(500),
            Fault::Agent => Duration::from_millis(2500),
        });
        let restarted_at = Instant::now();
        match fault {
            Fault::Httpd => drop(start_rs_httpd(rs1, "rs1", RS1)),
            Fault::Agent => drop(start_rs_agent(rs1)),
        }
        wait_until("rs1 to be back in the table", DETECT * 2, || {
            lab.weight(RS1) == Some(1)
        });
        let back_at = Instant::now();
        eprintln!(
            "rs1 back {:?} after its {fault:?} restarted",
            back_at - restarted_at
        );
        // rr alternates, but the background load interleaves: look at rs1's share below.
        for answer in lab.get_many(4) {
            assert!(answer.is_some(), "a request failed after rs1 came back");
        }
        thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        let samples = load.join().expect("the load thread panicked");
        (stopped_at, left_at, restarted_at, back_at, samples)
    });

    let ok = samples.iter().filter(|(_, _, a)| a.is_ok()).count();
    eprintln!("background load: {} requests, {ok} answered", samples.len());
    let in_window = |from: Instant, to: Instant| {
        samples
            .iter()
            .filter(move |(start, end, _)| *start >= from && *end <= to)
            .map(|(_, _, a)| a.as_deref().ok())
    };
    // Why each failed request of a window failed, for the assertion messages.
    let failures = |from: Instant, to: Instant| {
        samples
            .iter()
            .filter(|(start, end, a)| *start >= from && *end <= to && a.is_err())
            .map(|(start, _, a)| format!("at +{:?}: {a:?}", *start - stopped_at))
            .collect::<Vec<_>>()
    };
    assert!(
        in_window(stopped_at - Duration::from_secs(1), stopped_at).any(|a| a == Some("from rs1")),
        "rs1 answered no background request before it stopped"
    );
    let while_out: Vec<_> = in_window(left_at, restarted_at).collect();
    assert!(
        !while_out.is_empty(),
        "no background request while rs1 was out"
    );
    assert!(
        while_out.iter().all(|a| *a == Some("from rs2")),
        "a request after rs1 left went elsewhere than rs2: {while_out:?}; failures: {:?}",
        failures(left_at, restarted_at)
    );
    let after: Vec<_> = in_window(back_at, Instant::now()).collect();
    assert!(
        after.iter().all(Option::is_some),
        "a background request failed after rs1 came back: {after:?}; failures: {:?}",
        failures(back_at, Instant::now())
    );
    assert!(
        after.contains(&Some("from rs1")),
        "rs1 answered no background request after it came back: {after:?}"
    );
}

/// 7.3 / 7.4: a real server whose HTTP check fails leaves the table and no new request goes to
/// it; when the check passes again it is listed again and receives requests.
#[test]
fn failed_server_is_removed_and_comes_back() {
    failed_server_leaves_and_comes_back(false, Fault::Httpd, &config(false));
}

/// The same with `inhibit_on_failure = true`: the failed server stays listed with weight 0.
#[test]
fn inhibit_on_failure_sets_weight_zero_and_restores_it() {
    failed_server_leaves_and_comes_back(true, Fault::Httpd, &config(true));
}

/// 7.3 / 7.4 with rs1's agent stopped while its httpd still runs (a DSR black hole) and the
/// checks going through the tunnel: rs1 leaves the table in time and comes back with its agent.
/// The director loosened the strict rp_filter the answers to its probes would have hit.
#[test]
fn agent_black_hole_is_caught_by_checks_through_the_tunnel() {
    let text = config_checking(false, &["rs1", "rs2"], true);
    failed_server_leaves_and_comes_back(false, Fault::Agent, &text);
}

/// Why `check_through_tunnel` exists: the same black hole with checks on the RIP goes unseen.
/// rs1 stays listed with weight 1 and the requests scheduled to it fail.
#[test]
fn agent_black_hole_is_missed_by_checks_on_the_real_address() {
    let lab = Lab::start(&config(false));
    lab.ns("rs1").stop(lab.rs1_agent);
    thread::sleep(DETECT);
    assert_eq!(lab.weight(RS1), Some(1), "the direct check saw nothing");
    let answers = lab.get_many(2);
    assert!(
        answers.contains(&None) && answers.contains(&Some("from rs2".into())),
        "rr: one request to the black hole fails, one reaches rs2: {answers:?}"
    );
}

/// A reload applies the new settings to the checkers: SIGHUP with `inhibit_on_failure` turned
/// on brings the failed rs1 back at weight 0 (its checker kept, still failing); `adm --reload`
/// without rs1's check stops its checker and puts it back at weight 1 (unchecked servers are
/// always up), though its httpd is still stopped.
#[test]
fn reload_applies_the_new_settings_to_the_checkers() {
    let lab = Lab::start(&config(false));
    let director = lab.ns("director");
    lab.ns("rs1").stop(lab.rs1_httpd);
    wait_until("rs1 to leave the table", DETECT * 2, || {
        lab.weight(RS1).is_none()
    });

    std::fs::write(lab.config.path(), config(true)).expect("write the config");
    director.signal(lab.director, "HUP");
    wait_until("rs1 to come back with weight 0", DETECT * 2, || {
        director.assert_running(lab.director);
        lab.weight(RS1) == Some(0)
    });
    assert_eq!(lab.weight(RS2), Some(1));

    std::fs::write(lab.config.path(), config_checking(true, &["rs2"], false)).expect("write");
    let out = adm(director, "--reload");
    assert!(out.starts_with("reloaded "), "{out}");
    wait_until("rs1 to be back with weight 1", DETECT * 2, || {
        lab.weight(RS1) == Some(1)
    });
    // rs2's check is unchanged: its checker (and its state) carried over the reloads.
    assert_eq!(lab.weight(RS2), Some(1));
    let log = director.log(lab.director);
    for line in [
        "new settings: checkers kept: 2 (2 updated), started: 0, restarted: 0, stopped: 0",
        "new settings: checkers kept: 1 (0 updated), started: 0, restarted: 0, stopped: 1",
    ] {
        assert_eq!(log.matches(line).count(), 1, "{line:?} once:\n{log}");
    }
    assert!(
        !log.contains("restarting the checkers"),
        "no reload restarts every checker:\n{log}"
    );
}

/// The soak's `adm --reload` every second, faster: reloads of the unchanged file every 300 ms
/// keep every checker with its state. rs1's failures count across them (it leaves the table
/// as fast as without reloads, though each reload comes before its check could fail twice),
/// it stays out while down and comes back when repaired; no checker is started, restarted
/// or stopped.
#[test]
fn frequent_reloads_of_an_unchanged_file_keep_the_checkers() {
    let lab = Lab::start(&config(false));
    let director = lab.ns("director");
    assert_eq!(lab.weight(RS1), Some(1));
    let stop = AtomicBool::new(false);
    let reloads = thread::scope(|s| {
        let reloader = s.spawn(|| {
            let mut n = 0;
            // Bounded: the test takes well under 200 reloads of 300 ms.
            while !stop.load(Ordering::SeqCst) && n < 200 {
                let out = adm(director, "--reload");
                assert!(out.starts_with("reloaded "), "reload {n}: {out}");
                n += 1;
                thread::sleep(Duration::from_millis(300));
            }
            n
        });
        thread::sleep(Duration::from_secs(1));
        let stopped_at = Instant::now();
        lab.ns("rs1").stop(lab.rs1_httpd);
        wait_until("rs1 to leave the table", DETECT * 2, || {
            lab.weight(RS1).is_none()
        });
        let took = stopped_at.elapsed();
        eprintln!("rs1 left the table {took:?} after its httpd stopped, reloads every 300 ms");
        assert!(
            took <= DETECT,
            "rs1 left after {took:?}, more than {DETECT:?}"
        );
        for _ in 0..10 {
            thread::sleep(Duration::from_millis(300));
            assert_eq!(lab.weight(RS1), None, "rs1 stays out while down");
        }
        let _httpd = start_rs_httpd(lab.ns("rs1"), "rs1", RS1);
        wait_until("rs1 to be back in the table", DETECT * 2, || {
            lab.weight(RS1) == Some(1)
        });
        assert_eq!(lab.weight(RS2), Some(1));
        stop.store(true, Ordering::SeqCst);
        reloader.join().expect("the reload thread panicked")
    });
    eprintln!("{reloads} reloads");
    assert!(reloads >= 10, "only {reloads} reloads");
    let log = director.log(lab.director);
    for said in [
        "checker started",
        "checker stopped",
        "new checker",
        "restarting",
    ] {
        assert!(!log.contains(said), "{said:?} in the log:\n{log}");
    }
}

/// DR mode ([`dr_lab`]: one LAN): TCP checks through the tunnel reach each real server as a
/// frame to its MAC, pinned, so both stay listed; rs1's DR agent stopped (the VIP leaves its
/// `lo`, its httpd runs on) takes rs1 out, and it comes back with its agent.
#[test]
fn dr_black_hole_is_caught_by_checks_through_the_tunnel() {
    let topo = dr_lab::build();
    let mut rs1_agent = None;
    for (role, rip) in [("rs1", dr_lab::RS1), ("rs2", dr_lab::RS2)] {
        let ns = topo.ns(role);
        let agent = start_dr_agent(ns, dr_lab::VIP);
        rs1_agent.get_or_insert(agent);
        start_httpd(
            ns,
            &format!("{}:80", dr_lab::VIP),
            &format!("from {rip}"),
            &[],
        );
    }
    let mut text = format!(
        "[director]\nqueues = 1\nannounce = [\"{}\"]\n\n[[service]]\nvip = \"{}\"\n\
         port = 80\nscheduler = \"rr\"\ndelay_loop = {DELAY_LOOP}\n",
        dr_lab::DIRECTOR_LAN_IF,
        dr_lab::VIP
    );
    for rip in [dr_lab::RS1, dr_lab::RS2] {
        text.push_str(&format!(
            "\n  [[service.real_server]]\n  address = \"{rip}\"\n  forward = \"dr\"\n\
             \x20 [service.real_server.check]\n  type = \"tcp\"\n\
             \x20 connect_timeout = {CONNECT_TIMEOUT}\n  retry = {RETRY}\n\
             \x20 delay_before_retry = {DELAY_BEFORE_RETRY}\n  warmup = 0\n\
             \x20 check_through_tunnel = true\n"
        ));
    }
    let director = topo.ns("director");
    let file = TempPath::new(&format!("{}-health-dr.toml", director.name()));
    std::fs::write(file.path(), text).expect("write the config");
    let pid = start_director(director, &["--config", &file.arg()]);
    let listed = |rip: &str| {
        let prefix = format!("{rip}:80");
        adm(director, "-L -n").lines().any(|l| {
            l.strip_prefix("  -> ")
                .is_some_and(|l| l.starts_with(&prefix))
        })
    };
    // Checks ran and passed (a failing one would have taken its server out by now).
    thread::sleep(DETECT);
    assert!(listed(dr_lab::RS1) && listed(dr_lab::RS2), "both up");

    let rs1 = topo.ns("rs1");
    let stopped_at = Instant::now();
    rs1.stop(rs1_agent.expect("rs1's agent"));
    wait_until("rs1 to leave the table", DETECT * 2, || {
        !listed(dr_lab::RS1)
    });
    let took = stopped_at.elapsed();
    assert!(
        took <= DETECT,
        "rs1 left after {took:?}, more than {DETECT:?}"
    );
    assert!(listed(dr_lab::RS2));

    start_dr_agent(rs1, dr_lab::VIP);
    wait_until("rs1 to be back", DETECT * 2, || listed(dr_lab::RS1));
    let log = director.log(pid);
    assert!(
        log.contains("through the tunnel to 192.168.150.12"),
        "{log}"
    );
}

/// The port rs1's checked service listens on in [`keep_alive_connection_survives_a_health_flap`]
/// (the traffic goes to the VIP's port 80).
const CHECKED_PORT: u16 = 8080;

/// Requests the keep-alive client sends, 4 a second: they outlast the flap.
const KEEP_ALIVE_REQUESTS: usize = 80;

/// The director's config for [`keep_alive_connection_survives_a_health_flap`]: VIP:80 over rs1
/// alone, checked on its port [`CHECKED_PORT`], with `expire_nodest_conn` as given.
fn flap_config(expire_nodest_conn: bool) -> String {
    format!(
        "{}\n\
         \x20 [[service.real_server]]\n\
         \x20 address = \"{RS1}\"\n\
         \x20 tun_type = \"ipip\"\n{}",
        service_head(&format!("expire_nodest_conn = {expire_nodest_conn}\n")),
        http_check(&format!("connect_port = {CHECKED_PORT}\n"))
    )
}

/// The start of the director configs here: the director, and the service VIP:80 (rr, checked
/// every [`DELAY_LOOP`]) with the further service keys `extra` (lines, each ending in `\n`).
fn service_head(extra: &str) -> String {
    format!(
        "# written by tests/netns/health.rs\n\
         [director]\n\
         queues = 1\n\
         local_address = \"{DIRECTOR}\"\n\
         \n\
         [[service]]\n\
         vip = \"{VIP}\"\n\
         port = 80\n\
         scheduler = \"rr\"\n\
         delay_loop = {DELAY_LOOP}\n\
         {extra}"
    )
}

/// A real server's HTTP_GET check on `/` with the tests' timing, plus the check keys `extra`
/// (indented like the rest: the first line as is, further lines after "\x20 ").
fn http_check(extra: &str) -> String {
    format!(
        "\x20 [service.real_server.check]\n\
         \x20 type = \"http_get\"\n\
         \x20 url = \"/\"\n\
         \x20 connect_timeout = {CONNECT_TIMEOUT}\n\
         \x20 retry = {RETRY}\n\
         \x20 delay_before_retry = {DELAY_BEFORE_RETRY}\n\
         \x20 warmup = 0\n\
         \x20 {extra}"
    )
}

/// `expire_nodest_conn = false`: a keep-alive connection survives a short health flap. rs1 is
/// the only real server; its check probes another service of its (`connect_port` 8080) than
/// the one the traffic uses (the VIP's port 80), so stopping the checked service takes rs1 out
/// of the table while the traffic's service runs on. While rs1 is out its flow is held (listed
/// by `adm -L -n -c` with its real server, its packets dropped); when the checked service is
/// back, so is rs1, and the client's connection goes on: every request is answered, over one
/// connection.
#[test]
fn keep_alive_connection_survives_a_health_flap() {
    health_flap(false);
}

/// The same flap with the default `expire_nodest_conn = true`: the flow is forgotten at its
/// next packet while rs1 is out, so the connection does not come back with rs1 (its packets
/// belong to no flow): the request in flight times out and curl needs a new connection.
#[test]
fn keep_alive_connection_is_lost_in_a_health_flap_by_default() {
    health_flap(true);
}

fn health_flap(expire_nodest_conn: bool) {
    let topo = tun_lab::build();
    let rs1 = topo.ns("rs1");
    start_rs_agent(rs1);
    start_httpd(rs1, &format!("{VIP}:80"), "from rs1", &[]);
    let checked = format!("{RS1}:{CHECKED_PORT}");
    let check_httpd = start_httpd(rs1, &checked, "checked", &[]);
    let director = topo.ns("director");
    let file = TempPath::new(&format!("{}-flap.toml", director.name()));
    std::fs::write(file.path(), flap_config(expire_nodest_conn)).expect("write the config");
    start_director(director, &["--config", &file.arg()]);
    wait_until("rs1 in the table", DETECT * 2, || {
        weight_in(director, RS1) == Some(1)
    });

    // One connection, a request every 250 ms; `num_connects` is 1 for the transfer that
    // opened it and 0 for each one that reused it. Lost, the connection stalls until
    // `--max-time`.
    let url = format!("http://{VIP}/");
    let max_time = if expire_nodest_conn { "10" } else { "30" };
    let mut args = vec![
        "-s",
        "--rate",
        "4/s",
        "--max-time",
        max_time,
        "-w",
        "connects %{num_connects}\\n",
    ];
    args.extend(std::iter::repeat_n(url.as_str(), KEEP_ALIVE_REQUESTS));
    let client = topo.ns("client");
    let curl = client.spawn("curl", "curl", &args);
    wait_until("the first answers", Duration::from_secs(5), || {
        client.log(curl).matches("from rs1").count() >= 2
    });

    // The checked service stops: rs1 leaves the table.
    rs1.stop(check_httpd);
    wait_until("rs1 to leave the table", DETECT * 2, || {
        weight_in(director, RS1).is_none()
    });
    let held = format!("{RS1}:80");
    let flow_listed = || {
        adm(director, "-L -n -c")
            .lines()
            .any(|l| l.contains("ESTABLISHED") && l.contains(&held))
    };
    if expire_nodest_conn {
        // Forgotten at its next packet (a request or a retransmission, well within 3 s).
        wait_until("the flow to be forgotten", Duration::from_secs(3), || {
            !adm(director, "-L -n -c").contains("ESTABLISHED")
        });
    } else {
        assert!(
            flow_listed(),
            "the held flow is listed with its real server:\n{}",
            adm(director, "-L -n -c")
        );
    }
    thread::sleep(Duration::from_secs(1));
    let answered = client.log(curl).matches("from rs1").count();
    thread::sleep(Duration::from_secs(1));
    assert_eq!(
        client.log(curl).matches("from rs1").count(),
        answered,
        "no answer while rs1 is out"
    );

    // Back: with the flow held, the same connection goes on.
    start_httpd(rs1, &checked, "checked", &[]);
    wait_until("rs1 back in the table", DETECT * 2, || {
        weight_in(director, RS1) == Some(1)
    });
    client.assert_running(curl);
    let (status, out) = client.wait_exit(curl, Duration::from_secs(90));
    let answers = out.matches("from rs1").count();
    let connects: u32 = out
        .lines()
        .filter_map(|l| l.strip_prefix("connects "))
        .map(|n| n.trim().parse::<u32>().expect("a number"))
        .sum();
    if expire_nodest_conn {
        // The stalled request times out (curl goes on with the next URL on a new connection).
        assert!(
            connects >= 2 || !status.success(),
            "the connection was lost ({status}, {connects} connects):\n{out}"
        );
        assert!(
            answers < KEEP_ALIVE_REQUESTS,
            "a request went unanswered:\n{out}"
        );
        return;
    }
    assert!(status.success(), "curl failed ({status}):\n{out}");
    assert_eq!(
        answers, KEEP_ALIVE_REQUESTS,
        "every request answered:\n{out}"
    );
    assert_eq!(connects, 1, "all requests over one connection:\n{out}");
}
