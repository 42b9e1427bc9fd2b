//! `tunlb lab clients`: many long-lived HTTP/1.1 keep-alive connections carrying requests
//! continuously, plus a stream of short new connections, to watch a director failover from the
//! client's side.
//!
//! - **Keep-alive connections** (`--conns`, 50 by default): each opens one TCP connection and
//!   sends `GET /` on it every `--interval-ms`, reading each answer whole (`Content-Length`).
//!   A connection is **lost** when a request on it fails: reset, closed, or no complete answer
//!   within `--request-timeout` (20 s: long enough for TCP's retransmissions to bridge a
//!   failover of a few seconds, which is what a surviving connection has to do).
//! - **Probes** (`--probe-every-ms`, 50 ms): each is a new connection with `Connection: close`
//!   that must be answered within `--probe-timeout-ms` (500 ms: a SYN lost in a failover is
//!   retransmitted only after 1 s, so a probe that needed it counts as failed). A run of failed
//!   probes is an **outage**, measured from the start of its first failed probe to the end of
//!   the next probe that succeeded (a new connection answered).
//!
//! It runs until `--duration` passes or SIGTERM / SIGINT arrives, printing `[clients] t=...`
//! lines as it goes (all connections established, each lost connection, each outage, a status
//! line every `--status-every` seconds), then one JSON line, a [`Summary`], on stdout.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::sys::signal;

/// Hold keep-alive connections carrying requests and probe new connections; print a JSON
/// summary at the end (connections lost, outages of new connections).
#[derive(Debug, Clone, clap::Args)]
pub struct ClientsArgs {
    /// The service, `ADDR:PORT`.
    #[arg(long, value_name = "ADDR:PORT")]
    pub to: SocketAddr,
    /// Source addresses of the keep-alive connections, taken in turn (connection i from the
    /// i-th modulo their number; repeat the flag or separate with commas). Default: the one
    /// the kernel picks. Schedulers that hash the client address (sh, mh) spread one client
    /// over the real servers only with several.
    #[arg(long, value_name = "ADDR", value_delimiter = ',')]
    pub from: Vec<std::net::IpAddr>,
    /// How many keep-alive connections to hold.
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub conns: u32,
    /// Pause between two requests on one connection, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub interval_ms: u64,
    /// A request not answered whole within this many seconds loses its connection.
    #[arg(long, value_name = "SECONDS", default_value_t = 20.0)]
    pub request_timeout: f64,
    /// Start a new-connection probe every this many milliseconds (0: no probes).
    #[arg(long, value_name = "MS", default_value_t = 50)]
    pub probe_every_ms: u64,
    /// A probe not answered whole within this many milliseconds failed.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub probe_timeout_ms: u64,
    /// Stop after this many seconds (default: at SIGTERM or SIGINT).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Print a status line every this many seconds (0: none).
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    pub status_every: f64,
    /// How long the keep-alive connections may take to be established at start.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub setup_timeout: f64,
}

/// A run of failed new-connection probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    /// When its first failed probe started, ms after [`Summary::start_unix_ms`].
    pub start_ms: u64,
    /// From then to the end of the next successful probe (or the end of the run), ms.
    pub length_ms: u64,
    /// Failed probes in it.
    pub probes: u64,
    /// Still going at the end of the run (no probe succeeded after it).
    pub ongoing: bool,
}

/// A lost keep-alive connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostConn {
    /// When its failed request was sent, ms after [`Summary::start_unix_ms`].
    pub at_ms: u64,
    /// The first line of its answers (`from 10.3.0.12`), if it got one.
    pub served_by: Option<String>,
}

