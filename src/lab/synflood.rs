//! `tunlb lab synflood` (hidden): a bounded flood of spoofed TCP SYN + ACK pairs, the attack
//! that fills a TUN/DR director's connection table (issue 13).
//!
//! A director in TUN or DR mode sees only the client's half of a connection. A SYN from a
//! spoofed source creates a flow; the ACK that follows from the same source moves it to
//! ESTABLISHED, whose timeout is long (900 s in IPVS). The real server's answers go to the
//! spoofed address, which the test's router black-holes. Each pair here is that: a SYN from
//! source `i` of the `--src` range, then an ACK without data from the same address and port.
//!
//! - `--to VIP:PORT`: the service.
//! - `--src CIDR` (default `198.18.0.0/15`, the benchmarking range of RFC 2544): pair `i` comes
//!   from address `i mod size` of the range and, once every address was used, the next source
//!   port ([`SpoofedSources`]), so up to `size × 64,512` pairs are distinct flows.
//! - `--pairs N`, `--rate PAIRS_PER_S` (0: as fast as the socket takes them), `--seconds T`:
//!   it stops at whichever bound comes first, or at SIGTERM / SIGINT.
//!
//! Every second a progress line goes to stderr (`[synflood] t=... pairs sent ...`); at the end
//! one JSON line on stdout ([`Tally::to_json`]). As `tunlb udpblast send`, it refuses to send
//! unless it runs inside a named network namespace (`ip netns exec`), so it cannot flood a real
//! network by mistake. It needs CAP_NET_RAW (an `IPPROTO_RAW` socket, headers built here).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::sys::raw::RawSender;
use crate::sys::signal;
use crate::wire::ipv4::Ipv4Repr;
use crate::wire::tcp::{TcpFlags, TcpPacket, HEADER_LEN as TCP_HEADER_LEN};
use crate::wire::IpProtocol;

/// Longest run, in seconds.
const MAX_SECONDS: f64 = 600.0;

/// Most pairs one run sends.
const MAX_PAIRS: u64 = 100_000_000;

/// The first source port used (ports below are left alone).
const FIRST_PORT: u16 = 1024;

/// Arguments of `tunlb lab synflood`.
#[derive(Debug, Clone, clap::Args)]
pub struct SynfloodArgs {
    /// The service to flood, `VIP:PORT`.
    #[arg(long, value_name = "IP:PORT")]
    pub to: SocketAddrV4,
    /// Spoofed source range, `ADDR/LEN` (LEN 8 to 32); the test's router must black-hole it.
    #[arg(long, value_name = "CIDR", default_value = "198.18.0.0/15", value_parser = SpoofedSources::parse)]
    pub src: SpoofedSources,
    /// How many SYN + ACK pairs to send (at most 10^8).
    #[arg(long, value_name = "N", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=MAX_PAIRS))]
    pub pairs: u64,
    /// Pairs per second, paced batch by batch (0: as fast as the socket takes them).
    #[arg(long, value_name = "PAIRS_PER_S", default_value_t = 10_000)]
    pub rate: u64,
    /// Stop after this many seconds (at most 600).
    #[arg(long, value_name = "T", default_value_t = 30.0, value_parser = seconds)]
    pub seconds: f64,
    /// Pairs per `sendmmsg` (each pair is two packets).
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u16).range(1..=512))]
    pub batch: u16,
}

/// A duration in seconds, in `(0, 600]`.
fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= MAX_SECONDS => Ok(v),
        _ => Err(format!("expected seconds in (0, {MAX_SECONDS}], got {s:?}")),
    }
}

/// The spoofed sources: an IPv4 prefix, walked address by address, then port by port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoofedSources {
    /// First address of the prefix.
    base: u32,
    /// Prefix length.
    len: u8,
}

impl SpoofedSources {
    /// Parses `ADDR/LEN` with LEN in 8..=32; host bits are cleared.
    pub fn parse(s: &str) -> Result<SpoofedSources, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("expected ADDR/LEN, got {s:?}"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("expected an IPv4 address before '/', got {addr:?}"))?;
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| (8..=32).contains(l))
            .ok_or_else(|| format!("expected a prefix length from 8 to 32, got {len:?}"))?;
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        Ok(SpoofedSources {
            base: u32::from(addr) & mask,
            len,
        })
    }

    /// How many addresses the prefix holds.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.len))
    }

    /// Whether `ip` is in the prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) as u64).wrapping_sub(u64::from(self.base)) < self.size()
    }

    /// Source of pair `i`: address `i mod size`, port 1024 + `i / size` (wrapping after
    /// 64,512 rounds).
    pub fn nth(&self, i: u64) -> (Ipv4Addr, u16) {
        let size = self.size();
        let addr = self.base + (i % size) as u32;
        let round = (i / size) % u64::from(u16::MAX - FIRST_PORT + 1);
        (Ipv4Addr::from(addr), FIRST_PORT + round as u16)
    }
}

impl std::fmt::Display for SpoofedSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.len)
    }
}

