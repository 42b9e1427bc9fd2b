//! A small rtnetlink client for DR mode and TUN mode's frame path: where the kernel routes a
//! real server (interface, gateway, source address), what that interface is, which Ethernet
//! address the neighbour table holds for it, and asking the kernel to resolve one. Addresses
//! are `IpAddr`: the same requests serve IPv4 (ARP) and IPv6 (Neighbor Discovery).
//!
//! - [`Netlink`]: request / answer on a `NETLINK_ROUTE` socket: [`Netlink::route_get`]
//!   (`ip route get`), [`Netlink::neighbours`] (`ip neigh show`), [`Netlink::link`] and
//!   [`Netlink::resolve`] (`ip neigh replace ADDR dev DEV use`: the kernel treats the entry as
//!   used, so it sends ARP requests (IPv6: Neighbor Solicitations) for an unknown or failed
//!   address and re-confirms a stale one, exactly as if it had a packet to send there; no
//!   packet is sent to the real server).
//! - [`NeighEvents`]: a socket subscribed to the neighbour table's change notifications
//!   (`ip monitor neigh`), so a resolution is noticed within milliseconds.
//!
//! Messages are parsed from byte slices with length checks ([`messages`], [`attributes`]); the
//! only `unsafe` is the `bind` of the notification socket.

use std::io::{self, Read, Write};
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Size of the receive buffer: more than one dump message the kernel ever builds.
const RECV_BUFFER: usize = 64 << 10;
/// How long a request waits for the kernel's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Length of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;
/// Length of `struct rtmsg`.
const RTMSG_LEN: usize = 12;
/// Length of `struct ndmsg`.
const NDMSG_LEN: usize = 12;
/// Length of `struct ifinfomsg`.
const IFINFOMSG_LEN: usize = 16;

const NLM_F_REQUEST: u16 = libc::NLM_F_REQUEST as u16;
const NLM_F_MULTI: u16 = libc::NLM_F_MULTI as u16;
const NLM_F_ACK: u16 = libc::NLM_F_ACK as u16;
const NLM_F_DUMP: u16 = libc::NLM_F_DUMP as u16;
const NLM_F_CREATE: u16 = libc::NLM_F_CREATE as u16;
const NLM_F_REPLACE: u16 = libc::NLM_F_REPLACE as u16;
const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;
const NLMSG_DONE: u16 = libc::NLMSG_DONE as u16;

/// Neighbour states whose link-layer address can be used (the kernel's `NUD_VALID`).
const NUD_VALID: u16 = libc::NUD_PERMANENT
    | libc::NUD_NOARP
    | libc::NUD_REACHABLE
    | libc::NUD_PROBE
    | libc::NUD_STALE
    | libc::NUD_DELAY;

/// The kernel's answer to `ip route get ADDR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// `rtm_type`: `RTN_UNICAST` (1), `RTN_LOCAL` (2), ...
    pub kind: u8,
    /// The output interface.
    pub ifindex: u32,
    /// The next hop, if the destination is not on a directly connected network (of the
    /// route's family: an IPv6 route's gateway is IPv6, usually link-local).
    pub gateway: Option<IpAddr>,
    /// The source address the kernel would give a packet on this route (`RTA_PREFSRC`).
    pub prefsrc: Option<IpAddr>,
}

impl Route {
    /// A unicast route (`RTN_UNICAST`).
    pub fn is_unicast(&self) -> bool {
        self.kind == libc::RTN_UNICAST
    }

    /// The destination is an address of this host (`RTN_LOCAL`).
    pub fn is_local(&self) -> bool {
        self.kind == libc::RTN_LOCAL
    }
}

/// What the kernel says about one interface (`RTM_NEWLINK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// `ifi_type`: `ARPHRD_ETHER` (1) for Ethernet and veth, `ARPHRD_LOOPBACK`,
    /// `ARPHRD_NONE` for a TUN, ...
    pub kind: u16,
    /// `IFLA_MTU`.
    pub mtu: Option<u32>,
    /// `IFLA_ADDRESS`, when it is a 6-byte (Ethernet) address.
    pub mac: Option<[u8; 6]>,
}

impl Link {
    /// An Ethernet interface with an Ethernet address: frames can be built for it.
    pub fn is_ethernet(&self) -> bool {
        self.kind == libc::ARPHRD_ETHER && self.mac.is_some()
    }
}

