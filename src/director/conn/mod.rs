//! The connection table: flows by 5-tuple, IPVS states and timeouts, persistence templates.
