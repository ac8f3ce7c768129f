//! `carat migrate-diamond`, run as a process on Diamond configurations
//! written after Diamond's documented format (tests/fixtures/diamond), its
//! output checked by `carat check-config` and run by `carat once`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::bin::carat;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/diamond")
        .join(name)
}

fn migrate(path: &Path) -> Output {
    carat()
        .arg("migrate-diamond")
        .arg(path)
        .output()
        .expect("run carat migrate-diamond")
}

/// Migrates `path`, which must succeed; returns the TOML, parsed and as
/// text, and standard error.
fn migrated(path: &Path) -> (toml::Table, String, String) {
    let out = migrate(path);
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    let table: toml::Table =
        toml::from_str(&stdout).unwrap_or_else(|e| panic!("not TOML: {e}\n{stdout}"));
    (table, stdout, stderr)
}

fn get<'a>(table: &'a toml::Table, path: &str) -> &'a toml::Value {
    let mut parts = path.split('.');
    let first = parts.next().unwrap();
    let mut value = table
        .get(first)
        .unwrap_or_else(|| panic!("no {path} in {table:#?}"));
    for part in parts {
        value = value
            .get(part)
            .unwrap_or_else(|| panic!("no {path} in {table:#?}"));
    }
    value
}

fn strs(items: &[&str]) -> toml::Value {
    toml::Value::Array(items.iter().map(|s| toml::Value::from(*s)).collect())
}

fn check(config: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = carat();
    c.arg("check-config").arg("-c").arg(config);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run carat check-config")
}

