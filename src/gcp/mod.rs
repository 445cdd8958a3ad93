//! Talking to Google: access tokens ([`credentials`]), the BigQuery client ([`bigquery`]), the
//! SQL it is sent ([`sql`]; [`measures`]: the aggregates validate compares, as BigQuery SQL;
//! [`runs`]: what a load records for validate; [`routes`]: how snapshot columns go into, and are read back from,
//! an existing table), and when to repeat a failed request ([`retry`]).
//!
//! Imports only [`crate::model`].

pub mod bigquery;
pub mod credentials;
pub mod measures;
pub mod retry;
pub mod routes;
pub mod runs;
pub mod schema;
pub mod sql;
