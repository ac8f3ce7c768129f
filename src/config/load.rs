//! Reading configuration files into a validated [`Config`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use carat_collector::{CollectorError, Environment};

use super::env::expand;
use super::error::{ConfigError, LineIndex};
use super::types::{
    AgentConfig, CommonOptions, GraphiteConfig, GraphiteProtocol, StatsdConfig, StdoutConfig,
    COMMON_COLLECTOR_KEYS,
};
use super::{CollectorInstance, Config, Origin, OutputInstance, OutputSettings};
use crate::registry::{self, BuildFn, Registry};

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
    let agent = parse_document(text, file, registry, None, &mut acc)?.unwrap_or_default();
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
            parse_document(&extra_text, &extra, registry, Some(&agent), &mut acc)?;
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
///
/// Every `*.toml` entry must be a readable file: one that is not (a
/// dangling symlink, a directory, a file without read permission) is an
/// error naming it, not skipped, or its collectors and outputs would be
/// silently missing. Hidden entries (`.name.toml`) are not read: editors
/// keep lock files (Emacs's `.#name.toml` is a dangling symlink) and
/// backups there while a file is being edited.
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
        let hidden = entry.file_name().as_encoded_bytes().starts_with(b".");
        let toml = path.extension().is_some_and(|e| e == "toml");
        if hidden || !toml {
            continue;
        }
        // Opening the file checks what reading it later needs: that it
        // exists behind any symlink and may be read.
        match std::fs::File::open(&path).and_then(|f| f.metadata()) {
            Ok(meta) if meta.is_file() => files.push(path),
            Ok(_) => {
                return Err(ConfigError::file(
                    &path,
                    "is not a regular file: every *.toml entry of config_dir is read; \
                     rename or remove it",
                ))
            }
            Err(e) => {
                return Err(ConfigError::file(
                    &path,
                    format!(
                        "cannot be read: {e} (a dangling symlink?): every *.toml entry of \
                         config_dir is read; fix, rename or remove it"
                    ),
                ))
            }
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
    /// Built once per file: positions are asked for every table, and a
    /// scan from the start of the text each time made loading quadratic.
    lines: LineIndex,
}

impl<'a> Source<'a> {
    fn new(file: &'a Path, text: &'a str) -> Self {
        Source {
            file,
            text,
            lines: LineIndex::new(text),
        }
    }

    fn position(&self, span: &Range<usize>) -> (usize, usize) {
        self.lines.position(self.text, span.start)
    }

    fn error(
        &self,
        span: Option<Range<usize>>,
        key: Option<String>,
        msg: impl Into<String>,
    ) -> ConfigError {
        let position = span.map(|s| self.position(&s));
        ConfigError::at_position(self.file, position, key, msg)
    }

