//! The seed inputs of the targets added with the etherparse oracle (issue 13), built from
//! well-formed packets and messages. `cargo test --lib fuzzing::seeds -- --ignored` writes
//! them into `fuzz/corpus/<target>/seed_*`; the test that is not ignored checks that every
//! seed still passes its target, and that the committed files are what the builders make.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use crate::director::{Director, DirectorConfig, Verdict};
use crate::encap::{build_outer, OuterParams, Tunnel, MAX_OUTER_HEADER};
use crate::time::Instant;
use crate::wire::gso::{self, VnetHdr, VNET_HDR_LEN};
use crate::wire::testing::{icmp_error, ipv4_packet, tcp_packet, udp_packet};
use crate::wire::testing::{ipv6_packet, tcp6_packet, udp6_packet};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;

/// Packets in the director targets' format (2-byte length, top bit: repair).
fn seq(pkts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pkts {
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// The same, every packet flagged for repair (its checksums spoiled first).
fn seq_repaired(pkts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pkts {
        let mut p = p.clone();
        p[10] ^= 0x55;
        out.extend_from_slice(&(0x8000 | p.len() as u16).to_be_bytes());
        out.extend_from_slice(&p);
    }
    out
}

/// A TCP packet with `n` bytes of data whose DF bit is cleared (so it may be fragmented).
fn no_df(mut p: Vec<u8>) -> Vec<u8> {
    p[6] = 0;
    super::emitted::repair(&mut p);
    p
}

/// The reply a real server (or the internet) sends to what the core made of `pkt`:
/// addresses and ports swapped.
fn reply_to(rewritten: &[u8], flags: u8) -> Vec<u8> {
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(&rewritten[12..16]).unwrap());
    let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&rewritten[16..20]).unwrap());
    let sport = u16::from_be_bytes([rewritten[20], rewritten[21]]);
    let dport = u16::from_be_bytes([rewritten[22], rewritten[23]]);
    tcp_packet(dst, dport, src, sport, flags, 0)
}

/// What `pkt` becomes through a fresh core over the target's table (a rewrite).
fn rewrite(shared: std::sync::Arc<crate::director::Shared>, pkt: &[u8]) -> Vec<u8> {
    let mut d = Director::new(shared, DirectorConfig::default());
    let mut buf = pkt.to_vec();
    match d.handle_packet(Instant::from_secs(1), &mut buf) {
        Verdict::Rewrite { len } => buf[..len].to_vec(),
        v => panic!("seed packet not rewritten: {v:?}"),
    }
}

fn snat() -> Seeds {
    let inside = Ipv4Addr::new(10, 0, 0, 5);
    let web = Ipv4Addr::new(203, 0, 113, 80);
    let syn = tcp_packet(inside, 40000, web, 443, SYN, 0);
    let out = rewrite(super::snat::shared(), &syn);
    let synack = reply_to(&out, 0x12);
    let dns = udp_packet(
        Ipv4Addr::new(10, 0, 1, 9),
        5353,
        Ipv4Addr::new(8, 8, 8, 8),
        53,
        30,
    );
    let unreach = icmp_error(web, super::snat::PUBLIC[0], 3, 3, 0, &out);
    // The NAT service's real server answering a client, and the client's flow.
    let client = tcp_packet(CLIENT, 50000, Ipv4Addr::new(10, 100, 0, 100), 80, SYN, 0);
    let mut seeds: Seeds = vec![
        (
            "seed_tcp_out_and_back",
            seq(&[
                syn.clone(),
                synack,
                tcp_packet(inside, 40000, web, 443, PSH_ACK, 100),
            ]),
        ),
        ("seed_udp_out", seq(&[dns])),
        ("seed_icmp_error_back", seq(&[syn.clone(), unreach])),
        ("seed_nat_service", seq(&[client])),
        ("seed_repaired", seq_repaired(&[syn])),
    ];
    // S-NAT for IPv6 (snat6 helper): a TCP flow out and back, ICMPv6 echo, an ICMPv6 error.
    let inside6 = Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 5);
    let web6 = Ipv6Addr::new(0x2001, 0xdb8, 0xd, 0, 0, 0, 0, 0x80);
    let public6 = super::snat::PUBLIC6;
    let syn6 = tcp6_packet(inside6, 40000, web6, 443, SYN, 0);
    let out6 = rewrite(super::snat::shared(), &syn6);
    let echo6 = |src, dst, t: u8| {
        let mut m = vec![t, 0, 0, 0, 0x12, 0x34, 0, 1, 1, 2, 3, 4];
        let c = !crate::wire::checksum::upper_layer_v6(src, dst, 58, &m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        ipv6_packet(src, dst, 58, &m)
    };
    let mut too_big = vec![2, 0, 0, 0, 0, 0, 5, 0];
    too_big.extend(&out6);
    let c = !crate::wire::checksum::upper_layer_v6(web6, public6, 58, &too_big);
    too_big[2..4].copy_from_slice(&c.to_be_bytes());
    let too_big = ipv6_packet(web6, public6, 58, &too_big);
    seeds.extend([
        (
            "seed_tcp6_out_and_back",
            seq(&[
                syn6.clone(),
                tcp6_packet(web6, 443, public6, 40000, 0x12, 0),
                tcp6_packet(inside6, 40000, web6, 443, PSH_ACK, 100),
            ]),
        ),
        (
            "seed_echo6_out_and_back",
            seq(&[echo6(inside6, web6, 128), echo6(web6, public6, 129)]),
        ),
        ("seed_icmp6_error_back", seq(&[syn6, too_big])),
    ]);
    seeds
}

