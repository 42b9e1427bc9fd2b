//! The agent's blast radius: per VIP, the protocols and ports a tunnelled packet may reach
//! (`--vip-ports`). Without a list a VIP takes everything, as before; with one, a forged or
//! misrouted packet cannot reach sshd (or anything else listening on the VIP) through the
//! tunnel.
//!
//! Syntax: `--vip-ports [VIP=]RULE[/RULE...]`, a RULE being `tcp:PORTS`, `udp:PORTS` or
//! `icmp`, PORTS a comma-separated list of ports and ranges (`80,443,8000-8099`). Without
//! `VIP=` the list is the default of every VIP that has none of its own. Examples:
//! `--vip-ports 10.0.0.100=tcp:80,443/udp:53`, `--vip-ports tcp:80/icmp`; an IPv6 VIP in
//! brackets (or bare): `--vip-ports [2001:db8::1]=tcp:80`. `icmp` names ICMPv6 echo for an
//! IPv6 VIP.
//!
//! With a list: TCP and UDP packets must match a rule (a non-first fragment, which has no
//! ports, follows its protocol's rule: its first fragment was checked); ICMP errors
//! (destination unreachable, time exceeded, parameter problem: what the director forwards
//! for a live flow, e.g. fragmentation needed) always pass; other ICMP (echo) only with
//! `icmp`; every other protocol is dropped. For IPv6 the same, after the extension headers
//! ([`crate::wire::ipv6_ext::walk`]; a chain it refuses is `proto_not_allowed`): ICMPv6
//! errors (types below 128) always pass.

use std::net::IpAddr;

use crate::wire::{ipv6_ext, IpProtocol, Ipv6Packet};
use std::ops::RangeInclusive;

/// Why a packet to a VIP with a port list was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortDrop {
    /// TCP or UDP to a port the VIP's list does not name.
    Port,
    /// A protocol the VIP's list does not name.
    Protocol,
}

/// One VIP's allowed protocols and ports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortList {
    tcp: Vec<RangeInclusive<u16>>,
    udp: Vec<RangeInclusive<u16>>,
    icmp: bool,
}

