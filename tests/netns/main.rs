//! Network-namespace integration tests.
