//! Pods whose cgroups were never found, and recent errors.
use super::check::{first, Check};
use super::clock::{age, human};
use crate::desired::Mode;
use crate::runtime::layers::Layers;
use crate::runtime::state::{StatusFile, WorkloadStatus};

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

fn pod_line(w: &WorkloadStatus, now: f64) -> String {
    let runtime = w.runtime_class.as_deref().map(|c| format!(", runtime class {c}")).unwrap_or_default();
    let known = w.since.as_deref().and_then(|t| age(t, now)).map(|a| format!(", known for {}", human(a))).unwrap_or_default();
    format!("{}/{} ({}{runtime}{known})", w.namespace, w.pod, w.mode.as_str())
}

/// Which layers enforce each enforced or audited pod: the cgroup layer
/// (socket hooks) and the TC layer (the pod's veth). A sandboxed pod
/// (gVisor, Kata) without its TC layer is enforced by nothing: fail. A
/// pod with the cgroup layer only (no veth found: host network, or the
/// agent cannot see the pod's network namespace) is enforced for what its
/// sockets send, not for raw frames: warn. Pods get the grace time the
/// cgroup check gives them.
pub fn pod_layers(s: &StatusFile, now: f64) -> Check {
    let settled = |w: &&WorkloadStatus| w.since.as_deref().and_then(|t| age(t, now)).is_none_or(|a| a >= CGROUP_GRACE_SECS);
    let with = |l: Layers| s.workloads.iter().filter(move |w| w.layers == Some(l));
    let count = |l: Layers| with(l).count();
    let nothing: Vec<String> = with(Layers::Nothing).filter(settled).map(|w| pod_line(w, now)).collect();
    let cgroup_only: Vec<String> = with(Layers::Cgroup).filter(settled).map(|w| pod_line(w, now)).collect();
    let sandboxed = count(Layers::Tc);
    let summary = format!(
        "{} pod(s) by cgroup+tc, {} by tc alone (sandboxed runtime), {} by cgroup only, {} by nothing",
        count(Layers::CgroupAndTc),
        sandboxed,
        count(Layers::Cgroup),
        count(Layers::Nothing)
    );
    if !nothing.is_empty() {
        return Check::fail(
            "layers",
            format!("{} pod(s) of a sandboxed runtime have no TC layer: NOT enforced ({summary})", nothing.len()),
            "their packets come from a sandbox, not from sockets of the pod's cgroup, so only the TC layer on the pod's host-side veth can judge them: check the agent's log for \"TC layer\" errors; the agent runs in the node's network namespace (hostNetwork) with CAP_SYS_PTRACE to find the veth",
        )
        .with_items(first(nothing, 10));
    }
    if !cgroup_only.is_empty() {
        return Check::warn(
            "layers",
            format!("{} pod(s) enforced by the cgroup layer only: frames below the socket layer (AF_PACKET, forged sources) are not judged ({summary})", cgroup_only.len()),
            "host-network pods have no veth; for the others the agent must run in the node's network namespace (hostNetwork) with CAP_SYS_PTRACE to find the pod's veth (see the agent's log for \"TC layer\")",
        )
        .with_items(first(cgroup_only, 10));
    }
    let mut c = Check::pass("layers", summary);
    if sandboxed > 0 {
        c = c.with_items(first(with(Layers::Tc).map(|w| format!("{} (tc alone)", pod_line(w, now))), 10));
    }
    c
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
