//! The amqp output: Graphite plaintext published to an AMQP 0-9-1 exchange
//! (RabbitMQ), for carbon's AMQP listener (`ENABLE_AMQP = True`).
//!
//! Delivered through [`reliable::run`] like TCP graphite: a bounded memory
//! buffer, an optional disk spool, reconnection with exponential backoff and
//! jitter, at-least-once delivery. A segment counts as delivered only when
//! the broker has confirmed (publisher confirms, `Basic.Ack`) every message
//! of it; the messages are persistent (delivery mode 2), so a durable queue
//! keeps them across a broker restart.
//!
//! The message formats are those carbon's `amqp_listener.py` parses: it
//! splits a body into lines and, with `AMQP_METRIC_NAME_IN_BODY = False`
//! (carbon's default), reads `value timestamp` from each and takes the
//! metric name from the routing key; with `True`, it reads
//! `metric value timestamp` and ignores the routing key. Carbon declares the
//! exchange itself as a durable topic exchange (not auto-deleted) and binds
//! its own exclusive queue to it with `BIND_PATTERNS` (default `#`); this
//! output declares the exchange the same way, because a declaration with
//! other properties fails.
//!
//! What the broker cannot route it drops and still confirms: while carbon
//! is stopped its exclusive queue does not exist, so metrics published then
//! are lost unless some durable queue is bound to the exchange.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::reliable::{self, LinkError, Settings, Transport};
use super::{Closing, Leftover, OutputBatch};
use crate::config::AmqpConfig;
use crate::stats::OutputStats;

/// The longest exchange name or routing key AMQP can carry (a short string).
pub const MAX_SHORT_STRING: usize = 255;

/// AMQP's delivery mode of a message the broker writes to disk.
const PERSISTENT: u8 = 2;

/// How lines become messages: carbon's `AMQP_METRIC_NAME_IN_BODY`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `False`: one message per metric, routing key = metric path, body =
    /// `value timestamp`.
    PerMetric,
    /// `True`: one message per segment of `path value timestamp\n` lines,
    /// all with this routing key.
    NameInBody {
        /// The routing key of every message.
        routing_key: String,
    },
}

impl Encoding {
    /// The encoding `config` asks for.
    pub fn of(config: &AmqpConfig) -> Self {
        if config.metric_name_in_body {
            Encoding::NameInBody {
                routing_key: config.routing_key.clone(),
            }
        } else {
            Encoding::PerMetric
        }
    }
}

/// One message to publish, borrowed from a segment of plaintext lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// The routing key.
    pub routing_key: &'a str,
    /// The body.
    pub body: &'a [u8],
}

/// A line that cannot be published in the chosen encoding, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unpublishable<'a> {
    /// The line, without its newline.
    pub line: &'a [u8],
    /// Why.
    pub reason: &'static str,
}

/// The messages of a segment of plaintext lines (`path value timestamp\n`
/// each), in order. With [`Encoding::PerMetric`], a line whose path cannot
/// be a routing key (longer than 255 bytes, not UTF-8) or that has no value
/// is yielded as an error and skipped.
pub fn messages<'a>(
    lines: &'a [u8],
    encoding: &'a Encoding,
) -> impl Iterator<Item = Result<Message<'a>, Unpublishable<'a>>> + 'a {
    let whole = match encoding {
        Encoding::NameInBody { routing_key } if !lines.is_empty() => Some(Ok(Message {
            routing_key,
            body: lines,
        })),
        _ => None,
    };
    let per_metric = match encoding {
        Encoding::PerMetric => Some(
            lines
                .split(|&b| b == b'\n')
                .filter(|line| !line.is_empty())
                .map(per_metric_message),
        ),
        Encoding::NameInBody { .. } => None,
    };
    whole.into_iter().chain(per_metric.into_iter().flatten())
}

