//! Rule 3 of the contract: NetworkPolicies with `Egress` that select a pod
//! replace the cluster-CIDR rule with exactly what they allow, with
//! Kubernetes semantics (peers by pod and namespace selector and ipBlock
//! with except; numeric, ranged and named ports; TCP, UDP and SCTP).
//!
//! Input the API server would refuse is reported and fails closed: a bad
//! peer or port allows nothing; a policy whose `spec.podSelector` is
//! invalid selects no pod (and is reported). Every NetworkPolicy is
//! checked ([`check_all`]), whether or not it selects a pod of this node.
use std::collections::BTreeMap;
use std::net::IpAddr;

use agent_common::{PortRule, PROTO_SCTP, PROTO_TCP, PROTO_UDP, REASON_NETWORK_POLICY};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::desired::{AllowRule, Severity};
use crate::model::{ObjectKind, ObjectRef};

use super::ips::{host_net, pod_ips};
use super::objects::{is_finished, labels, name, namespace, object_ref, pod_ref};
use super::selectors::{check_label_selector, label_selector_matches, SelectorError};
use super::limits;
use super::Ctx;

/// Label the API server puts on every namespace.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The egress NetworkPolicies of a snapshot, with each policy's rules
/// computed once.
pub(crate) struct NetworkPolicies<'a> {
    policies: Vec<&'a NetworkPolicy>,
    /// The pods a selector peer may name ([`peer_candidates`]), by
    /// namespace, in snapshot order.
    candidates: BTreeMap<&'a str, Vec<&'a Pod>>,
    /// Policies over a size limit ([`limits`]): they allow nothing.
    over_limit: Vec<bool>,
    namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    rules: Vec<Option<Vec<AllowRule>>>,
}

/// What the egress policies selecting a pod allow.
pub(crate) struct Selected {
    pub rules: Vec<AllowRule>,
    /// `namespace/name` of the policies.
    pub names: Vec<String>,
    /// The rules were more than [`limits::MAX_WORKLOAD_RULES`]: `rules`
    /// is empty (fail closed).
    pub too_many: Option<usize>,
}

/// A valid peer of an egress rule.
enum Peer<'p> {
    Block { cidr: IpNet, except: Vec<IpNet> },
    Selectors(&'p NetworkPolicyPeer),
}

/// A port of a policy rule: numbers resolve at once, names per pod.
enum PortSpec {
    Numbers(PortRule),
    Named {
        name: String,
        proto: u8,
        proto_name: String,
    },
}

impl<'a> NetworkPolicies<'a> {
    pub fn new(ctx: &Ctx<'a>) -> Self {
        let snapshot = ctx.snapshot;
        let mut policies: Vec<&'a NetworkPolicy> = snapshot
            .network_policies
            .iter()
            .filter(|p| is_egress(p))
            .collect();
        policies.sort_by_key(|p| (namespace(&p.metadata), name(&p.metadata)));
        let mut namespace_labels: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for pod in &snapshot.pods {
            let ns = namespace(&pod.metadata).to_owned();
            namespace_labels
                .entry(ns.clone())
                .or_insert_with(|| BTreeMap::from([(NAMESPACE_NAME_LABEL.to_owned(), ns)]));
        }
        for ns in &snapshot.namespaces {
            let ns_name = name(&ns.metadata).to_owned();
            let mut l = labels(&ns.metadata).clone();
            l.insert(NAMESPACE_NAME_LABEL.to_owned(), ns_name.clone());
            namespace_labels.insert(ns_name, l);
        }
        let rules = vec![None; policies.len()];
        let over_limit = policies.iter().map(|p| limits::network_policy(p).is_err()).collect();
        let mut candidates: BTreeMap<&'a str, Vec<&'a Pod>> = BTreeMap::new();
        for pod in peer_candidates(ctx) {
            candidates.entry(namespace(&pod.metadata)).or_default().push(pod);
        }
        Self {
            policies,
            candidates,
            over_limit,
            namespace_labels,
            rules,
        }
    }

