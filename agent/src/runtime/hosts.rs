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
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

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
    /// `addresses` with the wall-clock time each stops being valid (what
    /// a restarted agent remembers, see [`save`]).
    pub expiries: BTreeMap<String, Vec<(IpAddr, SystemTime)>>,
}

/// Addresses per name with the time they have left.
pub type Remembered = BTreeMap<String, Vec<(IpAddr, Duration)>>;

/// One remembered address in the state folder's hosts file.
#[derive(Serialize, Deserialize)]
struct SavedAddress {
    ip: IpAddr,
    /// Milliseconds since the Unix epoch.
    expires_unix_ms: u64,
}

#[derive(Serialize, Deserialize, Default)]
struct SavedHosts {
    hosts: BTreeMap<String, Vec<SavedAddress>>,
}

/// Writes what `published` allows, with expiries, for the next agent.
pub fn save(path: &Path, published: &Published) -> std::io::Result<()> {
    let ms = |t: &SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let saved = SavedHosts {
        hosts: published
            .expiries
            .iter()
            .map(|(host, addrs)| {
                (host.clone(), addrs.iter().map(|(ip, t)| SavedAddress { ip: *ip, expires_unix_ms: ms(t) }).collect())
            })
            .collect(),
    };
    super::state::write_json(path, &saved, false)
}

/// What a previous agent saved at `path` and is still valid; nothing when
/// the file is missing or unreadable (reported).
pub fn load(path: &Path) -> Remembered {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Remembered::new(),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read the remembered host addresses");
            return Remembered::new();
        }
    };
    let saved: SavedHosts = match serde_json::from_str(&text) {
        Ok(s) => s,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "ignoring the remembered host addresses");
            return Remembered::new();
        }
    };
    let now = SystemTime::now();
    saved
        .hosts
        .into_iter()
        .map(|(host, addrs)| {
            let left = addrs
                .into_iter()
                .filter_map(|a| {
                    let until = UNIX_EPOCH + Duration::from_millis(a.expires_unix_ms);
                    until.duration_since(now).ok().map(|d| (a.ip, d))
                })
                .collect();
            (host, left)
        })
        .collect()
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
    /// `remembered` holds addresses a previous agent allowed, with the time
    /// they have left: they stay allowed for it while the names are asked
    /// again.
    pub fn spawn(resolv_conf: PathBuf, remembered: Remembered) -> Self {
        let resolvers: Resolvers = Box::new(move || {
            SystemResolver::from_resolv_conf(&resolv_conf).map(|r| Arc::new(r) as Arc<dyn Lookup + Send + Sync>)
        });
        Self::spawn_with(resolvers, remembered)
    }

    /// Start the thread with lookups from `resolvers` (called for every
    /// round of due names).
    pub fn spawn_with(resolvers: Resolvers, remembered: Remembered) -> Self {
        let handle = Self { shared: Arc::new((Mutex::new(Shared::default()), Condvar::new())) };
        let worker = handle.clone();
        std::thread::Builder::new()
            .name("tollgate-resolver".into())
            .spawn(move || worker.run(&*resolvers, remembered))
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
            // Until the thread has asked about the new names.
            shared.published.settled = false;
            wake.notify_all();
        }
    }

    pub fn published(&self) -> Published {
        let (lock, _) = &*self.shared;
        lock.lock().unwrap_or_else(|p| p.into_inner()).published.clone()
    }

    fn run(&self, resolvers: &(dyn Fn() -> Result<Arc<dyn Lookup + Send + Sync>, ResolveError> + Send), remembered: Remembered) {
        let mut table = HostTable::new(TtlPolicy::default());
        // Remembered addresses as instants, seeded into the table when
        // their name is first wanted (the runtime says which names it
        // wants only after it has read its input).
        let start = Instant::now();
        let mut remembered: BTreeMap<String, Vec<(IpAddr, Instant)>> = remembered
            .into_iter()
            .map(|(host, addrs)| (host, addrs.into_iter().map(|(ip, left)| (ip, start + left)).collect()))
            .collect();
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
                let now = Instant::now();
                remembered.retain(|host, addrs| {
                    if !table.wants(host) {
                        return true;
                    }
                    let left: Vec<(IpAddr, Duration)> = addrs
                        .iter()
                        .filter(|(_, until)| *until > now)
                        .map(|(ip, until)| (*ip, *until - now))
                        .collect();
                    changed |= table.seed(host, now, &left);
                    false
                });
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
                let wall = SystemTime::now();
                shared.published.expiries = table
                    .lifetimes(now)
                    .into_iter()
                    .map(|(host, addrs)| (host, addrs.into_iter().map(|(ip, left)| (ip, wall + left)).collect()))
                    .collect();
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
        let worker = self.clone();
        let name = host.clone();
        let spawned = std::thread::Builder::new().name("tollgate-lookup".into()).spawn(move || {
            let asked = Instant::now();
            let result = lookup.lookup(&host);
            worker.deliver(Answer { host, asked, result });
        });
        if let Err(e) = spawned {
            warn!(host = %name, error = %e, "cannot start a lookup thread");
            let err = ResolveError::Setup(format!("resolving {name}: cannot start a lookup thread: {e}"));
            self.deliver(Answer { host: name, asked: Instant::now(), result: Err(err) });
        }
    }

    /// Hands an answer to the resolver thread and wakes it.
    fn deliver(&self, answer: Answer) {
        let (lock, wake) = &*self.shared;
        lock.lock().unwrap_or_else(|p| p.into_inner()).answers.push(answer);
        wake.notify_all();
    }
}

