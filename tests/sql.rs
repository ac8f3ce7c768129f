//! The `sql` collector against real PostgreSQL 15 and MariaDB 10.11
//! servers started by the tests on 127.0.0.1 and free ports (SQLite, which
//! runs in the process, is tested in the crate's own tests): every query
//! shape and value type, NULLs, a value that is not a number, one query
//! failing while the others publish, a slow query cancelled on the server,
//! writes refused by the read-only transaction, the server restarted
//! between two runs, and the password kept out of every message.
#![cfg(feature = "sql")]

mod support;

use std::time::Duration;

use carat_collector::testing::{Harness, Published};
use carat_collector::Environment;
use carat_sql::{QueryConfig, Sql, SqlConfig};
use support::agent::AgentProcess;
use support::mariadb::MariaDb;
use support::postgres::Postgres;
use support::supervised::ServerFixture;

/// The password the collector is given in the tests of the agent's own
/// output (the fixtures' users have their own).
fn config(url: &str, password: Option<&str>, queries: &[(&str, &str)]) -> SqlConfig {
    SqlConfig {
        url: url.to_owned(),
        password: password.map(str::to_owned),
        query: queries
            .iter()
            .map(|(name, sql)| QueryConfig::new(*name, *sql))
            .collect(),
        ..SqlConfig::default()
    }
}

fn harness(config: SqlConfig) -> Harness<Sql> {
    Harness::<Sql>::new(config, Environment::default()).expect("the configuration is valid")
}

/// The failure of `part`, which must have failed, with the given kind.
fn failure<'a>(published: &'a Published, part: &str, label: &str) -> &'a str {
    let f = published
        .failed_part(part)
        .unwrap_or_else(|| panic!("{part} did not fail: {published:?}"));
    assert_eq!(f.label, label, "{f:?}");
    &f.message
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

const PG_JOBS: &str = "
CREATE TABLE jobs (id serial PRIMARY KEY, status text NOT NULL, queue text NOT NULL,
                   attempts int NOT NULL, cost numeric(10,2), run_at timestamptz NOT NULL, note text);
INSERT INTO jobs (status, queue, attempts, cost, run_at, note) VALUES
  ('pending', 'mail', 0, 1.25, now() - interval '21 minutes', NULL),
  ('pending', 'mail', 2, 2.50, now() - interval '5 minutes', 'retry'),
  ('pending', 'sms', 1, NULL, now() - interval '1 minute', NULL),
  ('failed', 'mail', 5, 0.75, now() - interval '2 hours', 'smtp down'),
  ('done', 'sms', 1, 3.00, now() - interval '3 hours', NULL),
  ('done', 'mail', 1, 1.00, now() - interval '4 hours', NULL);
