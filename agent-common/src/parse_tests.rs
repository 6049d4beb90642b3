extern crate std;
use std::{vec, vec::Vec};

use super::*;
use crate::{PROTO_ICMP, PROTO_ICMPV6};

fn v4_header(proto: u8, options: usize, frags: u16, payload_len: usize) -> Vec<u8> {
    let ihl = 5 + options / 4;
    let total = (ihl * 4 + payload_len) as u16;
    let mut h = vec![0x40 | ihl as u8, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 1]);
    h.extend_from_slice(&frags.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0, 10, 244, 0, 10, 203, 0, 113, 10]);
    h.extend(std::iter::repeat_n(1u8, options));
    h
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = sport.to_be_bytes().to_vec();
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t
}

fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&[0, 8, 0, 0]);
    u
}

fn v6_header(next: u8, payload_len: usize) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload_len as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&[0xfd, 0, 0, 0x10, 0x2, 0x44, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]);
    h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]);
    h
}

fn ip(p: &[u8], l3: usize) -> Result<Flow, ParseError> {
    let mut f = Flow::empty();
    parse_ip(p, l3, &mut f).map(|()| f)
}

fn eth(p: &[u8]) -> Result<Flow, ParseError> {
    let mut f = Flow::empty();
    parse_ethernet(p, &mut f).map(|()| f)
}

