//! The deployment files of `deploy/` as objects: the plain manifests and
//! monitoring objects (through their kustomizations), the Helm chart
//! rendered with the pinned Helm (`cargo xtask helm`), the comparison of
//! the two, and the list of objects to send to
//! `kubectl apply --dry-run=server`.
pub mod kustomize;
pub mod promql;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The release name and namespace under which the chart renders the same
/// object names as the plain manifests.
pub const RELEASE: &str = "tollgate";
pub const NAMESPACE: &str = "tollgate-system";
/// Labels that only the chart sets (Helm's bookkeeping).
pub const HELM_ONLY_LABELS: &[&str] = &["helm.sh/chart", "app.kubernetes.io/managed-by"];
/// Chart values that turn on the monitoring objects.
pub const MONITORING_ON: &[&str] = &["podMonitor.enabled=true", "prometheusRule.enabled=true", "dashboards.enabled=true"];

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

pub fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

pub fn chart_dir() -> PathBuf {
    deploy_dir().join("helm").join("tollgate")
}

/// `$TOLLGATE_HELM`, else `target/tools/bin/helm` (built by `cargo xtask helm`).
pub fn helm_bin() -> Result<PathBuf> {
    let p = std::env::var_os("TOLLGATE_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target").join("tools").join("bin").join("helm"));
    if !p.is_file() {
        bail!("helm not found at {}: run `cargo xtask helm` (builds the pinned Helm), or set TOLLGATE_HELM", p.display());
    }
    Ok(p)
}

/// The documents of a multi-document YAML text, as JSON values (empty ones skipped).
pub fn yaml_docs(text: &str) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for (i, d) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let v: Value = serde::Deserialize::deserialize(d).with_context(|| format!("document {}", i + 1))?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

pub fn read_yaml_file(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    yaml_docs(&text).with_context(|| format!("parsing {}", path.display()))
}

/// `helm template tollgate deploy/helm/tollgate -n tollgate-system --set S...`.
pub fn render_chart(helm: &Path, sets: &[&str]) -> Result<Vec<Value>> {
    let mut cmd = Command::new(helm);
    cmd.args(["template", RELEASE]).arg(chart_dir()).args(["--namespace", NAMESPACE]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().with_context(|| format!("running {}", helm.display()))?;
    if !out.status.success() {
        bail!("helm template {sets:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    yaml_docs(&String::from_utf8_lossy(&out.stdout)).context("parsing helm template's output")
}

/// deploy/manifests/ (kubectl apply -k).
pub fn plain_manifests() -> Result<Vec<Value>> {
    kustomize::build(&deploy_dir().join("manifests"))
}

/// deploy/monitoring/ (kubectl apply -k): PodMonitor, PrometheusRule, dashboard ConfigMap.
pub fn plain_monitoring() -> Result<Vec<Value>> {
    kustomize::build(&deploy_dir().join("monitoring"))
}

/// The minimal PodMonitor and PrometheusRule CRDs of deploy/monitoring/crds-for-tests/.
pub fn monitoring_crds() -> Result<Vec<Value>> {
    let dir = deploy_dir().join("monitoring").join("crds-for-tests");
    let mut docs = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for f in files {
        docs.extend(read_yaml_file(&f)?);
    }
    Ok(docs)
}

/// (kind, namespace, name) of an object.
pub fn key(doc: &Value) -> (String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (s(&doc["kind"]), s(&doc["metadata"]["namespace"]), s(&doc["metadata"]["name"]))
}

/// The object without the labels only Helm sets.
pub fn without_helm_labels(doc: &Value) -> Value {
    let mut d = doc.clone();
    if let Some(labels) = d["metadata"]["labels"].as_object_mut() {
        for l in HELM_ONLY_LABELS {
            labels.remove(*l);
        }
    }
    d
}

/// Objects by (kind, namespace, name); a duplicate is an error.
pub fn by_key(docs: &[Value]) -> Result<BTreeMap<(String, String, String), Value>> {
    let mut m = BTreeMap::new();
    for d in docs {
        if m.insert(key(d), d.clone()).is_some() {
            bail!("{:?} appears twice", key(d));
        }
    }
    Ok(m)
}

/// The JSON paths where `a` and `b` differ, with both values.
pub fn differences(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_into(a, b, "", &mut out);
    out
}

fn diff_into(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                diff_into(x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null), &format!("{path}.{k}"), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff_into(p, q, &format!("{path}[{i}]"), out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} vs {b}")),
        _ => {}
    }
}

/// Objects sent with `kubectl apply --dry-run=server`, by where they come from.
#[derive(Debug, Clone)]
pub struct DryRunSet {
    pub source: String,
    pub docs: Vec<Value>,
}

/// What the dry-run test applies: `create_first` for real (the two
/// monitoring CRDs, so that their objects can be checked, and the
/// namespace the namespaced objects live in), then each set with
/// `--dry-run=server`.
#[derive(Debug, Clone)]
pub struct DryRunPlan {
    pub create_first: Vec<Value>,
    pub dry_run: Vec<DryRunSet>,
}

pub fn dry_run_plan(helm: &Path) -> Result<DryRunPlan> {
    let manifests = plain_manifests()?;
    let (namespaces, rest): (Vec<Value>, Vec<Value>) = manifests.into_iter().partition(|d| d["kind"] == "Namespace");
    let mut create_first = monitoring_crds()?;
    create_first.extend(namespaces);
    let mut chart_sets: Vec<&str> = MONITORING_ON.to_vec();
    chart_sets.push("clusterCIDRs={10.244.0.0/16,fd00:10:244::/56}");
    Ok(DryRunPlan {
        create_first,
        dry_run: vec![
            DryRunSet { source: "deploy/manifests (kubectl apply -k)".into(), docs: rest },
            DryRunSet { source: "deploy/monitoring (kubectl apply -k)".into(), docs: plain_monitoring()? },
            DryRunSet { source: format!("helm template {RELEASE} deploy/helm/tollgate --set {}", chart_sets.join(",")), docs: render_chart(helm, &chart_sets)? },
        ],
    })
}

/// A multi-document YAML stream (`kubectl apply -f -`).
pub fn to_yaml_stream(docs: &[Value]) -> Result<String> {
    let mut s = String::new();
    for d in docs {
        s.push_str("---\n");
        s.push_str(&serde_yaml::to_string(d)?);
    }
    Ok(s)
}
