//! Test helpers: build a snapshot from multi-document YAML and analyze it.
use crate::compiler::{compile, CompilerConfig};
use crate::model::Snapshot;

use super::{analyze, Finding, Report};

/// `test-egress`, enforced.
pub const ENFORCED_NS: &str =
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: test-egress, labels: {tollgate.dev/egress: enforce}}\n---\n";
/// An Istio egress Gateway in `istio-system` routing `edition.cnn.com`.
pub const GATEWAY: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: egw, namespace: istio-system}\nspec:\n  selector: {istio: egressgateway}\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [edition.cnn.com]}]\n---\n";
/// The pod that [`GATEWAY`] selects.
pub const GATEWAY_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: egw, namespace: istio-system, uid: u-gw, labels: {istio: egressgateway}}\nstatus: {phase: Running, podIP: 10.244.0.20}\n---\n";
/// `test-egress/sleep`, service account `sleep`.
pub const SLEEP_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: sleep, namespace: test-egress, uid: u-sleep, labels: {app: sleep}}\nspec: {serviceAccountName: sleep, containers: [{name: sleep}]}\nstatus: {phase: Running, podIP: 10.244.0.10}\n---\n";

/// Load `yaml` (documents separated by `---`) into a snapshot.
pub fn snapshot(yaml: &str) -> Snapshot {
    let mut snap = Snapshot::new();
    let mut diags = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = <serde_yaml::Value as serde::Deserialize>::deserialize(doc).expect("test yaml parses");
        snap.add_document("test.yaml", value, &mut diags);
    }
    assert!(diags.is_empty(), "test yaml loads cleanly: {diags:#?}");
    snap
}

/// Compile (all nodes) and analyze `yaml` with these cluster CIDRs.
pub fn run(yaml: &str, cidrs: &[&str]) -> Report {
    let snap = snapshot(yaml);
    let config = CompilerConfig {
        node_name: None,
        cluster_cidrs: cidrs.iter().map(|c| c.parse().expect("test cidr")).collect(),
        ..Default::default()
    };
    let policy = compile(&snap, &config);
    analyze(&snap, &policy, &config)
}

/// The findings with `code`.
pub fn with_code<'r>(report: &'r Report, code: &str) -> Vec<&'r Finding> {
    report.findings.iter().filter(|f| f.code == code).collect()
}

/// The one finding with `code` on `object`; panics (in tests) otherwise.
pub fn the<'r>(report: &'r Report, code: &str, object: &str) -> &'r Finding {
    let found: Vec<&Finding> = with_code(report, code).into_iter().filter(|f| f.object == object).collect();
    assert_eq!(found.len(), 1, "one {code} on {object} in {:#?}", report.findings);
    found[0]
}
