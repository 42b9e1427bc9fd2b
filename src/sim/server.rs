//! A real server: how packets reach it (a tunnel agent, a DR frame, NAT), and an echo
//! application that answers from the address it was reached at.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{
    packets, AllowList, Filter, Flow, IpProtocol, Ipv4Packet, TcpFlags, TcpPacket, TunnelType,
    UdpPacket, DEFAULT_GUE_PORT,
};

/// How a real server is reached, i.e. what it runs besides its application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reach {
    /// A TUN-mode agent for one tunnel type (GRE with `gre_key`, GUE on `gue_port`); the VIPs
    /// are hidden on `lo` and replies go straight to the client.
    Tunnel {
        tun: TunnelType,
        gre_key: Option<u32>,
        gue_port: u16,
    },
    /// DR: the VIPs hidden on `lo`, the director's frames arrive by MAC, replies go straight
    /// to the client.
    Dr,
    /// NAT: the director rewrote the destination to this server; replies go to `gateway` (the
    /// director's address), which rewrites them back.
    Nat {
        /// Where replies are sent (the default route).
        gateway: Ipv4Addr,
    },
}

impl Reach {
    /// An IPIP agent.
    pub(crate) fn ipip() -> Reach {
        Reach::tunnel(TunnelType::Ipip, None)
    }

    /// A GRE agent expecting `key`.
    pub(crate) fn gre(key: Option<u32>) -> Reach {
        Reach::tunnel(TunnelType::Gre, key)
    }

    /// A GUE agent on the default port.
    pub(crate) fn gue() -> Reach {
        Reach::tunnel(TunnelType::Gue, None)
    }

    /// An agent for `tun`.
    pub(crate) fn tunnel(tun: TunnelType, gre_key: Option<u32>) -> Reach {
        Reach::Tunnel {
            tun,
            gre_key,
            gue_port: DEFAULT_GUE_PORT,
        }
    }
}

/// What the server's echo application saw of one flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ServedFlow {
    /// Packets received.
    pub(crate) packets: u64,
    /// Packets answered.
    pub(crate) answered: u64,
}

/// A real server node.
#[derive(Debug)]
pub(crate) struct RealServer {
    /// Its own address (RIP).
    pub(crate) addr: Ipv4Addr,
    /// Its Ethernet address (DR).
    pub(crate) mac: [u8; 6],
    /// The VIPs it answers for (hidden on `lo`).
    pub(crate) vips: Vec<Ipv4Addr>,
    /// How it is reached.
    pub(crate) reach: Reach,
    /// The agent's checks (TUN mode only).
    filter: Option<Filter>,
    /// The flows its application served, by flow as the client sees it.
    pub(crate) flows: HashMap<Flow, ServedFlow>,
    /// Packets refused, by reason (the agent's drop labels, `not_for_me`, `not_tcp_udp`).
    pub(crate) drops: BTreeMap<&'static str, u64>,
}

impl RealServer {
    /// A server at `addr` for `vips`; a TUN agent accepts tunnel packets from `allow`.
    pub(crate) fn new(
        addr: Ipv4Addr,
        mac: [u8; 6],
        vips: &[Ipv4Addr],
        reach: Reach,
        allow: Ipv4Net,
    ) -> RealServer {
        let filter = match reach {
            Reach::Tunnel { tun, gre_key, .. } => {
                Some(Filter::new(AllowList::new(&[allow]), vips, tun, gre_key))
            }
            _ => None,
        };
        RealServer {
            addr,
            mac,
            vips: vips.to_vec(),
            reach,
            filter,
            flows: HashMap::new(),
            drops: BTreeMap::new(),
        }
    }

    /// How many distinct flows its application served.
    pub(crate) fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// All refused packets.
    pub(crate) fn dropped(&self) -> u64 {
        self.drops.values().sum()
    }

    fn drop(&mut self, why: &'static str) -> Option<Vec<u8>> {
        *self.drops.entry(why).or_default() += 1;
        None
    }

    /// A frame for this server's MAC (DR): the client's packet, unchanged.
    pub(crate) fn handle_frame(&mut self, pkt: &[u8]) -> Option<Vec<u8>> {
        match Ipv4Packet::new_checked(pkt) {
            Ok(ip) if self.vips.contains(&ip.dst_addr()) => self.serve(pkt),
            _ => self.drop("not_for_me"),
        }
    }

