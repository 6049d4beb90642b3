//! `bench control-plane`: the agent on synthetic clusters ([`synth`]), on
//! the files source at each size and on a local API server, measured from
//! outside: start-up, the compile times it logs, each change from being
//! made to the agent's next status generation and the agent's own
//! event-to-map figure, its peak RSS (VmHWM) and its maps' memory.
use crate::agent::{Agent, AgentConfig};
use crate::apiserver::ApiServer;
use crate::bench::bpf::{self, MapMemory};
use crate::bench::events::{self, Change, EventSample};
use crate::bench::files_source::FilesDriver;
use crate::bench::kube_source::{self, KubeDriver};
use crate::bench::observe::{self, StatusWatch};
use crate::bench::report::{mib, quantile, Report, Table};
use crate::bench::synth::{self, LocalPod};
use crate::cgroups::CgroupTree;
use crate::pods::{PodSpec, Qos};
use crate::util::{unique_prefix, TempDir};
use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Options {
    /// Cluster sizes (pods) for the files source.
    pub sizes: Vec<usize>,
    /// Changes of each small kind per size.
    pub per_kind: usize,
    /// Edits of the 10,000-ipBlock policy per size.
    pub big_edits: usize,
    /// Pods in the API server (0: skip that part).
    pub apiserver_pods: usize,
    /// How long one change may take to reach the maps; a run stops at the
    /// first change that takes longer.
    pub timeout: Duration,
}

impl Options {
    pub fn full() -> Options {
        Options { sizes: vec![1_000, 10_000, 50_000, 150_000], per_kind: 10, big_edits: 3, apiserver_pods: 50_000, timeout: Duration::from_secs(300) }
    }
    pub fn quick() -> Options {
        Options { sizes: vec![1_000], per_kind: 3, big_edits: 1, apiserver_pods: 1_000, timeout: Duration::from_secs(300) }
    }
}

/// One agent run on one cluster.
#[derive(Clone, Debug, Serialize)]
pub struct SizeResult {
    pub source: &'static str,
    pub pods: usize,
    pub objects: usize,
    /// API server only: seconds to load the objects.
    pub load_seconds: Option<f64>,
    /// Agent start to its first status generation (everything read,
    /// compiled, programs loaded, maps written).
    pub startup_seconds: f64,
    /// Every compile the agent logged (the first is the start-up one).
    pub compile_ms: Vec<f64>,
    pub events: Vec<EventSample>,
    pub vm_hwm: u64,
    pub vm_rss: u64,
    pub maps: Vec<MapMemory>,
    pub maps_memlock: u64,
    pub rule_entries: u64,
}

/// Process-wide: the agent inherits it, so its compiles are logged.
fn enable_compile_log() {
    // SAFETY: called before any thread of ours reads the environment.
    unsafe { std::env::set_var("RUST_LOG", observe::RUST_LOG) };
}

/// Runs every size; a size that fails is reported (and the whole run
/// fails at the end) without losing the figures of the others.
pub fn run(e2e_bin: &Path, tollgate_bin: &Path, opts: &Options, json: Option<&Path>) -> Result<()> {
    enable_compile_log();
    let mut results = Vec::new();
    let mut failures = Vec::new();
    let mut keep = |r: Result<SizeResult>, what: String| match r {
        Ok(r) => {
            print_partial(&r);
            results.push(r);
        }
        Err(e) => {
            eprintln!("[bench] {what} failed: {e:#}");
            failures.push(format!("{what}: {e:#}"));
        }
    };
    for &pods in &opts.sizes {
        eprintln!("[bench] files source, {pods} pods");
        keep(files_run(e2e_bin, tollgate_bin, pods, opts), format!("files source, {pods} pods"));
    }
    if opts.apiserver_pods > 0 {
        eprintln!("[bench] API server, {} pods", opts.apiserver_pods);
        keep(kube_run(e2e_bin, tollgate_bin, opts), format!("API server, {} pods", opts.apiserver_pods));
    }
    let mut rep = report(&results, opts.timeout);
    rep.notes.extend(failures.iter().map(|f| format!("FAILED: {f}")));
    rep.emit(json)?;
    if !failures.is_empty() {
        anyhow::bail!("{} part(s) failed: {}", failures.len(), failures.join("; "));
    }
    Ok(())
}

