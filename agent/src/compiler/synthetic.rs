//! A synthetic cluster for compile benchmarks (issue 9's control-plane
//! bench): namespaces, pods, Services with their EndpointSlices,
//! NetworkPolicies, `MESH_INTERNAL` ServiceEntries and OSM Egresses in
//! realistic proportions, with [`SyntheticSpec::local_pods`] pods on
//! `node-1`. Deterministic: the same spec gives the same snapshot.
//!
//! `cargo run --release -p agent --example compile_bench -- 50000` times
//! `compile` and `bind` on it.
use serde_json::{json, Value};

use crate::model::Snapshot;

/// Shape of a synthetic cluster.
#[derive(Clone, Debug)]
pub struct SyntheticSpec {
    pub pods: usize,
    /// Pods per namespace.
    pub pods_per_namespace: usize,
    /// Pods behind each Service.
    pub pods_per_service: usize,
    /// Pods on `node-1` (the rest on other nodes).
    pub local_pods: usize,
}

impl SyntheticSpec {
    pub fn new(pods: usize) -> Self {
        Self { pods, pods_per_namespace: 50, pods_per_service: 5, local_pods: 110 }
    }
}

/// The node whose pods the benchmark compiles for.
pub const LOCAL_NODE: &str = "node-1";
/// The host name every fifth namespace's Egress names (its groups are
/// bound again on each DNS answer).
pub const SYNTHETIC_HOST: &str = "payments.example.com";

/// Pod and Service ranges of the synthetic cluster.
pub const CLUSTER_CIDRS: [&str; 2] = ["10.128.0.0/9", "10.96.0.0/12"];

fn pod_ip(i: usize) -> String {
    let n = 0x0a80_0000u32 + i as u32 + 1;
    std::net::Ipv4Addr::from(n).to_string()
}

fn service_ip(i: usize) -> String {
    let n = 0x0a60_0000u32 + i as u32 + 16;
    std::net::Ipv4Addr::from(n).to_string()
}

fn typed<T: serde::de::DeserializeOwned>(value: Value) -> T {
    match serde_json::from_value(value) {
        Ok(v) => v,
        Err(e) => panic!("synthetic object does not decode: {e}"),
    }
}

