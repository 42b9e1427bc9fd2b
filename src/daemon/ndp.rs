//! The IPv6 half of the VIPs' responder ([`Announcer`](super::announce::Announcer)): which
//! received frame gets which Neighbor Advertisement ([`answer_for`]), over the frames the NDP
//! socket ([`NdpSocket`](crate::sys::ndp::NdpSocket)) passes, and the unsolicited
//! advertisements sent when an address starts being announced ([`Unsolicited`]).
//!
//! A Neighbor Solicitation is answered when it is valid ([`parse_ndp`]: hop limit 255,
//! checksum, code 0, options well formed, duplicate address detection rules), asks for an
//! address announced on the interface, and is addressed to that address's solicited-node
//! group or to the address itself. A DAD probe (unspecified source) for an announced VIP is
//! answered to all-nodes with S clear (RFC 4861 §7.2.4): the prober learns the address is in use.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use crate::sys::ndp::FrameFrom;
use crate::wire::ethernet::{self, EtherType};
use crate::wire::icmpv6::{self, parse_ndp, Ndp};
use crate::wire::{EthernetFrame, Ipv6Packet};

/// Length of the frames this module builds: Ethernet 14 + IPv6 40 + NA 24 + option 8.
pub const FRAME_LEN: usize = ethernet::HEADER_LEN
    + crate::wire::ipv6::HEADER_LEN
    + icmpv6::NDP_LEN
    + icmpv6::LLADDR_OPTION_LEN;

/// Unsolicited advertisements sent per address at takeover by default: RFC 4861 §10's
/// MAX_NEIGHBOR_ADVERTISEMENT.
pub const UNSOLICITED_COUNT: u32 = 3;
/// Their spacing by default: RFC 4861 §10's RETRANS_TIMER.
pub const UNSOLICITED_INTERVAL: Duration = Duration::from_secs(1);

/// The advertisement answering `frame` (an Ethernet frame received on an interface whose MAC is
/// `own_mac`) if it is a valid Neighbor Solicitation for an address `answers` says we announce:
/// written into `out`, its length returned. Our own frames and solicitations from our MAC get
/// no answer.
pub fn answer_for(
    frame: &[u8],
    from: &FrameFrom,
    own_mac: [u8; 6],
    answers: impl Fn(Ipv6Addr) -> bool,
    out: &mut [u8; FRAME_LEN],
) -> Option<usize> {
    if from.outgoing || from.mac == own_mac {
        return None;
    }
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::IPV6 || eth.src_addr() == own_mac {
        return None;
    }
    let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
    let Ok(Ndp::Solicit(ns)) = parse_ndp(&ip) else {
        return None;
    };
    if ns.dst != icmpv6::solicited_node(ns.target) && ns.dst != ns.target {
        return None;
    }
    if ns.source_mac == Some(own_mac) || !answers(ns.target) {
        return None;
    }
    icmpv6::answer_frame(&ns, eth.src_addr(), own_mac, out).ok()
}

/// The unsolicited advertisements still to send: `count` per address that started being
/// announced, `interval` apart, the first at once.
#[derive(Debug)]
pub struct Unsolicited {
    count: u32,
    interval: Duration,
    pending: Vec<Pending>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Pending {
    iface: String,
    addr: Ipv6Addr,
    left: u32,
    at: Instant,
}

impl Default for Unsolicited {
    fn default() -> Self {
        Unsolicited {
            count: UNSOLICITED_COUNT,
            interval: UNSOLICITED_INTERVAL,
            pending: Vec::new(),
        }
    }
}

impl Unsolicited {
    /// Sets how many advertisements each takeover sends (0: none) and how far apart.
    pub fn configure(&mut self, count: u32, interval: Duration) {
        self.count = count;
        self.interval = interval;
    }

