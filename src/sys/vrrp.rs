//! The VRRP sockets of one interface: IP protocol 112 raw sockets as keepalived opens them.
//!
//! - The receiver is bound to the interface (`SO_BINDTODEVICE`), joined to 224.0.0.18 there and
//!   reads whole IPv4 packets (header included, so the TTL can be checked), non-blocking.
//! - The sender is bound to the interface and to the advert's source address, sends with TTL
//!   255 (unicast and multicast), TOS 0xc0 (network control), multicast loop off, the kernel
//!   adding the IPv4 header. It receives nothing: a socket filter drops every packet.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, SockFilter, Socket, Type};

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: i32 = 112;

/// The multicast group of VRRP adverts (RFC 3768 / 5798).
pub const VRRP_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

/// Both VRRP sockets of one interface.
#[derive(Debug)]
pub struct VrrpSocket {
    rx: Socket,
    tx: Socket,
}

fn context<'a>(what: &str, iface: &'a str) -> impl FnOnce(io::Error) -> io::Error + 'a {
    let what = what.to_string();
    move |e| io::Error::new(e.kind(), format!("{what} on {iface}: {e}"))
}

impl VrrpSocket {
    /// Opens the receiver and the sender on `iface` (needs `CAP_NET_RAW`), adverts leaving from
    /// `src` (an address of this host).
    pub fn open(iface: &str, src: Ipv4Addr) -> io::Result<VrrpSocket> {
        let ifindex = super::iface::index(iface).map_err(context("interface", iface))?;
        let proto = Some(Protocol::from(IPPROTO_VRRP));
        let rx =
            Socket::new(Domain::IPV4, Type::RAW, proto).map_err(context("raw socket", iface))?;
        rx.bind_device(Some(iface.as_bytes()))
            .map_err(context("SO_BINDTODEVICE", iface))?;
        rx.join_multicast_v4_n(&VRRP_GROUP, &InterfaceIndexOrAddress::Index(ifindex))
            .map_err(context("joining 224.0.0.18", iface))?;
        rx.set_nonblocking(true)?;

        let tx =
            Socket::new(Domain::IPV4, Type::RAW, proto).map_err(context("raw socket", iface))?;
        // A classic BPF program of one instruction, `ret #0`: accept nothing.
        tx.attach_filter(&[SockFilter::new(
            (libc::BPF_RET | libc::BPF_K) as u16,
            0,
            0,
            0,
        )])
        .map_err(context("socket filter", iface))?;
        tx.bind_device(Some(iface.as_bytes()))
            .map_err(context("SO_BINDTODEVICE", iface))?;
        tx.bind(&SocketAddrV4::new(src, 0).into())
            .map_err(context(&format!("binding to {src}"), iface))?;
        tx.set_multicast_if_v4(&src)
            .map_err(context("IP_MULTICAST_IF", iface))?;
        tx.set_multicast_ttl_v4(255)?;
        tx.set_ttl_v4(255)?;
        tx.set_tos_v4(0xc0)?;
        tx.set_multicast_loop_v4(false)?;
        tx.set_nonblocking(true)?;
        Ok(VrrpSocket { rx, tx })
    }

    /// Sends one VRRP message (the IPv4 payload) to `dst`: 224.0.0.18 or a unicast peer.
    pub fn send(&self, payload: &[u8], dst: Ipv4Addr) -> io::Result<usize> {
        self.tx
            .send_to(payload, &SockAddr::from(SocketAddrV4::new(dst, 0)))
    }

    /// Reads one received IPv4 packet into `buf`; `None` when there is none waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: an initialised `[u8]` is a valid `[MaybeUninit<u8>]` of the same length, and
        // recv only writes initialised bytes into it.
        let uninit: &mut [MaybeUninit<u8>] =
            unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
        match self.rx.recv(uninit) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The receiver's descriptor, to poll.
    pub fn rx_fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }
}
