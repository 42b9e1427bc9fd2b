//! The pins of the health probes sent through the data path (`check_through_tunnel`): which
//! real server the packets of one probe socket go to. The prober writes them, every worker
//! reads them; [`crate::director::probe_pin`] explains the design and decides the packets.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::neigh::NeighEntry;
use crate::model::Forward;
use crate::time::{Duration, Instant};

/// How many distinct probe source addresses may have pins at once.
pub const MAX_SOURCES: usize = 4;

/// How long a pin stays after its probe ended (its FIN, RST or last ACK may still be queued).
pub const PIN_LINGER: Duration = Duration::from_secs(5);

/// Where the packets from one probe socket go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbePin {
    /// The address the probe connects to (the VIP): a packet from the pinned port to another
    /// address is not the probe's (the port may have been reused since) and is not pinned.
    pub vip: Ipv4Addr,
    /// The real server checked.
    pub dest: Ipv4Addr,
    /// Its forwarding method ([`Forward::Tunnel`] or [`Forward::Dr`]; NAT has no DSR path to
    /// check and is dropped as [`crate::director::DropReason::UnsupportedForward`]).
    pub forward: Forward,
    /// DR: the server's interface and Ethernet address (`None`: not resolved, dropped as
    /// [`crate::director::DropReason::NeighbourUnresolved`]).
    pub neigh: Option<NeighEntry>,
    /// The pin is gone at this time (on the director's clock) whatever happens.
    pub expires: Instant,
}

/// Why a pin could not be registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// [`MAX_SOURCES`] other probe source addresses have pins already.
    #[error("too many probe source addresses in use at once (at most {MAX_SOURCES})")]
    TooManySources,
    /// The source address is `0.0.0.0`: the probe socket must be bound to an address first.
    #[error("a probe source address must be a unicast address, not 0.0.0.0")]
    Unspecified,
}

/// The pins of the probes in flight, shared by the prober (writes) and every worker (reads).
#[derive(Debug, Default)]
pub struct ProbePins {
    /// How many pins exist (0: the hot path skips everything else).
    count: AtomicUsize,
    /// The probe source addresses with pins (`0`: a free slot).
    sources: [AtomicU32; MAX_SOURCES],
    /// The pins by (source address, source port); writers keep `sources` in step under it.
    pins: Mutex<HashMap<(Ipv4Addr, u16), ProbePin>>,
}

impl ProbePins {
    /// No pins.
    pub fn new() -> ProbePins {
        ProbePins::default()
    }

    /// How many pins exist (expired ones included until they are swept).
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether no pin exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `addr` is a probe source address with pins: the hot path's only question.
    #[inline]
    pub fn is_source(&self, addr: Ipv4Addr) -> bool {
        if self.count.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let a = u32::from(addr);
        self.sources.iter().any(|s| s.load(Ordering::Relaxed) == a)
    }

    /// The live pin of `src:sport` at `now`.
    pub fn get(&self, src: Ipv4Addr, sport: u16, now: Instant) -> Option<ProbePin> {
        let pins = self.pins.lock().ok()?;
        pins.get(&(src, sport)).copied().filter(|p| p.expires > now)
    }

    /// Pins `src:sport` (a bound, not yet connected probe socket) to `pin` until the prober
    /// [`release`](Self::release)s it or `pin.expires`, whichever comes first. A pin already
    /// there for the same pair is replaced (its socket is gone: the port was free to bind).
    pub fn register(
        &self,
        src: Ipv4Addr,
        sport: u16,
        pin: ProbePin,
        now: Instant,
    ) -> Result<(), PinError> {
        if src.is_unspecified() {
            return Err(PinError::Unspecified);
        }
        let Ok(mut pins) = self.pins.lock() else {
            return Err(PinError::TooManySources);
        };
        self.sweep(&mut pins, now);
        let a = u32::from(src);
        let known = self.sources.iter().any(|s| s.load(Ordering::Relaxed) == a);
        if !known {
            let free = self
                .sources
                .iter()
                .find(|s| s.load(Ordering::Relaxed) == 0)
                .ok_or(PinError::TooManySources)?;
            free.store(a, Ordering::Relaxed);
        }
        pins.insert((src, sport), pin);
        self.count.store(pins.len(), Ordering::Release);
        Ok(())
    }

    /// The probe of `src:sport` ended at `now`: its pin stays [`PIN_LINGER`] longer, no more.
    pub fn release(&self, src: Ipv4Addr, sport: u16, now: Instant) {
        if let Ok(mut pins) = self.pins.lock() {
            if let Some(p) = pins.get_mut(&(src, sport)) {
                p.expires = p.expires.min(now + PIN_LINGER);
            }
        }
    }

    /// Forgets the pins expired at `now` and frees the source addresses left without pins.
    pub fn expire(&self, now: Instant) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Ok(mut pins) = self.pins.lock() {
            self.sweep(&mut pins, now);
        }
    }

    fn sweep(&self, pins: &mut HashMap<(Ipv4Addr, u16), ProbePin>, now: Instant) {
        pins.retain(|_, p| p.expires > now);
        for s in &self.sources {
            let a = Ipv4Addr::from(s.load(Ordering::Relaxed));
            if !a.is_unspecified() && !pins.keys().any(|(src, _)| *src == a) {
                s.store(0, Ordering::Relaxed);
            }
        }
        self.count.store(pins.len(), Ordering::Release);
    }
}
