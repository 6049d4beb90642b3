//! The deployment files of `deploy/`: RBAC that covers exactly what the
//! agent watches, a DaemonSet whose arguments the agent accepts, the Helm
//! chart rendering the same objects as the plain manifests, alert rules that
//! promtool accepts and whose alerts fire when they should, and a dashboard
//! and alerts that query only metrics the agent exports.
//!
//! Needs promtool (Debian package prometheus), the pinned Helm (`cargo
//! xtask helm`; `cargo xtask setup` installs both for `cargo xtask test`)
//! and target/release/tollgate. Missing tools fail the tests.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use tollgate_e2e::agent::default_tollgate_bin;
use tollgate_e2e::deploy::promql::{dashboard_exprs, metric_names_used, rule_exprs, sample_names};
use tollgate_e2e::deploy::{self, kustomize::CLUSTER_SCOPED};

/// The agreed metric names and types, copied from /work/coord/METRICS.md
/// (the agent implements them with prometheus-client). When the agent's
/// real scrape is available, compare against
/// `deploy::promql::names_in_exposition(scrape)` instead.
const METRICS_MD: &[(&str, &str)] = &[
    ("tollgate_packets_total", "counter"),
    ("tollgate_bytes_total", "counter"),
    ("tollgate_node_packets_total", "counter"),
    ("tollgate_node_bytes_total", "counter"),
    ("tollgate_flow_events_suppressed_total", "counter"),
    ("tollgate_map_entries", "gauge"),
    ("tollgate_map_capacity", "gauge"),
    ("tollgate_map_insert_failures_total", "counter"),
    ("tollgate_event_to_map_seconds", "histogram"),
    ("tollgate_apply_duration_seconds", "histogram"),
    ("tollgate_applies_total", "counter"),
    ("tollgate_apply_failures_total", "counter"),
    ("tollgate_objects_rejected", "gauge"),
    ("tollgate_objects_ignored", "gauge"),
    ("tollgate_source_synced", "gauge"),
    ("tollgate_source_watch_errors_total", "counter"),
    ("tollgate_ready", "gauge"),
    ("tollgate_enforced_pods", "gauge"),
    ("tollgate_build_info", "gauge"),
];

/// What the agent watches (task H2 / issue 7): (API group, resource).
const WATCHED: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "namespaces"),
    ("", "services"),
    ("", "nodes"),
    ("discovery.k8s.io", "endpointslices"),
    ("networking.k8s.io", "networkpolicies"),
    ("networking.k8s.io", "servicecidrs"),
    ("networking.istio.io", "gateways"),
    ("networking.istio.io", "serviceentries"),
    ("networking.istio.io", "sidecars"),
    ("policy.openservicemesh.io", "egresses"),
    ("config.openservicemesh.io", "meshconfigs"),
];
/// What it writes: Events about rejected objects, in both APIs.
const WRITTEN: &[(&str, &str)] = &[("events.k8s.io", "events"), ("", "events")];

fn exported_sample_names() -> BTreeSet<String> {
    METRICS_MD.iter().flat_map(|(n, k)| sample_names(n, k)).collect()
}

fn monitoring_file(name: &str) -> std::path::PathBuf {
    deploy::deploy_dir().join("monitoring").join(name)
}

