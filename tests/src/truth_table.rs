//! Kubernetes NetworkPolicy *egress* truth tables, checked against the kernel
//! with `tollgate verify --batch - --manifests DIR` (BPF_PROG_TEST_RUN of the
//! loaded program, one load per case).
//!
//! The cluster follows the upstream netpol e2e model: namespaces x, y, z with
//! pods a, b, c in each; every pod is dual-stack and serves TCP and UDP on 80
//! and 81 and SCTP on 80 and 81, under the upstream container port names
//! (`serve-80-tcp`, `serve-81-udp`, `serve-80-sctp`, ...). Besides, the named
//! port `metrics` is 9090/TCP on the `a` pods and 9091/TCP on the `b` pods
//! (the `c` pods have none), so that a named port must be resolved per
//! destination pod. kube-system runs cluster DNS (the kube-dns Service and
//! its pod), istio-system an Istio egress gateway (a `networking.istio.io/v1`
//! Gateway selecting `istio: egressgateway`, and its Service).
//!
//! A [`Case`] is a set of NetworkPolicies plus the reachability they should
//! give, written by hand from Kubernetes semantics: which sources are
//! isolated for egress (selected by a policy with Egress in its policyTypes)
//! and which (source, destination, port, family) tuples their rules allow.
//! Everything else follows from the contract (`/work/shared/interface.md`):
//! gateways (any port) and DNS (53 UDP/TCP) are always reachable from an
//! enforced pod; a pod that no egress policy selects reaches everything inside
//! the cluster CIDRs and nothing outside; a Service address and port
//! ([`Frontend`]: ClusterIPs, external and load-balancer IPs) is allowed only
//! when every endpoint behind it is allowed on the target port, and denied
//! when it has none; gateway pods are exempt only in namespaces that are not
//! enforced, and only pods of trusted namespaces are gateways
//! (`--trusted-namespace`, [`Case::trusted`]).

use crate::util::TempDir;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Pod and Service CIDRs of the test cluster (`--cluster-cidr`).
pub const CLUSTER_CIDRS: [&str; 4] = crate::pods::CLUSTER_CIDRS;

/// How long one `verify --batch` may take before it is killed.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------- ports

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        })
    }
}

pub const V4: &[Family] = &[Family::V4];
pub const V6: &[Family] = &[Family::V6];
pub const DUAL: &[Family] = &[Family::V4, Family::V6];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
    /// ICMP or ICMPv6 (echo request); no port.
    Icmp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
            Proto::Icmp => "icmp",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    pub proto: Proto,
    pub port: u16,
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.proto {
            Proto::Icmp => f.write_str("icmp"),
            _ => write!(f, "{}/{}", self.proto.as_str(), self.port),
        }
    }
}

pub const fn tcp(port: u16) -> Port {
    Port { proto: Proto::Tcp, port }
}
pub const fn udp(port: u16) -> Port {
    Port { proto: Proto::Udp, port }
}
pub const fn sctp(port: u16) -> Port {
    Port { proto: Proto::Sctp, port }
}
pub const ICMP: Port = Port { proto: Proto::Icmp, port: 0 };

/// Asked for every destination in every case (ICMP: not for Services).
pub const BASE_PORTS: [Port; 6] = [tcp(80), tcp(81), udp(80), udp(81), sctp(80), ICMP];
/// Asked for the per-pod Services: their ports, and `web` (8080 -> 80/TCP).
pub const SERVICE_PORTS: [Port; 6] = [tcp(80), tcp(81), udp(80), udp(81), sctp(80), tcp(8080)];
/// Asked for the DNS pod and Service.
pub const DNS_PORTS: [Port; 2] = [udp(53), tcp(53)];
/// Asked for the gateway pod and Service on top of the base ports ("any port").
pub const GATEWAY_EXTRA_PORTS: [Port; 3] = [tcp(8080), tcp(443), udp(5000)];

// ---------------------------------------------------------------- cluster

/// Namespaces x, y, z and their labels (the tollgate label is added per case).
/// `kubernetes.io/metadata.name` is deliberately not written: the API server
/// sets it on every namespace, and selectors may rely on it.
pub const NAMESPACES: [(&str, &[(&str, &str)]); 3] =
    [("x", &[("ns", "x"), ("env", "prod")]), ("y", &[("ns", "y"), ("env", "dev")]), ("z", &[("ns", "z")])];

/// Pods a, b, c and their labels.
pub const POD_NAMES: [(&str, &[(&str, &str)]); 3] =
    [("a", &[("pod", "a"), ("tier", "frontend")]), ("b", &[("pod", "b"), ("tier", "backend")]), ("c", &[("pod", "c")])];

/// The `metrics` named port: a different number on each pod name.
pub fn metrics_port(pod: &str) -> Option<u16> {
    match pod {
        "a" => Some(9090),
        "b" => Some(9091),
        _ => None,
    }
}

pub const GATEWAY_POD: &str = "istio-system/istio-egressgateway";
pub const DNS_POD: &str = "kube-system/coredns";
const GATEWAY_IPS: (&str, &str) = ("10.244.9.1", "fd00:10:244::9:1");
const GATEWAY_SVC_IPS: (&str, &str) = ("10.96.0.20", "fd00:10:96::20");
const DNS_IPS: (&str, &str) = ("10.244.9.53", "fd00:10:244::9:53");
const DNS_SVC_IPS: (&str, &str) = ("10.96.0.10", "fd00:10:96::a");
/// Inside the Service CIDR, but no Service or pod has it.
const CLUSTER_IP_UNUSED: (&str, &str) = ("10.96.7.7", "fd00:10:96::77");
/// Outside the cluster.
const EXTERNAL_IPS: (&str, &str) = ("203.0.113.10", "2001:db8::10");

