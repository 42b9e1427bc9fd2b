//! `tunlb httpd`: a tiny HTTP/1.1 server for real servers in the lab and the namespace tests.
//!
//! It stands in for the seed's `httpd` with an `index.html` of "from 192.168.150.12": every real
//! server answers with its own banner, so a client can count who answered. Blocking std sockets,
//! one thread per connection, keep-alive.
//!
//! | request | answer body |
//! |---|---|
//! | `GET /` | the banner, e.g. `from 10.3.0.12\n` |
//! | `GET /whoami` | the banner, then `client ADDR:PORT\n` (the peer address the server saw) |
//! | `GET /bytes/N` | `N` bytes of [`blob`] (at most [`MAX_BODY`]) |
//! | `POST /upload` | `length N\nsha256 HEX\n` of the request body (`Content-Length` only) |
//!
//! Every answer carries the banner in an `X-Served-By` header too, so a client that keeps the
//! headers knows which real server sent a `/bytes/N` download.
//!
//! Anything else gets a 404 (unknown path), 405 (other method), 400 (malformed request), 413
//! (body over [`MAX_BODY`]) or 501 (`Transfer-Encoding`). `Expect: 100-continue` is honoured, so
//! `curl --data-binary @big-file` does not wait a second before sending.
//!
//! With `--udp-echo` it also answers UDP on every `--listen` address: each datagram gets back
//! one datagram, the banner then `length N\nsha256 HEX\n` of what arrived ([`udp_answer`]): a
//! digest rather than the bytes, so a test can send large datagrams (fragmented on the way) and
//! check they arrived intact and which server got them.
//!
//! With `--tls` every `--listen` address serves HTTPS instead, with a self-signed certificate
//! made at start ([`crate::health::tls::self_signed_server`]): the other end of an SSL_GET
//! health check. One request per connection (`GET /` and `GET /whoami` as above, 404 for the
//! rest), then `close_notify`.

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};

/// Largest body served by `GET /bytes/N` or accepted by `POST /upload` (1 GiB).
pub const MAX_BODY: u64 = 1 << 30;

/// Longest request head (request line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;

/// How often a blocked `accept` or `read` wakes up to look at the stop flag.
const POLL: Duration = Duration::from_millis(200);

/// A connection that sends nothing for this long is closed.
const IDLE_LIMIT: Duration = Duration::from_secs(30);

/// An HTTPS client that has not sent its request this long after connecting is dropped.
const TLS_IDLE_LIMIT: Duration = Duration::from_secs(10);

/// Size of the chunks `GET /bytes/N` and `POST /upload` stream through.
const CHUNK: usize = 64 * 1024;

/// Serve a banner, test bytes and upload hashes over HTTP: the service on a lab real server.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpdArgs {
    /// Address and port to listen on, e.g. 10.100.0.100:80 or 0.0.0.0:80; repeat for several.
    #[arg(long, value_name = "ADDR:PORT", required = true)]
    pub listen: Vec<SocketAddr>,
    /// First line of every answer [default: "from <IP of the first --listen>"].
    #[arg(long, value_name = "TEXT")]
    pub banner: Option<String>,
    /// Also answer each UDP datagram to a --listen address with the banner, then the length
    /// and SHA-256 of the datagram (`length N`, `sha256 HEX`).
    #[arg(long)]
    pub udp_echo: bool,
    /// Serve HTTPS instead of HTTP on every --listen address, with a self-signed certificate
    /// made at start (for SSL_GET health checks): `GET /` and `GET /whoami`, one request per
    /// connection.
    #[arg(long)]
    pub tls: bool,
}

