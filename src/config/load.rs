//! Reading configuration files into a validated [`Config`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::env::expand;
use super::error::{line_and_column, ConfigError};
use super::types::{
    AgentConfig, CommonOptions, GraphiteConfig, GraphiteProtocol, StatsdConfig, StdoutConfig,
    COMMON_COLLECTOR_KEYS,
};
use super::{CollectorInstance, Config, Origin, OutputInstance, OutputSettings};
use crate::registry::Registry;

/// The file name reported for the built-in default configuration.
pub const BUILTIN_NAME: &str = "<built-in default>";

/// Reads and validates the configuration in `path`, then the files of its
/// `config_dir`.
pub fn load_file(path: &Path, registry: &Registry) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::file(path, format!("cannot read the configuration: {e}")))?;
    load_str(&text, path, registry)
}

/// Validates configuration `text` as if read from `file`, then reads the
/// files of its `config_dir`.
pub fn load_str(text: &str, file: &Path, registry: &Registry) -> Result<Config, ConfigError> {
    let mut acc = Accumulator::default();
    let agent = parse_document(text, file, registry, true, &mut acc)?.unwrap_or_default();
    acc.files.push(file.to_owned());
    if let Some(dir) = &agent.config_dir {
        // A relative directory is taken from the main file's directory, so
        // `config_dir = "conf.d"` works wherever the package puts the file.
        let dir = match file.parent() {
            Some(parent) if dir.is_relative() => parent.join(dir),
            _ => dir.clone(),
        };
        for extra in toml_files_in(&dir, file)? {
            let extra_text = std::fs::read_to_string(&extra).map_err(|e| {
                ConfigError::file(&extra, format!("cannot read the configuration: {e}"))
            })?;
            parse_document(&extra_text, &extra, registry, false, &mut acc)?;
            acc.files.push(extra);
        }
    }
    if acc.outputs.is_empty() {
        return Err(ConfigError::file(
            file,
            "no output is configured: add an [output.graphite] or [output.stdout] table",
        ));
    }
    Ok(Config {
        agent,
        collectors: acc.collectors.into_values().collect(),
        outputs: acc.outputs.into_values().collect(),
        files: acc.files,
    })
}

/// The `*.toml` files of `dir`, sorted by name.
fn toml_files_in(dir: &Path, main: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        ConfigError::file(
            main,
            format!("cannot read config_dir {}: {e}", dir.display()),
        )
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            ConfigError::file(
                main,
                format!("cannot read config_dir {}: {e}", dir.display()),
            )
        })?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[derive(Default)]
struct Accumulator {
    collectors: BTreeMap<String, CollectorInstance>,
    outputs: BTreeMap<String, OutputInstance>,
    files: Vec<PathBuf>,
}

/// One file being read: its name and text, for error positions.
struct Source<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn error(
        &self,
        span: Option<Range<usize>>,
        key: Option<String>,
        msg: impl Into<String>,
    ) -> ConfigError {
        ConfigError::at(self.file, self.text, span, key, msg)
    }

    fn origin(&self, span: Range<usize>) -> Origin {
        Origin {
            file: self.file.to_owned(),
            line: line_and_column(self.text, span.start).0,
        }
    }

    /// Deserializes `value` (the table at dotted `key`) into `T`, turning a
    /// failure into an error that names the file, line and exact key.
    fn deserialize<T: for<'de> Deserialize<'de>>(
        &self,
        key: &str,
        value: Spanned<DeValue<'_>>,
        hint: Option<&str>,
    ) -> Result<T, ConfigError> {
        let for_errors = value.clone();
        T::deserialize(ValueDeserializer::from(value))
            .map_err(|e| self.deserialize_error(key, &for_errors, &e, hint))
    }

    fn deserialize_error(
        &self,
        key: &str,
        value: &Spanned<DeValue<'_>>,
        e: &toml::de::Error,
        hint: Option<&str>,
    ) -> ConfigError {
        let span = e.span();
        let mut path = vec![key.to_owned()];
        if let Some(s) = &span {
            key_path_at(value.get_ref(), s, &mut path);
        }
        let mut message = e.message().trim_end().to_owned();
        if let (Some(hint), true) = (hint, message.starts_with("unknown field")) {
            message.push_str(hint);
        }
        self.error(span.or(Some(value.span())), Some(path.join(".")), message)
    }
}

