//! Longest-prefix lookups in a flattened rule map, as the datapath does
//! them, without hashing: each family's prefixes are cut once into
//! disjoint address ranges, each holding the rules of the longest prefix
//! that covers it, and an address is found by binary search. The judge
//! of Services asks for every Service address and endpoint of the
//! cluster once per rule group, so this is its inner loop.
use std::net::IpAddr;

use agent_common::PortRule;
use ipnet::IpNet;

use super::trie::RuleMap;

/// Longest-prefix lookups in a [`RuleMap`].
pub(crate) struct Lookup<'a> {
    v4: Ranges<'a>,
    v6: Ranges<'a>,
}

/// Disjoint ranges of one family, sorted by their first address: range
/// `i` runs from `starts[i]` to the address before `starts[i + 1]` (or
/// the end of the family) and holds `rules[i]` (`None`: no prefix covers
/// it).
#[derive(Default)]
struct Ranges<'a> {
    starts: Vec<u128>,
    rules: Vec<Option<&'a [PortRule]>>,
}

impl<'a> Lookup<'a> {
    pub fn new(map: &'a RuleMap) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (net, rules) in map {
            let net = net.trunc();
            let (first, last) = match net {
                IpNet::V4(n) => (u128::from(u32::from(n.network())), u128::from(u32::from(n.broadcast()))),
                IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
            };
            let family = if net.addr().is_ipv4() { &mut v4 } else { &mut v6 };
            family.push((first, last, rules.as_slice()));
        }
        Self { v4: Ranges::of(v4), v6: Ranges::of(v6) }
    }

    /// The rules of the longest prefix holding `ip`.
    pub fn rules_at(&self, ip: IpAddr) -> Option<&'a [PortRule]> {
        match ip {
            IpAddr::V4(a) => self.v4.at(u128::from(u32::from(a))),
            IpAddr::V6(a) => self.v6.at(u128::from(a)),
        }
    }

    /// The reason of the first rule allowing `proto`/`port` to `ip`.
    pub fn allows(&self, ip: IpAddr, proto: u8, port: u16) -> Option<u8> {
        self.rules_at(ip)?.iter().find(|r| r.matches(proto, port)).map(|r| r.reason)
    }
}

/// Lookups of addresses mostly in increasing order (as the frontends are
/// sorted): each family's ranges are walked forward from the last answer
/// instead of searched, so that judging every frontend costs about
/// (frontends + ranges), not frontends x log(ranges). An address below
/// the previous one is searched again.
pub(crate) struct Walk<'l, 'a> {
    lookup: &'l Lookup<'a>,
    v4: usize,
    v6: usize,
}

impl<'l, 'a> Walk<'l, 'a> {
    pub fn new(lookup: &'l Lookup<'a>) -> Self {
        Self { lookup, v4: 0, v6: 0 }
    }

    /// The rules of the longest prefix holding `ip` (as [`Lookup::rules_at`]).
    pub fn rules_at(&mut self, ip: IpAddr) -> Option<&'a [PortRule]> {
        match ip {
            IpAddr::V4(a) => self.lookup.v4.at_from(&mut self.v4, u128::from(u32::from(a))),
            IpAddr::V6(a) => self.lookup.v6.at_from(&mut self.v6, u128::from(a)),
        }
    }
}