fn ns_index(ns: &str) -> usize {
    NAMESPACES.iter().position(|(n, _)| *n == ns).expect("namespace x, y or z") + 1
}

fn pod_index(pod: &str) -> usize {
    POD_NAMES.iter().position(|(n, _)| *n == pod).expect("pod a, b or c") + 1
}

/// `10.244.<ns>.<pod>` and `fd00:10:244::<ns>:<pod>` (x=1, y=2, z=3; a=1, b=2, c=3).
pub fn pod_ips(ns: &str, pod: &str) -> (String, String) {
    let (n, p) = (ns_index(ns), pod_index(pod));
    (format!("10.244.{n}.{p}"), format!("fd00:10:244::{n}:{p}"))
}

/// ClusterIPs of Service `s-<ns>-<pod>`: `10.96.<ns>.<pod>` and `fd00:10:96::<ns>:<pod>`.
pub fn service_ips(ns: &str, pod: &str) -> (String, String) {
    let (n, p) = (ns_index(ns), pod_index(pod));
    (format!("10.96.{n}.{p}"), format!("fd00:10:96::{n}:{p}"))
}

/// The backend port of a per-pod Service port (`web` 8080 -> 80/TCP).
fn service_target(port: Port) -> Port {
    if port == tcp(8080) {
        tcp(80)
    } else {
        port
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestKind {
    Pod,
    GatewayPod,
    GatewayService,
    DnsPod,
    DnsService,
    /// Service `s-<ns>-<pod>` (upstream e2e style), one backend pod.
    Service,
    /// An unowned address inside the cluster CIDRs.
    ClusterIp,
    External,
}

/// A Service address: the ports kube-proxy forwards there and the
/// endpoints behind them (keys of other destinations, `ns/pod` or `ext`).
/// Under the contract such a port is allowed only when every backend is
/// allowed on the target port ([`service_target`]); none: denied. A
/// ClusterIP is then allowed; an external or load-balancer IP (which may
/// be a real host) only if the rules also allow the address itself.
#[derive(Clone, Debug)]
pub struct Frontend {
    /// The Service ports at this address; `None`: every port asked.
    pub ports: Option<Vec<Port>>,
    pub backends: Vec<String>,
    /// The address is a ClusterIP (not an external or load-balancer IP).
    pub cluster_ip: bool,
}

impl Frontend {
    fn covers(&self, port: Port) -> bool {
        port.proto != Proto::Icmp && self.ports.as_ref().is_none_or(|ports| ports.contains(&port))
    }
}

/// A column of the truth table.
#[derive(Clone, Debug)]
pub struct Dest {
    /// `ns/pod` for pods; `gw-svc`, `dns-svc`, `cip`, `ext` otherwise.
    pub key: String,
    /// Column heading.
    pub label: String,
    pub kind: DestKind,
    pub v4: String,
    pub v6: String,
    /// Inside the cluster CIDRs.
    pub cluster: bool,
    /// When the address is a Service's (its ClusterIP, an external or a
    /// load-balancer IP): where it forwards.
    pub frontend: Option<Frontend>,
}

impl Dest {
    fn ip(&self, fam: Family) -> &str {
        match fam {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    fn is_pod(&self) -> bool {
        matches!(self.kind, DestKind::Pod | DestKind::GatewayPod | DestKind::DnsPod)
    }

    fn in_cluster(&self) -> bool {
        self.cluster
    }

    /// A destination a case adds: `key` (also the heading), `kind`, its
    /// addresses, whether they are inside the cluster CIDRs, and (for a
    /// Service address) where it forwards.
    pub fn extra(key: &str, kind: DestKind, (v4, v6): (&str, &str), cluster: bool, frontend: Option<Frontend>) -> Dest {
        Dest { key: key.into(), label: key.into(), kind, v4: v4.into(), v6: v6.into(), cluster, frontend }
    }

    /// The ports asked for this destination.
    fn ports(&self, extra: &[Port]) -> Vec<Port> {
        let mut v: Vec<Port> = match self.kind {
            DestKind::DnsService => DNS_PORTS.to_vec(),
            DestKind::Service if self.frontend.as_ref().is_some_and(|f| f.ports.is_some()) => {
                BASE_PORTS.iter().chain(extra).filter(|p| p.proto != Proto::Icmp).copied().collect()
            }
            DestKind::Service => SERVICE_PORTS.to_vec(),
            DestKind::DnsPod => BASE_PORTS.iter().chain(extra).chain(&DNS_PORTS).copied().collect(),
            DestKind::GatewayPod | DestKind::GatewayService => {
                BASE_PORTS.iter().chain(extra).chain(&GATEWAY_EXTRA_PORTS).copied().collect()
            }
            _ => BASE_PORTS.iter().chain(extra).copied().collect(),
        };
        let mut seen = BTreeSet::new();
        v.retain(|p| seen.insert(*p));
        v
    }
}

/// The columns: the nine pods, then gateway, DNS, an unused ClusterIP, an
/// external address and, with `services`, the nine per-pod Services.
pub fn destinations(services: bool) -> Vec<Dest> {
    let mut v = Vec::new();
    for (ns, _) in NAMESPACES {
        for (pod, _) in POD_NAMES {
            let (v4, v6) = pod_ips(ns, pod);
            let key = format!("{ns}/{pod}");
            v.push(Dest { label: key.clone(), key, kind: DestKind::Pod, v4, v6, cluster: true, frontend: None });
        }
    }
    let mut svcs = Vec::new();
    if services {
        for (ns, _) in NAMESPACES {
            for (pod, _) in POD_NAMES {
                let (v4, v6) = service_ips(ns, pod);
                let key = format!("s-{ns}-{pod}");
                let frontend = Frontend { ports: None, backends: vec![format!("{ns}/{pod}")], cluster_ip: true };
                svcs.push(Dest { label: key.clone(), key, kind: DestKind::Service, v4, v6, cluster: true, frontend: Some(frontend) });
            }
        }
    }
    let mut add = |key: &str, label: &str, kind, (v4, v6): (&str, &str)| {
        let cluster = kind != DestKind::External;
        v.push(Dest { key: key.into(), label: label.into(), kind, v4: v4.into(), v6: v6.into(), cluster, frontend: None });
    };
    add(GATEWAY_POD, "gw", DestKind::GatewayPod, GATEWAY_IPS);
    add("gw-svc", "gw-svc", DestKind::GatewayService, GATEWAY_SVC_IPS);
    add(DNS_POD, "dns", DestKind::DnsPod, DNS_IPS);
    add("dns-svc", "dns-svc", DestKind::DnsService, DNS_SVC_IPS);
    add("cip", "cip", DestKind::ClusterIp, CLUSTER_IP_UNUSED);
    add("ext", "ext", DestKind::External, EXTERNAL_IPS);
    v.extend(svcs);
    v
}

fn labels(pairs: &[(&str, &str)]) -> Value {
    Value::Object(pairs.iter().map(|(k, v)| (k.to_string(), json!(v))).collect())
}

fn pod_doc(ns: &str, name: &str, uid: &str, labels: Value, ports: Vec<Value>, (v4, v6): (&str, &str)) -> Value {
    let containers: Vec<Value> = if ports.is_empty() {
        vec![json!({"name": "main", "image": "registry.k8s.io/e2e-test-images/agnhost:2.47"})]
    } else {
        ports
            .into_iter()
            .map(|p| {
                let proto = p["protocol"].as_str().unwrap_or("TCP").to_lowercase();
                let cname = format!("cont-{}-{proto}", p["containerPort"]);
                json!({"name": cname, "image": "registry.k8s.io/e2e-test-images/agnhost:2.47", "ports": [p]})
            })
            .collect()
    };
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": uid, "labels": labels},
        "spec": {"nodeName": "node-1", "containers": containers},
        "status": {"phase": "Running", "podIP": v4, "podIPs": [{"ip": v4}, {"ip": v6}]},
    })
}

fn service_doc(ns: &str, name: &str, labels: Value, selector: Value, (v4, v6): (&str, &str), ports: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "clusterIP": v4,
            "clusterIPs": [v4, v6],
            "ipFamilies": ["IPv4", "IPv6"],
            "ipFamilyPolicy": "RequireDualStack",
            "ports": ports,
        },
    })
}

