//! Writes the desired state into the maps, touching only what changed.
//!
//! Order matters so that no packet ever sees a half-applied state:
//! 1. rule entries of every wanted policy are written (new policies exist
//!    before any workload points at them);
//! 2. workload names, then cgroup entries are written (each cgroup switches
//!    to its new policy in one atomic update);
//! 3. only then are stale cgroup entries and rule entries removed.
use std::collections::{BTreeMap, BTreeSet};

use agent_common::{CgroupEntry, CounterKey, CounterValue, RuleSet};
use aya::maps::PerCpuValues;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::{
    ids::{self, verify_cgroup, RETIRED_WORKLOAD},
    pinned::{map_err, Maps},
    rule_keys::{self, RuleKey},
    DatapathError,
};
use crate::{cgroups::CgroupIndex, desired::DesiredState};

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApplyReport {
    pub rules_written: usize,
    pub rules_removed: usize,
    pub cgroups_written: usize,
    pub cgroups_removed: usize,
    pub workloads_written: usize,
    pub workloads_retired: usize,
}

impl ApplyReport {
    pub fn changed(&self) -> bool {
        *self != ApplyReport::default()
    }
}

/// A workload as registered: its id and how many cgroups were found.
#[derive(Debug, Clone, Serialize)]
pub struct Registered {
    pub id: u32,
    pub cgroups: usize,
}

pub fn apply(
    maps: &mut Maps,
    desired: &DesiredState,
    cgroups: &CgroupIndex,
) -> Result<(ApplyReport, BTreeMap<String, Registered>), DatapathError> {
    let mut report = ApplyReport::default();

    // Existing workload ids.
    let mut existing: BTreeMap<String, u32> = BTreeMap::new();
    let mut stored_info = BTreeMap::new();
    for item in maps.workloads.iter() {
        let (id, info) = item.map_err(map_err("TG_WORKLOADS"))?;
        let (_, _, uid) = ids::decode(&info);
        existing.insert(uid, id);
        stored_info.insert(id, info);
    }
    let assigned = ids::assign(&existing, desired.workloads.keys().map(String::as_str))?;

    // 1. Rules.
    let mut want_v4: BTreeMap<(u32, IpNet), RuleSet> = BTreeMap::new();
    let mut want_v6: BTreeMap<(u32, IpNet), RuleSet> = BTreeMap::new();
    for (policy, entries) in &desired.policies {
        for e in entries {
            let net = e.net.trunc();
            match net {
                IpNet::V4(_) => want_v4.insert((*policy, net), e.rules),
                IpNet::V6(_) => want_v6.insert((*policy, net), e.rules),
            };
        }
    }
    let mut have_v4 = BTreeMap::new();
    for item in maps.rules_v4.iter() {
        let (k, v) = item.map_err(map_err("TG_RULES_V4"))?;
        if let Some(pn) = rule_keys::decode_v4(&k) {
            have_v4.insert(pn, v);
        }
    }
    let mut have_v6 = BTreeMap::new();
    for item in maps.rules_v6.iter() {
        let (k, v) = item.map_err(map_err("TG_RULES_V6"))?;
        if let Some(pn) = rule_keys::decode_v6(&k) {
            have_v6.insert(pn, v);
        }
    }
    for ((policy, net), rules) in want_v4.iter().chain(want_v6.iter()) {
        let have = if net.addr().is_ipv4() { &have_v4 } else { &have_v6 };
        if have.get(&(*policy, *net)) == Some(rules) {
            continue;
        }
        write_rule(maps, *policy, net, rules)?;
        report.rules_written += 1;
    }

    // 2. Workloads and cgroups.
    let mut registered = BTreeMap::new();
    let mut want_cg: BTreeMap<u64, CgroupEntry> = BTreeMap::new();
    for (uid, w) in &desired.workloads {
        let id = assigned[uid];
        let info = ids::encode(&w.namespace, &w.name, uid, w.mode.as_u8(), w.flags, verify_cgroup(id));
        if stored_info.get(&id) != Some(&info) {
            maps.workloads.insert(id, info, 0).map_err(map_err("TG_WORKLOADS"))?;
            report.workloads_written += 1;
        }
        let entry = CgroupEntry {
            workload: id,
            policy: w.policy,
            mode: w.mode.as_u8(),
            flags: w.flags,
            _pad: [0; 6],
        };
        let found = cgroups.all_ids(uid);
        registered.insert(uid.clone(), Registered { id, cgroups: found.len() });
        want_cg.insert(verify_cgroup(id), entry);
        for cg in found {
            want_cg.insert(cg, entry);
        }
    }
    let mut have_cg = BTreeMap::new();
    for item in maps.cgroups.iter() {
        let (k, v) = item.map_err(map_err("TG_CGROUPS"))?;
        have_cg.insert(k, v);
    }
    for (cg, entry) in &want_cg {
        if have_cg.get(cg) != Some(entry) {
            maps.cgroups.insert(*cg, *entry, 0).map_err(map_err("TG_CGROUPS"))?;
            report.cgroups_written += 1;
        }
    }

    // 3. Removals.
    for cg in have_cg.keys().filter(|k| !want_cg.contains_key(k)) {
        // A cgroup that vanished meanwhile is already gone: not an error.
        let _ = maps.cgroups.remove(cg);
        report.cgroups_removed += 1;
    }
    for (policy, net) in have_v4.keys().chain(have_v6.keys()) {
        let wanted = if net.addr().is_ipv4() { &want_v4 } else { &want_v6 };
        if !wanted.contains_key(&(*policy, *net)) {
            remove_rule(maps, *policy, net);
            report.rules_removed += 1;
        }
    }
    let live: BTreeSet<u32> = assigned.values().copied().collect();
    for id in stored_info.keys().filter(|id| !live.contains(id)) {
        retire(maps, *id)?;
        let _ = maps.workloads.remove(id);
        report.workloads_retired += 1;
    }
    if report.changed() {
        debug!(?report, "datapath updated");
    }
    Ok((report, registered))
}

fn write_rule(maps: &mut Maps, policy: u32, net: &IpNet, rules: &RuleSet) -> Result<(), DatapathError> {
    match rule_keys::key(policy, net) {
        RuleKey::V4(k) => maps.rules_v4.insert(&k, *rules, 0).map_err(map_err("TG_RULES_V4")),
        RuleKey::V6(k) => maps.rules_v6.insert(&k, *rules, 0).map_err(map_err("TG_RULES_V6")),
    }
}

fn remove_rule(maps: &mut Maps, policy: u32, net: &IpNet) {
    let _ = match rule_keys::key(policy, net) {
        RuleKey::V4(k) => maps.rules_v4.remove(&k),
        RuleKey::V6(k) => maps.rules_v6.remove(&k),
    };
}

/// Moves the counters of a workload that is gone into the retired bucket,
/// so node totals never go backwards.
fn retire(maps: &mut Maps, id: u32) -> Result<(), DatapathError> {
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
