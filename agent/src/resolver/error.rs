//! The error of resolving one host name ([`ResolveError`]).
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a host could not be resolved. Every variant about a lookup names the
/// host; every variant about a name server names the server (the last one
/// tried when all of them failed).
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{host:?} is not a host name that can be resolved: {reason}")]
    InvalidName { host: String, reason: &'static str },
    #[error("reading {path}: {source}")]
    ResolvConf {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The resolver could not be set up (its message, for each name).
    #[error("{0}")]
    Setup(String),
    #[error("resolving {host}: no name server is configured")]
    NoNameservers { host: String },
    #[error("resolving {host}: no answer from {server} (timed out)")]
    Timeout { host: String, server: SocketAddr },
    #[error("resolving {host}: {server} answered {}", rcode_name(*rcode))]
    ServerFailure {
        host: String,
        server: SocketAddr,
        rcode: u16,
    },
    #[error("resolving {host}: {server}: {source}")]
    Io {
        host: String,
        server: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// No result within the time the caller allows for one lookup.
    #[error("resolving {host}: gave up after {after:?}")]
    GaveUp { host: String, after: std::time::Duration },
    #[error("resolving {host}: malformed answer from {server}: {reason}")]
    Malformed {
        host: String,
        server: SocketAddr,
        reason: String,
    },
}

/// The response codes of RFC 1035 and RFC 6895 by their usual names.
pub const RCODE_NOERROR: u16 = 0;
pub const RCODE_FORMERR: u16 = 1;
pub const RCODE_SERVFAIL: u16 = 2;
pub const RCODE_NXDOMAIN: u16 = 3;
pub const RCODE_NOTIMP: u16 = 4;
pub const RCODE_REFUSED: u16 = 5;

/// The readable name of a response code, for messages.
pub fn rcode_name(rcode: u16) -> String {
    match rcode {
        RCODE_NOERROR => "NOERROR".into(),
        RCODE_FORMERR => "FORMERR".into(),
        RCODE_SERVFAIL => "SERVFAIL".into(),
        RCODE_NXDOMAIN => "NXDOMAIN".into(),
        RCODE_NOTIMP => "NOTIMP".into(),
        RCODE_REFUSED => "REFUSED".into(),
        n => format!("RCODE {n}"),
    }
}
