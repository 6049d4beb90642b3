//! The whole istio-egress-gateway world for one run: topology, cgroups,
//! servers, manifests and (optionally) the agent. Dropping it tears down in
//! order: agent (kill, unpin), servers, netns, cgroups, temp dir.

use crate::agent::{Agent, AgentConfig};
use crate::cgroups::CgroupTree;
use crate::pods::{self, PodSpec};
use crate::probe::ProbeResult;
use crate::procs::{exec_in_command, run_capture, Proc};
use crate::topology::{Topology, TopologyOpts};
use crate::util::{unique_prefix, TempDir};
use anyhow::{Context, Result};
use std::net::SocketAddr;
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
        let prefix = unique_prefix();
        let dir = TempDir::new(&format!("tollgate-e2e-{prefix}"))?;
        let cgroups = CgroupTree::create(&prefix, &pods::ALL_PODS)?;
        let topo = Topology::build(&TopologyOpts::new(&prefix)).context("building topology")?;
        let manifests = dir.path.join("manifests");
        let manifests_source = crate::manifests::populate(&manifests)?;
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
        };
        s.start_servers()?;
        Ok(s)
    }

    fn start_servers(&mut self) -> Result<()> {
        let ext = self.topo.external_ns.clone();
        self.spawn_server(
            "http-serve",
            &ext,
            None,
            &[
                "http-serve".into(),
                "--listen".into(),
                v4(pods::EXTERNAL_V4, 80).to_string(),
                "--listen".into(),
                v6(pods::EXTERNAL_V6, 80).to_string(),
            ],
        )?;
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
        self.spawn_server(
            "dns-serve",
            &dns_ns,
            Some(&dns_cg),
            &[
                "dns-serve".into(),
                "--listen".into(),
                v4(dns.ipv4, 53).to_string(),
                "--listen".into(),
                v6(dns.ipv6, 53).to_string(),
                "--record".into(),
                format!("{}={}", pods::EXTERNAL_HOST, pods::EXTERNAL_V4),
                "--record".into(),
                format!("{}={}", pods::EXTERNAL_HOST, pods::EXTERNAL_V6),
            ],
        )?;
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
        AgentConfig {
            bin: tollgate_bin.to_path_buf(),
            bpffs: PathBuf::from(format!("/sys/fs/bpf/tollgate-e2e-{}", self.prefix)),
            state_dir: self.dir.path.join("state"),
            manifests: self.manifests.clone(),
            cgroup_root: self.cgroups.root.clone(),
            log_dir: self.dir.path.clone(),
            metrics_addr: free_loopback_addr(),
        }
    }

    /// Starts the agent and waits until test-egress/sleep is enforced.
    pub fn start_agent(&mut self, tollgate_bin: &Path) -> Result<&mut Agent> {
        let a = Agent::start(self.agent_config(tollgate_bin))?;
        self.agent = Some(a);
        let a = self.agent.as_mut().expect("just set");
        let p = pods::TEST_EGRESS_SLEEP;
        a.wait_applied(p.namespace, p.name, "enforce", None, Duration::from_secs(15))?;
        Ok(a)
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
        let mut a = vec![
            "dns".into(),
            "--server".into(),
            server.to_string(),
            "--name".into(),
            pods::EXTERNAL_HOST.into(),
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
