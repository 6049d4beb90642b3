//! The pods of this node and how the datapath must treat each.
use std::collections::{BTreeMap, BTreeSet};

use agent_common::{FLAG_GATEWAY, FLAG_SIDECAR_REDIRECT};
use k8s_openapi::api::core::v1::Pod;

use crate::desired::{DesiredWorkload, Mode, Severity};

use super::ips::pod_ips;
use super::mode::mode_of;
use super::objects::{is_finished, name, namespace, pod_key, pod_ref, PodKey};
use super::runtime_class::is_sandboxed;
use super::sidecar::has_redirecting_sidecar;
use super::Ctx;

pub(crate) struct LocalWorkload<'a> {
    pub workload: DesiredWorkload,
    pub pod: &'a Pod,
}

impl LocalWorkload<'_> {
    /// Does the workload get rules of its own?
    pub fn is_policed(&self) -> bool {
        self.workload.mode != Mode::Off && self.workload.flags & FLAG_GATEWAY == 0
    }
}

/// The pod's runtime class when it names a sandboxed runtime.
fn sandboxed_runtime(pod: &Pod, patterns: &[String]) -> Option<String> {
    let class = pod.spec.as_ref()?.runtime_class_name.as_deref()?;
    is_sandboxed(class, patterns).then(|| class.to_owned())
}

fn on_this_node(pod: &Pod, node_name: Option<&str>) -> bool {
    match node_name {
        None => true,
        Some(node) => pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node),
    }
}

/// The running pods of the configured node (all nodes without a node name),
/// sorted by namespace and name. Pods without a UID, and later pods
/// reusing one, are reported and skipped.
pub(crate) fn local_workloads<'a>(
    ctx: &mut Ctx<'a>,
    modes: &BTreeMap<String, Mode>,
    gateways: &BTreeSet<PodKey>,
) -> Vec<LocalWorkload<'a>> {
    let snapshot = ctx.snapshot;
    let node_name = ctx.config.node_name.as_deref();
    let mut pods: Vec<&'a Pod> = snapshot
        .pods
        .iter()
        .filter(|p| on_this_node(p, node_name) && !is_finished(p))
        .collect();
    pods.sort_by_key(|p| pod_key(p));
    let mut seen: BTreeMap<String, PodKey> = BTreeMap::new();
    let mut out = Vec::with_capacity(pods.len());
    for pod in pods {
        let Some(uid) = pod.metadata.uid.clone().filter(|u| !u.is_empty()) else {
            ctx.report(
                Severity::Error,
                &pod_ref(pod),
                "metadata.uid",
                "pod has no UID; it cannot be tied to its cgroup and is not enforced",
            );
            continue;
        };
        if let Some((ns, first)) = seen.get(&uid) {
            let message =
                format!("UID {uid} is also the UID of Pod {ns}/{first}; this pod is ignored");
            ctx.report(Severity::Error, &pod_ref(pod), "metadata.uid", message);
            continue;
        }
        seen.insert(uid.clone(), pod_key(pod));
        // Validate the addresses (reported if bad) even though the
        // workload itself is found by cgroup, not by IP.
        pod_ips(ctx, pod);
        let ns = namespace(&pod.metadata);
        let mode = mode_of(modes, ns);
        // A gateway pod is exempt only where nothing is enforced: in an
        // enforced or audited namespace it is enforced like any other pod.
        let flags = if mode == Mode::Off && gateways.contains(&pod_key(pod)) {
            FLAG_GATEWAY
        } else if has_redirecting_sidecar(pod) {
            FLAG_SIDECAR_REDIRECT
        } else {
            0
        };
        let workload = DesiredWorkload {
            uid,
            namespace: ns.to_owned(),
            name: name(&pod.metadata).to_owned(),
            mode,
            flags,
            policy: 0,
            sandboxed: sandboxed_runtime(pod, &ctx.config.sandboxed_runtime_classes),
        };
        out.push(LocalWorkload { workload, pod });
    }
    out
}
