//! Property test of the pure compiler: random documents shaped like the
//! kinds Tollgate reads (and junk: wrong types, odd strings, huge and
//! negative numbers, unknown apiVersions, random nesting) go through
//! `Snapshot::add_document` and `compile` with a random `CompilerConfig`.
//!
//! - Neither loading nor compiling panics.
//! - Compiling is deterministic: the same input gives the same output, and
//!   the same objects in another order give the same state (when no object
//!   is defined twice: then the later one wins by design).
//! - A few invariants of the output hold (policy ids, trie sizes, hosts).
//!
//! The default case count keeps the test well under 20 s in release mode;
//! `PROPTEST_CASES=N` runs more.
use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use agent_common::MAX_PORT_RULES;
use ipnet::IpNet;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};
use tollgate::compiler::{bind, CompilerConfig};
use tollgate::desired::{DesiredState, Diagnostic, Mode};
use tollgate::model::Snapshot;

const DEFAULT_CASES: u32 = 3000;

// ---- pools of values, valid and not ----

const NAMESPACES: &[&str] = &[
    "a",
    "a",
    "a",
    "a",
    "a",
    "a",
    "b",
    "b",
    "default",
    "kube-system",
    "istio-system",
    "osm-system",
    "",
];
const NAMES: &[&str] = &[
    "p",
    "q",
    "web",
    "db",
    "kube-dns",
    "egress",
    "osm-mesh-config",
    "default",
    "x",
];
const UIDS: &[&str] = &[
    "uid-1", "uid-2", "uid-3", "uid-4", "uid-5", "uid-6", "uid-7", "uid-8", "uid-9", "uid-10",
    "uid-11", "uid-12", "",
];
const LABEL_KEYS: &[&str] = &[
    "app",
    "tier",
    "k8s-app",
    "istio",
    "tollgate.dev/egress",
    "tollgate.dev/egress-gateway",
    "kubernetes.io/metadata.name",
    "kubernetes.io/service-name",
    "bad key",
    "-x",
    "Example.com/x",
    "",
];
const LABEL_VALUES: &[&str] = &[
    "web",
    "db",
    "kube-dns",
    "egressgateway",
    "enforce",
    "audit",
    "true",
    "yes",
    "a",
    "kube-system",
    "",
    "x y",
];
const IPS: &[&str] = &[
    "10.244.0.1",
    "10.244.0.2",
    "10.244.1.5",
    "10.96.0.10",
    "192.0.2.1",
    "203.0.113.7",
    "fd00::1",
    "fd00:10:244::1",
    "::",
    "0.0.0.0",
    "255.255.255.255",
    "::ffff:10.0.0.1",
    "fe80::1%eth0",
    "10.0.0.300",
    "not-an-ip",
    "",
];
const CIDRS: &[&str] = &[
    "10.0.0.0/8",
    "10.244.0.0/16",
    "10.244.0.0/24",
    "0.0.0.0/0",
    "::/0",
    "192.0.2.0/24",
    "192.0.2.128/25",
    "10.1.2.3/8",
    "fd00::/8",
    "192.0.2.0/33",
    "fd00::/129",
    "10.0.0.0/-1",
    "/8",
    "10.0.0.0/8/8",
];
const HOSTS: &[&str] = &[
    "httpbin.org",
    "HTTPBin.org.",
    "vm.internal",
    "edition.cnn.com",
    "*.example.com",
    "*",
    "a b",
    "1.2.3",
    "",
    ".",
    "..",
    "-a.example",
    "xn--bcher-kva.example",
    "10.0.0.1",
    "fd00::1",
    "unix:///var/run/x.sock",
    "httpbin.org:80",
    "ünïcødé.example",
];
const OSM_PROTOCOLS: &[&str] = &[
    "http",
    "https",
    "tcp",
    "tcp-server-first",
    "HTTP",
    "udp",
    "",
];
const NP_PROTOCOLS: &[&str] = &["TCP", "TCP", "TCP", "UDP", "UDP", "SCTP", "tcp", "ICMP", ""];
const PROTOCOLS: &[&str] = &[
    "TCP",
    "UDP",
    "SCTP",
    "tcp",
    "ICMP",
    "",
    "http",
    "https",
    "tcp-server-first",
    "HTTP",
    "grpc",
];
const OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist", "Equals", "in", ""];
const PORT_NAMES: &[&str] = &[
    "http",
    "metrics",
    "dns",
    "web--x",
    "Web",
    "80",
    "a-very-long-port-name",
    "",
];
const PORTS: &[i64] = &[0, 1, 53, 80, 443, 5432, 8080, 65535];
const EDGES: &[i64] = &[-1, 65536, 2_147_483_648, -2_147_483_649, i64::MAX, i64::MIN];
const NODES: &[&str] = &["node-1", "node-1", "node-1", "node-2", ""];
const SERVICE_ACCOUNTS: &[&str] = &["default", "default", "default", "curl", ""];
/// Names of random Namespace objects (fewer clashes with the base ones).
const NAMESPACE_NAMES: &[&str] = &["a", "b", "c", "default", "kube-system", "istio-system", ""];
const PHASES: &[&str] = &[
    "Running",
    "Running",
    "Running",
    "Pending",
    "Succeeded",
    "Failed",
    "Unknown",
    "",
];

fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::sample::select(pool).prop_map(Value::from)
}

/// A string from `pool`, now and then any string at all.
fn text(pool: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![
        12 => pick(pool),
        1 => any::<String>().prop_map(Value::from),
        1 => "[a-z0-9.:/*-]{0,12}".prop_map(Value::from),
    ]
    .boxed()
}

/// Numbers, with the edges that matter for ports and ranges.
fn number() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => prop::sample::select(PORTS).prop_map(Value::from),
        1 => prop::sample::select(EDGES).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
    ]
    .boxed()
}

/// Mostly port numbers, sometimes any number.
fn port_number() -> BoxedStrategy<Value> {
    prop_oneof![12 => prop::sample::select(PORTS).prop_map(Value::from), 1 => number()].boxed()
}

/// A random CIDR-looking string (valid or not).
fn cidr() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => text(CIDRS),
        2 => text(IPS),
        2 => (any::<u32>(), 0u8..=34).prop_map(|(a, p)| Value::from(format!("{}/{p}", Ipv4Addr::from(a)))),
        1 => (any::<u128>(), 0u8..=130).prop_map(|(a, p)| Value::from(format!("{}/{p}", Ipv6Addr::from(a)))),
    ]
    .boxed()
}

/// Any JSON value, nested a little.
fn junk() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        text(HOSTS),
        text(LABEL_KEYS),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                text(LABEL_KEYS).prop_map(|k| k.as_str().unwrap_or("k").to_owned()),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Mostly `s`, sometimes junk (most junk makes the whole object fail to
/// decode, so it stays rare).
fn or_junk(s: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop_oneof![80 => s, 1 => junk()].boxed()
}

/// Fields that objects almost always have.
const REQUIRED: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "spec",
    "uid",
    "number",
    "sources",
    "ports",
    "featureFlags",
    "enableEgressPolicy",
    "containers",
    "containerPort",
    "ip",
    "cidr",
    "key",
    "operator",
    "addressType",
    "endpoints",
    "labels",
];

