//! The one packet parser, shared by the kernel programs and the host.
//!
//! It reads through [`PacketBytes`], so the same logic runs on a socket
//! buffer in the kernel (cgroup_skb: the buffer starts at the IP header;
//! TC: at the Ethernet header) and on a `&[u8]` on the host, where it is
//! unit-tested and fuzzed. Headers are read as `network-types` structs.
//! Anything it cannot parse is [`ParseError::Malformed`]: the caller
//! denies it, never guesses.
use core::mem::offset_of;

use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    sctp::SctpHdr,
    tcp::TcpHdr,
    udp::UdpHdr,
    vlan::VlanHdr,
};

use crate::{FAMILY_V4, FAMILY_V6, PROTO_SCTP, PROTO_TCP, PROTO_UDP};

/// Reads a plain-data header at a byte offset; `None` past the end.
pub trait PacketBytes {
    fn read<T: Copy>(&self, offset: usize) -> Option<T>;
}

impl PacketBytes for [u8] {
    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Option<T> {
        let end = offset.checked_add(core::mem::size_of::<T>())?;
        if end > self.len() {
            return None;
        }
        // SAFETY: the range is in bounds and T is plain data (headers of
        // byte arrays and integers) read without alignment.
        Some(unsafe { core::ptr::read_unaligned(self.as_ptr().add(offset).cast::<T>()) })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Truncated, an unknown IP version, a bad header length, too many
    /// IPv6 extension headers: denied.
    Malformed,
    /// (L2 only) not IPv4 or IPv6 (ARP, LLDP, ...): not ours to judge.
    NotIp,
}

/// TCP flag bits as in the header's 14th byte.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// The parts of a packet (or of a `connect()`/`sendmsg()` call) that the
/// decision looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// TCP flags (first fragment of TCP only), else 0.
    pub tcp_flags: u8,
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
            tcp_flags: 0,
        }
    }

    /// A TCP SYN without ACK: the first packet of a connection.
    pub fn is_tcp_syn(&self) -> bool {
        self.proto == PROTO_TCP && self.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    }

    /// A TCP SYN with ACK: a listener's answer to a SYN.
    pub fn is_tcp_syn_ack(&self) -> bool {
        self.proto == PROTO_TCP && self.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK
    }
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
/// 802.1Q tags walked (QinQ needs two).
const MAX_VLAN_TAGS: usize = 2;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;
/// Deepest chain of IPv6 extension headers walked; more is malformed.
pub const MAX_V6_EXT_HEADERS: u32 = 6;

/// Parses a frame that starts with an Ethernet header (TC), with up to two
/// 802.1Q/802.1ad tags, into `flow`.
#[inline(always)]
pub fn parse_ethernet<P: PacketBytes + ?Sized>(p: &P, flow: &mut Flow) -> Result<(), ParseError> {
    let ether_type_at = offset_of!(EthHdr, ether_type);
    let mut ether_type = u16::from_be(p.read::<u16>(ether_type_at).ok_or(ParseError::Malformed)?);
    let mut off = EthHdr::LEN;
    let mut i = 0;
    while i < MAX_VLAN_TAGS {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        let next = p.read::<u16>(off + offset_of!(VlanHdr, ether_type)).ok_or(ParseError::Malformed)?;
        ether_type = u16::from_be(next);
        off += VlanHdr::LEN;
        i += 1;
    }
    match ether_type {
        ETH_P_IP | ETH_P_IPV6 => parse_ip(p, off, flow),
        ETH_P_8021Q | ETH_P_8021AD => Err(ParseError::Malformed),
        _ => Err(ParseError::NotIp),
    }
}

/// Parses an IPv4 or IPv6 packet whose IP header starts at `l3` (0 for
/// cgroup_skb) into `flow` (which should start as [`Flow::empty`]).
#[inline(always)]
pub fn parse_ip<P: PacketBytes + ?Sized>(p: &P, l3: usize, flow: &mut Flow) -> Result<(), ParseError> {
    let first: u8 = p.read(l3).ok_or(ParseError::Malformed)?;
    match first >> 4 {
        4 => parse_v4(p, l3, flow),
        6 => parse_v6(p, l3, flow),
        _ => Err(ParseError::Malformed),
    }
}

