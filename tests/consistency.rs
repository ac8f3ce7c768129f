//! One source of truth for what exists: every collector kind this build
//! registers, and every one of its options, is in its crate's README, in
//! the sample configuration (`carat sample-config`, `conf/carat.toml`) and in
//! `carat list`; the shipped `conf/carat.toml` is the assembled sample; every
//! line of the sample works once uncommented, and shows the defaults.
//!
//! The option names are the kinds' own ([`carat_collector::Collector::options`],
//! read from their `Config`), so a new option or a new kind fails here until
//! it is documented everywhere.

mod support;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use carat::registry::CollectorKind;
use carat::Registry;
use carat_collector::{sample, Collector};
use serde::de::DeserializeOwned;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `collectors/<crate>` of every collector crate, with its `sample.toml`.
fn crates() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join("collectors")).unwrap() {
        let dir = entry.unwrap().path();
        let sample = dir.join("sample.toml");
        if sample.exists() {
            out.push((dir, read(&sample)));
        }
    }
    out.sort();
    out
}

/// True when `line` sets `key` (`key = …`, commented out or not) or opens a
/// table or list of tables named `key` (`[[collector.<kind>.key]]`).
fn sets(line: &str, key: &str) -> bool {
    let line = line.strip_prefix("# ").unwrap_or(line).trim_start();
    if let Some(rest) = line.strip_prefix(key) {
        return rest.trim_start().starts_with('=');
    }
    let header = line.trim_start_matches('[');
    header != line
        && header
            .split(']')
            .next()
            .is_some_and(|h| h.rsplit('.').next() == Some(key))
}

/// The headings of a Markdown text outside code blocks: (line index, level,
/// text).
fn headings(text: &str) -> Vec<(usize, usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let level = line.bytes().take_while(|&b| b == b'#').count();
        if !fenced && level > 0 && line[level..].starts_with(' ') {
            out.push((i, level, line[level..].trim()));
        }
    }
    out
}

/// The part of README `text` about `kind`: from the heading that names it
/// in backticks (`` ## `cpu`: … ``) to the next heading of the same level or
/// above.
fn readme_section<'t>(text: &'t str, kind: &str) -> Option<Vec<&'t str>> {
    let heads = headings(text);
    let tag = format!("`{kind}`");
    let (start, level) = heads
        .iter()
        .find(|(_, _, h)| h.starts_with(&tag))
        .map(|&(i, level, _)| (i, level))?;
    let end = heads
        .iter()
        .find(|&&(i, l, _)| i > start && l <= level)
        .map_or(usize::MAX, |&(i, _, _)| i);
    Some(text.lines().take(end).skip(start).collect())
}

/// The problems with one kind, empty when it is documented everywhere.
fn problems_of(kind: &CollectorKind, assembled: &str, list: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let name = kind.kind;
    let mut say = |p: String| problems.push(format!("kind `{name}`: {p}"));

    // The sample: its crate's section, in the assembled configuration.
    let Some(section) = kind.sample else {
        say("no section `## --- {name}: …` in its crate's sample.toml".into());
        return problems;
    };
    if !assembled.contains(section.trim_end()) {
        say("its sample section is not in `carat sample-config`".into());
    }
    let header = format!("[collector.{name}");
    if !section.lines().any(|l| l.contains(&header)) {
        say(format!("its sample section has no `{header}]` table"));
    }
    for option in kind.options {
        if !section.lines().any(|l| sets(l, option)) {
            say(format!(
                "option `{option}` is missing from its sample section (write `# {option} = <default>  # what it does`)"
            ));
        }
    }

    // The README next to the sample.
    match crates()
        .into_iter()
        .find(|(_, s)| sample::section(s, name) == Some(section))
    {
        None => say("no collectors/<crate>/sample.toml has its section".into()),
        Some((dir, _)) => {
            let readme_path = dir.join("README.md");
            let readme = read(&readme_path);
            match readme_section(&readme, name) {
                None => say(format!(
                    "{} has no heading for it (a heading starting with `{name}` in backticks)",
                    readme_path.display()
                )),
                Some(lines) => {
                    for option in kind.options {
                        let tag = format!("`{option}`");
                        if !lines.iter().any(|l| l.contains(&tag)) {
                            say(format!(
                                "option `{option}` is not in its section of {}",
                                readme_path.display()
                            ));
                        }
                    }
                }
            }
        }
    }

    // `carat list`.
    let mut lines = list.lines();
    let listed = lines
        .by_ref()
        .find(|l| l.split_whitespace().next() == Some(name))
        .is_some();
    let options: Vec<&str> = lines
        .next()
        .and_then(|l| l.trim().strip_prefix("options: "))
        .map(|o| o.split(", ").collect())
        .unwrap_or_default();
    if !listed {
        say("missing from `carat list`".into());
    }
    for option in kind.options {
        if !options.contains(option) {
            say(format!("option `{option}` missing from `carat list`"));
        }
    }
    problems
}

