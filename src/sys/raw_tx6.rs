//! The IPv6 raw socket tunnel packets to IPv6 real servers leave by: `AF_INET6`, `SOCK_RAW`,
//! `IPPROTO_RAW` (the header is ours, as `IP_HDRINCL` for IPv4).
//!
//! Unlike IPv4's, the kernel does not fill in an unspecified source address of such a packet,
//! so [`RawSender6`] does: the kernel's source for the destination (what a UDP socket
//! connected to it would use: no packet is sent to learn it), cached per destination for a
//! few seconds. A GUE header's UDP checksum covers the source in its pseudo-header and is
//! fixed for it (RFC 1624, [`checksum::update_addr_v6`]).

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::encap::{fragment6, MAX_OUTER_HEADER};
use crate::wire::{checksum, IpProtocol};

/// How long a looked-up source address is used before it is looked up again (addresses and
/// routes change).
const SOURCE_TTL: Duration = Duration::from_secs(5);
/// Most destinations whose source is cached (more real servers than that look theirs up more
/// often, nothing else).
const SOURCE_CACHE_MAX: usize = 4096;
/// Bytes of the fixed IPv6 header.
const HEADER_LEN: usize = 40;

/// Sends IPv6 packets whose header the caller built.
#[derive(Debug)]
pub struct RawSender6 {
    socket: Socket,
    sources: HashMap<Ipv6Addr, (Ipv6Addr, Instant)>,
    /// The identification of the last fragmented datagram.
    ident: NonZeroU32,
}

impl RawSender6 {
    /// Opens the socket (needs `CAP_NET_RAW`).
    pub fn new() -> io::Result<RawSender6> {
        let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(255)))?;
        Ok(RawSender6 {
            socket,
            sources: HashMap::new(),
            ident: NonZeroU32::MIN,
        })
    }

    /// Sends `header` (an IPv6 header and what the tunnel adds) followed by `inner`, to the
    /// header's destination. An unspecified source is filled in first (see the module
    /// documentation); `header` is left as it was.
    pub fn send(&mut self, header: &[u8], inner: &[u8]) -> io::Result<usize> {
        let mut buf = [0u8; MAX_OUTER_HEADER];
        let (header, dst) = self.sourced(header, &mut buf)?;
        let to = SockAddr::from(SocketAddrV6::new(dst, 0, 0, 0));
        self.socket
            .send_to_vectored(&[IoSlice::new(header), IoSlice::new(inner)], &to)
    }

    /// Sends `header` + `inner` as IPv6 fragments of at most `mtu` bytes
    /// ([`fragment6`]: an inner IPv4 packet without DF, or an inner IPv6 one of at most 1280
    /// bytes, on a tunnel whose MTU is smaller), the source filled in first as [`Self::send`]
    /// does; returns how many fragments were sent.
    pub fn send_fragmented(&mut self, header: &[u8], inner: &[u8], mtu: u16) -> io::Result<usize> {
        let mut buf = [0u8; MAX_OUTER_HEADER];
        let (header, dst) = self.sourced(header, &mut buf)?;
        self.ident = self.ident.checked_add(1).unwrap_or(NonZeroU32::MIN);
        let frags = fragment6(header, inner, mtu, self.ident)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e:?}")))?;
        let to = SockAddr::from(SocketAddrV6::new(dst, 0, 0, 0));
        let mut sent = 0;
        for f in frags {
            let piece = inner.get(f.inner.clone()).unwrap_or_default();
            self.socket.send_to_vectored(
                &[IoSlice::new(&f.header[..f.header_len]), IoSlice::new(piece)],
                &to,
            )?;
            sent += 1;
        }
        Ok(sent)
    }

    /// `header` with its source filled in (a copy in `buf`) if it was unspecified, and its
    /// destination.
    fn sourced<'a>(
        &mut self,
        header: &'a [u8],
        buf: &'a mut [u8; MAX_OUTER_HEADER],
    ) -> io::Result<(&'a [u8], Ipv6Addr)> {
        if header.len() < HEADER_LEN || header[0] >> 4 != 6 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an IPv6 header",
            ));
        }
        let dst = addr_at(header, 24);
        match buf.get_mut(..header.len()) {
            Some(copy) if addr_at(header, 8).is_unspecified() => {
                copy.copy_from_slice(header);
                let src = self.source_for(dst)?;
                fill_source(copy, src);
                Ok((&*copy, dst))
            }
            _ => Ok((header, dst)),
        }
    }

    /// The kernel's source address for packets to `dst`.
    fn source_for(&mut self, dst: Ipv6Addr) -> io::Result<Ipv6Addr> {
        let now = Instant::now();
        if let Some(&(src, at)) = self.sources.get(&dst) {
            if now.duration_since(at) < SOURCE_TTL {
                return Ok(src);
            }
        }
        let src = kernel_source(dst)?;
        if self.sources.len() >= SOURCE_CACHE_MAX {
            self.sources
                .retain(|_, (_, at)| now.duration_since(*at) < SOURCE_TTL);
        }
        if self.sources.len() < SOURCE_CACHE_MAX {
            self.sources.insert(dst, (src, now));
        }
        Ok(src)
    }
}

