//! Probes run inside pods; each prints one JSON line and exits 0 either way.

use crate::dns;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ProbeResult {
    pub ok: bool,
    pub errno: Option<i32>,
    pub error: String,
    pub elapsed_ms: u64,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub rcode: Option<u8>,
    #[serde(default)]
    pub answers: Vec<String>,
}

impl ProbeResult {
    pub fn is_eperm(&self) -> bool {
        self.errno == Some(libc::EPERM)
    }

    /// allowed / refused(EPERM) / timeout / error(...), for humans.
    pub fn verdict(&self) -> String {
        if self.ok {
            "allowed".into()
        } else if self.is_eperm() {
            "refused(EPERM)".into()
        } else if self.error.contains("timeout") || self.errno == Some(libc::ETIMEDOUT) || self.errno == Some(libc::EAGAIN) {
            "timeout".into()
        } else {
            format!("error({})", self.error)
        }
    }
}

fn fail(start: Instant, e: &std::io::Error) -> ProbeResult {
    let timeout = matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock);
    ProbeResult {
        ok: false,
        errno: e.raw_os_error(),
        error: if timeout { format!("timeout: {e}") } else { e.to_string() },
        elapsed_ms: start.elapsed().as_millis() as u64,
        ..Default::default()
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))
}

pub fn tcp(to: SocketAddr, timeout: Duration, http_get: bool) -> ProbeResult {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut s = match TcpStream::connect_timeout(&to, timeout) {
        Ok(s) => s,
        Err(e) => return fail(start, &e),
    };
    if !http_get {
        return ProbeResult { ok: true, elapsed_ms: start.elapsed().as_millis() as u64, ..Default::default() };
    }
    let io = (|| -> std::io::Result<Vec<u8>> {
        s.set_write_timeout(Some(remaining(deadline)))?;
        s.write_all(format!("GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", crate::pods::EXTERNAL_HOST).as_bytes())?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            s.set_read_timeout(Some(remaining(deadline)))?;
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Ok(buf);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })();
    let raw = match io {
        Ok(b) => b,
        Err(e) => return fail(start, &e),
    };
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok());
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    ProbeResult {
        ok: status == Some(200),
        error: if status == Some(200) { String::new() } else { format!("unexpected response: {:?}", text.lines().next()) },
        elapsed_ms: start.elapsed().as_millis() as u64,
        status,
        body,
        ..Default::default()
    }
}

pub fn udp(to: SocketAddr, payload: &str) -> ProbeResult {
    let start = Instant::now();
    let bind: SocketAddr = if to.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
    let r = UdpSocket::bind(bind).and_then(|s| s.send_to(payload.as_bytes(), to));
    match r {
        Ok(_) => ProbeResult { ok: true, elapsed_ms: start.elapsed().as_millis() as u64, ..Default::default() },
        Err(e) => fail(start, &e),
    }
}

pub fn dns(server: SocketAddr, name: &str, qtype: u16, use_tcp: bool, timeout: Duration) -> ProbeResult {
    let start = Instant::now();
    let deadline = start + timeout;
    let id = (std::process::id() as u16) ^ 0x5a5a;
    let q = dns::encode_query(id, name, qtype);
    let io = (|| -> std::io::Result<Vec<u8>> {
        if use_tcp {
            let mut s = TcpStream::connect_timeout(&server, timeout)?;
            s.set_write_timeout(Some(remaining(deadline)))?;
            s.set_read_timeout(Some(remaining(deadline)))?;
            let mut msg = (q.len() as u16).to_be_bytes().to_vec();
            msg.extend_from_slice(&q);
            s.write_all(&msg)?;
            let mut len = [0u8; 2];
            s.read_exact(&mut len)?;
            let mut resp = vec![0u8; u16::from_be_bytes(len) as usize];
            s.read_exact(&mut resp)?;
            Ok(resp)
        } else {
            let bind: SocketAddr = if server.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
            let s = UdpSocket::bind(bind)?;
            s.send_to(&q, server)?;
            let mut buf = [0u8; 1500];
            loop {
                s.set_read_timeout(Some(remaining(deadline)))?;
                let (n, from) = s.recv_from(&mut buf)?;
                if from == server {
                    return Ok(buf[..n].to_vec());
                }
            }
        }
    })();
    let resp = match io {
        Ok(r) => r,
        Err(e) => return fail(start, &e),
    };
    match dns::parse_response(&resp, id) {
        Ok((rcode, answers)) => ProbeResult {
            ok: rcode == 0 && !answers.is_empty(),
            elapsed_ms: start.elapsed().as_millis() as u64,
            rcode: Some(rcode),
            answers: answers.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        },
        Err(e) => ProbeResult {
            error: format!("bad response: {e:#}"),
            elapsed_ms: start.elapsed().as_millis() as u64,
            ..Default::default()
        },
    }
}
