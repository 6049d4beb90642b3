//! The `tollgate` binary.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};
use ipnet::IpNet;
use tollgate::{
    cgroups,
    cli::{self, verify, CliError, OutputFormat},
    runtime::{self, AgentConfig},
};

#[derive(Parser)]
#[command(name = "tollgate", version, about = "Egress only through the gateway, enforced in the kernel")]
struct Cli {
    /// bpffs folder holding the agent's pinned programs and maps.
    #[arg(long, global = true, default_value = "/sys/fs/bpf/tollgate")]
    bpffs: PathBuf,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Folder of the agent's status file (default: /run/tollgate/<bpffs path>).
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum SourceKind {
    Kubernetes,
    Files,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node agent: keep the kernel programs and maps in line with the cluster.
    Agent {
        #[arg(long, value_enum, default_value_t = SourceKind::Kubernetes)]
        source: SourceKind,
        /// Kubeconfig file (with --source kubernetes; default: in-cluster, else $KUBECONFIG, else ~/.kube/config).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Folder of Kubernetes YAML (with --source files).
        #[arg(long)]
        manifests: Option<PathBuf>,
        /// This node's name (default: $NODE_NAME; required with --source kubernetes; with --source files every pod counts if unset).
        #[arg(long, env = "NODE_NAME")]
        node_name: Option<String>,
        /// cgroup v2 root (default: the cgroup2 mount).
        #[arg(long)]
        cgroup_root: Option<PathBuf>,
        /// Pod and Service CIDRs ("inside the cluster"); repeat for each. Default: learned from the Nodes' podCIDRs and the ServiceCIDR objects.
        #[arg(long = "cluster-cidr")]
        cluster_cidrs: Vec<IpNet>,
        /// Namespaces whose objects may widen other namespaces' egress; repeat for each.
        #[arg(long = "trusted-namespace", default_values_t = default_trusted())]
        trusted_namespaces: Vec<String>,
        /// Namespace of the OSM control plane (its MeshConfig wins).
        #[arg(long, default_value = "osm-system")]
        osm_namespace: String,
        /// runtimeClassName of a sandboxed runtime (gVisor, Kata), enforced by the TC layer alone; repeat for each; a trailing * matches any suffix.
        #[arg(long = "sandboxed-runtime-class", value_name = "NAME", default_values_t = default_sandboxed())]
        sandboxed_runtime_classes: Vec<String>,
        /// Address for /metrics, /healthz, /readyz.
        #[arg(long)]
        metrics_addr: Option<String>,
        /// Nameservers for host names in mesh objects (OSM Egress hosts).
        #[arg(long, default_value = "/etc/resolv.conf")]
        resolv_conf: PathBuf,
        /// How often the manifests folder is checked (--source files), in ms.
        #[arg(long, default_value_t = 250, hide = true)]
        poll_ms: u64,
        /// Kernel programs log through aya-log (debugging; never on the packet path when off).
        #[arg(long)]
        kernel_log: bool,
        /// Log every dropped or audited flow as a log line (JSON with --log-format json).
        #[arg(long)]
        log_flows: bool,
        /// How often the whole cgroup tree is scanned besides inotify, in ms.
        #[arg(long, default_value_t = 5000, hide = true)]
        rescan_ms: u64,
        /// Test only: MAP=N gives map MAP N entries (another map layout, as a
        /// new release would have); repeat for each map.
        #[arg(long = "test-map-max-entries", hide = true)]
        test_map_max_entries: Vec<String>,
    },
    /// Ask the kernel program what it does with a packet from a pod.
    Verify {
        /// The sending pod, NAMESPACE/NAME.
        #[arg(long, required_unless_present = "batch")]
        from_pod: Option<String>,
        /// Destination: a pod, NAMESPACE/NAME (its first IP).
        #[arg(long)]
        to_pod: Option<String>,
        /// Destination: an IPv4 or IPv6 address.
        #[arg(long)]
        to_ip: Option<String>,
        /// Destination: a host name (the address the agent resolved for it, else the system resolver's).
        #[arg(long)]
        to_host: Option<String>,
        /// Destination port (required, except for icmp).
        #[arg(long, default_value_t = 0, conflicts_with = "batch")]
        to_port: u16,
        /// tcp, udp, sctp or icmp.
        #[arg(long, default_value = "tcp", conflicts_with = "batch")]
        protocol: String,
        /// Answer from a private load filled from this folder instead of the running agent.
        #[arg(long)]
        manifests: Option<PathBuf>,
        /// Pod and Service CIDRs (with --manifests); repeat for each.
        #[arg(long = "cluster-cidr")]
        cluster_cidrs: Vec<IpNet>,
        /// Nameservers for host names in mesh objects (with --manifests).
        #[arg(long, default_value = "/etc/resolv.conf")]
        resolv_conf: PathBuf,
        /// Namespace whose objects may widen egress for others (with --manifests); repeat for each (default: istio-system, kube-system, osm-system, tollgate-system).
        #[arg(long = "trusted-namespace", value_name = "NS")]
        trusted_namespaces: Vec<String>,
        /// OSM control-plane namespace whose MeshConfig wins (with --manifests; default osm-system).
        #[arg(long, value_name = "NS")]
        osm_namespace: Option<String>,
        /// One JSON query a line (FILE or - for stdin); one JSON answer a line.
        #[arg(long, conflicts_with_all = ["from_pod", "to_pod", "to_ip", "to_host"])]
        batch: Option<String>,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Packet counters per workload and for the node.
    Counters {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Recent dropped and audited flows.
    Flows {
        #[arg(long)]
        follow: bool,
        /// Only flows of pods of this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Only flows of pods of this name.
        #[arg(long)]
        pod: Option<String>,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// What the agent applied, its warnings, and whether it runs.
    Status {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Risky or ineffective configuration (the running agent's findings, or a folder's).
    Analyze {
        /// Analyze this folder of manifests instead of reading the running agent's findings.
        #[arg(long)]
        manifests: Option<PathBuf>,
        /// Pod and Service CIDRs (with --manifests); repeat for each.
        #[arg(long = "cluster-cidr")]
        cluster_cidrs: Vec<String>,
        /// Namespace whose objects may widen egress for others (with --manifests); repeat for each (default: istio-system, kube-system, osm-system, tollgate-system).
        #[arg(long = "trusted-namespace", value_name = "NS")]
        trusted_namespaces: Vec<String>,
        /// OSM control-plane namespace whose MeshConfig wins (with --manifests; default osm-system).
        #[arg(long, value_name = "NS")]
        osm_namespace: Option<String>,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// What the pinned maps hold, independent of the ids the agent chose (JSON).
    #[command(hide = true)]
    Maps,
    /// Per-packet cost of the egress program (BPF_PROG_TEST_RUN).
    #[command(hide = true)]
    BenchDatapath {
        #[arg(long, default_value_t = 100_000)]
        prefixes: u32,
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
    },
}

/// The namespaces trusted when no --trusted-namespace is given.
fn default_sandboxed() -> Vec<String> {
    tollgate::compiler::DEFAULT_SANDBOXED_RUNTIME_CLASSES.map(String::from).to_vec()
}

fn default_trusted() -> Vec<String> {
    ["istio-system", "kube-system", "osm-system", "tollgate-system"].map(String::from).to_vec()
}

/// Logs go to stderr; `RUST_LOG` filters them (default `info`). JSON lines
/// have flat keys (`level`, `time`, `component`, `message`, `object`, ...):
/// see [`tollgate::logs`].
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.event_format(tollgate::logs::JsonLines).init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    // Installed as `kubectl-tollgate`, the binary is the kubectl plugin.
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if cli::kubectl::invoked_as_plugin(&argv0.to_string_lossy()) {
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let args: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
        return ExitCode::from(cli::kubectl::main(&args).clamp(0, 255) as u8);
    }
    // Usage errors are bad input (exit 1), not clap's default 2, which
    // the contract keeps for "environment not ready".
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    init_logs(cli.log_format);
    if !matches!(cli.command, Command::Agent { .. }) {
        // Reports piped into `head` end quietly, as other CLIs do, instead
        // of panicking on EPIPE. (Not the agent: its HTTP server must
        // survive clients that hang up.)
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let state_dir = cli.state_dir.clone().unwrap_or_else(|| runtime::default_state_dir(&cli.bpffs));
    match cli.command {
        Command::Agent {
            source,
            kubeconfig,
            manifests,
            node_name,
            cgroup_root,
            cluster_cidrs,
            trusted_namespaces,
            osm_namespace,
            sandboxed_runtime_classes,
            metrics_addr,
            resolv_conf,
            poll_ms,
            rescan_ms,
            kernel_log,
            log_flows,
            test_map_max_entries,
        } => {
            let map_max_entries = parse_map_max_entries(&test_map_max_entries)?;
            let source = match source {
                SourceKind::Files => runtime::SourceConfig::Files {
                    manifests: manifests.ok_or_else(|| {
                        CliError::Input("agent: flag --manifests: required with --source files".into())
                    })?,
                    poll: Duration::from_millis(poll_ms.max(50)),
                },
                SourceKind::Kubernetes => {
                    if manifests.is_some() {
                        return Err(CliError::Input(
                            "agent: flag --manifests: only with --source files".into(),
                        ));
                    }
                    if node_name.as_deref().is_none_or(str::is_empty) {
                        return Err(CliError::Input(
                            "agent: flag --node-name: required with --source kubernetes (or set NODE_NAME)".into(),
                        ));
                    }
                    runtime::SourceConfig::Kubernetes { kubeconfig }
                }
            };
            let cfg = AgentConfig {
                source,
                node_name,
                cgroup_root: cgroup_root.unwrap_or_else(cgroups::default_cgroup_root),
                bpffs: cli.bpffs,
                cluster_cidrs,
                state_dir,
                metrics_addr,
                resolv_conf,
                trusted_namespaces,
                osm_namespace,
                sandboxed_runtime_classes,
                rescan: Duration::from_millis(rescan_ms.max(100)),
                kernel_log,
                log_flows,
                map_max_entries,
            };
            runtime::run(cfg).map_err(|e| match e {
                runtime::RuntimeError::Datapath(d) => CliError::from(d),
                runtime::RuntimeError::Source { .. } | runtime::RuntimeError::Config(_) => CliError::Input(e.to_string()),
                other => CliError::Environment(other.to_string()),
            })
        }
        Command::Verify {
            from_pod,
            to_pod,
            to_ip,
            to_host,
            to_port,
            protocol,
            manifests,
            cluster_cidrs,
            resolv_conf,
            trusted_namespaces,
            osm_namespace,
            batch,
            output,
        } => {
            let trust = cli::analyze::Trust { trusted_namespaces, osm_namespace };
            let source = match manifests {
                Some(dir) => verify::Source::Manifests { dir, cluster_cidrs, resolv_conf, trust },
                None if !cluster_cidrs.is_empty() => {
                    return Err(CliError::Input(
                        "verify: flag --cluster-cidr: only with --manifests (the running agent has its own)".into(),
                    ))
                }
                None if trust != cli::analyze::Trust::default() => {
                    return Err(CliError::Input(
                        "verify: flags --trusted-namespace/--osm-namespace: only with --manifests (the running agent has its own)".into(),
                    ))
                }
                None => verify::Source::Pinned { bpffs: cli.bpffs.clone(), state_dir },
            };
            let v = verify::Verifier::open(source, &cli.bpffs)?;
            match batch {
                Some(input) => verify::run_batch(v, &input),
                None => {
                    let q = verify::Query {
                        from_pod: from_pod.unwrap_or_default(),
                        to_pod,
                        to_ip,
                        to_host,
                        to_port,
                        protocol,
                    };
                    verify::run_one(v, q, output)
                }
            }
        }
        Command::Counters { output } => cli::counters::run(&cli.bpffs, output),
        Command::Flows { follow, namespace, pod, output } => {
            cli::flows::run(&cli.bpffs, &state_dir, follow, output, cli::flows::Filter { namespace, pod })
        }
        Command::Status { output } => cli::status::run(&cli.bpffs, &state_dir, output),
        Command::Analyze { manifests, cluster_cidrs, trusted_namespaces, osm_namespace, output } => {
            let trust = cli::analyze::Trust { trusted_namespaces, osm_namespace };
            cli::analyze::run(cli::analyze::Source::from_flags(manifests, cluster_cidrs, trust, state_dir)?, output)
        }
        Command::Maps => cli::maps_dump::run(&cli.bpffs),
        Command::BenchDatapath { prefixes, repeat } => cli::bench::run(&cli.bpffs, prefixes, repeat),
    }
}

/// `MAP=N` of `--test-map-max-entries`, with the map's name as the build
/// knows it.
fn parse_map_max_entries(given: &[String]) -> Result<Vec<(&'static str, u32)>, CliError> {
    given
        .iter()
        .map(|g| {
            let bad = || CliError::Input(format!("agent: flag --test-map-max-entries: {g:?} is not MAP=N with a map of this build"));
            let (name, n) = g.split_once('=').ok_or_else(bad)?;
            let name = agent_common::map_names::ALL.iter().find(|m| **m == name).ok_or_else(bad)?;
            Ok((*name, n.parse().map_err(|_| bad())?))
        })
        .collect()
}
