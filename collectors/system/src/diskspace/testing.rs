//! Helpers of the tests of the `diskspace` modules.

use std::collections::HashMap;
use std::path::Path;

use carat_collector::{Batch, Collector, CollectorError, Environment};

use super::metrics::Unit;
use super::mounts::parse_mounts;
use super::select::{select_mounts, MountFilter};
use super::{DiskSpace, DiskSpaceConfig};
use crate::test_support::{byte_units, fixture_path};

pub(super) fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(&format!("diskspace/{name}"))).unwrap()
}

pub(super) fn default_filter() -> MountFilter {
    let config = DiskSpaceConfig::default();
    MountFilter {
        filesystems: config.filesystems,
        exclude: config.exclude_filters,
    }
}

/// `(mount point, metric name)` of the mounts chosen from `text`.
pub(super) fn chosen(text: &[u8], filter: &MountFilter) -> (Vec<(String, String)>, Vec<String>) {
    let mut lines = Vec::new();
    parse_mounts(Path::new("mounts"), text, &mut lines).unwrap();
    let mut mounts = Vec::new();
    let mut problems = Vec::new();
    select_mounts(&lines, filter, &|_| None, &mut mounts, &mut problems);
    let pairs = mounts.into_iter().map(|m| (m.shown, m.name)).collect();
    (pairs, problems)
}

pub(super) fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

pub(super) fn units(names: &[&str]) -> Vec<Unit> {
    byte_units(names).iter().copied().map(Unit::new).collect()
}

pub(super) fn published(batch: &Batch) -> HashMap<String, f64> {
    batch
        .iter()
        .map(|s| match s.value {
            carat_collector::SampleValue::Gauge(v) => (s.name.to_owned(), v),
            other => panic!("{} is not a gauge: {other:?}", s.name),
        })
        .collect()
}

#[track_caller]
pub(super) fn close(p: &HashMap<String, f64>, name: &str, expected: f64, tolerance: f64) {
    let actual = *p
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing: {p:?}"));
    assert!(
        (actual - expected).abs() <= tolerance,
        "{name} = {actual}, expected {expected}"
    );
}

pub(super) fn build(config: DiskSpaceConfig) -> Result<DiskSpace, CollectorError> {
    DiskSpace::new(config, &Environment::default())
}
