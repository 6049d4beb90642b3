//! `cargo xtask build`: the kernel object, then the agent with it embedded.
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{exec, setup, step, Workspace};

pub const EBPF_TARGET: &str = "bpfel-unknown-none";

/// `cargo` in agent-ebpf/, with Debian's rustc (which ships the prebuilt
/// `core` for bpfel-unknown-none) and bpf-linker from `.tools`.
pub fn ebpf_cargo(ws: &Workspace) -> Command {
    let mut cmd = crate::cargo();
    ebpf_env(ws, &mut cmd);
    cmd
}

/// The working directory and environment of every cargo run on agent-ebpf/.
pub fn ebpf_env<'a>(ws: &Workspace, cmd: &'a mut Command) -> &'a mut Command {
    let mut path = OsString::from(ws.tools().join("bin"));
    if let Some(p) = std::env::var_os("PATH") {
        path.push(":");
        path.push(p);
    }
    cmd.current_dir(ws.ebpf_crate())
        .env("RUSTC", "/usr/bin/rustc")
        .env("RUSTC_BOOTSTRAP", "1")
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", ws.ebpf_target_dir())
        .env("CARGO_ENCODED_RUSTFLAGS", "-Cdebuginfo=2\x1f-Clink-arg=--btf")
        // Wrappers set for the host toolchain (sccache, clippy) do not apply here.
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTFLAGS")
}

/// Builds everything; returns the path of the `tollgate` binary.
/// `need` says what setup must make sure of (see [`setup::Need`]).
pub fn run(ws: &Workspace, debug: bool, need: setup::Need) -> Result<PathBuf> {
    step("build", || {
        setup::run(ws, need)?;
        let obj = step("build: kernel programs (agent-ebpf)", || build_ebpf(ws))?;
        step(
            &format!(
                "build: agent and e2e harness ({})",
                if debug { "dev profile" } else { "release" }
            ),
            || build_user(ws, debug, &obj),
        )?;
        let bin = ws.bin_dir(debug).join("tollgate");
        if !bin.is_file() {
            bail!("the build finished but {} is not there", bin.display());
        }
        println!("    binary: {}", bin.display());
        Ok(bin)
    })
}

fn build_ebpf(ws: &Workspace) -> Result<PathBuf> {
    exec(
        ebpf_cargo(ws).args(["build", "--release", "--target", EBPF_TARGET]),
        "building the kernel programs (agent-ebpf/, see the compiler output above)",
    )?;
    let built = ws
        .ebpf_target_dir()
        .join(EBPF_TARGET)
        .join("release")
        .join("tollgate");
    if !built.is_file() {
        bail!(
            "cargo built agent-ebpf but {} is missing (is the [[bin]] still named `tollgate`?)",
            built.display()
        );
    }
    let obj = ws.ebpf_obj();
    std::fs::create_dir_all(obj.parent().unwrap())?;
    std::fs::copy(&built, &obj)
        .with_context(|| format!("copying {} to {}", built.display(), obj.display()))?;
    let len = std::fs::metadata(&obj)?.len();
    println!("    kernel object: {} ({len} bytes)", obj.display());
    Ok(obj)
}

fn build_user(ws: &Workspace, debug: bool, obj: &std::path::Path) -> Result<()> {
    let mut cmd = crate::cargo();
    cmd.current_dir(&ws.root).arg("build");
    if !debug {
        cmd.arg("--release");
    }
    cmd.args(["-p", "agent", "-p", "tollgate-e2e"])
        .env("TOLLGATE_EBPF_OBJ", obj);
    exec(&mut cmd, "building the agent (cargo build -p agent -p tollgate-e2e)")
}
