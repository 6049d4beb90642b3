//! connect()/sendmsg() hooks: the same decision as the packet path, so an
//! application in an enforced pod gets EPERM at once instead of a SYN that
//! is silently dropped.
use agent_common::{
    parse::Flow, CgroupEntry, FAMILY_V4, FAMILY_V6, FLAG_SIDECAR_REDIRECT, LAYER_CONNECT, LAYER_SENDMSG,
    MODE_ENFORCE, MODE_OFF, REASON_REPLY, VERDICT_DROP,
};
use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_socket_cookie},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};

use crate::{
    cgroup,
    decide::{decide, gate, Decision},
    record, reply,
};

const ALLOW: i32 = 1;
const DENY: i32 = 0;

#[inline(always)]
fn current_workload() -> Option<CgroupEntry> {
    let own = unsafe { bpf_get_current_cgroup_id() };
    cgroup::resolve(own, |level| unsafe { bpf_get_current_ancestor_cgroup_id(level) })
}

/// The flow a connect()/sendmsg() call is about to create.
#[inline(always)]
fn flow_of(sa: *const bpf_sock_addr, v6: bool) -> Flow {
    let mut flow = Flow::empty();
    unsafe {
        flow.proto = (*sa).protocol as u8;
        flow.dport = u16::from_be((*sa).user_port as u16);
        flow.ports_known = true;
        let sk = (*sa).__bindgen_anon_1.sk;
        if !sk.is_null() {
            flow.sport = (*sk).src_port as u16;
        }
        if !v6 {
            flow.family = FAMILY_V4;
            flow.dst[..4].copy_from_slice(&(*sa).user_ip4.to_ne_bytes());
            return flow;
        }
        let mut dst = [0u8; 16];
        let mut i = 0;
        while i < 4 {
            dst[i * 4..i * 4 + 4].copy_from_slice(&(*sa).user_ip6[i].to_ne_bytes());
            i += 1;
        }
        // ::ffff:a.b.c.d leaves as an IPv4 packet: decide as IPv4.
        let mapped = dst[..10].iter().all(|b| *b == 0) && dst[10] == 0xff && dst[11] == 0xff;
        if mapped {
            flow.family = FAMILY_V4;
            flow.dst[..4].copy_from_slice(&dst[12..]);
        } else {
            flow.family = FAMILY_V6;
            flow.dst = dst;
        }
    }
    flow
}

#[inline(always)]
fn check(ctx: &SockAddrContext, v6: bool, sendmsg: bool) -> i32 {
    let Some(entry) = current_workload() else {
        return ALLOW;
    };
    if entry.mode == MODE_OFF {
        return ALLOW;
    }
    let flow = flow_of(ctx.sock_addr, v6);
    let mut d = match gate(&entry) {
        Some(d) => d,
        // The sidecar's redirect has not happened yet: judged on packets.
        None if entry.flags & FLAG_SIDECAR_REDIRECT != 0 => return ALLOW,
        None => decide(&entry, &flow),
    };
    if sendmsg {
        let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
        if d.allow {
            reply::note_outbound(cookie, &flow);
        } else if reply::udp_peer_answers(cookie, &flow) {
            // An unconnected UDP/SCTP socket may answer a peer it heard from.
            d = Decision { allow: true, reason: REASON_REPLY };
        }
    }
    if d.allow || entry.mode != MODE_ENFORCE {
        // Allowed and audited calls are counted on their packets.
        return ALLOW;
    }
    record::count(entry.workload, VERDICT_DROP, d.reason, 0);
    let layer = if sendmsg { LAYER_SENDMSG } else { LAYER_CONNECT };
    record::event(entry.workload, VERDICT_DROP, d.reason, &flow, 0, layer);
    DENY
}

#[cgroup_sock_addr(connect4)]
pub fn tg_connect4(ctx: SockAddrContext) -> i32 {
    check(&ctx, false, false)
}

#[cgroup_sock_addr(connect6)]
pub fn tg_connect6(ctx: SockAddrContext) -> i32 {
    check(&ctx, true, false)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn tg_sendmsg4(ctx: SockAddrContext) -> i32 {
    check(&ctx, false, true)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn tg_sendmsg6(ctx: SockAddrContext) -> i32 {
    check(&ctx, true, true)
}
