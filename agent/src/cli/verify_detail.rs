//! The one-sentence explanation of a `verify` answer. The verdict, mode
//! and reason are the kernel program's; this names the label, policy,
//! gateway or rule behind them from the compiled provenance
//! ([`Explain`]).
use std::net::IpAddr;

use crate::explain::{Explain, ServiceExplain, WorkloadExplain};

/// What the kernel answered, and what was asked.
pub struct Asked<'a> {
    pub from: &'a str,
    pub host: Option<&'a str>,
    pub dst: IpAddr,
    /// `10.0.0.1:80` or `[2001:db8::1]:80`.
    pub destination: &'a str,
    pub proto: u8,
    pub proto_name: &'a str,
    pub port: u16,
    pub reason: &'a str,
    pub mode: &'a str,
}

/// The explanation, and the objects it names (for JSON output).
pub struct Detail {
    pub detail: String,
    pub matched: Vec<String>,
    /// ServiceEntries naming the asked host as an external host.
    pub service_entries: Vec<String>,
}

pub fn explain(e: &Explain, a: &Asked<'_>) -> Detail {
    let w = e.workloads.get(a.from);
    let policy = w.map_or(0, |w| w.policy);
    let matched: Vec<String> = e
        .origins(policy, a.dst, a.proto, a.port, a.reason)
        .into_iter()
        .map(str::to_owned)
        .collect();
    let named = |fallback: &str| {
        if matched.is_empty() {
            fallback.to_owned()
        } else {
            matched.join("; ")
        }
    };
    let to = match a.host {
        Some(h) => format!("{h} ({})", a.destination),
        None => a.destination.to_owned(),
    };
    let what = format!("{} {to}", a.proto_name);
    let from = a.from;
    let service_entries: Vec<String> = a
        .host
        .and_then(|h| e.external_host(h))
        .map(<[String]>::to_vec)
        .unwrap_or_default();
    let gateways = if e.gateways.is_empty() {
        "none is defined".to_owned()
    } else {
        e.gateways.join(", ")
    };
    let mut d = match a.reason {
        "gateway" => format!("{to} is an egress gateway ({}); enforced pods may reach it on every port", named("gateway")),
        "dns" => format!("{to} is cluster DNS ({}), allowed on port 53 UDP and TCP", named("kube-dns")),
        "network-policy" => format!(
            "{} allows {what} from {from}",
            named("an egress NetworkPolicy selecting the pod")
        ),
        "cluster-internal" => format!(
            "{to} is inside the cluster ({}) and no egress NetworkPolicy selects {from}",
            named("cluster CIDRs")
        ),
        "mesh-egress-policy" => format!(
            "OSM {} grants ServiceAccount {} {what}",
            named("Egress policy"),
            service_account(from, w)
        ),
        "not-enforced" => format!(
            "{from} is not enforced: its namespace has no tollgate.dev/egress label"
        ),
        "gateway-pod" => format!("{from} is an egress gateway pod in a namespace that is not enforced"),
        "loopback" => "loopback traffic never leaves the pod".to_owned(),
        "malformed" => "the packet could not be parsed and is denied".to_owned(),
        "no-rule" => no_rule(e, w, a, &what, &gateways, &service_entries),
        other => format!("reason {other}"),
    };
    if !service_entries.is_empty() && a.reason != "no-rule" {
        d.push_str(&format!(
            "; {} is an external ServiceEntry host ({}) that should be reached through the egress gateway",
            a.host.unwrap_or_default(),
            service_entries.join(", ")
        ));
    }
    if let Some(w) = w {
        d.push_str(&mode_clause(w, a.mode));
        if let Some(sidecar) = &w.sources.registry_only {
            d.push_str(&format!(
                "; Istio {sidecar} sets outboundTrafficPolicy REGISTRY_ONLY for this pod, so its proxy also refuses hosts not in the registry"
            ));
        }
    }
    Detail { detail: d, matched, service_entries }
}

fn service_account(from: &str, w: Option<&WorkloadExplain>) -> String {
    let ns = from.split('/').next().unwrap_or_default();
    let sa = w.map_or("default", |w| w.sources.service_account.as_str());
    format!("{ns}/{sa}")
}

