//! Flattening allow rules into LPM-trie entries.
//!
//! The datapath looks up only the longest matching prefix, so every prefix
//! must carry the complete set of rules that apply to its addresses: the
//! rules whose net contains it, minus those with an `except` that contains
//! it. The prefixes are every rule net and every except net; an address
//! whose longest match is prefix P is covered by exactly the rules that
//! cover P (any net or except containing the address is itself a prefix,
//! no longer than P, so it contains P too).
use std::collections::BTreeMap;

use agent_common::{
    PortRule, RuleSet, MAX_PORT_RULES, PROTO_ANY, REASON_CLUSTER_INTERNAL, REASON_DNS,
    REASON_GATEWAY, REASON_MESH_EGRESS_POLICY, REASON_MESH_INTERNAL, REASON_NETWORK_POLICY,
};
use ipnet::IpNet;

use crate::desired::{AllowRule, Diagnostic, Severity, TrieEntry};

/// Reasons in the order the datapath reports them when several rules
/// allow a packet (the first match wins).
pub const REASON_PRIORITY: [u8; 6] = [
    REASON_GATEWAY,
    REASON_DNS,
    REASON_NETWORK_POLICY,
    REASON_MESH_EGRESS_POLICY,
    REASON_MESH_INTERNAL,
    REASON_CLUSTER_INTERNAL,
];

/// Rank of a reason in [`REASON_PRIORITY`] (lower first; unknown last).
pub fn reason_rank(reason: u8) -> usize {
    REASON_PRIORITY
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(REASON_PRIORITY.len())
}

fn is_all_traffic(rule: &PortRule) -> bool {
    rule.proto == PROTO_ANY && rule.port_lo == 0 && rule.port_hi == u16::MAX
}

/// Canonical form of the port rules of one prefix: deduplicated, ranges of
/// the same protocol and reason coalesced, rules covered by an
/// all-traffic rule of a higher (or equal) priority reason dropped, sorted
/// by reason priority, then protocol and ports.
pub fn normalize_port_rules(mut rules: Vec<PortRule>) -> Vec<PortRule> {
    rules.sort_by_key(|r| (r.proto, r.reason, r.port_lo, r.port_hi));
    let mut merged: Vec<PortRule> = Vec::with_capacity(rules.len());
    for rule in rules {
        match merged.last_mut() {
            Some(last)
                if last.proto == rule.proto
                    && last.reason == rule.reason
                    && u32::from(rule.port_lo) <= u32::from(last.port_hi) + 1 =>
            {
                last.port_hi = last.port_hi.max(rule.port_hi);
            }
            _ => merged.push(rule),
        }
    }
    let best_all = merged
        .iter()
        .filter(|r| is_all_traffic(r))
        .map(|r| reason_rank(r.reason))
        .min();
    if let Some(best) = best_all {
        merged.retain(|r| {
            reason_rank(r.reason) < best || (is_all_traffic(r) && reason_rank(r.reason) == best)
        });
    }
    merged.sort_by_key(|r| (reason_rank(r.reason), r.proto, r.port_lo, r.port_hi));
    merged
}

/// Build the datapath value of a prefix from canonical rules (at most
/// `MAX_PORT_RULES`; extra rules are not written).
pub fn rule_set(rules: &[PortRule]) -> RuleSet {
    let mut set = RuleSet::default();
    for (slot, rule) in set.rules.iter_mut().zip(rules) {
        *slot = *rule;
    }
    set.count = rules.len().min(MAX_PORT_RULES) as u8;
    set
}

/// The port rules of each prefix, canonical (see
/// [`normalize_port_rules`]) and not yet capped at `MAX_PORT_RULES`.
pub type RuleMap = BTreeMap<IpNet, Vec<PortRule>>;

/// Flatten `rules` into trie entries, sorted by prefix. `owner` names the
/// policy in the diagnostic emitted when a prefix needs more than
/// `MAX_PORT_RULES` port rules: the first ones are kept, the rest dropped
/// (the packets they would allow are denied: fail closed).
pub fn flatten(rules: &[AllowRule], owner: &str, diags: &mut Vec<Diagnostic>) -> Vec<TrieEntry> {
    let mut map = flatten_map(rules);
    cap(&mut map, owner, diags);
    entries(&map)
}