#[test]
fn every_kind_and_option_is_in_its_readme_the_sample_and_carat_list() {
    let registry = Registry::builtin();
    let assembled = carat::defaults::sample_config(&registry);
    let out = support::bin::carat().arg("list").output().unwrap();
    assert!(out.status.success());
    let list = String::from_utf8(out.stdout).unwrap();
    let mut problems = Vec::new();
    let mut kinds = 0;
    for kind in registry.in_order() {
        kinds += 1;
        problems.extend(problems_of(kind, &assembled, &list));
    }
    assert!(kinds >= 12, "{kinds}");
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

/// A collector behind a feature that is not on by default (`example`) is
/// registered when the feature is on, so that the test above checks its
/// documentation in that build: `cargo test --features example --test
/// consistency -- --skip conf_carat_toml --skip packaged` (the two skipped
/// compare with the default build's configuration). scripts/test-guide
/// checks the same of a collector made from it.
#[cfg(feature = "example")]
#[test]
fn the_example_feature_registers_its_kind() {
    let registry = Registry::builtin();
    let kind = registry
        .get("example")
        .expect("the example kind is registered");
    assert_eq!(kind.default_path, "example");
    assert!(kind.sample.is_some());
}

#[test]
fn the_check_fails_for_a_kind_documented_nowhere() {
    // A kind registered without a sample section, README entry or listing:
    // the test above would name all three.
    let registry = support::collectors::registry();
    let tabled = registry.get("tabled").unwrap();
    let problems = problems_of(tabled, "", "");
    let text = problems.join("\n");
    assert!(text.contains("is not in `carat sample-config`"), "{text}");
    assert!(text.contains("missing from `carat list`"), "{text}");
    assert!(text.contains("no collectors/<crate>/sample.toml"), "{text}");
}

#[test]
fn conf_carat_toml_is_the_assembled_sample() {
    let shipped = read(&root().join("conf/carat.toml"));
    let assembled = carat::defaults::sample_config(&Registry::builtin());
    assert!(
        shipped == assembled,
        "conf/carat.toml is not what `carat sample-config` prints: regenerate it with\n\
         \n    cargo run -- sample-config > conf/carat.toml\n"
    );
    let out = support::bin::carat().arg("sample-config").output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), assembled);
}

#[test]
fn the_packaged_configuration_is_the_sample_reading_conf_d() {
    let packaged = read(&root().join("packaging/carat.toml"));
    let sample = carat::defaults::sample_config(&Registry::builtin());
    let commented = "# config_dir = \"/etc/carat/conf.d\"  ";
    assert!(
        sample.contains(commented),
        "the sample has no {commented:?} line"
    );
    let expected = sample.replacen(commented, "config_dir = \"/etc/carat/conf.d\"    ", 1);
    assert!(
        packaged == expected,
        "packaging/carat.toml is not the sample with config_dir set: regenerate it with\n\
         \n    cargo run -q -- sample-config | sed 's|^# config_dir = \"/etc/carat/conf.d\"  |config_dir = \"/etc/carat/conf.d\"    |' > packaging/carat.toml\n"
    );
}

/// The sample with every kind's section uncommented: every collector on,
/// every option set.
fn everything_on(registry: &Registry) -> String {
    let assembled = carat::defaults::sample_config(registry);
    let mut out = assembled.clone();
    for kind in registry.in_order() {
        if let Some(section) = kind.sample {
            out = out.replace(section.trim_end(), &sample::uncommented(section));
        }
    }
    out
}

#[test]
fn every_line_of_the_sample_works() {
    std::env::set_var("HAPROXY_STATS_PASSWORD", "secret");
    std::env::set_var("MONGODB_PASSWORD", "secret");
    std::env::set_var("JOBS_DB_PASSWORD", "secret");
    std::env::set_var("PHP_FPM_STATUS_PASSWORD", "secret");
    let registry = Registry::builtin();
    let text = everything_on(&registry);
    let config = carat::config::load_str(&text, Path::new("everything-on.toml"), &registry)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    for kind in registry.kinds() {
        assert!(
            config.collectors.iter().any(|c| c.kind == kind.kind),
            "no instance of {} when the sample is uncommented",
            kind.kind
        );
    }
}

/// The value of every option the sample shows for `C` is its default, but
/// for the options in `examples` (shown with an example value: they have
/// no default, or are required).
fn defaults_of<C: Collector>(registry: &Registry, examples: &[&str])
where
    C::Config: PartialEq + Debug + DeserializeOwned,
{
    let section = registry.get(C::KIND).and_then(|k| k.sample).unwrap();
    let doc: toml::Table = toml::from_str(&sample::uncommented(section))
        .unwrap_or_else(|e| panic!("{}: {e}", C::KIND));
    let kind_table = doc["collector"][C::KIND].as_table().unwrap();
    // The kind's table, or its first named instance's.
    let has_options = |t: &toml::Table| t.keys().any(|k| C::options().contains(&k.as_str()));
    let table = if has_options(kind_table) {
        kind_table
    } else {
        kind_table
            .values()
            .filter_map(toml::Value::as_table)
            .find(|t| has_options(t))
            .unwrap_or(kind_table)
    };
    let mut shown = 0;
    for (key, value) in table {
        if examples.contains(&key.as_str()) || !C::options().contains(&key.as_str()) {
            continue;
        }
        let mut one = BTreeMap::new();
        one.insert(key.clone(), value.clone());
        let config: C::Config = toml::Value::try_from(one)
            .unwrap()
            .try_into()
            .unwrap_or_else(|e| panic!("{}.{key}: {e}", C::KIND));
        assert_eq!(
            config,
            C::Config::default(),
            "the sample shows {}.{key} = {value}, which is not its default",
            C::KIND
        );
        shown += 1;
    }
    assert_eq!(
        shown + examples.len(),
        C::options().len(),
        "{}: options shown",
        C::KIND
    );
}