/// One packet of a pair: its IPv4 header and its TCP header (no payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// The IPv4 header, checksum filled.
    pub ip: [u8; 20],
    /// The TCP header, checksum filled.
    pub tcp: [u8; TCP_HEADER_LEN],
}

/// Builds pair `i` to `to`: a SYN from [`SpoofedSources::nth`]`(i)` with an initial sequence
/// number derived from `i` and `salt`, then the ACK that would complete the handshake from
/// the client's side (sequence + 1, acknowledging a made-up server sequence), no data.
pub fn build_pair(sources: &SpoofedSources, to: SocketAddrV4, i: u64, salt: u64) -> [Packet; 2] {
    let (src, sport) = sources.nth(i);
    let dst = *to.ip();
    let mix = splitmix64(i ^ salt);
    let isn = mix as u32;
    let server_isn = (mix >> 32) as u32;
    let ident = (mix >> 16) as u16;
    let build = |flags: TcpFlags, seq: u32, ack: u32, ident: u16| {
        let mut tcp = [0u8; TCP_HEADER_LEN];
        let mut seg = TcpPacket::new_unchecked(&mut tcp[..]);
        seg.set_src_port(sport);
        seg.set_dst_port(to.port());
        seg.set_seq_number(seq);
        seg.set_ack_number(ack);
        seg.set_header_len(TCP_HEADER_LEN);
        seg.set_flags(flags);
        seg.set_window(64240);
        seg.fill_checksum(src, dst);
        let mut ip = [0u8; 20];
        Ipv4Repr {
            src,
            dst,
            protocol: IpProtocol::TCP,
            tos: 0,
            dont_frag: true,
            ttl: 64,
            payload_len: TCP_HEADER_LEN,
            ident,
        }
        .emit(&mut ip)
        .expect("20 bytes hold an IPv4 header");
        Packet { ip, tcp }
    };
    [
        build(TcpFlags::SYN, isn, 0, ident),
        build(
            TcpFlags::ACK,
            isn.wrapping_add(1),
            server_isn.wrapping_add(1),
            ident.wrapping_add(1),
        ),
    ]
}

/// SplitMix64: a cheap, well-mixed 64-bit hash of `x`.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What a run sent.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Tally {
    /// Pairs whose two packets the kernel took.
    pub pairs: u64,
    /// Packets the kernel took.
    pub packets: u64,
    /// Packets the kernel refused (e.g. `ENOBUFS`); not retried.
    pub errors: u64,
    /// From the first send to the last, seconds.
    pub seconds: f64,
}

impl Tally {
    /// The JSON line printed at the end.
    pub fn to_json(&self, to: SocketAddrV4, src: &SpoofedSources) -> String {
        let pps = if self.seconds > 0.0 {
            (self.pairs as f64 / self.seconds).round()
        } else {
            0.0
        };
        serde_json::json!({
            "to": to.to_string(),
            "src": src.to_string(),
            "pairs": self.pairs,
            "packets": self.packets,
            "errors": self.errors,
            "seconds": self.seconds,
            "pairs_per_second": pps,
        })
        .to_string()
    }
}

/// Runs `tunlb lab synflood`.
pub fn run(args: SynfloodArgs) -> anyhow::Result<()> {
    signal::install().context("installing signal handlers")?;
    let tally = flood(&args, || signal::pending().is_some())?;
    println!("{}", tally.to_json(args.to, &args.src));
    Ok(())
}

/// Sends as `args` says until a bound is reached or `stop()` says so.
pub fn flood(args: &SynfloodArgs, stop: impl Fn() -> bool) -> anyhow::Result<Tally> {
    super::udpblast::check_destination(*args.to.ip())?;
    if args.src.contains(*args.to.ip()) {
        bail!(
            "the destination {} is inside the spoofed range {}",
            args.to,
            args.src
        );
    }
    let batch = usize::from(args.batch);
    let mut sender =
        RawSender::new(2 * batch).context("opening the raw socket (needs CAP_NET_RAW)")?;
    let salt = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.seconds);
    let mut next_progress = start + Duration::from_secs(1);
    let mut tally = Tally::default();
    let mut next = 0u64;
    let mut packets: Vec<Packet> = Vec::with_capacity(2 * batch);
    let mut last_error = None;
    eprintln!(
        "[synflood] {} SYN+ACK pairs from {} to {} at {} pairs/s, at most {} s",
        args.pairs,
        args.src,
        args.to,
        if args.rate == 0 {
            "full speed".to_owned()
        } else {
            args.rate.to_string()
        },
        args.seconds
    );
    while next < args.pairs && !stop() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if now >= next_progress {
            next_progress += Duration::from_secs(1);
            progress(start, &tally);
        }
        if args.rate > 0 {
            // Ahead of the average rate: wait (in short steps, to notice a stop) until the
            // pairs sent so far are due.
            let due = Duration::from_secs_f64(next as f64 / args.rate as f64);
            let ahead = due.saturating_sub(start.elapsed());
            if !ahead.is_zero() {
                std::thread::sleep(ahead.min(Duration::from_millis(50)));
                continue;
            }
        }
        let n = (args.pairs - next).min(batch as u64);
        packets.clear();
        for i in next..next + n {
            packets.extend(build_pair(&args.src, args.to, i, salt));
        }
        let report = sender.send_batch(
            packets
                .iter()
                .map(|p| (*args.to.ip(), &p.ip[..], &p.tcp[..])),
        );
        if let Some(errno) = report.last_errno {
            last_error = Some(std::io::Error::from_raw_os_error(errno));
        }
        tally.packets += report.sent as u64;
        tally.errors += report.failed as u64;
        // A pair counts when both its packets went out (failures are listed by position).
        let failed_pairs = {
            let mut f: Vec<usize> = sender.failures().iter().map(|f| f.index / 2).collect();
            f.dedup();
            f.len() as u64
        };
        tally.pairs += n - failed_pairs.min(n);
        next += n;
    }
    tally.seconds = start.elapsed().as_secs_f64();
    progress(start, &tally);
    if let Some(e) = last_error {
        eprintln!(
            "[synflood] {} packets refused by the kernel, last: {e}",
            tally.errors
        );
    }
    Ok(tally)
}

