//! Decoding of Kubernetes YAML (or JSON) documents into typed objects, for
//! the files source (and for `verify --manifests` and `analyze
//! --manifests`, which read a folder the same way). Dispatches on
//! `apiVersion`/`kind`; `List` items are decoded one by one; kinds
//! Tollgate does not read are ignored; known kinds under an apiVersion
//! Tollgate does not read are reported. Every problem names the object and
//! the field path.
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{NetworkPolicy, ServiceCIDR};
use serde::de::DeserializeOwned;
use tracing::debug;

use crate::desired::{Diagnostic, Severity};
use crate::model::istio::{self, ISTIO_API_VERSIONS};
use crate::model::osm::{self, EGRESS_API_VERSION, MESH_CONFIG_API_VERSIONS};
use crate::model::{Object, ObjectKind, ObjectRef, Snapshot};

/// Decode one YAML (or JSON) document and add the object(s) it holds.
/// Dispatches on `apiVersion`/`kind`; `List` items are added one by one;
/// kinds Tollgate does not read are ignored. Problems are reported in
/// `diags`, naming the object and the field path.
pub fn add_document(
    snapshot: &mut Snapshot,
    source: &str,
    doc: serde_yaml::Value,
    diags: &mut Vec<Diagnostic>,
) {
    add_value(snapshot, source, "", doc, diags);
}

/// Where decoded objects go: a [`Snapshot`], or a list kept to be added
/// later ([`Decoded`]).
pub trait Sink {
    fn add(&mut self, object: Object, source: &str, diags: &mut Vec<Diagnostic>);
}

impl Sink for Snapshot {
    fn add(&mut self, object: Object, source: &str, diags: &mut Vec<Diagnostic>) {
        self.insert(object, source, diags);
    }
}

/// The objects of one file, in order, each with the number of the file's
/// diagnostics reported before it: [`Decoded::replay`] adds them to a
/// snapshot as [`add_document`] would have, in the same order.
#[derive(Clone, Debug, Default)]
pub struct Decoded {
    pub objects: Vec<(usize, Object)>,
}

impl Sink for Decoded {
    fn add(&mut self, object: Object, _source: &str, diags: &mut Vec<Diagnostic>) {
        self.objects.push((diags.len(), object));
    }
}

impl Decoded {
    /// Decode one document of `source` into this list (its problems into
    /// `diags`, the file's own diagnostics).
    pub fn add_document(&mut self, source: &str, doc: serde_yaml::Value, diags: &mut Vec<Diagnostic>) {
        add_value(self, source, "", doc, diags);
    }

    /// Add the objects to `snapshot`, with `file_diags` (the diagnostics
    /// reported while decoding them) interleaved into `diags` where they
    /// were reported.
    pub fn replay(&self, snapshot: &mut Snapshot, source: &str, file_diags: &[Diagnostic], diags: &mut Vec<Diagnostic>) {
        let mut done = 0;
        for (before, object) in &self.objects {
            let upto = (*before).min(file_diags.len());
            diags.extend(file_diags.get(done..upto).into_iter().flatten().cloned());
            done = done.max(upto);
            snapshot.insert(object.clone(), source, diags);
        }
        diags.extend(file_diags.get(done..).into_iter().flatten().cloned());
    }
}

fn add_value(
    snapshot: &mut impl Sink,
    source: &str,
    prefix: &str,
    doc: serde_yaml::Value,
    diags: &mut Vec<Diagnostic>,
) {
    if doc.is_null() {
        return;
    }
    if !doc.is_mapping() {
        diags.push(Diagnostic {
            severity: Severity::Error,
            object: "document".to_owned(),
            field: if prefix.is_empty() {
                "(document)".to_owned()
            } else {
                trim_path(prefix)
            },
            message: "expected a Kubernetes object (a mapping); ignored".to_owned(),
            source: Some(source.to_owned()),
        });
        return;
    }
    let api_version = doc
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_owned();
    let kind = doc
        .get("kind")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_owned();
    let decoded = match (api_version.as_str(), kind.as_str()) {
        (_, "List") | (_, "") if doc.get("items").is_some() => {
            add_list(snapshot, source, prefix, doc, diags);
            return;
        }
        (_, "") => {
            diags.push(Diagnostic {
                severity: Severity::Warning,
                object: "document".to_owned(),
                field: format!("{prefix}kind"),
                message: "document has no kind; ignored".to_owned(),
                source: Some(source.to_owned()),
            });
            return;
        }
        (api, kind) => decode_object(source, prefix, api, kind, doc, diags),
    };
    if let Some(object) = decoded {
        snapshot.add(object, source, diags);
    }
}

