//! Services and the endpoints behind them.
//!
//! Tollgate's hooks see the address a pod names (a ClusterIP, an external
//! IP, a load-balancer IP) before kube-proxy translates it on the node.
//! A Service address and port is therefore allowed only when every
//! endpoint kube-proxy may forward it to is itself allowed to the pod on
//! the target port ([`super::service_judge`]). The endpoints of a Service
//! port are, in every family:
//!
//! - the addresses of its EndpointSlices (label
//!   `kubernetes.io/service-name`, same namespace, ready or not, any
//!   manager) on the slice port with the Service port's name and
//!   protocol; a slice port without a number makes its endpoints unknown
//!   (denied); FQDN slices are not used by kube-proxy and are skipped;
//! - the pods its selector picks (not finished, any phase), on the
//!   `targetPort` resolved on each pod, as the EndpointSlice controller
//!   would list them, even before it has (or when it never will: the
//!   files source, a control plane without controllers).
//!
//! A Service with no endpoint on a port is denied there (kube-proxy
//! rejects those connections anyway). A Service over the size limits of
//! [`super::limits`] is denied on every address (fail closed).
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use agent_common::{PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::desired::Severity;
use crate::explain::{EndpointExplain, ServiceExplain};
use crate::model::{ObjectKind, ObjectRef};

use super::dns::SERVICE_NAME_LABEL;
use super::ips::{quiet_pod_ips, service_cluster_ips};
use super::limits::{check_len, MAX_LIST, MAX_SERVICE_ADDRESSES, MAX_SERVICE_ENDPOINTS};
use super::network_policy::named_port;
use super::objects::{is_finished, labels, name, namespace, object_ref};
use super::selectors::map_selects;
use super::service_judge::Lookup;
use super::Ctx;

/// One address kube-proxy may forward a Service port to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Endpoint {
    pub ip: IpAddr,
    /// The target port; `None` when the EndpointSlice names the port
    /// without a number (such an endpoint is never allowed).
    pub port: Option<u16>,
    /// `EndpointSlice y/s-abc endpoints[0]` or `Pod y/a (selected by the
    /// Service)`.
    pub via: String,
    /// The reason the global policy (gateways, DNS) allows this endpoint
    /// on its port for the frontend's protocol, if it does (set by
    /// [`Frontends::settle_global`]; the same for every workload).
    pub global: Option<u8>,
}

/// One port of a Service with its endpoints (every family).
#[derive(Clone, Debug)]
pub(crate) struct ServicePortEndpoints {
    pub proto: u8,
    pub port: u16,
    pub endpoints: Vec<Endpoint>,
}

/// A Service as the compiler judges it.
#[derive(Clone, Debug)]
pub(crate) struct ServiceInfo {
    pub object: ObjectRef,
    /// `spec.clusterIP(s)`.
    pub cluster_ips: Vec<IpAddr>,
    /// Every address that kube-proxy answers for the Service: the
    /// ClusterIPs, `spec.externalIPs` and `status.loadBalancer.ingress`.
    pub addresses: Vec<IpAddr>,
    pub ports: Vec<ServicePortEndpoints>,
    /// Set (with the reason) when the Service is over a size limit: its
    /// addresses are denied on every port.
    pub refused: Option<String>,
}

impl ServiceInfo {
    /// Every endpoint address of every port.
    pub fn endpoint_ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ports.iter().flat_map(|p| p.endpoints.iter().map(|e| e.ip))
    }
}

