//! Multi-queue TUN devices.
//!
//! The device is created with the `tun-rs` crate (it does the `TUNSETIFF` ioctl with
//! `IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE`, opens one descriptor per queue with
//! [`tun_rs::SyncDevice::try_clone`], and sets MTU and link state); packets are then moved with
//! plain `poll` / `read` / `write` on each queue's descriptor so a batch read costs no allocation
//! and a worker can wake up on a timeout.
//!
//! With [`TunConfig::offload`] the device is created with `IFF_VNET_HDR` (`tun-rs`'s `offload`
//! option) and then told with `TUNSETOFFLOAD` which offloads this reader understands
//! ([`OFFLOADS`]: partial checksums and TCP segmentation; with [`TunConfig::udp_offload`] also
//! UDP segmentation, [`TUN_F_USO4`]): the kernel then hands over GRO/GSO super-packets of up to
//! 64 KB, each behind a 10-byte `virtio_net_hdr`
//! ([`crate::wire::gso`]). [`TunQueue::recv_batch_vnet`] reads the header and the packet into
//! separate buffers (`readv`), so the batch slot holds the bare IP packet; every write into such
//! a device must carry a header too, which [`TunQueue::send`] adds (an all-zero one).
//!
//! The device is not persistent: it disappears when the last queue is closed.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use super::{poll_readable, PacketBatch, PacketMeta, SendReport};
use crate::wire::gso::VNET_HDR_LEN;

/// The `TUNSETOFFLOAD` flags asked for, best first: `TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 |
/// TUN_F_TSO_ECN`, then without ECN, then IPv4 only. Without [`TUN_F_USO4`] UDP stays one
/// datagram per read.
pub const OFFLOADS: [u32; 3] = [0x0f, 0x07, 0x03];

/// `TUN_F_USO4` (Linux 6.2+): the reader takes UDP/IPv4 super-packets (`GSO_UDP_L4`), such as
/// the trains UDP GRO forwarding (`ethtool -K DEV rx-udp-gro-forwarding on`) builds on the
/// receiving interface. The kernel takes it only together with [`TUN_F_USO6`]; both are asked
/// for on top of each of [`OFFLOADS`] first when [`TunConfig::udp_offload`] is set; an older
/// kernel refuses them and the plain set is used.
pub const TUN_F_USO4: u32 = 0x20;
/// `TUN_F_USO6`: UDP/IPv6 super-packets (the director drops IPv6 as `not_ipv4` either way).
pub const TUN_F_USO6: u32 = 0x40;

/// How to create a TUN device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunConfig {
    /// Interface name (at most 15 bytes).
    pub name: String,
    /// Number of queues (descriptors); more than 1 sets `IFF_MULTI_QUEUE`.
    pub queues: usize,
    /// Interface MTU.
    pub mtu: u16,
    /// Keep the 4-byte packet-information prefix (flags + ethertype) on every packet, i.e. do
    /// not set `IFF_NO_PI`. Off by default: packets are bare IP.
    pub packet_info: bool,
    /// Bring the link up after creating it.
    pub up: bool,
    /// Ask for `IFF_VNET_HDR` and TCP offloads (GSO super-packets, partial checksums). If the
    /// kernel refuses, the device is created without (see [`TunDevice::offload`]).
    pub offload: bool,
    /// With `offload`, also ask for UDP segmentation ([`TUN_F_USO4`]): only for a reader that
    /// handles `GSO_UDP_L4` super-packets (the director's).
    pub udp_offload: bool,
}

impl TunConfig {
    /// A config with `IFF_NO_PI`, the link brought up.
    pub fn new(name: &str, queues: usize, mtu: u16) -> TunConfig {
        TunConfig {
            name: name.to_owned(),
            queues,
            mtu,
            packet_info: false,
            up: true,
            offload: false,
            udp_offload: false,
        }
    }
}

/// A TUN device and its queues.
#[derive(Debug)]
pub struct TunDevice {
    name: String,
    queues: Vec<TunQueue>,
    offload: Option<u32>,
}

impl TunDevice {
    /// Creates TUN device `name` with `queues` queues, `IFF_NO_PI`, the given MTU, link up.
    pub fn create(name: &str, queues: usize, mtu: u16) -> io::Result<TunDevice> {
        TunDevice::with_config(&TunConfig::new(name, queues, mtu))
    }

