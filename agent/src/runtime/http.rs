//! `--metrics-addr`: `/metrics`, `/healthz` and `/readyz` on hyper (HTTP/1.1)
//! and tokio, built so that no client can stop the probes:
//! - one request per connection (no keep-alive), and every connection is
//!   cut after `connection_timeout`, whatever it is doing (a client that
//!   does not read its response included);
//! - the request head is read within `header_read_timeout` (a client
//!   sending a byte a second is dropped), and may hold at most
//!   `max_header_bytes` in at most `max_headers` headers (431);
//! - no request bodies: a request with one gets 413, its body unread;
//! - GET and HEAD only (405);
//! - each answer is ready within `request_timeout` (503 otherwise);
//! - at most `max_connections` connections at once: more wait in the listen
//!   backlog until one ends, which the limits above bound;
//! - scrapes are encoded one at a time on a blocking thread, so a slow map
//!   read cannot pile up threads, and the probes never touch the maps.
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::metrics::{Format, Health, Metrics};

/// The server's limits (see the module documentation).
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub connection_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            connection_timeout: Duration::from_secs(30),
            max_connections: 64,
        }
    }
}

/// What the server answers from: handles the runtime keeps updating.
pub struct HttpState {
    /// The loop's heartbeat and readiness (`/healthz`, `/readyz`).
    pub health: Arc<Health>,
    /// The registry `/metrics` encodes.
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
}

impl HttpState {
    /// Serves `metrics` and its health with the default limits.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        HttpState { health: Arc::clone(metrics.health()), metrics, limits: Limits::default() }
    }
}

/// hyper's smallest read buffer.
const MIN_BUFFER: usize = 8192;

struct Shared {
    state: HttpState,
    /// One scrape at a time.
    scrape: Arc<Semaphore>,
}

/// Serves until the task is dropped; never returns on its own.
pub async fn serve(listener: TcpListener, state: HttpState) {
    let limits = state.limits.clone();
    let shared = Arc::new(Shared { state, scrape: Arc::new(Semaphore::new(1)) });
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .keep_alive(false)
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_bytes.max(MIN_BUFFER));
    loop {
        let Ok(permit) = Arc::clone(&connections).acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, for example: wait a little
                // rather than spin.
                warn!(error = %e, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let for_request = Arc::clone(&shared);
        let conn = http.serve_connection(
            TokioIo::new(stream),
            service_fn(move |req| handle(Arc::clone(&for_request), req)),
        );
        let cut_after = limits.connection_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(cut_after, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(%peer, error = %e, "HTTP connection ended with an error"),
                Err(_) => debug!(%peer, "HTTP connection cut after {cut_after:?}"),
            }
        });
    }
}

type Answer = Response<Full<Bytes>>;

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Answer, Infallible> {
    let limit = shared.state.limits.request_timeout;
    Ok(match tokio::time::timeout(limit, route(&shared, &req)).await {
        Ok(answer) => answer,
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, format!("no answer within {limit:?}\n")),
    })
}

async fn route(shared: &Shared, req: &Request<Incoming>) -> Answer {
    if !req.body().is_end_stream() {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "request bodies are not accepted\n".into());
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut answer = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
        answer.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return answer;
    }
    let health = &shared.state.health;
    match req.uri().path() {
        "/healthz" if health.is_alive() => text(StatusCode::OK, "ok\n".into()),
        "/healthz" => text(StatusCode::SERVICE_UNAVAILABLE, stuck(health)),
        "/readyz" if health.is_ready() => text(StatusCode::OK, "ready\n".into()),
        "/readyz" if !health.is_alive() => text(StatusCode::SERVICE_UNAVAILABLE, stuck(health)),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: waiting for the first full sync and the first apply\n".into(),
        ),
        "/metrics" => {
            let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            scrape(shared, Format::from_accept(accept)).await
        }
        _ => text(StatusCode::NOT_FOUND, "not found: try /metrics, /healthz or /readyz\n".into()),
    }
}

fn stuck(health: &Health) -> String {
    format!(
        "the agent's loop has not reported for {} s (limit {} s)\n",
        health.since_beat().as_secs(),
        health.stale_after().as_secs()
    )
}

async fn scrape(shared: &Shared, format: Format) -> Answer {
    let Ok(permit) = Arc::clone(&shared.scrape).acquire_owned().await else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down\n".into());
    };
    let metrics = Arc::clone(&shared.state.metrics);
    // The permit goes with the blocking job: a scrape that outlives its
    // request still holds the next one back.
    let encoded = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        metrics.encode(format)
    })
    .await;
    match encoded {
        Ok(Ok(body)) => {
            let mut answer = Response::new(Full::new(Bytes::from(body)));
            answer.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
            answer
        }
        Ok(Err(_)) => text(StatusCode::INTERNAL_SERVER_ERROR, "encoding the metrics failed\n".into()),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("the scrape failed: {e}\n")),
    }
}

fn text(status: StatusCode, body: String) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(body)));
    *answer.status_mut() = status;
    answer.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    answer
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
#[cfg(test)]
#[path = "http_test_client.rs"]
pub(crate) mod test_client;
