//! Hand-made packets for the bypass suite: IPv4 (with options and
//! fragments), IPv6 (with extension headers), UDP and ICMP echo, each
//! carrying a tag (`tgbx-...`) that the external sniffer reads back.
use std::net::IpAddr;

use crate::traffic::checksum;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
const PROTO_FRAGMENT: u8 = 44;
const PROTO_DSTOPTS: u8 = 60;

/// Every tag starts with this; the sniffer looks for it in whole packets.
pub const TAG_PREFIX: &[u8] = b"tgbx-";

/// The payload of every attempt: the tag, repeated to `len` bytes (so that
/// each fragment of a long datagram carries it too).
pub fn payload(tag: &str, len: usize) -> Vec<u8> {
    let unit = format!("{tag} ");
    unit.bytes().cycle().take(len.max(unit.len())).collect()
}

/// The first whole tag in a packet: `tgbx-` and `[a-z0-9-]`, ended by
/// another byte (a tag cut off at the end of a fragment does not count).
pub fn find_tag(p: &[u8]) -> Option<String> {
    let is_tag_byte = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    let mut from = 0;
    while let Some(at) = p[from..].windows(TAG_PREFIX.len()).position(|w| w == TAG_PREFIX) {
        let rest = &p[from + at..];
        if let Some(end) = rest.iter().position(|b| !is_tag_byte(b)) {
            return Some(String::from_utf8_lossy(&rest[..end]).into_owned());
        }
        from += at + TAG_PREFIX.len();
    }
    None
}

fn sum16(data: &[u8]) -> u32 {
    data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum()
}

/// The pseudo-header sum of TCP/UDP/ICMPv6 checksums.
fn pseudo_sum(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => sum16(&s.octets()) + sum16(&d.octets()) + u32::from(proto) + len as u32,
        _ => {
            let o = |a: IpAddr| match a {
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                IpAddr::V6(a) => a.octets(),
            };
            sum16(&o(src)) + sum16(&o(dst)) + u32::from(proto) + len as u32
        }
    }
}

/// A UDP header and `data`, with its checksum.
pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let len = 8 + data.len();
    let mut u = Vec::with_capacity(len);
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    let c = checksum(&u, pseudo_sum(src, dst, PROTO_UDP, len));
    u[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    u
}

/// An ICMP (IPv4) or ICMPv6 echo request with `data`. ICMPv6 needs the
/// addresses for its checksum; a raw ICMPv6 socket fills it itself.
pub fn echo_request(v6: bool, id: u16, data: &[u8]) -> Vec<u8> {
    let mut m = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(data);
    if !v6 {
        let c = checksum(&m, 0);
        m[2..4].copy_from_slice(&c.to_be_bytes());
    }
    m
}

/// IPv4 fragment field: offset in bytes (a multiple of 8) and More Fragments.
pub fn frag_field(offset: usize, more: bool) -> u16 {
    ((offset / 8) as u16 & 0x1fff) | if more { 0x2000 } else { 0 }
}

/// An IPv4 header (with `options`, padded to 4 bytes) and `data`.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, id: u16, frag: u16, options: &[u8], data: &[u8]) -> Vec<u8> {
    let mut opts = options.to_vec();
    while !opts.len().is_multiple_of(4) {
        opts.push(0);
    }
    let hlen = 20 + opts.len();
    let total = hlen + data.len();
    let mut h = vec![0u8; hlen];
    h[0] = 0x40 | (hlen / 4) as u8;
    h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    h[20..].copy_from_slice(&opts);
    let c = checksum(&h, 0);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(data);
    h
}

/// An IPv6 header whose next header is `next`, then `data` (extension
/// headers included).
pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, data: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(data.len() as u16).to_be_bytes());
    h[6] = next;
    h[7] = 64;
    h[8..24].copy_from_slice(&src);
    h[24..40].copy_from_slice(&dst);
    h.extend_from_slice(data);
    h
}

/// An IPv6 fragment header for a fragment at byte `offset` of a packet
/// whose upper layer is `next`, then `data`.
pub fn ipv6_fragment(next: u8, offset: usize, more: bool, id: u32, data: &[u8]) -> Vec<u8> {
    let mut f = vec![next, 0];
    f.extend_from_slice(&(((offset / 8) as u16) << 3 | u16::from(more)).to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(data);
    f
}

/// An IPv6 destination-options header (PadN only) in front of `data`.
pub fn ipv6_dstopts(next: u8, data: &[u8]) -> Vec<u8> {
    let mut d = vec![next, 0, 1, 4, 0, 0, 0, 0];
    d.extend_from_slice(data);
    d
}

pub const NEXT_FRAGMENT: u8 = PROTO_FRAGMENT;
pub const NEXT_DSTOPTS: u8 = PROTO_DSTOPTS;

/// IPv4 options: Router Alert (RFC 2113), then NOPs.
pub const ROUTER_ALERT: [u8; 8] = [0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00];

/// An IP packet (v4 or v6, by the addresses) holding one UDP datagram.
pub fn ip_udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let u = udp(src, dst, sport, dport, data);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4(s.octets(), d.octets(), PROTO_UDP, 0x7467, 0, &[], &u),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6(s.octets(), d.octets(), PROTO_UDP, &u),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_found_in_payloads_and_end_at_the_first_other_byte() {
        let p = payload("tgbx-7-udp4", 40);
        assert_eq!(find_tag(&[&[0u8, 1, 2][..], &p].concat()).as_deref(), Some("tgbx-7-udp4"));
        assert_eq!(find_tag(b"nothing here"), None);
        assert_eq!(find_tag(b"x tgbx-1-a tgbx-1-"), Some("tgbx-1-a".to_string()));
        assert_eq!(find_tag(b"ab tgbx-1-cut"), None, "a tag cut off by the end of the packet");
    }

    #[test]
    fn ipv4_headers_check_out() {
        let p = ipv4([10, 0, 0, 1], [10, 0, 0, 2], PROTO_UDP, 1, frag_field(16, true), &ROUTER_ALERT[..4], b"abcd");
        assert_eq!(p[0], 0x46);
        assert_eq!(checksum(&p[..24], 0), 0, "header checksum");
        assert_eq!(u16::from_be_bytes([p[6], p[7]]), 0x2002);
    }

    #[test]
    fn udp_checksums_verify() {
        let (s, d): (IpAddr, IpAddr) = ("fd00::1".parse().unwrap(), "2001:db8::1".parse().unwrap());
        let u = udp(s, d, 1, 2, b"hello");
        assert_eq!(checksum(&u, pseudo_sum(s, d, PROTO_UDP, u.len())), 0);
    }
}
