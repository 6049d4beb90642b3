//! The Istio objects Tollgate reads. Only the fields the compiler needs are
//! typed; everything else is kept loosely or ignored, so that manifests of
//! any Istio version load.
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// API versions under which Istio serves `Gateway`, `ServiceEntry` and
/// `Sidecar`.
pub const ISTIO_API_VERSIONS: [&str; 3] = [
    "networking.istio.io/v1alpha3",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1",
];

/// `networking.istio.io` `Gateway`: its `spec.selector` picks the gateway
/// pods (in every namespace, Istio's default).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: GatewaySpec,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Labels of the gateway pods. Empty or missing selects nothing.
    #[serde(default, deserialize_with = "null_as_default")]
    pub selector: BTreeMap<String, String>,
    /// The listeners, kept as they are (the compiler does not read them).
    #[serde(default, deserialize_with = "null_as_default")]
    pub servers: Vec<serde_json::Value>,
}

/// `networking.istio.io` `ServiceEntry`: hosts added to Istio's registry.
/// `location: MESH_INTERNAL` entries are part of the mesh (their
/// addresses and endpoints count as inside the cluster); the others
/// (`MESH_EXTERNAL`, the default) are external hosts, reachable from
/// enforced pods only through the egress gateway.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ServiceEntrySpec,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntrySpec {
    #[serde(default, deserialize_with = "null_as_default")]
    pub hosts: Vec<String>,
    /// IPs or CIDRs.
    #[serde(default, deserialize_with = "null_as_default")]
    pub addresses: Vec<String>,
    /// `MESH_EXTERNAL` (default) or `MESH_INTERNAL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub endpoints: Vec<WorkloadEntry>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub ports: Vec<serde_json::Value>,
    /// Namespaces the entry is visible in: `*` (all; the default when
    /// empty), `.` (its own), `~` (none) or names.
    #[serde(default, deserialize_with = "null_as_default")]
    pub export_to: Vec<String>,
}

impl ServiceEntrySpec {
    pub fn is_mesh_internal(&self) -> bool {
        self.location.as_deref() == Some(MESH_INTERNAL)
    }
}

pub const MESH_INTERNAL: &str = "MESH_INTERNAL";
pub const MESH_EXTERNAL: &str = "MESH_EXTERNAL";

/// One endpoint of a `ServiceEntry` (an IP, a host name or a Unix socket).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEntry {
    #[serde(default)]
    pub address: String,
}

/// `networking.istio.io` `Sidecar`: the proxy configuration of the pods
/// it selects (`spec.workloadSelector`, or the whole namespace without
/// one; a selector-less `Sidecar` in the root namespace `istio-system` is
/// the mesh default). Tollgate reads `outboundTrafficPolicy.mode` to
/// report pods whose proxy refuses hosts not in the registry
/// (`REGISTRY_ONLY`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sidecar {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: SidecarSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundTrafficPolicy {
    /// `REGISTRY_ONLY` or `ALLOW_ANY` (Istio's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

pub const REGISTRY_ONLY: &str = "REGISTRY_ONLY";
/// Istio's root namespace, where a selector-less `Sidecar` is the mesh default.
pub const ROOT_NAMESPACE: &str = "istio-system";

/// `selector: ~` and `servers: ~` are accepted as empty.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_tolerates_unknown_fields_and_null_selector() {
        let yaml = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: ns}\nspec:\n  selector: ~\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [a.example]\n  extra: 1\n";
        let gw: Gateway = serde_yaml::from_str(yaml).expect("valid gateway");
        assert!(gw.spec.selector.is_empty());
        assert_eq!(gw.spec.servers.len(), 1);
        assert_eq!(gw.metadata.name.as_deref(), Some("gw"));
    }

    #[test]
    fn gateway_reads_selector() {
        let yaml = "metadata: {name: gw}\nspec: {selector: {istio: egressgateway}}\n";
        let gw: Gateway = serde_yaml::from_str(yaml).expect("valid gateway");
        assert_eq!(
            gw.spec.selector.get("istio").map(String::as_str),
            Some("egressgateway")
        );
    }

    #[test]
    fn service_entry_and_sidecar_decode() {
        let yaml = "metadata: {name: vm}\nspec:\n  hosts: [vm.internal]\n  addresses: [192.168.50.0/24]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  endpoints: [{address: 192.168.50.5, ports: {http: 8080}}]\n";
        let se: ServiceEntry = serde_yaml::from_str(yaml).expect("valid service entry");
        assert!(se.spec.is_mesh_internal());
        assert_eq!(se.spec.endpoints[0].address, "192.168.50.5");
        let external: ServiceEntry =
            serde_yaml::from_str("metadata: {name: cnn}\nspec: {hosts: [edition.cnn.com], ports: ~}\n")
                .expect("valid service entry");
        assert!(!external.spec.is_mesh_internal());
        let sc: Sidecar = serde_yaml::from_str(
            "metadata: {name: default}\nspec: {outboundTrafficPolicy: {mode: REGISTRY_ONLY}, egress: [{hosts: ['./*']}]}\n",
        )
        .expect("valid sidecar");
        assert_eq!(
            sc.spec.outbound_traffic_policy.and_then(|p| p.mode).as_deref(),
            Some(REGISTRY_ONLY)
        );
        assert!(sc.spec.workload_selector.is_none());
    }
}