/// Decode one object of a kind Tollgate reads (`None` when it is not one,
/// or when it does not decode: reported). Kept out of [`add_value`], which
/// recurses into `List`s, so that each level of nesting costs little
/// stack whatever the size of the typed decoders.
#[inline(never)]
fn decode_object(
    source: &str,
    prefix: &str,
    api_version: &str,
    kind: &str,
    doc: serde_yaml::Value,
    diags: &mut Vec<Diagnostic>,
) -> Option<Object> {
    match (api_version, kind) {
        ("v1", "Namespace") => {
            decode::<Namespace>(source, prefix, ObjectKind::Namespace, doc, diags)
                .map(Object::from)
        }
        ("v1", "Pod") => {
            decode::<Pod>(source, prefix, ObjectKind::Pod, doc, diags).map(Object::from)
        }
        ("v1", "Service") => {
            decode::<Service>(source, prefix, ObjectKind::Service, doc, diags).map(Object::from)
        }
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            decode::<EndpointSlice>(source, prefix, ObjectKind::EndpointSlice, doc, diags)
                .map(Object::from)
        }
        ("networking.k8s.io/v1", "NetworkPolicy") => {
            decode::<NetworkPolicy>(source, prefix, ObjectKind::NetworkPolicy, doc, diags)
                .map(Object::from)
        }
        ("v1", "Node") => decode::<Node>(source, prefix, ObjectKind::Node, doc, diags).map(Object::from),
        ("networking.k8s.io/v1", "ServiceCIDR") => {
            decode::<ServiceCIDR>(source, prefix, ObjectKind::ServiceCidr, doc, diags)
                .map(Object::from)
        }
        (api, "Gateway") if ISTIO_API_VERSIONS.contains(&api) => {
            decode::<istio::Gateway>(source, prefix, ObjectKind::Gateway, doc, diags)
                .map(Object::from)
        }
        (api, "ServiceEntry") if ISTIO_API_VERSIONS.contains(&api) => {
            decode::<istio::ServiceEntry>(source, prefix, ObjectKind::ServiceEntry, doc, diags)
                .map(Object::from)
        }
        (api, "Sidecar") if ISTIO_API_VERSIONS.contains(&api) => {
            decode::<istio::Sidecar>(source, prefix, ObjectKind::Sidecar, doc, diags)
                .map(Object::from)
        }
        (api, "MeshConfig") if MESH_CONFIG_API_VERSIONS.contains(&api) => {
            decode::<osm::MeshConfig>(source, prefix, ObjectKind::MeshConfig, doc, diags)
                .map(Object::from)
        }
        (EGRESS_API_VERSION, "Egress") => {
            decode::<osm::Egress>(source, prefix, ObjectKind::Egress, doc, diags)
                .map(Object::from)
        }
        (api, kind) => {
            if let Some((kind, read)) = unread_version(api, kind) {
                diags.push(Diagnostic {
                    severity: Severity::Warning,
                    object: meta_ref(kind, &doc).to_string(),
                    field: format!("{prefix}apiVersion"),
                    message: if api.is_empty() {
                        format!("no apiVersion (Tollgate reads {} as {read}); ignored", kind.as_str())
                    } else {
                        format!(
                            "Tollgate does not read {} as {api:?} (only as {read}); ignored",
                            kind.as_str()
                        )
                    },
                    source: Some(source.to_owned()),
                });
                return None;
            }
            debug!(
                source,
                api_version = api,
                kind,
                "ignoring object of a kind tollgate does not read"
            );
            None
        }
    }
}

fn add_list(
    snapshot: &mut impl Sink,
    source: &str,
    prefix: &str,
    doc: serde_yaml::Value,
    diags: &mut Vec<Diagnostic>,
) {
    let serde_yaml::Value::Mapping(mut map) = doc else {
        return;
    };
    match map.remove("items") {
        Some(serde_yaml::Value::Sequence(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                add_value(snapshot, source, &format!("{prefix}items[{i}]."), item, diags);
            }
        }
        Some(serde_yaml::Value::Null) | None => {}
        Some(_) => diags.push(Diagnostic {
            severity: Severity::Error,
            object: "List".to_owned(),
            field: format!("{prefix}items"),
            message: "expected a sequence of objects; ignored".to_owned(),
            source: Some(source.to_owned()),
        }),
    }
}


