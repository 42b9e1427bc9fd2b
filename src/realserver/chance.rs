//! Second chance on the real server (docs/scale-out.md, "Second chance"): a TCP packet that
//! is not a SYN and carries a second choice (a GUE field the director adds to flows it picked
//! up mid-way after its `mh` table changed, [`crate::encap::chance`]) is delivered here only
//! if this host has a socket for its exact 4-tuple; otherwise it goes on, re-encapsulated in
//! GUE, to the second choice (the server the flow had before the change), with no second
//! choice left: never forwarded twice.
//!
//! The decision is sans-IO ([`decide`]); the socket check is a [`SocketLookup`]: the kernel's
//! ([`crate::sys::sockdiag::SockDiag`], one `NETLINK_SOCK_DIAG` exact lookup, paid only by
//! flagged packets) or a fake in tests and the simulator.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;

use super::filter::AgentDrop;
use super::stats::AgentStats;
use crate::encap::chance::{self, SecondChance};
use crate::encap::{self, auth, BuildError, OuterParams, Tunnel, MAX_OUTER_HEADER};
use crate::sys::raw::RawSender;
use crate::sys::sockdiag::SockDiag;
use crate::wire::IpProtocol;

/// Whether this host has a TCP connection socket (not a listener) for a 4-tuple.
pub trait SocketLookup {
    /// A socket with local address `local` (the VIP and port) and peer `remote` (the client).
    fn has_socket(&mut self, local: SocketAddrV4, remote: SocketAddrV4) -> bool;
}

impl SocketLookup for SockDiag {
    /// A failed lookup counts as a socket: the packet is delivered, as without second chance.
    fn has_socket(&mut self, local: SocketAddrV4, remote: SocketAddrV4) -> bool {
        self.tcp_socket_exists(local, remote).unwrap_or(true)
    }
}

/// What to do with an accepted packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Write it into the TUN, as always.
    Deliver,
    /// No socket here: send it on to this server (the second choice).
    Forward(Ipv4Addr),
}

/// Decides for the inner IPv4 packet `inner` that arrived with `second` (from
/// [`crate::encap::chance::parse`]) at a host whose own tunnel addresses include `me`:
/// delivered unless it has a second choice with a hop left that is not this host, is TCP
/// without SYN, and no local socket has its 4-tuple.
pub fn decide(
    second: Option<SecondChance>,
    me: Ipv4Addr,
    inner: &[u8],
    lookup: &mut dyn SocketLookup,
) -> Decision {
    let Some(sc) = second else {
        return Decision::Deliver;
    };
    if sc.hops == 0 || sc.server == me {
        return Decision::Deliver;
    }
    let Some(ihl) = inner.first().map(|b| usize::from(b & 0x0f) * 4) else {
        return Decision::Deliver;
    };
    if inner.len() < 20 || inner[9] != IpProtocol::TCP || inner.len() < ihl + 14 {
        return Decision::Deliver;
    }
    let tcp = &inner[ihl..];
    if tcp[13] & 0x02 != 0 {
        // A SYN starts a flow here, whatever the tables said.
        return Decision::Deliver;
    }
    let client = Ipv4Addr::new(inner[12], inner[13], inner[14], inner[15]);
    let vip = Ipv4Addr::new(inner[16], inner[17], inner[18], inner[19]);
    let cport = u16::from_be_bytes([tcp[0], tcp[1]]);
    let vport = u16::from_be_bytes([tcp[2], tcp[3]]);
    if lookup.has_socket(
        SocketAddrV4::new(vip, vport),
        SocketAddrV4::new(client, cport),
    ) {
        Decision::Deliver
    } else {
        Decision::Forward(sc.server)
    }
}

/// The outer header (IPv4, UDP, GUE; sealed when `seal` is given) that forwards `inner` from
/// `me` to `to` on GUE port `port`, without a second choice. Returns the header's length.
pub fn forward_header(
    me: Ipv4Addr,
    to: Ipv4Addr,
    port: u16,
    inner: &[u8],
    seal: Option<&auth::Seal<'_>>,
    out: &mut [u8; MAX_OUTER_HEADER],
) -> Result<usize, BuildError> {
    let client = inner.get(12..16).ok_or(BuildError::InnerNotIp)?;
    let params = OuterParams {
        src: me,
        dst: to,
        tunnel: Tunnel::Gue { port, csum: false },
        flow_hash: crate::hash::flow_hash(
            Ipv4Addr::new(client[0], client[1], client[2], client[3]),
            0,
            to,
            0,
            IpProtocol::TCP,
        ),
    };
    encap::build_outer_chance(&params, inner, seal, None, out)
}

/// Sends the inner packets no local socket wants on to their second choice.
pub trait Send2nd {
    /// Sends `header` + `inner` to `to`.
    fn send(&mut self, to: Ipv4Addr, header: &[u8], inner: &[u8]) -> std::io::Result<()>;
}

impl Send2nd for RawSender {
    fn send(&mut self, to: Ipv4Addr, header: &[u8], inner: &[u8]) -> std::io::Result<()> {
        RawSender::send(self, to, header, inner).map(drop)
    }
}

