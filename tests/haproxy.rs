//! The haproxy collector against a real HAProxy (Debian's 2.6): the stats
//! page and the stats socket agree, a stopped server turns DOWN within a
//! few check intervals, request counters and their rates follow traffic,
//! HTTPS works, and the agent publishes Diamond's paths.

#![cfg(feature = "haproxy")]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use carat_collector::testing::{Harness, Published};
use carat_collector::Environment;
use carat_haproxy::{Haproxy as Collector, HaproxyConfig};
use support::haproxy::{Haproxy, WebServer, STATS_PASSWORD, STATS_USER};
use support::sink::LineSink;
use support::{config, eventually, Running};

/// The `[agent]` table of the tests that run the agent: host `lb1`, every
/// collector every 0.3 s.
const AGENT: &str = "[agent]\nhostname = \"lb1\"\ninterval = 0.3\nsplay = 0";

/// HAProxy's checks run every 200 ms; a state change shows within this.
const CHANGE_LIMIT: Duration = Duration::from_secs(5);

fn http_config(haproxy: &Haproxy) -> HaproxyConfig {
    HaproxyConfig {
        url: Some(haproxy.stats_url()),
        username: Some(STATS_USER.into()),
        password: Some(STATS_PASSWORD.into()),
        ..HaproxyConfig::default()
    }
}

fn socket_config(haproxy: &Haproxy) -> HaproxyConfig {
    HaproxyConfig {
        socket: Some(haproxy.socket()),
        ..HaproxyConfig::default()
    }
}

fn harness(config: HaproxyConfig) -> Harness<Collector> {
    Harness::<Collector>::new(config, Environment::default()).expect("a valid configuration")
}