#[test]
fn tcp_flags_byte_is_the_fourteenth() {
    assert_eq!(TCP_FLAGS_AT, 13);
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

#[test]
fn ipv4_tcp_syn() {
    let l4 = tcp(40000, 443, TCP_SYN);
    let pkt = cat(&[&v4_header(PROTO_TCP, 0, 0x4000, l4.len()), &l4]);
    let f = ip(pkt.as_slice(), 0).unwrap();
    assert_eq!(f.family, FAMILY_V4);
    assert_eq!(&f.src[..4], &[10, 244, 0, 10]);
    assert_eq!(&f.dst[..4], &[203, 0, 113, 10]);
    assert_eq!((f.sport, f.dport, f.ports_known), (40000, 443, true));
    assert!(f.is_tcp_syn() && !f.is_tcp_syn_ack());
    let l4 = tcp(443, 40000, TCP_SYN | TCP_ACK);
    let pkt = cat(&[&v4_header(PROTO_TCP, 0, 0, l4.len()), &l4]);
    assert!(ip(pkt.as_slice(), 0).unwrap().is_tcp_syn_ack());
}

#[test]
fn ipv4_options_move_the_transport_header() {
    let l4 = udp(5353, 53);
    let pkt = cat(&[&v4_header(PROTO_UDP, 8, 0, l4.len()), &l4]);
    let f = ip(pkt.as_slice(), 0).unwrap();
    assert_eq!((f.sport, f.dport, f.proto), (5353, 53, PROTO_UDP));
}

#[test]
fn ipv4_bad_header_length_and_version_are_malformed() {
    let l4 = udp(1, 2);
    let mut pkt = cat(&[&v4_header(PROTO_UDP, 0, 0, l4.len()), &l4]);
    pkt[0] = 0x44;
    assert_eq!(ip(pkt.as_slice(), 0), Err(ParseError::Malformed));
    pkt[0] = 0x55;
    assert_eq!(ip(pkt.as_slice(), 0), Err(ParseError::Malformed));
    assert_eq!(ip([].as_slice(), 0), Err(ParseError::Malformed));
    // Options that run past the end: the ports cannot be read.
    let pkt = cat(&[&v4_header(PROTO_UDP, 40, 0, 0)]);
    assert_eq!(ip(&pkt[..pkt.len() - 4], 0), Err(ParseError::Malformed));
}

#[test]
fn ipv4_fragments() {
    // First fragment (MF set, offset 0): ports known.
    let l4 = tcp(1, 80, TCP_ACK);
    let pkt = cat(&[&v4_header(PROTO_TCP, 0, 0x2000, l4.len()), &l4]);
    assert!(ip(pkt.as_slice(), 0).unwrap().ports_known);
    // A lone non-first fragment has no ports, whatever its payload says.
    let pkt = cat(&[&v4_header(PROTO_TCP, 0, 0x0010, 8), &[0, 1, 0, 80, 0, 0, 0, 0]]);
    let f = ip(pkt.as_slice(), 0).unwrap();
    assert!(!f.ports_known);
    assert_eq!((f.sport, f.dport, f.tcp_flags), (0, 0, 0));
    // A first fragment too short for its transport header is malformed.
    let pkt = cat(&[&v4_header(PROTO_TCP, 0, 0x2000, 2), &[0, 1]]);
    assert_eq!(ip(pkt.as_slice(), 0), Err(ParseError::Malformed));
}

#[test]
fn protocols_without_ports() {
    let pkt = cat(&[&v4_header(PROTO_ICMP, 0, 0, 8), &[8, 0, 0, 0, 0, 1, 0, 1]]);
    let f = ip(pkt.as_slice(), 0).unwrap();
    assert_eq!((f.proto, f.ports_known), (PROTO_ICMP, false));
    let pkt = cat(&[&v6_header(PROTO_ICMPV6, 8), &[128, 0, 0, 0, 0, 1, 0, 1]]);
    let f = ip(pkt.as_slice(), 0).unwrap();
    assert_eq!((f.family, f.proto, f.ports_known), (FAMILY_V6, PROTO_ICMPV6, false));
}

#[test]
fn sctp_ports() {
    let mut l4 = 36412u16.to_be_bytes().to_vec();
    l4.extend_from_slice(&38412u16.to_be_bytes());
    l4.extend_from_slice(&[0; 8]);
    let pkt = cat(&[&v4_header(PROTO_SCTP, 0, 0, l4.len()), &l4]);
    let f = ip(pkt.as_slice(), 0).unwrap();
    assert_eq!((f.sport, f.dport, f.ports_known), (36412, 38412, true));
}

#[test]
fn ipv6_extension_headers() {
    let l4 = udp(4000, 53);
    // Hop-by-hop (8 bytes) then destination options (16 bytes) then UDP.
    let hop = [60u8, 0, 1, 4, 0, 0, 0, 0];
    let dst = [PROTO_UDP, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let pkt = cat(&[&v6_header(0, 24 + l4.len()), &hop, &dst, &l4]);
    let f = ip(pkt.as_slice(), 0).unwrap();
    assert_eq!(f.dst[..4], [0x20, 0x01, 0x0d, 0xb8]);
    assert_eq!((f.proto, f.sport, f.dport), (PROTO_UDP, 4000, 53));
    // AH: length in 4-byte units minus 2.
    let ah = [PROTO_UDP, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let pkt = cat(&[&v6_header(51, ah.len() + l4.len()), &ah, &l4]);
    assert_eq!(ip(pkt.as_slice(), 0).unwrap().dport, 53);
}

#[test]
fn ipv6_fragments() {
    let l4 = tcp(1, 443, TCP_SYN);
    let first = [PROTO_TCP, 0, 0x00, 0x01, 0, 0, 0, 7];
    let pkt = cat(&[&v6_header(44, 8 + l4.len()), &first, &l4]);
    let f = ip(pkt.as_slice(), 0).unwrap();
    assert!(f.ports_known && f.is_tcp_syn());
    let later = [PROTO_TCP, 0, 0x00, 0xb8, 0, 0, 0, 7];
    let pkt = cat(&[&v6_header(44, 8 + 8), &later, &[0, 1, 1, 187, 0, 0, 0, 0]]);
    let f = ip(pkt.as_slice(), 0).unwrap();
    assert_eq!((f.proto, f.ports_known, f.dport), (PROTO_TCP, false, 0));
}

#[test]
fn too_many_ipv6_extension_headers_is_malformed() {
    let mut pkt = v6_header(60, 8 * 8);
    for _ in 0..8 {
        pkt.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0]);
    }
    assert_eq!(ip(pkt.as_slice(), 0), Err(ParseError::Malformed));
    // Truncated extension header.
    let pkt = cat(&[&v6_header(0, 1), &[17]]);
    assert_eq!(ip(pkt.as_slice(), 0), Err(ParseError::Malformed));
}

#[test]
fn ethernet_with_vlan_tags() {
    let l4 = tcp(40000, 80, TCP_SYN);
    let ipkt = cat(&[&v4_header(PROTO_TCP, 0, 0, l4.len()), &l4]);
    let macs = [2u8, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    let plain = cat(&[&macs, &[0x08, 0x00], &ipkt]);
    assert_eq!(eth(plain.as_slice()).unwrap().dport, 80);
    let qinq = cat(&[&macs, &[0x88, 0xa8, 0, 5, 0x81, 0x00, 0, 7, 0x08, 0x00], &ipkt]);
    assert_eq!(eth(qinq.as_slice()).unwrap(), ip(ipkt.as_slice(), 0).unwrap());
    let three = cat(&[&macs, &[0x81, 0, 0, 1, 0x81, 0, 0, 2, 0x81, 0, 0, 3, 0x08, 0x00], &ipkt]);
    assert_eq!(eth(three.as_slice()), Err(ParseError::Malformed));
    let arp = cat(&[&macs, &[0x08, 0x06], &[0; 28]]);
    assert_eq!(eth(arp.as_slice()), Err(ParseError::NotIp));
    assert_eq!(eth(&macs[..]), Err(ParseError::Malformed));
}

proptest::proptest! {
    #[test]
    fn never_panics_on_random_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200), l2 in proptest::bool::ANY) {
        let _ = if l2 { eth(bytes.as_slice()) } else { ip(bytes.as_slice(), 0) };
    }

    #[test]
    fn ports_are_those_of_the_header(sport in 1u16.., dport in 1u16.., options in 0usize..10) {
        let l4 = udp(sport, dport);
        let pkt = cat(&[&v4_header(PROTO_UDP, options * 4, 0, l4.len()), &l4]);
        let f = ip(pkt.as_slice(), 0).unwrap();
        proptest::prop_assert_eq!((f.sport, f.dport), (sport, dport));
    }
}
