//! `tg_sockops`: marks a TCP connection the pod accepted as one it may
//! answer, when its SYN arrived from a real peer (see `reply`).
use agent_common::{ConnKey, FAMILY_V4, FAMILY_V6, SOCK_INBOUND};
use aya_ebpf::{bindings::BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB, macros::sock_ops, programs::SockOpsContext};

use crate::maps::{TG_SOCKS, TG_SYN_SEEN};

const AF_INET: u32 = 2;

/// The accepted connection, seen from the pod, keyed as `tg_ingress` keyed
/// its SYN: an IPv4 peer of a dual-stack socket is keyed as IPv4.
#[inline(always)]
fn accepted_key(ctx: &SockOpsContext) -> ConnKey {
    let rp = ctx.remote_port();
    // Network byte order, in the upper half on little-endian machines.
    let remote_port = if rp > 0xffff { u16::from_be((rp >> 16) as u16) } else { u16::from_be(rp as u16) };
    let mut key = ConnKey {
        family: FAMILY_V6,
        _pad: 0,
        local_port: ctx.local_port() as u16,
        remote_port,
        _pad2: 0,
        local: [0; 16],
        remote: [0; 16],
    };
    if ctx.family() == AF_INET {
        key.family = FAMILY_V4;
        key.local[..4].copy_from_slice(&ctx.local_ip4().to_ne_bytes());
        key.remote[..4].copy_from_slice(&ctx.remote_ip4().to_ne_bytes());
        return key;
    }
    let (l, r) = (ctx.local_ip6(), ctx.remote_ip6());
    let mut i = 0;
    while i < 4 {
        key.local[i * 4..i * 4 + 4].copy_from_slice(&l[i].to_ne_bytes());
        key.remote[i * 4..i * 4 + 4].copy_from_slice(&r[i].to_ne_bytes());
        i += 1;
    }
    let mapped = |a: &[u8; 16]| a[..10].iter().all(|b| *b == 0) && a[10] == 0xff && a[11] == 0xff;
    if mapped(&key.remote) && mapped(&key.local) {
        key.family = FAMILY_V4;
        let (lo, re) = (key.local, key.remote);
        key.local = [0; 16];
        key.remote = [0; 16];
        key.local[..4].copy_from_slice(&lo[12..]);
        key.remote[..4].copy_from_slice(&re[12..]);
    }
    key
}

#[sock_ops]
pub fn tg_sockops(ctx: SockOpsContext) -> u32 {
    if ctx.op() != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB {
        return 1;
    }
    let key = accepted_key(&ctx);
    if unsafe { TG_SYN_SEEN.get(key) }.is_none() {
        return 1;
    }
    let sk = unsafe { (*ctx.ops).__bindgen_anon_2.sk };
    if let Some(st) = TG_SOCKS.get(sk, true) {
        unsafe { (*st).flags |= SOCK_INBOUND };
        // Compiled out by the verifier unless the agent runs with --kernel-log.
        aya_log_ebpf::debug!(&ctx, "accepted a connection from a real peer on port {}: it may answer", key.local_port);
    }
    let _ = TG_SYN_SEEN.remove(key);
    1
}
