//! The synthetic cluster in a local API server: a parallel loader (kube-rs,
//! create then the status subresource for pods, as a kubelet writes
//! addresses) and the [`Driver`] that makes the bench's changes through the
//! API.
use crate::bench::events::{Change, Driver, BIG_ENTRIES};
use crate::bench::synth::{self, Cluster, LocalPod};
use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Requests in flight while loading.
const PARALLEL: usize = 48;

fn plural(kind: &str) -> Result<&'static str> {
    Ok(match kind {
        "Namespace" => "namespaces",
        "Node" => "nodes",
        "Pod" => "pods",
        "Service" => "services",
        "EndpointSlice" => "endpointslices",
        "NetworkPolicy" => "networkpolicies",
        "ServiceEntry" => "serviceentries",
        "Gateway" => "gateways",
        "Egress" => "egresses",
        "MeshConfig" => "meshconfigs",
        k => bail!("the loader does not know kind {k}"),
    })
}

/// The API of `obj`'s kind, in its namespace (if any).
fn api_for(client: &Client, obj: &Value) -> Result<Api<DynamicObject>> {
    let api_version = obj["apiVersion"].as_str().context("object without apiVersion")?;
    let kind = obj["kind"].as_str().context("object without kind")?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural(kind)?);
    Ok(match obj["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    })
}

fn name(obj: &Value) -> Result<String> {
    obj["metadata"]["name"].as_str().map(str::to_string).context("object without metadata.name")
}

/// Creates `obj` (its `metadata.uid` and, for pods, `status` dropped),
/// then writes a pod's status through the status subresource.
async fn create(client: &Client, mut obj: Value) -> Result<()> {
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("uid");
    }
    let mut status = if obj["kind"] == "Pod" { obj.as_object_mut().and_then(|o| o.remove("status")) } else { None };
    // The server derives qosClass from the containers' resources and
    // refuses another value.
    if let Some(m) = status.as_mut().and_then(Value::as_object_mut) {
        m.remove("qosClass");
    }
    let api = api_for(client, &obj)?;
    let n = name(&obj)?;
    let d: DynamicObject = serde_json::from_value(obj).context("decoding the object")?;
    match api.create(&PostParams::default(), &d).await {
        Ok(_) => {}
        // kube-system and default come with the server.
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(anyhow::Error::new(e).context(format!("creating {n}"))),
    }
    if let Some(s) = status {
        api.patch_status(&n, &PatchParams::default(), &Patch::Merge(json!({"status": s})))
            .await
            .with_context(|| format!("writing the status of pod {n}"))?;
    }
    Ok(())
}

async fn create_all(client: &Client, objs: Vec<Value>) -> Result<()> {
    futures::stream::iter(objs.into_iter().map(|o| create(client, o))).buffer_unordered(PARALLEL).try_collect::<Vec<()>>().await?;
    Ok(())
}

pub async fn client(kubeconfig: &Path) -> Result<Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

/// What loading took.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Loaded {
    pub objects: usize,
    pub seconds: f64,
    /// The pods of `node-1` with the UIDs the server gave them.
    #[serde(skip)]
    pub local: Vec<LocalPod>,
}

