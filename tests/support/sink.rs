//! A plaintext line receiver on 127.0.0.1: what carbon's line listener does,
//! minus storage, recording each line with the time it arrived. For tests
//! that check timing and isolation, where carbon's one-second write delay
//! would blur the picture.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One received line.
#[derive(Clone, Debug)]
pub struct Received {
    /// When it arrived.
    pub at: Instant,
    /// The metric path.
    pub path: String,
    /// The value field.
    pub value: f64,
    /// The timestamp field.
    pub timestamp: i64,
}

/// A running receiver.
pub struct LineSink {
    port: u16,
    lines: Arc<Mutex<Vec<Received>>>,
    malformed: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LineSink {
    /// Starts listening on 127.0.0.1 and a free port.
    pub fn start() -> LineSink {
        LineSink::start_on(0)
    }

    /// Starts listening on 127.0.0.1 and `port` (0: a free one), for a
    /// receiver that comes back on the port an agent already sends to.
    pub fn start_on(port: u16) -> LineSink {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the port");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().expect("local address").port();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let malformed = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, m, s) = (
            Arc::clone(&lines),
            Arc::clone(&malformed),
            Arc::clone(&stop),
        );
        let thread = std::thread::spawn(move || {
            let mut readers = Vec::new();
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (l, m) = (Arc::clone(&l), Arc::clone(&m));
                        readers.push(std::thread::spawn(move || read_lines(stream, l, m)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        LineSink {
            port,
            lines,
            malformed,
            stop,
            thread: Some(thread),
        }
    }

    /// The port to send to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every line received so far.
    pub fn lines(&self) -> Vec<Received> {
        self.lines.lock().unwrap().clone()
    }

    /// Lines received for `path`.
    pub fn lines_for(&self, path: &str) -> Vec<Received> {
        self.lines()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Lines that did not have exactly three well-formed fields.
    pub fn malformed(&self) -> Vec<String> {
        self.malformed.lock().unwrap().clone()
    }
}

fn read_lines(
    stream: std::net::TcpStream,
    lines: Arc<Mutex<Vec<Received>>>,
    malformed: Arc<Mutex<Vec<String>>>,
) {
    let _ = stream.set_nonblocking(false);
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        let fields: Vec<&str> = line.split(' ').collect();
        let parsed =
            match fields.as_slice() {
                [path, value, ts] => value.parse::<f64>().ok().zip(ts.parse::<i64>().ok()).map(
                    |(value, timestamp)| Received {
                        at: Instant::now(),
                        path: (*path).to_owned(),
                        value,
                        timestamp,
                    },
                ),
                _ => None,
            };
        match parsed {
            Some(r) => lines.lock().unwrap().push(r),
            None => malformed.lock().unwrap().push(line),
        }
    }
}

impl Drop for LineSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
