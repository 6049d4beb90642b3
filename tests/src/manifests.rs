//! The manifests the agent reads: the example directory if present, else a
//! built-in fixture with the same facts. Plus in-place edits for scenarios.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// `examples/istio-egress-gateway` in the workspace.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/istio-egress-gateway")
}

/// Fills `dest` with the example manifests (every *.yaml / *.yml), or with the
/// built-in fixture when the examples are absent. Returns where they came from.
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
    if copied > 0 {
        return Ok(format!("{} ({copied} files)", src.display()));
    }
    std::fs::write(dest.join("namespaces.yaml"), FIXTURE_NAMESPACES)?;
    std::fs::write(dest.join("workloads.yaml"), FIXTURE_WORKLOADS)?;
    std::fs::write(dest.join("istio.yaml"), FIXTURE_ISTIO)?;
    Ok("built-in fixture (examples/istio-egress-gateway absent)".into())
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

const FIXTURE_NAMESPACES: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: test-egress
  labels:
    tollgate.dev/egress: enforce
---
apiVersion: v1
kind: Namespace
metadata:
  name: default
---
apiVersion: v1
kind: Namespace
metadata:
  name: istio-system
---
apiVersion: v1
kind: Namespace
metadata:
  name: kube-system
"#;

const FIXTURE_WORKLOADS: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: sleep
  namespace: test-egress
  uid: 6f1c2a3e-0000-4000-8000-000000000010
  labels:
    app: sleep
spec:
  nodeName: node-1
  serviceAccountName: sleep
  containers:
  - name: sleep
    image: curlimages/curl
    command: ["/bin/sleep", "infinity"]
status:
  phase: Running
  qosClass: BestEffort
  podIP: 10.244.0.10
  podIPs:
  - ip: 10.244.0.10
  - ip: fd00:10:244::10
---
apiVersion: v1
kind: Pod
metadata:
  name: sleep
  namespace: default
  uid: 6f1c2a3e-0000-4000-8000-000000000011
  labels:
    app: sleep
spec:
  nodeName: node-1
  serviceAccountName: sleep
  containers:
  - name: sleep
    image: curlimages/curl
    command: ["/bin/sleep", "infinity"]
status:
  phase: Running
  qosClass: BestEffort
  podIP: 10.244.0.11
  podIPs:
  - ip: 10.244.0.11
  - ip: fd00:10:244::11
---
apiVersion: v1
kind: Pod
metadata:
  name: istio-egressgateway
  namespace: istio-system
  uid: 6f1c2a3e-0000-4000-8000-000000000020
  labels:
    app: istio-egressgateway
    istio: egressgateway
spec:
  nodeName: node-1
  serviceAccountName: istio-egressgateway-service-account
  containers:
  - name: istio-proxy
    image: docker.io/istio/proxyv2
    ports:
    - containerPort: 8080
      name: http2
    resources:
      requests:
        cpu: 10m
        memory: 40Mi
status:
  phase: Running
  qosClass: Burstable
  podIP: 10.244.0.20
  podIPs:
  - ip: 10.244.0.20
  - ip: fd00:10:244::20
---
apiVersion: v1
kind: Pod
metadata:
  name: coredns
  namespace: kube-system
  uid: 6f1c2a3e-0000-4000-8000-000000000030
  labels:
    k8s-app: kube-dns
spec:
  nodeName: node-1
  containers:
  - name: coredns
    image: registry.k8s.io/coredns/coredns
    ports:
    - containerPort: 53
      name: dns
      protocol: UDP
    - containerPort: 53
      name: dns-tcp
      protocol: TCP
    resources:
      requests:
        cpu: 100m
        memory: 70Mi
      limits:
        cpu: 100m
        memory: 70Mi
status:
  phase: Running
  qosClass: Guaranteed
  podIP: 10.244.0.30
  podIPs:
  - ip: 10.244.0.30
  - ip: fd00:10:244::30
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels:
    k8s-app: kube-dns
spec:
  selector:
    k8s-app: kube-dns
  clusterIP: 10.96.0.10
  clusterIPs:
  - 10.96.0.10
  - fd00:10:96::a
  ipFamilies: [IPv4, IPv6]
  ports:
  - name: dns
    port: 53
    protocol: UDP
  - name: dns-tcp
    port: 53
    protocol: TCP
---
apiVersion: v1
kind: Service
metadata:
  name: istio-egressgateway
  namespace: istio-system
spec:
  selector:
    istio: egressgateway
  clusterIP: 10.96.0.20
  clusterIPs:
  - 10.96.0.20
  - fd00:10:96::14
  ipFamilies: [IPv4, IPv6]
  ports:
  - name: http2
    port: 80
    targetPort: 8080
    protocol: TCP
"#;

const FIXTURE_ISTIO: &str = r#"apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: cnn
  namespace: default
spec:
  hosts:
  - edition.cnn.com
  ports:
  - number: 80
    name: http-port
    protocol: HTTP
  - number: 443
    name: https
    protocol: HTTPS
  resolution: DNS
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: istio-egressgateway
  namespace: istio-system
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - edition.cnn.com
"#;

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