/// Pushes onto `path` the keys leading to the entry whose key or value
/// covers `span`.
fn key_path_at(value: &DeValue<'_>, span: &Range<usize>, path: &mut Vec<String>) {
    let covers = |outer: Range<usize>| outer.start <= span.start && span.end <= outer.end;
    match value {
        DeValue::Table(table) => {
            for (k, v) in table.iter() {
                if covers(k.span()) {
                    path.push(k.get_ref().to_string());
                    return;
                }
                if covers(v.span()) {
                    path.push(k.get_ref().to_string());
                    key_path_at(v.get_ref(), span, path);
                    return;
                }
            }
        }
        DeValue::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                if covers(v.span()) {
                    path.push(i.to_string());
                    key_path_at(v.get_ref(), span, path);
                    return;
                }
            }
        }
        _ => {}
    }
}

/// Parses one file, adding its collectors and outputs to `acc`. Returns the
/// `[agent]` table of the main file.
fn parse_document(
    text: &str,
    file: &Path,
    registry: &Registry,
    is_main: bool,
    acc: &mut Accumulator,
) -> Result<Option<AgentConfig>, ConfigError> {
    let src = Source { file, text };
    let root = DeTable::parse(text).map_err(|e| src.error(e.span(), None, e.message()))?;
    let root_span = root.span();
    let mut root_value = Spanned::new(root_span, DeValue::Table(root.into_inner()));
    substitute_env(&mut root_value, &src, &mut Vec::new())?;
    let DeValue::Table(root) = root_value.into_inner() else {
        return Ok(None);
    };

    let mut agent = None;
    for (key, value) in root {
        let key_span = key.span();
        match key.get_ref().as_ref() {
            "agent" if is_main => {
                agent = Some(src.deserialize::<AgentConfig>("agent", value, None)?)
            }
            "agent" => {
                return Err(src.error(
                    Some(key_span),
                    Some("agent".into()),
                    "[agent] belongs in the main configuration file, not in config_dir",
                ))
            }
            "collector" => {
                for (kind, instance, table) in instances("collector", value, &src)? {
                    add_collector(&src, registry, acc, kind, instance, table)?;
                }
            }
            "output" => {
                for (kind, instance, table) in instances("output", value, &src)? {
                    add_output(&src, acc, kind, instance, table)?;
                }
            }
            other => {
                return Err(src.error(
                    Some(key_span),
                    Some(other.to_owned()),
                    "unknown table (expected [agent], [collector.<kind>] or [output.<kind>])",
                ))
            }
        }
    }
    Ok(agent)
}

