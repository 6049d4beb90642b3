//! Services judged by their endpoints (issue 8 §4, contract "Settled
//! details"): a Service address and port is allowed only when every
//! endpoint behind it is an allowed destination for the pod on the
//! target port, even inside the cluster CIDRs.
use agent_common::{PortRule, POLICY_GLOBAL, PROTO_TCP, PROTO_UDP, REASON_CLUSTER_INTERNAL, REASON_GATEWAY, REASON_NETWORK_POLICY};

use super::tests::{compile, config, gateway, network_policy, ns, pod, rules_at, snapshot, workload};
use crate::cli::verify_detail::{self, Asked};

const CIDRS: [&str; 2] = ["10.244.0.0/16", "10.96.0.0/12"];

/// A Service: `selector` (YAML map body, empty for none), ClusterIP, TCP
/// ports `port:targetPort` and extra spec/status YAML.
fn svc(ns: &str, name: &str, selector: &str, cluster_ip: &str, ports: &str, extra: &str) -> String {
    let selector = if selector.is_empty() { String::new() } else { format!("  selector: {{{selector}}}\n") };
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{selector}  clusterIP: {cluster_ip}\n  ports: [{ports}]\n{extra}")
}

/// A hand-written EndpointSlice for Service `svc` with `addresses` on
/// slice port `port` (named `""`, TCP).
fn slice(ns: &str, name: &str, svc: &str, port: &str, addresses: &str) -> String {
    format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: {ns}, labels: {{kubernetes.io/service-name: {svc}}}}}\naddressType: IPv4\nports: [{{name: '', protocol: TCP{port}}}]\nendpoints:\n- addresses: [{addresses}]\n")
}

fn base() -> Vec<String> {
    vec![
        ns("x", Some("enforce")),
        ns("y", None),
        pod("x", "a", "node-1", "10.244.1.1", "app: a"),
        pod("x", "c", "node-1", "10.244.1.3", "app: c"),
        pod("y", "a", "node-2", "10.244.2.1", "app: a, tier: web"),
        pod("y", "b", "node-2", "10.244.2.2", "app: b, tier: web"),
    ]
}

fn allowed(rules: &[PortRule], proto: u8, port: u16) -> bool {
    rules.iter().any(|r| r.matches(proto, port))
}

#[test]
fn a_selectorless_service_forwarding_outside_is_denied_inside_the_cluster_cidrs() {
    let mut docs = base();
    docs.push(svc("y", "s", "", "10.96.0.9", "{port: 80}", ""));
    docs.push(slice("y", "s-abc", "s", ", port: 80", "203.0.113.5"));
    let state = compile(&snapshot(&docs), &config(&CIDRS));
    let id = workload(&state, "x", "a").policy;
    let at = rules_at(&state, id, "10.96.0.9/32");
    assert!(!allowed(&at, PROTO_TCP, 80), "{at:?}");
    assert!(!allowed(&at, PROTO_TCP, 0), "unknown TCP port (fragments) no longer allowed there");
    assert!(allowed(&at, PROTO_TCP, 81) && allowed(&at, PROTO_UDP, 80), "only the Service port is taken out: {at:?}");
    assert!(at.iter().all(|r| r.reason == REASON_CLUSTER_INTERNAL));
    // The same ClusterIP with an endpoint inside the cluster is allowed.
    let mut fixed = base();
    fixed.push(svc("y", "s", "", "10.96.0.9", "{port: 80}", ""));
    fixed.push(slice("y", "s-abc", "s", ", port: 80", "10.244.2.1"));
    let state = compile(&snapshot(&fixed), &config(&CIDRS));
    let id = workload(&state, "x", "a").policy;
    assert!(!state.policies[&id].iter().any(|e| e.net.to_string() == "10.96.0.9/32"), "no entry of its own needed");

    // verify names the endpoint that denied it.
    let docs_state = compile(&snapshot(&docs), &config(&CIDRS));
    let dst = "10.96.0.9".parse().expect("ip");
    let asked = Asked {
        from: "x/a",
        host: None,
        dst,
        destination: "10.96.0.9:80",
        proto: PROTO_TCP,
        proto_name: "tcp",
        port: 80,
        reason: "no-rule",
        mode: "enforce",
    };
    let d = verify_detail::explain(&docs_state.explain, &asked);
    assert!(
        d.detail.contains("Service y/s 10.96.0.9:80 tcp forwards to 203.0.113.5:80 (EndpointSlice y/s-abc endpoints[0]), which Pod x/a may not reach"),
        "{}",
        d.detail
    );
}

