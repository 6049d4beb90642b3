//! Rule 3 of the contract: NetworkPolicies with `Egress` that select a pod
//! replace the cluster-CIDR rule with exactly what they allow, with
//! Kubernetes semantics (peers by pod and namespace selector and ipBlock
//! with except; numeric, ranged and named ports; TCP, UDP and SCTP).
//!
//! Input the API server would refuse is reported and fails closed: a bad
//! peer or port allows nothing; a policy whose `spec.podSelector` is
//! invalid selects no pod (and is reported). Every NetworkPolicy is
//! checked ([`check_all`]), whether or not it selects a pod of this node.
use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};
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

use super::ips::{host_net, pod_ips, quiet_pod_ips_checked};
use super::objects::{is_finished, labels, name, namespace, object_ref, pod_ref};
use super::selectors::{check_label_selector, CheckedSelector, SelectorError};
use super::limits;
use super::Ctx;

/// Label the API server puts on every namespace.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The egress NetworkPolicies of a snapshot, with each policy's rules
/// computed once.
pub(crate) struct NetworkPolicies<'a> {
    policies: Vec<&'a NetworkPolicy>,
    /// Positions in `policies` by namespace, in order.
    by_namespace: HashMap<&'a str, Vec<usize>>,
    /// Each policy's `spec.podSelector`, or the error that makes it
    /// select every pod of its namespace and allow nothing.
    selectors: Vec<Result<CheckedSelector<'a>, SelectorError>>,
    /// The pods a selector peer may name ([`peer_candidates`]), by
    /// namespace, in snapshot order.
    candidates: BTreeMap<&'a str, Vec<Candidate<'a>>>,
    /// Policies over a size limit ([`limits`]): they allow nothing.
    over_limit: Vec<bool>,
    namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    rules: Vec<Option<Vec<AllowRule>>>,
}

/// A pod a selector peer may name, with its addresses parsed once per
/// compile (when a peer first names it).
struct Candidate<'a> {
    pod: &'a Pod,
    /// The valid addresses, and whether some address is not valid.
    ips: OnceCell<(Vec<IpAddr>, bool)>,
}

impl<'a> Candidate<'a> {
    /// The pod's addresses; bad ones are reported (as [`pod_ips`] does).
    fn ips(&self, ctx: &mut Ctx<'_>) -> &[IpAddr] {
        let (ips, bad) = self.ips.get_or_init(|| quiet_pod_ips_checked(self.pod));
        if *bad {
            pod_ips(ctx, self.pod);
        }
        ips
    }
}

/// The selector of a policy without `spec.podSelector`: every pod.
static EVERY_POD: LabelSelector = LabelSelector { match_expressions: None, match_labels: None };

