use crate::sys::neigh::{attributes, messages, parse_link, parse_neigh, parse_route};

/// A datagram read from a netlink route socket (the neighbour resolver's answers and its
/// `RTMGRP_NEIGH` notifications): the messages in it, each payload read as a route, a
/// neighbour and a link whatever its type says, and the attributes of each. Every message and
/// attribute lies inside the datagram, in order, and is at least its header long; a parsed
/// neighbour's Ethernet address comes from a 6-byte `NDA_LLADDR`. Never a panic.
pub fn netlink(data: &[u8]) {
    let base = data.as_ptr() as usize;
    let mut last_end = 0;
    for (_, payload) in messages(data) {
        let at = payload.as_ptr() as usize - base;
        assert!(at >= last_end + 16, "message overlaps the previous one");
        assert!(at + payload.len() <= data.len());
        last_end = at + payload.len();
        let mut attr_end = 0;
        for (kind, value) in attributes(payload) {
            assert!(
                kind <= 0x3fff,
                "the nested/byte-order flags stay out of the type"
            );
            let a = value.as_ptr() as usize - payload.as_ptr() as usize;
            assert!(a >= attr_end + 4 && a + value.len() <= payload.len());
            attr_end = a + value.len();
        }
        if let Some(route) = parse_route(payload) {
            let _ = (route.is_unicast(), route.is_local());
        }
        if let Some(n) = parse_neigh(payload) {
            let _ = n.wants_resolution();
            if let Some(mac) = n.mac() {
                assert_eq!(Some(mac), n.lladdr);
            }
        }
        if let Some(link) = parse_link(payload) {
            let _ = link.is_ethernet();
        }
    }
}
