//! The pure policy compiler: a [`Snapshot`] of cluster objects in, the
//! [`DesiredState`] of the datapath out. No I/O; the same input always
//! gives the same output, whatever the order of the objects.
//!
//! - [`mode`]: enforcement mode per namespace;
//! - [`gateways`], [`dns`]: the global policy (rules 1 and 2);
//! - [`workloads`]: the pods of this node; [`sidecar`]: sidecar detection;
//! - [`rules`]: per-workload rules ([`network_policy`] (rule 3) or the
//!   cluster CIDRs and `MESH_INTERNAL` [`service_entries`] (rule 4), plus
//!   [`osm_egress`] (rule 5), with [`hosts`] resolved by the runtime);
//! - [`registry_only`]: Istio `Sidecar`s that restrict the proxy;
//! - [`trie`]: flattening into longest-prefix entries;
//! - [`policy_ids`]: stable content-derived policy ids.
pub mod dns;
pub mod gateways;
pub mod hosts;
pub mod ips;
pub mod mode;
pub mod network_policy;
pub mod np_services;
pub mod objects;
pub mod osm_egress;
pub mod policy_ids;
pub mod registry_only;
pub mod rules;
pub mod selectors;
pub mod service_entries;
pub mod sidecar;
pub mod trie;
pub mod workloads;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod mesh_tests;
#[cfg(test)]
mod input_tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use agent_common::POLICY_GLOBAL;
use ipnet::IpNet;
use tracing::debug;

use crate::desired::{AllowRule, DesiredState, Diagnostic, Mode, Severity, TrieEntry};
use crate::explain::{Explain, ExplainRule, PolicySources, WorkloadExplain};
use crate::model::{ObjectRef, Snapshot};

/// How to compile: which node's pods, which ranges are "inside the
/// cluster" (pod and service CIDRs), and what the host names of mesh
/// objects resolved to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompilerConfig {
    /// Only pods with this `spec.nodeName`; every pod when `None`.
    pub node_name: Option<String>,
    pub cluster_cidrs: Vec<IpNet>,
    /// Currently valid addresses of the host names in
    /// [`DesiredState::hosts`] (lower-case names); missing names allow
    /// nothing yet.
    pub resolved_hosts: BTreeMap<String, Vec<IpAddr>>,
}

/// Name of the global policy in diagnostics.
pub const GLOBAL_POLICY_OWNER: &str = "global policy (gateways and cluster DNS)";

/// Compilation state: the input and the diagnostics found so far.
pub(crate) struct Ctx<'a> {
    pub snapshot: &'a Snapshot,
    pub config: &'a CompilerConfig,
    pub diags: Vec<Diagnostic>,
    /// Host names the rules need resolved.
    pub hosts: BTreeSet<String>,
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
        hosts: BTreeSet::new(),
    };
    let mut explain = Explain::default();
    let modes = mode::namespace_modes(&mut ctx);
    // Input that does not depend on this node's pods: every NetworkPolicy
    // and Sidecar is reported when invalid, even when it applies to no pod
    // here.
    network_policy::check_all(&mut ctx);
    registry_only::check_sidecars(&mut ctx);
    let gateway_pods = gateways::gateway_pods(snapshot);
    explain.gateways = gateways::describe_gateways(snapshot, &gateway_pods);
    explain.external_hosts = service_entries::external_hosts(&ctx);

    let mut global = gateways::gateway_rules(&mut ctx, &gateway_pods);
    global.extend(dns::dns_rules(&mut ctx));
    let mut policies: BTreeMap<u32, Vec<TrieEntry>> = BTreeMap::new();
    policies.insert(
        POLICY_GLOBAL,
        trie::flatten(&global, GLOBAL_POLICY_OWNER, &mut ctx.diags),
    );
    explain
        .policies
        .insert(POLICY_GLOBAL, global.iter().map(ExplainRule::from).collect());

    let mut locals = workloads::local_workloads(&mut ctx, &modes, &gateway_pods);

    // Workloads with the same rules share one flattening and one id.
    let mut network_policies = network_policy::NetworkPolicies::new(&ctx);
    let mesh_config = osm_egress::mesh_config(&mut ctx);
    explain.osm = mesh_config.map(osm_egress::osm_explain);
    let egress_policies = osm_egress::EgressPolicies::new(&mut ctx, mesh_config);
    let mesh_internal = service_entries::mesh_internal_rules(&mut ctx);
    let cluster_rules = rules::ClusterInternal::new(&ctx, mesh_internal);
    let mut groups: BTreeMap<Vec<AllowRule>, Vec<usize>> = BTreeMap::new();
    let mut cluster_internal = 0usize;
    let mut workload_explains: Vec<WorkloadExplain> = Vec::with_capacity(locals.len());
    for (i, local) in locals.iter().enumerate() {
        let mut why = workload_explain(snapshot, local);
        if local.is_policed() {
            let mut found = rules::workload_rules(
                &mut ctx,
                &mut network_policies,
                &egress_policies,
                &cluster_rules,
                local.pod,
            );
            cluster_internal += usize::from(found.cluster_internal);
            why.sources.network_policies = found.network_policies;
            why.sources.mesh_egress = found.mesh_egress;
            found.rules.sort();
            found.rules.dedup();
            groups.entry(found.rules).or_default().push(i);
        }
        workload_explains.push(why);
    }
    let mut flattened = Vec::with_capacity(groups.len());
    let mut members = Vec::with_capacity(groups.len());
    let mut group_rules = Vec::with_capacity(groups.len());
    for (rules, group) in groups {
        let owner = group_owner(&locals, &group);
        flattened.push(trie::flatten(&rules, &owner, &mut ctx.diags));
        members.push(group);
        group_rules.push(rules);
    }
    let ids = policy_ids::assign_ids(&flattened);
    for (((entries, group), id), rules) in flattened.into_iter().zip(members).zip(ids).zip(group_rules) {
        for i in group {
            if let Some(local) = locals.get_mut(i) {
                local.workload.policy = id;
            }
        }
        policies.insert(id, entries);
        explain
            .policies
            .entry(id)
            .or_insert_with(|| rules.iter().map(ExplainRule::from).collect());
    }
    for (local, mut why) in locals.iter().zip(workload_explains) {
        why.policy = local.workload.policy;
        explain.workloads.insert(
            format!("{}/{}", local.workload.namespace, local.workload.name),
            why,
        );
    }
    explain.resolved = ctx
        .hosts
        .iter()
        .map(|h| (h.clone(), config.resolved_hosts.get(h).cloned().unwrap_or_default()))
        .collect();

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
        hosts: ctx.hosts,
        explain,
    }
}

/// The parts of a workload's explanation that do not depend on its rules.
fn workload_explain(snapshot: &Snapshot, local: &workloads::LocalWorkload<'_>) -> WorkloadExplain {
    let label = snapshot
        .namespaces
        .iter()
        .find(|ns| ns.metadata.name.as_deref() == Some(local.workload.namespace.as_str()))
        .and_then(|ns| objects::labels(&ns.metadata).get(mode::EGRESS_LABEL).cloned());
    WorkloadExplain {
        mode: local.workload.mode,
        label,
        policy: 0,
        gateway: local.workload.flags & agent_common::FLAG_GATEWAY != 0,
        sources: PolicySources {
            service_account: osm_egress::service_account(local.pod).to_owned(),
            registry_only: registry_only::registry_only(snapshot, local.pod),
            ..Default::default()
        },
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
        hosts: BTreeSet::new(),
    };
    mode::mode_of(&mode::namespace_modes(&mut ctx), namespace)
}
