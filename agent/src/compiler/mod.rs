//! The pure policy compiler, in two steps, with no I/O; the same input
//! always gives the same output, whatever the order of the objects:
//!
//! - [`compile`]: a [`Snapshot`] of cluster objects to a [`Policy`]: the
//!   workloads, the global rules, the rules of each group of workloads
//!   (host names kept symbolic), diagnostics, ignored objects and
//!   explanations;
//! - [`bind`]: a [`Policy`] plus the addresses its host names resolved to,
//!   to the [`crate::desired::DesiredState`] of the datapath. A DNS answer re-runs only
//!   `bind`, which re-flattens only the groups that use host names.
//!
//! The parts:
//! - [`mode`]: enforcement mode per namespace; [`trust`]: who may widen
//!   egress ([`ignored`]: what the trust rules set aside);
//! - [`gateways`], [`dns`]: the global policy (rules 1 and 2);
//! - [`workloads`]: the pods of this node; [`sidecar`]: sidecar detection;
//! - [`rules`]: per-workload rules ([`network_policy`] (rule 3) or the
//!   cluster CIDRs and `MESH_INTERNAL` [`service_entries`] (rule 4), plus
//!   [`osm_egress`] (rule 5), with [`hosts`] resolved by the runtime);
//! - [`services`], [`service_judge`]: Services allowed only when every
//!   endpoint behind them is;
//! - [`limits`]: per-object size limits (fail closed);
//! - [`registry_only`]: Istio `Sidecar`s that restrict the proxy;
//! - [`trie`]: flattening into longest-prefix entries;
//! - [`policy_ids`]: stable content-derived policy ids.
pub mod bind;
pub mod dns;
pub mod gateways;
pub mod hosts;
pub mod ignored;
pub mod ips;
pub mod limits;
mod lookup;
pub mod mode;
pub mod network_policy;
pub mod objects;
pub mod osm_egress;
pub mod policy;
pub mod policy_ids;
pub mod registry_only;
pub mod rules;
pub mod runtime_class;
pub mod selectors;
pub mod service_entries;
pub mod service_judge;
pub mod services;
pub mod sidecar;
pub mod synthetic;
pub mod trie;
pub mod trust;
pub mod workloads;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod mesh_tests;
#[cfg(test)]
mod input_tests;
#[cfg(test)]
mod trust_tests;
#[cfg(test)]
mod service_tests;

use std::collections::{BTreeMap, BTreeSet};

use tracing::debug;

pub use bind::bind;
pub use policy::{Destination, Policy, PolicyRule, Prepared, RuleGroup};
pub use runtime_class::DEFAULT_SANDBOXED_RUNTIME_CLASSES;
pub use trust::{DEFAULT_TRUSTED_NAMESPACES, TRUSTED_LABEL};

use crate::desired::{Diagnostic, Ignored, Mode, Severity};
use crate::explain::{Explain, ExplainRule, PolicySources, WorkloadExplain};
use crate::model::{ObjectRef, Snapshot};

use service_judge::Lookup;

/// How to compile: which node's pods, which ranges are "inside the
/// cluster" (pod and service CIDRs), and who may widen egress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompilerConfig {
    /// Only pods with this `spec.nodeName`; every pod when `None`.
    pub node_name: Option<String>,
    pub cluster_cidrs: Vec<IpNet>,
    /// Namespaces whose objects may widen egress for other namespaces
    /// (`--trusted-namespace`), besides those labelled
    /// `tollgate.dev/trusted: "true"`. Default:
    /// [`DEFAULT_TRUSTED_NAMESPACES`].
    pub trusted_namespaces: Vec<String>,
    /// The OSM control-plane namespace whose `MeshConfig` wins when
    /// several trusted ones exist (`--osm-namespace`, default `osm-system`).
    pub osm_namespace: String,
    /// `spec.runtimeClassName` values of sandboxed runtimes (gVisor, Kata),
    /// enforced by the TC layer alone (`--sandboxed-runtime-class`; a
    /// trailing `*` matches any suffix). Default:
    /// [`DEFAULT_SANDBOXED_RUNTIME_CLASSES`].
    pub sandboxed_runtime_classes: Vec<String>,
}