fn dashboard() -> Value {
    let p = monitoring_file("grafana-dashboard.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn prometheus_rule() -> Value {
    let docs = deploy::read_yaml_file(&monitoring_file("prometheusrule.yaml")).unwrap();
    assert_eq!(docs.len(), 1, "prometheusrule.yaml holds one object");
    docs.into_iter().next().unwrap()
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("promtool not found ({e}): install Debian's prometheus package (`cargo xtask setup` does for the tests)"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

fn helm() -> std::path::PathBuf {
    deploy::helm_bin().unwrap_or_else(|e| panic!("{e:#}"))
}

fn the_daemonset(docs: &[Value]) -> &Value {
    let ds: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "DaemonSet").collect();
    assert_eq!(ds.len(), 1, "one DaemonSet expected");
    ds[0]
}

/// `promtool check rules` on the PrometheusRule's groups, and `promtool test
/// rules` with deploy/monitoring/tests/alerts_test.yaml (alerts fire on
/// made-up series when they should and stay quiet otherwise).
#[test]
fn alert_rules_pass_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let rule = prometheus_rule();
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    std::fs::write(dir.path().join("rules.yaml"), serde_yaml::to_string(&rule["spec"]).unwrap()).unwrap();
    let out = promtool(&["check", "rules", "rules.yaml"], dir.path());
    assert!(out.contains("SUCCESS"), "{out}");
    std::fs::copy(monitoring_file("tests/alerts_test.yaml"), dir.path().join("alerts_test.yaml")).unwrap();
    let out = promtool(&["test", "rules", "alerts_test.yaml"], dir.path());
    assert!(out.contains("SUCCESS"), "{out}");
    // Every alert has a unit test.
    let tests = std::fs::read_to_string(monitoring_file("tests/alerts_test.yaml")).unwrap();
    for r in rule["spec"]["groups"][0]["rules"].as_array().unwrap() {
        let name = r["alert"].as_str().unwrap();
        assert!(tests.contains(&format!("alertname: {name}")), "alert {name} has no case in alerts_test.yaml");
    }
}

/// Every dashboard query parses (promtool checks it as a recording rule,
/// with Grafana's variables replaced).
#[test]
fn dashboard_queries_are_valid_promql() {
    let exprs: Vec<String> = dashboard_exprs(&dashboard()).into_iter().filter(|e| !e.starts_with("label_values(")).collect();
    assert!(exprs.len() >= 15, "only {} queries in the dashboard", exprs.len());
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e.replace("$__rate_interval", "5m").replace("$__range", "1h").replace("$node", ".*").replace("$namespace", ".*");
            json!({"record": format!("dashboard:query_{i}"), "expr": e})
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(dir.path().join("dashboard.yaml"), serde_yaml::to_string(&file).unwrap()).unwrap();
    promtool(&["check", "rules", "dashboard.yaml"], dir.path());
}

/// The dashboard and the alerts query only names in METRICS.md, and cover
/// what the operator needs (drops, map fill, latency, sync, failures).
#[test]
fn dashboard_and_alerts_use_only_exported_metrics() {
    let (dash, rules) = (dashboard(), prometheus_rule());
    let used = metric_names_used(&dash, &rules).unwrap();
    let exported = exported_sample_names();
    let unknown: Vec<&String> = used.difference(&exported).collect();
    assert!(unknown.is_empty(), "queried but not exported (METRICS.md): {unknown:?}");

    let in_dashboard = metric_names_used(&dash, &json!({})).unwrap();
    for needed in [
        "tollgate_packets_total",
        "tollgate_map_entries",
        "tollgate_map_capacity",
        "tollgate_event_to_map_seconds_bucket",
        "tollgate_apply_duration_seconds_bucket",
        "tollgate_source_synced",
        "tollgate_apply_failures_total",
    ] {
        assert!(in_dashboard.contains(needed), "the dashboard does not query {needed}");
    }
    let in_rules = metric_names_used(&json!({}), &rules).unwrap();
    for needed in ["tollgate_ready", "tollgate_map_entries", "tollgate_map_capacity", "tollgate_packets_total", "tollgate_apply_failures_total"] {
        assert!(in_rules.contains(needed), "no alert queries {needed}");
    }
    // Drops are shown by namespace, by pod and by reason.
    let exprs = dashboard_exprs(&dash).join("\n");
    for grouping in ["by (namespace)", "by (namespace, pod, reason)"] {
        assert!(exprs.contains(grouping), "no dashboard query groups drops {grouping}");
    }
    assert_eq!(rule_exprs(&rules).len(), 6);
}

/// The ClusterRole reads exactly what the agent watches (get, list, watch)
/// and writes only Events (create, patch): nothing else, no wildcards.
#[test]
fn cluster_role_is_exactly_what_is_watched() {
    let docs = deploy::plain_manifests().unwrap();
    let roles: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "ClusterRole").collect();
    assert_eq!(roles.len(), 1);
    let mut got: BTreeSet<(String, String, String)> = BTreeSet::new();
    for rule in roles[0]["rules"].as_array().unwrap() {
        assert!(rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(), "{rule}");
        for g in rule["apiGroups"].as_array().unwrap() {
            for r in rule["resources"].as_array().unwrap() {
                for v in rule["verbs"].as_array().unwrap() {
                    let t = (g.as_str().unwrap().to_string(), r.as_str().unwrap().to_string(), v.as_str().unwrap().to_string());
                    assert!(got.insert(t.clone()), "{t:?} granted twice");
                }
            }
        }
    }
    let mut want = BTreeSet::new();
    for (g, r) in WATCHED {
        for v in ["get", "list", "watch"] {
            want.insert((g.to_string(), r.to_string(), v.to_string()));
        }
    }
    for (g, r) in WRITTEN {
        for v in ["create", "patch"] {
            want.insert((g.to_string(), r.to_string(), v.to_string()));
        }
    }
    let extra: Vec<_> = got.difference(&want).collect();
    let missing: Vec<_> = want.difference(&got).collect();
    assert!(extra.is_empty() && missing.is_empty(), "ClusterRole: extra {extra:?}, missing {missing:?}");
    // Bound to the agent's ServiceAccount.
    let binding = docs.iter().find(|d| d["kind"] == "ClusterRoleBinding").unwrap();
    assert_eq!(binding["roleRef"]["name"], roles[0]["metadata"]["name"]);
    assert_eq!(binding["subjects"], json!([{"kind": "ServiceAccount", "name": "tollgate-agent", "namespace": "tollgate-system"}]));
}

