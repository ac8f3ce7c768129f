//! Fixtures shared by the integration tests in `tests/`.
//!
//! Each integration test is its own crate and includes this directory with
//! `mod support;`. A test uses only some of the helpers, so unused ones are
//! not an error.
#![allow(dead_code)]

pub mod agent;
pub mod bin;
pub mod carbon;
pub mod collectors;
pub mod haproxy;
pub mod mariadb;
pub mod mongodb;
pub mod postgres;
pub mod rabbitmq;
pub mod receiver;
pub mod server;
pub mod sink;
pub mod statsd;
pub mod supervised;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Loads `toml` (as if from `file`) with the test collectors registered.
pub fn config(toml: &str) -> carat::Config {
    carat::config::load_str(toml, Path::new("test.toml"), &collectors::registry())
        .unwrap_or_else(|e| panic!("test configuration is invalid: {e}"))
}

/// A running agent and the means to stop it.
pub struct Running {
    /// The agent's statistics.
    pub stats: Arc<carat::stats::AgentStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Starts `config` on the current tokio runtime.
    pub fn start(config: carat::Config) -> Running {
        let agent = carat::Agent::new(config);
        let stats = agent.stats();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
            let _ = rx.await;
        });
        let task = tokio::spawn(agent.run_until(shutdown));
        Running {
            stats,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the agent as SIGTERM would and waits for it, at most `limit`.
    pub async fn stop(mut self, limit: Duration) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(limit, task)
                .await
                .expect("the agent stops within its limit")
                .expect("the agent task ends cleanly");
        }
    }
}

/// An agent running on a configuration file that the test rewrites and
/// reloads, as SIGHUP does (with the test collectors registered).
pub struct Reloadable {
    /// The agent's statistics.
    pub stats: Arc<carat::stats::AgentStats>,
    dir: tempfile::TempDir,
    commands: tokio::sync::mpsc::Sender<carat::agent::Command>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Reloadable {
    /// Writes `toml` and starts an agent on it on the current tokio
    /// runtime.
    pub fn start(toml: &str) -> Reloadable {
        let dir = server::temp_dir("reload");
        let path = dir.path().join("carat.toml");
        std::fs::write(&path, toml).expect("write the configuration");
        let registry = Arc::new(collectors::registry());
        let config = carat::config::load_file(&path, &registry)
            .unwrap_or_else(|e| panic!("test configuration is invalid: {e}"));
        let load: carat::agent::LoadConfig =
            Arc::new(move || carat::config::load_file(&path, &registry));
        let agent = carat::Agent::new(config);
        let stats = agent.stats();
        let (commands, received) = tokio::sync::mpsc::channel(4);
        let task = tokio::spawn(agent.run(received, Some(load)));
        Reloadable {
            stats,
            dir,
            commands,
            task: Some(task),
        }
    }

    /// Replaces the configuration file with `toml` and asks for a reload
    /// (which the agent applies in its own time).
    pub async fn reload(&self, toml: &str) {
        std::fs::write(self.dir.path().join("carat.toml"), toml).expect("write the configuration");
        self.commands
            .send(carat::agent::Command::Reload)
            .await
            .expect("the agent runs");
    }

    /// Stops the agent as SIGTERM would and waits for it, at most `limit`.
    pub async fn stop(mut self, limit: Duration) {
        let _ = self.commands.send(carat::agent::Command::Stop).await;
        if let Some(task) = self.task.take() {
            tokio::time::timeout(limit, task)
                .await
                .expect("the agent stops within its limit")
                .expect("the agent task ends cleanly");
        }
    }
}

/// Runs a fixture's blocking call (it waits for processes, ports and files)
/// with `block_in_place`, so it does not stall the agent's tasks on this
/// worker thread. Needs the multi-threaded runtime.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// The TOML of an agent named `hostname` that runs the test collector
/// `sequence` (controlled through `key`) every second, without splay and
/// without self-metrics, so what reaches `outputs` (TOML tables) is exactly
/// the points the test can count.
pub fn sequence_toml(hostname: &str, key: &str, outputs: &str) -> String {
    format!(
        r#"
[agent]
hostname = "{hostname}"
interval = 1
splay = 0
self_metrics = false

[collector.sequence]
key = "{key}"

{outputs}"#
    )
}

/// Polls `check` every 50 ms until it returns true or `limit` passes.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The message of the error `result` must be, after checking its kind
/// ([`carat_collector::CollectorError::label`]); panics on a success.
pub fn expect_error(
    result: Result<carat_collector::testing::Published, carat_collector::CollectorError>,
    label: &str,
) -> String {
    match result {
        Ok(p) => panic!("expected a {label} error, got {} metrics", p.metrics.len()),
        Err(e) => {
            let message = e.to_string();
            assert_eq!(e.label(), label, "{message}");
            message
        }
    }
}