/// The prefix lengths present in a set of nets, per family (IPv4 first),
/// longest first: the only ones a longest-prefix walk must try (the
/// reference the lookups are tested against).
#[cfg(test)]
#[derive(Default)]
pub(crate) struct PrefixLengths {
    v4: Vec<u8>,
    v6: Vec<u8>,
}

#[cfg(test)]
impl PrefixLengths {
    pub fn of<'n>(nets: impl IntoIterator<Item = &'n IpNet>) -> Self {
        let mut v4 = std::collections::BTreeSet::new();
        let mut v6 = std::collections::BTreeSet::new();
        for net in nets {
            match net {
                IpNet::V4(n) => v4.insert(n.prefix_len()),
                IpNet::V6(n) => v6.insert(n.prefix_len()),
            };
        }
        Self { v4: v4.into_iter().rev().collect(), v6: v6.into_iter().rev().collect() }
    }

    /// The nets of these lengths that contain `net` (itself included),
    /// longest first.
    pub fn supernets(&self, net: IpNet) -> impl Iterator<Item = IpNet> + '_ {
        let lens = if net.addr().is_ipv4() { &self.v4 } else { &self.v6 };
        lens.iter().filter(move |len| **len <= net.prefix_len()).filter_map(move |len| match net {
            IpNet::V4(n) => ipnet::Ipv4Net::new(n.addr(), *len).ok().map(|s| IpNet::V4(s.trunc())),
            IpNet::V6(n) => ipnet::Ipv6Net::new(n.addr(), *len).ok().map(|s| IpNet::V6(s.trunc())),
        })
    }
}

/// The rules of every prefix (rule nets and except nets). Each prefix
/// gets the rules whose net contains it, minus those with an except that
/// contains it.
pub fn flatten_map(rules: &[AllowRule]) -> RuleMap {
    flatten_parts(rules.iter().map(|r| (r.net, r.except.as_slice(), r.rule)))
}

/// [`flatten_map`] of rules given as (net, except, port rule). The
/// prefixes are visited in order, where a net comes before the nets inside
/// it, keeping the chain of those that contain the current one: each
/// prefix reads the rules of its chain alone, with no hashing, so that the
/// cost is about (prefixes x nesting depth + rules applied) even with
/// thousands of excepts.
pub(crate) fn flatten_parts<'r>(rules: impl IntoIterator<Item = (IpNet, &'r [IpNet], PortRule)>) -> RuleMap {
    flatten_normalized(&normalize(rules))
}

/// Rules as (net, except, port rule), nets truncated, excepts sorted
/// and deduplicated, the whole sorted and deduplicated: what the
/// flattening depends on.
pub(crate) type Normalized = Vec<(IpNet, Vec<IpNet>, PortRule)>;

pub(crate) fn normalize<'r>(rules: impl IntoIterator<Item = (IpNet, &'r [IpNet], PortRule)>) -> Normalized {
    let mut normalized: Normalized = rules
        .into_iter()
        .map(|(net, except, rule)| {
            let mut except: Vec<IpNet> = except.iter().map(IpNet::trunc).collect();
            except.sort();
            except.dedup();
            (net.trunc(), except, rule)
        })
        .collect();
    normalized.sort();
    normalized.dedup();
    normalized
}

/// [`flatten_parts`] of rules already [`normalize`]d.
pub(crate) fn flatten_normalized(normalized: &Normalized) -> RuleMap {
    // Each prefix with the rules it is the net of (`false`) or an except
    // of (`true`), sorted by prefix: a net before the nets inside it.
    let mut marks: Vec<(IpNet, bool, usize)> = Vec::with_capacity(normalized.len());
    for (i, (net, except, _)) in normalized.iter().enumerate() {
        marks.push((*net, false, i));
        marks.extend(except.iter().map(|e| (*e, true, i)));
    }
    marks.sort_unstable();
    let mut out = Vec::new();
    // The marks of the prefixes containing the current one, outermost first.
    let mut chain: Vec<&[(IpNet, bool, usize)]> = Vec::new();
    let mut excepted: Vec<usize> = Vec::new();
    for marked in marks.chunk_by(|a, b| a.0 == b.0) {
        let Some(&(prefix, _, _)) = marked.first() else { continue };
        while chain.last().and_then(|m| m.first()).is_some_and(|m| !m.0.contains(&prefix)) {
            chain.pop();
        }
        chain.push(marked);
        excepted.clear();
        excepted.extend(chain.iter().copied().flatten().filter(|m| m.1).map(|m| m.2));
        excepted.sort_unstable();
        let port_rules = chain
            .iter()
            .copied()
            .flatten()
            .filter(|m| !m.1 && excepted.binary_search(&m.2).is_err())
            .filter_map(|m| normalized.get(m.2).map(|n| n.2))
            .collect();
        out.push((prefix, normalize_port_rules(port_rules)));
    }
    out.into_iter().collect()
}

