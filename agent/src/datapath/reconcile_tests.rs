//! Plans and their execution against the recording writer: no kernel.
use agent_common::{PortRule, RuleSet, FLAG_FAIL_CLOSED, REASON_CLUSTER_INTERNAL, REASON_GATEWAY, REASON_NETWORK_POLICY};

use super::*;
use crate::{
    cgroups::{CgroupDir, PodCgroups},
    datapath::{ids::MAX_WORKLOAD_ID, writer::RecordingWriter},
    desired::{DesiredWorkload, Mode, TrieEntry},
};

fn rules(reason: u8) -> RuleSet {
    let mut r = RuleSet { count: 1, ..Default::default() };
    r.rules[0] = PortRule::any(reason);
    r
}

fn entries(nets: &[&str], reason: u8) -> Vec<TrieEntry> {
    nets.iter().map(|n| TrieEntry { net: n.parse().unwrap(), rules: rules(reason) }).collect()
}

fn workload(uid: &str, policy: u32) -> (String, DesiredWorkload) {
    let w = DesiredWorkload {
        uid: uid.into(),
        namespace: "ns".into(),
        name: format!("pod-{uid}"),
        mode: Mode::Enforce,
        flags: 0,
        policy,
        sandboxed: None,
    };
    (uid.to_string(), w)
}

fn desired(policies: Vec<(u32, Vec<TrieEntry>)>, workloads: Vec<(String, DesiredWorkload)>) -> DesiredState {
    DesiredState { policies: policies.into_iter().collect(), workloads: workloads.into_iter().collect(), ..Default::default() }
}

/// Pod `uid` has cgroup `id` (no children); markers 1 and 2.
fn index(pods: &[(&str, u64)]) -> CgroupIndex {
    let mut idx = CgroupIndex::default();
    for (uid, id) in pods {
        let pod = CgroupDir { path: format!("/cg/{uid}").into(), id: *id };
        idx.pods.insert(uid.to_string(), PodCgroups { pod, children: Vec::new() });
    }
    idx.markers = vec![CgroupDir { path: "/cg/kubepods".into(), id: 1 }, CgroupDir { path: "/cg/kubepods/besteffort".into(), id: 2 }];
    idx
}

fn run(d: &DesiredState, idx: &CgroupIndex, w: &mut RecordingWriter, shadow: &mut Shadow) -> (Plan, ApplyReport) {
    let p = plan(d, idx, &ApplyInputs::default(), shadow, MAX_WORKLOAD_ID);
    let r = execute(&p, d, w, shadow);
    (p, r)
}

fn cgroup_entry(w: &RecordingWriter, id: u64) -> Option<CgroupEntry> {
    w.log.iter().rev().find_map(|x| match x {
        Write::Cgroup { id: i, entry } if *i == id => Some(*entry),
        _ => None,
    })
}

fn base() -> DesiredState {
    desired(
        vec![(0, entries(&["10.244.0.20/32"], REASON_GATEWAY)), (77, entries(&["10.0.0.0/8", "fd00::/8"], REASON_CLUSTER_INTERNAL))],
        vec![workload("a", 77), workload("b", 0)],
    )
}

#[test]
fn rules_come_before_cgroups_and_a_second_apply_writes_nothing() {
    let d = base();
    let idx = index(&[("a", 100), ("b", 101)]);
    let mut shadow = Shadow::default();
    let mut w = RecordingWriter::default();
    let (_, r) = run(&d, &idx, &mut w, &mut shadow);
    let last_rule = w.log.iter().rposition(|x| matches!(x, Write::Rule { .. })).unwrap();
    let first_cgroup = w.log.iter().position(|x| matches!(x, Write::Cgroup { .. })).unwrap();
    assert!(last_rule < first_cgroup, "{:?}", w.log);
    assert_eq!(r.rules_written, 3);
    assert_eq!(r.cgroups_written, 2 + 2 + 2, "markers, pod cgroups, verify cgroups: {r:?}");
    // Markers first.
    assert!(matches!(w.log[first_cgroup], Write::Cgroup { id: 1, .. }));
    let a = cgroup_entry(&w, 100).unwrap();
    assert_eq!(a.policy, 1, "the first kernel id is 1 whatever the compiler called it");
    let mut again = RecordingWriter::default();
    let (p, r) = run(&d, &idx, &mut again, &mut shadow);
    assert!(p.writes.is_empty() && !r.changed(), "{:?}", p.writes);
}

