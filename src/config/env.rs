//! `${NAME}` substitution in string values, so secrets can live in the
//! environment (a systemd `EnvironmentFile`) instead of the config file.
//!
//! Substitution happens on parsed string values, never on the file's text, so
//! a variable's value cannot change the structure of the configuration.
//!
//! - `${NAME}`: the value of `NAME`; an error if it is not set.
//! - `${NAME:-default}`: `default` when `NAME` is unset or empty.
//! - `$${`: a literal `${`.

/// Expands `${…}` references in `input` using `lookup`. Returns the new
/// string, or `None` when there is nothing to expand (the common case).
pub fn expand(
    input: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, String> {
    if !input.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(stripped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = stripped;
        } else if let Some(body_start) = after.strip_prefix("${") {
            let Some(end) = body_start.find('}') else {
                return Err(format!("unterminated `${{` in {input:?}"));
            };
            let body = &body_start[..end];
            let (name, default) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (body, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`${{{body}}}` is not a valid variable reference"));
            }
            match (
                lookup(name).filter(|v| !v.is_empty() || default.is_none()),
                default,
            ) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!("environment variable `{name}` is not set"));
                }
            }
            rest = &body_start[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PASS" => Some("s3cret \"quoted\"\n".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_variables_verbatim() {
        assert_eq!(
            expand("p=${PASS}!", env).unwrap().as_deref(),
            Some("p=s3cret \"quoted\"\n!")
        );
        assert_eq!(expand("plain", env).unwrap(), None);
        assert_eq!(expand("cost $5", env).unwrap(), None);
    }

    #[test]
    fn defaults_and_escapes() {
        assert_eq!(expand("${NOPE:-x}", env).unwrap().as_deref(), Some("x"));
        assert_eq!(expand("${EMPTY:-x}", env).unwrap().as_deref(), Some("x"));
        assert_eq!(expand("${EMPTY}", env).unwrap().as_deref(), Some(""));
        assert_eq!(expand("$${PASS}", env).unwrap().as_deref(), Some("${PASS}"));
    }

    #[test]
    fn unset_or_malformed_is_an_error() {
        assert!(expand("${NOPE}", env).unwrap_err().contains("NOPE"));
        assert!(expand("${PASS", env).is_err());
        assert!(expand("${a b}", env).is_err());
    }
}
