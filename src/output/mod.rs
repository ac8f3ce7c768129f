//! Outputs: where published metrics go.
//!
//! Every output runs as its own task with its own bounded queue. Collectors
//! hand each batch to every queue without waiting ([`Fanout::send`]); a full
//! queue drops that batch for that output only, and counts it. So a slow or
//! dead output never delays collection or another output.

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod backoff;
pub mod buffer;
pub mod encode;
pub mod graphite;
pub mod pickle;
pub mod reliable;
pub mod spool;
pub mod statsd;
pub mod stdout;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use regex::RegexSet;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{GraphiteProtocol, OutputInstance, OutputSettings};
use crate::metrics::MetricBatch;
use crate::stats::OutputStats;

/// What travels on an output's queue: one collector run's metrics, shared
/// by every output.
pub type OutputBatch = Arc<MetricBatch>;

/// Batches a queue holds by default: at a 10 s interval with a dozen
/// collectors, several minutes of an output that stopped reading.
pub const DEFAULT_QUEUE_SIZE: usize = 1024;

/// How long outputs may keep delivering once the agent starts to stop:
/// `grace` (the agent's `shutdown_timeout`) from the moment it starts.
/// What an output cannot deliver by then goes to its spool or is counted as
/// dropped.
#[derive(Clone, Debug)]
pub struct Closing {
    grace: Duration,
    started: watch::Receiver<Option<tokio::time::Instant>>,
}

/// The agent's side of [`Closing`]: starts the clock.
#[derive(Debug)]
pub struct ClosingSignal(watch::Sender<Option<tokio::time::Instant>>);

impl Closing {
    /// Outputs get `grace` from the moment `signal` is started.
    pub fn new(grace: Duration) -> (Closing, ClosingSignal) {
        let (tx, rx) = watch::channel(None);
        (Closing { grace, started: rx }, ClosingSignal(tx))
    }

    /// The deadline: `grace` after the stop started, or after now if it
    /// has not started (an output whose queue closed on its own).
    pub fn deadline(&self) -> tokio::time::Instant {
        let from = (*self.started.borrow()).unwrap_or_else(tokio::time::Instant::now);
        from + self.grace
    }

    /// Completes at the deadline once the stop has started; never before.
    pub async fn expired(&self) {
        let mut started = self.started.clone();
        loop {
            let at = *started.borrow_and_update();
            if let Some(at) = at {
                tokio::time::sleep_until(at + self.grace).await;
                return;
            }
            if started.changed().await.is_err() {
                // The agent is gone without stopping: nothing will expire.
                std::future::pending::<()>().await;
            }
        }
    }
}

impl ClosingSignal {
    /// The agent starts to stop: outputs have `grace` from now.
    pub fn start(&self) {
        self.0.send_replace(Some(tokio::time::Instant::now()));
    }
}

struct Queue {
    name: String,
    sender: mpsc::Sender<OutputBatch>,
    stats: Arc<OutputStats>,
    full_logged: AtomicBool,
    filter: Option<PathFilter>,
}

/// An output's whitelist and blacklist, searched anywhere in the full path.
#[derive(Debug)]
pub struct PathFilter {
    whitelist: Option<RegexSet>,
    blacklist: Option<RegexSet>,
}

impl PathFilter {
    /// A filter, or `None` when both lists are empty (everything passes).
    pub fn new(whitelist: &[String], blacklist: &[String]) -> Result<Option<Self>, regex::Error> {
        if whitelist.is_empty() && blacklist.is_empty() {
            return Ok(None);
        }
        let set = |p: &[String]| -> Result<Option<RegexSet>, regex::Error> {
            if p.is_empty() {
                Ok(None)
            } else {
                RegexSet::new(p).map(Some)
            }
        };
        Ok(Some(PathFilter {
            whitelist: set(whitelist)?,
            blacklist: set(blacklist)?,
        }))
    }

    /// True when `path` goes to the output.
    pub fn allows(&self, path: &str) -> bool {
        self.whitelist.as_ref().is_none_or(|w| w.is_match(path))
            && !self.blacklist.as_ref().is_some_and(|b| b.is_match(path))
    }

    /// The metrics of `batch` this filter lets through.
    pub fn apply(&self, batch: &MetricBatch) -> MetricBatch {
        let mut out = MetricBatch::new(batch.timestamp());
        for m in batch.iter().filter(|m| self.allows(m.path)) {
            out.push("", m.path, m.value, m.increase);
        }
        out
    }
}

