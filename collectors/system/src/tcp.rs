//! The `tcp` collector (path `tcp`). Not yet implemented: a
//! placeholder so the crate's layout is in place.

use carat_collector::{Batch, Collector, CollectorError, Environment};
use serde::Deserialize;

/// Options of the `tcp` collector.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpConfig {}

/// TCP counters (retransmits, resets, listen drops…) from /proc/net/netstat and snmp.
pub struct Tcp {}

impl Collector for Tcp {
    type Config = TcpConfig;
    const KIND: &'static str = "tcp";
    const DESCRIPTION: &'static str = "TCP counters (retransmits, resets, listen drops…) from /proc/net/netstat and snmp";
    const DEFAULT_PATH: &'static str = "tcp";

    fn new(_config: TcpConfig, _env: &Environment) -> Result<Self, CollectorError> {
        Ok(Tcp {})
    }

    async fn collect(&mut self, _batch: &mut Batch) -> Result<(), CollectorError> {
        Err(CollectorError::Unsupported("the tcp collector is not implemented yet".into()))
    }
}
