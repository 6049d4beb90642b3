//! Frames that no socket hook sees: AF_PACKET (SOCK_RAW with our own
//! Ethernet header, SOCK_DGRAM with the kernel's, with and without
//! PACKET_QDISC_BYPASS), IPv4 and IPv6 UDP, a chosen (possibly forged)
//! source, and a non-first fragment without ports (IPv4, or IPv6 with a
//! Fragment header). Run inside a pod's netns; `dst_mac` is the node's
//! bridge, so the node routes them on.
use anyhow::{bail, Result};
use serde::Serialize;
use std::net::IpAddr;
use std::os::fd::{FromRawFd, OwnedFd};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const PACKET_QDISC_BYPASS: i32 = 20;
/// The source MAC of SOCK_RAW frames (SOCK_DGRAM frames get eth0's).
const FAKE_MAC: [u8; 6] = [0x02, 0x54, 0x47, 0, 0, 1];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole Ethernet frame on a SOCK_RAW packet socket.
    Raw,
    /// An IP packet on a SOCK_DGRAM packet socket.
    Dgram,
}

#[derive(Debug, Default, Serialize)]
pub struct SendResult {
    pub sent: u64,
    pub errors: Vec<String>,
}

pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let parts: Vec<u8> = s.split(':').map(|p| u8::from_str_radix(p, 16)).collect::<Result<_, _>>()?;
    match <[u8; 6]>::try_from(parts) {
        Ok(m) => Ok(m),
        Err(_) => bail!("not a MAC address: {s}"),
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IP packet: UDP `sport` → `dport`, or (`fragment`) a lone non-first
/// fragment of a UDP datagram (offset 1480, no ports; IPv6 with a
/// Fragment header).
pub fn ip_packet(src: IpAddr, dst: IpAddr, dport: u16, fragment: bool) -> Result<Vec<u8>> {
    let payload = b"tollgate-raw-frame";
    let mut udp = Vec::new();
    if fragment {
        udp.extend_from_slice(payload);
    } else {
        udp.extend_from_slice(&40_000u16.to_be_bytes());
        udp.extend_from_slice(&dport.to_be_bytes());
        udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(payload);
    }
    let mut p = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let frag: u16 = if fragment { 1480 / 8 } else { 0x4000 };
            p.extend_from_slice(&[0x45, 0]);
            p.extend_from_slice(&((20 + udp.len()) as u16).to_be_bytes());
            p.extend_from_slice(&[0x12, 0x34]);
            p.extend_from_slice(&frag.to_be_bytes());
            p.extend_from_slice(&[64, 17, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            let c = checksum(&p);
            p[10..12].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            // A fragment: a Fragment header (next header 44) before the
            // data, offset 1480, no more fragments.
            let frag_header: Vec<u8> = if fragment {
                let mut f = vec![17, 0];
                f.extend_from_slice(&((1480u16 / 8) << 3).to_be_bytes());
                f.extend_from_slice(&0x7467_0002u32.to_be_bytes());
                f
            } else {
                Vec::new()
            };
            p.extend_from_slice(&[0x60, 0, 0, 0]);
            p.extend_from_slice(&((frag_header.len() + udp.len()) as u16).to_be_bytes());
            p.extend_from_slice(&[if fragment { 44 } else { 17 }, 64]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&frag_header);
        }
        _ => bail!("{src} and {dst} are of different families"),
    }
    p.extend_from_slice(&udp);
    Ok(p)
}

fn ifindex(name: &str) -> Result<i32> {
    let c = std::ffi::CString::new(name)?;
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        bail!("no interface {name}: {}", std::io::Error::last_os_error());
    }
    Ok(i as i32)
}

/// Sends `count` copies of the packet from `src` to `dst` out of
/// `ifname`, as `kind`, to the next hop `dst_mac`.
#[allow(clippy::too_many_arguments)]
pub fn send(ifname: &str, dst_mac: [u8; 6], kind: Kind, qdisc_bypass: bool, src: IpAddr, dst: IpAddr, dport: u16, fragment: bool, count: u64) -> Result<SendResult> {
    let packet = ip_packet(src, dst, dport, fragment)?;
    let proto = if dst.is_ipv4() { ETH_P_IP } else { ETH_P_IPV6 };
    let ty = match kind {
        Kind::Raw => libc::SOCK_RAW,
        Kind::Dgram => libc::SOCK_DGRAM,
    };
    // SAFETY: socket(2); owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, ty | libc::SOCK_CLOEXEC, proto.to_be() as i32) };
    if fd < 0 {
        bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    let _owned = unsafe { OwnedFd::from_raw_fd(fd) };
    if qdisc_bypass {
        let one: i32 = 1;
        // SAFETY: setsockopt with an int.
        let rc = unsafe { libc::setsockopt(fd, libc::SOL_PACKET, PACKET_QDISC_BYPASS, (&one as *const i32).cast(), 4) };
        if rc != 0 {
            bail!("PACKET_QDISC_BYPASS: {}", std::io::Error::last_os_error());
        }
    }
    // SAFETY: plain data.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto.to_be();
    addr.sll_ifindex = ifindex(ifname)?;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&dst_mac);
    let data = match kind {
        Kind::Dgram => packet,
        Kind::Raw => {
            let mut f = Vec::with_capacity(14 + packet.len());
            f.extend_from_slice(&dst_mac);
            f.extend_from_slice(&FAKE_MAC);
            f.extend_from_slice(&proto.to_be_bytes());
            f.extend_from_slice(&packet);
            f
        }
    };
    let mut r = SendResult::default();
    for _ in 0..count {
        // SAFETY: sendto with our buffer and a sockaddr_ll.
        let n = unsafe {
            libc::sendto(fd, data.as_ptr().cast(), data.len(), 0, (&addr as *const libc::sockaddr_ll).cast(), std::mem::size_of::<libc::sockaddr_ll>() as u32)
        };
        if n < 0 {
            r.errors.push(std::io::Error::last_os_error().to_string());
        } else {
            r.sent += 1;
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_verifies() {
        let p = ip_packet("10.244.0.10".parse().unwrap(), "203.0.113.10".parse().unwrap(), 9, false).unwrap();
        assert_eq!(checksum(&p[..20]), 0);
        let f = ip_packet("10.244.0.10".parse().unwrap(), "203.0.113.10".parse().unwrap(), 9, true).unwrap();
        assert_eq!(u16::from_be_bytes([f[6], f[7]]) & 0x1fff, 185);
        assert_eq!(parse_mac("02:54:47:00:00:01").unwrap(), FAKE_MAC);
    }

    #[test]
    fn ipv6_lone_fragment_has_a_fragment_header() {
        let f = ip_packet("fd00:10:244::10".parse().unwrap(), "2001:db8::10".parse().unwrap(), 9, true).unwrap();
        assert_eq!(f[6], 44, "next header: Fragment");
        assert_eq!(usize::from(u16::from_be_bytes([f[4], f[5]])), f.len() - 40, "payload length");
        assert_eq!(f[40], 17, "the fragment's upper layer is UDP");
        let field = u16::from_be_bytes([f[42], f[43]]);
        assert_eq!((field >> 3, field & 1), (185, 0), "offset 1480, last fragment");
        let whole = ip_packet("fd00:10:244::10".parse().unwrap(), "2001:db8::10".parse().unwrap(), 9, false).unwrap();
        assert_eq!(whole[6], 17);
    }
}
