//! DR mode (`-g`, ipvsadm's "Route"): the client's IP packet goes to the real server unchanged,
//! in an Ethernet frame addressed to the real server's MAC on a LAN both share.
//!
//! This is the sans-IO half. `route` decides one packet for a DR real server: its Ethernet
//! destination comes from the server's [`NeighSlot`] (filled by the driver's resolver, see
//! `dr_io`), the MTU check is against that LAN interface, and the packet itself is not touched
//! (no TTL decrement, as IPVS's `ip_vs_dr_xmit`). What can happen:
//!
//! - the slot is empty (MAC not known yet, or the server is no longer on-link):
//!   [`DropReason::NeighbourUnresolved`]; the resolver is already asking the kernel;
//! - the packet fits the interface MTU: [`Verdict::Ether`];
//! - it does not fit and has DF set: an ICMP fragmentation-needed reply with the LAN MTU (the
//!   same path as TUN mode);
//! - it does not fit and DF is clear: [`Verdict::Ether`] with `frag_mtu` set, and the driver
//!   sends it as IPv4 fragments (what the kernel does for IPVS); a packet that cannot be split
//!   that way (IP options, already a fragment, too many pieces) is dropped as
//!   [`DropReason::TooManyFragments`].
//!
//! `route6` does the same for an IPv6 packet to an IPv6 real server, except that IPv6 is never
//! fragmented on the way: a packet bigger than the LAN's MTU is answered with an ICMPv6 Packet
//! Too Big advertising that MTU, from the VIP, whatever its flags. (IPv6 GSO super-packets are
//! cut before the core sees them, so every packet here is one packet on the wire.)

use std::num::NonZeroU16;

use super::context::Ctx;
use crate::director::packet::v6::Parsed6;
use crate::director::packet::verdict::{DropReason, Ether, Verdict, MAX_FRAGMENTS};
use crate::director::packet::Parsed;
use crate::director::stats::{EncapError, EncapKind};
use crate::director::table::Dest;
use crate::encap;

pub use crate::director::shared::neigh::{NeighEntry, NeighSlot};

/// Decides a packet of `len` bytes at the start of `buf` (IPv4 header of `ihl` bytes) for the
/// DR real server `dest`; see the module documentation. Counts per-server traffic, fragmented
/// packets and `too_big` drops the way TUN mode does.
pub fn route(cx: &mut Ctx<'_>, dest: &Dest, buf: &mut [u8], p: &Parsed) -> Verdict {
    let counters = &mut *cx.counters;
    let (len, ihl, dont_frag) = (p.len, p.ihl, p.dont_frag);
    let Some(link) = dest.state.neigh.get() else {
        return Verdict::Drop(DropReason::NeighbourUnresolved);
    };
    let mut frag_mtu = 0;
    // A GSO super-packet is checked by its largest segment.
    if p.mtu_len > usize::from(link.mtu) {
        if dont_frag {
            counters
                .encap_errors
                .count(EncapKind::Dr, EncapError::TooBig, 1);
            return cx.frag_needed(buf, len, link.mtu);
        }
        // The packet's own header is the "outer" header of `encap::fragment`; it refuses
        // headers with options and packets that already are fragments.
        let (Some(header), Some(rest)) = (buf.get(..ihl), len.checked_sub(ihl)) else {
            return Verdict::Drop(DropReason::MalformedIp);
        };
        match encap::fragment(header, rest, link.mtu, NonZeroU16::MIN) {
            Ok(frags) if frags.len() <= MAX_FRAGMENTS => {}
            _ => {
                let segs = u64::from(p.segs);
                counters
                    .encap_errors
                    .count(EncapKind::Dr, EncapError::TooManyFragments, segs);
                return Verdict::Drop(DropReason::TooManyFragments);
            }
        }
        counters.fragmented += 1;
        frag_mtu = link.mtu;
    }
    let per_dest = counters.dest(dest.id);
    per_dest.in_pkts += u64::from(p.segs);
    per_dest.in_bytes += len as u64;
    Verdict::Ether(Ether {
        ifindex: link.ifindex,
        dst_mac: link.mac,
        len,
        frag_mtu,
    })
}

