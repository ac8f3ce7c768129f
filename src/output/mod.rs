//! Outputs: where published metrics go.
//!
//! Every output runs as its own task with its own bounded queue. Collectors
//! hand each batch to every queue without waiting ([`Fanout::send`]); a full
//! queue drops that batch for that output only, and counts it. So a slow or
//! dead output never delays collection or another output.
//!
//! An output ends when its queue closes (the agent stops, or a reload
//! removed or replaced it) after delivering what it holds for the time its
//! [`Closing`] gives it. What is left then goes to its spool or is counted
//! as dropped; when a reload replaced it by the same output with other
//! options, what is left in memory is handed to that successor instead
//! ([`Leftover`]).

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
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use regex::RegexSet;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{GraphiteProtocol, OutputInstance, OutputSettings};
use crate::metrics::MetricBatch;
use crate::output::buffer::Segment;
use crate::stats::OutputStats;

/// What travels on an output's queue: one collector run's metrics, shared
/// by every output.
pub type OutputBatch = Arc<MetricBatch>;

/// Batches a queue holds by default: at a 10 s interval with a dozen
/// collectors, several minutes of an output that stopped reading.
pub const DEFAULT_QUEUE_SIZE: usize = 1024;

/// What an output holds in memory when it is replaced by a reload: encoded
/// lines, oldest first, handed to its successor. Empty for the outputs that
/// do not buffer.
pub type Leftover = Vec<Segment>;

/// How long an output may keep delivering once it is told to end: `grace`
/// (the agent's `shutdown_timeout`) from that moment. What it cannot deliver
/// by then goes to its spool or is counted as dropped when the agent stops,
/// or is handed over when a reload replaced the output
/// ([`ClosingSignal::hand_over`]).
#[derive(Clone, Debug)]
pub struct Closing {
    grace: Duration,
    ending: watch::Receiver<Option<Ending>>,
}

/// When an output was told to end, and why.
#[derive(Clone, Copy, Debug)]
struct Ending {
    deadline: tokio::time::Instant,
    /// Replaced: what is left goes to the successor, not to the spool.
    hand_over: bool,
}

/// The agent's side of [`Closing`]: starts the clock.
#[derive(Debug)]
pub struct ClosingSignal(watch::Sender<Option<Ending>>);

impl Closing {
    /// An output's closing, and the signal that starts it; `grace` is the
    /// time it gets when its queue closes without the signal.
    pub fn new(grace: Duration) -> (Closing, ClosingSignal) {
        let (sender, ending) = watch::channel(None);
        (Closing { grace, ending }, ClosingSignal(sender))
    }

    /// The deadline: `grace` after the output was told to end, or after now
    /// if it was not (an output whose queue closed on its own).
    pub fn deadline(&self) -> tokio::time::Instant {
        match *self.ending.borrow() {
            Some(ending) => ending.deadline,
            None => tokio::time::Instant::now() + self.grace,
        }
    }

    /// True when the output was replaced by a reload: what it could not
    /// deliver by the deadline is handed to its successor.
    pub fn hands_over(&self) -> bool {
        self.ending.borrow().is_some_and(|e| e.hand_over)
    }

    /// Completes at the deadline once the output was told to end; never
    /// before.
    pub async fn expired(&self) {
        let mut ending = self.ending.clone();
        loop {
            let deadline = ending.borrow_and_update().map(|e| e.deadline);
            if let Some(deadline) = deadline {
                tokio::time::sleep_until(deadline).await;
                return;
            }
            if ending.changed().await.is_err() {
                // The agent is gone without stopping: nothing will expire.
                std::future::pending::<()>().await;
            }
        }
    }
}

impl ClosingSignal {
    /// The agent starts to stop: the output has `grace` from now, then
    /// keeps what is left in its spool or counts it as dropped.
    pub fn start(&self, grace: Duration) {
        self.end(grace, false);
    }

    /// A reload replaced the output: it has `grace` from now to deliver,
    /// then hands what is left in memory to its successor. Its spool stays
    /// on disk, for the successor when that uses the same directory.
    pub fn hand_over(&self, grace: Duration) {
        self.end(grace, true);
    }

    /// The first call decides; later ones change nothing.
    fn end(&self, grace: Duration, hand_over: bool) {
        self.0.send_if_modified(|ending| {
            if ending.is_some() {
                return false;
            }
            *ending = Some(Ending {
                deadline: tokio::time::Instant::now() + grace,
                hand_over,
            });
            true
        });
    }
}

