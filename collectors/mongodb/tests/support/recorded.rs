//! The recorded documents of real mongod releases in `tests/fixtures` (their
//! sources are in its README), read and changed by known amounts: shared by
//! the collector's unit tests, its benchmark and the agent's tests, which
//! include this file with `#[path]`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mongodb::bson::{Bson, Document};

/// MongoDB 3.0.2, MMAPv1.
pub const MMAPV1_30: &str = "serverStatus-3.0.2-mmapv1.json";
/// MongoDB 3.0.10, WiredTiger (Diamond's own fixture).
pub const WT_30: &str = "serverStatus-3.0.10-wiredtiger.json";
/// MongoDB 6.0.12, WiredTiger.
pub const WT_60: &str = "serverStatus-6.0.12-wiredtiger.json";
/// MongoDB 8.0 (a release candidate), WiredTiger.
pub const WT_80: &str = "serverStatus-8.0.0-rc18-patch-wiredtiger.json";
/// `replSetGetStatus` of the same 8.0 server.
pub const REPL_80: &str = "replSetGetStatus-8.0.0-rc18-patch.json";

/// The fixtures' directory, from the collector's crate or from the
/// workspace's root (whichever package includes this file).
pub fn fixtures_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let own = manifest.join("tests/fixtures");
    if own.join("README.md").is_file() {
        own
    } else {
        manifest.join("collectors/mongodb/tests/fixtures")
    }
}

/// The document of an Extended JSON file.
pub fn read(path: &Path) -> Document {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match Bson::try_from(json) {
        Ok(Bson::Document(d)) => d,
        other => panic!("{}: not a document: {other:?}", path.display()),
    }
}

/// The recorded document `name` of the fixtures.
pub fn fixture(name: &str) -> Document {
    read(&fixtures_dir().join(name))
}

/// Writes `doc` to `path` as canonical Extended JSON (every type kept).
pub fn write(path: &Path, doc: Document) {
    let json = Bson::Document(doc).into_canonical_extjson();
    std::fs::write(path, json.to_string()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Adds `delta` to the number at `path`, keeping its BSON type.
pub fn add(doc: &mut Document, path: &[&str], delta: i64) {
    let value = number_mut(doc, path);
    *value = match *value {
        Bson::Int32(v) => Bson::Int32(v + delta as i32),
        Bson::Int64(v) => Bson::Int64(v + delta),
        Bson::Double(v) => Bson::Double(v + delta as f64),
        ref other => panic!("{path:?} is {other:?}, not a number"),
    };
}

/// Sets the number at `path` to `to`, keeping its BSON type.
pub fn set(doc: &mut Document, path: &[&str], to: i64) {
    let value = number_mut(doc, path);
    *value = match *value {
        Bson::Int32(_) => Bson::Int32(to as i32),
        Bson::Int64(_) => Bson::Int64(to),
        Bson::Double(_) => Bson::Double(to as f64),
        ref other => panic!("{path:?} is {other:?}, not a number"),
    };
}

/// The value at `path`, which must be there.
fn number_mut<'a>(doc: &'a mut Document, path: &[&str]) -> &'a mut Bson {
    let (last, parents) = path.split_last().expect("a path");
    let mut current = doc;
    for key in parents {
        current = current
            .get_document_mut(key)
            .unwrap_or_else(|_| panic!("{path:?}: no document {key}"));
    }
    current
        .get_mut(last)
        .unwrap_or_else(|| panic!("{path:?}: no {last}"))
}
