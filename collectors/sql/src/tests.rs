//! Unit tests on real SQLite files (SQLite runs in the process, so these
//! need no server); PostgreSQL and MariaDB are tested in the agent's
//! `tests/sql.rs` against servers the tests start.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use carat_collector::testing::{Harness, Published};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection as _, Executor as _};

use super::*;

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "carat-sql-{name}-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A SQLite file with a `jobs` table, written through a writable
/// connection of the test's own.
async fn jobs_db(dir: &Path) -> (PathBuf, SqliteConnection) {
    let path = dir.join("app.db");
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .unwrap()
        .create_if_missing(true);
    let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
    conn.execute(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, status TEXT, queue TEXT, attempts INTEGER, \
         run_at INTEGER, note TEXT);
         INSERT INTO jobs (status, queue, attempts, run_at, note) VALUES
           ('pending', 'mail', 0, 1000, NULL),
           ('pending', 'mail', 2, 1600, 'x'),
           ('pending', 'sms', 1, 1300, NULL),
           ('failed', 'mail', 5, 900, 'smtp down'),
           ('done', 'sms', 1, 500, NULL);",
    )
    .await
    .unwrap();
    (path, conn)
}

fn config(path: &Path, queries: &[(&str, &str)]) -> SqlConfig {
    SqlConfig {
        url: format!("sqlite://{}", path.display()),
        query: queries
            .iter()
            .map(|(name, sql)| QueryConfig::new(*name, *sql))
            .collect(),
        ..SqlConfig::default()
    }
}

async fn run_once(config: SqlConfig) -> Published {
    let mut h = Harness::<Sql>::new(config, Environment::default()).unwrap();
    h.collect().await.unwrap()
}

#[tokio::test]
async fn the_three_shapes_publish_under_the_query_name() {
    let dir = Scratch::new("shapes");
    let (path, _writer) = jobs_db(&dir.0).await;
    let published = run_once(config(
        &path,
        &[
            ("jobs.total", "SELECT count(*) FROM jobs"),
            ("jobs.by_status", "SELECT status, count(*) FROM jobs GROUP BY status"),
            (
                "queues",
                "SELECT queue, count(*) AS pending, 2000 - min(run_at) AS \"oldest age\", avg(attempts) AS attempts \
                 FROM jobs WHERE status = 'pending' GROUP BY queue",
            ),
        ],
    ))
    .await;
    assert_eq!(
        published.to_lines(),
        "jobs.by_status.done 1\njobs.by_status.failed 1\njobs.by_status.pending 3\njobs.total 5\n\
         queues.mail.attempts 1\nqueues.mail.oldest_age 1000\nqueues.mail.pending 2\n\
         queues.sms.attempts 1\nqueues.sms.oldest_age 700\nqueues.sms.pending 1\n"
    );
    assert!(published.failed_parts.is_empty());
}

#[tokio::test]
async fn nulls_publish_nothing_and_a_text_value_fails_only_its_query() {
    let dir = Scratch::new("null");
    let (path, _writer) = jobs_db(&dir.0).await;
    let published = run_once(config(
        &path,
        &[
            (
                "none",
                "SELECT max(run_at) FROM jobs WHERE status = 'nonexistent'",
            ),
            (
                "notes",
                "SELECT status, note FROM jobs WHERE status = 'failed'",
            ),
            ("ok", "SELECT count(*) FROM jobs"),
        ],
    ))
    .await;
    assert_eq!(published.to_lines(), "ok 5\n");
    let failed = published.failed_part("query notes").expect("notes fails");
    assert_eq!(failed.label, "parse");
    assert!(
        failed.message.contains("\"note\"") && failed.message.contains("smtp down"),
        "{failed:?}"
    );
    assert!(published.failed_part("query none").is_none());
}

