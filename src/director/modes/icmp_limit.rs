//! The ICMP errors the director sends (fragmentation-needed for a packet with DF that does not
//! fit the tunnel or the LAN once forwarded), rate-limited by a token bucket per worker.
//!
//! A client can make the director answer every packet it sends with an ICMP error, addressed to
//! whatever source the packet claims: without a limit a flood of large DF packets with spoofed
//! sources turns the director into a reflector. As Linux (`net.ipv4.icmp_msgs_per_sec` 1000,
//! `icmp_msgs_burst` 50), each worker sends at most [`IcmpLimiter`]'s rate per second after an
//! initial burst; the packets over it are dropped as `too_big` without an answer and counted
//! ([`Counters::icmp_rate_limited`](crate::director::Counters::icmp_rate_limited)).

use crate::time::Instant;

/// A token bucket: `rate` tokens a second, at most `burst` saved up. Driven by the packets'
/// time (sans-IO).
#[derive(Clone, Copy, Debug)]
pub struct IcmpLimiter {
    /// Tokens a second (0: no limit).
    rate: u64,
    /// Most tokens saved up, in thousandths.
    cap_milli: u64,
    /// Tokens now, in thousandths.
    milli: u64,
    /// When `milli` was last topped up.
    at: Instant,
}

impl IcmpLimiter {
    /// A bucket of `rate` errors a second (0: unlimited) and `burst` saved up, full.
    pub fn new(rate: u32, burst: u32) -> IcmpLimiter {
        let cap_milli = u64::from(burst.max(1)) * 1000;
        IcmpLimiter {
            rate: u64::from(rate),
            cap_milli,
            milli: cap_milli,
            at: Instant::ZERO,
        }
    }

    /// Whether one more error may go at `now` (and takes its token).
    pub fn allow(&mut self, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        if now > self.at {
            let ms = (now - self.at).as_millis() as u64;
            // `rate` tokens a second is `rate` thousandths a millisecond.
            self.milli = (self.milli + ms.saturating_mul(self.rate)).min(self.cap_milli);
            self.at = now;
        }
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;

    #[test]
    fn burst_then_rate() {
        let mut b = IcmpLimiter::new(1000, 50);
        let t0 = Instant::from_secs(10);
        let sent = (0..200).filter(|_| b.allow(t0)).count();
        assert_eq!(sent, 50, "the burst");
        // One a millisecond afterwards.
        let mut sent = 0;
        for ms in 1..=1000u64 {
            let now = t0 + Duration::from_millis(ms);
            sent += (0..10).filter(|_| b.allow(now)).count();
        }
        assert_eq!(sent, 1000);
        // Idle for a while: the burst again, no more.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..200).filter(|_| b.allow(later)).count(), 50);
    }

    #[test]
    fn slow_rates_and_no_limit() {
        let mut b = IcmpLimiter::new(2, 1);
        let t0 = Instant::from_secs(1);
        assert!(b.allow(t0));
        assert!(!b.allow(t0 + Duration::from_millis(499)));
        assert!(b.allow(t0 + Duration::from_millis(500)));
        let mut free = IcmpLimiter::new(0, 0);
        assert!((0..10_000).all(|_| free.allow(t0)));
    }
}
