//! The VIPs' ARP and NDP responder: answers ARP requests for the IPv4 VIPs and Neighbor
//! Solicitations for the IPv6 VIPs this director currently announces, on each LAN interface,
//! with the interface's MAC, and sends gratuitous ARPs and unsolicited Neighbor Advertisements.
//!
//! What is announced where is a set per interface and per *owner*: each VRRP instance (its VIPs
//! while it is MASTER, nothing otherwise) and `--announce IFACE` (every service VIP, always).
//! An address is answered while any owner announces it there.
//!
//! Answers go out through `AF_PACKET` sockets this process holds
//! ([`ArpSocket`](crate::sys::arp::ArpSocket), and for IPv6
//! [`NdpSocket`](crate::sys::ndp::NdpSocket), opened with the interface's first IPv6 address),
//! never through a kernel proxy-neighbour entry: when the process dies, even by SIGKILL, the
//! answering stops with it, and a BACKUP taking over is the only host answering. One thread
//! reads every interface's sockets. The IPv6 decisions live in [`super::ndp`]: which
//! solicitation is answered ([`answer_for`](super::ndp::answer_for)), and the burst of
//! unsolicited advertisements (override set) sent when an address starts being announced on an
//! interface (takeover), [`UNSOLICITED_COUNT`](super::ndp::UNSOLICITED_COUNT) of them by default
//! ([`Announcer::set_unsolicited`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::ndp::{self as nd, Unsolicited};
use crate::sys::arp::{ArpFrom, ArpSocket};
use crate::sys::ndp::NdpSocket;
use crate::wire::arp::{ArpOp, ArpPacket, ArpRepr, PACKET_LEN};
use crate::wire::icmpv6;

/// The owner name `--announce` uses.
pub const ANNOUNCE_OWNER: &str = "--announce";

/// The ARP and NDP responder of every interface, shared by the control plane and the VRRP
/// driver.
pub struct Announcer {
    links: Mutex<BTreeMap<String, Link>>,
    /// Unsolicited advertisements still to send (locked after `links` when both are).
    unsolicited: Mutex<Unsolicited>,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// ARP replies sent.
    pub replies: AtomicU64,
    /// Gratuitous ARPs sent.
    pub gratuitous: AtomicU64,
    /// Neighbor Advertisements sent answering a solicitation.
    pub nd_replies: AtomicU64,
    /// Unsolicited Neighbor Advertisements sent.
    pub nd_unsolicited: AtomicU64,
}

struct Link {
    sock: Arc<ArpSocket>,
    /// The NDP socket, opened with the first IPv6 address announced here.
    ndp: Option<Arc<NdpSocket>>,
    /// The solicited-node groups `ndp` joined.
    joined: BTreeSet<[u8; 6]>,
    mac: [u8; 6],
    /// What each owner announces on this interface.
    owners: BTreeMap<String, BTreeSet<IpAddr>>,
}

impl Link {
    fn answers(&self, ip: IpAddr) -> bool {
        self.owners.values().any(|s| s.contains(&ip))
    }

    fn answered(&self) -> BTreeSet<IpAddr> {
        self.owners.values().flatten().copied().collect()
    }

    /// Joins the solicited-node groups of the IPv6 addresses answered now and leaves the
    /// others (a failure is logged: on an interface that does not filter multicast, or with
    /// the host's own address in the same group, solicitations still arrive).
    fn sync_groups(&mut self, iface: &str) {
        let Some(sock) = &self.ndp else { return };
        let wanted: BTreeSet<[u8; 6]> = self
            .answered()
            .into_iter()
            .filter_map(|a| match a {
                IpAddr::V6(a) => Some(icmpv6::multicast_mac(icmpv6::solicited_node(a))),
                IpAddr::V4(_) => None,
            })
            .collect();
        for mac in wanted.difference(&self.joined) {
            if let Err(e) = sock.join(*mac) {
                log::warn!("tunlb director: NDP responder on {iface}: joining {mac:02x?}: {e}");
            }
        }
        for mac in self.joined.difference(&wanted) {
            if let Err(e) = sock.leave(*mac) {
                log::warn!("tunlb director: NDP responder on {iface}: leaving {mac:02x?}: {e}");
            }
        }
        self.joined = wanted;
    }
}

