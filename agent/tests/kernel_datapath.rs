//! The datapath against the real kernel: a private, unattached load of the
//! embedded programs, filled by the reconciler, asked through
//! BPF_PROG_TEST_RUN. Needs root and a bpffs at /sys/fs/bpf; fails (never
//! skips) without them.
mod support;
use support::{compile, pins, snapshot};
use agent_common::{counter_index, CounterValue, VERDICT_ALLOW, VERDICT_DROP};
use aya::maps::PerCpuValues;
use tollgate::{
    cgroups::CgroupIndex,
    datapath::{
        ids::{verify_cgroup, RETIRED_WORKLOAD},
        load::load_object,
        packet::{self, Protocol},
        pinned::Maps,
        reconcile, test_run,
    },
};

fn workload_id(maps: &Maps, ns: &str, pod: &str) -> u32 {
    maps.workloads
        .iter()
        .filter_map(Result::ok)
        .find(|(_, w)| {
            let (n, p, _) = tollgate::datapath::ids::decode(w);
            n == ns && p == pod
        })
        .map(|(id, _)| id)
        .unwrap_or_else(|| panic!("{ns}/{pod} not registered"))
}

fn ask(prog: &aya::programs::CgroupSkb, id: u32, dst: &str, proto: Protocol, port: u16) -> (bool, &'static str) {
    ask_on(prog, id, dst, proto, port, false)
}

fn ask_on(
    prog: &aya::programs::CgroupSkb,
    id: u32,
    dst: &str,
    proto: Protocol,
    port: u16,
    on_loopback: bool,
) -> (bool, &'static str) {
    let dst: std::net::IpAddr = dst.parse().unwrap();
    let src: std::net::IpAddr = if dst.is_ipv4() { "10.244.0.10".parse().unwrap() } else { "fd00:10:244::10".parse().unwrap() };
    let frame = packet::build(src, dst, proto, 40000, port);
    let v = test_run::verify(prog, verify_cgroup(id), &frame, on_loopback).unwrap();
    (v.verdict == VERDICT_ALLOW, agent_common::reason_code(v.reason))
}

#[test]
fn second_apply_of_the_same_state_writes_nothing() {
    let (_g, pd) = pins("idem");
    let mut ebpf = load_object(&pd).unwrap();
    let mut maps = Maps::take(&mut ebpf).unwrap();
    let desired = compile(&snapshot(""));
    let (first, reg) = reconcile::apply(&mut maps, &desired, &CgroupIndex::default()).unwrap();
    assert!(first.rules_written > 0 && first.cgroups_written == 4 && first.workloads_written == 4, "{first:?}");
    assert_eq!(reg.len(), 4);
    let (second, _) = reconcile::apply(&mut maps, &desired, &CgroupIndex::default()).unwrap();
    assert!(!second.changed(), "re-applying rewrote {second:?}");
}

#[test]
fn network_policy_truth_table_in_the_kernel() {
    let (_g, pd) = pins("np");
    let mut ebpf = load_object(&pd).unwrap();
    let mut maps = Maps::take(&mut ebpf).unwrap();
    let policy = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-out, namespace: test-egress}
spec:
  podSelector: {matchLabels: {app: sleep}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {cidr: 198.51.100.0/24, except: [198.51.100.128/25]}
    ports:
    - {protocol: TCP, port: 443}
    - {protocol: UDP, port: 5000, endPort: 5010}
"#;
    let desired = compile(&snapshot(policy));
    reconcile::apply(&mut maps, &desired, &CgroupIndex::default()).unwrap();
    let prog = test_run::load_skb_program(&mut ebpf, "tg_verify").unwrap();
    let id = workload_id(&maps, "test-egress", "sleep");
    let cases: [(&str, Protocol, u16, bool, &str); 9] = [
        ("198.51.100.10", Protocol::Tcp, 443, true, "network-policy"),
        ("198.51.100.10", Protocol::Tcp, 80, false, "no-rule"),
        ("198.51.100.200", Protocol::Tcp, 443, false, "no-rule"),
        ("198.51.100.10", Protocol::Udp, 5005, true, "network-policy"),
        ("198.51.100.10", Protocol::Udp, 5011, false, "no-rule"),
        ("198.51.100.10", Protocol::Icmp, 0, false, "no-rule"),
        // A policy selects the pod: the cluster CIDRs are no longer open...
        ("10.244.0.11", Protocol::Tcp, 80, false, "no-rule"),
        // ...but the gateway and DNS always are.
        ("10.244.0.20", Protocol::Tcp, 8080, true, "gateway"),
        ("10.96.0.10", Protocol::Udp, 53, true, "dns"),
    ];
    for (dst, proto, port, allow, reason) in cases {
        let got = ask(prog, id, dst, proto, port);
        assert_eq!(got, (allow, reason), "{dst} {proto:?}/{port}");
    }
    // To its own address the packet leaves on `lo` and never leaves the
    // pod, whatever the policy says.
    assert_eq!(ask_on(prog, id, "10.244.0.10", Protocol::Tcp, 80, true), (true, "loopback"));
    let other = workload_id(&maps, "default", "sleep");
    assert_eq!(ask(prog, other, "198.51.100.200", Protocol::Tcp, 1), (true, "not-enforced"));
    assert_eq!(ask_on(prog, other, "10.244.0.11", Protocol::Tcp, 80, true), (true, "not-enforced"));
}

#[test]
fn counters_of_removed_pods_move_to_the_node_total() {
    let (_g, pd) = pins("retire");
    let mut ebpf = load_object(&pd).unwrap();
    let mut maps = Maps::take(&mut ebpf).unwrap();
    let snap = snapshot("");
    let desired = compile(&snap);
    reconcile::apply(&mut maps, &desired, &CgroupIndex::default()).unwrap();
    let id = workload_id(&maps, "test-egress", "sleep");
    let index = counter_index(id, VERDICT_DROP, 8).unwrap();
    let n = aya::util::nr_cpus().unwrap();
    let vals = PerCpuValues::try_from(vec![CounterValue { packets: 3, bytes: 100 }; n]).unwrap();
    maps.counters.set(index, vals, 0).unwrap();
    let mut smaller = desired.clone();
    smaller.workloads.retain(|_, w| !(w.namespace == "test-egress" && w.name == "sleep"));
    let (report, _) = reconcile::apply(&mut maps, &smaller, &CgroupIndex::default()).unwrap();
    assert_eq!(report.workloads_retired, 1);
    let left: u64 = maps.counters.get(&index, 0).unwrap().iter().map(|v| v.packets).sum();
    assert_eq!(left, 0, "the gone pod's counters remain (a new pod with its id would inherit them)");
    let retired = maps.counters.get(&counter_index(RETIRED_WORKLOAD, VERDICT_DROP, 8).unwrap(), 0).unwrap();
    let total: u64 = retired.iter().map(|v| v.packets).sum();
    assert_eq!(total, 3 * n as u64);
}
