//! The Istio egress-gateway story against the real agent: enforced pods leave
//! the cluster only through the gateway; DNS works; audit and off modes; IPv6;
//! and enforcement survives an agent crash.
//!
//! Needs root, bpffs, cgroup v2, iproute2 and the agent binary
//! (`cargo xtask build`, or TOLLGATE_BIN). Missing prerequisites fail the test.

use std::path::Path;
use std::time::Duration;
use tollgate_e2e::agent::{default_tollgate_bin, WorkloadCounters};
use tollgate_e2e::pods::{self, PodSpec};
use tollgate_e2e::probe::ProbeResult;
use tollgate_e2e::story::{v4, v6, Story};
use tollgate_e2e::util::poll;

const T: Duration = Duration::from_secs(3);
const APPLY: Duration = Duration::from_secs(15);
const LABEL: &str = "tollgate.dev/egress";

fn setup() -> Story {
    tollgate_e2e::util::require_environment();
    let e2e = Path::new(env!("CARGO_BIN_EXE_tollgate-e2e"));
    let mut story = Story::build(e2e).expect("building the sandbox");
    eprintln!("[e2e] run {}: manifests from {}", story.prefix, story.manifests_source);
    story.start_agent(&default_tollgate_bin()).expect("starting the agent");
    story
}

fn te() -> PodSpec {
    pods::TEST_EGRESS_SLEEP
}

fn counters(story: &mut Story, pod: &PodSpec) -> WorkloadCounters {
    story.agent().workload_counters(pod.namespace, pod.name).expect("tollgate counters -o json")
}

/// Polls the counters until `pred(now)` holds.
fn wait_counters(story: &mut Story, pod: &PodSpec, what: &str, pred: impl Fn(&WorkloadCounters) -> bool) -> WorkloadCounters {
    let agent = story.agent.as_ref().expect("agent");
    poll(what, Duration::from_secs(5), || {
        let c = agent.workload_counters(pod.namespace, pod.name)?;
        Ok(pred(&c).then_some(c))
    })
    .unwrap_or_else(|e| panic!("{e:#}\ncounters now: {:?}", agent.counters()))
}

fn assert_eperm_fast(r: &ProbeResult, what: &str) {
    assert!(!r.ok, "{what}: expected EPERM, connection succeeded: {r:?}");
    assert_eq!(r.errno, Some(libc::EPERM), "{what}: expected EPERM (errno 1): {r:?}");
    assert!(r.elapsed_ms < 1000, "{what}: refusal took {} ms (want < 1 s): {r:?}", r.elapsed_ms);
}

fn assert_external_ok(r: &ProbeResult, what: &str, from: std::net::SocketAddr) {
    assert!(r.ok && r.status == Some(200), "{what}: expected HTTP 200: {r:?}");
    assert_eq!(r.body, format!("external-ok from {from}"), "{what}: {r:?}");
}

fn set_label(story: &mut Story, value: Option<&str>, mode: &str) {
    let gen = story.agent().generation().expect("status generation");
    tollgate_e2e::manifests::set_namespace_label(&story.manifests, "test-egress", LABEL, value).expect("rewriting namespaces");
    story
        .agent()
        .wait_applied("test-egress", "sleep", mode, Some(gen), APPLY)
        .unwrap_or_else(|e| panic!("{e:#}"));
}

