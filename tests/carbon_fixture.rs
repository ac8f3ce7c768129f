//! Self-test of the carbon-cache fixture in `tests/support/carbon.rs`: a real
//! carbon receives plaintext lines, stores them in whisper, survives a restart
//! on the same ports with its data, and is gone once the fixture is dropped.

mod support;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::carbon::{parse_whisper_fetch_json, Carbon};

const WAIT: Duration = Duration::from_secs(10);

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    i64::try_from(secs).expect("the time fits in an i64")
}

fn send_tcp(carbon: &Carbon, lines: &str) {
    let mut stream = TcpStream::connect(carbon.line_addr()).unwrap_or_else(|e| {
        panic!(
            "cannot connect to carbon's line port {}: {e}",
            carbon.line_addr()
        )
    });
    stream
        .write_all(lines.as_bytes())
        .unwrap_or_else(|e| panic!("cannot send to carbon: {e}"));
}

#[test]
fn carbon_stores_points_survives_restart_and_is_stopped_on_drop() {
    let started = Instant::now();
    let mut carbon = Carbon::start();
    eprintln!(
        "carbon-cache started in {:?} (pid {}, line {}, udp {}, pickle {})",
        carbon.startup_time(),
        carbon.pid(),
        carbon.line_port(),
        carbon.udp_port(),
        carbon.pickle_port()
    );
    let first_pid = carbon.pid();

    let t = now();
    send_tcp(
        &carbon,
        &format!("test.fixture.a 42 {t}\ntest.fixture.a 41.25 {}\n", t - 1),
    );
    let sent = Instant::now();
    let points = carbon.wait_for("test.fixture.a", 2, WAIT);
    eprintln!(
        "points visible in whisper {:?} after sending",
        sent.elapsed()
    );
    assert_eq!(points, vec![(t - 1, 41.25), (t, 42.0)]);

    // Full precision (whisper-fetch's plain output would round to 6 decimals),
    // and the UDP listener works too.
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
    udp.send_to(
        format!("test.fixture.udp 0.1234567891 {t}\n").as_bytes(),
        carbon.udp_addr(),
    )
    .expect("send a datagram to carbon");
    assert_eq!(
        carbon.wait_for("test.fixture.udp", 1, WAIT),
        vec![(t, 0.1234567891)]
    );

    assert_eq!(
        carbon.metric_paths(),
        vec!["test.fixture.a", "test.fixture.udp"]
    );
    assert!(carbon.fetch("test.fixture.never_sent").is_empty());

    let ports = (carbon.line_port(), carbon.udp_port(), carbon.pickle_port());
    let stopping = Instant::now();
    carbon.restart();
    eprintln!(
        "restart took {:?} (start part {:?})",
        stopping.elapsed(),
        carbon.startup_time()
    );
    assert!(
        !Path::new(&format!("/proc/{first_pid}")).exists(),
        "old carbon still running"
    );
    assert_ne!(carbon.pid(), first_pid);
    assert_eq!(
        (carbon.line_port(), carbon.udp_port(), carbon.pickle_port()),
        ports
    );

    // The old data is still there, and the line port takes new points.
    assert_eq!(
        carbon.fetch("test.fixture.a"),
        vec![(t - 1, 41.25), (t, 42.0)]
    );
    let t2 = now();
    send_tcp(&carbon, &format!("test.fixture.b 7 {t2}\n"));
    assert_eq!(carbon.wait_for("test.fixture.b", 1, WAIT), vec![(t2, 7.0)]);

    let pid = carbon.pid();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let whisper_dir = carbon.whisper_dir();
    drop(carbon);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "carbon (pid {pid}) outlived the fixture"
    );
    assert!(!whisper_dir.exists(), "the fixture's directory outlived it");
    eprintln!("whole fixture test took {:?}", started.elapsed());
}

#[test]
fn stop_is_idempotent_and_closes_the_port() {
    let mut carbon = Carbon::start();
    let addr = carbon.line_addr();
    assert!(carbon.is_running());
    carbon.stop();
    assert!(!carbon.is_running());
    assert!(
        TcpStream::connect(addr).is_err(),
        "carbon still listens after stop()"
    );
    carbon.stop();
    carbon.restart();
    assert!(TcpStream::connect(addr).is_ok());
}

#[test]
fn parses_whisper_fetch_json() {
    let text = "{\n    \"start\" : 100,\n    \"end\" : 105,\n    \"step\" : 1,\n    \
                \"values\" : [null, 1.5, null, 1e-07, -3.0]\n  }\n";
    assert_eq!(
        parse_whisper_fetch_json(text).unwrap(),
        vec![(101, 1.5), (103, 1e-7), (104, -3.0)]
    );
    let empty = "{\"start\" : 1, \"end\" : 1, \"step\" : 1, \"values\" : []}";
    assert_eq!(parse_whisper_fetch_json(empty).unwrap(), vec![]);
    let bad = "{\"start\" : 1, \"end\" : 2, \"step\" : 1, \"values\" : [oops]}";
    let err = parse_whisper_fetch_json(bad).unwrap_err();
    assert!(err.contains("oops"), "{err}");
    assert!(parse_whisper_fetch_json("No data in selected timerange").is_err());
}
