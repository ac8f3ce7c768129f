//! Blocking calls that may hang, run with a deadline on a bounded number of
//! threads, without blocking the collector's task.
//!
//! Some sources have no asynchronous interface and may block for minutes:
//! `statvfs` on a dead NFS server, a library listing the mounted
//! filesystems. A [`Pool`] runs such calls on short-lived threads and lets
//! the collector wait for them, at most a timeout, from its `async fn
//! collect` (the wait needs no particular runtime). What it guarantees:
//!
//! - **A deadline.** [`Pool::run`] and [`Pool::run_all`] return by the
//!   timeout, whatever the calls do. A call still running then is
//!   reported as [`Failure::TimedOut`] and keeps its thread until it
//!   returns; its result is dropped.
//! - **No pile-up.** Each call has a key (a mount point). While a call with
//!   a key has not returned, no other call with that key is started, in this
//!   run or any later one, by any user of the pool: it is reported as
//!   [`Failure::StillRunning`]. Make the pool process-wide (a `static`), so
//!   that the record survives the agent rebuilding a collector.
//! - **A bound.** At most `max_threads` call threads exist at once (busy or
//!   stuck); beyond that nothing is started ([`Failure::AllBusy`]).
//! - **Isolation.** A call that panics is [`Failure::Panicked`]; the pool
//!   goes on.
//!
//! ```
//! use std::sync::{Arc, OnceLock};
//! use std::time::Duration;
//! use carat_collector::blocking::{Failure, Pool};
//!
//! /// One pool for the process: a hung call is remembered across runs.
//! fn pool() -> &'static Arc<Pool<String>> {
//!     static POOL: OnceLock<Arc<Pool<String>>> = OnceLock::new();
//!     POOL.get_or_init(|| Arc::new(Pool::new("example", 8)))
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let size = pool()
//!     .run("/".to_owned(), Duration::from_secs(2), || std::fs::metadata("/").map(|m| m.len()))
//!     .await;
//! assert!(matches!(size, Ok(Ok(_))));
//!
//! let hung = pool()
//!     .run("/nfs".to_owned(), Duration::from_millis(20), || std::thread::sleep(Duration::from_millis(300)))
//!     .await;
//! assert_eq!(hung.unwrap_err().to_string(), "timed out after 20ms");
//! // Until that call returns, its key is not tried again.
//! let again = pool().run("/nfs".to_owned(), Duration::from_secs(1), || ()).await;
//! assert!(matches!(again, Err(Failure::StillRunning { .. })));
//! # });
//! ```

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// One call of [`Pool::run_all`].
pub type Job<T> = Box<dyn FnOnce() -> T + Send + 'static>;

/// Stack of the timer thread of a run: it only waits.
const TIMER_STACK: usize = 64 * 1024;

/// Why a call gave no result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// It was started and had not returned when the run's time (this long)
    /// was up. Its thread goes on; until the call returns, its key is busy.
    TimedOut(Duration),
    /// It was not started: no thread of the run was free before the time
    /// (this long) was up, other calls being slow.
    NotStarted(Duration),
    /// It was not started: a call with the same key, started then, has not
    /// returned.
    StillRunning {
        /// When that call started.
        since: Instant,
    },
    /// It was not started: all the threads the pool may have are busy or
    /// stuck in calls that have not returned.
    AllBusy {
        /// The pool's name.
        pool: &'static str,
        /// How many threads it has (its bound).
        threads: usize,
    },
    /// It was not started: the system refused a thread (the error's text).
    Spawn(String),
    /// The call panicked.
    Panicked {
        /// The pool's name.
        pool: &'static str,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::TimedOut(after) => write!(f, "timed out after {after:?}"),
            Failure::NotStarted(within) => write!(
                f,
                "not started: no worker was free within {within:?} (other calls were slow)"
            ),
            Failure::StillRunning { since } => write!(
                f,
                "still hung: the call started {}s ago has not returned; not retried until it does",
                since.elapsed().as_secs()
            ),
            Failure::AllBusy { pool, threads } => write!(
                f,
                "not started: all {threads} {pool} threads allowed are busy or stuck in calls \
                 that have not returned"
            ),
            Failure::Spawn(e) => write!(f, "cannot start a thread: {e}"),
            Failure::Panicked { pool } => write!(f, "the {pool} call panicked"),
        }
    }
}

impl std::error::Error for Failure {}

