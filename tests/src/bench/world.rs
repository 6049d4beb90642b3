//! The throughput bench's sandbox: one node netns with a bridge, a gateway
//! pod running the load server, and one client pod (its own netns and
//! veth) per setup, so that each setup's filter is installed once and the
//! setups can be interleaved without reconfiguring anything:
//!
//! | setup | netns | cgroup | filter |
//! |---|---|---|---|
//! | no filter | `nf` 10.244.0.60 | outside the agent's cgroup root | none |
//! | Tollgate N | `t1..t3` 10.244.0.61-63 | a pod cgroup the agent enforces | NetworkPolicy with N ipBlocks (+ the gateway, rule 1) |
//! | iptables N | `i1..i3` 10.244.0.64-66 | outside the root | OUTPUT: N non-matching ACCEPT rules, ACCEPT gateway, policy DROP |
//! | nftables N | `n1..n3` 10.244.0.67-69 | outside the root | output hook: `ip daddr @allow accept` (set of N + gateway), policy drop |
//!
//! The load server runs in the gateway's netns, outside the agent's
//! cgroup root, so that the receiving side is the same for every setup.
use crate::agent::{Agent, AgentConfig};
use crate::bench::load::Kind;
use crate::cgroups::CgroupTree;
use crate::pods::{PodSpec, Qos};
use crate::procs::{exec_in_command, run_capture, Proc};
use crate::topology::{sysctl, Topology, TopologyOpts};
use crate::util::{run, unique_prefix, TempDir};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The allow-list sizes of the bench.
pub const SIZES: [usize; 3] = [10, 1_000, 10_000];
/// The namespace of the enforced client pods.
pub const BENCH_NS: &str = "bench";
/// Largest `to` list of one egress rule (the compiler's per-rule limit is
/// 1,024 peers).
const PEERS_PER_RULE: usize = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    None,
    Tollgate,
    Iptables,
    Nftables,
}

impl Filter {
    pub fn label(self) -> &'static str {
        match self {
            Filter::None => "no filter",
            Filter::Tollgate => "Tollgate",
            Filter::Iptables => "iptables",
            Filter::Nftables => "nftables",
        }
    }
}

/// One client pod and how it is filtered.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub filter: Filter,
    /// Allow-list entries besides the gateway (0 for no filter).
    pub n: usize,
    pub pod: PodSpec,
}

impl Setup {
    pub fn name(&self) -> String {
        match self.filter {
            Filter::None => self.filter.label().to_string(),
            f => format!("{} N={}", f.label(), self.n),
        }
    }
}

const fn pod(name: &'static str, tag: &'static str, uid: &'static str, last: u8) -> PodSpec {
    PodSpec {
        namespace: BENCH_NS,
        name,
        tag,
        uid,
        qos: Qos::BestEffort,
        ipv4: Ipv4Addr::new(10, 244, 0, last),
        ipv6: Ipv6Addr::new(0xfd00, 0x10, 0x244, 0, 0, 0, 0, last as u16),
    }
}

pub const GATEWAY: PodSpec = PodSpec {
    namespace: "istio-system",
    name: "gateway",
    tag: "gw",
    uid: "6f1c2a3e-0000-4000-8000-000000000620",
    qos: Qos::Burstable,
    ipv4: Ipv4Addr::new(10, 244, 0, 20),
    ipv6: Ipv6Addr::new(0xfd00, 0x10, 0x244, 0, 0, 0, 0, 0x20),
};