fn to_yaml(docs: &[Value]) -> Result<String> {
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(d)?);
    }
    Ok(out)
}

/// The fixed cluster: namespaces (with their tollgate label for this case),
/// pods, Services and the Istio Gateway, as (file name, YAML).
fn cluster_files(ns_modes: &[(&str, Option<&str>)]) -> Result<Vec<(&'static str, String)>> {
    let mut namespaces = Vec::new();
    for (ns, extra) in NAMESPACES {
        let mut l = labels(extra);
        let mode = ns_modes.iter().rev().find(|(n, _)| *n == ns).map(|(_, m)| *m).unwrap_or(Some("enforce"));
        if let Some(m) = mode {
            l["tollgate.dev/egress"] = json!(m);
        }
        namespaces.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": l}}));
    }
    for ns in ["kube-system", "istio-system"] {
        let mut meta = json!({"name": ns});
        if let Some(Some(m)) = ns_modes.iter().rev().find(|(n, _)| *n == ns).map(|(_, m)| *m) {
            meta["labels"] = json!({"tollgate.dev/egress": m});
        }
        namespaces.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta}));
    }

    let mut pods = Vec::new();
    for (ni, (ns, _)) in NAMESPACES.iter().enumerate() {
        for (pi, (pod, pod_labels)) in POD_NAMES.iter().enumerate() {
            let mut ports = Vec::new();
            for proto in ["tcp", "udp", "sctp"] {
                for n in [80, 81] {
                    ports.push(json!({"name": format!("serve-{n}-{proto}"), "containerPort": n, "protocol": proto.to_uppercase()}));
                }
            }
            if let Some(m) = metrics_port(pod) {
                ports.push(json!({"name": "metrics", "containerPort": m, "protocol": "TCP"}));
            }
            let uid = format!("7a11da7e-0000-4000-8000-000000000{}{:02}", ni + 1, pi + 1);
            let (v4, v6) = pod_ips(ns, pod);
            pods.push(pod_doc(ns, pod, &uid, labels(pod_labels), ports, (&v4, &v6)));
        }
    }
    let (gw_ns, gw_name) = GATEWAY_POD.split_once('/').expect("ns/name");
    pods.push(pod_doc(
        gw_ns,
        gw_name,
        "7a11da7e-0000-4000-8000-000000000901",
        json!({"istio": "egressgateway", "app": "istio-egressgateway"}),
        vec![json!({"containerPort": 8080, "protocol": "TCP"}), json!({"containerPort": 8443, "protocol": "TCP"})],
        GATEWAY_IPS,
    ));
    let (dns_ns, dns_name) = DNS_POD.split_once('/').expect("ns/name");
    pods.push(pod_doc(
        dns_ns,
        dns_name,
        "7a11da7e-0000-4000-8000-000000000953",
        json!({"k8s-app": "kube-dns"}),
        vec![
            json!({"name": "dns", "containerPort": 53, "protocol": "UDP"}),
            json!({"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}),
        ],
        DNS_IPS,
    ));

    let mut services = Vec::new();
    for (ns, _) in NAMESPACES {
        for (pod, _) in POD_NAMES {
            let (v4, v6) = service_ips(ns, pod);
            let mut ports = Vec::new();
            for proto in ["tcp", "udp", "sctp"] {
                for n in [80, 81] {
                    ports.push(json!({"name": format!("p{n}-{proto}"), "port": n, "protocol": proto.to_uppercase(), "targetPort": n}));
                }
            }
            ports.push(json!({"name": "web", "port": 8080, "protocol": "TCP", "targetPort": "serve-80-tcp"}));
            services.push(service_doc(ns, &format!("s-{ns}-{pod}"), json!({}), json!({"pod": pod}), (&v4, &v6), json!(ports)));
        }
    }
    services.extend([
        service_doc(
            gw_ns,
            "istio-egressgateway",
            json!({"app": "istio-egressgateway", "istio": "egressgateway"}),
            json!({"istio": "egressgateway"}),
            GATEWAY_SVC_IPS,
            json!([
                {"name": "http2", "port": 80, "protocol": "TCP", "targetPort": 8080},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443},
            ]),
        ),
        service_doc(
            dns_ns,
            "kube-dns",
            json!({"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}),
            json!({"k8s-app": "kube-dns"}),
            DNS_SVC_IPS,
            json!([
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ]),
        ),
    ]);
    let gateway = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "istio-egressgateway", "namespace": gw_ns},
        "spec": {
            "selector": {"istio": "egressgateway"},
            "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["edition.cnn.com"]}],
        },
    });
    Ok(vec![
        ("namespaces.yaml", to_yaml(&namespaces)?),
        ("pods.yaml", to_yaml(&pods)?),
        ("services.yaml", to_yaml(&services)?),
        ("gateway.yaml", to_yaml(&[gateway])?),
    ])
}

