//! A plaintext receiver on 127.0.0.1 whose behaviour a test switches while
//! the agent runs, to play the network faults an operator meets: a load
//! balancer that accepts and closes, a carbon that resets connections with
//! lines unread, one that stops reading, one that reads in bursts.
//!
//! It keeps every complete line it read (a line cut short by a reset is not
//! a line) so tests can compare what arrived with what the agent produced.

use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the receiver does with connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Reads every line, as carbon does.
    Normal = 0,
    /// Accepts each connection and closes it at once, reading nothing.
    AcceptThenClose = 1,
    /// Reads `reset_after` lines of each connection, stops reading for a
    /// moment (as a carbon being restarted does), then resets it
    /// (SO_LINGER 0), throwing away what its host acknowledged meanwhile.
    ResetAfter = 2,
    /// Accepts and holds connections without reading.
    StopReading = 3,
    /// Reads slowly (4 KiB every 10 ms) for a burst, then pauses longer
    /// than the agent's write timeout, over and over.
    Bursty = 4,
}

impl Mode {
    fn from_u8(v: u8) -> Mode {
        match v {
            1 => Mode::AcceptThenClose,
            2 => Mode::ResetAfter,
            3 => Mode::StopReading,
            4 => Mode::Bursty,
            _ => Mode::Normal,
        }
    }
}

struct Shared {
    mode: AtomicU8,
    reset_after: AtomicU64,
    lines: Mutex<Vec<String>>,
    /// Unix seconds of each reset the receiver made.
    resets: Mutex<Vec<f64>>,
    accepted: AtomicU64,
    stop: AtomicBool,
}

/// A running receiver.
pub struct Receiver {
    port: u16,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Starts listening on 127.0.0.1 and a free port in `mode`.
    pub fn start(mode: Mode) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        // A fixed receive buffer, as a busy carbon's is in effect: without
        // it Linux grows it to megabytes on loopback and a receiver that
        // stops reading takes seconds to push back.
        set_receive_buffer(&listener, 64 * 1024).expect("SO_RCVBUF");
        let port = listener.local_addr().expect("local address").port();
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(mode as u8),
            reset_after: AtomicU64::new(500),
            lines: Mutex::new(Vec::new()),
            resets: Mutex::new(Vec::new()),
            accepted: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            let mut readers = Vec::new();
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        s.accepted.fetch_add(1, Ordering::SeqCst);
                        if s.mode() == Mode::AcceptThenClose {
                            drop(stream);
                            continue;
                        }
                        let s = Arc::clone(&s);
                        readers.push(std::thread::spawn(move || serve(stream, &s)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            for r in readers {
                let _ = r.join();
            }
        });
        Receiver {
            port,
            shared,
            thread: Some(thread),
        }
    }

    /// The port to send to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Switches the behaviour for what comes next.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Lines read from each connection before resetting it in
    /// [`Mode::ResetAfter`].
    pub fn set_reset_after(&self, lines: u64) {
        self.shared.reset_after.store(lines, Ordering::SeqCst);
    }

    /// Every complete line received so far, in order of arrival.
    pub fn lines(&self) -> Vec<String> {
        self.shared.lines.lock().unwrap().clone()
    }

    /// How many lines were received so far.
    pub fn count(&self) -> usize {
        self.shared.lines.lock().unwrap().len()
    }

    /// When the receiver reset connections (Unix seconds).
    pub fn resets(&self) -> Vec<f64> {
        self.shared.resets.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Shared {
    fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Ordering::SeqCst))
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Reads one connection according to the mode, until it ends or the
/// receiver stops.
fn serve(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut partial: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut read_here = 0u64;
    let mut burst_started = Instant::now();
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        match shared.mode() {
            Mode::StopReading => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Mode::Bursty => {
                // Read for 300 ms, then stop for 1.5 s.
                let phase = burst_started.elapsed();
                if phase > Duration::from_millis(1800) {
                    burst_started = Instant::now();
                } else if phase > Duration::from_millis(300) {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
            _ => {}
        }
        let slow = shared.mode() == Mode::Bursty;
        let want = if slow { 4 * 1024 } else { buf.len() };
        let n = match stream.read(&mut buf[..want]) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            // A reset: what was read is kept, a partial line is not a line.
            Err(_) => return,
        };
        if slow {
            std::thread::sleep(Duration::from_millis(10));
        }
        partial.extend_from_slice(&buf[..n]);
        let mut complete = Vec::new();
        while let Some(end) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            complete.push(String::from_utf8_lossy(&line[..end]).into_owned());
        }
        read_here += complete.len() as u64;
        shared.lines.lock().unwrap().extend(complete);
        if shared.mode() == Mode::ResetAfter
            && read_here >= shared.reset_after.load(Ordering::SeqCst)
        {
            // Let lines arrive unread, then reset with them still in the
            // socket: SO_LINGER 0.
            std::thread::sleep(Duration::from_millis(300));
            let _ = socket_reset(&stream);
            shared.resets.lock().unwrap().push(unix_now());
            return;
        }
    }
}

/// Closes `stream` with a reset: SO_LINGER with a zero timeout.
fn socket_reset(stream: &TcpStream) -> std::io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    set_option(stream, libc::SO_LINGER, &linger)
}

/// Sets the receive buffer of `listener` (inherited by what it accepts).
fn set_receive_buffer(listener: &TcpListener, bytes: libc::c_int) -> std::io::Result<()> {
    set_option(listener, libc::SO_RCVBUF, &bytes)
}

/// `setsockopt(SOL_SOCKET, option, value)`.
fn set_option<T>(
    socket: &impl std::os::fd::AsRawFd,
    option: libc::c_int,
    value: &T,
) -> std::io::Result<()> {
    // SAFETY: setsockopt reads `size_of::<T>()` bytes from a live value;
    // the descriptor is owned by `socket`, borrowed for the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            std::ptr::from_ref(value).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How many times each line occurs.
pub fn multiset(lines: &[String]) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for l in lines {
        *counts.entry(l.as_str()).or_insert(0) += 1;
    }
    counts
}