fn no_rule(
    e: &Explain,
    w: Option<&WorkloadExplain>,
    a: &Asked<'_>,
    what: &str,
    gateways: &str,
    service_entries: &[String],
) -> String {
    let from = a.from;
    if let Some(service) = service_denial(e, w, a) {
        return service;
    }
    if !service_entries.is_empty() {
        return format!(
            "{} is an external ServiceEntry host ({}): {from} may reach it only through the egress gateway ({gateways})",
            a.host.unwrap_or_default(),
            service_entries.join(", ")
        );
    }
    let hosts = e.hosts_of(a.dst);
    let osm = if hosts.is_empty() {
        String::new()
    } else {
        format!(
            " ({} resolves to it, but no OSM Egress policy grants ServiceAccount {} this port)",
            hosts.join(", "),
            service_account(from, w)
        )
    };
    let has_cluster_rule = |w: &WorkloadExplain| {
        e.policies.get(&w.policy).is_some_and(|rules| rules.iter().any(|r| r.reason == "cluster-internal"))
    };
    let mut d = match w {
        Some(w) if !w.sources.network_policies.is_empty() => format!(
            "no rule allows {what} from {from}: it is selected by NetworkPolicy {} and none of them allows it{osm}; external traffic must go through the egress gateway ({gateways})",
            w.sources.network_policies.join(", ")
        ),
        Some(w) if !has_cluster_rule(w) => format!(
            "no rule allows {what} from {from}: no egress NetworkPolicy selects it, but no cluster CIDR is configured (--cluster-cidr), so it may reach only gateways and DNS{osm}; external traffic must go through the egress gateway ({gateways})"
        ),
        Some(_) => format!(
            "no rule allows {what} from {from}: it is outside the cluster CIDRs and not a gateway or DNS{osm}; external traffic must go through the egress gateway ({gateways})"
        ),
        None => format!(
            "no rule allows {what} from {from}{osm}; external traffic must go through the egress gateway ({gateways})"
        ),
    };
    if let Some(osm) = e.osm.as_ref().filter(|o| !o.enable_egress_policy) {
        d.push_str(&format!(
            "; OSM MeshConfig {} has spec.featureFlags.enableEgressPolicy off, so no OSM Egress policy grants anything",
            osm.mesh_config
        ));
    }
    d
}

/// When the destination is a Service address and port: which endpoint
/// behind it the pod may not reach (or that it has none).
fn service_denial(e: &Explain, w: Option<&WorkloadExplain>, a: &Asked<'_>) -> Option<String> {
    let policy = w.map_or(0, |w| w.policy);
    let from = a.from;
    let frontends: Vec<&ServiceExplain> = e.services_at(a.dst, a.proto, a.port).collect();
    if let Some(refused) = e.services.iter().find(|s| s.address == a.dst && s.refused.is_some()) {
        return Some(format!(
            "{} is a Service address that Tollgate denies on every port: {}",
            a.dst,
            refused.refused.as_deref().unwrap_or_default()
        ));
    }
    let first = frontends.first()?;
    let services = frontends.iter().flat_map(|f| f.services.iter()).cloned().collect::<Vec<_>>().join(", ");
    let at = format!("{} {}", a.destination, a.proto_name);
    if frontends.iter().all(|f| f.endpoint_count == 0) {
        return Some(format!(
            "Service {services} {at} has no endpoints, so it is denied (a Service is allowed only when every endpoint behind it is, and one with none forwards nowhere)"
        ));
    }
    let denied = frontends.iter().flat_map(|f| f.endpoints.iter()).find(|ep| match ep.port {
        None => true,
        Some(port) => !e.allows(policy, ep.address, a.proto, port),
    });
    Some(match denied {
        Some(ep) => match ep.port {
            Some(port) => format!(
                "Service {services} {at} forwards to {} ({}), which Pod {from} may not reach; a Service is allowed only when every endpoint behind it is",
                socket(ep.address, port),
                ep.via
            ),
            None => format!(
                "Service {services} {at} forwards to {} ({}) on a port its EndpointSlice does not give, so it is denied",
                ep.address, ep.via
            ),
        },
        None => format!(
            "Service {services} {at} forwards to {} endpoints, one of which Pod {from} may not reach (of the first {} listed, none is named here); a Service is allowed only when every endpoint behind it is",
            first.endpoint_count,
            first.endpoints.len()
        ),
    })
}