impl<'a> Ranges<'a> {
    /// [`Self::at`], walking from `*pos` (the count of range starts at or
    /// below the previous address), which is left at this address's.
    fn at_from(&self, pos: &mut usize, address: u128) -> Option<&'a [PortRule]> {
        if pos.checked_sub(1).and_then(|i| self.starts.get(i)).is_some_and(|s| *s > address) {
            *pos = self.starts.partition_point(|s| *s <= address);
        }
        while self.starts.get(*pos).is_some_and(|s| *s <= address) {
            *pos += 1;
        }
        pos.checked_sub(1).and_then(|i| self.rules.get(i).copied().flatten())
    }

    /// The ranges of prefixes given as (first, last address, rules).
    /// Prefixes are nested or disjoint, so sorted by first address and
    /// then by size (largest first) they open and close like brackets.
    fn of(mut prefixes: Vec<(u128, u128, &'a [PortRule])>) -> Self {
        prefixes.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut out = Self::default();
        // The prefixes holding the current address, innermost last.
        let mut open: Vec<(u128, &'a [PortRule])> = Vec::new();
        for (first, last, rules) in prefixes {
            out.close_before(&mut open, first);
            out.push(first, Some(rules));
            open.push((last, rules));
        }
        // Prefixes ending at u128::MAX stay open: nothing follows them.
        out.close_before(&mut open, u128::MAX);
        out
    }

    /// Close the open prefixes that end before `address`: after each, the
    /// next outer one (or none) holds the addresses that follow.
    fn close_before(&mut self, open: &mut Vec<(u128, &'a [PortRule])>, address: u128) {
        while let Some(&(last, _)) = open.last() {
            if last >= address {
                break;
            }
            open.pop();
            if let Some(next) = last.checked_add(1) {
                self.push(next, open.last().map(|(_, rules)| *rules));
            }
        }
    }

    /// A range starting at `start` (replacing one that starts there too).
    fn push(&mut self, start: u128, rules: Option<&'a [PortRule]>) {
        if self.starts.last() == Some(&start) {
            if let Some(slot) = self.rules.last_mut() {
                *slot = rules;
            }
            return;
        }
        self.starts.push(start);
        self.rules.push(rules);
    }

    fn at(&self, address: u128) -> Option<&'a [PortRule]> {
        let after = self.starts.partition_point(|s| *s <= address);
        after.checked_sub(1).and_then(|i| self.rules.get(i).copied().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::{REASON_CLUSTER_INTERNAL, REASON_NETWORK_POLICY};

    use crate::compiler::trie::PrefixLengths;

    fn net(s: &str) -> IpNet {
        s.parse().expect("net")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn lookup_takes_the_longest_prefix() {
        let mut map = RuleMap::new();
        map.insert(net("10.0.0.0/8"), vec![PortRule::any(REASON_CLUSTER_INTERNAL)]);
        map.insert(net("10.1.0.0/16"), vec![]);
        let l = Lookup::new(&map);
        assert_eq!(l.allows(ip("10.2.0.1"), agent_common::PROTO_TCP, 80), Some(REASON_CLUSTER_INTERNAL));
        assert_eq!(l.allows(ip("10.1.0.1"), agent_common::PROTO_TCP, 80), None);
        assert_eq!(l.rules_at(ip("10.1.0.1")), Some(&[][..]), "an empty entry is still the longest match");
        assert_eq!(l.allows(ip("11.0.0.1"), agent_common::PROTO_TCP, 80), None);
        assert_eq!(l.allows(ip("fd00::1"), agent_common::PROTO_TCP, 80), None);
    }

    /// The reference: walk the prefix lengths in use, longest first.
    fn walk<'m>(map: &'m RuleMap, lengths: &PrefixLengths, ip: IpAddr) -> Option<&'m [PortRule]> {
        lengths.supernets(IpNet::from(ip)).find_map(|n| map.get(&n).map(Vec::as_slice))
    }

    #[test]
    fn ranges_agree_with_a_walk_over_prefix_lengths() {
        let rule = |port| vec![PortRule { proto: agent_common::PROTO_TCP, reason: REASON_NETWORK_POLICY, port_lo: port, port_hi: port }];
        let nets = [
            "0.0.0.0/0", "10.0.0.0/8", "10.0.0.0/16", "10.0.0.0/24", "10.0.0.0/32", "10.0.0.255/32", "10.0.255.0/24",
            "10.255.255.255/32", "255.255.255.255/32", "192.168.1.0/24", "192.168.1.128/25", "192.168.1.129/32",
            "::/0", "fd00::/8", "fd00::1/128", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "2001:db8::/32",
        ];
        // Many subsets of the nets (bits of a pseudo-random sequence), each
        // net with its own rule.
        let mut seed = 0x9e37_79b9u32;
        for _ in 0..512 {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let mut map = RuleMap::new();
            for (i, n) in nets.iter().enumerate() {
                if (seed >> (i + 8)) & 1 == 1 {
                    map.insert(net(n), rule(i as u16 + 1));
                }
            }
            let lookup = Lookup::new(&map);
            let lengths = PrefixLengths::of(map.keys());
            let probes = [
                "0.0.0.0", "9.255.255.255", "10.0.0.0", "10.0.0.1", "10.0.0.255", "10.0.1.0", "10.0.255.255", "10.1.0.0",
                "10.255.255.255", "11.0.0.0", "192.168.1.127", "192.168.1.128", "192.168.1.129", "192.168.1.130",
                "192.168.2.0", "255.255.255.254", "255.255.255.255", "::", "fd00::", "fd00::1", "fd00::2", "fe00::",
                "2001:db8::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            ];
            let mut forward = Walk::new(&lookup);
            for p in probes {
                assert_eq!(lookup.rules_at(ip(p)), walk(&map, &lengths, ip(p)), "{p} in {:?}", map.keys().collect::<Vec<_>>());
                assert_eq!(forward.rules_at(ip(p)), lookup.rules_at(ip(p)), "walking forward to {p}");
            }
            let mut backward = Walk::new(&lookup);
            for p in probes.iter().rev() {
                assert_eq!(backward.rules_at(ip(p)), lookup.rules_at(ip(p)), "walking backward to {p}");
            }
        }
    }
}
