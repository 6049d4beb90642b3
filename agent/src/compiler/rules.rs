//! The allow rules of one enforced (or audited) workload, beyond the
//! node-wide gateway and DNS rules of the global policy.
//!
//! Rule 3 of the contract (NetworkPolicies with `Egress` that select the
//! pod) replaces rule 4 (the cluster CIDRs, which `MESH_INTERNAL`
//! ServiceEntry addresses join); rule 5 (OSM `Egress` policies for the
//! pod's ServiceAccount) adds to either. Services are judged later, on
//! the flattened rules ([`super::service_judge`]).
use std::collections::HashMap;

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
    /// The workload's rule set: a position in [`RuleSets::sets`].
    pub set: usize,
    /// Rule 4 applies (no egress NetworkPolicy selects the pod).
    pub cluster_internal: bool,
    /// Egress NetworkPolicies selecting the pod (`namespace/name`).
    pub network_policies: Vec<String>,
    /// OSM Egress policies granting the pod (`namespace/name`).
    pub mesh_egress: Vec<String>,
}

/// What a workload's rules depend on: workloads with the same key have
/// the same rules, computed (and sorted) once.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct SetKey {
    /// The NetworkPolicies that allow something to the pod (rule 3), or
    /// the pod's namespace when none selects it (rule 4).
    selected: Result<Vec<usize>, String>,
    /// The OSM Egress grants to the pod (rule 5).
    grants: Vec<usize>,
}

/// The distinct rule sets of the workloads, each sorted and without
/// duplicates.
#[derive(Default)]
pub(crate) struct RuleSets {
    known: HashMap<SetKey, usize>,
    pub sets: Vec<Vec<PolicyRule>>,
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
    sets: &mut RuleSets,
    pod: &Pod,
) -> WorkloadRules {
    let selection = policies.select(pod);
    let grants = egress.grants_for(pod);
    let key = SetKey {
        selected: match &selection {
            Some(s) => Ok(s.allowing.clone()),
            None => Err(namespace(&pod.metadata).to_owned()),
        },
        grants,
    };
    let known = sets.known.get(&key).copied();
    let network_rules = match &selection {
        // Computed once per policy; checked for every pod, which is
        // reported when over the limit.
        Some(selected) => match policies.total(ctx, &selected.allowing) {
            total if total > MAX_WORKLOAD_RULES => {
                ctx.report(
                    Severity::Error,
                    &pod_ref(pod),
                    "egress rules",
                    format!(
                        "the egress NetworkPolicies selecting this pod ({}) expand to {total} rules, more than the limit of {MAX_WORKLOAD_RULES}; the pod may reach only gateways and cluster DNS (fail closed)",
                        selected.names.join(", ")
                    ),
                );
                Some(Vec::new())
            }
            _ => known.is_none().then(|| policies.rules_of(&selected.allowing).cloned().map(PolicyRule::from).collect()),
        },
        None => known.is_none().then(|| cluster_internal.rules_for(namespace(&pod.metadata))),
    };
    let set = match (known, network_rules) {
        (Some(set), _) => set,
        (None, rules) => {
            let mut rules: Vec<PolicyRule> = rules.unwrap_or_default();
            rules.extend(egress.rules_of(&key.grants));
            rules.sort();
            rules.dedup();
            sets.sets.push(rules);
            let set = sets.sets.len() - 1;
            sets.known.insert(key.clone(), set);
            set
        }
    };
    WorkloadRules {
        set,
        cluster_internal: selection.is_none(),
        mesh_egress: egress.names_of(&key.grants),
        network_policies: selection.map(|s| s.names).unwrap_or_default(),
    }
}