/// Expands `${VAR}` in every string value.
fn substitute_env(
    value: &mut Spanned<DeValue<'_>>,
    src: &Source<'_>,
    path: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(s) => {
            let expanded = expand(s, |name| std::env::var(name).ok())
                .map_err(|m| src.error(Some(span), Some(path.join(".")), m))?;
            if let Some(new) = expanded {
                *s = Cow::Owned(new);
            }
        }
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                substitute_env(item, src, path)?;
            }
        }
        DeValue::Table(table) => {
            for (k, v) in table.iter_mut() {
                path.push(k.get_ref().to_string());
                substitute_env(v, src, path)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

/// An instance found in `[<section>.<kind>]`: its kind, its instance name
/// and its table (shared keys of the kind table merged in).
type InstanceTable<'i> = (String, String, Spanned<DeValue<'i>>);

/// Splits `[collector]` or `[output]` into instances. In a kind's table,
/// keys whose values are tables are named instances (`[collector.haproxy.edge]`),
/// and the kind table's other keys are shared defaults for them; a kind
/// table with no sub-table is a single instance named after the kind.
fn instances<'i>(
    section: &str,
    value: Spanned<DeValue<'i>>,
    src: &Source<'_>,
) -> Result<Vec<InstanceTable<'i>>, ConfigError> {
    let span = value.span();
    let DeValue::Table(kinds) = value.into_inner() else {
        return Err(src.error(Some(span), Some(section.into()), "expected a table"));
    };
    let mut found = Vec::new();
    for (kind, kind_value) in kinds {
        let kind_name = kind.get_ref().to_string();
        let kind_span = kind_value.span();
        let DeValue::Table(table) = kind_value.into_inner() else {
            return Err(src.error(
                Some(kind_span),
                Some(format!("{section}.{kind_name}")),
                format!("expected a table: write [{section}.{kind_name}]"),
            ));
        };
        let (named, shared): (Vec<_>, Vec<_>) = table
            .into_iter()
            .partition(|(_, v)| matches!(v.get_ref(), DeValue::Table(_)));
        if named.is_empty() {
            let table: DeTable<'i> = shared.into_iter().collect();
            found.push((
                kind_name.clone(),
                kind_name,
                Spanned::new(kind_span, DeValue::Table(table)),
            ));
            continue;
        }
        for (instance, instance_value) in named {
            let instance_span = instance_value.span();
            let DeValue::Table(own) = instance_value.into_inner() else {
                continue;
            };
            let mut merged: DeTable<'i> = shared.iter().cloned().collect();
            for (k, v) in own {
                merged.insert(k, v);
            }
            found.push((
                kind_name.clone(),
                format!("{kind_name}.{}", instance.get_ref()),
                Spanned::new(instance_span, DeValue::Table(merged)),
            ));
        }
    }
    Ok(found)
}

fn add_collector(
    src: &Source<'_>,
    registry: &Registry,
    acc: &mut Accumulator,
    kind_name: String,
    name: String,
    table_value: Spanned<DeValue<'_>>,
) -> Result<(), ConfigError> {
    let key = format!("collector.{name}");
    let span = table_value.span();
    let Some(kind) = registry.get(&kind_name) else {
        let known: Vec<_> = registry.kinds().map(|k| k.kind).collect();
        return Err(src.error(
            Some(span),
            Some(format!("collector.{kind_name}")),
            format!(
                "unknown collector kind `{kind_name}` (known: {})",
                known.join(", ")
            ),
        ));
    };
    let DeValue::Table(table) = table_value.get_ref().clone() else {
        return Err(src.error(Some(span), Some(key), "expected a table"));
    };
    let (common, own): (DeTable<'_>, DeTable<'_>) = table
        .into_iter()
        .partition(|(k, _)| COMMON_COLLECTOR_KEYS.contains(&k.get_ref().as_ref()));
    let common: CommonOptions = src.deserialize(
        &key,
        Spanned::new(span.clone(), DeValue::Table(common)),
        None,
    )?;
    for (list, option) in [
        (&common.metrics_whitelist, "metrics_whitelist"),
        (&common.metrics_blacklist, "metrics_blacklist"),
    ] {
        for pattern in &list.0 {
            if let Err(e) = regex::Regex::new(pattern) {
                let key_span = key_span(table_value.get_ref(), option).unwrap_or(span.clone());
                return Err(src.error(
                    Some(key_span),
                    Some(format!("{key}.{option}")),
                    format!("invalid regex {pattern:?}: {e}"),
                ));
            }
        }
    }
    let own_value = Spanned::new(span.clone(), DeValue::Table(own));
    let for_errors = own_value.clone();
    let hint = format!(
        " (or one of the options every collector has: {})",
        COMMON_COLLECTOR_KEYS.join(", ")
    );
    let build = kind
        .parse(ValueDeserializer::from(own_value))
        .map_err(|e| src.deserialize_error(&key, &for_errors, &e, Some(&hint)))?;
    let origin = src.origin(span);
    if let Some(previous) = acc.collectors.get(&name) {
        return Err(src.error(
            Some(table_value.span()),
            Some(key),
            format!(
                "collector instance `{name}` is already defined at {}",
                previous.origin
            ),
        ));
    }
    acc.collectors.insert(
        name.clone(),
        CollectorInstance {
            name,
            kind: kind.kind,
            default_path: kind.default_path,
            common,
            build,
            origin,
        },
    );
    Ok(())
}

