//! Health probes through the data path (`check_through_tunnel`): the pins that send a probe's
//! packets to the real server it checks (the pin table itself is shared state,
//! [`crate::director::shared::probe_pins`]).
//!
//! A probe through the tunnel is a TCP connection from the director itself to `VIP:port`. The
//! kernel routes it into the director's TUN like any client's packet, so it takes the same
//! path as the traffic (encapsulation or DR frame, the agent's decapsulation, the hidden VIP on
//! the real server's `lo`) and a DSR black hole fails it. It must reach the server being
//! checked, not whichever the scheduler picks, and it must reach it even when the health
//! checker has taken that server out of the table. So the prober binds its socket to a probe
//! source address and port first, registers a [`ProbePin`] for that pair here, then connects;
//! the core ([`Director::handle_packet`](crate::director::Director::handle_packet)) sends every packet
//! from a pinned source to the pinned server with its forwarding method, without scheduling and
//! without a connection-table entry (so the pin, not a stale flow, decides even when a port is
//! reused). The real server answers from the VIP straight to the director's address.
//!
//! The hot path pays one relaxed atomic load while no pin exists, and otherwise a compare of
//! the source address with the (at most [`MAX_SOURCES`]) probe source addresses; only packets
//! from a probe source address take the lock of the pin map.
//!
//! A pin lives until the prober releases it, then [`PIN_LINGER`] longer so the closing
//! segments reach the same server, and never past the deadline it was registered with (a
//! prober that dies leaves nothing behind). Expired pins are swept by
//! [`Shared::handle_timeout`](crate::director::Shared::handle_timeout) and at every registration.

use super::context::Ctx;
use super::tunnel;
use crate::director::packet::verdict::{DropReason, Ether, Verdict};
use crate::director::packet::Parsed;
use crate::director::stats::{EncapError, EncapKind};
use crate::model::Forward;
use crate::wire::IpProtocol;

pub use crate::director::shared::probe_pins::{
    PinError, ProbePin, ProbePins, MAX_SOURCES, PIN_LINGER,
};

