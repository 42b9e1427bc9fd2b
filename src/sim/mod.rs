//! An in-memory simulator: director cores, real servers with their agents, clients and a
//! virtual network, wired without sockets and driven by a virtual clock (tests only).
//!
//! The director core never reads a clock ([`Director::handle_packet`] takes `now`), so a
//! scenario with thousands of flows, servers added and removed, or a director replaced runs in
//! milliseconds. The pattern is quinn-proto's `tests/util.rs` `Pair`, grown to a whole network.
//!
//! # Pieces
//!
//! - [`Net`] (`net.rs`): the nodes, routes by destination prefix (several nodes on one route
//!   share it ECMP-style, by flow hash), a MAC table for DR frames, per-link seeded loss, a
//!   fixed per-hop latency, and the clock. [`Net::step`] delivers one packet;
//!   [`Net::run_until`] / [`Net::advance`] / [`Net::settle`] move time, running the directors'
//!   `handle_timeout` on the way (every sweep interval, coalesced over idle stretches).
//! - [`SimDirector`] (`director.rs`): a [`Registry`], a [`Shared`] and one or more worker
//!   [`Director`]s; packets are spread over workers by flow hash as TUN queues do. Its verdicts
//!   become packets: an `Encap` leaves as `header + inner`, an `Ether` as a frame to a MAC, a
//!   `Rewrite` / `Reply` is routed on by its new destination.
//! - [`RealServer`] (`server.rs`): a TUN-mode agent (the real [`Filter`]: allow-list, strip,
//!   VIP check), or a DR server (hidden VIP, frames by MAC), or a NAT server (replies through
//!   its gateway, the director); its echo "application" answers TCP and UDP.
//! - [`Client`] (`client.rs`): opens TCP flows, sends data and UDP datagrams, checks every reply
//!   (from the VIP, checksums, echoed payload) and records which real server made it.
//! - `fixtures.rs`: services and real servers in a line each (the model types live there only).
//!
//! # Writing a scenario
//!
//! ```ignore
//! let mut net = Net::new(seed); // the seed drives the links' loss
//! let dests = vec![dest(RS1, 1, tunnel(TunnelType::Ipip, None))];
//! let web = service(Protocol::Tcp, VIP, 80, SchedulerKind::Rr, dests);
//! let set = ServiceSet { services: vec![web] };
//! let dir = net.add_director(DIRECTOR, &set, DirectorConfig::default(), 2); // 2 worker cores
//! let rs = net.add_server(RS1, &[VIP], Reach::ipip());
//! let cl = net.add_client("10.1.0.0/16".parse().unwrap());
//! let flow = Flow::tcp(Ipv4Addr::new(10, 1, 0, 1), 40000, VIP, 80);
//! net.tcp_connect(cl, flow);         // SYN; the client ACKs the SYN|ACK by itself
//! net.send_data(cl, flow);           // one data segment, echoed back by the server
//! net.settle();                      // deliver everything in flight
//! assert_eq!(net.client(cl).flow(&flow).servers, [rs]); // who answered, in order
//! assert_eq!(net.client(cl).flow(&flow).echoed, 1);
//! net.publish(dir, &new_set);        // servers added / removed, as the control plane does
//! net.advance(Duration::from_secs(600)); // timeouts expire through handle_timeout
//! assert_eq!(net.director(dir).conns(), 0);
//! ```
//!
//! Send many flows' packets, then `settle()` once: the network interleaves them. A scenario
//! asserts outcomes, not packets: which servers answered each flow (`ClientFlow::servers`),
//! what each server's application saw (`RealServer::flows`), the directors' counters and
//! drop reasons (`SimDirector::dropped`), table sizes, `Net::stats`. The scenarios in
//! `scenarios/` (forwarding, churn, directors) are examples of each. More directors:
//! `add_director` again with the same VIPs makes an ECMP group; `set_route` moves a VIP
//! (what VRRP or BGP do); `replace_director` restarts one with an empty connection table.
//! Connection sync between directors: `SimDirector::set_sync_emit` / `take_sync` on the
//! master, `dump_sync` for a bulk copy, `install_synced` on the other (what the sync daemon
//! carries over UDP).
//!
//! Everything the simulator takes from the rest of the crate is imported below, in one place.
//!
//! # At scale
//!
//! [`scale`] runs 100 directors × 1,000 real servers × 10⁶ flows through the director cores
//! (docs/scale-out.md). Outside tests the simulator is built only with the `sim` feature, for
//! `cargo run --release --features sim --example ecmp_scale`; there only [`scale`] is used.
//! [`maglev_paper`] reruns the Maglev paper's §5.3 (balance, resilience, build time) on the
//! real `mh` table builder, for `examples/maglev_paper.rs`.