/// A JSON object from optional fields (missing ones are left out).
fn object(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let (keys, values): (Vec<&'static str>, Vec<BoxedStrategy<Value>>) = fields.into_iter().unzip();
    let values: Vec<BoxedStrategy<Option<Value>>> = keys
        .iter()
        .zip(values)
        .map(|(k, v)| {
            let presence = if REQUIRED.contains(k) { 0.98 } else { 0.8 };
            prop::option::weighted(presence, or_junk(v)).boxed()
        })
        .collect();
    values
        .prop_map(move |vals| {
            let mut map = Map::new();
            for (k, v) in keys.iter().zip(vals) {
                if let Some(v) = v {
                    map.insert((*k).to_owned(), v);
                }
            }
            Value::Object(map)
        })
        .boxed()
}

fn list(item: BoxedStrategy<Value>, max: usize) -> BoxedStrategy<Value> {
    prop::collection::vec(item, 0..=max)
        .prop_map(Value::from)
        .boxed()
}

/// A list that is mostly not empty.
fn list1(item: BoxedStrategy<Value>, max: usize) -> BoxedStrategy<Value> {
    prop_oneof![1 => Just(json!([])), 8 => prop::collection::vec(item, 1..=max).prop_map(Value::from)].boxed()
}

fn labels() -> BoxedStrategy<Value> {
    prop::collection::btree_map(prop::sample::select(LABEL_KEYS), text(LABEL_VALUES), 0..3)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
        .boxed()
}

fn metadata() -> BoxedStrategy<Value> {
    metadata_with(text(NAMES), labels())
}

fn metadata_with(name: BoxedStrategy<Value>, labels: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    metadata_in(name, text(NAMESPACES), labels)
}

fn metadata_in(
    name: BoxedStrategy<Value>,
    namespace: BoxedStrategy<Value>,
    labels: BoxedStrategy<Value>,
) -> BoxedStrategy<Value> {
    object(vec![
        ("name", name),
        ("namespace", namespace),
        ("uid", text(UIDS)),
        ("labels", labels),
        (
            "annotations",
            prop_oneof![
                Just(json!({"sidecar.istio.io/status": "{}"})),
                Just(json!({}))
            ]
            .boxed(),
        ),
    ])
}

fn label_selector() -> BoxedStrategy<Value> {
    prop_oneof![1 => Just(json!({})), 2 => selector_fields()].boxed()
}

fn selector_fields() -> BoxedStrategy<Value> {
    let match_labels = prop_oneof![
        2 => pick(&["web", "db", "curl"]).prop_map(|app| json!({"app": app})),
        1 => labels(),
    ];
    object(vec![
        ("matchLabels", match_labels.boxed()),
        (
            "matchExpressions",
            list(
                object(vec![
                    ("key", text(LABEL_KEYS)),
                    ("operator", text(OPERATORS)),
                    ("values", list(text(LABEL_VALUES), 2)),
                ]),
                2,
            ),
        ),
    ])
}

fn container() -> BoxedStrategy<Value> {
    object(vec![
        (
            "name",
            text(&["app", "istio-proxy", "istio-init", "envoy", "osm-init"]),
        ),
        (
            "ports",
            list(
                object(vec![
                    ("name", text(PORT_NAMES)),
                    ("containerPort", port_number()),
                    ("protocol", text(PROTOCOLS)),
                ]),
                2,
            ),
        ),
    ])
}

fn with_type(
    api: BoxedStrategy<Value>,
    kind: &'static str,
    rest: Vec<(&'static str, BoxedStrategy<Value>)>,
) -> BoxedStrategy<Value> {
    with_meta(api, kind, metadata(), rest)
}

fn with_meta(
    api: BoxedStrategy<Value>,
    kind: &'static str,
    meta: BoxedStrategy<Value>,
    rest: Vec<(&'static str, BoxedStrategy<Value>)>,
) -> BoxedStrategy<Value> {
    let mut fields = vec![
        ("apiVersion", api),
        (
            "kind",
            prop_oneof![60 => Just(Value::from(kind)), 1 => text(&["List", "Deployment", "", "pod"])].boxed(),
        ),
        ("metadata", meta),
    ];
    fields.extend(rest);
    object(fields)
}

fn api(valid: &'static [&'static str], others: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![20 => pick(valid), 1 => pick(others)].boxed()
}

fn namespace_doc() -> BoxedStrategy<Value> {
    // Mostly enforced or audited namespaces, for pods to be policed.
    let mode = prop_oneof![
        8 => text(&["enforce", "audit"]).prop_map(|m| json!({"tollgate.dev/egress": m})),
        1 => text(&["yes", ""]).prop_map(|m| json!({"tollgate.dev/egress": m})),
        1 => labels(),
    ];
    with_meta(
        api(&["v1"], &["v2", "", "apps/v1"]),
        "Namespace",
        metadata_with(text(NAMESPACE_NAMES), mode.boxed()),
        vec![],
    )
}

fn pod_doc() -> BoxedStrategy<Value> {
    let spec = object(vec![
        ("nodeName", text(NODES)),
        ("serviceAccountName", text(SERVICE_ACCOUNTS)),
        ("containers", list(container(), 2)),
        ("initContainers", list(container(), 1)),
    ]);
    let status = object(vec![
        ("phase", text(PHASES)),
        ("podIP", text(IPS)),
        ("podIPs", list(object(vec![("ip", text(IPS))]), 2)),
    ]);
    let pod_labels = prop_oneof![
        3 => pick(&["web", "db", "curl"]).prop_map(|app| json!({"app": app})),
        1 => Just(json!({"istio": "egressgateway"})),
        1 => Just(json!({"k8s-app": "kube-dns"})),
        1 => text(&["true", "false", "yes"]).prop_map(|v| json!({"tollgate.dev/egress-gateway": v})),
        2 => labels(),
    ];
    with_meta(
        api(&["v1"], &["v1beta1", "core/v1"]),
        "Pod",
        metadata_with(text(NAMES), pod_labels.boxed()),
        vec![("spec", spec), ("status", status)],
    )
}

fn service_doc() -> BoxedStrategy<Value> {
    let spec = object(vec![
        ("selector", labels()),
        (
            "clusterIP",
            prop_oneof![text(IPS), Just(Value::from("None"))].boxed(),
        ),
        ("clusterIPs", list(text(IPS), 2)),
        (
            "ports",
            list(
                object(vec![
                    ("port", port_number()),
                    (
                        "targetPort",
                        prop_oneof![3 => port_number(), 1 => text(PORT_NAMES)].boxed(),
                    ),
                    ("protocol", text(NP_PROTOCOLS)),
                    ("name", text(PORT_NAMES)),
                ]),
                2,
            ),
        ),
    ]);
    with_type(
        api(&["v1"], &["serving.knative.dev/v1"]),
        "Service",
        vec![("spec", spec)],
    )
}

fn endpoint_slice_doc() -> BoxedStrategy<Value> {
    let endpoint = object(vec![
        ("addresses", list(text(IPS), 2)),
        (
            "targetRef",
            object(vec![
                ("kind", text(&["Pod", "Node"])),
                ("name", text(NAMES)),
                ("namespace", text(NAMESPACES)),
            ]),
        ),
    ]);
    with_type(
        api(&["discovery.k8s.io/v1"], &["discovery.k8s.io/v1beta1"]),
        "EndpointSlice",
        vec![
            ("addressType", text(&["IPv4", "IPv6", "FQDN"])),
            ("endpoints", list(endpoint, 3)),
        ],
    )
}

fn network_policy_doc() -> BoxedStrategy<Value> {
    let spec = object(vec![
        ("podSelector", label_selector()),
        (
            "policyTypes",
            list1(text(&["Egress", "Egress", "Ingress", "egress"]), 2),
        ),
        ("egress", list(egress_rule(), 3)),
    ]);
    with_meta(
        api(
            &["networking.k8s.io/v1"],
            &["networking.k8s.io/v1beta1", "extensions/v1beta1"],
        ),
        "NetworkPolicy",
        metadata_in(
            text(NAMES),
            text(&["a", "a", "a", "b", "default"]),
            labels(),
        ),
        vec![("spec", spec)],
    )
}

fn egress_rule() -> BoxedStrategy<Value> {
    let port = object(vec![
        (
            "port",
            prop_oneof![3 => port_number(), 1 => text(PORT_NAMES)].boxed(),
        ),
        ("endPort", port_number()),
        ("protocol", text(NP_PROTOCOLS)),
    ]);
    let ip_block = || object(vec![("cidr", cidr()), ("except", list(cidr(), 2))]);
    let peer = prop_oneof![
        4 => object(vec![("ipBlock", ip_block())]),
        6 => object(vec![("podSelector", label_selector()), ("namespaceSelector", label_selector())]),
        1 => object(vec![
            ("podSelector", label_selector()),
            ("namespaceSelector", label_selector()),
            ("ipBlock", ip_block()),
        ]),
    ]
    .boxed();
    object(vec![("to", list(peer, 3)), ("ports", list(port, 3))])
}

const ISTIO: &[&str] = &[
    "networking.istio.io/v1alpha3",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1",
];
const ISTIO_OTHER: &[&str] = &["networking.istio.io/v2", "gateway.networking.k8s.io/v1"];

fn gateway_doc() -> BoxedStrategy<Value> {
    with_type(
        api(ISTIO, ISTIO_OTHER),
        "Gateway",
        vec![(
            "spec",
            object(vec![("selector", labels()), ("servers", list(junk(), 2))]),
        )],
    )
}

fn service_entry_doc() -> BoxedStrategy<Value> {
    let spec = object(vec![
        ("hosts", list(text(HOSTS), 3)),
        ("addresses", list(cidr(), 3)),
        (
            "location",
            text(&["MESH_INTERNAL", "MESH_EXTERNAL", "mesh_internal", ""]),
        ),
        ("resolution", text(&["STATIC", "DNS", "NONE"])),
        (
            "endpoints",
            list(
                object(vec![(
                    "address",
                    prop_oneof![text(HOSTS), text(IPS)].boxed(),
                )]),
                3,
            ),
        ),
        ("ports", list(junk(), 2)),
    ]);
    with_type(
        api(ISTIO, ISTIO_OTHER),
        "ServiceEntry",
        vec![("spec", spec)],
    )
}

fn sidecar_doc() -> BoxedStrategy<Value> {
    let spec = object(vec![
        ("workloadSelector", object(vec![("labels", labels())])),
        (
            "outboundTrafficPolicy",
            object(vec![(
                "mode",
                text(&["REGISTRY_ONLY", "ALLOW_ANY", "registry_only"]),
            )]),
        ),
    ]);
    with_type(api(ISTIO, ISTIO_OTHER), "Sidecar", vec![("spec", spec)])
}

fn mesh_config_doc() -> BoxedStrategy<Value> {
    let flag = || {
        prop_oneof![4 => Just(Value::from(true)), 1 => Just(Value::from(false)), 1 => Just(Value::Null)].boxed()
    };
    let spec = object(vec![
        ("traffic", object(vec![("enableEgress", flag())])),
        ("featureFlags", object(vec![("enableEgressPolicy", flag())])),
    ]);
    with_meta(
        api(
            &[
                "config.openservicemesh.io/v1alpha1",
                "config.openservicemesh.io/v1alpha2",
                "config.openservicemesh.io/v1alpha3",
            ],
            &["config.openservicemesh.io/v1"],
        ),
        "MeshConfig",
        metadata_with(
            text(&[
                "osm-mesh-config",
                "osm-mesh-config",
                "osm-mesh-config",
                "other",
            ]),
            labels(),
        ),
        vec![("spec", spec)],
    )
}

fn egress_doc() -> BoxedStrategy<Value> {
    with_type(
        api(
            &["policy.openservicemesh.io/v1alpha1"],
            &["policy.openservicemesh.io/v1alpha2"],
        ),
        "Egress",
        vec![("spec", egress_spec())],
    )
}

fn egress_spec() -> BoxedStrategy<Value> {
    object(vec![
        (
            "sources",
            list1(
                object(vec![
                    (
                        "kind",
                        text(&[
                            "ServiceAccount",
                            "ServiceAccount",
                            "ServiceAccount",
                            "Group",
                        ]),
                    ),
                    ("name", text(SERVICE_ACCOUNTS)),
                    ("namespace", text(NAMESPACES)),
                ]),
                2,
            ),
        ),
        ("hosts", list(text(HOSTS), 3)),
        ("ipAddresses", list(cidr(), 3)),
        (
            "ports",
            list1(
                object(vec![
                    ("number", port_number()),
                    ("protocol", text(OSM_PROTOCOLS)),
                ]),
                2,
            ),
        ),
    ])
}

fn object_doc() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => namespace_doc(),
        8 => pod_doc(),
        2 => service_doc(),
        1 => endpoint_slice_doc(),
        4 => network_policy_doc(),
        1 => gateway_doc(),
        2 => service_entry_doc(),
        1 => sidecar_doc(),
        2 => mesh_config_doc(),
        3 => egress_doc(),
    ]
    .boxed()
}

