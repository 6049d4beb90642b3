//! Tests of the HTTP server on loopback with real TCP clients: probes
//! answer while slow and huge clients are connected, and every limit is
//! enforced. Outcomes are asserted (who closed what, which status came
//! back), with generous timeouts, not timings.
use std::net::SocketAddr;
use std::sync::{Condvar, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::test_client::{exchange, get, parse, GENEROUS};
use super::*;
use crate::metrics::{CounterSource, DatapathCounters, MapFill, MapFillSource, SourceError, Sources};

fn test_limits() -> Limits {
    Limits {
        max_header_bytes: 16 * 1024,
        max_headers: 32,
        header_read_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
        connection_timeout: Duration::from_secs(20),
        max_connections: 8,
    }
}

fn no_counters() -> Arc<dyn CounterSource> {
    Arc::new(|| Ok(DatapathCounters::default()))
}

fn no_maps() -> Arc<dyn MapFillSource> {
    Arc::new(|| Ok(Vec::<MapFill>::new()))
}

/// Starts a server on a free loopback port; its health and address.
async fn start(limits: Limits, counters: Arc<dyn CounterSource>, health: Health) -> (SocketAddr, Arc<Health>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    let health = Arc::new(health);
    let metrics = Arc::new(Metrics::new(Sources {
        counters,
        map_fill: no_maps(),
        health: Arc::clone(&health),
        object_hash: 0x1234,
    }));
    let state = HttpState { health: Arc::clone(&health), metrics, limits };
    tokio::spawn(serve(listener, state));
    (addr, health)
}

/// How a misbehaving client's connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The server closed it (EOF or reset), after the client sent `sent`
    /// bytes, with the status it answered if any.
    ByServer { sent: usize, status: Option<u16> },
    /// The client sent everything it wanted and the server never closed.
    NotClosed,
}

/// Sends a request head one byte a second (at most `bytes` of it).
async fn slowloris(addr: SocketAddr, bytes: usize) -> Ended {
    let Ok(mut s) = TcpStream::connect(addr).await else { return Ended::NotClosed };
    let head = format!("GET /metrics HTTP/1.1\r\nX-Slow: {}", "a".repeat(bytes));
    for (before, b) in head.as_bytes().iter().take(bytes).enumerate() {
        if s.write_all(&[*b]).await.is_err() {
            return Ended::ByServer { sent: before, status: None };
        }
        let sent = before + 1;
        let mut probe = [0u8; 512];
        // Wait a second for the next byte, watching for the server's end.
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ended::ByServer { sent, status: None },
            Ok(Ok(n)) => return Ended::ByServer { sent, status: parse(&probe[..n]).ok().map(|r| r.status) },
            Err(_) => {}
        }
    }
    Ended::NotClosed
}

