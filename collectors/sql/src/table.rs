//! What a query returned, whatever the database, and how its columns turn
//! into metric names: the three shapes of the README.

use carat_collector::{Batch, CollectorError};

use crate::config::Query;

/// One value of a result, as the drivers read it.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// SQL NULL: publishes nothing.
    Null,
    /// A number: an integer, a decimal, a float, a boolean (0 or 1), an
    /// interval or a time of day in seconds.
    Number(f64),
    /// Text (a name, or a number written as text, as `SHOW STATUS` gives).
    Text(String),
    /// A value of a type that is neither, or that the driver could not
    /// read: its SQL type and why.
    Other {
        /// The SQL type, as the database names it (`TIMESTAMPTZ`).
        sql_type: String,
        /// Why it is not a number, when there is more to say than its type.
        reason: Option<String>,
    },
}

/// The rows of one query.
#[derive(Debug, Default)]
pub struct Table {
    /// The column names, in order (empty when no row came back).
    pub columns: Vec<String>,
    /// The rows, each as long as `columns`.
    pub rows: Vec<Vec<Cell>>,
}

/// A number as the agent publishes it.
enum Value {
    Gauge(f64),
    Counter(u64),
}

/// Adds what `table` holds to `batch` under `query`'s path, or fails
/// naming the query, the row and the column at fault. Nothing is added
/// when it fails: a query publishes all its numbers or none.
///
/// - one column: a single number at `<name>` (at most one row);
/// - two columns, a key and a number: `<name>.<key>` per row;
/// - three or more, a key and numbers: `<name>.<key>.<column>` per row.
///
/// NULL numbers, and rows whose key is NULL, publish nothing.
pub fn publish(query: &Query, table: &Table, batch: &mut Batch) -> Result<(), CollectorError> {
    // First every value is checked (and where it goes noted by row and
    // column), then added: a failure leaves the batch as it was.
    let mut values: Vec<(usize, usize, Value)> = Vec::new();
    match table.columns.len() {
        0 => {}
        1 => {
            if table.rows.len() > 1 {
                return Err(CollectorError::parse(
                    "result",
                    format!(
                        "{} rows of one column; a single number needs one row (put a name column first to publish one number per row)",
                        table.rows.len()
                    ),
                ));
            }
            if let Some(cell) = table.rows.first().and_then(|r| r.first()) {
                if let Some(v) = number(query, &table.columns[0], 1, cell)? {
                    values.push((0, 0, v));
                }
            }
        }
        _ => {
            for (r, row) in table.rows.iter().enumerate() {
                if key(&table.columns[0], r + 1, &row[0])?.is_none() {
                    continue;
                }
                for (c, cell) in row.iter().enumerate().skip(1) {
                    if let Some(v) = number(query, &table.columns[c], r + 1, cell)? {
                        values.push((r, c, v));
                    }
                }
            }
        }
    }
    let width = table.columns.len();
    let mut path: Vec<&str> = query.path.iter().map(String::as_str).collect();
    let base = path.len();
    for (r, c, value) in values {
        path.truncate(base);
        if width > 1 {
            if let Cell::Text(key) = &table.rows[r][0] {
                path.push(key);
            }
            if width > 2 {
                path.push(&table.columns[c]);
            }
        }
        // Each part is one component: a dot in a key or column name becomes
        // `_`, so a value from the database cannot add a level.
        match value {
            Value::Gauge(v) => batch.gauge_parts(&path, v),
            Value::Counter(v) => batch.counter_parts(&path, v, None),
        }
    }
    Ok(())
}

/// The key of row `row` (counted from 1), `None` when it is NULL.
fn key<'a>(column: &str, row: usize, cell: &'a Cell) -> Result<Option<&'a str>, CollectorError> {
    match cell {
        Cell::Null => Ok(None),
        Cell::Text(t) => Ok(Some(t)),
        Cell::Number(_) | Cell::Other { .. } => Err(CollectorError::parse(
            at(row, column),
            format!(
                "the first column names the row and must be text, not {}; cast it ({column}::text on PostgreSQL, CAST({column} AS CHAR) on MySQL), or, for several numbers of one row, put a name first (SELECT 'all', count(*), …)",
                describe(cell)
            ),
        )),
    }
}