/// `carat once --gap <gap>` on `config`, which must succeed: its lines.
fn once(config: &Path, gap: &str) -> String {
    let out = carat()
        .args(["once", "--gap", gap, "-c"])
        .arg(config)
        .output()
        .expect("run carat once");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn write_temp(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// Standard error has a line naming `file`'s `line`, `section`, option and
/// reason.
fn assert_line(stderr: &str, needle: &str) {
    assert!(
        stderr.lines().any(|l| l.contains(needle)),
        "no line with {needle:?} in:\n{stderr}"
    );
}

#[test]
fn the_example_configuration_is_translated_and_passes_check_config() {
    let path = fixture("diamond.conf");
    let (t, text, stderr) = migrated(&path);

    assert_eq!(get(&t, "agent.hostname").as_str(), Some("web01"));
    assert_eq!(get(&t, "agent.path_prefix").as_str(), Some("servers"));
    assert_eq!(get(&t, "agent.path_suffix").as_str(), Some("diamond"));
    assert_eq!(get(&t, "agent.interval").as_integer(), Some(60));

    assert_eq!(get(&t, "collector.cpu.percore").as_bool(), Some(false));
    assert_eq!(
        get(&t, "collector.diskspace.filesystems"),
        &strs(&["ext4", "xfs", "btrfs"])
    );
    // The look-behind carat cannot compile is left out, the others kept.
    assert_eq!(
        get(&t, "collector.diskspace.exclude_filters"),
        &strs(&["^/export/home", "^/var/lib/docker/"])
    );
    // The collector's own byte_unit wins over [[default]]'s; memory takes
    // one unit (Diamond used the first).
    assert_eq!(
        get(&t, "collector.diskspace.byte_unit"),
        &strs(&["gigabyte"])
    );
    assert_eq!(get(&t, "collector.memory.byte_unit").as_str(), Some("byte"));
    assert_eq!(get(&t, "collector.memory.detailed").as_bool(), Some(true));
    assert_eq!(
        get(&t, "collector.network.byte_unit"),
        &strs(&["byte", "megabyte"])
    );
    assert_eq!(
        get(&t, "collector.network.interfaces"),
        &strs(&["eth", "bond"])
    );
    assert_eq!(get(&t, "collector.network.interval").as_integer(), Some(30));
    assert_eq!(
        get(&t, "collector.diskusage.devices").as_str(),
        Some("sd[a-z]+$|nvme[0-9]+n[0-9]+$")
    );
    assert!(t["collector"].get("loadavg").is_some());
    assert!(t["collector"].get("vmstat").is_some());
    assert!(
        t["collector"].get("sockets").is_none(),
        "disabled in Diamond"
    );

    assert_eq!(
        get(&t, "collector.haproxy.url").as_str(),
        Some("http://127.0.0.1:8404/stats;csv")
    );
    assert_eq!(
        get(&t, "collector.haproxy.username").as_str(),
        Some("stats")
    );
    assert_eq!(
        get(&t, "collector.haproxy.password").as_str(),
        Some("${CARAT_HAPROXY_PASSWORD}")
    );
    assert_eq!(
        get(&t, "collector.haproxy.ignore_servers").as_bool(),
        Some(true)
    );
    assert_eq!(
        get(&t, "collector.mongodb.hosts"),
        &strs(&["localhost:27017", "reports@db2.example.net:27018"])
    );
    assert_eq!(
        get(&t, "collector.mongodb.username").as_str(),
        Some("diamond")
    );
    assert_eq!(
        get(&t, "collector.mongodb.password").as_str(),
        Some("${CARAT_MONGODB_PASSWORD}")
    );
    assert_eq!(get(&t, "collector.mongodb.databases"), &strs(&["^orders$"]));
    assert_eq!(
        get(&t, "collector.mongodb.request_timeout").as_float(),
        Some(2.5)
    );
    assert_eq!(
        get(&t, "collector.rabbitmq.url").as_str(),
        Some("http://mq1.example.net:15672")
    );
    assert_eq!(
        get(&t, "collector.rabbitmq.username").as_str(),
        Some("monitor")
    );
    assert_eq!(
        get(&t, "collector.rabbitmq.queues"),
        &strs(&["jobs", "mail"])
    );
    assert_eq!(
        get(&t, "collector.rabbitmq.replace_dot").as_str(),
        Some("_")
    );
    assert!(get(&t, "collector.rabbitmq").get("replace_slash").is_none());

    // Only the handlers [server] lists: the pickle and StatsD sections are
    // there but not used by Diamond.
    assert_eq!(
        get(&t, "output.graphite.host").as_str(),
        Some("graphite.example.net")
    );
    assert_eq!(get(&t, "output.graphite.port").as_integer(), Some(2103));
    assert_eq!(get(&t, "output.graphite.timeout").as_integer(), Some(15));
    assert!(t["output"].get("statsd").is_none());

    for secret in ["s3cret-haproxy", "s3cret-mongo", "s3cret-rabbit"] {
        assert!(!text.contains(secret), "{secret} copied:\n{text}");
        assert!(!stderr.contains(secret), "{secret} on stderr:\n{stderr}");
    }

    // Every option not translated: file, line, section, option, reason.
    let file = path.display().to_string();
    for needle in [
        format!("{file}:22: [server] pid_file: not translated: carat writes no pid file"),
        format!("{file}:93: [collectors][[default]] instance_prefix: not translated:"),
        format!("{file}:107: [collectors][[CPUCollector]] xenfix: not translated:"),
        format!("{file}:112: [collectors][[DiskSpaceCollector]] exclude_filters: not translated: regex `(?<=/)snap`"),
        format!("{file}:161: [collectors][[RabbitMQCollector]] cluster: not translated:"),
        format!("{file}:163: [collectors][[PostfixCollector]]: not translated: carat has no PostfixCollector"),
        format!("{file}:64: [handlers][[GraphiteHandler]] batch: not translated:"),
        format!("{file}:11: [server] handlers: not translated: diamond.handler.archive.ArchiveHandler: carat has no ArchiveHandler"),
        format!("{file}:38: [handlers] keys: not translated: Python logging"),
        format!("{file}:195: [handler_rotated_file] args: not translated: Python logging"),
        format!("{file}:142: [collectors][[HAProxyCollector]] pass: note: written as password = \"${{CARAT_HAPROXY_PASSWORD}}\": set CARAT_HAPROXY_PASSWORD"),
    ] {
        assert_line(&stderr, &needle);
    }
    // A disabled collector carat lacks is not reported: Diamond did not run it.
    assert!(!stderr.contains("NginxCollector"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let config = write_temp(&dir, "carat.toml", &text);
    let env = [
        ("CARAT_HAPROXY_PASSWORD", "x"),
        ("CARAT_MONGODB_PASSWORD", "x"),
        ("CARAT_RABBITMQ_PASSWORD", "x"),
    ];
    let out = check(&config, &env);
    assert!(
        out.status.success(),
        "check-config refused the migrated configuration: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the variables the secrets are missing, and carat says which.
    let out = check(&config, &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CARAT_HAPROXY_PASSWORD"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn per_collector_and_per_handler_files_are_read() {
    let path = fixture("split/diamond.conf");
    let (t, text, stderr) = migrated(&path);

    assert_eq!(get(&t, "agent.hostname").as_str(), Some("db01"));
    assert_eq!(get(&t, "agent.path_prefix").as_str(), Some("hosts"));
    // collectors/CPUCollector.conf enables what diamond.conf disabled.
    assert_eq!(get(&t, "collector.cpu.normalize").as_bool(), Some(true));
    assert_eq!(
        get(&t, "collector.memory.byte_unit").as_str(),
        Some("kilobyte")
    );
    let groups = get(&t, "collector.process.groups").as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["name"].as_str(), Some("nginx"));
    assert_eq!(groups[0]["exe"], strs(&["^/usr/sbin/nginx$"]));
    assert_eq!(groups[1]["process_name"], strs(&["^celery", "^gunicorn"]));
    // Diamond's servers list: one named instance each, options inherited.
    assert_eq!(
        get(&t, "collector.haproxy.lb1.url").as_str(),
        Some("http://10.0.0.1:8404/haproxy?stats;csv")
    );
    assert_eq!(
        get(&t, "collector.haproxy.lb1.username").as_str(),
        Some("stats")
    );
    assert_eq!(
        get(&t, "collector.haproxy.lb1.password").as_str(),
        Some("${CARAT_HAPROXY_LB1_PASSWORD}")
    );
    assert_eq!(
        get(&t, "collector.haproxy.lb2.socket").as_str(),
        Some("/run/haproxy/lb2.sock")
    );
    assert!(t["collector"].get("nginx").is_none());
    // The pickle handler: carat's pickle protocol on Diamond's port.
    assert_eq!(get(&t, "output.graphite.protocol").as_str(), Some("pickle"));
    assert_eq!(get(&t, "output.graphite.port").as_integer(), Some(2004));
    assert_eq!(
        get(&t, "output.graphite.host").as_str(),
        Some("carbon.example.net")
    );
    // handlers/StatsdHandler.conf.
    assert_eq!(
        get(&t, "output.statsd.host").as_str(),
        Some("statsd.example.net")
    );
    assert_eq!(get(&t, "output.statsd.port").as_integer(), Some(8125));

    let dir = path.parent().unwrap().display().to_string();
    for needle in [
        format!("{dir}/collectors/XenCollector.conf:1: [collectors][[XenCollector]]: not translated: carat has no XenCollector"),
        format!("{dir}/collectors/ProcessResourcesCollector.conf:2: [collectors][[ProcessResourcesCollector]] unit: not translated:"),
        format!("{dir}/handlers/StatsdHandler.conf:4: [handlers][[StatsdHandler]] batch: not translated:"),
        format!("{dir}/diamond.conf:8: [server] pid_file: not translated:"),
    ] {
        assert_line(&stderr, &needle);
    }

    let tmp = tempfile::tempdir().unwrap();
    let config = write_temp(&tmp, "carat.toml", &text);
    let out = check(&config, &[("CARAT_HAPROXY_LB1_PASSWORD", "x")]);
    assert!(
        out.status.success(),
        "check-config refused the migrated configuration: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn once_on_the_migrated_configuration_publishes_diamonds_paths() {
    let (t, text, stderr) = migrated(&fixture("system.conf"));
    assert!(t.get("output").is_none());
    assert_line(
        &stderr,
        "[server] handlers: note: no handler was translated",
    );
    assert_line(
        &stderr,
        "[collectors][[default]] interval: note: not set: written as Diamond's default, 300 s",
    );
    assert_eq!(get(&t, "agent.interval").as_integer(), Some(300));

    let dir = tempfile::tempdir().unwrap();
    let config = write_temp(&dir, "carat.toml", &text);
    let lines = once(&config, "0.5");
    let paths: Vec<&str> = lines
        .lines()
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    // Diamond's path: <path_prefix>.<hostname>.<path_suffix>.<collector path>.<name>.
    for path in [
        "hosts.web01.diamond.cpu.total.user",
        "hosts.web01.diamond.cpu.total.idle",
        "hosts.web01.diamond.memory.MemFree",
        "hosts.web01.diamond.loadavg.01",
    ] {
        assert!(paths.contains(&path), "{path} missing from:\n{lines}");
    }
    for path in &paths {
        assert!(
            path.starts_with("hosts.web01.diamond."),
            "{path} is not under Diamond's prefix:\n{lines}"
        );
        // percore = False, and VMStat disabled.
        assert!(!path.contains(".cpu.cpu"), "per-core metric {path}");
        assert!(!path.contains(".vmstat."), "disabled collector {path}");
    }
}

#[test]
fn an_unreadable_or_broken_configuration_is_an_error_naming_the_file_and_line() {
    let out = migrate(Path::new("/nonexistent/diamond.conf"));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/diamond.conf: cannot read it"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    let dir = tempfile::tempdir().unwrap();
    let bad = write_temp(
        &dir,
        "bad.conf",
        "[server]\nhandlers = a\nnot a key value line\n",
    );
    let out = migrate(&bad);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:3: not a `key = value` line", bad.display())),
        "{stderr}"
    );

    // An error in a per-collector file names that file.
    std::fs::create_dir(dir.path().join("collectors")).unwrap();
    write_temp(
        &dir,
        "collectors/CPUCollector.conf",
        "enabled = True\n[[x]\n",
    );
    let main = write_temp(
        &dir,
        "main.conf",
        "[server]\ncollectors_config_path = collectors\n",
    );
    let out = migrate(&main);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("collectors/CPUCollector.conf:2: section header opens 2 brackets"),
        "{stderr}"
    );

    // Not a Diamond configuration at all.
    let other = write_temp(&dir, "other.conf", "[collectors]\n[[CPUCollector]]\n");
    let out = migrate(&other);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no [server] section"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn user_scripts_become_exec_instances_at_diamonds_paths() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let scripts = dir.path().join("user_scripts");
    std::fs::create_dir(&scripts).unwrap();
    let script = |name: &str, body: &str, mode: u32| {
        let path = scripts.join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    script("queue.sh", "#!/bin/sh\necho 'queue.depth 42'\n", 0o755);
    script("mail", "#!/bin/sh\necho 'mail.spooled 7'\n", 0o755);
    script("README", "not a script\n", 0o644);
    std::fs::create_dir(scripts.join("lib")).unwrap();
    let conf = write_temp(
        &dir,
        "diamond.conf",
        &format!(
            "[server]\nhandlers = diamond.handler.graphite.GraphiteHandler\n\n\
             [handlers]\n[[GraphiteHandler]]\nhost = 127.0.0.1\nport = 2003\n\n\
             [collectors]\n[[default]]\nhostname = web01\npath_prefix = hosts\n\n\
             [[UserScriptsCollector]]\nenabled = True\nscripts_path = {}\nfloatprecision = 2\n",
            scripts.display()
        ),
    );
    let (t, text, stderr) = migrated(&conf);
    assert_eq!(get(&t, "collector.exec.path").as_str(), Some("."));
    let queue = scripts.join("queue.sh").display().to_string();
    assert_eq!(
        get(&t, "collector.exec.queue_sh.command"),
        &strs(&[queue.as_str()])
    );
    assert!(t["collector"]["exec"].get("README").is_none(), "{text}");
    assert!(t["collector"]["exec"].get("lib").is_none(), "{text}");
    assert!(stderr.contains("README: not executable"), "{stderr}");
    assert!(stderr.contains("lib: not a file"), "{stderr}");
    assert!(
        stderr.contains("2 scripts, each an instance of carat's exec collector"),
        "{stderr}"
    );
    assert!(stderr.contains("floatprecision"), "{stderr}");

    let config = write_temp(&dir, "carat.toml", &text);
    let out = check(&config, &[]);
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = once(&config, "0.2");
    // Diamond's paths: <path_prefix>.<hostname>.<what the script printed>.
    for path in ["hosts.web01.queue.depth 42 ", "hosts.web01.mail.spooled 7 "] {
        assert!(lines.contains(path), "{path} missing from:\n{lines}");
    }
}
