//! Tunnel receive I/O shared by the real-server agent, the gateway agent and the director's
//! return-traffic receiver: a tunnel socket in, each packet checked by an [`Accept`] policy
//! ([`Filter`]), the inner packets written into a TUN device.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::filter::{AgentDrop, Filter};
use super::gro::{self, TcpMerge};
use super::merged::{self, Merged, MtuCache};
use super::stats::AgentStats;
use crate::encap::{StripError, TunnelType};
use crate::sys::neigh::Netlink;
use crate::sys::raw::{RawReceiver, UdpReceiver};
use crate::sys::tun::TunQueue;
use crate::sys::PacketBatch;
use crate::wire::gso::{Segmenter, VnetHdr, VNET_HDR_LEN};

/// Largest IPv4 datagram: the receive slot size, so reassembled tunnel packets fit whole.
pub const MAX_DATAGRAM: usize = 65_535;

/// How long one receive waits before the loop looks at its stop condition and stats timer.
pub const POLL_TIMEOUT: Duration = Duration::from_millis(200);

/// The tunnel socket.
#[derive(Debug)]
pub enum Receiver {
    /// IPIP or GRE: packets start with the outer IPv4 header.
    Raw(RawReceiver),
    /// GUE: UDP payloads.
    Udp(UdpReceiver),
}

impl Receiver {
    /// Opens the socket for `encap`: a raw socket for IP protocol 4 or 47 (with `IP_PKTINFO`
    /// on, to tell packets the kernel merged, see [`merged`]), or a UDP socket on `gue_port`
    /// (all local addresses).
    pub fn open(encap: TunnelType, gue_port: u16) -> anyhow::Result<Receiver> {
        Ok(match encap {
            TunnelType::Gue => {
                let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, gue_port);
                let mut udp =
                    UdpReceiver::bind(addr).with_context(|| format!("bind UDP port {gue_port}"))?;
                // The destination address each datagram was sent to: authenticated GUE's MAC
                // covers it.
                udp.enable_pktinfo()
                    .context("ask for IP_PKTINFO on the GUE socket")?;
                Receiver::Udp(udp)
            }
            tun => {
                let mut raw = RawReceiver::new(tun.ip_protocol())
                    .with_context(|| format!("open a raw socket for {tun}"))?;
                raw.enable_pktinfo()
                    .context("ask for IP_PKTINFO on the raw socket")?;
                Receiver::Raw(raw)
            }
        })
    }

    /// What it listens on, for the log.
    pub fn describe(&self) -> String {
        match self {
            Receiver::Raw(_) => "raw socket".to_string(),
            Receiver::Udp(r) => match r.local_addr() {
                Ok(a) => format!("UDP port {}", a.port()),
                Err(_) => "UDP socket".to_string(),
            },
        }
    }

    /// GUE: turns on `UDP_GRO`, so trains of datagrams arrive as one buffer that [`serve`]
    /// cuts into records (and, into a TUN with a virtio header, merges back into TCP
    /// super-packets). Returns false for a raw socket.
    pub fn enable_gro(&mut self) -> std::io::Result<bool> {
        match self {
            Receiver::Raw(_) => Ok(false),
            Receiver::Udp(r) => r.enable_gro().map(|()| true),
        }
    }

    /// The `UDP_GRO` segment size of packet `i` of the last batch, if it is a train.
    fn gro_size(&self, i: usize) -> Option<u16> {
        match self {
            Receiver::Raw(_) => None,
            Receiver::Udp(r) => r.gro_size(i),
        }
    }

    /// The MTU of the interface packet `i` of the last batch arrived on (raw socket only),
    /// from `cache`, asking the kernel through `links` on a miss.
    fn arrival_mtu(
        &self,
        i: usize,
        cache: &mut MtuCache,
        links: &mut Option<Netlink>,
        now: Instant,
    ) -> Option<u32> {
        match self {
            Receiver::Raw(r) => {
                let ifindex = r.ifindex(i)?;
                Some(cache.get(ifindex, now, |x| links.as_mut()?.link_mtu(x).ok()))
            }
            Receiver::Udp(_) => None,
        }
    }

    /// The destination address of packet `i` of the last batch (GUE: from `IP_PKTINFO`;
    /// unspecified if the kernel did not say, or for a raw socket, whose packets carry it).
    fn dst_addr(&self, i: usize) -> Ipv4Addr {
        match self {
            Receiver::Raw(_) => Ipv4Addr::UNSPECIFIED,
            Receiver::Udp(r) => r.dst_addr(i).unwrap_or(Ipv4Addr::UNSPECIFIED),
        }
    }

    fn recv_batch(&mut self, batch: &mut PacketBatch) -> std::io::Result<usize> {
        match self {
            Receiver::Raw(r) => r.recv_batch(batch, Some(POLL_TIMEOUT)),
            Receiver::Udp(r) => r.recv_batch(batch, Some(POLL_TIMEOUT)),
        }
    }
}

