//! The agent's IPv6 paths end to end (root only), in a private namespace pair: the agent runs
//! in the test thread's namespace, a peer namespace (a thread that unshared its own) plays the
//! director across a veth pair and sends tunnel packets built with the encap builders: ip6ip6,
//! 4in6, GRE and GUE over IPv6, sit-style 6in4, GRE and GUE carrying IPv6 over IPv4, and the
//! same from a source outside `--allow`. A UDP service bound to the hidden VIP (/128 on lo, or
//! /32) must receive each inner datagram, and the counters must say what was dropped; a SYN
//! in ip6ip6 to a listener on the VIP gets its SYN-ACK from the VIP straight to the client.
//! DR over IPv6: the /128 on lo is not answered by Neighbor Discovery on the LAN.
//!
//! Run with `cargo test --lib -- --ignored root_tests --test-threads=1`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::*;
use crate::encap::{
    build_outer, build_outer6, OuterParams, OuterParams6, TrafficClass, Tunnel, Udp6Zero,
    MAX_OUTER_HEADER, OUTER_TTL,
};
use crate::sys::raw::RawSender;
use crate::sys::testing::{in_new_netns, ip, udp_packet};
use crate::wire::ipv6::Ipv6Repr;
use crate::wire::{IpProtocol, UdpPacket};

const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 1);
const VIP4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The agent's end of the veth pair.
const RS6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
const RS4: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 10);
/// The director's end: the one address of each family in `--allow`.
const DIR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
const DIR4: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
/// Also on the director's end, outside `--allow`.
const STRANGER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x99);
const CLIENT6: SocketAddrV6 =
    SocketAddrV6::new(Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 7), 40000, 0, 0);
const CLIENT4: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 1234);
const PORT: u16 = 5353;

/// A job for the peer namespace's thread.
type Job = Box<dyn FnOnce() + Send>;

/// A second network namespace: a thread that unshared its own (from the test thread's) and
/// runs the closures sent to it. The namespace, and what was moved into it, goes when the
/// thread ends (on drop).
struct Peer {
    jobs: Option<mpsc::Sender<Job>>,
    /// The thread's id, which `ip link set ... netns` takes.
    tid: String,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Peer {
    fn new() -> Peer {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (tid_tx, tid_rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            crate::sys::unshare_net_namespace().expect("unshare(CLONE_NEWNET) needs root");
            ip(&["link", "set", "lo", "up"]);
            // "/proc/thread-self" links to "PID/task/TID".
            let me = std::fs::read_link("/proc/thread-self").unwrap();
            let tid = me.file_name().unwrap().to_string_lossy().into_owned();
            tid_tx.send(tid).unwrap();
            for job in rx {
                job();
            }
        });
        let tid = tid_rx.recv().expect("the peer thread died");
        Peer {
            jobs: Some(jobs),
            tid,
            thread: Some(thread),
        }
    }

