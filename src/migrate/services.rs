//! The service collectors with their own shapes: HAProxy, MongoDB and
//! RabbitMQ.

use super::configobj::Section;
use super::values::{
    boolean, collector_reason, env_name, number, number_value, regexes, single, strings, text,
    words, Table,
};
use super::{NoteKind, Translator};

impl Translator<'_> {
    /// HAProxy: one instance, or one per entry of Diamond's `servers`, each
    /// a subsection whose options override the collector's.
    pub(super) fn haproxy(&mut self, section: &Section, label: &str) -> Vec<(String, Table)> {
        let servers = section.get("servers").map(|e| e.value.items());
        let names: Vec<Option<String>> = match &servers {
            Some(list) if !list.is_empty() => list.iter().cloned().map(Some).collect(),
            _ => vec![None],
        };
        let mut out = Vec::new();
        let mut used: Vec<String> = Vec::new();
        for name in names {
            let sub = name.as_deref().and_then(|n| section.section(n));
            let lookup = |key: &str| sub.and_then(|s| s.get(key)).or_else(|| section.get(key));
            let here = match (&name, sub) {
                (Some(n), Some(_)) => format!("{label}[[[{n}]]]"),
                _ => label.to_owned(),
            };
            let mut t = Table::new("");
            let method = lookup("method")
                .map(single)
                .unwrap_or_else(|| "http".into());
            if method.trim().eq_ignore_ascii_case("unix") {
                let sock = lookup("sock")
                    .map(single)
                    .unwrap_or_else(|| "/var/run/haproxy.sock".into());
                t.set("socket", text(&sock));
            } else {
                let url = lookup("url")
                    .map(single)
                    .unwrap_or_else(|| "http://localhost/haproxy?stats;csv".into());
                if url.split("//").nth(1).is_some_and(|rest| {
                    rest.split('/')
                        .next()
                        .is_some_and(|host| host.contains('@'))
                }) {
                    if let Some(e) = lookup("url") {
                        self.skip(
                            &here,
                            e,
                            "credentials in the URL: carat refuses them; give user and pass \
                             instead (the instance is left out)",
                        );
                    }
                    continue;
                }
                t.set("url", text(&url));
                match (lookup("user"), lookup("pass")) {
                    (Some(user), pass) => {
                        t.set("username", text(&single(user)));
                        if let Some(pass) = pass {
                            let var = match &name {
                                Some(n) => env_name(&["haproxy", n, "password"]),
                                None => env_name(&["haproxy", "password"]),
                            };
                            self.secret(&mut t, "password", &var, &here, pass);
                        }
                    }
                    (None, Some(pass)) => self.skip(
                        &here,
                        pass,
                        "a password without a user: carat sends credentials only with a username",
                    ),
                    (None, None) => {
                        let origin = sub.map_or(&section.origin, |s| &s.origin);
                        self.note(
                            NoteKind::Note,
                            origin,
                            &here,
                            Some("user"),
                            "not set: Diamond sent its default credentials admin/password; \
                             carat sends none unless username and password are set",
                        );
                    }
                }
            }
            if let Some(e) = lookup("ignore_servers") {
                match boolean(e) {
                    Ok(b) => t.set("ignore_servers", toml::Value::Boolean(b)),
                    Err(m) => self.skip(&here, e, m),
                }
            }
            if let Some(s) = sub {
                for e in &s.entries {
                    if !matches!(
                        e.key.as_str(),
                        "method" | "url" | "sock" | "user" | "pass" | "ignore_servers"
                    ) {
                        self.skip(&here, e, collector_reason("haproxy", &e.key));
                    }
                }
            }
            match name {
                None => {
                    // One unnamed instance: its options go in [collector.haproxy].
                    out.push((String::new(), t));
                }
                Some(n) => {
                    // Diamond published each under the section's name in
                    // lower case (`haproxy.<server>.…`).
                    let mut c = carat_collector::name::component(&n.to_lowercase());
                    while used.contains(&c) {
                        c.push('_');
                    }
                    used.push(c.clone());
                    out.push((c, t));
                }
            }
        }
        for sub in &section.sections {
            let listed = servers.as_ref().is_some_and(|s| s.contains(&sub.name));
            if !listed {
                self.note(
                    NoteKind::NotTranslated,
                    &sub.origin,
                    &format!("{label}[[[{}]]]", sub.name),
                    None,
                    "not in the collector's servers list, so Diamond did not read it",
                );
            }
        }
        out
    }

    pub(super) fn mongodb(&mut self, table: &mut Table, section: &Section, label: &str) {
        let get = |k: &str| section.get(k);
        if let Some(host) = get("host") {
            // Diamond's older option: it replaces hosts.
            table.set("hosts", strings(&[single(host).trim().to_owned()]));
            if let Some(hosts) = get("hosts") {
                self.skip(label, hosts, "host is set too, and Diamond used host");
            }
        } else if let Some(hosts) = get("hosts") {
            table.set("hosts", strings(&words(hosts)));
        }
        if let Some(user) = get("user") {
            table.set("username", text(&single(user)));
        }
        if let Some(pass) = get("passwd") {
            if get("user").is_some() {
                self.secret(
                    table,
                    "password",
                    &env_name(&["mongodb", "password"]),
                    label,
                    pass,
                );
            } else {
                self.skip(label, pass, "a password without a user");
            }
        }
        match get("databases") {
            Some(e) => match regexes(vec![single(e)]) {
                Ok(r) if r[0].is_empty() => {}
                Ok(r) => {
                    table.set("databases", strings(&r));
                    table.set("collection_stats", toml::Value::Boolean(true));
                    self.tell(
                        label,
                        e,
                        "Diamond read dbStats and collStats of the matching databases: written \
                         with collection_stats = true (one command per collection per run)",
                    );
                }
                Err(m) => self.skip(label, e, m),
            },
            None => {
                table.set("databases", strings(&[".*".to_owned()]));
                table.set("collection_stats", toml::Value::Boolean(true));
                self.note(
                    NoteKind::Note,
                    &section.origin,
                    label,
                    Some("databases"),
                    "not set: Diamond read dbStats and collStats of every database (.*); \
                     written so (carat's own default reads none: remove them to save a \
                     command per collection per run)",
                );
            }
        }
        if let Some(e) = get("ignore_collections") {
            match regexes(vec![single(e)]) {
                Ok(r) => table.set("ignore_collections", strings(&r)),
                Err(m) => self.skip(label, e, m),
            }
        }
        for (diamond, carat) in [
            ("simple", "simple"),
            ("replace_dashes_in_metric_keys", "replace_dashes"),
            ("replica", "replica"),
            ("ssl", "tls"),
        ] {
            if let Some(e) = get(diamond) {
                match boolean(e) {
                    Ok(b) => table.set(carat, toml::Value::Boolean(b)),
                    Err(m) => self.skip(label, e, m),
                }
            }
        }
        if let Some(e) = get("network_timeout") {
            match number(e) {
                // Diamond's is in milliseconds.
                Ok(ms) if ms > 0.0 && ms <= 600_000.0 => {
                    table.set("request_timeout", number_value(ms / 1000.0));
                }
                Ok(_) => self.skip(label, e, "outside carat's range, more than 0 to 600 s"),
                Err(m) => self.skip(label, e, m),
            }
        }
        self.no_subsections(section, label, "mongodb");
    }

    pub(super) fn rabbitmq(&mut self, table: &mut Table, section: &Section, label: &str) {
        let get = |k: &str| section.get(k);
        let scheme = get("scheme").map(single).unwrap_or_else(|| "http".into());
        let scheme = scheme.trim().to_ascii_lowercase();
        match get("host") {
            Some(host) => {
                table.set("url", text(&format!("{scheme}://{}", single(host).trim())));
            }
            None => {
                table.set("url", text(&format!("{scheme}://localhost:55672")));
                self.note(
                    NoteKind::Note,
                    &section.origin,
                    label,
                    Some("host"),
                    "not set: written as Diamond's default, localhost:55672 (RabbitMQ 2's \
                     management port; RabbitMQ 3 and later listen on 15672)",
                );
            }
        }
        if let Some(user) = get("user") {
            table.set("username", text(&single(user)));
        }
        if let Some(pass) = get("password") {
            self.secret(
                table,
                "password",
                &env_name(&["rabbitmq", "password"]),
                label,
                pass,
            );
        }
        if let Some(e) = get("queues") {
            let queues = words(e);
            if !queues.is_empty() {
                table.set("queues", strings(&queues));
            }
        }
        if let Some(e) = get("queues_ignored") {
            // Diamond matched them at the start of the name (re.match);
            // carat searches anywhere, so each is anchored.
            let anchored: Vec<String> = single(e)
                .split_whitespace()
                .map(|r| {
                    if r.starts_with('^') {
                        r.to_owned()
                    } else {
                        format!("^(?:{r})")
                    }
                })
                .collect();
            match regexes(anchored) {
                Ok(r) if r.is_empty() => {}
                Ok(r) => table.set("queues_exclude", strings(&r)),
                Err(m) => self.skip(label, e, m),
            }
        }
        for key in ["replace_dot", "replace_slash"] {
            if let Some(e) = get(key) {
                let value = single(e);
                // Diamond's default False means no replacement.
                if !matches!(value.trim().to_ascii_lowercase().as_str(), "false" | "") {
                    table.set(key, text(&value));
                }
            }
        }
        for sub in &section.sections {
            let sub_label = format!("{label}[[[{}]]]", sub.name);
            if sub.name != "vhosts" {
                self.note(
                    NoteKind::NotTranslated,
                    &sub.origin,
                    &sub_label,
                    None,
                    "carat's rabbitmq collector has no such subsection",
                );
                continue;
            }
            let mut vhosts = Vec::new();
            for e in &sub.entries {
                vhosts.push(format!("^{}$", regex::escape(&e.key)));
                let queues = words(e);
                if queues != ["*"] {
                    self.skip(
                        &sub_label,
                        e,
                        "carat reads the same queues in every vhost: only the vhost is \
                         translated (set queues or queues_include for the queues)",
                    );
                }
            }
            if !vhosts.is_empty() {
                table.set("vhosts", strings(&vhosts));
            }
        }
    }
}
