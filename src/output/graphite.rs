//! The graphite output: carbon's plaintext protocol over TCP or UDP.
//!
//! TCP: batches are encoded into a bounded [`LineBuffer`] and written from
//! it. When carbon is away the buffer keeps the newest `max_buffered` lines,
//! the oldest dropped first and counted, and the connection is retried with
//! exponential backoff and jitter. A write that fails leaves its lines in the
//! buffer to be sent again after reconnecting: carbon may see a line twice
//! (harmless: the same timestamp overwrites), never silently lose one that
//! the agent knew was not written.
//!
//! Before each write the socket is checked for end-of-file: carbon never
//! sends anything, so a readable socket means it closed the connection, and
//! the lines go to the next connection instead of into a dead socket's
//! kernel buffer. What a crashed carbon had received but not yet written to
//! whisper cannot be known without an acknowledging protocol.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};

use super::backoff::Backoff;
use super::buffer::LineBuffer;
use super::encode::encode_line;
use super::{Closing, OutputBatch};
use crate::config::GraphiteConfig;
use crate::metrics::MetricBatch;
use crate::stats::OutputStats;

/// Runs a TCP graphite output until its queue closes and what it holds is
/// delivered or `closing.deadline` passes.
pub async fn run_tcp(
    name: String,
    config: GraphiteConfig,
    mut queue: mpsc::Receiver<OutputBatch>,
    stats: Arc<OutputStats>,
    closing: Closing,
) {
    let target = format!("{}:{}", config.host, config.port);
    let mut out = TcpOutput {
        name,
        target,
        buffer: LineBuffer::new(config.max_buffered, config.batch_size),
        backoff: Backoff::new(config.reconnect_min, config.reconnect_max),
        config,
        stats,
        conn: None,
        retry_at: Instant::now(),
        ever_connected: false,
        failing_since_drop_logged: false,
    };
    loop {
        let waiting_to_retry = out.conn.is_none() && !out.buffer.is_empty();
        let received = if waiting_to_retry {
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

struct TcpOutput {
    name: String,
    target: String,
    config: GraphiteConfig,
    buffer: LineBuffer,
    backoff: Backoff,
    stats: Arc<OutputStats>,
    conn: Option<TcpStream>,
    retry_at: Instant,
    ever_connected: bool,
    failing_since_drop_logged: bool,
}

impl TcpOutput {
    fn push(&mut self, batch: &MetricBatch) {
        let dropped = self.buffer.push(batch);
        if dropped > 0 {
            OutputStats::add(&self.stats.dropped, dropped as u64);
            if !self.failing_since_drop_logged {
                self.failing_since_drop_logged = true;
                tracing::warn!(
                    output = %self.name,
                    "buffer full ({} metrics): dropping the oldest; further drops are counted in carat.output.{}.dropped",
                    self.config.max_buffered,
                    self.name
                );
            }
        }
        self.update_gauges();
    }

    fn update_gauges(&self) {
        self.stats
            .buffered
            .store(self.buffer.len() as u64, Ordering::Relaxed);
        self.stats
            .connected
            .store(self.conn.is_some(), Ordering::Relaxed);
    }

    /// Connects if due, then writes what the buffer holds.
    async fn deliver(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        if self.conn.is_none() {
            if Instant::now() < self.retry_at {
                return;
            }
            self.connect().await;
        }
        if let Some(conn) = self.conn.as_mut() {
            if let Err(e) =
                write_buffer(conn, &mut self.buffer, &self.stats, self.config.timeout).await
            {
                self.fail(&format!("writing to {}: {e}", self.target));
            }
        }
        self.update_gauges();
    }

    async fn connect(&mut self) {
        match timeout(self.config.timeout, TcpStream::connect(&self.target)).await {
            Ok(Ok(stream)) => {
                if self.backoff.failures() > 0 {
                    OutputStats::add(&self.stats.reconnects, 1);
                    tracing::info!(
                        output = %self.name,
                        "connected to {} after {} failed attempts; {} metrics buffered",
                        self.target,
                        self.backoff.failures(),
                        self.buffer.len()
                    );
                } else if self.ever_connected {
                    OutputStats::add(&self.stats.reconnects, 1);
                } else {
                    tracing::info!(output = %self.name, "connected to {}", self.target);
                }
                self.ever_connected = true;
                self.backoff.reset();
                self.failing_since_drop_logged = false;
                self.conn = Some(stream);
            }
            Ok(Err(e)) => self.fail(&format!("connecting to {}: {e}", self.target)),
            Err(_) => self.fail(&format!(
                "connecting to {}: no answer in {:?}",
                self.target, self.config.timeout
            )),
        }
    }

    /// Drops the connection and schedules a retry. Logs the first failure of
    /// a burst; later ones are counted in `errors`, not logged.
    fn fail(&mut self, what: &str) {
        OutputStats::add(&self.stats.errors, 1);
        self.conn = None;
        let first = self.backoff.failures() == 0;
        let delay = self.backoff.next_delay();
        self.retry_at = Instant::now() + delay;
        if first {
            tracing::warn!(
                output = %self.name,
                "{what}; buffering up to {} metrics and retrying with backoff (up to {:?})",
                self.config.max_buffered,
                self.config.reconnect_max
            );
        } else {
            tracing::debug!(output = %self.name, "{what}; next attempt in {delay:?}");
        }
    }

    /// After the queue closed: keep trying until everything is delivered or
    /// the deadline passes; count what is left as dropped.
    async fn finish(&mut self, deadline: Instant) {
        while !self.buffer.is_empty() && Instant::now() < deadline {
            if self.conn.is_none() {
                let wait = self.retry_at.min(deadline);
                sleep_until(wait).await;
                if Instant::now() >= deadline {
                    break;
                }
            }
            self.deliver().await;
        }
        if let Some(mut conn) = self.conn.take() {
            let _ = timeout(Duration::from_secs(1), conn.shutdown()).await;
        }
        let left = self.buffer.clear();
        if left > 0 {
            OutputStats::add(&self.stats.dropped, left as u64);
            tracing::error!(
                output = %self.name,
                "{left} metrics could not be delivered to {} before exit",
                self.target
            );
        }
        self.update_gauges();
    }
}

/// Writes the buffer's segments in order, removing each once written.
async fn write_buffer(
    conn: &mut TcpStream,
    buffer: &mut LineBuffer,
    stats: &OutputStats,
    write_timeout: Duration,
) -> io::Result<()> {
    while let Some(segment) = buffer.front() {
        check_open(conn)?;
        match timeout(write_timeout, conn.write_all(&segment.bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("write not accepted in {write_timeout:?}"),
                ))
            }
        }
        let sent = buffer.pop_front();
        OutputStats::add(&stats.sent, sent as u64);
    }
    Ok(())
}

/// Fails if the peer closed the connection (carbon sends nothing, so any
/// readability is end-of-file or an error).
fn check_open(conn: &TcpStream) -> io::Result<()> {
    let mut probe = [0u8; 64];
    match conn.try_read(&mut probe) {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "carbon closed the connection",
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs a UDP graphite output: lines packed into datagrams of at most
/// `max_packet_size` bytes, sent as they come. UDP cannot tell whether
/// carbon received them; local send errors are counted as drops.
pub async fn run_udp(
    name: String,
    config: GraphiteConfig,
    mut queue: mpsc::Receiver<OutputBatch>,
    stats: Arc<OutputStats>,
) {
    let target = format!("{}:{}", config.host, config.port);
    let mut socket: Option<UdpSocket> = None;
    let mut backoff = Backoff::new(config.reconnect_min, config.reconnect_max);
    let mut retry_at = Instant::now();
    let mut packet = Vec::with_capacity(config.max_packet_size);
    let mut line = Vec::with_capacity(256);
    stats.connected.store(true, Ordering::Relaxed);
    while let Some(batch) = queue.recv().await {
        if socket.is_none() && Instant::now() >= retry_at {
            match udp_socket(&target).await {
                Ok(s) => {
                    backoff.reset();
                    socket = Some(s);
                }
                Err(e) => {
                    OutputStats::add(&stats.errors, 1);
                    if backoff.failures() == 0 {
                        tracing::warn!(output = %name, "cannot resolve or open UDP to {target}: {e}");
                    }
                    retry_at = Instant::now() + backoff.next_delay();
                }
            }
        }
        let Some(sock) = socket.as_ref() else {
            OutputStats::add(&stats.dropped, batch.len() as u64);
            continue;
        };
        let mut in_packet = 0usize;
        for metric in batch.iter() {
            line.clear();
            encode_line(&mut line, &metric);
            if !packet.is_empty() && packet.len() + line.len() > config.max_packet_size {
                send_packet(sock, &packet, in_packet, &stats, &name).await;
                packet.clear();
                in_packet = 0;
            }
            packet.extend_from_slice(&line);
            in_packet += 1;
        }
        if !packet.is_empty() {
            send_packet(sock, &packet, in_packet, &stats, &name).await;
            packet.clear();
        }
    }
}

async fn udp_socket(target: &str) -> io::Result<UdpSocket> {
    let addr = tokio::net::lookup_host(target)
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
    let bind = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(addr).await?;
    Ok(socket)
}

async fn send_packet(
    sock: &UdpSocket,
    packet: &[u8],
    lines: usize,
    stats: &OutputStats,
    name: &str,
) {
    match sock.send(packet).await {
        Ok(_) => OutputStats::add(&stats.sent, lines as u64),
        Err(e) => {
            if stats.errors.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(output = %name, "UDP send failed: {e}; counting drops");
            }
            OutputStats::add(&stats.dropped, lines as u64);
        }
    }
}
