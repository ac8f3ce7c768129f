//! The `vmstat` collector (path `vmstat`). Not yet implemented: a
//! placeholder so the crate's layout is in place.

use carat_collector::{Batch, Collector, CollectorError, Environment};
use serde::Deserialize;

/// Options of the `vmstat` collector.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VmStatConfig {}

/// Paging and swapping rates from /proc/vmstat.
pub struct VmStat {}

impl Collector for VmStat {
    type Config = VmStatConfig;
    const KIND: &'static str = "vmstat";
    const DESCRIPTION: &'static str = "Paging and swapping rates from /proc/vmstat";
    const DEFAULT_PATH: &'static str = "vmstat";

    fn new(_config: VmStatConfig, _env: &Environment) -> Result<Self, CollectorError> {
        Ok(VmStat {})
    }

    async fn collect(&mut self, _batch: &mut Batch) -> Result<(), CollectorError> {
        Err(CollectorError::Unsupported("the vmstat collector is not implemented yet".into()))
    }
}
