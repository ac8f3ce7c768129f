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
//!
//! A component is at most [`MAX_COMPONENT_LEN`] (200) characters: carbon
//! stores each metric in a file named after its last component (`.wsp`
//! added) in directories named after the others, and file systems refuse
//! names over 255 bytes. A longer component keeps its first 183 characters
//! and ends with `_` and the 16 hex digits of the 64-bit FNV-1a hash of the
//! whole sanitised component, so two long names that differ only after the
//! cut stay two metrics. The hash is fixed (it ends up in dashboards): the
//! same name gives the same component on every host and in every version.
//!
//! ```
//! use carat_collector::name::{component, MAX_COMPONENT_LEN};
//! let long = "x".repeat(300);
//! let c = component(&long);
//! assert_eq!(c.len(), MAX_COMPONENT_LEN);
//! assert!(c.starts_with(&"x".repeat(183)));
//! assert_eq!(&c[183..], "_e78ddf9f1ba85555");
//! ```

use std::fmt::Write as _;

/// The longest path component, in characters (all ASCII, so also bytes).
pub const MAX_COMPONENT_LEN: usize = 200;

/// Length of the hash suffix of a cut component: `_` and 16 hex digits.
const HASH_SUFFIX_LEN: usize = 17;

/// True for the characters a path component may hold as they are.
#[inline]
fn is_allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Appends `part` to `out` as one path component: every character outside
/// `[A-Za-z0-9_-]`, dots included, becomes `_`. An empty part becomes `_`, so
/// a component is never empty; a long one is cut to [`MAX_COMPONENT_LEN`]
/// (see the [module documentation](self)).
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
    // Most names are short and clean already: copy them in one go.
    if part.len() <= MAX_COMPONENT_LEN
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        out.push_str(part);
        return;
    }
    let start = out.len();
    out.extend(part.chars().map(|c| if is_allowed(c) { c } else { '_' }));
    cap_component(out, start);
}

/// Cuts the component that starts at byte `start` of `out` (the end of
/// `out`, already sanitised, so ASCII) to [`MAX_COMPONENT_LEN`], ending it
/// with the hash of the whole of it.
fn cap_component(out: &mut String, start: usize) {
    let Some(component) = out.get(start..) else {
        return;
    };
    if component.len() <= MAX_COMPONENT_LEN {
        return;
    }
    let hash = fnv1a_64(component.as_bytes());
    out.truncate(start + MAX_COMPONENT_LEN - HASH_SUFFIX_LEN);
    // Writing to a String cannot fail.
    let _ = write!(out, "_{hash:016x}");
}

/// The 64-bit FNV-1a hash: tiny, and fixed by its definition, so a cut
/// name is the same on every host and in every version.
fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
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
    fn fnv1a_matches_the_published_test_vectors() {
        // From the reference implementation's test suite (isthe.com/chongo).
        assert_eq!(fnv1a_64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn long_components_are_cut_and_stay_distinct() {
        let exact = "e".repeat(MAX_COMPONENT_LEN);
        assert_eq!(component(&exact), exact, "at the limit: unchanged");

        let a = format!("{}a", "v".repeat(299));
        let b = format!("{}b", "v".repeat(299));
        let (ca, cb) = (component(&a), component(&b));
        assert_ne!(ca, cb, "names differing after the cut stay distinct");
        for c in [&ca, &cb] {
            assert_eq!(c.len(), MAX_COMPONENT_LEN);
            assert!(c.starts_with(&"v".repeat(183)), "{c}");
            assert!(c.chars().all(is_allowed), "{c}");
        }
        // The hash is of the sanitised name, so what sanitises alike is cut
        // alike, and cutting again changes nothing.
        let spaced = format!("{} x", "v".repeat(298));
        let underscored = format!("{}_x", "v".repeat(298));
        assert_eq!(component(&spaced), component(&underscored));
        assert_eq!(component(&ca), ca);
        // Non-ASCII characters become one `_` each before the cut.
        let wide = "é".repeat(250);
        assert_eq!(component(&wide).len(), MAX_COMPONENT_LEN);
        // Fixed forever: this value is in dashboards.
        assert_eq!(
            component(&"x".repeat(300)),
            format!("{}_e78ddf9f1ba85555", "x".repeat(183))
        );
    }

    #[test]
    fn paths_cut_each_component() {
        let long = "p".repeat(250);
        let p = path(&format!("short.{long}.also_short"));
        let parts: Vec<_> = p.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "short");
        assert_eq!(parts[1].len(), MAX_COMPONENT_LEN);
        assert_eq!(parts[2], "also_short");
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
