//! Fuzz target `gue_chance`: the second-chance GUE field ([`crate::encap::chance`]) and the
//! agent's second-chance path ([`crate::realserver::chance`]) over arbitrary payloads.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::encap::auth::{self, Keyring, Seal, TunnelKey};
use crate::encap::chance::{self, ChanceError, SecondChance, FIELD_LEN};
use crate::encap::{build_outer_chance, strip_gue, OuterParams, Tunnel, MAX_OUTER_HEADER};
use crate::realserver::chance::{decide, Decision, Forwarder, Send2nd, SocketLookup};
use crate::realserver::AgentStats;

const ME: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 12);
const SRC: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);

/// Every other tuple has a socket (by the client port's parity).
struct Parity;

impl SocketLookup for Parity {
    fn has_socket(&mut self, _local: SocketAddrV4, remote: SocketAddrV4) -> bool {
        remote.port().is_multiple_of(2)
    }
}

/// Counts what it would send.
struct Nowhere;

impl Send2nd for Nowhere {
    fn send(&mut self, to: Ipv4Addr, header: &[u8], inner: &[u8]) -> std::io::Result<()> {
        assert_ne!(to, ME, "forwarded to itself");
        assert!(header.len() <= MAX_OUTER_HEADER && !inner.is_empty());
        Ok(())
    }
}

/// Checks that:
/// - parsing any payload never panics, and a field it accepts re-emits to the same bytes
///   where the flags say it is;
/// - the agent's decision and forwarder never panic: a forward goes to the field's server,
///   never to this host, only for TCP without SYN, and is counted;
/// - the first bytes as a field (address, hops), built into a GUE header keyless and sealed
///   around a fixed inner packet, parse back to exactly it (or are refused as a bad
///   address), strip to the inner packet and open with the key.
pub fn gue_chance(data: &[u8]) {
    let parsed = chance::parse(data);
    if let Ok(Ok(Some(sc))) = parsed {
        let at = if data[2..4] == [0, 3] {
            auth::AUTH_HEADER_LEN
        } else {
            crate::encap::gue::HEADER_LEN
        };
        assert_eq!(data[at..at + FIELD_LEN], sc.to_bytes());
        assert!(sc.hops <= 1);
    }
    if let Ok(inner) = strip_gue(data) {
        let second = parsed.ok().and_then(Result::ok).flatten();
        let d = decide(second, ME, &data[inner.clone()], &mut Parity);
        if let Decision::Forward(to) = d {
            assert_eq!(Some(to), second.map(|s| s.server));
            assert_ne!(to, ME);
        }
        let mut f = Forwarder::new(Box::new(Parity), Box::new(Nowhere), 6080, None);
        let mut stats = AgentStats::default();
        let taken = f.take(data, inner, ME, &mut stats);
        assert_eq!(
            taken,
            stats.chance_forwarded == 1 || stats.chance.iter().sum::<u64>() == 1
        );
        assert_eq!(stats.chance_forwarded, u64::from(d != Decision::Deliver));
    }

    // Round trip of a field made of the first bytes.
    let [a, b, c, d, hops, ..] = *data else {
        return;
    };
    let sc = SecondChance {
        server: Ipv4Addr::new(a, b, c, d),
        hops: hops & 1,
    };
    let inner =
        crate::wire::testing::tcp_packet(Ipv4Addr::new(192, 0, 2, 1), 4000, ME, 80, 0x10, 8);
    let key = TunnelKey::new(&[7; 32]);
    for sealed in [false, true] {
        let p = OuterParams {
            src: SRC,
            dst: ME,
            tunnel: Tunnel::Gue {
                port: 6080,
                csum: true,
            },
            flow_hash: u32::from(hops),
        };
        let seal = Seal {
            key: &key,
            lane: 1,
            seq: 9,
        };
        let mut h = [0u8; MAX_OUTER_HEADER];
        let n = build_outer_chance(&p, &inner, sealed.then_some(&seal), Some(sc), &mut h)
            .expect("fits");
        let gue = [&h[28..n], &inner[..]].concat();
        let bad = sc.server.is_unspecified()
            || sc.server.is_loopback()
            || sc.server.is_multicast()
            || sc.server.is_broadcast();
        let want = if bad {
            Err(ChanceError::BadAddress)
        } else {
            Ok(Some(sc))
        };
        assert_eq!(chance::parse(&gue), Ok(want));
        let r = strip_gue(&gue).expect("strips");
        assert_eq!(&gue[r], &inner[..]);
        if sealed {
            let mut ring = Keyring::new(vec![TunnelKey::new(&[7; 32])]).expect("one key");
            let r = ring.open(SRC, ME, &gue).expect("opens");
            assert_eq!(&gue[r], &inner[..]);
        }
    }
}
