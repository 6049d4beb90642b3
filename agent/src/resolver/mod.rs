//! Resolution of the external host names that policies name (OSM `Egress`
//! `hosts`), for the datapath to allow their addresses.
//!
//! - [`table`]: the pure host table (addresses with expiries, when to ask
//!   again); its [`HostTable::addresses`] is what the policy compiler gets.
//! - [`dns_client`]: the stub resolver asking the name servers of
//!   `resolv.conf` ([`SystemResolver`]), behind the [`Lookup`] trait.
//! - [`refresh`] ties them together: one round of due lookups and expiry.
pub mod dns_client;
pub mod error;
pub mod name;
pub mod resolv_conf;
pub mod table;
mod transport;
pub mod wire;

#[cfg(test)]
mod dns_client_tests;
#[cfg(test)]
mod table_tests;
#[cfg(test)]
mod test_server;

use std::time::Instant;

pub use dns_client::{Lookup, SystemResolver, LITERAL_TTL};
pub use error::ResolveError;
pub use resolv_conf::ResolvConf;
pub use table::{HostStatus, HostTable, TtlPolicy};

/// Resolves every host due at `now` (one blocking lookup each, in turn) and
/// drops expired addresses. Results count as made at `now`, so lifetimes
/// are measured from before the lookup (slightly conservative). Returns
/// true when the address view changed.
pub fn refresh(table: &mut HostTable, lookup: &dyn Lookup, now: Instant) -> bool {
    let mut changed = false;
    for host in table.due(now) {
        let result = lookup.lookup(&host);
        changed |= table.record(&host, now, result);
    }
    table.expire(now) | changed
}
