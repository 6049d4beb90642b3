//! Workload ids: small integers that key the counters. They are kept in
//! `TG_WORKLOADS` with the pod's name, so a restarted agent gives each pod
//! the id it had (and its counters continue), and the read-only commands
//! can name pods while the agent is down.
use std::collections::{BTreeMap, BTreeSet};

use agent_common::{WorkloadInfo, NAMESPACE_MAX, POD_NAME_MAX, UID_MAX};


/// Workload id 0 collects the counters of pods that are gone, so that node
/// totals never go backwards.
pub const RETIRED_WORKLOAD: u32 = 0;
pub const MAX_WORKLOAD_ID: u32 = agent_common::map_sizes::WORKLOADS;

/// Cgroup ids at and above this never name a real cgroup: the agent
/// registers one per workload so that `verify` (and the TC layer) can name
/// any workload to the kernel programs.
pub const VERIFY_CGROUP_BASE: u64 = agent_common::WORKLOAD_CGROUP_BASE;

pub fn verify_cgroup(workload: u32) -> u64 {
    VERIFY_CGROUP_BASE | workload as u64
}

/// Assigns ids: pods keep the id they have; new pods get the lowest free
/// id below `max_id`. `existing` maps pod UID to id. Pods left without an
/// id (no room) come back second: they are not registered (fail closed).
pub fn assign<'a>(
    existing: &BTreeMap<String, u32>,
    wanted: impl IntoIterator<Item = &'a str>,
    max_id: u32,
) -> (BTreeMap<String, u32>, Vec<String>) {
    let wanted: Vec<&str> = wanted.into_iter().collect();
    let mut used: BTreeSet<u32> = existing.values().copied().collect();
    used.insert(RETIRED_WORKLOAD);
    let mut out = BTreeMap::new();
    let mut left = Vec::new();
    let mut next = 1u32;
    for uid in wanted {
        if let Some(id) = existing.get(uid) {
            out.insert(uid.to_string(), *id);
            continue;
        }
        while used.contains(&next) {
            next += 1;
        }
        if next >= max_id {
            left.push(uid.to_string());
            continue;
        }
        used.insert(next);
        out.insert(uid.to_string(), next);
    }
    (out, left)
}

fn put(dst: &mut [u8], s: &str) -> usize {
    let n = s.len().min(dst.len());
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
    n
}

pub fn encode(namespace: &str, name: &str, uid: &str, mode: u8, flags: u8, verify_key: u64) -> WorkloadInfo {
    let mut w = WorkloadInfo { pod_cgroup: verify_key, mode, flags, ..Default::default() };
    w.namespace_len = put(&mut w.namespace, namespace) as u8;
    w.name_len = put(&mut w.name, name) as u16;
    w.uid_len = put(&mut w.uid, uid) as u8;
    w
}

/// (namespace, name, uid) of a stored workload.
pub fn decode(w: &WorkloadInfo) -> (String, String, String) {
    let s = |b: &[u8], n: usize, max: usize| String::from_utf8_lossy(&b[..n.min(max)]).into_owned();
    (
        s(&w.namespace, w.namespace_len as usize, NAMESPACE_MAX),
        s(&w.name, w.name_len as usize, POD_NAME_MAX),
        s(&w.uid, w.uid_len as usize, UID_MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_existing_ids_and_fills_gaps() {
        let existing: BTreeMap<String, u32> =
            [("a".to_string(), 1), ("c".to_string(), 3)].into_iter().collect();
        let (got, _) = assign(&existing, ["a", "b", "c", "d"], MAX_WORKLOAD_ID);
        assert_eq!(got["a"], 1);
        assert_eq!(got["c"], 3);
        assert_eq!(got["b"], 2);
        assert_eq!(got["d"], 4);
    }

    #[test]
    fn never_hands_out_the_retired_id() {
        let (got, _) = assign(&BTreeMap::new(), ["x"], MAX_WORKLOAD_ID);
        assert_eq!(assign(&BTreeMap::new(), ["x", "y"], 2).1, vec!["y".to_string()]);
        assert_eq!(got["x"], 1);
    }

    #[test]
    fn names_round_trip_and_truncate() {
        let long = "p".repeat(400);
        let w = encode("ns", &long, "uid-1", 1, 0, 7);
        let (ns, name, uid) = decode(&w);
        assert_eq!(ns, "ns");
        assert_eq!(name.len(), POD_NAME_MAX);
        assert_eq!(uid, "uid-1");
        assert_eq!(w.pod_cgroup, 7);
    }
}