// ---------------------------------------------------------------- cases

/// Removes the common leading indentation and the surrounding blank lines.
fn dedent(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let indent = lines.iter().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
    let body: Vec<&str> = lines.iter().map(|l| if l.len() >= indent { &l[indent..] } else { l.trim_start() }).collect();
    body.join("\n").trim_matches('\n').to_string()
}

/// A NetworkPolicy document; `spec` is YAML (any indentation).
pub fn netpol(ns: &str, name: &str, spec: &str) -> String {
    let spec: String = dedent(spec).lines().map(|l| format!("  {l}\n")).collect();
    format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{spec}")
}

/// `*` or `ns/pod` with `*` for either part; non-pod destinations (`ext`,
/// `cip`, `gw-svc`, `dns-svc`) only match themselves and `*`.
fn key_matches(pattern: &str, key: &str) -> bool {
    if pattern == "*" || pattern == key {
        return true;
    }
    match (pattern.split_once('/'), key.split_once('/')) {
        (Some((pn, pp)), Some((kn, kp))) => (pn == "*" || pn == kn) && (pp == "*" || pp == kp),
        _ => false,
    }
}

/// `*`, `tcp/80`, `udp/*`, `*/81` or `icmp`.
fn port_matches(pattern: &str, p: Port) -> bool {
    if pattern == "*" {
        return true;
    }
    if pattern == "icmp" || p.proto == Proto::Icmp {
        return pattern == "icmp" && p.proto == Proto::Icmp;
    }
    let (proto, port) = pattern.split_once('/').unwrap_or_else(|| panic!("port pattern {pattern:?}: want proto/port"));
    (proto == "*" || proto == p.proto.as_str()) && (port == "*" || port.parse::<u16>().ok() == Some(p.port))
}

/// An allowed (source, destination, port) set, as written in a case.
#[derive(Clone, Debug)]
pub struct Rule {
    pub from: Vec<&'static str>,
    pub to: Vec<&'static str>,
    pub ports: Vec<&'static str>,
    pub families: &'static [Family],
}

impl Rule {
    fn matches(&self, src: &str, dest: &Dest, port: Port, fam: Family) -> bool {
        self.families.contains(&fam)
            && self.from.iter().any(|p| key_matches(p, src))
            && self.to.iter().any(|p| key_matches(p, &dest.key))
            && self.ports.iter().any(|p| port_matches(p, port))
    }
}

/// One truth table: policies (and extra objects) plus the expected reachability.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    docs: Vec<String>,
    ns_modes: Vec<(&'static str, Option<&'static str>)>,
    sources: Vec<&'static str>,
    families: &'static [Family],
    extra_ports: Vec<Port>,
    isolated: Vec<&'static str>,
    rules: Vec<Rule>,
    warnings_ok: bool,
    services: bool,
    /// Columns this case adds (its own Services, pods, addresses).
    extra_dests: Vec<Dest>,
    /// Service frontends at existing columns' addresses (an external IP
    /// that captures a pod's address): (column key, frontend).
    captures: Vec<(&'static str, Frontend)>,
    /// Pods besides the Istio egress gateway that are gateways (a Gateway
    /// or label in a trusted namespace).
    gateways: Vec<&'static str>,
    /// Columns that count as inside the cluster for these (non-isolated)
    /// sources: `MESH_INTERNAL` entries visible to them.
    internal: Vec<(&'static [&'static str], &'static [&'static str])>,
    /// `--trusted-namespace` values (none: the defaults).
    trusted: Vec<&'static str>,
}