/// One output's end of the fan-out.
pub struct Queue {
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

/// Hands batches to every output's queue. A reload changes the queues; a
/// batch goes to those there when it is sent.
#[derive(Default)]
pub struct Fanout {
    queues: RwLock<Vec<Arc<Queue>>>,
}

impl Fanout {
    /// Gives `batch` to every output; never waits. A full or closed queue
    /// drops the batch for that output and counts it as dropped.
    pub fn send(&self, batch: MetricBatch) {
        if batch.is_empty() {
            return;
        }
        let batch = Arc::new(batch);
        // The lock is only held to hand out batches; a panic cannot leave
        // the list half changed.
        let queues = self.queues.read().unwrap_or_else(PoisonError::into_inner);
        for q in queues.iter() {
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

    /// Sends from now on to `queues` only. A queue left out is closed once
    /// the caller drops its last handle: its output then delivers what it
    /// holds and ends.
    pub fn set_queues(&self, queues: Vec<Arc<Queue>>) {
        *self.queues.write().unwrap_or_else(PoisonError::into_inner) = queues;
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

/// One started output.
pub struct Started {
    /// Its end of the fan-out.
    pub queue: Arc<Queue>,
    /// Its task; it returns what it holds when a reload replaced it.
    pub task: JoinHandle<Leftover>,
    /// Tells it to end.
    pub closing: ClosingSignal,
}

/// True for the outputs that buffer lines in memory (and can take over a
/// predecessor's: [`Leftover`]).
pub fn buffers(settings: &OutputSettings) -> bool {
    match settings {
        OutputSettings::Graphite(g) => g.protocol != GraphiteProtocol::Udp,
        #[cfg(feature = "amqp")]
        OutputSettings::Amqp(_) => true,
        OutputSettings::Stdout(_) | OutputSettings::Statsd(_) => false,
    }
}

/// Starts `output`, with `grace` to deliver once told to end. With a
/// `predecessor` (the same output before a reload changed it), the output
/// starts once that one has ended, with what it handed over; batches sent
/// meanwhile wait in the new queue.
pub fn start(
    output: &OutputInstance,
    stats: Arc<OutputStats>,
    grace: Duration,
    predecessor: Option<JoinHandle<Leftover>>,
) -> Started {
    let size = output
        .settings
        .queue_size()
        .unwrap_or(DEFAULT_QUEUE_SIZE)
        .max(1);
    let (sender, receiver) = mpsc::channel(size);
    let (closing, closing_signal) = Closing::new(grace);
    let name = output.name.clone();
    let settings = output.settings.clone();
    let task_stats = Arc::clone(&stats);
    let task = tokio::spawn(async move {
        let inherited = match predecessor {
            Some(task) => task.await.unwrap_or_else(|e| {
                tracing::error!(output = %name, "the output's previous task ended abnormally: {e}; what it held is lost");
                Leftover::new()
            }),
            None => Leftover::new(),
        };
        run(name, settings, receiver, task_stats, closing, inherited).await
    });
    let (whitelist, blacklist) = output.settings.filters();
    // Patterns were compiled once when the configuration was validated.
    let filter = PathFilter::new(whitelist.sources(), blacklist.sources()).unwrap_or_default();
    Started {
        queue: Arc::new(Queue {
            name: output.name.clone(),
            sender,
            stats,
            full_logged: AtomicBool::new(false),
            filter,
        }),
        task,
        closing: closing_signal,
    }
}

/// Runs one output until its queue closes and it has delivered, kept or
/// counted what it holds (or handed it over, when replaced).
async fn run(
    name: String,
    settings: OutputSettings,
    receiver: mpsc::Receiver<OutputBatch>,
    stats: Arc<OutputStats>,
    closing: Closing,
    inherited: Leftover,
) -> Leftover {
    match settings {
        OutputSettings::Stdout(_) => stdout::run(name, receiver, stats).await,
        OutputSettings::Graphite(g) if g.protocol == GraphiteProtocol::Udp => {
            graphite::run_udp(name, g, receiver, stats).await;
        }
        OutputSettings::Graphite(g) => {
            return graphite::run_tcp(name, g, receiver, stats, closing, inherited).await
        }
        OutputSettings::Statsd(c) => statsd::run(name, c, receiver, stats).await,
        #[cfg(feature = "amqp")]
        OutputSettings::Amqp(c) => {
            return amqp::run(name, c, receiver, stats, closing, inherited).await
        }
    }
    Leftover::new()
}
