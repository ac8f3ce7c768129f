//! Unit tests over recorded `serverStatus` documents of real servers
//! (`tests/fixtures`, with their sources in its README): two readings each,
//! the second made from the first with known increments, and the expected
//! values worked out by hand from those increments.

use std::time::{Duration, Instant, SystemTime};

use carat_collector::publish::Publisher;
use carat_collector::testing::{publish, Published};
use mongodb::bson::{doc, Bson, Document};

use super::*;

#[path = "../tests/support/recorded.rs"]
mod recorded;

use recorded::{add, fixture, set, MMAPV1_30, WT_30, WT_60, WT_80};

/// Reads documents the way `collect` does, stamped with a test clock, and
/// publishes them through the agent's publisher (its rate rules).
struct Reader {
    config: MongodbConfig,
    walk: Walk,
    intervals: derived::Intervals,
    publisher: Publisher,
    start: Instant,
}

impl Reader {
    fn new(config: MongodbConfig) -> Reader {
        Reader {
            config,
            walk: Walk::default(),
            intervals: derived::Intervals::default(),
            publisher: Publisher::default(),
            start: Instant::now(),
        }
    }

    fn read(&mut self, status: &Document, at_secs: u64) -> Published {
        let mut batch = Batch::new();
        batch.stamp(self.start + Duration::from_secs(at_secs), SystemTime::now());
        let style = KeyStyle {
            replace_dashes: self.config.replace_dashes,
        };
        publish_status(status, "", &self.config, style, &mut self.walk, &mut batch);
        self.intervals.publish(status, "", &mut batch);
        publish(&mut self.publisher, &batch)
    }
}

fn close(published: &Published, name: &str, expected: f64) {
    let got = published
        .get(name)
        .unwrap_or_else(|| panic!("{name} not published"));
    assert!(
        (got - expected).abs() < 1e-9 * expected.abs().max(1.0),
        "{name}: {got} != {expected}"
    );
}

fn derived_names(p: &Published) -> Vec<&str> {
    p.names()
        .filter(|n| n.contains("_per_sec.") || n.starts_with("percent."))
        .collect()
}

#[test]
fn mmapv1_3_0_leaves_rates_and_lock_waits() {
    let a = fixture(MMAPV1_30);
    let mut b = a.clone();
    add(&mut b, &["uptimeMillis"], 10_000);
    add(&mut b, &["opcounters", "insert"], 500);
    add(&mut b, &["opcounters", "command"], 30);
    add(&mut b, &["network", "bytesIn"], 4096);
    add(&mut b, &["backgroundFlushing", "flushes"], 1);
    add(&mut b, &["extra_info", "page_faults"], 20);
    add(&mut b, &["asserts", "user"], 5);
    add(
        &mut b,
        &["locks", "MMAPV1Journal", "timeAcquiringMicros", "R"],
        250_000,
    );
    add(
        &mut b,
        &["locks", "MMAPV1Journal", "timeAcquiringMicros", "w"],
        0,
    );

    let mut reader = Reader::new(MongodbConfig::default());
    let first = reader.read(&a, 0);
    // Leaves as recorded: 141 numeric leaves in the document.
    assert_eq!(
        first.get("connections.current"),
        leaves::number_at(&a, &["connections", "current"])
    );
    assert_eq!(first.get("globalLock.totalTime"), Some(618_021_658_000.0));
    assert_eq!(
        first.get("locks.MMAPV1Journal.timeAcquiringMicros.R"),
        Some(7_163_519.0)
    );
    assert_eq!(first.get("backgroundFlushing.flushes"), Some(1883.0));
    // localTime, a date: seconds since the epoch (2015-05-16).
    let local = first.get("localTime").unwrap();
    assert!(
        (1_431_734_400.0..1_431_820_800.0).contains(&local),
        "{local}"
    );
    assert_eq!(first.metrics.len(), 141);
    // The first reading gives no rate and no percentage.
    assert_eq!(derived_names(&first), Vec::<&str>::new());

    let second = reader.read(&b, 10);
    close(&second, "opcounters_per_sec.insert", 50.0);
    close(&second, "opcounters_per_sec.command", 3.0);
    close(&second, "opcounters_per_sec.query", 0.0);
    close(&second, "opcountersRepl_per_sec.insert", 0.0);
    close(&second, "network_per_sec.bytesIn", 409.6);
    close(&second, "backgroundFlushing_per_sec.flushes", 0.1);
    close(&second, "extra_info_per_sec.page_faults", 2.0);
    close(&second, "asserts_per_sec.user", 0.5);
    // 250,000 µs waited over 10,000 ms of uptime: 2.5 %.
    close(&second, "percent.locks_wait.MMAPV1Journal.R", 2.5);
    close(&second, "percent.locks_wait.MMAPV1Journal.w", 0.0);
    // 3.0 has no lockTime, indexCounters or timeLockedMicros any more.
    for gone in [
        "percent.globalLock.lockTime",
        "percent.indexCounters.btree.misses",
    ] {
        assert_eq!(second.get(gone), None, "{gone}");
    }
    assert!(!second.names().any(|n| n.starts_with("percent.locks.")));
    assert!(!second.names().any(|n| n.starts_with("wiredtiger.")));
}

