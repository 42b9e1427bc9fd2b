//! `tunlb udpblast` (hidden): a bounded UDP packet-rate generator and sink for the namespace
//! benchmark, fast enough to load a director with small datagrams (iperf3 sends about 80k
//! 64-byte packets/s from one core; this sends them with `sendmmsg` in batches).
//!
//! - `send --to IP:PORT [--size 64] [--duration 5] [--max-packets N] [--flows 8] [--rate PPS]`:
//!   `--flows` connected sockets (one source port each, so a director sees that many flows)
//!   take turns sending batches of the same datagram, until the duration or the packet count
//!   is reached; `--rate` paces the batches to that average.
//! - `sink --listen IP:PORT [--duration 10] [--idle 1]`: counts datagrams with `recvmmsg` until
//!   the duration passes or nothing arrived for `--idle` seconds after the first packet.
//!
//! Both print one JSON line at the end (`packets`, `bytes`, `seconds`, `pps`, `errors`; the sink
//! also `corrupt`: datagrams whose payload is not the pattern `send` sends). Both stop by
//! themselves. `send` refuses a destination outside loopback unless it runs in a named network
//! namespace (`ip netns exec`, as the benchmark does), so it cannot flood a real network by
//! mistake.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::sys::blast::UdpBlaster;
use crate::sys::raw::UdpReceiver;
use crate::sys::PacketBatch;

/// Longest run either side accepts, in seconds.
const MAX_SECONDS: f64 = 600.0;

/// Arguments of `tunlb udpblast`.
#[derive(Debug, Clone, clap::Args)]
pub struct UdpblastArgs {
    /// Which side.
    #[command(subcommand)]
    pub command: UdpblastCommand,
}

/// The two sides of `tunlb udpblast`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum UdpblastCommand {
    /// Send small UDP datagrams as fast as possible, bounded in time and count.
    Send(SendArgs),
    /// Count the datagrams arriving on a port, bounded in time.
    Sink(SinkArgs),
}

/// Arguments of `tunlb udpblast send`.
#[derive(Debug, Clone, clap::Args)]
pub struct SendArgs {
    /// Destination (a VIP or a real server inside the benchmark's namespaces, or loopback).
    #[arg(long, value_name = "IP:PORT")]
    pub to: SocketAddrV4,
    /// UDP payload bytes per datagram (as iperf3's `-l`).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1472))]
    pub size: u16,
    /// Seconds to send for (at most 600).
    #[arg(long, default_value_t = 5.0, value_parser = seconds)]
    pub duration: f64,
    /// Stop after this many datagrams (at most 10^10).
    #[arg(long, default_value_t = 100_000_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000_000))]
    pub max_packets: u64,
    /// Number of flows: sockets with their own source port.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub flows: u16,
    /// Datagrams per `sendmmsg`.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub batch: u16,
    /// Average datagrams per second, paced batch by batch (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
}

/// Arguments of `tunlb udpblast sink`.
#[derive(Debug, Clone, clap::Args)]
pub struct SinkArgs {
    /// Address to bind (`0.0.0.0:PORT` also takes datagrams for a VIP on `lo`).
    #[arg(long, value_name = "IP:PORT")]
    pub listen: SocketAddrV4,
    /// Seconds to listen for at most (at most 600).
    #[arg(long, default_value_t = 10.0, value_parser = seconds)]
    pub duration: f64,
    /// Stop once nothing arrived for this many seconds after the first datagram.
    #[arg(long, default_value_t = 1.0, value_parser = seconds)]
    pub idle: f64,
    /// Datagrams per `recvmmsg`.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub batch: u16,
}

/// A duration in seconds, in `(0, 600]`.
fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= MAX_SECONDS => Ok(v),
        _ => Err(format!("expected seconds in (0, {MAX_SECONDS}], got {s:?}")),
    }
}

/// What one side counted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tally {
    /// Datagrams sent or received.
    pub packets: u64,
    /// Their UDP payload bytes.
    pub bytes: u64,
    /// Sender: from the first send to the last. Sink: from the first datagram's batch to the
    /// last one's.
    pub seconds: f64,
    /// Datagrams the kernel refused (sender only).
    pub errors: u64,
    /// Datagrams whose payload was not what `send` sends (sink only): changed on the way.
    pub corrupt: u64,
}

impl Tally {
    /// Datagrams per second over [`seconds`](Self::seconds); 0 when no time passed.
    pub fn pps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.packets as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The JSON line both sides print.
    pub fn to_json(&self, role: &str) -> String {
        serde_json::json!({
            "role": role,
            "packets": self.packets,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "pps": self.pps().round(),
            "errors": self.errors,
            "corrupt": self.corrupt,
        })
        .to_string()
    }
}

/// Runs `tunlb udpblast`.
pub fn run(args: UdpblastArgs) -> anyhow::Result<()> {
    match args.command {
        UdpblastCommand::Send(a) => {
            let t = send(&a)?;
            println!("{}", t.to_json("send"));
        }
        UdpblastCommand::Sink(a) => {
            let t = sink(&a)?;
            println!("{}", t.to_json("sink"));
        }
    }
    Ok(())
}

