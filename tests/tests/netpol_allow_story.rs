//! NetworkPolicy story (examples/netpol-stories/allow-y-a): an egress policy
//! in the enforced namespace x lets x/a reach only pods app=a of namespace y
//! on TCP 80. Real connections from x/a through the kernel, counters and
//! flows, `tollgate verify` against the running agent's pins; then the policy
//! file is deleted and x/a falls back to "everything inside the cluster".
//!
//! Needs root, bpffs, cgroup v2, iproute2 and the agent binary
//! (`cargo xtask build`, or TOLLGATE_BIN). Missing prerequisites fail the test.

use std::path::Path;
use std::time::Duration;
use tollgate_e2e::agent::default_tollgate_bin;
use tollgate_e2e::checks::{
    assert_conn_refused, assert_dropped, assert_eperm, assert_http_ok, assert_verdict, counters, matched, wait_counters,
    wait_dropped_flow, wait_probe,
};
use tollgate_e2e::pods::{self, NETPOL_X_A as XA, NETPOL_Y_A as YA, NETPOL_Y_B as YB};
use tollgate_e2e::story::{v4, v6, Story, StoryOpts};

const T: Duration = Duration::from_secs(3);
const EXAMPLE: &str = "netpol-stories/allow-y-a";
const POLICY: &str = "x/allow-y-a-80";

