//! Rule 5 of the contract and the explanations: OSM `Egress` (with the
//! `MeshConfig` switch), Istio `ServiceEntry` locations, `Sidecar`
//! `REGISTRY_ONLY` precedence, and what `explain.workloads` says.
use std::net::IpAddr;

use agent_common::{PortRule, PROTO_TCP, REASON_CLUSTER_INTERNAL};

use super::tests::{compile, config, mesh, nets, network_policy, np_rules, ns, pod, rules_at, set, snapshot, with_hosts, workload};
use super::*;
use crate::model::istio::ISTIO_API_VERSIONS;
use crate::desired::DesiredState;
use crate::model::osm::MESH_CONFIG_API_VERSIONS;

const CLUSTER: &str = "10.244.0.0/16";

/// A running pod of node-1 that runs as ServiceAccount `sa` (unset: the
/// `default` ServiceAccount).
fn sa_pod(ns: &str, name: &str, ip: &str, labels: &str, sa: Option<&str>) -> String {
    let doc = pod(ns, name, "node-1", ip, labels);
    match sa {
        Some(sa) => doc.replace(
            "spec:\n  nodeName",
            &format!("spec:\n  serviceAccountName: {sa}\n  nodeName"),
        ),
        None => doc,
    }
}

fn mesh_config(api: &str, ns: &str, name: &str, enable_egress_policy: bool) -> String {
    format!("apiVersion: {api}\nkind: MeshConfig\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  traffic: {{enableEgress: false}}\n  featureFlags: {{enableEgressPolicy: {enable_egress_policy}}}\n")
}

fn osm_on() -> String {
    mesh_config(
        "config.openservicemesh.io/v1alpha2",
        "osm-system",
        "osm-mesh-config",
        true,
    )
}

fn egress(ns: &str, name: &str, body: &str) -> String {
    format!("apiVersion: policy.openservicemesh.io/v1alpha1\nkind: Egress\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{body}")
}

fn service_entry(api: &str, ns: &str, name: &str, body: &str) -> String {
    format!("apiVersion: {api}\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{body}")
}

fn sidecar(ns: &str, name: &str, selector: Option<&str>, mode: Option<&str>) -> String {
    let mut doc = format!("apiVersion: networking.istio.io/v1beta1\nkind: Sidecar\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  egress: [{{hosts: ['./*']}}]\n");
    if let Some(sel) = selector {
        doc.push_str(&format!("  workloadSelector: {{labels: {{{sel}}}}}\n"));
    }
    if let Some(mode) = mode {
        doc.push_str(&format!("  outboundTrafficPolicy: {{mode: {mode}}}\n"));
    }
    doc
}


fn ip(s: &str) -> IpAddr {
    s.parse().expect("test ip")
}


fn why<'a>(state: &'a DesiredState, key: &str) -> &'a crate::explain::WorkloadExplain {
    state
        .explain
        .workloads
        .get(key)
        .unwrap_or_else(|| panic!("no explanation for {key}"))
}



const HTTPBIN_EGRESS: &str = "  sources: [{kind: ServiceAccount, name: curl, namespace: curl}]\n  hosts: [HTTPBin.org., unresolved.example]\n  ipAddresses: [198.51.100.0/24, 2001:db8::5]\n  ports: [{number: 80, protocol: http}, {number: 443, protocol: https}]\n";

fn osm_docs() -> Vec<String> {
    vec![
        ns("curl", Some("enforce")),
        ns("other", Some("enforce")),
        sa_pod("curl", "a", "10.244.0.1", "app: a", Some("curl")),
        sa_pod("curl", "b", "10.244.0.2", "app: b", Some("other")),
        sa_pod("curl", "c", "10.244.0.3", "app: c", None),
        sa_pod("other", "d", "10.244.0.4", "app: d", Some("curl")),
        egress("curl", "httpbin", HTTPBIN_EGRESS),
        egress(
            "curl",
            "default-sa",
            "  sources: [{kind: ServiceAccount, name: default, namespace: curl}]\n  ipAddresses: [192.0.2.0/25]\n  ports: [{number: 5432, protocol: tcp}]\n",
        ),
    ]
}