    /// `addr` started being announced on `iface` at `now`: its burst (re)starts.
    pub fn start(&mut self, iface: &str, addr: Ipv6Addr, now: Instant) {
        self.stop(iface, addr);
        if self.count > 0 {
            self.pending.push(Pending {
                iface: iface.to_string(),
                addr,
                left: self.count,
                at: now,
            });
        }
    }

    /// `addr` is no longer announced on `iface`: the rest of its burst is dropped.
    pub fn stop(&mut self, iface: &str, addr: Ipv6Addr) {
        self.pending.retain(|p| p.iface != iface || p.addr != addr);
    }

    /// The advertisements due at `now` (interface, address), each counted as sent.
    pub fn due(&mut self, now: Instant) -> Vec<(String, Ipv6Addr)> {
        let mut out = Vec::new();
        let interval = self.interval;
        self.pending.retain_mut(|p| {
            if p.at <= now && p.left > 0 {
                out.push((p.iface.clone(), p.addr));
                p.left -= 1;
                p.at = now + interval;
            }
            p.left > 0
        });
        out
    }

    /// Whether nothing is left to send.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::icmpv6::{NeighborAdvert, NeighborSolicit, ALL_NODES, ALL_NODES_MAC};

    const OURS: [u8; 6] = [2, 0, 0, 0, 0, 0x11];
    const CLIENT: [u8; 6] = [2, 0, 0, 0, 0, 0x02];
    const VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
    const CLIENT_IP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

    fn from_client(len: usize) -> FrameFrom {
        FrameFrom {
            len,
            mac: CLIENT,
            outgoing: false,
        }
    }

