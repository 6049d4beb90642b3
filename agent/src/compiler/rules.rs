//! The allow rules of one enforced (or audited) workload, beyond the
//! node-wide gateway and DNS rules of the global policy.
//!
//! Rule 3 of the contract (NetworkPolicies with `Egress` that select the
//! pod) replaces rule 4 (the cluster CIDRs, which `MESH_INTERNAL`
//! ServiceEntry addresses join); rule 5 (OSM `Egress` policies for the
//! pod's ServiceAccount) adds to either. Services are judged later, on
//! the flattened rules ([`super::service_judge`]).
use agent_common::{PortRule, REASON_CLUSTER_INTERNAL};
use k8s_openapi::api::core::v1::Pod;

use crate::desired::Severity;

use super::limits::MAX_WORKLOAD_RULES;
use super::network_policy::NetworkPolicies;
use super::objects::{namespace, pod_ref};
use super::osm_egress::EgressPolicies;
use super::policy::PolicyRule;
use super::service_entries::MeshInternalRule;
use super::Ctx;

/// The rules of one workload.
pub(crate) struct WorkloadRules {
    /// In no particular order (the caller sorts them).
    pub rules: Vec<PolicyRule>,
    /// Rule 4 applies (no egress NetworkPolicy selects the pod).
    pub cluster_internal: bool,
    /// Egress NetworkPolicies selecting the pod (`namespace/name`).
    pub network_policies: Vec<String>,
    /// OSM Egress policies granting the pod (`namespace/name`).
    pub mesh_egress: Vec<String>,
}

/// What the cluster-internal rule (rule 4) covers: the cluster CIDRs and
/// the `MESH_INTERNAL` ServiceEntry addresses visible in the pod's
/// namespace.
pub(crate) struct ClusterInternal {
    cidrs: Vec<PolicyRule>,
    mesh_internal: Vec<MeshInternalRule>,
}

impl ClusterInternal {
    pub fn new(ctx: &Ctx<'_>, mesh_internal: Vec<MeshInternalRule>) -> Self {
        let cidrs = ctx
            .config
            .cluster_cidrs
            .iter()
            .map(|net| PolicyRule::net(net.trunc(), PortRule::any(REASON_CLUSTER_INTERNAL), format!("cluster CIDR {}", net.trunc())))
            .collect();
        Self { cidrs, mesh_internal }
    }

    /// The rules for a pod of namespace `ns`.
    pub fn rules_for(&self, ns: &str) -> Vec<PolicyRule> {
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
        Some(selected) => {
            if let Some(total) = selected.too_many {
                ctx.report(
                    Severity::Error,
                    &pod_ref(pod),
                    "egress rules",
                    format!(
                        "the egress NetworkPolicies selecting this pod ({}) expand to {total} rules, more than the limit of {MAX_WORKLOAD_RULES}; the pod may reach only gateways and cluster DNS (fail closed)",
                        selected.names.join(", ")
                    ),
                );
            }
            (selected.rules.into_iter().map(PolicyRule::from).collect(), selected.names, false)
        }
        None => (cluster_internal.rules_for(namespace(&pod.metadata)), Vec::new(), true),
    };
    let (mesh_rules, mesh_egress) = egress.rules_for(pod);
    rules.extend(mesh_rules);
    WorkloadRules { rules, cluster_internal: is_cluster_internal, network_policies, mesh_egress }
}
