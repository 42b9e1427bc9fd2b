//! The io layer against a real kernel, inside a private network namespace (root only): DR and
//! TUN-mode frames on the `AF_PACKET` socket, the on-link check and the kernel resolving a
//! neighbour on request. Run with `cargo test --lib -- --ignored root_tests`.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use super::resolver::check_new_dr_servers;
use super::resolver::on_link;
use super::tunnel_link::TunnelLink;
use super::tx::frames::FrameQueue;
use crate::director::stats::{BatchHistogram, EncapKind};
use crate::director::{Encap, Ether};
use crate::encap::{self, IdentSeq, MAX_OUTER_HEADER};
use crate::model::v4::{DestConfig, ServiceConfig, ServiceKey, ServiceSet};
use crate::model::{Forward, Protocol, SchedulerKind};
use crate::sys::neigh::{NeighEvents, Netlink};
use crate::sys::packet::LinkDst;
use crate::sys::testing::{in_new_netns, ip, udp_packet};
use crate::sys::PacketMeta;
use crate::sys::{poll_readable, PacketBatch};

/// The index and MAC of an interface of this thread's namespace, from `ip -o link show`
/// (`/sys` shows the namespace it was mounted in, not this one).
fn link(name: &str) -> (u32, [u8; 6]) {
    let out = ip(&["-o", "link", "show", "dev", name]);
    let ifindex = out.split(':').next().unwrap().trim().parse().unwrap();
    let mac = out
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap();
    let mac: Vec<u8> = mac
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    (ifindex, mac.try_into().unwrap())
}

/// Puts `pkts` into the slots of a batch, as a TUN read would.
fn batch_of(pkts: &[&[u8]]) -> PacketBatch {
    let mut batch = PacketBatch::new(pkts.len(), 2048);
    for (i, p) in pkts.iter().enumerate() {
        batch.slot_mut(i).unwrap()[..p.len()].copy_from_slice(p);
        batch.set_meta(
            i,
            PacketMeta {
                len: p.len(),
                src: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                truncated: false,
            },
        );
    }
    batch.set_filled(pkts.len());
    batch
}

fn dr_set(rip: Ipv4Addr) -> ServiceSet {
    ServiceSet {
        services: vec![ServiceConfig {
            key: ServiceKey {
                vip: Ipv4Addr::new(10, 9, 9, 9),
                port: 80,
                proto: Protocol::Tcp,
            },
            scheduler: SchedulerKind::Rr,
            persistence: None,
            mss_clamp: None,
            dests: vec![DestConfig {
                addr: rip,
                port: 80,
                weight: 1,
                forward: Forward::Dr,
                u_threshold: 0,
                l_threshold: 0,
            }],
            policy: Default::default(),
        }],
    }
}

/// tlbv0 (10.9.3.1/24) and tlbv1 (10.9.3.2/32) are the two ends of one veth pair in the
/// same namespace: a frame sent out of tlbv0 to tlbv1's MAC arrives on tlbv1.
fn veth_pair() -> (u32, [u8; 6]) {
    ip(&[
        "link", "add", "tlbv0", "type", "veth", "peer", "name", "tlbv1",
    ]);
    ip(&["addr", "add", "10.9.3.1/24", "dev", "tlbv0"]);
    ip(&["addr", "add", "10.9.3.2/32", "dev", "tlbv1"]);
    ip(&["link", "set", "tlbv0", "up"]);
    ip(&["link", "set", "tlbv1", "up"]);
    for conf in ["all", "tlbv1"] {
        std::fs::write(format!("/proc/sys/net/ipv4/conf/{conf}/rp_filter"), "0").unwrap();
    }
    (link("tlbv0").0, link("tlbv1").1)
}

