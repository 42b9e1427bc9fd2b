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
//! [`dr_mode`] has DR mode on one LAN (the seed's layout); [`nat_mode`] has the NAT-mode (`-m`)
//! scenarios: both directions through the director, many concurrent flows, UDP and ICMP;
//! [`ipv6`] has IPv6 VIPs in TUN mode (and IPv4 VIPs over an IPv6 underlay), [`ipv6_dr`] in
//! DR mode, [`ipv6_nat`] NAT66 (an IPv6 VIP to IPv6 real servers with `-m`);
//! [`gateway`] links two sites through the director's tunnel routes and a
//! `tunlb realserver --gateway`; [`ha`] has two directors with VRRP and connection sync (the
//! seed's §7: SIGKILL failover and preempting return under 60 keep-alive connections, and
//! interop with keepalived), [`ha6`] the same for an IPv6 TUN VIP (its flows synced, a SIGKILL
//! under 40 keep-alive IPv6 connections); [`ecmp`] has directors behind a router's ECMP route announced
//! by BIRD (a director SIGKILLed, one added, a real server removed under 60 connections);
//! [`health`] has keepalived-style health checks removing and
//! restoring real servers; [`ssl_check`] runs an SSL_GET check against `tunlb httpd --tls`
//! (and omega's quorum_down at shutdown);
//! [`keepalived_conf`] runs the seed's keepalived.conf with
//! `tunlb director --keepalived-conf`; [`snat`] has the S-NAT gateway: the real servers' own
//! connections out from a public address; [`metrics`] scrapes `/metrics` after known traffic;
//! [`vrrp`] has two directors electing a VRRP master, ARP answered only by it, and handovers;
//! [`vrrp6`] the same over IPv6 (VRRPv3, Neighbor Discovery) and interop with keepalived there;
//! [`flood`] sends 100,000 spoofed SYN + ACK pairs at a director with a 20,000-flow table;
//! [`control`] has the control socket against an unprivileged squatter;
//! [`privileges`] reads the daemons' capabilities after setup and checks that traffic, edits,
//! reloads and MISC_CHECKs (run as `nobody`) still work with them.

mod control;
mod director_lifecycle;
mod dr_mode;
mod ecmp;
mod flood;
mod fragments;
mod gateway;
mod ha;
mod ha6;
mod harness;
mod health;
mod ipv6;
mod ipv6_dr;
mod ipv6_nat;
mod keepalived_conf;
mod lab;
mod metrics;
mod nat_mode;
mod privileges;
mod second_chance;
mod seed_walkthrough;
mod snat;
mod snat6;
mod ssl_check;
mod tun_mode;
mod vrrp;
mod vrrp6;