fn dr() -> Seeds {
    let vip = Ipv4Addr::new(192, 168, 150, 100);
    let syn = tcp_packet(CLIENT, 40000, vip, 80, SYN, 0);
    let data = tcp_packet(CLIENT, 40000, vip, 80, PSH_ACK, 1200);
    let udp = udp_packet(CLIENT, 5000, vip, 53, 1000);
    let udp_no_df = no_df(udp_packet(CLIENT, 5001, vip, 53, 1000));
    let flows: Vec<Vec<u8>> = (0..6)
        .map(|i| tcp_packet(Ipv4Addr::new(10, 1, i, 2), 40000, vip, 80, SYN, 0))
        .collect();
    vec![
        (
            "seed_tcp_flow",
            seq(&[syn, tcp_packet(CLIENT, 40000, vip, 80, ACK, 0), data]),
        ),
        ("seed_udp_mtu", seq(&[udp, udp_no_df])),
        ("seed_many_clients", seq(&flows)),
        (
            "seed_repaired",
            seq_repaired(&[tcp_packet(CLIENT, 1, vip, 80, SYN, 10)]),
        ),
        (
            "seed_ipv6_dr",
            seq(&(0..3)
                .flat_map(|port| {
                    [
                        tcp6_packet(V6_CLIENT, 40000 + port, V6_VIP, 80, SYN, 0),
                        // 1400 bytes: whole to the 1500 server, a Packet Too Big from the
                        // 1280 one.
                        tcp6_packet(V6_CLIENT, 40000 + port, V6_VIP, 80, PSH_ACK, 1340),
                    ]
                })
                .collect::<Vec<_>>()),
        ),
    ]
}

fn tunnel_route() -> Seeds {
    let to = |a: [u8; 4], n| tcp_packet(CLIENT, 40000, Ipv4Addr::from(a), 22, PSH_ACK, n);
    let to6 = |a: &str, n| tcp6_packet(V6_CLIENT, 40000, a.parse().unwrap(), 22, PSH_ACK, n);
    let vip = super::tunnel_route::VIP;
    vec![
        (
            "seed_each_route",
            seq(&[
                to([10, 20, 1, 1], 10),
                to([10, 20, 5, 9], 10),
                to([10, 30, 0, 7], 10),
                to([172, 20, 0, 1], 10),
            ]),
        ),
        (
            "seed_vip_in_prefix",
            seq(&[
                tcp_packet(CLIENT, 40000, vip, 80, SYN, 0),
                tcp_packet(CLIENT, 40000, vip, 22, SYN, 0),
            ]),
        ),
        (
            "seed_mtu",
            seq(&[to([10, 20, 1, 1], 1000), no_df(to([10, 30, 0, 7], 1000))]),
        ),
        ("seed_repaired", seq_repaired(&[to([10, 20, 5, 9], 100)])),
        // IPv6 prefixes (over IPv4): each route, a too-big packet (Packet Too Big), a UDP
        // datagram, a destination outside every prefix.
        (
            "seed_ipv6_routes",
            seq(&[
                to6("2001:db8:20::9", 10),
                to6("2001:db8:20:ff::9", 10),
                to6("2001:db8:20:ff::9", 1480),
                udp6_packet(V6_CLIENT, 5000, "2001:db8:20:1::1".parse().unwrap(), 53, 20),
                to6("2001:db8:21::1", 10),
            ]),
        ),
    ]
}

/// A virtio header, the batch room, the repair flag, the packet.
fn gso_input(vh: VnetHdr, room: u8, pkt: &[u8]) -> Vec<u8> {
    let mut h = [0u8; VNET_HDR_LEN];
    vh.emit(&mut h);
    let mut out = h.to_vec();
    out.extend_from_slice(&[room, 0]);
    out.extend_from_slice(pkt);
    out
}

