//! NetworkPolicy ipBlock with except (examples/netpol-stories/ipblock-except):
//! test-egress/sleep may reach 203.0.113.0/24 and 2001:db8:113::/64 on any
//! port except the hosts .10 and ::10. The external host has a second
//! address (.11 / ::11), served on port 80; real connections over IPv4 and
//! IPv6, counters, and `tollgate verify` against the running agent's pins.
//!
//! Needs root, bpffs, cgroup v2, iproute2 and the agent binary
//! (`cargo xtask build`, or TOLLGATE_BIN). Missing prerequisites fail the test.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;
use tollgate_e2e::agent::default_tollgate_bin;
use tollgate_e2e::checks::{
    assert_conn_refused, assert_dropped, assert_http_ok, assert_verdict, counters, matched, wait_counters,
};
use tollgate_e2e::pods::{self, EXTERNAL2_V4, EXTERNAL2_V6, EXTERNAL_V4, EXTERNAL_V6, TEST_EGRESS_SLEEP as TE};
use tollgate_e2e::story::{v4, v6, Story, StoryOpts};

const T: Duration = Duration::from_secs(3);
const POLICY: &str = "test-egress/external-except-10";

#[test]
fn ip_block_except_over_ipv4_and_ipv6() {
    tollgate_e2e::util::require_environment();
    let e2e = Path::new(env!("CARGO_BIN_EXE_tollgate-e2e"));
    let opts = StoryOpts {
        examples: vec!["netpol-stories/ipblock-except".into()],
        extra_external: vec![IpAddr::V4(EXTERNAL2_V4), IpAddr::V6(EXTERNAL2_V6)],
        ..Default::default()
    };
    let mut story = Story::build_with(e2e, opts).expect("building the sandbox");
    eprintln!("[e2e] run {}: manifests from {}", story.prefix, story.manifests_source);
    story.start_agent(&default_tollgate_bin()).expect("starting the agent");

    // Without the agent's rules both addresses serve: the sandbox is sound.
    let d = pods::DEFAULT_SLEEP;
    for to in [v4(EXTERNAL_V4, 80), v4(EXTERNAL2_V4, 80), v6(EXTERNAL_V6, 80), v6(EXTERNAL2_V6, 80)] {
        let r = story.probe_tcp(&d, to, true, T).unwrap();
        assert_http_ok(&r, &format!("default/sleep (not enforced) -> {to}"), to);
    }

    let agent = story.agent.as_ref().expect("agent");
    let st = agent.status().expect("status");
    let w = tollgate_e2e::agent::find_workload(&st, "test-egress", "sleep").expect("test-egress/sleep in status");
    assert_eq!(w["network_policies"], serde_json::json!([POLICY]), "{w}");

    // Inside the block: allowed, counted as allowed, on every port.
    let before = counters(agent, &TE);
    for to in [v4(EXTERNAL2_V4, 80), v6(EXTERNAL2_V6, 80)] {
        let r = story.probe_tcp(&TE, to, true, T).unwrap();
        assert_http_ok(&r, &format!("test-egress/sleep -> {to} (in the ipBlock)"), to);
    }
    wait_counters(agent, &TE, "allowed_packets of test-egress/sleep to rise", |c| c.allowed_packets > before.allowed_packets);
    for to in [v4(EXTERNAL2_V4, 81), v6(EXTERNAL2_V6, 81)] {
        let r = story.probe_tcp(&TE, to, false, T).unwrap();
        assert_conn_refused(&r, &format!("test-egress/sleep -> {to} (ipBlock without ports: every port)"));
    }

    // The excepted host: refused by the kernel on any port, both families.
    for to in [v4(EXTERNAL_V4, 80), v6(EXTERNAL_V6, 80), v4(EXTERNAL_V4, 81), v6(EXTERNAL_V6, 81)] {
        assert_dropped(&story, &TE, to, &format!("test-egress/sleep -> {to} (excepted)"));
    }
    // Selected by an egress policy: the rest of the cluster is closed too
    // (nothing listens on default/sleep:80, so allowed would be ECONNREFUSED).
    assert_dropped(&story, &TE, v4(d.ipv4, 80), "test-egress/sleep -> default/sleep:80 (not in the policy)");
    assert_dropped(&story, &TE, v6(d.ipv6, 80), "test-egress/sleep -> [default/sleep]:80 (not in the policy)");
    // The gateway and cluster DNS stay reachable.
    let gw = pods::EGRESS_GATEWAY;
    let r = story.probe_tcp(&TE, v4(gw.ipv4, pods::GATEWAY_PORT), true, T).unwrap();
    assert_http_ok(&r, "test-egress/sleep -> gateway", v4(EXTERNAL_V4, 80));
    let r = story.probe_tcp(&TE, v6(gw.ipv6, pods::GATEWAY_PORT), true, T).unwrap();
    assert_http_ok(&r, "test-egress/sleep -> gateway (v6)", v6(EXTERNAL_V6, 80));
    let r = story.probe_dns(&TE, v6(pods::COREDNS.ipv6, 53), "AAAA", false).unwrap();
    assert!(r.ok && r.answers == vec!["2001:db8:113::10"], "DNS over IPv6: {r:?}");

    // verify says the same, naming the policy when it allows.
    let a = story.agent.as_ref().expect("agent");
    for ip in ["203.0.113.11", "2001:db8:113::11", "203.0.113.200"] {
        let v = a.verify(&["--from-pod", "test-egress/sleep", "--to-ip", ip, "--to-port", "443"]).expect("verify");
        let what = format!("verify -> {ip}:443");
        assert_verdict(&v, "allow", "network-policy", &what);
        assert!(v["detail"].as_str().unwrap_or_default().contains(POLICY), "{what}: detail must name {POLICY}: {v}");
        assert!(matched(&v).iter().any(|m| m.contains(POLICY)), "{what}: matched must name {POLICY}: {v}");
    }
    for ip in ["203.0.113.10", "2001:db8:113::10", "203.0.114.11", "2001:db8:114::11"] {
        let v = a.verify(&["--from-pod", "test-egress/sleep", "--to-ip", ip, "--to-port", "80"]).expect("verify");
        assert_verdict(&v, "deny", "no-rule", &format!("verify -> {ip}:80"));
    }
}
