//! The rule-trie key layout, the one definition the kernel programs and
//! the agent share: the policy id (32 bits, big endian) followed by the
//! address, with a prefix length that counts the policy bits. Longest
//! prefix match within one policy id then means longest match on the
//! address.

/// Data of an IPv4 rule-trie key: policy id then address.
pub type RuleKeyV4 = [u8; 8];
/// Data of an IPv6 rule-trie key: policy id then address.
pub type RuleKeyV6 = [u8; 20];
pub const POLICY_ID_BITS: u32 = 32;

/// Prefix length of a key for an address prefix of `addr_bits` bits.
#[inline(always)]
pub const fn rule_prefix_len(addr_bits: u8) -> u32 {
    POLICY_ID_BITS + addr_bits as u32
}

#[inline(always)]
pub fn rule_key_v4(policy: u32, addr: [u8; 4]) -> RuleKeyV4 {
    let id = policy.to_be_bytes();
    [id[0], id[1], id[2], id[3], addr[0], addr[1], addr[2], addr[3]]
}

#[inline(always)]
pub fn rule_key_v6(policy: u32, addr: &[u8; 16]) -> RuleKeyV6 {
    let mut k = [0u8; 20];
    k[..4].copy_from_slice(&policy.to_be_bytes());
    k[4..].copy_from_slice(addr);
    k
}

/// (policy, address, address prefix bits) of a stored IPv4 key; `None`
/// for a prefix length that cannot come from [`rule_key_v4`].
pub fn split_rule_key_v4(data: &RuleKeyV4, prefix_len: u32) -> Option<(u32, [u8; 4], u8)> {
    let bits = prefix_len.checked_sub(POLICY_ID_BITS).filter(|b| *b <= 32)?;
    let policy = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    Some((policy, [data[4], data[5], data[6], data[7]], bits as u8))
}

/// (policy, address, address prefix bits) of a stored IPv6 key.
pub fn split_rule_key_v6(data: &RuleKeyV6, prefix_len: u32) -> Option<(u32, [u8; 16], u8)> {
    let bits = prefix_len.checked_sub(POLICY_ID_BITS).filter(|b| *b <= 128)?;
    let policy = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    let mut a = [0u8; 16];
    a.copy_from_slice(&data[4..]);
    Some((policy, a, bits as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_back() {
        let k = rule_key_v4(9, [10, 244, 0, 0]);
        assert_eq!(k, [0, 0, 0, 9, 10, 244, 0, 0]);
        assert_eq!(split_rule_key_v4(&k, rule_prefix_len(16)), Some((9, [10, 244, 0, 0], 16)));
        assert_eq!(split_rule_key_v4(&k, 20), None);
        assert_eq!(split_rule_key_v4(&k, 65), None);
        let a = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let k6 = rule_key_v6(0x0102_0304, &a);
        assert_eq!(&k6[..4], &[1, 2, 3, 4]);
        assert_eq!(split_rule_key_v6(&k6, rule_prefix_len(128)), Some((0x0102_0304, a, 128)));
    }
}
