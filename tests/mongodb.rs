//! The mongodb collector with the official driver against real
//! wire-protocol servers on 127.0.0.1 (see `support::mongodb`): nx-27017
//! for what a live server does (connections, databases, going away and
//! coming back), and the replay server for recorded documents of real
//! mongod releases over the wire, with SCRAM-SHA-256 authentication; then
//! the agent itself on those documents.
//!
//! With `CARAT_TEST_MONGODB_URI` set (a `mongodb://` URI of a real mongod,
//! 4.4 or later, whose user has the clusterMonitor role), the first test
//! also reads that server.

#![cfg(feature = "mongodb")]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use carat_collector::testing::{Harness, Published};
use carat_collector::Environment;
use carat_mongodb::{Mongodb, MongodbConfig};
use mongodb::bson::{doc, Document};
use recorded::{add, fixture, fixtures_dir, MMAPV1_30, REPL_80, WT_60, WT_80};
use support::agent::AgentProcess;
use support::expect_error;
use support::mongodb::WireServer;

#[path = "../collectors/mongodb/tests/support/recorded.rs"]
mod recorded;

const USER: &str = "carat";
const PASSWORD: &str = "s3cret-Pw";

fn harness(config: MongodbConfig) -> Harness<Mongodb> {
    Harness::<Mongodb>::new(config, Environment::default()).expect("a valid configuration")
}

fn host(server: &WireServer) -> MongodbConfig {
    MongodbConfig {
        hosts: vec![server.address()],
        request_timeout: Duration::from_secs(2),
        ..MongodbConfig::default()
    }
}

fn get(p: &Published, name: &str) -> f64 {
    p.get(name)
        .unwrap_or_else(|| panic!("{name} was not published; got {:?}", p.metrics.keys()))
}