/// MMAPv1 2.2 to 2.6 shapes, for Diamond's three percentages. No recording
/// of such a server with a licence that allows copying it was found (see
/// the fixtures' README), so this document holds only the keys involved,
/// laid out as those servers laid them out.
fn mmapv1_26(uptime_ms: i64, lock: i64, total: i64, acc: i64, miss: i64, big_r: i64) -> Document {
    doc! {
        "uptimeMillis": uptime_ms,
        "globalLock": { "totalTime": total, "lockTime": lock },
        "indexCounters": { "accesses": acc, "hits": acc - miss, "misses": miss, "resets": 0_i32, "missRatio": 0.0 },
        "locks": {
            ".": { "timeLockedMicros": { "R": big_r, "W": big_r / 2 },
                   "timeAcquiringMicros": { "R": 10_i64, "W": 20_i64 } },
            "admin": { "timeLockedMicros": { "r": big_r / 10, "w": 0_i64 } },
        },
    }
}

#[test]
fn mmapv1_2_6_diamond_percentages() {
    let mut reader = Reader::new(MongodbConfig::default());
    let first = reader.read(
        &mmapv1_26(60_000, 1_000_000, 60_000_000, 5_000, 100, 2_000_000),
        0,
    );
    assert_eq!(derived_names(&first), Vec::<&str>::new());
    // The global lock key `.` is Diamond's `_global_` in the leaves too.
    assert_eq!(
        first.get("locks._global_.timeLockedMicros.R"),
        Some(2_000_000.0)
    );
    // +10 s of uptime; lockTime +250,000 of totalTime +10,000,000 µs;
    // misses +25 of accesses +1,000; `.` R +1,000,000 µs, W +500,000 µs;
    // admin r +100,000 µs.
    let second = reader.read(
        &mmapv1_26(70_000, 1_250_000, 70_000_000, 6_000, 125, 3_000_000),
        10,
    );
    close(&second, "percent.globalLock.lockTime", 2.5);
    close(&second, "percent.indexCounters.btree.misses", 2.5);
    close(&second, "percent.locks._global_.read", 10.0);
    close(&second, "percent.locks._global_.write", 5.0);
    close(&second, "percent.locks.admin.read", 1.0);
    close(&second, "percent.locks.admin.write", 0.0);
    close(&second, "percent.locks_wait._global_.R", 0.0);
}

#[test]
fn a_restart_is_told_by_the_uptime_even_when_totals_grew() {
    // Index counters are not measured against the uptime: after a restart
    // they may well be above the previous reading (a busy server, a long
    // interval), and only the uptime going down tells the restart.
    let mut reader = Reader::new(MongodbConfig::default());
    reader.read(&mmapv1_26(600_000, 0, 600_000_000, 1_000, 10, 0), 0);
    let after_restart = reader.read(&mmapv1_26(5_000, 0, 5_000_000, 3_000, 300, 0), 10);
    assert_eq!(
        after_restart.get("percent.indexCounters.btree.misses"),
        None
    );
    let next = reader.read(&mmapv1_26(15_000, 0, 15_000_000, 4_000, 310, 0), 20);
    close(&next, "percent.indexCounters.btree.misses", 1.0);
}

#[test]
fn indexcounters_of_2_0_are_nested_under_btree() {
    let status = |acc: i64, miss: i64| {
        doc! { "uptime": 100.0, "indexCounters": { "btree": { "accesses": acc, "misses": miss } } }
    };
    let mut reader = Reader::new(MongodbConfig::default());
    reader.read(&status(100, 10), 0);
    let second = reader.read(&status(300, 30), 10);
    close(&second, "percent.indexCounters.btree.misses", 10.0);
}

