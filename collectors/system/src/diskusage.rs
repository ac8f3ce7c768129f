//! The `diskusage` collector (path `iostat`). Not yet implemented: a
//! placeholder so the crate's layout is in place.

use carat_collector::{Batch, Collector, CollectorError, Environment};
use serde::Deserialize;

/// Options of the `diskusage` collector.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskUsageConfig {}

/// Disk I/O per device, iostat-style, from /proc/diskstats.
pub struct DiskUsage {}

impl Collector for DiskUsage {
    type Config = DiskUsageConfig;
    const KIND: &'static str = "diskusage";
    const DESCRIPTION: &'static str = "Disk I/O per device, iostat-style, from /proc/diskstats";
    const DEFAULT_PATH: &'static str = "iostat";

    fn new(_config: DiskUsageConfig, _env: &Environment) -> Result<Self, CollectorError> {
        Ok(DiskUsage {})
    }

    async fn collect(&mut self, _batch: &mut Batch) -> Result<(), CollectorError> {
        Err(CollectorError::Unsupported("the diskusage collector is not implemented yet".into()))
    }
}
