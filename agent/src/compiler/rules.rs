//! The allow rules of one enforced (or audited) workload, beyond the
//! node-wide gateway and DNS rules of the global policy.
//!
//! Rule 3 of the contract (NetworkPolicies with `Egress` that select the
//! pod) replaces rule 4 (the cluster CIDRs); rule 5 (mesh egress policy)
//! will add to either here.
use agent_common::{PortRule, REASON_CLUSTER_INTERNAL};
use k8s_openapi::api::core::v1::Pod;

use crate::desired::AllowRule;

use super::network_policy::NetworkPolicies;
use super::Ctx;

/// The rules of one workload.
pub(crate) struct WorkloadRules {
    /// In no particular order (the trie flattening canonicalises them).
    pub rules: Vec<AllowRule>,
    /// Rule 4 applies (no egress NetworkPolicy selects the pod).
    pub cluster_internal: bool,
}

pub(crate) fn workload_rules<'a>(
    ctx: &mut Ctx<'a>,
    policies: &mut NetworkPolicies<'a>,
    pod: &Pod,
) -> WorkloadRules {
    match policies.rules_for(ctx, pod) {
        Some(rules) => WorkloadRules {
            rules,
            cluster_internal: false,
        },
        None => WorkloadRules {
            rules: cluster_internal_rules(ctx),
            cluster_internal: true,
        },
    }
}

/// Rule 4: everything inside the cluster CIDRs, on every port.
fn cluster_internal_rules(ctx: &Ctx<'_>) -> Vec<AllowRule> {
    ctx.config
        .cluster_cidrs
        .iter()
        .map(|net| AllowRule {
            net: net.trunc(),
            except: Vec::new(),
            rule: PortRule::any(REASON_CLUSTER_INTERNAL),
        })
        .collect()
}
