//! Tools of the chaos tests: what BPF programs, links and maps are loaded
//! (the bpf syscall's id walk, through aya, as `bpftool prog list` does),
//! and a steady load that a pod keeps sending while the agent is killed
//! and restarted (`tollgate-e2e steady`), and resident memory.
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// The BPF objects loaded system-wide, by id.
#[derive(Debug, Default, Clone)]
pub struct BpfInventory {
    /// Program id → (name, ids of the maps it uses).
    pub programs: BTreeMap<u32, (String, Vec<u32>)>,
    /// Link id → program id.
    pub links: BTreeMap<u32, u32>,
    /// Map ids.
    pub maps: BTreeSet<u32>,
}

impl BpfInventory {
    /// Walks every program, link and map id. Objects freed during the
    /// walk are skipped.
    pub fn take() -> BpfInventory {
        let mut inv = BpfInventory::default();
        for p in aya::programs::loaded_programs().flatten() {
            let name = p.name_as_str().unwrap_or_default().to_owned();
            let maps = p.map_ids().ok().flatten().unwrap_or_default();
            inv.programs.insert(p.id(), (name, maps));
        }
        for l in aya::programs::loaded_links().flatten() {
            inv.links.insert(l.id(), l.program_id());
        }
        for m in aya::maps::loaded_maps().flatten() {
            inv.maps.insert(m.id());
        }
        inv
    }

    /// The programs that use one of `maps` (an agent's pinned maps).
    pub fn programs_using(&self, maps: &BTreeSet<u32>) -> BTreeSet<u32> {
        self.programs
            .iter()
            .filter(|(_, (_, used))| used.iter().any(|m| maps.contains(m)))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The links of `programs`.
    pub fn links_of(&self, programs: &BTreeSet<u32>) -> BTreeSet<u32> {
        self.links.iter().filter(|(_, p)| programs.contains(p)).map(|(id, _)| *id).collect()
    }

    /// Programs whose name starts with `prefix`.
    pub fn named(&self, prefix: &str) -> BTreeSet<u32> {
        self.programs.iter().filter(|(_, (n, _))| n.starts_with(prefix)).map(|(id, _)| *id).collect()
    }
}

/// The ids of the maps pinned directly in `dir` (an agent's bpffs folder).
pub fn pinned_map_ids(dir: &Path) -> Result<BTreeSet<u32>> {
    let mut ids = BTreeSet::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = e?.path();
        if path.is_dir() {
            continue;
        }
        let info = aya::maps::MapInfo::from_pin(&path).with_context(|| format!("map info of {}", path.display()))?;
        ids.insert(info.id());
    }
    Ok(ids)
}

/// What a `steady` run saw. `*_refused` are EPERM answers, `*_passed`
/// sends the kernel took (whether a packet left is for the sniffer to say).
#[derive(Debug, Default, Serialize)]
pub struct SteadyResult {
    pub rounds: u64,
    pub udp_passed: u64,
    pub udp_refused: u64,
    pub raw_passed: u64,
    pub raw_refused: u64,
    pub tcp_connected: u64,
    pub tcp_refused: u64,
    pub other_errors: u64,
    pub last_error: String,
    /// Round trips on the long-lived connections to the allowed addresses.
    pub allowed_round_trips: u64,
    /// Round trips that failed (the connection is then opened again).
    pub allowed_failures: u64,
    /// Connections to the allowed addresses (the first ones included).
    pub allowed_connects: u64,
    pub elapsed_ms: u64,
}

fn is_eperm(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EPERM)
}

