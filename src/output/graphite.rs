//! The graphite output: carbon's plaintext protocol over TCP or UDP.
//!
//! TCP, plaintext or pickle: delivered through [`reliable::run`]: a bounded
//! memory buffer, an optional disk spool, reconnection with exponential
//! backoff and jitter, at-least-once delivery.
//!
//! Carbon never answers on the connection, so what it received is read from
//! TCP itself: the bytes the kernel still holds unacknowledged (`SIOCOUTQ`)
//! tell how far carbon's host acknowledged what was written. Before each
//! write the socket is checked for carbon having closed or reset it, so
//! lines go to the next connection instead of into a dead one. What a
//! carbon acknowledged and then lost (it crashed before reading it, or
//! before writing it to whisper) cannot be known without an acknowledging
//! protocol; a reset within [`reliable::Transport::SETTLE`] of the
//! acknowledgement sends those lines again.

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
use super::reliable::{self, LinkError, Settings, Transport};
use super::{Closing, Leftover, OutputBatch};
use crate::config::{GraphiteConfig, GraphiteProtocol};
use crate::stats::OutputStats;

/// Carbon's plaintext (port 2003) or pickle (port 2004) protocol over TCP.
pub struct CarbonTcp {
    target: String,
    timeout: Duration,
    pickle: bool,
    stream: Option<TcpStream>,
    /// False once a write or a check found the connection failed.
    healthy: bool,
    frames: Vec<u8>,
    /// Bytes written on this connection.
    written: u64,
    /// Bytes the receiver acknowledged, as last read.
    acked: u64,
}

impl CarbonTcp {
    /// A transport to `config`'s host and port, in its protocol.
    pub fn new(config: &GraphiteConfig) -> Self {
        CarbonTcp {
            target: format!("{}:{}", config.host, config.port),
            timeout: config.timeout,
            pickle: config.protocol == GraphiteProtocol::Pickle,
            stream: None,
            healthy: false,
            frames: Vec::new(),
            written: 0,
            acked: 0,
        }
    }

    /// Writes `bytes`, counting progress in `written` as it goes, so a write
    /// abandoned part way still tells how far it got. Fails when no byte is
    /// accepted for `timeout` (the receiver stopped reading).
    async fn write(
        stream: &mut TcpStream,
        written: &mut u64,
        bytes: &[u8],
        limit: Duration,
    ) -> Result<(), LinkError> {
        let mut at = 0;
        while at < bytes.len() {
            match timeout(limit, stream.write(&bytes[at..])).await {
                Ok(Ok(0)) => {
                    return Err(LinkError::abrupt(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the connection accepts no more data",
                    )))
                }
                Ok(Ok(n)) => {
                    at += n;
                    *written += n as u64;
                }
                Ok(Err(e)) => return Err(LinkError::abrupt(e)),
                // The receiver is alive but not reading: what it
                // acknowledged stays in its socket buffer for it to read.
                Err(_) => {
                    return Err(LinkError::orderly(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the receiver accepted nothing for {limit:?}"),
                    )))
                }
            }
        }
        Ok(())
    }
}

impl Transport for CarbonTcp {
    const SETTLE: Duration = Duration::from_secs(2);

    fn target(&self) -> String {
        self.target.clone()
    }

    async fn connect(&mut self) -> io::Result<()> {
        self.abort();
        match timeout(self.timeout, TcpStream::connect(&self.target)).await {
            Ok(Ok(stream)) => {
                self.stream = Some(stream);
                self.healthy = true;
                self.written = 0;
                self.acked = 0;
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer in {:?}", self.timeout),
            )),
        }
    }

    async fn send(&mut self, lines: &[u8], _count: usize) -> Result<usize, LinkError> {
        let CarbonTcp {
            stream,
            healthy,
            frames,
            written,
            timeout,
            pickle,
            ..
        } = self;
        let Some(stream) = stream.as_mut().filter(|_| *healthy) else {
            return Err(LinkError::abrupt(io::Error::new(
                io::ErrorKind::NotConnected,
                "not connected",
            )));
        };
        let result = match check_open(stream) {
            Err(e) => Err(e),
            Ok(()) if *pickle => {
                frames.clear();
                pickle::frames_from_lines(lines, frames);
                Self::write(stream, written, frames, *timeout).await
            }
            Ok(()) => Self::write(stream, written, lines, *timeout).await,
        };
        if result.is_err() {
            *healthy = false;
        }
        result.map(|()| 0)
    }

    fn position(&self) -> u64 {
        self.written
    }

    fn acknowledged(&mut self) -> Result<u64, LinkError> {
        let Some(stream) = self.stream.as_ref().filter(|_| self.healthy) else {
            return Err(LinkError::abrupt(io::Error::new(
                io::ErrorKind::NotConnected,
                "not connected",
            )));
        };
        if let Err(e) = check_open(stream) {
            self.healthy = false;
            return Err(e);
        }
        self.acked = self.last_acknowledged();
        Ok(self.acked)
    }

    fn last_acknowledged(&self) -> u64 {
        match self.stream.as_ref().map(unacknowledged_bytes) {
            Some(Ok(pending)) => self.written.saturating_sub(pending).max(self.acked),
            _ => self.acked,
        }
    }

    fn acked_prefix(&self, lines: &[u8], written: u64) -> (usize, usize) {
        if self.pickle {
            return pickle::acked_prefix(lines, written);
        }
        // Plaintext: the lines whose newline was acknowledged.
        let upto = usize::try_from(written).map_or(lines.len(), |w| w.min(lines.len()));
        match lines[..upto].iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                let end = last + 1;
                (lines[..end].iter().filter(|&&b| b == b'\n').count(), end)
            }
            None => (0, 0),
        }
    }

    fn abort(&mut self) {
        self.healthy = false;
        if let Some(stream) = self.stream.take() {
            // A reset, not a close: the kernel would otherwise keep sending
            // what was written and not acknowledged, lines the output
            // counts as not delivered and sends again (or drops) itself.
            let _ = stream.set_zero_linger();
        }
    }

    async fn close(&mut self) {
        self.healthy = false;
        if let Some(mut stream) = self.stream.take() {
            let _ = timeout(Duration::from_secs(1), stream.shutdown()).await;
        }
    }

    fn is_connected(&self) -> bool {
        self.stream.is_some() && self.healthy
    }
}

