//! Zero-copy views of the headers the data path reads and edits.
//!
//! Every view wraps a buffer `T: AsRef<[u8]>` that starts at its header: [`Ipv4Packet`] over a
//! whole IPv4 datagram, [`TcpPacket`], [`UdpPacket`] and [`Icmpv4Packet`] over the IPv4 payload.
//! `new_checked` validates every length the accessors rely on, so after it no accessor can panic
//! on untrusted bytes. Setters exist only where `T: AsMut<[u8]>`; the ones that edit a field
//! covered by a checksum keep it valid with an RFC 1624 incremental update, so NAT and MSS
//! clamping never re-sum a payload.
//!
//! - [`arp`] — [`ArpPacket`] and the [`ArpRepr`] builder (the VIPs' ARP responder).
//! - [`checksum`] — the Internet checksum, pseudo-header sums and incremental updates.
//! - [`ethernet`] — [`EthernetFrame`] and the [`EthernetRepr`] builder (the header of the
//!   director's `AF_PACKET` frames).
//! - [`gso`] — the TUN `virtio_net_hdr` and software segmentation of TCP super-packets.
//! - [`ipv4`] — [`Ipv4Packet`] and the [`Ipv4Repr`] builder.
//! - [`tcp`] — [`TcpPacket`], [`TcpFlags`], MSS option read and clamp.
//! - [`udp`] — [`UdpPacket`].
//! - [`icmp`] — [`Icmpv4Packet`] and the in-place ICMP error reply ([`icmp::frag_needed_in_place`]).
//! - [`ipv6`] — [`Ipv6Packet`] and the [`Ipv6Repr`] builder (the fixed 40-byte header).
//! - [`ipv6_ext`] — the extension header walk ([`ipv6_ext::walk`]): upper-layer protocol and
//!   offset, fragment header, refusals as drop-reason labels.
//! - [`icmpv6`] — [`Icmpv6Packet`], Neighbor Discovery (NS/NA parse and build, solicited-node
//!   multicast) and the in-place ICMPv6 errors ([`icmpv6::packet_too_big_in_place`]).

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod gso;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod ipv6_ext;
pub mod tcp;
#[doc(hidden)]
pub mod testing;
pub mod udp;

pub use arp::{ArpPacket, ArpRepr};
pub use ethernet::{EthernetFrame, EthernetRepr};
pub use icmp::Icmpv4Packet;
pub use icmpv6::Icmpv6Packet;
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Packet, Ipv6Repr};
pub use tcp::{TcpFlags, TcpPacket};
pub use udp::UdpPacket;

/// IP protocol numbers (the IPv4 `protocol` field) the data path knows, as `u8` constants:
/// `IpProtocol::TCP`.
#[allow(non_snake_case)]
pub mod IpProtocol {
    /// Internet Control Message Protocol.
    pub const ICMP: u8 = 1;
    /// IPv4 encapsulated in IPv4 (IPIP, RFC 2003).
    pub const IPIP: u8 = 4;
    /// Transmission Control Protocol.
    pub const TCP: u8 = 6;
    /// User Datagram Protocol.
    pub const UDP: u8 = 17;
    /// Generic Routing Encapsulation (RFC 2784).
    pub const GRE: u8 = 47;
    /// IPv6 Hop-by-Hop Options extension header (RFC 8200 §4.3).
    pub const HOPOPT: u8 = 0;
    /// IPv6 encapsulated in IP (6in4 / ip6ip6, RFC 4213, RFC 2473).
    pub const IPV6: u8 = 41;
    /// IPv6 Routing extension header (RFC 8200 §4.4).
    pub const IPV6_ROUTE: u8 = 43;
    /// IPv6 Fragment extension header (RFC 8200 §4.5).
    pub const IPV6_FRAG: u8 = 44;
    /// Encapsulating Security Payload (RFC 4303).
    pub const ESP: u8 = 50;
    /// Authentication Header (RFC 4302).
    pub const AH: u8 = 51;
    /// ICMP for IPv6 (RFC 4443).
    pub const ICMPV6: u8 = 58;
    /// IPv6 No Next Header (RFC 8200 §4.7).
    pub const IPV6_NONXT: u8 = 59;
    /// IPv6 Destination Options extension header (RFC 8200 §4.6).
    pub const IPV6_OPTS: u8 = 60;
}

/// Why a view refused a buffer, or a builder could not emit into one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the fixed header.
    #[error("buffer shorter than the header")]
    Truncated,
    /// The IP version nibble is not the view's (4 for [`Ipv4Packet`], 6 for [`Ipv6Packet`]).
    #[error("wrong IP version")]
    BadVersion,
    /// A header length field (IPv4 IHL, TCP data offset) is below the minimum or beyond the buffer.
    #[error("bad header length")]
    BadHeaderLen,
    /// A total length field (IPv4 total length, IPv6 payload length, UDP length) is below the
    /// header or beyond the buffer, or an IPv6 jumbogram.
    #[error("bad total length")]
    BadLength,
    /// The checksum does not verify.
    #[error("bad checksum")]
    BadChecksum,
    /// `emit` was given a buffer too small, or a payload too long for a 16-bit length field.
    #[error("buffer too small or payload too long")]
    BufferTooSmall,
}

impl Error {
    /// A stable snake_case label, usable as a metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Error::Truncated => "truncated",
            Error::BadVersion => "bad_version",
            Error::BadHeaderLen => "bad_header_len",
            Error::BadLength => "bad_length",
            Error::BadChecksum => "bad_checksum",
            Error::BufferTooSmall => "buffer_too_small",
        }
    }
}

/// Reads a big-endian `u16` at `at`. Callers have checked the bounds.
#[inline]
pub(crate) fn get_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

/// Reads a big-endian `u32` at `at`. Callers have checked the bounds.
#[inline]
pub(crate) fn get_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// Writes a big-endian `u16` at `at`. Callers have checked the bounds.
#[inline]
pub(crate) fn put_u16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes a big-endian `u32` at `at`. Callers have checked the bounds.
#[inline]
pub(crate) fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
