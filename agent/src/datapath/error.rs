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
}

impl DatapathError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        DatapathError::Io { what: what.into(), source }
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