fn document() -> BoxedStrategy<Value> {
    prop_oneof![
        30 => object_doc(),
        2 => list(object_doc(), 3).prop_map(|items| json!({"apiVersion": "v1", "kind": "List", "items": items})),
        1 => junk(),
    ]
    .boxed()
}

fn host_name() -> impl Strategy<Value = String> {
    const RESOLVED: &[&str] = &[
        "httpbin.org",
        "vm.internal",
        "edition.cnn.com",
        "unused.example",
        "xn--bcher-kva.example",
    ];
    prop::sample::select(RESOLVED).prop_map(str::to_owned)
}

const SOME_IPS: &[&str] = &["10.244.0.1", "192.0.2.1", "fd00::1"];
const SOME_NETS: &[&str] = &["10.244.0.0/16", "10.96.0.0/12", "fd00:10:244::/56"];
const NODE_NAMES: &[&str] = &["node-1", "node-2"];

fn ip_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|a| IpAddr::from(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| IpAddr::from(Ipv6Addr::from(a))),
        prop::sample::select(SOME_IPS).prop_map(|s| s.parse::<IpAddr>().expect("valid ip")),
    ]
}

fn ip_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(
            |(a, p)| IpNet::new(IpAddr::from(Ipv4Addr::from(a)), p).expect("prefix in range")
        ),
        (any::<u128>(), 0u8..=128).prop_map(|(a, p)| IpNet::new(
            IpAddr::from(Ipv6Addr::from(a)),
            p
        )
        .expect("prefix in range")),
        prop::sample::select(SOME_NETS).prop_map(|s| s.parse::<IpNet>().expect("valid net")),
    ]
}

