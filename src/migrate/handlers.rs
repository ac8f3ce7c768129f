//! Diamond handlers → carat outputs.

use super::configobj::{Entry, Section};
use super::values::{number, number_value, section_label, single, text, Table};
use super::{NoteKind, Translator};

impl Translator<'_> {
    /// `[server] handlers` → outputs; returns how many were written.
    pub(super) fn handlers(&mut self, handlers: &Section, server: &Section) -> usize {
        const SECTION: &str = "[handlers]";
        for e in &handlers.entries {
            let reason = if e.key == "keys" {
                "Python logging handlers: carat logs to standard error (agent.log_level, RUST_LOG)"
            } else {
                "not an option of Diamond's handlers"
            };
            self.skip(SECTION, e, reason);
        }
        let empty = Section {
            name: String::new(),
            origin: handlers.origin.clone(),
            entries: Vec::new(),
            sections: Vec::new(),
        };
        let default = handlers.section("default").unwrap_or(&empty);
        let mut outputs: Vec<(String, Table)> = Vec::new();
        let listed = server.get("handlers");
        let classes: Vec<String> = listed.map(|e| e.value.items()).unwrap_or_default();
        for class in &classes {
            let name = class.trim().rsplit('.').next().unwrap_or("").to_owned();
            let Some(entry) = listed else { continue };
            let mut config = default.clone();
            let section = handlers.section(&name);
            if let Some(s) = section {
                config.merge(s);
            }
            let label = section_label(&["handlers", &name]);
            let (kind, protocol) = match name.as_str() {
                "GraphiteHandler" => ("graphite", None),
                "GraphitePickleHandler" => ("graphite", Some("pickle")),
                "StatsdHandler" => ("statsd", None),
                "NullHandler" => continue,
                _ => {
                    let why = match name.as_str() {
                        "ArchiveHandler" => "carat has no ArchiveHandler (a log file of every metric): `carat once`, or an [output.stdout] table, prints the lines",
                        _ => "",
                    };
                    let message = if why.is_empty() {
                        format!("carat has no {name}")
                    } else {
                        why.to_owned()
                    };
                    self.note(
                        NoteKind::NotTranslated,
                        &entry.origin,
                        "[server]",
                        Some("handlers"),
                        format!("{class}: {message}"),
                    );
                    continue;
                }
            };
            let mut t = Table::new(kind);
            if let Some(p) = protocol {
                t.set("protocol", text(p));
                // carat's default port is the plaintext one.
                t.set("port", toml::Value::Integer(2004));
            }
            for e in &config.entries {
                self.handler_option(kind, &mut t, e, &label);
            }
            if kind == "statsd" && !t.has("port") {
                self.note(
                    NoteKind::Note,
                    section.map_or(&entry.origin, |s| &s.origin),
                    &label,
                    Some("port"),
                    "not set: carat's statsd output sends to 8125; check that is where \
                     Diamond sent",
                );
            }
            for s in &config.sections {
                self.note(
                    NoteKind::NotTranslated,
                    &s.origin,
                    &format!("{label}[[[{}]]]", s.name),
                    None,
                    "handlers have no subsections",
                );
            }
            let instance = match name.as_str() {
                "GraphitePickleHandler" => "pickle",
                "GraphiteHandler" => "graphite",
                _ => "statsd",
            };
            outputs.push((instance.to_owned(), t));
        }
        if outputs.is_empty() {
            let origin = listed.map_or(&server.origin, |e| &e.origin);
            self.note(
                NoteKind::Note,
                &origin.clone(),
                "[server]",
                Some("handlers"),
                "no handler was translated, so the configuration has no output: add an \
                 [output.graphite] table before `carat run` (`carat once` runs without)",
            );
        }
        // One output of a kind is [output.<kind>]; several (a plaintext and
        // a pickle handler) are named instances of it.
        let n = outputs.len();
        let kinds: Vec<String> = outputs.iter().map(|(_, t)| t.header.clone()).collect();
        for (instance, mut t) in outputs {
            let kind = t.header.clone();
            let several = kinds.iter().filter(|k| **k == kind).count() > 1;
            t.header = if several {
                format!("output.{kind}.{instance}")
            } else {
                format!("output.{kind}")
            };
            self.tables.push(t);
        }
        n
    }

    pub(super) fn handler_option(&mut self, kind: &str, t: &mut Table, e: &Entry, label: &str) {
        let key = e.key.as_str();
        let result: Result<(), String> = match (kind, key) {
            (_, "host") => {
                t.set("host", text(single(e).trim()));
                Ok(())
            }
            (_, "port") => number(e).and_then(|n| {
                if n.fract() == 0.0 && (1.0..=65_535.0).contains(&n) {
                    t.set("port", number_value(n));
                    Ok(())
                } else {
                    Err(format!("`{}` is not a port", e.raw))
                }
            }),
            ("graphite", "timeout") => number(e).and_then(|n| {
                if (0.01..=600.0).contains(&n) {
                    t.set("timeout", number_value(n));
                    Ok(())
                } else {
                    Err(format!("{n} s is outside carat's range, 0.01 to 600 seconds"))
                }
            }),
            ("graphite", "proto") => {
                let proto = single(e).trim().to_ascii_lowercase();
                let pickle = t.entries.iter().any(|(k, v)| k == "protocol" && *v == text("pickle"));
                match proto.as_str() {
                    "tcp" | "tcp4" | "tcp6" if !pickle => {
                        t.set("protocol", text("tcp"));
                        if proto != "tcp" {
                            Err(format!("{proto}: carat uses the addresses the host name resolves to, of either family (written as tcp)"))
                        } else {
                            Ok(())
                        }
                    }
                    "udp" | "udp4" | "udp6" if !pickle => {
                        t.set("protocol", text("udp"));
                        if proto != "udp" {
                            Err(format!("{proto}: carat uses the addresses the host name resolves to, of either family (written as udp)"))
                        } else {
                            Ok(())
                        }
                    }
                    "tcp" if pickle => Ok(()),
                    _ => Err(format!("`{proto}` is not a protocol carat's graphite output has here")),
                }
            }
            (_, "batch") => Err("carat writes each collector run as soon as it has it (in writes of up to batch_size lines); Diamond's batch, metrics held before sending, has no equivalent".into()),
            ("graphite", "max_backlog_multiplier" | "trim_backlog_multiplier") => Err("carat keeps up to max_buffered lines (default 100000) while carbon is away, and a disk spool with spool_dir".into()),
            ("graphite", "keepalive" | "keepaliveinterval") => Err("carat's graphite output has no TCP keepalive option; it checks the connection before each write".into()),
            ("graphite", "flow_info" | "scope_id") => Err("IPv6 flow and scope ids are not options of carat's graphite output".into()),
            (_, "server_error_interval") => Err("carat logs a failing output once per burst".into()),
            _ => Err(format!("carat's {kind} output has no such option")),
        };
        if let Err(m) = result {
            self.skip(label, e, m);
        }
    }
}