/// The core's part: a packet whose source address is a probe source address. Returns the
/// verdict for a pinned probe packet, `None` for anything else (traffic of the director's
/// own that is not a probe goes on as any client's).
pub fn handle(cx: &mut Ctx<'_>, buf: &mut [u8], p: &Parsed) -> Option<Verdict> {
    if !(p.proto == IpProtocol::TCP || p.proto == IpProtocol::UDP) || p.later_fragment {
        return None;
    }
    let sport = match p.l4 {
        Some(l4) => l4.sport,
        // A header too short to parse still names its source port if it has one.
        None => {
            let l4 = buf.get(p.ihl..p.len)?;
            u16::from_be_bytes([*l4.first()?, *l4.get(1)?])
        }
    };
    let pin = cx.shared.probe_pins.get(p.src, sport, cx.now);
    let pin = pin.filter(|pin| pin.vip == p.dst)?;
    Some(match pin.forward {
        Forward::Tunnel(t) => {
            let hash = u32::from(sport) << 16 ^ u32::from(p.src).rotate_left(7);
            tunnel::encap(cx, pin.dest, t, buf, p, hash)
        }
        Forward::Dr => match pin.neigh {
            None => Verdict::Drop(DropReason::NeighbourUnresolved),
            // Probes are small: one that does not fit the LAN is not worth fragmenting.
            Some(link) if p.len > usize::from(link.mtu) => {
                cx.counters
                    .encap_errors
                    .count(EncapKind::Dr, EncapError::TooBig, 1);
                Verdict::Drop(DropReason::TooBig)
            }
            Some(link) => Verdict::Ether(Ether {
                ifindex: link.ifindex,
                dst_mac: link.mac,
                len: p.len,
                frag_mtu: 0,
            }),
        },
        Forward::Nat => Verdict::Drop(DropReason::UnsupportedForward),
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::director::conn::Timeouts;
    use crate::director::dr::NeighEntry;
    use crate::director::{Director, Snapshot};
    use crate::director::{DirectorConfig, Registry, Shared};
    use crate::encap::TunnelType;
    use crate::model::v4::{DestConfig, ServiceConfig, ServiceKey, ServiceSet};
    use crate::model::{Protocol, SchedulerKind};
    use crate::time::{Duration, Instant};
    use crate::wire::testing::tcp_packet;
    use std::sync::Arc;

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 100);
    const RS1: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 12);
    const RS2: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 13);
    const DIRECTOR: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;

    fn set(dests: &[Ipv4Addr]) -> ServiceSet {
        ServiceSet {
            services: vec![ServiceConfig {
                key: ServiceKey {
                    vip: VIP,
                    port: 80,
                    proto: Protocol::Tcp,
                },
                scheduler: SchedulerKind::Rr,
                persistence: None,
                mss_clamp: None,
                dests: dests
                    .iter()
                    .map(|a| DestConfig {
                        addr: *a,
                        port: 80,
                        weight: 1,
                        forward: Forward::tunnel(TunnelType::Ipip),
                        u_threshold: 0,
                        l_threshold: 0,
                    })
                    .collect(),
                policy: Default::default(),
            }],
        }
    }

    fn director(dests: &[Ipv4Addr]) -> Director {
        let snap = Registry::new()
            .build(&set(dests), &Timeouts::default())
            .expect("table");
        Director::new(Arc::new(Shared::new(snap)), DirectorConfig::default())
    }

    fn pin(dest: Ipv4Addr, expires: Instant) -> ProbePin {
        ProbePin {
            vip: VIP,
            dest,
            forward: Forward::tunnel(TunnelType::Ipip),
            neigh: None,
            expires,
        }
    }

    /// The outer destination of an encapsulated packet.
    fn encap_to(v: Verdict) -> Ipv4Addr {
        match v {
            Verdict::Encap(e) => {
                assert_eq!(e.header().get(16..20), Some(&e.dst.octets()[..]));
                e.dst
            }
            other => panic!("expected Encap, got {other:?}"),
        }
    }

    #[test]
    fn a_pinned_probe_goes_to_its_server_even_when_it_left_the_table() {
        // RS1 was taken out by its health check: only RS2 is in the table.
        let mut d = director(&[RS2]);
        let now = Instant::from_secs(10);
        let pins = &d.shared().probe_pins;
        pins.register(
            DIRECTOR,
            40_000,
            pin(RS1, now + Duration::from_secs(5)),
            now,
        )
        .expect("register");
        for flags in [SYN, ACK, ACK] {
            let mut syn = tcp_packet(DIRECTOR, 40_000, VIP, 80, flags, 0);
            assert_eq!(encap_to(d.handle_packet(now, &mut syn)), RS1);
        }
        // No flow was created: a new SYN from another port is scheduled (to RS2).
        assert_eq!(d.conns().len(), 0);
        let mut other = tcp_packet(DIRECTOR, 40_001, VIP, 80, SYN, 0);
        assert_eq!(encap_to(d.handle_packet(now, &mut other)), RS2);
        // The pinned port to another address is not the probe's: no service there.
        let mut elsewhere = tcp_packet(DIRECTOR, 40_000, RS2, 80, SYN, 0);
        assert_eq!(
            d.handle_packet(now, &mut elsewhere),
            Verdict::Drop(DropReason::NoService)
        );
    }

    #[test]
    fn client_traffic_is_not_affected_by_pins() {
        let mut d = director(&[RS1, RS2]);
        let now = Instant::from_secs(1);
        let pins = &d.shared().probe_pins;
        pins.register(
            DIRECTOR,
            40_000,
            pin(RS1, now + Duration::from_secs(5)),
            now,
        )
        .expect("register");
        // Same source port, another source address: scheduled round-robin, tracked.
        let mut to = Vec::new();
        for i in 0..4u8 {
            let c = Ipv4Addr::new(10, 1, 0, 2 + i);
            let mut syn = tcp_packet(c, 40_000, VIP, 80, SYN, 0);
            to.push(encap_to(d.handle_packet(now, &mut syn)));
        }
        assert_eq!(to, [RS1, RS2, RS1, RS2]);
        assert_eq!(d.conns().len(), 4);
        let mut ack = tcp_packet(CLIENT, 40_000, VIP, 80, ACK, 0);
        assert_eq!(encap_to(d.handle_packet(now, &mut ack)), RS1);
    }

    #[test]
    fn pins_expire_and_free_their_source() {
        let pins = ProbePins::new();
        let t0 = Instant::from_secs(100);
        assert!(!pins.is_source(DIRECTOR));
        pins.register(DIRECTOR, 1, pin(RS1, t0 + Duration::from_secs(30)), t0)
            .expect("register");
        assert!(pins.is_source(DIRECTOR) && !pins.is_source(CLIENT));
        assert_eq!(pins.get(DIRECTOR, 1, t0).map(|p| p.dest), Some(RS1));
        assert_eq!(pins.get(DIRECTOR, 2, t0), None);
        // Released: it lingers, then is gone.
        pins.release(DIRECTOR, 1, t0);
        assert!(pins
            .get(DIRECTOR, 1, t0 + (PIN_LINGER - Duration::from_millis(1)))
            .is_some());
        assert!(pins.get(DIRECTOR, 1, t0 + PIN_LINGER).is_none());
        pins.expire(t0 + PIN_LINGER);
        assert!(pins.is_empty() && !pins.is_source(DIRECTOR));
        // Never released: gone at its deadline.
        pins.register(DIRECTOR, 3, pin(RS2, t0 + Duration::from_secs(2)), t0)
            .expect("register");
        assert!(pins.get(DIRECTOR, 3, t0 + Duration::from_secs(2)).is_none());
        let shared = Shared::new(Snapshot::default());
        shared
            .probe_pins
            .register(DIRECTOR, 3, pin(RS2, t0 + Duration::from_secs(2)), t0)
            .expect("register");
        shared.handle_timeout(t0 + Duration::from_secs(2));
        assert!(shared.probe_pins.is_empty());
    }

    #[test]
    fn at_most_max_sources_addresses() {
        let pins = ProbePins::new();
        let t0 = Instant::ZERO;
        let until = t0 + Duration::from_secs(9);
        for i in 0..MAX_SOURCES as u8 {
            let src = Ipv4Addr::new(10, 2, 0, 10 + i);
            pins.register(src, 7, pin(RS1, until), t0).expect("room");
            pins.register(src, 8, pin(RS1, until), t0)
                .expect("same source");
        }
        let extra = Ipv4Addr::new(10, 2, 0, 99);
        assert_eq!(
            pins.register(extra, 7, pin(RS1, until), t0),
            Err(PinError::TooManySources)
        );
        assert_eq!(
            pins.register(Ipv4Addr::UNSPECIFIED, 7, pin(RS1, until), t0),
            Err(PinError::Unspecified)
        );
        pins.expire(until);
        pins.register(
            extra,
            7,
            pin(RS1, until + until.saturating_since(t0)),
            until,
        )
        .expect("freed");
    }

    #[test]
    fn a_dr_pin_makes_a_frame_for_the_server() {
        let mut d = director(&[RS2]);
        let now = Instant::from_secs(1);
        let link = NeighEntry {
            ifindex: 3,
            mac: [2, 0, 0, 0, 0, 0x12],
            mtu: 1500,
        };
        let dr = ProbePin {
            vip: VIP,
            dest: RS1,
            forward: Forward::Dr,
            neigh: Some(link),
            expires: now + Duration::from_secs(5),
        };
        d.shared()
            .probe_pins
            .register(DIRECTOR, 5, dr, now)
            .expect("register");
        let mut syn = tcp_packet(DIRECTOR, 5, VIP, 80, SYN, 0);
        let len = syn.len();
        assert_eq!(
            d.handle_packet(now, &mut syn),
            Verdict::Ether(Ether {
                ifindex: 3,
                dst_mac: link.mac,
                len,
                frag_mtu: 0
            })
        );
        let unresolved = ProbePin { neigh: None, ..dr };
        d.shared()
            .probe_pins
            .register(DIRECTOR, 6, unresolved, now)
            .expect("register");
        let mut syn = tcp_packet(DIRECTOR, 6, VIP, 80, SYN, 0);
        assert_eq!(
            d.handle_packet(now, &mut syn),
            Verdict::Drop(DropReason::NeighbourUnresolved)
        );
    }
}
