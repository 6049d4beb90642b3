//! `cargo xtask demo`: the Istio egress-gateway story in network namespaces.
use std::process::Command;

use anyhow::{bail, Result};

use crate::{build, exec, setup, step, Workspace};

pub fn run(ws: &Workspace, keep: bool, kubernetes: bool) -> Result<()> {
    if !crate::is_root() {
        bail!("the demo creates network namespaces, cgroups and loads eBPF programs: run it as root (`sudo -E cargo xtask demo`)");
    }
    let tollgate = build::run(ws, false, setup::Need::All)?;
    let manifests = ws.root.join("examples").join("istio-egress-gateway");
    if !manifests.is_dir() {
        bail!("the demo manifests are missing: {} is not a directory", manifests.display());
    }
    let control_plane = if kubernetes {
        Some(step("build (control plane)", || crate::cluster::build_binaries(ws))?)
    } else {
        None
    };
    step("demo", || {
        let mut cmd = Command::new(ws.e2e());
        cmd.arg("demo").arg("--tollgate").arg(&tollgate);
        match &control_plane {
            Some(b) => {
                cmd.arg("--kubernetes")
                    .env("TOLLGATE_APISERVER_BIN", &b.apiserver)
                    .env("TOLLGATE_KUBECTL_BIN", &b.kubectl);
            }
            None => {
                cmd.arg("--manifests").arg(&manifests);
            }
        }
        if keep {
            cmd.arg("--keep");
        }
        exec(&mut cmd, "the demo (tollgate-e2e demo)")
    })
}
