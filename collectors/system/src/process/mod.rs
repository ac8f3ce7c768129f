//! The `process` collector: named groups of processes, matched by regexes
//! on their executable, name or command line, and what they use together.
//!
//! Each configured group publishes, under `process.<group>.`:
//!
//! | metric | unit | meaning |
//! |--------|------|---------|
//! | `count` | processes | Matching processes. **0 when none match**: a group whose workers all died is a value an alert can see, not silence. |
//! | `cpu_percent` | percent of one core | CPU time (user + system) the group's processes used since the previous run, over the measured time between the two runs. From the second run on. |
//! | `rss` | bytes | Resident memory, summed. |
//! | `vms` | bytes | Virtual memory size, summed. |
//! | `threads` | threads | Threads, summed. |
//! | `fds` | descriptors | Open file descriptors, summed over the processes whose `fd/` could be read. |
//! | `fds_unreadable` | processes | Matching processes whose open descriptors could not be counted (not permitted). |
//! | `uptime` | seconds | Age of the group's oldest process. Not published when `count` is 0. |
//!
//! and the collector publishes `unreadable` (the `/proc` source only): the
//! processes it could not check, so that a non-zero value says the counts
//! may be too low (the rules are in `procfs.rs`). The `process` section of this
//! crate's README is the operator's reference: options, metrics, example output, and the
//! differences from Diamond's `ProcessResourcesCollector`.
//!
//! # Matching
//!
//! A process belongs to a group when any regex of any kind the group gives
//! matches (unanchored, like Python's `re.search` in Diamond):
//!
//! - `exe`: the executable's path (`/proc/<pid>/exe`), with the
//!   ` (deleted)` that Linux appends after the binary was replaced (a package
//!   upgrade) removed, so that `^/usr/sbin/nginx$` still matches the workers
//!   of the old binary;
//! - `process_name`: the process name (`comm`, at most 15 bytes);
//! - `cmdline`: the arguments joined by single spaces;
//! - `selfmon`: the agent's own process.
//!
//! Kernel threads have no executable and an empty command line: `exe` and
//! `cmdline` patterns never match them (`cmdline = ".*"` is not "every
//! kernel thread"), `process_name` does. Zombies (exited, not yet reaped) are
//! not processes any more and never match: a worker that died is not counted
//! because its parent has not waited for it yet. A process may belong to
//! several groups.
//!
//! # CPU
//!
//! `cpu_percent` = Δ(utime + stime) of the group's processes / Δt × 100,
//! where Δt is the time between the two runs measured on the monotonic clock
//! ([`Batch::taken_at`]), not the configured interval. Only processes seen in
//! both runs count (identified by pid *and* start time, so a reused pid is a
//! new process): one that started or exited during the interval adds nothing
//! rather than all the CPU time of its life, so a restart is not a spike.
//! The first run publishes no `cpu_percent`; a run that fails keeps the
//! previous reading as the base for the next one.
//!
//! # Sources
//!
//! On Linux the collector reads `<proc_root>/<pid>/{stat,status,cmdline,exe,fd/}`
//! itself (`procfs.rs`), so it works with a host's `/proc` bind-mounted into
//! a container and is tested on hand-made and recorded trees. Elsewhere it
//! asks the `sysinfo` crate (`sysinfo_source.rs`). The `source` option picks
//! one explicitly (`sysinfo` also runs on Linux, for comparison).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use carat_collector::{name, Batch, Collector, CollectorError, Environment};
use serde::Deserialize;

#[cfg(target_os = "linux")]
mod procfs;
mod sysinfo_source;

/// Options of the `process` collector.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessConfig {
    /// The groups of processes to publish, each an entry of
    /// `[[collector.process.groups]]`. At least one is required.
    pub groups: Vec<GroupConfig>,
    /// Where process information comes from.
    pub source: Source,
}

/// One group of processes: `[[collector.process.groups]]`.
///
/// At least one of `exe`, `process_name`, `cmdline` or `selfmon` must be
/// given; a process matching any of them belongs to the group.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// The group's name, one component of the metric path (sanitised: a dot
    /// or a space becomes `_`).
    pub name: String,
    /// Regexes on the path of the executable.
    #[serde(default)]
    pub exe: Patterns,
    /// Regexes on the process name (Linux `comm`: at most 15 bytes).
    #[serde(default)]
    pub process_name: Patterns,
    /// Regexes on the command line, arguments joined by single spaces.
    #[serde(default)]
    pub cmdline: Patterns,
    /// Also match the agent's own process (Diamond's option of the same name).
    #[serde(default)]
    pub selfmon: bool,
}

/// A list of regexes, searched anywhere in the text, written in the
/// configuration as one string (one regex: commas are not separators, they
/// are ordinary regex characters) or as a list of strings; compiled when
/// the configuration is read.
pub type Patterns = carat_collector::options::Patterns;

