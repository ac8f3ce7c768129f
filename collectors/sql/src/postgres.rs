//! PostgreSQL: each query in a `READ ONLY` transaction, with the session's
//! `statement_timeout` set to the query's timeout, so the server cancels
//! it.

use rust_decimal::Decimal;
use sqlx::postgres::types::{Oid, PgInterval};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{AssertSqlSafe, Connection as _};

use crate::config::Query;
use crate::database::{fetch_then_roll_back, RunError, SessionLimit};
use crate::decode::{self, seconds_of_interval, try_number, try_text};
use crate::table::{Cell, Table};

/// PostgreSQL's SQLSTATE for a statement cancelled by `statement_timeout`
/// (`query_canceled`).
pub const QUERY_CANCELED: &str = "57014";

/// Runs `query` on `conn`: `SET statement_timeout` (unless the session
/// has the query's already), `BEGIN READ ONLY`, the query, `ROLLBACK`.
pub async fn run(
    conn: &mut PgConnection,
    limit: &mut SessionLimit,
    query: &Query,
    max_rows: usize,
) -> Result<Table, RunError> {
    let set = limit.statement(query.timeout, |t| {
        format!("SET statement_timeout = {}", t.as_millis().max(1))
    });
    if let Some(set) = set {
        // SET does not take parameters; the number is ours, not the user's.
        sqlx::raw_sql(AssertSqlSafe(set))
            .execute(&mut *conn)
            .await?;
        limit.record(query.timeout);
    }
    let tx = conn.begin_with("BEGIN READ ONLY").await?;
    fetch_then_roll_back(tx, query, max_rows, cell).await
}

/// Column `i` of `row` as a [`Cell`].
fn cell(row: &PgRow, i: usize) -> Cell {
    decode::cell(row, i, |ty| {
        try_number(row, i, ty, |v: i64| v)
            .or_else(|| try_number(row, i, ty, |v: i32| v))
            .or_else(|| try_number(row, i, ty, |v: i16| v))
            .or_else(|| try_number(row, i, ty, |v: f64| v))
            .or_else(|| try_number(row, i, ty, |v: f32| v))
            .or_else(|| try_number(row, i, ty, |v: bool| v))
            .or_else(|| try_number(row, i, ty, |v: Decimal| v))
            .or_else(|| {
                try_number(row, i, ty, |v: PgInterval| {
                    seconds_of_interval(v.months, v.days, v.microseconds)
                })
            })
            .or_else(|| try_number(row, i, ty, |v: Oid| f64::from(v.0)))
            .or_else(|| try_text(row, i, ty, |v: String| v))
    })
}