const NO_FILTER: PodSpec = pod("no-filter", "nf", "6f1c2a3e-0000-4000-8000-000000000660", 60);
const TOLLGATE: [PodSpec; 3] = [
    pod("tg-10", "t1", "6f1c2a3e-0000-4000-8000-000000000661", 61),
    pod("tg-1k", "t2", "6f1c2a3e-0000-4000-8000-000000000662", 62),
    pod("tg-10k", "t3", "6f1c2a3e-0000-4000-8000-000000000663", 63),
];
const IPTABLES: [PodSpec; 3] = [
    pod("ipt-10", "i1", "6f1c2a3e-0000-4000-8000-000000000664", 64),
    pod("ipt-1k", "i2", "6f1c2a3e-0000-4000-8000-000000000665", 65),
    pod("ipt-10k", "i3", "6f1c2a3e-0000-4000-8000-000000000666", 66),
];
const NFTABLES: [PodSpec; 3] = [
    pod("nft-10", "n1", "6f1c2a3e-0000-4000-8000-000000000667", 67),
    pod("nft-1k", "n2", "6f1c2a3e-0000-4000-8000-000000000668", 68),
    pod("nft-10k", "n3", "6f1c2a3e-0000-4000-8000-000000000669", 69),
];

/// The setups for the allow-list sizes in `sizes` (each one of [`SIZES`])
/// and the filters in `filters`; the no-filter baseline is always first.
pub fn setups(sizes: &[usize], filters: &[Filter]) -> Result<Vec<Setup>> {
    let mut out = vec![Setup { filter: Filter::None, n: 0, pod: NO_FILTER }];
    for &n in sizes {
        let Some(i) = SIZES.iter().position(|s| *s == n) else {
            bail!("allow-list size {n}: the bench knows {SIZES:?}");
        };
        for &f in filters {
            let pod = match f {
                Filter::None => continue,
                Filter::Tollgate => TOLLGATE[i],
                Filter::Iptables => IPTABLES[i],
                Filter::Nftables => NFTABLES[i],
            };
            out.push(Setup { filter: f, n, pod });
        }
    }
    Ok(out)
}

/// The `i`-th allow-list entry: /32s in 198.18.0.0/15 (the benchmarking
/// range), never the gateway.
pub fn entry(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i as u32 + 1)
}

// Field order is drop order: agent and server first, the netns (and with
// them the firewalls) and cgroups after, the folder last.
pub struct World {
    pub agent: Option<Agent>,
    pub server: Proc,
    pub topo: Topology,
    /// The agent's cgroup root (the Tollgate pods).
    pub enforced: CgroupTree,
    /// Cgroups the agent does not see (everything else).
    pub free: CgroupTree,
    pub dir: TempDir,
    pub setups: Vec<Setup>,
    pub e2e_bin: PathBuf,
}

impl World {
    /// Builds everything, installs the firewalls, starts the server and,
    /// when a Tollgate setup is there, the agent (waiting until its pods
    /// are enforced).
    pub fn build(e2e_bin: &Path, tollgate_bin: &Path, setups: Vec<Setup>) -> Result<World> {
        let prefix = unique_prefix();
        let dir = TempDir::new(&format!("tollgate-bench-{prefix}"))?;
        let tg_pods: Vec<PodSpec> = setups.iter().filter(|s| s.filter == Filter::Tollgate).map(|s| s.pod).collect();
        let free_pods: Vec<PodSpec> =
            setups.iter().filter(|s| s.filter != Filter::Tollgate).map(|s| s.pod).chain([GATEWAY]).collect();
        let enforced = CgroupTree::create(&prefix, &tg_pods)?;
        let free = CgroupTree::create(&format!("{prefix}f"), &free_pods)?;
        let mut opts = TopologyOpts::new(&prefix);
        opts.pods = setups.iter().map(|s| s.pod).chain([GATEWAY]).collect();
        let topo = Topology::build(&opts).context("building the bench topology")?;
        for s in &setups {
            // The crr client is the side that closes first: let it reuse its
            // TIME_WAIT ports (timestamps make that safe) from a wide range.
            let ns = topo.pod_ns(&s.pod);
            sysctl(ns, "net/ipv4/tcp_tw_reuse", "1")?;
            sysctl(ns, "net/ipv4/ip_local_port_range", "1024 65535")?;
        }
        let server_cmd = exec_in_command(
            e2e_bin,
            Some(topo.pod_ns(&GATEWAY)),
            Some(free.container(&GATEWAY)),
            e2e_bin,
            &["load-serve".into(), "--listen".into(), GATEWAY.ipv4.to_string()],
        );
        let server = Proc::spawn("load-serve", server_cmd, dir.path.join("load-serve.log"), Some(Duration::from_secs(10)))?;
        let mut w = World { agent: None, server, topo, enforced, free, dir, setups, e2e_bin: e2e_bin.to_path_buf() };
        for s in w.setups.clone() {
            match s.filter {
                Filter::Iptables => w.install_iptables(&s)?,
                Filter::Nftables => w.install_nftables(&s)?,
                _ => {}
            }
        }
        if !tg_pods.is_empty() {
            w.start_agent(tollgate_bin)?;
        }
        Ok(w)
    }