fn gso_classify() -> Seeds {
    let vip = Ipv4Addr::new(10, 100, 0, 100);
    let partial = |mut p: Vec<u8>, at: usize| {
        let c = gso::partial_checksum(&p, p.len()).unwrap();
        p[20 + at..22 + at].copy_from_slice(&c.to_be_bytes());
        p
    };
    let vh = |gso_type, hdr_len, gso_size, csum_offset| VnetHdr {
        flags: gso::F_NEEDS_CSUM,
        gso_type,
        hdr_len,
        gso_size,
        csum_start: 20,
        csum_offset,
    };
    let tcp = partial(tcp_packet(CLIENT, 40000, vip, 80, PSH_ACK, 3000), 16);
    let gre = partial(tcp_packet(CLIENT, 40001, vip, 443, PSH_ACK, 3000), 16);
    let udp = partial(udp_packet(CLIENT, 5000, vip, 53, 2400), 6);
    let mut tcp_no_df = tcp.clone();
    tcp_no_df[6] = 0;
    super::emitted::repair(&mut tcp_no_df);
    let tcp_no_df = partial(tcp_no_df, 16);
    let small = partial(tcp_packet(CLIENT, 40002, vip, 80, PSH_ACK, 100), 16);
    vec![
        (
            "seed_tcp_ipip",
            gso_input(vh(gso::GSO_TCPV4, 40, 1400, 16), 64, &tcp),
        ),
        (
            "seed_tcp_gre",
            gso_input(vh(gso::GSO_TCPV4, 40, 1000, 16), 64, &gre),
        ),
        (
            "seed_udp_gue",
            gso_input(vh(gso::GSO_UDP_L4, 28, 800, 6), 64, &udp),
        ),
        (
            "seed_no_df_segmented",
            gso_input(vh(gso::GSO_TCPV4, 40, 1400, 16), 64, &tcp_no_df),
        ),
        (
            "seed_no_room",
            gso_input(vh(gso::GSO_TCPV4, 40, 1400, 16), 1, &tcp),
        ),
        (
            "seed_plain_partial",
            gso_input(vh(gso::GSO_NONE, 0, 0, 16), 64, &small),
        ),
    ]
}

/// A tunnel packet as the agent's socket returns it.
fn tunnelled(tunnel: Tunnel, src: [u8; 4], inner: &[u8]) -> Vec<u8> {
    let params = OuterParams {
        src: src.into(),
        dst: [10, 3, 0, 10].into(),
        tunnel,
        flow_hash: 7,
    };
    let mut h = [0u8; MAX_OUTER_HEADER];
    let n = build_outer(&params, inner, &mut h).unwrap();
    let mut p = h[..n].to_vec();
    p.extend_from_slice(inner);
    if let Tunnel::Gue { .. } = tunnel {
        p.drain(..28); // the UDP payload
    }
    p
}

fn agent_filter() -> Seeds {
    let vip = Ipv4Addr::new(10, 100, 0, 100);
    let inner = tcp_packet(CLIENT, 40000, vip, 80, SYN, 0);
    let from_peer = tcp_packet(
        Ipv4Addr::new(10, 20, 3, 4),
        40000,
        Ipv4Addr::new(192, 168, 1, 1),
        22,
        SYN,
        0,
    );
    let input = |sel: u8, src: [u8; 4], pkt: Vec<u8>| {
        let mut out = vec![sel];
        out.extend_from_slice(&src);
        out.extend_from_slice(&pkt);
        out
    };
    let gre = |key, csum| Tunnel::Gre { key, csum };
    let gue = Tunnel::Gue {
        port: 6080,
        csum: true,
    };
    let d = [10, 3, 0, 1];
    vec![
        ("seed_ipip", input(0, d, tunnelled(Tunnel::Ipip, d, &inner))),
        (
            "seed_gre",
            input(1, d, tunnelled(gre(None, true), d, &inner)),
        ),
        (
            "seed_gre_key",
            input(2, d, tunnelled(gre(Some(42), false), d, &inner)),
        ),
        ("seed_gue", input(3, d, tunnelled(gue, d, &inner))),
        (
            "seed_not_allowed",
            input(
                0,
                [10, 9, 0, 1],
                tunnelled(Tunnel::Ipip, [10, 9, 0, 1], &inner),
            ),
        ),
        (
            "seed_gateway_gre_key",
            input(6, d, tunnelled(gre(Some(42), false), d, &from_peer)),
        ),
        (
            "seed_gateway_wrong_peer",
            input(
                4,
                [10, 3, 0, 2],
                tunnelled(Tunnel::Ipip, [10, 3, 0, 2], &from_peer),
            ),
        ),
    ]
    .into_iter()
    .chain(agent_filter6(&inner, gue))
    .collect()
}

