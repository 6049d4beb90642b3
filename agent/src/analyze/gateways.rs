//! Egress gateways and who is forced through them:
//! - `gateway-clients-not-enforced` (warning): an Istio egress gateway (or
//!   external ServiceEntry hosts) exists, but namespaces with running pods
//!   are not labelled: Istio alone cannot force those pods through the
//!   gateway (kube-system, istio-system, tollgate-system, the gateways' own
//!   namespaces and those of gateway pods are left out);
//! - `no-gateway` (warning): namespaces are enforced but no gateway pod
//!   runs, so their pods reach nothing outside the cluster;
//! - `gateway-in-enforced-namespace` (warning): a gateway pod runs in an
//!   enforced or audited (trusted) namespace. It is enforced like any
//!   other pod there, so its own traffic to external hosts is dropped
//!   unless a NetworkPolicy allows it; gateways belong in a namespace of
//!   their own that is not enforced.
use std::collections::BTreeSet;

use crate::compiler::gateways::{why_gateway, GATEWAY_LABEL};
use crate::compiler::mode::EGRESS_LABEL;
use crate::compiler::objects::{labels, namespace, object_ref};
use crate::compiler::selectors::map_selects_some;
use crate::desired::Mode;
use crate::model::istio::{Gateway, ROOT_NAMESPACE};
use crate::model::ObjectKind;

use super::codes::{GATEWAY_CLIENTS_NOT_ENFORCED, GATEWAY_IN_ENFORCED_NAMESPACE, NO_GATEWAY};
use super::{namespace_list, Finding, FindingSeverity, Input};

/// Namespaces of the platform itself (Kubernetes, Istio, Tollgate's own
/// agent), never expected to be labelled.
const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", ROOT_NAMESPACE, "tollgate-system"];

/// Object named by `no-gateway`, which is about the cluster as a whole.
pub const CLUSTER_OBJECT: &str = "cluster";

pub(crate) fn check(input: &Input<'_>, out: &mut Vec<Finding>) {
    clients_not_enforced(input, out);
    no_gateway(input, out);
    gateways_in_enforced_namespaces(input, out);
}

fn gateways_in_enforced_namespaces(input: &Input<'_>, out: &mut Vec<Finding>) {
    for (ns, pod) in input.gateway_pods {
        let mode = input.mode(ns);
        if mode == Mode::Off {
            continue;
        }
        let Some(pod_obj) = input
            .running
            .iter()
            .find(|p| namespace(&p.metadata) == ns && p.metadata.name.as_deref() == Some(pod.as_str()))
        else {
            continue;
        };
        let how = why_gateway(input.snapshot, pod_obj);
        out.push(Finding::new(
            FindingSeverity::Warning,
            GATEWAY_IN_ENFORCED_NAMESPACE,
            format!("Pod {ns}/{pod}"),
            None,
            format!(
                "{how} in namespace {ns}, which is {} by {EGRESS_LABEL}: a gateway pod there is enforced like any other pod, so its own traffic to external hosts is {} unless a NetworkPolicy allows it; run gateways in a namespace of their own that is not enforced",
                if mode == Mode::Audit { "audited" } else { "enforced" },
                if mode == Mode::Audit { "reported" } else { "dropped" }
            ),
        ));
    }
}

/// Does `gw` select a running pod?
fn selects_running(input: &Input<'_>, gw: &Gateway) -> bool {
    input.running.iter().any(|p| map_selects_some(&gw.spec.selector, labels(&p.metadata)))
}

/// The hosts the servers of `gw` route.
fn routed_hosts(gw: &Gateway) -> Vec<&str> {
    gw.spec
        .servers
        .iter()
        .filter_map(|s| s.get("hosts").and_then(|h| h.as_array()))
        .flatten()
        .filter_map(|h| h.as_str())
        .filter(|h| !h.trim().is_empty())
        .collect()
}

