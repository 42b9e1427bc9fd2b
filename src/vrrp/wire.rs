//! placeholder: owned by the vrrp-core helper
