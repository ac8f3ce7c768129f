//! The `exec` collector's options, and their checks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use carat_collector::options::{duration, Patterns, SecondsRange};
use carat_collector::CollectorError;
use serde::Deserialize;

/// The bounds of the restart delays.
const RESTART_RANGE: SecondsRange = SecondsRange::new(0.01, 86_400.0);

/// The most a command may write to standard output in one run, at most.
const MAX_OUTPUT_LIMIT: u64 = 64 << 20;

/// When the command runs.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Run on every interval; each run's output is that run's metrics.
    #[default]
    Once,
    /// Started once and kept running; what it writes between two runs of
    /// the collector is published by the second one. Restarted with
    /// backoff when it exits.
    Daemon,
}

/// What the command writes on standard output.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Graphite plaintext: `name value [timestamp] [counter|gauge]` a line.
    #[default]
    Graphite,
    /// A JSON object whose number leaves are the metrics (`once`); in
    /// `daemon` mode, one such object a line.
    Json,
}

/// Options of the `exec` collector (see the crate's README).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExecConfig {
    /// The program and its arguments, run without a shell.
    pub command: Vec<String>,
    /// `once` (default) or `daemon`.
    pub mode: Mode,
    /// `graphite` (default) or `json`.
    pub format: Format,
    /// Variables added to the environment the command inherits.
    pub env: BTreeMap<String, String>,
    /// The directory the command runs in (default: the agent's).
    pub working_dir: Option<PathBuf>,
    /// The user to run the command as; only when the agent runs as root.
    pub user: Option<String>,
    /// Regexes: metrics whose name matches one are counters (published as
    /// rates), unless their line says otherwise.
    pub counters: Patterns,
    /// The most bytes read from standard output in one run (`once`); more
    /// fails the run.
    pub max_output: u64,
    /// Lines held between two runs (`daemon`); beyond, the oldest are
    /// dropped and counted.
    pub max_pending: usize,
    /// First delay before a daemon that exited is started again.
    #[serde(deserialize_with = "duration::deserialize")]
    pub restart_min: Duration,
    /// Longest delay between restarts; a daemon that ran this long starts
    /// again from `restart_min`.
    #[serde(deserialize_with = "duration::deserialize")]
    pub restart_max: Duration,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            command: Vec::new(),
            mode: Mode::Once,
            format: Format::Graphite,
            env: BTreeMap::new(),
            working_dir: None,
            user: None,
            counters: Patterns::default(),
            max_output: 1 << 20,
            max_pending: 10_000,
            restart_min: Duration::from_secs(1),
            restart_max: Duration::from_secs(300),
        }
    }
}

impl ExecConfig {
    /// Checks what serde cannot: each problem names its option.
    pub fn check(&self) -> Result<(), CollectorError> {
        match self.command.first() {
            None => {
                return Err(CollectorError::option(
                    "command",
                    "set the program and its arguments: command = [\"/usr/local/bin/queue-depth\", \"--all\"] \
                     (run without a shell; for one, command = [\"sh\", \"-c\", \"…\"])",
                ))
            }
            Some(program) if program.is_empty() => {
                return Err(CollectorError::option("command", "the program is empty"))
            }
            Some(_) => {}
        }
        if let Some(i) = self.command.iter().position(|a| a.contains('\0')) {
            return Err(CollectorError::option(
                format!("command.{i}"),
                "an argument cannot hold a NUL character",
            ));
        }
        for (name, value) in &self.env {
            if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
                return Err(CollectorError::option(
                    format!("env.{name}"),
                    "a variable's name is not empty and holds no `=` or NUL, its value no NUL",
                ));
            }
        }
        if let Some(dir) = &self.working_dir {
            if !dir.is_absolute() {
                return Err(CollectorError::option(
                    "working_dir",
                    format!("{} is not an absolute path", dir.display()),
                ));
            }
        }
        RESTART_RANGE.check_option("restart_min", self.restart_min)?;
        RESTART_RANGE.check_option("restart_max", self.restart_max)?;
        if self.restart_min > self.restart_max {
            return Err(CollectorError::option(
                "restart_min",
                format!(
                    "{:?} is more than restart_max ({:?})",
                    self.restart_min, self.restart_max
                ),
            ));
        }
        if self.max_output == 0 || self.max_output > MAX_OUTPUT_LIMIT {
            return Err(CollectorError::option(
                "max_output",
                format!("expected 1 to {MAX_OUTPUT_LIMIT} bytes"),
            ));
        }
        if self.max_pending == 0 || self.max_pending > 1_000_000 {
            return Err(CollectorError::option(
                "max_pending",
                "expected 1 to 1000000 lines",
            ));
        }
        Ok(())
    }

    /// The command as shown in logs and errors: its words (quoted where
    /// needed) in quotes, cut at 120 characters.
    pub fn display(&self) -> String {
        let words: Vec<String> = self
            .command
            .iter()
            .map(|w| {
                if !w.is_empty() && !w.contains(|c: char| c.is_whitespace() || c == '"') {
                    w.clone()
                } else {
                    format!("{w:?}")
                }
            })
            .collect();
        carat_collector::input::excerpt(&words.join(" "), 120)
    }
}