fn clients_not_enforced(input: &Input<'_>, out: &mut Vec<Finding>) {
    let snapshot = input.snapshot;
    let mut gateways: Vec<&Gateway> = snapshot
        .gateways
        .iter()
        .filter(|gw| selects_running(input, gw) || !routed_hosts(gw).is_empty())
        .collect();
    gateways.sort_by_key(|gw| object_ref(ObjectKind::Gateway, &gw.metadata));
    let mut external: Vec<_> = snapshot
        .service_entries
        .iter()
        .filter(|se| !se.spec.is_mesh_internal() && se.spec.hosts.iter().any(|h| !h.trim().is_empty()))
        .map(|se| object_ref(ObjectKind::ServiceEntry, &se.metadata))
        .collect();
    external.sort();
    let (object, what) = match (gateways.first(), external.first()) {
        (Some(gw), _) => (
            object_ref(ObjectKind::Gateway, &gw.metadata).to_string(),
            "this egress gateway",
        ),
        (None, Some(se)) => (se.to_string(), "an egress gateway to this ServiceEntry's external hosts"),
        (None, None) => return,
    };
    let mut excluded: BTreeSet<&str> = SYSTEM_NAMESPACES.into_iter().collect();
    excluded.extend(gateways.iter().map(|gw| namespace(&gw.metadata)));
    excluded.extend(input.gateway_pods.iter().map(|(ns, _)| ns.as_str()));
    let unlabelled: BTreeSet<&str> = input
        .running
        .iter()
        .map(|p| namespace(&p.metadata))
        .filter(|ns| !excluded.contains(ns) && input.mode(ns) == Mode::Off)
        .collect();
    if unlabelled.is_empty() {
        return;
    }
    let names: Vec<&str> = unlabelled.into_iter().collect();
    out.push(Finding::new(
        FindingSeverity::Warning,
        GATEWAY_CLIENTS_NOT_ENFORCED,
        object,
        None,
        format!(
            "Istio cannot force pods through {what}: pods in {} (no {EGRESS_LABEL} label) can reach the internet directly; label {} {EGRESS_LABEL}=enforce (or audit first)",
            namespace_list(&names),
            if names.len() == 1 { "it" } else { "them" }
        ),
    ));
}

fn no_gateway(input: &Input<'_>, out: &mut Vec<Finding>) {
    let policed = input.policed_namespaces();
    if policed.is_empty() || !input.policy.gateway_pods_with_address.is_empty() {
        return;
    }
    out.push(Finding::new(
        FindingSeverity::Warning,
        NO_GATEWAY,
        CLUSTER_OBJECT,
        None,
        format!(
            "pods in {} are enforced or audited but no egress gateway pod runs with an address (none in a trusted namespace is selected by an Istio Gateway or labelled {GATEWAY_LABEL}=true), so they can reach nothing outside the cluster; deploy an egress gateway in a trusted namespace",
            namespace_list(&policed)
        ),
    ));
}

#[cfg(test)]
mod tests {
    use super::super::codes::*;
    use super::super::testutil::*;

