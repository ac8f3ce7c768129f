//! The statsd output against a real StatsD daemon (flushing to a real
//! carbon): gauges arrive absolute, negative ones too, and counters as the
//! increase over each interval, which StatsD turns into counts and rates.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::carbon::Carbon;
use support::statsd::{Statsd, FLUSH};
use support::{blocking, collectors, config, eventually, Running};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_negative_gauges_counters_and_rates_arrive() {
    let carbon = blocking(Carbon::start);
    let statsd = blocking(|| Statsd::start(carbon.line_port()));
    let key = "statsd-feed";
    let control = collectors::control(key);
    let running = Running::start(config(&format!(
        r#"
[agent]
hostname = "sd"
interval = 1
splay = 0
self_metrics = false

[collector.feed]
key = "{key}"

[output.statsd]
port = {}
"#,
        statsd.port()
    )));
    let base = "servers.sd.feed";
    let wait = Duration::from_secs(30);
    let negative = blocking(|| carbon.wait_for(&format!("stats.gauges.{base}.negative"), 3, wait));
    let positive = blocking(|| carbon.wait_for(&format!("stats.gauges.{base}.positive"), 3, wait));
    control.paused.store(true, Ordering::SeqCst);
    running.stop(Duration::from_secs(10)).await;

    // StatsD applies a signed gauge as a change; only the 0 sent first in
    // the same datagram keeps the value absolute instead of sinking by 5.25
    // each interval.
    assert!(negative.iter().all(|&(_, v)| v == -5.25), "{negative:?}");
    assert!(positive.iter().all(|&(_, v)| v == 7.5), "{positive:?}");

    // Counters: each run after the first sent the increase (10) as `|c`;
    // StatsD sums them per flush. Everything sent must be counted once.
    let runs = control.count() as f64;
    let expected_total = 10.0 * (runs - 1.0);
    let counts_path = format!("stats_counts.{base}.events");
    let counted = eventually(Duration::from_secs(15), || {
        blocking(|| carbon.fetch(&counts_path))
            .iter()
            .map(|p| p.1)
            .sum::<f64>()
            == expected_total
    })
    .await;
    let counts = carbon.fetch(&counts_path);
    assert!(
        counted,
        "StatsD counted {counts:?}, expected a total of {expected_total} over {runs} runs"
    );
    assert!(counts.iter().any(|&(_, c)| c > 0.0));
    // And the rate StatsD derives is the count over its flush interval.
    let rates = carbon.fetch(&format!("stats.{base}.events"));
    for (ts, count) in counts {
        if let Some(&(_, rate)) = rates.iter().find(|p| p.0 == ts) {
            assert!(
                (rate - count / FLUSH.as_secs_f64()).abs() < 1e-9,
                "rate {rate} for count {count}"
            );
        }
    }
    assert!(
        !statsd.log().contains("Bad line"),
        "StatsD rejected lines:\n{}",
        statsd.log()
    );
}
