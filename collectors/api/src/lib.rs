//! The collector API of the carat metrics agent.
//!
//! This is the only crate a collector author depends on. It holds:
//!
//! - [`Collector`], the trait every collector implements (see its docs for
//!   a complete example), and [`Environment`], what it is built with;
//! - [`Batch`], where a run adds gauges and counters;
//! - [`name`], the sanitising of names that come from outside;
//! - [`rate`], the counter-to-rate rules the agent applies;
//! - [`publish`], the one function that turns a batch into published
//!   values (filters, rates, NaN dropped), for the agent and the harness;
//! - [`CollectorError`], what a failed run returns;
//! - [`fields`], the option names a `Config` declares (how the agent tells
//!   an option that is a table from a named instance);
//! - [`input`], reading files with a bound on their size;
//! - [`options`], the types of options every collector reads the same way:
//!   lists, regexes, durations (`10` or `"10s"`), byte units;
//! - [`redact`], keeping secrets of URLs and messages out of logs and errors;
//! - [`blocking`], calls that may hang, run with a deadline on bounded threads;
//! - [`sample`], the commented sample configuration a collector crate
//!   carries, and its sections per kind;
//! - `http` (cargo feature `http`), the HTTP(S) client every collector that
//!   reads a server over HTTP uses: authentication, TLS options, a timeout, a
//!   bound on the body, and errors by kind;
//! - [`testing::Harness`], to run a collector in a test the way the agent does;
//! - `bench` (cargo feature `bench`, for benchmarks), a counting allocator
//!   and CPU-time measurements.
#![warn(missing_docs)]

pub mod batch;
#[cfg(feature = "bench")]
pub mod bench;
pub mod blocking;
pub mod collector;
pub mod error;
pub mod fields;
#[cfg(feature = "http")]
pub mod http;
pub mod input;
pub mod name;
pub mod options;
pub mod publish;
pub mod rate;
pub mod redact;
pub mod sample;
pub mod testing;

pub use batch::{Batch, MetricKind, PartFailure, Sample, SampleValue};
pub use collector::{CollectFuture, Collector, DynCollector, Environment};
pub use error::CollectorError;
pub use rate::{CounterWidth, RateTracker};