/// Decides which received tunnel packets are delivered.
pub trait Accept {
    /// Called once per received batch, before its packets are checked (a policy that follows
    /// a changing table refreshes itself here; never per packet).
    fn refresh(&mut self) {}

    /// Checks a packet from a raw IPIP or GRE socket (outer IPv4 header first) whose outer
    /// source is `src`; returns where the inner packet is in it.
    fn check_ip(&self, packet: &[u8], src: Ipv4Addr) -> Result<Range<usize>, AgentDrop>;

    /// Checks the payload of a UDP datagram from `src` to `dst` on the GUE port; returns
    /// where the inner packet is in it. `&mut`: an authenticating policy records sequence
    /// numbers.
    fn check_gue(
        &mut self,
        payload: &[u8],
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<Range<usize>, AgentDrop>;

    /// Second chance for an accepted GUE payload received on `dst`: `true` if it was taken
    /// (forwarded to its second choice, or dropped), `false` to deliver it. None by default.
    fn take_second_chance(
        &mut self,
        _payload: &[u8],
        _inner: Range<usize>,
        _dst: Ipv4Addr,
        _stats: &mut AgentStats,
    ) -> bool {
        false
    }
}

impl Accept for Filter {
    fn check_ip(&self, packet: &[u8], src: Ipv4Addr) -> Result<Range<usize>, AgentDrop> {
        Filter::check_ip(self, packet, src)
    }