/// What `tunlb lab clients` prints as its last line (one JSON object).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The service.
    pub to: String,
    /// Wall-clock start of the run (ms since the UNIX epoch): the origin of every `*_ms` time.
    pub start_unix_ms: u64,
    /// Length of the run, ms.
    pub duration_ms: u64,
    /// Keep-alive connections asked for.
    pub conns: u32,
    /// Of those, how many were established.
    pub established: u32,
    /// Established connections that failed later (reset, closed, timed out).
    pub lost: u32,
    /// One line per lost connection: which, when, after how many requests, why.
    pub lost_detail: Vec<String>,
    /// The lost connections as data: when each was lost and which server had answered it.
    #[serde(default)]
    pub lost_conns: Vec<LostConn>,
    /// Requests answered on the keep-alive connections.
    pub requests: u64,
    /// The fewest requests answered on one established connection.
    pub min_requests_per_conn: u64,
    /// The slowest answered request on a keep-alive connection, ms (how long a connection
    /// waited for TCP to bridge a failover).
    pub max_request_ms: u64,
    /// The longest time since an established, not lost, connection's last answer at the end,
    /// ms (every surviving connection still carries requests when this is small).
    pub stalest_ms: u64,
    /// Which real servers answered (the body's first line, e.g. `from 10.3.0.12`) and how
    /// many keep-alive connections each served.
    pub served_by: Vec<(String, u32)>,
    /// New-connection probes started and finished.
    pub probes: u64,
    /// Probes that failed.
    pub probes_failed: u64,
    /// Runs of failed probes, in time order.
    pub outages: Vec<Outage>,
}

impl Summary {
    /// The longest outage of new connections, ms (0 when every probe succeeded).
    pub fn longest_outage_ms(&self) -> u64 {
        self.outages.iter().map(|o| o.length_ms).max().unwrap_or(0)
    }

    /// Parses the JSON line `tunlb lab clients` printed last (the last line of `output`
    /// starting with `{`).
    pub fn from_output(output: &str) -> anyhow::Result<Summary> {
        let line = output
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .context("no JSON summary line in the output of `tunlb lab clients`")?;
        serde_json::from_str(line).context("the JSON summary of `tunlb lab clients`")
    }
}

/// Prints one `[clients] t=...` line, flushed (errors ignored: the summary matters more).
fn say(start: Instant, line: std::fmt::Arguments) {
    let mut out = io::stdout().lock();
    let t = start.elapsed().as_secs_f64();
    let _ = writeln!(out, "[clients] t={t:.2}s {line}");
    let _ = out.flush();
}

/// What one keep-alive connection did.
#[derive(Debug, Default, Clone)]
struct ConnReport {
    established: bool,
    requests: u64,
    lost: Option<String>,
    /// When the request that lost it was sent.
    lost_at: Option<Instant>,
    last_ok: Option<Instant>,
    max_request: Duration,
    served_by: Option<String>,
}

/// One probe's result: started at, succeeded, finished at.
type ProbeResult = (Instant, bool, Instant);