/// a, b, c, d, g: enforce mode, both address families.
#[test]
fn enforced_pod_leaves_only_through_gateway() {
    let mut story = setup();
    let ext4 = v4(pods::EXTERNAL_V4, 80);
    let ext6 = v6(pods::EXTERNAL_V6, 80);
    let gw = pods::EGRESS_GATEWAY;

    // a. direct: refused at once, counted as dropped.
    let before = counters(&mut story, &te());
    let r = story.probe_tcp(&te(), ext4, true, T).unwrap();
    assert_eperm_fast(&r, "test-egress/sleep -> 203.0.113.10:80");
    wait_counters(&mut story, &te(), "dropped_packets of test-egress/sleep to rise", |c| {
        c.dropped_packets > before.dropped_packets
    });

    // The same counters through Prometheus, and the probes.
    let agent = story.agent.as_ref().expect("agent runs");
    let (status, body) = agent.http_get("/metrics").expect("GET /metrics");
    assert!(status.contains("200"), "/metrics: {status}");
    let dropped: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("tollgate_packets_total{namespace=\"test-egress\",pod=\"sleep\",verdict=\"dropped\",reason=\""))
        .collect();
    assert!(
        dropped.iter().any(|l| l.contains("reason=\"no-rule\"")),
        "no dropped no-rule series for test-egress/sleep in:\n{body}"
    );
    let n: u64 = dropped.iter().filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum();
    assert!(n > before.dropped_packets, "metrics say {n} dropped, before {}", before.dropped_packets);
    // The map fill comes from the agent's own map handles.
    let cgroups = body
        .lines()
        .find(|l| l.starts_with("tollgate_map_entries{map=\"TG_CGROUPS\"} "))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no TG_CGROUPS fill in:\n{body}"));
    assert!(cgroups > 0, "TG_CGROUPS is empty:\n{body}");
    assert!(body.lines().any(|l| l == "tollgate_ready 1"), "not ready in:\n{body}");
    for probe in ["/healthz", "/readyz"] {
        let (status, _) = agent.http_get(probe).expect(probe);
        assert!(status.contains("200"), "{probe}: {status}");
    }

    // b. through the gateway.
    let r = story.probe_tcp(&te(), v4(gw.ipv4, pods::GATEWAY_PORT), true, T).unwrap();
    assert_external_ok(&r, "test-egress/sleep -> gateway 10.244.0.20:8080", ext4);

    // c. cluster DNS, UDP and TCP, both record types.
    let dns4 = v4(pods::COREDNS.ipv4, 53);
    for tcp in [false, true] {
        let r = story.probe_dns(&te(), dns4, "A", tcp).unwrap();
        assert!(r.ok && r.answers == vec!["203.0.113.10"], "DNS A tcp={tcp}: {r:?}");
        let r = story.probe_dns(&te(), dns4, "AAAA", tcp).unwrap();
        assert!(r.ok && r.answers == vec!["2001:db8:113::10"], "DNS AAAA tcp={tcp}: {r:?}");
    }

    // d. not enforced: default/sleep, and the gateway pod itself.
    for pod in [pods::DEFAULT_SLEEP, gw] {
        let r = story.probe_tcp(&pod, ext4, true, T).unwrap();
        assert_external_ok(&r, &format!("{} -> {ext4}", pod.key()), ext4);
        let r = story.probe_tcp(&pod, ext6, true, T).unwrap();
        assert_external_ok(&r, &format!("{} -> {ext6}", pod.key()), ext6);
    }

    // g. IPv6: direct refused, gateway and DNS over v6 fine.
    let before = counters(&mut story, &te());
    let r = story.probe_tcp(&te(), ext6, true, T).unwrap();
    assert_eperm_fast(&r, "test-egress/sleep -> [2001:db8:113::10]:80");
    wait_counters(&mut story, &te(), "dropped_packets to rise after the IPv6 refusal", |c| {
        c.dropped_packets > before.dropped_packets
    });
    let r = story.probe_tcp(&te(), v6(gw.ipv6, pods::GATEWAY_PORT), true, T).unwrap();
    assert_external_ok(&r, "test-egress/sleep -> gateway [fd00:10:244::20]:8080", ext6);
    let r = story.probe_dns(&te(), v6(pods::COREDNS.ipv6, 53), "AAAA", false).unwrap();
    assert!(r.ok, "DNS over IPv6: {r:?}");

    // UDP to the outside is refused too (sendmsg hooks).
    let r = story.probe_udp(&te(), v4(pods::EXTERNAL_V4, 9)).unwrap();
    assert_eq!(r.errno, Some(libc::EPERM), "UDP test-egress/sleep -> 203.0.113.10:9: {r:?}");
    let r = story.probe_udp(&te(), v6(pods::EXTERNAL_V6, 9)).unwrap();
    assert_eq!(r.errno, Some(libc::EPERM), "UDP test-egress/sleep -> [2001:db8:113::10]:9: {r:?}");
}

