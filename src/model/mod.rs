//! The vocabulary every layer shares, with no I/O: the type table ([`types`]), exact decimals
//! ([`decimal`]), the manifest ([`manifest`]) with its [`run_id`] and its partitions' bounds
//! ([`partition`]), the aggregates validation compares ([`aggregates`], [`fingerprint`], [`g17`],
//! [`row_fingerprint`]), the [`check`]s it reports, a tail export's bound ([`tail`]) and its row
//! hashes ([`row_hash`]), the progress counters stages update ([`progress`]), the record of a finished export unit
//! ([`unit_record`]), a table's identity ([`table_ref`]), the values of settings as written
//! ([`settings`]), the [`error_kind`] every shared layer's errors tell, and [`error_chain`], how
//! every error is told with its causes.
//!
//! Nothing here imports another pg2bq module.

pub mod aggregates;
pub mod check;
pub mod days;
pub mod decimal;
pub mod error_kind;
pub mod fingerprint;
pub mod g17;
pub mod locate;
pub mod manifest;
pub mod partition;
pub mod progress;
pub mod row_fingerprint;
pub mod row_hash;
pub mod run_id;
pub mod run_record;
pub mod settings;
pub mod shard;
pub mod table_ref;
pub mod tail;
pub mod types;
pub mod unit_record;

/// The messages of an error and of each of its sources, outermost first.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    std::iter::successors(Some(error), |e| e.source()).map(|e| e.to_string()).collect()
}
