//! Tests of the `process` collector: configuration, and whole runs over
//! hand-made and recorded proc trees, the real `/proc`, and `sysinfo`.
// The proc trees are Linux's; elsewhere only the sysinfo test runs.
#![cfg_attr(not(target_os = "linux"), allow(dead_code, unused_imports))]

use std::time::Duration;

use carat_collector::testing::{Harness, Published};
use serde::de::value::{Error as DeError, MapDeserializer, SeqDeserializer, StrDeserializer};

use super::*;
use crate::test_support::{assert_metric, fixture_path, ProcDir};

fn group(name: &str) -> GroupConfig {
    GroupConfig {
        name: name.to_owned(),
        exe: Patterns::default(),
        process_name: Patterns::default(),
        cmdline: Patterns::default(),
        selfmon: false,
    }
}

fn patterns(list: &[&str]) -> Patterns {
    Patterns::new(list.iter().copied()).unwrap()
}

fn by_exe(name: &str, exe: &[&str]) -> GroupConfig {
    GroupConfig {
        exe: patterns(exe),
        ..group(name)
    }
}

fn by_process_name(name: &str, comm: &[&str]) -> GroupConfig {
    GroupConfig {
        process_name: patterns(comm),
        ..group(name)
    }
}

fn by_cmdline(name: &str, cmdline: &[&str]) -> GroupConfig {
    GroupConfig {
        cmdline: patterns(cmdline),
        ..group(name)
    }
}

fn config(groups: Vec<GroupConfig>) -> ProcessConfig {
    ProcessConfig {
        groups,
        source: Source::Auto,
    }
}

fn config_error(groups: Vec<GroupConfig>) -> String {
    match Process::new(config(groups), &Environment::default()) {
        Ok(_) => panic!("configuration accepted"),
        Err(e) => {
            assert_eq!(e.label(), "config");
            e.to_string()
        }
    }
}

fn names(p: &Published) -> Vec<&str> {
    p.names().collect()
}

// ---------------------------------------------------------------------------
// Configuration

#[test]
fn description_kind_and_path() {
    assert!(!Process::DESCRIPTION.contains('\n'));
    assert_eq!(Process::KIND, "process");
    assert_eq!(Process::DEFAULT_PATH, "process");
}

#[test]
fn patterns_are_one_string_or_a_list() {
    let one = Patterns::deserialize(StrDeserializer::<DeError>::new("^a,b$")).unwrap();
    assert_eq!(one, patterns(&["^a,b$"]), "a comma is not a separator");
    let many = Patterns::deserialize(SeqDeserializer::<_, DeError>::new(
        vec!["^a$", "^b$"].into_iter(),
    ))
    .unwrap();
    assert_eq!(many, patterns(&["^a$", "^b$"]));
    let err = Patterns::deserialize(serde::de::value::U32Deserializer::<DeError>::new(3))
        .unwrap_err()
        .to_string();
    assert!(err.contains("a string or a list of strings"), "{err}");
}

