//! `cargo xtask image`: the `tollgate-agent` container image as an OCI image
//! layout in a tar archive (`target/tollgate-agent.oci.tar`, the
//! `oci-archive` format that skopeo, podman and `ctr import` load), built
//! here without a container engine, a registry or a base image.
//!
//! One layer: the release binary at /usr/local/bin/tollgate (and the
//! `kubectl-tollgate` link to it), exactly the shared libraries `ldd` names
//! for it, at their paths (symbolic links such as /lib -> usr/lib kept), and
//! a few /etc files. Deterministic: entries sorted, owner root, mtime 0, so
//! the same binary and commit give the same digest.
//!
//! Written in Rust (tar, flate2, sha2, serde_json) rather than with umoci or
//! skopeo: no extra Debian packages for the build, and full control over the
//! bytes (sorted entries, fixed times) that makes the digest repeatable.
mod oci;
mod rootfs;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::{build, setup, step, Workspace};

pub use oci::{write_archive, ImageConfig};

pub const IMAGE_NAME: &str = "tollgate-agent";
pub const ENTRYPOINT: &str = "/usr/local/bin/tollgate";

/// `target/tollgate-agent.oci.tar`.
pub fn archive_path(ws: &Workspace) -> PathBuf {
    ws.root.join("target").join(format!("{IMAGE_NAME}.oci.tar"))
}

/// `cargo xtask image`: build, then write the archive.
pub fn run(ws: &Workspace) -> Result<()> {
    let bin = build::run(ws, false, setup::Need::BuildOnly)?;
    step("image", || {
        let t = Instant::now();
        let out = archive_path(ws);
        let cfg = ImageConfig::for_binary(ws, &bin)?;
        let written = write_archive(&bin, &cfg, &out)?;
        println!("    {}", out.display());
        println!("    image {}:{} ({}), commit {}", IMAGE_NAME, cfg.version, written.manifest_digest, cfg.revision);
        println!(
            "    {} entries in one layer: {} bytes compressed, {} bytes unpacked; archive {} bytes; {:.1}s",
            written.files,
            written.layer_size,
            written.unpacked_size,
            std::fs::metadata(&out)?.len(),
            t.elapsed().as_secs_f64()
        );
        println!(
            "    load it: skopeo copy oci-archive:{} docker://REGISTRY/{IMAGE_NAME}:{}\n             \
             ctr -n k8s.io images import {}    (kind: kind load image-archive ...)",
            out.display(),
            cfg.version,
            out.display()
        );
        Ok(())
    })
}

impl ImageConfig {
    /// Version from `tollgate --version`, revision from git.
    pub fn for_binary(ws: &Workspace, bin: &Path) -> Result<ImageConfig> {
        Ok(ImageConfig { version: binary_version(bin)?, revision: git_revision(&ws.root) })
    }
}

/// "0.1.0" from `tollgate --version` ("tollgate 0.1.0").
fn binary_version(bin: &Path) -> Result<String> {
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_whitespace().collect::<Vec<_>>().as_slice() {
        [_, v] if out.status.success() => Ok(v.to_string()),
        _ => bail!("{} --version printed {text:?}; expected `tollgate VERSION`", bin.display()),
    }
}

/// The commit (with `-dirty` when the work tree has changes), or "unknown"
/// outside a git checkout.
fn git_revision(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(commit) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(s) if !s.is_empty() => format!("{commit}-dirty"),
            _ => commit,
        },
        None => "unknown".to_string(),
    }
}
