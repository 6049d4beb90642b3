//! Who may widen egress (the contract's trust rules): objects that open
//! destinations for pods of other namespaces count only when they come
//! from a trusted namespace — one named in
//! [`super::CompilerConfig::trusted_namespaces`], or one labelled
//! `tollgate.dev/trusted: "true"` (a label only cluster administrators can
//! set on a Namespace).
use std::collections::BTreeSet;

use crate::model::Snapshot;

use super::objects::{labels, name};

/// Namespace label that makes a namespace trusted.
pub const TRUSTED_LABEL: &str = "tollgate.dev/trusted";

/// The namespaces trusted by default (`--trusted-namespace` replaces them).
pub const DEFAULT_TRUSTED_NAMESPACES: [&str; 4] = ["istio-system", "kube-system", "osm-system", "tollgate-system"];

/// The trusted namespaces: `configured` plus the namespaces labelled
/// `tollgate.dev/trusted: "true"` (only that exact value counts).
pub fn trusted_namespaces(snapshot: &Snapshot, configured: &[String]) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = configured.iter().filter(|n| !n.is_empty()).cloned().collect();
    for ns in &snapshot.namespaces {
        if labels(&ns.metadata).get(TRUSTED_LABEL).is_some_and(|v| v == "true") {
            out.insert(name(&ns.metadata).to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Namespace;

    fn namespace(name: &str, trusted: Option<&str>) -> Namespace {
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.into());
        if let Some(v) = trusted {
            ns.metadata.labels = Some([(TRUSTED_LABEL.to_owned(), v.to_owned())].into());
        }
        ns
    }

    #[test]
    fn configured_and_labelled_namespaces_are_trusted() {
        let mut snap = Snapshot::new();
        snap.namespaces = vec![namespace("gw", Some("true")), namespace("tenant", Some("yes")), namespace("plain", None)];
        let trusted = trusted_namespaces(&snap, &["kube-system".to_owned(), String::new()]);
        assert_eq!(trusted, BTreeSet::from(["gw".to_owned(), "kube-system".to_owned()]));
    }
}