/// Keep at most `MAX_PORT_RULES` rules per prefix; each prefix over it is
/// reported (naming `owner`) and keeps its first rules (fail closed).
pub fn cap(map: &mut RuleMap, owner: &str, diags: &mut Vec<Diagnostic>) {
    for (prefix, port_rules) in map.iter_mut() {
        cap_one(*prefix, port_rules, owner, diags);
    }
}

pub(crate) fn cap_one(prefix: IpNet, port_rules: &mut Vec<PortRule>, owner: &str, diags: &mut Vec<Diagnostic>) {
    if port_rules.len() <= MAX_PORT_RULES {
        return;
    }
    diags.push(Diagnostic {
        severity: Severity::Error,
        object: owner.to_owned(),
        field: format!("egress rules for {prefix}"),
        message: format!(
            "{} port rules apply to {prefix}, more than the datapath holds ({MAX_PORT_RULES}); only the first {MAX_PORT_RULES} are kept, traffic the others allow is denied (fail closed)",
            port_rules.len()
        ),
        source: None,
    });
    port_rules.truncate(MAX_PORT_RULES);
}

/// The datapath entries of a rule map, sorted by prefix.
pub fn entries(map: &RuleMap) -> Vec<TrieEntry> {
    map.iter().map(|(net, rules)| TrieEntry { net: *net, rules: rule_set(rules) }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::{PROTO_TCP, PROTO_UDP};

    fn net(s: &str) -> IpNet {
        s.parse().expect("test net")
    }

    fn ports(proto: u8, reason: u8, lo: u16, hi: u16) -> PortRule {
        PortRule {
            proto,
            reason,
            port_lo: lo,
            port_hi: hi,
        }
    }

    fn allow(n: &str, except: &[&str], rule: PortRule) -> AllowRule {
        AllowRule {
            net: net(n),
            except: except.iter().map(|e| net(e)).collect(),
            rule,
            origin: String::new(),
        }
    }

    fn rules_of<'a>(entries: &'a [TrieEntry], n: &str) -> &'a [PortRule] {
        let e = entries
            .iter()
            .find(|e| e.net == net(n))
            .unwrap_or_else(|| panic!("no entry for {n}"));
        &e.rules.rules[..e.rules.count as usize]
    }

    #[test]
    fn overlapping_prefixes_inherit_and_higher_reason_covers() {
        let mut diags = Vec::new();
        let cluster = PortRule::any(REASON_CLUSTER_INTERNAL);
        let dns = ports(PROTO_UDP, REASON_DNS, 53, 53);
        let entries = flatten(
            &[
                allow("10.0.0.0/8", &[], cluster),
                allow("10.1.2.3/32", &[], PortRule::any(REASON_GATEWAY)),
                allow("10.96.0.10/32", &[], dns),
                allow("10.96.0.0/12", &[], cluster),
                allow("fd00::/8", &[], cluster),
            ],
            "test",
            &mut diags,
        );
        assert!(diags.is_empty());
        assert_eq!(entries.len(), 5);
        assert_eq!(rules_of(&entries, "10.0.0.0/8"), &[cluster]);
        assert_eq!(
            rules_of(&entries, "10.1.2.3/32"),
            &[PortRule::any(REASON_GATEWAY)]
        );
        assert_eq!(
            rules_of(&entries, "10.96.0.10/32"),
            &[dns, cluster],
            "dns first, cluster still allows all"
        );
        assert_eq!(rules_of(&entries, "fd00::/8"), &[cluster]);
        let mut sorted = entries.clone();
        sorted.sort_by_key(|e| e.net);
        assert_eq!(entries, sorted, "entries sorted by prefix");
    }

    #[test]
    fn except_removes_the_rule_below_it_only() {
        let mut diags = Vec::new();
        let cluster = PortRule::any(REASON_CLUSTER_INTERNAL);
        let np = ports(PROTO_TCP, REASON_NETWORK_POLICY, 443, 443);
        let entries = flatten(
            &[
                allow("10.0.0.0/8", &["10.1.0.0/16"], cluster),
                allow("10.1.2.0/24", &[], np),
                allow(
                    "0.0.0.0/0",
                    &["10.1.2.128/25"],
                    ports(PROTO_UDP, REASON_NETWORK_POLICY, 1, 1024),
                ),
            ],
            "test",
            &mut diags,
        );
        let udp = ports(PROTO_UDP, REASON_NETWORK_POLICY, 1, 1024);
        assert_eq!(rules_of(&entries, "0.0.0.0/0"), &[udp]);
        assert_eq!(rules_of(&entries, "10.0.0.0/8"), &[udp, cluster]);
        assert_eq!(
            rules_of(&entries, "10.1.0.0/16"),
            &[udp],
            "cluster rule excepted"
        );
        assert_eq!(rules_of(&entries, "10.1.2.0/24"), &[np, udp]);
        assert_eq!(
            rules_of(&entries, "10.1.2.128/25"),
            &[np],
            "udp excepted, np inherited"
        );
        assert_eq!(entries.len(), 5);
    }

    #[test]
    fn except_without_other_rules_is_an_empty_entry() {
        let mut diags = Vec::new();
        let entries = flatten(
            &[allow(
                "10.0.0.0/8",
                &["10.9.0.0/16"],
                PortRule::any(REASON_NETWORK_POLICY),
            )],
            "t",
            &mut diags,
        );
        assert_eq!(entries.len(), 2);
        assert!(rules_of(&entries, "10.9.0.0/16").is_empty());
    }

    /// The flattening as it was first written: for each prefix, walk the
    /// prefix lengths in use and look its supernets up by hash.
    fn flatten_by_lengths(rules: &[AllowRule]) -> RuleMap {
        use std::collections::{BTreeSet, HashMap};
        let normalized = normalize(rules.iter().map(|r| (r.net, r.except.as_slice(), r.rule)));
        let mut by_net: HashMap<IpNet, Vec<usize>> = HashMap::new();
        let mut by_except: HashMap<IpNet, Vec<usize>> = HashMap::new();
        let mut prefixes: BTreeSet<IpNet> = BTreeSet::new();
        for (i, (net, except, _)) in normalized.iter().enumerate() {
            by_net.entry(*net).or_default().push(i);
            prefixes.insert(*net);
            for e in except {
                by_except.entry(*e).or_default().push(i);
                prefixes.insert(*e);
            }
        }
        let lengths = PrefixLengths::of(&prefixes);
        let mut out = RuleMap::new();
        for prefix in prefixes {
            let excepted: Vec<usize> =
                lengths.supernets(prefix).flat_map(|n| by_except.get(&n).cloned().unwrap_or_default()).collect();
            let port_rules = lengths
                .supernets(prefix)
                .flat_map(|n| by_net.get(&n).cloned().unwrap_or_default())
                .filter(|i| !excepted.contains(i))
                .map(|i| normalized[i].2)
                .collect();
            out.insert(prefix, normalize_port_rules(port_rules));
        }
        out
    }

    #[test]
    fn the_ordered_sweep_agrees_with_a_walk_over_prefix_lengths() {
        let nets = [
            "0.0.0.0/0", "10.0.0.0/8", "10.0.0.0/16", "10.0.0.0/24", "10.0.0.0/32", "10.0.0.255/32", "10.0.255.0/24",
            "10.1.0.0/16", "10.255.255.255/32", "192.168.1.0/24", "192.168.1.128/25", "192.168.1.129/32", "::/0",
            "fd00::/8", "fd00::1/128", "2001:db8::/32", "2001:db8::/64",
        ];
        let mut seed = 0x2545_f491u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as usize
        };
        for _ in 0..400 {
            let mut rules = Vec::new();
            for _ in 0..next() % 9 {
                let n = net(nets[next() % nets.len()]);
                // Excepts inside the net, and sometimes a stray one.
                let mut except: Vec<&str> = Vec::new();
                for e in nets {
                    let inside = net(e) != n && n.contains(&net(e));
                    if (inside || next() % 23 == 0) && next() % 3 == 0 {
                        except.push(e);
                    }
                }
                let proto = if next() % 2 == 0 { PROTO_TCP } else { PROTO_UDP };
                let port = (next() % 4) as u16 * 100;
                allow_into(&mut rules, n, &except, ports(proto, REASON_NETWORK_POLICY, port, port + (next() % 150) as u16));
            }
            assert_eq!(flatten_map(&rules), flatten_by_lengths(&rules), "{rules:?}");
        }
    }

    fn allow_into(out: &mut Vec<AllowRule>, n: IpNet, except: &[&str], rule: PortRule) {
        out.push(AllowRule { net: n, except: except.iter().map(|e| net(e)).collect(), rule, origin: String::new() });
    }

    #[test]
    fn nets_are_truncated() {
        let mut diags = Vec::new();
        let entries = flatten(
            &[allow(
                "10.1.2.3/8",
                &[],
                PortRule::any(REASON_CLUSTER_INTERNAL),
            )],
            "t",
            &mut diags,
        );
        assert_eq!(entries[0].net, net("10.0.0.0/8"));
    }

    #[test]
    fn port_ranges_coalesce_per_proto_and_reason() {
        let np = REASON_NETWORK_POLICY;
        let out = normalize_port_rules(vec![
            ports(PROTO_TCP, np, 95, 120),
            ports(PROTO_TCP, np, 80, 90),
            ports(PROTO_TCP, np, 91, 100),
            ports(PROTO_TCP, np, 80, 90),
            ports(PROTO_UDP, np, 100, 110),
            ports(PROTO_TCP, REASON_CLUSTER_INTERNAL, 121, 130),
            ports(PROTO_TCP, np, 200, 200),
        ]);
        assert_eq!(
            out,
            vec![
                ports(PROTO_TCP, np, 80, 120),
                ports(PROTO_TCP, np, 200, 200),
                ports(PROTO_UDP, np, 100, 110),
                ports(PROTO_TCP, REASON_CLUSTER_INTERNAL, 121, 130),
            ]
        );
        let edge = normalize_port_rules(vec![
            ports(PROTO_TCP, np, 1, u16::MAX),
            ports(PROTO_TCP, np, 5, u16::MAX),
        ]);
        assert_eq!(edge, vec![ports(PROTO_TCP, np, 1, u16::MAX)]);
    }

    #[test]
    fn all_traffic_rule_covers_lower_priority_rules_only() {
        let out = normalize_port_rules(vec![
            ports(PROTO_TCP, REASON_CLUSTER_INTERNAL, 80, 80),
            PortRule::any(REASON_NETWORK_POLICY),
            ports(PROTO_UDP, REASON_DNS, 53, 53),
            ports(PROTO_TCP, REASON_NETWORK_POLICY, 443, 443),
            PortRule::any(REASON_CLUSTER_INTERNAL),
        ]);
        assert_eq!(
            out,
            vec![
                ports(PROTO_UDP, REASON_DNS, 53, 53),
                PortRule::any(REASON_NETWORK_POLICY)
            ]
        );
    }

    #[test]
    fn overflow_keeps_the_first_rules_and_reports() {
        let mut diags = Vec::new();
        let many: Vec<AllowRule> = (0..MAX_PORT_RULES as u16 + 4)
            .map(|i| {
                allow(
                    "192.0.2.0/24",
                    &[],
                    ports(PROTO_TCP, REASON_NETWORK_POLICY, 1000 + 2 * i, 1000 + 2 * i),
                )
            })
            .collect();
        let entries = flatten(&many, "Pod shop/web", &mut diags);
        let kept = rules_of(&entries, "192.0.2.0/24");
        assert_eq!(kept.len(), MAX_PORT_RULES);
        assert_eq!(kept[0].port_lo, 1000);
        assert_eq!(
            kept[MAX_PORT_RULES - 1].port_lo,
            1000 + 2 * (MAX_PORT_RULES as u16 - 1)
        );
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].severity, Severity::Error);
        assert_eq!(diags[0].object, "Pod shop/web");
        assert!(diags[0].field.contains("192.0.2.0/24"));
    }
}
