//! Value helpers: Diamond option values read and carat TOML values written,
//! section labels, and the reasons given for options left out.

use super::configobj::{Entry, Value};
use carat_collector::options::{Patterns, Search};

/// One TOML table of the output.
pub(super) struct Table {
    pub(super) header: String,
    /// `[[header]]`, one of an array of tables.
    pub(super) array: bool,
    pub(super) entries: Vec<(String, toml::Value)>,
}

impl Table {
    pub(super) fn new(header: impl Into<String>) -> Self {
        Table {
            header: header.into(),
            array: false,
            entries: Vec::new(),
        }
    }

    pub(super) fn set(&mut self, key: &str, value: toml::Value) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key.to_owned(), value)),
        }
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == key)
    }
}

/// A string value as carat reads it: `${` would be taken for a variable
/// reference, so a literal one is written `$${`.
pub(super) fn text(s: &str) -> toml::Value {
    toml::Value::String(s.replace("${", "$${"))
}

pub(super) fn strings(items: &[String]) -> toml::Value {
    toml::Value::Array(items.iter().map(|s| text(s)).collect())
}

/// Seconds (or any number) as an integer when it is one.
pub(super) fn number_value(n: f64) -> toml::Value {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        toml::Value::Integer(n as i64)
    } else {
        toml::Value::Float(n)
    }
}

/// Diamond's `str_to_bool`, with configobj's `on`/`off`/`1`/`0` too.
pub(super) fn boolean(e: &Entry) -> Result<bool, String> {
    let Value::Single(s) = &e.value else {
        return Err(format!("`{}` is a list, not a boolean", e.raw));
    };
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "on" | "1" => Ok(true),
        "false" | "f" | "no" | "n" | "off" | "0" | "" => Ok(false),
        _ => Err(format!("`{s}` is not a boolean (True or False)")),
    }
}

pub(super) fn number(e: &Entry) -> Result<f64, String> {
    let Value::Single(s) = &e.value else {
        return Err(format!("`{}` is a list, not a number", e.raw));
    };
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .ok_or_else(|| format!("`{s}` is not a number"))
}

pub(super) fn single(e: &Entry) -> String {
    match &e.value {
        Value::Single(s) => s.clone(),
        // A value configobj split at its commas, which Diamond read as one
        // string: put it back together.
        Value::List(items) => items.join(","),
    }
}

/// Items of a list or of a string separated by commas or blanks, as
/// Diamond's collectors split names (`byte_unit`, `allowed_names`, …).
pub(super) fn words(e: &Entry) -> Vec<String> {
    e.value
        .items()
        .iter()
        .flat_map(|i| {
            i.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Each item must be a regex carat accepts: checked as the configuration
/// loader checks it ([`Patterns::new`]).
pub(super) fn regexes(items: Vec<String>) -> Result<Vec<String>, String> {
    for item in &items {
        Patterns::<Search>::new([item.as_str()])
            .map_err(|e| format!("regex `{item}` is not one carat can use ({e})"))?;
    }
    Ok(items)
}

/// `CARAT_HAPROXY_LB1_PASSWORD`.
pub(super) fn env_name(parts: &[&str]) -> String {
    let mut name = String::from("CARAT");
    for p in parts {
        name.push('_');
        name.extend(p.chars().map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        }));
    }
    name
}

pub(super) fn section_label(path: &[&str]) -> String {
    path.iter()
        .enumerate()
        .map(|(depth, name)| format!("{}{name}{}", "[".repeat(depth + 1), "]".repeat(depth + 1)))
        .collect()
}

/// Why a `[server]` option has no carat equivalent.
pub(super) fn server_reason(key: &str) -> &'static str {
    match key {
        "pid_file" => "carat writes no pid file (run it under systemd, which tracks the process)",
        "user" | "group" => "carat does not change its user or group: run it as the user the service manager gives it (User= in the systemd unit)",
        "collectors_path" | "handlers_path" => "carat's collectors and outputs are built into the binary (`carat list` shows them)",
        "metric_queue_size" => "each carat output has its own bounded queue and buffer (queue_size, max_buffered in [output.<kind>])",
        "collectors_reload_interval" | "collectors_load_delay" => "carat loads its collectors once at start",
        _ => "not an option carat has",
    }
}

/// Why a collector option has no carat equivalent (`kind` is carat's).
pub(super) fn collector_reason(kind: &str, key: &str) -> String {
    let known = match (kind, key) {
        (_, "measure_collector_time") => "carat always publishes each collector's run time (carat.collector.<instance>.*)",
        (_, "ttl_multiplier") => "no carat output uses a time to live",
        (_, "instance_prefix") => "carat has no per-virtual-machine collectors",
        ("cpu", "xenfix") => "carat does not halve idle time on old Xen guests",
        ("loadavg", "simple") => "carat's loadavg has no simple mode: it publishes every load average (keep what you need with metrics_whitelist)",
        ("process", "unit") => "carat publishes process memory in bytes only",
        ("process", "count_workers") => "carat always publishes count, 0 for an empty group",
        ("process", "info_keys") => "carat publishes a fixed set of process metrics (collectors/system/README.md)",
        ("process", "cpu_interval") => "carat's cpu_percent is measured over the collector's interval",
        ("mongodb", "translate_collections") => "carat keeps a dot of a collection name as a path separator",
        ("mongodb", "collection_sample_rate") => "carat reads every collection of the databases it reads (or none: collection_stats)",
        ("mongodb", "replset_node_name") => "carat names a host by its alias (alias@host in hosts)",
        ("rabbitmq", "cluster") => "carat always publishes the cluster's figures (cluster.*)",
        ("rabbitmq", "query_individual_queues") => "carat reads every queue a page at a time from /api/queues",
        ("exec", "floatprecision") => "carat publishes a script's values as it prints them",
        _ => "",
    };
    if known.is_empty() {
        format!("carat's {kind} collector has no such option")
    } else {
        known.to_owned()
    }
}

/// Diamond's `byte_unit` (a list, or units separated by blanks) in the
/// form the kind takes: memory takes one (Diamond used the first), the
/// others a list.
pub(super) fn byte_unit(kind: &str, table: &mut Table, e: &Entry) {
    let units = words(e);
    if units.is_empty() {
        return;
    }
    if kind == "memory" {
        table.set("byte_unit", text(&units[0]));
    } else {
        table.set("byte_unit", strings(&units));
    }
}
