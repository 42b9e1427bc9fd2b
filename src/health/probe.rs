//! The probes: the only IO of health checking. Each runs blocking, with timeouts, on a thread
//! of its own (one per probe in flight: checks run every `delay_loop` seconds per real server, so
//! a few threads at a time; std threads keep tokio out of the build).
//!
//! - TCP_CHECK: a TCP connect within `connect_timeout`.
//! - HTTP_GET: `GET path HTTP/1.0` for each URL; the whole exchange within `connect_timeout`;
//!   the status must be `status_code` (default: any 2xx) and, if set, the MD5 of the body
//!   (lowercase hex, as keepalived's `genhash` prints it) must equal `digest`.
//! - MISC_CHECK: `/bin/sh -c misc_path` as its `user` (default: `script_user`, else
//!   `keepalived_script` or `nobody`: [`crate::sys::script`]), killed with its process group
//!   after `misc_timeout` (default: delay_loop);
//!   exit 0 = up; with `misc_dynamic` 1 = down and 2 + N = up with weight N, else non-zero = down.
//! - SSL_GET ([`super::tls`]): TLS (rustls, any server certificate accepted, as keepalived
//!   without a CA), then the HTTP_GET exchange and rules; the whole within `connect_timeout`.
//! - UDP_CHECK and PING_CHECK ([`super::probe_udp`]): a datagram that must draw no ICMP error
//!   (and, with `require_reply`, a fitting reply); an ICMP echo that must be answered.
//!
//! Where TCP-based probes connect from and to (the real server, or with `check_through_tunnel`
//! the VIP through the data path) is [`super::target`]'s business.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

use super::checker::CheckOutcome;
use super::config::{CheckKind, CheckSpec, UrlSpec};
use super::target::{self, Target};
use crate::model::ScriptUser;
use crate::sys::script;

/// The most body bytes an HTTP probe reads (and hashes).
pub const MAX_BODY: usize = 1 << 20;

/// Runs one probe of `spec` against real server `rip:port` (IPv4 or IPv6), to its own address.
pub fn run(spec: &CheckSpec, rip: IpAddr, port: u16, delay_loop: Duration) -> CheckOutcome {
    run_to(spec, &target::target(spec, rip, port, None), delay_loop)
}

/// Runs one probe of `spec` against `to` (see [`target::target`]: the real server, or the
/// VIP through the data path).
pub fn run_to(spec: &CheckSpec, to: &Target, delay_loop: Duration) -> CheckOutcome {
    let target = to.connect;
    match &spec.kind {
        CheckKind::Tcp => match target::connect(spec, to) {
            Ok(_) => CheckOutcome::ok(format!("TCP connect to {target} ok")),
            Err(reason) => CheckOutcome::failed(reason),
        },
        CheckKind::HttpGet { urls, virtualhost } => {
            let host = virtualhost.clone().unwrap_or_else(|| default_host(target));
            for url in urls {
                if let Err(reason) = http_get(spec, to, &host, url) {
                    return CheckOutcome::failed(reason);
                }
            }
            CheckOutcome::ok(format!("HTTP GET on {target} ok"))
        }
        CheckKind::SslGet { .. } => super::tls::run(spec, to),
        CheckKind::Udp(udp) => super::probe_udp::udp(spec, udp, target),
        CheckKind::Ping => super::probe_udp::ping(spec, target.ip()),
        CheckKind::Misc {
            path,
            timeout,
            dynamic,
            user,
        } => misc(path, timeout.unwrap_or(delay_loop), *dynamic, user.as_ref()),
    }
}

fn http_get(spec: &CheckSpec, to: &Target, host: &str, url: &UrlSpec) -> Result<(), String> {
    let deadline = Instant::now() + spec.connect_timeout;
    let (mut s, _pin) = target::connect(spec, to)?;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let timeout = || {
        format!(
            "timeout {}s on {}",
            spec.connect_timeout.as_secs_f32(),
            url.path
        )
    };
    s.set_write_timeout(Some(left()))
        .map_err(|e| e.to_string())?;
    s.write_all(request(&url.path, host).as_bytes())
        .map_err(|_| timeout())?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        s.set_read_timeout(Some(left()))
            .map_err(|e| e.to_string())?;
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > MAX_BODY + 16 * 1024 {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                if Instant::now() >= deadline
                    || matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    )
                {
                    return Err(timeout());
                }
                return Err(format!("reading {} from {}: {e}", url.path, to.connect));
            }
        }
    }
    judge(&buf, url)
}