/// The egress policies selecting a pod ([`NetworkPolicies::select`]).
pub(crate) struct Selection {
    /// `namespace/name` of the policies.
    pub names: Vec<String>,
    /// The positions of those that allow something (not failed closed):
    /// the pod's rules depend on these alone.
    pub allowing: Vec<usize>,
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
            let ns = namespace(&pod.metadata);
            if !namespace_labels.contains_key(ns) {
                namespace_labels.insert(ns.to_owned(), BTreeMap::from([(NAMESPACE_NAME_LABEL.to_owned(), ns.to_owned())]));
            }
        }
        for ns in &snapshot.namespaces {
            let ns_name = name(&ns.metadata).to_owned();
            let mut l = labels(&ns.metadata).clone();
            l.insert(NAMESPACE_NAME_LABEL.to_owned(), ns_name.clone());
            namespace_labels.insert(ns_name, l);
        }
        let rules = vec![None; policies.len()];
        let over_limit = policies.iter().map(|p| limits::network_policy(p).is_err()).collect();
        let mut by_namespace: HashMap<&'a str, Vec<usize>> = HashMap::new();
        for (i, policy) in policies.iter().enumerate() {
            by_namespace.entry(namespace(&policy.metadata)).or_default().push(i);
        }
        let selectors = policies
            .iter()
            .map(|p| CheckedSelector::new(p.spec.as_ref().and_then(|s| s.pod_selector.as_ref()).unwrap_or(&EVERY_POD)))
            .collect();
        let mut candidates: BTreeMap<&'a str, Vec<Candidate<'a>>> = BTreeMap::new();
        for pod in peer_candidates(ctx) {
            candidates.entry(namespace(&pod.metadata)).or_default().push(Candidate { pod, ips: OnceCell::new() });
        }
        Self {
            policies,
            by_namespace,
            selectors,
            candidates,
            over_limit,
            namespace_labels,
            rules,
        }
    }

    /// The egress policies selecting `pod`, or `None` when none does.
    pub fn select(&self, pod: &Pod) -> Option<Selection> {
        let pod_ns = namespace(&pod.metadata);
        let mut names = Vec::new();
        let mut allowing = Vec::new();
        for &i in self.by_namespace.get(pod_ns).into_iter().flatten() {
            let (Some(policy), Some(selector)) = (self.policies.get(i), self.selectors.get(i)) else {
                continue;
            };
            match selector {
                Ok(selector) if !selector.matches(labels(&pod.metadata)) => continue,
                // Fail closed: isolates its pods, allows nothing.
                Ok(_) if has_unknown_type(policy) || self.over_limit.get(i).copied().unwrap_or(true) => {}
                Ok(_) => allowing.push(i),
                // Fail closed: it may have been meant for any pod of its
                // namespace, so it isolates them all and allows nothing
                // ([`check_all`] reported it).
                Err(_) => {}
            }
            names.push(format!("{pod_ns}/{}", name(&policy.metadata)));
        }
        (!names.is_empty()).then_some(Selection { names, allowing })
    }

    /// How many rules the policies at `allowing` (from [`Self::select`])
    /// allow together (each policy's rules are computed once). Over
    /// [`limits::MAX_WORKLOAD_RULES`], they allow nothing (fail closed).
    pub fn total(&mut self, ctx: &mut Ctx<'a>, allowing: &[usize]) -> usize {
        let mut total = 0usize;
        for &i in allowing {
            if self.rules.get(i).is_some_and(Option::is_none) {
                let Some(&policy) = self.policies.get(i) else { continue };
                let computed = self.policy_rules(ctx, policy);
                if let Some(slot) = self.rules.get_mut(i) {
                    *slot = Some(computed);
                }
            }
            total = total.saturating_add(self.rules.get(i).and_then(Option::as_ref).map_or(0, Vec::len));
        }
        total
    }

    /// The rules of the policies at `allowing`, once [`Self::total`] has
    /// computed them.
    pub fn rules_of<'s>(&'s self, allowing: &'s [usize]) -> impl Iterator<Item = &'s AllowRule> + 's {
        allowing.iter().filter_map(|i| self.rules.get(*i).and_then(Option::as_ref)).flatten()
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
            push_named(ctx, out, &all, |ctx, k| all.get(k).map(|p| pod_ips(ctx, p)).unwrap_or_default(), &ports, &rule_origin);
            return;
        }
        let numeric = ports.iter().any(|p| matches!(p, PortSpec::Numbers(_)));
        for (j, peer) in peers {
            let field = format!("spec.egress[{i}].to[{j}]");
            let origin = format!("{object} {field}");
            match peer {
                Peer::Block { cidr, except } => push_numeric(out, cidr, &except, &ports, &origin),
                Peer::Selectors(peer) => match self.peer_pods(policy, peer) {
                    Ok(pods) => {
                        for candidate in &pods {
                            let ips = candidate.ips(ctx);
                            if !numeric || ips.is_empty() {
                                continue;
                            }
                            let pod_origin = pod_origin(&origin, candidate.pod);
                            for ip in ips {
                                push_numeric(out, host_net(*ip), &[], &ports, &pod_origin);
                            }
                        }
                        let named: Vec<&Pod> = pods.iter().map(|c| c.pod).collect();
                        let ips_of = |ctx: &mut Ctx<'_>, k: usize| pods.get(k).map(|c| c.ips(ctx).to_vec()).unwrap_or_default();
                        push_named(ctx, out, &named, ips_of, &ports, &origin);
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
    ) -> Result<Vec<&Candidate<'a>>, (String, String)> {
        let policy_ns = namespace(&policy.metadata);
        let namespaces: Vec<&str> = match &peer.namespace_selector {
            None => vec![policy_ns],
            Some(sel) => {
                let sel = checked(sel, "namespaceSelector")?;
                self.namespace_labels.iter().filter(|(_, l)| sel.matches(l)).map(|(ns, _)| ns.as_str()).collect()
            }
        };
        let pod_selector = checked(peer.pod_selector.as_ref().unwrap_or(&EVERY_POD), "podSelector")?;
        let mut pods = Vec::new();
        for ns in namespaces {
            for candidate in self.candidates.get(ns).into_iter().flatten() {
                if pod_selector.matches(labels(&candidate.pod.metadata)) {
                    pods.push(candidate);
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

fn checked<'s>(sel: &'s LabelSelector, what: &str) -> Result<CheckedSelector<'s>, (String, String)> {
    CheckedSelector::new(sel).map_err(|err| {
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

/// `{origin} (pod {namespace}/{name})`, without the formatting machinery
/// (one per peer pod and rule: the bulk of a large policy's rules).
fn pod_origin(origin: &str, pod: &Pod) -> String {
    let (ns, pod_name) = (namespace(&pod.metadata), name(&pod.metadata));
    let mut out = String::with_capacity(origin.len() + ns.len() + pod_name.len() + 8);
    for part in [origin, " (pod ", ns, "/", pod_name, ")"] {
        out.push_str(part);
    }
    out
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

/// Named ports resolve against each destination pod's container ports
/// (`ips_of(ctx, k)`: the addresses of `pods[k]`).
fn push_named(
    ctx: &mut Ctx<'_>,
    out: &mut Vec<AllowRule>,
    pods: &[&Pod],
    ips_of: impl Fn(&mut Ctx<'_>, usize) -> Vec<IpAddr>,
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
        for (k, pod) in pods.iter().enumerate() {
            let Some(number) = named_port(pod, port_name, proto_name) else {
                continue;
            };
            for ip in ips_of(ctx, k) {
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
