//! `cargo xtask test`: build, lint both halves, run every test.
//!
//! A failed build stops the run; a failed lint does not, so that one run
//! shows both the lints and the tests. The exit status is non-zero when any
//! phase failed.
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::build::{self, ebpf_env, EBPF_TARGET};
use crate::{cluster, fmt_dur, exec, setup, Workspace};

enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

struct Phase {
    name: &'static str,
    time: Duration,
    outcome: Outcome,
}

pub fn run(ws: &Workspace) -> Result<()> {
    let mut phases: Vec<Phase> = Vec::new();
    let total = Instant::now();

    let mut record = |name: &'static str, f: &mut dyn FnMut() -> Result<Option<String>>| {
        println!("\n######## {name}");
        let t = Instant::now();
        let outcome = match f() {
            Ok(None) => Outcome::Passed,
            Ok(Some(why)) => Outcome::Skipped(why),
            Err(e) => {
                eprintln!("xtask: {name} failed: {e:#}");
                Outcome::Failed(format!("{e:#}"))
            }
        };
        let failed = matches!(outcome, Outcome::Failed(_));
        phases.push(Phase { name, time: t.elapsed(), outcome });
        failed
    };

    let build_failed = record("build", &mut || {
        build::run(ws, false, setup::Need::Test).map(|_| None)
    });

    if !build_failed {
        // The real API server the Kubernetes tests start; without it they fail
        // and say why, so a failed Go build does not stop the other tests.
        let mut bins = None;
        record("build (control plane)", &mut || {
            bins = Some(cluster::build_binaries(ws)?);
            Ok(None)
        });
        record("clippy (workspace)", &mut || clippy_workspace(ws).map(|_| None));
        record("clippy (agent-ebpf)", &mut || clippy_ebpf(ws));
        record("cargo test", &mut || cargo_test(ws, bins.as_ref()).map(|_| None));
    }

    print_summary(&phases, total.elapsed(), build_failed);
    let failed: Vec<&str> = phases
        .iter()
        .filter(|p| matches!(p.outcome, Outcome::Failed(_)))
        .map(|p| p.name)
        .collect();
    if !failed.is_empty() {
        bail!("failed: {}", failed.join(", "));
    }
    Ok(())
}

fn print_summary(phases: &[Phase], total: Duration, build_failed: bool) {
    println!("\n======== cargo xtask test: summary");
    for p in phases {
        let (word, note) = match &p.outcome {
            Outcome::Passed => ("ok", String::new()),
            Outcome::Failed(e) => ("FAILED", first_line(e)),
            Outcome::Skipped(why) => ("skipped", why.clone()),
        };
        println!("  {:<22} {:<8} {:>8}  {}", p.name, word, fmt_dur(p.time), note);
    }
    if build_failed {
        println!("  (clippy and tests did not run: the build failed)");
    }
    println!("  {:<22} {:<8} {:>8}", "total", "", fmt_dur(total));
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// rustup's minimal profile has no clippy; add it when rustup is there.
fn ensure_host_clippy() -> Result<()> {
    let ok = crate::cargo()
        .args(["clippy", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        return Ok(());
    }
    println!("    `cargo clippy` is not available; adding it with rustup");
    exec(
        Command::new("rustup").args(["component", "add", "clippy"]),
        "rustup component add clippy (install clippy for your toolchain by hand if rustup is not used)",
    )
}

fn clippy_workspace(ws: &Workspace) -> Result<()> {
    ensure_host_clippy()?;
    exec(
        crate::cargo()
            .current_dir(&ws.root)
            .args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])
            .env("TOLLGATE_EBPF_OBJ", ws.ebpf_obj()),
        "clippy on the workspace",
    )
}

/// The kernel crate needs a clippy built for Debian's rustc, whose `core`
/// for bpfel-unknown-none it links against: rustup's clippy-driver rejects
/// that `core` (E0514). Debian's `rust-web-clippy` provides a matching one;
/// setup installs it for `cargo xtask test`.
fn clippy_ebpf(ws: &Workspace) -> Result<Option<String>> {
    const CARGO_CLIPPY: &str = "/usr/bin/cargo-clippy";
    const DRIVER: &str = "/usr/bin/clippy-driver";
    if !std::path::Path::new(CARGO_CLIPPY).is_file() || !std::path::Path::new(DRIVER).is_file() {
        let why = format!(
            "{CARGO_CLIPPY} (Debian package rust-web-clippy) is missing; rustup's clippy cannot \
             lint for {EBPF_TARGET} with Debian's core"
        );
        println!("    note: skipping: {why}");
        return Ok(Some(why));
    }
    // Same environment as the build. Debian's cargo-clippy runs the cargo
    // named by $CARGO (the one running this xtask, inherited) with its own
    // clippy-driver as the workspace wrapper.
    let mut cmd = Command::new(CARGO_CLIPPY);
    ebpf_env(ws, &mut cmd);
    cmd.args(["clippy", "--release", "--target", EBPF_TARGET, "--", "-D", "warnings"]);
    exec(&mut cmd, "clippy on the kernel crate (agent-ebpf)").map(|_| None)
}

fn cargo_test(ws: &Workspace, control_plane: Option<&cluster::Binaries>) -> Result<()> {
    if !crate::is_root() {
        println!("    note: not root: the end-to-end tests (tests/) need root and will fail or skip");
    }
    let mut cmd = crate::cargo();
    cmd.current_dir(&ws.root)
        .args(["test", "--workspace", "--release", "--no-fail-fast"])
        .env("TOLLGATE_EBPF_OBJ", ws.ebpf_obj())
        .env("TOLLGATE_BIN", ws.tollgate());
    if let Some(b) = control_plane {
        cmd.env("TOLLGATE_APISERVER_BIN", &b.apiserver)
            .env("TOLLGATE_KUBECTL_BIN", &b.kubectl);
    }
    exec(&mut cmd, "cargo test --workspace --release --no-fail-fast")
}