/// Runs `tunlb httpd`: binds every `--listen` address, then serves until the process is killed.
pub fn run(args: HttpdArgs) -> anyhow::Result<()> {
    let first = args
        .listen
        .first()
        .context("at least one --listen is needed")?;
    let banner = args
        .banner
        .clone()
        .unwrap_or_else(|| format!("from {}", first.ip()));
    let mut listeners = Vec::with_capacity(args.listen.len());
    let mut udp_sockets = Vec::new();
    for addr in &args.listen {
        listeners.push(bind(*addr).with_context(|| format!("cannot listen on {addr}"))?);
        log::info!("tunlb httpd: listening on {addr}");
        if args.udp_echo {
            let socket =
                UdpSocket::bind(addr).with_context(|| format!("cannot bind UDP {addr}"))?;
            udp_sockets.push(socket);
            log::info!("tunlb httpd: answering UDP on {addr}");
        }
    }
    let banner: Arc<str> = banner_line(&banner).into();
    let stop = Arc::new(AtomicBool::new(false));
    let tls = match args.tls {
        true => {
            let mut names: Vec<String> = args
                .listen
                .iter()
                .filter(|a| !a.ip().is_unspecified())
                .map(|a| a.ip().to_string())
                .collect();
            names.push("localhost".into());
            let config =
                crate::health::tls::self_signed_server(names).map_err(anyhow::Error::msg)?;
            log::info!("tunlb httpd: serving HTTPS with a self-signed certificate");
            Some(config)
        }
        false => None,
    };
    let mut workers: Vec<_> = listeners
        .into_iter()
        .map(|listener| {
            let (banner, stop, tls) = (banner.clone(), stop.clone(), tls.clone());
            thread::spawn(move || match tls {
                Some(config) => serve_tls(listener, banner, stop, config),
                None => serve(listener, banner, stop),
            })
        })
        .collect();
    workers.extend(udp_sockets.into_iter().map(|socket| {
        let (banner, stop) = (banner.clone(), stop.clone());
        thread::spawn(move || serve_udp(socket, banner, stop))
    }));
    for worker in workers {
        match worker.join() {
            Ok(result) => result.context("httpd listener failed")?,
            Err(_) => anyhow::bail!("httpd listener thread panicked"),
        }
    }
    Ok(())
}

/// Binds a listening socket (port 0 picks a free port; see [`TcpListener::local_addr`]).
pub fn bind(listen: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(listen)
}

/// Serves HTTP on `listener` until `stop` becomes true; each connection gets its own thread.
///
/// `banner` is sent as is (give it a trailing newline). `stop` is checked at least every 200 ms,
/// by the accept loop and by idle connections; a connection in the middle of a transfer finishes
/// it first.
pub fn serve(listener: TcpListener, banner: Arc<str>, stop: Arc<AtomicBool>) -> io::Result<()> {
    // A receive timeout on a listening socket bounds how long accept() blocks (Linux).
    socket2::SockRef::from(&listener).set_read_timeout(Some(POLL))?;
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let (banner, stop) = (banner.clone(), stop.clone());
                thread::spawn(move || {
                    // A connection's errors (peer reset, timeout) concern that connection only.
                    let _ = Connection::new(stream, peer, &banner, &stop).and_then(|c| c.run());
                });
            }
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
            // Aborted handshakes and a full fd table are worth a retry, not the end of the server.
            Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => thread::sleep(POLL),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Serves HTTPS on `listener` with `config` until `stop` becomes true: one request per
/// connection, each on a thread of its own (see the module doc for what is answered).
pub fn serve_tls(
    listener: TcpListener,
    banner: Arc<str>,
    stop: Arc<AtomicBool>,
    config: Arc<rustls::ServerConfig>,
) -> io::Result<()> {
    socket2::SockRef::from(&listener).set_read_timeout(Some(POLL))?;
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let (banner, config) = (banner.clone(), config.clone());
                thread::spawn(move || {
                    // A failed handshake or a silent client concerns that connection only.
                    let _ = tls_connection(stream, peer, &banner, config);
                });
            }
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => thread::sleep(POLL),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One HTTPS connection: handshake, one request head, one answer, close_notify.
fn tls_connection(
    stream: TcpStream,
    peer: SocketAddr,
    banner: &str,
    config: Arc<rustls::ServerConfig>,
) -> io::Result<()> {
    stream.set_read_timeout(Some(TLS_IDLE_LIMIT))?;
    stream.set_write_timeout(Some(IDLE_LIMIT))?;
    stream.set_nodelay(true)?;
    let conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, stream);
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > MAX_HEAD {
            break head.len();
        }
        let n = tls.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    };
    let parsed = match head.get(..end) {
        Some(h) if end <= MAX_HEAD => parse_head(h),
        _ => Err(Reject(431, "Request Header Fields Too Large")),
    };
    let (code, reason, body) = match parsed {
        Err(Reject(code, reason)) => (code, reason, format!("{code} {reason}\n")),
        Ok(req) if req.method != "GET" => (405, "Method Not Allowed", "405\n".to_string()),
        Ok(req) => match req.path.split('?').next().unwrap_or("") {
            "/" => (200, "OK", banner.to_string()),
            "/whoami" => (200, "OK", format!("{banner}client {peer}\n")),
            _ => (404, "Not Found", "404 Not Found\n".to_string()),
        },
    };
    let mut out = head_bytes(code, reason, "text/plain", body.len() as u64, false, banner);
    out.extend_from_slice(body.as_bytes());
    tls.write_all(&out)?;
    tls.conn.send_close_notify();
    tls.flush()
}

