//! What is kept of each watched object.
//!
//! Fields the compiler never reads are dropped on arrival: the store stays
//! small (every pod of a 50,000-pod cluster is held), and changes to them
//! (status heartbeats, `resourceVersion`, `managedFields`) leave the stored
//! object equal, so they cost no recompile.
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Namespace, Node, NodeSpec, Pod, PodIP, PodSpec, PodStatus, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{NetworkPolicy, ServiceCIDR};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::compiler::sidecar::ISTIO_STATUS_ANNOTATION;

/// The metadata the compiler reads: name, namespace, uid, labels.
pub fn meta(m: ObjectMeta) -> ObjectMeta {
    ObjectMeta { name: m.name, namespace: m.namespace, uid: m.uid, labels: m.labels, ..Default::default() }
}

pub fn namespace(mut o: Namespace) -> Namespace {
    o.metadata = meta(o.metadata);
    o.status = None;
    o
}

pub fn service(mut o: Service) -> Service {
    o.metadata = meta(o.metadata);
    if let Some(status) = &mut o.status {
        status.conditions = None;
    }
    o
}

pub fn endpoint_slice(mut o: EndpointSlice) -> EndpointSlice {
    o.metadata = meta(o.metadata);
    for ep in &mut o.endpoints {
        ep.hints = None;
        ep.zone = None;
        ep.node_name = None;
        ep.deprecated_topology = None;
    }
    o
}

pub fn network_policy(mut o: NetworkPolicy) -> NetworkPolicy {
    o.metadata = meta(o.metadata);
    o
}

pub fn node(o: Node) -> Node {
    Node {
        metadata: ObjectMeta { name: o.metadata.name, uid: o.metadata.uid, ..Default::default() },
        spec: o.spec.map(|s| NodeSpec { pod_cidr: s.pod_cidr, pod_cidrs: s.pod_cidrs, ..Default::default() }),
        status: None,
    }
}

pub fn service_cidr(mut o: ServiceCIDR) -> ServiceCIDR {
    o.metadata = meta(o.metadata);
    o.status = None;
    o
}

fn container(c: Container) -> Container {
    Container {
        name: c.name,
        restart_policy: c.restart_policy,
        ports: c.ports.map(|ports| {
            ports
                .into_iter()
                .map(|p| ContainerPort { container_port: p.container_port, name: p.name, protocol: p.protocol, ..Default::default() })
                .collect()
        }),
        ..Default::default()
    }
}

/// The annotation a kubelet puts on the mirror pod of a static pod: the
/// static pod's own UID, which names its cgroup (the mirror object has a
/// UID of its own).
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// A pod: identity (a static pod's mirror by the UID its cgroup carries),
/// labels, the Istio sidecar annotation, and what the
/// rules read of its spec (node, host network, ServiceAccount, runtime
/// class, container names and ports) and status (phase and addresses).
pub fn pod(o: Pod) -> Pod {
    let Pod { metadata, spec, status } = o;
    let sidecar_annotation = metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ISTIO_STATUS_ANNOTATION))
        .map(|v| [(ISTIO_STATUS_ANNOTATION.to_owned(), v.clone())].into_iter().collect());
    let mirror_uid = metadata.annotations.as_ref().and_then(|a| a.get(MIRROR_ANNOTATION)).filter(|v| !v.is_empty()).cloned();
    let mut m = meta(metadata);
    m.annotations = sidecar_annotation;
    if mirror_uid.is_some() {
        m.uid = mirror_uid;
    }
    let spec = spec.map(|s| PodSpec {
        node_name: s.node_name,
        host_network: s.host_network,
        service_account_name: s.service_account_name,
        runtime_class_name: s.runtime_class_name,
        containers: s.containers.into_iter().map(container).collect(),
        init_containers: s.init_containers.map(|c| c.into_iter().map(container).collect()),
        ..Default::default()
    });
    let status = status.map(|s| PodStatus {
        phase: s.phase,
        pod_ip: s.pod_ip,
        pod_ips: s.pod_ips.map(|ips| ips.into_iter().map(|p| PodIP { ip: p.ip }).collect()),
        ..Default::default()
    });
    Pod { metadata: m, spec, status }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodCondition;

    #[test]
    fn pod_keeps_what_the_rules_read_and_drops_heartbeats() {
        let mut p = Pod::default();
        p.metadata.name = Some("p".into());
        p.metadata.namespace = Some("n".into());
        p.metadata.uid = Some("u".into());
        p.metadata.resource_version = Some("17".into());
        p.metadata.labels = Some([("app".to_owned(), "x".to_owned())].into());
        p.metadata.annotations = Some([
            (ISTIO_STATUS_ANNOTATION.to_owned(), "{}".to_owned()),
            ("kubectl.kubernetes.io/last-applied-configuration".to_owned(), "{...}".to_owned()),
        ].into());
        p.spec = Some(PodSpec {
            node_name: Some("node-1".into()),
            containers: vec![Container {
                name: "c".into(),
                image: Some("img".into()),
                ports: Some(vec![ContainerPort { container_port: 80, name: Some("http".into()), ..Default::default() }]),
                ..Default::default()
            }],
            ..Default::default()
        });
        p.status = Some(PodStatus {
            phase: Some("Running".into()),
            pod_ips: Some(vec![PodIP { ip: "10.0.0.1".into() }]),
            conditions: Some(vec![PodCondition { type_: "Ready".into(), status: "True".into(), ..Default::default() }]),
            ..Default::default()
        });
        let s = pod(p.clone());
        assert_eq!(s.metadata.resource_version, None);
        assert_eq!(s.metadata.annotations.as_ref().map(|a| a.len()), Some(1));
        assert_eq!(s.metadata.labels, p.metadata.labels);
        let spec = s.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some("node-1"));
        assert_eq!(spec.containers[0].image, None);
        assert_eq!(spec.containers[0].ports.as_ref().map(|p| p[0].container_port), Some(80));
        let status = s.status.as_ref().expect("status");
        assert_eq!(status.conditions, None);
        assert_eq!(status.pod_ips.as_ref().map(|p| p[0].ip.as_str()), Some("10.0.0.1"));
        // A heartbeat (new resourceVersion, new conditions) strips to the same object.
        let mut beat = p;
        beat.metadata.resource_version = Some("18".into());
        beat.status.as_mut().expect("status").conditions = None;
        assert_eq!(pod(beat), s);
    }

    #[test]
    fn a_mirror_pod_carries_its_static_pods_uid() {
        let mut p = Pod::default();
        p.metadata.name = Some("kube-proxy-node-1".into());
        p.metadata.uid = Some("mirror-object-uid".into());
        p.metadata.annotations = Some([(MIRROR_ANNOTATION.to_owned(), "0a1b2c3d4e5f60718293a4b5c6d7e8f9".to_owned())].into());
        assert_eq!(pod(p).metadata.uid.as_deref(), Some("0a1b2c3d4e5f60718293a4b5c6d7e8f9"));
    }
}