    /// Runs `f` in the peer namespace and returns its result.
    fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs.as_ref().unwrap().send(job).unwrap();
        rx.recv().expect("a job in the peer namespace panicked")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The veth pair `tlb6-rs` (here, the agent's: RS6, RS4) and `tlb6-dir` (in `peer`: DIR6,
/// STRANGER6, DIR4), addresses without duplicate address detection, both up.
fn link_pair(peer: &Peer) {
    ip(&[
        "link", "add", "tlb6-rs", "type", "veth", "peer", "name", "tlb6-dir",
    ]);
    ip(&["link", "set", "tlb6-dir", "netns", &peer.tid]);
    ip(&[
        "addr",
        "add",
        "2001:db8:1::10/64",
        "dev",
        "tlb6-rs",
        "nodad",
    ]);
    ip(&["addr", "add", "10.78.0.10/24", "dev", "tlb6-rs"]);
    ip(&["link", "set", "tlb6-rs", "up"]);
    peer.run(|| {
        ip(&[
            "addr",
            "add",
            "2001:db8:1::2/64",
            "dev",
            "tlb6-dir",
            "nodad",
        ]);
        ip(&[
            "addr",
            "add",
            "2001:db8:1::99/64",
            "dev",
            "tlb6-dir",
            "nodad",
        ]);
        ip(&["addr", "add", "10.78.0.2/24", "dev", "tlb6-dir"]);
        ip(&["link", "set", "tlb6-dir", "up"]);
    });
}

fn args(encap: Option<TunnelType>, mode: Mode, tun_name: &str) -> AgentArgs {
    let tun = mode == Mode::Tun;
    AgentArgs {
        vips: vec![VIP6.into(), VIP4.into()],
        mode,
        lan_ifs: Vec::new(),
        encap,
        gue_port: DEFAULT_GUE_PORT,
        gre_key: None,
        allow: if tun {
            vec![
                "2001:db8:1::2/128".parse().unwrap(),
                "10.78.0.2/32".parse().unwrap(),
            ]
        } else {
            Vec::new()
        },
        tun_name: tun_name.into(),
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
    }
}

/// An IPv6/UDP packet from CLIENT6 to `[VIP6]:PORT` with a valid checksum.
fn udp6(payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut p = vec![0u8; 40 + len];
    Ipv6Repr {
        src: *CLIENT6.ip(),
        dst: VIP6,
        next_header: IpProtocol::UDP,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
        payload_len: len,
    }
    .emit(&mut p)
    .unwrap();
    p[40..42].copy_from_slice(&CLIENT6.port().to_be_bytes());
    p[42..44].copy_from_slice(&PORT.to_be_bytes());
    p[44..46].copy_from_slice(&(len as u16).to_be_bytes());
    p[48..].copy_from_slice(payload);
    let mut udp = UdpPacket::new_checked(&mut p[40..]).unwrap();
    udp.fill_checksum_v6(*CLIENT6.ip(), VIP6);
    p
}

/// An IPv4/UDP packet from CLIENT4 to `VIP4:PORT`.
fn udp4(payload: &[u8]) -> Vec<u8> {
    udp_packet(CLIENT4, SocketAddrV4::new(VIP4, PORT), payload)
}

/// The outer IPv6 headers `tunnel` puts before `inner` from `src` to RS6 (`build_outer6`).
fn outer6(tunnel: Tunnel, src: Ipv6Addr, inner: &[u8]) -> Vec<u8> {
    outer6_sealed(tunnel, src, inner, None)
}

/// [`outer6`], a GUE header sealed with `seal` (MAC over the IPv6 addresses) when given.
fn outer6_sealed(
    tunnel: Tunnel,
    src: Ipv6Addr,
    inner: &[u8],
    seal: Option<&crate::encap::auth::Seal<'_>>,
) -> Vec<u8> {
    let p = OuterParams6 {
        src,
        dst: RS6,
        tunnel,
        flow_hash: 7,
        hop_limit: OUTER_TTL,
        traffic_class: TrafficClass::CopyInner,
        udp_zero: Udp6Zero::Never,
    };
    let mut hdr = [0u8; MAX_OUTER_HEADER];
    let n = build_outer6(&p, inner, seal, &mut hdr).unwrap();
    hdr[..n].to_vec()
}

/// The outer IPv4 headers `tunnel` puts before `inner` from DIR4 to RS4 (`build_outer`).
fn outer4(tunnel: Tunnel, inner: &[u8]) -> Vec<u8> {
    let p = OuterParams {
        src: DIR4,
        dst: RS4,
        tunnel,
        flow_hash: 7,
    };
    let mut hdr = [0u8; MAX_OUTER_HEADER];
    let n = build_outer(&p, inner, &mut hdr).unwrap();
    hdr[..n].to_vec()
}

/// Sends `inner` in `tunnel` over IPv6 from `src` (an address of the peer) to RS6: a raw
/// socket for the next header (the kernel writes the IPv6 header `build_outer6` also built;
/// the bytes after it go as they were built), or for GUE a UDP socket sending the GUE header
/// and `inner`.
fn send6(tunnel: Tunnel, src: Ipv6Addr, inner: &[u8]) {
    let hdr = outer6(tunnel, src, inner);
    let from = SocketAddr::V6(SocketAddrV6::new(src, 0, 0, 0));
    match tunnel {
        Tunnel::Gue { port, .. } => {
            let sock = UdpSocket::bind(from).unwrap();
            let payload = [&hdr[48..], inner].concat();
            sock.send_to(&payload, SocketAddrV6::new(RS6, port, 0, 0))
                .unwrap();
        }
        _ => {
            let next_header = hdr[6];
            let sock = Socket::new(
                Domain::IPV6,
                Type::RAW,
                Some(Protocol::from(i32::from(next_header))),
            )
            .unwrap();
            sock.bind(&from.into()).unwrap();
            let payload = [&hdr[40..], inner].concat();
            let to = SocketAddr::V6(SocketAddrV6::new(RS6, 0, 0, 0));
            sock.send_to(&payload, &to.into()).unwrap();
        }
    }
}

/// Sends `inner` in `tunnel` over IPv4 from DIR4 to RS4: the whole packet through the raw
/// IPv4 sender, or for GUE the GUE header and `inner` from a UDP socket.
fn send4(tunnel: Tunnel, inner: &[u8]) {
    let hdr = outer4(tunnel, inner);
    match tunnel {
        Tunnel::Gue { port, .. } => {
            let sock = UdpSocket::bind(SocketAddrV4::new(DIR4, 0)).unwrap();
            let payload = [&hdr[28..], inner].concat();
            sock.send_to(&payload, SocketAddrV4::new(RS4, port))
                .unwrap();
        }
        _ => {
            let mut tx = RawSender::new(4).unwrap();
            let report = tx.send_batch([(RS4, &hdr[..], inner)]);
            assert_eq!(report.sent, 1, "{:?}", report.last_error());
        }
    }
}

/// Waits until `file` (under /proc/thread-self/net) lists a socket with local port `port`
/// (a raw socket's "port" is its protocol).
fn wait_for_socket(file: &str, port: u16, deadline: Instant) {
    let needle = format!(":{port:04X} ");
    while !std::fs::read_to_string(format!("/proc/thread-self/net/{file}"))
        .unwrap()
        .contains(&needle)
    {
        assert!(
            Instant::now() < deadline,
            "no socket on {file} port {port} (the agent never opened it)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Binds a UDP service on `addr` once the agent has put the VIP on lo.
fn service_on(addr: SocketAddr, deadline: Instant) -> UdpSocket {
    loop {
        match UdpSocket::bind(addr) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                return s;
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("{addr}: the VIP never appeared: {e}"),
        }
    }
}

/// Receives one datagram on `service`: its payload and source.
fn received(service: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 256];
    let (n, from) = service
        .recv_from(&mut buf)
        .expect("the inner datagram never reached the service");
    (buf[..n].to_vec(), from)
}

/// Starts the agent (in this namespace), waits for its VIPs and the sockets listed in
/// `sockets` (file, port), runs `traffic` (which sends from the peer and checks what the
/// services got), stops the agent and returns its counters, checking that everything was
/// undone.
fn with_agent(
    args: AgentArgs,
    sockets: &[(&str, u16)],
    traffic: impl FnOnce(&UdpSocket, &UdpSocket),
) -> AgentStats {
    let tun_name = args.tun_name.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let agent = {
        let stop = stop.clone();
        std::thread::spawn(move || run_until(&args, stop_flag(&stop)))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let svc6 = service_on(SocketAddrV6::new(VIP6, PORT, 0, 0).into(), deadline);
    let svc4 = service_on(SocketAddrV4::new(VIP4, PORT).into(), deadline);
    for &(file, port) in sockets {
        wait_for_socket(file, port, deadline);
    }
    // The TUN takes IPv6 (no link-local address generated on it).
    let dis = format!("net/ipv6/conf/{tun_name}/disable_ipv6");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/sys/{dis}"))
            .unwrap()
            .trim(),
        "0"
    );
    // rp_filter (loose on the TUN) wants a route back to the IPv4 client.
    ip(&["route", "add", "198.51.100.0/24", "dev", "lo"]);

    traffic(&svc6, &svc4);

    stop.store(true, Ordering::Relaxed);
    let stats = agent.join().unwrap().unwrap();
    // Everything undone: no VIP on lo, no TUN.
    assert!(!ip(&["-6", "addr", "show", "dev", "lo"]).contains("2001:db8:a::1"));
    assert!(!ip(&["-4", "addr", "show", "dev", "lo"]).contains("10.77.0.1"));
    assert!(!ip(&["link", "show"]).contains(&tun_name));
    stats
}

#[test]
#[ignore = "needs root (network namespaces)"]
fn ipip_ip6ip6_4in6_and_6in4_reach_the_services_and_a_stranger_is_dropped() {
    in_new_netns(|| {
        let peer = Peer::new();
        link_pair(&peer);
        let args = args(Some(TunnelType::Ipip), Mode::Tun, "tlb6-ipip");
        // raw6 41 and 4, raw 41 (6in4) and raw 4 (the IPv4 loop).
        let socks = [("raw6", 41), ("raw6", 4), ("raw", 41), ("raw", 4)];
        let stats = with_agent(args, &socks, |svc6, svc4| {
            peer.run(|| {
                send6(Tunnel::Ipip, STRANGER6, &udp6(b"spoofed"));
                send6(Tunnel::Ipip, DIR6, &udp6(b"ip6ip6"));
            });
            assert_eq!(received(svc6), (b"ip6ip6".to_vec(), CLIENT6.into()));
            peer.run(|| send6(Tunnel::Ipip, DIR6, &udp4(b"4in6")));
            assert_eq!(received(svc4), (b"4in6".to_vec(), CLIENT4.into()));
            peer.run(|| send4(Tunnel::Ipip, &udp6(b"6in4")));
            assert_eq!(received(svc6), (b"6in4".to_vec(), CLIENT6.into()));
            // And the IPv4 path as it was.
            peer.run(|| send4(Tunnel::Ipip, &udp4(b"ipip")));
            assert_eq!(received(svc4), (b"ipip".to_vec(), CLIENT4.into()));
        });
        assert_eq!(stats.received, 5, "{stats}");
        assert_eq!(stats.delivered, 4, "{stats}");
        assert_eq!(stats.not_allowed, 1, "{stats}");
    });
}

#[test]
#[ignore = "needs root (network namespaces)"]
fn gre_over_ipv6_either_inner_and_ipv6_in_gre_over_ipv4_reach_the_services() {
    in_new_netns(|| {
        let peer = Peer::new();
        link_pair(&peer);
        let args = args(Some(TunnelType::Gre), Mode::Tun, "tlb6-gre");
        let gre = Tunnel::Gre {
            key: None,
            csum: false,
        };
        let stats = with_agent(args, &[("raw6", 47), ("raw", 47)], |svc6, svc4| {
            peer.run(move || {
                send6(gre, STRANGER6, &udp6(b"spoofed"));
                send6(gre, DIR6, &udp6(b"gre6"));
            });
            assert_eq!(received(svc6), (b"gre6".to_vec(), CLIENT6.into()));
            peer.run(move || send6(gre, DIR6, &udp4(b"4 in gre6")));
            assert_eq!(received(svc4), (b"4 in gre6".to_vec(), CLIENT4.into()));
            // GRE protocol type 0x86DD over IPv4, on the IPv4 loop.
            peer.run(move || send4(gre, &udp6(b"6 in gre4")));
            assert_eq!(received(svc6), (b"6 in gre4".to_vec(), CLIENT6.into()));
        });
        assert_eq!(stats.received, 4, "{stats}");
        assert_eq!(stats.delivered, 3, "{stats}");
        assert_eq!(stats.not_allowed, 1, "{stats}");
    });
}

#[test]
#[ignore = "needs root (network namespaces)"]
fn gue_over_ipv6_either_inner_and_ipv6_in_gue_over_ipv4_reach_the_services() {
    in_new_netns(|| {
        let peer = Peer::new();
        link_pair(&peer);
        let args = args(Some(TunnelType::Gue), Mode::Tun, "tlb6-gue");
        let gue = Tunnel::Gue {
            port: DEFAULT_GUE_PORT,
            csum: true,
        };
        let port = DEFAULT_GUE_PORT;
        let stats = with_agent(args, &[("udp6", port), ("udp", port)], |svc6, svc4| {
            peer.run(move || {
                send6(gue, STRANGER6, &udp6(b"spoofed"));
                send6(gue, DIR6, &udp6(b"gue6"));
            });
            assert_eq!(received(svc6), (b"gue6".to_vec(), CLIENT6.into()));
            peer.run(move || send6(gue, DIR6, &udp4(b"4 in gue6")));
            assert_eq!(received(svc4), (b"4 in gue6".to_vec(), CLIENT4.into()));
            // GUE protocol 41 over IPv4, on the IPv4 loop (its own socket, IPv4 only).
            peer.run(move || send4(gue, &udp6(b"6 in gue4")));
            assert_eq!(received(svc6), (b"6 in gue4".to_vec(), CLIENT6.into()));
        });
        assert_eq!(stats.received, 4, "{stats}");
        assert_eq!(stats.delivered, 3, "{stats}");
        assert_eq!(stats.not_allowed, 1, "{stats}");
    });
}

/// DR over IPv6: the VIP goes on lo as a /128 (and comes off on exit); the peer, routing the
/// VIP onto the shared link as a DR director does, solicits it and gets no advertisement,
/// while an address on the agent's veth end is resolved at once on the same link.
#[test]
#[ignore = "needs root (network namespaces)"]
fn dr_mode_ipv6_vip_on_lo_gets_no_neighbor_advertisement() {
    in_new_netns(|| {
        let peer = Peer::new();
        link_pair(&peer);
        let args = args(None, Mode::Dr, "tlb6-dr");
        let stop = Arc::new(AtomicBool::new(false));
        let agent = {
            let stop = stop.clone();
            std::thread::spawn(move || run_until(&args, stop_flag(&stop)))
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let _svc = service_on(SocketAddrV6::new(VIP6, PORT, 0, 0).into(), deadline);
        let lo = ip(&["-6", "addr", "show", "dev", "lo"]);
        assert!(lo.contains("2001:db8:a::1/128"), "{lo}");

        let neigh = peer.run(|| {
            ip(&["-6", "route", "add", "2001:db8:a::1/128", "dev", "tlb6-dir"]);
            let sock = UdpSocket::bind(SocketAddrV6::new(DIR6, 0, 0, 0)).unwrap();
            sock.send_to(b"vip", SocketAddrV6::new(VIP6, PORT, 0, 0))
                .unwrap();
            sock.send_to(b"rs", SocketAddrV6::new(RS6, PORT, 0, 0))
                .unwrap();
            // The agent's address answers within a moment; the VIP had three solicitations
            // (one a second) by the time it is given up on.
            let deadline = Instant::now() + Duration::from_secs(3);
            loop {
                let rs = ip(&["-6", "neigh", "show", "2001:db8:1::10", "dev", "tlb6-dir"]);
                if rs.contains("lladdr") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the control address never resolved: {rs}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(1500));
            ip(&["-6", "neigh", "show", "2001:db8:a::1", "dev", "tlb6-dir"])
        });
        assert!(
            !neigh.contains("lladdr") && (neigh.contains("INCOMPLETE") || neigh.contains("FAILED")),
            "the VIP was resolved (or never solicited): {neigh:?}"
        );

        stop.store(true, Ordering::Relaxed);
        agent.join().unwrap().unwrap();
        assert!(!ip(&["-6", "addr", "show", "dev", "lo"]).contains("2001:db8:a::1"));
    });
}

/// A TCP SYN from CLIENT6 to `[VIP6]:80`, valid checksum.
fn syn6(seq: u32) -> Vec<u8> {
    let mut p = vec![0u8; 60];
    Ipv6Repr {
        src: *CLIENT6.ip(),
        dst: VIP6,
        next_header: IpProtocol::TCP,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
        payload_len: 20,
    }
    .emit(&mut p)
    .unwrap();
    p[40..42].copy_from_slice(&CLIENT6.port().to_be_bytes());
    p[42..44].copy_from_slice(&80u16.to_be_bytes());
    p[44..48].copy_from_slice(&seq.to_be_bytes());
    p[52] = 0x50; // 20-byte header
    p[53] = 0x02; // SYN
    p[54..56].copy_from_slice(&0xffffu16.to_be_bytes());
    let mut tcp = crate::wire::TcpPacket::new_checked(&mut p[40..]).unwrap();
    tcp.fill_checksum_v6(*CLIENT6.ip(), VIP6);
    p
}

/// TUN over IPv6 the whole way: a SYN in ip6ip6 reaches the listener on the hidden VIP, and
/// its SYN-ACK goes from the VIP straight to the client (here routed back through the peer,
/// which holds the client's address), not through any tunnel.
#[test]
#[ignore = "needs root (network namespaces)"]
fn a_syn_in_ip6ip6_gets_a_syn_ack_from_the_vip_to_the_client() {
    in_new_netns(|| {
        let peer = Peer::new();
        link_pair(&peer);
        ip(&[
            "-6",
            "route",
            "add",
            "2001:db8:9::/64",
            "via",
            "2001:db8:1::2",
            "dev",
            "tlb6-rs",
        ]);
        peer.run(|| ip(&["addr", "add", "2001:db8:9::7/128", "dev", "lo", "nodad"]));
        let args = args(Some(TunnelType::Ipip), Mode::Tun, "tlb6-syn");
        let stats = with_agent(args, &[("raw6", 41)], |_, _| {
            let listener = std::net::TcpListener::bind(SocketAddrV6::new(VIP6, 80, 0, 0))
                .expect("listen on the VIP");
            let reply = peer.run(|| {
                let tcp = crate::sys::tunsock::TunnelSocket::raw6(IpProtocol::TCP).unwrap();
                send6(Tunnel::Ipip, DIR6, &syn6(1000));
                let deadline = Instant::now() + Duration::from_secs(3);
                let mut buf = [0u8; 256];
                loop {
                    assert!(Instant::now() < deadline, "no SYN-ACK reached the client");
                    match tcp.recv(&mut buf).unwrap() {
                        // The payload behind the IPv6 header: the TCP header.
                        Some(r) if r.len >= 20 && buf[0..2] == 80u16.to_be_bytes() => {
                            return (r.src, r.dst, buf[..20].to_vec());
                        }
                        _ => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
            drop(listener);
            let (src, dst, tcp) = reply;
            assert_eq!(src, std::net::IpAddr::V6(VIP6));
            assert_eq!(dst, std::net::IpAddr::V6(*CLIENT6.ip()));
            assert_eq!(tcp[2..4], CLIENT6.port().to_be_bytes(), "{tcp:?}");
            assert_eq!(tcp[13] & 0x12, 0x12, "not a SYN-ACK: {tcp:?}");
            assert_eq!(tcp[8..12], 1001u32.to_be_bytes(), "acknowledges the SYN");
        });
        assert_eq!(stats.delivered, 1, "{stats}");
    });
}

/// GUE over IPv6 with `--tunnel-key`: the MAC covers the outer IPv6 addresses, the
/// destination coming from `IPV6_PKTINFO`; a sealed packet is delivered, its replay and an
/// unsealed one are dropped by reason.
#[test]
#[ignore = "needs root (network namespaces)"]
fn authenticated_gue_over_ipv6_is_delivered_and_replays_are_not() {
    use crate::encap::auth::{AuthError, Seal, TunnelKey};
    use std::os::unix::fs::PermissionsExt;
    in_new_netns(|| {
        let peer = Peer::new();
        link_pair(&peer);
        let path = std::env::temp_dir().join(format!("tlb6-key-{}", std::process::id()));
        std::fs::write(&path, "07".repeat(32)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut args = args(Some(TunnelType::Gue), Mode::Tun, "tlb6-auth");
        args.tunnel_keys = vec![path.clone()];
        let port = DEFAULT_GUE_PORT;
        let gue = Tunnel::Gue { port, csum: true };
        let stats = with_agent(args, &[("udp6", port)], |svc6, _| {
            let sealed = |seq: u64, body: &'static [u8]| {
                move || {
                    let key = TunnelKey::new(&[7; 32]);
                    let seal = Seal {
                        key: &key,
                        lane: 0,
                        seq,
                    };
                    let inner = udp6(body);
                    let hdr = outer6_sealed(gue, DIR6, &inner, Some(&seal));
                    let sock = UdpSocket::bind(SocketAddrV6::new(DIR6, 0, 0, 0)).unwrap();
                    let payload = [&hdr[48..], &inner[..]].concat();
                    sock.send_to(&payload, SocketAddrV6::new(RS6, port, 0, 0))
                        .unwrap();
                }
            };
            peer.run(move || send6(gue, DIR6, &udp6(b"unsealed")));
            peer.run(sealed(1, b"sealed"));
            assert_eq!(received(svc6), (b"sealed".to_vec(), CLIENT6.into()));
            peer.run(sealed(1, b"replayed"));
            peer.run(sealed(2, b"next"));
            assert_eq!(received(svc6), (b"next".to_vec(), CLIENT6.into()));
        });
        let _ = std::fs::remove_file(&path);
        let count = |e: AuthError| {
            let i = AuthError::ALL.iter().position(|x| *x == e).unwrap();
            stats.auth[i]
        };
        assert_eq!(stats.received, 4, "{stats}");
        assert_eq!(stats.delivered, 2, "{stats}");
        assert_eq!(count(AuthError::Missing), 1, "{stats}");
        assert_eq!(count(AuthError::Replayed), 1, "{stats}");
    });
}
