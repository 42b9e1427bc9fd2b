//! The VIPs' ARP responder: answers ARP requests for the VIPs this director currently
//! announces, on each LAN interface, with the interface's MAC, and sends gratuitous ARPs.
//!
//! What is announced where is a set per interface and per *owner*: each VRRP instance (its VIPs
//! while it is MASTER, nothing otherwise) and `--announce IFACE` (every service VIP, always).
//! An address is answered while any owner announces it there.
//!
//! Answers go out through an `AF_PACKET` socket this process holds
//! ([`ArpSocket`](crate::sys::arp::ArpSocket)), never through a kernel proxy-neighbour entry:
//! when the process dies, even by SIGKILL, the answering stops with it, and a BACKUP taking
//! over is the only host answering. One thread reads every interface's socket.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::sys::arp::{ArpFrom, ArpSocket};
use crate::wire::arp::{ArpOp, ArpPacket, ArpRepr, PACKET_LEN};

/// The owner name `--announce` uses.
pub const ANNOUNCE_OWNER: &str = "--announce";

/// The ARP responder of every interface, shared by the control plane and the VRRP driver.
pub struct Announcer {
    links: Mutex<BTreeMap<String, Link>>,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// ARP replies sent.
    pub replies: AtomicU64,
    /// Gratuitous ARPs sent.
    pub gratuitous: AtomicU64,
}

struct Link {
    sock: Arc<ArpSocket>,
    mac: [u8; 6],
    /// What each owner announces on this interface.
    owners: BTreeMap<String, BTreeSet<Ipv4Addr>>,
}

impl Link {
    fn answers(&self, ip: Ipv4Addr) -> bool {
        self.owners.values().any(|s| s.contains(&ip))
    }

    fn answered(&self) -> BTreeSet<Ipv4Addr> {
        self.owners.values().flatten().copied().collect()
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

impl Announcer {
    /// An announcer answering nothing yet; its thread starts with the first interface.
    pub fn new() -> Arc<Announcer> {
        Arc::new(Announcer {
            links: Mutex::new(BTreeMap::new()),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
            replies: AtomicU64::new(0),
            gratuitous: AtomicU64::new(0),
        })
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
                    mac,
                    owners: BTreeMap::new(),
                },
            );
            self.ensure_thread()?;
        }
        Ok(links.get_mut(iface).expect("inserted above"))
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

    /// Replaces what `owner` announces on `iface` with `vips`; returns the addresses that were
    /// not answered there before (the caller may send gratuitous ARPs for them).
    pub fn set(
        self: &Arc<Self>,
        owner: &str,
        iface: &str,
        vips: &BTreeSet<Ipv4Addr>,
    ) -> io::Result<Vec<Ipv4Addr>> {
        let mut links = self.links.lock().map_err(|_| poisoned())?;
        if vips.is_empty() && !links.contains_key(iface) {
            return Ok(Vec::new());
        }
        let link = self.link(&mut links, iface)?;
        let before = link.answered();
        if vips.is_empty() {
            link.owners.remove(owner);
        } else {
            link.owners.insert(owner.to_string(), vips.clone());
        }
        let after = link.answered();
        for gone in before.difference(&after) {
            log::info!("tunlb director: {owner}: no longer answering ARP for {gone} on {iface}");
        }
        let new: Vec<Ipv4Addr> = after.difference(&before).copied().collect();
        for vip in &new {
            log::info!("tunlb director: {owner}: answering ARP for {vip} on {iface}");
        }
        Ok(new)
    }

    /// Stops answering anything for `owner` on every interface.
    pub fn clear_owner(&self, owner: &str) {
        if let Ok(mut links) = self.links.lock() {
            for link in links.values_mut() {
                link.owners.remove(owner);
            }
        }
    }

    /// The addresses answered on `iface` now.
    pub fn answered(&self, iface: &str) -> BTreeSet<Ipv4Addr> {
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

    /// Stops answering and ends the thread (within its 200 ms poll).
    pub fn shutdown(&self) {
        if let Ok(mut links) = self.links.lock() {
            for link in links.values_mut() {
                link.owners.clear();
            }
        }
        self.stop.store(true, Ordering::SeqCst);
        let t = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = t {
            let _ = t.join();
        }
    }

    fn run(&self) {
        let mut ready = Vec::new();
        let mut buf = [0u8; 1500];
        while !self.stop.load(Ordering::Relaxed) {
            let socks: Vec<(String, Arc<ArpSocket>)> = match self.links.lock() {
                Ok(l) => l.iter().map(|(n, k)| (n.clone(), k.sock.clone())).collect(),
                Err(_) => return,
            };
            let fds: Vec<RawFd> = socks.iter().map(|(_, s)| s.as_raw_fd()).collect();
            if let Err(e) = crate::sys::poll_any(&fds, Duration::from_millis(200), &mut ready) {
                log::error!("tunlb director: ARP responder: poll: {e}");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            for &i in &ready {
                let (iface, sock) = &socks[i];
                // Drain what is queued; a burst of requests is answered in one wake-up.
                for _ in 0..256 {
                    let from = match sock.recv(&mut buf) {
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
                                link.answers(ip)
                            })
                        }),
                        Err(_) => return,
                    };
                    if let Some((reply, to)) = answer {
                        match sock.send(&reply, to) {
                            Ok(()) => {
                                self.replies.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => log::warn!(
                                "tunlb director: ARP responder: replying on {iface}: {e}"
                            ),
                        }
                    }
                }
            }
        }
    }
}

fn poisoned() -> io::Error {
    io::Error::other("ARP responder lock poisoned")
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
