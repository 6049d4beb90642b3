//! `bind`: a [`Policy`] plus the addresses its host names resolved to,
//! into the datapath's [`DesiredState`]. Groups whose rules use no host
//! name were prepared once by `compile`; only the others are flattened
//! and judged again here, so a DNS answer costs little.
use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use agent_common::{PortRule, POLICY_GLOBAL};
use ipnet::IpNet;

use crate::desired::{AllowRule, DesiredState, TrieEntry};
use crate::explain::ExplainRule;

use super::ips::host_net;
use super::policy::{Destination, Policy, PolicyRule, Prepared};
use super::policy_ids;
use super::service_judge;
use super::services::Frontends;
use super::trie;

/// One allow rule as [`prepare`] reads it: `net` minus `except` on
/// `rule`, granted by `origin` (borrowed from the rule it comes from).
#[derive(Clone, Copy)]
pub(crate) struct RuleRef<'r> {
    pub net: IpNet,
    pub except: &'r [IpNet],
    pub rule: PortRule,
    pub origin: &'r str,
}

/// The flattened and judged rule sets computed so far, by their rules
/// without origins ([`trie::Normalized`]): workloads whose rules differ
/// only in what granted them (two namespaces' policies that allow the
/// same) get the same entries and Service rules, computed once. Only
/// results without diagnostics are kept (those name their owner).
#[derive(Default)]
pub(crate) struct Prepares {
    done: HashMap<trie::Normalized, (Vec<TrieEntry>, Vec<AllowRule>)>,
}

/// Flatten `rules`, judge the Services against them and keep their
/// origins: the datapath entries of one rule set.
pub(crate) fn prepare(rules: &[RuleRef<'_>], owner: &str, frontends: &Frontends, known: &mut Prepares) -> Prepared {
    let normalized = trie::normalize(rules.iter().map(|r| (r.net, r.except, r.rule)));
    let mut diagnostics = Vec::new();
    let (entries, added) = match known.done.entry(normalized) {
        Entry::Occupied(done) => done.get().clone(),
        Entry::Vacant(slot) => {
            let mut map = trie::flatten_normalized(slot.key());
            trie::cap(&mut map, owner, &mut diagnostics);
            let added = service_judge::judge(&mut map, true, frontends, owner, &mut diagnostics);
            let entries = trie::entries(&map);
            if diagnostics.is_empty() {
                slot.insert((entries.clone(), added.clone()));
            }
            (entries, added)
        }
    };
    let explain = rules
        .iter()
        .map(|r| ExplainRule::of(r.net, r.except, r.rule, r.origin))
        .chain(added.iter().map(ExplainRule::from))
        .collect();
    Prepared { entries, explain, diagnostics }
}

/// The rules with their host names replaced by `resolved`'s addresses
/// (as [`PolicyRule::bind`] does), borrowing the rules' excepts and
/// origins.
pub(crate) fn bind_rules<'r>(rules: &'r [PolicyRule], resolved: &BTreeMap<String, Vec<IpAddr>>) -> Vec<RuleRef<'r>> {
    let mut out = Vec::with_capacity(rules.len());
    for rule in rules {
        let origin = rule.origin.as_str();
        match &rule.dest {
            Destination::Net(net) => out.push(RuleRef { net: *net, except: &rule.except, rule: rule.rule, origin }),
            Destination::Host(name) => {
                for ip in resolved.get(name).into_iter().flatten() {
                    out.push(RuleRef { net: host_net(*ip), except: &[], rule: rule.rule, origin });
                }
            }
        }
    }
    out
}

/// The desired datapath state of `policy` with the currently valid
/// addresses of its host names (lower-case names; a name missing from
/// `resolved` allows nothing yet). Pure and deterministic.
pub fn bind(policy: &Policy, resolved: &BTreeMap<String, Vec<IpAddr>>) -> DesiredState {
    let mut known = Prepares::default();
    let prepared: Vec<Cow<'_, Prepared>> = policy
        .groups
        .iter()
        .map(|group| match &group.prepared {
            Some(done) => Cow::Borrowed(done),
            None => Cow::Owned(prepare(&bind_rules(&group.rules, resolved), &group.owner, &policy.frontends, &mut known)),
        })
        .collect();
    drop(known);
    let entries: Vec<&[crate::desired::TrieEntry]> = prepared.iter().map(|p| p.entries.as_slice()).collect();
    let ids = policy_ids::assign_ids(&entries);

    let mut workloads = policy.workloads.clone();
    let mut explain = policy.explain.clone();
    let mut diagnostics = policy.diagnostics.clone();
    let mut policies = BTreeMap::new();
    policies.insert(POLICY_GLOBAL, policy.global_prepared.entries.clone());
    explain.policies.insert(POLICY_GLOBAL, policy.global_prepared.explain.clone());
    for ((group, done), id) in policy.groups.iter().zip(&prepared).zip(ids) {
        if group.prepared.is_none() {
            diagnostics.extend(done.diagnostics.iter().cloned());
        }
        policies.entry(id).or_insert_with(|| done.entries.clone());
        explain.policies.entry(id).or_insert_with(|| done.explain.clone());
        for uid in &group.members {
            if let Some(w) = workloads.get_mut(uid) {
                w.policy = id;
                if let Some(why) = explain.workloads.get_mut(&format!("{}/{}", w.namespace, w.name)) {
                    why.policy = id;
                }
            }
        }
    }
    explain.resolved =
        policy.hosts.iter().map(|h| (h.clone(), resolved.get(h).cloned().unwrap_or_default())).collect();
    diagnostics.sort();
    diagnostics.dedup();
    DesiredState {
        workloads,
        policies,
        diagnostics,
        hosts: policy.hosts.clone(),
        explain,
        ignored: policy.ignored.clone(),
    }
}
