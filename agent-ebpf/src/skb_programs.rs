//! The cgroup_skb programs: egress enforcement, ingress reply state and
//! the verify entry point.
use agent_common::{
    parse::Flow, CgroupEntry, FLAG_UNCLASSIFIED, MODE_OFF, PROTO_TCP, REASON_LOOPBACK, REASON_MALFORMED,
    REASON_REPLY, REASON_SPOOFED, VERDICT_DROP, VERIFY_CB_CGROUP_HI, VERIFY_CB_CGROUP_LO, VERIFY_CB_ON_LOOPBACK,
    VERIFY_CB_RESULT, VERIFY_RESULT_VALID,
};
use aya_ebpf::{
    helpers::{bpf_get_socket_cookie, bpf_skb_ancestor_cgroup_id, bpf_skb_cgroup_id},
    macros::cgroup_skb,
    programs::SkBuffContext,
};

use crate::{
    cgroup,
    decide::{decide, gate, Decision},
    maps::TG_CGROUPS,
    packet, record, reply, verdict_cache,
};

const PASS: i32 = 1;
const DROP: i32 = 0;
/// Interface index of `lo` in every network namespace.
const LOOPBACK_IFINDEX: u32 = 1;

/// A packet on `lo` (to the pod's own addresses) never leaves the pod.
#[inline(always)]
fn on_loopback_device(ifindex: u32) -> bool {
    ifindex == LOOPBACK_IFINDEX
}

#[inline(always)]
fn workload_of(ctx: &SkBuffContext) -> Option<CgroupEntry> {
    let skb = ctx.skb.skb;
    let own = unsafe { bpf_skb_cgroup_id(skb) };
    cgroup::resolve(own, |level| unsafe { bpf_skb_ancestor_cgroup_id(skb, level) })
}

/// The decision for a parsed packet of an enforced or audited workload
/// that leaves on a real device.
#[inline(always)]
fn judge(ctx: &SkBuffContext, entry: &CgroupEntry, flow: &Flow) -> Decision {
    if let Some(d) = gate(entry) {
        return d;
    }
    if !reply::source_is_own(entry.workload, flow) {
        return Decision { allow: false, reason: REASON_SPOOFED };
    }
    let d = decide(entry, flow);
    if d.allow {
        reply::note_outbound(unsafe { bpf_get_socket_cookie(ctx.skb.skb.cast()) }, flow);
    } else if reply::is_reply(ctx, flow) {
        return Decision { allow: true, reason: REASON_REPLY };
    }
    d
}

/// Per packet: the socket's cached owner and verdict answer while the
/// policy generation has not moved; otherwise the cgroup walk and the
/// rules decide, and the socket remembers it. A UDP/SCTP reply is never
/// cached (it lasts only while the peer keeps talking).
#[cgroup_skb(egress)]
pub fn tg_egress(ctx: SkBuffContext) -> i32 {
    let gen = verdict_cache::generation();
    let sk = verdict_cache::full_socket(&ctx);
    let cached = verdict_cache::valid(sk, gen);
    let entry = match cached {
        Some(st) if verdict_cache::is_not_a_pod(st) => return PASS,
        Some(st) => verdict_cache::entry_of(st),
        None => match workload_of(&ctx) {
            Some(e) => {
                verdict_cache::store_owner(sk, gen, Some(&e));
                e
            }
            None => {
                verdict_cache::store_owner(sk, gen, None);
                return PASS;
            }
        },
    };
    if entry.mode == MODE_OFF {
        return PASS;
    }
    // A packet on the loopback device never leaves the pod.
    if on_loopback_device(unsafe { (*ctx.skb.skb).ifindex }) {
        return PASS;
    }
    let bytes = ctx.len() as u64;
    let mut flow = Flow::empty();
    let d = if !packet::parse(&ctx, &mut flow) {
        Decision { allow: false, reason: REASON_MALFORMED }
    } else if let Some(d) = cached.and_then(|st| verdict_cache::lookup(st, &flow)) {
        d
    } else {
        let d = judge(&ctx, &entry, &flow);
        if d.reason != REASON_REPLY || flow.proto == PROTO_TCP {
            verdict_cache::store_verdict(sk, gen, &entry, &flow, &d);
        }
        if !d.allow {
            // Once per socket and flow (the verdict is cached); compiled
            // out by the verifier unless the agent runs with --kernel-log.
            aya_log_ebpf::debug!(&ctx, "workload {} denied: reason {}, protocol {}, port {}", entry.workload, d.reason, flow.proto, flow.dport);
        }
        d
    };
    if record::record(&entry, &d, &flow, bytes) == VERDICT_DROP {
        DROP
    } else {
        PASS
    }
}

/// Notes what may be answered: handshakes and datagrams from real peers
/// (never from `lo`, never from the pod's own addresses). Passes all.
#[cgroup_skb(ingress)]
pub fn tg_ingress(ctx: SkBuffContext) -> i32 {
    let Some(entry) = workload_of(&ctx) else {
        return PASS;
    };
    if entry.flags & FLAG_UNCLASSIFIED != 0 || on_loopback_device(unsafe { (*ctx.skb.skb).ifindex }) {
        return PASS;
    }
    reply::note_inbound(&ctx, &entry);
    PASS
}

/// Never attached. `tollgate verify` runs it with BPF_PROG_TEST_RUN on a
/// made-up packet, passing the workload's cgroup id in `cb[0..2]` and, in
/// `cb[3]`, whether the packet would leave on `lo` (test runs always run on
/// `lo`, so the device cannot be passed as itself); the verdict comes back
/// in `cb[2]`. It makes the same decisions as `tg_egress` (there is no
/// socket, so no reply) but counts nothing.
#[cgroup_skb]
pub fn tg_verify(mut ctx: SkBuffContext) -> i32 {
    let cb = ctx.skb.cb();
    let id = (cb[VERIFY_CB_CGROUP_LO] as u64) | ((cb[VERIFY_CB_CGROUP_HI] as u64) << 32);
    let Some(entry) = (unsafe { TG_CGROUPS.get(id) }).copied() else {
        ctx.skb.cb_mut()[VERIFY_CB_RESULT] = 0;
        return PASS;
    };
    let device = if cb[VERIFY_CB_ON_LOOPBACK] != 0 { LOOPBACK_IFINDEX } else { 0 };
    let d = if entry.mode != MODE_OFF && gate(&entry).is_none() && on_loopback_device(device) {
        Decision { allow: true, reason: REASON_LOOPBACK }
    } else {
        let mut flow = Flow::empty();
        if packet::parse(&ctx, &mut flow) {
            decide(&entry, &flow)
        } else {
            Decision { allow: false, reason: REASON_MALFORMED }
        }
    };
    let v = record::verdict(&entry, &d) as u32;
    ctx.skb.cb_mut()[VERIFY_CB_RESULT] =
        v | (d.reason as u32) << 8 | (entry.mode as u32) << 16 | VERIFY_RESULT_VALID;
    PASS
}
