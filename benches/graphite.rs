//! Throughput of the Graphite plaintext output, in lines (metrics) per second.
//!
//! Run with:
//!
//! ```text
//! cargo bench --bench graphite             # all three, ~30 s
//! cargo bench --bench graphite -- encode   # only the ones whose id matches
//! cargo test --benches                     # each bench once, as a smoke test
//! ```
//!
//! Every bench works on the same realistic batch of 10,000 metrics: Diamond
//! paths of 20 to 70 bytes (`servers.web01.cpu.cpu12.user`,
//! `servers.web01.haproxy.edge.backend_api.srv-3.check_duration`, ...),
//! values mixing large integers (`25276510208`) and short fractions
//! (`1.5312`), timestamp 1763880000.
//!
//! - `encode/10k_lines`: [`encode_batch`] into a reused `Vec<u8>`: the pure
//!   cost of formatting lines (itoa, ryu, copying paths).
//! - `buffer/10k_lines`: [`LineBuffer::push`] of the batch (1,000,000 lines
//!   max, segments of 5000) then `front`/`pop_front` until empty: what the
//!   TCP output does with a batch besides the socket write. The buffer is
//!   reused across iterations, as the output reuses its own.
//! - `encoders/statsd_10k_metrics`, `encoders/pickle_10k_lines`,
//!   `encoders/amqp_per_metric_10k_lines`: the StatsD, pickle and AMQP
//!   (routing key + body per metric) encoders on the same batch.
//! - `tcp_end_to_end/100k_lines`: the real [`run_tcp`] task on a
//!   current-thread tokio runtime, writing to a real local TCP sink (a
//!   std thread that accepts connections on 127.0.0.1 and counts newlines).
//!   Per iteration: a fresh queue and task, 10 prebuilt batches of 10,000
//!   sent, the queue closed, the task awaited. Timed from the first send to
//!   the sink having counted all 100,000 lines, so it includes one connect,
//!   the encoding, the buffer, the writes and the kernel's loopback copy.
//!   The output task uses one core; the sink runs on another.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use carat::config::StatsdConfig;
use carat::output::pickle::frames_from_lines;
use carat::output::statsd::StatsdEncoder;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use carat::config::GraphiteConfig;
use carat::metrics::MetricBatch;
use carat::output::buffer::LineBuffer;
use carat::output::encode::encode_batch;
use carat::output::graphite::run_tcp;
use carat::output::Closing;
use carat::stats::OutputStats;

const TIMESTAMP: i64 = 1_763_880_000;
const BATCH_LINES: usize = 10_000;
const END_TO_END_BATCHES: usize = 10;

/// A fraction with at most four decimals, like a rate or a percentage.
fn fraction(i: usize) -> f64 {
    ((i * 7919) % 1_000_000) as f64 / 10_000.0 + 0.0001
}

/// A large integer, like a byte count.
fn integer(i: usize) -> f64 {
    (25_276_510_208u64 + (i as u64) * 4096) as f64
}

