//! `tollgate agent`: the loop that keeps the datapath equal to what the
//! source and the cgroup tree say.
pub mod hosts;
pub mod http;
pub mod state;
pub mod time;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use ipnet::IpNet;
use tracing::{info, warn};

use crate::{
    cgroups::{self, CgroupIndex},
    compiler::{self, CompilerConfig},
    datapath::{self, bpffs::PinDir, load::AttachOutcome, DatapathError},
    desired::{DesiredState, Severity},
    model::Snapshot,
    source::files,
};
use state::{StatusFile, WorkloadStatus};

#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub manifests: PathBuf,
    pub node_name: Option<String>,
    pub cgroup_root: PathBuf,
    pub bpffs: PathBuf,
    pub cluster_cidrs: Vec<IpNet>,
    pub state_dir: PathBuf,
    pub poll: Duration,
    /// Where to serve /metrics, /healthz and /readyz.
    pub metrics_addr: Option<String>,
    /// The nameservers that resolve host names of mesh objects.
    pub resolv_conf: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error("manifests folder {path}: {message}")]
    Source { path: PathBuf, message: String },
    #[error("cgroup root {path}: {message}")]
    Cgroups { path: PathBuf, message: String },
    #[error("serving metrics on {addr}: {source}")]
    Metrics { addr: String, #[source] source: std::io::Error },
    #[error("writing status {path}: {source}")]
    Status { path: PathBuf, #[source] source: std::io::Error },
}

/// What the last successful read of the manifests produced.
struct Compiled {
    snapshot: Snapshot,
    /// Problems found while reading the files.
    source_diags: Vec<crate::desired::Diagnostic>,
    desired: DesiredState,
}

fn load_dir(cfg: &AgentConfig) -> Result<(Snapshot, Vec<crate::desired::Diagnostic>), RuntimeError> {
    files::load_dir(&cfg.manifests)
        .map_err(|e| RuntimeError::Source { path: cfg.manifests.clone(), message: e.to_string() })
}

/// Compile `snapshot` with the current host answers; logs the problems
/// found (once per compilation).
fn compile(
    cfg: &AgentConfig,
    snapshot: Snapshot,
    source_diags: Vec<crate::desired::Diagnostic>,
    resolved: &BTreeMap<String, Vec<std::net::IpAddr>>,
) -> Compiled {
    let config = CompilerConfig {
        node_name: cfg.node_name.clone(),
        cluster_cidrs: cfg.cluster_cidrs.clone(),
        ..Default::default()
    };
    let mut policy = compiler::compile(&snapshot, &config);
    let mut diags = source_diags.clone();
    diags.append(&mut policy.diagnostics);
    diags.sort();
    diags.dedup();
    policy.diagnostics = diags;
    let desired = compiler::bind(&policy, resolved);
    for d in &desired.diagnostics {
        match d.severity {
            Severity::Warning => warn!(object = %d.object, field = %d.field, "{}", d.message),
            Severity::Error => tracing::error!(object = %d.object, field = %d.field, "{}", d.message),
        }
    }
    // Risky set-ups, for `tollgate analyze` (live).
    let report = crate::analyze::analyze(&snapshot, &policy, &config);
    let path = cfg.state_dir.join(state::ANALYSIS_FILE);
    if let Err(e) = state::write_json(&path, &report, true) {
        warn!(error = %e, path = %path.display(), "cannot write the analysis");
    }
    Compiled { snapshot, source_diags, desired }
}

/// How long the first apply waits for every host name to be answered (or
/// to fail), so that a starting agent does not begin by dropping what mesh
/// policy allows: longer when it takes over a running datapath, whose
/// maps allow the previous answers, than on a first start.
const FIRST_RESOLVE_WAIT: Duration = Duration::from_secs(3);
const TAKEOVER_RESOLVE_WAIT: Duration = Duration::from_secs(12);

/// Runs until killed. The pins outlive the process: enforcement continues
/// while no agent runs, and the next agent adopts them.
pub fn run(cfg: AgentConfig) -> Result<(), RuntimeError> {
    if !cfg.cgroup_root.is_dir() {
        return Err(RuntimeError::Cgroups { path: cfg.cgroup_root.clone(), message: "not a directory".into() });
    }
    // Read the input before touching the datapath: a first start on an
    // unreadable folder must not attach programs with empty maps.
    if !cfg.resolv_conf.exists() {
        warn!(path = %cfg.resolv_conf.display(), "no such --resolv-conf; host names go to 127.0.0.1:53, as glibc would");
    }
    // Taking over a running datapath: its maps allow the previous agent's
    // answers, which stay allowed for the time they have left.
    let takeover = PinDir::new(&cfg.bpffs).require_pinned().is_ok();
    let hosts_path = cfg.state_dir.join(state::HOSTS_FILE);
    let remembered = if takeover { hosts::load(&hosts_path) } else { hosts::Remembered::new() };
    let resolver = hosts::HostResolver::spawn(cfg.resolv_conf.clone(), remembered);
    let (snapshot, source_diags) = load_dir(&cfg)?;
    let mut compiled = compile(&cfg, snapshot, source_diags, &BTreeMap::new());
    let mut hosts_version = 0;
    if !compiled.desired.hosts.is_empty() {
        resolver.want(&compiled.desired.hosts);
        let deadline = Instant::now() + if takeover { TAKEOVER_RESOLVE_WAIT } else { FIRST_RESOLVE_WAIT };
        while Instant::now() < deadline && !resolver.published().settled {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut fingerprint = files::fingerprint(&cfg.manifests).ok();
    let mut dp = datapath::load::start_agent_datapath(PinDir::new(&cfg.bpffs), &cfg.cgroup_root)?;
    let generation = http::Generation::default();
    if let Some(addr) = &cfg.metrics_addr {
        http::spawn(addr, cfg.bpffs.clone(), generation.clone())
            .map_err(|source| RuntimeError::Metrics { addr: addr.clone(), source })?;
    }
    let status_path = cfg.state_dir.join(state::STATUS_FILE);
    let mut status = StatusFile::new(&cfg, dp.outcome == AttachOutcome::Adopted);
    let mut index: Option<CgroupIndex> = None;
    let mut dirty = true;
    let mut pending: Option<u64> = None;
    loop {
        let tick = Instant::now();
        // Manifests: apply a change once it has been stable for one poll
        // interval, so half-written files are not applied.
        match files::fingerprint(&cfg.manifests) {
            Ok(fp) if Some(fp) != fingerprint => {
                if pending == Some(fp) {
                    match load_dir(&cfg) {
                        Ok((snapshot, source_diags)) => {
                            compiled = compile(&cfg, snapshot, source_diags, &resolver.published().addresses);
                            fingerprint = Some(fp);
                            dirty = true;
                            info!("manifests changed; recompiled");
                        }
                        Err(e) => warn!(error = %e, "keeping the last good state"),
                    }
                    pending = None;
                } else {
                    pending = Some(fp);
                }
            }
            Ok(_) => pending = None,
            Err(e) => warn!(error = %e, "cannot read manifests; keeping the last good state"),
        }
        // Host answers: follow them as they change (TTL expiry, new
        // addresses); names no longer used are dropped by the resolver.
        resolver.want(&compiled.desired.hosts);
        let published = resolver.published();
        if published.version != hosts_version {
            hosts_version = published.version;
            let Compiled { snapshot, source_diags, .. } = compiled;
            compiled = compile(&cfg, snapshot, source_diags, &published.addresses);
            dirty = true;
            info!(hosts = published.addresses.len(), "host addresses changed; recompiled");
            if let Err(e) = hosts::save(&hosts_path, &published) {
                warn!(path = %hosts_path.display(), error = %e, "cannot save the host addresses for the next agent");
            }
        }
        match cgroups::discover(&cfg.cgroup_root) {
            Ok(found) => {
                if index.as_ref() != Some(&found) {
                    index = Some(found);
                    dirty = true;
                }
            }
            Err(e) => warn!(error = %e, "cgroup discovery failed; keeping the last state"),
        }
        if dirty {
            let empty = CgroupIndex::default();
            let idx = index.as_ref().unwrap_or(&empty);
            match datapath::reconcile::apply(&mut dp.maps, &compiled.desired, idx) {
                Ok((report, registered)) => {
                    dirty = false;
                    let workloads = compiled
                        .desired
                        .workloads
                        .iter()
                        .map(|(uid, w)| {
                            let why = compiled.desired.explain.workloads.get(&format!("{}/{}", w.namespace, w.name));
                            WorkloadStatus {
                            namespace: w.namespace.clone(),
                            pod: w.name.clone(),
                            uid: uid.clone(),
                            mode: w.mode,
                            gateway: w.flags & agent_common::FLAG_GATEWAY != 0,
                            sidecar_redirect: w.flags & agent_common::FLAG_SIDECAR_REDIRECT != 0,
                            policy: w.policy,
                            workload_id: registered.get(uid).map(|r| r.id).unwrap_or(0),
                            cgroups: registered.get(uid).map(|r| r.cgroups).unwrap_or(0),
                            sources: why.map(|w| w.sources.clone()).unwrap_or_default(),
                        }})
                        .collect();
                    let rule_entries = compiled.desired.policies.values().map(Vec::len).sum();
                    status.update(workloads, &compiled.desired.diagnostics, report, pod_ips(&compiled.snapshot), rule_entries);
                    let explain = &compiled.desired.explain;
                    status.gateways = explain.gateways.clone();
                    status.external_hosts = explain.external_hosts.clone();
                    status.osm = explain.osm.clone();
                    status.hosts = resolver.published().status;
                    // The explanations first: a reader that sees the new
                    // status generation finds the matching provenance.
                    let explain_path = cfg.state_dir.join(state::EXPLAIN_FILE);
                    state::write_json(&explain_path, explain, false)
                        .map_err(|source| RuntimeError::Status { path: explain_path.clone(), source })?;
                    status
                        .write(&status_path)
                        .map_err(|source| RuntimeError::Status { path: status_path.clone(), source })?;
                    generation.store(status.generation, std::sync::atomic::Ordering::Relaxed);
                    info!(generation = status.generation, "datapath in sync");
                }
                Err(e) => warn!(error = %e, "applying to the datapath failed; retrying"),
            }
        }
        let spent = tick.elapsed();
        if spent < cfg.poll {
            std::thread::sleep(cfg.poll - spent);
        }
    }
}

/// `namespace/name` → pod IPs, for `verify --to-pod` against a running agent.
pub fn pod_ips(snapshot: &Snapshot) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for pod in &snapshot.pods {
        let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let Some(name) = pod.metadata.name.clone() else { continue };
        let mut ips: Vec<String> = Vec::new();
        if let Some(st) = &pod.status {
            if let Some(ip) = &st.pod_ip {
                ips.push(ip.clone());
            }
            for p in st.pod_ips.iter().flatten() {
                if !ips.contains(&p.ip) {
                    ips.push(p.ip.clone());
                }
            }
        }
        out.insert(format!("{ns}/{name}"), ips);
    }
    out
}

/// The default state folder of the agent that pins under `bpffs`, so that
/// several agents (one per test run) can share a machine.
pub fn default_state_dir(bpffs: &std::path::Path) -> PathBuf {
    let flat: String = bpffs
        .to_string_lossy()
        .trim_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' })
        .collect();
    PathBuf::from("/run/tollgate").join(flat)
}
