//! `tollgate maps` (hidden): what the pinned maps hold, in terms that do
//! not depend on ids the agent chose (workload ids, policy ids): each
//! cgroup with the pod it belongs to and the rules it gets. Two agents
//! fed the same objects (say, one from the API server and one from a
//! folder) must print the same thing.
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use agent_common::{reason_code, RuleSet, POLICY_GLOBAL};
use serde::Serialize;

use super::CliError;
use crate::datapath::{bpffs::PinDir, ids, pinned::Maps, shadow::Shadow};

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct MapsDump {
    /// The node-wide rules: prefix → rules.
    pub global: BTreeMap<String, Vec<String>>,
    /// Cgroup id → what it is.
    pub cgroups: BTreeMap<u64, CgroupDump>,
    /// `namespace/name` → the workload's record.
    pub workloads: BTreeMap<String, WorkloadDump>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct CgroupDump {
    /// `namespace/name`, or None for markers and always-allowed cgroups.
    pub workload: Option<String>,
    pub mode: u8,
    pub flags: u8,
    /// The rules of its policy (empty for policy 0).
    pub rules: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct WorkloadDump {
    pub uid: String,
    pub mode: u8,
    pub flags: u8,
    pub addresses: Vec<String>,
}

fn rules(set: &RuleSet) -> Vec<String> {
    let n = usize::from(set.count).min(set.rules.len());
    set.rules[..n]
        .iter()
        .map(|r| format!("proto {} ports {}-{} ({})", r.proto, r.port_lo, r.port_hi, reason_code(r.reason)))
        .collect()
}

fn content(shadow: &Shadow, policy: u32) -> BTreeMap<String, Vec<String>> {
    shadow
        .policies
        .get(&policy)
        .map(|c| c.iter().map(|(net, set)| (net.to_string(), rules(set))).collect())
        .unwrap_or_default()
}

/// The dump of `maps`.
pub fn dump(maps: &Maps) -> Result<MapsDump, CliError> {
    let shadow = Shadow::read(maps).map_err(|e| CliError::Environment(format!("reading the maps: {e}")))?;
    let name = |id: u32| {
        shadow.workloads.get(&id).map(|w| {
            let (ns, pod, _) = ids::decode(w);
            format!("{ns}/{pod}")
        })
    };
    let cgroups = shadow
        .cgroups
        .iter()
        // The per-workload verify entries carry the agent's own ids.
        .filter(|(id, _)| **id < ids::VERIFY_CGROUP_BASE)
        .map(|(id, e)| {
            let rules = if e.policy == POLICY_GLOBAL { BTreeMap::new() } else { content(&shadow, e.policy) };
            let workload = if e.workload == ids::RETIRED_WORKLOAD { None } else { name(e.workload) };
            (*id, CgroupDump { workload, mode: e.mode, flags: e.flags, rules })
        })
        .collect();
    let workloads = shadow
        .workloads
        .iter()
        .map(|(id, w)| {
            let (ns, pod, uid) = ids::decode(w);
            let mut addresses = Vec::new();
            if let Some(a) = shadow.addrs.get(id) {
                if a.has_v4 != 0 {
                    addresses.push(Ipv4Addr::from(a.v4).to_string());
                }
                if a.has_v6 != 0 {
                    addresses.push(Ipv6Addr::from(a.v6).to_string());
                }
            }
            (format!("{ns}/{pod}"), WorkloadDump { uid, mode: w.mode, flags: w.flags, addresses })
        })
        .collect();
    Ok(MapsDump { global: content(&shadow, POLICY_GLOBAL), cgroups, workloads })
}

pub fn run(bpffs: &Path) -> Result<(), CliError> {
    let maps = Maps::open_pinned(&PinDir::new(bpffs))?;
    let d = dump(&maps)?;
    println!("{}", serde_json::to_string_pretty(&d).unwrap_or_default());
    Ok(())
}
