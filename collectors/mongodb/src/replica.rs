//! The replica set as this member sees it (`replSetGetStatus`): its own
//! state, how many members are healthy, and how far each secondary is
//! behind the primary.

use carat_collector::Batch;
use mongodb::bson::{Bson, Document};

use crate::leaves::number;

/// A member's state in `replSetGetStatus`: 1 is PRIMARY, 2 SECONDARY.
const PRIMARY: i64 = 1;
const SECONDARY: i64 = 2;

/// Adds, under `<prefix>.replset`:
///
/// - `state`: this member's state (`myState`: 1 primary, 2 secondary, 7
///   arbiter, … as MongoDB numbers them);
/// - `members.total` and `members.healthy` (`health` = 1);
/// - `lag.<member>`: for each secondary, the seconds its last applied
///   operation is behind the primary's (`optimeDate`), when there is a
///   primary. The member's `host:port` is one component (`db2_example_com_27017`).
///
/// Returns an error message when the answer has no `members` list.
pub fn publish(status: &Document, prefix: &str, batch: &mut Batch) -> Result<(), String> {
    let base = if prefix.is_empty() {
        "replset".to_owned()
    } else {
        format!("{prefix}.replset")
    };
    if let Some(state) = status.get("myState").and_then(number) {
        batch.gauge(&format!("{base}.state"), state);
    }
    let members = status
        .get_array("members")
        .map_err(|_| "the answer has no members list".to_owned())?;
    let members: Vec<&Document> = members.iter().filter_map(Bson::as_document).collect();
    let healthy = members
        .iter()
        .filter(|m| m.get("health").and_then(number) == Some(1.0))
        .count();
    batch.gauge(&format!("{base}.members.total"), members.len() as f64);
    batch.gauge(&format!("{base}.members.healthy"), healthy as f64);
    let state = |m: &Document| m.get("state").and_then(number).map(|s| s as i64);
    let Some(primary) = members
        .iter()
        .find(|m| state(m) == Some(PRIMARY))
        .and_then(|m| optime_millis(m))
    else {
        return Ok(());
    };
    for member in members.iter().filter(|m| state(m) == Some(SECONDARY)) {
        let (Ok(name), Some(optime)) = (member.get_str("name"), optime_millis(member)) else {
            continue;
        };
        let lag = (primary - optime) as f64 / 1000.0;
        // The member's name is one component: its dots become `_`.
        let mut parts: Vec<&str> = base.split('.').collect();
        parts.extend(["lag", name]);
        batch.gauge_parts(&parts, lag.max(0.0));
    }
    Ok(())
}

/// A member's last applied operation, in milliseconds since the epoch:
/// `optimeDate`, or the seconds of `optime.ts` (or of `optime` itself, a
/// timestamp, before 3.2).
fn optime_millis(member: &Document) -> Option<i64> {
    if let Ok(date) = member.get_datetime("optimeDate") {
        return Some(date.timestamp_millis());
    }
    let ts = match member.get("optime")? {
        Bson::Timestamp(ts) => *ts,
        Bson::Document(d) => d.get_timestamp("ts").ok()?,
        _ => return None,
    };
    Some(i64::from(ts.time) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, DateTime, Timestamp};

    #[test]
    fn state_members_and_lag() {
        let t = 1_700_000_000_000_i64;
        let status = doc! {
            "set": "rs0",
            "myState": 2_i32,
            "members": [
                { "name": "db1.example.com:27017", "health": 1.0, "state": 1_i32,
                  "optimeDate": DateTime::from_millis(t) },
                { "name": "db2.example.com:27017", "health": 1.0, "state": 2_i32,
                  "optimeDate": DateTime::from_millis(t - 2_500) },
                { "name": "db3:27017", "health": 0.0, "state": 8_i32,
                  "optimeDate": DateTime::from_millis(0) },
                { "name": "old:27017", "health": 1.0, "state": 2_i32,
                  "optime": Timestamp { time: (t / 1000 - 7) as u32, increment: 1 } },
            ],
            "ok": 1.0,
        };
        let mut batch = Batch::new();
        publish(&status, "a", &mut batch).unwrap();
        let got: Vec<(String, f64)> = batch
            .iter()
            .map(|s| match s.value {
                carat_collector::SampleValue::Gauge(v) => (s.name.to_owned(), v),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a.replset.state".into(), 2.0),
                ("a.replset.members.total".into(), 4.0),
                ("a.replset.members.healthy".into(), 3.0),
                ("a.replset.lag.db2_example_com_27017".into(), 2.5),
                ("a.replset.lag.old_27017".into(), 7.0),
            ]
        );
    }

    #[test]
    fn no_primary_no_lag_and_no_members_is_an_error() {
        let status = doc! { "myState": 2_i32, "members": [
            { "name": "x:1", "health": 1_i32, "state": 2_i32, "optimeDate": DateTime::from_millis(5) },
        ] };
        let mut batch = Batch::new();
        publish(&status, "", &mut batch).unwrap();
        let names: Vec<&str> = batch.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "replset.state",
                "replset.members.total",
                "replset.members.healthy"
            ]
        );
        let e = publish(&doc! { "ok": 0.0 }, "", &mut Batch::new()).unwrap_err();
        assert!(e.contains("members"), "{e}");
    }
}
