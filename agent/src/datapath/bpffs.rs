//! The bpffs folder that holds the pins of one agent.
use std::path::{Path, PathBuf};

use super::DatapathError;

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

/// Where one agent pins its maps and links.
#[derive(Clone, Debug)]
pub struct PinDir {
    pub root: PathBuf,
}

impl PinDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn links(&self) -> PathBuf {
        self.root.join("links")
    }

    pub fn link(&self, program: &str) -> PathBuf {
        self.links().join(program)
    }

    /// Creates the folder and any missing parents (the agent). Its
    /// nearest existing ancestor must be on a bpffs.
    pub fn create(&self) -> Result<(), DatapathError> {
        let existing = self.root.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
        if !is_bpffs(existing) {
            return Err(DatapathError::NoBpffs { path: self.root.clone() });
        }
        std::fs::create_dir_all(self.links())
            .map_err(|e| DatapathError::io(format!("creating {}", self.links().display()), e))
    }

    /// Checks that an agent has pinned its maps here (read-only commands).
    pub fn require_pinned(&self) -> Result<(), DatapathError> {
        if !is_bpffs(&self.root) {
            let parent = self.root.parent().unwrap_or(Path::new("/"));
            if !is_bpffs(parent) {
                return Err(DatapathError::NoBpffs { path: self.root.clone() });
            }
        }
        for name in agent_common::map_names::ALL {
            if !self.map(name).exists() {
                return Err(DatapathError::NotPinned { path: self.root.clone() });
            }
        }
        Ok(())
    }
}
