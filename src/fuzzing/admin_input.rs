use std::ffi::OsString;

use crate::control::{adm, config, format::PortNames};

/// The administrator's inputs: `tunlb adm` arguments, `-R` restore text and the TOML config.
/// Not untrusted in the network sense, but a bad line must give a clear error, never a panic.
pub fn admin_input(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args: Vec<OsString> = text.split_whitespace().map(OsString::from).collect();
    let _ = adm::parse(&args);
    let _ = adm::parse_restore(text, &PortNames::empty());
    if let Ok((_, set)) = config::load_str(text, "fuzz.toml") {
        // A config that loads must build a table.
        // (through the data path's boundary, as the director does).
        if crate::director::table::check_forwardable(&set).is_ok() {
            let _ = crate::director::Registry::new()
                .build(&set, &crate::director::conn::Timeouts::default());
        }
    }
}
