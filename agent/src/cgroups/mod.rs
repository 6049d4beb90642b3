//! Cgroup discovery: ties pods to the cgroup ids their processes run in.
//!
//! The kubelet gives every pod a cgroup named after its UID, with one child
//! per container (`layout.rs` describes both cgroup drivers' names). [`discover`] walks
//! a cgroup v2 root, finds the kubepods directory (directly under the root or
//! up to three levels deeper, e.g. under `kubelet.slice/`), and returns, per
//! pod UID, the pod cgroup and all its descendants with their cgroup ids.
//!
//! A cgroup id is the inode number of the cgroup's directory: on cgroup v2
//! this equals the kernel's id, as returned by `bpf_get_current_cgroup_id`.
//!
//! Discovery is stateless and cheap enough to run every second on a node
//! with a few hundred pods.

mod layout;
mod root;
mod scan;
pub mod watch;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use layout::{canonical_uid, is_kubepods_dir_name, parse_pod_dir_name, qos_dir_name, Qos};
pub use root::{default_cgroup_root, is_cgroup2, CGROUP2_SUPER_MAGIC};
pub use scan::{discover, KUBEPODS_SEARCH_DEPTH, MAX_CHILD_DEPTH};
pub use watch::WatchError;

/// Failure to discover cgroups. Only the root itself can fail discovery;
/// anything below it that vanishes or cannot be read is skipped.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup root {} does not exist (set --cgroup-root to the cgroup v2 mount)", .path.display())]
    RootMissing { path: PathBuf },
    #[error("cgroup root {} is not a directory", .path.display())]
    RootNotADirectory { path: PathBuf },
    #[error("cannot read cgroup root {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One cgroup directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CgroupDir {
    pub path: PathBuf,
    /// The cgroup id: the directory's inode number.
    pub id: u64,
}

/// A pod's cgroup and everything below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCgroups {
    pub pod: CgroupDir,
    /// All descendant directories (containers and any nested sub-cgroups),
    /// depth-first in name order, at most [`MAX_CHILD_DEPTH`] levels deep.
    pub children: Vec<CgroupDir>,
}

impl PodCgroups {
    /// The pod's cgroup id followed by its descendants' ids.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        std::iter::once(self.pod.id).chain(self.children.iter().map(|dir| dir.id))
    }
}

/// The pods found by [`discover`], keyed by canonical UID (lowercase, with
/// dashes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupIndex {
    pub pods: BTreeMap<String, PodCgroups>,
    /// The kubepods folders and their QoS folders: a cgroup below them
    /// that no known pod owns is not classified yet (and is denied).
    pub markers: Vec<CgroupDir>,
}

impl CgroupIndex {
    /// Number of pods found.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// The cgroups of the pod with this UID; the UID may also be given in
    /// systemd form (underscores) or uppercase.
    pub fn get(&self, uid: &str) -> Option<&PodCgroups> {
        self.pods.get(uid).or_else(|| {
            let canonical = canonical_uid(uid);
            if canonical == uid {
                None
            } else {
                self.pods.get(&canonical)
            }
        })
    }

    /// The pod's cgroup id and those of all its descendants; empty if the
    /// pod has no cgroup on this node (yet).
    pub fn all_ids(&self, uid: &str) -> Vec<u64> {
        self.get(uid)
            .map(|pod| pod.ids().collect())
            .unwrap_or_default()
    }
}
