//! The pure policy compiler: a [`Snapshot`] of cluster objects in, the
//! [`DesiredState`] of the datapath out. No I/O; the same input always
//! gives the same output, whatever the order of the objects.
//!
//! - [`mode`]: enforcement mode per namespace;
//! - [`gateways`], [`dns`]: the global policy (rules 1 and 2);
//! - [`workloads`]: the pods of this node; [`sidecar`]: sidecar detection;
//! - [`rules`]: per-workload rules ([`network_policy`] (rule 3) or the
//!   cluster CIDRs (rule 4); mesh rules (5) to come);
//! - [`trie`]: flattening into longest-prefix entries;
//! - [`policy_ids`]: stable content-derived policy ids.
pub mod dns;
pub mod gateways;
pub mod ips;
pub mod mode;
pub mod network_policy;
pub mod objects;
pub mod policy_ids;
pub mod rules;
pub mod selectors;
pub mod sidecar;
pub mod trie;
pub mod workloads;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use agent_common::POLICY_GLOBAL;
use ipnet::IpNet;
use tracing::debug;

use crate::desired::{AllowRule, DesiredState, Diagnostic, Mode, Severity, TrieEntry};
use crate::model::{ObjectRef, Snapshot};

/// How to compile: which node's pods, and which ranges are "inside the
/// cluster" (pod and service CIDRs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompilerConfig {
    /// Only pods with this `spec.nodeName`; every pod when `None`.
    pub node_name: Option<String>,
    pub cluster_cidrs: Vec<IpNet>,
}

/// Name of the global policy in diagnostics.
pub const GLOBAL_POLICY_OWNER: &str = "global policy (gateways and cluster DNS)";

/// Compilation state: the input and the diagnostics found so far.
pub(crate) struct Ctx<'a> {
    pub snapshot: &'a Snapshot,
    pub config: &'a CompilerConfig,
    pub diags: Vec<Diagnostic>,
}

impl Ctx<'_> {
    pub fn report(
        &mut self,
        severity: Severity,
        object: &ObjectRef,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.diags.push(Diagnostic {
            severity,
            object: object.to_string(),
            field: field.into(),
            message: message.into(),
            source: self.snapshot.source_of(object).map(str::to_owned),
        });
    }
}

/// Compile `snapshot` into the desired datapath state.
pub fn compile(snapshot: &Snapshot, config: &CompilerConfig) -> DesiredState {
    let mut ctx = Ctx {
        snapshot,
        config,
        diags: Vec::new(),
    };
    let modes = mode::namespace_modes(&mut ctx);
    let gateway_pods = gateways::gateway_pods(snapshot);

    let mut global = gateways::gateway_rules(&mut ctx, &gateway_pods);
    global.extend(dns::dns_rules(&mut ctx));
    let mut policies: BTreeMap<u32, Vec<TrieEntry>> = BTreeMap::new();
    policies.insert(
        POLICY_GLOBAL,
        trie::flatten(&global, GLOBAL_POLICY_OWNER, &mut ctx.diags),
    );

    let mut locals = workloads::local_workloads(&mut ctx, &modes, &gateway_pods);

    // Workloads with the same rules share one flattening and one id.
    let mut network_policies = network_policy::NetworkPolicies::new(&ctx);
    let mut groups: BTreeMap<Vec<AllowRule>, Vec<usize>> = BTreeMap::new();
    let mut cluster_internal = 0usize;
    for (i, local) in locals.iter().enumerate() {
        if local.is_policed() {
            let mut found = rules::workload_rules(&mut ctx, &mut network_policies, local.pod);
            cluster_internal += usize::from(found.cluster_internal);
            found.rules.sort();
            found.rules.dedup();
            groups.entry(found.rules).or_default().push(i);
        }
    }
    let mut flattened = Vec::with_capacity(groups.len());
    let mut members = Vec::with_capacity(groups.len());
    for (rules, group) in groups {
        let owner = group_owner(&locals, &group);
        flattened.push(trie::flatten(&rules, &owner, &mut ctx.diags));
        members.push(group);
    }
    let ids = policy_ids::assign_ids(&flattened);
    for ((entries, group), id) in flattened.into_iter().zip(members).zip(ids) {
        for i in group {
            if let Some(local) = locals.get_mut(i) {
                local.workload.policy = id;
            }
        }
        policies.insert(id, entries);
    }

    if cluster_internal > 0 && config.cluster_cidrs.is_empty() {
        ctx.diags.push(Diagnostic {
            severity: Severity::Warning,
            object: "agent configuration".to_owned(),
            field: "--cluster-cidr".to_owned(),
            message: format!(
                "no cluster CIDRs are configured while {cluster_internal} enforced or audited pods rely on them (no egress NetworkPolicy selects them): only gateways and cluster DNS will be reachable from them"
            ),
            source: None,
        });
    }

    let workloads = locals
        .into_iter()
        .map(|l| (l.workload.uid.clone(), l.workload))
        .collect();
    let mut diagnostics = ctx.diags;
    diagnostics.sort();
    diagnostics.dedup();
    debug!(
        policies = policies.len(),
        diagnostics = diagnostics.len(),
        "compiled desired state"
    );
    DesiredState {
        workloads,
        policies,
        diagnostics,
    }
}

/// Name of a group of workloads sharing a policy, for diagnostics.
fn group_owner(locals: &[workloads::LocalWorkload<'_>], group: &[usize]) -> String {
    let first = group
        .first()
        .and_then(|i| locals.get(*i))
        .map(|l| format!("Pod {}/{}", l.workload.namespace, l.workload.name))
        .unwrap_or_else(|| "workload policy".to_owned());
    match group.len() {
        0 | 1 => first,
        n => format!("{first} (and {} other pods with the same rules)", n - 1),
    }
}

/// Mode of a namespace as compiled (for callers such as `verify`).
pub fn namespace_mode(snapshot: &Snapshot, namespace: &str) -> Mode {
    let config = CompilerConfig::default();
    let mut ctx = Ctx {
        snapshot,
        config: &config,
        diags: Vec::new(),
    };
    mode::mode_of(&mode::namespace_modes(&mut ctx), namespace)
}
