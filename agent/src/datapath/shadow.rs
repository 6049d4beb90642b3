//! What the maps hold, kept in memory between applies (read from the maps
//! once, when the agent starts), so that an apply costs work in proportion
//! to what changed, not to the size of the maps.
use std::collections::BTreeMap;

use agent_common::{CgroupEntry, PodAddrs, RuleSet, WorkloadInfo};
use ipnet::IpNet;

use super::{
    pinned::{map_err, Maps},
    rule_keys, DatapathError,
};

/// The entries of one policy id.
pub type PolicyContent = BTreeMap<IpNet, RuleSet>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shadow {
    /// Rule entries by policy id (the content of each id is recovered
    /// from the rule maps, so ids survive agent restarts).
    pub policies: BTreeMap<u32, PolicyContent>,
    pub cgroups: BTreeMap<u64, CgroupEntry>,
    pub workloads: BTreeMap<u32, WorkloadInfo>,
    pub addrs: BTreeMap<u32, PodAddrs>,
}

impl Shadow {
    /// Reads every map the reconciler writes (once, at start).
    pub fn read(maps: &Maps) -> Result<Shadow, DatapathError> {
        let mut s = Shadow::default();
        for item in maps.rules_v4.iter() {
            let (k, v) = item.map_err(map_err("TG_RULES_V4"))?;
            if let Some((policy, net)) = rule_keys::decode_v4(&k) {
                s.policies.entry(policy).or_default().insert(net, v);
            }
        }
        for item in maps.rules_v6.iter() {
            let (k, v) = item.map_err(map_err("TG_RULES_V6"))?;
            if let Some((policy, net)) = rule_keys::decode_v6(&k) {
                s.policies.entry(policy).or_default().insert(net, v);
            }
        }
        for item in maps.cgroups.iter() {
            let (k, v) = item.map_err(map_err("TG_CGROUPS"))?;
            s.cgroups.insert(k, v);
        }
        for item in maps.workloads.iter() {
            let (k, v) = item.map_err(map_err("TG_WORKLOADS"))?;
            s.workloads.insert(k, v);
        }
        for item in maps.addrs.iter() {
            let (k, v) = item.map_err(map_err("TG_ADDRS"))?;
            s.addrs.insert(k, v);
        }
        Ok(s)
    }

    /// Entries of the rule maps, (IPv4, IPv6).
    pub fn rule_entries(&self) -> (usize, usize) {
        let mut out = (0, 0);
        for content in self.policies.values() {
            for net in content.keys() {
                if net.addr().is_ipv4() {
                    out.0 += 1;
                } else {
                    out.1 += 1;
                }
            }
        }
        out
    }
}
