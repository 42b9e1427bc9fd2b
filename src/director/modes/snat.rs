//! S-NAT gateway: the real servers' own outbound connections leave behind public addresses.
//!
//! Configured as `[[snat]] source = "10.0.0.0/24" to = ["192.0.2.10"]` (in the TOML
//! config), the director masquerades what the hosts of `source` send out
//! through it, as Linux's `MASQUERADE`/`SNAT --to-source` would, in the same TUN and with the
//! same in-place rewrites as NAT mode ([`super::nat`]). An IPv6 `source` (with IPv6 `to`
//! addresses) is translated the same way by [`super::snat6`]: the mapping code here is
//! generic over the family ([`SnatFamily`]), each family has its own table.
//!
//! # Routing (installed by [`SnatRouting::sync`], undone at exit)
//!
//! ```text
//! ip route add default dev TUN table 7461            # NAT mode's reply table
//! ip rule add pref 100 iif TUN goto 102              # what the director writes back
//! ip rule add pref 100 iif lo goto 102               # the director's own packets
//! ip rule add pref 101 from SOURCE lookup 7461       # each source prefix
//! ip rule add pref 102 nop
//! ip route add TO/32 dev TUN                         # each public address
//! ```
//!
//! Packets to the director's own addresses never see the rules (the `local` table comes
//! first); packets to a VIP go into the TUN anyway. The upstream router routes each public
//! address to the director; none of them may be assigned to it (it would deliver the replies
//! locally) or be a VIP (the control plane refuses that).
//!
//! # Mappings
//!
//! A mapping is a [`NatConn`] in its own [`NatTable`] (`Shared::snat`), filled in so that the
//! table's two indexes do the work: the fixed end is the *destination* D:dport, where NAT mode
//! has the client; the public P:pport plays the VIP; the inside host H:hport plays the real
//! server. So
//!
//! - an outbound packet H:hport → D:dport is found by the "server" tuple (D, dport, H, hport),
//! - a reply D:dport → P:pport by the "client" tuple (D, dport, P, pport),
//!
//! both in the shard of (proto, D, dport), under one lock. A public port is thus unique *per
//! destination* (Linux's per-tuple uniqueness): the same P:pport serves any number of
//! destinations at once. The source port is kept when it is free for that destination;
//! otherwise the next free port of its range (1–1023 or 1024–65535) is taken, at most
//! [`MAX_PORT_TRIES`] tried per public address. The public address is chosen by a hash of the
//! inside address (so a host keeps its address, which later fragments rely on), falling back
//! to the next one when its ports are exhausted. ICMP echo is mapped by its identifier.
//!
//! # Bounded: eviction of never-confirmed mappings
//!
//! A mapping is *confirmed* once it carried traffic both ways: a reply from the remote end,
//! then another packet of the inside host (for TCP, the handshake's last ACK; conntrack calls
//! such an entry ASSURED and its early drop spares it). Above 7/8 of a shard's share of the
//! table, each new mapping first evicts one (an expired mapping, else the never-confirmed one
//! that expires first, among 8 drawn at random: O(1)), as NAT mode does on the same
//! [`NatTable`] type (`Shard::make_room`); counted in `Counters::snat_evicted`
//! (`tunlb_conn_evictions_total{table="snat"}`). So a flood of new internal→external flows
//! (from a runaway or compromised inside host, or packets spoofing an inside source) cannot
//! fill the table: confirmed mappings are never evicted, and a table full of confirmed ones
//! refuses new mappings (`conn_table_full`). An unconfirmed TCP mapping also lives at most
//! `--unconfirmed-timeout` (60 s), whatever its state's timeout.
//!
//! # States and timeouts
//!
//! TCP follows IPVS's full state table (outbound packets as `Input`, replies as `Output`),
//! with the running `--set`/`[timeouts]` values: ESTABLISHED `tcp` (default 900 s, IPVS's; not
//! conntrack's 5 days: an idle mapping holds a port per destination), FIN states `tcpfin` and
//! IPVS's fixed values for the others. A TCP mapping may start on any packet but a lone RST
//! (conntrack's loose pick-up), so flows survive a restart of the director when their port is
//! still free. UDP follows conntrack: 30 s until a reply is seen, 180 s ("stream") after, both
//! capped by `udp`; ICMP echo 30 s.
//!
//! # Not covered
//!
//! - Later fragments of an outbound datagram get the host's preferred public address (right
//!   unless its ports were exhausted); inbound later fragments are dropped
//!   (`fragment_no_flow`): there is nothing to find their host by.
//! - ICMP errors *from* the inside hosts about inbound traffic are not translated; errors
//!   from outside about a mapping (port unreachable, fragmentation needed) are.
//! - ICMP echo mappings are not listed by `adm -L -c` (its rows are TCP or UDP).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::Ordering;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::context::Ctx;
use super::nat::{
    base_rules_of, rewrite_l4, rewrite_quote, Side, REPLY_TABLE, RULE_PREF_END, RULE_PREF_GUARD,
    RULE_PREF_REPLIES,
};
use crate::director::conn::{Conn, ConnKey, ConnKey6, ConnState, DestId, Direction};
use crate::director::packet::counters::Counters;
use crate::director::packet::verdict::{DropReason, Verdict};
use crate::director::packet::{Parsed, Ports};
use crate::director::shared::nat_table::{NatConn, NatKey, NatTable, Shard};
use crate::director::shared::Shared;
use crate::director::table::Snapshot;
use crate::sys::netcfg::{NetChanges, NetOps, PolicyRule, RuleAction};
use crate::time::{Duration, Instant};
use crate::wire::{checksum, icmp, IpProtocol, Ipv4Packet, TcpFlags};