#[test]
fn group_options_and_unknown_keys() {
    let table = vec![
        ("name", "nginx"),
        ("exe", "^/usr/sbin/nginx$"),
        ("process_name", "^nginx$"),
        ("cmdline", "nginx: worker"),
    ];
    let g =
        GroupConfig::deserialize(MapDeserializer::<_, DeError>::new(table.into_iter())).unwrap();
    assert_eq!(g.name, "nginx");
    assert_eq!(g.exe, patterns(&["^/usr/sbin/nginx$"]));
    assert_eq!(g.process_name, patterns(&["^nginx$"]));
    assert_eq!(g.cmdline, patterns(&["nginx: worker"]));
    assert!(!g.selfmon);

    // Diamond's `name` regex option is `process_name` here; a typo is an
    // error naming the key.
    let typo = vec![("name", "nginx"), ("exe_regex", "^x$")];
    let err = GroupConfig::deserialize(MapDeserializer::<_, DeError>::new(typo.into_iter()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("exe_regex"), "{err}");

    let nameless = vec![("exe", "^x$")];
    let err = GroupConfig::deserialize(MapDeserializer::<_, DeError>::new(nameless.into_iter()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("name"), "{err}");
}

#[test]
fn collector_options() {
    let empty: MapDeserializer<'_, std::vec::IntoIter<(&str, &str)>, DeError> =
        MapDeserializer::new(Vec::new().into_iter());
    assert_eq!(
        ProcessConfig::deserialize(empty).unwrap(),
        ProcessConfig::default()
    );
    for (text, source) in [
        ("auto", Source::Auto),
        ("proc", Source::Proc),
        ("sysinfo", Source::Sysinfo),
    ] {
        let set = MapDeserializer::<_, DeError>::new(vec![("source", text)].into_iter());
        assert_eq!(ProcessConfig::deserialize(set).unwrap().source, source);
    }
    let bad = MapDeserializer::<_, DeError>::new(vec![("source", "psutil")].into_iter());
    assert!(ProcessConfig::deserialize(bad).is_err());
    let typo = MapDeserializer::<_, DeError>::new(vec![("group", "x")].into_iter());
    let err = ProcessConfig::deserialize(typo).unwrap_err().to_string();
    assert!(err.contains("group"), "{err}");
}

#[test]
fn configuration_errors_name_the_group() {
    let msg = config_error(vec![]);
    assert!(msg.contains("no process groups"), "{msg}");
    // Each error names the option at fault, down to the group's key, for
    // the configuration loader to point at its line.
    assert!(msg.contains("option `groups`"), "{msg}");

    let msg = config_error(vec![by_exe("nginx", &["^x$"]), group("workers")]);
    assert!(
        msg.contains("`workers` matches nothing") && msg.contains("selfmon"),
        "{msg}"
    );
    assert!(msg.contains("option `groups.1`:"), "{msg}");

    let msg = config_error(vec![by_exe("nginx", &["^x$"]), by_exe("nginx", &["^y$"])]);
    assert!(msg.contains("`nginx` is defined twice"), "{msg}");
    assert!(msg.contains("option `groups.1.name`"), "{msg}");

    // Different names, one metric path.
    let msg = config_error(vec![
        by_exe("web.app", &["^x$"]),
        by_exe("web_app", &["^y$"]),
    ]);
    assert!(
        msg.contains("`web.app` and `web_app`") && msg.contains("process.web_app"),
        "{msg}"
    );

    // A regex that does not compile is refused when the group is read (the
    // loader points at its line: `groups.0.cmdline`).
    let table = vec![("name", "celery"), ("cmdline", "celery(worker")];
    let msg = GroupConfig::deserialize(MapDeserializer::<_, DeError>::new(table.into_iter()))
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("invalid regex \"celery(worker\": unclosed group"),
        "{msg}"
    );

    // Case-insensitive patterns are accepted.
    let groups = vec![by_process_name("ci", &["(?i)nginx"])];
    assert!(Process::new(config(groups), &Environment::default()).is_ok());

    let msg = config_error(vec![by_exe(" ", &["^x$"])]);
    assert!(msg.contains("#1 has an empty name"), "{msg}");

    let msg = config_error(vec![by_exe("unreadable", &["^x$"])]);
    assert!(msg.contains("taken by the collector's own metric"), "{msg}");
}

#[cfg(not(target_os = "linux"))]
#[test]
fn proc_source_is_linux_only() {
    let mut c = config(vec![by_exe("a", &["^x$"])]);
    c.source = Source::Proc;
    let err = Process::new(c, &Environment::default()).err().unwrap();
    assert_eq!(err.label(), "config");
}

// ---------------------------------------------------------------------------
// Hand-made proc trees

/// One process of a hand-made proc tree.
#[derive(Clone)]
struct Fake {
    pid: u32,
    comm: &'static str,
    state: char,
    utime: u64,
    stime: u64,
    threads: u64,
    /// Clock ticks after boot.
    starttime: u64,
    /// The `exe` link's target; `None`: no link (a kernel thread).
    exe: Option<&'static str>,
    args: &'static [&'static str],
    rss_kb: u64,
    vms_kb: u64,
    fds: usize,
}

impl Fake {
    fn new(pid: u32, comm: &'static str) -> Fake {
        Fake {
            pid,
            comm,
            state: 'S',
            utime: 0,
            stime: 0,
            threads: 1,
            starttime: 1_000,
            exe: None,
            args: &[],
            rss_kb: 0,
            vms_kb: 0,
            fds: 0,
        }
    }
}

/// A proc root holding fake processes, an `uptime` and a `self` link.
struct Tree {
    dir: ProcDir,
}

impl Tree {
    fn new(tag: &str) -> Tree {
        let dir = ProcDir::new(tag);
        // 1000 s since boot.
        dir.write("uptime", "1000.00 1900.00\n");
        Tree { dir }
    }

