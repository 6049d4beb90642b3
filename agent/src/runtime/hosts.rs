//! Resolving the host names the rules need (OSM `Egress` hosts,
//! `MESH_INTERNAL` ServiceEntry endpoints) beside the agent's loop: a tokio
//! task owns the [`HostTable`], runs each due lookup as a task of its own
//! (a slow or dead name server holds up only the names it is asked about),
//! records each answer as of the moment its query was sent, and publishes
//! the currently valid addresses on a `watch` channel, which wakes the
//! runtime when they change. Addresses stay valid until their own lifetime
//! (TTL, at most one hour) runs out, so the datapath never drops a
//! still-valid answer between two lookups.
//!
//! The runtime's side: [`HostResolver::spawn`] once (inside a tokio
//! runtime), [`HostResolver::want`] after every compilation, and
//! [`HostResolver::subscribe`] to `changed().await` on new addresses
//! (or [`HostResolver::published`] to read them). [`save`] after a change
//! and [`load`] on a takeover keep the answers across restarts.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::resolver::{HostStatus, HostTable, Lookup, LookupResult, ResolveError, SystemResolver, TtlPolicy};

/// How long `resolve_once` waits for all names (one-shot commands).
const ONE_SHOT_DEADLINE: Duration = Duration::from_secs(10);
/// Longest sleep of the resolver task when nothing is due.
const IDLE: Duration = Duration::from_secs(30);
/// Lookups running at once.
const MAX_IN_FLIGHT: usize = 32;
/// A lookup that has not finished after this long is abandoned as failed
/// (the client's own timeouts end it well before: 5 rounds × 3 servers ×
/// 30 s is resolv.conf's worst case).
const LOOKUP_DEADLINE: Duration = Duration::from_secs(450);

/// Where the resolver task gets its lookups from, once for every round of
/// due names (the system resolver re-reads `resolv.conf`; tests script
/// their answers).
pub type Lookups = Arc<dyn Fn() -> Result<Arc<dyn Lookup>, ResolveError> + Send + Sync>;

/// What the resolver task publishes.
#[derive(Clone, Debug, Default)]
pub struct Published {
    /// Bumped whenever `addresses` changes.
    pub version: u64,
    pub addresses: BTreeMap<String, Vec<IpAddr>>,
    pub status: Vec<HostStatus>,
    /// Every name of the wanted set `wanted_version` has been asked about
    /// at least once (answered or failed). [`HostResolver::published`]
    /// clears it while the task has not yet seen the latest
    /// [`HostResolver::want`].
    pub settled: bool,
    /// Which call of [`HostResolver::want`] (counted from 1) `settled`
    /// is about.
    pub wanted_version: u64,
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
/// the file is missing or unreadable (reported). The host table caps what
/// is left at its one-hour maximum.
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

/// The wanted names, numbered by [`HostResolver::want`].
#[derive(Clone, Debug, Default)]
struct Wanted {
    version: u64,
    hosts: BTreeSet<String>,
}

/// Handle of the resolver task; dropping it stops the task (and the
/// lookups in flight).
pub struct HostResolver {
    wanted: watch::Sender<Wanted>,
    published: watch::Receiver<Published>,
}

impl HostResolver {
    /// Starts the task on the current tokio runtime (panics outside one,
    /// as `tokio::spawn` does), resolving through the name servers of
    /// `resolv_conf` (re-read at every round, as glibc does on change).
    /// `remembered` holds addresses a previous agent allowed, with the time
    /// they have left: they stay allowed for it (one hour at most) while
    /// the names are asked again.
    pub fn spawn(resolv_conf: PathBuf, remembered: Remembered) -> Self {
        let lookups: Lookups = Arc::new(move || {
            SystemResolver::from_resolv_conf(&resolv_conf).map(|r| Arc::new(r) as Arc<dyn Lookup>)
        });
        Self::spawn_with(lookups, remembered)
    }

    /// Starts the task with lookups from `lookups`.
    pub fn spawn_with(lookups: Lookups, remembered: Remembered) -> Self {
        let (wanted, wanted_rx) = watch::channel(Wanted::default());
        let (published_tx, published) = watch::channel(Published::default());
        tokio::spawn(Task::new(lookups, remembered).run(wanted_rx, published_tx));
        Self { wanted, published }
    }

    /// Ask for exactly these names (wakes the task when they change).
    pub fn want(&self, hosts: &BTreeSet<String>) {
        self.wanted.send_if_modified(|w| {
            if &w.hosts == hosts {
                return false;
            }
            w.version += 1;
            w.hosts = hosts.clone();
            true
        });
    }

