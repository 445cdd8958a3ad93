//! Where snapshots live: a [`store`] (local, memory, or GCS through its JSON API in [`gcs`]),
//! the run directory's claim ([`run`], the only place that deletes), the records of finished
//! export units ([`units`]), reading and checking a committed run ([`manifest`]), and the
//! records `load` and `validate` leave beside it ([`records`]).
//!
//! Imports only [`crate::model`] and [`crate::gcp`].

pub mod gcs;
pub mod manifest;
pub mod records;
pub mod run;
pub mod store;
pub mod units;
