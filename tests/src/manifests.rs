//! The manifests the agent reads (the example directories, the same the demo
//! uses), plus in-place edits for scenarios.

use crate::pods::{PodSpec, Qos};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// `examples/<name>` in the workspace.
pub fn example_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name)
}

/// `examples/istio-egress-gateway` in the workspace.
pub fn examples_dir() -> PathBuf {
    example_dir("istio-egress-gateway")
}

fn is_yaml(p: &Path) -> bool {
    matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml"))
}

/// Copies every *.yaml / *.yml of `src` into `dest`; fails if there are none.
fn copy_yaml(src: &Path, dest: &Path) -> Result<usize> {
    std::fs::create_dir_all(dest)?;
    let mut copied = 0;
    if let Ok(rd) = std::fs::read_dir(src) {
        for e in rd.flatten() {
            let p = e.path();
            if is_yaml(&p) {
                std::fs::copy(&p, dest.join(e.file_name())).with_context(|| format!("copying {}", p.display()))?;
                copied += 1;
            }
        }
    }
    if copied == 0 {
        bail!("no manifests (*.yaml) in {}", src.display());
    }
    Ok(copied)
}

/// Fills `dest` with the example manifests (every *.yaml / *.yml). Returns
/// where they came from; fails if there are none.
pub fn populate(dest: &Path) -> Result<String> {
    let src = examples_dir();
    let copied = copy_yaml(&src, dest)?;
    Ok(format!("{} ({copied} files)", src.display()))
}

/// Adds `examples/<name>` (a folder of manifests meant to be applied on top
/// of istio-egress-gateway) to `dest/<name>/` (the agent reads the folder
/// recursively). Returns the folder it wrote.
pub fn add_example(dest: &Path, name: &str) -> Result<PathBuf> {
    let to = dest.join(name);
    copy_yaml(&example_dir(name), &to)?;
    Ok(to)
}

/// Every *.yaml / *.yml under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if p.is_dir() {
            out.extend(yaml_files(&p)?);
        } else if is_yaml(&p) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn read_docs(p: &Path) -> Result<Vec<serde_yaml::Value>> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    let mut docs = Vec::new();
    for d in serde_yaml::Deserializer::from_str(&text) {
        let v = serde_yaml::Value::deserialize(d).with_context(|| format!("parsing {}", p.display()))?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// Every object under `dir`.
pub fn read_objects(dir: &Path) -> Result<Vec<serde_yaml::Value>> {
    let mut out = Vec::new();
    for p in yaml_files(dir)? {
        out.extend(read_docs(&p)?);
    }
    Ok(out)
}

/// Replaces `path` atomically (write a hidden temp file beside it, then
/// rename), so that the agent never reads half a file.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let name = path.file_name().context("no file name")?.to_string_lossy().into_owned();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Applies `edit` to the object `kind` `namespace/name` (namespace None: a
/// cluster-scoped object) in whichever file under `dir` defines it, and
/// rewrites that file atomically. Returns the file.
pub fn edit_object(
    dir: &Path,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    edit: impl FnOnce(&mut serde_yaml::Value) -> Result<()>,
) -> Result<PathBuf> {
    let mut edit = Some(edit);
    for p in yaml_files(dir)? {
        let mut docs = read_docs(&p)?;
        let Some(v) = docs.iter_mut().find(|v| {
            v["kind"].as_str() == Some(kind)
                && v["metadata"]["name"].as_str() == Some(name)
                && v["metadata"]["namespace"].as_str() == namespace
        }) else {
            continue;
        };
        (edit.take().expect("edited once"))(v).with_context(|| format!("editing {kind} {name} in {}", p.display()))?;
        let mut out = String::new();
        for d in &docs {
            out.push_str("---\n");
            out.push_str(&serde_yaml::to_string(d)?);
        }
        write_atomic(&p, &out)?;
        return Ok(p);
    }
    bail!("no {kind} {}{name} in {}", namespace.map(|n| format!("{n}/")).unwrap_or_default(), dir.display())
}

/// The mapping at `v[key]`, created (or replacing a null) if needed.
pub fn mapping_at<'a>(v: &'a mut serde_yaml::Value, key: &str) -> Result<&'a mut serde_yaml::Mapping> {
    let m = v.as_mapping_mut().with_context(|| format!("parent of {key} is not a mapping"))?;
    let e = m.entry(key.into()).or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
    if e.is_null() {
        *e = serde_yaml::Value::Mapping(Default::default());
    }
    e.as_mapping_mut().with_context(|| format!("{key} is not a mapping"))
}

