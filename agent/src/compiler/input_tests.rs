//! Invalid input: every invalid object is reported (kind, namespace/name
//! and the field path) and skipped, while the valid objects beside it
//! still compile into rules.
use agent_common::{
    PortRule, PROTO_TCP, PROTO_UDP, REASON_CLUSTER_INTERNAL,
};

use super::tests::{compile, config, mesh, nets, network_policy, np_rules, ns, pod, rules_at, set, with_hosts, workload};
use super::*;
use crate::desired::{DesiredState, Diagnostic};

const CLUSTER: &str = "10.244.0.0/16";

/// Load `docs` (load problems returned, not refused).
fn load(docs: &[String]) -> (Snapshot, Vec<Diagnostic>) {
    let mut snap = Snapshot::new();
    let mut diags = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let value: serde_yaml::Value = serde_yaml::from_str(doc).expect("test yaml parses");
        snap.add_document(&format!("doc{i}.yaml"), value, &mut diags);
    }
    (snap, diags)
}

fn compile_docs(docs: &[String]) -> DesiredState {
    let (snap, diags) = load(docs);
    assert!(diags.is_empty(), "test input loads cleanly: {diags:?}");
    compile(&snap, &config(&[CLUSTER]))
}


/// The diagnostics of `object` as (severity, field) pairs.
fn about<'a>(state: &'a DesiredState, object: &str) -> Vec<(Severity, &'a str)> {
    state
        .diagnostics
        .iter()
        .filter(|d| d.object == object)
        .map(|d| (d.severity, d.field.as_str()))
        .collect()
}

/// Only `object` is reported, with exactly these fields (all errors).
fn assert_errors(state: &DesiredState, object: &str, fields: &[&str]) {
    let others: Vec<&Diagnostic> = state
        .diagnostics
        .iter()
        .filter(|d| d.object != object)
        .collect();
    assert!(others.is_empty(), "only {object} is reported: {others:?}");
    let found: Vec<(Severity, &str)> = about(state, object);
    let expected: Vec<(Severity, &str)> = fields.iter().map(|f| (Severity::Error, *f)).collect();
    assert_eq!(found, expected, "{:#?}", state.diagnostics);
}

/// Namespace `a` (enforced) with pod `p` (app: p), the sibling policy
/// `a/good` that lets it reach 192.0.2.10 on TCP 443, and `extra`.
fn with_good_sibling(extra: Vec<String>) -> Vec<String> {
    let mut docs = vec![
        ns("a", Some("enforce")),
        pod("a", "p", "node-1", "10.244.0.1", "app: p"),
        network_policy(
            "a",
            "good",
            "  podSelector: {matchLabels: {app: p}}\n  policyTypes: [Egress]\n  egress: [{to: [{ipBlock: {cidr: 192.0.2.10/32}}], ports: [{port: 443}]}]\n",
        ),
    ];
    docs.extend(extra);
    docs
}

fn assert_good_sibling_applies(state: &DesiredState) {
    let p = workload(state, "a", "p").policy;
    assert!(
        nets(state, p).contains("192.0.2.10/32"),
        "{:?}",
        nets(state, p)
    );
    assert_eq!(
        rules_at(state, p, "192.0.2.10/32"),
        [np_rules(443, PROTO_TCP)]
    );
}

/// A policy `a/bad` (selecting every pod of `a`) with one egress rule.
fn bad_rule(rule: &str) -> String {
    network_policy(
        "a",
        "bad",
        &format!("  podSelector: {{}}\n  policyTypes: [Egress]\n  egress:\n  - {rule}\n"),
    )
}

#[test]
fn bad_cidr_is_reported_and_the_peer_allows_nothing() {
    for cidr in [
        "10.0.0.0/33",
        "10.0.0.0",
        "not-a-cidr",
        "",
        "10.0.0.0/8 ",
        "fd00::/129",
    ] {
        let docs = with_good_sibling(vec![bad_rule(&format!(
            "to: [{{ipBlock: {{cidr: {cidr:?}}}}}, {{ipBlock: {{cidr: 198.51.100.0/24}}}}]"
        ))]);
        let state = compile_docs(&docs);
        assert_errors(
            &state,
            "NetworkPolicy a/bad",
            &["spec.egress[0].to[0].ipBlock.cidr"],
        );
        assert_good_sibling_applies(&state);
        let p = workload(&state, "a", "p").policy;
        assert!(
            nets(&state, p).contains("198.51.100.0/24"),
            "the valid peer of the same rule applies"
        );
    }
}