/// Where process information comes from: `proc` reads `<proc_root>/<pid>/…`
/// directly (Linux only); `sysinfo` ignores the proc root and reads the
/// system the agent runs on, more slowly.
pub use crate::source::Source;

/// The collector-wide metric of the `/proc` source; no group may take it
/// as its name.
const UNREADABLE: &str = "unreadable";

/// CPU time is carried in nanoseconds, whatever unit the source counts in.
const NANOS_PER_SECOND: f64 = 1e9;

/// One compiled group.
#[derive(Debug)]
struct Group {
    /// The sanitised path component.
    component: String,
    exe: Patterns,
    process_name: Patterns,
    cmdline: Patterns,
    selfmon: bool,
}

/// What a process is known by, for matching. Borrowed from the source's
/// buffers, so that nothing is allocated per process.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Candidate<'a> {
    pub pid: u32,
    pub comm: &'a [u8],
    pub exe: Field<'a>,
    pub cmdline: Field<'a>,
}

/// A piece of a process's identity that may be missing.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Field<'a> {
    /// Read (never empty).
    Known(&'a [u8]),
    /// The process has none (a kernel thread, a zombie), or no group needs
    /// it so it was not read.
    Absent,
    /// It exists but could not be read (not permitted).
    Unknown,
}

/// Whether a process belongs to one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Yes,
    No,
    /// No pattern matched what is known, and a pattern of a kind that could
    /// not be read might have.
    Unknown,
}

fn any_match(patterns: &Patterns, field: Field<'_>) -> Verdict {
    if patterns.is_empty() {
        return Verdict::No;
    }
    match field {
        Field::Known(text) if patterns.is_match_bytes(text) => Verdict::Yes,
        Field::Known(_) | Field::Absent => Verdict::No,
        Field::Unknown => Verdict::Unknown,
    }
}

impl Group {
    /// True when `c` belongs to the group by what needs no reading beyond
    /// `stat`: its pid (`selfmon`) or its name.
    fn matches_early(&self, c: &Candidate<'_>, self_pid: Option<u32>) -> bool {
        (self.selfmon && self_pid == Some(c.pid)) || self.process_name.is_match_bytes(c.comm)
    }

    fn test(&self, c: &Candidate<'_>, self_pid: Option<u32>) -> Verdict {
        if self.matches_early(c, self_pid) {
            return Verdict::Yes;
        }
        let exe = any_match(&self.exe, c.exe);
        if exe == Verdict::Yes {
            return exe;
        }
        let cmdline = any_match(&self.cmdline, c.cmdline);
        if cmdline == Verdict::Yes {
            return cmdline;
        }
        if exe == Verdict::Unknown || cmdline == Verdict::Unknown {
            Verdict::Unknown
        } else {
            Verdict::No
        }
    }
}

/// The configured groups, compiled.
#[derive(Debug)]
pub(crate) struct Groups {
    list: Vec<Group>,
    needs_exe: bool,
    needs_cmdline: bool,
    needs_self: bool,
}

impl Groups {
    fn compile(configs: &[GroupConfig]) -> Result<Groups, CollectorError> {
        if configs.is_empty() {
            return Err(CollectorError::option(
                "groups",
                "no process groups: add at least one [[collector.process.groups]] \
                 with a name and exe, process_name or cmdline regexes",
            ));
        }
        // Sanitised component → the configured name that took it.
        let mut taken: HashMap<String, &str> = HashMap::new();
        let mut list = Vec::with_capacity(configs.len());
        for (i, g) in configs.iter().enumerate() {
            // The option of this group in the configuration: `groups.<i>.<key>`.
            let option = |key: &str| format!("groups.{i}.{key}");
            if g.name.trim().is_empty() {
                return Err(CollectorError::option(
                    option("name"),
                    format!("process group #{} has an empty name", i + 1),
                ));
            }
            let component = name::component(&g.name);
            if component == UNREADABLE {
                return Err(CollectorError::option(
                    option("name"),
                    format!(
                        "process group `{}`: the name `{UNREADABLE}` is taken by the collector's \
                         own metric process.{UNREADABLE}; choose another",
                        g.name
                    ),
                ));
            }
            if let Some(other) = taken.insert(component.clone(), &g.name) {
                return Err(CollectorError::option(
                    option("name"),
                    if other == g.name {
                        format!("process group `{}` is defined twice", g.name)
                    } else {
                        format!(
                            "process groups `{other}` and `{}` would both publish under \
                         process.{component}; rename one",
                            g.name
                        )
                    },
                ));
            }
            if g.exe.is_empty() && g.process_name.is_empty() && g.cmdline.is_empty() && !g.selfmon {
                return Err(CollectorError::option(
                    format!("groups.{i}"),
                    format!(
                        "process group `{}` matches nothing: give it exe, process_name or \
                         cmdline regexes, or selfmon = true",
                        g.name
                    ),
                ));
            }
            list.push(Group {
                // Compiled when the configuration was read.
                exe: g.exe.clone(),
                process_name: g.process_name.clone(),
                cmdline: g.cmdline.clone(),
                selfmon: g.selfmon,
                component,
            });
        }
        Ok(Groups {
            needs_exe: list.iter().any(|g| !g.exe.is_empty()),
            needs_cmdline: list.iter().any(|g| !g.cmdline.is_empty()),
            needs_self: list.iter().any(|g| g.selfmon),
            list,
        })
    }