fn print_partial(r: &SizeResult) {
    {
        eprintln!(
            "[bench] {} {} pods: start-up {:.1}s, first compile {:.0} ms, VmHWM {}, maps {}",
            r.source,
            r.pods,
            r.startup_seconds,
            r.compile_ms.first().copied().unwrap_or(f64::NAN),
            mib(r.vm_hwm),
            mib(r.maps_memlock)
        );
    }
}

/// Kubelet-style cgroups for node-1's pods (systemd layout, BestEffort).
fn local_cgroups(prefix: &str, local: &[LocalPod]) -> Result<CgroupTree> {
    let specs: Vec<PodSpec> = local
        .iter()
        .map(|p| PodSpec {
            // Leaked: PodSpec holds &'static str; a bench run is short.
            namespace: Box::leak(p.namespace.clone().into_boxed_str()),
            name: Box::leak(p.name.clone().into_boxed_str()),
            tag: "x",
            uid: Box::leak(p.uid.clone().into_boxed_str()),
            qos: Qos::BestEffort,
            ipv4: Ipv4Addr::UNSPECIFIED,
            ipv6: Ipv6Addr::UNSPECIFIED,
        })
        .collect();
    CgroupTree::create(prefix, &specs)
}

fn agent_config(e2e_bin: &Path, tollgate_bin: &Path, dir: &Path, prefix: &str, cgroup_root: &Path) -> Result<AgentConfig> {
    // Mesh objects name hosts; answers come from nowhere but loopback.
    let resolv = dir.join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")?;
    Ok(AgentConfig {
        bin: tollgate_bin.to_path_buf(),
        bpffs: PathBuf::from(format!("/sys/fs/bpf/tollgate-cp-{prefix}")),
        state_dir: dir.join("state"),
        manifests: dir.join("manifests"),
        cgroup_root: cgroup_root.to_path_buf(),
        log_dir: dir.to_path_buf(),
        metrics_addr: "127.0.0.1:0".into(),
        resolv_conf: Some(resolv),
        netns: None,
        exec_in_bin: e2e_bin.to_path_buf(),
        kubeconfig: None,
        cluster_cidr_flags: true,
        extra_args: Vec::new(),
    })
}

/// Start-up: the agent's first status generation.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(1800);

fn files_run(e2e_bin: &Path, tollgate_bin: &Path, pods: usize, opts: &Options) -> Result<SizeResult> {
    let cluster = synth::cluster(pods);
    let prefix = unique_prefix();
    let dir = TempDir::new(&format!("tollgate-cp-{prefix}"))?;
    let mut driver = FilesDriver::write(&cluster, &dir.path.join("manifests"))?;
    let cgroups = local_cgroups(&prefix, &cluster.local)?;
    let cfg = agent_config(e2e_bin, tollgate_bin, &dir.path, &prefix, &cgroups.root)?;
    let changes: Vec<Change> = events::small_changes(&cluster, opts.per_kind).into_iter().chain(events::big_changes(&cluster, opts.big_edits)).collect();
    let r = measure_agent(cfg, "files", pods, cluster.objects(), None, &mut driver, &changes, opts.timeout);
    drop(cgroups);
    r
}