impl PortList {
    /// Parses `RULE[/RULE...]` (see the module documentation).
    pub fn parse(s: &str) -> Result<PortList, String> {
        let mut list = PortList::default();
        for rule in s.split('/') {
            let rule = rule.trim();
            if rule == "icmp" {
                list.icmp = true;
                continue;
            }
            let (proto, ports) = rule.split_once(':').ok_or_else(|| {
                format!("{rule:?}: expected tcp:PORTS, udp:PORTS or icmp (e.g. tcp:80,443/udp:53)")
            })?;
            let into = match proto {
                "tcp" => &mut list.tcp,
                "udp" => &mut list.udp,
                other => {
                    return Err(format!(
                        "{other:?}: expected tcp, udp or icmp (e.g. tcp:80,443/udp:53)"
                    ))
                }
            };
            for p in ports.split(',') {
                let p = p.trim();
                let port = |x: &str| {
                    x.parse::<u16>()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| format!("{x:?}: expected a port 1-65535 in {rule:?}"))
                };
                let r = match p.split_once('-') {
                    Some((a, b)) => {
                        let (a, b) = (port(a)?, port(b)?);
                        if a > b {
                            return Err(format!("{p:?}: an empty port range in {rule:?}"));
                        }
                        a..=b
                    }
                    None => {
                        let a = port(p)?;
                        a..=a
                    }
                };
                into.push(r);
            }
        }
        Ok(list)
    }

    /// Checks an inner IPv6 packet: the protocol after the extension headers, then as
    /// [`check`](Self::check).
    pub fn check6(&self, inner: &[u8]) -> Result<(), PortDrop> {
        let p = Ipv6Packet::new_checked(inner).map_err(|_| PortDrop::Protocol)?;
        let chain = ipv6_ext::walk(&p).map_err(|_| PortDrop::Protocol)?;
        let ranges = match chain.upper {
            IpProtocol::TCP => &self.tcp,
            IpProtocol::UDP => &self.udp,
            IpProtocol::ICMPV6 => {
                return match p.packet().get(chain.upper_offset) {
                    Some(t) if *t < 128 => Ok(()),
                    _ if self.icmp => Ok(()),
                    _ => Err(PortDrop::Protocol),
                };
            }
            _ => return Err(PortDrop::Protocol),
        };
        if ranges.is_empty() {
            return Err(PortDrop::Protocol);
        }
        if chain.fragment.is_some_and(|f| !f.is_first()) {
            return Ok(());
        }
        let at = chain.upper_offset;
        let Some(b) = p.packet().get(at + 2..at + 4) else {
            return Err(PortDrop::Port);
        };
        let port = u16::from_be_bytes([b[0], b[1]]);
        if ranges.iter().any(|r| r.contains(&port)) {
            Ok(())
        } else {
            Err(PortDrop::Port)
        }
    }

    /// Checks an inner IPv4 packet (already validated as such).
    pub fn check(&self, inner: &[u8]) -> Result<(), PortDrop> {
        let proto = inner.get(9).copied().unwrap_or(0);
        let ihl = usize::from(inner.first().map_or(0, |b| b & 0x0f)) * 4;
        let frag_offset = inner
            .get(6..8)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]) & 0x1fff);
        let ranges = match proto {
            6 => &self.tcp,
            17 => &self.udp,
            1 => {
                let ty = inner.get(ihl).copied();
                return match ty {
                    Some(3 | 4 | 11 | 12) => Ok(()),
                    _ if self.icmp => Ok(()),
                    _ => Err(PortDrop::Protocol),
                };
            }
            _ => return Err(PortDrop::Protocol),
        };
        if ranges.is_empty() {
            return Err(PortDrop::Protocol);
        }
        if frag_offset != 0 {
            return Ok(());
        }
        let Some(b) = inner.get(ihl + 2..ihl + 4) else {
            return Err(PortDrop::Port);
        };
        let port = u16::from_be_bytes([b[0], b[1]]);
        if ranges.iter().any(|r| r.contains(&port)) {
            Ok(())
        } else {
            Err(PortDrop::Port)
        }
    }
}

/// `--vip-ports` of every VIP: their own lists, and the default one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VipPorts {
    per_vip: Vec<(IpAddr, PortList)>,
    default: Option<PortList>,
}

impl VipPorts {
    /// From the `--vip-ports` arguments (`[VIP=]RULES`); a VIP named twice, or two defaults,
    /// is an error.
    pub fn parse(args: &[String]) -> Result<VipPorts, String> {
        let mut out = VipPorts::default();
        for a in args {
            match a.split_once('=') {
                Some((vip, rules)) => {
                    let bare = vip.trim();
                    let bare = bare
                        .strip_prefix('[')
                        .and_then(|v| v.strip_suffix(']'))
                        .unwrap_or(bare);
                    let vip: IpAddr = bare.parse().map_err(|_| {
                        format!("--vip-ports {a:?}: {vip:?} is not an IP address (10.0.0.1 or [2001:db8::1])")
                    })?;
                    if out.per_vip.iter().any(|(v, _)| *v == vip) {
                        return Err(format!("--vip-ports: {vip} is given twice"));
                    }
                    let list =
                        PortList::parse(rules).map_err(|e| format!("--vip-ports {a:?}: {e}"))?;
                    out.per_vip.push((vip, list));
                }
                None => {
                    if out.default.is_some() {
                        return Err(
                            "--vip-ports: two lists without VIP= (the default is given twice)"
                                .into(),
                        );
                    }
                    out.default =
                        Some(PortList::parse(a).map_err(|e| format!("--vip-ports {a:?}: {e}"))?);
                }
            }
        }
        Ok(out)
    }