#[inline(always)]
fn parse_v4<P: PacketBytes + ?Sized>(p: &P, l3: usize, flow: &mut Flow) -> Result<(), ParseError> {
    let h: Ipv4Hdr = p.read(l3).ok_or(ParseError::Malformed)?;
    let ihl = (h.vihl & 0x0f) as usize;
    if ihl < 5 {
        return Err(ParseError::Malformed);
    }
    flow.family = FAMILY_V4;
    flow.proto = h.proto;
    flow.src[..4].copy_from_slice(&h.src_addr);
    flow.dst[..4].copy_from_slice(&h.dst_addr);
    let frag_offset = u16::from_be_bytes(h.frags) & 0x1fff;
    if frag_offset == 0 {
        transport(p, l3 + ihl * 4, flow)?;
    }
    Ok(())
}

#[inline(always)]
fn parse_v6<P: PacketBytes + ?Sized>(p: &P, l3: usize, flow: &mut Flow) -> Result<(), ParseError> {
    let mut next: u8 = p.read(l3 + offset_of!(Ipv6Hdr, next_hdr)).ok_or(ParseError::Malformed)?;
    flow.family = FAMILY_V6;
    flow.src = p.read(l3 + offset_of!(Ipv6Hdr, src_addr)).ok_or(ParseError::Malformed)?;
    flow.dst = p.read(l3 + offset_of!(Ipv6Hdr, dst_addr)).ok_or(ParseError::Malformed)?;
    let mut off = l3 + Ipv6Hdr::LEN;
    let mut first_fragment = true;
    let mut i = 0;
    loop {
        if i > MAX_V6_EXT_HEADERS {
            return Err(ParseError::Malformed);
        }
        i += 1;
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let hdr: [u8; 2] = p.read(off).ok_or(ParseError::Malformed)?;
                next = hdr[0];
                off += (hdr[1] as usize + 1) * 8;
            }
            IPPROTO_AH => {
                let hdr: [u8; 2] = p.read(off).ok_or(ParseError::Malformed)?;
                next = hdr[0];
                off += (hdr[1] as usize + 2) * 4;
            }
            IPPROTO_FRAGMENT => {
                let hdr: [u8; 4] = p.read(off).ok_or(ParseError::Malformed)?;
                next = hdr[0];
                if u16::from_be_bytes([hdr[2], hdr[3]]) >> 3 != 0 {
                    first_fragment = false;
                }
                off += 8;
            }
            _ => break,
        }
    }
    flow.proto = next;
    if first_fragment {
        transport(p, off, flow)?;
    }
    Ok(())
}

/// Ports (and TCP flags) of a first fragment. A first fragment too short
/// to hold the transport header is malformed. TCP, UDP and SCTP all start
/// with the source and destination ports.
#[inline(always)]
fn transport<P: PacketBytes + ?Sized>(p: &P, l4: usize, flow: &mut Flow) -> Result<(), ParseError> {
    let (ports_at, len) = match flow.proto {
        PROTO_TCP => (offset_of!(TcpHdr, source), TcpHdr::LEN),
        PROTO_UDP => (offset_of!(UdpHdr, src), UdpHdr::LEN),
        PROTO_SCTP => (offset_of!(SctpHdr, src), SctpHdr::LEN),
        _ => return Ok(()),
    };
    // The whole header must be there, not only the ports.
    p.read::<u8>(l4 + len - 1).ok_or(ParseError::Malformed)?;
    let ports: [u8; 4] = p.read(l4 + ports_at).ok_or(ParseError::Malformed)?;
    if flow.proto == PROTO_TCP {
        // The byte after data offset: CWR ECE URG ACK PSH RST SYN FIN.
        flow.tcp_flags = p.read(l4 + TCP_FLAGS_AT).ok_or(ParseError::Malformed)?;
    }
    flow.sport = u16::from_be_bytes([ports[0], ports[1]]);
    flow.dport = u16::from_be_bytes([ports[2], ports[3]]);
    flow.ports_known = true;
    Ok(())
}

/// Offset of the flags byte in [`TcpHdr`]: the second byte of its bit
/// field (data offset and reserved bits come first).
const TCP_FLAGS_AT: usize = offset_of!(TcpHdr, _bitfield_1) + 1;

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
