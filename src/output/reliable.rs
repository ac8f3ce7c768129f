//! The delivery loop shared by outputs that hold a connection (Graphite over
//! TCP, plaintext or pickle; AMQP): a bounded memory buffer, an optional
//! disk spool behind it, reconnection with exponential backoff and jitter,
//! and a bounded final delivery on shutdown.
//!
//! Lines are kept as Graphite plaintext in the buffer and the spool whatever
//! the transport; a transport re-encodes a segment when it sends it. A
//! segment whose send fails stays where it is and is sent again after
//! reconnecting: delivery is at least once (carbon overwrites a point sent
//! twice), and nothing the agent knows it did not deliver is forgotten
//! without being counted.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::backoff::Backoff;
use super::buffer::LineBuffer;
use super::spool::Spool;
use super::{Closing, OutputBatch};
use crate::stats::OutputStats;

/// A connection to a sink that can tell whether a send was accepted.
pub trait Transport: Send {
    /// The peer, for logs (`127.0.0.1:2003`).
    fn target(&self) -> String;
    /// Opens the connection.
    fn connect(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Sends `count` plaintext lines; `Ok` means accepted as far as the
    /// protocol can tell. After an error the transport is disconnected
    /// ([`Transport::is_connected`] is false) until the next `connect`.
    fn send(&mut self, lines: &[u8], count: usize) -> impl Future<Output = io::Result<()>> + Send;
    /// Closes the connection.
    fn close(&mut self) -> impl Future<Output = ()> + Send;
    /// True while connected.
    fn is_connected(&self) -> bool;
}

/// How an output buffers and reconnects.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Lines held in memory.
    pub max_buffered: usize,
    /// Lines per send at most.
    pub batch_size: usize,
    /// First reconnection delay.
    pub reconnect_min: Duration,
    /// Longest reconnection delay.
    pub reconnect_max: Duration,
    /// Directory and size bound (bytes) of the disk spool, if enabled.
    pub spool: Option<(PathBuf, u64)>,
}

impl Settings {
    /// Settings from an output's options; `spool_max_mb` bounds the spool in
    /// `spool_dir`, if one is set.
    pub fn new(
        max_buffered: usize,
        batch_size: usize,
        reconnect: (Duration, Duration),
        spool_dir: Option<&std::path::Path>,
        spool_max_mb: u64,
    ) -> Self {
        Settings {
            max_buffered,
            batch_size,
            reconnect_min: reconnect.0,
            reconnect_max: reconnect.1,
            spool: spool_dir.map(|dir| (dir.to_owned(), spool_max_mb.saturating_mul(1 << 20))),
        }
    }
}

/// Runs an output over `transport` until its queue closes and what it holds
/// is delivered, spooled, or counted as dropped.
pub async fn run<T: Transport>(
    name: String,
    transport: T,
    settings: Settings,
    mut queue: mpsc::Receiver<OutputBatch>,
    stats: Arc<OutputStats>,
    closing: Closing,
) {
    let mut out = Reliable::new(name, transport, settings, stats);
    loop {
        // While disconnected with something to deliver, wake up for the next
        // attempt too; otherwise only new batches matter.
        let received = if !out.transport.is_connected() && out.has_data() {
            tokio::select! {
                b = queue.recv() => Some(b),
                () = sleep_until(out.retry_at) => None,
            }
        } else {
            Some(queue.recv().await)
        };
        match received {
            Some(Some(batch)) => out.push(&batch),
            Some(None) => break,
            None => {}
        }
        while let Ok(batch) = queue.try_recv() {
            out.push(&batch);
        }
        out.deliver().await;
    }
    out.finish(closing.deadline()).await;
}

struct Reliable<T: Transport> {
    name: String,
    transport: T,
    settings: Settings,
    buffer: LineBuffer,
    spool: Option<Spool>,
    backoff: Backoff,
    stats: Arc<OutputStats>,
    retry_at: Instant,
    ever_connected: bool,
    drop_logged: bool,
    spool_error_logged: bool,
}

