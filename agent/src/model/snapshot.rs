//! (in progress) The snapshot of cluster objects.
pub struct Snapshot;
pub struct SourcedObject;