/// 10,000 metrics shaped like one busy host's collectors: cpu, memory,
/// loadavg, diskspace, iostat, network, then haproxy servers for the rest.
fn realistic_batch(lines: usize) -> MetricBatch {
    let mut b = MetricBatch::with_capacity(TIMESTAMP, lines, 56);
    let mut i = 0usize;
    let mut push = |b: &mut MetricBatch, prefix: &str, name: &str, int: bool| {
        if b.len() < lines {
            let v = if int { integer(i) } else { fraction(i) };
            b.push(prefix, name, v, None);
            i += 1;
        }
    };

    const CPU: [&str; 8] = [
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
    ];
    for cpu in 0..64 {
        for f in CPU {
            push(&mut b, "servers.web01.cpu", &format!("cpu{cpu}.{f}"), false);
        }
    }
    for f in CPU {
        push(&mut b, "servers.web01.cpu", &format!("total.{f}"), false);
    }
    for f in [
        "MemTotal",
        "MemFree",
        "MemAvailable",
        "Buffers",
        "Cached",
        "Active",
        "Inactive",
        "SwapTotal",
        "SwapFree",
        "Dirty",
        "Shmem",
        "Slab",
    ] {
        push(&mut b, "servers.web01.memory", f, true);
    }
    for f in ["01", "05", "15"] {
        push(&mut b, "servers.web01.loadavg", f, false);
    }
    for mount in [
        "root", "boot", "var", "var_log", "data0", "data1", "data2", "tmp",
    ] {
        for (f, int) in [
            ("byte_used", true),
            ("byte_free", true),
            ("byte_avail", true),
            ("byte_percentfree", false),
            ("inodes_free", true),
            ("inodes_percentfree", false),
        ] {
            push(
                &mut b,
                "servers.web01.diskspace",
                &format!("{mount}.{f}"),
                int,
            );
        }
    }
    for dev in 0..16 {
        for f in [
            "reads_per_second",
            "writes_per_second",
            "read_byte_per_second",
            "write_byte_per_second",
            "average_queue_length",
            "await",
            "r_await",
            "w_await",
            "service_time",
            "util_percentage",
        ] {
            let d = (b'a' + dev) as char;
            push(&mut b, "servers.web01.iostat", &format!("sd{d}.{f}"), false);
        }
    }
    for iface in [
        "eth0", "eth1", "bond0", "lo", "docker0", "veth1a2b", "veth3c4d", "tun0",
    ] {
        for (f, int) in [
            ("rx_byte", true),
            ("tx_byte", true),
            ("rx_packets", false),
            ("tx_packets", false),
            ("rx_errors", false),
            ("tx_errors", false),
            ("rx_drop", false),
            ("tx_drop", false),
        ] {
            push(
                &mut b,
                "servers.web01.network",
                &format!("{iface}.{f}"),
                int,
            );
        }
    }
    const BACKENDS: [&str; 6] = [
        "backend_api",
        "backend_web",
        "backend_static",
        "backend_auth",
        "backend_search",
        "backend_upload",
    ];
    const SERVER: [(&str, bool); 12] = [
        ("check_duration", false),
        ("scur", false),
        ("smax", false),
        ("stot", true),
        ("bin", true),
        ("bout", true),
        ("hrsp_2xx", false),
        ("hrsp_5xx", false),
        ("qtime", false),
        ("rtime", false),
        ("ctime", false),
        ("rate", false),
    ];
    let mut round = 0;
    while b.len() < lines {
        for backend in BACKENDS {
            let prefix = format!("servers.web01.haproxy.edge.{backend}.srv-{round}");
            for (f, int) in SERVER {
                push(&mut b, &prefix, f, int);
            }
        }
        round += 1;
    }
    b
}

fn bench_encode(c: &mut Criterion) {
    let batch = realistic_batch(BATCH_LINES);
    let mut out = Vec::new();
    encode_batch(&mut out, &batch);
    let mut group = c.benchmark_group("encode");
    group
        .throughput(Throughput::Elements(batch.len() as u64))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("10k_lines", |b| {
        b.iter(|| {
            out.clear();
            encode_batch(&mut out, std::hint::black_box(&batch));
            std::hint::black_box(out.len())
        })
    });
    group.finish();
}

fn bench_buffer(c: &mut Criterion) {
    let batch = realistic_batch(BATCH_LINES);
    let mut buffer = LineBuffer::new(1_000_000, 5000);
    let mut group = c.benchmark_group("buffer");
    group
        .throughput(Throughput::Elements(batch.len() as u64))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("10k_lines", |b| {
        b.iter(|| {
            let dropped = buffer.push(std::hint::black_box(&batch).iter());
            let mut bytes = 0;
            while let Some(seg) = buffer.front() {
                bytes += std::hint::black_box(&seg.bytes).len();
                buffer.pop_front();
            }
            std::hint::black_box((dropped, bytes))
        })
    });
    group.finish();
}

/// A carbon stand-in: accepts every connection and counts the newlines it
/// reads; tells `reached` when the count reaches `target`.
struct Sink {
    port: u16,
    lines: Arc<AtomicU64>,
    target: Arc<AtomicU64>,
    reached: std_mpsc::Receiver<()>,
}

impl Sink {
    fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the sink");
        let port = listener.local_addr().expect("sink address").port();
        let lines = Arc::new(AtomicU64::new(0));
        let target = Arc::new(AtomicU64::new(u64::MAX));
        let (tx, reached) = std_mpsc::channel();
        let tx = Arc::new(Mutex::new(tx));
        {
            let (lines, target) = (Arc::clone(&lines), Arc::clone(&target));
            thread::spawn(move || {
                // One reader thread per connection, so a connection that
                // lingers never holds up the next iteration's.
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    let (lines, target, tx) =
                        (Arc::clone(&lines), Arc::clone(&target), Arc::clone(&tx));
                    thread::spawn(move || read_lines(conn, &lines, &target, &tx));
                }
            });
        }
        Sink {
            port,
            lines,
            target,
            reached,
        }
    }

    /// Arms the sink to signal once `more` further lines have arrived.
    fn expect(&self, more: u64) {
        while self.reached.try_recv().is_ok() {}
        let now = self.lines.load(Ordering::SeqCst);
        self.target.store(now + more, Ordering::SeqCst);
    }

    fn wait(&self) {
        self.reached
            .recv_timeout(Duration::from_secs(30))
            .expect("the sink did not receive every line within 30 s");
    }
}

