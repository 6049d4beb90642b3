//! What enforced pods may reach outside the cluster, and the cluster
//! CIDRs that define "outside":
//! - `policy-allows-external` (warning): an egress NetworkPolicy in an
//!   enforced (or audited) namespace allows addresses outside the cluster
//!   CIDRs (an ipBlock such as `0.0.0.0/0`, or a rule without `to`): its
//!   pods reach the internet without the gateway;
//! - `no-cluster-cidr` (info): enforced pods rely on the cluster-internal
//!   rule but no cluster CIDR is configured.
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;

use crate::compiler::network_policy::is_egress;
use crate::compiler::objects::{labels, namespace, object_ref, pod_key};
use crate::compiler::selectors::label_selector_matches;
use crate::desired::Mode;
use crate::model::ObjectKind;

use super::codes::{NO_CLUSTER_CIDR, POLICY_ALLOWS_EXTERNAL};
use super::nets::{inside, is_covered};
use super::{Finding, FindingSeverity, Input};

/// Object and field of `no-cluster-cidr`, as the compiler's own warning
/// names them (which this finding replaces).
pub const CONFIG_OBJECT: &str = "agent configuration";
pub const CLUSTER_CIDR_FIELD: &str = "--cluster-cidr";

pub(crate) fn check(input: &Input<'_>, out: &mut Vec<Finding>) {
    allows_external(input, out);
    no_cluster_cidr(input, out);
}

fn allows_external(input: &Input<'_>, out: &mut Vec<Finding>) {
    let (inside, configured) = inside(input);
    let outside = if configured {
        "addresses outside the cluster CIDRs"
    } else {
        "public addresses (no cluster CIDR is configured, so only private ranges count as inside)"
    };
    for policy in input.snapshot.network_policies.iter().filter(|p| is_egress(p)) {
        let ns = namespace(&policy.metadata);
        if input.mode(ns) == Mode::Off {
            continue;
        }
        let object = object_ref(ObjectKind::NetworkPolicy, &policy.metadata).to_string();
        for (field, what) in external_peers(policy, &inside) {
            out.push(Finding::new(
                FindingSeverity::Warning,
                POLICY_ALLOWS_EXTERNAL,
                object.clone(),
                Some(&field),
                format!(
                    "{what} allows {outside}: the pods this policy selects in namespace {ns} can reach the internet without the egress gateway; limit it to in-cluster ranges and send external traffic through the gateway"
                ),
            ));
        }
    }
}

/// `(field, description)` of each part of `policy` that allows addresses
/// not covered by `inside`. Unparsable CIDRs are the compiler's to report.
fn external_peers(policy: &NetworkPolicy, inside: &[IpNet]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let rules = policy.spec.as_ref().and_then(|s| s.egress.as_deref()).unwrap_or_default();
    for (i, rule) in rules.iter().enumerate() {
        let peers = rule.to.as_deref().unwrap_or_default();
        if peers.is_empty() {
            found.push((format!("spec.egress[{i}]"), "a rule without `to`".to_owned()));
            continue;
        }
        for (j, peer) in peers.iter().enumerate() {
            let Some(block) = &peer.ip_block else { continue };
            let Ok(cidr) = block.cidr.trim().parse::<IpNet>() else { continue };
            let mut covers = inside.to_vec();
            covers.extend(block.except.iter().flatten().filter_map(|e| e.trim().parse::<IpNet>().ok()));
            if !is_covered(cidr, &covers) {
                found.push((format!("spec.egress[{i}].to[{j}].ipBlock"), format!("ipBlock {}", block.cidr.trim())));
            }
        }
    }
    found
}

/// Is `pod` selected by an egress NetworkPolicy of its namespace?
fn has_egress_policy(input: &Input<'_>, pod: &Pod) -> bool {
    let ns = namespace(&pod.metadata);
    input
        .snapshot
        .network_policies
        .iter()
        .filter(|p| is_egress(p) && namespace(&p.metadata) == ns)
        .any(|p| {
            let selector = p.spec.as_ref().and_then(|s| s.pod_selector.clone()).unwrap_or_default();
            label_selector_matches(&selector, labels(&pod.metadata)).unwrap_or(false)
        })
}

fn no_cluster_cidr(input: &Input<'_>, out: &mut Vec<Finding>) {
    if !input.config.cluster_cidrs.is_empty() {
        return;
    }
    let relying: Vec<&Pod> = input
        .running
        .iter()
        .copied()
        .filter(|p| input.mode(namespace(&p.metadata)) != Mode::Off)
        .filter(|p| !has_egress_policy(input, p))
        .collect();
    let Some(first) = relying.first() else { return };
    let (ns, name) = pod_key(first);
    let example = match relying.len() {
        1 => format!("{ns}/{name}"),
        n => format!("{n}, such as {ns}/{name}"),
    };
    out.push(Finding::new(
        FindingSeverity::Info,
        NO_CLUSTER_CIDR,
        CONFIG_OBJECT,
        Some(CLUSTER_CIDR_FIELD),
        format!(
            "enforced or audited pods without an egress NetworkPolicy ({example}) rely on the cluster-internal rule, but no cluster CIDR is configured, so they reach only gateways and cluster DNS; pass --cluster-cidr for the pod and Service ranges"
        ),
    ));
}

