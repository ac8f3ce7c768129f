//! Configuration problems are reported with the file, the line and the key,
//! and good configurations mean what they say.

mod support;

use std::path::{Path, PathBuf};

use carat::config::{load_file, OutputSettings};
use carat::ConfigError;

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn error_of(path: &Path) -> ConfigError {
    match load_file(path, &support::collectors::registry()) {
        Ok(_) => panic!("{} should be rejected", path.display()),
        Err(e) => e,
    }
}

/// Asserts the error is at `line` of `file`, about `key`, and mentions `words`.
fn assert_error(e: &ConfigError, file: &Path, line: usize, key: &str, words: &str) {
    assert_eq!(e.file, file, "{e}");
    assert_eq!(e.position.map(|p| p.0), Some(line), "{e}");
    assert_eq!(e.key.as_deref(), Some(key), "{e}");
    assert!(
        e.message.contains(words),
        "{e}: expected it to mention {words:?}"
    );
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("{}:{line}:", file.display())),
        "{shown}"
    );
    assert!(shown.contains(key), "{shown}");
}

const OUTPUT: &str = "\n[output.stdout]\n";

#[test]
fn unknown_collector_option() {
    let f = Files::new();
    let p = f.write(
        "c.toml",
        &format!("[collector.cpu]\npercore = true\npercor = false\n{OUTPUT}"),
    );
    let e = error_of(&p);
    assert_error(&e, &p, 3, "collector.cpu.percor", "unknown field");
    assert!(
        e.message.contains("interval"),
        "the hint lists the common options: {e}"
    );
}

#[test]
fn wrong_type_for_a_collector_option() {
    let f = Files::new();
    let p = f.write(
        "c.toml",
        &format!("\n[collector.cpu]\npercore = \"yes\"\n{OUTPUT}"),
    );
    assert_error(
        &error_of(&p),
        &p,
        3,
        "collector.cpu.percore",
        "invalid type",
    );
}

#[test]
fn unknown_collector_kind() {
    let f = Files::new();
    let p = f.write("c.toml", &format!("[collector.cpuu]\n{OUTPUT}"));
    assert_error(
        &error_of(&p),
        &p,
        1,
        "collector.cpuu",
        "unknown collector kind",
    );
}

#[test]
fn unknown_agent_key_and_bad_interval() {
    let f = Files::new();
    let p = f.write(
        "a.toml",
        &format!("[agent]\npath_prefix = \"x\"\nintervall = 5\n{OUTPUT}"),
    );
    assert_error(&error_of(&p), &p, 3, "agent.intervall", "unknown field");
    let p = f.write("b.toml", &format!("[agent]\ninterval = -5\n{OUTPUT}"));
    assert_error(
        &error_of(&p),
        &p,
        2,
        "agent.interval",
        "not a valid number of seconds",
    );
    let p = f.write(
        "c.toml",
        &format!("[agent]\nhostname_method = \"fqdn_reverse\"\n{OUTPUT}"),
    );
    assert_error(
        &error_of(&p),
        &p,
        2,
        "agent.hostname_method",
        "fqdn_reverse",
    );
}

#[test]
fn invalid_regex_in_a_common_option() {
    let f = Files::new();
    let p = f.write(
        "c.toml",
        &format!("[collector.memory]\nmetrics_blacklist = [\"ok\", \"(unclosed\"]\n{OUTPUT}"),
    );
    assert_error(
        &error_of(&p),
        &p,
        2,
        "collector.memory.metrics_blacklist",
        "invalid regex",
    );
}

