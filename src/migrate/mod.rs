//! `carat migrate-diamond`: a Diamond configuration (`diamond.conf`, with
//! its `collectors_config_path` and `handlers_config_path` files and its
//! `[configs]` merges) turned into the equivalent carat TOML, with a note
//! for every option that could not be translated and why.
//!
//! The aim is a host whose metric paths stay the same: `[collectors]
//! [[default]]`'s host name, prefix, suffix and interval become `[agent]`
//! (Diamond's default interval of 300 s included, since carbon's storage
//! schemas were set for it), each enabled Diamond collector carat has
//! becomes a `[collector.<kind>]` table, and the Graphite and StatsD
//! handlers become outputs. Passwords are not copied: they are written as
//! `${CARAT_…_PASSWORD}` references, and a note names each variable to set.
//! docs/migrate-diamond.md has the whole table of options.

mod agent;
mod collectors;
pub mod configobj;
mod files;
mod handlers;
mod services;
mod values;

use std::fmt;
use std::path::{Path, PathBuf};

use configobj::{Entry, Origin, ParseError, Section};
use values::{section_label, server_reason, single, Table};

use crate::registry::Registry;

/// What the translation produced.
#[derive(Debug)]
pub struct Migration {
    /// The carat configuration, TOML.
    pub toml: String,
    /// Options not translated, and things the operator must do, in the
    /// order of the Diamond configuration.
    pub notes: Vec<Note>,
    /// Collector instances written.
    pub collectors: usize,
    /// Outputs written.
    pub outputs: usize,
}

impl Migration {
    /// How many notes are about options not translated.
    pub fn untranslated(&self) -> usize {
        self.notes
            .iter()
            .filter(|n| n.kind == NoteKind::NotTranslated)
            .count()
    }
}

/// What a [`Note`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteKind {
    /// The option (or section) is not in the carat configuration.
    NotTranslated,
    /// Translated, but the operator should know or do something.
    Note,
}

/// One line for the operator, naming the file, line, section and option.
#[derive(Clone, Debug)]
pub struct Note {
    /// Where the option (or section) was written.
    pub origin: Origin,
    /// The section, as Diamond nests it: `[collectors][[CPUCollector]]`.
    pub section: String,
    /// The option, when the note is about one.
    pub option: Option<String>,
    /// Not translated, or a note.
    pub kind: NoteKind,
    /// Why, or what to do.
    pub message: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            NoteKind::NotTranslated => "not translated",
            NoteKind::Note => "note",
        };
        write!(f, "{}: {}", self.origin, self.section)?;
        if let Some(option) = &self.option {
            write!(f, " {option}")?;
        }
        write!(f, ": {what}: {}", self.message)
    }
}

/// Diamond's collectors that carat has, and the carat kind of each.
pub const COLLECTORS: &[(&str, &str)] = &[
    ("CPUCollector", "cpu"),
    ("MemoryCollector", "memory"),
    ("LoadAverageCollector", "loadavg"),
    ("UptimeCollector", "uptime"),
    ("DiskSpaceCollector", "diskspace"),
    ("DiskUsageCollector", "diskusage"),
    ("NetworkCollector", "network"),
    ("VMStatCollector", "vmstat"),
    ("SockstatCollector", "sockets"),
    ("TCPCollector", "tcp"),
    ("ProcessResourcesCollector", "process"),
    ("HAProxyCollector", "haproxy"),
    ("MongoDBCollector", "mongodb"),
    ("RabbitMQCollector", "rabbitmq"),
    ("UserScriptsCollector", "exec"),
];

/// Diamond's default collector interval, in seconds.
pub const DIAMOND_INTERVAL: f64 = 300.0;

/// Reads the Diamond configuration at `path` (and the files it names) and
/// translates it. An error names the file, and the line when there is one:
/// a file that cannot be read or parsed, or one without a `[server]`
/// section (Diamond refuses it too).
pub fn migrate(path: &Path, registry: &Registry) -> Result<Migration, ParseError> {
    let mut root = configobj::read(path)?;
    let base = path.parent().unwrap_or(Path::new("")).to_owned();
    let mut t = Translator {
        registry,
        notes: Vec::new(),
        tables: Vec::new(),
        base,
    };
    t.merge_configs(&mut root)?;
    let Some(server) = root.section("server").cloned() else {
        return Err(ParseError {
            file: path.to_owned(),
            line: None,
            message: "no [server] section: this is not a Diamond configuration \
                      (Diamond refuses it too)"
                .into(),
        });
    };
    t.merge_dir(&mut root, &server, "collectors_config_path", "collectors")?;
    t.merge_dir(&mut root, &server, "handlers_config_path", "handlers")?;
    Ok(t.translate(&root, &server, path))
}

