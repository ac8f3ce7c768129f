//! MySQL and MariaDB: each query in a `START TRANSACTION READ ONLY`, with
//! the session's statement time limit set to the query's timeout, so the
//! server interrupts it: `max_statement_time` (seconds) on MariaDB,
//! `max_execution_time` (milliseconds, `SELECT` only) on MySQL.

use rust_decimal::Decimal;
use sqlx::mysql::types::MySqlTime;
use sqlx::mysql::{MySqlConnection, MySqlRow};
use sqlx::{AssertSqlSafe, Connection as _};

use crate::config::Query;
use crate::database::{fetch_then_roll_back, RunError, SessionLimit};
use crate::decode::{self, try_number, try_text};
use crate::table::{Cell, Table};

/// The server's family: the two name their statement time limit differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// MariaDB: `max_statement_time`, in seconds.
    MariaDb,
    /// MySQL: `max_execution_time`, in milliseconds.
    MySql,
}

/// MySQL's and MariaDB's error numbers for a statement interrupted by its
/// time limit: MariaDB's `ER_STATEMENT_TIMEOUT`, MySQL's
/// `ER_QUERY_TIMEOUT`; and the generic "query execution was interrupted"
/// (`ER_QUERY_INTERRUPTED`, also what a KILL QUERY gives).
pub const TIMEOUT_ERRORS: [u16; 3] = [1969, 3024, 1317];

/// What the agent knows of a connection's session: the server's family,
/// and the statement time limit the session has now (set again only when
/// a query needs another one).
#[derive(Clone, Copy, Debug)]
pub struct Session {
    flavor: Flavor,
    limit: SessionLimit,
}

/// Asks the server which family it is, for a new connection.
pub async fn session(conn: &mut MySqlConnection) -> Result<Session, sqlx::Error> {
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&mut *conn)
        .await?;
    let flavor = if version.to_ascii_lowercase().contains("mariadb") {
        Flavor::MariaDb
    } else {
        Flavor::MySql
    };
    Ok(Session {
        flavor,
        limit: SessionLimit::default(),
    })
}

/// Runs `query` on `conn`: sets the session's time limit (unless it has
/// that one already), then `START TRANSACTION READ ONLY`, the query,
/// `ROLLBACK`.
pub async fn run(
    conn: &mut MySqlConnection,
    session: &mut Session,
    query: &Query,
    max_rows: usize,
) -> Result<Table, RunError> {
    let flavor = session.flavor;
    let set = session.limit.statement(query.timeout, |t| match flavor {
        Flavor::MariaDb => format!(
            "SET SESSION max_statement_time = {:.3}",
            t.as_secs_f64().max(0.001)
        ),
        Flavor::MySql => format!("SET SESSION max_execution_time = {}", t.as_millis().max(1)),
    });
    if let Some(set) = set {
        // SET does not take parameters; the number is ours, not the user's.
        sqlx::raw_sql(AssertSqlSafe(set))
            .execute(&mut *conn)
            .await?;
        session.limit.record(query.timeout);
    }
    let tx = conn.begin_with("START TRANSACTION READ ONLY").await?;
    fetch_then_roll_back(tx, query, max_rows, cell).await
}

/// Column `i` of `row` as a [`Cell`].
fn cell(row: &MySqlRow, i: usize) -> Cell {
    decode::cell(row, i, |ty| {
        try_number(row, i, ty, |v: i64| v)
            .or_else(|| try_number(row, i, ty, |v: u64| v))
            .or_else(|| try_number(row, i, ty, |v: f64| v))
            .or_else(|| try_number(row, i, ty, |v: f32| v))
            .or_else(|| try_number(row, i, ty, |v: bool| v))
            .or_else(|| try_number(row, i, ty, |v: Decimal| v))
            .or_else(|| try_number(row, i, ty, |t: MySqlTime| seconds_of_time(&t)))
            .or_else(|| try_text(row, i, ty, |v: String| v))
            // Text of a binary collation, as some expressions give it.
            .or_else(|| {
                try_text(row, i, ty, |b: Vec<u8>| {
                    String::from_utf8_lossy(&b).into_owned()
                })
            })
    })
}

/// A `TIME` value (`TIMEDIFF(NOW(), created_at)`) in seconds.
fn seconds_of_time(t: &MySqlTime) -> f64 {
    let s = f64::from(t.hours()) * 3600.0
        + f64::from(t.minutes()) * 60.0
        + f64::from(t.seconds())
        + f64::from(t.microseconds()) / 1e6;
    // Not `t.is_negative()`: in sqlx 0.9.0 it returns whether the sign is
    // positive.
    if t.sign().is_negative() {
        -s
    } else {
        s
    }
}