#[tokio::test]
async fn writes_are_refused_and_nothing_is_written() {
    let dir = Scratch::new("write");
    let (path, mut writer) = jobs_db(&dir.0).await;
    let published = run_once(config(
        &path,
        &[
            ("gone", "DELETE FROM jobs RETURNING 1"),
            ("moved", "UPDATE jobs SET status = 'done' RETURNING 1"),
            (
                "added",
                "INSERT INTO jobs (status) VALUES ('x') RETURNING 1",
            ),
            ("count", "SELECT count(*) FROM jobs"),
        ],
    ))
    .await;
    for part in ["query gone", "query moved", "query added"] {
        let failed = published.failed_part(part).expect(part);
        assert!(failed.message.contains("read-only"), "{failed:?}");
    }
    assert_eq!(published.get("count"), Some(5.0));
    let (rows, done): (i64, i64) =
        sqlx::query_as("SELECT count(*), sum(status = 'done') FROM jobs")
            .fetch_one(&mut writer)
            .await
            .unwrap();
    assert_eq!((rows, done), (5, 1), "the database is unchanged");
}

#[tokio::test]
async fn a_query_past_its_timeout_is_interrupted_inside_sqlite_and_the_others_run() {
    let dir = Scratch::new("slow");
    let (path, _writer) = jobs_db(&dir.0).await;
    let mut c = config(
        &path,
        &[
            (
                "endless",
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n",
            ),
            ("after", "SELECT count(*) FROM jobs"),
        ],
    );
    c.query[0].timeout = Some(Duration::from_millis(200));
    let mut h = Harness::<Sql>::new(c, Environment::default()).unwrap();
    let published = h.collect().await.unwrap();
    let failed = published
        .failed_part("query endless")
        .expect("it times out");
    assert_eq!(failed.label, "timeout", "{failed:?}");
    assert!(
        failed.message.contains("cancelled by the database"),
        "{failed:?}"
    );
    assert_eq!(published.get("after"), Some(5.0));
    // The connection was not lost: the next run uses it again.
    let again = h.collect().await.unwrap();
    assert_eq!(again.get("after"), Some(5.0));
}

#[tokio::test]
async fn several_connections_share_the_queries_and_each_publishes() {
    let dir = Scratch::new("pool");
    let (path, _writer) = jobs_db(&dir.0).await;
    let mut c = config(
        &path,
        &[
            ("a", "SELECT count(*) FROM jobs"),
            ("b", "SELECT count(*) FROM jobs WHERE status = 'pending'"),
            ("c", "SELECT max(attempts) FROM jobs"),
            ("d", "SELECT 'x', 'not a number'"),
            ("e", "SELECT min(run_at) FROM jobs"),
        ],
    );
    c.max_connections = 2;
    let mut h = Harness::<Sql>::new(c, Environment::default()).unwrap();
    for _ in 0..2 {
        let published = h.collect().await.unwrap();
        assert_eq!(published.to_lines(), "a 5\nb 3\nc 5\ne 500\n");
        assert!(published.failed_part("query d").is_some());
        let open = h
            .collector()
            .connections
            .iter()
            .filter(|c| c.is_some())
            .count();
        assert_eq!(open, 2, "both connections are kept");
    }
}

#[tokio::test]
async fn a_counter_query_publishes_its_rate() {
    let dir = Scratch::new("counter");
    let (path, mut writer) = jobs_db(&dir.0).await;
    let mut c = config(&path, &[("jobs.created", "SELECT max(id) FROM jobs")]);
    c.query[0].counter = true;
    let mut h = Harness::<Sql>::new(c, Environment::default()).unwrap();
    assert!(h.collect().await.unwrap().metrics.is_empty(), "no rate yet");
    writer
        .execute(
            "INSERT INTO jobs (status) VALUES ('pending'), ('pending'), ('pending'), ('pending')",
        )
        .await
        .unwrap();
    let published = h.collect_after(Duration::from_secs(2)).await.unwrap();
    assert_eq!(published.get("jobs.created"), Some(2.0), "4 new ids in 2 s");
}

