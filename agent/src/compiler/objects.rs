//! Small accessors over the Kubernetes objects, tolerant of missing fields.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::model::{ObjectKind, ObjectRef};

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// The labels of an object (empty when it has none).
pub fn labels(meta: &ObjectMeta) -> &BTreeMap<String, String> {
    meta.labels.as_ref().unwrap_or(&NO_LABELS)
}

pub fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

/// The namespace of a namespaced object (`default` when unset; the
/// snapshot already fills it in).
pub fn namespace(meta: &ObjectMeta) -> &str {
    meta.namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .unwrap_or("default")
}

pub fn object_ref(kind: ObjectKind, meta: &ObjectMeta) -> ObjectRef {
    let ns = kind.is_namespaced().then(|| namespace(meta));
    ObjectRef::new(kind, ns, name(meta))
}

pub fn pod_ref(pod: &Pod) -> ObjectRef {
    object_ref(ObjectKind::Pod, &pod.metadata)
}

/// A pod that has finished (`Succeeded` or `Failed`): it runs nothing and
/// its IP may already belong to another pod.
pub fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// `(namespace, name)` of a pod: how gateway pods are identified.
pub type PodKey = (String, String);

pub fn pod_key(pod: &Pod) -> PodKey {
    (
        namespace(&pod.metadata).to_owned(),
        name(&pod.metadata).to_owned(),
    )
}
