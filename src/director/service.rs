//! Virtual services and real servers: moved to [`crate::model`]; this shim keeps the old paths
//! (`crate::director::service::*`) working for the director code.

pub use crate::model::service::*;
