//! Which layers enforce each pod, as `status` reports it: the cgroup
//! layer (socket hooks of the pod's cgroup) and the TC layer (the host
//! side of the pod's veth).
use serde::{Deserialize, Serialize};

use crate::desired::Mode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layers {
    /// Both: the usual case.
    #[serde(rename = "cgroup+tc")]
    CgroupAndTc,
    /// The socket hooks only: no veth found for the pod (host network, or
    /// the veth could not be seen); frames below the socket layer are not
    /// judged.
    #[serde(rename = "cgroup")]
    Cgroup,
    /// A sandboxed runtime, enforced at its veth.
    #[serde(rename = "tc")]
    Tc,
    /// A sandboxed runtime whose veth is not found: nothing judges it.
    #[serde(rename = "none")]
    Nothing,
}

impl Layers {
    pub fn as_str(self) -> &'static str {
        match self {
            Layers::CgroupAndTc => "cgroup+tc",
            Layers::Cgroup => "cgroup",
            Layers::Tc => "tc",
            Layers::Nothing => "none",
        }
    }

    /// The layers of a pod; `None` for pods nothing enforces on purpose
    /// (namespace not labelled, egress gateways).
    pub fn of(mode: Mode, gateway: bool, sandboxed: bool, tc_attached: bool) -> Option<Layers> {
        if mode == Mode::Off || gateway {
            return None;
        }
        Some(match (sandboxed, tc_attached) {
            (false, true) => Layers::CgroupAndTc,
            (false, false) => Layers::Cgroup,
            (true, true) => Layers::Tc,
            (true, false) => Layers::Nothing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_of_each_kind_of_pod() {
        assert_eq!(Layers::of(Mode::Off, false, false, true), None);
        assert_eq!(Layers::of(Mode::Enforce, true, false, false), None);
        assert_eq!(Layers::of(Mode::Enforce, false, false, true), Some(Layers::CgroupAndTc));
        assert_eq!(Layers::of(Mode::Audit, false, false, false), Some(Layers::Cgroup));
        assert_eq!(Layers::of(Mode::Enforce, false, true, true), Some(Layers::Tc));
        assert_eq!(Layers::of(Mode::Enforce, false, true, false), Some(Layers::Nothing));
        assert_eq!(serde_json::to_string(&Layers::CgroupAndTc).unwrap(), "\"cgroup+tc\"");
    }
}