impl Default for CompilerConfig {
    fn default() -> Self {
        Self {
            node_name: None,
            cluster_cidrs: Vec::new(),
            trusted_namespaces: DEFAULT_TRUSTED_NAMESPACES.iter().map(|n| (*n).to_owned()).collect(),
            osm_namespace: crate::model::osm::DEFAULT_CONTROL_PLANE_NAMESPACE.to_owned(),
            sandboxed_runtime_classes: DEFAULT_SANDBOXED_RUNTIME_CLASSES.iter().map(|n| (*n).to_owned()).collect(),
        }
    }
}

impl CompilerConfig {
    /// This configuration with the trust flags applied: `--trusted-namespace`
    /// values replace the default trusted namespaces when any is given;
    /// `--osm-namespace` replaces `osm-system` when given.
    pub fn with_trust(mut self, trusted_namespaces: Vec<String>, osm_namespace: Option<String>) -> Self {
        if !trusted_namespaces.is_empty() {
            self.trusted_namespaces = trusted_namespaces;
        }
        if let Some(ns) = osm_namespace {
            self.osm_namespace = ns;
        }
        self
    }
}

use ipnet::IpNet;

/// Name of the global policy in diagnostics.
pub const GLOBAL_POLICY_OWNER: &str = "global policy (gateways and cluster DNS)";

/// Compilation state: the input and what was found so far.
pub(crate) struct Ctx<'a> {
    pub snapshot: &'a Snapshot,
    pub config: &'a CompilerConfig,
    pub diags: Vec<Diagnostic>,
    /// Host names the rules need resolved.
    pub hosts: BTreeSet<String>,
    /// Objects the trust rules set aside.
    pub ignored: Vec<Ignored>,
    /// The trusted namespaces ([`trust::trusted_namespaces`]).
    pub trusted: BTreeSet<String>,
}

impl<'a> Ctx<'a> {
    pub fn new(snapshot: &'a Snapshot, config: &'a CompilerConfig) -> Self {
        Self {
            snapshot,
            config,
            diags: Vec::new(),
            hosts: BTreeSet::new(),
            ignored: Vec::new(),
            trusted: trust::trusted_namespaces(snapshot, &config.trusted_namespaces),
        }
    }

