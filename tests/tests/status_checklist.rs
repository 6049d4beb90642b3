//! `tollgate status` as a checklist against the real agent and kernel:
//! with the agent running every check passes (exit 0); once the programs
//! are detached (their link pins removed, which detaches bpf links) the
//! direct connection gets out again and `status` fails with a hint that
//! says what to do (exit 1); a restarted agent attaches them again and
//! `status` passes. The agent runs in the node's netns (as the DaemonSet
//! does), so the enforced pod is enforced by both layers (`layers`).
//!
//! Needs root, bpffs, cgroup v2, iproute2 and the agent binary
//! (`cargo xtask build`, or TOLLGATE_BIN).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tollgate_e2e::agent::{default_tollgate_bin, find_workload, Agent};
use tollgate_e2e::helpers::{args, spawn};
use tollgate_e2e::pods;
use tollgate_e2e::story::{v4, Story};
use tollgate_e2e::util::poll;

const T: Duration = Duration::from_secs(3);

fn status_json(agent: &Agent) -> (i32, Value) {
    let (code, out, err) = agent.cli_output(&["status", "-o", "json"]).expect("tollgate status -o json");
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("status JSON ({e}), exit {code}: {out}\n{err}"));
    (code, v)
}

fn check<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name} in {v:#}"))
}

#[test]
fn status_passes_with_the_agent_and_fails_once_the_programs_are_detached() {
    tollgate_e2e::util::require_environment();
    let e2e = Path::new(env!("CARGO_BIN_EXE_tollgate-e2e"));
    let mut story = Story::build(e2e).expect("building the sandbox");
    // The enforced pod has a process (as every running pod has its pause
    // container), and the agent runs in the node's netns as the DaemonSet
    // does: the TC layer goes on the pod's veth and `layers` passes.
    let te = pods::TEST_EGRESS_SLEEP;
    let (ns, cg) = (story.topo.pod_ns(&te).to_string(), story.cgroups.container(&te).to_path_buf());
    let _pause = spawn(&story, "pause", &ns, Some(&cg), &args(&["udp-echo", "--listen", &v4(te.ipv4, 7000).to_string()]));
    story.start_agent_on_node(&default_tollgate_bin()).expect("starting the agent");
    story.wait_tc_layer(&te, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e:#}"));
    let agent = story.agent();
    poll("status to show the pod enforced by both layers", Duration::from_secs(10), || {
        let st = agent.status()?;
        Ok(find_workload(&st, te.namespace, te.name).filter(|w| w["layers"] == "cgroup+tc").map(|_| ()))
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let root = story.cgroups.root.display().to_string();
    let bpffs = story.agent().cfg.bpffs.clone();

    // The agent is up: exit 0, and each check of the datapath names what
    // the kernel holds.
    let agent = story.agent();
    let (code, out, err) = agent.cli_output(&["status"]).expect("tollgate status");
    eprintln!("[e2e] tollgate status (exit {code}):\n{out}{err}");
    assert_eq!(code, 0, "status must pass with the agent running:\n{out}\n{err}");
    for name in ["bpffs", "programs", "maps", "agent", "source-sync", "last-apply", "namespaces", "gateways", "pod-cgroups", "layers"] {
        assert!(out.lines().any(|l| l.starts_with(&format!("PASS  {name} "))), "{name} should pass:\n{out}");
    }
    assert!(out.contains(&format!("tg_egress: cgroup_skb/egress on cgroup {root}")), "{out}");
    assert!(out.contains(&format!("tg_connect4: cgroup/connect4 on cgroup {root}")), "{out}");
    assert!(out.contains("istio-egressgateway: 10.244.0.20"), "gateway addresses:\n{out}");
    assert!(out.contains("enforce: test-egress (1 pod)"), "{out}");
    let (code, v) = status_json(agent);
    assert_eq!(code, 0);
    assert_eq!(v["result"], "pass", "{v:#}");
    let programs = check(&v, "programs");
    assert_eq!(programs["result"], "pass");
    assert_eq!(programs["items"].as_array().map(Vec::len), Some(7), "seven programs at the cgroup root: {programs}");
    let maps = check(&v, "maps");
    let cgroups_line = maps["items"].as_array().into_iter().flatten().filter_map(Value::as_str).find(|l| l.starts_with("TG_CGROUPS: "));
    // Every pod and container cgroup of the story is registered: the
    // count comes from the kernel's map, not from the agent's word.
    let registered: u64 = cgroups_line
        .and_then(|l| l.strip_prefix("TG_CGROUPS: "))
        .and_then(|l| l.split('/').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("TG_CGROUPS fill in {maps}"));
    assert!(registered >= 8, "4 pods, each with a pod and a container cgroup: {maps}");
    assert!(v["workloads"].as_array().is_some_and(|w| !w.is_empty()), "the status file's fields are still there");

    // Enforcement is on: the direct connection is refused.
    let ext = v4(pods::EXTERNAL_V4, 80);
    let r = story.probe_tcp(&pods::TEST_EGRESS_SLEEP, ext, true, T).expect("probe");
    assert_eq!(r.errno, Some(libc::EPERM), "direct egress refused while attached: {r:?}");

    // Detach: remove the link pins at the cgroup root and the TC layer's
    // (links/tc, per pod). The kernel drops the links with them.
    let links = bpffs.join("links");
    for dir in [links.clone(), links.join("tc")] {
        for e in std::fs::read_dir(&dir).expect("links folder").flatten().filter(|e| !e.path().is_dir()) {
            std::fs::remove_file(e.path()).unwrap_or_else(|err| panic!("rm {}: {err}", e.path().display()));
        }
    }
    let r = story.probe_tcp(&pods::TEST_EGRESS_SLEEP, ext, true, T).expect("probe");
    assert!(r.ok, "with the programs detached the direct connection gets out: {r:?}");

    let agent = story.agent();
    let (code, out, err) = agent.cli_output(&["status"]).expect("tollgate status");
    eprintln!("[e2e] tollgate status after detaching (exit {code}):\n{out}{err}");
    assert_eq!(code, 1, "status must fail once the programs are detached:\n{out}\n{err}");
    assert!(out.lines().any(|l| l.starts_with("FAIL  programs ") && l.contains("NOT enforced")), "{out}");
    assert!(out.contains("→ restart the agent on this node"), "the hint says what to do:\n{out}");
    assert!(err.contains("programs"), "stderr names the failed check: {err}");
    assert!(out.lines().any(|l| l.starts_with("PASS  maps ")), "the maps are still pinned:\n{out}");
    let (code, v) = status_json(agent);
    assert_eq!(code, 1);
    assert_eq!(v["result"], "fail");
    assert_eq!(check(&v, "programs")["result"], "fail");
    assert!(check(&v, "programs")["hint"].as_str().is_some_and(|h| h.contains("restart")), "{v:#}");

    // As the hint says: a restarted agent attaches them again.
    story.agent().restart().expect("restarting the agent");
    let agent = story.agent();
    poll("status to pass again after the restart", Duration::from_secs(20), || {
        agent.check_alive()?;
        let (code, v) = status_json(agent);
        Ok((code == 0 && v["pid"].as_u64() == agent.pid().map(u64::from)).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{:#}", status_json(story.agent()).1));
    let r = story.probe_tcp(&pods::TEST_EGRESS_SLEEP, ext, true, T).expect("probe");
    assert_eq!(r.errno, Some(libc::EPERM), "enforced again: {r:?}");
}
