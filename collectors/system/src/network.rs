//! The `network` collector (path `network`). Not yet implemented: a
//! placeholder so the crate's layout is in place.

use carat_collector::{Batch, Collector, CollectorError, Environment};
use serde::Deserialize;

/// Options of the `network` collector.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {}

/// Traffic, packets and errors per network interface, from /proc/net/dev.
pub struct Network {}

impl Collector for Network {
    type Config = NetworkConfig;
    const KIND: &'static str = "network";
    const DESCRIPTION: &'static str = "Traffic, packets and errors per network interface, from /proc/net/dev";
    const DEFAULT_PATH: &'static str = "network";

    fn new(_config: NetworkConfig, _env: &Environment) -> Result<Self, CollectorError> {
        Ok(Network {})
    }

    async fn collect(&mut self, _batch: &mut Batch) -> Result<(), CollectorError> {
        Err(CollectorError::Unsupported("the network collector is not implemented yet".into()))
    }
}
