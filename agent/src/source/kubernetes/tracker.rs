//! One watch stream turned into the source's events.
//!
//! kube-rs's watcher gives `Apply`/`Delete` for single changes and, after
//! every (re)list — the first one, a 410 Gone, a reconnect after an
//! outage — `Init`, `InitApply`…, `InitDone`. The tracker buffers a relist
//! and sends it as one batch together with the deletes it implies (objects
//! known before and not listed again), so the store never sees a half
//! relist and nothing deleted while the watch was down stays behind.
use std::collections::{HashMap, HashSet};
use std::time::Instant;

use kube::runtime::watcher;

use crate::desired::Diagnostic;
use crate::model::{Object, ObjectKind, ObjectRef};
use crate::source::{ObjectChange, SourceEvent};

/// A watched object after decoding and stripping.
#[derive(Clone, Debug)]
pub enum Decoded {
    Ok(Object),
    /// An object Tollgate cannot read: reported, and treated as absent
    /// (what it would grant is not granted).
    Rejected(ObjectRef, Diagnostic),
}

impl Decoded {
    fn object_ref(&self) -> ObjectRef {
        match self {
            Decoded::Ok(o) => o.object_ref(),
            Decoded::Rejected(r, _) => r.clone(),
        }
    }
}

/// The state of one watch.
#[derive(Debug)]
pub struct Tracker {
    pub kind: ObjectKind,
    /// Objects sent as applied and not deleted since.
    known: HashSet<ObjectRef>,
    /// Objects with a diagnostic sent (scope = the object's display form).
    rejected: HashMap<ObjectRef, String>,
    /// A relist in progress.
    relist: Option<Vec<Decoded>>,
    synced: bool,
}

impl Tracker {
    pub fn new(kind: ObjectKind) -> Self {
        Self { kind, known: HashSet::new(), rejected: HashMap::new(), relist: None, synced: false }
    }

    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// What one watch event means for the store.
    pub fn on_event(&mut self, ev: watcher::Event<Decoded>, received: Instant) -> Vec<SourceEvent> {
        let mut out = Vec::new();
        match ev {
            watcher::Event::Apply(d) => {
                let changes = self.apply(d, &mut out);
                push_changes(&mut out, changes, received);
            }
            watcher::Event::Delete(d) => {
                let r = d.object_ref();
                self.clear_rejection(&r, &mut out);
                if self.known.remove(&r) {
                    push_changes(&mut out, vec![ObjectChange::Delete(r)], received);
                }
            }
            watcher::Event::Init => self.relist = Some(Vec::new()),
            watcher::Event::InitApply(d) => self.relist.get_or_insert_with(Vec::new).push(d),
            watcher::Event::InitDone => {
                let listed = self.relist.take().unwrap_or_default();
                let seen: HashSet<ObjectRef> = listed.iter().map(Decoded::object_ref).collect();
                let mut changes: Vec<ObjectChange> = Vec::new();
                let gone: Vec<ObjectRef> = self.known.iter().filter(|r| !seen.contains(*r)).cloned().collect();
                for r in gone {
                    self.known.remove(&r);
                    changes.push(ObjectChange::Delete(r));
                }
                let stale: Vec<ObjectRef> = self.rejected.keys().filter(|r| !seen.contains(*r)).cloned().collect();
                for r in stale {
                    self.clear_rejection(&r, &mut out);
                }
                for d in listed {
                    changes.extend(self.apply(d, &mut out));
                }
                push_changes(&mut out, changes, received);
                if !self.synced {
                    self.synced = true;
                    out.push(SourceEvent::Synced { kind: self.kind });
                }
            }
        }
        out
    }

    /// Deletes everything known (the kind stopped being served).
    pub fn forget_all(&mut self, received: Instant) -> Vec<SourceEvent> {
        let mut out = Vec::new();
        let refs: Vec<ObjectRef> = self.rejected.keys().cloned().collect();
        for r in refs {
            self.clear_rejection(&r, &mut out);
        }
        let changes: Vec<ObjectChange> = self.known.drain().map(ObjectChange::Delete).collect();
        push_changes(&mut out, changes, received);
        out
    }

    /// Marks the kind synced without objects (not served); true the first time.
    pub fn mark_synced(&mut self) -> bool {
        !std::mem::replace(&mut self.synced, true)
    }