/// The metrics of the test's own proxies (not the `stats` proxy, which
/// counts the HTTP readings themselves).
fn own(p: &Published) -> BTreeMap<String, f64> {
    p.metrics
        .iter()
        .filter(|(k, _)| k.starts_with("be_app.") || k.starts_with("fe_main."))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

fn get(p: &Published, name: &str) -> f64 {
    p.get(name)
        .unwrap_or_else(|| panic!("{name} was not published; got {:?}", p.metrics.keys()))
}

fn started() -> (WebServer, WebServer, Haproxy) {
    let web1 = WebServer::start();
    let web2 = WebServer::start();
    let haproxy = Haproxy::start(&[web1.port(), web2.port()], false);
    haproxy.wait_for_status("web1", "UP", CHANGE_LIMIT);
    haproxy.wait_for_status("web2", "UP", CHANGE_LIMIT);
    (web1, web2, haproxy)
}

#[tokio::test(flavor = "current_thread")]
async fn http_and_socket_agree() {
    let (_web1, _web2, haproxy) = started();
    let mut http = harness(http_config(&haproxy));
    let mut socket = harness(socket_config(&haproxy));
    let over_http = http.collect().await.unwrap();
    let over_socket = socket.collect().await.unwrap();

    let (h, s) = (own(&over_http), own(&over_socket));
    assert_eq!(
        h.keys().collect::<Vec<_>>(),
        s.keys().collect::<Vec<_>>(),
        "the same names over HTTP and over the socket"
    );
    assert!(h.len() > 150, "{} metrics: {:?}", h.len(), h.keys());
    // Values that do not move between two readings a few ms apart (check
    // durations, ages and HAProxy's own per-second rates may).
    for column in [
        "status",
        "check_status",
        "check_code",
        "check_rise",
        "check_fall",
        "check_health",
        "weight",
        "act",
        "bck",
        "iid",
        "sid",
        "type",
        "stot",
        "bin",
        "bout",
        "req_tot",
        "hrsp_2xx",
        "chkdown",
        "downtime",
        "slim",
    ] {
        for row in [
            "be_app.web1",
            "be_app.web2",
            "be_app.backend",
            "fe_main.frontend",
        ] {
            let name = format!("{row}.{column}");
            assert_eq!(h.get(&name), s.get(&name), "{name}");
        }
    }
    // Both servers UP (1), their last check an HTTP check passed (70, L7OK).
    for server in ["web1", "web2"] {
        assert_eq!(get(&over_http, &format!("be_app.{server}.status")), 1.0);
        assert_eq!(
            get(&over_http, &format!("be_app.{server}.check_status")),
            70.0
        );
        assert_eq!(
            get(&over_http, &format!("be_app.{server}.check_code")),
            200.0
        );
        assert!(get(&over_http, &format!("be_app.{server}.check_duration")) >= 0.0);
    }
    assert_eq!(get(&over_http, "be_app.backend.status"), 1.0);
    assert_eq!(get(&over_http, "be_app.backend.act"), 2.0);
    assert_eq!(get(&over_http, "fe_main.frontend.status"), 1.0); // OPEN

    // The stats proxy is there too, over both.
    assert!(over_http.get("stats.frontend.stot").is_some());
    assert!(over_socket.get("stats.frontend.stot").is_some());
}

#[tokio::test(flavor = "current_thread")]
async fn counters_and_rates_follow_traffic() {
    let (web1, web2, haproxy) = started();
    let mut socket = harness(socket_config(&haproxy));
    let mut http = harness(http_config(&haproxy));
    let before = socket.collect().await.unwrap();
    let before_http = http.collect().await.unwrap();
    assert!(
        !before.names().any(|n| n.ends_with("_per_second")),
        "no rate on the first reading"
    );
    let served_before = web1.served() + web2.served();

    haproxy.send_requests(20);

    // The harness clock moves 10 s: 20 requests → 2 per second.
    let after = socket.collect_after(Duration::from_secs(10)).await.unwrap();
    let after_http = http.collect_after(Duration::from_secs(10)).await.unwrap();
    assert!(web1.served() + web2.served() >= served_before + 20);
    for p in [&after, &after_http] {
        assert_eq!(
            get(p, "fe_main.frontend.req_tot") - get(&before, "fe_main.frontend.req_tot"),
            20.0
        );
        assert_eq!(get(p, "fe_main.frontend.req_tot_per_second"), 2.0);
        assert_eq!(get(p, "fe_main.frontend.stot_per_second"), 2.0);
        assert_eq!(get(p, "fe_main.frontend.hrsp_2xx_per_second"), 2.0);
        assert_eq!(get(p, "be_app.backend.stot_per_second"), 2.0);
        assert_eq!(get(p, "be_app.backend.hrsp_2xx_per_second"), 2.0);
        // Round robin over two servers.
        assert_eq!(get(p, "be_app.web1.stot_per_second"), 1.0);
        assert_eq!(get(p, "be_app.web2.stot_per_second"), 1.0);
        assert!(get(p, "fe_main.frontend.bin_per_second") > 0.0);
        assert!(get(p, "fe_main.frontend.bout_per_second") > 0.0);
        assert_eq!(get(p, "be_app.web1.econ_per_second"), 0.0);
        // The raw value stays under the Diamond name.
        assert_eq!(
            get(p, "be_app.backend.stot") - get(&before_http, "be_app.backend.stot"),
            20.0
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_stopped_server_goes_down_within_a_few_checks() {
    let (_web1, mut web2, haproxy) = started();
    let mut socket = harness(socket_config(&haproxy));
    let mut http = harness(http_config(&haproxy));
    assert_eq!(
        get(&socket.collect().await.unwrap(), "be_app.web2.status"),
        1.0
    );

    web2.stop();
    let stopped = Instant::now();
    let down = loop {
        let p = socket.collect().await.unwrap();
        if get(&p, "be_app.web2.status") == 0.0 {
            break p;
        }
        assert!(
            stopped.elapsed() < CHANGE_LIMIT,
            "web2 still not DOWN {CHANGE_LIMIT:?} after it stopped: status {}; haproxy:\n{}",
            get(&p, "be_app.web2.status"),
            haproxy.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // fall 2 × inter 200 ms: well under two seconds.
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "took {:?}",
        stopped.elapsed()
    );
    assert_eq!(get(&down, "be_app.web2.check_status"), 43.0); // L4CON
    assert_eq!(get(&down, "be_app.web1.status"), 1.0);
    assert_eq!(get(&down, "be_app.backend.status"), 1.0);
    assert_eq!(get(&down, "be_app.backend.act"), 1.0);
    assert!(get(&down, "be_app.web2.chkdown") >= 1.0);
    let over_http = http.collect().await.unwrap();
    assert_eq!(get(&over_http, "be_app.web2.status"), 0.0);

    // Maintenance, set on the socket, is 2.
    assert_eq!(haproxy.command("disable server be.app/web1").trim(), "");
    let p = socket.collect().await.unwrap();
    assert_eq!(get(&p, "be_app.web1.status"), 2.0);
    assert_eq!(get(&p, "be_app.backend.status"), 0.0);
}

#[tokio::test(flavor = "current_thread")]
async fn stats_page_over_https() {
    let web1 = WebServer::start();
    let haproxy = Haproxy::start(&[web1.port()], true);
    haproxy.wait_for_status("web1", "UP", CHANGE_LIMIT);
    let url = format!("https://127.0.0.1:{}/stats", haproxy.stats_tls_port());
    let tls = |verify_tls| HaproxyConfig {
        url: Some(url.clone()),
        username: Some(STATS_USER.into()),
        password: Some(STATS_PASSWORD.into()),
        verify_tls,
        ..HaproxyConfig::default()
    };
    // A certificate from a CA the system does not know: accepted only
    // without verification (or with that CA as tls_ca_file, below).
    let p = harness(tls(false)).collect().await.unwrap();
    assert_eq!(get(&p, "be_app.web1.status"), 1.0);
    let err = harness(tls(true)).collect().await.unwrap_err();
    // Label `tls` since the network error kinds of issue 9 (`io` before).
    assert_eq!(err.label(), "tls", "{err}");
    assert!(
        err.to_string().contains("TLS handshake failed") && err.to_string().contains("certificate"),
        "{err}"
    );
    // Plain HTTP to the TLS port is a clear error, not a hang.
    let mut h = harness(HaproxyConfig {
        url: Some(format!(
            "http://127.0.0.1:{}/stats",
            haproxy.stats_tls_port()
        )),
        request_timeout: Duration::from_secs(2),
        ..HaproxyConfig::default()
    });
    assert!(h.collect().await.is_err());
}

/// `tls_ca_file`: the page's certificate verified against a CA that is not
/// in the system's store.
#[tokio::test(flavor = "current_thread")]
async fn stats_page_over_https_verified_with_a_ca_file() {
    let web1 = WebServer::start();
    let haproxy = Haproxy::start(&[web1.port()], true);
    haproxy.wait_for_status("web1", "UP", CHANGE_LIMIT);
    let mut h = harness(HaproxyConfig {
        url: Some(format!(
            "https://127.0.0.1:{}/stats",
            haproxy.stats_tls_port()
        )),
        tls_ca_file: Some(haproxy.ca_certificate()),
        ..http_config(&haproxy)
    });
    let p = h.collect().await.unwrap();
    assert_eq!(get(&p, "be_app.web1.status"), 1.0);
}

#[tokio::test(flavor = "current_thread")]
async fn wrong_password_and_wrong_path() {
    let web1 = WebServer::start();
    let haproxy = Haproxy::start(&[web1.port()], false);
    let mut h = harness(HaproxyConfig {
        password: Some("wrong".into()),
        ..http_config(&haproxy)
    });
    let err = h.collect().await.unwrap_err();
    assert!(err.to_string().contains("HTTP 401"), "{err}");
    let mut h = harness(HaproxyConfig {
        url: Some(format!("http://127.0.0.1:{}/nope", haproxy.stats_port())),
        ..http_config(&haproxy)
    });
    let err = h.collect().await.unwrap_err();
    // HAProxy answers an unknown path of a stats-only proxy with 503.
    assert!(err.to_string().contains("HTTP "), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_publishes_diamond_paths_for_two_instances() {
    let (_web1, _web2, haproxy) = started();
    let sink = LineSink::start();
    let running = Running::start(config(&format!(
        r#"{AGENT}
self_metrics = false

[collector.haproxy.edge]
url = "{url}"
username = "{STATS_USER}"
password = "${{CARAT_TEST_UNSET_HAPROXY_PASSWORD:-{STATS_PASSWORD}}}"
request_timeout = 2
timeout = 3

[collector.haproxy.local]
socket = "{socket}"
ignore_servers = true

[output.graphite]
port = {port}
"#,
        url = haproxy.stats_url(),
        socket = haproxy.socket().display(),
        port = sink.port(),
    )));
    let rate = "servers.lb1.haproxy.edge.fe_main.frontend.req_tot_per_second";
    let arrived = eventually(Duration::from_secs(10), || {
        !sink.lines_for(rate).is_empty()
            && !sink
                .lines_for("servers.lb1.haproxy.local.be_app.backend.status")
                .is_empty()
    })
    .await;
    running.stop(Duration::from_secs(15)).await;
    assert!(arrived, "no rate arrived; got {:?}", paths(&sink));

    let value = |path: &str| {
        sink.lines_for(path)
            .last()
            .unwrap_or_else(|| panic!("{path} never arrived; got {:?}", paths(&sink)))
            .value
    };
    assert_eq!(value("servers.lb1.haproxy.edge.be_app.web1.status"), 1.0);
    assert_eq!(
        value("servers.lb1.haproxy.edge.be_app.web2.check_status"),
        70.0
    );
    assert!(value("servers.lb1.haproxy.edge.be_app.web1.check_duration") >= 0.0);
    assert_eq!(
        value("servers.lb1.haproxy.local.be_app.backend.status"),
        1.0
    );
    assert!(value(rate) >= 0.0);
    // ignore_servers on the second instance only.
    let all = paths(&sink);
    assert!(!all
        .iter()
        .any(|p| p.starts_with("servers.lb1.haproxy.local.be_app.web")));
    assert!(all
        .iter()
        .all(|p| p.starts_with("servers.lb1.haproxy.edge.")
            || p.starts_with("servers.lb1.haproxy.local.")));
    assert!(sink.malformed().is_empty(), "{:?}", sink.malformed());
}

/// The kinds of error are told apart in self-metrics: HAProxy down (a
/// closed port), HAProxy refusing (a wrong password: 401), and something
/// that is not HAProxy's stats page (its frontend, answering `ok`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_counts_errors_by_kind() {
    let (_web1, _web2, haproxy) = started();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let sink = LineSink::start();
    let running = Running::start(config(&format!(
        r#"{AGENT}

[collector.haproxy.down]
url = "http://127.0.0.1:{closed}/stats"

[collector.haproxy.denied]
url = "{url}"
username = "{STATS_USER}"
password = "wrong"

[collector.haproxy.odd]
url = "http://127.0.0.1:{frontend}/"

[output.graphite]
port = {port}
"#,
        url = haproxy.stats_url(),
        frontend = haproxy.frontend_port(),
        port = sink.port(),
    )));
    let expected = [("down", "connect"), ("denied", "status"), ("odd", "parse")];
    let published = |instance: &str, kind: &str| {
        sink.lines().into_iter().any(|r| {
            r.path.starts_with("servers.lb1.carat.collector.")
                && r.path.contains(instance)
                && r.path.ends_with(&format!(".errors_by_kind.{kind}"))
        })
    };
    let arrived = eventually(Duration::from_secs(15), || {
        expected.iter().all(|(i, k)| published(i, k))
    })
    .await;
    let stats = std::sync::Arc::clone(&running.stats);
    running.stop(Duration::from_secs(15)).await;
    let self_metrics: Vec<String> = paths(&sink)
        .into_iter()
        .filter(|p| p.contains(".errors"))
        .collect();
    assert!(
        arrived,
        "errors by kind not published; got {self_metrics:?}"
    );
    for (instance, kind) in expected {
        let (_, s) = stats
            .collectors()
            .into_iter()
            .find(|(name, _)| name.ends_with(instance))
            .unwrap_or_else(|| panic!("no statistics for {instance}"));
        let by_kind: Vec<(&str, u64)> = s.errors_by_kind().collect();
        assert_eq!(by_kind.len(), 1, "{instance}: {by_kind:?}");
        assert_eq!(by_kind[0].0, kind, "{instance}: {by_kind:?}");
        assert_eq!(
            by_kind[0].1,
            carat::stats::get(&s.errors),
            "{instance}: every error has its kind"
        );
    }
}

fn paths(sink: &LineSink) -> std::collections::BTreeSet<String> {
    sink.lines().into_iter().map(|r| r.path).collect()
}

#[test]
fn haproxy_is_stopped_and_its_directory_removed() {
    let web1 = WebServer::start();
    let mut haproxy = Haproxy::start(&[web1.port()], false);
    let pid = haproxy.pid();
    let dir = haproxy.dir().to_owned();
    assert!(haproxy.is_running());
    assert!(haproxy.socket().exists());
    drop(haproxy);
    assert!(!dir.exists(), "{} left behind", dir.display());
    // The PID is gone (or reused by something that is not our HAProxy).
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(&dir.display().to_string()),
        "haproxy (pid {pid}) is still running"
    );
}