pub use crate::director::table::{SnatAddr, SnatRule, SnatRuleOf, SnatRules};

/// UDP mapping timeout until a reply is seen (conntrack's `nf_conntrack_udp_timeout`).
pub const UDP_TIMEOUT: Duration = Duration::from_secs(30);
/// UDP mapping timeout once replies were seen (`nf_conntrack_udp_timeout_stream`).
pub const UDP_STREAM_TIMEOUT: Duration = Duration::from_secs(180);
/// ICMP echo mapping timeout (conntrack's `nf_conntrack_icmp_timeout`).
pub const ICMP_TIMEOUT: Duration = Duration::from_secs(30);
/// Ports tried per public address before the next address is tried.
pub const MAX_PORT_TRIES: u32 = 1024;
/// [`ConnKey::flags`] bit of a mapping that has seen a reply (UDP "stream").
pub const FLAG_REPLIED: u8 = 0x02;
/// The `dest` of every mapping's [`Conn`] (mappings have no real server).
pub const SNAT_DEST: DestId = DestId(u32::MAX);

/// What S-NAT needs of a family beyond the NAT table's [`NatKey`]: its mapping table in
/// [`Shared`] (`snat` for IPv4, `snat6` for IPv6, so an IPv4 mapping keeps its size), a key
/// constructor and the key's flags. The mapping code below is the same for both families;
/// only the packet rewrites differ (this module for IPv4, [`super::snat6`] for IPv6).
pub trait SnatFamily: NatKey<Addr: SnatAddr> {
    /// The mapping table of this family.
    fn table(shared: &Shared) -> &NatTable<Self>;
    /// The key of a mapping: remote end D:dport as the "client", public P:pport as the
    /// "virtual" end.
    fn key(proto: u8, remote: Self::Addr, rport: u16, public: Self::Addr, pport: u16) -> Self;
    /// The key's flags ([`FLAG_REPLIED`]).
    fn flags(&self) -> &u8;
    /// The key's flags, to set [`FLAG_REPLIED`].
    fn flags_mut(&mut self) -> &mut u8;
}

impl SnatFamily for ConnKey {
    fn table(shared: &Shared) -> &NatTable<ConnKey> {
        &shared.snat
    }
    fn key(proto: u8, remote: Ipv4Addr, rport: u16, public: Ipv4Addr, pport: u16) -> ConnKey {
        ConnKey::new(proto, remote, rport, public, pport)
    }
    fn flags(&self) -> &u8 {
        &self.flags
    }
    fn flags_mut(&mut self) -> &mut u8 {
        &mut self.flags
    }
}

