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

/// Whether a configuration must have an output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outputs {
    /// At least one: what `run` and `check-config` need (an agent without
    /// an output would collect for nothing).
    Required,
    /// Any number, none included: `carat once` prints what the collectors
    /// publish itself, like Telegraf's `--test`.
    Optional,
}

/// Reads and validates the configuration in `path`, then the files of its
/// `config_dir`. It must have an output.
pub fn load_file(path: &Path, registry: &Registry) -> Result<Config, ConfigError> {
    load_file_with(path, registry, Outputs::Required)
}

/// [`load_file`], with or without an output.
pub fn load_file_with(
    path: &Path,
    registry: &Registry,
    outputs: Outputs,
) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::file(path, format!("cannot read the configuration: {e}")))?;
    load_str_with(&text, path, registry, outputs)
}

/// Validates configuration `text` as if read from `file`, then reads the
/// files of its `config_dir`. It must have an output.
pub fn load_str(text: &str, file: &Path, registry: &Registry) -> Result<Config, ConfigError> {
    load_str_with(text, file, registry, Outputs::Required)
}

/// [`load_str`], with or without an output.
pub fn load_str_with(
    text: &str,
    file: &Path,
    registry: &Registry,
    outputs: Outputs,
) -> Result<Config, ConfigError> {
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
    check_self_metric_names(&acc.collectors)?;
    if acc.outputs.is_empty() && outputs == Outputs::Required {
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

/// Refuses two instances whose self-metrics would be published under the
/// same `carat.collector.<component>` (`[collector.a_b]` of a kind `a_b`
/// and `[collector.a.b]`, both `a_b`), which would mix their counts.
fn check_self_metric_names(
    collectors: &BTreeMap<String, CollectorInstance>,
) -> Result<(), ConfigError> {
    let mut seen: BTreeMap<String, &CollectorInstance> = BTreeMap::new();
    for instance in collectors.values() {
        let component = crate::scheduler::self_metrics_component(&instance.name);
        if let Some(other) = seen.insert(component.clone(), instance) {
            return Err(ConfigError::at_position(
                &instance.origin.file,
                Some((instance.origin.line, 1)),
                Some(format!("collector.{}", instance.name)),
                format!(
                    "collector instances `{}` ({}) and `{}` would both publish their \
                     self-metrics under carat.collector.{component}: rename one",
                    other.name, other.origin, instance.name
                ),
            ));
        }
    }
    Ok(())
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
                let options_of = |kind: &str| {
                    registry.get(kind).map(|k| KindOptions {
                        own: k.options,
                        common: COMMON_COLLECTOR_KEYS,
                    })
                };
                for (kind, instance, table) in instances("collector", value, &src, &options_of)? {
                    add_collector(&src, registry, settings, acc, kind, instance, table)?;
                }
            }
            "output" => {
                let options_of =
                    |kind: &str| output_options(kind).map(|own| KindOptions { own, common: &[] });
                for (kind, instance, table) in instances("output", value, &src, &options_of)? {
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

/// The option names of one kind of collector or output: what a key of its
/// kind table may be besides a named instance.
#[derive(Clone, Copy)]
struct KindOptions {
    /// The kind's own options.
    own: &'static [&'static str],
    /// Options every instance of the section has (the collectors' common
    /// options; none for outputs).
    common: &'static [&'static str],
}

impl KindOptions {
    fn contains(&self, key: &str) -> bool {
        self.own.contains(&key) || self.common.contains(&key)
    }

    /// The options, for an error message: `a, b` (and the common ones).
    fn describe(&self) -> String {
        let own = if self.own.is_empty() {
            "none of its own".to_owned()
        } else {
            self.own.join(", ")
        };
        if self.common.is_empty() {
            own
        } else {
            format!(
                "{own}; and those every collector has: {}",
                self.common.join(", ")
            )
        }
    }
}

/// True for a name a named instance may have: letters, digits, `_` and `-`,
/// so that it is one component of the metric path as written.
fn is_instance_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Splits `[collector]` or `[output]` into instances. In a kind's table
/// (`[collector.<kind>]`), a key is:
///
/// 1. an option when the kind declares it (`options_of(kind)`, its own
///    options and the common ones), whatever its value: a table or a list
///    of tables too;
/// 2. else, when its value is a table, a named instance
///    (`[collector.haproxy.edge]`), whose name must be letters, digits,
///    `_` and `-` and whose table must hold at least one option of the
///    kind, or be empty;
/// 3. else an option the kind does not have, left for the kind's
///    deserializer to refuse with its list of options.
///
/// A table that fits neither 1 nor 2 is an error naming it. With named
/// instances, the kind table's options are defaults for each of them (an
/// instance's own value replaces a default whole); a kind table without
/// named instances is one instance named after the kind. A kind
/// `options_of` does not know keeps the old rule (every table an instance),
/// and is refused as unknown afterwards.
fn instances<'i>(
    section: &str,
    value: Spanned<DeValue<'i>>,
    src: &Source<'_>,
    options_of: &dyn Fn(&str) -> Option<KindOptions>,
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
        let options = options_of(&kind_name);
        let mut named = Vec::new();
        let mut shared = Vec::new();
        for (key, value) in table {
            let name = key.get_ref().as_ref();
            let is_option = options.is_some_and(|o| o.contains(name));
            if is_option || !matches!(value.get_ref(), DeValue::Table(_)) {
                shared.push((key, value));
                continue;
            }
            if let Some(options) = options {
                check_instance_table(src, section, &kind_name, &key, &value, options)?;
            }
            named.push((key, value));
        }
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

/// Refuses a table of `[<section>.<kind>]` that is not an option of the kind
/// and cannot be a named instance either: its name is not one, or none of
/// its keys is an option of the kind.
fn check_instance_table(
    src: &Source<'_>,
    section: &str,
    kind: &str,
    key: &Spanned<Cow<'_, str>>,
    value: &Spanned<DeValue<'_>>,
    options: KindOptions,
) -> Result<(), ConfigError> {
    let name = key.get_ref().as_ref();
    let at = Some(format!("{section}.{kind}.{name}"));
    if !is_instance_name(name) {
        return Err(src.error(
            Some(key.span()),
            at,
            format!(
                "`{name}` is not an option of {section} kind `{kind}` (its options: {}), and \
                 not a valid name for an instance of it: an instance name is letters, digits, \
                 `_` and `-` (it becomes one component of the metric path)",
                options.describe()
            ),
        ));
    }
    let DeValue::Table(own) = value.get_ref() else {
        return Ok(());
    };
    let keys: Vec<&str> = own.iter().map(|(k, _)| k.get_ref().as_ref()).collect();
    if keys.is_empty() || keys.iter().any(|k| options.contains(k)) {
        return Ok(());
    }
    Err(src.error(
        Some(key.span()),
        at,
        format!(
            "`{name}` is neither an option of {section} kind `{kind}` (its options: {}) nor \
             an instance of it: read as the instance [{section}.{kind}.{name}], none of its \
             keys ({}) is an option of `{kind}`",
            options.describe(),
            keys.join(", ")
        ),
    ))
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
    let own_value = Spanned::new(span.clone(), DeValue::Table(own));
    let for_errors = own_value.clone();
    let hint = format!(
        " (or one of the options every collector has: {})",
        COMMON_COLLECTOR_KEYS.join(", ")
    );
    let build = kind
        .parse(ValueDeserializer::from(own_value))
        .map_err(|e| {
            let mut error = src.deserialize_error(&key, &for_errors, &e, Some(&hint));
            // `[collector.haproxy.url]` is the option `url`, not an instance.
            let option = error.key.as_deref().and_then(|k| k.rsplit('.').next());
            if e.message().starts_with("invalid type: map")
                && option.is_some_and(|o| kind.options.contains(&o))
            {
                error.message.push_str(&format!(
                    " (a table under [collector.{kind_name}] named after one of its options is \
                     that option's value, not a named instance: name the instance differently)"
                ));
            }
            error
        })?;
    let build = registry::limit_samples(build, common.max_metrics);
    let instance = Built {
        key: &key,
        table: table_value.get_ref(),
        span: span.clone(),
        enabled: common.enabled,
    };
    let env = agent.environment(&name, agent.run_timeout_of(&common));
    check_build(src, &instance, &build, &env)?;
    // What a reload compares to tell whether the instance changed: its
    // options as merged and substituted, without the positions in the file.
    let settings = toml::Table::deserialize(ValueDeserializer::from(table_value.clone()))
        .map_err(|e| src.error(Some(span.clone()), Some(key.clone()), e.message()))?;
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
            settings,
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

/// The option names of output kind `kind`, read from its settings' derived
/// `Deserialize` ([`carat_collector::fields::of`]); `None` for a kind this
/// build does not have.
pub fn output_options(kind: &str) -> Option<&'static [&'static str]> {
    use carat_collector::fields::of;
    match kind {
        "stdout" => of::<StdoutConfig>().ok(),
        "graphite" => of::<GraphiteConfig>().ok(),
        "statsd" => of::<StatsdConfig>().ok(),
        #[cfg(feature = "amqp")]
        "amqp" => of::<super::types::AmqpConfig>().ok(),
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_keys_are_the_common_options_fields() {
        let mut fields = carat_collector::fields::of::<CommonOptions>()
            .unwrap()
            .to_vec();
        let mut keys = COMMON_COLLECTOR_KEYS.to_vec();
        fields.sort_unstable();
        keys.sort_unstable();
        assert_eq!(fields, keys);
    }

    #[test]
    fn every_output_kind_declares_its_options() {
        for kind in OutputSettings::KINDS {
            let options = output_options(kind).unwrap_or_default();
            assert!(options.contains(&"queue_size"), "{kind}: {options:?}");
        }
    }

    #[derive(Clone, Default, Deserialize)]
    struct NoOptions {}

    /// A collector kind named `a_b` (`UNDERSCORE`) or `a`: `[collector.a_b]`
    /// and `[collector.a.b]` would share their self-metrics.
    struct Named<const UNDERSCORE: bool>;

    impl<const UNDERSCORE: bool> carat_collector::Collector for Named<UNDERSCORE> {
        type Config = NoOptions;
        const KIND: &'static str = if UNDERSCORE { "a_b" } else { "a" };
        const DESCRIPTION: &'static str = "test";
        const DEFAULT_PATH: &'static str = Self::KIND;
        const SAMPLE: &'static str = "";
        fn new(_: NoOptions, _: &Environment) -> Result<Self, CollectorError> {
            Ok(Named)
        }
        async fn collect(&mut self, _: &mut carat_collector::Batch) -> Result<(), CollectorError> {
            Ok(())
        }
    }

    #[test]
    fn two_instances_with_the_same_self_metrics_are_refused() {
        let mut registry = Registry::empty();
        registry
            .register::<Named<true>>()
            .register::<Named<false>>();
        let text = "[collector.a_b]\n[collector.a.b]\n[output.stdout]\n";
        let e = load_str(text, Path::new("t.toml"), &registry).unwrap_err();
        assert!(
            e.message
                .contains("`a.b` (t.toml:2) and `a_b` would both publish")
                && e.message.contains("carat.collector.a_b"),
            "{e}"
        );
    }

    #[test]
    fn instance_names() {
        for good in ["edge", "db-1", "a_b", "0"] {
            assert!(is_instance_name(good), "{good}");
        }
        for bad in ["", "a.b", "a b", "é", "x/y"] {
            assert!(!is_instance_name(bad), "{bad}");
        }
    }
}
