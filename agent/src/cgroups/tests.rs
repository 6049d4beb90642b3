//! Discovery over temporary directory trees (plain directories stand in for
//! cgroups: ids are inode numbers either way), plus one test against the real
//! cgroup v2 hierarchy when run as root.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::*;

const U1: &str = "11111111-2222-4333-8444-555555555555";
const U2: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
const U3: &str = "0b7e6d3a-5f1c-4c2e-9a8b-1234567890ab";
/// Static pods have a hash for a uid.
const STATIC: &str = "c1a5e0e0b07d1c8b5f9a3d2e4f6a7b8c";

fn sd(uid: &str) -> String {
    uid.replace('-', "_")
}

fn mkdirs(root: &Path, rel: &str) -> PathBuf {
    let path = root.join(rel);
    fs::create_dir_all(&path).unwrap();
    path
}

fn ino(path: &Path) -> u64 {
    fs::metadata(path).unwrap().ino()
}

/// Every id in the index is the inode number of its path.
fn assert_ids_are_inodes(index: &CgroupIndex) {
    for pod in index.pods.values() {
        assert_eq!(pod.pod.id, ino(&pod.pod.path), "{}", pod.pod.path.display());
        for child in &pod.children {
            assert_eq!(child.id, ino(&child.path), "{}", child.path.display());
        }
    }
}

fn child_paths(pod: &PodCgroups, base: &Path) -> Vec<String> {
    pod.children
        .iter()
        .map(|dir| dir.path.strip_prefix(base).unwrap().display().to_string())
        .collect()
}

#[test]
fn systemd_driver_all_qos_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let burstable = mkdirs(
        root,
        &format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
            sd(U1)
        ),
    );
    mkdirs(&burstable, "cri-containerd-aaa.scope");
    let besteffort = mkdirs(
        root,
        &format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
            sd(U2)
        ),
    );
    mkdirs(&besteffort, "cri-containerd-bbb.scope");
    let guaranteed = mkdirs(
        root,
        &format!("kubepods.slice/kubepods-pod{}.slice", sd(U3)),
    );
    mkdirs(&guaranteed, "cri-containerd-ccc.scope");
    mkdirs(&guaranteed, "cri-containerd-ddd.scope");
    fs::write(guaranteed.join("cgroup.procs"), "").unwrap();

    let index = discover(root).unwrap();
    assert_eq!(index.len(), 3);
    assert!(!index.is_empty());
    assert_eq!(
        index.pods.keys().map(String::as_str).collect::<Vec<_>>(),
        [U3, U1, U2]
    );
    assert_eq!(index.pods[U1].pod.path, burstable);
    assert_eq!(index.pods[U2].pod.path, besteffort);
    assert_eq!(index.pods[U3].pod.path, guaranteed);
    assert_eq!(
        child_paths(&index.pods[U1], &burstable),
        ["cri-containerd-aaa.scope"]
    );
    assert_eq!(
        child_paths(&index.pods[U3], &guaranteed),
        ["cri-containerd-ccc.scope", "cri-containerd-ddd.scope"]
    );
    assert_ids_are_inodes(&index);
}

#[test]
fn cgroupfs_driver_all_qos_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let burstable = mkdirs(root, &format!("kubepods/burstable/pod{U1}"));
    mkdirs(&burstable, "0123abcd");
    let besteffort = mkdirs(root, &format!("kubepods/besteffort/pod{U2}"));
    mkdirs(&besteffort, "4567ef01");
    let guaranteed = mkdirs(root, &format!("kubepods/pod{U3}"));
    mkdirs(&guaranteed, "89abcdef");
    let static_pod = mkdirs(root, &format!("kubepods/burstable/pod{STATIC}"));

    let index = discover(root).unwrap();
    assert_eq!(index.len(), 4);
    assert_eq!(index.pods[U1].pod.path, burstable);
    assert_eq!(index.pods[U2].pod.path, besteffort);
    assert_eq!(index.pods[U3].pod.path, guaranteed);
    assert_eq!(index.pods[STATIC].pod.path, static_pod);
    assert!(index.pods[STATIC].children.is_empty());
    assert_eq!(child_paths(&index.pods[U2], &besteffort), ["4567ef01"]);
    assert_ids_are_inodes(&index);
}

#[test]
fn kubepods_found_up_to_three_levels_down() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // kind-style systemd nesting under kubelet.slice (depth 2).
    mkdirs(
        root,
        &format!(
            "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/\
             kubelet-kubepods-besteffort-pod{}.slice/cri-containerd-x.scope",
            sd(U1)
        ),
    );
    // cgroupfs at depth 3.
    mkdirs(root, &format!("a/b/kubepods/pod{U2}/c"));
    // Too deep: depth 4.
    mkdirs(root, &format!("a/b/c/kubepods/pod{U3}/c"));
    // Pod-looking directories outside kubepods are not pods.
    mkdirs(root, &format!("system.slice/pod{STATIC}"));
    mkdirs(root, &format!("pod{STATIC}"));

    let index = discover(root).unwrap();
    assert_eq!(
        index.pods.keys().map(String::as_str).collect::<Vec<_>>(),
        [U1, U2]
    );
    assert_eq!(index.pods[U1].children.len(), 1);
    assert_ids_are_inodes(&index);
}

