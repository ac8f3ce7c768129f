//! The health endpoint: `GET /health` on `agent.health_listen` answers
//! `200 OK` when every collector and output is healthy, `500` with one line
//! per problem otherwise, so a load balancer, a monitoring check or an
//! operator with curl can tell at once whether the agent is doing its job.
//!
//! A collector is unhealthy while it is failing (since its last failed run,
//! until a run succeeds). An output is unhealthy while it is not connected,
//! when it dropped metrics in the last [`DROP_WINDOW`], while more than half
//! of its memory buffer waits, or when metrics have been waiting without any
//! delivery for longer than its reconnect ceiling (`reconnect_max`: a
//! receiver that accepts connections and never takes a line is caught
//! here, connected or not).
//!
//! At most [`MAX_CONNECTIONS`] requests are served at once; a client beyond
//! that is disconnected at once, so slow or idle clients cannot make the
//! agent hold memory for them.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::stats::{get, now_ms, AgentStats, OutputStats};

/// A request that has not completed in this time is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests served at once at most.
pub const MAX_CONNECTIONS: usize = 16;

/// An output that dropped metrics this recently is reported.
pub const DROP_WINDOW: Duration = Duration::from_secs(300);

/// What is wrong with an output now, if anything.
fn output_problem(s: &OutputStats, now: u64) -> Option<String> {
    let buffered = get(&s.buffered);
    if !s.connected.load(Ordering::Relaxed) {
        return Some(format!("is not connected ({buffered} metrics waiting)"));
    }
    let last_drop = get(&s.last_drop_ms);
    if last_drop > 0 && now.saturating_sub(last_drop) < DROP_WINDOW.as_millis() as u64 {
        let ago = now.saturating_sub(last_drop) / 1000;
        return Some(format!(
            "dropped metrics {ago} s ago ({} dropped in all)",
            get(&s.dropped)
        ));
    }
    let capacity = get(&s.capacity);
    let waiting = get(&s.waiting);
    if capacity > 0 && waiting > capacity / 2 {
        return Some(format!(
            "holds {waiting} metrics waiting, more than half of its buffer of {capacity}"
        ));
    }
    let stall_limit = get(&s.stall_limit_ms);
    let since = get(&s.waiting_since_ms);
    if stall_limit > 0 && since > 0 && now.saturating_sub(since) > stall_limit {
        return Some(format!(
            "has delivered nothing for {} s with {buffered} metrics waiting",
            now.saturating_sub(since) / 1000
        ));
    }
    None
}

/// The health report: whether all is well, and a line per component.
pub fn report(stats: &AgentStats) -> (bool, String) {
    let mut problems = String::new();
    let mut lines = String::new();
    for (name, s) in &stats.collectors() {
        let failing = s.failing.load(Ordering::Relaxed);
        let state = if failing { "failing" } else { "ok" };
        let _ = writeln!(
            lines,
            "collector {name}: {state} (runs {}, errors {}, timeouts {}, panics {})",
            get(&s.runs),
            get(&s.errors),
            get(&s.timeouts),
            get(&s.panics)
        );
        if failing {
            let _ = writeln!(problems, "collector {name} is failing");
        }
    }
    let now = now_ms();
    for (name, s) in &stats.outputs() {
        let connected = s.connected.load(Ordering::Relaxed);
        let _ = writeln!(
            lines,
            "output {name}: {} (sent {}, dropped {}, buffered {})",
            if connected {
                "connected"
            } else {
                "not connected"
            },
            get(&s.sent),
            get(&s.dropped),
            get(&s.buffered)
        );
        if let Some(problem) = output_problem(s, now) {
            let _ = writeln!(problems, "output {name} {problem}");
        }
    }
    let healthy = problems.is_empty();
    let body = if healthy {
        format!("OK\n{lines}")
    } else {
        format!("UNHEALTHY\n{problems}\n{lines}")
    };
    (healthy, body)
}

fn respond(stats: &AgentStats, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = if request.uri().path() != "/health" {
        (
            StatusCode::NOT_FOUND,
            "not found: the health endpoint is /health\n".to_owned(),
        )
    } else {
        let (healthy, body) = report(stats);
        let status = if healthy {
            StatusCode::OK
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        (status, body)
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Serves the health endpoint on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, stats: Arc<AgentStats>, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut refused_logged = false;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!("health endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // Dropping the stream closes it: the client sees the connection
            // end at once rather than the agent queueing it.
            if !refused_logged {
                refused_logged = true;
                tracing::warn!(
                    "health endpoint: more than {MAX_CONNECTIONS} connections at once; closing the extra ones"
                );
            }
            continue;
        };
        refused_logged = false;
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = respond(&stats, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                // A health request is one short line and a few headers.
                .max_buf_size(8192)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, connection).await;
        });
    }
}
