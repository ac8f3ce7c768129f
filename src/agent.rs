//! The running agent: outputs, one task per collector instance, self-metrics,
//! and an orderly stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use carat_collector::{Batch, CollectorError, Environment};
use tokio::sync::watch;

use crate::config::{CollectorInstance, Config};
use crate::metrics::MetricBatch;
use crate::output::{self, Closing};
use crate::pipeline::{metric_prefix, NameFilter, Publisher};
use crate::registry::BuildFn;
use crate::scheduler::{self, RunOutcome, Schedule};
use crate::self_metrics::{self, SelfCollector};
use crate::stats::{AgentStats, CollectorStats, OutputStats};
use crate::systemd::{self, Heartbeat, Watchdog};

/// A configured agent, ready to run.
pub struct Agent {
    config: Config,
    host: String,
    stats: Arc<AgentStats>,
}

impl Agent {
    /// Prepares an agent; the host name is looked up now.
    pub fn new(config: Config) -> Self {
        let host = config
            .agent
            .hostname
            .clone()
            .unwrap_or_else(|| crate::hostname::resolve(config.agent.hostname_method));
        let mut stats = AgentStats::default();
        for c in enabled(&config) {
            stats.collectors.push((c.name.clone(), Arc::default()));
        }
        if config.agent.self_metrics {
            stats
                .collectors
                .push((self_metrics::INSTANCE.to_owned(), Arc::default()));
        }
        for o in &config.outputs {
            stats.outputs.push((o.name.clone(), Arc::default()));
        }
        Agent {
            config,
            host,
            stats: Arc::new(stats),
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

    fn environment(&self, instance: &str) -> Environment {
        Environment {
            proc_root: self.config.proc_root(),
            sys_root: self.config.sys_root(),
            instance: instance.to_owned(),
        }
    }

    fn publisher(&self, instance: &CollectorInstance) -> Publisher {
        let agent = &self.config.agent;
        let prefix = metric_prefix(
            &agent.path_prefix,
            &self.host,
            &agent.path_suffix,
            &instance.path(),
        );
        // Patterns were compiled once when the configuration was validated.
        let filter = NameFilter::new(
            instance.common.metrics_whitelist.sources(),
            instance.common.metrics_blacklist.sources(),
        )
        .unwrap_or_default();
        Publisher::new(prefix, filter)
    }

    fn schedule(&self, instance: &CollectorInstance) -> Schedule {
        let interval = instance
            .common
            .interval
            .unwrap_or(self.config.agent.interval);
        Schedule {
            interval,
            splay: instance
                .common
                .splay
                .unwrap_or(self.config.agent.splay)
                .min(interval),
            timeout: instance.common.timeout.unwrap_or(interval),
        }
    }

    /// Runs until `shutdown` completes, then stops collecting, lets outputs
    /// deliver what they hold for up to `shutdown_timeout`, and returns.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let output_stats: Vec<Arc<OutputStats>> = self
            .stats
            .outputs
            .iter()
            .map(|(_, s)| Arc::clone(s))
            .collect();
        let (closing, closing_signal) = Closing::new(self.config.agent.shutdown_timeout);
        let outputs = output::start(&self.config.outputs, &output_stats, &closing);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut collectors = Vec::new();

        for instance in enabled(&self.config) {
            let task = scheduler::Instance {
                name: instance.name.clone(),
                schedule: self.schedule(instance),
                build: Arc::clone(&instance.build),
                env: self.environment(&instance.name),
                publisher: self.publisher(instance),
                fanout: Arc::clone(&outputs.fanout),
                stats: self.collector_stats(&instance.name),
            };
            tracing::info!(
                "collector {} every {:?} at {}",
                instance.name,
                task.schedule.interval,
                task.publisher.prefix()
            );
            collectors.push(tokio::spawn(scheduler::run(task, stop_rx.clone())));
        }
        if self.config.agent.self_metrics {
            let stats = Arc::clone(&self.stats);
            let build: BuildFn = Arc::new(move |_env: &Environment| {
                Ok(Box::new(SelfCollector::new(Arc::clone(&stats))) as _)
            });
            let agent = &self.config.agent;
            let task = scheduler::Instance {
                name: self_metrics::INSTANCE.to_owned(),
                schedule: Schedule {
                    interval: agent.interval,
                    splay: Duration::ZERO,
                    timeout: agent.interval,
                },
                build,
                env: self.environment(self_metrics::INSTANCE),
                publisher: Publisher::new(
                    metric_prefix(
                        &agent.path_prefix,
                        &self.host,
                        &agent.path_suffix,
                        self_metrics::PATH,
                    ),
                    NameFilter::default(),
                ),
                fanout: Arc::clone(&outputs.fanout),
                stats: self.collector_stats(self_metrics::INSTANCE),
            };
            collectors.push(tokio::spawn(scheduler::run(task, stop_rx.clone())));
        }
        let health_listen = &self.config.agent.health_listen;
        if !health_listen.is_empty() {
            match tokio::net::TcpListener::bind(health_listen.as_str()).await {
                Ok(listener) => {
                    tracing::info!("health endpoint on http://{health_listen}/health");
                    tokio::spawn(crate::health::serve(listener, self.stats(), stop_rx.clone()));
                }
                Err(e) => tracing::error!(
                    "cannot listen on {health_listen} for the health endpoint: {e}; running without it"
                ),
            }
        }
        drop(stop_rx);
        // Only the collector tasks hold the fan-out now: once they end, the
        // queues close and the outputs drain.
        drop(outputs.fanout);
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
        systemd::ready(&format!(
            "collecting: {} collector instances, {} outputs",
            collectors.len(),
            self.config.outputs.len()
        ));

        shutdown.await;
        systemd::stopping();
        // The outputs' deadline runs from now: a write blocked on a receiver
        // that stopped reading is given up on at the deadline, and what is
        // left goes to the spool or is counted as dropped.
        closing_signal.start();
        let deadline = closing.deadline();
        tracing::info!(
            "stopping: no more collection; delivering what is buffered (for up to {:?})",
            self.config.agent.shutdown_timeout
        );
        let _ = stop_tx.send(true);
        // A run in progress may finish (its samples are delivered); the
        // stragglers are abandoned together after 2 s, not 2 s each.
        let stragglers = tokio::time::Instant::now() + Duration::from_secs(2);
        for task in collectors {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(stragglers, task).await.is_err() {
                abort.abort();
            }
        }
        // Outputs stop at the deadline themselves; the margin covers writing
        // what is left to the spool.
        let grace = deadline + Duration::from_secs(2);
        for (name, task) in outputs.tasks {
            let abort = task.abort_handle();
            match tokio::time::timeout_at(grace, task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(output = %name, "output task ended abnormally: {e}"),
                Err(_) => {
                    abort.abort();
                    tracing::error!(output = %name, "output did not finish by its deadline; abandoned");
                }
            }
        }
        if let Some((watchdog, beats)) = watchdog {
            beats.abort();
            drop(watchdog);
        }
        for (name, s) in &self.stats.outputs {
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

    fn collector_stats(&self, name: &str) -> Arc<CollectorStats> {
        self.stats.collector(name).cloned().unwrap_or_default()
    }

    /// Runs every enabled collector twice, `gap` apart (so counters have a
    /// rate), and returns the second run's metrics as sorted Graphite lines.
    /// Errors are returned next to the lines, one per failed collector: the
    /// first error of an instance that fails in both runs is reported once.
    pub async fn collect_twice(&self, gap: Duration) -> (Vec<String>, Vec<String>) {
        let mut errors = InstanceErrors::default();
        let mut running = Vec::new();
        for instance in enabled(&self.config) {
            match (instance.build)(&self.environment(&instance.name)) {
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
