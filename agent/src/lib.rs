//! Tollgate: eBPF egress enforcement for Kubernetes pods.
//!
//! The policy compiler ([`compiler`]) is pure: cluster objects
//! ([`model::Snapshot`]) in, desired datapath state ([`desired`]) out. Sources,
//! cgroup discovery, the BPF datapath and the command-line tools are thin
//! shells around it.
pub mod analyze;
pub mod cgroups;
pub mod cli;
pub mod compiler;
pub mod datapath;
pub mod desired;
pub mod explain;
pub mod metrics;
pub mod logs;
pub mod model;
pub mod resolver;
pub mod runtime;
pub mod source;
