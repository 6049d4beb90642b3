//! The local control plane itself, without the agent: a real kube-apiserver
//! takes every kind of object the Kubernetes tests need (without controllers,
//! a test writes node, pod addresses and EndpointSlices itself), RBAC and
//! ServiceAccount tokens work, and the data survives a stop and a start.

use anyhow::{bail, ensure, Context, Result};
use tollgate_e2e::apiserver::ApiServer;

const OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: smoke
---
apiVersion: v1
kind: Node
metadata:
  name: node-1
spec:
  podCIDR: 10.244.0.0/24
  podCIDRs: ["10.244.0.0/24", "fd00:10:244::/64"]
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: smoke
  labels: {app: web}
spec:
  nodeName: node-1
  serviceAccountName: web
  containers:
  - name: web
    image: registry.invalid/web:1
    ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: smoke
spec:
  ipFamilyPolicy: PreferDualStack
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: smoke
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints:
- addresses: ["10.244.0.10"]
  conditions: {ready: true}
  nodeName: node-1
  targetRef: {kind: Pod, namespace: smoke, name: web}
ports: [{name: http, port: 8080, protocol: TCP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-egress
  namespace: smoke
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 203.0.113.0/24, except: [203.0.113.10/32]}}]
    ports: [{protocol: TCP, port: 80}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: egress
  namespace: smoke
spec:
  selector: {istio: egressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [edition.cnn.com]}]
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata:
  name: cnn
  namespace: smoke
spec:
  hosts: [edition.cnn.com]
  location: MESH_EXTERNAL
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
---
apiVersion: policy.openservicemesh.io/v1alpha1
kind: Egress
metadata:
  name: httpbin
  namespace: smoke
spec:
  sources: [{kind: ServiceAccount, name: web, namespace: smoke}]
  hosts: [httpbin.test]
  ports: [{number: 80, protocol: http}]
---
apiVersion: config.openservicemesh.io/v1alpha3
kind: MeshConfig
metadata:
  name: osm-mesh-config
  namespace: smoke
spec:
  featureFlags: {enableEgressPolicy: true}
"#;

/// Read-only access to Pods, for the ServiceAccount `reader`.
const POD_READER: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata:
  name: reader
  namespace: smoke
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: smoke-pod-reader
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: smoke-pod-reader
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: smoke-pod-reader}
subjects:
- {kind: ServiceAccount, name: reader, namespace: smoke}
"#;

fn get(s: &ApiServer, what: &[&str], jsonpath: &str) -> Result<String> {
    let path = format!("jsonpath={jsonpath}");
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", &path]);
    s.kubectl(&args)
}

fn expect(s: &ApiServer, what: &[&str], jsonpath: &str, want: &str) -> Result<()> {
    let have = get(s, what, jsonpath)?;
    ensure!(have == want, "{what:?} {jsonpath}: have {have:?}, want {want:?}");
    Ok(())
}

/// Everything `create_objects` wrote, read back.
fn check_objects(s: &ApiServer) -> Result<()> {
    let ns = "{.metadata.labels.tollgate\\.dev/egress}";
    expect(s, &["namespace/smoke"], ns, "enforce")?;
    let cidrs = r#"["10.244.0.0/24","fd00:10:244::/64"]"#;
    expect(s, &["node/node-1"], "{.spec.podCIDRs}", cidrs)?;
    let in_smoke = |object: &str, path: &str, want: &str| expect(s, &[object, "-n", "smoke"], path, want);
    in_smoke("pod/web", "{.spec.nodeName}", "node-1")?;
    in_smoke("pod/web", "{.status.podIPs[*].ip}", "10.244.0.10 fd00:10:244::10")?;
    in_smoke("endpointslice/web-1", "{.endpoints[0].addresses[0]}", "10.244.0.10")?;
    let except = "{.spec.egress[0].to[0].ipBlock.except[0]}";
    in_smoke("networkpolicy/web-egress", except, "203.0.113.10/32")?;
    // Every served version reads the same object.
    for v in ["v1", "v1beta1", "v1alpha3"] {
        in_smoke(&format!("gateways.{v}.networking.istio.io/egress"), "{.spec.selector.istio}", "egressgateway")?;
        in_smoke(&format!("serviceentries.{v}.networking.istio.io/cnn"), "{.spec.location}", "MESH_EXTERNAL")?;
    }
    in_smoke("egresses.policy.openservicemesh.io/httpbin", "{.spec.hosts[0]}", "httpbin.test")?;
    for v in ["v1alpha1", "v1alpha2", "v1alpha3"] {
        let flag = "{.spec.featureFlags.enableEgressPolicy}";
        in_smoke(&format!("meshconfigs.{v}.config.openservicemesh.io/osm-mesh-config"), flag, "true")?;
    }
    Ok(())
}

