//! Pods whose outbound TCP an iptables sidecar redirects.
//!
//! Istio (`istio-init` or the Istio CNI plugin, `istio-proxy`) and OSM
//! (`osm-init`, `envoy`) install NAT rules that send every outbound TCP
//! connection of the pod to the local proxy. The application's
//! `connect()` still names the original destination (the pre-NAT
//! address): a connect-time check would refuse connections that the
//! sidecar is about to carry through the egress gateway. Such pods get
//! `FLAG_SIDECAR_REDIRECT` and are checked on the packet, after NAT, where
//! the real destination (the proxy's own upstream connection) is visible.
use k8s_openapi::api::core::v1::Pod;

pub const ISTIO_STATUS_ANNOTATION: &str = "sidecar.istio.io/status";

pub fn has_redirecting_sidecar(pod: &Pod) -> bool {
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ISTIO_STATUS_ANNOTATION));
    let Some(spec) = pod.spec.as_ref() else {
        return annotated;
    };
    let containers: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    let init: Vec<&str> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    let any = |name: &str| containers.contains(&name) || init.contains(&name);
    let istio = any("istio-proxy") || any("istio-init");
    let osm = containers.contains(&"envoy") && init.contains(&"osm-init");
    annotated || istio || osm
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn pod(containers: &[&str], init: &[&str]) -> Pod {
        let c = |names: &[&str]| {
            names
                .iter()
                .map(|n| Container {
                    name: n.to_string(),
                    ..Default::default()
                })
                .collect::<Vec<_>>()
        };
        Pod {
            spec: Some(PodSpec {
                containers: c(containers),
                init_containers: (!init.is_empty()).then(|| c(init)),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn detects_istio_and_osm_sidecars() {
        assert!(!has_redirecting_sidecar(&pod(&["app"], &[])));
        assert!(has_redirecting_sidecar(&pod(
            &["app", "istio-proxy"],
            &["istio-init"]
        )));
        assert!(
            has_redirecting_sidecar(&pod(&["app"], &["istio-proxy"])),
            "native sidecar"
        );
        assert!(has_redirecting_sidecar(&pod(
            &["app", "envoy"],
            &["osm-init"]
        )));
        assert!(
            !has_redirecting_sidecar(&pod(&["app", "envoy"], &[])),
            "envoy alone is not OSM"
        );
        let mut annotated = pod(&["app"], &[]);
        annotated.metadata.annotations =
            Some([(ISTIO_STATUS_ANNOTATION.to_string(), "{}".to_string())].into());
        assert!(has_redirecting_sidecar(&annotated));
    }
}
