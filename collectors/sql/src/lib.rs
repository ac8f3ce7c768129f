//! The `sql` collector: numbers from your own queries on PostgreSQL,
//! MySQL/MariaDB or SQLite — jobs by status, the age of the oldest pending
//! job, rows per state — published under the names the queries give.
//!
//! Each instance is one database (`url`) and its queries
//! (`[[collector.sql.<instance>.query]]`). A query's columns decide what it
//! publishes ([`table::publish`]): one column is one number at the query's
//! `name`; a name column and a number, one number per row at
//! `<name>.<row name>`; a name column and several numbers,
//! `<name>.<row name>.<column>`.
//!
//! Every query runs read-only (a `READ ONLY` transaction, or a SQLite file
//! opened read-only) and is cancelled by the database itself after its
//! timeout (`statement_timeout`, `max_statement_time`,
//! `max_execution_time`, a SQLite progress handler), with the agent's own
//! timer behind it. A query that fails is reported as a failed part of the
//! run ([`carat_collector::Batch::fail_part`]): the other queries publish,
//! and the instance is not backed off. A database that cannot be reached
//! fails the run, and the agent retries it with backoff.
//!
//! Connections (`max_connections`, one by default) stay open between runs;
//! each run checks them first and opens again those the server closed.
//!
//! The README of this crate lists the options and the names.
#![warn(missing_docs)]

/// The commented sample configuration of this crate's collector
/// ([`carat_collector::sample`]).
pub const SAMPLE: &str = include_str!("../sample.toml");

pub mod config;
pub mod database;
mod decode;
mod errors;
mod mysql;
mod postgres;
mod sqlite;
pub mod table;

use std::time::Duration;

use carat_collector::redact::redact_url;
use carat_collector::{Batch, Collector, CollectorError, Environment};
use futures_util::future::join_all;

use config::{Checked, Query};
pub use config::{QueryConfig, SqlConfig};
use database::{Connection, Options, RunError};
use errors::Context;
use table::Table;

/// How long the agent waits past a query's timeout for the database's own
/// cancellation to arrive, before it gives up on the connection: the
/// server's answer ("cancelled after its timeout") is the clearer one.
const CANCEL_GRACE: Duration = Duration::from_secs(1);

/// The `sql` collector. See the [crate documentation](crate).
pub struct Sql {
    options: Options,
    settings: Checked,
    /// The URL with its password replaced, and the password, for messages.
    context: Context,
    /// The connections, open or not (yet).
    connections: Vec<Option<Connection>>,
}

impl Collector for Sql {
    type Config = SqlConfig;
    const KIND: &'static str = "sql";
    const DESCRIPTION: &'static str =
        "Numbers from your own read-only queries on PostgreSQL, MySQL/MariaDB or SQLite";
    const DEFAULT_PATH: &'static str = "sql";
    const SAMPLE: &'static str = crate::SAMPLE;

    fn new(config: SqlConfig, _env: &Environment) -> Result<Self, CollectorError> {
        if config.url.trim().is_empty() {
            return Err(CollectorError::option(
                "url",
                "set the database's URL: postgres://user@host/db, mysql://user@host/db or sqlite:///path/file.db",
            ));
        }
        let settings = config.check()?;
        let options = Options::parse(
            &config.url,
            config.password.as_deref(),
            settings.connect_timeout,
        )?;
        let connections = (0..settings.connections).map(|_| None).collect();
        Ok(Sql {
            options,
            context: Context {
                target: redact_url(&config.url).into_owned(),
                password: config.password,
            },
            settings,
            connections,
        })
    }

