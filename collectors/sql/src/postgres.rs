//! PostgreSQL: each query in a `READ ONLY` transaction whose
//! `statement_timeout` is the query's timeout, so the server cancels it.

use rust_decimal::Decimal;
use sqlx::postgres::types::{Oid, PgInterval};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{AssertSqlSafe, Connection as _};

use crate::config::Query;
use crate::database::{fetch_then_roll_back, RunError};
use crate::decode::{self, seconds_of_interval, try_number, try_text};
use crate::table::{Cell, Table};

/// PostgreSQL's SQLSTATE for a statement cancelled by `statement_timeout`
/// (`query_canceled`).
pub const QUERY_CANCELED: &str = "57014";

/// Runs `query` on `conn`: `BEGIN READ ONLY`, `SET LOCAL statement_timeout`,
/// the query, `ROLLBACK`.
pub async fn run(
    conn: &mut PgConnection,
    query: &Query,
    max_rows: usize,
) -> Result<Table, RunError> {
    let mut tx = conn.begin_with("BEGIN READ ONLY").await?;
    // SET does not take parameters; the number is ours, not the user's.
    let ms = query.timeout.as_millis().max(1);
    sqlx::raw_sql(AssertSqlSafe(format!("SET LOCAL statement_timeout = {ms}")))
        .execute(&mut *tx)
        .await?;
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