/// The Service frontends at one address.
#[derive(Clone, Debug)]
pub(crate) struct AddressFrontends {
    pub address: IpAddr,
    /// A Service has this address as a ClusterIP: a virtual address the
    /// API server allocates, never a real host. Only then may the
    /// judgement add an allow rule; an external or load-balancer IP may be
    /// a real host the proxy does not intercept, so it only loses ports.
    pub cluster_ip: bool,
    /// A Service at this address is over a size limit: every port of
    /// the address is denied.
    pub refused: Option<String>,
    /// By protocol and port: the Services and the union of their
    /// endpoints of the address's family (kube-proxy may pick any).
    pub ports: Vec<PortFrontend>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct PortFrontend {
    pub proto: u8,
    pub port: u16,
    /// `namespace/name` of the Services at this address and port.
    pub services: Vec<String>,
    pub endpoints: Vec<Endpoint>,
    /// The global policy, as judged, allows this address and port to
    /// every enforced pod (set by [`Frontends::settle_global`]).
    pub global_allowed: bool,
}

/// Every Service address and port of the cluster, with its endpoints,
/// sorted by address, then protocol and port.
#[derive(Clone, Debug, Default)]
pub(crate) struct Frontends {
    pub addresses: Vec<AddressFrontends>,
}

/// Read every Service and its endpoints; bad addresses and Services over
/// the limits are reported.
pub(crate) fn collect(ctx: &mut Ctx<'_>) -> Vec<ServiceInfo> {
    let snapshot = ctx.snapshot;
    let mut slices: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
    for slice in &snapshot.endpoint_slices {
        if let Some(svc) = labels(&slice.metadata).get(SERVICE_NAME_LABEL) {
            slices.entry((namespace(&slice.metadata), svc.as_str())).or_default().push(slice);
        }
    }
    for list in slices.values_mut() {
        list.sort_by_key(|s| name(&s.metadata));
    }
    let mut pods: HashMap<&str, Vec<&Pod>> = HashMap::new();
    for pod in snapshot.pods.iter().filter(|p| !is_finished(p)) {
        pods.entry(namespace(&pod.metadata)).or_default().push(pod);
    }
    for list in pods.values_mut() {
        list.sort_by_key(|p| name(&p.metadata));
    }
    let mut services: Vec<&Service> = snapshot.services.iter().collect();
    // The order of `object_ref` (same kind, a namespace always), without
    // building one per comparison.
    services.sort_by(|a, b| {
        (namespace(&a.metadata), name(&a.metadata)).cmp(&(namespace(&b.metadata), name(&b.metadata)))
    });
    let mut out = Vec::with_capacity(services.len());
    for svc in services {
        let ns = namespace(&svc.metadata);
        let svc_slices = slices.get(&(ns, name(&svc.metadata))).map(Vec::as_slice).unwrap_or_default();
        let svc_pods = pods.get(ns).map(Vec::as_slice).unwrap_or_default();
        if let Some(info) = service_info(ctx, svc, svc_slices, svc_pods) {
            out.push(info);
        }
    }
    out
}

fn service_info(ctx: &mut Ctx<'_>, svc: &Service, slices: &[&EndpointSlice], pods: &[&Pod]) -> Option<ServiceInfo> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        // No address of its own: a DNS alias, which kube-proxy ignores.
        return None;
    }
    let object = object_ref(ObjectKind::Service, &svc.metadata);
    let cluster_ips = service_cluster_ips(ctx, svc);
    let mut addresses = cluster_ips.clone();
    let external: Vec<(String, &str)> = spec
        .external_ips
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, ip)| (format!("spec.externalIPs[{i}]"), ip.as_str()))
        .collect();
    let balancers: Vec<(String, &str)> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, ing)| ing.ip.as_deref().map(|ip| (format!("status.loadBalancer.ingress[{i}].ip"), ip)))
        .collect();
    let limits = [
        check_len(|| "spec.externalIPs".to_owned(), external.len(), MAX_SERVICE_ADDRESSES, "external IPs"),
        check_len(|| "status.loadBalancer.ingress".to_owned(), balancers.len(), MAX_SERVICE_ADDRESSES, "load-balancer ingresses"),
        check_len(|| "spec.ports".to_owned(), spec.ports.as_ref().map_or(0, Vec::len), MAX_LIST, "ports"),
    ];
    for (field, text) in external.iter().chain(&balancers).take(2 * MAX_SERVICE_ADDRESSES) {
        match text.trim().parse::<IpAddr>() {
            Ok(ip) if !addresses.contains(&ip) => addresses.push(ip),
            Ok(_) => {}
            Err(_) => ctx.report(Severity::Error, &object, field.clone(), format!("{text:?} is not an IP address; ignored")),
        }
    }
    if let Some(over) = limits.into_iter().find_map(Result::err) {
        let message = format!("{}; the Service is denied on all its addresses (fail closed)", over.message);
        ctx.report(Severity::Error, &object, over.field, message.clone());
        return Some(ServiceInfo { object, cluster_ips, addresses, ports: Vec::new(), refused: Some(message) });
    }
    // The pods the selector picks, with their addresses (the same for
    // every port); the slices' names, rendered once.
    let selected: Vec<(&Pod, Vec<IpAddr>)> = match spec.selector.as_ref().filter(|s| !s.is_empty()) {
        Some(selector) => pods
            .iter()
            .filter(|p| map_selects(selector, labels(&p.metadata)))
            .map(|p| (*p, quiet_pod_ips(p)))
            .collect(),
        None => Vec::new(),
    };
    let slice_names: Vec<String> =
        slices.iter().map(|s| object_ref(ObjectKind::EndpointSlice, &s.metadata).to_string()).collect();
    let mut ports = Vec::new();
    let mut found: Vec<Found<'_>> = Vec::new();
    for (i, port) in spec.ports.iter().flatten().enumerate() {
        let Some((proto, number)) = service_port(port) else { continue };
        found.clear();
        for (slice, slice_name) in slices.iter().zip(&slice_names) {
            slice_endpoints(ctx, slice, slice_name, port, &mut found);
        }
        for (pod, ips) in &selected {
            let Some(target) = target_port(port, pod, number) else { continue };
            found.extend(ips.iter().map(|ip| Found { ip: *ip, port: Some(target), via: Via::Pod(pod) }));
        }
        let endpoints = dedup_endpoints(&mut found);
        if let Err(over) = check_len(|| format!("spec.ports[{i}]"), endpoints.len(), MAX_SERVICE_ENDPOINTS, "endpoints") {
            let message = format!("{}; the Service is denied on all its addresses (fail closed)", over.message);
            ctx.report(Severity::Error, &object, over.field, message.clone());
            return Some(ServiceInfo { object, cluster_ips, addresses, ports: Vec::new(), refused: Some(message) });
        }
        ports.push(ServicePortEndpoints { proto, port: number, endpoints });
    }
    Some(ServiceInfo { object, cluster_ips, addresses, ports, refused: None })
}

