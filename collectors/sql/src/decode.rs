//! Reading a value of a result row as a [`Cell`], with the drivers' own
//! type checks: each driver lists the Rust types it reads numbers and text
//! as, in order, and the first whose SQL types include the value's wins.

use sqlx::{ColumnIndex, Database, Decode, Row, Type, TypeInfo as _, ValueRef as _};

use crate::table::Cell;

/// Column `i` of `row` as a cell: [`Cell::Null`], what `read` makes of a
/// value of SQL type `ty` (see [`try_number`], [`try_text`]), or, when
/// `read` has nothing, [`Cell::Other`] of that type.
pub fn cell<R>(
    row: &R,
    i: usize,
    read: impl FnOnce(&<R::Database as Database>::TypeInfo) -> Option<Cell>,
) -> Cell
where
    R: Row,
    usize: ColumnIndex<R>,
{
    let value = match row.try_get_raw(i) {
        Ok(v) => v,
        Err(e) => return undecodable("?", &e),
    };
    if value.is_null() {
        return Cell::Null;
    }
    let ty = value.type_info().into_owned();
    read(&ty).unwrap_or_else(|| Cell::Other {
        sql_type: ty.name().to_owned(),
        reason: None,
    })
}

/// Column `i` of `row` as a number read as `T`, if the value's SQL type
/// `ty` is one `T` reads; `map` turns `T` into something [`Number`].
pub fn try_number<'r, R, T, N>(
    row: &'r R,
    i: usize,
    ty: &<R::Database as Database>::TypeInfo,
    map: impl FnOnce(T) -> N,
) -> Option<Cell>
where
    R: Row,
    usize: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
    N: Number,
{
    try_decode::<R, T>(row, i, ty).map(|v| number(v.map(map), ty))
}

/// Column `i` of `row` as text, if the value's SQL type `ty` is text;
/// `map` turns what `T` reads into a string.
pub fn try_text<'r, R, T>(
    row: &'r R,
    i: usize,
    ty: &<R::Database as Database>::TypeInfo,
    map: impl FnOnce(T) -> String,
) -> Option<Cell>
where
    R: Row,
    usize: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    try_decode::<R, T>(row, i, ty).map(|v| text(v.map(map), ty))
}

/// Column `i` of `row` decoded as `T`, if the value's SQL type `ty` is one
/// `T` reads (`None` otherwise).
fn try_decode<'r, R, T>(
    row: &'r R,
    i: usize,
    ty: &<R::Database as Database>::TypeInfo,
) -> Option<Result<T, sqlx::Error>>
where
    R: Row,
    usize: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    T::compatible(ty).then(|| row.try_get_unchecked::<T, _>(i))
}

/// A value the agent publishes as a number.
pub trait Number {
    /// The value as a float, `None` when it has none (a decimal beyond
    /// the range of a float).
    fn to_number(&self) -> Option<f64>;
}

macro_rules! number_as_float {
    ($($t:ty),*) => {$(
        impl Number for $t {
            fn to_number(&self) -> Option<f64> {
                // Integers beyond 2^53 lose their last digits, as in
                // Graphite, which stores floats.
                Some(*self as f64)
            }
        }
    )*};
}
number_as_float!(i16, i32, i64, u64, f32, f64);

impl Number for bool {
    fn to_number(&self) -> Option<f64> {
        Some(if *self { 1.0 } else { 0.0 })
    }
}

impl Number for rust_decimal::Decimal {
    fn to_number(&self) -> Option<f64> {
        rust_decimal::prelude::ToPrimitive::to_f64(self)
    }
}

/// A decoded number as a cell; a value the driver could not read, or a
/// number without a float, as [`Cell::Other`] of SQL type `ty`.
fn number<T: Number>(decoded: Result<T, sqlx::Error>, ty: &impl sqlx::TypeInfo) -> Cell {
    match decoded {
        Ok(v) => match v.to_number() {
            Some(n) => Cell::Number(n),
            None => Cell::Other {
                sql_type: ty.name().to_owned(),
                reason: Some("out of the range of a float".into()),
            },
        },
        Err(e) => undecodable(ty.name(), &e),
    }
}

/// Decoded text as a cell.
fn text(decoded: Result<String, sqlx::Error>, ty: &impl sqlx::TypeInfo) -> Cell {
    match decoded {
        Ok(t) => Cell::Text(t),
        Err(e) => undecodable(ty.name(), &e),
    }
}

/// A value of SQL type `sql_type` the driver could not read.
pub fn undecodable(sql_type: &str, e: &sqlx::Error) -> Cell {
    Cell::Other {
        sql_type: sql_type.to_owned(),
        reason: Some(format!("unreadable: {e}")),
    }
}

/// Seconds in a PostgreSQL interval, as `extract(epoch from …)` counts
/// them: a month is 30 days, a year (12 months) 365.25 days.
pub fn seconds_of_interval(months: i32, days: i32, microseconds: i64) -> f64 {
    const DAY: f64 = 86_400.0;
    let years = months / 12;
    let months = months % 12;
    f64::from(years) * 365.25 * DAY
        + f64::from(months) * 30.0 * DAY
        + f64::from(days) * DAY
        + microseconds as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_count_like_extract_epoch() {
        // interval '1 year 2 mons 3 days 04:05:06.5': 365.25 + 60 + 3 days
        // and 14706.5 s (the agent's tests/sql.rs compares with
        // PostgreSQL's own extract(epoch from …)).
        assert_eq!(seconds_of_interval(14, 3, 14_706_500_000), 37_015_506.5);
        assert_eq!(seconds_of_interval(0, -1, 0), -86_400.0);
    }
}
