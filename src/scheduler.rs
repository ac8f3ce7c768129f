//! Running one collector instance on its interval, isolated from the rest.
//!
//! Each run happens in its own tokio task, so a panic is caught by the
//! runtime and reported through the task's handle, and a run that hangs past
//! its timeout is aborted. Either way the collector value is lost and rebuilt
//! from its configuration before the next run, after a backoff. Errors keep
//! the collector and also back off. The first failure of a burst is logged;
//! the rest are counted, and recovery is logged once.
//!
//! A run may also report parts of itself that failed while the rest went
//! through (`Batch::fail_part`: one query of several): those are counted
//! and logged the same way, per part, without backing off the instance.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use carat_collector::{Batch, CollectorError, DynCollector, Environment, PartFailure};
use tokio::sync::watch;
use tokio::time::{interval_at, Instant, MissedTickBehavior};

use crate::output::backoff::Backoff;
use crate::output::Fanout;
use crate::pipeline::Publisher;
use crate::registry::BuildFn;
use crate::stats::CollectorStats;

/// The longest a failing collector waits between attempts, unless its own
/// interval is longer.
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(300);

/// When an instance runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Time between runs.
    pub interval: Duration,
    /// Upper bound of the random delay before the first run.
    pub splay: Duration,
    /// How long a run may take.
    pub timeout: Duration,
}

/// How one run ended.
pub enum RunOutcome {
    /// The collector filled the batch.
    Done(Box<dyn DynCollector>, Batch),
    /// The collector returned an error; the batch holds what it added before.
    Failed(Box<dyn DynCollector>, Batch, CollectorError),
    /// The collector panicked, with the panic's message.
    Panicked(String),
    /// The run did not finish in time and was aborted.
    TimedOut(Duration),
}

/// Runs `collector` once into `batch` (cleared and stamped first), in its
/// own task, for at most `limit`.
pub async fn run_once(
    mut collector: Box<dyn DynCollector>,
    mut batch: Batch,
    limit: Duration,
) -> RunOutcome {
    batch.clear();
    let task = tokio::spawn(async move {
        let result = collector.collect_boxed(&mut batch).await;
        (collector, batch, result)
    });
    let abort = task.abort_handle();
    match tokio::time::timeout(limit, task).await {
        // A run that reported more samples than its batch holds (the
        // instance's max_metrics) fails; the samples kept are published
        // like those of any failed run.
        Ok(Ok((c, b, Ok(())))) => match b.check_limit() {
            Ok(()) => RunOutcome::Done(c, b),
            Err(e) => RunOutcome::Failed(c, b, e),
        },
        Ok(Ok((c, b, Err(e)))) => RunOutcome::Failed(c, b, e),
        Ok(Err(join)) if join.is_panic() => RunOutcome::Panicked(panic_message(join.into_panic())),
        Ok(Err(_)) => RunOutcome::Panicked("the run was cancelled".into()),
        Err(_) => {
            abort.abort();
            RunOutcome::TimedOut(limit)
        }
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_owned()
    }
}

/// Everything one instance's task needs.
pub struct Instance {
    /// Instance name, for logs and statistics.
    pub name: String,
    /// When it runs.
    pub schedule: Schedule,
    /// How to (re)build the collector.
    pub build: BuildFn,
    /// What the collector is built with.
    pub env: Environment,
    /// Names, filters and rates.
    pub publisher: Publisher,
    /// Where metrics go.
    pub fanout: Arc<Fanout>,
    /// Its statistics.
    pub stats: Arc<CollectorStats>,
}

/// Runs `instance` on its schedule until `stop` turns true.
pub async fn run(mut instance: Instance, mut stop: watch::Receiver<bool>) {
    let schedule = instance.schedule;
    let splay = schedule.splay.mul_f64(fastrand::f64());
    let mut ticker = interval_at(Instant::now() + splay, schedule.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let max_backoff = schedule
        .interval
        .max(MAX_FAILURE_BACKOFF.min(schedule.interval * 10));
    let mut backoff = Backoff::new(schedule.interval, max_backoff);
    let mut health = Health::new(&instance.name);
    let mut collector: Option<Box<dyn DynCollector>> = None;
    let mut spare_batch = Some(Batch::new());
    let mut next_attempt = Instant::now();

    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        if Instant::now() < next_attempt {
            continue;
        }
        let stats = Arc::clone(&instance.stats);
        stats.runs.fetch_add(1, Ordering::Relaxed);
        let c = match collector.take() {
            Some(c) => c,
            None => match (instance.build)(&instance.env) {
                Ok(c) => c,
                Err(e) => {
                    stats.record_error(&e);
                    health.failed(&stats, &format!("cannot be built: {e}"));
                    next_attempt = Instant::now() + backoff.next_delay();
                    continue;
                }
            },
        };
        let batch = spare_batch.take().unwrap_or_default();
        let started = Instant::now();
        // A run in progress when the agent stops is allowed to finish (it is
        // bounded by its timeout, and the agent aborts stragglers): its
        // samples were taken and are delivered like the others, not lost.
        let outcome = run_once(c, batch, schedule.timeout).await;
        let elapsed = started.elapsed();
        // At least 1: 0 means "no run has finished yet".
        stats
            .last_run_micros
            .store((elapsed.as_micros() as u64).max(1), Ordering::Relaxed);
        let failure = match outcome {
            RunOutcome::Done(c, b) => {
                publish(&mut instance, &b);
                health.parts(&stats, b.failed_parts(), true);
                collector = Some(c);
                spare_batch = Some(b);
                None
            }
            RunOutcome::Failed(c, b, e) => {
                // What was read before the error is valid: publish it.
                publish(&mut instance, &b);
                // Parts that did not fail this time may not have run at
                // all: no recovery is read into their absence.
                health.parts(&stats, b.failed_parts(), false);
                collector = Some(c);
                spare_batch = Some(b);
                stats.record_error(&e);
                Some(e.to_string())
            }
            RunOutcome::Panicked(message) => {
                stats.panics.fetch_add(1, Ordering::Relaxed);
                Some(format!(
                    "panicked: {message}; it will be rebuilt from its configuration"
                ))
            }
            RunOutcome::TimedOut(limit) => {
                stats.timeouts.fetch_add(1, Ordering::Relaxed);
                Some(format!(
                    "did not finish within its timeout of {limit:?} and was abandoned; it will be rebuilt"
                ))
            }
        };
        match failure {
            None => {
                backoff.reset();
                health.succeeded(&stats);
            }
            Some(why) => {
                health.failed(&stats, &why);
                next_attempt = Instant::now() + backoff.next_delay();
            }
        }
    }
}

