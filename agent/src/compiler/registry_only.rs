//! Istio `Sidecar` objects with `outboundTrafficPolicy.mode:
//! REGISTRY_ONLY`: the pod's own proxy refuses hosts that are not in the
//! registry. Tollgate enforces in the kernel whatever the proxy does; it
//! reports which Sidecar applies so that `status` and `verify` can say so.
use k8s_openapi::api::core::v1::Pod;

use crate::desired::Severity;
use crate::model::istio::{Sidecar, REGISTRY_ONLY, ROOT_NAMESPACE};
use crate::model::{ObjectKind, Snapshot};

use super::objects::{labels, namespace, object_ref};
use super::selectors::map_selects_some;
use super::Ctx;

/// Istio's default outbound mode.
pub const ALLOW_ANY: &str = "ALLOW_ANY";

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

/// Report Sidecars Istio would refuse or ignore: an unknown
/// `outboundTrafficPolicy.mode`, and more than one Sidecar without
/// `workloadSelector` in a namespace (Istio's choice is then undefined;
/// Tollgate uses the first by name).
pub(crate) fn check_sidecars(ctx: &mut Ctx<'_>) {
    let snapshot = ctx.snapshot;
    let mut sidecars: Vec<&Sidecar> = snapshot.sidecars.iter().collect();
    sidecars.sort_by_key(|s| (namespace(&s.metadata).to_owned(), s.metadata.name.clone()));
    let mut defaults: std::collections::BTreeMap<&str, String> = Default::default();
    for sidecar in sidecars {
        let object = object_ref(ObjectKind::Sidecar, &sidecar.metadata);
        let mode = sidecar.spec.outbound_traffic_policy.as_ref().and_then(|p| p.mode.as_deref());
        if let Some(mode) = mode.filter(|m| *m != REGISTRY_ONLY && *m != ALLOW_ANY) {
            ctx.report(
                Severity::Warning,
                &object,
                "spec.outboundTrafficPolicy.mode",
                format!("unknown mode {mode:?} (expected {REGISTRY_ONLY} or {ALLOW_ANY}); Istio refuses this Sidecar, Tollgate does not count it as {REGISTRY_ONLY}"),
            );
        }
        let selectorless = sidecar.spec.workload_selector.as_ref().is_none_or(|w| w.labels.is_empty());
        if selectorless {
            let ns = namespace(&sidecar.metadata);
            match defaults.get(ns) {
                Some(first) => ctx.report(
                    Severity::Warning,
                    &object,
                    "spec.workloadSelector",
                    format!("namespace {ns} has several Sidecars without workloadSelector (Istio's choice is undefined); Tollgate uses {first}"),
                ),
                None => {
                    defaults.insert(ns, object.to_string());
                }
            }
        }
    }
}