    fn start_agent(&mut self, tollgate_bin: &Path) -> Result<()> {
        let manifests = self.dir.path.join("manifests");
        std::fs::create_dir_all(&manifests)?;
        std::fs::write(manifests.join("bench.yaml"), self.manifests())?;
        let cfg = AgentConfig {
            bin: tollgate_bin.to_path_buf(),
            bpffs: PathBuf::from(format!("/sys/fs/bpf/tollgate-bench-{}", self.topo.prefix)),
            state_dir: self.dir.path.join("state"),
            manifests,
            cgroup_root: self.enforced.root.clone(),
            log_dir: self.dir.path.clone(),
            metrics_addr: "127.0.0.1:0".into(),
            resolv_conf: None,
            netns: None,
            exec_in_bin: self.e2e_bin.clone(),
            kubeconfig: None,
            cluster_cidr_flags: true,
            extra_args: Vec::new(),
        };
        let mut agent = Agent::start(cfg)?;
        for s in self.setups.iter().filter(|s| s.filter == Filter::Tollgate) {
            agent.wait_applied(BENCH_NS, s.pod.name, "enforce", None, Duration::from_secs(60))?;
        }
        self.agent = Some(agent);
        Ok(())
    }

    /// Namespaces, the gateway pod, the Tollgate pods and one
    /// NetworkPolicy per pod with its N ipBlocks.
    fn manifests(&self) -> String {
        let mut y = String::new();
        y.push_str("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: istio-system\n---\n");
        let _ = write!(y, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {BENCH_NS}\n  labels:\n    tollgate.dev/egress: enforce\n");
        let pod_yaml = |p: &PodSpec, labels: &str, qos: &str| {
            format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {}\n  namespace: {}\n  uid: {}\n  labels:\n{labels}spec:\n  nodeName: node-1\n  containers:\n  - name: main\n    image: bench\nstatus:\n  phase: Running\n  qosClass: {qos}\n  podIP: {}\n  podIPs:\n  - ip: {}\n",
                p.name, p.namespace, p.uid, p.ipv4, p.ipv4
            )
        };
        y.push_str(&pod_yaml(&GATEWAY, "    tollgate.dev/egress-gateway: \"true\"\n", "Burstable"));
        for s in self.setups.iter().filter(|s| s.filter == Filter::Tollgate) {
            y.push_str(&pod_yaml(&s.pod, &format!("    bench: {}\n", s.pod.name), "BestEffort"));
            let _ = write!(
                y,
                "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: allow-{}\n  namespace: {BENCH_NS}\nspec:\n  podSelector:\n    matchLabels:\n      bench: {}\n  policyTypes: [Egress]\n  egress:\n",
                s.pod.name, s.pod.name
            );
            for chunk in (0..s.n).collect::<Vec<_>>().chunks(PEERS_PER_RULE) {
                y.push_str("  - to:\n");
                for i in chunk {
                    let _ = writeln!(y, "    - ipBlock: {{cidr: {}/32}}", entry(*i));
                }
            }
        }
        y
    }