    /// What the task publishes now; `settled` only once it has asked
    /// about the names of the latest [`HostResolver::want`].
    pub fn published(&self) -> Published {
        let mut p = self.published.borrow().clone();
        p.settled &= p.wanted_version == self.wanted.borrow().version;
        p
    }

    /// A receiver that wakes (`changed().await`) when the addresses
    /// change, or when `settled` or `wanted_version` does. Status lines
    /// and lookup errors are updated without waking it.
    pub fn subscribe(&self) -> watch::Receiver<Published> {
        self.published.clone()
    }

    /// Waits until every wanted name has been asked about, at most
    /// `within`; true when settled.
    pub async fn settled(&self, within: Duration) -> bool {
        let mut rx = self.subscribe();
        let version = self.wanted.borrow().version;
        let done = tokio::time::timeout(within, rx.wait_for(|p| p.settled && p.wanted_version == version)).await;
        matches!(done, Ok(Ok(_)))
    }
}

/// The answer of one lookup task.
struct Answer {
    host: String,
    /// When the query was sent: lifetimes count from here.
    asked: Instant,
    result: LookupResult,
}

/// The state of the resolver task.
struct Task {
    lookups: Lookups,
    table: HostTable,
    /// Remembered addresses with their expiry, seeded into the table when
    /// their name is first wanted (the runtime says which names it wants
    /// only after it has read its input).
    remembered: BTreeMap<String, Vec<(IpAddr, Instant)>>,
    wanted: Wanted,
    in_flight: JoinSet<Answer>,
    /// Host of each lookup task (to report a task that panicked).
    in_flight_hosts: HashMap<tokio::task::Id, String>,
    asked_once: BTreeSet<String>,
}

impl Task {
    fn new(lookups: Lookups, remembered: Remembered) -> Self {
        let start = Instant::now();
        Task {
            lookups,
            table: HostTable::new(TtlPolicy::default()),
            remembered: remembered
                .into_iter()
                .map(|(host, addrs)| (host, addrs.into_iter().map(|(ip, left)| (ip, start + left)).collect()))
                .collect(),
            wanted: Wanted::default(),
            in_flight: JoinSet::new(),
            in_flight_hosts: HashMap::new(),
            asked_once: BTreeSet::new(),
        }
    }