/// The span of `key` in table `value`, if present.
fn key_span(value: &DeValue<'_>, key: &str) -> Option<Range<usize>> {
    let DeValue::Table(t) = value else {
        return None;
    };
    t.iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(_, v)| v.span())
}

fn add_output(
    src: &Source<'_>,
    acc: &mut Accumulator,
    kind: String,
    name: String,
    table: Spanned<DeValue<'_>>,
) -> Result<(), ConfigError> {
    let key = format!("output.{name}");
    let span = table.span();
    let settings = match kind.as_str() {
        "stdout" => {
            OutputSettings::Stdout(src.deserialize::<StdoutConfig>(&key, table.clone(), None)?)
        }
        "graphite" => OutputSettings::Graphite(src.deserialize::<GraphiteConfig>(
            &key,
            table.clone(),
            None,
        )?),
        "statsd" => {
            OutputSettings::Statsd(src.deserialize::<StatsdConfig>(&key, table.clone(), None)?)
        }
        #[cfg(feature = "amqp")]
        "amqp" => {
            let c = src.deserialize::<super::types::AmqpConfig>(&key, table.clone(), None)?;
            if let Err((option, problem)) = crate::output::amqp::check_config(&c) {
                let at = key_span(table.get_ref(), option).unwrap_or(span.clone());
                return Err(src.error(Some(at), Some(format!("{key}.{option}")), problem));
            }
            OutputSettings::Amqp(c)
        }
        #[cfg(not(feature = "amqp"))]
        "amqp" => {
            return Err(src.error(
                Some(span),
                Some(key),
                "this carat was built without the amqp output (cargo feature `amqp`)",
            ))
        }
        other => {
            return Err(src.error(
                Some(span),
                Some(format!("output.{other}")),
                format!(
                    "unknown output kind `{other}` (known: {})",
                    OutputSettings::KINDS.join(", ")
                ),
            ))
        }
    };
    if let OutputSettings::Graphite(g) = &settings {
        if g.batch_size == 0 || g.max_buffered == 0 || g.max_packet_size < 64 {
            return Err(src.error(
                Some(span),
                Some(key),
                "batch_size and max_buffered must be at least 1, max_packet_size at least 64",
            ));
        }
        if g.spool_dir.is_some() && g.protocol == GraphiteProtocol::Udp {
            let at = key_span(table.get_ref(), "spool_dir").unwrap_or(span.clone());
            return Err(src.error(
                Some(at),
                Some(format!("{key}.spool_dir")),
                "a spool needs a protocol that can tell delivery (tcp or pickle), not udp",
            ));
        }
    }
    if let OutputSettings::Statsd(c) = &settings {
        if c.max_packet_size < 64 {
            return Err(src.error(Some(span), Some(key), "max_packet_size must be at least 64"));
        }
    }
    let (whitelist, blacklist) = settings.filters();
    for (list, option) in [
        (whitelist, "metrics_whitelist"),
        (blacklist, "metrics_blacklist"),
    ] {
        for pattern in &list.0 {
            if let Err(e) = regex::Regex::new(pattern) {
                let at = key_span(table.get_ref(), option).unwrap_or(span.clone());
                return Err(src.error(
                    Some(at),
                    Some(format!("{key}.{option}")),
                    format!("invalid regex {pattern:?}: {e}"),
                ));
            }
        }
    }
    let origin = src.origin(span.clone());
    if let Some(previous) = acc.outputs.get(&name) {
        return Err(src.error(
            Some(span),
            Some(key),
            format!("output `{name}` is already defined at {}", previous.origin),
        ));
    }
    acc.outputs.insert(
        name.clone(),
        OutputInstance {
            name,
            settings,
            origin,
        },
    );
    Ok(())
}
