//! Tunnel receive I/O shared by the real-server agent, the gateway agent and the director's
//! return-traffic receiver: a tunnel socket in, each packet checked by an [`Accept`] policy
//! ([`Filter`]), the inner packets written into a TUN device.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::filter::{AgentDrop, Filter};
use super::stats::AgentStats;
use crate::encap::{StripError, TunnelType};
use crate::sys::raw::{RawReceiver, UdpReceiver};
use crate::sys::tun::TunQueue;
use crate::sys::PacketBatch;

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
    /// Opens the socket for `encap`: a raw socket for IP protocol 4 or 47, or a UDP socket on
    /// `gue_port` (all local addresses).
    pub fn open(encap: TunnelType, gue_port: u16) -> anyhow::Result<Receiver> {
        Ok(match encap {
            TunnelType::Gue => {
                let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, gue_port);
                Receiver::Udp(
                    UdpReceiver::bind(addr).with_context(|| format!("bind UDP port {gue_port}"))?,
                )
            }
            tun => Receiver::Raw(
                RawReceiver::new(tun.ip_protocol())
                    .with_context(|| format!("open a raw socket for {tun}"))?,
            ),
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

    /// Checks the payload of a UDP datagram from `src` on the GUE port; returns where the
    /// inner packet is in it.
    fn check_gue(&self, payload: &[u8], src: Ipv4Addr) -> Result<Range<usize>, AgentDrop>;
}

impl Accept for Filter {
    fn check_ip(&self, packet: &[u8], src: Ipv4Addr) -> Result<Range<usize>, AgentDrop> {
        Filter::check_ip(self, packet, src)
    }

    fn check_gue(&self, payload: &[u8], src: Ipv4Addr) -> Result<Range<usize>, AgentDrop> {
        Filter::check_gue(self, payload, src)
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
    let mut warned_tun = false;
    while !stop() {
        let n = rx
            .recv_batch(&mut batch)
            .context("receive tunnel packets")?;
        if n > 0 {
            filter.refresh();
        }
        for (packet, meta) in batch.iter() {
            stats.received += 1;
            let src = *meta.src.ip();
            let checked = if meta.truncated {
                Err(AgentDrop::Truncated)
            } else if gue {
                filter.check_gue(packet, src)
            } else {
                filter.check_ip(packet, src)
            };
            let inner = match checked.map(|r| packet.get(r)) {
                Ok(Some(inner)) => inner,
                Ok(None) => {
                    stats.count_drop(AgentDrop::Strip(StripError::InnerMalformed));
                    continue;
                }
                Err(reason) => {
                    if reason == AgentDrop::NotAllowed && !warned_not_allowed {
                        warned_not_allowed = true;
                        eprintln!("{log} dropping tunnel packets from {src}: not allowed (counted as not_allowed, logged once)");
                    }
                    stats.count_drop(reason);
                    continue;
                }
            };
            match tun.send(inner) {
                Ok(_) => stats.delivered += 1,
                Err(e) => {
                    stats.tun_write_error += 1;
                    if !warned_tun {
                        warned_tun = true;
                        eprintln!("{log} write into TUN failed: {e} (counted as tun_write_error, logged once)");
                    }
                }
            }
        }
        if let (true, Some(shared)) = (n > 0, opts.publish) {
            if let Ok(mut copy) = shared.lock() {
                copy.clone_from(stats);
            }
        }
        if let (Some(at), Some(i)) = (next_report, opts.stats_interval) {
            let now = Instant::now();
            if now >= at {
                eprintln!("{log} {stats}");
                next_report = Some(now + i);
            }
        }
    }
    Ok(())
}
