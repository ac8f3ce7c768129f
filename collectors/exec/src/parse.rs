//! Reading a command's output: Graphite plaintext lines or JSON.
//!
//! Plaintext: one metric a line, `name value [timestamp] [counter|gauge]`,
//! fields separated by spaces or tabs. Blank lines and lines starting with
//! `#` are skipped. The timestamp, when given, must be a number and is not
//! used: every metric of a run is stamped with the time of the run, like
//! every other collector's. The last word marks the metric as a counter
//! (published as a rate) or a gauge; without it, the `counters` patterns
//! decide, and a metric is a gauge when none matches.
//!
//! JSON: an object; its number leaves are the metrics, named by the path
//! of keys to them joined with dots (`{"queue": {"depth": 3}}` is
//! `queue.depth`). `true` and `false` are 1 and 0; strings and `null` are
//! skipped (status documents carry versions and states beside their
//! numbers); an array is an error, since its order is not a name.
//!
//! Names are sanitised as every collector's are (each dotted component
//! keeps letters, digits, `_` and `-`). When a name comes twice, the last
//! value is kept. A counter is a whole number from 0 to 2^64 - 1.

use std::collections::BTreeMap;

use carat_collector::input::excerpt;
use carat_collector::name;
use carat_collector::options::Patterns;
use serde_json::Value as Json;

/// A value read from the output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reading {
    /// Published as it is.
    Gauge(f64),
    /// Published as a rate per second.
    Counter(u64),
}

/// The metrics of one output, by sanitised name: the last value of a name
/// wins.
pub type Metrics = BTreeMap<String, Reading>;

/// Reads Graphite plaintext `line` into `out`. Returns false for a line
/// that holds no metric (blank, a comment), and the reason for a line that
/// is not one.
pub fn graphite_line(line: &str, counters: &Patterns, out: &mut Metrics) -> Result<bool, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(false);
    }
    let mut fields = line.split_ascii_whitespace();
    let (Some(name), Some(value)) = (fields.next(), fields.next()) else {
        return Err("expected `name value [timestamp] [counter|gauge]`".to_owned());
    };
    let mut kind = None;
    for (i, field) in fields.enumerate() {
        match field {
            "counter" | "gauge" if kind.is_none() => kind = Some(field == "counter"),
            _ if i == 0 && field.parse::<f64>().is_ok_and(f64::is_finite) => {}
            _ => {
                return Err(format!(
                    "{} is neither a timestamp nor `counter` or `gauge` \
                     (expected `name value [timestamp] [counter|gauge]`)",
                    excerpt(field, 40)
                ))
            }
        }
    }
    let counter = kind.unwrap_or_else(|| counters.is_match(name));
    insert(name, value_of(value, counter)?, out)?;
    Ok(true)
}

/// Reads a JSON object into `out` (see the [module documentation](self)).
pub fn json_document(text: &str, counters: &Patterns, out: &mut Metrics) -> Result<(), String> {
    let document: Json = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Json::Object(fields) = document else {
        return Err("expected a JSON object of named values".to_owned());
    };
    let mut path = String::new();
    flatten(&fields, &mut path, counters, out)
}

fn flatten(
    object: &serde_json::Map<String, Json>,
    path: &mut String,
    counters: &Patterns,
    out: &mut Metrics,
) -> Result<(), String> {
    for (key, value) in object {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
        match value {
            Json::Object(inner) => flatten(inner, path, counters, out)?,
            Json::Number(n) => {
                let counter = counters.is_match(path);
                let reading = if counter {
                    match n.as_u64() {
                        Some(v) => Reading::Counter(v),
                        None => value_of(&n.to_string(), true)?,
                    }
                } else {
                    // serde_json numbers are finite.
                    Reading::Gauge(n.as_f64().unwrap_or(f64::NAN))
                };
                insert(path, reading, out)?;
            }
            Json::Bool(b) => insert(path, Reading::Gauge(f64::from(u8::from(*b))), out)?,
            Json::Null | Json::String(_) => {}
            Json::Array(_) => {
                return Err(format!(
                    "{} is an array: its values have no names; write an object",
                    excerpt(path, 80)
                ))
            }
        }
        path.truncate(len);
    }
    Ok(())
}

/// `text` as the value of a counter or a gauge.
fn value_of(text: &str, counter: bool) -> Result<Reading, String> {
    if counter {
        if let Ok(v) = text.parse::<u64>() {
            return Ok(Reading::Counter(v));
        }
        // `1.5e6` and `42.0` are whole numbers too.
        return match text.parse::<f64>() {
            Ok(v) if v >= 0.0 && v.fract() == 0.0 && v < 18_446_744_073_709_551_616.0 => {
                Ok(Reading::Counter(v as u64))
            }
            _ => Err(format!(
                "the counter value {} is not a whole number from 0 to 2^64 - 1",
                excerpt(text, 40)
            )),
        };
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Reading::Gauge(v)),
        _ => Err(format!(
            "the value {} is not a finite number",
            excerpt(text, 40)
        )),
    }
}

fn insert(raw_name: &str, reading: Reading, out: &mut Metrics) -> Result<(), String> {
    let name = name::path(raw_name);
    if name.is_empty() {
        return Err(format!(
            "the name {} has no component",
            excerpt(raw_name, 40)
        ));
    }
    out.insert(name, reading);
    Ok(())
}
