//! The BPF datapath: loading (or adopting) the pinned programs and maps,
//! and writing the desired state into the maps.
pub mod bpffs;
pub mod counters;
pub mod error;
pub mod events;
pub mod ids;
pub mod inputs;
pub mod layout;
pub mod layout_pins;
pub mod load;
pub mod object;
pub mod packet;
pub mod plan;
pub mod raw_map;
pub mod pinned;
pub mod reconcile;
pub mod root_programs;
pub mod rule_keys;
pub mod shadow;
pub mod tc;
pub mod tc_pods;
pub mod test_run;
pub mod upgrade;
pub mod veth;
pub mod writer;

pub use error::DatapathError;
