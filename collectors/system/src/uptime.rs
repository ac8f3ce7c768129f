//! The `uptime` collector (path `uptime`). Not yet implemented: a
//! placeholder so the crate's layout is in place.

use carat_collector::{Batch, Collector, CollectorError, Environment};
use serde::Deserialize;

/// Options of the `uptime` collector.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UptimeConfig {}

/// How long the host has been up, from /proc/uptime.
pub struct Uptime {}

impl Collector for Uptime {
    type Config = UptimeConfig;
    const KIND: &'static str = "uptime";
    const DESCRIPTION: &'static str = "How long the host has been up, from /proc/uptime";
    const DEFAULT_PATH: &'static str = "uptime";

    fn new(_config: UptimeConfig, _env: &Environment) -> Result<Self, CollectorError> {
        Ok(Uptime {})
    }

    async fn collect(&mut self, _batch: &mut Batch) -> Result<(), CollectorError> {
        Err(CollectorError::Unsupported("the uptime collector is not implemented yet".into()))
    }
}
