//! Reads the repository's kustomizations (`deploy/manifests/`,
//! `deploy/monitoring/`) into their objects without the kustomize binary.
//! Only what they use is supported: `resources` (files), `namespace`, and
//! `configMapGenerator` with `files`, `options.labels` and
//! `disableNameSuffixHash: true`; anything else is an error, so this reader
//! cannot silently build something other than `kubectl apply -k` does.
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use super::yaml_docs;

/// Kinds without a namespace (of those the repository ships).
pub const CLUSTER_SCOPED: &[&str] = &["Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass"];

const KNOWN_KEYS: &[&str] = &["apiVersion", "kind", "resources", "namespace", "configMapGenerator"];

/// The objects `kubectl apply -k DIR` would send.
pub fn build(dir: &Path) -> Result<Vec<Value>> {
    let path = dir.join("kustomization.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let k: Value = serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let obj = k.as_object().with_context(|| format!("{}: not a mapping", path.display()))?;
    for key in obj.keys() {
        if !KNOWN_KEYS.contains(&key.as_str()) {
            bail!("{}: field `{key}` is not supported by this reader (tests/src/deploy/kustomize.rs)", path.display());
        }
    }
    let mut docs = Vec::new();
    for r in k["resources"].as_array().into_iter().flatten() {
        let file = r.as_str().with_context(|| format!("{}: resources: {r} is not a file name", path.display()))?;
        let p = dir.join(file);
        let text = std::fs::read_to_string(&p).with_context(|| format!("{}: resources: reading {}", path.display(), p.display()))?;
        docs.extend(yaml_docs(&text).with_context(|| format!("parsing {}", p.display()))?);
    }
    for (i, g) in k["configMapGenerator"].as_array().into_iter().flatten().enumerate() {
        docs.push(config_map(dir, g).with_context(|| format!("{}: configMapGenerator[{i}]", path.display()))?);
    }
    if let Some(ns) = k["namespace"].as_str() {
        for d in &mut docs {
            if !CLUSTER_SCOPED.contains(&d["kind"].as_str().unwrap_or_default()) {
                d["metadata"]["namespace"] = json!(ns);
            }
        }
    }
    Ok(docs)
}

fn config_map(dir: &Path, g: &Value) -> Result<Value> {
    for key in g.as_object().context("not a mapping")?.keys() {
        if !["name", "files", "options"].contains(&key.as_str()) {
            bail!("field `{key}` is not supported");
        }
    }
    let name = g["name"].as_str().context("name: missing")?;
    if g["options"]["disableNameSuffixHash"] != json!(true) {
        bail!("options.disableNameSuffixHash: only `true` is supported (no hash suffix)");
    }
    let mut data = Map::new();
    for f in g["files"].as_array().context("files: missing")? {
        let spec = f.as_str().context("files: not a string")?;
        let (key, file) = spec.split_once('=').unwrap_or_else(|| (spec.rsplit('/').next().unwrap_or(spec), spec));
        let p = dir.join(file);
        let text = std::fs::read_to_string(&p).with_context(|| format!("files: reading {}", p.display()))?;
        data.insert(key.to_string(), json!(text));
    }
    let mut metadata = json!({"name": name});
    if let Some(labels) = g["options"]["labels"].as_object() {
        metadata["labels"] = Value::Object(labels.clone());
    }
    Ok(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}))
}
