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

/// Whether process `pid` exists: `kill(pid, 0)` succeeds, or fails with
/// EPERM (a root agent seen by another user). Pid 0 or one that does not
/// fit a pid_t would signal a process group: never "running".
fn agent_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    if pid <= 0 {
        return false;
    }
    unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() == libc::EPERM }
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
    let running = agent_alive(file.pid);
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
            let policies: Vec<_> = file
                .workloads
                .iter()
                .filter(|w| !w.sources.network_policies.is_empty() || !w.sources.mesh_egress.is_empty() || w.sources.registry_only.is_some())
                .collect();
            if !policies.is_empty() {
                println!("\npolicies:");
                for w in policies {
                    let mut parts = Vec::new();
                    if !w.sources.network_policies.is_empty() {
                        parts.push(format!("NetworkPolicy {}", w.sources.network_policies.join(", ")));
                    }
                    if !w.sources.mesh_egress.is_empty() {
                        parts.push(format!("OSM Egress {} (ServiceAccount {})", w.sources.mesh_egress.join(", "), w.sources.service_account));
                    }
                    if let Some(sidecar) = &w.sources.registry_only {
                        parts.push(format!("Istio {sidecar}: outboundTrafficPolicy REGISTRY_ONLY"));
                    }
                    println!("  {}/{}: {}", w.namespace, w.pod, parts.join("; "));
                }
            }
            if !file.gateways.is_empty() {
                println!("\negress gateways:");
                for g in &file.gateways {
                    println!("  {g}");
                }
            }
            if !file.external_hosts.is_empty() {
                println!("\nexternal ServiceEntry hosts (reachable from enforced pods only through the egress gateway):");
                for (host, entries) in &file.external_hosts {
                    println!("  {host}: {}", entries.join(", "));
                }
            }
            if let Some(osm) = &file.osm {
                println!(
                    "\nOSM MeshConfig {}: enableEgressPolicy {}, enableEgress (passthrough) {}",
                    osm.mesh_config, osm.enable_egress_policy, osm.enable_egress
                );
            }
            if !file.hosts.is_empty() {
                println!("\nresolved hosts:");
                for h in &file.hosts {
                    let state = match &h.error {
                        Some(e) => format!(" (last lookup failed: {e})"),
                        None => String::new(),
                    };
                    println!("  {}: {}{state}", h.host, if h.addresses.is_empty() { "-".to_owned() } else { h.addresses.join(", ") });
                }
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
