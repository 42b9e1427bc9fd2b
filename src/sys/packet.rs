//! Sending IP packets in Ethernet frames to a chosen MAC address (DR mode), in batches.
//!
//! [`FrameSender`] is a `socket(AF_PACKET, SOCK_DGRAM, 0)`: for each packet the caller names
//! the interface and the destination MAC, and the kernel builds the Ethernet header (source MAC
//! of the interface, EtherType IPv4 or IPv6 after the packet's version nibble) in front of the
//! bytes given. The IP packet itself goes out
//! exactly as given: no TTL change, no checksum change, no routing. Protocol 0 at creation
//! means the socket receives nothing. Each packet is two iovecs (a header, e.g. a fragment's
//! IPv4 header, and a slice of the packet), so nothing is copied; a batch is one `sendmmsg`.
//! The `mmsghdr` / `iovec` / `sockaddr_ll` arrays are allocated once.
//!
//! [`FrameSender::with_vnet_hdr`] opens a `SOCK_RAW` packet socket with `PACKET_VNET_HDR` (the
//! kernel allows the option on raw packet sockets only): every frame then starts with a
//! `virtio_net_hdr` and the caller's Ethernet header, so one send can carry a whole TCP GSO
//! super-packet that the kernel keeps whole as far as the devices allow (a veth passes it on).

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Socket, Type};

use super::mmsg::{empty_iovec, send_gather, SendBatch};
use super::raw::MsgError;
use super::SendReport;
use crate::wire::gso::VNET_HDR_LEN;

/// Socket buffer size asked for (the kernel caps it at `wmem_max`).
const SOCKET_BUFFER: usize = 4 << 20;

/// The most buffers one [`FrameSender::send_parts`] gathers: the headers, then a GUE train's
/// records as [`udp_gso::MAX_PARTS`](super::udp_gso::MAX_PARTS) buffers.
pub const MAX_FRAME_PARTS: usize = 1 + super::udp_gso::MAX_PARTS;

/// Where a frame goes: the interface and the next hop's Ethernet address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinkDst {
    /// Interface index.
    pub ifindex: u32,
    /// Destination MAC.
    pub mac: [u8; 6],
}

/// Sends IP packets as Ethernet frames to given MAC addresses, in batches.
///
/// One sender per worker thread: the internal arrays make `send_batch` take `&mut self`.
pub struct FrameSender {
    sock: Socket,
    batch: SendBatch<libc::sockaddr_ll>,
    /// `PACKET_VNET_HDR`: the caller writes the virtio and Ethernet headers.
    vnet: bool,
}

impl std::fmt::Debug for FrameSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameSender")
            .field("fd", &self.sock.as_raw_fd())
            .field("max_batch", &self.batch.max_batch())
            .finish()
    }
}

impl FrameSender {
    /// Opens the packet socket (needs `CAP_NET_RAW`); each `sendmmsg` carries up to
    /// `max_batch` frames (at least 1; larger batches are split).
    pub fn new(max_batch: usize) -> io::Result<FrameSender> {
        let sock = Socket::new(Domain::PACKET, Type::DGRAM, None)
            .map_err(|e| io::Error::new(e.kind(), format!("open AF_PACKET socket: {e}")))?;
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
        let blank = sockaddr_ll(
            LinkDst {
                ifindex: 0,
                mac: [0; 6],
            },
            libc::ETH_P_IP as u16,
        );
        Ok(FrameSender {
            sock,
            batch: SendBatch::new(max_batch, blank),
            vnet: false,
        })
    }

    /// A `SOCK_RAW` packet socket with `PACKET_VNET_HDR` set: the `header` of every frame sent
    /// is a `virtio_net_hdr` ([`crate::wire::gso::VnetHdr`]) followed by the Ethernet header
    /// (destination, source, EtherType), and `rest` the whole IP packet.
    pub fn with_vnet_hdr(max_batch: usize) -> io::Result<FrameSender> {
        let sock = Socket::new(Domain::PACKET, Type::RAW, None)
            .map_err(|e| io::Error::new(e.kind(), format!("open AF_PACKET socket: {e}")))?;
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
        let blank = sockaddr_ll(
            LinkDst {
                ifindex: 0,
                mac: [0; 6],
            },
            libc::ETH_P_IP as u16,
        );
        let s = FrameSender {
            sock,
            batch: SendBatch::new(max_batch, blank),
            vnet: true,
        };
        super::set_int_option(
            s.sock.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_VNET_HDR,
            1,
        )
        .map_err(|e| io::Error::new(e.kind(), format!("set PACKET_VNET_HDR: {e}")))?;
        Ok(s)
    }