/// The DaemonSet as the task asks: host network and PID namespace, no
/// privileged container, drop ALL, probes, priority, tolerations, scrape
/// annotations, the mounts.
#[test]
fn daemonset_shape() {
    let docs = deploy::plain_manifests().unwrap();
    let ds = the_daemonset(&docs);
    assert_eq!(deploy::key(ds), ("DaemonSet".into(), "tollgate-system".into(), "tollgate-agent".into()));
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    assert_eq!(pod["tolerations"], json!([{"operator": "Exists"}]));
    assert_eq!(pod["serviceAccountName"], "tollgate-agent");
    assert_eq!(ds["spec"]["updateStrategy"]["type"], "RollingUpdate");
    assert!(ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"].is_number());
    assert!(pod["terminationGracePeriodSeconds"].is_number());
    let ann = &ds["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/port"], "9964");
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert!(!sc["capabilities"]["add"].as_array().unwrap().iter().any(|c| c == "SYS_ADMIN"), "SYS_ADMIN is not needed");
    assert!(sc["seccompProfile"]["type"].is_string() && sc["appArmorProfile"]["type"].is_string());
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["ports"][0]["containerPort"], 9964);
    assert!(c["resources"]["requests"]["memory"].is_string() && c["resources"]["limits"]["memory"].is_string());
    assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
    let mounts: BTreeSet<&str> = c["volumeMounts"].as_array().unwrap().iter().map(|m| m["mountPath"].as_str().unwrap()).collect();
    assert_eq!(mounts, BTreeSet::from(["/sys/fs/bpf", "/host/sys/fs/cgroup", "/run/tollgate"]));
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    for (flag, value) in [("--cgroup-root", "/host/sys/fs/cgroup"), ("--bpffs", "/sys/fs/bpf/tollgate"), ("--metrics-addr", "0.0.0.0:9964")] {
        let i = args.iter().position(|a| *a == flag).unwrap_or_else(|| panic!("{flag} missing in {args:?}"));
        assert_eq!(args.get(i + 1), Some(&value), "{flag}");
    }
}

