//! Open Service Mesh switches, as the compiler chose the `MeshConfig`
//! (`policy.explain.osm`):
//! - `osm-egress-passthrough` (warning): `spec.traffic.enableEgress: true`
//!   while namespaces are enforced or audited: the OSM sidecar would let
//!   their pods out directly, Tollgate drops that;
//! - `osm-egress-policy-disabled` (warning): `Egress` policies exist but
//!   `spec.featureFlags.enableEgressPolicy` is not true, so they grant
//!   nothing.
use crate::compiler::objects::object_ref;
use crate::model::osm::{DEFAULT_CONTROL_PLANE_NAMESPACE, MESH_CONFIG_NAME};
use crate::model::ObjectKind;

use super::codes::{OSM_EGRESS_PASSTHROUGH, OSM_EGRESS_POLICY_DISABLED};
use super::{namespace_list, Finding, FindingSeverity, Input};

pub(crate) fn check(input: &Input<'_>, out: &mut Vec<Finding>) {
    let osm = input.policy.explain.osm.as_ref();
    let policed = input.policed_namespaces();
    if let Some(mc) = osm.filter(|mc| mc.enable_egress && !policed.is_empty()) {
        out.push(Finding::new(
            FindingSeverity::Warning,
            OSM_EGRESS_PASSTHROUGH,
            format!("MeshConfig {}", mc.mesh_config),
            Some("spec.traffic.enableEgress"),
            format!(
                "OSM egress passthrough is on, so the OSM sidecar lets pods out directly, but Tollgate drops that traffic in {}; set enableEgress: false and grant external destinations with Egress policies (or route them through the gateway)",
                namespace_list(&policed)
            ),
        ));
    }
    if osm.is_some_and(|mc| mc.enable_egress_policy) {
        return;
    }
    let why = match osm {
        Some(mc) => format!("MeshConfig {} does not set spec.featureFlags.enableEgressPolicy: true", mc.mesh_config),
        None => format!("there is no OSM MeshConfig {MESH_CONFIG_NAME} in a trusted namespace (default {DEFAULT_CONTROL_PLANE_NAMESPACE})"),
    };
    for egress in &input.snapshot.egresses {
        out.push(Finding::new(
            FindingSeverity::Warning,
            OSM_EGRESS_POLICY_DISABLED,
            object_ref(ObjectKind::Egress, &egress.metadata).to_string(),
            Some("spec"),
            format!("{why}, so this Egress grants nothing and Tollgate drops what it names; enable egress policy in the MeshConfig or remove the Egress"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::codes::*;
    use super::super::testutil::*;

    fn mesh_config(enable_egress: bool, enable_policy: bool) -> String {
        format!("apiVersion: config.openservicemesh.io/v1alpha2\nkind: MeshConfig\nmetadata: {{name: osm-mesh-config, namespace: osm-system}}\nspec: {{traffic: {{enableEgress: {enable_egress}}}, featureFlags: {{enableEgressPolicy: {enable_policy}}}}}\n---\n")
    }
    const EGRESS: &str = "apiVersion: policy.openservicemesh.io/v1alpha1\nkind: Egress\nmetadata: {name: httpbin, namespace: test-egress}\nspec: {sources: [{kind: ServiceAccount, name: sleep, namespace: test-egress}], hosts: [httpbin.org], ports: [{number: 80, protocol: http}]}\n---\n";

    #[test]
    fn passthrough_with_enforced_namespaces() {
        let yaml = format!("{ENFORCED_NS}{}", mesh_config(true, true));
        let report = run(&yaml, &[]);
        let f = the(&report, OSM_EGRESS_PASSTHROUGH, "MeshConfig osm-system/osm-mesh-config");
        assert!(f.message.contains("test-egress"), "{}", f.message);
        assert!(with_code(&run(&format!("{ENFORCED_NS}{}", mesh_config(false, true)), &[]), OSM_EGRESS_PASSTHROUGH).is_empty());
        assert!(with_code(&run(&mesh_config(true, true), &[]), OSM_EGRESS_PASSTHROUGH).is_empty(), "nothing enforced");
    }

    #[test]
    fn egress_without_egress_policy() {
        let yaml = format!("{ENFORCED_NS}{SLEEP_POD}{EGRESS}{}", mesh_config(false, false));
        let report = run(&yaml, &[]);
        let f = the(&report, OSM_EGRESS_POLICY_DISABLED, "Egress test-egress/httpbin");
        assert!(f.message.contains("enableEgressPolicy"), "{}", f.message);
        assert!(
            report.findings.iter().all(|f| !(f.code == INVALID_OBJECT && f.field.as_deref() == Some("spec"))),
            "the compiler's warning is not repeated: {:#?}",
            report.findings
        );
        assert!(!with_code(&run(&format!("{ENFORCED_NS}{SLEEP_POD}{EGRESS}"), &[]), OSM_EGRESS_POLICY_DISABLED).is_empty(), "no MeshConfig");
        let fixed = format!("{ENFORCED_NS}{SLEEP_POD}{EGRESS}{}", mesh_config(false, true));
        assert!(with_code(&run(&fixed, &[]), OSM_EGRESS_POLICY_DISABLED).is_empty());
    }
}