#[cfg(test)]
mod tests {
    use super::super::codes::*;
    use super::super::testutil::*;

    fn policy(egress: &str) -> String {
        format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: np, namespace: test-egress}}\nspec: {{podSelector: {{}}, policyTypes: [Egress], egress: {egress}}}\n---\n")
    }
    const CIDRS: [&str; 2] = ["10.244.0.0/16", "10.96.0.0/12"];

    #[test]
    fn ip_block_to_the_internet() {
        let base = format!("{ENFORCED_NS}{SLEEP_POD}{GATEWAY}{GATEWAY_POD}");
        let bad = format!("{base}{}", policy("[{to: [{podSelector: {}}, {ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}]}]"));
        let report = run(&bad, &CIDRS);
        let f = the(&report, POLICY_ALLOWS_EXTERNAL, "NetworkPolicy test-egress/np");
        assert_eq!(f.field.as_deref(), Some("spec.egress[0].to[1].ipBlock"));
        let fixed = format!("{base}{}", policy("[{to: [{ipBlock: {cidr: 10.96.0.0/12}}, {ipBlock: {cidr: 10.244.0.0/16}}]}]"));
        assert!(with_code(&run(&fixed, &CIDRS), POLICY_ALLOWS_EXTERNAL).is_empty());
        let wide_internal = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: all, namespace: x}\nspec: {hosts: [a.internal], location: MESH_INTERNAL, addresses: [0.0.0.0/0]}\n";
        assert!(!with_code(&run(&format!("{bad}{wide_internal}"), &CIDRS), POLICY_ALLOWS_EXTERNAL).is_empty(), "a wide MESH_INTERNAL address is not trusted");
        let unenforced = bad.replace("tollgate.dev/egress: enforce", "team: a");
        assert!(with_code(&run(&unenforced, &CIDRS), POLICY_ALLOWS_EXTERNAL).is_empty(), "not enforced");
    }

    #[test]
    fn rule_without_to_allows_everything() {
        let bad = format!("{ENFORCED_NS}{SLEEP_POD}{}", policy("[{ports: [{port: 443}]}]"));
        let report = run(&bad, &CIDRS);
        let f = the(&report, POLICY_ALLOWS_EXTERNAL, "NetworkPolicy test-egress/np");
        assert_eq!(f.field.as_deref(), Some("spec.egress[0]"));
        let fixed = format!("{ENFORCED_NS}{SLEEP_POD}{}", policy("[{ports: [{port: 443}], to: [{namespaceSelector: {}}]}]"));
        assert!(with_code(&run(&fixed, &CIDRS), POLICY_ALLOWS_EXTERNAL).is_empty());
    }

    #[test]
    fn without_cluster_cidrs_private_ranges_stand_in() {
        let private = format!("{ENFORCED_NS}{SLEEP_POD}{}", policy("[{to: [{ipBlock: {cidr: 192.168.0.0/24}}]}]"));
        assert!(with_code(&run(&private, &[]), POLICY_ALLOWS_EXTERNAL).is_empty());
        let public = private.replace("192.168.0.0/24", "8.8.8.8/32");
        assert!(!with_code(&run(&public, &[]), POLICY_ALLOWS_EXTERNAL).is_empty());
    }

    #[test]
    fn enforced_pods_without_cluster_cidr() {
        let yaml = format!("{ENFORCED_NS}{SLEEP_POD}{GATEWAY}{GATEWAY_POD}");
        let report = run(&yaml, &[]);
        let f = the(&report, NO_CLUSTER_CIDR, "agent configuration");
        assert_eq!(f.severity, super::FindingSeverity::Info);
        assert!(f.message.contains("test-egress/sleep"), "{}", f.message);
        assert!(with_code(&report, INVALID_OBJECT).is_empty(), "the compiler's warning is not repeated: {:#?}", report.findings);
        assert!(with_code(&run(&yaml, &CIDRS), NO_CLUSTER_CIDR).is_empty());
        let with_policy = format!("{yaml}{}", policy("[{to: [{podSelector: {}}]}]"));
        assert!(with_code(&run(&with_policy, &[]), NO_CLUSTER_CIDR).is_empty(), "a NetworkPolicy replaces the rule");
    }
}
