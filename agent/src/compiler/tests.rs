//! End-to-end tests of [`compile`] over small snapshots and the examples.
use std::path::Path;

use agent_common::{
    PortRule, FLAG_GATEWAY, FLAG_SIDECAR_REDIRECT, POLICY_GLOBAL, PROTO_TCP, PROTO_UDP,
    REASON_CLUSTER_INTERNAL, REASON_DNS, REASON_GATEWAY, REASON_MESH_EGRESS_POLICY,
};

use std::net::IpAddr;

use super::*;
use crate::desired::{DesiredState, DesiredWorkload};

/// A configuration plus the host answers to bind with.
pub(super) struct WithHosts {
    pub cfg: CompilerConfig,
    pub hosts: BTreeMap<String, Vec<IpAddr>>,
}

/// What the tests compile with: a plain configuration (no host answers)
/// or one [`WithHosts`].
pub(super) trait TestConfig {
    fn parts(&self) -> (&CompilerConfig, BTreeMap<String, Vec<IpAddr>>);
}

impl TestConfig for CompilerConfig {
    fn parts(&self) -> (&CompilerConfig, BTreeMap<String, Vec<IpAddr>>) {
        (self, BTreeMap::new())
    }
}

impl TestConfig for WithHosts {
    fn parts(&self) -> (&CompilerConfig, BTreeMap<String, Vec<IpAddr>>) {
        (&self.cfg, self.hosts.clone())
    }
}

/// `compile` then `bind`: the desired state (the policy's own checks run
/// on the way: bind gives the same state as a second bind).
pub(super) fn compile(snap: &Snapshot, cfg: &impl TestConfig) -> DesiredState {
    let (cfg, hosts) = cfg.parts();
    let policy = super::compile(snap, cfg);
    let state = bind(&policy, &hosts);
    assert_eq!(state, bind(&policy, &hosts), "bind is deterministic");
    state
}

/// `cfg` with these host answers.
pub(super) fn with_hosts(cfg: CompilerConfig, hosts: &[(&str, &[&str])]) -> WithHosts {
    let hosts = hosts
        .iter()
        .map(|(name, ips)| (name.to_string(), ips.iter().map(|i| i.parse().expect("test ip")).collect()))
        .collect();
    WithHosts { cfg, hosts }
}

pub(super) fn snapshot(docs: &[String]) -> Snapshot {
    let mut snap = Snapshot::new();
    let mut diags = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let value: serde_yaml::Value = serde_yaml::from_str(doc).expect("test yaml parses");
        snap.add_document(&format!("doc{i}.yaml"), value, &mut diags);
    }
    assert!(diags.is_empty(), "test input loads cleanly: {diags:?}");
    snap
}

pub(super) fn ns(name: &str, mode: Option<&str>) -> String {
    let labels = mode
        .map(|m| format!("\n  labels: {{tollgate.dev/egress: {m:?}}}"))
        .unwrap_or_default();
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}{labels}\n")
}

/// A running pod on `node` with IPv4 address `ip`; `extra` is appended to
/// its metadata (indented 2).
pub(super) fn pod(ns: &str, name: &str, node: &str, ip: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n  uid: uid-{ns}-{name}\n  labels: {{{labels}}}\nspec:\n  nodeName: {node}\n  containers: [{{name: app, image: busybox}}]\nstatus:\n  phase: Running\n  podIP: {ip}\n  podIPs: [{{ip: {ip}}}]\n"
    )
}

pub(super) fn service(ns: &str, name: &str, labels: &str, selector: &str, ips: &[&str]) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{{labels}}}\nspec:\n  selector: {{{selector}}}\n  clusterIP: {}\n  clusterIPs: [{}]\n  ports: [{{port: 80}}]\n",
        ips.first().copied().unwrap_or("None"),
        ips.join(", ")
    )
}

pub(super) fn gateway(ns: &str, name: &str, selector: &str) -> String {
    format!("apiVersion: networking.istio.io/v1beta1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  selector: {{{selector}}}\n")
}

pub(super) fn config(cidrs: &[&str]) -> CompilerConfig {
    CompilerConfig {
        node_name: Some("node-1".into()),
        cluster_cidrs: cidrs
            .iter()
            .map(|c| c.parse().expect("test cidr"))
            .collect(),
        ..Default::default()
    }
}

