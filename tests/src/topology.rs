//! Network namespaces: a "node" with a bridge, one netns per pod, and an
//! "external" host reachable only through the node. Nothing touches the
//! machine's real interfaces.

use crate::pods::{self, PodSpec};
use crate::util::{ip, ip_in, poll, run};
use anyhow::{Context, Result};
use std::net::IpAddr;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct TopologyOpts {
    /// Unique prefix for this run (e.g. from `unique_prefix()`).
    pub prefix: String,
    pub pods: Vec<PodSpec>,
    /// Addresses of the external host besides 203.0.113.10 and 2001:db8:113::10
    /// (inside 203.0.113.0/24 and 2001:db8:113::/64).
    pub extra_external: Vec<IpAddr>,
}

impl TopologyOpts {
    pub fn new(prefix: &str) -> TopologyOpts {
        TopologyOpts { prefix: prefix.to_string(), pods: pods::ALL_PODS.to_vec(), extra_external: Vec::new() }
    }
}

/// Owns the network namespaces it created; deletes them on drop.
pub struct Topology {
    pub prefix: String,
    pub node_ns: String,
    pub external_ns: String,
    pods: Vec<(PodSpec, String)>,
    created: Vec<String>,
    pub keep: bool,
}

impl Topology {
    pub fn build(opts: &TopologyOpts) -> Result<Topology> {
        let p = &opts.prefix;
        let mut t = Topology {
            prefix: p.clone(),
            node_ns: format!("{p}-node"),
            external_ns: format!("{p}-ext"),
            pods: Vec::new(),
            created: Vec::new(),
            keep: false,
        };
        // On error, `t` is dropped and removes whatever was created so far.
        let node = t.node_ns.clone();
        t.add_ns(&node)?;
        sysctl(&node, "net/ipv4/ip_forward", "1")?;
        sysctl(&node, "net/ipv6/conf/all/forwarding", "1")?;
        ip_in(&node, &["link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0"])?;
        ip_in(&node, &["addr", "add", "10.244.0.1/24", "dev", "br0"])?;
        ip_in(&node, &["addr", "add", "fd00:10:244::1/64", "dev", "br0", "nodad"])?;
        ip_in(&node, &["link", "set", "br0", "up"])?;

        for pod in &opts.pods {
            let ns = format!("{p}-{}", pod.tag);
            t.add_ns(&ns)?;
            let host_if = format!("v{}", pod.tag);
            ip_in(&node, &["link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            ip_in(&node, &["link", "set", &host_if, "master", "br0"])?;
            ip_in(&node, &["link", "set", &host_if, "up"])?;
            ip_in(&ns, &["addr", "add", &format!("{}/24", pod.ipv4), "dev", "eth0"])?;
            ip_in(&ns, &["addr", "add", &format!("{}/64", pod.ipv6), "dev", "eth0", "nodad"])?;
            ip_in(&ns, &["link", "set", "eth0", "up"])?;
            ip_in(&ns, &["route", "add", "default", "via", "10.244.0.1"])?;
            ip_in(&ns, &["-6", "route", "add", "default", "via", "fd00:10:244::1"])?;
            t.pods.push((*pod, ns));
        }

        let ext = t.external_ns.clone();
        t.add_ns(&ext)?;
        ip_in(&node, &["link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns", &ext])?;
        ip_in(&node, &["addr", "add", "203.0.113.1/24", "dev", "ext0"])?;
        ip_in(&node, &["addr", "add", "2001:db8:113::1/64", "dev", "ext0", "nodad"])?;
        ip_in(&node, &["link", "set", "ext0", "up"])?;
        ip_in(&ext, &["addr", "add", "203.0.113.10/24", "dev", "eth0"])?;
        ip_in(&ext, &["addr", "add", "2001:db8:113::10/64", "dev", "eth0", "nodad"])?;
        for a in &opts.extra_external {
            match a {
                IpAddr::V4(a) => ip_in(&ext, &["addr", "add", &format!("{a}/24"), "dev", "eth0"])?,
                IpAddr::V6(a) => ip_in(&ext, &["addr", "add", &format!("{a}/64"), "dev", "eth0", "nodad"])?,
            };
        }
        ip_in(&ext, &["link", "set", "eth0", "up"])?;
        ip_in(&ext, &["route", "add", "default", "via", "203.0.113.1"])?;
        ip_in(&ext, &["-6", "route", "add", "default", "via", "2001:db8:113::1"])?;

        t.wait_ready()?;
        Ok(t)
    }

    fn add_ns(&mut self, ns: &str) -> Result<()> {
        ip(&["netns", "add", ns])?;
        self.created.push(ns.to_string());
        ip_in(ns, &["link", "set", "lo", "up"])?;
        // No DAD anywhere in this sandbox: addresses are usable at once.
        sysctl(ns, "net/ipv6/conf/all/accept_dad", "0")?;
        sysctl(ns, "net/ipv6/conf/default/accept_dad", "0")?;
        Ok(())
    }

    /// Waits until every interface is up and no IPv6 address is tentative.
    fn wait_ready(&self) -> Result<()> {
        for ns in &self.created {
            poll(&format!("addresses usable in netns {ns}"), Duration::from_secs(10), || {
                let out = ip_in(ns, &["-o", "addr", "show"])?;
                let tentative = out.lines().any(|l| l.contains("tentative"));
                let links = ip_in(ns, &["-o", "link", "show"])?;
                let down = links
                    .lines()
                    .filter(|l| !l.contains(": lo:"))
                    .any(|l| !l.contains("LOWER_UP"));
                Ok((!tentative && !down).then_some(()))
            })?;
        }
        Ok(())
    }

    /// The netns of a pod, by "namespace/name".
    pub fn pod_ns(&self, pod: &PodSpec) -> &str {
        self.pods
            .iter()
            .find(|(p, _)| p.key() == pod.key())
            .map(|(_, ns)| ns.as_str())
            .unwrap_or_else(|| panic!("pod {} is not in this topology", pod.key()))
    }

    /// Every netns this topology created.
    pub fn namespaces(&self) -> &[String] {
        &self.created
    }

    /// Deletes the namespaces (idempotent).
    pub fn destroy(&mut self) {
        for ns in self.created.drain(..).rev() {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("[e2e] cleanup: {e:#}");
            }
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if !self.keep {
            self.destroy();
        }
    }
}

/// Writes /proc/sys/<key> inside a netns.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    run("ip", &["netns", "exec", ns, "sh", "-c", &format!("echo {value} > /proc/sys/{key}")])
        .with_context(|| format!("sysctl {key}={value} in {ns}"))?;
    Ok(())
}