    /// `iptables-restore` in the pod's netns: OUTPUT policy DROP, N
    /// non-matching `-d X/32 -j ACCEPT` rules, then ACCEPT the gateway.
    /// No conntrack shortcut: every packet walks the chain.
    fn install_iptables(&self, s: &Setup) -> Result<()> {
        let mut rules = String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT DROP [0:0]\n");
        for i in 0..s.n {
            let _ = writeln!(rules, "-A OUTPUT -d {}/32 -j ACCEPT", entry(i));
        }
        let _ = writeln!(rules, "-A OUTPUT -d {}/32 -j ACCEPT\nCOMMIT", GATEWAY.ipv4);
        let file = self.dir.path.join(format!("iptables-{}.rules", s.pod.tag));
        std::fs::write(&file, rules)?;
        let ns = self.topo.pod_ns(&s.pod);
        run("ip", &["netns", "exec", ns, "iptables-restore", path_str(&file)?])
            .with_context(|| format!("loading {} iptables rules in {ns} (Debian package iptables)", s.n + 1))?;
        Ok(())
    }

    /// `nft -f` in the pod's netns: a hash set of the N entries plus the
    /// gateway, one `ip daddr @allow accept` rule, policy drop.
    fn install_nftables(&self, s: &Setup) -> Result<()> {
        let mut elems: Vec<String> = (0..s.n).map(|i| entry(i).to_string()).collect();
        elems.push(GATEWAY.ipv4.to_string());
        let conf = format!(
            "table inet tgbench {{\n  set allow {{\n    type ipv4_addr\n    elements = {{ {} }}\n  }}\n  chain output {{\n    type filter hook output priority filter; policy drop;\n    ip daddr @allow accept\n  }}\n}}\n",
            elems.join(", ")
        );
        let file = self.dir.path.join(format!("nftables-{}.nft", s.pod.tag));
        std::fs::write(&file, conf)?;
        let ns = self.topo.pod_ns(&s.pod);
        run("ip", &["netns", "exec", ns, "nft", "-f", path_str(&file)?])
            .with_context(|| format!("loading an nftables set of {} elements in {ns} (Debian package nftables)", s.n + 1))?;
        Ok(())
    }

    /// The cgroup a setup's client runs in.
    pub fn cgroup(&self, s: &Setup) -> &Path {
        match s.filter {
            Filter::Tollgate => self.enforced.container(&s.pod),
            _ => self.free.container(&s.pod),
        }
    }

    /// Runs one slice of `kind` from the setup's pod (its netns and cgroup).
    pub fn slice(&self, s: &Setup, kind: Kind, dur: Duration) -> Result<crate::bench::load::Slice> {
        let args = vec![
            "load-client".to_string(),
            "--kind".into(),
            kind.as_str().into(),
            "--to".into(),
            GATEWAY.ipv4.to_string(),
            "--ms".into(),
            dur.as_millis().to_string(),
        ];
        let cmd = exec_in_command(&self.e2e_bin, Some(self.topo.pod_ns(&s.pod)), Some(self.cgroup(s)), &self.e2e_bin, &args);
        let out = run_capture(cmd, dur + Duration::from_secs(30)).with_context(|| format!("{} slice from {}", kind.as_str(), s.name()))?;
        let line = out.lines().last().unwrap_or_default();
        serde_json::from_str(line).with_context(|| format!("parsing load-client output {out:?}"))
    }

    /// The agent's bpffs folder (Tollgate setups only).
    pub fn bpffs(&self) -> Option<&Path> {
        self.agent.as_ref().map(|a| a.cfg.bpffs.as_path())
    }
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().with_context(|| format!("{} is not UTF-8", p.display()))
}

/// The IP the client pods send to.
pub fn gateway_ip() -> IpAddr {
    IpAddr::V4(GATEWAY.ipv4)
}
