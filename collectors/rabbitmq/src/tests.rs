//! Unit tests over recorded answers of the management API
//! (`tests/fixtures`, with their sources in its README).

use std::path::Path;

use carat_collector::options::Filter;
use carat_collector::publish::Publisher;
use carat_collector::testing::{publish, Published};
use serde_json::{Map, Value};

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn object(name: &str) -> Map<String, Value> {
    api::parse(&fixture(name), name).unwrap()
}

fn list(name: &str) -> Vec<Map<String, Value>> {
    api::parse(&fixture(name), name).unwrap()
}

/// Publishes what a run does with the recorded overview, nodes and queues.
fn read(overview: &str, nodes: &str, queues: &[&str]) -> Published {
    let mut batch = Batch::new();
    let overview = object(overview);
    publish_object(&overview, "", &[], &mut batch);
    let node = overview.get("node").and_then(Value::as_str);
    publish_health(&list(nodes), node, &mut batch);
    let mut name = String::new();
    for page in queues {
        let listing = api::read_listing(&fixture(page), page).unwrap();
        publish_items(
            &listing.items,
            "",
            "queues",
            &Filter::default(),
            &NameRules::default(),
            &mut name,
            &mut batch,
        );
    }
    publish(&mut Publisher::default(), &batch)
}

#[test]
fn an_empty_broker() {
    let p = read(
        "3.10-empty-overview.json",
        "3.10-empty-nodes.json",
        &["3.10-empty-queues.json"],
    );
    assert_eq!(p.get("object_totals.queues"), Some(0.0));
    assert_eq!(p.get("object_totals.exchanges"), Some(7.0));
    // An empty broker's queue_totals is `{}`: nothing, not zeros.
    assert!(!p.names().any(|n| n.starts_with("queue_totals.")));
    assert_eq!(p.get("health.mem_alarm"), Some(0.0));
    assert_eq!(p.get("health.disk_free_alarm"), Some(0.0));
    assert_eq!(p.get("health.partitions"), Some(0.0));
    assert_eq!(p.get("health.running"), Some(1.0));
    assert!(p.get("health.fd_used").unwrap() > 0.0);
    assert_eq!(p.get("cluster.nodes"), Some(1.0));
    assert_eq!(p.get("cluster.nodes_running"), Some(1.0));
    assert!(!p.names().any(|n| n.starts_with("queues.")));
    // `message_stats` is there, but empty: no counter.
    assert_eq!(p.samples, p.metrics.len());
}

#[test]
fn a_node_in_memory_alarm() {
    let p = read(
        "3.10-memory-alarm-overview.json",
        "3.10-memory-alarm-nodes.json",
        &[],
    );
    assert_eq!(p.get("health.mem_alarm"), Some(1.0));
    assert_eq!(p.get("health.mem_limit"), Some(1_000_000.0));
    assert!(p.get("health.mem_used").unwrap() > 1_000_000.0);
    assert_eq!(p.get("health.disk_free_alarm"), Some(0.0));
}

#[test]
fn a_node_with_partitions() {
    // Hand-edited upstream (see the fixtures' README): only its shape is
    // real, a list of the node names this node is partitioned from.
    let nodes = list("edited-3.x-partitions-nodes.json");
    let mut batch = Batch::new();
    publish_health(&nodes, Some("my-rabbit@5a00cd8fe2f4"), &mut batch);
    let p = publish(&mut Publisher::default(), &batch);
    assert_eq!(p.get("health.partitions"), Some(4.0));
    assert_eq!(p.get("cluster.partitions"), Some(4.0));
    assert_eq!(p.get("health.running"), Some(1.0));
}

#[test]
fn the_collectors_pages_with_odd_names() {
    let p = read(
        "3.10-busy-overview.json",
        "3.10-busy-nodes.json",
        &["3.10-busy-queues-page1.json", "3.10-busy-queues-page2.json"],
    );
    let page1 = api::read_listing(&fixture("3.10-busy-queues-page1.json"), "page1").unwrap();
    assert_eq!(page1.items.len(), 2);
    assert_eq!(page1.next_page, Some(2));
    // `a/b` and `café-ü` as one safe component each.
    assert!(
        p.get("queues.a_b.messages").is_some(),
        "{:?}",
        p.metrics.keys()
    );
    assert!(p.get("queues.caf_-_.messages").is_some());
    assert!(p.get("queues.jobs_email.messages").is_some());
    assert!(p
        .get("queues.jobs_email.message_stats.publish_details.rate")
        .is_some());
    // `idle` has no message_stats at all.
    assert!(p.get("queues.idle.messages").is_some());
    assert!(!p
        .names()
        .any(|n| n.starts_with("queues.idle.message_stats")));
    // The broker's own rates, as Diamond published them.
    assert_eq!(p.get("message_stats.publish_details.rate"), Some(3.6));
    assert_eq!(p.get("queue_totals.messages"), Some(92.0));
    assert_eq!(p.get("object_totals.consumers"), Some(2.0));
}