/// Runs `tunlb lab clients`.
pub fn run(args: ClientsArgs) -> anyhow::Result<()> {
    if !(args.request_timeout.is_finite() && args.request_timeout > 0.0) {
        bail!("--request-timeout must be a positive number of seconds");
    }
    if !(args.setup_timeout.is_finite() && args.setup_timeout > 0.0) {
        bail!("--setup-timeout must be a positive number of seconds");
    }
    if let Some(d) = args.duration {
        if !(d.is_finite() && d > 0.0) {
            bail!("--duration must be a positive number of seconds");
        }
    }
    signal::install().context("installing signal handlers")?;
    let summary = hold(&args, || signal::pending().is_some());
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

/// Holds the connections and probes until `args.duration` passes or `stop()` says so; returns
/// the summary.
pub fn hold(args: &ClientsArgs, stop: impl Fn() -> bool) -> Summary {
    let start = Instant::now();
    let start_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let end = args.duration.map(|d| start + Duration::from_secs_f64(d));
    let done = Arc::new(AtomicBool::new(false));
    let connected = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicUsize::new(0));
    let setup = Duration::from_secs_f64(args.setup_timeout.min(3600.0));
    let timeout = Duration::from_secs_f64(args.request_timeout.min(3600.0));
    let interval = Duration::from_millis(args.interval_ms);

    let conns: Vec<_> = (0..args.conns)
        .map(|i| {
            let (to, done) = (args.to, done.clone());
            let from = (!args.from.is_empty()).then(|| args.from[i as usize % args.from.len()]);
            let (connected, answered, lost) = (connected.clone(), answered.clone(), lost.clone());
            thread::spawn(move || {
                keep_alive(
                    i,
                    (from, to),
                    start,
                    setup,
                    timeout,
                    interval,
                    &done,
                    &|e| match e {
                        ConnEvent::Connected => {
                            connected.fetch_add(1, Ordering::Relaxed);
                        }
                        ConnEvent::Answered => {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        ConnEvent::Lost => {
                            lost.fetch_add(1, Ordering::Relaxed);
                        }
                    },
                )
            })
        })
        .collect();

    let probes: Arc<Mutex<Vec<ProbeResult>>> = Arc::new(Mutex::new(Vec::new()));
    let probes_running = Arc::new(AtomicUsize::new(0));
    let probe_every = Duration::from_millis(args.probe_every_ms);
    let probe_timeout = Duration::from_millis(args.probe_timeout_ms.max(1));
    let mut next_probe = start;
    let mut next_status = start;
    let status_every = (args.status_every.is_finite() && args.status_every > 0.0)
        .then(|| Duration::from_secs_f64(args.status_every.min(3600.0)));
    let mut all_connected_said = args.conns == 0;
    let mut lost_said = 0;
    let mut outage_since: Option<Instant> = None;
    let mut seen_probes = 0;
    loop {
        let now = Instant::now();
        if stop() || end.is_some_and(|e| now >= e) {
            break;
        }
        if !all_connected_said && connected.load(Ordering::Relaxed) == args.conns as usize {
            all_connected_said = true;
            say(
                start,
                format_args!("all {} connections established to {}", args.conns, args.to),
            );
        }
        let now_lost = lost.load(Ordering::Relaxed);
        if now_lost > lost_said {
            lost_said = now_lost;
            say(start, format_args!("{now_lost} connection(s) lost so far"));
        }
        if !probe_every.is_zero() && now >= next_probe {
            next_probe += probe_every;
            if next_probe < now {
                next_probe = now + probe_every;
            }
            let (to, probes, running) = (args.to, probes.clone(), probes_running.clone());
            running.fetch_add(1, Ordering::Relaxed);
            thread::spawn(move || {
                let ok = probe(to, probe_timeout).is_ok();
                let end = Instant::now();
                probes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((now, ok, end));
                running.fetch_sub(1, Ordering::Relaxed);
            });
        }
        // Outage lines, from the probes settled so far: every probe started more than the
        // probe timeout ago has finished, so those are taken in start order.
        {
            let mut list = probes.lock().unwrap_or_else(|e| e.into_inner());
            list.sort_by_key(|p| p.0);
            let settled = now.checked_sub(probe_timeout + Duration::from_millis(100));
            while let (Some(&(at, ok, end)), Some(settled)) = (list.get(seen_probes), settled) {
                if at > settled {
                    break;
                }
                seen_probes += 1;
                match (ok, outage_since) {
                    (false, None) => {
                        outage_since = Some(at);
                        let t = at.duration_since(start).as_secs_f64();
                        say(start, format_args!("new connections fail (from t={t:.2}s)"));
                    }
                    (true, Some(since)) => {
                        outage_since = None;
                        let len = end.duration_since(since).as_secs_f64();
                        say(
                            start,
                            format_args!("new connections work again (outage {len:.2} s)"),
                        );
                    }
                    _ => {}
                }
            }
        }
        if let Some(every) = status_every {
            if now >= next_status {
                next_status += every;
                let finished = probes.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let failed = finished.iter().filter(|p| !p.1).count();
                say(
                    start,
                    format_args!(
                        "{} requests answered, connections {}/{} up, {} lost; probes {} ok, {} \
                         failed",
                        answered.load(Ordering::Relaxed),
                        connected.load(Ordering::Relaxed) - lost.load(Ordering::Relaxed),
                        args.conns,
                        lost.load(Ordering::Relaxed),
                        finished.len() - failed,
                        failed
                    ),
                );
            }
        }
        thread::sleep(Duration::from_millis(10));
    }
    done.store(true, Ordering::Relaxed);
    let stopped = Instant::now();
    // Probes end within their timeout.
    let deadline = stopped + probe_timeout + Duration::from_secs(1);
    while probes_running.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let reports: Vec<ConnReport> = conns
        .into_iter()
        .map(|h| h.join().unwrap_or_default())
        .collect();
    let probes = probes.lock().unwrap_or_else(|e| e.into_inner()).clone();
    summarize(args, start, start_unix_ms, stopped, &reports, probes)
}

/// What a keep-alive connection tells the status line.
enum ConnEvent {
    Connected,
    Answered,
    Lost,
}

/// Connects to `to` from `from` (any port) if given, within `timeout`.
fn connect(
    from: Option<std::net::IpAddr>,
    to: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let Some(from) = from else {
        return TcpStream::connect_timeout(&to, timeout);
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(to),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&to.into(), timeout)?;
    Ok(socket.into())
}

/// One keep-alive connection: connect (from `from`, retrying until `setup` passes), then
/// `GET /` every `interval` until `done`; a failed request ends it as lost.
#[allow(clippy::too_many_arguments)]
fn keep_alive(
    i: u32,
    (from, to): (Option<std::net::IpAddr>, SocketAddr),
    start: Instant,
    setup: Duration,
    timeout: Duration,
    interval: Duration,
    done: &AtomicBool,
    event: &dyn Fn(ConnEvent),
) -> ConnReport {
    let mut report = ConnReport::default();
    let stream = loop {
        match connect(from, to, Duration::from_secs(1)) {
            Ok(s) => break s,
            Err(e) => {
                if start.elapsed() > setup || done.load(Ordering::Relaxed) {
                    report.lost = Some(format!("never established: {e}"));
                    return report;
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let local = stream.local_addr().map_or(0, |a| a.port());
    report.established = true;
    event(ConnEvent::Connected);
    let _ = stream.set_nodelay(true);
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => {
            report.lost = Some(format!("connection {i}: {e}"));
            event(ConnEvent::Lost);
            return report;
        }
    };
    let mut reader = BufReader::new(stream);
    let request = format!("GET / HTTP/1.1\r\nHost: {to}\r\nUser-Agent: tunlb-lab-clients\r\n\r\n");
    while !done.load(Ordering::Relaxed) {
        let sent = Instant::now();
        match exchange(&mut writer, &mut reader, request.as_bytes(), timeout) {
            Ok(first_line) => {
                let took = sent.elapsed();
                report.requests += 1;
                report.last_ok = Some(Instant::now());
                report.max_request = report.max_request.max(took);
                report.served_by.get_or_insert(first_line);
                event(ConnEvent::Answered);
            }
            Err(e) => {
                let t = start.elapsed().as_secs_f64();
                let why = match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!(
                        "no complete answer within {:.0} s (the request was sent at t={:.2}s)",
                        timeout.as_secs_f64(),
                        sent.duration_since(start).as_secs_f64()
                    ),
                    _ => e.to_string(),
                };
                // The server that answered it (the body's first line), so a soak can tell a
                // connection to a server that was taken down from any other.
                let server = report.served_by.as_deref().unwrap_or("no answer yet");
                report.lost = Some(format!(
                    "connection {i} (client port {local}, {server}) at t={t:.2}s after {} \
                     requests: {why}",
                    report.requests
                ));
                report.lost_at = Some(sent);
                event(ConnEvent::Lost);
                return report;
            }
        }
        // Sleep in small steps so a stop is noticed quickly.
        let wake = Instant::now() + interval;
        while !done.load(Ordering::Relaxed) && Instant::now() < wake {
            thread::sleep(interval.min(Duration::from_millis(50)));
        }
    }
    report
}

/// Sends one request and reads its answer whole; returns the body's first line.
fn exchange(
    writer: &mut TcpStream,
    reader: &mut BufReader<TcpStream>,
    request: &[u8],
    timeout: Duration,
) -> io::Result<String> {
    writer.set_write_timeout(Some(timeout))?;
    reader.get_ref().set_read_timeout(Some(timeout))?;
    writer.write_all(request)?;
    let mut line = String::new();
    let mut status = None;
    let mut length = None;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed by the server",
            ));
        }
        let l = line.trim_end();
        if status.is_none() {
            let code = l
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse::<u16>().ok());
            status = Some(code.ok_or_else(|| io::Error::other(format!("bad status line {l:?}")))?);
            continue;
        }
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<u64>().ok();
            }
        }
    }
    let length = length.ok_or_else(|| io::Error::other("no Content-Length"))?;
    if length > 1 << 20 {
        return Err(io::Error::other("answer too large"));
    }
    let mut body = vec![0; length as usize];
    reader.read_exact(&mut body)?;
    match status {
        Some(200) => Ok(String::from_utf8_lossy(&body)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()),
        Some(code) => Err(io::Error::other(format!("HTTP {code}"))),
        None => Err(io::Error::other("no status line")),
    }
}

