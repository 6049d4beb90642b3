//! The stories on a real API server: the same pods, netns and cgroups as
//! [`Story`], with every object in a private `kube-apiserver`
//! ([`ApiServer`]) and the agent running `--source kubernetes`.
//!
//! The API server assigns the pods' UIDs, so the objects go in first and
//! the kubelet-style cgroups are made with the UIDs it gave. Pods are
//! bound to `node-1` and get their addresses through the status
//! subresource, as a kubelet would write them; `node-1` carries the pod
//! ranges, and the default `ServiceCIDR` the Service ranges, so the agent
//! learns the cluster ranges instead of being told them.
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::agent::Agent;
use crate::apiserver::ApiServer;
use crate::manifests;
use crate::story::{Story, StoryOpts};
use crate::util::TempDir;

/// `node-1`, with the pod ranges of [`crate::pods`].
pub const NODE: &str = "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-1\nspec:\n  podCIDRs: [10.244.0.0/24, 'fd00:10:244::/64']\n";

/// Field order is drop order: the agent (in the story) stops before the
/// API server.
pub struct KubeStory {
    pub story: Story,
    pub api: ApiServer,
}

fn strip_server_fields(doc: &mut serde_yaml::Value) {
    if let Some(meta) = doc.get_mut("metadata").and_then(|m| m.as_mapping_mut()) {
        for k in ["uid", "resourceVersion", "creationTimestamp"] {
            meta.remove(k);
        }
    }
}

fn text(doc: &serde_yaml::Value, path: &[&str]) -> String {
    let mut v = doc;
    for p in path {
        v = &v[*p];
    }
    v.as_str().unwrap_or_default().to_owned()
}

fn to_stream(docs: &[serde_yaml::Value]) -> Result<String> {
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(d)?);
    }
    Ok(out)
}

/// Creates every object of the manifests under `dir` in the API server:
/// Namespaces first, Pods without their status, which is then written
/// through the status subresource. Returns the pods' UIDs by
/// `namespace/name`.
pub fn load(api: &mut ApiServer, dir: &Path) -> Result<BTreeMap<String, String>> {
    let docs = manifests::read_objects(dir)?;
    let (mut namespaces, mut rest, mut statuses) = (Vec::new(), Vec::new(), Vec::new());
    for mut d in docs {
        strip_server_fields(&mut d);
        match text(&d, &["kind"]).as_str() {
            "Namespace" => namespaces.push(d),
            "Pod" => {
                let status = d.as_mapping_mut().and_then(|m| m.remove("status"));
                if let Some(s) = status {
                    statuses.push((text(&d, &["metadata", "namespace"]), text(&d, &["metadata", "name"]), s));
                }
                rest.push(d);
            }
            _ => rest.push(d),
        }
    }
    api.apply_yaml(&to_stream(&namespaces)?).context("creating the namespaces")?;
    api.apply_yaml(NODE).context("creating node-1")?;
    api.apply_yaml(&to_stream(&rest)?).context("creating the objects")?;
    for (ns, name, status) in statuses {
        set_pod_status(api, &ns, &name, &serde_json::to_value(status)?)?;
    }
    pod_uids(api)
}

/// Writes `status` of a pod through the status subresource, as a kubelet.
pub fn set_pod_status(api: &ApiServer, ns: &str, name: &str, status: &Value) -> Result<()> {
    let patch = serde_json::json!({ "status": status }).to_string();
    api.kubectl(&["patch", "pod", name, "-n", ns, "--subresource=status", "--type=merge", "-p", &patch])
        .with_context(|| format!("writing the status of pod {ns}/{name}"))?;
    Ok(())
}

/// UIDs of every pod, by `namespace/name`.
pub fn pod_uids(api: &ApiServer) -> Result<BTreeMap<String, String>> {
    let out = api.kubectl(&["get", "pods", "-A", "-o", "json"])?;
    let list: Value = serde_json::from_str(&out).context("parsing the pod list")?;
    let mut uids = BTreeMap::new();
    for p in list["items"].as_array().into_iter().flatten() {
        let m = &p["metadata"];
        let (Some(ns), Some(name), Some(uid)) = (m["namespace"].as_str(), m["name"].as_str(), m["uid"].as_str()) else {
            bail!("pod without namespace, name or uid: {p}");
        };
        uids.insert(format!("{ns}/{name}"), uid.to_owned());
    }
    Ok(uids)
}

impl KubeStory {
    /// A private API server holding the story's objects (CRDs installed),
    /// then the sandbox with cgroups named by the UIDs the server gave.
    pub fn build(e2e_bin: &Path, mut opts: StoryOpts) -> Result<KubeStory> {
        let mut api = ApiServer::start().context("starting the API server")?;
        api.install_crds().context("installing the Istio and OSM CRDs")?;
        let staging = TempDir::new(&format!("tollgate-kube-manifests-{}", crate::util::unique_prefix()))?;
        manifests::populate(&staging.path)?;
        for ex in &opts.examples {
            manifests::add_example(&staging.path, ex)?;
        }
        opts.uids = load(&mut api, &staging.path)?;
        let story = Story::build_with(e2e_bin, opts)?;
        Ok(KubeStory { story, api })
    }

    /// Starts `tollgate agent --source kubernetes --kubeconfig <admin>` and
    /// waits until the story's `enforced` pods are enforced.
    pub fn start_agent(&mut self, tollgate_bin: &Path) -> Result<&mut Agent> {
        let mut cfg = self.story.agent_config(tollgate_bin);
        cfg.kubeconfig = Some(self.api.kubeconfig());
        self.story.start_agent_with(cfg)
    }

    /// `kubectl label namespace NS KEY=VALUE --overwrite`, or `KEY-` for None.
    pub fn label_namespace(&self, ns: &str, key: &str, value: Option<&str>) -> Result<()> {
        let arg = match value {
            Some(v) => format!("{key}={v}"),
            None => format!("{key}-"),
        };
        self.api.kubectl(&["label", "namespace", ns, &arg, "--overwrite"])?;
        Ok(())
    }

    /// Deletes a pod bound to a node at once (no kubelet confirms it).
    pub fn delete_pod(&self, ns: &str, name: &str) -> Result<()> {
        self.api.kubectl(&["delete", "pod", name, "-n", ns, "--grace-period=0", "--force", "--wait=false"])?;
        Ok(())
    }

    /// Waits until `kubectl get` finds no pod NS/NAME.
    pub fn wait_pod_gone(&self, ns: &str, name: &str, timeout: Duration) -> Result<()> {
        crate::util::poll(&format!("pod {ns}/{name} to be gone"), timeout, || {
            Ok(self.api.kubectl(&["get", "pod", name, "-n", ns, "--ignore-not-found", "-o", "name"])?.trim().is_empty().then_some(()))
        })
    }
}