/// An endpoint found for a Service port, before its `via` is rendered.
struct Found<'s> {
    ip: IpAddr,
    port: Option<u16>,
    via: Via<'s>,
}

/// Where an endpoint was found: endpoint `i` of a slice (named), or a pod
/// the selector picks.
enum Via<'s> {
    Slice(&'s str, usize),
    Pod(&'s Pod),
}

impl Via<'_> {
    fn render(&self) -> String {
        match self {
            Via::Slice(slice, i) => {
                let i = i.to_string();
                let mut out = String::with_capacity(slice.len() + i.len() + 12);
                for part in [*slice, " endpoints[", i.as_str(), "]"] {
                    out.push_str(part);
                }
                out
            }
            Via::Pod(pod) => {
                let meta = &pod.metadata;
                format!("Pod {}/{} (selected by the Service)", namespace(meta), name(meta))
            }
        }
    }
}

/// The endpoints sorted by address and port, one per address and port:
/// the one whose `via` sorts first (as sorting whole [`Endpoint`]s and
/// keeping the first of each address and port would). A slice's
/// `EndpointSlice ...` sorts before any `Pod ...`, so only the candidates
/// of the first kind are rendered, and compared when there are several.
fn dedup_endpoints(found: &mut [Found<'_>]) -> Vec<Endpoint> {
    found.sort_by_key(|f| (f.ip, f.port));
    let mut out: Vec<Endpoint> = Vec::with_capacity(found.len());
    for run in found.chunk_by(|a, b| a.ip == b.ip && a.port == b.port) {
        let from_slice = run.iter().any(|f| matches!(f.via, Via::Slice(..)));
        let mut via: Option<String> = None;
        for f in run.iter().filter(|f| matches!(f.via, Via::Slice(..)) == from_slice) {
            let text = f.via.render();
            if via.as_ref().is_none_or(|best| text < *best) {
                via = Some(text);
            }
        }
        if let (Some(first), Some(via)) = (run.first(), via) {
            out.push(Endpoint { ip: first.ip, port: first.port, via, global: None });
        }
    }
    out
}

/// The endpoints `slice` (named `slice_name`) gives for Service port
/// `port` (matched by name and protocol, as kube-proxy does).
fn slice_endpoints<'s>(
    ctx: &mut Ctx<'_>,
    slice: &'s EndpointSlice,
    slice_name: &'s str,
    port: &ServicePort,
    out: &mut Vec<Found<'s>>,
) {
    if slice.address_type == "FQDN" {
        return;
    }
    let want_name = port.name.as_deref().unwrap_or_default();
    let want_proto = port.protocol.as_deref().unwrap_or("TCP");
    let Some(slice_port) = slice.ports.iter().flatten().find(|p| {
        p.name.as_deref().unwrap_or_default() == want_name && p.protocol.as_deref().unwrap_or("TCP") == want_proto
    }) else {
        return;
    };
    let number = slice_port.port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p >= 1);
    for (i, endpoint) in slice.endpoints.iter().enumerate() {
        for (j, text) in endpoint.addresses.iter().enumerate() {
            match text.parse::<IpAddr>() {
                Ok(ip) => out.push(Found { ip, port: number, via: Via::Slice(slice_name, i) }),
                Err(_) => ctx.report(
                    Severity::Error,
                    &object_ref(ObjectKind::EndpointSlice, &slice.metadata),
                    format!("endpoints[{i}].addresses[{j}]"),
                    format!("{text:?} is not an IP address; ignored"),
                ),
            }
        }
    }
}

