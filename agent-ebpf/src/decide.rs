//! The one decision: may this workload send this flow? Used by every
//! program, including the verify program that `tollgate verify` runs.
use agent_common::{
    parse::Flow,
    rule_key::{rule_key_v4, rule_key_v6, rule_prefix_len},
    CgroupEntry, RuleSet, FAMILY_V4, FLAG_FAIL_CLOSED, FLAG_GATEWAY, FLAG_UNCLASSIFIED, MAX_PORT_RULES,
    MODE_OFF, POLICY_GLOBAL, REASON_FAIL_CLOSED, REASON_GATEWAY_POD, REASON_LOOPBACK, REASON_NOT_ENFORCED,
    REASON_NO_RULE, REASON_UNCLASSIFIED,
};
use aya_ebpf::maps::lpm_trie::Key;

use crate::maps::{TG_RULES_V4, TG_RULES_V6};

#[derive(Clone, Copy)]
pub struct Decision {
    pub allow: bool,
    pub reason: u8,
}

#[inline(always)]
fn rules_for(policy: u32, flow: &Flow) -> Option<&'static RuleSet> {
    if flow.family == FAMILY_V4 {
        let dst = [flow.dst[0], flow.dst[1], flow.dst[2], flow.dst[3]];
        TG_RULES_V4.get(Key::new(rule_prefix_len(32), rule_key_v4(policy, dst)))
    } else {
        TG_RULES_V6.get(Key::new(rule_prefix_len(128), rule_key_v6(policy, &flow.dst)))
    }
}

#[inline(always)]
fn first_match(set: &RuleSet, proto: u8, port: u16) -> Option<u8> {
    let count = set.count as usize;
    let mut i = 0;
    while i < MAX_PORT_RULES {
        if i >= count {
            return None;
        }
        let r = &set.rules[i];
        if r.matches(proto, port) {
            return Some(r.reason);
        }
        i += 1;
    }
    None
}

#[inline(always)]
pub fn is_loopback(flow: &Flow) -> bool {
    is_loopback_addr(flow.family, &flow.dst)
}

/// 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104.
#[inline(always)]
pub fn is_loopback_addr(family: u8, d: &[u8; 16]) -> bool {
    if family == FAMILY_V4 {
        return d[0] == 127;
    }
    let ten_zero = d[0] | d[1] | d[2] | d[3] | d[4] | d[5] | d[6] | d[7] | d[8] | d[9] == 0;
    if ten_zero && d[10] == 0 && d[11] == 0 && d[12] | d[13] | d[14] == 0 && d[15] == 1 {
        return true;
    }
    ten_zero && d[10] == 0xff && d[11] == 0xff && d[12] == 127
}

/// Entries that deny whatever the packet: a marker cgroup (a pod the
/// agent has not classified yet) and a pod that could not be fully
/// registered.
#[inline(always)]
pub fn gate(entry: &CgroupEntry) -> Option<Decision> {
    if entry.flags & FLAG_UNCLASSIFIED != 0 {
        return Some(Decision { allow: false, reason: REASON_UNCLASSIFIED });
    }
    if entry.flags & FLAG_FAIL_CLOSED != 0 {
        return Some(Decision { allow: false, reason: REASON_FAIL_CLOSED });
    }
    None
}

/// Decides by the rules for a registered workload (replies are the
/// caller's: only the packet path knows the socket).
#[inline(always)]
pub fn decide(entry: &CgroupEntry, flow: &Flow) -> Decision {
    if entry.mode == MODE_OFF {
        let reason = if entry.flags & FLAG_GATEWAY != 0 {
            REASON_GATEWAY_POD
        } else {
            REASON_NOT_ENFORCED
        };
        return Decision { allow: true, reason };
    }
    if let Some(d) = gate(entry) {
        return d;
    }
    if is_loopback(flow) {
        return Decision { allow: true, reason: REASON_LOOPBACK };
    }
    let port = if flow.ports_known { flow.dport } else { 0 };
    if let Some(set) = rules_for(POLICY_GLOBAL, flow) {
        if let Some(reason) = first_match(set, flow.proto, port) {
            return Decision { allow: true, reason };
        }
    }
    if entry.policy != POLICY_GLOBAL {
        if let Some(set) = rules_for(entry.policy, flow) {
            if let Some(reason) = first_match(set, flow.proto, port) {
                return Decision { allow: true, reason };
            }
        }
    }
    Decision { allow: false, reason: REASON_NO_RULE }
}
