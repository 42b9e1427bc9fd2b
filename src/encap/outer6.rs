//! Reading an outer IPv6 header for the strip paths: the shared
//! [`Ipv6Packet`](crate::wire::Ipv6Packet) view and the
//! [`ipv6_ext::walk`](crate::wire::ipv6_ext::walk) over its extension headers, with their
//! refusals mapped to [`StripError`]s. Building goes through
//! [`Ipv6Repr`](crate::wire::ipv6::Ipv6Repr) directly.

use core::ops::Range;
use std::net::Ipv6Addr;

use super::StripError;
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::{self, ipv6_ext};

/// What [`parse`] read of an outer IPv6 packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// The upper-layer protocol after the extension headers.
    pub protocol: u8,
    /// Where the upper-layer payload is in the packet (up to 40 + payload length).
    pub payload: Range<usize>,
}

/// Reads an outer IPv6 packet: the checks of
/// [`Ipv6Packet::new_checked`](crate::wire::Ipv6Packet::new_checked) (version 6, payload
/// length within the buffer, link padding ignored, no jumbogram) and a payload length of 0
/// refused, then the extension-header walk (a Routing header of type 0 or with segments left
/// is refused: this host is not its final destination). Any Fragment header, atomic or not,
/// is [`StripError::OuterFragment`] (no reassembly here; a kernel socket reassembles).
pub fn parse(packet: &[u8]) -> Result<Parsed, StripError> {
    let p = Ipv6Packet::new_checked(packet).map_err(|e| match e {
        wire::Error::Truncated | wire::Error::BadLength => StripError::Truncated,
        _ => StripError::BadOuterHeader,
    })?;
    if p.payload_len() == 0 {
        return Err(StripError::BadOuterHeader);
    }
    let chain = ipv6_ext::walk(&p).map_err(|e| match e {
        ipv6_ext::ExtError::Truncated | ipv6_ext::ExtError::ChainIncomplete => {
            StripError::Truncated
        }
        ipv6_ext::ExtError::FragmentTwice => StripError::OuterFragment,
        _ => StripError::BadOuterHeader,
    })?;
    if chain.fragment.is_some() {
        return Err(StripError::OuterFragment);
    }
    Ok(Parsed {
        src: p.src_addr(),
        dst: p.dst_addr(),
        protocol: chain.upper,
        payload: chain.upper_offset..p.total_len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv6::Ipv6Repr;
    use crate::wire::IpProtocol;

    #[test]
    fn parse_through_the_wire_layer() {
        let s: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let d: Ipv6Addr = "2001:db8::a".parse().unwrap();
        let repr = |next_header, payload_len| Ipv6Repr {
            src: s,
            dst: d,
            next_header,
            hop_limit: 64,
            traffic_class: 0xb8,
            flow_label: 0x12345,
            payload_len,
        };
        let mut b = [0u8; 48];
        repr(IpProtocol::GRE, 8).emit(&mut b).unwrap();
        let p = parse(&b).unwrap();
        assert_eq!((p.src, p.dst, p.protocol, p.payload), (s, d, 47, 40..48));
        // A destination options header, then GRE.
        let mut e = [0u8; 56];
        repr(IpProtocol::IPV6_OPTS, 16).emit(&mut e).unwrap();
        e[40] = 47;
        let p = parse(&e).unwrap();
        assert_eq!((p.protocol, p.payload), (47, 48..56));
        // A fragment header (atomic or not).
        e[40] = IpProtocol::IPV6_FRAG;
        e[6] = IpProtocol::IPV6_FRAG;
        assert_eq!(parse(&e), Err(StripError::OuterFragment));
        // A routing header with segments left.
        let mut r = [0u8; 56];
        repr(IpProtocol::IPV6_ROUTE, 16).emit(&mut r).unwrap();
        r[40] = 47;
        r[42] = 4;
        r[43] = 1;
        assert_eq!(parse(&r), Err(StripError::BadOuterHeader));
        // Payload length 0; version 4.
        let mut z = [0u8; 40];
        repr(IpProtocol::GRE, 0).emit(&mut z).unwrap();
        assert_eq!(parse(&z), Err(StripError::BadOuterHeader));
        b[0] = 0x45;
        assert_eq!(parse(&b), Err(StripError::BadOuterHeader));
        for n in 0..48 {
            b[0] = 0x6b;
            assert!(parse(&b[..n]).is_err(), "{n}");
        }
    }
}