#[test]
fn durations_may_be_written_with_units() {
    let f = Files::new();
    let p = f.write(
        "d.toml",
        "[agent]\n\
         interval = \"10s\"\n\
         splay = \"1m30s\"\n\
         shutdown_timeout = \"2.5s\"\n\
         [collector.memory]\n\
         interval = \"1h 30m\"\n\
         timeout = \"500ms\"\n\
         splay = 2\n\
         [collector.cpu]\n\
         interval = \"20\"\n\
         [output.graphite]\n\
         timeout = \"250ms\"\n\
         reconnect_min = \"0.5s\"\n\
         reconnect_max = \"1m\"\n",
    );
    let c = load_file(&p, &support::collectors::registry()).unwrap();
    let secs = std::time::Duration::from_secs;
    let ms = std::time::Duration::from_millis;
    assert_eq!(c.agent.interval, secs(10));
    assert_eq!(c.agent.splay, secs(90));
    assert_eq!(c.agent.shutdown_timeout, ms(2_500));
    let by = |n: &str| c.collectors.iter().find(|c| c.name == n).unwrap();
    assert_eq!(by("memory").common.interval, Some(secs(5_400)));
    assert_eq!(by("memory").common.timeout, Some(ms(500)));
    assert_eq!(by("memory").common.splay, Some(secs(2)));
    // A string holding only a number is seconds, as a number is.
    assert_eq!(by("cpu").common.interval, Some(secs(20)));
    let OutputSettings::Graphite(g) = &c.outputs[0].settings else {
        panic!("{:?}", c.outputs);
    };
    assert_eq!(g.timeout, ms(250));
    assert_eq!((g.reconnect_min, g.reconnect_max), (ms(500), secs(60)));
}

