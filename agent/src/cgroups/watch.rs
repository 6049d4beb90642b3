//! Watching the kubepods tree with inotify, so that a new pod or container
//! cgroup is classified within milliseconds of its creation instead of at
//! the next scan.
//!
//! The watcher only says "something changed, at this time"; the runtime
//! then runs [`super::discover`] (a few milliseconds for a full node) and
//! applies. Directories are watched from the cgroup root down to the
//! containers of each pod; a created directory gets its own watch at once
//! (anything created below it before the watch existed is found by the
//! scan that the same signal triggers). A periodic scan in the runtime
//! covers whatever inotify cannot see (an overflowed queue, a layout
//! deeper than we watch).
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use inotify::{Inotify, WatchDescriptor, WatchMask};
use tracing::{debug, warn};

use super::layout;

/// How many levels below the cgroup root are watched: root → (slices) →
/// kubepods → QoS → pod → container → one more.
const MAX_WATCH_DEPTH: usize = 8;

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("inotify: {0}")]
    Inotify(#[source] std::io::Error),
    #[error("starting the cgroup watcher thread: {0}")]
    Thread(#[source] std::io::Error),
}

struct Watcher {
    inotify: Inotify,
    root: PathBuf,
    dirs: HashMap<WatchDescriptor, (PathBuf, usize)>,
}

/// Is `path` (at `depth` below the root) worth watching? Everything on the
/// way to a kubepods directory, and everything below one.
fn worth_watching(root: &Path, path: &Path, depth: usize) -> bool {
    if depth > MAX_WATCH_DEPTH {
        return false;
    }
    let Ok(rel) = path.strip_prefix(root) else { return false };
    let below_kubepods = rel
        .components()
        .any(|c| c.as_os_str().to_str().is_some_and(layout::is_kubepods_dir_name));
    below_kubepods || depth <= super::KUBEPODS_SEARCH_DEPTH
}

impl Watcher {
    fn add(&mut self, path: &Path, depth: usize) {
        let mask = WatchMask::CREATE | WatchMask::DELETE | WatchMask::MOVE | WatchMask::ONLYDIR;
        match self.inotify.watches().add(path, mask) {
            Ok(wd) => {
                self.dirs.insert(wd, (path.to_owned(), depth));
            }
            Err(e) => debug!(path = %path.display(), error = %e, "cannot watch cgroup directory"),
        }
    }

    /// Watches `dir` and the directories below it that are worth it.
    fn add_tree(&mut self, dir: &Path, depth: usize) {
        if !worth_watching(&self.root, dir, depth) {
            return;
        }
        self.add(dir, depth);
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                self.add_tree(&entry.path(), depth + 1);
            }
        }
    }
}

/// Starts the watcher thread. `signal` is called with the time of each
/// batch of changes (from the thread; it must not block).
pub fn spawn(root: PathBuf, signal: impl Fn(Instant) + Send + 'static) -> Result<(), WatchError> {
    let inotify = Inotify::init().map_err(WatchError::Inotify)?;
    let mut w = Watcher { inotify, root: root.clone(), dirs: HashMap::new() };
    w.add_tree(&root, 0);
    debug!(watches = w.dirs.len(), root = %root.display(), "watching the cgroup tree");
    std::thread::Builder::new()
        .name("cgroup-watch".into())
        .spawn(move || run(w, signal))
        .map_err(WatchError::Thread)?;
    Ok(())
}

fn run(mut w: Watcher, signal: impl Fn(Instant)) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let events = match w.inotify.read_events_blocking(&mut buf) {
            Ok(events) => events,
            Err(e) => {
                warn!(error = %e, "cgroup watcher stopped; new pods are found by the periodic scan only");
                return;
            }
        };
        let at = Instant::now();
        let mut created: Vec<(PathBuf, usize)> = Vec::new();
        let mut gone: Vec<WatchDescriptor> = Vec::new();
        let mut any = false;
        for ev in events {
            any = true;
            if ev.mask.contains(inotify::EventMask::IGNORED) {
                gone.push(ev.wd.clone());
                continue;
            }
            let is_new_dir = ev.mask.contains(inotify::EventMask::ISDIR)
                && (ev.mask.contains(inotify::EventMask::CREATE) || ev.mask.contains(inotify::EventMask::MOVED_TO));
            if let (true, Some((parent, depth)), Some(name)) = (is_new_dir, w.dirs.get(&ev.wd), ev.name) {
                created.push((parent.join(name), depth + 1));
            }
        }
        for wd in gone {
            w.dirs.remove(&wd);
        }
        for (path, depth) in created {
            w.add_tree(&path, depth);
        }
        if any {
            signal(at);
        }
    }
}

/// The last path component, for logs.
pub fn dir_name(path: &Path) -> &str {
    path.file_name().and_then(OsStr::to_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn signals_new_pod_and_container_directories() {
        // inotify works the same on any filesystem: a plain temp dir
        // stands in for the cgroup tree here (the e2e tests use cgroupfs).
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        let qos = root.join("kubepods.slice").join("kubepods-besteffort.slice");
        std::fs::create_dir_all(&qos).expect("mkdir");
        let (tx, rx) = mpsc::channel();
        spawn(root.clone(), move |at| {
            let _ = tx.send(at);
        })
        .expect("watcher starts");
        let pod = qos.join("kubepods-besteffort-pod1234.slice");
        std::fs::create_dir(&pod).expect("mkdir pod");
        rx.recv_timeout(Duration::from_secs(5)).expect("signal for the pod directory");
        // The pod directory is watched now: a container below it signals too.
        std::thread::sleep(Duration::from_millis(50));
        while rx.try_recv().is_ok() {}
        std::fs::create_dir(pod.join("cri-containerd-abc.scope")).expect("mkdir container");
        rx.recv_timeout(Duration::from_secs(5)).expect("signal for the container directory");
        // Unrelated trees deeper than the kubepods search are not watched.
        assert!(!worth_watching(&root, &root.join("a/b/c/d"), 4));
        assert!(worth_watching(&root, &qos.join("x/y"), 4));
    }
}
