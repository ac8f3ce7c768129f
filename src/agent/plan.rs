//! What a configuration asks the agent to run, in a form a reload can
//! compare with what runs.

use std::time::Duration;

use carat_collector::Environment;

use super::{enabled, Agent};
use crate::config::OutputInstance;
use crate::pipeline::{NameFilter, Publisher};
use crate::registry::BuildFn;
use crate::scheduler::Schedule;
use crate::self_metrics;

/// Everything that makes a collector instance what it is. Two instances
/// with equal specs collect the same metrics under the same paths on the
/// same schedule, so a reload leaves a running instance alone when its
/// spec did not change (its rate state, connections and timing with it).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Spec {
    /// The collector kind.
    pub kind: &'static str,
    /// Its options as configured ([`crate::config::CollectorInstance::settings`]).
    pub settings: toml::Table,
    /// When it runs, with the agent's defaults applied.
    pub schedule: Schedule,
    /// The path prefix of its metrics: prefix, host name, suffix and path.
    pub prefix: String,
    /// What it is built with.
    pub env: Environment,
}

/// A collector instance the configuration asks for.
pub(super) struct Wanted {
    /// Its name.
    pub name: String,
    /// What it is.
    pub spec: Spec,
    /// How it is built; `None` for the agent's own metrics, which the
    /// running agent builds over its statistics.
    pub build: Option<BuildFn>,
    /// Names, filters and rates (no rate state yet): used when the
    /// instance is started, dropped when the running one is kept.
    pub publisher: Publisher,
}

/// What a configuration asks the agent to run.
pub(super) struct Plan {
    pub(super) collectors: Vec<Wanted>,
    pub(super) outputs: Vec<OutputInstance>,
    /// How long outputs may deliver once told to end.
    pub(super) grace: Duration,
    /// Where the health endpoint listens (empty: nowhere).
    pub(super) health_listen: String,
}

impl Plan {
    /// The collector instances' names, the agent's own included.
    pub(super) fn collector_names(&self) -> impl Iterator<Item = &str> {
        self.collectors.iter().map(|w| w.name.as_str())
    }
}

impl Agent {
    /// The plan of this agent's configuration.
    pub(super) fn plan(&self) -> Plan {
        let mut collectors: Vec<Wanted> = enabled(&self.config)
            .map(|instance| {
                let publisher = self.publisher(instance);
                Wanted {
                    name: instance.name.clone(),
                    spec: Spec {
                        kind: instance.kind,
                        settings: instance.settings.clone(),
                        schedule: self.schedule(instance),
                        prefix: publisher.prefix().to_owned(),
                        env: self.environment(instance),
                    },
                    build: Some(instance.build.clone()),
                    publisher,
                }
            })
            .collect();
        let agent = &self.config.agent;
        if agent.self_metrics {
            collectors.push(Wanted {
                name: self_metrics::INSTANCE.to_owned(),
                spec: Spec {
                    kind: self_metrics::INSTANCE,
                    settings: toml::Table::new(),
                    schedule: Schedule {
                        interval: agent.interval,
                        splay: Duration::ZERO,
                        timeout: agent.interval,
                    },
                    prefix: self.prefix(self_metrics::PATH),
                    env: agent.environment(self_metrics::INSTANCE, agent.interval),
                },
                build: None,
                publisher: Publisher::new(self.prefix(self_metrics::PATH), NameFilter::default()),
            });
        }
        Plan {
            collectors,
            outputs: self.config.outputs.clone(),
            grace: agent.shutdown_timeout,
            health_listen: agent.health_listen.clone(),
        }
    }
}
