//! Resolving the host names the rules need (OSM `Egress` hosts,
//! `MESH_INTERNAL` ServiceEntry endpoints) off the main loop: a thread
//! owns the [`HostTable`], starts each due lookup on a thread of its own
//! (a slow or dead name server holds up only the names it is asked
//! about), records each answer as of the moment its query was sent, and
//! publishes the currently valid addresses; the loop recompiles when they
//! change. Addresses stay valid until their own TTL runs out, so the
//! datapath never drops a still-valid answer between two lookups.
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::resolver::{HostStatus, HostTable, Lookup, ResolveError, SystemResolver, TtlPolicy};

/// How long `resolve_once` waits for all names (one-shot commands).
const ONE_SHOT_DEADLINE: Duration = Duration::from_secs(10);
/// Longest sleep of the resolver thread when nothing is due.
const IDLE: Duration = Duration::from_secs(30);
/// How often expiries are checked while lookups are in flight (answers
/// wake the thread at once).
const IN_FLIGHT_POLL: Duration = Duration::from_millis(250);
/// Lookups running at once.
const MAX_IN_FLIGHT: usize = 32;

/// Where the resolver thread gets its lookups from (the system resolver,
/// or a scripted one in tests).
pub type Resolvers = Box<dyn Fn() -> Result<Arc<dyn Lookup + Send + Sync>, ResolveError> + Send>;

/// What the resolver thread publishes.
#[derive(Clone, Debug, Default)]
pub struct Published {
    /// Bumped whenever `addresses` changes.
    pub version: u64,
    pub addresses: BTreeMap<String, Vec<IpAddr>>,
    pub status: Vec<HostStatus>,
    /// Every wanted name has been asked about at least once (answered or
    /// failed).
    pub settled: bool,
}

/// The answer of one lookup thread.
struct Answer {
    host: String,
    /// When the query was sent: lifetimes count from here.
    asked: Instant,
    result: Result<Vec<(IpAddr, Duration)>, ResolveError>,
}

#[derive(Default)]
struct Shared {
    wanted: BTreeSet<String>,
    wanted_version: u64,
    published: Published,
    answers: Vec<Answer>,
}

/// Handle of the resolver thread.
#[derive(Clone)]
pub struct HostResolver {
    shared: Arc<(Mutex<Shared>, Condvar)>,
}

impl HostResolver {
    /// Start the thread, resolving through the nameservers of
    /// `resolv_conf` (re-read at every round, as glibc does on change).
    pub fn spawn(resolv_conf: PathBuf) -> Self {
        let resolvers: Resolvers = Box::new(move || {
            SystemResolver::from_resolv_conf(&resolv_conf).map(|r| Arc::new(r) as Arc<dyn Lookup + Send + Sync>)
        });
        Self::spawn_with(resolvers)
    }

    /// Start the thread with lookups from `resolvers` (called for every
    /// round of due names).
    pub fn spawn_with(resolvers: Resolvers) -> Self {
        let handle = Self { shared: Arc::new((Mutex::new(Shared::default()), Condvar::new())) };
        let worker = handle.clone();
        std::thread::Builder::new()
            .name("tollgate-resolver".into())
            .spawn(move || worker.run(&*resolvers))
            .map(|_| ())
            .unwrap_or_else(|e| warn!(error = %e, "cannot start the resolver thread; host names stay unresolved"));
        handle
    }

    /// Ask for exactly these names (wakes the thread when they change).
    pub fn want(&self, hosts: &BTreeSet<String>) {
        let (lock, wake) = &*self.shared;
        let mut shared = lock.lock().unwrap_or_else(|p| p.into_inner());
        if &shared.wanted != hosts {
            shared.wanted = hosts.clone();
            shared.wanted_version += 1;
            wake.notify_all();
        }
    }

    pub fn published(&self) -> Published {
        let (lock, _) = &*self.shared;
        lock.lock().unwrap_or_else(|p| p.into_inner()).published.clone()
    }

