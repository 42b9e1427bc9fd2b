//! The seed's walkthrough (section 6, "LVS (ipvs搭建)") as written, with `tunlb adm` in place of
//! ipvsadm, in the [`tun_lab`] topology; then what an operator does next with a running table:
//! save it (`-S`, `--save-config`), restore it (`-R`, `--config`), reload the config file
//! (`--reload`), and change it while connections are running.
//!
//! Every load is bounded in count (a fixed number of connections) and in time (curl's
//! `--max-time`, and `wait_until` deadlines).

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use tunlb::lab::httpd::{blob_sha256, sha256_hex};

use crate::harness::tun_lab::{self, CLIENT, DIRECTOR, RS1, RS2, VIP};
use crate::harness::{
    adm, start_agent, start_director, start_httpd, wait_until, Netns, Pid, TempPath, Topology,
    STARTUP, TUNLB,
};

/// The real servers of the lab: namespace role and address.
const REAL_SERVERS: [(&str, &str); 2] = [("rs1", RS1), ("rs2", RS2)];

/// The first three lines of `ipvsadm -L -n`.
const LN_HEADER: &str = "IP Virtual Server version 1.2.1 (size=4096)\n\
                         Prot LocalAddress:Port Scheduler Flags\n  \
                         -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";

/// The first two lines of `ipvsadm -L -n -c`.
const LNC_HEADER: &str = "IPVS connection entries\n\
                          pro expire state       source             virtual            destination\n";

/// One real server line of `-L -n`: address, weight, ActiveConn, InActConn.
type Row<'a> = (&'a str, u32, u32, u32);

/// What `ipvsadm -L -n` prints for the service VIP:80 with `sched` and tunnel servers `rows`:
/// ipvsadm 1.31's `"  -> %-28s %-7s %-6d %-10u %-10u\n"` for each real server.
fn ln(sched: &str, rows: &[Row]) -> String {
    let mut text = format!("{LN_HEADER}TCP  {VIP}:80 {sched}\n");
    for (rip, weight, active, inactive) in rows {
        text.push_str(&format!(
            "  -> {:<28} {:<7} {:<6} {:<10} {:<10}\n",
            format!("{rip}:80"),
            "Tunnel",
            weight,
            active,
            inactive
        ));
    }
    text
}

/// The lab with the director and, on both real servers, an IPIP agent and an httpd on VIP:80
/// answering "from RIP".
fn start_lab(director_args: &[&str]) -> Topology {
    let lab = tun_lab::build();
    for (role, rip) in REAL_SERVERS {
        let ns = lab.ns(role);
        start_agent(ns, VIP, "ipip", &format!("{DIRECTOR}/32"));
        start_httpd(ns, &format!("{VIP}:80"), &format!("from {rip}"), &[]);
    }
    start_director(lab.ns("director"), director_args);
    lab
}

/// Runs `tunlb adm <args>` in `ns` whatever its exit status.
fn try_adm(ns: &Netns, args: &str) -> Output {
    eprintln!("tunlb adm {args}");
    let mut full = vec!["adm"];
    full.extend(args.split_whitespace());
    ns.try_exec(TUNLB, &full)
}

/// One `-L -n -c` entry, split into its columns.
#[derive(Debug)]
struct Conn {
    line: String,
    expire_secs: u32,
    state: String,
    client: String,
    virt: String,
    dest: String,
}

/// The entries of `-L -n -c` output, after checking its two header lines and that every line
/// has ipvsadm's `"%-3s %-6s %-11s %-18s %-18s %s\n"` layout.
fn conns(out: &str) -> Vec<Conn> {
    let body = out
        .strip_prefix(LNC_HEADER)
        .unwrap_or_else(|| panic!("-lnc must start with ipvsadm's header:\n{out}"));
    body.lines()
        .map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let [proto, expire, state, client, virt, dest] = cols[..] else {
                panic!("not a connection entry: {line:?}");
            };
            let relaid =
                format!("{proto:<3} {expire:<6} {state:<11} {client:<18} {virt:<18} {dest}");
            assert_eq!(line, relaid, "column widths of {line:?}");
            assert_eq!(proto, "TCP", "{line}");
            let (min, sec) = expire.split_once(':').expect("mm:ss");
            let expire_secs =
                min.parse::<u32>().expect("minutes") * 60 + sec.parse::<u32>().expect("seconds");
            Conn {
                line: line.to_owned(),
                expire_secs,
                state: state.to_owned(),
                client: client.to_owned(),
                virt: virt.to_owned(),
                dest: dest.to_owned(),
            }
        })
        .collect()
}

