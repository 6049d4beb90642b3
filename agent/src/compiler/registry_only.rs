//! Istio `Sidecar` objects with `outboundTrafficPolicy.mode:
//! REGISTRY_ONLY`: the pod's own proxy refuses hosts that are not in the
//! registry. Tollgate enforces in the kernel whatever the proxy does; it
//! reports which Sidecar applies so that `status` and `verify` can say so.
use k8s_openapi::api::core::v1::Pod;

use crate::model::istio::{Sidecar, REGISTRY_ONLY, ROOT_NAMESPACE};
use crate::model::{ObjectKind, Snapshot};

use super::objects::{labels, namespace, object_ref};
use super::selectors::map_selects_some;

/// The `Sidecar` that configures `pod`, by Istio's precedence: one in the
/// pod's namespace whose `workloadSelector` matches it, else the
/// namespace's selector-less one, else the root namespace's selector-less
/// one (the first by name when several qualify).
pub fn sidecar_of<'a>(snapshot: &'a Snapshot, pod: &Pod) -> Option<&'a Sidecar> {
    let pod_ns = namespace(&pod.metadata);
    let mut candidates: Vec<&Sidecar> = snapshot.sidecars.iter().collect();
    candidates.sort_by_key(|s| (namespace(&s.metadata).to_owned(), s.metadata.name.clone()));
    let in_ns = |s: &&Sidecar, ns: &str| namespace(&s.metadata) == ns;
    let selector_of = |s: &Sidecar| s.spec.workload_selector.as_ref().map(|w| w.labels.clone());
    candidates
        .iter()
        .find(|s| {
            in_ns(s, pod_ns)
                && selector_of(s).is_some_and(|sel| !sel.is_empty() && map_selects_some(&sel, labels(&pod.metadata)))
        })
        .or_else(|| candidates.iter().find(|s| in_ns(s, pod_ns) && selector_of(s).is_none_or(|l| l.is_empty())))
        .or_else(|| {
            candidates
                .iter()
                .find(|s| in_ns(s, ROOT_NAMESPACE) && selector_of(s).is_none_or(|l| l.is_empty()))
        })
        .copied()
}

/// `Sidecar ns/name` when the Sidecar that configures `pod` sets
/// `REGISTRY_ONLY`.
pub fn registry_only(snapshot: &Snapshot, pod: &Pod) -> Option<String> {
    let sidecar = sidecar_of(snapshot, pod)?;
    let mode = sidecar.spec.outbound_traffic_policy.as_ref()?.mode.as_deref()?;
    (mode == REGISTRY_ONLY).then(|| object_ref(ObjectKind::Sidecar, &sidecar.metadata).to_string())
}
