//! Watchers of the built-in kinds.
use std::fmt::Debug;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{NetworkPolicy, ServiceCIDR};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use super::errors::{describe, status_code};
use super::strip;
use super::tracker::{Decoded, Tracker};
use crate::model::{Object, ObjectKind};
use crate::source::{SourceEvent, SourceSender};

/// One watched kind: its API names (for error messages) and how an object
/// becomes a stored one.
pub struct Watched<K> {
    pub kind: ObjectKind,
    pub resource: &'static str,
    pub group: &'static str,
    pub config: watcher::Config,
    pub convert: fn(K) -> Object,
}

/// `watcher::Event` with its objects converted.
pub fn convert_event<K>(ev: watcher::Event<K>, f: impl Fn(K) -> Decoded) -> watcher::Event<Decoded> {
    match ev {
        watcher::Event::Apply(k) => watcher::Event::Apply(f(k)),
        watcher::Event::Delete(k) => watcher::Event::Delete(f(k)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(k) => watcher::Event::InitApply(f(k)),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// Sends `events`; false when the runtime is gone.
pub fn send_all(tx: &SourceSender, events: Vec<SourceEvent>) -> bool {
    events.into_iter().all(|e| tx.send(e).is_ok())
}

/// What a watch error means for the tracker: report it, and a kind that
/// the server does not serve (404) counts as synced with no objects.
pub fn on_error(tracker: &mut Tracker, err: &watcher::Error, resource: &str, group: &str) -> Vec<SourceEvent> {
    let kind = tracker.kind;
    let mut out = vec![SourceEvent::WatchError { kind, message: describe(err, resource, group) }];
    if status_code(err) == Some(404) {
        out.push(SourceEvent::Served { kind, served: false });
        if tracker.mark_synced() {
            out.push(SourceEvent::Synced { kind });
        }
    }
    out
}

/// Watches one kind until the runtime is gone. The stream retries with
/// backoff after every error (an outage, a 410 Gone); the store keeps
/// what it had meanwhile.
pub async fn run<K>(api: Api<K>, w: Watched<K>, tx: SourceSender)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut tracker = Tracker::new(w.kind);
    let stream = watcher(api, w.config).default_backoff();
    futures::pin_mut!(stream);
    while let Some(item) = stream.next().await {
        let received = Instant::now();
        let events = match item {
            Ok(ev) => {
                let done = matches!(ev, watcher::Event::InitDone);
                let mut out = tracker.on_event(convert_event(ev, |k| Decoded::Ok((w.convert)(k))), received);
                if done {
                    out.push(SourceEvent::Served { kind: w.kind, served: true });
                }
                out
            }
            Err(e) => on_error(&mut tracker, &e, w.resource, w.group),
        };
        if !send_all(&tx, events) {
            return;
        }
    }
}

pub fn spawn<K>(client: &Client, w: Watched<K>, tx: &SourceSender)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    tokio::spawn(run(Api::<K>::all(client.clone()), w, tx.clone()));
}

/// Starts the watchers of Namespaces, Services, EndpointSlices,
/// NetworkPolicies, Nodes and ServiceCIDRs.
pub fn spawn_all(client: &Client, tx: &SourceSender) {
    let cfg = watcher::Config::default;
    spawn::<Namespace>(client, Watched { kind: ObjectKind::Namespace, resource: "namespaces", group: "", config: cfg(), convert: |o| Object::from(strip::namespace(o)) }, tx);
    spawn::<Service>(client, Watched { kind: ObjectKind::Service, resource: "services", group: "", config: cfg(), convert: |o| Object::from(strip::service(o)) }, tx);
    spawn::<EndpointSlice>(client, Watched { kind: ObjectKind::EndpointSlice, resource: "endpointslices", group: "discovery.k8s.io", config: cfg(), convert: |o| Object::from(strip::endpoint_slice(o)) }, tx);
    spawn::<NetworkPolicy>(client, Watched { kind: ObjectKind::NetworkPolicy, resource: "networkpolicies", group: "networking.k8s.io", config: cfg(), convert: |o| Object::from(strip::network_policy(o)) }, tx);
    spawn::<Node>(client, Watched { kind: ObjectKind::Node, resource: "nodes", group: "", config: cfg(), convert: |o| Object::from(strip::node(o)) }, tx);
    spawn::<ServiceCIDR>(client, Watched { kind: ObjectKind::ServiceCidr, resource: "servicecidrs", group: "networking.k8s.io", config: cfg(), convert: |o| Object::from(strip::service_cidr(o)) }, tx);
}
