//! A per-run cgroup tree in the kubelet's systemd-driver layout.

use crate::pods::{PodSpec, Qos};
use crate::util::cgroup2_mount;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Owns `<cgroup2>/tollgate-e2e-<unique>` and everything below it.
pub struct CgroupTree {
    pub root: PathBuf,
    containers: Vec<(String, PathBuf)>,
    pub keep: bool,
}

/// `kubepods.slice/...-pod<uid_>.slice` relative to the root, per QoS class.
pub fn pod_slice(pod: &PodSpec) -> PathBuf {
    let uid = pod.uid.replace('-', "_");
    let mut p = PathBuf::from("kubepods.slice");
    match pod.qos {
        Qos::BestEffort => p.push(format!("kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice")),
        Qos::Burstable => p.push(format!("kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice")),
        Qos::Guaranteed => p.push(format!("kubepods-pod{uid}.slice")),
    }
    p
}

/// A stable, 64-hex container ID derived from the pod UID and the run.
pub fn container_id(pod: &PodSpec, unique: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut out = String::new();
    for round in 0..4u8 {
        for b in pod.uid.bytes().chain(unique.bytes()).chain([round]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

impl CgroupTree {
    pub fn create(unique: &str, pods: &[PodSpec]) -> Result<CgroupTree> {
        let mount = cgroup2_mount().context("no cgroup v2 mount found")?;
        let root = mount.join(format!("tollgate-e2e-{unique}"));
        let mut t = CgroupTree { root: root.clone(), containers: Vec::new(), keep: false };
        std::fs::create_dir(&root).with_context(|| format!("mkdir {}", root.display()))?;
        for pod in pods {
            let dir = root
                .join(pod_slice(pod))
                .join(format!("cri-containerd-{}.scope", container_id(pod, unique)));
            std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
            t.containers.push((pod.key(), dir));
        }
        Ok(t)
    }

    /// The container cgroup of a pod.
    pub fn container(&self, pod: &PodSpec) -> &Path {
        self.containers
            .iter()
            .find(|(k, _)| *k == pod.key())
            .map(|(_, d)| d.as_path())
            .unwrap_or_else(|| panic!("no cgroup for pod {}", pod.key()))
    }

    /// Removes the tree deepest-first, retrying briefly while processes remain.
    pub fn destroy(&mut self) {
        if !self.root.exists() {
            return;
        }
        let mut dirs = Vec::new();
        collect_dirs(&self.root, &mut dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match std::fs::remove_dir(&d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) => {
                        let busy = std::fs::read_to_string(d.join("cgroup.procs"))
                            .map(|s| !s.trim().is_empty())
                            .unwrap_or(false);
                        if Instant::now() >= deadline || !(busy || e.raw_os_error() == Some(libc::EBUSY)) {
                            eprintln!("[e2e] cleanup: rmdir {}: {e}", d.display());
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        if !self.keep {
            self.destroy();
        }
    }
}