/// What a query should answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub allow: bool,
    pub mode: &'static str,
    /// Any of these reasons is right (several rules may allow the same packet).
    pub reasons: Vec<&'static str>,
}

impl Case {
    /// From x/a, IPv4 only, all of x, y, z enforced, no policy.
    pub fn new(name: &str) -> Case {
        Case {
            name: name.into(),
            docs: Vec::new(),
            ns_modes: Vec::new(),
            sources: vec!["x/a"],
            families: V4,
            extra_ports: Vec::new(),
            isolated: Vec::new(),
            rules: Vec::new(),
            warnings_ok: false,
            services: false,
            extra_dests: Vec::new(),
            captures: Vec::new(),
            gateways: Vec::new(),
            internal: Vec::new(),
            trusted: Vec::new(),
        }
    }

    /// Adds a column (with its objects added through [`Case::object`]).
    pub fn dest(mut self, dest: Dest) -> Case {
        self.extra_dests.push(dest);
        self
    }

    /// The address of column `key` is also a Service frontend (an
    /// external IP capturing it) on `frontend.ports`.
    pub fn capture(mut self, key: &'static str, frontend: Frontend) -> Case {
        self.captures.push((key, frontend));
        self
    }

    /// Pod `ns/pod` is an egress gateway in this case.
    pub fn gateway(mut self, pod: &'static str) -> Case {
        self.gateways.push(pod);
        self
    }