/// The Host header of HTTP_GET and SSL_GET without `virtualhost`: the address probed, for
/// IPv6 in brackets with the port as keepalived writes it (`[2001:db8::1]:80`, RFC 3986's
/// IP-literal; a bare IPv6 address is no valid Host). IPv4 stays the bare address tunlb has
/// always sent.
pub fn default_host(target: SocketAddr) -> String {
    match target {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// The request HTTP_GET and SSL_GET send for `path`.
pub(super) fn request(path: &str, host: &str) -> String {
    format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: tunlb health check\r\nConnection: close\r\n\r\n"
    )
}

/// Whether the response in `buf` passes `url`'s rules (status, then digest); why not if not.
pub(crate) fn judge(buf: &[u8], url: &UrlSpec) -> Result<(), String> {
    let (status, body) =
        parse_response(buf).ok_or_else(|| format!("no HTTP response on {}", url.path))?;
    let good = match url.status_code {
        Some(want) => status == want,
        None => (200..300).contains(&status),
    };
    if !good {
        return Err(format!("HTTP status {status} on {}", url.path));
    }
    if let Some(want) = &url.digest {
        let got = md5_hex(body);
        if !got.eq_ignore_ascii_case(want) {
            return Err(format!(
                "MD5 digest {got} on {} (expected {want})",
                url.path
            ));
        }
    }
    Ok(())
}

/// The status code and body of an HTTP/1.x response (`None` if it is not one).
pub fn parse_response(buf: &[u8]) -> Option<(u16, &[u8])> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(buf.get(..head_end)?).ok()?;
    let status_line = head.lines().next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code: u16 = parts.next()?.parse().ok()?;
    let body = buf.get(head_end + 4..)?;
    Some((code, body.get(..body.len().min(MAX_BODY))?))
}