/// Connections from this process to `port` that hold a descriptor: every
/// TCP state but TIME_WAIT (a socket the driver forgot after the server
/// went away sits in CLOSE_WAIT, and is counted).
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/self/net/tcp").unwrap_or_default();
    let port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[2].ends_with(&port) && fields[3] != "06"
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nx_27017_publishes_what_it_reports_with_databases_and_collections() {
    let nx = support::blocking(WireServer::nx);
    // Data for dbStats and collStats, written with the driver.
    let client =
        mongodb::Client::with_uri_str(format!("mongodb://{}/?directConnection=true", nx.address()))
            .await
            .unwrap();
    let jobs = client.database("app").collection::<Document>("jobs");
    jobs.insert_many([doc! { "state": "queued" }, doc! { "state": "failed" }])
        .await
        .unwrap();
    client
        .database("app")
        .collection::<Document>("scratch_1")
        .insert_one(doc! { "a": 1 })
        .await
        .unwrap();
    let mut h = harness(MongodbConfig {
        databases: carat_collector::options::Patterns::new(["^app$"]).unwrap(),
        collection_stats: true,
        ignore_collections: carat_collector::options::Patterns::new(["^scratch_"]).unwrap(),
        ..host(&nx)
    });
    let first = h.collect().await.unwrap();
    assert!(get(&first, "connections.current") >= 1.0);
    assert!(get(&first, "mem.resident") > 0.0);
    assert!(first.get("uptime").is_some() && first.get("asserts.user").is_some());
    assert_eq!(get(&first, "globalLock.totalTime"), 0.0);
    assert_eq!(get(&first, "databases.app.objects"), 3.0);
    assert_eq!(get(&first, "databases.app.collections"), 2.0);
    assert_eq!(get(&first, "databases.app.jobs.count"), 2.0);
    assert!(
        !first.names().any(|n| n.contains("scratch")),
        "{:?}",
        first.metrics.keys()
    );
    // Only the databases asked for.
    assert!(!first.names().any(|n| n.starts_with("databases.admin")));
    let second = h.collect_after(Duration::from_secs(10)).await.unwrap();
    assert_eq!(get(&second, "asserts_per_sec.user"), 0.0);

    if let Ok(uri) = std::env::var("CARAT_TEST_MONGODB_URI") {
        let mut real = harness(MongodbConfig {
            uri: Some(uri),
            ..MongodbConfig::default()
        });
        let first = real.collect().await.expect("the real mongod answers");
        assert!(get(&first, "connections.current") >= 1.0);
        let second = real.collect_after(Duration::from_secs(10)).await.unwrap();
        assert!(second.get("opcounters_per_sec.command").is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_is_an_error_each_run_then_values_again() {
    let mut nx = support::blocking(WireServer::nx);
    let port = nx.port();
    let mut h = harness(host(&nx));
    h.collect().await.expect("the first reading");
    let baseline = connections_to(port);
    assert!((1..=2).contains(&baseline), "{baseline} connections");
    for cycle in 0..3 {
        support::blocking(|| nx.stop()).unwrap();
        for _ in 0..2 {
            let started = Instant::now();
            let message = expect_error(h.collect().await, "connect");
            assert!(message.contains(&nx.address()), "{message}");
            // The server selection timeout is the request timeout (2 s).
            assert!(
                started.elapsed() < Duration::from_secs(4),
                "{:?}",
                started.elapsed()
            );
        }
        support::blocking(|| nx.restart());
        let back = h
            .collect()
            .await
            .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        assert!(get(&back, "connections.current") >= 1.0);
        // The same client: as many connections as before, none left behind.
        assert_eq!(connections_to(port), baseline, "cycle {cycle}");
    }
    // Dropping the collector (the agent rebuilds one after a timeout, or
    // on reload) closes its connections.
    drop(h);
    assert!(
        support::eventually(Duration::from_secs(10), || connections_to(port) == 0).await,
        "{} connections left after the collector was dropped",
        connections_to(port)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_where_nothing_listens_is_a_connect_error() {
    let port = support::server::free_ports(1, 0)[0];
    let mut h = harness(MongodbConfig {
        hosts: vec![format!("127.0.0.1:{port}")],
        request_timeout: Duration::from_secs(1),
        ..MongodbConfig::default()
    });
    let started = Instant::now();
    let message = expect_error(h.collect().await, "connect");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(message.contains("refused"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_down_of_two_is_a_failed_part_and_the_other_publishes() {
    let nx = support::blocking(WireServer::nx);
    let port = support::server::free_ports(1, 0)[0];
    let mut h = harness(MongodbConfig {
        hosts: vec![
            format!("up@{}", nx.address()),
            format!("down@127.0.0.1:{port}"),
        ],
        request_timeout: Duration::from_secs(1),
        ..MongodbConfig::default()
    });
    let published = h
        .collect()
        .await
        .expect("one server answered: the run succeeds");
    assert!(get(&published, "up.connections.current") >= 1.0);
    assert!(!published.names().any(|n| n.starts_with("down.")));
    let down = published
        .failed_part(&format!("server 127.0.0.1:{port}"))
        .unwrap_or_else(|| panic!("{:?}", published.failed_parts));
    assert_eq!(down.label, "connect", "{down:?}");
    assert!(down.message.contains("refused"), "{down:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_ends_the_run_at_its_timeout() {
    let silent =
        support::blocking(|| WireServer::replay(&fixtures_dir(), &["--silent-after-accept"]));
    let mut h = harness(MongodbConfig {
        request_timeout: Duration::from_secs(1),
        ..host(&silent)
    });
    let started = Instant::now();
    let message = expect_error(h.collect().await, "timeout");
    let took = started.elapsed();
    assert!(message.contains(&silent.address()), "{message}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

/// Writes `readings` readings of the recorded `name` into `dir`, each 10 s
/// of uptime after the one before, with 1,000 more inserts and, where the
/// document has it, 400,000 µs more waiting for the global lock in shared
/// mode; returns their file names joined by commas.
fn readings(dir: &Path, name: &str, count: usize) -> String {
    let mut doc = fixture(name);
    let mut names = Vec::new();
    for i in 0..count {
        let file = format!("{i}-{name}");
        recorded::write(&dir.join(&file), doc.clone());
        names.push(file);
        add(&mut doc, &["uptimeMillis"], 10_000);
        add(&mut doc, &["opcounters", "insert"], 1_000);
        if doc
            .get_document("locks")
            .and_then(|l| l.get_document("Global"))
            .and_then(|g| g.get_document("timeAcquiringMicros"))
            .is_ok_and(|t| t.contains_key("r"))
        {
            add(
                &mut doc,
                &["locks", "Global", "timeAcquiringMicros", "r"],
                400_000,
            );
        }
    }
    std::fs::copy(fixtures_dir().join(REPL_80), dir.join(REPL_80)).unwrap();
    names.join(",")
}

/// A replay server answering `count` readings of the recorded `name` (see
/// [`readings`]) in turn, then the last, with `args` besides; with the
/// directory of the readings, which must live as long as the server.
fn replay_readings(name: &str, count: usize, args: &[&str]) -> (tempfile::TempDir, WireServer) {
    let dir = tempfile::tempdir().unwrap();
    let files = readings(dir.path(), name, count);
    let mut all = vec!["--server-status", files.as_str()];
    all.extend_from_slice(args);
    let server = WireServer::replay(dir.path(), &all);
    (dir, server)
}

/// The arguments of a replay server with the test's user.
const WITH_USER: [&str; 4] = ["--user", USER, "--password", PASSWORD];

fn authenticated(server: &WireServer) -> MongodbConfig {
    MongodbConfig {
        username: Some(USER.into()),
        password: Some(PASSWORD.into()),
        ..host(server)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_documents_over_the_wire_with_authentication() {
    for (name, leaf, lock_wait) in [
        (WT_60, "wiredTiger.cache.bytes_currently_in_the_cache", true),
        (WT_80, "queues.execution.read.totalTickets", false),
        (MMAPV1_30, "backgroundFlushing.flushes", false),
    ] {
        let args = [&WITH_USER[..], &["--repl-set-get-status", REPL_80]].concat();
        let (_dir, replay) = support::blocking(|| replay_readings(name, 2, &args));
        let recorded = fixture(name);
        let mut h = harness(MongodbConfig {
            replica: true,
            ..authenticated(&replay)
        });
        let first = h.collect().await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let path: Vec<&str> = leaf.split('.').collect();
        let expected = carat_mongodb::leaves::number_at(&recorded, &path)
            .or_else(|| {
                // The published name has `_` for the spaces of the key.
                let spaced: Vec<String> = path.iter().map(|p| p.replace('_', " ")).collect();
                let spaced: Vec<&str> = spaced.iter().map(String::as_str).collect();
                carat_mongodb::leaves::number_at(&recorded, &spaced)
            })
            .unwrap();
        assert_eq!(get(&first, leaf), expected, "{name}");
        assert!(first.metrics.len() > 100, "{name}: {}", first.metrics.len());
        // The recorded replica set: one healthy member, the primary.
        assert_eq!(get(&first, "replset.state"), 1.0);
        assert_eq!(get(&first, "replset.members.total"), 1.0);
        assert_eq!(get(&first, "replset.members.healthy"), 1.0);
        assert!(!first.names().any(|n| n.contains("_per_sec")), "{name}");

        let second = h.collect_after(Duration::from_secs(10)).await.unwrap();
        assert_eq!(get(&second, "opcounters_per_sec.insert"), 100.0, "{name}");
        if lock_wait {
            // 400,000 µs over 10,000 ms of uptime.
            assert_eq!(get(&second, "percent.locks_wait.Global.r"), 4.0, "{name}");
        }
        let third = h.collect_after(Duration::from_secs(10)).await.unwrap();
        assert_eq!(get(&third, "opcounters_per_sec.insert"), 0.0, "{name}");
        let log = replay.log_text();
        assert!(log.contains("saslContinue -> ok"), "{name}: {log}");
        // One client for all the runs: its monitoring connection and one
        // for commands, opened once (a client per run would open two more
        // each run).
        let mut connections: Vec<&str> = log
            .lines()
            .filter_map(|l| l.strip_prefix("conn ")?.split(' ').next())
            .collect();
        connections.sort_unstable();
        connections.dedup();
        assert!(
            connections.len() <= 2,
            "{name}: connections {connections:?}\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_or_none_is_a_clear_error_without_the_password() {
    let (_dir, replay) = support::blocking(|| replay_readings(WT_60, 1, &WITH_USER));
    let wrong = "not-the-Pw";
    let mut h = harness(MongodbConfig {
        password: Some(wrong.into()),
        ..authenticated(&replay)
    });
    let message = expect_error(h.collect().await, "status");
    assert!(
        message.contains("check username, password and auth_source"),
        "{message}"
    );
    assert!(message.contains(&replay.address()), "{message}");
    assert!(
        !message.contains(wrong) && !message.contains(PASSWORD),
        "{message}"
    );
    // Still refused on the next run, not a stuck client.
    expect_error(h.collect().await, "status");

    let mut h = harness(host(&replay));
    let message = expect_error(h.collect().await, "status");
    assert!(message.contains("clusterMonitor"), "{message}");

    // The password in a uri is hidden too.
    let mut h = harness(MongodbConfig {
        uri: Some(format!(
            "mongodb://{USER}:{wrong}@{}/?authSource=admin",
            replay.address()
        )),
        ..MongodbConfig::default()
    });
    let message = expect_error(h.collect().await, "status");
    assert!(!message.contains(wrong), "{message}");
    assert!(message.contains(&format!("{USER}:***@")), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_older_than_4_4_is_refused_with_the_reason() {
    // Wire version 3 is MongoDB 3.0.
    let args = ["--max-wire-version", "3", "--version", "3.0.2"];
    let (_dir, old) = support::blocking(|| replay_readings(MMAPV1_30, 1, &args));
    let mut h = harness(host(&old));
    let message = expect_error(h.collect().await, "status");
    assert!(message.contains("wire version 3"), "{message}");
    assert!(message.contains("4.4"), "{message}");
    eprintln!("what an operator sees: {message}");
}

#[test]
fn the_agent_publishes_recorded_documents_under_diamonds_paths() {
    let (_dir, replay) = replay_readings(WT_60, 4, &WITH_USER);
    let config = format!(
        r#"
[agent]
hostname = "db1"
interval = 0.5
splay = 0
self_metrics = false

[collector.mongodb]
hosts = ["{}"]
username = "{USER}"
password = "{PASSWORD}"

[output.stdout]
"#,
        replay.address()
    );
    let wanted = "servers.db1.mongo.percent.locks_wait.Global.r 4 ";
    let lines = AgentProcess::lines_until(&config, wanted, Duration::from_secs(20));
    let line_of = |name: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("servers.db1.mongo.{name} ")))
            .unwrap_or_else(|| panic!("no {name}"))
            .clone()
    };
    let cache = line_of("wiredTiger.cache.bytes_currently_in_the_cache");
    assert!(cache.contains(" 1302626347 "), "{cache}");
    line_of("wiredtiger.cache.percent_used");
    line_of("opcounters_per_sec.insert");
    line_of("connections.current");
}