#[test]
fn wiredtiger_6_0_cache_tickets_and_lock_waits() {
    let a = fixture(WT_60);
    let mut b = a.clone();
    add(&mut b, &["uptimeMillis"], 10_000);
    add(
        &mut b,
        &["locks", "Global", "timeAcquiringMicros", "r"],
        400_000,
    );
    add(&mut b, &["opcounters", "insert"], 1_000);
    add(&mut b, &["opcountersRepl", "update"], 20);
    add(&mut b, &["asserts", "user"], 3);
    add(&mut b, &["extra_info", "page_faults"], 7);
    add(
        &mut b,
        &["wiredTiger", "cache", "tracked dirty bytes in the cache"],
        100_000_000,
    );
    add(
        &mut b,
        &["wiredTiger", "concurrentTransactions", "read", "out"],
        32,
    );
    add(
        &mut b,
        &["wiredTiger", "concurrentTransactions", "read", "available"],
        -32,
    );

    let mut reader = Reader::new(MongodbConfig::default());
    let first = reader.read(&a, 0);
    assert!(first.metrics.len() > 1_500, "{}", first.metrics.len());
    assert_eq!(
        first.get("wiredTiger.cache.bytes_currently_in_the_cache"),
        Some(1_302_626_347.0)
    );
    // 1,302,626,347 of 1,610,612,736 bytes; 56,948,810 dirty.
    close(
        &first,
        "wiredtiger.cache.percent_used",
        80.877_688_216_666_37,
    );
    close(
        &first,
        "wiredtiger.cache.percent_dirty",
        3.535_847_490_032_514,
    );
    close(&first, "wiredtiger.tickets.read.out", 0.0);
    close(&first, "wiredtiger.tickets.read.available", 128.0);
    close(&first, "wiredtiger.tickets.write.total", 128.0);
    close(&first, "wiredtiger.tickets.read.percent_used", 0.0);
    assert_eq!(first.get("globalLock.activeClients.total"), Some(0.0));
    assert_eq!(first.get("globalLock.currentQueue.total"), Some(0.0));
    assert_eq!(derived_names(&first), Vec::<&str>::new());

    let second = reader.read(&b, 10);
    close(&second, "percent.locks_wait.Global.r", 4.0);
    close(&second, "opcounters_per_sec.insert", 100.0);
    close(&second, "opcountersRepl_per_sec.update", 2.0);
    close(&second, "asserts_per_sec.user", 0.3);
    close(&second, "extra_info_per_sec.page_faults", 0.7);
    // (56,948,810 + 100,000,000) of 1,610,612,736 bytes.
    close(
        &second,
        "wiredtiger.cache.percent_dirty",
        9.744_664_654_135_704,
    );
    close(&second, "wiredtiger.tickets.read.out", 32.0);
    close(&second, "wiredtiger.tickets.read.percent_used", 25.0);
    // A WiredTiger server has no global lock time.
    assert_eq!(second.get("percent.globalLock.lockTime"), None);
}

#[test]
fn wiredtiger_8_0_tickets_from_queues_execution() {
    let status = fixture(WT_80);
    let published = Reader::new(MongodbConfig::default()).read(&status, 0);
    assert!(
        published.metrics.len() > 2_500,
        "{}",
        published.metrics.len()
    );
    // 68,682 of 15,976,103,936 bytes.
    close(
        &published,
        "wiredtiger.cache.percent_used",
        0.000_429_904_564_186_230_4,
    );
    close(&published, "wiredtiger.tickets.read.total", 8.0);
    close(&published, "wiredtiger.tickets.write.available", 8.0);
    assert_eq!(
        published.get("queues.execution.read.normalPriority.finishedProcessing"),
        Some(13.0)
    );
}

#[test]
fn wiredtiger_3_0_as_diamond_read_it() {
    // Diamond's own fixture: the same names Diamond's test expected.
    let published = Reader::new(MongodbConfig::default()).read(&fixture(WT_30), 0);
    assert_eq!(published.get("opcounters.query"), Some(125_030_709.0));
    assert_eq!(
        published.get("wiredTiger.cache.maximum_bytes_configured"),
        Some(16_106_127_360.0)
    );
    close(
        &published,
        "wiredtiger.cache.percent_used",
        12_884_285_300.0 / 16_106_127_360.0 * 100.0,
    );
    close(
        &published,
        "wiredtiger.tickets.read.percent_used",
        100.0 / 128.0,
    );
}

