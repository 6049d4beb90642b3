//! The error of resolving one host name ([`ResolveError`]).
use std::net::SocketAddr;
use std::path::PathBuf;

use super::wire::rcode_name;

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
        rcode: u8,
    },
    #[error("resolving {host}: {server}: {source}")]
    Io {
        host: String,
        server: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("resolving {host}: malformed answer from {server}: {reason}")]
    Malformed {
        host: String,
        server: SocketAddr,
        reason: &'static str,
    },
}
