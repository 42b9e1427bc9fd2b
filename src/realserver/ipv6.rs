//! The agent's IPv6 receivers: the tunnel sockets IPv6 needs, read by a loop of their own
//! beside the IPv4 one ([`super::tunnel::serve`]), which stays as it was (batched, GRO).
//!
//! | `--encap` | IPv6 underlay (an IPv6 `--allow`) | inner IPv6 over the IPv4 underlay |
//! |---|---|---|
//! | `ipip` | `AF_INET6` raw, next header 41 (ip6ip6, IPv6 VIPs) and 4 (4in6, IPv4 VIPs) | `AF_INET` raw, protocol 41 (sit-style 6in4), here |
//! | `gre` | `AF_INET6` raw, next header 47 | the IPv4 GRE socket (protocol type 0x86DD) |
//! | `gue` | UDP `[::]:port`, `IPV6_V6ONLY` | the IPv4 GUE socket (GUE protocol 41) |
//!
//! GUE over IPv6 has a socket of its own rather than one dual-stack socket for both
//! families: the IPv4 socket keeps its batched receive and `UDP_GRO` unchanged, and no source
//! arrives IPv4-mapped. Every packet passes the same [`Filter`] checks as on the IPv4 side
//! ([`Filter::check_payload6`], [`Filter::check_gue_ip`], [`Filter::check_ip`]) and its inner
//! packet is written into the agent's TUN, one packet per write (no GRO on these paths yet).
//! Second chance ([`super::chance`]) is for GUE over IPv4 only.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;

use super::filter::{AgentDrop, Filter};
use super::stats::AgentStats;
use super::tunnel::{ServeOptions, MAX_DATAGRAM, POLL_TIMEOUT};
use crate::encap::{StripError, TunnelType};
use crate::sys::tun::TunQueue;
use crate::sys::tunsock::TunnelSocket;
use crate::wire::IpProtocol;

/// One socket of the IPv6 loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// IPv4 protocol 41 (sit-style 6in4: inner IPv6 over the IPv4 underlay), outer IPv4
    /// header included.
    Sit4,
    /// An IPv6 next header (4, 41 or 47) over the IPv6 underlay: the payload behind the
    /// IPv6 header.
    Raw6(u8),
    /// GUE over IPv6: UDP payloads.
    Gue6,
}

impl Source {
    /// The sockets an agent with these settings opens in its IPv6 loop: `v6_underlay` if an
    /// `--allow` is IPv6, `v4_underlay` if one is IPv4, and which VIP families it serves.
    pub fn plan(
        encap: TunnelType,
        v4_underlay: bool,
        v6_underlay: bool,
        vips4: bool,
        vips6: bool,
    ) -> Vec<Source> {
        let mut out = Vec::new();
        if encap == TunnelType::Ipip && v4_underlay && vips6 {
            out.push(Source::Sit4);
        }
        if v6_underlay {
            match encap {
                TunnelType::Ipip => {
                    if vips6 {
                        out.push(Source::Raw6(IpProtocol::IPV6));
                    }
                    if vips4 {
                        out.push(Source::Raw6(IpProtocol::IPIP));
                    }
                }
                TunnelType::Gre => out.push(Source::Raw6(IpProtocol::GRE)),
                TunnelType::Gue => out.push(Source::Gue6),
            }
        }
        out
    }

    /// What it is, for the log.
    fn describe(self, port: u16) -> String {
        match self {
            Source::Sit4 => "IPv4 protocol 41 (6in4)".to_owned(),
            Source::Raw6(IpProtocol::IPV6) => "IPv6 next header 41 (ip6ip6)".to_owned(),
            Source::Raw6(IpProtocol::IPIP) => "IPv6 next header 4 (4in6)".to_owned(),
            Source::Raw6(IpProtocol::GRE) => "IPv6 next header 47 (GRE)".to_owned(),
            Source::Raw6(n) => format!("IPv6 next header {n}"),
            Source::Gue6 => format!("UDP [::]:{port} (GUE over IPv6)"),
        }
    }
}

/// The open sockets of the IPv6 loop.
#[derive(Debug)]
pub struct Receivers6 {
    socks: Vec<(Source, TunnelSocket)>,
    gue_port: u16,
}