#[test]
fn osm_egress_grants_addresses_and_resolved_hosts_to_its_service_accounts() {
    let mut docs = osm_docs();
    docs.push(osm_on());
    let cfg = with_hosts(
        config(&[CLUSTER]),
        &[("httpbin.org", &["203.0.113.7", "2001:db8::7"])],
    );
    let state = compile(&snapshot(&docs), &cfg);
    assert!(state.diagnostics.is_empty(), "{:?}", state.diagnostics);

    let a = workload(&state, "curl", "a").policy;
    assert_eq!(
        nets(&state, a),
        set(&[
            CLUSTER,
            "198.51.100.0/24",
            "203.0.113.7/32",
            "2001:db8::5/128",
            "2001:db8::7/128"
        ]),
        "ipAddresses and the resolved host; the unresolved host grants nothing"
    );
    for net in [
        "198.51.100.0/24",
        "203.0.113.7/32",
        "2001:db8::5/128",
        "2001:db8::7/128",
    ] {
        assert_eq!(
            rules_at(&state, a, net),
            [mesh(80), mesh(443)],
            "{net}: TCP on the Egress ports only"
        );
    }
    assert_eq!(
        rules_at(&state, a, CLUSTER),
        [PortRule::any(REASON_CLUSTER_INTERNAL)],
        "adds to rule 4"
    );

    // Another ServiceAccount in the same namespace: not granted.
    let b = workload(&state, "curl", "b").policy;
    assert_eq!(nets(&state, b), set(&[CLUSTER]));
    // No serviceAccountName: the `default` ServiceAccount.
    let c = workload(&state, "curl", "c").policy;
    assert_eq!(nets(&state, c), set(&[CLUSTER, "192.0.2.0/25"]));
    assert_eq!(rules_at(&state, c, "192.0.2.0/25"), [mesh(5432)]);
    // The same ServiceAccount name in another namespace: not granted.
    let d = workload(&state, "other", "d").policy;
    assert_eq!(d, b, "same rules as a pod without grants");

    assert_eq!(
        state.hosts,
        set(&["httpbin.org", "unresolved.example"]),
        "names to resolve, lower-case"
    );
    assert_eq!(
        state.explain.resolved["httpbin.org"],
        [ip("203.0.113.7"), ip("2001:db8::7")]
    );
    assert!(state.explain.resolved["unresolved.example"].is_empty());

    let wa = why(&state, "curl/a");
    assert_eq!(wa.sources.service_account, "curl");
    assert_eq!(wa.sources.mesh_egress, ["curl/httpbin"]);
    assert_eq!(why(&state, "curl/c").sources.service_account, "default");
    assert_eq!(why(&state, "curl/c").sources.mesh_egress, ["curl/default-sa"]);
    assert!(why(&state, "curl/b").sources.mesh_egress.is_empty());
    assert!(why(&state, "other/d").sources.mesh_egress.is_empty());
    let osm = state.explain.osm.as_ref().expect("MeshConfig explained");
    assert_eq!(osm.mesh_config, "osm-system/osm-mesh-config");
    assert!(osm.enable_egress_policy && !osm.enable_egress);

    let origins = state
        .explain
        .origins(a, ip("203.0.113.7"), PROTO_TCP, 443, "mesh-egress-policy");
    assert_eq!(origins, ["Egress curl/httpbin spec.hosts[0] HTTPBin.org."]);
    assert!(state
        .explain
        .origins(a, ip("203.0.113.7"), PROTO_TCP, 8080, "mesh-egress-policy")
        .is_empty());
}

#[test]
fn osm_egress_grants_nothing_unless_the_mesh_config_enables_egress_policy() {
    let cfg = with_hosts(config(&[CLUSTER]), &[("httpbin.org", &["203.0.113.7"])]);
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "there is no OSM MeshConfig osm-mesh-config"),
        (
            Some(mesh_config("config.openservicemesh.io/v1alpha2", "osm-system", "osm-mesh-config", false)),
            "MeshConfig osm-system/osm-mesh-config does not set spec.featureFlags.enableEgressPolicy: true",
        ),
        (
            Some("apiVersion: config.openservicemesh.io/v1alpha2\nkind: MeshConfig\nmetadata: {name: osm-mesh-config, namespace: osm-system}\nspec: {traffic: {enableEgress: true}}\n".to_owned()),
            "does not set spec.featureFlags.enableEgressPolicy: true",
        ),
        (
            Some(mesh_config("config.openservicemesh.io/v1alpha2", "osm-system", "not-the-mesh-config", true)),
            "there is no OSM MeshConfig osm-mesh-config",
        ),
    ];
    for (mc, why_not) in cases {
        let mut docs = osm_docs();
        docs.extend(mc.clone());
        let state = compile(&snapshot(&docs), &cfg);
        let a = workload(&state, "curl", "a").policy;
        assert_eq!(nets(&state, a), set(&[CLUSTER]), "{mc:?}");
        assert!(
            state.hosts.is_empty(),
            "nothing to resolve: {:?}",
            state.hosts
        );
        assert!(why(&state, "curl/a").sources.mesh_egress.is_empty());
        for name in ["curl/httpbin", "curl/default-sa"] {
            let d = state
                .diagnostics
                .iter()
                .find(|d| d.object == format!("Egress {name}"))
                .unwrap_or_else(|| panic!("{name} reported: {:?}", state.diagnostics));
            assert_eq!((d.severity, d.field.as_str()), (Severity::Warning, "spec"));
            assert!(
                d.message.contains(why_not) && d.message.contains("grants nothing"),
                "{}",
                d.message
            );
        }
    }
}

