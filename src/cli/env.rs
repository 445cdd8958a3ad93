//! Every environment variable pg2bq reads, in one place: clap folds them into the flags, and
//! the binary reads `DATABASE_URL` for `config`.

/// Postgres URL of the source (also `DATABASE_URL`).
pub const SOURCE: &str = "PG2BQ_SOURCE";
/// Conventional fallback for the source URL.
pub const DATABASE_URL: &str = "DATABASE_URL";
/// Destination: `gs://bucket/prefix`, `file:///dir` or a path.
pub const DEST: &str = "PG2BQ_DEST";
/// TOML config file.
pub const CONFIG: &str = "PG2BQ_CONFIG";
/// Default partitions per table.
pub const PARTITIONS: &str = "PG2BQ_PARTITIONS";
/// Workers exporting units at once (`--jobs`).
pub const JOBS: &str = "PG2BQ_JOBS";
/// `load --streaming-buffer-wait`: the first wait when BigQuery refuses DML over its streaming buffer.
pub const STREAMING_BUFFER_WAIT: &str = "PG2BQ_STREAMING_BUFFER_WAIT";
/// `--out-of-range` default: refuse, clamp or null.
pub const OUT_OF_RANGE: &str = "PG2BQ_OUT_OF_RANGE";
/// `http://host:port` of a GCS emulator (the name other GCS tools use).
pub const STORAGE_EMULATOR_HOST: &str = "STORAGE_EMULATOR_HOST";
/// Service-account or ADC JSON for real GCS.
pub const GOOGLE_APPLICATION_CREDENTIALS: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// BigQuery project for `load` (the name Google's tools use).
pub const GOOGLE_CLOUD_PROJECT: &str = "GOOGLE_CLOUD_PROJECT";
/// Destination dataset for `load`.
pub const BIGQUERY_DATASET: &str = "BIGQUERY_DATASET";
/// `http://host:port` of a BigQuery emulator.
pub const BIGQUERY_EMULATOR_HOST: &str = "BIGQUERY_EMULATOR_HOST";
