//! A pod that starts sending the moment its cgroup exists, and a sink that
//! counts what reaches the outside: the pod-start window test.
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

/// What `burst` saw.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BurstResult {
    /// Datagrams the kernel accepted (sent, or dropped after sendmsg).
    pub sent_ok: u64,
    /// Refused with EPERM (the sendmsg hook).
    pub eperm: u64,
    pub other_errors: u64,
    /// Microseconds from the cgroup's creation to the first EPERM.
    pub first_eperm_us: Option<u64>,
    /// Microseconds from the cgroup's creation to the first send.
    pub first_send_us: u64,
    pub elapsed_us: u64,
}

/// Creates the cgroup `dir` (and its parents) as the kubelet would, joins
/// it, enters `netns`, and sends `count` datagrams to `to` as fast as it
/// can, each carrying its sequence number. Prints one JSON line.
pub fn burst(dir: &Path, netns: &str, to: SocketAddr, count: u64) -> Result<()> {
    let ns_path = format!("/run/netns/{netns}");
    let ns = std::fs::File::open(&ns_path).with_context(|| format!("opening {ns_path}"))?;
    use std::os::fd::AsRawFd;
    // SAFETY: ns is an open netns fd for the duration of the call.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns({ns_path}): {}", std::io::Error::last_os_error());
    }
    let bind: SocketAddr = if to.is_ipv4() { "0.0.0.0:0".parse()? } else { "[::]:0".parse()? };
    // The socket is created after joining the cgroup: a socket belongs to
    // the cgroup of the process that created it.
    let created = Instant::now();
    std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    std::fs::write(dir.join("cgroup.procs"), format!("{}\n", std::process::id())).with_context(|| format!("joining {}", dir.display()))?;
    let sock = UdpSocket::bind(bind)?;
    let mut r = BurstResult { first_send_us: created.elapsed().as_micros() as u64, ..Default::default() };
    for seq in 0..count {
        match sock.send_to(format!("seq {seq}").as_bytes(), to) {
            Ok(_) => r.sent_ok += 1,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                r.eperm += 1;
                r.first_eperm_us.get_or_insert(created.elapsed().as_micros() as u64);
            }
            Err(_) => r.other_errors += 1,
        }
    }
    r.elapsed_us = created.elapsed().as_micros() as u64;
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}

/// Prints `ready` on stdout, then one line per datagram received on any
/// `listen` address (`got <payload> from <peer>`) on stderr (the harness
/// logs stderr), until killed.
pub fn udp_sink(listen: &[SocketAddr]) -> Result<()> {
    let mut socks = Vec::new();
    for a in listen {
        let s = UdpSocket::bind(a).with_context(|| format!("binding {a}"))?;
        s.set_read_timeout(Some(Duration::from_millis(20)))?;
        socks.push(s);
    }
    println!("ready");
    std::io::stdout().flush()?;
    let mut buf = [0u8; 2048];
    loop {
        for s in &socks {
            while let Ok((n, peer)) = s.recv_from(&mut buf) {
                eprintln!("got {} from {peer}", String::from_utf8_lossy(&buf[..n]));
            }
        }
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the same clock in every process, so
/// that a test can compare its own instants with a probe's.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec for clock_gettime to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One line of `connect-watch`: the outcome changed at `t_ns`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Outcome {
    pub t_ns: u64,
    /// `connect()` succeeded.
    pub allowed: bool,
    pub errno: Option<i32>,
}

/// Calls `connect()` on a fresh UDP socket to `to` every `interval`
/// (nothing is sent: the kernel's connect hook decides), and prints a JSON
/// [`Outcome`] line each time the outcome changes, until killed.
pub fn connect_watch(to: SocketAddr, interval: Duration) -> Result<()> {
    let bind: SocketAddr = if to.is_ipv4() { "0.0.0.0:0".parse()? } else { "[::]:0".parse()? };
    println!("ready");
    let mut last: Option<(bool, Option<i32>)> = None;
    loop {
        let sock = UdpSocket::bind(bind)?;
        let now = match sock.connect(to) {
            Ok(()) => (true, None),
            Err(e) => (false, e.raw_os_error()),
        };
        if last != Some(now) {
            let o = Outcome { t_ns: monotonic_ns(), allowed: now.0, errno: now.1 };
            println!("{}", serde_json::to_string(&o)?);
            std::io::stdout().flush()?;
            last = Some(now);
        }
        std::thread::sleep(interval);
    }
}
