//! End-to-end harness for Tollgate: network namespaces standing in for a node,
//! its pods and an external host; kubelet-style cgroups; small servers and
//! probes; and helpers to drive the agent.

pub mod agent;
pub mod apiserver;
pub mod attack;
pub mod attack_packets;
pub mod attack_sniff;
pub mod attack_suite;
pub mod bench;
pub mod burst;
pub mod cgroups;
pub mod chaos;
pub mod checks;
pub mod connect_watch;
pub mod dashboard;
pub mod deploy;
pub mod dns;
pub mod helpers;
pub mod fake_kubelet;
pub mod kube_story;
pub mod manifests;
pub mod pods;
pub mod probe;
pub mod raw_frames;
pub mod procs;
pub mod serve;
pub mod story;
pub mod topology;
pub mod traffic;
pub mod truth_table;
pub mod util;
