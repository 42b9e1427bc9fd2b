//! `tunlb lab get URL`: a one-shot HTTP/1.1 GET that prints the body, for machines without
//! curl. The lab uses curl when it is installed (it is what a user types) and this otherwise,
//! always inside the client's namespace (`ip netns exec tunlb-client tunlb lab get URL`). It
//! also tells the lab when a real server's `tunlb httpd` is up.
//!
//! Only what the lab needs: `http://HOST[:PORT][/PATH]`, a `Content-Length` or read-to-close
//! body, no redirects, no chunked encoding, no TLS. Exits non-zero unless the status is 2xx.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Fetch a URL with one HTTP/1.1 GET and print the body (a curl stand-in for the lab).
#[derive(Debug, Clone, clap::Args)]
pub struct GetArgs {
    /// The URL, `http://HOST[:PORT][/PATH]`.
    pub url: String,
    /// Give up after this many seconds (connect, send and receive together).
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub max_time: f64,
}

/// Largest response accepted (head and body).
pub const MAX_RESPONSE: usize = 16 << 20;

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// Not `http://HOST[:PORT][/PATH]`.
    #[error("unsupported URL {0:?}: expected http://HOST[:PORT][/PATH]")]
    BadUrl(String),
    /// The host did not resolve to any address.
    #[error("cannot resolve {0}")]
    Resolve(String),
    /// `--max-time` is not a positive number of seconds.
    #[error("--max-time must be a positive number of seconds")]
    BadTimeout,
    /// Connecting, sending or receiving failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// `--max-time` passed.
    #[error("no complete answer within the time limit")]
    Timeout,
    /// The answer is not HTTP/1.x, or is cut short.
    #[error("malformed HTTP response: {0}")]
    Malformed(&'static str),
    /// The answer is larger than [`MAX_RESPONSE`].
    #[error("response larger than {MAX_RESPONSE} bytes")]
    TooLarge,
    /// The server answered with a status other than 2xx.
    #[error("HTTP {status}")]
    Status {
        /// The status code.
        status: u16,
    },
}

/// A parsed `http://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// The host as written (an address or a name; `[v6]` keeps its brackets).
    pub host: String,
    /// The port (80 when not given).
    pub port: u16,
    /// The path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses `http://HOST[:PORT][/PATH]`.
    pub fn parse(url: &str) -> Result<Url, GetError> {
        let bad = || GetError::BadUrl(url.to_owned());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rfind(':') {
            // A colon inside `[v6]` is not a port separator.
            Some(i) if !authority[i..].contains(']') => {
                let port = authority[i + 1..].parse().map_err(|_| bad())?;
                (&authority[..i], port)
            }
            _ => (authority, 80),
        };
        if host.is_empty() || host.contains(['@', ' ']) || path.contains([' ', '\r', '\n']) {
            return Err(bad());
        }
        Ok(Url {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// The addresses the host resolves to.
    fn addrs(&self) -> Result<Vec<SocketAddr>, GetError> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = (host, self.port)
            .to_socket_addrs()
            .map_err(|_| GetError::Resolve(self.host.clone()))?
            .collect();
        if addrs.is_empty() {
            return Err(GetError::Resolve(self.host.clone()));
        }
        Ok(addrs)
    }
}

/// Runs `tunlb lab get`: prints the body; fails unless the status is 2xx.
pub fn run(args: GetArgs) -> anyhow::Result<()> {
    if !(args.max_time.is_finite() && args.max_time > 0.0) {
        return Err(GetError::BadTimeout.into());
    }
    let body = get(
        &args.url,
        Duration::from_secs_f64(args.max_time.min(86_400.0)),
    )?;
    io::stdout().write_all(&body)?;
    Ok(())
}

/// GETs `url` within `limit` and returns the body if the status is 2xx.
pub fn get(url: &str, limit: Duration) -> Result<Vec<u8>, GetError> {
    let url = Url::parse(url)?;
    let deadline = Instant::now() + limit;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(GetError::Timeout)
    };
    let mut last = None;
    let mut stream = None;
    for addr in url.addrs()? {
        match TcpStream::connect_timeout(&addr, left()?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(mut stream) = stream else {
        let source = last.unwrap_or_else(|| io::Error::other("no address"));
        return Err(GetError::Io {
            what: "connect",
            source,
        });
    };
    let io_err = |what| move |source| GetError::Io { what, source };
    stream
        .set_write_timeout(Some(left()?))
        .map_err(io_err("send"))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tunlb-lab-get\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n",
        url.path, url.host
    );
    stream
        .write_all(request.as_bytes())
        .map_err(io_err("send"))?;
    let mut response = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        stream
            .set_read_timeout(Some(left()?))
            .map_err(io_err("receive"))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if response.len() + n > MAX_RESPONSE {
                    return Err(GetError::TooLarge);
                }
                response.extend_from_slice(&buf[..n]);
                if let Some(body) = complete_body(&response)? {
                    return finish(&response, body);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(GetError::Timeout)
            }
            Err(e) => return Err(io_err("receive")(e)),
        }
    }
    // Closed by the server: the body is whatever came after the head, unless a length said
    // more was coming.
    let head_end = find_head_end(&response).ok_or(GetError::Malformed("no end of headers"))?;
    if content_length(&response[..head_end])?.is_some() {
        return Err(GetError::Malformed(
            "connection closed before the whole body",
        ));
    }
    finish(&response, head_end..response.len())
}

