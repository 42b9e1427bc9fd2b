//! `adm` requests: apply a batch of commands, list, `--save-config`, `--reload`.

use super::ControlPlane;
use crate::control::config::{self, DirectorSettings};
use crate::control::proto::{Request, Response};
use crate::control::socket::Answer;
use crate::director::conn::DestId;
use crate::model::Edit;
use crate::model::ServiceKey;

impl ControlPlane {
    /// Answers one `adm` request on the control socket: [`Request::StreamConns`] streamed
    /// ([`ControlPlane::conn_chunks`]), every other one in one line ([`ControlPlane::handle`]).
    pub fn answer(&self, req: Request) -> Answer {
        match req {
            Request::StreamConns => Answer::Stream(Box::new(self.conn_chunks())),
            req => Answer::One(self.handle(req)),
        }
    }

    /// Answers one `adm` request in one line (a [`Request::StreamConns`] too: its entries
    /// collected).
    pub fn handle(&self, req: Request) -> Response {
        match req {
            Request::Apply(cmds) => self.apply(&cmds),
            Request::List => Response::Listing(self.listing()),
            Request::ListConns | Request::StreamConns => Response::Conns(self.conn_entries()),
            Request::GetTimeouts => match self.state.lock() {
                Ok(st) => Response::Timeouts(st.timeouts),
                Err(_) => Response::error("Memory allocation problem"),
            },
            Request::Config => match self.config_toml() {
                Some(toml) => Response::Config { toml },
                None => Response::error("Memory allocation problem"),
            },
            Request::Reload => self.handle_reload(),
            Request::ListVrrp => Response::Vrrp(self.vrrp_entries()),
        }
    }

    /// Records the director's effective settings (command line over config file over
    /// defaults) for `adm --save-config`. The values the control plane knows itself win over
    /// those of `s`: `queues` (the number of workers), `tun_name`, `announce` and the running
    /// timeouts; so only `tunnel_mtu`, `local_address(6)`, the VRRP config, the sloppy
    /// settings and the real servers' tunnel key files come from `s`.
    pub fn set_settings(&self, s: DirectorSettings) {
        if let Ok(mut mine) = self.settings.lock() {
            mine.tunnel_mtu = s.tunnel_mtu;
            mine.local_address = s.local_address.filter(|a| !a.is_unspecified());
            mine.local_address6 = s.local_address6.filter(|a| !a.is_unspecified());
            mine.vrrp = s.vrrp;
            mine.sloppy_tcp = s.sloppy_tcp;
            mine.sloppy_sctp = s.sloppy_sctp;
            mine.tunnel_keys = s.tunnel_keys;
        }
    }

    /// The running table, timeouts and settings as the TOML `tunlb director --config` loads;
    /// `None` if a lock is poisoned.
    pub fn config_toml(&self) -> Option<String> {
        let (set, timeouts) = {
            let st = self.state.lock().ok()?;
            (st.set.clone(), st.timeouts)
        };
        let mut settings = self.settings.lock().ok()?.clone();
        settings.timeouts = timeouts;
        settings.snat = self.state.lock().ok()?.snat.rules().to_vec();
        Some(config::to_toml(&set, &settings))
    }

    /// `adm --reload`: [`ControlPlane::reload`], logged as SIGHUP's is.
    fn handle_reload(&self) -> Response {
        match self.reload() {
            Ok(message) => {
                log::info!("tunlb director: adm --reload: {message}");
                Response::Reloaded { message }
            }
            Err(e) => {
                let message = format!("reload rejected, running table kept: {e:#}");
                log::error!("tunlb director: adm --reload: {message}");
                Response::error(message)
            }
        }
    }

    fn apply(&self, edits: &[Edit]) -> Response {
        let Ok(mut st) = self.state.lock() else {
            return Response::error("Memory allocation problem");
        };
        let mut set = st.set.clone();
        let mut timeouts = st.timeouts;
        let applied = match set.apply_batch(&mut timeouts, edits) {
            Ok(applied) => applied,
            Err(e) => return Response::from_batch_error(&e),
        };
        if let Err(e) = self.publish(&mut st, set, timeouts) {
            return Response::error(e.to_string());
        }
        if !applied.zero.is_empty() {
            self.zero_stats(&applied.zero);
        }
        Response::Ok
    }

    /// `-Z`: restart the counters of these services (`None`: all).
    fn zero_stats(&self, which: &[Option<ServiceKey>]) {
        let raw = self.raw_stats();
        let snap = self.shared.snapshot();
        let ids: Vec<DestId> = snap
            .services()
            .into_iter()
            .filter(|s| {
                which
                    .iter()
                    .any(|w| w.is_none_or(|k| k == s.config.key.widen()))
            })
            .flat_map(|s| s.dest_ids.iter().copied())
            .collect();
        if let Ok(mut book) = self.stats.lock() {
            book.zero(&raw, ids);
        }
    }
}