/// Build the cluster. Every fourth namespace is not enforced; every other
/// one has a default-deny NetworkPolicy plus an allow to its own
/// namespace, cluster DNS and one external range, and an allow from its
/// db pods to the db pods of the next team's namespaces (cross-namespace
/// peers, as in the control-plane bench); every third an allow to three
/// ipBlocks; every namespace has an
/// OSM Egress for its `default` ServiceAccount (every fifth with the host
/// name [`SYNTHETIC_HOST`]); every tenth a
/// `MESH_INTERNAL` ServiceEntry (exported to its own namespace).
pub fn synthetic_cluster(spec: &SyntheticSpec) -> Snapshot {
    let mut snap = Snapshot::new();
    let namespaces = spec.pods.div_ceil(spec.pods_per_namespace.max(1)).max(1);
    let local_every = (spec.pods / spec.local_pods.max(1)).max(1);
    snap.namespaces.push(typed(json!({"metadata": {"name": "kube-system"}})));
    snap.namespaces.push(typed(json!({"metadata": {"name": "istio-system"}})));
    snap.pods.push(typed(json!({
        "metadata": {"name": "coredns", "namespace": "kube-system", "uid": "uid-coredns", "labels": {"k8s-app": "kube-dns"}},
        "spec": {"nodeName": "node-0", "containers": [{"name": "coredns", "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]},
        "status": {"phase": "Running", "podIP": "10.127.0.53", "podIPs": [{"ip": "10.127.0.53"}]},
    })));
    snap.services.push(typed(json!({
        "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
        "spec": {"selector": {"k8s-app": "kube-dns"}, "clusterIP": "10.96.0.10", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]},
    })));
    snap.pods.push(typed(json!({
        "metadata": {"name": "egressgateway", "namespace": "istio-system", "uid": "uid-egw", "labels": {"istio": "egressgateway"}},
        "spec": {"nodeName": "node-0", "containers": [{"name": "istio-proxy"}]},
        "status": {"phase": "Running", "podIP": "10.127.0.20", "podIPs": [{"ip": "10.127.0.20"}]},
    })));
    snap.gateways.push(typed(json!({"metadata": {"name": "egress", "namespace": "istio-system"}, "spec": {"selector": {"istio": "egressgateway"}}})));
    snap.mesh_configs.push(typed(json!({
        "metadata": {"name": "osm-mesh-config", "namespace": "osm-system"},
        "spec": {"featureFlags": {"enableEgressPolicy": true}},
    })));
    for n in 0..namespaces {
        let ns = format!("ns-{n}");
        let mut labels = json!({"team": format!("t{}", n % 7)});
        if n % 4 != 3 {
            labels["tollgate.dev/egress"] = json!(if n % 8 == 0 { "audit" } else { "enforce" });
        }
        snap.namespaces.push(typed(json!({"metadata": {"name": ns, "labels": labels}})));
        if n % 2 == 0 {
            snap.network_policies.push(typed(json!({
                "metadata": {"name": "default-deny", "namespace": ns},
                "spec": {"podSelector": {}, "policyTypes": ["Egress"]},
            })));
            snap.network_policies.push(typed(json!({
                "metadata": {"name": "allow-own-and-dns", "namespace": ns},
                "spec": {"podSelector": {"matchLabels": {"tier": "web"}}, "policyTypes": ["Egress"], "egress": [
                    {"to": [{"podSelector": {}}], "ports": [{"port": 8080}, {"port": "http"}]},
                    {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                     "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                    {"to": [{"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.128/25"]}}], "ports": [{"port": 443}]},
                ]},
            })));
            // Cross-namespace peers: the db pods of every namespace of
            // the next team (a seventh of the cluster).
            snap.network_policies.push(typed(json!({
                "metadata": {"name": "allow-partners", "namespace": ns},
                "spec": {"podSelector": {"matchLabels": {"tier": "db"}}, "policyTypes": ["Egress"], "egress": [
                    {"to": [{"namespaceSelector": {"matchLabels": {"team": format!("t{}", (n + 1) % 7)}}, "podSelector": {"matchLabels": {"tier": "db"}}}],
                     "ports": [{"port": 5432}]},
                ]},
            })));
        }
        if n % 3 == 0 {
            snap.network_policies.push(typed(json!({
                "metadata": {"name": "allow-external", "namespace": ns},
                "spec": {"podSelector": {"matchLabels": {"tier": "web"}}, "policyTypes": ["Egress"], "egress": [
                    {"to": [{"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.128/25"]}},
                            {"ipBlock": {"cidr": format!("198.18.{}.0/24", n % 256)}},
                            {"ipBlock": {"cidr": "192.0.2.10/32"}}],
                     "ports": [{"port": 443}]},
                ]},
            })));
        }
        let hosts = if n % 5 == 0 { json!([SYNTHETIC_HOST]) } else { json!([]) };
        snap.egresses.push(typed(json!({
            "metadata": {"name": "payments", "namespace": ns},
            "spec": {"sources": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}],
                     "ipAddresses": ["198.51.100.0/24"], "hosts": hosts, "ports": [{"number": 443, "protocol": "https"}]},
        })));
        if n % 10 == 0 {
            snap.service_entries.push(typed(json!({
                "metadata": {"name": "vm-db", "namespace": ns},
                "spec": {"hosts": [format!("db.{ns}.internal")], "location": "MESH_INTERNAL", "addresses": [format!("192.168.{}.0/24", n % 256)], "exportTo": ["."]},
            })));
        }
    }
    let per_ns = spec.pods_per_namespace.max(1);
    let per_svc = spec.pods_per_service.max(1);
    for i in 0..spec.pods {
        let ns = format!("ns-{}", i / per_ns);
        let svc = i / per_svc;
        let node = if i % local_every == 0 && i / local_every < spec.local_pods { LOCAL_NODE.to_owned() } else { format!("node-{}", 2 + i % 500) };
        let tier = if i % 3 == 0 { "web" } else { "db" };
        snap.pods.push(typed(json!({
            "metadata": {"name": format!("pod-{i}"), "namespace": ns, "uid": format!("uid-{i}"), "labels": {"app": format!("app-{svc}"), "tier": tier}},
            "spec": {"nodeName": node, "containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": pod_ip(i), "podIPs": [{"ip": pod_ip(i)}]},
        })));
    }
    for s in 0..spec.pods.div_ceil(per_svc) {
        let first = s * per_svc;
        let ns = format!("ns-{}", first / per_ns);
        let name = format!("svc-{s}");
        snap.services.push(typed(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": format!("app-{s}")}, "clusterIP": service_ip(s), "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        })));
        let endpoints: Vec<Value> = (first..(first + per_svc).min(spec.pods))
            .map(|i| json!({"addresses": [pod_ip(i)], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": format!("pod-{i}"), "namespace": ns}}))
            .collect();
        snap.endpoint_slices.push(typed(json!({
            "metadata": {"name": format!("{name}-abcde"), "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints,
        })));
    }
    snap
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::{bind, compile, CompilerConfig};

    #[test]
    fn the_synthetic_cluster_compiles_cleanly() {
        let spec = SyntheticSpec::new(1_000);
        let snap = synthetic_cluster(&spec);
        assert_eq!(snap.pods.len(), 1_002);
        assert_eq!(snap.services.len(), 201);
        let config = CompilerConfig {
            node_name: Some(LOCAL_NODE.into()),
            cluster_cidrs: CLUSTER_CIDRS.iter().map(|c| c.parse().expect("cidr")).collect(),
            ..Default::default()
        };
        let policy = compile(&snap, &config);
        assert!(policy.diagnostics.is_empty(), "{:?}", policy.diagnostics);
        assert!(policy.ignored.is_empty(), "{:?}", policy.ignored);
        assert!(policy.groups.iter().any(|g| g.prepared.is_none()), "some groups use the host name");
        let resolved = [(SYNTHETIC_HOST.to_owned(), vec!["192.0.2.80".parse().expect("ip")])].into();
        let state = bind(&policy, &resolved);
        assert_eq!(state.workloads.len(), 110);
        assert!(state.policies.len() > 3, "several rule sets");
        assert!(state.policies.values().flatten().any(|e| e.net.to_string() == "192.0.2.80/32"));
    }
}
