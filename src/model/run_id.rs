//! A run id: the name of a run's directory, and part of BigQuery job ids and labels.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest run id: it becomes a directory name and part of BigQuery job ids and labels.
const MAX_RUN_ID_CHARS: usize = 128;
/// A run id: `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`, so never `.`, `..` or a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

impl From<RunId> for String {
    fn from(run_id: RunId) -> String {
        run_id.0
    }
}

impl TryFrom<String> for RunId {
    type Error = InvalidRunId;

    fn try_from(text: String) -> Result<Self, InvalidRunId> {
        Self::parse(&text)
    }
}

/// A run id that could name a path outside the run.
#[derive(Debug, thiserror::Error)]
#[error(
    "run id `{run_id}` is not allowed: use 1–128 letters, digits, `.`, `_` or `-`, starting with a letter or digit (so never `.`, `..` or a path)"
)]
pub struct InvalidRunId {
    pub run_id: String,
}

impl RunId {
    /// # Errors
    /// [`InvalidRunId`] unless `text` matches `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`.
    pub fn parse(text: &str) -> Result<Self, InvalidRunId> {
        let valid = text.len() <= MAX_RUN_ID_CHARS
            && text.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && text.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if valid {
            Ok(Self(text.to_string()))
        } else {
            Err(InvalidRunId { run_id: text.to_string() })
        }
    }

    /// `20261124T065000Z-1a2b`: sortable by time, unique enough for concurrent runs.
    pub fn generate() -> Self {
        Self(format!("{}-{:04x}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"), rand::random::<u16>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_that_could_leave_the_run_are_refused() {
        for bad in ["", ".", "..", "../x", "a/b", "/abs", ".hidden", "-x", "a b", "a\\b", "é", &"a".repeat(129)] {
            assert!(RunId::parse(bad).is_err(), "{bad:?} was accepted");
        }
        for good in ["a", "run1", "2026-11-27T10.00_x", &"a".repeat(128), &RunId::generate().to_string()] {
            assert_eq!(RunId::parse(good).unwrap().as_str(), good);
        }
    }
}
