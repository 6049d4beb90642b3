//! A small stub resolver that asks the name servers of `resolv.conf`
//! ([`SystemResolver`]), behind the [`Lookup`] trait the host table is fed
//! from.
//!
//! What it does, and does not do:
//! - The host is always queried as an absolute name: no `search` or
//!   `domain` expansion and no `ndots` (policy hosts are fully qualified;
//!   expanding them would make the answer depend on the node's domain).
//! - `/etc/hosts` and other NSS sources are not consulted.
//! - A and AAAA are sent together over one UDP socket per server; a
//!   truncated answer (TC bit) is asked again over TCP from the same server.
//! - Servers are tried in order, `attempts` rounds, each try waiting
//!   `timeout` (no exponential back-off as in glibc).
//! - NOERROR and NXDOMAIN are final; any other response code, a timeout or
//!   an I/O error moves on to the next server.
//! - CNAME chains are followed inside the answer section only; each address
//!   gets the smallest TTL along its chain.
//! - When one family fails on every server but the other one has
//!   addresses, those addresses are the result (the host table keeps the
//!   failed family's earlier addresses until they expire).
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::error::ResolveError;
use super::name::{literal, normalize, validate};
use super::resolv_conf::{ResolvConf, DEFAULT_PATH};
use super::transport::{tcp_exchange, udp_exchange, Query, TransportError};
use super::wire::{
    parse_answers, parse_question, RData, Record, CLASS_IN, RCODE_NOERROR, RCODE_NXDOMAIN, TYPE_A, TYPE_AAAA,
};

/// The TTL given to a literal IP address "host": the largest TTL DNS allows
/// (RFC 2181); the host table clamps it to its maximum.
pub const LITERAL_TTL: Duration = Duration::from_secs(i32::MAX as u64);
/// Longest CNAME chain followed.
pub const MAX_CNAME_CHAIN: usize = 16;

/// Resolves one host name to its addresses, each with the time it may be
/// used for. `Ok(vec![])` means the name has no addresses (NXDOMAIN or no
/// records).
pub trait Lookup {
    fn lookup(&self, host: &str) -> Result<Vec<(IpAddr, Duration)>, ResolveError>;
}

/// Asks the name servers of a `resolv.conf`. Blocking: one lookup takes at
/// most about `attempts × servers × timeout` (plus TCP fallbacks).
#[derive(Clone, Debug)]
pub struct SystemResolver {
    conf: ResolvConf,
}

impl SystemResolver {
    pub fn new(conf: ResolvConf) -> SystemResolver {
        SystemResolver { conf }
    }

    /// Reads the configuration from `path` (see [`ResolvConf::read`]).
    pub fn from_resolv_conf(path: &Path) -> Result<SystemResolver, ResolveError> {
        ResolvConf::read(path).map(SystemResolver::new)
    }

    /// Reads `/etc/resolv.conf`.
    pub fn system() -> Result<SystemResolver, ResolveError> {
        SystemResolver::from_resolv_conf(Path::new(DEFAULT_PATH))
    }

    pub fn conf(&self) -> &ResolvConf {
        &self.conf
    }

    /// The addresses (or why there are none) from one server's reply to
    /// `query`.
    fn interpret(
        &self,
        name: &str,
        server: SocketAddr,
        query: &Query,
        reply: Result<Vec<u8>, TransportError>,
    ) -> Result<Vec<(IpAddr, Duration)>, ResolveError> {
        let failed = |e| transport_error(name, server, e);
        let malformed = |reason| ResolveError::Malformed {
            host: name.to_string(),
            server,
            reason,
        };
        let mut msg = reply.map_err(failed)?;
        let (mut header, _, mut pos) = parse_question(&msg).map_err(malformed)?;
        if header.truncated() {
            msg = tcp_exchange(server, self.conf.timeout, query).map_err(failed)?;
            (header, _, pos) = parse_question(&msg).map_err(malformed)?;
        }
        match header.rcode() {
            RCODE_NOERROR => {}
            RCODE_NXDOMAIN => return Ok(Vec::new()),
            rcode => {
                return Err(ResolveError::ServerFailure {
                    host: name.to_string(),
                    server,
                    rcode,
                })
            }
        }
        let records = parse_answers(&msg, &header, pos).map_err(malformed)?;
        Ok(follow_chain(name, query.question.qtype, &records))
    }
}