pub(super) fn workload<'a>(state: &'a DesiredState, ns: &str, name: &str) -> &'a DesiredWorkload {
    state
        .workloads
        .values()
        .find(|w| w.namespace == ns && w.name == name)
        .unwrap_or_else(|| panic!("no workload {ns}/{name}"))
}

pub(super) fn rules_at(state: &DesiredState, policy: u32, net: &str) -> Vec<PortRule> {
    let net: IpNet = net.parse().expect("test net");
    let entries = state
        .policies
        .get(&policy)
        .unwrap_or_else(|| panic!("no policy {policy}"));
    let entry = entries
        .iter()
        .find(|e| e.net == net)
        .unwrap_or_else(|| panic!("no entry {net} in policy {policy}"));
    entry.rules.rules[..entry.rules.count as usize].to_vec()
}

pub(super) fn global_nets(state: &DesiredState) -> Vec<String> {
    state.policies[&POLICY_GLOBAL]
        .iter()
        .map(|e| e.net.to_string())
        .collect()
}

const DNS: [PortRule; 2] = [
    PortRule {
        proto: PROTO_TCP,
        reason: REASON_DNS,
        port_lo: 53,
        port_hi: 53,
    },
    PortRule {
        proto: PROTO_UDP,
        reason: REASON_DNS,
        port_lo: 53,
        port_hi: 53,
    },
];

#[test]
fn namespace_label_modes_with_bad_value_failing_closed() {
    let snap = snapshot(&[
        ns("a", Some("enforce")),
        ns("b", Some("audit")),
        ns("c", None),
        ns("d", Some("yes")),
        pod("a", "p", "node-1", "10.244.0.1", ""),
        pod("b", "p", "node-1", "10.244.0.2", ""),
        pod("c", "p", "node-1", "10.244.0.3", ""),
        pod("d", "p", "node-1", "10.244.0.4", ""),
        pod("missing", "p", "node-1", "10.244.0.5", ""),
    ]);
    let state = compile(&snap, &config(&["10.244.0.0/16"]));
    assert_eq!(workload(&state, "a", "p").mode, Mode::Enforce);
    assert_eq!(workload(&state, "b", "p").mode, Mode::Audit);
    assert_eq!(workload(&state, "c", "p").mode, Mode::Off);
    assert_eq!(workload(&state, "d", "p").mode, Mode::Enforce);
    assert_eq!(workload(&state, "missing", "p").mode, Mode::Off);
    assert_eq!(workload(&state, "c", "p").policy, 0);
    assert_ne!(workload(&state, "a", "p").policy, 0);
    assert_eq!(
        workload(&state, "a", "p").policy,
        workload(&state, "b", "p").policy,
        "same rules share an id"
    );
    assert_eq!(state.diagnostics.len(), 1, "{:?}", state.diagnostics);
    let d = &state.diagnostics[0];
    assert_eq!(d.severity, Severity::Warning);
    assert_eq!(d.object, "Namespace d");
    assert_eq!(d.field, "metadata.labels[\"tollgate.dev/egress\"]");
    assert!(
        d.message.contains("\"yes\"") && d.message.contains("fail"),
        "{}",
        d.message
    );
    assert_eq!(d.source.as_deref(), Some("doc3.yaml"));
}

/// A Namespace labelled `tollgate.dev/trusted: "true"`.
pub(super) fn trusted_ns(name: &str, mode: Option<&str>) -> String {
    let mode = mode.map(|m| format!(", tollgate.dev/egress: {m}")).unwrap_or_default();
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {{tollgate.dev/trusted: 'true'{mode}}}\n")
}