    /// What the egress policies selecting `pod` allow, and their
    /// `namespace/name`s, or `None` when no such policy selects it.
    pub fn rules_for(&mut self, ctx: &mut Ctx<'a>, pod: &Pod) -> Option<Selected> {
        let pod_ns = namespace(&pod.metadata);
        let mut selected = Vec::new();
        let mut out = Vec::new();
        let mut total = 0usize;
        for i in 0..self.policies.len() {
            let policy = self.policies[i];
            if namespace(&policy.metadata) != pod_ns {
                continue;
            }
            let selector = policy
                .spec
                .as_ref()
                .and_then(|s| s.pod_selector.clone())
                .unwrap_or_default();
            match label_selector_matches(&selector, labels(&pod.metadata)) {
                Ok(true) if has_unknown_type(policy) || self.over_limit[i] => {
                    // Fail closed: isolates its pods, allows nothing.
                    selected.push(format!("{pod_ns}/{}", name(&policy.metadata)));
                    continue;
                }
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => {
                    // Fail closed: it may have been meant for any pod of
                    // its namespace, so it isolates them all and allows
                    // nothing ([`check_all`] reported it).
                    selected.push(format!("{pod_ns}/{}", name(&policy.metadata)));
                    continue;
                }
            }
            selected.push(format!("{pod_ns}/{}", name(&policy.metadata)));
            if self.rules[i].is_none() {
                self.rules[i] = Some(self.policy_rules(ctx, policy));
            }
            let rules = self.rules[i].as_deref().unwrap_or_default();
            total = total.saturating_add(rules.len());
            if total <= limits::MAX_WORKLOAD_RULES {
                out.extend(rules.iter().cloned());
            }
        }
        if selected.is_empty() {
            return None;
        }
        let too_many = (total > limits::MAX_WORKLOAD_RULES).then_some(total);
        if too_many.is_some() {
            out = Vec::new();
        }
        Some(Selected { rules: out, names: selected, too_many })
    }

    fn policy_rules(&self, ctx: &mut Ctx<'a>, policy: &'a NetworkPolicy) -> Vec<AllowRule> {
        let egress = policy
            .spec
            .as_ref()
            .and_then(|s| s.egress.as_deref())
            .unwrap_or_default();
        let mut out = Vec::new();
        for (i, rule) in egress.iter().enumerate() {
            self.egress_rule(ctx, policy, i, rule, &mut out);
        }
        out
    }

    fn egress_rule(
        &self,
        ctx: &mut Ctx<'a>,
        policy: &'a NetworkPolicy,
        i: usize,
        rule: &NetworkPolicyEgressRule,
        out: &mut Vec<AllowRule>,
    ) {
        let object = object_ref(ObjectKind::NetworkPolicy, &policy.metadata);
        let rule_origin = format!("{object} spec.egress[{i}]");
        let (ports, peers) = parse_egress_rule(ctx, &object, i, rule);
        if rule.to.as_deref().unwrap_or_default().is_empty() {
            // Every destination: all addresses on the numeric ports, and
            // every pod that names a named port.
            for net in ["0.0.0.0/0", "::/0"]
                .iter()
                .filter_map(|n| n.parse::<IpNet>().ok())
            {
                push_numeric(out, net, &[], &ports, &rule_origin);
            }
            let all: Vec<&'a Pod> = ctx
                .snapshot
                .pods
                .iter()
                .filter(|p| !is_finished(p))
                .collect();
            push_named(ctx, out, &all, &ports, &rule_origin);
            return;
        }
        for (j, peer) in peers {
            let field = format!("spec.egress[{i}].to[{j}]");
            let origin = format!("{object} {field}");
            match peer {
                Peer::Block { cidr, except } => push_numeric(out, cidr, &except, &ports, &origin),
                Peer::Selectors(peer) => match self.peer_pods(policy, peer) {
                    Ok(pods) => {
                        for pod in &pods {
                            let pod_origin =
                                format!("{origin} (pod {})", pod_ref(pod).qualified());
                            for ip in pod_ips(ctx, pod) {
                                push_numeric(out, host_net(ip), &[], &ports, &pod_origin);
                            }
                        }
                        push_named(ctx, out, &pods, &ports, &origin);
                    }
                    Err((sub, message)) => {
                        ctx.report(Severity::Error, &object, format!("{field}.{sub}"), message)
                    }
                },
            }
        }
    }

    /// The running pods a selector peer names.
    fn peer_pods(
        &self,
        policy: &NetworkPolicy,
        peer: &NetworkPolicyPeer,
    ) -> Result<Vec<&'a Pod>, (String, String)> {
        let policy_ns = namespace(&policy.metadata);
        let namespaces: Vec<&str> = match &peer.namespace_selector {
            None => vec![policy_ns],
            Some(sel) => {
                let mut found = Vec::new();
                for (ns, l) in &self.namespace_labels {
                    if matches(sel, l, "namespaceSelector")? {
                        found.push(ns.as_str());
                    }
                }
                found
            }
        };
        let pod_selector = peer.pod_selector.clone().unwrap_or_default();
        let mut pods = Vec::new();
        for ns in namespaces {
            for pod in self.candidates.get(ns).into_iter().flatten() {
                if matches(&pod_selector, labels(&pod.metadata), "podSelector")? {
                    pods.push(*pod);
                }
            }
        }
        Ok(pods)
    }
}

