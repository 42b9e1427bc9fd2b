//! The rules of the service model, each written once.
//!
//! `tunlb adm` (through [`ServiceSet::apply`](super::ServiceSet::apply) and its own parser),
//! the TOML config and keepalived.conf all call these; each renders a [`RuleError`] in its own
//! words and with its own position. A front end that reads a number checks its range against
//! the limits in [`service`](super::service) (`MAX_WEIGHT`, ...) with its own reader; the
//! functions here are the rules that need more than one value or a decision.

use std::net::{IpAddr, Ipv4Addr};

use super::error::RuleError;
use super::service::{
    DestConfig, Family, Forward, Netmask, Persistence, MAX_THRESHOLD, MAX_TIMEOUT, MAX_WEIGHT,
};
use crate::encap::TunnelType;

/// A service on port 0 (every port) must be persistent.
pub fn service_port<A: Family>(
    port: u16,
    persistence: Option<&Persistence<A>>,
) -> Result<(), RuleError> {
    if port == 0 && persistence.is_none() {
        return Err(RuleError::ZeroPortNeedsPersistence);
    }
    Ok(())
}

/// A persistence timeout is `1..=MAX_TIMEOUT` seconds.
pub fn persistence_timeout(timeout: u32) -> Result<u32, RuleError> {
    if timeout == 0 || timeout > MAX_TIMEOUT {
        return Err(RuleError::PersistenceTimeout(timeout));
    }
    Ok(timeout)
}

/// A persistence netmask has contiguous one bits (`255.255.255.0`, not `255.0.255.0`).
pub fn netmask(mask: Ipv4Addr) -> Result<Ipv4Addr, RuleError> {
    let bits = u32::from(mask);
    if bits.leading_ones() + bits.trailing_zeros() == 32 {
        Ok(mask)
    } else {
        Err(RuleError::NetmaskNotContiguous(mask))
    }
}

/// An IPv6 persistence prefix length is `1..=128` (ipvsadm's `-M` for an IPv6 service).
pub fn prefix_len_v6(len: u32) -> Result<u8, RuleError> {
    match u8::try_from(len) {
        Ok(l @ 1..=128) => Ok(l),
        _ => Err(RuleError::Ipv6PrefixLen(len)),
    }
}

/// A service's persistence netmask is written for the VIP's family (a dotted mask for IPv4, a
/// prefix length for IPv6) and is well formed.
pub fn service_netmask(vip: IpAddr, mask: Netmask) -> Result<Netmask, RuleError> {
    match (vip, mask) {
        (IpAddr::V4(_), Netmask::V4(m)) => netmask(m).map(Netmask::V4),
        (IpAddr::V6(_), Netmask::V6(l)) => prefix_len_v6(l.into()).map(Netmask::V6),
        _ => Err(RuleError::NetmaskFamily { vip }),
    }
}

/// A real server has its VIP's family, except with tunnel forwarding (ipip, gre, gue), which
/// can carry either family inside either: IPVS accepts a mixed-family real server for
/// `IP_VS_CONN_F_TUNNEL` only (`ip_vs_genl_set_cmd`), and refuses it for DR and NAT.
pub fn dest_family(vip: IpAddr, addr: IpAddr, forward: &Forward) -> Result<(), RuleError> {
    if vip.is_ipv4() == addr.is_ipv4() || matches!(forward, Forward::Tunnel(_)) {
        return Ok(());
    }
    Err(RuleError::FamilyMismatch { vip, addr })
}

/// A real server's weight and connection thresholds: each in range, the lower threshold not
/// above the upper one.
pub fn weight_and_thresholds(weight: u32, upper: u32, lower: u32) -> Result<(), RuleError> {
    if weight > MAX_WEIGHT {
        return Err(RuleError::Weight(weight));
    }
    for t in [upper, lower] {
        if t > MAX_THRESHOLD {
            return Err(RuleError::Threshold(t));
        }
    }
    thresholds(upper, lower)
}

/// The lower connection threshold must not exceed the upper one.
pub fn thresholds(upper: u32, lower: u32) -> Result<(), RuleError> {
    if lower > upper {
        return Err(RuleError::ThresholdsOutOfOrder { lower, upper });
    }
    Ok(())
}

/// Whether packets keep their destination port on the way to a real server: tunnels and
/// direct routing carry the packet unchanged, only NAT rewrites it.
pub fn keeps_port(forward: &Forward) -> bool {
    matches!(forward, Forward::Tunnel(_) | Forward::Dr)
}

/// The port of a real server given with `port` (`None`: not given) in a service on
/// `service_port`: not given is the service's; a tunnel or DR real server cannot have another.
///
/// Front ends where port 0 means "the service's" pass `None` for it.
pub fn real_server_port(
    service_port: u16,
    forward: &Forward,
    port: Option<u16>,
) -> Result<u16, RuleError> {
    match port {
        None => Ok(service_port),
        Some(p) if keeps_port(forward) && p != service_port => {
            Err(RuleError::DestPortMismatch { service_port })
        }
        Some(p) => Ok(p),
    }
}

