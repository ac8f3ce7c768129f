//! Every numeric leaf of a command's answer, under Diamond's names.
//!
//! Diamond's MongoDB collector walked `serverStatus` (and `dbStats`,
//! `collStats`) recursively and published each number under the dotted path
//! of its keys. Its naming is kept so that dashboards keep working:
//!
//! - a space in a key becomes `_` (`bytes currently in the cache` →
//!   `bytes_currently_in_the_cache`);
//! - a dash becomes a dot, so a component of its own
//!   (`replace_dashes_in_metric_keys`, on by default: `mmapv1-journal`…
//!   → `mmapv1.journal`); with `replace_dashes = false` the dash stays;
//! - a dot inside a key separates components too (Diamond joined keys with
//!   dots and never escaped them);
//! - then the agent's sanitising makes each component safe
//!   ([`carat_collector::name`]).
//!
//! Values: doubles and integers as they are, booleans as 0 or 1, dates as
//! whole seconds since the Unix epoch. Strings, arrays, timestamps, binary
//! data and every other type publish nothing, as in Diamond. Nesting deeper
//! than [`MAX_DEPTH`] is not followed (real answers nest about six levels).

use carat_collector::Batch;
use mongodb::bson::{Bson, Document};

/// The deepest level of nesting followed below the document's root; deeper
/// sub-documents are skipped and counted ([`Walk::too_deep`]).
pub const MAX_DEPTH: usize = 32;

/// How the keys of a document become path components.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyStyle {
    /// Diamond's `replace_dashes_in_metric_keys`: `-` in a key becomes `.`.
    pub replace_dashes: bool,
}

impl Default for KeyStyle {
    fn default() -> Self {
        KeyStyle {
            replace_dashes: true,
        }
    }
}

impl KeyStyle {
    /// Appends `key` to `path` as Diamond named it: `.` first unless `path`
    /// is empty, a space as `_`, a dash as `.` when dashes are replaced.
    /// Other characters are left for the batch's sanitising.
    pub fn push_key(&self, path: &mut String, key: &str) {
        if !path.is_empty() {
            path.push('.');
        }
        for c in key.chars() {
            match c {
                ' ' => path.push('_'),
                '-' if self.replace_dashes => path.push('.'),
                c => path.push(c),
            }
        }
    }
}

/// The number a leaf publishes, if it is one: integers and doubles as they
/// are, booleans as 0 or 1, dates as whole seconds since the epoch.
pub fn leaf_value(value: &Bson) -> Option<f64> {
    match value {
        Bson::Double(v) => Some(*v),
        Bson::Int32(v) => Some(f64::from(*v)),
        Bson::Int64(v) => Some(*v as f64),
        Bson::Boolean(b) => Some(if *b { 1.0 } else { 0.0 }),
        Bson::DateTime(d) => Some(d.timestamp_millis().div_euclid(1000) as f64),
        _ => None,
    }
}

/// A number proper (an integer or a double, not a boolean or a date): what
/// a derived metric (a rate, a percentage) is computed from.
pub fn number(value: &Bson) -> Option<f64> {
    match value {
        Bson::Double(v) if v.is_finite() => Some(*v),
        Bson::Int32(v) => Some(f64::from(*v)),
        Bson::Int64(v) => Some(*v as f64),
        _ => None,
    }
}

/// The value at `path` (keys of nested documents), if every step is there.
pub fn lookup<'a>(doc: &'a Document, path: &[&str]) -> Option<&'a Bson> {
    let (last, parents) = path.split_last()?;
    let mut current = doc;
    for key in parents {
        current = current.get_document(key).ok()?;
    }
    current.get(last)
}

/// The number at `path` ([`number`]), if it is one.
pub fn number_at(doc: &Document, path: &[&str]) -> Option<f64> {
    lookup(doc, path).and_then(number)
}

/// One walk over a document, adding its leaves to a batch.
#[derive(Debug, Default)]
pub struct Walk {
    path: String,
    /// How many leaves were added.
    pub published: usize,
    /// How many sub-documents were deeper than [`MAX_DEPTH`] and skipped.
    pub too_deep: usize,
}

impl Walk {
    /// Adds every numeric leaf of `doc` to `batch` as a gauge, under
    /// `prefix` (a dotted path, possibly empty), keys named by `style`.
    /// MMAPv1's global lock, the key `.` of the top-level `locks`, is
    /// published as `locks._global_`, as Diamond named it.
    pub fn publish(&mut self, doc: &Document, prefix: &str, style: KeyStyle, batch: &mut Batch) {
        self.path.clear();
        self.path.push_str(prefix);
        for (key, value) in doc {
            self.leaf(key, value, style, batch, 0);
        }
    }

