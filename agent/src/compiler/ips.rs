//! Addresses read from pods, Services and EndpointSlices; bad ones are
//! reported with their field path and skipped.
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::desired::Severity;
use crate::model::{ObjectKind, ObjectRef};

use super::objects::{object_ref, pod_ref};
use super::Ctx;

/// The single-address net of `ip` (/32 or /128).
pub fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

/// `status.podIP` and `status.podIPs` of a pod, deduplicated, in order.
pub(crate) fn pod_ips(ctx: &mut Ctx<'_>, pod: &Pod) -> Vec<IpAddr> {
    parse_ips(ctx, &pod_ref(pod), pod_ip_fields(pod))
}

/// A pod's IPs without reporting bad ones (`pod_ips` reports them once).
pub(crate) fn quiet_pod_ips(pod: &Pod) -> Vec<IpAddr> {
    pod_ip_texts(pod).filter_map(|text| text.parse().ok()).collect()
}

/// A pod's IPs as [`pod_ips`] finds them (deduplicated, in order), without
/// reporting, and whether some address is not valid (then [`pod_ips`]
/// reports it).
pub(crate) fn quiet_pod_ips_checked(pod: &Pod) -> (Vec<IpAddr>, bool) {
    let mut found = Vec::new();
    let mut bad = false;
    for text in pod_ip_texts(pod) {
        if text.is_empty() {
            continue;
        }
        match text.parse::<IpAddr>() {
            Ok(ip) if !found.contains(&ip) => found.push(ip),
            Ok(_) => {}
            Err(_) => bad = true,
        }
    }
    (found, bad)
}

/// The address fields of a pod's status, as [`pod_ip_fields`] lists
/// them, without their paths (only reports need those).
fn pod_ip_texts(pod: &Pod) -> impl Iterator<Item = &str> {
    let status = pod.status.as_ref();
    let pod_ip = status.and_then(|s| s.pod_ip.as_deref());
    let pod_ips = status.and_then(|s| s.pod_ips.as_ref()).into_iter().flatten().map(|ip| ip.ip.as_str());
    pod_ip.into_iter().chain(pod_ips)
}

/// The address fields of a pod's status, with their paths.
fn pod_ip_fields(pod: &Pod) -> Vec<(String, &str)> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let mut fields: Vec<(String, &str)> = Vec::new();
    if let Some(ip) = status.pod_ip.as_deref() {
        fields.push(("status.podIP".to_owned(), ip));
    }
    for (i, ip) in status.pod_ips.iter().flatten().enumerate() {
        fields.push((format!("status.podIPs[{i}].ip"), ip.ip.as_str()));
    }
    fields
}

/// `spec.clusterIP` and `spec.clusterIPs` of a Service (none for headless
/// and ExternalName Services).
pub(crate) fn service_cluster_ips(ctx: &mut Ctx<'_>, svc: &Service) -> Vec<IpAddr> {
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    let mut candidates: Vec<(String, &str)> = Vec::new();
    if let Some(ip) = spec.cluster_ip.as_deref() {
        candidates.push(("spec.clusterIP".to_owned(), ip));
    }
    for (i, ip) in spec.cluster_ips.iter().flatten().enumerate() {
        candidates.push((format!("spec.clusterIPs[{i}]"), ip.as_str()));
    }
    candidates.retain(|(_, text)| *text != "None");
    parse_ips(ctx, &object_ref(ObjectKind::Service, &svc.metadata), candidates)
}

/// Addresses of the endpoints of `slice` for which `keep(endpoint index)`
/// holds. FQDN slices carry no addresses.
pub(crate) fn slice_addresses(
    ctx: &mut Ctx<'_>,
    slice: &EndpointSlice,
    keep: impl Fn(usize) -> bool,
) -> Vec<IpAddr> {
    if slice.address_type == "FQDN" {
        return Vec::new();
    }
    let mut found = Vec::new();
    for (i, endpoint) in slice.endpoints.iter().enumerate() {
        if !keep(i) {
            continue;
        }
        for (j, text) in endpoint.addresses.iter().enumerate() {
            match text.parse::<IpAddr>() {
                Ok(ip) if !found.contains(&ip) => found.push(ip),
                Ok(_) => {}
                Err(_) => ctx.report(
                    Severity::Error,
                    &object_ref(ObjectKind::EndpointSlice, &slice.metadata),
                    format!("endpoints[{i}].addresses[{j}]"),
                    format!("{text:?} is not an IP address; ignored"),
                ),
            }
        }
    }
    found
}

/// Parses (field, text) address candidates of one object, in order and
/// without duplicates; empty ones are skipped and bad ones reported.
fn parse_ips(ctx: &mut Ctx<'_>, object: &ObjectRef, candidates: Vec<(String, &str)>) -> Vec<IpAddr> {
    let mut found = Vec::new();
    for (field, text) in candidates {
        if text.is_empty() {
            continue;
        }
        match text.parse::<IpAddr>() {
            Ok(ip) if !found.contains(&ip) => found.push(ip),
            Ok(_) => {}
            Err(_) => ctx.report(Severity::Error, object, field, format!("{text:?} is not an IP address; ignored")),
        }
    }
    found
}