#[test]
fn except_must_be_a_cidr_strictly_inside_its_block() {
    for (except, why) in [
        ("10.1.0.0/16", "outside"),
        ("192.168.0.0/16", "outside"),
        ("192.168.0.0/15", "larger"),
        ("192.168.0.0/16", "equal: not a strict subset"),
        ("192.168.0.0/16x", "not a CIDR"),
        ("'fd00::/64'", "other family"),
    ] {
        let docs = with_good_sibling(vec![bad_rule(&format!(
            "to: [{{ipBlock: {{cidr: 192.168.0.0/16, except: [192.168.1.0/24, {except}]}}}}]"
        ))]);
        let state = compile_docs(&docs);
        assert_errors(
            &state,
            "NetworkPolicy a/bad",
            &["spec.egress[0].to[0].ipBlock.except[1]"],
        );
        assert_good_sibling_applies(&state);
        let p = workload(&state, "a", "p").policy;
        assert!(
            !nets(&state, p).contains("192.168.0.0/16"),
            "{why}: the whole peer allows nothing"
        );
    }
    // A valid except still works.
    let docs = with_good_sibling(vec![bad_rule(
        "to: [{ipBlock: {cidr: 192.168.0.0/16, except: [192.168.1.0/24]}}]",
    )]);
    let state = compile_docs(&docs);
    assert!(state.diagnostics.is_empty(), "{:?}", state.diagnostics);
    let p = workload(&state, "a", "p").policy;
    assert!(rules_at(&state, p, "192.168.1.0/24").is_empty());
}

#[test]
fn host_bits_in_ip_blocks_are_a_warning_and_mean_the_network() {
    let docs = with_good_sibling(vec![bad_rule(
        "to: [{ipBlock: {cidr: 10.244.1.5/16, except: [10.244.2.9/24]}}]",
    )]);
    let state = compile_docs(&docs);
    assert_eq!(
        about(&state, "NetworkPolicy a/bad"),
        [
            (Severity::Warning, "spec.egress[0].to[0].ipBlock.cidr"),
            (Severity::Warning, "spec.egress[0].to[0].ipBlock.except[0]")
        ]
    );
    assert_eq!(state.diagnostics.len(), 2);
    let p = workload(&state, "a", "p").policy;
    assert!(nets(&state, p).is_superset(&set(&["10.244.0.0/16", "10.244.2.0/24"])));
    assert!(rules_at(&state, p, "10.244.2.0/24").is_empty());
    assert_good_sibling_applies(&state);
}

#[test]
fn bad_ports_are_reported_and_allow_nothing() {
    let cases = [
        ("{port: 90, endPort: 80}", "endPort"),
        ("{port: 90, endPort: 70000}", "endPort"),
        ("{endPort: 80}", "endPort"),
        ("{port: web, endPort: 80}", "endPort"),
        ("{port: 0}", "port"),
        ("{port: -5}", "port"),
        ("{port: 65536}", "port"),
        ("{port: '80'}", "port"),
        ("{port: Web_Port}", "port"),
        ("{port: a-very-long-port-name}", "port"),
        ("{port: web--x}", "port"),
        ("{port: 80, protocol: tcp}", "protocol"),
        ("{port: 80, protocol: ICMP}", "protocol"),
        ("{port: 80, protocol: ''}", "protocol"),
    ];
    for (port, field) in cases {
        let docs = with_good_sibling(vec![bad_rule(&format!(
            "to: [{{ipBlock: {{cidr: 198.51.100.0/24}}}}]\n    ports: [{port}, {{port: 53, protocol: UDP}}]"
        ))]);
        let state = compile_docs(&docs);
        assert_errors(
            &state,
            "NetworkPolicy a/bad",
            &[&format!("spec.egress[0].ports[0].{field}")],
        );
        assert_good_sibling_applies(&state);
        let p = workload(&state, "a", "p").policy;
        assert_eq!(
            rules_at(&state, p, "198.51.100.0/24"),
            [np_rules(53, PROTO_UDP)],
            "{port}: only the valid port"
        );
    }
    // endPort at or above port is fine.
    let docs = with_good_sibling(vec![bad_rule("to: [{ipBlock: {cidr: 198.51.100.0/24}}]\n    ports: [{port: 80, endPort: 80}, {port: 8000, endPort: 8080}]")]);
    let state = compile_docs(&docs);
    assert!(state.diagnostics.is_empty(), "{:?}", state.diagnostics);
    let p = workload(&state, "a", "p").policy;
    let range = PortRule {
        port_hi: 8080,
        ..np_rules(8000, PROTO_TCP)
    };
    assert_eq!(
        rules_at(&state, p, "198.51.100.0/24"),
        [np_rules(80, PROTO_TCP), range]
    );
}