    fn apply(&mut self, d: Decoded, out: &mut Vec<SourceEvent>) -> Vec<ObjectChange> {
        match d {
            Decoded::Ok(object) => {
                let r = object.object_ref();
                self.clear_rejection(&r, out);
                self.known.insert(r);
                vec![ObjectChange::Apply { object, source: None }]
            }
            Decoded::Rejected(r, diag) => {
                let scope = r.to_string();
                out.push(SourceEvent::Diagnostics { scope: scope.clone(), diags: vec![diag] });
                self.rejected.insert(r.clone(), scope);
                if self.known.remove(&r) {
                    vec![ObjectChange::Delete(r)]
                } else {
                    Vec::new()
                }
            }
        }
    }

    fn clear_rejection(&mut self, r: &ObjectRef, out: &mut Vec<SourceEvent>) {
        if let Some(scope) = self.rejected.remove(r) {
            out.push(SourceEvent::Diagnostics { scope, diags: Vec::new() });
        }
    }
}

fn push_changes(out: &mut Vec<SourceEvent>, changes: Vec<ObjectChange>, received: Instant) {
    if !changes.is_empty() {
        out.push(SourceEvent::Changes { changes, received });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::Severity;
    use k8s_openapi::api::core::v1::Namespace;

    fn ns(name: &str) -> Decoded {
        let mut n = Namespace::default();
        n.metadata.name = Some(name.into());
        Decoded::Ok(Object::from(n))
    }

    fn summary(events: &[SourceEvent]) -> Vec<String> {
        let mut out = Vec::new();
        for e in events {
            match e {
                SourceEvent::Changes { changes, .. } => {
                    for c in changes {
                        out.push(match c {
                            ObjectChange::Apply { object, .. } => format!("apply {}", object.object_ref().name),
                            ObjectChange::Delete(r) => format!("delete {}", r.name),
                        });
                    }
                }
                SourceEvent::Synced { .. } => out.push("synced".into()),
                SourceEvent::Diagnostics { scope, diags } => out.push(format!("diag {scope} {}", diags.len())),
                other => out.push(format!("{other:?}")),
            }
        }
        out
    }

    #[test]
    fn a_relist_deletes_what_it_no_longer_lists_in_one_batch() {
        let mut t = Tracker::new(ObjectKind::Namespace);
        let now = Instant::now();
        assert!(t.on_event(watcher::Event::Init, now).is_empty());
        assert!(t.on_event(watcher::Event::InitApply(ns("a")), now).is_empty());
        assert!(t.on_event(watcher::Event::InitApply(ns("b")), now).is_empty());
        assert_eq!(summary(&t.on_event(watcher::Event::InitDone, now)), ["apply a", "apply b", "synced"]);
        assert_eq!(summary(&t.on_event(watcher::Event::Apply(ns("c")), now)), ["apply c"]);
        // The watch expired (410 Gone) while b was deleted and d created.
        t.on_event(watcher::Event::Init, now);
        t.on_event(watcher::Event::InitApply(ns("a")), now);
        t.on_event(watcher::Event::InitApply(ns("c")), now);
        t.on_event(watcher::Event::InitApply(ns("d")), now);
        let relist = t.on_event(watcher::Event::InitDone, now);
        assert_eq!(relist.iter().filter(|e| matches!(e, SourceEvent::Changes { .. })).count(), 1, "one batch");
        assert_eq!(summary(&relist), ["delete b", "apply a", "apply c", "apply d"], "synced only once");
        assert_eq!(summary(&t.on_event(watcher::Event::Delete(ns("a")), now)), ["delete a"]);
        assert!(t.on_event(watcher::Event::Delete(ns("a")), now).is_empty(), "unknown delete is silent");
        assert_eq!(summary(&t.forget_all(now)).len(), 2);
    }

    #[test]
    fn a_rejected_object_is_reported_removed_and_cleared_when_fixed() {
        let mut t = Tracker::new(ObjectKind::Namespace);
        let now = Instant::now();
        t.on_event(watcher::Event::Init, now);
        t.on_event(watcher::Event::InitApply(ns("a")), now);
        t.on_event(watcher::Event::InitDone, now);
        let r = ObjectRef::new(ObjectKind::Namespace, None, "a");
        let diag = Diagnostic { severity: Severity::Error, object: r.to_string(), field: "spec".into(), message: "bad".into(), source: None };
        let bad = t.on_event(watcher::Event::Apply(Decoded::Rejected(r.clone(), diag)), now);
        assert_eq!(summary(&bad), ["diag Namespace a 1", "delete a"]);
        let fixed = t.on_event(watcher::Event::Apply(ns("a")), now);
        assert_eq!(summary(&fixed), ["diag Namespace a 0", "apply a"]);
    }
}
