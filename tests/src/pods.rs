//! The pods of the stories, as in the example manifests: the
//! istio-egress-gateway ones (every story has them) and the extra pods of the
//! NetworkPolicy and OSM stories (`examples/netpol-stories`,
//! `examples/osm-egress-policy`). [`crate::manifests::check_pods`] makes sure
//! the manifests agree with these.

use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    BestEffort,
    Burstable,
    Guaranteed,
}

#[derive(Clone, Copy, Debug)]
pub struct PodSpec {
    pub namespace: &'static str,
    pub name: &'static str,
    /// Short tag used in netns and interface names.
    pub tag: &'static str,
    pub uid: &'static str,
    pub qos: Qos,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
}

impl PodSpec {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

pub const TEST_EGRESS_SLEEP: PodSpec = PodSpec {
    namespace: "test-egress",
    name: "sleep",
    tag: "tes",
    uid: "6f1c2a3e-0000-4000-8000-000000000010",
    qos: Qos::BestEffort,
    ipv4: Ipv4Addr::new(10, 244, 0, 10),
    ipv6: Ipv6Addr::new(0xfd00, 0x10, 0x244, 0, 0, 0, 0, 0x10),
};

pub const DEFAULT_SLEEP: PodSpec = PodSpec {
    namespace: "default",
    name: "sleep",
    tag: "dfs",
    uid: "6f1c2a3e-0000-4000-8000-000000000011",
    qos: Qos::BestEffort,
    ipv4: Ipv4Addr::new(10, 244, 0, 11),
    ipv6: Ipv6Addr::new(0xfd00, 0x10, 0x244, 0, 0, 0, 0, 0x11),
};

pub const EGRESS_GATEWAY: PodSpec = PodSpec {
    namespace: "istio-system",
    name: "istio-egressgateway",
    tag: "egw",
    uid: "6f1c2a3e-0000-4000-8000-000000000020",
    qos: Qos::Burstable,
    ipv4: Ipv4Addr::new(10, 244, 0, 20),
    ipv6: Ipv6Addr::new(0xfd00, 0x10, 0x244, 0, 0, 0, 0, 0x20),
};

pub const COREDNS: PodSpec = PodSpec {
    namespace: "kube-system",
    name: "coredns",
    tag: "dns",
    uid: "6f1c2a3e-0000-4000-8000-000000000030",
    qos: Qos::Guaranteed,
    ipv4: Ipv4Addr::new(10, 244, 0, 30),
    ipv6: Ipv6Addr::new(0xfd00, 0x10, 0x244, 0, 0, 0, 0, 0x30),
};

pub const ALL_PODS: [PodSpec; 4] = [TEST_EGRESS_SLEEP, DEFAULT_SLEEP, EGRESS_GATEWAY, COREDNS];

/// A pod of the examples whose manifest is not in istio-egress-gateway, at
/// `10.244.0.<last>` and `fd00:10:244::<last>` (the same digits, as for the
/// other pods).
const fn extra_pod(namespace: &'static str, name: &'static str, tag: &'static str, uid: &'static str, last: u8) -> PodSpec {
    PodSpec {
        namespace,
        name,
        tag,
        uid,
        qos: Qos::BestEffort,
        ipv4: Ipv4Addr::new(10, 244, 0, last),
        ipv6: Ipv6Addr::new(0xfd00, 0x10, 0x244, 0, 0, 0, 0, ((last / 10) as u16) << 4 | (last % 10) as u16),
    }
}

// examples/netpol-stories/allow-y-a: x/a is the (enforced) client, y/a and
// y/b serve TCP 80 and 81.
pub const NETPOL_X_A: PodSpec = extra_pod("x", "a", "xa", "6f1c2a3e-0000-4000-8000-000000000041", 41);
pub const NETPOL_Y_A: PodSpec = extra_pod("y", "a", "ya", "6f1c2a3e-0000-4000-8000-000000000042", 42);
pub const NETPOL_Y_B: PodSpec = extra_pod("y", "b", "yb", "6f1c2a3e-0000-4000-8000-000000000043", 43);
pub const NETPOL_PODS: [PodSpec; 3] = [NETPOL_X_A, NETPOL_Y_A, NETPOL_Y_B];

// examples/osm-egress-policy: both enforced, ServiceAccounts `curl` and `other`.
pub const OSM_X_CURL: PodSpec = extra_pod("x", "curl", "xcu", "6f1c2a3e-0000-4000-8000-000000000051", 51);
pub const OSM_X_OTHER: PodSpec = extra_pod("x", "other", "xot", "6f1c2a3e-0000-4000-8000-000000000052", 52);
pub const OSM_PODS: [PodSpec; 2] = [OSM_X_CURL, OSM_X_OTHER];

/// The "internet" host outside the cluster.
pub const EXTERNAL_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const EXTERNAL_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 0x10);
/// A second address of the external host (the ipBlock-except story).
pub const EXTERNAL2_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
pub const EXTERNAL2_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 0x11);
pub const NODE_EXT_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub const NODE_EXT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 1);
pub const BRIDGE_V4: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
pub const BRIDGE_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x244, 0, 0, 0, 0, 1);

pub const EXTERNAL_HOST: &str = "edition.cnn.com";
pub const GATEWAY_PORT: u16 = 8080;

pub const CLUSTER_CIDRS: [&str; 4] =
    ["10.244.0.0/16", "10.96.0.0/12", "fd00:10:244::/56", "fd00:10:96::/108"];