    pub fn ignore(&mut self, ignored: Ignored) {
        self.ignored.push(ignored);
    }

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

/// Compile `snapshot` into a [`Policy`] (host names kept symbolic; see
/// [`bind`]).
pub fn compile(snapshot: &Snapshot, config: &CompilerConfig) -> Policy {
    let mut ctx = Ctx::new(snapshot, config);
    let mut explain = Explain::default();
    let modes = mode::namespace_modes(&mut ctx);
    // Input that does not depend on this node's pods: every NetworkPolicy
    // and Sidecar is reported when invalid, even when it applies to no pod
    // here.
    network_policy::check_all(&mut ctx);
    registry_only::check_sidecars(&mut ctx);
    let service_list = services::collect(&mut ctx);
    let mut frontends = services::Frontends::of(&service_list);
    let gateways = gateways::Gateways::find(&mut ctx, &service_list);
    drop(service_list);
    for (service, cluster_ips) in &gateways.services {
        frontends.exempt(service, cluster_ips);
    }
    explain.gateways = gateways.describe(snapshot);
    explain.external_hosts = service_entries::external_hosts(&ctx);
    explain.services = frontends.explain();

    let mut global = gateways.rules();
    global.extend(dns::dns_rules(&mut ctx));
    let mut global_map = trie::flatten_map(&global);
    trie::cap(&mut global_map, GLOBAL_POLICY_OWNER, &mut ctx.diags);
    let mut global_judged = global_map.clone();
    let added = service_judge::judge(&mut global_judged, false, &frontends, GLOBAL_POLICY_OWNER, &mut ctx.diags);
    frontends.settle_global(&Lookup::new(&global_map), &Lookup::new(&global_judged));
    drop(global_map);
    let global_prepared = Prepared {
        entries: trie::entries(&global_judged),
        explain: global.iter().chain(&added).map(ExplainRule::from).collect(),
        diagnostics: Vec::new(),
    };

    let locals = workloads::local_workloads(&mut ctx, &modes, &gateways.pods);

    // Workloads with the same rules share one group (one flattening, one
    // policy id).
    let mut network_policies = network_policy::NetworkPolicies::new(&ctx);
    let mesh_config = osm_egress::mesh_config(&mut ctx);
    explain.osm = mesh_config.map(osm_egress::osm_explain);
    let egress_policies = osm_egress::EgressPolicies::new(&mut ctx, mesh_config);
    let mesh_internal = service_entries::mesh_internal_rules(&mut ctx);
    let cluster_rules = rules::ClusterInternal::new(&ctx, mesh_internal);
    let mut sets = rules::RuleSets::default();
    let mut members_of: Vec<Vec<usize>> = Vec::new();
    let mut cluster_internal = 0usize;
    for (i, local) in locals.iter().enumerate() {
        let mut why = workload_explain(snapshot, local);
        if local.is_policed() {
            let found = rules::workload_rules(
                &mut ctx,
                &mut network_policies,
                &egress_policies,
                &cluster_rules,
                &mut sets,
                local.pod,
            );
            cluster_internal += usize::from(found.cluster_internal);
            why.sources.network_policies = found.network_policies;
            why.sources.mesh_egress = found.mesh_egress;
            if members_of.len() <= found.set {
                members_of.resize_with(found.set + 1, Vec::new);
            }
            if let Some(members) = members_of.get_mut(found.set) {
                members.push(i);
            }
        }
        explain.workloads.insert(format!("{}/{}", local.workload.namespace, local.workload.name), why);
    }
    // The policies' expanded rules (an origin per peer pod) are no longer
    // needed: each set holds its own copy.
    drop(network_policies);
    drop(egress_policies);
    drop(cluster_rules);
    // Different inputs may give the same rules (two namespaces without
    // NetworkPolicies): one group for them.
    let mut by_rules: BTreeMap<Vec<PolicyRule>, Vec<usize>> = BTreeMap::new();
    for (rules, members) in sets.sets.into_iter().zip(members_of) {
        by_rules.entry(rules).or_default().extend(members);
    }
    for members in by_rules.values_mut() {
        members.sort_unstable();
    }

    let mut groups = Vec::with_capacity(by_rules.len());
    let mut known = bind::Prepares::default();
    for (rules, members) in by_rules {
        let owner = group_owner(&locals, &members);
        let hosts: BTreeSet<String> = rules
            .iter()
            .filter_map(|r| match &r.dest {
                Destination::Host(h) => Some(h.clone()),
                Destination::Net(_) => None,
            })
            .collect();
        let prepared = hosts.is_empty().then(|| {
            let done = bind::prepare(&bind::bind_rules(&rules, &BTreeMap::new()), &owner, &frontends, &mut known);
            ctx.diags.extend(done.diagnostics.iter().cloned());
            done
        });
        let members = members.iter().filter_map(|i| locals.get(*i)).map(|l| l.workload.uid.clone()).collect();
        groups.push(RuleGroup { rules, members, owner, hosts, prepared });
    }
    drop(known);

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

    let workloads = locals.into_iter().map(|l| (l.workload.uid.clone(), l.workload)).collect();
    let mut diagnostics = ctx.diags;
    diagnostics.sort();
    diagnostics.dedup();
    let mut ignored = ctx.ignored;
    ignored.sort();
    ignored.dedup();
    debug!(groups = groups.len(), diagnostics = diagnostics.len(), ignored = ignored.len(), "compiled policy");
    let gateway_pods_with_address = gateways.addresses.values().cloned().collect();
    Policy {
        workloads,
        global,
        global_prepared,
        groups,
        frontends,
        diagnostics,
        ignored,
        hosts: ctx.hosts,
        explain,
        modes,
        trusted_namespaces: ctx.trusted,
        gateway_pods: gateways.pods,
        gateway_pods_with_address,
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
    let mut ctx = Ctx::new(snapshot, &config);
    mode::mode_of(&mode::namespace_modes(&mut ctx), namespace)
}