#[test]
fn gateways_found_by_istio_selector_and_by_label_in_trusted_namespaces() {
    let snap = snapshot(&[
        ns("shop", Some("enforce")),
        trusted_ns("proxy", None),
        trusted_ns("guarded", Some("enforce")),
        gateway("istio-system", "egress", "istio: egressgateway"),
        gateway("istio-system", "empty", ""),
        pod("istio-system", "istio-gw", "node-1", "10.244.0.20", "istio: egressgateway"),
        pod("proxy", "squid", "node-1", "10.244.0.21", "tollgate.dev/egress-gateway: \"true\""),
        pod("proxy", "not-gw", "node-1", "10.244.0.22", "tollgate.dev/egress-gateway: \"false\""),
        pod("istio-system", "remote-gw", "node-2", "10.244.1.23", "istio: egressgateway"),
        pod("guarded", "enforced-gw", "node-1", "10.244.0.24", "tollgate.dev/egress-gateway: \"true\""),
        // Not trusted: neither the label nor a Gateway make these gateways.
        pod("shop", "fake-squid", "node-1", "10.244.0.30", "tollgate.dev/egress-gateway: \"true\""),
        pod("shop", "fake-istio", "node-1", "10.244.0.31", "istio: egressgateway"),
    ]);
    let state = compile(&snap, &config(&["10.244.0.0/16"]));
    let squid = workload(&state, "proxy", "squid");
    assert_eq!((squid.mode, squid.flags, squid.policy), (Mode::Off, FLAG_GATEWAY, 0));
    let istio = workload(&state, "istio-system", "istio-gw");
    assert_eq!((istio.mode, istio.flags, istio.policy), (Mode::Off, FLAG_GATEWAY, 0));
    let plain = workload(&state, "proxy", "not-gw");
    assert_eq!((plain.mode, plain.flags), (Mode::Off, 0));
    assert!(!state.workloads.values().any(|w| w.name == "remote-gw"), "other node");
    // A gateway pod in an enforced namespace is enforced like any other.
    let enforced = workload(&state, "guarded", "enforced-gw");
    assert_eq!((enforced.mode, enforced.flags & FLAG_GATEWAY), (Mode::Enforce, 0));
    assert_ne!(enforced.policy, 0);
    for fake in ["fake-squid", "fake-istio"] {
        let w = workload(&state, "shop", fake);
        assert_eq!((w.mode, w.flags), (Mode::Enforce, 0), "{fake}");
    }
    assert_eq!(
        global_nets(&state),
        ["10.244.0.20/32", "10.244.0.21/32", "10.244.0.24/32", "10.244.1.23/32"],
        "the enforced gateway is still a gateway for others; the untrusted ones are not"
    );
    assert_eq!(rules_at(&state, POLICY_GLOBAL, "10.244.1.23/32"), [PortRule::any(REASON_GATEWAY)]);
    let ignored: Vec<(&str, &str)> = state.ignored.iter().map(|i| (i.object.as_str(), i.rule.as_str())).collect();
    assert_eq!(
        ignored,
        [("Pod shop/fake-istio", "untrusted-gateway-pod"), ("Pod shop/fake-squid", "untrusted-gateway-pod")]
    );
    assert!(state.ignored[0].message.contains("Gateway istio-system/egress selects this pod"), "{}", state.ignored[0].message);

    // --trusted-namespace shop (replacing the defaults): shop's pods are
    // gateways, istio-system's no longer.
    let cfg = CompilerConfig { trusted_namespaces: vec!["shop".into()], ..config(&["10.244.0.0/16"]) };
    let state = compile(&snap, &cfg);
    assert_eq!(global_nets(&state), ["10.244.0.21/32", "10.244.0.24/32", "10.244.0.30/32", "10.244.0.31/32"]);
}

#[test]
fn empty_gateway_selector_selects_nothing() {
    let snap = snapshot(&[
        gateway("istio-system", "empty", ""),
        pod("x", "p", "node-1", "10.244.0.1", "a: b"),
    ]);
    let state = compile(&snap, &config(&[]));
    assert_eq!(workload(&state, "x", "p").flags, 0);
    assert!(state.policies[&POLICY_GLOBAL].is_empty());
}

