//! The options of the `sql` collector, and their checks at load time.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use carat_collector::options::{self, SecondsRange};
use carat_collector::redact::redact_url;
use carat_collector::CollectorError;
use serde::Deserialize;

/// Options of the `sql` collector: one database and the queries run on it.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SqlConfig {
    /// The database: `postgres://user@host:5432/db`,
    /// `mysql://user@host:3306/db` (MySQL or MariaDB, also `mariadb://`),
    /// or `sqlite:///path/to/file.db`. A password may be written in the
    /// URL, but `password` or `password_file` keep it out of it.
    pub url: String,
    /// The password; write `"${DB_PASSWORD}"` to keep it out of the file.
    pub password: Option<String>,
    /// A file holding the password (its first line), read at each
    /// connect, so a new password is used from the next reconnect on.
    pub password_file: Option<PathBuf>,
    /// Time allowed to connect (TCP, TLS and login).
    #[serde(deserialize_with = "options::duration::deserialize")]
    pub connect_timeout: Duration,
    /// Time each query may run, unless the query sets its own `timeout`.
    #[serde(deserialize_with = "options::duration::deserialize")]
    pub query_timeout: Duration,
    /// Connections kept open to the database; the queries are shared out
    /// among them and run in parallel.
    pub max_connections: u32,
    /// The most rows a query may return; a query returning more fails.
    pub max_rows: u32,
    /// The queries.
    pub query: Vec<QueryConfig>,
}

/// One query: `[[collector.sql.<instance>.query]]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// Where its numbers are published, below the instance's path: a
    /// dotted path (`jobs.by_status`).
    pub name: String,
    /// The query. Its columns say what is published (see the README).
    pub sql: String,
    /// Its numbers are counters: the agent publishes their rate per second.
    #[serde(default)]
    pub counter: bool,
    /// Time it may run (default: the instance's `query_timeout`).
    #[serde(default, deserialize_with = "options::duration::deserialize_optional")]
    pub timeout: Option<Duration>,
}

impl QueryConfig {
    /// A query named `name` (a dotted path) running `sql`, publishing
    /// gauges, with the instance's timeout.
    pub fn new(name: impl Into<String>, sql: impl Into<String>) -> Self {
        QueryConfig {
            name: name.into(),
            sql: sql.into(),
            counter: false,
            timeout: None,
        }
    }
}

impl Default for SqlConfig {
    fn default() -> Self {
        SqlConfig {
            url: String::new(),
            password: None,
            password_file: None,
            connect_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(10),
            max_connections: 1,
            max_rows: 10_000,
            query: Vec::new(),
        }
    }
}

impl fmt::Debug for SqlConfig {
    /// Like a derived `Debug`, with the password (in `password` or in the
    /// URL) hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlConfig")
            .field("url", &redact_url(&self.url))
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("password_file", &self.password_file)
            .field("connect_timeout", &self.connect_timeout)
            .field("query_timeout", &self.query_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_rows", &self.max_rows)
            .field("query", &self.query)
            .finish()
    }
}

/// The `connect_timeout` accepted.
pub const CONNECT_TIMEOUT_RANGE: SecondsRange = SecondsRange::above(0.0, 600.0);
/// A query's `timeout` (and `query_timeout`) accepted: at least 1 ms (the
/// unit of the servers' own limits), at most an hour.
pub const QUERY_TIMEOUT_RANGE: SecondsRange = SecondsRange::new(0.001, 3600.0);
/// The most connections an instance may keep.
pub const MAX_CONNECTIONS: u32 = 16;

/// A query, checked: what a run needs of it.
#[derive(Debug)]
pub struct Query {
    /// The components of its `name`, sanitised.
    pub path: Vec<String>,
    /// Its name as configured, for messages (`query jobs_by_status`).
    pub part: String,
    /// Its text, shared with the driver without a copy per run.
    pub sql: Arc<str>,
    /// Publish counters (rates) rather than gauges.
    pub counter: bool,
    /// Time it may run.
    pub timeout: Duration,
}

