//! Who runs the scripts of a keepalived.conf: `global_defs` `script_user USER [GROUP]` and
//! `enable_script_security`, `user USER [GROUP]` in a MISC_CHECK or a `vrrp_script`, and the
//! checks every script line gets where it is read ([`vet`]: the user exists; with
//! `enable_script_security` a script that would run as root must be secure, as keepalived's
//! `check_script_secure` decides — here an error naming the script and its line, where
//! keepalived disables the script and logs it).
//!
//! tunlb's default user differs from keepalived's: `keepalived_script` if it exists, else
//! `nobody`, never root (`script_user root` restores keepalived's behaviour).

use super::syntax::{Loc, Node};
use super::Ctx;
use crate::model::{ScriptPolicy, ScriptUser};

/// The `global_defs` keywords read here.
pub const GLOBAL_KEYS: &[&str] = &["script_user", "enable_script_security"];

/// The `global_defs` script settings of the file (the last `script_user` wins, as keepalived).
pub(super) fn policy(nodes: &[Node], cx: &mut Ctx) -> ScriptPolicy {
    let mut p = ScriptPolicy::default();
    for node in nodes.iter().filter(|n| n.name.text == "global_defs") {
        let Some(block) = &node.block else { continue };
        for field in &block.children {
            match field.name.text.as_str() {
                "script_user" => {
                    if let Some(u) = user(field, "global_defs", cx) {
                        p.user = Some(u);
                    }
                }
                "enable_script_security" => {
                    cx.at_most(field, 0);
                    p.security = true;
                }
                _ => {}
            }
        }
    }
    p
}

/// `KEYWORD USER [GROUP]`.
pub(super) fn user(field: &Node, what: &str, cx: &mut Ctx) -> Option<ScriptUser> {
    cx.no_block(field);
    let u = cx.arg(field, 0, "a user name")?.text.clone();
    cx.at_most(field, 2);
    let _ = what;
    Some(ScriptUser {
        user: u,
        group: field.args.get(1).map(|w| w.text.clone()),
    })
}

/// Checks the script `line` read at `at` (`what` names its block and keyword), run as `own`
/// or the global user: an error if it must be refused, a warning if keepalived would warn.
pub(super) fn vet(cx: &mut Ctx, at: Loc, what: &str, line: &str, own: Option<&ScriptUser>) {
    match crate::sys::script::vet(line, own, &cx.scripts) {
        Ok(None) => {}
        Ok(Some(w)) => cx.warn(at, format!("{what} {line:?}: {w}")),
        Err(e) => cx.error(at, format!("{what} {line:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_str, KeepalivedError};
    use crate::health::config::CheckKind;
    use crate::model::ScriptUser;

    /// `(line, message)` of every error.
    fn errors(text: &str) -> Vec<(usize, String)> {
        match parse_str(text, "k.conf") {
            Ok(_) => Vec::new(),
            Err(KeepalivedError::Invalid { errors, .. }) => {
                errors.into_iter().map(|d| (d.line, d.message)).collect()
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn conf(global: &str, misc: &str) -> String {
        format!(
            "global_defs {{\n{global}\n}}\n\
             virtual_server 10.0.0.1 80 {{\n\
             \x20 quorum_down /bin/true\n\
             \x20 real_server 10.0.1.1 80 {{\n\
             \x20   MISC_CHECK {{\n{misc}\n\
             \x20   }}\n\
             \x20 }}\n\
             }}\n\
             vrrp_script chk {{\n\
             \x20 script /bin/true\n\
             \x20 user root\n\
             }}\n"
        )
    }

    fn user(u: &str, g: Option<&str>) -> Option<ScriptUser> {
        Some(ScriptUser {
            user: u.into(),
            group: g.map(Into::into),
        })
    }

    #[test]
    fn script_user_and_per_script_users_are_read_and_inherited() {
        let c = parse_str(
            &conf("script_user nobody", "misc_path /bin/true\nuser root root"),
            "k.conf",
        )
        .expect("valid");
        let (_, s) = &c.health.services[0];
        assert_eq!(s.script_user, user("nobody", None), "quorum_down's user");
        let CheckKind::Misc { user: u, .. } = &s.per_dest[0].1.checks[0].kind else {
            panic!("a MISC_CHECK");
        };
        assert_eq!(*u, user("root", Some("root")), "the checker's own user");
        assert_eq!(c.vrrp.script_user, user("nobody", None), "notify's user");
        assert_eq!(c.vrrp.scripts[0].user, user("root", None));

        // No script_user: the checker's user is unset (keepalived_script or nobody at run time).
        let c = parse_str(&conf("router_id x", "misc_path /bin/true"), "k.conf").expect("valid");
        let (_, s) = &c.health.services[0];
        assert!(matches!(
            &s.per_dest[0].1.checks[0].kind,
            CheckKind::Misc { user: None, .. }
        ));
        assert!(c
            .warnings
            .iter()
            .all(|w| !w.message.contains("script_user")));
    }

    #[test]
    fn unknown_users_are_errors_at_their_line() {
        let e = errors(&conf(
            "script_user no-such-user-tunlb",
            "misc_path /bin/true",
        ));
        assert!(
            e.iter().any(|(l, m)| *l == 5
                && m.contains("no-such-user-tunlb")
                && m.contains("quorum_down")),
            "{e:?}"
        );
        let e = errors(&conf(
            "",
            "misc_path /bin/true\nuser root no-such-group-tunlb",
        ));
        assert!(
            e.iter().any(|(l, m)| *l == 8
                && m.contains("MISC_CHECK misc_path")
                && m.contains("no-such-group-tunlb")),
            "{e:?}"
        );
    }

    #[test]
    fn enable_script_security_refuses_an_unsafe_root_script_naming_it() {
        let dir = std::env::temp_dir().join(format!("tunlb-kscripts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let script = dir.join("check.sh");
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let misc = format!("misc_path {}\nuser root", script.display());
        // Without enable_script_security: accepted, with a warning.
        let c = parse_str(&conf("", &misc), "k.conf").expect("accepted");
        assert!(
            c.warnings.iter().any(
                |w| w.line == 8 && w.message.contains("enable_script_security would refuse it")
            ),
            "{:?}",
            c.warnings
        );
        // With it: refused at misc_path's line, naming the script.
        let e = errors(&conf("enable_script_security", &misc));
        assert!(
            e.iter().any(|(l, m)| *l == 8
                && m.contains(&script.display().to_string())
                && m.contains("enable_script_security")),
            "{e:?}"
        );
        // The same script as nobody is fine; a missing one is not.
        let misc = format!("misc_path {}\nuser nobody", script.display());
        assert_eq!(errors(&conf("enable_script_security", &misc)), []);
        let e = errors(&conf(
            "enable_script_security",
            "misc_path /no/such/script-tunlb\nuser nobody",
        ));
        assert!(
            e.iter().any(|(l, m)| *l == 8 && m.contains("cannot find")),
            "{e:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
