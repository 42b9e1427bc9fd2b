//! What the core decides about one packet: plain data, acted on by the driver.

use std::net::Ipv4Addr;

use crate::encap::{Tunnel, MAX_OUTER_HEADER};

/// The outcome of [`Director::handle_packet`](crate::director::Director::handle_packet).
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send `header[..header_len]` followed by the packet's first `len` bytes to `dst` as one
    /// IPv4 datagram (the header starts with the outer IPv4 header, so the driver sends through
    /// a raw `IP_HDRINCL` socket), or as fragments of it when `frag_mtu` is not 0. The packet
    /// buffer may have been edited in place (MSS clamp).
    Encap(Encap),
    /// DR mode: send the packet's first bytes unchanged in an Ethernet frame to a real server
    /// on a directly connected LAN (through an `AF_PACKET` socket), or as fragments of it.
    Ether(Ether),
    /// The core wrote a reply (an ICMP error) into the packet buffer: write its first `len`
    /// bytes back into the TUN device so the kernel routes it to the client.
    Reply {
        /// Length of the reply in the buffer.
        len: usize,
    },
    /// The core rewrote the packet in place (NAT: destination to the real server, or a reply's
    /// source to the VIP): write its first `len` bytes back into the TUN device so the kernel
    /// routes it on.
    Rewrite {
        /// Length of the packet in the buffer.
        len: usize,
    },
    /// Drop the packet, counted under this reason.
    Drop(DropReason),
}

/// An encapsulated packet ready to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encap {
    /// The outer destination (the real server or its tunnel endpoint).
    pub dst: Ipv4Addr,
    /// The outer headers, IPv4 first.
    pub header: [u8; MAX_OUTER_HEADER],
    /// How many bytes of `header` are used.
    pub header_len: u8,
    /// Length of the inner packet at the start of the buffer.
    pub len: usize,
    /// 0: send the datagram whole. Otherwise it does not fit the tunnel MTU and the inner packet
    /// allows fragmentation (DF clear, as Linux IPVS lets the kernel fragment the outer packet):
    /// split it with [`encap::fragment`](crate::encap::fragment()) into fragments of at most
    /// this many bytes, at most [`MAX_FRAGMENTS`] of them (the core checked both).
    pub frag_mtu: u16,
    /// The tunnel `header` was built for: the sender's to know (GUE trains, error counts)
    /// without reading it back from the header bytes.
    pub tunnel: Tunnel,
}

/// A packet for a DR real server, ready to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ether {
    /// The interface the real server is on.
    pub ifindex: u32,
    /// The real server's Ethernet address.
    pub dst_mac: [u8; 6],
    /// Length of the packet at the start of the buffer (sent as it is).
    pub len: usize,
    /// 0: send the packet whole. Otherwise it does not fit the interface MTU and DF is clear:
    /// split it with [`encap::fragment`](crate::encap::fragment()) (its own IPv4 header as the
    /// "outer" header) into fragments of at most this many bytes, at most [`MAX_FRAGMENTS`] of
    /// them (the core checked both).
    pub frag_mtu: u16,
}

/// The most fragments the core lets one encapsulated packet be split into; a packet that would
/// need more is dropped as [`DropReason::TooManyFragments`]. With the smallest IPv4 MTU (68,
/// 48 bytes per fragment) this still covers a 2 KiB packet; with a tunnel MTU of 576 or more
/// (what the config accepts) every packet of up to about 26 KB.
pub const MAX_FRAGMENTS: usize = 48;

impl Encap {
    /// The outer header bytes.
    pub fn header(&self) -> &[u8] {
        &self.header[..self.header_len as usize]
    }
}

macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $variant:ident => $label:literal,)*) => {
        /// Why the data path dropped a packet. `as_str()` is the metric label value.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum DropReason {
            $($(#[$doc])* $variant,)*
        }

        impl DropReason {
            /// Every reason, in declaration order (index = `self as usize`).
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// Number of reasons.
            pub const COUNT: usize = Self::ALL.len();

            /// The metric label value, snake_case and stable.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $label,)*
                }
            }
        }
    };
}

