//! The daemons' runtime directory, `/run/tunlb`, and the network namespace a file in it belongs to.
//!
//! Everything a daemon leaves for the next start or for `tunlb adm` lives here: the control
//! socket and the journal of host changes. The directory is created `0700` and owned by root, so
//! no unprivileged user can create, replace or read anything in it; [`run_dir`] refuses a
//! directory that is a symlink, owned by someone else or writable by others, rather than trust it.
//!
//! Several directors run on one host, one per network namespace, so each file name carries the
//! namespace's id ([`netns_id`]): the kernel's network-namespace cookie, which is never reused
//! while the host is up (unlike the namespace file's inode), so a journal left by a namespace
//! that is gone can never be replayed into a new one.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

/// Where the runtime directory is unless `TUNLB_RUN_DIR` says otherwise.
pub const RUN_DIR: &str = "/run/tunlb";

/// The environment variable that moves the runtime directory (tests, non-standard hosts).
pub const RUN_DIR_ENV: &str = "TUNLB_RUN_DIR";

/// `SO_NETNS_COOKIE` (Linux 5.14); the libc crate may not name it.
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The runtime directory, created `0700` if missing, after checking that it is a real directory
/// owned by this process's effective user with no group or other write permission.
pub fn run_dir() -> io::Result<PathBuf> {
    let dir = std::env::var_os(RUN_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(RUN_DIR));
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    }
    check_private_dir(&dir)?;
    Ok(dir)
}

/// Refuses `dir` unless it is a directory (not a symlink) owned by the effective user and not
/// writable by group or others.
pub fn check_private_dir(dir: &std::path::Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    let euid = effective_uid();
    let bad = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{}: {why}; refusing to use it", dir.display()),
        ))
    };
    if !meta.file_type().is_dir() {
        return bad("not a directory (a symlink?)");
    }
    if meta.uid() != euid {
        return bad(&format!("owned by uid {}, not {euid}", meta.uid()));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return bad("writable by group or others");
    }
    Ok(())
}

/// A file in the runtime directory that belongs to this network namespace:
/// `<run_dir>/<stem>.<netns_id>`.
pub fn netns_file(stem: &str) -> io::Result<PathBuf> {
    Ok(run_dir()?.join(format!("{stem}.{:x}", netns_id()?)))
}

/// The id of this process's network namespace: its cookie (`SO_NETNS_COOKIE`, unique for the
/// host's uptime), or on kernels older than 5.14 the inode of `/proc/self/ns/net` marked with a
/// high bit so the two kinds never collide.
pub fn netns_id() -> io::Result<u64> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").or_else(|_| {
        // A namespace whose loopback is down still has sockets; binding is what can fail.
        socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::DGRAM, None)
            .map(|s| std::net::UdpSocket::from(std::os::fd::OwnedFd::from(s)))
    })?;
    let mut cookie: u64 = 0;
    let mut len = core::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` is a writable u64 and `len` its exact size, which is what
    // `getsockopt(SOL_SOCKET, SO_NETNS_COOKIE)` fills; the fd belongs to a live socket.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc == 0 && len as usize == core::mem::size_of::<u64>() {
        return Ok(cookie);
    }
    let ino = fs::metadata("/proc/self/ns/net")?.ino();
    Ok(ino | 1 << 63)
}

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_id_is_stable_within_a_namespace() {
        let a = netns_id().unwrap();
        assert_eq!(a, netns_id().unwrap());
        assert_ne!(a, 0);
    }

    #[test]
    fn private_dir_checks_refuse_world_writable_and_symlinks() {
        let base = std::env::temp_dir().join(format!("tunlb-rundir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir(&base).unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).unwrap();
        check_private_dir(&base).unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_private_dir(&base).unwrap_err();
        assert!(
            err.to_string().contains("writable by group or others"),
            "{err}"
        );
        fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).unwrap();
        let link = base.with_extension("link");
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&base, &link).unwrap();
        let err = check_private_dir(&link).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        fs::remove_file(&link).unwrap();
        fs::remove_dir_all(&base).unwrap();
    }
}