/// The number in `cell`, `None` for NULL.
fn number(
    query: &Query,
    column: &str,
    row: usize,
    cell: &Cell,
) -> Result<Option<Value>, CollectorError> {
    let n = match cell {
        Cell::Null => return Ok(None),
        Cell::Number(n) => *n,
        // SHOW STATUS and friends give numbers as text.
        Cell::Text(t) => match t.trim().parse::<f64>() {
            Ok(n) if n.is_finite() => n,
            _ => return Err(not_a_number(column, row, cell)),
        },
        Cell::Other { .. } => return Err(not_a_number(column, row, cell)),
    };
    if !query.counter {
        return Ok(Some(Value::Gauge(n)));
    }
    if n >= 0.0 && n.fract() == 0.0 && n <= u64::MAX as f64 {
        Ok(Some(Value::Counter(n as u64)))
    } else {
        Err(CollectorError::parse(
            at(row, column),
            format!(
                "{n} is not a count; a query with counter = true returns whole numbers of 0 or more"
            ),
        ))
    }
}

fn not_a_number(column: &str, row: usize, cell: &Cell) -> CollectorError {
    CollectorError::parse(
        at(row, column),
        format!("{} is not a number", describe(cell)),
    )
}

/// Where in the result a value is, for messages (which the agent prefixes
/// with the instance and the query): `row 2, column "status"`.
fn at(row: usize, column: &str) -> String {
    format!("row {row}, column {column:?}")
}

/// The longest excerpt of a text value quoted in a message.
const EXCERPT_CHARS: usize = 40;

