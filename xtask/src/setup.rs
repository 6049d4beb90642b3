//! `cargo xtask setup`: Debian packages, bpf-linker in `.tools`, bpffs.
//!
//! Idempotent: when everything is present it only looks, which takes well
//! under a second.
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{exec, is_root, step, Workspace};

/// Debian 12 packages the build needs: Debian's rustc with its prebuilt
/// `core` for bpfel-unknown-none, LLVM 22 for bpf-linker, and iproute2 for
/// the demo and the end-to-end tests.
pub const PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "libxml2-dev",
    "iproute2",
];

/// Debian's clippy, built for the same rustc as Debian's `core` for BPF:
/// rustup's clippy cannot read that `core`, so only this one can lint the
/// kernel crate. Installed for `cargo xtask test` only.
pub const LINT_PACKAGES: &[&str] = &["rust-web-clippy"];

/// For the tests (`cargo xtask test` only): `promtool` (Debian package
/// prometheus) checks and unit-tests the alert rules and checks a real
/// scrape of `/metrics`; skopeo reads the image archive back.
pub const TEST_PACKAGES: &[&str] = &["prometheus", "skopeo"];

/// For `cargo xtask bench throughput` only: the firewalls Tollgate is
/// compared with.
pub const BENCH_PACKAGES: &[&str] = &["iptables", "nftables"];

pub const BPF_LINKER_VERSION: &str = "0.13.0";
const BPFFS: &str = "/sys/fs/bpf";

/// What the caller is about to do.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A build: a missing bpffs is only a warning.
    BuildOnly,
    /// Loading programs (setup, demo, bench): bpffs must be mounted.
    All,
    /// `cargo xtask test`: as `All`, plus Debian's clippy for the kernel
    /// crate and promtool for the metrics tests.
    Test,
    /// `cargo xtask bench throughput`: as `All`, plus iptables and nftables.
    Bench,
}

impl Need {
    fn packages(self) -> Vec<&'static str> {
        let mut p = PACKAGES.to_vec();
        if self == Need::Test {
            p.extend_from_slice(LINT_PACKAGES);
            p.extend_from_slice(TEST_PACKAGES);
        }
        if self == Need::Bench {
            p.extend_from_slice(BENCH_PACKAGES);
        }
        p
    }
    fn bpffs_required(self) -> bool {
        self != Need::BuildOnly
    }
}

pub fn run(ws: &Workspace, need: Need) -> Result<()> {
    step("setup", || {
        let missing = step("setup: check Debian packages", || missing_packages(&need.packages()))?;
        let bpffs_ok = bpffs_mounted();
        let root = is_root();

        if !root && (!missing.is_empty() || (!bpffs_ok && need.bpffs_required())) {
            let mut cmds = Vec::new();
            if !missing.is_empty() {
                cmds.push(format!(
                    "sudo apt-get update && sudo apt-get install -y --no-install-recommends {}",
                    missing.join(" ")
                ));
            }
            if !bpffs_ok {
                cmds.push(format!("sudo mount -t bpf bpf {BPFFS}"));
            }
            bail!(
                "setup needs root for what is missing{}{}.\n\
                 Run this, then `cargo xtask setup` again:\n\n    {}\n",
                if missing.is_empty() {
                    String::new()
                } else {
                    format!(" (Debian packages: {})", missing.join(", "))
                },
                if bpffs_ok { "" } else { " (bpffs is not mounted)" },
                cmds.join("\n    ")
            );
        }

        if missing.is_empty() {
            println!("    all {} Debian packages are installed", need.packages().len());
        } else {
            step("setup: install Debian packages", || install_packages(&missing))?;
        }

        step("setup: bpf-linker", || ensure_bpf_linker(ws))?;
        if need == Need::Test {
            // The deployment tests render the chart with it.
            step("setup: helm", || crate::helm::ensure(ws))?;
        }

        if bpffs_ok {
            println!("    bpffs is mounted at {BPFFS}");
        } else if root {
            let r = step("setup: mount bpffs", mount_bpffs);
            match r {
                Ok(()) => {}
                Err(e) if need.bpffs_required() => return Err(e),
                Err(e) => println!(
                    "    warning: {e:#}\n    (the build does not need bpffs; the agent, the demo and the tests do)"
                ),
            }
        } else {
            println!(
                "    warning: bpffs is not mounted at {BPFFS}; the agent, the demo and the tests \
                 need it: run `sudo mount -t bpf bpf {BPFFS}`"
            );
        }
        Ok(())
    })
}

fn missing_packages(packages: &[&str]) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for pkg in packages {
        let out = Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", pkg])
            .output()
            .context(
                "could not run `dpkg-query`: `cargo xtask setup` supports Debian 12; elsewhere, \
                 install the equivalents of the packages listed in xtask/src/setup.rs by hand",
            )?;
        let status = String::from_utf8_lossy(&out.stdout);
        if !(out.status.success() && status.trim_end().ends_with(" installed")) {
            missing.push(pkg.to_string());
        }
    }
    if !missing.is_empty() {
        println!("    missing: {}", missing.join(" "));
    }
    Ok(missing)
}

fn install_packages(missing: &[String]) -> Result<()> {
    exec(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get update",
    )?;
    exec(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install",
    )?;
    let wanted: Vec<&str> = missing.iter().map(String::as_str).collect();
    let still = missing_packages(&wanted)?;
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(" "));
    }
    Ok(())
}

fn bpf_linker_version(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn ensure_bpf_linker(ws: &Workspace) -> Result<()> {
    let bin = ws.bpf_linker();
    match bpf_linker_version(&bin) {
        Some(v) if v.split_whitespace().any(|w| w == BPF_LINKER_VERSION) => {
            println!("    {} ({v})", bin.display());
            return Ok(());
        }
        Some(v) => println!("    {} reports `{v}`; installing {BPF_LINKER_VERSION}", bin.display()),
        None => println!("    {} not found; installing {BPF_LINKER_VERSION} (about 75 s)", bin.display()),
    }
    exec(
        crate::cargo()
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--locked", "--force", "--no-default-features", "--features", "llvm-22"])
            .arg("--root")
            .arg(ws.tools())
            .env("LLVM_PREFIX", "/usr/lib/llvm-22"),
        "cargo install bpf-linker",
    )?;
    match bpf_linker_version(&bin) {
        Some(v) if v.split_whitespace().any(|w| w == BPF_LINKER_VERSION) => Ok(()),
        other => bail!(
            "after `cargo install`, {} --version reports {:?}, expected {BPF_LINKER_VERSION}",
            bin.display(),
            other
        ),
    }
}

/// True when a bpf filesystem is mounted exactly at /sys/fs/bpf.
pub fn bpffs_mounted() -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines().any(|l| {
        // mountinfo: id parent maj:min root mountpoint opts [optional...] - fstype source superopts
        let mut halves = l.splitn(2, " - ");
        let (Some(pre), Some(post)) = (halves.next(), halves.next()) else {
            return false;
        };
        pre.split_whitespace().nth(4) == Some(BPFFS)
            && post.split_whitespace().next() == Some("bpf")
    })
}

fn mount_bpffs() -> Result<()> {
    std::fs::create_dir_all(BPFFS).with_context(|| format!("creating {BPFFS}"))?;
    exec(
        Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]),
        "mounting bpffs",
    )?;
    if !bpffs_mounted() {
        bail!("`mount -t bpf bpf {BPFFS}` succeeded but no bpffs shows in /proc/self/mountinfo");
    }
    Ok(())
}
