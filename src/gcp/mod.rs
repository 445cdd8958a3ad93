//! Talking to Google: the BigQuery client ([`bigquery`]), the SQL it is sent ([`sql`]), and
//! when to repeat a failed request ([`retry`]).
//!
//! Imports only [`crate::model`].

pub mod bigquery;
pub mod retry;
pub mod schema;
pub mod sql;