#[test]
fn mesh_config_is_read_in_every_osm_api_version() {
    for api in MESH_CONFIG_API_VERSIONS {
        let mut docs = osm_docs();
        docs.push(mesh_config(api, "osm-system", "osm-mesh-config", true));
        let state = compile(&snapshot(&docs), &config(&[CLUSTER]));
        assert!(
            state.diagnostics.is_empty(),
            "{api}: {:?}",
            state.diagnostics
        );
        let c = workload(&state, "curl", "c").policy;
        assert_eq!(nets(&state, c), set(&[CLUSTER, "192.0.2.0/25"]), "{api}");
    }
}

#[test]
fn the_mesh_config_in_the_osm_namespace_wins_over_other_trusted_ones() {
    let mut docs = osm_docs();
    docs.push(mesh_config("config.openservicemesh.io/v1alpha3", "aaa", "osm-mesh-config", false));
    docs.push("apiVersion: v1\nkind: Namespace\nmetadata: {name: aaa, labels: {tollgate.dev/trusted: 'true'}}\n".to_owned());
    docs.push(osm_on());
    let state = compile(&snapshot(&docs), &config(&[CLUSTER]));
    assert!(state.diagnostics.is_empty(), "{:?}", state.diagnostics);
    let ignored: Vec<(&str, &str)> = state.ignored.iter().map(|i| (i.object.as_str(), i.rule.as_str())).collect();
    assert_eq!(ignored, [("MeshConfig aaa/osm-mesh-config", "superseded-mesh-config")]);
    let c = workload(&state, "curl", "c").policy;
    assert!(nets(&state, c).contains("192.0.2.0/25"));

    // --osm-namespace aaa: that one wins, and it has egress policy off.
    let cfg = CompilerConfig { osm_namespace: "aaa".into(), ..config(&[CLUSTER]) };
    let state = compile(&snapshot(&docs), &cfg);
    let ignored: Vec<(&str, &str)> = state.ignored.iter().map(|i| (i.object.as_str(), i.rule.as_str())).collect();
    assert_eq!(ignored, [("MeshConfig osm-system/osm-mesh-config", "superseded-mesh-config")]);
    let c = workload(&state, "curl", "c").policy;
    assert!(!nets(&state, c).contains("192.0.2.0/25"));
    assert_eq!(state.explain.osm.as_ref().map(|o| o.mesh_config.as_str()), Some("aaa/osm-mesh-config"));
}

#[test]
fn osm_rules_add_to_network_policy_selected_pods_too() {
    let mut docs = osm_docs();
    docs.push(osm_on());
    docs.push(network_policy(
        "curl",
        "a-db",
        "  podSelector: {matchLabels: {app: a}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{ipBlock: {cidr: 10.250.0.9/32}}]\n    ports: [{port: 5432}]\n",
    ));
    let cfg = with_hosts(config(&[CLUSTER]), &[("httpbin.org", &["203.0.113.7"])]);
    let state = compile(&snapshot(&docs), &cfg);
    assert!(state.diagnostics.is_empty(), "{:?}", state.diagnostics);
    let a = workload(&state, "curl", "a").policy;
    assert_eq!(
        nets(&state, a),
        set(&[
            "10.250.0.9/32",
            "198.51.100.0/24",
            "203.0.113.7/32",
            "2001:db8::5/128"
        ]),
        "NetworkPolicy rules replace the cluster CIDRs; OSM rules add to them"
    );
    assert_eq!(
        rules_at(&state, a, "10.250.0.9/32"),
        [np_rules(5432, PROTO_TCP)]
    );
    assert_eq!(rules_at(&state, a, "203.0.113.7/32"), [mesh(80), mesh(443)]);
    let wa = why(&state, "curl/a");
    assert_eq!(wa.sources.network_policies, ["curl/a-db"]);
    assert_eq!(wa.sources.mesh_egress, ["curl/httpbin"]);
}

