//! Turning HAProxy's stats CSV into samples: columns found by the header
//! row, Diamond's names, status codes, and counters for the rates.

use std::borrow::Cow;

use carat_collector::options::Filter;
use carat_collector::{Batch, CollectorError, CounterWidth};

use crate::csv::Records;

/// The suffix of the rate published next to each cumulative column.
pub const RATE_SUFFIX: &str = "_per_second";

/// Columns that count since HAProxy started (or since `clear counters all`):
/// each is published as it is and, with `rates`, as `<column>_per_second`.
/// Columns of later versions are listed too; a column a version does not
/// have is simply never seen.
pub const CUMULATIVE_COLUMNS: &[&str] = &[
    // Static fields, 1.4 and later.
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "chkfail",
    "chkdown",
    "downtime",
    "lbtot",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "hanafail",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    // 1.5 and later.
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    // 1.7 – 2.x.
    "conn_tot",
    "intercepted",
    "dcon",
    "dses",
    "wrew",
    "connect",
    "reuse",
    "cache_lookups",
    "cache_hits",
    "eint",
    // 2.8 and later.
    "sess_other",
    "h1sess",
    "h2sess",
    "h3sess",
    "req_other",
    "h1req",
    "h2req",
    "h3req",
    // Module fields (after the `-` column): SSL, HTTP/2, HTTP/1.
    "ssl_sess",
    "ssl_reused_sess",
    "ssl_failed_handshake",
    "h2_headers_rcvd",
    "h2_data_rcvd",
    "h2_settings_rcvd",
    "h2_rst_stream_rcvd",
    "h2_goaway_rcvd",
    "h2_detected_conn_protocol_errors",
    "h2_detected_strm_protocol_errors",
    "h2_rst_stream_resp",
    "h2_goaway_resp",
    "h2_total_connections",
    "h2_backend_total_streams",
    "h1_total_connections",
    "h1_total_streams",
    "h1_bytes_in",
    "h1_bytes_out",
    "h1_spliced_bytes_in",
    "h1_spliced_bytes_out",
];

/// Columns that hold text (names, addresses, descriptions): never
/// published, even when the text happens to look like a number (a cookie
/// value `1234`). `pxname` and `svname` make the metric path instead.
pub const TEXT_COLUMNS: &[&str] = &[
    "pxname",
    "svname",
    "-",
    "tracked",
    "last_chk",
    "last_agt",
    "check_desc",
    "agent_desc",
    "addr",
    "cookie",
    "mode",
    "algo",
    "proto",
];

/// `status` → number. See the README for the table and the reasons.
///
/// The first word decides, so the transitional states (`UP 1/3`: up but
/// failing checks, going down; `DOWN 1/2`: down but passing checks, going
/// up; `NOLB 1/3`, `DRAIN 1/3`) and the annotated ones (`MAINT (via b/s)`,
/// `MAINT(via)`, `MAINT (resolution)`, `DRAIN (agent)`, `DOWN (agent)`)
/// get the code of the state the server is in now: a server is taken out
/// of the pool only when its status turns `DOWN`. The progress of a
/// transition is in `check_health`.
pub fn status_code(status: &str) -> f64 {
    let status = status.trim();
    if status.eq_ignore_ascii_case("no check") {
        // Not health-checked: always considered up, and takes traffic.
        return 1.0;
    }
    let word = status
        .split(|c: char| c.is_ascii_whitespace() || c == '(')
        .next()
        .unwrap_or_default();
    let upper = |s: &str| word.eq_ignore_ascii_case(s);
    if upper("DOWN") {
        0.0
    } else if upper("UP") || upper("OPEN") {
        1.0
    } else if upper("MAINT") {
        2.0
    } else if upper("DRAIN") {
        3.0
    } else if upper("NOLB") {
        4.0
    } else if upper("FULL") {
        5.0
    } else if upper("STOP") {
        6.0
    } else if upper("PAUSED") {
        7.0
    } else if upper("WAITING") {
        8.0
    } else {
        -1.0
    }
}

/// `check_status` / `agent_status` → number. The tens give the layer
/// (4 TCP, 6 TLS, 7 application, 8 external command), the units the
/// outcome: 0 passed, 1 passed conditionally, 2 timed out, 3 connection or
/// protocol error, 4 bad status. A leading `* ` (a check in progress; the
/// status is the last known one) is ignored. Unknown text gives -1.
pub fn check_status_code(status: &str) -> f64 {
    let status = status.trim();
    let status = status.strip_prefix('*').map_or(status, str::trim_start);
    match status {
        "UNK" => 0.0,
        "INI" => 1.0,
        "CHECKED" => 2.0,
        "SOCKERR" => 3.0,
        "HANA" => 4.0,
        "L4OK" => 40.0,
        "L4TOUT" => 42.0,
        "L4CON" => 43.0,
        "L6OK" => 60.0,
        "L6TOUT" => 62.0,
        "L6RSP" => 63.0,
        "L7OK" => 70.0,
        "L7OKC" => 71.0,
        "L7TOUT" => 72.0,
        "L7RSP" => 73.0,
        "L7STS" => 74.0,
        "PROCOK" => 80.0,
        "PROCTOUT" => 82.0,
        "PROCERR" => 83.0,
        _ => -1.0,
    }
}