fn read_lines(
    mut conn: TcpStream,
    lines: &AtomicU64,
    target: &AtomicU64,
    tx: &Mutex<std_mpsc::Sender<()>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let got = buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        if got == 0 {
            continue;
        }
        let before = lines.fetch_add(got, Ordering::SeqCst);
        let t = target.load(Ordering::SeqCst);
        if before < t && before + got >= t {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(());
            }
        }
    }
}

fn bench_tcp_end_to_end(c: &mut Criterion) {
    let batches: Vec<Arc<MetricBatch>> = (0..END_TO_END_BATCHES)
        .map(|_| Arc::new(realistic_batch(BATCH_LINES)))
        .collect();
    let total: u64 = batches.iter().map(|b| b.len() as u64).sum();
    let sink = Sink::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let mut group = c.benchmark_group("tcp_end_to_end");
    group
        .throughput(Throughput::Elements(total))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("100k_lines", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let config = GraphiteConfig {
                    host: "127.0.0.1".into(),
                    port: sink.port,
                    max_buffered: 10_000_000,
                    batch_size: 5000,
                    ..Default::default()
                };
                let stats = Arc::new(OutputStats::default());
                sink.expect(total);
                let start = rt.block_on(async {
                    let (tx, rx) = tokio::sync::mpsc::channel(1024);
                    let (closing, _signal) = Closing::new(Duration::from_secs(10));
                    let task = tokio::spawn(run_tcp(
                        "bench".into(),
                        config,
                        rx,
                        Arc::clone(&stats),
                        closing,
                        Vec::new(),
                    ));
                    let start = Instant::now();
                    for batch in &batches {
                        tx.send(Arc::clone(batch)).await.expect("output task alive");
                    }
                    drop(tx);
                    task.await.expect("output task");
                    start
                });
                sink.wait();
                elapsed += start.elapsed();
                assert_eq!(stats.sent.load(Ordering::Relaxed), total);
                assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
            }
            elapsed
        })
    });
    group.finish();
}

/// The other encoders, on the same batch: StatsD lines (every fourth
/// metric a counter increase, some gauges negative) and pickle frames
/// re-encoded from plaintext, as the pickle transport does per segment.
fn bench_other_encoders(c: &mut Criterion) {
    let plain = realistic_batch(BATCH_LINES);
    let mut statsd_batch = MetricBatch::new(1_763_880_000);
    for (i, m) in plain.iter().enumerate() {
        let (value, increase) = match i % 4 {
            0 => (m.value, Some(i as u64)),
            1 => (-m.value, None),
            _ => (m.value, None),
        };
        statsd_batch.push("", m.path, value, increase);
    }
    let encoder = StatsdEncoder::new(&StatsdConfig::default());
    let mut lines = Vec::new();
    encode_batch(&mut lines, &plain);
    let mut out = Vec::new();
    let mut group = c.benchmark_group("encoders");
    group
        .throughput(Throughput::Elements(plain.len() as u64))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("statsd_10k_metrics", |b| {
        b.iter(|| {
            out.clear();
            for m in std::hint::black_box(&statsd_batch).iter() {
                encoder.encode(&mut out, &m);
            }
            std::hint::black_box(out.len())
        })
    });
    #[cfg(feature = "amqp")]
    {
        let encoding = carat::output::amqp::Encoding::PerMetric;
        group.bench_function("amqp_per_metric_10k_lines", |b| {
            b.iter(|| {
                let bytes: usize =
                    carat::output::amqp::messages(std::hint::black_box(&lines), &encoding)
                        .map(|m| m.map_or(0, |m| m.body.len() + m.routing_key.len()))
                        .sum();
                std::hint::black_box(bytes)
            })
        });
    }
    group.bench_function("pickle_10k_lines", |b| {
        b.iter(|| {
            out.clear();
            let n = frames_from_lines(std::hint::black_box(&lines), &mut out);
            std::hint::black_box(n)
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_encode,
    bench_buffer,
    bench_tcp_end_to_end,
    bench_other_encoders
);
criterion_main!(benches);
