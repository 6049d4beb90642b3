//! The Istio and OSM kinds. Their CRDs may be missing when the agent
//! starts, be installed later, or be removed: a missing kind is not an
//! error. It counts as synced with no objects, and discovery is asked
//! again every [`REDISCOVER`] until the kind appears; a kind that stops
//! being served has its objects deleted from the store.
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::discovery;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use tracing::{debug, info};

use super::errors::status_code;
use super::tracker::{Decoded, Tracker};
use super::typed::{convert_event, on_error, send_all};
use crate::desired::{Diagnostic, Severity};
use crate::model::{istio, osm, Object, ObjectKind, ObjectRef};
use crate::source::{SourceEvent, SourceSender};

/// How often a kind that is not served is looked for again.
pub const REDISCOVER: Duration = Duration::from_secs(5);

/// A custom kind: its API group, kind name, the versions Tollgate reads
/// (most preferred first) and how to decode it.
#[derive(Clone, Copy)]
pub struct CrdKind {
    pub kind: ObjectKind,
    pub group: &'static str,
    pub name: &'static str,
    pub plural: &'static str,
    pub versions: &'static [&'static str],
    pub decode: fn(serde_json::Value) -> Result<Object, serde_path_to_error::Error<serde_json::Error>>,
}

fn typed<T: DeserializeOwned + Into<Object>>(v: serde_json::Value) -> Result<Object, serde_path_to_error::Error<serde_json::Error>> {
    serde_path_to_error::deserialize::<_, T>(v).map(Into::into)
}

/// The kinds of the contract.
pub const KINDS: [CrdKind; 5] = [
    CrdKind { kind: ObjectKind::Gateway, group: "networking.istio.io", name: "Gateway", plural: "gateways", versions: &["v1", "v1beta1", "v1alpha3"], decode: typed::<istio::Gateway> },
    CrdKind { kind: ObjectKind::ServiceEntry, group: "networking.istio.io", name: "ServiceEntry", plural: "serviceentries", versions: &["v1", "v1beta1", "v1alpha3"], decode: typed::<istio::ServiceEntry> },
    CrdKind { kind: ObjectKind::Sidecar, group: "networking.istio.io", name: "Sidecar", plural: "sidecars", versions: &["v1", "v1beta1", "v1alpha3"], decode: typed::<istio::Sidecar> },
    CrdKind { kind: ObjectKind::MeshConfig, group: "config.openservicemesh.io", name: "MeshConfig", plural: "meshconfigs", versions: &["v1alpha3", "v1alpha2", "v1alpha1"], decode: typed::<osm::MeshConfig> },
    CrdKind { kind: ObjectKind::Egress, group: "policy.openservicemesh.io", name: "Egress", plural: "egresses", versions: &["v1alpha1"], decode: typed::<osm::Egress> },
];

/// Decodes one object of a custom kind, or says which field is wrong.
pub fn decode(spec: &CrdKind, obj: DynamicObject) -> Decoded {
    let r = ObjectRef::new(spec.kind, obj.metadata.namespace.as_deref(), obj.metadata.name.as_deref().unwrap_or("(unnamed)"));
    let value = match serde_json::to_value(&obj) {
        Ok(v) => v,
        Err(e) => return rejected(r, "(object)".into(), e.to_string()),
    };
    match (spec.decode)(value) {
        Ok(mut object) => {
            let m = object.meta_mut();
            *m = super::strip::meta(std::mem::take(m));
            Decoded::Ok(object)
        }
        Err(e) => {
            let path = e.path().to_string();
            rejected(r, if path == "." { "(object)".into() } else { path }, e.inner().to_string())
        }
    }
}

fn rejected(r: ObjectRef, field: String, message: String) -> Decoded {
    let diag = Diagnostic {
        severity: Severity::Error,
        object: r.to_string(),
        field,
        message: format!("{message}; object ignored"),
        source: None,
    };
    Decoded::Rejected(r, diag)
}

