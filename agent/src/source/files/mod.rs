//! The `files` source: Kubernetes YAML manifests in a folder, in place of an
//! API server.
//!
//! Every `*.yaml` and `*.yml` file under the folder (recursively, in sorted
//! path order) is read as a multi-document stream. Hidden entries (names
//! starting with `.`) are skipped, which keeps the `..data` links of a
//! mounted ConfigMap from loading every file twice; symbolic links to files
//! are followed, links to folders are not (no cycles).
pub mod decode;
pub mod watch;

use std::collections::BTreeMap;
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::Deserialize;
use thiserror::Error;
use tracing::debug;

use crate::desired::{Diagnostic, Severity};
use crate::model::Snapshot;
use decode::Decoded;

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("cannot read manifests folder {path}: {source}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("manifests path {0} is not a folder")]
    NotADir(PathBuf),
}

/// Load every manifest under `dir`. Files that cannot be read or parsed are
/// reported as diagnostics and skipped as a whole (a half-read file is not
/// applied); the other files still apply. Fails only when `dir` itself
/// cannot be read.
pub fn load_dir(dir: &Path) -> Result<(Snapshot, Vec<Diagnostic>), SourceError> {
    load_dir_cached(dir, &mut FileCache::default())
}

/// What the files of a folder gave when last read, kept while each file's
/// size and modification time stay the same (as [`fingerprint`] tells
/// changes): a change of one file reads and decodes that file only.
#[derive(Debug, Default)]
pub struct FileCache {
    files: BTreeMap<PathBuf, FileRead>,
    /// Files read and decoded by the last [`load_dir_cached`].
    decoded_last: usize,
}

impl FileCache {
    /// How many files the last [`load_dir_cached`] read and decoded (the
    /// others came from the cache).
    pub fn decoded_last(&self) -> usize {
        self.decoded_last
    }
}

/// One file as read: its objects and the problems found decoding it.
#[derive(Debug)]
struct FileRead {
    /// Size and modification time before it was read; `None` when they
    /// could not be read (the file is read again every time).
    stamp: Option<(u64, u128)>,
    decoded: Decoded,
    diags: Vec<Diagnostic>,
}

/// [`load_dir`], reading again only the files whose size or modification
/// time changed since `cache` saw them (files gone are forgotten).
pub fn load_dir_cached(dir: &Path, cache: &mut FileCache) -> Result<(Snapshot, Vec<Diagnostic>), SourceError> {
    let files = manifest_files(dir)?;
    let mut snapshot = Snapshot::new();
    let mut diags = Vec::new();
    let mut kept = BTreeMap::new();
    cache.decoded_last = 0;
    for path in files {
        let name = path.display().to_string();
        let stamp = stamp(&path);
        let read = match cache.files.remove(&path) {
            Some(read) if stamp.is_some() && read.stamp == stamp => read,
            _ => {
                cache.decoded_last += 1;
                read_file(&path, &name, stamp)
            }
        };
        read.decoded.replay(&mut snapshot, &name, &read.diags, &mut diags);
        kept.insert(path, read);
    }
    cache.files = kept;
    Ok((snapshot, diags))
}

/// Size and modification time (ns since the epoch) of a file.
fn stamp(path: &Path) -> Option<(u64, u128)> {
    let meta = fs::metadata(path).ok()?;
    let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?.as_nanos();
    Some((meta.len(), mtime))
}

/// Read and decode one manifest file.
fn read_file(path: &Path, name: &str, stamp: Option<(u64, u128)>) -> FileRead {
    let mut read = FileRead { stamp, decoded: Decoded::default(), diags: Vec::new() };
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            read.diags.push(file_diag(name, "(file)", format!("cannot read the file: {err}; file skipped")));
            return read;
        }
    };
    decode_text(&mut read, name, &text);
    read
}

/// Decode one file's text into `read`. A file with a YAML syntax error
/// adds nothing (a half-read file is not applied) and is reported.
fn decode_text(read: &mut FileRead, name: &str, text: &str) {
    match parse_documents(text) {
        Ok(docs) => {
            debug!(file = %name, documents = docs.len(), "loaded manifest file");
            for doc in docs {
                read.decoded.add_document(name, doc, &mut read.diags);
            }
        }
        Err((index, err)) => read.diags.push(file_diag(
            name,
            &format!("document {index}"),
            format!("YAML syntax error in document {index}: {err}; file skipped"),
        )),
    }
}

/// Adds the objects of one manifest file's text to `snapshot` (`name`
/// names it in diagnostics), by the same path as a file read from the
/// folder, without the file system: the fuzzer drives it.
pub fn add_file_text(snapshot: &mut Snapshot, name: &str, text: &str, diags: &mut Vec<Diagnostic>) {
    let mut read = FileRead { stamp: None, decoded: Decoded::default(), diags: Vec::new() };
    decode_text(&mut read, name, text);
    read.decoded.replay(snapshot, name, &read.diags, diags);
}

/// A hash of the relative paths, sizes and modification times of the
/// manifest files under `dir`: it changes when a file is added, removed or
/// written, so a poller can tell when to reload.
pub fn fingerprint(dir: &Path) -> Result<u64, SourceError> {
    let files = manifest_files(dir)?;
    let mut hasher = DefaultHasher::new();
    files.len().hash(&mut hasher);
    for path in &files {
        path.strip_prefix(dir).unwrap_or(path).hash(&mut hasher);
        match fs::metadata(path) {
            Ok(meta) => {
                meta.len().hash(&mut hasher);
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                mtime.hash(&mut hasher);
            }
            Err(err) => err.kind().hash(&mut hasher),
        }
    }
    Ok(hasher.finish())
}

