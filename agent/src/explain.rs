//! Where the datapath's rules came from, kept beside the desired state so
//! that `verify` and `status` can name the policy, gateway or label behind
//! a verdict. The verdict itself always comes from the kernel program;
//! this only names the objects whose rules agree with it.
use std::collections::BTreeMap;
use std::net::IpAddr;

use agent_common::{reason_code, PortRule, POLICY_GLOBAL};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::desired::{AllowRule, Mode};

/// Provenance of the compiled rules and of each workload's treatment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explain {
    /// The rules of each policy id (before flattening), with origins.
    pub policies: BTreeMap<u32, Vec<ExplainRule>>,
    /// Keyed by `namespace/name`.
    pub workloads: BTreeMap<String, WorkloadExplain>,
    /// External hosts of `ServiceEntry` objects (not `MESH_INTERNAL`),
    /// lower-case, with the ServiceEntries that name them: reachable from
    /// enforced pods only through the egress gateway.
    pub external_hosts: BTreeMap<String, Vec<String>>,
    /// The egress gateways, e.g. `Gateway istio-system/istio-egressgateway
    /// (pods istio-system/istio-egressgateway-5d8f)`.
    pub gateways: Vec<String>,
    /// Host names the rules use and the addresses they resolved to when
    /// compiled.
    pub resolved: BTreeMap<String, Vec<IpAddr>>,
    /// The OSM `MeshConfig` in force, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub osm: Option<OsmExplain>,
    /// Service addresses and ports with the endpoints behind them: a
    /// Service is allowed only when every endpoint is, so that `verify`
    /// can name the endpoint that denied one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceExplain>,
}

/// One Service address and port (ClusterIP, external IP or load-balancer
/// IP) and where kube-proxy may forward it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceExplain {
    pub address: IpAddr,
    /// IP protocol number.
    pub proto: u8,
    pub port: u16,
    /// The Services (`namespace/name`) with this address and port.
    pub services: Vec<String>,
    /// The endpoints (at most [`ServiceExplain::MAX_ENDPOINTS`] are kept).
    pub endpoints: Vec<EndpointExplain>,
    /// How many endpoints there are in all.
    pub endpoint_count: usize,
    /// Set when the Service was too large to judge: its addresses are
    /// denied (fail closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

impl ServiceExplain {
    /// Endpoints kept per address and port in explanations.
    pub const MAX_ENDPOINTS: usize = 256;
}

/// One endpoint behind a Service port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointExplain {
    pub address: IpAddr,
    /// Target port; `None` when the EndpointSlice gives none (denied).
    pub port: Option<u16>,
    /// Where it came from: `EndpointSlice y/s-abc endpoints[0]` or `Pod
    /// y/a (selected by the Service)`.
    pub via: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainRule {
    pub net: IpNet,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<IpNet>,
    /// IP protocol number, 0 for every protocol.
    pub proto: u8,
    pub port_lo: u16,
    pub port_hi: u16,
    /// Contract reason code (`network-policy`, `gateway`, ...).
    pub reason: String,
    pub origin: String,
}

impl From<&AllowRule> for ExplainRule {
    fn from(r: &AllowRule) -> Self {
        Self::of(r.net, &r.except, r.rule, &r.origin)
    }
}

impl ExplainRule {
    /// The explanation of the allow rule `net` minus `except` on `rule`,
    /// granted by `origin`.
    pub fn of(net: IpNet, except: &[IpNet], rule: PortRule, origin: &str) -> Self {
        Self {
            net: net.trunc(),
            except: except.iter().map(IpNet::trunc).collect(),
            proto: rule.proto,
            port_lo: rule.port_lo,
            port_hi: rule.port_hi,
            reason: reason_code(rule.reason).to_owned(),
            origin: origin.to_owned(),
        }
    }

    fn covers(&self, dst: IpAddr, proto: u8, port: u16) -> bool {
        let rule = PortRule {
            proto: self.proto,
            reason: 0,
            port_lo: self.port_lo,
            port_hi: self.port_hi,
        };
        self.net.contains(&dst) && !self.except.iter().any(|e| e.contains(&dst)) && rule.matches(proto, port)
    }
}

/// How one workload is treated, in the operator's terms.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadExplain {
    pub mode: Mode,
    /// Value of the namespace's `tollgate.dev/egress` label, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub policy: u32,
    #[serde(default)]
    pub gateway: bool,
    #[serde(flatten)]
    pub sources: PolicySources,
}

/// The objects that decide a workload's rules (`namespace/name`), shown
/// by `status` and `verify`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySources {
    /// Egress NetworkPolicies selecting the pod; empty means the
    /// cluster-internal rule applies.
    #[serde(default)]
    pub network_policies: Vec<String>,
    #[serde(default)]
    pub service_account: String,
    /// OSM `Egress` policies granting the pod's ServiceAccount.
    #[serde(default)]
    pub mesh_egress: Vec<String>,
    /// The Istio `Sidecar` that sets `outboundTrafficPolicy: REGISTRY_ONLY`
    /// for this pod, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_only: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsmExplain {
    /// `namespace/name` of the MeshConfig.
    pub mesh_config: String,
    pub enable_egress: bool,
    pub enable_egress_policy: bool,
}

