//! The Istio objects Tollgate reads. Only the fields the compiler needs are
//! typed; everything else is kept loosely or ignored, so that manifests of
//! any Istio version load.
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// API versions under which Istio serves `Gateway`.
pub const GATEWAY_API_VERSIONS: [&str; 3] = [
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

/// `selector: ~` and `servers: ~` are accepted as empty.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
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
}
