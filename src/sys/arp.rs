//! The ARP socket of one interface: `socket(AF_PACKET, SOCK_DGRAM, ETH_P_ARP)` bound to it,
//! which reads every ARP packet seen there (without the Ethernet header) and sends ARP packets
//! in frames the kernel addresses. The director's ARP responder answers for its VIPs through it,
//! so the answers stop the moment the process dies (a kernel proxy-neighbour entry would outlive
//! it).

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Socket, Type};

/// `ETH_P_ARP`.
const ETH_P_ARP: u16 = 0x0806;

/// The ARP socket of one interface.
#[derive(Debug)]
pub struct ArpSocket {
    sock: Socket,
    ifindex: u32,
}

/// One received ARP packet's link-layer facts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpFrom {
    /// The packet's length.
    pub len: usize,
    /// The Ethernet source address.
    pub mac: [u8; 6],
    /// Whether this host sent it (`PACKET_OUTGOING`): never answer those.
    pub outgoing: bool,
}

/// Reads one packet from the `AF_PACKET` socket `sock` into `buf` (for a `SOCK_RAW` socket the
/// Ethernet header included), with its link-layer facts; `None` when none is waiting. Shared
/// by the ARP and the NDP sockets.
pub(crate) fn recv_link(sock: &Socket, buf: &mut [u8]) -> io::Result<Option<ArpFrom>> {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `buf` is writable for its length; `from` and `len` are live and `len` holds
    // the size of `from`.
    let n = unsafe {
        libc::recvfrom(
            sock.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            std::ptr::addr_of_mut!(from).cast(),
            &mut len,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        };
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&from.sll_addr[..6]);
    Ok(Some(ArpFrom {
        len: n as usize,
        mac,
        outgoing: from.sll_pkttype == libc::PACKET_OUTGOING,
    }))
}

fn link_addr(ifindex: u32, mac: [u8; 6]) -> libc::sockaddr_ll {
    let mut addr = [0u8; 8];
    addr[..6].copy_from_slice(&mac);
    libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as libc::c_ushort,
        sll_protocol: ETH_P_ARP.to_be(),
        sll_ifindex: ifindex as libc::c_int,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: addr,
    }
}

impl ArpSocket {
    /// Opens the socket on interface `ifindex` (needs `CAP_NET_RAW`), non-blocking.
    pub fn open(ifindex: u32) -> io::Result<ArpSocket> {
        let sock = Socket::new(
            Domain::PACKET,
            Type::DGRAM,
            Some(i32::from(ETH_P_ARP.to_be()).into()),
        )?;
        let addr = link_addr(ifindex, [0; 6]);
        // SAFETY: `addr` is a live sockaddr_ll and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                sock.as_raw_fd(),
                std::ptr::addr_of!(addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        sock.set_nonblocking(true)?;
        Ok(ArpSocket { sock, ifindex })
    }

    /// Reads one ARP packet into `buf`; `None` when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<ArpFrom>> {
        recv_link(&self.sock, buf)
    }

    /// Sends `packet` (an ARP packet) in a frame to `dst_mac` (all-ones: broadcast).
    pub fn send(&self, packet: &[u8], dst_mac: [u8; 6]) -> io::Result<()> {
        let addr = link_addr(self.ifindex, dst_mac);
        // SAFETY: `packet` is readable for its length; `addr` is a live sockaddr_ll and the
        // length passed is its size.
        let n = unsafe {
            libc::sendto(
                self.sock.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                std::ptr::addr_of!(addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsRawFd for ArpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}