    async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        open(
            &mut self.connections,
            &self.options,
            &self.settings,
            &mut self.context,
        )
        .await?;
        let context = &self.context;
        let open_count = self.connections.iter().filter(|c| c.is_some()).count();
        let max_rows = self.settings.max_rows;
        let queries = &self.settings.queries;
        // Queries are dealt out to the open connections in turn; each
        // connection runs its share one after the other.
        let shares = self
            .connections
            .iter_mut()
            .filter(|c| c.is_some())
            .enumerate()
            .map(|(n, slot)| {
                let share = (n..queries.len()).step_by(open_count).collect();
                run_share(slot, queries, share, max_rows)
            });
        let mut results: Vec<(usize, Result<Table, Failure>)> =
            join_all(shares).await.into_iter().flatten().collect();
        results.sort_by_key(|(i, _)| *i);
        let mut lost: Option<CollectorError> = None;
        for (i, result) in results {
            let query = &queries[i];
            let failed = match result {
                Ok(table) => table::publish(query, &table, batch).err(),
                // The agent names the query (the part) in front of it.
                Err(Failure::Query(e)) => {
                    Some(context.query_error(context.target.clone(), &e, query.timeout))
                }
                Err(Failure::ConnectionLost(e)) => {
                    let origin = format!("{}: {}", context.target, query.part);
                    lost.get_or_insert(context.query_error(origin, &e, query.timeout));
                    None
                }
                Err(Failure::NoAnswer) => {
                    lost.get_or_insert(CollectorError::timeout(
                        format!("{}: {}", context.target, query.part),
                        format!(
                            "no answer within its timeout of {:?} and {CANCEL_GRACE:?} more; the connection was closed",
                            query.timeout
                        ),
                    ));
                    None
                }
            };
            if let Some(e) = failed {
                batch.fail_part(query.part.clone(), e);
            }
        }
        // A connection that failed mid-run leaves its remaining queries
        // unrun: the run fails (what the others read is published) and the
        // agent backs off before opening it again.
        match lost {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Checks the open `connections` and opens the others, each within
/// `connect_timeout`, reading `password_file` first when one is to be
/// opened. Fails, with the first reason, when none is open afterwards.
async fn open(
    connections: &mut [Option<Connection>],
    options: &Options,
    settings: &Checked,
    context: &mut Context,
) -> Result<(), CollectorError> {
    let limit = settings.connect_timeout;
    let mut file_password: Option<String> = None;
    let mut first_error: Option<CollectorError> = None;
    for slot in connections.iter_mut() {
        if let Some(conn) = slot {
            match tokio::time::timeout(limit, conn.ping()).await {
                Ok(Ok(())) => continue,
                // The server closed it (a restart) or no longer
                // answers: open another.
                _ => *slot = None,
            }
        }
        if let (Some(file), None) = (&settings.password_file, &file_password) {
            let password = config::read_password_file(file)?;
            // Messages hide this password from now on.
            context.password = Some(password.clone());
            file_password = Some(password);
        }
        let connect = options.connect(file_password.as_deref());
        let error = match tokio::time::timeout(limit, connect).await {
            Ok(Ok(conn)) => {
                *slot = Some(conn);
                continue;
            }
            Ok(Err(e)) => context.connect_error(&e, limit),
            Err(_) => CollectorError::timeout(
                context.target.clone(),
                format!("connecting took more than {limit:?} (connect_timeout)"),
            ),
        };
        first_error.get_or_insert(error);
    }
    match first_error {
        Some(e) if connections.iter().all(Option::is_none) => Err(e),
        _ => Ok(()),
    }
}

/// Why a query gave no table.
enum Failure {
    /// The query failed; the connection is fine.
    Query(RunError),
    /// The connection failed during the query.
    ConnectionLost(RunError),
    /// Neither the database nor the connection answered in time.
    NoAnswer,
}

/// Runs the queries `share` (indexes into `queries`) on the connection in
/// `slot`, one after the other, and closes it (leaving `slot` empty) when
/// it fails; the queries after that are not run.
async fn run_share(
    slot: &mut Option<Connection>,
    queries: &[Query],
    share: Vec<usize>,
    max_rows: usize,
) -> Vec<(usize, Result<Table, Failure>)> {
    let mut results = Vec::with_capacity(share.len());
    for i in share {
        let Some(conn) = slot.as_mut() else { break };
        let query = &queries[i];
        let result =
            match tokio::time::timeout(query.timeout + CANCEL_GRACE, conn.run(query, max_rows))
                .await
            {
                Ok(Ok(table)) => Ok(table),
                Ok(Err(e)) if errors::connection_lost(&e) => {
                    *slot = None;
                    Err(Failure::ConnectionLost(e))
                }
                Ok(Err(e)) => Err(Failure::Query(e)),
                Err(_) => {
                    // The query may still be running: the connection is in an
                    // unknown state and is dropped (closing its socket).
                    *slot = None;
                    Err(Failure::NoAnswer)
                }
            };
        results.push((i, result));
    }
    results
}

#[cfg(test)]
mod tests;
