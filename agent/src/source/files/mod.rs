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
    let files = manifest_files(dir)?;
    let mut snapshot = Snapshot::new();
    let mut diags = Vec::new();
    for path in &files {
        let name = path.display().to_string();
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) => {
                diags.push(file_diag(
                    &name,
                    "(file)",
                    format!("cannot read the file: {err}; file skipped"),
                ));
                continue;
            }
        };
        add_file_text(&mut snapshot, &name, &text, &mut diags);
    }
    Ok((snapshot, diags))
}

/// Adds the objects of one manifest file's text (`name` names it in
/// diagnostics). A file with a YAML syntax error adds nothing (a half-read
/// file is not applied) and is reported. The whole reading path of the
/// files source, without the file system: the fuzzer drives it.
pub fn add_file_text(snapshot: &mut Snapshot, name: &str, text: &str, diags: &mut Vec<Diagnostic>) {
    match parse_documents(text) {
        Ok(docs) => {
            debug!(file = %name, documents = docs.len(), "loaded manifest file");
            for doc in docs {
                decode::add_document(snapshot, name, doc, diags);
            }
        }
        Err((index, err)) => diags.push(file_diag(
            name,
            &format!("document {index}"),
            format!("YAML syntax error in document {index}: {err}; file skipped"),
        )),
    }
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