    /// As [`Walk::publish`], for the top-level `keys` of `doc` only (those
    /// it has).
    pub fn publish_only(
        &mut self,
        doc: &Document,
        keys: &[&str],
        prefix: &str,
        style: KeyStyle,
        batch: &mut Batch,
    ) {
        self.path.clear();
        self.path.push_str(prefix);
        for key in keys {
            if let Some(value) = doc.get(key) {
                self.leaf(key, value, style, batch, 0);
            }
        }
    }

    fn leaf(&mut self, key: &str, value: &Bson, style: KeyStyle, batch: &mut Batch, depth: usize) {
        let len = self.path.len();
        style.push_key(&mut self.path, key);
        match value {
            Bson::Document(inner) => {
                if depth >= MAX_DEPTH {
                    self.too_deep += 1;
                } else {
                    let in_locks = depth == 0 && key == "locks";
                    for (key, value) in inner {
                        let key = if in_locks { lock_name(key) } else { key };
                        self.leaf(key, value, style, batch, depth + 1);
                    }
                }
            }
            value => {
                if let Some(v) = leaf_value(value) {
                    batch.gauge(&self.path, v);
                    self.published += 1;
                }
            }
        }
        self.path.truncate(len);
    }
}

/// The name a lock resource is published under: Diamond's `_global_` for
/// MMAPv1's `.` (the global lock), the resource's own name otherwise.
pub fn lock_name(resource: &str) -> &str {
    if resource == "." {
        "_global_"
    } else {
        resource
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, DateTime};

    fn names(batch: &Batch) -> Vec<(String, f64)> {
        batch
            .iter()
            .map(|s| match s.value {
                carat_collector::SampleValue::Gauge(v) => (s.name.to_owned(), v),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn keys_are_named_as_diamond_named_them() {
        let d = doc! {
            "connections": { "current": 3_i32, "totalCreated": 10_i64 },
            "wiredTiger": { "cache": { "bytes currently in the cache": 1.5 } },
            "dur": { "mmapv1-journal": { "x-y": 2_i32 } },
            "locks": { "admin.system": { "n": 4_i32 }, ".": { "m": 5_i32 } },
            "ok": 1.0,
        };
        let mut batch = Batch::new();
        let mut walk = Walk::default();
        walk.publish(&d, "", KeyStyle::default(), &mut batch);
        assert_eq!(
            names(&batch),
            [
                ("connections.current".into(), 3.0),
                ("connections.totalCreated".into(), 10.0),
                ("wiredTiger.cache.bytes_currently_in_the_cache".into(), 1.5),
                ("dur.mmapv1.journal.x.y".into(), 2.0),
                ("locks.admin.system.n".into(), 4.0),
                ("locks._global_.m".into(), 5.0),
                ("ok".into(), 1.0),
            ]
        );
        let mut batch = Batch::new();
        walk.publish(
            &d,
            "h1",
            KeyStyle {
                replace_dashes: false,
            },
            &mut batch,
        );
        assert!(names(&batch).contains(&("h1.dur.mmapv1-journal.x-y".into(), 2.0)));
    }

    #[test]
    fn booleans_dates_and_other_types() {
        let d = doc! {
            "b": true, "f": false,
            "at": DateTime::from_millis(1_700_000_000_999),
            "before_epoch": DateTime::from_millis(-1_500),
            "s": "12", "arr": [1_i32, 2_i32], "n": Bson::Null,
            "ts": Bson::Timestamp(mongodb::bson::Timestamp { time: 5, increment: 1 }),
        };
        let mut batch = Batch::new();
        Walk::default().publish(&d, "", KeyStyle::default(), &mut batch);
        assert_eq!(
            names(&batch),
            [
                ("b".into(), 1.0),
                ("f".into(), 0.0),
                ("at".into(), 1_700_000_000.0),
                ("before_epoch".into(), -2.0),
            ]
        );
    }

    #[test]
    fn deep_nesting_is_cut_and_counted() {
        // 1,000 levels, built from the inside out.
        let mut d = doc! { "x": 1_i32 };
        for _ in 0..1000 {
            d = doc! { "a": d, "y": 2_i32 };
        }
        let mut batch = Batch::new();
        let mut walk = Walk::default();
        walk.publish(&d, "", KeyStyle::default(), &mut batch);
        assert_eq!(walk.too_deep, 1);
        // The `y` of each of the levels followed.
        assert_eq!(batch.len(), MAX_DEPTH + 1);
    }

    #[test]
    fn lookup_and_number() {
        let d = doc! { "a": { "b": { "c": 5_i64, "s": "x", "t": true } } };
        assert_eq!(number_at(&d, &["a", "b", "c"]), Some(5.0));
        assert_eq!(number_at(&d, &["a", "b", "s"]), None);
        assert_eq!(number_at(&d, &["a", "b", "t"]), None);
        assert_eq!(number_at(&d, &["a", "x", "c"]), None);
        assert_eq!(number_at(&d, &[]), None);
    }
}
