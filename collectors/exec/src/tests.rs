//! Unit tests of the parts that need no process: the output formats, the
//! line reader's bounds and the command's display.

use carat_collector::options::Patterns;

use crate::lines::{Line, LineReader, MAX_LINE};
use crate::parse::{graphite_line, json_document, Metrics, Reading};
use crate::ExecConfig;

fn lines(text: &str, counters: &[&str]) -> Result<Metrics, String> {
    let counters = Patterns::new(counters.iter().copied()).unwrap();
    let mut out = Metrics::new();
    for line in text.lines() {
        graphite_line(line, &counters, &mut out)?;
    }
    Ok(out)
}

#[test]
fn graphite_lines_with_timestamps_kinds_and_patterns() {
    let got = lines(
        "a.b 1\n\
         # comment\n\
         \n\
         \tc\t2.5\t1795436400\n\
         d 7 counter\n\
         e 8 1795436400 gauge\n\
         hits 9\n\
         hits.total 10 gauge\n\
         x 1e3 counter\n",
        &["^hits"],
    )
    .unwrap();
    let expected: Metrics = [
        ("a.b", Reading::Gauge(1.0)),
        ("c", Reading::Gauge(2.5)),
        ("d", Reading::Counter(7)),
        ("e", Reading::Gauge(8.0)),
        ("hits", Reading::Counter(9)),
        ("hits.total", Reading::Gauge(10.0)),
        ("x", Reading::Counter(1000)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(got, expected);
}

#[test]
fn names_are_sanitised_and_the_last_value_of_a_name_wins() {
    let got = lines("web/01..cpu 1\nweb_01.cpu 2\n", &[]).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got["web_01.cpu"], Reading::Gauge(2.0));
}

#[test]
fn lines_that_are_not_metrics_say_why() {
    let why = |line: &str| lines(line, &[]).unwrap_err();
    assert!(why("lonely").contains("expected `name value"));
    assert!(why("a NaN").contains("not a finite number"));
    assert!(why("a inf").contains("not a finite number"));
    assert!(why("a 1 2 3").contains("\"3\" is neither a timestamp"));
    assert!(why("a 1 soon").contains("\"soon\" is neither"));
    assert!(why("a -1 counter").contains("not a whole number"));
    assert!(why("a 1.5 counter").contains("not a whole number"));
    assert!(why(". 1").contains("has no component"));
    assert!(lines("a 18446744073709551615 counter", &[]).is_ok());
    assert!(why("a 18446744073709551616 counter").contains("not a whole number"));
}

#[test]
fn json_objects_flatten_to_dotted_names() {
    let counters = Patterns::new(["accepted"]).unwrap();
    let mut out = Metrics::new();
    json_document(
        r#"{"pool": {"active": 3, "accepted conn": 10, "up": false}, "v": "1.2", "n": null, "big": 1e300}"#,
        &counters,
        &mut out,
    )
    .unwrap();
    assert_eq!(out["pool.active"], Reading::Gauge(3.0));
    assert_eq!(out["pool.accepted_conn"], Reading::Counter(10));
    assert_eq!(out["pool.up"], Reading::Gauge(0.0));
    assert_eq!(out["big"], Reading::Gauge(1e300));
    assert_eq!(out.len(), 4);

    let why = |text: &str| json_document(text, &counters, &mut Metrics::new()).unwrap_err();
    assert!(why("[1]").contains("a JSON object"));
    assert!(why("{\"a\": [1, 2]}").contains("\"a\" is an array"));
    assert!(why("{").contains("not JSON"));
    assert!(why("{\"accepted\": -3}").contains("not a whole number"));
}

#[tokio::test]
async fn long_lines_are_cut_and_counted_and_a_last_line_needs_no_newline() {
    let long = "x".repeat(MAX_LINE + 10);
    let text = format!("one\r\n\n{long}\nlast");
    let mut reader = LineReader::new(text.as_bytes());
    assert_eq!(reader.next().await.unwrap(), Some(Line::Text("one".into())));
    assert_eq!(
        reader.next().await.unwrap(),
        Some(Line::Text(String::new()))
    );
    match reader.next().await.unwrap() {
        Some(Line::TooLong(start, length)) => {
            assert_eq!(start.len(), MAX_LINE);
            assert_eq!(length, MAX_LINE + 10);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        reader.next().await.unwrap(),
        Some(Line::Text("last".into()))
    );
    assert_eq!(reader.next().await.unwrap(), None);
}

#[test]
fn the_command_is_shown_quoted_and_bounded() {
    let config = ExecConfig {
        command: vec!["sh".into(), "-c".into(), "echo 'a 1'".into()],
        ..ExecConfig::default()
    };
    assert_eq!(config.display(), r#""sh -c \"echo 'a 1'\"""#);
    let long = ExecConfig {
        command: vec!["x".repeat(500)],
        ..ExecConfig::default()
    };
    assert!(long.display().chars().count() < 130);
}