/// The API groups (`""` for the core group) in which Kubernetes, Istio or
/// OSM define (or once defined) each kind Tollgate reads, and the
/// apiVersions Tollgate reads it as.
fn kind_groups(kind: &str) -> Option<(ObjectKind, &'static [&'static str], String)> {
    let istio = || ISTIO_API_VERSIONS.join(", ");
    Some(match kind {
        "Namespace" => (ObjectKind::Namespace, &[""], "v1".to_owned()),
        "Pod" => (ObjectKind::Pod, &[""], "v1".to_owned()),
        "Service" => (ObjectKind::Service, &[""], "v1".to_owned()),
        "EndpointSlice" => (ObjectKind::EndpointSlice, &["discovery.k8s.io"], "discovery.k8s.io/v1".to_owned()),
        "NetworkPolicy" => (
            ObjectKind::NetworkPolicy,
            &["networking.k8s.io", "extensions"],
            "networking.k8s.io/v1".to_owned(),
        ),
        "Gateway" => (ObjectKind::Gateway, &["networking.istio.io"], istio()),
        "ServiceEntry" => (ObjectKind::ServiceEntry, &["networking.istio.io"], istio()),
        "Sidecar" => (ObjectKind::Sidecar, &["networking.istio.io"], istio()),
        "MeshConfig" => (
            ObjectKind::MeshConfig,
            &["config.openservicemesh.io"],
            MESH_CONFIG_API_VERSIONS.join(", "),
        ),
        "Egress" => (ObjectKind::Egress, &["policy.openservicemesh.io"], EGRESS_API_VERSION.to_owned()),
        "Node" => (ObjectKind::Node, &[""], "v1".to_owned()),
        "ServiceCIDR" => (ObjectKind::ServiceCidr, &["networking.k8s.io"], "networking.k8s.io/v1".to_owned()),
        _ => return None,
    })
}

/// For a document that was not decoded: is it a kind Tollgate reads, under
/// an apiVersion of the same API group that Tollgate does not read (or
/// none)? Then the kind and the versions Tollgate reads. Kinds of the same
/// name in other groups (`gateway.networking.k8s.io` `Gateway`, Knative
/// `Service`) are other kinds and are not reported.
fn unread_version(api_version: &str, kind: &str) -> Option<(ObjectKind, String)> {
    let (object_kind, groups, read) = kind_groups(kind)?;
    let group = match api_version.rsplit_once('/') {
        Some((group, _)) => group,
        None => "",
    };
    (api_version.is_empty() || groups.contains(&group)).then_some((object_kind, read))
}

/// The reference of an undecoded document, for diagnostics.
fn meta_ref(kind: ObjectKind, doc: &serde_yaml::Value) -> ObjectRef {
    let text = |field: &str| {
        doc.get("metadata")
            .and_then(|m| m.get(field))
            .and_then(|n| n.as_str())
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
    };
    ObjectRef {
        kind,
        namespace: kind
            .is_namespaced()
            .then(|| text("namespace").unwrap_or_else(|| "default".to_owned())),
        name: text("name").unwrap_or_else(|| "(unnamed)".to_owned()),
    }
}

/// Decode `doc` as `T`, reporting a type error with the path of the field.
fn decode<T: DeserializeOwned>(
    source: &str,
    prefix: &str,
    kind: ObjectKind,
    doc: serde_yaml::Value,
    diags: &mut Vec<Diagnostic>,
) -> Option<T> {
    let object = meta_ref(kind, &doc);
    match serde_path_to_error::deserialize::<_, T>(doc) {
        Ok(object) => Some(object),
        Err(err) => {
            let path = err.path().to_string();
            let field = if path == "." {
                "(document)".to_owned()
            } else {
                path
            };
            diags.push(Diagnostic {
                severity: Severity::Error,
                object: object.to_string(),
                field: format!("{prefix}{field}"),
                message: format!("{}; object ignored", err.inner()),
                source: Some(source.to_owned()),
            });
            None
        }
    }
}