/// One progress line on stderr.
fn progress(start: Instant, tally: &Tally) {
    let t = start.elapsed().as_secs_f64();
    let rate = if t > 0.0 { tally.pairs as f64 / t } else { 0.0 };
    eprintln!(
        "[synflood] t={t:.2}s {} pairs sent ({rate:.0}/s), {} packets refused",
        tally.pairs, tally.errors
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::Ipv4Packet;

    #[test]
    fn ranges_parse_and_walk_addresses_then_ports() {
        let r = SpoofedSources::parse("198.18.7.9/15").unwrap();
        assert_eq!(r.to_string(), "198.18.0.0/15");
        assert_eq!(r.size(), 131_072);
        assert_eq!(r.nth(0), (Ipv4Addr::new(198, 18, 0, 0), 1024));
        assert_eq!(r.nth(131_071), (Ipv4Addr::new(198, 19, 255, 255), 1024));
        assert_eq!(r.nth(131_072), (Ipv4Addr::new(198, 18, 0, 0), 1025));
        assert!(r.contains(Ipv4Addr::new(198, 19, 1, 1)));
        assert!(!r.contains(Ipv4Addr::new(198, 20, 0, 0)));
        assert!(!r.contains(Ipv4Addr::new(198, 17, 255, 255)));
        let one = SpoofedSources::parse("10.0.0.1/32").unwrap();
        assert_eq!(one.nth(5), (Ipv4Addr::new(10, 0, 0, 1), 1029));
        for bad in [
            "198.18.0.0",
            "198.18.0.0/7",
            "198.18.0.0/33",
            "x/15",
            "1.2.3.4/x",
        ] {
            assert!(SpoofedSources::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_pair_is_a_syn_then_the_handshakes_ack_from_one_source() {
        let r = SpoofedSources::parse("198.18.0.0/15").unwrap();
        let to: SocketAddrV4 = "10.100.0.100:80".parse().unwrap();
        let [syn, ack] = build_pair(&r, to, 131_073, 42);
        let mut seqs = Vec::new();
        for (p, flags) in [(syn, TcpFlags::SYN), (ack, TcpFlags::ACK)] {
            let mut bytes = p.ip.to_vec();
            bytes.extend_from_slice(&p.tcp);
            let ip = Ipv4Packet::new_checked(&bytes[..]).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(ip.src_addr(), Ipv4Addr::new(198, 18, 0, 1));
            assert_eq!(ip.dst_addr(), *to.ip());
            assert_eq!(ip.protocol(), IpProtocol::TCP);
            let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
            assert!(tcp.verify_checksum(ip.src_addr(), ip.dst_addr()));
            assert_eq!((tcp.src_port(), tcp.dst_port()), (1025, 80));
            assert_eq!(tcp.flags(), flags);
            assert!(tcp.payload().is_empty());
            seqs.push((tcp.seq_number(), tcp.ack_number()));
        }
        assert_eq!(seqs[1].0, seqs[0].0.wrapping_add(1));
        assert_eq!(seqs[0].1, 0);
    }

    #[test]
    fn distinct_pairs_are_distinct_flows() {
        let r = SpoofedSources::parse("198.18.0.0/15").unwrap();
        let mut seen = std::collections::HashSet::new();
        for i in (0..300_000).step_by(7) {
            assert!(seen.insert(r.nth(i)), "pair {i} repeats a source");
        }
    }

    #[test]
    fn the_host_namespace_or_a_spoofed_destination_is_refused() {
        let args = SynfloodArgs {
            to: "198.18.0.5:80".parse().unwrap(),
            src: SpoofedSources::parse("198.18.0.0/15").unwrap(),
            pairs: 1,
            rate: 0,
            seconds: 1.0,
            batch: 1,
        };
        // Outside a named namespace the destination check refuses; inside one, the range does.
        assert!(flood(&args, || true).is_err());
        assert!(seconds("0").is_err() && seconds("601").is_err());
    }
}
