//! The portable source of the `process` collector: the `sysinfo` crate.
//!
//! Used where there is no Linux `/proc` to read (`source = "auto"` on other
//! systems) and on request (`source = "sysinfo"`). It differs from the
//! `/proc` source in what the crate can tell:
//!
//! - it reads the system the agent runs on: the proc root is ignored;
//! - `threads` is published only on Linux (where `sysinfo` lists each
//!   process's threads; on Linux this source is therefore slower than the
//!   `/proc` one); elsewhere the number is unknown and not published;
//! - `fds` comes from `sysinfo`'s count of open files, unknown (counted in
//!   `fds_unreadable`) where it has none;
//! - an executable that cannot be read looks like no executable at all, so
//!   the collector-wide `unreadable` gauge is not published;
//! - `uptime` has whole seconds; CPU time comes in milliseconds.

use std::ffi::OsString;

use carat_collector::CollectorError;
use sysinfo::{
    ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System, ThreadKind, UpdateKind,
};

use super::{Candidate, Field, Groups, Tally, Usage};

const NANOS_PER_MILLI: u64 = 1_000_000;

/// Reads processes through `sysinfo` for the `process` collector. See the
/// [module documentation](self).
#[derive(Default)]
pub(crate) struct SysinfoSource {
    /// Built on the first run (building it can fail; `new` must not).
    system: Option<System>,
    cmdline: Vec<u8>,
    matched: Vec<usize>,
}

/// Joins `args` with single spaces into `out` (cleared first).
fn join_args(args: &[OsString], out: &mut Vec<u8>) {
    out.clear();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(arg.as_encoded_bytes());
    }
}

impl SysinfoSource {
    /// Reads every process, adding the matching ones to `tally`.
    pub(crate) fn scan(
        &mut self,
        groups: &Groups,
        tally: &mut Tally,
    ) -> Result<(), CollectorError> {
        let system = match &mut self.system {
            Some(system) => system,
            none => none.insert(System::new().map_err(|e| match e {
                sysinfo::Error::Unsupported => CollectorError::Unsupported(
                    "sysinfo cannot list processes on this system".into(),
                ),
                other => CollectorError::Other(Box::new(other)),
            })?),
        };
        let when = |needed: bool| {
            if needed {
                UpdateKind::Always
            } else {
                UpdateKind::Never
            }
        };
        // `nothing()` still lists the threads of each process on Linux
        // (`tasks`), which is where the thread count comes from.
        let refresh = ProcessRefreshKind::nothing()
            .with_cpu()
            .with_memory()
            .with_exe(when(groups.needs_exe()))
            .with_cmd(when(groups.needs_cmdline()));
        system.refresh_processes_specifics(ProcessesToUpdate::All, true, refresh);
        if system.processes().is_empty() {
            return Err(CollectorError::Unsupported(
                "sysinfo lists no process on this system".into(),
            ));
        }
        let self_pid = if groups.needs_self() {
            sysinfo::get_current_pid().ok().map(|p| p.as_u32())
        } else {
            None
        };

        for (pid, process) in system.processes() {
            // Linux: the threads of a process are listed as processes too.
            // (Kernel threads are `ThreadKind::Kernel`, and are processes.)
            if process.thread_kind() == Some(ThreadKind::Userland) {
                continue;
            }
            if matches!(
                process.status(),
                ProcessStatus::Zombie | ProcessStatus::Dead
            ) {
                continue;
            }
            let pid = pid.as_u32();
            let exe = match process.exe() {
                Some(path) if !path.as_os_str().is_empty() => {
                    Field::Known(path.as_os_str().as_encoded_bytes())
                }
                _ => Field::Absent,
            };
            join_args(process.cmd(), &mut self.cmdline);
            let cmdline = if self.cmdline.is_empty() {
                Field::Absent
            } else {
                Field::Known(&self.cmdline)
            };
            let candidate = Candidate {
                pid,
                comm: process.name().as_encoded_bytes(),
                exe,
                cmdline,
            };
            groups.classify(&candidate, self_pid, &mut self.matched);
            if self.matched.is_empty() {
                continue;
            }
            let usage = Usage {
                start: process.start_time(),
                cpu_ns: process
                    .accumulated_cpu_time()
                    .saturating_mul(NANOS_PER_MILLI),
                rss: process.memory(),
                vms: process.virtual_memory(),
                // `tasks` lists the threads other than the main one.
                threads: process.tasks().map(|t| t.len() as u64 + 1),
                fds: process.open_files().map(|n| n as u64),
                uptime: Some(process.run_time() as f64),
            };
            tally.add(pid, &usage, &self.matched);
        }
        Ok(())
    }
}