#[test]
fn bad_selectors_are_reported_even_when_no_pod_of_the_node_is_involved() {
    let selectors = [
        ("{matchExpressions: [{key: app, operator: Equals, values: [x]}]}", "matchExpressions[0].operator"),
        ("{matchExpressions: [{key: app, operator: In}]}", "matchExpressions[0].values"),
        ("{matchExpressions: [{key: app, operator: NotIn, values: []}]}", "matchExpressions[0].values"),
        ("{matchExpressions: [{key: app, operator: Exists, values: [x]}]}", "matchExpressions[0].values"),
        ("{matchExpressions: [{key: app, operator: Exists}, {key: 'bad key', operator: Exists}]}", "matchExpressions[1].key"),
        ("{matchExpressions: [{key: app, operator: In, values: [ok, 'bad value']}]}", "matchExpressions[0].values[1]"),
        ("{matchLabels: {'-app': x}}", "matchLabels[\"-app\"]"),
        ("{matchLabels: {'Example.com/app': x}}", "matchLabels[\"Example.com/app\"]"),
        ("{matchLabels: {'/app': x}}", "matchLabels[\"/app\"]"),
        ("{matchLabels: {app: 'x y'}}", "matchLabels[\"app\"]"),
        ("{matchLabels: {app: '-x'}}", "matchLabels[\"app\"]"),
    ];
    for (selector, field) in selectors {
        // As the policy's podSelector, in a namespace without pods.
        let docs = with_good_sibling(vec![network_policy(
            "empty",
            "bad",
            &format!("  podSelector: {selector}\n  policyTypes: [Egress]\n"),
        )]);
        let state = compile_docs(&docs);
        assert_errors(
            &state,
            "NetworkPolicy empty/bad",
            &[&format!("spec.podSelector.{field}")],
        );
        assert_good_sibling_applies(&state);
        // As a peer's selectors (the policy selects the pod).
        for peer in ["namespaceSelector", "podSelector"] {
            let docs = with_good_sibling(vec![bad_rule(&format!(
                "to: [{{{peer}: {selector}}}, {{ipBlock: {{cidr: 198.51.100.0/24}}}}]"
            ))]);
            let state = compile_docs(&docs);
            assert_errors(
                &state,
                "NetworkPolicy a/bad",
                &[&format!("spec.egress[0].to[0].{peer}.{field}")],
            );
            assert_good_sibling_applies(&state);
            let p = workload(&state, "a", "p").policy;
            assert!(nets(&state, p).contains("198.51.100.0/24"));
        }
    }
    // Valid keys and values pass.
    let ok = "{matchLabels: {'app.kubernetes.io/name': my_app.v-1, empty: ''}, matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [a]}]}";
    let docs = with_good_sibling(vec![network_policy(
        "empty",
        "ok",
        &format!("  podSelector: {ok}\n  policyTypes: [Egress]\n"),
    )]);
    assert!(compile_docs(&docs).diagnostics.is_empty());
}

#[test]
fn bad_policies_that_select_no_pod_here_are_reported() {
    let docs = with_good_sibling(vec![network_policy(
        "elsewhere",
        "bad",
        "  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - to: [{ipBlock: {cidr: 10.0.0.0/33}}]\n    ports: [{port: 0}]\n",
    )]);
    let state = compile_docs(&docs);
    assert_errors(
        &state,
        "NetworkPolicy elsewhere/bad",
        &[
            "spec.egress[0].ports[0].port",
            "spec.egress[0].to[0].ipBlock.cidr",
        ],
    );
    assert_good_sibling_applies(&state);
}

