//! OSM egress policy (rule 5 of the contract): `Egress` objects grant the
//! pods of their `sources` (ServiceAccounts) their `ipAddresses` and
//! resolved `hosts` on their `ports`, when the OSM `MeshConfig` has
//! `spec.featureFlags.enableEgressPolicy: true`.
//!
//! Trust: only a `MeshConfig` of a trusted namespace counts (the one in
//! `--osm-namespace` wins when there are several), and an `Egress` of a
//! namespace that is not trusted grants only ServiceAccounts of its own
//! namespace. What these rules set aside is reported as ignored.
use agent_common::{PortRule, PROTO_TCP, REASON_MESH_EGRESS_POLICY};
use k8s_openapi::api::core::v1::Pod;

use crate::desired::Severity;
use crate::explain::OsmExplain;
use crate::model::osm::{Egress, MeshConfig, MESH_CONFIG_NAME};
use crate::model::{ObjectKind, ObjectRef};

use super::hosts::{parse_host, Host};
use super::ignored::{ignored, SUPERSEDED_MESH_CONFIG, UNTRUSTED_EGRESS_SOURCE, UNTRUSTED_MESH_CONFIG};
use super::ips::host_net;
use super::limits::{check_len, MAX_LIST, MAX_POLICY_EXPANSION};
use super::objects::{name, namespace, object_ref};
use super::policy::{Destination, PolicyRule};
use super::service_entries::parse_net;
use super::Ctx;

/// The `MeshConfig` in force: the one named `osm-mesh-config` in a
/// trusted namespace, preferring `--osm-namespace` (default `osm-system`),
/// then the first by namespace. The others are reported as ignored.
pub(crate) fn mesh_config<'a>(ctx: &mut Ctx<'a>) -> Option<&'a MeshConfig> {
    let snapshot = ctx.snapshot;
    let mut named: Vec<&'a MeshConfig> = Vec::new();
    for mc in &snapshot.mesh_configs {
        let object = object_ref(ObjectKind::MeshConfig, &mc.metadata);
        let ns = namespace(&mc.metadata);
        if name(&mc.metadata) != MESH_CONFIG_NAME {
            ctx.report(
                Severity::Warning,
                &object,
                "metadata.name",
                format!("OSM reads only the MeshConfig named {MESH_CONFIG_NAME}; this one is ignored"),
            );
        } else if !ctx.trusted.contains(ns) {
            ctx.ignore(ignored(
                &object,
                UNTRUSTED_MESH_CONFIG,
                format!("namespace {ns} is not trusted (--trusted-namespace, or the label tollgate.dev/trusted=true on the Namespace), so this MeshConfig is not read"),
            ));
        } else {
            named.push(mc);
        }
    }
    let preferred = ctx.config.osm_namespace.as_str();
    named.sort_by_key(|mc| {
        let ns = namespace(&mc.metadata);
        (ns != preferred, ns.to_owned())
    });
    let chosen = named.first().copied()?;
    for other in named.iter().skip(1) {
        ctx.ignore(ignored(
            &object_ref(ObjectKind::MeshConfig, &other.metadata),
            SUPERSEDED_MESH_CONFIG,
            format!(
                "several trusted {MESH_CONFIG_NAME} MeshConfigs; the one in {} applies (--osm-namespace {preferred} wins, else the first by namespace)",
                namespace(&chosen.metadata)
            ),
        ));
    }
    Some(chosen)
}

pub fn osm_explain(mc: &MeshConfig) -> OsmExplain {
    OsmExplain {
        mesh_config: format!("{}/{}", namespace(&mc.metadata), name(&mc.metadata)),
        enable_egress: mc.spec.traffic.enable_egress == Some(true),
        enable_egress_policy: mc.spec.feature_flags.enable_egress_policy == Some(true),
    }
}