#[test]
fn live_content_keeps_its_id_across_restarts_and_new_content_gets_a_fresh_one() {
    let idx = index(&[("a", 100), ("c", 102)]);
    let mut shadow = Shadow::default();
    run(&base(), &idx, &mut RecordingWriter::default(), &mut shadow);
    // A restart: the shadow is read back from the maps (here: a copy).
    let mut restarted = shadow.clone();
    // The compiler now numbers differently and adds a new rule set.
    let d = desired(
        vec![
            (0, entries(&["10.244.0.20/32"], REASON_GATEWAY)),
            (5, entries(&["203.0.113.0/24"], REASON_NETWORK_POLICY)),
            (9, entries(&["10.0.0.0/8", "fd00::/8"], REASON_CLUSTER_INTERNAL)),
        ],
        vec![workload("a", 9), workload("c", 5)],
    );
    let mut w = RecordingWriter::default();
    let (p, _) = run(&d, &idx, &mut w, &mut restarted);
    assert_eq!(p.policy_ids[&9], 1, "live content keeps id 1");
    assert_eq!(p.policy_ids[&5], 2, "new content gets a fresh id");
    assert!(
        !w.log.iter().any(|x| matches!(x, Write::Rule { policy: 1, .. } | Write::RemoveRule { policy: 1, .. })),
        "a live id was rewritten: {:?}",
        w.log
    );
    assert_eq!(cgroup_entry(&w, 102).unwrap().policy, 2);
}

#[test]
fn a_policy_that_takes_over_a_compiler_id_cannot_move_another_pods_policy() {
    let idx = index(&[("victim", 100), ("tenant", 101)]);
    let mut shadow = Shadow::default();
    let victim_rules = entries(&["10.96.0.0/12"], REASON_CLUSTER_INTERNAL);
    let d1 = desired(vec![(0, vec![]), (42, victim_rules.clone())], vec![workload("victim", 42)]);
    run(&d1, &idx, &mut RecordingWriter::default(), &mut shadow);
    // The tenant's content arrives with the very compiler id the victim had
    // (a crafted hash collision); the victim's content moves to another.
    let tenant_rules = entries(&["0.0.0.0/0"], REASON_NETWORK_POLICY);
    let d2 = desired(vec![(0, vec![]), (42, tenant_rules), (43, victim_rules)], vec![workload("victim", 43), workload("tenant", 42)]);
    let mut w = RecordingWriter::default();
    let (p, _) = run(&d2, &idx, &mut w, &mut shadow);
    assert_eq!(p.policy_ids[&43], 1, "the victim keeps its kernel id");
    assert_eq!(p.policy_ids[&42], 2, "the tenant gets a fresh one");
    assert_eq!(cgroup_entry(&w, 101).unwrap().policy, 2);
    assert!(cgroup_entry(&w, 100).is_none(), "the victim's entry did not need to change");
    assert!(!w.log.iter().any(|x| matches!(x, Write::Rule { policy: 1, .. })), "{:?}", w.log);
}

#[test]
fn a_full_rule_map_fails_the_affected_pods_closed_and_the_rest_goes_on() {
    let idx = index(&[("a", 100), ("b", 101)]);
    let mut shadow = Shadow::default();
    // Room for the global entry and one more: policy 77 needs two v4 entries.
    let d = desired(
        vec![(0, entries(&["10.244.0.20/32"], REASON_GATEWAY)), (77, entries(&["10.0.0.0/8", "192.168.0.0/16"], REASON_CLUSTER_INTERNAL))],
        vec![workload("a", 77), workload("b", 0)],
    );
    let mut w = RecordingWriter::with_capacity("TG_RULES_V4", 2);
    let (_, r) = run(&d, &idx, &mut w, &mut shadow);
    assert_eq!(r.full_maps, vec!["TG_RULES_V4".to_string()], "{r:?}");
    assert_eq!(r.fail_closed, vec!["ns/pod-a".to_string()], "{r:?}");
    let a = cgroup_entry(&w, 100).unwrap();
    assert!(a.flags & FLAG_FAIL_CLOSED != 0 && a.policy == 0, "{a:?}");
    let b = cgroup_entry(&w, 101).unwrap();
    assert_eq!(b.flags & FLAG_FAIL_CLOSED, 0, "{b:?}");
    // The global rule went in (it came first).
    assert!(w.log.iter().any(|x| matches!(x, Write::Rule { policy: 0, .. })));
    // Next apply, with room again: the pod gets a complete policy under a
    // fresh id; the half-written one is removed.
    let mut roomy = RecordingWriter::default();
    let (p, r) = run(&d, &idx, &mut roomy, &mut shadow);
    assert!(r.full_maps.is_empty() && r.fail_closed.is_empty(), "{r:?}");
    let a = cgroup_entry(&roomy, 100).unwrap();
    assert_eq!((a.flags & FLAG_FAIL_CLOSED, a.policy), (0, p.policy_ids[&77]));
    assert_ne!(p.policy_ids[&77], 1, "the half-written id is never reused for other content");
    assert!(roomy.log.iter().any(|x| matches!(x, Write::RemoveRule { policy: 1, .. })), "{:?}", roomy.log);
}