impl Lookup for SystemResolver {
    fn lookup(&self, host: &str) -> Result<Vec<(IpAddr, Duration)>, ResolveError> {
        let name = normalize(host);
        if let Some(ip) = literal(&name) {
            return Ok(vec![(ip, LITERAL_TTL)]);
        }
        validate(host, &name)?;
        let (id_a, id_aaaa) = random_ids();
        let queries = [Query::new(id_a, &name, TYPE_A), Query::new(id_aaaa, &name, TYPE_AAAA)];
        let mut answers: [Option<Vec<(IpAddr, Duration)>>; 2] = [None, None];
        let mut errors: [Option<ResolveError>; 2] = [None, None];
        'rounds: for _ in 0..self.conf.attempts.max(1) {
            for &server in &self.conf.nameservers {
                let pending: Vec<usize> = (0..queries.len()).filter(|&i| answers[i].is_none()).collect();
                let sent: Vec<&Query> = pending.iter().map(|&i| &queries[i]).collect();
                let replies = udp_exchange(server, self.conf.timeout, &sent);
                for (i, reply) in pending.into_iter().zip(replies) {
                    match self.interpret(&name, server, &queries[i], reply) {
                        Ok(found) => answers[i] = Some(found),
                        Err(e) => errors[i] = Some(e),
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

/// One result from the A and AAAA outcomes (see the module documentation).
fn combine(
    name: &str,
    answers: [Option<Vec<(IpAddr, Duration)>>; 2],
    errors: [Option<ResolveError>; 2],
) -> Result<Vec<(IpAddr, Duration)>, ResolveError> {
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

fn transport_error(name: &str, server: SocketAddr, e: TransportError) -> ResolveError {
    let host = name.to_string();
    match e {
        TransportError::Timeout => ResolveError::Timeout { host, server },
        TransportError::Io(source) => ResolveError::Io { host, server, source },
        TransportError::Mismatch => ResolveError::Malformed {
            host,
            server,
            reason: "the TCP answer does not match the query",
        },
    }
}

/// The records of type `qtype` reached from `name` through the CNAME
/// records among `records`, each with the smallest TTL along its chain.
/// Empty when the chain ends without such records, loops or is longer than
/// [`MAX_CNAME_CHAIN`].
pub fn follow_chain(name: &str, qtype: u16, records: &[Record]) -> Vec<(IpAddr, Duration)> {
    let mut current = name;
    let mut chain_ttl = u32::MAX;
    for _ in 0..=MAX_CNAME_CHAIN {
        let owned = || records.iter().filter(|r| r.class == CLASS_IN && r.name == current);
        let found: Vec<(IpAddr, Duration)> = owned()
            .filter_map(|r| {
                let ip = match (&r.data, qtype) {
                    (RData::A(a), TYPE_A) => IpAddr::V4(*a),
                    (RData::Aaaa(a), TYPE_AAAA) => IpAddr::V6(*a),
                    _ => return None,
                };
                Some((ip, Duration::from_secs(u64::from(r.ttl.min(chain_ttl)))))
            })
            .collect();
        if !found.is_empty() {
            return found;
        }
        match owned().find_map(|r| match &r.data {
            RData::Cname(target) => Some((target, r.ttl)),
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

/// Two different random query ids, from `getrandom(2)` (or, should that
/// fail, a randomly keyed hash of a counter and the clock).
fn random_ids() -> (u16, u16) {
    let mut buf = [0u8; 4];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if usize::try_from(n).ok() != Some(buf.len()) {
        buf = fallback_random().to_ne_bytes();
    }
    let a = u16::from_ne_bytes([buf[0], buf[1]]);
    let b = u16::from_ne_bytes([buf[2], buf[3]]);
    (a, if a == b { a.wrapping_add(1) } else { b })
}

fn fallback_random() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.write_u128(clock.as_nanos());
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn rec(name: &str, ttl: u32, data: RData) -> Record {
        Record {
            name: name.into(),
            class: CLASS_IN,
            ttl,
            data,
        }
    }

    #[test]
    fn chain_takes_the_smallest_ttl_and_ignores_other_owners() {
        let v4 = |d| RData::A(Ipv4Addr::new(192, 0, 2, d));
        let records = [
            rec("unrelated.test", 5, v4(9)),
            rec("a.test", 300, RData::Cname("b.test".into())),
            rec("b.test", 60, RData::Cname("c.test".into())),
            rec("c.test", 120, v4(1)),
            rec("c.test", 30, v4(2)),
            rec("c.test", 10, RData::Aaaa(Ipv6Addr::LOCALHOST)),
        ];
        let secs = Duration::from_secs;
        assert_eq!(
            follow_chain("a.test", TYPE_A, &records),
            [
                ("192.0.2.1".parse().expect("ip"), secs(60)),
                ("192.0.2.2".parse().expect("ip"), secs(30))
            ]
        );
        assert_eq!(
            follow_chain("c.test", TYPE_AAAA, &records),
            [(IpAddr::V6(Ipv6Addr::LOCALHOST), secs(10))]
        );
        assert_eq!(follow_chain("b.test", TYPE_AAAA, &records).len(), 1);
        assert!(follow_chain("other.test", TYPE_A, &records).is_empty());
    }

    #[test]
    fn chain_loops_and_dead_ends_give_nothing() {
        let looping = [
            rec("a.test", 5, RData::Cname("b.test".into())),
            rec("b.test", 5, RData::Cname("a.test".into())),
        ];
        assert!(follow_chain("a.test", TYPE_A, &looping).is_empty());
        let dead_end = [rec("a.test", 5, RData::Cname("gone.test".into()))];
        assert!(follow_chain("a.test", TYPE_A, &dead_end).is_empty());
    }

    #[test]
    fn ids_differ() {
        for _ in 0..100 {
            let (a, b) = random_ids();
            assert_ne!(a, b);
        }
        let ids: std::collections::BTreeSet<u16> = (0..50).map(|_| random_ids().0).collect();
        assert!(ids.len() > 40, "ids do not look random: {ids:?}");
    }
}
