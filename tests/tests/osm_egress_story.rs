//! OSM egress-policy story (examples/osm-egress-policy): an `Egress` opens
//! httpbin.test:80 to ServiceAccount x/curl only, while the MeshConfig has
//! enableEgressPolicy: true. The agent runs in the node's netns and resolves
//! httpbin.test through cluster DNS (`--resolv-conf` naming 10.244.0.30,
//! which answers 203.0.113.10 and 2001:db8:113::10 with a 5 s TTL). Real
//! connections, counters, `tollgate verify --to-host` against the running
//! agent's pins, re-resolution across TTLs, and the feature flag switched
//! off and on again.
//!
//! Needs root, bpffs, cgroup v2, iproute2 and the agent binary
//! (`cargo xtask build`, or TOLLGATE_BIN). Missing prerequisites fail the test.

use serde_json::Value;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tollgate_e2e::agent::{default_tollgate_bin, Agent};
use tollgate_e2e::checks::{assert_dropped, assert_eperm, assert_http_ok, assert_verdict, counters, matched, wait_counters, wait_probe};
use tollgate_e2e::pods::{self, EXTERNAL_V4, EXTERNAL_V6, OSM_X_CURL as CURL, OSM_X_OTHER as OTHER};
use tollgate_e2e::story::{v4, v6, Story, StoryOpts};
use tollgate_e2e::util::poll;

const T: Duration = Duration::from_secs(3);
const EXAMPLE: &str = "osm-egress-policy";
const HOST: &str = "httpbin.test";
const EGRESS: &str = "x/httpbin-80";
const TTL: u32 = 5;

/// Waits until the agent's status shows `HOST` resolved to both addresses.
fn wait_resolved(agent: &Agent) -> Value {
    poll(&format!("the agent to resolve {HOST}"), Duration::from_secs(15), || {
        let st = agent.status()?;
        let h = st["hosts"].as_array().and_then(|hs| hs.iter().find(|h| h["host"].as_str() == Some(HOST))).cloned();
        Ok(h.filter(|h| {
            let a: Vec<&str> = h["addresses"].as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
            a.contains(&"203.0.113.10") && a.contains(&"2001:db8:113::10")
        }))
    })
    .unwrap_or_else(|e| panic!("{e:#}\nstatus: {:?}\nagent log:\n{}", agent.status(), agent.logs_text()))
}