/// A raw socket of `to`'s family for UDP: the kernel writes the IP header,
/// the caller the UDP header. Raw sockets skip the connect and sendmsg
/// hooks: only the packet path (cgroup_skb egress) stands in the way.
fn raw_udp_socket(to: SocketAddr) -> Result<OwnedFd> {
    let family = if to.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: socket(2); the fd is owned right below.
    let fd = unsafe { libc::socket(family, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_UDP) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("raw UDP socket");
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn raw_send(fd: &OwnedFd, to: SocketAddr) -> std::io::Result<()> {
    // UDP header (checksum 0: the host only has to see it, not accept it).
    let mut pkt = [0u8; 14];
    pkt[0..2].copy_from_slice(&40_000u16.to_be_bytes());
    pkt[2..4].copy_from_slice(&to.port().to_be_bytes());
    pkt[4..6].copy_from_slice(&14u16.to_be_bytes());
    pkt[8..].copy_from_slice(b"steady");
    // The port of a raw socket's address must be 0 (IPv6 takes it as the protocol).
    let (ss, len) = crate::traffic::sockaddr(SocketAddr::new(to.ip(), 0));
    // SAFETY: sendto with our buffer and a valid sockaddr.
    let n = unsafe { libc::sendto(fd.as_raw_fd(), pkt.as_ptr().cast(), pkt.len(), 0, (&ss as *const libc::sockaddr_storage).cast(), len) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A long-lived TCP connection to an allowed echo server.
struct Chat {
    to: SocketAddr,
    conn: Option<TcpStream>,
}

impl Chat {
    fn round(&mut self, i: u64, timeout: Duration, r: &mut SteadyResult) {
        if self.conn.is_none() {
            match TcpStream::connect_timeout(&self.to, timeout) {
                Ok(c) => {
                    let _ = c.set_read_timeout(Some(timeout));
                    let _ = c.set_nodelay(true);
                    r.allowed_connects += 1;
                    self.conn = Some(c);
                }
                Err(e) => {
                    r.allowed_failures += 1;
                    r.last_error = format!("connect {}: {e}", self.to);
                    return;
                }
            }
        }
        let Some(c) = self.conn.as_mut() else { return };
        let msg = format!("{i:031}\n");
        let mut back = [0u8; 32];
        match c.write_all(msg.as_bytes()).and_then(|()| c.read_exact(&mut back)) {
            Ok(()) if back == msg.as_bytes() => r.allowed_round_trips += 1,
            res => {
                r.allowed_failures += 1;
                r.last_error = format!("round trip to {}: {res:?}", self.to);
                self.conn = None;
            }
        }
    }
}

/// Until `stop` exists (or `max` passes), every `interval`: to each of
/// `deny`, one unconnected UDP datagram, one raw UDP packet and one TCP
/// connect; on each of `allow`, one round trip on a kept TCP connection.
/// Prints `ready` once its sockets are open.
pub fn steady(deny: &[SocketAddr], allow: &[SocketAddr], interval: Duration, stop: &Path, max: Duration) -> Result<SteadyResult> {
    let udp: Vec<(SocketAddr, UdpSocket)> = deny
        .iter()
        .map(|to| {
            let bind: SocketAddr = if to.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
            UdpSocket::bind(bind).map(|s| (*to, s))
        })
        .collect::<std::io::Result<_>>()
        .context("binding the UDP sockets")?;
    let raw: Vec<(SocketAddr, OwnedFd)> = deny.iter().map(|to| raw_udp_socket(*to).map(|s| (*to, s))).collect::<Result<_>>()?;
    let mut chats: Vec<Chat> = allow.iter().map(|to| Chat { to: *to, conn: None }).collect();
    let timeout = Duration::from_millis(500);
    println!("ready");
    let _ = std::io::stdout().flush();
    let start = Instant::now();
    let mut r = SteadyResult::default();
    let other = |r: &mut SteadyResult, what: String| {
        r.other_errors += 1;
        r.last_error = what;
    };
    while !stop.exists() && start.elapsed() < max {
        for (to, s) in &udp {
            match s.send_to(b"steady", to) {
                Ok(_) => r.udp_passed += 1,
                Err(e) if is_eperm(&e) => r.udp_refused += 1,
                Err(e) => other(&mut r, format!("udp to {to}: {e}")),
            }
        }
        for (to, fd) in &raw {
            match raw_send(fd, *to) {
                Ok(()) => r.raw_passed += 1,
                Err(e) if is_eperm(&e) => r.raw_refused += 1,
                Err(e) => other(&mut r, format!("raw to {to}: {e}")),
            }
        }
        for to in deny {
            match TcpStream::connect_timeout(to, timeout) {
                Ok(_) => r.tcp_connected += 1,
                Err(e) if is_eperm(&e) => r.tcp_refused += 1,
                Err(e) => other(&mut r, format!("tcp to {to}: {e}")),
            }
        }
        for c in &mut chats {
            c.round(r.rounds, timeout, &mut r);
        }
        r.rounds += 1;
        std::thread::sleep(interval);
    }
    r.elapsed_ms = start.elapsed().as_millis() as u64;
    Ok(r)
}

/// Resident memory of a process in KiB (`VmRSS` of /proc/PID/status).
pub fn vm_rss_kib(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading /proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}
