//! `wide-mesh-internal` (warning): a `MESH_INTERNAL` ServiceEntry address
//! wider than /16 (IPv4) or /48 (IPv6), or the default route itself. Those
//! addresses count as inside the cluster, so enforced pods without an
//! egress NetworkPolicy reach all of them directly.
use ipnet::IpNet;

use crate::compiler::objects::object_ref;
use crate::compiler::service_entries::parse_net;
use crate::model::ObjectKind;

use super::codes::WIDE_MESH_INTERNAL;
use super::nets::is_covered;
use super::{Finding, FindingSeverity, Input};

/// The widest prefixes not reported, per family.
pub const MAX_V4_PREFIX: u8 = 16;
pub const MAX_V6_PREFIX: u8 = 48;

/// Is `net` wider than the limit of its family?
pub fn is_wide(net: &IpNet) -> bool {
    match net {
        IpNet::V4(n) => n.prefix_len() < MAX_V4_PREFIX,
        IpNet::V6(n) => n.prefix_len() < MAX_V6_PREFIX,
    }
}

pub(crate) fn check(input: &Input<'_>, out: &mut Vec<Finding>) {
    let cluster: Vec<IpNet> = input.config.cluster_cidrs.iter().map(IpNet::trunc).collect();
    for se in input.snapshot.service_entries.iter().filter(|se| se.spec.is_mesh_internal()) {
        let object = object_ref(ObjectKind::ServiceEntry, &se.metadata).to_string();
        for (i, text) in se.spec.addresses.iter().enumerate() {
            // Bad addresses are the compiler's to report; ranges already
            // inside the cluster CIDRs add nothing.
            let Some(net) = parse_net(text).map(|n| n.trunc()) else { continue };
            if !is_wide(&net) || is_covered(net, &cluster) {
                continue;
            }
            let what = if net.prefix_len() == 0 {
                format!("{net} is the default route")
            } else {
                format!("{net} is wider than /{}", if net.addr().is_ipv4() { MAX_V4_PREFIX } else { MAX_V6_PREFIX })
            };
            out.push(Finding::new(
                FindingSeverity::Warning,
                WIDE_MESH_INTERNAL,
                object.clone(),
                Some(&format!("spec.addresses[{i}]")),
                format!(
                    "{what} and, being MESH_INTERNAL, counts as inside the cluster, so enforced pods without an egress NetworkPolicy reach all of it directly; list only the mesh's real addresses, or make the entry MESH_EXTERNAL"
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::codes::*;
    use super::super::testutil::*;

    fn entry(address: &str) -> String {
        format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: vms, namespace: test-egress}}\nspec: {{hosts: [vm.internal], location: MESH_INTERNAL, addresses: [{address}], resolution: STATIC, endpoints: [{{address: 192.168.50.5}}]}}\n---\n")
    }

    #[test]
    fn wide_and_default_route_addresses() {
        let report = run(&entry("0.0.0.0/0"), &["10.244.0.0/16"]);
        let f = the(&report, WIDE_MESH_INTERNAL, "ServiceEntry test-egress/vms");
        assert!(f.message.contains("default route"), "{}", f.message);
        assert_eq!(f.field.as_deref(), Some("spec.addresses[0]"));
        assert!(!with_code(&run(&entry("172.16.0.0/12"), &[]), WIDE_MESH_INTERNAL).is_empty());
        assert!(!with_code(&run(&entry("'2001:db8::/32'"), &[]), WIDE_MESH_INTERNAL).is_empty());
        assert!(with_code(&run(&entry("192.168.50.0/24"), &[]), WIDE_MESH_INTERNAL).is_empty());
        assert!(with_code(&run(&entry("'2001:db8::/48'"), &[]), WIDE_MESH_INTERNAL).is_empty());
        assert!(with_code(&run(&entry("10.0.0.0/12"), &["10.0.0.0/8"]), WIDE_MESH_INTERNAL).is_empty(), "inside the cluster CIDRs");
        let external = entry("0.0.0.0/0").replace("MESH_INTERNAL", "MESH_EXTERNAL");
        assert!(with_code(&run(&external, &[]), WIDE_MESH_INTERNAL).is_empty());
    }
}
