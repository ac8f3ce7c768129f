//! The graphite output: carbon's plaintext protocol over TCP or UDP.
//!
//! TCP, plaintext or pickle: delivered through [`reliable::run`]: a bounded
//! memory buffer, an optional disk spool, reconnection with exponential
//! backoff and jitter, at-least-once delivery.
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
use tokio::time::{timeout, Instant};

use super::backoff::Backoff;
use super::encode::encode_line;
use super::pickle;
use super::reliable::{self, Settings, Transport};
use super::{Closing, OutputBatch};
use crate::config::{GraphiteConfig, GraphiteProtocol};
use crate::stats::OutputStats;

/// Carbon's plaintext (port 2003) or pickle (port 2004) protocol over TCP.
pub struct CarbonTcp {
    target: String,
    timeout: Duration,
    pickle: bool,
    stream: Option<TcpStream>,
    frames: Vec<u8>,
}

impl CarbonTcp {
    /// A transport to `config`'s host and port, in its protocol.
    pub fn new(config: &GraphiteConfig) -> Self {
        CarbonTcp {
            target: format!("{}:{}", config.host, config.port),
            timeout: config.timeout,
            pickle: config.protocol == GraphiteProtocol::Pickle,
            stream: None,
            frames: Vec::new(),
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "not connected"));
        };
        check_open(stream)?;
        match timeout(self.timeout, stream.write_all(bytes)).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("write not accepted in {:?}", self.timeout),
            )),
        }
    }
}

impl Transport for CarbonTcp {
    fn target(&self) -> String {
        self.target.clone()
    }

    async fn connect(&mut self) -> io::Result<()> {
        self.stream = None;
        match timeout(self.timeout, TcpStream::connect(&self.target)).await {
            Ok(Ok(stream)) => {
                self.stream = Some(stream);
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer in {:?}", self.timeout),
            )),
        }
    }

    async fn send(&mut self, lines: &[u8], _count: usize) -> io::Result<()> {
        let result = if self.pickle {
            let mut frames = std::mem::take(&mut self.frames);
            frames.clear();
            pickle::frames_from_lines(lines, &mut frames);
            let r = self.write(&frames).await;
            self.frames = frames;
            r
        } else {
            self.write(lines).await
        };
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn close(&mut self) {
        if let Some(mut stream) = self.stream.take() {
            let _ = timeout(Duration::from_secs(1), stream.shutdown()).await;
        }
    }

    fn is_connected(&self) -> bool {
        self.stream.is_some()
    }
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

/// The buffering and reconnection settings of a TCP graphite output.
pub fn settings(config: &GraphiteConfig) -> Settings {
    Settings::new(
        config.max_buffered,
        config.batch_size,
        (config.reconnect_min, config.reconnect_max),
        config.spool_dir.as_deref(),
        config.spool_max_mb,
    )
}

/// Runs a TCP graphite output (plaintext or pickle) until its queue closes
/// and what it holds is delivered, spooled or counted.
pub async fn run_tcp(
    name: String,
    config: GraphiteConfig,
    queue: mpsc::Receiver<OutputBatch>,
    stats: Arc<OutputStats>,
    closing: Closing,
) {
    let transport = CarbonTcp::new(&config);
    reliable::run(name, transport, settings(&config), queue, stats, closing).await;
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
            match super::udp_socket(&target).await {
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