    fn pid_dir(&self, pid: u32) -> std::path::PathBuf {
        self.dir.path.join(pid.to_string())
    }

    fn add(&self, p: &Fake) {
        let base = self.pid_dir(p.pid);
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("fd")).unwrap();
        let pid = p.pid;
        self.dir.write(
            &format!("{pid}/stat"),
            &format!(
                "{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 4194560 100 0 0 0 {utime} {stime} 0 0 \
                 20 0 {threads} 0 {start} {vsize} {rss_pages} 18446744073709551615 1 1 0 0 0 0 0 \
                 4096 0 0 0 0 17 1 0 0 0 0 0\n",
                comm = p.comm,
                state = p.state,
                utime = p.utime,
                stime = p.stime,
                threads = p.threads,
                start = p.starttime,
                vsize = p.vms_kb * 1024,
                rss_pages = p.rss_kb / 4,
            ),
        );
        let mut status = format!(
            "Name:\t{}\nState:\t{} (sleeping)\nPid:\t{pid}\n",
            p.comm, p.state
        );
        if p.exe.is_some() {
            status += &format!("VmSize:\t{:8} kB\nVmRSS:\t{:8} kB\n", p.vms_kb, p.rss_kb);
        }
        status += &format!("Threads:\t{}\n", p.threads);
        self.dir.write(&format!("{pid}/status"), &status);
        let mut cmdline = Vec::new();
        for arg in p.args {
            cmdline.extend_from_slice(arg.as_bytes());
            cmdline.push(0);
        }
        self.dir.write_bytes(&format!("{pid}/cmdline"), &cmdline);
        if let Some(exe) = p.exe {
            std::os::unix::fs::symlink(exe, base.join("exe")).unwrap();
        }
        for fd in 0..p.fds {
            std::os::unix::fs::symlink("/dev/null", base.join(format!("fd/{fd}"))).unwrap();
        }
    }

    fn remove(&self, pid: u32) {
        std::fs::remove_dir_all(self.pid_dir(pid)).unwrap();
    }

    fn harness(&self, groups: Vec<GroupConfig>) -> Harness<Process> {
        let mut c = config(groups);
        c.source = Source::Proc;
        Harness::<Process>::new(c, self.dir.env()).unwrap()
    }
}

