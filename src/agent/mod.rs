//! The running agent: outputs, one task per collector instance, self-metrics,
//! the health endpoint, reloads of the configuration, and an orderly stop.
//!
//! What runs is described by a [`Plan`] made from the configuration; the
//! agent starts by applying the plan of its configuration to nothing, and a
//! reload applies the plan of the new configuration to what runs
//! ([`running::Running::apply`]): only what changed is stopped or started.

mod plan;
mod running;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use carat_collector::{Batch, CollectorError, Environment};
use tokio::sync::mpsc;

use crate::config::{CollectorInstance, Config, ConfigError};
use crate::metrics::MetricBatch;
use crate::output;
use crate::pipeline::{metric_prefix, NameFilter, Publisher};
use crate::scheduler::{self, RunOutcome, Schedule};
use crate::stats::AgentStats;
use crate::systemd::{self, Heartbeat, Watchdog};

/// What the running agent is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Read the configuration again and apply what changed.
    Reload,
    /// Stop collecting, deliver what is buffered, return.
    Stop,
}

/// Reads the configuration again, the way the agent's was read at start
/// (same file, same directory). Called off the async runtime: it reads
/// files.
pub type LoadConfig = Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// A configured agent, ready to run.
pub struct Agent {
    config: Config,
    host: String,
    stats: Arc<AgentStats>,
}

impl Agent {
    /// Prepares an agent; the host name is looked up now.
    pub fn new(config: Config) -> Self {
        let stats = Arc::new(AgentStats::default());
        let agent = Agent::with_stats(config, stats);
        let plan = agent.plan();
        agent.stats.set_collectors(
            plan.collector_names()
                .map(|n| (n.to_owned(), Arc::default()))
                .collect(),
        );
        agent.stats.set_outputs(
            agent
                .config
                .outputs
                .iter()
                .map(|o| (o.name.clone(), Arc::default()))
                .collect(),
        );
        agent
    }

    /// An agent for `config` that keeps its statistics in `stats` (a
    /// reload's: the instances and outputs that stay keep their counters).
    fn with_stats(config: Config, stats: Arc<AgentStats>) -> Self {
        let host = config
            .agent
            .hostname
            .clone()
            .unwrap_or_else(|| crate::hostname::resolve(config.agent.hostname_method));
        Agent {
            config,
            host,
            stats,
        }
    }

    /// The host name used in metric paths.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The agent's statistics, live while it runs.
    pub fn stats(&self) -> Arc<AgentStats> {
        Arc::clone(&self.stats)
    }

    fn environment(&self, instance: &CollectorInstance) -> Environment {
        let agent = &self.config.agent;
        agent.environment(&instance.name, agent.run_timeout_of(&instance.common))
    }

    fn prefix(&self, collector_path: &str) -> String {
        let agent = &self.config.agent;
        metric_prefix(
            &agent.path_prefix,
            &self.host,
            &agent.path_suffix,
            collector_path,
        )
    }

    fn publisher(&self, instance: &CollectorInstance) -> Publisher {
        // Patterns were compiled once when the configuration was validated.
        let filter = NameFilter::new(
            instance.common.metrics_whitelist.sources(),
            instance.common.metrics_blacklist.sources(),
        )
        .unwrap_or_default();
        Publisher::new(self.prefix(&instance.path()), filter)
    }

    fn schedule(&self, instance: &CollectorInstance) -> Schedule {
        let agent = &self.config.agent;
        let interval = agent.interval_of(&instance.common);
        Schedule {
            interval,
            splay: instance.common.splay.unwrap_or(agent.splay).min(interval),
            timeout: agent.run_timeout_of(&instance.common),
        }
    }