fn internal_entry(api: &str) -> String {
    service_entry(
        api,
        "vms",
        "vm-db",
        "  hosts: [db.vms.internal]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  addresses: [192.168.50.0/24, 192.168.60.7, 'fd00:50::/64']\n  endpoints:\n  - {address: 192.168.70.1}\n  - {address: 'fd00:70::1'}\n  - {address: VM.Internal}\n  - {address: 'unix:///var/run/db.sock'}\n  ports: [{number: 5432, name: tcp, protocol: TCP}]\n",
    )
}

#[test]
fn mesh_internal_service_entries_join_the_cluster_internal_rule() {
    for api in ISTIO_API_VERSIONS {
        let docs = vec![
            ns("shop", Some("enforce")),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: vms, labels: {tollgate.dev/trusted: 'true'}}\n".to_owned(),
            pod("shop", "plain", "node-1", "10.244.0.1", "app: plain"),
            pod("shop", "restricted", "node-1", "10.244.0.2", "app: restricted"),
            network_policy(
                "shop",
                "restricted",
                "  podSelector: {matchLabels: {app: restricted}}\n  policyTypes: [Egress]\n  egress: [{to: [{ipBlock: {cidr: 10.250.0.0/16}}]}]\n",
            ),
            internal_entry(api),
        ];
        let cfg = with_hosts(config(&[CLUSTER]), &[("vm.internal", &["192.168.80.8"])]);
        let state = compile(&snapshot(&docs), &cfg);
        assert!(
            state.diagnostics.is_empty(),
            "{api}: {:?}",
            state.diagnostics
        );
        let plain = workload(&state, "shop", "plain").policy;
        let internal = [
            "192.168.50.0/24",
            "192.168.60.7/32",
            "fd00:50::/64",
            "192.168.70.1/32",
            "fd00:70::1/128",
            "192.168.80.8/32",
        ];
        let mut expected = set(&internal);
        expected.insert(CLUSTER.to_owned());
        assert_eq!(nets(&state, plain), expected, "{api}");
        for net in internal {
            assert_eq!(
                rules_at(&state, plain, net),
                [PortRule::any(REASON_CLUSTER_INTERNAL)],
                "{api} {net}"
            );
        }
        let origins = state.explain.origins(
            plain,
            ip("192.168.50.9"),
            PROTO_TCP,
            5432,
            "cluster-internal",
        );
        assert_eq!(
            origins,
            ["ServiceEntry vms/vm-db (MESH_INTERNAL) spec.addresses[0] 192.168.50.0/24"]
        );
        assert_eq!(
            state.hosts,
            set(&["vm.internal"]),
            "endpoint names are resolved like OSM hosts"
        );

        // Pods that egress NetworkPolicies select get exactly what those allow.
        let restricted = workload(&state, "shop", "restricted").policy;
        assert_eq!(nets(&state, restricted), set(&["10.250.0.0/16"]), "{api}");
        assert_eq!(
            why(&state, "shop/restricted").sources.network_policies,
            ["shop/restricted"]
        );
        assert!(why(&state, "shop/plain").sources.network_policies.is_empty());
    }
}

#[test]
fn unresolved_mesh_internal_endpoint_names_grant_nothing_yet() {
    let docs = vec![
        ns("shop", Some("enforce")),
        pod("shop", "plain", "node-1", "10.244.0.1", ""),
        internal_entry("networking.istio.io/v1"),
    ];
    let state = compile(&snapshot(&docs), &config(&[CLUSTER]));
    let plain = workload(&state, "shop", "plain").policy;
    assert!(!nets(&state, plain).contains("192.168.80.8/32"));
    assert_eq!(state.hosts, set(&["vm.internal"]));
    assert!(state.explain.resolved["vm.internal"].is_empty());
}

