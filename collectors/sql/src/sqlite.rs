//! SQLite: the file is opened read-only (`SQLITE_OPEN_READONLY` and
//! `PRAGMA query_only`), and a query past its timeout is interrupted by a
//! progress handler inside SQLite, on the connection's own thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::AssertSqlSafe;

use crate::config::Query;
use crate::database::{collect_rows, RunError};
use crate::decode::{self, try_number, try_text};
use crate::table::{Cell, Table};

/// SQLite virtual-machine steps between two looks at the clock: about a
/// millisecond of work, so the timeout holds to a few milliseconds.
const STEPS_PER_CHECK: i32 = 10_000;

/// `options`, opened read-only, never created, waiting at most
/// `busy_timeout` for a writer's lock.
pub fn read_only(options: SqliteConnectOptions, busy_timeout: Duration) -> SqliteConnectOptions {
    options
        .read_only(true)
        .create_if_missing(false)
        .busy_timeout(busy_timeout)
        .pragma("query_only", "ON")
}

/// Runs `query` on `conn`, interrupted inside SQLite past its timeout.
pub async fn run(
    conn: &mut SqliteConnection,
    query: &Query,
    max_rows: usize,
) -> Result<Table, RunError> {
    let deadline = Instant::now() + query.timeout;
    // The handler returns false, and SQLite interrupts the statement
    // (SQLITE_INTERRUPT), once the deadline has passed.
    conn.lock_handle()
        .await?
        .set_progress_handler(STEPS_PER_CHECK, move || Instant::now() < deadline);
    let rows = sqlx::query(AssertSqlSafe(Arc::clone(&query.sql))).fetch(&mut *conn);
    let table = collect_rows(rows, max_rows, cell).await;
    conn.lock_handle().await?.remove_progress_handler();
    table
}

/// Column `i` of `row` as a [`Cell`]: SQLite's values are integers, reals,
/// text, blobs or NULL, whatever the column's declared type.
fn cell(row: &SqliteRow, i: usize) -> Cell {
    decode::cell(row, i, |ty| {
        try_number(row, i, ty, |v: i64| v)
            .or_else(|| try_number(row, i, ty, |v: f64| v))
            .or_else(|| try_text(row, i, ty, |v: String| v))
    })
}
