//! Where a packet leaves: one module per send path.
//!
//! - [`raw`]: the `IP_HDRINCL` raw socket, `sendmmsg` of encapsulated packets (TUN mode when
//!   the real server is not reached by frames, and always with `--tunnel-tx raw`).
//! - [`frames`]: the `AF_PACKET` socket, Ethernet frames to a next hop's MAC: DR packets, and
//!   TUN-mode packets with `--tunnel-tx frames`.
//! - [`gue_train`]: GUE super-packets as UDP GSO trains (a UDP socket with `UDP_SEGMENT`, or one
//!   frame per train on the `PACKET_VNET_HDR` socket).
//!
//! What the three share: `encap_segments` (the segments of an encapsulated super-packet) and
//! the accounting of lost packets (`lost_packets`, [`SendFailures`]).

pub mod frames;
pub mod gue_train;
pub mod raw;

use std::ops::Range;

use crate::director::stats::EncapKind;
use crate::director::Encap;
use crate::encap::MAX_OUTER_HEADER;
use crate::sys::raw::MsgError;
use crate::wire::checksum;
use crate::wire::gso::{self, Segmenter, MAX_SEGMENT_HEADER};

/// How many GSO segments one batch's send queues hold ([`raw::RawQueue`],
/// [`frames::FrameQueue`]; allocated once).
pub const MAX_QUEUED_SEGMENTS: usize = 1024;

/// Builds every segment of the super-packet `pkt` that the core decided to encapsulate as
/// `e` and hands it to `push` (headers, payload range in `pkt`): the outer header is copied in
/// front of each segment's headers and fixed for its length ([`gso::fix_outer`]). Returns
/// false at the first segment that cannot be built or pushed.
pub(crate) fn encap_segments(
    pkt: &[u8],
    e: &Encap,
    seg: &Segmenter,
    mut push: impl FnMut(&[u8], Range<usize>) -> bool,
) -> bool {
    let hl = usize::from(e.header_len);
    let tail = e.tunnel.outer_tail();
    for i in 0..seg.count() {
        let mut header = [0u8; MAX_OUTER_HEADER + MAX_SEGMENT_HEADER];
        let (outer, inner) = header.split_at_mut(hl);
        outer.copy_from_slice(e.header());
        let Some(s) = seg.segment(pkt, i, inner) else {
            return false;
        };
        let inner_sum = checksum::combine(&[checksum::data(&inner[..s.header_len]), s.payload_sum]);
        if !gso::fix_outer(outer, tail, s.header_len + s.payload.len(), inner_sum) {
            return false;
        }
        if !push(&header[..hl + s.header_len], s.payload) {
            return false;
        }
    }
    true
}

/// The packets the failed sends (positions in `queued`, ascending) belonged to, one queued
/// item of each: the fragments of one packet (same batch `slot`) sit side by side, and one
/// lost fragment loses the packet. Shared by the frame queue and the raw-socket queue.
pub(crate) fn lost_packets<'a, T>(
    queued: &'a [T],
    failures: &'a [MsgError],
    slot: impl Fn(&T) -> usize + 'a,
) -> impl Iterator<Item = &'a T> + 'a {
    let mut last = None;
    failures.iter().filter_map(move |f| {
        let item = queued.get(f.index)?;
        (last.replace(slot(item)) != Some(slot(item))).then_some(item)
    })
}

/// Packets a [`FrameQueue::flush`](frames::FrameQueue::flush) lost, by the `type` label of `tunlb_encap_errors_total`
/// (DR frames and TUN-mode frames share the queue).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendFailures([u64; EncapKind::ALL.len()]);

impl SendFailures {
    /// Counts `n` more lost packets of `kind`.
    pub fn add(&mut self, kind: EncapKind, n: u64) {
        self.0[kind as usize] += n;
    }

    /// Lost packets of every kind.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The kinds that lost any, with their counts.
    pub fn by_kind(&self) -> impl Iterator<Item = (EncapKind, u64)> + '_ {
        EncapKind::ALL
            .into_iter()
            .zip(self.0)
            .filter(|&(_, n)| n > 0)
    }
}