/// The IPv6-underlay seeds of `agent_filter` (selector bit 3): ip6ip6, 4in6, GRE and GUE
/// over IPv6 from the allowed /64, and one from outside it.
fn agent_filter6(inner4: &[u8], gue: Tunnel) -> Seeds {
    use crate::encap::{build_outer6, OuterParams6, TrafficClass, Udp6Zero, OUTER_TTL};
    use std::net::Ipv6Addr;

    let mut inner6 = Vec::new();
    etherparse::PacketBuilder::ipv6(
        [0x20, 1, 0xd, 0xb8, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7],
        [0x20, 1, 0xd, 0xb8, 0, 0x64, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0],
        63,
    )
    .udp(40000, 53)
    .write(&mut inner6, b"ping six")
    .unwrap();
    let me: Ipv6Addr = "2001:db8:3::10".parse().unwrap();
    let input = |sel: u8, src: Ipv6Addr, tunnel: Tunnel, inner: &[u8]| {
        let p = OuterParams6 {
            src,
            dst: me,
            tunnel,
            flow_hash: 5,
            hop_limit: OUTER_TTL,
            traffic_class: TrafficClass::CopyInner,
            udp_zero: Udp6Zero::Never,
        };
        let mut hdr = [0u8; MAX_OUTER_HEADER];
        let n = build_outer6(&p, inner, None, &mut hdr).unwrap();
        // What the AF_INET6 socket returns: after the IPv6 header, and for GUE after UDP.
        let skip = if matches!(tunnel, Tunnel::Gue { .. }) {
            48
        } else {
            40
        };
        let mut out = vec![sel];
        out.extend_from_slice(&src.octets());
        out.extend_from_slice(&hdr[skip..n]);
        out.extend_from_slice(inner);
        out
    };
    let d: Ipv6Addr = "2001:db8:3::1".parse().unwrap();
    let gre = Tunnel::Gre {
        key: Some(42),
        csum: true,
    };
    vec![
        ("seed6_ip6ip6", input(8 | 16, d, Tunnel::Ipip, &inner6)),
        ("seed6_4in6", input(8, d, Tunnel::Ipip, inner4)),
        ("seed6_gre_key", input(8 | 2, d, gre, &inner6)),
        ("seed6_gue", input(8 | 3, d, gue, &inner6)),
        ("seed6_gue_inner4", input(8 | 3, d, gue, inner4)),
        (
            "seed6_not_allowed",
            input(
                8 | 16,
                "2001:db8:4::1".parse().unwrap(),
                Tunnel::Ipip,
                &inner6,
            ),
        ),
    ]
}

fn control_request() -> Seeds {
    use crate::control::adm;
    use crate::control::proto::{Request, Response};
    let edit = |line: &str| {
        let args: Vec<std::ffi::OsString> = line.split_whitespace().map(Into::into).collect();
        adm::parse(&args).expect(line).edit().expect(line).clone()
    };
    let lines = |reqs: &[String]| reqs.join("\n").into_bytes();
    let json = |r: &Request| serde_json::to_string(r).unwrap();
    let add = Request::Apply(vec![
        edit("-A -t 10.100.0.100:80 -s wlc -p 300"),
        edit("-a -t 10.100.0.100:80 -r 10.3.0.10 -i -w 2"),
        edit("-a -t 10.100.0.100:80 -r 10.3.0.11:8080 -m"),
        edit("-A -u 10.100.0.100:53 -s mh"),
        edit("--set 900 120 300"),
    ]);
    let bad = Request::Apply(vec![edit("-A -t 10.0.0.1:80"), edit("-A -t 10.0.0.1:80")]);
    let mut set = crate::model::ServiceSet::default();
    let mut t = crate::model::Timeouts::default();
    let Request::Apply(edits) = &add else {
        unreachable!()
    };
    set.apply_batch(&mut t, edits).unwrap();
    let listing = Response::Listing(crate::control::format::Listing::from_set(&set));
    let resp = |r: &Response| serde_json::to_string(r).unwrap();
    vec![
        (
            "seed_apply_then_list",
            lines(&[json(&add), json(&Request::List), json(&Request::ListConns)]),
        ),
        (
            "seed_refused_batch",
            lines(&[json(&bad), json(&Request::GetTimeouts)]),
        ),
        (
            "seed_other_requests",
            lines(&[
                json(&Request::Config),
                json(&Request::Reload),
                json(&Request::ListVrrp),
            ]),
        ),
        (
            "seed_responses",
            lines(&[
                resp(&Response::Ok),
                resp(&Response::PermissionDenied),
                resp(&Response::error("Service already exists")),
                resp(&listing),
            ]),
        ),
        (
            "seed_streamed_conns",
            lines(&[
                json(&Request::StreamConns),
                resp(&Response::ConnsChunk(vec![
                    crate::control::format::ConnEntry {
                        proto: crate::model::Protocol::Tcp,
                        expires_secs: 899,
                        state: "ESTABLISHED".into(),
                        client: "10.1.0.2:40000".parse().unwrap(),
                        vip: "10.100.0.100:80".parse().unwrap(),
                        dest: "10.3.0.10:80".parse().unwrap(),
                    },
                ])),
                resp(&Response::ConnsEnd),
            ]),
        ),
    ]
}