/// Host names with the addresses they resolved to.
type Resolved = BTreeMap<String, Vec<IpAddr>>;

fn compiler_config() -> impl Strategy<Value = (CompilerConfig, Resolved)> {
    (
        prop::option::of(prop::sample::select(NODE_NAMES).prop_map(str::to_owned)),
        prop::collection::vec(ip_net(), 0..4),
        prop::collection::btree_map(host_name(), prop::collection::vec(ip_addr(), 0..3), 0..4),
        // Trust: the defaults, or a random set of namespaces (empty: none).
        prop::option::of(prop::collection::vec(prop::sample::select(NAMESPACE_NAMES).prop_map(str::to_owned), 0..3)),
        prop::sample::select(NAMESPACE_NAMES).prop_map(str::to_owned),
    )
        .prop_map(|(node_name, cluster_cidrs, resolved, trusted, osm_namespace)| {
            let mut cfg = CompilerConfig { node_name, cluster_cidrs, osm_namespace, ..CompilerConfig::default() };
            if let Some(trusted) = trusted {
                cfg.trusted_namespaces = trusted;
            }
            (cfg, resolved)
        })
}

/// `compile` then `bind` (bind checked deterministic on the way).
fn compile(snap: &Snapshot, (cfg, resolved): &(CompilerConfig, Resolved)) -> DesiredState {
    let policy = tollgate::compiler::compile(snap, cfg);
    let state = bind(&policy, resolved);
    assert_eq!(state, bind(&policy, resolved), "bind is deterministic");
    state
}

