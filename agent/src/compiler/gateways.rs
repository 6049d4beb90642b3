//! Egress gateways: which pods are gateways, and the addresses every
//! enforced pod may reach them on (rule 1 of the contract).
use std::collections::BTreeSet;
use std::net::IpAddr;

use agent_common::{PortRule, REASON_GATEWAY};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::desired::{AllowRule, Severity};
use crate::model::{ObjectKind, Snapshot};

use super::ips::{host_net, pod_ips, quiet_pod_ips, service_cluster_ips, slice_addresses};
use super::objects::{is_finished, labels, namespace, object_ref, pod_key, pod_ref, PodKey};
use super::selectors::map_selects_some;
use super::Ctx;

/// Pod label that marks a gateway that is not an Istio one.
pub const GATEWAY_LABEL: &str = "tollgate.dev/egress-gateway";

/// Is `pod` labelled `tollgate.dev/egress-gateway: "true"`?
pub fn has_gateway_label(pod: &Pod) -> bool {
    labels(&pod.metadata).get(GATEWAY_LABEL).is_some_and(|v| v == "true")
}

/// The gateway pods, as `(namespace, name)`: pods (of any node, not
/// finished) selected by an Istio `Gateway`'s `spec.selector` in any
/// namespace, or labelled `tollgate.dev/egress-gateway: "true"`.
pub fn gateway_pods(snapshot: &Snapshot) -> BTreeSet<PodKey> {
    snapshot
        .pods
        .iter()
        .filter(|pod| !is_finished(pod))
        .filter(|pod| {
            has_gateway_label(pod)
                || snapshot
                    .gateways
                    .iter()
                    .any(|gw| map_selects_some(&gw.spec.selector, labels(&pod.metadata)))
        })
        .map(pod_key)
        .collect()
}

/// Allow rules (all ports and protocols) for the gateway pods' IPs, the
/// cluster IPs of the Services that select them and the EndpointSlice
/// addresses that point at them; each names the pod, Service or slice.
pub(crate) fn gateway_rules(ctx: &mut Ctx<'_>, gateways: &BTreeSet<PodKey>) -> Vec<AllowRule> {
    let snapshot = ctx.snapshot;
    // Sorted, so that an address shared by several sources is named by
    // the same one whatever the order of the objects.
    let mut gateway_pods: Vec<_> = snapshot
        .pods
        .iter()
        .filter(|p| gateways.contains(&pod_key(p)))
        .collect();
    gateway_pods.sort_by_key(|p| pod_key(p));
    let mut services: Vec<_> = snapshot.services.iter().collect();
    services.sort_by_key(|s| object_ref(ObjectKind::Service, &s.metadata));
    let mut slices: Vec<_> = snapshot.endpoint_slices.iter().collect();
    slices.sort_by_key(|s| object_ref(ObjectKind::EndpointSlice, &s.metadata));
    let mut ips: Vec<(IpAddr, String)> = Vec::new();
    for pod in &gateway_pods {
        let origin = format!("egress gateway pod {}", pod_ref(pod).qualified());
        ips.extend(pod_ips(ctx, pod).into_iter().map(|ip| (ip, origin.clone())));
    }
    for svc in services {
        let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
            continue;
        };
        let svc_ns = namespace(&svc.metadata);
        let selects_gateway = gateway_pods.iter().any(|pod| {
            namespace(&pod.metadata) == svc_ns && map_selects_some(selector, labels(&pod.metadata))
        });
        if selects_gateway {
            let origin = format!(
                "egress gateway Service {}",
                object_ref(ObjectKind::Service, &svc.metadata).qualified()
            );
            ips.extend(service_cluster_ips(ctx, svc).into_iter().map(|ip| (ip, origin.clone())));
        }
    }
    for slice in slices {
        ips.extend(gateway_slice_addresses(ctx, slice, &gateway_pods));
    }
    // One rule per address, named by its first source (pod, then Service,
    // then slice).
    let mut seen = BTreeSet::new();
    ips.retain(|(ip, _)| seen.insert(*ip));
    ips.sort();
    ips.into_iter()
        .map(|(ip, origin)| AllowRule {
            net: host_net(ip),
            except: Vec::new(),
            rule: PortRule::any(REASON_GATEWAY),
            origin,
        })
        .collect()
}

/// Addresses of the endpoints of `slice` that point at a gateway pod.
/// Anyone who may write EndpointSlices could point one at a gateway, so
/// only a slice in the gateway pod's own namespace counts, and only with
/// the pod's own addresses (any address while the pod's IPs are not
/// known yet); other addresses are reported and ignored.
fn gateway_slice_addresses(ctx: &mut Ctx<'_>, slice: &EndpointSlice, gateway_pods: &[&Pod]) -> Vec<(IpAddr, String)> {
    let slice_ns = namespace(&slice.metadata).to_owned();
    let slice_ref = object_ref(ObjectKind::EndpointSlice, &slice.metadata);
    let origin = format!("egress gateway endpoint in EndpointSlice {}", slice_ref.qualified());
    let target = |i: usize| -> Option<&Pod> {
        let t = slice.endpoints.get(i)?.target_ref.as_ref()?;
        if t.kind.as_deref().is_some_and(|k| k != "Pod") || t.namespace.as_deref().is_some_and(|ns| ns != slice_ns) {
            return None;
        }
        let name = t.name.as_deref()?;
        gateway_pods.iter().copied().find(|p| namespace(&p.metadata) == slice_ns && p.metadata.name.as_deref() == Some(name))
    };
    let mut out = Vec::new();
    for i in 0..slice.endpoints.len() {
        let Some(pod) = target(i) else { continue };
        let own = quiet_pod_ips(pod);
        for ip in slice_addresses(ctx, slice, |j| j == i) {
            if own.is_empty() || own.contains(&ip) {
                out.push((ip, origin.clone()));
            } else {
                ctx.report(
                    Severity::Warning,
                    &slice_ref,
                    format!("endpoints[{i}].addresses"),
                    format!(
                        "{ip} is not an address of gateway pod {}; not treated as a gateway",
                        pod_ref(pod).qualified()
                    ),
                );
            }
        }
    }
    out
}

/// The gateways in the operator's words, for explanations: each Istio
/// `Gateway` with the pods it selects, and each labelled gateway pod.
pub fn describe_gateways(snapshot: &Snapshot, gateways: &BTreeSet<PodKey>) -> Vec<String> {
    let mut out = Vec::new();
    let mut istio_gateways: Vec<_> = snapshot.gateways.iter().collect();
    istio_gateways.sort_by_key(|gw| object_ref(ObjectKind::Gateway, &gw.metadata));
    let mut pods: Vec<_> = snapshot.pods.iter().filter(|p| gateways.contains(&pod_key(p))).collect();
    pods.sort_by_key(|p| pod_key(p));
    for gw in istio_gateways {
        let pods: Vec<String> = pods
            .iter()
            .filter(|p| map_selects_some(&gw.spec.selector, labels(&p.metadata)))
            .map(|p| pod_ref(p).qualified())
            .collect();
        let gw_ref = object_ref(ObjectKind::Gateway, &gw.metadata);
        if pods.is_empty() {
            out.push(format!("{gw_ref} (selects no running pod)"));
        } else {
            out.push(format!("{gw_ref} (pods {})", pods.join(", ")));
        }
    }
    for pod in pods
        .iter()
        .filter(|p| has_gateway_label(p))
    {
        out.push(format!("pod {} (label {GATEWAY_LABEL}=true)", pod_ref(pod).qualified()));
    }
    out
}
