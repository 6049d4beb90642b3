//! Kubernetes Events for objects Tollgate rejects (a bad CIDR, a bad label
//! value, a field it cannot read), so that `kubectl describe` shows why an
//! object has no effect.
//!
//! Rate-limited twice: the same object and field at most once per
//! [`PER_OBJECT`], and at most [`BURST`] Events in a row, refilled at
//! [`PER_SECOND`] a second, so a flood of bad objects cannot flood the
//! API server. Publishing happens on a task of its own; the loop never
//! waits for the API server.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::events::{Event, EventType, Recorder as KubeRecorder, Reporter};
use kube::Client;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::model::{ObjectKind, ObjectRef};

/// The same object and field are reported at most this often.
pub const PER_OBJECT: Duration = Duration::from_secs(600);
pub const BURST: f64 = 20.0;
pub const PER_SECOND: f64 = 2.0;

/// The apiVersion an Event names for a kind.
pub fn api_version(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Namespace | ObjectKind::Pod | ObjectKind::Service | ObjectKind::Node => "v1",
        ObjectKind::EndpointSlice => "discovery.k8s.io/v1",
        ObjectKind::NetworkPolicy | ObjectKind::ServiceCidr => "networking.k8s.io/v1",
        ObjectKind::Gateway | ObjectKind::ServiceEntry | ObjectKind::Sidecar => "networking.istio.io/v1",
        ObjectKind::MeshConfig => "config.openservicemesh.io/v1alpha2",
        ObjectKind::Egress => "policy.openservicemesh.io/v1alpha1",
    }
}

struct Rejection {
    reference: ObjectReference,
    key: (ObjectRef, String),
    note: String,
}

/// Decides which rejections become Events.
#[derive(Debug)]
pub struct Limiter {
    last: HashMap<(ObjectRef, String), Instant>,
    tokens: f64,
    refilled: Instant,
}

impl Limiter {
    pub fn new(now: Instant) -> Self {
        Self { last: HashMap::new(), tokens: BURST, refilled: now }
    }

    pub fn allow(&mut self, key: &(ObjectRef, String), now: Instant) -> bool {
        if self.last.get(key).is_some_and(|t| now.duration_since(*t) < PER_OBJECT) {
            return false;
        }
        self.tokens = (self.tokens + now.duration_since(self.refilled).as_secs_f64() * PER_SECOND).min(BURST);
        self.refilled = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        self.last.retain(|_, t| now.duration_since(*t) < PER_OBJECT);
        self.last.insert(key.clone(), now);
        true
    }
}

/// Handle the loop reports rejections to.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Rejection>,
}

impl Recorder {
    pub fn spawn(client: Client, node: &str) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Rejection>();
        let reporter = Reporter { controller: "tollgate-agent".into(), instance: Some(node.to_owned()) };
        let recorder = KubeRecorder::new(client, reporter);
        tokio::spawn(async move {
            let mut limiter = Limiter::new(Instant::now());
            while let Some(r) = rx.recv().await {
                if !limiter.allow(&r.key, Instant::now()) {
                    debug!(object = %r.key.0, "rejection not reported again yet");
                    continue;
                }
                let ev = Event {
                    type_: EventType::Warning,
                    reason: "TollgateRejected".into(),
                    note: Some(r.note.chars().take(1000).collect()),
                    action: "Compile".into(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&ev, &r.reference).await {
                    warn!(object = %r.key.0, error = %e, "cannot publish the Kubernetes Event");
                }
            }
        });
        Self { tx }
    }

    /// Reports that `object` (whose metadata is `meta`) was rejected.
    pub fn rejected(&self, object: &ObjectRef, meta: &ObjectMeta, field: &str, message: &str) {
        let reference = ObjectReference {
            api_version: Some(api_version(object.kind).into()),
            kind: Some(object.kind.as_str().into()),
            name: Some(object.name.clone()),
            namespace: object.namespace.clone(),
            uid: meta.uid.clone(),
            ..Default::default()
        };
        let note = format!("Tollgate: field {field}: {message}");
        let _ = self.tx.send(Rejection { reference, key: (object.clone(), field.to_owned()), note });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_object_and_field_and_a_bounded_rate() {
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        let k = |n: usize| (ObjectRef::new(ObjectKind::Pod, Some("n"), &format!("p{n}")), "f".to_owned());
        assert!(l.allow(&k(0), t0));
        assert!(!l.allow(&k(0), t0 + Duration::from_secs(1)), "same object again");
        assert!(l.allow(&k(0), t0 + PER_OBJECT + Duration::from_secs(1)), "after the quiet period");
        let t1 = t0 + PER_OBJECT + Duration::from_secs(1);
        let allowed = (1..1000).filter(|n| l.allow(&k(*n), t1)).count();
        assert_eq!(allowed as f64, BURST - 1.0, "burst bounded");
        assert!(l.allow(&k(5000), t1 + Duration::from_secs(1)), "refilled");
    }
}
