//! `tollgate status`: a checklist of what makes egress enforcement work on
//! this node, each check PASS, WARN or FAIL with a hint, then what the
//! agent applied. Exit 0 when nothing fails (warnings included), 1 when a
//! check fails, 2 when there is nothing to check (no bpffs, or no agent
//! ever ran with this --bpffs/--state-dir).
//!
//! [`observe`] reads the kernel and the agent's files; the checks
//! ([`checks::evaluate`]) judge that, purely.
mod agent_checks;
mod check;
mod checks;
mod clock;
mod datapath_checks;
mod kernel;
mod observed;
mod policy_checks;
mod render;
mod workload_checks;
#[cfg(test)]
mod tests;

use std::{collections::BTreeSet, os::unix::fs::MetadataExt, path::Path};

use serde::Serialize;

use super::{CliError, OutputFormat};
use crate::{
    datapath::{bpffs::is_bpffs, bpffs::PinDir, object::PROGRAMS},
    runtime::state::{read_explain, StatusFile, ANALYSIS_FILE, STATUS_FILE},
};
pub use check::{Check, Outcome};
use observed::{Found, LinkState, MapState, Observed};

#[derive(Serialize)]
struct StatusJson<'a> {
    result: Outcome,
    checks: &'a [Check],
    agent_running: bool,
    datapath_pinned: bool,
    #[serde(flatten)]
    file: Option<&'a StatusFile>,
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

/// Reads the pins (through the kernel) and the agent's files.
fn observe(bpffs: &Path, state_dir: &Path) -> Observed {
    let pins = PinDir::new(bpffs);
    let bpffs_mounted = is_bpffs(bpffs) || bpffs.parent().is_some_and(is_bpffs);
    // Only the cgroup root's programs have a link here: the TC layer's
    // links are per pod (under links/tc), the verify program never attaches.
    let mut links: Vec<LinkState> = PROGRAMS
        .iter()
        .filter(|p| p.attach.at_cgroup_root())
        .map(|p| LinkState { program: p.name.to_owned(), expected: true, found: kernel::link(&pins.link(p.name)) })
        .collect();
    let others: BTreeSet<String> = std::fs::read_dir(pins.links())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "tc" && !PROGRAMS.iter().any(|p| p.name == n.as_str()))
        .collect();
    links.extend(others.into_iter().map(|n| {
        let found = kernel::link(&pins.link(&n));
        LinkState { program: n, expected: false, found }
    }));
    let maps = agent_common::map_names::ALL
        .iter()
        .map(|n| MapState { name: (*n).to_owned(), found: kernel::map(&pins.map(n)) })
        .collect();
    let (status, status_problem) = match StatusFile::read(&state_dir.join(STATUS_FILE)) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let cgroup_root = status
        .as_ref()
        .and_then(|s| std::fs::metadata(&s.cgroup_root).ok().map(|m| (s.cgroup_root.clone(), m.ino())));
    let pid_alive = status.as_ref().is_some_and(|s| agent_alive(s.pid));
    let analysis = std::fs::read_to_string(state_dir.join(ANALYSIS_FILE)).ok().and_then(|t| serde_json::from_str(&t).ok());
    Observed {
        now: clock::now(),
        bpffs: bpffs.to_path_buf(),
        bpffs_mounted,
        links,
        cgroup_root,
        maps,
        status,
        status_problem,
        state_dir: state_dir.to_path_buf(),
        pid_alive,
        explain: read_explain(state_dir).ok(),
        analysis,
    }
}

pub fn run(bpffs: &Path, state_dir: &Path, format: OutputFormat) -> Result<(), CliError> {
    let o = observe(bpffs, state_dir);
    let checks = checks::evaluate(&o);
    let file = o.status.as_ref();
    match format {
        OutputFormat::Json => {
            let s = StatusJson {
                result: check::overall(&checks),
                checks: &checks,
                agent_running: o.pid_alive,
                datapath_pinned: o.maps.iter().all(|m| matches!(m.found, Found::Present(_))),
                file,
            };
            println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
        }
        OutputFormat::Text => {
            print!("{}", render::checklist(&checks, file));
            if let Some(f) = file {
                print!("{}", render::details(f));
            }
        }
    }
    verdict(&o, &checks)
}

/// Exit 2 when there is nothing to check, 1 when a check failed.
fn verdict(o: &Observed, checks: &[Check]) -> Result<(), CliError> {
    let nothing_pinned = o.maps.iter().all(|m| matches!(m.found, Found::Missing));
    if !o.bpffs_mounted || (o.status.is_none() && nothing_pinned) {
        return Err(CliError::Environment(format!(
            "no Tollgate agent has run here with --bpffs {} and --state-dir {}: start `tollgate agent` (or pass the flags the agent uses)",
            o.bpffs.display(),
            o.state_dir.display()
        )));
    }
    let failed: Vec<&str> = checks.iter().filter(|c| c.result == Outcome::Fail).map(|c| c.name).collect();
    if failed.is_empty() {
        return Ok(());
    }
    // Exit 1, as the contract's "something is wrong" (`cilium status` does the same).
    Err(CliError::Input(format!("status: {} check(s) failed: {} (see the hints above)", failed.len(), failed.join(", "))))
}
