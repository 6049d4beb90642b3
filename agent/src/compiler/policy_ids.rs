//! Stable policy ids: each distinct flattened rule set gets an id derived
//! from its content, so that ids survive agent restarts and do not depend
//! on the order of the input.
use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use crate::desired::TrieEntry;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME)
    })
}

/// Canonical bytes of a rule set (entries sorted by prefix).
pub fn encode(entries: &[TrieEntry]) -> Vec<u8> {
    let mut sorted: Vec<&TrieEntry> = entries.iter().collect();
    sorted.sort_by_key(|e| e.net);
    let mut out = Vec::with_capacity(sorted.len() * 24);
    for entry in sorted {
        match entry.net {
            IpNet::V4(n) => {
                out.push(4);
                out.extend_from_slice(&n.addr().octets());
            }
            IpNet::V6(n) => {
                out.push(6);
                out.extend_from_slice(&n.addr().octets());
            }
        }
        out.push(entry.net.prefix_len());
        let count = usize::from(entry.rules.count).min(entry.rules.rules.len());
        out.push(count as u8);
        for rule in &entry.rules.rules[..count] {
            out.push(rule.proto);
            out.push(rule.reason);
            out.extend_from_slice(&rule.port_lo.to_be_bytes());
            out.extend_from_slice(&rule.port_hi.to_be_bytes());
        }
    }
    out
}

/// The preferred id of a rule set: FNV-1a 64 of its canonical bytes folded
/// to 32 bits; never 0 (the global policy).
pub fn content_id(entries: &[TrieEntry]) -> u32 {
    fold(fnv1a(&encode(entries)))
}

fn fold(hash: u64) -> u32 {
    let id = (hash as u32) ^ ((hash >> 32) as u32);
    id.max(1)
}

/// Ids for `policies` (one per input, equal contents get equal ids).
/// Collisions are resolved deterministically: contents are taken in order
/// of (preferred id, bytes) and each probes up from its preferred id to
/// the next free one, skipping 0.
pub fn assign_ids<P: AsRef<[TrieEntry]>>(policies: &[P]) -> Vec<u32> {
    let encoded: Vec<Vec<u8>> = policies.iter().map(|p| encode(p.as_ref())).collect();
    let distinct: BTreeSet<(u32, &[u8])> = encoded
        .iter()
        .map(|bytes| (fold(fnv1a(bytes)), bytes.as_slice()))
        .collect();
    let mut taken: BTreeSet<u32> = BTreeSet::new();
    let mut ids: BTreeMap<&[u8], u32> = BTreeMap::new();
    for (preferred, bytes) in distinct {
        let mut id = preferred;
        while id == 0 || taken.contains(&id) {
            id = id.wrapping_add(1);
        }
        taken.insert(id);
        ids.insert(bytes, id);
    }
    encoded
        .iter()
        .map(|bytes| ids.get(bytes.as_slice()).copied().unwrap_or(1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::{PortRule, REASON_CLUSTER_INTERNAL, REASON_GATEWAY};

    use crate::compiler::trie::rule_set;

    fn entry(net: &str, reason: u8) -> TrieEntry {
        TrieEntry {
            net: net.parse().expect("test net"),
            rules: rule_set(&[PortRule::any(reason)]),
        }
    }

    #[test]
    fn ids_are_content_derived_and_order_independent() {
        let a = vec![entry("10.0.0.0/8", REASON_CLUSTER_INTERNAL)];
        let b = vec![entry("10.0.0.0/8", REASON_GATEWAY)];
        let ids = assign_ids(&[a.clone(), b.clone(), a.clone()]);
        assert_eq!(ids[0], ids[2]);
        assert_ne!(ids[0], ids[1]);
        assert!(ids.iter().all(|id| *id != 0));
        assert_eq!(ids[0], content_id(&a));
        let reversed = assign_ids(&[b.clone(), a.clone()]);
        assert_eq!(reversed, vec![ids[1], ids[0]]);
        let two = vec![
            entry("10.0.0.0/8", REASON_CLUSTER_INTERNAL),
            entry("fd00::/8", REASON_CLUSTER_INTERNAL),
        ];
        let swapped: Vec<TrieEntry> = two.iter().rev().cloned().collect();
        assert_eq!(content_id(&two), content_id(&swapped));
    }

    #[test]
    fn fold_never_yields_zero() {
        assert_eq!(fold(0), 1);
        assert_eq!(fold(0x0000_0001_0000_0001), 1);
        assert_eq!(fold(0x0000_0000_0000_0005), 5);
    }
}
