//! What the compiler set aside, so that an operator sees why an object has
//! no effect:
//! - `ignored-untrusted` (warning): an object (or part of one) of a
//!   namespace that is not trusted tried to widen egress for others: a pod
//!   meant as a gateway, a `MESH_INTERNAL` ServiceEntry exported to other
//!   namespaces, an OSM `MeshConfig`, an `Egress` source of another
//!   namespace;
//! - `ignored-object` (info): an object that grants nothing for another
//!   reason: a gateway pod without an address yet, a trusted MeshConfig
//!   that another one overrides, a Service in front of gateways that also
//!   forwards elsewhere.
//!
//! Each finding carries the compiler's rule (`rule`).
use crate::compiler::ignored::is_trust_rule;

use super::codes::{IGNORED_OBJECT, IGNORED_UNTRUSTED};
use super::{Finding, FindingSeverity, Input};

pub(crate) fn check(input: &Input<'_>, out: &mut Vec<Finding>) {
    for ignored in &input.policy.ignored {
        let (severity, code) = if is_trust_rule(&ignored.rule) {
            (FindingSeverity::Warning, IGNORED_UNTRUSTED)
        } else {
            (FindingSeverity::Info, IGNORED_OBJECT)
        };
        let mut finding = Finding::new(severity, code, ignored.object.clone(), None, ignored.message.clone());
        finding.rule = Some(ignored.rule.clone());
        out.push(finding);
    }
}

#[cfg(test)]
mod tests {
    use super::super::codes::*;
    use super::super::testutil::*;
    use super::super::FindingSeverity;

    #[test]
    fn objects_of_untrusted_namespaces_are_reported_with_their_rule() {
        let fake_gw = "apiVersion: v1\nkind: Pod\nmetadata: {name: fake, namespace: tenant, uid: u-fake, labels: {tollgate.dev/egress-gateway: 'true'}}\nstatus: {phase: Running, podIP: 10.244.0.66}\n---\n";
        let report = run(&format!("{ENFORCED_NS}{SLEEP_POD}{GATEWAY}{GATEWAY_POD}{fake_gw}"), &["10.244.0.0/16"]);
        let f = the(&report, IGNORED_UNTRUSTED, "Pod tenant/fake");
        assert_eq!(f.severity, FindingSeverity::Warning);
        assert_eq!(f.rule.as_deref(), Some("untrusted-gateway-pod"));
        assert!(f.message.contains("not trusted"), "{}", f.message);
        let trusted_ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: tenant, labels: {tollgate.dev/trusted: 'true'}}\n---\n";
        let fixed = run(&format!("{ENFORCED_NS}{SLEEP_POD}{GATEWAY}{GATEWAY_POD}{fake_gw}{trusted_ns}"), &["10.244.0.0/16"]);
        assert!(with_code(&fixed, IGNORED_UNTRUSTED).is_empty(), "{:#?}", fixed.findings);
    }

    #[test]
    fn a_gateway_pod_without_an_address_is_an_info() {
        let pending = GATEWAY_POD.replace("status: {phase: Running, podIP: 10.244.0.20}", "status: {phase: Pending}");
        let report = run(&format!("{ENFORCED_NS}{SLEEP_POD}{GATEWAY}{pending}"), &["10.244.0.0/16"]);
        let f = the(&report, IGNORED_OBJECT, "Pod istio-system/egw");
        assert_eq!((f.severity, f.rule.as_deref()), (FindingSeverity::Info, Some("gateway-without-address")));
        the(&report, NO_GATEWAY, "cluster");
    }
}
