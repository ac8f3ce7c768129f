//! The configuration carat runs with when no file is found, and the
//! commented sample printed by `carat sample-config` (also shipped as
//! `conf/carat.toml`), assembled from the registry.

use std::path::{Path, PathBuf};

use crate::registry::Registry;

/// The built-in default: the system collectors, printed on standard output.
pub const BUILTIN: &str = r#"
[agent]
interval = 10

[collector.cpu]
[collector.memory]
[collector.loadavg]

[output.stdout]
"#;

/// The beginning of the sample configuration: the `[agent]` table and what
/// every collector has.
const SAMPLE_HEAD: &str = include_str!("sample/head.toml");

/// The end of the sample configuration: the outputs.
const SAMPLE_OUTPUTS: &str = include_str!("sample/outputs.toml");

/// The complete commented sample configuration of this build: the agent's
/// part, the section of every kind `registry` has (from its crate's
/// `sample.toml`, [`carat_collector::Collector::SAMPLE`]) in the order they
/// were registered, and the outputs. `carat sample-config` prints it, and
/// `conf/carat.toml` is the same text for the default build (a test checks
/// it; regenerate the file with `cargo run -- sample-config >
/// conf/carat.toml`).
pub fn sample_config(registry: &Registry) -> String {
    let mut out = String::from(SAMPLE_HEAD);
    for kind in registry.in_order() {
        match kind.sample {
            Some(section) => out.push_str(section.trim_end()),
            None => out.push_str(&format!(
                "## --- {}: {} (its crate has no sample section for it) ---\n# [collector.{}]",
                kind.kind, kind.description, kind.kind
            )),
        }
        out.push_str("\n\n");
    }
    out.push_str(SAMPLE_OUTPUTS);
    out
}

/// Where carat looks for its configuration when `-c` is not given.
pub const SYSTEM_PATH: &str = "/etc/carat/carat.toml";

/// The configuration file to use: `explicit` (from `-c`), else
/// `$CARAT_CONFIG`, else [`SYSTEM_PATH`] if it exists. `None` means the
/// built-in default.
pub fn config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_owned());
    }
    if let Some(p) = std::env::var_os("CARAT_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let system = Path::new(SYSTEM_PATH);
    system.exists().then(|| system.to_owned())
}
