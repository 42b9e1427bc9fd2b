//! UDP_CHECK and PING_CHECK: the datagram probes (keepalived.conf(5)).
//!
//! - UDP_CHECK: one datagram (`payload`, else a few bytes of our own) on a connected UDP
//!   socket. An ICMP error (port, host or network unreachable) within `connect_timeout`
//!   fails the check. Without `require_reply` silence is success (the datagram was not
//!   refused); with it a reply must come, its length within `min_reply_length ..=
//!   max_reply_length`, and starting with the `require_reply` pattern when one is given.
//! - PING_CHECK: one ICMP echo request (ICMPv6 for an IPv6 real server); up when the
//!   matching echo reply comes within `connect_timeout`. It uses an ICMP datagram ("ping") socket where
//!   `net.ipv4.ping_group_range` allows it, else a raw ICMP socket (root or CAP_NET_RAW).
//!   keepalived rewrites `ping_group_range` instead; tunlb leaves the sysctl alone.
//!
//! Both go through socket2's safe API: no `unsafe` here.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::checker::CheckOutcome;
use super::config::{CheckSpec, UdpCheck};
use super::target::bind;
use crate::wire::icmp::{msg_type, Icmpv4Packet, HEADER_LEN};
use crate::wire::icmpv6::{self, Icmpv6Packet};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::IpProtocol;

/// The datagram a UDP_CHECK without `payload` sends.
const DEFAULT_PAYLOAD: &[u8] = b"tunlb health check";

/// The echo request's data: a marker the reply must carry back.
const PING_DATA: &[u8] = b"tunlb ping check";

/// Sequence numbers of the echo requests (one per probe, shared by all checks).
static PING_SEQ: AtomicU16 = AtomicU16::new(0);

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Runs one UDP_CHECK probe of `spec` against `target` (IPv4 or IPv6), from `bindto` and
/// `bind_port` when set.
pub fn udp(spec: &CheckSpec, udp: &UdpCheck, target: SocketAddr) -> CheckOutcome {
    match udp_probe(spec, udp, target) {
        Ok(why) => CheckOutcome::ok(why),
        Err(why) => CheckOutcome::failed(why),
    }
}

fn udp_probe(spec: &CheckSpec, udp: &UdpCheck, target: SocketAddr) -> Result<String, String> {
    let secs = spec.connect_timeout.as_secs_f32();
    let sock = Socket::new(
        Domain::for_address(target),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .map_err(|e| format!("UDP socket: {e}"))?;
    bind(&sock, target, spec.bindto, spec.bind_port)?;
    let refused = |e: std::io::Error| match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => format!("UDP to {target}: port unreachable"),
        _ => format!("UDP to {target}: {e}"),
    };
    sock.connect(&target.into()).map_err(refused)?;
    let payload = if udp.payload.is_empty() {
        DEFAULT_PAYLOAD
    } else {
        &udp.payload
    };
    (&sock).write_all(payload).map_err(refused)?;
    sock.set_read_timeout(Some(spec.connect_timeout.max(Duration::from_millis(1))))
        .map_err(|e| e.to_string())?;
    // One byte more than the longest acceptable reply tells "too long" from "just fits".
    let mut buf = vec![0u8; usize::from(udp.max_reply_length) + 1];
    let n = loop {
        match (&sock).read(&mut buf) {
            Ok(n) => break n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                return match udp.require_reply {
                    Some(_) => Err(format!("no UDP reply from {target} within {secs}s")),
                    None => Ok(format!("UDP to {target}: no ICMP error within {secs}s")),
                };
            }
            Err(e) => return Err(refused(e)),
        }
    };
    let Some(pattern) = &udp.require_reply else {
        return Ok(format!("UDP reply from {target}"));
    };
    let reply = buf.get(..n).unwrap_or_default();
    if n < usize::from(udp.min_reply_length) || n > usize::from(udp.max_reply_length) {
        return Err(format!(
            "UDP reply from {target}: {n} bytes, expected {} to {}",
            udp.min_reply_length, udp.max_reply_length
        ));
    }
    if !pattern.matches(reply) {
        return Err(format!(
            "UDP reply from {target}: data does not match require_reply"
        ));
    }
    Ok(format!("UDP reply from {target}: {n} bytes"))
}

