//! A connection to one of the three databases, and what the collector asks
//! of it: connect, check that it is still alive, run a query read-only with
//! a timeout on the server.

use std::str::FromStr;
use std::time::Duration;

use carat_collector::redact::{redact_secret, redact_url, redact_urls};
use carat_collector::CollectorError;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::Connection as _;

use crate::config::Query;
use crate::table::Table;
use crate::{mysql, postgres, sqlite};

/// How to reach the database of an instance. (No `Debug`: the drivers'
/// options print their password.)
#[derive(Clone)]
pub enum Options {
    /// PostgreSQL.
    Postgres(PgConnectOptions),
    /// MySQL or MariaDB.
    MySql(MySqlConnectOptions),
    /// A SQLite file, opened read-only.
    Sqlite(SqliteConnectOptions),
}

/// An open connection.
pub enum Connection {
    /// PostgreSQL, and the statement time limit its session has.
    Postgres(PgConnection, SessionLimit),
    /// MySQL or MariaDB, and what its session is set to.
    MySql(MySqlConnection, mysql::Session),
    /// SQLite.
    Sqlite(SqliteConnection),
}

/// The URL schemes accepted, for messages.
const SCHEMES: &str = "postgres://, postgresql://, mysql://, mariadb:// or sqlite://";

impl Options {
    /// Reads `url`, with `password` in place of the URL's, if given. The
    /// error names the option and shows the URL with its password hidden.
    pub fn parse(
        url: &str,
        password: Option<&str>,
        connect_timeout: Duration,
    ) -> Result<Options, CollectorError> {
        let invalid = |e: sqlx::Error| {
            let mut message = redact_urls(&e.to_string()).into_owned();
            if let Some(p) = password {
                message = redact_secret(&message, p).into_owned();
            }
            CollectorError::option("url", format!("{}: {message}", redact_url(url)))
        };
        let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("postgres" | "postgresql") => {
                let mut o = PgConnectOptions::from_str(url).map_err(invalid)?;
                if let Some(p) = password {
                    o = o.password(p);
                }
                Ok(Options::Postgres(o.application_name("carat")))
            }
            Some("mysql" | "mariadb") => {
                let mut o = MySqlConnectOptions::from_str(url).map_err(invalid)?;
                if let Some(p) = password {
                    o = o.password(p);
                }
                Ok(Options::MySql(o))
            }
            Some("sqlite") => {
                if password.is_some() {
                    return Err(CollectorError::option(
                        "password",
                        "a SQLite database has no password; remove password and password_file",
                    ));
                }
                let o = SqliteConnectOptions::from_str(url).map_err(invalid)?;
                Ok(Options::Sqlite(sqlite::read_only(o, connect_timeout)))
            }
            _ => Err(CollectorError::option(
                "url",
                format!("{}: not a database URL; use {SCHEMES}", redact_url(url)),
            )),
        }
    }

    /// Opens a connection, with `password` in place of the configured one
    /// if given (the one just read from `password_file`).
    pub async fn connect(&self, password: Option<&str>) -> Result<Connection, sqlx::Error> {
        Ok(match self {
            Options::Postgres(o) => {
                let c = match password {
                    Some(p) => PgConnection::connect_with(&o.clone().password(p)).await?,
                    None => PgConnection::connect_with(o).await?,
                };
                Connection::Postgres(c, SessionLimit::default())
            }
            Options::MySql(o) => {
                let mut c = match password {
                    Some(p) => MySqlConnection::connect_with(&o.clone().password(p)).await?,
                    None => MySqlConnection::connect_with(o).await?,
                };
                let session = mysql::session(&mut c).await?;
                Connection::MySql(c, session)
            }
            Options::Sqlite(o) => Connection::Sqlite(SqliteConnection::connect_with(o).await?),
        })
    }
}

impl Connection {
    /// Checks that the connection still works (the server may have
    /// restarted since the last run).
    pub async fn ping(&mut self) -> Result<(), sqlx::Error> {
        match self {
            Connection::Postgres(c, _) => c.ping().await,
            Connection::MySql(c, _) => c.ping().await,
            Connection::Sqlite(c) => c.ping().await,
        }
    }

    /// Runs `query` in a read-only transaction, cancelled on the server
    /// after its timeout, reading at most `max_rows` rows.
    pub async fn run(&mut self, query: &Query, max_rows: usize) -> Result<Table, RunError> {
        match self {
            Connection::Postgres(c, limit) => postgres::run(c, limit, query, max_rows).await,
            Connection::MySql(c, session) => mysql::run(c, session, query, max_rows).await,
            Connection::Sqlite(c) => sqlite::run(c, query, max_rows).await,
        }
    }
}

/// The statement time limit a connection's session has now. A query sets
/// it only when it needs another one, so queries of the same timeout cost
/// no round trip for it.
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionLimit(Option<Duration>);

impl SessionLimit {
    /// The statement `sql` makes of `timeout`, to run before a query of
    /// that timeout; `None` when the session has that limit already.
    /// [`SessionLimit::record`] it once it ran.
    pub fn statement(
        &self,
        timeout: Duration,
        sql: impl FnOnce(Duration) -> String,
    ) -> Option<String> {
        (self.0 != Some(timeout)).then(|| sql(timeout))
    }

    /// The session's limit is `timeout` now.
    pub fn record(&mut self, timeout: Duration) {
        self.0 = Some(timeout);
    }
}

/// Why a query did not give a table.
#[derive(Debug)]
pub enum RunError {
    /// The driver's or the database's error.
    Sql(sqlx::Error),
    /// More rows than allowed.
    TooManyRows(usize),
}

impl From<sqlx::Error> for RunError {
    fn from(e: sqlx::Error) -> Self {
        RunError::Sql(e)
    }
}

/// Runs `query` in the transaction `tx`, reads its rows into a table with
/// `cell`, and rolls `tx` back: a read-only transaction has nothing to keep.
pub async fn fetch_then_roll_back<DB>(
    mut tx: sqlx::Transaction<'_, DB>,
    query: &Query,
    max_rows: usize,
    cell: impl Fn(&DB::Row, usize) -> crate::table::Cell,
) -> Result<Table, RunError>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
{
    let sql = sqlx::AssertSqlSafe(std::sync::Arc::clone(&query.sql));
    let rows = sqlx::query::<DB>(sql).fetch(&mut *tx);
    let table = collect_rows(rows, max_rows, cell).await;
    let rolled_back = tx.rollback().await;
    let table = table?;
    rolled_back?;
    Ok(table)
}

/// Reads every row of `rows` into a table, each cell with `cell`, failing
/// past `max_rows` rows.
pub async fn collect_rows<R, S>(
    mut rows: S,
    max_rows: usize,
    cell: impl Fn(&R, usize) -> crate::table::Cell,
) -> Result<Table, RunError>
where
    R: sqlx::Row,
    S: futures_util::Stream<Item = Result<R, sqlx::Error>> + Unpin,
{
    use futures_util::TryStreamExt as _;
    use sqlx::Column as _;
    let mut table = Table::default();
    while let Some(row) = rows.try_next().await? {
        if table.rows.len() == max_rows {
            return Err(RunError::TooManyRows(max_rows));
        }
        if table.columns.is_empty() {
            table.columns = row.columns().iter().map(|c| c.name().to_owned()).collect();
        }
        table
            .rows
            .push((0..row.len()).map(|i| cell(&row, i)).collect());
    }
    Ok(table)
}
