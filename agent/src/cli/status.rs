//! `tollgate status`: what the agent last applied, and whether the
//! datapath is pinned and the agent alive.
use std::path::Path;

use serde::Serialize;

use super::{CliError, OutputFormat};
use crate::{
    datapath::bpffs::PinDir,
    runtime::state::StatusFile,
};

#[derive(Serialize)]
struct Status<'a> {
    agent_running: bool,
    datapath_pinned: bool,
    #[serde(flatten)]
    file: &'a StatusFile,
}

pub fn run(bpffs: &Path, state_dir: &Path, format: OutputFormat) -> Result<(), CliError> {
    let path = state_dir.join("status.json");
    let pinned = PinDir::new(bpffs).require_pinned().is_ok();
    let file = StatusFile::read(&path).map_err(|e| {
        CliError::Environment(format!(
            "no agent status at {} ({e}); start `tollgate agent` with --bpffs {} (or pass the same --state-dir)",
            path.display(),
            bpffs.display()
        ))
    })?;
    let running = unsafe { libc::kill(file.pid as i32, 0) } == 0;
    let s = Status { agent_running: running, datapath_pinned: pinned, file: &file };
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default()),
        OutputFormat::Text => {
            println!(
                "agent: {} (pid {}), generation {}, updated {}",
                if running { "running" } else { "NOT RUNNING" },
                file.pid,
                file.generation,
                file.updated_at
            );
            println!("datapath: {} at {}", if pinned { "pinned" } else { "NOT PINNED" }, file.bpffs);
            println!("source: {} {}  node: {}", file.source, file.manifests, file.node.as_deref().unwrap_or("(all)"));
            println!("\n{:<16} {:<28} {:<8} {:<8} {:>7}", "NAMESPACE", "POD", "MODE", "GATEWAY", "CGROUPS");
            for w in &file.workloads {
                println!(
                    "{:<16} {:<28} {:<8} {:<8} {:>7}",
                    w.namespace,
                    w.pod,
                    w.mode.as_str(),
                    if w.gateway { "yes" } else { "" },
                    w.cgroups
                );
            }
            if !file.diagnostics.is_empty() {
                println!("\nwarnings:");
                for d in &file.diagnostics {
                    println!("  {} {}: field {}: {}", d.severity, d.object, d.field, d.message);
                }
            }
        }
    }
    Ok(())
}
