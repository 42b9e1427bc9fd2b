//! Client packets too big for the tunnel once encapsulated and without DF, in the [`tun_lab`]
//! topology, for ipip, gre and gue (and gue with a UDP checksum).
//!
//! Linux IPVS sends such a packet and lets the kernel fragment the *outer* datagram; tunlb's
//! raw socket never fragments, so the director splits it itself. The real server's kernel must
//! reassemble the outer fragments before the agent's raw socket (ipip, gre) or GUE UDP socket
//! sees them; the agent then strips the tunnel as usual. These tests check all of it on real
//! interfaces: the client sends large UDP datagrams with DF clear to a UDP service on the VIP,
//! the router counts the outer fragments going from the director to the real servers, and each
//! real server's `tunlb httpd --udp-echo` answers the client directly with the length and
//! SHA-256 of what it received.
//!
//! The client is a few lines of python3 that send a file in one datagram from a fixed source
//! port with `IP_MTU_DISCOVER = IP_PMTUDISC_DONT`; the namespace's `net.ipv4.ip_no_pmtu_disc
//! = 1` clears DF for any other socket too.

use std::fs;

use tunlb::lab::httpd::{fill_blob, sha256_hex};

use crate::harness::tun_lab::{self, DIRECTOR, RS1, RS2, VIP};
use crate::harness::{adm, start_agent, start_director, start_httpd, Netns, TempPath};

/// One test per encapsulation, each named after it.
mod udp_datagrams_without_df_arrive_intact {
    #[test]
    fn ipip() {
        super::udp_datagrams_without_df_arrive_intact("ipip", "");
    }
    #[test]
    fn gre() {
        super::udp_datagrams_without_df_arrive_intact("gre", "");
    }
    #[test]
    fn gue() {
        super::udp_datagrams_without_df_arrive_intact("gue", "");
    }
    /// With `--tun-csum` the UDP checksum in the first fragment covers the whole datagram; the
    /// real server's kernel verifies it after reassembly.
    #[test]
    fn gue_with_udp_checksum() {
        super::udp_datagrams_without_df_arrive_intact("gue", "--tun-csum");
    }
}

/// The UDP service port on the VIP.
const PORT: u16 = 9000;

/// The MTU of every link in the lab (and of the director's tunnel MTU, the default).
const MTU: usize = 1500;

/// UDP payload sizes the client sends, each from a new socket (so rr alternates): 1472 fills
/// one 1500-byte packet exactly; 3000 and 8000 are fragmented by the client first, and the
/// full-size inner fragments are fragmented again by the director.
const SIZES: [usize; 6] = [1472, 1472, 3000, 3000, 8000, 8000];

/// Bytes each encapsulation adds.
fn overhead(encap: &str) -> usize {
    match encap {
        "ipip" => 20,
        "gre" => 24,
        "gue" => 32,
        other => panic!("unknown encapsulation {other}"),
    }
}

/// How many outer fragments the director sends for a UDP datagram of `payload` bytes: the
/// client cuts the IPv4 datagram into packets of at most 1500 bytes (1480 data bytes each but
/// the last); each one that no longer fits 1500 bytes once encapsulated becomes two fragments.
fn outer_fragments(payload: usize, encap: &str) -> u64 {
    let mut data = 8 + payload;
    let mut frags = 0;
    while data > 0 {
        let part = data.min(MTU - 20);
        if 20 + part + overhead(encap) > MTU {
            frags += 2;
        }
        data -= part;
    }
    frags
}

/// nftables counters for the router: outer fragments from the director, and the client's
/// packets to the VIP with DF set (there must be none) or fragmented by the client.
fn router_counters() -> String {
    format!(
        "table inet tlbfrag {{
            counter outer_frags {{}}
            counter inner_df {{}}
            counter inner_frags {{}}
            chain fwd_count {{ type filter hook forward priority 0; policy accept;
                ip saddr {DIRECTOR} ip frag-off & 0x3fff != 0 counter name \"outer_frags\"
                ip daddr {VIP} ip frag-off & 0x4000 != 0 counter name \"inner_df\"
                ip daddr {VIP} ip frag-off & 0x3fff != 0 counter name \"inner_frags\"
            }}
        }}"
    )
}

/// Sends `file` as one UDP datagram to `vip`:`port` from a socket in `client` bound to
/// `sport` (with DF clear over IPv4; over IPv6 the client's kernel fragments it to its path
/// MTU) and returns the answer (empty if none came within 5 s).
///
/// Each datagram gets its own source port: a port the kernel picked could repeat an earlier
/// datagram's, whose UDP flow the director still holds, and rr would then not advance.
pub(crate) fn send_datagram(
    client: &Netns,
    file: &TempPath,
    sport: u16,
    vip: &str,
    port: u16,
) -> String {
    const SENDER: &str = "import socket, sys
if ':' in sys.argv[3]:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind(('::', int(sys.argv[2])))
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, 10, 0)  # IP_MTU_DISCOVER = IP_PMTUDISC_DONT: DF clear
    s.bind(('0.0.0.0', int(sys.argv[2])))