    fn frame(ns: &NeighborSolicit) -> Vec<u8> {
        let mut buf = vec![0u8; 128];
        let n = ns.emit_frame(CLIENT, OURS, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    fn answer(frame: &[u8], from: &FrameFrom) -> Option<(NeighborAdvert, [u8; 6])> {
        let mut out = [0u8; FRAME_LEN];
        let n = answer_for(frame, from, OURS, |a| a == VIP, &mut out)?;
        let eth = EthernetFrame::new_checked(&out[..n]).unwrap();
        assert_eq!(eth.src_addr(), OURS);
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        match parse_ndp(&ip) {
            Ok(Ndp::Advert(na)) => Some((na, eth.dst_addr())),
            other => panic!("answer is not an advertisement: {other:?}"),
        }
    }

    #[test]
    fn answers_a_solicitation_for_an_announced_vip_with_our_mac() {
        let f = frame(&NeighborSolicit::for_target(CLIENT_IP, CLIENT, VIP));
        let (na, dst_mac) = answer(&f, &from_client(f.len())).expect("answered");
        assert_eq!(dst_mac, CLIENT);
        assert_eq!((na.src, na.dst, na.target), (VIP, CLIENT_IP, VIP));
        assert!(na.solicited && na.override_ && !na.router);
        assert_eq!(na.target_mac, Some(OURS));
    }

    #[test]
    fn answers_a_unicast_probe_and_a_dad_probe() {
        // Reachability probe straight to the VIP, without the option: to the frame's source.
        let probe = NeighborSolicit {
            dst: VIP,
            source_mac: None,
            ..NeighborSolicit::for_target(CLIENT_IP, CLIENT, VIP)
        };
        let f = frame(&probe);
        let (na, dst_mac) = answer(&f, &from_client(f.len())).expect("answered");
        assert_eq!((na.dst, dst_mac), (CLIENT_IP, CLIENT));
        // DAD: to all-nodes, S clear.
        let dad = NeighborSolicit {
            src: Ipv6Addr::UNSPECIFIED,
            source_mac: None,
            ..NeighborSolicit::for_target(CLIENT_IP, CLIENT, VIP)
        };
        let f = frame(&dad);
        let (na, dst_mac) = answer(&f, &from_client(f.len())).expect("answered");
        assert_eq!((na.dst, dst_mac), (ALL_NODES, ALL_NODES_MAC));
        assert!(!na.solicited && na.override_);
    }

    #[test]
    fn stays_silent_for_others_our_own_frames_and_malformed_ones() {
        let ns = NeighborSolicit::for_target(CLIENT_IP, CLIENT, VIP);
        let good = frame(&ns);
        let from = from_client(good.len());
        assert!(answer(&good, &from).is_some());
        // Another address.
        let other = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x101);
        let f = frame(&NeighborSolicit::for_target(CLIENT_IP, CLIENT, other));
        assert!(answer(&f, &from).is_none());
        // Our own frames.
        let outgoing = FrameFrom {
            outgoing: true,
            ..from
        };
        assert!(answer(&good, &outgoing).is_none());
        let ours = FrameFrom { mac: OURS, ..from };
        assert!(answer(&good, &ours).is_none());
        let own_option = frame(&NeighborSolicit::for_target(CLIENT_IP, OURS, VIP));
        assert!(answer(&own_option, &from).is_none());
        // Sent to some other multicast group.
        let misdirected = frame(&NeighborSolicit {
            dst: ALL_NODES,
            ..ns
        });
        assert!(answer(&misdirected, &from).is_none());
        // Every truncation.
        for n in 0..good.len() {
            assert!(answer(&good[..n], &from).is_none(), "cut at {n}");
        }
        // Not IPv6, a router-crossed hop limit, a bad checksum, a non-zero code, an
        // advertisement instead of a solicitation.
        let mutate = |at: usize, v: u8| {
            let mut f = good.clone();
            f[at] = v;
            f
        };
        let l3 = ethernet::HEADER_LEN;
        let l4 = l3 + crate::wire::ipv6::HEADER_LEN;
        for (what, f) in [
            ("ethertype", mutate(12, 0x08)),
            ("hop limit", mutate(l3 + 7, 64)),
            ("checksum", mutate(l4 + 2, good[l4 + 2] ^ 0xff)),
            ("code", mutate(l4 + 1, 1)),
            ("type", mutate(l4, 136)),
            ("next header", mutate(l3 + 6, 17)),
            ("option length 0", mutate(l4 + 25, 0)),
        ] {
            assert!(answer(&f, &from).is_none(), "{what}");
        }
        // A DAD probe carrying a source link-layer option is invalid.
        let bad_dad = frame(&NeighborSolicit {
            src: Ipv6Addr::UNSPECIFIED,
            ..ns
        });
        assert!(answer(&bad_dad, &from).is_none());
    }

    #[test]
    fn unsolicited_bursts_are_count_long_interval_apart_and_stop_with_the_address() {
        let t0 = Instant::now();
        let mut u = Unsolicited::default();
        u.start("eth0", VIP, t0);
        assert_eq!(u.due(t0), [("eth0".to_string(), VIP)]);
        assert!(u.due(t0 + Duration::from_millis(500)).is_empty());
        assert_eq!(u.due(t0 + Duration::from_secs(1)).len(), 1);
        assert_eq!(u.due(t0 + Duration::from_secs(2)).len(), 1);
        assert!(u.is_empty());
        u.start("eth0", VIP, t0);
        u.stop("eth0", VIP);
        assert!(u.is_empty());
        u.configure(0, UNSOLICITED_INTERVAL);
        u.start("eth0", VIP, t0);
        assert!(u.due(t0).is_empty());
    }
}

/// Needs root: `cargo test --lib -- --ignored daemon::ndp::root_tests --test-threads=1`.
#[cfg(test)]
mod root_tests {
    use std::collections::BTreeSet;
    use std::net::Ipv6Addr;
    use std::process::Command;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use crate::daemon::announce::Announcer;
    use crate::sys::iface;
    use crate::sys::ndp::NdpSocket;
    use crate::sys::testing::{in_new_netns, ip};
    use crate::wire::icmpv6::{self, msg_type, parse_ndp, Ndp, NeighborAdvert, NeighborSolicit};
    use crate::wire::{EthernetFrame, Ipv6Packet};

