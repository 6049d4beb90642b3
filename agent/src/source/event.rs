//! The one seam between sources and the runtime.
use std::time::Instant;

use crate::desired::Diagnostic;
use crate::model::{Object, ObjectKind, ObjectRef};

/// One object applied or deleted.
#[derive(Clone, Debug, PartialEq)]
pub enum ObjectChange {
    /// Add or replace. `source` names where it came from when that helps
    /// an operator (a file); `None` for the API server.
    Apply { object: Object, source: Option<String> },
    Delete(ObjectRef),
}

impl ObjectChange {
    pub fn kind(&self) -> ObjectKind {
        match self {
            ObjectChange::Apply { object, .. } => object.kind(),
            ObjectChange::Delete(r) => r.kind,
        }
    }
}

/// What a source tells the runtime.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceEvent {
    /// Changes that belong together (one watch event, a relist, one reload
    /// of a folder), applied to the store in order and at once.
    /// `received` is when the source got them: the event-to-map latency
    /// counts from there.
    Changes { changes: Vec<ObjectChange>, received: Instant },
    /// The problems the source found in one scope (a file, one object),
    /// replacing what it said of that scope before (empty: resolved).
    Diagnostics { scope: String, diags: Vec<Diagnostic> },
    /// The initial list of this kind is complete (also sent when the kind
    /// is not served by the cluster: an Istio or OSM CRD that is not
    /// installed has no objects).
    Synced { kind: ObjectKind },
    /// The kind's watch failed and is being retried (with backoff); the
    /// store keeps what it had.
    WatchError { kind: ObjectKind, message: String },
    /// Whether the kind is served by the cluster (a CRD may be installed
    /// or removed at any time).
    Served { kind: ObjectKind, served: bool },
}

/// Where sources send their events.
pub type SourceSender = tokio::sync::mpsc::UnboundedSender<SourceEvent>;
