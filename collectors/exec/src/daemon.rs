//! `mode = "daemon"`: the command is started once and kept running; it
//! writes lines whenever it likes, and each run of the collector publishes
//! what arrived since the last one.
//!
//! A task of its own supervises the command: it reads both pipes as the
//! lines come (so the command never blocks on a full pipe), keeps at most
//! `max_pending` lines for the next run (dropping the oldest, counted), and
//! starts the command again when it exits, after a delay that doubles from
//! `restart_min` to `restart_max` (and starts over once the command ran for
//! `restart_max`): never in a tight loop. Dropping the collector (a reload,
//! the agent stopping) sends the group SIGTERM, then SIGKILL two seconds
//! later if it is still there.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::process::Child;
use tokio::sync::oneshot;
use tokio::time::{sleep, timeout, Instant};

use crate::lines::{Line, LineReader, StderrLog};
use crate::once::{exit_error, LINGER};
use crate::process::{Group, Launcher};

/// How long a stopped command gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// How the supervisor bounds and restarts the command.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Lines kept between two runs of the collector.
    pub max_pending: usize,
    /// First delay before a restart.
    pub restart_min: Duration,
    /// Longest delay, and how long a run must last for the delay to start
    /// over.
    pub restart_max: Duration,
}

/// What happened since the last run of the collector.
#[derive(Debug, Default)]
pub struct Since {
    /// The lines that arrived, oldest first.
    pub lines: VecDeque<String>,
    /// Lines dropped because `max_pending` were waiting.
    pub dropped: u64,
    /// Lines longer than [`crate::lines::MAX_LINE`], skipped.
    pub too_long: u64,
    /// Times the command exited, or could not be started.
    pub exits: u64,
    /// Why, the last time.
    pub last_exit: Option<carat_collector::CollectorError>,
}

/// The running supervisor of a daemon command.
pub struct Daemon {
    since: Arc<Mutex<Since>>,
    /// Dropped with the collector: the supervisor then ends the command
    /// (SIGTERM, then SIGKILL) and itself.
    _stop: oneshot::Sender<()>,
}

impl Daemon {
    /// Starts the command under a supervisor task on the current runtime.
    pub fn start(launcher: Launcher, limits: Limits, instance: &str) -> Daemon {
        let since = Arc::new(Mutex::new(Since::default()));
        let (stop, stopped) = oneshot::channel();
        // Not awaited: the supervisor ends when `_stop` is dropped, or with
        // the runtime (its command's group is killed then, on drop).
        tokio::spawn(supervise(
            launcher,
            limits,
            Arc::clone(&since),
            stopped,
            StderrLog::new(instance),
        ));
        Daemon { since, _stop: stop }
    }

    /// What happened since the last call.
    pub fn take(&self) -> Since {
        std::mem::take(&mut *lock(&self.since))
    }
}

/// The shared record is only counters and a queue: a panic elsewhere cannot
/// leave it half changed.
fn lock(since: &Mutex<Since>) -> std::sync::MutexGuard<'_, Since> {
    since.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How one start of the command ended.
enum Ended {
    /// It exited or could not start: why.
    Failed(carat_collector::CollectorError),
    /// The collector is gone.
    Stopped,
}

async fn supervise(
    launcher: Launcher,
    limits: Limits,
    since: Arc<Mutex<Since>>,
    mut stop: oneshot::Receiver<()>,
    mut stderr: StderrLog,
) {
    let mut delay = limits.restart_min;
    loop {
        let started = Instant::now();
        let ended = match launcher.spawn() {
            Ok((child, group)) => {
                run(
                    child,
                    group,
                    &launcher,
                    limits,
                    &since,
                    &mut stop,
                    &mut stderr,
                )
                .await
            }
            Err(e) => Ended::Failed(e),
        };
        let Ended::Failed(why) = ended else { return };
        if started.elapsed() >= limits.restart_max {
            delay = limits.restart_min;
        }
        tracing::debug!(
            "{}: {why}; starting it again in {delay:?}",
            launcher.display()
        );
        {
            let mut since = lock(&since);
            since.exits += 1;
            since.last_exit = Some(why);
        }
        tokio::select! {
            () = sleep(delay) => {}
            _ = &mut stop => return,
        }
        delay = (delay * 2).min(limits.restart_max);
    }
}

/// Reads the command's lines until it exits or the collector is dropped.
async fn run(
    mut child: Child,
    group: Group,
    launcher: &Launcher,
    limits: Limits,
    since: &Mutex<Since>,
    stop: &mut oneshot::Receiver<()>,
    stderr: &mut StderrLog,
) -> Ended {
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return Ended::Failed(carat_collector::CollectorError::config(
            "the command's pipes were not set up",
        ));
    };
    let mut out = LineReader::new(out);
    let mut err = LineReader::new(err);
    let (mut out_open, mut err_open) = (true, true);
    let status = loop {
        tokio::select! {
            line = out.next(), if out_open => match line {
                Ok(Some(line)) => keep(line, since, limits.max_pending),
                Ok(None) | Err(_) => out_open = false,
            },
            line = err.next(), if err_open => match line {
                Ok(Some(Line::Text(text) | Line::TooLong(text, _))) => stderr.line(&text),
                Ok(None) | Err(_) => err_open = false,
            },
            status = child.wait() => break status,
            _ = &mut *stop => {
                group.signal(libc::SIGTERM);
                let _ = timeout(STOP_GRACE, child.wait()).await;
                group.kill();
                stderr.flush();
                return Ended::Stopped;
            }
        }
    };
    // What it wrote just before it exited is still in the pipes: read it,
    // for a moment, then end what it left in its group.
    let linger = Instant::now() + LINGER;
    while out_open {
        match tokio::time::timeout_at(linger, out.next()).await {
            Ok(Ok(Some(line))) => keep(line, since, limits.max_pending),
            _ => out_open = false,
        }
    }
    while err_open {
        match tokio::time::timeout_at(linger, err.next()).await {
            Ok(Ok(Some(Line::Text(text) | Line::TooLong(text, _)))) => stderr.line(&text),
            _ => err_open = false,
        }
    }
    drop(group);
    stderr.flush();
    Ended::Failed(match status {
        Ok(status) => exit_error(&launcher.display(), status, stderr.take_last()),
        Err(e) => carat_collector::CollectorError::config(format!(
            "waiting for {}: {e}",
            launcher.display()
        )),
    })
}

/// Keeps a line of standard output for the next run.
fn keep(line: Line, since: &Mutex<Since>, max_pending: usize) {
    let mut since = lock(since);
    match line {
        Line::Text(text) => {
            if since.lines.len() >= max_pending {
                since.lines.pop_front();
                since.dropped += 1;
            }
            since.lines.push_back(text);
        }
        Line::TooLong(..) => since.too_long += 1,
    }
}
