//! SSL_GET: the HTTP_GET exchange over TLS (rustls with the ring provider).
//!
//! keepalived's semantics (keepalived.conf(5), SSL_GET):
//! - without a CA file keepalived does not verify the server's certificate, and neither does
//!   tunlb: any certificate is accepted ([`AnyCertificate`]), but the handshake's signatures
//!   are still checked against the certificate's key, so the peer must hold that key;
//! - `enable_sni` sends a server name: `sni_name`, else the virtualhost; no name when neither is
//!   set or it is an IP address (TLS forbids IP addresses in SNI);
//! - then, per `url`, `GET path` with the virtualhost (else the address probed) as Host, and
//!   the status and MD5 digest rules of HTTP_GET (the same code as [`super::probe`]);
//! - each URL's whole exchange (connect, handshake, request, response) within
//!   `connect_timeout`.
//!
//! Failures name the target: "TLS handshake with 10.0.0.3:443: timeout 5s",
//! "TLS handshake with 10.0.0.3:443: received corrupt message", "HTTP status 503 on /".
//!
//! [`self_signed_server`] makes the other end, for `tunlb httpd --tls` and the tests.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

use super::checker::CheckOutcome;
use super::config::{CheckKind, CheckSpec, UrlSpec};
use super::probe::{judge, request, MAX_BODY};
use super::target::{self, Target};

/// Runs one SSL_GET probe of `spec` against `to` (the real server, or the VIP through the data
/// path: see [`target::target`]).
pub fn run(spec: &CheckSpec, to: &Target) -> CheckOutcome {
    let target = to.connect;
    let CheckKind::SslGet {
        urls,
        virtualhost,
        enable_sni,
        sni_name,
    } = &spec.kind
    else {
        return CheckOutcome::failed("not an SSL_GET check");
    };
    let config = match client_config(*enable_sni) {
        Ok(c) => c,
        Err(e) => return CheckOutcome::failed(format!("TLS with {target}: {e}")),
    };
    let name = server_name(
        *enable_sni,
        sni_name.as_deref(),
        virtualhost.as_deref(),
        target,
    );
    let host = virtualhost
        .clone()
        .unwrap_or_else(|| super::probe::default_host(target));
    for url in urls {
        if let Err(reason) = get(spec, to, &config, &name, &host, url) {
            return CheckOutcome::failed(reason);
        }
    }
    CheckOutcome::ok(format!("SSL GET on {target} ok"))
}

/// The name the client gives rustls: a DNS name when SNI is on and one is configured (rustls
/// sends it), else the target's address (rustls sends no SNI for an address).
pub fn server_name(
    enable_sni: bool,
    sni_name: Option<&str>,
    virtualhost: Option<&str>,
    target: SocketAddr,
) -> ServerName<'static> {
    let by_ip = ServerName::from(target.ip());
    if !enable_sni {
        return by_ip;
    }
    match sni_name.or(virtualhost).map(ServerName::try_from) {
        Some(Ok(name @ ServerName::DnsName(_))) => name.to_owned(),
        _ => by_ip,
    }
}

/// A client config that accepts any server certificate, sending SNI or not.
fn client_config(enable_sni: bool) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.enable_sni = enable_sni;
    Ok(Arc::new(config))
}

/// One URL: connect, handshake, GET, read to the end, judge; all before the deadline.
fn get(
    spec: &CheckSpec,
    to: &Target,
    config: &Arc<ClientConfig>,
    name: &ServerName<'static>,
    host: &str,
    url: &UrlSpec,
) -> Result<(), String> {
    let target = to.connect;
    let deadline = Instant::now() + spec.connect_timeout;
    let secs = spec.connect_timeout.as_secs_f32();
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let is_timeout =
        |e: &std::io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
    let (mut sock, _pin) = target::connect(spec, to)?;
    let mut conn = ClientConnection::new(config.clone(), name.clone())
        .map_err(|e| format!("TLS handshake with {target}: {e}"))?;
    let handshake_err = |e: std::io::Error| {
        if is_timeout(&e) || Instant::now() >= deadline {
            format!("TLS handshake with {target}: timeout {secs}s")
        } else {
            format!("TLS handshake with {target}: {e}")
        }
    };
    while conn.is_handshaking() {
        if Instant::now() >= deadline {
            return Err(format!("TLS handshake with {target}: timeout {secs}s"));
        }
        sock.set_read_timeout(Some(left()))
            .and_then(|()| sock.set_write_timeout(Some(left())))
            .map_err(handshake_err)?;
        match conn.complete_io(&mut sock) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(handshake_err(e)),
        }
    }
    let timeout = || format!("timeout {secs}s on {} over TLS with {target}", url.path);
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.sock
        .set_write_timeout(Some(left()))
        .map_err(|e| e.to_string())?;
    tls.write_all(request(&url.path, host).as_bytes())
        .and_then(|()| tls.flush())
        .map_err(|e| {
            if is_timeout(&e) {
                timeout()
            } else {
                format!("sending {} over TLS to {target}: {e}", url.path)
            }
        })?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if Instant::now() >= deadline {
            return Err(timeout());
        }
        tls.sock
            .set_read_timeout(Some(left()))
            .map_err(|e| e.to_string())?;
        match tls.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                if buf.len() > MAX_BODY + 16 * 1024 {
                    break;
                }
            }
            // Many servers close without a close_notify after a `Connection: close` answer.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(timeout()),
            Err(e) => return Err(format!("reading {} over TLS from {target}: {e}", url.path)),
        }
    }
    tls.conn.send_close_notify();
    let _ = tls.conn.write_tls(tls.sock);
    judge(&buf, url)
}

