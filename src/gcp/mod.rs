//! Talking to Google: access tokens ([`credentials`]), the BigQuery client ([`bigquery`]), the
//! SQL it is sent ([`sql`]), and when to repeat a failed request ([`retry`]).
//!
//! Imports only [`crate::model`].

pub mod bigquery;
pub mod credentials;
pub mod retry;
pub mod schema;
pub mod sql;
