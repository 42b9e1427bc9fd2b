//! The Neighbor Discovery socket of one interface: `socket(AF_PACKET, SOCK_RAW, ETH_P_IPV6)`
//! bound to it, with a classic BPF filter that passes only ICMPv6 Neighbor Solicitations
//! (Ethernet type 0x86dd, IPv6 next header 58 right after the fixed header, ICMPv6 type 135),
//! so the kernel copies nothing else to userspace. The director's NDP responder answers for its
//! IPv6 VIPs through it; like the ARP socket ([`ArpSocket`](super::arp::ArpSocket)), the answers
//! stop the moment the process dies.
//!
//! The socket joins the Ethernet multicast groups of the announced addresses' solicited-node
//! addresses (`PACKET_ADD_MEMBERSHIP` with `PACKET_MR_MULTICAST`, one membership per MAC): a NIC
//! that filters multicast then lets their solicitations in. The memberships go with the socket.
//! A solicitation behind an extension header (never seen in practice) is not passed.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, SockFilter, Socket, Type};

/// `ETH_P_IPV6`.
const ETH_P_IPV6: u16 = 0x86dd;

// Classic BPF opcodes (linux/filter.h).
const LDH_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
const LDB_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// The filter passing an Ethernet frame of IPv6 whose next header is ICMPv6 (58) and whose
/// ICMPv6 type is one of `types`, whole; everything else is dropped in the kernel. The
/// responder's is `ndp_filter(&[135])` (Neighbor Solicitations only).
pub fn ndp_filter(types: &[u8]) -> Vec<SockFilter> {
    let n = types.len() as u8;
    // Layout: 5 loads and tests of the headers, one test per type, drop, accept.
    let mut f = vec![
        SockFilter::new(LDH_ABS, 0, 0, 12),
        SockFilter::new(JEQ_K, 0, n + 3, u32::from(ETH_P_IPV6)),
        SockFilter::new(LDB_ABS, 0, 0, 14 + 6),
        SockFilter::new(JEQ_K, 0, n + 1, 58),
        SockFilter::new(LDB_ABS, 0, 0, 14 + 40),
    ];
    for (k, &t) in types.iter().enumerate() {
        f.push(SockFilter::new(JEQ_K, n - k as u8, 0, u32::from(t)));
    }
    f.push(SockFilter::new(RET_K, 0, 0, 0));
    f.push(SockFilter::new(RET_K, 0, 0, 0xffff));
    f
}

/// ICMPv6 Neighbor Solicitation, the one type the responder's socket passes.
const NEIGHBOR_SOLICIT: u8 = 135;

/// The NDP socket of one interface.
#[derive(Debug)]
pub struct NdpSocket {
    sock: Socket,
    ifindex: u32,
}

/// One received frame's link-layer facts (the ARP socket's, with the Ethernet header counted
/// in `len`).
pub type FrameFrom = super::arp::ArpFrom;

fn link_addr(ifindex: u32, protocol: u16) -> libc::sockaddr_ll {
    libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as libc::c_ushort,
        sll_protocol: protocol.to_be(),
        sll_ifindex: ifindex as libc::c_int,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: [0; 8],
    }
}

impl NdpSocket {
    /// Opens the socket on interface `ifindex` (needs `CAP_NET_RAW`), non-blocking. The filter
    /// is attached before the socket is bound to IPv6, so nothing unfiltered is ever queued.
    pub fn open(ifindex: u32) -> io::Result<NdpSocket> {
        Self::open_types(ifindex, &[NEIGHBOR_SOLICIT])
    }

    /// Opens a socket passing the ICMPv6 messages of `types` (tests capture advertisements
    /// with it; `types` holds at most a few).
    pub fn open_types(ifindex: u32, types: &[u8]) -> io::Result<NdpSocket> {
        if types.len() > 32 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many ICMPv6 types",
            ));
        }
        // Protocol 0: receives nothing until bound with ETH_P_IPV6 below.
        let sock = Socket::new(Domain::PACKET, Type::RAW, Some(0.into()))?;
        sock.attach_filter(&ndp_filter(types))?;
        let addr = link_addr(ifindex, ETH_P_IPV6);
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
        Ok(NdpSocket { sock, ifindex })
    }

    fn membership(&self, op: libc::c_int, mac: [u8; 6]) -> io::Result<()> {
        let mut address = [0u8; 8];
        address[..6].copy_from_slice(&mac);
        let mreq = libc::packet_mreq {
            mr_ifindex: self.ifindex as libc::c_int,
            mr_type: libc::PACKET_MR_MULTICAST as libc::c_ushort,
            mr_alen: 6,
            mr_address: address,
        };
        // SAFETY: `mreq` is a live packet_mreq and the length passed is its size.
        let rc = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_PACKET,
                op,
                std::ptr::addr_of!(mreq).cast(),
                std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Joins the Ethernet multicast group `mac` (a solicited-node group, 33:33:ff:XX:XX:XX) on
    /// the interface: its frames reach the host even where the NIC filters multicast.
    pub fn join(&self, mac: [u8; 6]) -> io::Result<()> {
        self.membership(libc::PACKET_ADD_MEMBERSHIP, mac)
    }

    /// Leaves a group [`join`](Self::join) joined.
    pub fn leave(&self, mac: [u8; 6]) -> io::Result<()> {
        self.membership(libc::PACKET_DROP_MEMBERSHIP, mac)
    }

    /// Reads one frame (Ethernet header included) into `buf`; `None` when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<FrameFrom>> {
        super::arp::recv_link(&self.sock, buf)
    }

    /// Sends `frame`, a whole Ethernet frame (addresses and type included), on the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let addr = link_addr(self.ifindex, ETH_P_IPV6);
        // SAFETY: `frame` is readable for its length; `addr` is a live sockaddr_ll and the
        // length passed is its size.
        let n = unsafe {
            libc::sendto(
                self.sock.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
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

impl AsRawFd for NdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}
