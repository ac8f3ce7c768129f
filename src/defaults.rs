//! The configuration carat runs with when no file is found, and the
//! commented sample printed by `carat sample-config` (also shipped as
//! `conf/carat.toml`).

use std::path::{Path, PathBuf};

/// The built-in default: the system collectors, printed on standard output.
pub const BUILTIN: &str = r#"
[agent]
interval = 10

[collector.cpu]
[collector.memory]
[collector.loadavg]

[output.stdout]
"#;

/// The complete commented sample configuration.
pub const SAMPLE: &str = include_str!("../conf/carat.toml");

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