#[test]
#[ignore = "needs root (network namespaces)"]
fn frames_reach_the_mac_whole_and_in_fragments() {
    in_new_netns(|| {
        let (ifindex, mac) = veth_pair();
        let sock = UdpSocket::bind("10.9.3.2:7000").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let from = SocketAddrV4::new(Ipv4Addr::new(10, 9, 3, 7), 6000);
        let to = SocketAddrV4::new(Ipv4Addr::new(10, 9, 3, 2), 7000);
        // DF is clear in these packets.
        let small = udp_packet(from, to, b"whole");
        let big = udp_packet(from, to, &[0x5a; 1400]);
        let batch = batch_of(&[&small, &big]);

        let mut q = FrameQueue::new(4).unwrap();
        let mut idents = IdentSeq::new(0, 1);
        let frame = |len, frag_mtu| Ether {
            ifindex,
            dst_mac: mac,
            len,
            frag_mtu,
        };
        assert!(q.queue(&mut idents, 0, &small, &frame(small.len(), 0)));
        assert!(q.queue(&mut idents, 1, &big, &frame(big.len(), 576)));
        assert_eq!(
            q.pending_len(),
            1 + 3,
            "the 1428-byte packet in 3 fragments"
        );
        let mut sizes = BatchHistogram::default();
        assert_eq!(q.flush(&batch, &mut sizes).total(), 0);
        assert_eq!(
            (sizes.count(), sizes.sum),
            (1, 4),
            "one sendmmsg of 4 frames"
        );
        let mut buf = [0u8; 2048];
        let (n, src) = sock.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], src), (&b"whole"[..], from.into()));
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            &[0x5a; 1400][..],
            "reassembled from the fragments"
        );

        // A frame for an interface that does not exist is refused and counted.
        q.clear();
        assert!(q.queue(
            &mut idents,
            0,
            &small,
            &Ether {
                ifindex: 99_999,
                ..frame(small.len(), 0)
            }
        ));
        assert_eq!(q.flush(&batch, &mut sizes).total(), 1);
    });
}

#[test]
#[ignore = "needs root (network namespaces)"]
fn tunnel_frames_arrive_whole_and_in_fragments_with_the_route_source() {
    in_new_netns(|| {
        let (ifindex, mac) = veth_pair();
        let mut rx = crate::sys::raw::RawReceiver::new(4).unwrap();
        let inner_from = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 2), 6000);
        let inner_to = SocketAddrV4::new(Ipv4Addr::new(10, 100, 0, 100), 80);
        // DF is clear in these packets.
        let small = udp_packet(inner_from, inner_to, b"whole");
        let big = udp_packet(inner_from, inner_to, &[0x5a; 1400]);
        let batch = batch_of(&[&small, &big]);
        let encap = |inner: &[u8], frag_mtu| {
            let params = encap::OuterParams {
                src: Ipv4Addr::UNSPECIFIED,
                dst: Ipv4Addr::new(10, 9, 3, 2),
                tunnel: encap::Tunnel::Ipip,
                flow_hash: 0,
            };
            let mut header = [0u8; MAX_OUTER_HEADER];
            let n = encap::build_outer(&params, inner, &mut header).unwrap();
            Encap {
                dst: params.dst,
                header,
                header_len: n as u8,
                len: inner.len(),
                frag_mtu,
                tunnel: params.tunnel,
            }
        };
        let link = TunnelLink {
            to: LinkDst { ifindex, mac },
            src_mac: [0; 6],
            // Not tlbv0's own address: the kernel drops arriving packets from a local source.
            src: Ipv4Addr::new(10, 9, 3, 7),
        };
        let mut q = FrameQueue::new(4).unwrap();
        let mut idents = IdentSeq::new(0, 1);
        assert!(q.queue_encap(&mut idents, 0, &small, &encap(&small, 0), &link));
        assert!(q.queue_encap(&mut idents, 1, &big, &encap(&big, 576), &link));
        assert_eq!(q.pending_len(), 1 + 3, "1448 bytes in 3 fragments");
        assert_eq!(q.flush(&batch, &mut BatchHistogram::default()).total(), 0);
        let mut got = Vec::new();
        let mut rb = PacketBatch::new(4, 2048);
        let deadline = Instant::now() + Duration::from_secs(2);
        while got.len() < 2 && Instant::now() < deadline {
            rx.recv_batch(&mut rb, Some(Duration::from_millis(200)))
                .unwrap();
            got.extend(rb.iter().map(|(p, _)| p.to_vec()));
        }
        assert_eq!(got.len(), 2, "both tunnel packets arrive");
        for (outer, inner) in got.iter().zip([&small, &big]) {
            let s = encap::strip_ip(outer, encap::TunnelType::Ipip, None).unwrap();
            assert_eq!(
                s.outer_src,
                Ipv4Addr::new(10, 9, 3, 7),
                "the source filled in"
            );
            assert_eq!(&outer[s.inner], &inner[..], "reassembled intact");
        }
        assert!(q.gone_interfaces().is_empty());

        // A frame for an interface that is gone is counted and the interface reported.
        q.clear();
        let gone = TunnelLink {
            to: LinkDst {
                ifindex: 99_999,
                mac,
            },
            ..link
        };
        assert!(q.queue_encap(&mut idents, 0, &small, &encap(&small, 0), &gone));
        let lost = q.flush(&batch, &mut BatchHistogram::default());
        let lost: Vec<_> = lost.by_kind().collect();
        assert_eq!(
            lost,
            [(EncapKind::Ipip, 1)],
            "counted as an IPIP error, not DR"
        );
        assert_eq!(q.gone_interfaces(), &[99_999]);
    });
}

