//! The Kubernetes source: kube-rs watchers on the API server, one per
//! kind, sending the same typed events as the files source.
//!
//! - [`client`]: where the configuration comes from;
//! - [`tracker`]: one watch stream turned into apply/delete events, with
//!   relists (410 Gone, reconnects) turned into the deletes they imply;
//! - [`typed`]: the built-in kinds (Namespaces, Services, EndpointSlices,
//!   NetworkPolicies, Nodes, ServiceCIDRs);
//! - [`pods`]: this node's pods (full) and every other pod (addresses and
//!   labels only), merged;
//! - [`crd`]: the Istio and OSM kinds, which may be installed (or removed)
//!   at any time;
//! - [`strip`]: what is kept of each object (memory, and no recompile for
//!   changes that do not matter, such as status heartbeats);
//! - [`recorder`]: Kubernetes Events for objects Tollgate rejects;
//! - [`errors`]: watch errors in an operator's words (which permission is
//!   missing).
pub mod client;
pub mod crd;
pub mod errors;
pub mod pods;
pub mod recorder;
pub mod strip;
pub mod tracker;
pub mod typed;

use std::path::PathBuf;

pub use recorder::Recorder;

use super::SourceSender;

/// How to reach the API server and which node this is.
#[derive(Clone, Debug)]
pub struct Options {
    pub kubeconfig: Option<PathBuf>,
    pub node_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KubeSourceError {
    #[error("no Kubernetes configuration: {0}")]
    Config(String),
    #[error("creating the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// Connects and starts every watcher; they run (and retry) until the
/// process ends. Returns the Event recorder for rejected objects.
pub async fn start(opts: Options, tx: SourceSender) -> Result<Recorder, KubeSourceError> {
    let client = client::connect(opts.kubeconfig.as_deref()).await?;
    typed::spawn_all(&client, &tx);
    pods::spawn(client.clone(), opts.node_name.clone(), tx.clone());
    crd::spawn_all(&client, &tx);
    Ok(Recorder::spawn(client, &opts.node_name))
}