// ---- the property ----

fn load(docs: &[(usize, Value)]) -> (Snapshot, Vec<Diagnostic>) {
    let mut snap = Snapshot::new();
    let mut diags = Vec::new();
    for (i, doc) in docs {
        let yaml: serde_yaml::Value = serde_yaml::to_value(doc).expect("JSON converts to YAML");
        snap.add_document(&format!("doc{i}.yaml"), yaml, &mut diags);
    }
    (snap, diags)
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if cond {
        Ok(())
    } else {
        Err(TestCaseError::fail(what()))
    }
}

fn invariants(state: &DesiredState) -> Result<(), TestCaseError> {
    for (uid, w) in &state.workloads {
        check(uid == &w.uid && !uid.is_empty(), || {
            format!("workload key {uid:?} is its UID")
        })?;
        let policed = w.mode != Mode::Off && w.flags & agent_common::FLAG_GATEWAY == 0;
        if policed {
            check(
                w.policy != 0 && state.policies.contains_key(&w.policy),
                || {
                    format!(
                        "policed workload {}/{} has policy {} in the state",
                        w.namespace, w.name, w.policy
                    )
                },
            )?;
        } else {
            check(w.policy == 0, || {
                format!(
                    "workload {}/{} without rules has policy 0",
                    w.namespace, w.name
                )
            })?;
        }
        let key = format!("{}/{}", w.namespace, w.name);
        let why = state.explain.workloads.get(&key);
        check(
            why.is_some_and(|e| e.policy == w.policy && e.mode == w.mode),
            || format!("{key} explained"),
        )?;
    }
    check(
        state.explain.workloads.len() == state.workloads.len(),
        || "one explanation per workload".into(),
    )?;
    check(
        state.policies.contains_key(&agent_common::POLICY_GLOBAL),
        || "global policy present".into(),
    )?;
    for (id, entries) in &state.policies {
        check(state.explain.policies.contains_key(id), || {
            format!("policy {id} explained")
        })?;
        for e in entries {
            check(usize::from(e.rules.count) <= MAX_PORT_RULES, || {
                format!("policy {id} {} fits", e.net)
            })?;
            check(e.net == e.net.trunc(), || {
                format!("policy {id} {} truncated", e.net)
            })?;
        }
        let mut nets: Vec<IpNet> = entries.iter().map(|e| e.net).collect();
        nets.dedup();
        check(nets.len() == entries.len(), || {
            format!("policy {id}: one entry per prefix")
        })?;
    }
    let mut sorted = state.diagnostics.clone();
    sorted.sort();
    sorted.dedup();
    check(sorted == state.diagnostics, || {
        "diagnostics sorted and unique".into()
    })?;
    for d in &state.diagnostics {
        check(
            !d.object.is_empty() && !d.field.is_empty() && !d.message.is_empty(),
            || format!("diagnostic names object and field: {d:?}"),
        )?;
    }
    for host in &state.hosts {
        let valid = !host.is_empty()
            && !host.contains('*')
            && *host == host.to_ascii_lowercase()
            && !host.ends_with('.')
            && host.parse::<IpAddr>().is_err();
        check(valid, || {
            format!("host to resolve {host:?} is a lower-case DNS name")
        })?;
    }
    let resolved: Vec<&String> = state.explain.resolved.keys().collect();
    let hosts: Vec<&String> = state.hosts.iter().collect();
    check(resolved == hosts, || {
        "explain.resolved covers exactly the hosts".into()
    })?;
    let mut ignored = state.ignored.clone();
    ignored.sort();
    ignored.dedup();
    check(ignored == state.ignored, || "ignored objects sorted and unique".into())?;
    for i in &state.ignored {
        check(!i.object.is_empty() && !i.rule.is_empty() && !i.message.is_empty() && !i.kind.is_empty(), || {
            format!("ignored object names object, kind and rule: {i:?}")
        })?;
    }
    Ok(())
}