#[test]
#[ignore = "needs root (network namespaces)"]
fn routes_decide_on_link_and_the_kernel_resolves_on_request() {
    in_new_netns(|| {
        let (ifindex, _) = veth_pair();
        ip(&["route", "add", "10.8.0.0/24", "via", "10.9.3.9"]);
        let mut nl = Netlink::open().unwrap();
        let on_lan = Ipv4Addr::new(10, 9, 3, 5);
        assert_eq!(on_link(on_lan, nl.route_get(on_lan)).unwrap(), ifindex);
        let far = Ipv4Addr::new(10, 8, 0, 1);
        let err = on_link(far, nl.route_get(far)).unwrap_err().to_string();
        assert!(err.contains("DR cannot cross a router (use -i)"), "{err}");
        let own = Ipv4Addr::new(10, 9, 3, 2);
        assert!(on_link(own, nl.route_get(own)).is_err());
        let nowhere = Ipv4Addr::new(172, 31, 0, 1);
        assert!(on_link(nowhere, nl.route_get(nowhere)).is_err());

        // The control plane's check: the router case is refused, the LAN host accepted.
        let empty = ServiceSet::default();
        let err = check_new_dr_servers(&empty.widen(), &dr_set(far).widen())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not on a directly connected network"), "{err}");
        // An existing server is not checked again (routes may change under it).
        check_new_dr_servers(&dr_set(far).widen(), &dr_set(far).widen()).unwrap();

        // Accepting 10.9.3.5 asked the kernel to resolve it: an entry appears without an
        // address; nobody answers, so after its one probe (a second) it fails, and a
        // notification says so.
        std::fs::write("/proc/sys/net/ipv4/neigh/tlbv0/mcast_solicit", "1").unwrap();
        let mut events = NeighEvents::open().unwrap();
        check_new_dr_servers(&empty.widen(), &dr_set(on_lan).widen()).unwrap();
        let entry = nl
            .neighbours()
            .unwrap()
            .into_iter()
            .find(|n| n.addr == on_lan)
            .expect("an entry for 10.9.3.5");
        assert_eq!((entry.ifindex, entry.mac()), (ifindex, None));
        assert!(entry.wants_resolution());
        let mut named = false;
        let deadline = Instant::now() + Duration::from_secs(8);
        while !named && Instant::now() < deadline {
            poll_readable(
                std::os::fd::AsRawFd::as_raw_fd(&events),
                Some(Duration::from_millis(100)),
            )
            .unwrap();
            assert!(events.drain(|n| named |= n.addr == on_lan).unwrap());
        }
        assert!(named, "no neighbour notification about 10.9.3.5");
    });
}

