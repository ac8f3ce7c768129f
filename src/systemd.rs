//! The agent's side of systemd's service protocol (`sd_notify(3)`), for a
//! unit of `Type=notify` with `WatchdogSec=`: READY once collectors and
//! outputs are started, RELOADING then READY around a reload, STOPPING when
//! the agent begins to stop, and
//! WATCHDOG keep-alives only while the agent's async runtime makes
//! progress, so that systemd restarts an agent that is wedged rather than
//! one that merely looks alive.
//!
//! Outside systemd (no `NOTIFY_SOCKET` in the environment) every call does
//! nothing.
//!
//! The keep-alives come from a thread of their own, not from the runtime:
//! a task on the runtime bumps a counter ([`Heartbeat`]) a few times per
//! watchdog period, and the thread tells systemd "alive" only when the
//! counter moved since its last look. When every worker thread of the
//! runtime is stuck (a collector blocking in a system call that never
//! returns, on all workers), the counter stops, the keep-alives stop, and
//! systemd restarts the service after `WatchdogSec`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use sd_notify::NotifyState;

/// Reports `states` to systemd in one message; the first error of the
/// process is logged, the others would only repeat it.
fn notify(states: &[NotifyState<'_>], what: &str) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if let Err(e) = sd_notify::notify(states) {
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!("cannot tell systemd {what} through $NOTIFY_SOCKET: {e}");
        }
    }
}

/// Tells systemd the agent is up: its collectors and outputs are started.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)], "READY");
}

/// Tells systemd a reload has begun; [`ready`] says it is over, applied or
/// refused. The monotonic time lets systemd tell this reload from an
/// earlier one (required under `Type=notify-reload`).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now], "RELOADING"),
        Err(_) => notify(&[NotifyState::Reloading], "RELOADING"),
    }
}

/// Tells systemd the agent is stopping (it delivers what it holds first).
pub fn stopping() {
    notify(&[NotifyState::Stopping], "STOPPING");
}

/// Evidence that the async runtime runs tasks: a counter a task on it
/// bumps. See the [module documentation](self).
#[derive(Clone, Default)]
pub struct Heartbeat(Arc<AtomicU64>);

impl Heartbeat {
    /// Counts one beat.
    pub fn beat(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The beats so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The keep-alive thread; stopped and joined when dropped.
pub struct Watchdog {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// When systemd asked for keep-alives (`WATCHDOG_USEC`, for this
    /// process), starts the thread that sends them while `heartbeat` moves,
    /// and returns it with how often the heartbeat must beat: four times
    /// per keep-alive, which is sent twice per watchdog period (as
    /// `sd_watchdog_enabled(3)` advises). `None` otherwise.
    pub fn start(heartbeat: Heartbeat) -> Option<(Watchdog, Duration)> {
        let period = sd_notify::watchdog_enabled()?;
        let every = (period / 2).max(Duration::from_millis(10));
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("carat-watchdog".into())
            .spawn(move || keep_alive(&heartbeat, every, &stopped))
            .map_err(|e| {
                tracing::error!("cannot start the watchdog thread: {e}; systemd's watchdog will restart the agent")
            })
            .ok()?;
        tracing::info!(
            "systemd watchdog every {period:?}: alive is reported every {every:?} while the runtime makes progress"
        );
        Some((
            Watchdog {
                stop: Some(stop),
                thread: Some(thread),
            },
            every / 4,
        ))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every `every`, reports "alive" if `heartbeat` moved since the last look;
/// returns when `stopped` is closed.
fn keep_alive(heartbeat: &Heartbeat, every: Duration, stopped: &mpsc::Receiver<()>) {
    let mut last = heartbeat.count();
    let mut stalled = false;
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
        let now = heartbeat.count();
        if now != last {
            notify(&[NotifyState::Watchdog], "WATCHDOG");
            if stalled {
                tracing::warn!(
                    "the runtime makes progress again: reporting alive to systemd again"
                );
                stalled = false;
            }
            last = now;
        } else if !stalled {
            stalled = true;
            tracing::error!(
                "the runtime made no progress for {every:?}: no longer reporting alive to systemd, whose watchdog will restart the agent"
            );
        }
    }
}