/// Fails if the peer closed or reset the connection (carbon sends nothing,
/// so any readability is end-of-file or an error). A close in order means
/// carbon read what it acknowledged; a reset means it may not have.
fn check_open(conn: &TcpStream) -> Result<(), LinkError> {
    let mut probe = [0u8; 64];
    match conn.try_read(&mut probe) {
        Ok(0) => Err(LinkError::orderly(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the receiver closed the connection",
        ))),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(LinkError::abrupt(e)),
    }
}

/// Bytes written to `stream` that the peer has not acknowledged yet (sent
/// or not): Linux's `SIOCOUTQ`.
#[cfg(target_os = "linux")]
fn unacknowledged_bytes(stream: &TcpStream) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
    let mut pending: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (= TIOCOUTQ) on a TCP socket writes one int through
    // the pointer, which points at a live c_int; the descriptor is owned by
    // `stream`, borrowed for the call.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut pending) };
    if rc == 0 {
        Ok(u64::try_from(pending).unwrap_or(0))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere the send queue cannot be read: a write accepted by the kernel
/// counts as acknowledged (the behaviour before acknowledgements were read).
#[cfg(not(target_os = "linux"))]
fn unacknowledged_bytes(_stream: &TcpStream) -> io::Result<u64> {
    Ok(0)
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

/// Runs a TCP graphite output (plaintext or pickle), starting with the
/// lines a predecessor handed over, until its queue closes and what it holds
/// is delivered, spooled or counted (or returned, when it is replaced).
pub async fn run_tcp(
    name: String,
    config: GraphiteConfig,
    queue: mpsc::Receiver<OutputBatch>,
    stats: Arc<OutputStats>,
    closing: Closing,
    inherited: Leftover,
) -> Leftover {
    let transport = CarbonTcp::new(&config);
    let settings = settings(&config);
    reliable::run(name, transport, settings, queue, stats, closing, inherited).await
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
    stats.set_limits(0, Duration::ZERO);
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
            stats.record_drops(batch.len() as u64);
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
            stats.record_drops(lines as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(protocol: GraphiteProtocol) -> CarbonTcp {
        CarbonTcp::new(&GraphiteConfig {
            protocol,
            ..GraphiteConfig::default()
        })
    }

    #[test]
    fn plaintext_acked_prefix_ends_at_the_last_whole_line() {
        let t = transport(GraphiteProtocol::Tcp);
        let lines = b"a 1 10\nbb 2 10\nccc 3 10\n";
        assert_eq!(t.acked_prefix(lines, 0), (0, 0));
        assert_eq!(t.acked_prefix(lines, 6), (0, 0), "newline not acknowledged");
        assert_eq!(t.acked_prefix(lines, 7), (1, 7));
        assert_eq!(t.acked_prefix(lines, 14), (1, 7));
        assert_eq!(t.acked_prefix(lines, 15), (2, 15));
        assert_eq!(t.acked_prefix(lines, 24), (3, 24));
        assert_eq!(
            t.acked_prefix(lines, 1 << 40),
            (3, 24),
            "beyond the segment"
        );
    }

    #[tokio::test]
    async fn acknowledgements_are_read_from_the_socket_and_a_reset_is_abrupt() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut t = CarbonTcp::new(&GraphiteConfig {
            port: listener.local_addr().unwrap().port(),
            ..GraphiteConfig::default()
        });
        t.connect().await.unwrap();
        let (peer, _) = listener.accept().await.unwrap();
        t.send(b"a 1 10\n", 1).await.unwrap();
        assert_eq!(t.position(), 7);
        // Loopback acknowledges at once; the receiver has not read a byte.
        let mut acked = 0;
        for _ in 0..100 {
            acked = t.acknowledged().unwrap();
            if acked == 7 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(acked, 7);
        // The receiver resets the connection with the line unread
        // (SO_LINGER 0, then close).
        peer.set_zero_linger().unwrap();
        drop(peer);
        let mut failure = None;
        for _ in 0..100 {
            if let Err(e) = t.acknowledged() {
                failure = Some(e);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let failure = failure.expect("the reset is noticed");
        assert!(failure.abrupt, "{failure}");
        assert!(!t.is_connected());
        assert_eq!(t.last_acknowledged(), 7);
    }
}
