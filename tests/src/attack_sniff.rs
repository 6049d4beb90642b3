//! `tollgate-e2e attack-sniff`: the judge of the bypass suite, on the
//! external host. Every IP packet that arrives on `eth0` (AF_PACKET, so
//! fragments and packets no socket would take are seen as they came)
//! becomes one JSON line on stderr: time, addresses, protocol, destination
//! port and the `tgbx-` tag of its payload. ICMPv6 neighbour discovery is
//! left out. The suite attributes lines to attempts by tag, or by port and
//! source for packets without payload (TCP SYNs).
use std::io::Write;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::attack_packets::find_tag;
use crate::traffic::capture_socket;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Seen {
    /// Milliseconds since the Unix epoch.
    pub t_ms: u64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// First fragments and unfragmented TCP/UDP/SCTP only.
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub fragment: bool,
    pub tag: Option<String>,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

const PACKET_OUTGOING: u8 = 4;

/// Sniffs `ifname` for `ms` milliseconds (prints `ready` on stdout first).
pub fn sniff_tagged(ifname: &str, ms: u64) -> Result<()> {
    let c = std::ffi::CString::new(ifname)?;
    // SAFETY: a valid NUL-terminated name.
    let want_if = unsafe { libc::if_nametoindex(c.as_ptr()) } as i32;
    if want_if == 0 {
        bail!("no interface {ifname} here");
    }
    let owned = capture_socket()?;
    let fd = owned.as_raw_fd();
    println!("ready");
    let _ = std::io::stdout().flush();
    let deadline = Instant::now() + Duration::from_millis(ms);
    let mut buf = vec![0u8; 65536];
    let stderr = std::io::stderr();
    while Instant::now() < deadline {
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        // SAFETY: recvfrom into our buffer and address.
        let n = unsafe { libc::recvfrom(fd, buf.as_mut_ptr().cast(), buf.len(), 0, (&mut ll as *mut libc::sockaddr_ll).cast(), &mut len) };
        if n <= 0 || ll.sll_ifindex != want_if || ll.sll_pkttype == PACKET_OUTGOING {
            continue;
        }
        if let Some(mut s) = describe(&buf[..n as usize]) {
            // The kernel's arrival time, not ours: the sniffer may run late.
            if let Some(t) = last_arrival_ms(fd) {
                s.t_ms = t;
            }
            let mut e = stderr.lock();
            let _ = writeln!(e, "{}", serde_json::to_string(&s)?);
            let _ = e.flush();
        }
    }
    Ok(())
}

/// SIOCGSTAMP: when the last packet read from `fd` arrived (realtime).
fn last_arrival_ms(fd: i32) -> Option<u64> {
    const SIOCGSTAMP: libc::c_ulong = 0x8906;
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    // SAFETY: SIOCGSTAMP writes one timeval.
    let rc = unsafe { libc::ioctl(fd, SIOCGSTAMP as _, &mut tv as *mut libc::timeval) };
    (rc == 0).then(|| tv.tv_sec as u64 * 1000 + tv.tv_usec as u64 / 1000)
}

/// One IP packet as a [`Seen`]; None for what is not IP and for neighbour
/// discovery.
pub fn describe(p: &[u8]) -> Option<Seen> {
    let (src, dst, proto, l4, fragment, first): (IpAddr, IpAddr, u8, usize, bool, bool) = match p.first()? >> 4 {
        4 if p.len() >= 20 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let frag = u16::from_be_bytes([p[6], p[7]]);
            let offset = frag & 0x1fff;
            (IpAddr::from([p[12], p[13], p[14], p[15]]), IpAddr::from([p[16], p[17], p[18], p[19]]), p[9], ihl, frag & 0x2000 != 0 || offset != 0, offset == 0)
        }
        6 if p.len() >= 40 => {
            let a = |o: usize| -> [u8; 16] { p[o..o + 16].try_into().unwrap_or([0; 16]) };
            let (mut next, mut off, mut fragment, mut first) = (p[6], 40usize, false, true);
            for _ in 0..6 {
                match next {
                    0 | 43 | 60 if p.len() >= off + 2 => {
                        next = p[off];
                        off += (usize::from(p[off + 1]) + 1) * 8;
                    }
                    44 if p.len() >= off + 8 => {
                        fragment = true;
                        first = u16::from_be_bytes([p[off + 2], p[off + 3]]) >> 3 == 0;
                        next = p[off];
                        off += 8;
                    }
                    _ => break,
                }
            }
            (IpAddr::from(a(8)), IpAddr::from(a(24)), next, off, fragment, first)
        }
        _ => return None,
    };
    if proto == 58 && p.get(l4).is_some_and(|t| (133..=137).contains(t)) {
        return None;
    }
    let ports = (first && matches!(proto, 6 | 17 | 132) && p.len() >= l4 + 4)
        .then(|| (u16::from_be_bytes([p[l4], p[l4 + 1]]), u16::from_be_bytes([p[l4 + 2], p[l4 + 3]])));
    Some(Seen { t_ms: now_ms(), src, dst, proto, sport: ports.map(|p| p.0), dport: ports.map(|p| p.1), fragment, tag: find_tag(p) })
}