/// Check every NetworkPolicy and report what the API server would refuse
/// (in the fields Tollgate reads), whether or not the policy selects a
/// pod of this node: `policyTypes`, and for egress policies
/// `spec.podSelector` and every egress rule's ports and peers. The rules
/// themselves report the same problems when they are compiled (the
/// duplicates are merged).
pub(crate) fn check_all(ctx: &mut Ctx<'_>) {
    let snapshot = ctx.snapshot;
    let mut policies: Vec<&NetworkPolicy> = snapshot.network_policies.iter().collect();
    policies.sort_by_key(|p| (namespace(&p.metadata), name(&p.metadata)));
    for policy in policies {
        let object = object_ref(ObjectKind::NetworkPolicy, &policy.metadata);
        let Some(spec) = policy.spec.as_ref() else {
            continue;
        };
        for (k, t) in spec.policy_types.iter().flatten().enumerate() {
            if t != "Ingress" && t != "Egress" {
                ctx.report(
                    Severity::Error,
                    &object,
                    format!("spec.policyTypes[{k}]"),
                    format!("unknown policy type {t:?} (expected Ingress or Egress; the API server refuses this); the policy isolates the pods it selects and allows them nothing (fail closed)"),
                );
            }
        }
        if !is_egress(policy) {
            continue;
        }
        if let Err(over) = limits::network_policy(policy) {
            // Not parsed further: the policy allows nothing anyway, and a
            // huge list must not cost a report per entry.
            ctx.report(
                Severity::Error,
                &object,
                over.field,
                format!("{}; the policy allows nothing and still isolates the pods it selects (fail closed)", over.message),
            );
            continue;
        }
        if let Some(selector) = &spec.pod_selector {
            if let Err(err) = check_label_selector(selector) {
                report_pod_selector(ctx, &object, &err);
            }
        }
        for (i, rule) in spec.egress.iter().flatten().enumerate() {
            parse_egress_rule(ctx, &object, i, rule);
        }
    }
}

fn report_pod_selector(ctx: &mut Ctx<'_>, object: &ObjectRef, err: &SelectorError) {
    ctx.report(
        Severity::Error,
        object,
        format!("spec.podSelector.{}", err.field()),
        format!("{err}; the policy selects every pod of its namespace and allows them nothing (fail closed)"),
    );
}