/// Decides the IPv6 packet (`p.len` bytes at the start of `buf`) for the DR real server
/// `dest`, an IPv6 host on a LAN the director shares; see the module documentation. Counts
/// per-server traffic and `too_big` drops as [`route`] does.
pub fn route6(cx: &mut Ctx<'_>, dest: &Dest, buf: &mut [u8], p: &Parsed6) -> Verdict {
    let Some(link) = dest.state.neigh.get() else {
        return Verdict::Drop(DropReason::NeighbourUnresolved);
    };
    if p.len > usize::from(link.mtu) {
        cx.counters
            .encap_errors
            .count(EncapKind::Dr, EncapError::TooBig, 1);
        return cx.packet_too_big(buf, p.len, link.mtu, p.dst);
    }
    let per_dest = cx.counters.dest(dest.id);
    per_dest.in_pkts += 1;
    per_dest.in_bytes += p.len as u64;
    Verdict::Ether(Ether {
        ifindex: link.ifindex,
        dst_mac: link.mac,
        len: p.len,
        frag_mtu: 0,
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use super::*;
    use crate::director::conn::Timeouts;
    use crate::director::{Director, DirectorConfig, Registry, Shared, Snapshot};
    use crate::encap::TunnelType;
    use crate::model::v4::{DestConfig, ServiceConfig, ServiceKey, ServiceSet};
    use crate::model::{Forward, Protocol, SchedulerKind};
    use crate::time::Instant;
    use crate::wire::testing::{tcp_packet, udp_packet};
    use crate::wire::Ipv4Packet;

    const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 150, 100);
    const RS1: Ipv4Addr = Ipv4Addr::new(192, 168, 150, 12);
    const RS2: Ipv4Addr = Ipv4Addr::new(192, 168, 150, 13);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 150, 2);
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    const MAC1: [u8; 6] = [0x02, 0, 0, 0, 0, 0x12];
    const MAC2: [u8; 6] = [0x02, 0, 0, 0, 0, 0x13];

    fn dest(addr: Ipv4Addr, forward: Forward) -> DestConfig {
        DestConfig {
            addr,
            port: 80,
            weight: 1,
            forward,
            u_threshold: 0,
            l_threshold: 0,
        }
    }

    fn service(proto: Protocol, dests: Vec<DestConfig>) -> ServiceSet {
        ServiceSet {
            services: vec![ServiceConfig {
                key: ServiceKey {
                    vip: VIP,
                    port: 80,
                    proto,
                },
                scheduler: SchedulerKind::Rr,
                persistence: None,
                mss_clamp: None,
                dests,
                policy: Default::default(),
            }],
        }
    }

    fn director(set: &ServiceSet) -> (Arc<Shared>, Director) {
        let snap = Registry::new().build(set, &Timeouts::default()).unwrap();
        let shared = Arc::new(Shared::new(snap));
        let d = Director::new(shared.clone(), DirectorConfig::default());
        (shared, d)
    }

    /// Fills the neighbour slot of real server `rip` as the resolver would.
    fn resolve(snap: &Snapshot, rip: Ipv4Addr, entry: Option<NeighEntry>) {
        for svc in snap.services() {
            for id in &svc.dest_ids {
                let d = snap.dest(*id).unwrap();
                if d.config.addr == rip {
                    d.state.neigh.set(entry);
                }
            }
        }
    }

    fn entry(mac: [u8; 6], mtu: u16) -> Option<NeighEntry> {
        Some(NeighEntry {
            ifindex: 4,
            mac,
            mtu,
        })
    }

    #[test]
    fn the_slot_round_trips_entries_and_clears() {
        let slot = NeighSlot::default();
        assert_eq!(slot.get(), None);
        let e = NeighEntry {
            ifindex: 70000,
            mac: [0xfe, 1, 2, 3, 4, 0xff],
            mtu: 9000,
        };
        slot.set(Some(e));
        assert_eq!(slot.get(), Some(e));
        slot.set(None);
        assert_eq!(slot.get(), None);
        // Interface index 0 means "none".
        slot.set(Some(NeighEntry { ifindex: 0, ..e }));
        assert_eq!(slot.get(), None);
    }

    #[test]
    fn readers_never_see_a_torn_entry() {
        let slot = Arc::new(NeighSlot::default());
        let a = NeighEntry {
            ifindex: 1,
            mac: [1; 6],
            mtu: 1111,
        };
        let b = NeighEntry {
            ifindex: 2,
            mac: [2; 6],
            mtu: 2222,
        };
        let writer = {
            let slot = slot.clone();
            std::thread::spawn(move || {
                for i in 0..20_000 {
                    slot.set(Some(if i % 2 == 0 { a } else { b }));
                }
            })
        };
        for _ in 0..20_000 {
            if let Some(e) = slot.get() {
                assert!(e == a || e == b, "torn entry {e:?}");
            }
        }
        writer.join().unwrap();
    }

    #[test]
    fn a_dr_server_gets_the_packet_unchanged_in_a_frame_to_its_mac() {
        let set = service(Protocol::Tcp, vec![dest(RS1, Forward::Dr)]);
        let (shared, mut d) = director(&set);
        resolve(&shared.snapshot(), RS1, entry(MAC1, 1500));
        let now = Instant::from_secs(1);
        let mut syn = tcp_packet(CLIENT, 40000, VIP, 80, SYN, 0);
        let original = syn.clone();
        let v = d.handle_packet(now, &mut syn);
        assert_eq!(
            v,
            Verdict::Ether(Ether {
                ifindex: 4,
                dst_mac: MAC1,
                len: original.len(),
                frag_mtu: 0,
            })
        );
        // Not a byte changed: same TTL, same checksum, same addresses.
        assert_eq!(syn, original);
        // The flow is tracked as in TUN mode (client direction only): the ACK follows.
        let mut ack = tcp_packet(CLIENT, 40000, VIP, 80, ACK, 1);
        assert!(matches!(d.handle_packet(now, &mut ack), Verdict::Ether(_)));
        assert_eq!(d.conns().len(), 1);
        let c = d.counters();
        assert_eq!((c.tx_packets, c.conns_created), (2, 1));
        let id = shared.snapshot().services()[0].dest_ids[0];
        let per = c.per_dest[usize::from(id.slot())];
        assert_eq!(per.in_pkts, 2);
        assert_eq!(per.in_bytes, (original.len() + ack.len()) as u64);
    }

    #[test]
    fn an_unresolved_server_drops_and_counts_until_its_mac_is_known() {
        let set = service(Protocol::Tcp, vec![dest(RS1, Forward::Dr)]);
        let (shared, mut d) = director(&set);
        let now = Instant::from_secs(1);
        let mut syn = tcp_packet(CLIENT, 40001, VIP, 80, SYN, 0);
        assert_eq!(
            d.handle_packet(now, &mut syn),
            Verdict::Drop(DropReason::NeighbourUnresolved)
        );
        assert_eq!(d.counters().dropped(DropReason::NeighbourUnresolved), 1);
        // The client retransmits the SYN once the resolver has filled the slot.
        resolve(&shared.snapshot(), RS1, entry(MAC1, 1500));
        let mut syn = tcp_packet(CLIENT, 40001, VIP, 80, SYN, 0);
        assert!(matches!(d.handle_packet(now, &mut syn), Verdict::Ether(_)));
        // The resolver clears it (the server left the LAN): drops again.
        resolve(&shared.snapshot(), RS1, None);
        let mut ack = tcp_packet(CLIENT, 40001, VIP, 80, ACK, 1);
        assert_eq!(
            d.handle_packet(now, &mut ack),
            Verdict::Drop(DropReason::NeighbourUnresolved)
        );
    }

    #[test]
    fn a_mixed_service_gives_both_verdict_kinds() {
        let set = service(
            Protocol::Tcp,
            vec![
                dest(RS1, Forward::Dr),
                dest(RS2, Forward::tunnel(TunnelType::Ipip)),
            ],
        );
        let (shared, mut d) = director(&set);
        resolve(&shared.snapshot(), RS1, entry(MAC1, 1500));
        let now = Instant::from_secs(1);
        let (mut frames, mut tunnels) = (0, 0);
        for port in 0..10u16 {
            let mut syn = tcp_packet(CLIENT, 41000 + port, VIP, 80, SYN, 0);
            match d.handle_packet(now, &mut syn) {
                Verdict::Ether(e) => {
                    assert_eq!((e.ifindex, e.dst_mac), (4, MAC1));
                    frames += 1;
                }
                Verdict::Encap(e) => {
                    assert_eq!(e.dst, RS2);
                    tunnels += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((frames, tunnels), (5, 5));
    }

    #[test]
    fn a_packet_too_big_for_the_lan_gets_frag_needed_with_df_else_fragments() {
        let set = service(Protocol::Udp, vec![dest(RS1, Forward::Dr)]);
        let (shared, mut d) = director(&set);
        resolve(&shared.snapshot(), RS1, entry(MAC2, 1400));
        let now = Instant::from_secs(1);

        // 1428 bytes with DF: ICMP fragmentation needed, MTU 1400, back to the client.
        let mut big = udp_packet(CLIENT, 5000, VIP, 80, 1400);
        let Verdict::Reply { len: reply } = d.handle_packet(now, &mut big) else {
            panic!("expected an ICMP reply");
        };
        let icmp = Ipv4Packet::new_checked(&big[..reply]).unwrap();
        assert_eq!(icmp.dst_addr(), CLIENT);
        assert_eq!(icmp.protocol(), 1);
        let payload = icmp.payload();
        assert_eq!((payload[0], payload[1]), (3, 4));
        assert_eq!(u16::from_be_bytes([payload[6], payload[7]]), 1400);
        assert_eq!(d.counters().dropped(DropReason::TooBig), 1);
        let errors = &d.counters().encap_errors;
        assert_eq!(errors.get(EncapKind::Dr, EncapError::TooBig), 1);

        // The same without DF: sent, as fragments of at most 1400 bytes.
        let mut big = udp_packet(CLIENT, 5001, VIP, 80, 1400);
        big[6] &= !0x40;
        Ipv4Packet::new_unchecked(&mut big[..]).fill_checksum();
        let len = big.len();
        match d.handle_packet(now, &mut big) {
            Verdict::Ether(e) => assert_eq!((e.len, e.frag_mtu), (len, 1400)),
            other => panic!("expected a fragmented frame, got {other:?}"),
        }
        assert_eq!(d.counters().fragmented, 1);

        // A packet that fits is sent whole.
        let mut small = udp_packet(CLIENT, 5002, VIP, 80, 100);
        match d.handle_packet(now, &mut small) {
            Verdict::Ether(e) => assert_eq!(e.frag_mtu, 0),
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}