/// `path value timestamp` → routing key `path`, body `value timestamp`.
fn per_metric_message(line: &[u8]) -> Result<Message<'_>, Unpublishable<'_>> {
    let bad = |reason| Unpublishable { line, reason };
    let Some(space) = line.iter().position(|&b| b == b' ') else {
        return Err(bad("not a `path value timestamp` line"));
    };
    let (path, body) = (&line[..space], &line[space + 1..]);
    if path.is_empty() || body.is_empty() {
        return Err(bad("not a `path value timestamp` line"));
    }
    if path.len() > MAX_SHORT_STRING {
        return Err(bad(
            "the metric path is longer than the 255 bytes of a routing key",
        ));
    }
    let Ok(routing_key) = std::str::from_utf8(path) else {
        return Err(bad("the metric path is not UTF-8"));
    };
    Ok(Message { routing_key, body })
}

/// Parses and checks the `url` option. Errors never repeat the URL, which
/// may hold a password.
pub fn parse_url(url: &str) -> Result<AMQPUri, String> {
    let uri: AMQPUri = url.parse().map_err(|e| format!("not an AMQP URL: {e}"))?;
    if uri.scheme == AMQPScheme::AMQPS {
        return Err(
            "amqps:// needs TLS, which carat does not include: use amqp:// \
                    (through a local TLS tunnel if the broker is remote)"
                .into(),
        );
    }
    if uri.authority.host.is_empty() {
        return Err("the URL names no host".into());
    }
    Ok(uri)
}

/// Checks the options that [`parse_url`] does not: returns the offending
/// option and the problem.
pub fn check_config(config: &AmqpConfig) -> Result<(), (&'static str, String)> {
    parse_url(&config.url).map_err(|e| ("url", e))?;
    if config.exchange.is_empty() {
        return Err((
            "exchange",
            "must not be empty: carbon reads from a named topic exchange".into(),
        ));
    }
    if config.exchange.len() > MAX_SHORT_STRING {
        return Err(("exchange", format!("longer than {MAX_SHORT_STRING} bytes")));
    }
    if config.declare_exchange && config.exchange.starts_with("amq.") {
        return Err((
            "exchange",
            "names starting with `amq.` are reserved by the broker and cannot be declared; \
             set declare_exchange = false to publish to an existing one"
                .into(),
        ));
    }
    if config.routing_key.len() > MAX_SHORT_STRING {
        return Err((
            "routing_key",
            format!("longer than {MAX_SHORT_STRING} bytes"),
        ));
    }
    if config.batch_size == 0 || config.max_buffered == 0 {
        return Err((
            "batch_size",
            "batch_size and max_buffered must be at least 1".into(),
        ));
    }
    Ok(())
}

/// A connection and its channel in confirm mode.
struct Link {
    conn: Connection,
    channel: Channel,
}

impl Link {
    fn is_open(&self) -> bool {
        self.conn.status().connected() && self.channel.status().connected()
    }

    /// The broker stopped reading from this connection: a resource alarm
    /// (memory or disk) blocks publishers until it clears.
    fn is_blocked(&self) -> bool {
        self.conn.status().blocked()
    }

    async fn close(self) {
        let _ = timeout(Duration::from_secs(1), self.conn.close(200, "OK".into())).await;
    }
}

const BLOCKED: &str = "the broker is blocking publishers (a memory or disk alarm)";

/// A connection and a channel in confirm mode to an AMQP broker.
///
/// A connection the broker blocks (`connection.blocked`: a resource alarm)
/// is not replaced by a new one, which the broker would block as well while
/// it is short of memory or disk: it is parked, reported as disconnected,
/// and taken up again by [`Transport::connect`] once the broker unblocks it.
/// So an alarm costs the broker one idle connection, not one per retry.
pub struct AmqpTransport {
    name: String,
    uri: AMQPUri,
    target: String,
    exchange: ShortString,
    declare_exchange: bool,
    encoding: Encoding,
    timeout: Duration,
    unpublishable_logged: bool,
    link: Option<Link>,
    parked: Option<Link>,
    /// Lines confirmed by the broker on this connection.
    confirmed: u64,
}

