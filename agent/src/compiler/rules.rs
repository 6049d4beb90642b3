//! The allow rules of one enforced (or audited) workload, beyond the
//! node-wide gateway and DNS rules of the global policy.
//!
//! Rule 3 of the contract (NetworkPolicies with `Egress` that select the
//! pod) replaces rule 4 (the cluster CIDRs, which `MESH_INTERNAL`
//! ServiceEntry addresses join); rule 5 (OSM `Egress` policies for the
//! pod's ServiceAccount) adds to either.
use agent_common::{PortRule, REASON_CLUSTER_INTERNAL};
use k8s_openapi::api::core::v1::Pod;

use crate::desired::AllowRule;

use super::network_policy::NetworkPolicies;
use super::objects::namespace;
use super::service_entries::MeshInternalRule;
use super::osm_egress::EgressPolicies;
use super::Ctx;

/// The rules of one workload.
pub(crate) struct WorkloadRules {
    /// In no particular order (the trie flattening canonicalises them).
    pub rules: Vec<AllowRule>,
    /// Rule 4 applies (no egress NetworkPolicy selects the pod).
    pub cluster_internal: bool,
    /// Egress NetworkPolicies selecting the pod (`namespace/name`).
    pub network_policies: Vec<String>,
    /// OSM Egress policies granting the pod (`namespace/name`).
    pub mesh_egress: Vec<String>,
}

/// What the cluster-internal rule (rule 4) covers: the cluster CIDRs and
/// the `MESH_INTERNAL` ServiceEntry addresses exported to the pod's
/// namespace.
pub(crate) struct ClusterInternal {
    cidrs: Vec<AllowRule>,
    mesh_internal: Vec<MeshInternalRule>,
}

impl ClusterInternal {
    pub fn new(ctx: &Ctx<'_>, mesh_internal: Vec<MeshInternalRule>) -> Self {
        let cidrs: Vec<AllowRule> = ctx
            .config
            .cluster_cidrs
            .iter()
            .map(|net| AllowRule {
                net: net.trunc(),
                except: Vec::new(),
                rule: PortRule::any(REASON_CLUSTER_INTERNAL),
                origin: format!("cluster CIDR {}", net.trunc()),
            })
            .collect();
        Self { cidrs, mesh_internal }
    }

    /// The rules for a pod of namespace `ns`.
    pub fn rules_for(&self, ns: &str) -> Vec<AllowRule> {
        let visible = |m: &&MeshInternalRule| m.visible_in.as_ref().is_none_or(|set| set.contains(ns));
        let mesh = self.mesh_internal.iter().filter(visible).map(|m| m.rule.clone());
        self.cidrs.iter().cloned().chain(mesh).collect()
    }
}

pub(crate) fn workload_rules<'a>(
    ctx: &mut Ctx<'a>,
    policies: &mut NetworkPolicies<'a>,
    egress: &EgressPolicies,
    cluster_internal: &ClusterInternal,
    pod: &Pod,
) -> WorkloadRules {
    let (mut rules, network_policies, is_cluster_internal) = match policies.rules_for(ctx, pod) {
        Some((rules, names)) => (rules, names, false),
        None => (cluster_internal.rules_for(namespace(&pod.metadata)), Vec::new(), true),
    };
    let (mesh_rules, mesh_egress) = egress.rules_for(pod);
    rules.extend(mesh_rules);
    WorkloadRules {
        rules,
        cluster_internal: is_cluster_internal,
        network_policies,
        mesh_egress,
    }
}
