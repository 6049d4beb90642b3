//! Parsing of the IPv4/IPv6 packet a cgroup_skb program sees (the buffer
//! starts at the network header).
use agent_common::{FAMILY_V4, FAMILY_V6, PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use aya_ebpf::programs::SkBuffContext;

/// The parts of a packet (or of a `connect()`/`sendmsg()` call) that the
/// decision looks at.
#[derive(Clone, Copy)]
pub struct Flow {
    pub family: u8,
    pub proto: u8,
    /// IPv4 addresses occupy the first 4 bytes.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    /// False for non-first fragments and protocols without ports: only
    /// rules that allow every port of the protocol match then.
    pub ports_known: bool,
    /// Offset of the transport header, when `ports_known`.
    pub l4_offset: u32,
}

impl Flow {
    pub const fn empty() -> Self {
        Flow {
            family: 0,
            proto: 0,
            src: [0; 16],
            dst: [0; 16],
            sport: 0,
            dport: 0,
            ports_known: false,
            l4_offset: 0,
        }
    }
}

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;
const MAX_V6_EXT_HEADERS: u32 = 6;

#[inline(always)]
fn has_ports(proto: u8) -> bool {
    proto == PROTO_TCP || proto == PROTO_UDP || proto == PROTO_SCTP
}

/// Parses the packet. `None` means malformed (truncated, unknown version,
/// too many IPv6 extension headers): the caller denies it.
#[inline(always)]
pub fn parse(ctx: &SkBuffContext) -> Option<Flow> {
    let first: u8 = ctx.load(0).ok()?;
    let mut flow = Flow::empty();
    let l4: u32;
    let mut first_fragment = true;
    match first >> 4 {
        4 => {
            let ihl = (first & 0x0f) as u32;
            if ihl < 5 {
                return None;
            }
            let frag: u16 = u16::from_be(ctx.load(6).ok()?);
            first_fragment = frag & 0x1fff == 0;
            flow.family = FAMILY_V4;
            flow.proto = ctx.load(9).ok()?;
            let src: [u8; 4] = ctx.load(12).ok()?;
            let dst: [u8; 4] = ctx.load(16).ok()?;
            flow.src[..4].copy_from_slice(&src);
            flow.dst[..4].copy_from_slice(&dst);
            l4 = ihl * 4;
        }
        6 => {
            flow.family = FAMILY_V6;
            let mut next: u8 = ctx.load(6).ok()?;
            flow.src = ctx.load(8).ok()?;
            flow.dst = ctx.load(24).ok()?;
            let mut off: u32 = 40;
            let mut i = 0;
            loop {
                if i >= MAX_V6_EXT_HEADERS {
                    return None;
                }
                i += 1;
                match next {
                    IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                        let hdr: [u8; 2] = ctx.load(off as usize).ok()?;
                        next = hdr[0];
                        off += (hdr[1] as u32 + 1) * 8;
                    }
                    IPPROTO_AH => {
                        let hdr: [u8; 2] = ctx.load(off as usize).ok()?;
                        next = hdr[0];
                        off += (hdr[1] as u32 + 2) * 4;
                    }
                    IPPROTO_FRAGMENT => {
                        let hdr: [u8; 4] = ctx.load(off as usize).ok()?;
                        next = hdr[0];
                        let frag_off = u16::from_be_bytes([hdr[2], hdr[3]]) >> 3;
                        if frag_off != 0 {
                            first_fragment = false;
                        }
                        off += 8;
                    }
                    _ => break,
                }
            }
            flow.proto = next;
            l4 = off;
        }
        _ => return None,
    }
    if has_ports(flow.proto) && first_fragment {
        let ports: [u8; 4] = ctx.load(l4 as usize).ok()?;
        flow.sport = u16::from_be_bytes([ports[0], ports[1]]);
        flow.dport = u16::from_be_bytes([ports[2], ports[3]]);
        flow.ports_known = true;
        flow.l4_offset = l4;
    }
    Some(flow)
}
