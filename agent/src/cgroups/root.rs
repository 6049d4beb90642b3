//! Finding the cgroup v2 mount.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `CGROUP2_SUPER_MAGIC` from `<linux/magic.h>`.
pub const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

/// The unified (v2) hierarchy on a hybrid host.
const HYBRID_ROOT: &str = "/sys/fs/cgroup/unified";
/// The usual cgroup mount.
const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// The cgroup v2 mount to discover pods under: `/sys/fs/cgroup/unified` when
/// that is a cgroup2 mount (a hybrid v1/v2 host), else `/sys/fs/cgroup`.
pub fn default_cgroup_root() -> PathBuf {
    if is_cgroup2_mount(Path::new(HYBRID_ROOT)) {
        PathBuf::from(HYBRID_ROOT)
    } else {
        PathBuf::from(DEFAULT_ROOT)
    }
}

/// Whether `path` lies on a cgroup v2 filesystem (statfs magic
/// `CGROUP2_SUPER_MAGIC`). False when it does not exist or cannot be examined.
pub fn is_cgroup2(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `c_path` is a valid NUL-terminated string and `st` is a
    // correctly sized buffer that statfs fills on success.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return false;
    }
    // SAFETY: statfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    // `f_type`'s integer type differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as u64;
    magic == CGROUP2_SUPER_MAGIC
}

/// `path` is the root of a cgroup2 mount, not just a cgroup below one (a
/// pure v2 host could have a cgroup named `unified`).
fn is_cgroup2_mount(path: &Path) -> bool {
    if !is_cgroup2(path) {
        return false;
    }
    match (path.metadata(), path.parent().map(Path::metadata)) {
        (Ok(own), Some(Ok(parent))) => own.dev() != parent.dev(),
        (Ok(_), None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What /proc/self/mountinfo says about `mount_point`'s filesystem type.
    fn mountinfo_fstype(mount_point: &str) -> Option<String> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        info.lines().find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split_whitespace().nth(4)?;
            (point == mount_point).then(|| right.split_whitespace().next().map(str::to_string))?
        })
    }

    #[test]
    fn default_root_is_unified_on_hybrid_host() {
        let root = default_cgroup_root();
        if mountinfo_fstype(HYBRID_ROOT).as_deref() == Some("cgroup2") {
            assert_eq!(root, PathBuf::from(HYBRID_ROOT));
            assert!(is_cgroup2(&root));
        } else {
            assert_eq!(root, PathBuf::from(DEFAULT_ROOT));
        }
    }

    #[test]
    fn is_cgroup2_agrees_with_mountinfo() {
        for point in [DEFAULT_ROOT, HYBRID_ROOT] {
            if let Some(fstype) = mountinfo_fstype(point) {
                assert_eq!(is_cgroup2(Path::new(point)), fstype == "cgroup2", "{point}");
            }
        }
    }

    #[test]
    fn ordinary_and_missing_paths_are_not_cgroup2() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_cgroup2(dir.path()));
        assert!(!is_cgroup2(&dir.path().join("missing")));
        assert!(!is_cgroup2(Path::new("bad\0path")));
        assert!(!is_cgroup2_mount(dir.path()));
    }
}
