//! The walk: root → kubepods → (QoS level) → pod → descendants.
//!
//! Cgroups come and go while the walk runs (the kubelet creates and removes
//! them), so anything below the root that vanishes, or cannot be read, is
//! skipped; only problems with the root itself are errors.

use std::collections::btree_map::Entry;
use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use super::layout;
use super::{CgroupDir, CgroupError, CgroupIndex, PodCgroups};

/// How deep below the root a kubepods directory is looked for.
pub const KUBEPODS_SEARCH_DEPTH: usize = 3;
/// How deep below a pod cgroup its descendants are collected.
pub const MAX_CHILD_DEPTH: usize = 6;

/// Finds every pod cgroup under `root` (see the module documentation).
pub fn discover(root: &Path) -> Result<CgroupIndex, CgroupError> {
    match fs::metadata(root) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(CgroupError::RootNotADirectory {
                path: root.to_path_buf(),
            })
        }
        Err(err) => return Err(root_error(root, err)),
    }
    let mut index = CgroupIndex::default();
    for kubepods in find_kubepods(root)? {
        scan_kubepods(&kubepods, &mut index);
    }
    Ok(index)
}

fn root_error(root: &Path, err: io::Error) -> CgroupError {
    if err.kind() == io::ErrorKind::NotFound {
        CgroupError::RootMissing {
            path: root.to_path_buf(),
        }
    } else {
        CgroupError::Io {
            path: root.to_path_buf(),
            source: err,
        }
    }
}

/// kubepods directories at most [`KUBEPODS_SEARCH_DEPTH`] levels below
/// `root` (or `root` itself, if it is one), in name order.
fn find_kubepods(root: &Path) -> Result<Vec<std::path::PathBuf>, CgroupError> {
    if root
        .file_name()
        .and_then(OsStr::to_str)
        .is_some_and(layout::is_kubepods_dir_name)
    {
        return Ok(vec![root.to_path_buf()]);
    }
    let top = subdirs(root).map_err(|err| root_error(root, err))?;
    let mut found = Vec::new();
    search_kubepods(root, top, 1, &mut found);
    Ok(found)
}

fn search_kubepods(
    dir: &Path,
    names: Vec<OsString>,
    depth: usize,
    found: &mut Vec<std::path::PathBuf>,
) {
    for name in names {
        let path = dir.join(&name);
        if name.to_str().is_some_and(layout::is_kubepods_dir_name) {
            found.push(path);
        } else if depth < KUBEPODS_SEARCH_DEPTH {
            let below = subdirs_or_skip(&path);
            search_kubepods(&path, below, depth + 1, found);
        }
    }
}

/// Pods directly under `kubepods` (Guaranteed) and under its QoS levels;
/// the kubepods and QoS folders themselves are reported as markers.
fn scan_kubepods(kubepods: &Path, index: &mut CgroupIndex) {
    add_marker(index, kubepods);
    for name in subdirs_or_skip(kubepods) {
        let Some(name) = name.to_str() else { continue };
        if let Some((uid, _)) = layout::split_pod_dir_name(name) {
            add_pod(index, &kubepods.join(name), uid);
        } else if layout::qos_dir_name(name).is_some() {
            let qos_dir = kubepods.join(name);
            add_marker(index, &qos_dir);
            for pod_name in subdirs_or_skip(&qos_dir) {
                let Some(pod_name) = pod_name.to_str() else {
                    continue;
                };
                if let Some((uid, _)) = layout::split_pod_dir_name(pod_name) {
                    add_pod(index, &qos_dir.join(pod_name), uid);
                }
            }
        }
    }
}

fn add_marker(index: &mut CgroupIndex, path: &Path) {
    if let Some(id) = dir_id(path) {
        index.markers.push(CgroupDir { path: path.to_path_buf(), id });
    }
}