    fn check_gue(
        &mut self,
        payload: &[u8],
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<Range<usize>, AgentDrop> {
        Filter::check_gue(self, payload, src, dst)
    }

    fn take_second_chance(
        &mut self,
        payload: &[u8],
        inner: Range<usize>,
        dst: Ipv4Addr,
        stats: &mut AgentStats,
    ) -> bool {
        Filter::take_second_chance(self, payload, inner, dst, stats)
    }
}

/// How [`serve`] runs: batch size, periodic stats line, log prefix.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions<'a> {
    /// Packets read per receive call.
    pub batch: usize,
    /// Print the counters this often (`None`: never; the caller prints them at the end).
    pub stats_interval: Option<Duration>,
    /// Prefix of every log line, e.g. `tunlb realserver:`.
    pub log: &'a str,
    /// Where to copy the counters after each received batch, for `/metrics` (`None`: nowhere).
    pub publish: Option<&'a Mutex<AgentStats>>,
}

/// The receive loop: batch in, check each packet, write the accepted ones into `tun`, until
/// `stop()` (checked at least every [`POLL_TIMEOUT`]). A receive error ends it.
pub fn serve(
    rx: &mut Receiver,
    tun: &TunQueue,
    filter: &mut dyn Accept,
    opts: ServeOptions<'_>,
    stats: &mut AgentStats,
    stop: &mut dyn FnMut() -> bool,
) -> anyhow::Result<()> {
    let log = opts.log;
    let mut batch = PacketBatch::new(opts.batch.max(1), MAX_DATAGRAM);
    let gue = matches!(rx, Receiver::Udp(_));
    let mut next_report = opts.stats_interval.map(|i| Instant::now() + i);
    let mut warned_not_allowed = false;
    let mut out = Deliver {
        tun,
        log,
        warned: false,
        warned_merged: false,
    };
    // Consecutive TCP segments of one flow (a UDP_GRO train's records, or separate packets of
    // one batch) are merged back into super-packets only for a TUN that takes virtio headers.
    let mut merge = tun.vnet_hdr().then(TcpMerge::new);
    // Packets the kernel's GRO merged (IPIP/GRE) are told by their checksum field and length.
    let mut mtus = MtuCache::new();
    // Where the cache asks; without it every MTU counts as unlimited (see MtuCache::get).
    let mut links = Netlink::open().ok();
    let mut scratch = if gue {
        Vec::new()
    } else {
        vec![0; MAX_DATAGRAM]
    };
    while !stop() {
        let n = rx
            .recv_batch(&mut batch)
            .context("receive tunnel packets")?;
        let now = Instant::now();
        if n > 0 {
            filter.refresh();
            mtus.tick(now);
        }
        for (i, (packet, meta)) in batch.iter_mut().enumerate() {
            let src = *meta.src.ip();
            let dst = rx.dst_addr(i);
            let mut check = |p: &[u8], stats: &mut AgentStats| -> Option<Range<usize>> {
                stats.received += 1;
                let checked = if meta.truncated {
                    Err(AgentDrop::Truncated)
                } else if gue {
                    filter.check_gue(p, src, dst)
                } else {
                    filter.check_ip(p, src)
                };
                match checked {
                    Ok(r) if gue && filter.take_second_chance(p, r.clone(), dst, stats) => None,
                    Ok(r) if p.get(r.clone()).is_some() => Some(r),
                    Ok(_) => {
                        stats.count_drop(AgentDrop::Strip(StripError::InnerMalformed));
                        None
                    }
                    Err(reason) => {
                        if reason == AgentDrop::NotAllowed && !warned_not_allowed {
                            warned_not_allowed = true;
                            log::warn!("{log} dropping tunnel packets from {src}: not allowed (counted as not_allowed, logged once)");
                        }
                        stats.count_drop(reason);
                        None
                    }
                }
            };
            let size = rx.gro_size(i).filter(|_| !meta.truncated);
            let Some(size) = size else {
                let Some(r) = check(packet, stats) else {
                    continue;
                };
                match rx.arrival_mtu(i, &mut mtus, &mut links, now) {
                    Some(mtu) => out.write_ip(packet, r, mtu, merge.as_mut(), &mut scratch, stats),
                    None => {
                        if let Some(inner) = packet.get(r) {
                            out.write_merging(inner, merge.as_mut(), stats);
                        }
                    }
                }
                continue;
            };
            // A UDP_GRO train: one GUE packet per record.
            for rec in gro::records(packet, size) {
                let Some(inner) = check(rec, stats).and_then(|r| rec.get(r)) else {
                    continue;
                };
                out.write_merging(inner, merge.as_mut(), stats);
            }
        }
        // Consecutive segments of one flow, from one train or from separate datagrams of the
        // batch, went into the TUN as one super-packet; the rest of the batch goes now.
        if let Some(m) = merge.as_mut() {
            out.flush(m, stats);
        }
        if let (true, Some(shared)) = (n > 0, opts.publish) {
            if let Ok(mut copy) = shared.lock() {
                copy.clone_from(stats);
            }
        }
        if let (Some(at), Some(i)) = (next_report, opts.stats_interval) {
            let now = Instant::now();
            if now >= at {
                log::info!("{log} {stats}");
                next_report = Some(now + i);
            }
        }
    }
    Ok(())
}

/// Writes accepted inner packets into the TUN and counts them.
struct Deliver<'a> {
    tun: &'a TunQueue,
    log: &'a str,
    /// A write error was logged (once).
    warned: bool,
    /// Merged datagrams that cannot be split back were logged (once).
    warned_merged: bool,
}