/// Answers every datagram arriving on `socket` with [`udp_answer`] until `stop` becomes true
/// (checked at least every 200 ms).
pub fn serve_udp(socket: UdpSocket, banner: Arc<str>, stop: Arc<AtomicBool>) -> io::Result<()> {
    socket.set_read_timeout(Some(POLL))?;
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((n, peer)) => {
                // A lost answer is the client's to notice.
                let _ = socket.send_to(udp_answer(&banner, &buf[..n]).as_bytes(), peer);
            }
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
            // An ICMP error about an earlier answer: nothing to do with the next datagram.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The answer to a UDP datagram: `banner` (sent as is: give it a trailing newline), then
/// `length N\nsha256 HEX\n` of `datagram`.
pub fn udp_answer(banner: &str, datagram: &[u8]) -> String {
    format!(
        "{banner}length {}\nsha256 {}\n",
        datagram.len(),
        sha256_hex(datagram)
    )
}

/// Byte `i` of the test blob: byte `i % 8` (little-endian) of the `i / 8`-th output of splitmix64
/// seeded with 0, i.e. `mix((i / 8 + 1) * 0x9E3779B97F4A7C15)`.
///
/// The blob is what `GET /bytes/N` sends; a test computes the expected hash with [`blob_sha256`].
/// Writes bytes `offset .. offset + buf.len()` of the blob into `buf`.
pub fn fill_blob(offset: u64, buf: &mut [u8]) {
    let mut pos = offset;
    let mut rest = buf;
    while !rest.is_empty() {
        let word = splitmix64_output(pos / 8).to_le_bytes();
        let start = (pos % 8) as usize;
        let n = (8 - start).min(rest.len());
        let (head, tail) = rest.split_at_mut(n);
        head.copy_from_slice(&word[start..start + n]);
        rest = tail;
        pos += n as u64;
    }
}

/// The first `n` bytes of the test blob (see [`fill_blob`]), one at a time.
pub fn blob(n: u64) -> impl Iterator<Item = u8> {
    (0..n).map(|i| splitmix64_output(i / 8).to_le_bytes()[(i % 8) as usize])
}

/// SHA-256 of the first `n` bytes of the test blob, as lowercase hex.
pub fn blob_sha256(n: u64) -> String {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < n {
        let len = (n - done).min(CHUNK as u64) as usize;
        fill_blob(done, &mut buf[..len]);
        hasher.update(&buf[..len]);
        done += len as u64;
    }
    hex(&hasher.finalize())
}

/// SHA-256 of `data` as lowercase hex (what `POST /upload` reports).
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// The `k`-th output (from 0) of splitmix64 seeded with 0.
fn splitmix64_output(k: u64) -> u64 {
    let mut z = k.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The banner as sent: with exactly one trailing newline.
fn banner_line(banner: &str) -> String {
    format!("{}\n", banner.trim_end_matches('\n'))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// What the request head says that matters to us.
struct Request {
    method: String,
    path: String,
    content_length: u64,
    keep_alive: bool,
    expect_continue: bool,
    chunked: bool,
}

/// Why a request could not be answered normally: status code and reason phrase.
struct Reject(u16, &'static str);

/// One client connection: a buffered reader and the raw stream for writing.
struct Connection<'a> {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    peer: SocketAddr,
    banner: &'a str,
    stop: &'a AtomicBool,
}

impl<'a> Connection<'a> {
    fn new(
        stream: TcpStream,
        peer: SocketAddr,
        banner: &'a str,
        stop: &'a AtomicBool,
    ) -> io::Result<Self> {
        stream.set_read_timeout(Some(POLL))?;
        stream.set_write_timeout(Some(IDLE_LIMIT))?;
        // Small answers go out in one write; do not let Nagle hold a response's last segment.
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        Ok(Connection {
            reader: BufReader::with_capacity(CHUNK, stream),
            writer,
            peer,
            banner,
            stop,
        })
    }

    /// Answers requests until the client closes, asks to close, errs, idles out, or we stop.
    fn run(mut self) -> io::Result<()> {
        loop {
            let Some(head) = self.read_head()? else {
                return Ok(());
            };
            let request = match parse_head(&head) {
                Ok(request) => request,
                Err(Reject(code, reason)) => return self.respond_error(code, reason, false),
            };
            if !self.answer(&request)? || !request.keep_alive {
                return Ok(());
            }
        }
    }

    /// Reads one request head (up to the empty line). `None`: clean end of the connection.
    fn read_head(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut head = Vec::new();
        let mut idle = Duration::ZERO;
        loop {
            let before = head.len();
            match self.reader.read_until(b'\n', &mut head) {
                Ok(0) => return Ok(None),
                Ok(_) if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") => {
                    return Ok(Some(head));
                }
                // Blank lines before a request line are allowed (RFC 9112 §2.2).
                Ok(_) if head == b"\r\n" || head == b"\n" => head.clear(),
                Ok(_) => idle = Duration::ZERO,
                Err(e) if is_timeout(&e) => {
                    idle += POLL;
                    if head.len() > before {
                        idle = Duration::ZERO;
                    }
                    if self.stop.load(Ordering::Relaxed) || idle >= IDLE_LIMIT {
                        return Ok(None);
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if head.len() > MAX_HEAD {
                self.respond_error(431, "Request Header Fields Too Large", false)?;
                return Ok(None);
            }
        }
    }

    /// Answers one parsed request; `false` when the connection must close afterwards.
    fn answer(&mut self, req: &Request) -> io::Result<bool> {
        if req.chunked {
            self.respond_error(501, "Not Implemented", false)?;
            return Ok(false);
        }
        if req.content_length > MAX_BODY {
            self.respond_error(413, "Content Too Large", false)?;
            return Ok(false);
        }
        if req.expect_continue && req.content_length > 0 {
            self.writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let path = req.path.split('?').next().unwrap_or("");
        match (req.method.as_str(), path) {
            ("POST", "/upload") => {
                let (len, hash) = self.hash_body(req.content_length)?;
                let body = format!("length {len}\nsha256 {hash}\n");
                self.respond(200, "OK", "text/plain", body.as_bytes(), req.keep_alive)?;
            }
            (method, _) => {
                // Bodies on other requests are read and dropped to stay in step.
                self.hash_body(req.content_length)?;
                if method != "GET" {
                    self.respond_error(405, "Method Not Allowed", req.keep_alive)?;
                } else if path == "/" {
                    let body = self.banner.as_bytes();
                    self.respond(200, "OK", "text/plain", body, req.keep_alive)?;
                } else if path == "/whoami" {
                    let body = format!("{}client {}\n", self.banner, self.peer);
                    self.respond(200, "OK", "text/plain", body.as_bytes(), req.keep_alive)?;
                } else if let Some(n) = path.strip_prefix("/bytes/") {
                    match n.parse::<u64>() {
                        Ok(n) if n <= MAX_BODY => self.send_blob(n, req.keep_alive)?,
                        Ok(_) => self.respond_error(413, "Content Too Large", req.keep_alive)?,
                        Err(_) => self.respond_error(400, "Bad Request", req.keep_alive)?,
                    }
                } else {
                    self.respond_error(404, "Not Found", req.keep_alive)?;
                }
            }
        }
        Ok(true)
    }

    /// Reads exactly `len` body bytes, hashing them; returns the count and the hex SHA-256.
    fn hash_body(&mut self, len: u64) -> io::Result<(u64, String)> {
        let mut hasher = Sha256::new();
        let mut left = len;
        let mut idle = Duration::ZERO;
        while left > 0 {
            let buf = match self.reader.fill_buf() {
                Ok([]) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(buf) => buf,
                Err(e) if is_timeout(&e) => {
                    idle += POLL;
                    if idle >= IDLE_LIMIT {
                        return Err(e);
                    }
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            idle = Duration::ZERO;
            let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            hasher.update(&buf[..n]);
            self.reader.consume(n);
            left -= n as u64;
        }
        Ok((len, hex(&hasher.finalize())))
    }

    /// Streams `n` bytes of the blob as the body of a 200.
    fn send_blob(&mut self, n: u64, keep_alive: bool) -> io::Result<()> {
        self.write_head(200, "OK", "application/octet-stream", n, keep_alive)?;
        let mut buf = vec![0u8; CHUNK];
        let mut done = 0u64;
        while done < n {
            let len = (n - done).min(CHUNK as u64) as usize;
            fill_blob(done, &mut buf[..len]);
            self.writer.write_all(&buf[..len])?;
            done += len as u64;
        }
        Ok(())
    }

    fn respond(
        &mut self,
        code: u16,
        reason: &str,
        content_type: &str,
        body: &[u8],
        keep_alive: bool,
    ) -> io::Result<()> {
        let len = body.len() as u64;
        let mut out = head_bytes(code, reason, content_type, len, keep_alive, self.banner);
        out.extend_from_slice(body);
        self.writer.write_all(&out)
    }

    fn respond_error(&mut self, code: u16, reason: &str, keep_alive: bool) -> io::Result<()> {
        let body = format!("{code} {reason}\n");
        self.respond(code, reason, "text/plain", body.as_bytes(), keep_alive)
    }

    fn write_head(
        &mut self,
        code: u16,
        reason: &str,
        content_type: &str,
        len: u64,
        keep_alive: bool,
    ) -> io::Result<()> {
        let head = head_bytes(code, reason, content_type, len, keep_alive, self.banner);
        self.writer.write_all(&head)
    }
}

/// A response head. `X-Served-By` carries the banner, so a client that saves the headers
/// (`curl -D`) knows which server answered even when the body is test bytes.
fn head_bytes(
    code: u16,
    reason: &str,
    content_type: &str,
    len: u64,
    keep_alive: bool,
    banner: &str,
) -> Vec<u8> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    // A header value is one line: control characters in the banner become spaces.
    let served_by: String = banner
        .trim_end_matches('\n')
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!(
        "HTTP/1.1 {code} {reason}\r\nServer: tunlb-httpd\r\nX-Served-By: {served_by}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {len}\r\nConnection: {connection}\r\n\r\n"
    )
    .into_bytes()
}

/// Parses a request head; every problem is a [`Reject`] with the status to answer.
fn parse_head(head: &[u8]) -> Result<Request, Reject> {
    const BAD: Reject = Reject(400, "Bad Request");
    let text = std::str::from_utf8(head).map_err(|_| BAD)?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let mut parts = lines.next().ok_or(BAD)?.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BAD);
    };
    if method.is_empty() || !path.starts_with('/') {
        return Err(BAD);
    }
    let mut keep_alive = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(Reject(505, "HTTP Version Not Supported")),
    };
    let mut request = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        content_length: 0,
        keep_alive,
        expect_continue: false,
        chunked: false,
    };
    let mut seen_length = false;
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(BAD)?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let len = value.parse::<u64>().map_err(|_| BAD)?;
            if seen_length && len != request.content_length {
                return Err(BAD);
            }
            request.content_length = len;
            seen_length = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            request.expect_continue = value.eq_ignore_ascii_case("100-continue");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            request.chunked = true;
        }
    }
    request.keep_alive = keep_alive;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A server on 127.0.0.1:0 that stops when dropped.
    struct TestServer {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        thread: Option<thread::JoinHandle<io::Result<()>>>,
    }

    impl TestServer {
        fn start() -> TestServer {
            let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            let banner: Arc<str> = banner_line("from 127.0.0.1").into();
            let thread = Some(thread::spawn(move || serve(listener, banner, flag)));
            TestServer { addr, stop, thread }
        }

        fn connect(&self) -> Client {
            let stream = TcpStream::connect(self.addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            Client {
                reader: BufReader::new(stream.try_clone().unwrap()),
                writer: stream,
            }
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    struct Client {
        reader: BufReader<TcpStream>,
        writer: TcpStream,
    }

    /// A parsed response: status code, lowercase headers, body.
    struct Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Response {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
        fn text(&self) -> &str {
            std::str::from_utf8(&self.body).unwrap()
        }
    }

    impl Client {
        fn send(&mut self, raw: &[u8]) {
            self.writer.write_all(raw).unwrap();
        }

        /// Reads one response; `None` if the server closed the connection first.
        fn read(&mut self) -> Option<Response> {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap() == 0 {
                return None;
            }
            let status = line.split(' ').nth(1).unwrap().parse().unwrap();
            let mut headers = Vec::new();
            loop {
                line.clear();
                self.reader.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                let (n, v) = l.split_once(':').unwrap();
                headers.push((n.to_ascii_lowercase(), v.trim().to_owned()));
            }
            let mut response = Response {
                status,
                headers,
                body: Vec::new(),
            };
            if status == 100 {
                return Some(response);
            }
            let len: usize = response.header("content-length").unwrap().parse().unwrap();
            response.body = vec![0; len];
            self.reader.read_exact(&mut response.body).unwrap();
            Some(response)
        }

        fn get(&mut self, path: &str) -> Response {
            self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
            self.read().unwrap()
        }
    }

    #[test]
    fn blob_matches_splitmix64_reference_output() {
        // splitmix64 seeded with 0: first outputs 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4.
        let first: Vec<u8> = blob(16).collect();
        let mut expected = 0xe220_a839_7b1d_cdafu64.to_le_bytes().to_vec();
        expected.extend_from_slice(&0x6e78_9e6a_a1b9_65f4u64.to_le_bytes());
        assert_eq!(first, expected);
    }

    #[test]
    fn fill_blob_at_any_offset_agrees_with_blob() {
        let all: Vec<u8> = blob(100).collect();
        for offset in 0..40 {
            for len in [0, 1, 7, 8, 9, 31] {
                let mut buf = vec![0u8; len];
                fill_blob(offset as u64, &mut buf);
                assert_eq!(buf, all[offset..offset + len], "offset {offset} len {len}");
            }
        }
        let n = 3 * CHUNK as u64 + 5;
        assert_eq!(blob_sha256(n), sha256_hex(&blob(n).collect::<Vec<_>>()));
    }

    #[test]
    fn get_root_answers_the_banner_twice_on_one_keep_alive_connection() {
        let server = TestServer::start();
        let mut client = server.connect();
        for _ in 0..2 {
            let response = client.get("/");
            assert_eq!(response.status, 200);
            assert_eq!(response.text(), "from 127.0.0.1\n");
            assert_eq!(response.header("connection"), Some("keep-alive"));
        }
    }

    #[test]
    fn every_answer_names_its_server_in_x_served_by() {
        let server = TestServer::start();
        let mut client = server.connect();
        for path in ["/", "/bytes/10", "/nosuch"] {
            let response = client.get(path);
            assert_eq!(
                response.header("x-served-by"),
                Some("from 127.0.0.1"),
                "{path}"
            );
        }
        let head = head_bytes(200, "OK", "text/plain", 0, false, "a\r\nEvil: 1\n");
        let head = String::from_utf8(head).unwrap();
        assert!(head.contains("\r\nX-Served-By: a  Evil: 1\r\n"), "{head}");
    }

    #[test]
    fn whoami_reports_the_client_address() {
        let server = TestServer::start();
        let mut client = server.connect();
        let local = client.writer.local_addr().unwrap();
        let response = client.get("/whoami");
        assert_eq!(response.text(), format!("from 127.0.0.1\nclient {local}\n"));
    }

    #[test]
    fn bytes_serves_the_blob() {
        let server = TestServer::start();
        let mut client = server.connect();
        let n = 200_000;
        let response = client.get(&format!("/bytes/{n}"));
        assert_eq!(response.status, 200);
        assert_eq!(response.body.len(), n);
        assert_eq!(sha256_hex(&response.body), blob_sha256(n as u64));
        assert_eq!(client.get("/bytes/0").body.len(), 0);
        assert_eq!(client.get("/bytes/x").status, 400);
        assert_eq!(client.get(&format!("/bytes/{}", MAX_BODY + 1)).status, 413);
    }

    #[test]
    fn upload_answers_length_and_sha256_after_100_continue() {
        let server = TestServer::start();
        let mut client = server.connect();
        let body: Vec<u8> = blob(150_000).collect();
        client.send(
            format!(
                "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\
                 Expect: 100-continue\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        assert_eq!(client.read().unwrap().status, 100);
        client.send(&body);
        let response = client.read().unwrap();
        assert_eq!(response.status, 200);
        let expected = format!("length {}\nsha256 {}\n", body.len(), sha256_hex(&body));
        assert_eq!(response.text(), expected);
        // The connection is still in step for the next request.
        assert_eq!(client.get("/").status, 200);
    }

    #[test]
    fn connection_close_and_http_1_0_close_after_the_answer() {
        let server = TestServer::start();
        let mut client = server.connect();
        client.send(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert_eq!(client.read().unwrap().header("connection"), Some("close"));
        assert!(client.read().is_none());

        let mut client = server.connect();
        client.send(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(client.read().unwrap().status, 200);
        assert!(client.read().is_none());
    }

    #[test]
    fn bad_requests_get_4xx_and_5xx_answers() {
        let server = TestServer::start();
        let mut client = server.connect();
        assert_eq!(client.get("/nope").status, 404);
        client.send(b"DELETE / HTTP/1.1\r\n\r\n");
        assert_eq!(client.read().unwrap().status, 405);
        client.send(b"POST /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(client.read().unwrap().status, 501);

        for raw in [
            &b"garbage\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"\xff\xfe / HTTP/1.1\r\n\r\n",
        ] {
            let mut client = server.connect();
            client.send(raw);
            assert_eq!(
                client.read().unwrap().status,
                400,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let mut client = server.connect();
        client.send(b"GET / HTTP/2.0\r\n\r\n");
        assert_eq!(client.read().unwrap().status, 505);
        let mut client = server.connect();
        client.send(format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD)).as_bytes());
        assert_eq!(client.read().unwrap().status, 431);
    }

    #[test]
    fn udp_datagrams_are_answered_with_banner_length_and_sha256() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let banner: Arc<str> = banner_line("from 127.0.0.1").into();
        let server = thread::spawn(move || serve_udp(socket, banner, flag));
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        for len in [0, 1, 1472, 4000] {
            let mut data = vec![0u8; len];
            fill_blob(len as u64, &mut data);
            client.send_to(&data, addr).unwrap();
            let mut buf = [0u8; 512];
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(from, addr);
            assert_eq!(
                std::str::from_utf8(&buf[..n]).unwrap(),
                format!(
                    "from 127.0.0.1\nlength {len}\nsha256 {}\n",
                    sha256_hex(&data)
                )
            );
        }
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap().unwrap();
    }

    #[test]
    fn tls_serves_the_banner_to_an_ssl_get_check() {
        use crate::health::config::{CheckKind, CheckSpec, UrlSpec};
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let banner: Arc<str> = banner_line("from 127.0.0.1").into();
        let config = crate::health::tls::self_signed_server(vec!["127.0.0.1".into()]).unwrap();
        let (flag, b) = (stop.clone(), banner.clone());
        let server = thread::spawn(move || serve_tls(listener, b, flag, config));
        let check = |path: &str, digest: Option<String>| {
            let spec = CheckSpec::new(CheckKind::SslGet {
                urls: vec![UrlSpec {
                    path: path.into(),
                    status_code: Some(200),
                    digest,
                }],
                virtualhost: None,
                enable_sni: false,
                sni_name: None,
            });
            crate::health::tls::run(
                &spec,
                &crate::health::target::Target {
                    bind: None,
                    bind_port: None,
                    connect: (std::net::Ipv4Addr::LOCALHOST, port).into(),
                    through: None,
                },
            )
        };
        let digest = crate::health::probe::md5_hex(banner.as_bytes());
        let ok = check("/", Some(digest));
        assert!(ok.ok, "{ok:?}");
        let missing = check("/nothing", None);
        assert_eq!(missing.reason, "HTTP status 404 on /nothing");
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap().unwrap();
    }

    #[test]
    fn serve_returns_soon_after_stop() {
        let server = TestServer::start();
        let started = std::time::Instant::now();
        drop(server);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
