//! Writes the desired state into the maps, touching only what changed.
//!
//! Order matters so that no packet ever sees a half-applied state:
//! 1. rule entries of every wanted policy are written (new policies exist
//!    before any workload points at them);
//! 2. workload names, then cgroup entries are written (each cgroup switches
//!    to its new policy in one atomic update);
//! 3. only then are stale cgroup entries and rule entries removed.
use std::collections::{BTreeMap, BTreeSet};

use std::net::IpAddr;

use agent_common::{
    CgroupEntry, CounterKey, CounterValue, PodAddrs, RuleSet, FLAG_UNCLASSIFIED, MODE_ENFORCE, MODE_OFF,
};
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

/// What the node, not the cluster objects, adds to an apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyInputs {
    /// Cgroup ids never denied, whatever is above them (the agent's own).
    pub always_allowed: Vec<u64>,
    /// Each pod's own addresses, by pod UID: the kernel tells replies
    /// from forgeries and names the source of refused connections by them.
    pub addresses: BTreeMap<String, Vec<IpAddr>>,
}

/// The entry of an "always allowed" cgroup: not enforced, not counted.
pub const ALLOWED_ENTRY: CgroupEntry = CgroupEntry { workload: 0, policy: 0, mode: MODE_OFF, flags: 0, _pad: [0; 6] };
/// The entry of a marker cgroup (kubepods, QoS folders).
pub const MARKER_ENTRY: CgroupEntry =
    CgroupEntry { workload: 0, policy: 0, mode: MODE_ENFORCE, flags: FLAG_UNCLASSIFIED, _pad: [0; 6] };

/// The pod's first IPv4 and first IPv6 address.
pub fn pod_addrs(addresses: &[IpAddr]) -> PodAddrs {
    let mut a = PodAddrs::default();
    for ip in addresses {
        match ip {
            IpAddr::V4(v4) if a.has_v4 == 0 => {
                a.has_v4 = 1;
                a.v4 = v4.octets();
            }
            IpAddr::V6(v6) if a.has_v6 == 0 => {
                a.has_v6 = 1;
                a.v6 = v6.octets();
            }
            _ => {}
        }
    }
    a
}

pub fn apply(
    maps: &mut Maps,
    desired: &DesiredState,
    cgroups: &CgroupIndex,
) -> Result<(ApplyReport, BTreeMap<String, Registered>), DatapathError> {
    apply_with(maps, desired, cgroups, &ApplyInputs::default())
}

pub fn apply_with(
    maps: &mut Maps,
    desired: &DesiredState,
    cgroups: &CgroupIndex,
    inputs: &ApplyInputs,
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
    // Markers and the always-allowed cgroups, unless a pod claims them.
    for m in &cgroups.markers {
        want_cg.entry(m.id).or_insert(MARKER_ENTRY);
    }
    for id in &inputs.always_allowed {
        want_cg.insert(*id, ALLOWED_ENTRY);
    }
    // Addresses (before the cgroups switch: the kernel judges sources by them).
    let mut have_addrs = BTreeMap::new();
    for item in maps.addrs.iter() {
        let (k, v) = item.map_err(map_err("TG_ADDRS"))?;
        have_addrs.insert(k, v);
    }
    let mut want_addrs = BTreeMap::new();
    for (uid, ips) in &inputs.addresses {
        if let Some(id) = assigned.get(uid) {
            want_addrs.insert(*id, pod_addrs(ips));
        }
    }
    for (id, a) in &want_addrs {
        if have_addrs.get(id) != Some(a) {
            maps.addrs.insert(id, a, 0).map_err(map_err("TG_ADDRS"))?;
        }
    }
    for id in have_addrs.keys().filter(|k| !want_addrs.contains_key(k)) {
        let _ = maps.addrs.remove(id);
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
