//! The `mongodb` collector: a MongoDB server's `serverStatus` (and, when
//! asked, `dbStats`, `collStats` and `replSetGetStatus`), under the names of
//! Diamond's `MongoDBCollector`, with rates of its counters and the share of
//! each interval spent locked or waiting for a lock.
//!
//! - Every numeric leaf of `serverStatus` is published under its dotted path
//!   ([`leaves`]): `connections.current`, `globalLock.currentQueue.total`,
//!   `wiredTiger.cache.bytes_currently_in_the_cache`.
//! - The counters of `opcounters`, `opcountersRepl`, `network`, `asserts`,
//!   `extra_info.page_faults` and `backgroundFlushing.flushes` are also
//!   published as rates per second (`opcounters_per_sec.insert`), by the
//!   agent's rate rules ([`derived::publish_counters`]).
//! - Interval percentages from two readings of the server's own totals
//!   ([`derived::Intervals`]): Diamond's `percent.globalLock.lockTime`,
//!   `percent.indexCounters.btree.misses` and `percent.locks.<db>.read|write`
//!   (MMAPv1), and for 3.0 and later `percent.locks_wait.<resource>.<mode>`.
//! - WiredTiger's cache fill and tickets ([`derived::publish_wiredtiger`]).
//!
//! The collector talks to the server with the official driver, one client
//! per server, built at the first run and kept. The driver speaks to
//! MongoDB 4.4 and later only.
//!
//! The README of this crate lists the options and every name with its unit.
#![warn(missing_docs)]

/// The commented sample configuration of this crate's collector
/// ([`carat_collector::sample`]): every option with its default. The agent
/// assembles `carat sample-config` from it.
pub const SAMPLE: &str = include_str!("../sample.toml");

pub mod derived;
pub mod leaves;
pub mod replica;
mod server;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use carat_collector::options::{self, Patterns, SecondsRange};
use carat_collector::{Batch, Collector, CollectorError, Environment};
use mongodb::bson::{doc, Document};
use serde::Deserialize;

use leaves::{KeyStyle, Walk};
use server::Server;

/// Options of the `mongodb` collector.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MongodbConfig {
    /// A connection string (`mongodb://…` or `mongodb+srv://…`). Exclusive
    /// with `hosts`.
    pub uri: Option<String>,
    /// Servers as Diamond listed them: `host[:port]` or
    /// `alias@host[:port]`, each read on its own. With more than one, each
    /// publishes under its alias, or its host with `.` and `:` as `_`.
    /// Default: `localhost:27017` when `uri` is not set either.
    #[serde(deserialize_with = "options::string_list")]
    pub hosts: Vec<String>,
    /// User to authenticate as.
    pub username: Option<String>,
    /// Its password; write `"${MONGODB_PASSWORD}"` to keep it out of the file.
    pub password: Option<String>,
    /// The database the user is defined in (the driver's default: `admin`).
    pub auth_source: Option<String>,
    /// Connect with TLS.
    pub tls: bool,
    /// Verify the server's certificate against the CA certificates of this
    /// PEM file instead of the driver's built-in roots (with `tls = true`,
    /// or a `uri` that turns TLS on).
    pub tls_ca_file: Option<PathBuf>,
    /// Accept any certificate and host name (the connection is still
    /// encrypted).
    pub tls_insecure: bool,
    /// Read the member the address names, never another member of its
    /// replica set. Default: true for one host, false for a `uri` that lists
    /// several.
    pub direct_connection: Option<bool>,
    /// Time allowed for finding the server, connecting, and each command.
    #[serde(deserialize_with = "options::duration::deserialize")]
    pub request_timeout: Duration,
    /// Publish only the sections of `serverStatus` mongostat reads
    /// ([`SIMPLE_SECTIONS`]); rates and percentages are published either way.
    pub simple: bool,
    /// `dbStats` for each database whose name matches one of these regexes
    /// (searched anywhere in the name); none when empty.
    pub databases: Patterns,
    /// Also `collStats` for each collection of those databases.
    pub collection_stats: bool,
    /// Leave out collections whose name matches one of these regexes.
    pub ignore_collections: Patterns,
    /// Diamond's `replace_dashes_in_metric_keys`: a `-` in a key becomes `.`.
    pub replace_dashes: bool,
    /// Also the replica set's state (`replSetGetStatus`).
    pub replica: bool,
}

/// The sections of `serverStatus` published with `simple = true`:
/// Diamond's simple set (`connections`, `globalLock`, `indexCounters`) and
/// the other sections mongostat's columns come from.
pub const SIMPLE_SECTIONS: [&str; 9] = [
    "connections",
    "globalLock",
    "indexCounters",
    "opcounters",
    "opcountersRepl",
    "mem",
    "network",
    "backgroundFlushing",
    "extra_info",
];

/// The `request_timeout` accepted: more than 0, at most 10 minutes.
pub const REQUEST_TIMEOUT_RANGE: SecondsRange = SecondsRange::above(0.0, 600.0);

