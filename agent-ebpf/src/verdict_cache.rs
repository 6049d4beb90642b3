//! The verdict cache kept with each socket (`SockState` in `TG_SOCKS`):
//! a socket's packets mostly repeat one (protocol, source, destination,
//! port); while the policy generation has not moved, the cached verdict
//! answers without the cgroup walk and the rule lookups. Any apply that
//! changes rules, cgroups or workloads bumps the generation, so a cached
//! verdict never outlives the state that produced it.
use agent_common::{
    parse::Flow, CgroupEntry, SockState, META_GENERATION, SOCK_CACHED, SOCK_NOT_A_POD,
};
use aya_ebpf::{bindings::bpf_sock, helpers::bpf_sk_fullsock, programs::SkBuffContext};

use crate::{
    decide::Decision,
    maps::{TG_META, TG_SOCKS},
};

#[inline(always)]
pub fn generation() -> u64 {
    TG_META.get(META_GENERATION).copied().unwrap_or(0)
}

/// The full socket of the packet, if any (not for request or time-wait
/// sockets).
#[inline(always)]
pub fn full_socket(ctx: &SkBuffContext) -> *mut bpf_sock {
    let sk: *mut bpf_sock = unsafe { (*ctx.skb.skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return sk;
    }
    unsafe { bpf_sk_fullsock(sk) }
}

/// The socket's state when its cache is valid for `gen`.
#[inline(always)]
pub fn valid(sk: *mut bpf_sock, gen: u64) -> Option<*mut SockState> {
    let st = TG_SOCKS.get(sk, false)?;
    let s = unsafe { &*st };
    (s.flags & SOCK_CACHED != 0 && s.generation == gen).then_some(st)
}

#[inline(always)]
pub fn is_not_a_pod(st: *mut SockState) -> bool {
    unsafe { (*st).flags & SOCK_NOT_A_POD != 0 }
}

#[inline(always)]
pub fn entry_of(st: *mut SockState) -> CgroupEntry {
    let s = unsafe { &*st };
    CgroupEntry { workload: s.workload, policy: s.policy, mode: s.mode, flags: s.wflags, _pad: [0; 6] }
}

/// The cached decision, when the packet is the cached flow.
#[inline(always)]
pub fn lookup(st: *mut SockState, flow: &Flow) -> Option<Decision> {
    let s = unsafe { &*st };
    if s.allow > 1 || s.proto != flow.proto || s.family != flow.family || s.dport != flow.dport {
        return None;
    }
    if s.src != flow.src || s.dst != flow.dst {
        return None;
    }
    Some(Decision { allow: s.allow == 1, reason: s.reason })
}

/// Remembers who the socket belongs to (no verdict yet: `allow` 2).
#[inline(always)]
pub fn store_owner(sk: *mut bpf_sock, gen: u64, entry: Option<&CgroupEntry>) {
    let Some(st) = TG_SOCKS.get(sk, true) else { return };
    let s = unsafe { &mut *st };
    s.generation = gen;
    s.allow = 2;
    match entry {
        Some(e) => {
            s.flags = (s.flags & !SOCK_NOT_A_POD) | SOCK_CACHED;
            s.workload = e.workload;
            s.policy = e.policy;
            s.mode = e.mode;
            s.wflags = e.flags;
        }
        None => s.flags |= SOCK_CACHED | SOCK_NOT_A_POD,
    }
}

/// Remembers the verdict for `flow`.
#[inline(always)]
pub fn store_verdict(sk: *mut bpf_sock, gen: u64, entry: &CgroupEntry, flow: &Flow, d: &Decision) {
    store_owner(sk, gen, Some(entry));
    let Some(st) = TG_SOCKS.get(sk, false) else { return };
    let s = unsafe { &mut *st };
    s.allow = d.allow as u8;
    s.reason = d.reason;
    s.family = flow.family;
    s.proto = flow.proto;
    s.dport = flow.dport;
    s.src = flow.src;
    s.dst = flow.dst;
}
