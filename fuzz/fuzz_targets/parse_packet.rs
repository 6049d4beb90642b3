//! The one packet parser (`agent_common::parse`, the kernel programs'
//! code built for the host) on arbitrary bytes, at an L3 offset (as
//! cgroup_skb and a TC program after its own L2 header call it) and as an
//! Ethernet frame (TC). Besides "no panic", every accepted packet must be
//! described truthfully: the addresses are the header's bytes, ports are
//! known only for the first fragment of TCP, UDP and SCTP, and a parse is
//! a pure function of the bytes.
#![no_main]

use agent_common::parse::{parse_ethernet, parse_ip, Flow, ParseError};
use agent_common::{FAMILY_V4, FAMILY_V6, PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, pkt)) = data.split_first() else {
        return;
    };
    // The L3 offset: 0 (cgroup_skb), 14/18/22 (Ethernet with tags) or any
    // other small offset, past the end included.
    let l3 = match sel & 0x7 {
        0 => 0,
        1 => 14,
        2 => 18,
        3 => 22,
        _ => usize::from(sel >> 2),
    };
    let mut flow = Flow::empty();
    let r = parse_ip(pkt, l3, &mut flow);
    check_ip(pkt, l3, r, &flow);
    let mut again = Flow::empty();
    assert_eq!(parse_ip(pkt, l3, &mut again), r, "parse_ip is not deterministic");
    if r.is_ok() {
        assert_eq!(again, flow, "parse_ip is not deterministic");
    }

    let mut frame = Flow::empty();
    match parse_ethernet(pkt, &mut frame) {
        Ok(()) => {
            // The IP header sits after 0, 1 or 2 VLAN tags: the L3 parse at
            // that offset must agree.
            let at = l2_len(pkt).expect("an accepted frame has an IP ethertype");
            let mut inner = Flow::empty();
            assert_eq!(parse_ip(pkt, at, &mut inner), Ok(()), "frame accepted, its IP packet not");
            assert_eq!(inner, frame, "frame and IP parse disagree");
        }
        Err(ParseError::NotIp) => {
            assert!(l2_len(pkt).is_none(), "an IP frame called NotIp");
        }
        Err(ParseError::Malformed) => {}
    }
});

/// Length of the Ethernet header and its VLAN tags (at most two) when the
/// ethertype after them is IPv4 or IPv6.
fn l2_len(p: &[u8]) -> Option<usize> {
    let mut at = 12;
    for _ in 0..3 {
        let t = u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]);
        match t {
            0x0800 | 0x86dd => return Some(at + 2),
            0x8100 | 0x88a8 => at += 4,
            _ => return None,
        }
    }
    None
}

fn check_ip(p: &[u8], l3: usize, r: Result<(), ParseError>, f: &Flow) {
    assert_ne!(r, Err(ParseError::NotIp), "parse_ip never says NotIp");
    if r.is_err() {
        return;
    }
    let version = p[l3] >> 4;
    match f.family {
        FAMILY_V4 => {
            assert_eq!(version, 4);
            let h = &p[l3..l3 + 20];
            assert!(h[0] & 0x0f >= 5, "IHL below 5 accepted");
            assert_eq!(f.proto, h[9]);
            assert_eq!(&f.src[..4], &h[12..16]);
            assert_eq!(&f.dst[..4], &h[16..20]);
            assert!(f.src[4..].iter().chain(&f.dst[4..]).all(|b| *b == 0), "IPv4 flow with bytes past the address");
            let frag_offset = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
            if frag_offset != 0 {
                assert!(!f.ports_known, "ports read from a non-first fragment");
            }
            if f.ports_known {
                let l4 = l3 + usize::from(h[0] & 0x0f) * 4;
                check_ports(p, l4, f);
            }
        }
        FAMILY_V6 => {
            assert_eq!(version, 6);
            assert_eq!(&f.src[..], &p[l3 + 8..l3 + 24]);
            assert_eq!(&f.dst[..], &p[l3 + 24..l3 + 40]);
        }
        other => panic!("accepted with family {other}"),
    }
    if f.ports_known {
        assert!(matches!(f.proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP), "ports for protocol {}", f.proto);
    } else {
        assert_eq!((f.sport, f.dport), (0, 0), "ports set but not known");
    }
    if f.tcp_flags != 0 {
        assert!(f.ports_known && f.proto == PROTO_TCP, "TCP flags without a TCP header");
    }
}

/// The ports of an IPv4 first fragment are the first four bytes of its
/// transport header, and the whole header is inside the packet.
fn check_ports(p: &[u8], l4: usize, f: &Flow) {
    let header = match f.proto {
        PROTO_TCP => 20,
        PROTO_UDP => 8,
        _ => 12,
    };
    assert!(p.len() >= l4 + header, "ports read from a truncated transport header");
    assert_eq!(f.sport, u16::from_be_bytes([p[l4], p[l4 + 1]]));
    assert_eq!(f.dport, u16::from_be_bytes([p[l4 + 2], p[l4 + 3]]));
    if f.proto == PROTO_TCP {
        assert_eq!(f.tcp_flags, p[l4 + 13]);
    }
}
