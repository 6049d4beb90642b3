//! Small pieces the stories share: `tollgate-e2e` subcommands run or
//! spawned inside a netns (and cgroup), the external host's sniffer, and
//! AF_PACKET frames sent from a pod.
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::pods::PodSpec;
use crate::procs::{exec_in_command, run_capture, Proc};
use crate::story::Story;
use crate::util::{ip_in, poll};

pub fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Starts a `tollgate-e2e` subcommand in `netns` (and `cgroup`); it logs
/// to `<story dir>/<name>.log`.
pub fn spawn(story: &Story, name: &str, netns: &str, cgroup: Option<&Path>, args: &[String]) -> Proc {
    let cmd = exec_in_command(&story.e2e_bin, Some(netns), cgroup, &story.e2e_bin, args);
    Proc::spawn(name, cmd, story.dir.path.join(format!("{name}.log")), Some(Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("starting {name}: {e:#}"))
}

/// Runs a `tollgate-e2e` subcommand in `netns` (and `cgroup`) to the end;
/// its last stdout line as JSON.
pub fn run_json(story: &Story, netns: &str, cgroup: Option<&Path>, args: &[String], timeout: Duration) -> Value {
    let cmd = exec_in_command(&story.e2e_bin, Some(netns), cgroup, &story.e2e_bin, args);
    let out = run_capture(cmd, timeout).unwrap_or_else(|e| panic!("{args:?}: {e:#}"));
    let line = out.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{args:?} printed {out:?}: {e}"))
}

/// [`run_json`] in the pod's netns and container cgroup.
pub fn in_pod(story: &Story, pod: &PodSpec, args: &[String]) -> Value {
    run_json(story, story.topo.pod_ns(pod), Some(story.cgroups.container(pod)), args, Duration::from_secs(20))
}

/// A sniffer in `netns` counting packets from `from` for `ms`.
pub fn sniffer_in(story: &Story, name: &str, netns: &str, from: &[IpAddr], ms: u64) -> Proc {
    let mut a = args(&["sniff", "--ms", &ms.to_string()]);
    for f in from {
        a.extend(["--from".to_string(), f.to_string()]);
    }
    spawn(story, name, netns, None, &a)
}

/// A sniffer on the external host.
pub fn sniffer(story: &Story, name: &str, from: &[IpAddr], ms: u64) -> Proc {
    let ext = story.topo.external_ns.clone();
    sniffer_in(story, name, &ext, from, ms)
}

/// The sniffer's JSON (on stderr, in its log) once it has finished.
pub fn sniffed(mut sniffer: Proc) -> Value {
    let text = poll("the sniffer to finish", Duration::from_secs(15), || Ok(sniffer.try_exited().map(|_| sniffer.log_text())))
        .expect("sniffer");
    let line = text.lines().rev().find(|l| l.starts_with("{\"packets\"")).unwrap_or_else(|| panic!("sniffer said {text}"));
    serde_json::from_str(line).unwrap()
}

/// The MAC address of the node's bridge (the pods' next hop).
pub fn bridge_mac(story: &Story) -> String {
    let out = ip_in(&story.topo.node_ns, &["-br", "link", "show", "br0"]).expect("ip link show br0");
    out.split_whitespace().nth(2).unwrap_or_else(|| panic!("no MAC in {out:?}")).to_string()
}

/// One AF_PACKET send: (socket kind flags, source, destination).
pub struct Frame {
    pub flags: &'static [&'static str],
    pub src: IpAddr,
    pub dst: IpAddr,
}

/// Sends `count` copies of `f` from inside `pod` (UDP to port `dport`).
pub fn send_frames(story: &Story, pod: &PodSpec, mac: &str, f: &Frame, dport: u16, count: u64) {
    let mut a = args(&["raw-send", "--dst-mac", mac, "--src", &f.src.to_string(), "--dst", &f.dst.to_string()]);
    a.extend(["--dport".into(), dport.to_string(), "--count".into(), count.to_string()]);
    a.extend(f.flags.iter().map(|s| s.to_string()));
    let r = in_pod(story, pod, &a);
    assert_eq!(r["sent"], count, "{pod:?} {:?} {} -> {}: {r}", f.flags, f.src, f.dst);
}
