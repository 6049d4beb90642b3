//! The Kubernetes source and the files source give identical map state for
//! the same objects.
//!
//! One agent runs on a real API server holding the Istio story; every
//! object it reads is then exported with `kubectl get -o yaml` into a
//! folder, and a second agent (own pins, same cgroup tree and node) runs on
//! that folder with `--source files`. Neither is told the cluster ranges:
//! both learn them from the Node and the ServiceCIDR. The two maps are
//! compared through `tollgate maps`, which names cgroups, pods and rules
//! instead of the ids each agent chose.
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tollgate_e2e::agent::{default_tollgate_bin, Agent};
use tollgate_e2e::kube_story::KubeStory;
use tollgate_e2e::story::StoryOpts;
use tollgate_e2e::util::poll;

/// Every kind the agent watches.
const KINDS: &str = "namespaces,nodes,pods,services,endpointslices.discovery.k8s.io,networkpolicies.networking.k8s.io,servicecidrs.networking.k8s.io,gateways.networking.istio.io,serviceentries.networking.istio.io,sidecars.networking.istio.io,egresses.policy.openservicemesh.io,meshconfigs.config.openservicemesh.io";

fn maps(agent: &Agent) -> Value {
    let out = agent.cli(&["maps"]).expect("tollgate maps");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("tollgate maps output: {e}\n{out}"))
}

#[test]
fn kubernetes_and_files_sources_give_the_same_maps() {
    tollgate_e2e::util::require_environment();
    let e2e = Path::new(env!("CARGO_BIN_EXE_tollgate-e2e"));
    let mut ks = KubeStory::build(e2e, StoryOpts::default()).expect("sandbox and API server");
    ks.start_agent(&default_tollgate_bin()).expect("agent on --source kubernetes");

    let export = ks.story.dir.path.join("exported");
    std::fs::create_dir_all(&export).expect("mkdir");
    let yaml = ks.api.kubectl(&["get", KINDS, "-A", "-o", "yaml"]).expect("kubectl get -o yaml");
    std::fs::write(export.join("cluster.yaml"), yaml).expect("write the export");

    let mut cfg = ks.story.agent_config(&default_tollgate_bin());
    cfg.bpffs = PathBuf::from(format!("{}-files", cfg.bpffs.display()));
    cfg.state_dir = ks.story.dir.path.join("state-files");
    cfg.log_dir = ks.story.dir.path.join("files-agent");
    std::fs::create_dir_all(&cfg.log_dir).expect("mkdir");
    cfg.manifests = export;
    cfg.cluster_cidr_flags = false;
    let mut files_agent = Agent::start(cfg).expect("agent on --source files");
    files_agent
        .wait_applied("test-egress", "sleep", "enforce", None, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", files_agent.logs_text()));

    let kube_agent = ks.story.agent.as_ref().expect("kube agent");
    // The Kubernetes agent may still be applying its last events: compare
    // once both are settled and equal, or fail with the difference.
    let mut last = (Value::Null, Value::Null);
    let same = poll("the two agents' maps to be equal", Duration::from_secs(20), || {
        let (a, b) = (maps(kube_agent), maps(&files_agent));
        let equal = a == b;
        last = (a, b);
        Ok(equal.then_some(()))
    });
    let (a, b) = last;
    if same.is_err() {
        panic!(
            "maps differ.\n--- kubernetes source:\n{}\n--- files source:\n{}",
            serde_json::to_string_pretty(&a).unwrap_or_default(),
            serde_json::to_string_pretty(&b).unwrap_or_default()
        );
    }
    // Not two empty states: pods, their cgroups and rules are all there.
    let workloads = a["workloads"].as_object().map(|m| m.len()).unwrap_or(0);
    let cgroups = a["cgroups"].as_object().map(|m| m.len()).unwrap_or(0);
    assert!(workloads >= 4 && cgroups >= 8, "{a}");
    assert!(!a["global"].as_object().map(|m| m.is_empty()).unwrap_or(true), "global rules: {a}");
    let enforced = a["cgroups"]
        .as_object()
        .into_iter()
        .flatten()
        .find(|(_, c)| c["workload"] == "test-egress/sleep")
        .map(|(_, c)| c.clone())
        .expect("test-egress/sleep has cgroups");
    assert!(!enforced["rules"].as_object().map(|m| m.is_empty()).unwrap_or(true), "its cluster rules: {enforced}");
    eprintln!("[sources agree] {workloads} workloads, {cgroups} cgroups, identical");
}
