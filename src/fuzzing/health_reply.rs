use std::net::Ipv4Addr;

use crate::health::config::{parse_hex, UrlSpec};
use crate::health::probe::{judge, md5_hex, misc_outcome, parse_response, MAX_BODY};
use crate::health::probe_udp::{is_our_reply, is_our_reply6};

/// What a real server (or anything answering in its place) sends back to a health check. The
/// first byte chooses the check, the rest is the reply:
/// - 0..=3: HTTP_GET / SSL_GET (the same parser after TLS): `parse_response` and `judge` with
///   any 2xx, `status_code 200`, `status_code 503`, or the MD5 `digest` of `hello`; a judged
///   success has a status line the rules accept and a body that is a suffix of the reply of at
///   most `MAX_BODY` bytes;
/// - 4: UDP_CHECK: `require_reply` patterns (keepalived's hex with `X` wildcards) read from
///   the reply's first line, matched against the rest;
/// - 5, 6: PING_CHECK: `is_our_reply` on a ping socket's and a raw socket's datagram (a
///   taken reply on a raw socket comes from the probed address and is ICMP), and
///   `is_our_reply6` on the same bytes as an ICMPv6 message (a taken one is an echo reply
///   with our sequence number);
/// - 7: MISC_CHECK: the exit status (a byte, or none: killed) read plain and as a dynamic
///   weight (exit 2 + N: weight N, at most 253).
///
/// Never a panic.
pub fn health_reply(data: &[u8]) {
    let Some((&kind, reply)) = data.split_first() else {
        return;
    };
    match kind % 8 {
        k @ 0..=3 => http(k, reply),
        4 => udp(reply),
        5 | 6 => {
            let addr = Ipv4Addr::new(10, 3, 0, 10);
            let raw = kind % 8 == 6;
            if is_our_reply(reply, raw, addr, 0x1234, 7) && raw {
                assert_eq!(reply[12..16], addr.octets(), "a raw reply from elsewhere");
                assert_eq!(reply[9], 1, "a raw reply that is not ICMP");
            }
            // The same bytes as an ICMPv6 message (both sockets give it without the IPv6
            // header): a taken one is an echo reply with our sequence number.
            if is_our_reply6(reply, raw, 0x1234, 7) {
                assert_eq!(reply[0], 129, "an ICMPv6 reply that is no echo reply");
                assert_eq!(reply[6..8], [0, 7], "another sequence number");
            }
        }
        _ => {
            // An exit status is a byte; none: killed by a signal.
            let code = reply.first().map(|&b| i32::from(b));
            for dynamic in [false, true] {
                let out = misc_outcome("/bin/check", code, dynamic);
                assert!(!out.reason.is_empty());
                if !dynamic {
                    assert_eq!(out.ok, code == Some(0));
                    assert_eq!(out.weight, None);
                } else {
                    assert_eq!(out.ok, code.is_some_and(|c| c != 1));
                    assert!(out.weight.is_none_or(|w| w <= 253));
                }
            }
        }
    }
}

fn http(k: u8, reply: &[u8]) {
    let url = UrlSpec {
        path: "/".into(),
        status_code: match k {
            1 => Some(200),
            2 => Some(503),
            _ => None,
        },
        digest: (k == 3).then(|| md5_hex(b"hello")),
    };
    let parsed = parse_response(reply);
    if let Some((_, body)) = parsed {
        assert!(body.len() <= MAX_BODY);
        let at = body.as_ptr() as usize - reply.as_ptr() as usize;
        assert!(at <= reply.len() && reply[at..].starts_with(body));
        assert!(reply[..at].ends_with(b"\r\n\r\n"));
    }
    if judge(reply, &url).is_ok() {
        let (status, body) = parsed.expect("judged a reply that does not parse");
        match url.status_code {
            Some(want) => assert_eq!(status, want),
            None => assert!((200..300).contains(&status)),
        }
        if url.digest.is_some() {
            assert_eq!(body, b"hello");
        }
    }
}

fn udp(reply: &[u8]) {
    let (pattern, rest) = match reply.iter().position(|&b| b == b'\n') {
        Some(i) => (&reply[..i], &reply[i + 1..]),
        None => (reply, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(pattern) else {
        return;
    };
    for wildcards in [false, true] {
        let Some(p) = parse_hex(text, wildcards) else {
            continue;
        };
        assert_eq!(p.bytes.len(), p.mask.len());
        assert!(!p.bytes.is_empty());
        if !wildcards {
            assert!(p.mask.iter().all(|&m| m == 0xff));
        }
        // The pattern matches itself, and a reply matches iff every compared bit agrees.
        assert!(p.matches(&p.bytes));
        let want = p
            .bytes
            .iter()
            .zip(&p.mask)
            .zip(rest)
            .all(|((b, m), g)| b & m == g & m);
        assert_eq!(p.matches(rest), want);
    }
}
