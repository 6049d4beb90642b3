//! `kubectl tollgate` against a real kube-apiserver: the exec goes from the
//! plugin (kube-rs, WebSocket) through kube-apiserver (which speaks SPDY to
//! the kubelet) to a fake kubelet that serves it with the kubelet's own
//! streaming code and runs the real `tollgate` on this machine, against the
//! running agent's pins and state. The agent pod object on node-1 carries
//! the agent's --bpffs and --state-dir, which the plugin passes along.
//!
//! Checks: `status --node` prints what the local `status` prints and exits
//! alike; `kubectl tollgate` found by kubectl on PATH; `--pod` finds the
//! pod's node and means `--from-pod` for verify; exit codes and stdin pass
//! through; no agent pod / unknown node / unknown context are named; an
//! identity without pods/exec is told which permission it lacks, and the
//! Role of the README is enough.
//!
//! Needs root, bpffs, cgroup v2, iproute2, the agent binary and the local
//! control plane (`cargo xtask cluster build`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use tollgate_e2e::agent::default_tollgate_bin;
use tollgate_e2e::apiserver::ApiServer;
use tollgate_e2e::fake_kubelet::FakeKubelet;
use tollgate_e2e::kube_story::set_pod_status;
use tollgate_e2e::story::Story;
use tollgate_e2e::util::TempDir;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(mut cmd: Command, stdin: &[u8]) -> Out {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let mut input = child.stdin.take().expect("piped");
    input.write_all(stdin).expect("stdin");
    drop(input);
    let out = child.wait_with_output().expect("wait");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

struct Setup {
    plugin: PathBuf,
    kubeconfig: PathBuf,
}

impl Setup {
    fn plugin(&self, args: &[&str]) -> Out {
        self.plugin_with(args, b"", &self.kubeconfig)
    }

    fn plugin_with(&self, args: &[&str], stdin: &[u8], kubeconfig: &Path) -> Out {
        let mut c = Command::new(&self.plugin);
        c.args(args).arg("--kubeconfig").arg(kubeconfig).env_remove("KUBECONFIG");
        let out = run(c, stdin);
        eprintln!("[e2e] kubectl-tollgate {args:?}: exit {}\n{}{}", out.code, out.stdout, out.stderr);
        out
    }
}

/// The checklist lines without their timing details: `RESULT  name`.
fn verdicts(status_text: &str) -> Vec<String> {
    status_text
        .lines()
        .filter(|l| l.starts_with("PASS ") || l.starts_with("WARN ") || l.starts_with("FAIL "))
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join("  "))
        .collect()
}

const AGENT_POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: tollgate-agent-x7k2p
  namespace: tollgate-system
  labels: {app.kubernetes.io/name: tollgate, app.kubernetes.io/component: agent}
spec:
  nodeName: node-1
  containers:
  - name: agent
    image: tollgate-agent:0.1.0
    args: [agent, --source, kubernetes, --bpffs, BPFFS, --state-dir, STATE, --log-format, json]
";

/// What `kubectl tollgate` needs (README, "kubectl tollgate"): read pods
/// anywhere (to find the node of `--pod`), list the agent pods and exec
/// into them.
const ONCALL_RBAC: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: kubectl-tollgate}
rules:
- {apiGroups: [''], resources: [pods], verbs: [get]}
- {apiGroups: [''], resources: [nodes], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: oncall-kubectl-tollgate}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kubectl-tollgate}
subjects: [{kind: ServiceAccount, name: oncall, namespace: default}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: kubectl-tollgate, namespace: tollgate-system}
rules:
- {apiGroups: [''], resources: [pods], verbs: [list]}
- {apiGroups: [''], resources: [pods/exec], verbs: [get, create]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: oncall-kubectl-tollgate, namespace: tollgate-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: kubectl-tollgate}
subjects: [{kind: ServiceAccount, name: oncall, namespace: default}]
";

