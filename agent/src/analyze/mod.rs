//! `tollgate analyze`: configuration that enforcement cannot make safe on
//! its own, or that does not do what it seems to.
//!
//! [`analyze`] is pure: a [`Snapshot`], the [`Policy`] compiled from it
//! and the [`CompilerConfig`] in, a sorted [`Report`] out. It reads the
//! compiler's own conclusions (modes, gateway pods, ignored objects,
//! diagnostics) rather than deriving them again. The offline command
//! (`--manifests`) and the agent (which writes `analysis.json`) call it
//! the same way. One file per family of checks:
//!
//! - [`namespaces`]: checks `bad-namespace-label` and `audit-mode`;
//! - [`gateways`]: checks `gateway-clients-not-enforced`, `no-gateway` and
//!   `gateway-in-enforced-namespace`;
//! - [`osm`]: checks `osm-egress-passthrough` and `osm-egress-policy-disabled`;
//! - [`selects_nothing`]: checks `policy-selects-nothing`;
//! - [`external`]: checks `policy-allows-external` and `no-cluster-cidr`;
//! - [`mesh_internal`]: checks `wide-mesh-internal`;
//! - [`ignored`]: reports what the trust rules set aside as
//!   `ignored-untrusted` (and other objects that grant nothing as
//!   `ignored-object`);
//! - [`diagnostics`]: reports the compiler's diagnostics as `invalid-object`.
pub mod diagnostics;
pub mod external;
pub mod gateways;
pub mod ignored;
pub mod mesh_internal;
pub mod namespaces;
pub mod nets;
pub mod osm;
pub mod selects_nothing;

#[cfg(test)]
mod testutil;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use crate::compiler::objects::{is_finished, namespace, PodKey};
use crate::compiler::{CompilerConfig, Policy};
use crate::desired::Mode;
use crate::model::Snapshot;

/// The stable finding codes.
pub mod codes {
    pub const GATEWAY_CLIENTS_NOT_ENFORCED: &str = "gateway-clients-not-enforced";
    pub const BAD_NAMESPACE_LABEL: &str = "bad-namespace-label";
    pub const OSM_EGRESS_PASSTHROUGH: &str = "osm-egress-passthrough";
    pub const OSM_EGRESS_POLICY_DISABLED: &str = "osm-egress-policy-disabled";
    pub const POLICY_SELECTS_NOTHING: &str = "policy-selects-nothing";
    pub const POLICY_ALLOWS_EXTERNAL: &str = "policy-allows-external";
    pub const WIDE_MESH_INTERNAL: &str = "wide-mesh-internal";
    pub const NO_GATEWAY: &str = "no-gateway";
    pub const GATEWAY_IN_ENFORCED_NAMESPACE: &str = "gateway-in-enforced-namespace";
    pub const NO_CLUSTER_CIDR: &str = "no-cluster-cidr";
    pub const AUDIT_MODE: &str = "audit-mode";
    pub const INVALID_OBJECT: &str = "invalid-object";
    /// An object (or part) of a namespace that is not trusted, which the
    /// trust rules set aside.
    pub const IGNORED_UNTRUSTED: &str = "ignored-untrusted";
    /// Another object that grants nothing (a gateway pod without an
    /// address, a MeshConfig another one overrides, ...).
    pub const IGNORED_OBJECT: &str = "ignored-object";
}

/// How serious a finding is. Ordered most serious first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingSeverity {
    Error,
    Warning,
    Info,
}

impl FindingSeverity {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingSeverity::Error => "error",
            FindingSeverity::Warning => "warning",
            FindingSeverity::Info => "info",
        }
    }
}

/// One risky or ineffective piece of configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: FindingSeverity,
    /// Kebab-case and stable (see [`codes`]).
    pub code: String,
    /// e.g. `Gateway istio-system/istio-egressgateway` or `Namespace shop`.
    pub object: String,
    /// The field at fault, when there is one.
    #[serde(default)]
    pub field: Option<String>,
    /// For `ignored-*` findings: the compiler's rule that set the object
    /// aside (e.g. `untrusted-gateway-pod`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// One sentence: what is risky and what to do.
    pub message: String,
}

impl Finding {
    pub fn new(
        severity: FindingSeverity,
        code: &str,
        object: impl Into<String>,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity,
            code: code.to_owned(),
            object: object.into(),
            field: field.map(str::to_owned),
            rule: None,
            message: message.into(),
        }
    }

    fn sort_key(&self) -> (FindingSeverity, &str, &str, Option<&str>, &str) {
        (self.severity, &self.code, &self.object, self.field.as_deref(), &self.message)
    }
}

/// All findings, sorted by severity (errors first), code and object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    #[serde(default)]
    pub findings: Vec<Finding>,
}

impl Report {
    /// Number of findings of `severity`.
    pub fn count(&self, severity: FindingSeverity) -> usize {
        self.findings.iter().filter(|f| f.severity == severity).count()
    }

    /// Sort (severity, code, object, field, message) and drop duplicates.
    pub fn sort(&mut self) {
        self.findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        self.findings.dedup();
    }
}

/// What every check reads: the input, the compiled policy and a few
/// facts computed once.
pub(crate) struct Input<'a> {
    pub snapshot: &'a Snapshot,
    pub policy: &'a Policy,
    pub config: &'a CompilerConfig,
    /// Mode of each labelled namespace (unknown values enforce); the
    /// others are off.
    pub modes: &'a BTreeMap<String, Mode>,
    /// Pods that are not finished, in snapshot order.
    pub running: Vec<&'a Pod>,
    /// The same by namespace.
    running_by_namespace: BTreeMap<&'a str, Vec<&'a Pod>>,
    /// Gateway pods (trusted namespaces, Istio-selected or labelled), as
    /// the compiler found them.
    pub gateway_pods: &'a BTreeSet<PodKey>,
}