fn health_reply() -> Seeds {
    let with = |k: u8, text: &[u8]| {
        let mut v = vec![k];
        v.extend_from_slice(text);
        v
    };
    let me = Ipv4Addr::new(10, 3, 0, 1);
    let addr = Ipv4Addr::new(10, 3, 0, 10);
    let mut echo = vec![0u8, 0, 0, 0, 0x12, 0x34, 0, 7];
    echo.extend_from_slice(b"tunlb ping check");
    let c = crate::wire::checksum::checksum(&echo);
    echo[2..4].copy_from_slice(&c.to_be_bytes());
    let raw = ipv4_packet(addr, me, 1, &echo);
    vec![
        (
            "seed_http_200",
            with(0, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
        ),
        (
            "seed_http_503",
            with(2, b"HTTP/1.0 503 Service Unavailable\r\n\r\n"),
        ),
        (
            "seed_http_digest",
            with(3, b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nhello"),
        ),
        ("seed_not_http", with(1, b"SSH-2.0-OpenSSH_9.6\r\n\r\n")),
        (
            "seed_udp_pattern",
            with(4, b"01 02 xX ab\n\x01\x02\x33\xab\xff"),
        ),
        ("seed_ping_socket", with(5, &echo)),
        ("seed_ping_raw", with(6, &raw)),
        ("seed_misc_exit", with(7, &[5])),
    ]
}

fn netlink() -> Seeds {
    let msg = |kind: u16, flags: u16, fixed: &[u8], attrs: &[(u16, &[u8])]| {
        let mut body = fixed.to_vec();
        for (k, data) in attrs {
            body.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
            body.extend_from_slice(&k.to_ne_bytes());
            body.extend_from_slice(data);
            body.resize((body.len() + 3) & !3, 0);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&1u32.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(&body);
        out
    };
    let mut ndmsg = vec![0u8; 12];
    ndmsg[0] = libc::AF_INET as u8;
    ndmsg[4..8].copy_from_slice(&4u32.to_ne_bytes());
    ndmsg[8..10].copy_from_slice(&(libc::NUD_REACHABLE).to_ne_bytes());
    let mac = [2u8, 0, 0, 0, 0, 0x12];
    let neigh = msg(
        libc::RTM_NEWNEIGH,
        libc::NLM_F_MULTI as u16,
        &ndmsg,
        &[
            (libc::NDA_DST, &[192, 168, 150, 12]),
            (libc::NDA_LLADDR, &mac),
        ],
    );
    let done = msg(
        libc::NLMSG_DONE as u16,
        libc::NLM_F_MULTI as u16,
        &[0; 4],
        &[],
    );
    let mut rtmsg = vec![0u8; 12];
    rtmsg[0] = libc::AF_INET as u8;
    rtmsg[7] = libc::RTN_UNICAST;
    let route = msg(
        libc::RTM_NEWROUTE,
        0,
        &rtmsg,
        &[
            (libc::RTA_OIF, &4u32.to_ne_bytes()),
            (libc::RTA_GATEWAY, &[10, 0, 0, 1]),
            (libc::RTA_PREFSRC, &[10, 0, 0, 2]),
        ],
    );
    let mut ifi = vec![0u8; 16];
    ifi[2..4].copy_from_slice(&1u16.to_ne_bytes());
    let link = msg(
        libc::RTM_NEWLINK,
        0,
        &ifi,
        &[
            (libc::IFLA_MTU, &1500u32.to_ne_bytes()),
            (libc::IFLA_ADDRESS, &mac),
        ],
    );
    let err = msg(
        libc::NLMSG_ERROR as u16,
        0,
        &(-libc::ENODEV).to_ne_bytes(),
        &[],
    );
    // IPv6 (DR over IPv6): a Neighbor Discovery entry and an on-link route with a source.
    ndmsg[0] = libc::AF_INET6 as u8;
    let rip6 = V6_CLIENT.octets();
    let neigh6 = msg(
        libc::RTM_NEWNEIGH,
        libc::NLM_F_MULTI as u16,
        &ndmsg,
        &[(libc::NDA_DST, &rip6), (libc::NDA_LLADDR, &mac)],
    );
    rtmsg[0] = libc::AF_INET6 as u8;
    rtmsg[1] = 128;
    let route6 = msg(
        libc::RTM_NEWROUTE,
        0,
        &rtmsg,
        &[
            (libc::RTA_DST, &rip6),
            (libc::RTA_OIF, &4u32.to_ne_bytes()),
            (libc::RTA_PREFSRC, &V6_VIP.octets()),
        ],
    );
    vec![
        (
            "seed_neigh_dump",
            [neigh.clone(), neigh, done.clone()].concat(),
        ),
        ("seed_route", route),
        ("seed_link", link),
        ("seed_error", err),
        ("seed_neigh6_dump", [neigh6.clone(), neigh6, done].concat()),
        ("seed_route6", route6),
    ]
}

/// An IPv6 packet 2001:db8::1 -> 2001:db8::100 whose payload is `ext` (extension headers and
/// upper layer), first next header `first`, hop limit 64.
fn ipv6_with(first: u8, ext: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40 + ext.len()];
    crate::wire::Ipv6Repr {
        src: V6_CLIENT,
        dst: V6_VIP,
        next_header: first,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0x12345,
        payload_len: ext.len(),
    }
    .emit(&mut p)
    .unwrap();
    p[40..].copy_from_slice(ext);
    p
}

const V6_CLIENT: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const V6_VIP: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);

/// IPv6 packets for `wire_views6`, built with etherparse and tunlb's NDP builders.
fn wire_views6() -> Seeds {
    use crate::wire::icmpv6::{self, NeighborAdvert, NeighborSolicit};
    use crate::wire::IpProtocol as P;
    let (src, dst) = (V6_CLIENT.octets(), V6_VIP.octets());
    let build = |b: etherparse::PacketBuilderStep<etherparse::TcpHeader>, n: usize| {
        let mut out = Vec::new();
        b.write(&mut out, &vec![0x5a; n]).unwrap();
        out
    };
    let syn = build(
        etherparse::PacketBuilder::ipv6(src, dst, 64)
            .tcp(40000, 80, 1, 65535)
            .syn()
            .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1440)])
            .unwrap(),
        0,
    );
    let big = build(
        etherparse::PacketBuilder::ipv6(src, dst, 64).tcp(40000, 80, 2, 65535),
        1440,
    );
    let mut udp = Vec::new();
    etherparse::PacketBuilder::ipv6(src, dst, 64)
        .udp(5353, 53)
        .write(&mut udp, b"query")
        .unwrap();
    let mut echo = Vec::new();
    etherparse::PacketBuilder::ipv6(src, dst, 64)
        .icmpv6_echo_request(7, 1)
        .write(&mut echo, b"ping")
        .unwrap();
    let mac = [2, 0, 0, 0, 0, 1];
    let ndp = |emit: &dyn Fn(&mut [u8]) -> usize| {
        let mut b = [0u8; 80];
        let n = emit(&mut b);
        b[..n].to_vec()
    };
    let ns = NeighborSolicit::for_target("fe80::1".parse().unwrap(), mac, V6_VIP);
    let dad = NeighborSolicit {
        src: std::net::Ipv6Addr::UNSPECIFIED,
        source_mac: None,
        ..ns
    };
    let na = NeighborAdvert::unsolicited(V6_VIP, mac);
    let mut ptb = big.clone();
    let n = icmpv6::packet_too_big_in_place(&mut ptb, 1500, 1400, "2001:db8::fe".parse().unwrap())
        .unwrap();
    ptb.truncate(n);
    // HBH, destination options, routing (type 4, segments left 0), AH, first fragment, TCP.
    let mut chain = vec![P::IPV6_OPTS, 0, 1, 4, 0, 0, 0, 0];
    chain.extend_from_slice(&[P::IPV6_ROUTE, 0, 1, 4, 0, 0, 0, 0]);
    chain.extend_from_slice(&[P::AH, 0, 4, 0, 0, 0, 0, 0]);
    chain.extend_from_slice(&[P::IPV6_FRAG, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0]);
    chain.extend_from_slice(&[P::TCP, 0, 0, 1, 0xca, 0xfe, 0, 1]);
    chain.extend_from_slice(&syn[40..]);
    let nonfirst = [P::UDP, 0, 0x05, 0xa8, 0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8];
    let routed = [P::TCP, 1, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    vec![
        ("seed_tcp_syn", syn),
        ("seed_tcp_1500", big),
        ("seed_udp", udp),
        ("seed_icmpv6_echo", echo),
        ("seed_ns", ndp(&|b| ns.emit(b).unwrap())),
        ("seed_ns_dad", ndp(&|b| dad.emit(b).unwrap())),
        ("seed_na_unsolicited", ndp(&|b| na.emit(b).unwrap())),
        ("seed_packet_too_big", ptb),
        ("seed_ext_chain", ipv6_with(P::HOPOPT, &chain)),
        ("seed_fragment_nonfirst", ipv6_with(P::IPV6_FRAG, &nonfirst)),
        (
            "seed_routing_segments_left",
            ipv6_with(P::IPV6_ROUTE, &routed),
        ),
    ]
}

