//! Clients: a prefix of addresses that open TCP flows and send UDP datagrams to VIPs, check
//! every reply and remember which real server made it.

use std::collections::HashMap;

use ipnet::Ipv4Net;

use super::server::{tcp, udp_datagram};
use super::{Flow, IpProtocol, Ipv4Packet, NodeId, TcpFlags, TcpPacket, UdpPacket};

/// Where a client flow is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FlowState {
    /// TCP: SYN sent, no SYN|ACK yet.
    SynSent,
    /// TCP after the handshake, or any UDP flow.
    Open,
    /// TCP: FIN sent, no FIN|ACK yet.
    FinSent,
    /// TCP: FIN|ACK received and acknowledged.
    Closed,
}

/// What a client knows of one of its flows.
#[derive(Clone, Debug)]
pub(crate) struct ClientFlow {
    /// Where it is.
    pub(crate) state: FlowState,
    /// Data segments or datagrams sent.
    pub(crate) sent: u32,
    /// Of those, echoed back intact.
    pub(crate) echoed: u32,
    /// The real servers whose replies arrived, in order, a server listed again only after
    /// another one answered in between (one entry: the flow stuck to one server).
    pub(crate) servers: Vec<NodeId>,
}

impl ClientFlow {
    /// The real server that answered last.
    pub(crate) fn server(&self) -> Option<NodeId> {
        self.servers.last().copied()
    }
}

/// A client node: every address of `prefix` belongs to it.
#[derive(Debug)]
pub(crate) struct Client {
    /// Its addresses.
    pub(crate) prefix: Ipv4Net,
    flows: HashMap<Flow, ClientFlow>,
    /// Replies that belong to no flow, come from the wrong address or port, or fail their
    /// checksum or payload check.
    pub(crate) bad_replies: u64,
    /// ICMP messages received.
    pub(crate) icmp: u64,
}

impl Client {
    /// A client owning `prefix`.
    pub(crate) fn new(prefix: Ipv4Net) -> Client {
        Client {
            prefix,
            flows: HashMap::new(),
            bad_replies: 0,
            icmp: 0,
        }
    }

    /// A flow's record; panics if the client never opened it.
    pub(crate) fn flow(&self, flow: &Flow) -> &ClientFlow {
        self.flows
            .get(flow)
            .unwrap_or_else(|| panic!("no flow {flow:?}"))
    }

    /// Every flow.
    pub(crate) fn flows(&self) -> impl Iterator<Item = (&Flow, &ClientFlow)> {
        self.flows.iter()
    }

    /// A TCP SYN opening `flow`.
    pub(crate) fn connect(&mut self, flow: Flow) -> Vec<u8> {
        assert_eq!(flow.proto, IpProtocol::TCP);
        self.flows.insert(
            flow,
            ClientFlow {
                state: FlowState::SynSent,
                sent: 0,
                echoed: 0,
                servers: Vec::new(),
            },
        );
        tcp(flow.client, flow.cport, flow.vip, flow.vport, 0x02, &[])
    }

    /// The next data segment (TCP) or datagram (UDP, opening the flow if new) of `flow`.
    pub(crate) fn data(&mut self, flow: Flow) -> Vec<u8> {
        let f = self.flows.entry(flow).or_insert(ClientFlow {
            state: FlowState::Open,
            sent: 0,
            echoed: 0,
            servers: Vec::new(),
        });
        f.sent += 1;
        let payload = payload(&flow, f.sent);
        if flow.proto == IpProtocol::TCP {
            tcp(
                flow.client,
                flow.cport,
                flow.vip,
                flow.vport,
                0x18,
                &payload,
            )
        } else {
            udp_datagram(flow.client, flow.cport, flow.vip, flow.vport, &payload)
        }
    }

    /// A FIN closing TCP `flow`.
    pub(crate) fn close(&mut self, flow: Flow) -> Vec<u8> {
        if let Some(f) = self.flows.get_mut(&flow) {
            f.state = FlowState::FinSent;
        }
        tcp(flow.client, flow.cport, flow.vip, flow.vport, 0x11, &[])
    }

    /// A packet for this client, made by node `origin`; returns what the client sends back
    /// (the ACK of a SYN|ACK or of a FIN|ACK).
    pub(crate) fn handle(&mut self, origin: NodeId, pkt: &[u8]) -> Option<Vec<u8>> {
        let Ok(ip) = Ipv4Packet::new_checked(pkt) else {
            self.bad_replies += 1;
            return None;
        };
        if !ip.verify_checksum() {
            self.bad_replies += 1;
            return None;
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if !self.prefix.contains(&dst) {
            self.bad_replies += 1;
            return None;
        }
        let (flow, flags, data) = match ip.protocol() {
            IpProtocol::TCP => match TcpPacket::new_checked(ip.payload()) {
                Ok(t) if t.verify_checksum(src, dst) => (
                    Flow::tcp(dst, t.dst_port(), src, t.src_port()),
                    t.flags(),
                    t.payload().to_vec(),
                ),
                _ => {
                    self.bad_replies += 1;
                    return None;
                }
            },
            IpProtocol::UDP => match UdpPacket::new_checked(ip.payload()) {
                Ok(u) if u.verify_checksum(src, dst) => (
                    Flow::udp(dst, u.dst_port(), src, u.src_port()),
                    TcpFlags::default(),
                    u.payload().to_vec(),
                ),
                _ => {
                    self.bad_replies += 1;
                    return None;
                }
            },
            IpProtocol::ICMP => {
                self.icmp += 1;
                return None;
            }
            _ => {
                self.bad_replies += 1;
                return None;
            }
        };
        // A reply must come from the VIP and port the flow went to (DSR, or NAT rewritten).
        let Some(f) = self.flows.get_mut(&flow) else {
            self.bad_replies += 1;
            return None;
        };
        if f.servers.last() != Some(&origin) {
            f.servers.push(origin);
        }
        if !data.is_empty() {
            if data.len() == PAYLOAD_LEN && data[..12] == payload(&flow, 0)[..12] {
                f.echoed += 1;
            } else {
                self.bad_replies += 1;
            }
        }
        let syn_ack = flags.contains(TcpFlags::SYN) && flags.contains(TcpFlags::ACK);
        if syn_ack && f.state == FlowState::SynSent {
            f.state = FlowState::Open;
            return Some(tcp(
                flow.client,
                flow.cport,
                flow.vip,
                flow.vport,
                0x10,
                &[],
            ));
        }
        if flags.contains(TcpFlags::FIN) && f.state == FlowState::FinSent {
            f.state = FlowState::Closed;
            return Some(tcp(
                flow.client,
                flow.cport,
                flow.vip,
                flow.vport,
                0x10,
                &[],
            ));
        }
        None
    }
}

const PAYLOAD_LEN: usize = 16;

/// The `n`th payload of `flow`: client address, ports and VIP, then `n` (the echo must bring
/// back the first 12 bytes unchanged).
fn payload(flow: &Flow, n: u32) -> [u8; PAYLOAD_LEN] {
    let mut p = [0u8; PAYLOAD_LEN];
    p[0..4].copy_from_slice(&flow.client.octets());
    p[4..6].copy_from_slice(&flow.cport.to_be_bytes());
    p[6..8].copy_from_slice(&flow.vport.to_be_bytes());
    p[8..12].copy_from_slice(&flow.vip.octets());
    p[12..16].copy_from_slice(&n.to_be_bytes());
    p
}