/// Loads `cluster` (Namespaces and `node-1`, whose podCIDRs are the pod
/// range, first; then the rest) and reads back the UIDs of node-1's pods.
pub fn load(rt: &tokio::runtime::Runtime, client: &Client, cluster: &Cluster) -> Result<Loaded> {
    let t = Instant::now();
    let all: Vec<Value> = cluster.groups.iter().flat_map(|(_, o)| o.iter().cloned()).collect();
    let (mut first, rest): (Vec<Value>, Vec<Value>) = all.into_iter().partition(|o| o["kind"] == "Namespace");
    first.push(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": synth::LOCAL_NODE}, "spec": {"podCIDRs": [synth::CLUSTER_CIDRS[0]]}}));
    let objects = first.len() + rest.len();
    rt.block_on(async {
        create_all(client, first).await?;
        create_all(client, rest).await
    })?;
    let local = rt.block_on(local_pods(client))?;
    if local.len() != cluster.local.len() {
        bail!("the API server holds {} pods of {}, the cluster has {}", local.len(), synth::LOCAL_NODE, cluster.local.len());
    }
    Ok(Loaded { objects, seconds: t.elapsed().as_secs_f64(), local })
}

async fn local_pods(client: &Client) -> Result<Vec<LocalPod>> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::all(client.clone());
    let list = pods.list(&ListParams::default().fields(&format!("spec.nodeName={}", synth::LOCAL_NODE))).await?;
    Ok(list
        .items
        .into_iter()
        .map(|p| LocalPod {
            namespace: p.metadata.namespace.unwrap_or_default(),
            name: p.metadata.name.unwrap_or_default(),
            uid: p.metadata.uid.unwrap_or_default(),
        })
        .collect())
}

pub struct KubeDriver<'a> {
    pub rt: &'a tokio::runtime::Runtime,
    pub client: Client,
}

impl KubeDriver<'_> {
    fn patch(&self, obj: &Value, patch: Value) -> Result<()> {
        let api = api_for(&self.client, obj)?;
        let n = name(obj)?;
        self.rt.block_on(api.patch(&n, &PatchParams::default(), &Patch::Merge(patch))).with_context(|| format!("patching {n}"))?;
        Ok(())
    }
}

impl Driver for KubeDriver<'_> {
    fn prepare(&mut self, change: &Change) -> Result<bool> {
        let Change::PodAdded { index, ns } = change else { return Ok(false) };
        let mut pod = synth::added_pod(*index, *ns, "node-2");
        if let Some(o) = pod.as_object_mut() {
            o.remove("status");
        }
        self.rt.block_on(create(&self.client, pod))?;
        Ok(true)
    }

    fn apply(&mut self, change: &Change) -> Result<()> {
        match change {
            Change::PodAdded { index, ns } => {
                let mut pod = synth::added_pod(*index, *ns, "node-2");
                if let Some(m) = pod["status"].as_object_mut() {
                    m.remove("qosClass");
                }
                let api = api_for(&self.client, &pod)?;
                let n = name(&pod)?;
                self.rt
                    .block_on(api.patch_status(&n, &PatchParams::default(), &Patch::Merge(json!({"status": pod["status"]}))))
                    .with_context(|| format!("writing the status of pod {n}"))?;
                Ok(())
            }
            Change::NamespaceLabel { ns, team } => {
                let obj = synth::namespace(*ns, *team);
                self.patch(&obj, json!({"metadata": {"labels": obj["metadata"]["labels"]}}))
            }
            Change::PolicyEdited { ns, port } => {
                let obj = synth::same_ns_policy(&synth::namespace_name(*ns), *port);
                self.patch(&obj, json!({"spec": obj["spec"]}))
            }
            Change::BigPolicy { ns, shift } => {
                let obj = synth::ip_block_policy(&synth::namespace_name(*ns), "big", BIG_ENTRIES, *shift);
                if *shift == 0 {
                    self.rt.block_on(create(&self.client, obj))
                } else {
                    self.patch(&obj, json!({"spec": obj["spec"]}))
                }
            }
            Change::BigPolicyDeleted { ns } => {
                let obj = synth::ip_block_policy(&synth::namespace_name(*ns), "big", 0, 0);
                let api = api_for(&self.client, &obj)?;
                self.rt.block_on(api.delete("big", &DeleteParams::default())).context("deleting NetworkPolicy big")?;
                Ok(())
            }
        }
    }
}

/// A runtime for the loader and the driver.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// Waits until `/readyz` of the server answers (kube-rs request), so the
/// loader does not race the server's start.
pub fn wait_ready(rt: &tokio::runtime::Runtime, client: &Client) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = rt.block_on(client.apiserver_version());
        if r.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the API server does not answer: {r:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
