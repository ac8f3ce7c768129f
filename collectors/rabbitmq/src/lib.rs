//! The `rabbitmq` collector: a RabbitMQ broker's queues (depth, ready and
//! unacknowledged messages, consumers, publish/deliver/ack rates), exchanges,
//! node health and cluster, from the management plugin's HTTP API, under
//! the names of Diamond's `RabbitMQCollector`.
//!
//! - `queues.<queue>.<key>` (or `vhosts.<vhost>.queues.<queue>.<key>` with
//!   `vhosts` set): every number of the queue's columns
//!   ([`api::QUEUE_COLUMNS`]), `message_stats.*` totals and the broker's
//!   own `*_details.rate`, as Diamond published them, and the totals again
//!   as counters under `message_stats_per_sec.*` for the agent's rates;
//! - `exchanges.<exchange>.message_stats.*` (publish in and out);
//! - every number of `/api/overview` (object and queue totals, message
//!   rates), `health.*` of the node the API runs on, `cluster.*`.
//!
//! Queues and exchanges are read a page at a time ([`api::Api`]), so a
//! broker with ten thousand queues costs time linear in them and memory of
//! one page.
//!
//! The README of this crate lists the options and every name with its unit.
#![warn(missing_docs)]

/// The commented sample configuration of this crate's collector
/// ([`carat_collector::sample`]).
pub const SAMPLE: &str = include_str!("../sample.toml");

mod amqp;
pub mod api;
pub mod publish;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use carat_collector::http::{check_tls_ca_file, parse_url, HttpClient};
use carat_collector::options::{self, Filter, Patterns, SecondsRange};
use carat_collector::{Batch, Collector, CollectorError, Environment};
use serde::Deserialize;
use serde_json::{Map, Value};

use amqp::AmqpSource;
use api::Api;
use publish::{number, publish_object, NameRules};

/// Options of the `rabbitmq` collector.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RabbitmqConfig {
    /// The management API, `http://host:15672` (or `https://`; `/api` is
    /// added), or a broker without it, `amqp://host:5672/<vhost>` (AMQP
    /// mode: `queues` only).
    pub url: String,
    /// User of the management API (it needs the `monitoring` tag).
    pub username: Option<String>,
    /// Its password; write `"${RABBITMQ_PASSWORD}"` to keep it out of the file.
    pub password: Option<String>,
    /// Time allowed for each request, from connecting to the last byte.
    #[serde(deserialize_with = "options::duration::deserialize")]
    pub request_timeout: Duration,
    /// Verify an https URL's certificate.
    pub verify_tls: bool,
    /// Verify against the CA certificates of this PEM file instead of the
    /// system's.
    pub tls_ca_file: Option<PathBuf>,
    /// Read the queues and exchanges of the virtual hosts whose name matches
    /// one of these regexes, and publish them under `vhosts.<vhost>.`; when
    /// empty, those of every virtual host, under `queues.` and `exchanges.`
    /// (Diamond's names without `vhosts`).
    pub vhosts: Patterns,
    /// Diamond's `queues`: only the queues of these exact names. Required
    /// in AMQP mode, which can only ask for queues by name.
    #[serde(deserialize_with = "options::one_or_many")]
    pub queues: Vec<String>,
    /// Publish only the queues whose name matches one of these regexes.
    pub queues_include: Patterns,
    /// Leave out the queues whose name matches one of these regexes.
    pub queues_exclude: Patterns,
    /// Publish exchanges' message rates.
    pub exchanges: bool,
    /// Publish only the exchanges whose name matches one of these regexes.
    pub exchanges_include: Patterns,
    /// Leave out the exchanges whose name matches one of these regexes.
    pub exchanges_exclude: Patterns,
    /// Diamond's `replace_dot`: put this in place of each `.` of a queue,
    /// exchange or vhost name (otherwise the dot becomes `_`).
    pub replace_dot: Option<String>,
    /// Diamond's `replace_slash`: the same for `/`.
    pub replace_slash: Option<String>,
    /// Queues and exchanges asked for per request (1 to 500).
    pub page_size: u32,
    /// The largest answer accepted, in bytes.
    pub max_body_bytes: u64,
}

/// The `request_timeout` accepted: more than 0, at most 10 minutes.
pub const REQUEST_TIMEOUT_RANGE: SecondsRange = SecondsRange::above(0.0, 600.0);

/// The largest `page_size` (the management plugin's own limit).
pub const MAX_PAGE_SIZE: u32 = 500;