// Without `cfg(test)` (the `sim` feature) only `scale` is reachable.
#![cfg_attr(not(test), allow(dead_code, unused_imports))]

use std::net::Ipv4Addr;

pub(crate) use crate::director::conn::Timeouts;
pub(crate) use crate::director::dr::NeighEntry;
pub(crate) use crate::director::sched::{mh_table, DestState, FlowKey, SchedDest, SchedOptions};
pub(crate) use crate::director::{
    Director, DirectorConfig, DropReason, InstallStats, Registry, Shared, Snapshot, SyncRecord,
    Verdict,
};
pub(crate) use crate::encap::{TunnelType, DEFAULT_GUE_PORT};
pub(crate) use crate::model::v4::{DestConfig, Persistence, ServiceConfig, ServiceKey, ServiceSet};
pub(crate) use crate::model::{ExpirePolicy, Forward, Protocol, SchedulerKind};
pub(crate) use crate::realserver::{AllowList, Filter};
pub(crate) use crate::time::{Duration, Instant};
pub(crate) use crate::wire::UdpPacket;
pub(crate) use crate::wire::{testing as packets, IpProtocol, Ipv4Packet, TcpFlags, TcpPacket};

mod client;
mod director;
mod fixtures;
pub mod maglev_paper;
mod net;
mod rng;
pub mod scale;
mod server;

#[cfg(test)]
mod scenarios;

pub(crate) use client::{Client, FlowState};
pub(crate) use director::SimDirector;
pub(crate) use fixtures::*;
pub(crate) use net::Net;
pub(crate) use rng::Rng;
pub(crate) use server::{Reach, RealServer};

/// A node of the [`Net`]: an index into its node list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct NodeId(pub(crate) usize);

/// One flow as the client sees it: protocol, client address and port, VIP and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Flow {
    /// `IpProtocol::TCP` or `IpProtocol::UDP`.
    pub(crate) proto: u8,
    pub(crate) client: Ipv4Addr,
    pub(crate) cport: u16,
    pub(crate) vip: Ipv4Addr,
    pub(crate) vport: u16,
}

impl Flow {
    /// A TCP flow.
    pub(crate) fn tcp(client: Ipv4Addr, cport: u16, vip: Ipv4Addr, vport: u16) -> Flow {
        Flow {
            proto: IpProtocol::TCP,
            client,
            cport,
            vip,
            vport,
        }
    }

    /// A UDP flow.
    pub(crate) fn udp(client: Ipv4Addr, cport: u16, vip: Ipv4Addr, vport: u16) -> Flow {
        Flow {
            proto: IpProtocol::UDP,
            ..Flow::tcp(client, cport, vip, vport)
        }
    }
}

/// A 64-bit mix of a packet's addresses, protocol and ports (ECMP and TUN-queue choice).
pub(crate) fn flow_hash(pkt: &[u8], seed: u64) -> u64 {
    let Ok(ip) = Ipv4Packet::new_checked(pkt) else {
        return seed;
    };
    let ports = match ip.protocol() {
        IpProtocol::TCP | IpProtocol::UDP if ip.payload().len() >= 4 && !ip.is_fragment() => {
            let p = ip.payload();
            u64::from(u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
        }
        _ => 0,
    };
    let addrs = (u64::from(u32::from(ip.src_addr())) << 32) | u64::from(u32::from(ip.dst_addr()));
    let mut s = seed ^ addrs ^ ports.rotate_left(17) ^ u64::from(ip.protocol()) << 56;
    rng::splitmix64(&mut s)
}
