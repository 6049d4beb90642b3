//! Manifest bytes through everything the agent does with them before the
//! kernel: the files source's reader (YAML stream → typed objects, with
//! diagnostics), `compile`, `bind` with made-up DNS answers, `analyze`,
//! and the datapath `plan` (the list of map writes) for a node where every
//! pod has a cgroup. Cluster input must never panic any of them.
//!
//! Input: one byte choosing a small compiler configuration, then the
//! text of up to four manifest files separated by NUL bytes (so the same
//! object can come from two files).
//!
//! Checked besides "no panic": `bind` is deterministic; every trie entry
//! is a truncated prefix with at most `MAX_PORT_RULES` port rules and its
//! rule-trie key splits back to (policy, prefix); every workload points at
//! a policy that exists; the plan writes a cgroup entry for every pod.
#![no_main]

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use agent_common::{MAX_PORT_RULES, POLICY_GLOBAL};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use tollgate::cgroups::{CgroupDir, CgroupIndex, PodCgroups};
use tollgate::compiler::{self, CompilerConfig};
use tollgate::datapath::{inputs, plan, reconcile::ApplyInputs, rule_keys, shadow::Shadow};
use tollgate::model::Snapshot;
use tollgate::source::files;

fn config(sel: u8) -> CompilerConfig {
    let cidrs: &[&str] = match sel & 3 {
        0 => &[],
        1 => &["10.244.0.0/16", "10.96.0.0/12", "fd00:10:244::/56"],
        2 => &["0.0.0.0/0", "::/0"],
        _ => &["10.0.0.0/8", "10.0.0.0/8", "10.1.2.3/32"],
    };
    let trusted: Vec<String> = match (sel >> 2) & 3 {
        0 => Vec::new(),
        1 => vec!["kube-system".into()],
        2 => vec!["x".into(), "y".into(), "istio-system".into()],
        _ => vec!["".into()],
    };
    let osm = ((sel >> 4) & 1 == 1).then(|| "x".to_owned());
    let node_name = match (sel >> 5) & 3 {
        0 => None,
        1 => Some("node-1".to_owned()),
        2 => Some(String::new()),
        _ => Some("node-2".to_owned()),
    };
    CompilerConfig {
        node_name,
        cluster_cidrs: cidrs.iter().filter_map(|c| c.parse::<IpNet>().ok()).collect(),
        ..Default::default()
    }
    .with_trust(trusted, osm)
}

fn hash(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Made-up answers: none, IPv4, IPv6 or both, from the name's hash.
fn answers(hosts: &std::collections::BTreeSet<String>) -> BTreeMap<String, Vec<IpAddr>> {
    let mut out = BTreeMap::new();
    for h in hosts {
        let x = hash(h);
        let v4 = IpAddr::V4(Ipv4Addr::from((x >> 8) as u32));
        let v6 = IpAddr::V6(Ipv6Addr::from(u128::from(x) << 64 | 1));
        let ips = match x & 3 {
            0 => continue,
            1 => vec![v4],
            2 => vec![v6],
            _ => vec![v4, v6, v4],
        };
        out.insert(h.clone(), ips);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut snapshot = Snapshot::new();
    let mut diags = Vec::new();
    for (i, file) in text.split('\0').take(4).enumerate() {
        files::add_file_text(&mut snapshot, &format!("f{i}.yaml"), file, &mut diags);
    }
    let config = config(sel);
    let policy = compiler::compile(&snapshot, &config);
    let resolved = answers(&policy.hosts);
    let desired = compiler::bind(&policy, &resolved);
    assert_eq!(desired, compiler::bind(&policy, &resolved), "bind is not deterministic");
    let _ = tollgate::analyze::analyze(&snapshot, &policy, &config);

    for (id, entries) in &desired.policies {
        for e in entries {
            assert_eq!(e.net, e.net.trunc(), "policy {id}: untruncated prefix {}", e.net);
            assert!(usize::from(e.rules.count) <= MAX_PORT_RULES, "policy {id}: {} port rules", e.rules.count);
            let back = match rule_keys::key(*id, &e.net) {
                rule_keys::RuleKey::V4(k) => rule_keys::decode_v4(&k),
                rule_keys::RuleKey::V6(k) => rule_keys::decode_v6(&k),
            };
            assert_eq!(back, Some((*id, e.net)), "rule key of policy {id} {}", e.net);
        }
    }
    for w in desired.workloads.values() {
        assert!(
            w.policy == POLICY_GLOBAL || desired.policies.contains_key(&w.policy),
            "workload {}/{} points at policy {} that does not exist",
            w.namespace,
            w.name,
            w.policy
        );
    }

    // Every pod of the node has a cgroup (ids made up), as on a node.
    let mut cgroups = CgroupIndex::default();
    for (n, uid) in desired.workloads.keys().enumerate() {
        let id = 1000 + n as u64 * 2;
        let dir = |id: u64| CgroupDir { path: PathBuf::from(format!("/kubepods/pod{uid}/{id}")), id };
        cgroups.pods.insert(uid.clone(), PodCgroups { pod: dir(id), children: vec![dir(id + 1)] });
    }
    let apply = ApplyInputs { always_allowed: vec![7], addresses: inputs::pod_addresses(&snapshot.pods) };
    let planned = plan::plan(&desired, &cgroups, &apply, &Shadow::default(), 16_384);
    assert_eq!(planned.writes.len(), planned.owners.len());
    for uid in desired.workloads.keys() {
        assert!(
            planned.registered.contains_key(uid) || planned.unassigned.contains(uid),
            "pod {uid} neither registered nor reported unassigned"
        );
    }
});
