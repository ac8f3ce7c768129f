//! Finding the host name that goes into metric paths, the way Diamond does,
//! so a host keeps its dashboard paths when it switches agents.

use serde::Deserialize;

/// Diamond's `hostname_method` values.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HostnameMethod {
    /// The short FQDN; the short host name when that is `localhost`.
    #[default]
    Smart,
    /// The first label of the FQDN.
    FqdnShort,
    /// The FQDN, its labels becoming path components.
    Fqdn,
    /// The FQDN with its labels reversed (`com.example.web01`).
    FqdnRev,
    /// The first label of uname's node name.
    UnameShort,
    /// uname's node name reversed.
    UnameRev,
    /// The host name as the kernel has it.
    Hostname,
    /// The first label of the host name.
    HostnameShort,
    /// The host name reversed.
    HostnameRev,
    /// No host component at all.
    None,
}

/// What the host is called, looked up once at start.
struct Names {
    hostname: String,
    fqdn: String,
}

fn lookup() -> Names {
    let hostname = dns_lookup::get_hostname().unwrap_or_else(|e| {
        tracing::warn!("cannot read the host name ({e}); using `localhost`");
        "localhost".to_owned()
    });
    let fqdn = canonical_name(&hostname).unwrap_or_else(|| hostname.clone());
    Names { hostname, fqdn }
}

/// The canonical name the resolver gives `host` (from /etc/hosts or DNS),
/// as `hostname --fqdn` does.
fn canonical_name(host: &str) -> Option<String> {
    let hints = dns_lookup::AddrInfoHints {
        flags: libc_ai_canonname(),
        ..dns_lookup::AddrInfoHints::default()
    };
    let mut answers = dns_lookup::getaddrinfo(Some(host), None, Some(hints)).ok()?;
    answers
        .find_map(|a| a.ok().and_then(|a| a.canonname))
        .filter(|n| !n.is_empty())
}

/// `AI_CANONNAME`, which is 2 on Linux and the BSDs alike.
const fn libc_ai_canonname() -> i32 {
    2
}

fn first_label(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

fn reversed(name: &str) -> String {
    name.split('.').rev().collect::<Vec<_>>().join(".")
}

/// The host part of metric paths for `method` (a dotted path; it is
/// sanitised component by component when paths are built).
pub fn resolve(method: HostnameMethod) -> String {
    if method == HostnameMethod::None {
        return String::new();
    }
    resolve_from(method, &lookup())
}

fn resolve_from(method: HostnameMethod, names: &Names) -> String {
    match method {
        HostnameMethod::Smart => {
            let short = first_label(&names.fqdn);
            if short.is_empty() || short == "localhost" {
                first_label(&names.hostname).to_owned()
            } else {
                short.to_owned()
            }
        }
        HostnameMethod::FqdnShort => first_label(&names.fqdn).to_owned(),
        HostnameMethod::Fqdn => names.fqdn.clone(),
        HostnameMethod::FqdnRev => reversed(&names.fqdn),
        // uname's node name is the kernel's host name, as gethostname reads it.
        HostnameMethod::UnameShort | HostnameMethod::HostnameShort => {
            first_label(&names.hostname).to_owned()
        }
        HostnameMethod::UnameRev | HostnameMethod::HostnameRev => reversed(&names.hostname),
        HostnameMethod::Hostname => names.hostname.clone(),
        HostnameMethod::None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(hostname: &str, fqdn: &str) -> Names {
        Names {
            hostname: hostname.into(),
            fqdn: fqdn.into(),
        }
    }

    #[test]
    fn smart_takes_the_short_fqdn() {
        let n = names("web01", "web01.dc1.example.com");
        assert_eq!(resolve_from(HostnameMethod::Smart, &n), "web01");
        assert_eq!(
            resolve_from(HostnameMethod::Fqdn, &n),
            "web01.dc1.example.com"
        );
        assert_eq!(
            resolve_from(HostnameMethod::FqdnRev, &n),
            "com.example.dc1.web01"
        );
    }

    #[test]
    fn smart_falls_back_when_fqdn_is_localhost() {
        let n = names("db3.internal", "localhost.localdomain");
        assert_eq!(resolve_from(HostnameMethod::Smart, &n), "db3");
        assert_eq!(resolve_from(HostnameMethod::FqdnShort, &n), "localhost");
        assert_eq!(resolve_from(HostnameMethod::Hostname, &n), "db3.internal");
        assert_eq!(resolve_from(HostnameMethod::HostnameShort, &n), "db3");
        assert_eq!(
            resolve_from(HostnameMethod::HostnameRev, &n),
            "internal.db3"
        );
    }

    #[test]
    fn the_real_host_has_a_name() {
        assert!(!resolve(HostnameMethod::Smart).is_empty());
        assert_eq!(resolve(HostnameMethod::None), "");
    }
}
