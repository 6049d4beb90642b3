//! The throughput bench's load generator: one server (in the gateway's
//! netns) and a client that runs one timed slice of one kind of traffic
//! and prints one JSON line.
//!
//! Kinds:
//! - `stream`: one TCP connection, 128 KiB writes for the slice, then
//!   `shutdown(WR)` and a wait for the server's close: bytes delivered
//!   per second (the wait counts, so nothing still in flight is counted).
//! - `crr`: TCP connect, the client shuts its side down, the server
//!   accepts, reads the EOF and closes, the client reads EOF and closes:
//!   completed connections per second. The client closes first, so the
//!   TIME_WAIT sockets are the client's (its netns allows their reuse,
//!   `tcp_tw_reuse=1`), never the server's, where a new SYN meeting an old
//!   TIME_WAIT would stall a connection for a second.
//! - `udp`: 64-byte datagrams with `sendto` on an unconnected socket (so
//!   Tollgate's `sendmsg` hook runs for each); the server counts what it
//!   received from the client's address and the client asks for the count
//!   on the control port: datagrams received per second.
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const STREAM_PORT: u16 = 5001;
pub const CRR_PORT: u16 = 5002;
pub const UDP_PORT: u16 = 5003;
pub const CONTROL_PORT: u16 = 5004;
/// UDP payload size.
pub const UDP_PAYLOAD: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Stream,
    Crr,
    Udp,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Stream, Kind::Crr, Kind::Udp];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Stream => "stream",
            Kind::Crr => "crr",
            Kind::Udp => "udp",
        }
    }

    /// Column heading, with the unit of [`Slice::rate`].
    pub fn heading(self) -> &'static str {
        match self {
            Kind::Stream => "TCP stream",
            Kind::Crr => "TCP connections/s",
            Kind::Udp => "UDP 64-byte packets/s",
        }
    }
}

/// What one slice measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Slice {
    pub kind: Kind,
    /// Seconds from the first operation to the end of the slice (for
    /// `stream`, to the server's close).
    pub seconds: f64,
    /// Operations completed: bytes (`stream`), connections (`crr`),
    /// datagrams received by the server (`udp`).
    pub ops: u64,
    /// Datagrams `sendto` accepted (`udp`), else `ops`.
    pub sent: u64,
    pub errors: u64,
    /// `ops / seconds`.
    pub rate: f64,
}

/// Nice -20 for the calling thread and the threads it starts: on a
/// shared machine the bench's two ends then get the CPUs before
/// whatever else runs (builds, other tests), which is most of the noise.
pub fn boost_priority() {
    // SAFETY: plain setpriority(2) on the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -20) };
    if rc != 0 {
        eprintln!("load: could not raise the priority: {}", std::io::Error::last_os_error());
    }
}

/// Serves the three kinds and the control port on `addr`; prints `ready`
/// once bound, then runs until killed.
pub fn serve(addr: IpAddr) -> Result<()> {
    boost_priority();
    let stream = TcpListener::bind((addr, STREAM_PORT)).with_context(|| format!("binding {addr}:{STREAM_PORT}"))?;
    let crr = TcpListener::bind((addr, CRR_PORT)).with_context(|| format!("binding {addr}:{CRR_PORT}"))?;
    let control = TcpListener::bind((addr, CONTROL_PORT)).with_context(|| format!("binding {addr}:{CONTROL_PORT}"))?;
    let udp = UdpSocket::bind((addr, UDP_PORT)).with_context(|| format!("binding {addr}:{UDP_PORT}"))?;
    set_rcvbuf_force(&udp, 16 << 20);
    let counts: Arc<Mutex<HashMap<SocketAddr, u64>>> = Arc::default();
    std::thread::spawn(move || {
        for conn in stream.incoming().flatten() {
            std::thread::spawn(move || drain(conn));
        }
    });
    std::thread::spawn(move || {
        // Wait for the client's FIN, then close: the client is the one
        // that closes first.
        let mut b = [0u8; 16];
        for mut conn in crr.incoming().flatten() {
            let _ = conn.read(&mut b);
        }
    });
    let c = counts.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        loop {
            if let Ok((_, from)) = udp.recv_from(&mut buf) {
                if let Ok(mut m) = c.lock() {
                    *m.entry(from).or_default() += 1;
                }
            }
        }
    });
    crate::serve::ready();
    for conn in control.incoming().flatten() {
        if let Err(e) = answer_count(conn, &counts) {
            eprintln!("load-serve: control request: {e:#}");
        }
    }
    Ok(())
}

fn drain(mut conn: TcpStream) {
    let mut buf = vec![0u8; 256 << 10];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}