#[test]
fn peers_need_exactly_one_of_ip_block_or_selectors() {
    for (peer, field) in [
        (
            "{ipBlock: {cidr: 198.51.100.0/24}, podSelector: {}}",
            "spec.egress[0].to[0]",
        ),
        (
            "{ipBlock: {cidr: 198.51.100.0/24}, namespaceSelector: {}}",
            "spec.egress[0].to[0]",
        ),
        ("{}", "spec.egress[0].to[0]"),
    ] {
        let docs = with_good_sibling(vec![bad_rule(&format!("to: [{peer}]"))]);
        let state = compile_docs(&docs);
        assert_errors(&state, "NetworkPolicy a/bad", &[field]);
        assert_good_sibling_applies(&state);
        let p = workload(&state, "a", "p").policy;
        assert!(
            !nets(&state, p).contains("198.51.100.0/24"),
            "{peer}: fails closed"
        );
    }
}

#[test]
fn unknown_policy_types_are_reported() {
    let docs = with_good_sibling(vec![network_policy(
        "a",
        "typo",
        "  podSelector: {}\n  policyTypes: [egress]\n  egress: [{}]\n",
    )]);
    let state = compile_docs(&docs);
    assert_errors(&state, "NetworkPolicy a/typo", &["spec.policyTypes[0]"]);
    assert_good_sibling_applies(&state);
    // Fail closed: it isolates the pod, and its allow-all rule is not used.
    let p = workload(&state, "a", "p").policy;
    assert!(!nets(&state, p).contains("0.0.0.0/0"), "{:?}", nets(&state, p));
    assert!(!nets(&state, p).contains(CLUSTER), "{:?}", nets(&state, p));
    assert_eq!(state.explain.workloads["a/p"].sources.network_policies, ["a/good", "a/typo"]);
}

#[test]
fn empty_policy_types_mean_the_api_server_default() {
    let docs = vec![
        ns("a", Some("enforce")),
        pod("a", "p", "node-1", "10.244.0.1", "app: p"),
        network_policy(
            "a",
            "no-types",
            "  podSelector: {}\n  policyTypes: []\n  egress: [{to: [{ipBlock: {cidr: 192.0.2.10/32}}]}]\n",
        ),
    ];
    let state = compile_docs(&docs);
    let p = workload(&state, "a", "p").policy;
    assert_eq!(nets(&state, p), set(&["192.0.2.10/32"]));
}

#[test]
fn a_pod_selector_that_does_not_parse_isolates_the_namespace() {
    let docs = with_good_sibling(vec![network_policy(
        "a",
        "broken",
        "  podSelector: {matchExpressions: [{key: app, operator: in, values: [p]}]}\n  policyTypes: [Egress]\n  egress: [{}]\n",
    )]);
    let state = compile_docs(&docs);
    assert_errors(&state, "NetworkPolicy a/broken", &["spec.podSelector.matchExpressions[0].operator"]);
    assert_good_sibling_applies(&state);
    let p = workload(&state, "a", "p").policy;
    assert!(!nets(&state, p).contains(CLUSTER) && !nets(&state, p).contains("0.0.0.0/0"), "{:?}", nets(&state, p));
}

#[test]
fn duplicate_pod_uids_keep_the_first_pod_by_name() {
    let twin =
        pod("a", "twin", "node-1", "10.244.0.2", "").replace("uid: uid-a-twin", "uid: uid-a-p");
    let elsewhere =
        pod("a", "remote", "node-2", "10.244.1.2", "").replace("uid: uid-a-remote", "uid: uid-a-p");
    let state = compile_docs(&with_good_sibling(vec![twin, elsewhere]));
    assert_errors(&state, "Pod a/twin", &["metadata.uid"]);
    assert!(
        state.diagnostics[0].message.contains("Pod a/p"),
        "{}",
        state.diagnostics[0].message
    );
    assert_eq!(state.workloads["uid-a-p"].name, "p");
    assert_eq!(
        state.workloads.len(),
        1,
        "pods of other nodes are not compared"
    );
    assert!(!state.explain.workloads.contains_key("a/twin"));
    assert_good_sibling_applies(&state);
}