/// Valid objects that make the random ones matter (enforced namespaces,
/// OSM switched on, cluster DNS, an Istio gateway), each present or not.
fn base() -> BoxedStrategy<Vec<Value>> {
    let docs = [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "labels": {"tollgate.dev/egress": "enforce"}}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b", "labels": {"tollgate.dev/egress": "audit"}}}),
        json!({"apiVersion": "config.openservicemesh.io/v1alpha3", "kind": "MeshConfig",
               "metadata": {"name": "osm-mesh-config", "namespace": "osm-system"},
               "spec": {"featureFlags": {"enableEgressPolicy": true}}}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
               "spec": {"selector": {"k8s-app": "kube-dns"}, "clusterIP": "10.96.0.10", "ports": [{"port": 53}]}}),
        json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
               "metadata": {"name": "egress", "namespace": "istio-system"},
               "spec": {"selector": {"istio": "egressgateway"}}}),
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "base", "namespace": "a", "uid": "uid-base", "labels": {"app": "web"}},
               "spec": {"nodeName": "node-1", "containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}]},
               "status": {"phase": "Running", "podIP": "10.244.0.200", "podIPs": [{"ip": "10.244.0.200"}, {"ip": "fd00:10:244::200"}]}}),
    ];
    let weights = [0.85, 0.5, 0.6, 0.3, 0.3, 0.7];
    let mut parts: Vec<BoxedStrategy<Option<Value>>> = docs
        .into_iter()
        .zip(weights)
        .map(|(doc, w)| prop::option::weighted(w, Just(doc)).boxed())
        .collect();
    // A policy for every pod of `a` with random rules, and an Egress for
    // its `default` ServiceAccount with random grants.
    let policy = list(egress_rule(), 3).prop_map(|rules| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "base", "namespace": "a"},
               "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": rules}})
    });
    parts.push(prop::option::weighted(0.5, policy).boxed());
    let egress = egress_spec().prop_map(|mut spec| {
        if let Some(map) = spec.as_object_mut() {
            map.insert(
                "sources".into(),
                json!([{"kind": "ServiceAccount", "name": "default", "namespace": "a"}]),
            );
        }
        json!({"apiVersion": "policy.openservicemesh.io/v1alpha1", "kind": "Egress",
               "metadata": {"name": "base", "namespace": "a"}, "spec": spec})
    });
    parts.push(prop::option::weighted(0.5, egress).boxed());
    parts
        .prop_map(|docs| docs.into_iter().flatten().collect())
        .boxed()
}

type Case = (Vec<(usize, Value)>, Vec<(usize, Value)>, (CompilerConfig, Resolved));

fn case() -> impl Strategy<Value = Case> {
    (
        base(),
        prop::collection::vec(document(), 0..30),
        compiler_config(),
    )
        .prop_flat_map(|(base, docs, cfg)| {
            let numbered: Vec<(usize, Value)> = base.into_iter().chain(docs).enumerate().collect();
            (
                Just(numbered.clone()),
                Just(numbered).prop_shuffle(),
                Just(cfg),
            )
        })
}

