//! What the running agent does on each signal.
//!
//! Only an orderly stop may end the agent: it stops collecting, delivers
//! what outputs hold (bounded by `shutdown_timeout`) and exits 0. A signal
//! whose default action would end the process on the spot, losing every
//! buffered metric, is caught:
//!
//! - SIGTERM, SIGINT, SIGQUIT and SIGXCPU stop the agent in order. SIGQUIT
//!   is what Ctrl-\ sends and what some supervisors use for "stop"; a
//!   core dump is not worth the buffers it would lose (SIGABRT still dumps
//!   core). SIGXCPU comes when the soft CPU-time limit is passed and is
//!   repeated every second until the hard limit's SIGKILL: stopping at once
//!   is the only way to deliver what is buffered before that.
//! - SIGHUP reloads the configuration ([`crate::agent`]): a configuration
//!   that is refused leaves what runs as it is.
//! - The other signals that would end the process (SIGUSR1, SIGUSR2,
//!   SIGALRM, SIGVTALRM, SIGPROF, SIGIO/SIGPOLL, SIGXFSZ, and on Linux
//!   SIGPWR, SIGSTKFLT and the real-time signals) are ignored, with one log
//!   line per signal received. (A file write past the file size limit then
//!   fails with an error instead of killing the agent.)
//!
//! Left with their default action: the signals the kernel sends for a fault
//! (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS, SIGTRAP, SIGABRT), which cannot
//! be recovered from, job control (SIGTSTP, SIGTTIN, SIGTTOU, SIGSTOP,
//! SIGCONT) and the signals ignored by default. SIGPIPE is ignored by the
//! Rust runtime already: a write to a closed socket is an error.

use std::future::poll_fn;
use std::task::Poll;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

use crate::agent::Command;

/// What a signal asks of the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalAction {
    /// Stop collecting, deliver what is buffered, exit 0.
    Stop,
    /// Reload the configuration.
    Reload,
    /// Nothing: the signal is logged and otherwise ignored.
    Ignore,
}

/// A signal the agent handles: its name for the log and its action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handled {
    /// `SIGHUP`, `SIGRTMIN+3`…
    pub name: String,
    /// The signal's number.
    pub number: i32,
    /// What it asks of the agent.
    pub action: SignalAction,
}

/// Every signal the agent handles, with its action (see the [module
/// documentation](self)).
pub fn handled() -> Vec<Handled> {
    use SignalAction::{Ignore, Reload, Stop};
    let named = [
        ("SIGTERM", libc::SIGTERM, Stop),
        ("SIGINT", libc::SIGINT, Stop),
        ("SIGQUIT", libc::SIGQUIT, Stop),
        ("SIGXCPU", libc::SIGXCPU, Stop),
        ("SIGHUP", libc::SIGHUP, Reload),
        ("SIGUSR1", libc::SIGUSR1, Ignore),
        ("SIGUSR2", libc::SIGUSR2, Ignore),
        ("SIGALRM", libc::SIGALRM, Ignore),
        ("SIGVTALRM", libc::SIGVTALRM, Ignore),
        ("SIGPROF", libc::SIGPROF, Ignore),
        ("SIGIO", libc::SIGIO, Ignore),
        ("SIGXFSZ", libc::SIGXFSZ, Ignore),
        #[cfg(target_os = "linux")]
        ("SIGPWR", libc::SIGPWR, Ignore),
        #[cfg(target_os = "linux")]
        ("SIGSTKFLT", libc::SIGSTKFLT, Ignore),
    ];
    let mut all: Vec<Handled> = named
        .into_iter()
        .map(|(name, number, action)| Handled {
            name: name.to_owned(),
            number,
            action,
        })
        .collect();
    #[cfg(target_os = "linux")]
    all.extend(real_time_signals());
    all
}

/// SIGRTMIN to SIGRTMAX, as the C library numbers them (it keeps the first
/// few of the kernel's for itself).
#[cfg(target_os = "linux")]
fn real_time_signals() -> impl Iterator<Item = Handled> {
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    (min..=max).map(move |number| Handled {
        name: match number - min {
            0 => "SIGRTMIN".to_owned(),
            _ if number == max => "SIGRTMAX".to_owned(),
            n => format!("SIGRTMIN+{n}"),
        },
        number,
        action: SignalAction::Ignore,
    })
}

