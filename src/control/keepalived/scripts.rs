//! Who runs the scripts of a keepalived.conf: `global_defs` `script_user USER [GROUP]` and
//! `enable_script_security`, `user USER [GROUP]` in a MISC_CHECK or a `vrrp_script`, the
//! `USER [GROUP]` after the script of a `notify*`, `quorum_up` or `quorum_down`
//! ([`notify_script`]), and the checks every script line gets where it is read ([`vet`]: the user exists; with
//! `enable_script_security` a script that would run as root must be secure, as keepalived's
//! `check_script_secure` decides — here an error naming the script and its line, where
//! keepalived disables the script and logs it).
//!
//! tunlb's default user differs from keepalived's: `keepalived_script` if it exists, else
//! `nobody`, never root (`script_user root` restores keepalived's behaviour).

use super::syntax::{Loc, Node};
use super::Ctx;
use crate::model::{ScriptPolicy, ScriptUser};
use crate::sys::script::{RunAs, UserError};
use crate::vrrp::config::NotifyScript;

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

/// A notify-type script: keepalived's `KEYWORD SCRIPT [USER [GROUP]]` (`notify*`,
/// `quorum_up`, `quorum_down`): the first word is the script (quoted when it has arguments),
/// then its user and group. Checked as [`vet`] does, as that user. A user or group that does
/// not exist: with `enable_script_security` an error at its line; without, keepalived ignores
/// the script ("Invalid user/group ... - ignoring"), and so does tunlb, with a warning at its
/// line (`None`).
pub(super) fn notify_script(field: &Node, what: &str, cx: &mut Ctx) -> Option<NotifyScript> {
    cx.no_block(field);
    let kw = &field.name.text;
    let Some(script) = field.args.first() else {
        cx.error(
            field.name.at,
            format!("{what}: {kw}: expected a command after it"),
        );
        return None;
    };
    let command = script.text.clone();
    if let Some(extra) = field.args.get(3) {
        cx.error(
            extra.at,
            format!(
                "{what}: {kw}: unexpected '{}': keepalived takes SCRIPT [USER [GROUP]] (quote the script to give it arguments: {kw} \"{} ARG\")",
                extra.text, command
            ),
        );
        return None;
    }
    let user = field.args.get(1).map(|u| ScriptUser {
        user: u.text.clone(),
        group: field.args.get(2).map(|g| g.text.clone()),
    });
    let at = format!("{what} {kw}");
    if let Some(u) = &user {
        let user_at = field.args[1].at;
        match RunAs::lookup(&u.user, u.group.as_deref()) {
            Ok(_) => {}
            Err(e @ (UserError::NoUser(_) | UserError::NoGroup(_))) => {
                let hint = if field.args.len() == 2 {
                    format!(
                        " (to give the script an argument, quote it: {kw} \"{command} {}\")",
                        u.user
                    )
                } else {
                    String::new()
                };
                if cx.scripts.security {
                    cx.error(
                        user_at,
                        format!("{at} {command:?}: {e}: refused by enable_script_security{hint}"),
                    );
                } else {
                    cx.warn(
                        user_at,
                        format!("{at} {command:?}: {e}: the script is ignored, as keepalived ignores it{hint}"),
                    );
                }
                return None;
            }
            Err(e) => {
                cx.error(user_at, format!("{at} {command:?}: {e}"));
                return None;
            }
        }
    }
    vet(cx, field.name.at, &at, &command, user.as_ref());
    Some(NotifyScript { command, user })
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

    /// `global_defs`, then a service whose quorum scripts are `quorum`, then an instance whose
    /// notify scripts are `notify`.
    fn notify_conf(global: &str, quorum: &str, notify: &str) -> String {
        format!(
            "global_defs {{\n{global}\n}}\n\
             virtual_server 10.0.0.1 80 {{\n{quorum}\n\
             \x20 real_server 10.0.1.1 80 {{\n\
             \x20   TCP_CHECK {{\n\
             \x20   }}\n\
             \x20 }}\n\
             }}\n\
             vrrp_instance VI_1 {{\n\
             \x20 interface eth0\n\
             \x20 virtual_router_id 51\n\
             \x20 virtual_ipaddress {{\n\
             \x20   192.168.150.100\n\
             \x20 }}\n{notify}\n\
             }}\n"
        )
    }

    #[test]
    fn notify_scripts_take_their_user_and_group_after_the_script() {
        let c = parse_str(
            &notify_conf(
                "script_user daemon",
                "quorum_up \"/bin/true up\" nobody nogroup\nquorum_down /bin/true",
                "notify_master \"/bin/true master\" nobody\n\
                 notify_backup /bin/true nobody nogroup\n\
                 notify /bin/true",
            ),
            "k.conf",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let n = &c.vrrp.instances[0].notify;
        let master = n.master.as_ref().unwrap();
        assert_eq!(
            master.command, "/bin/true master",
            "quoted: the script and its argument"
        );
        assert_eq!(master.user, user("nobody", None));
        let backup = n.backup.as_ref().unwrap();
        assert_eq!(backup.command, "/bin/true");
        assert_eq!(backup.user, user("nobody", Some("nogroup")));
        let any = n.any.as_ref().unwrap();
        assert_eq!((any.command.as_str(), &any.user), ("/bin/true", &None));
        assert_eq!(c.vrrp.script_user, user("daemon", None), "the others' user");
        // Both quorum scripts run as the one a quorum script names.
        let (_, s) = &c.health.services[0];
        assert_eq!(s.quorum_up.as_deref(), Some("/bin/true up"));
        assert_eq!(s.quorum_down.as_deref(), Some("/bin/true"));
        assert_eq!(s.script_user, user("nobody", Some("nogroup")));
    }

    #[test]
    fn an_unknown_notify_user_disables_the_script_or_with_script_security_is_an_error() {
        // The common mistake: an unquoted argument, which keepalived takes as the user.
        let notify = "notify_master /bin/true no-such-user-tunlb\nnotify_backup /bin/true";
        let c = parse_str(&notify_conf("", "", notify), "k.conf").expect("a warning only");
        let n = &c.vrrp.instances[0].notify;
        assert_eq!(n.master, None, "ignored, as keepalived ignores it");
        assert!(n.backup.is_some());
        let w = c
            .warnings
            .iter()
            .find(|w| w.message.contains("no-such-user-tunlb"))
            .unwrap_or_else(|| panic!("{:?}", c.warnings));
        assert_eq!(w.line, 17, "{w:?}");
        assert!(w.message.contains("ignored"), "{w:?}");
        assert!(
            w.message
                .contains("quote it: notify_master \"/bin/true no-such-user-tunlb\""),
            "{w:?}"
        );
        // With enable_script_security: an error at its line.
        let e = errors(&notify_conf("enable_script_security", "", notify));
        assert!(
            e.iter().any(|(l, m)| *l == 17
                && m.contains("notify_master")
                && m.contains("no-such-user-tunlb")
                && m.contains("enable_script_security")),
            "{e:?}"
        );
        // An unknown group, in a quorum script: the same.
        let quorum = "quorum_down /bin/true nobody no-such-group-tunlb";
        let c = parse_str(&notify_conf("", quorum, ""), "k.conf").expect("a warning only");
        assert_eq!(c.health.services[0].1.quorum_down, None);
        assert!(c
            .warnings
            .iter()
            .any(|w| w.line == 5 && w.message.contains("no-such-group-tunlb")));
        let e = errors(&notify_conf("enable_script_security", quorum, ""));
        assert!(
            e.iter()
                .any(|(l, m)| *l == 5 && m.contains("no-such-group-tunlb")),
            "{e:?}"
        );
    }

    #[test]
    fn a_notify_line_has_at_most_a_script_a_user_and_a_group() {
        let e = errors(&notify_conf(
            "",
            "",
            "notify_master /bin/true nobody nogroup extra",
        ));
        assert!(
            e.iter().any(|(l, m)| *l == 17
                && m.contains("unexpected 'extra'")
                && m.contains("SCRIPT [USER [GROUP]]")),
            "{e:?}"
        );
        // Two quorum scripts of a service naming different users: tunlb has one per service.
        let e = errors(&notify_conf(
            "",
            "quorum_up /bin/true nobody\nquorum_down /bin/true daemon",
            "",
        ));
        assert!(
            e.iter().any(|(l, m)| *l == 6 && m.contains("one user")),
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
