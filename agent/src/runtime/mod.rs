//! `tollgate agent`: an event loop that keeps the datapath equal to what
//! the source, the cgroup tree and the resolver say.
//!
//! Sources ([`crate::source`]) send typed object events into one channel;
//! the cgroup watcher says when the kubepods tree changed; the resolver
//! says when host addresses changed; timers drive a safety rescan and the
//! status heartbeat. The loop ([`agent`]) applies events to the store,
//! recompiles only when objects changed, and writes only what changed to
//! the maps.
pub mod agent;
pub mod cluster_cidrs;
pub mod hosts;
pub mod http;
pub mod latency;
pub mod layers;
pub mod state;
pub mod time;

use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::datapath::DatapathError;

/// Where the objects come from.
#[derive(Clone, Debug)]
pub enum SourceConfig {
    /// A folder of YAML, polled every `poll`.
    Files { manifests: PathBuf, poll: Duration },
    /// The API server: in-cluster, else `kubeconfig`, else `KUBECONFIG`,
    /// else `~/.kube/config`.
    Kubernetes { kubeconfig: Option<PathBuf> },
}

impl SourceConfig {
    pub fn name(&self) -> &'static str {
        match self {
            SourceConfig::Files { .. } => "files",
            SourceConfig::Kubernetes { .. } => "kubernetes",
        }
    }
}

#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub source: SourceConfig,
    /// Only pods of this node (required with the Kubernetes source).
    pub node_name: Option<String>,
    pub cgroup_root: PathBuf,
    pub bpffs: PathBuf,
    /// `--cluster-cidr`; when empty, learned from Nodes and ServiceCIDRs.
    pub cluster_cidrs: Vec<IpNet>,
    pub state_dir: PathBuf,
    /// Where to serve /metrics, /healthz and /readyz.
    pub metrics_addr: Option<String>,
    /// The nameservers that resolve host names of mesh objects.
    pub resolv_conf: PathBuf,
    /// `--trusted-namespace` (the defaults when not given).
    pub trusted_namespaces: Vec<String>,
    /// `--osm-namespace`.
    pub osm_namespace: String,
    /// `--sandboxed-runtime-class` (the defaults when not given).
    pub sandboxed_runtime_classes: Vec<String>,
    /// How often the whole cgroup tree is scanned besides inotify.
    pub rescan: Duration,
    /// Kernel programs log through aya-log (debugging; off by default).
    pub kernel_log: bool,
    /// Log every dropped or audited flow as a log line (JSON with
    /// `--log-format json`).
    pub log_flows: bool,
    /// (map, max entries) overrides: a test-only way to give this agent
    /// another map layout than the build's (hidden
    /// `--test-map-max-entries`).
    pub map_max_entries: Vec<(&'static str, u32)>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error("manifests folder {path}: {message}")]
    Source { path: PathBuf, message: String },
    #[error("Kubernetes API: {0}")]
    Kubernetes(String),
    #[error("agent configuration: {0}")]
    Config(String),
    #[error("cgroup root {path}: {message}")]
    Cgroups { path: PathBuf, message: String },
    #[error("serving metrics on {addr}: {source}")]
    Metrics { addr: String, #[source] source: std::io::Error },
    #[error("writing status {path}: {source}")]
    Status { path: PathBuf, #[source] source: std::io::Error },
    #[error("starting the agent's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl RuntimeError {
    /// Short cause, for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            RuntimeError::Datapath(_) => "datapath",
            RuntimeError::Source { .. } => "source",
            RuntimeError::Kubernetes(_) => "kubernetes",
            RuntimeError::Config(_) => "config",
            RuntimeError::Cgroups { .. } => "cgroup",
            RuntimeError::Metrics { .. } => "metrics",
            RuntimeError::Status { .. } => "status",
            RuntimeError::Runtime(_) => "runtime",
        }
    }
}

/// Runs until killed. The pins outlive the process: enforcement continues
/// while no agent runs, and the next agent adopts them.
pub fn run(cfg: AgentConfig) -> Result<(), RuntimeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tollgate-agent")
        .enable_all()
        .build()
        .map_err(RuntimeError::Runtime)?;
    rt.block_on(agent::run(cfg))
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

/// `namespace/name` → pod IPs, for `verify --to-pod` against a running agent.
pub fn pod_ips(snapshot: &crate::model::Snapshot) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out = std::collections::BTreeMap::new();
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