impl SnatFamily for ConnKey6 {
    fn table(shared: &Shared) -> &NatTable<ConnKey6> {
        &shared.snat6
    }
    fn key(proto: u8, remote: Ipv6Addr, rport: u16, public: Ipv6Addr, pport: u16) -> ConnKey6 {
        ConnKey6::new(proto, remote, rport, public, pport)
    }
    fn flags(&self) -> &u8 {
        &self.flags
    }
    fn flags_mut(&mut self) -> &mut u8 {
        &mut self.flags
    }
}

/// The public address a host prefers among `to` (a hash of its address, so it stays put).
pub(crate) fn preferred<A: SnatAddr>(to: &[A], host: A) -> usize {
    let h = host.word().wrapping_mul(0x9e37_79b1) >> 16;
    h as usize % to.len().max(1)
}

/// The ports of a source port's range: Linux keeps privileged ports privileged.
fn port_range(proto: u8, port: u16) -> (u16, u16) {
    match proto {
        IpProtocol::ICMP | IpProtocol::ICMPV6 => (0, u16::MAX),
        _ if port != 0 && port < 1024 => (1, 1023),
        _ => (1024, u16::MAX),
    }
}

/// How long mapping `f` lives after a packet (see the module documentation); a TCP mapping
/// not [confirmed](Conn::is_confirmed) yet at most `unconfirmed`.
fn timeout<K: SnatFamily>(snap: &Snapshot, f: &NatConn<K>, unconfirmed: Duration) -> Duration {
    let replied = f.key.flags() & FLAG_REPLIED != 0;
    let (proto, ..) = f.key.parts();
    match proto {
        IpProtocol::TCP if f.conn.is_confirmed() => snap.timeouts.get(f.conn.state),
        IpProtocol::TCP => snap.timeouts.get(f.conn.state).min(unconfirmed),
        IpProtocol::UDP if replied => UDP_STREAM_TIMEOUT.min(snap.timeouts.udp()),
        IpProtocol::UDP => UDP_TIMEOUT.min(snap.timeouts.udp()),
        _ => ICMP_TIMEOUT,
    }
}

/// The ports of a TCP/UDP packet (as parsed), or the identifier of an ICMP echo request
/// (`sport`) or reply (`dport`) of type `echo`. `None`: not something S-NAT translates.
fn ports(p: &Parsed, echo: u8) -> Result<Option<Ports>, DropReason> {
    match p.proto {
        IpProtocol::TCP | IpProtocol::UDP => p.l4.map(Some).ok_or(DropReason::MalformedL4),
        IpProtocol::ICMP => {
            let ident = p
                .icmp
                .filter(|m| m.msg_type == echo && m.code == 0)
                .and_then(|m| m.echo_ident);
            Ok(ident.map(|id| echo_ports(id, echo == icmp::msg_type::ECHO_REQUEST)))
        }
        _ => Ok(None),
    }
}

/// The [`Ports`] of an ICMP echo message with identifier `id`: a request's as its source port,
/// a reply's as its destination port.
pub(crate) fn echo_ports(id: u16, request: bool) -> Ports {
    let (sport, dport) = if request { (id, 0) } else { (0, id) };
    Ports {
        sport,
        dport,
        flags: TcpFlags::default(),
        payload: true,
    }
}

