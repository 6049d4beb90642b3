//! The agent's event loop.
//!
//! One task owns the store, the compiled state, the cgroup index and the
//! maps; everything else talks to it through channels:
//! - source events (objects applied or deleted, diagnostics, sync state);
//! - cgroup signals (inotify saw the kubepods tree change);
//! - a 100 ms tick (resolver answers, the first-apply wait for host names);
//! - a slower rescan of the whole cgroup tree (what inotify may miss).
//!
//! Events are coalesced: whatever is already queued is taken before the
//! work they cause is done, so a burst costs one compile and one apply.
//! Objects changing cost a compile; a cgroup change only an apply.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::cluster_cidrs::{cluster_cidrs, CidrOrigin};
use super::hosts;
use super::latency::LatencyStats;
use super::state::{self, KindSync, StatusFile, WorkloadStatus};
use super::{AgentConfig, RuntimeError, SourceConfig};
use crate::cgroups::{self, CgroupIndex};
use crate::compiler::{self, CompilerConfig, Policy};
use crate::datapath::{self, bpffs::PinDir, load::AgentDatapath, load::AttachOutcome};
use crate::desired::{DesiredState, Diagnostic, Severity};
use crate::metrics::{FillCache, Health, MapFill, MapsSource, Metrics, PodModes, Sources};
use crate::model::{Change, ObjectKind, Snapshot};
use crate::source::{self, ObjectChange, SourceEvent};

/// How long the first apply waits for every host name to be answered (or
/// to fail), so that a starting agent does not begin by dropping what mesh
/// policy allows: longer when it takes over a running datapath, whose
/// maps allow the previous answers, than on a first start.
const FIRST_RESOLVE_WAIT: Duration = Duration::from_secs(3);
const TAKEOVER_RESOLVE_WAIT: Duration = Duration::from_secs(12);
/// The loop's heartbeat: waits are looked at this often.
const TICK: Duration = Duration::from_millis(100);
/// `/healthz` fails when the loop has not beaten for this long.
const STALE_AFTER: Duration = Duration::from_secs(60);