fn publish(instance: &mut Instance, batch: &Batch) {
    let (metrics, report) = instance.publisher.publish(batch);
    if report.non_finite > 0 {
        tracing::debug!(
            collector = %instance.name,
            "{} samples were NaN or infinite and were not published",
            report.non_finite
        );
    }
    instance
        .stats
        .metrics
        .fetch_add(metrics.len() as u64, Ordering::Relaxed);
    instance.fanout.send(metrics);
}

/// The component under `carat.collector.` that instance `instance`'s
/// self-metrics are published at: the instance's name as one path
/// component, so a named instance's dot becomes `_` (`haproxy.edge` →
/// `haproxy_edge`). One component per instance keeps every instance at the
/// same depth in Graphite: `carat.collector.*.errors` is every instance's
/// errors, and an instance is never a sub-tree of another
/// (`collector.haproxy.runs` beside `collector.haproxy.edge.runs`).
pub fn self_metrics_component(instance: &str) -> String {
    carat_collector::name::component(instance)
}

/// Logs failures once per burst and recovery once: of whole runs, and of
/// the parts of runs a collector reports with `Batch::fail_part`.
struct Health {
    name: String,
    failures: u64,
    /// Parts failing now, and how many runs in a row each failed.
    failing_parts: BTreeMap<String, u64>,
}

impl Health {
    fn new(name: &str) -> Self {
        Health {
            name: name.to_owned(),
            failures: 0,
            failing_parts: BTreeMap::new(),
        }
    }

    /// Counts the parts of a run that failed, logs those that start
    /// failing and, when the run went through (`complete`), those that
    /// recovered. The instance is unhealthy while a part fails.
    fn parts(&mut self, stats: &CollectorStats, failed: &[PartFailure], complete: bool) {
        for f in failed {
            stats.record_error(&f.error);
        }
        if complete {
            self.failing_parts.retain(|part, failures| {
                if failed.iter().any(|f| f.part == *part) {
                    return true;
                }
                tracing::info!(
                    collector = %self.name,
                    "collector {}: {part} recovered after {failures} failed runs",
                    self.name
                );
                false
            });
        }
        for f in failed {
            let failures = self.failing_parts.entry(f.part.clone()).or_insert(0);
            *failures += 1;
            if *failures == 1 {
                tracing::warn!(
                    collector = %self.name,
                    "collector {}: {} failed: {}; the rest of the run is published, further failures are counted in carat.collector.{}.*",
                    self.name,
                    f.part,
                    f.error,
                    self_metrics_component(&self.name)
                );
            } else {
                tracing::debug!(collector = %self.name, "{} failed again: {}", f.part, f.error);
            }
        }
        if !self.failing_parts.is_empty() {
            stats.failing.store(true, Ordering::Relaxed);
        }
    }

    fn failed(&mut self, stats: &CollectorStats, why: &str) {
        self.failures += 1;
        stats.failing.store(true, Ordering::Relaxed);
        if self.failures == 1 {
            tracing::warn!(
                collector = %self.name,
                "collector {} failed: {why}; retrying with backoff, further failures are counted in carat.collector.{}.*",
                self.name,
                self_metrics_component(&self.name)
            );
        } else {
            tracing::debug!(collector = %self.name, "failed again: {why}");
        }
    }

    fn succeeded(&mut self, stats: &CollectorStats) {
        if self.failures > 0 {
            tracing::info!(
                collector = %self.name,
                "collector {} recovered after {} failed runs",
                self.name,
                self.failures
            );
        }
        self.failures = 0;
        stats
            .failing
            .store(!self.failing_parts.is_empty(), Ordering::Relaxed);
    }
}
