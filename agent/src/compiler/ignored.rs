//! The stable codes of [`crate::desired::Ignored`]: objects (or parts of
//! them) that have no effect under the contract's trust rules, or that
//! grant nothing for another reason an operator should see.
use crate::desired::Ignored;
use crate::model::ObjectRef;

/// A pod an Istio `Gateway` selects, or labelled
/// `tollgate.dev/egress-gateway: "true"`, outside the trusted namespaces:
/// not a gateway.
pub const UNTRUSTED_GATEWAY_POD: &str = "untrusted-gateway-pod";
/// A `MESH_INTERNAL` ServiceEntry of a namespace that is not trusted,
/// exported to other namespaces: it applies to its own namespace only.
pub const UNTRUSTED_MESH_INTERNAL_EXPORT: &str = "untrusted-mesh-internal-export";
/// An OSM `MeshConfig` in a namespace that is not trusted: not read.
pub const UNTRUSTED_MESH_CONFIG: &str = "untrusted-mesh-config";
/// A source of an OSM `Egress` of a namespace that is not trusted naming
/// a ServiceAccount of another namespace: that source grants nothing.
pub const UNTRUSTED_EGRESS_SOURCE: &str = "untrusted-egress-source";
/// A trusted `MeshConfig` that another one (in `--osm-namespace`, or
/// first by namespace) overrides.
pub const SUPERSEDED_MESH_CONFIG: &str = "superseded-mesh-config";
/// A gateway pod that is not running or has no address yet: it grants
/// nothing until it has one.
pub const GATEWAY_WITHOUT_ADDRESS: &str = "gateway-without-address";
/// A Service in front of gateway pods with an endpoint that is not a
/// gateway pod's current address: its ClusterIPs are not gateways.
pub const GATEWAY_SERVICE_OTHER_ENDPOINTS: &str = "gateway-service-other-endpoints";

/// Is `rule` one of the trust rules (the object's namespace is not
/// trusted)?
pub fn is_trust_rule(rule: &str) -> bool {
    rule.starts_with("untrusted-")
}

pub(crate) fn ignored(object: &ObjectRef, rule: &str, message: impl Into<String>) -> Ignored {
    Ignored {
        kind: object.kind.as_str().to_owned(),
        object: object.to_string(),
        rule: rule.to_owned(),
        message: message.into(),
    }
}
