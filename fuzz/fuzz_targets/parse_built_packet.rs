//! The packet parser against packets built from a description: IPv4 with
//! options and fragment offsets, IPv6 with chains of extension headers
//! (hop-by-hop, routing, destination options, AH, fragment), behind no L2
//! header, an Ethernet header with up to three VLAN tags, or an arbitrary
//! L3 offset; and cut short anywhere. The parser must return exactly
//! what the description implies: the addresses, the protocol, ports only
//! for first fragments of TCP/UDP/SCTP, and `Malformed` for a header that
//! is cut, too deep a chain or a bad IHL. Raw bytes alone seldom reach
//! the deep cases; this target builds them on purpose.
#![no_main]

use agent_common::parse::{parse_ethernet, parse_ip, Flow, ParseError, MAX_V6_EXT_HEADERS};
use agent_common::{FAMILY_V4, FAMILY_V6, PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum L2 {
    /// cgroup_skb: the IP header first.
    None,
    /// Ethernet with this many 802.1Q/802.1ad tags (0..=3; 3 is too many).
    Ethernet { tags: u8, ad: bool },
    /// `parse_ip` at an offset, after filler bytes.
    Offset(u8),
}

#[derive(Arbitrary, Debug)]
enum Ext {
    HopByHop(u8),
    Routing(u8),
    DestOpts(u8),
    Ah(u8),
    Fragment { offset: u16, more: bool },
}

#[derive(Arbitrary, Debug)]
struct Spec {
    l2: L2,
    v6: bool,
    proto: u8,
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    /// IPv4: IHL (values below 5 are malformed).
    ihl: u8,
    /// IPv4: fragment offset (13 bits) and the MF flag.
    frag: u16,
    ext: Vec<Ext>,
    /// Cut the packet to this many bytes (when shorter than it is).
    cut: Option<u16>,
}

const EXT_PROTOS: [u8; 5] = [0, 43, 44, 51, 60];

fn transport_len(proto: u8) -> Option<usize> {
    match proto {
        PROTO_TCP => Some(20),
        PROTO_UDP => Some(8),
        PROTO_SCTP => Some(12),
        _ => None,
    }
}

fn transport(s: &Spec, proto: u8) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&s.sport.to_be_bytes());
    t.extend_from_slice(&s.dport.to_be_bytes());
    let len = transport_len(proto).unwrap_or(8);
    t.resize(len, 0xa5);
    if proto == PROTO_TCP {
        t[12] = 0x50;
        t[13] = s.tcp_flags;
    }
    t.extend_from_slice(b"payload");
    t
}

