//! Applying the desired state: a pure [`plan`](super::plan) of writes
//! against the shadow of the maps (kept in [`Maps`] between applies), then
//! the writes, through a [`Writer`]. A write the kernel refuses (a full
//! map) opens nothing: the pods it concerns fail closed, the rest of the
//! apply goes on, and the report names the map.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use agent_common::{
    CgroupEntry, PodAddrs, FLAG_FAIL_CLOSED, FLAG_UNCLASSIFIED, META_GENERATION, MODE_ENFORCE, MODE_OFF, POLICY_GLOBAL,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::{
    ids,
    pinned::{map_err, Maps},
    plan::{plan, Plan},
    shadow::Shadow,
    writer::{MapsWriter, Write, Writer},
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
    /// Maps that refused an insert because they are full (for status and
    /// `tollgate_map_insert_failures_total`).
    #[serde(default)]
    pub full_maps: Vec<String>,
    /// Refused writes by map.
    #[serde(default)]
    pub insert_failures: BTreeMap<String, u64>,
    /// Pods (namespace/name) that fail closed because their state could
    /// not be written.
    #[serde(default)]
    pub fail_closed: Vec<String>,
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
/// Registers `id` as always allowed at once, before the first apply: a
/// new agent pod's cgroup is unclassified (denied) until an apply
/// classifies it, and the agent needs the network to reach its source
/// first. The next apply keeps it (it is in `ApplyInputs::always_allowed`).
///
/// Written as bytes, so that it works on the map of another layout too:
/// during an upgrade across a `TG_CGROUPS` layout change the old programs
/// (with the old map) enforce until the new agent has synced and applied,
/// and the new agent must reach its source meanwhile. An all-zero entry
/// means "not enforced" in every layout (`agent_common::CgroupEntry`).
pub fn allow_now(pins: &super::bpffs::PinDir, id: u64) -> Result<(), DatapathError> {
    let map = super::raw_map::RawMap::open(&pins.map(agent_common::map_names::CGROUPS))?;
    let value = vec![0u8; map.layout.value_size as usize];
    map.set(&id.to_ne_bytes(), &value, 0)
        .map_err(|e| DatapathError::io(format!("allowing cgroup {id} in {}", pins.map(agent_common::map_names::CGROUPS).display()), e))
}

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

/// Plans against the shadow (read from the maps on the first call) and
/// writes. The shadow follows every write that succeeded.
pub fn apply_with(
    maps: &mut Maps,
    desired: &DesiredState,
    cgroups: &CgroupIndex,
    inputs: &ApplyInputs,
) -> Result<(ApplyReport, BTreeMap<String, Registered>), DatapathError> {
    let mut shadow = match maps.shadow.take() {
        Some(s) => s,
        None => Shadow::read(maps)?,
    };
    let max_id = maps.max_workload_id()?;
    let p = plan(desired, cgroups, inputs, &shadow, max_id);
    let report = execute(&p, desired, &mut MapsWriter(maps), &mut shadow);
    maps.shadow = Some(shadow);
    if report.changed() {
        // Verdicts cached with sockets were decided under the old state.
        bump_generation(maps)?;
    }
    if report.changed() {
        debug!(?report, "datapath updated");
    }
    if !report.full_maps.is_empty() {
        warn!(maps = ?report.full_maps, pods = ?report.fail_closed, "maps full: the affected pods fail closed");
    }
    Ok((report, p.registered))
}

/// Carries out a plan. A refused rule write breaks its policy id: pods
/// that were to use it get a fail-closed entry instead; a refused name
/// or address write does the same for its pod; a refused cgroup write leaves the
/// cgroup to its nearest marker (unclassified, denied).
pub fn execute(p: &Plan, desired: &DesiredState, writer: &mut dyn Writer, shadow: &mut Shadow) -> ApplyReport {
    let mut report = ApplyReport::default();
    let mut broken_policies: BTreeSet<u32> = BTreeSet::new();
    let mut broken_pods: BTreeSet<String> = p.unassigned.iter().cloned().collect();
    let mut full: BTreeSet<String> = BTreeSet::new();
    if !p.unassigned.is_empty() {
        full.insert("TG_WORKLOADS".to_string());
        *report.insert_failures.entry("TG_WORKLOADS".to_string()).or_default() += p.unassigned.len() as u64;
    }
    for (w, owner) in p.writes.iter().zip(&p.owners) {
        let mut w = w.clone();
        if let Write::Cgroup { entry, .. } = &mut w {
            let pod_broken = owner.as_ref().is_some_and(|o| broken_pods.contains(o));
            if pod_broken || (entry.policy != POLICY_GLOBAL && broken_policies.contains(&entry.policy)) {
                entry.flags |= FLAG_FAIL_CLOSED;
                entry.policy = POLICY_GLOBAL;
                if let Some(o) = owner {
                    broken_pods.insert(o.clone());
                }
            }
        }
        match writer.write(&w) {
            Ok(()) => note(&w, &mut report, shadow),
            Err(e) => {
                *report.insert_failures.entry(e.map.to_string()).or_default() += 1;
                if e.full {
                    full.insert(e.map.to_string());
                }
                match &w {
                    Write::Rule { policy, .. } if *policy != POLICY_GLOBAL => {
                        broken_policies.insert(*policy);
                    }
                    Write::Workload { .. } | Write::Cgroup { .. } | Write::Addrs { .. } => {
                        if let Some(o) = owner {
                            broken_pods.insert(o.clone());
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    report.full_maps = full.into_iter().collect();
    report.fail_closed = broken_pods
        .iter()
        .map(|uid| desired.workloads.get(uid).map(|w| format!("{}/{}", w.namespace, w.name)).unwrap_or_else(|| uid.clone()))
        .collect();
    report
}

/// Follows a successful write in the shadow and the counts.
fn note(w: &Write, r: &mut ApplyReport, s: &mut Shadow) {
    match w {
        Write::Rule { policy, net, rules } => {
            s.policies.entry(*policy).or_default().insert(*net, *rules);
            r.rules_written += 1;
        }
        Write::RemoveRule { policy, net } => {
            if let Some(c) = s.policies.get_mut(policy) {
                c.remove(net);
                if c.is_empty() {
                    s.policies.remove(policy);
                }
            }
            r.rules_removed += 1;
        }
        Write::Workload { id, info } => {
            s.workloads.insert(*id, *info);
            r.workloads_written += 1;
        }
        Write::RetireWorkload { id } => {
            s.workloads.remove(id);
            r.workloads_retired += 1;
        }
        Write::Addrs { id, addrs } => {
            s.addrs.insert(*id, *addrs);
        }
        Write::RemoveAddrs { id } => {
            s.addrs.remove(id);
        }
        Write::Cgroup { id, entry } => {
            s.cgroups.insert(*id, *entry);
            r.cgroups_written += 1;
        }
        Write::RemoveCgroup { id } => {
            s.cgroups.remove(id);
            r.cgroups_removed += 1;
        }
    }
}

/// Moves the policy generation on: every verdict cached with a socket
/// is decided again on its next packet.
pub fn bump_generation(maps: &mut Maps) -> Result<u64, DatapathError> {
    let gen = maps.meta.get(&META_GENERATION, 0).map_err(map_err("TG_META"))?.wrapping_add(1);
    maps.meta.set(META_GENERATION, gen, 0).map_err(map_err("TG_META"))?;
    Ok(gen)
}

/// Entries and capacity of one map.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MapFill {
    pub map: &'static str,
    /// `None` for the maps the kernel fills itself (LRU tables): counting
    /// them means walking them.
    pub entries: Option<u64>,
    pub capacity: u64,
}

/// Fill of every map, from the shadow (no map walk): cheap enough for
/// each scrape. Before the first apply, the agent-written maps count 0.
pub fn map_fill(maps: &Maps) -> Result<Vec<MapFill>, DatapathError> {
    let s = maps.shadow.clone().unwrap_or_default();
    let (v4, v6) = s.rule_entries();
    let caps = maps.capacities()?;
    let known: BTreeMap<&str, u64> = [
        ("TG_CGROUPS", s.cgroups.len() as u64),
        ("TG_RULES_V4", v4 as u64),
        ("TG_RULES_V6", v6 as u64),
        ("TG_WORKLOADS", s.workloads.len() as u64),
        ("TG_ADDRS", s.addrs.len() as u64),
    ]
    .into_iter()
    .collect();
    Ok(caps
        .into_iter()
        .map(|(map, capacity)| MapFill { map, entries: known.get(map).copied(), capacity: capacity as u64 })
        .collect())
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;

/// Workload ids are below this (the workloads map's capacity).
pub fn workload_id_limit(capacity: u32) -> u32 {
    capacity.min(ids::MAX_WORKLOAD_ID)
}
