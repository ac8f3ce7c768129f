//! A reader for the subset of Python's configobj INI dialect that Diamond's
//! configuration files use: `key = value` lines, nested sections whose depth
//! is the number of brackets (`[collectors]`, `[[CPUCollector]]`,
//! `[[[process]]]`), comma-separated lists, quoted strings (no escapes, as
//! in configobj), triple-quoted values that may span lines, and `#`
//! comments. There is no well-kept Rust crate for configobj, and Diamond
//! uses little of it, so this is small and strict: what configobj itself
//! refuses (a bad line, a section nested too deep, a duplicate key or
//! section) is an error naming the file and line.
//!
//! Values are kept as configobj gives them to Diamond, strings or lists of
//! strings: what a string means (a boolean, a number) is the translator's
//! business, as it was each Diamond collector's.

use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Where an entry or a section was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The file it was read from.
    pub file: Rc<Path>,
    /// Its line, from 1.
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A value as configobj parses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// One string (quotes removed); `key =` gives the empty string.
    Single(String),
    /// Comma-separated items (`a, b`, or `a,` for a list of one).
    List(Vec<String>),
}

impl Value {
    /// The items of a list, or the string as a list of one (none when it is
    /// empty): how Diamond reads options that may be either.
    pub fn items(&self) -> Vec<String> {
        match self {
            Value::Single(s) if s.is_empty() => Vec::new(),
            Value::Single(s) => vec![s.clone()],
            Value::List(items) => items.clone(),
        }
    }
}

/// One `key = value` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The key, quotes removed.
    pub key: String,
    /// The parsed value.
    pub value: Value,
    /// The value's text as written, comment and surrounding blanks removed:
    /// for options Diamond reads as one string (a regex), which configobj
    /// would have split at its commas.
    pub raw: String,
    /// Where it was written.
    pub origin: Origin,
}

/// A section: the root of a file, `[name]`, `[[name]]`, …, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// The section's name (empty for a file's root).
    pub name: String,
    /// Where its header was (line 0 for a file's root).
    pub origin: Origin,
    /// Its `key = value` lines, in order.
    pub entries: Vec<Entry>,
    /// Its subsections, in order.
    pub sections: Vec<Section>,
}

impl Section {
    fn new(name: String, origin: Origin) -> Self {
        Section {
            name,
            origin,
            entries: Vec::new(),
            sections: Vec::new(),
        }
    }

    /// The entry for `key`.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// The subsection named `name`.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The subsection named `name`, created (empty, at `origin`) when missing.
    pub fn section_mut(&mut self, name: &str, origin: &Origin) -> &mut Section {
        let index = match self.sections.iter().position(|s| s.name == name) {
            Some(i) => i,
            None => {
                self.sections
                    .push(Section::new(name.to_owned(), origin.clone()));
                self.sections.len() - 1
            }
        };
        &mut self.sections[index]
    }

    /// configobj's `merge`: `other`'s entries replace those of the same key
    /// (an entry replaces a section of that name and the other way round),
    /// and sections present in both are merged in turn.
    pub fn merge(&mut self, other: &Section) {
        for entry in &other.entries {
            self.sections.retain(|s| s.name != entry.key);
            match self.entries.iter_mut().find(|e| e.key == entry.key) {
                Some(mine) => *mine = entry.clone(),
                None => self.entries.push(entry.clone()),
            }
        }
        for section in &other.sections {
            self.entries.retain(|e| e.key != section.name);
            match self.sections.iter_mut().find(|s| s.name == section.name) {
                Some(mine) => mine.merge(section),
                None => self.sections.push(section.clone()),
            }
        }
    }
}

/// A file that could not be read or parsed: its name, the line when there
/// is one, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The file.
    pub file: PathBuf,
    /// The line, from 1, when the problem is on one.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ParseError {}

/// Reads and parses the file at `path`.
pub fn read(path: &Path) -> Result<Section, ParseError> {
    let bytes = std::fs::read(path).map_err(|e| ParseError {
        file: path.to_owned(),
        line: None,
        message: format!("cannot read it: {e}"),
    })?;
    // Diamond's files are ASCII in practice; a stray Latin-1 byte in a
    // comment should not stop a migration, so it is replaced, not refused.
    let text = String::from_utf8_lossy(&bytes);
    parse(&text, path)
}

