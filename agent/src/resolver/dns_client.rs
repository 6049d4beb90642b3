//! The stub resolver that asks the name servers of `resolv.conf`
//! ([`SystemResolver`], on `hickory-resolver`), behind the async
//! [`Lookup`] trait the host table is fed from.
//!
//! hickory builds the queries (random ids and source ports, EDNS), accepts
//! only responses that match a query sent (id and question), parses them,
//! asks again over TCP when a UDP answer is truncated, follows CNAMEs
//! (also by asking for the target) and times out. What this file adds:
//! - The host is always queried as an absolute name: no `search` or
//!   `domain` expansion and no `ndots` (policy hosts are fully qualified;
//!   expanding them would make the answer depend on the node's domain).
//!   `/etc/hosts` is not consulted and nothing is cached: every lookup asks.
//! - Servers are tried one at a time in the order of `resolv.conf`,
//!   `attempts` rounds, each try waiting `timeout`. NOERROR and NXDOMAIN
//!   are final; any other response code, a timeout or an I/O error moves
//!   on to the next server, as glibc does. (hickory's own server pool ends
//!   a lookup at the first SERVFAIL or REFUSED, so each server gets a
//!   hickory resolver of its own.)
//! - A and AAAA are asked together. When one family fails on every server
//!   but the other one has addresses, those addresses are the result (the
//!   host table keeps the failed family's earlier addresses until they
//!   expire).
//! - Only addresses owned by the queried name or by the CNAME chain that
//!   starts there count, each with the smallest TTL along its chain:
//!   hickory hands over the whole answer section, and records for other
//!   names in it must not grant anything.
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts, ServerOrderingStrategy,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::rdata::{A, AAAA, CNAME};
use hickory_resolver::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_resolver::{Resolver, TokioResolver};

use super::error::ResolveError;
use super::name::{literal, normalize, validate};
use super::resolv_conf::{ResolvConf, DEFAULT_PATH};

/// The TTL given to a literal IP address "host": the largest TTL DNS allows
/// (RFC 2181); the host table clamps it to its maximum.
pub const LITERAL_TTL: Duration = Duration::from_secs(i32::MAX as u64);
/// Longest CNAME chain followed inside one answer.
pub const MAX_CNAME_CHAIN: usize = 16;

/// Addresses with the time they may be used for, or why there are none.
/// `Ok(vec![])` means the name has no addresses (NXDOMAIN or no records).
pub type LookupResult = Result<Vec<(IpAddr, Duration)>, ResolveError>;
/// The future of one lookup.
pub type LookupFuture<'a> = Pin<Box<dyn Future<Output = LookupResult> + Send + 'a>>;

/// Resolves one host name to its addresses, each with the time it may be
/// used for.
pub trait Lookup: Send + Sync {
    fn lookup<'a>(&'a self, host: &'a str) -> LookupFuture<'a>;
}

/// Asks the name servers of a `resolv.conf`. One lookup takes at most
/// about `attempts × servers × timeout` (plus TCP fallbacks).
#[derive(Clone)]
pub struct SystemResolver {
    conf: ResolvConf,
    /// One resolver per name server, in the order of `conf.nameservers`.
    servers: Vec<(SocketAddr, TokioResolver)>,
}

impl std::fmt::Debug for SystemResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemResolver").field("conf", &self.conf).finish()
    }
}

impl SystemResolver {
    pub fn new(conf: ResolvConf) -> Result<SystemResolver, ResolveError> {
        let servers = conf
            .nameservers
            .iter()
            .map(|&server| server_resolver(server, &conf).map(|r| (server, r)))
            .collect::<Result<_, _>>()?;
        Ok(SystemResolver { conf, servers })
    }

    /// Reads the configuration from `path` (see [`ResolvConf::read`]).
    pub fn from_resolv_conf(path: &Path) -> Result<SystemResolver, ResolveError> {
        SystemResolver::new(ResolvConf::read(path)?)
    }

    /// Reads `/etc/resolv.conf`.
    pub fn system() -> Result<SystemResolver, ResolveError> {
        SystemResolver::from_resolv_conf(Path::new(DEFAULT_PATH))
    }

    pub fn conf(&self) -> &ResolvConf {
        &self.conf
    }

