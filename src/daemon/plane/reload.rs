//! Replacing the whole table: at start, and on SIGHUP or `adm --reload` from the `--config`
//! (or `--keepalived-conf`) file, all or nothing.

use std::path::PathBuf;
use std::sync::Arc;

use super::{ControlPlane, PlaneError};
use crate::control::config::{self, DirectorSettings};
use crate::control::ops::Timeouts;
use crate::director::snat::{SnatRule, SnatRules};
use crate::health::HealthPlane;
use crate::model::ServiceSet;

impl ControlPlane {
    /// Replaces the whole table (config load or reload), and the S-NAT rules when given, all
    /// or nothing.
    pub(super) fn replace(
        &self,
        set: ServiceSet,
        timeouts: Timeouts,
        snat: Option<Vec<SnatRule>>,
    ) -> Result<(), PlaneError> {
        let mut st = self.state.lock().map_err(|_| PlaneError::Poisoned)?;
        let Some(rules) = snat else {
            return self.publish(&mut st, set, timeouts);
        };
        let old = std::mem::replace(&mut st.snat, Arc::new(SnatRules::new(rules)));
        let result = self.publish(&mut st, set, timeouts);
        if result.is_err() {
            st.snat = old;
        }
        result
    }

    /// Remembers the `--keepalived-conf` file so that a reload re-reads it.
    pub fn set_keepalived_path(&self, path: PathBuf) {
        if let Ok(mut p) = self.keepalived_path.lock() {
            *p = Some(path);
        }
    }

    /// Re-reads the `--config` file (or the `--keepalived-conf` file: its virtual servers and
    /// checkers); a bad file is rejected whole and the table kept.
    pub fn reload(&self) -> anyhow::Result<String> {
        let keepalived = self.keepalived_path.lock().ok().and_then(|p| p.clone());
        let (path, (settings, set)) = match (&self.config_path, keepalived) {
            (Some(path), _) => (path.clone(), config::load(path)?),
            (None, Some(path)) => {
                let k = crate::control::keepalived::load_reporting(&path)?;
                let settings = DirectorSettings {
                    health: k.health,
                    vrrp: k.vrrp,
                    ..DirectorSettings::default()
                };
                (path, (settings, k.services))
            }
            (None, None) => anyhow::bail!(
                "the director was started without --config: there is no file to reload"
            ),
        };
        let running_vrrp = self.settings.lock().ok().map(|s| s.vrrp.clone());
        if running_vrrp.is_some_and(|v| v != settings.vrrp) {
            log::warn!(
                "tunlb director: {}: the VRRP configuration changed; VRRP changes take effect at the next restart",
                path.display()
            );
        }
        // Tunnel keys: loaded before anything changes, so a bad key file keeps it all.
        let keys = crate::encap::auth::KeyMap::load_servers(&settings.tunnel_keys)?;
        let keys = self.shared.tunnel_keys().with_servers(keys);
        let (local, local6) = self
            .settings
            .lock()
            .map_or((None, None), |s| (s.local_address, s.local_address6));
        keys.check_sources(local.is_some(), local6.is_some())
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let timeouts = settings.timeouts;
        let n = set.services.len();
        self.replace(set, timeouts, Some(settings.snat))?;
        self.set_tunnel_routes(&settings.tunnel_routes)?;
        self.set_health_config(settings.health);
        self.shared.set_tunnel_keys(keys);
        if let Ok(mut mine) = self.settings.lock() {
            mine.tunnel_keys = settings.tunnel_keys;
        }
        Ok(format!("reloaded {} ({n} services)", path.display()))
    }
}
