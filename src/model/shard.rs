//! Sharded export: which worker a process is, which units of a plan it
//! runs, and whether the source can take that many connections. Pure: the engines' variables
//! come in as a lookup function, so the rules are tested without touching the environment.
//!
//! Every worker computes the same shares from the same plan, so no scheduler hands units out:
//! units go largest first to the worker with the fewest rows so far (ties: the lower index),
//! in an order that depends only on the plan.

/// `<run-id>/plan.json`: a sharded run's plan, written create-only by its coordinator; every
/// worker reads it. Its absence before the manifest exists means the coordinator gave up.
pub const PLAN_FILE: &str = "plan.json";

/// One worker of a sharded run: its index among `count`, and which attempt of its task this is
/// (a retried task skips the units already recorded and removes only its own unrecorded files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerIdentity {
    pub index: usize,
    pub count: usize,
    pub attempt: u32,
}

/// The batch engines' variables, in the order they are tried: Cloud Run Jobs, Kubernetes
/// Indexed Jobs (no count variable: `--workers` gives it), Cloud Batch.
const ENGINES: [(&str, Option<&str>, Option<&str>); 3] = [
    ("CLOUD_RUN_TASK_INDEX", Some("CLOUD_RUN_TASK_COUNT"), Some("CLOUD_RUN_TASK_ATTEMPT")),
    ("JOB_COMPLETION_INDEX", None, None),
    ("BATCH_TASK_INDEX", Some("BATCH_TASK_COUNT"), None),
];

impl WorkerIdentity {
    /// From `--worker-index` / `--workers` when given, else from the engine's variables read
    /// through `env`.
    ///
    /// # Errors
    /// What is missing or malformed, naming the flag or variable.
    pub fn resolve(index: Option<usize>, workers: Option<usize>, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let number = |name: &str| -> Result<Option<usize>, String> {
            env(name).map(|v| v.trim().parse().map_err(|_| format!("{name}={v} is not a non-negative integer"))).transpose()
        };
        let (index, count, attempt) = match index {
            Some(index) => (index, workers, None),
            None => {
                let found = ENGINES.iter().find(|(index, _, _)| env(index).is_some());
                let Some((index_var, count_var, attempt_var)) = found else {
                    return Err("no worker index: pass --worker-index, or run as a Cloud Run Jobs task (CLOUD_RUN_TASK_INDEX), \
                                a Kubernetes Indexed Job (JOB_COMPLETION_INDEX) or a Cloud Batch task (BATCH_TASK_INDEX)"
                        .into());
                };
                let count = workers.or(count_var.map(number).transpose()?.flatten());
                (number(index_var)?.unwrap_or_default(), count, attempt_var.map(number).transpose()?.flatten())
            }
        };
        let count = count.ok_or("no worker count: pass --workers (Kubernetes Indexed Jobs do not set one)")?;
        if count == 0 || index >= count {
            return Err(format!("worker index {index} is not below the worker count {count}"));
        }
        let attempt = u32::try_from(attempt.unwrap_or(0)).map_err(|_| "the task attempt is too large".to_string())?;
        Ok(Self { index, count, attempt })
    }
}

/// A unit of a plan as sharding sees it: its table, its index there, and its counted rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitWeight {
    pub table: String,
    pub partition: usize,
    pub rows: u64,
}

/// The units (as indices into `units`) each of `count` workers runs: largest first to the
/// worker with the fewest rows so far; the same for every worker given the same plan.
pub fn shares(units: &[UnitWeight], count: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&units[a], &units[b]);
        b.rows.cmp(&a.rows).then_with(|| a.table.cmp(&b.table)).then(a.partition.cmp(&b.partition))
    });
    let mut shares = vec![Vec::new(); count.max(1)];
    let mut loads = vec![0u64; count.max(1)];
    for unit in order {
        let lightest = (0..loads.len()).min_by_key(|&w| (loads[w], w)).expect("at least one worker");
        loads[lightest] += units[unit].rows.max(1);
        shares[lightest].push(unit);
    }
    shares
}

/// What the source's connection limit leaves for a run, from `SHOW max_connections`,
/// `superuser_reserved_connections` and the connections open now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionBudget {
    pub max_connections: u32,
    pub superuser_reserved: u32,
    pub in_use: u32,
}