/// The source address the kernel picks for `dst`: a UDP socket connected to it says (connect
/// sends nothing).
pub fn kernel_source(dst: Ipv6Addr) -> io::Result<Ipv6Addr> {
    let s = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0))?;
    s.connect((dst, 9))?;
    match s.local_addr()? {
        SocketAddr::V6(a) => Ok(*a.ip()),
        SocketAddr::V4(_) => Err(io::Error::other("an IPv4 source for an IPv6 destination")),
    }
}

fn addr_at(h: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&h[at..at + 16]);
    Ipv6Addr::from(a)
}

/// Writes `src` into the header `h` (whose source is unspecified) and fixes a UDP checksum
/// right behind the fixed header (GUE) for it; a zero UDP checksum (none) stays zero.
fn fill_source(h: &mut [u8], src: Ipv6Addr) {
    h[8..24].copy_from_slice(&src.octets());
    if h[6] == IpProtocol::UDP {
        if let Some(field) = h.get_mut(HEADER_LEN + 6..HEADER_LEN + 8) {
            let old = u16::from_be_bytes([field[0], field[1]]);
            if old != 0 {
                let new = checksum::update_addr_v6(old, Ipv6Addr::UNSPECIFIED, src);
                let new = if new == 0 { 0xffff } else { new };
                field.copy_from_slice(&new.to_be_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encap::v6::{build_outer6, OuterParams6, TrafficClass, Udp6Zero};
    use crate::encap::{Tunnel, MAX_OUTER_HEADER};
    use crate::wire::testing::tcp6_packet;

    #[test]
    fn a_filled_in_source_keeps_the_gue_checksum_valid() {
        let dst: Ipv6Addr = "2001:db8:3::12".parse().unwrap();
        let src: Ipv6Addr = "2001:db8:2::2".parse().unwrap();
        let inner = tcp6_packet(
            "2001:db8:1::7".parse().unwrap(),
            1,
            "2001:db8::1".parse().unwrap(),
            80,
            0x10,
            100,
        );
        let params = OuterParams6 {
            src: Ipv6Addr::UNSPECIFIED,
            dst,
            tunnel: Tunnel::Gue {
                port: 6080,
                csum: false,
            },
            flow_hash: 77,
            hop_limit: 64,
            traffic_class: TrafficClass::CopyInner,
            udp_zero: Udp6Zero::Never,
        };
        let mut out = [0u8; MAX_OUTER_HEADER];
        let n = build_outer6(&params, &inner, None, &mut out).unwrap();
        let mut h = out[..n].to_vec();
        fill_source(&mut h, src);
        assert_eq!(addr_at(&h, 8), src);
        let mut udp = h[40..].to_vec();
        udp.extend(&inner);
        assert_eq!(
            checksum::upper_layer_v6(src, dst, IpProtocol::UDP, &udp),
            0xffff,
            "the UDP checksum verifies with the filled-in source"
        );
        // The same header built with the source known from the start is identical.
        let mut known = [0u8; MAX_OUTER_HEADER];
        let m = build_outer6(&OuterParams6 { src, ..params }, &inner, None, &mut known).unwrap();
        assert_eq!(&known[..m], &h[..]);
    }
}