/// `n` HTTP requests from the client to the VIP, each on its own connection (`Connection:
/// close`), in one curl run that stops at the first failure. Returns, per request, the client
/// port curl used and the banner of the server that answered.
fn requests(client: &Netns, n: usize) -> Vec<(u16, String)> {
    let url = format!("http://{VIP}/");
    let mut args = vec!["-s", "-f", "--fail-early", "--max-time", "5"];
    args.extend(["-H", "Connection: close", "-w", "port %{local_port}\\n"]);
    args.extend(std::iter::repeat_n(url.as_str(), n));
    let out = client.try_exec("curl", &args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let answers: Vec<(u16, String)> = lines
        .chunks(2)
        .filter_map(|pair| match pair {
            [banner, port] => Some((
                port.strip_prefix("port ")?.parse().ok()?,
                banner.to_string(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(answers.len(), n, "{n} requests, answers:\n{text}");
    answers
}

/// A keep-alive client in the background: one curl fetching `count` URLs over one connection,
/// paced with `--rate` so the connection stays open for a while.
///
/// (Pacing by request rate rather than `--limit-rate`: the curl of Debian 12, 7.88.1, was
/// measured not to honour `--limit-rate` on fast links, finishing a 2 MB download at "400k" in
/// 10 ms.)
struct KeepAlive {
    pid: Pid,
    /// Every response head, in order (`-D`).
    headers: TempPath,
    /// The body of request `n` (1-based) is `bodies[n - 1]`.
    bodies: Vec<TempPath>,
}

/// Starts `k` [`KeepAlive`] clients, each fetching `http://VIP<path>` `count` times at `rate`
/// (curl's `N/s`), bounded by `max_time` seconds; a connection that moves no byte for 4 s is
/// given up. Each transfer prints `NUM_CONNECTS LOCAL_PORT` to the client's log.
fn keep_alive_clients(
    client: &Netns,
    k: usize,
    path: &str,
    count: usize,
    rate: &str,
    max_time: &str,
) -> Vec<KeepAlive> {
    // The query string makes curl's URL glob; the httpd ignores it.
    let url = format!("http://{VIP}{path}?[1-{count}]");
    (0..k)
        .map(|i| {
            let stem = format!("{}-ka{i}", client.name());
            let headers = TempPath::new(&format!("{stem}.headers"));
            let bodies: Vec<TempPath> = (1..=count)
                .map(|n| TempPath::new(&format!("{stem}.body_{n}")))
                .collect();
            let h = headers.arg();
            // curl names the outputs `..._1`, `..._2`, ... after the glob.
            let first = bodies[0].arg();
            let out = format!("{}#1", first.strip_suffix('1').unwrap_or(&first));
            let args = [
                "-s",
                "-S",
                "-f",
                "--fail-early",
                "--rate",
                rate,
                "--max-time",
                max_time,
                "--speed-limit",
                "1",
                "--speed-time",
                "4",
                "-D",
                &h,
                "-o",
                &out,
                "-w",
                "%{num_connects} %{local_port}\\n",
                &url,
            ];
            let pid = client.spawn(&format!("curl{i}"), "curl", &args);
            KeepAlive {
                pid,
                headers,
                bodies,
            }
        })
        .collect()
}

/// The banners in the `X-Served-By` headers of the saved response heads, in order.
fn served_by(headers: &TempPath) -> Vec<String> {
    let text = std::fs::read_to_string(headers.path()).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix("X-Served-By: "))
        .map(|v| v.trim_end().to_owned())
        .collect()
}

/// The `NUM_CONNECTS LOCAL_PORT` lines a [`KeepAlive`] client printed.
fn transfers(log: &str) -> Vec<(u32, u16)> {
    log.lines()
        .filter_map(|l| {
            let (n, port) = l.split_once(' ')?;
            Some((n.parse().ok()?, port.parse().ok()?))
        })
        .collect()
}

/// Section 6 of the seed, command for command, with `tunlb adm` for ipvsadm and the lab's VIP
/// and real servers. The seed adds its real servers with `-g` (direct routing); tunlb forwards in
/// TUN mode for now (DR comes later), so they are added with `-i --tun-type ipip`.
///
/// `-ln` after the setup, `-lnc` after 10 closed connections (one entry per connection, in the
/// state IPVS's input-only table leaves a closed flow in), `-ln` again with InActConn matching
/// the traffic, and `-ln` while 4 long downloads run (ActiveConn 2 per server).
#[test]
fn seed_section_6_sequence() {
    const N: u32 = 10;
    const K: u32 = 4;
    let lab = start_lab(&["--local-address", DIRECTOR]);
    let (director, client) = (lab.ns("director"), lab.ns("client"));

    // ipvsadm -A -t 192.168.150.100:80 -s rr
    adm(director, &format!("-A -t {VIP}:80 -s rr"));
    // ipvsadm -a -t 192.168.150.100:80 -r 192.168.150.12 -g -w 1 (and .13), here in TUN mode.
    for rip in [RS1, RS2] {
        adm(
            director,
            &format!("-a -t {VIP}:80 -r {rip} -i -w 1 --tun-type ipip"),
        );
    }
    // ipvsadm -ln
    assert_eq!(
        adm(director, "-ln"),
        ln("rr", &[(RS1, 1, 0, 0), (RS2, 1, 0, 0)])
    );

    // The browser: N page loads, each on a new connection that the server closes.
    let answers = requests(client, N as usize);
    let mut by_port: BTreeMap<u16, String> = BTreeMap::new();
    for (port, banner) in &answers {
        by_port.insert(*port, banner.clone());
    }
    assert_eq!(
        by_port.len(),
        N as usize,
        "client ports repeat: {answers:?}"
    );
    for pair in answers.windows(2) {
        assert_ne!(pair[0].1, pair[1].1, "rr must alternate: {answers:?}");
    }

    // ipvsadm -lnc: every connection, closed from the director's point of view. The director
    // sees only the client's packets (IPVS's input-only table): after the client's FIN the
    // flow is in FIN_WAIT, which lasts the tcpfin timeout (120 s).
    let mut listing = String::new();
    wait_until(
        "the closed connections to leave ESTABLISHED",
        STARTUP,
        || {
            listing = adm(director, "-lnc");
            let entries = conns(&listing);
            entries.len() == N as usize && entries.iter().all(|c| c.state != "ESTABLISHED")
        },
    );
    eprintln!("{listing}");
    for c in conns(&listing) {
        assert_eq!(c.state, "FIN_WAIT", "{}", c.line);
        assert!(
            (100..=120).contains(&c.expire_secs),
            "FIN_WAIT expires after tcpfin (120 s): {}",
            c.line
        );
        assert_eq!(c.virt, format!("{VIP}:80"), "{}", c.line);
        let (addr, port) = c.client.split_once(':').expect("addr:port");
        assert_eq!(addr, CLIENT, "{}", c.line);
        let port: u16 = port.parse().expect("client port");
        let banner = by_port
            .remove(&port)
            .unwrap_or_else(|| panic!("no request used client port {port}: {}", c.line));
        assert_eq!(banner, format!("from {}", c.dest.trim_end_matches(":80")));
    }
    assert!(
        by_port.is_empty(),
        "connections missing from -lnc: {by_port:?}"
    );

    // ipvsadm -ln: the closed connections are inactive, N/2 per server.
    assert_eq!(
        adm(director, "-ln"),
        ln("rr", &[(RS1, 1, 0, N / 2), (RS2, 1, 0, N / 2)])
    );

    // K connections that stay open: keep-alive clients asking for the page twice a second,
    // K/2 per server under rr.
    let clients = keep_alive_clients(client, K as usize, "/", 60, "2/s", "40");
    let active = ln("rr", &[(RS1, 1, K / 2, N / 2), (RS2, 1, K / 2, N / 2)]);
    wait_until("ActiveConn to count the open connections", STARTUP, || {
        adm(director, "-ln") == active
    });
    let open = conns(&adm(director, "-lnc"));
    let established: Vec<&Conn> = open.iter().filter(|c| c.state == "ESTABLISHED").collect();
    assert_eq!(established.len(), K as usize, "{open:#?}");
    for (_, rip) in REAL_SERVERS {
        let to_rip = established
            .iter()
            .filter(|c| c.dest == format!("{rip}:80"))
            .count();
        assert_eq!(to_rip, (K / 2) as usize, "{open:#?}");
    }
    for c in &clients {
        client.assert_running(c.pid);
        client.stop(c.pid);
    }
    // The clients close their connections: nothing stays active.
    wait_until("ActiveConn to drop to 0", STARTUP, || {
        let text = adm(director, "-ln");
        text.lines()
            .filter(|l| l.starts_with("  -> 10."))
            .all(|l| l.split_whitespace().nth(4) == Some("0"))
    });
}

/// The config file the save/reload tests start the director with: the lab's VIP over both real
/// servers (RS1 with weight `w1`), with `scheduler`.
fn lab_config(scheduler: &str, w1: u32) -> String {
    format!(
        "# tunlb director config written by seed_walkthrough.rs\n\
         [director]\n\
         queues = 1\n\
         local_address = \"{DIRECTOR}\"\n\
         \n\
         [timeouts]\n\
         tcp = 600\n\
         \n\
         [[service]]\n\
         vip = \"{VIP}\"\n\
         port = 80\n\
         scheduler = \"{scheduler}\"\n\
         \n  \
           [[service.real_server]]\n  \
           address = \"{RS1}\"\n  \
           weight = {w1}\n\
         \n  \
           [[service.real_server]]\n  \
           address = \"{RS2}\"\n  \
           tun_type = \"gre\"\n"
    )
}

/// What `--save-config` writes for [`lab_config`]`("wrr", 3)` on a director started with it.
fn saved_lab_config() -> String {
    format!(
        "[director]\n\
         queues = 1\n\
         tun_name = \"tunlb0\"\n\
         tunnel_mtu = 1500\n\
         local_address = \"{DIRECTOR}\"\n\
         \n\
         [timeouts]\n\
         tcp = 600\n\
         tcpfin = 120\n\
         udp = 300\n\
         \n\
         [[service]]\n\
         vip = \"{VIP}\"\n\
         port = 80\n\
         protocol = \"tcp\"\n\
         scheduler = \"wrr\"\n\
         \n  \
           [[service.real_server]]\n  \
           address = \"{RS1}\"\n  \
           port = 80\n  \
           weight = 3\n  \
           forward = \"tunnel\"\n  \
           tun_type = \"ipip\"\n\
         \n  \
           [[service.real_server]]\n  \
           address = \"{RS2}\"\n  \
           port = 80\n  \
           weight = 1\n  \
           forward = \"tunnel\"\n  \
           tun_type = \"gre\"\n"
    )
}

/// `-S -n`, `-C`, `-R` give back the table the config file made, byte for byte; and
/// `--save-config` writes a file from which a second director, in a fresh lab, builds the same
/// table.
#[test]
fn save_config_round_trip() {
    let lab = tun_lab::build();
    let director = lab.ns("director");
    let file = TempPath::new(&format!("{}-director.toml", director.name()));
    std::fs::write(file.path(), lab_config("wrr", 3)).expect("write the config");
    start_director(director, &["--config", &file.arg()]);

    let first = adm(director, "-ln");
    let table = ln("wrr", &[(RS1, 3, 0, 0), (RS2, 1, 0, 0)]);
    assert_eq!(first, table);
    let saved = adm(director, "-S -n");
    assert_eq!(
        saved,
        format!(
            "-A -t {VIP}:80 -s wrr\n\
             -a -t {VIP}:80 -r {RS1}:80 -i -w 3 --tun-type ipip\n\
             -a -t {VIP}:80 -r {RS2}:80 -i -w 1 --tun-type gre --tun-nocsum\n"
        )
    );
    let rules = TempPath::new(&format!("{}-rules", director.name()));
    std::fs::write(rules.path(), &saved).expect("write the rules");
    adm(director, "-C");
    assert_eq!(adm(director, "-ln"), LN_HEADER);
    let restore = format!("{TUNLB} adm -R < {}", rules.arg());
    director.exec("sh", &["-c", &restore]);
    assert_eq!(adm(director, "-ln"), first);

    // --save-config: the running table and settings as the director's config.
    let f2 = TempPath::new(&format!("{}-saved.toml", director.name()));
    let out = adm(director, &format!("--save-config {}", f2.arg()));
    assert_eq!(out, "");
    let written = std::fs::read_to_string(f2.path()).expect("the saved config");
    assert_eq!(written, saved_lab_config());
    assert_eq!(adm(director, "--save-config -"), written);
    let tmp = format!("{}.tmp", f2.arg());
    assert!(!std::path::Path::new(&tmp).exists(), "{tmp} is left behind");

    // A second director, in a fresh lab, started from the saved file.
    let fresh = tun_lab::build();
    let second = fresh.ns("director");
    start_director(second, &["--config", &f2.arg()]);
    assert_eq!(adm(second, "-ln"), first);
    assert_eq!(adm(second, "--save-config -"), written);
}

/// `adm --reload` re-reads the `--config` file: a bad file is refused with its file and line
/// (non-zero exit, the running table kept), a good one replaces the table; a director started
/// without `--config` says there is nothing to reload. (SIGHUP's path is
/// `director_lifecycle::config_file_loads_at_start_and_reload_rejects_bad_file`.)
#[test]
fn reload_rejects_bad_file() {
    let lab = tun_lab::build();
    let director = lab.ns("director");
    let file = TempPath::new(&format!("{}-director.toml", director.name()));
    std::fs::write(file.path(), lab_config("rr", 1)).expect("write the config");
    let pid = start_director(director, &["--config", &file.arg()]);
    let before = adm(director, "-ln");
    assert_eq!(before, ln("rr", &[(RS1, 1, 0, 0), (RS2, 1, 0, 0)]));

    // Line 12 loses its quotes: a TOML error, reported at the first one.
    let broken = lab_config("wrr", 1).replace("scheduler = \"wrr\"", "scheduler = wrr");
    assert_eq!(broken.lines().nth(11), Some("scheduler = wrr"));
    std::fs::write(file.path(), &broken).expect("write the broken config");
    let out = try_adm(director, "--reload");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.starts_with("reload rejected, running table kept: "),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{}:12:", file.arg())), "{stderr}");
    assert_eq!(adm(director, "-ln"), before, "the table changed");

    // Two semantic problems: both reported, each with its line and column.
    let wrong = lab_config("fastest", 70_000);
    std::fs::write(file.path(), &wrong).expect("write the wrong config");
    let out = try_adm(director, "--reload");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    let at = |line: usize, col: usize| format!("{}:{line}:{col}: ", file.arg());
    assert!(
        stderr.contains(&format!("{}service[0].scheduler", at(12, 13))),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}service[0].real_server[0].weight", at(16, 12))),
        "{stderr}"
    );
    assert_eq!(adm(director, "-ln"), before, "the table changed");
    director.assert_running(pid);

    // A good file is loaded.
    std::fs::write(file.path(), lab_config("wrr", 2)).expect("write the new config");
    let out = try_adm(director, "--reload");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, format!("reloaded {} (1 services)\n", file.arg()));
    assert_eq!(
        adm(director, "-ln"),
        ln("wrr", &[(RS1, 2, 0, 0), (RS2, 1, 0, 0)])
    );

    // No --config: a clear error, and the table (empty) stays.
    let plain = Netns::new("noconf");
    start_director(&plain, &[]);
    let out = try_adm(&plain, "--reload");
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "reload rejected, running table kept: the director was started without --config: \
         there is no file to reload\n"
    );
    assert_eq!(adm(&plain, "-ln"), LN_HEADER);
}

/// Changing the table under running connections. Eight keep-alive clients, four to each real
/// server (rr), each fetch 200 kB of test bytes four times a second over one connection for
/// about 5 s; meanwhile RS1's weight changes, a third real server is added, the scheduler
/// becomes wrr, and RS2 is deleted. Every client of RS1 gets all its downloads intact (SHA-256
/// of the test blob), over the one connection it opened (curl exit 0, no reconnection: no
/// reset). The clients of RS2 are cut: like IPVS with `expire_nodest_conn = 1`, a packet of a
/// flow whose real server was deleted is dropped and the flow forgotten, and its later packets
/// (not SYNs) find no connection and are dropped too, so the next request stalls until curl
/// gives up.
#[test]
fn live_changes_keep_established_flows() {
    const K: usize = 8;
    const COUNT: usize = 20;
    const BYTES: u64 = 200_000;
    const NEW_RS: &str = "10.3.0.99";
    let lab = start_lab(&["--local-address", DIRECTOR]);
    let (director, client) = (lab.ns("director"), lab.ns("client"));
    adm(director, &format!("-A -t {VIP}:80 -s rr"));
    for rip in [RS1, RS2] {
        adm(director, &format!("-a -t {VIP}:80 -r {rip} -i -w 1"));
    }

    let clients = keep_alive_clients(client, K, &format!("/bytes/{BYTES}"), COUNT, "4/s", "20");
    let half = (K / 2) as u32;
    let all_open = ln("rr", &[(RS1, 1, half, 0), (RS2, 1, half, 0)]);
    wait_until("all clients to be connected", STARTUP, || {
        adm(director, "-ln") == all_open
    });

    // As ipvsadm, -e replaces every option of the real server: without -i it would become a
    // direct-routing server, so the forwarding method is given again.
    adm(director, &format!("-e -t {VIP}:80 -r {RS1} -i -w 3"));
    adm(director, &format!("-a -t {VIP}:80 -r {NEW_RS} -i -w 1"));
    adm(director, &format!("-E -t {VIP}:80 -s wrr"));
    adm(director, &format!("-d -t {VIP}:80 -r {RS2}"));
    let changed = adm(director, "-ln");
    assert_eq!(changed, ln("wrr", &[(RS1, 3, half, 0), (NEW_RS, 1, 0, 0)]));
    for c in &clients {
        client.assert_running(c.pid);
    }

    let expected = blob_sha256(BYTES);
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    for (i, c) in clients.into_iter().enumerate() {
        let (status, log) = client.wait_exit(c.pid, Duration::from_secs(25));
        let banners = served_by(&c.headers);
        let first = banners
            .first()
            .unwrap_or_else(|| panic!("client {i} got no answer: {log}"))
            .clone();
        assert!(
            banners.iter().all(|b| *b == first),
            "client {i}: {banners:?}"
        );
        *served.entry(first.clone()).or_default() += 1;
        let done = transfers(&log);
        if first == format!("from {RS1}") {
            assert!(
                status.success(),
                "client {i} of RS1 failed ({status}): {log}"
            );
            assert_eq!(done.len(), COUNT, "client {i} of RS1: {log}");
            let port = done[0].1;
            assert_eq!(done[0].0, 1, "client {i} of RS1: {log}");
            assert!(
                done.iter().skip(1).all(|&(n, p)| n == 0 && p == port),
                "client {i} of RS1 had to reconnect: {log}"
            );
            for (n, body) in c.bodies.iter().enumerate() {
                let data = std::fs::read(body.path()).unwrap_or_default();
                assert_eq!(data.len() as u64, BYTES, "client {i}, download {n}");
                assert_eq!(sha256_hex(&data), expected, "client {i}, download {n}");
            }
        } else {
            assert_eq!(first, format!("from {RS2}"));
            eprintln!(
                "client {i} of the deleted RS2: {status}, {} downloads",
                done.len()
            );
            assert!(
                !status.success(),
                "client {i} of the deleted RS2 finished: {log}"
            );
            assert!(
                done.len() < COUNT,
                "client {i} of the deleted RS2 got every download: {log}"
            );
        }
    }
    let expected_split: BTreeMap<String, usize> = [
        (format!("from {RS1}"), K / 2),
        (format!("from {RS2}"), K / 2),
    ]
    .into();
    assert_eq!(served, expected_split);
}
