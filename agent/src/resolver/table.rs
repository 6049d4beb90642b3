//! The host table: for every wanted external host, the addresses it
//! currently has (each valid until its own expiry) and when to ask again.
//! Pure: no I/O; time comes in as [`Instant`].
//!
//! The datapath follows the table without a window in which a still-valid
//! address is dropped: a new answer adds addresses and extends expiries
//! but never removes an address (DNS round-robin), a failed lookup changes
//! nothing, and only [`HostTable::expire`] removes addresses, once their
//! own lifetime has run out (fail closed).
//!
//! A lifetime is the answer's TTL clamped to [`TtlPolicy`]: at least 5 s
//! (a TTL of 0 would allow nothing) and at most one hour, whatever the TTL
//! says. So an address that a changed answer no longer lists is gone at
//! most one hour after the last answer that listed it, and addresses
//! remembered from a previous agent are trusted for at most one hour too.
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::error::ResolveError;
use super::name::normalize;

/// Most addresses kept per host. Beyond it, the addresses of the newest
/// answer stay and older addresses are dropped soonest-expiring first (a
/// bound on what a misbehaving server can push into the datapath).
pub const MAX_ADDRESSES_PER_HOST: usize = 256;
/// Shortest time between two lookups of one host, whatever the policy
/// (guards against a zero TTL or zero retry spinning).
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Longest TTL honoured (RFC 2181's maximum), whatever the policy.
pub const MAX_TTL: Duration = Duration::from_secs(i32::MAX as u64);
/// Longest life of an answer under the default policy.
pub const ONE_HOUR: Duration = Duration::from_secs(3600);

/// How answer TTLs are turned into lifetimes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TtlPolicy {
    /// TTLs below this count as this (a TTL of 0 would allow nothing).
    pub min: Duration,
    /// TTLs above this count as this: an address lives at most this long
    /// after the last answer that listed it (wins over `min` if they
    /// cross).
    pub max: Duration,
    /// After a failed lookup (or an answer without addresses), ask again
    /// after this long.
    pub retry: Duration,
}

impl Default for TtlPolicy {
    fn default() -> Self {
        TtlPolicy {
            min: Duration::from_secs(5),
            max: ONE_HOUR,
            retry: Duration::from_secs(5),
        }
    }
}

impl TtlPolicy {
    /// How long an address answered with `ttl` stays valid (and what
    /// schedules the next lookup): the TTL, at least `min`, at most `max`.
    pub fn lifetime(&self, ttl: Duration) -> Duration {
        ttl.max(self.min).min(self.max).min(MAX_TTL)
    }

    /// How long after an answer whose shortest lifetime is `life` the host
    /// is asked again: at 90% of it, at least 1 s before it runs out, but
    /// not before half of it (nor before [`MIN_INTERVAL`]).
    pub fn refresh_after(&self, life: Duration) -> Duration {
        let early = (life.saturating_mul(9) / 10).min(life.saturating_sub(Duration::from_secs(1)));
        early.max(life / 2).max(MIN_INTERVAL)
    }

    fn retry_after(&self) -> Duration {
        self.retry.clamp(MIN_INTERVAL, MAX_TTL)
    }
}

/// One line of status output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HostStatus {
    pub host: String,
    /// Currently valid addresses, sorted.
    pub addresses: Vec<String>,
    /// Seconds (rounded up) until the first of them expires.
    pub expires_in_s: Option<u64>,
    /// The error of the last lookup, when it failed.
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default)]
struct Entry {
    /// Address → the instant it stops being valid.
    addresses: BTreeMap<IpAddr, Instant>,
    /// When to ask again; `None` until the first lookup (due at once).
    refresh_at: Option<Instant>,
    /// The error of the last lookup, when it failed.
    error: Option<String>,
}

impl Entry {
    fn valid(&self, now: Instant) -> impl Iterator<Item = (&IpAddr, &Instant)> {
        self.addresses.iter().filter(move |(_, &until)| until > now)
    }

