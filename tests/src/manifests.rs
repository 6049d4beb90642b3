//! The manifests the agent reads (the example directory, the same the demo
//! uses), plus in-place edits for scenarios.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// `examples/istio-egress-gateway` in the workspace.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/istio-egress-gateway")
}

/// Fills `dest` with the example manifests (every *.yaml / *.yml). Returns
/// where they came from; fails if there are none.
pub fn populate(dest: &Path) -> Result<String> {
    std::fs::create_dir_all(dest)?;
    let src = examples_dir();
    let mut copied = 0;
    if let Ok(rd) = std::fs::read_dir(&src) {
        for e in rd.flatten() {
            let p = e.path();
            if matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")) {
                std::fs::copy(&p, dest.join(e.file_name())).with_context(|| format!("copying {}", p.display()))?;
                copied += 1;
            }
        }
    }
    if copied == 0 {
        bail!("no manifests (*.yaml) in {}", src.display());
    }
    Ok(format!("{} ({copied} files)", src.display()))
}

/// Sets (Some) or removes (None) a label on Namespace `ns`, in whichever file
/// defines it. The file is replaced atomically (rename), so the agent never
/// reads half a file.
pub fn set_namespace_label(dir: &Path, ns: &str, key: &str, value: Option<&str>) -> Result<PathBuf> {
    use serde::Deserialize;
    for e in std::fs::read_dir(dir)?.flatten() {
        let p = e.path();
        if !matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")) {
            continue;
        }
        let text = std::fs::read_to_string(&p)?;
        let mut docs = Vec::new();
        let mut found = false;
        for d in serde_yaml::Deserializer::from_str(&text) {
            let mut v = serde_yaml::Value::deserialize(d).with_context(|| format!("parsing {}", p.display()))?;
            if v.is_null() {
                continue;
            }
            if v["kind"].as_str() == Some("Namespace") && v["metadata"]["name"].as_str() == Some(ns) {
                found = true;
                let meta = v["metadata"].as_mapping_mut().context("metadata is not a mapping")?;
                let labels = meta
                    .entry("labels".into())
                    .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
                if labels.is_null() {
                    *labels = serde_yaml::Value::Mapping(Default::default());
                }
                let labels = labels.as_mapping_mut().context("labels is not a mapping")?;
                match value {
                    Some(val) => {
                        labels.insert(key.into(), val.into());
                    }
                    None => {
                        labels.remove(key);
                    }
                }
            }
            docs.push(v);
        }
        if found {
            let mut out = String::new();
            for d in &docs {
                out.push_str("---\n");
                out.push_str(&serde_yaml::to_string(d)?);
            }
            let tmp = dir.join(format!(".{}.tmp", e.file_name().to_string_lossy()));
            std::fs::write(&tmp, out)?;
            std::fs::rename(&tmp, &p)?;
            return Ok(p);
        }
    }
    bail!("no Namespace {ns} in {}", dir.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_rewrite_roundtrip() {
        let dir = std::env::temp_dir().join(format!("tollgate-e2e-manifests-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        populate(&dir).unwrap();
        let read = |dir: &Path| -> Option<String> {
            use serde::Deserialize;
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap();
                for d in serde_yaml::Deserializer::from_str(&text) {
                    let v = serde_yaml::Value::deserialize(d).unwrap();
                    if v["kind"].as_str() == Some("Namespace") && v["metadata"]["name"].as_str() == Some("test-egress") {
                        return v["metadata"]["labels"]["tollgate.dev/egress"].as_str().map(String::from);
                    }
                }
            }
            panic!("no test-egress namespace")
        };
        assert_eq!(read(&dir).as_deref(), Some("enforce"));
        set_namespace_label(&dir, "test-egress", "tollgate.dev/egress", Some("audit")).unwrap();
        assert_eq!(read(&dir).as_deref(), Some("audit"));
        set_namespace_label(&dir, "test-egress", "tollgate.dev/egress", None).unwrap();
        assert_eq!(read(&dir), None);
        assert!(std::fs::read_dir(&dir).unwrap().flatten().all(|e| !e.file_name().to_string_lossy().ends_with(".tmp")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