/// Sets (Some) or removes (None) a label on Namespace `ns`, in whichever file
/// defines it. The file is replaced atomically (rename), so the agent never
/// reads half a file.
pub fn set_namespace_label(dir: &Path, ns: &str, key: &str, value: Option<&str>) -> Result<PathBuf> {
    edit_object(dir, "Namespace", None, ns, |v| {
        let labels = mapping_at(&mut v["metadata"], "labels")?;
        match value {
            Some(val) => labels.insert(key.into(), val.into()),
            None => labels.remove(key),
        };
        Ok(())
    })
}

/// Fails unless every pod of the topology is a Pod in `dir` with the same
/// UID, QoS class and addresses (the harness builds netns and cgroups from
/// [`PodSpec`]s, the agent reads the manifests: they must agree).
pub fn check_pods(dir: &Path, pods: &[PodSpec]) -> Result<()> {
    let objects = read_objects(dir)?;
    for pod in pods {
        let v = objects
            .iter()
            .find(|v| {
                v["kind"].as_str() == Some("Pod")
                    && v["metadata"]["namespace"].as_str() == Some(pod.namespace)
                    && v["metadata"]["name"].as_str() == Some(pod.name)
            })
            .with_context(|| format!("pod {} is in the topology but has no manifest under {}", pod.key(), dir.display()))?;
        let uid = v["metadata"]["uid"].as_str().unwrap_or_default();
        if uid != pod.uid {
            bail!("pod {}: manifest metadata.uid {uid:?}, topology {}", pod.key(), pod.uid);
        }
        let qos = v["status"]["qosClass"].as_str().unwrap_or_default();
        let want = match pod.qos {
            Qos::BestEffort => "BestEffort",
            Qos::Burstable => "Burstable",
            Qos::Guaranteed => "Guaranteed",
        };
        if qos != want {
            bail!("pod {}: manifest status.qosClass {qos:?}, topology {want}", pod.key());
        }
        let ips: Vec<&str> = v["status"]["podIPs"]
            .as_sequence()
            .map(|s| s.iter().filter_map(|i| i["ip"].as_str()).collect())
            .unwrap_or_default();
        let (v4, v6) = (pod.ipv4.to_string(), pod.ipv6.to_string());
        if ips != [v4.as_str(), v6.as_str()] || v["status"]["podIP"].as_str() != Some(v4.as_str()) {
            bail!("pod {}: manifest status.podIP(s) {ips:?}, topology [{v4}, {v6}]", pod.key());
        }
    }
    Ok(())
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

    #[test]
    fn examples_agree_with_pod_specs_and_edit_in_subfolders() {
        use crate::pods;
        let dir = std::env::temp_dir().join(format!("tollgate-e2e-examples-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        populate(&dir).unwrap();
        for ex in ["netpol-stories/allow-y-a", "netpol-stories/ipblock-except", "osm-egress-policy"] {
            add_example(&dir, ex).unwrap();
        }
        let all: Vec<PodSpec> = pods::ALL_PODS.iter().chain(&pods::NETPOL_PODS).chain(&pods::OSM_PODS).copied().collect();
        check_pods(&dir, &all).unwrap();
        let mut wrong = pods::NETPOL_Y_B;
        wrong.ipv4 = std::net::Ipv4Addr::new(10, 244, 0, 99);
        let e = check_pods(&dir, &[wrong]).unwrap_err().to_string();
        assert!(e.contains("y/b") && e.contains("10.244.0.99"), "{e}");
        wrong = pods::NETPOL_Y_B;
        wrong.name = "nope";
        assert!(check_pods(&dir, &[wrong]).is_err());

        let flag = |dir: &Path| {
            read_objects(dir)
                .unwrap()
                .into_iter()
                .find(|v| v["kind"].as_str() == Some("MeshConfig"))
                .and_then(|v| v["spec"]["featureFlags"]["enableEgressPolicy"].as_bool())
        };
        assert_eq!(flag(&dir), Some(true));
        let f = edit_object(&dir, "MeshConfig", Some("osm-system"), "osm-mesh-config", |v| {
            mapping_at(&mut v["spec"], "featureFlags")?.insert("enableEgressPolicy".into(), false.into());
            Ok(())
        })
        .unwrap();
        assert!(f.starts_with(dir.join("osm-egress-policy")), "{}", f.display());
        assert_eq!(flag(&dir), Some(false));
        assert!(edit_object(&dir, "MeshConfig", None, "osm-mesh-config", |_| Ok(())).is_err(), "namespaced object matched without namespace");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
