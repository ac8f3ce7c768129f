//! The statsd output: gauges as absolute values, counters as the increase
//! over the interval (`|c`), packed into datagrams of a bounded size.
//!
//! StatsD has no negative gauge literal: `name:-5|g` means "decrease by 5".
//! A negative gauge is therefore sent as `name:0|g` then `name:-5|g`, always
//! in the same datagram so the pair cannot be split or reordered. Counters
//! carry the increase the agent measured between two samples, so a restart
//! of the agent (first sample: nothing) never spikes a graph.
//!
//! Names are the full Graphite paths, already limited to `[A-Za-z0-9_.-]`,
//! so `:`, `|`, `@`, `#` and newlines cannot reach the wire from a name; the
//! configured prefix and tags are sanitised when the output starts.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

use super::backoff::Backoff;
use super::encode::encode_value;
use super::OutputBatch;
use crate::config::{StatsdConfig, StatsdProtocol};
use crate::metrics::Metric;
use crate::stats::OutputStats;

/// Encodes metrics as StatsD lines.
#[derive(Clone, Debug)]
pub struct StatsdEncoder {
    prefix: String,
    /// `|#a:b,c` or empty.
    tags: String,
}

impl StatsdEncoder {
    /// An encoder with `config`'s prefix and tags, sanitised.
    pub fn new(config: &StatsdConfig) -> Self {
        let mut prefix = carat_collector::name::path(&config.prefix);
        if !prefix.is_empty() {
            prefix.push('.');
        }
        let tags: Vec<String> = config
            .tags
            .iter()
            .map(|t| sanitize_tag(t))
            .filter(|t| !t.is_empty())
            .collect();
        let tags = if tags.is_empty() {
            String::new()
        } else {
            format!("|#{}", tags.join(","))
        };
        StatsdEncoder { prefix, tags }
    }

    /// Appends the line(s) for `metric` to `out`, each ending in `\n`.
    /// Returns false for a metric StatsD cannot express (none today).
    pub fn encode(&self, out: &mut Vec<u8>, metric: &Metric<'_>) {
        match metric.increase {
            Some(increase) => {
                self.name(out, metric.path);
                out.extend_from_slice(itoa::Buffer::new().format(increase).as_bytes());
                out.extend_from_slice(b"|c");
                self.end(out);
            }
            None if metric.value < 0.0 => {
                self.name(out, metric.path);
                out.extend_from_slice(b"0|g");
                self.end(out);
                self.name(out, metric.path);
                encode_value(out, metric.value);
                out.extend_from_slice(b"|g");
                self.end(out);
            }
            None => {
                self.name(out, metric.path);
                encode_value(out, metric.value);
                out.extend_from_slice(b"|g");
                self.end(out);
            }
        }
    }

    fn name(&self, out: &mut Vec<u8>, path: &str) {
        out.extend_from_slice(self.prefix.as_bytes());
        out.extend_from_slice(path.as_bytes());
        out.push(b':');
    }

    fn end(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.tags.as_bytes());
        out.push(b'\n');
    }
}

/// Tags may hold `:` (key:value) but none of StatsD's separators.
fn sanitize_tag(tag: &str) -> String {
    tag.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Packs encoded metrics into datagrams of at most `max` bytes, never
/// splitting one metric's lines (a negative gauge's pair) across two.
pub struct Packer {
    max: usize,
    packet: Vec<u8>,
    metrics_in_packet: usize,
}

impl Packer {
    /// A packer for datagrams of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Packer {
            max,
            packet: Vec::with_capacity(max),
            metrics_in_packet: 0,
        }
    }

    /// Adds one metric's lines; returns a full packet to send first, if the
    /// metric did not fit in the current one.
    pub fn add(&mut self, lines: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut full = None;
        // The datagram's last newline is dropped when sent.
        if !self.packet.is_empty() && self.packet.len() + lines.len() - 1 > self.max {
            full = self.take();
        }
        self.packet.extend_from_slice(lines);
        self.metrics_in_packet += 1;
        full
    }

    /// The packet being filled, if it has anything.
    pub fn take(&mut self) -> Option<(Vec<u8>, usize)> {
        if self.packet.is_empty() {
            return None;
        }
        let mut packet = std::mem::replace(&mut self.packet, Vec::with_capacity(self.max));
        if packet.last() == Some(&b'\n') {
            packet.pop();
        }
        let n = std::mem::take(&mut self.metrics_in_packet);
        Some((packet, n))
    }
}

/// Runs a statsd output until its queue closes.
pub async fn run(
    name: String,
    config: StatsdConfig,
    mut queue: mpsc::Receiver<OutputBatch>,
    stats: Arc<OutputStats>,
) {
    let encoder = StatsdEncoder::new(&config);
    let target = format!("{}:{}", config.host, config.port);
    let mut sink = Sink {
        name,
        target,
        config,
        udp: None,
        tcp: None,
        backoff: None,
        retry_at: Instant::now(),
        stats,
    };
    let mut packer = Packer::new(sink.config.max_packet_size);
    let mut line = Vec::with_capacity(256);
    let mut tcp_buf = Vec::new();
    while let Some(batch) = queue.recv().await {
        if sink.config.protocol == StatsdProtocol::Tcp {
            tcp_buf.clear();
            for metric in batch.iter() {
                encoder.encode(&mut tcp_buf, &metric);
            }
            sink.send_tcp(&tcp_buf, batch.len()).await;
            continue;
        }
        for metric in batch.iter() {
            line.clear();
            encoder.encode(&mut line, &metric);
            if let Some((packet, n)) = packer.add(&line) {
                sink.send_udp(&packet, n).await;
            }
        }
        if let Some((packet, n)) = packer.take() {
            sink.send_udp(&packet, n).await;
        }
    }
    if let Some(mut stream) = sink.tcp.take() {
        let _ = stream.shutdown().await;
    }
}

