//! The pure half of an apply: desired state and a shadow of the maps in,
//! the list of writes out, in an order that never shows a half state:
//! 1. rule entries of new policy ids (content already live keeps its id);
//! 2. addresses and workload names;
//! 3. cgroup entries (markers first; each cgroup switches to its new
//!    policy in one update);
//! 4. removals: stale cgroups, retired workloads, rules of ids no longer
//!    used.
//!
//! Policy ids are allocated here, not taken from the compiler: content
//! that is live keeps its id (across agent restarts too: the shadow is read
//! from the rule maps), new content gets an id no live policy has, and a
//! live id's entries are never rewritten with other content. Nobody can
//! make two contents share an id, whatever hash the compiler uses.
use std::collections::{BTreeMap, BTreeSet};

use agent_common::{CgroupEntry, POLICY_GLOBAL};

use super::{
    ids::{self, verify_cgroup},
    reconcile::{pod_addrs, ApplyInputs, Registered, ALLOWED_ENTRY, MARKER_ENTRY},
    shadow::{PolicyContent, Shadow},
    writer::Write,
};
use crate::{cgroups::CgroupIndex, desired::DesiredState};

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub writes: Vec<Write>,
    /// The pod (UID) each write is for, when it is for one pod.
    pub owners: Vec<Option<String>>,
    /// Compiler policy id → kernel policy id.
    pub policy_ids: BTreeMap<u32, u32>,
    pub registered: BTreeMap<String, Registered>,
    /// Pods left without a workload id (the workloads map is full): not
    /// registered, so denied as unclassified.
    pub unassigned: Vec<String>,
}

impl Plan {
    fn push(&mut self, w: Write, owner: Option<&str>) {
        self.writes.push(w);
        self.owners.push(owner.map(str::to_string));
    }
}

/// Ids in use: those with rule entries and those cgroups point at (a
/// policy that allows nothing has no entries).
fn live_ids(shadow: &Shadow) -> BTreeSet<u32> {
    let mut live: BTreeSet<u32> = shadow.policies.keys().copied().collect();
    live.extend(shadow.cgroups.values().map(|e| e.policy));
    live
}