s.connect((sys.argv[3], int(sys.argv[4])))
s.send(open(sys.argv[1], 'rb').read())
s.settimeout(5)
try:
    sys.stdout.write(s.recv(65536).decode('utf-8', 'replace'))
except socket.timeout:
    pass
";
    let out = client.try_exec(
        "python3",
        &[
            "-c",
            SENDER,
            &file.arg(),
            &sport.to_string(),
            vip,
            &port.to_string(),
        ],
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn udp_datagrams_without_df_arrive_intact(encap: &str, extra: &str) {
    let lab = tun_lab::build();
    let (client, director, router) = (lab.ns("client"), lab.ns("director"), lab.ns("router"));
    // Every socket of the client sends with DF clear.
    client.sysctl("net.ipv4.ip_no_pmtu_disc", "1");
    router.nft(&router_counters());

    start_director(director, &["--local-address", DIRECTOR]);
    let service = format!("{VIP}:{PORT}");
    for (role, rip) in [("rs1", RS1), ("rs2", RS2)] {
        let ns = lab.ns(role);
        start_agent(ns, VIP, encap, &format!("{DIRECTOR}/32"));
        // The UDP socket is bound before the HTTP listener serves.
        start_httpd(ns, &service, &format!("from {rip}"), &["--udp-echo"]);
    }
    adm(director, &format!("-A -u {service} -s rr"));
    for rip in [RS1, RS2] {
        adm(
            director,
            &format!("-a -u {service} -r {rip} -i --tun-type {encap} {extra}"),
        );
    }
    eprintln!("{}", adm(director, "-L -n"));

    let mut from = Vec::new();
    let mut expected_frags = 0;
    for (i, size) in SIZES.into_iter().enumerate() {
        let mut data = vec![0u8; size];
        fill_blob((i as u64) << 20, &mut data);
        let file = TempPath::new(&format!("datagram-{encap}-{i}-{}", client.name()));
        fs::write(file.path(), &data).expect("write the datagram");
        let answer = send_datagram(client, &file, 41000 + i as u16, VIP, PORT);
        let mut lines = answer.lines();
        let banner = lines.next().unwrap_or_default().to_owned();
        assert!(
            banner == format!("from {RS1}") || banner == format!("from {RS2}"),
            "datagram {i} ({size} bytes): no answer from a real server, got {answer:?}"
        );
        let rest: Vec<&str> = lines.collect();
        assert_eq!(
            rest,
            [
                format!("length {size}"),
                format!("sha256 {}", sha256_hex(&data))
            ],
            "datagram {i} ({size} bytes) arrived changed at {banner}"
        );
        from.push(banner);
        expected_frags += outer_fragments(size, encap);
    }
    for pair in from.windows(2) {
        assert_ne!(pair[0], pair[1], "rr must alternate: {from:?}");
    }
    // Six datagrams from six source ports: six UDP flows, three per real server (a later
    // fragment scheduled on its own would be a seventh).
    let stats = adm(director, "-L -n --stats");
    for rip in [RS1, RS2] {
        let line = stats
            .lines()
            .find(|l| l.starts_with("  -> ") && l.contains(&format!("{rip}:")))
            .unwrap_or_else(|| panic!("no line for {rip} in:\n{stats}"));
        let conns = line.split_whitespace().nth(2);
        assert_eq!(conns, Some("3"), "UDP flows to {rip}:\n{stats}");
    }

    // The client really sent without DF, and the director really fragmented the outer packets.
    assert_eq!(router.nft_counter("tlbfrag", "inner_df"), 0);
    assert!(router.nft_counter("tlbfrag", "inner_frags") > 0);
    assert_eq!(
        router.nft_counter("tlbfrag", "outer_frags"),
        expected_frags,
        "outer fragments from the director"
    );
}

#[test]
fn outer_fragment_count_follows_the_mtu() {
    // 1472 bytes fill one 1500-byte packet: two fragments once encapsulated.
    assert_eq!(outer_fragments(1472, "gue"), 2);
    // 3000 bytes: client packets of 1500, 1500 and 68 bytes; the first two are fragmented.
    assert_eq!(outer_fragments(3000, "ipip"), 4);
    // 1448 bytes + 28 + 24 of GRE = 1500: fits.
    assert_eq!(outer_fragments(1448, "gre"), 0);
}
