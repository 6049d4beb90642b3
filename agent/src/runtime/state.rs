//! The agent's status file, read by `tollgate status` and `verify`.
use std::{collections::BTreeMap, io::Write, path::Path};

use serde::{Deserialize, Serialize};

use super::{cluster_cidrs::CidrOrigin, latency::LatencySummary, layers::Layers, time::now_rfc3339, AgentConfig, SourceConfig};
use crate::{
    datapath::reconcile::ApplyReport,
    desired::{Diagnostic, Mode},
    explain::{Explain, OsmExplain, PolicySources},
    resolver::HostStatus,
};

/// File names in the agent's state folder.
pub const STATUS_FILE: &str = "status.json";
pub const EXPLAIN_FILE: &str = "explain.json";
pub const ANALYSIS_FILE: &str = "analysis.json";
/// Resolved host addresses with their expiries, for the next agent.
pub const HOSTS_FILE: &str = "hosts.json";
/// How often a running agent rewrites its status (`heartbeat_at`), so that
/// `status` tells a live agent from a stuck or dead one.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadStatus {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    pub mode: Mode,
    pub gateway: bool,
    pub sidecar_redirect: bool,
    pub policy: u32,
    pub workload_id: u32,
    /// Cgroups found for the pod on this node (0: not running here yet).
    pub cgroups: usize,
    /// The pod's `metadata.creationTimestamp`, else when this agent first
    /// listed it (RFC 3339): how long a pod has been without a cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The runtime class, when it is a sandboxed runtime (gVisor, Kata):
    /// the TC layer alone enforces the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_class: Option<String>,
    /// Which layers enforce the pod now (none for pods that are not
    /// enforced, and gateways).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Layers>,
    #[serde(flatten)]
    pub sources: PolicySources,
}

impl WorkloadStatus {
    /// Sets [`Self::layers`] from whether the TC layer is on the pod's
    /// veth; true when it changed.
    pub fn set_tc_attached(&mut self, tc_attached: bool) -> bool {
        let layers = Layers::of(self.mode, self.gateway, self.runtime_class.is_some(), tc_attached);
        std::mem::replace(&mut self.layers, layers) != layers
    }
}

/// The source's state for one kind of object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindSync {
    /// The initial list is done.
    pub synced: bool,
    /// The cluster serves the kind (false: an Istio or OSM CRD that is
    /// not installed; picked up when it appears).
    #[serde(default = "yes")]
    pub served: bool,
    /// Watch errors since the agent started.
    #[serde(default)]
    pub errors: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

fn yes() -> bool {
    true
}