#[test]
fn gateway_services_are_those_whose_endpoints_are_all_gateway_pods() {
    // A slice never makes an address a gateway by itself: gw-abc (no
    // Service) and the forged slice in tenant grant nothing; a pending
    // gateway pod has no address.
    let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: gw-abc, namespace: istio-system}\naddressType: IPv4\nendpoints:\n- addresses: [10.244.2.20, 10.244.3.3]\n  targetRef: {kind: Pod, name: gw}\n- addresses: [10.244.7.7]\n  targetRef: {kind: Pod, name: pending-gw}\n";
    let forged = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: evil, namespace: tenant, labels: {kubernetes.io/service-name: evil}}\naddressType: IPv4\nports: [{name: '', port: 80, protocol: TCP}]\nendpoints:\n- addresses: [8.8.8.8]\n  targetRef: {kind: Pod, name: gw, namespace: istio-system}\n";
    let evil_svc = "apiVersion: v1\nkind: Service\nmetadata: {name: evil, namespace: tenant}\nspec: {clusterIP: 10.96.0.66, ports: [{port: 80}]}\n";
    let mixed_slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: mixed-1, namespace: istio-system, labels: {kubernetes.io/service-name: mixed}}\naddressType: IPv4\nports: [{name: '', port: 80, protocol: TCP}]\nendpoints:\n- addresses: [10.244.2.20]\n- addresses: [203.0.113.5]\n";
    let pending = "apiVersion: v1\nkind: Pod\nmetadata: {name: pending-gw, namespace: istio-system, uid: u-pending, labels: {istio: egressgateway}}\nspec: {nodeName: node-2, containers: [{name: c, image: i}]}\nstatus: {phase: Pending, podIP: 10.244.7.7}\n";
    let snap = snapshot(&[
        gateway("istio-system", "egress", "istio: egressgateway"),
        pod("istio-system", "gw", "node-2", "10.244.2.20", "istio: egressgateway"),
        pod("istio-system", "other", "node-2", "10.244.2.21", "app: x"),
        service("istio-system", "egress", "", "istio: egressgateway", &["10.96.0.20", "fd00:10:96::20"]),
        service("elsewhere", "same-selector", "", "istio: egressgateway", &["10.96.0.99"]),
        service("istio-system", "headless", "", "istio: egressgateway", &["None"]),
        service("istio-system", "others", "", "app: x", &["10.96.0.21"]),
        service("istio-system", "mixed", "", "", &["10.96.0.22"]).replace("  selector: {}\n", ""),
        mixed_slice.to_owned(),
        slice.to_owned(),
        forged.to_owned(),
        evil_svc.to_owned(),
        pending.to_owned(),
    ]);
    let state = compile(&snap, &config(&[]));
    assert_eq!(global_nets(&state), ["10.96.0.20/32", "10.244.2.20/32", "fd00:10:96::20/128"]);
    assert_eq!(rules_at(&state, POLICY_GLOBAL, "fd00:10:96::20/128"), [PortRule::any(REASON_GATEWAY)]);
    assert!(state.diagnostics.is_empty(), "{:?}", state.diagnostics);
    let ignored: Vec<(&str, &str)> = state.ignored.iter().map(|i| (i.object.as_str(), i.rule.as_str())).collect();
    assert_eq!(
        ignored,
        [
            ("Pod istio-system/pending-gw", "gateway-without-address"),
            ("Service istio-system/mixed", "gateway-service-other-endpoints"),
        ]
    );
    assert!(state.ignored[1].message.contains("203.0.113.5:80"), "{}", state.ignored[1].message);
}

#[test]
fn cluster_dns_rules() {
    let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: kube-dns-xyz\n  namespace: kube-system\n  labels: {kubernetes.io/service-name: kube-dns}\naddressType: IPv6\nendpoints:\n- addresses: [\"fd00:10:244::30\"]\n";
    let snap = snapshot(&[
        service(
            "kube-system",
            "kube-dns",
            "k8s-app: kube-dns",
            "k8s-app: kube-dns",
            &["10.96.0.10", "fd00:10:96::a"],
        ),
        service(
            "default",
            "kube-dns",
            "k8s-app: kube-dns",
            "k8s-app: kube-dns",
            &["10.96.0.77"],
        ),
        pod(
            "kube-system",
            "coredns",
            "node-2",
            "10.244.0.30",
            "k8s-app: kube-dns",
        ),
        pod(
            "default",
            "fake-dns",
            "node-2",
            "10.244.0.31",
            "k8s-app: kube-dns",
        ),
        slice.to_owned(),
    ]);
    let state = compile(&snap, &config(&[]));
    assert_eq!(
        global_nets(&state),
        [
            "10.96.0.10/32",
            "10.244.0.30/32",
            "fd00:10:96::a/128",
            "fd00:10:244::30/128"
        ]
    );
    for net in global_nets(&state) {
        assert_eq!(rules_at(&state, POLICY_GLOBAL, &net), DNS);
    }
}

#[test]
fn node_filtering_finished_pods_and_missing_uid() {
    let mut done = pod("a", "done", "node-1", "10.244.0.9", "");
    done = done.replace("phase: Running", "phase: Succeeded");
    let no_uid = pod("a", "nouid", "node-1", "10.244.0.8", "").replace("  uid: uid-a-nouid\n", "");
    let snap = snapshot(&[
        ns("a", Some("enforce")),
        pod("a", "here", "node-1", "10.244.0.1", ""),
        pod("a", "there", "node-2", "10.244.1.1", ""),
        done,
        no_uid,
    ]);
    let state = compile(&snap, &config(&["10.244.0.0/16"]));
    let names: Vec<&str> = state.workloads.values().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["here"]);
    assert_eq!(state.workloads.keys().collect::<Vec<_>>(), ["uid-a-here"]);
    assert_eq!(state.diagnostics.len(), 1);
    assert_eq!(state.diagnostics[0].object, "Pod a/nouid");
    assert_eq!(state.diagnostics[0].field, "metadata.uid");

    let all = compile(
        &snap,
        &CompilerConfig {
            node_name: None,
            ..config(&["10.244.0.0/16"])
        },
    );
    assert_eq!(all.workloads.len(), 2);
}