/// The agent accepts the DaemonSet's arguments, from the plain manifests
/// and from the chart with CIDRs set (`tollgate ARGS --help` parses them all
/// before printing help; an unknown flag or a bad value exits non-zero).
#[test]
fn daemonset_args_parse_with_the_agent() {
    let bin = default_tollgate_bin();
    assert!(bin.is_file(), "{} is missing: run `cargo xtask build`", bin.display());
    let bad = Command::new(&bin).args(["agent", "--no-such-flag", "--help"]).output().unwrap();
    assert!(!bad.status.success(), "the check itself must be able to fail");
    let plain = deploy::plain_manifests().unwrap();
    let chart = deploy::render_chart(&helm(), &["clusterCIDRs={10.244.0.0/16,fd00:10:244::/56}", "logFormat=text"]).unwrap();
    for (what, docs) in [("deploy/manifests", &plain), ("chart", &chart)] {
        let args: Vec<String> = the_daemonset(docs)["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let out = Command::new(&bin).args(&args).arg("--help").output().unwrap();
        assert!(out.status.success(), "{what}: tollgate {args:?} rejected:\n{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Compares rendered and plain objects after dropping Helm's own labels.
fn assert_same_objects(chart: &[Value], plain: &[Value], what: &str) {
    let norm = |docs: &[Value]| deploy::by_key(&docs.iter().map(deploy::without_helm_labels).collect::<Vec<_>>()).unwrap();
    let (c, p) = (norm(chart), norm(plain));
    let ck: BTreeSet<_> = c.keys().collect();
    let pk: BTreeSet<_> = p.keys().collect();
    assert_eq!(ck, pk, "{what}: the chart and the plain files hold different objects");
    for (k, cv) in &c {
        let d = deploy::differences(cv, &p[k]);
        assert!(d.is_empty(), "{what}: {k:?} differs (chart vs plain):\n  {}", d.join("\n  "));
    }
}

/// `helm template` with the default values gives the objects of
/// deploy/manifests/ (the Namespace aside: `helm install -n` expects it),
/// field for field except Helm's labels: same RBAC rules, same container
/// arguments, same security settings.
#[test]
fn chart_defaults_render_the_plain_manifests() {
    let chart = deploy::render_chart(&helm(), &[]).unwrap();
    let plain: Vec<Value> = deploy::plain_manifests().unwrap().into_iter().filter(|d| d["kind"] != "Namespace").collect();
    assert_same_objects(&chart, &plain, "default values");
    // And the check can fail: a changed value shows up.
    let changed = deploy::render_chart(&helm(), &["capabilities={BPF,NET_ADMIN}"]).unwrap();
    let ds = |docs: &[Value]| deploy::without_helm_labels(the_daemonset(docs));
    assert!(!deploy::differences(&ds(&changed), &ds(&plain)).is_empty());
}

/// With podMonitor, prometheusRule and dashboards enabled, the chart adds
/// exactly the objects of deploy/monitoring/.
#[test]
fn chart_monitoring_renders_the_plain_monitoring_objects() {
    let all = deploy::render_chart(&helm(), deploy::MONITORING_ON).unwrap();
    let defaults: BTreeSet<_> = deploy::render_chart(&helm(), &[]).unwrap().iter().map(deploy::key).collect();
    let added: Vec<Value> = all.into_iter().filter(|d| !defaults.contains(&deploy::key(d))).collect();
    let plain = deploy::plain_monitoring().unwrap();
    assert_eq!(plain.len(), 3, "PodMonitor, PrometheusRule, dashboard ConfigMap");
    assert_same_objects(&added, &plain, "monitoring");
    let cm = plain.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value = serde_json::from_str(cm["data"]["tollgate.json"].as_str().unwrap()).unwrap();
    assert_eq!(json["uid"], "tollgate-agent");
}

/// The objects for `kubectl apply --dry-run=server`: every kind is built in
/// or has its CRD among the objects created first, and every namespaced
/// object's namespace is created first. (The dry run itself runs once the
/// local API server is in the tests.)
#[test]
fn dry_run_plan_is_complete() {
    let plan = deploy::dry_run_plan(&helm()).unwrap();
    let crd_kinds: BTreeSet<(String, String)> = plan
        .create_first
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .map(|d| (d["spec"]["group"].as_str().unwrap().to_string(), d["spec"]["names"]["kind"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(crd_kinds.len(), 2);
    let namespaces: BTreeSet<&str> =
        plan.create_first.iter().filter(|d| d["kind"] == "Namespace").map(|d| d["metadata"]["name"].as_str().unwrap()).collect();
    const BUILT_IN: &[&str] = &["v1", "apps/v1", "rbac.authorization.k8s.io/v1"];
    let mut kinds = BTreeSet::new();
    for set in &plan.dry_run {
        assert!(!set.docs.is_empty(), "{}: nothing to apply", set.source);
        for d in &set.docs {
            let api = d["apiVersion"].as_str().unwrap();
            let kind = d["kind"].as_str().unwrap().to_string();
            let group = api.rsplit_once('/').map(|(g, _)| g).unwrap_or("").to_string();
            assert!(BUILT_IN.contains(&api) || crd_kinds.contains(&(group, kind.clone())), "{}: {api} {kind} has no CRD in the plan", set.source);
            if !CLUSTER_SCOPED.contains(&kind.as_str()) {
                let ns = d["metadata"]["namespace"].as_str().unwrap_or_default();
                assert!(namespaces.contains(ns), "{}: {:?} is in namespace {ns:?}, not created first", set.source, deploy::key(d));
            }
            kinds.insert(kind);
        }
    }
    for k in ["DaemonSet", "ClusterRole", "ClusterRoleBinding", "ServiceAccount", "PodMonitor", "PrometheusRule", "ConfigMap"] {
        assert!(kinds.contains(k), "no {k} in the dry-run plan");
    }
    let stream = deploy::to_yaml_stream(&plan.dry_run[0].docs).unwrap();
    assert_eq!(deploy::yaml_docs(&stream).unwrap(), plan.dry_run[0].docs);
}