/// The valid ports and peers (with their index) of an egress rule; the
/// invalid ones are reported and left out (they allow nothing).
fn parse_egress_rule<'r>(
    ctx: &mut Ctx<'_>,
    object: &ObjectRef,
    i: usize,
    rule: &'r NetworkPolicyEgressRule,
) -> (Vec<PortSpec>, Vec<(usize, Peer<'r>)>) {
    let ports: Vec<PortSpec> = match rule.ports.as_deref() {
        None | Some([]) => vec![PortSpec::Numbers(PortRule::any(REASON_NETWORK_POLICY))],
        Some(ports) => ports
            .iter()
            .enumerate()
            .filter_map(|(k, p)| match port_spec(p) {
                Ok(spec) => Some(spec),
                Err((field, message)) => {
                    ctx.report(
                        Severity::Error,
                        object,
                        format!("spec.egress[{i}].ports[{k}].{field}"),
                        message,
                    );
                    None
                }
            })
            .collect(),
    };
    let mut peers = Vec::new();
    for (j, peer) in rule.to.iter().flatten().enumerate() {
        match parse_peer(peer) {
            Ok(p) => {
                if let Peer::Block { cidr, except } = &p {
                    let fields = std::iter::once(("ipBlock.cidr".to_owned(), cidr))
                        .chain(except.iter().enumerate().map(|(k, e)| (format!("ipBlock.except[{k}]"), e)));
                    for (field, net) in fields {
                        if *net != net.trunc() {
                            ctx.report(
                                Severity::Warning,
                                object,
                                format!("spec.egress[{i}].to[{j}].{field}"),
                                format!("{net} has host bits set; it means {} (as the API server reads it)", net.trunc()),
                            );
                        }
                    }
                }
                peers.push((j, p))
            }
            Err(problems) => {
                for (sub, message) in problems {
                    let field = if sub.is_empty() {
                        format!("spec.egress[{i}].to[{j}]")
                    } else {
                        format!("spec.egress[{i}].to[{j}].{sub}")
                    };
                    ctx.report(Severity::Error, object, field, message);
                }
            }
        }
    }
    (ports, peers)
}

/// Check a peer as the API server does: exactly one of ipBlock or
/// selectors; a CIDR, and excepts strictly inside it; valid selectors.
/// Problems are `(field relative to the peer, message)`.
fn parse_peer(peer: &NetworkPolicyPeer) -> Result<Peer<'_>, Vec<(String, String)>> {
    let has_selector = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
    let Some(block) = &peer.ip_block else {
        if !has_selector {
            return Err(vec![(
                String::new(),
                "a peer needs podSelector, namespaceSelector or ipBlock; it allows nothing"
                    .to_owned(),
            )]);
        }
        let mut problems = Vec::new();
        for (what, sel) in [
            ("namespaceSelector", &peer.namespace_selector),
            ("podSelector", &peer.pod_selector),
        ] {
            if let Some(Err(err)) = sel.as_ref().map(check_label_selector) {
                problems.push((
                    format!("{what}.{}", err.field()),
                    format!("{err}; the peer allows nothing"),
                ));
            }
        }
        return if problems.is_empty() {
            Ok(Peer::Selectors(peer))
        } else {
            Err(problems)
        };
    };
    if has_selector {
        return Err(vec![(
            String::new(),
            "a peer takes either ipBlock or podSelector/namespaceSelector, not both (the API server refuses this); the peer allows nothing".to_owned(),
        )]);
    }
    let Ok(cidr) = block.cidr.parse::<IpNet>() else {
        return Err(vec![(
            "ipBlock.cidr".to_owned(),
            format!("{:?} is not a CIDR; the peer allows nothing", block.cidr),
        )]);
    };
    let mut except = Vec::new();
    let mut problems = Vec::new();
    for (k, e) in block.except.iter().flatten().enumerate() {
        match e.parse::<IpNet>() {
            Ok(net) if is_inside(net, cidr) => except.push(net),
            Ok(_) => problems.push((
                format!("ipBlock.except[{k}]"),
                format!(
                    "{e:?} is not strictly inside the ipBlock CIDR {:?} (the API server refuses this); the peer allows nothing",
                    block.cidr
                ),
            )),
            Err(_) => problems.push((
                format!("ipBlock.except[{k}]"),
                format!("{e:?} is not a CIDR; the peer allows nothing"),
            )),
        }
    }
    if problems.is_empty() {
        Ok(Peer::Block { cidr, except })
    } else {
        Err(problems)
    }
}

/// A container port name (IANA service name): 1 to 15 lower-case letters,
/// digits and `-`, with at least one letter, no `-` at either end and no
/// `--`.
fn check_port_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 15 {
        return Err("1 to 15 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err("lower-case letters, digits and '-'");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err("at least one letter");
    }
    if name.starts_with('-') || name.ends_with('-') || name.contains("--") {
        return Err("no '-' at either end, no \"--\"");
    }
    Ok(())
}

fn matches(
    sel: &LabelSelector,
    l: &BTreeMap<String, String>,
    what: &str,
) -> Result<bool, (String, String)> {
    label_selector_matches(sel, l).map_err(|err| {
        (
            format!("{what}.{}", err.field()),
            format!("{err}; the peer allows nothing"),
        )
    })
}

/// Does the policy restrict egress? (`policyTypes` lists `Egress`, or,
/// when unset or empty, the policy has egress rules: the API server's
/// default.) A type other than `Ingress` and `Egress` counts as `Egress`
/// that allows nothing: fail closed.
pub fn is_egress(policy: &NetworkPolicy) -> bool {
    let Some(spec) = policy.spec.as_ref() else {
        return false;
    };
    match spec.policy_types.as_deref() {
        Some(types) if !types.is_empty() => types.iter().any(|t| t != "Ingress"),
        _ => spec.egress.as_ref().is_some_and(|e| !e.is_empty()),
    }
}

fn has_unknown_type(policy: &NetworkPolicy) -> bool {
    policy
        .spec
        .as_ref()
        .and_then(|s| s.policy_types.as_ref())
        .is_some_and(|types| types.iter().any(|t| t != "Ingress" && t != "Egress"))
}

/// An `except` must be a strict subset of its `cidr` (same family, inside
/// it, longer prefix), as the API server checks.
fn is_inside(except: IpNet, cidr: IpNet) -> bool {
    cidr.contains(&except) && except.prefix_len() > cidr.prefix_len()
}

fn protocol(name: Option<&str>) -> Result<(u8, String), (String, String)> {
    match name.unwrap_or("TCP") {
        "TCP" => Ok((PROTO_TCP, "TCP".into())),
        "UDP" => Ok((PROTO_UDP, "UDP".into())),
        "SCTP" => Ok((PROTO_SCTP, "SCTP".into())),
        other => Err((
            "protocol".into(),
            format!(
                "unknown protocol {other:?} (expected TCP, UDP or SCTP); the port allows nothing"
            ),
        )),
    }
}