/// Hands batches to every output's queue.
pub struct Fanout {
    queues: Vec<Queue>,
}

impl Fanout {
    /// Gives `batch` to every output; never waits. A full or closed queue
    /// drops the batch for that output and counts it as dropped.
    pub fn send(&self, batch: MetricBatch) {
        if batch.is_empty() {
            return;
        }
        let batch = Arc::new(batch);
        for q in &self.queues {
            let for_queue = match &q.filter {
                None => Arc::clone(&batch),
                Some(f) => {
                    let filtered = f.apply(&batch);
                    if filtered.is_empty() {
                        continue;
                    }
                    Arc::new(filtered)
                }
            };
            let len = for_queue.len();
            match q.sender.try_send(for_queue) {
                Ok(()) => q.full_logged.store(false, Ordering::Relaxed),
                Err(e) => {
                    q.stats.record_drops(len as u64);
                    if !q.full_logged.swap(true, Ordering::Relaxed) {
                        let why = match e {
                            mpsc::error::TrySendError::Full(_) => "its queue is full",
                            mpsc::error::TrySendError::Closed(_) => "it has stopped",
                        };
                        tracing::warn!(
                            output = %q.name,
                            "dropping metrics for output {}: {why}; drops are counted in carat.output.{}.dropped",
                            q.name,
                            q.name
                        );
                    }
                }
            }
        }
    }
}

/// A UDP socket connected to `target` (`host:port`), bound to the
/// unspecified address of the target's family.
pub(crate) async fn udp_socket(target: &str) -> std::io::Result<tokio::net::UdpSocket> {
    let addr = tokio::net::lookup_host(target)
        .await?
        .next()
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{target}: no address"),
            )
        })?;
    let bind = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = tokio::net::UdpSocket::bind(bind).await?;
    socket.connect(addr).await?;
    Ok(socket)
}

/// The running outputs: their fan-out and their tasks.
pub struct Outputs {
    /// Where collectors send batches.
    pub fanout: Arc<Fanout>,
    /// The output tasks; each ends once every [`Fanout`] is dropped and it
    /// has delivered what it holds (or its grace time ran out).
    pub tasks: Vec<(String, JoinHandle<()>)>,
}

/// Starts every configured output. `stats` gives each output's statistics,
/// in the same order as `outputs`.
pub fn start(outputs: &[OutputInstance], stats: &[Arc<OutputStats>], closing: &Closing) -> Outputs {
    let mut queues = Vec::with_capacity(outputs.len());
    let mut tasks = Vec::with_capacity(outputs.len());
    for (output, stats) in outputs.iter().zip(stats) {
        let size = output
            .settings
            .queue_size()
            .unwrap_or(DEFAULT_QUEUE_SIZE)
            .max(1);
        let (sender, receiver) = mpsc::channel(size);
        let name = output.name.clone();
        let task_stats = Arc::clone(stats);
        let task = match &output.settings {
            OutputSettings::Stdout(_) => {
                tokio::spawn(stdout::run(name.clone(), receiver, task_stats))
            }
            OutputSettings::Graphite(g) if g.protocol == GraphiteProtocol::Udp => tokio::spawn(
                graphite::run_udp(name.clone(), g.clone(), receiver, task_stats),
            ),
            OutputSettings::Graphite(g) => tokio::spawn(graphite::run_tcp(
                name.clone(),
                g.clone(),
                receiver,
                task_stats,
                closing.clone(),
            )),
            OutputSettings::Statsd(c) => {
                tokio::spawn(statsd::run(name.clone(), c.clone(), receiver, task_stats))
            }
            #[cfg(feature = "amqp")]
            OutputSettings::Amqp(c) => tokio::spawn(amqp::run(
                name.clone(),
                c.clone(),
                receiver,
                task_stats,
                closing.clone(),
            )),
        };
        let (whitelist, blacklist) = output.settings.filters();
        // Patterns were compiled once when the configuration was validated.
        let filter = PathFilter::new(whitelist.sources(), blacklist.sources()).unwrap_or_default();
        queues.push(Queue {
            name: name.clone(),
            sender,
            stats: Arc::clone(stats),
            full_logged: AtomicBool::new(false),
            filter,
        });
        tasks.push((name, task));
    }
    Outputs {
        fanout: Arc::new(Fanout { queues }),
        tasks,
    }
}