/// MD5 of `body` in lowercase hex, as keepalived's `digest` and `genhash` write it.
pub fn md5_hex(body: &[u8]) -> String {
    Md5::digest(body)
        .iter()
        .fold(String::with_capacity(32), |mut s, b| {
            use std::fmt::Write as _;
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// MISC_CHECK: `/bin/sh -c path` as `user` (see [`script::RunAs::resolve`]) in a session of
/// its own, killed with its process group after `timeout`.
fn misc(path: &str, timeout: Duration, dynamic: bool, user: Option<&ScriptUser>) -> CheckOutcome {
    let who = match script::RunAs::resolve(user, None) {
        Ok(w) => w,
        Err(e) => return CheckOutcome::failed(format!("running {path:?}: {e}")),
    };
    let mut child = match script::spawn(path, &who) {
        Ok(c) => c,
        Err(e) => return CheckOutcome::failed(e.to_string()),
    };
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                script::kill_group(&mut child);
                return CheckOutcome::failed(format!(
                    "{path:?} timed out after {}s",
                    timeout.as_secs_f32()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return CheckOutcome::failed(format!("waiting for {path:?}: {e}")),
        }
    };
    misc_outcome(path, status.code(), dynamic)
}

/// MISC_CHECK's reading of an exit code (`None`: killed by a signal).
pub fn misc_outcome(path: &str, code: Option<i32>, dynamic: bool) -> CheckOutcome {
    match code {
        Some(0) => CheckOutcome::ok(format!("{path:?} exited 0")),
        Some(c) if dynamic && c >= 2 => CheckOutcome {
            ok: true,
            weight: Some((c - 2) as u32),
            reason: format!("{path:?} exited {c}: weight {}", c - 2),
        },
        Some(c) => CheckOutcome::failed(format!("{path:?} exited {c}")),
        None => CheckOutcome::failed(format!("{path:?} killed by a signal")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn parses_status_and_body() {
        let r = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 2\r\n\r\nno";
        assert_eq!(parse_response(r), Some((503, &b"no"[..])));
        assert_eq!(parse_response(b"SSH-2.0\r\n\r\n"), None);
        assert_eq!(parse_response(b"HTTP/1.1 200"), None);
        assert_eq!(parse_response(b"HTTP/1.1 abc x\r\n\r\n"), None);
    }

    #[test]
    fn md5_matches_known_vectors() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn misc_exit_codes() {
        assert!(misc_outcome("x", Some(0), true).ok);
        assert!(!misc_outcome("x", Some(1), true).ok);
        assert_eq!(misc_outcome("x", Some(7), true).weight, Some(5));
        assert!(!misc_outcome("x", Some(7), false).ok);
        assert!(!misc_outcome("x", None, true).ok);
    }

    #[test]
    fn misc_runs_a_program_with_timeout() {
        let o = run(
            &CheckSpec::new(CheckKind::Misc {
                path: "exit 4".into(),
                timeout: Some(Duration::from_secs(5)),
                dynamic: true,
                user: None,
            }),
            Ipv4Addr::LOCALHOST.into(),
            80,
            Duration::from_secs(60),
        );
        assert_eq!(o.weight, Some(2));
        let slow = misc("sleep 5", Duration::from_millis(100), false, None);
        assert!(!slow.ok && slow.reason.contains("timed out"), "{slow:?}");
    }

    #[test]
    fn the_default_host_brackets_ipv6_with_the_port() {
        let v4 = SocketAddr::new(Ipv4Addr::new(10, 0, 1, 1).into(), 8080);
        assert_eq!(default_host(v4), "10.0.1.1", "IPv4 as it always was");
        let v6 = SocketAddr::new("2001:db8::1".parse::<Ipv6Addr>().expect("v6").into(), 80);
        assert_eq!(default_host(v6), "[2001:db8::1]:80");
        assert_eq!(
            request("/", &default_host(v6)),
            "GET / HTTP/1.0\r\nHost: [2001:db8::1]:80\r\nUser-Agent: tunlb health check\r\n\
             Connection: close\r\n\r\n"
        );
    }

    #[test]
    fn http_tcp_and_udp_to_an_ipv6_real_server_with_connect_port_bindto_and_bind_port() {
        let lo6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let l = std::net::TcpListener::bind((lo6, 0)).expect("bind [::1]");
        let port = l.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (mut c, peer) = l.accept().expect("accept");
            let mut b = [0u8; 1024];
            let n = c.read(&mut b).expect("read");
            let _ = write!(c, "HTTP/1.0 200 OK\r\n\r\nhello");
            drop(c);
            let (_c, tcp_peer) = l.accept().expect("accept");
            (
                String::from_utf8_lossy(&b[..n]).into_owned(),
                peer,
                tcp_peer,
            )
        });
        // The real server's port is 80; connect_port takes the probe to the listener.
        let mut http = CheckSpec::new(CheckKind::HttpGet {
            urls: vec![UrlSpec {
                path: "/".into(),
                status_code: Some(200),
                digest: Some(md5_hex(b"hello")),
            }],
            virtualhost: None,
        });
        http.connect_port = Some(port);
        http.bindto = Some(lo6);
        let d = Duration::from_secs(1);
        let o = run(&http, lo6, 80, d);
        assert!(o.ok, "{o:?}");
        assert_eq!(o.reason, format!("HTTP GET on [::1]:{port} ok"));
        // bind_port: the probe comes from that port (held here so no one else takes it).
        let holder = std::net::UdpSocket::bind((lo6, 0)).expect("a free port");
        let from = holder.local_addr().expect("addr").port();
        drop(holder);
        let mut tcp = CheckSpec::new(CheckKind::Tcp);
        tcp.connect_port = Some(port);
        tcp.bind_port = Some(from);
        let o = run(&tcp, lo6, 80, d);
        assert!(o.ok, "{o:?}");
        assert_eq!(o.reason, format!("TCP connect to [::1]:{port} ok"));
        let (head, peer, tcp_peer) = server.join().expect("server");
        assert!(head.contains(&format!("Host: [::1]:{port}\r\n")), "{head}");
        assert_eq!(peer.ip(), lo6, "bound to bindto");
        assert_eq!(tcp_peer.port(), from, "bound to bind_port");
        // UDP_CHECK: a port nobody listens on answers port unreachable, named in brackets.
        let gone = std::net::UdpSocket::bind((lo6, 0)).expect("bind");
        let at = gone.local_addr().expect("addr");
        drop(gone);
        let mut udp = CheckSpec::new(CheckKind::Udp(Default::default()));
        udp.connect_port = Some(at.port());
        let o = run(&udp, lo6, 53, d);
        assert!(!o.ok, "{o:?}");
        assert_eq!(o.reason, format!("UDP to {at}: port unreachable"));
        assert!(o.reason.starts_with("UDP to [::1]:"), "{o:?}");
    }

    #[test]
    fn a_bindto_of_the_other_family_fails_the_probe() {
        let mut tcp = CheckSpec::new(CheckKind::Tcp);
        tcp.bindto = Some(Ipv4Addr::LOCALHOST.into());
        let o = run(&tcp, Ipv6Addr::LOCALHOST.into(), 9, Duration::from_secs(1));
        assert!(
            !o.ok && o.reason.starts_with("bind to 127.0.0.1: "),
            "{o:?}"
        );
    }

    #[test]
    fn http_and_tcp_against_a_loopback_server() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            for body in ["hello", "hello"] {
                let (mut c, _) = l.accept().expect("accept");
                let mut b = [0u8; 1024];
                let _ = c.read(&mut b);
                let _ = write!(c, "HTTP/1.0 200 OK\r\n\r\n{body}");
            }
            let (_c, _) = l.accept().expect("accept");
        });
        let http = |digest: Option<&str>| {
            CheckSpec::new(CheckKind::HttpGet {
                urls: vec![UrlSpec {
                    path: "/".into(),
                    status_code: Some(200),
                    digest: digest.map(String::from),
                }],
                virtualhost: None,
            })
        };
        let lo = Ipv4Addr::LOCALHOST.into();
        let d = Duration::from_secs(1);
        assert!(run(&http(Some(&md5_hex(b"hello"))), lo, port, d).ok);
        let bad = run(&http(Some("00")), lo, port, d);
        assert!(!bad.ok && bad.reason.starts_with("MD5 digest"), "{bad:?}");
        assert!(run(&CheckSpec::new(CheckKind::Tcp), lo, port, d).ok);
        server.join().expect("server");
        // A port that is bound but not listening refuses connections, and stays ours while the
        // other tests run (a closed ephemeral port could be taken by one of them meanwhile).
        let holder = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
        holder.bind(&any.into()).expect("bind");
        let closed = holder
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("local addr")
            .port();
        let refused = run(&CheckSpec::new(CheckKind::Tcp), lo, closed, d);
        assert!(!refused.ok, "{refused:?}");
    }
}