#[test]
fn documents_that_are_not_kubernetes_objects_are_reported_and_skipped() {
    let mut docs = with_good_sibling(vec![]);
    docs.extend(
        [
            "just a string",
            "42",
            "[1, 2, 3]",
            "metadata: {name: nokind}",
            "apiVersion: networking.k8s.io/v1beta1\nkind: NetworkPolicy\nmetadata: {name: old, namespace: a}\nspec: {podSelector: {}, policyTypes: [Egress]}",
            "apiVersion: policy.openservicemesh.io/v1alpha2\nkind: Egress\nmetadata: {name: future, namespace: a}",
            "kind: Pod\nmetadata: {name: noapi, namespace: a}",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: badtype, namespace: a, labels: [x]}",
            "apiVersion: v1\nkind: Pod\nmetadata: {namespace: a}",
        ]
        .map(str::to_owned),
    );
    let (snap, diags) = load(&docs);
    let found: Vec<(&str, &str, Severity)> = diags
        .iter()
        .map(|d| (d.object.as_str(), d.field.as_str(), d.severity))
        .collect();
    assert_eq!(
        found,
        [
            ("document", "(document)", Severity::Error),
            ("document", "(document)", Severity::Error),
            ("document", "(document)", Severity::Error),
            ("document", "kind", Severity::Warning),
            ("NetworkPolicy a/old", "apiVersion", Severity::Warning),
            ("Egress a/future", "apiVersion", Severity::Warning),
            ("Pod a/noapi", "apiVersion", Severity::Warning),
            ("Pod a/badtype", "metadata.labels", Severity::Error),
            ("Pod a/(unnamed)", "metadata.name", Severity::Error),
        ]
    );
    assert!(diags
        .iter()
        .all(|d| d.source.as_deref().is_some_and(|s| s.starts_with("doc"))));
    let state = compile(&snap, &config(&[CLUSTER]));
    assert!(state.diagnostics.is_empty(), "{:?}", state.diagnostics);
    assert_good_sibling_applies(&state);
    assert_eq!(state.workloads.len(), 1);
}

fn service_entry(name: &str, body: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: a}}\nspec:\n{body}")
}

#[test]
fn bad_service_entries_are_reported_and_the_good_ones_apply() {
    let docs = vec![
        ns("a", Some("enforce")),
        pod("a", "p", "node-1", "10.244.0.1", ""),
        service_entry(
            "good",
            "  hosts: [db.internal]\n  location: MESH_INTERNAL\n  addresses: [192.168.50.0/24]\n",
        ),
        service_entry(
            "bad-internal",
            "  hosts: [x.internal]\n  location: MESH_INTERNAL\n  addresses: [192.168.60.0/24, 192.168.61.0/33, not-an-ip]\n  endpoints: [{address: 192.168.62.1}, {address: '*.wild.example'}, {address: 'bad host'}, {address: 1.2.3}]\n",
        ),
        service_entry("bad-location", "  hosts: [y.internal]\n  location: mesh_internal\n  addresses: [192.168.70.0/24]\n"),
        service_entry("bad-external", "  hosts: [z.example]\n  addresses: [300.1.1.1]\n  endpoints: [{address: 'a b'}]\n"),
    ];
    let state = compile_docs(&docs);
    assert_eq!(
        about(&state, "ServiceEntry a/bad-internal"),
        [
            (Severity::Error, "spec.addresses[1]"),
            (Severity::Error, "spec.addresses[2]"),
            (Severity::Error, "spec.endpoints[1].address"),
            (Severity::Error, "spec.endpoints[2].address"),
            (Severity::Error, "spec.endpoints[3].address"),
        ]
    );
    assert_eq!(
        about(&state, "ServiceEntry a/bad-location"),
        [(Severity::Error, "spec.location")]
    );
    assert_eq!(
        about(&state, "ServiceEntry a/bad-external"),
        [
            (Severity::Error, "spec.addresses[0]"),
            (Severity::Error, "spec.endpoints[0].address")
        ],
        "external entries are checked too"
    );
    assert_eq!(state.diagnostics.len(), 8, "{:#?}", state.diagnostics);
    let p = workload(&state, "a", "p").policy;
    assert_eq!(
        nets(&state, p),
        set(&[
            CLUSTER,
            "192.168.50.0/24",
            "192.168.60.0/24",
            "192.168.62.1/32"
        ]),
        "valid addresses apply; an unknown location is external"
    );
    assert_eq!(
        rules_at(&state, p, "192.168.60.0/24"),
        [PortRule::any(REASON_CLUSTER_INTERNAL)]
    );
    assert!(state.hosts.is_empty(), "nothing valid to resolve");
    assert!(
        state.explain.external_hosts.contains_key("y.internal"),
        "treated as MESH_EXTERNAL"
    );
}