impl AmqpTransport {
    /// A transport for output `name` configured by `config`.
    pub fn new(name: &str, config: &AmqpConfig) -> Result<Self, String> {
        let uri = parse_url(&config.url)?;
        let exchange = ShortString::try_new(config.exchange.clone()).map_err(|e| e.to_string())?;
        let target = format!(
            "amqp://{}@{}:{}/{} exchange {:?}",
            uri.authority.userinfo.username,
            uri.authority.host,
            uri.authority.port,
            uri.vhost.replace('%', "%25").replace('/', "%2f"),
            config.exchange
        );
        Ok(AmqpTransport {
            name: name.to_owned(),
            uri,
            target,
            exchange,
            declare_exchange: config.declare_exchange,
            encoding: Encoding::of(config),
            timeout: config.timeout,
            unpublishable_logged: false,
            link: None,
            parked: None,
            confirmed: 0,
        })
    }

    async fn open(&self) -> lapin::Result<Link> {
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("carat {}", self.name).as_str().into());
        let conn = Connection::connect_uri(self.uri.clone(), properties).await?;
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        if self.declare_exchange {
            // As carbon's listener declares it: a declaration that differs
            // from the existing exchange is refused (PRECONDITION_FAILED).
            let options = ExchangeDeclareOptions {
                durable: true,
                auto_delete: false,
                internal: false,
                passive: false,
                nowait: false,
            };
            channel
                .exchange_declare(
                    self.exchange.clone(),
                    ExchangeKind::Topic,
                    options,
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(Link { conn, channel })
    }

    /// Publishes every message of `lines` and waits until the broker has
    /// confirmed them all. Returns how many lines could not be published.
    async fn publish(&mut self, lines: &[u8]) -> io::Result<usize> {
        let Some(link) = self.link.as_ref() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "not connected"));
        };
        if link.is_blocked() {
            return Err(io::Error::other(BLOCKED));
        }
        let channel = &link.channel;
        let properties = BasicProperties::default().with_delivery_mode(PERSISTENT);
        let mut confirms = Vec::new();
        let mut unpublishable = 0usize;
        for message in messages(lines, &self.encoding) {
            let message = match message {
                Ok(m) => m,
                Err(bad) => {
                    unpublishable += 1;
                    if !self.unpublishable_logged {
                        self.unpublishable_logged = true;
                        tracing::warn!(
                            output = %self.name,
                            "cannot publish {:?}: {}; such metrics are dropped and counted in carat.output.{}.dropped",
                            String::from_utf8_lossy(bad.line),
                            bad.reason,
                            self.name
                        );
                    }
                    continue;
                }
            };
            let routing_key = ShortString::try_new(message.routing_key)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let publish = channel.basic_publish(
                self.exchange.clone(),
                routing_key,
                BasicPublishOptions::default(),
                message.body,
                properties.clone(),
            );
            confirms.push(
                within(self.timeout, "publishing", publish)
                    .await?
                    .map_err(io_error)?,
            );
        }
        // Each confirmation must come within `timeout` of the previous one:
        // a blocked connection (broker out of memory or disk) or a broker
        // that stopped answering fails the send instead of hanging it.
        for confirm in confirms {
            let confirmation = within(
                self.timeout,
                "waiting for the broker's confirmation",
                confirm,
            )
            .await?
            .map_err(io_error)?;
            match confirmation {
                Confirmation::Ack(_) => {}
                Confirmation::Nack(_) => {
                    return Err(io::Error::other(
                        "the broker refused a message (basic.nack)",
                    ))
                }
                Confirmation::NotRequested => {
                    return Err(io::Error::other("the channel is not in confirm mode"))
                }
            }
        }
        Ok(unpublishable)
    }
}

/// `future`'s output, or a timeout error after `limit`.
async fn within<F: std::future::Future>(
    limit: Duration,
    what: &str,
    future: F,
) -> io::Result<F::Output> {
    timeout(limit, future).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what}: no answer in {limit:?}"),
        )
    })
}

fn io_error(e: lapin::Error) -> io::Error {
    io::Error::other(e.to_string())
}

