//! Where a probe connects from and to, for every TCP-based checker (HTTP_GET, SSL_GET,
//! TCP_CHECK).
//!
//! By default a probe goes to the real server's own address (`connect_ip`, `connect_port`,
//! `bindto` as keepalived). With `check_through_tunnel` (a tunlb extension) it goes to
//! `VIP:port` through the same path the traffic takes, so that a DSR black hole (agent down,
//! VIP missing on the real server's `lo`, tunnel not decapsulated) fails the check although
//! the server's own address still answers:
//!
//! 1. [`tunnel_path`] (IO, once per probe) finds the real server's forwarding method in the
//!    configured table (NAT has no DSR path: refused), the probe source address (`bindto`, or
//!    the address the kernel picks toward the real server, `ip route get` style), loosens strict
//!    rp_filter on the interface the kernel routes the real server through, where the answers
//!    come in (they come from the VIP, which the director routes into its TUN), and for DR
//!    resolves the server's Ethernet address;
//! 2. [`connect`] binds the probe socket to that source and an ephemeral port, pins the pair to
//!    the real server in the director's [`ProbePins`] (the core forwards its packets there,
//!    unscheduled, even while health checking keeps the server out of the table), connects to
//!    the VIP, and releases the pin when the returned [`PinGuard`] is dropped.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use super::config::CheckSpec;
use super::plane::HealthPlane;
use crate::director::dr::NeighEntry;
use crate::director::probe_pin::{ProbePin, ProbePins, PIN_LINGER};
use crate::model::{Forward, ServiceKey};
use crate::time::Clock;

/// Where one probe connects from and to.
#[derive(Clone, Debug)]
pub struct Target {
    /// The local address to bind (`None`: the kernel chooses).
    pub bind: Option<IpAddr>,
    /// The local port to bind (`bind_port`; `None`: an ephemeral port).
    pub bind_port: Option<u16>,
    /// The address connected to.
    pub connect: SocketAddr,
    /// Set when the probe goes through the data path: what to pin.
    pub through: Option<TunnelPath>,
}

/// What a probe through the director's data path needs (made by [`tunnel_path`]).
#[derive(Clone, Debug)]
pub struct TunnelPath {
    /// The service (its VIP and port are connected to).
    pub service: ServiceKey,
    /// The service's VIP (IPv4: the data path forwards IPv4 only for now).
    pub vip: Ipv4Addr,
    /// The probe source address (the director's address toward the real server).
    pub source: Ipv4Addr,
    /// The real server checked.
    pub dest: Ipv4Addr,
    /// Its forwarding method (tunnel or DR).
    pub forward: Forward,
    /// DR: where the real server is on the LAN.
    pub neigh: Option<NeighEntry>,
    /// The director's pins.
    pub pins: Arc<ProbePins>,
    /// The director's data-path clock (the pins' deadlines are on it).
    pub clock: Clock,
}

/// The target of a probe of `spec` against real server `rip:port` (IPv4 or IPv6): the real
/// server itself, or with `through` (`check_through_tunnel`) the VIP, from the probe source
/// address. `connect_port` and `bind_port` apply to both; `connect_ip` only to the first (the
/// config refuses it with `check_through_tunnel`).
pub fn target(spec: &CheckSpec, rip: IpAddr, port: u16, through: Option<TunnelPath>) -> Target {
    match through {
        None => Target {
            bind: spec.bindto,
            bind_port: spec.bind_port,
            connect: SocketAddr::new(spec.probed(rip), spec.connect_port.unwrap_or(port)),
            through: None,
        },
        Some(t) => Target {
            bind: Some(t.source.into()),
            bind_port: spec.bind_port,
            connect: SocketAddrV4::new(t.vip, spec.connect_port.unwrap_or(t.service.port)).into(),
            through: Some(t),
        },
    }
}