/// Runs one PING_CHECK probe of `spec` against `addr` (ICMP echo for IPv4, ICMPv6 echo for
/// IPv6).
pub fn ping(spec: &CheckSpec, addr: IpAddr) -> CheckOutcome {
    match ping_probe(spec, addr) {
        Ok(why) => CheckOutcome::ok(why),
        Err(why) => CheckOutcome::failed(why),
    }
}

fn ping_probe(spec: &CheckSpec, addr: IpAddr) -> Result<String, String> {
    let deadline = Instant::now() + spec.connect_timeout;
    let secs = spec.connect_timeout.as_secs_f32();
    let to = SocketAddr::new(addr, 0);
    let (domain, protocol, icmp) = match addr {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, "ICMP"),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, "ICMPv6"),
    };
    // A ping socket receives only the ICMP message (kernel-chosen ident); a raw socket
    // receives every ICMP packet to this host, IPv4 header included (an ICMPv6 raw socket
    // gets the message alone, only from `addr` once connected).
    let (sock, raw) = match Socket::new(domain, Type::DGRAM, Some(protocol)) {
        Ok(s) => (s, false),
        Err(_) => (
            Socket::new(domain, Type::RAW, Some(protocol))
                .map_err(|e| format!("{icmp} socket (needs root or ping_group_range): {e}"))?,
            true,
        ),
    };
    bind(&sock, to, spec.bindto, None)?;
    let failed = |e: std::io::Error| format!("ping {addr}: {e}");
    sock.connect(&to.into()).map_err(failed)?;
    let seq = PING_SEQ.fetch_add(1, Ordering::Relaxed);
    let ident = (std::process::id() as u16) ^ 0x7e57;
    let req = echo_request(addr, ident, seq);
    (&sock).write_all(&req).map_err(failed)?;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no {icmp} echo reply from {addr} within {secs}s"));
        }
        sock.set_read_timeout(Some(left)).map_err(failed)?;
        let n = match (&sock).read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => continue,
            Err(e) => return Err(failed(e)),
        };
        let got = buf.get(..n).unwrap_or_default();
        let ours = match addr {
            IpAddr::V4(a) => is_our_reply(got, raw, a, ident, seq),
            IpAddr::V6(_) => is_our_reply6(got, raw, ident, seq),
        };
        if ours {
            return Ok(format!("{icmp} echo reply from {addr}"));
        }
    }
}

/// The echo request of a PING_CHECK to `addr`. The ICMPv6 checksum is left to the kernel
/// (which fills it on ping and raw ICMPv6 sockets alike: it covers the source address the
/// kernel picks).
fn echo_request(addr: IpAddr, ident: u16, seq: u16) -> Vec<u8> {
    let mut req = vec![0u8; HEADER_LEN + PING_DATA.len()];
    let rest = (u32::from(ident) << 16) | u32::from(seq);
    match addr {
        IpAddr::V4(_) => {
            let mut p = Icmpv4Packet::new_unchecked(&mut req[..]);
            p.set_msg_type(msg_type::ECHO_REQUEST);
            p.set_code(0);
            p.set_rest_of_header(rest);
            p.data_mut().copy_from_slice(PING_DATA);
            p.fill_checksum();
        }
        IpAddr::V6(_) => {
            let mut p = Icmpv6Packet::new_unchecked(&mut req[..]);
            p.set_msg_type(icmpv6::msg_type::ECHO_REQUEST);
            p.set_code(0);
            p.set_rest_of_header(rest);
            p.data_mut().copy_from_slice(PING_DATA);
        }
    }
    req
}

/// Whether `got` (with its IPv4 header when `raw`) is the echo reply to our request: from
/// `addr`, with our sequence number and data (and our ident on a raw socket; a ping socket
/// sets the ident itself and delivers only its own replies).
pub fn is_our_reply(got: &[u8], raw: bool, addr: Ipv4Addr, ident: u16, seq: u16) -> bool {
    let icmp = if raw {
        let Ok(ip) = Ipv4Packet::new_checked(got) else {
            return false;
        };
        if ip.src_addr() != addr || ip.protocol() != IpProtocol::ICMP {
            return false;
        }
        let (start, end) = (ip.header_len(), usize::from(ip.total_len()));
        got.get(start..end).unwrap_or_default()
    } else {
        got
    };
    let Ok(p) = Icmpv4Packet::new_checked(icmp) else {
        return false;
    };
    p.msg_type() == msg_type::ECHO_REPLY
        && p.echo_seq() == Some(seq)
        && (!raw || p.echo_ident() == Some(ident))
        && p.data() == PING_DATA
}

