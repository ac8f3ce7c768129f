//! `[collectors][[default]]` → `[agent]`.

use super::configobj::{Origin, Section};
use super::values::{boolean, collector_reason, number, number_value, single, text, Table};
use super::{NoteKind, Translator, DIAMOND_INTERVAL};

impl Translator<'_> {
    /// `[collectors][[default]]` → `[agent]`.
    pub(super) fn agent(&mut self, default: &Section, collectors_origin: &Origin) {
        const SECTION: &str = "[collectors][[default]]";
        let mut agent = Table::new("agent");
        for e in &default.entries {
            match e.key.as_str() {
                "hostname" | "path_prefix" | "path_suffix" => {
                    if e.key == "hostname"
                        && default
                            .get("hostname_method")
                            .is_some_and(|m| single(m).trim().eq_ignore_ascii_case("shell"))
                    {
                        continue;
                    }
                    agent.set(&e.key, text(&single(e)));
                }
                "hostname_method" => {
                    let method = single(e).trim().to_ascii_lowercase();
                    if method == "shell" {
                        let command = default.get("hostname").map(single).unwrap_or_default();
                        self.skip(
                            SECTION,
                            e,
                            format!(
                                "carat does not run a command for its host name: set \
                                 agent.hostname to what `{command}` prints (or to \
                                 \"${{HOSTNAME_FOR_METRICS}}\" and set that variable)"
                            ),
                        );
                    } else if matches!(
                        method.as_str(),
                        "smart"
                            | "fqdn_short"
                            | "fqdn"
                            | "fqdn_rev"
                            | "uname_short"
                            | "uname_rev"
                            | "hostname"
                            | "hostname_short"
                            | "hostname_rev"
                            | "none"
                    ) {
                        agent.set("hostname_method", text(&method));
                    } else {
                        self.skip(
                            SECTION,
                            e,
                            format!("`{method}` is not a hostname_method Diamond or carat has"),
                        );
                    }
                }
                "interval" | "splay" => match number(e) {
                    Ok(n) if e.key == "interval" && !(0.01..=86_400.0).contains(&n) => self.skip(
                        SECTION,
                        e,
                        format!("{n} s is outside carat's range, 0.01 to 86400 seconds"),
                    ),
                    Ok(n) if !(0.0..=86_400.0).contains(&n) => self.skip(
                        SECTION,
                        e,
                        format!("{n} s is outside carat's range, 0 to 86400 seconds"),
                    ),
                    Ok(n) => agent.set(&e.key, number_value(n)),
                    Err(m) => self.skip(SECTION, e, m),
                },
                // Used by each collector (see `collector_common`).
                "enabled" | "byte_unit" | "metrics_whitelist" | "metrics_blacklist" => {
                    if e.key == "enabled" && boolean(e) == Ok(true) {
                        self.tell(
                            SECTION,
                            e,
                            "enabled = True ran every collector installed with Diamond; \
                             carat runs only the collectors written here: those with a \
                             section in the Diamond configuration",
                        );
                    }
                }
                other => {
                    let reason = collector_reason("every", other);
                    let reason = if reason.starts_with("carat's every") {
                        "not an option carat's agent or collectors have".to_owned()
                    } else {
                        reason
                    };
                    self.skip(SECTION, e, reason);
                }
            }
        }
        if !agent.has("interval") {
            let origin = default.origin.clone();
            let origin = if origin.line == 0 {
                collectors_origin.clone()
            } else {
                origin
            };
            self.note(
                NoteKind::Note,
                &origin,
                SECTION,
                Some("interval"),
                "not set: written as Diamond's default, 300 s (carat's own default is 10 s; \
                 carbon's storage schemas were set for Diamond's)",
            );
            agent.set("interval", number_value(DIAMOND_INTERVAL));
        }
        self.tables.push(agent);
    }

    /// The agent's value of `key` (as written in `[[default]]`), for a
    /// collector's own value to be compared with.
    pub(super) fn agent_value(&self, key: &str) -> Option<toml::Value> {
        self.tables
            .first()
            .and_then(|t| t.entries.iter().find(|(k, _)| k == key))
            .map(|(_, v)| v.clone())
    }
}