fn port_spec(port: &NetworkPolicyPort) -> Result<PortSpec, (String, String)> {
    let (proto, proto_name) = protocol(port.protocol.as_deref())?;
    let numbers = |lo: u16, hi: u16| {
        PortSpec::Numbers(PortRule {
            proto,
            reason: REASON_NETWORK_POLICY,
            port_lo: lo,
            port_hi: hi,
        })
    };
    match &port.port {
        None if port.end_port.is_some() => Err((
            "endPort".to_owned(),
            "endPort needs port (the API server refuses this); the port allows nothing".to_owned(),
        )),
        None => Ok(numbers(0, u16::MAX)),
        Some(IntOrString::Int(p)) => {
            let lo = u16::try_from(*p).ok().filter(|p| *p >= 1).ok_or_else(|| {
                (
                    "port".to_owned(),
                    format!("port {p} is out of range 1-65535; the port allows nothing"),
                )
            })?;
            let hi = match port.end_port {
                None => lo,
                Some(e) => u16::try_from(e).ok().filter(|e| *e >= lo).ok_or_else(|| {
                    ("endPort".to_owned(), format!("endPort {e} must be between port {lo} and 65535; the port allows nothing"))
                })?,
            };
            Ok(numbers(lo, hi))
        }
        Some(IntOrString::String(name)) => {
            if let Err(reason) = check_port_name(name) {
                return Err((
                    "port".into(),
                    format!("{name:?} is neither a port number nor a valid port name ({reason}); the port allows nothing"),
                ));
            }
            if port.end_port.is_some() {
                return Err((
                    "endPort".into(),
                    "endPort cannot be used with a named port; the port allows nothing".into(),
                ));
            }
            Ok(PortSpec::Named {
                name: name.clone(),
                proto,
                proto_name,
            })
        }
    }
}

fn push_numeric(
    out: &mut Vec<AllowRule>,
    net: IpNet,
    except: &[IpNet],
    ports: &[PortSpec],
    origin: &str,
) {
    for spec in ports {
        if let PortSpec::Numbers(rule) = spec {
            out.push(AllowRule {
                net: net.trunc(),
                except: except.to_vec(),
                rule: *rule,
                origin: origin.to_owned(),
            });
        }
    }
}

/// Named ports resolve against each destination pod's container ports.
fn push_named(
    ctx: &mut Ctx<'_>,
    out: &mut Vec<AllowRule>,
    pods: &[&Pod],
    ports: &[PortSpec],
    origin: &str,
) {
    for spec in ports {
        let PortSpec::Named {
            name: port_name,
            proto,
            proto_name,
        } = spec
        else {
            continue;
        };
        for pod in pods {
            let Some(number) = named_port(pod, port_name, proto_name) else {
                continue;
            };
            let ips: Vec<IpAddr> = pod_ips(ctx, pod);
            for ip in ips {
                let rule = PortRule {
                    proto: *proto,
                    reason: REASON_NETWORK_POLICY,
                    port_lo: number,
                    port_hi: number,
                };
                out.push(AllowRule {
                    net: host_net(ip),
                    except: Vec::new(),
                    rule,
                    origin: format!("{origin} (port {port_name:?} of pod {})", pod_ref(pod).qualified()),
                });
            }
        }
    }
}

/// The pods a peer can stand for: running, and not in the host network
/// (they share their node's address: selecting them would open the node,
/// kubelet and all; as in Cilium and Calico they are not pod peers, and an
/// ipBlock can name a node).
fn peer_candidates<'a>(ctx: &Ctx<'a>) -> impl Iterator<Item = &'a Pod> {
    ctx.snapshot.pods.iter().filter(|p| !is_finished(p) && !is_host_network(p))
}

fn is_host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
}

/// The number of the container port `port_name`/`proto_name` of `pod`,
/// as Kubernetes resolves it: regular containers and sidecar init
/// containers (`restartPolicy: Always`), not init containers that run to
/// completion before the pod starts.
pub(crate) fn named_port(pod: &Pod, port_name: &str, proto_name: &str) -> Option<u16> {
    let spec = pod.spec.as_ref()?;
    let sidecars = spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(port_name)
                && p.protocol.as_deref().unwrap_or("TCP") == proto_name
        })
        .and_then(|p| u16::try_from(p.container_port).ok())
        .filter(|p| *p >= 1)
}