#[test]
fn a_3_7_broker_without_message_stats_and_a_3_5_overview() {
    let p = read(
        "3.5.1-idle-overview.json",
        "3.10-empty-nodes.json",
        &["3.7.0-idle-queues.json"],
    );
    let queues: Vec<&str> = p
        .names()
        .filter(|n| n.starts_with("queues.") && n.ends_with(".messages"))
        .collect();
    assert_eq!(queues.len(), 3, "{queues:?}");
    // consumer_utilisation is null in 3.7: nothing published for it.
    assert!(!p.names().any(|n| n.ends_with("consumer_utilisation")));
    assert!(!p.names().any(|n| n.contains("message_stats")));
    assert_eq!(p.get("queue_totals.messages"), Some(48.0));
    // 3.7's listing ignores paging: the array is the whole list.
    let listing = api::read_listing(&fixture("3.7.0-idle-queues.json"), "q").unwrap();
    assert_eq!(listing.next_page, None);
}

#[test]
fn answers_that_are_not_the_api_are_errors_naming_the_url() {
    let url = "http://127.0.0.1:15672/api/queues?page=1";
    for (body, words) in [
        (
            &b"<html><body>Welcome to nginx</body></html>"[..],
            "HTML page",
        ),
        (&b"{\"items\": [{\"name\": \"a\", "[..], "truncated JSON"),
        (&b""[..], "empty answer"),
        (&b"{\"items\": 5}"[..], "not of the shape expected"),
    ] {
        let e = api::read_listing(body, url).unwrap_err();
        assert_eq!(e.label(), "parse");
        let message = e.to_string();
        assert!(
            message.contains(url) && message.contains(words),
            "{message}"
        );
    }
}

#[test]
fn options_that_cannot_work_are_refused() {
    let env = Environment::default();
    for (config, option) in [
        (
            RabbitmqConfig {
                page_size: 0,
                ..Default::default()
            },
            "page_size",
        ),
        (
            RabbitmqConfig {
                page_size: 501,
                ..Default::default()
            },
            "page_size",
        ),
        (
            RabbitmqConfig {
                url: "http://u:p@mq:15672".into(),
                ..Default::default()
            },
            "url",
        ),
        (
            RabbitmqConfig {
                url: "amqps://mq".into(),
                queues: vec!["q".into()],
                ..Default::default()
            },
            "url",
        ),
        (
            RabbitmqConfig {
                url: "amqp://u:p@mq".into(),
                queues: vec!["q".into()],
                ..Default::default()
            },
            "url",
        ),
        (
            RabbitmqConfig {
                url: "amqp://mq".into(),
                ..Default::default()
            },
            "queues",
        ),
        (
            RabbitmqConfig {
                url: "amqp://mq".into(),
                queues: vec!["q".into()],
                vhosts: carat_collector::options::Patterns::new(["x"]).unwrap(),
                ..Default::default()
            },
            "vhosts",
        ),
        (
            RabbitmqConfig {
                tls_ca_file: Some("/ca.pem".into()),
                ..Default::default()
            },
            "tls_ca_file",
        ),
        (
            RabbitmqConfig {
                max_body_bytes: 0,
                ..Default::default()
            },
            "max_body_bytes",
        ),
    ] {
        let e = Rabbitmq::new(config, &env).err().expect(option);
        assert_eq!(e.invalid_option(), Some(option), "{e}");
        assert!(!e.to_string().contains("u:p"), "{e}");
    }
    let amqp = RabbitmqConfig {
        url: "amqp://127.0.0.1:5672/%2f".into(),
        queues: vec!["jobs".into()],
        ..Default::default()
    };
    assert!(Rabbitmq::new(amqp, &env).is_ok());
}