    /// Sends every `(destination, header, rest)`: the IP packet on the wire is `header`
    /// followed by `rest` (either may be empty), in an Ethernet frame to the destination.
    ///
    /// Never fails as a whole: frames the kernel refuses (`EMSGSIZE` beyond the interface MTU,
    /// `ENXIO` for an interface that is gone, `ENOBUFS`, ...) are counted in the report and
    /// listed, with their position, in [`failures`](FrameSender::failures) until the next call.
    pub fn send_batch<'a, I>(&mut self, items: I) -> SendReport
    where
        I: IntoIterator<Item = (LinkDst, &'a [u8], &'a [u8])>,
    {
        let fd = self.sock.as_raw_fd();
        let vnet = self.vnet;
        let items = items.into_iter().map(|(dst, header, rest)| {
            let first = if header.is_empty() { rest } else { header };
            (sockaddr_ll(dst, ethertype(vnet, first)), header, rest)
        });
        self.batch.send(fd, items)
    }

    /// Sends one frame, the concatenation of `parts` (at most [`MAX_FRAME_PARTS`]; on the
    /// `PACKET_VNET_HDR` socket the first starts with the virtio and Ethernet headers), to
    /// `dst` with one `sendmsg`. Returns the bytes sent; `EMSGSIZE` if `parts` are too many.
    pub fn send_parts(&self, dst: LinkDst, parts: &[&[u8]]) -> io::Result<usize> {
        let mut iovs = [empty_iovec(); MAX_FRAME_PARTS];
        let first = parts.iter().copied().find(|p| !p.is_empty()).unwrap_or(&[]);
        let addr = sockaddr_ll(dst, ethertype(self.vnet, first));
        send_gather(self.sock.as_raw_fd(), addr, parts, &mut iovs)
    }

    /// The frames the last [`send_batch`](FrameSender::send_batch) could not send.
    pub fn failures(&self) -> &[MsgError] {
        self.batch.failures()
    }

    /// The Ethernet address of interface `ifindex` (`SIOCGIFNAME`, then `SIOCGIFHWADDR`), for
    /// the source of frames built by the caller.
    pub fn interface_mac(&self, ifindex: u32) -> io::Result<[u8; 6]> {
        let fd = self.sock.as_raw_fd();
        // SAFETY: all-zero is a valid ifreq.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        req.ifr_ifru.ifru_ifindex = ifindex as libc::c_int;
        // SAFETY: `req` is a live ifreq the kernel fills with the name of `ifindex`.
        if unsafe { libc::ioctl(fd, libc::SIOCGIFNAME, &mut req) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `req` now names the interface; the kernel fills its hardware address.
        if unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: SIOCGIFHWADDR filled the `ifru_hwaddr` member of the union.
        let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
        let mut mac = [0u8; 6];
        for (m, d) in mac.iter_mut().zip(data.iter()) {
            *m = *d as u8;
        }
        Ok(mac)
    }
}

impl AsRawFd for FrameSender {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// The EtherType of a frame that starts with `first`: on the `SOCK_DGRAM` socket the IP packet
/// (version 6: IPv6, else IPv4), on the `PACKET_VNET_HDR` socket the virtio header and the
/// caller's Ethernet header, whose EtherType it is.
fn ethertype(vnet: bool, first: &[u8]) -> u16 {
    if vnet {
        let at = VNET_HDR_LEN + 12;
        return match first.get(at..at + 2) {
            Some(t) => u16::from_be_bytes([t[0], t[1]]),
            None => libc::ETH_P_IP as u16,
        };
    }
    match first.first() {
        Some(b) if b >> 4 == 6 => libc::ETH_P_IPV6 as u16,
        _ => libc::ETH_P_IP as u16,
    }
}

/// The link-layer address of one frame: interface, EtherType, destination MAC.
fn sockaddr_ll(dst: LinkDst, ethertype: u16) -> libc::sockaddr_ll {
    let mut addr = [0u8; 8];
    addr[..6].copy_from_slice(&dst.mac);
    libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as libc::c_ushort,
        sll_protocol: ethertype.to_be(),
        sll_ifindex: dst.ifindex as libc::c_int,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_address_names_interface_ethertype_and_mac() {
        let a = sockaddr_ll(
            LinkDst {
                ifindex: 7,
                mac: [2, 0, 0, 0, 0, 0x12],
            },
            libc::ETH_P_IP as u16,
        );
        assert_eq!(a.sll_family, libc::AF_PACKET as u16);
        assert_eq!(a.sll_protocol.to_ne_bytes(), [0x08, 0x00]);
        assert_eq!(a.sll_ifindex, 7);
        assert_eq!(a.sll_halen, 6);
        assert_eq!(a.sll_addr, [2, 0, 0, 0, 0, 0x12, 0, 0]);
    }

    #[test]
    fn the_ethertype_follows_the_packet() {
        // A whole packet or a fragment's header on the plain socket: its version nibble.
        assert_eq!(ethertype(false, &[0x45, 0, 0, 20]), 0x0800);
        assert_eq!(ethertype(false, &[0x60, 0, 0, 0]), 0x86dd);
        // The PACKET_VNET_HDR socket: the caller's Ethernet header after the virtio header.
        let mut head = [0u8; VNET_HDR_LEN + 14];
        head[VNET_HDR_LEN + 12..].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(ethertype(true, &head), 0x86dd);
        head[VNET_HDR_LEN + 12..].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(ethertype(true, &head), 0x0800);
    }
}
