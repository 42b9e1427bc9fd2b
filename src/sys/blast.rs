//! [`UdpBlaster`]: a connected UDP socket that sends the same datagram many times per
//! `sendmmsg`, for the load generator of `tunlb udpblast` (the benchmark's packet-rate test).
//!
//! Connected, so the kernel reuses the cached route instead of looking it up per datagram, and
//! the messages carry no address.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::mmsg::SendBatch;
use super::SendReport;

/// A UDP socket bound to an ephemeral port and connected to one destination: one flow.
pub struct UdpBlaster {
    sock: Socket,
    batch: SendBatch<()>,
}

impl std::fmt::Debug for UdpBlaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpBlaster")
            .field("fd", &self.sock.as_raw_fd())
            .field("max_batch", &self.batch.max_batch())
            .finish()
    }
}

impl UdpBlaster {
    /// Opens a UDP socket, binds it to `0.0.0.0:0` (a fresh source port) and connects it to
    /// `to`; each [`send`](Self::send) carries up to `max_batch` datagrams per `sendmmsg`. A
    /// send blocks at most `timeout` when the socket buffer is full.
    pub fn connect(to: SocketAddrV4, max_batch: usize, timeout: Duration) -> io::Result<Self> {
        let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        let _ = sock.set_send_buffer_size(4 << 20);
        sock.set_write_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        sock.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0).into())?;
        sock.connect(&to.into())
            .map_err(|e| io::Error::new(e.kind(), format!("connect UDP to {to}: {e}")))?;
        Ok(UdpBlaster {
            sock,
            batch: SendBatch::new(max_batch, ()),
        })
    }

    /// The local address (with the source port the kernel chose).
    pub fn local_addr(&self) -> io::Result<SocketAddrV4> {
        self.sock
            .local_addr()?
            .as_socket_ipv4()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
    }

    /// Sends `payload` `count` times, `max_batch` datagrams per `sendmmsg`. Datagrams the
    /// kernel refuses (a full buffer past the timeout, `ECONNREFUSED` after an ICMP
    /// port-unreachable) are counted in the report, not retried.
    pub fn send(&mut self, payload: &[u8], count: usize) -> SendReport {
        let fd = self.sock.as_raw_fd();
        let empty: &[u8] = &[];
        self.batch
            .send(fd, std::iter::repeat_n(((), payload, empty), count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn sends_batches_to_the_connected_peer() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let to = match rx.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            other => panic!("not IPv4: {other}"),
        };
        let mut tx = UdpBlaster::connect(to, 4, Duration::from_millis(100)).unwrap();
        let from = tx.local_addr().unwrap();
        let report = tx.send(b"0123456789", 10);
        assert_eq!((report.sent, report.failed), (10, 0));
        let mut buf = [0u8; 64];
        for _ in 0..10 {
            let (n, src) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"0123456789");
            assert_eq!(src, std::net::SocketAddr::V4(from));
        }
    }
}