fn kube_run(e2e_bin: &Path, tollgate_bin: &Path, opts: &Options) -> Result<SizeResult> {
    let pods = opts.apiserver_pods;
    let cluster = synth::cluster(pods);
    let api = ApiServer::start().context("starting the API server")?;
    api.install_crds().context("installing the Istio and OSM CRDs")?;
    let rt = kube_source::runtime()?;
    let client = rt.block_on(kube_source::client(&api.kubeconfig()))?;
    kube_source::wait_ready(&rt, &client)?;
    eprintln!("[bench] loading {} objects into the API server", cluster.objects());
    let loaded = kube_source::load(&rt, &client, &cluster)?;
    eprintln!("[bench] loaded in {:.0}s", loaded.seconds);
    let prefix = unique_prefix();
    let dir = TempDir::new(&format!("tollgate-cp-{prefix}"))?;
    std::fs::create_dir_all(dir.path.join("manifests"))?;
    let cgroups = local_cgroups(&prefix, &loaded.local)?;
    let mut cfg = agent_config(e2e_bin, tollgate_bin, &dir.path, &prefix, &cgroups.root)?;
    cfg.kubeconfig = Some(api.kubeconfig());
    let mut driver = KubeDriver { rt: &rt, client };
    let changes: Vec<Change> = events::small_changes(&cluster, opts.per_kind).into_iter().chain(events::big_changes(&cluster, opts.big_edits)).collect();
    let r = measure_agent(cfg, "API server", pods, loaded.objects, Some(loaded.seconds), &mut driver, &changes, opts.timeout);
    drop(cgroups);
    drop(api);
    r
}

#[allow(clippy::too_many_arguments)]
fn measure_agent(
    cfg: AgentConfig,
    source: &'static str,
    pods: usize,
    objects: usize,
    load_seconds: Option<f64>,
    driver: &mut dyn events::Driver,
    changes: &[Change],
    timeout: Duration,
) -> Result<SizeResult> {
    let mut watch = StatusWatch::new(&cfg.state_dir);
    let bpffs = cfg.bpffs.clone();
    let t = Instant::now();
    let mut agent = Agent::start(cfg)?;
    watch.wait_above(0, STARTUP_TIMEOUT, || agent.check_alive())?;
    let startup_seconds = t.elapsed().as_secs_f64();
    eprintln!("[bench] first apply after {startup_seconds:.1}s; {} changes", changes.len());
    let events = events::measure(&mut agent, &mut watch, driver, changes, timeout)?;
    let pid = agent.pid().context("the agent is not running")?;
    let (vm_hwm, vm_rss) = observe::memory(pid)?;
    let log = agent.log_path().map(Path::to_path_buf).context("no agent log")?;
    let (compile_ms, _) = observe::compile_times(&log, 0);
    let maps = bpf::map_memory(&bpffs)?;
    let maps_memlock = maps.iter().map(|m| m.memlock).sum();
    // The run's last state still has the small changes and no big policy.
    let rule_entries = watch.last["rule_entries"].as_u64().unwrap_or(0);
    Ok(SizeResult { source, pods, objects, load_seconds, startup_seconds, compile_ms, events, vm_hwm, vm_rss, maps, maps_memlock, rule_entries })
}

fn fmt_ms(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if v >= 100.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.1} ms")
    }
}

