//! Where the cluster objects come from. Every source fills a
//! [`crate::model::Snapshot`]; the compiler does not know which one did.
pub mod files;

pub use files::{fingerprint, load_dir, SourceError};
