//! The agent end to end inside a private network namespace (root only): a raw socket sends IPIP
//! to the namespace's own address, the agent decapsulates into its TUN, a UDP service bound to
//! the hidden VIP receives the inner datagram. The namespace belongs to the test thread alone
//! (`unshare(CLONE_NEWNET)`; threads it spawns inherit it) and vanishes with it.
//!
//! Run with `cargo test --lib -- --ignored realserver::root_tests`.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::encap::{build_outer, OuterParams, Tunnel, MAX_OUTER_HEADER};
use crate::sys::raw::RawSender;
use crate::sys::testing::{in_new_netns, ip, udp_packet};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const DIRECTOR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const STRANGER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 1234);

/// Reads a sysctl of the calling thread's namespace.
fn sysctl(key: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/{key}"))
        .unwrap()
        .trim()
        .to_owned()
}

fn send_ipip(tx: &mut RawSender, outer_src: Ipv4Addr, inner: &[u8]) {
    let mut hdr = [0u8; MAX_OUTER_HEADER];
    let params = OuterParams {
        src: outer_src,
        dst: DIRECTOR,
        tunnel: Tunnel::Ipip,
        flow_hash: 0,
    };
    let n = build_outer(&params, inner, &mut hdr).unwrap();
    let report = tx.send_batch([(DIRECTOR, &hdr[..n], inner)]);
    assert_eq!(report.sent, 1, "{:?}", report.last_error());
}

#[test]
#[ignore = "needs root (network namespaces)"]
fn ipip_from_an_allowed_director_reaches_the_service_on_the_hidden_vip() {
    in_new_netns(|| {
        let args = AgentArgs {
            vips: vec![VIP.into()],
            mode: Mode::Tun,
            lan_ifs: Vec::new(),
            encap: Some(TunnelType::Ipip),
            gue_port: DEFAULT_GUE_PORT,
            gre_key: None,
            allow: vec!["127.0.0.1/32".parse().unwrap()],
            tun_name: "tlbrs-test0".into(),
            tun_mtu: 1500,
            stats_interval: 0,
            batch: 8,
            gateway: false,
            routes: Vec::new(),
            peer: None,
            lans: Vec::new(),
            metrics_listen: Some("127.0.0.1:9101".parse().unwrap()),
            no_offload: false,
            cleanup: false,
            tunnel_keys: Vec::new(),
            insecure_unauthenticated_encap: false,
            vip_ports: Vec::new(),
            allow_wide: false,
            no_second_chance: false,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let agent = {
            let stop = stop.clone();
            std::thread::spawn(move || run_until(&args, stop_flag(&stop)))
        };

        // The VIP appears on lo once the agent is set up.
        let deadline = Instant::now() + Duration::from_secs(5);
        let service = loop {
            match UdpSocket::bind(SocketAddrV4::new(VIP, 5353)) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("VIP never appeared: {e}"),
            }
        };
        // Then the raw IPIP socket (protocol 4 shows as local port 0004).
        while !std::fs::read_to_string("/proc/thread-self/net/raw")
            .unwrap()
            .contains(":0004 ")
        {
            assert!(
                Instant::now() < deadline,
                "the agent never opened its raw socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(sysctl("net/ipv4/conf/lo/arp_ignore"), "1");

        // The agent loosens rp_filter on its TUN (2): the client's source needs a route back,
        // as it has on a real server (its default route).
        let route = std::process::Command::new("ip")
            .args(["route", "add", "198.51.100.0/24", "dev", "lo"])
            .status()
            .unwrap();
        assert!(route.success());
        let mut tx = RawSender::new(4).unwrap();
        let to_vip = SocketAddrV4::new(VIP, 5353);
        send_ipip(&mut tx, STRANGER, &udp_packet(CLIENT, to_vip, b"spoofed"));
        let not_vip = SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 2), 5353);
        send_ipip(
            &mut tx,
            DIRECTOR,
            &udp_packet(CLIENT, not_vip, b"elsewhere"),
        );
        send_ipip(&mut tx, DIRECTOR, &udp_packet(CLIENT, to_vip, b"hello"));

        service
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = service.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"hello"[..], CLIENT.into()));
        // The counters reach /metrics once the batch is done.
        let scrape = || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect("127.0.0.1:9101").unwrap();
            s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let mut page = scrape();
        while !page.contains("\ntunlb_agent_delivered_packets_total 1\n") {
            assert!(Instant::now() < deadline + Duration::from_secs(5), "{page}");
            std::thread::sleep(Duration::from_millis(20));
            page = scrape();
        }
        assert!(
            page.contains("\ntunlb_agent_received_packets_total 3\n"),
            "{page}"
        );
        assert!(
            page.contains("\ntunlb_agent_drops_total{reason=\"not_allowed\"} 1\n"),
            "{page}"
        );

        stop.store(true, Ordering::Relaxed);
        let stats = agent.join().unwrap().unwrap();
        assert_eq!(stats.received, 3);
        assert_eq!(stats.delivered, 1);
        assert_eq!(stats.not_allowed, 1);
        assert_eq!(stats.not_vip, 1);

        // Everything undone: no VIP on lo, no TUN, arp_ignore back to 0.
        assert!(!ip(&["-4", "addr", "show", "dev", "lo"]).contains("10.77.0.1"));
        assert!(!ip(&["link", "show"]).contains("tlbrs-test0"));
        assert_eq!(sysctl("net/ipv4/conf/lo/arp_ignore"), "0");
    });
}