/// Binds `sock` (of `to`'s family) to `addr` and `port` when either is set (the unspecified
/// address of `to`'s family when only the port is); the error is the check's failure reason.
/// A fixed `port` is bound with `SO_REUSEADDR`, so that the next probe can take it again
/// while the last one's connection is in TIME_WAIT.
pub fn bind(
    sock: &Socket,
    to: SocketAddr,
    addr: Option<IpAddr>,
    port: Option<u16>,
) -> Result<(), String> {
    if addr.is_none() && port.is_none() {
        return Ok(());
    }
    let unspecified = match to {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    };
    let local = SocketAddr::new(addr.unwrap_or(unspecified), port.unwrap_or(0));
    let fail = |e: std::io::Error| match port {
        Some(_) => format!("bind to {local}: {e}"),
        None => format!("bind to {}: {e}", local.ip()),
    };
    if port.is_some() {
        sock.set_reuse_address(true).map_err(fail)?;
    }
    sock.bind(&local.into()).map_err(fail)
}

/// Releases a probe's pin (after [`PIN_LINGER`]) when dropped; does nothing for a probe that
/// is not pinned. Keep it as long as the connection.
#[derive(Debug, Default)]
pub struct PinGuard {
    pinned: Option<(Arc<ProbePins>, Clock, Ipv4Addr, u16)>,
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        if let Some((pins, clock, src, port)) = self.pinned.take() {
            pins.release(src, port, clock.now());
        }
    }
}

/// Connects to `target` within `spec.connect_timeout`, pinned when it goes through the data
/// path. The error is the check's failure reason ("connect timeout 3s to ...").
pub fn connect(spec: &CheckSpec, target: &Target) -> Result<(TcpStream, PinGuard), String> {
    let t = spec.connect_timeout;
    let to = target.connect;
    let sock =
        Socket::new(Domain::for_address(to), Type::STREAM, None).map_err(|e| e.to_string())?;
    bind(&sock, to, target.bind, target.bind_port)?;
    let mut guard = PinGuard::default();
    if let Some(path) = &target.through {
        let port = sock
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket_ipv4())
            .map(|a| a.port())
            .ok_or_else(|| format!("bind to {}: no local port", path.source))?;
        let now = path.clock.now();
        let SocketAddr::V4(vip) = to else {
            return Err(format!(
                "probe through the tunnel to {}: {to} is not an IPv4 VIP",
                path.dest
            ));
        };
        let pin = ProbePin {
            vip: *vip.ip(),
            dest: path.dest,
            forward: path.forward,
            neigh: path.neigh,
            expires: now + t + PIN_LINGER,
        };
        path.pins
            .register(path.source, port, pin, now)
            .map_err(|e| format!("probe through the tunnel to {}: {e}", path.dest))?;
        guard.pinned = Some((path.pins.clone(), path.clock, path.source, port));
    }
    let via = match &target.through {
        Some(p) => format!(" through the tunnel to {}", p.dest),
        None => String::new(),
    };
    match sock.connect_timeout(&to.into(), t) {
        Ok(()) => Ok((sock.into(), guard)),
        Err(e)
            if e.kind() == std::io::ErrorKind::TimedOut
                || e.kind() == std::io::ErrorKind::WouldBlock =>
        {
            Err(format!("connect timeout {}s to {to}{via}", t.as_secs_f32()))
        }
        Err(e) => Err(format!("connect to {to}{via}: {e}")),
    }
}

