//! Diamond collectors → `[collector.<kind>]` tables, with their options.

use super::configobj::{Entry, Section};
use super::values::{
    boolean, byte_unit, collector_reason, number, number_value, regexes, section_label, single,
    strings, text, words, Table,
};
use super::{NoteKind, Translator, COLLECTORS};

/// Where Diamond's `UserScriptsCollector` looks for scripts by default.
const DIAMOND_SCRIPTS_PATH: &str = "/etc/diamond/user_scripts/";

/// Its default path: `.`, the metrics right under the host name.
const DIAMOND_USER_SCRIPTS_PATH: &str = ".";

impl Translator<'_> {
    /// Every collector section; returns how many instances were written.
    pub(super) fn collectors(&mut self, collectors: &Section, default: &Section) -> usize {
        let default_enabled = default
            .get("enabled")
            .is_some_and(|e| boolean(e) == Ok(true));
        let mut count = 0;
        for e in &collectors.entries {
            self.skip(
                "[collectors]",
                e,
                "options of collectors belong in [[default]] or a collector's section",
            );
        }
        for section in &collectors.sections {
            if section.name == "default" {
                continue;
            }
            let label = section_label(&["collectors", &section.name]);
            let enabled = match section.get("enabled").map(|e| (e, boolean(e))) {
                Some((_, Ok(b))) => b,
                Some((e, Err(m))) => {
                    self.skip(&label, e, format!("{m}: the collector is left out"));
                    false
                }
                None => default_enabled,
            };
            if !enabled {
                // Diamond does not run it: nothing to translate.
                continue;
            }
            let kind = COLLECTORS
                .iter()
                .find(|(name, _)| *name == section.name)
                .map(|(_, kind)| *kind);
            let Some(kind) = kind.filter(|k| self.registry.get(k).is_some()) else {
                let message = match (section.name.as_str(), kind) {
                    (_, Some(kind)) => format!(
                        "this build of carat has no {kind} collector (built without its cargo feature)"
                    ),
                    ("SocketsCollector", None) => "Diamond has no SocketsCollector: its socket counts are SockstatCollector's (carat's sockets)".to_owned(),
                    (name, None) => format!("carat has no {name}"),
                };
                self.note(
                    NoteKind::NotTranslated,
                    &section.origin,
                    &label,
                    None,
                    message,
                );
                continue;
            };
            count += self.collector(kind, section, default, &label);
        }
        count
    }

    /// One enabled collector; returns how many instances were written.
    pub(super) fn collector(
        &mut self,
        kind: &str,
        section: &Section,
        default: &Section,
        label: &str,
    ) -> usize {
        let Some(info) = self.registry.get(kind) else {
            return 0;
        };
        let takes = |option: &str| info.options.contains(&option);
        let default_path = info.default_path;
        let mut table = Table::new(format!("collector.{kind}"));
        let mut extra: Vec<Table> = Vec::new();

        // What [[default]] gives every collector.
        for key in ["metrics_whitelist", "metrics_blacklist"] {
            if let Some(e) = default.get(key) {
                if section.get(key).is_none() {
                    self.pattern(&mut table, key, e, "[collectors][[default]]");
                }
            }
        }
        if takes("byte_unit") && section.get("byte_unit").is_none() {
            if let Some(e) = default.get("byte_unit") {
                byte_unit(kind, &mut table, e);
            }
        }

        let mut instances: Vec<(String, Table)> = Vec::new();
        for e in &section.entries {
            let key = e.key.as_str();
            match key {
                "enabled" => {}
                "interval" | "splay" => match number(e) {
                    Ok(n) if key == "interval" && !(0.01..=86_400.0).contains(&n) => self.skip(
                        label,
                        e,
                        format!("{n} s is outside carat's range, 0.01 to 86400 seconds"),
                    ),
                    Ok(n) if !(0.0..=86_400.0).contains(&n) => self.skip(
                        label,
                        e,
                        format!("{n} s is outside carat's range, 0 to 86400 seconds"),
                    ),
                    Ok(n) => {
                        let inherited = if key == "interval" {
                            self.agent_value("interval")
                        } else {
                            self.agent_value("splay")
                        };
                        if inherited.as_ref() != Some(&number_value(n)) {
                            table.set(key, number_value(n));
                        }
                    }
                    Err(m) => self.skip(label, e, m),
                },
                "path" => {
                    let path = single(e);
                    if path != default_path {
                        table.set("path", text(&path));
                    }
                }
                "metrics_whitelist" | "metrics_blacklist" => {
                    self.pattern(&mut table, key, e, label);
                }
                "hostname" | "hostname_method" | "path_prefix" | "path_suffix" => {
                    let agent = self.agent_value(key);
                    let mine = if key == "hostname_method" {
                        text(&single(e).trim().to_ascii_lowercase())
                    } else {
                        text(&single(e))
                    };
                    let same = match &agent {
                        Some(v) => *v == mine,
                        None => match key {
                            "path_prefix" => mine == text("servers"),
                            "path_suffix" => mine == text(""),
                            "hostname_method" => mine == text("smart"),
                            _ => false,
                        },
                    };
                    if !same {
                        self.skip(
                            label,
                            e,
                            format!(
                                "carat has one {key} for every collector ([agent]); this \
                                 collector's metrics move to the agent's"
                            ),
                        );
                    }
                }
                "byte_unit" if takes("byte_unit") => byte_unit(kind, &mut table, e),
                _ => self.kind_option(kind, &mut table, e, label),
            }
        }
        match kind {
            "process" => {
                let groups = self.process_groups(section, label);
                if groups.is_empty() {
                    self.note(
                        NoteKind::NotTranslated,
                        &section.origin,
                        label,
                        None,
                        "no process group carat can use ([[[process]]] subsections with exe, \
                         name or cmdline): the collector is left out",
                    );
                    return 0;
                }
                extra = groups;
            }
            "haproxy" => {
                let mut all = self.haproxy(section, label);
                if all.is_empty() {
                    return 0;
                }
                if all.len() == 1 && all[0].0.is_empty() {
                    // One unnamed instance: its options go in [collector.haproxy].
                    for (key, value) in all.remove(0).1.entries {
                        table.set(&key, value);
                    }
                } else {
                    instances = all;
                }
            }
            "rabbitmq" => self.rabbitmq(&mut table, section, label),
            "exec" => {
                instances = self.user_scripts(&mut table, section, label);
                if instances.is_empty() {
                    return 0;
                }
            }
            "mongodb" => self.mongodb(&mut table, section, label),
            _ => self.no_subsections(section, label, kind),
        }
        let n = instances.len().max(1);
        self.tables.push(table);
        for (name, mut instance) in instances {
            instance.header = format!("collector.{kind}.{name}");
            self.tables.push(instance);
        }
        self.tables.extend(extra);
        n
    }

    /// A collector's `metrics_whitelist`/`metrics_blacklist`: one regex in
    /// Diamond, matched at the start of the name as carat does.
    pub(super) fn pattern(&mut self, table: &mut Table, key: &str, e: &Entry, label: &str) {
        let regex = single(e);
        if regex.is_empty() {
            return;
        }
        match regexes(vec![regex]) {
            Ok(r) => table.set(key, strings(&r)),
            Err(m) => self.skip(label, e, m),
        }
    }

    /// The options of one kind that map one to one.
    pub(super) fn kind_option(&mut self, kind: &str, table: &mut Table, e: &Entry, label: &str) {
        let key = e.key.as_str();
        let result: Result<(), String> = match (kind, key) {
            ("cpu", "percore" | "normalize" | "simple")
            | ("memory", "detailed")
            | ("network", "greedy")
            | ("diskusage", "send_zero") => {
                boolean(e).map(|b| table.set(key, toml::Value::Boolean(b)))
            }
            ("uptime", "metric_name") => {
                table.set(key, text(single(e).trim()));
                Ok(())
            }
            ("diskspace", "filesystems") | ("tcp", "allowed_names" | "gauges") => {
                table.set(key, strings(&words(e)));
                Ok(())
            }
            ("diskspace", "exclude_filters") | ("network", "interfaces") => {
                // Each regex on its own: one carat cannot compile is left
                // out (and named), the others are kept.
                let mut kept = Vec::new();
                for item in e.value.items() {
                    match regexes(vec![item]) {
                        Ok(mut r) => kept.append(&mut r),
                        Err(m) => self.skip(label, e, m),
                    }
                }
                table.set(key, strings(&kept));
                Ok(())
            }
            ("diskusage", "devices") => {
                regexes(vec![single(e)]).map(|r| table.set(key, text(&r[0])))
            }
            ("diskusage", "sector_size") => number(e).and_then(|n| {
                if n.fract() == 0.0 && n > 0.0 {
                    table.set(key, number_value(n));
                    Ok(())
                } else {
                    Err(format!("`{}` is not a whole number of bytes", e.raw))
                }
            }),
            // Handled with the whole section below.
            (
                "haproxy",
                "method" | "url" | "sock" | "user" | "pass" | "ignore_servers" | "servers",
            )
            | (
                "mongodb",
                "host"
                | "hosts"
                | "user"
                | "passwd"
                | "databases"
                | "ignore_collections"
                | "simple"
                | "replace_dashes_in_metric_keys"
                | "replica"
                | "ssl"
                | "network_timeout",
            )
            | (
                "rabbitmq",
                "host" | "scheme" | "user" | "password" | "queues" | "queues_ignored"
                | "replace_dot" | "replace_slash",
            )
            | ("exec", "scripts_path") => Ok(()),
            _ => Err(collector_reason(kind, key)),
        };
        if let Err(m) = result {
            self.skip(label, e, m);
        }
    }

    /// `[[[process]]]` → `[[collector.process.groups]]`.
    pub(super) fn process_groups(&mut self, section: &Section, label: &str) -> Vec<Table> {
        let mut groups = Vec::new();
        for sub in &section.sections {
            let sub_label = format!("{label}[[[{}]]]", sub.name);
            if sub.name != "process" {
                self.note(
                    NoteKind::NotTranslated,
                    &sub.origin,
                    &sub_label,
                    None,
                    "carat's process collector reads groups from [[[process]]] only",
                );
                continue;
            }
            for e in &sub.entries {
                self.skip(
                    &sub_label,
                    e,
                    "options of a group belong in its [[[[name]]]] subsection",
                );
            }
            for group in &sub.sections {
                let group_label = format!("{sub_label}[[[[{}]]]]", group.name);
                let mut t = Table::new("collector.process.groups");
                t.array = true;
                t.set("name", text(&group.name));
                let mut matches = false;
                for e in &group.entries {
                    let carat_key = match e.key.as_str() {
                        "exe" => "exe",
                        "name" => "process_name",
                        "cmdline" => "cmdline",
                        "selfmon" => {
                            match boolean(e) {
                                Ok(b) => {
                                    matches |= b;
                                    t.set("selfmon", toml::Value::Boolean(b));
                                }
                                Err(m) => self.skip(&group_label, e, m),
                            }
                            continue;
                        }
                        _ => {
                            self.skip(
                                &group_label,
                                e,
                                "carat's process groups have no such option",
                            );
                            continue;
                        }
                    };
                    match regexes(e.value.items()) {
                        Ok(r) if !r.is_empty() => {
                            matches = true;
                            t.set(carat_key, strings(&r));
                        }
                        Ok(_) => {}
                        Err(m) => self.skip(&group_label, e, m),
                    }
                }
                for s in &group.sections {
                    self.note(
                        NoteKind::NotTranslated,
                        &s.origin,
                        &group_label,
                        Some(&s.name),
                        "a process group has no subsections",
                    );
                }
                if matches {
                    groups.push(t);
                } else {
                    self.note(
                        NoteKind::NotTranslated,
                        &group.origin,
                        &group_label,
                        None,
                        "the group has no exe, name, cmdline or selfmon carat can use: left out",
                    );
                }
            }
        }
        groups
    }

    /// `UserScriptsCollector` → one `exec` instance per executable file of
    /// its `scripts_path`, listed now, each published as Diamond did: at
    /// the collector's path, `.` by default (right under the host name),
    /// then the names the script prints.
    pub(super) fn user_scripts(
        &mut self,
        table: &mut Table,
        section: &Section,
        label: &str,
    ) -> Vec<(String, Table)> {
        if section.get("path").is_none() {
            table.set("path", text(DIAMOND_USER_SCRIPTS_PATH));
        }
        let dir = section
            .get("scripts_path")
            .map_or_else(|| DIAMOND_SCRIPTS_PATH.to_owned(), single);
        let dir = self.resolve(dir.trim());
        let mut files: Vec<std::path::PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                self.note(
                    NoteKind::NotTranslated,
                    &section.origin,
                    label,
                    Some("scripts_path"),
                    format!(
                        "cannot list {}: {e}: no exec instance written (run migrate-diamond where the scripts are)",
                        dir.display()
                    ),
                );
                return Vec::new();
            }
        };
        files.sort();
        let mut instances: Vec<(String, Table)> = Vec::new();
        for file in files {
            use std::os::unix::fs::PermissionsExt;
            let shown = file.display().to_string();
            let why = match std::fs::metadata(&file) {
                Ok(m) if !m.is_file() => Some("not a file"),
                Ok(m) if m.permissions().mode() & 0o111 == 0 => {
                    Some("not executable (Diamond skips it too)")
                }
                Ok(_) => None,
                Err(_) => Some("cannot be read"),
            };
            if let Some(why) = why {
                self.note(
                    NoteKind::NotTranslated,
                    &section.origin,
                    label,
                    Some("scripts_path"),
                    format!("{shown}: {why}: no exec instance for it"),
                );
                continue;
            }
            let stem = file
                .file_name()
                .map(|n| carat_collector::name::component(&n.to_string_lossy()))
                .unwrap_or_default();
            let mut name = stem.clone();
            let mut n = 1;
            while instances.iter().any(|(taken, _)| *taken == name) {
                n += 1;
                name = format!("{stem}_{n}");
            }
            let mut instance = Table::new(String::new());
            instance.set("command", strings(&[shown]));
            instances.push((name, instance));
        }
        self.note(
            NoteKind::Note,
            &section.origin,
            label,
            Some("scripts_path"),
            format!(
                "{}: {} scripts, each an instance of carat's exec collector, listed now                  (a script added later needs an instance of its own); their values are                  published as printed, not rounded to floatprecision",
                dir.display(),
                instances.len()
            ),
        );
        instances
    }

    pub(super) fn secret(
        &mut self,
        table: &mut Table,
        key: &str,
        var: &str,
        label: &str,
        e: &Entry,
    ) {
        table.set(key, toml::Value::String(format!("${{{var}}}")));
        self.tell(
            label,
            e,
            format!(
                "written as {key} = \"${{{var}}}\": set {var} in carat's environment to this \
                 value (the secret is not copied into the output)"
            ),
        );
    }

    pub(super) fn no_subsections(&mut self, section: &Section, label: &str, kind: &str) {
        for sub in &section.sections {
            self.note(
                NoteKind::NotTranslated,
                &sub.origin,
                &format!("{label}[[[{}]]]", sub.name),
                None,
                format!("carat's {kind} collector has no subsections"),
            );
        }
    }
}