/// One new connection with `Connection: close`, answered whole within `timeout`.
fn probe(to: SocketAddr, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "probe timed out"))
    };
    let stream = TcpStream::connect_timeout(&to, left()?)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {to}\r\nUser-Agent: tunlb-lab-probe\r\nConnection: close\r\n\r\n"
    );
    exchange(&mut writer, &mut reader, request.as_bytes(), left()?).map(|_| ())
}

/// Builds the summary from the connections' reports and the probes.
fn summarize(
    args: &ClientsArgs,
    start: Instant,
    start_unix_ms: u64,
    stopped: Instant,
    reports: &[ConnReport],
    mut probes: Vec<ProbeResult>,
) -> Summary {
    let ms = |at: Instant| at.saturating_duration_since(start).as_millis() as u64;
    let established: Vec<&ConnReport> = reports.iter().filter(|r| r.established).collect();
    let lost_detail: Vec<String> = established.iter().filter_map(|r| r.lost.clone()).collect();
    let lost_conns: Vec<LostConn> = established
        .iter()
        .filter(|r| r.lost.is_some())
        .map(|r| LostConn {
            at_ms: r.lost_at.map_or(0, ms),
            served_by: r.served_by.clone(),
        })
        .collect();
    let mut served: Vec<(String, u32)> = Vec::new();
    for r in &established {
        if let Some(by) = &r.served_by {
            match served.iter_mut().find(|(b, _)| b == by) {
                Some((_, n)) => *n += 1,
                None => served.push((by.clone(), 1)),
            }
        }
    }
    served.sort();
    let stalest = established
        .iter()
        .filter(|r| r.lost.is_none())
        .map(|r| {
            r.last_ok
                .map_or(ms(stopped), |t| ms(stopped).saturating_sub(ms(t)))
        })
        .max()
        .unwrap_or(0);
    probes.sort_by_key(|p| p.0);
    Summary {
        to: args.to.to_string(),
        start_unix_ms,
        duration_ms: ms(stopped),
        conns: args.conns,
        established: established.len() as u32,
        lost: lost_detail.len() as u32,
        lost_detail,
        lost_conns,
        requests: established.iter().map(|r| r.requests).sum(),
        min_requests_per_conn: established.iter().map(|r| r.requests).min().unwrap_or(0),
        max_request_ms: established
            .iter()
            .map(|r| r.max_request.as_millis() as u64)
            .max()
            .unwrap_or(0),
        stalest_ms: stalest,
        served_by: served,
        probes: probes.len() as u64,
        probes_failed: probes.iter().filter(|p| !p.1).count() as u64,
        outages: outages(&probes, ms(stopped), ms),
    }
}

