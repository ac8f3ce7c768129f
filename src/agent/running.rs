//! What the agent runs now, and how a [`Plan`] is applied to it: at start
//! to nothing, at a reload to what runs.
//!
//! A reload touches only what changed:
//!
//! - a collector instance whose [`Spec`] is unchanged keeps running
//!   untouched: same task, same collector (its connections), same rate
//!   state, same timing; one whose spec changed is stopped (a run in
//!   progress finishes and is published) and started again from its new
//!   options, with its statistics carried on; a new one starts, a removed
//!   one stops;
//! - an output whose options are unchanged keeps its task, queue,
//!   connection, buffer and spool; one whose options changed is told to
//!   end: it delivers what it can within the agent's `shutdown_timeout`
//!   and hands what is left in memory to its successor, which starts once
//!   it has ended (batches sent meanwhile wait in the successor's queue); a
//!   removed output delivers what it can and keeps the rest in its spool or
//!   counts it as dropped, as at a stop;
//! - the health endpoint moves when its address changed.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use carat_collector::Environment;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::plan::{Plan, Spec, Wanted};
use crate::config::{OutputInstance, OutputSettings};
use crate::output::{self, Fanout, Leftover};
use crate::registry::BuildFn;
use crate::scheduler;
use crate::self_metrics::SelfCollector;
use crate::stats::AgentStats;

/// How long collector runs still in progress at a stop may take to finish,
/// all together.
const STRAGGLERS: Duration = Duration::from_secs(2);

/// What runs.
pub(super) struct Running {
    stats: Arc<AgentStats>,
    fanout: Arc<Fanout>,
    collectors: BTreeMap<String, RunningCollector>,
    outputs: BTreeMap<String, RunningOutput>,
    /// Collector tasks a reload stopped, maybe still finishing a run.
    stopped_collectors: Vec<JoinHandle<()>>,
    /// Outputs a reload removed (or replaced by an output that does not
    /// take over a buffer), maybe still delivering.
    ending_outputs: Vec<(String, JoinHandle<Leftover>)>,
    health: Option<HealthEndpoint>,
}

struct RunningCollector {
    spec: Spec,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

struct RunningOutput {
    /// What a reload compares: the output's options (where they are
    /// written in the file does not count).
    settings: OutputSettings,
    started: output::Started,
}

struct HealthEndpoint {
    listen: String,
    stop: watch::Sender<bool>,
}

/// What applying a plan changed, for the log.
#[derive(Default)]
pub(super) struct Changes {
    collectors: Tally,
    outputs: Tally,
}

/// Names added, changed and removed, and how many stayed as they were.
#[derive(Default)]
struct Tally {
    added: Vec<String>,
    changed: Vec<String>,
    removed: Vec<String>,
    unchanged: usize,
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (what, names) in [
            ("added", &self.added),
            ("changed", &self.changed),
            ("removed", &self.removed),
        ] {
            if !names.is_empty() {
                write!(f, "{what} {}; ", names.join(", "))?;
            }
        }
        write!(f, "{} unchanged", self.unchanged)
    }
}

impl fmt::Display for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "collector instances: {}; outputs: {}",
            self.collectors, self.outputs
        )
    }
}

impl Running {
    /// Nothing runs yet.
    pub(super) fn new(stats: Arc<AgentStats>) -> Self {
        Running {
            stats,
            fanout: Arc::new(Fanout::default()),
            collectors: BTreeMap::new(),
            outputs: BTreeMap::new(),
            stopped_collectors: Vec::new(),
            ending_outputs: Vec::new(),
            health: None,
        }
    }

    /// For systemd's status line.
    pub(super) fn status(&self) -> String {
        format!(
            "collecting: {} collector instances, {} outputs",
            self.collectors.len(),
            self.outputs.len()
        )
    }

    /// Makes what runs what `plan` asks for (see the [module
    /// documentation](self)). `starting`: the first plan, logged instance
    /// by instance.
    pub(super) async fn apply(&mut self, plan: Plan, starting: bool) -> Changes {
        let mut changes = Changes::default();
        self.stopped_collectors.retain(|t| !t.is_finished());
        self.ending_outputs.retain(|(_, t)| !t.is_finished());
        // Outputs first: collectors started below send to the new set.
        self.apply_outputs(plan.outputs, plan.grace, &mut changes.outputs);
        self.apply_collectors(plan.collectors, starting, &mut changes.collectors);
        self.apply_health(plan.health_listen).await;
        changes
    }

    fn apply_outputs(&mut self, wanted: Vec<OutputInstance>, grace: Duration, tally: &mut Tally) {
        let mut old = std::mem::take(&mut self.outputs);
        let mut order = Vec::with_capacity(wanted.len());
        for instance in wanted {
            let name = instance.name.clone();
            let stats = self.stats.output(&name).unwrap_or_default();
            order.push((name.clone(), Arc::clone(&stats)));
            let started = match old.remove(&name) {
                Some(running) if running.settings == instance.settings => {
                    tally.unchanged += 1;
                    self.outputs.insert(name, running);
                    continue;
                }
                Some(running) => {
                    tally.changed.push(name.clone());
                    let RunningOutput { started, .. } = running;
                    // Its queue is dropped here; the fan-out's handle goes
                    // below, and then the old task sees its queue close.
                    if output::buffers(&instance.settings) {
                        started.closing.hand_over(grace);
                        output::start(&instance, stats, grace, Some(started.task))
                    } else {
                        started.closing.start(grace);
                        self.ending_outputs.push((name.clone(), started.task));
                        output::start(&instance, stats, grace, None)
                    }
                }
                None => {
                    tally.added.push(name.clone());
                    output::start(&instance, stats, grace, None)
                }
            };
            self.outputs.insert(
                name,
                RunningOutput {
                    settings: instance.settings,
                    started,
                },
            );
        }
        for (name, running) in old {
            tally.removed.push(name.clone());
            running.started.closing.start(grace);
            self.ending_outputs.push((name, running.started.task));
        }
        self.fanout.set_queues(
            self.outputs
                .values()
                .map(|o| Arc::clone(&o.started.queue))
                .collect(),
        );
        self.stats.set_outputs(order);
    }