/// ClusterIPs of both families inside the ranges the server was given, and
/// the default ServiceCIDR object that the agent learns those ranges from.
fn check_service_ranges(s: &ApiServer) -> Result<()> {
    let ips = get(s, &["service/web", "-n", "smoke"], "{.spec.clusterIPs[*]}")?;
    let ips: Vec<std::net::IpAddr> = ips
        .split_whitespace()
        .map(|ip| ip.parse().with_context(|| format!("clusterIP {ip:?}")))
        .collect::<Result<_>>()?;
    let in_range = |ip: &std::net::IpAddr| match ip {
        std::net::IpAddr::V4(v4) => v4.octets()[..2] == [10, 96],
        std::net::IpAddr::V6(v6) => v6.segments()[..7] == [0xfd00, 0x10, 0x96, 0, 0, 0, 0],
    };
    ensure!(
        ips.len() == 2 && ips[0].is_ipv4() && ips[1].is_ipv6() && ips.iter().all(in_range),
        "clusterIPs {ips:?} are not one of 10.96.0.0/16 and one of fd00:10:96::/112"
    );
    let cidrs = r#"["10.96.0.0/16","fd00:10:96::/112"]"#;
    expect(s, &["servicecidrs.v1.networking.k8s.io/kubernetes"], "{.spec.cidrs}", cidrs)?;
    let ready = "{.status.conditions[?(@.type==\"Ready\")].status}";
    expect(s, &["servicecidr/kubernetes"], ready, "True")
}

/// RBAC decides, with ServiceAccount tokens from the TokenRequest API.
fn check_rbac(s: &mut ApiServer) -> Result<()> {
    s.kubectl(&["create", "serviceaccount", "nobody", "-n", "smoke"])?;
    let nobody = s.service_account_token("smoke", "nobody")?;
    let nobody = s.kubeconfig_for_token("nobody", &nobody)?;
    match s.kubectl_as(&nobody, &["get", "pods", "-n", "smoke"]) {
        Ok(out) => bail!("a ServiceAccount without any role listed pods: {out}"),
        Err(e) if format!("{e:#}").contains("Forbidden") => {}
        Err(e) => return Err(e.context("expected Forbidden")),
    }
    s.apply_yaml(POD_READER)?;
    let reader = s.service_account_token("smoke", "reader")?;
    let reader = s.kubeconfig_for_token("reader", &reader)?;
    let out = s.kubectl_as(&reader, &["get", "pods", "-n", "smoke", "-o", "name"])?;
    ensure!(out.trim() == "pod/web", "reader listed {out:?}");
    let can = s.kubectl_as(&reader, &["auth", "can-i", "list", "secrets", "-n", "smoke"]);
    ensure!(can.is_err(), "reader may list secrets: {can:?}");
    Ok(())
}

fn create_objects(s: &mut ApiServer) -> Result<()> {
    s.install_crds()?;
    s.apply_yaml(OBJECTS)?;
    let status = r#"{"status":{"podIP":"10.244.0.10","podIPs":[{"ip":"10.244.0.10"},{"ip":"fd00:10:244::10"}]}}"#;
    s.kubectl(&["patch", "pod", "web", "-n", "smoke", "--subresource=status", "--type=merge", "-p", status])?;
    s.kubectl(&["label", "namespace", "smoke", "tollgate.dev/egress=enforce"])?;
    Ok(())
}

fn smoke(s: &mut ApiServer) -> Result<()> {
    // kubectl and the server are the same Kubernetes version.
    let v: serde_json::Value = serde_json::from_str(&s.kubectl(&["version", "-o", "json"])?)?;
    for side in ["clientVersion", "serverVersion"] {
        let have = v[side]["gitVersion"].as_str().unwrap_or_default();
        ensure!(have.starts_with("v1.36."), "{side}: {have:?}");
    }
    create_objects(s)?;
    check_objects(s)?;
    check_service_ranges(s)?;
    check_rbac(s)?;

    let url = s.url().to_string();
    s.stop().context("stopping the API server")?;
    ensure!(s.kubectl(&["get", "namespaces"]).is_err(), "{url} still answers after stop");
    s.start_again().context("starting the API server again")?;
    ensure!(s.url() == url, "came back at {} instead of {url}", s.url());
    check_objects(s).context("after a restart")?;
    Ok(())
}

#[test]
fn apiserver_smoke() {
    let mut s = ApiServer::start().expect("start the API server");
    if let Err(e) = smoke(&mut s) {
        s.keep();
        panic!("{e:#}\n(server folder kept: {})", s.dir().display());
    }
}