drop_reasons! {
    /// Shorter than an IPv4 header, bad version/IHL, or total length beyond the buffer.
    MalformedIp => "malformed_ip",
    /// The IPv4 header checksum does not verify.
    BadIpChecksum => "bad_ip_checksum",
    /// The TCP or UDP header is truncated.
    MalformedL4 => "malformed_l4",
    /// Neither IPv4 nor IPv6 (the version nibble; the label is older than IPv6 forwarding).
    NotIpv4 => "not_ipv4",
    /// GUE to a real server that has a tunnel key while the director has no outer source
    /// address of that server's family (`--local-address`, `--local-address6`): the MAC
    /// covers the outer source, which must be known when the packet is built.
    TunnelAuthNoSource => "tunnel_auth_no_source",
    /// A GSO super-packet to a real server behind an IPv6 underlay (the driver cuts them
    /// first; one came while the table changed).
    Ipv6SuperPacket => "ipv6_super_packet",
    /// IPv6: more than 8 extension headers.
    Ipv6TooManyExt => "ipv6_too_many_ext",
    /// IPv6: a Routing header of type 0 or with segments left (the packet is meant to travel
    /// on past the VIP).
    Ipv6RoutingHeader => "ipv6_routing_header",
    /// IPv6: an extension header runs past the packet.
    Ipv6ExtTruncated => "ipv6_ext_truncated",
    /// IPv6: a first fragment without the whole header chain and upper-layer header (RFC 7112).
    Ipv6ChainIncomplete => "ipv6_chain_incomplete",
    /// IPv6: a Hop-by-Hop Options header that is not the first extension header.
    Ipv6HbhNotFirst => "ipv6_hbh_not_first",
    /// IPv6: two Fragment headers.
    Ipv6FragmentTwice => "ipv6_fragment_twice",
    /// An IP protocol no service can carry (not TCP, UDP or ICMP).
    UnsupportedProtocol => "unsupported_protocol",
    /// Addressed to a VIP, but no service matches the port/protocol.
    NoService => "no_service",
    /// The service has no real server that can take a new flow (all removed, weight 0, over threshold).
    NoDestination => "no_destination",
    /// A TCP packet other than SYN for a flow the table does not know.
    NoConnection => "no_connection",
    /// A TCP or UDP packet from a NAT real server that is no reply of a live NAT flow.
    NatNoFlow => "nat_no_flow",
    /// A new NAT flow would have the same reply tuple (client address and port, real server)
    /// as a live one to another VIP: replies could not tell them apart.
    NatConflict => "nat_conflict",
    /// A packet to an S-NAT public address that belongs to no live mapping.
    SnatNoMapping => "snat_no_mapping",
    /// No public address has a free port for a new S-NAT mapping to this destination.
    SnatPortsExhausted => "snat_ports_exhausted",
    /// A non-first fragment whose first fragment was not seen.
    FragmentNoFlow => "fragment_no_flow",
    /// An ICMP message that is not an error about a known flow.
    IcmpNoFlow => "icmp_no_flow",
    /// An ICMP message that is malformed or of a type the director does not forward.
    IcmpUnsupported => "icmp_unsupported",
    /// The connection table is full.
    ConnTableFull => "conn_table_full",
    /// The packet has DF set and does not fit once encapsulated; an ICMP frag-needed went back.
    TooBig => "too_big",
    /// The packet does not fit once encapsulated and DF is clear, but the outer datagram would
    /// need more than [`MAX_FRAGMENTS`] fragments (or the tunnel MTU is below 68, where no
    /// fragment fits). In DR mode also a packet without DF too big for the LAN that cannot be
    /// split (it has IP options or already is a fragment).
    TooManyFragments => "too_many_fragments",
    /// The flow's real server left the table (deleted, or down with the service's default
    /// `expire_nodest_conn`): the flow is forgotten. A TCP packet other than a SYN is dropped
    /// with this reason; UDP packets and SYNs are rescheduled to a live server instead.
    DestinationGone => "destination_gone",
    /// The flow's real server is out of the table because its health check failed, and its
    /// service has `expire_nodest_conn = false`: the flow is kept (its timer is not refreshed)
    /// and goes on if the server comes back before it times out.
    DestinationDown => "destination_down",
    /// The forwarding method of the real server is not implemented yet.
    UnsupportedForward => "unsupported_forward",
    /// DR mode: the real server's Ethernet address is not known (yet); the driver is asking the
    /// kernel to resolve it.
    NeighbourUnresolved => "neighbour_unresolved",
    /// The packet was longer than the driver's read buffer (cut by the read).
    Oversized => "oversized",
    /// TUN offload: the `virtio_net_hdr` in front of the packet is malformed (unknown GSO type,
    /// checksum offsets outside the packet) or announces a GSO packet that is not what it says.
    BadVnetHdr => "bad_vnet_hdr",
    /// A GSO super-packet for a real server with a tunnel key: each segment needs its own
    /// MAC, so the driver cuts super-packets first while keys are set; this one came between
    /// a key's arrival and the driver's next look.
    AuthSuperPacket => "auth_super_packet",
    /// The kernel refused to send the encapsulated packet or DR frame (e.g. no route,
    /// EMSGSIZE, the interface is gone).
    SendFailed => "send_failed",
    /// The director is stopping (SIGTERM): it starts no flow any more, so none is cut in
    /// half when its workers stop and none is unknown to the director taking over
    /// (`Shared::set_stopping`). The client retransmits to whoever has the VIP then.
    DirectorStopping => "director_stopping",
    /// Connection sync is configured and this director is not the sync master (a BACKUP):
    /// it starts no flow, which no other director would know (`Shared::set_sync_configured`).
    /// The client retransmits to the master.
    NotMaster => "not_master",
}

impl core::fmt::Display for DropReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reason_labels_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert!(seen.insert(r.as_str()), "duplicate label {}", r.as_str());
            assert!(r
                .as_str()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        }
        assert_eq!(core::mem::size_of::<DropReason>(), 1);
    }

    /// A verdict (the tunnel included, 12 bytes) stays small: 64 bytes (a cache line) with
    /// 32 bytes of outer header; the authenticated GUE header (60) made it 96, room for an
    /// IPv6 outer header ([`MAX_OUTER_HEADER`] = 88: IPv6 + UDP + authenticated GUE + a
    /// fragment header) 120.
    #[test]
    fn a_verdict_stays_small() {
        assert_eq!(core::mem::size_of::<Tunnel>(), 12);
        assert!(core::mem::size_of::<Verdict>() <= 120);
    }
}