impl Transport for AmqpTransport {
    /// A publisher confirm is final: the broker has the message.
    const SETTLE: Duration = Duration::ZERO;

    fn target(&self) -> String {
        self.target.clone()
    }

    async fn connect(&mut self) -> io::Result<()> {
        self.link = None;
        self.confirmed = 0;
        if let Some(parked) = self.parked.take() {
            if parked.is_open() {
                if parked.is_blocked() {
                    self.parked = Some(parked);
                    return Err(io::Error::other(BLOCKED));
                }
                self.link = Some(parked);
                return Ok(());
            }
        }
        let link = within(self.timeout, "connecting", self.open())
            .await?
            .map_err(io_error)?;
        self.link = Some(link);
        Ok(())
    }

    /// Publishes the segment and waits for the broker to confirm all of it.
    /// A segment whose publish fails part way is sent again whole.
    async fn send(&mut self, lines: &[u8], count: usize) -> Result<usize, LinkError> {
        let result = match self.publish(lines).await {
            Ok(unpublishable) => {
                self.confirmed += (count - unpublishable.min(count)) as u64;
                Ok(unpublishable)
            }
            Err(e) => Err(LinkError::abrupt(e)),
        };
        if result.is_err() {
            if let Some(link) = self.link.take() {
                if link.is_open() && link.is_blocked() {
                    self.parked = Some(link);
                }
                // Otherwise dropping the handles closes the connection in
                // the background.
            }
        }
        result
    }

    fn position(&self) -> u64 {
        self.confirmed
    }

    fn acknowledged(&mut self) -> Result<u64, LinkError> {
        if self.is_connected() {
            Ok(self.confirmed)
        } else {
            Err(LinkError::abrupt(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection to the broker was lost",
            )))
        }
    }

    fn last_acknowledged(&self) -> u64 {
        self.confirmed
    }

    fn acked_prefix(&self, _lines: &[u8], _written: u64) -> (usize, usize) {
        // Segments are confirmed whole or sent again whole.
        (0, 0)
    }

    fn abort(&mut self) {
        // Dropping the handles closes the connection in the background; a
        // parked (blocked) connection is kept for when the alarm clears.
        self.link = None;
    }

    async fn close(&mut self) {
        for link in [self.link.take(), self.parked.take()].into_iter().flatten() {
            link.close().await;
        }
    }

    fn is_connected(&self) -> bool {
        self.link.as_ref().is_some_and(Link::is_open)
    }
}

/// The buffering and reconnection settings of an amqp output.
pub fn settings(config: &AmqpConfig) -> Settings {
    Settings::new(
        config.max_buffered,
        config.batch_size,
        (config.reconnect_min, config.reconnect_max),
        config.spool_dir.as_deref(),
        config.spool_max_mb,
    )
}

