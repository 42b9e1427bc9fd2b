//! Metrics of the data path, for Prometheus.
//!
//! Not built yet: the per-worker counters exist ([`crate::director::Counters`], drops labelled
//! by [`crate::director::DropReason::as_str`]) and the `/metrics` endpoint that aggregates them
//! at scrape time is the subject of the metrics issue.