#[test]
fn compiler_never_panics_and_is_deterministic() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let ran = Cell::new(0u32);
    let loaded = Cell::new(0usize);
    let compared = Cell::new(0u32);
    let stats = std::cell::RefCell::new(Stats::default());
    let result = runner.run(&case(), |(docs, shuffled, cfg)| {
        ran.set(ran.get() + 1);
        let (snap, diags) = load(&docs);
        loaded.set(loaded.get() + snap.len());
        let state = compile(&snap, &cfg);
        invariants(&state)?;
        stats.borrow_mut().add(&state);
        let again = compile(&snap, &cfg);
        prop_assert_eq!(&state, &again, "same input, same output");

        let (shuffled_snap, _) = load(&shuffled);
        let other = compile(&shuffled_snap, &cfg);
        let redefined = diags.iter().any(|d| d.message.starts_with("defined twice"));
        if !redefined {
            compared.set(compared.get() + 1);
            prop_assert_eq!(
                &state.workloads,
                &other.workloads,
                "order-independent workloads"
            );
            prop_assert_eq!(
                &state.policies,
                &other.policies,
                "order-independent policies"
            );
            prop_assert_eq!(&state.hosts, &other.hosts, "order-independent hosts");
            prop_assert_eq!(
                &state.diagnostics,
                &other.diagnostics,
                "order-independent diagnostics"
            );
            prop_assert_eq!(
                &state.explain,
                &other.explain,
                "order-independent explanations"
            );
        }
        Ok(())
    });
    println!(
        "compiler_never_panics: {} cases ran ({} objects loaded, {} compared in shuffled order)",
        ran.get(),
        loaded.get(),
        compared.get()
    );
    println!(
        "compiler_never_panics: cases whose output has {:?}",
        stats.borrow()
    );
    if let Err(err) = result {
        panic!("{err}");
    }
}

/// How many cases exercised each part of the compiler (to check that the
/// generator reaches them).
#[derive(Debug, Default)]
#[allow(dead_code)] // read through Debug
struct Stats {
    policed_workloads: u32,
    network_policy_rules: u32,
    cluster_internal_rules: u32,
    mesh_egress_grants: u32,
    registry_only: u32,
    gateways: u32,
    hosts_to_resolve: u32,
    external_hosts: u32,
    diagnostics: u32,
    ignored: u32,
    service_rules: u32,
}

impl Stats {
    fn add(&mut self, state: &DesiredState) {
        let reasons: Vec<&str> = state
            .explain
            .policies
            .values()
            .flatten()
            .map(|r| r.reason.as_str())
            .collect();
        let count = |cond: bool| u32::from(cond);
        self.policed_workloads += count(state.workloads.values().any(|w| w.policy != 0));
        self.network_policy_rules += count(reasons.contains(&"network-policy"));
        self.cluster_internal_rules += count(reasons.contains(&"cluster-internal"));
        self.mesh_egress_grants += count(reasons.contains(&"mesh-egress-policy"));
        self.registry_only += count(
            state
                .explain
                .workloads
                .values()
                .any(|w| w.sources.registry_only.is_some()),
        );
        self.gateways += count(reasons.contains(&"gateway"));
        self.hosts_to_resolve += count(!state.hosts.is_empty());
        self.external_hosts += count(!state.explain.external_hosts.is_empty());
        self.diagnostics += count(!state.diagnostics.is_empty());
        self.ignored += count(!state.ignored.is_empty());
        self.service_rules += count(
            state.explain.policies.values().flatten().any(|r| r.origin.starts_with("Service ")),
        );
    }
}

#[test]
fn deeply_nested_and_huge_documents_do_not_panic() {
    // Nesting far beyond what the generator makes, and big lists.
    let mut deep = json!("leaf");
    for _ in 0..200 {
        deep = json!({"items": [deep], "kind": "List"});
    }
    let many_rules: Vec<Value> = (0..300)
        .map(|i| json!({"to": [{"ipBlock": {"cidr": format!("10.{}.{}.0/24", i / 256, i % 256)}}], "ports": [{"port": 1000 + i}, {"port": 2000 + i, "protocol": "UDP"}]}))
        .collect();
    let docs = vec![
        (0, deep),
        (
            1,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "labels": {"tollgate.dev/egress": "enforce"}}}),
        ),
        (
            2,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "a", "uid": "u"}, "spec": {"containers": []}, "status": {"podIP": "10.244.0.1"}}),
        ),
        (
            3,
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "big", "namespace": "a"},
                   "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": many_rules.clone()}}),
        ),
        (
            4,
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "wide", "namespace": "a"},
                   "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": (1..=MAX_PORT_RULES as i64 + 8).map(|p| json!({"port": p * 3})).collect::<Vec<_>>()}]}}),
        ),
    ];
    let (snap, _) = load(&docs);
    let state = compile(&snap, &(CompilerConfig::default(), Resolved::new()));
    invariants(&state).expect("invariants hold");
    assert!(
        state
            .diagnostics
            .iter()
            .any(|d| d.message.contains("more than the datapath holds")),
        "overflowing prefixes are reported"
    );
    let resolved: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    assert_eq!(state.explain.resolved, resolved);
}
