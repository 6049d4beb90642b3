//! Counters of workloads that are gone move to the node bucket.
use agent_common::{CounterKey, CounterValue};
use aya::maps::PerCpuValues;

use super::{
    ids::RETIRED_WORKLOAD,
    pinned::{map_err, Maps},
    DatapathError,
};

/// Moves the counters of a workload that is gone into the retired bucket,
/// so node totals never go backwards.
pub fn retire(maps: &mut Maps, id: u32) -> Result<(), DatapathError> {
    let keys: Vec<CounterKey> = maps
        .counters
        .keys()
        .filter_map(Result::ok)
        .filter(|k| k.workload == id)
        .collect();
    for key in keys {
        let Ok(gone) = maps.counters.get(&key, 0) else { continue };
        let retired_key = CounterKey { workload: RETIRED_WORKLOAD, ..key };
        let prev = maps.counters.get(&retired_key, 0).ok();
        let summed: Vec<CounterValue> = gone
            .iter()
            .enumerate()
            .map(|(cpu, v)| {
                let p = prev.as_ref().map(|p| p[cpu]).unwrap_or_default();
                CounterValue { packets: p.packets + v.packets, bytes: p.bytes + v.bytes }
            })
            .collect();
        let values = PerCpuValues::try_from(summed)
            .map_err(|e| DatapathError::io("summing retired counters", e))?;
        maps.counters.insert(retired_key, values, 0).map_err(map_err("TG_COUNTERS"))?;
        let _ = maps.counters.remove(&key);
    }
    Ok(())
}
