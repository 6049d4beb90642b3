use std::path::PathBuf;

/// Errors of the datapath. `is_environment` tells the CLI to exit with 2
/// (the machine is not ready) rather than 1.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("{path} is not on a bpffs; mount one with `mount -t bpf bpf /sys/fs/bpf` (or pass --bpffs)")]
    NoBpffs { path: PathBuf },
    #[error("the agent's maps are not pinned under {path}; is `tollgate agent` running with --bpffs {path}?")]
    NotPinned { path: PathBuf },
    #[error("this tollgate was built without its kernel programs; build it with `cargo xtask build`")]
    NoKernelObject,
    #[error("{what}: {source}")]
    Io { what: String, #[source] source: std::io::Error },
    #[error("loading the kernel programs: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {source}{}", chain(source))]
    Program { name: String, #[source] source: aya::programs::ProgramError },
    #[error("pinning {path}: {source}")]
    Pin { path: PathBuf, #[source] source: aya::pin::PinError },
    #[error("map {name}: {source}{}", chain(source))]
    Map { name: String, #[source] source: aya::maps::MapError },
    #[error("link {path}: {source}")]
    Link { path: PathBuf, #[source] source: aya::programs::links::LinkError },
    #[error("map {name} is missing from the kernel object")]
    MissingMap { name: String },
    #[error("no free workload id (all {0} in use)")]
    NoWorkloadId(u32),
    #[error("BPF_PROG_TEST_RUN of {name}: {source}{}", chain(source))]
    TestRun { name: String, #[source] source: aya::programs::ProgramError },
    #[error("the verify program gave no verdict (workload not registered)")]
    NoVerdict,
    #[error("reading the kernel programs' logs: {0}")]
    KernelLog(String),
    #[error("map layouts: {0}")]
    Layout(String),
    #[error("map {map} is pinned with layout {pinned}, this build wants {ours}: only `tollgate agent` migrates it (upgrade the agent first)")]
    LayoutMismatch { map: String, pinned: String, ours: String },
    #[error("map layout upgrade: {0}")]
    Upgrade(String),
}

impl DatapathError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        DatapathError::Io { what: what.into(), source }
    }

    /// The `cause` label of `tollgate_apply_failures_total` (map_full,
    /// map_write, bpffs, program, cgroup, other).
    pub fn metric_label(&self) -> &'static str {
        match self {
            DatapathError::Map { source, .. } if map_full(source) => "map_full",
            DatapathError::NoWorkloadId(_) => "map_full",
            DatapathError::Map { .. } | DatapathError::MissingMap { .. } => "map_write",
            DatapathError::NoBpffs { .. } | DatapathError::NotPinned { .. } | DatapathError::Pin { .. } => "bpffs",
            DatapathError::Load(_)
            | DatapathError::Program { .. }
            | DatapathError::Link { .. }
            | DatapathError::TestRun { .. }
            | DatapathError::NoKernelObject
            | DatapathError::NoVerdict
            | DatapathError::KernelLog(_) => "program",
            DatapathError::Layout(_) | DatapathError::LayoutMismatch { .. } | DatapathError::Upgrade(_) => "program",
            DatapathError::Io { .. } => "other",
        }
    }

    /// True when the fix is in the environment (bpffs, permissions, a
    /// missing agent), not in the command's input.
    pub fn is_environment(&self) -> bool {
        !matches!(self, DatapathError::NoVerdict)
    }
}

/// The causes below an error, as ": cause: cause" (aya's errors keep the
/// errno in their source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

fn map_full(e: &aya::maps::MapError) -> bool {
    matches!(e, aya::maps::MapError::SyscallError(s) if s.io_error.raw_os_error().is_some_and(super::writer::is_full_errno))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_labels() {
        let full = aya::maps::MapError::SyscallError(aya::sys::SyscallError {
            call: "bpf_map_update_elem",
            io_error: std::io::Error::from_raw_os_error(libc::E2BIG),
        });
        assert_eq!(DatapathError::Map { name: "TG_CGROUPS".into(), source: full }.metric_label(), "map_full");
        let other = aya::maps::MapError::SyscallError(aya::sys::SyscallError {
            call: "bpf_map_update_elem",
            io_error: std::io::Error::from_raw_os_error(libc::EINVAL),
        });
        assert_eq!(DatapathError::Map { name: "TG_CGROUPS".into(), source: other }.metric_label(), "map_write");
        assert_eq!(DatapathError::NoBpffs { path: "/x".into() }.metric_label(), "bpffs");
        assert_eq!(DatapathError::NoKernelObject.metric_label(), "program");
    }
}