#[test]
fn external_ips_capturing_an_allowed_address_are_denied_on_their_ports() {
    let mut docs = base();
    docs.push(gateway("istio-system", "egress", "istio: egressgateway"));
    docs.push(pod("istio-system", "egw", "node-2", "10.244.9.1", "istio: egressgateway"));
    // y/a's own address and the gateway's, captured on TCP 443 and 80.
    docs.push(svc("y", "capture", "", "10.96.0.10", "{port: 443}, {port: 80, name: http}", "  externalIPs: [10.244.2.1, 10.244.9.1]\n"));
    docs.push(slice("y", "capture-1", "capture", ", port: 443", "203.0.113.5"));
    docs.push(slice("y", "capture-2", "capture", ", port: 8080", "203.0.113.5").replace("name: ''", "name: http"));
    let state = compile(&snapshot(&docs), &config(&CIDRS));
    let id = workload(&state, "x", "a").policy;
    let pod_ip = rules_at(&state, id, "10.244.2.1/32");
    assert!(!allowed(&pod_ip, PROTO_TCP, 443) && !allowed(&pod_ip, PROTO_TCP, 80), "{pod_ip:?}");
    assert!(allowed(&pod_ip, PROTO_TCP, 444), "{pod_ip:?}");
    let gw = rules_at(&state, POLICY_GLOBAL, "10.244.9.1/32");
    assert!(!allowed(&gw, PROTO_TCP, 443) && !allowed(&gw, PROTO_TCP, 80), "taken out of the global policy: {gw:?}");
    assert!(allowed(&gw, PROTO_TCP, 8443) && gw.iter().all(|r| r.reason == REASON_GATEWAY), "{gw:?}");
    // x/a's own policy (the cluster CIDRs hold the gateway's address) does
    // not give them back: 203.0.113.5 is outside.
    let own = rules_at(&state, id, "10.244.9.1/32");
    assert!(!allowed(&own, PROTO_TCP, 443) && !allowed(&own, PROTO_TCP, 80) && allowed(&own, PROTO_TCP, 22), "{own:?}");
}

#[test]
fn a_service_with_no_endpoints_is_denied() {
    let mut docs = base();
    docs.push(svc("y", "empty", "app: nobody", "10.96.0.11", "{port: 80}", ""));
    let state = compile(&snapshot(&docs), &config(&CIDRS));
    let id = workload(&state, "x", "a").policy;
    assert!(!allowed(&rules_at(&state, id, "10.96.0.11/32"), PROTO_TCP, 80));
}

#[test]
fn network_policy_pods_reach_a_service_only_when_every_backend_is_allowed() {
    let mut docs = base();
    docs.push(network_policy(
        "x",
        "to-y-a",
        "  podSelector: {matchLabels: {app: c}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}, podSelector: {matchLabels: {app: a}}}]\n    ports: [{port: 80}]\n",
    ));
    docs.push(svc("y", "both", "tier: web", "10.96.0.12", "{port: 80}", ""));
    docs.push(svc("y", "only-a", "app: a", "10.96.0.13", "{port: 8080, targetPort: 80}, {port: 9090, name: m}", "status: {loadBalancer: {ingress: [{ip: 198.51.100.7}]}}\n"));
    let state = compile(&snapshot(&docs), &config(&CIDRS));
    let c = workload(&state, "x", "c").policy;
    assert!(!state.policies[&c].iter().any(|e| e.net.to_string() == "10.96.0.12/32"), "y/b is not allowed: no rule");
    let only_a = PortRule { proto: PROTO_TCP, reason: REASON_NETWORK_POLICY, port_lo: 8080, port_hi: 8080 };
    assert_eq!(rules_at(&state, c, "10.96.0.13/32"), [only_a], "port 9090 -> 9090 is not allowed to y/a");
    assert!(!state.policies[&c].iter().any(|e| e.net.to_string() == "198.51.100.7/32"), "a load-balancer IP is not opened");
    let origins = state.explain.origins(c, "10.96.0.13".parse().expect("ip"), PROTO_TCP, 8080, "network-policy");
    assert_eq!(origins.len(), 1, "{origins:?}");
    assert!(origins[0].starts_with("Service y/only-a 10.96.0.13:8080 TCP: every endpoint is allowed: 10.244.2.1:80 (Pod y/a"), "{}", origins[0]);
    // Nor for a pod under the cluster-internal rule: it is outside the
    // cluster CIDRs, and may be a real host the proxy does not intercept.
    let a = workload(&state, "x", "a").policy;
    assert!(!state.policies[&a].iter().any(|e| e.net.to_string() == "198.51.100.7/32"));
}