impl<T: Transport> Reliable<T> {
    fn new(name: String, transport: T, settings: Settings, stats: Arc<OutputStats>) -> Self {
        let spool = settings.spool.as_ref().and_then(|(dir, max)| match Spool::open(dir, *max) {
            Ok((spool, report)) => {
                if report.lines > 0 {
                    tracing::info!(output = %name, "{} metrics waiting in the spool {} from an earlier run", report.lines, dir.display());
                }
                if report.lost > 0 {
                    OutputStats::add(&stats.dropped, report.lost as u64);
                    tracing::error!(
                        output = %name,
                        "the spool {} was damaged: {} metrics lost, the readable part kept",
                        dir.display(),
                        report.lost
                    );
                }
                Some(spool)
            }
            Err(e) => {
                OutputStats::add(&stats.errors, 1);
                tracing::error!(output = %name, "cannot open the spool {}: {e}; buffering in memory only", dir.display());
                None
            }
        });
        let out = Reliable {
            buffer: LineBuffer::new(settings.max_buffered, settings.batch_size),
            backoff: Backoff::new(settings.reconnect_min, settings.reconnect_max),
            name,
            transport,
            settings,
            spool,
            stats,
            retry_at: Instant::now(),
            ever_connected: false,
            drop_logged: false,
            spool_error_logged: false,
        };
        out.update_gauges();
        out
    }

    fn has_data(&self) -> bool {
        !self.buffer.is_empty() || self.spool.as_ref().is_some_and(|s| !s.is_empty())
    }

    fn push(&mut self, batch: &OutputBatch) {
        let mut dropped = 0usize;
        let mut spool_error = None;
        let spool = &mut self.spool;
        self.buffer
            .push_spilling(batch, |seg| match spool.as_mut() {
                Some(s) => match s.append(&seg.bytes, seg.lines) {
                    Ok(bound_drops) => dropped += bound_drops,
                    Err(e) => {
                        dropped += seg.lines;
                        spool_error = Some(e);
                    }
                },
                None => dropped += seg.lines,
            });
        // Lines of a spool file deleted underneath, found on appending (the
        // spool logs each such loss).
        let lost = self.spool.as_mut().map_or(0, Spool::take_lost);
        OutputStats::add(&self.stats.dropped, lost as u64);
        if let Some(e) = spool_error {
            OutputStats::add(&self.stats.errors, 1);
            if !self.spool_error_logged {
                self.spool_error_logged = true;
                tracing::error!(output = %self.name, "cannot write to the spool: {e}; dropping what memory cannot hold");
            }
        }
        if dropped > 0 {
            OutputStats::add(&self.stats.dropped, dropped as u64);
            if !self.drop_logged {
                self.drop_logged = true;
                let place = if self.spool.is_some() {
                    "memory and spool are"
                } else {
                    "the buffer is"
                };
                tracing::warn!(
                    output = %self.name,
                    "{place} full: dropping the oldest metrics; drops are counted in carat.output.{}.dropped",
                    self.name
                );
            }
        }
        self.update_gauges();
    }

    fn update_gauges(&self) {
        let spooled = self.spool.as_ref().map_or(0, Spool::len);
        self.stats
            .buffered
            .store((self.buffer.len() + spooled) as u64, Ordering::Relaxed);
        self.stats
            .connected
            .store(self.transport.is_connected(), Ordering::Relaxed);
    }

    /// Connects if due, then sends the spool (older) and the memory buffer.
    async fn deliver(&mut self) {
        if !self.has_data() {
            return;
        }
        if !self.transport.is_connected() {
            if Instant::now() < self.retry_at {
                return;
            }
            self.connect().await;
        }
        if self.transport.is_connected() {
            if let Err(e) = self.send_all().await {
                self.fail(&format!("sending to {}: {e}", self.transport.target()));
            }
        }
        self.update_gauges();
    }

    async fn send_all(&mut self) -> io::Result<()> {
        if let Some(spool) = self.spool.as_mut() {
            let sent = send_spooled(spool, &mut self.transport, &self.stats).await;
            // Damaged records and deleted files found while reading.
            OutputStats::add(&self.stats.dropped, spool.take_lost() as u64);
            sent?;
        }
        while let Some(segment) = self.buffer.front() {
            self.transport.send(&segment.bytes, segment.lines).await?;
            let sent = self.buffer.pop_front();
            OutputStats::add(&self.stats.sent, sent as u64);
        }
        Ok(())
    }