#[tokio::test]
async fn a_query_returning_more_than_max_rows_fails() {
    let dir = Scratch::new("rows");
    let (path, _writer) = jobs_db(&dir.0).await;
    let mut c = config(&path, &[("ids", "SELECT CAST(id AS TEXT), id FROM jobs")]);
    c.max_rows = 4;
    let published = run_once(c).await;
    let failed = published.failed_part("query ids").expect("too many rows");
    assert_eq!(failed.label, "limit");
    assert!(failed.message.contains("more than 4 rows"), "{failed:?}");
    assert!(published.metrics.is_empty());
}

#[tokio::test]
async fn a_missing_file_fails_the_run_naming_it() {
    let dir = Scratch::new("missing");
    let path = dir.0.join("nowhere.db");
    let mut h =
        Harness::<Sql>::new(config(&path, &[("n", "SELECT 1")]), Environment::default()).unwrap();
    let e = h.collect().await.unwrap_err().to_string();
    assert!(e.contains("nowhere.db"), "{e}");
    assert!(!path.exists(), "a read-only collector creates no file");
}

fn build_error(config: SqlConfig) -> String {
    match Sql::new(config.clone(), &Environment::default()) {
        Ok(_) => panic!("the configuration was accepted: {config:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn options_that_cannot_work_are_refused_naming_the_option() {
    let one = |sql: &str| QueryConfig {
        name: "n".into(),
        sql: sql.into(),
        counter: false,
        timeout: None,
    };
    let base = SqlConfig {
        url: "postgres://carat@127.0.0.1/app".into(),
        query: vec![one("SELECT 1")],
        ..SqlConfig::default()
    };
    let cases: Vec<(SqlConfig, &str)> = vec![
        (
            SqlConfig {
                url: String::new(),
                ..base.clone()
            },
            "`url`",
        ),
        (
            SqlConfig {
                url: "oracle://u:hunter2@db/x".into(),
                ..base.clone()
            },
            "oracle://u:***@db/x",
        ),
        (
            SqlConfig {
                query: vec![],
                ..base.clone()
            },
            "no queries",
        ),
        (
            SqlConfig {
                query: vec![one("  ")],
                ..base.clone()
            },
            "`query.0.sql`",
        ),
        (
            SqlConfig {
                query: vec![one("SELECT 1"), one("SELECT 2")],
                ..base.clone()
            },
            "`query.1.name`",
        ),
        (
            SqlConfig {
                max_connections: 0,
                ..base.clone()
            },
            "`max_connections`",
        ),
        (
            SqlConfig {
                password: Some("a".into()),
                password_file: Some("/nonexistent".into()),
                ..base.clone()
            },
            "not both",
        ),
        (
            SqlConfig {
                url: "sqlite:///tmp/x.db".into(),
                password: Some("a".into()),
                ..base.clone()
            },
            "no password",
        ),
    ];
    for (config, expected) in cases {
        let e = build_error(config);
        assert!(e.contains(expected), "{expected:?} not in {e:?}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}

#[test]
fn the_password_comes_from_its_file_and_never_shows() {
    let dir = Scratch::new("pwfile");
    let file = dir.0.join("pw");
    std::fs::write(&file, "s3cret-pw\n").unwrap();
    let c = SqlConfig {
        url: "postgres://carat:in-url-pw@127.0.0.1/app".into(),
        password_file: Some(file),
        query: vec![QueryConfig {
            name: "n".into(),
            sql: "SELECT 1".into(),
            counter: false,
            timeout: None,
        }],
        ..SqlConfig::default()
    };
    let debug = format!("{c:?}");
    assert!(!debug.contains("in-url-pw"), "{debug}");
    let sql = Sql::new(c, &Environment::default()).unwrap();
    assert_eq!(sql.context.target, "postgres://carat:***@127.0.0.1/app");
    let file = sql.settings.password_file.as_deref().unwrap();
    assert_eq!(config::read_password_file(file).unwrap(), "s3cret-pw");
    std::fs::write(file, "\n").unwrap();
    let e = config::read_password_file(file).unwrap_err().to_string();
    assert!(e.contains("password_file") && e.contains("empty"), "{e}");
}