    /// Whether no VIP has a list (every packet to a VIP passes).
    pub fn is_empty(&self) -> bool {
        self.per_vip.is_empty() && self.default.is_none()
    }

    /// The VIPs named that are not among `vips`.
    pub fn unknown_vips<'a, A: Copy + Into<IpAddr>>(
        &'a self,
        vips: &'a [A],
    ) -> impl Iterator<Item = IpAddr> + 'a {
        self.per_vip
            .iter()
            .map(|(v, _)| *v)
            .filter(move |v| !vips.iter().any(|&a| a.into() == *v))
    }

    /// Checks an inner packet to `vip` (IPv4 or IPv6, as `vip` is).
    #[inline]
    pub fn check(&self, vip: impl Into<IpAddr>, inner: &[u8]) -> Result<(), PortDrop> {
        let vip = vip.into();
        let list = self
            .per_vip
            .iter()
            .find(|(v, _)| *v == vip)
            .map(|(_, l)| l)
            .or(self.default.as_ref());
        match (list, vip) {
            (Some(l), IpAddr::V4(_)) => l.check(inner),
            (Some(l), IpAddr::V6(_)) => l.check6(inner),
            (None, _) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::{tcp_packet, udp_packet};
    use std::net::Ipv4Addr;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
    const OTHER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 101);

    fn tcp(port: u16) -> Vec<u8> {
        tcp_packet(CLIENT, 40000, VIP, port, 0x02, 0)
    }

    #[test]
    fn lists_parse_and_bad_ones_are_named() {
        let l = PortList::parse("tcp:80,443,8000-8099/udp:53/icmp").unwrap();
        assert_eq!(l.tcp, vec![80..=80, 443..=443, 8000..=8099]);
        assert_eq!(l.udp, vec![53..=53]);
        assert!(l.icmp);
        for bad in [
            "",
            "tcp",
            "tcp:",
            "tcp:0",
            "tcp:70000",
            "sctp:1",
            "tcp:9-8",
            "tcp:80;udp:53",
        ] {
            assert!(PortList::parse(bad).is_err(), "{bad}");
        }
        let v = VipPorts::parse(&["10.0.0.100=tcp:80".into(), "udp:53".into()]).unwrap();
        assert_eq!(v.unknown_vips(&[VIP]).count(), 0);
        assert_eq!(
            v.unknown_vips(&[OTHER]).collect::<Vec<_>>(),
            vec![IpAddr::V4(VIP)]
        );
        assert!(
            VipPorts::parse(&["10.0.0.100=tcp:80".into(), "10.0.0.100=tcp:81".into()]).is_err()
        );
        assert!(VipPorts::parse(&["tcp:80".into(), "tcp:81".into()]).is_err());
        assert!(VipPorts::parse(&["10.0.0=tcp:80".into()]).is_err());
        assert!(VipPorts::parse(&[]).unwrap().is_empty());
    }

    #[test]
    fn only_the_listed_ports_and_protocols_pass() {
        let v = VipPorts::parse(&["10.0.0.100=tcp:80,443".into()]).unwrap();
        assert_eq!(v.check(VIP, &tcp(80)), Ok(()));
        assert_eq!(v.check(VIP, &tcp(443)), Ok(()));
        assert_eq!(v.check(VIP, &tcp(22)), Err(PortDrop::Port));
        let udp = udp_packet(CLIENT, 40000, VIP, 53, 10);
        assert_eq!(v.check(VIP, &udp), Err(PortDrop::Protocol));
        // Another VIP without a list (and no default): anything.
        assert_eq!(v.check(OTHER, &tcp(22)), Ok(()));
        // A default list applies to VIPs without their own.
        let v = VipPorts::parse(&["udp:53".into(), "10.0.0.100=tcp:80".into()]).unwrap();
        assert_eq!(v.check(OTHER, &udp_packet(CLIENT, 1, OTHER, 53, 4)), Ok(()));
        assert_eq!(v.check(OTHER, &tcp(80)), Err(PortDrop::Protocol));
        assert_eq!(v.check(VIP, &tcp(80)), Ok(()));
        // Other protocols: dropped; a truncated header: refused.
        let mut gre = tcp(80);
        gre[9] = 47;
        assert_eq!(v.check(VIP, &gre), Err(PortDrop::Protocol));
        assert_eq!(v.check(VIP, &tcp(80)[..21]), Err(PortDrop::Port));
    }

    #[test]
    fn icmp_errors_pass_echo_needs_icmp_and_later_fragments_follow_the_protocol() {
        let v = VipPorts::parse(&["tcp:80".into()]).unwrap();
        let mut icmp = tcp(80);
        icmp[9] = 1;
        icmp[20] = 3; // destination unreachable (e.g. fragmentation needed)
        assert_eq!(v.check(VIP, &icmp), Ok(()));
        icmp[20] = 8; // echo request
        assert_eq!(v.check(VIP, &icmp), Err(PortDrop::Protocol));
        let v2 = VipPorts::parse(&["tcp:80/icmp".into()]).unwrap();
        assert_eq!(v2.check(VIP, &icmp), Ok(()));
        // A later fragment has no ports: its protocol's rule decides.
        let mut frag = tcp(22);
        frag[6] = 0x00;
        frag[7] = 0x10;
        assert_eq!(v.check(VIP, &frag), Ok(()));
        frag[9] = 17;
        assert_eq!(v.check(VIP, &frag), Err(PortDrop::Protocol));
    }

    #[test]
    fn ipv6_vips_take_the_same_rules_after_the_extension_headers() {
        use crate::wire::ipv6::Ipv6Repr;
        use std::net::Ipv6Addr;
        let vip: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let v = VipPorts::parse(&["[2001:db8::1]=tcp:80".into()]).unwrap();
        assert_eq!(v.unknown_vips(&[IpAddr::V6(vip)]).count(), 0);
        assert!(VipPorts::parse(&["2001:db8::1=udp:53".into()]).is_ok());
        assert!(VipPorts::parse(&["[2001:db8::g]=udp:53".into()]).is_err());
        // IPv6 + a Destination Options header + TCP to `port`; or ICMPv6 of `ty`.
        let pkt = |upper: u8, b2: u8, b3: u8| {
            let mut p = vec![0u8; 40 + 8 + 20];
            Ipv6Repr {
                src: "2001:db8:9::7".parse().unwrap(),
                dst: vip,
                next_header: IpProtocol::IPV6_OPTS,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
                payload_len: 28,
            }
            .emit(&mut p)
            .unwrap();
            p[40] = upper;
            p[48] = b2;
            p[50] = b2;
            p[51] = b3;
            p
        };
        assert_eq!(v.check(vip, &pkt(IpProtocol::TCP, 0, 80)), Ok(()));
        assert_eq!(
            v.check(vip, &pkt(IpProtocol::TCP, 0, 22)),
            Err(PortDrop::Port)
        );
        assert_eq!(
            v.check(vip, &pkt(IpProtocol::UDP, 0, 80)),
            Err(PortDrop::Protocol)
        );
        // ICMPv6: Packet Too Big (2) passes, echo request (128) only with icmp.
        assert_eq!(v.check(vip, &pkt(IpProtocol::ICMPV6, 2, 0)), Ok(()));
        assert_eq!(
            v.check(vip, &pkt(IpProtocol::ICMPV6, 128, 0)),
            Err(PortDrop::Protocol)
        );
        // A malformed chain: refused.
        let mut bad = pkt(IpProtocol::TCP, 0, 80);
        bad[41] = 200;
        assert_eq!(v.check(vip, &bad), Err(PortDrop::Protocol));
    }
}
