//! Services judged by their endpoints (contract, "Settled details"): a
//! Service address and port is allowed to a pod exactly when every
//! endpoint behind it is an allowed destination for that pod on the
//! target port, by the rules that apply to the pod (rules 1 to 5).
//!
//! The judgement runs on flattened rules (what the datapath will hold),
//! so "allowed" means what the kernel would answer. For each Service
//! address `S` and port `p`:
//! - all endpoints allowed, but the rules do not cover `S`:`p` (a pod
//!   that NetworkPolicies select, allowed the backend pods): a rule for
//!   `S`:`p` is added when `S` is a ClusterIP. An external or
//!   load-balancer IP is never opened this way: it may be a real host
//!   (any address a tenant writes in `externalIPs`) that the proxy does
//!   not intercept, so it stays allowed only where the rules allow the
//!   address itself ("allowed only when", a necessary condition);
//! - an endpoint not allowed (or none at all), while the rules cover
//!   `S`:`p` (the cluster CIDRs, a wide ipBlock): `S` gets an entry of its
//!   own without `p` — the longest match then denies it.
//!
//! Gateway and DNS rules live in the global policy, which every enforced
//! pod reads first: it is judged on its own rules (a Service address that
//! captures a gateway address is denied there unless its endpoints are
//! gateways or DNS too), and each workload policy then decides the
//! Service ports the global policy does not allow.
use std::net::IpAddr;