/// The server read when neither `uri` nor `hosts` is set (Diamond's).
pub const DEFAULT_HOST: &str = "localhost:27017";

impl Default for MongodbConfig {
    fn default() -> Self {
        MongodbConfig {
            uri: None,
            hosts: Vec::new(),
            username: None,
            password: None,
            auth_source: None,
            tls: false,
            tls_ca_file: None,
            tls_insecure: false,
            direct_connection: None,
            request_timeout: Duration::from_secs(5),
            simple: false,
            databases: Patterns::default(),
            collection_stats: false,
            // Diamond's: the temporary collections of map-reduce.
            ignore_collections: Patterns::new([r"^tmp\.mr\."]).unwrap_or_default(),
            replace_dashes: true,
            replica: false,
        }
    }
}

impl fmt::Debug for MongodbConfig {
    /// Like a derived `Debug`, with the password (and the uri's) hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongodbConfig")
            .field(
                "uri",
                &self.uri.as_deref().map(carat_collector::redact::redact_url),
            )
            .field("hosts", &self.hosts)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("auth_source", &self.auth_source)
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_insecure", &self.tls_insecure)
            .field("direct_connection", &self.direct_connection)
            .field("request_timeout", &self.request_timeout)
            .field("simple", &self.simple)
            .field("databases", &self.databases)
            .field("collection_stats", &self.collection_stats)
            .field("ignore_collections", &self.ignore_collections)
            .field("replace_dashes", &self.replace_dashes)
            .field("replica", &self.replica)
            .finish()
    }
}

/// The `mongodb` collector. See the [crate documentation](crate).
pub struct Mongodb {
    servers: Vec<Server>,
    config: MongodbConfig,
    style: KeyStyle,
    walk: Walk,
    warned_too_deep: bool,
}

impl Collector for Mongodb {
    type Config = MongodbConfig;
    const KIND: &'static str = "mongodb";
    const DESCRIPTION: &'static str =
        "MongoDB serverStatus, with rates and the lock ratio over each interval; dbStats, collStats, replica set";
    const DEFAULT_PATH: &'static str = "mongo";
    const SAMPLE: &'static str = crate::SAMPLE;

    fn new(config: MongodbConfig, _env: &Environment) -> Result<Self, CollectorError> {
        let timeout =
            REQUEST_TIMEOUT_RANGE.check_option("request_timeout", config.request_timeout)?;
        if config.password.is_some() && config.username.is_none() {
            return Err(CollectorError::option(
                "password",
                "a password needs a username",
            ));
        }
        // A uri may turn TLS on itself (`tls=true`, and `mongodb+srv://`
        // by default); `hosts` only with `tls = true`.
        if !config.tls && config.uri.is_none() {
            for (option, set) in [
                ("tls_ca_file", config.tls_ca_file.is_some()),
                ("tls_insecure", config.tls_insecure),
            ] {
                if set {
                    return Err(CollectorError::option(
                        option,
                        format!("{option} applies when TLS is on: set tls = true"),
                    ));
                }
            }
        }
        if config.tls_insecure && config.tls_ca_file.is_some() {
            return Err(CollectorError::option(
                "tls_ca_file",
                "tls_insecure = true checks no certificate: set one of tls_ca_file and tls_insecure",
            ));
        }
        if config.collection_stats && config.databases.is_empty() {
            return Err(CollectorError::option(
                "collection_stats",
                "collection_stats reads the collections of the databases that `databases` selects, \
                 and it selects none: set databases (\".*\" for all)",
            ));
        }
        // Checked: the servers are given the configuration as it is.
        let config = MongodbConfig {
            request_timeout: timeout,
            ..config
        };
        let servers =
            match (&config.uri, config.hosts.as_slice()) {
                (Some(_), [_, ..]) => return Err(CollectorError::option(
                    "hosts",
                    "set either uri or hosts, not both (the options of [collector.mongodb] are \
                     defaults for its named instances: one of them may come from there)",
                )),
                (Some(uri), []) => vec![Server::from_uri(uri, &config)?],
                (None, []) => vec![Server::from_host(DEFAULT_HOST, true)?],
                (None, hosts) => {
                    let alone = hosts.len() == 1;
                    let servers = hosts
                        .iter()
                        .map(|h| Server::from_host(h, alone))
                        .collect::<Result<Vec<_>, _>>()?;
                    if config.direct_connection == Some(false) {
                        return Err(CollectorError::option(
                            "direct_connection",
                            "each entry of hosts is read on its own: direct_connection = false \
                         applies to a uri that lists a replica set's members",
                        ));
                    }
                    check_prefixes_differ(&servers)?;
                    servers
                }
            };
        Ok(Mongodb {
            servers,
            style: KeyStyle {
                replace_dashes: config.replace_dashes,
            },
            config,
            walk: Walk::default(),
            warned_too_deep: false,
        })
    }

