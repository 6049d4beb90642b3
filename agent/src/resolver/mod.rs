//! Resolution of the external host names that policies name (OSM `Egress`
//! `hosts`), for the datapath to allow their addresses.
//!
//! - [`table`]: the pure host table (addresses with expiries, when to ask
//!   again); its [`HostTable::addresses`] is what the policy compiler gets.
//! - [`dns_client`]: the stub resolver asking the name servers of
//!   `resolv.conf` through hickory-resolver ([`SystemResolver`]), behind
//!   the async [`Lookup`] trait.
//! - the agent's resolver task (`runtime::hosts`) ties them together.
pub mod dns_client;
pub mod error;
pub mod name;
pub mod resolv_conf;
pub mod table;

#[cfg(test)]
mod dns_client_tests;
#[cfg(test)]
mod table_tests;
#[cfg(test)]
pub(crate) mod test_server;

pub use dns_client::{Lookup, LookupFuture, LookupResult, SystemResolver, LITERAL_TTL};
pub use error::ResolveError;
pub use resolv_conf::ResolvConf;
pub use table::{HostStatus, HostTable, TtlPolicy};