pub fn plan(
    desired: &DesiredState,
    cgroups: &CgroupIndex,
    inputs: &ApplyInputs,
    shadow: &Shadow,
    max_workload_id: u32,
) -> Plan {
    let mut p = Plan::default();
    let empty = PolicyContent::new();

    // 1. Policies.
    let live = live_ids(shadow);
    let mut by_content: BTreeMap<&PolicyContent, u32> = BTreeMap::new();
    for id in &live {
        if *id != POLICY_GLOBAL {
            by_content.entry(shadow.policies.get(id).unwrap_or(&empty)).or_insert(*id);
        }
    }
    let mut taken = live.clone();
    let mut next_free = 1u32;
    let mut wanted_ids: BTreeSet<u32> = BTreeSet::from([POLICY_GLOBAL]);
    // The node-wide policy is updated in place: new entries now, stale
    // ones at the end (its id is fixed in the kernel programs).
    let global_want: PolicyContent = desired
        .policies
        .get(&POLICY_GLOBAL)
        .map(|entries| entries.iter().map(|e| (e.net.trunc(), e.rules)).collect())
        .unwrap_or_default();
    p.policy_ids.insert(POLICY_GLOBAL, POLICY_GLOBAL);
    let global_have = shadow.policies.get(&POLICY_GLOBAL).unwrap_or(&empty);
    for (net, rules) in &global_want {
        if global_have.get(net) != Some(rules) {
            p.push(Write::Rule { policy: POLICY_GLOBAL, net: *net, rules: *rules }, None);
        }
    }
    for (compiler_id, entries) in &desired.policies {
        if *compiler_id == POLICY_GLOBAL {
            continue;
        }
        let content: PolicyContent = entries.iter().map(|e| (e.net.trunc(), e.rules)).collect();
        let id = match by_content.get(&content) {
            Some(id) => *id,
            None => {
                while taken.contains(&next_free) {
                    next_free += 1;
                }
                let id = next_free;
                taken.insert(id);
                for (net, rules) in &content {
                    p.push(Write::Rule { policy: id, net: *net, rules: *rules }, None);
                }
                id
            }
        };
        p.policy_ids.insert(*compiler_id, id);
        wanted_ids.insert(id);
    }

    // 2. Workload ids, addresses and names.
    let existing: BTreeMap<String, u32> =
        shadow.workloads.iter().map(|(id, info)| (ids::decode(info).2, *id)).collect();
    let (assigned, unassigned) = ids::assign(&existing, desired.workloads.keys().map(String::as_str), max_workload_id);
    p.unassigned = unassigned;
    let mut want_addrs = BTreeMap::new();
    for (uid, ips) in &inputs.addresses {
        if let Some(id) = assigned.get(uid) {
            want_addrs.insert(*id, (uid.as_str(), pod_addrs(ips)));
        }
    }
    for (id, (uid, a)) in &want_addrs {
        if shadow.addrs.get(id) != Some(a) {
            p.push(Write::Addrs { id: *id, addrs: *a }, Some(uid));
        }
    }
    let mut want_cg: BTreeMap<u64, (CgroupEntry, Option<&str>)> = BTreeMap::new();
    for m in &cgroups.markers {
        want_cg.insert(m.id, (MARKER_ENTRY, None));
    }
    for (uid, w) in &desired.workloads {
        let Some(&id) = assigned.get(uid) else { continue };
        let info = ids::encode(&w.namespace, &w.name, uid, w.mode.as_u8(), w.flags, verify_cgroup(id));
        if shadow.workloads.get(&id) != Some(&info) {
            p.push(Write::Workload { id, info }, Some(uid));
        }
        let policy = p.policy_ids.get(&w.policy).copied().unwrap_or(POLICY_GLOBAL);
        let entry = CgroupEntry { workload: id, policy, mode: w.mode.as_u8(), flags: w.flags, _pad: [0; 6] };
        let found = cgroups.all_ids(uid);
        p.registered.insert(uid.clone(), Registered { id, cgroups: found.len() });
        want_cg.insert(verify_cgroup(id), (entry, Some(uid)));
        for cg in found {
            want_cg.insert(cg, (entry, Some(uid)));
        }
    }
    for id in &inputs.always_allowed {
        want_cg.insert(*id, (ALLOWED_ENTRY, None));
    }

    // 3. Cgroups, markers first (a new pod whose entry cannot be written
    // is then denied as unclassified).
    let (markers, pods): (Vec<_>, Vec<_>) = want_cg.iter().partition(|(_, (e, owner))| owner.is_none() && *e == MARKER_ENTRY);
    for (cg, (entry, owner)) in markers.into_iter().chain(pods) {
        if shadow.cgroups.get(cg) != Some(entry) {
            p.push(Write::Cgroup { id: *cg, entry: *entry }, *owner);
        }
    }

    // 4. Removals.
    for cg in shadow.cgroups.keys().filter(|k| !want_cg.contains_key(k)) {
        p.push(Write::RemoveCgroup { id: *cg }, None);
    }
    let live_workloads: BTreeSet<u32> = assigned.values().copied().collect();
    for id in shadow.workloads.keys().filter(|id| !live_workloads.contains(id)) {
        p.push(Write::RetireWorkload { id: *id }, None);
    }
    for id in shadow.addrs.keys().filter(|id| !want_addrs.contains_key(id)) {
        p.push(Write::RemoveAddrs { id: *id }, None);
    }
    for net in global_have.keys().filter(|n| !global_want.contains_key(n)) {
        p.push(Write::RemoveRule { policy: POLICY_GLOBAL, net: *net }, None);
    }
    for (id, content) in &shadow.policies {
        if !wanted_ids.contains(id) {
            for net in content.keys() {
                p.push(Write::RemoveRule { policy: *id, net: *net }, None);
            }
        }
    }
    p
}