/// The API resource of the first version of `spec` the cluster serves.
pub async fn find(client: &Client, spec: &CrdKind) -> Result<Option<ApiResource>, kube::Error> {
    let group = match discovery::group(client, spec.group).await {
        Ok(g) => g,
        Err(kube::Error::Discovery(_)) => return Ok(None),
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
        Err(e) => return Err(e),
    };
    for version in spec.versions {
        let found = group.versioned_resources(version).into_iter().find(|(ar, _)| ar.kind == spec.name);
        if let Some((ar, _)) = found {
            return Ok(Some(ar));
        }
    }
    Ok(None)
}

/// Watches one custom kind forever.
pub async fn run(client: Client, spec: CrdKind, tx: SourceSender) {
    let mut tracker = Tracker::new(spec.kind);
    loop {
        let resource = match find(&client, &spec).await {
            Ok(r) => r,
            Err(e) => {
                let message = format!("discovering {}.{}: {e}", spec.plural, spec.group);
                if !send_all(&tx, vec![SourceEvent::WatchError { kind: spec.kind, message }]) {
                    return;
                }
                tokio::time::sleep(REDISCOVER).await;
                continue;
            }
        };
        let Some(ar) = resource else {
            let mut out = tracker.forget_all(Instant::now());
            out.push(SourceEvent::Served { kind: spec.kind, served: false });
            if tracker.mark_synced() {
                debug!(kind = spec.name, group = spec.group, "not installed; looking again every {REDISCOVER:?}");
                out.push(SourceEvent::Synced { kind: spec.kind });
            }
            if !send_all(&tx, out) {
                return;
            }
            tokio::time::sleep(REDISCOVER).await;
            continue;
        };
        info!(kind = spec.name, version = %ar.api_version, "watching");
        if !send_all(&tx, vec![SourceEvent::Served { kind: spec.kind, served: true }]) {
            return;
        }
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            let received = Instant::now();
            let (events, gone) = match item {
                Ok(ev) => (tracker.on_event(convert_event(ev, |o| decode(&spec, o)), received), false),
                // The CRD (or this version of it) was removed: find it again.
                Err(e) if status_code(&e) == Some(404) => (Vec::new(), true),
                Err(e) => (on_error(&mut tracker, &e, spec.plural, spec.group), false),
            };
            if !send_all(&tx, events) {
                return;
            }
            if gone {
                info!(kind = spec.name, "no longer served");
                break;
            }
        }
    }
}

pub fn spawn_all(client: &Client, tx: &SourceSender) {
    for spec in KINDS {
        tokio::spawn(run(client.clone(), spec, tx.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_rejects_naming_the_field() {
        let spec = KINDS[4];
        let ok: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "policy.openservicemesh.io/v1alpha1", "kind": "Egress",
            "metadata": {"name": "e", "namespace": "n", "resourceVersion": "5", "managedFields": []},
            "spec": {"sources": [{"kind": "ServiceAccount", "name": "curl", "namespace": "n"}], "hosts": ["a.example"], "ports": [{"number": 443, "protocol": "https"}]}
        }))
        .expect("dynamic object");
        match decode(&spec, ok) {
            Decoded::Ok(o) => {
                assert_eq!(o.object_ref(), ObjectRef::new(ObjectKind::Egress, Some("n"), "e"));
                assert_eq!(o.meta().resource_version, None, "stripped");
            }
            Decoded::Rejected(_, d) => panic!("rejected: {d}"),
        }
        let bad: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "policy.openservicemesh.io/v1alpha1", "kind": "Egress",
            "metadata": {"name": "b", "namespace": "n"},
            "spec": {"ports": [{"number": "not-a-number"}]}
        }))
        .expect("dynamic object");
        match decode(&spec, bad) {
            Decoded::Rejected(r, d) => {
                assert_eq!(r, ObjectRef::new(ObjectKind::Egress, Some("n"), "b"));
                assert_eq!(d.field, "spec.ports[0].number");
                assert_eq!(d.object, "Egress n/b");
            }
            Decoded::Ok(_) => panic!("a bad port decoded"),
        }
    }
}
