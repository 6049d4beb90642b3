//! `cargo xtask helm`: the Helm binary that renders `deploy/helm/tollgate`,
//! built from Helm's Go module at a pinned version and cached under
//! `target/tools/`.
//!
//! Why a binary built from the Go module rather than the PyPI package
//! `helm-python-sdk`: it is the same `helm` an operator runs, it needs only
//! Go (already on the machine, and the Go module proxy), and no Python
//! environment to keep. The first build takes a few minutes; later runs
//! only check the version (milliseconds).
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{exec, step, Workspace};

pub const HELM_MODULE: &str = "helm.sh/helm/v4";
pub const HELM_VERSION: &str = "v4.3.2";

/// `target/tools/helm-<version>/helm`.
pub fn binary(ws: &Workspace) -> PathBuf {
    tools_dir(ws).join(format!("helm-{HELM_VERSION}")).join("helm")
}

/// `target/tools/bin/helm`, a link to the pinned build: what the tests run
/// (tests/src/deploy; `TOLLGATE_HELM` overrides it there).
pub fn link(ws: &Workspace) -> PathBuf {
    tools_dir(ws).join("bin").join("helm")
}

fn tools_dir(ws: &Workspace) -> PathBuf {
    ws.root.join("target").join("tools")
}

/// The version the binary reports, if it runs.
fn reported_version(bin: &Path) -> Option<String> {
    let out = Command::new(bin).args(["version", "--template", "{{.Version}}"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `go` from PATH, else Go's default install folder.
fn go() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("go")).find(|g| g.is_file()))
        .unwrap_or_default();
    on_path.unwrap_or_else(|| PathBuf::from("/usr/local/go/bin/go"))
}

/// Builds the pinned Helm when it is missing or reports another version;
/// returns the path of the link to it.
pub fn ensure(ws: &Workspace) -> Result<PathBuf> {
    let bin = binary(ws);
    match reported_version(&bin) {
        Some(v) if v == HELM_VERSION => println!("    {} ({v})", bin.display()),
        other => {
            match other {
                Some(v) => println!("    {} reports {v}; building {HELM_VERSION}", bin.display()),
                None => println!("    {} not found; building {HELM_MODULE} {HELM_VERSION} (a few minutes, once)", bin.display()),
            }
            step("helm: go install", || build(ws, &bin))?;
        }
    }
    let link = link(ws);
    std::fs::create_dir_all(link.parent().expect("link has a parent"))?;
    let target = Path::new("..").join(format!("helm-{HELM_VERSION}")).join("helm");
    if std::fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link)
            .with_context(|| format!("linking {} to {}", link.display(), target.display()))?;
    }
    Ok(link)
}

fn build(ws: &Workspace, bin: &Path) -> Result<()> {
    let go = go();
    if !go.is_file() {
        bail!(
            "Go is needed to build Helm {HELM_VERSION} and was not found on PATH or at {}; install Go \
             (https://go.dev/doc/install), or put a helm {HELM_VERSION} at {}",
            go.display(),
            bin.display()
        );
    }
    let dir = bin.parent().expect("binary has a parent");
    std::fs::create_dir_all(dir)?;
    exec(
        Command::new(&go)
            .current_dir(&ws.root)
            .args(["install", "-trimpath", "-ldflags"])
            .arg(format!("-X {HELM_MODULE}/internal/version.version={HELM_VERSION}"))
            .arg(format!("{HELM_MODULE}/cmd/helm@{HELM_VERSION}"))
            .env("GOBIN", dir)
            // A newer toolchain is not fetched behind the user's back.
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "-modcacherw")
            .env("CGO_ENABLED", "0"),
        "building Helm (go install)",
    )?;
    match reported_version(bin) {
        Some(v) if v == HELM_VERSION => Ok(()),
        other => bail!("after `go install`, {} reports {other:?}, expected {HELM_VERSION}", bin.display()),
    }
}

/// `cargo xtask helm [ARGS]`: makes sure Helm is built; with ARGS, runs it.
pub fn run(ws: &Workspace, args: &[String]) -> Result<()> {
    let helm = step("helm", || ensure(ws))?;
    if args.is_empty() {
        println!("{}", helm.display());
        return Ok(());
    }
    exec(Command::new(&helm).current_dir(&ws.root).args(args), "helm")
}