    /// True when some group has `exe` patterns (otherwise sources need not
    /// read the executable's path).
    pub(crate) fn needs_exe(&self) -> bool {
        self.needs_exe
    }

    /// True when some group has `cmdline` patterns.
    pub(crate) fn needs_cmdline(&self) -> bool {
        self.needs_cmdline
    }

    /// True when some group has `selfmon`.
    pub(crate) fn needs_self(&self) -> bool {
        self.needs_self
    }

    /// True when the executable of `c` could change what it belongs to:
    /// some group has `exe` patterns and `c` is not already in it by its pid
    /// or name.
    pub(crate) fn wants_exe(&self, c: &Candidate<'_>, self_pid: Option<u32>) -> bool {
        self.needs_exe
            && self
                .list
                .iter()
                .any(|g| !g.exe.is_empty() && !g.matches_early(c, self_pid))
    }

    /// True when the command line of `c` could change what it belongs to:
    /// some group has `cmdline` patterns and `c` is not already in it by its
    /// pid, name or executable (`c.exe` as read, or absent if not needed).
    pub(crate) fn wants_cmdline(&self, c: &Candidate<'_>, self_pid: Option<u32>) -> bool {
        self.needs_cmdline
            && self.list.iter().any(|g| {
                !g.cmdline.is_empty()
                    && !g.matches_early(c, self_pid)
                    && any_match(&g.exe, c.exe) != Verdict::Yes
            })
    }

    /// Fills `matched` (cleared first) with the indices of the groups `c`
    /// belongs to. Returns true when it belongs to none but might have
    /// belonged to one, had everything about it been readable.
    pub(crate) fn classify(
        &self,
        c: &Candidate<'_>,
        self_pid: Option<u32>,
        matched: &mut Vec<usize>,
    ) -> bool {
        matched.clear();
        let mut uncertain = false;
        for (i, g) in self.list.iter().enumerate() {
            match g.test(c, self_pid) {
                Verdict::Yes => matched.push(i),
                Verdict::No => {}
                Verdict::Unknown => uncertain = true,
            }
        }
        matched.is_empty() && uncertain
    }
}

/// What one matching process uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Usage {
    /// When it started, in the source's own unit: with the pid, what tells
    /// one process from a later one that reused its pid.
    pub start: u64,
    /// User + system CPU time since it started, in nanoseconds.
    pub cpu_ns: u64,
    /// Resident memory, bytes.
    pub rss: u64,
    /// Virtual memory, bytes.
    pub vms: u64,
    /// Threads, when the source can tell.
    pub threads: Option<u64>,
    /// Open file descriptors, `None` when they could not be counted.
    pub fds: Option<u64>,
    /// Seconds since it started, when known.
    pub uptime: Option<f64>,
}

/// The sums of one group in one run.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    count: u64,
    /// CPU nanoseconds used since the previous run by processes seen in both.
    cpu_ns: u64,
    rss: u64,
    vms: u64,
    threads: u64,
    threads_unknown: u64,
    fds: u64,
    fds_read: u64,
    fds_unreadable: u64,
    /// The largest uptime.
    oldest: Option<f64>,
}

/// One run's sums, and the CPU times of the previous run.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    totals: Vec<Totals>,
    /// (pid, start) → CPU ns, of the matching processes of the last good run
    /// and of this one. Swapped after each good run; both keep their
    /// allocations.
    prev_cpu: HashMap<(u32, u64), u64>,
    cur_cpu: HashMap<(u32, u64), u64>,
    /// Processes the source could not check (`None`: the source cannot tell).
    pub unreadable: Option<u64>,
}

impl Tally {
    fn begin(&mut self, groups: usize) {
        self.totals.clear();
        self.totals.resize(groups, Totals::default());
        self.cur_cpu.clear();
        self.unreadable = None;
    }

