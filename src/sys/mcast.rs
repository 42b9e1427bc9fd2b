//! Interface lookups for multicast sockets (connection sync joins its group on one interface).

use std::ffi::CString;
use std::io;

/// The kernel's index of interface `name` (`if_nametoindex`).
pub fn interface_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_an_index_and_a_missing_name_none() {
        assert!(interface_index("lo").unwrap() > 0);
        assert!(interface_index("no-such-if0").is_err());
        assert!(interface_index("a\0b").is_err());
    }
}