impl ConnectionBudget {
    /// Refuses a plan of `workers × jobs` unit connections plus the coordinator's one that would
    /// exhaust what is left, naming the numbers and the way out.
    ///
    /// # Errors
    /// The refusal.
    pub fn check(&self, workers: usize, jobs: usize) -> Result<(), String> {
        let needed = workers.saturating_mul(jobs).saturating_add(1);
        let free = self.max_connections.saturating_sub(self.superuser_reserved).saturating_sub(self.in_use) as usize;
        if needed > free {
            return Err(format!(
                "{workers} workers × {jobs} jobs + 1 coordinator need {needed} connections, but the source allows {} \
                 (max_connections) − {} (superuser_reserved_connections) − {} in use = {free}; lower --workers or --jobs",
                self.max_connections, self.superuser_reserved, self.in_use
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn the_engines_variables_give_the_identity_and_flags_win() {
        let cloud_run = env(&[("CLOUD_RUN_TASK_INDEX", "2"), ("CLOUD_RUN_TASK_COUNT", "4"), ("CLOUD_RUN_TASK_ATTEMPT", "1")]);
        assert_eq!(WorkerIdentity::resolve(None, None, &cloud_run), Ok(WorkerIdentity { index: 2, count: 4, attempt: 1 }));
        assert_eq!(WorkerIdentity::resolve(Some(0), Some(3), &cloud_run), Ok(WorkerIdentity { index: 0, count: 3, attempt: 0 }));
        let kubernetes = env(&[("JOB_COMPLETION_INDEX", "1")]);
        assert_eq!(WorkerIdentity::resolve(None, Some(2), &kubernetes), Ok(WorkerIdentity { index: 1, count: 2, attempt: 0 }));
        assert!(WorkerIdentity::resolve(None, None, &kubernetes).unwrap_err().contains("pass --workers"));
        let batch = env(&[("BATCH_TASK_INDEX", "0"), ("BATCH_TASK_COUNT", "5")]);
        assert_eq!(WorkerIdentity::resolve(None, None, &batch), Ok(WorkerIdentity { index: 0, count: 5, attempt: 0 }));
    }

    #[test]
    fn a_missing_or_impossible_identity_is_refused_by_name() {
        assert!(WorkerIdentity::resolve(None, Some(2), env(&[])).unwrap_err().contains("CLOUD_RUN_TASK_INDEX"));
        let error = WorkerIdentity::resolve(None, None, env(&[("CLOUD_RUN_TASK_INDEX", "x"), ("CLOUD_RUN_TASK_COUNT", "2")]));
        assert_eq!(error.unwrap_err(), "CLOUD_RUN_TASK_INDEX=x is not a non-negative integer");
        assert!(WorkerIdentity::resolve(Some(4), Some(4), env(&[])).unwrap_err().contains("not below the worker count 4"));
    }

    #[test]
    fn shares_cover_every_unit_once_balanced_and_the_same_for_every_worker() {
        let rows = [900, 100, 500, 500, 300, 0, 700, 200];
        let units: Vec<UnitWeight> =
            rows.iter().enumerate().map(|(i, &rows)| UnitWeight { table: format!("t{}", i % 2), partition: i, rows }).collect();
        let split = shares(&units, 3);
        let mut all: Vec<usize> = split.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..units.len()).collect::<Vec<_>>(), "every unit once");
        let loads: Vec<u64> = split.iter().map(|s| s.iter().map(|&u| units[u].rows).sum()).collect();
        assert_eq!(loads, [1100, 1100, 1000]);
        assert_eq!(split, shares(&units, 3), "deterministic");
        assert_eq!(shares(&units, 1), [vec![0, 6, 2, 3, 4, 7, 1, 5]]);
    }

    #[test]
    fn the_budget_counts_every_worker_job_and_the_coordinator() {
        let budget = ConnectionBudget { max_connections: 100, superuser_reserved: 3, in_use: 10 };
        assert_eq!(budget.check(4, 20), Ok(()));
        let error = budget.check(5, 20).unwrap_err();
        assert!(error.starts_with("5 workers × 20 jobs + 1 coordinator need 101 connections") && error.contains("= 87"), "{error}");
    }
}
