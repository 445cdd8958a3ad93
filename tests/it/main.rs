//! The one integration test binary: real Postgres, fake-gcs-server and pyarrow, each gated by
//! an env var that scripts/test.sh sets (so in CI nothing skips).

mod audit;
mod bqclient;
mod browser;
mod cli;
mod cutover;
mod cutover_mistakes;
mod ddl;
mod export;
mod faults;
mod hostile;
mod layers;
mod load;
mod load_state;
mod locate;
mod names;
mod partitioned;
mod runs;
mod scheduler;
mod shard;
mod stdout;
mod stream;
mod support;
mod tails;
mod timescaledb;
mod validate;
mod validate_nulls;