/// Parses configobj `text` as if read from `file`.
pub fn parse(text: &str, file: &Path) -> Result<Section, ParseError> {
    let file: Rc<Path> = Rc::from(file);
    let error = |line: usize, message: String| ParseError {
        file: file.to_path_buf(),
        line: Some(line),
        message,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();

    let mut root = Section::new(
        String::new(),
        Origin {
            file: file.clone(),
            line: 0,
        },
    );
    // The names of the open sections from the root down: the section that
    // receives the next entry is the last.
    let mut stack: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let number = i + 1;
        let line = lines[i].trim();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let origin = Origin {
            file: file.clone(),
            line: number,
        };
        if line.starts_with('[') {
            let (depth, name) = section_header(line).map_err(|m| error(number, m))?;
            if depth > stack.len() + 1 {
                return Err(error(
                    number,
                    format!(
                        "section [{name}] is nested too deep: {depth} brackets inside a \
                         section of {}",
                        stack.len()
                    ),
                ));
            }
            stack.truncate(depth - 1);
            let parent = open(&mut root, &stack);
            if parent.sections.iter().any(|s| s.name == name) {
                return Err(error(number, format!("duplicate section [{name}]")));
            }
            if parent.entries.iter().any(|e| e.key == name) {
                return Err(error(
                    number,
                    format!("section [{name}] has the name of a key of its parent"),
                ));
            }
            parent.sections.push(Section::new(name.clone(), origin));
            stack.push(name);
            continue;
        }
        let (key, rest) = key_and_rest(line).map_err(|m| error(number, m))?;
        let (value, raw) =
            if let Some(quote) = ["'''", "\"\"\""].into_iter().find(|q| rest.starts_with(q)) {
                // A triple-quoted value, possibly over several lines.
                let mut text = String::new();
                let mut current = &rest[3..];
                loop {
                    if let Some(end) = current.find(quote) {
                        text.push_str(&current[..end]);
                        let after = current[end + 3..].trim();
                        if !after.is_empty() && !after.starts_with('#') {
                            return Err(error(
                                number,
                                format!("text after the closing {quote} of key `{key}`"),
                            ));
                        }
                        break;
                    }
                    text.push_str(current);
                    text.push('\n');
                    if i >= lines.len() {
                        return Err(error(
                            number,
                            format!("the value of key `{key}` opens {quote} and never closes it"),
                        ));
                    }
                    current = lines[i];
                    i += 1;
                }
                (Value::Single(text.clone()), text)
            } else {
                parse_value(rest).map_err(|m| error(number, format!("key `{key}`: {m}")))?
            };
        let section = open(&mut root, &stack);
        if section.entries.iter().any(|e| e.key == key) {
            return Err(error(number, format!("duplicate key `{key}`")));
        }
        if section.sections.iter().any(|s| s.name == key) {
            return Err(error(
                number,
                format!("key `{key}` has the name of a section"),
            ));
        }
        section.entries.push(Entry {
            key,
            value,
            raw,
            origin,
        });
    }
    Ok(root)
}

/// The section at `path` below `root` (every name of it exists).
fn open<'a>(root: &'a mut Section, path: &[String]) -> &'a mut Section {
    let mut section = root;
    for name in path {
        let index = section
            .sections
            .iter()
            .position(|s| &s.name == name)
            .unwrap_or(0);
        section = &mut section.sections[index];
    }
    section
}

/// `[[name]]  # comment` → (2, "name").
fn section_header(line: &str) -> Result<(usize, String), String> {
    let depth = line.chars().take_while(|&c| c == '[').count();
    let rest = &line[depth..];
    let Some(close) = rest.find(']') else {
        return Err(format!("section header without `]`: {line}"));
    };
    let name = rest[..close].trim();
    let after = &rest[close..];
    let closing = after.chars().take_while(|&c| c == ']').count();
    if closing != depth {
        return Err(format!(
            "section header opens {depth} brackets and closes {closing}: {line}"
        ));
    }
    let tail = after[closing..].trim();
    if !tail.is_empty() && !tail.starts_with('#') {
        return Err(format!("text after the section header: {line}"));
    }
    let name = unquote(name).unwrap_or(name);
    if name.is_empty() {
        return Err(format!("section without a name: {line}"));
    }
    Ok((depth, name.to_owned()))
}

/// `key = value` → ("key", "value"); the key may be quoted.
fn key_and_rest(line: &str) -> Result<(String, &str), String> {
    let (key, rest) = match line.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let Some(end) = line[1..].find(q) else {
                return Err(format!("unterminated quoted key: {line}"));
            };
            let key = &line[1..1 + end];
            let rest = line[2 + end..].trim_start();
            let Some(rest) = rest.strip_prefix('=') else {
                return Err(format!("expected `=` after the key: {line}"));
            };
            (key.to_owned(), rest)
        }
        _ => {
            let Some(eq) = line.find('=') else {
                return Err(format!(
                    "not a `key = value` line nor a [section] header: {line}"
                ));
            };
            let key = line[..eq].trim();
            if key.is_empty() {
                return Err(format!("a value without a key: {line}"));
            }
            (key.to_owned(), &line[eq + 1..])
        }
    };
    Ok((key, rest.trim()))
}