/// Named seed inputs of one target.
type Seeds = Vec<(&'static str, Vec<u8>)>;

/// `encap_strip6`: every tunnel over IPv6 with inner IPv4 and IPv6 (GUE also sealed, GRE also
/// behind a Destination Options header), IPv6 inside IPv4 (sit, GRE 0x86DD, GUE 41), a GUE
/// payload carrying IPv6, and the two inner packets alone (round trips).
fn encap_strip6() -> Seeds {
    use crate::encap::auth::{Seal, TunnelKey};
    use crate::encap::{build_outer6, OuterParams6, TrafficClass, Udp6Zero, OUTER_TTL};
    use std::net::Ipv6Addr;

    let inner4 = udp_packet(CLIENT, 40000, Ipv4Addr::new(10, 100, 0, 100), 53, 12);
    let mut inner6 = Vec::new();
    etherparse::PacketBuilder::ipv6(
        [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        [0x20, 1, 0xd, 0xb8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0],
        63,
    )
    .udp(40000, 53)
    .write(&mut inner6, b"ping six")
    .unwrap();
    let gue = |csum| Tunnel::Gue {
        port: crate::encap::DEFAULT_GUE_PORT,
        csum,
    };
    let tunnels: [(&str, Tunnel); 5] = [
        ("ipip", Tunnel::Ipip),
        (
            "gre",
            Tunnel::Gre {
                key: None,
                csum: false,
            },
        ),
        (
            "gre_key42_csum",
            Tunnel::Gre {
                key: Some(42),
                csum: true,
            },
        ),
        ("gue", gue(false)),
        ("gue_csum", gue(true)),
    ];
    let names6 = [
        ["seed_6_ipip_v4", "seed_6_ipip_v6"],
        ["seed_6_gre_v4", "seed_6_gre_v6"],
        ["seed_6_gre_key42_csum_v4", "seed_6_gre_key42_csum_v6"],
        ["seed_6_gue_v4", "seed_6_gue_v6"],
        ["seed_6_gue_csum_v4", "seed_6_gue_csum_v6"],
    ];
    let names4 = ["seed_4_sit_v6", "seed_4_gre_v6", "", "seed_4_gue_v6", ""];
    let key = TunnelKey::new(&[0x5a; 32]);
    let seal = Seal {
        key: &key,
        lane: 2,
        seq: 9,
    };
    let p6 = |tunnel| OuterParams6 {
        src: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
        dst: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
        tunnel,
        flow_hash: 0xdead_beef,
        hop_limit: OUTER_TTL,
        traffic_class: TrafficClass::CopyInner,
        udp_zero: Udp6Zero::Never,
    };
    let mut out = Vec::new();
    for (i, (_, t)) in tunnels.iter().enumerate() {
        for (j, inner) in [&inner4, &inner6].into_iter().enumerate() {
            let mut h = [0u8; MAX_OUTER_HEADER];
            let n = build_outer6(&p6(*t), inner, None, &mut h).unwrap();
            out.push((names6[i][j], [&h[..n], &inner[..]].concat()));
        }
        if !names4[i].is_empty() {
            let p = OuterParams {
                src: Ipv4Addr::new(192, 0, 2, 1),
                dst: Ipv4Addr::new(192, 0, 2, 2),
                tunnel: *t,
                flow_hash: 7,
            };
            let mut h = [0u8; MAX_OUTER_HEADER];
            let n = build_outer(&p, &inner6, &mut h).unwrap();
            out.push((names4[i], [&h[..n], &inner6[..]].concat()));
        }
    }
    let mut h = [0u8; MAX_OUTER_HEADER];
    let n = build_outer6(&p6(gue(false)), &inner6, Some(&seal), &mut h).unwrap();
    out.push(("seed_6_gue_auth_v6", [&h[..n], &inner6[..]].concat()));
    // GRE over IPv6 behind an 8-byte Destination Options header (PadN).
    let gre = Tunnel::Gre {
        key: None,
        csum: false,
    };
    let n = build_outer6(&p6(gre), &inner4, None, &mut h).unwrap();
    let mut ext = h[..40].to_vec();
    ext[6] = 60;
    let plen = u16::from_be_bytes([ext[4], ext[5]]) + 8;
    ext[4..6].copy_from_slice(&plen.to_be_bytes());
    ext.extend_from_slice(&[47, 0, 1, 4, 0, 0, 0, 0]);
    ext.extend_from_slice(&h[40..n]);
    ext.extend_from_slice(&inner4);
    out.push(("seed_6_dstopts_gre_v4", ext));
    out.push((
        "seed_gue_payload_v6",
        [&[0, 41, 0, 0][..], &inner6[..]].concat(),
    ));
    out.push(("seed_inner_v4", inner4));
    out.push(("seed_inner_v6", inner6));
    out
}

/// An ICMPv6 error from `src` to `dst` quoting `original` (up to 1232 bytes).
fn icmp6_error(src: Ipv6Addr, dst: Ipv6Addr, icmp_type: u8, code: u8, original: &[u8]) -> Vec<u8> {
    let mut icmp = vec![icmp_type, code, 0, 0, 0, 0, 0x05, 0x00];
    icmp.extend(&original[..original.len().min(1232)]);
    let sum = !crate::wire::checksum::upper_layer_v6(src, dst, 58, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    ipv6_packet(src, dst, 58, &icmp)
}

/// `director_packet`'s NAT66 service ([2001:db8::100]:8080 → [RIP]:8081, `with_ipv6`): a
/// handshake, a reply from each real server (the target's table is shared across inputs, so
/// which one has the flow depends on what ran before), data both ways, a packet over the path
/// MTU, a Packet Too Big to the VIP about a reply, a port unreachable from a real server, and
/// a UDP reply with checksum 0.
fn director_packet() -> Seeds {
    let vip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
    let client = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 7);
    let router = Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 1);
    let rips = (0..3).map(|i| Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 10 + i));
    let mut pkts = vec![tcp6_packet(client, 40000, vip, 8080, SYN, 0)];
    for rip in rips.clone() {
        pkts.push(tcp6_packet(rip, 8081, client, 40000, 0x12, 0));
    }
    pkts.push(tcp6_packet(client, 40000, vip, 8080, PSH_ACK, 100));
    for rip in rips.clone() {
        pkts.push(tcp6_packet(rip, 8081, client, 40000, PSH_ACK, 300));
    }
    pkts.push(tcp6_packet(client, 40000, vip, 8080, ACK, 1300));
    let answer = tcp6_packet(vip, 8080, client, 40000, ACK, 200);
    pkts.push(icmp6_error(router, vip, 2, 0, &answer));
    for rip in rips.clone() {
        let sent = tcp6_packet(client, 40000, rip, 8081, ACK, 20);
        pkts.push(icmp6_error(rip, client, 1, 4, &sent));
        let mut zero = udp6_packet(rip, 8081, client, 40000, 8);
        zero[46..48].copy_from_slice(&[0, 0]);
        pkts.push(zero);
    }
    vec![("seed_nat66_both_ways", seq(&pkts))]
}

