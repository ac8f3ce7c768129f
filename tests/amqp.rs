//! End to end against a real RabbitMQ: metrics published by the amqp output
//! arrive in a queue bound to the exchange in the formats carbon's AMQP
//! listener parses, and a broker outage loses nothing within the buffer's
//! bound.
#![cfg(feature = "amqp")]

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use carat::stats::get;
use lapin::options::{
    BasicGetOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use support::rabbitmq::RabbitMq;
use support::{blocking, collectors, config, sequence_toml, Running};

/// A message taken from a queue.
#[derive(Clone, Debug)]
struct Got {
    routing_key: String,
    body: String,
    persistent: bool,
}

async fn connect(broker: &RabbitMq) -> Connection {
    Connection::connect(&broker.url(), ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", broker.url()))
}

/// Declares `exchange` as carbon does (durable topic) and a durable queue
/// bound to it with `#`, as carbon's `BIND_PATTERNS` default.
async fn bind_queue(broker: &RabbitMq, exchange: &str, queue: &str) {
    let conn = connect(broker).await;
    let ch = conn.create_channel().await.unwrap();
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    ch.exchange_declare(
        exchange.into(),
        ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    )
    .await
    .unwrap();
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(queue.into(), options, FieldTable::default())
        .await
        .unwrap();
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    conn.close(200, "OK".into()).await.unwrap();
}

/// Takes every message waiting in `queue`.
async fn drain(broker: &RabbitMq, queue: &str) -> Vec<Got> {
    let conn = connect(broker).await;
    let ch = conn.create_channel().await.unwrap();
    let mut got = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let d = m.delivery;
        got.push(Got {
            routing_key: d.routing_key.to_string(),
            body: String::from_utf8(d.data).expect("bodies are UTF-8"),
            persistent: d.properties.delivery_mode() == &Some(2),
        });
    }
    conn.close(200, "OK".into()).await.unwrap();
    got
}

/// Parses a body as carbon's listener does: lines, stripped, empty ones
/// skipped, split on whitespace into (metric,) value, timestamp.
fn carbon_parse(routing_key: &str, body: &str, name_in_body: bool) -> Vec<(String, i64, f64)> {
    body.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (metric, value, ts) = match (name_in_body, fields.as_slice()) {
                (true, [m, v, t]) => (m.to_string(), *v, *t),
                (false, [v, t]) => (routing_key.to_owned(), *v, *t),
                _ => panic!("carbon rejects the line {line:?} (name in body: {name_in_body})"),
            };
            let ts: f64 = ts.parse().unwrap();
            (metric, ts as i64, value.parse().unwrap())
        })
        .collect()
}

/// (timestamp, value) of every point of `path` in `got`, as a set.
fn points(got: &[Got], path: &str, name_in_body: bool) -> BTreeSet<(i64, u64)> {
    got.iter()
        .flat_map(|g| carbon_parse(&g.routing_key, &g.body, name_in_body))
        .filter(|(metric, _, _)| metric == path)
        .map(|(_, ts, v)| (ts, v as u64))
        .collect()
}

