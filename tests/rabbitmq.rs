//! The rabbitmq collector against a real RabbitMQ (Debian's 3.10, with the
//! management plugin enabled by the fixture): queues created and filled by
//! the test show their depth, ready/unacknowledged split and consumers,
//! through the management API and through AMQP;
//! publish and deliver rates follow what the test does; odd queue names get
//! safe paths; wrong credentials and a stopped broker are clear errors, and
//! values come back when the broker does.

#![cfg(all(feature = "rabbitmq", feature = "amqp"))]

mod support;

use std::time::Duration;

use carat_collector::options::Patterns;
use carat_collector::testing::{Harness, Published};
use carat_collector::Environment;
use carat_rabbitmq::{Rabbitmq, RabbitmqConfig};
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use support::agent::AgentProcess;
use support::rabbitmq::RabbitMq;
use support::{blocking, expect_error};

/// The queues the tests make, and the paths their names get.
const QUEUES: [(&str, &str); 4] = [
    ("jobs.email", "jobs_email"),
    ("a/b", "a_b"),
    ("with space", "with_space"),
    ("café-ü", "caf_-_"),
];

/// The management API refreshes its statistics every 500 ms (the fixture's
/// `collect_statistics_interval`); values settle within this.
const SETTLE: Duration = Duration::from_secs(20);

fn harness(broker: &RabbitMq, config: RabbitmqConfig) -> Harness<Rabbitmq> {
    Harness::<Rabbitmq>::new(
        RabbitmqConfig {
            url: broker.management_url(),
            ..config
        },
        Environment::default(),
    )
    .expect("a valid configuration")
}