fn egress(name: &str, body: &str) -> String {
    format!("apiVersion: policy.openservicemesh.io/v1alpha1\nkind: Egress\nmetadata: {{name: {name}, namespace: a}}\nspec:\n{body}")
}

const MESH_CONFIG: &str = "apiVersion: config.openservicemesh.io/v1alpha3\nkind: MeshConfig\nmetadata: {name: osm-mesh-config, namespace: osm-system}\nspec: {featureFlags: {enableEgressPolicy: true}}\n";


#[test]
fn bad_osm_egress_fields_are_reported_and_the_rest_applies() {
    let docs = vec![
        ns("a", Some("enforce")),
        pod("a", "p", "node-1", "10.244.0.1", ""),
        MESH_CONFIG.to_owned(),
        egress(
            "good",
            "  sources: [{kind: ServiceAccount, name: default, namespace: a}]\n  ipAddresses: [198.51.100.0/24]\n  ports: [{number: 443, protocol: https}]\n",
        ),
        egress(
            "bad",
            "  sources:\n  - {kind: Group, name: devs, namespace: a}\n  - {kind: ServiceAccount, name: '', namespace: a}\n  - {kind: ServiceAccount, name: default}\n  hosts: ['*.example.com', 'a b.example', 1.2.3, ok.example, 192.0.2.7]\n  ipAddresses: [300.1.1.1/8, x, 203.0.113.0/24]\n  ports: [{number: 0, protocol: tcp}, {number: 70000, protocol: tcp}, {number: 53, protocol: udp}, {number: 81, protocol: ''}, {number: 8080, protocol: HTTP}]\n",
        ),
        egress("empty", "  sources: []\n  ports: []\n"),
    ];
    let (snap, load_diags) = load(&docs);
    assert!(load_diags.is_empty(), "{load_diags:?}");
    let cfg = with_hosts(config(&[CLUSTER]), &[("ok.example", &["203.0.113.99"])]);
    let state = compile(&snap, &cfg);
    assert_eq!(
        about(&state, "Egress a/bad"),
        [
            (Severity::Warning, "spec.sources[2].namespace"),
            (Severity::Error, "spec.hosts[0]"),
            (Severity::Error, "spec.hosts[1]"),
            (Severity::Error, "spec.hosts[2]"),
            (Severity::Error, "spec.ipAddresses[0]"),
            (Severity::Error, "spec.ipAddresses[1]"),
            (Severity::Error, "spec.ports[0].number"),
            (Severity::Error, "spec.ports[1].number"),
            (Severity::Error, "spec.ports[2].protocol"),
            (Severity::Error, "spec.ports[3].protocol"),
            (Severity::Error, "spec.sources[0].kind"),
            (Severity::Error, "spec.sources[1].name"),
        ]
    );
    assert_eq!(
        about(&state, "Egress a/empty"),
        [
            (Severity::Error, "spec.hosts"),
            (Severity::Error, "spec.ports"),
            (Severity::Error, "spec.sources")
        ]
    );
    assert!(about(&state, "Egress a/good").is_empty());
    assert_eq!(state.diagnostics.len(), 15, "{:#?}", state.diagnostics);
    let p = workload(&state, "a", "p").policy;
    assert_eq!(
        nets(&state, p),
        set(&[
            CLUSTER,
            "192.0.2.7/32",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "203.0.113.99/32"
        ])
    );
    assert_eq!(
        rules_at(&state, p, "198.51.100.0/24"),
        [mesh(443)],
        "the good Egress"
    );
    assert_eq!(
        rules_at(&state, p, "203.0.113.0/24"),
        [mesh(8080)],
        "the valid parts of the bad one"
    );
    assert_eq!(rules_at(&state, p, "203.0.113.99/32"), [mesh(8080)]);
    assert_eq!(state.hosts, set(&["ok.example"]));
}