/// The text between matching quotes, when `s` is exactly one quoted string.
fn unquote(s: &str) -> Option<&str> {
    let q = s.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let inner = s.strip_prefix(q)?.strip_suffix(q)?;
    (!inner.contains(q)).then_some(inner)
}

/// Parses a value (after `=`): a string, or a comma-separated list whose
/// items are quoted or not; an unquoted `#` starts a comment. Returns the
/// value and its text without the comment.
fn parse_value(text: &str) -> Result<(Value, String), String> {
    let mut items: Vec<String> = Vec::new();
    let mut commas = 0;
    let mut rest = text.trim_start();
    let mut raw_end = 0;
    let start_len = text.len() - rest.len();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() || rest.starts_with('#') {
            break;
        }
        let (item, after) = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let Some(end) = rest[1..].find(q) else {
                    return Err(format!("unterminated {q}quoted{q} string"));
                };
                (rest[1..1 + end].to_owned(), &rest[2 + end..])
            }
            _ => {
                let end = rest.find([',', '#']).unwrap_or(rest.len());
                let item = rest[..end].trim_end();
                if item.is_empty() {
                    // configobj's empty list is a lone comma; an empty item
                    // anywhere else (`a,,b`) is a parse error there too.
                    let after = rest[1..].trim_start();
                    if items.is_empty() && (after.is_empty() || after.starts_with('#')) {
                        return Ok((Value::List(Vec::new()), ",".to_owned()));
                    }
                    return Err(format!("an empty item in a list: {}", text.trim()));
                }
                (item.to_owned(), &rest[end..])
            }
        };
        items.push(item);
        rest = after.trim_start();
        raw_end = text.len() - rest.len();
        match rest.chars().next() {
            None | Some('#') => break,
            Some(',') => {
                commas += 1;
                rest = &rest[1..];
                raw_end = text.len() - rest.len();
            }
            Some(_) => {
                return Err(format!(
                    "text after a quoted string (a comma is needed between items): {}",
                    text.trim()
                ))
            }
        }
    }
    let raw = text[start_len..raw_end.max(start_len)].trim().to_owned();
    let value = if commas == 0 {
        Value::Single(items.pop().unwrap_or_default())
    } else {
        Value::List(items)
    };
    Ok((value, raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Section {
        parse(text, Path::new("test.conf")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn parse_err(text: &str) -> ParseError {
        match parse(text, Path::new("test.conf")) {
            Ok(s) => panic!("parsed: {s:?}"),
            Err(e) => e,
        }
    }

    fn value(section: &Section, key: &str) -> Value {
        section
            .get(key)
            .unwrap_or_else(|| panic!("no key {key}"))
            .value
            .clone()
    }

    fn single(s: &str) -> Value {
        Value::Single(s.to_owned())
    }

    fn list(items: &[&str]) -> Value {
        Value::List(items.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn nested_sections_follow_their_bracket_count() {
        let root = parse_ok(
            "top = 1\n[server]\nhandlers = a\n[collectors]\n[[default]]\ninterval = 10\n\
             [[ProcessResourcesCollector]]\nenabled = True\n[[[process]]]\n[[[[nginx]]]]\n\
             exe = ^/usr/sbin/nginx$\n[[CPUCollector]]\npercore = False\n[handlers]\nkeys = x\n",
        );
        assert_eq!(value(&root, "top"), single("1"));
        let collectors = root.section("collectors").unwrap();
        assert_eq!(collectors.origin.line, 4);
        let names: Vec<_> = collectors.sections.iter().map(|s| &s.name).collect();
        assert_eq!(
            names,
            ["default", "ProcessResourcesCollector", "CPUCollector"]
        );
        let nginx = collectors
            .section("ProcessResourcesCollector")
            .and_then(|p| p.section("process"))
            .and_then(|p| p.section("nginx"))
            .unwrap();
        assert_eq!(value(nginx, "exe"), single("^/usr/sbin/nginx$"));
        assert_eq!(
            value(collectors.section("CPUCollector").unwrap(), "percore"),
            single("False")
        );
        assert_eq!(
            value(root.section("handlers").unwrap(), "keys"),
            single("x")
        );
        let entry = collectors
            .section("default")
            .unwrap()
            .get("interval")
            .unwrap();
        assert_eq!(entry.origin.line, 6);
    }

    #[test]
    fn lists_quotes_and_comments() {
        let root = parse_ok(concat!(
            "a = eth, bond , em\n",
            "b = one,\n",
            "c = 'x, y', \"z # not a comment\"\n",
            "d = value # a comment\n",
            "e =\n",
            "f = \"quoted # kept\"  # comment\n",
            "g = ('/var/log/diamond.log', 'midnight', 1, 7)\n",
            "h = [%(asctime)s] %(message)s\n",
            "'quoted key' = 1\n",
            "  # indented comment\n",
            "i = ,\n",
            "j = '''one\ntwo'''\n",
        ));
        assert_eq!(value(&root, "a"), list(&["eth", "bond", "em"]));
        assert_eq!(value(&root, "b"), list(&["one"]));
        assert_eq!(value(&root, "c"), list(&["x, y", "z # not a comment"]));
        assert_eq!(value(&root, "d"), single("value"));
        assert_eq!(root.get("d").unwrap().raw, "value");
        assert_eq!(value(&root, "e"), single(""));
        assert_eq!(value(&root, "f"), single("quoted # kept"));
        assert_eq!(
            value(&root, "g"),
            list(&["('/var/log/diamond.log'", "midnight", "1", "7)"])
        );
        assert_eq!(value(&root, "h"), single("[%(asctime)s] %(message)s"));
        assert_eq!(value(&root, "quoted key"), single("1"));
        assert_eq!(value(&root, "i"), list(&[]));
        assert_eq!(value(&root, "j"), single("one\ntwo"));
        // The raw text keeps what configobj split: a regex with a comma.
        let root = parse_ok("r = ^cpu[0-9]{1,2}$  # per core\n");
        assert_eq!(value(&root, "r"), list(&["^cpu[0-9]{1", "2}$"]));
        assert_eq!(root.get("r").unwrap().raw, "^cpu[0-9]{1,2}$");
    }

    #[test]
    fn booleans_are_strings_for_the_translator() {
        let root = parse_ok("a = True\nb = off\nc = 0\n");
        assert_eq!(value(&root, "a"), single("True"));
        assert_eq!(value(&root, "b"), single("off"));
        assert_eq!(value(&root, "c"), single("0"));
    }

    #[test]
    fn crlf_and_a_byte_order_mark_are_accepted() {
        let root = parse_ok("\u{feff}[server]\r\nhandlers = a, b\r\n");
        assert_eq!(
            value(root.section("server").unwrap(), "handlers"),
            list(&["a", "b"])
        );
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let e = parse_err("[server]\nhandlers = a\njust some words\n");
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("not a `key = value` line"), "{e}");
        assert!(e.to_string().starts_with("test.conf:3: "), "{e}");

        let e = parse_err("[a]\n[[[b]]]\n");
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("nested too deep"), "{e}");

        let e = parse_err("[a]\nx = 1\nx = 2\n");
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("duplicate key `x`"), "{e}");

        let e = parse_err("[a]\n[b]\n[a]\n");
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("duplicate section [a]"), "{e}");

        let e = parse_err("[[a]\n");
        assert!(e.message.contains("opens 2 brackets and closes 1"), "{e}");

        let e = parse_err("\n\nx = 'open\n");
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("unterminated"), "{e}");

        let e = parse_err("x = 'a' b\n");
        assert!(e.message.contains("text after a quoted string"), "{e}");

        let e = parse_err("x = '''never\nclosed\n");
        assert_eq!(e.line, Some(1));
        assert!(e.message.contains("never closes"), "{e}");

        let e = parse_err("x = a,,b\n");
        assert!(e.message.contains("an empty item"), "{e}");

        let e = parse_err("= 1\n");
        assert!(e.message.contains("without a key"), "{e}");
    }

    #[test]
    fn a_section_may_close_several_levels_at_once() {
        let root = parse_ok("[a]\n[[b]]\n[[[c]]]\nx = 1\n[d]\ny = 2\n");
        assert_eq!(value(root.section("d").unwrap(), "y"), single("2"));
        let c = root
            .section("a")
            .and_then(|a| a.section("b"))
            .and_then(|b| b.section("c"))
            .unwrap();
        assert_eq!(value(c, "x"), single("1"));
    }

    #[test]
    fn merge_replaces_keys_and_merges_sections() {
        let mut base = parse_ok("a = 1\nb = 2\n[s]\nx = 1\n[[t]]\ny = 1\n");
        let other = parse_ok("b = 3\nc = 4\n[s]\nz = 5\n[[t]]\ny = 2\n");
        base.merge(&other);
        assert_eq!(value(&base, "a"), single("1"));
        assert_eq!(value(&base, "b"), single("3"));
        assert_eq!(value(&base, "c"), single("4"));
        let s = base.section("s").unwrap();
        assert_eq!(value(s, "x"), single("1"));
        assert_eq!(value(s, "z"), single("5"));
        assert_eq!(value(s.section("t").unwrap(), "y"), single("2"));
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_it() {
        let e = read(Path::new("/nonexistent/diamond.conf")).unwrap_err();
        assert_eq!(e.line, None);
        assert!(
            e.to_string()
                .starts_with("/nonexistent/diamond.conf: cannot read it:"),
            "{e}"
        );
    }
}
