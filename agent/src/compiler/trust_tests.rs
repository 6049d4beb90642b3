//! The tenant-object attacks of issue 8 §3: objects in a namespace that
//! is not trusted (no special rights) must not widen egress for pods of
//! other namespaces. Each case asserts exactly what the compiler before
//! the trust rules granted (and so fails on it).
use agent_common::{PortRule, POLICY_GLOBAL, PROTO_TCP, REASON_GATEWAY};

use super::tests::{compile, config, gateway, global_nets, ns, pod, rules_at, set, nets, snapshot, trusted_ns, with_hosts, workload};
use super::*;
use crate::desired::DesiredState;

const CLUSTER: &str = "10.244.0.0/16";

fn rules_of(state: &DesiredState) -> Vec<(&str, &str)> {
    state.ignored.iter().map(|i| (i.object.as_str(), i.rule.as_str())).collect()
}

/// An enforced victim pod; namespace `tenant` (not enforced, not trusted)
/// has no Namespace object unless a test adds one.
fn tenant() -> Vec<String> {
    vec![ns("victim", Some("enforce")), pod("victim", "app", "node-1", "10.244.0.1", "app: app")]
}

#[test]
fn an_istio_gateway_in_an_untrusted_namespace_does_not_make_its_pod_a_gateway() {
    let mut docs = tenant();
    docs.push(gateway("tenant", "mine", "escape: me"));
    docs.push(pod("tenant", "relay", "node-1", "10.244.0.66", "escape: me"));
    let state = compile(&snapshot(&docs), &config(&[CLUSTER]));
    assert!(global_nets(&state).is_empty(), "{:?}", global_nets(&state));
    assert_eq!(workload(&state, "tenant", "relay").flags, 0);
    assert_eq!(rules_of(&state), [("Pod tenant/relay", "untrusted-gateway-pod")]);
    // The same Gateway selecting a pod of a trusted namespace works (the
    // Gateway object may live anywhere, as in Istio's guide).
    docs.push(pod("istio-system", "egw", "node-2", "10.244.1.20", "escape: me"));
    let state = compile(&snapshot(&docs), &config(&[CLUSTER]));
    assert_eq!(global_nets(&state), ["10.244.1.20/32"]);
}

#[test]
fn a_gateway_label_in_an_untrusted_namespace_makes_no_gateway() {
    let mut docs = tenant();
    docs.push(pod("tenant", "squid", "node-1", "10.244.0.67", "tollgate.dev/egress-gateway: \"true\""));
    let state = compile(&snapshot(&docs), &config(&[CLUSTER]));
    assert!(global_nets(&state).is_empty());
    assert_eq!(rules_of(&state), [("Pod tenant/squid", "untrusted-gateway-pod")]);
    let w = workload(&state, "tenant", "squid");
    assert_eq!((w.mode, w.flags), (Mode::Off, 0), "an ordinary unenforced pod");
}

#[test]
fn a_pending_gateway_pod_and_a_hand_written_slice_open_nothing() {
    // Even in a trusted namespace: a gateway pod without an address
    // grants nothing, and a slice pointing at it makes no gateway of
    // 203.0.113.5 or 169.254.169.254.
    let pending = "apiVersion: v1\nkind: Pod\nmetadata: {name: gw, namespace: istio-system, uid: u-gw, labels: {tollgate.dev/egress-gateway: 'true'}}\nspec: {nodeName: node-2, containers: [{name: c, image: i}]}\nstatus: {phase: Pending}\n".to_owned();
    let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: gw-x, namespace: istio-system, labels: {kubernetes.io/service-name: gw}}\naddressType: IPv4\nports: [{name: '', port: 80, protocol: TCP}]\nendpoints:\n- addresses: [203.0.113.5, 169.254.169.254]\n  targetRef: {kind: Pod, name: gw, namespace: istio-system}\n".to_owned();
    let service = "apiVersion: v1\nkind: Service\nmetadata: {name: gw, namespace: istio-system}\nspec: {clusterIP: 10.96.0.30, ports: [{port: 80}]}\n".to_owned();
    let mut docs = tenant();
    docs.extend([pending, slice.clone(), service, slice.replace("namespace: istio-system, labels", "namespace: tenant, labels")]);
    let state = compile(&snapshot(&docs), &config(&[CLUSTER, "10.96.0.0/12"]));
    assert!(global_nets(&state).is_empty(), "{:?}", global_nets(&state));
    assert_eq!(rules_of(&state), [("Pod istio-system/gw", "gateway-without-address")]);
    // And the Service in front of the slice is denied to the victim,
    // although its ClusterIP is inside the cluster CIDRs.
    let id = workload(&state, "victim", "app").policy;
    assert!(!rules_at(&state, id, "10.96.0.30/32").iter().any(|r| r.matches(PROTO_TCP, 80)));
}