    /// Adds process `pid`, using `usage`, to each group in `groups`.
    pub(crate) fn add(&mut self, pid: u32, usage: &Usage, groups: &[usize]) {
        let key = (pid, usage.start);
        // A CPU time that went backwards (it cannot for one process) adds
        // nothing rather than a huge unsigned difference.
        let delta = self
            .prev_cpu
            .get(&key)
            .and_then(|prev| usage.cpu_ns.checked_sub(*prev));
        self.cur_cpu.insert(key, usage.cpu_ns);
        for &g in groups {
            let Some(t) = self.totals.get_mut(g) else {
                continue;
            };
            t.count += 1;
            t.cpu_ns = t.cpu_ns.saturating_add(delta.unwrap_or(0));
            t.rss = t.rss.saturating_add(usage.rss);
            t.vms = t.vms.saturating_add(usage.vms);
            match usage.threads {
                Some(n) => t.threads = t.threads.saturating_add(n),
                None => t.threads_unknown += 1,
            }
            match usage.fds {
                Some(n) => {
                    t.fds = t.fds.saturating_add(n);
                    t.fds_read += 1;
                }
                None => t.fds_unreadable += 1,
            }
            if let Some(up) = usage.uptime {
                t.oldest = Some(t.oldest.map_or(up, |o| o.max(up)));
            }
        }
    }

    /// This run's CPU times become the base of the next one.
    fn commit(&mut self) {
        std::mem::swap(&mut self.prev_cpu, &mut self.cur_cpu);
    }
}

/// The source in use.
enum Reader {
    #[cfg(target_os = "linux")]
    Proc(Box<procfs::ProcSource>),
    Sysinfo(Box<sysinfo_source::SysinfoSource>),
}

/// The `process` collector. See the [module documentation](self).
pub struct Process {
    groups: Groups,
    reader: Reader,
    tally: Tally,
    /// When the reading in `tally.prev_cpu` was taken.
    prev_at: Option<Instant>,
}

impl Collector for Process {
    type Config = ProcessConfig;
    const KIND: &'static str = "process";
    const DESCRIPTION: &'static str =
        "Named groups of processes: count, CPU, memory, threads, file descriptors";
    const DEFAULT_PATH: &'static str = "process";

    fn new(config: ProcessConfig, env: &Environment) -> Result<Self, CollectorError> {
        let groups = Groups::compile(&config.groups)?;
        let reader = match config.source.reader(Self::KIND)? {
            crate::source::Reader::Proc => Reader::Proc(Box::new(procfs::ProcSource::new(env))),
            crate::source::Reader::Sysinfo => Reader::Sysinfo(Box::default()),
        };
        Ok(Process {
            tally: Tally::default(),
            groups,
            reader,
            prev_at: None,
        })
    }

    async fn collect(&mut self, batch: &mut Batch) -> Result<(), CollectorError> {
        self.tally.begin(self.groups.list.len());
        match &mut self.reader {
            #[cfg(target_os = "linux")]
            Reader::Proc(source) => source.scan(&self.groups, &mut self.tally)?,
            Reader::Sysinfo(source) => source.scan(&self.groups, &mut self.tally)?,
        }
        let at = batch.taken_at();
        let elapsed = self
            .prev_at
            .and_then(|prev| at.checked_duration_since(prev))
            .filter(|d| !d.is_zero());
        self.publish(batch, elapsed);
        self.tally.commit();
        self.prev_at = Some(at);
        Ok(())
    }
}

impl Process {
    fn publish(&self, batch: &mut Batch, elapsed: Option<Duration>) {
        for (group, t) in self.groups.list.iter().zip(&self.tally.totals) {
            let g = group.component.as_str();
            batch.gauge_parts(&[g, "count"], t.count as f64);
            if let Some(elapsed) = elapsed {
                let cpu_seconds = t.cpu_ns as f64 / NANOS_PER_SECOND;
                batch.gauge_parts(
                    &[g, "cpu_percent"],
                    cpu_seconds / elapsed.as_secs_f64() * 100.0,
                );
            }
            batch.gauge_parts(&[g, "rss"], t.rss as f64);
            batch.gauge_parts(&[g, "vms"], t.vms as f64);
            if t.threads_unknown == 0 {
                batch.gauge_parts(&[g, "threads"], t.threads as f64);
            }
            // A sum over no readable process would be a made-up 0.
            if t.count == 0 || t.fds_read > 0 {
                batch.gauge_parts(&[g, "fds"], t.fds as f64);
            }
            batch.gauge_parts(&[g, "fds_unreadable"], t.fds_unreadable as f64);
            if let Some(oldest) = t.oldest {
                batch.gauge_parts(&[g, "uptime"], oldest);
            }
        }
        if let Some(n) = self.tally.unreadable {
            batch.gauge(UNREADABLE, n as f64);
        }
    }
}

#[cfg(test)]
mod tests;
