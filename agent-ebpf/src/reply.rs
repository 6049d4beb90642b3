//! Reply state that a pod cannot forge.
//!
//! A reply is a packet of a connection the pod accepted from a real peer:
//! - TCP: `tg_ingress` notes a SYN that arrived on a device other than
//!   `lo`, from an address that is not the pod's own, in `TG_SYN_SEEN`;
//!   the listener's SYN-ACK to exactly that peer passes; `tg_sockops`
//!   marks the accepted socket (`SOCK_INBOUND` in its socket storage) when
//!   the handshake completes, and that socket may answer its peer for as
//!   long as it lives. Nothing is keyed by workload id, nothing outlives
//!   its socket, and a SYN flood can only push out handshakes in
//!   progress, never an accepted connection.
//! - UDP and SCTP: a packet from a real peer lets the receiving socket
//!   (by cookie, never reused) answer that peer until it has been idle for
//!   `UDP_REPLY_IDLE_NS`.
use agent_common::{
    parse::Flow, CgroupEntry, ConnKey, PeerKey, FAMILY_V4, MODE_OFF, PROTO_SCTP, PROTO_TCP, PROTO_UDP,
    SOCK_INBOUND, UDP_INITIATED, UDP_REPLY_IDLE_NS,
};
use aya_ebpf::{
    bindings::bpf_sock,
    helpers::{bpf_get_socket_cookie, bpf_ktime_get_boot_ns, bpf_sk_fullsock},
    programs::SkBuffContext,
};

use crate::{
    decide::is_loopback_addr,
    maps::{TG_ADDRS, TG_SOCKS, TG_SYN_SEEN, TG_UDP_PEERS},
    packet,
};

/// The connection of an inbound packet, seen from the pod.
#[inline(always)]
fn inbound_key(flow: &Flow) -> ConnKey {
    ConnKey {
        family: flow.family,
        _pad: 0,
        local_port: flow.dport,
        remote_port: flow.sport,
        _pad2: 0,
        local: flow.dst,
        remote: flow.src,
    }
}

/// The connection of an outbound packet, seen from the pod.
#[inline(always)]
pub fn outbound_key(flow: &Flow) -> ConnKey {
    ConnKey {
        family: flow.family,
        _pad: 0,
        local_port: flow.sport,
        remote_port: flow.dport,
        _pad2: 0,
        local: flow.src,
        remote: flow.dst,
    }
}

#[inline(always)]
fn same_addr(family: u8, a: &[u8; 16], b: &[u8; 16]) -> bool {
    if family == FAMILY_V4 {
        a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3]
    } else {
        a == b
    }
}

#[inline(always)]
fn is_unspecified(family: u8, a: &[u8; 16]) -> bool {
    let n = if family == FAMILY_V4 { 4 } else { 16 };
    let mut i = 0;
    while i < 16 {
        if i < n && a[i] != 0 {
            return false;
        }
        i += 1;
    }
    true
}

/// Is `addr` one of the workload's own addresses? (`None`: not known.)
#[inline(always)]
pub fn is_own(workload: u32, family: u8, addr: &[u8; 16]) -> Option<bool> {
    let own = unsafe { TG_ADDRS.get(workload) }?;
    if family == FAMILY_V4 {
        if own.has_v4 == 0 {
            return None;
        }
        Some(addr[0] == own.v4[0] && addr[1] == own.v4[1] && addr[2] == own.v4[2] && addr[3] == own.v4[3])
    } else {
        if own.has_v6 == 0 {
            return None;
        }
        Some(*addr == own.v6)
    }
}

/// The source of an outbound packet is the pod's own (or a link-local
/// IPv6 address), or the pod's addresses of that family are not known.
#[inline(always)]
pub fn source_is_own(workload: u32, flow: &Flow) -> bool {
    if flow.family != FAMILY_V4 && flow.src[0] == 0xfe && flow.src[1] & 0xc0 == 0x80 {
        return true;
    }
    is_own(workload, flow.family, &flow.src) != Some(false)
}

/// An inbound packet from a peer that is not the pod itself.
#[inline(always)]
pub fn from_real_peer(workload: u32, flow: &Flow) -> bool {
    !is_loopback_addr(flow.family, &flow.src)
        && !is_unspecified(flow.family, &flow.src)
        && !same_addr(flow.family, &flow.src, &flow.dst)
        && is_own(workload, flow.family, &flow.src) != Some(true)
}