/// Runs the loop until killed.
pub async fn run(cfg: AgentConfig) -> Result<(), RuntimeError> {
    if !cfg.cgroup_root.is_dir() {
        return Err(RuntimeError::Cgroups { path: cfg.cgroup_root.clone(), message: "not a directory".into() });
    }
    if !cfg.resolv_conf.exists() {
        warn!(path = %cfg.resolv_conf.display(), "no such --resolv-conf; host names go to 127.0.0.1:53, as glibc would");
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<SourceEvent>();
    // The source starts first: a first start on an unreadable folder or
    // an unreachable configuration must not attach programs.
    let events = start_source(&cfg, tx).await?;
    let (cg_tx, mut cg_rx) = mpsc::unbounded_channel::<Instant>();
    if let Err(e) = cgroups::watch::spawn(cfg.cgroup_root.clone(), move |at| {
        let _ = cg_tx.send(at);
    }) {
        warn!(error = %e, "no inotify on the cgroup tree; new pods are found by the periodic scan only");
    }
    let mut agent = Agent::new(cfg, events).await?;
    let mut hosts_rx = agent.resolver.subscribe();
    let mut rescan = tokio::time::interval(agent.cfg.rescan);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut source_open = true;
    loop {
        tokio::select! {
            ev = rx.recv(), if source_open => match ev {
                Some(ev) => agent.on_source(ev),
                None => {
                    error!("the source stopped; the datapath keeps the last state");
                    source_open = false;
                }
            },
            Some(at) = cg_rx.recv() => agent.on_cgroups(at),
            Ok(()) = hosts_rx.changed() => agent.on_hosts(),
            _ = rescan.tick() => agent.on_rescan(),
            _ = tick.tick() => agent.on_tick(),
        }
        // Take whatever else is queued before doing the work.
        while let Ok(ev) = rx.try_recv() {
            agent.on_source(ev);
        }
        while let Ok(at) = cg_rx.try_recv() {
            agent.on_cgroups(at);
        }
        tokio::task::block_in_place(|| agent.step())?;
    }
}

/// Starts the configured source; its events arrive on `tx`.
async fn start_source(cfg: &AgentConfig, tx: source::SourceSender) -> Result<Option<source::kubernetes::Recorder>, RuntimeError> {
    match &cfg.source {
        SourceConfig::Files { manifests, poll } => {
            let state = source::files::watch::initial(manifests, &tx)
                .map_err(|e| RuntimeError::Source { path: manifests.clone(), message: e.to_string() })?;
            tokio::spawn(source::files::watch::run(state, *poll, tx));
            Ok(None)
        }
        SourceConfig::Kubernetes { kubeconfig } => {
            let node = cfg.node_name.clone().ok_or_else(|| {
                RuntimeError::Config("--node-name (or NODE_NAME) is required with --source kubernetes".into())
            })?;
            let opts = source::kubernetes::Options { kubeconfig: kubeconfig.clone(), node_name: node };
            let recorder = source::kubernetes::start(opts, tx).await.map_err(|e| RuntimeError::Kubernetes(e.to_string()))?;
            Ok(Some(recorder))
        }
    }
}

/// Everything the loop owns.
struct Agent {
    cfg: AgentConfig,
    store: Snapshot,
    /// Diagnostics of the source, per scope (a file, one object).
    source_diags: BTreeMap<String, Vec<Diagnostic>>,
    synced: BTreeSet<ObjectKind>,
    sync: BTreeMap<ObjectKind, KindSync>,
    /// Objects compiled (host names still symbolic).
    policy: Option<Policy>,
    /// The policy bound to the current host addresses: what is applied.
    desired: Option<DesiredState>,
    cidr_origin: CidrOrigin,
    /// Objects changed since the last compile.
    dirty_compile: bool,
    /// Host addresses changed since the last bind.
    dirty_bind: bool,
    /// The desired state or the cgroups changed since the last apply.
    dirty_apply: bool,
    /// Changes waiting for their map writes: what kind, and since when.
    waiting: Vec<(&'static str, Instant)>,
    cgroups: CgroupIndex,
    datapath: Option<AgentDatapath>,
    takeover: bool,
    resolver: hosts::HostResolver,
    hosts_version: u64,
    /// Until when the first apply waits for host names.
    hosts_deadline: Option<Instant>,
    status: StatusFile,
    latency: LatencyStats,
    metrics: Arc<Metrics>,
    /// The metrics' handles on the maps, set when the datapath is loaded.
    metric_maps: Arc<MapsSource>,
    /// The map fill the metrics serve, set after each apply.
    fill: Arc<FillCache>,
    /// Drop events from the kernel's ring into the journal `flows` reads.
    flow_events: datapath::events::FlowEvents,
    events: Option<source::kubernetes::Recorder>,
    /// Error diagnostics already sent as Kubernetes Events.
    reported: BTreeSet<(String, String, String)>,
    /// When the status was last written while waiting for the first apply.
    waiting_status: Option<Instant>,
    /// When the status was last rewritten as a heartbeat.
    beat: Instant,
}

impl Agent {
    async fn new(cfg: AgentConfig, events: Option<source::kubernetes::Recorder>) -> Result<Self, RuntimeError> {
        // Taking over a running datapath: its maps allow the previous
        // agent's answers, which stay allowed for the time they have left.
        let takeover = PinDir::new(&cfg.bpffs).require_pinned().is_ok();
        if takeover {
            // A new agent pod is itself under kubepods, unclassified and so
            // denied: allow its own cgroup before it talks to its source.
            if let Some(id) = datapath::inputs::own_cgroup(&cgroups::default_cgroup_root(), &cfg.cgroup_root) {
                if let Err(e) = datapath::reconcile::allow_now(&PinDir::new(&cfg.bpffs), id) {
                    warn!(error = %e, "cannot allow the agent's own cgroup before the first apply");
                }
            }
        }
        let hosts_path = cfg.state_dir.join(state::HOSTS_FILE);
        let remembered = if takeover { hosts::load(&hosts_path) } else { hosts::Remembered::new() };
        let resolver = hosts::HostResolver::spawn(cfg.resolv_conf.clone(), remembered);
        let health = Arc::new(Health::new(STALE_AFTER));
        let metric_maps = Arc::new(MapsSource::default());
        let fill = Arc::new(FillCache::default());
        let metrics = Arc::new(Metrics::new(Sources {
            counters: metric_maps.clone(),
            map_fill: fill.clone(),
            health,
            object_hash: datapath::object::hash(),
        }));
        if let Some(addr) = &cfg.metrics_addr {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| RuntimeError::Metrics { addr: addr.clone(), source })?;
            info!(%addr, "serving /metrics, /healthz and /readyz");
            tokio::spawn(super::http::serve(listener, super::http::HttpState::new(Arc::clone(&metrics))));
        }
        let cgroups = match cgroups::discover(&cfg.cgroup_root) {
            Ok(found) => found,
            Err(e) => {
                warn!(error = %e, "cgroup discovery failed; starting with no pods found");
                CgroupIndex::default()
            }
        };
        let status = StatusFile::new(&cfg, false);
        let flow_events = datapath::events::FlowEvents::new(&cfg.state_dir);
        Ok(Self {
            cfg,
            store: Snapshot::new(),
            source_diags: BTreeMap::new(),
            synced: BTreeSet::new(),
            sync: BTreeMap::new(),
            policy: None,
            desired: None,
            cidr_origin: CidrOrigin::None,
            dirty_compile: true,
            dirty_bind: false,
            dirty_apply: true,
            waiting: Vec::new(),
            cgroups,
            datapath: None,
            takeover,
            resolver,
            hosts_version: 0,
            hosts_deadline: None,
            status,
            latency: LatencyStats::default(),
            flow_events,
            metrics,
            metric_maps,
            fill,
            events,
            reported: BTreeSet::new(),
            waiting_status: None,
            beat: Instant::now(),
        })
    }

    fn on_source(&mut self, ev: SourceEvent) {
        match ev {
            SourceEvent::Changes { changes, received } => {
                for change in changes {
                    let kind = change.kind();
                    let changed = match change {
                        ObjectChange::Apply { object, source } => {
                            matches!(self.store.apply(object, source.as_deref()), Some(Change::Added | Change::Updated))
                        }
                        ObjectChange::Delete(r) => self.store.delete(&r),
                    };
                    if changed {
                        self.dirty_compile = true;
                        self.waiting.push((kind.as_str(), received));
                    }
                }
            }
            SourceEvent::Diagnostics { scope, diags } => {
                let before = self.source_diags.get(&scope).cloned().unwrap_or_default();
                if before != diags {
                    if diags.is_empty() {
                        self.source_diags.remove(&scope);
                    } else {
                        self.source_diags.insert(scope, diags);
                    }
                    self.dirty_compile = true;
                }
            }
            SourceEvent::Synced { kind } => {
                if self.synced.insert(kind) {
                    debug!(kind = kind.as_str(), "initial list done");
                    self.metrics.set_synced(kind.as_str(), true);
                }
                self.sync.entry(kind).or_default().synced = true;
            }
            SourceEvent::WatchError { kind, message } => {
                warn!(kind = kind.as_str(), error = %message, "watch failed; retrying with backoff (the datapath keeps the last state)");
                self.metrics.watch_error(kind.as_str());
                let s = self.sync.entry(kind).or_default();
                s.errors += 1;
                s.last_error = Some(message);
            }
            SourceEvent::Served { kind, served } => {
                self.sync.entry(kind).or_default().served = served;
            }
        }
    }

    fn on_cgroups(&mut self, at: Instant) {
        self.rescan(Some(at));
    }

    fn on_rescan(&mut self) {
        self.rescan(None);
    }

    /// Reads the cgroup tree; `at` is when inotify saw the change.
    fn rescan(&mut self, at: Option<Instant>) {
        match cgroups::discover(&self.cfg.cgroup_root) {
            Ok(found) if found != self.cgroups => {
                self.cgroups = found;
                self.dirty_apply = true;
                self.waiting.push(("cgroup", at.unwrap_or_else(Instant::now)));
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "cgroup discovery failed; keeping the last state"),
        }
    }

    fn on_tick(&mut self) {
        self.metrics.health().beat();
        if self.status.generation == 0 {
            self.write_waiting_status();
        } else if self.beat.elapsed() >= state::HEARTBEAT {
            self.write_heartbeat();
        }
        let Some(dp) = self.datapath.as_mut() else { return };
        dp.flush_kernel_log();
        dp.retry_tc();
        // The layers `status` shows follow the TC layer's attachments.
        let mut changed = false;
        for w in &mut self.status.workloads {
            changed |= w.set_tc_attached(dp.tc.attached().contains_key(&w.uid));
        }
        if changed && self.status.generation > 0 {
            let path = self.cfg.state_dir.join(state::STATUS_FILE);
            if let Err(e) = self.status.write(&path) {
                warn!(path = %path.display(), error = %e, "cannot write the status");
            }
        }
        // Drop events: from the kernel's ring into the journal `flows` reads.
        match self.flow_events.poll(&mut dp.maps) {
            Ok(records) => {
                for r in records {
                    if self.cfg.log_flows {
                        info!(target: "tollgate::flows", object = %format!("Pod {}/{}", r.namespace, r.pod), src = %r.src, dst = %r.dst, protocol = %r.protocol, verdict = %r.verdict, reason = %r.reason, layer = %r.layer, "flow {}", r.verdict);
                    } else {
                        debug!(target: "tollgate::flows", object = %format!("Pod {}/{}", r.namespace, r.pod), src = %r.src, dst = %r.dst, protocol = %r.protocol, verdict = %r.verdict, reason = %r.reason, layer = %r.layer, "flow {}", r.verdict);
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot record drop events"),
        }
    }

    /// The resolver's addresses changed (TTL expiry, new answers): rebind
    /// and save them for the next agent.
    fn on_hosts(&mut self) {
        let published = self.resolver.published();
        if published.version == self.hosts_version {
            return;
        }
        self.hosts_version = published.version;
        self.dirty_bind = true;
        self.waiting.push(("dns", Instant::now()));
        info!(hosts = published.addresses.len(), "host addresses changed");
        let path = self.cfg.state_dir.join(state::HOSTS_FILE);
        if let Err(e) = hosts::save(&path, &published) {
            warn!(path = %path.display(), error = %e, "cannot save the host addresses for the next agent");
        }
    }

    /// Before the first apply, `status` still tells what the agent waits
    /// for: which kinds are not synced yet and why (a refused watch names
    /// the permission it lacks).
    fn write_waiting_status(&mut self) {
        if self.waiting_status.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        self.waiting_status = Some(Instant::now());
        let missing: Vec<&str> = ObjectKind::ALL.iter().filter(|k| !self.synced.contains(k)).map(|k| k.as_str()).collect();
        let status = &mut self.status;
        status.sync = self.sync.iter().map(|(k, s)| (k.as_str().to_owned(), s.clone())).collect();
        status.last_error = Some(if missing.is_empty() {
            "waiting for the first apply (host names of mesh objects are being resolved)".to_owned()
        } else {
            format!("waiting for the initial list of: {}", missing.join(", "))
        });
        status.updated_at = super::time::now_rfc3339();
        let path = self.cfg.state_dir.join(state::STATUS_FILE);
        if let Err(e) = status.write(&path) {
            warn!(path = %path.display(), error = %e, "cannot write the status");
        }
    }

    /// Rewrites the status with a new `heartbeat_at`: `status` tells a
    /// live agent from a stuck or dead one by it.
    fn write_heartbeat(&mut self) {
        self.beat = Instant::now();
        self.status.beat();
        let path = self.cfg.state_dir.join(state::STATUS_FILE);
        if let Err(e) = self.status.write(&path) {
            warn!(path = %path.display(), error = %e, "cannot write the status");
        }
    }

    fn all_synced(&self) -> bool {
        ObjectKind::ALL.iter().all(|k| self.synced.contains(k))
    }

    /// Compiles and applies what is due.
    fn step(&mut self) -> Result<(), RuntimeError> {
        if !self.all_synced() {
            return Ok(());
        }
        if self.dirty_compile {
            self.compile();
            self.dirty_compile = false;
            self.dirty_bind = true;
        }
        if self.dirty_bind {
            self.bind();
            self.dirty_bind = false;
            self.dirty_apply = true;
        }
        if self.datapath.is_none() && !self.first_apply_may_start() {
            return Ok(());
        }
        if self.dirty_apply {
            self.apply()?;
        }
        Ok(())
    }

    /// Before the first apply, wait (boundedly) until every host name has
    /// been answered, so a starting agent does not drop what mesh policy
    /// allows.
    fn first_apply_may_start(&mut self) -> bool {
        let Some(policy) = &self.policy else { return false };
        if policy.hosts.is_empty() {
            return true;
        }
        self.resolver.want(&policy.hosts);
        let deadline = *self.hosts_deadline.get_or_insert_with(|| {
            Instant::now() + if self.takeover { TAKEOVER_RESOLVE_WAIT } else { FIRST_RESOLVE_WAIT }
        });
        let published = self.resolver.published();
        if published.settled || Instant::now() >= deadline {
            if published.version != self.hosts_version {
                self.hosts_version = published.version;
                self.bind();
            }
            return true;
        }
        false
    }

    fn compile(&mut self) {
        let (nets, origin) = cluster_cidrs(&self.cfg.cluster_cidrs, &self.store);
        if origin != self.cidr_origin {
            info!(cidrs = ?nets.iter().map(|n| n.to_string()).collect::<Vec<_>>(), from = ?origin, "cluster ranges");
            self.cidr_origin = origin;
        }
        let config = CompilerConfig {
            node_name: self.cfg.node_name.clone(),
            cluster_cidrs: nets,
            sandboxed_runtime_classes: self.cfg.sandboxed_runtime_classes.clone(),
            ..Default::default()
        }
        .with_trust(self.cfg.trusted_namespaces.clone(), Some(self.cfg.osm_namespace.clone()));
        let started = Instant::now();
        let mut policy = compiler::compile(&self.store, &config);
        let mut diags: Vec<Diagnostic> = self.source_diags.values().flatten().cloned().collect();
        diags.append(&mut policy.diagnostics);
        diags.sort();
        diags.dedup();
        policy.diagnostics = diags;
        let old: BTreeSet<&Diagnostic> = self.policy.iter().flat_map(|p| p.diagnostics.iter()).collect();
        for d in policy.diagnostics.iter().filter(|d| !old.contains(d)) {
            match d.severity {
                Severity::Warning => warn!(object = %d.object, field = %d.field, "{}", d.message),
                Severity::Error => error!(object = %d.object, field = %d.field, "{}", d.message),
            }
        }
        let old_ignored: BTreeSet<String> = self.policy.iter().flat_map(|p| p.ignored.iter().map(|i| i.to_string())).collect();
        for i in policy.ignored.iter().filter(|i| !old_ignored.contains(&i.to_string())) {
            warn!(object = %i.object, rule = %i.rule, "ignored under the trust rules: {}", i.message);
        }
        self.report_rejections(&policy.diagnostics);
        self.resolver.want(&policy.hosts);
        self.metrics.set_rejected(rejected_counts(&policy.diagnostics));
        let mut ignored: BTreeMap<(String, String), u64> = BTreeMap::new();
        for i in &policy.ignored {
            *ignored.entry((i.kind.clone(), i.rule.clone())).or_default() += 1;
        }
        self.metrics.set_ignored(ignored);
        // Risky set-ups, for `tollgate analyze` (live).
        let report = crate::analyze::analyze(&self.store, &policy, &config);
        let path = self.cfg.state_dir.join(state::ANALYSIS_FILE);
        if let Err(e) = state::write_json(&path, &report, true) {
            warn!(error = %e, path = %path.display(), "cannot write the analysis");
        }
        debug!(ms = started.elapsed().as_secs_f64() * 1000.0, objects = self.store.len(), "compiled");
        self.policy = Some(policy);
    }

    /// The compiled policy with the current host addresses.
    fn bind(&mut self) {
        let Some(policy) = &self.policy else { return };
        let started = Instant::now();
        self.desired = Some(compiler::bind(policy, &self.resolver.published().addresses));
        debug!(ms = started.elapsed().as_secs_f64() * 1000.0, "bound");
    }

    /// Sends a Kubernetes Event for each new problem (an invalid field, a
    /// bad label value) that names an object of the store (the recorder
    /// rate-limits per object).
    fn report_rejections(&mut self, diags: &[Diagnostic]) {
        let Some(events) = &self.events else { return };
        let current: BTreeSet<(String, String, String)> = diags
            .iter()
            .map(|d| (d.object.clone(), d.field.clone(), d.message.clone()))
            .collect();
        for (object, field, message) in current.difference(&self.reported) {
            let Some(r) = crate::model::ObjectRef::parse(object) else { continue };
            let Some(meta) = self.store.meta(&r) else { continue };
            events.rejected(&r, meta, field, message);
        }
        self.reported = current;
    }

    /// The metrics read through handles of their own, opened once.
    fn open_metric_maps(&self, pins: &PinDir) {
        match datapath::pinned::Maps::open_pinned(pins) {
            Ok(maps) => self.metric_maps.set(maps),
            Err(e) => warn!(error = %e, "the metrics cannot open the pinned maps; datapath metrics stay empty"),
        }
    }

    fn apply(&mut self) -> Result<(), RuntimeError> {
        let Some(desired) = &self.desired else { return Ok(()) };
        if self.datapath.is_none() {
            let opts = datapath::load::LoadOptions { kernel_log: self.cfg.kernel_log, max_entries: self.cfg.map_max_entries.clone() };
            let dp = datapath::load::start_agent_datapath_with(PinDir::new(&self.cfg.bpffs), &self.cfg.cgroup_root, &opts)?;
            self.status.adopted = dp.outcome == AttachOutcome::Adopted;
            self.status.layout = dp.layout.clone();
            // During a layout upgrade the pinned names still lead to the
            // old maps: the metrics open them once the upgrade is done.
            if dp.upgrade.is_none() {
                self.open_metric_maps(&dp.pins);
            }
            self.datapath = Some(dp);
        }
        let Some(dp) = self.datapath.as_mut() else { return Ok(()) };
        let started = Instant::now();
        let inputs = datapath::reconcile::ApplyInputs {
            always_allowed: datapath::inputs::own_cgroup(&cgroups::default_cgroup_root(), &self.cfg.cgroup_root).into_iter().collect(),
            addresses: datapath::inputs::pod_addresses(&self.store.pods),
        };
        let (report, registered) = match datapath::reconcile::apply_with(&mut dp.maps, desired, &self.cgroups, &inputs) {
            Ok(done) => done,
            Err(e) => {
                self.metrics.observe_apply(started.elapsed(), Err(&e));
                warn!(error = %e, "applying to the datapath failed; retrying");
                self.status.last_error = Some(e.to_string());
                return Ok(());
            }
        };
        self.metrics.observe_apply(started.elapsed(), Ok(()));
        // The TC layer on the veths of the pods just registered (errors are logged and retried).
        dp.sync_tc(datapath::tc_pods::inputs(desired, &registered, &self.cgroups));
        // A layout upgrade: the new maps are filled, the new programs go in.
        if dp.upgrade.is_some() {
            if let Some(report) = dp.finish_upgrade(&self.cfg.cgroup_root)? {
                self.status.layout_upgrade = Some(report);
            }
            let pins = dp.pins.clone();
            self.open_metric_maps(&pins);
        }
        let Some(dp) = self.datapath.as_mut() else { return Ok(()) };
        for (map, n) in &report.insert_failures {
            self.metrics.map_insert_failed(map, *n);
        }
        if !report.full_maps.is_empty() {
            error!(maps = ?report.full_maps, pods = ?report.fail_closed, "maps are full: the affected pods fail closed");
        }
        match datapath::reconcile::map_fill(&dp.maps) {
            Ok(fill) => self.fill.set(fill.into_iter().map(|f| MapFill { map: f.map.to_owned(), entries: f.entries, capacity: f.capacity }).collect()),
            Err(e) => warn!(error = %e, "cannot read the map fill"),
        }
        let done = Instant::now();
        // Changes before the first apply waited for the initial sync: they
        // are start-up time, not event-to-map latency.
        let first = self.status.generation == 0;
        for (kind, at) in self.waiting.drain(..) {
            if !first {
                let d = done.saturating_duration_since(at);
                self.latency.observe(d);
                self.metrics.observe_event_to_map(kind, d);
            }
        }
        self.metrics.set_enforced_pods(PodModes::count(desired.workloads.values().map(|w| w.mode)));
        self.dirty_apply = false;
        self.beat = done;
        let created: BTreeMap<&str, String> = self
            .store
            .pods
            .iter()
            .filter_map(|p| Some((p.metadata.uid.as_deref()?, p.metadata.creation_timestamp.as_ref()?.0.to_string())))
            .collect();
        let workloads = desired
            .workloads
            .iter()
            .map(|(uid, w)| {
                let why = desired.explain.workloads.get(&format!("{}/{}", w.namespace, w.name));
                let mut status = WorkloadStatus {
                    namespace: w.namespace.clone(),
                    pod: w.name.clone(),
                    uid: uid.clone(),
                    mode: w.mode,
                    gateway: w.flags & agent_common::FLAG_GATEWAY != 0,
                    sidecar_redirect: w.flags & agent_common::FLAG_SIDECAR_REDIRECT != 0,
                    policy: w.policy,
                    workload_id: registered.get(uid).map(|r| r.id).unwrap_or(0),
                    cgroups: registered.get(uid).map(|r| r.cgroups).unwrap_or(0),
                    since: created.get(uid.as_str()).cloned(),
                    runtime_class: w.sandboxed.clone(),
                    layers: None,
                    sources: why.map(|w| w.sources.clone()).unwrap_or_default(),
                };
                status.set_tc_attached(dp.tc.attached().contains_key(uid));
                status
            })
            .collect();
        let rule_entries = desired.policies.values().map(Vec::len).sum();
        let status = &mut self.status;
        status.update(workloads, &desired.diagnostics, report, super::pod_ips(&self.store), rule_entries);
        let explain = &desired.explain;
        status.gateways = explain.gateways.clone();
        status.external_hosts = explain.external_hosts.clone();
        status.osm = explain.osm.clone();
        status.ignored = desired.ignored.clone();
        status.hosts = self.resolver.published().status;
        status.cluster_cidrs = cluster_cidrs(&self.cfg.cluster_cidrs, &self.store).0.iter().map(|c| c.to_string()).collect();
        status.cluster_cidrs_from = self.cidr_origin.clone();
        status.sync = self.sync.iter().map(|(k, s)| (k.as_str().to_owned(), s.clone())).collect();
        status.event_to_map = self.latency.summary();
        status.last_apply_ms = done.duration_since(started).as_secs_f64() * 1000.0;
        status.last_error = None;
        // The explanations first: a reader that sees the new status
        // generation finds the matching provenance.
        let explain_path = self.cfg.state_dir.join(state::EXPLAIN_FILE);
        state::write_json(&explain_path, explain, false)
            .map_err(|source| RuntimeError::Status { path: explain_path.clone(), source })?;
        let status_path = self.cfg.state_dir.join(state::STATUS_FILE);
        status.write(&status_path).map_err(|source| RuntimeError::Status { path: status_path.clone(), source })?;
        self.metrics.set_ready(true);
        debug!(generation = status.generation, "datapath in sync");
        Ok(())
    }
}

/// Objects Tollgate cannot read now, by kind and reason (the field path
/// without indices, so that the label stays bounded).
fn rejected_counts(diags: &[Diagnostic]) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for d in diags {
        let kind = crate::model::ObjectRef::parse(&d.object).map(|r| r.kind.as_str().to_owned()).unwrap_or_else(|| "other".to_owned());
        let mut reason = String::with_capacity(d.field.len());
        let mut depth = 0;
        for c in d.field.chars() {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                c if depth == 0 => reason.push(c),
                _ => {}
            }
        }
        *out.entry((kind, reason)).or_insert(0) += 1;
    }
    out
}
