//! The counters (`TG_COUNTS`, a per-CPU array of (workload, verdict,
//! reason) slots): reading them, and moving those of workloads that are
//! gone to the node bucket.
use std::collections::BTreeMap;

use agent_common::{counter_slot_meaning, CounterValue, COUNTED_WORKLOADS, COUNTER_SLOTS};
use aya::maps::PerCpuValues;

use super::{
    ids::RETIRED_WORKLOAD,
    pinned::{map_err, Maps},
    DatapathError,
};

/// (verdict, reason) → (packets, bytes).
pub type ByVerdictReason = BTreeMap<(u8, u8), (u64, u64)>;

/// The counters of one workload, summed over CPUs.
pub fn of_workload(maps: &Maps, workload: u32) -> Result<ByVerdictReason, DatapathError> {
    let mut out = BTreeMap::new();
    if workload >= COUNTED_WORKLOADS {
        return Ok(out);
    }
    for slot in 0..COUNTER_SLOTS {
        let values = maps.counters.get(&(workload * COUNTER_SLOTS + slot), 0).map_err(map_err("TG_COUNTS"))?;
        let (p, b) = values.iter().fold((0u64, 0u64), |(p, b), v| (p + v.packets, b + v.bytes));
        if p > 0 || b > 0 {
            out.insert(counter_slot_meaning(slot), (p, b));
        }
    }
    Ok(out)
}

/// Moves the counters of a workload that is gone into the node bucket
/// (workload 0), so node totals never go backwards, and zeroes its slots
/// so that a pod that gets the id later starts from nothing.
pub fn retire(maps: &mut Maps, id: u32) -> Result<(), DatapathError> {
    if id == RETIRED_WORKLOAD || id >= COUNTED_WORKLOADS {
        return Ok(());
    }
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| DatapathError::io("counting CPUs", e))?;
    let zero = || PerCpuValues::try_from(vec![CounterValue::default(); cpus]);
    for slot in 0..COUNTER_SLOTS {
        let index = id * COUNTER_SLOTS + slot;
        let gone = maps.counters.get(&index, 0).map_err(map_err("TG_COUNTS"))?;
        if gone.iter().all(|v| v.packets == 0 && v.bytes == 0) {
            continue;
        }
        let node_index = RETIRED_WORKLOAD * COUNTER_SLOTS + slot;
        let node = maps.counters.get(&node_index, 0).map_err(map_err("TG_COUNTS"))?;
        let summed: Vec<CounterValue> = gone
            .iter()
            .zip(node.iter())
            .map(|(g, n)| CounterValue { packets: g.packets + n.packets, bytes: g.bytes + n.bytes })
            .collect();
        let summed = PerCpuValues::try_from(summed).map_err(|e| DatapathError::io("summing retired counters", e))?;
        maps.counters.set(node_index, summed, 0).map_err(map_err("TG_COUNTS"))?;
        let zero = zero().map_err(|e| DatapathError::io("zeroing counters", e))?;
        maps.counters.set(index, zero, 0).map_err(map_err("TG_COUNTS"))?;
    }
    Ok(())
}