/// `tg_ingress`, for a packet that arrived on a device other than `lo`.
#[inline(never)]
pub fn note_inbound(ctx: &SkBuffContext, entry: &CgroupEntry) {
    let mut flow = Flow::empty();
    if !packet::parse(ctx, &mut flow) || !flow.ports_known || !from_real_peer(entry.workload, &flow) {
        return;
    }
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if flow.proto == PROTO_TCP {
        if flow.is_tcp_syn() {
            let _ = TG_SYN_SEEN.insert(inbound_key(&flow), now, 0);
        }
        return;
    }
    if entry.mode == MODE_OFF || (flow.proto != PROTO_UDP && flow.proto != PROTO_SCTP) {
        return;
    }
    let key = PeerKey {
        cookie: unsafe { bpf_get_socket_cookie(ctx.skb.skb.cast()) },
        family: flow.family,
        proto: flow.proto,
        port: flow.sport,
        _pad: 0,
        addr: flow.src,
    };
    if heard_from_peer(TG_UDP_PEERS.get_ptr_mut(key), now) {
        let _ = TG_UDP_PEERS.insert(key, now, 0);
    }
}

/// A datagram peer's packet, with the flow's entry (if any): its time is
/// refreshed unless the pod started the flow (answers from the peer then
/// change nothing). True when the entry must be created.
#[inline(always)]
pub fn heard_from_peer(seen: Option<*mut u64>, now: u64) -> bool {
    match seen {
        Some(seen) if unsafe { *seen } == UDP_INITIATED => false,
        Some(seen) => {
            unsafe { *seen = now };
            false
        }
        None => true,
    }
}

/// May a datagram flow with this entry be answered now? (It is then
/// refreshed.) Not a flow the pod started, not idle too long.
#[inline(always)]
pub fn answerable(seen: *mut u64) -> bool {
    let last = unsafe { *seen };
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if last == UDP_INITIATED || now.wrapping_sub(last) > UDP_REPLY_IDLE_NS {
        return false;
    }
    unsafe { *seen = now };
    true
}

/// A UDP/SCTP flow the rules allowed the socket to start: its peer's
/// answers must not turn it into a reply flow (which would outlive a
/// policy that later denies it).
#[inline(always)]
pub fn note_outbound(cookie: u64, flow: &Flow) {
    if !flow.ports_known || (flow.proto != PROTO_UDP && flow.proto != PROTO_SCTP) {
        return;
    }
    let key = PeerKey { cookie, family: flow.family, proto: flow.proto, port: flow.dport, _pad: 0, addr: flow.dst };
    // Known already (started by either side): as it is.
    if TG_UDP_PEERS.get_ptr_mut(key).is_none() {
        let _ = TG_UDP_PEERS.insert(key, UDP_INITIATED, 0);
    }
}

/// May a UDP/SCTP socket (by cookie) send `flow` as an answer?
#[inline(always)]
pub fn udp_peer_answers(cookie: u64, flow: &Flow) -> bool {
    let key = PeerKey { cookie, family: flow.family, proto: flow.proto, port: flow.dport, _pad: 0, addr: flow.dst };
    TG_UDP_PEERS.get_ptr_mut(key).is_some_and(answerable)
}

/// Is the outbound packet `flow` (parsed) a reply, as the module
/// documentation defines it?
#[inline(never)]
pub fn is_reply(ctx: &SkBuffContext, flow: &Flow) -> bool {
    if !flow.ports_known {
        return false;
    }
    if flow.proto == PROTO_TCP {
        let sk: *mut bpf_sock = unsafe { (*ctx.skb.skb).__bindgen_anon_2.sk };
        if !sk.is_null() {
            let full = unsafe { bpf_sk_fullsock(sk) };
            if let Some(st) = TG_SOCKS.get(full, false) {
                if unsafe { (*st).flags } & SOCK_INBOUND != 0 {
                    return true;
                }
            }
        }
        return flow.is_tcp_syn_ack() && unsafe { TG_SYN_SEEN.get(outbound_key(flow)) }.is_some();
    }
    if flow.proto == PROTO_UDP || flow.proto == PROTO_SCTP {
        let cookie = unsafe { bpf_get_socket_cookie(ctx.skb.skb.cast()) };
        return udp_peer_answers(cookie, flow);
    }
    false
}
