//! What `serverStatus` says only across two readings, or only in ratio:
//! counters for the agent's rates, the share of each interval spent locked
//! or waiting for a lock, and the WiredTiger cache and tickets as
//! percentages.
//!
//! Rates are the agent's: the counters are added to the batch raw under
//! `<section>_per_sec.<key>` and the agent divides by the measured time
//! (nothing on the first reading, a decrease skipped). Percentages over an
//! interval need two readings of the server's own totals (lock time over
//! total time), which the agent's rates cannot give: [`Intervals`] keeps the
//! previous reading per server and publishes
//! `Δ numerator / Δ denominator × 100`.

use std::collections::HashMap;

use carat_collector::Batch;
use mongodb::bson::{Bson, Document};

use crate::leaves::{lock_name, lookup, number, number_at};

/// The sections whose numbers are counters, published again as
/// `<name>_per_sec.<key>` for the agent's rates: each numeric key directly
/// in the section (sub-documents are not counters of the section).
pub const RATE_SECTIONS: [(&str, &str); 4] = [
    ("opcounters", "opcounters_per_sec"),
    ("opcountersRepl", "opcountersRepl_per_sec"),
    ("network", "network_per_sec"),
    ("asserts", "asserts_per_sec"),
];

/// Single counters published for rates: (path in `serverStatus`, name).
pub const RATE_KEYS: [(&[&str], &str); 2] = [
    (
        &["extra_info", "page_faults"],
        "extra_info_per_sec.page_faults",
    ),
    (
        &["backgroundFlushing", "flushes"],
        "backgroundFlushing_per_sec.flushes",
    ),
];

/// Adds the counters of [`RATE_SECTIONS`] and [`RATE_KEYS`] under `prefix`.
/// A value that is not a non-negative number is left out.
pub fn publish_counters(status: &Document, prefix: &str, batch: &mut Batch) {
    let mut name = String::new();
    for (section, published_as) in RATE_SECTIONS {
        let Ok(section) = status.get_document(section) else {
            continue;
        };
        for (key, value) in section {
            if let Some(count) = number(value).and_then(as_count) {
                join(&mut name, &[prefix, published_as, key]);
                batch.counter(&name, count);
            }
        }
    }
    for (path, published_as) in RATE_KEYS {
        if let Some(count) = number_at(status, path).and_then(as_count) {
            join(&mut name, &[prefix, published_as]);
            batch.counter(&name, count);
        }
    }
}

/// A counter's reading as the agent takes it: a whole, non-negative number.
fn as_count(v: f64) -> Option<u64> {
    (v >= 0.0 && v < u64::MAX as f64).then_some(v as u64)
}

/// Writes the non-empty `parts` into `out` joined by dots.
fn join(out: &mut String, parts: &[&str]) {
    out.clear();
    for part in parts.iter().filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(part);
    }
}

/// The modes of a lock's `timeAcquiringMicros` (and MMAPv1's
/// `timeLockedMicros`): shared, exclusive, intent shared, intent exclusive.
const LOCK_MODES: [&str; 4] = ["r", "w", "R", "W"];

/// A percentage over an interval: the change of `part` over the change of
/// `whole`, both totals of the server.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Totals {
    part: f64,
    whole: f64,
}

/// The previous reading of the totals behind the interval percentages of
/// one server, and the rules that turn two readings into percentages.
///
/// A percentage is published when both readings have both totals, the
/// denominator grew and the numerator did not fall. When the server's
/// uptime went down (it restarted between the readings) nothing is
/// published for that interval: the totals started again from zero.
#[derive(Debug, Default)]
pub struct Intervals {
    previous: HashMap<String, Totals>,
    current: HashMap<String, Totals>,
    previous_uptime_ms: Option<f64>,
}

impl Intervals {
    /// Adds the interval percentages of `status` (see the crate's README)
    /// under `prefix`, from this reading and the previous one, and keeps
    /// this reading for the next.
    pub fn publish(&mut self, status: &Document, prefix: &str, batch: &mut Batch) {
        let uptime_ms = number_at(status, &["uptimeMillis"])
            .or_else(|| number_at(status, &["uptime"]).map(|s| s * 1000.0));
        let restarted = match (self.previous_uptime_ms, uptime_ms) {
            (Some(before), Some(now)) => now < before,
            // Without an uptime a restart cannot be told: rely on the
            // totals themselves going down.
            _ => false,
        };
        self.current.clear();
        self.collect(status, uptime_ms);
        if !restarted {
            let mut name = String::new();
            for (key, now) in &self.current {
                let Some(before) = self.previous.get(key) else {
                    continue;
                };
                let (part, whole) = (now.part - before.part, now.whole - before.whole);
                if whole > 0.0 && part >= 0.0 {
                    join(&mut name, &[prefix, key]);
                    batch.gauge(&name, part / whole * 100.0);
                }
            }
        }
        std::mem::swap(&mut self.previous, &mut self.current);
        self.previous_uptime_ms = uptime_ms;
    }