#[test]
fn a_restart_between_readings_publishes_no_rate_and_no_percentage() {
    let a = fixture(WT_60);
    let mut restarted = a.clone();
    set(&mut restarted, &["uptimeMillis"], 5_000);
    set(&mut restarted, &["uptime"], 5);
    set(&mut restarted, &["opcounters", "insert"], 10);
    set(&mut restarted, &["asserts", "user"], 0);
    set(
        &mut restarted,
        &["locks", "Global", "timeAcquiringMicros", "r"],
        100,
    );
    let mut after = restarted.clone();
    add(&mut after, &["uptimeMillis"], 10_000);
    add(&mut after, &["opcounters", "insert"], 100);
    add(
        &mut after,
        &["locks", "Global", "timeAcquiringMicros", "r"],
        1_000_000,
    );

    let mut reader = Reader::new(MongodbConfig::default());
    reader.read(&a, 0);
    let second = reader.read(&restarted, 10);
    assert_eq!(second.get("opcounters_per_sec.insert"), None);
    assert_eq!(second.get("asserts_per_sec.user"), None);
    assert_eq!(second.get("percent.locks_wait.Global.r"), None);
    assert!(
        !second.names().any(|n| n.starts_with("percent.")),
        "{:?}",
        derived_names(&second)
    );
    // The readings after the restart are the new base.
    let third = reader.read(&after, 20);
    close(&third, "opcounters_per_sec.insert", 10.0);
    close(&third, "percent.locks_wait.Global.r", 10.0);
}

#[test]
fn simple_keeps_mongostat_sections_and_every_derived_metric() {
    let a = fixture(WT_60);
    let mut b = a.clone();
    add(&mut b, &["uptimeMillis"], 10_000);
    add(&mut b, &["opcounters", "insert"], 10);
    let config = MongodbConfig {
        simple: true,
        ..MongodbConfig::default()
    };
    let mut reader = Reader::new(config);
    reader.read(&a, 0);
    let published = reader.read(&b, 10);
    assert!(published.get("connections.current").is_some());
    assert!(published
        .get("wiredTiger.cache.bytes_currently_in_the_cache")
        .is_none());
    close(&published, "opcounters_per_sec.insert", 1.0);
    close(
        &published,
        "wiredtiger.cache.percent_used",
        80.877_688_216_666_37,
    );
    assert!(published.get("percent.locks_wait.Global.r").is_some());
    for name in published.names() {
        let top = name.split('.').next().unwrap();
        assert!(
            SIMPLE_SECTIONS.contains(&top)
                || top.ends_with("_per_sec")
                || top == "percent"
                || top == "wiredtiger",
            "{name}"
        );
    }
}

#[test]
fn replace_dashes_can_be_turned_off() {
    let status = fixture(WT_60);
    let dashed = status
        .get_document("wiredTiger")
        .unwrap()
        .keys()
        .find(|k| k.contains('-'))
        .cloned()
        .expect("a key with a dash in wiredTiger");
    let on = Reader::new(MongodbConfig::default()).read(&status, 0);
    let off = Reader::new(MongodbConfig {
        replace_dashes: false,
        ..MongodbConfig::default()
    })
    .read(&status, 0);
    let with_dash = format!("wiredTiger.{}.", dashed.replace(' ', "_"));
    let with_dot = format!("wiredTiger.{}.", dashed.replace(' ', "_").replace('-', "."));
    assert!(
        off.names().any(|n| n.starts_with(&with_dash)),
        "{with_dash}"
    );
    assert!(!on.names().any(|n| n.starts_with(&with_dash)));
    assert!(on.names().any(|n| n.starts_with(&with_dot)), "{with_dot}");
}

#[test]
fn bad_documents_are_skipped_without_a_panic() {
    let mut reader = Reader::new(MongodbConfig::default());
    // Strings where numbers belong, and a section that is not a document.
    let strange = doc! {
        "uptimeMillis": "soon",
        "opcounters": { "insert": "12", "query": -4_i64, "update": f64::NAN, "delete": 3_i32 },
        "network": "down",
        "globalLock": { "totalTime": "x", "lockTime": 5_i32 },
        "wiredTiger": { "cache": { "maximum bytes configured": "lots", "bytes currently in the cache": 1_i32 },
                         "concurrentTransactions": { "read": { "out": "1", "totalTickets": 0_i32 } } },
        "locks": { "Global": "none", "Database": { "timeAcquiringMicros": { "r": "7" } } },
        "huge": (0..200_000).map(Bson::Int32).collect::<Vec<_>>(),
        "n": 1_i32,
    };
    let first = reader.read(&strange, 0);
    let second = reader.read(&strange, 10);
    assert_eq!(second.get("n"), Some(1.0));
    assert_eq!(second.get("opcounters.delete"), Some(3.0));
    assert_eq!(second.get("opcounters_per_sec.delete"), Some(0.0));
    // -4 and NaN are no counter; NaN is not published as a leaf either.
    assert_eq!(second.get("opcounters_per_sec.query"), None);
    assert_eq!(second.get("opcounters.update"), None);
    assert!(!first.names().any(|n| n.starts_with("huge")));
    assert!(!second.names().any(|n| n.contains("percent")));
    // No sections at all.
    let empty = reader.read(&Document::new(), 20);
    assert!(empty.metrics.is_empty(), "{:?}", empty.metrics);
}

