//! The delivery loop shared by outputs that hold a connection (Graphite over
//! TCP, plaintext or pickle; AMQP): a bounded memory buffer, an optional
//! disk spool behind it, reconnection with exponential backoff and jitter,
//! delivery counted only once the receiver acknowledged it, and a bounded
//! final delivery on shutdown.
//!
//! # What "sent" means
//!
//! A segment of lines leaves the buffer when it is written, but counts as
//! sent only once the receiver has acknowledged every byte of it (for TCP,
//! read from the socket: the kernel's count of unacknowledged bytes) **and**
//! the connection stayed up for [`Transport::SETTLE`] after that. Until
//! then it is *in flight*: kept in memory (or in the spool, for a record
//! read from it) and counted in `buffered`.
//!
//! When a connection fails, what was in flight is sorted by what the
//! failure says about it:
//!
//! - not acknowledged: sent again on the next connection;
//! - acknowledged, and the receiver closed in order or the output gave up on
//!   a receiver that stopped reading: the receiver has it (its socket buffer
//!   outlives our connection), so it counts as sent; a segment acknowledged
//!   only in part is split at the last whole line (pickle: frame) the
//!   receiver has;
//! - acknowledged, but the receiver reset the connection (a process that
//!   exited with unread lines, a load balancer that accepted and closed): it
//!   may have been thrown away unread, so it is sent again.
//!
//! So delivery is at least once: a line may reach carbon twice (carbon
//! keeps the last value of a point, so a duplicate changes nothing), only
//! for lines written but not acknowledged when a connection failed, and for
//! lines acknowledged in the [`Transport::SETTLE`] before a reset. Every line
//! handed to an output is at any moment exactly one of sent, dropped
//! (counted), or buffered.
//!
//! # Bounds
//!
//! The memory bound (`max_buffered`) applies to lines waiting for a receiver
//! that is not keeping up: while it keeps up, a collector run of any size is
//! written out as it is buffered, and nothing is dropped. Lines in flight are
//! bounded by the socket buffers, and acknowledged lines wait to settle only
//! while fewer than `max_buffered` of them do.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, timeout_at, Instant};

use super::backoff::Backoff;
use super::buffer::{LineBuffer, Segment};
use super::spool::Spool;
use super::{Closing, Leftover, OutputBatch};
use crate::stats::OutputStats;

/// How often an output with lines in flight looks at its connection.
const POLL: Duration = Duration::from_millis(200);

/// At shutdown, how often at most an output waiting for acknowledgements
/// looks (it starts at a millisecond: on a LAN they take less).
const FINAL_POLL: Duration = Duration::from_millis(50);

/// Why a connection failed, and what that says about what the receiver had
/// acknowledged.
#[derive(Debug)]
pub struct LinkError {
    /// The failure.
    pub error: io::Error,
    /// True when the receiver may have thrown away what it acknowledged
    /// lately: it reset the connection, or the connection broke under it.
    /// False when it closed the connection in order (so it had read what it
    /// acknowledged) or the output gave up on a receiver that stopped
    /// reading (what it acknowledged stays in its socket buffer for it).
    pub abrupt: bool,
}

impl LinkError {
    /// A failure after which acknowledged lines may be lost.
    pub fn abrupt(error: io::Error) -> Self {
        LinkError {
            error,
            abrupt: true,
        }
    }

    /// A failure after which the receiver keeps what it acknowledged.
    pub fn orderly(error: io::Error) -> Self {
        LinkError {
            error,
            abrupt: false,
        }
    }
}

impl From<io::Error> for LinkError {
    fn from(error: io::Error) -> Self {
        LinkError::abrupt(error)
    }
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

/// A connection to a sink that can tell how much of what was sent the
/// receiver acknowledged.
///
/// Positions are in the transport's own unit (bytes on the wire for TCP),
/// counted from the connection's start.
pub trait Transport: Send {
    /// How long acknowledged lines wait before they count as sent, in case
    /// the receiver resets the connection (see the module docs). Zero when an
    /// acknowledgement is final (AMQP publisher confirms).
    const SETTLE: Duration;

