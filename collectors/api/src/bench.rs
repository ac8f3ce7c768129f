//! What the collectors' benchmarks measure with (cargo feature `bench`, for
//! benches only): a counting global allocator, the CPU time of the process
//! or of the calling thread, and a criterion measurement of the latter.
//!
//! The project's 2-core machines are shared with builds and other tests:
//! CPU time, not wall time, is the cost of the code itself (waiting for a
//! core is not). Allocations are counted to show that a collector reuses
//! its buffers from run to run and that its heap does not grow.
//!
//! ```ignore
//! use carat_collector::bench::{allocations, CountingAllocator, ThreadCpuTime};
//!
//! #[global_allocator]
//! static GLOBAL: CountingAllocator = CountingAllocator;
//!
//! fn benches(c: &mut criterion::Criterion<ThreadCpuTime>) {
//!     let before = allocations();
//!     // … one run …
//!     eprintln!("{} allocations per run", allocations() - before);
//! }
//!
//! criterion::criterion_group! {
//!     name = group;
//!     config = criterion::Criterion::default().with_measurement(ThreadCpuTime);
//!     targets = benches
//! }
//! criterion::criterion_main!(group);
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use criterion::measurement::{Measurement, ValueFormatter, WallTime};

/// A global allocator that forwards every call to the system's and counts
/// the calls and bytes: install it in a bench with
/// `#[global_allocator] static GLOBAL: CountingAllocator = CountingAllocator;`,
/// then read [`allocations`] and [`live_bytes`].
pub struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);
static FREED_BYTES: AtomicU64 = AtomicU64::new(0);
static PEAK_LIVE_BYTES: AtomicU64 = AtomicU64::new(0);

/// Records `live` as the peak if it is one.
fn note_live() {
    let live = ALLOCATED_BYTES
        .load(Relaxed)
        .saturating_sub(FREED_BYTES.load(Relaxed));
    PEAK_LIVE_BYTES.fetch_max(live, Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters on the side do not touch the memory.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        ALLOCATED_BYTES.fetch_add(layout.size() as u64, Relaxed);
        note_live();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        ALLOCATED_BYTES.fetch_add(layout.size() as u64, Relaxed);
        note_live();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A growth is an allocation call like any other.
        ALLOCATIONS.fetch_add(1, Relaxed);
        ALLOCATED_BYTES.fetch_add(new_size as u64, Relaxed);
        FREED_BYTES.fetch_add(layout.size() as u64, Relaxed);
        note_live();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        FREED_BYTES.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocation calls (alloc, alloc_zeroed, realloc) so far, when
/// [`CountingAllocator`] is the global allocator (0 otherwise).
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Relaxed)
}

/// Bytes allocated and not yet freed, when [`CountingAllocator`] is the
/// global allocator.
pub fn live_bytes() -> i64 {
    ALLOCATED_BYTES.load(Relaxed) as i64 - FREED_BYTES.load(Relaxed) as i64
}

/// The most bytes allocated and not freed at once since the last
/// [`reset_peak`] (or the start), when [`CountingAllocator`] is the global
/// allocator.
pub fn peak_live_bytes() -> i64 {
    PEAK_LIVE_BYTES.load(Relaxed) as i64
}

/// Starts a new peak for [`peak_live_bytes`] at what is allocated now.
pub fn reset_peak() {
    PEAK_LIVE_BYTES.store(live_bytes().max(0) as u64, Relaxed);
}

/// CPU time of the whole process (user and system, every thread), in
/// seconds: `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`.
pub fn process_cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// CPU time of the calling thread, in nanoseconds:
/// `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`.
pub fn thread_cpu_nanos() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Criterion measurement: the CPU time of the benchmark's thread
/// ([`thread_cpu_nanos`]), shown like wall time.
pub struct ThreadCpuTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_nanos()
    }

    fn end(&self, start: u64) -> u64 {
        thread_cpu_nanos().saturating_sub(start)
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds, like wall time: reuse its formatting.
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}
