//! Tunnel routes: whole prefixes the director sends through a tunnel to a remote gateway
//! (`[[tunnel_route]]` in the config), a site-to-site link made of TUN devices and userspace.
//!
//! A packet read from the TUN whose destination is inside a tunnel-route prefix (and is not a
//! VIP, see [`Snapshot::tunnel_route`](crate::director::Snapshot::tunnel_route)) is encapsulated to the route's `via` as it is: no connection tracking, no scheduler.
//! The lookup is a longest-prefix match over a small table kept in the [`Snapshot`](crate::director::Snapshot); the
//! encapsulation, with its MTU handling (DF: ICMP fragmentation-needed; no DF: outer
//! fragments), is the one real servers get.
//!
//! Return traffic comes back from the gateway tunnelled; [`crate::director::io::gateway`] receives it.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::encap::{Tunnel, TunnelType, DEFAULT_GUE_PORT};

/// The flow hash of the GUE source port of a routed packet (also the gateway's, for the
/// return traffic): [`crate::hash::packet_flow_hash`].
pub use crate::hash::packet_flow_hash as flow_hash;

/// One `[[tunnel_route]]`: packets to `prefix` go through a tunnel to `via`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelRoute {
    /// The remote side's prefix (host bits cleared), IPv4 or IPv6; an IPv6 prefix's packets
    /// are carried over the same IPv4 underlay (sit-style protocol 41, GRE 0x86DD or GUE).
    pub prefix: IpNet,
    /// The remote gateway's tunnel endpoint (outer destination, and the only outer source
    /// accepted for return traffic from `prefix`).
    pub via: Ipv4Addr,
    /// The encapsulation, both ways (no checksums): GRE with the key sent and expected, GUE
    /// with the UDP port of the remote gateway, which is also the one the director listens on
    /// for the return traffic.
    pub tunnel: Tunnel,
}

impl TunnelRoute {
    /// A route with the defaults: no GRE key, GUE port 6080.
    pub fn new(prefix: impl Into<IpNet>, via: Ipv4Addr, encap: TunnelType) -> TunnelRoute {
        TunnelRoute {
            prefix: prefix.into().trunc(),
            via,
            tunnel: Tunnel::new(encap, DEFAULT_GUE_PORT, false, None),
        }
    }
}

/// The tunnel routes as the data path reads them: the IPv4 ones, most specific first, then
/// the IPv6 ones, most specific first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTable {
    /// `(network, mask)` of the IPv4 routes as integers, index-aligned with `routes`.
    keys: Vec<(u32, u32)>,
    /// `(network, mask)` of the IPv6 routes, index-aligned with `routes[keys.len()..]`.
    keys6: Vec<(u128, u128)>,
    routes: Vec<TunnelRoute>,
}

