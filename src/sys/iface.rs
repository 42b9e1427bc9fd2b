//! What the VRRP driver and the ARP responder ask about an interface: its index, its first IPv4
//! address, its Ethernet address and whether it is up, each one `ioctl` on a throwaway socket;
//! its IPv6 link-local address from `/proc/net/if_inet6`.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use socket2::{Domain, Socket, Type};

/// The index of interface `name` (`if_nametoindex`).
pub fn index(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name with NUL"))?;
    // SAFETY: `c` is a NUL-terminated string that lives across the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(i)
}

fn request(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    // SAFETY: all-zero is a valid ifreq.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

fn ioctl(name: &str, op: libc::Ioctl) -> io::Result<libc::ifreq> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, None)?;
    let mut req = request(name)?;
    // SAFETY: `req` is a live ifreq naming the interface; the kernel fills the union member
    // belonging to `op` (one of the SIOCGIF* reads below).
    if unsafe { libc::ioctl(sock.as_raw_fd(), op, &mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(req)
}

/// The interface's primary IPv4 address (`SIOCGIFADDR`: the first one `ip addr` lists).
pub fn ipv4(name: &str) -> io::Result<Ipv4Addr> {
    let req = ioctl(name, libc::SIOCGIFADDR)?;
    // SAFETY: SIOCGIFADDR filled `ifru_addr` with a sockaddr_in, which fits in a sockaddr.
    let sin: libc::sockaddr_in =
        unsafe { std::ptr::read_unaligned(std::ptr::addr_of!(req.ifr_ifru.ifru_addr).cast()) };
    Ok(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
}

/// The interface's IPv6 link-local address (what VRRPv3 over IPv6 sends from): one that has
/// finished duplicate address detection if there is one, else a tentative one.
pub fn ipv6_link_local(name: &str) -> io::Result<Ipv6Addr> {
    let table = std::fs::read_to_string("/proc/net/if_inet6")?;
    link_local_in(&table, name).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("no IPv6 link-local address on {name}"),
        )
    })
}

/// [`ipv6_link_local`] over the text of `/proc/net/if_inet6` (lines `ADDR32HEX IFINDEX PREFIX
/// SCOPE FLAGS NAME`, all hex): link scope (0x20), not failed DAD (flag 0x08), not tentative
/// (0x40) preferred.
pub fn link_local_in(table: &str, name: &str) -> Option<Ipv6Addr> {
    let mut tentative = None;
    for line in table.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [addr, _, _, scope, flags, ifname] = f[..] else {
            continue;
        };
        if ifname != name || scope != "20" || addr.len() != 32 {
            continue;
        }
        let (Ok(a), Ok(flags)) = (
            u128::from_str_radix(addr, 16),
            u32::from_str_radix(flags, 16),
        ) else {
            continue;
        };
        if flags & 0x08 != 0 {
            continue;
        }
        if flags & 0x40 == 0 {
            return Some(Ipv6Addr::from(a));
        }
        tentative.get_or_insert(Ipv6Addr::from(a));
    }
    tentative
}

/// The interface's Ethernet address (`SIOCGIFHWADDR`).
pub fn mac(name: &str) -> io::Result<[u8; 6]> {
    let req = ioctl(name, libc::SIOCGIFHWADDR)?;
    // SAFETY: SIOCGIFHWADDR filled the `ifru_hwaddr` member of the union.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (m, d) in mac.iter_mut().zip(data.iter()) {
        *m = *d as u8;
    }
    Ok(mac)
}

/// Whether the interface is up and has carrier (`IFF_UP` and `IFF_RUNNING`, what `operstate`
/// `up` means); an interface that does not exist is down.
pub fn is_running(name: &str) -> bool {
    match ioctl(name, libc::SIOCGIFFLAGS) {
        // SAFETY: SIOCGIFFLAGS filled the `ifru_flags` member of the union.
        Ok(req) => {
            let flags = unsafe { req.ifr_ifru.ifru_flags } as libc::c_int;
            flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_prefers_an_address_past_dad() {
        let table = "\
20010db8000000000000000000000011 02 40 00 80     eth0
fe80000000000000000000000000aaaa 02 40 20 40     eth0
fe80000000000000000000000000bbbb 02 40 20 80     eth0
fe80000000000000000000000000cccc 03 40 20 80     eth1
00000000000000000000000000000001 01 80 10 80       lo
";
        let ll = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        assert_eq!(link_local_in(table, "eth0"), Some(ll("fe80::bbbb")));
        assert_eq!(link_local_in(table, "eth1"), Some(ll("fe80::cccc")));
        // Without the one past DAD (its DAD failed), the tentative one.
        let failed = table.replace(" 20 80     eth0", " 20 08     eth0");
        assert_eq!(link_local_in(&failed, "eth0"), Some(ll("fe80::aaaa")));
        assert_eq!(link_local_in(table, "lo"), None);
        assert_eq!(link_local_in(table, "eth9"), None);
    }

    #[test]
    fn loopback_is_known_and_up() {
        assert_eq!(index("lo").unwrap(), 1);
        assert!(index("no-such-if0").is_err());
        assert!(!is_running("no-such-if0"));
        assert!(request("a-name-much-too-long-for-linux").is_err());
    }
}