/// How a column is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Not published (text, the row's names, the `-` marker, no header name).
    Skip,
    /// `status`, as [`status_code`].
    Status,
    /// `check_status` or `agent_status`, as [`check_status_code`].
    CheckStatus,
    /// A number published as it is.
    Gauge,
    /// A number published as it is and, with `rates`, as a counter.
    Cumulative,
}

#[derive(Clone, Debug)]
struct Column {
    /// The sanitised, lowercased header name.
    name: String,
    /// `<name>_per_second`, for cumulative columns.
    rate_name: String,
    kind: Kind,
}

/// What a row describes, from its `type` column (or, in versions without
/// one, its `svname`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RowType {
    Frontend,
    Backend,
    Server,
    Listener,
}

/// Which rows are published.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    /// Only FRONTEND and BACKEND rows.
    pub ignore_servers: bool,
    /// By proxy name (`pxname`): `proxy_include` and `proxy_exclude`.
    pub proxies: Filter,
    /// Server (and listener) rows by `svname`: `server_include` and
    /// `server_exclude`. FRONTEND and BACKEND rows are not filtered by it.
    pub servers: Filter,
}

impl Filters {
    fn keep_proxy(&self, pxname: &str) -> bool {
        self.proxies.allows(pxname)
    }

    fn keep_server(&self, svname: &str) -> bool {
        self.servers.allows(svname)
    }
}

/// What one CSV gave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Data rows in the CSV.
    pub rows: usize,
    /// Rows published (after the filters).
    pub published_rows: usize,
}

/// Parses stats CSVs and adds their samples to a batch. Keeps the parsed
/// header between runs: HAProxy's column set changes only with its version.
#[derive(Clone, Debug)]
pub struct StatsCsv {
    filters: Filters,
    rates: bool,
    header: String,
    columns: Vec<Column>,
    type_column: Option<usize>,
    px: String,
    sv: String,
}

impl StatsCsv {
    /// A parser that publishes the rows `filters` let through, with
    /// `<column>_per_second` counters when `rates` is true.
    pub fn new(filters: Filters, rates: bool) -> Self {
        StatsCsv {
            filters,
            rates,
            header: String::new(),
            columns: Vec::new(),
            type_column: None,
            px: String::new(),
            sv: String::new(),
        }
    }

    /// Checks that `text` is a whole stats CSV, then adds its samples to
    /// `batch`. Nothing is added when the CSV is not whole: a truncated or
    /// malformed body is an error naming `origin` and the line, and an HTML
    /// page (or anything else that does not start with HAProxy's header
    /// row) is an error quoting its start.
    pub fn publish(
        &mut self,
        text: &str,
        origin: &str,
        batch: &mut Batch,
    ) -> Result<Summary, CollectorError> {
        check_starts_like_csv(text, origin)?;
        let mut records = Records::new(text);
        let mut fields: Vec<Cow<'_, str>> = Vec::with_capacity(self.columns.len().max(64));
        let parse_err = |e: crate::csv::CsvError| CollectorError::parse(origin, e.to_string());
        records.next_into(&mut fields).map_err(parse_err)?;
        self.read_header(&fields, origin)?;

        // First pass: the whole body is well formed and every row has the
        // header's number of fields. Only then is anything published.
        let body = records.clone();
        let mut rows = 0;
        while let Some(line) = records.next_into(&mut fields).map_err(parse_err)? {
            if fields.len() != self.columns.len() {
                return Err(CollectorError::parse(
                    origin,
                    format!(
                        "line {line}: {} fields, but the header row has {}: truncated or malformed",
                        fields.len(),
                        self.columns.len()
                    ),
                ));
            }
            rows += 1;
        }

        let mut records = body;
        let mut summary = Summary {
            rows,
            published_rows: 0,
        };
        let mut last_proxy: Option<(String, bool)> = None;
        while records.next_into(&mut fields).map_err(parse_err)?.is_some() {
            if self.publish_row(&fields, &mut last_proxy, batch) {
                summary.published_rows += 1;
            }
        }
        Ok(summary)
    }

