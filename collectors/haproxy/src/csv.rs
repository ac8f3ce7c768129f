//! Splitting HAProxy's stats CSV into records and fields.
//!
//! The format (HAProxy's management guide, "CSV format"): one record per
//! line, fields separated by commas, and a field is put in double quotes
//! only when its text is ambiguous (it holds a comma or a quote); a quote
//! inside quotes is doubled. Every line ends with `\n`, so a body whose last
//! line does not is a body that was cut short.
//!
//! Fields are borrowed from the text; only a quoted field holding a doubled
//! quote is copied.

use std::borrow::Cow;
use std::fmt;

/// Why a body is not well-formed CSV.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CsvError {
    /// The last line does not end with a newline: the body was cut short.
    NoNewline {
        /// The line where the unfinished record starts.
        line: usize,
    },
    /// A quoted field is not closed before the end of the body.
    UnterminatedQuote {
        /// The line where the record starts.
        line: usize,
    },
    /// A quote where none may be: inside an unquoted field, or followed by
    /// something other than a comma or the end of the line.
    StrayQuote {
        /// The line where the record starts.
        line: usize,
    },
}

impl CsvError {
    /// The line the error is about (1-based).
    pub fn line(&self) -> usize {
        match *self {
            CsvError::NoNewline { line }
            | CsvError::UnterminatedQuote { line }
            | CsvError::StrayQuote { line } => line,
        }
    }
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CsvError::NoNewline { line } => {
                write!(
                    f,
                    "line {line}: truncated (the line does not end with a newline)"
                )
            }
            CsvError::UnterminatedQuote { line } => {
                write!(f, "line {line}: truncated (a quoted field is never closed)")
            }
            CsvError::StrayQuote { line } => {
                write!(f, "line {line}: malformed (a quote inside an unquoted field or after a closing quote)")
            }
        }
    }
}

/// Reads the records of a CSV text one by one. Empty lines are skipped
/// (the stats socket ends its answer with one).
#[derive(Clone, Debug)]
pub struct Records<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Records<'a> {
    /// A reader at the start of `text`.
    pub fn new(text: &'a str) -> Self {
        Records {
            text,
            pos: 0,
            line: 1,
        }
    }

    /// Reads the next record's fields into `fields` (cleared first) and
    /// returns the line it starts on, or `None` at the end of the text.
    pub fn next_into(&mut self, fields: &mut Vec<Cow<'a, str>>) -> Result<Option<usize>, CsvError> {
        fields.clear();
        let text = self.text;
        loop {
            let Some(rest) = text.get(self.pos..).filter(|r| !r.is_empty()) else {
                return Ok(None);
            };
            let (len, newline) = match rest.find('\n') {
                Some(i) => (i, true),
                None => (rest.len(), false),
            };
            let raw = &rest[..len];
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let start = self.line;
            if line.is_empty() {
                self.pos += len + usize::from(newline);
                self.line += 1;
                continue;
            }
            if line.contains('"') {
                return self.quoted_record(fields, start).map(Some);
            }
            if !newline {
                return Err(CsvError::NoNewline { line: start });
            }
            fields.extend(line.split(',').map(Cow::Borrowed));
            self.pos += len + 1;
            self.line += 1;
            return Ok(Some(start));
        }
    }

    /// The slow path for a record with a quote somewhere: field by field,
    /// allowing commas and newlines inside quotes.
    fn quoted_record(
        &mut self,
        fields: &mut Vec<Cow<'a, str>>,
        start: usize,
    ) -> Result<usize, CsvError> {
        let text = self.text;
        let bytes = text.as_bytes();
        let mut i = self.pos;
        loop {
            if bytes.get(i) == Some(&b'"') {
                let (field, after) =
                    quoted_field(text, i + 1).ok_or(CsvError::UnterminatedQuote { line: start })?;
                fields.push(field);
                i = after;
            } else {
                let end = text[i..].find([',', '\n']).map_or(text.len(), |n| i + n);
                let mut field = &text[i..end];
                if bytes.get(end) == Some(&b'\n') {
                    field = field.strip_suffix('\r').unwrap_or(field);
                }
                if field.contains('"') {
                    return Err(CsvError::StrayQuote { line: start });
                }
                fields.push(Cow::Borrowed(field));
                i = end;
            }
            match bytes.get(i) {
                Some(b',') => i += 1,
                Some(b'\n') => return Ok(self.finish(i + 1)),
                Some(b'\r') if bytes.get(i + 1) == Some(&b'\n') => return Ok(self.finish(i + 2)),
                None => return Err(CsvError::NoNewline { line: start }),
                Some(_) => return Err(CsvError::StrayQuote { line: start }),
            }
        }
    }

    /// Moves past a record that ends just before `next`, counting its lines.
    fn finish(&mut self, next: usize) -> usize {
        let start = self.line;
        self.line += self.text[self.pos..next].matches('\n').count();
        self.pos = next;
        start
    }
}