    /// For non-isolated sources matching `from`, columns `to` count as
    /// inside the cluster (`MESH_INTERNAL` addresses exported to them).
    pub fn internal_for(mut self, from: &'static [&'static str], to: &'static [&'static str]) -> Case {
        self.internal.push((from, to));
        self
    }

    /// Runs verify with `--trusted-namespace` for each of these.
    pub fn trusted(mut self, namespaces: &[&'static str]) -> Case {
        self.trusted.extend_from_slice(namespaces);
        self
    }

    /// Every column of this case, captures applied.
    pub fn destinations(&self) -> Vec<Dest> {
        let mut dests = destinations(self.services);
        dests.extend(self.extra_dests.iter().cloned());
        for (key, frontend) in &self.captures {
            for d in dests.iter_mut().filter(|d| d.key == *key) {
                d.frontend = Some(frontend.clone());
            }
        }
        dests
    }

    fn is_gateway(&self, key: &str) -> bool {
        key == GATEWAY_POD || self.gateways.contains(&key)
    }

    /// Adds a NetworkPolicy `ns/name` with `spec` (YAML).
    pub fn policy(mut self, ns: &str, name: &str, spec: &str) -> Case {
        self.docs.push(netpol(ns, name, spec));
        self
    }

    /// Adds any other object (a YAML document).
    pub fn object(mut self, yaml: &str) -> Case {
        self.docs.push(dedent(yaml));
        self
    }

    /// Sets (Some) or removes (None) namespace `ns`'s `tollgate.dev/egress` label (default `enforce`).
    pub fn ns_mode(mut self, ns: &'static str, value: Option<&'static str>) -> Case {
        self.ns_modes.push((ns, value));
        self
    }

    /// Source pods (default x/a).
    pub fn from(mut self, pods: &[&'static str]) -> Case {
        self.sources = pods.to_vec();
        self
    }

    /// Address families asked (default IPv4 only).
    pub fn families(mut self, f: &'static [Family]) -> Case {
        self.families = f;
        self
    }

    /// Ports asked on top of [`BASE_PORTS`].
    pub fn ports(mut self, p: &[Port]) -> Case {
        self.extra_ports.extend_from_slice(p);
        self
    }

    /// Sources (patterns) that a policy with Egress in policyTypes selects:
    /// they reach only what [`Case::allow`] lists (plus gateways and DNS).
    pub fn isolated(mut self, pods: &[&'static str]) -> Case {
        self.isolated.extend_from_slice(pods);
        self
    }

    /// Isolated sources `from` may reach destinations `to` on `ports`, both families.
    pub fn allow(self, from: &[&'static str], to: &[&'static str], ports: &[&'static str]) -> Case {
        self.allow_in(DUAL, from, to, ports)
    }

    /// As [`Case::allow`], only for the given families.
    pub fn allow_in(mut self, families: &'static [Family], from: &[&'static str], to: &[&'static str], ports: &[&'static str]) -> Case {
        self.rules.push(Rule { from: from.to_vec(), to: to.to_vec(), ports: ports.to_vec(), families });
        self
    }

    /// Also asks for the per-pod Services' ClusterIPs: NetworkPolicy applies
    /// to the backend pod and port (after the Service's translation).
    pub fn services(mut self) -> Case {
        self.services = true;
        self
    }

    /// The case expects verify to print diagnostics on stderr (otherwise
    /// they fail it: a policy tollgate rejects would quietly change verdicts).
    pub fn warnings_ok(mut self) -> Case {
        self.warnings_ok = true;
        self
    }

    fn mode_of(&self, src: &str) -> &'static str {
        let ns = src.split_once('/').map(|(n, _)| n).unwrap_or(src);
        let default = if NAMESPACES.iter().any(|(n, _)| *n == ns) { Some("enforce") } else { None };
        match self.ns_modes.iter().rev().find(|(n, _)| *n == ns).map(|(_, m)| *m).unwrap_or(default) {
            None => "off",
            Some("audit") => "audit",
            // `enforce`, and any other value (fail closed).
            Some(_) => "enforce",
        }
    }

    fn is_isolated(&self, src: &str) -> bool {
        self.isolated.iter().any(|p| key_matches(p, src))
    }

    /// The expected answer, from the contract and this case's table.
    pub fn expect(&self, src: &str, dest: &Dest, port: Port, fam: Family, dests: &[Dest]) -> Expected {
        let mode = self.mode_of(src);
        if mode == "off" {
            // Gateway pods of namespaces that are not enforced are exempt;
            // elsewhere they are enforced like any other pod.
            let reasons = if self.is_gateway(src) { vec!["gateway-pod", "not-enforced"] } else { vec!["not-enforced"] };
            return Expected { allow: true, mode, reasons };
        }
        let mut reasons = match dest.frontend.as_ref().filter(|f| f.covers(port)) {
            // A Service address: allowed only when every endpoint behind
            // it is allowed on the target port; none: denied.
            Some(frontend) => {
                let target = service_target(port);
                let each: Vec<Vec<&'static str>> = frontend
                    .backends
                    .iter()
                    .map(|b| {
                        let backend = dests.iter().find(|d| d.key == *b).unwrap_or_else(|| panic!("backend {b} is a column"));
                        self.base_reasons(src, backend, target, fam)
                    })
                    .collect();
                if each.is_empty() || each.iter().any(Vec::is_empty) {
                    Vec::new()
                } else if !frontend.cluster_ip {
                    self.base_reasons(src, dest, port, fam)
                } else {
                    let mut all: Vec<&'static str> = each.into_iter().flatten().collect();
                    if !self.is_isolated(src) && dest.in_cluster() {
                        all.push("cluster-internal");
                    }
                    all
                }
            }
            None => self.base_reasons(src, dest, port, fam),
        };
        let allow = !reasons.is_empty();
        if !allow {
            reasons.push("no-rule");
        }
        Expected { allow, mode, reasons }
    }

    /// Why `dest` itself (not as a Service) is allowed to `src` on `port`:
    /// gateways, DNS, then the policies or the cluster-internal rule.
    fn base_reasons(&self, src: &str, dest: &Dest, port: Port, fam: Family) -> Vec<&'static str> {
        let mut reasons = Vec::new();
        if matches!(dest.kind, DestKind::GatewayPod | DestKind::GatewayService) || self.is_gateway(&dest.key) {
            reasons.push("gateway");
        }
        if matches!(dest.kind, DestKind::DnsPod | DestKind::DnsService) && DNS_PORTS.contains(&port) {
            reasons.push("dns");
        }
        if self.is_isolated(src) {
            if self.rules.iter().any(|r| r.matches(src, dest, port, fam)) {
                reasons.push("network-policy");
            }
        } else if dest.in_cluster()
            || self.internal.iter().any(|(from, to)| from.iter().any(|p| key_matches(p, src)) && to.contains(&dest.key.as_str()))
        {
            reasons.push("cluster-internal");
        }
        reasons
    }

    /// A pod's traffic to its own address stays on `lo`: never a policy
    /// question, always allowed.
    pub fn expect_to_itself(&self, src: &str) -> Expected {
        let mode = self.mode_of(src);
        if mode == "off" {
            return Expected { allow: true, mode: "off", reasons: vec!["gateway-pod", "not-enforced"] };
        }
        Expected { allow: true, mode, reasons: vec!["loopback"] }
    }

    /// Catches mistakes in the table itself.
    fn check_table(&self) -> Result<()> {
        for r in &self.rules {
            for f in &r.from {
                let hits: Vec<_> = self.sources.iter().filter(|s| key_matches(f, s)).collect();
                if hits.iter().any(|s| !self.is_isolated(s)) {
                    bail!("table error in {:?}: allow rule from {f:?} covers a source that is not isolated", self.name);
                }
            }
        }
        if self.sources.is_empty() || self.families.is_empty() {
            bail!("table error in {:?}: no sources or no families", self.name);
        }
        for d in &self.docs {
            for doc in serde_yaml::Deserializer::from_str(d) {
                use serde::Deserialize;
                serde_yaml::Value::deserialize(doc).with_context(|| format!("table error in {:?}: bad YAML:\n{d}", self.name))?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- running

/// One verify query, with what it should answer.
#[derive(Clone, Debug)]
pub struct Query {
    pub from: &'static str,
    pub dest: usize,
    pub port: Port,
    pub family: Family,
    pub expected: Expected,
}

/// What verify answered.
#[derive(Clone, Debug, Default)]
pub struct Answer {
    pub verdict: String,
    pub mode: String,
    pub reason: String,
    pub detail: String,
}

impl Answer {
    fn allow(&self) -> bool {
        self.verdict == "allow"
    }
}

#[derive(Clone, Debug)]
pub struct Mismatch {
    pub query: Query,
    pub answer: Answer,
}

impl Mismatch {
    fn verdict_wrong(&self) -> bool {
        self.answer.allow() != self.query.expected.allow
    }
}

/// The result of one case.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    pub queries: usize,
    pub mismatches: Vec<Mismatch>,
    /// verify failed (exit code, bad output) or printed unexpected diagnostics.
    pub error: Option<String>,
    /// What verify printed on stderr (warnings, compile errors).
    pub diagnostics: String,
    /// The readable report (tables and details) when something is wrong.
    pub report: String,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty() && self.error.is_none()
    }
}

fn queries(case: &Case, dests: &[Dest]) -> Vec<Query> {
    let mut out = Vec::new();
    for &fam in case.families {
        for &from in &case.sources {
            for (di, d) in dests.iter().enumerate() {
                for port in d.ports(&case.extra_ports) {
                    let expected = if d.key == from {
                        case.expect_to_itself(from)
                    } else {
                        case.expect(from, d, port, fam, dests)
                    };
                    out.push(Query { from, dest: di, port, family: fam, expected });
                }
            }
        }
    }
    out
}

fn query_json(q: &Query, d: &Dest) -> Value {
    let mut v = json!({"from_pod": q.from, "to_port": q.port.port, "protocol": q.port.proto.as_str()});
    if q.family == Family::V4 && d.is_pod() {
        v["to_pod"] = json!(d.key);
    } else {
        v["to_ip"] = json!(d.ip(q.family));
    }
    v
}

/// `/sys/fs/bpf/tg-tt-<pid>-<n>`: made before verify runs (its private pin
/// folder goes next to the `--bpffs` path, which must be on bpffs) and
/// removed afterwards, whatever happened.
struct BpffsDir(PathBuf);

impl BpffsDir {
    fn new(n: usize) -> Result<BpffsDir> {
        let p = PathBuf::from(format!("/sys/fs/bpf/tg-tt-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(BpffsDir(p))
    }
}

impl Drop for BpffsDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("[truth-table] cleanup: rm -rf {}: {e}", self.0.display());
        }
    }
}

/// The prefix of every bpffs folder this process makes (for the leak check).
pub fn bpffs_prefix() -> String {
    format!("tg-tt-{}-", std::process::id())
}

struct VerifyRun {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run_verify(bin: &Path, bpffs: &Path, manifests: &Path, trusted: &[&str], input: String) -> Result<VerifyRun> {
    let mut cmd = Command::new(bin);
    cmd.arg("--bpffs").arg(bpffs.join("tollgate"));
    cmd.args(["verify", "--batch", "-", "--manifests"]).arg(manifests);
    for c in CLUSTER_CIDRS {
        cmd.args(["--cluster-cidr", c]);
    }
    for ns in trusted {
        cmd.args(["--trusted-namespace", ns]);
    }
    cmd.args(["-o", "json"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("spawning {}", bin.display()))?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let mut out = child.stdout.take().context("stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).map(|_| s)
    });
    let mut err = child.stderr.take().context("stderr")?;
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).map(|_| s)
    });
    let deadline = Instant::now() + VERIFY_TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("tollgate verify did not finish within {VERIFY_TIMEOUT:?} (killed)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // A write error (EPIPE) only means verify stopped reading: its exit code says why.
    let _ = writer.join();
    let stdout = reader.join().map_err(|_| anyhow::anyhow!("stdout reader panicked"))??;
    let stderr = err_reader.join().map_err(|_| anyhow::anyhow!("stderr reader panicked"))??;
    Ok(VerifyRun { code: status.code(), stdout, stderr })
}