#[test]
fn external_ips_are_never_opened_by_their_endpoints() {
    // A tenant's Service claims 169.254.169.254 and 203.0.113.7 as
    // external IPs, with endpoints every pod may reach (a pod, the
    // gateway): neither address is opened.
    let mut docs = base();
    docs.push(gateway("istio-system", "egress", "istio: egressgateway"));
    docs.push(pod("istio-system", "egw", "node-2", "10.244.9.1", "istio: egressgateway"));
    docs.push(svc("y", "metadata", "app: a", "10.96.0.20", "{port: 80}", "  externalIPs: [169.254.169.254]\n"));
    docs.push(svc("y", "via-gw", "", "10.96.0.21", "{port: 443}", "  externalIPs: [203.0.113.7]\n"));
    docs.push(slice("y", "via-gw-1", "via-gw", ", port: 443", "10.244.9.1"));
    let state = compile(&snapshot(&docs), &config(&CIDRS));
    for id in [POLICY_GLOBAL, workload(&state, "x", "a").policy] {
        let nets: Vec<String> = state.policies[&id].iter().map(|e| e.net.to_string()).collect();
        assert!(!nets.contains(&"169.254.169.254/32".to_owned()) && !nets.contains(&"203.0.113.7/32".to_owned()), "{id}: {nets:?}");
    }
    // Their ClusterIPs are allowed (inside the cluster CIDRs, every
    // endpoint allowed).
    assert!(!state.policies[&workload(&state, "x", "a").policy].iter().any(|e| e.net.to_string().starts_with("10.96.0.2")));
}

#[test]
fn unknown_endpoint_ports_and_oversized_services_fail_closed() {
    let mut docs = base();
    docs.push(svc("y", "noport", "", "10.96.0.14", "{port: 80}", ""));
    docs.push(slice("y", "noport-1", "noport", "", "10.244.2.1"));
    let many: Vec<String> = (0..70).map(|i| format!("192.0.2.{i}")).collect();
    docs.push(svc("y", "huge", "app: a", "10.96.0.15", "{port: 80}", &format!("  externalIPs: [{}]\n", many.join(", "))));
    let state = compile(&snapshot(&docs), &config(&CIDRS));
    let id = workload(&state, "x", "a").policy;
    assert!(!allowed(&rules_at(&state, id, "10.96.0.14/32"), PROTO_TCP, 80), "a slice port without a number");
    assert!(rules_at(&state, id, "10.96.0.15/32").is_empty(), "denied on every port");
    let d: Vec<(&str, &str)> = state.diagnostics.iter().map(|d| (d.object.as_str(), d.field.as_str())).collect();
    assert_eq!(d, [("Service y/huge", "spec.externalIPs")]);
    assert!(state.diagnostics[0].message.contains("70 external IPs, more than the limit of 64"), "{}", state.diagnostics[0].message);
}

#[test]
fn dual_stack_services_are_judged_per_family() {
    let mut docs = base();
    docs.push(pod("y", "v6", "node-2", "fd00:10:244::2:9", "app: v6"));
    docs.push(
        svc("y", "v6", "app: v6", "10.96.0.16", "{port: 80}", "")
            .replace("clusterIP: 10.96.0.16\n", "clusterIP: 10.96.0.16\n  clusterIPs: [10.96.0.16, 'fd00:10:96::16']\n"),
    );
    let state = compile(&snapshot(&docs), &config(&["10.244.0.0/16", "10.96.0.0/12", "fd00:10:244::/56", "fd00:10:96::/108"]));
    let id = workload(&state, "x", "a").policy;
    assert!(!allowed(&rules_at(&state, id, "10.96.0.16/32"), PROTO_TCP, 80), "no IPv4 endpoint");
    assert!(!state.policies[&id].iter().any(|e| e.net.to_string() == "fd00:10:96::16/128"), "IPv6 endpoint allowed");
}
