//! The `process` collector (path `process`). Not yet implemented: a
//! placeholder so the crate's layout is in place.

use carat_collector::{Batch, Collector, CollectorError, Environment};
use serde::Deserialize;

/// Options of the `process` collector.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessConfig {}

/// Named groups of processes: count, CPU, memory, threads, file descriptors.
pub struct Process {}

impl Collector for Process {
    type Config = ProcessConfig;
    const KIND: &'static str = "process";
    const DESCRIPTION: &'static str = "Named groups of processes: count, CPU, memory, threads, file descriptors";
    const DEFAULT_PATH: &'static str = "process";

    fn new(_config: ProcessConfig, _env: &Environment) -> Result<Self, CollectorError> {
        Ok(Process {})
    }

    async fn collect(&mut self, _batch: &mut Batch) -> Result<(), CollectorError> {
        Err(CollectorError::Unsupported("the process collector is not implemented yet".into()))
    }
}