use agent_common::{PortRule, PROTO_ANY, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use ipnet::IpNet;

use crate::desired::{AllowRule, Diagnostic};

use super::ips::host_net;
use super::services::{Endpoint, Frontends};
pub(crate) use super::lookup::Lookup;
use super::lookup::Walk;
use super::trie::{cap_one, normalize_port_rules, RuleMap};

/// Judge every Service frontend against `map` and change `map`
/// accordingly. Returns the allow rules added (for explanations). With
/// `workload` set, `map` is a workload's flattened rules, read after the
/// global policy ([`Frontends::settle_global`] must have run): a frontend
/// the global policy allows is left to it, and an endpoint is allowed by
/// the global rules or by `map`. Without it, `map` is the global rules
/// themselves. Entries that end up over `MAX_PORT_RULES` are reported
/// under `owner`.
pub(crate) fn judge(map: &mut RuleMap, workload: bool, frontends: &Frontends, owner: &str, diags: &mut Vec<Diagnostic>) -> Vec<AllowRule> {
    let mut changes: Vec<(IpNet, Vec<PortRule>)> = Vec::new();
    let mut added = Vec::new();
    {
        let own = Lookup::new(map);
        let mut walk = Walk::new(&own);
        for at in &frontends.addresses {
            let addr = at.address;
            let current: &[PortRule] = walk.rules_at(addr).unwrap_or_default();
            if at.refused.is_some() {
                if !current.is_empty() {
                    changes.push((host_net(addr), Vec::new()));
                }
                continue;
            }
            let mut new: Option<Vec<PortRule>> = None;
            for frontend in &at.ports {
                let (proto, port) = (frontend.proto, frontend.port);
                if workload && frontend.global_allowed {
                    // Allowed to every enforced pod by the global policy.
                    continue;
                }
                let covered = current.iter().any(|r| r.matches(proto, port));
                if !covered && !at.cluster_ip {
                    // Nothing to take away, and nothing may be added.
                    continue;
                }
                let verdict = every_endpoint(&frontend.endpoints, |e, p| {
                    if workload { e.global } else { None }.or_else(|| own.allows(e.ip, proto, p))
                });
                match verdict {
                    Some(reason) if !covered && at.cluster_ip => {
                        let rule = PortRule { proto, reason, port_lo: port, port_hi: port };
                        new.get_or_insert_with(|| current.to_vec()).push(rule);
                        added.push(AllowRule {
                            net: host_net(addr),
                            except: Vec::new(),
                            rule,
                            origin: origin(addr, proto, port, &frontend.services, &frontend.endpoints),
                        });
                    }
                    None if covered => subtract(new.get_or_insert_with(|| current.to_vec()), proto, port, addr.is_ipv6()),
                    _ => {}
                }
            }
            if let Some(new) = new {
                changes.push((host_net(addr), new));
            }
        }
    }
    for (net, rules) in changes {
        let mut rules = normalize_port_rules(rules);
        cap_one(net, &mut rules, owner, diags);
        map.insert(net, rules);
    }
    added
}

/// The reason of the first endpoint's rule when `allowed(endpoint, target
/// port)` holds for every endpoint; `None` when one is not allowed, one
/// has no port, or there is none.
fn every_endpoint(endpoints: &[Endpoint], allowed: impl Fn(&Endpoint, u16) -> Option<u8>) -> Option<u8> {
    let mut first = None;
    for endpoint in endpoints {
        let reason = allowed(endpoint, endpoint.port?)?;
        first.get_or_insert(reason);
    }
    first
}

fn origin(addr: IpAddr, proto: u8, port: u16, services: &[String], endpoints: &[Endpoint]) -> String {
    let shown: Vec<String> = endpoints
        .iter()
        .take(3)
        .map(|e| format!("{} ({})", socket(e.ip, e.port.unwrap_or_default()), e.via))
        .collect();
    let more = endpoints.len().saturating_sub(shown.len());
    let tail = if more > 0 { format!(" and {more} more") } else { String::new() };
    format!(
        "Service {} {} {}: every endpoint is allowed: {}{tail}",
        services.join(", "),
        socket(addr, port),
        proto_name(proto),
        shown.join(", ")
    )
}

pub(crate) fn socket(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

pub(crate) fn proto_name(proto: u8) -> &'static str {
    match proto {
        PROTO_TCP => "TCP",
        PROTO_UDP => "UDP",
        PROTO_SCTP => "SCTP",
        _ => "IP",
    }
}

/// Remove `proto`/`port` from `rules`. A rule for every protocol becomes
/// one rule per protocol the datapath tells apart (TCP, UDP, SCTP and
/// ICMP of the family; other IP protocols are no longer allowed at this
/// address: fail closed). A range that loses a port no longer covers
/// every port, so it no longer matches packets whose port is unknown
/// (port 0: non-first fragments).
pub(crate) fn subtract(rules: &mut Vec<PortRule>, proto: u8, port: u16, v6: bool) {
    let icmp = if v6 { PROTO_ICMPV6 } else { PROTO_ICMP };
    let mut out = Vec::with_capacity(rules.len() + 4);
    for rule in rules.drain(..) {
        if !rule.matches(proto, port) {
            out.push(rule);
            continue;
        }
        let per_proto: Vec<PortRule> = if rule.proto == PROTO_ANY {
            [PROTO_TCP, PROTO_UDP, PROTO_SCTP, icmp].map(|p| PortRule { proto: p, ..rule }).to_vec()
        } else {
            vec![rule]
        };
        for r in per_proto {
            if r.proto != proto {
                out.push(r);
                continue;
            }
            let full = r.port_lo == 0 && r.port_hi == u16::MAX;
            if port > r.port_lo {
                let lo = if full { 1 } else { r.port_lo };
                if lo < port {
                    out.push(PortRule { port_lo: lo, port_hi: port - 1, ..r });
                }
            }
            if port < r.port_hi {
                out.push(PortRule { port_lo: port + 1, ..r });
            }
        }
    }
    *rules = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::{REASON_CLUSTER_INTERNAL, REASON_NETWORK_POLICY};

    #[test]
    fn subtracting_a_port_splits_ranges_and_protocols() {
        let mut rules = vec![PortRule::any(REASON_CLUSTER_INTERNAL)];
        subtract(&mut rules, PROTO_TCP, 80, false);
        let r = |proto, lo, hi| PortRule { proto, reason: REASON_CLUSTER_INTERNAL, port_lo: lo, port_hi: hi };
        assert_eq!(
            rules,
            [r(PROTO_TCP, 1, 79), r(PROTO_TCP, 81, u16::MAX), r(PROTO_UDP, 0, u16::MAX), r(PROTO_SCTP, 0, u16::MAX), r(PROTO_ICMP, 0, u16::MAX)]
        );
        assert!(!rules.iter().any(|x| x.matches(PROTO_TCP, 80)));
        assert!(!rules.iter().any(|x| x.matches(PROTO_TCP, 0)), "unknown TCP port (fragment) no longer allowed");
        subtract(&mut rules, PROTO_TCP, 1, false);
        subtract(&mut rules, PROTO_TCP, u16::MAX, false);
        assert_eq!(rules[..2], [r(PROTO_TCP, 2, 79), r(PROTO_TCP, 81, u16::MAX - 1)]);
        let mut single = vec![PortRule { proto: PROTO_UDP, reason: REASON_NETWORK_POLICY, port_lo: 53, port_hi: 53 }];
        subtract(&mut single, PROTO_UDP, 53, true);
        assert!(single.is_empty());
        let mut v6 = vec![PortRule::any(REASON_CLUSTER_INTERNAL)];
        subtract(&mut v6, PROTO_UDP, 53, true);
        assert!(v6.iter().any(|x| x.proto == PROTO_ICMPV6) && !v6.iter().any(|x| x.proto == PROTO_ICMP));
    }
}