#[test]
fn workload_policy_is_the_cluster_cidrs() {
    let snap = snapshot(&[
        ns("a", Some("enforce")),
        pod("a", "p", "node-1", "10.244.0.1", ""),
    ]);
    let state = compile(
        &snap,
        &config(&["10.244.0.0/16", "fd00:10:244::/56", "10.96.0.0/12"]),
    );
    let id = workload(&state, "a", "p").policy;
    assert!(id >= 1);
    let nets: Vec<String> = state.policies[&id]
        .iter()
        .map(|e| e.net.to_string())
        .collect();
    assert_eq!(nets, ["10.96.0.0/12", "10.244.0.0/16", "fd00:10:244::/56"]);
    assert_eq!(
        rules_at(&state, id, "10.96.0.0/12"),
        [PortRule::any(REASON_CLUSTER_INTERNAL)]
    );
    assert!(state.policies.contains_key(&POLICY_GLOBAL));
    assert_eq!(state.policies.len(), 2);
}

#[test]
fn no_cluster_cidrs_warns_when_pods_are_enforced() {
    let snap = snapshot(&[
        ns("a", Some("audit")),
        pod("a", "p", "node-1", "10.244.0.1", ""),
    ]);
    let state = compile(&snap, &config(&[]));
    assert_eq!(state.diagnostics.len(), 1);
    assert_eq!(state.diagnostics[0].severity, Severity::Warning);
    assert!(state.diagnostics[0]
        .message
        .contains("only gateways and cluster DNS"));
    let id = workload(&state, "a", "p").policy;
    assert!(
        state.policies.get(&id).is_some_and(Vec::is_empty),
        "referenced id present, without entries"
    );

    let off = snapshot(&[pod("a", "p", "node-1", "10.244.0.1", "")]);
    assert!(compile(&off, &config(&[])).diagnostics.is_empty());
}

#[test]
fn bad_addresses_are_reported_with_field_paths() {
    let bad_pod = pod(
        "istio-system",
        "gw",
        "node-1",
        "10.244.0.20",
        "istio: egressgateway",
    )
    .replace(
        "podIPs: [{ip: 10.244.0.20}]",
        "podIPs: [{ip: 10.244.0.20}, {ip: not-an-ip}]",
    );
    let snap = snapshot(&[
        gateway("istio-system", "egress", "istio: egressgateway"),
        bad_pod,
        service(
            "istio-system",
            "egress",
            "",
            "istio: egressgateway",
            &["10.96.0.20", "10.96.0.300"],
        ),
    ]);
    let state = compile(&snap, &config(&[]));
    let found: Vec<(&str, &str)> = state
        .diagnostics
        .iter()
        .map(|d| (d.object.as_str(), d.field.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("Pod istio-system/gw", "status.podIPs[1].ip"),
            ("Service istio-system/egress", "spec.clusterIPs[1]")
        ]
    );
    assert!(state
        .diagnostics
        .iter()
        .all(|d| d.severity == Severity::Error));
    assert_eq!(
        global_nets(&state),
        ["10.96.0.20/32", "10.244.0.20/32"],
        "the rest still applies"
    );
}

