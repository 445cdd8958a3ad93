//! Writing the snapshot: Parquet files ([`parquet`]) streamed to a [`store`] (local, memory,
//! or GCS through its JSON API in [`gcs`]), and the [`manifest`] that commits the run.

pub mod gcs;
pub mod manifest;
pub mod parquet;
pub mod store;