/// keepalived's SSL_GET without a CA file: every certificate is taken as valid, but the
/// handshake signatures must verify with the certificate's key (so a man in the middle must
/// at least present a key it holds, and the TLS exchange is sound).
#[derive(Debug)]
pub struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS server config with a certificate made now, self-signed, for `names` (DNS names or IP
/// addresses): what `tunlb httpd --tls` and the tests serve with. Only in builds with the lab
/// (feature `lab`, which brings rcgen) and in tests.
#[cfg(any(test, feature = "lab"))]
pub fn self_signed_server(names: Vec<String>) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::ServerConfig;

    let cert = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("making a self-signed certificate: {e}"))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| {
            b.with_no_client_auth()
                .with_single_cert(vec![cert.cert.der().clone()], key)
        })
        .map_err(|e| format!("TLS server config: {e}"))?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::probe::md5_hex;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
    use std::sync::mpsc;

    /// A TLS server on 127.0.0.1 answering each connection with the next of `answers`; sends
    /// each SNI name it sees (or "") and the request head on `seen`.
    fn tls_server(
        answers: Vec<&'static str>,
    ) -> (
        u16,
        mpsc::Receiver<(String, String)>,
        std::thread::JoinHandle<()>,
    ) {
        tls_server_on(Ipv4Addr::LOCALHOST.into(), answers)
    }

    /// [`tls_server`] on `ip`.
    fn tls_server_on(
        ip: IpAddr,
        answers: Vec<&'static str>,
    ) -> (
        u16,
        mpsc::Receiver<(String, String)>,
        std::thread::JoinHandle<()>,
    ) {
        let l = TcpListener::bind((ip, 0)).expect("bind");
        let port = l.local_addr().expect("addr").port();
        let config =
            self_signed_server(vec!["localhost".into(), "127.0.0.1".into()]).expect("config");
        let (tx, rx) = mpsc::channel();
        let t = std::thread::spawn(move || {
            for answer in answers {
                let (s, _) = l.accept().expect("accept");
                s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let conn = rustls::ServerConnection::new(config.clone()).expect("conn");
                let mut tls = rustls::StreamOwned::new(conn, s);
                let mut head = Vec::new();
                let mut b = [0u8; 512];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let sni = tls.conn.server_name().unwrap_or("").to_string();
                let _ = tx.send((sni, String::from_utf8_lossy(&head).into_owned()));
                let _ = tls.write_all(answer.as_bytes());
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        (port, rx, t)
    }

    fn ssl_get(
        status: Option<u16>,
        digest: Option<String>,
        sni: bool,
        vhost: Option<&str>,
    ) -> CheckSpec {
        CheckSpec {
            connect_timeout: Duration::from_secs(3),
            ..CheckSpec::new(CheckKind::SslGet {
                urls: vec![UrlSpec {
                    path: "/health".into(),
                    status_code: status,
                    digest,
                }],
                virtualhost: vhost.map(String::from),
                enable_sni: sni,
                sni_name: None,
            })
        }
    }

    fn target(port: u16) -> Target {
        target_on(Ipv4Addr::LOCALHOST.into(), port)
    }

    fn target_on(ip: IpAddr, port: u16) -> Target {
        Target {
            bind: None,
            bind_port: None,
            connect: SocketAddr::new(ip, port),
            through: None,
        }
    }

    #[test]
    fn status_ok_and_wrong_status() {
        let (port, seen, t) = tls_server(vec![
            "HTTP/1.0 200 OK\r\n\r\nfine",
            "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\nbusy",
        ]);
        let ok = run(&ssl_get(None, None, false, None), &target(port));
        assert!(ok.ok, "{ok:?}");
        let (sni, head) = seen.recv().expect("request");
        assert_eq!(sni, "", "no SNI without enable_sni");
        assert!(head.starts_with("GET /health HTTP/1.0\r\n"), "{head}");
        assert!(head.contains("Host: 127.0.0.1\r\n"), "{head}");
        let bad = run(&ssl_get(Some(200), None, false, None), &target(port));
        assert!(!bad.ok, "{bad:?}");
        assert_eq!(bad.reason, "HTTP status 503 on /health");
        t.join().expect("server");
    }

    #[test]
    fn an_ipv6_real_server_gets_its_address_in_brackets_as_host() {
        let lo6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let (port, seen, t) = tls_server_on(lo6, vec!["HTTP/1.0 200 OK\r\n\r\nfine"]);
        let ok = run(&ssl_get(None, None, false, None), &target_on(lo6, port));
        assert!(ok.ok, "{ok:?}");
        assert_eq!(ok.reason, format!("SSL GET on [::1]:{port} ok"));
        let (sni, head) = seen.recv().expect("request");
        assert_eq!(sni, "", "no SNI for an address");
        assert!(head.contains(&format!("Host: [::1]:{port}\r\n")), "{head}");
        t.join().expect("server");
    }

    #[test]
    fn digest_match_and_mismatch() {
        let (port, _seen, t) = tls_server(vec![
            "HTTP/1.0 200 OK\r\n\r\nhello",
            "HTTP/1.0 200 OK\r\n\r\nhello!",
        ]);
        let want = md5_hex(b"hello");
        let ok = run(
            &ssl_get(Some(200), Some(want.clone()), false, None),
            &target(port),
        );
        assert!(ok.ok, "{ok:?}");
        let bad = run(&ssl_get(Some(200), Some(want), false, None), &target(port));
        assert!(
            !bad.ok && bad.reason.starts_with("MD5 digest ") && bad.reason.contains("/health"),
            "{bad:?}"
        );
        t.join().expect("server");
    }

    #[test]
    fn enable_sni_sends_the_virtualhost() {
        let (port, seen, t) = tls_server(vec!["HTTP/1.0 200 OK\r\n\r\n"]);
        let ok = run(
            &ssl_get(None, None, true, Some("www.example.test")),
            &target(port),
        );
        assert!(ok.ok, "{ok:?}");
        let (sni, head) = seen.recv().expect("request");
        assert_eq!(sni, "www.example.test");
        assert!(head.contains("Host: www.example.test\r\n"), "{head}");
        t.join().expect("server");
    }

    #[test]
    fn server_names_follow_enable_sni() {
        let t = target(443).connect;
        let ip = ServerName::from(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let t6 = target_on(IpAddr::V6(Ipv6Addr::LOCALHOST), 443).connect;
        assert_eq!(
            server_name(true, None, None, t6),
            ServerName::from(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
        assert_eq!(server_name(false, None, Some("www.a.test"), t), ip);
        assert_eq!(server_name(true, None, None, t), ip);
        assert_eq!(
            server_name(true, None, Some("10.1.2.3"), t),
            ip,
            "no IP in SNI"
        );
        let dns = |n: &str| ServerName::try_from(n.to_string()).expect("dns name");
        assert_eq!(
            server_name(true, None, Some("www.a.test"), t),
            dns("www.a.test")
        );
        assert_eq!(
            server_name(true, Some("sni.a.test"), Some("www.a.test"), t),
            dns("sni.a.test")
        );
    }

    #[test]
    fn a_server_that_never_answers_the_handshake_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        // Accepted and held, never read: the ClientHello gets no answer.
        let holder = std::thread::spawn(move || {
            let held = l.accept();
            std::thread::sleep(Duration::from_millis(800));
            drop(held);
        });
        let spec = CheckSpec {
            connect_timeout: Duration::from_millis(300),
            ..ssl_get(None, None, false, None)
        };
        let start = Instant::now();
        let o = run(&spec, &target(port));
        assert!(
            start.elapsed() < Duration::from_millis(700),
            "bounded by connect_timeout"
        );
        assert!(!o.ok);
        assert_eq!(
            o.reason,
            format!("TLS handshake with 127.0.0.1:{port}: timeout 0.3s")
        );
        holder.join().expect("holder");
    }

    #[test]
    fn a_plain_http_server_fails_the_handshake() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().expect("accept");
            let _ = c.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n");
        });
        let o = run(&ssl_get(None, None, false, None), &target(port));
        assert!(
            !o.ok
                && o.reason
                    .starts_with(&format!("TLS handshake with 127.0.0.1:{port}: ")),
            "{o:?}"
        );
        server.join().expect("server");
    }
}