    fn apply_collectors(&mut self, wanted: Vec<Wanted>, starting: bool, tally: &mut Tally) {
        let mut old = std::mem::take(&mut self.collectors);
        let mut order = Vec::with_capacity(wanted.len());
        for w in wanted {
            let name = w.name.clone();
            let stats = self.stats.collector(&name).unwrap_or_default();
            order.push((name.clone(), Arc::clone(&stats)));
            match old.remove(&name) {
                Some(running) if running.spec == w.spec => {
                    tally.unchanged += 1;
                    self.collectors.insert(name, running);
                    continue;
                }
                Some(running) => {
                    tally.changed.push(name.clone());
                    self.stop_collector(running);
                }
                None => tally.added.push(name.clone()),
            }
            if starting {
                tracing::info!(
                    "collector {name} every {:?} at {}",
                    w.spec.schedule.interval,
                    w.spec.prefix
                );
            }
            let running = self.start_collector(w, stats);
            self.collectors.insert(name, running);
        }
        for (name, running) in old {
            tally.removed.push(name);
            self.stop_collector(running);
        }
        self.stats.set_collectors(order);
    }

    fn start_collector(
        &self,
        wanted: Wanted,
        stats: Arc<crate::stats::CollectorStats>,
    ) -> RunningCollector {
        let build = wanted.build.unwrap_or_else(|| {
            let stats = Arc::clone(&self.stats);
            let build: BuildFn = Arc::new(move |_env: &Environment| {
                Ok(Box::new(SelfCollector::new(Arc::clone(&stats))) as _)
            });
            build
        });
        let (stop, stopped) = watch::channel(false);
        let instance = scheduler::Instance {
            name: wanted.name,
            schedule: wanted.spec.schedule,
            build,
            env: wanted.spec.env.clone(),
            publisher: wanted.publisher,
            fanout: Arc::clone(&self.fanout),
            stats,
        };
        RunningCollector {
            spec: wanted.spec,
            stop,
            task: tokio::spawn(scheduler::run(instance, stopped)),
        }
    }

    /// Stops a collector task; a run in progress finishes and is published.
    fn stop_collector(&mut self, running: RunningCollector) {
        let _ = running.stop.send(true);
        self.stopped_collectors.push(running.task);
    }

    async fn apply_health(&mut self, listen: String) {
        // Unchanged (none wanted, none running, included). An address that
        // could not be bound before is tried again.
        if self.health.as_ref().map_or("", |h| h.listen.as_str()) == listen {
            return;
        }
        if let Some(old) = self.health.take() {
            let _ = old.stop.send(true);
            tracing::info!("health endpoint on {} closed", old.listen);
        }
        if listen.is_empty() {
            return;
        }
        match tokio::net::TcpListener::bind(listen.as_str()).await {
            Ok(listener) => {
                tracing::info!("health endpoint on http://{listen}/health");
                let (stop, stopped) = watch::channel(false);
                tokio::spawn(crate::health::serve(
                    listener,
                    Arc::clone(&self.stats),
                    stopped,
                ));
                self.health = Some(HealthEndpoint { listen, stop });
            }
            Err(e) => tracing::error!(
                "cannot listen on {listen} for the health endpoint: {e}; running without it"
            ),
        }
    }

    /// Stops collecting, lets outputs deliver what they hold for up to
    /// `grace` (what is left goes to their spools or is counted as
    /// dropped), and returns once they are done.
    pub(super) async fn stop(mut self, grace: Duration) {
        // The outputs' deadline runs from now: a write blocked on a
        // receiver that stopped reading is given up on at the deadline.
        let deadline = Instant::now() + grace;
        for o in self.outputs.values() {
            o.started.closing.start(grace);
        }
        let mut collectors = std::mem::take(&mut self.stopped_collectors);
        for (_, c) in std::mem::take(&mut self.collectors) {
            let _ = c.stop.send(true);
            collectors.push(c.task);
        }
        // A run in progress may finish (its samples are delivered); the
        // stragglers are abandoned together, not one after the other.
        let stragglers = Instant::now() + STRAGGLERS;
        for task in collectors {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(stragglers, task).await.is_err() {
                abort.abort();
            }
        }
        // No collector sends any more: closing the queues lets the outputs
        // drain and end.
        self.fanout.set_queues(Vec::new());
        let mut outputs = std::mem::take(&mut self.ending_outputs);
        for (name, o) in std::mem::take(&mut self.outputs) {
            outputs.push((name, o.started.task));
        }
        // Outputs stop at their deadline themselves; the margin covers
        // writing what is left to the spool.
        let grace_end = deadline + STRAGGLERS;
        for (name, task) in outputs {
            let abort = task.abort_handle();
            match tokio::time::timeout_at(grace_end, task).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(output = %name, "output task ended abnormally: {e}"),
                Err(_) => {
                    abort.abort();
                    tracing::error!(output = %name, "output did not finish by its deadline; abandoned");
                }
            }
        }
        if let Some(health) = self.health.take() {
            let _ = health.stop.send(true);
        }
    }
}