/// The configuration being written: tables in order.
struct Translator<'r> {
    registry: &'r Registry,
    notes: Vec<Note>,
    tables: Vec<Table>,
    /// The main file's directory: relative paths are taken from it.
    base: PathBuf,
}

impl Translator<'_> {
    fn note(
        &mut self,
        kind: NoteKind,
        origin: &Origin,
        section: &str,
        option: Option<&str>,
        message: impl Into<String>,
    ) {
        self.notes.push(Note {
            origin: origin.clone(),
            section: section.to_owned(),
            option: option.map(str::to_owned),
            kind,
            message: message.into(),
        });
    }

    fn skip(&mut self, section: &str, e: &Entry, message: impl Into<String>) {
        self.note(
            NoteKind::NotTranslated,
            &e.origin,
            section,
            Some(&e.key),
            message,
        );
    }

    fn tell(&mut self, section: &str, e: &Entry, message: impl Into<String>) {
        self.note(NoteKind::Note, &e.origin, section, Some(&e.key), message);
    }

    fn resolve(&self, dir: &str) -> PathBuf {
        let dir = Path::new(dir);
        if dir.is_relative() {
            self.base.join(dir)
        } else {
            dir.to_owned()
        }
    }

    fn translate(mut self, root: &Section, server: &Section, path: &Path) -> Migration {
        for e in &server.entries {
            match e.key.as_str() {
                "handlers" | "collectors_config_path" | "handlers_config_path" => {}
                // Empty: Diamond kept the user and group it was started as.
                "user" | "group" if single(e).trim().is_empty() => {}
                _ => {
                    let reason = server_reason(&e.key);
                    self.skip("[server]", e, reason);
                }
            }
        }
        let empty = Section {
            name: String::new(),
            origin: root.origin.clone(),
            entries: Vec::new(),
            sections: Vec::new(),
        };
        let collectors = root.section("collectors").unwrap_or(&empty);
        let default = collectors.section("default").unwrap_or(&empty);
        self.agent(default, &collectors.origin);
        let count = self.collectors(collectors, default);
        let outputs = self.handlers(root.section("handlers").unwrap_or(&empty), server);
        for section in &root.sections {
            match section.name.as_str() {
                "server" | "collectors" | "handlers" | "configs" => {}
                name => {
                    let label = section_label(&[name]);
                    let reason = if name == "loggers"
                        || name == "formatters"
                        || name.starts_with("logger_")
                        || name.starts_with("handler_")
                        || name.starts_with("formatter_")
                    {
                        "Python logging configuration: carat logs to standard error (agent.log_level, RUST_LOG)"
                    } else {
                        "not a section Diamond's agent reads"
                    };
                    for e in &section.entries {
                        self.skip(&label, e, reason);
                    }
                }
            }
        }
        for e in &root.entries {
            self.skip("(top level)", e, "not in a section Diamond reads");
        }
        Migration {
            toml: self.render(path),
            notes: self.notes,
            collectors: count,
            outputs,
        }
    }

    /// The TOML text: a header, then the tables in order.
    fn render(&self, path: &Path) -> String {
        let shown: String = path
            .display()
            .to_string()
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        let mut out = format!(
            "## carat configuration written by `carat migrate-diamond` from\n\
             ## {shown}\n\
             ## Options it could not translate were listed on standard error.\n\
             ## Check it with `carat check-config -c <this file>`, and see what it\n\
             ## publishes with `carat once -c <this file>`.\n"
        );
        for table in &self.tables {
            out.push('\n');
            if table.array {
                out.push_str(&format!("[[{}]]\n", table.header));
            } else {
                out.push_str(&format!("[{}]\n", table.header));
            }
            for (key, value) in &table.entries {
                out.push_str(&format!("{key} = {value}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
