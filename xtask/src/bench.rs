//! `cargo xtask bench <part> [--json FILE] [--quick] [-- ARGS]`.
//!
//! Three parts, each a Markdown table on stdout and, with `--json FILE`,
//! the same figures as JSON:
//! - `datapath`: `tollgate bench-datapath` (BPF_PROG_TEST_RUN) and the
//!   attached programs' run_time_ns / run_cnt during real traffic
//!   (`tollgate-e2e bench prog-stats`);
//! - `throughput`: real traffic through no filter, Tollgate, iptables and
//!   nftables, interleaved (`tollgate-e2e bench throughput`);
//! - `control-plane`: the agent on synthetic clusters of 1k to 150k pods,
//!   on the files source and on a local API server
//!   (`tollgate-e2e bench control-plane`).
//!
//! ARGS after `--` go to the part's command (see `tollgate-e2e bench PART --help`).
mod datapath;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

use crate::{build, cluster, exec, setup, step, Workspace};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Datapath,
    Throughput,
    ControlPlane,
}

pub struct Options {
    pub part: Part,
    pub json: Option<PathBuf>,
    pub quick: bool,
    pub args: Vec<String>,
}

pub fn run(ws: &Workspace, o: Options) -> Result<()> {
    if !crate::is_root() {
        bail!("the benchmarks load eBPF programs and make network namespaces: run them as root (`sudo -E cargo xtask bench ...`)");
    }
    let need = if o.part == Part::Throughput { setup::Need::Bench } else { setup::Need::All };
    let tollgate = build::run(ws, false, need)?;
    let json = o.json.as_deref().map(std::path::absolute).transpose()?;
    match o.part {
        Part::Datapath => datapath::run(ws, &tollgate, o.quick, json.as_deref(), &o.args),
        Part::Throughput => step("bench throughput", || {
            exec(&mut e2e_bench(ws, &tollgate, "throughput", o.quick, json.as_deref(), &o.args), "the throughput bench")
        }),
        Part::ControlPlane => {
            let bins = cluster::build_binaries(ws)?;
            step("bench control-plane", || {
                let mut cmd = e2e_bench(ws, &tollgate, "control-plane", o.quick, json.as_deref(), &o.args);
                cmd.env("TOLLGATE_APISERVER_BIN", &bins.apiserver).env("TOLLGATE_KUBECTL_BIN", &bins.kubectl);
                exec(&mut cmd, "the control-plane bench")
            })
        }
    }
}

/// `tollgate-e2e bench PART --tollgate T [--quick] [--json FILE] ARGS`.
pub fn e2e_bench(ws: &Workspace, tollgate: &Path, part: &str, quick: bool, json: Option<&Path>, args: &[String]) -> Command {
    let mut cmd = Command::new(ws.e2e());
    cmd.args(["bench", part, "--tollgate"]).arg(tollgate);
    if quick {
        cmd.arg("--quick");
    }
    if let Some(j) = json {
        cmd.arg("--json").arg(j);
    }
    cmd.args(args);
    cmd
}
