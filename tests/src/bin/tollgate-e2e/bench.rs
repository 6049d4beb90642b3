//! `tollgate-e2e bench PART`: run by `cargo xtask bench PART`.
use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;
use std::time::Duration;
use tollgate_e2e::bench::{control_plane, events, files_source, load::Kind, prog_stats, synth, throughput, world::Filter};

#[derive(Subcommand)]
pub enum Part {
    /// Pod-to-gateway TCP stream, TCP connections/s and UDP packets/s through
    /// no filter, Tollgate, iptables and nftables, interleaved.
    Throughput {
        #[command(flatten)]
        common: Common,
        /// Allow-list sizes (of 10, 1000, 10000) [default: all; --quick: 10].
        #[arg(long, value_delimiter = ',')]
        sizes: Vec<usize>,
        /// Rounds per run [default: 5; --quick: 2].
        #[arg(long)]
        rounds: Option<usize>,
        /// Slice length in ms [default: 1000; --quick: 200].
        #[arg(long)]
        slice_ms: Option<u64>,
        /// Whole runs, compared with each other [default: 2; --quick: 1].
        #[arg(long)]
        runs: Option<usize>,
        /// Kinds of traffic [default: all].
        #[arg(long, value_delimiter = ',')]
        kinds: Vec<Kind>,
        /// Filters compared with no filter [default: tollgate,iptables,nftables].
        #[arg(long, value_delimiter = ',')]
        filters: Vec<Filter>,
    },
    /// Write a synthetic cluster of PODS pods as YAML (one file per
    /// namespace) into DIR, for `tollgate verify/analyze --manifests` or a
    /// profiler; with --big-policy, the 10,000-ipBlock NetworkPolicy too.
    Synth {
        #[arg(long)]
        pods: usize,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        big_policy: bool,
    },
    /// run_time_ns / run_cnt of the agent's attached programs during real traffic.
    ProgStats {
        #[command(flatten)]
        common: Common,
        /// Allow-list entries of the enforced pod (10, 1000 or 10000).
        #[arg(long, default_value_t = 10_000)]
        n: usize,
        /// Length of each kind of traffic in ms [default: 2000; --quick: 300].
        #[arg(long)]
        ms: Option<u64>,
    },
    /// The agent on synthetic clusters: files source at each size, and a
    /// local API server.
    ControlPlane {
        #[command(flatten)]
        common: Common,
        /// Cluster sizes in pods for the files source; 0 for none [default: 1000,10000,50000,150000; --quick: 1000].
        #[arg(long, value_delimiter = ',')]
        sizes: Vec<usize>,
        /// Changes of each small kind per size [default: 10; --quick: 3].
        #[arg(long)]
        per_kind: Option<usize>,
        /// Edits of the 10,000-ipBlock policy per size; 0 leaves that policy out [default: 3; --quick: 1].
        #[arg(long)]
        big_edits: Option<usize>,
        /// Pods in the local API server; 0 skips it [default: 50000; --quick: 1000].
        #[arg(long)]
        apiserver_pods: Option<usize>,
        /// Seconds one change may take to reach the maps; a run stops at the first that takes longer.
        #[arg(long, default_value_t = 300)]
        timeout_s: u64,
    },
}

#[derive(clap::Args)]
pub struct Common {
    /// The tollgate binary.
    #[arg(long, env = "TOLLGATE_BIN")]
    tollgate: Option<PathBuf>,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A short smoke run.
    #[arg(long)]
    quick: bool,
}

impl Common {
    fn tollgate(&self) -> PathBuf {
        self.tollgate.clone().unwrap_or_else(tollgate_e2e::agent::default_tollgate_bin)
    }
}

pub fn run(part: Part) -> Result<()> {
    if !matches!(part, Part::Synth { .. }) {
        tollgate_e2e::util::require_environment();
    }
    let me = std::env::current_exe()?;
    match part {
        Part::Throughput { common, sizes, rounds, slice_ms, runs, kinds, filters } => {
            let mut o = if common.quick { throughput::Options::quick() } else { throughput::Options::full() };
            if !sizes.is_empty() {
                o.sizes = sizes;
            }
            if !kinds.is_empty() {
                o.kinds = kinds;
            }
            if !filters.is_empty() {
                o.filters = filters;
            }
            o.rounds = rounds.unwrap_or(o.rounds).max(1);
            o.runs = runs.unwrap_or(o.runs).max(1);
            if let Some(ms) = slice_ms {
                o.slice = Duration::from_millis(ms.max(50));
            }
            throughput::run(&me, &common.tollgate(), &o, common.json.as_deref())
        }
        Part::ControlPlane { common, sizes, per_kind, big_edits, apiserver_pods, timeout_s } => {
            let mut o = if common.quick { control_plane::Options::quick() } else { control_plane::Options::full() };
            if !sizes.is_empty() {
                // `--sizes 0`: the API server part only.
                o.sizes = sizes.into_iter().filter(|s| *s > 0).collect();
            }
            o.per_kind = per_kind.unwrap_or(o.per_kind).max(1);
            o.big_edits = big_edits.unwrap_or(o.big_edits);
            o.apiserver_pods = apiserver_pods.unwrap_or(o.apiserver_pods);
            o.timeout = Duration::from_secs(timeout_s.max(1));
            control_plane::run(&me, &common.tollgate(), &o, common.json.as_deref())
        }
        Part::Synth { pods, out, big_policy } => {
            let c = synth::cluster(pods);
            let mut d = files_source::FilesDriver::write(&c, &out)?;
            if big_policy {
                let ns = events::local_enforced_namespaces(&c).first().copied().unwrap_or(0);
                events::Driver::apply(&mut d, &events::Change::BigPolicy { ns, shift: 0 })?;
            }
            println!("{} objects in {} files under {} (--cluster-cidr {})", c.objects(), c.groups.len(), out.display(), synth::CLUSTER_CIDRS.join(" --cluster-cidr "));
            Ok(())
        }
        Part::ProgStats { common, n, ms } => {
            let ms = ms.unwrap_or(if common.quick { 300 } else { 2000 });
            prog_stats::run(&me, &common.tollgate(), n, Duration::from_millis(ms), common.json.as_deref())
        }
    }
}