/// Protocol number and port of a Service port (ports of other protocols,
/// which the API server refuses, have no frontend).
pub(crate) fn service_port(port: &ServicePort) -> Option<(u8, u16)> {
    let proto = match port.protocol.as_deref().unwrap_or("TCP") {
        "TCP" => PROTO_TCP,
        "UDP" => PROTO_UDP,
        "SCTP" => PROTO_SCTP,
        _ => return None,
    };
    let number = u16::try_from(port.port).ok().filter(|p| *p >= 1)?;
    Some((proto, number))
}

/// The backend port a Service port translates to on `pod` (`targetPort`,
/// by number or by the pod's container port name; the Service port when
/// unset). `None` when the pod has no such named port: the EndpointSlice
/// controller then leaves the pod out of that port.
fn target_port(port: &ServicePort, pod: &Pod, service_port: u16) -> Option<u16> {
    match &port.target_port {
        None => Some(service_port),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok().filter(|p| *p >= 1),
        Some(IntOrString::String(name)) => named_port(pod, name, port.protocol.as_deref().unwrap_or("TCP")),
    }
}

impl Frontends {
    /// Every address and port of `services`, each with the endpoints of
    /// its family.
    pub fn of(services: &[ServiceInfo]) -> Self {
        type Ports = BTreeMap<(u8, u16), PortFrontend>;
        let mut by_address: BTreeMap<IpAddr, (bool, Option<String>, Ports)> = BTreeMap::new();
        for svc in services {
            let qualified = svc.object.qualified();
            for addr in &svc.addresses {
                let (cluster_ip, refused, ports) = by_address.entry(*addr).or_default();
                *cluster_ip |= svc.cluster_ips.contains(addr);
                if let Some(reason) = &svc.refused {
                    refused.get_or_insert_with(|| format!("Service {qualified}: {reason}"));
                    continue;
                }
                for port in &svc.ports {
                    let frontend = ports.entry((port.proto, port.port)).or_default();
                    frontend.proto = port.proto;
                    frontend.port = port.port;
                    frontend.services.push(qualified.clone());
                    frontend
                        .endpoints
                        .extend(port.endpoints.iter().filter(|e| e.ip.is_ipv4() == addr.is_ipv4()).cloned());
                }
            }
        }
        let addresses = by_address
            .into_iter()
            .map(|(address, (cluster_ip, refused, ports))| AddressFrontends {
                address,
                cluster_ip,
                refused,
                ports: ports
                    .into_values()
                    .map(|mut f| {
                        f.endpoints.sort();
                        f.endpoints.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
                        f
                    })
                    .collect(),
            })
            .collect();
        Self { addresses }
    }

    /// Record what the global policy decides, which is the same for every
    /// workload: for each endpoint, whether the global rules as found
    /// (`base`) allow it; for each frontend, whether the global policy as
    /// judged (`judged`) allows it.
    pub fn settle_global(&mut self, base: &Lookup<'_>, judged: &Lookup<'_>) {
        for at in &mut self.addresses {
            for f in &mut at.ports {
                f.global_allowed = judged.allows(at.address, f.proto, f.port).is_some();
                for e in &mut f.endpoints {
                    e.global = e.port.and_then(|p| base.allows(e.ip, f.proto, p));
                }
            }
        }
    }

    /// Leave the ClusterIPs of a gateway Service to rule 1 (every port):
    /// its ports there are not judged, unless another Service claims the
    /// same address and port (an external IP that captures it), whose
    /// endpoints are then judged.
    pub fn exempt(&mut self, service: &str, cluster_ips: &[IpAddr]) {
        for at in self.addresses.iter_mut().filter(|at| cluster_ips.contains(&at.address)) {
            at.ports.retain(|f| f.services.iter().any(|s| s != service));
        }
    }

    /// The frontends in explanations (endpoints capped per frontend).
    pub fn explain(&self) -> Vec<ServiceExplain> {
        let mut out = Vec::new();
        for at in &self.addresses {
            let addr = &at.address;
            if let Some(reason) = &at.refused {
                out.push(ServiceExplain {
                    address: *addr,
                    proto: 0,
                    port: 0,
                    services: Vec::new(),
                    endpoints: Vec::new(),
                    endpoint_count: 0,
                    refused: Some(reason.clone()),
                });
            }
            for frontend in &at.ports {
                out.push(ServiceExplain {
                    address: *addr,
                    proto: frontend.proto,
                    port: frontend.port,
                    services: frontend.services.clone(),
                    endpoints: frontend
                        .endpoints
                        .iter()
                        .take(ServiceExplain::MAX_ENDPOINTS)
                        .map(|e| EndpointExplain { address: e.ip, port: e.port, via: e.via.clone() })
                        .collect(),
                    endpoint_count: frontend.endpoints.len(),
                    refused: None,
                });
            }
        }
        out
    }
}