/// Sends a request head of `total` bytes as fast as the server takes it.
async fn huge_head(addr: SocketAddr, total: usize) -> Ended {
    let Ok(s) = TcpStream::connect(addr).await else { return Ended::NotClosed };
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let mut sent = b"GET /healthz HTTP/1.1\r\nX-Big: ".len();
        if wr.write_all(b"GET /healthz HTTP/1.1\r\nX-Big: ").await.is_err() {
            return sent;
        }
        let chunk = vec![b'a'; 64 * 1024];
        while sent < total {
            match wr.write_all(&chunk).await {
                Ok(()) => sent += chunk.len(),
                Err(_) => return sent,
            }
        }
        sent
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(GENEROUS, rd.read_to_end(&mut answer)).await;
    let sent = tokio::time::timeout(GENEROUS, writer).await.ok().and_then(Result::ok).unwrap_or(total);
    match read {
        Ok(_) if sent < total => Ended::ByServer { sent, status: parse(&answer).ok().map(|r| r.status) },
        _ => Ended::NotClosed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_while_a_slow_and_a_huge_client_are_connected() {
    let (addr, health) = start(test_limits(), no_counters(), Health::default()).await;
    let slow = tokio::spawn(slowloris(addr, 30));
    let huge = tokio::spawn(huge_head(addr, 10 * 1024 * 1024));
    // Both are connected and sending before the probes are asked.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(addr, "/healthz").await.status, 200);
    let ready = get(addr, "/readyz").await;
    assert_eq!((ready.status, ready.body.contains("first full sync")), (503, true), "{ready:?}");
    health.set_ready(true);
    assert_eq!(get(addr, "/readyz").await.status, 200);
    let metrics = get(addr, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("tollgate_ready 1"), "{}", metrics.body);

    // The slow client was dropped at the header timeout, long before it
    // had sent its 30 bytes; the huge one got 431 (or a reset) after the
    // header limit, before its 10 MB were taken (what the kernel's socket
    // buffers held counts as sent).
    match slow.await.expect("slow client") {
        Ended::ByServer { sent, .. } => assert!(sent < 10, "the slow client sent {sent} bytes before being dropped"),
        Ended::NotClosed => panic!("the slow client was never dropped"),
    }
    match huge.await.expect("huge client") {
        Ended::ByServer { sent, status } => {
            assert!(sent < 10 * 1024 * 1024, "the server took all {sent} bytes of head");
            assert!(status.is_none() || status == Some(431), "{status:?}");
        }
        Ended::NotClosed => panic!("the server read 10 MB of headers"),
    }
}

#[tokio::test]
async fn limits_on_requests_are_enforced() {
    let (addr, _) = start(test_limits(), no_counters(), Health::default()).await;
    let send = |raw: String| async move { exchange(addr, raw.as_bytes(), GENEROUS).await.expect("an answer") };
    let body = send("POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello".into()).await;
    assert_eq!(body.status, 413, "{body:?}");
    let get_body = send("GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc".into()).await;
    assert_eq!(get_body.status, 413);
    let chunked = send("GET /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".into()).await;
    assert_eq!(chunked.status, 413);
    let delete = send("DELETE /healthz HTTP/1.1\r\nHost: t\r\n\r\n".into()).await;
    assert_eq!(delete.status, 405);
    assert!(delete.head.contains("allow: get, head"), "{delete:?}");
    assert_eq!(get(addr, "/nope").await.status, 404);
    let big = send(format!("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(20 * 1024))).await;
    assert_eq!(big.status, 431);
    let many: String = (0..40).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = send(format!("GET /healthz HTTP/1.1\r\nHost: t\r\n{many}\r\n")).await;
    assert_eq!(many.status, 431);
    let head = send("HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n".into()).await;
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    // One request per connection: the server closes after answering (the
    // exchange reads to the end), and says so.
    let ok = get(addr, "/healthz").await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "ok\n"));
    assert!(ok.head.contains("connection: close"), "{ok:?}");
}

/// A counter source that blocks until released.
struct Stuck {
    released: Mutex<bool>,
    wake: Condvar,
}

impl CounterSource for Stuck {
    fn read(&self) -> Result<DatapathCounters, SourceError> {
        let mut released = self.released.lock().expect("lock");
        while !*released {
            released = self.wake.wait(released).expect("wait");
        }
        Ok(DatapathCounters::default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_scrape_times_out_and_does_not_hold_the_probes() {
    let stuck = Arc::new(Stuck { released: Mutex::new(false), wake: Condvar::new() });
    let (addr, _) = start(test_limits(), Arc::clone(&stuck) as Arc<dyn CounterSource>, Health::default()).await;
    let first = get(addr, "/metrics").await;
    assert_eq!(first.status, 503, "{first:?}");
    assert!(first.body.contains("no answer within"), "{first:?}");
    // The stuck read still holds the scrape: the next one waits and times
    // out too, while the probes answer.
    let (second, probe) = tokio::join!(get(addr, "/metrics"), get(addr, "/healthz"));
    assert_eq!((second.status, probe.status), (503, 200));
    *stuck.released.lock().expect("lock") = true;
    stuck.wake.notify_all();
    let third = get(addr, "/metrics").await;
    assert_eq!(third.status, 200, "{third:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let limits = Limits { max_connections: 2, ..test_limits() };
    let (addr, _) = start(limits, no_counters(), Health::default()).await;
    // Two idle connections take both slots (and are dropped at the header
    // timeout).
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\n").await.expect("write");
        idle.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = get(addr, "/healthz").await;
    assert_eq!(answer.status, 200);
    // It was answered only once a slot was free: by now the server has
    // closed at least one idle connection.
    let mut closed = 0;
    for s in &mut idle {
        let mut buf = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await {
            closed += 1;
        }
    }
    assert!(closed >= 1, "answered while both slots were still taken");
}

#[tokio::test]
async fn liveness_and_readiness_follow_the_heartbeat() {
    let (addr, health) = start(test_limits(), no_counters(), Health::new(Duration::from_millis(300))).await;
    health.set_ready(true);
    assert_eq!((get(addr, "/healthz").await.status, get(addr, "/readyz").await.status), (200, 200));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dead = get(addr, "/healthz").await;
    assert_eq!(dead.status, 503);
    assert!(dead.body.contains("has not reported"), "{dead:?}");
    assert_eq!(get(addr, "/readyz").await.status, 503);
    let metrics = get(addr, "/metrics").await;
    assert!(metrics.body.contains("tollgate_ready 0"), "{}", metrics.body);
    health.beat();
    assert_eq!((get(addr, "/healthz").await.status, get(addr, "/readyz").await.status), (200, 200));
}
