//! The `diskspace` collector (path `diskspace`). Not yet implemented: a
//! placeholder so the crate's layout is in place.

use carat_collector::{Batch, Collector, CollectorError, Environment};
use serde::Deserialize;

/// Options of the `diskspace` collector.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskSpaceConfig {}

/// Free and used space and inodes per mounted filesystem.
pub struct DiskSpace {}

impl Collector for DiskSpace {
    type Config = DiskSpaceConfig;
    const KIND: &'static str = "diskspace";
    const DESCRIPTION: &'static str = "Free and used space and inodes per mounted filesystem";
    const DEFAULT_PATH: &'static str = "diskspace";

    fn new(_config: DiskSpaceConfig, _env: &Environment) -> Result<Self, CollectorError> {
        Ok(DiskSpace {})
    }

    async fn collect(&mut self, _batch: &mut Batch) -> Result<(), CollectorError> {
        Err(CollectorError::Unsupported("the diskspace collector is not implemented yet".into()))
    }
}