/// Resolve `hosts` once (for `verify --manifests` and `analyze`): the
/// addresses each name has now; names that fail map to nothing, with a
/// warning on stderr.
pub fn resolve_once(hosts: &BTreeSet<String>, resolv_conf: &Path) -> BTreeMap<String, Vec<IpAddr>> {
    let lookup = match SystemResolver::from_resolv_conf(resolv_conf) {
        Ok(l) => Arc::new(l) as Arc<dyn Lookup + Send + Sync>,
        Err(e) => {
            eprintln!("warning: cannot resolve {} host name(s): {e}", hosts.len());
            return BTreeMap::new();
        }
    };
    resolve_all(hosts, lookup, ONE_SHOT_DEADLINE)
}

/// Looks up every name at once, each on its own thread, and waits at most
/// `deadline` in all; names not answered by then map to nothing.
fn resolve_all(hosts: &BTreeSet<String>, lookup: Arc<dyn Lookup + Send + Sync>, deadline: Duration) -> BTreeMap<String, Vec<IpAddr>> {
    let (tx, rx) = std::sync::mpsc::channel();
    for host in hosts {
        let (tx, lookup, host) = (tx.clone(), Arc::clone(&lookup), host.clone());
        let spawned = std::thread::Builder::new().name("tollgate-lookup".into()).spawn(move || {
            let result = lookup.lookup(&host);
            let _ = tx.send((host, result));
        });
        if let Err(e) = spawned {
            eprintln!("warning: cannot start a lookup thread: {e}");
        }
    }
    drop(tx);
    let end = Instant::now() + deadline;
    let mut out: BTreeMap<String, Vec<IpAddr>> = hosts.iter().map(|h| (h.clone(), Vec::new())).collect();
    let mut answered = BTreeSet::new();
    while answered.len() < hosts.len() {
        let Ok((host, result)) = rx.recv_timeout(end.saturating_duration_since(Instant::now())) else { break };
        match result {
            Ok(answers) => {
                let mut ips: Vec<IpAddr> = answers.into_iter().map(|(ip, _)| ip).collect();
                ips.sort();
                ips.dedup();
                out.insert(host.clone(), ips);
            }
            Err(e) => eprintln!("warning: {e}; its rules allow nothing"),
        }
        answered.insert(host);
    }
    for host in hosts.iter().filter(|h| !answered.contains(*h)) {
        eprintln!("warning: {host}: not resolved (gave up after {deadline:?}); its rules allow nothing");
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
        let resolver = HostResolver::spawn_with(Box::new(move || Ok(Arc::clone(&lookup))), Remembered::new());
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

    #[test]
    fn remembered_addresses_stay_allowed_while_the_name_server_is_down() {
        let down: Arc<dyn Lookup + Send + Sync> = Arc::new(Scripted(BTreeMap::new()));
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        let remembered = Remembered::from([("osm.test".to_owned(), vec![(ip, Duration::from_secs(60))])]);
        let resolver = HostResolver::spawn_with(Box::new(move || Ok(Arc::clone(&down))), remembered);
        // As in the agent, the names come after the thread has started.
        std::thread::sleep(Duration::from_millis(200));
        resolver.want(&BTreeSet::from(["osm.test".to_owned()]));
        let p = wait_for(&resolver, |p| p.settled);
        assert!(p.settled, "the failed lookup settles the name");
        assert_eq!(p.addresses["osm.test"], [ip], "a failed lookup keeps what is still valid");
        let status = &p.status[0];
        assert!(status.error.is_some() && status.expires_in_s.is_some_and(|s| s > 50), "{status:?}");
    }

    #[test]
    fn saved_addresses_come_back_with_the_time_they_have_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hosts.json");
        assert!(load(&path).is_empty(), "no file: nothing remembered");
        let now = SystemTime::now();
        let (live, gone): (IpAddr, IpAddr) = ("192.0.2.1".parse().expect("ip"), "192.0.2.2".parse().expect("ip"));
        let published = Published {
            expiries: BTreeMap::from([(
                "a.test".to_owned(),
                vec![(live, now + Duration::from_secs(120)), (gone, now - Duration::from_secs(1))],
            )]),
            ..Published::default()
        };
        save(&path, &published).expect("save");
        let back = load(&path);
        let left = &back["a.test"];
        assert_eq!(left.len(), 1, "expired addresses are not remembered: {left:?}");
        assert_eq!(left[0].0, live);
        assert!(left[0].1 > Duration::from_secs(110) && left[0].1 <= Duration::from_secs(120), "{left:?}");
        std::fs::write(&path, "not json").expect("write");
        assert!(load(&path).is_empty(), "a bad file is ignored");
    }

    #[test]
    fn one_shot_lookups_run_together_and_give_up_at_the_deadline() {
        let script = Scripted(BTreeMap::from([
            ("a.test", (Duration::from_millis(300), "192.0.2.1")),
            ("b.test", (Duration::from_millis(300), "192.0.2.2")),
            ("hung.test", (Duration::from_secs(30), "192.0.2.3")),
        ]));
        let hosts: BTreeSet<String> = ["a.test", "b.test", "hung.test"].iter().map(|s| s.to_string()).collect();
        let started = Instant::now();
        let got = resolve_all(&hosts, Arc::new(script), Duration::from_millis(900));
        let took = started.elapsed();
        assert!(took < Duration::from_millis(2000), "waited {took:?}");
        assert_eq!(got["a.test"], ["192.0.2.1".parse::<IpAddr>().expect("ip")]);
        assert_eq!(got["b.test"], ["192.0.2.2".parse::<IpAddr>().expect("ip")]);
        assert!(got["hung.test"].is_empty());
    }
}