    fn origin(&self, span: Range<usize>) -> Origin {
        Origin {
            file: self.file.to_owned(),
            line: self.position(&span).0,
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
/// covers `span`; returns whether it found one. A table of an array of
/// tables (`[[collector.process.groups]]`) spans only its header, so
/// tables and arrays that do not cover `span` are searched too.
fn key_path_at(value: &DeValue<'_>, span: &Range<usize>, path: &mut Vec<String>) -> bool {
    match value {
        DeValue::Table(table) => table
            .iter()
            .any(|(k, v)| entry_path_at(k.get_ref().to_string(), Some(k.span()), v, span, path)),
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .any(|(i, v)| entry_path_at(i.to_string(), None, v, span, path)),
        _ => false,
    }
}

/// [`key_path_at`] for one entry, `name` (its key at `key_span`, if it has
/// one) holding `value`.
fn entry_path_at(
    name: String,
    key_span: Option<Range<usize>>,
    value: &Spanned<DeValue<'_>>,
    span: &Range<usize>,
    path: &mut Vec<String>,
) -> bool {
    let covers = |outer: &Range<usize>| outer.start <= span.start && span.end <= outer.end;
    if key_span.as_ref().is_some_and(covers) {
        path.push(name);
        return true;
    }
    if covers(&value.span()) {
        path.push(name);
        key_path_at(value.get_ref(), span, path);
        return true;
    }
    if matches!(value.get_ref(), DeValue::Table(_) | DeValue::Array(_)) {
        path.push(name);
        if key_path_at(value.get_ref(), span, path) {
            return true;
        }
        path.pop();
    }
    false
}

/// Parses one file, adding its collectors and outputs to `acc`. `main` is
/// the main file's `[agent]` table when this is a file of `config_dir`, and
/// `None` for the main file itself, whose `[agent]` table is returned.
fn parse_document(
    text: &str,
    file: &Path,
    registry: &Registry,
    main: Option<&AgentConfig>,
    acc: &mut Accumulator,
) -> Result<Option<AgentConfig>, ConfigError> {
    let src = Source::new(file, text);
    let root = DeTable::parse(text).map_err(|e| src.error(e.span(), None, e.message()))?;
    let root_span = root.span();
    let mut root_value = Spanned::new(root_span, DeValue::Table(root.into_inner()));
    substitute_env(&mut root_value, &src, &mut Vec::new())?;
    let DeValue::Table(root) = root_value.into_inner() else {
        return Ok(None);
    };

    // [agent] first, wherever it is in the file: collectors are built with
    // its proc_root and sys_root.
    let (agent_table, rest): (Vec<_>, Vec<_>) = root
        .into_iter()
        .partition(|(key, _)| key.get_ref() == "agent");
    let mut agent = None;
    for (key, value) in agent_table {
        if main.is_some() {
            return Err(src.error(
                Some(key.span()),
                Some("agent".into()),
                "[agent] belongs in the main configuration file, not in config_dir",
            ));
        }
        agent = Some(src.deserialize::<AgentConfig>("agent", value, None)?);
    }
    let default_agent = AgentConfig::default();
    let settings = main.or(agent.as_ref()).unwrap_or(&default_agent);
    for (key, value) in rest {
        let key_span = key.span();
        match key.get_ref().as_ref() {
            "collector" => {
                for (kind, instance, table) in instances("collector", value, &src)? {
                    add_collector(&src, registry, settings, acc, kind, instance, table)?;
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
    agent: &AgentConfig,
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
        for pattern in list.sources() {
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
    let build = registry::limit_samples(build, common.max_metrics);
    let instance = Built {
        key: &key,
        table: table_value.get_ref(),
        span: span.clone(),
        enabled: common.enabled,
    };
    check_build(src, &instance, &build, &agent.environment(&name))?;
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

/// A collector instance about to be checked by building it.
struct Built<'t, 'i> {
    /// `collector.<name>`.
    key: &'t str,
    /// Its table.
    table: &'t DeValue<'i>,
    /// Where the table is.
    span: Range<usize>,
    /// Its `enabled` option.
    enabled: bool,
}

/// Builds the collector once, as `run` will, and turns a failure into a
/// configuration error: at the option's value when the collector names the
/// option at fault, else at the instance's table. So `check-config` and
/// `run` refuse the same configurations, with the file and line, instead of
/// `run` retrying a collector that can never be built.
///
/// Building only checks and stores options (no collector's `new` reads a
/// file, connects or starts a thread), so this is cheap and has no effect.
/// A disabled instance is checked too (it is one edit away from running),
/// except for being unsupported on this system: a configuration shared by
/// several systems may disable what one of them lacks.
fn check_build(
    src: &Source<'_>,
    instance: &Built<'_, '_>,
    build: &BuildFn,
    env: &Environment,
) -> Result<(), ConfigError> {
    let Err(e) = build(env) else {
        return Ok(());
    };
    let key = instance.key;
    let table = Some(instance.span.clone());
    Err(match e {
        CollectorError::Unsupported(_) if !instance.enabled => return Ok(()),
        CollectorError::InvalidOption { option, message } => {
            let at = value_span(instance.table, &option).or(table);
            src.error(at, Some(format!("{key}.{option}")), message)
        }
        CollectorError::Config(message) => src.error(table, Some(key.to_owned()), message),
        other => src.error(
            table,
            Some(key.to_owned()),
            format!("cannot be built: {other}"),
        ),
    })
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

/// The span of the value at dotted `path` below `value`: keys of tables
/// and indexes of arrays (`groups.1.exe`), if all are present.
fn value_span(value: &DeValue<'_>, path: &str) -> Option<Range<usize>> {
    let mut span = None;
    let mut current = value;
    for step in path.split('.') {
        let next = match current {
            DeValue::Table(t) => t.iter().find(|(k, _)| k.get_ref() == step).map(|(_, v)| v),
            DeValue::Array(items) => step.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }?;
        span = Some(next.span());
        current = next.get_ref();
    }
    span
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
    if let Some((min, max)) = settings.reconnect() {
        if max < min {
            let at = key_span(table.get_ref(), "reconnect_max").unwrap_or(span.clone());
            return Err(src.error(
                Some(at),
                Some(format!("{key}.reconnect_max")),
                format!(
                    "reconnect_max ({} s) must be at least reconnect_min ({} s)",
                    max.as_secs_f64(),
                    min.as_secs_f64()
                ),
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
        for pattern in list.sources() {
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
