//! The OCI image layout (image-spec v1.1) in a tar archive: `oci-layout`,
//! `index.json` and content-addressed blobs (gzip layer, config, manifest).
//! Every tar written here has sorted entries, owner root and mtime 0.
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use flate2::{Compression, GzBuilder};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::rootfs::{self, Entry, Tree};
use super::{ENTRYPOINT, IMAGE_NAME};

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The image's creation time: the epoch, so that the digest depends only on content.
const CREATED: &str = "1970-01-01T00:00:00Z";

/// What the config says besides the fixed parts.
#[derive(Debug, Clone)]
pub struct ImageConfig {
    /// The agent's version (tag and label).
    pub version: String,
    /// The git commit it was built from.
    pub revision: String,
}

/// What [`write_archive`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    pub manifest_digest: String,
    pub layer_size: u64,
    pub unpacked_size: u64,
    /// Entries of the layer (folders and links included).
    pub files: usize,
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256_digest(bytes), "size": bytes.len()})
}

/// Host architecture in OCI terms.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h
}

/// The layer as an uncompressed tar.
fn layer_tar(tree: &Tree) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, entry) in tree {
        match entry {
            Entry::Dir { mode } => {
                let mut h = header(tar::EntryType::Directory, *mode, 0);
                b.append_data(&mut h, format!("{path}/"), std::io::empty())?;
            }
            Entry::File { mode, data } => {
                let mut h = header(tar::EntryType::Regular, *mode, data.len() as u64);
                b.append_data(&mut h, path, data.as_slice())?;
            }
            Entry::Symlink { target } => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                b.append_link(&mut h, path, target)?;
            }
        }
    }
    Ok(b.into_inner()?)
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    // No file name, mtime 0: the header is the same every time.
    let mut gz = GzBuilder::new().mtime(0).write(Vec::new(), Compression::default());
    gz.write_all(bytes)?;
    Ok(gz.finish()?)
}

fn config_json(cfg: &ImageConfig, diff_id: &str) -> Value {
    json!({
        "created": CREATED,
        "architecture": oci_arch(),
        "os": "linux",
        "config": {
            "Entrypoint": [ENTRYPOINT],
            "Cmd": ["agent"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "WorkingDir": "/",
            "Labels": {
                "org.opencontainers.image.title": IMAGE_NAME,
                "org.opencontainers.image.description": "Tollgate node agent: eBPF egress enforcement for Kubernetes pods",
                "org.opencontainers.image.version": cfg.version,
                "org.opencontainers.image.revision": cfg.revision,
                "org.opencontainers.image.licenses": "Apache-2.0",
            },
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": CREATED, "created_by": "cargo xtask image"}],
    })
}

/// Writes the archive for `binary` to `out` (through a temporary file
/// beside it, renamed at the end, so a failed run leaves no half archive).
pub fn write_archive(binary: &Path, cfg: &ImageConfig, out: &Path) -> Result<Written> {
    let tree = rootfs::tree(binary)?;
    let files = tree.len();
    let unpacked_size = tree
        .values()
        .map(|e| match e {
            Entry::File { data, .. } => data.len() as u64,
            _ => 0,
        })
        .sum();
    let layer = layer_tar(&tree)?;
    let diff_id = sha256_digest(&layer);
    let layer_gz = gzip(&layer)?;
    let config = serde_json::to_vec(&config_json(cfg, &diff_id))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": descriptor(MEDIA_CONFIG, &config),
        "layers": [descriptor(MEDIA_LAYER, &layer_gz)],
    }))?;
    let mut manifest_desc = descriptor(MEDIA_MANIFEST, &manifest);
    manifest_desc["platform"] = json!({"architecture": oci_arch(), "os": "linux"});
    manifest_desc["annotations"] = json!({
        // The tag, for `oci-archive:FILE:TAG` references (skopeo, podman).
        "org.opencontainers.image.ref.name": cfg.version,
        // The full name `ctr images import` gives the image.
        "io.containerd.image.name": format!("docker.io/library/{IMAGE_NAME}:{}", cfg.version),
    });
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [manifest_desc],
    }))?;

    let mut blobs: Vec<(String, &[u8])> = [&layer_gz[..], &config[..], &manifest[..]]
        .into_iter()
        .map(|b| (sha256_digest(b).replace("sha256:", "blobs/sha256/"), b))
        .collect();
    blobs.sort();
    let mut b = tar::Builder::new(Vec::new());
    let file = |b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]| -> Result<()> {
        let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
        Ok(b.append_data(&mut h, path, data)?)
    };
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        b.append_data(&mut h, dir, std::io::empty())?;
    }
    for (path, data) in &blobs {
        file(&mut b, path, data)?;
    }
    file(&mut b, "index.json", &index)?;
    file(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let archive = b.into_inner()?;

    let dir = out.parent().context("archive path has no folder")?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp-{}", out.file_name().unwrap_or_default().to_string_lossy(), std::process::id()));
    std::fs::write(&tmp, &archive).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
    Ok(Written { manifest_digest: sha256_digest(&manifest), layer_size: layer_gz.len() as u64, unpacked_size, files })
}
