//! The deployment files against a real API server:
//! - the plain manifests, the monitoring objects and the rendered chart
//!   pass `kubectl apply --dry-run=server`;
//! - least privilege is proven: the agent, with a token of its own
//!   ServiceAccount (TokenRequest API) bound to the ClusterRole of
//!   `deploy/`, syncs every kind, becomes ready and publishes an Event for an
//!   object it rejects;
//! - a ClusterRole missing one of those rules makes the agent say which
//!   permission it lacks, and it does not become ready.
//!
//! Needs root, bpffs, cgroup v2, the agent binary, Helm (`cargo xtask
//! helm`) and the local control plane (`cargo xtask cluster build`).
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tollgate_e2e::agent::{default_tollgate_bin, Agent, AgentConfig};
use tollgate_e2e::apiserver::ApiServer;
use tollgate_e2e::cgroups::CgroupTree;
use tollgate_e2e::deploy::{self, to_yaml_stream};
use tollgate_e2e::util::{poll, unique_prefix, TempDir};

#[test]
fn manifests_monitoring_and_chart_pass_server_dry_run() {
    let helm = deploy::helm_bin().expect("helm (cargo xtask helm)");
    let plan = deploy::dry_run_plan(&helm).expect("dry-run plan");
    let mut api = ApiServer::start().expect("API server");
    api.apply_yaml(&to_yaml_stream(&plan.create_first).expect("yaml")).expect("creating the CRDs and the namespace");
    // The CRDs must be served before objects of their kinds can be checked.
    api.kubectl(&["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]).expect("CRDs established");
    for set in &plan.dry_run {
        let dir = api.dir().join(format!("dry-run-{}.yaml", set.docs.len()));
        std::fs::write(&dir, to_yaml_stream(&set.docs).expect("yaml")).expect("write");
        let out = api
            .kubectl(&["apply", "--dry-run=server", "-f", dir.to_str().expect("utf-8")])
            .unwrap_or_else(|e| panic!("{}: kubectl apply --dry-run=server failed: {e:#}", set.source));
        let checked = out.lines().filter(|l| l.contains("(server dry run)")).count();
        assert_eq!(checked, set.docs.len(), "{}: every object checked by the server:\n{out}", set.source);
    }
}

/// The RBAC objects of `deploy/manifests` (namespace, ServiceAccount,
/// ClusterRole, binding), with `edit` applied to the ClusterRole.
fn rbac_objects(edit: impl Fn(&mut Value)) -> Vec<Value> {
    let mut docs = deploy::plain_manifests().expect("deploy/manifests");
    docs.retain(|d| d["kind"] != "DaemonSet");
    for d in docs.iter_mut().filter(|d| d["kind"] == "ClusterRole") {
        edit(d);
    }
    docs
}

/// A running agent with the ServiceAccount's token; cleaned up on drop.
struct Run {
    agent: Agent,
    _cgroups: CgroupTree,
    _dir: TempDir,
    api: ApiServer,
}

fn start_agent_as_service_account(edit: impl Fn(&mut Value)) -> Run {
    tollgate_e2e::util::require_environment();
    let mut api = ApiServer::start().expect("API server");
    api.install_crds().expect("CRDs");
    let rbac = rbac_objects(edit);
    let (ns, rest): (Vec<Value>, Vec<Value>) = rbac.into_iter().partition(|d| d["kind"] == "Namespace");
    api.apply_yaml(&to_yaml_stream(&ns).expect("yaml")).expect("namespace");
    api.apply_yaml(&to_yaml_stream(&rest).expect("yaml")).expect("RBAC objects");
    // Something to read, and an object the agent must reject (a bad CIDR).
    api.apply_yaml(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {tollgate.dev/egress: enforce}}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: node-1}\nspec: {podCIDRs: [10.244.0.0/24]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec: {nodeName: node-1, containers: [{name: web, image: nginx}]}\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: bad-cidr, namespace: shop}\nspec: {hosts: [db.internal], location: MESH_INTERNAL, addresses: [10.0.0.300]}\n",
    )
    .expect("objects");
    let token = api.service_account_token("tollgate-system", "tollgate-agent").expect("TokenRequest");
    let kubeconfig = api.kubeconfig_for_token("tollgate-agent", &token).expect("kubeconfig");
    let prefix = unique_prefix();
    let dir = TempDir::new(&format!("tollgate-rbac-{prefix}")).expect("temp dir");
    let cgroups = CgroupTree::create(&prefix, &[]).expect("cgroup root");
    let cfg = AgentConfig {
        bin: default_tollgate_bin(),
        bpffs: PathBuf::from(format!("/sys/fs/bpf/tollgate-e2e-{prefix}")),
        state_dir: dir.path.join("state"),
        manifests: dir.path.join("unused"),
        cgroup_root: cgroups.root.clone(),
        log_dir: dir.path.clone(),
        metrics_addr: std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").to_string(),
        resolv_conf: None,
        netns: None,
        exec_in_bin: Path::new(env!("CARGO_BIN_EXE_tollgate-e2e")).to_path_buf(),
        kubeconfig: Some(kubeconfig),
        cluster_cidr_flags: false,
        extra_args: Vec::new(),
    };
    let agent = Agent::start(cfg).expect("agent");
    Run { agent, _cgroups: cgroups, _dir: dir, api }
}

