//! A tiny DNS server for tests: UDP and TCP on one ephemeral port of a
//! loopback address, answering every query through a handler, and remembering the
//! queries it saw. Also a builder for crafted responses, written byte by
//! byte so that tests can send malformed or spoofed ones.
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::proto::op::Message;

pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_AAAA: u16 = 28;
pub const CLASS_IN: u16 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// A query as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub transport: Transport,
    pub id: u16,
    pub name: String,
    pub qtype: u16,
    pub recursion_desired: bool,
}

/// What to send back: any number of messages (over TCP only the first), or
/// nothing at all.
pub enum Reply {
    Send(Vec<Vec<u8>>),
    Silent,
}

type Handler = dyn Fn(&Seen, &[u8]) -> Reply + Send + Sync;

pub struct TestServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl TestServer {
    /// Starts serving on 127.0.0.1 (UDP and TCP on the same free port).
    pub fn start(handler: impl Fn(&Seen, &[u8]) -> Reply + Send + Sync + 'static) -> TestServer {
        TestServer::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), handler).expect("127.0.0.1 is available")
    }

    /// Starts serving on `ip`; `None` when no port of it can be bound for
    /// both UDP and TCP (e.g. no IPv6 in the test environment).
    pub fn start_on(ip: IpAddr, handler: impl Fn(&Seen, &[u8]) -> Reply + Send + Sync + 'static) -> Option<TestServer> {
        let (udp, tcp) = bind_pair(ip)?;
        Some(TestServer::serve(udp, tcp, Arc::new(handler)))
    }

    fn serve(udp: UdpSocket, tcp: TcpListener, handler: Arc<Handler>) -> TestServer {
        let addr = udp.local_addr().expect("bound address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        {
            let (seen, handler) = (seen.clone(), handler.clone());
            std::thread::spawn(move || serve_udp(udp, &seen, &*handler));
        }
        {
            let seen = seen.clone();
            std::thread::spawn(move || {
                for conn in tcp.incoming().flatten() {
                    let (seen, handler) = (seen.clone(), handler.clone());
                    std::thread::spawn(move || serve_tcp(conn, &seen, &*handler));
                }
            });
        }
        TestServer { addr, seen }
    }

    /// Starts serving on port 53 of a free address in 127.83.0.0/16, for
    /// code that reads a `resolv.conf` (which cannot name a port).
    pub fn start_on_port_53(handler: impl Fn(&Seen, &[u8]) -> Reply + Send + Sync + 'static) -> Option<TestServer> {
        let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let seed = std::process::id() as u16 ^ clock as u16;
        let handler: Arc<Handler> = Arc::new(handler);
        for i in 0..200u16 {
            let n = seed.wrapping_add(i.wrapping_mul(7919));
            let ip = IpAddr::V4(Ipv4Addr::new(127, 83, (n >> 8) as u8, (n & 0xff) as u8 | 1));
            let (Ok(udp), Ok(tcp)) = (UdpSocket::bind((ip, 53)), TcpListener::bind((ip, 53))) else { continue };
            return Some(TestServer::serve(udp, tcp, handler));
        }
        None
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("log lock").clone()
    }
}

/// An address on which nothing listens (UDP queries get ECONNREFUSED).
pub fn closed_port() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("bound address")
}

fn bind_pair(ip: IpAddr) -> Option<(UdpSocket, TcpListener)> {
    for _ in 0..50 {
        let udp = UdpSocket::bind((ip, 0)).ok()?;
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().ok()?) {
            return Some((udp, tcp));
        }
    }
    None
}

/// The query in `msg`, its name in lowercase without the trailing dot.
fn note(seen: &Mutex<Vec<Seen>>, transport: Transport, msg: &[u8]) -> Option<Seen> {
    let query = Message::from_vec(msg).ok()?;
    let question = query.queries.first()?;
    let name = question.name().to_ascii().to_ascii_lowercase();
    let s = Seen {
        transport,
        id: query.metadata.id,
        name: name.strip_suffix('.').unwrap_or(&name).to_string(),
        qtype: question.query_type().into(),
        recursion_desired: query.metadata.recursion_desired,
    };
    seen.lock().expect("log lock").push(s.clone());
    Some(s)
}

