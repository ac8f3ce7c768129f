//! carat: a host metrics agent. Collectors sample the host and the software
//! on it; the agent names their metrics as Diamond did, turns counters into
//! rates and ships the results to Graphite (and more outputs to come).
//!
//! The binary (`src/main.rs`) is a thin command line over this library;
//! integration tests drive the library directly with their own collectors.

pub mod agent;
pub mod config;
pub mod defaults;
pub mod health;
pub mod hostname;
pub mod metrics;
pub mod migrate;
pub mod output;
pub mod pipeline;
pub mod registry;
pub mod scheduler;
pub mod self_metrics;
pub mod signals;
pub mod stats;
pub mod systemd;

pub use agent::Agent;
pub use config::{Config, ConfigError};
pub use registry::Registry;

use std::path::Path;

/// Loads the configuration carat would use with `-c explicit`: the given
/// file, `$CARAT_CONFIG`, `/etc/carat/carat.toml`, or the built-in default.
/// Returns the configuration and whether it is the built-in one. It must
/// have an output (as `run` and `check-config` need).
pub fn load_config(
    explicit: Option<&Path>,
    registry: &Registry,
) -> Result<(Config, bool), ConfigError> {
    load_config_with(explicit, registry, config::Outputs::Required)
}

/// [`load_config`], with or without an output (`carat once` needs none).
pub fn load_config_with(
    explicit: Option<&Path>,
    registry: &Registry,
    outputs: config::Outputs,
) -> Result<(Config, bool), ConfigError> {
    match defaults::config_path(explicit) {
        Some(path) => config::load_file_with(&path, registry, outputs).map(|c| (c, false)),
        None => config::load_str_with(
            defaults::BUILTIN,
            Path::new(config::BUILTIN_NAME),
            registry,
            outputs,
        )
        .map(|c| (c, true)),
    }
}