/// The ServiceAccount a pod runs as (`default` when unset).
pub fn service_account(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| {
            s.service_account_name
                .as_deref()
                .or(s.service_account.as_deref())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
}

struct EgressGrant {
    /// `namespace/name` of the Egress.
    name: String,
    /// `(namespace, ServiceAccount)`.
    sources: Vec<(String, String)>,
    rules: Vec<PolicyRule>,
}

/// The valid `Egress` policies, with their rules computed once.
pub(crate) struct EgressPolicies {
    grants: Vec<EgressGrant>,
}

impl EgressPolicies {
    /// Read every `Egress`. When egress policy is off in the MeshConfig
    /// (or there is none), each Egress is reported and grants nothing.
    pub fn new(ctx: &mut Ctx<'_>, mesh_config: Option<&MeshConfig>) -> Self {
        let snapshot = ctx.snapshot;
        let enabled = mesh_config.is_some_and(|mc| mc.spec.feature_flags.enable_egress_policy == Some(true));
        let mut egresses: Vec<&Egress> = snapshot.egresses.iter().collect();
        egresses.sort_by_key(|e| (namespace(&e.metadata).to_owned(), name(&e.metadata).to_owned()));
        let mut grants = Vec::new();
        for egress in egresses {
            let object = object_ref(ObjectKind::Egress, &egress.metadata);
            if !enabled {
                let why = match mesh_config {
                    Some(mc) => format!(
                        "MeshConfig {}/{} does not set spec.featureFlags.enableEgressPolicy: true",
                        namespace(&mc.metadata),
                        name(&mc.metadata)
                    ),
                    None => format!("there is no OSM MeshConfig {MESH_CONFIG_NAME} in a trusted namespace"),
                };
                ctx.report(Severity::Warning, &object, "spec", format!("{why}; this Egress grants nothing"));
                // Still checked (and reported), without resolving its hosts.
                grant(ctx, egress, &object, false);
                continue;
            }
            grants.push(grant(ctx, egress, &object, true));
        }
        Self { grants }
    }

    /// The positions of the grants to `pod`'s ServiceAccount, in order.
    pub fn grants_for(&self, pod: &Pod) -> Vec<usize> {
        let (ns, account) = (namespace(&pod.metadata), service_account(pod));
        self.grants
            .iter()
            .enumerate()
            .filter(|(_, g)| g.sources.iter().any(|(n, a)| n == ns && a == account))
            .map(|(i, _)| i)
            .collect()
    }

    /// The rules of the grants at `grants` (from [`Self::grants_for`]).
    pub fn rules_of(&self, grants: &[usize]) -> Vec<PolicyRule> {
        grants.iter().filter_map(|i| self.grants.get(*i)).flat_map(|g| g.rules.iter().cloned()).collect()
    }

    /// The names of the Egress policies at `grants`.
    pub fn names_of(&self, grants: &[usize]) -> Vec<String> {
        grants.iter().filter_map(|i| self.grants.get(*i)).map(|g| g.name.clone()).collect()
    }
}

/// The grant of one Egress; invalid sources, ports, hosts and addresses
/// are reported and left out. Host names are resolved only when
/// `resolve` is set (the Egress is in force).
fn grant(ctx: &mut Ctx<'_>, egress: &Egress, object: &ObjectRef, resolve: bool) -> EgressGrant {
    let egress_ns = namespace(&egress.metadata);
    let spec = &egress.spec;
    let mut sources = Vec::new();
    let limits = [
        check_len(|| "spec.sources".to_owned(), spec.sources.len(), MAX_LIST, "sources"),
        check_len(|| "spec.hosts".to_owned(), spec.hosts.len(), MAX_LIST, "hosts"),
        check_len(|| "spec.ipAddresses".to_owned(), spec.ip_addresses.len(), MAX_LIST, "ipAddresses"),
        check_len(|| "spec.ports".to_owned(), spec.ports.len(), MAX_LIST, "ports"),
        check_len(
            || "spec".to_owned(),
            (spec.hosts.len() + spec.ip_addresses.len()).saturating_mul(spec.ports.len().max(1)),
            MAX_POLICY_EXPANSION,
            "rule expansions ((hosts + ipAddresses) x ports)",
        ),
    ];
    if let Some(over) = limits.into_iter().find_map(Result::err) {
        ctx.report(Severity::Error, object, over.field, format!("{}; this Egress grants nothing (fail closed)", over.message));
        return EgressGrant { name: object.qualified(), sources, rules: Vec::new() };
    }
    let trusted = ctx.trusted.contains(egress_ns);
    for (i, source) in spec.sources.iter().enumerate() {
        if source.kind != "ServiceAccount" {
            ctx.report(
                Severity::Error,
                object,
                format!("spec.sources[{i}].kind"),
                format!("kind {:?} is not supported (OSM accepts ServiceAccount); the source is ignored", source.kind),
            );
        } else if source.name.is_empty() {
            ctx.report(Severity::Error, object, format!("spec.sources[{i}].name"), "a ServiceAccount name is required; the source is ignored");
        } else {
            let ns = match source.namespace.as_deref().filter(|n| !n.is_empty()) {
                Some(ns) => ns,
                None => {
                    ctx.report(
                        Severity::Warning,
                        object,
                        format!("spec.sources[{i}].namespace"),
                        format!("the namespace of a source is required (the OSM CRD refuses a source without one); Tollgate assumes the Egress's namespace {egress_ns}"),
                    );
                    egress_ns
                }
            };
            if ns != egress_ns && !trusted {
                ctx.ignore(ignored(
                    object,
                    UNTRUSTED_EGRESS_SOURCE,
                    format!(
                        "spec.sources[{i}] names ServiceAccount {ns}/{}, but namespace {egress_ns} is not trusted, so this Egress grants only ServiceAccounts of {egress_ns}; that source grants nothing",
                        source.name
                    ),
                ));
                continue;
            }
            sources.push((ns.to_owned(), source.name.clone()));
        }
    }
    if spec.sources.is_empty() {
        ctx.report(Severity::Error, object, "spec.sources", "an Egress needs at least one source; it grants nothing");
    }
    let mut ports = Vec::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let Some(number) = u16::try_from(port.number).ok().filter(|n| *n >= 1) else {
            ctx.report(Severity::Error, object, format!("spec.ports[{i}].number"), format!("port {} is out of range 1-65535; ignored", port.number));
            continue;
        };
        match port.protocol.to_ascii_lowercase().as_str() {
            "http" | "https" | "tcp" | "tcp-server-first" => ports.push(PortRule {
                proto: PROTO_TCP,
                reason: REASON_MESH_EGRESS_POLICY,
                port_lo: number,
                port_hi: number,
            }),
            "" => ctx.report(
                Severity::Error,
                object,
                format!("spec.ports[{i}].protocol"),
                "a protocol is required (http, https, tcp or tcp-server-first; OSM ignores a port without one); the port is ignored",
            ),
            other => ctx.report(
                Severity::Error,
                object,
                format!("spec.ports[{i}].protocol"),
                format!("unknown protocol {other:?} (expected http, https, tcp or tcp-server-first; OSM ignores other ports); the port is ignored"),
            ),
        }
    }
    if spec.ports.is_empty() {
        ctx.report(Severity::Error, object, "spec.ports", "an Egress needs at least one port; it grants nothing");
    }
    let mut rules = Vec::new();
    let mut push = |dest: &Destination, origin: &str| {
        for rule in &ports {
            rules.push(PolicyRule { dest: dest.clone(), except: Vec::new(), rule: *rule, origin: origin.to_owned() });
        }
    };
    for (i, text) in spec.ip_addresses.iter().enumerate() {
        match parse_net(text) {
            Some(net) => push(&Destination::Net(net.trunc()), &format!("{object} spec.ipAddresses[{i}] {text}")),
            None => ctx.report(
                Severity::Error,
                object,
                format!("spec.ipAddresses[{i}]"),
                format!("{text:?} is not an IP address or CIDR; ignored"),
            ),
        }
    }
    for (i, text) in spec.hosts.iter().enumerate() {
        let origin = format!("{object} spec.hosts[{i}] {text}");
        match parse_host(text) {
            Ok(Host::Ip(ip)) => push(&Destination::Net(host_net(ip)), &origin),
            Ok(Host::Name(host)) if resolve => {
                ctx.want_host(&host);
                push(&Destination::Host(host), &origin);
            }
            Ok(Host::Name(_)) => {}
            Err(message) => ctx.report(Severity::Error, object, format!("spec.hosts[{i}]"), format!("{message}; ignored")),
        }
    }
    if spec.hosts.is_empty() && spec.ip_addresses.is_empty() {
        ctx.report(Severity::Error, object, "spec.hosts", "an Egress needs hosts or ipAddresses; it grants nothing");
    }
    EgressGrant {
        name: object.qualified(),
        sources,
        rules,
    }
}