    const DEFAULT_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, uid: u-web}\nstatus: {phase: Running}\n---\n";
    const KUBE_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: dns, namespace: kube-system, uid: u-dns}\nstatus: {phase: Running}\n---\n";
    const SHOP_ENFORCED: &str =
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {tollgate.dev/egress: enforce}}\n---\n";
    const EXTERNAL_SE: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: cnn, namespace: default}\nspec: {hosts: [edition.cnn.com], location: MESH_EXTERNAL}\n---\n";

    #[test]
    fn unlabelled_namespaces_beside_a_gateway_are_named() {
        let yaml = format!("{GATEWAY}{GATEWAY_POD}{DEFAULT_POD}{KUBE_POD}{ENFORCED_NS}{SLEEP_POD}");
        let report = run(&yaml, &["10.244.0.0/16"]);
        let f = the(&report, GATEWAY_CLIENTS_NOT_ENFORCED, "Gateway istio-system/egw");
        assert!(f.message.contains("shop"), "{}", f.message);
        assert!(!f.message.contains("kube-system") && !f.message.contains("test-egress"), "{}", f.message);
        let fixed = format!("{yaml}{SHOP_ENFORCED}");
        assert!(with_code(&run(&fixed, &["10.244.0.0/16"]), GATEWAY_CLIENTS_NOT_ENFORCED).is_empty());
    }

    #[test]
    fn external_service_entries_alone_trigger() {
        let yaml = format!("{EXTERNAL_SE}{DEFAULT_POD}");
        let report = run(&yaml, &[]);
        the(&report, GATEWAY_CLIENTS_NOT_ENFORCED, "ServiceEntry default/cnn");
        let internal = EXTERNAL_SE.replace("MESH_EXTERNAL", "MESH_INTERNAL");
        assert!(with_code(&run(&format!("{internal}{DEFAULT_POD}"), &[]), GATEWAY_CLIENTS_NOT_ENFORCED).is_empty());
        assert!(with_code(&run(DEFAULT_POD, &[]), GATEWAY_CLIENTS_NOT_ENFORCED).is_empty(), "no mesh, no finding");
    }

    #[test]
    fn gateway_pods_in_enforced_namespaces_are_flagged() {
        let squid = "apiVersion: v1\nkind: Pod\nmetadata: {name: squid, namespace: shop, uid: u-esc, labels: {tollgate.dev/egress-gateway: 'true'}}\nstatus: {phase: Running}\n---\n";
        let trusted_shop = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {tollgate.dev/egress: enforce, tollgate.dev/trusted: 'true'}}\n---\n";
        let report = run(&format!("{trusted_shop}{squid}{GATEWAY}{GATEWAY_POD}"), &["10.244.0.0/16"]);
        let f = the(&report, GATEWAY_IN_ENFORCED_NAMESPACE, "Pod shop/squid");
        assert!(f.message.contains("tollgate.dev/egress-gateway=true") && f.message.contains("enforced like any other pod"), "{}", f.message);
        assert_eq!(with_code(&report, GATEWAY_IN_ENFORCED_NAMESPACE).len(), 1, "istio-system is not enforced");
        let untrusted = run(&format!("{SHOP_ENFORCED}{squid}{GATEWAY}{GATEWAY_POD}"), &["10.244.0.0/16"]);
        assert!(with_code(&untrusted, GATEWAY_IN_ENFORCED_NAMESPACE).is_empty(), "not a gateway at all: {:#?}", untrusted.findings);
        the(&untrusted, IGNORED_UNTRUSTED, "Pod shop/squid");
    }

    #[test]
    fn enforced_namespace_without_gateway() {
        let yaml = format!("{ENFORCED_NS}{SLEEP_POD}");
        let report = run(&yaml, &["10.244.0.0/16"]);
        let f = the(&report, NO_GATEWAY, "cluster");
        assert!(f.message.contains("test-egress"), "{}", f.message);
        let fixed = format!("{yaml}{GATEWAY}{GATEWAY_POD}");
        assert!(with_code(&run(&fixed, &["10.244.0.0/16"]), NO_GATEWAY).is_empty());
        let labelled = "apiVersion: v1\nkind: Pod\nmetadata: {name: squid, namespace: proxy, uid: u-sq, labels: {tollgate.dev/egress-gateway: 'true'}}\nstatus: {phase: Running, podIP: 10.244.0.40}\n---\n";
        let proxy_trusted = "apiVersion: v1\nkind: Namespace\nmetadata: {name: proxy, labels: {tollgate.dev/trusted: 'true'}}\n";
        assert!(with_code(&run(&format!("{yaml}{labelled}{proxy_trusted}"), &["10.244.0.0/16"]), NO_GATEWAY).is_empty());
        assert!(!with_code(&run(&format!("{yaml}{labelled}"), &["10.244.0.0/16"]), NO_GATEWAY).is_empty(), "untrusted namespace: no gateway");
    }
}
