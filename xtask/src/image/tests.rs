//! The image archive, read back the way a runtime does (index -> manifest ->
//! config -> layer, every digest and size checked) with GNU tar and skopeo
//! rather than this module's own code, then the binary run inside the
//! unpacked root with chroot, so that a missing library fails.
//!
//! Needs root (chroot), GNU tar, skopeo (`cargo xtask setup` installs it for
//! `cargo xtask test`) and target/release/tollgate (`cargo xtask build`).
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use super::oci::{sha256_digest, MEDIA_CONFIG, MEDIA_INDEX, MEDIA_LAYER, MEDIA_MANIFEST};
use super::{write_archive, ImageConfig, ENTRYPOINT};
use crate::Workspace;

fn release_binary() -> PathBuf {
    let bin = Workspace::locate().tollgate();
    assert!(bin.is_file(), "{} is missing: run `cargo xtask build` first", bin.display());
    bin
}

fn config() -> ImageConfig {
    ImageConfig { version: "0.1.0-test".into(), revision: "0123456789abcdef".into() }
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({}): {}{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A blob of the unpacked layout, checked against its descriptor.
fn blob(layout: &Path, desc: &Value, media_type: &str) -> Result<Vec<u8>> {
    ensure!(desc["mediaType"] == media_type, "descriptor {desc} is not a {media_type}");
    let digest = desc["digest"].as_str().context("descriptor without digest")?;
    let hex = digest.strip_prefix("sha256:").context("digest is not sha256")?;
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).with_context(|| format!("blob {digest}"))?;
    ensure!(sha256_digest(&bytes) == digest, "blob {digest} has digest {}", sha256_digest(&bytes));
    ensure!(desc["size"].as_u64() == Some(bytes.len() as u64), "blob {digest}: size {} in descriptor, {} on disk", desc["size"], bytes.len());
    Ok(bytes)
}

struct Unpacked {
    manifest_digest: String,
    config: Value,
    rootfs: PathBuf,
}

/// index.json -> manifest -> config -> layer, then the layer extracted.
fn unpack(archive: &Path, dir: &Path) -> Result<Unpacked> {
    let layout = dir.join("layout");
    std::fs::create_dir_all(&layout)?;
    run(Command::new("tar").arg("-xf").arg(archive).arg("-C").arg(&layout))?;
    let oci_layout: Value = serde_json::from_slice(&std::fs::read(layout.join("oci-layout"))?)?;
    ensure!(oci_layout["imageLayoutVersion"] == "1.0.0", "oci-layout: {oci_layout}");
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    ensure!(index["schemaVersion"] == 2 && index["mediaType"] == MEDIA_INDEX, "index.json: {index}");
    let manifests = index["manifests"].as_array().context("index without manifests")?;
    ensure!(manifests.len() == 1, "expected one manifest, got {}", manifests.len());
    let mdesc = &manifests[0];
    let manifest: Value = serde_json::from_slice(&blob(&layout, mdesc, MEDIA_MANIFEST)?)?;
    let config: Value = serde_json::from_slice(&blob(&layout, &manifest["config"], MEDIA_CONFIG)?)?;
    ensure!(mdesc["platform"]["os"] == config["os"] && mdesc["platform"]["architecture"] == config["architecture"], "platform {mdesc} vs config");
    let layers = manifest["layers"].as_array().context("manifest without layers")?;
    ensure!(layers.len() == 1, "expected one layer, got {}", layers.len());
    let layer = blob(&layout, &layers[0], MEDIA_LAYER)?;
    let layer_path = dir.join("layer.tar.gz");
    std::fs::write(&layer_path, &layer)?;
    // The config names the uncompressed layer's digest.
    let tar_bytes = run(Command::new("sh").arg("-c").arg(format!("gzip -dc {} | sha256sum", layer_path.display())))?;
    let diff_id = format!("sha256:{}", tar_bytes.split_whitespace().next().unwrap_or_default());
    ensure!(config["rootfs"]["diff_ids"] == serde_json::json!([diff_id]), "diff_ids {} vs layer {diff_id}", config["rootfs"]);
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs)?;
    run(Command::new("tar").arg("-xzf").arg(&layer_path).arg("-C").arg(&rootfs).arg("--numeric-owner"))?;
    Ok(Unpacked { manifest_digest: mdesc["digest"].as_str().unwrap_or_default().to_string(), config, rootfs })
}

