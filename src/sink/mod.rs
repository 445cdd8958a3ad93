//! Writing the snapshot: Parquet files ([`parquet`]) streamed to a [`store`] (local, memory,
//! or GCS through its JSON API in [`gcs`]), and the [`manifest`] that commits the run;
//! [`run`] claims the run directory and is the only place that deletes in it.

pub mod gcs;
pub mod manifest;
pub mod parquet;
pub mod run;
pub mod store;