/// The agent's second-chance path: socket lookups, the sender, and the key forwarded packets
/// are sealed with (the agent's first `--tunnel-key`: the second choice's agent must hold it).
pub struct Forwarder {
    lookup: Box<dyn SocketLookup + std::marker::Send>,
    sender: Box<dyn Send2nd + std::marker::Send>,
    port: u16,
    key: Option<(auth::TunnelKey, auth::LaneCounter)>,
    warned: bool,
}

impl core::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Forwarder")
            .field("port", &self.port)
            .field("sealed", &self.key.is_some())
            .finish()
    }
}

/// Counts the lookups a [`decide`] makes.
struct Counting<'a>(&'a mut dyn SocketLookup, &'a mut u64);

impl SocketLookup for Counting<'_> {
    fn has_socket(&mut self, local: SocketAddrV4, remote: SocketAddrV4) -> bool {
        *self.1 += 1;
        self.0.has_socket(local, remote)
    }
}

impl Forwarder {
    /// A forwarder sending GUE to `port`, sealed with `key` if given (lane 0, numbered from
    /// the wall clock `seq_seed`).
    pub fn new(
        lookup: Box<dyn SocketLookup + std::marker::Send>,
        sender: Box<dyn Send2nd + std::marker::Send>,
        port: u16,
        key: Option<(auth::TunnelKey, u64)>,
    ) -> Forwarder {
        Forwarder {
            lookup,
            sender,
            port,
            key: key.map(|(k, seed)| (k, auth::LaneCounter::new(0, seed))),
            warned: false,
        }
    }

    /// The kernel's: a `NETLINK_SOCK_DIAG` socket and a raw `IP_HDRINCL` socket.
    pub fn system(port: u16, key: Option<(auth::TunnelKey, u64)>) -> std::io::Result<Forwarder> {
        Ok(Forwarder::new(
            Box::new(SockDiag::open()?),
            Box::new(RawSender::new(1)?),
            port,
            key,
        ))
    }