/// One IPv4 (ARP) or IPv6 (Neighbor Discovery) entry of the neighbour table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    /// The interface it belongs to.
    pub ifindex: u32,
    /// The neighbour's address.
    pub addr: IpAddr,
    /// `NUD_*` state bits.
    pub state: u16,
    /// Its Ethernet address, if the entry carries one.
    pub lladdr: Option<[u8; 6]>,
}

impl Neighbour {
    /// The Ethernet address, if the entry is in a state where it may be used (reachable, stale,
    /// delay, probe, permanent, noarp) and the address is a real one (not all zeros).
    pub fn mac(&self) -> Option<[u8; 6]> {
        if self.state & NUD_VALID == 0 {
            return None;
        }
        self.lladdr.filter(|m| m.iter().any(|&b| b != 0))
    }

    /// Whether the kernel should be asked to (re)resolve it: it has no usable address, or it
    /// is stale (nothing confirmed it lately; asking makes the kernel re-probe it).
    pub fn wants_resolution(&self) -> bool {
        self.mac().is_none() || self.state & libc::NUD_STALE != 0
    }
}

/// An rtnetlink socket for requests; one request at a time.
#[derive(Debug)]
pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens a `NETLINK_ROUTE` socket whose answers time out after two seconds.
    pub fn open() -> io::Result<Netlink> {
        let sock = route_socket()?;
        sock.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        Ok(Netlink {
            sock,
            seq: 0,
            buf: vec![0; RECV_BUFFER],
        })
    }

    /// The route the kernel would use to send to `dst` (`ip route get DST`, `ip -6 route get
    /// DST`). Fails with the kernel's error, e.g. `ENETUNREACH` when there is no route.
    pub fn route_get(&mut self, dst: impl Into<IpAddr>) -> io::Result<Route> {
        let dst = Family::of(dst.into());
        let mut body = [0u8; RTMSG_LEN + 20];
        body[0] = dst.af;
        body[1] = dst.bits; // rtm_dst_len
        let len = RTMSG_LEN + put_attr(&mut body[RTMSG_LEN..], libc::RTA_DST, dst.octets());
        let mut route = None;
        self.transact(libc::RTM_GETROUTE, 0, &body[..len], |kind, payload| {
            if kind == libc::RTM_NEWROUTE && route.is_none() {
                route = parse_route(payload);
            }
        })?;
        route.ok_or_else(|| bad_answer("no route in the answer to RTM_GETROUTE"))
    }

    /// Every IPv4 and IPv6 entry of the neighbour table (`ip neigh show`).
    pub fn neighbours(&mut self) -> io::Result<Vec<Neighbour>> {
        let mut body = [0u8; NDMSG_LEN];
        body[0] = libc::AF_UNSPEC as u8;
        let mut out = Vec::new();
        self.transact(libc::RTM_GETNEIGH, NLM_F_DUMP, &body, |kind, payload| {
            if kind == libc::RTM_NEWNEIGH {
                out.extend(parse_neigh(payload));
            }
        })?;
        Ok(out)
    }

    /// The MTU of interface `ifindex`.
    pub fn link_mtu(&mut self, ifindex: u32) -> io::Result<u32> {
        self.link(ifindex)?
            .mtu
            .ok_or_else(|| bad_answer("no MTU in the answer to RTM_GETLINK"))
    }

    /// Type, MTU and hardware address of interface `ifindex` (`ip link show dev DEV`).
    pub fn link(&mut self, ifindex: u32) -> io::Result<Link> {
        let mut body = [0u8; IFINFOMSG_LEN];
        body[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        let mut link = None;
        self.transact(libc::RTM_GETLINK, 0, &body, |kind, payload| {
            if kind == libc::RTM_NEWLINK && link.is_none() {
                link = parse_link(payload);
            }
        })?;
        link.ok_or_else(|| bad_answer("no link in the answer to RTM_GETLINK"))
    }

    /// Asks the kernel to resolve `addr` on `ifindex` as if it had a packet for it
    /// (`ip neigh replace ADDR dev DEV use`): an unknown or failed entry starts ARP (IPv6:
    /// Neighbor Solicitations), a stale one is re-confirmed; a reachable one is left alone.
    /// Returns once the kernel accepted the request, not when the address is known (watch
    /// [`NeighEvents`] for that).
    pub fn resolve(&mut self, ifindex: u32, addr: impl Into<IpAddr>) -> io::Result<()> {
        let addr = Family::of(addr.into());
        let mut body = [0u8; NDMSG_LEN + 20];
        body[0] = addr.af;
        body[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        body[10] = libc::NTF_USE; // ndm_flags; ndm_state NUD_NONE is ignored with NTF_USE
        let len = NDMSG_LEN + put_attr(&mut body[NDMSG_LEN..], libc::NDA_DST, addr.octets());
        self.transact(
            libc::RTM_NEWNEIGH,
            NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK,
            &body[..len],
            |_, _| {},
        )
    }

    /// Sends one request and hands every answer message (type, payload after the netlink
    /// header) to `each`, until the answer is complete: `NLMSG_DONE` for a dump, the
    /// acknowledgement when one was asked for, else the first message.
    fn transact(
        &mut self,
        kind: u16,
        flags: u16,
        body: &[u8],
        mut each: impl FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut req = Vec::with_capacity(NLMSG_HDRLEN + body.len());
        req.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        req.extend_from_slice(&kind.to_ne_bytes());
        req.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        req.extend_from_slice(&seq.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        req.extend_from_slice(body);
        (&self.sock).write_all(&req)?;
        loop {
            let n = read_datagram(&self.sock, &mut self.buf)?;
            for (hdr, payload) in messages(&self.buf[..n]) {
                if hdr.seq != seq {
                    continue; // an answer to an earlier request that timed out
                }
                match hdr.kind {
                    NLMSG_ERROR => {
                        let errno = payload
                            .get(..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .ok_or_else(|| bad_answer("truncated NLMSG_ERROR"))?;
                        return match errno {
                            0 => Ok(()),
                            e => Err(io::Error::from_raw_os_error(-e)),
                        };
                    }
                    NLMSG_DONE => return Ok(()),
                    _ => {
                        each(hdr.kind, payload);
                        let more =
                            flags & (NLM_F_DUMP | NLM_F_ACK) != 0 || hdr.flags & NLM_F_MULTI != 0;
                        if !more {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

/// Notifications of neighbour-table changes (the `RTMGRP_NEIGH` group).
#[derive(Debug)]
pub struct NeighEvents {
    sock: Socket,
    buf: Vec<u8>,
}

impl NeighEvents {
    /// Opens a non-blocking socket subscribed to neighbour notifications.
    pub fn open() -> io::Result<NeighEvents> {
        let sock = route_socket()?;
        // SAFETY: an all-zero sockaddr_nl is valid (family set below, pid 0 = let the kernel
        // choose).
        let mut addr: libc::sockaddr_nl = unsafe { mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = libc::RTMGRP_NEIGH as u32;
        // SAFETY: `addr` is a valid sockaddr_nl that outlives the call, and the length passed
        // is its size.
        let rc = unsafe {
            libc::bind(
                sock.as_raw_fd(),
                std::ptr::addr_of!(addr).cast(),
                mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        sock.set_nonblocking(true)?;
        Ok(NeighEvents {
            sock,
            buf: vec![0; RECV_BUFFER],
        })
    }

    /// Reads every pending notification and hands each neighbour it names (added, changed or
    /// deleted) to `each`. Returns false when the kernel dropped notifications because they
    /// were not read fast enough (`ENOBUFS`): the caller should then re-read the whole table.
    pub fn drain(&mut self, mut each: impl FnMut(&Neighbour)) -> io::Result<bool> {
        loop {
            let n = match read_datagram(&self.sock, &mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(false),
                Err(e) => return Err(e),
            };
            for (hdr, payload) in messages(&self.buf[..n]) {
                if hdr.kind == libc::RTM_NEWNEIGH || hdr.kind == libc::RTM_DELNEIGH {
                    if let Some(neigh) = parse_neigh(payload) {
                        each(&neigh);
                    }
                }
            }
        }
    }
}

impl AsRawFd for NeighEvents {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

fn route_socket() -> io::Result<Socket> {
    Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::RAW,
        Some(Protocol::from(libc::NETLINK_ROUTE)),
    )
    .map_err(|e| io::Error::new(e.kind(), format!("open rtnetlink socket: {e}")))
}

/// Reads one datagram into `buf`, retrying on EINTR; a datagram larger than `buf` is an error.
fn read_datagram(sock: &Socket, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match (&*sock).read(buf) {
            Ok(n) if n >= buf.len() => return Err(bad_answer("netlink message too large")),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn bad_answer(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Writes one route attribute (`rtattr` header, then `data`) at the start of `out`, which must
/// have room for it (4 + data, rounded up to 4); returns that room.
fn put_attr(out: &mut [u8], kind: u16, data: &[u8]) -> usize {
    let len = 4 + data.len();
    out[..2].copy_from_slice(&(len as u16).to_ne_bytes());
    out[2..4].copy_from_slice(&kind.to_ne_bytes());
    out[4..len].copy_from_slice(data);
    align4(len)
}

/// An address as a request carries it: its `AF_*` family, prefix length of a host, and bytes.
struct Family {
    af: u8,
    bits: u8,
    octets: [u8; 16],
}

impl Family {
    fn of(addr: IpAddr) -> Family {
        let mut octets = [0u8; 16];
        match addr {
            IpAddr::V4(a) => {
                octets[..4].copy_from_slice(&a.octets());
                Family {
                    af: libc::AF_INET as u8,
                    bits: 32,
                    octets,
                }
            }
            IpAddr::V6(a) => Family {
                af: libc::AF_INET6 as u8,
                bits: 128,
                octets: a.octets(),
            },
        }
    }

    /// The address bytes (4 or 16).
    fn octets(&self) -> &[u8] {
        &self.octets[..usize::from(self.bits / 8)]
    }
}

/// The parts of a netlink header the parser looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsgHeader {
    /// `nlmsg_type`.
    pub kind: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
}

/// The netlink messages in one datagram: each header and its payload. Stops at the first
/// message whose length does not fit.
pub fn messages(mut buf: &[u8]) -> impl Iterator<Item = (MsgHeader, &[u8])> {
    std::iter::from_fn(move || {
        let hdr = buf.get(..NLMSG_HDRLEN)?;
        let len = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            buf = &[];
            return None;
        }
        let header = MsgHeader {
            kind: u16::from_ne_bytes([hdr[4], hdr[5]]),
            flags: u16::from_ne_bytes([hdr[6], hdr[7]]),
            seq: u32::from_ne_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]),
        };
        let payload = &buf[NLMSG_HDRLEN..len];
        buf = buf.get(align4(len)..).unwrap_or(&[]);
        Some((header, payload))
    })
}

/// The attributes (type without the nested/byte-order flags, data) in `buf`. Stops at the first
/// attribute whose length does not fit.
pub fn attributes(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let hdr = buf.get(..4)?;
        let len = u16::from_ne_bytes([hdr[0], hdr[1]]) as usize;
        if len < 4 || len > buf.len() {
            buf = &[];
            return None;
        }
        let kind = u16::from_ne_bytes([hdr[2], hdr[3]]) & 0x3fff;
        let data = &buf[4..len];
        buf = buf.get(align4(len)..).unwrap_or(&[]);
        Some((kind, data))
    })
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// An address attribute of a message of family `af` (`AF_INET`: 4 bytes, `AF_INET6`: 16).
fn ip_of(af: u8, data: &[u8]) -> Option<IpAddr> {
    if af == libc::AF_INET as u8 {
        let b: [u8; 4] = data.try_into().ok()?;
        Some(IpAddr::V4(Ipv4Addr::from(b)))
    } else {
        let b: [u8; 16] = data.try_into().ok()?;
        Some(IpAddr::V6(Ipv6Addr::from(b)))
    }
}

/// Whether `af` is `AF_INET` or `AF_INET6`.
fn is_ip_family(af: u8) -> bool {
    af == libc::AF_INET as u8 || af == libc::AF_INET6 as u8
}

fn u32_of(data: &[u8]) -> Option<u32> {
    let b: [u8; 4] = data.try_into().ok()?;
    Some(u32::from_ne_bytes(b))
}

/// An `RTM_NEWROUTE` payload (IPv4 or IPv6): `rtmsg` then attributes.
pub fn parse_route(payload: &[u8]) -> Option<Route> {
    let rtm = payload.get(..RTMSG_LEN)?;
    let af = rtm[0];
    if !is_ip_family(af) {
        return None;
    }
    let mut route = Route {
        kind: rtm[7],
        ifindex: 0,
        gateway: None,
        prefsrc: None,
    };
    for (kind, data) in attributes(&payload[RTMSG_LEN..]) {
        match kind {
            libc::RTA_OIF => route.ifindex = u32_of(data)?,
            libc::RTA_GATEWAY => route.gateway = Some(ip_of(af, data)?),
            libc::RTA_PREFSRC => route.prefsrc = Some(ip_of(af, data)?),
            _ => {}
        }
    }
    Some(route)
}

/// An `RTM_NEWNEIGH` / `RTM_DELNEIGH` payload: `ndmsg` then attributes. `None` for families
/// other than IPv4 and IPv6 (the bridge's forwarding database) and entries without a
/// destination address of their family.
pub fn parse_neigh(payload: &[u8]) -> Option<Neighbour> {
    let ndm = payload.get(..NDMSG_LEN)?;
    let af = ndm[0];
    if !is_ip_family(af) {
        return None;
    }
    let mut addr = None;
    let mut lladdr = None;
    for (kind, data) in attributes(&payload[NDMSG_LEN..]) {
        match kind {
            libc::NDA_DST => addr = ip_of(af, data),
            libc::NDA_LLADDR => lladdr = <[u8; 6]>::try_from(data).ok(),
            _ => {}
        }
    }
    Some(Neighbour {
        ifindex: u32::from_ne_bytes([ndm[4], ndm[5], ndm[6], ndm[7]]),
        addr: addr?,
        state: u16::from_ne_bytes([ndm[8], ndm[9]]),
        lladdr,
    })
}

/// An `RTM_NEWLINK` payload: `ifinfomsg` (its `ifi_type`) then attributes.
pub fn parse_link(payload: &[u8]) -> Option<Link> {
    let ifi = payload.get(..IFINFOMSG_LEN)?;
    let mut link = Link {
        kind: u16::from_ne_bytes([ifi[2], ifi[3]]),
        mtu: None,
        mac: None,
    };
    for (kind, data) in attributes(&payload[IFINFOMSG_LEN..]) {
        match kind {
            libc::IFLA_MTU => link.mtu = u32_of(data),
            libc::IFLA_ADDRESS => link.mac = <[u8; 6]>::try_from(data).ok(),
            _ => {}
        }
    }
    Some(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a netlink message: header, fixed part, attributes.
    fn message(kind: u16, flags: u16, seq: u32, fixed: &[u8], attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = fixed.to_vec();
        for (k, data) in attrs {
            body.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
            body.extend_from_slice(&k.to_ne_bytes());
            body.extend_from_slice(data);
            body.resize(align4(body.len()), 0);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn ndmsg(ifindex: u32, state: u16) -> Vec<u8> {
        let mut m = vec![0u8; NDMSG_LEN];
        m[0] = libc::AF_INET as u8;
        m[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        m[8..10].copy_from_slice(&state.to_ne_bytes());
        m
    }

    #[test]
    fn a_neighbour_dump_parses_entry_by_entry() {
        let mac = [0x02, 0, 0, 0, 0, 0x12];
        let mut dump = message(
            libc::RTM_NEWNEIGH,
            NLM_F_MULTI,
            7,
            &ndmsg(3, libc::NUD_REACHABLE),
            &[
                (libc::NDA_DST, &[192, 168, 150, 12]),
                (libc::NDA_LLADDR, &mac),
            ],
        );
        dump.extend(message(
            libc::RTM_NEWNEIGH,
            NLM_F_MULTI,
            7,
            &ndmsg(3, libc::NUD_FAILED),
            &[(libc::NDA_DST, &[192, 168, 150, 13])],
        ));
        dump.extend(message(NLMSG_DONE, NLM_F_MULTI, 7, &[0; 4], &[]));
        let msgs: Vec<_> = messages(&dump).collect();
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[2].0.kind, NLMSG_DONE);
        let a = parse_neigh(msgs[0].1).unwrap();
        assert_eq!(
            a,
            Neighbour {
                ifindex: 3,
                addr: Ipv4Addr::new(192, 168, 150, 12).into(),
                state: libc::NUD_REACHABLE,
                lladdr: Some(mac),
            }
        );
        assert_eq!(a.mac(), Some(mac));
        assert!(!a.wants_resolution());
        let b = parse_neigh(msgs[1].1).unwrap();
        assert_eq!((b.lladdr, b.mac()), (None, None));
        assert!(b.wants_resolution());
    }

    #[test]
    fn neighbour_states_decide_whether_the_address_is_usable() {
        let n = |state| Neighbour {
            ifindex: 1,
            addr: Ipv4Addr::new(10, 0, 0, 1).into(),
            state,
            lladdr: Some([2, 0, 0, 0, 0, 1]),
        };
        assert!(n(libc::NUD_STALE).mac().is_some());
        assert!(n(libc::NUD_STALE).wants_resolution());
        assert!(n(libc::NUD_DELAY).mac().is_some());
        assert!(!n(libc::NUD_PERMANENT).wants_resolution());
        assert!(n(libc::NUD_INCOMPLETE).mac().is_none());
        assert!(n(libc::NUD_FAILED).mac().is_none());
        let zero = Neighbour {
            lladdr: Some([0; 6]),
            ..n(libc::NUD_NOARP)
        };
        assert!(zero.mac().is_none());
    }

    #[test]
    fn a_route_answer_gives_type_interface_and_gateway() {
        let mut rtm = [0u8; RTMSG_LEN];
        rtm[0] = libc::AF_INET as u8;
        rtm[1] = 32;
        rtm[7] = libc::RTN_UNICAST;
        let msg = message(
            libc::RTM_NEWROUTE,
            0,
            1,
            &rtm,
            &[
                (libc::RTA_DST, &[10, 3, 0, 12]),
                (libc::RTA_OIF, &5u32.to_ne_bytes()),
                (libc::RTA_GATEWAY, &[192, 168, 150, 1]),
                (libc::RTA_PREFSRC, &[192, 168, 150, 7]),
            ],
        );
        let (hdr, payload) = messages(&msg).next().unwrap();
        assert_eq!(hdr.kind, libc::RTM_NEWROUTE);
        let r = parse_route(payload).unwrap();
        assert!(r.is_unicast() && !r.is_local());
        assert_eq!(r.ifindex, 5);
        assert_eq!(r.gateway, Some(Ipv4Addr::new(192, 168, 150, 1).into()));
        assert_eq!(r.prefsrc, Some(Ipv4Addr::new(192, 168, 150, 7).into()));
    }

    #[test]
    fn ipv6_answers_parse_with_16_byte_addresses() {
        let rip: Ipv6Addr = "2001:db8:3::12".parse().unwrap();
        let mac = [0x02, 0, 0, 0, 0, 0x12];
        let mut ndm = ndmsg(3, libc::NUD_REACHABLE);
        ndm[0] = libc::AF_INET6 as u8;
        let msg = message(
            libc::RTM_NEWNEIGH,
            0,
            1,
            &ndm,
            &[(libc::NDA_DST, &rip.octets()), (libc::NDA_LLADDR, &mac)],
        );
        let (_, payload) = messages(&msg).next().unwrap();
        let n = parse_neigh(payload).unwrap();
        assert_eq!(
            (n.addr, n.ifindex, n.mac()),
            (IpAddr::V6(rip), 3, Some(mac))
        );
        // A 4-byte address in an IPv6 entry is malformed: no destination, no entry.
        let msg = message(
            libc::RTM_NEWNEIGH,
            0,
            1,
            &ndm,
            &[(libc::NDA_DST, &[10, 0, 0, 1])],
        );
        let (_, payload) = messages(&msg).next().unwrap();
        assert_eq!(parse_neigh(payload), None);
        // The bridge's forwarding database (AF_BRIDGE) is not a neighbour of ours.
        ndm[0] = libc::AF_BRIDGE as u8;
        let msg = message(libc::RTM_NEWNEIGH, 0, 1, &ndm, &[(libc::NDA_LLADDR, &mac)]);
        let (_, payload) = messages(&msg).next().unwrap();
        assert_eq!(parse_neigh(payload), None);

        let mut rtm = [0u8; RTMSG_LEN];
        rtm[0] = libc::AF_INET6 as u8;
        rtm[1] = 128;
        rtm[7] = libc::RTN_UNICAST;
        let gw: Ipv6Addr = "fe80::1".parse().unwrap();
        let msg = message(
            libc::RTM_NEWROUTE,
            0,
            1,
            &rtm,
            &[
                (libc::RTA_DST, &rip.octets()),
                (libc::RTA_OIF, &5u32.to_ne_bytes()),
                (libc::RTA_GATEWAY, &gw.octets()),
            ],
        );
        let (_, payload) = messages(&msg).next().unwrap();
        let r = parse_route(payload).unwrap();
        assert_eq!((r.ifindex, r.gateway), (5, Some(IpAddr::V6(gw))));
    }

    #[test]
    fn requests_carry_the_family_and_length_of_their_address() {
        let v4 = Family::of(Ipv4Addr::new(10, 0, 0, 1).into());
        assert_eq!(
            (v4.af, v4.bits, v4.octets()),
            (libc::AF_INET as u8, 32, &[10, 0, 0, 1][..])
        );
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let v6 = Family::of(a.into());
        assert_eq!(
            (v6.af, v6.bits, v6.octets()),
            (libc::AF_INET6 as u8, 128, &a.octets()[..])
        );
        let mut out = [0u8; 20];
        assert_eq!(put_attr(&mut out, libc::RTA_DST, v6.octets()), 20);
        assert_eq!(
            &out[..4],
            &[20u16.to_ne_bytes(), libc::RTA_DST.to_ne_bytes()].concat()[..]
        );
        assert_eq!(put_attr(&mut out, libc::RTA_DST, v4.octets()), 8);
    }

    #[test]
    fn a_link_answer_gives_type_mtu_and_address() {
        let mut ifi = [0u8; IFINFOMSG_LEN];
        ifi[2..4].copy_from_slice(&libc::ARPHRD_ETHER.to_ne_bytes());
        ifi[4..8].copy_from_slice(&3u32.to_ne_bytes());
        let msg = message(
            libc::RTM_NEWLINK,
            0,
            1,
            &ifi,
            &[
                (libc::IFLA_MTU, &1500u32.to_ne_bytes()),
                (libc::IFLA_ADDRESS, &[2, 0, 0, 0, 0, 0x11]),
            ],
        );
        let (_, payload) = messages(&msg).next().unwrap();
        let link = parse_link(payload).unwrap();
        assert_eq!(
            link,
            Link {
                kind: libc::ARPHRD_ETHER,
                mtu: Some(1500),
                mac: Some([2, 0, 0, 0, 0, 0x11]),
            }
        );
        assert!(link.is_ethernet());
        // A TUN: no Ethernet type, no address.
        ifi[2..4].copy_from_slice(&libc::ARPHRD_NONE.to_ne_bytes());
        let msg = message(libc::RTM_NEWLINK, 0, 1, &ifi, &[]);
        let (_, payload) = messages(&msg).next().unwrap();
        assert!(!parse_link(payload).unwrap().is_ethernet());
    }

    #[test]
    fn truncated_input_ends_the_iterators_without_panicking() {
        let msg = message(
            libc::RTM_NEWNEIGH,
            0,
            1,
            &ndmsg(1, 2),
            &[(1, &[1, 2, 3, 4])],
        );
        for cut in 0..msg.len() {
            for (_, payload) in messages(&msg[..cut]) {
                let _ = parse_neigh(payload);
                let _ = parse_route(payload);
                let _ = parse_link(payload);
            }
        }
        // An attribute claiming more bytes than there are.
        assert_eq!(attributes(&[200, 0, 1, 0, 9, 9]).count(), 0);
        assert_eq!(attributes(&[2, 0, 1, 0]).count(), 0);
    }

    #[test]
    fn the_loopback_route_and_mtu_come_from_the_kernel() {
        let mut nl = Netlink::open().unwrap();
        let r = nl.route_get(Ipv4Addr::LOCALHOST).unwrap();
        assert!(r.is_local(), "{r:?}");
        assert!(r.ifindex > 0);
        assert!(nl.link_mtu(r.ifindex).unwrap() >= 1280);
        let lo = nl.link(r.ifindex).unwrap();
        assert_eq!(lo.kind, libc::ARPHRD_LOOPBACK);
        assert!(!lo.is_ethernet());
        // The dump works (its content depends on the host).
        nl.neighbours().unwrap();
    }
}