#[test]
fn external_service_entry_hosts_are_explained_and_grant_nothing() {
    for api in ISTIO_API_VERSIONS {
        let docs = vec![
            ns("shop", Some("enforce")),
            pod("shop", "plain", "node-1", "10.244.0.1", ""),
            service_entry(
                api,
                "shop",
                "cnn",
                "  hosts: [Edition.CNN.com, '*.wikipedia.org']\n  location: MESH_EXTERNAL\n  addresses: [203.0.113.0/24]\n  endpoints: [{address: 203.0.113.9}, {address: cnn-origin.example}]\n  resolution: DNS\n",
            ),
            service_entry(api, "other", "cnn-again", "  hosts: [edition.cnn.com]\n"),
        ];
        let cfg = with_hosts(
            config(&[CLUSTER]),
            &[("cnn-origin.example", &["203.0.113.10"])],
        );
        let state = compile(&snapshot(&docs), &cfg);
        assert!(
            state.diagnostics.is_empty(),
            "{api}: {:?}",
            state.diagnostics
        );
        let plain = workload(&state, "shop", "plain").policy;
        assert_eq!(
            nets(&state, plain),
            set(&[CLUSTER]),
            "{api}: external entries grant nothing"
        );
        assert!(
            state.hosts.is_empty(),
            "external endpoint names are not resolved"
        );
        assert_eq!(
            state.explain.external_hosts["edition.cnn.com"],
            ["ServiceEntry other/cnn-again", "ServiceEntry shop/cnn"]
        );
        assert_eq!(
            state.explain.external_hosts["*.wikipedia.org"],
            ["ServiceEntry shop/cnn"]
        );
        assert!(state.explain.external_host("en.wikipedia.org").is_some());
    }
}

#[test]
fn registry_only_follows_istio_sidecar_precedence() {
    let docs = vec![
        ns("a", Some("enforce")),
        ns("b", Some("audit")),
        ns("c", Some("enforce")),
        pod("a", "locked", "node-1", "10.244.0.1", "app: locked"),
        pod("a", "open", "node-1", "10.244.0.2", "app: open"),
        pod("a", "unset", "node-1", "10.244.0.3", "app: unset"),
        pod("b", "p", "node-1", "10.244.0.4", "app: locked"),
        pod("c", "p", "node-1", "10.244.0.5", "app: other"),
        pod("d", "p", "node-1", "10.244.0.6", "app: locked"),
        // Root default: REGISTRY_ONLY for every namespace without its own.
        sidecar("istio-system", "default", None, Some("REGISTRY_ONLY")),
        // A root Sidecar with a selector is no mesh default.
        sidecar(
            "istio-system",
            "zz-selected",
            Some("app: other"),
            Some("ALLOW_ANY"),
        ),
        // Namespace a: its default allows any; a selector Sidecar locks one
        // pod; another selects a pod without setting a mode (the most
        // specific Sidecar applies whole: not REGISTRY_ONLY).
        sidecar("a", "default", None, Some("ALLOW_ANY")),
        sidecar("a", "locked", Some("app: locked"), Some("REGISTRY_ONLY")),
        sidecar("a", "unset", Some("app: unset"), None),
        // Namespace c: a selector Sidecar that does not match the pod.
        sidecar("c", "someone-else", Some("app: nobody"), Some("ALLOW_ANY")),
    ];
    let state = compile(&snapshot(&docs), &config(&[CLUSTER]));
    assert!(state.diagnostics.is_empty(), "{:?}", state.diagnostics);
    let ro = |key: &str| why(&state, key).sources.registry_only.clone();
    assert_eq!(
        ro("a/locked").as_deref(),
        Some("Sidecar a/locked"),
        "selector in the pod's namespace first"
    );
    assert_eq!(ro("a/open"), None, "then the namespace default (ALLOW_ANY)");
    assert_eq!(ro("a/unset"), None, "the matching Sidecar sets no mode");
    assert_eq!(
        ro("b/p").as_deref(),
        Some("Sidecar istio-system/default"),
        "then the root default"
    );
    assert_eq!(ro("c/p").as_deref(), Some("Sidecar istio-system/default"));
    assert_eq!(
        ro("d/p").as_deref(),
        Some("Sidecar istio-system/default"),
        "unenforced pods are explained too"
    );
}

