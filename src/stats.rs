//! Counters the agent keeps about itself, published by the `carat`
//! self-metrics collector and read by tests.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use carat_collector::error::LABELS;
use carat_collector::CollectorError;

/// What happened to one collector instance's runs.
#[derive(Debug, Default)]
pub struct CollectorStats {
    /// Runs started.
    pub runs: AtomicU64,
    /// Runs that returned an error (or whose collector could not be built),
    /// and parts of runs that failed while the rest went through (one query
    /// of several). Add with [`CollectorStats::record_error`].
    pub errors: AtomicU64,
    /// Of `errors`, how many of each kind, in the order of
    /// [`carat_collector::error::LABELS`].
    pub errors_by_kind: [AtomicU64; LABELS.len()],
    /// Runs abandoned after the timeout.
    pub timeouts: AtomicU64,
    /// Runs that panicked.
    pub panics: AtomicU64,
    /// Metrics published.
    pub metrics: AtomicU64,
    /// Duration of the last run, in microseconds (at least 1); 0 until a
    /// run has finished.
    pub last_run_micros: AtomicU64,
    /// True while the instance is failing (since its last successful run).
    pub failing: AtomicBool,
}

impl CollectorStats {
    /// Counts a failed run (or a collector that could not be built), in
    /// `errors` and under its kind.
    pub fn record_error(&self, error: &CollectorError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Some(kind) = self.errors_by_kind.get(error.label_index()) {
            kind.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The kinds of error seen so far and how many of each, in the order of
    /// [`LABELS`].
    pub fn errors_by_kind(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        LABELS
            .iter()
            .zip(&self.errors_by_kind)
            .map(|(label, n)| (*label, get(n)))
            .filter(|(_, n)| *n > 0)
    }
}

/// What happened to one output's metrics.
///
/// Every metric handed to an output is, at any moment, in exactly one of
/// `sent`, `dropped` and `buffered`.
#[derive(Debug, Default)]
pub struct OutputStats {
    /// Metrics delivered: acknowledged by the receiver where the protocol
    /// can tell (TCP, AMQP), handed to the network or standard output where
    /// it cannot (UDP, StatsD).
    pub sent: AtomicU64,
    /// Metrics dropped: buffer full, queue full, spool damaged or deleted,
    /// or undeliverable at exit. Add with [`OutputStats::record_drops`].
    pub dropped: AtomicU64,
    /// Metrics held now: waiting in memory or in the spool, or written and
    /// not yet acknowledged.
    pub buffered: AtomicU64,
    /// Of `buffered`, metrics not yet written: in memory or in the spool.
    pub waiting: AtomicU64,
    /// Connections made after a failure.
    pub reconnects: AtomicU64,
    /// Failed connects and writes.
    pub errors: AtomicU64,
    /// True while connected (always true for connectionless outputs).
    pub connected: AtomicBool,
    /// Metrics the output holds in memory at most (0: it does not buffer).
    /// Set once when the output starts; read by the health report.
    pub capacity: AtomicU64,
    /// How long metrics may wait without any delivery before the output is
    /// reported unhealthy, in milliseconds (its reconnect ceiling; 0: never).
    pub stall_limit_ms: AtomicU64,
    /// [`now_ms`] of the last drop (0: never).
    pub last_drop_ms: AtomicU64,
    /// [`now_ms`] since which metrics have been waiting without a delivery
    /// (0: nothing waits).
    pub waiting_since_ms: AtomicU64,
}

impl OutputStats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` dropped metrics and notes when, for the health report.
    pub fn record_drops(&self, n: u64) {
        if n > 0 {
            self.dropped.fetch_add(n, Ordering::Relaxed);
            self.last_drop_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// Records what an output holds after a step: `held` metrics, and
    /// whether anything was delivered in that step. The stall clock starts
    /// when metrics start waiting and restarts at every delivery.
    pub fn record_held(&self, held: u64, delivered: bool) {
        self.buffered.store(held, Ordering::Relaxed);
        if held == 0 {
            self.waiting_since_ms.store(0, Ordering::Relaxed);
        } else if delivered || self.waiting_since_ms.load(Ordering::Relaxed) == 0 {
            self.waiting_since_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// Sets what the health report compares against: the output's memory
    /// bound and its reconnect ceiling.
    pub fn set_limits(&self, capacity: usize, stall_limit: Duration) {
        self.capacity.store(capacity as u64, Ordering::Relaxed);
        self.stall_limit_ms
            .store(stall_limit.as_millis() as u64, Ordering::Relaxed);
    }
}

/// Milliseconds on the agent's monotonic clock, never 0 (0 means "never" in
/// the statistics).
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    start.elapsed().as_millis() as u64 + 1
}

/// The statistics of every collector instance and output the agent runs
/// now. A reload changes the lists: an instance or output that stays keeps
/// its statistics (its counters carry on), a new one starts at zero, and a
/// removed one leaves the lists.
#[derive(Debug, Default)]
pub struct AgentStats {
    collectors: RwLock<Vec<(String, Arc<CollectorStats>)>>,
    outputs: RwLock<Vec<(String, Arc<OutputStats>)>>,
}

impl AgentStats {
    /// Statistics for these collector instances and outputs, by name.
    pub fn new(
        collectors: Vec<(String, Arc<CollectorStats>)>,
        outputs: Vec<(String, Arc<OutputStats>)>,
    ) -> Self {
        AgentStats {
            collectors: RwLock::new(collectors),
            outputs: RwLock::new(outputs),
        }
    }

    /// The statistics of collector instance `name`.
    pub fn collector(&self, name: &str) -> Option<Arc<CollectorStats>> {
        find(&self.collectors, name)
    }

    /// The statistics of output `name`.
    pub fn output(&self, name: &str) -> Option<Arc<OutputStats>> {
        find(&self.outputs, name)
    }

    /// Every collector instance's statistics, by instance name.
    pub fn collectors(&self) -> Vec<(String, Arc<CollectorStats>)> {
        read(&self.collectors).clone()
    }

    /// Every output's statistics, by output name.
    pub fn outputs(&self) -> Vec<(String, Arc<OutputStats>)> {
        read(&self.outputs).clone()
    }

    /// Replaces the list of collector instances (after a reload).
    pub fn set_collectors(&self, collectors: Vec<(String, Arc<CollectorStats>)>) {
        *self
            .collectors
            .write()
            .unwrap_or_else(PoisonError::into_inner) = collectors;
    }

    /// Replaces the list of outputs (after a reload).
    pub fn set_outputs(&self, outputs: Vec<(String, Arc<OutputStats>)>) {
        *self.outputs.write().unwrap_or_else(PoisonError::into_inner) = outputs;
    }
}

/// The lists hold only `Arc`s: a panic while one was locked cannot have
/// left it half changed, so a poisoned lock is read as it is.
fn read<T>(list: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    list.read().unwrap_or_else(PoisonError::into_inner)
}

fn find<T>(list: &RwLock<Vec<(String, Arc<T>)>>, name: &str) -> Option<Arc<T>> {
    read(list)
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| Arc::clone(s))
}

/// Reads an atomic counter.
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_counted_in_total_and_by_kind() {
        let stats = CollectorStats::default();
        assert_eq!(stats.errors_by_kind().count(), 0);
        stats.record_error(&CollectorError::connect("http://lb/", "refused"));
        stats.record_error(&CollectorError::connect("http://lb/", "refused"));
        stats.record_error(&CollectorError::parse("http://lb/", "not the CSV"));
        assert_eq!(get(&stats.errors), 3);
        assert_eq!(
            stats.errors_by_kind().collect::<Vec<_>>(),
            [("parse", 1), ("connect", 2)]
        );
    }
}
