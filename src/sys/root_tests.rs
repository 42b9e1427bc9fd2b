//! Tests that need root: each runs on its own thread moved into a fresh, unnamed network
//! namespace ([`in_new_netns`]), which the kernel deletes when the thread ends, so nothing leaks
//! on any exit path.
//!
//! Run with `cargo test --lib -- --ignored sys::root_tests`.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use super::netcfg::{conf_key, NetChanges};
use super::raw::{RawReceiver, RawSender};
use super::testing::{in_new_netns, ip, ipv4_header, udp_packet};
use super::tun::TunDevice;
use super::PacketBatch;

#[test]
#[ignore = "needs root (network namespaces)"]
fn tun_queues_read_routed_packets_and_inject_written_ones() {
    in_new_netns(|| {
        let tun = TunDevice::create("tlbtest0", 2, 1400).unwrap();
        assert_eq!(tun.name(), "tlbtest0");
        let mut net = NetChanges::new();
        net.add_route("10.9.0.0/24".parse().unwrap(), "tlbtest0")
            .unwrap();
        net.add_address("10.9.1.1/32".parse().unwrap(), "lo")
            .unwrap();
        net.set_sysctl(&conf_key("all", "rp_filter"), "0").unwrap();
        net.set_sysctl(&conf_key("tlbtest0", "rp_filter"), "0")
            .unwrap();
        let queues = tun.queues();
        assert_eq!(queues.len(), 2);

        // Outbound: datagrams routed to 10.9.0.0/24 come out of one of the queues.
        let sock = UdpSocket::bind("10.9.1.1:4000").unwrap();
        for i in 0..5u8 {
            sock.send_to(&[i; 10], "10.9.0.7:5000").unwrap();
        }
        let mut batch = PacketBatch::new(16, 2048);
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(2);
        while seen < 5 && Instant::now() < deadline {
            for q in &queues {
                q.recv_batch(&mut batch, Some(Duration::from_millis(20)))
                    .unwrap();
                // Skip the IPv6 router solicitations a fresh link sends.
                for (p, meta) in batch.iter().filter(|(p, _)| p[0] >> 4 == 4) {
                    assert!(!meta.truncated);
                    assert_eq!(p.len(), 38);
                    assert_eq!(p[16..20], [10, 9, 0, 7]);
                    seen += 1;
                }
            }
        }
        assert_eq!(seen, 5);

        // A packet longer than the slot is cut and marked.
        let mut small = PacketBatch::new(4, 24);
        sock.send_to(&[9; 10], "10.9.0.7:5000").unwrap();
        let mut truncated = 0;
        let deadline = Instant::now() + Duration::from_secs(2);
        while truncated == 0 && Instant::now() < deadline {
            for q in &queues {
                q.recv_batch(&mut small, Some(Duration::from_millis(20)))
                    .unwrap();
                for (p, meta) in small.iter().filter(|(p, _)| p[0] >> 4 == 4) {
                    assert_eq!((p.len(), meta.truncated), (24, true));
                    truncated += 1;
                }
            }
        }
        assert_eq!(truncated, 1);

        // Inbound: packets written into a queue reach the local socket.
        let from = SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 7), 5000);
        let to = SocketAddrV4::new(Ipv4Addr::new(10, 9, 1, 1), 4000);
        let pkts: Vec<Vec<u8>> = (0..3u8).map(|i| udp_packet(from, to, &[i; 4])).collect();
        let report = queues[1].send_batch(pkts.iter().map(Vec::as_slice));
        assert_eq!((report.sent, report.failed), (3, 0));
        sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = [0u8; 64];
        for i in 0..3u8 {
            let (n, src) = sock.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], src), (&[i; 4][..], from.into()));
        }
        net.restore().unwrap();
    });
}

#[test]
#[ignore = "needs root (network namespaces)"]
fn raw_sender_batches_ipip_and_reports_the_packet_that_is_too_big() {
    in_new_netns(|| {
        ip(&["link", "set", "lo", "mtu", "1500"]);
        let mut rx = RawReceiver::new(4).unwrap();
        let mut tx = RawSender::new(2).unwrap();
        let lo = Ipv4Addr::LOCALHOST;
        let outer = ipv4_header(4, lo, lo);
        let inner_a = udp_packet(
            SocketAddrV4::new(Ipv4Addr::new(1, 2, 3, 4), 1),
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 80),
            b"a",
        );
        let big = vec![0x45u8; 1600];
        let inner_c = udp_packet(
            SocketAddrV4::new(Ipv4Addr::new(1, 2, 3, 4), 1),
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 80),
            b"ccc",
        );
        // Three batches of at most 2; the big one is the second packet.
        let items = [
            (lo, &outer[..], &inner_a[..]),
            (lo, &outer[..], &big[..]),
            (lo, &outer[..], &inner_c[..]),
            (lo, &outer[..], &inner_a[..]),
        ];
        let report = tx.send_batch(items.iter().copied());
        assert_eq!((report.sent, report.failed, report.too_big), (3, 1, 1));
        assert_eq!(tx.failures().len(), 1);
        assert_eq!(tx.failures()[0].index, 1);
        assert!(tx.failures()[0].is_too_big());

        let mut batch = PacketBatch::new(8, 2048);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        while got.len() < 3 && Instant::now() < deadline {
            rx.recv_batch(&mut batch, Some(Duration::from_millis(50)))
                .unwrap();
            for (p, meta) in batch.iter() {
                assert_eq!(*meta.src.ip(), lo);
                assert_eq!(p[9], 4, "outer protocol");
                got.push(p[20..].to_vec());
            }
        }
        assert_eq!(got, vec![inner_a.clone(), inner_c, inner_a]);
    });
}