#[test]
fn disabled_osm_egresses_are_still_checked_but_not_resolved() {
    let docs = vec![
        ns("a", Some("enforce")),
        pod("a", "p", "node-1", "10.244.0.1", ""),
        egress(
            "bad",
            "  sources: [{kind: ServiceAccount, name: default, namespace: a}]\n  hosts: [ok.example, '*.x.example']\n  ports: [{number: 0, protocol: tcp}]\n",
        ),
    ];
    let state = compile_docs(&docs);
    assert_eq!(
        about(&state, "Egress a/bad"),
        [
            (Severity::Warning, "spec"),
            (Severity::Error, "spec.hosts[1]"),
            (Severity::Error, "spec.ports[0].number")
        ]
    );
    assert!(state.hosts.is_empty());
}

#[test]
fn bad_sidecars_are_reported() {
    let sc = |name: &str, spec: &str| {
        format!("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: {name}, namespace: a}}\nspec: {spec}\n")
    };
    let docs = vec![
        ns("a", Some("enforce")),
        pod("a", "p", "node-1", "10.244.0.1", "app: p"),
        sc("a-first", "{outboundTrafficPolicy: {mode: REGISTRY_ONLY}}"),
        sc(
            "b-second",
            "{outboundTrafficPolicy: {mode: ALLOW_ANY}, workloadSelector: {labels: {}}}",
        ),
        sc(
            "c-typo",
            "{outboundTrafficPolicy: {mode: registry_only}, workloadSelector: {labels: {app: p}}}",
        ),
    ];
    let state = compile_docs(&docs);
    assert_eq!(
        about(&state, "Sidecar a/b-second"),
        [(Severity::Warning, "spec.workloadSelector")]
    );
    assert_eq!(
        about(&state, "Sidecar a/c-typo"),
        [(Severity::Warning, "spec.outboundTrafficPolicy.mode")]
    );
    assert_eq!(state.diagnostics.len(), 2);
    assert_eq!(
        state.explain.workloads["a/p"].sources.registry_only, None,
        "the matching Sidecar's mode is not REGISTRY_ONLY"
    );
}

#[test]
fn host_network_pods_and_init_container_ports_are_not_peers() {
    let host_db = "apiVersion: v1\nkind: Pod\nmetadata: {name: host-db, namespace: a, uid: u-host-db, labels: {app: db}}\nspec: {nodeName: node-2, hostNetwork: true, containers: [{name: c, image: i, ports: [{name: web, containerPort: 8080}]}]}\nstatus: {phase: Running, podIP: 172.18.0.2}\n";
    let db = "apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: a, uid: u-db, labels: {app: db}}\nspec:\n  nodeName: node-2\n  initContainers:\n  - {name: setup, image: i, ports: [{name: setup, containerPort: 9000}]}\n  - {name: proxy, image: i, restartPolicy: Always, ports: [{name: proxy, containerPort: 15001}]}\n  containers: [{name: c, image: i, ports: [{name: web, containerPort: 8080}]}]\nstatus: {phase: Running, podIP: 10.244.0.9}\n";
    let docs = vec![
        ns("a", Some("enforce")),
        pod("a", "p", "node-1", "10.244.0.1", "app: p"),
        host_db.to_owned(),
        db.to_owned(),
        network_policy(
            "a",
            "to-db",
            "  podSelector: {matchLabels: {app: p}}\n  policyTypes: [Egress]\n  egress: [{to: [{podSelector: {matchLabels: {app: db}}}], ports: [{port: web}, {port: setup}, {port: proxy}]}]\n",
        ),
    ];
    let state = compile_docs(&docs);
    let p = workload(&state, "a", "p").policy;
    assert_eq!(nets(&state, p), set(&["10.244.0.9/32"]), "the node address 172.18.0.2 is not a peer");
    assert_eq!(rules_at(&state, p, "10.244.0.9/32"), [np_rules(8080, PROTO_TCP), np_rules(15001, PROTO_TCP)]);
}

/// A policy of namespace `a` selecting every pod, with these egress rules.
fn typed_policy(name: &str, egress: Vec<k8s_openapi::api::networking::v1::NetworkPolicyEgressRule>) -> k8s_openapi::api::networking::v1::NetworkPolicy {
    use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
    let mut policy = NetworkPolicy::default();
    policy.metadata.name = Some(name.into());
    policy.metadata.namespace = Some("a".into());
    policy.spec = Some(NetworkPolicySpec {
        pod_selector: Some(Default::default()),
        policy_types: Some(vec!["Egress".into()]),
        egress: Some(egress),
        ..Default::default()
    });
    policy
}