    /// An IP packet routed to this server's address: a tunnel packet for its agent, or (NAT)
    /// the client's packet with the destination rewritten. Returns the application's reply.
    pub(crate) fn handle_ip(&mut self, pkt: &[u8]) -> Option<Vec<u8>> {
        let Ok(ip) = Ipv4Packet::new_checked(pkt) else {
            return self.drop("malformed");
        };
        let src = ip.src_addr();
        match (self.reach, self.filter.as_mut()) {
            (
                Reach::Tunnel {
                    tun: TunnelType::Gue,
                    gue_port,
                    ..
                },
                Some(filter),
            ) => {
                // What a UDP socket on the GUE port hands the agent: the payload.
                let udp = match UdpPacket::new_checked(ip.payload()) {
                    Ok(u) if ip.protocol() == IpProtocol::UDP && u.dst_port() == gue_port => u,
                    _ => return self.drop("not_for_me"),
                };
                let payload = udp.payload();
                match filter.check_gue(payload, src, ip.dst_addr()) {
                    Ok(inner) => self.serve(&payload[inner]),
                    Err(e) => self.drop(e.as_str()),
                }
            }
            (Reach::Tunnel { .. }, Some(filter)) => match filter.check_ip(pkt, src) {
                Ok(inner) => self.serve(&pkt[inner]),
                Err(e) => self.drop(e.as_str()),
            },
            (Reach::Nat { .. }, _) if ip.dst_addr() == self.addr => self.serve(pkt),
            _ => self.drop("not_for_me"),
        }
    }

    /// The echo application: answers from the packet's destination (the VIP, or for NAT the
    /// RIP) to its source. TCP: SYN -> SYN|ACK, FIN -> FIN|ACK, data -> the data back (with
    /// ACK), a bare ACK -> nothing. UDP: the datagram back.
    fn serve(&mut self, pkt: &[u8]) -> Option<Vec<u8>> {
        let ip = Ipv4Packet::new_checked(pkt).ok()?;
        let (from, to) = (ip.dst_addr(), ip.src_addr());
        let (reply, flow) = match ip.protocol() {
            IpProtocol::TCP => {
                let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
                if !tcp.verify_checksum(to, from) {
                    return self.drop("bad_checksum");
                }
                let flow = Flow::tcp(to, tcp.src_port(), from, tcp.dst_port());
                let f = tcp.flags();
                let reply = if f.contains(TcpFlags::SYN) && !f.contains(TcpFlags::ACK) {
                    Some(tcp_segment(from, to, &tcp, 0x12, &[]))
                } else if f.contains(TcpFlags::FIN) {
                    Some(tcp_segment(from, to, &tcp, 0x11, &[]))
                } else if !tcp.payload().is_empty() {
                    Some(tcp_segment(from, to, &tcp, 0x18, tcp.payload()))
                } else {
                    None
                };
                (reply, flow)
            }
            IpProtocol::UDP => {
                let udp = UdpPacket::new_checked(ip.payload()).ok()?;
                if !udp.verify_checksum(to, from) {
                    return self.drop("bad_checksum");
                }
                let flow = Flow::udp(to, udp.src_port(), from, udp.dst_port());
                let reply = udp_datagram(from, udp.dst_port(), to, udp.src_port(), udp.payload());
                (Some(reply), flow)
            }
            _ => return self.drop("not_tcp_udp"),
        };
        let served = self.flows.entry(flow).or_default();
        served.packets += 1;
        served.answered += u64::from(reply.is_some());
        reply
    }
}

/// A TCP segment answering `to_this` (ports swapped), with `flags` and `payload`.
fn tcp_segment(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    to_this: &TcpPacket<&[u8]>,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    tcp(
        src,
        to_this.dst_port(),
        dst,
        to_this.src_port(),
        flags,
        payload,
    )
}

/// A TCP/IPv4 packet with `payload` (DF set, valid checksums).
pub(crate) fn tcp(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = packets::tcp_packet(src, sport, dst, dport, flags, payload.len());
    if payload.is_empty() {
        return p;
    }
    let mut t = TcpPacket::new_checked(&mut p[20..]).expect("built well-formed");
    t.payload_mut().copy_from_slice(payload);
    t.fill_checksum(src, dst);
    p
}

/// A UDP/IPv4 packet with `payload` (DF set, valid checksums).
pub(crate) fn udp_datagram(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = packets::udp_packet(src, sport, dst, dport, payload.len());
    let mut u = UdpPacket::new_checked(&mut p[20..]).expect("built well-formed");
    u.payload_mut().copy_from_slice(payload);
    u.fill_checksum(src, dst);
    p
}