/// The quoted field whose text starts at `from` (just after the opening
/// quote): its unescaped text and the position after the closing quote.
fn quoted_field(text: &str, from: usize) -> Option<(Cow<'_, str>, usize)> {
    let mut owned: Option<String> = None;
    let mut seg = from;
    loop {
        let q = seg + text[seg..].find('"')?;
        if text.as_bytes().get(q + 1) == Some(&b'"') {
            // A doubled quote: keep one.
            owned
                .get_or_insert_with(String::new)
                .push_str(&text[seg..=q]);
            seg = q + 2;
            continue;
        }
        let field = match owned {
            Some(mut s) => {
                s.push_str(&text[seg..q]);
                Cow::Owned(s)
            }
            None => Cow::Borrowed(&text[from..q]),
        };
        return Some((field, q + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Result<Vec<(usize, Vec<String>)>, CsvError> {
        let mut r = Records::new(text);
        let mut fields = Vec::new();
        let mut out = Vec::new();
        while let Some(line) = r.next_into(&mut fields)? {
            out.push((line, fields.iter().map(|f| f.to_string()).collect()));
        }
        Ok(out)
    }

    fn row(line: usize, fields: &[&str]) -> (usize, Vec<String>) {
        (line, fields.iter().map(|f| f.to_string()).collect())
    }

    #[test]
    fn plain_records_and_trailing_empty_field() {
        assert_eq!(
            all("# a,b,\nx,1,\n\ny,,\n\n").unwrap(),
            [
                row(1, &["# a", "b", ""]),
                row(2, &["x", "1", ""]),
                row(4, &["y", "", ""])
            ]
        );
        assert_eq!(all("").unwrap(), []);
        assert_eq!(all("\n\n").unwrap(), []);
        assert_eq!(
            all("a,b\r\nc,d\r\n").unwrap(),
            [row(1, &["a", "b"]), row(2, &["c", "d"])]
        );
    }

    #[test]
    fn quoted_fields() {
        assert_eq!(
            all("a,\"x, y\",\"say \"\"hi\"\"\",\"\",z\nb,\"two\nlines\",c\nd,e\n").unwrap(),
            [
                row(1, &["a", "x, y", "say \"hi\"", "", "z"]),
                row(2, &["b", "two\nlines", "c"]),
                row(4, &["d", "e"]),
            ]
        );
        assert_eq!(
            all("\"a\"\r\nb\n").unwrap(),
            [row(1, &["a"]), row(2, &["b"])]
        );
    }

    #[test]
    fn truncated_and_malformed() {
        assert_eq!(all("a,b\nc,d"), Err(CsvError::NoNewline { line: 2 }));
        assert_eq!(
            all("a,b\nc,\"d"),
            Err(CsvError::UnterminatedQuote { line: 2 })
        );
        assert_eq!(
            all("a,b\nc,\"d\"\n\ne,\"f\n"),
            Err(CsvError::UnterminatedQuote { line: 4 })
        );
        assert_eq!(all("a,\"b\""), Err(CsvError::NoNewline { line: 1 }));
        assert_eq!(all("a,b\"c\n"), Err(CsvError::StrayQuote { line: 1 }));
        assert_eq!(all("a,\"b\"c\n"), Err(CsvError::StrayQuote { line: 1 }));
        assert!(CsvError::NoNewline { line: 7 }
            .to_string()
            .starts_with("line 7: truncated"));
    }
}
