//! `bind`: a [`Policy`] plus the addresses its host names resolved to,
//! into the datapath's [`DesiredState`]. Groups whose rules use no host
//! name were prepared once by `compile`; only the others are flattened
//! and judged again here, so a DNS answer costs little.
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use agent_common::POLICY_GLOBAL;

use crate::desired::{AllowRule, DesiredState};
use crate::explain::ExplainRule;

use super::policy::{Policy, PolicyRule, Prepared};
use super::policy_ids;
use super::service_judge;
use super::services::Frontends;
use super::trie;

/// Flatten `rules`, judge the Services against them and keep their
/// origins: the datapath entries of one rule set.
pub(crate) fn prepare(rules: &[AllowRule], owner: &str, frontends: &Frontends) -> Prepared {
    let mut diagnostics = Vec::new();
    let mut map = trie::flatten_map(rules);
    trie::cap(&mut map, owner, &mut diagnostics);
    let added = service_judge::judge(&mut map, true, frontends, owner, &mut diagnostics);
    let explain = rules.iter().chain(&added).map(ExplainRule::from).collect();
    Prepared { entries: trie::entries(&map), explain, diagnostics }
}

/// The rules with their host names replaced by `resolved`'s addresses.
pub(crate) fn bind_rules(rules: &[PolicyRule], resolved: &BTreeMap<String, Vec<IpAddr>>) -> Vec<AllowRule> {
    let mut out = Vec::with_capacity(rules.len());
    for rule in rules {
        rule.bind(resolved, &mut out);
    }
    out
}

/// The desired datapath state of `policy` with the currently valid
/// addresses of its host names (lower-case names; a name missing from
/// `resolved` allows nothing yet). Pure and deterministic.
pub fn bind(policy: &Policy, resolved: &BTreeMap<String, Vec<IpAddr>>) -> DesiredState {
    let prepared: Vec<Cow<'_, Prepared>> = policy
        .groups
        .iter()
        .map(|group| match &group.prepared {
            Some(done) => Cow::Borrowed(done),
            None => Cow::Owned(prepare(&bind_rules(&group.rules, resolved), &group.owner, &policy.frontends)),
        })
        .collect();
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
