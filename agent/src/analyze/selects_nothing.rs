//! `policy-selects-nothing` (warning): policies whose selector matches no
//! running pod, so they have no effect (often a typo in a label):
//! - an egress NetworkPolicy whose `spec.podSelector` selects no pod of
//!   its namespace;
//! - an OSM `Egress` whose `spec.sources` name no running pod's
//!   ServiceAccount;
//! - an Istio `Gateway` whose `spec.selector` selects no pod;
//! - an Istio `Sidecar` whose `spec.workloadSelector` selects no pod of
//!   its namespace.
use crate::compiler::network_policy::is_egress;
use crate::compiler::objects::{labels, namespace, object_ref};
use crate::compiler::osm_egress::service_account;
use crate::compiler::selectors::{map_selects_some, CheckedSelector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use crate::model::ObjectKind;

use super::codes::POLICY_SELECTS_NOTHING;
use super::{Finding, FindingSeverity, Input};

/// The selector of a policy without `spec.podSelector`: every pod.
static EVERY_POD: LabelSelector = LabelSelector { match_expressions: None, match_labels: None };

pub(crate) fn check(input: &Input<'_>, out: &mut Vec<Finding>) {
    network_policies(input, out);
    egresses(input, out);
    gateways(input, out);
    sidecars(input, out);
}

fn push(out: &mut Vec<Finding>, object: String, field: &str, message: String) {
    out.push(Finding::new(FindingSeverity::Warning, POLICY_SELECTS_NOTHING, object, Some(field), message));
}

fn network_policies(input: &Input<'_>, out: &mut Vec<Finding>) {
    for policy in input.snapshot.network_policies.iter().filter(|p| is_egress(p)) {
        let ns = namespace(&policy.metadata);
        let selector = policy.spec.as_ref().and_then(|s| s.pod_selector.as_ref()).unwrap_or(&EVERY_POD);
        // Checked once (the error does not depend on the pods), then
        // matched until a pod is selected.
        let mut running = input.running_in(ns).peekable();
        let (selected, invalid) = match CheckedSelector::new(selector) {
            // An invalid selector matters only when its namespace has pods.
            Err(err) => (false, running.peek().is_some().then_some(err)),
            Ok(selector) => (running.any(|pod| selector.matches(labels(&pod.metadata))), None),
        };
        let object = object_ref(ObjectKind::NetworkPolicy, &policy.metadata).to_string();
        let message = match invalid {
            Some(err) => format!("the pod selector is invalid ({err}), so this egress policy isolates every pod of namespace {ns} and allows them nothing; fix the selector"),
            None if selected => continue,
            None => format!("this egress policy selects no running pod in namespace {ns}, so it restricts nothing; check the labels of spec.podSelector"),
        };
        push(out, object, "spec.podSelector", message);
    }
}

fn egresses(input: &Input<'_>, out: &mut Vec<Finding>) {
    for egress in &input.snapshot.egresses {
        let egress_ns = namespace(&egress.metadata);
        let matched = egress.spec.sources.iter().any(|s| {
            let ns = s.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(egress_ns);
            s.kind == "ServiceAccount" && input.running_in(ns).any(|p| service_account(p) == s.name)
        });
        if !matched {
            push(
                out,
                object_ref(ObjectKind::Egress, &egress.metadata).to_string(),
                "spec.sources",
                "no running pod uses a ServiceAccount this Egress names, so it grants nothing; check the source names and namespaces".to_owned(),
            );
        }
    }
}

fn gateways(input: &Input<'_>, out: &mut Vec<Finding>) {
    for gw in &input.snapshot.gateways {
        let selector = &gw.spec.selector;
        if input.running.iter().any(|p| map_selects_some(selector, labels(&p.metadata))) {
            continue;
        }
        let message = if selector.is_empty() {
            "the selector is empty, so this Gateway selects no pod and enforced pods have no gateway from it; set spec.selector to the labels of the egress gateway pods"
        } else {
            "no running pod has these labels, so this Gateway has no gateway pod and enforced pods cannot reach external hosts through it; check spec.selector against the egress gateway pods"
        };
        push(out, object_ref(ObjectKind::Gateway, &gw.metadata).to_string(), "spec.selector", message.to_owned());
    }
}

fn sidecars(input: &Input<'_>, out: &mut Vec<Finding>) {
    for sidecar in &input.snapshot.sidecars {
        let Some(selector) = sidecar.spec.workload_selector.as_ref().map(|w| &w.labels).filter(|l| !l.is_empty())
        else {
            continue;
        };
        let ns = namespace(&sidecar.metadata);
        if input.running_in(ns).any(|p| map_selects_some(selector, labels(&p.metadata))) {
            continue;
        }
        push(
            out,
            object_ref(ObjectKind::Sidecar, &sidecar.metadata).to_string(),
            "spec.workloadSelector.labels",
            format!("no running pod in namespace {ns} has these labels, so this Sidecar configures no proxy; check the workload selector"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::codes::*;
    use super::super::testutil::*;

    fn policy(selector: &str) -> String {
        format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: np, namespace: test-egress}}\nspec: {{podSelector: {selector}, policyTypes: [Egress], egress: [{{to: [{{podSelector: {{}}}}]}}]}}\n---\n")
    }

    #[test]
    fn network_policy_selecting_nothing() {
        let bad = format!("{ENFORCED_NS}{SLEEP_POD}{}", policy("{matchLabels: {app: sleeep}}"));
        the(&run(&bad, &[]), POLICY_SELECTS_NOTHING, "NetworkPolicy test-egress/np");
        let good = format!("{ENFORCED_NS}{SLEEP_POD}{}", policy("{matchLabels: {app: sleep}}"));
        assert!(with_code(&run(&good, &[]), POLICY_SELECTS_NOTHING).is_empty());
        let invalid = format!("{ENFORCED_NS}{SLEEP_POD}{}", policy("{matchExpressions: [{key: app, operator: Is}]}"));
        let report = run(&invalid, &[]);
        assert!(the(&report, POLICY_SELECTS_NOTHING, "NetworkPolicy test-egress/np").message.contains("invalid"));
    }

    #[test]
    fn egress_gateway_and_sidecar_selecting_nothing() {
        let egress = |sa: &str| format!("apiVersion: policy.openservicemesh.io/v1alpha1\nkind: Egress\nmetadata: {{name: e, namespace: test-egress}}\nspec: {{sources: [{{kind: ServiceAccount, name: {sa}, namespace: test-egress}}], ipAddresses: [203.0.113.0/24], ports: [{{number: 443, protocol: https}}]}}\n---\n");
        let sidecar = |app: &str| format!("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: sc, namespace: test-egress}}\nspec: {{workloadSelector: {{labels: {{app: {app}}}}}, outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}}}\n---\n");
        let bad_gw = GATEWAY.replace("istio: egressgateway}", "istio: egress}");
        let bad = format!("{ENFORCED_NS}{SLEEP_POD}{GATEWAY_POD}{bad_gw}{}{}", egress("curl"), sidecar("web"));
        let report = run(&bad, &[]);
        the(&report, POLICY_SELECTS_NOTHING, "Egress test-egress/e");
        the(&report, POLICY_SELECTS_NOTHING, "Gateway istio-system/egw");
        the(&report, POLICY_SELECTS_NOTHING, "Sidecar test-egress/sc");
        let good = format!("{ENFORCED_NS}{SLEEP_POD}{GATEWAY_POD}{GATEWAY}{}{}", egress("sleep"), sidecar("sleep"));
        assert!(with_code(&run(&good, &[]), POLICY_SELECTS_NOTHING).is_empty());
    }
}