/// An nginx master and two workers, and an unrelated shell.
fn nginx(tree: &Tree) {
    let master = Fake {
        exe: Some("/usr/sbin/nginx"),
        args: &["nginx: master process /usr/sbin/nginx"],
        utime: 100,
        stime: 50,
        starttime: 20_000, // 200 s after boot: 800 s old
        rss_kb: 4_000,
        vms_kb: 40_000,
        fds: 8,
        ..Fake::new(101, "nginx")
    };
    let worker = Fake {
        args: &["nginx: worker process"],
        utime: 1_000,
        stime: 200,
        starttime: 30_000,
        rss_kb: 10_000,
        vms_kb: 50_000,
        threads: 3,
        fds: 20,
        ..master.clone()
    };
    tree.add(&master);
    tree.add(&Fake {
        pid: 102,
        ..worker.clone()
    });
    tree.add(&Fake { pid: 103, ..worker });
    tree.add(&Fake {
        exe: Some("/usr/bin/bash"),
        args: &["-bash"],
        utime: 5,
        rss_kb: 2_000,
        vms_kb: 9_000,
        fds: 4,
        ..Fake::new(200, "bash")
    });
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn sums_of_a_group_and_zero_for_an_empty_one() {
    let tree = Tree::new("process-sums");
    nginx(&tree);
    let mut h = tree.harness(vec![
        by_exe("nginx", &["^/usr/sbin/nginx$"]),
        by_exe("workers", &["^/usr/bin/celery$"]),
    ]);
    let p = h.collect().await.unwrap();
    assert_metric(&p, "nginx.count", 3.0);
    assert_metric(&p, "nginx.rss", (4_000.0 + 2.0 * 10_000.0) * 1024.0);
    assert_metric(&p, "nginx.vms", (40_000.0 + 2.0 * 50_000.0) * 1024.0);
    assert_metric(&p, "nginx.threads", 1.0 + 2.0 * 3.0);
    assert_metric(&p, "nginx.fds", 8.0 + 2.0 * 20.0);
    assert_metric(&p, "nginx.fds_unreadable", 0.0);
    // The master started 200 s after boot; uptime says 1000 s.
    assert_metric(&p, "nginx.uptime", 800.0);
    // The point of it all: a group with nothing running is a 0, not silence.
    assert_metric(&p, "workers.count", 0.0);
    assert_metric(&p, "workers.rss", 0.0);
    assert_metric(&p, "workers.vms", 0.0);
    assert_metric(&p, "workers.threads", 0.0);
    assert_metric(&p, "workers.fds", 0.0);
    assert_metric(&p, "workers.fds_unreadable", 0.0);
    assert!(p.get("workers.uptime").is_none());
    assert_metric(&p, "unreadable", 0.0);
    // First run: no CPU share yet.
    assert!(p.get("nginx.cpu_percent").is_none());
    assert!(p.get("workers.cpu_percent").is_none());
    assert_eq!(p.metrics.len(), 7 + 6 + 1, "{:?}", names(&p));
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn cpu_percent_over_measured_time_and_exits_between_runs() {
    let tree = Tree::new("process-cpu");
    nginx(&tree);
    let mut h = tree.harness(vec![
        by_process_name("nginx", &["^nginx$"]),
        by_process_name("none", &["^nothing$"]),
    ]);
    h.collect().await.unwrap();

    // 2 s later: the master used 10 + 20 ticks, worker 102 used 200 + 70,
    // worker 103 exited, and worker 104 started (its 500 ticks are all
    // from before it was first seen, so they count for nothing).
    let base = Fake {
        exe: Some("/usr/sbin/nginx"),
        ..Fake::new(101, "nginx")
    };
    tree.add(&Fake {
        utime: 110,
        stime: 70,
        starttime: 20_000,
        ..base.clone()
    });
    tree.add(&Fake {
        pid: 102,
        utime: 1_200,
        stime: 270,
        starttime: 30_000,
        ..base.clone()
    });
    tree.remove(103);
    tree.add(&Fake {
        pid: 104,
        utime: 400,
        stime: 100,
        starttime: 99_000,
        ..base.clone()
    });
    let p = h.collect_after(Duration::from_secs(2)).await.unwrap();
    assert_metric(&p, "nginx.count", 3.0);
    // (30 + 270) ticks = 3 s of CPU over 2 s = 150 % of one core.
    assert_metric(&p, "nginx.cpu_percent", 150.0);
    assert_metric(&p, "none.cpu_percent", 0.0);
    assert_metric(&p, "none.count", 0.0);

    // 4 s later: only 104 moved (50 ticks); it is now seen in both runs.
    tree.add(&Fake {
        pid: 104,
        utime: 450,
        stime: 100,
        starttime: 99_000,
        ..base.clone()
    });
    let p = h.collect_after(Duration::from_secs(4)).await.unwrap();
    assert_metric(&p, "nginx.cpu_percent", 12.5);

    // Pid 104 reused by a new process (another start time): not the same
    // process, so its time is not compared with the old one's.
    tree.add(&Fake {
        pid: 104,
        utime: 9_000,
        stime: 0,
        starttime: 99_500,
        ..base
    });
    let p = h.collect_after(Duration::from_secs(1)).await.unwrap();
    assert_metric(&p, "nginx.cpu_percent", 0.0);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_failed_run_keeps_the_previous_reading() {
    let tree = Tree::new("process-cpu-fail");
    tree.add(&Fake {
        utime: 100,
        ..Fake::new(7, "worker")
    });
    let mut h = tree.harness(vec![by_process_name("w", &["^worker$"])]);
    h.collect().await.unwrap();
    tree.remove(7);
    // No process at all: not a proc filesystem.
    assert!(h.collect_after(Duration::from_secs(1)).await.is_err());
    tree.add(&Fake {
        utime: 400,
        ..Fake::new(7, "worker")
    });
    // 300 ticks over the 1 + 2 s since the last good run.
    let p = h.collect_after(Duration::from_secs(2)).await.unwrap();
    assert_metric(&p, "w.cpu_percent", 100.0);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn vanished_and_garbled_processes() {
    let tree = Tree::new("process-races");
    nginx(&tree);
    // A pid directory whose process exited while it was being read: the
    // directory is listed but its files are gone. Not an error, not counted.
    std::fs::create_dir(tree.pid_dir(300)).unwrap();
    // A stat that is not in the kernel's format: skipped and counted.
    std::fs::create_dir(tree.pid_dir(301)).unwrap();
    tree.dir.write("301/stat", "301 (nginx) S garbage\n");
    // The right stat under the wrong pid directory.
    std::fs::create_dir(tree.pid_dir(302)).unwrap();
    tree.dir.write(
        "302/stat",
        &std::fs::read_to_string(tree.pid_dir(101).join("stat")).unwrap(),
    );
    // A matching process whose status is garbage: skipped and counted.
    tree.add(&Fake {
        exe: Some("/usr/sbin/nginx"),
        ..Fake::new(303, "nginx")
    });
    tree.dir
        .write("303/status", "Name:\tnginx\nVmRSS:\tmany kB\n");
    // Entries of /proc that are not processes.
    std::fs::create_dir(tree.dir.path.join("sys")).unwrap();
    tree.dir.write("meminfo", "MemTotal: 1 kB\n");

    let mut h = tree.harness(vec![by_exe("nginx", &["^/usr/sbin/nginx$"])]);
    let p = h.collect().await.unwrap();
    assert_metric(&p, "nginx.count", 3.0);
    assert_metric(&p, "unreadable", 3.0);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_wholly_unreadable_proc_root_is_an_error() {
    let tree = Tree::new("process-unreadable");
    let mut h = tree.harness(vec![by_process_name("a", &["a"])]);
    let err = h.collect().await.unwrap_err();
    assert!(err.to_string().contains("no process directories"), "{err}");

    std::fs::create_dir(tree.pid_dir(1)).unwrap();
    tree.dir.write("1/stat", "garbage\n");
    std::fs::create_dir(tree.pid_dir(2)).unwrap();
    let err = h.collect().await.unwrap_err().to_string();
    assert!(
        err.contains("none of the 2 process directories could be read")
            && err.contains("1/stat: not in the kernel's format"),
        "{err}"
    );

    let missing = ProcDir::new("process-missing");
    let env = Environment {
        proc_root: missing.path.join("nope"),
        ..Environment::default()
    };
    let mut c = config(vec![by_process_name("a", &["a"])]);
    c.source = Source::Proc;
    let mut h = Harness::<Process>::new(c, env).unwrap();
    let err = h.collect().await.unwrap_err();
    assert_eq!(err.label(), "io");
    assert!(err.to_string().contains("nope"), "{err}");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn odd_names_and_kinds_of_match() {
    let tree = Tree::new("process-match");
    tree.add(&Fake {
        exe: Some("/opt/odd/bin/prog"),
        args: &["/opt/odd/bin/prog", "--name", "two words"],
        utime: 10,
        rss_kb: 100,
        ..Fake::new(10, "(my (odd) prog)")
    });
    tree.add(&Fake {
        exe: Some("/usr/bin/python3.11"),
        args: &["/usr/bin/python3", "-m", "celery", "-A", "app", "worker"],
        rss_kb: 1_000,
        ..Fake::new(11, "celery")
    });
    // A kernel thread: no exe, empty cmdline.
    tree.add(&Fake::new(12, "kworker/0:1"));
    // A zombie whose name matches: dead, not counted.
    tree.add(&Fake {
        state: 'Z',
        ..Fake::new(13, "celery")
    });
    // The binary was upgraded under a running process.
    tree.add(&Fake {
        exe: Some("/usr/sbin/nginx (deleted)"),
        args: &["nginx: worker process"],
        ..Fake::new(14, "nginx")
    });

    let mut h = tree.harness(vec![
        by_process_name("odd", &[r"^\(my \(odd\) prog\)$"]),
        by_cmdline("by args", &["--name two words$"]),
        by_cmdline("celery workers", &[r"celery.*\bworker\b"]),
        // Neither matches a kernel thread.
        by_cmdline("any cmdline", &[""]),
        by_exe("any exe", &[".*"]),
        by_process_name("kernel", &["^kworker/"]),
        GroupConfig {
            // Several kinds: any match counts.
            exe: patterns(&["^/usr/sbin/nginx$"]),
            process_name: patterns(&["^celery$"]),
            ..group("web.app server")
        },
    ]);
    let p = h.collect().await.unwrap();
    assert_metric(&p, "odd.count", 1.0);
    assert_metric(&p, "odd.rss", 100.0 * 1024.0);
    assert_metric(&p, "by_args.count", 1.0);
    assert_metric(&p, "celery_workers.count", 1.0);
    assert_metric(&p, "celery_workers.rss", 1_000.0 * 1024.0);
    assert_metric(&p, "any_cmdline.count", 3.0);
    assert_metric(&p, "any_exe.count", 3.0);
    assert_metric(&p, "kernel.count", 1.0);
    assert_metric(&p, "kernel.rss", 0.0);
    // The dots and the space of the name become one path component.
    assert_metric(&p, "web_app_server.count", 2.0);
    assert!(
        names(&p)
            .iter()
            .all(|n| *n == "unreadable" || n.matches('.').count() == 1),
        "{:?}",
        names(&p)
    );
    assert_metric(&p, "unreadable", 0.0);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn unreadable_exe_and_fd_directories() {
    let tree = Tree::new("process-perm");
    nginx(&tree);
    // An exe link that cannot be read (as another user's would be without
    // CAP_SYS_PTRACE; simulated by a file where the link should be).
    tree.add(&Fake {
        args: &["/usr/sbin/nginx"],
        ..Fake::new(400, "nginx")
    });
    tree.dir.write("400/exe", "");
    tree.add(&Fake::new(401, "cron"));
    tree.dir.write("401/exe", "");
    // fd/ that cannot be listed: the process counts, its descriptors do not.
    tree.dir.write("102/fd/..x", "");
    std::fs::remove_dir_all(tree.pid_dir(103).join("fd")).unwrap();
    tree.dir.write("103/fd", "not a directory");

    let mut h = tree.harness(vec![
        by_exe("nginx", &["^/usr/sbin/nginx$"]),
        GroupConfig {
            process_name: patterns(&["^nginx$"]),
            ..group("by_name")
        },
    ]);
    let p = h.collect().await.unwrap();
    assert_metric(&p, "nginx.count", 3.0);
    assert_metric(&p, "nginx.fds", 8.0 + 21.0);
    assert_metric(&p, "nginx.fds_unreadable", 1.0);
    // 400 matched by name, so it is not in doubt; 401 might be an nginx
    // whose exe could not be read.
    assert_metric(&p, "by_name.count", 4.0);
    assert_metric(&p, "unreadable", 1.0);

    // Every process's fd/ unreadable: no made-up 0.
    let tree = Tree::new("process-perm-all");
    tree.add(&Fake::new(5, "solo"));
    std::fs::remove_dir_all(tree.pid_dir(5).join("fd")).unwrap();
    tree.dir.write("5/fd", "");
    let mut h = tree.harness(vec![by_process_name("solo", &["solo"])]);
    let p = h.collect().await.unwrap();
    assert_metric(&p, "solo.count", 1.0);
    assert!(p.get("solo.fds").is_none());
    assert_metric(&p, "solo.fds_unreadable", 1.0);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn selfmon_and_uptime() {
    let tree = Tree::new("process-self");
    nginx(&tree);
    std::os::unix::fs::symlink("200", tree.dir.path.join("self")).unwrap();
    let mut h = tree.harness(vec![GroupConfig {
        selfmon: true,
        ..group("carat")
    }]);
    let p = h.collect().await.unwrap();
    assert_metric(&p, "carat.count", 1.0);
    assert_metric(&p, "carat.rss", 2_000.0 * 1024.0);
    // Started at tick 1000 (10 s after boot), 1000 s since boot.
    assert_metric(&p, "carat.uptime", 990.0);

    // Without an uptime file the age is unknown; the rest is published.
    std::fs::remove_file(tree.dir.path.join("uptime")).unwrap();
    let p = h.collect().await.unwrap();
    assert_metric(&p, "carat.count", 1.0);
    assert!(p.get("carat.uptime").is_none());
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn recorded_processes() {
    let tree = Tree::new("process-recorded");
    tree.dir.write("uptime", "1750.00 2644.10\n");
    for (case, pid, exe, fds) in [
        ("sleep", 2174, Some("/usr/bin/sleep"), 5),
        ("odd", 2173, Some("/usr/bin/bash"), 5),
        ("zombie", 2177, None, 0),
        ("kthread", 2, None, 0),
    ] {
        let base = tree.pid_dir(pid);
        std::fs::create_dir_all(base.join("fd")).unwrap();
        for file in ["stat", "status", "cmdline"] {
            std::fs::copy(
                fixture_path(&format!("process/{case}/{file}")),
                base.join(file),
            )
            .unwrap();
        }
        if let Some(exe) = exe {
            std::os::unix::fs::symlink(exe, base.join("exe")).unwrap();
        }
        for fd in 0..fds {
            std::os::unix::fs::symlink("/dev/null", base.join(format!("fd/{fd}"))).unwrap();
        }
    }
    let mut h = tree.harness(vec![
        by_exe("sleep", &["^/usr/bin/sleep$"]),
        by_process_name("odd", &[r"^\(my \(odd\) prog\)$"]),
        by_cmdline("printf", &[r#"^bash -c printf "\(my"#]),
        by_process_name("kthreadd", &["^kthreadd$"]),
        by_cmdline("all", &["."]),
    ]);
    let p = h.collect().await.unwrap();
    assert_metric(&p, "sleep.count", 1.0);
    assert_metric(&p, "sleep.rss", 1832.0 * 1024.0);
    assert_metric(&p, "sleep.vms", 2920.0 * 1024.0);
    assert_metric(&p, "sleep.threads", 1.0);
    assert_metric(&p, "sleep.fds", 5.0);
    // Started 1748.70 s after boot.
    assert_metric(&p, "sleep.uptime", 1750.0 - 1748.70);
    assert_metric(&p, "odd.count", 1.0);
    assert_metric(&p, "odd.rss", 3184.0 * 1024.0);
    assert_metric(&p, "printf.count", 1.0);
    assert_metric(&p, "kthreadd.count", 1.0);
    assert_metric(&p, "kthreadd.rss", 0.0);
    assert_metric(&p, "kthreadd.uptime", 1750.0 - 0.25);
    // The zombie and the kernel thread have no command line.
    assert_metric(&p, "all.count", 2.0);
    assert_metric(&p, "unreadable", 0.0);
}

// ---------------------------------------------------------------------------
// Real processes

/// A group matching exactly the executable of this test binary.
fn this_process(name: &str) -> GroupConfig {
    let exe = std::env::current_exe().unwrap();
    let exe = exe.to_str().expect("test binary path is UTF-8");
    by_exe(name, &[&format!("^{}$", regex::escape(exe))])
}

/// A harness over groups `me` (this test binary) and `nobody` (no
/// process), read from `source`.
fn me_and_nobody(source: Source) -> Harness<Process> {
    let mut c = config(vec![
        this_process("me"),
        by_exe("nobody", &["^/nonexistent/carat-test-binary$"]),
    ]);
    c.source = source;
    Harness::<Process>::new(c, Environment::default()).unwrap()
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn real_proc_finds_this_process() {
    let mut h = me_and_nobody(Source::Proc);
    let p = h.collect().await.unwrap();
    let get = |name: &str| {
        p.get(name)
            .unwrap_or_else(|| panic!("{name} not published: {:?}", names(&p)))
    };
    assert!(get("me.count") >= 1.0);
    assert!(get("me.rss") > 0.0);
    assert!(get("me.vms") >= get("me.rss"));
    assert!(get("me.threads") >= 1.0);
    assert!(get("me.fds") >= 3.0);
    assert!(get("me.uptime") >= 0.0);
    assert_metric(&p, "nobody.count", 0.0);
    assert!(p.get("nobody.uptime").is_none());

    // Burn some CPU: the second run's share is positive.
    let until = std::time::Instant::now() + Duration::from_millis(200);
    let mut spins = 0u64;
    while std::time::Instant::now() < until {
        spins = std::hint::black_box(spins + 1);
    }
    let p = h.collect().await.unwrap();
    let cpu = p.get("me.cpu_percent").expect("cpu_percent");
    assert!(cpu > 0.0, "cpu_percent {cpu}");
    assert_metric(&p, "nobody.cpu_percent", 0.0);
}

#[tokio::test]
async fn sysinfo_source_finds_this_process() {
    let mut h = me_and_nobody(Source::Sysinfo);
    let p = h.collect().await.unwrap();
    let get = |name: &str| {
        p.get(name)
            .unwrap_or_else(|| panic!("{name} not published: {:?}", names(&p)))
    };
    assert!(get("me.count") >= 1.0);
    assert!(get("me.rss") > 0.0);
    assert!(get("me.uptime") >= 0.0);
    #[cfg(target_os = "linux")]
    {
        assert!(get("me.threads") >= 1.0);
        assert!(get("me.fds") >= 3.0);
    }
    assert_metric(&p, "nobody.count", 0.0);
    assert!(p.get("unreadable").is_none());
    let p = h.collect().await.unwrap();
    assert!(p.get("me.cpu_percent").is_some(), "{:?}", names(&p));
}