#[test]
fn a_huge_policy_fails_closed_with_a_report_naming_the_field() {
    use k8s_openapi::api::networking::v1::{IPBlock, NetworkPolicyEgressRule, NetworkPolicyPeer};
    // ipBlock 10.0.0.0/8 with 100,000 except entries (10.x.y.z/32).
    let except: Vec<String> = (0..100_000u32).map(|i| format!("10.{}.{}.{}/32", (i >> 16) & 255, (i >> 8) & 255, i & 255)).collect();
    let block = NetworkPolicyPeer {
        ip_block: Some(IPBlock { cidr: "10.0.0.0/8".into(), except: Some(except) }),
        ..Default::default()
    };
    let rule = NetworkPolicyEgressRule { to: Some(vec![block]), ports: None };
    let mut snap = super::tests::snapshot(&[ns("a", Some("enforce")), pod("a", "p", "node-1", "10.244.0.1", "app: p")]);
    snap.network_policies.push(typed_policy("huge", vec![rule]));
    let state = compile(&snap, &config(&[CLUSTER]));
    let found = about(&state, "NetworkPolicy a/huge");
    assert_eq!(found, [(Severity::Error, "spec.egress[0].to[0].ipBlock.except")], "one report, not one per entry");
    let d = state.diagnostics.iter().find(|d| d.object == "NetworkPolicy a/huge").expect("reported");
    assert!(d.message.contains("100000 except entries, more than the limit of 1024"), "{}", d.message);
    assert!(d.message.contains("allows nothing and still isolates"), "{}", d.message);
    let id = workload(&state, "a", "p").policy;
    assert!(state.policies[&id].is_empty(), "isolated and allowed nothing (fail closed)");
    assert_eq!(state.explain.workloads["a/p"].sources.network_policies, ["a/huge"]);

    // 100,000 peers in one rule: the same.
    let peers: Vec<NetworkPolicyPeer> = (0..100_000u32)
        .map(|i| NetworkPolicyPeer {
            ip_block: Some(IPBlock { cidr: format!("10.{}.{}.{}/32", (i >> 16) & 255, (i >> 8) & 255, i & 255), except: None }),
            ..Default::default()
        })
        .collect();
    let mut snap = super::tests::snapshot(&[ns("a", Some("enforce")), pod("a", "p", "node-1", "10.244.0.1", "app: p")]);
    snap.network_policies.push(typed_policy("wide", vec![NetworkPolicyEgressRule { to: Some(peers), ports: None }]));
    let state = compile(&snap, &config(&[CLUSTER]));
    assert_eq!(about(&state, "NetworkPolicy a/wide"), [(Severity::Error, "spec.egress[0].to")]);
    assert!(state.policies[&workload(&state, "a", "p").policy].is_empty());
}

#[test]
fn a_policy_at_the_limits_still_compiles() {
    use k8s_openapi::api::networking::v1::{IPBlock, NetworkPolicyEgressRule, NetworkPolicyPeer};
    let except: Vec<String> = (0..1024u32).map(|i| format!("10.1.{}.{}/32", i / 256, i % 256)).collect();
    let block = NetworkPolicyPeer { ip_block: Some(IPBlock { cidr: "10.0.0.0/8".into(), except: Some(except) }), ..Default::default() };
    let mut snap = super::tests::snapshot(&[ns("a", Some("enforce")), pod("a", "p", "node-1", "10.244.0.1", "app: p")]);
    snap.network_policies.push(typed_policy("big", vec![NetworkPolicyEgressRule { to: Some(vec![block]), ports: None }]));
    let state = compile(&snap, &config(&[CLUSTER]));
    assert!(state.diagnostics.is_empty(), "{:?}", state.diagnostics);
    let id = workload(&state, "a", "p").policy;
    assert_eq!(state.policies[&id].len(), 1025);
    assert!(rules_at(&state, id, "10.1.3.255/32").is_empty());
    assert_eq!(rules_at(&state, id, "10.0.0.0/8"), [PortRule::any(agent_common::REASON_NETWORK_POLICY)]);
}
