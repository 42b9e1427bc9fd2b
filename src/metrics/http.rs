//! A minimal HTTP/1.x server for `GET /metrics` on std threads (no async runtime).
//!
//! Each connection gets its own thread, at most [`MAX_CLIENTS`] at once (a connection beyond
//! that is closed at once), and [`CONN_DEADLINE`] in all to send its request and take the
//! answer, however it spreads its bytes: a client that connects and sends nothing, or trickles,
//! only holds its own thread and only for that long, so it never delays a scrape. Each request
//! is read with a size cap, answered, and the connection closed.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Format;

/// Renders the metrics page in the negotiated format.
pub type Render = Arc<dyn Fn(Format) -> String + Send + Sync>;

/// Largest request head read.
const MAX_HEAD: usize = 8192;

/// How long a connection may take in all: to send its request and to read the answer.
pub const CONN_DEADLINE: Duration = Duration::from_secs(10);

/// The most connections served at once; more are closed without an answer.
pub const MAX_CLIENTS: usize = 16;

/// How many connections the server serves at once and for how long.
#[derive(Clone, Copy, Debug)]
struct Limits {
    clients: usize,
    deadline: Duration,
}

/// Binds `addr` and serves `/metrics` from background threads for the life of the process.
/// Returns the bound address (port 0 picks one) and the accepting thread.
pub fn serve(addr: SocketAddr, render: Render) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    serve_with(
        addr,
        render,
        Limits {
            clients: MAX_CLIENTS,
            deadline: CONN_DEADLINE,
        },
    )
}

fn serve_with(
    addr: SocketAddr,
    render: Render,
    limits: Limits,
) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let handle = std::thread::Builder::new()
        .name("tunlb-metrics".into())
        .spawn(move || accept_loop(&listener, &render, limits))?;
    Ok((local, handle))
}

fn accept_loop(listener: &TcpListener, render: &Render, limits: Limits) {
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Out of file descriptors and the like: back off instead of spinning.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if open.fetch_add(1, Ordering::AcqRel) >= limits.clients {
            open.fetch_sub(1, Ordering::AcqRel);
            log::debug!(
                "tunlb metrics: {} connections open, closing a new one",
                limits.clients
            );
            drop(stream);
            continue;
        }
        let slot = Slot(open.clone());
        let render = render.clone();
        // On failure the closure (and its slot) is dropped: the count goes back down.
        let _ = std::thread::Builder::new()
            .name("tunlb-metrics-client".into())
            .spawn(move || {
                let _slot = slot;
                let deadline = Instant::now() + limits.deadline;
                if let Err(e) = answer(stream, &render, deadline) {
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::BrokenPipe
                            | io::ErrorKind::ConnectionReset
                    ) {
                        log::warn!("tunlb metrics: {e}");
                    }
                }
            });
    }
}

/// One of the server's connection places, given back when the connection's thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What is left of the connection's time; `TimedOut` once it is spent.
fn left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the connection's deadline passed",
        ))
    } else {
        Ok(left)
    }
}

/// What the server needs from a request.
#[derive(Debug, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// `GET`, `HEAD`, ...
    pub method: &'a str,
    /// The path, query string removed.
    pub path: &'a str,
    /// The `Accept` header, empty if absent.
    pub accept: &'a str,
}

/// Parses a request head (up to the blank line); `None` if it is not HTTP.
pub fn parse_head(head: &str) -> Option<RequestHead<'_>> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?;
    let target = first.next()?;
    // A request line is exactly `METHOD SP TARGET SP VERSION` (RFC 9112 §3): an empty method
    // (a leading space), an empty target or extra words make it malformed (answered 400).
    if method.is_empty() || target.is_empty() || !first.next()?.starts_with("HTTP/") {
        return None;
    }
    if first.next().is_some() {
        return None;
    }
    let path = target.split('?').next().unwrap_or(target);
    let accept = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("accept"))
        .map_or("", |(_, v)| v.trim());
    Some(RequestHead {
        method,
        path,
        accept,
    })
}

fn answer(mut stream: TcpStream, render: &Render, deadline: Instant) -> io::Result<()> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    let end = loop {
        if len == buf.len() {
            return respond(
                &mut stream,
                deadline,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"",
            );
        }
        stream.set_read_timeout(Some(left(deadline)?))?;
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        if let Some(i) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = std::str::from_utf8(&buf[..end]).ok().and_then(parse_head);
    let Some(head) = head else {
        return respond(
            &mut stream,
            deadline,
            "400 Bad Request",
            "text/plain",
            b"bad request\n",
        );
    };
    if head.method != "GET" && head.method != "HEAD" {
        return respond(
            &mut stream,
            deadline,
            "405 Method Not Allowed",
            "text/plain",
            b"",
        );
    }
    if head.path != "/metrics" {
        return respond(
            &mut stream,
            deadline,
            "404 Not Found",
            "text/plain",
            b"tunlb: metrics are at /metrics\n",
        );
    }
    let format = Format::from_accept(head.accept);
    let body = render(format);
    let body = if head.method == "HEAD" {
        &[][..]
    } else {
        body.as_bytes()
    };
    respond(&mut stream, deadline, "200 OK", format.content_type(), body)
}