/// `chroot ROOT ARGS` with an empty environment.
fn in_chroot(rootfs: &Path, args: &[&str]) -> Result<String> {
    run(Command::new("chroot").env_clear().env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").arg(rootfs).args(args))
}

#[test]
fn archive_unpacks_and_tollgate_runs_inside() {
    assert!(crate::is_root(), "this test runs the image's binary with chroot: run it as root");
    let bin = release_binary();
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("tollgate-agent.oci.tar");
    let written = write_archive(&bin, &config(), &archive).unwrap();
    let u = unpack(&archive, &tmp.path().join("a")).unwrap_or_else(|e| panic!("unpacking {}: {e:#}", archive.display()));
    assert_eq!(u.manifest_digest, written.manifest_digest);

    let c = &u.config;
    assert_eq!(c["os"], "linux");
    assert_eq!(c["architecture"], super::oci::oci_arch());
    assert_eq!(c["config"]["Entrypoint"], serde_json::json!([ENTRYPOINT]));
    assert_eq!(c["config"]["Cmd"], serde_json::json!(["agent"]));
    assert_eq!(c["config"]["Labels"]["org.opencontainers.image.version"], "0.1.0-test");
    assert_eq!(c["config"]["Labels"]["org.opencontainers.image.revision"], "0123456789abcdef");

    // The entrypoint, as a runtime would start it: every library it needs is there.
    let version = in_chroot(&u.rootfs, &[ENTRYPOINT, "--version"]).unwrap();
    let host_version = run(Command::new(&bin).arg("--version")).unwrap();
    assert_eq!(version, host_version);
    let help = in_chroot(&u.rootfs, &[ENTRYPOINT, "verify", "--help"]).unwrap();
    assert!(help.contains("--from-pod"), "verify --help inside the image:\n{help}");
    // kubectl finds plugins by name on PATH.
    let via_link = in_chroot(&u.rootfs, &["kubectl-tollgate", "--version"]).unwrap();
    assert_eq!(via_link, host_version);

    // Nothing but the binary, its libraries and the /etc files.
    let libs = super::rootfs::shared_libraries(&bin).unwrap();
    for lib in &libs {
        let inside = u.rootfs.join(lib.strip_prefix("/").unwrap());
        assert!(inside.exists(), "{} (from ldd) is not in the image", lib.display());
    }
    let files = run(Command::new("find").arg(&u.rootfs).args(["-type", "f"])).unwrap();
    let n = files.lines().count();
    assert_eq!(n, 1 + 3 + libs.len(), "files in the image:\n{files}");
}

#[test]
fn same_input_same_digest() {
    let bin = release_binary();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.tar"), tmp.path().join("b.tar"));
    let wa = write_archive(&bin, &config(), &a).unwrap();
    let wb = write_archive(&bin, &config(), &b).unwrap();
    assert_eq!(wa.manifest_digest, wb.manifest_digest);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "two archives of the same input differ");
    let other = ImageConfig { revision: "fedcba9876543210".into(), ..config() };
    let wc = write_archive(&bin, &other, &tmp.path().join("c.tar")).unwrap();
    assert_ne!(wa.manifest_digest, wc.manifest_digest, "the revision label must change the digest");
}

/// skopeo reads the archive as `oci-archive:` (what podman load and
/// `skopeo copy` to a registry use) and copies it, checking every blob.
#[test]
fn skopeo_reads_the_archive() {
    let bin = release_binary();
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("tollgate-agent.oci.tar");
    let written = write_archive(&bin, &config(), &archive).unwrap();
    let skopeo = Command::new("skopeo").arg("--version").output();
    assert!(
        skopeo.map(|o| o.status.success()).unwrap_or(false),
        "skopeo is missing: `cargo xtask setup` installs it for the tests (Debian package skopeo)"
    );
    let src = format!("oci-archive:{}", archive.display());
    let inspect = run(Command::new("skopeo").args(["inspect", "--raw", &src])).unwrap();
    assert_eq!(sha256_digest(inspect.as_bytes()), written.manifest_digest, "skopeo's manifest differs");
    let cfg: Value = serde_json::from_str(&run(Command::new("skopeo").args(["inspect", "--config", &src])).unwrap()).unwrap();
    assert_eq!(cfg["config"]["Entrypoint"], serde_json::json!([ENTRYPOINT]));
    let dest = tmp.path().join("copy");
    run(Command::new("skopeo").args(["copy", "--quiet", &src]).arg(format!("oci:{}:copy", dest.display()))).unwrap();
    assert!(dest.join("index.json").is_file());
}