#[test]
fn sidecar_pods_are_flagged() {
    let sidecar = pod("a", "meshed", "node-1", "10.244.0.1", "")
        .replace("containers: [{name: app, image: busybox}]", "containers: [{name: app, image: busybox}, {name: istio-proxy, image: proxyv2}]\n  initContainers: [{name: istio-init, image: proxyv2}]");
    let snap = snapshot(&[
        ns("a", Some("enforce")),
        sidecar,
        pod("a", "plain", "node-1", "10.244.0.2", ""),
    ]);
    let state = compile(&snap, &config(&["10.244.0.0/16"]));
    assert_eq!(workload(&state, "a", "meshed").flags, FLAG_SIDECAR_REDIRECT);
    assert_eq!(workload(&state, "a", "plain").flags, 0);
    assert_eq!(
        workload(&state, "a", "meshed").policy,
        workload(&state, "a", "plain").policy
    );
}

#[test]
fn sandboxed_runtime_pods_are_marked_with_their_runtime_class() {
    let with_class = |name: &str, ip: &str, class: &str| {
        pod("a", name, "node-1", ip, "").replace("  containers:", &format!("  runtimeClassName: {class}\n  containers:"))
    };
    let snap = snapshot(&[
        ns("a", Some("enforce")),
        with_class("gv", "10.244.0.1", "gvisor"),
        with_class("kata", "10.244.0.2", "kata-qemu"),
        with_class("plain-class", "10.244.0.3", "runc"),
        pod("a", "plain", "node-1", "10.244.0.4", ""),
    ]);
    let state = compile(&snap, &config(&["10.244.0.0/16"]));
    assert_eq!(workload(&state, "a", "gv").sandboxed.as_deref(), Some("gvisor"));
    assert_eq!(workload(&state, "a", "kata").sandboxed.as_deref(), Some("kata-qemu"));
    assert_eq!(workload(&state, "a", "plain-class").sandboxed, None);
    assert_eq!(workload(&state, "a", "plain").sandboxed, None);
    // Same rules whatever the runtime: only the layer differs.
    assert_eq!(workload(&state, "a", "gv").policy, workload(&state, "a", "plain").policy);
    // The operator's list replaces the defaults.
    let cfg = CompilerConfig { sandboxed_runtime_classes: vec!["runc".into()], ..config(&["10.244.0.0/16"]) };
    let state = compile(&snap, &cfg);
    assert_eq!(workload(&state, "a", "gv").sandboxed, None);
    assert_eq!(workload(&state, "a", "plain-class").sandboxed.as_deref(), Some("runc"));
}

#[test]
fn output_is_stable_and_order_independent() {
    let mut docs = vec![
        ns("a", Some("enforce")),
        ns("b", Some("audit")),
        gateway("istio-system", "egress", "istio: egressgateway"),
        pod(
            "istio-system",
            "gw",
            "node-1",
            "10.244.0.20",
            "istio: egressgateway",
        ),
        pod("a", "p", "node-1", "10.244.0.1", ""),
        pod("b", "q", "node-1", "10.244.0.2", ""),
        service(
            "kube-system",
            "kube-dns",
            "k8s-app: kube-dns",
            "k8s-app: kube-dns",
            &["10.96.0.10"],
        ),
    ];
    let cfg = config(&["10.244.0.0/16", "10.96.0.0/12"]);
    let first = compile(&snapshot(&docs), &cfg);
    let again = compile(&snapshot(&docs), &cfg);
    assert_eq!(first, again);
    docs.reverse();
    let reversed = compile(&snapshot(&docs), &cfg);
    assert_eq!(first.workloads, reversed.workloads);
    assert_eq!(first.policies, reversed.policies);
    let id = workload(&first, "a", "p").policy;
    assert_eq!(
        id,
        policy_ids::content_id(&first.policies[&id]),
        "id derives from content"
    );
}