struct Sink {
    name: String,
    target: String,
    config: StatsdConfig,
    udp: Option<UdpSocket>,
    tcp: Option<TcpStream>,
    backoff: Option<Backoff>,
    retry_at: Instant,
    stats: Arc<OutputStats>,
}

impl Sink {
    fn backoff(&mut self) -> &mut Backoff {
        self.backoff.get_or_insert_with(|| {
            Backoff::new(
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(60),
            )
        })
    }

    fn failed(&mut self, what: &str, metrics: usize) {
        OutputStats::add(&self.stats.errors, 1);
        self.stats.record_drops(metrics as u64);
        let first = self.backoff().failures() == 0;
        let delay = self.backoff().next_delay();
        self.retry_at = Instant::now() + delay;
        self.stats.connected.store(false, Ordering::Relaxed);
        if first {
            tracing::warn!(output = %self.name, "{what}; dropping metrics (counted) until it works again");
        }
    }

    fn succeeded(&mut self, metrics: usize) {
        OutputStats::add(&self.stats.sent, metrics as u64);
        self.stats.connected.store(true, Ordering::Relaxed);
        if let Some(b) = self.backoff.as_mut() {
            if b.failures() > 0 {
                tracing::info!(output = %self.name, "sending to {} again", self.target);
            }
            b.reset();
        }
    }

    async fn send_udp(&mut self, packet: &[u8], metrics: usize) {
        if self.udp.is_none() {
            if Instant::now() < self.retry_at {
                self.stats.record_drops(metrics as u64);
                return;
            }
            match super::udp_socket(&self.target).await {
                Ok(s) => self.udp = Some(s),
                Err(e) => {
                    let what = format!("cannot open UDP to {}: {e}", self.target);
                    self.failed(&what, metrics);
                    return;
                }
            }
        }
        let result = match self.udp.as_ref() {
            Some(sock) => sock.send(packet).await,
            None => return,
        };
        match result {
            Ok(_) => self.succeeded(metrics),
            Err(e) => {
                // A connected UDP socket reports the ICMP "port unreachable"
                // of an earlier datagram here; keep the socket and go on.
                let what = format!("UDP send to {} failed: {e}", self.target);
                self.failed(&what, metrics);
                self.retry_at = Instant::now();
            }
        }
    }

    async fn send_tcp(&mut self, lines: &[u8], metrics: usize) {
        if self.tcp.is_none() {
            if Instant::now() < self.retry_at {
                self.stats.record_drops(metrics as u64);
                return;
            }
            match timeout(self.config.timeout, TcpStream::connect(&self.target)).await {
                Ok(Ok(s)) => self.tcp = Some(s),
                Ok(Err(e)) => {
                    let what = format!("connecting to {}: {e}", self.target);
                    self.failed(&what, metrics);
                    return;
                }
                Err(_) => {
                    let what = format!("connecting to {}: timed out", self.target);
                    self.failed(&what, metrics);
                    return;
                }
            }
        }
        let Some(stream) = self.tcp.as_mut() else {
            return;
        };
        match timeout(self.config.timeout, stream.write_all(lines)).await {
            Ok(Ok(())) => self.succeeded(metrics),
            Ok(Err(e)) => {
                self.tcp = None;
                let what = format!("writing to {}: {e}", self.target);
                self.failed(&what, metrics);
            }
            Err(_) => {
                self.tcp = None;
                let what = format!("writing to {}: timed out", self.target);
                self.failed(&what, metrics);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoder(prefix: &str, tags: &[&str]) -> StatsdEncoder {
        StatsdEncoder::new(&StatsdConfig {
            prefix: prefix.into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            ..StatsdConfig::default()
        })
    }

    fn encode(e: &StatsdEncoder, path: &str, value: f64, increase: Option<u64>) -> String {
        let mut out = Vec::new();
        e.encode(
            &mut out,
            &Metric {
                path,
                value,
                increase,
                timestamp: 0,
            },
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn gauges_counters_and_negative_gauges() {
        let e = encoder("", &[]);
        assert_eq!(encode(&e, "a.b", 1.5, None), "a.b:1.5|g\n");
        assert_eq!(encode(&e, "a.b", -3.0, None), "a.b:0|g\na.b:-3|g\n");
        assert_eq!(encode(&e, "a.rx", 12.5, Some(125)), "a.rx:125|c\n");
    }

    #[test]
    fn prefix_and_tags_cannot_break_the_format() {
        let e = encoder("my app:|x", &["env:prod", "bad|tag@#\n"]);
        assert_eq!(
            encode(&e, "a", 1.0, None),
            "my_app__x.a:1|g|#env:prod,bad_tag___\n"
        );
    }

    #[test]
    fn packer_respects_size_and_keeps_pairs_together() {
        let mut p = Packer::new(20);
        assert!(p.add(b"aaaa:1|g\n").is_none()); // 8 bytes
        assert!(p.add(b"bbbb:2|g\n").is_none()); // 8+1+8 = 17
        let pair = b"cccc:0|g\ncccc:-1|g\n";
        let (first, n) = p.add(pair).unwrap();
        assert_eq!((first.as_slice(), n), (&b"aaaa:1|g\nbbbb:2|g"[..], 2));
        let (second, n) = p.take().unwrap();
        assert_eq!((second.as_slice(), n), (&b"cccc:0|g\ncccc:-1|g"[..], 1));
        assert!(p.take().is_none());
    }
}