/// S-NAT's look at a packet from the TUN, before anything else decides it. `None`: not S-NAT's
/// (no rules; a packet to a VIP; not from a `source`; a reply of a NAT-mode flow; a protocol
/// it does not translate): the caller goes on as without S-NAT. Otherwise the packet was
/// rewritten for the TUN, or is dropped.
pub fn handle(cx: &mut Ctx<'_>, buf: &mut [u8], p: &Parsed) -> Option<Verdict> {
    let (snap, shared, now) = (cx.snap, cx.shared, cx.now);
    let rules = &snap.snat;
    if rules.is_public(p.dst) {
        return Some(inbound(cx, buf, p));
    }
    let rule = rules.rule_for(p.src)?;
    if snap.is_vip(p.dst) {
        return None;
    }
    if p.later_fragment {
        // A NAT-mode reply's fragment follows its first fragment's flow.
        if snap.has_nat() && shared.fragment_dest(&p.frag_key()).is_some() {
            return None;
        }
        let public = rule.to[preferred(&rule.to, p.src)];
        Ipv4Packet::new_unchecked(&mut buf[..p.len]).set_src_addr(public);
        return Some(Verdict::Rewrite { len: p.len });
    }
    let l4 = match ports(p, icmp::msg_type::ECHO_REQUEST) {
        Ok(Some(l4)) => l4,
        Ok(None) => return None,
        Err(r) => return Some(Verdict::Drop(r)),
    };
    if p.proto != IpProtocol::ICMP
        && shared
            .nat
            .is_reply(p.proto, (p.src, l4.sport), (p.dst, l4.dport), now)
    {
        return None;
    }
    let (public, pport) = match map_out::<ConnKey>(cx, rule, p.proto, (p.src, p.dst), &l4) {
        Ok(found) => found,
        Err(why) => return Some(Verdict::Drop(why)),
    };
    let pkt = &mut buf[..p.len];
    Ipv4Packet::new_unchecked(&mut *pkt).set_src_addr(public);
    if p.proto == IpProtocol::ICMP {
        set_echo_ident(pkt, p.ihl, pport);
    } else {
        rewrite_l4(pkt, p, Side::Src, p.src, public, pport);
    }
    Some(Verdict::Rewrite { len: p.len })
}

/// An outbound packet H:hport → D:dport over `proto` (`l4`: its ports and flags): its
/// mapping, found or made (evicting as the module documentation says), gives P:pport. The
/// same for both families.
pub(crate) fn map_out<K: SnatFamily>(
    cx: &mut Ctx<'_>,
    rule: &SnatRuleOf<K::Addr>,
    proto: u8,
    (host, dst): (K::Addr, K::Addr),
    l4: &Ports,
) -> Result<(K::Addr, u16), DropReason> {
    let (snap, shared, now) = (cx.snap, cx.shared, cx.now);
    let table = K::table(shared);
    let (unconfirmed, counters) = (cx.config.unconfirmed_timeout, &mut *cx.counters);
    let (hport, dport) = (l4.sport, l4.dport);
    let mut shard = table.shard(proto, dst, dport);
    let mut removed = 0;
    let mut found = shard.find_server(&K::pack(proto, dst, dport, host, hport));
    if let Some(i) = found {
        let c = shard.flows[i].conn;
        let syn_only = l4.flags.contains(TcpFlags::SYN) && !l4.flags.contains(TcpFlags::ACK);
        if c.is_expired(now) || (syn_only && c.state.is_closing()) {
            shard.remove_at(i);
            removed += 1;
            found = None;
        }
    }
    let i = match found {
        Some(i) => {
            let f = &mut shard.flows[i];
            if proto == IpProtocol::TCP {
                f.conn.state = f.conn.state.after(l4.flags, Direction::Input);
            }
            // The host speaks again after the remote end answered: traffic both ways, the
            // mapping is confirmed (conntrack's ASSURED) and no longer evicted for new ones.
            if f.key.flags() & FLAG_REPLIED != 0 {
                f.conn.confirm();
            }
            let t = timeout(snap, f, unconfirmed);
            f.conn.set_expires(now + t);
            i
        }
        None => {
            if proto == IpProtocol::TCP
                && l4.flags.contains(TcpFlags::RST)
                && !l4.flags.contains(TcpFlags::SYN)
            {
                finish(table, counters, shard, removed);
                return Err(DropReason::NoConnection);
            }
            let state = match proto {
                IpProtocol::TCP => ConnState::None.after(l4.flags, Direction::Input),
                IpProtocol::UDP => ConnState::Udp,
                _ => ConnState::Icmp,
            };
            let Some((public, pport)) = allocate(
                &mut shard,
                rule,
                proto,
                (dst, dport),
                (host, hport),
                now,
                &mut removed,
            ) else {
                finish(table, counters, shard, removed);
                return Err(DropReason::SnatPortsExhausted);
            };
            let mut new = NatConn {
                key: K::key(proto, dst, dport, public, pport),
                raddr: host,
                rport: hport,
                conn: Conn::new(SNAT_DEST, state, now),
            };
            new.conn.set_expires(now + timeout(snap, &new, unconfirmed));
            // Over the shard's high-water mark, an expired or never-confirmed mapping makes
            // way for this one (NAT mode's eviction, on the same table type).
            if let Some((_, why)) = shard.make_room(now, table.max_per_shard) {
                counters.snat_evicted[why as usize] += 1;
                removed += 1;
            }
            if shard.insert(new, table.max_per_shard).is_err() {
                finish(table, counters, shard, removed);
                return Err(DropReason::ConnTableFull);
            }
            table.len.fetch_add(1, Ordering::Relaxed);
            counters.conns_created += 1;
            shard.flows.len() - 1
        }
    };
    let (_, _, _, public, pport) = shard.flows[i].key.parts();
    finish(table, counters, shard, removed);
    Ok((public, pport))
}

