//! What the node adds to an apply (see [`super::reconcile::ApplyInputs`]):
//! the agent's own cgroup and each pod's own addresses.
use std::{
    collections::BTreeMap,
    net::IpAddr,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use k8s_openapi::api::core::v1::Pod;

/// The cgroup v2 path of this process, relative to the v2 mount
/// (`0::/path` in /proc/self/cgroup).
fn own_cgroup_rel() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(PathBuf::from(rel.trim_start_matches('/')))
}

/// The id of this process's cgroup, when it lies under `cgroup_root`
/// (the programs only see cgroups below where they are attached); the
/// agent registers it as always allowed, so that it is never denied as
/// an unclassified pod. `mount` is the cgroup v2 mount.
///
/// In a container with a cgroup namespace of its own (a DaemonSet pod on
/// cgroup v2), `/proc/self/cgroup` says `0::/`: the process's cgroup is the
/// root of its namespace, which is what the container sees mounted at
/// `mount`; the id is then that directory's inode (kernfs ids are the
/// same through every mount), unless it is the attach root itself.
pub fn own_cgroup(mount: &Path, cgroup_root: &Path) -> Option<u64> {
    let rel = own_cgroup_rel()?;
    let root_id = std::fs::metadata(cgroup_root).ok().map(|m| m.ino());
    if rel.as_os_str().is_empty() {
        let id = std::fs::metadata(mount).ok().map(|m| m.ino())?;
        return (Some(id) != root_id).then_some(id);
    }
    let path = mount.join(rel);
    if !path.starts_with(cgroup_root) {
        return None;
    }
    std::fs::metadata(&path).ok().map(|m| m.ino())
}

/// Each pod's own addresses (`status.podIPs`, else `status.podIP`), by
/// UID as written (the key of `DesiredState::workloads`). Host-network pods are left out: their addresses are the node's,
/// which they share with everything else on it.
pub fn pod_addresses<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> BTreeMap<String, Vec<IpAddr>> {
    let mut out = BTreeMap::new();
    for pod in pods {
        let Some(uid) = pod.metadata.uid.clone() else { continue };
        if pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false) {
            continue;
        }
        let Some(st) = &pod.status else { continue };
        let mut ips: Vec<IpAddr> = Vec::new();
        for text in st.pod_ips.iter().flatten().map(|p| p.ip.as_str()).chain(st.pod_ip.as_deref()) {
            if let Ok(ip) = text.parse::<IpAddr>() {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        if !ips.is_empty() {
            out.insert(uid, ips);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_by_uid_without_host_network_pods() {
        let pods: Vec<Pod> = serde_yaml::from_str(
            r#"
- metadata: {name: a, uid: 6F1C2A3E-0000-4000-8000-000000000010}
  status: {podIP: 10.244.0.10, podIPs: [{ip: 10.244.0.10}, {ip: "fd00::10"}]}
- metadata: {name: h, uid: u-2}
  spec: {hostNetwork: true, containers: []}
  status: {podIP: 192.168.1.5}
- metadata: {name: bad, uid: u-3}
  status: {podIP: not-an-ip}
"#,
        )
        .unwrap();
        let got = pod_addresses(&pods);
        assert_eq!(got.len(), 1, "{got:?}");
        let a = &got["6F1C2A3E-0000-4000-8000-000000000010"];
        assert_eq!(a, &vec!["10.244.0.10".parse::<IpAddr>().unwrap(), "fd00::10".parse().unwrap()]);
    }
}
