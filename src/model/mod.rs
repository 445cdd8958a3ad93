//! The vocabulary every layer shares, with no I/O: the type table ([`types`]), exact decimals
//! ([`decimal`]), the manifest ([`manifest`]), the aggregates validation compares
//! ([`aggregates`], [`fingerprint`]), the bounds of a table's partitions ([`partition`]) and the [`check`]s it reports and the progress counters stages update ([`progress`]).
//!
//! Nothing here imports another pg2bq module.

pub mod aggregates;
pub mod check;
pub mod decimal;
pub mod fingerprint;
pub mod manifest;
pub mod partition;
pub mod progress;
pub mod types;