impl Receivers6 {
    /// Opens a socket for each of `plan` (GUE on `gue_port`).
    pub fn open(plan: &[Source], gue_port: u16) -> anyhow::Result<Receivers6> {
        let socks = plan
            .iter()
            .map(|&s| {
                let sock = match s {
                    Source::Sit4 => TunnelSocket::raw4(IpProtocol::IPV6),
                    Source::Raw6(n) => TunnelSocket::raw6(n),
                    Source::Gue6 => TunnelSocket::udp6(gue_port),
                };
                sock.map(|x| (s, x))
                    .with_context(|| format!("open {}", s.describe(gue_port)))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Receivers6 { socks, gue_port })
    }

    /// Whether there is no socket (then no loop either).
    pub fn is_empty(&self) -> bool {
        self.socks.is_empty()
    }

    /// The sockets, for the log.
    pub fn describe(&self) -> String {
        self.socks
            .iter()
            .map(|(s, _)| s.describe(self.gue_port))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Checks one received packet from `src` to `dst` on socket `source`; returns where the inner
/// packet is in it.
pub fn check(
    filter: &mut Filter,
    source: Source,
    packet: &[u8],
    src: IpAddr,
    dst: IpAddr,
) -> Result<std::ops::Range<usize>, AgentDrop> {
    match (source, src, dst) {
        (Source::Sit4, IpAddr::V4(s), _) => filter.check_ip(packet, s),
        (Source::Raw6(n), IpAddr::V6(s), IpAddr::V6(d)) => filter.check_payload6(packet, s, d, n),
        (Source::Gue6, s, d) => filter.check_gue_ip(packet, s, d),
        // A socket of one family reports addresses of that family; an unspecified destination
        // (no IPV6_PKTINFO) cannot be checked.
        _ => Err(AgentDrop::NotAllowed),
    }
}

/// The IPv6 loop: wait for any of `rx`'s sockets, check each packet, write the accepted inner
/// packets into `tun`, until `stop()` (checked at least every [`POLL_TIMEOUT`]). A receive
/// error ends it.
pub fn serve6(
    rx: &Receivers6,
    tun: &TunQueue,
    filter: &mut Filter,
    opts: ServeOptions<'_>,
    stats: &mut AgentStats,
    stop: &dyn Fn() -> bool,
) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let log = opts.log;
    let fds: Vec<_> = rx.socks.iter().map(|(_, s)| s.as_raw_fd()).collect();
    let mut ready = Vec::with_capacity(fds.len());
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let (mut warned_not_allowed, mut warned_write) = (false, false);
    let mut next_report = opts.stats_interval.map(|i| Instant::now() + i);
    while !stop() {
        crate::sys::poll_any(&fds, POLL_TIMEOUT, &mut ready).context("wait for IPv6 tunnels")?;
        let mut got = 0;
        for &i in &ready {
            let Some((source, sock)) = rx.socks.get(i) else {
                continue;
            };
            // Up to a batch from each ready socket, then the next one.
            for _ in 0..opts.batch.max(1) {
                let Some(r) = sock.recv(&mut buf).context("receive tunnel packets")? else {
                    break;
                };
                got += 1;
                stats.received += 1;
                let packet = buf.get(..r.len).unwrap_or_default();
                let checked = if r.truncated {
                    Err(AgentDrop::Truncated)
                } else {
                    check(filter, *source, packet, r.src, r.dst)
                };
                let inner = match checked {
                    Ok(range) => packet.get(range),
                    Err(reason) => {
                        if reason == AgentDrop::NotAllowed && !warned_not_allowed {
                            warned_not_allowed = true;
                            log::warn!("{log} dropping tunnel packets from {}: not allowed (counted as not_allowed, logged once)", r.src);
                        }
                        stats.count_drop(reason);
                        continue;
                    }
                };
                let Some(inner) = inner else {
                    stats.count_drop(AgentDrop::Strip(StripError::InnerMalformed));
                    continue;
                };
                match tun.send(inner) {
                    Ok(_) => stats.delivered += 1,
                    Err(e) => {
                        stats.tun_write_error += 1;
                        if !warned_write {
                            warned_write = true;
                            log::warn!("{log} write into TUN failed: {e} (counted as tun_write_error, logged once)");
                        }
                    }
                }
            }
        }
        if let (true, Some(shared)) = (got > 0, opts.publish) {
            if let Ok(mut copy) = shared.lock() {
                copy.clone_from(stats);
            }
        }
        if let (Some(at), Some(i)) = (next_report, opts.stats_interval) {
            let now = Instant::now();
            if now >= at {
                log::info!("{log} IPv6 receivers: {stats}");
                next_report = Some(now + i);
            }
        }
    }
    Ok(())
}

/// Counters of both loops, for `/metrics`: the IPv4 loop's and the IPv6 loop's, summed.
pub fn summed(v4: &Mutex<AgentStats>, v6: &Mutex<AgentStats>) -> AgentStats {
    let mut out = v4.lock().map(|s| s.clone()).unwrap_or_default();
    if let Ok(s) = v6.lock() {
        out.add(&s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_opens_what_the_underlays_and_vip_families_need() {
        use Source::*;
        let plan = Source::plan;
        // IPv4 only: nothing beside the IPv4 loop.
        for t in [TunnelType::Ipip, TunnelType::Gre, TunnelType::Gue] {
            assert_eq!(plan(t, true, false, true, false), []);
        }
        // An IPv6 VIP over the IPv4 underlay: IPIP needs protocol 41; GRE and GUE carry it
        // on their IPv4 sockets.
        assert_eq!(plan(TunnelType::Ipip, true, false, false, true), [Sit4]);
        assert_eq!(plan(TunnelType::Gre, true, false, false, true), []);
        assert_eq!(plan(TunnelType::Gue, true, false, false, true), []);
        // The IPv6 underlay: ip6ip6 and 4in6 by VIP family, GRE, GUE.
        assert_eq!(
            plan(TunnelType::Ipip, false, true, true, true),
            [Raw6(41), Raw6(4)]
        );
        assert_eq!(plan(TunnelType::Ipip, false, true, false, true), [Raw6(41)]);
        assert_eq!(
            plan(TunnelType::Ipip, true, true, true, true),
            [Sit4, Raw6(41), Raw6(4)]
        );
        assert_eq!(plan(TunnelType::Gre, false, true, true, false), [Raw6(47)]);
        assert_eq!(plan(TunnelType::Gue, true, true, true, true), [Gue6]);
    }

    #[test]
    fn a_socket_checks_only_addresses_of_its_family() {
        let mut f = Filter::new(
            super::super::AllowList::of(&["2001:db8:1::/64".parse().unwrap()]),
            &[],
            TunnelType::Ipip,
            None,
        );
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8:1::2".parse().unwrap();
        for (s, src, dst) in [
            (Source::Sit4, v6, v6),
            (Source::Raw6(41), v4, v6),
            (Source::Raw6(41), v6, v4),
        ] {
            assert_eq!(
                check(&mut f, s, &[0x60; 60], src, dst),
                Err(AgentDrop::NotAllowed),
                "{s:?}"
            );
        }
    }
}