    const VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
    const OTHER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x101);
    const PEER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

    /// What the director side tells the peer, and back.
    #[derive(Debug)]
    enum Step {
        /// Peer: your namespace's thread id, capture open.
        PeerReady,
        /// Director: announcing VIP from this MAC.
        Announcing([u8; 6]),
        /// Peer: done with the live responder; stop it.
        StopIt,
        /// Director: the responder is gone.
        Stopped,
    }

    /// The advertisements for `target` the capture sees within `wait` (with their Ethernet
    /// destination).
    fn adverts(
        cap: &NdpSocket,
        target: Ipv6Addr,
        wait: Duration,
    ) -> Vec<(NeighborAdvert, [u8; 6])> {
        let mut buf = [0u8; 1514];
        let mut got = Vec::new();
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            while let Some(from) = cap.recv(&mut buf).unwrap() {
                if from.outgoing {
                    continue;
                }
                let Ok(eth) = EthernetFrame::new_checked(&buf[..from.len]) else {
                    continue;
                };
                let Ok(ip6) = Ipv6Packet::new_checked(eth.payload()) else {
                    continue;
                };
                if let Ok(Ndp::Advert(na)) = parse_ndp(&ip6) {
                    if na.target == target {
                        got.push((na, eth.dst_addr()));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        got
    }

    /// Sends a solicitation for `target` from the peer through `cap`.
    fn solicit(cap: &NdpSocket, peer_mac: [u8; 6], target: Ipv6Addr) {
        let mut buf = [0u8; 128];
        let ns = NeighborSolicit::for_target(PEER, peer_mac, target);
        let n = ns.emit_frame(peer_mac, [0; 6], &mut buf).unwrap();
        cap.send(&buf[..n]).unwrap();
    }

    fn peer(to_dir: mpsc::Sender<(Step, u32)>, from_dir: mpsc::Receiver<Step>) {
        crate::sys::unshare_net_namespace().expect("unshare(CLONE_NEWNET) needs root");
        ip(&["link", "set", "lo", "up"]);
        let link = std::fs::read_link("/proc/thread-self").unwrap();
        let tid: u32 = link
            .to_string_lossy()
            .rsplit('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        to_dir.send((Step::PeerReady, tid)).unwrap();
        // The director moves ndb here; wait for it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while iface::index("ndb").is_err() {
            assert!(Instant::now() < deadline, "ndb never arrived");
            std::thread::sleep(Duration::from_millis(20));
        }
        ip(&["addr", "add", "2001:db8::2/64", "dev", "ndb", "nodad"]);
        ip(&["link", "set", "ndb", "up"]);
        let peer_mac = iface::mac("ndb").unwrap();
        let cap = NdpSocket::open_types(
            iface::index("ndb").unwrap(),
            &[msg_type::NEIGHBOR_SOLICIT, msg_type::NEIGHBOR_ADVERT],
        )
        .unwrap();
        while !iface::is_running("ndb") {
            assert!(Instant::now() < deadline, "ndb never ran");
            std::thread::sleep(Duration::from_millis(20));
        }
        to_dir.send((Step::PeerReady, tid)).unwrap();
        let Ok(Step::Announcing(dir_mac)) = from_dir.recv() else {
            panic!("director side failed")
        };

        // The takeover's unsolicited advertisement: to all-nodes, O set, S clear, our MAC.
        let seen = adverts(&cap, VIP, Duration::from_millis(1500));
        let (na, dst_mac) = seen.first().expect("an unsolicited NA at start");
        assert_eq!(
            (na.dst, *dst_mac),
            (icmpv6::ALL_NODES, icmpv6::ALL_NODES_MAC)
        );
        assert!(na.override_ && !na.solicited);
        assert_eq!((na.src, na.target_mac), (VIP, Some(dir_mac)));

        // A solicitation crafted with the wire builders: answered to us, S and O set.
        let mut answered = None;
        for _ in 0..10 {
            solicit(&cap, peer_mac, VIP);
            answered = adverts(&cap, VIP, Duration::from_millis(300))
                .into_iter()
                .find(|(na, _)| na.solicited);
            if answered.is_some() {
                break;
            }
        }
        let (na, dst_mac) = answered.expect("our NS for the VIP answered");
        assert_eq!((na.dst, dst_mac), (PEER, peer_mac));
        assert!(na.override_);
        assert_eq!(na.target_mac, Some(dir_mac));

        // An address not announced: silence.
        solicit(&cap, peer_mac, OTHER);
        assert!(adverts(&cap, OTHER, Duration::from_millis(1000)).is_empty());

        // The kernel's own resolution: the neighbour entry appears with the director's MAC.
        let mac_text = dir_mac.map(|b| format!("{b:02x}")).join(":");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let _ = Command::new("ping")
                .args(["-6", "-c", "1", "-W", "1", "2001:db8::100"])
                .output()
                .unwrap();
            let neigh = ip(&["-6", "neigh", "show", "2001:db8::100", "dev", "ndb"]);
            if neigh.contains(&format!("lladdr {mac_text}")) {
                break;
            }
            assert!(Instant::now() < deadline, "no neighbour entry: {neigh:?}");
        }

        // The responder gone, nothing answers any more.
        to_dir.send((Step::StopIt, tid)).unwrap();
        let Ok(Step::Stopped) = from_dir.recv() else {
            panic!("director side failed")
        };
        adverts(&cap, VIP, Duration::from_millis(100));
        for _ in 0..3 {
            solicit(&cap, peer_mac, VIP);
            let late = adverts(&cap, VIP, Duration::from_millis(400));
            assert!(
                late.is_empty(),
                "answered after the responder stopped: {late:?}"
            );
        }
    }

    #[test]
    #[ignore = "needs root (network namespaces)"]
    fn responder_answers_solicitations_for_announced_vips_until_it_stops() {
        in_new_netns(|| {
            ip(&["link", "add", "nda", "type", "veth", "peer", "name", "ndb"]);
            let (to_dir, from_peer) = mpsc::channel();
            let (to_peer, from_dir) = mpsc::channel();
            let peer = std::thread::spawn(move || peer(to_dir, from_dir));
            let outcome = (|| -> Result<u64, String> {
                let (_, tid) = from_peer.recv().map_err(|_| "peer failed to start")?;
                ip(&["link", "set", "ndb", "netns", &tid.to_string()]);
                ip(&["link", "set", "nda", "up"]);
                let Ok((Step::PeerReady, _)) = from_peer.recv() else {
                    return Err("peer failed while setting up".into());
                };
                let mac = iface::mac("nda").unwrap();
                let announcer = Announcer::new();
                let vips = BTreeSet::from([VIP]);
                let new = announcer.set6("test", "nda", &vips).unwrap();
                assert_eq!(new, [VIP]);
                assert_eq!(announcer.answered_ip("nda").len(), 1);
                to_peer
                    .send(Step::Announcing(mac))
                    .map_err(|_| "peer gone")?;
                let Ok((Step::StopIt, _)) = from_peer.recv() else {
                    return Err("peer failed while checking answers".into());
                };
                let replies = announcer
                    .nd_replies
                    .load(std::sync::atomic::Ordering::Relaxed);
                announcer.shutdown();
                drop(announcer);
                to_peer.send(Step::Stopped).map_err(|_| "peer gone")?;
                Ok(replies)
            })();
            drop(to_peer);
            drop(from_peer);
            if let Err(panic) = peer.join() {
                std::panic::resume_unwind(panic);
            }
            let replies = outcome.unwrap();
            // Our crafted NS (at least once) and the kernel's, before the stop.
            assert!(replies >= 2, "nd_replies {replies}");
        });
    }
}