impl<'a> Input<'a> {
    fn new(snapshot: &'a Snapshot, policy: &'a Policy, config: &'a CompilerConfig) -> Self {
        let running: Vec<&'a Pod> = snapshot.pods.iter().filter(|p| !is_finished(p)).collect();
        let mut running_by_namespace: BTreeMap<&'a str, Vec<&'a Pod>> = BTreeMap::new();
        for pod in &running {
            running_by_namespace.entry(namespace(&pod.metadata)).or_default().push(pod);
        }
        Self { snapshot, policy, config, modes: &policy.modes, running, running_by_namespace, gateway_pods: &policy.gateway_pods }
    }

    /// The mode of `namespace` (off when unlabelled).
    pub fn mode(&self, namespace: &str) -> Mode {
        self.modes.get(namespace).copied().unwrap_or(Mode::Off)
    }

    /// Running pods of `ns`.
    pub fn running_in<'s>(&'s self, ns: &'s str) -> impl Iterator<Item = &'a Pod> + 's {
        self.running_by_namespace.get(ns).into_iter().flatten().copied()
    }

    /// Namespaces whose mode is `enforce` or `audit`, sorted.
    pub fn policed_namespaces(&self) -> Vec<&str> {
        self.modes.keys().map(String::as_str).collect()
    }
}

/// Analyze the configuration. Pure: no I/O. `policy` is
/// `compiler::compile(snapshot, config)`; its diagnostics are reported as
/// `invalid-object` findings, except those a more specific check already
/// reports for the same object and field, and its ignored objects as
/// `ignored-untrusted` or `ignored-object`.
pub fn analyze(snapshot: &Snapshot, policy: &Policy, config: &CompilerConfig) -> Report {
    let input = Input::new(snapshot, policy, config);
    let mut findings = Vec::new();
    namespaces::check(&input, &mut findings);
    gateways::check(&input, &mut findings);
    osm::check(&input, &mut findings);
    selects_nothing::check(&input, &mut findings);
    external::check(&input, &mut findings);
    mesh_internal::check(&input, &mut findings);
    ignored::check(&input, &mut findings);
    diagnostics::check(&input, &mut findings);
    let mut report = Report { findings };
    report.sort();
    report
}

/// `a, b and c` for messages.
pub(crate) fn join_names<S: AsRef<str>>(names: &[S]) -> String {
    match names {
        [] => String::new(),
        [one] => one.as_ref().to_owned(),
        [init @ .., last] => {
            let head: Vec<&str> = init.iter().map(AsRef::as_ref).collect();
            format!("{} and {}", head.join(", "), last.as_ref())
        }
    }
}

/// `namespace a` or `namespaces a, b and c` for messages.
pub(crate) fn namespace_list<S: AsRef<str>>(names: &[S]) -> String {
    match names.len() {
        1 => format!("namespace {}", join_names(names)),
        _ => format!("namespaces {}", join_names(names)),
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn findings_sort_by_severity_code_object() {
        let mut r = Report {
            findings: vec![
                Finding::new(FindingSeverity::Info, "b", "x", None, "m"),
                Finding::new(FindingSeverity::Warning, "b", "y", None, "m"),
                Finding::new(FindingSeverity::Warning, "a", "z", None, "m"),
                Finding::new(FindingSeverity::Error, "z", "a", None, "m"),
                Finding::new(FindingSeverity::Warning, "b", "a", None, "m"),
                Finding::new(FindingSeverity::Warning, "b", "a", None, "m"),
            ],
        };
        r.sort();
        let got: Vec<(&str, &str)> = r.findings.iter().map(|f| (f.code.as_str(), f.object.as_str())).collect();
        assert_eq!(got, [("z", "a"), ("a", "z"), ("b", "a"), ("b", "y"), ("b", "x")]);
    }

    #[test]
    fn report_json_shape_round_trips() {
        let r = Report {
            findings: vec![Finding::new(FindingSeverity::Warning, codes::NO_GATEWAY, "cluster", Some("f"), "m")],
        };
        let json = serde_json::to_value(&r).expect("serializes");
        assert_eq!(json["findings"][0]["severity"], "warning");
        assert_eq!(json["findings"][0]["code"], "no-gateway");
        assert_eq!(json["findings"][0]["field"], "f");
        let back: Report = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, r);
    }

    #[test]
    fn clean_configuration_has_no_findings() {
        let yaml = format!("{ENFORCED_NS}{GATEWAY}{GATEWAY_POD}{SLEEP_POD}");
        let report = run(&yaml, &["10.244.0.0/16"]);
        assert!(report.findings.is_empty(), "{:#?}", report.findings);
    }

    #[test]
    fn empty_and_odd_input_do_not_panic() {
        assert!(run("", &[]).findings.is_empty());
        let odd = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {selector: ~, servers: [1, {hosts: 3}]}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: n}\nspec: {policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: bad}}]}]}\n";
        let _ = run(odd, &[]);
    }

    #[test]
    fn join_names_reads_like_a_sentence() {
        assert_eq!(join_names::<&str>(&[]), "");
        assert_eq!(join_names(&["a"]), "a");
        assert_eq!(join_names(&["a", "b", "c"]), "a, b and c");
        assert_eq!(namespace_list(&["a"]), "namespace a");
        assert_eq!(namespace_list(&["a", "b"]), "namespaces a and b");
    }
}