    async fn connect(&mut self) {
        let target = self.transport.target();
        match self.transport.connect().await {
            Ok(()) => {
                if self.backoff.failures() > 0 {
                    tracing::info!(
                        output = %self.name,
                        "connected to {target} after {} failed attempts; {} metrics waiting",
                        self.backoff.failures(),
                        self.stats.buffered.load(Ordering::Relaxed)
                    );
                } else if !self.ever_connected {
                    tracing::info!(output = %self.name, "connected to {target}");
                }
                if self.ever_connected || self.backoff.failures() > 0 {
                    OutputStats::add(&self.stats.reconnects, 1);
                }
                self.ever_connected = true;
                self.backoff.reset();
                self.drop_logged = false;
            }
            Err(e) => self.fail(&format!("connecting to {target}: {e}")),
        }
    }

    /// Closes the connection and schedules a retry. The first failure of a
    /// burst is logged; later ones are counted in `errors`.
    fn fail(&mut self, what: &str) {
        OutputStats::add(&self.stats.errors, 1);
        let first = self.backoff.failures() == 0;
        let delay = self.backoff.next_delay();
        self.retry_at = Instant::now() + delay;
        if first {
            let keep = if self.spool.is_some() {
                "in memory and on disk"
            } else {
                "in memory"
            };
            tracing::warn!(
                output = %self.name,
                "{what}; keeping metrics {keep} (up to {} in memory) and retrying with backoff",
                self.settings.max_buffered
            );
        } else {
            tracing::debug!(output = %self.name, "{what}; next attempt in {delay:?}");
        }
    }

    /// After the queue closed: keep delivering until everything is out or the
    /// deadline passes; then spool what is left, or count it as dropped.
    async fn finish(&mut self, deadline: Instant) {
        while self.has_data() && Instant::now() < deadline {
            if !self.transport.is_connected() {
                sleep_until(self.retry_at.min(deadline)).await;
                if Instant::now() >= deadline {
                    break;
                }
            }
            if !self.transport.is_connected() {
                self.connect().await;
            }
            if self.transport.is_connected() {
                if let Err(e) = self.send_all().await {
                    self.fail(&format!("sending to {}: {e}", self.transport.target()));
                }
            }
        }
        self.transport.close().await;
        let mut left = 0usize;
        let mut spooled = 0usize;
        let spool = &mut self.spool;
        self.buffer.drain_into(|seg| {
            match spool.as_mut().map(|s| s.append(&seg.bytes, seg.lines)) {
                Some(Ok(bound_drops)) => {
                    spooled += seg.lines - bound_drops.min(seg.lines);
                    left += bound_drops;
                }
                Some(Err(_)) | None => left += seg.lines,
            }
        });
        let lost = self.spool.as_mut().map_or(0, Spool::take_lost);
        OutputStats::add(&self.stats.dropped, lost as u64);
        if spooled > 0 {
            tracing::info!(output = %self.name, "{spooled} metrics kept in the spool for the next start");
        }
        if left > 0 {
            OutputStats::add(&self.stats.dropped, left as u64);
            tracing::error!(
                output = %self.name,
                "{left} metrics could not be delivered to {} before exit",
                self.transport.target()
            );
        }
        self.update_gauges();
    }
}

/// Sends the spool's records, oldest first, confirming each once sent; on a
/// send error the records in flight are rewound, to be sent again.
async fn send_spooled<T: Transport>(
    spool: &mut Spool,
    transport: &mut T,
    stats: &OutputStats,
) -> io::Result<()> {
    while let Some(record) = spool.read_next()? {
        if let Err(e) = transport.send(&record.bytes, record.lines).await {
            spool.rewind();
            return Err(e);
        }
        spool.confirm_oldest()?;
        OutputStats::add(&stats.sent, record.lines as u64);
    }
    Ok(())
}