#[test]
fn root_may_be_kubepods_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let kubepods = mkdirs(tmp.path(), "kubepods.slice");
    mkdirs(&kubepods, &format!("kubepods-pod{}.slice/c.scope", sd(U1)));
    let index = discover(&kubepods).unwrap();
    assert_eq!(index.all_ids(U1).len(), 2);
}

#[test]
fn nested_children_depth_first_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let pod = mkdirs(tmp.path(), &format!("kubepods/pod{U1}"));
    mkdirs(&pod, "c1/n2/n3/n4/n5/n6/n7/n8");
    mkdirs(&pod, "c1/m2");
    mkdirs(&pod, "c0");
    mkdirs(&pod, "c2");

    let index = discover(tmp.path()).unwrap();
    assert_eq!(
        child_paths(&index.pods[U1], &pod),
        [
            "c0",
            "c1",
            "c1/m2",
            "c1/n2",
            "c1/n2/n3",
            "c1/n2/n3/n4",
            "c1/n2/n3/n4/n5",
            "c1/n2/n3/n4/n5/n6",
            "c2",
        ]
    );
    assert_eq!(MAX_CHILD_DEPTH, 6);
    assert_ids_are_inodes(&index);
}

#[test]
fn odd_names_are_ignored_without_panicking() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let qos = mkdirs(root, "kubepods.slice/kubepods-burstable.slice");
    for name in [
        "pod",
        "podXYZ!",
        "kubepods-burstable.slice",
        "kubepods-burstable-pod.slice",
        "kubepods-burstable-pod12-34!.slice",
        "kubepods-guaranteed-pod1234.slice",
        "cri-containerd-abc.scope",
    ] {
        mkdirs(&qos, name);
    }
    let non_utf8 = OsStr::from_bytes(b"kubepods-burstable-pod\xff.slice");
    fs::create_dir(qos.join(non_utf8)).unwrap();
    // A file and a symlink with pod names are not cgroups.
    fs::write(
        qos.join(format!("kubepods-burstable-pod{}.slice", sd(U2))),
        "",
    )
    .unwrap();
    let real = mkdirs(&qos, &format!("kubepods-burstable-pod{}.slice", sd(U1)));
    std::os::unix::fs::symlink(
        &real,
        qos.join(format!("kubepods-burstable-pod{}.slice", sd(U3))),
    )
    .unwrap();
    // Odd container names are still children.
    fs::create_dir(real.join(OsStr::from_bytes(b"weird\xfe name"))).unwrap();
    mkdirs(&real, "podXYZ!");
    // Empty kubepods directories of the other driver are harmless.
    mkdirs(root, "kubepods/burstable");
    mkdirs(root, "kubepods/besteffort");

    let index = discover(root).unwrap();
    assert_eq!(index.pods.keys().collect::<Vec<_>>(), [U1]);
    assert_eq!(index.pods[U1].children.len(), 2);
    assert_ids_are_inodes(&index);
}

#[test]
fn empty_root_gives_empty_index() {
    let tmp = tempfile::tempdir().unwrap();
    let index = discover(tmp.path()).unwrap();
    assert!(index.is_empty());
    assert_eq!(index.len(), 0);
}

#[test]
fn missing_root_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-root");
    let err = discover(&missing).unwrap_err();
    assert!(matches!(err, CgroupError::RootMissing { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );

    let file = tmp.path().join("file");
    fs::write(&file, "").unwrap();
    let err = discover(&file).unwrap_err();
    assert!(
        matches!(err, CgroupError::RootNotADirectory { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&file.display().to_string()),
        "{err}"
    );
}

#[test]
fn vanished_pod_dir_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(scan::scan_pod(&tmp.path().join("gone")).is_none());
    // A pod directory whose children vanished mid-walk still counts.
    let pod = mkdirs(tmp.path(), "pod1");
    let scanned = scan::scan_pod(&pod).unwrap();
    assert!(scanned.children.is_empty());
    assert_eq!(scanned.pod.id, ino(&pod));
}

#[test]
fn concurrent_creation_and_removal_is_tolerated() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let stable = mkdirs(&root, &format!("kubepods/burstable/pod{U1}/c"));
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let root = root.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let pod = root.join(format!("kubepods/besteffort/pod{n:08x}"));
                fs::create_dir_all(pod.join("c1/n")).unwrap();
                fs::create_dir_all(pod.join("c2")).unwrap();
                fs::remove_dir_all(&pod).unwrap();
                n = n.wrapping_add(1);
            }
        })
    };
    for _ in 0..500 {
        let index = discover(&root).unwrap();
        assert_eq!(index.all_ids(U1), [ino(&stable.join("..")), ino(&stable)]);
    }
    stop.store(true, Ordering::Relaxed);
    churn.join().unwrap();
}

