//! A real server's connection counts (active: ESTABLISHED, inactive: every other state, as
//! IPVS), kept in step with its flows' states by whoever tracks the flow (the core's
//! connection table, the NAT table).

use crate::director::conn::{template_key, Conn, ConnKey, ConnState, Direction, TemplateTable};
use crate::director::sched::DestState;
use crate::director::table::{Dest, Snapshot};
use crate::time::Instant;
use crate::wire::TcpFlags;

/// Connection counts: ESTABLISHED is active, every other state inactive (as IPVS).
pub fn add_count(state: &DestState, s: ConnState, delta: i32) {
    use std::sync::atomic::Ordering::Relaxed;
    let c = if s.is_active() {
        &state.active
    } else {
        &state.inactive
    };
    if delta > 0 {
        c.fetch_add(delta as u32, Relaxed);
    } else {
        // Never wrap below zero, even if counts were lost across a table swap.
        let _ = c.fetch_update(Relaxed, Relaxed, |v| {
            Some(v.saturating_sub((-delta) as u32))
        });
    }
}

/// Moves a TCP flow's state for a packet with `flags` travelling in `dir`, keeping the real
/// server's active/inactive counts in step.
pub fn step_state(conn: &mut Conn, dest: &Dest, flags: TcpFlags, dir: Direction) {
    let next = conn.state.after(flags, dir);
    if next != conn.state {
        move_counts(&dest.state, conn.state, next);
        conn.state = next;
    }
}

/// A flow of the real server with these counts moved from state `from` to `to`: moves its
/// count between active and inactive if that changed.
pub fn move_counts(state: &DestState, from: ConnState, to: ConnState) {
    if from.is_active() != to.is_active() {
        add_count(state, from, -1);
        add_count(state, to, 1);
    }
}

/// A connection is gone: give back its count and its hold on the persistence template (in
/// `templates`, the shared table's).
/// [`release`] for an IPv6 flow (its template keyed by the client's prefix).
pub fn release6(
    snap: &Snapshot,
    templates: &crate::director::conn::TemplateTable6,
    key: &crate::director::conn::ConnKey6,
    conn: &Conn,
    now: Instant,
) {
    let Some(dest) = snap.dest_or_held(conn.dest) else {
        return;
    };
    add_count(&dest.state, conn.state, -1);
    dest.state
        .update_overload(dest.config.u_threshold, dest.config.l_threshold);
    let svc_key = dest.service;
    if let Some(svc) = snap.service(svc_key.proto, svc_key.vip, svc_key.port) {
        if let Some(pers) = svc.persistence() {
            let len = pers.netmask.prefix_len_v6();
            let tkey = crate::director::conn::template_key6(
                key.proto,
                key.caddr,
                len,
                key.vaddr,
                svc_key.port,
            );
            templates.release_for(&tkey, conn.dest, now);
        }
    }
}

/// Gives back the counts of an IPv4 flow that ended and releases its persistence template.
pub fn release(
    snap: &Snapshot,
    templates: &TemplateTable,
    key: &ConnKey,
    conn: &Conn,
    now: Instant,
) {
    // A held server gets its counts back too: they are the ones it returns with.
    let Some(dest) = snap.dest_or_held(conn.dest) else {
        return;
    };
    add_count(&dest.state, conn.state, -1);
    dest.state
        .update_overload(dest.config.u_threshold, dest.config.l_threshold);
    let svc_key = dest.service;
    if let Some(svc) = snap.service(svc_key.proto, svc_key.vip, svc_key.port) {
        if let Some(pers) = svc.persistence() {
            let tkey = template_key(
                key.proto,
                key.caddr,
                pers.netmask.v4(),
                key.vaddr,
                svc_key.port,
            );
            templates.release_for(&tkey, conn.dest, now);
        }
    }
}
