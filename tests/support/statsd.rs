//! A real StatsD daemon (the `statsd` npm package, installed under
//! `tests/node` by `.ci/install-test-deps`) started by a test on 127.0.0.1 and
//! free ports, flushing to a carbon the test also runs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::server;

/// How often the daemon flushes to carbon. Two seconds, so that two flushes
/// never share a whisper second.
pub const FLUSH: Duration = Duration::from_secs(2);

/// A running StatsD.
pub struct Statsd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

fn statsd_js() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/node_modules/statsd/stats.js")
}

impl Statsd {
    /// Starts StatsD with the console and graphite backends, flushing to
    /// carbon's plaintext port `carbon_port`.
    pub fn start(carbon_port: u16) -> Statsd {
        let script = statsd_js();
        server::require_binary(
            &script,
            "install StatsD with `npm ci --prefix tests/node` (or run .ci/install-test-deps)",
        );
        let node = Command::new("node").arg("--version").output();
        assert!(
            node.is_ok_and(|o| o.status.success()),
            "node not found: install Node.js (apt-get install nodejs) to run StatsD"
        );
        // The management port over TCP, then the UDP port metrics go to.
        let [mgmt, port] = server::free_ports(1, 1)[..] else {
            unreachable!("free_ports returns as many ports as asked for")
        };
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.js");
        fs::write(
            &config,
            format!(
                r#"{{
  address: "127.0.0.1", port: {port},
  mgmt_address: "127.0.0.1", mgmt_port: {mgmt},
  backends: ["./backends/console", "./backends/graphite"],
  graphiteHost: "127.0.0.1", graphitePort: {carbon_port},
  flushInterval: {flush},
  console: {{ prettyprint: false }}
}}"#,
                flush = FLUSH.as_millis()
            ),
        )
        .unwrap();
        let (log, log_err, _) = server::open_log(&dir.path().join("statsd.log"));
        let child = Command::new("node")
            .arg(&script)
            .arg(&config)
            .current_dir(script.parent().unwrap())
            .stdout(log)
            .stderr(log_err)
            .stdin(Stdio::null())
            .spawn()
            .expect("start node");
        let mut statsd = Statsd { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !statsd.log().contains("server is up") {
            if let Ok(Some(status)) = statsd.child.try_wait() {
                panic!("StatsD exited ({status}) at start:\n{}", statsd.log());
            }
            assert!(
                Instant::now() < deadline,
                "StatsD did not start in 15 s:\n{}",
                statsd.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        statsd
    }

    /// The UDP port StatsD listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything the daemon printed (its console backend dumps each flush).
    pub fn log(&self) -> String {
        server::read_log(&self.dir.path().join("statsd.log"))
    }
}

impl Drop for Statsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