#[test]
fn istio_egress_gateway_example() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/istio-egress-gateway");
    let (snap, load_diags) = crate::source::files::load_dir(&dir).expect("examples load");
    assert!(load_diags.is_empty(), "{load_diags:?}");
    let cidrs = [
        "10.244.0.0/16",
        "10.96.0.0/12",
        "fd00:10:244::/56",
        "fd00:10:96::/108",
    ];
    let state = compile(&snap, &config(&cidrs));
    assert!(state.diagnostics.is_empty(), "{:?}", state.diagnostics);
    assert_eq!(state.workloads.len(), 4);

    let sleep = &state.workloads["6f1c2a3e-0000-4000-8000-000000000010"];
    assert_eq!(
        (sleep.namespace.as_str(), sleep.name.as_str()),
        ("test-egress", "sleep")
    );
    assert_eq!((sleep.mode, sleep.flags), (Mode::Enforce, 0));
    assert!(sleep.policy >= 1);
    let other = &state.workloads["6f1c2a3e-0000-4000-8000-000000000011"];
    assert_eq!((other.mode, other.policy), (Mode::Off, 0));
    let gw = &state.workloads["6f1c2a3e-0000-4000-8000-000000000020"];
    assert_eq!((gw.mode, gw.flags, gw.policy), (Mode::Off, FLAG_GATEWAY, 0));
    let dns = &state.workloads["6f1c2a3e-0000-4000-8000-000000000030"];
    assert_eq!((dns.mode, dns.policy), (Mode::Off, 0));

    for net in [
        "10.244.0.20/32",
        "fd00:10:244::20/128",
        "10.96.0.20/32",
        "fd00:10:96::20/128",
    ] {
        assert_eq!(
            rules_at(&state, POLICY_GLOBAL, net),
            [PortRule::any(REASON_GATEWAY)],
            "{net}"
        );
    }
    for net in [
        "10.96.0.10/32",
        "fd00:10:96::a/128",
        "10.244.0.30/32",
        "fd00:10:244::30/128",
    ] {
        assert_eq!(rules_at(&state, POLICY_GLOBAL, net), DNS, "{net}");
    }
    assert_eq!(state.policies[&POLICY_GLOBAL].len(), 8);
    for net in cidrs {
        assert_eq!(
            rules_at(&state, sleep.policy, net),
            [PortRule::any(REASON_CLUSTER_INTERNAL)],
            "{net}"
        );
    }
    assert_eq!(state.policies.len(), 2);
}

/// The prefixes of a policy's trie.
pub(super) fn nets(state: &DesiredState, policy: u32) -> BTreeSet<String> {
    state.policies[&policy]
        .iter()
        .map(|e| e.net.to_string())
        .collect()
}

pub(super) fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// An OSM Egress rule for TCP `port`.
pub(super) fn mesh(port: u16) -> PortRule {
    PortRule {
        proto: PROTO_TCP,
        reason: REASON_MESH_EGRESS_POLICY,
        port_lo: port,
        port_hi: port,
    }
}

pub(super) fn network_policy(ns: &str, name: &str, body: &str) -> String {
    format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{body}")
}

pub(super) fn np_rules(port: u16, proto: u8) -> PortRule {
    PortRule {
        proto,
        reason: agent_common::REASON_NETWORK_POLICY,
        port_lo: port,
        port_hi: port,
    }
}