    async fn run(mut self, mut wanted: watch::Receiver<Wanted>, published: watch::Sender<Published>) {
        let mut changed = false;
        loop {
            let now = Instant::now();
            changed |= self.start_due(now);
            changed |= self.table.expire(now.into_std());
            self.publish(&published, now, std::mem::take(&mut changed));
            let wake = match self.table.next_deadline() {
                Some(d) => Instant::from_std(d).min(now + IDLE),
                None => now + IDLE,
            };
            tokio::select! {
                w = wanted.changed() => {
                    if w.is_err() {
                        // The handle is gone: so is everyone who listens.
                        return;
                    }
                    let w = wanted.borrow_and_update().clone();
                    changed |= self.set_wanted(w);
                }
                Some(joined) = self.in_flight.join_next_with_id(), if !self.in_flight.is_empty() => {
                    changed |= self.record(joined);
                }
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    fn set_wanted(&mut self, wanted: Wanted) -> bool {
        self.asked_once.retain(|h| wanted.hosts.contains(h));
        let mut changed = self.table.set_hosts(wanted.hosts.iter().cloned());
        self.wanted = wanted;
        let now = Instant::now();
        let table = &mut self.table;
        self.remembered.retain(|host, addrs| {
            if !table.wants(host) {
                return true;
            }
            let left: Vec<(IpAddr, Duration)> = addrs
                .iter()
                .filter(|(_, until)| *until > now)
                .map(|(ip, until)| (*ip, *until - now))
                .collect();
            changed |= table.seed(host, now.into_std(), &left);
            false
        });
        changed
    }

    fn record(&mut self, joined: Result<(tokio::task::Id, Answer), tokio::task::JoinError>) -> bool {
        let answer = match joined {
            Ok((id, answer)) => {
                self.in_flight_hosts.remove(&id);
                answer
            }
            Err(e) => {
                let Some(host) = self.in_flight_hosts.remove(&e.id()) else { return false };
                warn!(%host, error = %e, "a lookup task failed");
                let result = Err(ResolveError::Setup(format!("resolving {host}: the lookup task failed: {e}")));
                Answer { host, asked: Instant::now(), result }
            }
        };
        if let Err(e) = &answer.result {
            debug!(host = %answer.host, error = %e, "lookup failed");
        }
        let changed = self.table.record(&answer.host, answer.asked.into_std(), answer.result);
        self.asked_once.insert(answer.host);
        changed
    }

    /// Starts a lookup task for each due name not already in flight.
    fn start_due(&mut self, now: Instant) -> bool {
        let asking: BTreeSet<&String> = self.in_flight_hosts.values().collect();
        let due: Vec<String> = self.table.due(now.into_std()).into_iter().filter(|h| !asking.contains(h)).collect();
        if due.is_empty() {
            return false;
        }
        let lookup = match (self.lookups)() {
            Ok(lookup) => lookup,
            Err(e) => {
                warn!(error = %e, "cannot set up the resolver");
                let mut changed = false;
                for host in due {
                    changed |= self.table.record(&host, now.into_std(), Err(ResolveError::Setup(e.to_string())));
                    self.asked_once.insert(host);
                }
                return changed;
            }
        };
        let room = MAX_IN_FLIGHT.saturating_sub(self.in_flight.len());
        for host in due.into_iter().take(room) {
            let lookup = Arc::clone(&lookup);
            let name = host.clone();
            let task = self.in_flight.spawn(async move {
                let asked = Instant::now();
                let result = bounded(&*lookup, &name, LOOKUP_DEADLINE).await;
                Answer { host: name, asked, result }
            });
            self.in_flight_hosts.insert(task.id(), host);
        }
        false
    }

    fn publish(&self, published: &watch::Sender<Published>, now: Instant, changed: bool) {
        let settled = self.wanted.hosts.iter().all(|h| self.asked_once.contains(h));
        let now_std = now.into_std();
        published.send_if_modified(|p| {
            p.status = self.table.status(now_std);
            let notify = changed || p.settled != settled || p.wanted_version != self.wanted.version;
            p.settled = settled;
            p.wanted_version = self.wanted.version;
            if changed {
                p.version += 1;
                p.addresses = self.table.addresses(now_std);
                let wall = SystemTime::now();
                p.expiries = self
                    .table
                    .lifetimes(now_std)
                    .into_iter()
                    .map(|(host, addrs)| (host, addrs.into_iter().map(|(ip, left)| (ip, wall + left)).collect()))
                    .collect();
                debug!(version = p.version, "host addresses changed");
            }
            notify
        });
    }
}

/// One lookup, given up after `deadline`.
async fn bounded(lookup: &dyn Lookup, host: &str, deadline: Duration) -> LookupResult {
    match tokio::time::timeout(deadline, lookup.lookup(host)).await {
        Ok(result) => result,
        Err(_) => Err(ResolveError::GaveUp { host: host.to_string(), after: deadline }),
    }
}

/// Resolve `hosts` once (for `verify --manifests` and `analyze`): the
/// addresses each name has now; names that fail map to nothing, with a
/// warning on stderr. Blocking; callable from inside a tokio runtime too
/// (it runs its own on a thread of its own).
pub fn resolve_once(hosts: &BTreeSet<String>, resolv_conf: &Path) -> BTreeMap<String, Vec<IpAddr>> {
    std::thread::scope(|s| {
        s.spawn(|| match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(resolve_once_async(hosts, resolv_conf)),
            Err(e) => {
                eprintln!("warning: cannot resolve {} host name(s): cannot start the resolver: {e}", hosts.len());
                BTreeMap::new()
            }
        })
        .join()
        .unwrap_or_default()
    })
}

/// [`resolve_once`] for callers inside a tokio runtime.
pub async fn resolve_once_async(hosts: &BTreeSet<String>, resolv_conf: &Path) -> BTreeMap<String, Vec<IpAddr>> {
    let lookup = match SystemResolver::from_resolv_conf(resolv_conf) {
        Ok(l) => Arc::new(l) as Arc<dyn Lookup>,
        Err(e) => {
            eprintln!("warning: cannot resolve {} host name(s): {e}", hosts.len());
            return BTreeMap::new();
        }
    };
    resolve_all(hosts, lookup, ONE_SHOT_DEADLINE).await
}

/// Looks up every name at once, each in a task of its own, and waits at
/// most `deadline` in all; names not answered by then map to nothing.
async fn resolve_all(hosts: &BTreeSet<String>, lookup: Arc<dyn Lookup>, deadline: Duration) -> BTreeMap<String, Vec<IpAddr>> {
    let mut tasks = JoinSet::new();
    for host in hosts {
        let (lookup, host) = (Arc::clone(&lookup), host.clone());
        tasks.spawn(async move {
            let result = lookup.lookup(&host).await;
            (host, result)
        });
    }
    let end = Instant::now() + deadline;
    let mut out: BTreeMap<String, Vec<IpAddr>> = hosts.iter().map(|h| (h.clone(), Vec::new())).collect();
    let mut answered = BTreeSet::new();
    while let Ok(Some(joined)) = tokio::time::timeout_at(end, tasks.join_next()).await {
        let Ok((host, result)) = joined else { continue };
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
#[path = "hosts_tests.rs"]
mod tests;