/// [`is_our_reply`] for ICMPv6: `got` is the message alone on either socket (a connected raw
/// ICMPv6 socket gets only the peer's messages, of every type: ours is the echo reply with
/// our ident, sequence number and data).
pub fn is_our_reply6(got: &[u8], raw: bool, ident: u16, seq: u16) -> bool {
    let Ok(p) = Icmpv6Packet::new_checked(got) else {
        return false;
    };
    p.msg_type() == icmpv6::msg_type::ECHO_REPLY
        && p.echo_seq() == Some(seq)
        && (!raw || p.echo_ident() == Some(ident))
        && p.data() == PING_DATA
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::config::{parse_hex, CheckKind};
    use std::net::{Ipv6Addr, UdpSocket};

    fn spec(timeout_ms: u64) -> CheckSpec {
        CheckSpec {
            connect_timeout: Duration::from_millis(timeout_ms),
            ..CheckSpec::new(CheckKind::Ping)
        }
    }

    fn target(s: &UdpSocket) -> SocketAddr {
        s.local_addr().expect("addr")
    }

    /// Answers each datagram it gets with `reply`, `count` times.
    fn echo(
        reply: &'static [u8],
        count: usize,
    ) -> (SocketAddr, std::thread::JoinHandle<Vec<Vec<u8>>>) {
        echo_on("127.0.0.1:0", reply, count)
    }

    /// [`echo`] on `at`.
    fn echo_on(
        at: &str,
        reply: &'static [u8],
        count: usize,
    ) -> (SocketAddr, std::thread::JoinHandle<Vec<Vec<u8>>>) {
        let s = UdpSocket::bind(at).expect("bind");
        let at = target(&s);
        let t = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut b = [0u8; 2048];
            for _ in 0..count {
                let (n, peer) = s.recv_from(&mut b).expect("recv");
                got.push(b[..n].to_vec());
                s.send_to(reply, peer).expect("send");
            }
            got
        });
        (at, t)
    }

    #[test]
    fn udp_silence_is_success_unless_a_reply_is_required() {
        let quiet = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut u = UdpCheck::default();
        let o = udp(&spec(200), &u, target(&quiet));
        assert!(o.ok, "{o:?}");
        u.require_reply = Some(Default::default());
        let o = udp(&spec(200), &u, target(&quiet));
        assert!(!o.ok, "{o:?}");
        assert_eq!(
            o.reason,
            format!("no UDP reply from {} within 0.2s", target(&quiet))
        );
    }

    #[test]
    fn udp_port_unreachable_fails() {
        // A port nobody listens on: loopback answers with ICMP port unreachable.
        let gone = target(&UdpSocket::bind("127.0.0.1:0").expect("bind"));
        let o = udp(&spec(1000), &UdpCheck::default(), gone);
        assert!(!o.ok, "{o:?}");
        assert_eq!(o.reason, format!("UDP to {gone}: port unreachable"));
    }

    #[test]
    fn udp_reply_is_checked_for_length_and_pattern() {
        let (at, t) = echo(b"\x01\x02OK", 4);
        let mut u = UdpCheck {
            payload: vec![0xde, 0xad],
            require_reply: parse_hex("01 x2", true),
            ..UdpCheck::default()
        };
        assert!(udp(&spec(1000), &u, at).ok);
        u.require_reply = parse_hex("01 03", true);
        let o = udp(&spec(1000), &u, at);
        assert!(!o.ok && o.reason.contains("does not match"), "{o:?}");
        u.require_reply = Some(Default::default());
        u.max_reply_length = 3;
        let o = udp(&spec(1000), &u, at);
        assert!(
            !o.ok && o.reason.contains("4 bytes, expected 0 to 3"),
            "{o:?}"
        );
        u.max_reply_length = 255;
        u.min_reply_length = 4;
        assert!(udp(&spec(1000), &u, at).ok);
        let sent = t.join().expect("echo");
        assert_eq!(sent[0], [0xde, 0xad], "the payload is sent as is");
    }

    #[test]
    fn udp_to_an_ipv6_real_server_from_bindto_and_bind_port() {
        let (at, t) = echo_on("[::1]:0", b"OK", 1);
        let holder = UdpSocket::bind("[::1]:0").expect("a free port");
        let from = target(&holder).port();
        drop(holder);
        let spec = CheckSpec {
            bindto: Some(Ipv6Addr::LOCALHOST.into()),
            bind_port: Some(from),
            ..spec(1000)
        };
        let u = UdpCheck {
            require_reply: Some(Default::default()),
            ..UdpCheck::default()
        };
        let o = udp(&spec, &u, at);
        assert!(o.ok, "{o:?}");
        assert_eq!(
            o.reason,
            format!("UDP reply from [::1]:{}: 2 bytes", at.port())
        );
        t.join().expect("echo");
    }

    #[test]
    fn icmpv6_echo_replies_are_matched_by_seq_ident_and_data() {
        let req = echo_request(Ipv6Addr::LOCALHOST.into(), 7, 9);
        assert_eq!(req[0], icmpv6::msg_type::ECHO_REQUEST);
        assert!(!is_our_reply6(&req, false, 7, 9), "our own request");
        let mut reply = req.clone();
        reply[0] = icmpv6::msg_type::ECHO_REPLY;
        assert!(
            is_our_reply6(&reply, false, 0, 9),
            "a ping socket sets the ident"
        );
        assert!(is_our_reply6(&reply, true, 7, 9));
        assert!(
            !is_our_reply6(&reply, true, 8, 9),
            "another process's ident"
        );
        assert!(!is_our_reply6(&reply, false, 7, 10));
        assert!(!is_our_reply6(&reply[..6], false, 7, 9));
    }

    /// Needs an ICMP socket (root, or a ping_group_range that includes us): ignored by a plain
    /// `cargo test`, run by ./test.sh's root pass (`--ignored root_tests`), where it must pass.
    mod root_tests {
        use super::*;

        #[test]
        #[ignore = "needs root (a raw ICMP socket)"]
        fn ping_loopback_answers() {
            let o = ping(&spec(1000), Ipv4Addr::LOCALHOST.into());
            assert!(o.ok, "{o:?}");
            assert_eq!(o.reason, "ICMP echo reply from 127.0.0.1");
        }

        #[test]
        #[ignore = "needs root (a raw ICMPv6 socket)"]
        fn ping_ipv6_loopback_answers() {
            let o = ping(&spec(1000), Ipv6Addr::LOCALHOST.into());
            assert!(o.ok, "{o:?}");
            assert_eq!(o.reason, "ICMPv6 echo reply from ::1");
        }
    }

    #[test]
    fn echo_replies_are_matched_by_source_seq_ident_and_data() {
        let addr = Ipv4Addr::new(10, 0, 0, 3);
        let mut icmp = [0u8; HEADER_LEN + PING_DATA.len()];
        {
            let mut p = Icmpv4Packet::new_unchecked(&mut icmp[..]);
            p.set_msg_type(msg_type::ECHO_REPLY);
            p.set_rest_of_header((7 << 16) | 9);
            p.data_mut().copy_from_slice(PING_DATA);
            p.fill_checksum();
        }
        assert!(is_our_reply(&icmp, false, addr, 0, 9));
        assert!(!is_our_reply(&icmp, false, addr, 0, 10));
        assert!(!is_our_reply(&icmp[..4], false, addr, 0, 9));
        // The same behind an IPv4 header, as a raw socket gets it.
        let mut pkt = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 3, 10, 0, 0, 1,
        ];
        pkt.extend_from_slice(&icmp);
        let len = pkt.len() as u16;
        pkt[2..4].copy_from_slice(&len.to_be_bytes());
        assert!(is_our_reply(&pkt, true, addr, 7, 9));
        assert!(
            !is_our_reply(&pkt, true, addr, 8, 9),
            "another process's ident"
        );
        assert!(!is_our_reply(&pkt, true, Ipv4Addr::new(10, 0, 0, 4), 7, 9));
        assert!(!is_our_reply(&pkt[..10], true, addr, 7, 9));
    }
}