impl Deliver<'_> {
    /// Writes `pkt` (`count` inner packets: a merged super-packet counts its segments) behind
    /// `hdr` (`None`: an ordinary packet).
    fn write(&mut self, hdr: Option<&VnetHdr>, pkt: &[u8], count: u64, stats: &mut AgentStats) {
        let r = match hdr {
            Some(h) => {
                let mut b = [0u8; VNET_HDR_LEN];
                h.emit(&mut b);
                self.tun.send_vnet(&b, pkt)
            }
            None => self.tun.send(pkt),
        };
        match r {
            Ok(_) => stats.delivered += count,
            Err(e) => {
                stats.tun_write_error += count;
                if !self.warned {
                    self.warned = true;
                    log::warn!(
                        "{} write into TUN failed: {e} (counted as tun_write_error, logged once)",
                        self.log
                    );
                }
            }
        }
    }

    /// Writes the ordinary inner packet `p`: into `merge` when it continues (or can start) a
    /// TCP super-packet there, else on its own, after what `merge` holds (order is kept).
    fn write_merging(&mut self, p: &[u8], merge: Option<&mut TcpMerge>, stats: &mut AgentStats) {
        let Some(m) = merge else {
            self.write(None, p, 1, stats);
            return;
        };
        if m.push(p) {
            return;
        }
        // Refused by an empty merge: it cannot start one (not a TCP data segment, or a bad
        // checksum); pushing it again after the flush would parse and sum it again for nothing.
        if m.count() == 0 {
            self.write(None, p, 1, stats);
            return;
        }
        self.flush(m, stats);
        if !m.push(p) {
            self.write(None, p, 1, stats);
        }
    }

    /// Writes the inner packet (at `inner` in `packet`) of an IPIP/GRE packet that arrived on
    /// an interface with this `mtu`, see [`merged`]: one the kernel's GRO merged goes into a
    /// TUN with virtio headers whole, as GSO with a partial checksum, else cut into segments
    /// with full checksums (in `scratch`); merged UDP is dropped; any other goes as is, merged
    /// with its neighbours of the same flow (see [`Self::write_merging`]).
    fn write_ip(
        &mut self,
        packet: &mut [u8],
        inner: Range<usize>,
        mtu: u32,
        merge: Option<&mut TcpMerge>,
        scratch: &mut [u8],
        stats: &mut AgentStats,
    ) {
        let max_inner = usize::try_from(mtu)
            .unwrap_or(usize::MAX)
            .saturating_sub(inner.start);
        let Some(p) = packet.get_mut(inner) else {
            stats.count_drop(AgentDrop::Strip(StripError::InnerMalformed));
            return;
        };
        let plan = match merged::classify(p, max_inner) {
            Merged::Intact => return self.write_merging(p, merge, stats),
            Merged::Unsupported => {
                stats.kernel_merged += 1;
                stats.merged_unsupported += 1;
                if !self.warned_merged {
                    self.warned_merged = true;
                    log::warn!(
                        "{} dropping tunnelled datagrams to {} that this host's GRO merged (counted as merged_unsupported, logged once): a raw socket does not say their size, so they cannot be split back; turn UDP GRO forwarding off on the interface the tunnel arrives on (ethtool -K IF rx-udp-gro-forwarding off), or use GUE",
                        self.log,
                        merged::describe_destination(p)
                    );
                }
                return;
            }
            Merged::Tcp(plan) => plan,
        };
        // What the merge holds came first.
        if let Some(m) = merge {
            self.flush(m, stats);
        }
        stats.kernel_merged += 1;
        if self.tun.vnet_hdr() {
            match plan.vnet_hdr(p) {
                Some(vh) => self.write(Some(&vh), p, 1, stats),
                None => stats.merged_unsupported += 1,
            }
            return;
        }
        let Ok(cut) = Segmenter::new(p, plan.gso_size()) else {
            stats.merged_unsupported += 1;
            return;
        };
        for k in 0..cut.count() {
            match cut.write_segment(p, k, scratch) {
                Some(n) => self.write(None, scratch.get(..n).unwrap_or_default(), 1, stats),
                None => {
                    stats.merged_unsupported += 1;
                    return;
                }
            }
        }
    }

    /// Writes what `m` merged so far, if anything, and empties it.
    fn flush(&mut self, m: &mut TcpMerge, stats: &mut AgentStats) {
        let count = m.count() as u64;
        if let Some((vh, pkt)) = m.take() {
            let hdr = vh.is_gso().then_some(&vh);
            if hdr.is_some() {
                stats.gro_super_packets += 1;
            }
            self.write(hdr, pkt, count, stats);
        }
    }
}
