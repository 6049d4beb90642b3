//! Pods: this node's pods by field selector `spec.nodeName=<node>`, and
//! every other pod (`spec.nodeName!=<node>`, gateways and NetworkPolicy
//! peers may be anywhere), merged into one kind of the store.
//!
//! When a pod is scheduled to this node, the API server sends a delete on
//! the second watch (it no longer matches) and an add on the first, in
//! either order. The merge lets this node's watch own a pod from its first
//! event until its delete, so the other watch's delete cannot remove it.
use std::collections::HashSet;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};

use super::strip;
use super::tracker::{Decoded, Tracker};
use super::typed::{convert_event, on_error, send_all};
use crate::model::{Object, ObjectKind, ObjectRef};
use crate::source::{ObjectChange, SourceEvent, SourceSender};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Watch {
    /// This node's pods.
    Local,
    /// Every other pod.
    Others,
}

/// Merges the two pod watches.
#[derive(Debug)]
pub struct PodMerge {
    local: Tracker,
    others: Tracker,
    /// Pods the local watch has sent and not deleted.
    owned: HashSet<ObjectRef>,
    synced: bool,
}

impl Default for PodMerge {
    fn default() -> Self {
        Self { local: Tracker::new(ObjectKind::Pod), others: Tracker::new(ObjectKind::Pod), owned: HashSet::new(), synced: false }
    }
}

impl PodMerge {
    fn on_event(&mut self, from: Watch, ev: watcher::Event<Decoded>, received: Instant) -> Vec<SourceEvent> {
        let raw = match from {
            Watch::Local => self.local.on_event(ev, received),
            Watch::Others => self.others.on_event(ev, received),
        };
        self.merge(from, raw)
    }

    fn on_error(&mut self, from: Watch, err: &watcher::Error) -> Vec<SourceEvent> {
        let raw = match from {
            Watch::Local => on_error(&mut self.local, err, "pods", ""),
            Watch::Others => on_error(&mut self.others, err, "pods", ""),
        };
        self.merge(from, raw)
    }

    fn merge(&mut self, from: Watch, raw: Vec<SourceEvent>) -> Vec<SourceEvent> {
        let mut out = Vec::new();
        for ev in raw {
            match ev {
                SourceEvent::Changes { changes, received } => {
                    let kept: Vec<ObjectChange> = changes.into_iter().filter(|c| self.keep(from, c)).collect();
                    if !kept.is_empty() {
                        out.push(SourceEvent::Changes { changes: kept, received });
                    }
                }
                // Pods are synced when both watches are.
                SourceEvent::Synced { .. } => {
                    if !self.synced && self.local.is_synced() && self.others.is_synced() {
                        self.synced = true;
                        out.push(SourceEvent::Synced { kind: ObjectKind::Pod });
                    }
                }
                other => out.push(other),
            }
        }
        out
    }

    fn keep(&mut self, from: Watch, change: &ObjectChange) -> bool {
        let r = match change {
            ObjectChange::Apply { object, .. } => object.object_ref(),
            ObjectChange::Delete(r) => r.clone(),
        };
        match (from, change) {
            (Watch::Local, ObjectChange::Apply { .. }) => {
                self.owned.insert(r);
                true
            }
            (Watch::Local, ObjectChange::Delete(_)) => {
                self.owned.remove(&r);
                true
            }
            (Watch::Others, _) => !self.owned.contains(&r),
        }
    }
}

fn decode(p: Pod) -> Decoded {
    Decoded::Ok(Object::from(strip::pod(p)))
}

/// Starts both pod watches and the merge.
pub fn spawn(client: Client, node: String, tx: SourceSender) {
    let api: Api<Pod> = Api::all(client);
    let local = watcher(api.clone(), watcher::Config::default().fields(&format!("spec.nodeName={node}")))
        .default_backoff()
        .map(|item| (Watch::Local, item));
    let others = watcher(api, watcher::Config::default().fields(&format!("spec.nodeName!={node}")))
        .default_backoff()
        .map(|item| (Watch::Others, item));
    tokio::spawn(async move {
        let mut merge = PodMerge::default();
        let both = futures::stream::select(local, others);
        futures::pin_mut!(both);
        while let Some((from, item)) = both.next().await {
            let received = Instant::now();
            let events = match item {
                Ok(ev) => merge.on_event(from, convert_event(ev, decode), received),
                Err(e) => merge.on_error(from, &e),
            };
            if !send_all(&tx, events) {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: &str) -> Decoded {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some("n".into());
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec { node_name: Some(node.into()), ..Default::default() });
        Decoded::Ok(Object::from(p))
    }

    fn changes(events: &[SourceEvent]) -> Vec<String> {
        events
            .iter()
            .flat_map(|e| match e {
                SourceEvent::Changes { changes, .. } => changes
                    .iter()
                    .map(|c| match c {
                        ObjectChange::Apply { object, .. } => format!("apply {}", object.object_ref().name),
                        ObjectChange::Delete(r) => format!("delete {}", r.name),
                    })
                    .collect(),
                SourceEvent::Synced { .. } => vec!["synced".to_owned()],
                _ => vec![],
            })
            .collect()
    }

    fn init(m: &mut PodMerge, from: Watch, pods: Vec<Decoded>) -> Vec<String> {
        let now = Instant::now();
        m.on_event(from, watcher::Event::Init, now);
        for p in pods {
            m.on_event(from, watcher::Event::InitApply(p), now);
        }
        changes(&m.on_event(from, watcher::Event::InitDone, now))
    }

    #[test]
    fn synced_when_both_watches_are_and_scheduling_never_loses_the_pod() {
        let mut m = PodMerge::default();
        let now = Instant::now();
        assert_eq!(init(&mut m, Watch::Local, vec![pod("mine", "node-1")]), ["apply mine"]);
        assert_eq!(init(&mut m, Watch::Others, vec![pod("p", "")]), ["apply p", "synced"]);
        // p is scheduled here: the local add comes first, then the other
        // watch's delete, which must not remove it.
        assert_eq!(changes(&m.on_event(Watch::Local, watcher::Event::Apply(pod("p", "node-1")), now)), ["apply p"]);
        assert!(changes(&m.on_event(Watch::Others, watcher::Event::Delete(pod("p", "")), now)).is_empty());
        // q: the other delete comes first (a short absence), then the add.
        init(&mut m, Watch::Others, vec![pod("p", ""), pod("q", "")]);
        assert_eq!(changes(&m.on_event(Watch::Others, watcher::Event::Delete(pod("q", "")), now)), ["delete q"]);
        assert_eq!(changes(&m.on_event(Watch::Local, watcher::Event::Apply(pod("q", "node-1")), now)), ["apply q"]);
        // The pod's own delete goes through.
        assert_eq!(changes(&m.on_event(Watch::Local, watcher::Event::Delete(pod("p", "node-1")), now)), ["delete p"]);
    }
}