/// VRRPv3 over IPv6 adverts for `vrrp_advert` (selector bit 5: the IPv6 instance, VIPs
/// 2001:db8::100 and ::101, us fe80::11): from the peer fe80::14 to ff02::12 (accepted), with
/// two VIPs, unicast to us with hop limit 64, to an owner (priority 255), and the refusals hop
/// limit 254, a global source, a bad checksum.
fn vrrp_advert6() -> Seeds {
    use crate::vrrp::config::Version;
    use crate::vrrp::wire;
    use std::net::IpAddr;
    use std::time::Duration;
    let peer = IpAddr::V6(super::vrrp_advert::PEER6);
    let ours: IpAddr = "fe80::11".parse().unwrap();
    let group = IpAddr::V6(wire::MULTICAST_GROUP6);
    let vip = |last: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last));
    let seed =
        |sel: u8, vips: &[IpAddr], src: IpAddr, dst: IpAddr, hops: u8, edit: fn(&mut Vec<u8>)| {
            let mut payload = Vec::new();
            wire::build(
                Version::V3,
                51,
                50,
                Duration::from_secs(1),
                vips,
                None,
                src,
                dst,
                &mut payload,
            );
            edit(&mut payload);
            let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) else {
                unreachable!("IPv6 seeds")
            };
            let mut pkt = Vec::new();
            wire::wrap_ipv6(s, d, hops, &payload, &mut pkt);
            let mut out = vec![sel];
            out.extend_from_slice(&pkt);
            out
        };
    let one = [vip(0x100)];
    let two = [vip(0x100), vip(0x101)];
    let global: IpAddr = "2001:db8::14".parse().unwrap();
    vec![
        (
            "seed_v6_multicast",
            seed(33, &one, peer, group, 255, |_| {}),
        ),
        ("seed_v6_two_vips", seed(41, &two, peer, group, 255, |_| {})),
        ("seed_v6_unicast", seed(37, &one, peer, ours, 64, |_| {})),
        ("seed_v6_hop_254", seed(33, &one, peer, group, 254, |_| {})),
        (
            "seed_v6_global_source",
            seed(33, &one, global, group, 255, |_| {}),
        ),
        (
            "seed_v6_bad_checksum",
            seed(33, &one, peer, group, 255, |p| p[7] ^= 1),
        ),
        ("seed_v6_owner", seed(49, &one, peer, group, 255, |_| {})),
    ]
}