#[test]
fn a_mesh_internal_service_entry_of_an_untrusted_namespace_opens_only_its_own() {
    let se = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: open, namespace: tenant}\nspec:\n  hosts: [all.internal]\n  location: MESH_INTERNAL\n  addresses: [0.0.0.0/0]\n  endpoints: [{address: metadata.internal}]\n  exportTo: ['*']\n".to_owned();
    let mut docs = tenant();
    docs.push(ns("tenant", Some("enforce")));
    docs.push(pod("tenant", "own", "node-1", "10.244.0.2", ""));
    docs.push(se);
    let cfg = with_hosts(config(&[CLUSTER]), &[("metadata.internal", &["169.254.169.254"])]);
    let state = compile(&snapshot(&docs), &cfg);
    let victim = workload(&state, "victim", "app").policy;
    assert_eq!(nets(&state, victim), set(&[CLUSTER]), "nothing from tenant's entry");
    let own = workload(&state, "tenant", "own").policy;
    assert_eq!(nets(&state, own), set(&["0.0.0.0/0", CLUSTER, "169.254.169.254/32"]));
    assert_eq!(rules_of(&state), [("ServiceEntry tenant/open", "untrusted-mesh-internal-export")]);
}

fn osm_egress(ns: &str, source_ns: &str) -> String {
    format!("apiVersion: policy.openservicemesh.io/v1alpha1\nkind: Egress\nmetadata: {{name: out, namespace: {ns}}}\nspec:\n  sources: [{{kind: ServiceAccount, name: default, namespace: {source_ns}}}]\n  ipAddresses: [203.0.113.0/24]\n  ports: [{{number: 443, protocol: tcp}}]\n")
}

fn mesh_config(ns: &str) -> String {
    format!("apiVersion: config.openservicemesh.io/v1alpha2\nkind: MeshConfig\nmetadata: {{name: osm-mesh-config, namespace: {ns}}}\nspec: {{featureFlags: {{enableEgressPolicy: true}}}}\n")
}

#[test]
fn a_mesh_config_of_an_untrusted_namespace_is_not_read() {
    let mut docs = tenant();
    docs.push(mesh_config("tenant"));
    docs.push(osm_egress("victim", "victim"));
    let state = compile(&snapshot(&docs), &config(&[CLUSTER]));
    let id = workload(&state, "victim", "app").policy;
    assert_eq!(nets(&state, id), set(&[CLUSTER]), "egress policy stays off");
    assert!(state.explain.osm.is_none());
    assert_eq!(rules_of(&state), [("MeshConfig tenant/osm-mesh-config", "untrusted-mesh-config")]);
    // In osm-system (trusted by default) it is read.
    docs.push(mesh_config("osm-system"));
    let state = compile(&snapshot(&docs), &config(&[CLUSTER]));
    let id = workload(&state, "victim", "app").policy;
    assert!(nets(&state, id).contains("203.0.113.0/24"));
}

#[test]
fn an_egress_of_an_untrusted_namespace_grants_only_its_own_service_accounts() {
    let mut docs = tenant();
    docs.push(mesh_config("osm-system"));
    docs.push(osm_egress("tenant", "victim"));
    let state = compile(&snapshot(&docs), &config(&[CLUSTER]));
    let id = workload(&state, "victim", "app").policy;
    assert_eq!(nets(&state, id), set(&[CLUSTER]));
    assert_eq!(rules_of(&state), [("Egress tenant/out", "untrusted-egress-source")]);
    assert!(state.ignored[0].message.contains("spec.sources[0]"), "{}", state.ignored[0].message);
    // From a trusted namespace, an Egress may name another namespace's
    // ServiceAccount.
    docs.push(trusted_ns("tenant", None));
    let state = compile(&snapshot(&docs), &config(&[CLUSTER]));
    let id = workload(&state, "victim", "app").policy;
    assert!(nets(&state, id).contains("203.0.113.0/24"));
    assert!(state.ignored.is_empty(), "{:?}", state.ignored);
}

#[test]
fn trust_comes_from_the_configuration_or_the_namespace_label_only() {
    let mut docs = tenant();
    docs.push(pod("tenant", "squid", "node-1", "10.244.0.67", "tollgate.dev/egress-gateway: \"true\""));
    // A label on the pod, or a wrong label value, trusts nothing.
    docs.push(pod("tenant", "self-trusted", "node-1", "10.244.0.68", "tollgate.dev/egress-gateway: \"true\", tollgate.dev/trusted: \"true\""));
    let state = compile(&snapshot(&docs), &config(&[CLUSTER]));
    assert!(global_nets(&state).is_empty());
    let cfg = CompilerConfig { trusted_namespaces: vec!["tenant".into()], ..config(&[CLUSTER]) };
    let state = compile(&snapshot(&docs), &cfg);
    assert_eq!(global_nets(&state), ["10.244.0.67/32", "10.244.0.68/32"]);
    assert_eq!(rules_at(&state, POLICY_GLOBAL, "10.244.0.67/32"), [PortRule::any(REASON_GATEWAY)]);
    let mut labelled = docs.clone();
    labelled.push(trusted_ns("tenant", None));
    let state = compile(&snapshot(&labelled), &config(&[CLUSTER]));
    assert_eq!(global_nets(&state), ["10.244.0.67/32", "10.244.0.68/32"]);
    let mut wrong = docs;
    wrong.push("apiVersion: v1\nkind: Namespace\nmetadata: {name: tenant, labels: {tollgate.dev/trusted: 'yes'}}\n".to_owned());
    let state = compile(&snapshot(&wrong), &config(&[CLUSTER]));
    assert!(global_nets(&state).is_empty());
}
