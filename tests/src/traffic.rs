//! Traffic tools for the reply-state and flood stories: the `lo`
//! poisoning attack, a sniffer for the external host, UDP and TCP echo
//! servers and clients, and a SYN flood from a raw socket. Each prints
//! one JSON line (servers print `ready` first).
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

#[derive(Debug, Default, Serialize)]
pub struct PoisonResult {
    /// The forged datagram reached the pod's socket over `lo`.
    pub received: bool,
    /// errno of the unconnected send to the forged peer (None: sent).
    pub send_errno: Option<i32>,
    /// errno of connect()+send to the forged peer (None: sent).
    pub connected_send_errno: Option<i32>,
}

fn errno_of(r: std::io::Result<usize>) -> Option<i32> {
    r.err().map(|e| e.raw_os_error().unwrap_or(-1))
}

/// `setsockopt` with an int value.
pub fn setsockopt_int(fd: i32, level: i32, name: i32, value: i32) -> Result<()> {
    // SAFETY: a plain setsockopt with an int on a socket we own.
    let rc = unsafe {
        libc::setsockopt(fd, level, name, (&value as *const i32).cast(), std::mem::size_of::<i32>() as u32)
    };
    if rc != 0 {
        bail!("setsockopt({level}, {name}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// A UDP socket bound to an address the pod does not own: IPv6 with
/// IPV6_FREEBIND (no privilege), IPv4 with IP_TRANSPARENT (CAP_NET_RAW).
pub fn forged_udp_socket(bind: SocketAddr) -> Result<UdpSocket> {
    let family = if bind.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: socket(2); the fd is owned by the UdpSocket below.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        bail!("socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own.
    let sock = unsafe { UdpSocket::from_raw_fd(fd) };
    if bind.is_ipv4() {
        setsockopt_int(fd, libc::SOL_IP, libc::IP_TRANSPARENT, 1).context("IP_TRANSPARENT")?;
    } else {
        setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_FREEBIND, 1).context("IPV6_FREEBIND")?;
    }
    let (ss, len) = sockaddr(bind);
    // SAFETY: ss is a valid sockaddr of length len.
    if unsafe { libc::bind(fd, (&ss as *const libc::sockaddr_storage).cast(), len) } != 0 {
        bail!("bind {bind}: {}", std::io::Error::last_os_error());
    }
    Ok(sock)
}

/// A `sockaddr_in`/`sockaddr_in6` for `a`, with its length.
pub fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, u32) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            (ss, std::mem::size_of::<libc::sockaddr_in>() as u32)
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: v6.ip().octets() },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            (ss, std::mem::size_of::<libc::sockaddr_in6>() as u32)
        }
    }
}

/// The `lo` poisoning attack: a socket bound (FREEBIND/TRANSPARENT) to
/// the external `peer` sends to the pod's own `local_port` on `lo`; then
/// the receiving socket tries to "answer" `peer`, unconnected and
/// connected.
pub fn udp_poison(peer: SocketAddr, local_port: u16) -> Result<PoisonResult> {
    let (any, lo): (IpAddr, IpAddr) = if peer.is_ipv4() {
        ("0.0.0.0".parse()?, "127.0.0.1".parse()?)
    } else {
        ("::".parse()?, "::1".parse()?)
    };
    let receiver = UdpSocket::bind(SocketAddr::new(any, local_port)).context("binding the receiver")?;
    receiver.set_read_timeout(Some(Duration::from_secs(1)))?;
    let forger = forged_udp_socket(peer)?;
    forger.send_to(b"poison", SocketAddr::new(lo, local_port)).context("sending the forged datagram")?;
    let mut buf = [0u8; 64];
    let mut r = PoisonResult::default();
    if let Ok((_, from)) = receiver.recv_from(&mut buf) {
        r.received = from.ip() == peer.ip() || from.ip().to_canonical() == peer.ip();
    }
    r.send_errno = errno_of(receiver.send_to(b"leak-unconnected", peer));
    r.connected_send_errno = match receiver.connect(peer) {
        Ok(()) => errno_of(receiver.send(b"leak-connected")),
        Err(e) => Some(e.raw_os_error().unwrap_or(-1)),
    };
    Ok(r)
}

#[derive(Debug, Default, Serialize)]
pub struct SniffResult {
    pub packets: u64,
    pub first: Vec<String>,
}

/// A cooked AF_PACKET socket (IP packets, no link header) that sees every
/// packet of this netns, with a 100 ms receive timeout.
pub fn capture_socket() -> Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
    // SAFETY: socket(2); owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fresh fd we own.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval { tv_sec: 0, tv_usec: 100_000 };
    // SAFETY: SO_RCVTIMEO with a timeval.
    unsafe {
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&tv as *const libc::timeval).cast(), std::mem::size_of::<libc::timeval>() as u32)
    };
    Ok(owned)
}

