//! The Open Service Mesh objects Tollgate reads: the `MeshConfig` (two
//! switches) and `Egress` policies. Only the fields the compiler needs are
//! typed; the rest is ignored so that manifests of any OSM release load.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use super::istio::null_as_default;

/// API versions under which OSM serves `MeshConfig`.
pub const MESH_CONFIG_API_VERSIONS: [&str; 3] = [
    "config.openservicemesh.io/v1alpha1",
    "config.openservicemesh.io/v1alpha2",
    "config.openservicemesh.io/v1alpha3",
];

/// API version of OSM's `Egress` policy.
pub const EGRESS_API_VERSION: &str = "policy.openservicemesh.io/v1alpha1";

/// Name of the mesh-wide `MeshConfig` (in the OSM control-plane namespace,
/// `osm-system` by default).
pub const MESH_CONFIG_NAME: &str = "osm-mesh-config";
pub const DEFAULT_CONTROL_PLANE_NAMESPACE: &str = "osm-system";

/// `config.openservicemesh.io` `MeshConfig`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: MeshConfigSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshConfigSpec {
    #[serde(default, deserialize_with = "null_as_default")]
    pub traffic: MeshConfigTraffic,
    #[serde(default, deserialize_with = "null_as_default")]
    pub feature_flags: MeshConfigFeatureFlags,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshConfigTraffic {
    /// Global egress passthrough: the sidecars let every pod reach any
    /// external destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_egress: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshConfigFeatureFlags {
    /// `Egress` policies are honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_egress_policy: Option<bool>,
}

/// `policy.openservicemesh.io/v1alpha1` `Egress`: lets the pods of the
/// listed ServiceAccounts reach external hosts and addresses on ports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Egress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: EgressSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressSpec {
    #[serde(default, deserialize_with = "null_as_default")]
    pub sources: Vec<EgressSource>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub hosts: Vec<String>,
    /// IPs or CIDRs.
    #[serde(default, deserialize_with = "null_as_default")]
    pub ip_addresses: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub ports: Vec<EgressPort>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressSource {
    /// `ServiceAccount` (the only kind OSM accepts).
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    /// Required by OSM; when missing, Tollgate assumes the namespace of
    /// the `Egress` (and warns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressPort {
    pub number: i64,
    /// `http`, `https`, `tcp` or `tcp-server-first` (all TCP on the
    /// wire; OSM ignores ports with any other protocol).
    #[serde(default)]
    pub protocol: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_config_reads_both_switches() {
        let yaml = "metadata: {name: osm-mesh-config, namespace: osm-system}\nspec:\n  traffic: {enableEgress: true, outboundPortExclusionList: []}\n  featureFlags: {enableEgressPolicy: true, enableWASMStats: false}\n  sidecar: {logLevel: error}\n";
        let mc: MeshConfig = serde_yaml::from_str(yaml).expect("valid mesh config");
        assert_eq!(mc.spec.traffic.enable_egress, Some(true));
        assert_eq!(mc.spec.feature_flags.enable_egress_policy, Some(true));
        let empty: MeshConfig =
            serde_yaml::from_str("metadata: {name: m}\nspec: ~\n").expect("null spec");
        assert_eq!(empty.spec.feature_flags.enable_egress_policy, None);
    }

    #[test]
    fn egress_reads_sources_hosts_addresses_ports() {
        let yaml = "metadata: {name: httpbin-80, namespace: curl}\nspec:\n  sources: [{kind: ServiceAccount, name: curl, namespace: curl}]\n  hosts: [httpbin.org]\n  ipAddresses: [198.51.100.0/24]\n  ports: [{number: 80, protocol: http}]\n  matches: [{apiGroup: specs.smi-spec.io/v1alpha4, kind: HTTPRouteGroup, name: r}]\n";
        let eg: Egress = serde_yaml::from_str(yaml).expect("valid egress");
        assert_eq!(eg.spec.sources[0].name, "curl");
        assert_eq!(eg.spec.hosts, ["httpbin.org"]);
        assert_eq!(eg.spec.ip_addresses, ["198.51.100.0/24"]);
        assert_eq!(eg.spec.ports[0].number, 80);
        assert_eq!(eg.spec.ports[0].protocol, "http");
    }
}