#[test]
fn egress_network_policy_replaces_cluster_cidrs() {
    let metrics_pod = pod("mon", "prom", "node-2", "10.244.5.5", "app: prom").replace(
        "containers: [{name: app, image: busybox}]",
        "containers: [{name: app, image: prom, ports: [{name: metrics, containerPort: 9090}]}]",
    );
    let snap = snapshot(&[
        ns("shop", Some("enforce")),
        ns("mon", None),
        pod("shop", "web", "node-1", "10.244.0.1", "app: web"),
        pod("shop", "batch", "node-1", "10.244.0.2", "app: batch"),
        pod("shop", "db", "node-2", "10.244.1.1", "app: db"),
        pod("other", "db", "node-2", "10.244.1.2", "app: db"),
        metrics_pod,
        network_policy(
            "shop",
            "web-egress",
            "  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{podSelector: {matchLabels: {app: db}}}]\n    ports: [{port: 5432}]\n  - to: [{ipBlock: {cidr: 203.0.113.0/24, except: [203.0.113.128/25]}}]\n    ports: [{protocol: UDP, port: 5000, endPort: 5010}]\n  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: mon}}}]\n    ports: [{port: metrics}]\n",
        ),
        network_policy("shop", "ingress-only", "  podSelector: {}\n  policyTypes: [Ingress]\n  ingress: [{}]\n"),
    ]);
    let state = compile(&snap, &config(&["10.244.0.0/16"]));
    assert!(state.diagnostics.is_empty(), "{:?}", state.diagnostics);
    let web = workload(&state, "shop", "web").policy;
    let batch = workload(&state, "shop", "batch").policy;
    assert_ne!(web, batch);
    assert_eq!(
        rules_at(&state, batch, "10.244.0.0/16"),
        [PortRule::any(REASON_CLUSTER_INTERNAL)]
    );
    let nets: Vec<String> = state.policies[&web]
        .iter()
        .map(|e| e.net.to_string())
        .collect();
    assert_eq!(
        nets,
        [
            "10.244.1.1/32",
            "10.244.5.5/32",
            "203.0.113.0/24",
            "203.0.113.128/25"
        ],
        "no cluster CIDR, other/db not selected"
    );
    assert_eq!(
        rules_at(&state, web, "10.244.1.1/32"),
        [np_rules(5432, PROTO_TCP)]
    );
    assert_eq!(
        rules_at(&state, web, "10.244.5.5/32"),
        [np_rules(9090, PROTO_TCP)]
    );
    let udp = PortRule {
        port_hi: 5010,
        ..np_rules(5000, PROTO_UDP)
    };
    assert_eq!(rules_at(&state, web, "203.0.113.0/24"), [udp]);
    assert!(rules_at(&state, web, "203.0.113.128/25").is_empty());
}

#[test]
fn egress_policy_without_rules_denies_and_defaults_apply() {
    let snap = snapshot(&[
        ns("a", Some("enforce")),
        pod("a", "locked", "node-1", "10.244.0.1", "app: locked"),
        pod("a", "open", "node-1", "10.244.0.2", "app: open"),
        network_policy(
            "a",
            "deny",
            "  podSelector: {matchLabels: {app: locked}}\n  policyTypes: [Egress]\n",
        ),
        network_policy(
            "a",
            "all",
            "  podSelector: {matchLabels: {app: open}}\n  egress: [{ports: [{protocol: SCTP}]}]\n",
        ),
    ]);
    let state = compile(&snap, &config(&[]));
    assert!(
        state.diagnostics.is_empty(),
        "policy-selected pods do not need cluster CIDRs: {:?}",
        state.diagnostics
    );
    assert!(state.policies[&workload(&state, "a", "locked").policy].is_empty());
    let open = workload(&state, "a", "open").policy;
    let sctp = PortRule {
        proto: agent_common::PROTO_SCTP,
        reason: agent_common::REASON_NETWORK_POLICY,
        port_lo: 0,
        port_hi: u16::MAX,
    };
    assert_eq!(rules_at(&state, open, "0.0.0.0/0"), [sctp]);
    assert_eq!(rules_at(&state, open, "::/0"), [sctp]);
}

#[test]
fn bad_network_policy_fields_are_reported_and_fail_closed() {
    let snap = snapshot(&[
        ns("a", Some("enforce")),
        pod("a", "p", "node-1", "10.244.0.1", "app: p"),
        network_policy(
            "a",
            "bad",
            "  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - to: [{ipBlock: {cidr: 10.0.0.0/33}}]\n  - ports: [{protocol: ICMP, port: 1}, {port: 70000}, {port: 53, protocol: UDP}]\n",
        ),
    ]);
    let state = compile(&snap, &config(&["10.244.0.0/16"]));
    let fields: Vec<&str> = state.diagnostics.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.egress[0].to[0].ipBlock.cidr",
            "spec.egress[1].ports[0].protocol",
            "spec.egress[1].ports[1].port"
        ]
    );
    assert!(state
        .diagnostics
        .iter()
        .all(|d| d.object == "NetworkPolicy a/bad"));
    let id = workload(&state, "a", "p").policy;
    let nets: Vec<String> = state.policies[&id]
        .iter()
        .map(|e| e.net.to_string())
        .collect();
    assert_eq!(nets, ["0.0.0.0/0", "::/0"]);
    assert_eq!(rules_at(&state, id, "0.0.0.0/0"), [np_rules(53, PROTO_UDP)]);
}