/// Every seed by target.
fn all() -> Vec<(&'static str, Seeds)> {
    vec![
        ("director_packet", director_packet()),
        ("snat", snat()),
        ("dr", dr()),
        ("tunnel_route", tunnel_route()),
        ("gso_classify", gso_classify()),
        ("agent_filter", agent_filter()),
        ("control_request", control_request()),
        ("health_reply", health_reply()),
        ("netlink", netlink()),
        ("wire_views6", wire_views6()),
        ("encap_strip6", encap_strip6()),
        ("vrrp_advert", vrrp_advert6()),
    ]
}

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn run(target: &str, data: &[u8]) {
    if let Some((_, f)) = super::TARGETS.iter().find(|(n, _)| *n == target) {
        f(data);
    } else if let Some((_, f)) = super::ORACLE_TARGETS.iter().find(|(n, _)| *n == target) {
        f(data, super::oracle::check_ipv4);
    } else {
        panic!("no target {target}");
    }
}

#[test]
fn seeds_pass_their_targets_and_are_committed() {
    for (target, seeds) in all() {
        for (name, data) in seeds {
            run(target, &data);
            let path = corpus(target).join(name);
            let committed = std::fs::read(&path).unwrap_or_default();
            assert!(
                committed == data,
                "{} differs from its builder (re-run with --ignored)",
                path.display()
            );
        }
    }
}

#[test]
#[ignore = "writes fuzz/corpus/<target>/seed_*"]
fn write_seeds() {
    for (target, seeds) in all() {
        std::fs::create_dir_all(corpus(target)).unwrap();
        for (name, data) in seeds {
            std::fs::write(corpus(target).join(name), data).unwrap();
        }
    }
}