/// Checks the status line of a complete response and returns the body's bytes.
fn finish(response: &[u8], body: std::ops::Range<usize>) -> Result<Vec<u8>, GetError> {
    let status = status_code(response)?;
    if !(200..300).contains(&status) {
        return Err(GetError::Status { status });
    }
    Ok(response.get(body).unwrap_or_default().to_vec())
}

/// Where the head ends (just after the empty line), if it has arrived.
fn find_head_end(response: &[u8]) -> Option<usize> {
    response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// The body's range once a response with a `Content-Length` has fully arrived.
fn complete_body(response: &[u8]) -> Result<Option<std::ops::Range<usize>>, GetError> {
    let Some(head_end) = find_head_end(response) else {
        return Ok(None);
    };
    match content_length(&response[..head_end])? {
        Some(len) => {
            let end = head_end
                .checked_add(len)
                .ok_or(GetError::Malformed("Content-Length too large"))?;
            Ok((response.len() >= end).then_some(head_end..end))
        }
        None => Ok(None),
    }
}

/// The status code of `HTTP/1.x NNN ...`.
fn status_code(response: &[u8]) -> Result<u16, GetError> {
    let line_end = response
        .iter()
        .position(|&b| b == b'\r')
        .ok_or(GetError::Malformed("no status line"))?;
    let line = std::str::from_utf8(&response[..line_end])
        .map_err(|_| GetError::Malformed("status line is not text"))?;
    let mut parts = line.split(' ');
    match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") && code.len() == 3 => code
            .parse()
            .map_err(|_| GetError::Malformed("bad status code")),
        _ => Err(GetError::Malformed("bad status line")),
    }
}

/// The `Content-Length` of a head, if any; a chunked body is refused.
fn content_length(head: &[u8]) -> Result<Option<usize>, GetError> {
    let head = std::str::from_utf8(head).map_err(|_| GetError::Malformed("head is not text"))?;
    let mut length = None;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            let value = value
                .trim()
                .parse()
                .map_err(|_| GetError::Malformed("bad Content-Length"))?;
            length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(GetError::Malformed("chunked bodies are not supported"));
        }
    }
    Ok(length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::httpd;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn urls_parse_with_and_without_port_and_path() {
        let url = Url::parse("http://192.168.150.100/").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("192.168.150.100", 80, "/")
        );
        let url = Url::parse("http://10.0.0.1:8080").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("10.0.0.1", 8080, "/")
        );
        let url = Url::parse("http://[::1]:81/whoami?x=1").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("[::1]", 81, "/whoami?x=1")
        );
        assert_eq!(Url::parse("http://[::1]/").unwrap().port, 80);
        for bad in [
            "https://x/",
            "http://",
            "http://:80/",
            "http://a:x/",
            "http://a:99999/",
            "x",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_are_split_by_content_length_or_close() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(complete_body(full).unwrap(), Some(38..43));
        assert_eq!(complete_body(&full[..40]).unwrap(), None);
        assert_eq!(status_code(full).unwrap(), 200);
        assert!(content_length(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(status_code(b"SSH-2.0-x\r\n").is_err());
        assert!(matches!(
            finish(b"HTTP/1.1 404 Not Found\r\n\r\n", 0..0),
            Err(GetError::Status { status: 404 })
        ));
    }

    #[test]
    fn gets_the_banner_from_tunlb_httpd() {
        let listener = httpd::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let server = thread::spawn(move || httpd::serve(listener, "from lo\n".into(), flag));
        let body = get(&format!("http://{addr}/"), Duration::from_secs(5)).unwrap();
        assert_eq!(body, b"from lo\n");
        let err = get(&format!("http://{addr}/nope"), Duration::from_secs(5)).unwrap_err();
        assert!(matches!(err, GetError::Status { status: 404 }), "{err}");
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap().unwrap();
    }
}