    fn run(&self, resolvers: &(dyn Fn() -> Result<Arc<dyn Lookup + Send + Sync>, ResolveError> + Send)) {
        let mut table = HostTable::new(TtlPolicy::default());
        let (lock, wake) = &*self.shared;
        let mut seen_wanted = u64::MAX;
        let mut in_flight: BTreeSet<String> = BTreeSet::new();
        let mut asked_once: BTreeSet<String> = BTreeSet::new();
        loop {
            let (wanted, answers) = {
                let mut shared = lock.lock().unwrap_or_else(|p| p.into_inner());
                let wanted = (shared.wanted_version != seen_wanted).then(|| {
                    seen_wanted = shared.wanted_version;
                    shared.wanted.clone()
                });
                (wanted, std::mem::take(&mut shared.answers))
            };
            let mut changed = false;
            if let Some(w) = wanted {
                asked_once.retain(|h| w.contains(h));
                changed |= table.set_hosts(w);
            }
            for a in answers {
                in_flight.remove(&a.host);
                if let Err(e) = &a.result {
                    debug!(host = %a.host, error = %e, "lookup failed");
                }
                changed |= table.record(&a.host, a.asked, a.result);
                asked_once.insert(a.host);
            }
            let now = Instant::now();
            let due: Vec<String> = table.due(now).into_iter().filter(|h| !in_flight.contains(h)).collect();
            if !due.is_empty() {
                match resolvers() {
                    Ok(lookup) => {
                        let room = MAX_IN_FLIGHT.saturating_sub(in_flight.len());
                        for host in due.into_iter().take(room) {
                            in_flight.insert(host.clone());
                            self.start_lookup(Arc::clone(&lookup), host);
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot read the resolver configuration");
                        for host in due {
                            let err = ResolveError::Setup(e.to_string());
                            changed |= table.record(&host, now, Err(err));
                            asked_once.insert(host);
                        }
                    }
                }
            }
            changed |= table.expire(now);
            let mut shared = lock.lock().unwrap_or_else(|p| p.into_inner());
            shared.published.status = table.status(now);
            shared.published.settled = shared.wanted.iter().all(|h| asked_once.contains(h));
            if changed {
                shared.published.version += 1;
                shared.published.addresses = table.addresses(now);
                debug!(version = shared.published.version, "host addresses changed");
            }
            let sleep = match table.next_deadline() {
                Some(d) if d > now => (d - now).min(IDLE),
                // Due but in flight: the answer wakes us.
                Some(_) => IN_FLIGHT_POLL,
                None => IDLE,
            }
            .max(Duration::from_millis(50));
            if shared.wanted_version == seen_wanted && shared.answers.is_empty() {
                let _ = wake.wait_timeout(shared, sleep);
            }
        }
    }

    /// One lookup on a thread of its own; its answer wakes the resolver.
    fn start_lookup(&self, lookup: Arc<dyn Lookup + Send + Sync>, host: String) {
        let shared = Arc::clone(&self.shared);
        let deliver = move |shared: &Arc<(Mutex<Shared>, Condvar)>, answer: Answer| {
            let (lock, wake) = &**shared;
            lock.lock().unwrap_or_else(|p| p.into_inner()).answers.push(answer);
            wake.notify_all();
        };
        let fallback = Arc::clone(&shared);
        let name = host.clone();
        let spawned = std::thread::Builder::new().name("tollgate-lookup".into()).spawn(move || {
            let asked = Instant::now();
            let result = lookup.lookup(&host);
            deliver(&shared, Answer { host, asked, result });
        });
        if let Err(e) = spawned {
            warn!(host = %name, error = %e, "cannot start a lookup thread");
            let err = ResolveError::Setup(format!("resolving {name}: cannot start a lookup thread: {e}"));
            let (lock, wake) = &*fallback;
            lock.lock().unwrap_or_else(|p| p.into_inner()).answers.push(Answer { host: name, asked: Instant::now(), result: Err(err) });
            wake.notify_all();
        }
    }
}

/// Resolve `hosts` once (for `verify --manifests` and `analyze`): the
/// addresses each name has now; names that fail map to nothing, with a
/// warning on stderr.
pub fn resolve_once(hosts: &BTreeSet<String>, resolv_conf: &Path) -> BTreeMap<String, Vec<IpAddr>> {
    let lookup = match SystemResolver::from_resolv_conf(resolv_conf) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("warning: cannot resolve {} host name(s): {e}", hosts.len());
            return BTreeMap::new();
        }
    };
    let started = Instant::now();
    let mut out = BTreeMap::new();
    for host in hosts {
        if started.elapsed() > ONE_SHOT_DEADLINE {
            eprintln!("warning: {host}: not resolved (gave up after {ONE_SHOT_DEADLINE:?})");
            out.insert(host.clone(), Vec::new());
            continue;
        }
        let ips = match lookup.lookup(host) {
            Ok(answers) => {
                let mut ips: Vec<IpAddr> = answers.into_iter().map(|(ip, _)| ip).collect();
                ips.sort();
                ips.dedup();
                ips
            }
            Err(e) => {
                eprintln!("warning: {e}; its rules allow nothing");
                Vec::new()
            }
        };
        out.insert(host.clone(), ips);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers each name after its own delay.
    struct Scripted(BTreeMap<&'static str, (Duration, &'static str)>);

    impl Lookup for Scripted {
        fn lookup(&self, host: &str) -> Result<Vec<(IpAddr, Duration)>, ResolveError> {
            let (delay, ip) = self.0.get(host).copied().ok_or_else(|| ResolveError::Setup(format!("{host}: unknown")))?;
            std::thread::sleep(delay);
            Ok(vec![(ip.parse().expect("ip"), Duration::from_secs(30))])
        }
    }

    fn wait_for(resolver: &HostResolver, what: impl Fn(&Published) -> bool) -> Published {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let p = resolver.published();
            if what(&p) || Instant::now() > deadline {
                return p;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_slow_name_server_delays_only_its_own_names() {
        let script = Scripted(BTreeMap::from([
            ("fast.test", (Duration::ZERO, "192.0.2.1")),
            ("slow.test", (Duration::from_millis(1500), "192.0.2.2")),
        ]));
        let lookup: Arc<dyn Lookup + Send + Sync> = Arc::new(script);
        let resolver = HostResolver::spawn_with(Box::new(move || Ok(Arc::clone(&lookup))));
        let started = Instant::now();
        resolver.want(&BTreeSet::from(["fast.test".to_owned(), "slow.test".to_owned()]));
        let p = wait_for(&resolver, |p| p.addresses.get("fast.test").is_some_and(|a| !a.is_empty()));
        assert!(started.elapsed() < Duration::from_millis(1000), "fast.test waited for slow.test: {:?}", started.elapsed());
        assert_eq!(p.addresses["fast.test"], ["192.0.2.1".parse::<IpAddr>().expect("ip")]);
        assert!(!p.settled, "slow.test is still being looked up");
        let p = wait_for(&resolver, |p| p.settled);
        assert!(p.settled);
        assert_eq!(p.addresses["slow.test"], ["192.0.2.2".parse::<IpAddr>().expect("ip")]);
        // The slow answer counts from when its query was sent, not from a
        // round that started before it.
        let slow = p.status.iter().find(|s| s.host == "slow.test").expect("status of slow.test");
        assert!(slow.expires_in_s.is_some_and(|s| s >= 28), "{slow:?}");
    }
}
