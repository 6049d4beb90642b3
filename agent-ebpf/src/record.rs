//! Counters and the recent-flows table.
use agent_common::{
    counter_index, CgroupEntry, FlowKey, FlowValue, MODE_AUDIT, VERDICT_ALLOW, VERDICT_AUDIT, VERDICT_DROP,
};
use aya_ebpf::helpers::bpf_ktime_get_boot_ns;

use crate::{
    decide::Decision,
    maps::{TG_COUNTS, TG_FLOWS},
};
use agent_common::parse::Flow;

/// The verdict to count for a decision in the workload's mode.
#[inline(always)]
pub fn verdict(entry: &CgroupEntry, d: &Decision) -> u8 {
    if d.allow {
        VERDICT_ALLOW
    } else if entry.mode == MODE_AUDIT {
        VERDICT_AUDIT
    } else {
        VERDICT_DROP
    }
}

#[inline(always)]
pub fn count(workload: u32, verdict: u8, reason: u8, bytes: u64) {
    let Some(index) = counter_index(workload, verdict, reason) else {
        return;
    };
    if let Some(v) = TG_COUNTS.get_ptr_mut(index) {
        unsafe {
            (*v).packets += 1;
            (*v).bytes += bytes;
        }
    }
}

#[inline(always)]
pub fn flow(workload: u32, verdict: u8, reason: u8, f: &Flow, bytes: u64) {
    let key = FlowKey {
        workload,
        family: f.family,
        proto: f.proto,
        verdict,
        reason,
        src: f.src,
        dst: f.dst,
        sport: f.sport,
        dport: f.dport,
    };
    let now = unsafe { bpf_ktime_get_boot_ns() };
    match TG_FLOWS.get_ptr_mut(key) {
        Some(v) => unsafe {
            (*v).last_ns = now;
            (*v).packets += 1;
            (*v).bytes += bytes;
        },
        None => {
            let v = FlowValue { first_ns: now, last_ns: now, packets: 1, bytes };
            let _ = TG_FLOWS.insert(key, v, 0);
        }
    }
}

/// Counts a decision and, for what enforce drops or audit reports, keeps
/// the flow.
#[inline(always)]
pub fn record(entry: &CgroupEntry, d: &Decision, f: &Flow, bytes: u64) -> u8 {
    let v = verdict(entry, d);
    count(entry.workload, v, d.reason, bytes);
    if v != VERDICT_ALLOW {
        flow(entry.workload, v, d.reason, f, bytes);
    }
    v
}

