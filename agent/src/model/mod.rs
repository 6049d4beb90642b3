//! The cluster objects Tollgate reads, and the store ([`Snapshot`]) that
//! every source (files, Kubernetes API) fills the same way.
pub mod istio;
pub mod object;
pub mod osm;
pub mod snapshot;

pub use object::{Object, ObjectKind, ObjectRef};
pub use snapshot::{Change, Snapshot};