#[test]
fn kubectl_tollgate_runs_the_command_in_the_agent_pod_of_the_node() {
    tollgate_e2e::util::require_environment();
    let e2e = Path::new(env!("CARGO_BIN_EXE_tollgate-e2e"));
    let tollgate = default_tollgate_bin();
    let mut story = Story::build(e2e).expect("building the sandbox");
    story.start_agent(&tollgate).expect("starting the agent");
    let (bpffs, state) = {
        let a = story.agent();
        (a.cfg.bpffs.display().to_string(), a.cfg.state_dir.display().to_string())
    };

    let mut api = ApiServer::start().expect("API server");
    api.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: tollgate-system}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: test-egress}\n")
        .expect("namespaces");
    api.apply_yaml(&AGENT_POD.replace("BPFFS", &bpffs).replace("STATE", &state)).expect("agent pod");
    api.apply_yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: sleep, namespace: test-egress}\nspec: {nodeName: node-1, containers: [{name: sleep, image: sleep}]}\n")
        .expect("workload pod");
    set_pod_status(&api, "tollgate-system", "tollgate-agent-x7k2p", &serde_json::json!({"phase": "Running"})).expect("agent running");
    let kubelet = FakeKubelet::start(&api, "node-1", &[("tollgate", tollgate.as_path())]).expect("fake kubelet");
    eprintln!("[e2e] fake kubelet of node-1 at {}", kubelet.url);

    let bin = TempDir::new(&format!("tollgate-plugin-{}", tollgate_e2e::util::unique_prefix())).expect("temp dir");
    let plugin = bin.path.join("kubectl-tollgate");
    std::os::unix::fs::symlink(&tollgate, &plugin).expect("kubectl-tollgate link");
    let s = Setup { plugin, kubeconfig: api.kubeconfig() };

    // status --node: what the local status says, with its exit code.
    let remote = s.plugin(&["status", "--node", "node-1"]);
    let local = story.agent().cli_output(&["status"]).expect("local status");
    assert_eq!(remote.code, 0, "{}{}", remote.stdout, remote.stderr);
    assert_eq!(remote.code, local.0);
    assert!(remote.stdout.starts_with("Tollgate on node node-1: source files, bpffs ") && remote.stdout.contains(&bpffs), "{}", remote.stdout);
    assert_eq!(verdicts(&remote.stdout), verdicts(&local.1), "the same checklist, remote and local");
    assert!(verdicts(&remote.stdout).len() >= 13, "{}", remote.stdout);
    let remote_json: Value = serde_json::from_str(&s.plugin(&["status", "--node", "node-1", "-o", "json"]).stdout).expect("status JSON");
    let local_json = story.agent().status().expect("local status JSON");
    for key in ["pid", "generation", "bpffs", "result"] {
        assert_eq!(remote_json[key], local_json[key], "{key}");
    }

    // As a kubectl plugin: kubectl finds kubectl-tollgate on PATH.
    let mut c = Command::new(api.kubectl_path());
    c.args(["tollgate", "status", "--node", "node-1"])
        .env("KUBECONFIG", api.kubeconfig())
        .env("PATH", format!("{}:{}", bin.path.display(), std::env::var("PATH").unwrap_or_default()));
    let via_kubectl = run(c, b"");
    assert_eq!(via_kubectl.code, 0, "{}{}", via_kubectl.stdout, via_kubectl.stderr);
    assert_eq!(verdicts(&via_kubectl.stdout), verdicts(&local.1));
    let with_context = s.plugin(&["counters", "--node", "node-1", "--context", "tollgate-local", "-o", "json"]);
    assert_eq!(with_context.code, 0, "{}", with_context.stderr);
    assert!(serde_json::from_str::<Value>(&with_context.stdout).is_ok_and(|v| v["node"].is_object()), "{}", with_context.stdout);

    // --pod finds the node, and verify reads it as --from-pod.
    let remote = s.plugin(&["verify", "--pod", "test-egress/sleep", "--to-ip", "203.0.113.10", "--to-port", "80", "-o", "json"]);
    let local = story
        .agent()
        .cli_output(&["verify", "--from-pod", "test-egress/sleep", "--to-ip", "203.0.113.10", "--to-port", "80", "-o", "json"])
        .expect("local verify");
    assert_eq!((remote.code, local.0), (0, 0), "{}", remote.stderr);
    let (r, l): (Value, Value) = (serde_json::from_str(&remote.stdout).expect("json"), serde_json::from_str(&local.1).expect("json"));
    assert_eq!(r, l, "the same answer remote and local");
    assert_eq!((r["verdict"].as_str(), r["mode"].as_str()), (Some("deny"), Some("enforce")), "{r}");

    // Exit codes and stderr pass through: bad input is 1, remotely too.
    let remote = s.plugin(&["verify", "--pod", "test-egress/sleep", "--to-port", "80"]);
    let local = story.agent().cli_output(&["verify", "--from-pod", "test-egress/sleep", "--to-port", "80"]).expect("local");
    assert_eq!(local.0, 1, "{}", local.2);
    assert_eq!(remote.code, 1, "{}", remote.stderr);
    assert_eq!(remote.stderr.trim(), local.2.trim(), "the remote message, unchanged");

    // stdin passes through: a batch of queries from our stdin.
    let batch = b"{\"from_pod\": \"test-egress/sleep\", \"to_ip\": \"203.0.113.10\", \"to_port\": 80, \"protocol\": \"tcp\"}\n{\"from_pod\": \"test-egress/sleep\", \"to_ip\": \"10.244.0.20\", \"to_port\": 8080, \"protocol\": \"tcp\"}\n";
    let out = s.plugin_with(&["verify", "--node", "node-1", "--batch", "-"], batch, &s.kubeconfig);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let answers: Vec<Value> = out.stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON answer a line")).collect();
    assert_eq!(answers.iter().map(|a| a["verdict"].as_str()).collect::<Vec<_>>(), [Some("deny"), Some("allow")], "{answers:?}");

    // The program is not reachable from kubectl tollgate: only tollgate runs.
    let out = s.plugin(&["agent", "--node", "node-1"]);
    assert_eq!(out.code, 1, "agent is not a plugin subcommand");

    // Clear errors.
    let out = s.plugin(&["status", "--node", "node-9"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("node node-9 not found"), "{}", out.stderr);
    api.apply_yaml("apiVersion: v1\nkind: Node\nmetadata: {name: node-2}\n").expect("node-2");
    let out = s.plugin(&["status", "--node", "node-2"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no Tollgate agent pod on node node-2 (namespace tollgate-system, label app.kubernetes.io/name=tollgate)"), "{}", out.stderr);
    let out = s.plugin(&["status", "--pod", "test-egress/nope"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("flag --pod: pod test-egress/nope not found"), "{}", out.stderr);
    let out = s.plugin(&["status", "--node", "node-1", "--context", "elsewhere"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("elsewhere"), "{}", out.stderr);

    // RBAC: an identity that may list the agent pods but not exec is told
    // what it lacks; with the README's Role it works.
    api.apply_yaml("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: oncall, namespace: default}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: list-pods, namespace: tollgate-system}\nrules: [{apiGroups: [''], resources: [pods], verbs: [get, list]}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: oncall-list-pods, namespace: tollgate-system}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: list-pods}\nsubjects: [{kind: ServiceAccount, name: oncall, namespace: default}]\n")
        .expect("a read-only on-call identity");
    let token = api.service_account_token("default", "oncall").expect("token");
    let oncall = api.kubeconfig_for_token("oncall", &token).expect("kubeconfig");
    let out = s.plugin_with(&["status", "--node", "node-1"], b"", &oncall);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("refused by RBAC") && out.stderr.contains("`get` and `create` on pods/exec in namespace tollgate-system"), "{}", out.stderr);
    let out = s.plugin_with(&["status", "--pod", "test-egress/sleep"], b"", &oncall);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("`get` on pods in namespace test-egress"), "{}", out.stderr);
    api.apply_yaml(ONCALL_RBAC).expect("the README's roles");
    api.kubectl(&["delete", "role", "list-pods", "-n", "tollgate-system"]).expect("only the README's roles");
    let out = s.plugin_with(&["status", "--node", "node-1"], b"", &oncall);
    assert_eq!(out.code, 0, "the README's roles are enough: {}", out.stderr);
    let out = s.plugin_with(&["verify", "--pod", "test-egress/sleep", "--to-ip", "10.244.0.20", "--to-port", "80"], b"", &oncall);
    assert_eq!(out.code, 0, "--pod too: {}", out.stderr);
    assert!(out.stdout.starts_with("ALLOW (enforce, gateway)"), "{}", out.stdout);
    drop(kubelet);
}