/// Waits until the collector has published `runs` points; panics after
/// `limit`.
async fn wait_for_runs(control: &collectors::Control, runs: usize, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while control.count() < runs {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the collector did not run {runs} times in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pauses the collector, gives the agent a moment to publish what it
/// already collected, and returns everything published: what the queue must
/// end up holding.
async fn pause(control: &collectors::Control) -> BTreeSet<(i64, u64)> {
    control.paused.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    emitted(control)
}

fn emitted(control: &collectors::Control) -> BTreeSet<(i64, u64)> {
    control
        .emitted
        .lock()
        .unwrap()
        .iter()
        .map(|&(ts, v)| (ts, v as u64))
        .collect()
}

/// Polls `queue` until the points of `path` taken from it so far (kept in
/// `got`) include every point in `expected`, or `limit` passes.
async fn wait_for_points(
    broker: &RabbitMq,
    queue: &str,
    got: &mut Vec<Got>,
    path: &str,
    name_in_body: bool,
    expected: &BTreeSet<(i64, u64)>,
    limit: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        got.extend(drain(broker, queue).await);
        if points(got, path, name_in_body).is_superset(expected) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_lines_reach_a_bound_queue_in_both_modes() {
    let broker = blocking(RabbitMq::start);
    eprintln!("rabbitmq started in {:?}", broker.last_start());
    bind_queue(&broker, "graphite", "per-metric").await;
    bind_queue(&broker, "metrics-lines", "lines").await;
    let key = "amqp-modes";
    let control = collectors::control(key);
    // One instance per mode, sharing the url of the kind table.
    let running = Running::start(config(&sequence_toml(
        "amqp",
        key,
        &format!(
            r#"[output.amqp]
url = "{url}"
reconnect_min = 0.2
reconnect_max = 1

[output.amqp.single]

[output.amqp.lines]
exchange = "metrics-lines"
metric_name_in_body = true
"#,
            url = broker.url()
        ),
    )));
    let path = "servers.amqp.sequence.value";
    let mut single = Vec::new();
    let mut lines = Vec::new();
    wait_for_runs(&control, 3, Duration::from_secs(20)).await;
    let first_three: BTreeSet<(i64, u64)> = emitted(&control).into_iter().take(3).collect();
    let limit = Duration::from_secs(20);
    assert!(
        wait_for_points(
            &broker,
            "per-metric",
            &mut single,
            path,
            false,
            &first_three,
            limit
        )
        .await,
        "per-metric queue: {single:?}"
    );
    // Settle: stop publishing, then everything published must arrive.
    let expected = pause(&control).await;
    assert!(
        wait_for_points(
            &broker,
            "per-metric",
            &mut single,
            path,
            false,
            &expected,
            limit
        )
        .await,
        "per-metric queue {:?} != published {expected:?}",
        points(&single, path, false)
    );
    assert!(
        wait_for_points(&broker, "lines", &mut lines, path, true, &expected, limit).await,
        "lines queue {:?} != published {expected:?}",
        points(&lines, path, true)
    );
    let single_stats = running.stats.output("amqp.single").unwrap().clone();
    let lines_stats = running.stats.output("amqp.lines").unwrap().clone();
    running.stop(Duration::from_secs(15)).await;

    // Per metric: routing key = path, body = "value timestamp", nothing else.
    assert_eq!(points(&single, path, false), expected);
    for g in &single {
        assert_eq!(g.routing_key, path);
        let (v, ts) = g.body.split_once(' ').expect("body is `value timestamp`");
        assert!(
            v.parse::<f64>().is_ok() && ts.parse::<i64>().is_ok(),
            "{g:?}"
        );
        assert!(!g.body.contains('\n'), "{g:?}");
        assert!(g.persistent, "{g:?}");
    }
    // Name in body: routing key "" (the default), `path value timestamp\n` lines.
    assert_eq!(points(&lines, path, true), expected);
    for g in &lines {
        assert_eq!(g.routing_key, "");
        assert!(g.body.ends_with('\n'), "{g:?}");
        for line in g.body.lines() {
            let (p, rest) = line.split_once(' ').unwrap();
            assert_eq!(p, path);
            let (v, ts) = rest.split_once(' ').unwrap();
            assert_eq!(
                (ts.parse::<i64>().unwrap(), v.parse::<f64>().unwrap() as u64),
                *expected
                    .iter()
                    .find(|e| e.1 == v.parse::<f64>().unwrap() as u64)
                    .unwrap()
            );
        }
        assert!(g.persistent, "{g:?}");
    }
    for stats in [&single_stats, &lines_stats] {
        assert_eq!(get(&stats.dropped), 0);
        assert_eq!(get(&stats.buffered), 0);
        assert!(get(&stats.sent) >= expected.len() as u64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_within_the_buffer_loses_nothing() {
    let mut broker = blocking(RabbitMq::start);
    eprintln!("rabbitmq started in {:?}", broker.last_start());
    // A durable queue, so what is published after the restart is kept
    // until the test reads it (carbon's own queue is exclusive).
    bind_queue(&broker, "graphite", "outage").await;
    let key = "amqp-outage";
    let control = collectors::control(key);
    let running = Running::start(config(&sequence_toml(
        "outage",
        key,
        &format!(
            r#"[output.amqp]
url = "{url}"
batch_size = 1
max_buffered = 1000
timeout = 2
reconnect_min = 0.2
reconnect_max = 1
"#,
            url = broker.url()
        ),
    )));
    let stats = running.stats.output("amqp").unwrap().clone();
    let path = "servers.outage.sequence.value";
    let limit = Duration::from_secs(20);
    let mut got = Vec::new();

    // Up and delivering; then settle (pause, everything published arrives).
    wait_for_runs(&control, 3, limit).await;
    let expected = pause(&control).await;
    assert!(
        wait_for_points(&broker, "outage", &mut got, path, false, &expected, limit).await,
        "before the outage: queue {:?} != published {expected:?}",
        points(&got, path, false)
    );

    // The outage: the broker stops while the collector runs.
    blocking(|| broker.stop());
    let before = control.count();
    control.paused.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = control.count() - before;
    assert!(
        during >= 4,
        "collected {during} points while the broker was down"
    );
    assert!(
        !stats.connected.load(Ordering::Relaxed),
        "the agent noticed the broker is gone"
    );
    assert!(get(&stats.buffered) >= 4, "points wait in the buffer");

    // Back on the same ports and database; collection goes on meanwhile.
    blocking(|| broker.restart());
    eprintln!("rabbitmq restarted in {:?}", broker.last_start());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let expected = pause(&control).await;
    let arrived = wait_for_points(&broker, "outage", &mut got, path, false, &expected, limit).await;
    let received = points(&got, path, false);
    let missing: Vec<_> = expected.difference(&received).collect();
    assert!(arrived, "missing after the outage: {missing:?}");
    running.stop(Duration::from_secs(15)).await;

    // At least once: duplicates are allowed (carbon overwrites a point sent
    // twice), losses and strangers are not.
    assert_eq!(
        received, expected,
        "the queue holds exactly the published points"
    );
    assert_eq!(get(&stats.dropped), 0);
    assert!(get(&stats.reconnects) >= 1);
    assert_eq!(get(&stats.buffered), 0);
}

/// Threads of this process named `name` (the agent runs in the test process).
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_broker_fails_sends_instead_of_hanging() {
    let broker = blocking(RabbitMq::start);
    eprintln!("rabbitmq started in {:?}", broker.last_start());
    bind_queue(&broker, "graphite", "blocked").await;
    let key = "amqp-blocked";
    let control = collectors::control(key);
    let running = Running::start(config(&sequence_toml(
        "blocked",
        key,
        &format!(
            r#"[output.amqp]
url = "{url}"
batch_size = 1
timeout = 1
reconnect_min = 0.2
reconnect_max = 0.5
"#,
            url = broker.url()
        ),
    )));
    let stats = running.stats.output("amqp").unwrap().clone();
    let path = "servers.blocked.sequence.value";
    let limit = Duration::from_secs(20);
    let mut got = Vec::new();
    wait_for_runs(&control, 2, limit).await;
    let first = emitted(&control);
    assert!(wait_for_points(&broker, "blocked", &mut got, path, false, &first, limit).await);

    // A memory alarm: the broker stops reading from publishing connections.
    let ctl = |args: &[&str]| blocking(|| broker.ctl(args, Duration::from_secs(20)));
    ctl(&["set_vm_memory_high_watermark", "0"]).unwrap();
    let errors_before = get(&stats.errors);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        get(&stats.errors) > errors_before,
        "sends to a blocked broker time out and count as errors"
    );
    assert!(get(&stats.buffered) >= 3, "points wait in the buffer");
    let io_threads = threads_named("lapin-io-loop");
    // One blocked connection is kept (and taken up again once the alarm
    // clears), not one more per retry; one more may be a test connection
    // still closing.
    assert!(
        io_threads <= 2,
        "{io_threads} AMQP connections are open while the broker blocks publishers"
    );

    ctl(&["set_vm_memory_high_watermark", "0.4"]).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let expected = pause(&control).await;
    let arrived =
        wait_for_points(&broker, "blocked", &mut got, path, false, &expected, limit).await;
    let missing: Vec<_> = expected
        .difference(&points(&got, path, false))
        .copied()
        .collect();
    assert!(arrived, "missing after the alarm cleared: {missing:?}");
    running.stop(Duration::from_secs(15)).await;
    assert_eq!(get(&stats.dropped), 0);
    assert_eq!(get(&stats.buffered), 0);
}
