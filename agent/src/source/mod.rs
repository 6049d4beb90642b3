//! Where the cluster objects come from. Every source — a folder of YAML
//! ([`files`]) or the Kubernetes API ([`kubernetes`]) — delivers typed
//! [`SourceEvent`]s through one channel into the runtime, which applies
//! them to the one store ([`crate::model::Snapshot`]) that the compiler
//! reads. The compiler does not know which source an object came from.
pub mod event;
pub mod files;
pub mod kubernetes;

pub use event::{ObjectChange, SourceEvent, SourceSender};
pub use files::{fingerprint, load_dir, SourceError};