#[test]
fn a_bad_duration_names_the_file_line_key_and_the_accepted_forms() {
    let f = Files::new();
    for (i, (toml, line, key, words)) in [
        (
            "[agent]\ninterval = \"10 parsecs\"\n",
            2,
            "agent.interval",
            "\"10 parsecs\" is not a duration (unknown unit \"parsecs\")",
        ),
        (
            "[collector.memory]\n\ntimeout = \"-5s\"\n",
            3,
            "collector.memory.timeout",
            "\"-5s\" is not a duration (a duration cannot be negative)",
        ),
        (
            "[collector.cpu]\ninterval = \"1m30\"\n",
            2,
            "collector.cpu.interval",
            "\"1m30\" is not a duration (\"30\" has no unit)",
        ),
        // Well written, but outside the range: the range is named.
        (
            "[agent]\ninterval = \"1ms\"\n",
            2,
            "agent.interval",
            "\"1ms\" (0.001 s) is not a valid duration here: expected 0.01 to 86400 seconds",
        ),
        (
            "[output.graphite]\nreconnect_max = \"2h\"\n",
            2,
            "output.graphite.reconnect_max",
            "\"2h\" (7200 s) is not a valid duration here: expected 0.01 to 3600 seconds",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let output = if toml.starts_with("[output") {
            ""
        } else {
            OUTPUT
        };
        let p = f.write(&format!("d{i}.toml"), &format!("{toml}{output}"));
        let e = error_of(&p);
        assert_error(&e, &p, line, key, words);
        if !words.contains("expected 0.01") {
            assert!(
                e.message.ends_with(
                    "expected a number of seconds (10, 0.5) or a string of numbers with units \
                     (\"10s\", \"500ms\", \"1m\", \"1h30m\", \"2.5s\"; units ns, us, ms, s, m, h, d)"
                ),
                "{e}"
            );
        }
    }
}

#[test]
fn an_error_in_a_list_of_tables_names_the_entry() {
    let f = Files::new();
    let groups = "[collector.process]\n\
                  [[collector.process.groups]]\nname = \"ok\"\nexe = \"^/x$\"\n\
                  [[collector.process.groups]]\nname = \"celery\"\n";
    for (i, (bad, key, words)) in [
        (
            "cmdline = \"celery(worker\"",
            "collector.process.groups.1.cmdline",
            "invalid regex \"celery(worker\": unclosed group",
        ),
        (
            "selfmon = \"yes\"",
            "collector.process.groups.1.selfmon",
            "invalid type",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let p = f.write(&format!("g{i}.toml"), &format!("{groups}{bad}\n{OUTPUT}"));
        assert_error(&error_of(&p), &p, 7, key, words);
    }
}

#[test]
fn output_problems() {
    let f = Files::new();
    let p = f.write(
        "o.toml",
        "[output.graphite]\nhost = \"carbon\"\nport = 99999\n",
    );
    assert_error(
        &error_of(&p),
        &p,
        3,
        "output.graphite.port",
        "invalid value",
    );
    let p = f.write("p.toml", "[output.kafka]\nbrokers = []\n");
    assert_error(&error_of(&p), &p, 1, "output.kafka", "unknown output kind");
    let p = f.write("q.toml", "[collector.cpu]\n");
    let e = error_of(&p);
    assert!(e.message.contains("no output"), "{e}");
}

#[test]
fn toml_syntax_error() {
    let f = Files::new();
    let p = f.write(
        "s.toml",
        "[agent]\ninterval = 10\nhostname = \"unterminated\n",
    );
    let e = error_of(&p);
    assert_eq!(e.position.map(|p| p.0), Some(3), "{e}");
    assert!(e.to_string().starts_with(&format!("{}:3:", p.display())));
}

#[test]
fn unset_environment_variable() {
    let f = Files::new();
    let p = f.write(
        "e.toml",
        "[output.graphite]\nhost = \"${CARAT_TEST_SURELY_UNSET_VAR}\"\n",
    );
    assert_error(
        &error_of(&p),
        &p,
        2,
        "output.graphite.host",
        "CARAT_TEST_SURELY_UNSET_VAR",
    );
}

#[test]
fn errors_in_config_dir_name_that_file() {
    let f = Files::new();
    let main = f.write(
        "carat.toml",
        &format!("[agent]\nconfig_dir = \"conf.d\"\n{OUTPUT}"),
    );
    f.write("conf.d/10-ok.toml", "[collector.memory]\n");
    let bad = f.write(
        "conf.d/20-bad.toml",
        "# extra\n[collector.loadavg]\ninterval = \"often\"\n",
    );
    assert_error(
        &error_of(&main),
        &bad,
        3,
        "collector.loadavg.interval",
        "\"often\" is not a duration",
    );

    std::fs::remove_file(&bad).unwrap();
    let dup = f.write(
        "conf.d/30-dup.toml",
        "[collector.memory]\ndetailed = true\n",
    );
    let e = error_of(&main);
    assert_eq!(e.file, dup);
    assert!(
        e.message.contains("already defined") && e.message.contains("10-ok.toml"),
        "{e}"
    );

    std::fs::remove_file(&dup).unwrap();
    let agent = f.write("conf.d/40-agent.toml", "[agent]\ninterval = 1\n");
    assert_error(
        &error_of(&main),
        &agent,
        1,
        "agent",
        "main configuration file",
    );
}

#[test]
fn a_good_configuration_means_what_it_says() {
    let f = Files::new();
    std::env::set_var("CARAT_TEST_CARBON_HOST", "carbon.example");
    let main = f.write(
        "carat.toml",
        r#"
[agent]
hostname = "web01"
path_suffix = "dc1"
interval = 30
config_dir = "conf.d"

[collector.cpu]
percore = false
interval = 5

[collector.sequence]
interval = 60
[collector.sequence.a]
key = "a"
[collector.sequence.b]
key = "b"
interval = 2
path = "custom.b"

[output.graphite.main]
host = "${CARAT_TEST_CARBON_HOST}"
[output.graphite.dr]
host = "${CARAT_TEST_UNSET_DR:-dr.example}"
port = 2103
"#,
    );
    f.write(
        "conf.d/memory.toml",
        "[collector.memory]\nenabled = false\n",
    );
    let c = load_file(&main, &support::collectors::registry()).unwrap();
    assert_eq!(c.files.len(), 2);
    let names: Vec<_> = c.collectors.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["cpu", "memory", "sequence.a", "sequence.b"]);
    let by = |n: &str| c.collectors.iter().find(|c| c.name == n).unwrap();
    assert_eq!(
        by("cpu").common.interval,
        Some(std::time::Duration::from_secs(5))
    );
    assert!(!by("memory").common.enabled);
    // Shared keys of the kind table are defaults for its instances.
    assert_eq!(
        by("sequence.a").common.interval,
        Some(std::time::Duration::from_secs(60))
    );
    assert_eq!(
        by("sequence.b").common.interval,
        Some(std::time::Duration::from_secs(2))
    );
    assert_eq!(by("sequence.a").path(), "sequence.a");
    assert_eq!(by("sequence.b").path(), "custom.b");
    assert_eq!(by("cpu").path(), "cpu");
    assert_eq!(by("cpu").origin.line, 8, "the line of [collector.cpu]");
    let hosts: Vec<_> = c
        .outputs
        .iter()
        .map(|o| match &o.settings {
            OutputSettings::Graphite(g) => (o.name.clone(), g.host.clone(), g.port),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        hosts,
        [
            ("graphite.dr".to_owned(), "dr.example".to_owned(), 2103),
            (
                "graphite.main".to_owned(),
                "carbon.example".to_owned(),
                2003
            )
        ]
    );
}

#[test]
fn the_shipped_sample_configuration_is_valid() {
    let c = carat::config::load_str(
        carat::defaults::SAMPLE,
        Path::new("conf/carat.toml"),
        &carat::Registry::builtin(),
    )
    .unwrap();
    assert!(c.collectors.len() >= 3);
    let builtin = carat::config::load_str(
        carat::defaults::BUILTIN,
        Path::new("<built-in>"),
        &carat::Registry::builtin(),
    )
    .unwrap();
    assert!(matches!(
        builtin.outputs[0].settings,
        OutputSettings::Stdout(_)
    ));
}

#[test]
fn options_a_collector_cannot_work_with_are_refused_at_their_line() {
    let f = Files::new();
    // A shared key of the kind table: reported at its line, for the instance.
    let p = f.write(
        "shared.toml",
        &format!(
            "[collector.haproxy]\nrequest_timeout = 0\n[collector.haproxy.edge]\nurl = \"http://lb/stats\"\n{OUTPUT}"
        ),
    );
    assert_error(
        &error_of(&p),
        &p,
        2,
        "collector.haproxy.edge.request_timeout",
        "more than 0",
    );
    // A disabled instance is checked too: it is one edit away from running.
    let p = f.write(
        "disabled.toml",
        &format!("[collector.memory]\nenabled = false\nbyte_unit = \"parsec\"\n{OUTPUT}"),
    );
    assert_error(
        &error_of(&p),
        &p,
        3,
        "collector.memory.byte_unit",
        "\"parsec\"",
    );
    // In a config_dir file, the error names that file.
    let main = f.write(
        "carat.toml",
        &format!("[agent]\nconfig_dir = \"conf.d\"\n{OUTPUT}"),
    );
    let extra = f.write(
        "conf.d/10-net.toml",
        "\n\n[collector.network]\ninterfaces = \"eth(\"\n",
    );
    assert_error(
        &error_of(&main),
        &extra,
        4,
        "collector.network.interfaces",
        "invalid regex \"eth(\"",
    );
}

#[test]
fn max_metrics_is_a_common_option() {
    let f = Files::new();
    let p = f.write(
        "m.toml",
        &format!("[collector.memory]\nmax_metrics = 50\n[collector.cpu]\n{OUTPUT}"),
    );
    let c = load_file(&p, &support::collectors::registry()).unwrap();
    let by = |n: &str| c.collectors.iter().find(|c| c.name == n).unwrap();
    assert_eq!(by("memory").common.max_metrics, 50);
    assert_eq!(
        by("cpu").common.max_metrics,
        carat_collector::Batch::DEFAULT_MAX_SAMPLES
    );
}