#[test]
fn the_agent_syncs_with_its_own_least_privileged_service_account() {
    let mut run = start_agent_as_service_account(|_| {});
    let agent = &mut run.agent;
    let st = poll("the agent to sync and apply", Duration::from_secs(60), || {
        agent.check_alive()?;
        let st = agent.status()?;
        Ok((st["generation"].as_u64().unwrap_or(0) >= 1).then_some(st))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", run.agent.logs_text()));
    for (kind, s) in st["sync"].as_object().expect("sync per kind") {
        assert_eq!(s["synced"], true, "{kind} not synced: {s}");
        assert!(s["last_error"].is_null(), "{kind}: {s}");
    }
    assert_eq!(st["sync"].as_object().map(|m| m.len()), Some(12), "every kind reported: {}", st["sync"]);
    let (status, _) = run.agent.http_get("/readyz").expect("/readyz");
    assert!(status.contains("200"), "/readyz: {status}");
    // The rejected policy is described with an Event the agent may write.
    let events = poll("a TollgateRejected Event on ServiceEntry shop/bad-cidr", Duration::from_secs(30), || {
        let out = run.api.kubectl(&["get", "events", "-n", "shop", "-o", "json"])?;
        Ok(out.contains("TollgateRejected").then_some(out))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", run.agent.logs_text()));
    assert!(events.contains("bad-cidr"), "{events}");
}

#[test]
fn a_missing_permission_is_named() {
    let mut run = start_agent_as_service_account(|role| {
        let rules = role["rules"].as_array_mut().expect("rules");
        for rule in rules.iter_mut() {
            if let Some(resources) = rule["resources"].as_array_mut() {
                resources.retain(|r| r.as_str() != Some("networkpolicies"));
            }
        }
    });
    let agent = &mut run.agent;
    let st = poll("the agent to report the refused watch", Duration::from_secs(60), || {
        agent.check_alive()?;
        let st = agent.status()?;
        let err = st["sync"]["NetworkPolicy"]["last_error"].as_str().unwrap_or("").to_owned();
        Ok(err.contains("forbidden").then_some(st))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", run.agent.logs_text()));
    let err = st["sync"]["NetworkPolicy"]["last_error"].as_str().unwrap_or("");
    assert!(err.contains("networkpolicies") && err.contains("networking.k8s.io") && err.contains("list"), "names the permission: {err}");
    assert_eq!(st["generation"], 0, "nothing applied without the full sync: {st}");
    assert!(st["last_error"].as_str().unwrap_or("").contains("NetworkPolicy"), "status says what it waits for: {st}");
    let (status, _) = run.agent.http_get("/readyz").expect("/readyz");
    assert!(status.contains("503"), "not ready: {status}");
    assert!(run.agent.logs_text().contains("forbidden: the agent may not list/watch networkpolicies.networking.k8s.io"), "the log names it too");
}
