//! Made-up packets for `verify` and the benchmarks: an Ethernet header (the
//! kernel strips it for cgroup_skb test runs), an IPv4 or IPv6 header and a
//! transport header.
use std::net::IpAddr;

use agent_common::{PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    Icmp,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "sctp" => Some(Protocol::Sctp),
            "icmp" | "icmpv6" => Some(Protocol::Icmp),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
            Protocol::Icmp => "icmp",
        }
    }
    pub fn number(self, v6: bool) -> u8 {
        match self {
            Protocol::Tcp => PROTO_TCP,
            Protocol::Udp => PROTO_UDP,
            Protocol::Sctp => PROTO_SCTP,
            Protocol::Icmp if v6 => PROTO_ICMPV6,
            Protocol::Icmp => PROTO_ICMP,
        }
    }
}

/// Builds the frame. `src` and `dst` must be of the same family.
pub fn build(src: IpAddr, dst: IpAddr, proto: Protocol, sport: u16, dport: u16) -> Vec<u8> {
    let v6 = dst.is_ipv6();
    let l4 = transport(proto, v6, sport, dport);
    let mut f = Vec::with_capacity(14 + 40 + l4.len());
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1]);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let total = (20 + l4.len()) as u16;
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&total.to_be_bytes());
            f.extend_from_slice(&[0, 0, 0x40, 0, 64, proto.number(false), 0, 0]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let to6 = |a: IpAddr| match a {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            f.extend_from_slice(&[proto.number(true), 64]);
            f.extend_from_slice(&to6(s).octets());
            f.extend_from_slice(&to6(d).octets());
        }
    }
    f.extend_from_slice(&l4);
    f
}

fn transport(proto: Protocol, v6: bool, sport: u16, dport: u16) -> Vec<u8> {
    let mut t = Vec::new();
    match proto {
        Protocol::Tcp => {
            t.extend_from_slice(&sport.to_be_bytes());
            t.extend_from_slice(&dport.to_be_bytes());
            t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        }
        Protocol::Udp => {
            t.extend_from_slice(&sport.to_be_bytes());
            t.extend_from_slice(&dport.to_be_bytes());
            t.extend_from_slice(&[0, 8, 0, 0]);
        }
        Protocol::Sctp => {
            t.extend_from_slice(&sport.to_be_bytes());
            t.extend_from_slice(&dport.to_be_bytes());
            t.extend_from_slice(&[0; 8]);
        }
        Protocol::Icmp => {
            t.extend_from_slice(&[if v6 { 128 } else { 8 }, 0, 0, 0, 0, 1, 0, 1]);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_tcp_frame_layout() {
        let f = build("10.0.0.1".parse().unwrap(), "203.0.113.10".parse().unwrap(), Protocol::Tcp, 40000, 80);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(f[14] >> 4, 4);
        assert_eq!(f[14 + 9], 6);
        assert_eq!(&f[14 + 16..14 + 20], &[203, 0, 113, 10]);
        assert_eq!(u16::from_be_bytes([f[34 + 2], f[34 + 3]]), 80);
    }

    #[test]
    fn ipv6_udp_frame_layout() {
        let f = build("fd00::1".parse().unwrap(), "2001:db8::1".parse().unwrap(), Protocol::Udp, 1, 53);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!(f[14 + 6], 17);
        assert_eq!(u16::from_be_bytes([f[54 + 2], f[54 + 3]]), 53);
    }
}
