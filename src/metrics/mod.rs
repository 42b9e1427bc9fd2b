//! Counters of the data path.
