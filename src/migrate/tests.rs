//! The translation, from Diamond text to carat TOML, without the binary.

use super::*;

fn run(text: &str) -> Migration {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("diamond.conf");
    std::fs::write(&path, text).expect("write");
    migrate(&path, &Registry::builtin()).unwrap_or_else(|e| panic!("{e}"))
}

fn parsed(m: &Migration) -> toml::Table {
    toml::from_str(&m.toml).unwrap_or_else(|e| panic!("{e}\n{}", m.toml))
}

#[test]
fn a_literal_dollar_brace_is_escaped_for_carat() {
    let m = run("[server]\n[collectors]\n[[default]]\nhostname = a${b}\n");
    assert!(m.toml.contains(r#"hostname = "a$${b}""#), "{}", m.toml);
    // What carat reads after substitution is Diamond's value.
    let t = parsed(&m);
    assert_eq!(t["agent"]["hostname"].as_str(), Some("a$${b}"));
}

#[test]
fn booleans_in_every_spelling_and_bad_ones_reported() {
    for (word, value) in [
        ("True", true),
        ("yes", true),
        ("on", true),
        ("1", true),
        ("no", false),
        ("False", false),
        ("off", false),
    ] {
        let m = run(&format!(
            "[server]\n[collectors]\n[[CPUCollector]]\nenabled = True\npercore = {word}\n"
        ));
        let t = parsed(&m);
        assert_eq!(
            t["collector"]["cpu"]["percore"].as_bool(),
            Some(value),
            "{word}"
        );
    }
    let m = run("[server]\n[collectors]\n[[CPUCollector]]\nenabled = True\npercore = maybe\n");
    assert!(
        m.notes
            .iter()
            .any(|n| n.option.as_deref() == Some("percore")
                && n.kind == NoteKind::NotTranslated
                && n.message.contains("not a boolean")),
        "{:?}",
        m.notes
    );
}

#[test]
fn default_enabled_runs_the_named_collectors_and_says_so() {
    let m = run("[server]\n[collectors]\n[[default]]\nenabled = True\n[[MemoryCollector]]\n[[CPUCollector]]\nenabled = False\n");
    let t = parsed(&m);
    assert!(t["collector"].get("memory").is_some());
    assert!(t["collector"].get("cpu").is_none());
    assert!(m
        .notes
        .iter()
        .any(|n| n.option.as_deref() == Some("enabled") && n.kind == NoteKind::Note));
}

#[test]
fn two_graphite_handlers_are_named_instances() {
    let m = run("[server]\nhandlers = diamond.handler.graphite.GraphiteHandler, diamond.handler.graphitepickle.GraphitePickleHandler\n[handlers]\n[[default]]\ntimeout = 3\n[[GraphiteHandler]]\nproto = udp\n");
    let t = parsed(&m);
    let graphite = &t["output"]["graphite"];
    assert_eq!(graphite["graphite"]["protocol"].as_str(), Some("udp"));
    assert_eq!(graphite["graphite"]["timeout"].as_integer(), Some(3));
    assert_eq!(graphite["pickle"]["protocol"].as_str(), Some("pickle"));
    assert_eq!(graphite["pickle"]["port"].as_integer(), Some(2004));
    assert_eq!(m.outputs, 2);
}

#[test]
fn a_collector_prefix_different_from_the_agents_is_reported() {
    let m = run("[server]\n[collectors]\n[[default]]\npath_prefix = a\n[[CPUCollector]]\nenabled = True\npath_prefix = b\npath = processor\n");
    let t = parsed(&m);
    assert_eq!(t["collector"]["cpu"]["path"].as_str(), Some("processor"));
    let note = m
        .notes
        .iter()
        .find(|n| n.option.as_deref() == Some("path_prefix"))
        .expect("a note");
    assert_eq!(note.kind, NoteKind::NotTranslated);
    assert_eq!(note.origin.line, 7);
    assert_eq!(note.section, "[collectors][[CPUCollector]]");
}

#[test]
fn shell_hostname_is_not_run() {
    let m =
        run("[server]\n[collectors]\n[[default]]\nhostname_method = shell\nhostname = rm -rf /\n");
    let t = parsed(&m);
    assert!(t["agent"].get("hostname").is_none());
    assert!(t["agent"].get("hostname_method").is_none());
    assert!(m.notes.iter().any(
        |n| n.option.as_deref() == Some("hostname_method") && n.kind == NoteKind::NotTranslated
    ));
}

#[test]
fn rabbitmq_ignored_queues_keep_diamonds_anchoring() {
    let m = run("[server]\n[collectors]\n[[RabbitMQCollector]]\nenabled = True\nqueues_ignored = tmp ^amq\\.\n");
    let t = parsed(&m);
    let excluded: Vec<_> = t["collector"]["rabbitmq"]["queues_exclude"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(excluded, ["^(?:tmp)", "^amq\\."]);
    assert_eq!(
        t["collector"]["rabbitmq"]["url"].as_str(),
        Some("http://localhost:55672")
    );
}