/// Drops the shard lock and accounts for the `removed` expired mappings.
fn finish<K: NatKey>(
    table: &NatTable<K>,
    counters: &mut Counters,
    shard: impl Sized,
    removed: usize,
) {
    drop(shard);
    if removed > 0 {
        table.len.fetch_sub(removed, Ordering::Relaxed);
        counters.conns_expired += removed as u64;
    }
}

/// A free (public address, port) for host H:hport towards D:dport: the host's preferred
/// address first, its own port first. Expired mappings in the way are removed.
fn allocate<K: SnatFamily>(
    shard: &mut Shard<K>,
    rule: &SnatRuleOf<K::Addr>,
    proto: u8,
    (dst, dport): (K::Addr, u16),
    (host, hport): (K::Addr, u16),
    now: Instant,
    removed: &mut usize,
) -> Option<(K::Addr, u16)> {
    let n = rule.to.len();
    let first = preferred(&rule.to, host);
    let (lo, hi) = port_range(proto, hport);
    let span = u32::from(hi - lo) + 1;
    let start = if (lo..=hi).contains(&hport) {
        hport
    } else {
        lo
    };
    for a in 0..n {
        let public = rule.to[(first + a) % n];
        for t in 0..MAX_PORT_TRIES.min(span) {
            let port = lo + ((u32::from(start - lo) + t) % span) as u16;
            let key = K::pack(proto, dst, dport, public, port);
            match shard.find_client(&key) {
                None => return Some((public, port)),
                Some(i) if shard.flows[i].conn.is_expired(now) => {
                    shard.remove_at(i);
                    *removed += 1;
                    return Some((public, port));
                }
                Some(_) => {}
            }
        }
    }
    None
}

/// A reply D:dport → P:pport over `proto` (`l4`: its ports and flags): the live mapping's
/// inside host H:hport, its state and timer updated; `SnatNoMapping` without one. The same
/// for both families.
pub(crate) fn map_in<K: SnatFamily>(
    cx: &mut Ctx<'_>,
    proto: u8,
    (remote, public): (K::Addr, K::Addr),
    l4: &Ports,
) -> Result<(K::Addr, u16), DropReason> {
    let (snap, now, unconfirmed) = (cx.snap, cx.now, cx.config.unconfirmed_timeout);
    let (rport, pport) = (l4.sport, l4.dport);
    let mut shard = K::table(cx.shared).shard(proto, remote, rport);
    let key = K::pack(proto, remote, rport, public, pport);
    let Some(i) = shard.find_client(&key) else {
        return Err(DropReason::SnatNoMapping);
    };
    let f = &mut shard.flows[i];
    if f.conn.is_expired(now) {
        return Err(DropReason::SnatNoMapping);
    }
    if proto == IpProtocol::TCP {
        f.conn.state = f.conn.state.after(l4.flags, Direction::Output);
    }
    *f.key.flags_mut() |= FLAG_REPLIED;
    let t = timeout(snap, f, unconfirmed);
    f.conn.set_expires(now + t);
    Ok((f.raddr, f.rport))
}

/// The live mapping an ICMP error to a public address quotes (P:pport → D:dport over
/// `proto`, a TCP or UDP packet the mapping sent): its inside host H:hport.
pub(crate) fn map_quote<K: SnatFamily>(
    cx: &Ctx<'_>,
    proto: u8,
    (public, pport): (K::Addr, u16),
    (remote, rport): (K::Addr, u16),
) -> Option<(K::Addr, u16)> {
    let shard = K::table(cx.shared).shard(proto, remote, rport);
    let i = shard.find_client(&K::pack(proto, remote, rport, public, pport))?;
    let f = &shard.flows[i];
    (!f.conn.is_expired(cx.now)).then_some((f.raddr, f.rport))
}

