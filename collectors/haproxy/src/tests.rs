//! Tests over recorded CSVs (HAProxy 2.6 from Debian 12, and a 1.4 CSV
//! written from 1.4's column list), malformed and truncated bodies, and
//! fake stats sockets and pages that misbehave.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use carat_collector::testing::{Harness, Published};
use carat_collector::{Batch, SampleValue};

use super::*;

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Parses `text` with default options into a fresh batch.
fn parse(text: &str) -> Result<(Batch, Summary), CollectorError> {
    parse_with(text, Filters::default(), true)
}

fn parse_with(
    text: &str,
    filters: Filters,
    rates: bool,
) -> Result<(Batch, Summary), CollectorError> {
    let mut batch = Batch::new();
    let mut stats = StatsCsv::new(filters, rates);
    let summary = stats.publish(text, "test.csv", &mut batch)?;
    Ok((batch, summary))
}

fn gauge(batch: &Batch, name: &str) -> Option<f64> {
    batch
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| match s.value {
            SampleValue::Gauge(v) => Some(v),
            SampleValue::Counter(..) => None,
        })
}

fn counter(batch: &Batch, name: &str) -> Option<u64> {
    batch
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| match s.value {
            SampleValue::Counter(v, _) => Some(v),
            SampleValue::Gauge(_) => None,
        })
}

fn names(batch: &Batch) -> BTreeSet<String> {
    batch.iter().map(|s| s.name.to_owned()).collect()
}

fn assert_gauge(batch: &Batch, name: &str, expected: f64) {
    assert_eq!(
        gauge(batch, name),
        Some(expected),
        "{name}; published: {:?}",
        names(batch)
    );
}

/// Every name is `<proxy>.<server>.<column>`, lowercase, of safe characters.
fn assert_names_are_clean(batch: &Batch) {
    for s in batch.iter() {
        let parts: Vec<&str> = s.name.split('.').collect();
        assert_eq!(parts.len(), 3, "{}", s.name);
        for p in parts {
            assert!(!p.is_empty(), "{}", s.name);
            assert!(
                p.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'_'
                    || b == b'-'),
                "{}",
                s.name
            );
        }
    }
}

// ---------------------------------------------------------------- HAProxy 2.6

#[test]
fn haproxy_2_6_socket_csv() {
    let text = fixture("haproxy-2.6-socket-a.csv");
    let (batch, summary) = parse(&text).unwrap();
    assert_eq!(
        summary,
        Summary {
            rows: 14,
            published_rows: 14
        }
    );
    assert_names_are_clean(&batch);
    let all = names(&batch);
    assert_eq!(all.len(), batch.len(), "a name was published twice");

    // Diamond's names: lowercased, `.` and `:` of the proxy name → `_`.
    assert_gauge(&batch, "www_example_com_80.frontend.stot", 31.0);
    assert_gauge(&batch, "www_example_com_80.frontend.hrsp_4xx", 3.0);
    assert_gauge(&batch, "www_example_com_80.frontend.status", 1.0); // OPEN
    assert_gauge(&batch, "www_example_com_80.public.status", 1.0); // a listener
    assert_gauge(&batch, "app.web1.stot", 14.0);
    assert_gauge(&batch, "app.web-canary.stot", 14.0);
    assert_gauge(&batch, "app.backend.stot", 28.0);

    // Status and check codes.
    assert_gauge(&batch, "app.web1.status", 1.0);
    assert_gauge(&batch, "app.web2.status", 0.0);
    assert_gauge(&batch, "app.web3.status", 2.0);
    assert_gauge(&batch, "app.web-canary.status", 1.0); // no check
    assert_gauge(&batch, "app.web5.status", 3.0);
    assert_gauge(&batch, "empty.backend.status", 0.0);
    assert_gauge(&batch, "app.web1.check_status", 70.0);
    assert_gauge(&batch, "app.web2.check_status", 43.0);
    assert_gauge(&batch, "tcp-pool.db1.check_status", 40.0);
    assert_gauge(&batch, "app.web1.check_code", 200.0);
    assert!(gauge(&batch, "app.web1.check_duration").is_some());
    assert_gauge(&batch, "app.web1.check_rise", 1.0);
    assert_gauge(&batch, "app.web1.check_fall", 2.0);
    // Servers in maintenance or without checks have no check status.
    assert_eq!(gauge(&batch, "app.web3.check_status"), None);
    assert_eq!(gauge(&batch, "app.web-canary.check_status"), None);
    // lastsess -1 (never) is published as it is, as Diamond did.
    assert_gauge(&batch, "app.web2.lastsess", -1.0);

    // Cumulative columns: the raw value as a gauge and a counter for the rate.
    assert_eq!(counter(&batch, "app.web1.stot_per_second"), Some(14));
    assert_eq!(counter(&batch, "app.backend.hrsp_2xx_per_second"), Some(25));
    assert_eq!(
        counter(&batch, "www_example_com_80.frontend.req_tot_per_second"),
        Some(31)
    );
    assert!(counter(
        &batch,
        "www_example_com_80.frontend.h1_bytes_out_per_second"
    )
    .is_some());
    // Gauges have no rate.
    assert_eq!(counter(&batch, "app.web1.scur_per_second"), None);
    assert!(gauge(&batch, "app.web1.scur").is_some());
    assert!(gauge(&batch, "www_example_com_80.frontend.h1_open_connections").is_some());

    // Never the header row, the names, text columns or the `-` marker.
    for forbidden in [
        "pxname",
        "svname",
        "addr",
        "mode",
        "algo",
        "last_chk",
        "check_desc",
        "cookie",
        "-",
    ] {
        assert!(
            !all.iter().any(|n| n.rsplit('.').next() == Some(forbidden)),
            "{forbidden} was published"
        );
    }
    assert!(!all
        .iter()
        .any(|n| n.starts_with("__pxname") || n.contains("# ")));
    // Empty cells publish nothing (a frontend has no qcur, a server no req_rate).
    assert_eq!(gauge(&batch, "www_example_com_80.frontend.qcur"), None);
    assert_eq!(gauge(&batch, "app.web1.req_rate"), None);
}

