//! The `exec` collector: metrics from any program — a shell script, a
//! Python script, a vendor's tool — without writing Rust.
//!
//! The command (`command`, run without a shell) writes metrics on standard
//! output, as Graphite plaintext lines or as JSON ([`parse`]). In the
//! default mode it runs on every interval ([`once`]); with
//! `mode = "daemon"` it is started once and kept running ([`daemon`]).
//! Either way it runs in a process group of its own, with standard input
//! from `/dev/null`, no descriptor of the agent's beyond its pipes, the
//! agent's environment plus `env`, and, when the agent runs as root, as
//! `user` ([`process`]).
//!
//! Everything is bounded: a run's time (the instance's `timeout`, which
//! every collector has, by default its interval; then the whole group is
//! killed), its standard output (`max_output`), a line (8 KiB), the lines
//! a daemon keeps between runs (`max_pending`), and the lines of standard
//! error that reach the agent's log (10 a minute). A timeout, a non-zero
//! exit, output that is not metrics (the offending line quoted) or too much
//! of it fails the run, and the agent counts it and backs off like any
//! collector's failure.
//!
//! The README of this crate lists the options and the output formats.
#![warn(missing_docs)]

/// The commented sample configuration of this crate's collector
/// ([`carat_collector::sample`]).
pub const SAMPLE: &str = include_str!("../sample.toml");

pub mod config;
pub mod daemon;
pub mod lines;
pub mod once;
pub mod parse;
pub mod process;
#[cfg(test)]
mod tests;

use std::time::Duration;

use carat_collector::input::excerpt;
use carat_collector::{Batch, Collector, CollectorError, Environment};

pub use config::{ExecConfig, Format, Mode};
use daemon::{Daemon, Limits};
use lines::StderrLog;
use parse::{Metrics, Reading};
use process::{Account, Launcher};

/// The `exec` collector. See the [crate documentation](crate).
pub struct Exec {
    config: ExecConfig,
    /// How long a run may take: a little less than the agent's run
    /// timeout, so that the command's group is killed and the error says
    /// so before the agent abandons the run.
    timeout: Duration,
    launcher: Launcher,
    instance: String,
    /// `once`: standard error of the runs, rate-limited.
    stderr: StderrLog,
    /// `daemon`: the supervisor, started at the first run.
    daemon: Option<Daemon>,
}

impl Collector for Exec {
    type Config = ExecConfig;
    const KIND: &'static str = "exec";
    const DESCRIPTION: &'static str =
        "Metrics from any program: Graphite lines or JSON on its standard output, run on the interval or kept running";
    const DEFAULT_PATH: &'static str = "exec";
    const SAMPLE: &'static str = crate::SAMPLE;

    fn new(config: ExecConfig, env: &Environment) -> Result<Self, CollectorError> {
        config.check()?;
        let account = config
            .user
            .as_deref()
            .map(Account::for_option)
            .transpose()?;
        Ok(Exec {
            timeout: command_timeout(env.run_timeout),
            launcher: Launcher::new(config.clone(), account),
            config,
            instance: env.instance.clone(),
            stderr: StderrLog::new(&env.instance),
            daemon: None,
        })
    }

    async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        match self.config.mode {
            Mode::Once => self.collect_once(batch).await,
            Mode::Daemon => {
                self.collect_daemon(batch);
                Ok(())
            }
        }
    }
}

impl Exec {
    async fn collect_once(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        let output = once::run(
            &self.launcher,
            self.timeout,
            self.config.max_output,
            &mut self.stderr,
        )
        .await?;
        let text = String::from_utf8_lossy(&output);
        let mut metrics = Metrics::new();
        match self.config.format {
            Format::Graphite => {
                for (number, line) in text.lines().enumerate() {
                    parse::graphite_line(line, &self.config.counters, &mut metrics)
                        .map_err(|why| self.bad_output(number + 1, line, &why))?;
                }
            }
            Format::Json => parse::json_document(&text, &self.config.counters, &mut metrics)
                .map_err(|why| {
                    CollectorError::parse(
                        self.launcher.display(),
                        format!(
                            "its output is not metrics: {why}; it starts with {}",
                            excerpt(text.trim_start(), 80)
                        ),
                    )
                })?,
        }
        add(batch, &metrics);
        Ok(())
    }

    /// Publishes what the daemon wrote since the last run; its exits,
    /// dropped lines and lines that are not metrics are failed parts of
    /// the run: counted and logged by the agent, without holding back the
    /// metrics that did arrive.
    fn collect_daemon(&mut self, batch: &mut Batch) {
        let daemon = self.daemon.get_or_insert_with(|| {
            let limits = Limits {
                max_pending: self.config.max_pending,
                restart_min: self.config.restart_min,
                restart_max: self.config.restart_max,
            };
            Daemon::start(self.launcher.clone(), limits, &self.instance)
        });
        let since = daemon.take();
        let mut metrics = Metrics::new();
        let mut malformed = 0u64;
        let mut first_bad: Option<String> = None;
        for line in &since.lines {
            let read = match self.config.format {
                Format::Graphite => {
                    parse::graphite_line(line, &self.config.counters, &mut metrics).map(|_| ())
                }
                Format::Json if line.trim().is_empty() => Ok(()),
                Format::Json => parse::json_document(line, &self.config.counters, &mut metrics),
            };
            if let Err(why) = read {
                malformed += 1;
                first_bad.get_or_insert_with(|| format!("{why}: {}", excerpt(line, 120)));
            }
        }
        add(batch, &metrics);
        let command = self.launcher.display();
        if since.exits > 0 {
            let last = since
                .last_exit
                .map_or_else(|| "it exited".to_owned(), |e| e.to_string());
            batch.fail_part(
                "process",
                CollectorError::status(
                    command.clone(),
                    None,
                    format!(
                        "exited or failed to start {} times since the last run (the last: {last}); started again with backoff",
                        since.exits
                    ),
                ),
            );
        }
        if since.dropped > 0 {
            batch.fail_part(
                "pending",
                CollectorError::Limit(format!(
                    "{command} wrote faster than it is read: {} lines dropped, the oldest first (max_pending = {})",
                    since.dropped, self.config.max_pending
                )),
            );
        }
        if malformed > 0 || since.too_long > 0 {
            let mut why = format!("{} lines were not metrics", malformed + since.too_long);
            if since.too_long > 0 {
                why.push_str(&format!(
                    " ({} longer than {} bytes)",
                    since.too_long,
                    lines::MAX_LINE
                ));
            }
            if let Some(first) = first_bad {
                why.push_str(&format!("; the first: {first}"));
            }
            batch.fail_part("output", CollectorError::parse(command, why));
        }
    }

    /// A line of output that is not a metric: the run fails, quoting it.
    fn bad_output(&self, number: usize, line: &str, why: &str) -> CollectorError {
        CollectorError::parse(
            format!("{} output line {number}", self.launcher.display()),
            format!("{why}: {}", excerpt(line, 120)),
        )
    }
}

/// The command's time: the agent's run timeout less 5 % (at most half a
/// second), the margin in which the group is killed and reaped.
fn command_timeout(run_timeout: Duration) -> Duration {
    run_timeout.saturating_sub((run_timeout / 20).min(Duration::from_millis(500)))
}

fn add(batch: &mut Batch, metrics: &Metrics) {
    for (name, reading) in metrics {
        match *reading {
            Reading::Gauge(v) => batch.gauge(name, v),
            Reading::Counter(v) => batch.counter(name, v),
        }
    }
}
