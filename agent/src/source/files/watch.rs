//! The files source as a task: reads the folder, sends every object as an
//! apply, then, whenever the folder changes, the difference (applies for
//! new or changed objects, deletes for objects gone) — the same typed
//! events the Kubernetes source sends.
//!
//! A change is read once the folder has been stable for one poll interval,
//! so half-written files are not applied. A folder that cannot be read
//! keeps the last good state.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{fingerprint, load_dir_cached, FileCache, SourceError};
use crate::model::{Object, ObjectKind, ObjectRef};
use crate::source::{ObjectChange, SourceEvent, SourceSender};

/// The diagnostics scope of the files source.
pub const SCOPE: &str = "files";

/// What the source last sent, per object: the object and its file.
type Sent = BTreeMap<ObjectRef, (Object, Option<String>)>;

/// The changes that turn `old` into `new`.
pub fn diff(old: &Sent, new: &Sent) -> Vec<ObjectChange> {
    let mut changes = Vec::new();
    for r in old.keys().filter(|r| !new.contains_key(r)) {
        changes.push(ObjectChange::Delete(r.clone()));
    }
    for (r, (object, source)) in new {
        if old.get(r) != Some(&(object.clone(), source.clone())) {
            changes.push(ObjectChange::Apply { object: object.clone(), source: source.clone() });
        }
    }
    changes
}

/// Reads the folder into what the source sends (only the files that
/// changed since `cache` saw them are read and decoded again).
fn read(dir: &std::path::Path, cache: &mut FileCache) -> Result<(Sent, Vec<crate::desired::Diagnostic>), SourceError> {
    let (snapshot, diags) = load_dir_cached(dir, cache)?;
    let sent = snapshot
        .objects()
        .into_iter()
        .map(|(r, object, source)| (r, (object, source)))
        .collect();
    Ok((sent, diags))
}

/// Reads the folder once and sends it all, marking every kind synced.
/// Fails when the folder itself cannot be read, so that an agent never
/// starts from nothing because of a typo in `--manifests`.
pub fn initial(dir: &std::path::Path, tx: &SourceSender) -> Result<FilesState, SourceError> {
    let fp = fingerprint(dir)?;
    let mut cache = FileCache::default();
    let (sent, diags) = read(dir, &mut cache)?;
    let changes = diff(&Sent::new(), &sent);
    let _ = tx.send(SourceEvent::Changes { changes, received: Instant::now() });
    let _ = tx.send(SourceEvent::Diagnostics { scope: SCOPE.to_owned(), diags });
    for kind in ObjectKind::ALL {
        let _ = tx.send(SourceEvent::Synced { kind });
    }
    Ok(FilesState { dir: dir.to_owned(), sent, fingerprint: fp, pending: None, cache })
}

/// What the watcher remembers between polls.
pub struct FilesState {
    dir: PathBuf,
    sent: Sent,
    fingerprint: u64,
    pending: Option<u64>,
    cache: FileCache,
}

impl FilesState {
    /// One poll: sends the difference once a change has been stable for
    /// one interval. Returns whether something was sent.
    pub fn poll(&mut self, tx: &SourceSender) -> bool {
        let fp = match fingerprint(&self.dir) {
            Ok(fp) => fp,
            Err(e) => {
                warn!(error = %e, "cannot read the manifests folder; keeping the last good state");
                return false;
            }
        };
        if fp == self.fingerprint {
            self.pending = None;
            return false;
        }
        if self.pending != Some(fp) {
            self.pending = Some(fp);
            return false;
        }
        self.pending = None;
        match read(&self.dir, &mut self.cache) {
            Ok((sent, diags)) => {
                let received = Instant::now();
                let changes = diff(&self.sent, &sent);
                info!(changes = changes.len(), "manifests changed");
                self.sent = sent;
                self.fingerprint = fp;
                let _ = tx.send(SourceEvent::Changes { changes, received });
                let _ = tx.send(SourceEvent::Diagnostics { scope: SCOPE.to_owned(), diags });
                true
            }
            Err(e) => {
                warn!(error = %e, "cannot read the manifests folder; keeping the last good state");
                false
            }
        }
    }
}

/// Polls the folder every `interval` until the receiver is gone.
pub async fn run(mut state: FilesState, interval: Duration, tx: SourceSender) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if tx.is_closed() {
            return;
        }
        let tx2 = tx.clone();
        // Reading a large folder is blocking work.
        state = match tokio::task::spawn_blocking(move || {
            state.poll(&tx2);
            state
        })
        .await
        {
            Ok(state) => state,
            Err(e) => {
                warn!(error = %e, "manifests reader failed; stopping the files source");
                return;
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn drain(rx: &mut tokio::sync::mpsc::UnboundedReceiver<SourceEvent>) -> Vec<SourceEvent> {
        let mut out = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            out.push(ev);
        }
        out
    }

    fn changes(events: &[SourceEvent]) -> Vec<String> {
        let mut out = Vec::new();
        for ev in events {
            if let SourceEvent::Changes { changes, .. } = ev {
                for c in changes {
                    out.push(match c {
                        ObjectChange::Apply { object, .. } => format!("apply {}", object.object_ref()),
                        ObjectChange::Delete(r) => format!("delete {r}"),
                    });
                }
            }
        }
        out
    }

    #[test]
    fn sends_everything_then_only_the_difference() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("a.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n").expect("write");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut state = initial(dir.path(), &tx).expect("initial");
        let first = drain(&mut rx);
        assert_eq!(changes(&first), ["apply Namespace a", "apply Namespace b"]);
        assert_eq!(first.iter().filter(|e| matches!(e, SourceEvent::Synced { .. })).count(), ObjectKind::ALL.len());
        // Nothing changed: nothing sent.
        assert!(!state.poll(&tx));
        fs::write(dir.path().join("a.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {x: y}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: c}\n").expect("write");
        // The first poll sees the change, the second (stable) sends it.
        assert!(!state.poll(&tx));
        assert!(state.poll(&tx));
        let second = drain(&mut rx);
        assert_eq!(changes(&second), ["delete Namespace b", "apply Namespace a", "apply Namespace c"]);
        assert!(second.iter().any(|e| matches!(e, SourceEvent::Diagnostics { scope, diags } if scope == SCOPE && diags.is_empty())));
    }

    #[test]
    fn unreadable_folder_is_an_error_at_start_and_kept_later() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        assert!(initial(&dir.path().join("missing"), &tx).is_err());
        let sub = dir.path().join("m");
        fs::create_dir(&sub).expect("mkdir");
        fs::write(sub.join("a.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n").expect("write");
        let mut state = initial(&sub, &tx).expect("initial");
        drain(&mut rx);
        fs::remove_dir_all(&sub).expect("rm");
        assert!(!state.poll(&tx));
        assert!(!state.poll(&tx));
        assert!(changes(&drain(&mut rx)).is_empty(), "a vanished folder deletes nothing");
    }
}
