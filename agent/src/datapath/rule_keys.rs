//! Rule-trie keys: the policy id (32 bits) followed by the address, with a
//! prefix length that counts the policy bits.
use std::net::IpAddr;

use agent_common::{RuleKeyV4, RuleKeyV6, POLICY_ID_BITS};
use aya::maps::lpm_trie::Key;
use ipnet::IpNet;

pub enum RuleKey {
    V4(Key<RuleKeyV4>),
    V6(Key<RuleKeyV6>),
}

pub fn key(policy: u32, net: &IpNet) -> RuleKey {
    let id = policy.to_be_bytes();
    match net.trunc().addr() {
        IpAddr::V4(a) => {
            let mut d = [0u8; 8];
            d[..4].copy_from_slice(&id);
            d[4..].copy_from_slice(&a.octets());
            RuleKey::V4(Key::new(POLICY_ID_BITS + net.prefix_len() as u32, d))
        }
        IpAddr::V6(a) => {
            let mut d = [0u8; 20];
            d[..4].copy_from_slice(&id);
            d[4..].copy_from_slice(&a.octets());
            RuleKey::V6(Key::new(POLICY_ID_BITS + net.prefix_len() as u32, d))
        }
    }
}

/// Decodes a stored IPv4 key into (policy, net).
pub fn decode_v4(k: &Key<RuleKeyV4>) -> Option<(u32, IpNet)> {
    let d = k.data();
    let policy = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    let addr = std::net::Ipv4Addr::new(d[4], d[5], d[6], d[7]);
    let len = k.prefix_len().checked_sub(POLICY_ID_BITS)?;
    Some((policy, IpNet::new(addr.into(), len as u8).ok()?))
}

/// Decodes a stored IPv6 key into (policy, net).
pub fn decode_v6(k: &Key<RuleKeyV6>) -> Option<(u32, IpNet)> {
    let d = k.data();
    let policy = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    let mut a = [0u8; 16];
    a.copy_from_slice(&d[4..]);
    let len = k.prefix_len().checked_sub(POLICY_ID_BITS)?;
    Some((policy, IpNet::new(std::net::Ipv6Addr::from(a).into(), len as u8).ok()?))
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