/// A packet to a public address: a reply D:dport → P:pport goes back to H:hport; an ICMP
/// error about a mapping is translated; anything else is dropped.
fn inbound(cx: &mut Ctx<'_>, buf: &mut [u8], p: &Parsed) -> Verdict {
    if p.later_fragment {
        return Verdict::Drop(DropReason::FragmentNoFlow);
    }
    if p.proto == IpProtocol::ICMP {
        match p.icmp {
            Some(m) if m.is_error => return icmp_error_in(cx, buf, p),
            Some(_) => {}
            None => return Verdict::Drop(DropReason::IcmpUnsupported),
        }
    }
    let l4 = match ports(p, icmp::msg_type::ECHO_REPLY) {
        Ok(Some(l4)) => l4,
        Ok(None) => return Verdict::Drop(DropReason::SnatNoMapping),
        Err(r) => return Verdict::Drop(r),
    };
    let (host, hport) = match map_in::<ConnKey>(cx, p.proto, (p.src, p.dst), &l4) {
        Ok(found) => found,
        Err(why) => return Verdict::Drop(why),
    };
    let pkt = &mut buf[..p.len];
    Ipv4Packet::new_unchecked(&mut *pkt).set_dst_addr(host);
    if p.proto == IpProtocol::ICMP {
        set_echo_ident(pkt, p.ihl, hport);
    } else {
        rewrite_l4(pkt, p, Side::Dst, p.dst, host, hport);
    }
    Verdict::Rewrite { len: p.len }
}

/// An ICMP error to a public address quoting P:pport → D:dport: the quote becomes
/// H:hport → D:dport and the error goes to H.
fn icmp_error_in(cx: &mut Ctx<'_>, buf: &mut [u8], p: &Parsed) -> Verdict {
    let quote = p.icmp.and_then(|m| m.quote).filter(|q| q.is_tcp_or_udp());
    let Some(q) = quote else {
        return Verdict::Drop(DropReason::IcmpUnsupported);
    };
    let Some((host, hport)) = map_quote::<ConnKey>(cx, q.proto, (q.src, q.sport), (q.dst, q.dport))
    else {
        return Verdict::Drop(DropReason::IcmpNoFlow);
    };
    rewrite_quote(buf, p.ihl, &q, Side::Src, host, hport);
    Ipv4Packet::new_unchecked(&mut buf[..p.len]).set_dst_addr(host);
    Verdict::Rewrite { len: p.len }
}

/// Sets the identifier of the ICMP echo message at `ihl`, updating its checksum.
fn set_echo_ident(pkt: &mut [u8], ihl: usize, ident: u16) {
    let Some(m) = pkt.get_mut(ihl..ihl + 8) else {
        return;
    };
    let old = u16::from_be_bytes([m[4], m[5]]);
    let csum = u16::from_be_bytes([m[2], m[3]]);
    m[4..6].copy_from_slice(&ident.to_be_bytes());
    m[2..4].copy_from_slice(&checksum::update_u16(csum, old, ident).to_be_bytes());
}

/// One S-NAT mapping as `adm -L -c` shows it: the inside host as the source, the public
/// address as the "virtual" one, the remote end as the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnatMapping<A = Ipv4Addr> {
    /// IP protocol (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    pub proto: u8,
    /// The inside host and its port (ICMP: echo identifier).
    pub host: (A, u16),
    /// The public address and port it leaves behind.
    pub public: (A, u16),
    /// The remote end.
    pub remote: (A, u16),
    /// The mapping's state.
    pub state: ConnState,
    /// When it expires.
    pub expires: Instant,
}

/// Every mapping of `table` (`Shared::snat` or `Shared::snat6`; for `adm -L -c`; locks each
/// shard in turn).
pub fn mappings<K: SnatFamily>(table: &NatTable<K>) -> Vec<SnatMapping<K::Addr>> {
    table
        .flows()
        .into_iter()
        .map(|f| {
            let (proto, remote, rport, public, pport) = f.key.parts();
            SnatMapping {
                proto,
                host: (f.raddr, f.rport),
                public: (public, pport),
                remote: (remote, rport),
                state: f.conn.state,
                expires: f.conn.expires(),
            }
        })
        .collect()
}

