//! Synthetic clusters for the control-plane bench, as Kubernetes objects
//! (JSON values: written as YAML for the files source, sent as they are
//! to an API server). Deterministic: the same size gives the same cluster.
//!
//! Proportions, per namespace of [`PODS_PER_NAMESPACE`] pods:
//! - Namespace labels: `team: t<i % 10>`, `env: prod|staging`; egress
//!   `enforce` in 5 of 10 namespaces, `audit` in 1, none in 4.
//! - Pods: 25, labelled `app: app-<service>`, `tier: web|db` (1 in 3 web);
//!   [`LOCAL_PODS`] of all pods on `node-1` (spread evenly over the
//!   namespaces), the others on `node-2 … node-<pods/110>`; one IPv4 each
//!   in 10.100.0.0/14, containers with a named port `http` 8080.
//! - Services: one per 5 pods (ClusterIP in 10.96.0.0/16, port 80 to
//!   `http`), each with one EndpointSlice naming its 5 pods.
//! - NetworkPolicies (Egress): every namespace `allow-same-ns-and-dns`
//!   (podSelector `tier: web`; peers: podSelector {} of its namespace on
//!   8080 and `http`, and namespaceSelector `kube-system` + podSelector
//!   `k8s-app: kube-dns` on 53 UDP/TCP); every 2nd namespace `allow-partners`
//!   (namespaceSelector `team: t<i+1>` + podSelector `tier: db` on 5432);
//!   every 3rd `allow-external` (3 ipBlocks, one with an except, on 443).
//!   That is about 1.8 policies per namespace.
//! - Istio ServiceEntries: every 10th namespace one `MESH_INTERNAL`
//!   (a /24 address, exported to its namespace) and one `MESH_EXTERNAL`
//!   (a host, reachable only through the gateway; never resolved).
//! - OSM Egresses: every 5th namespace one, for its `default`
//!   ServiceAccount, to 198.51.100.0/24 on 443 (ipAddresses only: nothing
//!   to resolve, so no DNS traffic leaves the sandbox).
//! - Cluster-wide: kube-system (coredns pods and the kube-dns Service),
//!   istio-system (2 egress-gateway pods, the Istio `Gateway`, their
//!   Service), osm-system (`MeshConfig` with egress policy on).
use serde_json::{json, Value};
use std::net::Ipv4Addr;

pub const PODS_PER_NAMESPACE: usize = 25;
pub const PODS_PER_SERVICE: usize = 5;
pub const LOCAL_PODS: usize = 110;
pub const LOCAL_NODE: &str = "node-1";
/// Pod and Service ranges (`--cluster-cidr`).
/// Both inside 10.96.0.0/12, one of the harness's `--cluster-cidr`s
/// ([`crate::pods::CLUSTER_CIDRS`]), and the Service range of the local
/// API server.
pub const CLUSTER_CIDRS: [&str; 2] = ["10.100.0.0/14", "10.96.0.0/16"];

/// One pod of `node-1`: what its kubelet-style cgroup needs.
#[derive(Clone, Debug)]
pub struct LocalPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// A synthetic cluster: objects grouped by namespace (the files source
/// writes one file per group), and the pods of `node-1`.
pub struct Cluster {
    pub pods: usize,
    /// (group name, objects); the first group is the cluster-wide one.
    pub groups: Vec<(String, Vec<Value>)>,
    pub local: Vec<LocalPod>,
}

impl Cluster {
    pub fn objects(&self) -> usize {
        self.groups.iter().map(|(_, o)| o.len()).sum()
    }

    /// Count of objects of `kind`.
    pub fn count(&self, kind: &str) -> usize {
        self.groups.iter().flat_map(|(_, o)| o).filter(|o| o["kind"] == kind).count()
    }
}

pub fn namespace_name(i: usize) -> String {
    format!("ns-{i:05}")
}

pub fn pod_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 100, 0, 0)) + i as u32 + 1)
}

fn service_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 1, 0)) + i as u32)
}

/// A UID that is unique per pod index.
pub fn pod_uid(i: usize) -> String {
    format!("5e1ec7ed-0000-4000-8000-{i:012x}")
}

/// Egress mode of namespace `i` (None: not enforced).
pub fn mode(i: usize) -> Option<&'static str> {
    match i % 10 {
        0..=4 => Some("enforce"),
        5 => Some("audit"),
        _ => None,
    }
}

pub fn namespace(i: usize, team: usize) -> Value {
    let mut labels = json!({"team": format!("t{team}"), "env": if i.is_multiple_of(3) { "staging" } else { "prod" }});
    if let Some(m) = mode(i) {
        labels["tollgate.dev/egress"] = json!(m);
    }
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace_name(i), "labels": labels}})
}

