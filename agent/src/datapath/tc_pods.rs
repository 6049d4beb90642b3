//! Which pods the TC layer enforces, and where their veths are: the
//! agent's side of [`super::tc::TcLayer`], called after every apply and,
//! while some pod's veth is not found yet, about once a second.
use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use agent_common::MODE_OFF;
use tracing::{debug, warn};

use super::{
    reconcile::Registered,
    tc::{TcLayer, TcTarget},
    veth::{self, NodeLinks, PodLink},
    DatapathError,
};
use crate::{cgroups::CgroupIndex, desired::DesiredState};

/// How often pods whose veth is not found are looked for again.
pub const RETRY: Duration = Duration::from_millis(500);

/// One enforced pod: its workload id and its cgroup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcPodInput {
    pub uid: String,
    pub workload: u32,
    pub cgroup_dir: Option<PathBuf>,
    /// A sandboxed runtime: the TC layer is the pod's only enforcement.
    pub alone: bool,
}

/// The enforced (or audited) pods of an apply that were registered.
pub fn inputs(desired: &DesiredState, registered: &BTreeMap<String, Registered>, cgroups: &CgroupIndex) -> Vec<TcPodInput> {
    desired
        .workloads
        .iter()
        .filter(|(_, w)| w.mode.as_u8() != MODE_OFF)
        .filter_map(|(uid, w)| {
            let r = registered.get(uid)?;
            Some(TcPodInput {
                uid: uid.clone(),
                workload: r.id,
                cgroup_dir: cgroups.get(uid).map(|c| c.pod.path.clone()),
                alone: w.sandboxed.is_some(),
            })
        })
        .collect()
}

/// The pods of the last apply and when their veths were last looked for.
#[derive(Default)]
pub struct TcPods {
    pods: Vec<TcPodInput>,
    pending: bool,
    last_search: Option<Instant>,
}

fn interface_exists(ifindex: u32) -> bool {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    !unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr().cast()) }.is_null()
}

impl TcPods {
    /// New pods from an apply: searched and synced now.
    pub fn set(&mut self, pods: Vec<TcPodInput>, layer: &mut TcLayer, ebpf: &mut aya::Ebpf) -> Vec<(String, DatapathError)> {
        self.pods = pods;
        self.sync(layer, ebpf)
    }

    /// Looks again for the veths not found yet (at most every [`RETRY`]).
    pub fn retry(&mut self, layer: &mut TcLayer, ebpf: &mut aya::Ebpf) -> Vec<(String, DatapathError)> {
        if !self.pending || self.last_search.is_some_and(|t| t.elapsed() < RETRY) {
            return Vec::new();
        }
        self.sync(layer, ebpf)
    }

    fn sync(&mut self, layer: &mut TcLayer, ebpf: &mut aya::Ebpf) -> Vec<(String, DatapathError)> {
        self.last_search = Some(Instant::now());
        let mut links: Option<NodeLinks> = None;
        let mut errors = Vec::new();
        let mut targets = Vec::with_capacity(self.pods.len());
        for p in &self.pods {
            // A pod attached to a veth that still exists keeps it.
            let known = layer.attached().get(&p.uid).filter(|a| a.pod.workload == p.workload && interface_exists(a.ifindex));
            let ifindex = match (known, &p.cgroup_dir) {
                (Some(a), _) => Some(a.ifindex),
                (None, None) => None,
                (None, Some(dir)) => {
                    if links.is_none() {
                        match NodeLinks::read() {
                            Ok(l) => links = Some(l),
                            Err(e) => {
                                errors.push((p.uid.clone(), DatapathError::io("listing the node's links", e)));
                                break;
                            }
                        }
                    }
                    let Some(l) = links.as_mut() else { break };
                    match veth::find_pod_link(l, dir) {
                        Ok(PodLink::Veth(i)) => Some(i),
                        Ok(other) => {
                            debug!(uid = %p.uid, found = ?other, "no veth for the pod (yet)");
                            None
                        }
                        Err(e) => {
                            errors.push((p.uid.clone(), DatapathError::io(format!("finding the veth of pod {}", p.uid), e)));
                            None
                        }
                    }
                }
            };
            targets.push(TcTarget { uid: p.uid.clone(), workload: p.workload, ifindex, alone: p.alone });
        }
        self.pending = targets.iter().any(|t| t.ifindex.is_none());
        errors.extend(layer.sync(ebpf, &targets));
        for (uid, e) in &errors {
            warn!(uid = %uid, error = %e, "TC layer: pod not attached; retrying");
        }
        self.pending |= !errors.is_empty();
        errors
    }
}
