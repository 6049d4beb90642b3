//! Rule-trie keys as aya keys, in the layout `agent_common::rule_key`
//! defines for the kernel and the agent alike.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use agent_common::rule_key::{
    rule_key_v4, rule_key_v6, rule_prefix_len, split_rule_key_v4, split_rule_key_v6, RuleKeyV4, RuleKeyV6,
};
use aya::maps::lpm_trie::Key;
use ipnet::IpNet;

pub enum RuleKey {
    V4(Key<RuleKeyV4>),
    V6(Key<RuleKeyV6>),
}

pub fn key(policy: u32, net: &IpNet) -> RuleKey {
    let len = rule_prefix_len(net.prefix_len());
    match net.trunc().addr() {
        IpAddr::V4(a) => RuleKey::V4(Key::new(len, rule_key_v4(policy, a.octets()))),
        IpAddr::V6(a) => RuleKey::V6(Key::new(len, rule_key_v6(policy, &a.octets()))),
    }
}

/// Decodes a stored IPv4 key into (policy, net).
pub fn decode_v4(k: &Key<RuleKeyV4>) -> Option<(u32, IpNet)> {
    let (policy, a, bits) = split_rule_key_v4(&k.data(), k.prefix_len())?;
    Some((policy, IpNet::new(Ipv4Addr::from(a).into(), bits).ok()?))
}

/// Decodes a stored IPv6 key into (policy, net).
pub fn decode_v6(k: &Key<RuleKeyV6>) -> Option<(u32, IpNet)> {
    let (policy, a, bits) = split_rule_key_v6(&k.data(), k.prefix_len())?;
    Some((policy, IpNet::new(Ipv6Addr::from(a).into(), bits).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let n: IpNet = "10.244.1.7/16".parse().unwrap();
        let RuleKey::V4(k) = key(9, &n) else { panic!("v4 expected") };
        assert_eq!(k.prefix_len(), 48);
        assert_eq!(decode_v4(&k), Some((9, "10.244.0.0/16".parse().unwrap())));
        let n6: IpNet = "fd00::1/128".parse().unwrap();
        let RuleKey::V6(k6) = key(0, &n6) else { panic!("v6 expected") };
        assert_eq!(k6.prefix_len(), 160);
        assert_eq!(decode_v6(&k6), Some((0, n6)));
    }
}