/// Preference of the rule that keeps the director's own packets away from the source rules.
pub const RULE_PREF_LOCAL: u32 = RULE_PREF_GUARD;

/// The policy routing and routes S-NAT needs, as installed so far. Owned by the control plane,
/// which calls [`SnatRouting::sync`] whenever the rules change.
#[derive(Debug, Default)]
pub struct SnatRouting {
    /// Table route, guards and `nop` are in place (kept until exit), for IPv4 and for IPv6.
    base: bool,
    base6: bool,
    sources: std::collections::BTreeSet<IpNet>,
    public: std::collections::BTreeSet<IpAddr>,
}

impl SnatRouting {
    /// Brings the host in line with `rules` (through `net`, so everything is undone when the
    /// director stops): each family's base rules once its first rule appears (`ip -6` for
    /// IPv6), then a `from SOURCE` rule per source and a route into the TUN per public address
    /// (a /32 or a /128); what is no longer configured is removed.
    pub fn sync<O: NetOps>(
        &mut self,
        net: &mut NetChanges<O>,
        rules: &SnatRules,
        tun: &str,
    ) -> Result<(), String> {
        let err = |e| format!("routing S-NAT traffic into {tun}: {e}");
        let families = [
            (false, rules.has::<Ipv4Addr>(), &mut self.base),
            (true, rules.has::<Ipv6Addr>(), &mut self.base6),
        ];
        for (ipv6, wanted, done) in families {
            if !wanted || *done {
                continue;
            }
            let all = if ipv6 {
                IpNet::V6(Ipv6Net::default())
            } else {
                IpNet::V4(Ipv4Net::default())
            };
            net.add_table_route_ip(all, tun, REPLY_TABLE).map_err(err)?;
            let [guard, end] = base_rules_of(tun, ipv6);
            net.add_rule(&guard).map_err(err)?;
            net.add_rule(&local_rule(ipv6)).map_err(err)?;
            net.add_rule(&end).map_err(err)?;
            *done = true;
        }
        let sources: std::collections::BTreeSet<IpNet> =
            rules.rules().iter().map(|r| r.source).collect();
        for s in sources.difference(&self.sources.clone()) {
            net.add_rule(&source_rule(*s)).map_err(err)?;
            self.sources.insert(*s);
        }
        for s in self.sources.clone().difference(&sources) {
            if let Err(e) = net.del_rule(&source_rule(*s)) {
                log::warn!("tunlb director: removing an S-NAT rule: {e}");
            }
            self.sources.remove(s);
        }
        let public: std::collections::BTreeSet<IpAddr> = rules.public().iter().copied().collect();
        for a in public.difference(&self.public.clone()) {
            net.add_route_ip(IpNet::from(*a), tun).map_err(err)?;
            self.public.insert(*a);
        }
        for a in self.public.clone().difference(&public) {
            if let Err(e) = net.del_route_ip(IpNet::from(*a), tun) {
                log::warn!("tunlb director: removing the route of S-NAT address {a}: {e}");
            }
            self.public.remove(a);
        }
        Ok(())
    }
}

/// `pref 100 iif lo goto 102` (`ip -6 rule` if `ipv6`): the director's own packets (whose
/// source may lie in a source prefix) are routed as usual.
fn local_rule(ipv6: bool) -> PolicyRule {
    PolicyRule {
        ipv6,
        pref: RULE_PREF_LOCAL,
        iif: Some("lo".to_owned()),
        from: None,
        ipproto: None,
        sport: None,
        action: RuleAction::Goto(RULE_PREF_END),
    }
}

/// `pref 101 from SOURCE lookup 7461` (an `ip -6 rule` for an IPv6 source).
fn source_rule(source: IpNet) -> PolicyRule {
    PolicyRule {
        ipv6: source.addr().is_ipv6(),
        pref: RULE_PREF_REPLIES,
        iif: None,
        from: Some(source),
        ipproto: None,
        sport: None,
        action: RuleAction::Lookup(REPLY_TABLE),
    }
}