    fn valid_set(&self, now: Instant) -> BTreeSet<IpAddr> {
        self.valid(now).map(|(ip, _)| *ip).collect()
    }

    /// Keeps at most [`MAX_ADDRESSES_PER_HOST`] valid addresses, dropping
    /// those not in `fresh` that expire first. Expired addresses are left
    /// for [`HostTable::expire`], which reports them.
    fn enforce_limit(&mut self, now: Instant, fresh: &BTreeSet<IpAddr>) {
        let valid = self.valid(now).count();
        if valid <= MAX_ADDRESSES_PER_HOST {
            return;
        }
        let mut older: Vec<(Instant, IpAddr)> = self
            .valid(now)
            .filter(|(ip, _)| !fresh.contains(ip))
            .map(|(ip, until)| (*until, *ip))
            .collect();
        older.sort();
        for (_, ip) in older.into_iter().take(valid - MAX_ADDRESSES_PER_HOST) {
            self.addresses.remove(&ip);
        }
    }
}

/// The wanted hosts and their addresses.
#[derive(Clone, Debug)]
pub struct HostTable {
    policy: TtlPolicy,
    hosts: BTreeMap<String, Entry>,
}

impl HostTable {
    pub fn new(policy: TtlPolicy) -> Self {
        HostTable {
            policy,
            hosts: BTreeMap::new(),
        }
    }

    pub fn policy(&self) -> &TtlPolicy {
        &self.policy
    }

    /// Sets the hosts wanted (names normalised: lowercase, trailing dot
    /// removed); forgets hosts no longer wanted and their addresses. New
    /// hosts are due at once. Returns true when the address view changed
    /// (a host was added or removed).
    pub fn set_hosts(&mut self, hosts: impl IntoIterator<Item = String>) -> bool {
        let wanted: BTreeSet<String> = hosts.into_iter().map(|h| normalize(&h)).collect();
        let before = self.hosts.len();
        self.hosts.retain(|host, _| wanted.contains(host));
        let mut changed = self.hosts.len() != before;
        for host in wanted {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.hosts.entry(host) {
                slot.insert(Entry::default());
                changed = true;
            }
        }
        changed
    }