GRANT SELECT ON jobs TO carat;
GRANT pg_monitor TO carat;
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_shapes_types_and_nulls() {
    let pg = blocking(Postgres::start);
    blocking(|| pg.psql(PG_JOBS));
    let interval = "interval '1 year 2 mons 3 days 04:05:06.5'";
    let epoch: f64 = blocking(|| pg.psql(&format!("SELECT extract(epoch FROM {interval})")))
        .trim()
        .parse()
        .unwrap();
    let types = format!(
        "SELECT 'all' AS name, 1::int2 AS i2, 2::int4 AS i4, 9007199254740993::int8 AS i8, \
         1.5::float4 AS f4, 2.25::float8 AS f8, 12.34::numeric AS num, true AS yes, false AS no, \
         {interval} AS age, 7::oid AS oid, '42'::text AS text_number, NULL::int AS nothing"
    );
    let mut h = harness(config(
        &pg.url(),
        None,
        &[
            ("jobs.total", "SELECT count(*) FROM jobs"),
            (
                "jobs.by_status",
                "SELECT status, count(*) FROM jobs GROUP BY status",
            ),
            (
                "queues",
                "SELECT queue, count(*) AS pending, sum(cost) AS cost, max(attempts) AS attempts \
                 FROM jobs WHERE status = 'pending' GROUP BY queue",
            ),
            (
                "jobs.oldest_pending_seconds",
                "SELECT now() - min(run_at) FROM jobs WHERE status = 'pending'",
            ),
            ("types", &types),
            (
                "none",
                "SELECT max(run_at) FROM jobs WHERE status = 'nonexistent'",
            ),
            ("null_key", "SELECT note, count(*) FROM jobs GROUP BY note"),
            (
                "notes",
                "SELECT status, note FROM jobs WHERE status = 'failed'",
            ),
            ("latest", "SELECT max(run_at) AS newest FROM jobs"),
            ("missing", "SELECT count(*) FROM no_such_table"),
        ],
    ));
    let published = h.collect().await.expect("the run itself succeeds");
    let expected = [
        ("jobs.total", 6.0),
        ("jobs.by_status.pending", 3.0),
        ("jobs.by_status.failed", 1.0),
        ("jobs.by_status.done", 2.0),
        ("queues.mail.pending", 2.0),
        ("queues.mail.cost", 3.75),
        ("queues.mail.attempts", 2.0),
        ("queues.sms.pending", 1.0),
        ("queues.sms.attempts", 1.0),
        ("types.all.i2", 1.0),
        ("types.all.i4", 2.0),
        ("types.all.i8", 9007199254740993_i64 as f64),
        ("types.all.f4", 1.5),
        ("types.all.f8", 2.25),
        ("types.all.num", 12.34),
        ("types.all.yes", 1.0),
        ("types.all.no", 0.0),
        ("types.all.age", epoch),
        ("types.all.oid", 7.0),
        ("types.all.text_number", 42.0),
        ("null_key.retry", 1.0),
        ("null_key.smtp_down", 1.0),
    ];
    for (name, value) in expected {
        assert_eq!(published.get(name), Some(value), "{name}: {published:?}");
    }
    // sum(cost) over the sms row is NULL; a NULL key's row, NULL numbers and
    // failed queries publish nothing.
    for absent in [
        "queues.sms.cost",
        "types.all.nothing",
        "none",
        "notes.failed",
        "latest.newest",
    ] {
        assert_eq!(published.get(absent), None, "{absent}");
    }
    assert!(!published.names().any(|n| n.starts_with("null_key._")));
    let oldest = published
        .get("jobs.oldest_pending_seconds")
        .expect("an interval is seconds");
    assert!((1260.0..1300.0).contains(&oldest), "{oldest}");

    let notes = failure(&published, "query notes", "parse");
    assert!(
        notes.contains("\"note\"") && notes.contains("smtp down"),
        "{notes}"
    );
    let latest = failure(&published, "query latest", "parse");
    assert!(
        latest.contains("\"newest\"") && latest.contains("TIMESTAMPTZ"),
        "{latest}"
    );
    let missing = failure(&published, "query missing", "status");
    assert!(missing.contains("no_such_table"), "{missing}");
    assert_eq!(
        published.failed_parts.len(),
        3,
        "{:?}",
        published.failed_parts
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cancels_a_slow_query_on_the_server_and_refuses_writes() {
    let pg = blocking(Postgres::start);
    blocking(|| pg.psql(PG_JOBS));
    let mut c = config(
        &pg.url(),
        None,
        &[
            ("slow", "SELECT 1 FROM pg_sleep(30)"),
            ("inserted", "INSERT INTO jobs (status, queue, attempts, run_at) VALUES ('x', 'x', 0, now()) RETURNING 1"),
            ("updated", "UPDATE jobs SET status = 'done' RETURNING 1"),
            ("deleted", "WITH d AS (DELETE FROM jobs RETURNING 1) SELECT count(*) FROM d"),
            ("two", "SELECT 1; DELETE FROM jobs"),
            ("total", "SELECT count(*) FROM jobs"),
        ],
    );
    c.query[0].timeout = Some(Duration::from_millis(500));
    let mut h = harness(c);
    let published = h.collect().await.expect("the run itself succeeds");
    let slow = failure(&published, "query slow", "timeout");
    assert!(slow.contains("cancelled by the database"), "{slow}");
    // Cancelled on the server, not only given up on by the agent.
    let running = blocking(|| {
        pg.psql(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid() AND state = 'active'",
        )
    });
    assert_eq!(
        running.trim(),
        "0",
        "the slow query still runs on the server"
    );
    for part in ["query inserted", "query updated", "query deleted"] {
        let m = failure(&published, part, "status");
        assert!(m.contains("read-only"), "{m}");
    }
    failure(&published, "query two", "status");
    assert_eq!(
        published.get("total"),
        Some(6.0),
        "the other query still publishes"
    );
    let unchanged =
        blocking(|| pg.psql("SELECT count(*), count(*) FILTER (WHERE status = 'done') FROM jobs"));
    assert_eq!(unchanged.trim(), "6|2", "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_between_runs_and_a_wrong_password() {
    let mut pg = blocking(Postgres::start);
    blocking(|| pg.psql(PG_JOBS));
    survives_restarts(&mut pg).await;

    let secret = "not-the-pw-7f3a";
    let mut wrong = harness(config(
        &pg.url_without_password(),
        Some(secret),
        &[("total", "SELECT 1")],
    ));
    let refused = wrong
        .collect()
        .await
        .expect_err("the login is refused")
        .to_string();
    assert!(
        refused.contains("check the user and its password"),
        "{refused}"
    );
    assert!(!refused.contains(secret), "{refused}");
}

/// MariaDB's `carat` user gets a jobs table of its own database.
const MARIADB_JOBS: &str = "
USE carat;
CREATE TABLE jobs (id int AUTO_INCREMENT PRIMARY KEY, status varchar(20) NOT NULL,
                   queue varchar(20) NOT NULL, attempts int NOT NULL, cost decimal(10,2),
                   big bigint unsigned NOT NULL DEFAULT 18446744073709551615,
                   run_at datetime NOT NULL, note text);
INSERT INTO jobs (status, queue, attempts, cost, run_at, note) VALUES
  ('pending', 'mail', 0, 1.25, NOW() - INTERVAL 21 MINUTE, NULL),
  ('pending', 'mail', 2, 2.50, NOW() - INTERVAL 5 MINUTE, 'retry'),
  ('pending', 'sms', 1, NULL, NOW() - INTERVAL 1 MINUTE, NULL),
  ('failed', 'mail', 5, 0.75, NOW() - INTERVAL 2 HOUR, 'smtp down'),
  ('done', 'sms', 1, 3.00, NOW() - INTERVAL 3 HOUR, NULL),
  ('done', 'mail', 1, 1.00, NOW() - INTERVAL 4 HOUR, NULL);
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_shapes_types_nulls_timeouts_and_writes() {
    let db = blocking(MariaDb::start);
    blocking(|| db.sql(MARIADB_JOBS));
    let mut c = config(
        &db.url(),
        None,
        &[
            ("jobs.total", "SELECT count(*) FROM jobs"),
            ("jobs.by_status", "SELECT status, count(*) FROM jobs GROUP BY status"),
            (
                "queues",
                "SELECT queue, count(*) AS pending, sum(cost) AS cost, avg(attempts) AS attempts \
                 FROM jobs WHERE status = 'pending' GROUP BY queue",
            ),
            (
                "jobs.oldest_pending_seconds",
                "SELECT TIMESTAMPDIFF(SECOND, min(run_at), NOW()) FROM jobs WHERE status = 'pending'",
            ),
            (
                "types",
                "SELECT 'all', CAST(1 AS SIGNED) AS i, max(big) AS u, 2.5e0 AS f, 12.34 AS num, \
                 TRUE AS yes, TIMEDIFF('10:00:00', '08:59:30') AS age, \
                 TIMEDIFF('08:00:00', '09:00:00') AS negative, NULL AS nothing FROM jobs",
            ),
            ("status", "SHOW GLOBAL STATUS LIKE 'Uptime'"),
            ("none", "SELECT max(run_at) FROM jobs WHERE status = 'nonexistent'"),
            ("notes", "SELECT status, note FROM jobs WHERE status = 'failed'"),
            ("slow", "SELECT SLEEP(30)"),
            ("inserted", "INSERT INTO jobs (status, queue, attempts, run_at) VALUES ('x', 'x', 0, NOW())"),
            ("updated", "UPDATE jobs SET status = 'done'"),
            ("deleted", "DELETE FROM jobs"),
            ("missing", "SELECT count(*) FROM no_such_table"),
        ],
    );
    let slow = c.query.iter().position(|q| q.name == "slow").unwrap();
    c.query[slow].timeout = Some(Duration::from_millis(500));
    let mut h = harness(c);
    let published = h.collect().await.expect("the run itself succeeds");
    let expected = [
        ("jobs.total", 6.0),
        ("jobs.by_status.pending", 3.0),
        ("jobs.by_status.failed", 1.0),
        ("jobs.by_status.done", 2.0),
        ("queues.mail.pending", 2.0),
        ("queues.mail.cost", 3.75),
        ("queues.mail.attempts", 1.0),
        ("queues.sms.pending", 1.0),
        ("types.all.i", 1.0),
        ("types.all.u", u64::MAX as f64),
        ("types.all.f", 2.5),
        ("types.all.num", 12.34),
        ("types.all.yes", 1.0),
        ("types.all.age", 3630.0),
        ("types.all.negative", -3600.0),
    ];
    for (name, value) in expected {
        assert_eq!(published.get(name), Some(value), "{name}: {published:?}");
    }
    for absent in [
        "queues.sms.cost",
        "types.all.nothing",
        "none",
        "notes.failed",
    ] {
        assert_eq!(published.get(absent), None, "{absent}");
    }
    let oldest = published.get("jobs.oldest_pending_seconds").unwrap();
    assert!((1260.0..1300.0).contains(&oldest), "{oldest}");
    assert!(
        published.get("status.Uptime").is_some_and(|u| u >= 0.0),
        "SHOW STATUS text numbers"
    );

    let notes = failure(&published, "query notes", "parse");
    assert!(
        notes.contains("\"note\"") && notes.contains("smtp down"),
        "{notes}"
    );
    let m = failure(&published, "query slow", "timeout");
    assert!(m.contains("cancelled by the database"), "{m}");
    let processes = blocking(|| {
        db.sql("SELECT count(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%SLEEP(30)%' AND ID <> CONNECTION_ID()")
    });
    assert_eq!(
        processes.trim(),
        "0",
        "the slow query still runs on the server"
    );
    for part in ["query inserted", "query updated", "query deleted"] {
        let m = failure(&published, part, "status");
        assert!(m.contains("read-only") || m.contains("READ ONLY"), "{m}");
    }
    failure(&published, "query missing", "status");
    let unchanged = blocking(|| db.sql("SELECT count(*), sum(status = 'done') FROM carat.jobs"));
    assert_eq!(
        unchanged.split_whitespace().collect::<Vec<_>>(),
        ["6", "2"],
        "nothing was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_restarted_between_runs() {
    let mut db = blocking(MariaDb::start);
    blocking(|| db.sql(MARIADB_JOBS));
    survives_restarts(&mut db).await;
}

/// A server (with the six-row jobs table) restarted between two runs costs
/// nothing but the reconnect; while it is down the run fails (`connect`);
/// once it is back the next run publishes again.
async fn survives_restarts(server: &mut impl ServerFixture) {
    let mut h = harness(config(
        &server.url(),
        None,
        &[("total", "SELECT count(*) FROM jobs")],
    ));
    assert_eq!(h.collect().await.unwrap().get("total"), Some(6.0));
    blocking(|| server.restart());
    // The connection of the first run died with the server: the next run
    // opens another and publishes as if nothing happened.
    let after = h.collect().await.expect("reconnected after the restart");
    assert_eq!(after.get("total"), Some(6.0));
    blocking(|| server.stop());
    let down = h.collect().await.expect_err("the server is down");
    assert_eq!(down.label(), "connect", "{down}");
    blocking(|| server.start_again());
    assert_eq!(h.collect().await.unwrap().get("total"), Some(6.0));
}

/// The agent itself, as an operator runs it: the worked example of the
/// collector's README, its lines, and the password nowhere in its output
/// or in `check-config`'s, even when a query fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_publishes_the_readme_example_and_never_shows_the_password() {
    let pg = blocking(Postgres::start);
    blocking(|| pg.psql(PG_JOBS));
    let secret = pg.password();
    let config = format!(
        r#"
[agent]
hostname = "app1"
interval = 1
splay = 0

[collector.sql.jobs]
url = "postgres://carat:{secret}@127.0.0.1:{port}/carat"

[[collector.sql.jobs.query]]
name = "jobs.by_status"
sql = "SELECT status, count(*) FROM jobs GROUP BY status"

[[collector.sql.jobs.query]]
name = "jobs.oldest_pending_seconds"
sql = """
SELECT extract(epoch FROM now() - min(run_at))::bigint
FROM jobs WHERE status = 'pending' AND run_at <= now()
"""

[[collector.sql.jobs.query]]
name = "broken"
sql = "SELECT status FROM jobs LIMIT 1"

[output.stdout]
"#,
        port = pg.port()
    );
    let wanted = "servers.app1.sql.jobs.jobs.by_status.pending 3 ";
    let (lines, log) = blocking(|| {
        let mut agent = AgentProcess::start(&config);
        let found = agent.wait_for(Duration::from_secs(30), |a| {
            a.produced().iter().any(|l| l.starts_with(wanted))
        });
        agent.stop(Duration::from_secs(10));
        assert!(found, "no {wanted:?}; stderr:\n{}", agent.stderr());
        (agent.produced(), agent.stderr())
    });
    // The failing query is logged once, and the log never shows the password.
    assert!(log.contains("query broken failed"), "{log}");
    assert!(
        !log.contains(secret),
        "the password shows in the log: {log}"
    );
    for prefix in [
        "servers.app1.sql.jobs.jobs.by_status.failed 1 ",
        "servers.app1.sql.jobs.jobs.by_status.done 2 ",
        "servers.app1.sql.jobs.jobs.oldest_pending_seconds 12",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(prefix)),
            "no {prefix}: {lines:?}"
        );
    }
    let dir = support::server::temp_dir("sql-check");
    let file = dir.path().join("carat.toml");
    std::fs::write(&file, &config).unwrap();
    let check = support::bin::carat()
        .arg("check-config")
        .arg("-c")
        .arg(&file)
        .output()
        .unwrap();
    let once = support::bin::carat()
        .args(["once", "--gap", "0.1", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    let once_err = String::from_utf8_lossy(&once.stderr);
    assert!(
        once_err.contains("sql.jobs: query broken:") && once_err.contains("is not a number"),
        "{once_err}"
    );
    for output in [&check.stdout, &check.stderr, &once.stdout, &once.stderr] {
        let text = String::from_utf8_lossy(output);
        assert!(!text.contains(secret), "the password shows: {text}");
    }
}