impl RouteTable {
    /// A table over `routes` (any order; the longest prefix wins a lookup).
    pub fn new(routes: &[TunnelRoute]) -> RouteTable {
        let mut routes: Vec<TunnelRoute> = routes
            .iter()
            .map(|r| TunnelRoute {
                prefix: r.prefix.trunc(),
                ..*r
            })
            .collect();
        routes.sort_by(|a, b| {
            let v6 = |r: &TunnelRoute| matches!(r.prefix, IpNet::V6(_));
            v6(a)
                .cmp(&v6(b))
                .then(b.prefix.prefix_len().cmp(&a.prefix.prefix_len()))
                .then(a.prefix.cmp(&b.prefix))
        });
        let mut keys = Vec::new();
        let mut keys6 = Vec::new();
        for r in &routes {
            match r.prefix {
                IpNet::V4(n) => keys.push((u32::from(n.network()), u32::from(n.netmask()))),
                IpNet::V6(n) => keys6.push((u128::from(n.network()), u128::from(n.netmask()))),
            }
        }
        RouteTable {
            keys,
            keys6,
            routes,
        }
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Whether there are no IPv6 routes.
    #[inline]
    pub fn is_empty6(&self) -> bool {
        self.keys6.is_empty()
    }

    /// The routes, most specific first.
    pub fn routes(&self) -> &[TunnelRoute] {
        &self.routes
    }

    /// The most specific route whose prefix contains `dst`.
    #[inline]
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<&TunnelRoute> {
        let d = u32::from(dst);
        let i = self.keys.iter().position(|&(net, mask)| d & mask == net)?;
        self.routes.get(i)
    }

    /// The most specific IPv6 route whose prefix contains `dst`.
    #[inline]
    pub fn lookup6(&self, dst: Ipv6Addr) -> Option<&TunnelRoute> {
        let d = u128::from(dst);
        let i = self.keys6.iter().position(|&(net, mask)| d & mask == net)?;
        self.routes.get(self.keys.len() + i)
    }
}

/// The first pair of routes (indexes into `routes`) whose prefixes overlap, if any.
pub fn find_overlap(routes: &[TunnelRoute]) -> Option<(usize, usize)> {
    for (i, a) in routes.iter().enumerate() {
        for (j, b) in routes.iter().enumerate().skip(i + 1) {
            if a.prefix.contains(&b.prefix) || b.prefix.contains(&a.prefix) {
                return Some((i, j));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, via: [u8; 4]) -> TunnelRoute {
        TunnelRoute::new(
            prefix.parse::<IpNet>().unwrap(),
            via.into(),
            TunnelType::Gre,
        )
    }

    #[test]
    fn the_longest_prefix_wins() {
        let t = RouteTable::new(&[
            route("172.16.0.0/12", [10, 99, 0, 1]),
            route("172.16.8.0/22", [10, 99, 0, 2]),
            route("172.16.8.128/25", [10, 99, 0, 3]),
        ]);
        let via = |a: [u8; 4]| t.lookup(a.into()).map(|r| r.via);
        assert_eq!(via([172, 16, 8, 200]), Some([10, 99, 0, 3].into()));
        assert_eq!(via([172, 16, 9, 1]), Some([10, 99, 0, 2].into()));
        assert_eq!(via([172, 17, 0, 1]), Some([10, 99, 0, 1].into()));
        assert_eq!(via([172, 32, 0, 1]), None);
        assert!(RouteTable::default().lookup([1, 2, 3, 4].into()).is_none());
    }

    #[test]
    fn host_bits_are_cleared_and_overlaps_found() {
        let t = RouteTable::new(&[route("172.16.9.7/22", [10, 99, 0, 2])]);
        assert_eq!(
            t.routes()[0].prefix,
            "172.16.8.0/22".parse::<IpNet>().unwrap()
        );
        assert!(t.lookup([172, 16, 11, 255].into()).is_some());
        assert!(t.lookup([172, 16, 12, 0].into()).is_none());
        let routes = [
            route("10.0.0.0/24", [1, 1, 1, 1]),
            route("172.16.8.0/22", [1, 1, 1, 1]),
            route("172.16.10.0/24", [1, 1, 1, 2]),
        ];
        assert_eq!(find_overlap(&routes), Some((1, 2)));
        assert_eq!(find_overlap(&routes[..2]), None);
    }

    #[test]
    fn ipv6_prefixes_have_their_own_longest_match() {
        let t = RouteTable::new(&[
            route("2001:db8:8::/48", [10, 99, 0, 1]),
            route("172.16.0.0/12", [10, 99, 0, 9]),
            route("2001:db8:8:80::/57", [10, 99, 0, 2]),
            route("2001:db8:8:80::1:0/112", [10, 99, 0, 3]),
        ]);
        assert!(!t.is_empty6());
        assert!(RouteTable::new(&[route("10.0.0.0/8", [1, 1, 1, 1])]).is_empty6());
        let via = |a: &str| t.lookup6(a.parse().unwrap()).map(|r| r.via);
        assert_eq!(via("2001:db8:8:80::1:7"), Some([10, 99, 0, 3].into()));
        assert_eq!(via("2001:db8:8:ff::1"), Some([10, 99, 0, 2].into()));
        assert_eq!(via("2001:db8:8:7f::1"), Some([10, 99, 0, 1].into()));
        assert_eq!(via("2001:db8:9::1"), None);
        // The families do not mix: an IPv4 lookup never finds an IPv6 route, nor the reverse.
        assert_eq!(
            t.lookup([172, 16, 0, 1].into()).map(|r| r.via),
            Some([10, 99, 0, 9].into())
        );
        assert!(t.lookup([32, 1, 13, 184].into()).is_none());
        assert!(t.lookup6("::ffff:172.16.0.1".parse().unwrap()).is_none());
        assert!(RouteTable::default()
            .lookup6("2001:db8::1".parse().unwrap())
            .is_none());
        // Host bits cleared, IPv4 routes first in the listing.
        let t = RouteTable::new(&[
            route("2001:db8:8::5/48", [1, 1, 1, 1]),
            route("10.0.0.0/8", [1, 1, 1, 2]),
        ]);
        assert_eq!(t.routes()[0].prefix, "10.0.0.0/8".parse::<IpNet>().unwrap());
        assert_eq!(
            t.routes()[1].prefix,
            "2001:db8:8::/48".parse::<IpNet>().unwrap()
        );
        let overlapping = [
            route("2001:db8::/32", [1, 1, 1, 1]),
            route("10.0.0.0/8", [1, 1, 1, 1]),
            route("2001:db8:8::/48", [1, 1, 1, 2]),
        ];
        assert_eq!(find_overlap(&overlapping), Some((0, 2)));
        assert_eq!(find_overlap(&overlapping[..2]), None);
    }

    #[test]
    fn the_flow_hash_reads_only_what_is_there() {
        for len in 0..40 {
            let p: Vec<u8> = (0..len).map(|i| (i * 29 + 0x45) as u8).collect();
            let _ = flow_hash(&p);
        }
        let mut a = [0u8; 28];
        a[0] = 0x45;
        a[9] = 17;
        a[20..24].copy_from_slice(&[0x30, 0x39, 0, 80]);
        let mut b = a;
        b[21] = 0x3a;
        assert_ne!(flow_hash(&a), flow_hash(&b), "ports are part of the flow");
    }
}
