//! Cluster DNS (rule 2 of the contract): the kube-dns Service in
//! `kube-system`, its pods and endpoints, on port 53 UDP and TCP.
use std::net::IpAddr;

use agent_common::{PortRule, PROTO_TCP, PROTO_UDP, REASON_DNS};

use crate::desired::AllowRule;
use crate::model::ObjectKind;

use super::ips::{host_net, pod_ips, service_cluster_ips, slice_addresses};
use super::objects::{is_finished, labels, name, namespace, object_ref, pod_ref};
use super::selectors::map_selects_some;
use super::Ctx;

pub const DNS_NAMESPACE: &str = "kube-system";
pub const DNS_SERVICE_LABEL: (&str, &str) = ("k8s-app", "kube-dns");
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const DNS_PORT: u16 = 53;

/// The two port rules of cluster DNS.
pub fn dns_port_rules() -> [PortRule; 2] {
    [PROTO_UDP, PROTO_TCP].map(|proto| PortRule {
        proto,
        reason: REASON_DNS,
        port_lo: DNS_PORT,
        port_hi: DNS_PORT,
    })
}

pub(crate) fn dns_rules(ctx: &mut Ctx<'_>) -> Vec<AllowRule> {
    let snapshot = ctx.snapshot;
    let mut ips: Vec<(IpAddr, String)> = Vec::new();
    let mut dns_services: Vec<_> = snapshot
        .services
        .iter()
        .filter(|svc| {
            namespace(&svc.metadata) == DNS_NAMESPACE
                && labels(&svc.metadata)
                    .get(DNS_SERVICE_LABEL.0)
                    .is_some_and(|v| v == DNS_SERVICE_LABEL.1)
        })
        .collect();
    // Sorted, so that an address shared by several sources is named by
    // the same one whatever the order of the objects.
    dns_services.sort_by_key(|svc| name(&svc.metadata).to_owned());
    for svc in dns_services {
        let svc_ref = object_ref(ObjectKind::Service, &svc.metadata).qualified();
        let origin = format!("cluster DNS Service {svc_ref}");
        ips.extend(service_cluster_ips(ctx, svc).into_iter().map(|ip| (ip, origin.clone())));
        if let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) {
            let mut pods: Vec<_> = snapshot
                .pods
                .iter()
                .filter(|pod| {
                    namespace(&pod.metadata) == DNS_NAMESPACE
                        && !is_finished(pod)
                        && map_selects_some(selector, labels(&pod.metadata))
                })
                .collect();
            pods.sort_by_key(|pod| name(&pod.metadata).to_owned());
            for pod in pods {
                let origin = format!("cluster DNS pod {} (Service {svc_ref})", pod_ref(pod).qualified());
                ips.extend(pod_ips(ctx, pod).into_iter().map(|ip| (ip, origin.clone())));
            }
        }
        let svc_name = name(&svc.metadata);
        let mut slices: Vec<_> = snapshot
            .endpoint_slices
            .iter()
            .filter(|slice| {
                namespace(&slice.metadata) == DNS_NAMESPACE
                    && labels(&slice.metadata)
                        .get(SERVICE_NAME_LABEL)
                        .is_some_and(|v| v == svc_name)
            })
            .collect();
        slices.sort_by_key(|slice| name(&slice.metadata).to_owned());
        for slice in slices {
            let origin = format!("cluster DNS endpoint (Service {svc_ref})");
            ips.extend(slice_addresses(ctx, slice, |_| true).into_iter().map(|ip| (ip, origin.clone())));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    ips.retain(|(ip, _)| seen.insert(*ip));
    ips.sort();
    ips.into_iter()
        .flat_map(|(ip, origin)| {
            dns_port_rules().map(|rule| AllowRule {
                net: host_net(ip),
                except: Vec::new(),
                rule,
                origin: origin.clone(),
            })
        })
        .collect()
}
