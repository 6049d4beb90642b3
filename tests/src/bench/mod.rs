//! `tollgate-e2e bench ...`: the heavy lifting of `cargo xtask bench`
//! (real traffic through the filters, the agent's programs under load, the
//! control plane at scale). Every part prints Markdown tables and, with
//! `--json FILE`, writes the figures as JSON.
pub mod bpf;
pub mod control_plane;
pub mod events;
pub mod files_source;
pub mod kube_source;
pub mod load;
pub mod observe;
pub mod prog_stats;
pub mod report;
pub mod synth;
pub mod throughput;
pub mod world;