/// Which addresses of an owner's set a change replaces.
#[derive(Clone, Copy)]
enum Family {
    V4,
    V6,
    Both,
}

impl Family {
    fn covers(self, a: &IpAddr) -> bool {
        match self {
            Family::V4 => a.is_ipv4(),
            Family::V6 => a.is_ipv6(),
            Family::Both => true,
        }
    }
}

fn proto(a: &IpAddr) -> &'static str {
    if a.is_ipv4() {
        "ARP"
    } else {
        "NDP"
    }
}

/// The reply to `packet` (an ARP packet received on an interface whose MAC is `own_mac`), if
/// it is a request for an address `answers` says we announce: the reply's bytes and the MAC to
/// send it to. Our own packets, gratuitous ARPs and replies get no answer.
pub fn reply_for(
    packet: &[u8],
    from: &ArpFrom,
    own_mac: [u8; 6],
    answers: impl Fn(Ipv4Addr) -> bool,
) -> Option<([u8; PACKET_LEN], [u8; 6])> {
    if from.outgoing || from.mac == own_mac {
        return None;
    }
    let req = ArpPacket::new_checked(packet).ok()?;
    if req.op() != Some(ArpOp::Request) || req.is_gratuitous() || !answers(req.target_ip()) {
        return None;
    }
    if req.sender_mac() == own_mac {
        return None;
    }
    Some((ArpRepr::reply_to(&req, own_mac).emit(), req.sender_mac()))
}

/// One socket the thread polls.
enum Polled {
    Arp(Arc<ArpSocket>),
    Ndp(Arc<NdpSocket>),
}

impl Announcer {
    /// An announcer answering nothing yet; its thread starts with the first interface.
    pub fn new() -> Arc<Announcer> {
        Arc::new(Announcer {
            links: Mutex::new(BTreeMap::new()),
            unsolicited: Mutex::new(Unsolicited::default()),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
            replies: AtomicU64::new(0),
            gratuitous: AtomicU64::new(0),
            nd_replies: AtomicU64::new(0),
            nd_unsolicited: AtomicU64::new(0),
        })
    }

    /// Sets how many unsolicited Neighbor Advertisements an IPv6 address gets when it starts
    /// being announced on an interface (0: none) and how far apart; by default
    /// [`UNSOLICITED_COUNT`](super::ndp::UNSOLICITED_COUNT), 1 s apart.
    pub fn set_unsolicited(&self, count: u32, interval: Duration) {
        if let Ok(mut u) = self.unsolicited.lock() {
            u.configure(count, interval);
        }
    }

