//! Shared helpers for the Steward benchmarks.