/// Everything a probe of real server `rip:port` of `service` through the data path needs; the
/// error is the check's failure reason. Asks the kernel's routing table and may loosen
/// rp_filter (see the module documentation). IPv4 only: the probe pins hold IPv4 flows (the
/// configs refuse `check_through_tunnel` on an IPv6 real server; an IPv6 VIP is refused here).
pub fn tunnel_path<P: HealthPlane>(
    plane: &P,
    service: ServiceKey,
    rip: IpAddr,
    port: u16,
    bindto: Option<IpAddr>,
) -> Result<TunnelPath, String> {
    let rs = crate::model::fmt_addr_port(rip, port);
    let set = plane.configured();
    let forward = set
        .services
        .iter()
        .find(|s| s.key == service)
        .and_then(|s| {
            s.dests
                .iter()
                .find(|d| d.addr == rip && d.port_in(service) == port)
        })
        .map(|d| d.forward)
        .ok_or_else(|| format!("real server {rs} is not configured in {service}"))?;
    let (IpAddr::V4(vip), IpAddr::V4(rip)) = (service.vip, rip) else {
        return Err(format!(
            "check_through_tunnel: real server {rs} of {service}: the director pins IPv4 \
             probes only"
        ));
    };
    if forward == Forward::Nat {
        return Err(format!(
            "check_through_tunnel: real server {rs} of {service} is a NAT server \
             (no direct return path to check)"
        ));
    }
    let source = match bindto {
        Some(IpAddr::V4(b)) => b,
        Some(b) => return Err(format!("check_through_tunnel: bindto {b} is not IPv4")),
        None => source_toward(rip)?,
    };
    plane
        .accept_probe_replies(&iface_toward(rip)?)
        .map_err(|e| e.to_string())?;
    let neigh = match forward {
        Forward::Dr => Some(resolve(rip)?),
        _ => None,
    };
    Ok(TunnelPath {
        service,
        vip,
        source,
        dest: rip,
        forward,
        neigh,
        pins: plane.probe_pins(),
        clock: plane.clock(),
    })
}

/// The source address the kernel picks for a connection to `rip` (no packet is sent).
fn source_toward(rip: Ipv4Addr) -> Result<Ipv4Addr, String> {
    let fail = |e: std::io::Error| format!("finding the source address toward {rip}: {e}");
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(fail)?;
    s.connect((rip, 9)).map_err(fail)?;
    match s.local_addr().map_err(fail)? {
        SocketAddr::V4(a) if !a.ip().is_unspecified() => Ok(*a.ip()),
        other => Err(format!(
            "finding the source address toward {rip}: got {other}"
        )),
    }
}