/// DR over IPv6 against the kernel: an IPv6 packet queued as a DR frame leaves with EtherType
/// 0x86DD (the receiving kernel takes it as IPv6 and delivers it); the resolver's netlink
/// requests work for IPv6 (the on-link check, the neighbour dump, the kernel soliciting an
/// address on request and the notification of its answer).
#[test]
#[ignore = "needs root (network namespaces)"]
fn ipv6_frames_leave_as_ipv6_and_the_kernel_solicits_on_request() {
    use std::net::{Ipv6Addr, SocketAddrV6};
    in_new_netns(|| {
        let (ifindex, mac) = veth_pair();
        ip(&[
            "-6",
            "addr",
            "add",
            "2001:db8:9::1/64",
            "dev",
            "tlbv0",
            "nodad",
        ]);
        ip(&[
            "-6",
            "addr",
            "add",
            "2001:db8:9::2/128",
            "dev",
            "tlbv1",
            "nodad",
        ]);
        let from: Ipv6Addr = "2001:db8:9::7".parse().unwrap();
        let to: Ipv6Addr = "2001:db8:9::2".parse().unwrap();
        let sock = UdpSocket::bind(SocketAddrV6::new(to, 7000, 0, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let pkt = crate::wire::testing::udp6_packet(from, 6000, to, 7000, 100);
        let batch = batch_of(&[&pkt]);
        let mut q = FrameQueue::new(4).unwrap();
        let mut idents = IdentSeq::new(0, 1);
        let frame = Ether {
            ifindex,
            dst_mac: mac,
            len: pkt.len(),
            frag_mtu: 0,
        };
        assert!(q.queue(&mut idents, 0, &pkt, &frame));
        assert_eq!(q.flush(&batch, &mut BatchHistogram::default()).total(), 0);
        let mut buf = [0u8; 2048];
        let (n, src) = sock.recv_from(&mut buf).unwrap();
        assert_eq!((n, src), (100, SocketAddrV6::new(from, 6000, 0, 0).into()));

        ip(&[
            "-6",
            "route",
            "add",
            "2001:db8:8::/64",
            "via",
            "2001:db8:9::9",
        ]);
        let mut nl = Netlink::open().unwrap();
        let on_lan: Ipv6Addr = "2001:db8:9::5".parse().unwrap();
        assert_eq!(on_link(on_lan, nl.route_get(on_lan)).unwrap(), ifindex);
        let far: Ipv6Addr = "2001:db8:8::1".parse().unwrap();
        let err = on_link(far, nl.route_get(far)).unwrap_err().to_string();
        assert!(err.contains("DR cannot cross a router (use -i)"), "{err}");
        let own: Ipv6Addr = "2001:db8:9::1".parse().unwrap();
        let err = on_link(own, nl.route_get(own)).unwrap_err().to_string();
        assert!(err.contains("address of the director itself"), "{err}");

        // Asked to resolve an address nobody has, the kernel makes an entry without a MAC;
        // asked to resolve tlbv1's address through tlbv0, it solicits it and tlbv1 answers.
        let mut events = NeighEvents::open().unwrap();
        nl.resolve(ifindex, on_lan).unwrap();
        let entry = nl
            .neighbours()
            .unwrap()
            .into_iter()
            .find(|n| n.addr == on_lan)
            .expect("an entry for 2001:db8:9::5");
        assert_eq!((entry.ifindex, entry.mac()), (ifindex, None));
        assert!(entry.wants_resolution());
        nl.resolve(ifindex, to).unwrap();
        let mut resolved = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while resolved.is_none() && Instant::now() < deadline {
            poll_readable(
                std::os::fd::AsRawFd::as_raw_fd(&events),
                Some(Duration::from_millis(100)),
            )
            .unwrap();
            assert!(events
                .drain(|n| {
                    if n.addr == to && n.ifindex == ifindex && n.mac().is_some() {
                        resolved = n.mac();
                    }
                })
                .unwrap());
        }
        assert_eq!(resolved, Some(mac), "tlbv1's MAC by Neighbor Discovery");
    });
}
