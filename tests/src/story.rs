//! The whole world of one run: topology, cgroups, servers, manifests and
//! (optionally) the agent. The istio-egress-gateway story is the base; other
//! stories add pods, example folders, servers, DNS records and external
//! addresses through [`StoryOpts`]. Dropping it tears down in order: agent
//! (kill, unpin), servers, netns, cgroups, temp dir.

use crate::agent::{Agent, AgentConfig};
use crate::cgroups::CgroupTree;
use crate::pods::{self, PodSpec};
use crate::probe::ProbeResult;
use crate::procs::{exec_in_command, run_capture, Proc};
use crate::topology::{Topology, TopologyOpts};
use crate::util::{unique_prefix, TempDir};
use anyhow::{Context, Result};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

// Field order is drop order.
pub struct Story {
    pub agent: Option<Agent>,
    pub servers: Vec<Proc>,
    pub topo: Topology,
    pub cgroups: CgroupTree,
    pub dir: TempDir,
    pub prefix: String,
    pub e2e_bin: PathBuf,
    pub manifests: PathBuf,
    pub manifests_source: String,
    pub opts: StoryOpts,
}

/// What a story adds to the istio-egress-gateway base.
#[derive(Clone, Debug)]
pub struct StoryOpts {
    /// Pods besides [`pods::ALL_PODS`] (netns, veth on the bridge, cgroup);
    /// their manifests must come from `examples` (checked).
    pub extra_pods: Vec<PodSpec>,
    /// Example folders (`examples/<name>`) copied to `manifests/<name>/`.
    pub examples: Vec<String>,
    /// More addresses of the external host; http-serve listens on them too.
    pub extra_external: Vec<IpAddr>,
    /// Ports of the external http-serve (on every external address).
    pub external_ports: Vec<u16>,
    /// http-serve inside these pods (netns and cgroup), on both of the
    /// pod's addresses, on each port.
    pub pod_servers: Vec<(PodSpec, Vec<u16>)>,
    /// More `NAME=IP` records of cluster DNS (kube-system/coredns).
    pub dns_records: Vec<(String, IpAddr)>,
    /// TTL of cluster DNS answers.
    pub dns_ttl: u32,
    /// Run the agent in the node netns with `--resolv-conf` naming cluster
    /// DNS (10.244.0.30), so that it resolves host names of mesh objects.
    pub agent_uses_cluster_dns: bool,
    /// Pods `start_agent` waits to see enforced.
    pub enforced: Vec<PodSpec>,
    /// Pod UIDs that differ from the `PodSpec`s' (`namespace/name` → UID):
    /// an API server assigns its own, and the cgroups must carry them.
    pub uids: std::collections::BTreeMap<String, String>,
}

impl Default for StoryOpts {
    fn default() -> Self {
        StoryOpts {
            extra_pods: Vec::new(),
            examples: Vec::new(),
            extra_external: Vec::new(),
            external_ports: vec![80],
            pod_servers: Vec::new(),
            dns_records: Vec::new(),
            dns_ttl: crate::dns::DEFAULT_TTL,
            agent_uses_cluster_dns: false,
            enforced: vec![pods::TEST_EGRESS_SLEEP],
            uids: std::collections::BTreeMap::new(),
        }
    }
}