#[test]
#[ignore = "needs root (network namespaces)"]
fn dr_mode_hides_the_vip_on_every_interface_and_undoes_it() {
    in_new_netns(|| {
        ip(&[
            "link", "add", "tlbrs-v0", "type", "veth", "peer", "name", "tlbrs-v1",
        ]);
        let args = AgentArgs {
            vips: vec![VIP.into()],
            mode: Mode::Dr,
            lan_ifs: Vec::new(),
            encap: None,
            gue_port: DEFAULT_GUE_PORT,
            gre_key: None,
            allow: Vec::new(),
            tun_name: "tlbrs-test1".into(),
            tun_mtu: 1500,
            stats_interval: 0,
            batch: 8,
            gateway: false,
            routes: Vec::new(),
            peer: None,
            lans: Vec::new(),
            metrics_listen: None,
            no_offload: false,
            cleanup: false,
            tunnel_keys: Vec::new(),
            insecure_unauthenticated_encap: false,
            vip_ports: Vec::new(),
            allow_wide: false,
            no_second_chance: false,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let agent = {
            let stop = stop.clone();
            std::thread::spawn(move || run_until(&args, stop_flag(&stop)))
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ip(&["-4", "addr", "show", "dev", "lo"]).contains("10.77.0.1/32") {
            assert!(Instant::now() < deadline, "the VIP never appeared on lo");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The settings come before the VIP; no TUN device in DR mode.
        for iface in ["all", "lo", "tlbrs-v0", "tlbrs-v1"] {
            assert_eq!(sysctl(&format!("net/ipv4/conf/{iface}/arp_ignore")), "1");
            assert_eq!(sysctl(&format!("net/ipv4/conf/{iface}/arp_announce")), "2");
        }
        assert!(!ip(&["link", "show"]).contains("tlbrs-test1"));

        stop.store(true, Ordering::Relaxed);
        agent.join().unwrap().unwrap();
        assert!(!ip(&["-4", "addr", "show", "dev", "lo"]).contains("10.77.0.1"));
        for iface in ["all", "lo", "tlbrs-v0", "tlbrs-v1"] {
            assert_eq!(sysctl(&format!("net/ipv4/conf/{iface}/arp_ignore")), "0");
            assert_eq!(sysctl(&format!("net/ipv4/conf/{iface}/arp_announce")), "0");
        }
    });
}

/// Accepts every well-formed IPIP packet (the allow-list and VIP checks have their own tests).
struct AnyIpip;

impl tunnel::Accept for AnyIpip {
    fn check_ip(&self, packet: &[u8], _src: Ipv4Addr) -> Result<Range<usize>, AgentDrop> {
        crate::encap::strip_ip(packet, TunnelType::Ipip, None)
            .map(|s| s.inner)
            .map_err(AgentDrop::Strip)
    }

    fn check_gue(
        &mut self,
        _payload: &[u8],
        _src: Ipv4Addr,
        _dst: Ipv4Addr,
    ) -> Result<Range<usize>, AgentDrop> {
        Err(AgentDrop::NotAllowed)
    }
}

/// Without the kernel's GRO every tunnelled segment reaches the raw socket on its own; the
/// consecutive segments of one TCP flow in one receive batch still go into a TUN with virtio
/// headers as one GSO super-packet (which the kernel takes: no write error), and a packet of
/// another kind after them goes on its own, after them.
#[test]
#[ignore = "needs root (network namespaces)"]
fn consecutive_ipip_segments_in_one_batch_are_written_as_one_super_packet() {
    in_new_netns(|| {
        let mut config = TunConfig::new("tlbrs-merge0", 1, 1500);
        config.offload = true;
        let queue = TunDevice::with_config(&config).unwrap().queues().remove(0);
        assert!(queue.vnet_hdr(), "the kernel refused TUN offload");
        let mut rx = tunnel::Receiver::open(TunnelType::Ipip, DEFAULT_GUE_PORT).unwrap();

        // A 5000-byte payload cut into five segments of 1000, as the director cuts a
        // super-packet, then a UDP datagram.
        let client = *CLIENT.ip();
        let whole = crate::wire::testing::tcp_packet(client, 40000, VIP, 80, 0x10, 5000);
        let cut = crate::wire::gso::Segmenter::new(&whole, 1000).unwrap();
        let mut inners: Vec<Vec<u8>> = (0..cut.count())
            .map(|k| {
                let mut seg = vec![0u8; 1100];
                let n = cut.write_segment(&whole, k, &mut seg).unwrap();
                seg.truncate(n);
                seg
            })
            .collect();
        assert_eq!(inners.len(), 5);
        inners.push(udp_packet(CLIENT, SocketAddrV4::new(VIP, 5353), b"after"));
        let mut tx = RawSender::new(4).unwrap();
        for inner in &inners {
            send_ipip(&mut tx, DIRECTOR, inner);
        }
        // Loopback delivers in the sender's context; give a slow machine a moment anyway.
        std::thread::sleep(Duration::from_millis(100));

        let mut stats = AgentStats::default();
        let mut rounds = 0;
        let opts = tunnel::ServeOptions {
            batch: 16,
            stats_interval: None,
            log: "test:",
            publish: None,
        };
        tunnel::serve(&mut rx, &queue, &mut AnyIpip, opts, &mut stats, &mut || {
            rounds += 1;
            rounds > 1
        })
        .unwrap();
        assert_eq!(stats.received, 6, "{stats}");
        assert_eq!(stats.delivered, 6, "{stats}");
        assert_eq!(stats.tun_write_error, 0, "{stats}");
        assert_eq!(stats.gro_super_packets, 1, "{stats}");
    });
}