/// `udp <addr>`: the datagrams received from `addr` (forgotten once told).
fn answer_count(conn: TcpStream, counts: &Mutex<HashMap<SocketAddr, u64>>) -> Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let Some(addr) = line.trim().strip_prefix("udp ") else { bail!("unknown request {line:?}") };
    let addr: SocketAddr = addr.parse().with_context(|| format!("bad address in {line:?}"))?;
    let n = counts.lock().map_err(|_| anyhow::anyhow!("counts poisoned"))?.remove(&addr).unwrap_or(0);
    (&conn).write_all(format!("{n}\n").as_bytes())?;
    Ok(())
}

fn set_rcvbuf_force(sock: &UdpSocket, bytes: i32) {
    // SO_RCVBUFFORCE (root) lifts net.core.rmem_max: the server must not
    // be the one that drops.
    // SAFETY: setsockopt on an open socket with a valid int.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &bytes as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        );
    }
}

/// Runs one slice of `kind` against the server at `to` for `dur`.
pub fn client(kind: Kind, to: IpAddr, dur: Duration) -> Result<Slice> {
    boost_priority();
    match kind {
        Kind::Stream => stream(to, dur),
        Kind::Crr => crr(to, dur),
        Kind::Udp => udp(to, dur),
    }
}

fn slice(kind: Kind, seconds: f64, ops: u64, sent: u64, errors: u64) -> Slice {
    Slice { kind, seconds, ops, sent, errors, rate: if seconds > 0.0 { ops as f64 / seconds } else { 0.0 } }
}

fn stream(to: IpAddr, dur: Duration) -> Result<Slice> {
    let mut conn = TcpStream::connect((to, STREAM_PORT)).with_context(|| format!("connecting to {to}:{STREAM_PORT}"))?;
    let buf = vec![0x5au8; 128 << 10];
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed() < dur {
        bytes += conn.write(&buf).context("writing the stream")? as u64;
    }
    conn.shutdown(Shutdown::Write)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut rest = [0u8; 64];
    // The server closes once it has read everything.
    while conn.read(&mut rest).context("waiting for the server's close")? > 0 {}
    Ok(slice(Kind::Stream, start.elapsed().as_secs_f64(), bytes, bytes, 0))
}

fn crr(to: IpAddr, dur: Duration) -> Result<Slice> {
    let addr = SocketAddr::new(to, CRR_PORT);
    let start = Instant::now();
    let (mut done, mut errors) = (0u64, 0u64);
    let mut byte = [0u8; 1];
    while start.elapsed() < dur {
        match TcpStream::connect(addr) {
            Ok(mut c) => match c.shutdown(Shutdown::Write).and_then(|_| c.read(&mut byte)) {
                Ok(0) => done += 1,
                _ => errors += 1,
            },
            Err(_) => errors += 1,
        }
        if errors > 1000 && done == 0 {
            bail!("no connection to {addr} completes ({errors} failures)");
        }
    }
    Ok(slice(Kind::Crr, start.elapsed().as_secs_f64(), done, done, errors))
}

fn udp(to: IpAddr, dur: Duration) -> Result<Slice> {
    let bind: SocketAddr = if to.is_ipv4() { "0.0.0.0:0".parse()? } else { "[::]:0".parse()? };
    let sock = UdpSocket::bind(bind)?;
    let dest = SocketAddr::new(to, UDP_PORT);
    let payload = [0x42u8; UDP_PAYLOAD];
    let start = Instant::now();
    let (mut sent, mut errors) = (0u64, 0u64);
    while start.elapsed() < dur {
        // A batch between clock reads.
        for _ in 0..64 {
            match sock.send_to(&payload, dest) {
                Ok(_) => sent += 1,
                Err(_) => errors += 1,
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    // Let the server's socket drain before asking.
    std::thread::sleep(Duration::from_millis(100));
    let local = local_addr_towards(&sock, to)?;
    let received = ask_count(to, local)?;
    Ok(slice(Kind::Udp, seconds, received, sent, errors))
}

/// The unconnected socket's address as the server saw it.
fn local_addr_towards(sock: &UdpSocket, to: IpAddr) -> Result<SocketAddr> {
    let port = sock.local_addr()?.port();
    // The source address the route to `to` picks.
    let probe = UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
    probe.connect((to, UDP_PORT))?;
    Ok(SocketAddr::new(probe.local_addr()?.ip(), port))
}

fn ask_count(to: IpAddr, local: SocketAddr) -> Result<u64> {
    let mut c = TcpStream::connect_timeout(&SocketAddr::new(to, CONTROL_PORT), Duration::from_secs(5))
        .with_context(|| format!("connecting to the control port {to}:{CONTROL_PORT}"))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.write_all(format!("udp {local}\n").as_bytes())?;
    let mut answer = String::new();
    c.read_to_string(&mut answer)?;
    answer.trim().parse().with_context(|| format!("control port answered {answer:?}"))
}
