//! The administrator's inputs: `tunlb adm` arguments, `-R` restore text and the TOML config.
//! Not untrusted in the network sense, but a bad line must give a clear error, never a panic.
#![no_main]

use std::ffi::OsString;

use libfuzzer_sys::fuzz_target;
use tunlb::control::{adm, config, format::PortNames};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args: Vec<OsString> = text.split_whitespace().map(OsString::from).collect();
    let _ = adm::parse(&args);
    let _ = adm::parse_restore(text, &PortNames::empty());
    if let Ok((_, set)) = config::load_str(text, "fuzz.toml") {
        // A config that loads must build a table.
        let _ = tunlb::director::Registry::new()
            .build(&set, &tunlb::director::conn::Timeouts::default());
    }
});