    /// Reads this reading's totals into `self.current`, keyed by the name
    /// (below the prefix) their percentage is published under.
    fn collect(&mut self, status: &Document, uptime_ms: Option<f64>) {
        let mut add = |key: String, part: Option<f64>, whole: Option<f64>| {
            if let (Some(part), Some(whole)) = (part, whole) {
                self.current.insert(key, Totals { part, whole });
            }
        };
        // Diamond's: the global lock's time held over its total time.
        add(
            "percent.globalLock.lockTime".into(),
            number_at(status, &["globalLock", "lockTime"]),
            number_at(status, &["globalLock", "totalTime"]),
        );
        // Diamond's: B-tree index misses over accesses. 2.0 nested them
        // under `btree`, 2.2 to 2.6 put them directly in `indexCounters`.
        let btree = |key| {
            number_at(status, &["indexCounters", "btree", key])
                .or_else(|| number_at(status, &["indexCounters", key]))
        };
        add(
            "percent.indexCounters.btree.misses".into(),
            btree("misses"),
            btree("accesses"),
        );
        let Ok(locks) = status.get_document("locks") else {
            return;
        };
        let elapsed_micros = uptime_ms.map(|ms| ms * 1000.0);
        for (resource, lock) in locks {
            let Bson::Document(lock) = lock else { continue };
            let resource = lock_name(resource);
            // Diamond's, MMAPv1 2.2 to 2.6: time each database was locked
            // for reading (r + R) and writing (w + W), over the uptime.
            // A mode the server does not report counts as 0 (the global
            // lock `.` has only R and W, a database only r and w).
            let locked = |modes: [&str; 2]| -> Option<f64> {
                let values = modes.map(|mode| number_at(lock, &["timeLockedMicros", mode]));
                values
                    .iter()
                    .any(Option::is_some)
                    .then(|| values.iter().flatten().sum())
            };
            if lock.get("timeLockedMicros").is_some() {
                add(
                    format!("percent.locks.{resource}.read"),
                    locked(["r", "R"]),
                    elapsed_micros,
                );
                add(
                    format!("percent.locks.{resource}.write"),
                    locked(["w", "W"]),
                    elapsed_micros,
                );
            }
            // 3.0 and later (WiredTiger and MMAPv1 alike): time spent
            // waiting to acquire each lock, per mode, over the uptime.
            if let Ok(waits) = lock.get_document("timeAcquiringMicros") {
                for mode in LOCK_MODES {
                    if let Some(waited) = waits.get(mode).and_then(number) {
                        add(
                            format!("percent.locks_wait.{resource}.{mode}"),
                            Some(waited),
                            elapsed_micros,
                        );
                    }
                }
            }
        }
    }
}

/// Adds the WiredTiger cache's fill and dirtiness as percentages of its
/// configured maximum, and the read and write tickets in use, under
/// `prefix`. Nothing for a server without WiredTiger.
pub fn publish_wiredtiger(status: &Document, prefix: &str, batch: &mut Batch) {
    let mut name = String::new();
    let cache = |key| number_at(status, &["wiredTiger", "cache", key]);
    if let Some(max) = cache("maximum bytes configured").filter(|m| *m > 0.0) {
        for (key, published_as) in [
            ("bytes currently in the cache", "percent_used"),
            ("tracked dirty bytes in the cache", "percent_dirty"),
        ] {
            if let Some(bytes) = cache(key) {
                join(&mut name, &[prefix, "wiredtiger.cache", published_as]);
                batch.gauge(&name, bytes / max * 100.0);
            }
        }
    }
    // Tickets: `wiredTiger.concurrentTransactions` up to 6.x,
    // `queues.execution` from 7.0 (where the former is gone).
    let tickets = lookup(status, &["wiredTiger", "concurrentTransactions"])
        .or_else(|| lookup(status, &["queues", "execution"]));
    let Some(Bson::Document(tickets)) = tickets else {
        return;
    };
    for op in ["read", "write"] {
        let Ok(t) = tickets.get_document(op) else {
            continue;
        };
        let out = t.get("out").and_then(number);
        let available = t.get("available").and_then(number);
        let total = t.get("totalTickets").and_then(number);
        for (key, value) in [("out", out), ("available", available), ("total", total)] {
            if let Some(v) = value {
                join(&mut name, &[prefix, "wiredtiger.tickets", op, key]);
                batch.gauge(&name, v);
            }
        }
        if let (Some(out), Some(total)) = (out, total.filter(|t| *t > 0.0)) {
            join(
                &mut name,
                &[prefix, "wiredtiger.tickets", op, "percent_used"],
            );
            batch.gauge(&name, out / total * 100.0);
        }
    }
}