#[test]
fn haproxy_2_6_has_128_columns_and_all_numeric_ones_are_published() {
    let text = fixture("haproxy-2.6-socket-a.csv");
    let header = text.lines().next().unwrap();
    // 128 names and the empty field after the trailing comma.
    assert_eq!(header.split(',').count(), 129);
    let (batch, _) = parse(&text).unwrap();
    // app/web1: every non-empty numeric cell, plus status and check_status,
    // plus a rate for each cumulative column that has a value.
    let row = text.lines().find(|l| l.starts_with("app,web1,")).unwrap();
    let cols: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let mut expected = BTreeSet::new();
    for (col, cell) in cols.iter().zip(row.split(',')) {
        if cell.is_empty() || stats::TEXT_COLUMNS.contains(col) {
            continue;
        }
        let numeric = cell.parse::<f64>().is_ok();
        if numeric || ["status", "check_status", "agent_status"].contains(col) {
            expected.insert(format!("app.web1.{col}"));
        }
        if numeric && stats::CUMULATIVE_COLUMNS.contains(col) {
            expected.insert(format!("app.web1.{col}_per_second"));
        }
    }
    let got: BTreeSet<String> = names(&batch)
        .into_iter()
        .filter(|n| n.starts_with("app.web1."))
        .collect();
    assert_eq!(got, expected);
    assert!(got.len() > 60, "{}", got.len());
}

#[test]
fn http_and_socket_answers_have_the_same_names() {
    let (http, _) = parse(&fixture("haproxy-2.6-http.csv")).unwrap();
    let (socket, _) = parse(&fixture("haproxy-2.6-socket-a.csv")).unwrap();
    assert_eq!(names(&http), names(&socket));
}

// ---------------------------------------------------------------- HAProxy 1.4

#[test]
fn haproxy_1_4_csv() {
    let text = fixture("haproxy-1.4-http.csv");
    assert_eq!(text.lines().next().unwrap().split(',').count(), 52);
    let (batch, summary) = parse(&text).unwrap();
    assert_eq!(summary.rows, 9);
    assert_names_are_clean(&batch);
    assert_gauge(&batch, "www_example_com.web01.status", 1.0);
    assert_gauge(&batch, "www_example_com.web02.status", 1.0); // UP 1/3: going down
    assert_gauge(&batch, "www_example_com.web03.status", 0.0); // DOWN 1/2: going up
    assert_gauge(&batch, "www_example_com.backup1.status", 1.0); // no check
    assert_gauge(&batch, "www_example_com.web04.status", 2.0); // MAINT(via)
    assert_gauge(&batch, "www_example_com.web02.check_status", 74.0); // L7STS
    assert_gauge(&batch, "www_example_com.web02.check_code", 503.0);
    assert_gauge(&batch, "www_example_com.web02.check_duration", 12.0);
    assert_gauge(&batch, "www_example_com.backend.bout", 9_182_736_455.0);
    assert_eq!(
        counter(&batch, "www_example_com.backend.bout_per_second"),
        Some(9_182_736_455)
    );
    assert_gauge(&batch, "http-in.frontend.status", 1.0);
    assert_gauge(&batch, "http-in.frontend.req_tot", 1_843_562.0);
    assert_gauge(&batch, "www_example_com.web01.downtime", 12.0);
    assert_eq!(
        counter(&batch, "www_example_com.web01.chkfail_per_second"),
        Some(2)
    );
    // `tracked` is text.
    assert!(!names(&batch).iter().any(|n| n.ends_with(".tracked")));
    // Columns of later versions are simply absent.
    assert!(!names(&batch)
        .iter()
        .any(|n| n.contains("conn_tot") || n.contains("lastsess")));
}

