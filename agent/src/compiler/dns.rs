//! Cluster DNS (rule 2 of the contract): the kube-dns Service in
//! `kube-system`, its pods and endpoints, on port 53 UDP and TCP.
use std::net::IpAddr;

use agent_common::{PortRule, PROTO_TCP, PROTO_UDP, REASON_DNS};

use crate::desired::AllowRule;

use super::ips::{host_net, pod_ips, service_cluster_ips, slice_addresses};
use super::objects::{is_finished, labels, name, namespace};
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
    let mut ips: Vec<IpAddr> = Vec::new();
    let dns_services = snapshot.services.iter().filter(|svc| {
        namespace(&svc.metadata) == DNS_NAMESPACE
            && labels(&svc.metadata)
                .get(DNS_SERVICE_LABEL.0)
                .is_some_and(|v| v == DNS_SERVICE_LABEL.1)
    });
    for svc in dns_services {
        ips.extend(service_cluster_ips(ctx, svc));
        if let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) {
            let pods = snapshot.pods.iter().filter(|pod| {
                namespace(&pod.metadata) == DNS_NAMESPACE
                    && !is_finished(pod)
                    && map_selects_some(selector, labels(&pod.metadata))
            });
            for pod in pods {
                ips.extend(pod_ips(ctx, pod));
            }
        }
        let svc_name = name(&svc.metadata);
        let slices = snapshot.endpoint_slices.iter().filter(|slice| {
            namespace(&slice.metadata) == DNS_NAMESPACE
                && labels(&slice.metadata)
                    .get(SERVICE_NAME_LABEL)
                    .is_some_and(|v| v == svc_name)
        });
        for slice in slices {
            ips.extend(slice_addresses(ctx, slice, |_| true));
        }
    }
    ips.sort();
    ips.dedup();
    ips.into_iter()
        .flat_map(|ip| {
            dns_port_rules().map(|rule| AllowRule {
                net: host_net(ip),
                except: Vec::new(),
                rule,
            })
        })
        .collect()
}