/// The name of the interface the kernel routes `rip` through (`ip route get` style).
fn iface_toward(rip: Ipv4Addr) -> Result<String, String> {
    let fail = |e: std::io::Error| format!("finding the interface toward {rip}: {e}");
    let route = crate::sys::neigh::Netlink::open()
        .and_then(|mut nl| nl.route_get(rip))
        .map_err(fail)?;
    let dir = std::fs::read_dir("/sys/class/net").map_err(fail)?;
    for entry in dir.flatten() {
        let index = std::fs::read_to_string(entry.path().join("ifindex")).unwrap_or_default();
        if index.trim().parse() == Ok(route.ifindex) {
            return Ok(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Err(format!(
        "finding the interface toward {rip}: no interface with index {}",
        route.ifindex
    ))
}

/// A DR real server's interface, Ethernet address and MTU, asking the kernel to resolve it
/// and waiting up to a second when it is not known.
fn resolve(rip: Ipv4Addr) -> Result<NeighEntry, String> {
    use crate::sys::neigh::Netlink;
    let fail = |e: std::io::Error| format!("resolving DR real server {rip}: {e}");
    let mut nl = Netlink::open().map_err(fail)?;
    let route = nl.route_get(rip).map_err(fail)?;
    if route.gateway.is_some() || !route.is_unicast() {
        return Err(format!(
            "DR real server {rip} is not on a directly connected LAN"
        ));
    }
    let mtu = nl.link_mtu(route.ifindex).map_err(fail)?;
    let mtu = u16::try_from(mtu).unwrap_or(u16::MAX);
    for attempt in 0..20 {
        let mac = nl
            .neighbours()
            .map_err(fail)?
            .into_iter()
            .find(|n| n.ifindex == route.ifindex && n.addr == rip)
            .and_then(|n| n.mac());
        if let Some(mac) = mac {
            return Ok(NeighEntry {
                ifindex: route.ifindex,
                mac,
                mtu,
            });
        }
        if attempt == 0 {
            nl.resolve(route.ifindex, rip).map_err(fail)?;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "DR real server {rip}: Ethernet address unknown (no ARP answer)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encap::TunnelType;
    use crate::model::Protocol;

    #[test]
    fn finds_the_way_to_loopback() {
        let lo = Ipv4Addr::LOCALHOST;
        assert_eq!(source_toward(lo), Ok(lo));
        assert_eq!(iface_toward(lo).as_deref(), Ok("lo"));
    }

    #[test]
    fn targets_the_real_server_or_the_vip() {
        let rip = Ipv4Addr::new(10, 3, 0, 12);
        let mut spec = CheckSpec {
            connect_port: Some(8080),
            ..CheckSpec::default()
        };
        let direct = target(&spec, rip.into(), 80, None);
        assert_eq!(direct.connect, SocketAddr::from((rip, 8080)));
        assert_eq!(direct.bind, None);
        let vip = Ipv4Addr::new(10, 100, 0, 100);
        let path = TunnelPath {
            service: ServiceKey {
                vip: vip.into(),
                port: 80,
                proto: Protocol::Tcp,
            },
            vip,
            source: Ipv4Addr::new(10, 2, 0, 2),
            dest: rip,
            forward: Forward::tunnel(TunnelType::Ipip),
            neigh: None,
            pins: Arc::new(ProbePins::new()),
            clock: Clock::new(),
        };
        spec.connect_port = None;
        let through = target(&spec, rip.into(), 80, Some(path));
        assert_eq!(through.connect, SocketAddr::from((vip, 80)));
        assert_eq!(through.bind, Some(Ipv4Addr::new(10, 2, 0, 2).into()));
    }

    #[test]
    fn targets_an_ipv6_real_server_with_connect_ip_bindto_and_ports() {
        let rip: IpAddr = "2001:db8:1::12".parse().expect("rip");
        let mut spec = CheckSpec {
            bindto: Some("2001:db8::2".parse().expect("bindto")),
            bind_port: Some(4000),
            ..CheckSpec::default()
        };
        let t = target(&spec, rip, 80, None);
        assert_eq!(t.connect.to_string(), "[2001:db8:1::12]:80");
        assert_eq!((t.bind, t.bind_port), (spec.bindto, Some(4000)));
        spec.connect_ip = Some("2001:db8:1::99".parse().expect("connect_ip"));
        spec.connect_port = Some(8443);
        let t = target(&spec, rip, 80, None);
        assert_eq!(t.connect.to_string(), "[2001:db8:1::99]:8443");
    }

    #[test]
    fn a_pinned_connect_registers_and_releases_its_pin() {
        // Loopback stands in for the VIP: the pin is registered for the bound port, and
        // released (lingering) once the guard is dropped.
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let pins = Arc::new(ProbePins::new());
        let clock = Clock::new();
        let lo = Ipv4Addr::LOCALHOST;
        let t = Target {
            bind: Some(lo.into()),
            bind_port: None,
            connect: SocketAddr::from((lo, port)),
            through: Some(TunnelPath {
                service: ServiceKey {
                    vip: lo.into(),
                    port,
                    proto: Protocol::Tcp,
                },
                vip: lo,
                source: lo,
                dest: Ipv4Addr::new(10, 3, 0, 12),
                forward: Forward::tunnel(TunnelType::Ipip),
                neigh: None,
                pins: pins.clone(),
                clock,
            }),
        };
        let (s, guard) = connect(&CheckSpec::default(), &t).expect("connect");
        let local = s.local_addr().expect("local").port();
        let pin = pins.get(lo, local, clock.now()).expect("pinned");
        assert_eq!(pin.dest, Ipv4Addr::new(10, 3, 0, 12));
        drop(guard);
        let left = pins.get(lo, local, clock.now()).expect("lingers").expires;
        assert!(left <= clock.now() + PIN_LINGER);
    }
}
