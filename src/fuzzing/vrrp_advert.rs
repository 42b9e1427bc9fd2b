use std::net::Ipv4Addr;
use std::time::Duration;

use crate::time::Instant;
use crate::vrrp::config::{InstanceConfig, Version, VirtualIp};
use crate::vrrp::machine::{Action, Instance, State};
use crate::vrrp::wire::{self, Advert};

/// Our address in every instance the target builds; seeds send from 192.168.1.14.
const OURS: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 11);

/// The instance the first input byte selects: bit 0 VRRPv3, bit 1 v2 PASS auth "1111",
/// bit 2 unicast peer 192.168.1.14, bit 3 a second VIP, bit 4 priority 255 (owner).
fn config(sel: u8) -> InstanceConfig {
    let mut c = InstanceConfig::new("VI_FUZZ", "eth0", 51);
    if sel & 1 != 0 {
        c.version = Version::V3;
    }
    if sel & 2 != 0 {
        c.auth_pass = Some(*b"1111\0\0\0\0");
    }
    if sel & 4 != 0 {
        c.unicast_peers = vec![Ipv4Addr::new(192, 168, 1, 14)];
    }
    let vip = |last| VirtualIp {
        addr: Ipv4Addr::new(192, 168, 1, last),
        prefix: 32,
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
    let _ = wire::vrid_of(packet);
    if let Ok((info, payload)) = wire::check_ip_any_ttl(packet) {
        if let Ok(a) = Advert::new_checked(payload) {
            check_view(&a, info.src, info.dst);
        }
    }

    let cfg = config(sel);
    for master in [false, true] {
        let mut inst = Instance::new(&cfg, OURS);
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
                let (info, payload) = wire::check_ip_any_ttl(packet).expect("accepted: IPv4");
                let a = Advert::new_checked(payload).expect("accepted: an advert");
                assert_eq!(a.vrid(), cfg.vrid);
                assert_eq!(a.version(), cfg.version);
                assert_ne!(info.src, OURS);
                let unicast = !cfg.unicast_peers.is_empty();
                assert!(
                    a.verify_checksum(info.src, info.dst)
                        || (unicast && a.verify_checksum(info.src, wire::MULTICAST_GROUP))
                );
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
                let a = Advert::new_checked(&buf).expect("we build valid adverts");
                assert!(a.verify_checksum(inst.src(), dst));
                assert_eq!(a.priority(), priority);
            }
        }
    }
}

fn check_view(a: &Advert<'_>, src: Ipv4Addr, dst: Ipv4Addr) {
    let count = a.count() as usize;
    assert_eq!(a.as_bytes().len(), wire::advert_len(a.version(), count));
    assert_eq!(a.addrs().len(), count);
    let addrs: Vec<Ipv4Addr> = a.addrs().collect();
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