    async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        let mut failures: Vec<(usize, CollectorError)> = Vec::new();
        for i in 0..self.servers.len() {
            if let Err(e) = self.collect_server(i, batch).await {
                failures.push((i, e));
            }
        }
        if self.walk.too_deep > 0 && !self.warned_too_deep {
            self.warned_too_deep = true;
            tracing::warn!(
                "mongodb: {} sub-documents nested deeper than {} levels were not published",
                self.walk.too_deep,
                leaves::MAX_DEPTH
            );
        }
        // When every server failed, so does the run (with the first error,
        // and the agent backs off). Otherwise what the others gave is
        // published, and each server that failed is a failed part of the
        // run: counted and logged once per burst, without delaying the
        // servers that answer.
        if failures.len() == self.servers.len() {
            return match failures.into_iter().next() {
                Some((_, first)) => Err(first),
                None => Ok(()),
            };
        }
        for (i, e) in failures {
            batch.fail_part(format!("server {}", self.servers[i].display), e);
        }
        Ok(())
    }
}

impl Mongodb {
    /// Reads server `i` into `batch`: `serverStatus`, then what the options
    /// ask for.
    async fn collect_server(&mut self, i: usize, batch: &mut Batch) -> Result<(), CollectorError> {
        let Mongodb {
            servers,
            config,
            style,
            walk,
            ..
        } = self;
        let server = &mut servers[i];
        let status = server
            .command("admin", doc! { "serverStatus": 1 }, "serverStatus", config)
            .await?;
        // The values are as of now, not as of when the run was scheduled.
        batch.stamp_now();
        let prefix = server.prefix.clone();
        publish_status(&status, &prefix, config, *style, walk, batch);
        server.intervals.publish(&status, &prefix, batch);
        if config.replica {
            let answer = server
                .command(
                    "admin",
                    doc! { "replSetGetStatus": 1 },
                    "replSetGetStatus",
                    config,
                )
                .await?;
            replica::publish(&answer, &prefix, batch).map_err(|e| {
                CollectorError::parse(&server.display, format!("replSetGetStatus: {e}"))
            })?;
        }
        if !config.databases.is_empty() {
            publish_databases(server, &prefix, config, *style, walk, batch).await?;
        }
        Ok(())
    }
}

/// Adds `dbStats` of each database `databases` selects, and with
/// `collection_stats` the `collStats` of each of its collections.
async fn publish_databases(
    server: &mut Server,
    prefix: &str,
    config: &MongodbConfig,
    style: KeyStyle,
    walk: &mut Walk,
    batch: &mut Batch,
) -> Result<(), CollectorError> {
    let names = server.database_names(config).await?;
    for db in names.iter().filter(|n| config.databases.is_match(n)) {
        let what = format!("dbStats on {db}");
        let stats = server
            .command(db, doc! { "dbStats": 1 }, &what, config)
            .await?;
        let db_prefix = join_prefix(prefix, &["databases", db]);
        walk.publish(&stats, &db_prefix, style, batch);
        if !config.collection_stats {
            continue;
        }
        let collections = server.collection_names(db, config).await?;
        for coll in collections
            .iter()
            .filter(|c| !config.ignore_collections.is_match(c))
        {
            let what = format!("collStats on {db}.{coll}");
            let stats = server
                .command(db, doc! { "collStats": coll.as_str() }, &what, config)
                .await?;
            // Diamond's: a dot in a collection's name separates path
            // components, like the dots of the keys.
            walk.publish(&stats, &format!("{db_prefix}.{coll}"), style, batch);
        }
    }
    Ok(())
}

/// Adds what one `serverStatus` gives (its leaves, the counters for rates,
/// the WiredTiger percentages) to `batch` under `prefix`; the interval
/// percentages are [`derived::Intervals`]'s. Public for the benchmark.
pub fn publish_status(
    status: &Document,
    prefix: &str,
    config: &MongodbConfig,
    style: KeyStyle,
    walk: &mut Walk,
    batch: &mut Batch,
) {
    if config.simple {
        walk.publish_only(status, &SIMPLE_SECTIONS, prefix, style, batch);
    } else {
        walk.publish(status, prefix, style, batch);
    }
    derived::publish_counters(status, prefix, batch);
    derived::publish_wiredtiger(status, prefix, batch);
}

/// `prefix` and `parts` joined with dots, `prefix` left out when empty.
/// Each part is one component (a database's name keeps no dot).
fn join_prefix(prefix: &str, parts: &[&str]) -> String {
    let mut out = prefix.to_owned();
    for part in parts {
        if !out.is_empty() {
            out.push('.');
        }
        carat_collector::name::push_component(&mut out, part);
    }
    out
}

/// Two servers of `hosts` publishing under the same prefix would mix their
/// values in one series.
fn check_prefixes_differ(servers: &[Server]) -> Result<(), CollectorError> {
    for (i, a) in servers.iter().enumerate() {
        if let Some(b) = servers[i + 1..].iter().find(|b| b.prefix == a.prefix) {
            return Err(CollectorError::option(
                "hosts",
                format!(
                    "{} and {} would both publish under {:?}: give them different aliases (alias@host:port)",
                    a.display, b.display, a.prefix
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
