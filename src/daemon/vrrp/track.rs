//! `track_interface` and `track_script` folded into what the state machine takes: FAULT or
//! not, and the sum of the weights to add to the configured priority.

use crate::vrrp::config::InstanceConfig;

/// What the tracked interfaces and scripts say about one instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tracked {
    /// The instance must be in FAULT: its own interface, a tracked interface without weight or
    /// a script of weight 0 is down / failing.
    pub fault: bool,
    /// Added to the configured priority: positive weights while up / succeeding, negative
    /// weights while down / failing (keepalived's rules).
    pub delta: i32,
}

/// Evaluates `cfg`'s tracking: `iface_up(name)` says whether an interface is up,
/// `script(name)` whether a `vrrp_script` passes and its own weight.
pub fn evaluate(
    cfg: &InstanceConfig,
    iface_up: impl Fn(&str) -> bool,
    script: impl Fn(&str) -> (bool, i32),
) -> Tracked {
    let mut t = Tracked {
        fault: !iface_up(&cfg.interface),
        delta: 0,
    };
    for ti in &cfg.track_interfaces {
        let up = iface_up(&ti.name);
        match ti.weight.unwrap_or(0) {
            0 => t.fault |= !up,
            w if w > 0 && up => t.delta += w,
            w if w < 0 && !up => t.delta += w,
            _ => {}
        }
    }
    for ts in &cfg.track_scripts {
        let (good, own) = script(&ts.name);
        match ts.weight.unwrap_or(own) {
            0 => t.fault |= !good,
            w if w > 0 && good => t.delta += w,
            w if w < 0 && !good => t.delta += w,
            _ => {}
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrrp::config::{TrackInterface, TrackScript};

    fn cfg() -> InstanceConfig {
        let mut c = InstanceConfig::new("VI_1", "eth0", 51);
        c.track_interfaces = vec![
            TrackInterface {
                name: "eth1".into(),
                weight: None,
            },
            TrackInterface {
                name: "eth2".into(),
                weight: Some(-20),
            },
            TrackInterface {
                name: "eth3".into(),
                weight: Some(5),
            },
        ];
        c.track_scripts = vec![
            TrackScript {
                name: "chk_fault".into(),
                weight: None,
            },
            TrackScript {
                name: "chk_minus".into(),
                weight: None,
            },
            TrackScript {
                name: "chk_plus".into(),
                weight: Some(7),
            },
        ];
        c
    }

    fn script(failing: &'static [&'static str]) -> impl Fn(&str) -> (bool, i32) {
        move |name| {
            let weight = match name {
                "chk_minus" => -30,
                "chk_plus" => -1, // overridden by the instance's `weight 7`
                _ => 0,
            };
            (!failing.contains(&name), weight)
        }
    }

    #[test]
    fn all_up_adds_the_positive_weights() {
        let t = evaluate(&cfg(), |_| true, script(&[]));
        assert_eq!(
            t,
            Tracked {
                fault: false,
                delta: 12
            }
        );
    }

    #[test]
    fn negative_weights_count_while_down_or_failing() {
        let t = evaluate(&cfg(), |i| i != "eth2", script(&["chk_minus", "chk_plus"]));
        assert_eq!(
            t,
            Tracked {
                fault: false,
                delta: 5 - 20 - 30
            }
        );
    }

    #[test]
    fn unweighted_interfaces_and_weight_0_scripts_mean_fault() {
        assert!(evaluate(&cfg(), |i| i != "eth1", script(&[])).fault);
        assert!(evaluate(&cfg(), |i| i != "eth0", script(&[])).fault);
        assert!(evaluate(&cfg(), |_| true, script(&["chk_fault"])).fault);
    }
}