/// Runs one case (one verify process); `n` makes its folders unique.
pub fn run_case(case: &Case, bin: &Path, n: usize) -> Outcome {
    let start = Instant::now();
    let dests = case.destinations();
    let qs = queries(case, &dests);
    let mut out = Outcome {
        name: case.name.clone(),
        queries: qs.len(),
        mismatches: Vec::new(),
        error: None,
        diagnostics: String::new(),
        report: String::new(),
        elapsed: Duration::ZERO,
    };
    match check_case(case, bin, n, &dests, &qs) {
        Ok((mismatches, diagnostics)) => {
            out.mismatches = mismatches;
            if !diagnostics.is_empty() && !case.warnings_ok {
                out.error = Some("verify printed diagnostics the case does not expect".into());
            }
            out.diagnostics = diagnostics;
        }
        Err(e) => out.error = Some(format!("{e:#}")),
    }
    out.report = report(case, &dests, &qs, &out);
    out.elapsed = start.elapsed();
    out
}

fn check_case(case: &Case, bin: &Path, n: usize, dests: &[Dest], qs: &[Query]) -> Result<(Vec<Mismatch>, String)> {
    case.check_table()?;
    let tmp = TempDir::new(&format!("tollgate-tt-{}-{n}", std::process::id()))?;
    for (file, text) in cluster_files(&case.ns_modes)? {
        std::fs::write(tmp.path.join(file), text)?;
    }
    let policies: String = case.docs.iter().map(|d| format!("---\n{d}\n")).collect();
    std::fs::write(tmp.path.join("case.yaml"), &policies)?;
    let bpffs = BpffsDir::new(n)?;

    let input: String = qs.iter().map(|q| format!("{}\n", query_json(q, &dests[q.dest]))).collect();
    let run = run_verify(bin, &bpffs.0, &tmp.path, &case.trusted, input)?;
    drop(bpffs);
    if run.code != Some(0) {
        bail!(
            "tollgate verify exited with {:?}\n--- stderr ---\n{}\n--- stdout (first lines) ---\n{}\n--- policies ---\n{policies}",
            run.code,
            run.stderr.trim(),
            run.stdout.lines().take(5).collect::<Vec<_>>().join("\n")
        );
    }
    let lines: Vec<&str> = run.stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() != qs.len() {
        bail!("verify answered {} lines for {} queries\n--- stderr ---\n{}", lines.len(), qs.len(), run.stderr.trim());
    }
    let mut mismatches = Vec::new();
    for (q, line) in qs.iter().zip(lines) {
        let v: Value = serde_json::from_str(line).with_context(|| format!("verify answer is not JSON: {line}"))?;
        let asked = query_json(q, &dests[q.dest]);
        for (k, want) in asked.as_object().into_iter().flatten() {
            if &v[k] != want {
                bail!("answer does not echo the query's {k} (want {want}): {line}");
            }
        }
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let a = Answer { verdict: s("verdict"), mode: s("mode"), reason: s("reason"), detail: s("detail") };
        if !matches!(a.verdict.as_str(), "allow" | "deny") {
            bail!("answer has no verdict allow|deny: {line}");
        }
        let e = &q.expected;
        if a.allow() != e.allow || a.mode != e.mode || !e.reasons.contains(&a.reason.as_str()) {
            mismatches.push(Mismatch { query: q.clone(), answer: a });
        }
    }
    let diagnostics: String = run.stderr.lines().filter(|l| !l.trim().is_empty()).map(|l| format!("  {l}\n")).collect();
    Ok((mismatches, diagnostics))
}