    /// Opens the ARP socket of `iface` if not open yet (and starts the thread).
    fn link<'a>(
        self: &Arc<Self>,
        links: &'a mut BTreeMap<String, Link>,
        iface: &str,
    ) -> io::Result<&'a mut Link> {
        if !links.contains_key(iface) {
            let ifindex = crate::sys::iface::index(iface)
                .map_err(|e| io::Error::new(e.kind(), format!("interface {iface}: {e}")))?;
            let mac = crate::sys::iface::mac(iface)
                .map_err(|e| io::Error::new(e.kind(), format!("MAC of {iface}: {e}")))?;
            let sock = ArpSocket::open(ifindex)
                .map_err(|e| io::Error::new(e.kind(), format!("ARP socket on {iface}: {e}")))?;
            links.insert(
                iface.to_string(),
                Link {
                    sock: Arc::new(sock),
                    ndp: None,
                    joined: BTreeSet::new(),
                    mac,
                    owners: BTreeMap::new(),
                },
            );
            self.ensure_thread()?;
        }
        Ok(links.get_mut(iface).expect("inserted above"))
    }

    /// Opens the NDP socket of `link` (on `iface`) if not open yet.
    fn open_ndp(link: &mut Link, iface: &str) -> io::Result<Arc<NdpSocket>> {
        if let Some(s) = &link.ndp {
            return Ok(s.clone());
        }
        let ifindex = crate::sys::iface::index(iface)
            .map_err(|e| io::Error::new(e.kind(), format!("interface {iface}: {e}")))?;
        let sock = NdpSocket::open(ifindex)
            .map_err(|e| io::Error::new(e.kind(), format!("NDP socket on {iface}: {e}")))?;
        let sock = Arc::new(sock);
        link.ndp = Some(sock.clone());
        Ok(sock)
    }

    fn ensure_thread(self: &Arc<Self>) -> io::Result<()> {
        let mut t = self.thread.lock().map_err(|_| poisoned())?;
        if t.is_none() {
            let me = self.clone();
            *t = Some(
                std::thread::Builder::new()
                    .name("tunlb-arp".into())
                    .spawn(move || me.run())?,
            );
        }
        Ok(())
    }

    /// Opens the ARP socket of `iface` now (so a missing interface or privilege shows at
    /// start, not at the first takeover).
    pub fn open(self: &Arc<Self>, iface: &str) -> io::Result<()> {
        let mut links = self.links.lock().map_err(|_| poisoned())?;
        self.link(&mut links, iface).map(drop)
    }

    /// Opens the ARP and the NDP socket of `iface` now (see [`open`](Self::open)).
    pub fn open6(self: &Arc<Self>, iface: &str) -> io::Result<()> {
        let mut links = self.links.lock().map_err(|_| poisoned())?;
        let link = self.link(&mut links, iface)?;
        Self::open_ndp(link, iface).map(drop)
    }

    /// Replaces what `owner` announces on `iface` with `vips`; returns the addresses that were
    /// not answered there before (the caller may send gratuitous ARPs for them). The owner's
    /// IPv6 addresses, if any, stay as they are.
    pub fn set(
        self: &Arc<Self>,
        owner: &str,
        iface: &str,
        vips: &BTreeSet<Ipv4Addr>,
    ) -> io::Result<Vec<Ipv4Addr>> {
        let vips = vips.iter().map(|&a| IpAddr::V4(a)).collect();
        let new = self.replace(owner, iface, Family::V4, vips, true)?;
        Ok(new
            .into_iter()
            .filter_map(|a| match a {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            })
            .collect())
    }

    /// Replaces the IPv6 addresses `owner` announces on `iface` with `vips`; returns those that
    /// were not answered there before. Each of them gets its burst of unsolicited Neighbor
    /// Advertisements from the announcer (the first at once): the caller sends nothing. The
    /// owner's IPv4 addresses stay as they are.
    pub fn set6(
        self: &Arc<Self>,
        owner: &str,
        iface: &str,
        vips: &BTreeSet<Ipv6Addr>,
    ) -> io::Result<Vec<Ipv6Addr>> {
        let vips = vips.iter().map(|&a| IpAddr::V6(a)).collect();
        let new = self.replace(owner, iface, Family::V6, vips, true)?;
        Ok(new
            .into_iter()
            .filter_map(|a| match a {
                IpAddr::V6(a) => Some(a),
                IpAddr::V4(_) => None,
            })
            .collect())
    }

    /// Replaces everything `owner` announces on `iface`, both families, with `vips`; returns
    /// the addresses not answered there before. The IPv6 ones get their unsolicited Neighbor
    /// Advertisements from the announcer; for the IPv4 ones the caller sends gratuitous ARPs
    /// ([`advertise`](Self::advertise) does either).
    pub fn announce(
        self: &Arc<Self>,
        owner: &str,
        iface: &str,
        vips: &BTreeSet<IpAddr>,
    ) -> io::Result<Vec<IpAddr>> {
        self.replace(owner, iface, Family::Both, vips.clone(), true)
    }

    /// [`announce`](Self::announce) without the announcer's own burst of unsolicited Neighbor
    /// Advertisements: the caller sends its own (the VRRP driver, `garp_master_*` apart, as
    /// keepalived does), with [`advertise`](Self::advertise).
    pub fn announce_quietly(
        self: &Arc<Self>,
        owner: &str,
        iface: &str,
        vips: &BTreeSet<IpAddr>,
    ) -> io::Result<Vec<IpAddr>> {
        self.replace(owner, iface, Family::Both, vips.clone(), false)
    }

    fn replace(
        self: &Arc<Self>,
        owner: &str,
        iface: &str,
        family: Family,
        vips: BTreeSet<IpAddr>,
        burst: bool,
    ) -> io::Result<Vec<IpAddr>> {
        let mut links = self.links.lock().map_err(|_| poisoned())?;
        if vips.is_empty() && !links.contains_key(iface) {
            return Ok(Vec::new());
        }
        let link = self.link(&mut links, iface)?;
        if vips.iter().any(IpAddr::is_ipv6) {
            Self::open_ndp(link, iface)?;
        }
        let before = link.answered();
        let mut set: BTreeSet<IpAddr> = link
            .owners
            .remove(owner)
            .unwrap_or_default()
            .into_iter()
            .filter(|a| !family.covers(a))
            .collect();
        set.extend(vips);
        if !set.is_empty() {
            link.owners.insert(owner.to_string(), set);
        }
        let after = link.answered();
        link.sync_groups(iface);
        let now = Instant::now();
        let mut unsolicited = self.unsolicited.lock().map_err(|_| poisoned())?;
        for gone in before.difference(&after) {
            log::info!(
                "tunlb director: {owner}: no longer answering {} for {gone} on {iface}",
                proto(gone)
            );
            if let IpAddr::V6(a) = gone {
                unsolicited.stop(iface, *a);
            }
        }
        let new: Vec<IpAddr> = after.difference(&before).copied().collect();
        for vip in &new {
            log::info!(
                "tunlb director: {owner}: answering {} for {vip} on {iface}",
                proto(vip)
            );
            if let (IpAddr::V6(a), true) = (vip, burst) {
                unsolicited.start(iface, *a, now);
            }
        }
        // Tell the LAN at once; the rest of each burst goes from the thread.
        let due = unsolicited.due(now);
        drop(unsolicited);
        self.send_unsolicited(&links, due);
        Ok(new)
    }

    fn send_unsolicited(&self, links: &BTreeMap<String, Link>, due: Vec<(String, Ipv6Addr)>) {
        let mut frame = [0u8; nd::FRAME_LEN];
        for (iface, addr) in due {
            let Some(link) = links.get(&iface) else {
                continue;
            };
            let Some(sock) = &link.ndp else { continue };
            let sent = icmpv6::unsolicited_frame(addr, link.mac, &mut frame)
                .map_err(|e| io::Error::other(e.to_string()))
                .and_then(|n| sock.send(&frame[..n]));
            match sent {
                Ok(()) => {
                    self.nd_unsolicited.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => log::warn!(
                    "tunlb director: unsolicited neighbor advertisement for {addr} on {iface}: {e}"
                ),
            }
        }
    }

    /// Stops answering anything for `owner` on every interface.
    pub fn clear_owner(&self, owner: &str) {
        if let Ok(mut links) = self.links.lock() {
            let mut stopped = Vec::new();
            for (iface, link) in links.iter_mut() {
                let before = link.answered();
                link.owners.remove(owner);
                link.sync_groups(iface);
                for gone in before.difference(&link.answered()) {
                    if let IpAddr::V6(a) = gone {
                        stopped.push((iface.clone(), *a));
                    }
                }
            }
            if let Ok(mut u) = self.unsolicited.lock() {
                for (iface, a) in stopped {
                    u.stop(&iface, a);
                }
            }
        }
    }

    /// The IPv4 addresses answered on `iface` now.
    pub fn answered(&self, iface: &str) -> BTreeSet<Ipv4Addr> {
        self.answered_ip(iface)
            .into_iter()
            .filter_map(|a| match a {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            })
            .collect()
    }

    /// Every address answered on `iface` now, both families.
    pub fn answered_ip(&self, iface: &str) -> BTreeSet<IpAddr> {
        self.links
            .lock()
            .ok()
            .and_then(|l| l.get(iface).map(Link::answered))
            .unwrap_or_default()
    }

    /// Sends one gratuitous ARP for `vip` on `iface` (a broadcast request with sender and
    /// target `vip`, as keepalived sends), from the interface's MAC.
    pub fn gratuitous_arp(self: &Arc<Self>, iface: &str, vip: Ipv4Addr) -> io::Result<()> {
        let (sock, mac) = {
            let mut links = self.links.lock().map_err(|_| poisoned())?;
            let link = self.link(&mut links, iface)?;
            (link.sock.clone(), link.mac)
        };
        sock.send(&ArpRepr::gratuitous(vip, mac).emit(), [0xff; 6])?;
        self.gratuitous.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Sends one unsolicited Neighbor Advertisement for `vip` on `iface` (to all-nodes, override
    /// set), from the interface's MAC.
    pub fn unsolicited_na(self: &Arc<Self>, iface: &str, vip: Ipv6Addr) -> io::Result<()> {
        let (sock, mac) = {
            let mut links = self.links.lock().map_err(|_| poisoned())?;
            let link = self.link(&mut links, iface)?;
            (Self::open_ndp(link, iface)?, link.mac)
        };
        let mut frame = [0u8; nd::FRAME_LEN];
        let n = icmpv6::unsolicited_frame(vip, mac, &mut frame)
            .map_err(|e| io::Error::other(e.to_string()))?;
        sock.send(&frame[..n])?;
        self.nd_unsolicited.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Tells the LAN `vip` is here: a gratuitous ARP for an IPv4 address, an unsolicited
    /// Neighbor Advertisement for an IPv6 one.
    pub fn advertise(self: &Arc<Self>, iface: &str, vip: IpAddr) -> io::Result<()> {
        match vip {
            IpAddr::V4(a) => self.gratuitous_arp(iface, a),
            IpAddr::V6(a) => self.unsolicited_na(iface, a),
        }
    }

    /// Stops answering and ends the thread (within its 200 ms poll).
    pub fn shutdown(&self) {
        if let Ok(mut links) = self.links.lock() {
            for (iface, link) in links.iter_mut() {
                link.owners.clear();
                link.sync_groups(iface);
            }
        }
        if let Ok(mut u) = self.unsolicited.lock() {
            *u = Unsolicited::default();
            u.configure(0, nd::UNSOLICITED_INTERVAL);
        }
        self.stop.store(true, Ordering::SeqCst);
        let t = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = t {
            let _ = t.join();
        }
    }

    fn run(&self) {
        let mut ready = Vec::new();
        let mut buf = [0u8; 1514];
        while !self.stop.load(Ordering::Relaxed) {
            let socks: Vec<(String, Polled)> = match self.links.lock() {
                Ok(l) => l
                    .iter()
                    .flat_map(|(n, k)| {
                        let arp = (n.clone(), Polled::Arp(k.sock.clone()));
                        let ndp = k.ndp.clone().map(|s| (n.clone(), Polled::Ndp(s)));
                        std::iter::once(arp).chain(ndp)
                    })
                    .collect(),
                Err(_) => return,
            };
            let fds: Vec<RawFd> = socks
                .iter()
                .map(|(_, s)| match s {
                    Polled::Arp(s) => s.as_raw_fd(),
                    Polled::Ndp(s) => s.as_raw_fd(),
                })
                .collect();
            if let Err(e) = crate::sys::poll_any(&fds, Duration::from_millis(200), &mut ready) {
                log::error!("tunlb director: ARP/NDP responder: poll: {e}");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            for &i in &ready {
                let ok = match &socks[i] {
                    (iface, Polled::Arp(sock)) => self.drain_arp(iface, sock, &mut buf),
                    (iface, Polled::Ndp(sock)) => self.drain_ndp(iface, sock, &mut buf),
                };
                if !ok {
                    return;
                }
            }
            let Ok(links) = self.links.lock() else { return };
            let due = match self.unsolicited.lock() {
                Ok(mut u) if !u.is_empty() => u.due(Instant::now()),
                _ => Vec::new(),
            };
            self.send_unsolicited(&links, due);
        }
    }

    /// Answers what is queued on an ARP socket; false if the state is poisoned.
    fn drain_arp(&self, iface: &str, sock: &ArpSocket, buf: &mut [u8]) -> bool {
        // Drain what is queued; a burst of requests is answered in one wake-up.
        for _ in 0..256 {
            let from = match sock.recv(buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    log::warn!("tunlb director: ARP responder on {iface}: {e}");
                    break;
                }
            };
            let answer = match self.links.lock() {
                Ok(l) => l.get(iface).and_then(|link| {
                    reply_for(&buf[..from.len.min(buf.len())], &from, link.mac, |ip| {
                        link.answers(IpAddr::V4(ip))
                    })
                }),
                Err(_) => return false,
            };
            if let Some((reply, to)) = answer {
                match sock.send(&reply, to) {
                    Ok(()) => {
                        self.replies.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => log::warn!("tunlb director: ARP responder: replying on {iface}: {e}"),
                }
            }
        }
        true
    }

    /// Answers what is queued on an NDP socket; false if the state is poisoned.
    fn drain_ndp(&self, iface: &str, sock: &NdpSocket, buf: &mut [u8]) -> bool {
        let mut frame = [0u8; nd::FRAME_LEN];
        for _ in 0..256 {
            let from = match sock.recv(buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    log::warn!("tunlb director: NDP responder on {iface}: {e}");
                    break;
                }
            };
            let answer = match self.links.lock() {
                Ok(l) => l.get(iface).and_then(|link| {
                    let got = &buf[..from.len.min(buf.len())];
                    nd::answer_for(
                        got,
                        &from,
                        link.mac,
                        |ip| link.answers(IpAddr::V6(ip)),
                        &mut frame,
                    )
                }),
                Err(_) => return false,
            };
            if let Some(n) = answer {
                match sock.send(&frame[..n]) {
                    Ok(()) => {
                        self.nd_replies.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        log::warn!("tunlb director: NDP responder: answering on {iface}: {e}")
                    }
                }
            }
        }
        true
    }
}

fn poisoned() -> io::Error {
    io::Error::other("ARP/NDP responder lock poisoned")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: [u8; 6] = [2, 0, 0, 0, 0, 0x11];
    const CLIENT: [u8; 6] = [2, 0, 0, 0, 0, 0x02];
    const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 150, 100);

    fn request(target: Ipv4Addr, sender: Ipv4Addr) -> [u8; PACKET_LEN] {
        ArpRepr {
            op: ArpOp::Request,
            sender_mac: CLIENT,
            sender_ip: sender,
            target_mac: [0; 6],
            target_ip: target,
        }
        .emit()
    }

    fn from_client() -> ArpFrom {
        ArpFrom {
            len: PACKET_LEN,
            mac: CLIENT,
            outgoing: false,
        }
    }

    #[test]
    fn answers_a_request_for_an_announced_vip_with_our_mac() {
        let req = request(VIP, Ipv4Addr::new(192, 168, 150, 2));
        let (reply, to) = reply_for(&req, &from_client(), OURS, |ip| ip == VIP).unwrap();
        assert_eq!(to, CLIENT);
        let r = ArpPacket::new_checked(&reply[..]).unwrap();
        assert_eq!(r.op(), Some(ArpOp::Reply));
        assert_eq!((r.sender_ip(), r.sender_mac()), (VIP, OURS));
        assert_eq!(r.target_ip(), Ipv4Addr::new(192, 168, 150, 2));
    }

    #[test]
    fn stays_silent_for_other_addresses_our_own_packets_and_gratuitous_arps() {
        let client = Ipv4Addr::new(192, 168, 150, 2);
        let other = request(Ipv4Addr::new(192, 168, 150, 101), client);
        assert!(reply_for(&other, &from_client(), OURS, |ip| ip == VIP).is_none());
        let req = request(VIP, client);
        let outgoing = ArpFrom {
            outgoing: true,
            ..from_client()
        };
        assert!(reply_for(&req, &outgoing, OURS, |_| true).is_none());
        let garp = ArpRepr::gratuitous(VIP, CLIENT).emit();
        assert!(reply_for(&garp, &from_client(), OURS, |_| true).is_none());
        let reply = ArpRepr {
            op: ArpOp::Reply,
            ..ArpRepr::gratuitous(VIP, CLIENT)
        };
        assert!(reply_for(&reply.emit(), &from_client(), OURS, |_| true).is_none());
        assert!(reply_for(&req[..20], &from_client(), OURS, |_| true).is_none());
    }
}