/// Pod `i` (on `node` with its address when `with_status`).
pub fn pod(i: usize, node: &str) -> Value {
    let ns = namespace_name(i / PODS_PER_NAMESPACE);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i}"), "namespace": ns, "uid": pod_uid(i),
                     "labels": {"app": format!("app-{}", i / PODS_PER_SERVICE), "tier": if i.is_multiple_of(3) { "web" } else { "db" }}},
        "spec": {"nodeName": node, "serviceAccountName": "default",
                 "containers": [{"name": "app", "image": "app:1", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "qosClass": "BestEffort", "podIP": pod_ip(i).to_string(), "podIPs": [{"ip": pod_ip(i).to_string()}]},
    })
}

/// Pod `i` of [`pod`], placed in namespace number `ns` instead of its
/// own: a pod added past the generated ones would otherwise name a
/// namespace that does not exist (the API server refuses it).
pub fn added_pod(i: usize, ns: usize, node: &str) -> Value {
    let mut p = pod(i, node);
    p["metadata"]["namespace"] = json!(namespace_name(ns));
    p
}

/// `allow-same-ns-and-dns` of namespace `ns` with `port` for its own pods.
pub fn same_ns_policy(ns: &str, port: u16) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "allow-same-ns-and-dns", "namespace": ns},
        "spec": {"podSelector": {"matchLabels": {"tier": "web"}}, "policyTypes": ["Egress"], "egress": [
            {"to": [{"podSelector": {}}], "ports": [{"port": port}, {"port": "http"}]},
            {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
             "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
        ]},
    })
}

/// A NetworkPolicy of `count` /32 ipBlocks (in 100.64.0.0/10, shifted by
/// `shift`), 1,000 peers per rule, selecting every pod of `ns`.
pub fn ip_block_policy(ns: &str, name: &str, count: usize, shift: usize) -> Value {
    let base = u32::from(Ipv4Addr::new(100, 64, 0, 0));
    let blocks: Vec<Value> =
        (0..count).map(|i| json!({"ipBlock": {"cidr": format!("{}/32", Ipv4Addr::from(base + (i + shift) as u32))}})).collect();
    let rules: Vec<Value> = blocks.chunks(1_000).map(|c| json!({"to": c, "ports": [{"port": 443}]})).collect();
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": rules},
    })
}

fn cluster_wide() -> Vec<Value> {
    let pod = |ns: &str, name: &str, uid: &str, ip: &str, labels: Value| {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": ns, "uid": uid, "labels": labels},
               "spec": {"nodeName": "node-0", "containers": [{"name": "main", "image": "x"}]},
               "status": {"phase": "Running", "qosClass": "Burstable", "podIP": ip, "podIPs": [{"ip": ip}]}})
    };
    let ns = |name: &str| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    vec![
        ns("kube-system"),
        ns("istio-system"),
        ns("osm-system"),
        pod("kube-system", "coredns-0", "5e1ec7ed-0000-4000-9000-000000000053", "10.99.0.53", json!({"k8s-app": "kube-dns"})),
        pod("kube-system", "coredns-1", "5e1ec7ed-0000-4000-9000-000000000054", "10.99.0.54", json!({"k8s-app": "kube-dns"})),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
               "spec": {"selector": {"k8s-app": "kube-dns"}, "clusterIP": "10.96.0.10",
                        "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}),
        pod("istio-system", "egressgateway-0", "5e1ec7ed-0000-4000-9000-000000000020", "10.99.0.20", json!({"istio": "egressgateway"})),
        pod("istio-system", "egressgateway-1", "5e1ec7ed-0000-4000-9000-000000000021", "10.99.0.21", json!({"istio": "egressgateway"})),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "istio-egressgateway", "namespace": "istio-system"},
               "spec": {"selector": {"istio": "egressgateway"}, "clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
        json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "egress", "namespace": "istio-system"},
               "spec": {"selector": {"istio": "egressgateway"}, "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}}),
        json!({"apiVersion": "config.openservicemesh.io/v1alpha2", "kind": "MeshConfig", "metadata": {"name": "osm-mesh-config", "namespace": "osm-system"},
               "spec": {"featureFlags": {"enableEgressPolicy": true}}}),
    ]
}

