//! Egress gateways (rule 1 of the contract) under the trust rules:
//!
//! - gateway pods are pods of trusted namespaces (not finished) that an
//!   Istio `Gateway` (in any namespace) selects with `spec.selector`, or
//!   that carry `tollgate.dev/egress-gateway: "true"`; candidates in
//!   other namespaces are ignored and reported;
//! - a gateway pod grants its own current addresses only (`status.podIP(s)`
//!   of a `Running` pod); one without an address grants nothing yet;
//! - gateway Services are the Services whose endpoints (all EndpointSlices
//!   and selected pods, every port and family) are all gateway pods'
//!   addresses (`status.podIP(s)`; a gateway pod that is still starting
//!   counts here, so that a rollout does not close the Service): their
//!   ClusterIPs are gateways. An EndpointSlice never makes an address a
//!   gateway by itself.
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use agent_common::{PortRule, REASON_GATEWAY};
use k8s_openapi::api::core::v1::Pod;

use crate::desired::AllowRule;
use crate::model::istio::Gateway;
use crate::model::{ObjectKind, Snapshot};

use super::ignored::{ignored, GATEWAY_SERVICE_OTHER_ENDPOINTS, GATEWAY_WITHOUT_ADDRESS, UNTRUSTED_GATEWAY_POD};
use super::ips::{host_net, pod_ips};
use super::objects::{is_finished, labels, object_ref, pod_key, pod_ref, PodKey};
use super::selectors::map_selects_some;
use super::services::ServiceInfo;
use super::service_judge::socket;
use super::Ctx;

/// Pod label that marks a gateway that is not an Istio one.
pub const GATEWAY_LABEL: &str = "tollgate.dev/egress-gateway";

/// Is `pod` labelled `tollgate.dev/egress-gateway: "true"`?
pub fn has_gateway_label(pod: &Pod) -> bool {
    labels(&pod.metadata).get(GATEWAY_LABEL).is_some_and(|v| v == "true")
}

/// The Istio Gateways selecting `pod`.
fn selecting<'a>(snapshot: &'a Snapshot, pod: &Pod) -> Vec<&'a Gateway> {
    snapshot.gateways.iter().filter(|gw| map_selects_some(&gw.spec.selector, labels(&pod.metadata))).collect()
}

/// The gateways found in a snapshot.
#[derive(Clone, Debug, Default)]
pub struct Gateways {
    /// Gateway pods (trusted namespaces, not finished), with or without an
    /// address.
    pub pods: BTreeSet<PodKey>,
    /// Current addresses of the gateway pods (Running), each with its pod.
    pub addresses: BTreeMap<IpAddr, PodKey>,
    /// The addresses of every gateway pod (not finished, any phase): what
    /// a gateway Service may forward to.
    pub endpoint_addresses: BTreeSet<IpAddr>,
    /// Gateway Services (`namespace/name`) and their ClusterIPs.
    pub services: Vec<(String, Vec<IpAddr>)>,
}

