//! The store of cluster objects: what the compiler reads. Sources deliver
//! typed apply/delete events ([`crate::source::SourceEvent`]) and the
//! runtime applies them here with [`Snapshot::apply`] and
//! [`Snapshot::delete`]; the compiler does not know which source they came
//! from.
use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{NetworkPolicy, ServiceCIDR};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::istio;
use super::object::{Object, ObjectKind, ObjectRef};
use super::osm;
use crate::desired::{Diagnostic, Severity};

/// All the cluster objects the compiler reads. Namespaced objects always
/// carry `metadata.namespace` (defaulted to `default`, as kubectl does) and
/// every object a name; an object replaces the one of the same kind,
/// namespace and name. The order of the vectors carries no meaning (a
/// delete moves the last object into the hole).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub namespaces: Vec<Namespace>,
    pub pods: Vec<Pod>,
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    pub gateways: Vec<istio::Gateway>,
    pub network_policies: Vec<NetworkPolicy>,
    pub service_entries: Vec<istio::ServiceEntry>,
    pub sidecars: Vec<istio::Sidecar>,
    pub mesh_configs: Vec<osm::MeshConfig>,
    pub egresses: Vec<osm::Egress>,
    pub nodes: Vec<Node>,
    pub service_cidrs: Vec<ServiceCIDR>,
    /// Where each object came from, when the source says (a file path for
    /// the files source).
    pub sources: BTreeMap<ObjectRef, String>,
    /// Position of each object in its kind's vector.
    index: HashMap<ObjectRef, usize>,
}

/// What [`Snapshot::apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Updated,
    /// The same object was there already: nothing to recompile.
    Unchanged,
}

/// Calls `$body` with `$v` bound to the vector of `$kind`.
macro_rules! with_vec {
    ($snap:expr, $kind:expr, $v:ident => $body:expr) => {
        match $kind {
            ObjectKind::Namespace => { let $v = &mut $snap.namespaces; $body }
            ObjectKind::Pod => { let $v = &mut $snap.pods; $body }
            ObjectKind::Service => { let $v = &mut $snap.services; $body }
            ObjectKind::EndpointSlice => { let $v = &mut $snap.endpoint_slices; $body }
            ObjectKind::Gateway => { let $v = &mut $snap.gateways; $body }
            ObjectKind::NetworkPolicy => { let $v = &mut $snap.network_policies; $body }
            ObjectKind::ServiceEntry => { let $v = &mut $snap.service_entries; $body }
            ObjectKind::Sidecar => { let $v = &mut $snap.sidecars; $body }
            ObjectKind::MeshConfig => { let $v = &mut $snap.mesh_configs; $body }
            ObjectKind::Egress => { let $v = &mut $snap.egresses; $body }
            ObjectKind::Node => { let $v = &mut $snap.nodes; $body }
            ObjectKind::ServiceCidr => { let $v = &mut $snap.service_cidrs; $body }
        }
    };
}

/// A typed object that lives in one of the snapshot's vectors.
trait Stored: Sized + PartialEq {
    fn metadata(&self) -> &ObjectMeta;
    /// Takes the value out of an [`Object`] of its own kind.
    fn take(object: Object) -> Option<Self>;
}

macro_rules! stored {
    ($($variant:ident: $ty:ty),*) => {$(
        impl Stored for $ty {
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn take(object: Object) -> Option<Self> {
                match object {
                    Object::$variant(o) => Some(*o),
                    _ => None,
                }
            }
        }
    )*};
}

super::object::for_each_kind!(stored);

/// The reference a stored object of `kind` is indexed under.
fn stored_ref(kind: ObjectKind, meta: &ObjectMeta) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: kind.is_namespaced().then(|| meta.namespace.clone().unwrap_or_default()),
        name: meta.name.clone().unwrap_or_default(),
    }
}

fn put<T: Stored>(items: &mut Vec<T>, existing: Option<usize>, object: Object) -> (usize, Change) {
    let Some(object) = T::take(object) else {
        // Unreachable: the caller dispatches on the object's own kind.
        return (existing.unwrap_or(0), Change::Unchanged);
    };
    match existing.and_then(|i| items.get_mut(i).map(|slot| (i, slot))) {
        Some((i, slot)) if *slot == object => (i, Change::Unchanged),
        Some((i, slot)) => {
            *slot = object;
            (i, Change::Updated)
        }
        None => {
            items.push(object);
            (items.len() - 1, Change::Added)
        }
    }
}

