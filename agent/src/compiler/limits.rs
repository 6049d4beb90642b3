//! Size limits per object, so that one huge object compiles in bounded
//! time and memory. An object over a limit fails closed: it allows (or
//! grants) nothing, a NetworkPolicy still isolates the pods it selects,
//! and the diagnostic names the object and the field.
//!
//! | object | field | limit |
//! | --- | --- | --- |
//! | NetworkPolicy | `spec.egress` | 1,024 rules |
//! | NetworkPolicy | `spec.egress[i].to` | 1,024 peers |
//! | NetworkPolicy | `spec.egress[i].ports` | 1,024 ports |
//! | NetworkPolicy | `spec.egress[i].to[j].ipBlock.except` | 1,024 entries |
//! | NetworkPolicy | whole policy: Σ over rules of (peers + excepts) × ports | 65,536 |
//! | OSM Egress | `spec.sources`, `spec.hosts`, `spec.ipAddresses`, `spec.ports` | 1,024 each |
//! | OSM Egress | (hosts + ipAddresses) × ports | 65,536 |
//! | ServiceEntry | `spec.addresses`, `spec.endpoints` | 1,024 each |
//! | Service | `spec.ports` | 1,024 |
//! | Service | `spec.externalIPs`, `status.loadBalancer.ingress` | 64 each |
//! | Service | endpoints behind one port (all EndpointSlices and selected pods) | 65,536 |
//!
//! One workload's rules (every policy that selects it, expanded over the
//! pods their selectors name) are capped at [`MAX_WORKLOAD_RULES`]; a pod
//! over it is allowed nothing but gateways and DNS (fail closed).
use k8s_openapi::api::networking::v1::NetworkPolicy;

pub const MAX_LIST: usize = 1_024;
pub const MAX_POLICY_EXPANSION: usize = 65_536;
pub const MAX_SERVICE_ADDRESSES: usize = 64;
pub const MAX_SERVICE_ENDPOINTS: usize = 65_536;
pub const MAX_WORKLOAD_RULES: usize = 1_000_000;

/// A limit an object is over: the field and a sentence for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverLimit {
    pub field: String,
    pub message: String,
}

/// `Err` when `len` entries of `field` are more than `limit`.
pub fn check_len(field: impl FnOnce() -> String, len: usize, limit: usize, what: &str) -> Result<(), OverLimit> {
    if len <= limit {
        return Ok(());
    }
    Err(OverLimit {
        field: field(),
        message: format!("{len} {what}, more than the limit of {limit}"),
    })
}

/// The first limit `policy` is over, if any (rules, then peers, ports and
/// excepts of each rule, then the whole policy).
pub fn network_policy(policy: &NetworkPolicy) -> Result<(), OverLimit> {
    let rules = policy.spec.as_ref().and_then(|s| s.egress.as_deref()).unwrap_or_default();
    check_len(|| "spec.egress".to_owned(), rules.len(), MAX_LIST, "egress rules")?;
    let mut expansion = 0usize;
    for (i, rule) in rules.iter().enumerate() {
        let peers = rule.to.as_deref().unwrap_or_default();
        let ports = rule.ports.as_deref().unwrap_or_default();
        check_len(|| format!("spec.egress[{i}].to"), peers.len(), MAX_LIST, "peers")?;
        check_len(|| format!("spec.egress[{i}].ports"), ports.len(), MAX_LIST, "ports")?;
        let mut targets = peers.len().max(1);
        for (j, peer) in peers.iter().enumerate() {
            let except = peer.ip_block.as_ref().and_then(|b| b.except.as_ref()).map_or(0, Vec::len);
            check_len(|| format!("spec.egress[{i}].to[{j}].ipBlock.except"), except, MAX_LIST, "except entries")?;
            targets += except;
        }
        expansion = expansion.saturating_add(targets.saturating_mul(ports.len().max(1)));
    }
    check_len(
        || "spec.egress".to_owned(),
        expansion,
        MAX_POLICY_EXPANSION,
        "rule expansions ((peers + except entries) x ports, over all rules)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> NetworkPolicy {
        serde_yaml::from_str(yaml).expect("test policy")
    }

    #[test]
    fn limits_name_the_first_field_over() {
        let except: Vec<String> = (0..1_025).map(|i| format!("10.{}.{}.0/24", i / 256, i % 256)).collect();
        let big = policy(&format!(
            "metadata: {{name: p}}\nspec:\n  egress:\n  - to: [{{ipBlock: {{cidr: 10.0.0.0/8, except: [{}]}}}}]\n",
            except.join(", ")
        ));
        let err = network_policy(&big).unwrap_err();
        assert_eq!(err.field, "spec.egress[0].to[0].ipBlock.except");
        assert!(err.message.contains("1025 except entries"), "{}", err.message);
        let ok = policy("metadata: {name: p}\nspec:\n  egress:\n  - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]\n    ports: [{port: 80}, {port: 81}]\n");
        assert_eq!(network_policy(&ok), Ok(()));
        // 300 peers x 300 ports: each list is under its limit, the product is not.
        let peers: Vec<String> = (0..300).map(|i| format!("{{ipBlock: {{cidr: 10.0.{}.{}/32}}}}", i / 256, i % 256)).collect();
        let ports: Vec<String> = (1..=300).map(|p| format!("{{port: {p}}}")).collect();
        let wide = policy(&format!("metadata: {{name: p}}\nspec:\n  egress:\n  - to: [{}]\n    ports: [{}]\n", peers.join(", "), ports.join(", ")));
        let err = network_policy(&wide).unwrap_err();
        assert_eq!(err.field, "spec.egress");
        assert!(err.message.contains("90000"), "{}", err.message);
    }
}
