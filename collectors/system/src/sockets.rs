//! The `sockets` collector (path `sockets`). Not yet implemented: a
//! placeholder so the crate's layout is in place.

use carat_collector::{Batch, Collector, CollectorError, Environment};
use serde::Deserialize;

/// Options of the `sockets` collector.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketsConfig {}

/// Socket counts per protocol from /proc/net/sockstat and sockstat6.
pub struct Sockets {}

impl Collector for Sockets {
    type Config = SocketsConfig;
    const KIND: &'static str = "sockets";
    const DESCRIPTION: &'static str = "Socket counts per protocol from /proc/net/sockstat and sockstat6";
    const DEFAULT_PATH: &'static str = "sockets";

    fn new(_config: SocketsConfig, _env: &Environment) -> Result<Self, CollectorError> {
        Ok(Sockets {})
    }

    async fn collect(&mut self, _batch: &mut Batch) -> Result<(), CollectorError> {
        Err(CollectorError::Unsupported("the sockets collector is not implemented yet".into()))
    }
}