    /// Parses the header row `fields` unless it is the one already parsed.
    fn read_header(&mut self, fields: &[Cow<'_, str>], origin: &str) -> Result<(), CollectorError> {
        let first = fields.first().map(|f| f.trim_start_matches('#').trim());
        let second = fields.get(1).map(|f| f.trim());
        if first != Some("pxname") || second != Some("svname") {
            return Err(CollectorError::parse(
                origin,
                "line 1: the header row does not start with `# pxname,svname`: not HAProxy's stats CSV",
            ));
        }
        let same = self.columns.len() == fields.len()
            && self
                .header
                .split(',')
                .zip(fields.iter())
                .all(|(a, b)| a == b.as_ref());
        if same {
            return Ok(());
        }
        self.header.clear();
        self.columns.clear();
        self.type_column = None;
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                self.header.push(',');
            }
            self.header.push_str(field);
            let raw = if i == 0 {
                field.trim_start_matches('#').trim()
            } else {
                field.trim()
            };
            let mut name = String::with_capacity(raw.len());
            carat_collector::name::push_component(&mut name, &raw.to_ascii_lowercase());
            let kind = if raw.is_empty() || TEXT_COLUMNS.contains(&raw) {
                Kind::Skip
            } else if raw == "status" {
                Kind::Status
            } else if raw == "check_status" || raw == "agent_status" {
                Kind::CheckStatus
            } else if CUMULATIVE_COLUMNS.contains(&raw) {
                Kind::Cumulative
            } else {
                Kind::Gauge
            };
            if raw == "type" {
                self.type_column = Some(i);
            }
            let rate_name = if kind == Kind::Cumulative {
                format!("{name}{RATE_SUFFIX}")
            } else {
                String::new()
            };
            self.columns.push(Column {
                name,
                rate_name,
                kind,
            });
        }
        Ok(())
    }

    /// Publishes one data row (already checked to have the header's number
    /// of fields); false when the filters leave it out.
    fn publish_row(
        &mut self,
        fields: &[Cow<'_, str>],
        last_proxy: &mut Option<(String, bool)>,
        batch: &mut Batch,
    ) -> bool {
        let (pxname, svname) = (fields[0].as_ref(), fields[1].as_ref());
        let row_type = self.row_type(fields, svname);
        let is_server = matches!(row_type, RowType::Server | RowType::Listener);
        if is_server && self.filters.ignore_servers {
            return false;
        }
        // Rows come grouped by proxy: match each proxy name once.
        let keep_proxy = match last_proxy {
            Some((name, keep)) if name == pxname => *keep,
            _ => {
                let keep = self.filters.keep_proxy(pxname);
                *last_proxy = Some((pxname.to_owned(), keep));
                keep
            }
        };
        if !keep_proxy || (is_server && !self.filters.keep_server(svname)) {
            return false;
        }
        lower_component(&mut self.px, pxname);
        lower_component(&mut self.sv, svname);
        let (px, sv) = (self.px.as_str(), self.sv.as_str());
        for (column, field) in self.columns.iter().zip(fields) {
            if field.is_empty() {
                continue;
            }
            match column.kind {
                Kind::Skip => {}
                Kind::Status => batch.gauge_parts(&[px, sv, &column.name], status_code(field)),
                Kind::CheckStatus => {
                    batch.gauge_parts(&[px, sv, &column.name], check_status_code(field))
                }
                Kind::Gauge => {
                    if let Some(n) = Number::parse(field) {
                        batch.gauge_parts(&[px, sv, &column.name], n.as_f64());
                    }
                }
                Kind::Cumulative => {
                    let Some(n) = Number::parse(field) else {
                        continue;
                    };
                    batch.gauge_parts(&[px, sv, &column.name], n.as_f64());
                    if let (true, Number::Unsigned(count)) = (self.rates, n) {
                        batch.counter_parts(
                            &[px, sv, &column.rate_name],
                            count,
                            Some(CounterWidth::Bits64),
                        );
                    }
                }
            }
        }
        true
    }

    fn row_type(&self, fields: &[Cow<'_, str>], svname: &str) -> RowType {
        let by_type = self
            .type_column
            .and_then(|i| fields.get(i))
            .and_then(|t| match t.trim() {
                "0" => Some(RowType::Frontend),
                "1" => Some(RowType::Backend),
                "2" => Some(RowType::Server),
                "3" => Some(RowType::Listener),
                _ => None,
            });
        by_type.unwrap_or(match svname {
            "FRONTEND" => RowType::Frontend,
            "BACKEND" => RowType::Backend,
            _ => RowType::Server,
        })
    }
}

/// Writes `raw` into `out` lowercased and sanitised as one path component
/// (Diamond: `re.sub('[^\w-]', '_', name.lower())`).
fn lower_component(out: &mut String, raw: &str) {
    out.clear();
    if raw.bytes().any(|b| b.is_ascii_uppercase()) {
        carat_collector::name::push_component(out, &raw.to_ascii_lowercase());
    } else {
        carat_collector::name::push_component(out, raw);
    }
}

/// A cell that holds a plain decimal number. Anything else — `inf`, `NaN`,
/// `1e5`, `0x10`, `+1`, text — is not a number here, so that text that
/// merely parses as a float is never published.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Number {
    Unsigned(u64),
    Other(f64),
}

