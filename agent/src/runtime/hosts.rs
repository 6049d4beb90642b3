//! Resolving the host names the rules need (OSM `Egress` hosts,
//! `MESH_INTERNAL` ServiceEntry endpoints) off the main loop: a thread
//! owns the [`HostTable`], re-resolves each name when its TTL runs out and
//! publishes the currently valid addresses; the loop recompiles when they
//! change. Addresses stay valid until their own TTL runs out, so the
//! datapath never drops a still-valid answer between two lookups.
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::resolver::{self, HostStatus, HostTable, Lookup, SystemResolver, TtlPolicy};

/// How long `resolve_once` waits for all names (one-shot commands).
const ONE_SHOT_DEADLINE: Duration = Duration::from_secs(10);
/// Longest sleep of the resolver thread when nothing is due.
const IDLE: Duration = Duration::from_secs(30);

/// What the resolver thread publishes.
#[derive(Clone, Debug, Default)]
pub struct Published {
    /// Bumped whenever `addresses` changes.
    pub version: u64,
    pub addresses: BTreeMap<String, Vec<IpAddr>>,
    pub status: Vec<HostStatus>,
}

#[derive(Default)]
struct Shared {
    wanted: BTreeSet<String>,
    wanted_version: u64,
    published: Published,
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
        let handle = Self { shared: Arc::new((Mutex::new(Shared::default()), Condvar::new())) };
        let worker = handle.clone();
        std::thread::Builder::new()
            .name("tollgate-resolver".into())
            .spawn(move || worker.run(&resolv_conf))
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

    fn run(&self, resolv_conf: &Path) {
        let mut table = HostTable::new(TtlPolicy::default());
        let (lock, wake) = &*self.shared;
        let mut seen_wanted = u64::MAX;
        loop {
            let wanted = {
                let shared = lock.lock().unwrap_or_else(|p| p.into_inner());
                (shared.wanted_version != seen_wanted).then(|| {
                    seen_wanted = shared.wanted_version;
                    shared.wanted.clone()
                })
            };
            let mut changed = wanted.is_some_and(|w| table.set_hosts(w));
            let now = Instant::now();
            if !table.due(now).is_empty() {
                match SystemResolver::from_resolv_conf(resolv_conf) {
                    Ok(lookup) => changed |= resolver::refresh(&mut table, &lookup, now),
                    Err(e) => {
                        warn!(error = %e, "cannot read the resolver configuration");
                        changed |= table.expire(now);
                    }
                }
            } else {
                changed |= table.expire(now);
            }
            let now = Instant::now();
            let mut shared = lock.lock().unwrap_or_else(|p| p.into_inner());
            shared.published.status = table.status(now);
            if changed {
                shared.published.version += 1;
                shared.published.addresses = table.addresses(now);
                debug!(version = shared.published.version, "host addresses changed");
            }
            let sleep = table
                .next_deadline()
                .map_or(IDLE, |d| d.saturating_duration_since(now).min(IDLE))
                .max(Duration::from_millis(50));
            if shared.wanted_version == seen_wanted {
                let _ = wake.wait_timeout(shared, sleep);
            }
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