fn socket(ip: std::net::IpAddr, port: u16) -> String {
    match ip {
        std::net::IpAddr::V4(a) => format!("{a}:{port}"),
        std::net::IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

fn mode_clause(w: &WorkloadExplain, mode: &str) -> String {
    let label = w.label.as_deref().unwrap_or_default();
    match mode {
        "audit" => " (namespace label tollgate.dev/egress=audit: the packet passes and is counted)".to_owned(),
        "enforce" if label != "enforce" && !label.is_empty() => format!(
            " (namespace label tollgate.dev/egress={label:?} is not enforce or audit: enforced, fail closed)"
        ),
        "enforce" => " (namespace label tollgate.dev/egress=enforce)".to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::Mode;
    use crate::explain::{ExplainRule, PolicySources};
    use agent_common::PROTO_TCP;

    fn fixture() -> Explain {
        let mut e = Explain::default();
        e.policies.insert(
            5,
            vec![ExplainRule {
                net: "10.244.1.10/32".parse().expect("net"),
                except: vec![],
                proto: PROTO_TCP,
                port_lo: 80,
                port_hi: 80,
                reason: "network-policy".into(),
                origin: "NetworkPolicy x/allow-y-a spec.egress[0].to[0] (pod y/a)".into(),
            }],
        );
        e.workloads.insert(
            "x/a".into(),
            WorkloadExplain {
                mode: Mode::Enforce,
                label: Some("enforce".into()),
                policy: 5,
                sources: PolicySources {
                    network_policies: vec!["x/allow-y-a".into()],
                    service_account: "default".into(),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        e.external_hosts.insert("edition.cnn.com".into(), vec!["ServiceEntry default/cnn".into()]);
        e.gateways.push("Gateway istio-system/egress (pods istio-system/egw)".into());
        e
    }

    fn asked<'a>(dst: &'a str, host: Option<&'a str>, reason: &'a str, port: u16) -> Asked<'a> {
        Asked {
            from: "x/a",
            host,
            dst: dst.parse().expect("ip"),
            destination: dst,
            proto: PROTO_TCP,
            proto_name: "tcp",
            port,
            reason,
            mode: "enforce",
        }
    }

    #[test]
    fn names_the_policy_that_allowed() {
        let d = explain(&fixture(), &asked("10.244.1.10", None, "network-policy", 80));
        assert!(d.detail.contains("NetworkPolicy x/allow-y-a spec.egress[0].to[0]"), "{}", d.detail);
        assert!(d.detail.contains("tollgate.dev/egress=enforce"), "{}", d.detail);
        assert_eq!(d.matched.len(), 1);
    }

    #[test]
    fn denial_names_selecting_policies_and_gateway() {
        let d = explain(&fixture(), &asked("10.244.1.10", None, "no-rule", 81));
        assert!(d.detail.contains("selected by NetworkPolicy x/allow-y-a"), "{}", d.detail);
        assert!(d.detail.contains("Gateway istio-system/egress"), "{}", d.detail);
        assert!(d.matched.is_empty());
    }

    #[test]
    fn denial_without_policies_names_the_missing_cluster_cidrs() {
        let mut e = fixture();
        e.workloads.get_mut("x/a").expect("x/a").sources.network_policies.clear();
        let q = asked("10.244.1.10", None, "no-rule", 81);
        assert!(explain(&e, &q).detail.contains("no cluster CIDR is configured"), "{}", explain(&e, &q).detail);
        e.policies.get_mut(&5).expect("policy 5").push(ExplainRule {
            net: "10.244.0.0/16".parse().expect("net"),
            except: vec![],
            proto: 0,
            port_lo: 0,
            port_hi: u16::MAX,
            reason: "cluster-internal".into(),
            origin: "--cluster-cidr 10.244.0.0/16".into(),
        });
        let d = explain(&e, &asked("203.0.113.9", None, "no-rule", 81));
        assert!(d.detail.contains("outside the cluster CIDRs"), "{}", d.detail);
    }

    #[test]
    fn denial_says_when_osm_egress_policies_are_switched_off() {
        let mut e = fixture();
        let q = asked("198.51.100.7", None, "no-rule", 443);
        assert!(!explain(&e, &q).detail.contains("enableEgressPolicy"));
        e.osm = Some(crate::explain::OsmExplain {
            mesh_config: "osm-system/osm-mesh-config".into(),
            enable_egress: false,
            enable_egress_policy: false,
        });
        let d = explain(&e, &q);
        assert!(d.detail.contains("MeshConfig osm-system/osm-mesh-config has spec.featureFlags.enableEgressPolicy off"), "{}", d.detail);
    }

    #[test]
    fn external_service_entry_host_is_named() {
        let d = explain(&fixture(), &asked("203.0.113.10", Some("edition.cnn.com"), "no-rule", 443));
        assert!(d.detail.contains("ServiceEntry default/cnn"), "{}", d.detail);
        assert!(d.detail.contains("only through the egress gateway"), "{}", d.detail);
        assert_eq!(d.service_entries, ["ServiceEntry default/cnn"]);
    }
}