#[test]
fn workload_explanations_name_label_policies_and_service_account() {
    let docs = vec![
        ns("a", Some("audit")),
        ns("b", Some("yes")),
        ns("c", None),
        sa_pod("a", "web", "10.244.0.1", "app: web", Some("web-sa")),
        sa_pod("b", "p", "10.244.0.2", "", None),
        sa_pod("c", "p", "10.244.0.3", "", Some("c-sa")),
        network_policy("a", "web-1", "  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Egress]\n"),
        network_policy("a", "all", "  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{ports: [{port: 53, protocol: UDP}]}]\n"),
        network_policy("a", "ingress", "  podSelector: {}\n  policyTypes: [Ingress]\n"),
        osm_on(),
        egress(
            "a",
            "web-out",
            "  sources: [{kind: ServiceAccount, name: web-sa, namespace: a}]\n  ipAddresses: [192.0.2.1]\n  ports: [{number: 443, protocol: https}]\n",
        ),
    ];
    let state = compile(&snapshot(&docs), &config(&[CLUSTER]));
    let web = why(&state, "a/web");
    assert_eq!(web.mode, Mode::Audit);
    assert_eq!(web.label.as_deref(), Some("audit"));
    assert_eq!(
        web.sources.network_policies,
        ["a/all", "a/web-1"],
        "sorted; ingress-only policies do not count"
    );
    assert_eq!(web.sources.service_account, "web-sa");
    assert_eq!(web.sources.mesh_egress, ["a/web-out"]);
    assert_eq!(web.policy, workload(&state, "a", "web").policy);
    assert!(!web.gateway);
    let b = why(&state, "b/p");
    assert_eq!(
        (b.mode, b.label.as_deref()),
        (Mode::Enforce, Some("yes")),
        "bad value fails closed"
    );
    assert_eq!(b.sources.service_account, "default");
    let c = why(&state, "c/p");
    assert_eq!((c.mode, c.label.as_deref(), c.policy), (Mode::Off, None, 0));
    assert_eq!(c.sources.service_account, "c-sa");
    assert!(c.sources.network_policies.is_empty() && c.sources.mesh_egress.is_empty());
}

#[test]
fn mesh_internal_entries_count_only_in_the_namespaces_they_are_exported_to() {
    let entry = |name: &str, export: &str, addr: &str| {
        service_entry(
            "networking.istio.io/v1",
            "vms",
            name,
            &format!("  hosts: [{name}.vms.internal]\n  location: MESH_INTERNAL\n  addresses: [{addr}]\n{export}"),
        )
    };
    let docs = |vms_namespace: String| {
        vec![
            ns("shop", Some("enforce")),
            vms_namespace,
            pod("shop", "a", "node-1", "10.244.0.1", "app: a"),
            pod("vms", "b", "node-1", "10.244.0.2", "app: b"),
            entry("everyone", "", "192.168.1.1"),
            entry("star", "  exportTo: ['*']\n", "192.168.2.2"),
            entry("own", "  exportTo: ['.']\n", "192.168.3.3"),
            entry("shop-only", "  exportTo: [shop]\n", "192.168.4.4"),
            entry("nobody", "  exportTo: ['~']\n", "192.168.5.5"),
        ]
    };
    let trusted = "apiVersion: v1\nkind: Namespace\nmetadata: {name: vms, labels: {tollgate.dev/egress: enforce, tollgate.dev/trusted: 'true'}}\n";
    let state = compile(&snapshot(&docs(trusted.to_owned())), &config(&[CLUSTER]));
    assert!(state.diagnostics.is_empty(), "{:?}", state.diagnostics);
    assert!(state.ignored.is_empty(), "{:?}", state.ignored);
    let shop = workload(&state, "shop", "a").policy;
    let vms = workload(&state, "vms", "b").policy;
    assert_eq!(
        nets(&state, shop),
        set(&[CLUSTER, "192.168.1.1/32", "192.168.2.2/32", "192.168.4.4/32"])
    );
    assert_eq!(
        nets(&state, vms),
        set(&[CLUSTER, "192.168.1.1/32", "192.168.2.2/32", "192.168.3.3/32"])
    );

    // The same entries in a namespace that is not trusted: its own pods
    // only, never further than exportTo says.
    let state = compile(&snapshot(&docs(ns("vms", Some("enforce")))), &config(&[CLUSTER]));
    let shop = workload(&state, "shop", "a").policy;
    let vms = workload(&state, "vms", "b").policy;
    assert_eq!(nets(&state, shop), set(&[CLUSTER]));
    assert_eq!(nets(&state, vms), set(&[CLUSTER, "192.168.1.1/32", "192.168.2.2/32", "192.168.3.3/32"]));
    let ignored: Vec<(&str, &str)> = state.ignored.iter().map(|i| (i.object.as_str(), i.rule.as_str())).collect();
    assert_eq!(
        ignored,
        [
            ("ServiceEntry vms/everyone", "untrusted-mesh-internal-export"),
            ("ServiceEntry vms/shop-only", "untrusted-mesh-internal-export"),
            ("ServiceEntry vms/star", "untrusted-mesh-internal-export"),
        ]
    );
}
