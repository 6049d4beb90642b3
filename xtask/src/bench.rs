//! `cargo xtask bench`: the data-path benchmark, `tollgate bench-datapath`.
use std::process::Command;

use anyhow::{bail, Result};

use crate::{build, exec, setup, step, Workspace};

/// `--quick`: a smoke-sized run of `tollgate bench-datapath`.
const QUICK_ARGS: &[&str] = &["--prefixes", "10000", "--repeat", "100000"];

pub fn run(ws: &Workspace, quick: bool, extra: &[String]) -> Result<()> {
    if !crate::is_root() {
        bail!("the benchmark loads eBPF programs: run it as root (`sudo -E cargo xtask bench`)");
    }
    let tollgate = build::run(ws, false, setup::Need::All)?;
    step("bench", || {
        let mut cmd = Command::new(&tollgate);
        cmd.arg("bench-datapath");
        if quick {
            // A tenth of the defaults (100 000 prefixes, 1 000 000 runs).
            cmd.args(QUICK_ARGS);
        }
        cmd.args(extra);
        exec(&mut cmd, "the benchmark (tollgate bench-datapath)")
    })
}
