//! Pods whose cgroups were never found, and recent errors.
use super::check::{first, Check};
use super::clock::{age, human};
use crate::desired::Mode;
use crate::runtime::state::StatusFile;

/// How long a new pod may go without a cgroup: the kubelet makes it when
/// the pod sandbox starts, a moment after the pod is bound to the node.
pub const CGROUP_GRACE_SECS: f64 = 10.0;

pub fn pod_cgroups(s: &StatusFile, now: f64) -> Check {
    let mut starting = 0;
    let mut lost = Vec::new();
    for w in s.workloads.iter().filter(|w| w.mode != Mode::Off && !w.gateway && w.cgroups == 0) {
        // Without a time, count it as old: better a false alarm than a
        // pod that is not enforced.
        let old = w.since.as_deref().and_then(|t| age(t, now));
        match old {
            Some(a) if a < CGROUP_GRACE_SECS => starting += 1,
            _ => lost.push(format!(
                "{}/{} ({}, uid {}{})",
                w.namespace,
                w.pod,
                w.mode.as_str(),
                w.uid,
                old.map(|a| format!(", known for {}", human(a))).unwrap_or_default()
            )),
        }
    }
    let enforced = s.workloads.iter().filter(|w| w.mode != Mode::Off && !w.gateway).count();
    if !lost.is_empty() {
        return Check::fail(
            "pod-cgroups",
            format!("{} enforced or audited pod(s) have no cgroup on this node after {CGROUP_GRACE_SECS:.0} s: the kernel cannot tell their packets apart", lost.len()),
            format!(
                "the agent looks under --cgroup-root {} for the kubelet's pod<uid> directories (systemd or cgroupfs driver): check that the pods run on this node and that --cgroup-root is the host's cgroup2 mount (/host/sys/fs/cgroup in the DaemonSet)",
                s.cgroup_root
            ),
        )
        .with_items(first(lost, 10));
    }
    let mut detail = format!("every enforced or audited pod has its cgroup ({enforced} pod{})", if enforced == 1 { "" } else { "s" });
    if starting > 0 {
        detail.push_str(&format!("; {starting} just started, cgroup not seen yet"));
    }
    Check::pass("pod-cgroups", detail)
}

pub fn errors(s: &StatusFile) -> Check {
    let rejected: Vec<String> = s
        .diagnostics
        .iter()
        .filter(|d| d.severity == "error")
        .map(|d| format!("{}: field {}: {}", d.object, d.field, d.message))
        .collect();
    if rejected.is_empty() {
        return Check::pass("errors", "no object rejected");
    }
    Check::warn(
        "errors",
        format!("{} object(s) rejected: what they would allow is not allowed (fail closed)", rejected.len()),
        "fix the fields named (the agent also records a Kubernetes Event on each object: `kubectl describe`); `tollgate analyze` lists them all",
    )
    .with_items(first(rejected, 10))
}
