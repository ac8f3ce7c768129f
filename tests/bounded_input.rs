//! Input from outside is bounded, run with the real binary over a `/proc`
//! it is pointed at (`proc_root`): a file larger than a collector reads, a
//! run reporting more samples than `max_metrics`, and names longer than a
//! file name may be.

mod support;

use std::io::Read;
use std::path::Path;
use std::process::Stdio;

use support::bin::carat;

/// What one `carat once` printed, how it ended and its peak memory.
struct Once {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    max_rss_kib: i64,
}

/// Runs `carat once --gap 0.1 -c <config>` and waits for it with `wait4`,
/// which gives the peak resident memory of that one process.
#[expect(
    clippy::zombie_processes,
    reason = "the child is reaped by wait4, which std's Child does not offer"
)]
fn once(config: &Path) -> Once {
    let mut child = carat()
        .args(["once", "--gap", "0.1", "-c"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read_all = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            r.read_to_string(&mut s).unwrap();
            s
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both pointers are to live locals.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4");
    Once {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        max_rss_kib: usage.ru_maxrss,
    }
}

/// A configuration running `collector` (a TOML table body included) over
/// the proc root `proc`.
fn config(dir: &Path, proc: &Path, collector: &str) -> std::path::PathBuf {
    let path = dir.join("carat.toml");
    std::fs::write(
        &path,
        format!(
            "[agent]\nhostname = \"h\"\nproc_root = \"{}\"\nself_metrics = false\n\n{collector}\n\n[output.stdout]\n",
            proc.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_proc_file_over_16_mib_is_refused_naming_it_without_taking_memory() {
    let dir = tempfile::tempdir().unwrap();
    let proc = dir.path().join("proc");
    std::fs::create_dir(&proc).unwrap();
    // 20 MiB of well-formed diskstats lines, one device each: a parser that
    // read it all would hold hundreds of thousands of devices.
    let mut text = String::with_capacity(21 << 20);
    let mut i = 0u32;
    while text.len() < 20 << 20 {
        text.push_str(&format!(
            "   8 {i:7} sd{i:07} 1 2 3 4 5 6 7 8 0 10 11 12 13 14 15 16 17\n"
        ));
        i += 1;
    }
    std::fs::write(proc.join("diskstats"), &text).unwrap();
    let out = once(&config(dir.path(), &proc, "[collector.diskusage]"));

    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let expected = format!(
        "carat: collector diskusage: {} is larger than 16 MiB, the most read from one source",
        proc.join("diskstats").display()
    );
    assert_eq!(
        out.stderr.matches(&expected).count(),
        1,
        "the error is reported, once: {}",
        out.stderr
    );
    assert!(
        out.stdout.is_empty(),
        "nothing of it was used: {}",
        out.stdout
    );
    // The read stops at the bound: a few tens of MiB at most, where the
    // whole file parsed took gigabytes.
    assert!(
        out.max_rss_kib < 128 * 1024,
        "peak RSS {} KiB",
        out.max_rss_kib
    );
}

/// A proc root under `dir` whose `net/dev` lists the interfaces `names`.
fn proc_with_interfaces(dir: &Path, names: &[String]) -> std::path::PathBuf {
    let proc = dir.join("proc");
    std::fs::create_dir_all(proc.join("net")).unwrap();
    std::fs::write(proc.join("net/dev"), net_dev(names)).unwrap();
    proc
}

/// `/proc/net/dev` with the given interfaces, each with small counters.
fn net_dev(names: &[String]) -> String {
    let mut text = String::from(
        "Inter-|   Receive                                                |  Transmit\n \
         face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n",
    );
    for name in names {
        text.push_str(&format!(
            "{name}: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n"
        ));
    }
    text
}

#[test]
fn a_run_over_max_metrics_fails_and_keeps_only_that_many() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..50).map(|i| format!("x{i}")).collect();
    let proc = proc_with_interfaces(dir.path(), &names);

    let limited = once(&config(
        dir.path(),
        &proc,
        "[collector.network]\ninterfaces = [\"x\"]\nmax_metrics = 100",
    ));
    assert_eq!(limited.code, Some(1), "{}", limited.stderr);
    let error = "carat: collector network: the run reported more than 100 samples, the most one \
                 run may add (the collector's max_metrics option)";
    assert_eq!(
        limited.stderr.matches(error).count(),
        1,
        "{}",
        limited.stderr
    );
    let published = limited.stdout.lines().count();
    assert!(
        (1..=100).contains(&published),
        "{published} lines published"
    );

    // The same with room: every interface, no error.
    let roomy = once(&config(
        dir.path(),
        &proc,
        "[collector.network]\ninterfaces = [\"x\"]\nmax_metrics = 10000",
    ));
    assert_eq!(roomy.code, Some(0), "{}", roomy.stderr);
    assert!(roomy.stdout.lines().count() > 100 * 2);
    for name in &names {
        assert!(
            roomy
                .stdout
                .contains(&format!("servers.h.network.{name}.rx_byte ")),
            "{name} missing"
        );
    }
}

/// 64-bit FNV-1a, written out here so that the test pins the published
/// names independently of the code under test.
fn fnv1a_64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x100_0000_01b3);
    }
    hash
}

#[test]
fn long_interface_names_are_cut_to_200_characters_and_stay_distinct() {
    let dir = tempfile::tempdir().unwrap();
    let long = |last: char| format!("x{}{last}", "y".repeat(298));
    let names = [long('1'), long('2'), "x0".to_owned()];
    let proc = proc_with_interfaces(dir.path(), &names);

    let out = once(&config(
        dir.path(),
        &proc,
        "[collector.network]\ninterfaces = [\"x\"]",
    ));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let components: std::collections::BTreeSet<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split(' ').next()?.split('.').nth(3))
        .collect();
    for name in &names[..2] {
        let cut = format!("{}_{:016x}", &name[..183], fnv1a_64(name.as_bytes()));
        assert_eq!(cut.len(), 200);
        assert!(
            components.contains(cut.as_str()),
            "{cut} not among {components:?}"
        );
    }
    assert!(components.contains("x0"), "short names are unchanged");
    assert_eq!(components.len(), 3, "{components:?}");
    for line in out.stdout.lines() {
        let path = line.split(' ').next().unwrap_or_default();
        assert!(path.split('.').all(|c| c.len() <= 200), "{line}");
    }
}