fn report(results: &[SizeResult], timeout: Duration) -> Report {
    let mut overview = Table::new(
        "Control plane: start-up, full compile, memory",
        &["source", "pods", "objects", "start-up to first apply", "full compile (start-up)", "full compile p50 (per change)", "peak RSS (VmHWM)", "BPF maps (memlock)", "rule entries"],
    );
    let mut ev = Table::new(
        "Control plane: one change to its map writes",
        &["source", "pods", "change", "n", "agent p50", "agent p99", "outside p50", "outside p99"],
    );
    let mut big = Table::new(
        "Control plane: a NetworkPolicy of 10,000 ipBlocks",
        &["source", "pods", "change", "n", "agent (median)", "agent (max)", "outside (median)", "map writes (apply, median)"],
    );
    for r in results {
        let per_change: Vec<f64> = r.events.iter().flat_map(|e| e.compile_ms.iter().copied()).collect();
        overview.row(vec![
            r.source.into(),
            r.pods.to_string(),
            r.objects.to_string(),
            format!("{:.1} s", r.startup_seconds) + &r.load_seconds.map(|l| format!(" (load {l:.0} s)")).unwrap_or_default(),
            fmt_ms(r.compile_ms.first().copied().unwrap_or(f64::NAN)),
            fmt_ms(quantile(&per_change, 0.5)),
            mib(r.vm_hwm),
            mib(r.maps_memlock),
            r.rule_entries.to_string(),
        ]);
        let mut kinds: Vec<&str> = Vec::new();
        for e in &r.events {
            if !kinds.contains(&e.kind) {
                kinds.push(e.kind);
            }
        }
        let mut small_agent = Vec::new();
        for k in kinds.iter().copied() {
            let mine: Vec<&EventSample> = r.events.iter().filter(|e| e.kind == k).collect();
            let agent: Vec<f64> = mine.iter().map(|e| e.agent_ms).collect();
            let outside: Vec<f64> = mine.iter().map(|e| e.outside_ms).collect();
            let timed_out = mine.iter().any(|e| e.timed_out);
            let cell = |v: f64| if timed_out { format!("> {} (timed out)", fmt_ms(timeout.as_secs_f64() * 1e3)) } else { fmt_ms(v) };
            if k.starts_with("10,000") {
                let apply: Vec<f64> = mine.iter().map(|e| e.apply_ms).collect();
                big.row(vec![
                    r.source.into(),
                    r.pods.to_string(),
                    k.into(),
                    mine.len().to_string(),
                    cell(quantile(&agent, 0.5)),
                    cell(quantile(&agent, 1.0)),
                    cell(quantile(&outside, 0.5)),
                    cell(quantile(&apply, 0.5)),
                ]);
                continue;
            }
            small_agent.extend(agent.iter().copied());
            ev.row(vec![
                r.source.into(),
                r.pods.to_string(),
                k.into(),
                mine.len().to_string(),
                cell(quantile(&agent, 0.5)),
                cell(quantile(&agent, 0.99)),
                cell(quantile(&outside, 0.5)),
                cell(quantile(&outside, 0.99)),
            ]);
        }
        let all_outside: Vec<f64> = r.events.iter().filter(|e| !e.kind.starts_with("10,000")).map(|e| e.outside_ms).collect();
        ev.row(vec![
            r.source.into(),
            r.pods.to_string(),
            "**all small changes**".into(),
            small_agent.len().to_string(),
            fmt_ms(quantile(&small_agent, 0.5)),
            fmt_ms(quantile(&small_agent, 0.99)),
            fmt_ms(quantile(&all_outside, 0.5)),
            fmt_ms(quantile(&all_outside, 0.99)),
        ]);
    }
    let notes = vec![
        format!(
            "Synthetic clusters (tests/src/bench/synth.rs): {} pods per namespace, a Service and an EndpointSlice per {} pods, about 1.8 egress NetworkPolicies per namespace (selector, namespaceSelector and ipBlock peers), per 10 namespaces one MESH_INTERNAL and one MESH_EXTERNAL ServiceEntry, per 5 namespaces one OSM Egress, {} pods on this node (with kubelet-style cgroups), the rest on pods/110 other nodes; egress enforced in 5 of 10 namespaces, audited in 1.",
            synth::PODS_PER_NAMESPACE,
            synth::PODS_PER_SERVICE,
            synth::LOCAL_PODS
        ),
        "agent: the agent's own event_to_map (status -o json, last_ms after each change): from the change reaching the agent (files: after the folder was re-read; API server: the watch event) to its map writes. outside: from just before the change was made (file renamed into place / API request sent) to the agent's next status generation; on the files source it includes the 250 ms poll, the one-poll stability wait and the re-read of every file.".into(),
        "full compile: the agent's own `compiled ms=` log line (debug level), the whole compile plus analyze; every change recompiles everything today, so the per-change p50 is a full compile too.".into(),
        "10,000-ipBlock policy: one NetworkPolicy in a namespace with enforced pods of this node, 10 egress rules of 1,000 /32 ipBlocks on port 443; an edit shifts every address (10,000 entries out, 10,000 in).".into(),
        "BPF maps: the sum of memlock in the fdinfo of every map the agent pinned (kernel accounting; LPM tries and hashes allocate on demand, arrays and per-CPU maps up front).".into(),
    ];
    Report { part: "control-plane", tables: vec![overview, ev, big], notes, data: json!({ "runs": results }) }
}
