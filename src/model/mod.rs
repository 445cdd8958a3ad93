//! The vocabulary every layer shares, with no I/O: the type table ([`types`]), exact decimals
//! ([`decimal`]), the manifest ([`manifest`]) with its [`run_id`] and its partitions' bounds
//! ([`partition`]), the aggregates validation compares ([`aggregates`], [`fingerprint`]), the
//! [`check`]s it reports, and the progress counters stages update ([`progress`]).
//!
//! Nothing here imports another pg2bq module.

pub mod aggregates;
pub mod check;
pub mod decimal;
pub mod fingerprint;
pub mod manifest;
pub mod partition;
pub mod progress;
pub mod run_id;
pub mod types;