#[test]
fn a_full_cgroup_map_leaves_new_pods_under_their_marker() {
    let idx = index(&[("a", 100), ("b", 101)]);
    let mut shadow = Shadow::default();
    // Two markers and two more entries fit.
    let mut w = RecordingWriter::with_capacity("TG_CGROUPS", 4);
    let (_, r) = run(&base(), &idx, &mut w, &mut shadow);
    assert_eq!(r.full_maps, vec!["TG_CGROUPS".to_string()]);
    assert!(cgroup_entry(&w, 1).is_some() && cgroup_entry(&w, 2).is_some(), "markers first: {:?}", w.log);
    assert!(!r.fail_closed.is_empty(), "{r:?}");
    assert_eq!(r.insert_failures["TG_CGROUPS"], 2);
}

#[test]
fn removed_pods_retire_and_unused_policies_go() {
    let idx = index(&[("a", 100), ("b", 101)]);
    let mut shadow = Shadow::default();
    run(&base(), &idx, &mut RecordingWriter::default(), &mut shadow);
    let d = desired(vec![(0, entries(&["10.244.0.20/32"], REASON_GATEWAY))], vec![workload("b", 0)]);
    let mut w = RecordingWriter::default();
    let (_, r) = run(&d, &index(&[("b", 101)]), &mut w, &mut shadow);
    assert_eq!(r.workloads_retired, 1);
    assert_eq!(r.rules_removed, 2, "{:?}", w.log);
    assert_eq!(r.cgroups_removed, 2, "pod and verify cgroup of a");
    let removals = w.log.iter().position(|x| matches!(x, Write::RemoveCgroup { .. })).unwrap();
    assert!(w.log[removals..].iter().all(|x| !matches!(x, Write::Cgroup { .. } | Write::Rule { .. })));
    assert!(shadow.policies.keys().all(|id| *id == 0), "{:?}", shadow.policies.keys());
}

#[test]
fn empty_policies_count_as_live() {
    // A deny-all policy has no entries; its id is live through the cgroups.
    let idx = index(&[("a", 100), ("b", 101)]);
    let mut shadow = Shadow::default();
    let d = desired(vec![(0, vec![]), (3, vec![]), (4, entries(&["10.0.0.0/8"], REASON_CLUSTER_INTERNAL))], vec![workload("a", 3), workload("b", 4)]);
    let (p, _) = run(&d, &idx, &mut RecordingWriter::default(), &mut shadow);
    assert_ne!(p.policy_ids[&3], p.policy_ids[&4]);
    let (p2, _) = run(&d, &idx, &mut RecordingWriter::default(), &mut shadow);
    assert_eq!(p.policy_ids, p2.policy_ids);
}

#[test]
fn pods_beyond_the_workload_capacity_fail_closed() {
    let idx = index(&[("a", 100), ("b", 101)]);
    let mut shadow = Shadow::default();
    let p = plan(&base(), &idx, &ApplyInputs::default(), &shadow, 2);
    let r = execute(&p, &base(), &mut RecordingWriter::default(), &mut shadow);
    assert_eq!(r.full_maps, vec!["TG_WORKLOADS".to_string()]);
    assert_eq!(r.fail_closed, vec!["ns/pod-b".to_string()]);
    assert_eq!(p.registered.len(), 1);
}
