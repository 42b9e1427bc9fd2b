use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::time::Instant;
use crate::vrrp::config::{InstanceConfig, Version, VirtualIp};
use crate::vrrp::machine::{Action, Instance, State};
use crate::vrrp::wire::{self, Advert, Family};

/// Our address in every IPv4 instance the target builds; seeds send from 192.168.1.14.
const OURS: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 11);
/// Our address in every IPv6 instance; seeds send from fe80::14.
const OURS6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x11);
/// The IPv6 peer's address.
pub const PEER6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x14);

/// The instance the first input byte selects: bit 0 VRRPv3, bit 1 v2 PASS auth "1111",
/// bit 2 unicast peer 192.168.1.14, bit 3 a second VIP, bit 4 priority 255 (owner), bit 5
/// IPv6 (VIPs 2001:db8::100 and ::101, peer fe80::14, always v3).
fn config(sel: u8) -> InstanceConfig {
    let v6 = sel & 32 != 0;
    let mut c = InstanceConfig::new("VI_FUZZ", "eth0", 51);
    if sel & 1 != 0 {
        c.version = Version::V3;
    }
    if sel & 2 != 0 {
        c.auth_pass = Some(*b"1111\0\0\0\0");
    }
    if sel & 4 != 0 {
        c.unicast_peers = vec![if v6 {
            IpAddr::V6(PEER6)
        } else {
            IpAddr::V4(Ipv4Addr::new(192, 168, 1, 14))
        }];
    }
    let vip = |last: u8| VirtualIp {
        addr: if v6 {
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                0,
                0,
                0,
                0,
                0x100 + last as u16 - 100,
            ))
        } else {
            IpAddr::V4(Ipv4Addr::new(192, 168, 1, last))
        },
        prefix: if v6 { 128 } else { 32 },
        dev: None,
        label: None,
    };
    c.vips = vec![vip(100)];
    if sel & 8 != 0 {
        c.vips.push(vip(101));
    }
    if sel & 16 != 0 {
        c.priority = 255;
    }
    if v6 {
        c.version = Version::V3;
    }
    c
}

/// One received packet: `check_ip`, `Advert::new_checked` and every accessor, a rebuild that
/// must give the same bytes when the advert is one `build` can produce, then
/// `Instance::handle_advert` in BACKUP and in MASTER, whose accepted adverts must pass the
/// wire checks, and whose timers and actions must stay consistent.
pub fn vrrp_advert(data: &[u8]) {
    let Some((&sel, packet)) = data.split_first() else {
        return;
    };

    if let Ok((info, payload)) = wire::check_ip(packet) {
        assert_eq!(info.ttl, wire::TTL);
        assert!(packet.ends_with(payload));
        assert_eq!(wire::check_ip_any_ttl(packet), Ok((info, payload)));
    }
    if let Ok((info, payload)) = wire::check_ipv6(packet) {
        assert_eq!(info.ttl, wire::TTL);
        assert!(packet.ends_with(payload));
        assert_eq!(wire::check_ipv6_any_hop(packet), Ok((info, payload)));
    }
    let _ = wire::vrid_of(packet);
    if let Ok((info, payload)) = wire::check_any(packet) {
        if let Ok(a) = Advert::new_checked_in(payload, Family::of(info.src)) {
            check_view(&a, info.src, info.dst);
        }
    }

    let cfg = config(sel);
    let ours = if cfg.is_ipv6() {
        IpAddr::V6(OURS6)
    } else {
        IpAddr::V4(OURS)
    };
    for master in [false, true] {
        let mut inst = Instance::new(&cfg, ours);
        let t0 = Instant::from_secs(1);
        inst.start(t0);
        if master {
            inst.handle_timeout(Instant::from_secs(100));
        }
        drain(&mut inst);
        let before = inst.state();
        let now = Instant::from_secs(101);
        match inst.handle_advert(now, packet) {
            Ok(()) => {
                let (info, payload) = wire::check_any(packet).expect("accepted: IP");
                let family = Family::of(ours);
                assert_eq!(Family::of(info.src), family);
                let a = Advert::new_checked_in(payload, family).expect("accepted: an advert");
                assert_eq!(a.vrid(), cfg.vrid);
                assert_eq!(a.version(), cfg.version);
                assert_ne!(info.src, ours);
                let unicast = !cfg.unicast_peers.is_empty();
                assert!(
                    a.verify_checksum(info.src, info.dst)
                        || (unicast && a.verify_checksum(info.src, family.group()))
                );
                if let (false, IpAddr::V6(s)) = (unicast, info.src) {
                    assert!(s.is_unicast_link_local() && info.ttl == wire::TTL);
                }
                assert_eq!(a.count() as usize, cfg.vips.len());
            }
            Err(r) => {
                assert!(!r.as_str().is_empty());
                assert_eq!(inst.state(), before, "a refused advert changes nothing");
            }
        }
        drain(&mut inst);
        // Timers always lie ahead or are due; running them never panics.
        if let Some(t) = inst.poll_timeout() {
            inst.handle_timeout(t);
            drain(&mut inst);
        }
        inst.shutdown(Instant::from_secs(200));
        drain(&mut inst);
        assert_eq!(inst.state(), State::Init);
    }
}

fn drain(inst: &mut Instance) {
    let mut buf = Vec::new();
    let mut n = 0;
    while let Some(action) = inst.poll_action() {
        n += 1;
        assert!(n < 64, "runaway actions");
        if let Action::SendAdvert { priority } = action {
            for &dst in inst.destinations() {
                inst.build_advert(priority, dst, &mut buf);
                let family = Family::of(inst.src());
                let a = Advert::new_checked_in(&buf, family).expect("we build valid adverts");
                assert!(a.verify_checksum(inst.src(), dst));
                assert_eq!(a.priority(), priority);
            }
        }
    }
}

fn check_view(a: &Advert<'_>, src: IpAddr, dst: IpAddr) {
    let count = a.count() as usize;
    assert_eq!(
        a.as_bytes().len(),
        wire::advert_len(a.version(), a.family(), count)
    );
    assert_eq!(a.addrs().len(), count);
    let addrs: Vec<IpAddr> = a.addrs().collect();
    assert!(addrs.iter().all(|x| Family::of(*x) == a.family()));
    let _ = (a.kind(), a.priority(), a.checksum(), a.interval());
    let auth = a.auth_data().copied();
    assert_eq!(auth.is_some(), a.version() == Version::V2);

    // An advert `build` can produce must come out byte for byte.
    let raw_int = a.interval_raw();
    let reserved_clear = a.version() == Version::V2 || a.as_bytes()[4] & 0xf0 == 0;
    let auth_arg = match (a.auth_type(), auth) {
        (wire::AUTH_NONE, Some(d)) if d == [0; 8] => Some(None),
        (wire::AUTH_NONE, None) => Some(None),
        (wire::AUTH_PASS, Some(d)) => Some(Some(d)),
        _ => None,
    };
    if let Some(auth_arg) = auth_arg {
        if a.kind() == wire::TYPE_ADVERT
            && raw_int != 0
            && reserved_clear
            && a.verify_checksum(src, dst)
        {
            let interval = match a.version() {
                Version::V2 => Duration::from_secs(raw_int as u64),
                Version::V3 => Duration::from_millis(raw_int as u64 * 10),
            };
            let mut out = Vec::new();
            wire::build(
                a.version(),
                a.vrid(),
                a.priority(),
                interval,
                &addrs,
                auth_arg.as_ref(),
                src,
                dst,
                &mut out,
            );
            assert_eq!(out, a.as_bytes(), "rebuilt advert differs");
        }
    }
}