/// The packet, the L3 offset, and what parsing it must give: the flow, or
/// `None` for malformed (computed from the description, not the bytes).
fn build(s: &Spec) -> (Vec<u8>, usize, Option<Flow>, usize) {
    let mut p = Vec::new();
    let mut l2_tags_ok = true;
    match s.l2 {
        L2::None => {}
        L2::Ethernet { tags, ad } => {
            p.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
            let tags = tags % 4;
            l2_tags_ok = tags <= 2;
            for i in 0..tags {
                let tpid: u16 = if ad && i == 0 { 0x88a8 } else { 0x8100 };
                p.extend_from_slice(&tpid.to_be_bytes());
                p.extend_from_slice(&[0, 7]);
            }
            let et: u16 = if s.v6 { 0x86dd } else { 0x0800 };
            p.extend_from_slice(&et.to_be_bytes());
        }
        L2::Offset(n) => p.extend(std::iter::repeat_n(0x45u8, usize::from(n % 64))),
    }
    let l3 = p.len();
    // A protocol number that names an extension header would make the
    // payload a header: keep those for the `ext` chain.
    let proto = if EXT_PROTOS.contains(&s.proto) { 59 } else { s.proto };
    let mut f = Flow::empty();
    // Bytes the parse needs: (offset it must reach, required).
    let mut needed: usize;
    let mut malformed = !l2_tags_ok;
    if s.v6 {
        f.family = FAMILY_V6;
        f.src = s.src;
        f.dst = s.dst;
        let first_next = s.ext.first().map_or(proto, ext_proto);
        let mut h = vec![0x60, 0, 0, 0, 0, 0, first_next, 64];
        h.extend_from_slice(&s.src);
        h.extend_from_slice(&s.dst);
        p.extend_from_slice(&h);
        needed = p.len();
        let mut first_fragment = true;
        for (i, e) in s.ext.iter().enumerate() {
            let next = s.ext.get(i + 1).map_or(proto, ext_proto);
            let start = p.len();
            match *e {
                Ext::HopByHop(n) | Ext::Routing(n) | Ext::DestOpts(n) => {
                    let n = n % 4;
                    p.extend_from_slice(&[next, n]);
                    p.resize(start + (usize::from(n) + 1) * 8, 1);
                }
                Ext::Ah(n) => {
                    let n = n % 6;
                    p.extend_from_slice(&[next, n]);
                    p.resize(start + (usize::from(n) + 2) * 4, 1);
                }
                Ext::Fragment { offset, more } => {
                    let field = (offset & 0x1fff) << 3 | u16::from(more);
                    p.extend_from_slice(&[next, 0]);
                    p.extend_from_slice(&field.to_be_bytes());
                    p.extend_from_slice(&[0, 0, 0, 1]);
                    if offset & 0x1fff != 0 {
                        first_fragment = false;
                    }
                }
            }
            // The parser reads the first 2 (4 for a fragment) bytes of
            // each extension header it walks.
            needed = start + if matches!(e, Ext::Fragment { .. }) { 4 } else { 2 };
        }
        if s.ext.len() > MAX_V6_EXT_HEADERS as usize {
            malformed = true;
        }
        f.proto = proto;
        let l4 = p.len();
        p.extend_from_slice(&transport(s, proto));
        if first_fragment {
            if let Some(len) = transport_len(proto) {
                needed = l4 + len;
                set_ports(&mut f, s, proto);
            }
        }
    } else {
        f.family = FAMILY_V4;
        f.src[..4].copy_from_slice(&s.src[..4]);
        f.dst[..4].copy_from_slice(&s.dst[..4]);
        f.proto = proto;
        let ihl = s.ihl % 16;
        let frag = s.frag & 0x3fff;
        let mut h = vec![0x40 | ihl, 0, 0, 0, 0, 1];
        h.extend_from_slice(&frag.to_be_bytes());
        h.extend_from_slice(&[64, proto, 0, 0]);
        h.extend_from_slice(&s.src[..4]);
        h.extend_from_slice(&s.dst[..4]);
        // Options (or, for an IHL below 5, nothing).
        h.resize(h.len().max(usize::from(ihl) * 4), 1);
        p.extend_from_slice(&h);
        needed = l3 + 20;
        if ihl < 5 {
            malformed = true;
        }
        let l4 = l3 + usize::from(ihl) * 4;
        p.extend_from_slice(&transport(s, proto));
        if frag & 0x1fff == 0 {
            if let Some(len) = transport_len(proto) {
                needed = needed.max(l4 + len);
                set_ports(&mut f, s, proto);
            }
        }
    }
    if let Some(cut) = s.cut {
        let cut = usize::from(cut);
        if cut < p.len() {
            p.truncate(cut);
        }
    }
    if p.len() < needed {
        malformed = true;
    }
    (p, l3, (!malformed).then_some(f), needed)
}

fn ext_proto(e: &Ext) -> u8 {
    match e {
        Ext::HopByHop(_) => 0,
        Ext::Routing(_) => 43,
        Ext::DestOpts(_) => 60,
        Ext::Ah(_) => 51,
        Ext::Fragment { .. } => 44,
    }
}

fn set_ports(f: &mut Flow, s: &Spec, proto: u8) {
    f.sport = s.sport;
    f.dport = s.dport;
    f.ports_known = true;
    if proto == PROTO_TCP {
        f.tcp_flags = s.tcp_flags;
    }
}

fuzz_target!(|s: Spec| {
    let (p, l3, want, needed) = build(&s);
    let mut got = Flow::empty();
    let r = match s.l2 {
        L2::Ethernet { .. } => parse_ethernet(p.as_slice(), &mut got),
        _ => parse_ip(p.as_slice(), l3, &mut got),
    };
    match (&want, r) {
        (Some(w), Ok(())) => assert_eq!(&got, w, "wrong flow for {s:?} ({} bytes)", p.len()),
        (None, Err(ParseError::Malformed)) => {}
        _ => panic!("expected {want:?}, got {r:?} / {got:?} for {s:?}: {} bytes, {needed} needed, {p:02x?}", p.len()),
    }
});
