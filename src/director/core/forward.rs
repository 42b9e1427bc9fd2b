//! From a decision to the real server's mode: [`forward`] clamps a SYN's MSS and hands the
//! packet to the mode of the real server it goes to; [`handle_icmp`] finds the flow an ICMP
//! error to a VIP is about.

use crate::director::conn::{ConnKey, ConnTable};
use crate::director::modes::context::Ctx;
use crate::director::modes::{dr, nat, tunnel};
use crate::director::packet::verdict::{DropReason, Verdict};
use crate::director::packet::Parsed;
use crate::director::table::Dest;
use crate::hash::flow_hash;
use crate::model::Forward;
use crate::wire::TcpPacket;

/// Sends the packet to real server `dest` with its forwarding method, its MSS clamped to
/// `mss_clamp` first (a SYN of a service with `mss_clamp`); `hash` is the flow's hash (the GUE
/// source port).
#[inline]
pub(super) fn forward(
    cx: &mut Ctx<'_>,
    dest: &Dest,
    buf: &mut [u8],
    p: &Parsed,
    mss_clamp: Option<u16>,
    hash: u32,
) -> Verdict {
    if let Some(mss) = mss_clamp {
        if let Ok(mut tcp) = TcpPacket::new_checked(&mut buf[p.ihl..p.len]) {
            if tcp.clamp_mss(mss) {
                cx.counters.mss_clamped += 1;
            }
        }
    }
    match dest.config.forward {
        Forward::Dr => dr::route(cx, dest, buf, p),
        Forward::Nat => nat::to_server(cx, dest, buf, p),
        Forward::Tunnel(t) => tunnel::to_dest(cx, dest, t, buf, p, hash),
    }
}

/// ICMP to a VIP: errors about a known flow go to that flow's real server (a NAT flow's are
/// translated first).
pub(super) fn handle_icmp(
    cx: &mut Ctx<'_>,
    conns: &mut ConnTable,
    buf: &mut [u8],
    p: &Parsed,
) -> Verdict {
    let Some(msg) = p.icmp else {
        return Verdict::Drop(DropReason::IcmpUnsupported);
    };
    if !msg.is_error {
        return Verdict::Drop(DropReason::IcmpUnsupported);
    }
    // The embedded packet is one the real server sent from the VIP to the client.
    let Some(q) = msg.quote else {
        return Verdict::Drop(DropReason::IcmpUnsupported);
    };
    let key = ConnKey {
        proto: q.proto,
        flags: 0,
        caddr: q.dst,
        cport: q.dport,
        vaddr: q.src,
        vport: q.sport,
    };
    let Some(dest) = conns.get(&key).and_then(|c| cx.snap.dest(c.dest)) else {
        if cx.snap.has_nat() {
            return nat::icmp_from_client(cx, buf, p);
        }
        return Verdict::Drop(DropReason::IcmpNoFlow);
    };
    let hash = flow_hash(q.dst, q.dport, q.src, q.sport, q.proto);
    forward(cx, dest, buf, p, None, hash)
}
