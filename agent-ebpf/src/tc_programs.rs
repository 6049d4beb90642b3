//! The TC layer, on the host side of each pod's veth: the same decision as
//! the cgroup layer, below every socket hook.
//!
//! `tg_tc_from_pod` (the host-side veth's ingress = the pod's egress) sees
//! every frame the pod sends, whatever made it: AF_PACKET (SOCK_RAW,
//! SOCK_DGRAM, with or without PACKET_QDISC_BYPASS), raw IP with forged
//! headers, fragments. The veth's ifindex names the pod (`TG_TC_PODS`),
//! and the pod's entry is read from `TG_CGROUPS` under its workload key,
//! so a policy change reaches this layer in the same map write.
//! - anti-spoofing: an IP source that is not the pod's own (IPv6
//!   link-local excepted; `::` only for ICMPv6, as duplicate address
//!   detection sends it) is dropped (`spoofed`), and so is an ARP packet
//!   whose sender IP is not the pod's (0.0.0.0, an ARP probe, passes);
//!   other non-IP frames are dropped (`malformed`);
//! - ICMPv6 that stays on the link (NDP, MLD: link-local or link-scope
//!   multicast destination) passes;
//! - replies to flows peers started: see `tc_reply`.
//!
//! Counting: drops are counted and reported with `layer` = tc. What the
//! layer allows was counted by the cgroup layer already, except for a pod
//! the TC layer enforces alone (`TC_POD_ALONE`: a sandboxed runtime),
//! whose every verdict is counted here. A pod in audit mode is reported by
//! the cgroup layer; the TC layer reports it only when it is alone.
use agent_common::{
    parse::{self, Flow, PacketBytes, ParseError},
    CgroupEntry, FAMILY_V4, LAYER_TC, MODE_AUDIT, MODE_ENFORCE, MODE_OFF, PROTO_ICMPV6, REASON_MALFORMED, REASON_NONE,
    REASON_REPLY, REASON_SPOOFED, REASON_UNCLASSIFIED, TC_POD_ALONE, VERDICT_DROP, WORKLOAD_CGROUP_BASE,
};
use aya_ebpf::{macros::classifier, programs::TcContext};

use crate::{
    decide::{decide, gate, Decision},
    maps::{TG_ADDRS, TG_CGROUPS, TG_TC_PODS},
    record,
    reply::is_own,
    tc_reply,
};

/// TC_ACT_UNSPEC (TCX_NEXT): the next program, or the kernel, decides.
const PASS: i32 = -1;
/// TC_ACT_SHOT (TCX_DROP).
const DROP: i32 = 2;

const ETH_P_ARP: u16 = 0x0806;
const ETH_HLEN: usize = 14;
/// Offset of the sender IP in an Ethernet/IPv4 ARP packet.
const ARP_SPA_AT: usize = ETH_HLEN + 14;

struct Frame<'a>(&'a TcContext);

impl PacketBytes for Frame<'_> {
    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Option<T> {
        self.0.load::<T>(offset).ok()
    }
}

#[inline(always)]
fn ifindex(ctx: &TcContext) -> u32 {
    unsafe { (*ctx.skb.skb).ifindex }
}

/// A function of its own (a BPF-to-BPF call), as for cgroup_skb.
#[inline(never)]
fn parse_frame(ctx: &TcContext, flow: &mut Flow) -> Result<(), ParseError> {
    parse::parse_ethernet(&Frame(ctx), flow)
}

/// Is the IP source the pod's own? Unknown addresses are not.
#[inline(always)]
fn source_is_own(workload: u32, flow: &Flow) -> bool {
    if flow.family != FAMILY_V4 {
        let s = &flow.src;
        if s[0] == 0xfe && s[1] & 0xc0 == 0x80 {
            return true;
        }
        if flow.proto == PROTO_ICMPV6 && s.iter().all(|b| *b == 0) {
            return true;
        }
    }
    is_own(workload, flow.family, &flow.src) == Some(true)
}

