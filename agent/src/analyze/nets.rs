//! Address-range arithmetic for the checks: is a range inside the
//! cluster, and what counts as inside.
use ipnet::IpNet;

use crate::compiler::service_entries::parse_net;

use super::mesh_internal::is_wide;
use super::Input;

/// The private ranges (RFC 1918, RFC 4193) taken as "inside" when no
/// cluster CIDR is configured.
pub const PRIVATE_RANGES: [&str; 4] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"];

/// Is every address of `net` in one of `covers`? Exact, by splitting
/// `net` only where a smaller range of `covers` lies inside it.
pub fn is_covered(net: IpNet, covers: &[IpNet]) -> bool {
    let net = net.trunc();
    if covers.iter().any(|c| c.contains(&net)) {
        return true;
    }
    if !covers.iter().any(|c| net.contains(c)) {
        return false;
    }
    match net.subnets(net.prefix_len().saturating_add(1)) {
        Ok(halves) => halves.into_iter().all(|half| is_covered(half, covers)),
        Err(_) => false,
    }
}

/// What counts as inside the cluster for these checks, and whether the
/// cluster CIDRs were configured (else the private ranges stand in):
/// the cluster CIDRs and the addresses of `MESH_INTERNAL` ServiceEntries,
/// except those too wide to trust (`wide-mesh-internal` reports them).
pub(crate) fn inside(input: &Input<'_>) -> (Vec<IpNet>, bool) {
    let configured = !input.config.cluster_cidrs.is_empty();
    let mut nets: Vec<IpNet> = if configured {
        input.config.cluster_cidrs.iter().map(IpNet::trunc).collect()
    } else {
        PRIVATE_RANGES.iter().filter_map(|n| n.parse().ok()).collect()
    };
    for se in input.snapshot.service_entries.iter().filter(|se| se.spec.is_mesh_internal()) {
        let endpoints = se.spec.endpoints.iter().map(|e| e.address.as_str());
        let addresses = se.spec.addresses.iter().map(String::as_str).chain(endpoints);
        nets.extend(addresses.filter_map(parse_net).filter(|n| !is_wide(n)));
    }
    (nets, configured)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("test net")).collect()
    }

    #[test]
    fn coverage_is_exact() {
        let covers = nets(&["10.0.0.0/9", "10.128.0.0/9", "fd00::/8"]);
        assert!(is_covered("10.0.0.0/8".parse().expect("net"), &covers), "two halves");
        assert!(is_covered("10.1.2.3/32".parse().expect("net"), &covers));
        assert!(!is_covered("0.0.0.0/0".parse().expect("net"), &covers));
        assert!(!is_covered("11.0.0.0/8".parse().expect("net"), &covers));
        assert!(!is_covered("::/0".parse().expect("net"), &covers));
        assert!(is_covered("fd00:1::/64".parse().expect("net"), &covers));
        assert!(!is_covered("0.0.0.0/0".parse().expect("net"), &[]));
        let host = nets(&["1.2.3.4/32"]);
        assert!(!is_covered("1.2.3.0/24".parse().expect("net"), &host));
        assert!(is_covered("0.0.0.0/0".parse().expect("net"), &nets(&["0.0.0.0/1", "128.0.0.0/1"])));
    }
}