    /// Hosts that must be (re)resolved at `now`: never resolved, or their
    /// refresh time (shortly before the newest answer expires, see
    /// [`TtlPolicy::refresh_after`]) or retry time has come.
    pub fn due(&self, now: Instant) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|(_, e)| e.refresh_at.is_none_or(|at| at <= now))
            .map(|(host, _)| host.clone())
            .collect()
    }

    /// Records one lookup of `host` (normalised here too) made at `now`;
    /// ignored for hosts not wanted. `Ok(answers)`: each address is valid
    /// until `now + lifetime(ttl)`, an address already present keeps the later
    /// of both expiries, addresses missing from the answer stay until their
    /// own expiry; the host is asked again at
    /// [`TtlPolicy::refresh_after`] of the shortest lifetime, or after
    /// `retry` when the answer has no address. `Err`: the addresses stay,
    /// the error is kept for [`HostTable::status`], and the host is asked
    /// again after `retry`. Returns true when the set of addresses valid at
    /// `now` changed.
    pub fn record(&mut self, host: &str, now: Instant, result: Result<Vec<(IpAddr, Duration)>, ResolveError>) -> bool {
        let policy = self.policy;
        let Some(entry) = self.hosts.get_mut(&normalize(host)) else {
            return false;
        };
        let before = entry.valid_set(now);
        match result {
            Ok(answers) => {
                let mut fresh = BTreeSet::new();
                let mut shortest: Option<Duration> = None;
                for (ip, ttl) in answers {
                    if fresh.len() == MAX_ADDRESSES_PER_HOST && !fresh.contains(&ip) {
                        continue;
                    }
                    let life = policy.lifetime(ttl);
                    let until = now + life;
                    entry
                        .addresses
                        .entry(ip)
                        .and_modify(|u| *u = (*u).max(until))
                        .or_insert(until);
                    fresh.insert(ip);
                    shortest = Some(shortest.map_or(life, |s| s.min(life)));
                }
                entry.enforce_limit(now, &fresh);
                let after = shortest.map_or(policy.retry_after(), |life| policy.refresh_after(life));
                entry.refresh_at = Some(now + after);
                entry.error = None;
            }
            Err(e) => {
                entry.refresh_at = Some(now + policy.retry_after());
                entry.error = Some(e.to_string());
            }
        }
        entry.valid_set(now) != before
    }

    /// Drops addresses whose expiry has passed (`expiry <= now`); true when
    /// something was dropped.
    pub fn expire(&mut self, now: Instant) -> bool {
        let mut dropped = false;
        for entry in self.hosts.values_mut() {
            let before = entry.addresses.len();
            entry.addresses.retain(|_, until| *until > now);
            dropped |= entry.addresses.len() != before;
        }
        dropped
    }

    /// Currently valid addresses per wanted host, sorted and deduplicated;
    /// hosts without any map to an empty `Vec`.
    pub fn addresses(&self, now: Instant) -> BTreeMap<String, Vec<IpAddr>> {
        self.hosts
            .iter()
            .map(|(host, e)| (host.clone(), e.valid(now).map(|(ip, _)| *ip).collect()))
            .collect()
    }

    /// The earliest instant at which a host is due again or an address
    /// expires, for the caller's sleep. Hosts never resolved have no
    /// deadline of their own: they are due at once (resolve them with
    /// [`super::refresh`] after [`HostTable::set_hosts`]). `None` when
    /// nothing is scheduled.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.hosts
            .values()
            .flat_map(|e| e.refresh_at.into_iter().chain(e.addresses.values().copied()))
            .min()
    }

    /// Is `host` wanted?
    pub fn wants(&self, host: &str) -> bool {
        self.hosts.contains_key(&normalize(host))
    }

    /// Adds addresses remembered from before a restart, each valid for its
    /// remaining lifetime (at most the policy's `max`), to a wanted host,
    /// without changing when it is asked (a host never resolved stays due
    /// at once). At most [`MAX_ADDRESSES_PER_HOST`] per host. Returns true
    /// when the address view changed.
    pub fn seed(&mut self, host: &str, now: Instant, remembered: &[(IpAddr, Duration)]) -> bool {
        let Some(entry) = self.hosts.get_mut(&normalize(host)) else {
            return false;
        };
        let before = entry.valid_set(now);
        for (ip, left) in remembered.iter().take(MAX_ADDRESSES_PER_HOST) {
            let until = now + (*left).min(self.policy.max).min(MAX_TTL);
            entry.addresses.entry(*ip).and_modify(|u| *u = (*u).max(until)).or_insert(until);
        }
        entry.enforce_limit(now, &BTreeSet::new());
        entry.valid_set(now) != before
    }

    /// Per wanted host, its valid addresses with the time each has left.
    pub fn lifetimes(&self, now: Instant) -> BTreeMap<String, Vec<(IpAddr, Duration)>> {
        self.hosts
            .iter()
            .map(|(host, e)| (host.clone(), e.valid(now).map(|(ip, until)| (*ip, *until - now)).collect()))
            .collect()
    }

    /// Per wanted host: its valid addresses, when the first of them
    /// expires, and the error of the last lookup.
    pub fn status(&self, now: Instant) -> Vec<HostStatus> {
        self.hosts
            .iter()
            .map(|(host, e)| HostStatus {
                host: host.clone(),
                addresses: e.valid(now).map(|(ip, _)| ip.to_string()).collect(),
                expires_in_s: e.valid(now).map(|(_, until)| ceil_secs(*until - now)).min(),
                error: e.error.clone(),
            })
            .collect()
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