impl Explain {
    /// The origins of the rules of `policy` that allow `proto`/`port` to
    /// `dst` for `reason`, deduplicated, in rule order. Gateway and DNS
    /// rules live in the global policy whatever `policy` is.
    pub fn origins(&self, policy: u32, dst: IpAddr, proto: u8, port: u16, reason: &str) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for id in [policy, POLICY_GLOBAL] {
            for rule in self.policies.get(&id).into_iter().flatten() {
                if rule.reason == reason && rule.covers(dst, proto, port) && !out.contains(&rule.origin.as_str()) {
                    out.push(&rule.origin);
                }
            }
        }
        out
    }

    /// Does a rule of `policy` (or of the global policy) allow
    /// `proto`/`port` to `dst`? Used to phrase answers only.
    pub fn allows(&self, policy: u32, dst: IpAddr, proto: u8, port: u16) -> bool {
        [policy, POLICY_GLOBAL]
            .iter()
            .flat_map(|id| self.policies.get(id).into_iter().flatten())
            .any(|rule| rule.covers(dst, proto, port))
    }

    /// The Service addresses and ports at `dst`/`proto`/`port`.
    pub fn services_at(&self, dst: IpAddr, proto: u8, port: u16) -> impl Iterator<Item = &ServiceExplain> {
        self.services.iter().filter(move |s| s.address == dst && s.proto == proto && s.port == port)
    }

    /// The ServiceEntries naming `host` as an external host.
    pub fn external_host(&self, host: &str) -> Option<&[String]> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.external_hosts.get(&host).map(Vec::as_slice).or_else(|| {
            // `*.example.com` entries cover every sub-domain.
            self.external_hosts.iter().find_map(|(pattern, refs)| {
                let suffix = pattern.strip_prefix('*')?;
                host.ends_with(suffix).then_some(refs.as_slice())
            })
        })
    }

    /// The external hosts (ServiceEntries) that resolve to `ip` in the
    /// compiled answers.
    pub fn hosts_of(&self, ip: IpAddr) -> Vec<&str> {
        self.resolved
            .iter()
            .filter(|(_, ips)| ips.contains(&ip))
            .map(|(host, _)| host.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::{PROTO_TCP, PROTO_UDP};

    fn rule(net: &str, except: &[&str], proto: u8, lo: u16, hi: u16, reason: &str, origin: &str) -> ExplainRule {
        ExplainRule {
            net: net.parse().expect("net"),
            except: except.iter().map(|e| e.parse().expect("except")).collect(),
            proto,
            port_lo: lo,
            port_hi: hi,
            reason: reason.into(),
            origin: origin.into(),
        }
    }

    #[test]
    fn origins_match_address_except_ports_and_reason() {
        let mut e = Explain::default();
        e.policies.insert(
            7,
            vec![
                rule("10.0.0.0/8", &["10.1.0.0/16"], PROTO_TCP, 80, 81, "network-policy", "NetworkPolicy x/a spec.egress[0]"),
                rule("10.0.0.5/32", &[], PROTO_TCP, 80, 80, "network-policy", "NetworkPolicy x/b spec.egress[1]"),
                rule("10.0.0.0/8", &[], 0, 0, u16::MAX, "cluster-internal", "cluster CIDR 10.0.0.0/8"),
            ],
        );
        e.policies.insert(0, vec![rule("10.0.0.9/32", &[], PROTO_UDP, 53, 53, "dns", "Service kube-system/kube-dns")]);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(
            e.origins(7, ip("10.0.0.5"), PROTO_TCP, 80, "network-policy"),
            ["NetworkPolicy x/a spec.egress[0]", "NetworkPolicy x/b spec.egress[1]"]
        );
        assert!(e.origins(7, ip("10.1.0.5"), PROTO_TCP, 80, "network-policy").is_empty(), "except");
        assert!(e.origins(7, ip("10.0.0.6"), PROTO_TCP, 82, "network-policy").is_empty(), "port");
        assert_eq!(e.origins(7, ip("10.0.0.9"), PROTO_UDP, 53, "dns"), ["Service kube-system/kube-dns"]);
    }

    #[test]
    fn external_hosts_match_exact_and_wildcard() {
        let mut e = Explain::default();
        e.external_hosts.insert("edition.cnn.com".into(), vec!["ServiceEntry default/cnn".into()]);
        e.external_hosts.insert("*.wikipedia.org".into(), vec!["ServiceEntry default/wiki".into()]);
        assert!(e.external_host("Edition.CNN.com.").is_some());
        assert!(e.external_host("en.wikipedia.org").is_some());
        assert!(e.external_host("example.com").is_none());
    }
}