    /// Looks at an accepted GUE payload (the inner packet at `inner`) received on this host's
    /// address `me`: `true` if it was taken (forwarded to its second choice, or dropped for a
    /// malformed second-chance field, counted), `false` to deliver it as always.
    pub fn take(
        &mut self,
        payload: &[u8],
        inner: Range<usize>,
        me: Ipv4Addr,
        stats: &mut AgentStats,
    ) -> bool {
        let second = match chance::parse(payload) {
            Ok(Ok(Some(s))) => s,
            Ok(Ok(None)) | Err(_) => return false,
            Ok(Err(e)) => {
                stats.count_drop(AgentDrop::Chance(e));
                return true;
            }
        };
        let Some(pkt) = payload.get(inner) else {
            return false;
        };
        let mut counting = Counting(&mut *self.lookup, &mut stats.chance_checked);
        let Decision::Forward(to) = decide(Some(second), me, pkt, &mut counting) else {
            return false;
        };
        let mut h = [0u8; MAX_OUTER_HEADER];
        let seal = self.key.as_mut().map(|(k, lane)| lane.seal(k));
        let Ok(n) = forward_header(me, to, self.port, pkt, seal.as_ref(), &mut h) else {
            return false;
        };
        match self.sender.send(to, &h[..n], pkt) {
            Ok(()) => stats.chance_forwarded += 1,
            Err(e) => {
                stats.tun_write_error += 1;
                if !self.warned {
                    self.warned = true;
                    log::warn!("tunlb realserver: second chance: forwarding to {to} failed: {e} (counted as tun_write_error, logged once)");
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::encap::{strip_ip, TunnelType, DEFAULT_GUE_PORT};
    use crate::wire::testing::tcp_packet;

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 100);
    const ME: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 12);
    const P: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 13);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

    /// A fake socket table: the (local, remote) pairs it holds, and how often it was asked.
    #[derive(Default)]
    struct Sockets {
        open: HashSet<(SocketAddrV4, SocketAddrV4)>,
        asked: usize,
    }

    impl SocketLookup for Sockets {
        fn has_socket(&mut self, local: SocketAddrV4, remote: SocketAddrV4) -> bool {
            self.asked += 1;
            self.open.contains(&(local, remote))
        }
    }

    #[test]
    fn a_flagged_mid_flow_packet_without_a_socket_goes_to_the_second_choice() {
        let mut s = Sockets::default();
        s.open
            .insert((SocketAddrV4::new(VIP, 80), SocketAddrV4::new(CLIENT, 40000)));
        let sc = Some(SecondChance::new(P));
        let ack = |cport| tcp_packet(CLIENT, cport, VIP, 80, 0x10, 10);
        // Its socket is here: delivered.
        assert_eq!(decide(sc, ME, &ack(40000), &mut s), Decision::Deliver);
        // No socket: forwarded to P.
        assert_eq!(decide(sc, ME, &ack(40001), &mut s), Decision::Forward(P));
        assert_eq!(s.asked, 2);
        // Not asked: no second choice, no hop left, P is this host, a SYN, not TCP.
        assert_eq!(decide(None, ME, &ack(40001), &mut s), Decision::Deliver);
        let spent = Some(SecondChance { server: P, hops: 0 });
        assert_eq!(decide(spent, ME, &ack(40001), &mut s), Decision::Deliver);
        assert_eq!(decide(sc, P, &ack(40001), &mut s), Decision::Deliver);
        let syn = tcp_packet(CLIENT, 40001, VIP, 80, 0x02, 0);
        assert_eq!(decide(sc, ME, &syn, &mut s), Decision::Deliver);
        let udp = crate::wire::testing::udp_packet(CLIENT, 40001, VIP, 53, 8);
        assert_eq!(decide(sc, ME, &udp, &mut s), Decision::Deliver);
        assert_eq!(decide(sc, ME, &[0x45], &mut s), Decision::Deliver);
        assert_eq!(s.asked, 2);
        // A RST of a flow that is not here goes on too (P's socket closes).
        let rst = tcp_packet(CLIENT, 40001, VIP, 80, 0x14, 0);
        assert_eq!(decide(sc, ME, &rst, &mut s), Decision::Forward(P));
    }

    /// Records what it sends.
    #[derive(Default, Clone)]
    struct Sent(std::sync::Arc<std::sync::Mutex<Vec<Packet>>>);

    /// A sent packet: where to, and its bytes.
    type Packet = (Ipv4Addr, Vec<u8>);

    impl Send2nd for Sent {
        fn send(&mut self, to: Ipv4Addr, header: &[u8], inner: &[u8]) -> std::io::Result<()> {
            let mut v = header.to_vec();
            v.extend_from_slice(inner);
            self.0.lock().unwrap().push((to, v));
            Ok(())
        }
    }

    #[test]
    fn the_forwarder_sends_flagged_packets_without_a_socket_and_drops_bad_fields() {
        use crate::encap::{build_outer_chance, OuterParams, Tunnel};
        let sent = Sent::default();
        let mut f = Forwarder::new(
            Box::new(Sockets::default()),
            Box::new(sent.clone()),
            DEFAULT_GUE_PORT,
            None,
        );
        let inner = tcp_packet(CLIENT, 40001, VIP, 80, 0x10, 10);
        let gue = |second: Option<SecondChance>| {
            let p = OuterParams {
                src: Ipv4Addr::new(10, 1, 0, 1),
                dst: ME,
                tunnel: Tunnel::Gue {
                    port: DEFAULT_GUE_PORT,
                    csum: false,
                },
                flow_hash: 1,
            };
            let mut h = [0u8; MAX_OUTER_HEADER];
            let n = build_outer_chance(&p, &inner, None, second, &mut h).unwrap();
            let mut v = h[28..n].to_vec();
            v.extend_from_slice(&inner);
            let r = crate::encap::strip_gue(&v).unwrap();
            (v, r)
        };
        let mut stats = AgentStats::default();
        let (plain, r) = gue(None);
        assert!(!f.take(&plain, r, ME, &mut stats));
        let (flagged, r) = gue(Some(SecondChance::new(P)));
        assert!(f.take(&flagged, r.clone(), ME, &mut stats));
        assert_eq!((stats.chance_checked, stats.chance_forwarded), (1, 1));
        let out = sent.0.lock().unwrap().clone();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, P);
        let s = strip_ip(&out[0].1, TunnelType::Gue, None).unwrap();
        assert_eq!((s.outer_src, s.outer_dst), (ME, P));
        assert_eq!(&out[0].1[s.inner], &inner[..]);
        // A malformed field: dropped, counted under its reason.
        let mut bad = flagged.clone();
        bad[8] = 7;
        assert!(f.take(&bad, r, ME, &mut stats));
        assert_eq!(stats.chance[1], 1);
        assert!(stats.to_string().contains("chance_bad_field=1"));
    }

    #[test]
    fn the_forwarded_packet_is_gue_to_the_second_choice_without_one() {
        let inner = tcp_packet(CLIENT, 40001, VIP, 80, 0x10, 10);
        let mut h = [0u8; MAX_OUTER_HEADER];
        let n = forward_header(ME, P, DEFAULT_GUE_PORT, &inner, None, &mut h).unwrap();
        let mut pkt = h[..n].to_vec();
        pkt.extend_from_slice(&inner);
        let s = strip_ip(&pkt, TunnelType::Gue, None).unwrap();
        assert_eq!((s.outer_src, s.outer_dst), (ME, P));
        assert_eq!(&pkt[s.inner], &inner[..]);
        assert_eq!(crate::encap::chance::parse(&pkt[28..]), Ok(Ok(None)));
        // Sealed with the agent's key, P's agent (holding it) opens it.
        let k = auth::tests_support::key(3);
        let seal = auth::Seal {
            key: &k,
            lane: 0,
            seq: 5,
        };
        let n = forward_header(ME, P, DEFAULT_GUE_PORT, &inner, Some(&seal), &mut h).unwrap();
        let mut pkt = h[..n].to_vec();
        pkt.extend_from_slice(&inner);
        let mut ring = auth::Keyring::new(vec![k]).unwrap();
        assert!(ring.open(ME, P, &pkt[28..]).is_ok());
    }
}