impl Gateways {
    /// Find the gateway pods and Services; report (as ignored) the
    /// candidates outside the trusted namespaces, gateway pods without an
    /// address and Services in front of gateways that also forward
    /// elsewhere.
    pub(crate) fn find(ctx: &mut Ctx<'_>, services: &[ServiceInfo]) -> Self {
        let snapshot = ctx.snapshot;
        let mut candidates: Vec<&Pod> = snapshot
            .pods
            .iter()
            .filter(|pod| !is_finished(pod) && (has_gateway_label(pod) || !selecting(snapshot, pod).is_empty()))
            .collect();
        candidates.sort_by_key(|p| pod_key(p));
        let mut out = Gateways::default();
        for pod in candidates {
            let key = pod_key(pod);
            let object = pod_ref(pod);
            if !ctx.trusted.contains(&key.0) {
                let how = why_gateway(snapshot, pod);
                ctx.ignore(ignored(
                    &object,
                    UNTRUSTED_GATEWAY_POD,
                    format!(
                        "{how}, but namespace {} is not trusted (--trusted-namespace, or the label tollgate.dev/trusted=true on the Namespace): it is not an egress gateway",
                        key.0
                    ),
                ));
                continue;
            }
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            let assigned = pod_ips(ctx, pod);
            out.endpoint_addresses.extend(assigned.iter().copied());
            let ips = if running { assigned } else { Vec::new() };
            if ips.is_empty() {
                let state = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "unknown".to_owned());
                ctx.ignore(ignored(
                    &object,
                    GATEWAY_WITHOUT_ADDRESS,
                    format!("this egress gateway pod has no current address (phase {state}; an address counts once the pod is Running): it grants nothing yet"),
                ));
            }
            for ip in ips {
                out.addresses.entry(ip).or_insert_with(|| key.clone());
            }
            out.pods.insert(key);
        }
        for svc in services {
            let ips: Vec<IpAddr> = svc.endpoint_ips().collect();
            let gateway_endpoints = ips.iter().filter(|ip| out.endpoint_addresses.contains(ip)).count();
            if gateway_endpoints == 0 || svc.cluster_ips.is_empty() {
                continue;
            }
            let other = svc.ports.iter().flat_map(|p| &p.endpoints).find(|e| !out.endpoint_addresses.contains(&e.ip));
            match other {
                None => out.services.push((svc.object.qualified(), svc.cluster_ips.clone())),
                Some(e) => ctx.ignore(ignored(
                    &svc.object,
                    GATEWAY_SERVICE_OTHER_ENDPOINTS,
                    format!(
                        "this Service forwards to egress gateway pods but also to {} ({}), which is not a gateway pod's address: its ClusterIPs are not gateways",
                        socket(e.ip, e.port.unwrap_or_default()),
                        e.via
                    ),
                )),
            }
        }
        out
    }

    /// Allow rules (all ports and protocols) for the gateway pods' current
    /// addresses and the ClusterIPs of the gateway Services.
    pub(crate) fn rules(&self) -> Vec<AllowRule> {
        let mut ips: BTreeMap<IpAddr, String> = BTreeMap::new();
        for (ip, (ns, name)) in &self.addresses {
            ips.insert(*ip, format!("egress gateway pod {ns}/{name}"));
        }
        for (svc, cluster_ips) in &self.services {
            for ip in cluster_ips {
                ips.entry(*ip).or_insert_with(|| format!("egress gateway Service {svc}"));
            }
        }
        ips.into_iter()
            .map(|(ip, origin)| AllowRule { net: host_net(ip), except: Vec::new(), rule: PortRule::any(REASON_GATEWAY), origin })
            .collect()
    }

    /// The gateways in the operator's words, for explanations: each Istio
    /// `Gateway` with the gateway pods it selects, and each labelled
    /// gateway pod.
    pub fn describe(&self, snapshot: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        let mut istio_gateways: Vec<_> = snapshot.gateways.iter().collect();
        istio_gateways.sort_by_key(|gw| object_ref(ObjectKind::Gateway, &gw.metadata));
        let mut pods: Vec<&Pod> = snapshot.pods.iter().filter(|p| self.pods.contains(&pod_key(p))).collect();
        pods.sort_by_key(|p| pod_key(p));
        for gw in istio_gateways {
            let selected: Vec<String> = pods
                .iter()
                .filter(|p| map_selects_some(&gw.spec.selector, labels(&p.metadata)))
                .map(|p| pod_ref(p).qualified())
                .collect();
            let gw_ref = object_ref(ObjectKind::Gateway, &gw.metadata);
            if selected.is_empty() {
                out.push(format!("{gw_ref} (selects no gateway pod in a trusted namespace)"));
            } else {
                out.push(format!("{gw_ref} (pods {})", selected.join(", ")));
            }
        }
        for pod in pods.iter().filter(|p| has_gateway_label(p)) {
            out.push(format!("pod {} (label {GATEWAY_LABEL}=true)", pod_ref(pod).qualified()));
        }
        out
    }
}

/// How `pod` was meant to be a gateway, for messages.
pub(crate) fn why_gateway(snapshot: &Snapshot, pod: &Pod) -> String {
    let mut gateways: Vec<String> =
        selecting(snapshot, pod).iter().map(|gw| object_ref(ObjectKind::Gateway, &gw.metadata).to_string()).collect();
    gateways.sort();
    match (has_gateway_label(pod), gateways.is_empty()) {
        (true, true) => format!("this pod carries {GATEWAY_LABEL}=true"),
        (true, false) => format!("this pod carries {GATEWAY_LABEL}=true and {} selects it", gateways.join(", ")),
        (false, _) => format!("{} selects this pod", gateways.join(", ")),
    }
}