/// The options, checked: what a run needs of them. (The `password` goes
/// into the connection options and the messages' scrubbing when the
/// collector is built.)
#[derive(Debug)]
pub struct Checked {
    /// `password_file`, if set.
    pub password_file: Option<PathBuf>,
    /// See [`SqlConfig::connect_timeout`].
    pub connect_timeout: Duration,
    /// See [`SqlConfig::max_connections`].
    pub connections: usize,
    /// See [`SqlConfig::max_rows`].
    pub max_rows: usize,
    /// The queries, in the order of the configuration.
    pub queries: Vec<Query>,
}

impl SqlConfig {
    /// Checks every option, naming the first that cannot work.
    pub fn check(&self) -> Result<Checked, CollectorError> {
        let connect_timeout =
            CONNECT_TIMEOUT_RANGE.check_option("connect_timeout", self.connect_timeout)?;
        let query_timeout =
            QUERY_TIMEOUT_RANGE.check_option("query_timeout", self.query_timeout)?;
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            return Err(CollectorError::option(
                "max_connections",
                format!(
                    "{} is not between 1 and {MAX_CONNECTIONS}",
                    self.max_connections
                ),
            ));
        }
        if self.max_rows == 0 {
            return Err(CollectorError::option("max_rows", "must be at least 1"));
        }
        if self.password.is_some() && self.password_file.is_some() {
            return Err(CollectorError::option(
                "password_file",
                "set either password or password_file, not both",
            ));
        }
        if self.query.is_empty() {
            return Err(CollectorError::option(
                "query",
                "no queries: add at least one [[collector.sql.<instance>.query]] table with a name and its sql",
            ));
        }
        let mut queries: Vec<Query> = Vec::with_capacity(self.query.len());
        for (i, q) in self.query.iter().enumerate() {
            let query = q.check(i, query_timeout)?;
            if let Some(other) = queries.iter().position(|o| o.path == query.path) {
                return Err(CollectorError::option(
                    format!("query.{i}.name"),
                    format!(
                        "{:?} publishes at the same path as query {other}'s name {:?}",
                        q.name, self.query[other].name
                    ),
                ));
            }
            queries.push(query);
        }
        Ok(Checked {
            password_file: self.password_file.clone(),
            connect_timeout,
            connections: self.max_connections as usize,
            max_rows: self.max_rows as usize,
            queries,
        })
    }
}

impl QueryConfig {
    /// Checks the `index`th query.
    fn check(&self, index: usize, default_timeout: Duration) -> Result<Query, CollectorError> {
        let option = |field: &str| format!("query.{index}.{field}");
        let path: Vec<String> = self
            .name
            .split('.')
            .filter(|c| !c.is_empty())
            .map(carat_collector::name::component)
            .collect();
        if path.is_empty() {
            return Err(CollectorError::option(
                option("name"),
                "every query needs a name: the path its numbers are published at (`jobs.by_status`)",
            ));
        }
        if self.sql.trim().is_empty() {
            return Err(CollectorError::option(option("sql"), "the query is empty"));
        }
        let timeout = match self.timeout {
            Some(t) => QUERY_TIMEOUT_RANGE.check_option(&option("timeout"), t)?,
            None => default_timeout,
        };
        Ok(Query {
            part: format!("query {}", self.name),
            path,
            sql: Arc::from(self.sql.trim()),
            counter: self.counter,
            timeout,
        })
    }
}

/// The largest password file read.
const MAX_PASSWORD_FILE_BYTES: usize = 64 * 1024;

/// The password in the first line of `file` (a trailing newline, as an
/// editor or `echo` leaves it, is not part of it).
pub fn read_password_file(file: &Path) -> Result<String, CollectorError> {
    let mut bytes = Vec::new();
    carat_collector::input::read_file_capped(file, &mut bytes, MAX_PASSWORD_FILE_BYTES)?;
    let origin = || format!("password_file {}", file.display());
    let text =
        String::from_utf8(bytes).map_err(|_| CollectorError::parse(origin(), "not UTF-8 text"))?;
    match text.lines().next() {
        Some(password) if !password.is_empty() => Ok(password.to_owned()),
        _ => Err(CollectorError::parse(
            origin(),
            "empty: its first line is the password",
        )),
    }
}
