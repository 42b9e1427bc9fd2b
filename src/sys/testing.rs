//! Helpers for the tests that need root (`sys::root_tests`, `realserver::root_tests`): a
//! private network namespace per test, `ip`, and hand-built IPv4 packets.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;

/// Runs `f` on a new thread inside a new, unnamed network namespace with `lo` up
/// (`unshare(CLONE_NEWNET)` affects only the calling thread; threads it spawns inherit the
/// namespace). The kernel deletes the namespace when the thread ends, so nothing leaks on any
/// exit path. A panic in `f` is re-raised on the caller's thread.
pub(crate) fn in_new_netns(f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        if let Err(e) = super::unshare_net_namespace() {
            panic!("unshare(CLONE_NEWNET) needs root: {e}");
        }
        ip(&["link", "set", "lo", "up"]);
        f();
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}

/// Runs `ip args...` in the calling thread's namespace; panics unless it succeeds. Returns
/// stdout.
pub(crate) fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A 20-byte IPv4 header; the kernel fills in total length, ID and checksum (IP_HDRINCL).
pub(crate) fn ipv4_header(proto: u8, src: Ipv4Addr, dst: Ipv4Addr) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    h
}

/// An IPv4/UDP packet with a valid IP checksum and no UDP checksum.
pub(crate) fn udp_packet(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut p = ipv4_header(17, *src.ip(), *dst.ip()).to_vec();
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    let mut sum = 0u32;
    for w in p.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}