impl Default for RabbitmqConfig {
    fn default() -> Self {
        RabbitmqConfig {
            url: "http://127.0.0.1:15672".into(),
            username: Some("guest".into()),
            password: Some("guest".into()),
            request_timeout: Duration::from_secs(5),
            verify_tls: true,
            tls_ca_file: None,
            vhosts: Patterns::default(),
            queues: Vec::new(),
            queues_include: Patterns::default(),
            queues_exclude: Patterns::default(),
            exchanges: true,
            exchanges_include: Patterns::default(),
            exchanges_exclude: Patterns::default(),
            replace_dot: None,
            replace_slash: None,
            page_size: 100,
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

impl fmt::Debug for RabbitmqConfig {
    /// Like a derived `Debug`, with the password hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitmqConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("request_timeout", &self.request_timeout)
            .field("verify_tls", &self.verify_tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("vhosts", &self.vhosts)
            .field("queues", &self.queues)
            .field("queues_include", &self.queues_include)
            .field("queues_exclude", &self.queues_exclude)
            .field("exchanges", &self.exchanges)
            .field("exchanges_include", &self.exchanges_include)
            .field("exchanges_exclude", &self.exchanges_exclude)
            .field("replace_dot", &self.replace_dot)
            .field("replace_slash", &self.replace_slash)
            .field("page_size", &self.page_size)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

/// The node's numbers published under `health.`: those of `/api/nodes`.
pub const HEALTH_KEYS: [&str; 13] = [
    "fd_used",
    "fd_total",
    "sockets_used",
    "sockets_total",
    "mem_used",
    "mem_limit",
    "mem_alarm",
    "disk_free",
    "disk_free_limit",
    "disk_free_alarm",
    "proc_used",
    "proc_total",
    "running",
];

/// Where the collector reads the broker.
enum Source {
    Api(ApiSource),
    Amqp(AmqpSource),
}

/// The management API, with what selects its queues and exchanges.
struct ApiSource {
    api: Api,
    /// Empty: every vhost, without a `vhosts.` prefix.
    vhosts: Patterns,
    queues: Filter,
    exchanges: Option<Filter>,
}

/// The `rabbitmq` collector. See the [crate documentation](crate).
pub struct Rabbitmq {
    source: Source,
    names: NameRules,
}

impl Collector for Rabbitmq {
    type Config = RabbitmqConfig;
    const KIND: &'static str = "rabbitmq";
    const DESCRIPTION: &'static str =
        "RabbitMQ queues, exchanges, node health and cluster from the management API";
    const DEFAULT_PATH: &'static str = "rabbitmq";
    const SAMPLE: &'static str = crate::SAMPLE;

    fn new(config: RabbitmqConfig, _env: &Environment) -> Result<Self, CollectorError> {
        let timeout =
            REQUEST_TIMEOUT_RANGE.check_option("request_timeout", config.request_timeout)?;
        if !(1..=MAX_PAGE_SIZE).contains(&config.page_size) {
            return Err(CollectorError::option(
                "page_size",
                format!("must be 1 to {MAX_PAGE_SIZE} (the management plugin's limit)"),
            ));
        }
        if config.max_body_bytes == 0 {
            return Err(CollectorError::option(
                "max_body_bytes",
                "must be at least 1",
            ));
        }
        let names = NameRules {
            replace_dot: config.replace_dot.clone(),
            replace_slash: config.replace_slash.clone(),
        };
        let scheme = config.url.trim_start().split("://").next().unwrap_or("");
        if scheme.eq_ignore_ascii_case("amqp") || scheme.eq_ignore_ascii_case("amqps") {
            if !config.vhosts.is_empty() {
                return Err(CollectorError::option(
                    "vhosts",
                    "AMQP mode reads the vhost of its url (amqp://host:5672/<vhost>)",
                ));
            }
            let source = AmqpSource::new(
                &config.url,
                config.username.as_deref(),
                config.password.as_deref(),
                config.queues,
                timeout,
            )?;
            return Ok(Rabbitmq {
                source: Source::Amqp(source),
                names,
            });
        }
        let url = parse_url("url", &config.url)?;
        check_tls_ca_file(&url, config.tls_ca_file.as_deref())?;
        let client = HttpClient::builder()
            .basic_auth(config.username.as_deref(), config.password.as_deref())
            .verify_tls(config.verify_tls)
            .tls_ca_file(config.tls_ca_file.as_deref())
            .timeout(timeout)
            .max_body_bytes(usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX))
            .user_agent(concat!("carat-rabbitmq/", env!("CARGO_PKG_VERSION")))
            .accept("application/json")
            .hint(
                401,
                "check username and password; the user needs the monitoring (or management) tag",
            )
            .hint(
                404,
                "check the url: the management plugin's, e.g. http://host:15672",
            )
            .build()?;
        // Diamond's `queues`, exact names, joined to the include regexes.
        let queues_include = if config.queues.is_empty() {
            config.queues_include
        } else {
            let exact = config
                .queues
                .iter()
                .map(|q| format!("^{}$", regex::escape(q)));
            Patterns::new(config.queues_include.sources().iter().cloned().chain(exact))
                .map_err(|e| CollectorError::option("queues", e))?
        };
        Ok(Rabbitmq {
            source: Source::Api(ApiSource {
                api: Api::new(url, client, config.page_size),
                vhosts: config.vhosts,
                queues: Filter::new(queues_include, config.queues_exclude),
                exchanges: config
                    .exchanges
                    .then(|| Filter::new(config.exchanges_include, config.exchanges_exclude)),
            }),
            names,
        })
    }

    async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        match &mut self.source {
            Source::Api(source) => source.collect(&self.names, batch).await,
            Source::Amqp(amqp) => {
                let result = amqp.collect(&self.names, batch).await;
                batch.stamp_now();
                result
            }
        }
    }
}

impl ApiSource {
    /// The overview, the node's health, and the queues and exchanges of
    /// the vhosts selected.
    async fn collect(
        &mut self,
        names: &NameRules,
        batch: &mut Batch,
    ) -> Result<(), CollectorError> {
        let overview = self.api.object("overview").await?;
        // The values are as of now, not as of when the run was scheduled.
        batch.stamp_now();
        publish_object(&overview, "", &[], batch);
        let nodes = self.api.list("nodes").await?;
        let node = overview.get("node").and_then(Value::as_str);
        publish_health(&nodes, node, batch);
        if self.vhosts.is_empty() {
            return self.publish_listings("", "", names, batch).await;
        }
        let mut vhosts = api::vhost_names(&self.api.list("vhosts").await?);
        vhosts.retain(|v| self.vhosts.is_match(v));
        for vhost in &vhosts {
            let mut prefix = String::from("vhosts.");
            names.push(&mut prefix, vhost);
            let scope = format!("/{}", api::path_segment(vhost));
            self.publish_listings(&scope, &prefix, names, batch).await?;
        }
        Ok(())
    }

    /// The queues (and exchanges) of `/api/queues<scope>` under
    /// `<prefix>.queues.` (`<prefix>.exchanges.`).
    async fn publish_listings(
        &mut self,
        scope: &str,
        prefix: &str,
        names: &NameRules,
        batch: &mut Batch,
    ) -> Result<(), CollectorError> {
        let ApiSource {
            api,
            queues,
            exchanges,
            ..
        } = self;
        let mut name = String::new();
        api.each_page(&format!("queues{scope}"), api::QUEUE_COLUMNS, |items| {
            publish_items(items, prefix, "queues", queues, names, &mut name, batch)
        })
        .await?;
        if let Some(exchanges) = exchanges {
            api.each_page(
                &format!("exchanges{scope}"),
                api::EXCHANGE_COLUMNS,
                |items| {
                    publish_items(
                        items,
                        prefix,
                        "exchanges",
                        exchanges,
                        names,
                        &mut name,
                        batch,
                    )
                },
            )
            .await?;
        }
        Ok(())
    }
}

/// Adds the items of one page (queues or exchanges) that `filter` allows,
/// each under `<prefix>.<kind>.<name>`; `name` is a buffer kept between
/// calls. Public for the benchmark.
pub fn publish_items(
    items: &[Map<String, Value>],
    prefix: &str,
    kind: &str,
    filter: &Filter,
    names: &NameRules,
    name: &mut String,
    batch: &mut Batch,
) {
    for item in items {
        let Some(raw) = item.get("name").and_then(Value::as_str) else {
            continue;
        };
        if !filter.allows(raw) {
            continue;
        }
        name.clear();
        if !prefix.is_empty() {
            name.push_str(prefix);
            name.push('.');
        }
        name.push_str(kind);
        name.push('.');
        names.push(name, raw);
        publish_object(item, name, &["name", "vhost"], batch);
    }
}

/// Adds `health.*` of the node named `node` (the one the API runs on), and
/// `cluster.nodes`, `cluster.nodes_running` and `cluster.partitions`.
pub fn publish_health(nodes: &[Map<String, Value>], node: Option<&str>, batch: &mut Batch) {
    batch.gauge("cluster.nodes", nodes.len() as f64);
    let running = nodes
        .iter()
        .filter(|n| n.get("running").and_then(Value::as_bool) == Some(true))
        .count();
    batch.gauge("cluster.nodes_running", running as f64);
    let this = nodes
        .iter()
        .find(|n| n.get("name").and_then(Value::as_str) == node)
        .or_else(|| nodes.first().filter(|_| nodes.len() == 1));
    let Some(this) = this else { return };
    let mut name = String::new();
    for key in HEALTH_KEYS {
        if let Some(value) = number(this, key) {
            name.clear();
            name.push_str("health.");
            name.push_str(key);
            batch.gauge(&name, value);
        }
    }
    if let Some(partitions) = this.get("partitions").and_then(Value::as_array) {
        batch.gauge("health.partitions", partitions.len() as f64);
        batch.gauge("cluster.partitions", partitions.len() as f64);
    }
}

#[cfg(test)]
mod tests;