#[test]
fn the_sample_shows_the_defaults() {
    use carat_system::*;
    let r = Registry::builtin();
    defaults_of::<Cpu>(&r, &[]);
    defaults_of::<Memory>(&r, &[]);
    defaults_of::<LoadAvg>(&r, &[]);
    defaults_of::<Uptime>(&r, &[]);
    defaults_of::<DiskSpace>(&r, &[]);
    defaults_of::<DiskUsage>(&r, &["exclude_devices"]);
    defaults_of::<Network>(&r, &[]);
    defaults_of::<VmStat>(&r, &[]);
    defaults_of::<Sockets>(&r, &[]);
    defaults_of::<Tcp>(&r, &[]);
    defaults_of::<Process>(&r, &["groups"]);
    #[cfg(feature = "haproxy")]
    defaults_of::<carat_haproxy::Haproxy>(
        &r,
        &["url", "socket", "username", "password", "tls_ca_file"],
    );
    #[cfg(feature = "mongodb")]
    defaults_of::<carat_mongodb::Mongodb>(
        &r,
        &[
            "uri",
            "hosts",
            "username",
            "password",
            "auth_source",
            "direct_connection",
            "tls_ca_file",
        ],
    );
    #[cfg(feature = "rabbitmq")]
    defaults_of::<carat_rabbitmq::Rabbitmq>(&r, &["tls_ca_file", "replace_dot", "replace_slash"]);
    #[cfg(feature = "sql")]
    defaults_of::<carat_sql::Sql>(&r, &["url", "password", "password_file", "query"]);
    #[cfg(feature = "example")]
    defaults_of::<carat_example::Example>(&r, &["username", "password", "tls_ca_file"]);
    #[cfg(feature = "exec")]
    defaults_of::<carat_exec::Exec>(&r, &["command", "working_dir", "user"]);
}

#[test]
fn every_output_and_option_is_in_the_sample_and_the_readme() {
    let assembled = carat::defaults::sample_config(&Registry::builtin());
    let readme = read(&root().join("README.md"));
    let mut problems = Vec::new();
    for kind in carat::config::OutputSettings::KINDS {
        let options = carat::config::output_options(kind).unwrap();
        // The sample: from `[output.<kind>]` to the next blank line.
        let header = format!("[output.{kind}]");
        let block: Vec<&str> = assembled
            .lines()
            .skip_while(|l| !l.contains(&header))
            .take_while(|l| !l.trim().is_empty())
            .collect();
        if block.is_empty() {
            problems.push(format!("output `{kind}`: no {header} in the sample"));
        }
        // The README: from `` `[output.<kind>]` `` to the next output.
        let tag = format!("`{header}`");
        let text: Vec<&str> = readme
            .lines()
            .skip_while(|l| !l.starts_with(&tag))
            .enumerate()
            .take_while(|(i, l)| *i == 0 || !l.starts_with("`[output."))
            .map(|(_, l)| l)
            .collect();
        if text.is_empty() {
            problems.push(format!("output `{kind}`: README.md has no {tag}"));
        }
        for option in options {
            if !block.iter().any(|l| sets(l, option)) {
                problems.push(format!(
                    "output `{kind}`: option `{option}` missing from the sample"
                ));
            }
            // The filters are described once for every output.
            let filter = option.starts_with("metrics_");
            if !filter && !text.iter().any(|l| l.contains(&format!("`{option}`"))) {
                problems.push(format!(
                    "output `{kind}`: option `{option}` missing from README.md"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn every_collector_crate_is_in_the_layout_and_its_description_names_its_kinds() {
    let readme = read(&root().join("README.md"));
    let mut problems = Vec::new();
    for (dir, sample) in crates() {
        let rel = dir.strip_prefix(root()).unwrap().display().to_string();
        if !readme
            .lines()
            .any(|l| l.starts_with(&format!("| `{rel}` |")))
        {
            problems.push(format!("README.md's layout table has no row for `{rel}`"));
        }
        let manifest: toml::Table = toml::from_str(&read(&dir.join("Cargo.toml"))).unwrap();
        let description = manifest["package"]["description"]
            .as_str()
            .unwrap_or_default();
        for kind in sample::kinds(&sample) {
            if !description.contains(kind) {
                problems.push(format!(
                    "{rel}/Cargo.toml's description does not name `{kind}`"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}
