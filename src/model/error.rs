//! The model's errors: a broken rule ([`RuleError`]) and an edit the table refuses
//! ([`EditError`]).
//!
//! A [`RuleError`] is what [`validate`](super::validate) finds; each front end renders it in
//! its own words and with its own position (file:line:column for the TOML config and
//! keepalived.conf, ipvsadm's sentence for `tunlb adm`). An [`EditError`] is what
//! [`ServiceSet::apply`](super::ServiceSet::apply) answers; its `Display` is ipvsadm's text for
//! the same kernel error, which is what `adm` prints.

use std::net::{IpAddr, Ipv4Addr};

/// A rule of the service model that a service or real server breaks. `Display` is a neutral
/// English sentence; the front ends print their own (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// A service on port 0 (every port) without persistence: it would match every port with
    /// no reason to.
    #[error("port 0 (every port) needs persistence")]
    ZeroPortNeedsPersistence,
    /// A persistence timeout outside `1..=MAX_TIMEOUT`.
    #[error("persistence timeout {0} is out of range")]
    PersistenceTimeout(u32),
    /// A persistence netmask whose one bits are not contiguous.
    #[error("expected a contiguous netmask like 255.255.255.0, found {0}")]
    NetmaskNotContiguous(Ipv4Addr),
    /// An IPv6 persistence prefix length outside `1..=128`.
    #[error("expected an IPv6 prefix length 1..128, found {0}")]
    Ipv6PrefixLen(u32),
    /// A persistence netmask of the other family than the VIP's (a dotted mask on an IPv6
    /// service, a prefix length on an IPv4 one).
    #[error("{}", netmask_family(*vip))]
    NetmaskFamily {
        /// The service's VIP.
        vip: IpAddr,
    },
    /// A real server of the other family than its VIP's, with DR or NAT forwarding (only
    /// tunnels mix families, as in IPVS).
    #[error(
        "real server {addr} is {} but VIP {vip} is {}: only tunnel forwarding (ipip, gre, gue) \
         mixes IPv4 and IPv6",
        super::service::family_name(*addr),
        super::service::family_name(*vip)
    )]
    FamilyMismatch {
        /// The service's VIP.
        vip: IpAddr,
        /// The real server's address.
        addr: IpAddr,
    },
    /// A weight above `MAX_WEIGHT`.
    #[error("weight {0} is out of range")]
    Weight(u32),
    /// A connection threshold above `MAX_THRESHOLD`.
    #[error("threshold {0} is out of range")]
    Threshold(u32),
    /// A lower connection threshold above the upper one.
    #[error("lower threshold {lower} exceeds upper threshold {upper}")]
    ThresholdsOutOfOrder {
        /// The lower threshold (`-y`, `l_threshold`, `lthreshold`).
        lower: u32,
        /// The upper threshold (`-x`, `u_threshold`, `uthreshold`).
        upper: u32,
    },
    /// A tunnel or direct-routing real server on another port than the service's: those modes
    /// cannot change the port (ipvsadm silently overrides it; tunlb refuses).
    #[error("real server port must be {service_port}: tunnel and dr cannot change the port")]
    DestPortMismatch {
        /// The service's port, the only one such a real server may have.
        service_port: u16,
    },
    /// A real server (address and port) the service already has.
    #[error("duplicate real server {}", super::service::fmt_addr_port(*addr, port))]
    DuplicateDest {
        /// The real server's address.
        addr: IpAddr,
        /// The real server's port.
        port: u16,
    },
}

fn netmask_family(vip: IpAddr) -> &'static str {
    match vip {
        IpAddr::V4(_) => "an IPv4 service takes a dotted netmask like 255.255.255.0",
        IpAddr::V6(_) => "an IPv6 service takes a prefix length 1..128 as its netmask",
    }
}

/// Why an edit could not be applied. `Display` is ipvsadm's text for the same kernel error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum EditError {
    /// `-A` for a service that exists (EEXIST).
    #[error("Service already exists")]
    ServiceExists,
    /// `-E`, `-D`, `-Z`, `-L` for a service that does not exist (ESRCH).
    #[error("No such service")]
    NoSuchService,
    /// `-a`, `-e`, `-d` on a service that does not exist (ESRCH).
    #[error("Service not defined")]
    ServiceNotDefined,
    /// `-a` for a real server the service already has (EEXIST).
    #[error("Destination already exists")]
    DestExists,
    /// `-e`, `-d` for a real server the service does not have (ENOENT).
    #[error("No such destination")]
    NoSuchDest,
    /// A weight above 65535, a threshold above `INT_MAX`, or a lower threshold above the upper
    /// one (ERANGE, printed by ipvsadm with `strerror`).
    #[error("Numerical result out of range")]
    OutOfRange,
    /// A port-zero service without `-p`: it would match every port with no reason to.
    #[error("Zero port specified for non-persistent service")]
    ZeroPortNotPersistent,
    /// A tunnel or direct-routing real server on another port than the service's: those modes
    /// cannot change the port (ipvsadm silently overrides it; tunlb refuses).
    #[error(
        "The real server port must equal the virtual service port (or be omitted) \
         with tunneling and direct routing"
    )]
    DestPortMismatch,
    /// A malformed value the kernel refuses with EINVAL: an IPv6 persistence prefix length
    /// outside 1..128, a netmask of the other family.
    #[error("Invalid argument")]
    InvalidArgument,
    /// A DR or NAT real server of the other family than the VIP's (EINVAL in IPVS, which mixes
    /// families for tunnels only); tunlb names both addresses.
    #[error(
        "Invalid argument: real server {addr} and VIP {vip} are of different address \
         families; only tunnel forwarding (-i) mixes IPv4 and IPv6"
    )]
    FamilyMismatch {
        /// The service's VIP.
        vip: IpAddr,
        /// The real server's address.
        addr: IpAddr,
    },
}

impl From<RuleError> for EditError {
    /// The kernel's answer to a broken rule, as ipvsadm reports it.
    fn from(e: RuleError) -> EditError {
        match e {
            RuleError::ZeroPortNeedsPersistence => EditError::ZeroPortNotPersistent,
            RuleError::PersistenceTimeout(_)
            | RuleError::NetmaskNotContiguous(_)
            | RuleError::Weight(_)
            | RuleError::Threshold(_)
            | RuleError::ThresholdsOutOfOrder { .. } => EditError::OutOfRange,
            RuleError::DestPortMismatch { .. } => EditError::DestPortMismatch,
            RuleError::Ipv6PrefixLen(_) | RuleError::NetmaskFamily { .. } => {
                EditError::InvalidArgument
            }
            RuleError::FamilyMismatch { vip, addr } => EditError::FamilyMismatch { vip, addr },
            RuleError::DuplicateDest { .. } => EditError::DestExists,
        }
    }
}

/// A batch that failed: which edit (0-based) and why. Nothing of the batch was applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct BatchError {
    /// Index of the failing edit in the batch.
    pub index: usize,
    /// The error of that edit.
    pub error: EditError,
}