pub fn v4(ip: std::net::Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

pub fn v6(ip: std::net::Ipv6Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

impl Story {
    /// Builds netns, cgroups and manifests, and starts the external HTTP
    /// server, the gateway forwarder and the DNS server.
    pub fn build(e2e_bin: &Path) -> Result<Story> {
        Story::build_with(e2e_bin, StoryOpts::default())
    }

    /// [`Story::build`] plus what `opts` adds.
    pub fn build_with(e2e_bin: &Path, opts: StoryOpts) -> Result<Story> {
        let prefix = unique_prefix();
        let dir = TempDir::new(&format!("tollgate-e2e-{prefix}"))?;
        let all_pods: Vec<PodSpec> = pods::ALL_PODS.iter().chain(&opts.extra_pods).copied().collect();
        let manifests = dir.path.join("manifests");
        let mut manifests_source = crate::manifests::populate(&manifests)?;
        for ex in &opts.examples {
            crate::manifests::add_example(&manifests, ex)?;
            manifests_source.push_str(&format!(" + examples/{ex}"));
        }
        crate::manifests::check_pods(&manifests, &all_pods)?;
        let with_uids: Vec<PodSpec> = all_pods
            .iter()
            .map(|p| match opts.uids.get(&p.key()) {
                // Leaked: PodSpec holds &'static str, and a test run is short.
                Some(uid) => PodSpec { uid: Box::leak(uid.clone().into_boxed_str()), ..*p },
                None => *p,
            })
            .collect();
        let cgroups = CgroupTree::create(&prefix, &with_uids)?;
        let mut topo_opts = TopologyOpts::new(&prefix);
        topo_opts.pods = all_pods;
        topo_opts.extra_external = opts.extra_external.clone();
        let topo = Topology::build(&topo_opts).context("building topology")?;
        let mut s = Story {
            agent: None,
            servers: Vec::new(),
            topo,
            cgroups,
            dir,
            prefix,
            e2e_bin: e2e_bin.to_path_buf(),
            manifests,
            manifests_source,
            opts,
        };
        s.start_servers()?;
        Ok(s)
    }

    fn start_servers(&mut self) -> Result<()> {
        let ext = self.topo.external_ns.clone();
        let ext_addrs: Vec<IpAddr> =
            [IpAddr::V4(pods::EXTERNAL_V4), IpAddr::V6(pods::EXTERNAL_V6)].into_iter().chain(self.opts.extra_external.clone()).collect();
        let mut args = vec!["http-serve".to_string()];
        for port in &self.opts.external_ports {
            for a in &ext_addrs {
                args.extend(["--listen".into(), SocketAddr::new(*a, *port).to_string()]);
            }
        }
        self.spawn_server("http-serve", &ext, None, &args)?;
        for (pod, ports) in self.opts.pod_servers.clone() {
            let mut args = vec!["http-serve".to_string()];
            for port in ports {
                args.extend(["--listen".into(), v4(pod.ipv4, port).to_string(), "--listen".into(), v6(pod.ipv6, port).to_string()]);
            }
            let (ns, cg) = (self.topo.pod_ns(&pod).to_string(), self.cgroups.container(&pod).to_path_buf());
            self.spawn_server(&format!("http-serve-{}-{}", pod.namespace, pod.name), &ns, Some(&cg), &args)?;
        }
        let gw = pods::EGRESS_GATEWAY;
        let (gw_ns, gw_cg) = (self.topo.pod_ns(&gw).to_string(), self.cgroups.container(&gw).to_path_buf());
        self.spawn_server(
            "tcp-forward",
            &gw_ns,
            Some(&gw_cg),
            &[
                "tcp-forward".into(),
                "--listen".into(),
                v4(gw.ipv4, pods::GATEWAY_PORT).to_string(),
                "--to".into(),
                v4(pods::EXTERNAL_V4, 80).to_string(),
                "--listen".into(),
                v6(gw.ipv6, pods::GATEWAY_PORT).to_string(),
                "--to".into(),
                v6(pods::EXTERNAL_V6, 80).to_string(),
            ],
        )?;
        let dns = pods::COREDNS;
        let (dns_ns, dns_cg) = (self.topo.pod_ns(&dns).to_string(), self.cgroups.container(&dns).to_path_buf());
        let mut args: Vec<String> = vec![
            "dns-serve".into(),
            "--listen".into(),
            v4(dns.ipv4, 53).to_string(),
            "--listen".into(),
            v6(dns.ipv6, 53).to_string(),
            "--ttl".into(),
            self.opts.dns_ttl.to_string(),
            "--record".into(),
            format!("{}={}", pods::EXTERNAL_HOST, pods::EXTERNAL_V4),
            "--record".into(),
            format!("{}={}", pods::EXTERNAL_HOST, pods::EXTERNAL_V6),
        ];
        for (name, ip) in &self.opts.dns_records {
            args.extend(["--record".into(), format!("{name}={ip}")]);
        }
        self.spawn_server("dns-serve", &dns_ns, Some(&dns_cg), &args)?;
        Ok(())
    }

    fn spawn_server(&mut self, name: &str, netns: &str, cgroup: Option<&Path>, args: &[String]) -> Result<()> {
        let cmd = exec_in_command(&self.e2e_bin, Some(netns), cgroup, &self.e2e_bin, args);
        let log = self.dir.path.join(format!("{name}.log"));
        let p = Proc::spawn(name, cmd, log, Some(Duration::from_secs(10)))?;
        self.servers.push(p);
        Ok(())
    }

    pub fn agent_config(&self, tollgate_bin: &Path) -> AgentConfig {
        let (netns, resolv_conf) = if self.opts.agent_uses_cluster_dns {
            (Some(self.topo.node_ns.clone()), Some(self.dir.path.join("resolv.conf")))
        } else {
            (None, None)
        };
        AgentConfig {
            bin: tollgate_bin.to_path_buf(),
            bpffs: PathBuf::from(format!("/sys/fs/bpf/tollgate-e2e-{}", self.prefix)),
            state_dir: self.dir.path.join("state"),
            manifests: self.manifests.clone(),
            cgroup_root: self.cgroups.root.clone(),
            log_dir: self.dir.path.clone(),
            metrics_addr: free_loopback_addr(),
            resolv_conf,
            netns,
            exec_in_bin: self.e2e_bin.clone(),
            kubeconfig: None,
            cluster_cidr_flags: true,
            extra_args: Vec::new(),
        }
    }

    /// Starts the agent and waits until the `enforced` pods (by default
    /// test-egress/sleep) are enforced.
    pub fn start_agent(&mut self, tollgate_bin: &Path) -> Result<&mut Agent> {
        let cfg = self.agent_config(tollgate_bin);
        self.start_agent_with(cfg)
    }

    /// [`Story::start_agent`] with a configuration of the caller's.
    pub fn start_agent_with(&mut self, cfg: AgentConfig) -> Result<&mut Agent> {
        if let Some(r) = &cfg.resolv_conf {
            // Cluster DNS only; short timeouts so a lost answer is retried soon.
            std::fs::write(r, format!("# tollgate e2e run {}\nnameserver {}\noptions timeout:1 attempts:3\n", self.prefix, pods::COREDNS.ipv4))?;
        }
        let a = Agent::start(cfg)?;
        self.agent = Some(a);
        let a = self.agent.as_mut().expect("just set");
        for p in self.opts.enforced.clone() {
            a.wait_applied(p.namespace, p.name, "enforce", None, Duration::from_secs(15))?;
        }
        Ok(a)
    }

    /// [`Story::start_agent`] in the node's network namespace, as the
    /// DaemonSet runs (hostNetwork): the agent sees the pods' veths and
    /// puts the TC layer on them.
    pub fn start_agent_on_node(&mut self, tollgate_bin: &Path) -> Result<&mut Agent> {
        let mut cfg = self.agent_config(tollgate_bin);
        cfg.netns = Some(self.topo.node_ns.clone());
        self.start_agent_with(cfg)
    }

    /// Waits until the TC layer's two links of `pod` (to and from the pod)
    /// are pinned; their pin names.
    pub fn wait_tc_layer(&mut self, pod: &PodSpec, timeout: Duration) -> Result<Vec<String>> {
        let pins = self.agent().cfg.bpffs.join("links").join("tc");
        crate::util::poll("the TC layer on the pod's veth", timeout, || {
            let names: Vec<String> = std::fs::read_dir(&pins)
                .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            let mine: Vec<String> = names.into_iter().filter(|n| n.starts_with(pod.uid)).collect();
            Ok((mine.len() == 2).then_some(mine))
        })
    }

    pub fn agent(&mut self) -> &mut Agent {
        self.agent.as_mut().expect("agent not started")
    }

    /// Runs `tollgate-e2e probe ARGS` inside `pod` (netns + container cgroup).
    pub fn probe(&self, pod: &PodSpec, args: &[String], timeout: Duration) -> Result<ProbeResult> {
        let cmd = exec_in_command(
            &self.e2e_bin,
            Some(self.topo.pod_ns(pod)),
            Some(self.cgroups.container(pod)),
            &self.e2e_bin,
            &[vec!["probe".to_string()], args.to_vec()].concat(),
        );
        let out = run_capture(cmd, timeout + Duration::from_secs(10))?;
        let line = out.lines().last().unwrap_or("");
        serde_json::from_str(line).with_context(|| format!("parsing probe output {out:?}"))
    }

    pub fn probe_tcp(&self, pod: &PodSpec, to: SocketAddr, http_get: bool, timeout: Duration) -> Result<ProbeResult> {
        let mut a = vec!["tcp".into(), "--to".into(), to.to_string(), "--timeout-ms".into(), timeout.as_millis().to_string()];
        if http_get {
            a.push("--http-get".into());
        }
        self.probe(pod, &a, timeout)
    }

    pub fn probe_dns(&self, pod: &PodSpec, server: SocketAddr, qtype: &str, tcp: bool) -> Result<ProbeResult> {
        self.probe_dns_name(pod, server, pods::EXTERNAL_HOST, qtype, tcp)
    }

    pub fn probe_dns_name(&self, pod: &PodSpec, server: SocketAddr, name: &str, qtype: &str, tcp: bool) -> Result<ProbeResult> {
        let mut a = vec![
            "dns".into(),
            "--server".into(),
            server.to_string(),
            "--name".into(),
            name.into(),
            "--type".into(),
            qtype.into(),
            "--timeout-ms".into(),
            "2000".into(),
        ];
        if tcp {
            a.push("--tcp".into());
        }
        self.probe(pod, &a, Duration::from_secs(2))
    }

    pub fn probe_udp(&self, pod: &PodSpec, to: SocketAddr) -> Result<ProbeResult> {
        self.probe(pod, &["udp".into(), "--to".into(), to.to_string(), "--payload".into(), "hello".into()], Duration::from_secs(2))
    }

    /// Leave everything running (for `demo --keep`).
    pub fn keep(&mut self) {
        if let Some(a) = self.agent.as_mut() {
            a.keep = true;
        }
        for s in &mut self.servers {
            s.keep = true;
        }
        self.topo.keep = true;
        self.cgroups.keep = true;
        self.dir.keep = true;
    }

    /// Shell commands that tear down a kept run.
    pub fn teardown_hint(&self) -> String {
        let mut pids: Vec<String> = self.servers.iter().map(|s| s.pid().to_string()).collect();
        if let Some(p) = self.agent.as_ref().and_then(|a| a.pid()) {
            pids.insert(0, p.to_string());
        }
        let mut s = String::new();
        s.push_str(&format!("kill -9 {}\n", pids.join(" ")));
        if let Some(a) = &self.agent {
            s.push_str(&format!("rm -rf {}\n", a.cfg.bpffs.display()));
        }
        for ns in self.topo.namespaces() {
            s.push_str(&format!("ip netns del {ns}\n"));
        }
        s.push_str(&format!(
            "find {} -depth -type d -exec rmdir {{}} \\;\nrm -rf {}\n",
            self.cgroups.root.display(),
            self.dir.path.display()
        ));
        s
    }
}

impl Drop for Story {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for s in &self.servers {
                eprintln!("[e2e] {} log:\n{}", s.name, s.log_text());
            }
        }
    }
}

/// A loopback address with a port that was free a moment ago.
fn free_loopback_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "127.0.0.1:19964".to_string())
}
