//! The cluster objects Tollgate reads, as one in-memory snapshot that every
//! source (files, Kubernetes API) fills the same way.
pub mod istio;
pub mod osm;
pub mod snapshot;

pub use snapshot::{Object, ObjectKind, ObjectRef, Snapshot};