    async fn resolve(&self, host: &str) -> LookupResult {
        let name = normalize(host);
        if let Some(ip) = literal(&name) {
            return Ok(vec![(ip, LITERAL_TTL)]);
        }
        validate(host, &name)?;
        let fqdn = Name::from_ascii(format!("{name}.")).map_err(|_| ResolveError::InvalidName {
            host: host.to_string(),
            reason: "the name cannot be encoded",
        })?;
        let mut answers: [Option<Vec<(IpAddr, Duration)>>; 2] = [None, None];
        let mut errors: [Option<ResolveError>; 2] = [None, None];
        'rounds: for _ in 0..self.conf.attempts.max(1) {
            for (server, resolver) in &self.servers {
                let query = |i: usize, rtype| {
                    let pending = answers[i].is_none();
                    let fqdn = &fqdn;
                    let name = &name;
                    async move {
                        match pending {
                            true => Some(ask(resolver, *server, name, fqdn, rtype).await),
                            false => None,
                        }
                    }
                };
                let (a, aaaa) = tokio::join!(query(0, RecordType::A), query(1, RecordType::AAAA));
                for (i, result) in [a, aaaa].into_iter().enumerate() {
                    match result {
                        Some(Ok(found)) => answers[i] = Some(found),
                        Some(Err(e)) => errors[i] = Some(e),
                        None => {}
                    }
                }
                if answers.iter().all(Option::is_some) {
                    break 'rounds;
                }
            }
        }
        combine(&name, answers, errors)
    }
}

impl Lookup for SystemResolver {
    fn lookup<'a>(&'a self, host: &'a str) -> LookupFuture<'a> {
        Box::pin(self.resolve(host))
    }
}

/// A hickory resolver that asks `server` only (UDP, TCP on truncation),
/// once per call, without search domains, hosts file or cache.
fn server_resolver(server: SocketAddr, conf: &ResolvConf) -> Result<TokioResolver, ResolveError> {
    if let SocketAddr::V6(v6) = server {
        if v6.scope_id() != 0 {
            tracing::warn!(%server, "hickory cannot use the interface of a link-local name server; it is asked without it");
        }
    }
    let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
        .into_iter()
        .map(|mut c| {
            c.port = server.port();
            c
        })
        .collect();
    let name_server = NameServerConfig::new(server.ip(), true, connections);
    let config = ResolverConfig::from_parts(None, Vec::new(), vec![name_server]);
    let mut opts = ResolverOpts::default();
    opts.timeout = conf.timeout;
    // One try per call: the rounds over the servers are ours.
    opts.attempts = 0;
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.ndots = 0;
    opts.num_concurrent_reqs = 1;
    opts.preserve_intermediates = true;
    opts.server_ordering_strategy = ServerOrderingStrategy::UserProvidedOrder;
    Resolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .map_err(|e| ResolveError::Setup(format!("setting up the resolver for {server}: {e}")))
}

/// One query of `rtype` for `fqdn` to `server`, as addresses or an error
/// naming `name` and the server.
async fn ask(resolver: &TokioResolver, server: SocketAddr, name: &str, fqdn: &Name, rtype: RecordType) -> LookupResult {
    match resolver.lookup(fqdn.clone(), rtype).await {
        Ok(lookup) => Ok(follow_chain(fqdn, rtype, lookup.answers())),
        Err(e) => interpret_error(name, server, e),
    }
}

