//! Options that are tables: a key of `[collector.<kind>]` that the kind
//! declares is an option (a map, a list of tables), any other table is a
//! named instance, and a table that is neither is an error naming it.

mod support;

use std::path::Path;
use std::time::Duration;

use carat::config::load_str;

/// The lines `carat once` would print for `collectors` (TOML), without the
/// `servers.h.` prefix and the timestamp.
async fn published(collectors: &str) -> Vec<String> {
    let config = support::config(&format!(
        "[agent]\nhostname = \"h\"\nself_metrics = false\n{collectors}\n[output.stdout]\n"
    ));
    let (lines, errors) = carat::Agent::new(config)
        .collect_twice(Duration::ZERO)
        .await;
    assert!(errors.is_empty(), "{errors:?}");
    lines
        .iter()
        .map(|l| {
            let (path, rest) = l.split_once(' ').unwrap();
            let value = rest.split_once(' ').unwrap().0;
            format!("{} {value}", path.strip_prefix("servers.h.").unwrap())
        })
        .collect()
}

fn error_of(toml: &str) -> carat::ConfigError {
    let text = format!("{toml}\n[output.stdout]\n");
    match load_str(&text, Path::new("t.toml"), &support::collectors::registry()) {
        Ok(c) => panic!("should be refused, got {:?}", c.collectors),
        Err(e) => e,
    }
}

/// A list of tables, `queries`, of the test collector `tabled`.
const QUERIES: &str = r#"
[[collector.tabled.queries]]
name = "orders"
value = 3

[[collector.tabled.queries]]
name = "users"
value = 5
"#;

#[tokio::test]
async fn a_map_option_and_a_list_of_tables_option() {
    let inline = published(&format!(
        "[collector.tabled]\nscale = 2\nlabels = {{ env = \"prod\", team = \"db\" }}\n{QUERIES}"
    ))
    .await;
    assert_eq!(
        inline,
        [
            "tabled.labels.env.prod 1",
            "tabled.labels.team.db 1",
            "tabled.queries.orders 6",
            "tabled.queries.users 10",
        ]
    );
    // The map as a table of its own: still the option, not an instance.
    let header = published(&format!(
        "[collector.tabled]\nscale = 2\n[collector.tabled.labels]\nenv = \"prod\"\nteam = \"db\"\n{QUERIES}"
    ))
    .await;
    assert_eq!(header, inline);
}

#[tokio::test]
async fn named_instances_beside_table_options() {
    let collectors = r#"
[collector.tabled]
scale = 1
labels = { env = "prod" }
[[collector.tabled.queries]]
name = "orders"
value = 3

[collector.tabled.edge]
scale = 10

[collector.tabled.core]
[collector.tabled.core.labels]
site = "par"
"#;
    let config = support::config(&format!("{collectors}\n[output.stdout]\n"));
    let names: Vec<_> = config.collectors.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["tabled.core", "tabled.edge"]);
    assert_eq!(
        published(collectors).await,
        [
            // An instance's own table option replaces the default whole.
            "tabled.core.labels.site.par 1",
            "tabled.core.queries.orders 3",
            // The kind table's options, tables included, are defaults.
            "tabled.edge.labels.env.prod 1",
            "tabled.edge.queries.orders 30",
        ]
    );
}

#[test]
fn a_table_that_is_neither_an_option_nor_an_instance() {
    // A misspelt map option: none of its keys is an option of the kind.
    let e = error_of("[collector.tabled]\nscale = 1\n[collector.tabled.lables]\nenv = \"prod\"\n");
    assert_eq!(e.position.map(|p| p.0), Some(3), "{e}");
    assert_eq!(e.key.as_deref(), Some("collector.tabled.lables"), "{e}");
    assert!(
        e.message
            .contains("`lables` is neither an option of collector kind `tabled`")
            && e.message.contains("labels, queries, scale")
            && e.message.contains("none of its keys (env) is an option"),
        "{e}"
    );
    // Written inline, the same.
    let e = error_of("[collector.tabled]\nlables = { env = \"prod\" }\n");
    assert_eq!(e.key.as_deref(), Some("collector.tabled.lables"), "{e}");
    assert!(e.message.contains("neither an option"), "{e}");

    // A name that cannot be an instance's.
    let e = error_of("[collector.tabled.\"edge.1\"]\nscale = 1\n");
    assert_eq!(e.key.as_deref(), Some("collector.tabled.edge.1"), "{e}");
    assert!(
        e.message.contains("not a valid name for an instance")
            && e.message.contains("letters, digits, `_` and `-`"),
        "{e}"
    );

    // A table named after an option that is not a table is that option.
    let e = error_of("[collector.tabled.scale]\nvalue = 1\n");
    assert_eq!(e.key.as_deref(), Some("collector.tabled.scale"), "{e}");
    assert!(
        e.message.contains("invalid type: map")
            && e.message
                .contains("not a named instance: name the instance differently"),
        "{e}"
    );

    // Outputs follow the same rule.
    let e = error_of("[output.graphite.\"dr.1\"]\nhost = \"x\"\n");
    assert!(
        e.message.contains("not a valid name for an instance"),
        "{e}"
    );
}

#[test]
fn the_builtin_kinds_declare_their_options() {
    let registry = carat::Registry::builtin();
    let of = |kind: &str| registry.get(kind).unwrap().options;
    assert!(of("haproxy").contains(&"url") && of("haproxy").contains(&"proxy_include"));
    assert_eq!(of("process"), ["groups", "source"]);
    assert!(of("cpu").contains(&"percore"));
    // No kind has an option of the name of one every collector has: the
    // agent would take it for its own.
    for kind in registry.kinds() {
        for option in kind.options {
            assert!(
                !carat::config::COMMON_COLLECTOR_KEYS.contains(option),
                "{}: {option}",
                kind.kind
            );
        }
    }
}