/// Runs of failed probes in `probes` (sorted by start), as [`Outage`]s.
fn outages(probes: &[ProbeResult], end_ms: u64, ms: impl Fn(Instant) -> u64) -> Vec<Outage> {
    let mut out = Vec::new();
    let mut open: Option<(u64, u64)> = None;
    for &(at, ok, end) in probes {
        let t = ms(at);
        match (ok, open) {
            (false, None) => open = Some((t, 1)),
            (false, Some((s, n))) => open = Some((s, n + 1)),
            (true, Some((s, n))) => {
                out.push(Outage {
                    start_ms: s,
                    length_ms: ms(end).saturating_sub(s),
                    probes: n,
                    ongoing: false,
                });
                open = None;
            }
            (true, None) => {}
        }
    }
    if let Some((s, n)) = open {
        out.push(Outage {
            start_ms: s,
            length_ms: end_ms.saturating_sub(s),
            probes: n,
            ongoing: true,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_runs_of_failed_probes_until_the_next_success() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let probes: Vec<ProbeResult> = vec![
            (at(0), true, at(5)),
            (at(50), false, at(550)),
            (at(100), false, at(600)),
            (at(150), true, at(160)),
            (at(200), true, at(205)),
            (at(250), false, at(750)),
        ];
        let ms = |i: Instant| i.duration_since(t0).as_millis() as u64;
        let got = outages(&probes, 400, ms);
        assert_eq!(
            got,
            [
                Outage {
                    start_ms: 50,
                    length_ms: 110,
                    probes: 2,
                    ongoing: false
                },
                Outage {
                    start_ms: 250,
                    length_ms: 150,
                    probes: 1,
                    ongoing: true
                }
            ]
        );
    }

    #[test]
    fn summary_round_trips_through_its_json_line() {
        let s = Summary {
            to: "192.168.150.100:80".into(),
            conns: 50,
            established: 50,
            outages: vec![Outage {
                start_ms: 1,
                length_ms: 3500,
                probes: 70,
                ongoing: false,
            }],
            served_by: vec![("from 10.3.0.12".into(), 25)],
            ..Summary::default()
        };
        let out = format!(
            "[clients] t=0.10s all 50 connections established\n{}\n",
            serde_json::to_string(&s).unwrap()
        );
        let back = Summary::from_output(&out).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.longest_outage_ms(), 3500);
    }

    /// Against a local `tunlb httpd`-like server: every connection answers, nothing is lost.
    #[test]
    fn holds_connections_against_a_local_server() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let to = listener.local_addr().unwrap();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                thread::spawn(move || {
                    let mut w = stream.try_clone().unwrap();
                    let mut r = BufReader::new(stream);
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match r.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => {
                                let _ = w.write_all(
                                    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfrom test\n",
                                );
                            }
                            Ok(_) => {}
                        }
                    }
                });
            }
        });
        let args = ClientsArgs {
            to,
            from: vec!["127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap()],
            conns: 5,
            interval_ms: 20,
            request_timeout: 5.0,
            probe_every_ms: 50,
            probe_timeout_ms: 500,
            duration: Some(0.6),
            status_every: 0.0,
            setup_timeout: 5.0,
        };
        let s = hold(&args, || false);
        assert_eq!((s.established, s.lost), (5, 0), "{s:?}");
        assert!(s.min_requests_per_conn >= 3, "{s:?}");
        assert!(s.probes >= 5 && s.probes_failed == 0, "{s:?}");
        assert_eq!(s.served_by, [("from test".to_owned(), 5)]);
        assert!(s.outages.is_empty());
    }
}
