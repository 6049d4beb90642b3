//! Sending queries to one name server and collecting the matching
//! responses: several queries at once over one UDP socket, or one query
//! over TCP (after a truncated UDP answer). Responses whose id, QR bit or
//! question do not match a query sent are ignored (a stray or spoofed
//! datagram must not end the wait).
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use super::wire::{parse_question, Question, CLASS_IN};

/// Biggest UDP response read (servers send at most 512 bytes without EDNS,
/// but a bigger one does no harm).
const UDP_BUFFER: usize = 4096;

/// One query as sent.
#[derive(Clone, Debug)]
pub struct Query {
    pub id: u16,
    pub question: Question,
    pub bytes: Vec<u8>,
}

impl Query {
    pub fn new(id: u16, name: &str, qtype: u16) -> Query {
        Query {
            id,
            question: Question {
                name: name.to_string(),
                qtype,
                qclass: CLASS_IN,
            },
            bytes: super::wire::encode_query(id, name, qtype),
        }
    }

    /// True when `msg` is a response to this query: same id, QR set, same
    /// question (names compared without case).
    pub fn answered_by(&self, msg: &[u8]) -> bool {
        match parse_question(msg) {
            Ok((h, Some(q), _)) => h.id == self.id && h.is_response() && q == self.question,
            _ => false,
        }
    }
}

/// Why one server gave no response to a query.
#[derive(Debug)]
pub enum TransportError {
    Timeout,
    Io(std::io::Error),
    /// A TCP response that does not match the query.
    Mismatch,
}

/// Sends every query to `server` over UDP and waits up to `timeout` for
/// their responses. Returns one result per query, in order.
pub fn udp_exchange(server: SocketAddr, timeout: Duration, queries: &[&Query]) -> Vec<Result<Vec<u8>, TransportError>> {
    let mut results: Vec<Option<Result<Vec<u8>, TransportError>>> = queries.iter().map(|_| None).collect();
    if let Err(e) = udp_send_and_collect(server, timeout, queries, &mut results) {
        for slot in results.iter_mut().filter(|r| r.is_none()) {
            *slot = Some(Err(TransportError::Io(copy_error(&e))));
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or(Err(TransportError::Timeout)))
        .collect()
}

fn udp_send_and_collect(
    server: SocketAddr,
    timeout: Duration,
    queries: &[&Query],
    results: &mut [Option<Result<Vec<u8>, TransportError>>],
) -> std::io::Result<()> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)?;
    // Connected: the kernel drops datagrams from other sources, and an ICMP
    // port unreachable surfaces as ECONNREFUSED at once.
    socket.connect(server)?;
    for q in queries {
        socket.send(&q.bytes)?;
    }
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; UDP_BUFFER];
    while results.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        socket.set_read_timeout(Some(left))?;
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let msg = &buf[..n];
        if let Some(i) = queries.iter().position(|q| q.answered_by(msg)) {
            if results[i].is_none() {
                results[i] = Some(Ok(msg.to_vec()));
            }
        }
    }
    Ok(())
}

fn copy_error(e: &std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(e.kind(), e.to_string()),
    }
}

/// Sends `query` to `server` over TCP (two-byte length prefix) and reads
/// its response; the whole exchange ends at most `timeout` after the start.
pub fn tcp_exchange(server: SocketAddr, timeout: Duration, query: &Query) -> Result<Vec<u8>, TransportError> {
    let deadline = Instant::now() + timeout;
    let io = |e: std::io::Error| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => TransportError::Timeout,
        _ => TransportError::Io(e),
    };
    let mut stream = TcpStream::connect_timeout(&server, timeout).map_err(io)?;
    let left = || {
        let d = deadline.saturating_duration_since(Instant::now());
        if d.is_zero() {
            Err(TransportError::Timeout)
        } else {
            Ok(d)
        }
    };
    stream.set_write_timeout(Some(left()?)).map_err(io)?;
    // A query for a validated name is under 300 bytes.
    let mut framed = (query.bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query.bytes);
    stream.write_all(&framed).map_err(io)?;
    // Every read waits only for what is left of the deadline, so a server
    // trickling bytes cannot hold the lookup past it.
    let mut read_full = |buf: &mut [u8]| -> Result<(), TransportError> {
        let mut filled = 0;
        while filled < buf.len() {
            stream.set_read_timeout(Some(left()?)).map_err(io)?;
            match stream.read(&mut buf[filled..]) {
                Ok(0) => return Err(io(ErrorKind::UnexpectedEof.into())),
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(io(e)),
            }
        }
        Ok(())
    };
    let mut len = [0u8; 2];
    read_full(&mut len)?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    read_full(&mut msg)?;
    if query.answered_by(&msg) {
        Ok(msg)
    } else {
        Err(TransportError::Mismatch)
    }
}