/// Sends as `args` says and returns what went out.
pub fn send(args: &SendArgs) -> anyhow::Result<Tally> {
    check_destination(*args.to.ip())?;
    let batch = usize::from(args.batch);
    let mut flows = (0..args.flows)
        .map(|_| UdpBlaster::connect(args.to, batch, Duration::from_millis(100)))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("opening {} UDP sockets to {}", args.flows, args.to))?;
    let payload: Vec<u8> = (0..usize::from(args.size)).map(payload_byte).collect();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    let mut tally = Tally {
        packets: 0,
        bytes: 0,
        seconds: 0.0,
        errors: 0,
        corrupt: 0,
    };
    let mut last_error = None;
    'outer: loop {
        for flow in flows.iter_mut() {
            let left = args
                .max_packets
                .saturating_sub(tally.packets + tally.errors);
            if left == 0 || Instant::now() >= deadline {
                break 'outer;
            }
            if args.rate > 0 {
                // Ahead of the average rate: wait until the datagrams sent so far are due.
                let due = Duration::from_secs_f64(
                    (tally.packets + tally.errors) as f64 / args.rate as f64,
                );
                let ahead = due.saturating_sub(start.elapsed());
                if !ahead.is_zero() {
                    std::thread::sleep(
                        ahead.min(deadline.saturating_duration_since(Instant::now())),
                    );
                }
            }
            let report = flow.send(&payload, batch.min(left as usize));
            tally.packets += report.sent as u64;
            tally.errors += report.failed as u64;
            if report.failed > 0 {
                last_error = report.last_error();
            }
        }
    }
    tally.seconds = start.elapsed().as_secs_f64();
    tally.bytes = tally.packets * u64::from(args.size);
    if let Some(e) = last_error {
        log::warn!(
            "tunlb udpblast send: {} datagrams refused, last: {e}",
            tally.errors
        );
    }
    Ok(tally)
}

/// Counts datagrams as `args` says and returns what arrived.
pub fn sink(args: &SinkArgs) -> anyhow::Result<Tally> {
    let mut rx = UdpReceiver::bind(args.listen)?;
    log::info!("tunlb udpblast sink: listening on {}", rx.local_addr()?);
    let mut batch = PacketBatch::new(usize::from(args.batch), 2048);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    let idle = Duration::from_secs_f64(args.idle);
    let mut tally = Tally {
        packets: 0,
        bytes: 0,
        seconds: 0.0,
        errors: 0,
        corrupt: 0,
    };
    let mut first: Option<Instant> = None;
    let mut last = start;
    loop {
        let now = Instant::now();
        if now >= deadline || (first.is_some() && now.duration_since(last) >= idle) {
            break;
        }
        let wait = (deadline - now).min(Duration::from_millis(50));
        let n = rx.recv_batch(&mut batch, Some(wait))?;
        if n == 0 {
            continue;
        }
        last = Instant::now();
        first.get_or_insert(last);
        tally.packets += n as u64;
        for (p, meta) in batch.iter() {
            tally.bytes += p.len() as u64;
            let intact =
                !meta.truncated && p.iter().enumerate().all(|(i, b)| *b == payload_byte(i));
            tally.corrupt += u64::from(!intact);
        }
    }
    if let Some(first) = first {
        tally.seconds = last.duration_since(first).as_secs_f64();
    }
    Ok(tally)
}

/// Byte `i` of every datagram `send` sends (and `sink` expects).
fn payload_byte(i: usize) -> u8 {
    i as u8
}

/// Refuses to send outside loopback unless this process runs in a named network namespace
/// (also used by [`super::synflood`]).
pub(crate) fn check_destination(ip: Ipv4Addr) -> anyhow::Result<()> {
    if ip.is_loopback() || in_private_netns() {
        return Ok(());
    }
    bail!(
        "refusing to send to {ip}: outside loopback, `tunlb udpblast send` runs only inside a \
         named network namespace (ip netns exec NAME ...)"
    )
}

/// Whether this process runs in a named network namespace (one of `/run/netns/*`, as
/// `ip netns exec` uses), compared by device and inode as `ip netns identify` does. (pid 1's
/// namespace cannot be read here to compare with.)
fn in_private_netns() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(mine) = std::fs::metadata("/proc/self/ns/net") else {
        return false;
    };
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return false;
    };
    entries.flatten().any(|e| {
        std::fs::metadata(e.path()).is_ok_and(|m| m.dev() == mine.dev() && m.ino() == mine.ino())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_and_sink_count_the_same_datagrams_on_loopback() {
        let port = {
            let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let listen = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let sink_args = SinkArgs {
            listen,
            duration: 5.0,
            idle: 0.3,
            batch: 64,
        };
        let sink = std::thread::spawn(move || sink(&sink_args).unwrap());
        std::thread::sleep(Duration::from_millis(100));
        let sent = send(&SendArgs {
            to: listen,
            size: 64,
            duration: 2.0,
            max_packets: 1000,
            flows: 3,
            batch: 16,
            rate: 5000,
        })
        .unwrap();
        assert_eq!((sent.packets, sent.errors, sent.bytes), (1000, 0, 64_000));
        // Paced: the last batch (datagrams 984..1000) was not due before 984 / 5000 s.
        assert!(sent.seconds >= 0.19, "{sent:?}");
        let got = sink.join().unwrap();
        // Loopback may drop under a full receive buffer; 1000 small datagrams fit.
        assert_eq!((got.packets, got.bytes, got.corrupt), (1000, 64_000, 0));
        let line: serde_json::Value = serde_json::from_str(&got.to_json("sink")).unwrap();
        assert_eq!(line["packets"], 1000);
    }

    #[test]
    fn durations_are_bounded() {
        assert!(seconds("0").is_err());
        assert!(seconds("601").is_err());
        assert!(seconds("nan").is_err());
        assert_eq!(seconds("2.5"), Ok(2.5));
    }

    #[test]
    fn host_namespace_sends_only_to_loopback() {
        assert!(check_destination(Ipv4Addr::LOCALHOST).is_ok());
        if !in_private_netns() {
            assert!(check_destination(Ipv4Addr::new(192, 0, 2, 1)).is_err());
        }
    }
}