    /// The peer, for logs (`127.0.0.1:2003`).
    fn target(&self) -> String;
    /// Opens the connection.
    fn connect(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Writes `count` plaintext lines; returns how many of them the
    /// protocol cannot carry (they are counted as dropped once the rest is
    /// delivered). Progress shows in [`Transport::position`] even when the
    /// future is dropped part way. After an error the transport is
    /// disconnected until the next `connect`.
    fn send(
        &mut self,
        lines: &[u8],
        count: usize,
    ) -> impl Future<Output = Result<usize, LinkError>> + Send;
    /// How far this connection has written.
    fn position(&self) -> u64;
    /// How far the receiver has acknowledged; an error when the connection
    /// turns out to have failed.
    fn acknowledged(&mut self) -> Result<u64, LinkError>;
    /// The best knowledge of how far the receiver acknowledged, also after a
    /// failure (until [`Transport::abort`]).
    fn last_acknowledged(&self) -> u64;
    /// Of plaintext `lines` written from some position `p`, what the
    /// receiver has whole once it acknowledged up to `p + written`: the
    /// number of lines and the byte of `lines` where they end.
    fn acked_prefix(&self, lines: &[u8], written: u64) -> (usize, usize);
    /// Drops the connection at once; nothing unacknowledged is delivered
    /// after this returns (TCP: a reset, not a close that keeps sending).
    fn abort(&mut self);
    /// Closes the connection in order.
    fn close(&mut self) -> impl Future<Output = ()> + Send;
    /// True while connected.
    fn is_connected(&self) -> bool;
}

/// How an output buffers and reconnects.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Lines held in memory while the receiver is not keeping up.
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

/// Runs an output over `transport`, starting with the lines `inherited`
/// from its predecessor (a reload changed its options), until its queue
/// closes (or its deadline passes) and what it holds is delivered, spooled,
/// or counted as dropped. When a reload replaced it, what it could not
/// deliver by the deadline is returned instead, for its successor.
pub async fn run<T: Transport>(
    name: String,
    transport: T,
    settings: Settings,
    mut queue: mpsc::Receiver<OutputBatch>,
    stats: Arc<OutputStats>,
    closing: Closing,
    inherited: Leftover,
) -> Leftover {
    let mut out = Reliable::new(name, transport, settings, stats);
    out.take_over(inherited);
    loop {
        let wake = out.next_wake();
        let batch = tokio::select! {
            biased;
            () = closing.expired() => break,
            batch = queue.recv() => match batch {
                Some(batch) => Some(batch),
                None => break,
            },
            () = sleep_until_some(wake) => None,
        };
        // A write blocked on a receiver that stopped reading must not hold
        // the output past the shutdown deadline.
        let interrupted = tokio::select! {
            () = async {
                if let Some(batch) = batch {
                    out.push(batch).await;
                    while let Ok(more) = queue.try_recv() {
                        out.push(more).await;
                    }
                }
                out.deliver().await;
            } => false,
            () = closing.expired() => true,
        };
        if interrupted {
            out.interrupted();
            break;
        }
    }
    out.finish(&mut queue, closing.deadline(), closing.hands_over())
        .await
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Where a segment in flight is kept until it is settled.
enum Held {
    /// In memory: the segment itself.
    Memory(Segment),
    /// In the spool, read but not yet confirmed there.
    Spool,
}

/// A segment written on the current connection, not yet counted as sent.
struct InFlight {
    held: Held,
    lines: usize,
    /// Of `lines`, those the protocol cannot carry: dropped when it settles.
    refused: usize,
    /// Its position on the connection: from `start` to `end`.
    start: u64,
    end: u64,
    /// When the receiver was first seen to have acknowledged all of it.
    acked_at: Option<Instant>,
}

/// The segment being written, which is still at the buffer's front (or
/// read from the spool): enough to account for it if the write fails or is
/// abandoned part way.
#[derive(Clone, Copy)]
struct Writing {
    start: u64,
    from_spool: bool,
}

/// What became of segments handed to the spool (or dropped, without one).
#[derive(Default)]
struct SpoolOutcome {
    /// Lines written to the spool.
    spooled: usize,
    /// Lines dropped: no spool, a failed write, or older lines the spool's
    /// size bound pushed out.
    dropped: usize,
    /// The last write error, if any.
    error: Option<io::Error>,
}

impl SpoolOutcome {
    /// Writes `seg` to `spool`, or counts it as dropped.
    fn keep(&mut self, spool: Option<&mut Spool>, seg: &Segment) {
        match spool.map(|s| s.append(&seg.bytes, seg.lines)) {
            Some(Ok(bound_drops)) => {
                self.spooled += seg.lines;
                self.dropped += bound_drops;
            }
            Some(Err(e)) => {
                self.dropped += seg.lines;
                self.error = Some(e);
            }
            None => self.dropped += seg.lines,
        }
    }
}

/// A batch being buffered, and how far.
struct Pending {
    batch: OutputBatch,
    next: usize,
}

struct Reliable<T: Transport> {
    name: String,
    transport: T,
    settings: Settings,
    buffer: LineBuffer,
    spool: Option<Spool>,
    in_flight: VecDeque<InFlight>,
    /// Lines of memory segments in flight.
    in_flight_lines: usize,
    /// Lines in flight that the receiver acknowledged.
    acked_lines: usize,
    writing: Option<Writing>,
    pending: Option<Pending>,
    /// Shutting down: acknowledged lines count as sent without settling.
    stopping: bool,
    backoff: Backoff,
    stats: Arc<OutputStats>,
    retry_at: Instant,
    next_poll: Instant,
    ever_connected: bool,
    drop_logged: bool,
    spool_error_logged: bool,
}

impl<T: Transport> Reliable<T> {
    fn new(name: String, transport: T, settings: Settings, stats: Arc<OutputStats>) -> Self {
        stats.set_limits(settings.max_buffered, settings.reconnect_max);
        let spool = settings.spool.as_ref().and_then(|(dir, max)| match Spool::open(dir, *max) {
            Ok((spool, report)) => {
                if report.lines > 0 {
                    tracing::info!(output = %name, "{} metrics waiting in the spool {} from an earlier run", report.lines, dir.display());
                }
                if report.lost > 0 {
                    stats.record_drops(report.lost as u64);
                    tracing::error!(
                        output = %name,
                        "the spool {} was damaged: {} metrics lost (counted as dropped), the readable records kept",
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
            in_flight: VecDeque::new(),
            in_flight_lines: 0,
            acked_lines: 0,
            writing: None,
            pending: None,
            stopping: false,
            stats,
            retry_at: Instant::now(),
            next_poll: Instant::now(),
            ever_connected: false,
            drop_logged: false,
            spool_error_logged: false,
        };
        out.update_gauges(false);
        out
    }

    /// Buffers what the output's predecessor could not deliver, ahead of
    /// anything new; beyond the memory bound it goes to the spool or is
    /// dropped, counted, like any excess.
    fn take_over(&mut self, inherited: Leftover) {
        let lines: usize = inherited.iter().map(|s| s.lines).sum();
        if lines == 0 {
            return;
        }
        tracing::info!(
            output = %self.name,
            "{lines} metrics taken over from the output as it was configured before the reload"
        );
        self.buffer.append(inherited);
        self.spill_excess();
        self.update_gauges(false);
    }

    /// Anything held: waiting, spooled or in flight.
    fn has_data(&self) -> bool {
        !self.buffer.is_empty()
            || !self.in_flight.is_empty()
            || self.spool.as_ref().is_some_and(|s| !s.is_empty())
    }

    /// Anything not yet written on the current connection.
    fn has_unsent(&self) -> bool {
        !self.buffer.is_empty() || self.spool.as_ref().is_some_and(Spool::has_unread)
    }

    /// When the loop must wake up without a new batch: to reconnect, or to
    /// look at the acknowledgements of what is in flight.
    fn next_wake(&self) -> Option<Instant> {
        if !self.transport.is_connected() {
            self.has_data().then_some(self.retry_at)
        } else if !self.in_flight.is_empty() || self.has_unsent() {
            Some(self.next_poll)
        } else {
            None
        }
    }

    /// Buffers `batch`. While more waits than the bound allows, what waits
    /// is written out first if the receiver is there; only what it cannot
    /// take goes to the spool or is dropped.
    ///
    /// Cancel-safe: the batch is kept with how far it was buffered, so a
    /// push abandoned at the shutdown deadline is finished by
    /// [`Reliable::finish`] and no line of it is lost uncounted.
    async fn push(&mut self, batch: OutputBatch) {
        self.pending = Some(Pending { batch, next: 0 });
        self.push_pending().await;
    }

    /// Buffers the rest of the pending batch, as [`Reliable::push`].
    async fn push_pending(&mut self) {
        let chunk = self.buffer.segment_lines();
        while self.buffer_pending(chunk) > 0 {
            if self.buffer.is_over() {
                if self.transport.is_connected() || Instant::now() >= self.retry_at {
                    self.deliver().await;
                }
                self.spill_excess();
            }
        }
        self.update_gauges(false);
    }

    /// Buffers up to `limit` more lines of the pending batch; returns how
    /// many.
    fn buffer_pending(&mut self, limit: usize) -> usize {
        let Some(pending) = self.pending.as_mut() else {
            return 0;
        };
        let added = self
            .buffer
            .extend(&mut pending.batch.iter_from(pending.next), limit);
        pending.next += added;
        if added == 0 {
            self.pending = None;
        }
        added
    }

    /// Buffers what is left of the pending batch without writing anything
    /// (the deadline has passed).
    fn push_without_sending(&mut self) {
        while self.buffer_pending(usize::MAX) > 0 {}
        self.spill_excess();
    }

    /// Moves what exceeds the memory bound to the spool, or drops it.
    fn spill_excess(&mut self) {
        let mut outcome = SpoolOutcome::default();
        let spool = &mut self.spool;
        self.buffer
            .spill_excess(|seg| outcome.keep(spool.as_mut(), seg));
        if let Some(e) = outcome.error {
            self.spool_failed(&format!(
                "cannot write to the spool: {e}; dropping what memory cannot hold"
            ));
        }
        self.count_spool_losses();
        let dropped = outcome.dropped;
        if dropped > 0 {
            self.stats.record_drops(dropped as u64);
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
    }

    fn spool_failed(&mut self, what: &str) {
        OutputStats::add(&self.stats.errors, 1);
        if !self.spool_error_logged {
            self.spool_error_logged = true;
            tracing::error!(output = %self.name, "{what}");
        }
    }

    /// Counts as dropped what the spool lost on its own (damaged records,
    /// files deleted under it).
    fn count_spool_losses(&mut self) {
        let lost = self.spool.as_mut().map_or(0, Spool::take_lost);
        if lost > 0 {
            self.stats.record_drops(lost as u64);
        }
    }

    fn update_gauges(&self, delivered: bool) {
        let spooled = self.spool.as_ref().map_or(0, Spool::len);
        let held = self.buffer.len() + self.in_flight_lines + spooled;
        self.stats.record_held(held as u64, delivered);
        self.stats
            .waiting
            .store((self.buffer.len() + spooled) as u64, Ordering::Relaxed);
        self.stats
            .connected
            .store(self.transport.is_connected(), Ordering::Relaxed);
    }

    /// Connects if due, then writes the spool (older) and the memory buffer,
    /// settling what the receiver acknowledged as it goes.
    async fn deliver(&mut self) {
        if !self.transport.is_connected() {
            if !self.has_data() || Instant::now() < self.retry_at {
                return;
            }
            self.connect().await;
        }
        let mut delivered = false;
        while self.transport.is_connected() {
            delivered |= self.poll();
            if !self.transport.is_connected() {
                break;
            }
            let sent = if self.spool.as_ref().is_some_and(Spool::has_unread) {
                self.send_from_spool().await
            } else if !self.buffer.is_empty() {
                self.send_from_memory().await.map(|()| true)
            } else {
                break;
            };
            match sent {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    self.connection_lost(e);
                    break;
                }
            }
        }
        if self.transport.is_connected() {
            delivered |= self.poll();
        }
        self.next_poll = Instant::now() + POLL;
        self.update_gauges(delivered);
    }

    /// Writes the buffer's oldest segment; it stays at the front until the
    /// write completes, so a write abandoned part way loses nothing.
    async fn send_from_memory(&mut self) -> Result<(), LinkError> {
        let Some(seg) = self.buffer.front() else {
            return Ok(());
        };
        let start = self.transport.position();
        self.writing = Some(Writing {
            start,
            from_spool: false,
        });
        let refused = self.transport.send(&seg.bytes, seg.lines).await?;
        self.writing = None;
        let end = self.transport.position();
        if let Some(seg) = self.buffer.take_front() {
            self.in_flight_lines += seg.lines;
            self.in_flight.push_back(InFlight {
                lines: seg.lines,
                refused,
                held: Held::Memory(seg),
                start,
                end,
                acked_at: None,
            });
        }
        Ok(())
    }

    /// Writes the spool's next unread record. `Ok(false)` when the spool
    /// cannot be read now (counted and logged).
    async fn send_from_spool(&mut self) -> Result<bool, LinkError> {
        let Some(spool) = self.spool.as_mut() else {
            return Ok(false);
        };
        let record = match spool.read_next() {
            Ok(Some(record)) => record,
            Ok(None) => {
                self.count_spool_losses();
                return Ok(true);
            }
            Err(e) => {
                self.spool_failed(&format!("cannot read the spool: {e}; will retry"));
                return Ok(false);
            }
        };
        self.count_spool_losses();
        let start = self.transport.position();
        self.writing = Some(Writing {
            start,
            from_spool: true,
        });
        let refused = self.transport.send(&record.bytes, record.lines).await?;
        self.writing = None;
        self.in_flight.push_back(InFlight {
            held: Held::Spool,
            lines: record.lines,
            refused,
            start,
            end: self.transport.position(),
            acked_at: None,
        });
        Ok(true)
    }

    /// Looks at what the receiver acknowledged: settles what is due,
    /// notices a failed connection. Returns whether anything was settled.
    fn poll(&mut self) -> bool {
        if self.in_flight.is_empty() {
            return false;
        }
        let acked = match self.transport.acknowledged() {
            Ok(acked) => acked,
            Err(e) => {
                self.connection_lost(e);
                return false;
            }
        };
        let now = Instant::now();
        for f in self.in_flight.iter_mut().filter(|f| f.acked_at.is_none()) {
            if f.end > acked {
                break;
            }
            f.acked_at = Some(now);
            self.acked_lines += f.lines;
        }
        let mut settled = false;
        while let Some(front) = self.in_flight.front() {
            let Some(at) = front.acked_at else { break };
            let due = self.stopping
                || now.duration_since(at) >= T::SETTLE
                // Bounded memory under a fast stream: what is older than
                // a tenth of `max_buffered` acknowledged lines settles
                // early.
                || self.acked_lines > self.settle_cap();
            if !due {
                break;
            }
            if let Some(f) = self.in_flight.pop_front() {
                self.acked_lines -= f.lines;
                self.settle(f);
                settled = true;
            }
        }
        settled
    }

    /// Acknowledged lines kept to settle at most: a tenth of the memory
    /// bound, so a fast stream (thousands of lines a second) costs at most
    /// that much more memory, and a reset of carbon re-sends at most that.
    fn settle_cap(&self) -> usize {
        (self.settings.max_buffered / 10).max(1)
    }

    /// Counts an in-flight segment as sent and lets it go.
    fn settle(&mut self, f: InFlight) {
        let refused = f.refused.min(f.lines);
        OutputStats::add(&self.stats.sent, (f.lines - refused) as u64);
        self.stats.record_drops(refused as u64);
        match f.held {
            Held::Memory(seg) => {
                self.in_flight_lines -= f.lines;
                self.buffer.recycle(seg);
            }
            Held::Spool => {
                if let Some(Err(e)) = self.spool.as_mut().map(Spool::confirm_oldest) {
                    self.spool_failed(&format!("cannot remove delivered spool files: {e}"));
                }
            }
        }
    }

    /// The connection failed (or is abandoned): settle what the receiver has
    /// for sure, put the rest back to be sent again, and schedule a retry.
    fn connection_lost(&mut self, why: LinkError) {
        let acked = self.transport.last_acknowledged();
        self.transport.abort();
        let keep_acked = !why.abrupt;
        let mut back = Vec::new();
        while let Some(f) = self.in_flight.pop_front() {
            if f.acked_at.is_some() {
                self.acked_lines -= f.lines;
            }
            if keep_acked && f.end <= acked {
                self.settle(f);
                continue;
            }
            if let Held::Memory(mut seg) = f.held {
                self.in_flight_lines -= f.lines;
                if keep_acked && acked > f.start {
                    let (lines, bytes) = self.transport.acked_prefix(&seg.bytes, acked - f.start);
                    seg.trim_front(bytes, lines);
                    OutputStats::add(&self.stats.sent, lines as u64);
                }
                back.push(seg);
            }
        }
        if let Some(w) = self.writing.take() {
            if keep_acked && !w.from_spool && acked > w.start {
                if let Some(front) = self.buffer.front() {
                    let (lines, bytes) = self.transport.acked_prefix(&front.bytes, acked - w.start);
                    self.buffer.trim_front(bytes, lines);
                    OutputStats::add(&self.stats.sent, lines as u64);
                }
            }
        }
        for seg in back.into_iter().rev() {
            self.buffer.put_back(seg);
        }
        if let Some(spool) = self.spool.as_mut() {
            spool.rewind();
        }
        self.acked_lines = 0;
        self.fail(&format!(
            "sending to {}: {}",
            self.transport.target(),
            why.error
        ));
        self.spill_excess();
        self.update_gauges(false);
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

    /// Schedules a retry. The first failure of a burst is logged; later ones
    /// are counted in `errors`.
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

    /// The shutdown deadline passed while a write or a connect was under
    /// way: give up the connection as at a failure.
    fn interrupted(&mut self) {
        if self.transport.is_connected() || self.writing.is_some() {
            self.connection_lost(LinkError::orderly(io::Error::new(
                io::ErrorKind::TimedOut,
                "the shutdown deadline passed",
            )));
        }
    }

    /// After the queue closed or the deadline passed: deliver until
    /// everything is acknowledged or the deadline passes; then keep what is
    /// left in the spool, or count it as dropped, or, when `hand_over`,
    /// return it for the output that replaces this one.
    async fn finish(
        &mut self,
        queue: &mut mpsc::Receiver<OutputBatch>,
        deadline: Instant,
        hand_over: bool,
    ) -> Leftover {
        self.stopping = true;
        // Batches still queued are taken; later ones are refused (and
        // counted as dropped by the fan-out).
        queue.close();
        if timeout_at(deadline, self.deliver_all(queue)).await.is_err() {
            self.interrupted();
        }
        self.push_without_sending();
        while let Ok(batch) = queue.try_recv() {
            self.pending = Some(Pending { batch, next: 0 });
            self.push_without_sending();
        }
        if self.transport.is_connected() {
            if self.in_flight.is_empty() {
                let _ = timeout(Duration::from_secs(1), self.transport.close()).await;
            } else {
                self.connection_lost(LinkError::orderly(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "stopping with lines not yet acknowledged",
                )));
            }
        }
        if hand_over {
            // Still counted in `buffered` until the successor takes them.
            let leftover = self.buffer.take_all();
            let lines: usize = leftover.iter().map(|s| s.lines).sum();
            if lines > 0 {
                tracing::info!(output = %self.name, "{lines} metrics handed to the output as reconfigured");
            }
            return leftover;
        }
        self.keep_or_drop_the_rest();
        self.update_gauges(false);
        Leftover::new()
    }

    /// Delivers everything, including the queue's last batches, and waits
    /// for the receiver to acknowledge it.
    async fn deliver_all(&mut self, queue: &mut mpsc::Receiver<OutputBatch>) {
        // A batch interrupted before the queue closed.
        self.push_pending().await;
        let mut wait = Duration::from_millis(1);
        loop {
            while let Ok(batch) = queue.try_recv() {
                self.push(batch).await;
            }
            if !self.has_data() {
                return;
            }
            if !self.transport.is_connected() {
                sleep_until(self.retry_at).await;
            }
            self.deliver().await;
            if self.transport.is_connected() && !self.in_flight.is_empty() {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(FINAL_POLL);
            }
        }
    }

    /// At exit: what memory holds goes to the spool, or is counted as
    /// dropped.
    fn keep_or_drop_the_rest(&mut self) {
        let mut outcome = SpoolOutcome::default();
        let spool = &mut self.spool;
        self.buffer
            .drain_into(|seg| outcome.keep(spool.as_mut(), seg));
        let SpoolOutcome {
            spooled,
            dropped,
            error,
        } = outcome;
        if let Some(e) = error {
            self.spool_failed(&format!("cannot write to the spool at exit: {e}"));
        }
        self.count_spool_losses();
        if spooled > 0 {
            tracing::info!(output = %self.name, "{spooled} metrics kept in the spool for the next start");
        }
        if dropped > 0 {
            self.stats.record_drops(dropped as u64);
            tracing::error!(
                output = %self.name,
                "{dropped} metrics could not be delivered to {} before exit and were dropped (counted)",
                self.transport.target()
            );
        }
    }
}