fn set_egress_policy_flag(story: &mut Story, on: bool) {
    let gen = story.agent().generation().expect("generation");
    tollgate_e2e::manifests::edit_object(&story.manifests, "MeshConfig", Some("osm-system"), "osm-mesh-config", |v| {
        let flags = tollgate_e2e::manifests::mapping_at(&mut v["spec"], "featureFlags")?;
        flags.insert("enableEgressPolicy".into(), on.into());
        Ok(())
    })
    .expect("rewriting the MeshConfig");
    let a = story.agent.as_ref().expect("agent");
    poll("the MeshConfig change to be applied", Duration::from_secs(10), || {
        let st = a.status()?;
        Ok((st["generation"].as_u64().unwrap_or(0) > gen && st["osm"]["enable_egress_policy"].as_bool() == Some(on)).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\nstatus: {:?}", a.status()));
}

#[test]
fn osm_egress_opens_one_host_port_for_one_service_account() {
    tollgate_e2e::util::require_environment();
    let e2e = Path::new(env!("CARGO_BIN_EXE_tollgate-e2e"));
    let opts = StoryOpts {
        extra_pods: pods::OSM_PODS.to_vec(),
        examples: vec![EXAMPLE.into()],
        external_ports: vec![80, 8080],
        dns_records: vec![(HOST.into(), IpAddr::V4(EXTERNAL_V4)), (HOST.into(), IpAddr::V6(EXTERNAL_V6))],
        dns_ttl: TTL,
        agent_uses_cluster_dns: true,
        enforced: pods::OSM_PODS.to_vec(),
        ..Default::default()
    };
    let mut story = Story::build_with(e2e, opts).expect("building the sandbox");
    eprintln!("[e2e] run {}: manifests from {}", story.prefix, story.manifests_source);
    story.start_agent(&default_tollgate_bin()).expect("starting the agent");
    let agent = story.agent.as_ref().expect("agent");
    let (status, _) = agent.http_get("/readyz").expect("GET /readyz in the node netns");
    assert!(status.contains("200"), "/readyz: {status}");

    let h = wait_resolved(agent);
    assert!(h["expires_in_s"].as_u64().is_some_and(|s| s <= u64::from(TTL)), "{HOST} should expire within the {TTL} s TTL: {h}");
    let st = agent.status().expect("status");
    let w = tollgate_e2e::agent::find_workload(&st, "x", "curl").expect("x/curl in status");
    assert_eq!(w["service_account"].as_str(), Some("curl"), "{w}");
    assert_eq!(w["mesh_egress"], serde_json::json!([EGRESS]), "x/curl: {w}");
    let w = tollgate_e2e::agent::find_workload(&st, "x", "other").expect("x/other in status");
    assert_eq!(w["mesh_egress"], serde_json::json!([]), "x/other: {w}");

    // The pod's view: it resolves the name through cluster DNS, then connects.
    let r = story.probe_dns_name(&CURL, v4(pods::COREDNS.ipv4, 53), HOST, "A", false).unwrap();
    assert!(r.ok && r.answers == vec!["203.0.113.10"], "x/curl resolves {HOST}: {r:?}");
    let before = counters(agent, &CURL);
    for to in [v4(EXTERNAL_V4, 80), v6(EXTERNAL_V6, 80)] {
        let r = story.probe_tcp(&CURL, to, true, T).unwrap();
        assert_http_ok(&r, &format!("x/curl -> {HOST} {to}"), to);
    }
    wait_counters(agent, &CURL, "allowed_packets of x/curl to rise", |c| c.allowed_packets > before.allowed_packets);

    // Another port of the same host, and another ServiceAccount: refused.
    // (Port 8080 is served: default/sleep, not enforced, gets through.)
    let r = story.probe_tcp(&pods::DEFAULT_SLEEP, v4(EXTERNAL_V4, 8080), true, T).unwrap();
    assert_http_ok(&r, "default/sleep -> 203.0.113.10:8080", v4(EXTERNAL_V4, 8080));
    assert_dropped(&story, &CURL, v4(EXTERNAL_V4, 8080), "x/curl -> 203.0.113.10:8080");
    assert_dropped(&story, &CURL, v6(EXTERNAL_V6, 8080), "x/curl -> [2001:db8:113::10]:8080");
    assert_dropped(&story, &OTHER, v4(EXTERNAL_V4, 80), "x/other -> 203.0.113.10:80");
    assert_dropped(&story, &OTHER, v6(EXTERNAL_V6, 80), "x/other -> [2001:db8:113::10]:80");

    // verify --to-host, against the running agent's pins.
    let a = story.agent.as_ref().expect("agent");
    let v = a.verify(&["--from-pod", "x/curl", "--to-host", HOST, "--to-port", "80"]).expect("verify");
    assert_verdict(&v, "allow", "mesh-egress-policy", "verify x/curl -> httpbin.test:80");
    let detail = v["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(EGRESS) && detail.contains("x/curl"), "verify must name the Egress and the ServiceAccount: {v}");
    assert!(matched(&v).iter().any(|m| m.contains(EGRESS)), "verify: matched must name {EGRESS}: {v}");
    for (from, port) in [("x/curl", "8080"), ("x/other", "80")] {
        let v = a.verify(&["--from-pod", from, "--to-host", HOST, "--to-port", port]).expect("verify");
        let what = format!("verify {from} -> {HOST}:{port}");
        assert_verdict(&v, "deny", "no-rule", &what);
        assert!(v["detail"].as_str().unwrap_or_default().contains(HOST), "{what}: the denial says {HOST} resolves there: {v}");
    }
    let v = a.verify(&["--from-pod", "x/curl", "--to-ip", "2001:db8:113::10", "--to-port", "80"]).expect("verify");
    assert_verdict(&v, "allow", "mesh-egress-policy", "verify x/curl -> [2001:db8:113::10]:80");

    // The grant follows the name across several TTLs: the agent re-resolves
    // before the addresses expire, with no window in which they are dropped.
    let until = Instant::now() + Duration::from_secs(u64::from(TTL) * 2 + 1);
    let mut n = 0;
    while Instant::now() < until {
        let r = story.probe_tcp(&CURL, v4(EXTERNAL_V4, 80), false, T).unwrap();
        assert!(r.ok, "x/curl -> 203.0.113.10:80 after {n} probes across TTL refreshes: {r:?}");
        n += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_resolved(story.agent.as_ref().expect("agent"));

    // enableEgressPolicy: false -> Egress policies no longer count.
    set_egress_policy_flag(&mut story, false);
    let (r, took) = wait_probe(&story, &CURL, v4(EXTERNAL_V4, 80), false, "x/curl -> :80 to close", Duration::from_secs(10), |r| !r.ok);
    assert_eperm(&r, "enableEgressPolicy false: x/curl -> 203.0.113.10:80");
    eprintln!("[e2e] enableEgressPolicy=false took effect after {} ms", took.as_millis());
    assert_dropped(&story, &CURL, v6(EXTERNAL_V6, 80), "enableEgressPolicy false: x/curl -> [2001:db8:113::10]:80");
    // (By address: with the flag off no object needs httpbin.test, so the
    // agent stops resolving it and `--to-host` has nothing to go by.)
    let v = story.agent().verify(&["--from-pod", "x/curl", "--to-ip", "203.0.113.10", "--to-port", "80"]).expect("verify");
    assert_verdict(&v, "deny", "no-rule", "enableEgressPolicy false: verify x/curl -> 203.0.113.10:80");
    // The gateway is still the way out.
    let r = story.probe_tcp(&CURL, v4(pods::EGRESS_GATEWAY.ipv4, pods::GATEWAY_PORT), true, T).unwrap();
    assert_http_ok(&r, "x/curl -> gateway", v4(EXTERNAL_V4, 80));

    // And back on.
    set_egress_policy_flag(&mut story, true);
    let to = v4(EXTERNAL_V4, 80);
    let (r, _) = wait_probe(&story, &CURL, to, true, "x/curl -> :80 to open again", Duration::from_secs(10), |r| !r.is_eperm());
    assert_http_ok(&r, "enableEgressPolicy true again: x/curl -> 203.0.113.10:80", to);
    assert_dropped(&story, &OTHER, to, "enableEgressPolicy true again: x/other -> 203.0.113.10:80");
}