/// Removes `items[i]` by moving the last item into its place; returns the
/// reference of the moved item (its index changed), if any.
fn remove<T: Stored>(items: &mut Vec<T>, i: usize, kind: ObjectKind) -> Option<ObjectRef> {
    if i >= items.len() {
        return None;
    }
    items.swap_remove(i);
    items.get(i).map(|moved| stored_ref(kind, moved.metadata()))
}

impl Snapshot {
    pub fn new() -> Self {
        Self::default()
    }

    /// Where `object` came from, if known.
    pub fn source_of(&self, object: &ObjectRef) -> Option<&str> {
        self.sources.get(object).map(String::as_str)
    }

    /// Number of objects of every kind.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Number of objects of one kind.
    pub fn count(&self, kind: ObjectKind) -> usize {
        match kind {
            ObjectKind::Namespace => self.namespaces.len(),
            ObjectKind::Pod => self.pods.len(),
            ObjectKind::Service => self.services.len(),
            ObjectKind::EndpointSlice => self.endpoint_slices.len(),
            ObjectKind::Gateway => self.gateways.len(),
            ObjectKind::NetworkPolicy => self.network_policies.len(),
            ObjectKind::ServiceEntry => self.service_entries.len(),
            ObjectKind::Sidecar => self.sidecars.len(),
            ObjectKind::MeshConfig => self.mesh_configs.len(),
            ObjectKind::Egress => self.egresses.len(),
            ObjectKind::Node => self.nodes.len(),
            ObjectKind::ServiceCidr => self.service_cidrs.len(),
        }
    }

    pub fn contains(&self, object: &ObjectRef) -> bool {
        self.index.contains_key(object)
    }

    /// The metadata of a stored object.
    pub fn meta(&self, object: &ObjectRef) -> Option<&ObjectMeta> {
        let i = *self.index.get(object)?;
        match object.kind {
            ObjectKind::Namespace => self.namespaces.get(i).map(|o| &o.metadata),
            ObjectKind::Pod => self.pods.get(i).map(|o| &o.metadata),
            ObjectKind::Service => self.services.get(i).map(|o| &o.metadata),
            ObjectKind::EndpointSlice => self.endpoint_slices.get(i).map(|o| &o.metadata),
            ObjectKind::Gateway => self.gateways.get(i).map(|o| &o.metadata),
            ObjectKind::NetworkPolicy => self.network_policies.get(i).map(|o| &o.metadata),
            ObjectKind::ServiceEntry => self.service_entries.get(i).map(|o| &o.metadata),
            ObjectKind::Sidecar => self.sidecars.get(i).map(|o| &o.metadata),
            ObjectKind::MeshConfig => self.mesh_configs.get(i).map(|o| &o.metadata),
            ObjectKind::Egress => self.egresses.get(i).map(|o| &o.metadata),
            ObjectKind::Node => self.nodes.get(i).map(|o| &o.metadata),
            ObjectKind::ServiceCidr => self.service_cidrs.get(i).map(|o| &o.metadata),
        }
    }

    /// The references of every stored object.
    pub fn refs(&self) -> impl Iterator<Item = &ObjectRef> {
        self.index.keys()
    }

    /// Stores `object`, replacing the one with the same reference. Objects
    /// without a name are refused (`None`); namespaced objects without a
    /// namespace land in `default`. `source`, when given, is remembered
    /// for diagnostics.
    pub fn apply(&mut self, mut object: Object, source: Option<&str>) -> Option<Change> {
        let kind = object.kind();
        let meta = object.meta_mut();
        if kind.is_namespaced() && meta.namespace.as_deref().is_none_or(str::is_empty) {
            meta.namespace = Some("default".to_owned());
        }
        if meta.name.as_deref().is_none_or(str::is_empty) {
            return None;
        }
        let key = stored_ref(kind, meta);
        let existing = self.index.get(&key).copied();
        let (slot, change) = with_vec!(self, kind, v => put(v, existing, object));
        self.index.insert(key.clone(), slot);
        match source {
            Some(s) => {
                self.sources.insert(key, s.to_owned());
            }
            None => {
                self.sources.remove(&key);
            }
        }
        Some(change)
    }

    /// Removes the object; returns whether it was there.
    pub fn delete(&mut self, object: &ObjectRef) -> bool {
        let Some(i) = self.index.remove(object) else {
            return false;
        };
        self.sources.remove(object);
        let moved = with_vec!(self, object.kind, v => remove(v, i, object.kind));
        if let Some(moved) = moved {
            self.index.insert(moved, i);
        }
        true
    }