#[test]
fn options_that_cannot_work_are_refused_at_their_name() {
    let env = Environment::default();
    let build = |config: MongodbConfig| {
        Mongodb::new(config, &env)
            .err()
            .map(|e| (e.invalid_option().map(str::to_owned), e.to_string()))
    };
    let cases: Vec<(MongodbConfig, &str, &str)> = vec![
        (
            MongodbConfig {
                uri: Some("mongodb://a".into()),
                hosts: vec!["b".into()],
                ..Default::default()
            },
            "hosts",
            "not both",
        ),
        (
            MongodbConfig {
                password: Some("p".into()),
                ..Default::default()
            },
            "password",
            "needs a username",
        ),
        (
            MongodbConfig {
                tls_ca_file: Some("/x.pem".into()),
                ..Default::default()
            },
            "tls_ca_file",
            "tls = true",
        ),
        (
            MongodbConfig {
                tls: true,
                tls_insecure: true,
                tls_ca_file: Some("/x.pem".into()),
                ..Default::default()
            },
            "tls_ca_file",
            "tls_insecure",
        ),
        (
            MongodbConfig {
                collection_stats: true,
                ..Default::default()
            },
            "collection_stats",
            "databases",
        ),
        (
            MongodbConfig {
                uri: Some("http://db1".into()),
                ..Default::default()
            },
            "uri",
            "",
        ),
        (
            MongodbConfig {
                uri: Some("mongodb://u:hunter2@db1:99999".into()),
                ..Default::default()
            },
            "uri",
            "",
        ),
        (
            MongodbConfig {
                uri: Some("mongodb://u:p@db1".into()),
                username: Some("v".into()),
                ..Default::default()
            },
            "username",
            "one place",
        ),
        (
            MongodbConfig {
                uri: Some("mongodb://db1,db2".into()),
                direct_connection: Some(true),
                ..Default::default()
            },
            "direct_connection",
            "several",
        ),
        (
            MongodbConfig {
                hosts: vec!["db1:x".into()],
                ..Default::default()
            },
            "hosts",
            "db1:x",
        ),
        (
            MongodbConfig {
                hosts: vec!["@db1".into()],
                ..Default::default()
            },
            "hosts",
            "empty alias",
        ),
        (
            MongodbConfig {
                hosts: vec!["a@db1".into(), "a@db2".into()],
                ..Default::default()
            },
            "hosts",
            "different aliases",
        ),
        (
            MongodbConfig {
                request_timeout: Duration::ZERO,
                ..Default::default()
            },
            "request_timeout",
            "",
        ),
    ];
    for (config, option, words) in cases {
        let (got_option, message) = build(config).unwrap_or_else(|| panic!("{option}: accepted"));
        assert_eq!(got_option.as_deref(), Some(option), "{message}");
        assert!(message.contains(words), "{option}: {message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
}

#[test]
fn each_host_publishes_under_its_alias_or_its_host() {
    let env = Environment::default();
    let m = Mongodb::new(
        MongodbConfig {
            hosts: vec![
                "main@db1.example.com:27017".into(),
                "db2.example.com:27018".into(),
            ],
            ..Default::default()
        },
        &env,
    )
    .unwrap();
    let prefixes: Vec<&str> = m.servers.iter().map(|s| s.prefix.as_str()).collect();
    assert_eq!(prefixes, ["main", "db2_example_com_27018"]);
    // One host: no prefix, unless it has an alias (as Diamond did).
    for (host, prefix) in [("db1:27017", ""), ("a@db1:27017", "a")] {
        let m = Mongodb::new(
            MongodbConfig {
                hosts: vec![host.into()],
                ..Default::default()
            },
            &env,
        )
        .unwrap();
        assert_eq!(m.servers[0].prefix, prefix);
    }
    let m = Mongodb::new(MongodbConfig::default(), &env).unwrap();
    assert_eq!(m.servers[0].display, DEFAULT_HOST);
    let m = Mongodb::new(
        MongodbConfig {
            uri: Some("mongodb://carat:s3cret@db1:27017/?authSource=admin".into()),
            ..Default::default()
        },
        &env,
    )
    .unwrap();
    assert_eq!(
        m.servers[0].display,
        "mongodb://carat:***@db1:27017/?authSource=admin"
    );
    assert!(!format!("{:?}", m.config).contains("s3cret"));
}