fn serve_udp(socket: UdpSocket, seen: &Mutex<Vec<Seen>>, handler: &Handler) {
    let mut buf = [0u8; 1500];
    while let Ok((n, from)) = socket.recv_from(&mut buf) {
        let Some(s) = note(seen, Transport::Udp, &buf[..n]) else {
            continue;
        };
        if let Reply::Send(msgs) = handler(&s, &buf[..n]) {
            for m in msgs {
                let _ = socket.send_to(&m, from);
            }
        }
    }
}

fn serve_tcp(mut conn: TcpStream, seen: &Mutex<Vec<Seen>>, handler: &Handler) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut len = [0u8; 2];
    while conn.read_exact(&mut len).is_ok() {
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if conn.read_exact(&mut msg).is_err() {
            return;
        }
        let Some(s) = note(seen, Transport::Tcp, &msg) else {
            return;
        };
        match handler(&s, &msg) {
            Reply::Send(msgs) => {
                if let Some(m) = msgs.first() {
                    let mut framed = (m.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(m);
                    if conn.write_all(&framed).is_err() {
                        return;
                    }
                }
            }
            Reply::Silent => return,
        }
    }
}

/// Record data for crafted answers.
pub enum Data {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(&'static str),
    /// Any type with raw data.
    Raw(u16, Vec<u8>),
}

/// One answer record.
pub struct Rr {
    pub name: &'static str,
    pub ttl: u32,
    pub data: Data,
}

pub fn a(name: &'static str, ttl: u32, ip: &str) -> Rr {
    Rr {
        name,
        ttl,
        data: Data::A(ip.parse().expect("IPv4 literal")),
    }
}

pub fn aaaa(name: &'static str, ttl: u32, ip: &str) -> Rr {
    Rr {
        name,
        ttl,
        data: Data::Aaaa(ip.parse().expect("IPv6 literal")),
    }
}

pub fn cname(name: &'static str, ttl: u32, target: &'static str) -> Rr {
    Rr {
        name,
        ttl,
        data: Data::Cname(target),
    }
}

fn push_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// A response with id `id` to the question (`qname`, `qtype`): QR, RD and
/// RA set, TC when `truncated`. Owners equal to `qname` are compressed
/// (pointer to the question), the others written out.
pub fn build(id: u16, qname: &str, qtype: u16, rcode: u16, truncated: bool, answers: &[Rr]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.push(0x81 | if truncated { 0x02 } else { 0 });
    m.push(0x80 | (rcode & 0x0f) as u8);
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    push_name(&mut m, qname);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    for rr in answers {
        if rr.name.eq_ignore_ascii_case(qname) {
            m.extend_from_slice(&[0xc0, 0x0c]);
        } else {
            push_name(&mut m, rr.name);
        }
        let (rtype, rdata) = match &rr.data {
            Data::A(ip) => (TYPE_A, ip.octets().to_vec()),
            Data::Aaaa(ip) => (TYPE_AAAA, ip.octets().to_vec()),
            Data::Cname(target) => {
                let mut d = Vec::new();
                push_name(&mut d, target);
                (TYPE_CNAME, d)
            }
            Data::Raw(t, d) => (*t, d.clone()),
        };
        m.extend_from_slice(&rtype.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m.extend_from_slice(&rr.ttl.to_be_bytes());
        m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(&rdata);
    }
    m
}

/// The response to `query` (its id and question) with `rcode` and `answers`.
pub fn respond(query: &Seen, rcode: u16, truncated: bool, answers: &[Rr]) -> Vec<u8> {
    build(query.id, &query.name, query.qtype, rcode, truncated, answers)
}
