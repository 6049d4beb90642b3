//! Reply state of the TC layer, which sees no socket.
//!
//! `tg_tc_to_pod` (the host-side veth's egress: toward the pod) notes the
//! flows that peers outside the pod start. The pod cannot forge these
//! packets: they come from the node, and whatever the pod itself sends
//! with a source that is not its own is dropped on the way out
//! (anti-spoofing), so it never comes back as a "peer's" packet.
//! - TCP: a peer's SYN is noted in `TG_TC_SYN`; the pod's SYN-ACK to
//!   exactly that peer passes (and marks the handshake answered); the
//!   peer's ACK then establishes the flow in `TG_TC_FLOWS`, and the pod may
//!   answer that peer on that connection. Established flows live in a map
//!   of their own: a SYN flood only pushes out handshakes in progress.
//! - UDP/SCTP: a packet from a peer lets the pod answer it (same ports)
//!   until the flow has been idle for `UDP_REPLY_IDLE_NS`; flows the pod
//!   started itself (allowed by the rules) stay under the rules.
use agent_common::{parse::Flow, TcFlowKey, PROTO_SCTP, PROTO_TCP, PROTO_UDP, TC_SYN_ANSWERED, TC_SYN_SEEN, UDP_INITIATED};
use agent_common::parse::{TCP_ACK, TCP_SYN};
use aya_ebpf::helpers::bpf_ktime_get_boot_ns;

use crate::{
    maps::{TG_TC_FLOWS, TG_TC_SYN},
    reply::{answerable, from_real_peer, heard_from_peer},
};

/// The flow of a packet toward the pod, seen from the pod.
#[inline(always)]
fn inbound_key(ifindex: u32, flow: &Flow) -> TcFlowKey {
    TcFlowKey {
        ifindex,
        family: flow.family,
        proto: flow.proto,
        local_port: flow.dport,
        remote_port: flow.sport,
        _pad: 0,
        local: flow.dst,
        remote: flow.src,
    }
}

/// The flow of a packet from the pod, seen from the pod.
#[inline(always)]
fn outbound_key(ifindex: u32, flow: &Flow) -> TcFlowKey {
    TcFlowKey {
        ifindex,
        family: flow.family,
        proto: flow.proto,
        local_port: flow.sport,
        remote_port: flow.dport,
        _pad: 0,
        local: flow.src,
        remote: flow.dst,
    }
}

#[inline(always)]
fn is_datagram(proto: u8) -> bool {
    proto == PROTO_UDP || proto == PROTO_SCTP
}

/// `tg_tc_to_pod`: notes a peer's packet toward the pod.
#[inline(always)]
pub fn note_inbound(ifindex: u32, workload: u32, flow: &Flow) {
    if !flow.ports_known || !from_real_peer(workload, flow) {
        return;
    }
    let key = inbound_key(ifindex, flow);
    if flow.proto == PROTO_TCP {
        let syn_ack = flow.tcp_flags & (TCP_SYN | TCP_ACK);
        if syn_ack == TCP_SYN {
            let _ = TG_TC_SYN.insert(key, TC_SYN_SEEN, 0);
        } else if syn_ack == TCP_ACK {
            // The peer completes a handshake the pod answered.
            if let Some(state) = unsafe { TG_TC_SYN.get(key) } {
                if *state == TC_SYN_ANSWERED {
                    let now = unsafe { bpf_ktime_get_boot_ns() };
                    if TG_TC_FLOWS.insert(key, now, 0).is_ok() {
                        let _ = TG_TC_SYN.remove(key);
                    }
                }
            }
        }
        return;
    }
    if !is_datagram(flow.proto) {
        return;
    }
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if heard_from_peer(TG_TC_FLOWS.get_ptr_mut(key), now) {
        let _ = TG_TC_FLOWS.insert(key, now, 0);
    }
}

/// `tg_tc_from_pod`: a UDP/SCTP flow the rules allowed the pod to start
/// stays under the rules (its peer's answers do not make it a reply flow).
#[inline(always)]
pub fn note_outbound(ifindex: u32, flow: &Flow) {
    if !flow.ports_known || !is_datagram(flow.proto) {
        return;
    }
    let key = outbound_key(ifindex, flow);
    if TG_TC_FLOWS.get_ptr_mut(key).is_none() {
        let _ = TG_TC_FLOWS.insert(key, UDP_INITIATED, 0);
    }
}

/// Is the pod's packet `flow` a reply, as the module documentation
/// defines it?
#[inline(never)]
pub fn is_reply(ifindex: u32, flow: &Flow) -> bool {
    if !flow.ports_known {
        return false;
    }
    let key = outbound_key(ifindex, flow);
    if flow.proto == PROTO_TCP {
        if unsafe { TG_TC_FLOWS.get(key) }.is_some() {
            return true;
        }
        if !flow.is_tcp_syn_ack() {
            return false;
        }
        let Some(state) = TG_TC_SYN.get_ptr_mut(key) else {
            return false;
        };
        unsafe { *state = TC_SYN_ANSWERED };
        return true;
    }
    if !is_datagram(flow.proto) {
        return false;
    }
    TG_TC_FLOWS.get_ptr_mut(key).is_some_and(answerable)
}
