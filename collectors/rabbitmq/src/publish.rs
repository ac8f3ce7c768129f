//! The management API's JSON objects into metrics, under Diamond's names.
//!
//! Diamond's `RabbitMQCollector` published every number of an object under
//! the dotted path of its keys (`messages`, `message_stats.publish`,
//! `message_stats.publish_details.rate`); so does this. Booleans are 0 or 1;
//! strings, arrays and nulls publish nothing. On top of Diamond, each total
//! of `message_stats` (a number directly in it: `publish`, `deliver_get`,
//! `ack`, …) is also added as a counter under `message_stats_per_sec.<key>`,
//! which the agent turns into a rate per second over the measured time.

use carat_collector::Batch;
use serde_json::{Map, Value};

/// The deepest nesting followed (the API's objects nest three levels).
const MAX_DEPTH: usize = 8;

/// How queue and vhost names become one path component: Diamond's
/// `replace_dot` and `replace_slash`, then the agent's sanitising (every
/// character outside `[A-Za-z0-9_-]`, dots and slashes included, becomes
/// `_`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameRules {
    /// Put in place of each `.` first, when set.
    pub replace_dot: Option<String>,
    /// Put in place of each `/` first, when set.
    pub replace_slash: Option<String>,
}

impl NameRules {
    /// `name` as one path component, appended to `out`.
    pub fn push(&self, out: &mut String, name: &str) {
        let mut owned;
        let mut name = name;
        if let Some(with) = &self.replace_dot {
            owned = name.replace('.', with);
            name = &owned;
            if let Some(with) = &self.replace_slash {
                owned = owned.replace('/', with);
                name = &owned;
            }
        } else if let Some(with) = &self.replace_slash {
            owned = name.replace('/', with);
            name = &owned;
        }
        if name.is_empty() {
            // The default exchange's name is empty.
            name = "amq_default";
        }
        carat_collector::name::push_component(out, name);
    }
}

/// Adds every numeric leaf of `object` to `batch` under `prefix` (a dotted
/// path, possibly empty), leaving out the keys in `skip`; and the totals of
/// its `message_stats` as counters under `<prefix>.message_stats_per_sec`.
pub fn publish_object(object: &Map<String, Value>, prefix: &str, skip: &[&str], batch: &mut Batch) {
    let mut path = String::from(prefix);
    for (key, value) in object {
        if skip.contains(&key.as_str()) {
            continue;
        }
        leaf(&mut path, key, value, batch, 0);
    }
    if let Some(Value::Object(stats)) = object.get("message_stats") {
        for (key, value) in stats {
            if let Some(total) = value.as_u64() {
                path.clear();
                if !prefix.is_empty() {
                    path.push_str(prefix);
                    path.push('.');
                }
                path.push_str("message_stats_per_sec.");
                path.push_str(key);
                batch.counter(&path, total);
            }
        }
    }
}

fn leaf(path: &mut String, key: &str, value: &Value, batch: &mut Batch, depth: usize) {
    let len = path.len();
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
    match value {
        Value::Number(n) => {
            if let Some(v) = n.as_f64() {
                batch.gauge(path, v);
            }
        }
        Value::Bool(b) => batch.gauge(path, if *b { 1.0 } else { 0.0 }),
        Value::Object(inner) if depth < MAX_DEPTH => {
            for (key, value) in inner {
                leaf(path, key, value, batch, depth + 1);
            }
        }
        _ => {}
    }
    path.truncate(len);
}

/// The number at `key` of `object`: a number, or a boolean as 0 or 1.
pub fn number(object: &Map<String, Value>, key: &str) -> Option<f64> {
    match object.get(key)? {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use carat_collector::SampleValue;

    #[test]
    fn names_follow_the_rules() {
        let mut out = String::new();
        let plain = NameRules::default();
        for (name, expected) in [
            ("jobs.email", "jobs_email"),
            ("a/b", "a_b"),
            ("with space", "with_space"),
            ("café-ü", "caf_-_"),
            ("", "amq_default"),
        ] {
            out.clear();
            plain.push(&mut out, name);
            assert_eq!(out, expected, "{name:?}");
        }
        let diamond = NameRules {
            replace_dot: Some("-".into()),
            replace_slash: Some("_slash_".into()),
        };
        out.clear();
        diamond.push(&mut out, "jobs.email/x");
        assert_eq!(out, "jobs-email_slash_x");
    }

    #[test]
    fn leaves_and_counters() {
        let object: Map<String, Value> = serde_json::from_str(
            r#"{"name": "q", "messages": 5, "durable": true, "arguments": {},
                "message_stats": {"publish": 12, "publish_details": {"rate": 1.5}},
                "slave_nodes": [1, 2], "policy": null, "state": "running"}"#,
        )
        .unwrap();
        let mut batch = Batch::new();
        publish_object(&object, "queues.q", &["name"], &mut batch);
        let mut got: Vec<(String, SampleValue)> =
            batch.iter().map(|s| (s.name.to_owned(), s.value)).collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            [
                ("queues.q.durable".into(), SampleValue::Gauge(1.0)),
                (
                    "queues.q.message_stats.publish".into(),
                    SampleValue::Gauge(12.0)
                ),
                (
                    "queues.q.message_stats.publish_details.rate".into(),
                    SampleValue::Gauge(1.5)
                ),
                (
                    "queues.q.message_stats_per_sec.publish".into(),
                    SampleValue::Counter(12, None)
                ),
                ("queues.q.messages".into(), SampleValue::Gauge(5.0)),
            ]
        );
    }
}
