//! Services in front of NetworkPolicy peers.
//!
//! Kubernetes applies NetworkPolicy after a Service address is translated
//! to a backend pod. Tollgate's hooks run inside the pod, before that
//! translation (kube-proxy translates on the node, after the packet has
//! left the pod), so they see the ClusterIP the application named. A
//! ClusterIP port is therefore allowed when the policy allows at least one
//! of the Service's backends on the port it translates to. With backends
//! the policy treats differently, the translation may pick one it would
//! not allow: the README lists this under the known limits.

use agent_common::{PortRule, PROTO_SCTP, PROTO_TCP, PROTO_UDP, REASON_NETWORK_POLICY};
use k8s_openapi::api::core::v1::{Pod, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::desired::AllowRule;
use crate::model::ObjectKind;

use super::ips::{host_net, service_cluster_ips};
use super::objects::{labels, namespace, object_ref, pod_ref};
use super::selectors::map_selects_some;
use super::Ctx;

/// Push ClusterIP rules for the Services whose selector picks one of
/// `pods` that `allows(pod, proto, target port, ipv6)`: a ClusterIP of one
/// family translates to a backend address of the same family.
pub(crate) fn push_services(
    ctx: &mut Ctx<'_>,
    out: &mut Vec<AllowRule>,
    pods: &[&Pod],
    allows: impl Fn(&Pod, u8, u16, bool) -> bool,
    origin: &str,
) {
    let snapshot = ctx.snapshot;
    for svc in &snapshot.services {
        let Some(spec) = svc.spec.as_ref() else { continue };
        let Some(selector) = spec.selector.as_ref() else { continue };
        let svc_ns = namespace(&svc.metadata);
        let backends: Vec<&Pod> = pods
            .iter()
            .copied()
            .filter(|p| namespace(&p.metadata) == svc_ns && map_selects_some(selector, labels(&p.metadata)))
            .collect();
        if backends.is_empty() {
            continue;
        }
        let svc_ref = object_ref(ObjectKind::Service, &svc.metadata).qualified();
        for ip in service_cluster_ips(ctx, svc) {
            for port in spec.ports.iter().flatten() {
                let Some((proto, number)) = service_port(port) else { continue };
                let via = backends.iter().find(|pod| {
                    target_port(port, pod, number).is_some_and(|target| allows(pod, proto, target, ip.is_ipv6()))
                });
                if let Some(pod) = via {
                    out.push(AllowRule {
                        net: host_net(ip),
                        except: Vec::new(),
                        rule: PortRule { proto, reason: REASON_NETWORK_POLICY, port_lo: number, port_hi: number },
                        origin: format!("{origin} (Service {svc_ref} port {number} to pod {})", pod_ref(pod).qualified()),
                    });
                }
            }
        }
    }
}

fn service_port(port: &ServicePort) -> Option<(u8, u16)> {
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
/// unset).
fn target_port(port: &ServicePort, pod: &Pod, service_port: u16) -> Option<u16> {
    match &port.target_port {
        None => Some(service_port),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok().filter(|p| *p >= 1),
        Some(IntOrString::String(name)) => {
            super::network_policy::named_port(pod, name, port.protocol.as_deref().unwrap_or("TCP"))
        }
    }
}