// ------------------------------------------------------------ names and rows

#[test]
fn names_from_outside_are_sanitised() {
    let text = concat!(
        "# pxname,svname,scur,stot,status,\n",
        "\"web, the \"\"main\"\" one\",Srv 1,1,2,UP,\n",
        "\"two\nlines\",srv\r2,3,4,DOWN,\n",
        "api.v2:8080/x,caf\u{e9},5,6,UP,\n",
        "\u{0},\u{1b}[31m,7,8,UP,\n",
    );
    let (batch, _) = parse(text).unwrap();
    assert_names_are_clean(&batch);
    assert_gauge(&batch, "web__the__main__one.srv_1.scur", 1.0);
    assert_gauge(&batch, "two_lines.srv_2.status", 0.0);
    assert_gauge(&batch, "api_v2_8080_x.caf_.stot", 6.0);
    assert_gauge(&batch, "_.__31m.stot", 8.0);
}

fn set(patterns: &[&str]) -> Patterns {
    Patterns::new(patterns.iter().copied()).unwrap()
}

fn rows_of(batch: &Batch) -> BTreeSet<String> {
    batch
        .iter()
        .map(|s| s.name.rsplit_once('.').unwrap().0.to_owned())
        .collect()
}

fn strings(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn ignore_servers_keeps_frontends_and_backends() {
    let filters = Filters {
        ignore_servers: true,
        ..Filters::default()
    };
    let (batch, summary) = parse_with(&fixture("haproxy-2.6-socket-a.csv"), filters, true).unwrap();
    assert_eq!(summary.published_rows, 6);
    assert_eq!(
        rows_of(&batch),
        strings(&[
            "www_example_com_80.frontend",
            "app.backend",
            "empty.backend",
            "tcp-pool.backend",
            "stats.frontend",
            "stats.backend",
        ])
    );
    // Old versions without a `type` column go by svname.
    let (batch, _) = parse_with(
        &fixture("haproxy-1.4-http.csv"),
        Filters {
            ignore_servers: true,
            ..Filters::default()
        },
        true,
    )
    .unwrap();
    assert!(rows_of(&batch)
        .iter()
        .all(|r| r.ends_with(".frontend") || r.ends_with(".backend")));
    let no_type = "# pxname,svname,scur,\npx,FRONTEND,1,\npx,srv,2,\npx,BACKEND,3,\n";
    let filters = Filters {
        ignore_servers: true,
        ..Filters::default()
    };
    let (batch, _) = parse_with(no_type, filters, true).unwrap();
    assert_eq!(rows_of(&batch), strings(&["px.frontend", "px.backend"]));
}

#[test]
fn proxy_and_server_filters() {
    let text = fixture("haproxy-2.6-socket-a.csv");
    let filters = Filters {
        proxies: Filter::new(set(&["^app$", "^tcp"]), set(&["pool"])),
        servers: Filter::new(set(&["^web[0-9]$"]), set(&["^web[23]$"])),
        ..Filters::default()
    };
    let (batch, summary) = parse_with(&text, filters, true).unwrap();
    // Server filters leave the BACKEND row alone; matching is case sensitive
    // and on the raw names, so Web-Canary is out.
    assert_eq!(
        rows_of(&batch),
        strings(&["app.web1", "app.web5", "app.backend"])
    );
    assert_eq!(summary.published_rows, 3);
    assert_eq!(summary.rows, 14);
    // Proxy names are matched before sanitising.
    let filters = Filters {
        proxies: Filter::new(set(&[r"^www\.example\.com:80$"]), Patterns::default()),
        ..Filters::default()
    };
    let (batch, _) = parse_with(&text, filters, true).unwrap();
    assert_eq!(
        rows_of(&batch),
        strings(&["www_example_com_80.frontend", "www_example_com_80.public"])
    );
}

#[test]
fn rates_can_be_switched_off() {
    let (batch, _) = parse_with(
        &fixture("haproxy-2.6-socket-a.csv"),
        Filters::default(),
        false,
    )
    .unwrap();
    assert!(batch
        .iter()
        .all(|s| matches!(s.value, SampleValue::Gauge(_)) && !s.name.ends_with(RATE)));
    assert_gauge(&batch, "app.web1.stot", 14.0);
}

const RATE: &str = stats::RATE_SUFFIX;

#[test]
fn header_is_reparsed_when_it_changes() {
    let mut stats = StatsCsv::new(Filters::default(), true);
    let mut batch = Batch::new();
    stats
        .publish("# pxname,svname,scur,stot,\npx,s,1,2,\n", "a", &mut batch)
        .unwrap();
    assert_eq!(
        names(&batch),
        strings(&["px.s.scur", "px.s.stot", "px.s.stot_per_second"])
    );
    // An upgrade in place: a column more, another order.
    batch.clear();
    stats
        .publish(
            "# pxname,svname,stot,qcur,scur,\npx,s,5,6,7,\n",
            "a",
            &mut batch,
        )
        .unwrap();
    assert_gauge(&batch, "px.s.stot", 5.0);
    assert_gauge(&batch, "px.s.qcur", 6.0);
    assert_gauge(&batch, "px.s.scur", 7.0);
}

// ---------------------------------------------------- malformed and truncated

fn parse_error(text: &str) -> String {
    let mut batch = Batch::new();
    let mut stats = StatsCsv::new(Filters::default(), true);
    let err = stats.publish(text, "test.csv", &mut batch).unwrap_err();
    assert_eq!(err.label(), "parse", "{err}");
    assert!(
        batch.is_empty(),
        "published before failing: {:?}",
        names(&batch)
    );
    let msg = err.to_string();
    assert!(msg.starts_with("test.csv: "), "{msg}");
    msg
}

#[test]
fn bodies_that_are_not_the_csv_are_errors() {
    let full = fixture("haproxy-2.6-socket-a.csv");
    let cut_mid_line = &full[..full.len() / 2];
    let lines: Vec<&str> = full.lines().collect();
    let short_row = format!("{}\n{}\n", lines[0], &lines[1][..lines[1].len() / 2]);
    let long_row = format!("{}\n{}extra,\n", lines[0], lines[1]);
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "empty answer"),
        ("\n\n".into(), "empty answer"),
        (
            fixture("http-401.html"),
            "it starts with \"<html><body><h1>401 Unauthorized</h1>",
        ),
        (
            fixture("socket-unknown-command.txt"),
            "it starts with \"Unknown command",
        ),
        (
            "Permission denied\n\n".into(),
            "it starts with \"Permission denied",
        ),
        (
            "# foo,bar\n1,2\n".into(),
            "line 1: the header row does not start with",
        ),
        ("# pxname\n".into(), "the header row does not start with"),
        ("# pxname,svname,scur".into(), "line 1: truncated"),
        (cut_mid_line.to_owned(), "truncated"),
        (short_row, "line 2: "),
        (long_row, "line 2: 130 fields, but the header row has 129"),
        (
            "# pxname,svname,scur,\npx,s,1,\npx,\"unclosed,2,\n".into(),
            "line 3: truncated (a quoted field is never closed)",
        ),
        (
            "# pxname,svname,scur,\npx,s\"x,1,\n".into(),
            "line 2: malformed",
        ),
    ];
    for (text, expected) in cases {
        let msg = parse_error(&text);
        assert!(
            msg.contains(expected),
            "{text:?}: {msg:?} lacks {expected:?}"
        );
    }
    // The short row is found even though it ends with a newline.
    let msg = parse_error(&format!("{}\n{}\n", lines[0], &lines[1][..40]));
    assert!(
        msg.contains("but the header row has 129: truncated or malformed"),
        "{msg}"
    );
}