/// A signal that arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// Its name.
    pub name: String,
    /// What it asks of the agent.
    pub action: SignalAction,
}

/// The agent's signal handlers, installed.
pub struct Signals {
    listeners: Vec<(Handled, Signal)>,
}

impl Signals {
    /// Installs a handler for every signal of [`handled`]. Call it first
    /// thing in the runtime: until then a signal has its default action,
    /// and SIGTERM, SIGHUP and most others end the process on the spot.
    pub fn install() -> Signals {
        let mut listeners = Vec::new();
        for h in handled() {
            match signal(SignalKind::from_raw(h.number)) {
                Ok(listener) => listeners.push((h, listener)),
                Err(e) => tracing::error!(
                    "cannot handle {}: {e}; it keeps its default action and ends carat at once",
                    h.name
                ),
            }
        }
        Signals { listeners }
    }

    /// Waits for the next signal.
    pub async fn next(&mut self) -> Received {
        poll_fn(|cx| {
            for (h, listener) in &mut self.listeners {
                match listener.poll_recv(cx) {
                    Poll::Ready(Some(())) => {
                        return Poll::Ready(Received {
                            name: h.name.clone(),
                            action: h.action,
                        })
                    }
                    // The runtime's signal driver is gone: the process is
                    // ending anyway, so stop in order.
                    Poll::Ready(None) => {
                        return Poll::Ready(Received {
                            name: h.name.clone(),
                            action: SignalAction::Stop,
                        })
                    }
                    Poll::Pending => {}
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Turns signals into the agent's commands until a stop is sent (or the
    /// agent is gone); the ignored ones are logged.
    pub async fn forward(mut self, commands: mpsc::Sender<Command>) {
        loop {
            let received = self.next().await;
            let command = match received.action {
                SignalAction::Stop => {
                    tracing::info!("{} received", received.name);
                    Command::Stop
                }
                SignalAction::Reload => {
                    tracing::info!("{} received: reloading the configuration", received.name);
                    Command::Reload
                }
                SignalAction::Ignore => {
                    tracing::warn!(
                        "{} received and ignored (carat stops on SIGTERM, SIGINT, SIGQUIT or SIGXCPU, and reloads on SIGHUP)",
                        received.name
                    );
                    continue;
                }
            };
            if commands.send(command).await.is_err() || command == Command::Stop {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signal_that_would_end_the_process_is_handled() {
        let all = handled();
        let action = |name: &str| {
            all.iter()
                .find(|h| h.name == name)
                .unwrap_or_else(|| panic!("{name} is not handled"))
                .action
        };
        for stop in ["SIGTERM", "SIGINT", "SIGQUIT", "SIGXCPU"] {
            assert_eq!(action(stop), SignalAction::Stop, "{stop}");
        }
        assert_eq!(action("SIGHUP"), SignalAction::Reload);
        for ignored in [
            "SIGUSR1",
            "SIGUSR2",
            "SIGALRM",
            "SIGVTALRM",
            "SIGPROF",
            "SIGIO",
            "SIGXFSZ",
        ] {
            assert_eq!(action(ignored), SignalAction::Ignore, "{ignored}");
        }
        #[cfg(target_os = "linux")]
        {
            assert_eq!(action("SIGPWR"), SignalAction::Ignore);
            assert_eq!(action("SIGRTMIN"), SignalAction::Ignore);
            assert_eq!(action("SIGRTMIN+1"), SignalAction::Ignore);
            assert_eq!(action("SIGRTMAX"), SignalAction::Ignore);
            let rt = all.iter().filter(|h| h.name.starts_with("SIGRT")).count();
            assert_eq!(rt, (libc::SIGRTMAX() - libc::SIGRTMIN() + 1) as usize);
        }
        // Numbers are distinct (SIGPOLL is SIGIO: listed once).
        let mut numbers: Vec<_> = all.iter().map(|h| h.number).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), all.len());
        // The fault signals keep their default action.
        for fault in [libc::SIGSEGV, libc::SIGBUS, libc::SIGABRT, libc::SIGILL] {
            assert!(!numbers.contains(&fault), "{fault}");
        }
    }
}
