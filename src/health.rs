//! The health endpoint: `GET /health` on `agent.health_listen` answers
//! `200 OK` when every collector and output is healthy, `500` with one line
//! per problem otherwise, so a load balancer, a monitoring check or an
//! operator with curl can tell at once whether the agent is doing its job.
//!
//! A collector is unhealthy while it is failing (since its last failed run,
//! until a run succeeds). An output is unhealthy while it is not connected
//! or while it holds more than half of its buffer.

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

use crate::stats::{get, AgentStats};

/// A request that has not completed in this time is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The health report: whether all is well, and a line per component.
pub fn report(stats: &AgentStats) -> (bool, String) {
    let mut problems = String::new();
    let mut lines = String::new();
    for (name, s) in &stats.collectors {
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
    for (name, s) in &stats.outputs {
        let connected = s.connected.load(Ordering::Relaxed);
        let buffered = get(&s.buffered);
        let _ = writeln!(
            lines,
            "output {name}: {} (sent {}, dropped {}, buffered {buffered})",
            if connected {
                "connected"
            } else {
                "not connected"
            },
            get(&s.sent),
            get(&s.dropped)
        );
        if !connected {
            let _ = writeln!(
                problems,
                "output {name} is not connected ({buffered} metrics waiting)"
            );
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
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = respond(&stats, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, connection).await;
        });
    }
}