/// Counts IP packets whose source is one of `from`, on every interface of
/// this netns, for `ms` milliseconds or until `stop` exists (AF_PACKET, cooked).
pub fn sniff(from: &[IpAddr], ms: u64, stop: Option<&std::path::Path>) -> Result<SniffResult> {
    let owned = capture_socket()?;
    let fd = owned.as_raw_fd();
    println!("ready");
    let _ = std::io::stdout().flush();
    let deadline = Instant::now() + Duration::from_millis(ms);
    let mut r = SniffResult::default();
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline && !stop.is_some_and(|p| p.exists()) {
        // SAFETY: recv into our buffer.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            continue;
        }
        let p = &buf[..n as usize];
        let src = match p.first().map(|b| b >> 4) {
            Some(4) if p.len() >= 20 => IpAddr::from([p[12], p[13], p[14], p[15]]),
            Some(6) if p.len() >= 40 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&p[8..24]);
                IpAddr::from(a)
            }
            _ => continue,
        };
        if from.contains(&src) {
            r.packets += 1;
            if r.first.len() < 5 {
                r.first.push(format!("{src} {} bytes", p.len()));
            }
        }
    }
    drop(owned);
    Ok(r)
}

/// UDP echo server on each address (prints `ready`).
pub fn udp_echo(listen: &[SocketAddr]) -> Result<()> {
    let socks: Vec<UdpSocket> = listen.iter().map(UdpSocket::bind).collect::<std::io::Result<_>>()?;
    println!("ready");
    let _ = std::io::stdout().flush();
    let handles: Vec<_> = socks
        .into_iter()
        .map(|s| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while let Ok((n, from)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(&buf[..n], from);
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

#[derive(Debug, Default, Serialize)]
pub struct AskResult {
    pub ok: bool,
    pub error: String,
}

/// Sends one datagram to `to` and waits for the same bytes back.
pub fn udp_ask(to: SocketAddr, timeout: Duration) -> AskResult {
    let bind: SocketAddr = if to.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
    let r = (|| -> std::io::Result<bool> {
        let s = UdpSocket::bind(bind)?;
        s.set_read_timeout(Some(timeout))?;
        s.send_to(b"are-you-there", to)?;
        let mut buf = [0u8; 64];
        let (n, from) = s.recv_from(&mut buf)?;
        Ok(from == to && &buf[..n] == b"are-you-there")
    })();
    match r {
        Ok(ok) => AskResult { ok, error: if ok { String::new() } else { "wrong answer".into() } },
        Err(e) => AskResult { ok: false, error: e.to_string() },
    }
}

/// TCP echo server on each address (prints `ready`).
pub fn tcp_echo(listen: &[SocketAddr]) -> Result<()> {
    let ls: Vec<TcpListener> = listen.iter().map(TcpListener::bind).collect::<std::io::Result<_>>()?;
    println!("ready");
    let _ = std::io::stdout().flush();
    let handles: Vec<_> = ls
        .into_iter()
        .map(|l| {
            std::thread::spawn(move || {
                for mut c in l.incoming().flatten() {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = c.read(&mut buf) {
                            if n == 0 || c.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    });
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

#[derive(Debug, Default, Serialize)]
pub struct ChatResult {
    pub ok: bool,
    pub done: u64,
    pub failures: u64,
    pub error: String,
    pub elapsed_ms: u64,
}

/// One TCP connection to an echo server, `count` round trips of 32 bytes
/// `interval` apart, each within `timeout`.
pub fn tcp_chat(to: SocketAddr, count: u64, interval: Duration, timeout: Duration) -> ChatResult {
    let start = Instant::now();
    let mut r = ChatResult::default();
    let mut c = match TcpStream::connect_timeout(&to, timeout) {
        Ok(c) => c,
        Err(e) => {
            r.error = format!("connect: {e}");
            return r;
        }
    };
    let _ = c.set_read_timeout(Some(timeout));
    let _ = c.set_nodelay(true);
    for i in 0..count {
        let msg = format!("{i:031}\n");
        let mut back = [0u8; 32];
        let res = c.write_all(msg.as_bytes()).and_then(|()| c.read_exact(&mut back));
        match res {
            Ok(()) if back == msg.as_bytes() => r.done += 1,
            Ok(()) => {
                r.failures += 1;
                r.error = format!("round {i}: wrong echo");
            }
            Err(e) => {
                r.failures += 1;
                r.error = format!("round {i}: {e}");
                break;
            }
        }
        std::thread::sleep(interval);
    }
    r.ok = r.failures == 0 && r.done == count;
    r.elapsed_ms = start.elapsed().as_millis() as u64;
    r
}

#[derive(Debug, Default, Serialize)]
pub struct FloodResult {
    pub sent: u64,
    pub distinct_sources: u64,
    pub elapsed_ms: u64,
}

/// The Internet checksum (RFC 1071) of `data`, starting from the partial sum `sum`.
pub fn checksum(data: &[u8], mut sum: u32) -> u16 {
    for ch in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([ch[0], *ch.get(1).unwrap_or(&0)]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// `count` TCP SYNs to `to` (IPv4) from random sources in `net`/24 (hosts
/// 20..=250) and random ports, through a raw socket.
pub fn syn_flood(to: std::net::SocketAddrV4, net: std::net::Ipv4Addr, count: u64) -> Result<FloodResult> {
    // SAFETY: socket(2); owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_RAW) };
    if fd < 0 {
        bail!("raw socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fresh fd we own.
    let _owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let start = Instant::now();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (ss, len) = sockaddr(SocketAddr::V4(to));
    let mut sources = std::collections::BTreeSet::new();
    let mut r = FloodResult::default();
    for _ in 0..count {
        let x = rnd();
        let host = 20 + (x % 231) as u8;
        let o = net.octets();
        let src = [o[0], o[1], o[2], host];
        let sport = 1024 + ((x >> 16) % 60000) as u16;
        sources.insert(host);
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&sport.to_be_bytes());
        tcp[2..4].copy_from_slice(&to.port().to_be_bytes());
        tcp[4..8].copy_from_slice(&((x >> 32) as u32).to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = 0x02;
        tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
        let mut pseudo = Vec::with_capacity(32);
        pseudo.extend_from_slice(&src);
        pseudo.extend_from_slice(&to.ip().octets());
        pseudo.extend_from_slice(&[0, 6, 0, 20]);
        pseudo.extend_from_slice(&tcp);
        let c = checksum(&pseudo, 0);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        let mut ip = [0u8; 40];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&to.ip().octets());
        let c = checksum(&ip[..20], 0);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip[20..].copy_from_slice(&tcp);
        // SAFETY: sendto with our buffer and a valid sockaddr.
        let n = unsafe { libc::sendto(fd, ip.as_ptr().cast(), ip.len(), 0, (&ss as *const libc::sockaddr_storage).cast(), len) };
        if n == ip.len() as isize {
            r.sent += 1;
        }
    }
    r.distinct_sources = sources.len() as u64;
    r.elapsed_ms = start.elapsed().as_millis() as u64;
    Ok(r)
}

/// Like [`tcp_chat`] over one connected UDP socket (send/recv, no address
/// per datagram: the sendmsg hooks do not run, only the packet path).
pub fn udp_chat(to: SocketAddr, count: u64, interval: Duration, timeout: Duration) -> ChatResult {
    let start = Instant::now();
    let mut r = ChatResult::default();
    let bind: SocketAddr = if to.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
    let s = match UdpSocket::bind(bind).and_then(|s| s.connect(to).map(|()| s)) {
        Ok(s) => s,
        Err(e) => {
            r.error = format!("connect: {e}");
            return r;
        }
    };
    let _ = s.set_read_timeout(Some(timeout));
    for i in 0..count {
        let msg = format!("{i:031}\n");
        let mut back = [0u8; 64];
        match s.send(msg.as_bytes()).and_then(|_| s.recv(&mut back)) {
            Ok(n) if &back[..n] == msg.as_bytes() => r.done += 1,
            Ok(_) => r.failures += 1,
            Err(e) => {
                r.failures += 1;
                r.error = format!("round {i}: {e}");
                break;
            }
        }
        std::thread::sleep(interval);
    }
    r.ok = r.failures == 0 && r.done == count;
    r.elapsed_ms = start.elapsed().as_millis() as u64;
    r
}

#[derive(Debug, Default, Serialize)]
pub struct SprayResult {
    pub sent: u64,
    pub refused: u64,
    pub other_errors: u64,
    pub elapsed_ms: u64,
}

/// `count` unconnected UDP datagrams to `to`, as fast as possible.
pub fn udp_spray(to: SocketAddr, count: u64) -> Result<SprayResult> {
    let bind: SocketAddr = if to.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
    let s = UdpSocket::bind(bind)?;
    let start = Instant::now();
    let mut r = SprayResult::default();
    for _ in 0..count {
        match s.send_to(b"spray", to) {
            Ok(_) => r.sent += 1,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => r.refused += 1,
            Err(_) => r.other_errors += 1,
        }
    }
    r.elapsed_ms = start.elapsed().as_millis() as u64;
    Ok(r)
}
