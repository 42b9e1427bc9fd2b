//! Network-namespace integration tests.
//!
//! Run as root: `cargo test --test netns -- --test-threads=2`. [`harness`] has the RAII guards
//! and the lab topology (and a self-test that needs no director); [`tun_mode`] has the TUN-mode
//! scenarios, each run once per encapsulation (ipip, gre, gue); [`fragments`] sends datagrams
//! without DF that only fit the tunnel as outer fragments; [`director_lifecycle`] has the
//! daemons' life cycle: host settings restored on exit, `adm` without a director, `--announce`
//! on a LAN, `--config` with SIGHUP, and `adm -S`/`-R`; [`seed_walkthrough`] runs the seed's
//! section 6 with `tunlb adm`, then saves, restores and reloads the table and changes it under
//! running connections; [`lab`] runs `tunlb lab demo`, `up` and `down` as a user would;
//! [`keepalived_conf`] runs the seed's keepalived.conf with `tunlb director --keepalived-conf`.

mod director_lifecycle;
mod fragments;
mod harness;
mod keepalived_conf;
mod lab;
mod seed_walkthrough;
mod tun_mode;
