//! The agent's counters: one plain struct per receive loop (the IPv4 loop, the IPv6
//! receivers' loop), summed with [`AgentStats::add`].

use std::fmt;

use super::filter::AgentDrop;
use crate::encap::auth::AuthError;
use crate::encap::chance::ChanceError;
use crate::encap::StripError;

const STRIP_REASONS: usize = StripError::ALL.len();
const AUTH_REASONS: usize = AuthError::ALL.len();
const CHANCE_REASONS: usize = ChanceError::ALL.len();

/// What the agent did with the packets it received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentStats {
    /// Tunnel packets received.
    pub received: u64,
    /// Inner packets written into the TUN device.
    pub delivered: u64,
    /// Dropped: outer source not in `--allow`.
    pub not_allowed: u64,
    /// Dropped: inner destination not one of the VIPs.
    pub not_vip: u64,
    /// Dropped (gateway): inner source not in the prefixes routed to the sending peer.
    pub inner_source_not_allowed: u64,
    /// Dropped: longer than the receive buffer.
    pub recv_truncated: u64,
    /// Dropped: the tunnel headers or inner packet did not validate, by [`StripError`]
    /// (index = `error as usize`).
    pub strip: [u64; STRIP_REASONS],
    /// Dropped (`--tunnel-key`): GUE without a valid MAC, with an unknown key, replayed, by
    /// [`AuthError`] (index = position in [`AuthError::ALL`]).
    pub auth: [u64; AUTH_REASONS],
    /// Dropped (`--vip-ports`): TCP or UDP to a port the VIP does not list.
    pub port_not_allowed: u64,
    /// Dropped (`--vip-ports`): a protocol the VIP does not list.
    pub proto_not_allowed: u64,
    /// Dropped: the TUN device refused the write.
    pub tun_write_error: u64,
    /// TCP super-packets written whole, merged from consecutive segments of one flow (a
    /// `UDP_GRO` train, or separate packets of one receive batch; their segments are counted
    /// in `delivered`).
    pub gro_super_packets: u64,
    /// IPIP/GRE packets the kernel's GRO had merged (GRO's pseudo-header sum in the inner
    /// checksum field, and longer than the receiving interface's MTU or failing the checksum):
    /// TCP delivered with a virtio header or cut back into segments ([`super::merged`]), UDP
    /// dropped.
    pub kernel_merged: u64,
    /// Dropped: a merged packet that cannot be repaired (UDP, whose datagram boundaries are
    /// lost).
    pub merged_unsupported: u64,
    /// Dropped: a malformed second-chance field, by [`ChanceError`] (index = position in
    /// [`ChanceError::ALL`]).
    pub chance: [u64; CHANCE_REASONS],
    /// Second chance: flagged packets (TCP, not SYN) checked for a local socket.
    pub chance_checked: u64,
    /// Second chance: of those, packets with no local socket, sent on to their second choice
    /// (not counted in `delivered`).
    pub chance_forwarded: u64,
}

impl AgentStats {
    /// Counts one drop.
    pub fn count_drop(&mut self, reason: AgentDrop) {
        match reason {
            AgentDrop::NotAllowed => self.not_allowed += 1,
            AgentDrop::NotVip => self.not_vip += 1,
            AgentDrop::InnerSourceNotAllowed => self.inner_source_not_allowed += 1,
            AgentDrop::Truncated => self.recv_truncated += 1,
            AgentDrop::Strip(e) => {
                if let Some(n) = self.strip.get_mut(e as usize) {
                    *n += 1;
                }
            }
            AgentDrop::Auth(e) => {
                if let Some(i) = AuthError::ALL.iter().position(|x| *x == e) {
                    self.auth[i] += 1;
                }
            }
            AgentDrop::PortNotAllowed => self.port_not_allowed += 1,
            AgentDrop::ProtoNotAllowed => self.proto_not_allowed += 1,
            AgentDrop::Chance(e) => {
                if let Some(i) = ChanceError::ALL.iter().position(|x| *x == e) {
                    self.chance[i] += 1;
                }
            }
        }
    }

    /// Adds `other`'s counters to these (the IPv6 receivers count apart from the IPv4 loop).
    pub fn add(&mut self, other: &AgentStats) {
        let AgentStats {
            received,
            delivered,
            not_allowed,
            not_vip,
            inner_source_not_allowed,
            recv_truncated,
            strip,
            auth,
            port_not_allowed,
            proto_not_allowed,
            tun_write_error,
            gro_super_packets,
            kernel_merged,
            merged_unsupported,
            chance,
            chance_checked,
            chance_forwarded,
        } = other;
        self.received += received;
        self.delivered += delivered;
        self.not_allowed += not_allowed;
        self.not_vip += not_vip;
        self.inner_source_not_allowed += inner_source_not_allowed;
        self.recv_truncated += recv_truncated;
        for (a, b) in self.strip.iter_mut().zip(strip) {
            *a += b;
        }
        for (a, b) in self.auth.iter_mut().zip(auth) {
            *a += b;
        }
        self.port_not_allowed += port_not_allowed;
        self.proto_not_allowed += proto_not_allowed;
        self.tun_write_error += tun_write_error;
        self.gro_super_packets += gro_super_packets;
        self.kernel_merged += kernel_merged;
        self.merged_unsupported += merged_unsupported;
        for (a, b) in self.chance.iter_mut().zip(chance) {
            *a += b;
        }
        self.chance_checked += chance_checked;
        self.chance_forwarded += chance_forwarded;
    }