#[test]
#[ignore = "needs root (network namespaces)"]
fn offload_tun_reads_virtio_headers_and_takes_written_ones() {
    use crate::sys::tun::{TunConfig, OFFLOADS, TUN_F_USO4, TUN_F_USO6};
    use crate::wire::gso::{VnetHdr, VNET_HDR_LEN};
    in_new_netns(|| {
        // Asked for, UDP segmentation comes on top of a TCP set (Linux 6.2+, as here); not
        // asked for, it stays off.
        let uso = TunDevice::with_config(&TunConfig {
            offload: true,
            udp_offload: true,
            ..TunConfig::new("tlbtest2", 1, 1500)
        })
        .unwrap();
        let both = TUN_F_USO4 | TUN_F_USO6;
        assert!(
            uso.offload()
                .is_some_and(|f| f & both == both && OFFLOADS.contains(&(f & !both))),
            "{:?}",
            uso.offload()
        );
        drop(uso);
        let tun = TunDevice::with_config(&TunConfig {
            offload: true,
            ..TunConfig::new("tlbtest1", 1, 1500)
        })
        .unwrap();
        assert!(tun.offload().is_some_and(|f| OFFLOADS.contains(&f)));
        let mut net = NetChanges::new();
        net.add_route("10.9.0.0/24".parse().unwrap(), "tlbtest1")
            .unwrap();
        net.add_address("10.9.1.1/32".parse().unwrap(), "lo")
            .unwrap();
        net.set_sysctl(&conf_key("all", "rp_filter"), "0").unwrap();
        net.set_sysctl(&conf_key("tlbtest1", "rp_filter"), "0")
            .unwrap();
        let queues = tun.queues();
        assert!(queues[0].vnet_hdr());

        // A UDP datagram arrives behind a virtio header (no GSO), the packet alone in the slot.
        let sock = UdpSocket::bind("10.9.1.1:4000").unwrap();
        sock.send_to(&[7; 10], "10.9.0.7:5000").unwrap();
        let mut batch = PacketBatch::new(4, 65535);
        let mut hdrs = [[0u8; VNET_HDR_LEN]; 4];
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(2);
        while seen == 0 && Instant::now() < deadline {
            let n = queues[0]
                .recv_batch_vnet(&mut batch, &mut hdrs, Some(Duration::from_millis(20)))
                .unwrap();
            for (i, hdr) in hdrs.iter().enumerate().take(n) {
                let p = batch.get(i).unwrap();
                if p[0] >> 4 != 4 {
                    continue;
                }
                let vh = VnetHdr::parse(hdr).unwrap();
                assert!(!vh.is_gso());
                assert_eq!(p.len(), 38);
                assert_eq!(p[16..20], [10, 9, 0, 7]);
                seen += 1;
            }
        }
        assert_eq!(seen, 1);

        // Written packets (an all-zero header in front, added by `send`) reach the socket.
        let from = SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 7), 5000);
        let to = SocketAddrV4::new(Ipv4Addr::new(10, 9, 1, 1), 4000);
        let pkt = udp_packet(from, to, &[3; 4]);
        assert_eq!(queues[0].send(&pkt).unwrap(), pkt.len());
        sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = [0u8; 64];
        let (n, src) = sock.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], src), (&[3; 4][..], from.into()));
        net.restore().unwrap();
    });
}

/// Two ends of a veth pair in one namespace, addressed 10.77.0.1 (va) and 10.77.0.2 (vb), up.
fn veth_pair() {
    ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
    ip(&["addr", "add", "10.77.0.1/24", "dev", "va"]);
    ip(&["addr", "add", "10.77.0.2/24", "dev", "vb"]);
    ip(&["link", "set", "va", "up"]);
    ip(&["link", "set", "vb", "up"]);
    // Both ends are in one namespace: let packets from a local source in.
    for (key, v) in [
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.va.rp_filter", "0"),
        ("net.ipv4.conf.vb.rp_filter", "0"),
        ("net.ipv4.conf.va.accept_local", "1"),
        ("net.ipv4.conf.vb.accept_local", "1"),
    ] {
        std::fs::write(format!("/proc/sys/{}", key.replace('.', "/")), v).unwrap();
    }
}