#[test]
fn network_policy_allows_only_y_a_port_80() {
    tollgate_e2e::util::require_environment();
    let e2e = Path::new(env!("CARGO_BIN_EXE_tollgate-e2e"));
    let opts = StoryOpts {
        extra_pods: pods::NETPOL_PODS.to_vec(),
        examples: vec![EXAMPLE.into()],
        pod_servers: vec![(YA, vec![80, 81]), (YB, vec![80, 81])],
        enforced: vec![XA],
        ..Default::default()
    };
    let mut story = Story::build_with(e2e, opts).expect("building the sandbox");
    eprintln!("[e2e] run {}: manifests from {}", story.prefix, story.manifests_source);
    story.start_agent(&default_tollgate_bin()).expect("starting the agent");

    // The policy is in force for x/a.
    let st = story.agent().status().expect("status");
    let w = tollgate_e2e::agent::find_workload(&st, "x", "a").expect("x/a in status");
    assert_eq!(w["network_policies"], serde_json::json!([POLICY]), "x/a: {w}");

    // y/a:80 connects, both families, and is counted as allowed.
    let agent = story.agent.as_ref().expect("agent");
    let before = counters(agent, &XA);
    for to in [v4(YA.ipv4, 80), v6(YA.ipv6, 80)] {
        let r = story.probe_tcp(&XA, to, true, T).unwrap();
        assert_http_ok(&r, &format!("x/a -> y/a {to}"), to);
    }
    wait_counters(agent, &XA, "allowed_packets of x/a to rise", |c| c.allowed_packets > before.allowed_packets);

    // Port 81 of the same pod, y/b on 80, and the external host: EPERM at
    // connect, counted as drops.
    for (to, what) in [
        (v4(YA.ipv4, 81), "x/a -> y/a:81"),
        (v6(YA.ipv6, 81), "x/a -> [y/a]:81"),
        (v4(YB.ipv4, 80), "x/a -> y/b:80"),
        (v6(YB.ipv6, 80), "x/a -> [y/b]:80"),
        (v4(pods::EXTERNAL_V4, 80), "x/a -> 203.0.113.10:80"),
        (v6(pods::EXTERNAL_V6, 80), "x/a -> [2001:db8:113::10]:80"),
    ] {
        assert_dropped(&story, &XA, to, what);
    }
    let f = wait_dropped_flow(agent, &XA, v4(YA.ipv4, 81));
    assert_eq!(f["protocol"].as_str(), Some("tcp"), "flow: {f}");
    assert_eq!(f["reason"].as_str(), Some("no-rule"), "flow: {f}");

    // Not in the policy, but always there: cluster DNS and the egress gateway.
    for server in [v4(pods::COREDNS.ipv4, 53), v6(pods::COREDNS.ipv6, 53)] {
        for tcp in [false, true] {
            let r = story.probe_dns(&XA, server, "A", tcp).unwrap();
            assert!(r.ok && r.answers == vec!["203.0.113.10"], "x/a DNS {server} tcp={tcp}: {r:?}");
        }
    }
    let gw = pods::EGRESS_GATEWAY;
    let r = story.probe_tcp(&XA, v4(gw.ipv4, pods::GATEWAY_PORT), true, T).unwrap();
    assert_http_ok(&r, "x/a -> gateway 10.244.0.20:8080", v4(pods::EXTERNAL_V4, 80));
    let r = story.probe_tcp(&XA, v6(gw.ipv6, pods::GATEWAY_PORT), true, T).unwrap();
    assert_http_ok(&r, "x/a -> gateway [fd00:10:244::20]:8080", v6(pods::EXTERNAL_V6, 80));

    // y is not enforced: y/b reaches y/a:81 and the outside.
    let r = story.probe_tcp(&YB, v4(YA.ipv4, 81), true, T).unwrap();
    assert_http_ok(&r, "y/b -> y/a:81 (not enforced)", v4(YA.ipv4, 81));

    // verify, against the running agent's pinned maps.
    let a = story.agent.as_ref().expect("agent");
    let v = a.verify(&["--from-pod", "x/a", "--to-pod", "y/a", "--to-port", "80"]).expect("verify");
    assert_verdict(&v, "allow", "network-policy", "verify x/a -> y/a:80");
    let detail = v["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(&format!("NetworkPolicy {POLICY}")), "verify x/a -> y/a:80 must name the policy: {v}");
    assert!(matched(&v).iter().any(|m| m.contains(POLICY)), "verify x/a -> y/a:80: matched must name {POLICY}: {v}");
    assert_eq!(v["destination"].as_str(), Some("10.244.0.42:80"), "{v}");
    for (args, what) in [
        (["--to-pod", "y/a", "--to-port", "81"], "verify x/a -> y/a:81"),
        (["--to-pod", "y/b", "--to-port", "80"], "verify x/a -> y/b:80"),
        (["--to-ip", "203.0.113.10", "--to-port", "80"], "verify x/a -> 203.0.113.10:80"),
    ] {
        let mut q = vec!["--from-pod", "x/a"];
        q.extend_from_slice(&args);
        let v = a.verify(&q).expect("verify");
        assert_verdict(&v, "deny", "no-rule", what);
        assert!(matched(&v).is_empty(), "{what}: nothing matched a denial: {v}");
        assert!(v["detail"].as_str().unwrap_or_default().contains(POLICY), "{what}: the denial names the selecting policy: {v}");
    }
    let v = a.verify(&["--from-pod", "x/a", "--to-pod", "y/a", "--to-port", "81", "--protocol", "udp"]).expect("verify");
    assert_verdict(&v, "deny", "no-rule", "verify x/a -> y/a:81/udp");
    let v = a.verify(&["--from-pod", "x/a", "--to-pod", "kube-system/coredns", "--to-port", "53", "--protocol", "udp"]).expect("verify");
    assert_verdict(&v, "allow", "dns", "verify x/a -> coredns:53/udp");

    // Delete the policy: x/a is selected by no egress policy any more, so
    // everything inside the cluster opens; outside stays closed.
    let gen = story.agent().generation().expect("generation");
    let file = story.manifests.join(EXAMPLE).join("networkpolicy.yaml");
    std::fs::remove_file(&file).unwrap_or_else(|e| panic!("rm {}: {e}", file.display()));
    let to = v4(YB.ipv4, 80);
    let (r, took) = wait_probe(&story, &XA, to, true, "x/a -> y/b:80 to open once the policy is gone", Duration::from_secs(10), |r| {
        r.ok || !r.is_eperm()
    });
    assert_http_ok(&r, "policy deleted: x/a -> y/b:80", to);
    eprintln!("[e2e] policy deletion took effect after {} ms", took.as_millis());
    let st = story.agent().status().expect("status");
    assert!(st["generation"].as_u64().unwrap_or(0) > gen, "status generation did not move: {st}");
    let w = tollgate_e2e::agent::find_workload(&st, "x", "a").expect("x/a in status");
    assert_eq!(w["network_policies"], serde_json::json!([]), "x/a after deletion: {w}");
    for to in [v6(YB.ipv6, 80), v4(YA.ipv4, 81), v6(YA.ipv6, 81), v4(YA.ipv4, 80)] {
        let r = story.probe_tcp(&XA, to, true, T).unwrap();
        assert_http_ok(&r, &format!("policy deleted: x/a -> {to}"), to);
    }
    // Inside the cluster but nothing listens: the pod's own RST, not EPERM.
    let r = story.probe_tcp(&XA, v4(YB.ipv4, 82), false, T).unwrap();
    assert_conn_refused(&r, "policy deleted: x/a -> y/b:82");
    assert_dropped(&story, &XA, v4(pods::EXTERNAL_V4, 80), "policy deleted: x/a -> 203.0.113.10:80");
    let r = story.probe_tcp(&XA, v4(gw.ipv4, pods::GATEWAY_PORT), true, T).unwrap();
    assert_http_ok(&r, "policy deleted: x/a -> gateway", v4(pods::EXTERNAL_V4, 80));

    let a = story.agent.as_ref().expect("agent");
    let v = a.verify(&["--from-pod", "x/a", "--to-pod", "y/a", "--to-port", "81"]).expect("verify");
    assert_verdict(&v, "allow", "cluster-internal", "policy deleted: verify x/a -> y/a:81");
    let v = a.verify(&["--from-pod", "x/a", "--to-ip", "203.0.113.10", "--to-port", "80"]).expect("verify");
    assert_verdict(&v, "deny", "no-rule", "policy deleted: verify x/a -> 203.0.113.10:80");
    let r = story.probe_tcp(&XA, v4(pods::EXTERNAL_V4, 80), false, T).unwrap();
    assert_eperm(&r, "policy deleted: x/a -> 203.0.113.10:80 (again)");
}
