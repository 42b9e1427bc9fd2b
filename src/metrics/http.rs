//! A minimal HTTP/1.x server for `GET /metrics` on one std thread (no async runtime).
//!
//! One connection at a time: a scrape is small and Prometheus scrapes rarely. Each request is
//! read with a timeout and a size cap, answered, and the connection closed.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::Format;

/// Renders the metrics page in the negotiated format.
pub type Render = Arc<dyn Fn(Format) -> String + Send + Sync>;

/// Largest request head read.
const MAX_HEAD: usize = 8192;
/// How long a client may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` and serves `/metrics` from a background thread for the life of the process.
/// Returns the bound address (port 0 picks one) and the thread.
pub fn serve(addr: SocketAddr, render: Render) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let handle = std::thread::Builder::new()
        .name("tunlb-metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if let Err(e) = answer(stream, &render) {
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) {
                        log::warn!("tunlb metrics: {e}");
                    }
                }
            }
        })?;
    Ok((local, handle))
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

fn answer(mut stream: TcpStream, render: &Render) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    let end = loop {
        if len == buf.len() {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"",
            );
        }
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
            "400 Bad Request",
            "text/plain",
            b"bad request\n",
        );
    };
    if head.method != "GET" && head.method != "HEAD" {
        return respond(&mut stream, "405 Method Not Allowed", "text/plain", b"");
    }
    if head.path != "/metrics" {
        return respond(
            &mut stream,
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
    respond(&mut stream, "200 OK", format.content_type(), body)
}

fn respond(stream: &mut TcpStream, status: &str, ctype: &str, body: &[u8]) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
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
}
