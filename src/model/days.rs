//! Rows per calendar day of a table's DATE and TIMESTAMP columns, counted from the Arrow
//! batches as they are exported and recorded in the manifest (`day_counts`), so a report can
//! set the snapshot's days beside BigQuery's `DATE(column)` and Postgres's without reading a
//! file. A TIMESTAMP WITH TIME ZONE counts by its UTC day (BigQuery's `DATE(ts)`), a TIMESTAMP
//! or DATE by the day it names. NULLs are not counted.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// More distinct days than this (a century) and a column's days are not recorded: the count
/// would cost memory and manifest size without helping anyone read a chart.
pub const MAX_DAYS: usize = 36_525;

/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400_000_000;

/// One column's rows per day, as the manifest and unit records hold them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCounts {
    /// The column's BigQuery name.
    pub column: String,
    /// `YYYY-MM-DD` → rows; absent when the column spans more than [`MAX_DAYS`] days or a unit
    /// recorded by an older pg2bq did not count them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days: Option<BTreeMap<String, u64>>,
}

/// Running rows per day (days since 1970-01-01) of one column; `None` once unknown. A hash
/// map, not an ordered one: a day column whose rows do not come in day order (a date cycling
/// through years) costs a lookup per row, ordered only when recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayCounter {
    counts: Option<FxHashMap<i32, u64>>,
}

impl Default for DayCounter {
    fn default() -> Self {
        Self { counts: Some(FxHashMap::default()) }
    }
}

impl DayCounter {
    /// A counter whose days are not known (a recorded file's, until its unit's counts join).
    pub fn unknown() -> Self {
        Self { counts: None }
    }

    /// Counts dates (days since the epoch), a run of equal days at a time.
    pub fn add_dates(&mut self, days: impl Iterator<Item = i32>) {
        let mut run: Option<(i32, u64)> = None;
        for day in days {
            match &mut run {
                Some((current, rows)) if *current == day => *rows += 1,
                _ => {
                    if let Some((current, rows)) = run.replace((day, 1)) {
                        self.add(current, rows);
                    }
                }
            }
        }
        if let Some((day, rows)) = run {
            self.add(day, rows);
        }
    }

    /// Counts timestamps (µs since the epoch) by their day.
    pub fn add_timestamps(&mut self, micros: impl Iterator<Item = i64>) {
        self.add_dates(micros.map(|us| us.div_euclid(DAY_MICROS) as i32));
    }

    fn add(&mut self, day: i32, rows: u64) {
        if let Some(counts) = &mut self.counts {
            *counts.entry(day).or_default() += rows;
            if counts.len() > MAX_DAYS {
                self.counts = None;
            }
        }
    }

    /// Folds another counter of the same column in; unknown stays unknown.
    pub fn merge(&mut self, other: &DayCounter) {
        match &other.counts {
            Some(counts) => counts.iter().for_each(|(&day, &rows)| self.add(day, rows)),
            None => self.counts = None,
        }
    }

    /// The recorded form, named by `column`.
    pub fn to_record(&self, column: &str) -> DayCounts {
        let days = self.counts.as_ref().map(|counts| {
            let ordered: BTreeMap<i32, u64> = counts.iter().map(|(&day, &rows)| (day, rows)).collect();
            ordered.into_iter().map(|(day, rows)| (format_day(day), rows)).collect()
        });
        DayCounts { column: column.to_string(), days }
    }

    /// The counter a record stands for; `None` when a day is not a `YYYY-MM-DD` date.
    pub fn from_record(record: &DayCounts) -> Option<Self> {
        let Some(days) = &record.days else { return Some(Self::unknown()) };
        let counts = days.iter().map(|(day, &rows)| Some((parse_day(day)?, rows))).collect::<Option<_>>()?;
        Some(Self { counts: Some(counts) })
    }
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01.
pub fn format_day(day: i32) -> String {
    match chrono::NaiveDate::from_num_days_from_ce_opt(day.saturating_add(EPOCH_FROM_CE)) {
        Some(date) => date.format("%Y-%m-%d").to_string(),
        None => format!("day {day}"),
    }
}

/// The day `YYYY-MM-DD` names, counted from 1970-01-01.
pub fn parse_day(text: &str) -> Option<i32> {
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(chrono::Datelike::num_days_from_ce(&date) - EPOCH_FROM_CE)
}

/// Days from 0001-01-01 (chrono's day 1) to 1970-01-01.
const EPOCH_FROM_CE: i32 = 719_163;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_count_by_their_utc_day_before_and_after_the_epoch() {
        let mut counter = DayCounter::default();
        let day = DAY_MICROS;
        counter.add_timestamps([0, day - 1, day, -1, -day, 3 * day + 5, 0].into_iter());
        let record = counter.to_record("at");
        let days: Vec<(&str, u64)> = record.days.as_ref().unwrap().iter().map(|(d, n)| (d.as_str(), *n)).collect();
        assert_eq!(days, [("1969-12-31", 2), ("1970-01-01", 3), ("1970-01-02", 1), ("1970-01-04", 1)]);
        assert_eq!(DayCounter::from_record(&record).unwrap(), counter);
    }

    #[test]
    fn merging_adds_days_and_unknown_wins() {
        let (mut a, mut b) = (DayCounter::default(), DayCounter::default());
        a.add_dates([19_000, 19_000, 19_001].into_iter());
        b.add_dates([19_001, 0].into_iter());
        a.merge(&b);
        let days = a.to_record("d").days.unwrap();
        assert_eq!(days.get("2022-01-08"), Some(&2));
        assert_eq!(days.get("2022-01-09"), Some(&2));
        assert_eq!(days.get("1970-01-01"), Some(&1));
        a.merge(&DayCounter::unknown());
        assert_eq!(a.to_record("d").days, None);
    }

    #[test]
    fn more_days_than_a_century_are_not_recorded() {
        let mut counter = DayCounter::default();
        counter.add_dates(0..MAX_DAYS as i32);
        assert!(counter.to_record("d").days.is_some());
        counter.add_dates([-1].into_iter());
        assert_eq!(counter.to_record("d").days, None);
    }

    #[test]
    fn days_print_and_parse_at_the_ends_of_bigquery_range() {
        for text in ["0001-01-01", "1970-01-01", "2024-02-29", "9999-12-31"] {
            assert_eq!(format_day(parse_day(text).unwrap()), text);
        }
        assert_eq!(parse_day("2024-3-1x"), None);
    }
}
