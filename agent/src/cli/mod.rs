//! The on-call commands: `counters`, `flows`, `status`, `verify`, and the
//! hidden `bench-datapath`.
pub mod analyze;
pub mod bench;
pub mod counters;
pub mod error;
pub mod flows;
pub mod maps_dump;
pub mod kubectl;
pub mod output;
pub mod status;
pub mod verify;
pub mod verify_detail;

pub use error::CliError;
pub use output::OutputFormat;