/// Runs an amqp output, starting with the lines a predecessor handed over,
/// until its queue closes and what it holds is delivered, spooled or counted
/// (or returned, when it is replaced).
pub async fn run(
    name: String,
    config: AmqpConfig,
    mut queue: mpsc::Receiver<OutputBatch>,
    stats: Arc<OutputStats>,
    closing: Closing,
    inherited: Leftover,
) -> Leftover {
    match AmqpTransport::new(&name, &config) {
        Ok(transport) => {
            let settings = settings(&config);
            reliable::run(name, transport, settings, queue, stats, closing, inherited).await
        }
        Err(e) => {
            // The configuration was checked when it was loaded; this is a
            // last resort that still counts every metric.
            tracing::error!(output = %name, "cannot start: {e}; dropping its metrics");
            OutputStats::add(&stats.errors, 1);
            stats.connected.store(false, Ordering::Relaxed);
            stats.record_drops(inherited.iter().map(|s| s.lines as u64).sum());
            while let Some(batch) = queue.recv().await {
                stats.record_drops(batch.len() as u64);
            }
            Leftover::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect<'a>(
        lines: &'a [u8],
        encoding: &'a Encoding,
    ) -> Vec<Result<Message<'a>, Unpublishable<'a>>> {
        messages(lines, encoding).collect()
    }

    fn ok<'a>(routing_key: &'a str, body: &'a str) -> Result<Message<'a>, Unpublishable<'a>> {
        Ok(Message {
            routing_key,
            body: body.as_bytes(),
        })
    }

    #[test]
    fn per_metric_routes_by_path_with_value_and_timestamp_in_the_body() {
        let lines =
            b"servers.web01.cpu.total.user 1.5 1763880000\nservers.web01.loadavg.01 0 1763880001\n";
        assert_eq!(
            collect(lines, &Encoding::PerMetric),
            vec![
                ok("servers.web01.cpu.total.user", "1.5 1763880000"),
                ok("servers.web01.loadavg.01", "0 1763880001"),
            ]
        );
    }

    #[test]
    fn per_metric_body_is_what_carbon_parses_without_the_name() {
        // carbon: `value, timestamp = line.split()` for each line of the body.
        let lines = b"a.b -3 17\n";
        let m = collect(lines, &Encoding::PerMetric).remove(0).unwrap();
        let body = std::str::from_utf8(m.body).unwrap();
        let fields: Vec<&str> = body.split_whitespace().collect();
        assert_eq!(fields, ["-3", "17"]);
        assert_eq!(m.routing_key, "a.b");
    }

    #[test]
    fn name_in_body_is_one_message_of_all_lines() {
        let lines = b"a.b 1 10\nc.d 2 11\n";
        let enc = Encoding::NameInBody {
            routing_key: String::new(),
        };
        assert_eq!(collect(lines, &enc), vec![ok("", "a.b 1 10\nc.d 2 11\n")]);
        let enc = Encoding::NameInBody {
            routing_key: "graphite".into(),
        };
        assert_eq!(
            collect(lines, &enc),
            vec![ok("graphite", "a.b 1 10\nc.d 2 11\n")]
        );
        assert!(collect(b"", &enc).is_empty());
    }

    #[test]
    fn per_metric_skips_what_cannot_be_a_routing_key() {
        let long = format!("{} 1 10\nok 2 11\n", "x".repeat(256));
        let got = collect(long.as_bytes(), &Encoding::PerMetric);
        assert_eq!(got.len(), 2);
        assert!(got[0].as_ref().unwrap_err().reason.contains("255"));
        assert_eq!(got[1], ok("ok", "2 11"));
        // 255 bytes is the limit, inclusive.
        let max = format!("{} 1 10\n", "y".repeat(255));
        assert!(collect(max.as_bytes(), &Encoding::PerMetric)[0].is_ok());
        let got = collect(b"novalue\n \xff\xfe 1 2\n", &Encoding::PerMetric);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(Result::is_err));
    }

    #[test]
    fn per_metric_ignores_empty_lines() {
        assert_eq!(
            collect(b"\na 1 2\n\n", &Encoding::PerMetric),
            vec![ok("a", "1 2")]
        );
    }

    #[test]
    fn urls_are_checked_without_echoing_them() {
        let uri = parse_url("amqp://carat:s3cret@mq.example:5673/metrics").unwrap();
        assert_eq!(uri.authority.host, "mq.example");
        assert_eq!(uri.authority.port, 5673);
        assert_eq!(uri.vhost, "metrics");
        assert_eq!(uri.authority.userinfo.password, "s3cret");
        assert_eq!(parse_url(&AmqpConfig::default().url).unwrap().vhost, "/");
        let e = parse_url("amqps://u:s3cret@mq.example/").unwrap_err();
        assert!(e.contains("TLS") && !e.contains("s3cret"), "{e}");
        let e = parse_url("http://u:s3cret@mq.example/").unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn config_checks() {
        let ok = AmqpConfig::default();
        assert_eq!(check_config(&ok), Ok(()));
        let bad = |f: fn(&mut AmqpConfig)| {
            let mut c = AmqpConfig::default();
            f(&mut c);
            check_config(&c).unwrap_err().0
        };
        assert_eq!(bad(|c| c.exchange.clear()), "exchange");
        assert_eq!(bad(|c| c.exchange = "amq.topic".into()), "exchange");
        assert_eq!(bad(|c| c.routing_key = "k".repeat(256)), "routing_key");
        assert_eq!(bad(|c| c.batch_size = 0), "batch_size");
        assert_eq!(bad(|c| c.url = "amqps://h/".into()), "url");
        let existing = AmqpConfig {
            exchange: "amq.topic".into(),
            declare_exchange: false,
            ..AmqpConfig::default()
        };
        assert_eq!(check_config(&existing), Ok(()));
    }

    fn load(toml: &str) -> Result<crate::config::Config, String> {
        crate::config::load_str(
            toml,
            std::path::Path::new("t.toml"),
            &crate::registry::Registry::builtin(),
        )
        .map_err(|e| e.to_string())
    }

    fn amqp_outputs(config: &crate::config::Config) -> Vec<(String, AmqpConfig)> {
        config
            .outputs
            .iter()
            .filter_map(|o| match &o.settings {
                crate::config::OutputSettings::Amqp(c) => Some((o.name.clone(), c.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn loads_defaults_and_named_instances() {
        let config = load("[output.amqp]\n").unwrap();
        assert_eq!(
            amqp_outputs(&config),
            vec![("amqp".to_owned(), AmqpConfig::default())]
        );
        let d = AmqpConfig::default();
        assert_eq!(d.url, "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(
            (d.exchange.as_str(), d.declare_exchange),
            ("graphite", true)
        );
        assert!(!d.metric_name_in_body && d.routing_key.is_empty());

        let config = load(
            r#"
[output.amqp]
url = "amqp://carat:pw@mq:5672/graphite"
timeout = 2.5
[output.amqp.plain]
[output.amqp.lines]
exchange = "metrics"
metric_name_in_body = true
routing_key = "carat"
max_buffered = 10
spool_dir = "/var/spool/carat-amqp"
"#,
        )
        .unwrap();
        let outputs = amqp_outputs(&config);
        let names: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["amqp.lines", "amqp.plain"]);
        let lines = &outputs[0].1;
        assert_eq!(lines.exchange, "metrics");
        assert_eq!(lines.url, "amqp://carat:pw@mq:5672/graphite");
        assert_eq!(lines.timeout, Duration::from_millis(2500));
        assert_eq!(
            Encoding::of(lines),
            Encoding::NameInBody {
                routing_key: "carat".into()
            }
        );
        assert_eq!(settings(lines).max_buffered, 10);
        assert_eq!(
            settings(lines).spool,
            Some(("/var/spool/carat-amqp".into(), 256 << 20))
        );
        assert_eq!(Encoding::of(&outputs[1].1), Encoding::PerMetric);
        assert_eq!(outputs[1].1.exchange, "graphite");
    }

    #[test]
    fn load_errors_name_the_key_and_hide_the_password() {
        let e = load("[output.amqp]\nexchange = \"amq.topic\"\n").unwrap_err();
        assert!(
            e.contains("output.amqp.exchange") && e.contains("declare_exchange"),
            "{e}"
        );
        let e = load("[output.amqp]\nurl = \"amqps://u:s3cret@mq/\"\n").unwrap_err();
        assert!(
            e.contains("output.amqp.url") && !e.contains("s3cret"),
            "{e}"
        );
        let e = load("[output.amqp]\nmandatory = true\n").unwrap_err();
        assert!(e.contains("mandatory"), "{e}");
    }

    #[test]
    fn target_and_debug_never_show_the_password() {
        let config = AmqpConfig {
            url: "amqp://carat:s3cret@mq.example:5672/%2f".into(),
            ..AmqpConfig::default()
        };
        let t = AmqpTransport::new("amqp", &config).unwrap();
        assert_eq!(
            t.target(),
            "amqp://carat@mq.example:5672/%2f exchange \"graphite\""
        );
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("s3cret") && debug.contains("carat:***@mq.example"),
            "{debug}"
        );
    }
}