/// ICMPv6 to a link-local or link-scope multicast address (NDP, MLD): it
/// never leaves the link.
#[inline(always)]
fn link_scoped_icmpv6(flow: &Flow) -> bool {
    if flow.family == FAMILY_V4 || flow.proto != PROTO_ICMPV6 {
        return false;
    }
    let d = &flow.dst;
    (d[0] == 0xfe && d[1] & 0xc0 == 0x80) || (d[0] == 0xff && d[1] & 0x0f <= 2)
}

/// An ARP packet: its sender IP must be the pod's IPv4 address (or
/// 0.0.0.0, a probe).
#[inline(always)]
fn judge_arp(ctx: &TcContext, workload: u32) -> Decision {
    let Ok(spa) = ctx.load::<[u8; 4]>(ARP_SPA_AT) else {
        return Decision { allow: false, reason: REASON_MALFORMED };
    };
    if spa == [0; 4] {
        return Decision { allow: true, reason: REASON_NONE };
    }
    let own = unsafe { TG_ADDRS.get(workload) };
    match own {
        Some(a) if a.has_v4 != 0 && a.v4 == spa => Decision { allow: true, reason: REASON_NONE },
        _ => Decision { allow: false, reason: REASON_SPOOFED },
    }
}

#[inline(always)]
fn judge_ip(ifindex: u32, entry: &CgroupEntry, flow: &Flow) -> Decision {
    if let Some(d) = gate(entry) {
        return d;
    }
    if !source_is_own(entry.workload, flow) {
        return Decision { allow: false, reason: REASON_SPOOFED };
    }
    if link_scoped_icmpv6(flow) {
        return Decision { allow: true, reason: REASON_NONE };
    }
    let d = decide(entry, flow);
    if d.allow {
        tc_reply::note_outbound(ifindex, flow);
    } else if tc_reply::is_reply(ifindex, flow) {
        return Decision { allow: true, reason: REASON_REPLY };
    }
    d
}

/// The host-side veth's ingress: everything the pod sends.
#[classifier]
pub fn tg_tc_from_pod(ctx: TcContext) -> i32 {
    let dev = ifindex(&ctx);
    let Some(pod) = (unsafe { TG_TC_PODS.get(dev) }).copied() else {
        return PASS;
    };
    // The pod's entry, under its workload key; none: the pod is being
    // removed or not registered yet: denied.
    let found = unsafe { TG_CGROUPS.get(WORKLOAD_CGROUP_BASE | pod.workload as u64) }.copied();
    let known = found.is_some();
    let entry = found.unwrap_or(CgroupEntry { workload: pod.workload, mode: MODE_ENFORCE, ..CgroupEntry::default() });
    if entry.mode == MODE_OFF {
        return PASS;
    }
    let alone = pod.flags & TC_POD_ALONE != 0;
    if entry.mode == MODE_AUDIT && !alone {
        return PASS;
    }
    let mut flow = Flow::empty();
    let d = if !known {
        Decision { allow: false, reason: REASON_UNCLASSIFIED }
    } else {
        match parse_frame(&ctx, &mut flow) {
            Ok(()) => judge_ip(dev, &entry, &flow),
            Err(ParseError::NotIp) => {
                let ether_type = ctx.load::<[u8; 2]>(12).map(u16::from_be_bytes).unwrap_or(0);
                if ether_type == ETH_P_ARP {
                    judge_arp(&ctx, entry.workload)
                } else {
                    Decision { allow: false, reason: REASON_MALFORMED }
                }
            }
            Err(ParseError::Malformed) => Decision { allow: false, reason: REASON_MALFORMED },
        }
    };
    if d.allow && !alone {
        return PASS;
    }
    if record::record_at(&entry, &d, &flow, ctx.len() as u64, LAYER_TC) == VERDICT_DROP {
        DROP
    } else {
        PASS
    }
}

/// The host-side veth's egress: everything toward the pod. Notes the flows
/// peers start (see `tc_reply`); passes all.
#[classifier]
pub fn tg_tc_to_pod(ctx: TcContext) -> i32 {
    let dev = ifindex(&ctx);
    let Some(pod) = (unsafe { TG_TC_PODS.get(dev) }).copied() else {
        return PASS;
    };
    let mut flow = Flow::empty();
    if parse_frame(&ctx, &mut flow).is_ok() {
        tc_reply::note_inbound(dev, pod.workload, &flow);
    }
    PASS
}
