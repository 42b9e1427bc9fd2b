use crate::control::keepalived;

/// keepalived.conf text: the lexer (comments, quotes, glued braces), the block tree and the
/// meaning pass. A bad file must give located errors, never a panic or a hang; includes are
/// refused (parse_str has no directory), so the fuzzer never reads the filesystem.
pub fn keepalived_conf(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match keepalived::parse_str(text, "fuzz.conf") {
        Ok(conf) => {
            // A config that parses must build a table, and its VRRP part a summary.
            if crate::director::table::check_forwardable(&conf.services).is_ok() {
                let _ = crate::director::Registry::new()
                    .build(&conf.services, &crate::director::conn::Timeouts::default());
            }
            let _ = conf.vrrp.summary();
        }
        Err(e) => {
            // Every error has a place.
            let shown = e.to_string();
            assert!(!shown.is_empty());
        }
    }
}
