//! Metric names: sanitising parts that come from outside the process.
//!
//! Graphite's plaintext protocol is `path value timestamp\n`: a space or a
//! newline inside a path would add a field or a line to the wire. Every name
//! that reaches an output goes through these functions, so no hostname, proxy
//! name, queue name or SQL result can change the shape of what is sent.
//!
//! The allowed characters are ASCII letters, digits, `_` and `-` (Diamond's
//! rule for names taken from outside); everything else becomes `_`. Dots
//! separate path components: [`push_component`] turns a dot inside one
//! component into `_`, while [`push_path`] keeps dots as separators and drops
//! the empty components that leading, trailing or doubled dots would make.

/// True for the characters a path component may hold as they are.
#[inline]
fn is_allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Appends `part` to `out` as one path component: every character outside
/// `[A-Za-z0-9_-]`, dots included, becomes `_`. An empty part becomes `_`, so
/// a component is never empty.
///
/// ```
/// let mut s = String::new();
/// carat_collector::name::push_component(&mut s, "web 01.example\n");
/// assert_eq!(s, "web_01_example_");
/// ```
pub fn push_component(out: &mut String, part: &str) {
    if part.is_empty() {
        out.push('_');
        return;
    }
    // Most names are clean already: copy them in one go.
    if part
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        out.push_str(part);
        return;
    }
    out.extend(part.chars().map(|c| if is_allowed(c) { c } else { '_' }));
}

/// Returns `part` sanitised as one path component (see [`push_component`]).
pub fn component(part: &str) -> String {
    let mut s = String::with_capacity(part.len());
    push_component(&mut s, part);
    s
}

/// Appends a dotted path to `out`, sanitising each component and dropping
/// empty ones (`"a..b."` → `"a.b"`). A separating dot is written before the
/// first component when `out` is not empty. Returns false, writing nothing,
/// when the path has no component at all.
///
/// ```
/// let mut s = String::from("servers");
/// assert!(carat_collector::name::push_path(&mut s, ".web 1..cpu."));
/// assert_eq!(s, "servers.web_1.cpu");
/// ```
pub fn push_path(out: &mut String, path: &str) -> bool {
    let mut wrote = false;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push('.');
        }
        push_component(out, part);
        wrote = true;
    }
    wrote
}

/// Returns `path` with each dotted component sanitised and empty components
/// dropped (see [`push_path`]).
pub fn path(path: &str) -> String {
    let mut s = String::with_capacity(path.len());
    push_path(&mut s, path);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_never_hold_separators_or_whitespace() {
        for nasty in [
            "a b",
            "a\nb",
            "a\r\nb",
            "a\tb",
            "a.b",
            "a\u{0}b",
            "é",
            "a\u{2028}b",
            "a\u{a0}b",
        ] {
            let c = component(nasty);
            assert!(
                c.chars().all(is_allowed),
                "component({nasty:?}) = {c:?} holds a disallowed character"
            );
            assert!(!c.is_empty());
        }
        assert_eq!(component(""), "_");
        assert_eq!(component("eth0"), "eth0");
        assert_eq!(component("dm-0"), "dm-0");
    }

    #[test]
    fn paths_drop_empty_components() {
        assert_eq!(path("..a...b.."), "a.b");
        assert_eq!(path("total.user"), "total.user");
        assert_eq!(path("a b.c\nd"), "a_b.c_d");
        assert_eq!(path(""), "");
        assert_eq!(path("..."), "");
        let mut s = String::from("x");
        assert!(!push_path(&mut s, ".."));
        assert_eq!(s, "x");
    }

    #[test]
    fn every_char_maps_to_a_safe_one() {
        // Exhaustive over the Basic Multilingual Plane and a sample beyond it.
        for cp in (0u32..0x1_0000).chain([0x1F600, 0x10FFFF]) {
            let Some(ch) = char::from_u32(cp) else {
                continue;
            };
            let s = ch.to_string();
            let p = path(&s);
            assert!(p.chars().all(|c| is_allowed(c) || c == '.'), "{cp:#x}");
            assert!(!p.contains(' ') && !p.contains('\n'));
        }
    }
}