/// Threads for blocking calls, keyed, bounded and remembered: see the
/// [module documentation](self).
pub struct Pool<K> {
    name: &'static str,
    max_threads: usize,
    stack_size: Option<usize>,
    state: Mutex<State<K>>,
}

struct State<K> {
    /// Keys with a call under way, and when it started.
    busy: HashMap<K, Instant>,
    /// Call threads alive.
    threads: usize,
}

impl<K> fmt::Debug for Pool<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.state);
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("max_threads", &self.max_threads)
            .field("threads", &s.threads)
            .field("busy", &s.busy.len())
            .finish()
    }
}

/// Locks `m`, going on when a thread panicked while holding it: every
/// update of the state guarded here is a single assignment or insertion,
/// never left half done.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<K: Clone + Eq + Hash + Send + 'static> Pool<K> {
    /// A pool of at most `max_threads` call threads, named `carat-<name>`
    /// (the name also appears in [`Failure`]'s messages: `statvfs`).
    pub fn new(name: &'static str, max_threads: usize) -> Pool<K> {
        Pool {
            name,
            max_threads,
            stack_size: None,
            state: Mutex::new(State {
                busy: HashMap::new(),
                threads: 0,
            }),
        }
    }

    /// The stack size of the call threads (the system's default otherwise):
    /// a call that makes one system call needs little.
    pub fn with_stack_size(mut self, bytes: usize) -> Pool<K> {
        self.stack_size = Some(bytes);
        self
    }

    /// Call threads alive now (busy, stuck, or about to end).
    pub fn threads(&self) -> usize {
        lock(&self.state).threads
    }

    /// When the call with `key` that has not returned yet started.
    pub fn busy_since(&self, key: &K) -> Option<Instant> {
        lock(&self.state).busy.get(key).copied()
    }

    /// How many calls have not returned yet.
    pub fn busy(&self) -> usize {
        lock(&self.state).busy.len()
    }

    /// Runs `job` on a thread of the pool and waits for it, at most
    /// `timeout`, without blocking the caller's thread.
    pub async fn run<T, F>(
        self: &Arc<Self>,
        key: K,
        timeout: Duration,
        job: F,
    ) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let jobs: Vec<(K, Job<T>)> = vec![(key, Box::new(job))];
        self.run_all(jobs, 1, timeout)
            .await
            .pop()
            .unwrap_or(Err(Failure::NotStarted(timeout)))
    }

    /// Runs `jobs` on at most `workers` threads of the pool (fewer when it
    /// is near its bound), which take them in order, and waits for them, at
    /// most `timeout` from now, without blocking the caller's thread. The
    /// results are in the order of `jobs`. A slow call holds back only the
    /// jobs behind it on its thread: put those likely to hang last.
    pub async fn run_all<T: Send + 'static>(
        self: &Arc<Self>,
        jobs: Vec<(K, Job<T>)>,
        workers: usize,
        timeout: Duration,
    ) -> Vec<Result<T, Failure>> {
        let n = jobs.len();
        if n == 0 {
            return Vec::new();
        }
        let workers = {
            let mut s = lock(&self.state);
            let k = workers
                .max(1)
                .min(n)
                .min(self.max_threads.saturating_sub(s.threads));
            s.threads += k;
            k
        };
        if workers == 0 {
            let s = lock(&self.state);
            return jobs
                .iter()
                .map(|(key, _)| {
                    Err(match s.busy.get(key) {
                        Some(since) => Failure::StillRunning { since: *since },
                        None => Failure::AllBusy {
                            pool: self.name,
                            threads: s.threads,
                        },
                    })
                })
                .collect();
        }
        let round = Arc::new(Mutex::new(Round {
            queue: jobs.into_iter().map(Some).collect(),
            slots: (0..n).map(|_| Slot::Waiting).collect(),
            next: 0,
            settled: 0,
            workers,
            expired: false,
            waker: None,
            timer: None,
        }));
        let deadline = Instant::now() + timeout;
        let timer = {
            let round = Arc::clone(&round);
            thread::Builder::new()
                .name(format!("carat-{}-timer", self.name))
                .stack_size(TIMER_STACK)
                .spawn(move || run_timer(&round, deadline))
        };
        match timer {
            Ok(handle) => lock(&round).timer = Some(handle.thread().clone()),
            Err(e) => {
                let mut s = lock(&self.state);
                s.threads = s.threads.saturating_sub(workers);
                return (0..n).map(|_| Err(Failure::Spawn(e.to_string()))).collect();
            }
        }
        let mut spawn_error = None;
        for _ in 0..workers {
            let guard = WorkerGuard {
                pool: Arc::clone(self),
                round: Arc::clone(&round),
                released: false,
            };
            let mut builder = thread::Builder::new().name(format!("carat-{}", self.name));
            if let Some(bytes) = self.stack_size {
                builder = builder.stack_size(bytes);
            }
            // On failure the closure, and the guard in it, is dropped: the
            // worker's place is released.
            if let Err(e) = builder.spawn(move || run_worker(guard)) {
                spawn_error = Some(e.to_string());
            }
        }

        std::future::poll_fn(|cx| {
            let mut r = lock(&round);
            if r.finished() {
                Poll::Ready(())
            } else {
                r.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;

        let (slots, timer) = {
            let mut r = lock(&round);
            // Workers still running take no new job.
            r.expired = true;
            (std::mem::take(&mut r.slots), r.timer.clone())
        };
        if let Some(t) = timer {
            t.unpark();
        }
        slots
            .into_iter()
            .map(|slot| match slot {
                Slot::Done(result) => result,
                Slot::Started => Err(Failure::TimedOut(timeout)),
                Slot::Waiting => Err(match &spawn_error {
                    Some(e) => Failure::Spawn(e.clone()),
                    None => Failure::NotStarted(timeout),
                }),
            })
            .collect()
    }

    /// Runs `job` unless a call with `key` is under way.
    fn call<T>(&self, key: K, job: Job<T>) -> Result<T, Failure> {
        {
            let mut s = lock(&self.state);
            if let Some(since) = s.busy.get(&key) {
                return Err(Failure::StillRunning { since: *since });
            }
            s.busy.insert(key.clone(), Instant::now());
        }
        let result =
            catch_unwind(AssertUnwindSafe(job)).map_err(|_| Failure::Panicked { pool: self.name });
        lock(&self.state).busy.remove(&key);
        result
    }
}

/// Where one job stands in a run.
enum Slot<T> {
    /// No worker took it yet.
    Waiting,
    /// A worker is in its call.
    Started,
    /// The call returned, or was not made.
    Done(Result<T, Failure>),
}

/// One run's shared state, between the caller and its threads.
struct Round<K, T> {
    /// The jobs, each taken by the worker that runs it.
    queue: Vec<Option<(K, Job<T>)>>,
    /// One slot per job. Taken by the caller when it stops waiting; a
    /// worker returning later finds it empty and drops its result.
    slots: Vec<Slot<T>>,
    /// The next job to take.
    next: usize,
    /// Slots that reached `Done`.
    settled: usize,
    /// Workers of this run still alive.
    workers: usize,
    /// The deadline passed (or the caller stopped waiting).
    expired: bool,
    waker: Option<Waker>,
    timer: Option<Thread>,
}

impl<K, T> Round<K, T> {
    fn finished(&self) -> bool {
        self.expired || self.workers == 0 || self.settled >= self.slots.len()
    }

    /// Whom to wake now that the round may be finished; called with the
    /// lock held, the waking done after it is released.
    fn whom_to_notify(&mut self) -> (Option<Waker>, Option<Thread>) {
        if self.finished() {
            (self.waker.take(), self.timer.clone())
        } else {
            (None, None)
        }
    }
}

fn notify((waker, timer): (Option<Waker>, Option<Thread>)) {
    if let Some(w) = waker {
        w.wake();
    }
    if let Some(t) = timer {
        t.unpark();
    }
}

/// Releases a worker's place in the pool and in its round when the worker
/// ends, however it ends.
struct WorkerGuard<K, T> {
    pool: Arc<Pool<K>>,
    round: Arc<Mutex<Round<K, T>>>,
    /// The place in the pool was given back already.
    released: bool,
}

impl<K, T> WorkerGuard<K, T> {
    /// Gives the worker's place in the pool back (once).
    fn release(&mut self) {
        if !std::mem::replace(&mut self.released, true) {
            let mut s = lock(&self.pool.state);
            s.threads = s.threads.saturating_sub(1);
        }
    }
}

impl<K, T> Drop for WorkerGuard<K, T> {
    fn drop(&mut self) {
        self.release();
        let who = {
            let mut r = lock(&self.round);
            r.workers = r.workers.saturating_sub(1);
            r.whom_to_notify()
        };
        notify(who);
    }
}

/// A worker: takes jobs until there is none left or the round expired.
fn run_worker<K: Clone + Eq + Hash + Send + 'static, T>(mut guard: WorkerGuard<K, T>) {
    loop {
        let (index, key, job) = {
            let mut r = lock(&guard.round);
            if r.expired || r.next >= r.queue.len() {
                break;
            }
            let index = r.next;
            r.next += 1;
            let Some((key, job)) = r.queue.get_mut(index).and_then(Option::take) else {
                continue;
            };
            if let Some(s) = r.slots.get_mut(index) {
                *s = Slot::Started;
            }
            (index, key, job)
        };
        let outcome = guard.pool.call(key, job);
        let (who, last) = {
            let mut r = lock(&guard.round);
            if let Some(s) = r.slots.get_mut(index) {
                *s = Slot::Done(outcome);
            }
            r.settled += 1;
            let last = r.expired || r.next >= r.queue.len();
            (r.whom_to_notify(), last)
        };
        if last {
            // Nothing left for this thread: its place is free before the
            // caller wakes, so a run right after this one may use it.
            guard.release();
        }
        notify(who);
    }
    drop(guard);
}

/// Marks the round expired at `deadline`, unless it finished before (then
/// it is unparked and returns at once).
fn run_timer<K, T>(round: &Mutex<Round<K, T>>, deadline: Instant) {
    loop {
        let now = Instant::now();
        {
            let mut r = lock(round);
            if r.finished() {
                return;
            }
            if now >= deadline {
                r.expired = true;
                let waker = r.waker.take();
                drop(r);
                if let Some(w) = waker {
                    w.wake();
                }
                return;
            }
        }
        thread::park_timeout(deadline - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::future::Future;
    use std::sync::mpsc;

    /// A job that hangs until `release` is dropped (or 30 s pass, so a
    /// failed test leaves no thread behind for long).
    fn hanging<T: Send + 'static>(value: T) -> (mpsc::Sender<()>, Job<T>) {
        let (release, hung) = mpsc::channel::<()>();
        let job: Job<T> = Box::new(move || {
            let _ = hung.recv_timeout(Duration::from_secs(30));
            value
        });
        (release, job)
    }

    fn wait_until(what: &str, condition: impl Fn() -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < until, "still not: {what}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn job<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Job<T> {
        Box::new(f)
    }

    #[tokio::test]
    async fn results_come_in_the_order_of_the_jobs() {
        let pool = Arc::new(Pool::new("test", 8));
        let jobs: Vec<(u32, Job<u32>)> = (0..10)
            .map(|i| {
                (
                    i,
                    job(move || {
                        thread::sleep(Duration::from_millis(u64::from(10 - i)));
                        i * i
                    }),
                )
            })
            .collect();
        let results = pool.run_all(jobs, 3, Duration::from_secs(10)).await;
        let values: Vec<u32> = results.into_iter().map(Result::unwrap).collect();
        assert_eq!(values, (0..10).map(|i| i * i).collect::<Vec<_>>());
        wait_until("threads end", || pool.threads() == 0);
        assert_eq!(pool.busy(), 0);
        assert!(pool
            .run_all(Vec::<(u32, Job<()>)>::new(), 3, Duration::ZERO)
            .await
            .is_empty());
    }

    #[tokio::test]
    async fn a_hung_call_costs_the_timeout_and_is_not_started_again() {
        let pool = Arc::new(Pool::new("test", 8));
        let (release, hung) = hanging("late");
        let jobs = vec![
            ("fast", job(|| "fast")),
            ("hung", hung),
            (
                "slow",
                job(|| {
                    thread::sleep(Duration::from_millis(30));
                    "slow"
                }),
            ),
        ];
        let started = Instant::now();
        let results = pool.run_all(jobs, 2, Duration::from_millis(300)).await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(280) && took < Duration::from_secs(3),
            "{took:?}"
        );
        assert_eq!(results[0], Ok("fast"));
        assert_eq!(
            results[1],
            Err(Failure::TimedOut(Duration::from_millis(300)))
        );
        assert_eq!(results[2], Ok("slow"));
        assert_eq!(
            results[1].clone().unwrap_err().to_string(),
            "timed out after 300ms"
        );
        wait_until("only the hung thread is left", || pool.threads() == 1);
        assert!(pool.busy_since(&"hung").is_some());

        // While it hangs: not called again, and not waited for.
        let started = Instant::now();
        let again = pool.run("hung", Duration::from_secs(5), || "again").await;
        assert!(started.elapsed() < Duration::from_secs(1));
        let Err(failure @ Failure::StillRunning { .. }) = again else {
            panic!("{again:?}");
        };
        assert_eq!(
            failure.to_string(),
            "still hung: the call started 0s ago has not returned; not retried until it does"
        );
        assert_eq!(pool.run("other", Duration::from_secs(5), || 1).await, Ok(1));

        // It returns: its late result is dropped, and the key is free.
        drop(release);
        wait_until("the hung call returns", || {
            pool.busy() == 0 && pool.threads() == 0
        });
        assert_eq!(
            pool.run("hung", Duration::from_secs(5), || "now").await,
            Ok("now")
        );
    }

    #[tokio::test]
    async fn threads_are_bounded() {
        let pool = Arc::new(Pool::new("statvfs", 3).with_stack_size(128 * 1024));
        let (releases, jobs): (Vec<_>, Vec<(usize, Job<()>)>) = (0..6)
            .map(|i| {
                let (release, hung) = hanging(());
                (release, (i, hung))
            })
            .unzip();
        let results = pool.run_all(jobs, 10, Duration::from_millis(100)).await;
        let timed_out = results
            .iter()
            .filter(|r| matches!(r, Err(Failure::TimedOut(_))))
            .count();
        let not_started = results
            .iter()
            .filter(|r| matches!(r, Err(Failure::NotStarted(_))))
            .count();
        assert_eq!((timed_out, not_started), (3, 3), "{results:?}");
        assert_eq!(
            results[5].clone().unwrap_err().to_string(),
            "not started: no worker was free within 100ms (other calls were slow)"
        );
        assert_eq!(pool.threads(), 3);

        // At the bound, nothing is started: the stuck keys say so, the
        // others that the pool is full.
        let jobs: Vec<(usize, Job<()>)> = vec![(0, job(|| ())), (9, job(|| ()))];
        let results = pool.run_all(jobs, 2, Duration::from_secs(5)).await;
        assert!(
            matches!(results[0], Err(Failure::StillRunning { .. })),
            "{results:?}"
        );
        assert_eq!(
            results[1],
            Err(Failure::AllBusy {
                pool: "statvfs",
                threads: 3
            })
        );
        assert_eq!(
            results[1].clone().unwrap_err().to_string(),
            "not started: all 3 statvfs threads allowed are busy or stuck in calls that have not returned"
        );
        drop(releases);
        wait_until("the stuck threads end", || pool.threads() == 0);
    }

    #[tokio::test]
    async fn a_finished_call_frees_its_thread_for_the_next_run_at_once() {
        // One thread: each run must find the previous one's place free.
        let pool = Arc::new(Pool::new("one", 1));
        for i in 0..200 {
            assert_eq!(pool.run((), Duration::from_secs(5), move || i).await, Ok(i));
        }
    }

    #[tokio::test]
    async fn a_panicking_call_is_a_failure_and_the_pool_goes_on() {
        let pool = Arc::new(Pool::new("listing", 2));
        let result = pool
            .run("k", Duration::from_secs(5), || -> u8 { panic!("boom") })
            .await;
        assert_eq!(result, Err(Failure::Panicked { pool: "listing" }));
        assert_eq!(result.unwrap_err().to_string(), "the listing call panicked");
        assert_eq!(pool.busy(), 0);
        assert_eq!(pool.run("k", Duration::from_secs(5), || 7).await, Ok(7));
    }

    #[tokio::test]
    async fn a_dropped_wait_keeps_the_record_of_the_hung_call() {
        // The agent abandons a run that exceeds its own timeout: the call
        // goes on, and is still known to the pool.
        let pool = Arc::new(Pool::new("test", 4));
        let (release, hung) = hanging(());
        {
            let mut run = std::pin::pin!(pool.run("nfs", Duration::from_secs(3600), hung));
            let mut cx = std::task::Context::from_waker(Waker::noop());
            assert!(run.as_mut().poll(&mut cx).is_pending());
        }
        wait_until("the call starts", || pool.busy_since(&"nfs").is_some());
        let again = pool.run("nfs", Duration::from_secs(1), || ()).await;
        assert!(
            matches!(again, Err(Failure::StillRunning { .. })),
            "{again:?}"
        );
        drop(release);
        wait_until("the call returns", || {
            pool.busy() == 0 && pool.threads() == 0
        });
    }

    #[test]
    fn debug_shows_the_counts() {
        let pool: Pool<u8> = Pool::new("x", 2);
        assert_eq!(
            format!("{pool:?}"),
            "Pool { name: \"x\", max_threads: 2, threads: 0, busy: 0 }"
        );
    }
}