fn respond(
    stream: &mut TcpStream,
    deadline: Instant,
    status: &str,
    ctype: &str,
    body: &[u8],
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    write_all_by(stream, head.as_bytes(), deadline)?;
    write_all_by(stream, body, deadline)
}

/// Writes all of `bytes` before `deadline`: a client that does not read its answer is cut off.
fn write_all_by(stream: &mut TcpStream, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.set_write_timeout(Some(left(deadline)?))?;
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_scrape_request() {
        let h = parse_head(
            "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nACCEPT: application/openmetrics-text; version=1.0.0",
        );
        assert_eq!(
            h,
            Some(RequestHead {
                method: "GET",
                path: "/metrics",
                accept: "application/openmetrics-text; version=1.0.0",
            })
        );
        assert_eq!(parse_head("garbage"), None);
        assert_eq!(parse_head("GET / FTP/1"), None);
        // Found by the metrics_request fuzz target: a leading space made an empty method.
        assert_eq!(parse_head(" /metrics HTTP/1.1\r\n\r\n"), None);
        assert_eq!(parse_head("GET  HTTP/1.1\r\n\r\n"), None);
        assert_eq!(parse_head("GET / HTTP/1.1 extra\r\n\r\n"), None);
    }

    #[test]
    fn serves_metrics_on_loopback_and_negotiates() {
        let render: Render = Arc::new(|f| match f {
            Format::OpenMetrics => "om\n# EOF\n".to_string(),
            Format::Prometheus => "prom\n".to_string(),
        });
        let (addr, _thread) = serve("127.0.0.1:0".parse().unwrap(), render).unwrap();
        let get = |req: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let plain = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(plain.starts_with("HTTP/1.1 200 OK\r\n"), "{plain}");
        assert!(plain.contains("version=0.0.4"), "{plain}");
        assert!(plain.ends_with("\r\n\r\nprom\n"), "{plain}");
        let om = get("GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n");
        assert!(om.contains("application/openmetrics-text"), "{om}");
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(get("GET / HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get("POST /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 405"));
    }

    fn prom() -> Render {
        Arc::new(|_| "prom\n".to_string())
    }

    fn scrape(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn a_silent_client_never_delays_a_scrape() {
        let (addr, _thread) = serve("127.0.0.1:0".parse().unwrap(), prom()).unwrap();
        // Connected, sends nothing, holds on.
        let _silent = TcpStream::connect(addr).unwrap();
        let mut trickle = TcpStream::connect(addr).unwrap();
        trickle.write_all(b"GET /met").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        let page = scrape(addr);
        let took = start.elapsed();
        assert!(page.ends_with("\r\n\r\nprom\n"), "{page}");
        assert!(took < Duration::from_secs(1), "the scrape took {took:?}");
    }

    #[test]
    fn every_connection_has_a_deadline_however_it_trickles() {
        let deadline = Duration::from_millis(400);
        let limits = Limits {
            clients: 4,
            deadline,
        };
        let (addr, _thread) = serve_with("127.0.0.1:0".parse().unwrap(), prom(), limits).unwrap();
        let start = Instant::now();
        let mut slow = TcpStream::connect(addr).unwrap();
        // A byte every 50 ms: each read is quick, the request never ends.
        let cut = loop {
            let sent = slow.write_all(b"X");
            let mut probe = [0u8; 1];
            slow.set_read_timeout(Some(Duration::from_millis(1)))
                .unwrap();
            let closed = matches!(slow.read(&mut probe), Ok(0)) || sent.is_err();
            if closed {
                break start.elapsed();
            }
            assert!(start.elapsed() < Duration::from_secs(5), "never cut off");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(cut >= deadline && cut < Duration::from_secs(3), "{cut:?}");
    }

    #[test]
    fn connections_beyond_the_bound_are_closed_and_the_places_come_back() {
        let limits = Limits {
            clients: 2,
            deadline: Duration::from_millis(500),
        };
        let (addr, _thread) = serve_with("127.0.0.1:0".parse().unwrap(), prom(), limits).unwrap();
        let a = TcpStream::connect(addr).unwrap();
        let b = TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        // Both places are taken: the next connection is closed without an answer.
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        assert!(out.is_empty());
        // The silent ones run out of time; then scrapes are served again.
        std::thread::sleep(Duration::from_millis(700));
        assert!(scrape(addr).starts_with("HTTP/1.1 200 OK"));
        drop((a, b));
    }
}