    /// All drops together.
    pub fn dropped(&self) -> u64 {
        self.not_allowed
            + self.not_vip
            + self.inner_source_not_allowed
            + self.recv_truncated
            + self.tun_write_error
            + self.merged_unsupported
            + self.strip.iter().sum::<u64>()
            + self.auth.iter().sum::<u64>()
            + self.port_not_allowed
            + self.proto_not_allowed
            + self.chance.iter().sum::<u64>()
    }

    /// Every counter as `(label, value)`, the strip and authentication errors under their own
    /// labels; zero strip, authentication and port counters are left out.
    pub fn labelled(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        [
            ("received", self.received),
            ("delivered", self.delivered),
            ("not_allowed", self.not_allowed),
            ("not_vip", self.not_vip),
            ("inner_source_not_allowed", self.inner_source_not_allowed),
            ("recv_truncated", self.recv_truncated),
            ("tun_write_error", self.tun_write_error),
        ]
        .into_iter()
        .chain(
            StripError::ALL
                .iter()
                .zip(self.strip)
                .filter(|(_, n)| *n > 0)
                .map(|(e, n)| (e.as_str(), n)),
        )
        .chain(
            AuthError::ALL
                .iter()
                .zip(self.auth)
                .filter(|(_, n)| *n > 0)
                .map(|(e, n)| (e.as_str(), n)),
        )
        .chain((self.port_not_allowed > 0).then_some(("port_not_allowed", self.port_not_allowed)))
        .chain(
            (self.proto_not_allowed > 0).then_some(("proto_not_allowed", self.proto_not_allowed)),
        )
        .chain(
            (self.gro_super_packets > 0).then_some(("gro_super_packets", self.gro_super_packets)),
        )
        .chain((self.kernel_merged > 0).then_some(("kernel_merged", self.kernel_merged)))
        .chain(
            (self.merged_unsupported > 0)
                .then_some(("merged_unsupported", self.merged_unsupported)),
        )
        .chain(
            ChanceError::ALL
                .iter()
                .zip(self.chance)
                .filter(|(_, n)| *n > 0)
                .map(|(e, n)| (e.as_str(), n)),
        )
        .chain((self.chance_checked > 0).then_some(("chance_checked", self.chance_checked)))
        .chain((self.chance_forwarded > 0).then_some(("chance_forwarded", self.chance_forwarded)))
    }
}

impl fmt::Display for AgentStats {
    /// One line: `received=.. delivered=.. not_allowed=.. ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (label, n)) in self.labelled().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{label}={n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_counted_under_their_reason() {
        let mut s = AgentStats {
            received: 6,
            delivered: 1,
            ..AgentStats::default()
        };
        s.count_drop(AgentDrop::NotAllowed);
        s.count_drop(AgentDrop::NotAllowed);
        s.count_drop(AgentDrop::NotVip);
        s.count_drop(AgentDrop::Truncated);
        s.count_drop(AgentDrop::Strip(StripError::GreKeyMismatch));
        assert_eq!(s.not_allowed, 2);
        assert_eq!(s.strip[StripError::GreKeyMismatch as usize], 1);
        assert_eq!(s.dropped(), 5);
        assert_eq!(
            s.to_string(),
            "received=6 delivered=1 not_allowed=2 not_vip=1 inner_source_not_allowed=0 \
             recv_truncated=1 tun_write_error=0 gre_key_mismatch=1"
        );
        // Merged super-packets appear once there are some.
        s.gro_super_packets = 3;
        assert!(s
            .to_string()
            .ends_with("gre_key_mismatch=1 gro_super_packets=3"));
        s.kernel_merged = 2;
        s.merged_unsupported = 1;
        assert_eq!(s.dropped(), 6);
        assert!(s
            .to_string()
            .ends_with("gro_super_packets=3 kernel_merged=2 merged_unsupported=1"));
    }

    #[test]
    fn adding_sums_every_counter() {
        let mut a = AgentStats {
            received: 2,
            delivered: 1,
            ..AgentStats::default()
        };
        a.count_drop(AgentDrop::Strip(StripError::GreKeyMismatch));
        let mut b = AgentStats {
            received: 3,
            delivered: 2,
            chance_checked: 4,
            ..AgentStats::default()
        };
        b.count_drop(AgentDrop::NotAllowed);
        b.count_drop(AgentDrop::Strip(StripError::GreKeyMismatch));
        a.add(&b);
        assert_eq!((a.received, a.delivered, a.not_allowed), (5, 3, 1));
        assert_eq!(a.strip[StripError::GreKeyMismatch as usize], 2);
        assert_eq!(a.chance_checked, 4);
        assert_eq!(a.dropped(), 3);
    }
}