impl Number {
    fn parse(cell: &str) -> Option<Number> {
        let cell = cell.trim();
        let digits = cell.strip_prefix('-').unwrap_or(cell);
        let (int, frac) = match digits.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (digits, None),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(int) || !frac.is_none_or(all_digits) {
            return None;
        }
        if frac.is_none() && digits.len() == cell.len() {
            if let Ok(n) = cell.parse::<u64>() {
                return Some(Number::Unsigned(n));
            }
        }
        cell.parse::<f64>().ok().map(Number::Other)
    }

    fn as_f64(self) -> f64 {
        match self {
            Number::Unsigned(n) => n as f64,
            Number::Other(v) => v,
        }
    }
}

/// An error when `text` cannot be HAProxy's stats CSV at all (empty, an
/// HTML page, an error message), quoting its start so the log line shows
/// what came back instead.
pub fn check_starts_like_csv(text: &str, origin: &str) -> Result<(), CollectorError> {
    if text.trim().is_empty() {
        return Err(CollectorError::parse(
            origin,
            "empty answer: not HAProxy's stats CSV",
        ));
    }
    if text.starts_with('#') {
        return Ok(());
    }
    let start = carat_collector::input::excerpt(text.trim_start(), 80);
    Err(CollectorError::parse(
        origin,
        format!("not HAProxy's stats CSV (it should start with `# pxname,svname`); it starts with {start}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_plain_decimals() {
        assert_eq!(Number::parse("0"), Some(Number::Unsigned(0)));
        assert_eq!(
            Number::parse("18446744073709551615"),
            Some(Number::Unsigned(u64::MAX))
        );
        assert_eq!(
            Number::parse("18446744073709551616"),
            Some(Number::Other(1.8446744073709552e19))
        );
        assert_eq!(Number::parse("-1"), Some(Number::Other(-1.0)));
        assert_eq!(Number::parse("2.5"), Some(Number::Other(2.5)));
        for not in [
            "", "-", ".", "1.", ".5", "inf", "NaN", "1e5", "+1", "0x10", "1 2", "UP", "12a",
        ] {
            assert_eq!(Number::parse(not), None, "{not:?}");
        }
    }

    #[test]
    fn status_codes() {
        for (s, code) in [
            ("UP", 1.0),
            ("UP 1/3", 1.0),
            ("UP 2/3", 1.0),
            ("DOWN", 0.0),
            ("DOWN 1/2", 0.0),
            ("DOWN (agent)", 0.0),
            ("MAINT", 2.0),
            ("MAINT (via be/srv)", 2.0),
            ("MAINT(via)", 2.0),
            ("MAINT (resolution)", 2.0),
            ("DRAIN", 3.0),
            ("DRAIN 1/3", 3.0),
            ("DRAIN (agent)", 3.0),
            ("NOLB", 4.0),
            ("NOLB 1/3", 4.0),
            ("no check", 1.0),
            ("OPEN", 1.0),
            ("FULL", 5.0),
            ("STOP", 6.0),
            ("PAUSED", 7.0),
            ("WAITING", 8.0),
            ("SOMETHING NEW", -1.0),
            ("", -1.0),
        ] {
            assert_eq!(status_code(s), code, "{s:?}");
        }
    }

    #[test]
    fn check_status_codes() {
        for (s, code) in [
            ("UNK", 0.0),
            ("INI", 1.0),
            ("CHECKED", 2.0),
            ("SOCKERR", 3.0),
            ("HANA", 4.0),
            ("L4OK", 40.0),
            ("* L4OK", 40.0),
            ("L4TOUT", 42.0),
            ("L4CON", 43.0),
            ("L6OK", 60.0),
            ("L6TOUT", 62.0),
            ("L6RSP", 63.0),
            ("L7OK", 70.0),
            ("* L7OK", 70.0),
            ("L7OKC", 71.0),
            ("L7TOUT", 72.0),
            ("L7RSP", 73.0),
            ("L7STS", 74.0),
            ("PROCOK", 80.0),
            ("PROCTOUT", 82.0),
            ("PROCERR", 83.0),
            ("L9OK", -1.0),
        ] {
            assert_eq!(check_status_code(s), code, "{s:?}");
        }
    }

    #[test]
    fn cumulative_and_text_lists_do_not_overlap() {
        for c in CUMULATIVE_COLUMNS {
            assert!(!TEXT_COLUMNS.contains(c), "{c}");
            assert_eq!(c.to_ascii_lowercase(), *c);
        }
    }
}
