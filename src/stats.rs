//! Counters the agent keeps about itself, published by the `carat`
//! self-metrics collector and read by tests.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// What happened to one collector instance's runs.
#[derive(Debug, Default)]
pub struct CollectorStats {
    /// Runs started.
    pub runs: AtomicU64,
    /// Runs that returned an error (or whose collector could not be built).
    pub errors: AtomicU64,
    /// Runs abandoned after the timeout.
    pub timeouts: AtomicU64,
    /// Runs that panicked.
    pub panics: AtomicU64,
    /// Metrics published.
    pub metrics: AtomicU64,
    /// Duration of the last run, in microseconds.
    pub last_run_micros: AtomicU64,
    /// True while the instance is failing (since its last successful run).
    pub failing: AtomicBool,
}

/// What happened to one output's metrics.
#[derive(Debug, Default)]
pub struct OutputStats {
    /// Metrics delivered (written to the socket, or to standard output).
    pub sent: AtomicU64,
    /// Metrics dropped: buffer full, queue full, or undeliverable at exit.
    pub dropped: AtomicU64,
    /// Metrics waiting in the buffer now.
    pub buffered: AtomicU64,
    /// Connections made after a failure.
    pub reconnects: AtomicU64,
    /// Failed connects and writes.
    pub errors: AtomicU64,
    /// True while connected (always true for connectionless outputs).
    pub connected: AtomicBool,
}

impl OutputStats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The statistics of every collector instance and output, fixed when the
/// agent starts.
#[derive(Debug, Default)]
pub struct AgentStats {
    /// Per collector instance, by instance name.
    pub collectors: Vec<(String, Arc<CollectorStats>)>,
    /// Per output, by output name.
    pub outputs: Vec<(String, Arc<OutputStats>)>,
}

impl AgentStats {
    /// The statistics of collector instance `name`.
    pub fn collector(&self, name: &str) -> Option<&Arc<CollectorStats>> {
        self.collectors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }

    /// The statistics of output `name`.
    pub fn output(&self, name: &str) -> Option<&Arc<OutputStats>> {
        self.outputs.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }
}

/// Reads an atomic counter.
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}