/// Served until the source says otherwise (the files source never does).
impl Default for KindSync {
    fn default() -> Self {
        Self { synced: false, served: true, errors: 0, last_error: None }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusFile {
    pub generation: u64,
    pub pid: u32,
    pub updated_at: String,
    pub started_at: String,
    pub source: String,
    pub manifests: String,
    pub node: Option<String>,
    pub bpffs: String,
    pub cgroup_root: String,
    pub cluster_cidrs: Vec<String>,
    /// True when this agent adopted the programs a previous one pinned.
    pub adopted: bool,
    pub last_apply: ApplyReport,
    pub rule_entries: usize,
    pub workloads: Vec<WorkloadStatus>,
    pub diagnostics: Vec<DiagnosticJson>,
    /// `namespace/name` → IPs of every pod in the input.
    pub pods: BTreeMap<String, Vec<String>>,
    /// The egress gateways, as explanations name them.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// External ServiceEntry hosts (reachable only through the gateway)
    /// and the ServiceEntries naming them.
    #[serde(default)]
    pub external_hosts: BTreeMap<String, Vec<String>>,
    /// Host names of mesh objects and what they resolve to now.
    #[serde(default)]
    pub hosts: Vec<HostStatus>,
    /// The OSM MeshConfig in force, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub osm: Option<OsmExplain>,
    /// Where `cluster_cidrs` came from.
    #[serde(default)]
    pub cluster_cidrs_from: CidrOrigin,
    /// The source's state per kind of object.
    #[serde(default)]
    pub sync: BTreeMap<String, KindSync>,
    /// Time from a change reaching the agent to its map writes.
    #[serde(default)]
    pub event_to_map: LatencySummary,
    /// How long the last apply (map writes) took.
    #[serde(default)]
    pub last_apply_ms: f64,
    /// Objects set aside under the trust rules (they widen nothing).
    #[serde(default)]
    pub ignored: Vec<crate::desired::Ignored>,
    /// The last failed apply, until one succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the agent last rewrote this file (every [`HEARTBEAT`]); empty
    /// from agents that predate it.
    #[serde(default)]
    pub heartbeat_at: String,
    /// Layout id of each pinned map (`<bpffs>/<MAP>` links to `<MAP>-<id>`).
    #[serde(default)]
    pub layout: BTreeMap<String, String>,
    /// The map-layout upgrade this agent ran when it started, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout_upgrade: Option<crate::datapath::upgrade::UpgradeReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiagnosticJson {
    pub severity: String,
    pub object: String,
    pub field: String,
    pub message: String,
    pub source: Option<String>,
}

impl StatusFile {
    pub fn new(cfg: &AgentConfig, adopted: bool) -> Self {
        Self {
            generation: 0,
            pid: std::process::id(),
            updated_at: now_rfc3339(),
            started_at: now_rfc3339(),
            source: cfg.source.name().into(),
            manifests: match &cfg.source {
                SourceConfig::Files { manifests, .. } => manifests.display().to_string(),
                SourceConfig::Kubernetes { kubeconfig: Some(path) } => path.display().to_string(),
                SourceConfig::Kubernetes { kubeconfig: None } => "(in-cluster or default kubeconfig)".into(),
            },
            node: cfg.node_name.clone(),
            bpffs: cfg.bpffs.display().to_string(),
            cgroup_root: cfg.cgroup_root.display().to_string(),
            cluster_cidrs: cfg.cluster_cidrs.iter().map(|c| c.to_string()).collect(),
            adopted,
            last_apply: ApplyReport::default(),
            rule_entries: 0,
            workloads: Vec::new(),
            diagnostics: Vec::new(),
            pods: BTreeMap::new(),
            gateways: Vec::new(),
            external_hosts: BTreeMap::new(),
            hosts: Vec::new(),
            osm: None,
            cluster_cidrs_from: if cfg.cluster_cidrs.is_empty() { CidrOrigin::None } else { CidrOrigin::Flag },
            sync: BTreeMap::new(),
            event_to_map: LatencySummary::default(),
            last_apply_ms: 0.0,
            ignored: Vec::new(),
            last_error: None,
            heartbeat_at: now_rfc3339(),
            layout: BTreeMap::new(),
            layout_upgrade: None,
        }
    }

    pub fn update(
        &mut self,
        workloads: Vec<WorkloadStatus>,
        diagnostics: &[Diagnostic],
        report: ApplyReport,
        pods: BTreeMap<String, Vec<String>>,
        rule_entries: usize,
    ) {
        self.generation += 1;
        self.updated_at = now_rfc3339();
        self.heartbeat_at = self.updated_at.clone();
        // A pod keeps the time it was first listed across applies.
        let mut workloads = workloads;
        for w in workloads.iter_mut().filter(|w| w.since.is_none()) {
            let before = self.workloads.iter().find(|o| o.uid == w.uid).and_then(|o| o.since.clone());
            w.since = Some(before.unwrap_or_else(|| self.updated_at.clone()));
        }
        self.workloads = workloads;
        self.rule_entries = rule_entries;
        self.pods = pods;
        self.last_apply = report;
        self.diagnostics = diagnostics
            .iter()
            .map(|d| DiagnosticJson {
                severity: format!("{:?}", d.severity).to_lowercase(),
                object: d.object.clone(),
                field: d.field.clone(),
                message: d.message.clone(),
                source: d.source.clone(),
            })
            .collect();
    }

    /// Marks the file as rewritten now by a live agent.
    pub fn beat(&mut self) {
        self.heartbeat_at = now_rfc3339();
    }

    /// Writes atomically (temp file + rename).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        write_json(path, self, true)
    }

    pub fn read(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text).map_err(std::io::Error::other)
    }
}

/// Write `value` as JSON to `path` atomically (temp file + rename),
/// through one buffer: serde_json writes token by token, and unbuffered
/// that was a `write(2)` per token (the explanation of a 10,000-ipBlock
/// policy took most of a second in system calls).
pub fn write_json<T: Serialize>(path: &Path, value: &T, pretty: bool) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = std::io::BufWriter::with_capacity(256 * 1024, std::fs::File::create(&tmp)?);
    if pretty {
        serde_json::to_writer_pretty(&mut f, value).map_err(std::io::Error::other)?;
    } else {
        serde_json::to_writer(&mut f, value).map_err(std::io::Error::other)?;
    }
    f.write_all(b"\n")?;
    let f = f.into_inner().map_err(std::io::IntoInnerError::into_error)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The rule provenance the agent last applied (read by `verify`).
pub fn read_explain(state_dir: &Path) -> std::io::Result<Explain> {
    let text = std::fs::read_to_string(state_dir.join(EXPLAIN_FILE))?;
    serde_json::from_str(&text).map_err(std::io::Error::other)
}
