//! What `status` looked at: the kernel's view of the pins, and the files
//! the agent writes. The checks ([`super::checks`]) judge this and nothing
//! else, so they are pure and tested on made-up values.
use std::path::PathBuf;

use crate::{analyze::Report, explain::Explain, runtime::state::StatusFile};

/// What the kernel says about one pinned link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub id: u32,
    pub prog_id: u32,
    /// `BPF_LINK_TYPE_*`.
    pub link_type: u32,
    /// `BPF_*` attach type, for the link types that have one.
    pub attach_type: Option<u32>,
    pub target: LinkTarget,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkTarget {
    /// A cgroup, by id (its inode); 0 once the cgroup is gone.
    Cgroup(u64),
    /// A network device (tcx, netkit, XDP links), by index and name.
    Device { ifindex: u32, name: Option<String> },
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found<T> {
    /// No pin at the expected path.
    Missing,
    /// A pin, but the kernel would not say what it is.
    Unreadable(String),
    Present(T),
}

/// One pin under `<bpffs>/links/`, or an expected one that is missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkState {
    /// The pin's file name (the program's name for the agent's own pins).
    pub program: String,
    /// One of the programs the agent attaches.
    pub expected: bool,
    pub found: Found<LinkInfo>,
}

/// What the kernel says about one pinned map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapInfo {
    /// `BPF_MAP_TYPE_*`.
    pub map_type: u32,
    pub capacity: u32,
    /// Entries counted, for the maps whose fill matters (hash maps and
    /// LPM tries; not arrays, LRU tables or ring buffers).
    pub entries: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapState {
    pub name: String,
    pub found: Found<MapInfo>,
}

/// Everything the checks judge.
#[derive(Clone, Debug)]
pub struct Observed {
    /// Seconds since the epoch, when observed.
    pub now: f64,
    pub bpffs: PathBuf,
    /// `--bpffs` (or its parent, before the agent made it) is on a bpffs.
    pub bpffs_mounted: bool,
    pub links: Vec<LinkState>,
    /// The agent's cgroup root and its cgroup id, when known and readable.
    pub cgroup_root: Option<(String, u64)>,
    pub maps: Vec<MapState>,
    pub status: Option<StatusFile>,
    /// Why there is no status (missing file, bad JSON).
    pub status_problem: Option<String>,
    pub state_dir: PathBuf,
    /// The status's pid exists (as seen from here).
    pub pid_alive: bool,
    /// `explain.json`: the rules' provenance (gateway addresses).
    pub explain: Option<Explain>,
    /// `analysis.json`: the findings of `tollgate analyze`.
    pub analysis: Option<Report>,
}