/// The cluster of `pods` pods.
pub fn cluster(pods: usize) -> Cluster {
    let namespaces = pods.div_ceil(PODS_PER_NAMESPACE).max(1);
    let nodes = (pods / LOCAL_PODS).max(2);
    let local_every = (pods / LOCAL_PODS).max(1);
    let mut groups = vec![("cluster".to_string(), cluster_wide())];
    let mut local = Vec::new();
    for n in 0..namespaces {
        let ns = namespace_name(n);
        let mut objs = vec![namespace(n, n % 10)];
        let first = n * PODS_PER_NAMESPACE;
        let last = ((n + 1) * PODS_PER_NAMESPACE).min(pods);
        for i in first..last {
            let is_local = i % local_every == 0 && local.len() < LOCAL_PODS;
            let node = if is_local { LOCAL_NODE.to_string() } else { format!("node-{}", 2 + i % (nodes - 1)) };
            if is_local {
                local.push(LocalPod { namespace: ns.clone(), name: format!("pod-{i}"), uid: pod_uid(i) });
            }
            objs.push(pod(i, &node));
        }
        for s in (first / PODS_PER_SERVICE)..last.div_ceil(PODS_PER_SERVICE) {
            let name = format!("svc-{s}");
            objs.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
                             "spec": {"selector": {"app": format!("app-{s}")}, "clusterIP": service_ip(s).to_string(),
                                      "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}));
            let endpoints: Vec<Value> = (s * PODS_PER_SERVICE..((s + 1) * PODS_PER_SERVICE).min(last))
                .map(|i| json!({"addresses": [pod_ip(i).to_string()], "conditions": {"ready": true},
                                "targetRef": {"kind": "Pod", "name": format!("pod-{i}"), "namespace": ns}}))
                .collect();
            objs.push(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                             "metadata": {"name": format!("{name}-x1"), "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
                             "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], "endpoints": endpoints}));
        }
        objs.push(same_ns_policy(&ns, 8080));
        if n % 2 == 0 {
            objs.push(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "allow-partners", "namespace": ns},
                "spec": {"podSelector": {"matchLabels": {"tier": "db"}}, "policyTypes": ["Egress"], "egress": [
                    {"to": [{"namespaceSelector": {"matchLabels": {"team": format!("t{}", (n + 1) % 10)}}, "podSelector": {"matchLabels": {"tier": "db"}}}],
                     "ports": [{"port": 5432}]}]}}));
        }
        if n % 3 == 0 {
            objs.push(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "allow-external", "namespace": ns},
                "spec": {"podSelector": {"matchLabels": {"tier": "web"}}, "policyTypes": ["Egress"], "egress": [
                    {"to": [{"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.128/25"]}},
                            {"ipBlock": {"cidr": format!("198.18.{}.0/24", n % 256)}},
                            {"ipBlock": {"cidr": "192.0.2.10/32"}}],
                     "ports": [{"port": 443}]}]}}));
        }
        if n % 10 == 0 {
            objs.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "vm-db", "namespace": ns},
                "spec": {"hosts": [format!("db.{ns}.internal")], "location": "MESH_INTERNAL", "resolution": "STATIC",
                         "addresses": [format!("192.168.{}.0/24", (n / 10) % 256)], "ports": [{"number": 5432, "name": "pg", "protocol": "TCP"}], "exportTo": ["."]}}));
            objs.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "partner-api", "namespace": ns},
                "spec": {"hosts": [format!("api.partner{n}.example")], "location": "MESH_EXTERNAL", "resolution": "DNS",
                         "ports": [{"number": 443, "name": "https", "protocol": "TLS"}]}}));
        }
        if n % 5 == 0 {
            objs.push(json!({"apiVersion": "policy.openservicemesh.io/v1alpha1", "kind": "Egress", "metadata": {"name": "payments", "namespace": ns},
                "spec": {"sources": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}],
                         "ipAddresses": ["198.51.100.0/24"], "ports": [{"number": 443, "protocol": "tcp"}]}}));
        }
        groups.push((ns, objs));
    }
    Cluster { pods, groups, local }
}

/// A multi-document YAML stream of `objects`.
pub fn to_yaml(objects: &[Value]) -> anyhow::Result<String> {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(o)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportions_and_local_pods() {
        let c = cluster(1_000);
        assert_eq!(c.count("Pod"), 1_000 + 4);
        assert_eq!(c.count("Namespace"), 40 + 3);
        assert_eq!(c.count("Service"), 200 + 2);
        assert_eq!(c.count("EndpointSlice"), 200);
        assert_eq!(c.count("NetworkPolicy"), 40 + 20 + 14);
        assert_eq!(c.count("ServiceEntry"), 8);
        assert_eq!(c.count("Egress"), 8);
        assert_eq!(c.local.len(), LOCAL_PODS);
        let on_node: usize = c.groups.iter().flat_map(|(_, o)| o).filter(|o| o["spec"]["nodeName"] == LOCAL_NODE).count();
        assert_eq!(on_node, LOCAL_PODS);
        // Deterministic.
        assert_eq!(to_yaml(&c.groups[3].1).ok(), to_yaml(&cluster(1_000).groups[3].1).ok());
    }

    #[test]
    fn big_policy_has_rules_of_at_most_1000_peers() {
        let p = ip_block_policy("ns-00000", "big", 10_000, 0);
        let rules = p["spec"]["egress"].as_array().map(Vec::len);
        assert_eq!(rules, Some(10));
        assert_eq!(p["spec"]["egress"][9]["to"][999]["ipBlock"]["cidr"], "100.64.39.15/32");
    }
}