fn add_pod(index: &mut CgroupIndex, path: &Path, raw_uid: &str) {
    let Some(pod) = scan_pod(path) else { return };
    match index.pods.entry(layout::canonical_uid(raw_uid)) {
        Entry::Vacant(slot) => {
            slot.insert(pod);
        }
        Entry::Occupied(mut slot) => {
            let kept = slot.get();
            let replace = pod.children.len() > kept.children.len()
                || (pod.children.len() == kept.children.len()
                    && is_populated(&pod.pod.path)
                    && !is_populated(&kept.pod.path));
            let (winner, loser) = if replace {
                (&pod.pod.path, &kept.pod.path)
            } else {
                (&kept.pod.path, &pod.pod.path)
            };
            warn_duplicate(slot.key(), winner, loser);
            if replace {
                *slot.get_mut() = pod;
            }
        }
    }
}

/// The pod cgroup at `path` and its descendants; `None` if it vanished.
pub(super) fn scan_pod(path: &Path) -> Option<PodCgroups> {
    let id = dir_id(path)?;
    let mut children = Vec::new();
    collect_children(path, 1, &mut children);
    Some(PodCgroups {
        pod: CgroupDir {
            path: path.to_path_buf(),
            id,
        },
        children,
    })
}

/// Depth-first (pre-order, by name) descendants of `dir`, `depth` being the
/// level of `dir`'s children, down to [`MAX_CHILD_DEPTH`].
fn collect_children(dir: &Path, depth: usize, out: &mut Vec<CgroupDir>) {
    for name in subdirs_or_skip(dir) {
        let path = dir.join(name);
        let Some(id) = dir_id(&path) else { continue };
        out.push(CgroupDir {
            path: path.clone(),
            id,
        });
        if depth < MAX_CHILD_DEPTH {
            collect_children(&path, depth + 1, out);
        }
    }
}

/// The cgroup id of the directory at `path`: its inode number. `None` if it
/// is gone or not a directory.
fn dir_id(path: &Path) -> Option<u64> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Some(meta.ino()),
        Ok(_) => None,
        Err(err) => {
            skip_unreadable(path, &err);
            None
        }
    }
}

/// Names of the subdirectories of `dir`, sorted so that the walk is
/// deterministic. Symlinks and files are left out.
fn subdirs(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        // An entry that errors here has usually just been removed.
        let Ok(entry) = entry else { continue };
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            names.push(entry.file_name());
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// [`subdirs`], with a vanished or unreadable directory treated as empty.
fn subdirs_or_skip(dir: &Path) -> Vec<OsString> {
    subdirs(dir).unwrap_or_else(|err| {
        skip_unreadable(dir, &err);
        Vec::new()
    })
}

fn skip_unreadable(path: &Path, err: &io::Error) {
    // NotFound: removed by the kubelet during the walk, which is normal.
    if !matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    ) {
        tracing::debug!(path = %path.display(), error = %err, "skipping unreadable cgroup");
    }
}

/// cgroup v2 `cgroup.events` says the cgroup or a descendant holds processes.
/// Only consulted to break ties between duplicate pod cgroups.
fn is_populated(pod: &Path) -> bool {
    fs::read_to_string(pod.join("cgroup.events"))
        .is_ok_and(|events| events.lines().any(|line| line.trim() == "populated 1"))
}

/// Logs a duplicate pod cgroup once per uid and pair of paths: discovery
/// runs every second, and a stale directory would otherwise warn every time.
fn warn_duplicate(uid: &str, kept: &Path, dropped: &Path) {
    static WARNED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    /// Bound on remembered warnings; forgetting them only repeats a warning.
    const MAX_REMEMBERED: usize = 4096;

    let key = format!("{uid}\0{}\0{}", kept.display(), dropped.display());
    let mut warned = WARNED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if warned.contains(&key) {
        return;
    }
    if warned.len() >= MAX_REMEMBERED {
        warned.clear();
    }
    warned.insert(key);
    tracing::warn!(
        uid,
        kept = %kept.display(),
        ignored = %dropped.display(),
        "pod has two cgroup directories; keeping the one with more child cgroups"
    );
}