#[test]
#[ignore = "needs root (network namespaces)"]
fn vrrp_sockets_carry_adverts_with_ttl_255_and_tos_0xc0() {
    in_new_netns(|| {
        veth_pair();
        assert_eq!(
            super::iface::ipv4("va").unwrap(),
            Ipv4Addr::new(10, 77, 0, 1)
        );
        let deadline = Instant::now() + Duration::from_secs(3);
        while !super::iface::is_running("vb") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(super::iface::is_running("vb"));
        let a = super::vrrp::VrrpSocket::open("va", Ipv4Addr::new(10, 77, 0, 1).into()).unwrap();
        let b = super::vrrp::VrrpSocket::open("vb", Ipv4Addr::new(10, 77, 0, 2).into()).unwrap();
        let advert = [0x21, 51, 100, 0, 0, 1, 0, 0];
        let mut buf = [0u8; 256];
        let mut got = None;
        let deadline = Instant::now() + Duration::from_secs(3);
        while got.is_none() && Instant::now() < deadline {
            a.send(&advert, super::vrrp::VRRP_GROUP.into()).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            while let Some(n) = b.recv(&mut buf).unwrap() {
                if buf[12..16] == [10, 77, 0, 1] {
                    got = Some(n);
                }
            }
        }
        let n = got.expect("b received a's advert");
        assert_eq!(n, 28);
        assert_eq!(buf[1], 0xc0, "TOS");
        assert_eq!(buf[8], 255, "TTL");
        assert_eq!(buf[9], 112, "protocol");
        assert_eq!(buf[16..20], [224, 0, 0, 18]);
        assert_eq!(buf[20..28], advert);
        // a's own socket does not see its adverts (multicast loop off).
        assert_eq!(a.recv(&mut buf).unwrap(), None);
    });
}

#[test]
#[ignore = "needs root (network namespaces)"]
fn arp_sockets_send_and_receive_arp_packets() {
    in_new_netns(|| {
        veth_pair();
        let (ia, ib) = (
            super::iface::index("va").unwrap(),
            super::iface::index("vb").unwrap(),
        );
        let mac_a = super::iface::mac("va").unwrap();
        let a = super::arp::ArpSocket::open(ia).unwrap();
        let b = super::arp::ArpSocket::open(ib).unwrap();
        let vip = Ipv4Addr::new(10, 77, 0, 100);
        let garp = crate::wire::ArpRepr::gratuitous(vip, mac_a).emit();
        let mut buf = [0u8; 128];
        let mut seen = false;
        let deadline = Instant::now() + Duration::from_secs(3);
        while !seen && Instant::now() < deadline {
            a.send(&garp, [0xff; 6]).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            while let Some(from) = b.recv(&mut buf).unwrap() {
                let p = crate::wire::ArpPacket::new_checked(&buf[..from.len]).unwrap();
                if p.is_gratuitous() && p.target_ip() == vip {
                    assert_eq!(from.mac, mac_a);
                    assert!(!from.outgoing);
                    seen = true;
                }
            }
        }
        assert!(seen, "b saw a's gratuitous ARP");
    });
}

#[test]
#[ignore = "needs root (network namespaces)"]
fn ipv6_vip_routes_and_tun_sysctls_are_applied_and_undone() {
    in_new_netns(|| {
        let write = |key: &str, v: &str| std::fs::write(format!("/proc/sys/{key}"), v).unwrap();
        let read = |key: &str| {
            std::fs::read_to_string(format!("/proc/sys/{key}"))
                .unwrap()
                .trim()
                .to_owned()
        };
        // A host where IPv6 is off by default: the TUN is created with it off.
        write("net/ipv6/conf/default/disable_ipv6", "1");
        let tun = TunDevice::create("tlb6test0", 1, 1400).unwrap();
        let dis = super::netcfg::conf6_key(tun.name(), "disable_ipv6");
        assert_eq!(read(&dis), "1");
        let mut net = NetChanges::new();
        net.tun_ipv6(tun.name()).unwrap();
        // (Not set_link: /sys here still shows the outer namespace's devices.)
        ip(&["link", "set", tun.name(), "up"]);
        let vip: ipnet::IpNet = "2001:db8::100/128".parse().unwrap();
        net.add_route_ip(vip, tun.name()).unwrap();
        net.add_table_route_ip(vip, tun.name(), 100).unwrap();
        assert_eq!(read(&dis), "0");
        assert_eq!(read(super::netcfg::IP6_FORWARD), "1");
        let main = ip(&["-6", "route", "show", "2001:db8::100"]);
        assert!(main.contains("dev tlb6test0"), "{main}");
        let table = ip(&["-6", "route", "show", "table", "100"]);
        assert!(table.contains("2001:db8::100 dev tlb6test0"), "{table}");
        // No link-local address on the TUN (addr_gen_mode none).
        let addrs = ip(&["-6", "addr", "show", "dev", "tlb6test0"]);
        assert!(!addrs.contains("inet6"), "{addrs}");

        net.restore().unwrap();
        assert_eq!(read(&dis), "1");
        assert_eq!(read(super::netcfg::IP6_FORWARD), "0");
        assert!(ip(&["-6", "route", "show", "table", "100"]).is_empty());
        assert!(!ip(&["-6", "route", "show"]).contains("2001:db8::100"));
    });
}