fn trim_path(prefix: &str) -> String {
    prefix.trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(snap: &mut Snapshot, source: &str, yaml: &str) -> Vec<Diagnostic> {
        let mut diags = Vec::new();
        let doc: serde_yaml::Value = serde_yaml::from_str(yaml).expect("test yaml parses");
        snap.add_document(source, doc, &mut diags);
        diags
    }

    #[test]
    fn dispatches_by_kind_and_defaults_namespace() {
        let mut snap = Snapshot::new();
        assert!(add(
            &mut snap,
            "a.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}"
        )
        .is_empty());
        assert!(add(
            &mut snap,
            "a.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}"
        )
        .is_empty());
        assert!(add(
            &mut snap,
            "a.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: x}"
        )
        .is_empty());
        assert!(add(&mut snap, "a.yaml", "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e, namespace: x}\naddressType: IPv4\nendpoints: []").is_empty());
        assert!(add(&mut snap, "a.yaml", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: n, namespace: x}").is_empty());
        for (i, api) in ISTIO_API_VERSIONS.iter().enumerate() {
            for kind in ["Gateway", "ServiceEntry", "Sidecar"] {
                let yaml = format!(
                    "apiVersion: {api}\nkind: {kind}\nmetadata: {{name: g-{i}, namespace: x}}"
                );
                assert!(add(&mut snap, "a.yaml", &yaml).is_empty());
            }
        }
        for (i, api) in MESH_CONFIG_API_VERSIONS.iter().enumerate() {
            let yaml = format!("apiVersion: {api}\nkind: MeshConfig\nmetadata: {{name: m-{i}, namespace: osm-system}}");
            assert!(add(&mut snap, "a.yaml", &yaml).is_empty());
        }
        let egress = format!("apiVersion: {EGRESS_API_VERSION}\nkind: Egress\nmetadata: {{name: e, namespace: x}}");
        assert!(add(&mut snap, "a.yaml", &egress).is_empty());
        let unread = add(&mut snap, "a.yaml", "apiVersion: policy.openservicemesh.io/v9\nkind: Egress\nmetadata: {name: e2}");
        assert_eq!(unread.len(), 1, "{unread:?}");
        assert_eq!((unread[0].object.as_str(), unread[0].field.as_str()), ("Egress default/e2", "apiVersion"));
        assert_eq!(unread[0].severity, Severity::Warning);
        assert!(add(
            &mut snap,
            "a.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}"
        )
        .is_empty());
        assert_eq!(snap.namespaces.len(), 1);
        assert_eq!(snap.pods.len(), 1);
        assert_eq!(snap.pods[0].metadata.namespace.as_deref(), Some("default"));
        assert_eq!(snap.services.len(), 1);
        assert_eq!(snap.endpoint_slices.len(), 1);
        assert_eq!(snap.network_policies.len(), 1);
        assert_eq!(snap.gateways.len(), 3);
        assert_eq!(snap.service_entries.len(), 3);
        assert_eq!(snap.sidecars.len(), 3);
        assert_eq!(snap.mesh_configs.len(), 3);
        assert_eq!(snap.egresses.len(), 1, "unknown Egress version ignored");
        assert_eq!(snap.len(), 18);
    }

    #[test]
    fn list_items_are_added_and_errors_name_the_item() {
        let mut snap = Snapshot::new();
        let diags = add(
            &mut snap,
            "l.yaml",
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: a, namespace: n}\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: b, namespace: n}\n  spec: {containers: [{name: 7}]}\n",
        );
        assert_eq!(snap.pods.len(), 1);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].object, "Pod n/b");
        assert_eq!(diags[0].field, "items[1].spec.containers[0].name");
        assert_eq!(diags[0].severity, Severity::Error);
    }

    #[test]
    fn type_error_names_the_field_path() {
        let mut snap = Snapshot::new();
        let diags = add(
            &mut snap,
            "p.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: sleep\n  namespace: test-egress\n  labels: {app: [x]}\n",
        );
        assert!(snap.pods.is_empty());
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].object, "Pod test-egress/sleep");
        assert_eq!(diags[0].field, "metadata.labels.app");
        assert_eq!(diags[0].source.as_deref(), Some("p.yaml"));
    }

    #[test]
    fn missing_name_is_reported() {
        let mut snap = Snapshot::new();
        let diags = add(
            &mut snap,
            "p.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {namespace: x}",
        );
        assert!(snap.pods.is_empty());
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].field, "metadata.name");
        assert_eq!(diags[0].object, "Pod x/(unnamed)");
    }

    #[test]
    fn duplicate_later_wins_with_warning_naming_both_sources() {
        let mut snap = Snapshot::new();
        assert!(add(
            &mut snap,
            "one.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {a: '1'}}"
        )
        .is_empty());
        let diags = add(
            &mut snap,
            "two.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {a: '2'}}",
        );
        assert_eq!(snap.namespaces.len(), 1);
        let labels = snap.namespaces[0]
            .metadata
            .labels
            .clone()
            .unwrap_or_default();
        assert_eq!(labels.get("a").map(String::as_str), Some("2"));
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].severity, Severity::Warning);
        assert!(diags[0].message.contains("one.yaml") && diags[0].message.contains("two.yaml"));
        let key = ObjectRef::new(ObjectKind::Namespace, None, "shop");
        assert_eq!(snap.source_of(&key), Some("two.yaml"));
    }

    #[test]
    fn known_kinds_under_unread_api_versions_warn() {
        let mut snap = Snapshot::new();
        let cases = [
            ("apiVersion: networking.k8s.io/v1beta1\nkind: NetworkPolicy\nmetadata: {name: np, namespace: shop}", "NetworkPolicy shop/np"),
            ("apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: old}", "NetworkPolicy default/old"),
            ("apiVersion: policy.openservicemesh.io/v1alpha2\nkind: Egress\nmetadata: {name: e, namespace: curl}", "Egress curl/e"),
            ("apiVersion: config.openservicemesh.io/v1\nkind: MeshConfig\nmetadata: {name: osm-mesh-config, namespace: osm-system}", "MeshConfig osm-system/osm-mesh-config"),
            ("apiVersion: networking.istio.io/v2\nkind: ServiceEntry\nmetadata: {name: se}", "ServiceEntry default/se"),
            ("apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata: {name: s, namespace: x}", "EndpointSlice x/s"),
            ("apiVersion: v2\nkind: Namespace\nmetadata: {name: shop}", "Namespace shop"),
            ("kind: Pod\nmetadata: {name: p, namespace: x}", "Pod x/p"),
            ("apiVersion: 1\nkind: Sidecar\nmetadata: {name: [x]}", "Sidecar default/(unnamed)"),
        ];
        for (yaml, object) in cases {
            let diags = add(&mut snap, "v.yaml", yaml);
            assert_eq!(diags.len(), 1, "{yaml}: {diags:?}");
            assert_eq!(diags[0].severity, Severity::Warning);
            assert_eq!(diags[0].object, object);
            assert_eq!(diags[0].field, "apiVersion");
            assert_eq!(diags[0].source.as_deref(), Some("v.yaml"));
        }
        let listed = add(&mut snap, "l.yaml", "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: networking.k8s.io/v1beta1, kind: NetworkPolicy, metadata: {name: a}}\n");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].field, "items[0].apiVersion");
        assert!(snap.is_empty());
        // Same kind names in other API groups are other kinds: not ours.
        for yaml in [
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}",
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: s}",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}",
        ] {
            assert!(add(&mut snap, "o.yaml", yaml).is_empty(), "{yaml}");
        }
        assert!(snap.is_empty());
    }

    #[test]
    fn documents_that_are_not_objects_are_reported() {
        let mut snap = Snapshot::new();
        for yaml in ["42", "just text", "[1, 2]", "- apiVersion: v1\n  kind: Pod\n  metadata: {name: p}"] {
            let diags = add(&mut snap, "x.yaml", yaml);
            assert_eq!(diags.len(), 1, "{yaml}: {diags:?}");
            assert_eq!(diags[0].severity, Severity::Error);
            assert_eq!((diags[0].object.as_str(), diags[0].field.as_str()), ("document", "(document)"));
        }
        assert!(add(&mut snap, "x.yaml", "~").is_empty(), "an empty document is fine");
        let bad_list = add(&mut snap, "x.yaml", "apiVersion: v1\nkind: List\nitems: {a: 1}");
        assert_eq!((bad_list[0].object.as_str(), bad_list[0].field.as_str()), ("List", "items"));
        let scalar_item = add(&mut snap, "x.yaml", "apiVersion: v1\nkind: List\nitems: [7]");
        assert_eq!(scalar_item[0].field, "items[0]");
        let no_kind = add(&mut snap, "x.yaml", "apiVersion: v1\nmetadata: {name: a}");
        assert_eq!((no_kind[0].field.as_str(), no_kind[0].severity), ("kind", Severity::Warning));
        assert!(snap.is_empty());
    }

    #[test]
    fn document_without_kind_warns() {
        let mut snap = Snapshot::new();
        let diags = add(&mut snap, "x.yaml", "metadata: {name: a}");
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].field, "kind");
        assert!(snap.is_empty());
    }
}
