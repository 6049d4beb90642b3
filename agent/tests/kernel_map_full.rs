//! A full map never opens anything, in the real kernel: each map the
//! reconciler writes is shrunk (a private load with smaller max_entries),
//! filled by a real apply, and the kernel's own verdict (tg_verify,
//! BPF_PROG_TEST_RUN) shows the affected pod failing closed while the
//! others are registered; the report names the full map.
mod support;
use tollgate::{
    cgroups::CgroupIndex,
    datapath::{
        ids::{decode, verify_cgroup},
        load::{load_object_with, LoadOptions},
        packet::{self, Protocol},
        pinned::Maps,
        reconcile::{self, ApplyInputs},
        test_run, DatapathError,
    },
    desired::DesiredState,
};

fn desired() -> DesiredState {
    support::compile(&support::snapshot(""))
}

fn addresses(d: &DesiredState) -> ApplyInputs {
    let ips = |last: u8| vec![format!("10.244.0.{last}").parse().unwrap(), format!("fd00:10:244::{last}").parse().unwrap()];
    let mut inputs = ApplyInputs::default();
    for (uid, w) in &d.workloads {
        let last = match (w.namespace.as_str(), w.name.as_str()) {
            ("test-egress", _) => 10,
            ("default", _) => 11,
            ("istio-system", _) => 20,
            _ => 30,
        };
        inputs.addresses.insert(uid.clone(), ips(last));
    }
    inputs
}

/// Applies with `map` shrunk to `size`; the kernel verdict of
/// test-egress/sleep to the cluster, gateway and outside, or None when it
/// is not registered at all.
fn apply_shrunk(map: &'static str, size: u32) -> (reconcile::ApplyReport, Option<Vec<(bool, String)>>, usize) {
    let (_g, pins) = support::pins(&format!("full-{map}"));
    let mut ebpf = load_object_with(&pins, &LoadOptions { max_entries: vec![(map, size)], ..Default::default() }).unwrap();
    let mut maps = Maps::take(&mut ebpf).unwrap();
    let d = desired();
    let (report, registered) = reconcile::apply_with(&mut maps, &d, &CgroupIndex::default(), &addresses(&d)).unwrap();
    let te = maps
        .workloads
        .iter()
        .filter_map(Result::ok)
        .find(|(_, w)| decode(w).0 == "test-egress")
        .map(|(id, _)| id);
    let prog = test_run::load_skb_program(&mut ebpf, "tg_verify").unwrap();
    let verdicts = te.and_then(|id| {
        let mut out = Vec::new();
        for dst in ["10.244.0.11", "10.244.0.20", "203.0.113.10", "fd00:10:244::11"] {
            let dst: std::net::IpAddr = dst.parse().unwrap();
            let src = if dst.is_ipv4() { "10.244.0.10".parse().unwrap() } else { "fd00:10:244::10".parse().unwrap() };
            let frame = packet::build(src, dst, Protocol::Tcp, 40000, 8080);
            match test_run::verify(prog, verify_cgroup(id), &frame, false) {
                Ok(v) => out.push((v.verdict == 0, agent_common::reason_code(v.reason).to_string())),
                Err(DatapathError::NoVerdict) => return None,
                Err(e) => panic!("{e}"),
            }
        }
        Some(out)
    });
    (report, verdicts, registered.len())
}

fn denied_fail_closed(v: &[(bool, String)]) -> bool {
    v.iter().all(|(allow, reason)| !allow && reason == "fail-closed")
}

#[test]
fn baseline_without_a_full_map() {
    let (report, verdicts, registered) = apply_shrunk("TG_SYN_SEEN", 16);
    assert!(report.full_maps.is_empty(), "{report:?}");
    let v = verdicts.expect("test-egress/sleep registered");
    assert_eq!(v[0], (true, "cluster-internal".to_string()), "{v:?}");
    assert_eq!(v[1], (true, "gateway".to_string()), "{v:?}");
    assert_eq!(v[2], (false, "no-rule".to_string()), "{v:?}");
    assert_eq!(registered, 4);
}

#[test]
fn full_rule_maps_fail_the_pod_closed() {
    let d = desired();
    let global = &d.policies[&0];
    for (map, global_entries) in [
        ("TG_RULES_V4", global.iter().filter(|e| e.net.addr().is_ipv4()).count()),
        ("TG_RULES_V6", global.iter().filter(|e| e.net.addr().is_ipv6()).count()),
    ] {
        // Room for the node-wide rules only: test-egress/sleep's own
        // policy cannot be written.
        let (report, verdicts, registered) = apply_shrunk(map, global_entries as u32);
        assert_eq!(report.full_maps, vec![map.to_string()], "{report:?}");
        assert_eq!(report.fail_closed, vec!["test-egress/sleep".to_string()], "{report:?}");
        let v = verdicts.expect("registered, failing closed");
        assert!(denied_fail_closed(&v), "{map}: {v:?}");
        assert_eq!(registered, 4, "the other pods are registered");
    }
}

#[test]
fn full_workload_and_address_maps_fail_pods_closed() {
    // Two workload ids fit (id 0 is the node bucket): the other pods stay
    // unregistered (denied as unclassified by the kubepods markers).
    let (report, _, registered) = apply_shrunk("TG_WORKLOADS", 2);
    assert_eq!(report.full_maps, vec!["TG_WORKLOADS".to_string()], "{report:?}");
    assert_eq!(report.fail_closed.len(), 3, "{report:?}");
    assert_eq!(registered, 1);
    let (report, verdicts, _) = apply_shrunk("TG_ADDRS", 1);
    assert_eq!(report.full_maps, vec!["TG_ADDRS".to_string()], "{report:?}");
    assert_eq!(report.fail_closed.len(), 3, "{report:?}");
    if report.fail_closed.contains(&"test-egress/sleep".to_string()) {
        assert!(denied_fail_closed(&verdicts.unwrap()));
    }
}

#[test]
fn a_full_cgroup_map_registers_what_fits() {
    let (report, verdicts, _) = apply_shrunk("TG_CGROUPS", 2);
    assert_eq!(report.full_maps, vec!["TG_CGROUPS".to_string()], "{report:?}");
    assert_eq!(report.fail_closed.len(), 2, "{report:?}");
    assert_eq!(report.cgroups_written, 2);
    if report.fail_closed.contains(&"test-egress/sleep".to_string()) {
        assert!(verdicts.is_none(), "a pod whose entry did not fit has no entry: {verdicts:?}");
    }
}
