//! Istio `ServiceEntry` objects (rule 5 of the contract).
//!
//! - `location: MESH_INTERNAL`: the entry's `addresses` (IPs or CIDRs) and
//!   `endpoints` (IPs, or names resolved like OSM hosts) count as inside
//!   the cluster: they join the cluster CIDRs of rule 4 (reason
//!   `cluster-internal`), on every port, in the namespaces the entry is
//!   exported to (`exportTo`). An entry of a namespace that is not trusted
//!   applies to its own namespace only, whatever `exportTo` says (the
//!   rest is reported as ignored). A pod that egress NetworkPolicies
//!   select gets exactly what those allow, as for any in-cluster address.
//! - Any other location (`MESH_EXTERNAL`, the default): the hosts are
//!   external; enforced pods reach them only through the egress gateway.
//!   They grant nothing here; `verify` and `status` name them.
use std::collections::{BTreeMap, BTreeSet};

use agent_common::{PortRule, REASON_CLUSTER_INTERNAL};
use ipnet::IpNet;

use crate::desired::Severity;
use crate::model::istio::{MESH_EXTERNAL, MESH_INTERNAL};
use crate::model::ObjectKind;

use super::hosts::{parse_host, Host};
use super::ignored::{ignored, UNTRUSTED_MESH_INTERNAL_EXPORT};
use super::ips::host_net;
use super::limits::{check_len, MAX_LIST};
use super::objects::{namespace, object_ref};
use super::policy::PolicyRule;
use super::Ctx;

/// The addresses of `MESH_INTERNAL` ServiceEntries, as cluster-internal
/// rules. Every ServiceEntry is checked: bad addresses and endpoints are
/// reported and skipped; locations other than the two Istio knows are
/// reported and treated as external. Only `MESH_INTERNAL` endpoint names
/// are resolved.
pub(crate) fn mesh_internal_rules(ctx: &mut Ctx<'_>) -> Vec<MeshInternalRule> {
    let snapshot = ctx.snapshot;
    let mut out = Vec::new();
    for se in &snapshot.service_entries {
        let object = object_ref(ObjectKind::ServiceEntry, &se.metadata);
        let own = namespace(&se.metadata);
        let mut visible_in = export_to(&se.spec.export_to, own);
        let internal = match se.spec.location.as_deref() {
            Some(MESH_INTERNAL) => true,
            None | Some(MESH_EXTERNAL) => false,
            Some(other) => {
                ctx.report(
                    Severity::Error,
                    &object,
                    "spec.location",
                    format!("unknown location {other:?} (expected MESH_EXTERNAL or MESH_INTERNAL); treated as MESH_EXTERNAL"),
                );
                false
            }
        };
        if internal {
            let limits = [
                check_len(|| "spec.addresses".to_owned(), se.spec.addresses.len(), MAX_LIST, "addresses"),
                check_len(|| "spec.endpoints".to_owned(), se.spec.endpoints.len(), MAX_LIST, "endpoints"),
            ];
            if let Some(over) = limits.into_iter().find_map(Result::err) {
                ctx.report(Severity::Error, &object, over.field, format!("{}; this MESH_INTERNAL entry grants nothing (fail closed)", over.message));
                continue;
            }
            if !ctx.trusted.contains(own) {
                let beyond = match &visible_in {
                    None => true,
                    Some(set) => set.iter().any(|ns| ns != own),
                };
                if beyond {
                    ctx.ignore(ignored(
                        &object,
                        UNTRUSTED_MESH_INTERNAL_EXPORT,
                        format!("namespace {own} is not trusted, so this MESH_INTERNAL entry counts as inside the cluster for pods of {own} only; its export to other namespaces (spec.exportTo) is ignored"),
                    ));
                }
                visible_in = Some(visible_in.map_or_else(|| BTreeSet::from([own.to_owned()]), |set| set.into_iter().filter(|ns| ns == own).collect()));
            }
        }
        let mut push = |dest: PolicyRule| {
            if internal {
                out.push(MeshInternalRule { rule: dest, visible_in: visible_in.clone() })
            }
        };
        let any = PortRule::any(REASON_CLUSTER_INTERNAL);
        for (i, text) in se.spec.addresses.iter().enumerate() {
            let origin = format!("{object} (MESH_INTERNAL) spec.addresses[{i}] {text}");
            match parse_net(text) {
                Some(net) => push(PolicyRule::net(net, any, origin)),
                None => ctx.report(
                    Severity::Error,
                    &object,
                    format!("spec.addresses[{i}]"),
                    format!("{text:?} is not an IP address or CIDR; ignored"),
                ),
            }
        }
        for (i, endpoint) in se.spec.endpoints.iter().enumerate() {
            let text = endpoint.address.as_str();
            if text.starts_with("unix://") {
                continue;
            }
            let origin = format!("{object} (MESH_INTERNAL) spec.endpoints[{i}].address {text}");
            match parse_host(text) {
                Ok(Host::Ip(ip)) => push(PolicyRule::net(host_net(ip), any, origin)),
                Ok(Host::Name(name)) if internal => {
                    ctx.want_host(&name);
                    push(PolicyRule::host(name, any, origin));
                }
                Ok(Host::Name(_)) => {}
                Err(message) => ctx.report(
                    Severity::Error,
                    &object,
                    format!("spec.endpoints[{i}].address"),
                    format!("{message}; ignored"),
                ),
            }
        }
    }
    out
}

/// A `MESH_INTERNAL` address and the namespaces whose pods it counts as
/// inside the cluster for (`None`: every namespace).
#[derive(Clone, Debug)]
pub(crate) struct MeshInternalRule {
    pub rule: PolicyRule,
    pub visible_in: Option<BTreeSet<String>>,
}

/// Istio's `exportTo`: empty or `*` is every namespace, `.` the entry's
/// own, `~` none, anything else a namespace name.
fn export_to(entries: &[String], own: &str) -> Option<BTreeSet<String>> {
    if entries.is_empty() || entries.iter().any(|e| e == "*") {
        return None;
    }
    Some(
        entries
            .iter()
            .filter(|e| e.as_str() != "~")
            .map(|e| if e == "." { own.to_owned() } else { e.clone() })
            .collect(),
    )
}

/// External hosts (lower-case) of the ServiceEntries that are not
/// `MESH_INTERNAL`, each with the entries that name it.
pub(crate) fn external_hosts(ctx: &Ctx<'_>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for se in &ctx.snapshot.service_entries {
        if se.spec.is_mesh_internal() {
            continue;
        }
        let object = object_ref(ObjectKind::ServiceEntry, &se.metadata).to_string();
        for host in &se.spec.hosts {
            let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
            if !host.is_empty() {
                out.entry(host).or_default().push(object.clone());
            }
        }
    }
    // The same whatever the order of the objects.
    for refs in out.values_mut() {
        refs.sort();
        refs.dedup();
    }
    out
}

/// An IP (as a host net) or a CIDR.
pub fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(host_net))
}
