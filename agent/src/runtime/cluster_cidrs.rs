//! The cluster ranges ("inside the cluster", rule 4): `--cluster-cidr`
//! when given, else learned from the Nodes' `spec.podCIDRs` and the
//! `ServiceCIDR` objects. Pure: the store in, ranges and where they came
//! from out.
use std::collections::BTreeSet;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::model::Snapshot;

/// Where the cluster ranges came from, for `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CidrOrigin {
    /// `--cluster-cidr`.
    Flag,
    /// Nodes' `spec.podCIDRs` and `ServiceCIDR` objects.
    Learned,
    /// Neither: rule 4 allows nothing.
    #[default]
    None,
}

/// The effective cluster ranges and their origin.
pub fn cluster_cidrs(flag: &[IpNet], snapshot: &Snapshot) -> (Vec<IpNet>, CidrOrigin) {
    if !flag.is_empty() {
        return (flag.to_vec(), CidrOrigin::Flag);
    }
    let mut nets: BTreeSet<IpNet> = BTreeSet::new();
    for node in &snapshot.nodes {
        let Some(spec) = &node.spec else { continue };
        let cidrs = spec.pod_cidrs.iter().flatten().chain(spec.pod_cidr.iter());
        nets.extend(cidrs.filter_map(|c| c.parse::<IpNet>().ok()).map(|n| n.trunc()));
    }
    for sc in &snapshot.service_cidrs {
        let Some(spec) = &sc.spec else { continue };
        nets.extend(spec.cidrs.iter().flatten().filter_map(|c| c.parse::<IpNet>().ok()).map(|n| n.trunc()));
    }
    // A node's range inside another (per-node /24s of a /16) adds nothing.
    let all: Vec<IpNet> = nets.iter().copied().collect();
    let kept: Vec<IpNet> = all
        .iter()
        .copied()
        .filter(|n| !all.iter().any(|m| m != n && m.contains(n)))
        .collect();
    if kept.is_empty() {
        (kept, CidrOrigin::None)
    } else {
        (kept, CidrOrigin::Learned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Object;
    use k8s_openapi::api::core::v1::{Node, NodeSpec};
    use k8s_openapi::api::networking::v1::{ServiceCIDR, ServiceCIDRSpec};

    fn node(name: &str, cidrs: &[&str]) -> Object {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        n.spec = Some(NodeSpec { pod_cidrs: Some(cidrs.iter().map(|s| s.to_string()).collect()), ..Default::default() });
        Object::from(n)
    }

    #[test]
    fn flag_wins_else_nodes_and_service_cidrs() {
        let mut s = Snapshot::new();
        assert_eq!(cluster_cidrs(&[], &s), (vec![], CidrOrigin::None));
        s.apply(node("n1", &["10.244.0.0/24", "fd00:10:244::/64"]), None);
        s.apply(node("n2", &["10.244.1.0/24", "not-a-cidr"]), None);
        let mut sc = ServiceCIDR::default();
        sc.metadata.name = Some("kubernetes".into());
        sc.spec = Some(ServiceCIDRSpec { cidrs: Some(vec!["10.96.0.0/16".into()]) });
        s.apply(Object::from(sc), None);
        let (nets, origin) = cluster_cidrs(&[], &s);
        assert_eq!(origin, CidrOrigin::Learned);
        let text: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
        assert_eq!(text, ["10.96.0.0/16", "10.244.0.0/24", "10.244.1.0/24", "fd00:10:244::/64"]);
        let flag: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        assert_eq!(cluster_cidrs(&flag, &s), (flag.clone(), CidrOrigin::Flag));
    }
}