// ---------------------------------------------------------------- reports

/// `1234567` → `1,234,567`.
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Truth tables (one per family and port that has a mismatch) and the
/// details of each mismatch. Empty when the case passed.
fn report(case: &Case, dests: &[Dest], qs: &[Query], out: &Outcome) -> String {
    let mut r = String::new();
    if out.ok() {
        return r;
    }
    let _ = writeln!(r, "=== case {:?}", case.name);
    if let Some(e) = &out.error {
        let _ = writeln!(r, "ERROR: {e}");
    }
    if !out.diagnostics.is_empty() {
        let _ = write!(r, "verify stderr:\n{}", out.diagnostics);
    }
    if out.mismatches.is_empty() {
        return r;
    }
    let _ = writeln!(r, "policies:");
    for d in &case.docs {
        let _ = writeln!(r, "---\n{d}");
    }
    let _ = writeln!(r, "legend: . allowed  X denied  - not asked  * verdict differs from the table  ! verdict right, mode/reason wrong");
    let mut groups: Vec<(Family, Port)> = out.mismatches.iter().map(|m| (m.query.family, m.query.port)).collect();
    groups.sort();
    groups.dedup();
    let find = |from: &str, di: usize, fam: Family, port: Port| {
        qs.iter().position(|q| q.from == from && q.dest == di && q.family == fam && q.port == port)
    };
    for (fam, port) in groups {
        let cols: Vec<usize> = (0..dests.len()).filter(|&di| dests[di].ports(&case.extra_ports).contains(&port)).collect();
        // Cells put the verdict under the heading's last character, the mark after it.
        let w: Vec<usize> = cols.iter().map(|&di| dests[di].label.len() + 1).collect();
        let first = case.sources.iter().map(|s| s.len()).max().unwrap_or(0).max(12);
        let _ = write!(r, "\n{:<first$}", format!("{fam} {port}"));
        for (i, &di) in cols.iter().enumerate() {
            let _ = write!(r, "{:>w$} ", dests[di].label, w = w[i]);
        }
        r.push('\n');
        for &from in &case.sources {
            let _ = write!(r, "{from:<first$}");
            for (i, &di) in cols.iter().enumerate() {
                let (verdict, mark) = match find(from, di, fam, port) {
                    None => ("-", ' '),
                    Some(qi) => {
                        let m = out.mismatches.iter().find(|m| {
                            let q = &m.query;
                            q.from == from && q.dest == di && q.family == fam && q.port == port
                        });
                        match m {
                            // Show what verify said.
                            Some(m) => (if m.answer.allow() { "." } else { "X" }, if m.verdict_wrong() { '*' } else { '!' }),
                            None => (if qs[qi].expected.allow { "." } else { "X" }, ' '),
                        }
                    }
                };
                let _ = write!(r, "{verdict:>w$}{mark}", w = w[i]);
            }
            r.push('\n');
        }
    }
    let _ = writeln!(r, "\nmismatches ({}):", out.mismatches.len());
    const SHOWN: usize = 40;
    for m in out.mismatches.iter().take(SHOWN) {
        let q = &m.query;
        let d = &dests[q.dest];
        let e = &q.expected;
        let _ = writeln!(
            r,
            "  {} -> {} ({}) {} {}: expected {} ({}, {}), got {} ({}, {}): {}",
            q.from,
            d.key,
            d.ip(q.family),
            q.port,
            q.family,
            if e.allow { "allow" } else { "deny" },
            e.mode,
            e.reasons.join("|"),
            m.answer.verdict,
            m.answer.mode,
            m.answer.reason,
            m.answer.detail
        );
    }
    if out.mismatches.len() > SHOWN {
        let _ = writeln!(r, "  ... and {} more", out.mismatches.len() - SHOWN);
    }
    r
}

/// Mounts bpffs on /sys/fs/bpf if needed (we are root), and checks root.
pub fn require_root_and_bpffs() {
    // SAFETY: geteuid has no preconditions.
    assert!(unsafe { libc::geteuid() } == 0, "the truth tables need root (verify --manifests loads eBPF)");
    let bpf = Path::new("/sys/fs/bpf");
    if !crate::util::is_bpffs(bpf) {
        let _ = std::fs::create_dir_all(bpf);
        if let Err(e) = crate::util::run("mount", &["-t", "bpf", "bpf", "/sys/fs/bpf"]) {
            panic!("/sys/fs/bpf is not a bpffs mount and mounting it failed: {e:#}");
        }
    }
    assert!(crate::util::is_bpffs(bpf), "/sys/fs/bpf is not a bpffs mount");
}

/// Runs the cases on up to `workers` threads; outcomes in case order.
pub fn run_all(cases: &[Case], bin: &Path, workers: usize) -> Vec<Outcome> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new((0..cases.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(case) = cases.get(i) else { break };
                let o = run_case(case, bin, i);
                results.lock().expect("results lock")[i] = Some(o);
            });
        }
    });
    results.into_inner().expect("results lock").into_iter().map(|o| o.expect("every case ran")).collect()
}