#[test]
fn a_body_with_only_the_header_publishes_nothing() {
    let (batch, summary) = parse("# pxname,svname,scur,\n").unwrap();
    assert!(batch.is_empty());
    assert_eq!(summary.rows, 0);
}

// ------------------------------------------------------------- fake servers

/// What a fake server does with one connection.
#[derive(Clone)]
enum Reply {
    /// Reads the request, sends these bytes, closes.
    Send(Vec<u8>),
    /// Reads the request, sends these bytes, then keeps the connection
    /// open without sending more until the test ends.
    SendAndHang(Vec<u8>),
}

/// A fake server answering connections in order with `replies` (the last
/// one repeats), recording each request.
struct Fake {
    requests: Arc<Mutex<Vec<String>>>,
    _thread: JoinHandle<()>,
}

fn read_request(stream: &mut impl Read, http: bool) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let end = if http { &b"\r\n\r\n"[..] } else { &b"\n"[..] };
        if got.windows(end.len()).any(|w| w == end) {
            break;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn serve<S: Read + Write + Send + 'static>(
    mut accept: impl FnMut() -> Option<S> + Send + 'static,
    replies: Vec<Reply>,
    http: bool,
) -> Fake {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&requests);
    let thread = std::thread::spawn(move || {
        let mut held = Vec::new();
        for i in 0.. {
            let Some(mut stream) = accept() else { return };
            let request = read_request(&mut stream, http);
            log.lock().unwrap().push(request);
            match replies[i.min(replies.len() - 1)].clone() {
                Reply::Send(bytes) => {
                    let _ = stream.write_all(&bytes);
                }
                Reply::SendAndHang(bytes) => {
                    let _ = stream.write_all(&bytes);
                    held.push(stream);
                }
            }
        }
    });
    Fake {
        requests,
        _thread: thread,
    }
}