#[test]
fn duplicate_uid_keeps_the_dir_with_more_children() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // A stale cgroupfs directory sorts first but has fewer children.
    let stale = mkdirs(root, &format!("kubepods/pod{U1}"));
    mkdirs(&stale, "old");
    let live = mkdirs(
        root,
        &format!("kubepods.slice/kubepods-pod{}.slice", sd(U1)),
    );
    mkdirs(&live, "a.scope");
    mkdirs(&live, "b.scope");
    // And the other way round for a second pod.
    let live2 = mkdirs(root, &format!("kubepods/besteffort/pod{U2}"));
    mkdirs(&live2, "x");
    mkdirs(
        root,
        &format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
            sd(U2)
        ),
    );

    let index = discover(root).unwrap();
    assert_eq!(index.len(), 2);
    assert_eq!(index.pods[U1].pod.path, live);
    assert_eq!(index.pods[U1].children.len(), 2);
    assert_eq!(index.pods[U2].pod.path, live2);
    // Discovery is repeatable (and the warning is not repeated).
    assert_eq!(discover(root).unwrap(), index);
}

#[test]
fn all_ids_is_pod_then_children() {
    let tmp = tempfile::tempdir().unwrap();
    let pod = mkdirs(
        tmp.path(),
        &format!("kubepods.slice/kubepods-pod{}.slice", sd(U1)),
    );
    let a = mkdirs(&pod, "a.scope");
    let b = mkdirs(&pod, "a.scope/sub");
    let c = mkdirs(&pod, "b.scope");

    let index = discover(tmp.path()).unwrap();
    let want = vec![ino(&pod), ino(&a), ino(&b), ino(&c)];
    assert_eq!(index.all_ids(U1), want);
    assert_eq!(index.all_ids(&sd(U1)), want);
    assert_eq!(index.all_ids(&U1.to_uppercase()), want);
    assert!(index.all_ids(U2).is_empty());
    assert!(index.get(U2).is_none());
    assert_eq!(index.get(U1).unwrap().ids().count(), 4);
}

/// Removes the directories (deepest first) when dropped, even on failure.
struct RmdirGuard(Vec<PathBuf>);

impl Drop for RmdirGuard {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}

#[test]
fn real_cgroup_v2_ids_match_inodes() {
    let unified = Path::new("/sys/fs/cgroup/unified");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !is_cgroup2(unified) {
        eprintln!(
            "skipped: needs root and a cgroup2 mount at {}",
            unified.display()
        );
        return;
    }
    let base = unified.join(format!("tollgate-unit-{}", std::process::id()));
    let levels = [
        "kubepods.slice".to_string(),
        "kubepods-besteffort.slice".to_string(),
        format!("kubepods-besteffort-pod{}.slice", sd(U1)),
        "cri-containerd-abc.scope".to_string(),
    ];
    let mut guard = RmdirGuard(Vec::new());
    let mut dir = base.clone();
    fs::create_dir(&dir).unwrap();
    guard.0.push(dir.clone());
    for level in &levels {
        dir = dir.join(level);
        fs::create_dir(&dir).unwrap();
        guard.0.push(dir.clone());
    }

    let index = discover(&base).unwrap();
    let pod = &index.pods[U1];
    assert_eq!(pod.pod.path, guard.0[3]);
    assert_eq!(pod.pod.id, ino(&guard.0[3]));
    assert_eq!(pod.children.len(), 1);
    assert_eq!(pod.children[0].path, dir);
    assert_eq!(pod.children[0].id, ino(&dir));
    assert_ids_are_inodes(&index);
    drop(guard);
    assert!(!base.exists());
}

#[test]
fn kubepods_and_qos_folders_are_reported_as_markers() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    mkdirs(root, &format!("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/c", sd(U1)));
    mkdirs(root, "kubepods.slice/kubepods-burstable.slice");
    mkdirs(root, &format!("kubepods.slice/kubepods-pod{}.slice", sd(U2)));
    mkdirs(root, "system.slice/kubelet.service");
    let index = discover(root).unwrap();
    let mut got: Vec<String> =
        index.markers.iter().map(|m| m.path.strip_prefix(root).unwrap().display().to_string()).collect();
    got.sort();
    assert_eq!(got, ["kubepods.slice", "kubepods.slice/kubepods-besteffort.slice", "kubepods.slice/kubepods-burstable.slice"]);
    for m in &index.markers {
        assert_eq!(m.id, ino(&m.path));
    }
}
