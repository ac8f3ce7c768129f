//! What the `sql` collector costs per row of a result, apart from the
//! database's own work:
//!
//! - `publish`: a result of 1,000 and 10,000 rows of a name and three
//!   numbers turned into samples ([`carat_sql::table::publish`]), on the
//!   benchmark thread's CPU time;
//! - `sqlite_run`: a whole run of the collector over a SQLite file (opened
//!   read-only, as the agent does) whose one query returns 1,000 and
//!   10,000 such rows: SQLite's work, the driver's decoding and the
//!   publishing, in wall time on a single-threaded runtime (SQLite runs on
//!   its connection's own thread).
//!
//! Before criterion runs, one run of each size is measured with a counting
//! allocator: the peak of the memory it holds at once above what it started
//! with (the rows read, then the batch).
//!
//! cargo bench -p carat-sql --bench rows

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use carat_collector::bench::{
    live_bytes, peak_live_bytes, reset_peak, CountingAllocator, ThreadCpuTime,
};
use carat_collector::testing::Harness;
use carat_collector::{Batch, Environment};
use carat_sql::config::Query;
use carat_sql::table::{Cell, Table};
use carat_sql::{QueryConfig, Sql, SqlConfig};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::Connection as _;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const SIZES: [usize; 2] = [1_000, 10_000];
const SQL: &str = "SELECT name, pending, age, attempts FROM queues";

fn table(rows: usize) -> Table {
    Table {
        columns: ["name", "pending", "age", "attempts"]
            .map(String::from)
            .to_vec(),
        rows: (0..rows)
            .map(|i| {
                vec![
                    Cell::Text(format!("queue-{i:05}")),
                    Cell::Number(i as f64),
                    Cell::Number(i as f64 * 1.5),
                    Cell::Number(3.0),
                ]
            })
            .collect(),
    }
}

fn query() -> Query {
    Query {
        path: vec!["queues".into()],
        part: "query queues".into(),
        sql: Arc::from(SQL),
        counter: false,
        timeout: Duration::from_secs(10),
    }
}

fn publish(c: &mut Criterion<ThreadCpuTime>) {
    let mut group = c.benchmark_group("publish");
    let query = query();
    for rows in SIZES {
        let table = table(rows);
        let mut batch = Batch::new();
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::from_parameter(rows), &table, |b, table| {
            b.iter(|| {
                batch.clear();
                carat_sql::table::publish(&query, black_box(table), &mut batch).expect("numbers");
            })
        });
    }
    group.finish();
}

/// A SQLite file in a scratch directory with `rows` rows in `queues`.
fn database(dir: &Path, rows: usize, runtime: &tokio::runtime::Runtime) -> PathBuf {
    let path = dir.join(format!("bench-{rows}.db"));
    let _ = std::fs::remove_file(&path);
    runtime.block_on(async {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .expect("URL")
            .create_if_missing(true);
        let mut conn = SqliteConnection::connect_with(&options).await.expect("open");
        let fill = format!(
                "CREATE TABLE queues (name TEXT, pending INTEGER, age REAL, attempts INTEGER);
                 WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {rows})
                 INSERT INTO queues SELECT printf('queue-%05d', i), i, i * 1.5, 3 FROM n;"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(fill))
            .execute(&mut conn)
            .await
            .expect("fill");
        conn.close().await.expect("close");
    });
    path
}

fn sqlite_run(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("carat-sql-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let mut group = c.benchmark_group("sqlite_run");
    for rows in SIZES {
        let path = database(&dir, rows, &runtime);
        let config = SqlConfig {
            url: format!("sqlite://{}", path.display()),
            max_rows: 100_000,
            query: vec![QueryConfig::new("queues", SQL)],
            ..SqlConfig::default()
        };
        let mut harness = Harness::<Sql>::new(config, Environment::default()).expect("valid");
        // The first run opens the connection; measure a later one.
        runtime.block_on(harness.collect()).expect("a run");
        let before = live_bytes();
        reset_peak();
        let published = runtime.block_on(harness.collect()).expect("a run");
        eprintln!(
            "{rows} rows: {} samples per run; peak {} bytes above the start",
            published.samples,
            peak_live_bytes() - before
        );
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_function(BenchmarkId::from_parameter(rows), |b| {
            b.iter(|| runtime.block_on(harness.collect()).expect("a run"))
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = publish
}
criterion_group!(wall, sqlite_run);
criterion_main!(cpu, wall);