fn fake_socket(dir: &Path, replies: Vec<Reply>) -> (PathBuf, Fake) {
    let path = dir.join("admin.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let fake = serve(
        move || listener.accept().ok().map(|(s, _)| s),
        replies,
        false,
    );
    (path, fake)
}

fn fake_http(replies: Vec<Reply>) -> (String, Fake) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let fake = serve(
        move || listener.accept().ok().map(|(s, _)| s),
        replies,
        true,
    );
    (base, fake)
}

fn http_ok(body: &str) -> Reply {
    Reply::Send(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// A chunked answer; `finished` adds the last (empty) chunk.
fn http_chunked(body: &str, finished: bool) -> Vec<u8> {
    let mut out =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    for chunk in body.as_bytes().chunks(1000) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    if finished {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    out
}

fn socket_config(path: &Path) -> HaproxyConfig {
    HaproxyConfig {
        socket: Some(path.to_owned()),
        ..HaproxyConfig::default()
    }
}

fn harness(config: HaproxyConfig) -> Harness<Haproxy> {
    Harness::<Haproxy>::new(config, Environment::default()).unwrap()
}

async fn collect_error(h: &mut Harness<Haproxy>) -> CollectorError {
    h.collect().await.expect_err("the run should fail")
}

#[tokio::test]
async fn socket_rates_between_two_readings() {
    let dir = tempfile::tempdir().unwrap();
    let (path, fake) = fake_socket(
        dir.path(),
        vec![
            Reply::Send(fixture("haproxy-2.6-socket-a.csv").into_bytes()),
            Reply::Send(fixture("haproxy-2.6-socket-b.csv").into_bytes()),
        ],
    );
    let mut h = harness(socket_config(&path));
    let first: Published = h.collect().await.unwrap();
    assert_eq!(first.get("app.web1.stot"), Some(14.0));
    // The first reading of a counter publishes no rate.
    assert!(
        !first.names().any(|n| n.ends_with(RATE)),
        "{:?}",
        first.metrics
    );
    let second = h.collect_after(Duration::from_secs(10)).await.unwrap();
    assert_eq!(second.get("app.web1.stot"), Some(19.0));
    assert_eq!(second.get("app.web1.stot_per_second"), Some(0.5));
    assert_eq!(
        second.get("www_example_com_80.frontend.req_tot_per_second"),
        Some(1.0)
    );
    assert_eq!(second.get("app.backend.hrsp_2xx_per_second"), Some(1.0));
    assert_eq!(second.get("app.web2.stot_per_second"), Some(0.0));
    assert_eq!(fake.requests.lock().unwrap()[0], "show stat\n");
}

#[tokio::test]
async fn socket_errors() {
    let dir = tempfile::tempdir().unwrap();
    let full = fixture("haproxy-2.6-socket-a.csv");
    // Cut at a line boundary: only the missing empty line shows it.
    let cut = full.trim_end_matches('\n');
    let cut = &cut[..=cut.rfind('\n').unwrap()];
    let (path, _fake) = fake_socket(
        dir.path(),
        vec![
            Reply::Send(cut.as_bytes().to_vec()),
            Reply::Send(fixture("socket-unknown-command.txt").into_bytes()),
            Reply::Send(Vec::new()),
            Reply::SendAndHang(full.as_bytes()[..100].to_vec()),
        ],
    );
    let mut h = harness(HaproxyConfig {
        request_timeout: Duration::from_millis(300),
        ..socket_config(&path)
    });
    let origin = format!("{} (show stat)", path.display());
    let err = collect_error(&mut h).await;
    assert!(err.to_string().starts_with(&origin), "{err}");
    assert!(
        err.to_string()
            .contains("truncated: the answer does not end with the empty line"),
        "{err}"
    );
    let err = collect_error(&mut h).await;
    assert!(
        err.to_string().contains("it starts with \"Unknown command"),
        "{err}"
    );
    let err = collect_error(&mut h).await;
    assert!(err.to_string().contains("empty answer"), "{err}");
    let started = Instant::now();
    let err = collect_error(&mut h).await;
    assert_eq!(err.label(), "io", "{err}");
    assert!(
        err.to_string()
            .contains("no complete answer to `show stat` within the timeout of 0.3 s"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // Nobody listening.
    let mut h = harness(socket_config(&dir.path().join("missing.sock")));
    let err = collect_error(&mut h).await;
    assert_eq!(err.label(), "io");
    assert!(err.to_string().contains("missing.sock"), "{err}");
}

#[tokio::test]
async fn socket_answer_over_the_bound_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let full = fixture("haproxy-2.6-socket-a.csv");
    let (path, _fake) = fake_socket(dir.path(), vec![Reply::Send(full.clone().into_bytes())]);
    let mut h = harness(HaproxyConfig {
        max_body_bytes: full.len() as u64 - 1,
        ..socket_config(&path)
    });
    let err = collect_error(&mut h).await;
    assert!(
        err.to_string().contains("larger than max_body_bytes"),
        "{err}"
    );
    let mut h = harness(HaproxyConfig {
        max_body_bytes: full.len() as u64,
        ..socket_config(&path)
    });
    h.collect().await.unwrap();
}

#[tokio::test]
async fn http_request_and_answer() {
    let body = fixture("haproxy-2.6-http.csv");
    let (base, fake) = fake_http(vec![http_ok(&body), Reply::Send(http_chunked(&body, true))]);
    let mut h = harness(HaproxyConfig {
        url: Some(format!("{base}/stats")),
        username: Some("carat".into()),
        password: Some("s3cret".into()),
        ..HaproxyConfig::default()
    });
    let p = h.collect().await.unwrap();
    assert_eq!(p.get("app.web1.status"), Some(1.0));
    assert_eq!(p.get("app.web2.status"), Some(0.0));
    let request = fake.requests.lock().unwrap()[0].clone();
    assert!(
        request.starts_with("GET /stats;csv HTTP/1.1\r\n"),
        "{request}"
    );
    let host = base.trim_start_matches("http://");
    assert!(
        request
            .to_ascii_lowercase()
            .contains(&format!("host: {host}\r\n")),
        "{request}"
    );
    // base64("carat:s3cret")
    assert!(request.contains("Y2FyYXQ6czNjcmV0"), "{request}");
    // Chunked transfer, as HAProxy sends it.
    let p2 = h.collect().await.unwrap();
    assert_eq!(p2.get("app.web1.stot"), p.get("app.web1.stot"));
}

#[tokio::test]
async fn http_errors() {
    let full = fixture("haproxy-2.6-http.csv");
    let html = fixture("http-401.html");
    let (base, _fake) = fake_http(vec![
        Reply::Send(
            format!(
                "HTTP/1.1 401 Unauthorized\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\r\n{html}",
                html.len()
            )
            .into_bytes(),
        ),
        http_ok("<html><body>503 Service Unavailable</body></html>\n"),
        // Announces more than it sends, then closes.
        Reply::Send(
            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{}", full.len(), &full[..200])
                .into_bytes(),
        ),
        // Chunked, cut in the middle (no last chunk).
        Reply::Send(http_chunked(&full[..3000], false)),
        // Sends the headers and part of the body, then nothing.
        Reply::SendAndHang(http_chunked(&full[..1000], false)),
        Reply::Send(b"SSH-2.0-OpenSSH_9.2\r\n".to_vec()),
    ]);
    let url = format!("{base}/stats;csv");
    let mut h = harness(HaproxyConfig {
        url: Some(url.clone()),
        username: Some("carat".into()),
        password: Some("wrong".into()),
        request_timeout: Duration::from_millis(500),
        ..HaproxyConfig::default()
    });
    let err = collect_error(&mut h).await;
    assert!(
        err.to_string()
            .contains("HTTP 401 Unauthorized; check username and password"),
        "{err}"
    );
    assert!(err.to_string().contains(&url), "{err}");
    let err = collect_error(&mut h).await;
    assert!(err.to_string().contains("not HAProxy's stats CSV"), "{err}");
    assert!(err.to_string().contains("<html><body>503"), "{err}");
    let err = collect_error(&mut h).await;
    assert_eq!(err.label(), "io", "{err}");
    assert!(err.to_string().contains("reading the body"), "{err}");
    let err = collect_error(&mut h).await;
    assert_eq!(err.label(), "io", "{err}");
    let started = Instant::now();
    let err = collect_error(&mut h).await;
    assert!(
        err.to_string()
            .contains("no complete answer within the timeout of 0.5 s"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    let err = collect_error(&mut h).await;
    // Not HTTP at all: the answer could not be parsed (label `parse` since
    // the network error kinds of issue 9; `io` before).
    assert_eq!(err.label(), "parse", "{err}");
    assert!(!format!("{err}").contains("wrong"), "{err}");
}

#[tokio::test]
async fn http_body_over_the_bound_is_refused() {
    let full = fixture("haproxy-2.6-http.csv");
    let (base, _fake) = fake_http(vec![http_ok(&full), Reply::Send(http_chunked(&full, true))]);
    let mut h = harness(HaproxyConfig {
        url: Some(format!("{base}/")),
        max_body_bytes: 2000,
        ..HaproxyConfig::default()
    });
    // By its Content-Length, then while streaming a chunked body.
    let err = collect_error(&mut h).await;
    assert!(
        err.to_string()
            .contains("larger than max_body_bytes (2000 bytes; 4610 bytes announced)"),
        "{err}"
    );
    let err = collect_error(&mut h).await;
    assert!(
        err.to_string()
            .contains("larger than max_body_bytes (2000 bytes; more)"),
        "{err}"
    );
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut h = harness(HaproxyConfig {
        url: Some(format!("http://127.0.0.1:{port}/stats")),
        ..HaproxyConfig::default()
    });
    let err = collect_error(&mut h).await;
    // Label `connect` since the network error kinds of issue 9 (`io` before).
    assert_eq!(err.label(), "connect");
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

// ------------------------------------------------------------------ options

/// The option a refused configuration is refused for (if it names one) and
/// the error's text.
fn config_error(config: HaproxyConfig) -> (Option<String>, String) {
    carat_collector::testing::refused::<Haproxy>(config, &Environment::default())
}

#[test]
fn options_that_cannot_work() {
    let url = || Some("http://127.0.0.1:8404/stats".to_owned());
    let sock = || Some(PathBuf::from("/run/haproxy/admin.sock"));
    for (config, option, expected) in [
        (HaproxyConfig::default(), None, "set url"),
        (
            HaproxyConfig {
                url: url(),
                socket: sock(),
                ..HaproxyConfig::default()
            },
            Some("socket"),
            "not both",
        ),
        (
            HaproxyConfig {
                socket: sock(),
                username: Some("a".into()),
                ..HaproxyConfig::default()
            },
            Some("username"),
            "apply to url only",
        ),
        (
            HaproxyConfig {
                socket: sock(),
                password: Some("a".into()),
                ..HaproxyConfig::default()
            },
            Some("password"),
            "apply to url only",
        ),
        (
            HaproxyConfig {
                url: url(),
                request_timeout: Duration::ZERO,
                ..HaproxyConfig::default()
            },
            Some("request_timeout"),
            "expected more than 0 and at most 3600 seconds",
        ),
        (
            HaproxyConfig {
                url: url(),
                request_timeout: Duration::from_secs(3601),
                ..HaproxyConfig::default()
            },
            Some("request_timeout"),
            "expected more than 0 and at most 3600 seconds",
        ),
        (
            HaproxyConfig {
                url: url(),
                max_body_bytes: 0,
                ..HaproxyConfig::default()
            },
            Some("max_body_bytes"),
            "at least 1",
        ),
        (
            HaproxyConfig {
                url: Some("https://user:pw@lb/stats".into()),
                ..HaproxyConfig::default()
            },
            Some("url"),
            "credentials in the URL",
        ),
        (
            HaproxyConfig {
                url: Some("ftp://lb/stats".into()),
                ..HaproxyConfig::default()
            },
            Some("url"),
            "not http or https",
        ),
    ] {
        let (named, msg) = config_error(config);
        assert_eq!(named.as_deref(), option, "{msg}");
        assert!(msg.contains(expected), "{msg:?} lacks {expected:?}");
        assert!(!msg.contains("pw@"), "{msg}");
    }
}

#[test]
fn tls_ca_file_applies_to_https_only() {
    let ca = || Some(PathBuf::from("/etc/ssl/internal-ca.pem"));
    for (config, expected) in [
        (
            HaproxyConfig {
                url: Some("http://127.0.0.1:8404/stats".into()),
                tls_ca_file: ca(),
                ..HaproxyConfig::default()
            },
            "https:// url only",
        ),
        (
            HaproxyConfig {
                socket: Some(PathBuf::from("/run/haproxy/admin.sock")),
                tls_ca_file: ca(),
                ..HaproxyConfig::default()
            },
            "the stats socket has no TLS",
        ),
        (
            HaproxyConfig {
                url: Some("https://lb:8404/stats".into()),
                tls_ca_file: ca(),
                verify_tls: false,
                ..HaproxyConfig::default()
            },
            "verify_tls = false",
        ),
    ] {
        let (named, msg) = config_error(config);
        assert_eq!(named.as_deref(), Some("tls_ca_file"), "{msg}");
        assert!(msg.contains(expected), "{msg:?} lacks {expected:?}");
    }
    // An https:// page with its CA: built (the file is read at the first
    // reading, not here).
    let config = HaproxyConfig {
        url: Some("https://lb:8404/stats".into()),
        tls_ca_file: ca(),
        ..HaproxyConfig::default()
    };
    assert!(Haproxy::new(config, &Environment::default()).is_ok());
}

#[test]
fn defaults_unknown_keys_and_hidden_password() {
    use serde::de::value::{Error, MapDeserializer};
    let empty: MapDeserializer<'_, std::vec::IntoIter<(&str, &str)>, Error> =
        MapDeserializer::new(Vec::new().into_iter());
    let config = HaproxyConfig::deserialize(empty).unwrap();
    assert_eq!(config, HaproxyConfig::default());
    assert_eq!(config.request_timeout, Duration::from_secs(5));
    assert!(config.verify_tls && config.rates && !config.ignore_servers);
    assert_eq!(config.max_body_bytes, 16 * 1024 * 1024);

    let typo: MapDeserializer<'_, _, Error> =
        MapDeserializer::new(vec![("user", "admin")].into_iter());
    let err = HaproxyConfig::deserialize(typo).unwrap_err().to_string();
    assert!(err.contains("user"), "{err}");

    let config = HaproxyConfig {
        password: Some("hunter2".into()),
        ..HaproxyConfig::default()
    };
    assert!(!format!("{config:?}").contains("hunter2"));
    assert!(format!("{config:?}").contains("<hidden>"));
}

#[test]
fn options_refused_when_read() {
    use serde::de::value::{Error, MapDeserializer};
    // The loader reports these at the option's line.
    for (key, value, expected) in [
        ("server_exclude", "(", "invalid regex \"(\": unclosed group"),
        ("proxy_include", "[a-", "invalid regex \"[a-\""),
        ("request_timeout", "NaN", "\"NaN\" is not a duration"),
        ("request_timeout", "-1s", "a duration cannot be negative"),
    ] {
        let set: MapDeserializer<'_, _, Error> =
            MapDeserializer::new(vec![(key, value)].into_iter());
        let err = HaproxyConfig::deserialize(set).unwrap_err().to_string();
        assert!(err.contains(expected), "{key}: {err}");
    }
    let set: MapDeserializer<'_, _, Error> = MapDeserializer::new(
        vec![("request_timeout", "1.5s"), ("proxy_include", "^app$")].into_iter(),
    );
    let config = HaproxyConfig::deserialize(set).unwrap();
    assert_eq!(config.request_timeout, Duration::from_millis(1500));
    assert_eq!(config.proxy_include.sources(), ["^app$"]);
}

#[test]
fn description_and_paths() {
    assert_eq!(Haproxy::KIND, "haproxy");
    assert_eq!(Haproxy::DEFAULT_PATH, "haproxy");
    assert!(!Haproxy::DESCRIPTION.contains('\n'));
}