/// Parse a multi-document YAML stream. Empty documents are dropped. On a
/// syntax error, returns the 0-based index of the failing document.
fn parse_documents(text: &str) -> Result<Vec<serde_yaml::Value>, (usize, serde_yaml::Error)> {
    let mut docs = Vec::new();
    for (index, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        match serde_yaml::Value::deserialize(de) {
            Ok(serde_yaml::Value::Null) => {}
            Ok(doc) => docs.push(doc),
            Err(err) => return Err((index, err)),
        }
    }
    Ok(docs)
}

fn file_diag(file: &str, field: &str, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        object: format!("file {file}"),
        field: field.to_owned(),
        message,
        source: Some(file.to_owned()),
    }
}

/// The manifest files under `dir`, sorted.
fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let meta = fs::metadata(dir).map_err(|source| SourceError::ReadDir {
        path: dir.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(SourceError::NotADir(dir.to_owned()));
    }
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(folder) = pending.pop() {
        let entries = match fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(source) if folder == dir => {
                return Err(SourceError::ReadDir {
                    path: folder,
                    source,
                })
            }
            Err(err) => {
                debug!(folder = %folder.display(), error = %err, "skipping unreadable folder");
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_dir() {
                pending.push(path);
            } else if is_manifest(&path) && (file_type.is_file() || path.is_file()) {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n";

    #[test]
    fn loads_yaml_and_yml_recursively_multi_document() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("sub/deeper")).expect("mkdir");
        fs::write(
            dir.path().join("one.yaml"),
            format!("---\n{NS}---\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: b}}\n"),
        )
        .expect("write");
        fs::write(
            dir.path().join("sub/deeper/two.yml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a}\n",
        )
        .expect("write");
        fs::write(
            dir.path().join("sub/ignored.txt"),
            NS.replace("name: a", "name: c"),
        )
        .expect("write");
        fs::create_dir_all(dir.path().join("..data")).expect("mkdir");
        fs::write(
            dir.path().join("..data/hidden.yaml"),
            NS.replace("name: a", "name: d"),
        )
        .expect("write");
        let (snap, diags) = load_dir(dir.path()).expect("loads");
        assert!(diags.is_empty(), "{diags:?}");
        let names: Vec<_> = snap
            .namespaces
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(snap.pods.len(), 1);
    }

    #[test]
    fn syntax_error_skips_that_file_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(
            dir.path().join("bad.yaml"),
            format!("{NS}---\nmetadata: {{name: [unclosed\n"),
        )
        .expect("write");
        fs::write(
            dir.path().join("good.yaml"),
            NS.replace("name: a", "name: g"),
        )
        .expect("write");
        let (snap, diags) = load_dir(dir.path()).expect("loads");
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(diags[0].object.contains("bad.yaml"));
        assert_eq!(diags[0].field, "document 1");
        let names: Vec<_> = snap
            .namespaces
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        assert_eq!(names, ["g"]);
    }

    #[test]
    fn only_changed_files_are_read_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pod = |name: &str, ns: &str| format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\n---\n");
        fs::write(dir.path().join("a.yaml"), format!("{NS}---\n{}{}", pod("p", "a"), pod("", "a"))).expect("write");
        fs::write(dir.path().join("b.yaml"), format!("{}kind: Pod\napiVersion: v2\n", pod("p", "a"))).expect("write");
        fs::write(dir.path().join("c.yaml"), "metadata: {name: [unclosed\n").expect("write");
        let mut cache = FileCache::default();
        let same = |cache: &mut FileCache| {
            let (cached, cached_diags) = load_dir_cached(dir.path(), cache).expect("loads");
            let (fresh, fresh_diags) = load_dir(dir.path()).expect("loads");
            assert_eq!(cached.objects(), fresh.objects());
            assert_eq!(cached_diags, fresh_diags);
            assert!(!fresh_diags.is_empty(), "the files have problems to report");
        };
        same(&mut cache);
        assert_eq!(cache.decoded_last(), 3);
        same(&mut cache);
        assert_eq!(cache.decoded_last(), 0, "nothing changed: nothing read");
        fs::write(dir.path().join("b.yaml"), pod("q", "a")).expect("write");
        fs::remove_file(dir.path().join("c.yaml")).expect("rm");
        same(&mut cache);
        assert_eq!(cache.decoded_last(), 1, "only b.yaml read again");
    }

    #[test]
    fn missing_dir_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        assert!(matches!(
            load_dir(&missing),
            Err(SourceError::ReadDir { .. })
        ));
        assert!(fingerprint(&missing).is_err());
        let file = dir.path().join("f.yaml");
        fs::write(&file, NS).expect("write");
        assert!(matches!(load_dir(&file), Err(SourceError::NotADir(_))));
    }

    #[test]
    fn fingerprint_changes_when_files_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = fingerprint(dir.path()).expect("fingerprint");
        fs::write(dir.path().join("a.yaml"), NS).expect("write");
        let second = fingerprint(dir.path()).expect("fingerprint");
        assert_ne!(first, second);
        assert_eq!(second, fingerprint(dir.path()).expect("fingerprint"));
        fs::write(dir.path().join("a.yaml"), format!("{NS}# longer\n")).expect("write");
        assert_ne!(second, fingerprint(dir.path()).expect("fingerprint"));
        fs::write(dir.path().join("notes.txt"), "x").expect("write");
        let third = fingerprint(dir.path()).expect("fingerprint");
        fs::write(dir.path().join("notes.txt"), "xy").expect("write");
        assert_eq!(third, fingerprint(dir.path()).expect("fingerprint"));
    }
}
