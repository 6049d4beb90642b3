//! Counters and the recent-flows table.
use agent_common::{
    counter_index, CgroupEntry, FlowEvent, EVENTS_BURST, EVENTS_PER_SECOND, FAMILY_V4, LAYER_CGROUP_EGRESS,
    META_EVENT_RATE, MODE_AUDIT, VERDICT_ALLOW, VERDICT_AUDIT, VERDICT_DROP,
};
use aya_ebpf::helpers::bpf_ktime_get_boot_ns;

use crate::{
    decide::Decision,
    maps::{TG_ADDRS, TG_COUNTS, TG_EVENTS, TG_EVENTS_SUPPRESSED, TG_EVENT_LIMITS, TG_META},
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

/// Admits one event of `workload` through its token bucket.
#[inline(always)]
fn admit(workload: u32, now: u64) -> bool {
    let Some(b) = TG_EVENT_LIMITS.get_ptr_mut(workload) else {
        return false;
    };
    let rate = match TG_META.get(META_EVENT_RATE).copied().unwrap_or(0) {
        0 => EVENTS_PER_SECOND,
        r => r,
    };
    let b = unsafe { &mut *b };
    let burst = EVENTS_BURST * 1000;
    let elapsed = now.wrapping_sub(b.last_ns).min(1_000_000_000_000);
    // milli-tokens earned: rate per second = rate milli-tokens per ms.
    let earned = elapsed / 1_000_000 * rate;
    let tokens = (b.milli_tokens + earned).min(burst);
    if earned > 0 || b.last_ns == 0 {
        b.last_ns = now;
    }
    if tokens < 1000 {
        b.milli_tokens = tokens;
        return false;
    }
    b.milli_tokens = tokens - 1000;
    true
}

/// One event for a dropped or audited packet, within the workload's rate
/// limit; what the limit holds back is counted.
#[inline(always)]
pub fn event(workload: u32, verdict: u8, reason: u8, f: &Flow, bytes: u64, layer: u8) {
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if !admit(workload, now) {
        if let Some(n) = TG_EVENTS_SUPPRESSED.get_ptr_mut(workload) {
            unsafe { *n += 1 };
        }
        return;
    }
    let Some(mut e) = TG_EVENTS.reserve::<FlowEvent>(0) else {
        if let Some(n) = TG_EVENTS_SUPPRESSED.get_ptr_mut(workload) {
            unsafe { *n += 1 };
        }
        return;
    };
    let mut src = f.src;
    if src == [0; 16] {
        // A refusal at connect()/sendmsg(): the pod's own address.
        if let Some(a) = unsafe { TG_ADDRS.get(workload) } {
            if f.family == FAMILY_V4 && a.has_v4 != 0 {
                src[..4].copy_from_slice(&a.v4);
            } else if f.family != FAMILY_V4 && a.has_v6 != 0 {
                src = a.v6;
            }
        }
    }
    e.write(FlowEvent {
        time_ns: now,
        workload,
        bytes: bytes as u32,
        layer,
        verdict,
        reason,
        family: f.family,
        proto: f.proto,
        _pad: 0,
        sport: f.sport,
        dport: f.dport,
        _pad2: [0; 6],
        src,
        dst: f.dst,
    });
    e.submit(0);
}

/// Counts a decision and, for what enforce drops or audit reports, sends
/// an event.
#[inline(always)]
pub fn record(entry: &CgroupEntry, d: &Decision, f: &Flow, bytes: u64) -> u8 {
    record_at(entry, d, f, bytes, LAYER_CGROUP_EGRESS)
}

/// [`record`] for the layer `layer`.
#[inline(always)]
pub fn record_at(entry: &CgroupEntry, d: &Decision, f: &Flow, bytes: u64, layer: u8) -> u8 {
    let v = verdict(entry, d);
    count(entry.workload, v, d.reason, bytes);
    if v != VERDICT_ALLOW {
        event(entry.workload, v, d.reason, f, bytes, layer);
    }
    v
}