/// A tunnel setting beyond its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelOption {
    /// The UDP destination port (`--tun-port`, `tun_port`, `port N`).
    Port,
    /// The checksum switch (`--tun-csum`/`--tun-nocsum`, `tun_csum`, `csum`/`nocsum`).
    Checksum,
    /// The GRE key (`--gre-key`, `gre_key`).
    GreKey,
}

/// Which tunnel types take which option: GUE a port, GUE and GRE a checksum, GRE a key; IPIP
/// none.
pub fn tunnel_option_allowed(tun: TunnelType, opt: TunnelOption) -> bool {
    matches!(
        (tun, opt),
        (TunnelType::Gue, TunnelOption::Port)
            | (TunnelType::Gue | TunnelType::Gre, TunnelOption::Checksum)
            | (TunnelType::Gre, TunnelOption::GreKey)
    )
}

/// A real server (address and port) appears once per service.
pub fn unique_dest<A: Family>(
    dests: &[DestConfig<A>],
    addr: A,
    port: u16,
) -> Result<(), RuleError> {
    if dests.iter().any(|d| d.addr == addr && d.port == port) {
        return Err(RuleError::DuplicateDest {
            addr: addr.ip(),
            port,
        });
    }
    Ok(())
}

/// Port 0 stands for "not given" (the service's port) in the TOML config, keepalived.conf and
/// the director's table edits.
pub fn zero_is_unset(port: u16) -> Option<u16> {
    (port != 0).then_some(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_server_port_rule() {
        let tun = Forward::tunnel(TunnelType::Ipip);
        assert_eq!(real_server_port(80, &tun, None), Ok(80));
        assert_eq!(real_server_port(80, &tun, Some(80)), Ok(80));
        assert_eq!(
            real_server_port(80, &Forward::Dr, Some(8080)),
            Err(RuleError::DestPortMismatch { service_port: 80 })
        );
        assert_eq!(real_server_port(80, &Forward::Nat, Some(8080)), Ok(8080));
        assert_eq!(real_server_port(80, &tun, zero_is_unset(0)), Ok(80));
    }

    #[test]
    fn numbers_and_masks() {
        assert_eq!(
            weight_and_thresholds(1, 0, 5),
            Err(RuleError::ThresholdsOutOfOrder { lower: 5, upper: 0 })
        );
        assert_eq!(
            weight_and_thresholds(MAX_WEIGHT + 1, 0, 0),
            Err(RuleError::Weight(MAX_WEIGHT + 1))
        );
        assert!(netmask(Ipv4Addr::new(255, 255, 255, 0)).is_ok());
        assert!(netmask(Ipv4Addr::new(255, 0, 255, 0)).is_err());
        assert_eq!(
            service_port::<IpAddr>(0, None),
            Err(RuleError::ZeroPortNeedsPersistence)
        );
        assert_eq!(
            persistence_timeout(0),
            Err(RuleError::PersistenceTimeout(0))
        );
    }

    #[test]
    fn ipv6_netmask_and_families() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(service_netmask(v6, Netmask::V6(64)), Ok(Netmask::V6(64)));
        assert_eq!(
            service_netmask(v6, Netmask::V6(0)),
            Err(RuleError::Ipv6PrefixLen(0))
        );
        assert_eq!(prefix_len_v6(129), Err(RuleError::Ipv6PrefixLen(129)));
        assert_eq!(prefix_len_v6(128), Ok(128));
        assert_eq!(
            service_netmask(v6, Netmask::V4(Ipv4Addr::BROADCAST)),
            Err(RuleError::NetmaskFamily { vip: v6 })
        );
        assert_eq!(
            service_netmask(v4, Netmask::V6(64)),
            Err(RuleError::NetmaskFamily { vip: v4 })
        );
        // Mixed families: tunnels only, as IPVS.
        for t in [TunnelType::Ipip, TunnelType::Gre, TunnelType::Gue] {
            assert_eq!(dest_family(v6, v4, &Forward::tunnel(t)), Ok(()));
            assert_eq!(dest_family(v4, v6, &Forward::tunnel(t)), Ok(()));
        }
        for f in [Forward::Dr, Forward::Nat] {
            assert_eq!(dest_family(v6, v6, &f), Ok(()));
            assert_eq!(
                dest_family(v6, v4, &f),
                Err(RuleError::FamilyMismatch { vip: v6, addr: v4 })
            );
        }
        let err = RuleError::FamilyMismatch { vip: v6, addr: v4 }.to_string();
        assert!(
            err.contains("2001:db8::1") && err.contains("10.0.0.1"),
            "{err}"
        );
    }
}
