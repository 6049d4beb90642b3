//! Egress gateways: which pods are gateways, and the addresses every
//! enforced pod may reach them on (rule 1 of the contract).
use std::collections::BTreeSet;
use std::net::IpAddr;

use agent_common::{PortRule, REASON_GATEWAY};

use crate::desired::AllowRule;
use crate::model::Snapshot;

use super::ips::{host_net, pod_ips, service_cluster_ips, slice_addresses};
use super::objects::{is_finished, labels, namespace, pod_key, PodKey};
use super::selectors::map_selects_some;
use super::Ctx;

/// Pod label that marks a gateway that is not an Istio one.
pub const GATEWAY_LABEL: &str = "tollgate.dev/egress-gateway";

/// The gateway pods, as `(namespace, name)`: pods (of any node, not
/// finished) selected by an Istio `Gateway`'s `spec.selector` in any
/// namespace, or labelled `tollgate.dev/egress-gateway: "true"`.
pub fn gateway_pods(snapshot: &Snapshot) -> BTreeSet<PodKey> {
    snapshot
        .pods
        .iter()
        .filter(|pod| !is_finished(pod))
        .filter(|pod| {
            let pod_labels = labels(&pod.metadata);
            pod_labels.get(GATEWAY_LABEL).is_some_and(|v| v == "true")
                || snapshot
                    .gateways
                    .iter()
                    .any(|gw| map_selects_some(&gw.spec.selector, pod_labels))
        })
        .map(pod_key)
        .collect()
}

/// Allow rules (all ports and protocols) for the gateway pods' IPs, the
/// cluster IPs of the Services that select them and the EndpointSlice
/// addresses that point at them.
pub(crate) fn gateway_rules(ctx: &mut Ctx<'_>, gateways: &BTreeSet<PodKey>) -> Vec<AllowRule> {
    let snapshot = ctx.snapshot;
    let gateway_pods: Vec<_> = snapshot
        .pods
        .iter()
        .filter(|p| gateways.contains(&pod_key(p)))
        .collect();
    let mut ips: Vec<IpAddr> = Vec::new();
    for pod in &gateway_pods {
        ips.extend(pod_ips(ctx, pod));
    }
    for svc in &snapshot.services {
        let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
            continue;
        };
        let svc_ns = namespace(&svc.metadata);
        let selects_gateway = gateway_pods.iter().any(|pod| {
            namespace(&pod.metadata) == svc_ns && map_selects_some(selector, labels(&pod.metadata))
        });
        if selects_gateway {
            ips.extend(service_cluster_ips(ctx, svc));
        }
    }
    for slice in &snapshot.endpoint_slices {
        let slice_ns = namespace(&slice.metadata);
        let targets_gateway = |i: usize| {
            slice
                .endpoints
                .get(i)
                .and_then(|e| e.target_ref.as_ref())
                .is_some_and(|t| {
                    t.kind.as_deref().is_none_or(|k| k == "Pod")
                        && t.name.as_ref().is_some_and(|name| {
                            let ns = t.namespace.as_deref().unwrap_or(slice_ns);
                            gateways.contains(&(ns.to_owned(), name.clone()))
                        })
                })
        };
        ips.extend(slice_addresses(ctx, slice, targets_gateway));
    }
    ips.sort();
    ips.dedup();
    ips.into_iter()
        .map(|ip| AllowRule {
            net: host_net(ip),
            except: Vec::new(),
            rule: PortRule::any(REASON_GATEWAY),
        })
        .collect()
}
