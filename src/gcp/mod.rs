//! Talking to Google: access tokens ([`credentials`]), the BigQuery client ([`bigquery`]), the
//! SQL it is sent ([`sql`]; [`routes`]: how snapshot columns go into, and are read back from,
//! an existing table), and when to repeat a failed request ([`retry`]).
//!
//! Imports only [`crate::model`].

pub mod bigquery;
pub mod credentials;
pub mod retry;
pub mod routes;
pub mod schema;
pub mod sql;