    /// Creates a TUN device as `config` says.
    pub fn with_config(config: &TunConfig) -> io::Result<TunDevice> {
        if config.queues == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a TUN device needs at least one queue",
            ));
        }
        if config.name.is_empty() || config.name.len() > 15 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "TUN device name {:?} must be 1 to 15 bytes long",
                    config.name
                ),
            ));
        }
        if config.offload {
            match TunDevice::build(config, true) {
                Ok(dev) if dev.offload.is_some() => return Ok(dev),
                Ok(dev) => drop(dev),
                Err(e) => log::warn!(
                    "tunlb: TUN offload (IFF_VNET_HDR) refused on {}: {e}; using plain reads",
                    config.name
                ),
            }
        }
        TunDevice::build(config, false)
    }

    fn build(config: &TunConfig, offload: bool) -> io::Result<TunDevice> {
        let first = tun_rs::DeviceBuilder::new()
            .name(config.name.clone())
            .mtu(config.mtu)
            .multi_queue(config.queues > 1)
            .packet_information(config.packet_info)
            .offload(offload)
            .enable(config.up)
            .build_sync()
            .map_err(|e| with_context(e, &format!("create TUN device {}", config.name)))?;
        let name = first.name().unwrap_or_else(|_| config.name.clone());
        let mut queues = Vec::with_capacity(config.queues);
        queues.push(TunQueue::new(first, offload)?);
        for i in 1..config.queues {
            let next = queues[0]
                .dev
                .try_clone()
                .map_err(|e| with_context(e, &format!("open queue {i} of TUN device {name}")))?;
            queues.push(TunQueue::new(next, offload)?);
        }
        let mut accepted = None;
        if offload {
            // The mask is device-wide; tun-rs set its own (with USO) on every queue: replace it.
            let fd = queues[0].as_raw_fd();
            let with_uso = OFFLOADS
                .iter()
                .map(|f| f | TUN_F_USO4 | TUN_F_USO6)
                .filter(|_| config.udp_offload);
            for flags in with_uso.chain(OFFLOADS) {
                // SAFETY: `fd` is an open TUN descriptor; TUNSETOFFLOAD takes the flags by value.
                let rc = unsafe { libc::ioctl(fd, libc::TUNSETOFFLOAD, flags as libc::c_ulong) };
                if rc == 0 {
                    accepted = Some(flags);
                    break;
                }
            }
            if accepted.is_none() {
                log::warn!(
                    "tunlb: TUNSETOFFLOAD refused on {name}: {}; using plain reads",
                    io::Error::last_os_error()
                );
            }
        }
        Ok(TunDevice {
            name,
            queues,
            offload: accepted,
        })
    }

    /// The `TUNSETOFFLOAD` flags in force (one of [`OFFLOADS`], possibly with
    /// [`TUN_F_USO4`]), or `None` without offload: then the queues read and write bare
    /// packets.
    pub fn offload(&self) -> Option<u32> {
        self.offload
    }

    /// The interface name the kernel gave the device.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index.
    pub fn index(&self) -> io::Result<u32> {
        match self.queues.first() {
            Some(q) => q.dev.if_index(),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    /// Hands out the queues, one per worker thread. The device lives as long as any queue.
    pub fn queues(self) -> Vec<TunQueue> {
        self.queues
    }
}

/// One queue of a TUN device: a descriptor in non-blocking mode.
pub struct TunQueue {
    dev: tun_rs::SyncDevice,
    vnet_hdr: bool,
}

impl std::fmt::Debug for TunQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunQueue")
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

impl TunQueue {
    fn new(dev: tun_rs::SyncDevice, vnet_hdr: bool) -> io::Result<TunQueue> {
        dev.set_nonblocking(true)?;
        Ok(TunQueue { dev, vnet_hdr })
    }

    /// Whether every packet read or written carries a `virtio_net_hdr` in front.
    pub fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// Waits up to `timeout` (`None`: forever) for a packet, then reads as many as are ready
    /// without blocking, up to the batch's capacity. Returns how many it stored (also
    /// `batch.len()`); 0 on timeout or when a signal arrived. For a queue without
    /// [`vnet_hdr`](Self::vnet_hdr).
    ///
    /// A packet longer than the batch's slot size is stored cut and marked
    /// [`PacketMeta::truncated`].
    pub fn recv_batch(
        &self,
        batch: &mut PacketBatch,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        self.recv_into(batch, None, timeout)
    }

    /// As [`recv_batch`](Self::recv_batch) for a queue with [`vnet_hdr`](Self::vnet_hdr): packet
    /// `i`'s `virtio_net_hdr` goes to `hdrs[i]`, the packet itself into the batch. Reads at most
    /// `hdrs.len()` packets. A read too short for a header is stored as a packet of length 0
    /// with `hdrs[i]` zero-filled past what arrived (the caller finds it malformed).
    pub fn recv_batch_vnet(
        &self,
        batch: &mut PacketBatch,
        hdrs: &mut [[u8; VNET_HDR_LEN]],
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        self.recv_into(batch, Some(hdrs), timeout)
    }

    fn recv_into(
        &self,
        batch: &mut PacketBatch,
        mut hdrs: Option<&mut [[u8; VNET_HDR_LEN]]>,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        batch.clear();
        let fd = self.as_raw_fd();
        if !poll_readable(fd, timeout)? {
            return Ok(0);
        }
        let limit = match &hdrs {
            Some(h) => h.len().min(batch.capacity()),
            None => batch.capacity(),
        };
        let mut n = 0;
        while n < limit {
            let max = batch.slot_size();
            // One byte longer than the slot: TUN reads cut silently, so a read that fills the
            // spare byte is how a too-long packet shows.
            let Some(slot) = batch.slot_mut(n) else { break };
            let cap = slot.len();
            let (rc, head) = match hdrs.as_deref_mut().and_then(|h| h.get_mut(n)) {
                Some(hdr) => {
                    *hdr = [0; VNET_HDR_LEN];
                    let iov = [
                        libc::iovec {
                            iov_base: hdr.as_mut_ptr().cast(),
                            iov_len: VNET_HDR_LEN,
                        },
                        libc::iovec {
                            iov_base: slot.as_mut_ptr().cast(),
                            iov_len: cap,
                        },
                    ];
                    // SAFETY: both iovecs point at writable buffers of the given lengths
                    // (`hdr` and `slot`), borrowed for the call.
                    let rc = unsafe { libc::readv(fd, iov.as_ptr(), 2) };
                    (rc, VNET_HDR_LEN)
                }
                None => {
                    // SAFETY: `slot` is a writable buffer of `cap` bytes borrowed for the call.
                    let rc = unsafe { libc::read(fd, slot.as_mut_ptr().cast(), cap) };
                    (rc, 0)
                }
            };
            if rc < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => break,
                    // Report a failure only when nothing was read; else it recurs next call.
                    _ if n == 0 => return Err(err),
                    _ => break,
                }
            }
            let len = (rc as usize).saturating_sub(head);
            batch.set_meta(
                n,
                PacketMeta {
                    len: len.min(max),
                    src: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                    truncated: len > max,
                },
            );
            n += 1;
        }
        batch.set_filled(n);
        Ok(n)
    }

    /// Writes one packet into the device (the kernel then routes it as if it had arrived on
    /// this interface). On a queue with [`vnet_hdr`](Self::vnet_hdr) an all-zero header goes in
    /// front (no offload: the packet's checksums must be complete). Returns the packet bytes
    /// written.
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        let hdr = self.vnet_hdr.then_some(&[0u8; VNET_HDR_LEN]);
        self.write_one(hdr, packet)
    }

    /// Writes one packet behind the given `virtio_net_hdr` (a GSO packet for the kernel to
    /// segment, or one with a partial checksum). Only for a queue with
    /// [`vnet_hdr`](Self::vnet_hdr); else the header is left out.
    pub fn send_vnet(&self, hdr: &[u8; VNET_HDR_LEN], packet: &[u8]) -> io::Result<usize> {
        self.write_one(self.vnet_hdr.then_some(hdr), packet)
    }

    fn write_one(&self, hdr: Option<&[u8; VNET_HDR_LEN]>, packet: &[u8]) -> io::Result<usize> {
        let fd = self.as_raw_fd();
        let rc = match hdr {
            Some(h) => {
                let iov = [
                    libc::iovec {
                        iov_base: h.as_ptr().cast_mut().cast(),
                        iov_len: h.len(),
                    },
                    libc::iovec {
                        iov_base: packet.as_ptr().cast_mut().cast(),
                        iov_len: packet.len(),
                    },
                ];
                // SAFETY: both iovecs point at readable buffers of the given lengths, borrowed
                // for the call; the kernel only reads through them.
                unsafe { libc::writev(fd, iov.as_ptr(), 2) }
            }
            // SAFETY: `packet` is a readable buffer of `packet.len()` bytes borrowed for the call.
            None => unsafe { libc::write(fd, packet.as_ptr().cast(), packet.len()) },
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((rc as usize).saturating_sub(hdr.map_or(0, |h| h.len())))
    }

    /// Writes every packet, one `write` each (TUN has no batched write), and reports how many
    /// the kernel took.
    pub fn send_batch<'a, I>(&self, packets: I) -> SendReport
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut report = SendReport::default();
        for packet in packets {
            loop {
                match self.send(packet) {
                    Ok(_) => {
                        report.sent += 1;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        report.fail(e.raw_os_error().unwrap_or(libc::EIO));
                        break;
                    }
                }
            }
        }
        report
    }

    /// The underlying `tun-rs` device (for ioctls this module does not wrap).
    pub fn device(&self) -> &tun_rs::SyncDevice {
        &self.dev
    }
}

impl AsRawFd for TunQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.dev.as_raw_fd()
    }
}

fn with_context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_names_and_zero_queues_before_touching_the_kernel() {
        assert!(TunDevice::create("", 1, 1500).is_err());
        assert!(TunDevice::create("a-name-longer-than-15", 1, 1500).is_err());
        assert!(TunDevice::create("tunlb-x", 0, 1500).is_err());
    }
}