/// NXDOMAIN and "no records" are empty answers; the rest are errors.
fn interpret_error(name: &str, server: SocketAddr, e: NetError) -> LookupResult {
    let host = name.to_string();
    Err(match e {
        NetError::Dns(DnsError::NoRecordsFound(NoRecords {
            response_code: ResponseCode::NoError | ResponseCode::NXDomain,
            ..
        })) => return Ok(Vec::new()),
        NetError::Dns(DnsError::NoRecordsFound(NoRecords { response_code, .. }))
        | NetError::Dns(DnsError::ResponseCode(response_code)) => ResolveError::ServerFailure {
            host,
            server,
            rcode: u16::from(response_code),
        },
        NetError::Timeout => ResolveError::Timeout { host, server },
        NetError::Io(source) => ResolveError::Io {
            host,
            server,
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        other => ResolveError::Malformed {
            host,
            server,
            reason: other.to_string(),
        },
    })
}

/// One result from the A and AAAA outcomes (see the module documentation).
fn combine(
    name: &str,
    answers: [Option<Vec<(IpAddr, Duration)>>; 2],
    errors: [Option<ResolveError>; 2],
) -> LookupResult {
    let [a, aaaa] = answers;
    let [err_a, err_aaaa] = errors;
    let none = || ResolveError::NoNameservers { host: name.to_string() };
    match (a, aaaa) {
        (Some(mut a), Some(aaaa)) => {
            a.extend(aaaa);
            Ok(a)
        }
        (Some(a), None) if !a.is_empty() => {
            tracing::debug!(host = name, error = %err_aaaa.unwrap_or_else(none), "AAAA lookup failed; using the A records");
            Ok(a)
        }
        (None, Some(aaaa)) if !aaaa.is_empty() => {
            tracing::debug!(host = name, error = %err_a.unwrap_or_else(none), "A lookup failed; using the AAAA records");
            Ok(aaaa)
        }
        (None, _) => Err(err_a.unwrap_or_else(none)),
        (Some(_), None) => Err(err_aaaa.unwrap_or_else(none)),
    }
}

/// The addresses of type `rtype` reached from `name` through the CNAME
/// records among `records`, each with the smallest TTL along its chain.
/// Empty when the chain ends without such records, loops or is longer than
/// [`MAX_CNAME_CHAIN`]. Records of other owners are ignored.
pub fn follow_chain(name: &Name, rtype: RecordType, records: &[Record]) -> Vec<(IpAddr, Duration)> {
    let mut current = name;
    let mut chain_ttl = u32::MAX;
    for _ in 0..=MAX_CNAME_CHAIN {
        let owned = || records.iter().filter(|r| r.dns_class == DNSClass::IN && r.name == *current);
        let found: Vec<(IpAddr, Duration)> = owned()
            .filter_map(|r| {
                let ip = match (&r.data, rtype) {
                    (RData::A(A(a)), RecordType::A) => IpAddr::V4(*a),
                    (RData::AAAA(AAAA(a)), RecordType::AAAA) => IpAddr::V6(*a),
                    _ => return None,
                };
                Some((ip, Duration::from_secs(u64::from(r.ttl.min(chain_ttl)))))
            })
            .collect();
        if !found.is_empty() {
            return found;
        }
        match owned().find_map(|r| match &r.data {
            RData::CNAME(CNAME(target)) => Some((target, r.ttl)),
            _ => None,
        }) {
            Some((target, ttl)) => {
                chain_ttl = chain_ttl.min(ttl);
                current = target;
            }
            None => return Vec::new(),
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn rec(owner: &str, ttl: u32, data: RData) -> Record {
        Record::from_rdata(name(owner), ttl, data)
    }

    #[test]
    fn chain_takes_the_smallest_ttl_and_ignores_other_owners() {
        let v4 = |d| RData::A(A(Ipv4Addr::new(192, 0, 2, d)));
        let records = [
            rec("unrelated.test.", 5, v4(9)),
            rec("a.test.", 300, RData::CNAME(CNAME(name("b.test.")))),
            rec("b.test.", 60, RData::CNAME(CNAME(name("c.test.")))),
            rec("c.test.", 120, v4(1)),
            rec("c.test.", 30, v4(2)),
            rec("c.test.", 10, RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))),
        ];
        let secs = Duration::from_secs;
        assert_eq!(
            follow_chain(&name("A.Test."), RecordType::A, &records),
            [
                ("192.0.2.1".parse().expect("ip"), secs(60)),
                ("192.0.2.2".parse().expect("ip"), secs(30))
            ]
        );
        assert_eq!(
            follow_chain(&name("c.test."), RecordType::AAAA, &records),
            [(IpAddr::V6(Ipv6Addr::LOCALHOST), secs(10))]
        );
        assert_eq!(follow_chain(&name("b.test."), RecordType::AAAA, &records).len(), 1);
        assert!(follow_chain(&name("other.test."), RecordType::A, &records).is_empty());
    }

    #[test]
    fn chain_loops_and_dead_ends_give_nothing() {
        let looping = [
            rec("a.test.", 5, RData::CNAME(CNAME(name("b.test.")))),
            rec("b.test.", 5, RData::CNAME(CNAME(name("a.test.")))),
        ];
        assert!(follow_chain(&name("a.test."), RecordType::A, &looping).is_empty());
        let dead_end = [rec("a.test.", 5, RData::CNAME(CNAME(name("gone.test."))))];
        assert!(follow_chain(&name("a.test."), RecordType::A, &dead_end).is_empty());
    }
}
