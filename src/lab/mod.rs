//! Tools for the lab and the namespace tests: things that play the part of the world around a
//! load balancer, not the load balancer itself.
//!
//! - [`httpd`]: a tiny blocking HTTP/1.1 server (`tunlb httpd`) that answers with a banner, with
//!   deterministic bytes to download, and with a hash of what was uploaded, so a test can tell
//!   which real server answered and that the data crossed the tunnel intact.

pub mod httpd;