/// `cell` for a message: its type, and a short excerpt of text.
fn describe(cell: &Cell) -> String {
    match cell {
        Cell::Null => "NULL".into(),
        Cell::Number(n) => format!("the number {n}"),
        Cell::Text(t) => format!(
            "the text {}",
            carat_collector::input::excerpt(t, EXCERPT_CHARS)
        ),
        Cell::Other { sql_type, reason } => match reason {
            Some(r) => format!("a value of type {sql_type} ({r})"),
            None => format!("a value of type {sql_type}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use carat_collector::testing;
    use std::sync::Arc;
    use std::time::Duration;

    fn query(name: &str, counter: bool) -> Query {
        Query {
            path: name.split('.').map(str::to_owned).collect(),
            part: format!("query {name}"),
            sql: Arc::from("SELECT 1"),
            counter,
            timeout: Duration::from_secs(1),
        }
    }

    fn table(columns: &[&str], rows: Vec<Vec<Cell>>) -> Table {
        Table {
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows,
        }
    }

    fn text(t: &str) -> Cell {
        Cell::Text(t.to_owned())
    }

    fn lines(q: &Query, t: &Table) -> Result<String, CollectorError> {
        let mut batch = Batch::new();
        publish(q, t, &mut batch)?;
        let mut publisher = carat_collector::publish::Publisher::default();
        Ok(testing::publish(&mut publisher, &batch).to_lines())
    }

    #[test]
    fn one_column_is_one_number_at_the_name() {
        let t = table(&["count"], vec![vec![Cell::Number(42.0)]]);
        assert_eq!(
            lines(&query("jobs.total", false), &t).unwrap(),
            "jobs.total 42\n"
        );
    }

    #[test]
    fn one_column_of_several_rows_is_an_error_naming_the_query() {
        let t = table(
            &["n"],
            vec![vec![Cell::Number(1.0)], vec![Cell::Number(2.0)]],
        );
        let e = lines(&query("jobs", false), &t).unwrap_err().to_string();
        assert!(e.contains("2 rows of one column"), "{e}");
    }

    #[test]
    fn two_columns_are_a_name_and_a_number_per_row() {
        let t = table(
            &["status", "count"],
            vec![
                vec![text("pending"), Cell::Number(3.0)],
                vec![text("failed.permanently"), Cell::Number(1.0)],
                vec![text("odd key\n"), Cell::Number(2.5)],
            ],
        );
        assert_eq!(
            lines(&query("jobs", false), &t).unwrap(),
            "jobs.failed_permanently 1\njobs.odd_key_ 2.5\njobs.pending 3\n"
        );
    }

    #[test]
    fn more_columns_are_a_number_per_row_and_column() {
        let t = table(
            &["queue", "pending", "oldest age"],
            vec![
                vec![text("mail"), Cell::Number(4.0), Cell::Number(12.5)],
                vec![text("sms"), Cell::Number(0.0), Cell::Null],
            ],
        );
        assert_eq!(
            lines(&query("q", false), &t).unwrap(),
            "q.mail.oldest_age 12.5\nq.mail.pending 4\nq.sms.pending 0\n"
        );
    }

    #[test]
    fn nulls_publish_nothing() {
        let one = table(&["max"], vec![vec![Cell::Null]]);
        assert_eq!(lines(&query("age", false), &one).unwrap(), "");
        let keyed = table(
            &["status", "n"],
            vec![
                vec![Cell::Null, Cell::Number(1.0)],
                vec![text("ok"), Cell::Null],
            ],
        );
        assert_eq!(lines(&query("s", false), &keyed).unwrap(), "");
        let empty = table(&[], vec![]);
        assert_eq!(lines(&query("s", false), &empty).unwrap(), "");
    }

    #[test]
    fn numbers_as_text_are_read_and_other_text_is_an_error_naming_row_and_column() {
        let t = table(
            &["Variable_name", "Value"],
            vec![vec![text("Threads_connected"), text("7")]],
        );
        assert_eq!(
            lines(&query("status", false), &t).unwrap(),
            "status.Threads_connected 7\n"
        );
        let bad = table(
            &["status", "n"],
            vec![
                vec![text("a"), Cell::Number(1.0)],
                vec![text("b"), text("lots")],
            ],
        );
        let mut batch = Batch::new();
        let e = publish(&query("jobs", false), &bad, &mut batch)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("row 2") && e.contains("\"n\"") && e.contains("\"lots\""),
            "{e}"
        );
        assert!(
            batch.is_empty(),
            "a failed query publishes none of its numbers"
        );
    }

    #[test]
    fn a_value_of_another_type_is_an_error_with_its_type() {
        let t = table(
            &["newest"],
            vec![vec![Cell::Other {
                sql_type: "TIMESTAMPTZ".into(),
                reason: None,
            }]],
        );
        let e = lines(&query("jobs", false), &t).unwrap_err().to_string();
        assert!(e.contains("TIMESTAMPTZ") && e.contains("\"newest\""), "{e}");
    }

    #[test]
    fn a_numeric_key_is_refused_with_the_cast_to_write() {
        let t = table(
            &["priority", "n"],
            vec![vec![Cell::Number(1.0), Cell::Number(5.0)]],
        );
        let e = lines(&query("jobs", false), &t).unwrap_err().to_string();
        assert!(e.contains("priority") && e.contains("::text"), "{e}");
    }

    #[tokio::test]
    async fn counters_are_rates_and_must_be_whole_and_positive() {
        let q = query("inserts", true);
        let mut publisher = carat_collector::publish::Publisher::default();
        let mut batch = Batch::new();
        let t0 = std::time::Instant::now();
        batch.stamp(t0, std::time::SystemTime::now());
        publish(
            &q,
            &table(&["n"], vec![vec![Cell::Number(100.0)]]),
            &mut batch,
        )
        .unwrap();
        assert!(testing::publish(&mut publisher, &batch).metrics.is_empty());
        batch.clear();
        batch.stamp(t0 + Duration::from_secs(10), std::time::SystemTime::now());
        publish(
            &q,
            &table(&["n"], vec![vec![Cell::Number(150.0)]]),
            &mut batch,
        )
        .unwrap();
        assert_eq!(
            testing::publish(&mut publisher, &batch).get("inserts"),
            Some(5.0)
        );
        for bad in [-1.0, 2.5] {
            let e = lines(&q, &table(&["n"], vec![vec![Cell::Number(bad)]])).unwrap_err();
            assert!(e.to_string().contains("counter = true"), "{e}");
        }
    }
}