async fn channel(broker: &RabbitMq) -> (Connection, Channel) {
    let conn = Connection::connect(&broker.url(), ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", broker.url()));
    let channel = conn.create_channel().await.unwrap();
    (conn, channel)
}

async fn publish(channel: &Channel, queue: &str, count: usize) {
    for i in 0..count {
        channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                format!("message {i}").as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap();
    }
}

/// Reads until `check` holds for a reading (the API's statistics lag the
/// broker by up to a refresh), at most [`SETTLE`]; returns that reading.
async fn settled(h: &mut Harness<Rabbitmq>, check: impl Fn(&Published) -> bool) -> Published {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        // A broker just started may answer 503 for a moment: read again.
        let reading = h.collect().await;
        if let Ok(reading) = &reading {
            if check(reading) {
                return reading.clone();
            }
        }
        if tokio::time::Instant::now() > deadline {
            panic!("never settled; last reading: {reading:#?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Reads every 10 s of the harness's clock until the total `stat` of
/// `<object>.message_stats` has moved by `by` from `before`, checking at
/// each reading that the rate published is the total's increase since the
/// previous reading over those 10 s (the broker's statistics may show the
/// increase in more than one step).
async fn rate_until_moved(
    h: &mut Harness<Rabbitmq>,
    object: &str,
    stat: &str,
    before: f64,
    by: f64,
) {
    let total = format!("{object}.message_stats.{stat}");
    let rate = format!("{object}.message_stats_per_sec.{stat}");
    let deadline = tokio::time::Instant::now() + SETTLE;
    let mut previous = before;
    loop {
        let p = h.collect_after(Duration::from_secs(10)).await.unwrap();
        let now = p.get(&total).unwrap_or_else(|| panic!("no {total}"));
        assert_eq!(p.get(&rate), Some((now - previous) / 10.0), "{rate}");
        if now == before + by {
            return;
        }
        previous = now;
        assert!(tokio::time::Instant::now() < deadline, "{:#?}", p.metrics);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn is(p: &Published, name: &str, value: f64) -> bool {
    p.get(name) == Some(value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_depth_consumers_rates_and_names_through_the_api() {
    let broker = blocking(RabbitMq::start_with_management);
    let (_conn, ch) = channel(&broker).await;
    for (queue, _) in QUEUES {
        ch.queue_declare(
            queue.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    // jobs.email: 10 messages, 3 of them taken and not acknowledged.
    publish(&ch, "jobs.email", 10).await;
    let mut unacked = Vec::new();
    for _ in 0..3 {
        let got = ch
            .basic_get("jobs.email".into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
            .expect("a message");
        unacked.push(got);
    }
    // a/b: one consumer; with space: 4 messages; café-ü: empty.
    let _consumer = ch
        .basic_consume(
            "a/b".into(),
            "carat-test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    publish(&ch, "with space", 4).await;

    let mut h = harness(&broker, RabbitmqConfig::default());
    let first = settled(&mut h, |p| {
        is(p, "queues.jobs_email.messages", 10.0)
            && is(p, "queues.jobs_email.messages_unacknowledged", 3.0)
            && is(p, "queues.a_b.consumers", 1.0)
            && is(p, "queues.with_space.messages", 4.0)
    })
    .await;
    assert_eq!(first.get("queues.jobs_email.messages_ready"), Some(7.0));
    assert_eq!(first.get("queues.caf_-_.messages"), Some(0.0));
    for (_, path) in QUEUES {
        assert!(
            first
                .names()
                .any(|n| n.starts_with(&format!("queues.{path}."))),
            "{path}: {:?}",
            first.metrics.keys()
        );
    }
    assert!(first.get("object_totals.queues").unwrap() >= 4.0);
    assert_eq!(first.get("queue_totals.messages"), Some(14.0));
    assert!(first.get("health.fd_used").unwrap() > 0.0);
    assert!(first.get("health.mem_limit").unwrap() > 0.0);
    assert_eq!(first.get("health.mem_alarm"), Some(0.0));
    assert_eq!(first.get("health.running"), Some(1.0));
    assert_eq!(first.get("cluster.nodes"), Some(1.0));
    assert_eq!(first.get("cluster.partitions"), Some(0.0));

    // 50 more published into jobs.email: its publish total moves by 50,
    // and the rate follows, per 10 s of the harness's clock.
    let before = first
        .get("queues.jobs_email.message_stats.publish")
        .expect("a publish total");
    publish(&ch, "jobs.email", 50).await;
    rate_until_moved(&mut h, "queues.jobs_email", "publish", before, 50.0).await;
    // Taken from `with space`: one (the broker has no deliver_get total
    // for the queue before its first delivery), then three more.
    let take = |count: usize| {
        let ch = ch.clone();
        async move {
            for _ in 0..count {
                ch.basic_get("with space".into(), BasicGetOptions { no_ack: true })
                    .await
                    .unwrap()
                    .expect("a message");
            }
        }
    };
    take(1).await;
    settled(&mut h, |p| {
        is(p, "queues.with_space.message_stats.deliver_get", 1.0)
    })
    .await;
    take(3).await;
    rate_until_moved(&mut h, "queues.with_space", "deliver_get", 1.0, 3.0).await;

    // Only the queues asked for, under the vhost with `vhosts`.
    let mut h = harness(
        &broker,
        RabbitmqConfig {
            vhosts: Patterns::new(["^/$"]).unwrap(),
            queues_include: Patterns::new(["^jobs\\."]).unwrap(),
            replace_dot: Some("-".into()),
            ..RabbitmqConfig::default()
        },
    );
    let scoped = settled(&mut h, |p| {
        p.get("vhosts._.queues.jobs-email.messages").is_some()
    })
    .await;
    assert!(
        !scoped
            .names()
            .any(|n| n.contains("with_space") || n.starts_with("queues.")),
        "{:?}",
        scoped.metrics.keys()
    );

    // AMQP mode (no management API needed): the same ready depth and
    // consumers, from passive declares on one kept connection.
    let amqp_config = |queues: &[&str]| RabbitmqConfig {
        url: format!("amqp://127.0.0.1:{}/%2f", broker.port()),
        queues: queues.iter().map(|q| (*q).to_owned()).collect(),
        ..RabbitmqConfig::default()
    };
    let names: Vec<&str> = QUEUES.iter().map(|(name, _)| *name).collect();
    let mut amqp = Harness::<Rabbitmq>::new(amqp_config(&names), Environment::default()).unwrap();
    let by_amqp = amqp.collect().await.expect("AMQP mode reads the queues");
    assert_eq!(by_amqp.get("queues.a_b.consumers"), Some(1.0));
    assert_eq!(by_amqp.get("queues.with_space.messages"), Some(0.0));
    let ready = by_amqp.get("queues.jobs_email.messages").unwrap();
    assert_eq!(ready, 57.0, "60 published, 3 unacknowledged");
    let mut api = harness(&broker, RabbitmqConfig::default());
    settled(&mut api, |p| {
        is(p, "queues.jobs_email.messages_ready", ready)
    })
    .await;
    for (_, path) in QUEUES {
        assert!(
            by_amqp.get(&format!("queues.{path}.messages")).is_some(),
            "{path}"
        );
    }
    // A queue that does not exist: an error naming it, and the connection
    // still serves the next run.
    let mut missing = Harness::<Rabbitmq>::new(
        amqp_config(&["jobs.email", "no-such-queue", "a/b"]),
        Environment::default(),
    )
    .unwrap();
    let message = expect_error(missing.collect().await, "status");
    assert!(
        message.contains("no such queue: no-such-queue"),
        "{message}"
    );
    assert!(!message.contains("guest"), "{message}");
    assert_eq!(
        amqp.collect().await.unwrap().get("queues.a_b.consumers"),
        Some(1.0)
    );
    drop(unacked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_and_a_stopped_broker_are_errors_then_values_again() {
    let mut broker = blocking(RabbitMq::start_with_management);
    let mut wrong = harness(
        &broker,
        RabbitmqConfig {
            password: Some("not-the-password".into()),
            ..RabbitmqConfig::default()
        },
    );
    let message = expect_error(wrong.collect().await, "status");
    assert!(message.contains("401"), "{message}");
    assert!(message.contains("check username and password"), "{message}");
    assert!(!message.contains("not-the-password"), "{message}");

    // The same over AMQP.
    let amqp_url = format!("amqp://127.0.0.1:{}/%2f", broker.port());
    let amqp_config = |password: &str| RabbitmqConfig {
        url: amqp_url.clone(),
        password: Some(password.into()),
        queues: vec!["carat-probe".into()],
        ..RabbitmqConfig::default()
    };
    let mut wrong =
        Harness::<Rabbitmq>::new(amqp_config("not-the-password"), Environment::default()).unwrap();
    let message = expect_error(wrong.collect().await, "connect");
    assert!(message.contains("check username and password"), "{message}");
    assert!(!message.contains("not-the-password"), "{message}");

    let (_conn, ch) = channel(&broker).await;
    ch.queue_declare(
        "carat-probe".into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(&ch, "carat-probe", 2).await;
    let mut amqp = Harness::<Rabbitmq>::new(amqp_config("guest"), Environment::default()).unwrap();
    assert_eq!(
        amqp.collect()
            .await
            .unwrap()
            .get("queues.carat-probe.messages"),
        Some(2.0)
    );
    let mut h = harness(&broker, RabbitmqConfig::default());
    let first = h.collect().await.expect("the broker answers");
    assert_eq!(first.get("cluster.nodes"), Some(1.0));
    blocking(|| broker.stop());
    let message = expect_error(h.collect().await, "connect");
    assert!(message.contains(&broker.management_url()), "{message}");
    let message = expect_error(amqp.collect().await, "connect");
    assert!(message.contains("amqp://127.0.0.1:"), "{message}");
    assert!(message.contains(&broker.port().to_string()), "{message}");
    blocking(|| broker.restart());
    let back = settled(&mut h, |p| p.get("health.running") == Some(1.0)).await;
    assert_eq!(back.get("cluster.nodes"), Some(1.0));
    // A durable queue's persistent messages survive the restart; the
    // collector reconnects on its own.
    let again = amqp.collect().await.expect("AMQP mode reconnects");
    assert!(again.get("queues.carat-probe.messages").is_some());
}

#[test]
fn the_agent_publishes_a_brokers_queues_under_diamonds_paths() {
    let broker = RabbitMq::start_with_management();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _conn = runtime.block_on(async {
        let (conn, ch) = channel(&broker).await;
        ch.queue_declare(
            "jobs.email".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        publish(&ch, "jobs.email", 3).await;
        conn
    });
    let config = format!(
        r#"
[agent]
hostname = "mq1"
interval = 0.5
splay = 0
self_metrics = false

[collector.rabbitmq]
url = "{}"
password = "${{CARAT_TEST_RABBITMQ_PASSWORD:-guest}}"

[output.stdout]
"#,
        broker.management_url()
    );
    let wanted = "servers.mq1.rabbitmq.queues.jobs_email.messages 3 ";
    let lines = AgentProcess::lines_until(&config, wanted, Duration::from_secs(30));
    for name in ["health.fd_used", "cluster.nodes", "object_totals.queues"] {
        let prefix = format!("servers.mq1.rabbitmq.{name} ");
        assert!(lines.iter().any(|l| l.starts_with(&prefix)), "no {prefix}");
    }
}