    /// Adds an object read from `source` (a file), as [`Snapshot::apply`],
    /// but reports what a folder of manifests gets wrong: an object
    /// without a name, and a second object with the same reference (the
    /// later one applies). Returns whether the object was added.
    pub fn insert(&mut self, object: Object, source: &str, diags: &mut Vec<Diagnostic>) -> bool {
        let key = object.object_ref();
        if object.meta().name.as_deref().is_none_or(str::is_empty) {
            diags.push(Diagnostic {
                severity: Severity::Error,
                object: key.to_string(),
                field: "metadata.name".to_owned(),
                message: format!("{} has no name; ignored", key.kind.as_str()),
                source: Some(source.to_owned()),
            });
            return false;
        }
        if let (true, Some(previous)) = (self.contains(&key), self.sources.get(&key)) {
            diags.push(Diagnostic {
                severity: Severity::Warning,
                object: key.to_string(),
                field: "metadata.name".to_owned(),
                message: format!("defined twice, in {previous} and in {source}; the later one ({source}) applies"),
                source: Some(source.to_owned()),
            });
        }
        self.apply(object, Some(source)).is_some()
    }

    /// A copy of every stored object with its reference and source.
    pub fn objects(&self) -> Vec<(ObjectRef, Object, Option<String>)> {
        let mut out = Vec::with_capacity(self.len());
        macro_rules! all {
            ($($field:ident),*) => {$(
                for o in &self.$field {
                    let object = Object::from(o.clone());
                    let r = object.object_ref();
                    let source = self.sources.get(&r).cloned();
                    out.push((r, object, source));
                }
            )*};
        }
        all!(namespaces, pods, services, endpoint_slices, gateways, network_policies, service_entries, sidecars, mesh_configs, egresses, nodes, service_cidrs);
        out
    }

    /// Decodes one YAML document into this snapshot; see
    /// [`crate::source::files::decode::add_document`].
    pub fn add_document(&mut self, source: &str, doc: serde_yaml::Value, diags: &mut Vec<Diagnostic>) {
        crate::source::files::decode::add_document(self, source, doc, diags);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, name: &str, label: &str) -> Object {
        let mut p = Pod::default();
        p.metadata.namespace = Some(ns.into());
        p.metadata.name = Some(name.into());
        p.metadata.labels = Some([("v".to_owned(), label.to_owned())].into());
        Object::from(p)
    }

    #[test]
    fn apply_replaces_and_reports_unchanged() {
        let mut s = Snapshot::new();
        assert_eq!(s.apply(pod("a", "p", "1"), None), Some(Change::Added));
        assert_eq!(s.apply(pod("a", "p", "1"), None), Some(Change::Unchanged));
        assert_eq!(s.apply(pod("a", "p", "2"), None), Some(Change::Updated));
        assert_eq!(s.pods.len(), 1);
        let mut unnamed = Pod::default();
        unnamed.metadata.namespace = Some("a".into());
        assert_eq!(s.apply(Object::from(unnamed), None), None);
    }

    #[test]
    fn delete_keeps_the_index_right() {
        let mut s = Snapshot::new();
        for n in ["p0", "p1", "p2", "p3"] {
            s.apply(pod("a", n, n), Some("f.yaml"));
        }
        assert!(s.delete(&ObjectRef::new(ObjectKind::Pod, Some("a"), "p1")));
        assert!(!s.delete(&ObjectRef::new(ObjectKind::Pod, Some("a"), "p1")));
        assert_eq!(s.pods.len(), 3);
        assert_eq!(s.len(), 3);
        // Every remaining pod is found at its index, and updates land on it.
        for n in ["p0", "p2", "p3"] {
            assert_eq!(s.apply(pod("a", n, "x"), None), Some(Change::Updated), "{n}");
        }
        assert_eq!(s.pods.len(), 3);
        let labels: Vec<_> = s.pods.iter().map(|p| p.metadata.labels.clone().unwrap_or_default()["v"].clone()).collect();
        assert_eq!(labels, ["x", "x", "x"]);
        assert!(s.delete(&ObjectRef::new(ObjectKind::Pod, Some("a"), "p3")));
        assert!(s.delete(&ObjectRef::new(ObjectKind::Pod, Some("a"), "p0")));
        assert!(s.delete(&ObjectRef::new(ObjectKind::Pod, Some("a"), "p2")));
        assert!(s.is_empty() && s.pods.is_empty() && s.sources.is_empty());
    }
}
