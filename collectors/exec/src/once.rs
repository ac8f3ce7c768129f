//! `mode = "once"`: the command runs on every interval, and what it wrote
//! on standard output is that run's metrics.
//!
//! A run ends when the command has exited and both its pipes are closed.
//! A process the command left running in its group (`sleep 600 &`) would
//! hold the pipes open: once the command itself has exited, the rest of
//! its group gets [`LINGER`] to finish, then is killed. At the timeout the
//! whole group is killed and the run fails; so does a run whose output
//! passes `max_output`.

use std::pin::pin;
use std::process::ExitStatus;
use std::time::Duration;

use carat_collector::input::show_bytes;
use carat_collector::CollectorError;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::{sleep_until, Instant};

use crate::lines::StderrLog;
use crate::process::Launcher;

/// How long processes the command left in its group may keep its pipes
/// open after it exited.
pub const LINGER: Duration = Duration::from_millis(200);

/// The most of standard error kept per run, for the log; the rest is read
/// and thrown away.
const MAX_STDERR: usize = 64 * 1024;

/// Runs the command once: its standard output, or why the run failed.
/// Standard error goes to `stderr`, line by line.
pub async fn run(
    launcher: &Launcher,
    timeout: Duration,
    max_output: u64,
    stderr: &mut StderrLog,
) -> Result<Vec<u8>, CollectorError> {
    let deadline = Instant::now() + timeout;
    let (mut child, group) = launcher.spawn()?;
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(CollectorError::config(
            "the command's pipes were not set up",
        ));
    };
    let mut output = pin!(read_capped(out, max_output, false));
    let mut errors = pin!(read_capped(err, MAX_STDERR as u64, true));
    let mut exited = pin!(child.wait());
    let (mut stdout, mut stderr_bytes, mut status): (
        Option<Capped>,
        Option<Capped>,
        Option<ExitStatus>,
    ) = (None, None, None);
    // After the command exited: when what it left in its group is killed.
    let mut linger_until: Option<Instant> = None;
    let failure = loop {
        if stdout.is_some() && stderr_bytes.is_some() && status.is_some() {
            break None;
        }
        let wake = linger_until.map_or(deadline, |l| l.min(deadline));
        tokio::select! {
            read = &mut output, if stdout.is_none() => match read {
                Ok(capped) if capped.over => {
                    group.kill();
                    break Some(CollectorError::Limit(format!(
                        "{} wrote more than max_output ({}) on standard output; it was killed and nothing of it was used",
                        launcher.display(),
                        show_bytes(usize::try_from(max_output).unwrap_or(usize::MAX))
                    )));
                }
                Ok(capped) => stdout = Some(capped),
                Err(e) => break Some(CollectorError::parse(launcher.display(), format!("reading its standard output: {e}"))),
            },
            read = &mut errors, if stderr_bytes.is_none() => {
                stderr_bytes = Some(read.unwrap_or_default());
            }
            done = &mut exited, if status.is_none() => match done {
                Ok(s) => {
                    status = Some(s);
                    linger_until = Some(Instant::now() + LINGER);
                }
                Err(e) => break Some(CollectorError::config(format!("waiting for {}: {e}", launcher.display()))),
            },
            () = sleep_until(wake) => {
                if Instant::now() >= deadline {
                    group.kill();
                    break Some(CollectorError::timeout(
                        launcher.display(),
                        format!(
                            "did not finish within its timeout of {timeout:?}; it was killed with its process group"
                        ),
                    ));
                }
                // The command exited; what it left behind is holding its
                // pipes: end it, and the pipes close.
                group.kill();
                linger_until = None;
            }
        }
    };
    drop(group);
    if let Some(bytes) = &stderr_bytes {
        for line in String::from_utf8_lossy(&bytes.bytes).lines() {
            stderr.line(line);
        }
    }
    if let Some(failure) = failure {
        return Err(failure);
    }
    let (Some(stdout), Some(status)) = (stdout, status) else {
        return Err(CollectorError::config("the run ended without its output"));
    };
    if !status.success() {
        return Err(exit_error(&launcher.display(), status, stderr.take_last()));
    }
    Ok(stdout.bytes)
}

/// What a command's exit status says, with its last line of standard error.
pub fn exit_error(
    command: &str,
    status: ExitStatus,
    last_stderr: Option<String>,
) -> CollectorError {
    use std::os::unix::process::ExitStatusExt;
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was ended by signal {signal}"),
        (None, None) => format!("ended: {status}"),
    };
    let last = last_stderr
        .map(|l| format!("; its last line on standard error: {l}"))
        .unwrap_or_default();
    let code = status.code().and_then(|c| u16::try_from(c).ok());
    CollectorError::status(command, code, format!("{how}{last}"))
}

/// What was read from a pipe, and whether it went past the bound.
#[derive(Default)]
struct Capped {
    bytes: Vec<u8>,
    over: bool,
}

/// Reads `pipe` up to `limit` bytes. Past the bound, a pipe is reported
/// `over` at once (standard output: the run fails), or, when `drain`, read
/// to its end and the rest thrown away (standard error: the command must
/// not block on a full pipe). The buffer grows by doubling but never past
/// `limit`, so a run that writes too much costs `limit` bytes at most.
async fn read_capped(
    mut pipe: impl AsyncRead + Unpin,
    limit: u64,
    drain: bool,
) -> std::io::Result<Capped> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = pipe.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Capped { bytes, over: false });
        }
        if bytes.len() + n > limit {
            if drain {
                tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await?;
            }
            return Ok(Capped { bytes, over: true });
        }
        if bytes.capacity() < bytes.len() + n {
            let target = (bytes.capacity() * 2).max(bytes.len() + n).min(limit);
            bytes.reserve_exact(target - bytes.len());
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
}
