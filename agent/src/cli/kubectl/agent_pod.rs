//! Which agent pod answers: the node of `--pod`, then the running agent pod
//! on that node (namespace tollgate-system, label
//! app.kubernetes.io/name=tollgate, spec.nodeName), and what to run in it.
use k8s_openapi::api::core::v1::{Container, Node, Pod};
use kube::{api::ListParams, Api, Client};

use super::args::AGENT_SELECTOR;
use super::errors::{api_error, Needs};
use crate::cli::CliError;

/// The node `namespace/name` runs on.
pub async fn node_of_pod(client: &Client, namespace: &str, name: &str) -> Result<String, CliError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod = pods
        .get_opt(name)
        .await
        .map_err(|e| api_error(e, &format!("reading pod {namespace}/{name}"), Needs::GetPod(namespace)))?
        .ok_or_else(|| CliError::Input(format!("kubectl tollgate: flag --pod: pod {namespace}/{name} not found")))?;
    pod.spec
        .and_then(|s| s.node_name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| CliError::Environment(format!("pod {namespace}/{name} is not scheduled on a node yet: no agent to ask")))
}

/// The agent pod to exec into on `node`.
pub async fn find(client: &Client, agent_namespace: &str, node: &str) -> Result<Pod, CliError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), agent_namespace);
    let lp = ListParams::default().labels(AGENT_SELECTOR).fields(&format!("spec.nodeName={node}"));
    let list = pods
        .list(&lp)
        .await
        .map_err(|e| api_error(e, &format!("listing the agent pods in {agent_namespace}"), Needs::ListAgents(agent_namespace)))?;
    if list.items.is_empty() {
        // A misspelt node says so (when we may read Nodes; not required).
        let nodes: Api<Node> = Api::all(client.clone());
        if let Ok(None) = nodes.get_opt(node).await {
            return Err(CliError::Input(format!("kubectl tollgate: node {node} not found")));
        }
    }
    pick(&list.items, agent_namespace, node).cloned()
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The running agent pod among `pods` (those on the node): not being
/// deleted, phase Running; a Ready one first (during a rollout two may run).
pub fn pick<'a>(pods: &'a [Pod], agent_namespace: &str, node: &str) -> Result<&'a Pod, CliError> {
    let running = |p: &&Pod| {
        p.metadata.deletion_timestamp.is_none() && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    };
    if let Some(p) = pods.iter().filter(running).max_by_key(|p| (is_ready(p), p.metadata.creation_timestamp.as_ref().map(|t| t.0))) {
        return Ok(p);
    }
    let hint = format!(
        "is the DaemonSet tollgate-agent running there? `kubectl -n {agent_namespace} get pods -l {AGENT_SELECTOR} -o wide`"
    );
    if pods.is_empty() {
        return Err(CliError::Environment(format!(
            "no Tollgate agent pod on node {node} (namespace {agent_namespace}, label {AGENT_SELECTOR}): {hint}"
        )));
    }
    let states: Vec<String> = pods
        .iter()
        .map(|p| {
            let name = p.metadata.name.as_deref().unwrap_or("?");
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
            let deleting = if p.metadata.deletion_timestamp.is_some() { ", being deleted" } else { "" };
            format!("{name} is {phase}{deleting}")
        })
        .collect();
    Err(CliError::Environment(format!(
        "no running Tollgate agent pod on node {node}: {}; `kubectl -n {agent_namespace} describe pod` says why",
        states.join(", ")
    )))
}

/// The agent's container: the one named `agent`, else the one that runs
/// `tollgate agent`, else the first.
pub fn container(pod: &Pod) -> Option<&Container> {
    let cs = &pod.spec.as_ref()?.containers;
    let runs_agent = |c: &&Container| {
        let argv: Vec<&str> = c.command.iter().flatten().chain(c.args.iter().flatten()).map(String::as_str).collect();
        argv.contains(&"agent")
    };
    cs.iter().find(|c| c.name == "agent").or_else(|| cs.iter().find(runs_agent)).or(cs.first())
}

/// The flags of the agent that the CLI needs to find its pins and state
/// (`--bpffs`, `--state-dir`), from the container's command line.
pub fn global_flags(c: &Container) -> Vec<(String, String)> {
    const GLOBAL: [&str; 2] = ["--bpffs", "--state-dir"];
    let argv: Vec<&String> = c.command.iter().flatten().chain(c.args.iter().flatten()).collect();
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, a) in argv.iter().enumerate() {
        for flag in GLOBAL {
            let value = if *a == flag {
                argv.get(i + 1).map(|v| v.to_string())
            } else {
                a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')).map(str::to_owned)
            };
            if let Some(v) = value {
                out.retain(|(f, _)| f != flag);
                out.push((flag.to_owned(), v));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}: {yaml}"))
    }

    fn agent(name: &str, phase: &str, ready: bool, created: &str) -> Pod {
        pod(&format!(
            "metadata: {{name: {name}, creationTimestamp: '{created}'}}\nspec: {{containers: [{{name: agent}}]}}\nstatus: {{phase: {phase}, conditions: [{{type: Ready, status: '{}'}}]}}\n",
            if ready { "True" } else { "False" }
        ))
    }

    #[test]
    fn picks_the_running_ready_agent() {
        let pods = [
            agent("old", "Running", false, "2026-01-01T00:00:00Z"),
            agent("new", "Running", true, "2026-01-02T00:00:00Z"),
            agent("pending", "Pending", false, "2026-01-03T00:00:00Z"),
        ];
        assert_eq!(pick(&pods, "tollgate-system", "n1").ok().and_then(|p| p.metadata.name.as_deref()), Some("new"));
    }

    #[test]
    fn says_why_there_is_no_agent() {
        let e = pick(&[], "tollgate-system", "n1").expect_err("none");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("no Tollgate agent pod on node n1 (namespace tollgate-system, label app.kubernetes.io/name=tollgate)"), "{e}");
        let e = pick(&[agent("a", "Pending", false, "2026-01-01T00:00:00Z")], "tollgate-system", "n1").expect_err("pending");
        assert!(e.to_string().contains("a is Pending"), "{e}");
    }

    #[test]
    fn finds_the_agent_container_and_its_flags() {
        let p = pod("spec:\n  containers:\n  - {name: sidecar, args: [sleep]}\n  - name: tg\n    args: [agent, --bpffs, /sys/fs/bpf/x, '--state-dir=/run/x', --log-format, json]\n");
        let c = container(&p).expect("container");
        assert_eq!(c.name, "tg");
        assert_eq!(
            global_flags(c),
            [("--bpffs".to_owned(), "/sys/fs/bpf/x".to_owned()), ("--state-dir".to_owned(), "/run/x".to_owned())]
        );
        let p = pod("spec: {containers: [{name: agent}, {name: other}]}");
        assert_eq!(container(&p).map(|c| c.name.as_str()), Some("agent"));
        assert!(global_flags(container(&p).expect("agent")).is_empty());
    }
}