/// e, f: audit lets traffic through and counts it; no label means untouched.
#[test]
fn audit_then_unlabelled() {
    let mut story = setup();
    let ext4 = v4(pods::EXTERNAL_V4, 80);

    // e. audit.
    set_label(&mut story, Some("audit"), "audit");
    let before = counters(&mut story, &te());
    let r = story.probe_tcp(&te(), ext4, true, T).unwrap();
    assert_external_ok(&r, "audit: test-egress/sleep -> 203.0.113.10:80", ext4);
    let after = wait_counters(&mut story, &te(), "audited_packets of test-egress/sleep to rise", |c| {
        c.audited_packets > before.audited_packets
    });
    assert_eq!(after.dropped_packets, before.dropped_packets, "audit mode must not drop: {before:?} -> {after:?}");

    // f. label removed: allowed, and nothing counted for the pod.
    set_label(&mut story, None, "off");
    let before = counters(&mut story, &te());
    let r = story.probe_tcp(&te(), ext4, true, T).unwrap();
    assert_external_ok(&r, "unlabelled: test-egress/sleep -> 203.0.113.10:80", ext4);
    let r6 = story.probe_tcp(&te(), v6(pods::EXTERNAL_V6, 80), true, T).unwrap();
    assert!(r6.ok, "unlabelled: test-egress/sleep -> [2001:db8:113::10]:80: {r6:?}");
    let after = counters(&mut story, &te());
    assert_eq!(after, before, "no counters may rise for an unenforced pod");

    // And back to enforce: refused again (the reload path works both ways).
    set_label(&mut story, Some("enforce"), "enforce");
    let r = story.probe_tcp(&te(), ext4, true, T).unwrap();
    assert_eperm_fast(&r, "re-enforced: test-egress/sleep -> 203.0.113.10:80");
}

/// h: kill -9 the agent; enforcement and counters survive; a new agent adopts them.
#[test]
fn enforcement_survives_agent_crash() {
    let mut story = setup();
    let ext4 = v4(pods::EXTERNAL_V4, 80);

    let r = story.probe_tcp(&te(), ext4, false, T).unwrap();
    assert_eperm_fast(&r, "before crash");
    let before_kill = wait_counters(&mut story, &te(), "dropped_packets > 0", |c| c.dropped_packets > 0);

    let pid = story.agent().pid().expect("agent pid");
    story.agent().kill9();
    eprintln!("[e2e] killed agent pid {pid} with SIGKILL");

    let r = story.probe_tcp(&te(), ext4, false, T).unwrap();
    assert_eperm_fast(&r, "agent down: test-egress/sleep -> 203.0.113.10:80");
    let r = story.probe_tcp(&pods::DEFAULT_SLEEP, ext4, true, T).unwrap();
    assert_external_ok(&r, "agent down: default/sleep -> 203.0.113.10:80", ext4);
    // counters read the pinned maps, so they work while the agent is down.
    let while_down = wait_counters(&mut story, &te(), "counters to rise while the agent is down", |c| {
        c.dropped_packets > before_kill.dropped_packets
    });

    story.agent().restart().expect("restarting the agent");
    story
        .agent()
        .wait_applied("test-egress", "sleep", "enforce", None, APPLY)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let after_restart = counters(&mut story, &te());
    assert!(
        after_restart.dropped_packets >= while_down.dropped_packets,
        "counters went backwards across the restart: {while_down:?} -> {after_restart:?}"
    );
    let r = story.probe_tcp(&te(), ext4, false, T).unwrap();
    assert_eperm_fast(&r, "after restart");
    wait_counters(&mut story, &te(), "dropped_packets to rise after restart", |c| {
        c.dropped_packets > after_restart.dropped_packets
    });
    let r = story.probe_tcp(&te(), v4(pods::EGRESS_GATEWAY.ipv4, pods::GATEWAY_PORT), true, T).unwrap();
    assert_external_ok(&r, "after restart: via gateway", ext4);
}