    /// Runs until `shutdown` completes, then stops collecting, lets outputs
    /// deliver what they hold for up to `shutdown_timeout`, and returns.
    /// No reload: [`Agent::run`] has them.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let (commands, received) = mpsc::channel(1);
        let stop = async move {
            shutdown.await;
            let _ = commands.send(Command::Stop).await;
            std::future::pending::<()>().await;
        };
        tokio::select! {
            () = self.run(received, None) => {}
            () = stop => {}
        }
    }

    /// Runs, applying each [`Command`] received: a reload reads the
    /// configuration with `load` and applies what changed (without `load`,
    /// or when the new configuration is refused, what runs keeps running);
    /// a stop, or the end of `commands`, stops collecting, lets outputs
    /// deliver what they hold for up to `shutdown_timeout`, and returns.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>, load: Option<LoadConfig>) {
        let mut running = running::Running::new(self.stats());
        running.apply(self.plan(), true).await;
        // Under systemd: alive only while this runtime runs tasks, until
        // the very end (the delivery after a stop included).
        let heartbeat = Heartbeat::default();
        let watchdog = Watchdog::start(heartbeat.clone()).map(|(watchdog, every)| {
            let beats = tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    heartbeat.beat();
                }
            });
            (watchdog, beats)
        });
        systemd::ready(&running.status());

        while let Some(Command::Reload) = commands.recv().await {
            systemd::reloading();
            match reload(load.as_ref()).await {
                Ok(config) => {
                    let next = Agent::with_stats(config, Arc::clone(&self.stats));
                    if next.config.agent != self.config.agent {
                        tracing::info!("reload: [agent] settings changed");
                    }
                    let changes = running.apply(next.plan(), false).await;
                    tracing::info!(
                        "reload: configuration read from {}: {changes}",
                        next.config.describe_files()
                    );
                    self = next;
                }
                Err(why) => tracing::error!(
                    "reload refused, still running the previous configuration: {why}"
                ),
            }
            systemd::ready(&running.status());
        }

        systemd::stopping();
        tracing::info!(
            "stopping: no more collection; delivering what is buffered (for up to {:?})",
            self.config.agent.shutdown_timeout
        );
        running.stop(self.config.agent.shutdown_timeout).await;
        if let Some((watchdog, beats)) = watchdog {
            beats.abort();
            drop(watchdog);
        }
        for (name, s) in self.stats.outputs() {
            tracing::info!(
                output = %name,
                "output {name} totals: sent {}, dropped {}, left in the spool {}",
                crate::stats::get(&s.sent),
                crate::stats::get(&s.dropped),
                crate::stats::get(&s.buffered)
            );
        }
        tracing::info!("stopped");
    }

    /// Runs every enabled collector twice, `gap` apart (so counters have a
    /// rate), and returns the second run's metrics as sorted Graphite lines.
    /// Errors are returned next to the lines, one per failed collector: the
    /// first error of an instance that fails in both runs is reported once.
    pub async fn collect_twice(&self, gap: Duration) -> (Vec<String>, Vec<String>) {
        let mut errors = InstanceErrors::default();
        let mut running = Vec::new();
        for instance in enabled(&self.config) {
            match (instance.build)(&self.environment(instance)) {
                Ok(c) => running.push((instance, Some(c), self.publisher(instance))),
                Err(e) => errors.add(&instance.name, e.to_string()),
            }
        }
        let mut batches: Vec<MetricBatch> = Vec::new();
        for round in 0..2 {
            if round == 1 {
                tokio::time::sleep(gap).await;
            }
            for (instance, slot, publisher) in &mut running {
                let Some(c) = slot.take() else { continue };
                let limit = self.schedule(instance).timeout;
                let (c, b, failure) = match scheduler::run_once(c, Batch::new(), limit).await {
                    RunOutcome::Done(c, b) => (Some(c), Some(b), None),
                    RunOutcome::Failed(c, b, e) => (Some(c), Some(b), Some(e.to_string())),
                    RunOutcome::Panicked(m) => (None, None, Some(format!("panicked: {m}"))),
                    RunOutcome::TimedOut(t) => (None, None, Some(format!("timed out after {t:?}"))),
                };
                *slot = c;
                if let Some(b) = b {
                    for f in b.failed_parts() {
                        errors.add_part(&instance.name, &f.part, &f.error);
                    }
                    let (metrics, _) = publisher.publish(&b);
                    if round == 1 {
                        batches.push(metrics);
                    }
                }
                if let Some(f) = failure {
                    errors.add(&instance.name, f);
                }
            }
        }
        let mut lines: Vec<String> = Vec::new();
        for b in &batches {
            let mut buf = Vec::new();
            output::encode::encode_batch(&mut buf, b);
            lines.extend(String::from_utf8_lossy(&buf).lines().map(str::to_owned));
        }
        lines.sort();
        (lines, errors.lines)
    }
}

/// Reads the configuration again with `load`, off the runtime; the error
/// says why the reload is refused.
async fn reload(load: Option<&LoadConfig>) -> Result<Config, String> {
    let Some(load) = load.cloned() else {
        return Err("this agent was started without a configuration to read again".to_owned());
    };
    match tokio::task::spawn_blocking(move || load()).await {
        Ok(Ok(config)) => Ok(config),
        Ok(Err(e)) => Err(format!("configuration error: {e}")),
        Err(e) => Err(format!("reading the configuration failed: {e}")),
    }
}

/// The errors of [`Agent::collect_twice`]: the first of each instance, and
/// the first of each failed part of an instance's runs.
#[derive(Default)]
struct InstanceErrors {
    lines: Vec<String>,
    /// Instances, and (instance, part) pairs, already reported.
    failed: std::collections::HashSet<(String, String)>,
}

impl InstanceErrors {
    /// Records `error` of `instance` unless one of it is recorded already.
    fn add(&mut self, instance: &str, error: String) {
        if self.failed.insert((instance.to_owned(), String::new())) {
            self.lines.push(format!("{instance}: {error}"));
        }
    }

    /// Records the failure of part `part` of a run of `instance` unless
    /// that part's failure is recorded already.
    fn add_part(&mut self, instance: &str, part: &str, error: &CollectorError) {
        if self.failed.insert((instance.to_owned(), part.to_owned())) {
            self.lines.push(format!("{instance}: {part}: {error}"));
        }
    }
}

fn enabled(config: &Config) -> impl Iterator<Item = &CollectorInstance> {
    config.collectors.iter().filter(|c| c.common.enabled)
}
